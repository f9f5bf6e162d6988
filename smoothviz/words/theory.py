"""The numbers the Theory page quotes, as checkable facts: the words, the run they come from, and a
test of the measured value (``tests/test_claims.py`` re-runs each one).

The Theory page computes nothing; it quotes :data:`FACTS` by key, so a number on it can only be
one a test has measured on the same settings.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from smoothviz.words.lesson import PURE_LAB, REFERENCE


@dataclass(frozen=True)
class Fact:
    """One measured statement of the Theory page.

    Attributes:
        said: the words on the page.
        settings: the keyword arguments of :func:`smoothviz.analyze` that measure it.
        holds: ``analysis -> bool``, whether the numbers support ``said``.
    """

    said: str
    settings: dict
    holds: Callable


def _rows(a, run="baseline"):
    return a.runs()[run].rows


def _last(a, metric, run="baseline"):
    return _rows(a, run)[-1][metric]


def _r(x: float, digits: int) -> float:
    return round(x, digits)


_REF = {"text": REFERENCE}
_PURE = lambda ln: {"text": REFERENCE, "model": "lab", "lab": {**PURE_LAB, "layernorm": ln}}  # noqa: E731
_SPECTRAL = lambda mode: {"text": REFERENCE, "mitigation": "spectral", "params": {"mode": mode}}  # noqa: E731

FACTS: dict[str, Fact] = {
    "trained": Fact("cosine_mean rises from 0.045 to 0.325, but dm_rel only falls from 0.96 to 0.86, the numerical "
                    "rank stays full (27 of 27 tokens) and d_M grows at layers 1 and 4", _REF,
                    lambda a: (_r(_rows(a)[0]["cosine_mean"], 3), _r(_last(a, "cosine_mean"), 3),
                               _r(_rows(a)[0]["dm_rel"], 2), _r(_last(a, "dm_rel"), 2),
                               {r["numerical_rank"] for r in _rows(a)}, len(a.keep),
                               [r["layer"] for r in _rows(a)[1:] if r["dm_ratio"] > 1])
                    == (0.045, 0.325, 0.96, 0.86, {27}, 27, [1, 4])),
    "pure": Fact("dm_rel is 0.0045 at layer 2 and below 10⁻⁵ from layer 3 on", _PURE("none"),
                 lambda a: _r(_rows(a)[2]["dm_rel"], 4) == 0.0045 and all(r["dm_rel"] < 1e-5 for r in _rows(a)[3:])),
    "post_ln": Fact("with a post-LN LayerNorm added, dm_rel is below 10⁻⁶ from layer 4 on", _PURE("post"),
                    lambda a: all(r["dm_rel"] < 1e-6 for r in _rows(a)[4:]) and _rows(a)[3]["dm_rel"] >= 1e-6),
    "pre_ln": Fact("with a pre-LN one, below 10⁻⁶ from layer 4 on as well", _PURE("pre"),
                   lambda a: all(r["dm_rel"] < 1e-6 for r in _rows(a)[4:]) and _rows(a)[3]["dm_rel"] >= 1e-6),
    "shi_v": Fact("between 3.7×10⁴ and 1.1×10⁵ at every layer, while the measured ratio stays between 0.68 and 1.15",
                  _REF, lambda a: (_r(min(a.baseline.metric("shi_v")[1:]) / 1e4, 1), _r(max(a.baseline.metric("shi_v")[1:]) / 1e5, 1),
                                   _r(min(a.baseline.metric("dm_ratio")[1:]), 2), _r(max(a.baseline.metric("dm_ratio")[1:]), 2))
                  == (3.7, 1.1, 0.68, 1.15)),
    "attnscale": Fact("the last layer's cosine_mean goes from 0.325 to 0.362 at ω = 0.5",
                      {"text": REFERENCE, "mitigation": "attnscale", "params": {"omega": 0.5}},
                      lambda a: (_r(_last(a, "cosine_mean"), 3), _r(_last(a, "cosine_mean", "mitigated"), 3))
                      == (0.325, 0.362)),
    "clip-negative": Fact("0.325 → 0.548 clip-negative", _SPECTRAL("clip-negative"),
                          lambda a: _r(_last(a, "cosine_mean", "mitigated"), 3) == 0.548),
    "clip-positive": Fact("0.826 clip-positive", _SPECTRAL("clip-positive"),
                          lambda a: _r(_last(a, "cosine_mean", "mitigated"), 3) == 0.826),
    "flip": Fact("0.836 flip", _SPECTRAL("flip"),
                 lambda a: _r(_last(a, "cosine_mean", "mitigated"), 3) == 0.836),
}
