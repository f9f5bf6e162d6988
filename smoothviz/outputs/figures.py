"""Pure figure builders: analysis data in, ``plotly.graph_objects.Figure`` out.

Nothing here shows anything or imports the UI; the app and the HTML report call the same
functions, so a chart looks the same in both. Token text is user input: every label goes
through :func:`escape` because plotly renders a subset of HTML in ticks and hovers, and
tokens are placed by position (never by text) so a repeated word stays two tokens.
"""

from __future__ import annotations

import copy
import functools
import html
import math

import networkx as nx
import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from smoothviz.mitigations import label as mitigation_label
from smoothviz.science.metrics import by_name as registered

# Runs, in order (Okabe & Ito's colour-blind-safe palette): compared run i has RUN_PALETTE[i] in every
# view of the Compare page and report; the main page's baseline and mitigated runs are the first two.
RUN_PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
RUN_COLOURS = {"baseline": RUN_PALETTE[0], "mitigated": RUN_PALETTE[1]}


# Plain names for chart titles (the code names stay in tables, tooltips and the JSON): a student
# reads "mean token cosine ↑" before learning what cosine_mean is.
PLAIN = {
    "cosine_mean": "mean token cosine",
    "cosine_centred": "centred token cosine",
    "cls_cosine": "[CLS]–token cosine",
    "dm_rel": "distance to all-alike (rel.)",
    "hfc_lfc": "high / low frequency",
    "effective_rank": "effective rank",
    "numerical_rank": "numerical rank",
    "sv_skewness": "singular-value skew",
    "sv_median": "median singular value",
    "dirichlet": "Dirichlet energy",
    "spectral_gap": "spectral gap λ₂",
}


def plain_title(name: str) -> str:
    """A metric's chart title: its plain name and the direction of smoothing (code name if none)."""
    registry = registered()
    arrow = registry[name].direction if name in registry else ""
    return f"{PLAIN.get(name, name)} {arrow}".strip()


def run_colour(i: int) -> str:
    """The colour of compared run ``i`` (0-based) in every view."""
    return RUN_PALETTE[i % len(RUN_PALETTE)]


MAX_TICKS = 30  # more tick labels than this overlap at any sensible width
MAX_HEATMAP = 256  # heatmap cells per side sent to the browser (pooled above this)
MAX_NODE_LABELS = 40  # more nodes than this: every k-th node labelled (and the picked one)
NOTE_INK = "#555555"  # notes inside charts: 7.5:1 on white (plotly's grey was 3.9:1, under WCAG AA)
FONT = dict(family="Inter, 'Segoe UI', Arial, sans-serif", size=13)
# plotly_white reduced to the trace types drawn here (scatter, heatmap): the same look, while
# the whole template's defaults for 24 trace types cost ~20 ms of validation and copying in
# every figure (most of a new sentence's figure time) and ~7 kB in every chart sent.
_WHITE = pio.templates["plotly_white"]
TEMPLATE = go.layout.Template(
    layout=_WHITE.layout, data={"scatter": _WHITE.data.scatter, "heatmap": _WHITE.data.heatmap}
)


def escape(text: str) -> str:
    """Token text as plotly text: ``< > &`` escaped so nothing is interpreted as markup."""
    return html.escape(str(text), quote=False)


def token_labels(labels: list[str]) -> list[str]:
    """Unique, escaped axis labels ``"i · token"`` (positions keep duplicates apart)."""
    return [f"{i} · {escape(t)}" for i, t in enumerate(labels)]


def layout(fig: go.Figure, title: str = "", height: int = 380, **kw) -> go.Figure:
    """The common look; a ``title`` with a newline is drawn on two lines (a half-width panel's
    long run name and its numbers did not fit one: "…heads lov" at 1280 px, issue 22)."""
    lines = title.count("\n") + 1 if title else 0
    kw.setdefault("margin", dict(l=55, r=20, t=40 + 20 * lines if title else 30, b=45))
    fig.update_layout(
        template=TEMPLATE,
        font=FONT,
        height=height + 20 * max(lines - 1, 0),
        title=dict(text="<br>".join(escape(t) for t in title.split("\n")), x=0.01, font=dict(size=15))
        if title
        else None,
        hoverlabel=dict(font_size=12),
        **kw,
    )
    return fig


def thin(count: int, limit: int = MAX_TICKS) -> int:
    """Step between tick labels so that at most ``limit`` show."""
    return max(1, math.ceil(count / limit))


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def log_ticks(values) -> dict:
    """Axis settings for a log axis over ``values``: ticks at 1, 2, 5 × 10ᵏ when they span at most
    three decades (plotly's own minor-digit labels crowd into each other there), else powers of ten."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    v = v[np.isfinite(v) & (v > 0)]
    if v.size == 0 or v.max() / v.min() > 1e3:
        return dict(exponentformat="power")
    lo, hi = math.floor(math.log10(v.min())), math.ceil(math.log10(v.max()))
    ticks = [m * 10.0**k for k in range(lo, hi + 1) for m in (1, 2, 5) if v.min() / 1.3 <= m * 10.0**k <= v.max() * 1.3]
    if len(ticks) < 2:  # within one 1-2-5 step: leave it to plotly
        return dict(exponentformat="power")
    return dict(tickvals=ticks, ticktext=[_tick_text(t) for t in ticks])


def _tick_text(value: float) -> str:
    if 1e-3 <= value < 1e4:
        return f"{value:g}"
    mantissa, exponent = f"{value:.0e}".split("e")
    power = f"10{str(int(exponent)).translate(_SUPERSCRIPT)}"
    return power if mantissa == "1" else f"{mantissa}×{power}"


def _runs(analysis) -> dict:
    return analysis.runs()


FINAL_NORM = "final norm"  # the label of a pre-norm model's final norm, a position after the last layer


MARKS = {FINAL_NORM: "◆", "fused": "★"}  # the markers of the positions after the last layer


def depth_ticks(depth: int, has_fused: bool, has_final_norm: bool = False, compact: bool = False) -> dict:
    """An x axis over layers 0…``depth``: at most 8 layer ticks, then "final norm" at depth + 1
    when a pre-norm model's final norm is drawn, then "fused" when a fused output is. ``compact``:
    those two ticks are their markers (◆, ★), named in the axis titles (:func:`compact_layer_title`):
    in a projector's large type, "final norm" and "fused" one position apart were drawn over each other."""
    extra = [FINAL_NORM] * has_final_norm + ["fused"] * has_fused
    if compact:
        extra = [MARKS[e] for e in extra]
    ticks = list(range(0, depth + 1, thin(depth + 1, 8))) + [depth + 1 + i for i in range(len(extra))]
    text = [str(t) if t <= depth else extra[t - depth - 1] for t in ticks]
    return dict(tickvals=ticks, ticktext=text, tickfont=dict(size=11))


def depth_axes(
    fig: go.Figure, depth: int, has_fused: bool, has_final_norm: bool = False, compact: bool = False
) -> None:
    """Small multiples over layers (:func:`depth_ticks` on every x axis); small tick and panel-title fonts."""
    fig.update_xaxes(depth_ticks(depth, has_fused, has_final_norm, compact))
    fig.update_yaxes(tickfont_size=11, nticks=5)
    fig.update_annotations(font_size=13)


@functools.lru_cache(maxsize=32)
def _grid(rows: int, cols: int, titles: tuple[str, ...], row_gap: float) -> dict:
    layout_ = make_subplots(
        rows=rows, cols=cols, subplot_titles=list(titles), horizontal_spacing=0.055, vertical_spacing=row_gap
    ).to_dict()["layout"]
    layout_.pop("template", None)
    return layout_


def panels(rows: int, cols: int, titles: list[str], row_gap: float, x_axis: dict) -> dict:
    """The layout of a rows × cols grid of small multiples titled ``titles`` as a dict to fill in:
    ``make_subplots``' own (axis domains and anchors, titles as annotations), computed once per
    grid and copied, with ``x_axis`` on every x axis and :func:`depth_axes`' small tick and title
    fonts. Panel i (reading order) draws on axes :func:`panel_axes` (i). Building the small
    multiples through ``make_subplots`` and per-axis updates cost ~80 ms a figure, a third of a new
    sentence's server time in a class's burst (issue 27); one dict and one validation, ~15 ms."""
    lay = copy.deepcopy(_grid(rows, cols, tuple(titles), row_gap))
    for name, axis in lay.items():  # every panel's axes (the grid has empty panels too)
        if name.startswith("xaxis"):
            axis.update(copy.deepcopy(x_axis))
        elif name.startswith("yaxis"):
            axis.update(tickfont=dict(size=11), nticks=5)
    for note in lay.get("annotations", []):
        note.setdefault("font", {})["size"] = 13
    return lay


def panel_axes(i: int) -> tuple[str, str]:
    """Panel ``i``'s x and y axis names, as ``make_subplots`` numbers them (row by row, from 1)."""
    return ("x", "y") if i == 0 else (f"x{i + 1}", f"y{i + 1}")


def panel_layout(lay: dict, i: int) -> tuple[dict, dict]:
    """Panel ``i``'s x and y axes in a :func:`panels` layout."""
    x, y = panel_axes(i)
    return lay["xaxis" + x[1:]], lay["yaxis" + y[1:]]


def _log_if_spread(axis: dict, name: str, values: list) -> None:
    """A log y axis for a registered log metric whose positive values span more than 100× (a
    collapse to 1e-6 is invisible on a linear axis)."""
    values = [v for v in values if v is not None and v > 0]
    registry = registered()
    if name in registry and registry[name].log and values and max(values) / min(values) > 100:
        axis.update(type="log", dtick=None, **log_ticks(values))


def run_name(analysis, key: str) -> str:
    """A run's display name: ``baseline`` or the mitigation with its parameters (raw text: escape before plotting)."""
    if key == "baseline" or not analysis.mitigation:
        return key
    return mitigation_label(analysis.mitigation["name"], analysis.mitigation["params"])


def _values(run, name: str) -> list:
    return [r.get(name) for r in run.rows]


SAME = " (same as the baseline: drawn dashed over it)"


def _coincide(analysis, values) -> bool:
    """Whether the mitigated run's ``values(run)`` equal the baseline's at every point (a fusion's
    layers are the baseline's): its line is then drawn dashed over the baseline's and named so,
    so that both stay visible (issue 22)."""
    runs = _runs(analysis)
    if "mitigated" not in runs:
        return False
    a, b = (np.asarray(values(runs[k]), dtype=np.float64) for k in ("baseline", "mitigated"))
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-9, atol=0, equal_nan=True))


# --------------------------------------------------------------------------- 1. curves over depth


def compact_layer_title(has_fused: bool, has_final_norm: bool) -> str:
    """The x-axis title where the positions after the last layer are marks (``depth_axes(compact=True)``)."""
    named = [f"{MARKS[FINAL_NORM]} final norm"] * has_final_norm + [f"{MARKS['fused']} fused"] * has_fused
    return "layer" + (f" ({', '.join(named)})" if named else "")


def metric_curves(
    analysis, metrics: list[str] | None = None, cols: int = 5, row_gap: float = 0.2, compact: bool = False
) -> go.Figure:
    """Small multiples of the registered metrics over depth (those with ``curve=True``, or the
    ``metrics`` named), baseline and mitigated on shared axes. ``compact`` (a projector's large type):
    the positions after the last layer are ticked with their markers, and a run equal to the
    baseline says so briefly.

    A pre-norm model's final norm (its norm after the last block, applied to layer L's states) is
    an extra point at x = L + 1 labelled "final norm", never layer L; a fused output (fusion
    mitigations) is the next one, labelled "fused".
    """
    registry = registered()
    metrics = list(metrics or [m.name for m in registry.values() if m.curve])
    rows = math.ceil(len(metrics) / cols)
    L = analysis.n_layers
    runs = _runs(analysis)
    has_fused = any(run.fused_row is not None for run in runs.values())
    has_final = any(run.final_norm_row is not None for run in runs.values())
    lay = panels(
        rows,
        cols,
        [plain_title(m) for m in metrics],
        row_gap if rows > 1 else 0.1,
        depth_ticks(L, has_fused, has_final, compact=compact),
    )
    final_x, fused_x = L + 1, L + 1 + has_final
    traces = []
    same = "mitigated" in runs and all(  # e.g. a fusion: every layer is the baseline's
        _values(runs["mitigated"], m) == _values(runs["baseline"], m) for m in metrics
    )
    for key, run in runs.items():
        colour, name = RUN_COLOURS[key], run_name(analysis, key)
        if key == "mitigated" and same:  # drawn dashed over the baseline, and said, so both stay visible
            if compact:
                name += " (= baseline" + (" except ★)" if run.fused_row is not None else ")")
            else:
                name += " (same as the baseline at every layer" + (
                    ": differs only at the fused output)" if run.fused_row is not None else ")"
                )
        over = same and key == "mitigated"
        after_last = [  # the positions after layer L: a row of its own each, never layer L
            (run.final_norm_row, final_x, "diamond", 10, f"{FINAL_NORM} (applied to layer {L})", escape(name)),
            (run.fused_row, fused_x, "star", 12, "fused output", key),
        ]
        for i, m in enumerate(metrics):
            xaxis, yaxis = panel_axes(i)
            traces.append(
                dict(
                    type="scatter",
                    x=list(range(L + 1)),
                    y=_values(run, m),
                    xaxis=xaxis,
                    yaxis=yaxis,
                    mode="lines+markers",
                    name=escape(name),
                    legendgroup=key,
                    showlegend=i == 0,
                    marker=dict(size=7 if over else 4, symbol="circle-open" if over else "circle"),
                    line=dict(color=colour, width=2, dash="dash" if over else "solid"),
                    hovertemplate=f"{PLAIN.get(m, m)} ({m})<br>layer %{{x}}: %{{y:.4g}}<extra>{escape(name)}</extra>",
                )
            )
            for row, x, symbol, size, what, extra in after_last:
                if row is not None and row.get(m) is not None:
                    traces.append(
                        dict(
                            type="scatter",
                            x=[x],
                            y=[row[m]],
                            xaxis=xaxis,
                            yaxis=yaxis,
                            mode="markers",
                            legendgroup=key,
                            showlegend=False,
                            marker=dict(symbol=symbol, size=size, color=colour, line=dict(color="black", width=1)),
                            hovertemplate=f"{m}<br>{what}: %{{y:.4g}}<extra>{extra}</extra>",
                        )
                    )
    title = compact_layer_title(has_fused, has_final) if compact else "layer"
    for i, m in enumerate(metrics):
        x_axis, y_axis = panel_layout(lay, i)
        _log_if_spread(y_axis, m, [v for run in runs.values() for v in _values(run, m)])
        if i + cols >= len(metrics):  # the bottom panel of each column names its axis
            x_axis["title"] = dict(text=title, standoff=2)
    return layout(
        go.Figure(data=traces, layout=lay),
        height=250 * rows + 60,
        legend=dict(orientation="h", yanchor="bottom", y=1.06, x=0, font_size=13),
    )


def shi_bound(analysis) -> go.Figure:
    """Shi et al.'s bound v per layer beside the measured contraction d_M(H_l)/d_M(H_{l−1}), log axis."""
    fig = go.Figure()
    L = analysis.n_layers
    x = list(range(1, L + 1))
    undefined = True
    same = _coincide(analysis, lambda run: [*run.metric("shi_v")[1:], *run.metric("dm_ratio")[1:]])
    for key, run in _runs(analysis).items():
        name, colour = escape(run_name(analysis, key)), RUN_COLOURS[key]
        over = same and key == "mitigated"  # dashed over the baseline, wider markers: both stay visible
        suffix = SAME if over else ""
        v = run.metric("shi_v")[1:]  # None where undefined
        undefined &= all(a is None for a in v)
        if any(a is not None for a in v):  # no legend entry for a line that is not drawn (pre-LN: no v)
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=v,
                    name=f"v (bound), {name}{suffix}",
                    mode="lines+markers",
                    line=dict(color=colour, dash="dashdot" if over else "dot"),
                    marker=dict(symbol="circle-open", size=9) if over else None,
                    hovertemplate="layer %{x}: v = %{y:.3g}<extra></extra>",
                )
            )
        ratio = run.metric("dm_ratio")[1:]
        fig.add_trace(
            go.Scatter(
                x=x,
                y=ratio,
                name=f"measured d_M ratio, {name}{suffix}",
                mode="lines+markers",
                line=dict(color=colour, dash="dash" if over else "solid"),
                marker=dict(symbol="circle-open", size=9) if over else None,
                hovertemplate="layer %{x}: ratio = %{y:.3g}<extra></extra>",
            )
        )
    fig.add_hline(
        y=1,
        line=dict(color="grey", dash="dash"),
        annotation_text="1: below it, d_M shrinks",
        annotation_position="bottom right",
    )
    note = ""  # in the title's second line: inside the plot it was printed over the data (issue 22)
    if getattr(analysis, "layernorm", "post") == "pre":
        note = "v is not shown: Shi et al.'s bound is derived for post-LN blocks, and this model is pre-LN"
    elif undefined:
        note = "v is undefined here: the blocks do not have two LayerNorms"
    shown = [y for trace in fig.data for y in trace.y]
    fig.update_yaxes(type="log", title="ratio (log)", **log_ticks(shown + [1.0]))
    fig.update_xaxes(title="layer", dtick=thin(L, 16))
    fig = layout(
        fig,
        "Shi et al.'s bound v beside the measured contraction",
        height=360,
        legend=dict(orientation="h", y=-0.3, yanchor="top", x=0),
    )
    if note:
        fig.update_layout(title_text=f"{fig.layout.title.text}<br>{note}", margin_t=80)
    return fig


# --------------------------------------------------------------------------- 2. one layer


def _pool(matrix: np.ndarray, labels: list[str], limit: int = MAX_HEATMAP) -> tuple[np.ndarray, list[str], int]:
    """Block-average a square matrix down to at most ``limit`` per side (page weight)."""
    n = matrix.shape[0]
    f = math.ceil(n / limit)
    if f <= 1:
        return matrix, token_labels(labels), 1
    m = math.ceil(n / f)
    padded = np.full((m * f, m * f), np.nan)
    padded[:n, :n] = matrix
    pooled = np.nanmean(padded.reshape(m, f, m, f), axis=(1, 3))
    names = [f"{i * f}–{min(n, (i + 1) * f) - 1} · {escape(labels[i * f])}…" for i in range(m)]
    return pooled, names, f


def _short(label: str, limit: int = 16) -> str:
    """Clip a tick label (whole escape sequences only, so "&lt;" is never cut in half)."""
    text = html.unescape(label)
    return label if len(text) <= limit else escape(text[: limit - 1]) + "…"


def compare_curves(runs, metrics: list[str] | None = None, relative: bool = False, cols: int = 5) -> go.Figure:
    """Small multiples of the registered metrics over depth for N runs (``runs``: ``(label, Run)``
    pairs, e.g. :class:`smoothviz.pipeline.compare.CompareRun`'s ``label`` and ``run``), run i in
    :func:`run_colour` (i). ``relative``: x = layer / L, so models of different depths share an axis.
    """
    registry = registered()
    metrics = list(metrics or [m.name for m in registry.values() if m.curve])
    rows = math.ceil(len(metrics) / cols)
    titles = [registry[m].label if m in registry else m for m in metrics]
    if relative:
        x_axis = dict(tickvals=[0, 0.25, 0.5, 0.75, 1], ticktext=["0", "¼", "½", "¾", "1"], tickfont=dict(size=11))
    else:
        x_axis = dict(tickfont=dict(size=11), nticks=8)
    lay = panels(rows, cols, titles, 0.2 if rows > 1 else 0.1, x_axis)
    traces = []
    for k, (label, run) in enumerate(runs):
        L = len(run.rows) - 1
        x = [l / L for l in range(L + 1)] if relative else list(range(L + 1))
        name, colour = escape(label), run_colour(k)
        axis = "layer / L" if relative else "layer"
        for i, m in enumerate(metrics):
            xaxis, yaxis = panel_axes(i)
            traces.append(
                dict(
                    type="scatter",
                    x=x,
                    y=_values(run, m),
                    xaxis=xaxis,
                    yaxis=yaxis,
                    mode="lines+markers",
                    name=name,
                    legendgroup=str(k),
                    showlegend=i == 0,
                    line=dict(color=colour, width=2),
                    marker=dict(size=4),
                    customdata=list(range(L + 1)),
                    hovertemplate=f"{m}<br>{axis} %{{x:.3g}} (layer %{{customdata}}): %{{y:.4g}}<extra>{name}</extra>",
                )
            )
    for i, m in enumerate(metrics):
        _log_if_spread(panel_layout(lay, i)[1], m, [v for _, run in runs for v in _values(run, m)])
    return layout(
        go.Figure(data=traces, layout=lay),
        height=250 * rows + 60,
        legend=dict(orientation="h", yanchor="bottom", y=1.06, x=0, font_size=13),
    )


def similarity_heatmap(
    run, labels: list[str], layer: int, picked: int | None = None, title: str = "", cells: int = MAX_HEATMAP
) -> go.Figure:
    """Token cosine similarity of hidden state ``layer`` (0…L); the picked token framed; at most
    ``cells`` cells a side (block means above)."""
    z, names, f = _pool(np.asarray(run.similarity[layer], dtype=np.float64), labels, cells)
    z = np.round(z, 3).astype(np.float32)  # three decimals is all a colour can show
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=names,
            y=names,
            zmin=-1,
            zmax=1,
            colorscale="RdBu_r",
            colorbar=dict(title="cos", thickness=12),
            hovertemplate="%{y}<br>%{x}<br>cos = %{z:.3f}<extra></extra>",
        )
    )
    # Columns are narrower than rows are tall: fewer labels across than down.
    for axis, limit in ((fig.update_xaxes, 24), (fig.update_yaxes, 36)):
        ticks = names[:: thin(len(names), limit)]
        axis(tickvals=ticks, ticktext=[_short(t) for t in ticks], tickfont_size=10, showgrid=False)
    fig.update_xaxes(tickangle=-90)
    fig.update_yaxes(autorange="reversed")
    if picked is not None:
        p = picked // f
        for x0, x1, y0, y1 in ((p - 0.5, p + 0.5, -0.5, len(names) - 0.5), (-0.5, len(names) - 0.5, p - 0.5, p + 0.5)):
            fig.add_shape(type="rect", x0=x0, x1=x1, y0=y0, y1=y1, line=dict(color="black", width=2))
    note = f" (pooled {f}×{f})" if f > 1 else ""
    return layout(fig, title + note, height=500, margin=dict(l=100, r=10, t=50, b=100))


def _circle(n: int) -> np.ndarray:
    """Nodes on a circle in reading order, clockwise from the top: deterministic and legible."""
    angle = math.pi / 2 - 2 * math.pi * np.arange(n) / max(n, 1)
    return np.stack([np.cos(angle), np.sin(angle)], axis=1)


def _outward(pos: np.ndarray) -> list[str]:
    """Text positions that push each label away from the circle, so labels never cover nodes."""
    out = []
    for x, y in pos:
        vertical = "top" if y > 0.5 else "bottom" if y < -0.5 else "middle"
        horizontal = "right" if x > 0.3 else "left" if x < -0.3 else "center"
        out.append(f"{vertical} {horizontal}")
    return out


def attention_graph(
    G: nx.Graph,
    colour: np.ndarray | None = None,
    picked: int | None = None,
    title: str = "",
    colour_name: str = "Fiedler",
    span: float | None = None,
) -> go.Figure:
    """Tokens on a circle, edges as wide as their weight, nodes coloured by ``colour``.

    Args:
        G: from :func:`smoothviz.science.graph.to_networkx` (nodes carry ``label``; edges ``weight``).
        colour: ``[n]`` per-node values (the Fiedler vector); ``None`` colours by weighted degree.
        picked: a node index to enlarge and label.
        span: colour range ``[-span, span]`` for ``colour`` (the same in panels drawn side by side).

    A signed graph (``G.graph["signed"]``: AttnScale's negative weights) says so on the chart:
    only its positive edges are drawn.
    """
    n = G.number_of_nodes()
    pos = _circle(n)
    labels = [escape(G.nodes[i].get("label", str(i))) for i in range(n)]
    edges = [(u, v, d.get("weight", 1.0)) for u, v, d in G.edges(data=True)]
    fig = go.Figure()
    if edges:
        w = np.array([e[2] for e in edges])
        # One trace per width class: a scatter line has one width, and 3 classes read clearly.
        cuts = np.quantile(w, [1 / 3, 2 / 3]) if len(w) > 2 else [w.min(), w.max()]
        for cls, (width, alpha) in enumerate(((0.8, 0.25), (2.0, 0.4), (4.0, 0.6))):
            xs, ys = [], []
            for (u, v, _), c in zip(edges, np.digitize(w, cuts)):
                if c == cls:
                    xs += [pos[u, 0], pos[v, 0], None]
                    ys += [pos[u, 1], pos[v, 1], None]
            if xs:
                fig.add_trace(
                    go.Scatter(
                        x=xs,
                        y=ys,
                        mode="lines",
                        hoverinfo="skip",
                        showlegend=False,
                        line=dict(width=width, color=f"rgba(60,60,60,{alpha})"),
                    )
                )
    if colour is None:
        colour, colour_name = np.array([G.degree(i, weight="weight") for i in range(n)]), "strength"
        scale, mid = "Viridis", None
    else:
        scale, mid = "RdBu", 0.0
    colour = np.round(np.asarray(colour, dtype=np.float64), 4)
    size = 16 if n <= 30 else max(6, int(16 - n / 20))
    fig.add_trace(
        go.Scatter(
            x=pos[:, 0],
            y=pos[:, 1],
            mode="markers",
            showlegend=False,
            marker=dict(
                size=size,
                color=colour,
                colorscale=scale,
                cmid=mid,
                line=dict(color="#333", width=0.5),
                **({"cmin": -span, "cmax": span} if span and mid is not None else {}),
                colorbar=dict(
                    title=dict(text=colour_name, side="top"),
                    thickness=10,
                    orientation="h",
                    len=0.5,
                    y=-0.02,
                    yanchor="top",
                ),
            ),
            text=[f"{i} · {t}" for i, t in enumerate(labels)],
            hovertemplate=f"%{{text}}<br>{colour_name} = %{{marker.color:.3f}}<extra></extra>",
        )
    )
    # Long sentences: every k-th label (like thinned ticks) keeps the reading order visible.
    extra = {picked} if picked is not None and 0 <= picked < n else set()
    idx = sorted(set(range(0, n, thin(n, MAX_NODE_LABELS))) | extra)
    if idx:
        fig.add_trace(
            go.Scatter(
                x=pos[idx, 0] * 1.07,
                y=pos[idx, 1] * 1.07,
                mode="text",
                hoverinfo="skip",
                text=[labels[i] if n <= MAX_NODE_LABELS else f"{i}·{labels[i]}" for i in idx],
                showlegend=False,
                textposition=_outward(pos[idx]),
                textfont=dict(size=11 if n <= 30 else 9),
            )
        )
    if picked is not None and 0 <= picked < n:
        fig.add_trace(
            go.Scatter(
                x=[pos[picked, 0]],
                y=[pos[picked, 1]],
                mode="markers",
                showlegend=False,
                hoverinfo="skip",
                marker=dict(size=size + 10, color="rgba(0,0,0,0)", line=dict(color="black", width=3)),
            )
        )
    if G.graph.get("signed"):
        fig.add_annotation(
            text=SIGNED_GRAPH,
            showarrow=False,
            xref="paper",
            yref="paper",
            x=0,
            y=1,
            xanchor="left",
            yanchor="top",
            align="left",
            font=dict(color="#a04000", size=11),
        )
    fig.update_xaxes(visible=False, range=[-1.4, 1.4])
    fig.update_yaxes(visible=False, range=[-1.2, 1.2], scaleanchor="x")
    return layout(fig, title, height=500, margin=dict(l=10, r=10, t=50, b=70))


SIGNED_GRAPH = (
    "Signed graph (negative weights, AttnScale): only positive edges are drawn;<br>"
    "the colour is the Fiedler vector of the signed Laplacian with absolute degrees"
)
SIGNED_SPECTRUM = (
    "Signed graph: I − D̄^(−1/2)SD̄^(−1/2), D̄ = diag(|S|1) (Kunegis et al. 2010).<br>"
    "Eigenvalues stay in [0, 2]; the smallest is 0 only for a balanced graph,<br>"
    "so λ₂ is not a random walk's mixing gap here"
)


def laplacian_spectrum(run, layer: int, title: str = "") -> go.Figure:
    """Eigenvalues of layer ``layer``'s (1…L) normalized Laplacian, with the spectral gap λ₂ marked."""
    eigs = np.asarray(run.layer_eigs[layer - 1], dtype=np.float64)
    fig = go.Figure(
        go.Scatter(
            x=list(range(1, len(eigs) + 1)),
            y=np.round(eigs, 4),
            mode="markers+lines",
            line=dict(color="#555", width=1),
            marker=dict(size=6 if len(eigs) < 80 else 3),
            hovertemplate="λ%{x} = %{y:.4f}<extra></extra>",
        )
    )
    if len(eigs) > 1:
        gap = float(eigs[1])
        fig.add_hline(y=gap, line=dict(color="#d62728", dash="dash"))
        fig.add_annotation(
            x=2,
            y=gap,
            text=f"spectral gap λ₂ = {gap:.3f}",
            showarrow=True,
            arrowhead=2,
            axref="x",
            ayref="y",
            ax=max(3.0, len(eigs) * 0.3),
            ay=min(gap + 0.6, 1.9),
            font=dict(color="#d62728"),
            bgcolor="rgba(255,255,255,0.8)",
        )
    signed = getattr(run, "signed", None)
    if signed is not None and bool(signed[layer - 1]):
        fig.add_annotation(
            text=SIGNED_SPECTRUM,
            showarrow=False,
            xref="paper",
            yref="paper",
            x=0.99,
            y=0.02,
            xanchor="right",
            yanchor="bottom",
            align="right",
            font=dict(color="#a04000", size=11),
            bgcolor="rgba(255,255,255,0.8)",
        )
    fig.update_yaxes(range=[-0.05, 2.05], title="eigenvalue of 𝓛")
    fig.update_xaxes(title="index (ascending)")
    return layout(fig, title, height=340)


def dovonon(run, layer: int, title: str = "") -> go.Figure:
    """Eigenvalues of each head's W_O W_V (complex plane) for layer ``layer`` (1…L), with its verdict."""
    eigs = np.asarray(run.value_eigs[layer - 1])  # [h, d_h] complex
    h = eigs.shape[0]
    colours = sample_colorscale("Turbo", [i / max(h - 1, 1) for i in range(h)])
    fig = go.Figure()
    t = np.linspace(0, 2 * math.pi, 121)
    fig.add_trace(
        go.Scatter(
            x=np.cos(t),
            y=np.sin(t),
            mode="lines",
            hoverinfo="skip",
            showlegend=False,
            line=dict(color="lightgrey", dash="dot"),
        )
    )
    used = run.used_heads()[layer - 1]
    # The used heads' eigenvalues as faint grey dots (h × d_h of them: a cloud in h colours was unreadable),
    # each head's dominant one (largest |λ|, the mode Dovonon's verdict reads) large, in its colour.
    fig.add_trace(
        go.Scatter(
            x=np.round(eigs[used].real.ravel(), 4),
            y=np.round(eigs[used].imag.ravel(), 4),
            mode="markers",
            name="every eigenvalue",
            marker=dict(size=4, color="rgba(120,120,120,0.35)"),
            hoverinfo="skip",
            showlegend=False,
        )
    )  # the caption names the grey dots
    named = set()  # two legend entries (the verdicts), not one per head: 12 did not fit a projector
    for head in range(h):
        if not used[head]:  # ablated: its output never reached the model, so it has no verdict here
            continue
        low = bool(run.smooths[layer - 1, head])
        top = eigs[head][int(np.argmax(np.abs(eigs[head])))]
        verdict = "smooths (circle)" if low else "sharpens (cross)"
        fig.add_trace(
            go.Scatter(
                x=[round(float(top.real), 4)],
                y=[round(float(top.imag), 4)],
                mode="markers",
                name=verdict,
                legendgroup=verdict,
                showlegend=verdict not in named,
                marker=dict(
                    size=12, color=colours[head], symbol="circle" if low else "x", line=dict(color="#333", width=1)
                ),
                hovertemplate=f"head {head} ({verdict.split()[0]}): dominant λ = %{{x:.3f}} %{{y:+.3f}}i<extra></extra>",
            )
        )
        named.add(verdict)
    share, count = int((run.smooths[layer - 1] & used).sum()), int(used.sum())
    ablated = f" ({h - count} ablated)" if count < h else ""  # short: the title's line must fit a projector
    fig.add_vline(x=0, line=dict(color="grey", width=1))
    fig.add_hline(y=0, line=dict(color="grey", width=1))
    fig.update_xaxes(title="real part")
    fig.update_yaxes(title="imaginary part", scaleanchor="x")
    return layout(
        fig,
        f"{title}\nlayer {layer}: {share}/{count} heads low-pass{ablated}",
        height=420,
        legend=dict(font_size=11, itemsizing="constant"),
    )


def verdicts(analysis) -> go.Figure:
    """Dovonon's verdict per layer and run: the share of heads that are low-pass (smooth)."""
    runs = _runs(analysis)
    z = [[None if np.isnan(v) else round(float(v), 3) for v in r.low_pass_share()] for r in runs.values()]
    names = [run_name(analysis, k) for k in runs]
    L = analysis.n_layers
    text = [r.layer_verdicts() for r in runs.values()]  # SmoothViz's majority summary of the used heads
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(range(1, L + 1)),
            y=[escape(n) for n in names],
            zmin=0,
            zmax=1,
            colorscale=[[0, "#e66101"], [0.5, "#f7f7f7"], [1, "#5e3c99"]],
            text=text,
            texttemplate="%{text}" if L <= 12 else None,
            showscale=False,
            hovertemplate="layer %{x}: %{text} (%{z:.0%} of heads low-pass)<extra>%{y}</extra>",
        )
    )
    fig.update_xaxes(title="layer", dtick=thin(L, 32))
    fig.update_yaxes(autorange="reversed")
    return layout(
        fig,
        "Share of heads low-pass per layer (majority word: SmoothViz's summary)",
        height=150 + 40 * len(z),
        margin=dict(l=160, r=20, t=50, b=45),
    )


# --------------------------------------------------------------------------- 3. trajectories


MAX_PATHS = 256  # token paths drawn in the trajectories (a long text: evenly spaced ones, said under the chart)
# Points a run's trajectories draw (paths × positions; and a picked token's): 256 paths of MiniLM's 7 fit;
# a deeper model draws fewer paths (Gemma 3 270M's 19: 215; a 64-layer lab: 63), so neither the page
# nor the report grows with depth (SmoothViz's choice).
PATH_POINTS = 4096


def path_limit(positions: int) -> int:
    """Paths the trajectories draw at most for ``positions`` points per path (layers 0…L and after)."""
    return max(16, min(MAX_PATHS, PATH_POINTS // max(1, positions)))


def drawn_tokens(n: int, picked: int | None = None, limit: int = MAX_PATHS) -> np.ndarray:
    """The tokens whose paths :func:`trajectories` draws: every token up to ``limit``, above it
    ``limit`` of them evenly spaced from the first to the last, and the picked one."""
    if n <= limit:
        return np.arange(n)
    idx = np.unique(np.linspace(0, n - 1, limit).round().astype(int))
    if picked is not None and 0 <= picked < n:
        idx = np.union1d(idx, [picked])
    return idx


def trajectories(analysis, picked: int | None = None) -> go.Figure:
    """Each token's path through layers 0…L in the joint 2-D projection, runs side by side; for a
    text of more than :func:`path_limit` tokens, the paths of :func:`drawn_tokens` only."""
    coords = analysis.projection
    if coords is None:
        fig = go.Figure()
        fig.add_annotation(text="No projection was computed", showarrow=False)
        return layout(fig, height=200)
    runs = list(_runs(analysis))
    labels = [escape(t) for t in analysis.labels]
    R, layers, n = coords.shape[0], coords.shape[1], coords.shape[2]
    idx = drawn_tokens(n, picked, path_limit(layers))  # positions in the text of the paths drawn
    fig = make_subplots(
        rows=1,
        cols=R,
        shared_xaxes=True,
        shared_yaxes=True,
        horizontal_spacing=0.03,
        subplot_titles=[escape(run_name(analysis, k)) for k in runs[:R]],
    )
    m = len(idx)
    depth = np.repeat(np.arange(layers)[None, :], m, axis=0)  # [m, L+1]
    for r in range(R):
        xy = np.round(coords[r].transpose(1, 0, 2), 3).astype(np.float32)  # [n, L+1, 2]; half float64's bytes
        sep = np.full((m, 1, 2), np.nan, dtype=np.float32)
        path = np.concatenate([xy[idx], sep], axis=1).reshape(-1, 2)  # one trace; NaN breaks between tokens
        fig.add_trace(
            go.Scatter(
                x=path[:, 0],
                y=path[:, 1],
                mode="lines",
                hoverinfo="skip",
                showlegend=False,
                line=dict(color="rgba(120,120,120,0.35)", width=1),
            ),
            row=1,
            col=r + 1,
        )
        by_layer = xy[idx].transpose(1, 0, 2)  # [L+1, m, 2]: deep layers drawn on top
        fig.add_trace(
            go.Scatter(
                x=by_layer[..., 0].ravel(),
                y=by_layer[..., 1].ravel(),
                mode="markers",
                showlegend=False,
                text=[f"{i} · {labels[i]}" for _ in range(layers) for i in idx],
                customdata=depth.T.ravel().astype(np.int16),  # the layer, 2 bytes a point where text took 11
                hovertemplate="%{text} — layer %{customdata}<extra></extra>",
                marker=dict(
                    size=6 if m * layers < 3000 else 4,
                    color=depth.T.ravel(),
                    colorscale="Viridis",
                    cmin=0,
                    cmax=layers - 1,
                    showscale=r == 0,
                    colorbar=dict(title="layer", thickness=12),
                ),
            ),
            row=1,
            col=r + 1,
        )
        fused = getattr(analysis, "fused_projection", None)
        if fused is not None and runs[r] == "mitigated":  # the fused output, fitted in the same projection
            f = np.round(np.asarray(fused, dtype=np.float64), 3)[idx]  # [m, 2]
            step = np.concatenate([xy[idx, -1:], f[:, None], np.full((m, 1, 2), np.nan)], axis=1).reshape(-1, 2)
            fig.add_trace(
                go.Scatter(
                    x=step[:, 0],
                    y=step[:, 1],
                    mode="lines",
                    hoverinfo="skip",
                    showlegend=False,
                    line=dict(color="rgba(0,0,0,0.35)", width=1, dash="dot"),
                ),
                row=1,
                col=r + 1,
            )
            fig.add_trace(
                go.Scatter(
                    x=f[:, 0],
                    y=f[:, 1],
                    mode="markers",
                    name="fused output",
                    showlegend=True,
                    text=[f"{i} · {labels[i]} — fused output" for i in idx],
                    hovertemplate="%{text}<extra></extra>",
                    marker=dict(symbol="star", size=11, color="#111", line=dict(color="white", width=0.5)),
                ),
                row=1,
                col=r + 1,
            )
        if picked is not None and 0 <= picked < n:
            fig.add_trace(
                go.Scatter(
                    x=xy[picked, :, 0],
                    y=xy[picked, :, 1],
                    mode="lines+markers",
                    showlegend=False,
                    line=dict(color="#d62728", width=3),
                    marker=dict(size=8, color="#d62728"),
                    text=[f"{picked} · {labels[picked]} — layer {l}" for l in range(layers)],
                    hovertemplate="%{text}<extra></extra>",
                ),
                row=1,
                col=r + 1,
            )
            fig.add_annotation(
                x=xy[picked, -1, 0],
                y=xy[picked, -1, 1],
                text=labels[picked],
                row=1,
                col=r + 1,
                showarrow=True,
                arrowhead=2,
                font=dict(color="#d62728"),
            )
        last = xy[:, -1]  # each token named where its path ends, unless a named one is that close already
        # "close" on the axes' scale (every layer's points), not the last layer's: end points packed in a
        # corner of the panel had their labels drawn over each other (Gemma on a projector, issue 22)
        span = np.maximum(np.nanmax(xy.reshape(-1, 2), axis=0) - np.nanmin(xy.reshape(-1, 2), axis=0), 1e-9)
        shown: list[int] = []
        for i in ([picked] if picked is not None and 0 <= picked < n else []) + idx.tolist():
            if i not in shown and all(
                abs(last[i, 0] - last[j, 0]) > 0.2 * span[0] or abs(last[i, 1] - last[j, 1]) > 0.1 * span[1]
                for j in shown
            ):
                shown.append(i)
        fig.add_trace(
            go.Scatter(
                x=last[shown, 0],
                y=last[shown, 1],
                mode="text",
                showlegend=False,
                hoverinfo="skip",
                text=[labels[i] for i in shown],
                textposition="top center",
                textfont=dict(size=11, color="#333"),
            ),
            row=1,
            col=r + 1,
        )
    method = (getattr(analysis, "projection_method", None) or "projection").upper()
    fig.update_xaxes(title_text=f"{method} 1", showticklabels=True, nticks=5)
    fig.update_yaxes(title_text=f"{method} 2", showticklabels=True, nticks=5, col=1)
    return layout(fig, height=480)


# --------------------------------------------------------------------------- 4-6. atlas, spectra, rollout

HEAD_QUANTITIES = {
    "head_gap": "spectral gap λ₂",
    "head_entropy": "attention entropy (nats)",
    "head_uniform": "‖A − 11ᵀ/n‖_F",
}
_SHORT = {"head_gap": "λ₂", "head_entropy": "entropy", "head_uniform": "‖A−U‖"}


def head_atlas(run, quantity: str = "head_gap", title: str = "", picked: tuple[int, int] | None = None) -> go.Figure:
    """Heatmap of a per-head quantity ``[L, h]``: rows are layers 1…L, columns heads."""
    z = np.round(np.asarray(getattr(run, quantity), dtype=np.float64), 3)
    L, h = z.shape
    # An ablated head's attention is still computed, but its output never reaches the model: its
    # cell is left blank and marked, not coloured as if it were alive (issue 22).
    used = run.used_heads() if hasattr(run, "used_heads") else None
    dead = np.zeros_like(z, dtype=bool) if used is None or np.shape(used) != z.shape else ~np.asarray(used, bool)
    z = np.where(dead, np.nan, z)
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(range(h)),
            y=list(range(1, L + 1)),
            colorscale="Viridis",
            colorbar=dict(title=_SHORT.get(quantity, quantity), thickness=12),
            texttemplate="%{z:.2f}" if L * h <= 120 else None,
            textfont_size=10,
            hoverongaps=False,
            hovertemplate="layer %{y}, head %{x}: %{z:.3f}<extra></extra>",
        )
    )
    if dead.any():
        layers, heads = np.nonzero(dead)
        fig.add_trace(
            go.Scatter(
                x=heads.tolist(),
                y=(layers + 1).tolist(),
                mode="markers",
                name="ablated",
                marker=dict(symbol="x-thin", size=14, line=dict(color="#333333", width=2)),
                showlegend=False,
                hovertemplate="layer %{y}, head %{x}: ablated<extra></extra>",
            )
        )
        title += f" ({int(dead.sum())} ablated: ×)"
    if picked is not None:
        layer, head = picked
        fig.add_shape(
            type="rect",
            x0=head - 0.5,
            x1=head + 0.5,
            y0=layer - 0.5,
            y1=layer + 0.5,
            line=dict(color="#d62728", width=3),
        )
    fig.update_xaxes(title="head", dtick=1 if h <= 16 else None)
    fig.update_yaxes(title="layer", autorange="reversed", dtick=thin(L, 24))
    return layout(fig, f"{title} — {HEAD_QUANTITIES.get(quantity, quantity)}", height=min(700, 180 + 22 * L))


def sv_spectra(run, title: str = "") -> go.Figure:
    """σ_i/σ₁ of every layer's token matrix (log scale), one line per layer coloured by depth."""
    sv = np.asarray(run.sv, dtype=np.float64)  # [L+1, k]
    layers, k = sv.shape
    colours = sample_colorscale("Viridis", [l / max(layers - 1, 1) for l in range(layers)])
    fig = go.Figure()
    x = np.arange(1, k + 1, dtype=np.int32)  # typed arrays: a deep model at 512 tokens draws L+1 such lines
    for l in range(layers):
        y = np.where(sv[l] > 0, sv[l], np.nan)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=np.round(y, 5).astype(np.float32),
                mode="lines",
                line=dict(color=colours[l], width=1.5),
                name=f"layer {l}",
                showlegend=False,
                hovertemplate=f"layer {l}<br>σ%{{x}}/σ₁ = %{{y:.3g}}<extra></extra>",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=[None],
            y=[None],
            mode="markers",
            showlegend=False,
            hoverinfo="skip",
            marker=dict(
                colorscale="Viridis",
                cmin=0,
                cmax=layers - 1,
                color=[0],
                showscale=True,
                colorbar=dict(title="layer", thickness=12),
            ),
        )
    )
    fig.update_yaxes(type="log", title="σᵢ / σ₁ (log)", **log_ticks(np.round(sv.ravel(), 5)))
    fig.update_xaxes(title="index i")
    return layout(fig, title, height=380)


def rollout(analysis) -> go.Figure:
    """σ₂/σ₁ of the attention rollout up to each layer: → 0 as the product converges to rank one."""
    fig = go.Figure()
    L = analysis.n_layers
    same = _coincide(analysis, lambda run: run.metric("rollout_ratio")[1:])
    for key, run in _runs(analysis).items():
        over = same and key == "mitigated"  # dashed over the baseline, wider markers: both stay visible
        fig.add_trace(
            go.Scatter(
                x=list(range(1, L + 1)),
                y=[None if v is None else round(v, 6) for v in run.metric("rollout_ratio")[1:]],
                mode="lines+markers",
                name=escape(run_name(analysis, key)) + (SAME if over else ""),
                line=dict(color=RUN_COLOURS[key], dash="dash" if over else "solid"),
                marker=dict(symbol="circle-open", size=9) if over else None,
                hovertemplate="layer %{x}: σ₂/σ₁ = %{y:.3g}<extra></extra>",
            )
        )
    shown = [y for trace in fig.data for y in trace.y]
    fig.update_yaxes(type="log", title="σ₂/σ₁ of rollout (log)", **log_ticks(shown))
    fig.update_xaxes(title="layer", dtick=thin(L, 16))
    return layout(
        fig, "Attention rollout convergence", height=360, legend=dict(orientation="h", y=-0.3, yanchor="top", x=0)
    )


def enlarged(fig: go.Figure, factor: float, height: int, floor: float = 0) -> go.Figure:
    """A copy of ``fig`` for a projector: every font ``factor`` times larger, and at least ``floor``
    px (the base font and the ticks, panel titles, legends and cell texts set their own sizes),
    ``height`` pixels tall. Explicit tick labels are thinned so that ``floor``-px labels do not
    overlap along an axis of about ``height`` pixels (the heatmaps' token labels)."""

    def size(v):
        return max(v * factor, floor)

    def grow(node):
        if isinstance(node, dict):
            return {
                k: {**grow(v), "size": size(v["size"])}
                if "font" in k and isinstance(v, dict) and isinstance(v.get("size"), (int, float))
                else size(v)
                if k.endswith("font_size") and isinstance(v, (int, float))
                else grow(v)
                for k, v in node.items()
            }
        return [grow(v) for v in node] if isinstance(node, (list, tuple)) else node

    if floor:
        fig = _decade_ticks(go.Figure(fig), height - 160, floor)
        room = max(2, int((height - 160) // (floor * 1.6)))
        for trace in fig.data:  # a heatmap's numbered rows and columns (the atlas): one label per floor-px line
            if trace.type == "heatmap" and trace.z is not None:
                z = np.asarray(trace.z)
                for letter, count in (("y", z.shape[0]), ("x", z.shape[1] if z.ndim > 1 else 1)):
                    axis = fig.layout[f"{letter}axis{(getattr(trace, letter + 'axis') or letter)[1:]}"]
                    values = getattr(trace, letter)
                    if (
                        axis.tickvals is None
                        and values is not None
                        and count > room
                        and all(isinstance(v, (int, float, np.integer)) for v in values)
                    ):
                        axis.update(dtick=max(axis.dtick or 1, math.ceil(count / room)))
    spec = fig.to_dict()
    spec["layout"].setdefault("font", {}).setdefault("size", 12)  # plotly's default, made explicit to scale
    spec["layout"].setdefault("hoverlabel", {}).setdefault("font", {}).setdefault("size", 12)
    for axis in (v for k, v in spec["layout"].items() if k.startswith(("xaxis", "yaxis"))):
        axis.setdefault("tickfont", {}).setdefault("size", spec["layout"]["font"]["size"])
        if axis.get("title") and isinstance(axis["title"], dict) and "text" in axis["title"]:
            axis["title"].setdefault("font", {}).setdefault("size", spec["layout"]["font"]["size"])
    for note in spec["layout"].get("annotations", []):
        note.setdefault("font", {}).setdefault("size", spec["layout"]["font"]["size"])
    if isinstance(spec["layout"].get("title"), dict):
        spec["layout"]["title"].setdefault("font", {}).setdefault("size", spec["layout"]["font"]["size"])
    spec = grow(spec)
    spec["layout"]["height"] = height
    if floor:
        title = spec["layout"].get("title") or {}
        if len(title.get("text") or "") > TITLE_CHARS and " — " in title["text"]:  # two lines, not cut at the edge
            title["text"] = title["text"].replace(" — ", "<br>", 1)
            spec["layout"].setdefault("margin", {})["t"] = spec["layout"].get("margin", {}).get("t", 60) + floor * 1.5
        room = max(6, int((height - 160) * 3 // (floor * 4)))  # node labels around a circle of the plot's height
        for trace in spec["data"]:  # a graph's node labels: every k-th, so that floor-px words keep apart
            if trace.get("mode") == "text":
                trace["cliponaxis"] = False  # a label above the top node stays whole
            if (
                trace.get("mode") == "text"
                and isinstance(trace.get("text"), (list, tuple))
                and len(trace["text"]) > room
            ):
                n, step = len(trace["text"]), math.ceil(len(trace["text"]) / room)
                # every step-th around the circle, and none just before the first (the circle closes there)
                trace["text"] = [
                    t if i % step == 0 and (i == 0 or n - i >= step) else "" for i, t in enumerate(trace["text"])
                ]
            bar = (trace.get("marker") or {}).get("colorbar")
            if bar and bar.get("orientation") == "h":  # the bar's title beside it, clear of the labels above
                bar.setdefault("title", {})["side"] = "right"
        for trace in spec["data"]:  # cell texts plotly would shrink under the floor to fit narrow cells
            if trace.get("type") == "heatmap" and trace.get("texttemplate") and len(trace.get("x") or []) > 8:
                trace["texttemplate"] = None
        plot = height - 160  # the plot area left after the title and the rotated labels, roughly
        for axis in (v for k, v in spec["layout"].items() if k.startswith(("xaxis", "yaxis"))):
            vals, text = axis.get("tickvals"), axis.get("ticktext")
            if vals is not None and text is not None and len(vals) > 1:
                step = thin(len(vals), max(2, int(plot // (floor * 1.25))))
                keep = list(range(0, len(vals), step))
                # the positions after the last layer (final norm, fused output) keep their labels
                named = [i for i, t in enumerate(text) if str(t) in (FINAL_NORM, "fused")]
                if named:
                    keep = [i for i in keep if i < named[0]][: max(1, len(keep) - len(named))] + named
                axis["tickvals"], axis["ticktext"] = [vals[i] for i in keep], [text[i] for i in keep]
    return go.Figure(spec)


def _decade_ticks(fig: go.Figure, plot_px: float = 250, floor: float = 16) -> go.Figure:
    """Log axes left to plotly get explicit labels at powers of ten in full-size digits: plotly's
    own ("10" with a smaller superscript, and small 2 and 5 between decades) come out under the
    projector's smallest size. A y axis gets at most one label per two ``floor``-px lines of its
    share of the ``plot_px`` plot height (small multiples are short)."""
    for name in [k for k in fig.layout.to_plotly_json() if k.startswith(("xaxis", "yaxis"))]:
        axis = fig.layout[name]
        labels = 5
        if name.startswith("yaxis"):
            domain = axis.domain or (0, 1)
            labels = max(2, int(plot_px * (domain[1] - domain[0]) // (floor * 2)))
            if axis.type != "log" and axis.tickvals is None:
                axis.update(nticks=min(axis.nticks or labels, labels))
        if axis.type == "log" and axis.tickvals is not None and name.startswith("yaxis"):
            # 1-2-5 labels (log_ticks) in full-size digits crowd a short projector panel (the Shi
            # chart under a four-line legend: "1" on "2", "5" on "10"): powers of ten only there.
            decades = [
                (v, t)
                for v, t in zip(axis.tickvals, axis.ticktext or axis.tickvals)
                if float(v) > 0 and math.isclose(math.log10(float(v)), round(math.log10(float(v))))
            ]
            if 2 <= len(decades) < len(axis.tickvals):
                axis.update(tickvals=[v for v, _ in decades], ticktext=[t for _, t in decades])
            continue
        if axis.type != "log" or axis.tickvals is not None:
            continue
        letter, ref = name[0], name[0] + name[5:]
        values = np.concatenate(
            [
                np.ravel(np.asarray(getattr(t, letter), dtype=np.float64))
                for t in fig.data
                if getattr(t, letter) is not None and (getattr(t, f"{letter}axis", None) or letter) == ref
            ]
            or [np.array([])]
        )
        values = values[np.isfinite(values) & (values > 0)]
        if values.size == 0:
            continue
        lo, hi = math.floor(math.log10(values.min())), math.ceil(math.log10(values.max()))
        ticks = [10.0**k for k in range(lo, hi + 1, max(1, math.ceil((hi - lo) / max(1, labels - 1))))]
        axis.update(tickvals=ticks, ticktext=[_tick_text(t) for t in ticks])
    return fig


TITLE_CHARS = 40  # a longer chart title is split at its dash on a projector (half-width charts)
LAYER_MARK = "#222222"


def mark_layer(fig: go.Figure, key: str, layer: int) -> go.Figure:
    """``fig`` (a view's figure, by the view's ``key``) with layer ``layer`` marked, for views that
    show every layer at once (Present: the ← → keys visibly move something on every view)."""
    fig = go.Figure(fig)
    if key in ("curves", "shi", "rollout"):
        grid = fig._grid_ref is not None
        fig.add_vline(
            x=layer, line=dict(color=LAYER_MARK, dash="dot", width=2), **({"row": "all", "col": "all"} if grid else {})
        )
    elif key == "verdicts":
        fig.add_shape(
            type="rect", x0=layer - 0.5, x1=layer + 0.5, y0=0, y1=1, yref="paper", line=dict(color=LAYER_MARK, width=3)
        )
    elif key == "sv":
        for trace in fig.data:
            if trace.name == f"layer {layer}":
                trace.line.width, trace.line.color = 5, "#d62728"
    elif key == "trajectories":
        for trace in list(fig.data):
            if trace.mode == "markers" and trace.text is not None:
                at = [j for j, t in enumerate(trace.text) if str(t).endswith(f"— layer {layer}")]
                fig.add_trace(
                    go.Scatter(
                        x=[trace.x[j] for j in at],
                        y=[trace.y[j] for j in at],
                        mode="markers",
                        showlegend=False,
                        hoverinfo="skip",
                        xaxis=trace.xaxis,
                        yaxis=trace.yaxis,
                        marker=dict(size=14, color="rgba(0,0,0,0)", line=dict(color="#d62728", width=3)),
                    )
                )
    return fig


def image_config(name: str, fmt: str = "png") -> dict:
    """plotly's toolbar config: download as ``fmt`` (png or svg) under ``name``, offline."""
    fmt = fmt if fmt in ("png", "svg") else "png"
    # Nothing of plotly's cloud (its "Share chart"/"Edit in Chart Studio" sends the data away): offline.
    return {
        "displaylogo": False,
        "modeBarButtonsToRemove": ["lasso2d", "select2d", "sendDataToCloud"],
        "showSendToCloud": False,
        "showEditInChartStudio": False,
        "showLink": False,
        "toImageButtonOptions": {
            "format": fmt,
            "filename": f"smoothviz-{name}",
            **({"scale": 2} if fmt == "png" else {}),
        },
    }
