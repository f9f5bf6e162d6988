"""SmoothViz's own attention function, registered once in transformers' attention registry.

Every model that routes attention through ``transformers``' ``AttentionInterface`` (BERT's family,
DistilBERT, ALBERT, GPT-2, Llama, Qwen2/3, Mistral, Gemma 2/3, Phi-3, ViT …) is loaded with
``attn_implementation=NAME`` and calls :func:`attention_forward` for every layer. It computes eager
attention exactly as transformers' own eager kernels do (grouped KV heads repeated per query head,
logit soft-capping, the additive mask as the model built it — causal, padding and sliding window
are all in it), records the probabilities, and applies the attention-level interventions of the
per-call state (:data:`smoothviz.model.capture._STATE`, a context variable): a forward pass without a
state is plain eager attention, so concurrent analyses cannot interfere.

The layer index comes from the order of the calls within one pass, not from ``module.layer_idx``
(ViT's modules have none, ALBERT shares one module across layers).
"""

from __future__ import annotations

import torch

NAME = "smoothviz"
_registered = False


def register() -> str:
    """Register :func:`attention_forward` (and the eager mask builder) under :data:`NAME`, once."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

        AttentionInterface.register(NAME, attention_forward)
        ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, eager_mask)
        _registered = True
    return NAME


def visible(attention_mask: torch.Tensor | None, shape: tuple, device) -> torch.Tensor:
    """Which keys each query may see, ``[B|1, 1|h, q, k]`` bool, from the mask the model passed
    (additive float: 0 visible, the dtype's minimum hidden; or boolean)."""
    if attention_mask is None:
        return torch.ones(1, 1, shape[-2], shape[-1], dtype=torch.bool, device=device)
    mask = attention_mask[..., : shape[-1]]
    if mask.dtype == torch.bool:
        return mask
    return mask > torch.finfo(mask.dtype).min / 2


def attention_forward(
    module, query, key, value, attention_mask, scaling=None, dropout=0.0, softcap=None, sliding_window=None, **kwargs
):
    """Eager attention with SmoothViz's recording and interventions.

    Args:
        query: ``[B, h, q, d_h]``; key, value: ``[B, h_kv, k, d_h]`` (h a multiple of h_kv).
        attention_mask: additive ``[B, 1, q, k]`` (or boolean), already holding the causal,
            padding and sliding-window structure; ``None``: every key visible.
        scaling: the logit scale (``d_h^-1/2`` when ``None``); softcap: Gemma 2's
            ``c·tanh(s/c)`` on the logits; sliding_window: already in the mask, unused here.
    Returns:
        ``(output [B, q, h, d_h], probabilities [B, h, q, k])``, as transformers' eager kernels.
    """
    from smoothviz.model.capture import _STATE

    groups = query.shape[1] // key.shape[1]
    if groups > 1:  # grouped-query attention: each KV head serves `groups` query heads in turn
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask[..., : key.shape[-2]]
    state = _STATE.get()
    if state is not None and state.allowed is not None:
        scores = _drop_keys(scores, attention_mask, state.allowed)
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    if dropout and module.training:
        probs = torch.nn.functional.dropout(probs, p=dropout, training=True)
    if state is None:
        return torch.matmul(probs, value).transpose(1, 2).contiguous(), probs
    layer = state.calls
    state.calls += 1
    iv = state.intervention
    out = torch.matmul(probs, value)  # [B, h, q, d_h]
    if iv.probs is not None:  # A -> A' applied to what the values are mixed with (AttnScale)
        seen = visible(attention_mask, scores.shape, scores.device)
        mixed = iv.probs(layer, probs, seen)
        state.mapped.append(mixed.detach())
        out = torch.matmul(mixed, value)
    if iv.context is not None:
        B, h, q, d_h = out.shape
        flat = lambda t: t.transpose(1, 2).reshape(B, t.shape[2], h * d_h)  # noqa: E731  [B, n, h*d_h]
        v = flat(value)
        if layer == 0:
            state.v0 = v
        out = iv.context(layer, flat(out), v, state.v0).reshape(B, q, h, d_h).transpose(1, 2)
    if state.on_layer is not None:  # a caller's per-layer callback (streaming analyses)
        state.on_layer(layer, probs)
    return out.transpose(1, 2).contiguous(), probs


def _drop_keys(scores: torch.Tensor, attention_mask, allowed: torch.Tensor) -> torch.Tensor:
    """Hide the keys not ``allowed [k]`` from every query that can still see another key.

    A query whose only visible keys are dropped ones (a decoder's first row, which sees only
    itself, when the first token is ``<bos>``) keeps its attention as it was: SmoothViz's own
    choice, since a softmax over no key is undefined and a uniform row would look ahead.
    """
    seen = visible(attention_mask, scores.shape, scores.device)
    keep = allowed.to(scores.device)[: scores.shape[-1]]
    left = seen & keep
    has = left.any(-1, keepdim=True)
    hide = ~keep & has
    return scores.masked_fill(hide, torch.finfo(scores.dtype).min)
