"""What SmoothViz reads from a model's weights: each layer's value and output projections, their
per-head product W_O^h W_V^h (RESEARCH.md §3.4), and Shi et al.'s weight norm s.

Every read goes through the model's :class:`~smoothviz.models.ArchSpec`, so architectures differ in
data only.
"""
from __future__ import annotations

import torch

from .linalg import singular_values
from .models import ArchSpec, get_module

Tensor = torch.Tensor

def value_output_weights(model, spec: ArchSpec, n_layers: int) -> tuple[Tensor, Tensor]:
    """Per-layer value and output projection weights in nn.Linear layout.

    Returns:
        ``(W_v [L, h*d_h, d], W_o [L, d, h*d_h])`` (ALBERT's shared block repeated L times).
    """
    blocks = get_module(model, spec.layers)
    wv, wo = [], []
    for layer in range(n_layers):
        block = blocks[layer % len(blocks)]
        v = get_module(block, spec.value).weight
        o = get_module(block, spec.out_proj).weight
        if spec.conv1d:  # Conv1D stores [in, out]
            v, o = v.t(), o.t()
        if spec.value_part is not None:
            v = v.chunk(3, dim=0)[spec.value_part]
        wv.append(v.detach())
        wo.append(o.detach())
    return torch.stack(wv), torch.stack(wo)


def value_output_product(w_v: Tensor, w_o: Tensor, heads: int) -> Tensor:
    """RESEARCH §3.4's ``M_h = W_O^h W_V^h`` per layer and head.

    In right-multiplying convention ``W_V^h = (w_v[hs])ᵀ`` and ``W_O^h = (w_o[:, hs])ᵀ``, so
    ``M_h = (w_v[hs] @ w_o[:, hs])ᵀ``.

    Args:
        w_v: ``[L, h*d_h, d]``; w_o: ``[L, d, h*d_h]``.
    Returns:
        ``[L, h, d_h, d_h]``.
    """
    L, hd, d = w_v.shape
    dh = hd // heads
    v = w_v.reshape(L, heads, dh, d)
    o = w_o.reshape(L, d, heads, dh).permute(0, 2, 1, 3)  # [L, h, d, d_h]
    return (v @ o).transpose(-1, -2)


def block_weight_norm(model, spec: ArchSpec, n_layers: int) -> Tensor:
    """Largest singular value over each block's weight matrices, ``[L]`` (Shi et al.'s s)."""
    blocks = get_module(model, spec.layers)
    out = []
    for layer in range(n_layers):
        block = blocks[layer % len(blocks)]
        mats = [p.detach().double().cpu() for name, p in block.named_parameters()
                if p.dim() == 2 and "weight" in name]
        out.append(max(singular_values(m)[0] for m in mats) if mats else torch.tensor(0.0, dtype=torch.float64))
    return torch.stack(out)
