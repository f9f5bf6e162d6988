"""Run one sentence through a model and capture a :class:`Trace`.

Interventions never touch the shared model. Attention-level changes (on Q·Kᵀ, A, V or the
heads' outputs) happen inside SmoothViz's own attention function (:mod:`smoothviz.model.attention`),
which every model routing attention through transformers' registry is loaded with; what the
attention call cannot see (a block's input and output, the output projection, the norms, the
feed-forward input) is reached by hooks that :func:`install` attaches once, at load time. A model
that bypasses the registry (MPNet) gets the fallback: hooks on its value and output projections.
Every hook and the attention function read the per-call state of a
:class:`contextvars.ContextVar`; a forward pass without a state (someone else's baseline, in
another thread) sees plain eager attention and no-op hooks, so concurrent analyses with
different mitigations cannot interfere.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Callable

import torch

from smoothviz.model.models import ArchSpec, get_module

Tensor = torch.Tensor


@dataclass(frozen=True)
class Intervention:
    """What a mitigation changes inside the forward pass; every field is optional.

    Attributes:
        context: ``(layer, ctx, v, v0) -> ctx``, before the attention output projection;
            ctx and v are ``[B, n, h*d_h]`` (heads concatenated; grouped KV heads repeated per
            query head), v0 the first layer's values.
        probs: ``(layer, A, visible) -> A'`` on the softmax ``A [B, h, q, k]`` before it mixes
            the values, ``visible`` the keys each query may see (causal, window, padding);
            registry models only (AttnScale; the Trace's ``attentions`` are then the A′ the
            values were mixed with and its ``softmax`` is A).
        out_weight: ``layer -> (weight, bias)`` replacing the output projection, nn.Linear layout.
        branch: ``(layer, out, x) -> out`` on the attention branch output before the residual
            adds the block input ``x`` (both ``[1, n, d]``).
        block: ``(layer, h) -> h`` on each block's output ``[1, n, d]``.
        final_ln: ``(layer, s, x) -> s`` on the input ``s`` of each block's last LayerNorm, with
            ``x`` the feed-forward sub-layer's input (both ``[1, n, d]``; in a post-LN block
            ``s = FFN(x) + x``).
        attention: ``A -> A'`` applied to the recorded attention ``[L, h, n, n]`` when the
            change is made through ``context`` (the probabilities the model used).
        kept_heads: ``[L, h]`` bool, the heads whose output the model used (False: ablated);
            the head-mean graph of a layer averages the kept heads only.
        keys: ``special [n] bool -> [n] bool``, the tokens that may be attended to; applied as
            the model's attention mask, so the softmax renormalises over them at every layer
            (needs ``run(..., special=...)``).
    """

    context: Callable | None = None
    probs: Callable | None = None
    out_weight: Callable | None = None
    branch: Callable | None = None
    block: Callable | None = None
    final_ln: Callable | None = None
    attention: Callable | None = None
    kept_heads: Tensor | None = None
    keys: Callable | None = None


@dataclass
class _Pass:
    intervention: Intervention
    layer: int = -1
    x: Tensor | None = None
    v: Tensor | None = None
    v0: Tensor | None = None
    ffn_x: Tensor | None = None
    ln_sigma: list = field(default_factory=list)  # (layer, per-token std [B, n]) per LayerNorm call
    calls: int = 0  # attention calls so far: the layer index in attention.py
    allowed: Tensor | None = None  # [n] keys that may be attended to (Intervention.keys)
    on_layer: Callable | None = None  # (layer, probabilities [B, h, n, n]) per attention call
    block_out: Tensor | None = None  # the last block's output (the residual stream at layer L)
    mapped: list = field(default_factory=list)  # per layer, A′ [B, h, n, n] where Intervention.probs acts


_STATE: contextvars.ContextVar[_Pass | None] = contextvars.ContextVar("smoothviz_pass", default=None)


def uses_registry(model: torch.nn.Module) -> bool:
    """The model calls SmoothViz's registered attention function (else: the hook fallback)."""
    from smoothviz.model.attention import NAME

    return getattr(getattr(model, "config", None), "_attn_implementation", None) == NAME


def install(model: torch.nn.Module, spec: ArchSpec) -> None:
    """Attach SmoothViz's hooks to every block of ``model`` once (idempotent)."""
    if getattr(model, "_smoothviz_hooks", False):
        return
    registry = uses_registry(model)
    config = getattr(model, "config", None)
    heads = getattr(config, "num_attention_heads", 1)
    groups = heads // (getattr(config, "num_key_value_heads", None) or heads)
    blocks = get_module(model, spec.layers)
    model._smoothviz_final_norm = spec.final_norm is not None
    for block in blocks:
        block.register_forward_pre_hook(_block_pre, with_kwargs=True)
        block.register_forward_hook(_block_post)
        out = get_module(block, spec.out_proj)
        if not registry:  # the fallback: values and the heads' outputs seen around the attention
            get_module(block, spec.value).register_forward_hook(_value_hook(spec, heads // groups, groups))
            out.register_forward_pre_hook(_context_hook)
        out.register_forward_hook(_out_hook(spec))
        if spec.residual_in is not None:  # the attention residual adds another module's output
            get_module(block, spec.residual_in).register_forward_hook(_branch_hook)
        for i, path in enumerate(spec.layernorms):
            get_module(block, path).register_forward_pre_hook(_ln_hook(final=i == len(spec.layernorms) - 1))
        ffn = get_module(block, spec.ffn_in) if spec.ffn_in else None
        if ffn is not None:  # a lab without an MLP has none
            ffn.register_forward_pre_hook(_ffn_hook)
    model._smoothviz_hooks = True


def _block_pre(module, args, kwargs):
    state = _STATE.get()
    if state is not None:
        state.layer += 1
        state.x = args[0] if args else kwargs["hidden_states"]


def _block_post(module, args, output):
    state = _STATE.get()
    if state is None:
        return None
    if state.intervention.block is not None:
        if isinstance(output, tuple):
            output = (state.intervention.block(state.layer, output[0]),) + tuple(output[1:])
        else:
            output = state.intervention.block(state.layer, output)
    state.block_out = output[0] if isinstance(output, tuple) else output
    return output


def _value_hook(spec: ArchSpec, kv_heads: int = 1, groups: int = 1):
    """The values of every query head, ``[B, n, h*d_h]``: with grouped KV heads (``groups`` query
    heads per KV head) each KV head's values repeated for its query heads, as the registry path and
    transformers' ``repeat_kv`` do (query head i reads KV head i // groups)."""

    def hook(module, args, output):
        state = _STATE.get()
        if state is None:
            return
        v = output
        if spec.value_part is not None:
            v = output.chunk(3, dim=-1)[spec.value_part]
        if groups > 1:
            B, n, width = v.shape
            v = v.reshape(B, n, kv_heads, width // kv_heads).repeat_interleave(groups, dim=2).reshape(B, n, -1)
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
        if iv.branch is not None and spec.residual_in is None:
            output = iv.branch(state.layer, output, state.x)
        return output

    return hook


def _branch_hook(module, args, output):
    state = _STATE.get()
    if state is None or state.intervention.branch is None:
        return None
    return state.intervention.branch(state.layer, output, state.x)


def _ffn_hook(module, args):
    state = _STATE.get()
    if state is not None:
        state.ffn_x = args[0]


def _ln_hook(final: bool):
    def hook(module, args):
        state = _STATE.get()
        if state is None or not isinstance(module, torch.nn.LayerNorm):
            return None
        x, changed = args[0], None
        if final and state.intervention.final_ln is not None:
            x = changed = state.intervention.final_ln(state.layer, x, state.ffn_x)
        # Every token's std, not only the smallest: the analysis takes the minimum over the tokens
        # it keeps (special ones excluded or not). Left on the device: no sync per LayerNorm.
        state.ln_sigma.append((state.layer, x.detach().float().std(dim=-1, unbiased=False)))  # [B, n]
        return None if changed is None else (changed,) + tuple(args[1:])

    return hook


# --------------------------------------------------------------------------- one pass


@dataclass(frozen=True)
class Trace:
    """Everything captured from one forward pass of one sentence.

    Shapes (n tokens, d width, L layers, h heads, d_h head width):

    =============  =====================  ================================================
    hidden         ``[L+1, n, d]``        H_0 (embedding output) … H_L
    attentions     ``[L, h, n, n]``/None  as the model used them; rows sum to 1 (AttnScale's
                                          A′ has negative entries); None when not kept
                                          (``run(..., keep_attentions=False)``)
    ln_sigma       ``[L, m, n]``          each token's std of the input of each of a block's m
                                          LayerNorms, in forward order (NaN where a block has
                                          fewer; m = 0 without LayerNorms)
    softmax        ``[L, h, n, n]``/None  the softmax before ``attention_map``; only with one
    attention_map  callable or None       ``A -> A′`` (AttnScale), batched over leading dims
    final_norm     ``[n, d]``/None        a pre-norm model's final norm applied to H_L (a
                                          separate row, never layer L); None without one
    =============  =====================  ================================================

    The state convention, for every family: H_0 is the input of block 1 and H_l the output of
    block l (the residual stream). transformers' last hidden state is the final norm's output
    in a pre-norm model (GPT-2's ``ln_f``, Llama's ``norm``); SmoothViz keeps the block's own
    output as H_L and the normed one as ``final_norm``.
    """

    hidden: Tensor
    attentions: Tensor | None
    ln_sigma: Tensor
    softmax: Tensor | None = None
    attention_map: Callable | None = None
    kept_heads: Tensor | None = None
    final_norm: Tensor | None = None


def run(
    model,
    inputs: dict,
    intervention: Intervention | None = None,
    special: list | None = None,
    on_layer: Callable | None = None,
    keep_attentions: bool = True,
) -> Trace:
    """Forward one tokenised sentence (batch 1) under ``intervention`` and capture a Trace.

    Args:
        inputs: keyword arguments for ``model`` (``input_ids`` … or ``inputs_embeds``).
        special: the special-token mask, for an intervention with ``keys``.
        on_layer: ``(layer 0-based, probabilities [1, h, n, n])`` called as each layer's
            attention is computed (registry models only).
        keep_attentions: ``False``: the model does not collect the attention of every layer
            (``Trace.attentions`` is ``None``); a streaming caller reads each layer in ``on_layer``
            and lets it go (:mod:`smoothviz.pipeline.stream`: 4.5 GB of probabilities at 2,048 tokens on
            a 30-layer, 9-head model are never held at once).
    """
    iv = intervention or Intervention()
    allowed = None
    if iv.keys is not None:  # keys hidden from every row
        if special is None:
            raise ValueError("this intervention masks keys: pass the special-token mask")
        allowed = iv.keys(torch.tensor(special, dtype=torch.bool))
        if not uses_registry(model):  # the fallback: an attention mask that is not padding
            first = next(iter(inputs.values()))
            inputs = {**inputs, "attention_mask": allowed.to(torch.long).unsqueeze(0).to(first.device)}
            allowed = None
    return _forward(model, inputs, iv, real=None, allowed=allowed, on_layer=on_layer, keep=keep_attentions)[0]


def run_batch(model, inputs: dict, intervention: Intervention | None = None) -> list[Trace]:
    """Forward a batch of right-padded sentences; one Trace per sentence, cut to its real tokens.

    Padding never reaches a Trace: the model masks padded keys (their attention is exactly 0
    after the softmax), real tokens come first, so each sentence's states and attention are the
    leading ``m`` rows (and columns), and the LayerNorm statistics are cut to them too.

    Args:
        inputs: keyword arguments for ``model``, batched ``[B, n, …]``; ``attention_mask``
            ``[B, n]`` (1 on real tokens) marks the padding, and without it every row is real.
    """
    iv = intervention or Intervention()
    if iv.keys is not None:
        raise ValueError("an intervention that masks keys runs one sentence at a time (capture.run)")
    mask = inputs.get("attention_mask")
    return _forward(model, inputs, iv, real=None if mask is None else mask.bool())


def _forward(
    model,
    inputs: dict,
    iv: Intervention,
    real: Tensor | None,
    allowed: Tensor | None = None,
    on_layer: Callable | None = None,
    keep: bool = True,
) -> list[Trace]:
    """One forward pass of a batch under ``iv``; a Trace per sentence (its first ``real`` tokens);
    ``keep=False``: without the attention (one sentence, no attention map)."""
    state = _Pass(iv, allowed=allowed, on_layer=on_layer)
    token = _STATE.set(state)
    try:
        with torch.inference_mode():
            out = model(**inputs, output_hidden_states=True, output_attentions=keep)
    finally:
        _STATE.reset(token)
    states = list(out.hidden_states)
    normed = None
    if getattr(model, "_smoothviz_final_norm", False) and state.block_out is not None:
        normed = states[-1].float()  # the final norm's output: a row of its own, not layer L
        states[-1] = state.block_out
    hidden = torch.stack(states, 1).float()  # [B, L+1, n, d]
    if not keep:
        ln = _ln_table(state.ln_sigma, hidden.shape[1] - 1, 1, hidden.shape[2])
        return [
            Trace(hidden[0], None, ln[0], kept_heads=iv.kept_heads, final_norm=None if normed is None else normed[0])
        ]
    attn = torch.stack(out.attentions, 1).float()  # [B, L, h, n, n]
    lengths = [hidden.shape[2]] * hidden.shape[0] if real is None else real.sum(-1).tolist()
    ln = _ln_table(state.ln_sigma, attn.shape[1], hidden.shape[0], hidden.shape[2])  # [B, L, m, n]
    mapping, kept = iv.attention, iv.kept_heads
    # what the values were mixed with, where the attention function changed A itself (AttnScale's A′
    # over the keys each row sees, sliding windows included); else ``mapping`` rebuilds it
    used = torch.stack(state.mapped, 1).float() if state.mapped else None  # [B, L, h, n, n]
    traces = []
    for b, m in enumerate(lengths):
        a = attn[b, :, :, :m, :m]
        final = None if normed is None else normed[b, :m]
        if mapping is None:
            traces.append(Trace(hidden[b, :, :m], a, ln[b, ..., :m], kept_heads=kept, final_norm=final))
        else:
            applied = mapping(a) if used is None else used[b, :, :, :m, :m]
            traces.append(
                Trace(
                    hidden[b, :, :m],
                    applied,
                    ln[b, ..., :m],
                    softmax=a,
                    attention_map=mapping,
                    kept_heads=kept,
                    final_norm=final,
                )
            )
    return traces


def _ln_table(records: list, n_layers: int, batch: int, n: int) -> Tensor:
    """``(layer, std [B, n])`` records → ``[B, L, m, n]``, m the most LayerNorms any block called."""
    per_layer: list[list[Tensor]] = [[] for _ in range(n_layers)]
    for layer, sigma in records:
        if 0 <= layer < n_layers:
            per_layer[layer].append(sigma.cpu())
    width = max((len(r) for r in per_layer), default=0)
    table = torch.full((batch, n_layers, width, n), float("nan"))
    for i, row in enumerate(per_layer):
        if row:
            table[:, i, : len(row)] = torch.stack(row, 1)
    return table
