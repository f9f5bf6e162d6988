"""The sentences the page writes from the numbers: how a run moves over depth, and where not.

A trained model does not collapse; it smooths mildly and unevenly, and some metrics move against
the smoothing direction at some layers, or not at all. The captions under the over-depth curves
say so from the analysis itself (never from a sentence written in advance), so they stay true for
any model, sentence and mitigation. Each sentence is built from :class:`~smoothviz.words.claims.Claim`
objects (:func:`run_claims`, :func:`effect_claims`) and rendered by :mod:`smoothviz.words.claims`, whose
checkers a test runs against the numbers. Pure functions: analysis in, claims and plain text out.
"""

from __future__ import annotations

from smoothviz.science.metrics import HEADLINE, METRICS
from smoothviz.words import claims as cl
from smoothviz.words.claims import COLLAPSED, RTOL, Claim, render

__all__ = [
    "COLLAPSED",
    "RTOL",
    "against_trend",
    "collapsed_from",
    "effect",
    "effect_claims",
    "line_claims",
    "run_claims",
    "run_summary",
    "smoothing_direction",
    "trend_lines",
]


def smoothing_direction() -> dict[str, int]:
    """+1 where a state metric rises as tokens become alike, −1 where it falls (the registry's arrows)."""
    return {m.name: 1 if m.direction == "↑" else -1 for m in METRICS if m.direction and not m.per_layer}


def _scope(run) -> int:
    """The last layer whose move is stated: the layer of a collapse (moves after it are rounding
    noise), else L."""
    return collapsed_from(run) or len(run.rows) - 1


def _classified(run, rtol: float = RTOL) -> dict[str, dict[str | None, list[int]]]:
    """Per metric (and ``d_M``), the layers 1…scope grouped by how it moves there."""
    rows, end = run.rows, _scope(run)
    out = {}
    for name, sign in cl.smoothing_direction().items():
        groups: dict[str | None, list[int]] = {}
        for l in range(1, end + 1):
            if name == "d_M":  # from the measured ratio d_M(H_l)/d_M(H_{l−1}): it grows above 1
                ratio = rows[l].get("dm_ratio")
                how = None if ratio is None else cl.moves(1.0, ratio, -1, rtol)
            else:
                how = cl.moves(rows[l - 1].get(name), rows[l].get(name), sign, rtol)
            groups.setdefault(how, []).append(l)
        out[name] = groups
    return out


def against_trend(run, rtol: float = RTOL) -> dict[str, list[int]]:
    """Per metric, the layers l (1…L) where it moves against the smoothing direction from l − 1 to l.

    Metrics are the registry's state metrics with a direction and ``d_M`` (Shi et al.'s distance to the
    smooth subspace, from the measured ratio d_M(H_l)/d_M(H_{l−1}) > 1: it grows). Only
    metrics with at least one such layer are listed, in that order; undefined values are skipped,
    and so are the layers after :func:`collapsed_from`, where every metric is rounding noise.
    """
    return {name: groups["against"] for name, groups in _classified(run, rtol).items() if groups.get("against")}


def collapsed_from(run, n_tokens: int | None = None) -> int | None:
    """The first layer from which dm_rel stays below ``COLLAPSED`` (every token one vector up to
    float32 rounding), or ``None``. One token is never a collapse (its dm_rel is 0 by definition):
    pass ``n_tokens`` to rule it out."""
    if n_tokens is not None and n_tokens < 2:
        return None
    dm = [r.get("dm_rel") for r in run.rows]
    first = None
    for layer in range(len(dm) - 1, -1, -1):
        if dm[layer] is None or dm[layer] >= COLLAPSED:
            break
        first = layer
    return first


def run_claims(run, key: str, name: str, n_tokens: int) -> list[Claim]:
    """One run's claims: where its headline metrics start and end, a collapse, and per metric every
    layer where it moves against the smoothing direction, does not move, or is undefined.

    Args:
        run: an :class:`~smoothviz.pipeline.analysis.Run`.
        key: ``baseline`` or ``mitigated``.
        name: how the run is called on the page.
        n_tokens: the tokens analysed (the numerical rank is at most min(n, d)).
    """
    rows = run.rows
    L = len(rows) - 1
    out = [
        Claim("span", key, m, (0, L), (rows[0][m], rows[L][m]), "the rows' first and last values", name)
        for m in HEADLINE
        if rows[0].get(m) is not None and rows[L].get(m) is not None
    ]
    full = min(n_tokens, run.hidden.shape[-1])
    out.append(
        Claim(
            "span",
            key,
            "numerical_rank",
            (0, L),
            (rows[0]["numerical_rank"], rows[L]["numerical_rank"], full),
            "the rows' first and last values; rank ≤ min(n, d)",
            name,
        )
    )
    if n_tokens < 2:
        return out + [Claim("one_token", key, rule="one token kept", name=name)]
    shared = cl.shared_claim(run, key, name, n_tokens)
    if shared is not None:  # a decoder's high raw cosine: said before any move, so no one reads it as a collapse
        out.append(shared)
    collapsed = collapsed_from(run, n_tokens)
    if collapsed is not None:
        out.append(
            Claim(
                "collapse",
                key,
                "dm_rel",
                (collapsed,),
                (COLLAPSED,),
                "dm_rel < COLLAPSED from this layer to the last",
                name,
            )
        )
    scope = _scope(run)
    if scope < 1:  # collapsed at the embeddings: no move to state
        return out
    listed = []
    for metric, groups in _classified(run).items():
        for how, kind in (("against", "against"), ("flat", "flat"), (None, "undefined")):
            if groups.get(how):
                out.append(
                    Claim(
                        kind,
                        key,
                        metric,
                        tuple(groups[how]),
                        (scope,),
                        f"relative move {'<' if kind == 'against' else '≤'} RTOL = {RTOL}"
                        if kind != "undefined"
                        else "no value",
                        name,
                    )
                )
                listed += [(metric, l) for l in groups[how]]
    if len(listed) < scope * len(cl.smoothing_direction()):
        out.append(
            Claim(
                "toward",
                key,
                "",
                tuple(range(1, scope + 1)),
                (scope, tuple(listed)),
                "every metric and layer not listed moves in the smoothing direction by more than RTOL",
                name,
            )
        )
    return out


def _summary(claims: list[Claim], name: str) -> str:
    """The words of :func:`run_claims`' claims (rendering only: every number comes from a claim)."""
    by = lambda kind: [c for c in claims if c.kind == kind]  # noqa: E731
    text = f"{name}: " + ", ".join(render(c) for c in by("span")) + "."
    for c in by("one_token") + by("shared") + by("collapse"):
        text += " " + render(c)
    against, flat, undefined, toward = by("against"), by("flat"), by("undefined"), by("toward")
    if not (against or flat or undefined or toward):
        return text
    scope = (against + flat + undefined + toward)[0].values[0]
    tail = f" up to layer {scope}" if by("collapse") else ""
    if against:
        text += " Against the smoothing trend: " + "; ".join(render(c) for c in against) + "."
    if flat:
        text += f" Unchanged (a relative move of at most {RTOL:.1%}): " + "; ".join(render(c) for c in flat) + "."
    if undefined:
        text += " Undefined: " + "; ".join(render(c) for c in undefined) + "."
    if toward:
        said = render(toward[0])
        text += f" {said[0].upper()}{said[1:]}{tail}."
    return text


def run_summary(run, name: str, n_tokens: int, key: str = "baseline") -> str:
    """One run in words: where its headline metrics start and end, and every layer where a metric
    moves against the trend, does not move, or has no value.

    Args:
        run: an :class:`~smoothviz.pipeline.analysis.Run`.
        name: how the run is called on the page (``baseline`` or the mitigation with its parameters).
        n_tokens: the tokens analysed (the numerical rank is at most min(n, d)).
    """
    return _summary(run_claims(run, key, name, n_tokens), name)


def effect_claims(analysis, name: str) -> list[Claim]:
    """What the mitigation changed at the output, as claims: per headline metric, the mitigated
    output (the fused one for a fusion) against the baseline's last layer, and whether they agree.
    Empty without a mitigation."""
    if analysis.mitigated is None:
        return []
    L = analysis.n_layers
    base = analysis.baseline.rows[L]
    fused = analysis.mitigated.fused_row
    out_row, where = (fused, -1) if fused is not None else (analysis.mitigated.rows[L], L)
    out = []
    for m in HEADLINE:
        b, v = base.get(m), out_row.get(m)
        if b is None or v is None:
            continue
        out.append(
            Claim(
                "effect",
                "mitigated",
                m,
                (where,),
                (b, v, cl.verdict(m, b, v)),
                "unchanged when equal at the shown precision, else the metric's smoothing direction",
                name,
            )
        )
    if out:
        out.append(
            Claim(
                "agreement",
                "mitigated",
                "",
                (where,),
                tuple((c.metric, c.values[2]) for c in out),
                "the effect claims' verdicts",
                name,
            )
        )
    return out


def effect(analysis, name: str) -> str | None:
    """What the mitigation changed at the output, in words; ``None`` without a mitigation (or
    without a headline metric to compare)."""
    claims = effect_claims(analysis, name)
    effects = [c for c in claims if c.kind == "effect"]
    if not effects:
        return None
    where = "its fused output" if effects[0].layers == (-1,) else f"layer {analysis.n_layers}"
    said = " and ".join(render(c) for c in effects)
    agreement = [render(c) for c in claims if c.kind == "agreement"]
    return f"At {where}, {name} {said}." + (f" {agreement[0]}" if agreement else "")


def line_claims(analysis, names: dict[str, str]) -> list[list[Claim]]:
    """The claims behind each line of :func:`trend_lines`, in the same order."""
    n = len(analysis.keep)
    lines = [run_claims(analysis.baseline, "baseline", names["baseline"], n)]
    mitigated = analysis.mitigated
    if mitigated is not None:
        if mitigated.rows == analysis.baseline.rows:
            lines.append(
                [
                    Claim(
                        "identical",
                        "mitigated",
                        values=(mitigated.fused_row is not None,),
                        rule="every row equal",
                        name=names["mitigated"],
                    )
                ]
            )
        else:
            lines.append(run_claims(mitigated, "mitigated", names["mitigated"], n))
        said = effect_claims(analysis, names["mitigated"])
        if said:
            lines.append(said)
    return lines


def trend_lines(analysis, names: dict[str, str]) -> list[str]:
    """The caption under the over-depth curves, one line each: every run summarised (a run whose
    layers are the baseline's, only once), then the mitigation's effect.

    Args:
        names: how each run is called on the page, ``{"baseline": …, "mitigated": …}``.
    """
    out = []
    for claims in line_claims(analysis, names):
        kind = claims[0].kind
        if kind == "identical":
            out.append(render(claims[0]))
        elif kind in ("effect", "agreement"):
            out.append(effect(analysis, names["mitigated"]))
        else:
            out.append(_summary(claims, claims[0].name))
    return out
