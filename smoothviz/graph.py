"""Attention as a graph (RESEARCH.md §1): aggregation, symmetrisation, Laplacian spectra, rollout.

All functions are batched over leading dimensions (layers, heads); none loops over matrices
except :func:`rollout`, whose product over depth is sequential by definition.
"""
from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np
import torch

from .metrics import singular_values

Tensor = torch.Tensor

AGGREGATIONS = ("mean",)  # or a head index
SYMMETRISATIONS = ("sym", "ata")


@dataclass(frozen=True)
class GraphOptions:
    """How an attention tensor becomes a graph.

    Attributes:
        head: ``None`` for the mean over heads, or the index of one head.
        symmetrize: ``"sym"`` for (A + Aᵀ)/2, ``"ata"`` for AᵀA.
        exclude_special: drop [CLS]/[SEP]/<s>/</s> rows and columns, then renormalise rows.
    """

    head: int | None = None
    symmetrize: str = "sym"
    exclude_special: bool = False

    def __post_init__(self):
        if self.symmetrize not in SYMMETRISATIONS:
            raise ValueError(f"symmetrisation must be one of {', '.join(SYMMETRISATIONS)}, got '{self.symmetrize}'")
        if self.head is not None and (not isinstance(self.head, int) or self.head < 0):
            raise ValueError(f"head must be a non-negative integer or None (mean over heads), got {self.head!r}")


def restrict(A: Tensor, keep: Tensor) -> Tensor:
    """Keep the token rows and columns in ``keep`` and renormalise rows to sum to 1."""
    A = A[..., keep, :][..., keep]
    return A / A.sum(-1, keepdim=True).clamp_min(1e-30)


def aggregate(A: Tensor, head: int | None) -> Tensor:
    """``[L, h, n, n]`` → ``[L, n, n]``: mean over heads or one head."""
    if head is None:
        return A.mean(1)
    if head >= A.shape[1]:
        raise ValueError(f"head {head} does not exist: this model has heads 0..{A.shape[1] - 1}")
    return A[:, head]


def symmetrize(A: Tensor, mode: str) -> Tensor:
    """(A + Aᵀ)/2 or AᵀA, batched."""
    At = A.transpose(-1, -2)
    return (A + At) / 2 if mode == "sym" else At @ A


def normalized_laplacian(S: Tensor) -> Tensor:
    """𝓛 = I − D^{-1/2} S D^{-1/2}; a node of zero degree gets an all-zero row and column."""
    deg = S.sum(-1)
    inv = torch.where(deg > 0, deg.clamp_min(1e-300).rsqrt(), torch.zeros_like(deg))
    eye = torch.eye(S.shape[-1], dtype=S.dtype, device=S.device)
    return eye - inv.unsqueeze(-1) * S * inv.unsqueeze(-2)


def laplacian_spectrum(S: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues (ascending, clamped into [0, 2]) and eigenvectors of the normalized Laplacian."""
    vals, vecs = torch.linalg.eigh(normalized_laplacian(S.double()))
    return vals.clamp(0.0, 2.0), vecs


def spectral_gap(vals: Tensor) -> Tensor:
    """λ₂ of the normalized Laplacian from ascending eigenvalues; NaN for one node."""
    if vals.shape[-1] < 2:
        return torch.full(vals.shape[:-1], float("nan"), dtype=vals.dtype)
    return vals[..., 1]


def fiedler(vecs: Tensor) -> Tensor:
    """Eigenvector of λ₂ with its largest-magnitude entry positive, so plots never flip."""
    if vecs.shape[-1] < 2:
        return torch.zeros(vecs.shape[:-1], dtype=vecs.dtype)
    v = vecs[..., :, 1]
    top = torch.gather(v, -1, v.abs().argmax(-1, keepdim=True))
    return v * torch.where(top < 0, -1.0, 1.0).to(v.dtype)


def row_entropy(A: Tensor) -> Tensor:
    """Mean over rows of −Σ_j A_ij ln A_ij (nats), ``[...]``."""
    logs = torch.where(A > 0, A.clamp_min(1e-300).log(), torch.zeros_like(A))
    return -(A * logs).sum(-1).mean(-1)


def distance_from_uniform(A: Tensor) -> Tensor:
    """‖A − 11ᵀ/n‖_F."""
    return (A - 1.0 / A.shape[-1]).norm(dim=(-2, -1))


def rollout_ratio(A: Tensor) -> Tensor:
    """σ₂/σ₁ of R_l = Â_l … Â_1 with Â = ½(A + I), for directed graphs ``[L, n, n]`` → ``[L]``."""
    L, n = A.shape[0], A.shape[-1]
    eye = torch.eye(n, dtype=A.dtype, device=A.device)
    R, products = eye, []
    for layer in range(L):  # sequential by definition
        R = (0.5 * (A[layer] + eye)) @ R
        products.append(R)
    if n < 2:
        return torch.full((L,), float("nan"), dtype=A.dtype)
    sv = singular_values(torch.stack(products))
    return sv[:, 1] / sv[:, 0].clamp_min(1e-300)


def attention_contraction_lambda(A: Tensor, steps: int = 16) -> Tensor:
    """Shi et al.'s λ: the largest eigenvalue of Aᵀ P A over heads, ``[L, h, n, n]`` → ``[L]``.

    Batched Lanczos with full reorthogonalisation on the operator v ↦ Aᵀ P A v: its top Ritz value
    converges in a few steps (and is exact once ``steps ≥ n``), while a dense eigendecomposition
    of every head would cost more than the forward pass. Used only for the displayed bound v.
    """
    n = A.shape[-1]
    k = min(steps, n)
    At = A.transpose(-1, -2)

    def apply(v):
        u = A @ v
        return At @ (u - u.mean(-2, keepdim=True))

    g = torch.Generator().manual_seed(0)
    q = torch.rand(n, 1, generator=g, dtype=A.dtype).expand(*A.shape[:-1], 1).to(A.device)
    q = q / q.norm(dim=-2, keepdim=True)
    basis, alphas, betas = [], [], []
    for _ in range(k):
        basis.append(q)
        w = apply(q)
        alphas.append((q * w).sum((-2, -1)))
        Q = torch.cat(basis, -1)                                  # [..., n, j]
        w = w - Q @ (Q.transpose(-1, -2) @ w)                     # full reorthogonalisation
        w = w - Q @ (Q.transpose(-1, -2) @ w)
        beta = w.norm(dim=-2, keepdim=True)
        betas.append(beta[..., 0, 0])
        q = w / beta.clamp_min(1e-30)
    T = torch.diag_embed(torch.stack(alphas, -1))
    off = torch.stack(betas[:-1], -1) if k > 1 else None
    if off is not None:
        T = T + torch.diag_embed(off, 1) + torch.diag_embed(off, -1)
    return torch.linalg.eigvalsh(T.double())[..., -1].to(A.dtype).amax(-1)


def to_networkx(W: np.ndarray, labels: list[str], top_k: int | None = None,
                directed: bool = False) -> nx.Graph:
    """A weighted graph of tokens; with ``top_k`` only each node's k strongest edges are kept.

    Node attributes: ``label`` (the token text) and ``position`` (its index). Edge: ``weight``.
    Self-loops are dropped: they carry no message between tokens.
    """
    n = W.shape[0]
    G = nx.DiGraph() if directed else nx.Graph()
    for i, label in enumerate(labels):
        G.add_node(i, label=label, position=i)
    W = np.array(W, dtype=float)
    np.fill_diagonal(W, 0.0)
    k = n - 1 if top_k is None else min(top_k, n - 1)
    if k <= 0:
        return G
    nearest = np.argsort(-W, axis=1, kind="stable")[:, :k]
    for i in range(n):
        for j in nearest[i]:
            if W[i, j] > 0:
                G.add_edge(i, int(j), weight=float(W[i, j]))
    return G
