"""Hierarchical fusion (Shi et al. 2022): combine the layers' outputs into one output.

Fusion changes the output, not the layers: the fused matrix is reported as an extra
"layer" after the last one.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data import DEFAULT_GATE
from .base import Mitigation, MitigationError, Param

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
    NEUTRAL = {"layers": "{L}"}
    summary = "Σ_l w_l H_l over the chosen layers (uniform weights unless given)."
    PARAMS = {"layers": LAYERS,
              "weights": Param("text", "", help="comma-separated non-negative weights, one per chosen layer")}

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
    NEUTRAL = {"layers": "{L}"}
    summary = "Element-wise maximum over the chosen layers."
    PARAMS = {"layers": LAYERS}

    def fuse(self, hidden, ctx):
        return hidden[select_layers(self["layers"], ctx.n_layers, self.name)].amax(0)


@dataclass(frozen=True)
class FusionConcat(Mitigation):
    name = "fusion-concat"
    NEUTRAL = {"layers": "{L}"}
    summary = "[H_a ‖ … ‖ H_b]: metrics on the n × (k·d) matrix."
    PARAMS = {"layers": LAYERS}

    def fuse(self, hidden, ctx):
        chosen = hidden[select_layers(self["layers"], ctx.n_layers, self.name)]
        return chosen.permute(1, 0, 2).reshape(chosen.shape[1], -1)




@dataclass(frozen=True)
class FusionGate(Mitigation):
    name = "fusion-gate"
    NEUTRAL = {"layers": "{L}"}
    summary = "Token-wise gate α_{i,l} = softmax_l(wᵀh_{i,l} + b), learned by `smoothviz fit-gate`."
    PARAMS = {"layers": LAYERS,
              "gate": Param("text", "default", help="'default' (the shipped toy sentiment gate for the default "
                            "model) or the path of a gate file written by `smoothviz fit-gate`")}

    def fuse(self, hidden, ctx):
        gate = load_gate(str(DEFAULT_GATE) if self["gate"] in ("", "default") else self["gate"])
        layers = select_layers(self["layers"], ctx.n_layers, self.name)
        w = torch.tensor(gate["w"], dtype=hidden.dtype)
        if w.shape[0] != hidden.shape[-1]:
            raise MitigationError(f"fusion-gate: the gate was fitted for width {w.shape[0]} "
                                  f"(model '{gate.get('model')}'), this model has width {hidden.shape[-1]}")
        return gate_fuse(hidden[layers], w, float(gate["b"]))


def gate_fuse(hidden: torch.Tensor, w: torch.Tensor, b: float) -> torch.Tensor:
    """``hidden [k, n, d]`` → ``Σ_l α_{i,l} h_{i,l}`` with α = softmax over layers of wᵀh + b."""
    alpha = torch.softmax(hidden @ w + b, dim=0)  # [k, n]
    return (alpha.unsqueeze(-1) * hidden).sum(0)


def load_gate(path: str) -> dict:
    """Read a gate file (JSON: never a pickle)."""
    try:
        gate = json.loads(Path(path).expanduser().read_text())
        _ = gate["w"], gate["b"]
    except (OSError, ValueError, KeyError, TypeError):
        raise MitigationError(f"fusion-gate: '{path}' is not a gate file written by `smoothviz fit-gate`") from None
    return gate
