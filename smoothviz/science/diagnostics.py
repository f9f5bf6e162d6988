"""Per-layer and per-head diagnostics of docs/SCIENCE.md §2 and §3.4 that read weights and attention
together: Shi et al.'s bound v, and Dovonon et al.'s smooth/sharpen verdict for every head.

Both are heavy numerics kept out of the orchestrator (:mod:`smoothviz.pipeline.analysis`); both are
tested against dense numpy eigendecompositions (``tests/test_head_spectra.py``).
"""

from __future__ import annotations

import torch

from smoothviz.science import graph
from smoothviz.science.linalg import per_matrix


def shi_v(A: torch.Tensor, ln_sigma: torch.Tensor, weight_norm: torch.Tensor, post_ln: bool) -> torch.Tensor:
    """v = (1 + s²)(1 + √λ·h·s)/(σ₁σ₂) per layer.

    NaN where the block has fewer than two LayerNorms, and for pre-LN blocks: Shi et al. derive
    the bound for post-LN blocks (each LayerNorm after its residual sum), where σ₁, σ₂ divide
    the states that carry on; in a pre-LN block the LayerNorms sit on the branches only.

    Args:
        A: ``[..., L, h, n, n]`` each head's attention over the kept tokens (leading dimensions:
            several sentences of one length).
        ln_sigma: ``[..., L, k]`` σ_min of the block's k LayerNorms' inputs (over the same tokens).
        weight_norm: ``[L]`` s, the largest singular value of the block's weight matrices.
        post_ln: the blocks are post-LN.

    Returns:
        ``[..., L]`` float64.
    """
    if ln_sigma.shape[-1] < 2 or not post_ln:
        return torch.full(A.shape[:-3], float("nan"), dtype=torch.float64)
    return shi_bound(graph.attention_contraction_lambda(A), A.shape[-3], ln_sigma, weight_norm, post_ln)


def shi_bound(lam: torch.Tensor, heads: int, ln_sigma: torch.Tensor, weight_norm, post_ln: bool) -> torch.Tensor:
    """:func:`shi_v` from Shi's λ ``[..., L]`` already computed (a streamed analysis computes it
    layer by layer); NaN where the bound does not apply."""
    if ln_sigma.shape[-1] < 2 or not post_ln:
        return torch.full(lam.shape, float("nan"), dtype=torch.float64)
    lam = lam.double().clamp_min(0)
    s = weight_norm.double()
    s1, s2 = ln_sigma[..., 0], ln_sigma[..., 1]
    return (1 + s**2) * (1 + lam.sqrt() * heads * s) / (s1 * s2)


def dovonon(A: torch.Tensor, value_eigs: torch.Tensor) -> torch.Tensor:
    """Dovonon et al.'s verdict per head, ``[L, h]`` bool: True where the dominant eigenvalue 1 + λ^A λ^H pairs λ^H with A's eigenvalue 1 (low-pass).

    A non-Perron pairing reaches at most 1 + r·max_j |λ^H_j| when every eigenvalue of A but its
    Perron 1 has modulus ≤ r; a head whose Perron pairing max_j |1 + λ^H_j| is at least that
    smooths whatever those eigenvalues are. :func:`graph.subdominant_bound` gives such an r in
    O(n²) (r ≤ 1 for a stochastic A), which settles most heads, and
    :func:`graph.deflated_radius` a sharper one for the rest (on MiniLM at 128 tokens: 36, then
    11 more of 72 heads). Only the heads left need A's spectrum (its diagonal when A is
    triangular, i.e. causal; otherwise one general eigendecomposition each, the costly part:
    bounds from A², A⁴… settle a few more heads, but their float64 products cost about what the
    eigendecompositions they save would). No modulus bound can settle a head that sharpens.

    Args:
        A: ``[..., L, h, n, n]``, rows summing to 1 (leading dimensions: several sentences of one
            length); value_eigs: ``[L, h, d_h]`` complex. Returns ``[..., L, h]``.
    """
    heads, n = A.shape[:-2], A.shape[-1]
    lam_h = value_eigs.to(torch.complex64).expand(*heads, value_eigs.shape[-1]).reshape(-1, value_eigs.shape[-1])
    perron_best = (1 + lam_h).abs().amax(-1).double()  # [heads, d_h] → [heads]
    reach = lam_h.abs().amax(-1).double()
    flat = A.reshape(-1, n, n)

    # Every |λ^A| ≤ 1 for a stochastic head: a Perron pairing that reaches 1 + max|λ^H| wins (ties too).
    def settled(radius: torch.Tensor, heads) -> torch.Tensor:  # every non-Perron |λ^A| ≤ radius
        return 1 + radius.double() * reach[heads] <= perron_best[heads] * (1 - 1e-6)

    smooths = graph.is_stochastic(flat) & ((1 + reach - perron_best) <= 1e-6 * (1 + reach))
    smooths |= settled(graph.by_layer(graph.subdominant_bound, A).flatten(), slice(None))
    todo = (~smooths).nonzero().squeeze(-1)
    triangular = torch.zeros_like(smooths)
    triangular[todo] = is_triangular(flat[todo])
    general = todo[~triangular[todo]]  # a triangular head's spectrum is its diagonal: cheaper than any bound
    if general.numel():
        smooths[general] = settled(graph.deflated_radius(flat[general]), general)
        todo = (~smooths).nonzero().squeeze(-1)
    if todo.numel():
        attn_eigs = eigenvalues(flat[todo], triangular[todo])  # [k, n]
        lam = lam_h[todo]
        update = (1 + attn_eigs.unsqueeze(-1) * lam.unsqueeze(-2)).abs()  # [k, n, d_h]
        best = update.flatten(-2).argmax(-1) // lam.shape[-1]  # index into A's eigenvalues
        chosen = torch.gather(attn_eigs, -1, best.unsqueeze(-1)).squeeze(-1)
        perron = (attn_eigs - 1).abs().argmin(-1)
        smooths[todo] = (best == perron) | ((chosen - 1).abs() < 1e-5)
    return smooths.view(heads)


def eigenvalues(X: torch.Tensor, triangular: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of each matrix of ``X [k, n, n]`` (complex64): the diagonal where ``triangular``,
    LAPACK's general solver otherwise, spread over the cores (:func:`linalg.per_matrix`)."""
    out = torch.diagonal(X, dim1=-2, dim2=-1).to(torch.complex64)
    full = (~triangular).nonzero().squeeze(-1)
    if full.numel():
        out[full] = per_matrix(eigvals, X[full])
    return out


def is_triangular(X: torch.Tensor) -> torch.Tensor:
    """Per matrix of ``X [k, n, n]``: no entry above the diagonal (a causal head), by 16 at a time."""
    if not X.shape[0]:
        return torch.zeros(0, dtype=torch.bool)
    return torch.cat([~x.triu(1).ne(0).flatten(1).any(-1) for x in X.split(16)])


def eigvals(X: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of each matrix of ``X [k, n, n]``, complex64; float64 where float32 fails to converge."""
    try:
        return torch.linalg.eigvals(X).to(torch.complex64)
    except torch.linalg.LinAlgError:  # rare non-convergence in float32: retry in float64
        return torch.linalg.eigvals(X.double()).to(torch.complex64)
