"""The over-smoothing metrics of RESEARCH.md §2, batched over layers.

Every function takes a stack of token matrices ``H [..., n, d]`` (one per layer) and returns
one value per matrix. A value that is undefined for the input (one token has no pairs) is NaN;
the analysis turns NaN into ``None`` with a note, never into a fake number.
"""
from __future__ import annotations

import torch

Tensor = torch.Tensor

NUMERICAL_RANK_TOL = 1e-3
METRIC_NAMES = ("cosine_mean", "cls_cosine", "dm_rel", "hfc_lfc", "effective_rank",
                "numerical_rank", "sv_skewness", "sv_median", "dirichlet", "spectral_gap")


def _unit_rows(H: Tensor) -> Tensor:
    return H / H.norm(dim=-1, keepdim=True).clamp_min(1e-30)


def gram(H: Tensor) -> Tensor:
    """Inner products of every token pair, ``H Hᵀ`` ``[..., n, n]``: similarity, the Dirichlet
    energy and (for n ≤ d) the singular values all read it, so the analysis computes it once."""
    return H @ H.transpose(-1, -2)


def similarity(H: Tensor, G: Tensor | None = None) -> Tensor:
    """Cosine similarity of every token pair, ``[..., n, n]`` (from ``G = gram(H)`` when given)."""
    G = gram(H) if G is None else G
    inv = torch.diagonal(G, dim1=-2, dim2=-1).sqrt().clamp_min(1e-30).reciprocal()
    return G * inv.unsqueeze(-1) * inv.unsqueeze(-2)


def cosine_mean(H: Tensor) -> Tensor:
    """TokenUni: mean of cos(h_i, h_j) over ordered pairs i ≠ j; NaN for one token."""
    n = H.shape[-2]
    U = _unit_rows(H)
    s = U.sum(dim=-2)  # Σ_i u_i, so Σ_ij u_i·u_j = ‖s‖²
    total = (s * s).sum(-1) - (U * U).sum((-1, -2))
    return total / (n * (n - 1)) if n > 1 else torch.full(H.shape[:-2], float("nan"), dtype=H.dtype)


def cls_cosine(H: Tensor) -> Tensor:
    """CLSUni: mean over all j (itself included) of cos(h_0, h_j)."""
    U = _unit_rows(H)
    return (U @ U[..., 0, :].unsqueeze(-1)).squeeze(-1).mean(-1)


def _split_mean(H: Tensor) -> tuple[Tensor, Tensor]:
    """‖P H‖_F and ‖(11ᵀ/n) H‖_F."""
    mean = H.mean(dim=-2, keepdim=True)
    high = (H - mean).norm(dim=(-2, -1))
    low = mean.norm(dim=(-2, -1)) * H.shape[-2] ** 0.5
    return high, low


def dm_abs(H: Tensor) -> Tensor:
    """Shi et al.'s d_M: distance to the smooth subspace, ‖P H‖_F."""
    return _split_mean(H)[0]


def dm_rel(H: Tensor) -> Tensor:
    """‖P H‖_F / ‖H‖_F; 0 means every token is the same vector."""
    return _split_mean(H)[0] / H.norm(dim=(-2, -1)).clamp_min(1e-30)


def hfc_lfc(H: Tensor) -> Tensor:
    """High- over low-frequency energy ‖P H‖_F / ‖(11ᵀ/n) H‖_F; inf when the mean token is 0."""
    high, low = _split_mean(H)
    return torch.where(low > 0, high / low.clamp_min(1e-300), torch.full_like(high, float("inf")))


def singular_values(H: Tensor, G: Tensor | None = None) -> Tensor:
    """σ_1 ≥ … ≥ σ_k of each matrix, ``[..., k]`` with k = min(n, d).

    From the eigenvalues of the smaller Gram matrix (float64: σ down to ~1e-7·σ₁ stay exact,
    far below the 1e-3 rank threshold); several times faster than an SVD. ``G = gram(H)`` is
    used when given and n ≤ d.
    """
    n, d = H.shape[-2:]
    if n <= d:
        small = gram(H) if G is None else G
    else:
        small = H.transpose(-1, -2) @ H
    return torch.linalg.eigvalsh(small).flip(-1).clamp_min(0).sqrt()


def spectrum_metrics(sv: Tensor) -> dict[str, Tensor]:
    """Effective rank, numerical rank, skewness and median of σ/σ₁ from singular values ``[..., k]``."""
    top = sv[..., :1]
    rel = sv / top.clamp_min(1e-30)
    p = sv / sv.sum(-1, keepdim=True).clamp_min(1e-30)
    entropy = -(torch.where(p > 0, p * p.clamp_min(1e-300).log(), torch.zeros_like(p))).sum(-1)
    centred = rel - rel.mean(-1, keepdim=True)
    m2 = (centred ** 2).mean(-1)
    m3 = (centred ** 3).mean(-1)
    # scipy.stats.skew (bias=True) is NaN when every value is equal (m2 == 0).
    tiny = (torch.finfo(rel.dtype).eps * rel.abs().mean(-1)) ** 2
    skew = torch.where(m2 > tiny, m3 / m2.clamp_min(1e-300) ** 1.5, torch.full_like(m2, float("nan")))
    return {
        "effective_rank": entropy.exp(),
        "numerical_rank": (sv > top * NUMERICAL_RANK_TOL).sum(-1).to(sv.dtype),
        "sv_skewness": skew,
        "sv_median": rel.median(dim=-1).values if rel.shape[-1] % 2 else _even_median(rel),
    }


def _even_median(x: Tensor) -> Tensor:
    # torch.median returns the lower middle value; numpy/scipy average the two middle ones.
    k = x.shape[-1] // 2
    s = x.sort(dim=-1).values
    return (s[..., k - 1] + s[..., k]) / 2


def dirichlet(H: Tensor, S: Tensor, G: Tensor | None = None) -> Tensor:
    """½ Σ_ij S_ij ‖h_i − h_j‖² / Σ_i ‖h_i‖² for token matrices ``[..., n, d]`` and graphs
    ``[..., n, n]`` (from ``G = gram(H)`` when given)."""
    G = gram(H) if G is None else G
    sq = torch.diagonal(G, dim1=-2, dim2=-1)  # ‖h_i‖², [..., n]
    dist = sq.unsqueeze(-1) + sq.unsqueeze(-2) - 2 * G
    return 0.5 * (S * dist.clamp_min(0)).sum((-1, -2)) / sq.sum(-1).clamp_min(1e-30)


def hidden_metrics(H: Tensor) -> dict[str, Tensor]:
    """Every per-state metric of §2 except the graph ones, for ``H [..., n, d]`` (float64).

    Besides the metrics: ``sv`` (σ/σ₁), ``similarity`` and ``gram`` (for :func:`dirichlet`).
    """
    H = H.double()
    G = gram(H)
    sv = singular_values(H, G)
    out = {
        "cosine_mean": cosine_mean(H),
        "cls_cosine": cls_cosine(H),
        "dm_rel": dm_rel(H),
        "hfc_lfc": hfc_lfc(H),
        **spectrum_metrics(sv),
    }
    out.update(sv=sv / sv[..., :1].clamp_min(1e-30), similarity=similarity(H, G), gram=G)
    return out
