"""Shared machinery for mitigations: parameter specs, validation in one place, the model context."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from smoothviz.model.capture import Intervention
from smoothviz.model.handles import ModelContext


class MitigationError(ValueError):
    """A mitigation name or parameter that is not allowed; the message says what is."""


@dataclass(frozen=True)
class Param:
    """One parameter: its type, default, and what is allowed.

    ``kind`` is ``float``, ``int``, ``choice`` or ``text``; ``lo``/``hi`` bound numbers
    (inclusive), ``choices`` lists the allowed words.
    """

    kind: str
    default: Any
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    help: str = ""

    def allowed(self) -> str:
        """What values are allowed, in words (for error messages and the CLI's list)."""
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        if self.kind in ("float", "int"):
            return f"{'an integer' if self.kind == 'int' else 'a number'} in [{self.lo}, {self.hi}]"
        return self.help or "text"

    def parse(self, method: str, key: str, raw: Any) -> Any:
        """``raw`` (text or number) as this parameter's type; MitigationError naming what is allowed."""
        bad = MitigationError(f"{method}: {key} must be {self.allowed()}, got {raw!r}")
        if self.kind == "choice":
            value = str(raw).strip().lower()
            if value not in self.choices:
                raise bad
            return value
        if self.kind == "text":
            return str(raw).strip()
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise bad from None
        if value != value or not (self.lo <= value <= self.hi):  # NaN fails too
            raise bad
        if self.kind == "int":
            if value != int(value):
                raise bad
            return int(value)
        return value


@dataclass(frozen=True)
class Mitigation:
    """Base of every mitigation config: frozen parameters plus what they do.

    Subclasses set ``name``, ``PARAMS``, ``summary``, ``in_forward`` and ``NEUTRAL``, and override
    :meth:`intervention` (changes inside the forward pass), :meth:`out_weights` (changed weights,
    for the eigen-diagnostic), :meth:`fuse` (a fused output after it) and/or
    :meth:`lab_settings` (what stands for it on the lab model). The page, the model handles and
    the tests read these declarations; nothing lists mitigations by name elsewhere.

    Class attributes:
        in_forward: acts inside the forward pass, so a frozen pretrained model's later layers see
            states it never saw in training (the page warns).
        NEUTRAL: parameters that reproduce the baseline exactly; ``{L}`` in a value stands for
            the model's depth (a fusion of the last layer alone).
        token_wise: acts on each token alone (or on the weights), so corpus mode may pad its
            forward pass; a mitigation that reads every token (an SVD, a mean or a softmax over
            tokens) would read the padding, and its lines are batched by exact length instead.
        caveat: a sentence the page adds to the frozen-model caveat for this mitigation.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    PARAMS: ClassVar[dict[str, Param]] = {}
    in_forward: ClassVar[bool] = False
    token_wise: ClassVar[bool] = False
    caveat: ClassVar[str] = ""
    NEUTRAL: ClassVar[dict[str, Any]] = {}
    values: dict = field(default_factory=dict)

    @classmethod
    def neutral(cls, n_layers: int) -> dict:
        """The parameters that reproduce the baseline on a model of ``n_layers`` layers."""
        return {k: v.format(L=n_layers) if isinstance(v, str) else v for k, v in cls.NEUTRAL.items()}

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def params(self) -> dict:
        """The parameters actually used, defaults filled in."""
        return dict(self.values)

    def check(self, n_layers: int, heads: int) -> None:
        """Raise MitigationError if these parameters cannot apply to a model of ``n_layers`` layers
        and ``heads`` heads (a layer or head it lacks, an unreadable gate): before any sentence runs,
        so a page can reset a setting instead of failing the analysis. Syntax is checked at make()."""

    def intervention(self, ctx: ModelContext) -> Intervention | None:
        """What changes inside the forward pass (``None``: nothing, the baseline's pass is reused)."""
        return None

    def out_weights(self, ctx: ModelContext) -> torch.Tensor | None:
        """Attention output weights ``[L, d, h*d_h]`` the mitigated model uses; ``None``: its own."""
        return None

    def lab_settings(self, lab: dict) -> dict | None:
        """Lab settings that replace this mitigation on the lab model (RESEARCH §4's switches), or
        ``None``: applied as on any model. ``lab`` is the lab's current settings."""
        return None

    def fuse(self, hidden: torch.Tensor, ctx: ModelContext) -> torch.Tensor | None:
        """``hidden [L+1, n, d]`` → fused output ``[n, d']``, or ``None`` for non-fusion methods."""
        return None

    def key(self) -> tuple:
        """Hashable identity for caches."""
        return (self.name, tuple(sorted((k, str(v)) for k, v in self.values.items())))


def validate(cls: type[Mitigation], raw: dict[str, Any] | None) -> dict:
    """Check ``raw`` against ``cls.PARAMS``; fill defaults; raise MitigationError naming what is allowed."""
    raw = dict(raw or {})
    unknown = sorted(set(raw) - set(cls.PARAMS))
    if unknown:
        allowed = ", ".join(cls.PARAMS) or "none"
        raise MitigationError(f"{cls.name}: unknown parameter {', '.join(unknown)} (allowed: {allowed})")
    return {
        key: spec.parse(cls.name, key, raw[key]) if key in raw else spec.default for key, spec in cls.PARAMS.items()
    }
