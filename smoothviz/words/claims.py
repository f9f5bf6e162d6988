"""Claims as data: every sentence SmoothViz writes about the numbers is a :class:`Claim` first.

A claim holds what is said (its ``kind``), about which run, metric and layers, the values it
quotes and the rule that licensed it. :func:`render` turns claims into the words on the page;
:func:`check` re-derives each claim from an analysis's numbers, independently of the code that
made it (:mod:`smoothviz.words.trends`, :mod:`smoothviz.words.lesson`), and says what the numbers contradict.
A test runs :func:`check` over many inputs (``tests/test_claims.py``).

Pure functions, no UI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from smoothviz.science.metrics import METRICS

RTOL = 1e-3  # a relative move at most this is "unchanged" (and said so), never a move
COLLAPSED = 1e-5  # dm_rel below this: one vector up to float32 rounding (SmoothViz's own threshold)
# A raw cosine_mean this high while dm_rel is still this large is a component every token shares (a
# decoder's massive activations), not tokens becoming one vector (SmoothViz's own thresholds).
SHARED_COSINE, SHARED_DM = 0.9, 0.1
DOMINANT_SHARE, DOMINANT_MOST = 0.1, 3  # a dimension holding ≥ 10 % of Σ‖h_i‖² is named (at most three)

FROZEN_CAVEAT = (
    "{name} was not part of this pretrained model's training (its paper trains or fine-tunes a model "
    "with it, or uses it as an ablation): applied to the frozen weights, it changes what the network "
    "computes, and whatever comes after it sees states out of distribution (never seen in training), "
    "so the mitigated numbers show what the intervention does to this network, not what a model "
    "trained with it would do."
)
# The same caveat in one line, for where it heads the page (its full text one click away).
FROZEN_CAVEAT_LINE = "{name} on frozen weights: what it does to this network, not what a model trained with it would do"
FROZEN_CAVEAT_ALL = (
    "None of {names} was part of a pretrained model's training (their papers train or fine-tune a "
    "model with them, or use them as ablations): applied to the frozen weights, each changes what "
    "the network computes, and whatever comes after it sees states out of distribution (never "
    "seen in training), so the mitigated numbers show what the intervention does to this "
    "network, not what a model trained with it would do. SmoothViz's fusions only read the "
    "finished layers."
)


def in_forward_mitigations() -> list[str]:
    """The registered mitigations that act inside the forward pass (the ones the caveat is about)."""
    from smoothviz.mitigations import REGISTRY

    return [name for name, cls in REGISTRY.items() if cls.in_forward]


def frozen_caveat(mitigation: str | None, lab=None) -> str | None:
    """The one caveat every page and export that shows a mitigation on a pretrained model carries.

    Args:
        mitigation: the mitigation's registry name (``None`` or ``"none"``: no mitigation).
        lab: the lab settings when the model is the lab (trained by no one: no caveat).

    Returns:
        The sentence, or ``None`` where it does not apply: no mitigation, the lab, or a method
        that only reads the finished forward pass (a fusion).
    """
    if lab or mitigation not in in_forward_mitigations():
        return None
    return FROZEN_CAVEAT.format(name=mitigation)


def frozen_caveat_line(mitigation: str | None, lab=None) -> str | None:
    """:func:`frozen_caveat` in one line (the page's heading of it; the full text beside it)."""
    return None if frozen_caveat(mitigation, lab) is None else FROZEN_CAVEAT_LINE.format(name=mitigation)


def frozen_caveat_all() -> str:
    """The same caveat about every in-forward mitigation at once (the Theory page's)."""
    names = in_forward_mitigations()
    return FROZEN_CAVEAT_ALL.format(names=", ".join(names[:-1]) + f" or {names[-1]}")


def smoothing_direction() -> dict[str, int]:
    """+1 where a state metric rises as tokens become alike, −1 where it falls (the registry's arrows),
    and ``d_M`` (Shi et al.'s distance to the smooth subspace, from the measured ratio), which falls."""
    out = {m.name: 1 if m.direction == "↑" else -1 for m in METRICS if m.direction and not m.per_layer}
    out["d_M"] = -1
    return out


@dataclass(frozen=True)
class Claim:
    """One checkable statement about an analysis.

    Attributes:
        kind: what is claimed (see :data:`KINDS`).
        run: ``baseline`` or ``mitigated`` (the run the claim is about; ``""`` for the tokens).
        metric: the metric's name (``d_M`` for the measured ratio d_M(H_l)/d_M(H_{l−1})).
        layers: the layers it is about (``-1`` stands for a fusion's fused output).
        values: the numbers (and words) it quotes, in the order its kind defines.
        rule: the rule that licensed it, in words (shown in tests, never on the page).
        name: how the run is called on the page.
    """

    kind: str
    run: str = "baseline"
    metric: str = ""
    layers: tuple = ()
    values: tuple = ()
    rule: str = ""
    name: str = ""


# kind → what ``values`` holds. Each kind has a renderer and a checker below.
KINDS = {
    "span": "(first, last[, at most]): a metric from layers[0] to layers[1]",
    "one_token": "(): one token analysed, so no pairs and no collapse",
    "collapse": "(threshold,): dm_rel below it from layers[0] on, and not before",
    "against": "(scope,): the metric moves against the smoothing direction at exactly these layers of 1…scope",
    "flat": "(scope,): the metric moves by at most RTOL at exactly these layers of 1…scope",
    "undefined": "(scope,): the metric has no value at these layers of 1…scope",
    "toward": "(scope, ((metric, layer), …)): every metric at every layer of 1…scope but those listed moves in the smoothing direction",
    "identical": "(fusion,): the mitigated run's layers equal the baseline's",
    "effect": "(baseline, mitigated, verdict): the output's metric against the baseline's last layer",
    "agreement": "((metric, verdict), …): the effect claims' verdicts, and whether they agree",
    "value": "(value, digits): a metric at one layer of one run",
    "constant": "(value,): a metric equal to value at each of these layers",
    "tokens": "(words, specials, splits): how the words of the text become the tokens",
    "sink_drop": "(dropped, marked): the special tokens of this text sink=drop removed, and the model's special tokens",
    "shared": "(cosine_mean, dm_rel, cosine_centred, ((dimension, share), …)): at layers[0] a high raw cosine "
    "with dm_rel far from 0, the centred cosine and the dimensions that dominate the states' norm",
}


# --------------------------------------------------------------------------- numbers


def fmt(value: float | None) -> str:
    """A value as the captions show it: three significant digits, scientific below 1e-3."""
    if value is None:
        return "undefined"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


def moves(before, after, sign: int, rtol: float = RTOL) -> str | None:
    """How a metric moves from ``before`` to ``after``: ``toward`` (the smoothing direction),
    ``against``, ``flat`` (a relative move of at most ``rtol``) or ``None`` (undefined)."""
    if before is None or after is None or not (math.isfinite(before) and math.isfinite(after)):
        return None
    delta = sign * (after - before)
    if abs(delta) <= rtol * max(abs(before), abs(after)):
        return "flat"
    return "toward" if delta > 0 else "against"


def verdict(metric: str, baseline: float, mitigated: float) -> str:
    """``unchanged`` when both values read the same at the shown precision, else ``more`` or ``less``
    smoothing than the baseline by this metric."""
    if fmt(baseline) == fmt(mitigated):
        return "unchanged"
    return "more" if smoothing_direction()[metric] * (mitigated - baseline) > 0 else "less"


def layer_list(layers, scope: int | None = None) -> str:
    """``[3]`` → "layer 3"; ``[3, 5, 6, 7]`` → "layers 3 and 5–7"; every layer of 1…scope → "every layer"."""
    layers = sorted(layers)
    if scope is not None and layers == list(range(1, scope + 1)) and scope > 1:
        return "every layer"
    if len(layers) == 1:
        return f"layer {layers[0]}"
    runs, start = [], layers[0]
    for prev, cur in zip(layers, layers[1:] + [None]):
        if cur != prev + 1:
            runs.append(f"{start}" if start == prev else f"{start}–{prev}")
            start = cur
    return "layers " + (", ".join(runs[:-1]) + f" and {runs[-1]}" if len(runs) > 1 else runs[0])


# --------------------------------------------------------------------------- rendering

_VERB = {1: "rises", -1: "falls"}


def render(claim: Claim) -> str:
    """One claim in words (a clause or a sentence, as its kind defines)."""
    return _RENDER[claim.kind](claim)


def _span(c: Claim) -> str:
    text = f"{c.metric} {fmt(c.values[0])} → {fmt(c.values[1])}"
    return text + (f" (of at most {c.values[2]})" if len(c.values) > 2 else "")


def _one_token(c: Claim) -> str:
    return (
        "Only one token is analysed: it has no pairs, so the pairwise metrics are undefined, and dm_rel is 0 "
        "by definition (one token is trivially its own mean), which is not a collapse."
    )


def _collapse(c: Claim) -> str:
    threshold = f"{c.values[0]:.0e}".replace("e-0", "e-")
    return (
        f"From layer {c.layers[0]} on dm_rel stays below {threshold}: every token is the same vector up "
        "to float32 rounding (a collapse), and the other metrics there are rounding noise."
    )


def _against(c: Claim) -> str:
    verb = "grows" if c.metric == "d_M" else _VERB[-smoothing_direction()[c.metric]]
    return f"{c.metric} {verb} at {layer_list(c.layers, c.values[0])}"


def _flat(c: Claim) -> str:
    return f"{c.metric} at {layer_list(c.layers, c.values[0])}"


def _undefined(c: Claim) -> str:
    return f"{c.metric} at {layer_list(c.layers, c.values[0])}"


def _toward(c: Claim) -> str:
    return (
        "every other metric and layer moves in the smoothing direction"
        if c.values[1]
        else "every metric moves in the smoothing direction at every layer"
    )


def _identical(c: Claim) -> str:
    why = (
        "a fusion only combines the layers' outputs"
        if c.values[0]
        else "at this setting it changes nothing the metrics read"
    )
    return f"{c.name} leaves every layer exactly as the baseline has it ({why})."


def _effect(c: Claim) -> str:
    base, mit, said = c.values
    if said == "unchanged":
        return f"leaves {c.metric} unchanged at {fmt(base)} (at the shown precision)"
    verb = "raises" if mit > base else "lowers"
    return f"{verb} {c.metric} from {fmt(base)} to {fmt(mit)} ({said} smoothing by {c.metric})"


def _agreement(c: Claim) -> str:
    said = dict(c.values)
    moved = {m: v for m, v in said.items() if v != "unchanged"}
    still = [m for m, v in said.items() if v == "unchanged"]
    if not moved:
        return f"By {' and '.join(said)} the output reads as the baseline's at the shown precision."
    if len(set(moved.values())) == 1:
        word = next(iter(moved.values()))
        text = f"By {' and '.join(moved)}: {word} smoothing than the baseline"
        return text + (f"; {' and '.join(still)} unchanged." if still else ".")
    return (
        "The metrics disagree ("
        + ", ".join(f"{m} says {v}" for m, v in moved.items())
        + " smoothing), so neither “more” nor “less smoothing” holds on its own."
    )


def _value(c: Claim) -> str:
    value, digits = c.values
    return f"{value:.{digits}f}" if abs(value) >= 0.01 else fmt(value)


def _constant(c: Claim) -> str:
    return f"{c.metric} {fmt(c.values[0])} at {layer_list(c.layers, len(c.layers) if c.layers[0] == 1 else None)}"


def _tokens(c: Claim) -> str:
    words, specials, splits = c.values
    extra = sum(len(toks) - 1 for _, toks in splits)
    said = "; ".join(f"“{w}” → {' · '.join(toks)}" for w, toks in splits)
    total = words + len(specials) + extra
    return (
        f"The text has {words} words separated by spaces; the model sees {total} tokens = {words} "
        f"(one per word) + {extra} (where a word splits: {said or 'none'}) + {len(specials)} special "
        f"({', '.join(specials) or 'none'}). Punctuation becomes a token of its own, and a word the "
        "vocabulary lacks is split into pieces marked ##."
    )


def _sink_drop(c: Claim) -> str:
    dropped, marked = c.values
    said = f"sink=drop removes attention to the tokens this model's tokenizer marks as special ({', '.join(marked)})"
    if not dropped:
        return said + ": this text has none, so sink=drop dropped nothing and the attention is as without it."
    return said + f": here {', '.join(dropped)}."


def _shared(c: Claim) -> str:
    cos, dm, centred, dims = c.values
    text = (
        f"A cosine_mean of {fmt(cos)} with dm_rel still {fmt(dm)} is not the tokens becoming alike: "
        "the states share a large common component"
    )
    if centred is not None:
        text += f", and once it is removed their mean cosine is {fmt(centred)} (cosine_centred)"
    if dims:
        said = ", ".join(f"dimension {d} holds {share:.0%}" for d, share in dims)
        text += f". At layer {c.layers[0]} {said} of the states' squared norm (massive activations, Sun et al. 2024)"
    return text + "."


def dominant_dimensions(H) -> tuple[tuple[int, float], ...]:
    """The dimensions of ``H [n, d]`` that each hold at least ``DOMINANT_SHARE`` of Σ‖h_i‖² (at most
    ``DOMINANT_MOST``, largest first): the few huge coordinates every token of a decoder carries."""
    import numpy as np

    energy = (np.asarray(H, dtype=np.float64) ** 2).sum(0)
    total = energy.sum()
    if total <= 0:
        return ()
    order = np.argsort(-energy)[:DOMINANT_MOST]
    return tuple((int(d), float(energy[d] / total)) for d in order if energy[d] / total >= DOMINANT_SHARE)


def shared_claim(run, key: str, name: str, n_tokens: int) -> Claim | None:
    """The ``shared`` claim for the run's last layer where its raw cosine_mean is at least
    ``SHARED_COSINE`` while dm_rel is at least ``SHARED_DM``; ``None`` elsewhere (and for one token)."""
    L = len(run.rows) - 1
    last = run.rows[L]
    cos, dm = last.get("cosine_mean"), last.get("dm_rel")
    if n_tokens < 2 or cos is None or dm is None or cos < SHARED_COSINE or dm < SHARED_DM:
        return None
    return Claim(
        "shared",
        key,
        "cosine_mean",
        (L,),
        (cos, dm, last.get("cosine_centred"), dominant_dimensions(run.hidden[L])),
        f"cosine_mean ≥ {SHARED_COSINE} and dm_rel ≥ {SHARED_DM}; dimensions ≥ {DOMINANT_SHARE:.0%} of the norm",
        name,
    )


def sink_claim(analysis, marked: list[str]) -> Claim:
    """What ``sink=drop`` removed from ``analysis``'s attention, given the tokens the model marks as special."""
    dropped = tuple(t for t, s in zip(analysis.tokens, analysis.special) if s)
    return Claim("sink_drop", "mitigated", values=(dropped, tuple(marked)), rule="the special mask of the tokens")


_RENDER = {
    "span": _span,
    "one_token": _one_token,
    "collapse": _collapse,
    "against": _against,
    "flat": _flat,
    "undefined": _undefined,
    "toward": _toward,
    "identical": _identical,
    "effect": _effect,
    "agreement": _agreement,
    "value": _value,
    "constant": _constant,
    "tokens": _tokens,
    "sink_drop": _sink_drop,
    "shared": _shared,
}


# --------------------------------------------------------------------------- checking


def _rows(analysis, run: str) -> list[dict]:
    return analysis.runs()[run].rows


def _at(analysis, run: str, metric: str, layer: int):
    r = analysis.runs()[run]
    row = r.fused_row if layer == -1 else r.rows[layer]
    return None if row is None else row.get(metric)


def _close(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _step(analysis, run: str, metric: str, layer: int) -> str | None:
    """The move at ``layer`` re-derived from the rows (independently of :mod:`smoothviz.words.trends`)."""
    rows = _rows(analysis, run)
    if metric == "d_M":
        ratio = rows[layer].get("dm_ratio")
        return None if ratio is None else moves(1.0, ratio, -1)
    return moves(rows[layer - 1].get(metric), rows[layer].get(metric), smoothing_direction()[metric])


def check(claim: Claim, analysis) -> list[str]:
    """What the analysis's numbers contradict in ``claim`` (empty: the claim holds)."""
    return [f"{claim.kind} {claim.run} {claim.metric} {claim.layers}: {p}" for p in _CHECK[claim.kind](claim, analysis)]


def check_all(claims: list[Claim], analysis) -> list[str]:
    """Every claim checked, and the claims about one run's moves checked for completeness: every
    metric with a direction is accounted for (against, flat, undefined or toward), so a sentence
    that promises "every layer" leaves nothing out."""
    problems = [p for c in claims for p in check(c, analysis)]
    for run in {c.run for c in claims if c.kind in ("against", "flat", "undefined", "toward")}:
        said = [c for c in claims if c.run == run]
        if any(c.kind == "one_token" for c in said):
            continue
        covered: dict[str, set] = {}
        scopes, toward = set(), [c for c in said if c.kind == "toward"]
        for c in said:
            if c.kind in ("against", "flat", "undefined"):
                covered.setdefault(c.metric, set()).update(c.layers)
            if c.kind in ("against", "flat", "undefined", "toward"):
                scopes.add(c.values[0])
        if len(scopes) != 1:
            problems.append(f"{run}: the move claims use different scopes {scopes}")
            continue
        (scope,) = scopes
        listed = {(m, l) for m, layers in covered.items() for l in layers}
        if toward and set(toward[0].values[1]) != listed:
            problems.append(f"{run}: the 'every other' claim lists other exceptions than the claims")
        if not toward:
            missing = {(m, l) for m in smoothing_direction() for l in range(1, scope + 1)} - listed
            if missing:
                problems.append(f"{run}: moves not accounted for: {sorted(missing)}")
    return problems


def _c_span(c, a):
    out = [
        f"{which} {v} ≠ {_at(a, c.run, c.metric, l)}"
        for which, l, v in zip(("first", "last"), c.layers, c.values)
        if not _close(v, _at(a, c.run, c.metric, l))
    ]
    if len(c.values) > 2 and c.values[2] != min(len(a.keep), a.runs()[c.run].hidden.shape[-1]):
        out.append(f"at most {c.values[2]} ≠ min(n, d)")
    return out


def _c_one_token(c, a):
    return [] if len(a.keep) == 1 else [f"{len(a.keep)} tokens analysed, not one"]


def _c_collapse(c, a):
    dm = [r.get("dm_rel") for r in _rows(a, c.run)]
    first, out = c.layers[0], []
    if len(a.keep) < 2:
        out.append("one token cannot collapse")
    if any(v is None or v >= c.values[0] for v in dm[first:]):
        out.append(f"dm_rel is not below {c.values[0]} from layer {first} on: {dm[first:]}")
    if first > 0 and dm[first - 1] is not None and dm[first - 1] < c.values[0]:
        out.append(f"dm_rel is already below {c.values[0]} at layer {first - 1}")
    return out


def _c_moves(want):
    def checker(c, a):
        scope = c.values[0]
        found = [l for l in range(1, scope + 1) if _step(a, c.run, c.metric, l) == want]
        return [] if found == sorted(c.layers) else [f"the numbers give {want} at layers {found}"]

    return checker


def _c_toward(c, a):
    scope, listed = c.values
    return [
        f"{m} does not move in the smoothing direction at layer {l}"
        for m in smoothing_direction()
        for l in range(1, scope + 1)
        if (m, l) not in listed and _step(a, c.run, m, l) != "toward"
    ]


def _c_identical(c, a):
    out = []
    if a.mitigated is None or a.mitigated.rows != a.baseline.rows:
        out.append("the mitigated layers differ from the baseline's")
    if c.values[0] != (a.mitigated is not None and a.mitigated.fused_row is not None):
        out.append("the fusion flag is wrong")
    return out


def _c_effect(c, a):
    base, mit, said = c.values
    L = a.n_layers
    real_base = a.baseline.rows[L].get(c.metric)
    where = -1 if a.mitigated.fused_row is not None else L
    real_mit = _at(a, "mitigated", c.metric, where)
    out = []
    if c.layers != (where,):
        out.append(f"the output compared is layer {where}")
    if not (_close(base, real_base) and _close(mit, real_mit)):
        out.append(f"values {base}, {mit} ≠ {real_base}, {real_mit}")
    if real_base is not None and real_mit is not None:
        sign = smoothing_direction()[c.metric]
        if fmt(real_base) == fmt(real_mit):
            truth = "unchanged"
        else:
            truth = "more" if sign * (real_mit - real_base) > 0 else "less"
        if said != truth:
            out.append(f"says {said} smoothing, the numbers say {truth}")
        if said != "unchanged" and fmt(base) == fmt(mit):
            out.append("a move that reads as no move at the shown precision")
    return out


def _c_agreement(c, a):
    L = a.n_layers
    where = -1 if a.mitigated.fused_row is not None else L
    out = []
    for metric, said in c.values:
        b, m = a.baseline.rows[L].get(metric), _at(a, "mitigated", metric, where)
        truth = "unchanged" if fmt(b) == fmt(m) else ("more" if smoothing_direction()[metric] * (m - b) > 0 else "less")
        if truth != said:
            out.append(f"{metric}: says {said}, the numbers say {truth}")
    return out


def _c_value(c, a):
    real = _at(a, c.run, c.metric, c.layers[0])
    return [] if _close(c.values[0], real) else [f"{c.values[0]} ≠ {real}"]


def _c_constant(c, a):
    return [
        f"layer {l}: {_at(a, c.run, c.metric, l)}"
        for l in c.layers
        if not _close(c.values[0], _at(a, c.run, c.metric, l))
    ]


def _c_tokens(c, a):
    words, specials, splits = c.values
    out = []
    real_special = [t for t, s in zip(a.tokens, a.special) if s]
    if list(specials) != real_special:
        out.append(f"specials {specials} ≠ {real_special}")
    extra = sum(len(toks) - 1 for _, toks in splits)
    if words + len(specials) + extra != len(a.tokens):
        out.append(f"{words} + {len(specials)} + {extra} ≠ {len(a.tokens)} tokens")
    plain = [t for t, s in zip(a.tokens, a.special) if not s]
    joined = " ".join(plain)
    for _, toks in splits:
        if " ".join(toks) not in joined:
            out.append(f"{toks} are not consecutive tokens")
    return out


def _c_sink_drop(c, a):
    real = [t for t, s in zip(a.tokens, a.special) if s]
    out = [] if list(c.values[0]) == real else [f"dropped {c.values[0]}, the special tokens are {real}"]
    return out + [f"{t} is not one of the model's special tokens" for t in real if t not in c.values[1]]


def _c_shared(c, a):
    cos, dm, centred, dims = c.values
    run = a.runs()[c.run]
    layer = c.layers[0]
    out = [
        f"{m} {v} ≠ {_at(a, c.run, m, layer)}"
        for m, v in (("cosine_mean", cos), ("dm_rel", dm), ("cosine_centred", centred))
        if not _close(v, _at(a, c.run, m, layer))
    ]
    if cos < SHARED_COSINE or dm < SHARED_DM:
        out.append(f"cosine_mean {cos} or dm_rel {dm} is not in the shared-component range")
    energy = (run.hidden[layer].astype("float64") ** 2).sum(0)
    shares = energy / energy.sum()  # re-derived here, not through dominant_dimensions: an independent check
    for d, share in dims:  # each named dimension really holds that share, and none larger is left out
        if not math.isclose(shares[d], share, rel_tol=1e-6):
            out.append(f"dimension {d} holds {shares[d]:.4f}, not {share:.4f}")
    named = {d for d, _ in dims}
    bigger = [d for d in range(len(shares)) if d not in named and shares[d] >= DOMINANT_SHARE]
    if bigger and len(dims) < DOMINANT_MOST:
        out.append(f"dimensions {bigger[:3]} also hold at least {DOMINANT_SHARE:.0%} and are not named")
    return out


_CHECK = {
    "span": _c_span,
    "one_token": _c_one_token,
    "collapse": _c_collapse,
    "against": _c_moves("against"),
    "flat": _c_moves("flat"),
    "undefined": _c_moves(None),
    "toward": _c_toward,
    "identical": _c_identical,
    "effect": _c_effect,
    "agreement": _c_agreement,
    "value": _c_value,
    "constant": _c_constant,
    "tokens": _c_tokens,
    "sink_drop": _c_sink_drop,
    "shared": _c_shared,
}
