"""Small linear-algebra helpers shared by the metrics, the graphs and the weight readers."""
from __future__ import annotations

import torch

Tensor = torch.Tensor


def gram(H: Tensor) -> Tensor:
    """Inner products of every token pair, ``H Hᵀ`` ``[..., n, n]``: similarity, the Dirichlet
    energy and (for n ≤ d) the singular values all read it, so the analysis computes it once."""
    return H @ H.transpose(-1, -2)


def singular_values(H: Tensor, G: Tensor | None = None) -> Tensor:
    """σ_1 ≥ … ≥ σ_k of each matrix ``H [..., n, d]``, ``[..., k]`` with k = min(n, d).

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
