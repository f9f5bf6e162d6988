"""The sentences the page writes from the numbers: how a run moves over depth, and where not.

A trained model does not collapse; it smooths mildly and unevenly, and some metrics move against
the smoothing direction at some layers. The captions under the over-depth curves say so from the
analysis itself (never from a sentence written in advance), so they stay true for any model,
sentence and mitigation. Pure functions: analysis in, plain text out.
"""
from __future__ import annotations

import math

from .metrics import METRICS



def smoothing_direction() -> dict[str, int]:
    """+1 where a state metric rises as tokens become alike, −1 where it falls (the registry's arrows)."""
    return {m.name: 1 if m.direction == "↑" else -1 for m in METRICS if m.direction and not m.per_layer}


RTOL = 1e-3  # a relative move smaller than this is rounding, not a move
COLLAPSED = 1e-5  # dm_rel below this (the captions say "1e-5"): one vector up to float32 rounding; other metrics there are noise
_VERB = {1: "rises", -1: "falls"}


def against_trend(run, rtol: float = RTOL) -> dict[str, list[int]]:
    """Per metric, the layers l (1…L) where it moves against the smoothing direction from l − 1 to l.

    Metrics are the registry's state metrics with a direction and ``d_M`` (Shi et al.'s distance to the
    smooth subspace, from the measured ratio d_M(H_l)/d_M(H_{l−1}) > 1: it grows). Only
    metrics with at least one such layer are listed, in that order; undefined values are skipped,
    and so are the layers after :func:`collapsed_from`, where every metric is rounding noise.
    """
    rows = run.rows
    end = collapsed_from(run) or len(rows) - 1          # the last layer whose move is compared
    out: dict[str, list[int]] = {}
    for name, sign in smoothing_direction().items():
        layers = [l for l in range(1, end + 1) if _against(rows[l - 1].get(name), rows[l].get(name), sign, rtol)]
        if layers:
            out[name] = layers
    grows = [l for l in range(1, end + 1) if (rows[l].get("dm_ratio") or 0) > 1 + rtol]
    if grows:
        out["d_M"] = grows
    return out


def collapsed_from(run) -> int | None:
    """The first layer from which dm_rel stays below ``COLLAPSED`` (every token one vector up to
    float32 rounding), or ``None``."""
    dm = [r.get("dm_rel") for r in run.rows]
    first = None
    for layer in range(len(dm) - 1, -1, -1):
        if dm[layer] is None or dm[layer] >= COLLAPSED:
            break
        first = layer
    return first


def _against(before, after, sign: int, rtol: float) -> bool:
    if before is None or after is None or not (math.isfinite(before) and math.isfinite(after)):
        return False
    return sign * (after - before) < -rtol * max(abs(before), abs(after))


def _layers(layers: list[int]) -> str:
    """``[3]`` → "layer 3"; ``[3, 5, 6]`` → "layers 3, 5 and 6"."""
    if len(layers) == 1:
        return f"layer {layers[0]}"
    return "layers " + ", ".join(map(str, layers[:-1])) + f" and {layers[-1]}"


def run_summary(run, name: str, n_tokens: int) -> str:
    """One run in words: where its headline metrics start and end, and every move against the trend.

    Args:
        run: an :class:`~smoothviz.analysis.Run`.
        name: how the run is called on the page (``baseline`` or the mitigation with its parameters).
        n_tokens: the tokens analysed (the numerical rank is at most min(n, d)).
    """
    rows = run.rows
    first, last = rows[0], rows[-1]
    parts = [f"{m} {_fmt(first[m])} → {_fmt(last[m])}" for m in ("cosine_mean", "dm_rel") if first.get(m) is not None]
    full = min(n_tokens, run.hidden.shape[-1])
    parts.append(f"numerical_rank {first['numerical_rank']} → {last['numerical_rank']} (of at most {full})")
    text = f"{name}: " + ", ".join(parts) + "."
    shared = shared_component(run)
    if shared:
        text += " " + shared
    collapsed = collapsed_from(run)
    if collapsed is not None:
        text += (f" From layer {collapsed} on dm_rel stays below 1e-5: every token is the same vector up to "
                 "float32 rounding (a collapse), and the other metrics there are rounding noise.")
    moves = against_trend(run)
    if not moves:
        return text + " Every metric moves in the smoothing direction at every layer" + (
            " before that." if collapsed is not None else ".")
    said = []
    for metric, layers in moves.items():
        verb = "grows" if metric == "d_M" else _VERB[-smoothing_direction()[metric]]
        said.append(f"{metric} {verb} at {_layers(layers)}")
    return text + " Against the smoothing trend: " + "; ".join(said) + "."


SHARED_COSINE, SHARED_DM = 0.9, 0.1  # raw cosine this high while dm_rel is this large: a shared component


def shared_component(run) -> str | None:
    """When the last layer's cosine_mean is high but dm_rel is not small, say that the cosine
    measures a component all tokens share (a decoder's massive activations, Sun et al. 2024), not
    tokens becoming alike; ``None`` otherwise. The thresholds are SmoothViz's own choice."""
    last = run.rows[-1]
    cos, dm, centred = last.get("cosine_mean"), last.get("dm_rel"), last.get("cosine_centred")
    if cos is None or dm is None or cos < SHARED_COSINE or dm < SHARED_DM:
        return None
    text = (f"A cosine_mean of {_fmt(cos)} with dm_rel still {_fmt(dm)} is not the tokens becoming alike: "
            "the states share a large common component")
    if centred is not None:
        text += f", and once it is removed their mean cosine is {_fmt(centred)} (cosine_centred)"
    dims = dominant_dimensions(run.hidden[-1])
    if dims:
        said = ", ".join(f"dimension {d} holds {share:.0%}" for d, share in dims)
        text += (f". At the last layer {said} of the states' squared norm (massive activations, "
                 "Sun et al. 2024)")
    return text + "."


def dominant_dimensions(H, share: float = 0.1, most: int = 3) -> list[tuple[int, float]]:
    """The dimensions of ``H [n, d]`` that each hold at least ``share`` of Σ‖h_i‖² (at most ``most``,
    largest first): the few huge coordinates every token of a decoder carries."""
    import numpy as np
    energy = (np.asarray(H, dtype=np.float64) ** 2).sum(0)
    total = energy.sum()
    if total <= 0:
        return []
    order = np.argsort(-energy)[:most]
    return [(int(d), float(energy[d] / total)) for d in order if energy[d] / total >= share]


def effect(analysis, name: str) -> str | None:
    """What the mitigation changed at the output, in words; ``None`` without a mitigation.

    Compares cosine_mean and dm_rel of the mitigated output (the fused one for a fusion) with the
    baseline's last layer.
    """
    if analysis.mitigated is None:
        return None
    base = analysis.baseline.rows[-1]
    fused = analysis.mitigated.fused_row
    out = fused if fused is not None else analysis.mitigated.rows[-1]
    where = "its fused output" if fused is not None else f"layer {analysis.n_layers}"
    b, m = base.get("cosine_mean"), out.get("cosine_mean")
    if b is None or m is None:
        return None
    if abs(m - b) < 5e-4:
        said = f"leaves cosine_mean at {_fmt(b)}"
    else:
        more = m > b
        said = f"{'raises' if more else 'lowers'} cosine_mean from {_fmt(b)} to {_fmt(m)}"
        db, dm = base.get("dm_rel"), out.get("dm_rel")
        if db is None or dm is None or (dm < db) == more:  # dm_rel agrees: the tokens did become (un)alike
            said += (f" (tokens {'more' if more else 'less'} alike: {'more' if more else 'less'} smoothing "
                     "than the baseline)")
    text = f"At {where}, {name} {said}"
    if base.get("dm_rel") is not None and out.get("dm_rel") is not None:
        text += f", and dm_rel goes from {_fmt(base['dm_rel'])} to {_fmt(out['dm_rel'])}"
    return text + "."


def trend_lines(analysis, names: dict[str, str]) -> list[str]:
    """The caption under the over-depth curves, one line each: every run summarised (a fusion's
    layers are the baseline's, so only once), then the mitigation's effect.

    Args:
        names: how each run is called on the page, ``{"baseline": …, "mitigated": …}``.
    """
    n = len(analysis.keep)
    lines = [run_summary(analysis.baseline, names["baseline"], n)]
    mitigated = analysis.mitigated
    if mitigated is not None:
        layers = mitigated.rows
        if layers == analysis.baseline.rows:
            lines.append(f"{names['mitigated']} leaves every layer as it is (it only fuses their outputs).")
        else:
            lines.append(run_summary(mitigated, names["mitigated"], n))
        said = effect(analysis, names["mitigated"])
        if said:
            lines.append(said)
    return lines


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
