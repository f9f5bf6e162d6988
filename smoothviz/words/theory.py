"""The numbers the Theory page quotes, as checkable facts: the words, the run they come from, and a
test of the measured value (``tests/test_claims.py`` re-runs each one).

The Theory page computes nothing; it quotes :data:`FACTS` by key, so a number on it can only be
one a test has measured on the same settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from smoothviz.words.lesson import PURE_LAB, REFERENCE, SINK_SENTENCE


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
    "trained": Fact(
        "cosine_mean rises from 0.045 to 0.325, but dm_rel only falls from 0.96 to 0.86, the numerical "
        "rank stays full (27 of 27 tokens) and d_M grows at layers 1 and 4",
        _REF,
        lambda a: (
            (
                _r(_rows(a)[0]["cosine_mean"], 3),
                _r(_last(a, "cosine_mean"), 3),
                _r(_rows(a)[0]["dm_rel"], 2),
                _r(_last(a, "dm_rel"), 2),
                {r["numerical_rank"] for r in _rows(a)},
                len(a.keep),
                [r["layer"] for r in _rows(a)[1:] if r["dm_ratio"] > 1],
            )
            == (0.045, 0.325, 0.96, 0.86, {27}, 27, [1, 4])
        ),
    ),
    "pure": Fact(
        "dm_rel is 0.0045 at layer 2 and below 10⁻⁵ from layer 3 on",
        _PURE("none"),
        lambda a: _r(_rows(a)[2]["dm_rel"], 4) == 0.0045 and all(r["dm_rel"] < 1e-5 for r in _rows(a)[3:]),
    ),
    "post_ln": Fact(
        "with a post-LN LayerNorm added, dm_rel is below 10⁻⁶ from layer 4 on",
        _PURE("post"),
        lambda a: all(r["dm_rel"] < 1e-6 for r in _rows(a)[4:]) and _rows(a)[3]["dm_rel"] >= 1e-6,
    ),
    "pre_ln": Fact(
        "with a pre-LN one, below 10⁻⁶ from layer 4 on as well",
        _PURE("pre"),
        lambda a: all(r["dm_rel"] < 1e-6 for r in _rows(a)[4:]) and _rows(a)[3]["dm_rel"] >= 1e-6,
    ),
    "shi_v": Fact(
        "between 3.7×10⁴ and 1.1×10⁵ at every layer, while the measured ratio stays between 0.68 and 1.15",
        _REF,
        lambda a: (
            (
                _r(min(a.baseline.metric("shi_v")[1:]) / 1e4, 1),
                _r(max(a.baseline.metric("shi_v")[1:]) / 1e5, 1),
                _r(min(a.baseline.metric("dm_ratio")[1:]), 2),
                _r(max(a.baseline.metric("dm_ratio")[1:]), 2),
            )
            == (3.7, 1.1, 0.68, 1.15)
        ),
    ),
    "attnscale": Fact(
        "the last layer's cosine_mean goes from 0.325 to 0.362 at ω = 0.5",
        {"text": REFERENCE, "mitigation": "attnscale", "params": {"omega": 0.5}},
        lambda a: (_r(_last(a, "cosine_mean"), 3), _r(_last(a, "cosine_mean", "mitigated"), 3)) == (0.325, 0.362),
    ),
    "clip-negative": Fact(
        "0.325 → 0.548 clip-negative",
        _SPECTRAL("clip-negative"),
        lambda a: _r(_last(a, "cosine_mean", "mitigated"), 3) == 0.548,
    ),
    "clip-positive": Fact(
        "0.826 clip-positive",
        _SPECTRAL("clip-positive"),
        lambda a: _r(_last(a, "cosine_mean", "mitigated"), 3) == 0.826,
    ),
    "flip": Fact("0.836 flip", _SPECTRAL("flip"), lambda a: _r(_last(a, "cosine_mean", "mitigated"), 3) == 0.836),
}


# --------------------------------------------------------------------------- the embedded decoder


def _sinks(a) -> tuple:
    """What the sink paragraph says: tokens, depth, heads, the last layer's share to the first token
    and its uniform share, the layers where not every head is a sink (with their rates), the peak."""
    from smoothviz.science.sinks import uniform_share

    mass, rate = a.baseline.metric("first_token_mass"), a.baseline.metric("sink_rate")
    L = a.n_layers
    peak = max(range(1, L + 1), key=lambda l: mass[l])
    return (
        len(a.tokens),
        a.tokens[0],
        L,
        a.heads,
        _r(mass[L], 2),
        _r(uniform_share(len(a.tokens), a.causal), 2),
        rate[L],
        {l: rate[l] for l in range(1, L + 1) if rate[l] < 1},
        _r(mass[peak], 2),
        peak,
    )


def _shared(a) -> tuple:
    """What the decoder paragraph says of the last layer: cosine_mean, dm_rel, effective rank, the
    dominant dimension and its share of the squared norm, cosine_centred."""
    from smoothviz.words.claims import dominant_dimensions

    last = _rows(a)[-1]
    (dim, share), *_ = dominant_dimensions(a.baseline.hidden[-1]) or ((None, 0.0),)
    return (
        _r(last["cosine_mean"], 3),
        _r(last["dm_rel"], 3),
        _r(last["effective_rank"], 1),
        dim,
        _r(share, 2),
        _r(last["cosine_centred"], 3),
    )


_GEMMA = {"text": SINK_SENTENCE, "model": "gemma-3-270m"}
# What the page says is written from the measured values, so words and check share one source.
_SINK = (12, "<bos>", 18, 4, 0.70, 0.26, 1.0, {3: 0.75}, 0.91, 6)
_SHARED = (0.934, 0.337, 5.5, 163, 0.91, -0.063)


def _sink_words(n, first, L, heads, mass, uniform, rate, partial, peak_mass, peak) -> str:
    others = ", ".join(f"layer {l} ({r * heads:.0f} of {heads})" for l, r in partial.items())
    return (
        f"({n} tokens with `{first}`): at layer {L} the first token receives **{mass:.2f}** of all attention, "
        f"where uniform attention over the visible tokens would give it {uniform:.2f}, and "
        f"{f'all {heads}' if rate == 1 else f'{rate * heads:.0f} of {heads}'} heads exceed ε = 0.3; so do all heads of every other layer except {others}, and the share "
        f"peaks at {peak_mass:.2f} (layer {peak})"
    )


# The Theory page's numbers about the embedded decoder (its sink and decoder paragraphs). They load
# gemma-3-270m, so the slow lane checks them (tests/test_gemma.py), apart from FACTS.
DECODER_FACTS: dict[str, Fact] = {
    "sink": Fact(_sink_words(*_SINK), _GEMMA, lambda a: _sinks(a) == _SINK),
    "shared": Fact(
        f"Gemma's cosine_mean is {_SHARED[0]} at layer 18 while dm_rel is still {_SHARED[1]} and the "
        f"effective rank {_SHARED[2]}: one dimension ({_SHARED[3]}) holds {_SHARED[4]:.0%} of the states' "
        "squared norm",
        _GEMMA,
        lambda a: _shared(a)[:5] == _SHARED[:5],
    ),
    "centred": Fact(
        f"Removing the mean token leaves a mean cosine of {_SHARED[5]:.3f} (**cosine_centred**)".replace("-", "−"),
        _GEMMA,
        lambda a: _shared(a)[5] == _SHARED[5],
    ),
}
