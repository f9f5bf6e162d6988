"""Pure figure builders for corpus mode: a corpus summary in, ``plotly.graph_objects.Figure`` out.

The colours, fonts and metric titles are the main page's (:mod:`smoothviz.outputs.figures`), so a corpus
chart and a one-sentence chart read alike.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from smoothviz.corpora.store import BINS
from smoothviz.outputs.figures import RUN_COLOURS, depth_axes, escape, layout, log_ticks, thin
from smoothviz.science.metrics import by_name as registered
from smoothviz.words.trends import smoothing_direction

# +1 where a metric rises as tokens become alike, −1 where it falls: the registry's arrows.
COLLAPSE = smoothing_direction()

CAPTIONS = {
    "bands": "Each line is the median over the sentences at that layer and the band spans their 25th to "
    "75th percentile: a narrow band means the sentences agree. Compare the two colours at the same layer.",
    "cosines": "Each row is one layer: the share of all token pairs of all sentences in each bin of cosine "
    "similarity. Mass moving right, towards 1, from the embeddings to the last layer is token "
    "uniformity concentrating.",
    "ranking": "The change of the chosen metric from the embeddings (layer 0) to the last layer, per sentence, "
    "without mitigation. Open a sentence to see it layer by layer on the main page.",
}


def _hex_rgba(colour: str, alpha: float) -> str:
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def band_curves(summary: dict, metrics: list[str], names: dict[str, str] | None = None, cols: int = 4) -> go.Figure:
    """Small multiples: per metric, the median over sentences per layer and its quartile band.

    Args:
        summary: :meth:`CorpusResult.summary` (``baseline`` / ``mitigated`` → ``layers``).
        metrics: the metric names to draw, one panel each.
        names: legend text per run (default: the run's key).
    A fused output is an extra point at L + 1 with its quartiles as an error bar.
    """
    runs = [r for r in ("baseline", "mitigated") if r in summary]
    registry = registered()
    rows = max(1, math.ceil(len(metrics) / cols))
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=[registry[m].label if m in registry else m for m in metrics],
        horizontal_spacing=0.06,
        vertical_spacing=0.14 if rows > 1 else 0.1,
    )
    depth = max((e["layer"] for r in runs for e in summary[r]["layers"] if e["layer"] != "fused"), default=0)
    has_fused = any(e["layer"] == "fused" for r in runs for e in summary[r]["layers"])
    traces, where = [], []
    for key in runs:
        colour, name = RUN_COLOURS[key], escape((names or {}).get(key, key))
        layers = [e for e in summary[key]["layers"] if e["layer"] != "fused"]
        fused = next((e for e in summary[key]["layers"] if e["layer"] == "fused"), None)
        x = [e["layer"] for e in layers]
        for i, m in enumerate(metrics):
            med, lo, hi = ([e[m][q] if m in e else None for e in layers] for q in ("median", "q25", "q75"))
            cell = divmod(i, cols)
            traces += [
                go.Scatter(
                    x=x + x[::-1],
                    y=hi + lo[::-1],
                    mode="lines",
                    fill="toself",
                    fillcolor=_hex_rgba(colour, 0.18),
                    line=dict(width=0),
                    hoverinfo="skip",
                    legendgroup=key,
                    showlegend=False,
                ),
                go.Scatter(
                    x=x,
                    y=med,
                    mode="lines+markers",
                    name=name,
                    legendgroup=key,
                    showlegend=i == 0,
                    line=dict(color=colour, width=2),
                    marker=dict(size=4),
                    customdata=np.array([lo, hi], dtype=object).T,
                    hovertemplate=f"{m}<br>layer %{{x}}: median %{{y:.4g}}<br>quartiles "
                    f"%{{customdata[0]:.4g}} – %{{customdata[1]:.4g}}<extra>{name}</extra>",
                ),
            ]
            where += [cell, cell]
            if fused is not None and fused.get(m, {}).get("median") is not None:
                f = fused[m]
                traces.append(
                    go.Scatter(
                        x=[depth + 1],
                        y=[f["median"]],
                        mode="markers",
                        legendgroup=key,
                        showlegend=False,
                        error_y=dict(
                            type="data",
                            symmetric=False,
                            array=[f["q75"] - f["median"]],
                            arrayminus=[f["median"] - f["q25"]],
                            color=colour,
                        ),
                        marker=dict(symbol="star", size=12, color=colour, line=dict(color="black", width=1)),
                        hovertemplate=f"{m}<br>fused output: median %{{y:.4g}}<extra>{name}</extra>",
                    )
                )
                where.append(cell)
    fig.add_traces(traces, rows=[r + 1 for r, _ in where], cols=[c + 1 for _, c in where])
    for i, m in enumerate(metrics):  # a collapse to 1e-6 is invisible on a linear axis
        shown = [e[m][q] for r in runs for e in summary[r]["layers"] if m in e for q in ("q25", "q75")]
        shown = [v for v in shown if v is not None and v > 0]
        if m in registry and registry[m].log and shown and max(shown) / min(shown) > 100:
            fig.update_yaxes(type="log", dtick=None, **log_ticks(shown), row=i // cols + 1, col=i % cols + 1)
    depth_axes(fig, depth, has_fused)
    return layout(fig, height=230 * rows + 70, legend=dict(orientation="h", yanchor="bottom", y=1.04, x=0))


def cosine_histograms(labels: list, counts: np.ndarray, title: str = "") -> go.Figure:
    """Heatmap: one row per layer, the share of token pairs in each cosine bin over [−1, 1].

    Args:
        labels: the layers (``"fused"`` for a fused output); counts: ``[layers, BINS]`` pair counts.
    """
    counts = np.asarray(counts, dtype=np.float64)
    share = 100 * counts / np.maximum(counts.sum(-1, keepdims=True), 1)
    centres = -1 + (np.arange(BINS) + 0.5) * 2 / BINS
    rows = [str(v) for v in labels]
    mean = [(s * centres).sum() / 100 if s.sum() else None for s in share]
    fig = go.Figure(
        go.Heatmap(
            z=share,
            x=centres,
            y=rows,
            colorscale="Viridis",
            zmin=0,
            colorbar=dict(title="% of pairs", thickness=12),
            hovertemplate="layer %{y}<br>cosine %{x:.2f}: %{z:.1f}% of pairs<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=mean,
            y=rows,
            mode="markers",
            marker=dict(color="white", size=7, symbol="line-ns-open", line=dict(width=2, color="white")),
            name="mean cosine",
            hovertemplate="layer %{y}: mean cosine %{x:.3f}<extra></extra>",
        )
    )
    fig.update_xaxes(title="cosine similarity of a token pair", range=[-1, 1], dtick=0.25)
    fig.update_yaxes(title="layer", type="category", dtick=thin(len(rows), 16))
    return layout(fig, title, height=max(300, 26 * len(rows) + 140), showlegend=False)
