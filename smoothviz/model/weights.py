"""What SmoothViz reads from a model's weights: each layer's value and output projections, their
per-head product W_O^h W_V^h (docs/SCIENCE.md §3.4), and Shi et al.'s weight norm s.

Every read goes through the model's :class:`~smoothviz.model.models.ArchSpec`, so architectures differ in
data only.
"""

from __future__ import annotations

import torch

from smoothviz.model.models import ArchSpec, get_module
from smoothviz.science.linalg import singular_values

Tensor = torch.Tensor


def value_output_weights(
    model, spec: ArchSpec, n_layers: int, heads: int | None = None, kv_heads: int | None = None
) -> tuple[Tensor, Tensor]:
    """Per-layer value and output projection weights in nn.Linear layout, one value block per
    query head.

    With grouped-query attention (``kv_heads < heads``) query head i reads value head
    ``i // (heads / kv_heads)`` (transformers' ``repeat_kv``), so each value head's rows are
    repeated for the query heads it serves: ``W_O^h W_V^h`` is then the product each head uses
    (Dovonon et al.'s per-head map).

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
        q_width = o.shape[1]  # h*d_h: the output projection reads every query head
        if spec.value_part is not None:  # fused q|k|v: h*d_h, h_kv*d_h, h_kv*d_h rows
            kv_width = (v.shape[0] - q_width) // 2
            v = v.split([q_width, kv_width, kv_width], dim=0)[spec.value_part]
        if v.shape[0] != q_width:
            groups = q_width // v.shape[0]
            v = v.unflatten(0, (-1, q_width // (heads or 1))).repeat_interleave(groups, 0).flatten(0, 1)
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
        mats = [p.detach().double().cpu() for name, p in block.named_parameters() if p.dim() == 2 and "weight" in name]
        out.append(max(singular_values(m)[0] for m in mats) if mats else torch.tensor(0.0, dtype=torch.float64))
    return torch.stack(out)
