"""Head interventions: ablate heads, drop the attention sinks (issue 13).

``ablate=L.H,…`` zeroes head H (0-based, as ``--head``) of layer L (1-based, as on the page) in
the concatenated context, before the output projection (the projection's bias stays): the
head's output never reaches the residual stream. Ablated heads are left out of their layer's
head-mean graph; a layer that keeps none has no graph (its graph metrics are null, with a note).

``sink=drop`` removes attention to the special tokens at every layer, rows renormalised. It is
done through the model's attention mask (the special tokens' key columns masked), so the
softmax itself renormalises over the other tokens and every later layer computes with that
attention: the recorded attention, and so the run's graphs, is the attention actually used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from smoothviz.mitigations.base import Mitigation, MitigationError, Param
from smoothviz.model.capture import Intervention

_PAIR = re.compile(r"^(\d+)\.(\d+)$")


def parse_ablate(text: str) -> list[tuple[int, int]]:
    """``"L.H,L.H"`` → sorted unique ``[(L, H)]`` (L 1-based, H 0-based); MitigationError on bad syntax."""
    pairs = set()
    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        m = _PAIR.match(part)
        if m is None:
            raise MitigationError(
                f"heads: ablate must be a list like 3.0,5.11 (layer 1-based . head 0-based), got {part!r}"
            )
        layer, head = int(m.group(1)), int(m.group(2))
        if layer < 1:
            raise MitigationError(f"heads: layers count from 1, got {part!r}")
        pairs.add((layer, head))
    return sorted(pairs)


def format_ablate(pairs) -> str:
    """``[(L, H)]`` → ``"L.H,L.H"`` (sorted)."""
    return ",".join(f"{layer}.{head}" for layer, head in sorted(set(pairs)))


@dataclass(frozen=True)
class Heads(Mitigation):
    name = "heads"
    in_forward = True
    NEUTRAL = {"ablate": "", "sink": "none"}
    summary = (
        "Cut the graph: ablate=L.H,… zeroes head H's output at layer L before the output projection "
        "(and leaves it out of the layer's head-mean graph); sink=drop removes attention to the special "
        "tokens at every layer, rows renormalised, through the attention mask (SmoothViz's own interventions; "
        "attention sinks: Xiao et al. 2024)."
    )
    # Each intervention only when asked (issue 22): ablating a head alone keeps the sinks, so the
    # defaults are the neutral values and the mitigation with no parameters changes nothing.
    PARAMS = {
        "ablate": Param("text", "", help="heads to zero, L.H,… (layer 1-based, head 0-based), e.g. 3.0,5.11"),
        "sink": Param(
            "choice", "none", choices=("none", "drop"), help="drop: no attention to special tokens, rows renormalised"
        ),
    }

    def __post_init__(self):
        parse_ablate(self.values.get("ablate", ""))  # syntax errors at make(), before any model

    def ablated(self, n_layers: int, heads: int) -> list[tuple[int, int]]:
        """The ablated ``(layer 1-based, head 0-based)`` pairs, checked against the model."""
        pairs = parse_ablate(self["ablate"])
        for layer, head in pairs:
            if layer > n_layers:
                raise MitigationError(f"heads: layer {layer} does not exist: this model has layers 1..{n_layers}")
            if head >= heads:
                raise MitigationError(f"heads: head {head} does not exist: this model has heads 0..{heads - 1}")
        return pairs

    def check(self, n_layers, heads):
        self.ablated(n_layers, heads)

    def intervention(self, ctx):
        pairs = self.ablated(ctx.n_layers, ctx.heads)
        drop = self["sink"] == "drop"
        if not pairs and not drop:
            return None
        context = kept = None
        if pairs:
            kept = torch.ones(ctx.n_layers, ctx.heads, dtype=torch.bool)
            by_layer: dict[int, list[int]] = {}
            for layer, head in pairs:
                kept[layer - 1, head] = False
                by_layer.setdefault(layer - 1, []).append(head)
            n_heads = ctx.heads

            def context(layer, out, v, v0):
                cut = by_layer.get(layer)
                if not cut:
                    return out
                d_h = out.shape[-1] // n_heads
                mask = torch.ones(n_heads, 1, dtype=out.dtype, device=out.device)
                mask[cut] = 0
                return (out.unflatten(-1, (n_heads, d_h)) * mask).flatten(-2)

        keys = (lambda special: ~special) if drop else None
        return Intervention(context=context, kept_heads=kept, keys=keys)
