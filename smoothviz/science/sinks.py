"""Attention sinks: how much attention each token receives, layer by layer.

Many trained transformers send most of their attention to the first token (``<bos>``, ``[CLS]``)
whatever it says: an *attention sink* (Xiao et al. 2024, "Efficient streaming language models
with attention sinks"; Gu et al. 2024, "When attention sink emerges in language models"). The
per-layer metrics ``first_token_mass`` and ``sink_rate`` are in :mod:`smoothviz.science.metrics`; this
module holds the view that shows every token's share. Pure functions: analysis in, numbers or a
figure out.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from smoothviz.outputs.figures import _short, _tick_text, escape, layout, thin
from smoothviz.outputs.tables import _f

FLOOR = 1e-4  # the colour scale's lower end: smaller shares are drawn as this (a log scale has no 0)


def received(run) -> np.ndarray:
    """``[L, N]``: the attention each key token receives at each layer, the mean over heads and
    query rows of ``A_ij`` (so each layer's row sums to 1 over the tokens: each token's share of
    all the attention paid). Every token, special ones included: the sink is often one of them."""
    if run.attentions is None:  # a streamed sentence keeps only these shares (smoothviz.pipeline.stream)
        return np.asarray(run.received, dtype=np.float64)
    A = np.asarray(run.attentions, dtype=np.float64)  # [L, h, N, N]
    return A.mean(axis=(1, 2))


def uniform_share(n: int, causal: bool) -> float:
    """The first token's share under uniform attention over the visible keys: 1/n, or in a causal
    model (1/n) Σ_i 1/(i+1), since row i spreads over i + 1 tokens and every row sees the first."""
    return sum(1 / (i + 1) for i in range(n)) / n if causal else 1 / n


def sink_heatmap(run, tokens: list[str], title: str = "") -> go.Figure:
    """Layers down, key tokens across, colour the received share on a log scale."""
    share = received(run)
    L, n = share.shape
    z = np.log10(np.clip(share, FLOOR, None))
    names = [f"{i} · {escape(t)}" for i, t in enumerate(tokens)]
    lo = math.floor(math.log10(FLOOR))
    ticks = list(range(lo, 1))
    fig = go.Figure(
        go.Heatmap(
            z=np.round(z, 3).astype(np.float32),  # what a colour shows; half the bytes of float64
            x=names,
            y=list(range(1, L + 1)),
            zmin=lo,
            zmax=0,
            colorscale="Viridis",
            customdata=np.round(share, 4).astype(np.float32),
            colorbar=dict(title="share", thickness=12, tickvals=ticks, ticktext=[_tick_text(10.0**t) for t in ticks]),
            hovertemplate="layer %{y}<br>%{x}<br>share of attention = %{customdata:.4f}<extra></extra>",
        )
    )
    shown = names[:: thin(n, 36)]
    fig.update_xaxes(
        tickvals=shown, ticktext=[_short(t) for t in shown], tickangle=-90, tickfont_size=10, showgrid=False
    )
    fig.update_yaxes(title="layer", autorange="reversed", showgrid=False)
    return layout(fig, title, height=420, margin=dict(l=60, r=10, t=50, b=100))


def sink_table(analysis, at=None) -> list[dict]:
    """Per run and layer: each token's received share (the heatmap's numbers)."""
    from smoothviz.outputs.figures import run_name

    cols = [f"{j} · {t}" for j, t in enumerate(analysis.tokens)]
    return [
        {"run": run_name(analysis, key), "layer": layer + 1, **{c: _f(v) for c, v in zip(cols, row)}}
        for key, run in analysis.runs().items()
        for layer, row in enumerate(received(run))
    ]


def sink_lines(analysis, names: dict[str, str]) -> list[str]:
    """One sentence per run from its numbers: the first token's share at the last layer and how
    many heads there are sinks (``sink_rate``, Gu et al.'s ε = 0.3)."""
    out = []
    for key, run in analysis.runs().items():
        last = run.rows[-1]
        mass, rate = last.get("first_token_mass"), last.get("sink_rate")
        if mass is None:
            continue
        text = (
            f"{names.get(key, key)}: at layer {analysis.n_layers} the first token "
            f"(`{analysis.tokens[0].replace('`', '')}`) receives {mass:.2f} of all attention (uniform attention "
            f"would give it {uniform_share(len(analysis.tokens), analysis.causal):.2f})"
        )
        if rate is not None:
            text += f"; {rate:.0%} of the heads send it more than 0.3 on average"
        out.append(text + ".")
    return out
