"""Mitigations of docs/SCIENCE.md §3, one registry: ``REGISTRY[name]`` is the config class.

``make(name, params)`` validates the parameters in one place and returns a frozen config.
"""

from __future__ import annotations

from smoothviz.mitigations.base import Mitigation, MitigationError, ModelContext, Param, validate
from smoothviz.mitigations.fusion import FusionConcat, FusionGate, FusionMax, FusionMean
from smoothviz.mitigations.heads import Heads
from smoothviz.mitigations.inference import AttnScale, ContraNorm, NeuTRENO, NoResidual, SoftDecay
from smoothviz.mitigations.spectral import Spectral

REGISTRY: dict[str, type[Mitigation]] = {
    cls.name: cls
    for cls in (
        FusionMean,
        FusionMax,
        FusionConcat,
        FusionGate,
        NeuTRENO,
        SoftDecay,
        Spectral,
        AttnScale,
        ContraNorm,
        NoResidual,
        Heads,
    )
}

NAMES = tuple(REGISTRY)


def make(name: str, params: dict | None = None) -> Mitigation:
    """Build a validated mitigation config.

    Raises:
        MitigationError: unknown name or a parameter out of range; the message lists what is allowed.
    """
    cls = REGISTRY.get((name or "").strip().lower())
    if cls is None:
        raise MitigationError(f"unknown mitigation '{name}' (choose from: {', '.join(REGISTRY)})")
    return cls(values=validate(cls, params))


def label(name: str, params: dict | None = None) -> str:
    """A mitigation's display name, the one everywhere (page, compare, corpus, report):
    ``name (k=v, …)``, parameters left empty omitted."""
    shown = ", ".join(f"{k}={v}" for k, v in (params or {}).items() if v != "")
    return name + (f" ({shown})" if shown else "")


__all__ = ["REGISTRY", "NAMES", "make", "label", "Mitigation", "MitigationError", "ModelContext", "Param"]
