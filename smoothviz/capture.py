"""Run one sentence through a model and capture a :class:`Trace`.

Interventions never touch the shared model: :func:`install` attaches hooks once, at load time,
and every hook reads the per-call state of a :class:`contextvars.ContextVar`. A forward pass
without a state (someone else's baseline, in another thread) sees no-op hooks, so concurrent
analyses with different mitigations cannot interfere.
"""
from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Callable

import torch

from .metrics import singular_values
from .models import ArchSpec, get_module

Tensor = torch.Tensor


@dataclass(frozen=True)
class Intervention:
    """What a mitigation changes inside the forward pass; every field is optional.

    Attributes:
        context: ``(layer, ctx, v, v0) -> ctx``, before the attention output projection;
            ctx and v are ``[1, n, h*d_h]`` (heads concatenated), v0 the first layer's values.
        out_weight: ``layer -> (weight, bias)`` replacing the output projection, nn.Linear layout.
        branch: ``(layer, out, x) -> out`` on the attention branch output before the residual
            adds the block input ``x`` (both ``[1, n, d]``).
        block: ``(layer, h) -> h`` on each block's output ``[1, n, d]``.
        attention: ``A -> A'`` applied to the recorded attention ``[L, h, n, n]`` when the
            change is made through ``context`` (the probabilities the model used).
    """

    context: Callable | None = None
    out_weight: Callable | None = None
    branch: Callable | None = None
    block: Callable | None = None
    attention: Callable | None = None


@dataclass
class _Pass:
    intervention: Intervention
    layer: int = -1
    x: Tensor | None = None
    v: Tensor | None = None
    v0: Tensor | None = None
    real: Tensor | None = None  # [B, n] bool, False on padding (None: no padding)
    ln_sigma: list = field(default_factory=list)  # (layer, sigma_min [B]) per LayerNorm call


_STATE: contextvars.ContextVar[_Pass | None] = contextvars.ContextVar("smoothviz_pass", default=None)


def install(model: torch.nn.Module, spec: ArchSpec) -> None:
    """Attach SmoothViz's hooks to every block of ``model`` once (idempotent)."""
    if getattr(model, "_smoothviz_hooks", False):
        return
    blocks = get_module(model, spec.layers)
    for block in blocks:
        block.register_forward_pre_hook(_block_pre, with_kwargs=True)
        block.register_forward_hook(_block_post)
        get_module(block, spec.value).register_forward_hook(_value_hook(spec))
        out = get_module(block, spec.out_proj)
        out.register_forward_pre_hook(_context_hook)
        out.register_forward_hook(_out_hook(spec))
        for path in spec.layernorms:
            get_module(block, path).register_forward_pre_hook(_ln_hook)
    model._smoothviz_hooks = True


def _block_pre(module, args, kwargs):
    state = _STATE.get()
    if state is not None:
        state.layer += 1
        state.x = args[0] if args else kwargs["hidden_states"]


def _block_post(module, args, output):
    state = _STATE.get()
    if state is None or state.intervention.block is None:
        return None
    if isinstance(output, tuple):
        return (state.intervention.block(state.layer, output[0]),) + tuple(output[1:])
    return state.intervention.block(state.layer, output)


def _value_hook(spec: ArchSpec):
    def hook(module, args, output):
        state = _STATE.get()
        if state is None:
            return
        v = output
        if spec.value_part is not None:
            v = output.chunk(3, dim=-1)[spec.value_part]
        state.v = v
        if state.layer == 0:
            state.v0 = v
    return hook


def _context_hook(module, args):
    state = _STATE.get()
    if state is None or state.intervention.context is None:
        return None
    return (state.intervention.context(state.layer, args[0], state.v, state.v0),) + tuple(args[1:])


def _out_hook(spec: ArchSpec):
    def hook(module, args, output):
        state = _STATE.get()
        if state is None:
            return None
        iv = state.intervention
        if iv.out_weight is not None:
            weight, bias = iv.out_weight(state.layer)
            output = torch.nn.functional.linear(args[0], weight, bias)
        if iv.branch is not None:
            output = iv.branch(state.layer, output, state.x)
        return output
    return hook


def _ln_hook(module, args):
    state = _STATE.get()
    if state is not None and isinstance(module, torch.nn.LayerNorm):
        std = args[0].detach().float().std(dim=-1, unbiased=False)  # [B, n]
        if state.real is not None:  # a padded row is no token of its sentence
            std = std.masked_fill(~state.real, float("inf"))
        state.ln_sigma.append((state.layer, std.amin(-1)))


# --------------------------------------------------------------------------- weights

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


# --------------------------------------------------------------------------- one pass

@dataclass(frozen=True)
class Trace:
    """Everything captured from one forward pass of one sentence.

    Shapes (n tokens, d width, L layers, h heads, d_h head width):

    ============  =====================  =================================================
    hidden        ``[L+1, n, d]``        H_0 (embedding output) … H_L
    attentions    ``[L, h, n, n]``       row-stochastic, as the model used them
    ln_sigma      ``[L, k]``             smallest per-token std of each LayerNorm's input
    ============  =====================  =================================================
    """

    hidden: Tensor
    attentions: Tensor
    ln_sigma: Tensor


def run(model, inputs: dict, intervention: Intervention | None = None) -> Trace:
    """Forward one tokenised sentence (batch 1) under ``intervention`` and capture a Trace.

    Args:
        inputs: keyword arguments for ``model`` (``input_ids`` … or ``inputs_embeds``).
    """
    return run_batch(model, inputs, intervention)[0]


def run_batch(model, inputs: dict, intervention: Intervention | None = None) -> list[Trace]:
    """Forward a batch of right-padded sentences; one Trace per sentence, cut to its real tokens.

    Padding never reaches a Trace: the model masks padded keys (their attention is exactly 0
    after the softmax), real tokens come first, so each sentence's states and attention are the
    leading ``m`` rows (and columns), and the LayerNorm statistics skip padded rows.

    Args:
        inputs: keyword arguments for ``model``, batched ``[B, n, …]``; ``attention_mask``
            ``[B, n]`` (1 on real tokens) marks the padding, and without it every row is real.
    """
    mask = inputs.get("attention_mask")
    real = None if mask is None else mask.bool()
    state = _Pass(intervention or Intervention(), real=real)
    token = _STATE.set(state)
    try:
        with torch.inference_mode():
            out = model(**inputs, output_hidden_states=True, output_attentions=True)
    finally:
        _STATE.reset(token)
    hidden = torch.stack(out.hidden_states, 1).float()   # [B, L+1, n, d]
    attn = torch.stack(out.attentions, 1).float()        # [B, L, h, n, n]
    lengths = [hidden.shape[2]] * hidden.shape[0] if real is None else real.sum(-1).tolist()
    ln = _ln_table(state.ln_sigma, attn.shape[1], hidden.shape[0])
    traces = []
    for b, m in enumerate(lengths):
        a = attn[b, :, :, :m, :m]
        if state.intervention.attention is not None:
            a = state.intervention.attention(a)
        traces.append(Trace(hidden[b, :, :m], a, ln[b]))
    return traces


def _ln_table(records: list, n_layers: int, batch: int) -> Tensor:
    """``[B, L, k]``: per sentence and layer, the σ_min of each LayerNorm call (NaN where fewer)."""
    per_layer: list[list[Tensor]] = [[] for _ in range(n_layers)]
    for layer, sigma in records:
        if 0 <= layer < n_layers:
            per_layer[layer].append(sigma.cpu())
    width = max((len(r) for r in per_layer), default=0)
    table = torch.full((batch, n_layers, width), float("nan"), dtype=torch.float32)
    for i, row in enumerate(per_layer):
        if row:
            table[:, i, : len(row)] = torch.stack(row, -1)
    return table
