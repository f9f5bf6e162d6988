"""Hierarchical fusion: combine the layers' outputs into one output.

Shi et al. (2022) propose concatenation, the element-wise maximum and a token-wise gate;
``fusion-mean`` (a weighted average) is SmoothViz's own baseline beside them. Fusion changes the
output, not the layers: the fused matrix is reported as an extra "layer" after the last one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from smoothviz.data import DEFAULT_GATE
from smoothviz.mitigations.base import Mitigation, MitigationError, Param

LAYERS = Param("text", "all", help="'all', one layer 'N' or a range 'A-B' of layer indices 0..L")


def select_layers(spec: str, n_layers: int, method: str) -> list[int]:
    """Parse ``all`` | ``N`` | ``A-B`` into hidden-state indices (1..L for ``all``)."""
    spec = spec.strip().lower()
    if spec in ("", "all"):
        return list(range(1, n_layers + 1))
    try:
        lo, _, hi = spec.partition("-")
        a, b = int(lo), int(hi) if hi else int(lo)
    except ValueError:
        raise MitigationError(f"{method}: layers must be 'all', 'N' or 'A-B', got '{spec}'") from None
    if not 0 <= a <= b <= n_layers:
        raise MitigationError(f"{method}: layers must lie within 0..{n_layers} with A <= B, got '{spec}'")
    return list(range(a, b + 1))


@dataclass(frozen=True)
class FusionMean(Mitigation):
    name = "fusion-mean"
    token_wise = True
    NEUTRAL = {"layers": "{L}"}
    summary = (
        "Σ_l w_l H_l over the chosen layers (uniform weights unless given): SmoothViz's own baseline, "
        "not one of Shi et al.'s fusions."
    )
    PARAMS = {
        "layers": LAYERS,
        "weights": Param("text", "", help="comma-separated non-negative weights, one per chosen layer"),
    }

    def check(self, n_layers, heads):
        _weights(self["weights"], len(select_layers(self["layers"], n_layers, self.name)), self.name)

    def fuse(self, hidden, ctx):
        layers = select_layers(self["layers"], ctx.n_layers, self.name)
        w = _weights(self["weights"], len(layers), self.name).to(hidden)
        return torch.einsum("l,lnd->nd", w, hidden[layers])


def _weights(text: str, count: int, method: str) -> torch.Tensor:
    if not text.strip():
        return torch.full((count,), 1.0 / count, dtype=torch.float64)
    try:
        w = torch.tensor([float(x) for x in text.split(",")], dtype=torch.float64)
    except ValueError:
        raise MitigationError(f"{method}: weights must be comma-separated numbers, got '{text}'") from None
    if len(w) != count:
        raise MitigationError(f"{method}: {count} weights needed (one per chosen layer), got {len(w)}")
    if not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise MitigationError(f"{method}: weights must be non-negative with a positive sum, got '{text}'")
    return w / w.sum()


@dataclass(frozen=True)
class FusionMax(Mitigation):
    name = "fusion-max"
    token_wise = True
    NEUTRAL = {"layers": "{L}"}
    summary = "Element-wise maximum over the chosen layers (Shi et al. 2022)."
    PARAMS = {"layers": LAYERS}

    def check(self, n_layers, heads):
        select_layers(self["layers"], n_layers, self.name)

    def fuse(self, hidden, ctx):
        return hidden[select_layers(self["layers"], ctx.n_layers, self.name)].amax(0)


@dataclass(frozen=True)
class FusionConcat(Mitigation):
    name = "fusion-concat"
    token_wise = True
    NEUTRAL = {"layers": "{L}"}
    summary = "[H_a ‖ … ‖ H_b] (Shi et al. 2022): metrics on the n × (k·d) matrix."
    PARAMS = {"layers": LAYERS}

    def check(self, n_layers, heads):
        select_layers(self["layers"], n_layers, self.name)

    def fuse(self, hidden, ctx):
        chosen = hidden[select_layers(self["layers"], ctx.n_layers, self.name)]
        return chosen.permute(1, 0, 2).reshape(chosen.shape[1], -1)


@dataclass(frozen=True)
class FusionGate(Mitigation):
    name = "fusion-gate"
    token_wise = True
    NEUTRAL = {"layers": "{L}"}
    summary = (
        "Token-wise gate (Shi et al. 2022) α_{i,l} = softmax_l(w_lᵀh_{i,l} + b_l), each fused layer with its own "
        "w_l and b_l, learned by `smoothviz fit-gate` on a labelled CSV with the encoder frozen; it fuses "
        "exactly the layers it was fitted on."
    )
    PARAMS = {
        "layers": LAYERS,
        "gate": Param(
            "text",
            "default",
            help="'default' (the shipped toy sentiment gate for the default "
            "model) or the path of a gate file written by `smoothviz fit-gate`",
        ),
    }

    def fitted(self, n_layers: int) -> tuple[dict, list[int]]:
        """The gate file and the layers it fuses; MitigationError if it cannot fuse them."""
        path = str(DEFAULT_GATE) if self["gate"] in ("", "default") else self["gate"]
        gate = load_gate(path)
        layers = select_layers(self["layers"], n_layers, self.name)
        if len(layers) > 1 and layers != gate["layers"]:
            raise MitigationError(
                f"fusion-gate: the gate was fitted on layers {span(gate['layers'])} ({len(gate['layers'])} layers, "
                f"each with its own w_l and b_l); it cannot fuse layers {span(layers)} ({len(layers)} layers): "
                f"choose layers={span(gate['layers'])}, or fit a gate for these with `smoothviz fit-gate --layers "
                f"{span(layers)}`"
            )
        return gate, layers

    def check(self, n_layers, heads):
        self.fitted(n_layers)

    def fuse(self, hidden, ctx):
        gate, layers = self.fitted(ctx.n_layers)
        if len(layers) == 1:  # softmax over one layer is 1: any gate fuses one layer into itself (the neutral setting)
            return hidden[layers[0]]
        w = torch.tensor(gate["w"], dtype=hidden.dtype)
        if w.shape[1] != hidden.shape[-1]:
            raise MitigationError(
                f"fusion-gate: the gate was fitted for width {w.shape[1]} "
                f"(model '{gate.get('model')}'), this model has width {hidden.shape[-1]}"
            )
        return gate_fuse(hidden[layers], w, torch.tensor(gate["b"], dtype=hidden.dtype))


def span(layers: list[int]) -> str:
    """``[4, 5, 6]`` → ``"4-6"`` (the ``layers`` syntax); ``"3"`` for one layer."""
    return str(layers[0]) if len(layers) == 1 else f"{layers[0]}-{layers[-1]}"


def gate_fuse(hidden: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``Σ_l α_{i,l} h_{i,l}`` with ``α_{i,l} = softmax_l(w_lᵀ h_{i,l} + b_l)``.

    One w_l and b_l per fused layer: a single bias shared by every layer would cancel in the
    softmax over layers.

    Args:
        hidden: ``[k, ..., n, d]``, the k fused layers first (any batch dimensions between).
        w: ``[k, d]``; b: ``[k]``.
    Returns:
        ``[..., n, d]``.
    """
    lift = (-1,) + (1,) * (hidden.dim() - 2)
    alpha = torch.softmax(torch.einsum("l...d,ld->l...", hidden, w) + b.view(lift), dim=0)  # [k, ..., n]
    return (alpha.unsqueeze(-1) * hidden).sum(0)


GATE_FORMAT = 2  # per-layer w [k, d] and b [k]; format 1 had one w [d] and one b for every layer


def load_gate(path: str) -> dict:
    """Read and check a gate file (JSON: never a pickle).

    Raises:
        MitigationError: not a gate file, or one in the old format (one w and b for every layer,
            whose b cancelled in the softmax): the message says to refit it.
    """
    try:
        gate = json.loads(Path(path).expanduser().read_text())
        w, b = gate["w"], gate["b"]
    except (OSError, ValueError, KeyError, TypeError):
        raise MitigationError(f"fusion-gate: '{path}' is not a gate file written by `smoothviz fit-gate`") from None
    if gate.get("format") != GATE_FORMAT or not isinstance(b, list) or not all(isinstance(r, list) for r in w):
        raise MitigationError(
            f"fusion-gate: '{path}' is a gate in the old format (one w and one bias b shared by "
            "every layer, and that b cancels in the softmax over layers): refit it with "
            "`smoothviz fit-gate`, which now learns one w_l and b_l per layer"
        )
    layers = gate.get("layers")
    if (
        not isinstance(layers, list)
        or not layers
        or len(layers) != len(w)
        or len(b) != len(w)
        or len({len(r) for r in w}) != 1
    ):
        raise MitigationError(
            f"fusion-gate: '{path}' is not a consistent gate file: it needs one row of w and "
            "one b per fitted layer; refit it with `smoothviz fit-gate`"
        )
    return gate
