"""The views only a picture allows: per-patch numbers drawn over the image the model saw.

Pure functions of an :class:`~smoothviz.pipeline.analysis.Analysis` whose ``image`` is set (a vision model):
figure builders (data in, ``go.Figure`` out), the sentences under each chart (computed from the
numbers drawn) and the charts' numbers as table rows. :mod:`smoothviz.outputs.views` registers them.
Patch (r, c) covers pixels ``[r·p, (r+1)·p) × [c·p, (c+1)·p)``; its value is drawn as one cell there.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from smoothviz.outputs.figures import layout, run_name

MAX_PANELS = 25  # layers drawn in the over-depth grid (evenly spaced beyond this, the last always kept)


def patch_index(analysis) -> np.ndarray:
    """``[rows·cols]`` each patch's index among the kept tokens (patches are never special, so all kept)."""
    info = analysis.image
    where = {token: i for i, token in enumerate(analysis.keep)}
    return np.array([where[info.prefix + i] for i in range(info.patches)])


def picked_patch(analysis, picked: int | None) -> int:
    """The patch (row-major index) a view is about: the picked token when it is a patch, else the centre one."""
    info = analysis.image
    if picked is not None and 0 <= picked < len(analysis.keep):
        position = info.position(analysis.keep[picked])
        if position is not None:
            return position[0] * info.grid[1] + position[1]
    rows, cols = info.grid
    return (rows // 2) * cols + cols // 2


def label(analysis, patch: int) -> str:
    """``p<row>,<col>`` of a patch (row-major index)."""
    return "p%d,%d" % divmod(patch, analysis.image.grid[1])


def on_grid(analysis, values: np.ndarray) -> np.ndarray:
    """Values over the kept tokens ``[n]`` → ``[rows, cols]`` over the patches."""
    return np.asarray(values, dtype=np.float64)[patch_index(analysis)].reshape(analysis.image.grid)


def patch_similarity(analysis, run_key: str, layer: int, patch: int) -> np.ndarray:
    """``[rows, cols]`` cosine similarity of every patch's state at ``layer`` (0…L) to ``patch``'s."""
    sim = np.asarray(analysis.runs()[run_key].similarity[layer], dtype=np.float64)
    return on_grid(analysis, sim[patch_index(analysis)[patch]])


def fiedler_grid(analysis, run_key: str, layer: int) -> tuple[np.ndarray, float]:
    """``([rows, cols]`` Fiedler vector of layer ``layer``'s (1…L) attention graph, its λ₂)."""
    run = analysis.runs()[run_key]
    return on_grid(analysis, run.fiedler[layer - 1]), float(run.layer_eigs[layer - 1][1])


def strongest_edges(analysis, run_key: str, layer: int, top_k: int) -> list[tuple[int, int, float]]:
    """``(patch a, patch b, weight)``: each patch's ``top_k`` strongest links to other patches in the
    layer's symmetrised graph S, each pair once, strongest first."""
    S = np.asarray(analysis.runs()[run_key].layer_graph[layer - 1], dtype=np.float64)
    idx = patch_index(analysis)
    W = S[np.ix_(idx, idx)].copy()
    np.fill_diagonal(W, -np.inf)
    k = max(1, min(int(top_k), W.shape[0] - 1)) if W.shape[0] > 1 else 0
    pairs = {}
    for a in range(W.shape[0] if k else 0):
        for b in np.argsort(-W[a], kind="stable")[:k]:
            key = (min(a, int(b)), max(a, int(b)))
            pairs[key] = float(W[a, b])
    return sorted(((a, b, w) for (a, b), w in pairs.items()), key=lambda e: -e[2])


def edge_lengths(analysis, edges: list) -> np.ndarray:
    """Each edge's length in patch widths (Euclidean, between patch centres)."""
    cols = analysis.image.grid[1]
    return np.array([np.hypot(*np.subtract(divmod(a, cols), divmod(b, cols))) for a, b, _ in edges])


def mean_patch_cosine(analysis, run_key: str) -> np.ndarray:
    """``[L+1, rows, cols]`` each patch's mean cosine similarity to the other patches, per layer."""
    sim = np.asarray(analysis.runs()[run_key].similarity, dtype=np.float64)
    idx = patch_index(analysis)
    sub = sim[:, idx][:, :, idx]
    n = len(idx)
    mean = (sub.sum(-1) - np.einsum("lii->li", sub)) / max(n - 1, 1)
    return mean.reshape(-1, *analysis.image.grid)


# --------------------------------------------------------------------------- figures


def _png(pixels: np.ndarray) -> str:
    """``[H, W, 3]`` uint8 → a PNG data URI, lossless: the similarity figure over a 224×224 example
    weighs 20 KiB this way against 223 KiB with plotly's JSON array of pixel values, and every figure
    drawn over the picture carries it (each slider move sends them)."""
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, "PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _base(analysis, title: str) -> go.Figure:
    """The picture as the model saw it, in pixel coordinates (y down)."""
    info = analysis.image
    fig = go.Figure(go.Image(source=_png(info.pixels), hoverinfo="skip"))
    h, w = info.pixels.shape[:2]
    fig.update_xaxes(visible=False, range=[-0.5, w - 0.5], constrain="domain")
    fig.update_yaxes(visible=False, range=[h - 0.5, -0.5], scaleanchor="x", constrain="domain")
    return layout(fig, title, height=380, margin=dict(l=10, r=10, t=50, b=10))


def _centres(analysis) -> tuple[np.ndarray, np.ndarray]:
    info = analysis.image
    return (np.arange(info.grid[1]) + 0.5) * info.patch - 0.5, (np.arange(info.grid[0]) + 0.5) * info.patch - 0.5


def _overlay(
    analysis, values: np.ndarray, title: str, colorscale: str, zmin: float, zmax: float, name: str
) -> go.Figure:
    fig = _base(analysis, title)
    xs, ys = _centres(analysis)
    text = [[f"p{r},{c}" for c in range(values.shape[1])] for r in range(values.shape[0])]
    fig.add_trace(
        go.Heatmap(
            z=values,
            x=xs,
            y=ys,
            zmin=zmin,
            zmax=zmax,
            colorscale=colorscale,
            opacity=0.6,
            text=text,
            hovertemplate="%{text}: " + name + " %{z:.3f}<extra></extra>",
            colorbar=dict(title=name, thickness=12),
        )
    )
    return fig


def _mark(fig: go.Figure, analysis, patch: int) -> None:
    xs, ys = _centres(analysis)
    r, c = divmod(patch, analysis.image.grid[1])
    fig.add_trace(
        go.Scatter(
            x=[xs[c]],
            y=[ys[r]],
            mode="markers",
            showlegend=False,
            hoverinfo="skip",
            marker=dict(symbol="x", size=12, color="black", line=dict(width=2, color="white")),
        )
    )


def similarity_figure(analysis, run_key: str, layer: int, picked: int | None) -> go.Figure:
    """Cosine similarity of every patch to the chosen one at ``layer``, over the image (fixed −1…1 scale)."""
    patch = picked_patch(analysis, picked)
    grid = patch_similarity(analysis, run_key, layer, patch)
    title = (
        f"{run_name(analysis, run_key)} — layer {layer}: similarity to {label(analysis, patch)} "
        f"spans {np.nanmin(grid):.2f}…{np.nanmax(grid):.2f}"
    )
    fig = _overlay(analysis, grid, title, "RdBu_r", -1.0, 1.0, "cosine")
    _mark(fig, analysis, patch)
    _clickable(fig, analysis, [f"{label(analysis, i)}: cosine {v:.3f}" for i, v in enumerate(grid.ravel())])
    return fig


def _clickable(fig: go.Figure, analysis, hover: list[str]) -> None:
    """An invisible marker on every patch centre, its row-major index as ``customdata``: clicking the
    picture selects the nearest one (a heatmap's cells cannot be selected; the page reads the point)."""
    info = analysis.image
    xs, ys = _centres(analysis)
    gx, gy = np.meshgrid(xs, ys)
    hidden = dict(marker=dict(opacity=0))
    fig.add_trace(
        go.Scatter(
            x=gx.ravel(),
            y=gy.ravel(),
            mode="markers",
            customdata=np.arange(info.patches),
            marker=dict(size=max(6, min(30, 300 // max(info.grid))), color="rgba(0,0,0,0)"),
            selected=hidden,
            unselected=hidden,
            showlegend=False,
            name="patches",
            text=hover,
            hovertemplate="%{text} (click: compare with this patch)<extra></extra>",
        )
    )


def fiedler_figure(analysis, run_key: str, layer: int) -> go.Figure:
    """The Fiedler vector of the layer's attention graph over the image, λ₂ in the title."""
    grid, gap = fiedler_grid(analysis, run_key, layer)
    span = float(np.nanmax(np.abs(grid))) or 1.0
    title = f"{run_name(analysis, run_key)} — layer {layer}: Fiedler vector, λ₂ = {gap:.3f}"
    return _overlay(analysis, grid, title, "PuOr", -span, span, "Fiedler")


def edges_figure(analysis, run_key: str, layer: int, top_k: int) -> go.Figure:
    """The layer's strongest patch-to-patch edges drawn between patch centres."""
    edges = strongest_edges(analysis, run_key, layer, top_k)
    fig = _base(analysis, f"{run_name(analysis, run_key)} — layer {layer}: {len(edges)} strongest edges")
    xs, ys = _centres(analysis)
    cols = analysis.image.grid[1]
    weights = np.array([w for *_, w in edges]) if edges else np.zeros(0)
    strong = weights >= np.median(weights) if edges else np.zeros(0, bool)
    for keep, width, colour in ((~strong, 1.0, "rgba(255,255,0,0.55)"), (strong, 2.5, "rgba(255,80,0,0.9)")):
        x, y = [], []
        for (a, b, _), on in zip(edges, keep):
            if on:
                (ra, ca), (rb, cb) = divmod(a, cols), divmod(b, cols)
                x += [xs[ca], xs[cb], None]
                y += [ys[ra], ys[rb], None]
        fig.add_trace(
            go.Scatter(x=x, y=y, mode="lines", line=dict(width=width, color=colour), showlegend=False, hoverinfo="skip")
        )
    gx, gy = np.meshgrid(xs, ys)
    fig.add_trace(
        go.Scatter(
            x=gx.ravel(),
            y=gy.ravel(),
            mode="markers",
            showlegend=False,
            marker=dict(size=4, color="white", line=dict(width=0.5, color="black")),
            text=[f"p{r},{c}" for r in range(len(ys)) for c in range(len(xs))],
            hovertemplate="%{text}<extra></extra>",
        )
    )
    return fig


def depth_figure(analysis, run_key: str) -> go.Figure:
    """Each layer's per-patch mean cosine similarity to the other patches, laid out on the patch grid
    (raster order: row by row), one small panel per layer, one colour scale for all."""
    values = mean_patch_cosine(analysis, run_key)
    layers = list(range(values.shape[0]))
    if len(layers) > MAX_PANELS:
        layers = sorted(set(np.linspace(0, len(layers) - 1, MAX_PANELS).round().astype(int).tolist()))
    cols = min(len(layers), 7)
    rows = -(-len(layers) // cols)
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=[f"layer {l}" for l in layers],
        horizontal_spacing=0.02,
        vertical_spacing=0.08,
    )
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    for i, l in enumerate(layers):
        fig.add_trace(
            go.Heatmap(
                z=values[l],
                zmin=lo,
                zmax=hi,
                colorscale="Reds",
                showscale=i == 0,
                colorbar=dict(title="mean cos", thickness=12),
                hovertemplate=f"layer {l}, " + "row %{y}, col %{x}: %{z:.3f}<extra></extra>",
            ),
            row=i // cols + 1,
            col=i % cols + 1,
        )
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, autorange="reversed", constrain="domain")
    for i in range(len(layers)):  # square patches: each panel keeps the grid's aspect
        suffix = "" if i == 0 else str(i + 1)
        fig.layout[f"yaxis{suffix}"].scaleanchor = f"x{suffix}"
    return layout(
        fig,
        f"{run_name(analysis, run_key)} — mean cosine of each patch to the others, by layer",
        height=max(260, 150 * rows + 70),
    )


# --------------------------------------------------------------------------- sentences under the charts


def _spread(grid: np.ndarray) -> float:
    return float(np.nanstd(grid))


def similarity_lines(analysis, names: dict, at=None) -> list[str]:
    """How uniform the chosen patch's similarity map is at the embeddings and at the last layer (the
    centre patch's without ``at`` or when ``at`` picks none)."""
    patch, L = picked_patch(analysis, None if at is None else at.picked), analysis.n_layers
    which = "the centre patch" if patch == picked_patch(analysis, None) else "patch"
    out = []
    for key, name in names.items():
        first, last = (patch_similarity(analysis, key, l, patch) for l in (0, L))
        a, z = round(_spread(first), 3), round(_spread(last), 3)
        trend = "more uniform" if z < a else "less uniform" if z > a else "as uniform (to 3 decimals)"
        out.append(
            f"{name}: the similarity to {which} {label(analysis, patch)} has a standard deviation over "
            f"the patches of {_spread(first):.3f} at layer 0 and {_spread(last):.3f} at layer {L} (the map is "
            f"{trend} at the end; lowest value {np.nanmin(first):.2f} → {np.nanmin(last):.2f})."
        )
    return out


def fiedler_lines(analysis, names: dict) -> list[str]:
    """λ₂ and the Fiedler vector's sign split at the first and last layer."""
    L, out = analysis.n_layers, []
    for key, name in names.items():
        parts = []
        for l in sorted({1, L}):
            grid, gap = fiedler_grid(analysis, key, l)
            parts.append(
                f"layer {l}: λ₂ = {gap:.3f}, {int((grid > 0).sum())} patches positive and "
                f"{int((grid < 0).sum())} negative"
            )
        out.append(f"{name}: " + "; ".join(parts) + ".")
    return out


def edge_lines(analysis, names: dict, top_k: int = 3) -> list[str]:
    """How far apart the patches joined by the strongest edges lie, at the first and last layer."""
    L, out = analysis.n_layers, []
    for key, name in names.items():
        parts = []
        for l in sorted({1, L}):
            lengths = edge_lengths(analysis, strongest_edges(analysis, key, l, top_k))
            if lengths.size:
                parts.append(
                    f"layer {l}: mean length {lengths.mean():.2f} patch widths, "
                    f"{(lengths < 1.5).mean():.0%} join neighbouring patches"
                )
        if parts:
            out.append(f"{name} (top {top_k} edges per patch): " + "; ".join(parts) + ".")
    return out


def depth_lines(analysis, names: dict) -> list[str]:
    """The patches' mean cosine and its spread over the grid, first layer against last."""
    out = []
    for key, name in names.items():
        values = mean_patch_cosine(analysis, key)
        out.append(
            f"{name}: mean patch-to-patch cosine {np.nanmean(values[0]):.3f} at layer 0 and "
            f"{np.nanmean(values[-1]):.3f} at layer {values.shape[0] - 1}; its spread over the grid (std) "
            f"{np.nanstd(values[0]):.3f} → {np.nanstd(values[-1]):.3f}."
        )
    return out


# --------------------------------------------------------------------------- tables


def _rows(analysis, per_run: dict, column: str) -> list[dict]:
    cols = analysis.image.grid[1]
    return [
        {"run": key, "patch": label(analysis, i), "row": i // cols, "col": i % cols, column: float(v)}
        for key, grid in per_run.items()
        for i, v in enumerate(np.asarray(grid).ravel())
    ]


def similarity_table(analysis, at) -> list[dict]:
    """Every patch's similarity to the chosen patch at the chosen layer, per run."""
    patch = picked_patch(analysis, at.picked)
    return _rows(
        analysis,
        {k: patch_similarity(analysis, k, at.layer, patch) for k in analysis.runs()},
        f"cosine to {label(analysis, patch)}",
    )


def fiedler_table(analysis, at) -> list[dict]:
    """Every patch's Fiedler entry at the chosen layer, per run."""
    return _rows(analysis, {k: fiedler_grid(analysis, k, at.layer)[0] for k in analysis.runs()}, "fiedler")


def edges_table(analysis, at) -> list[dict]:
    """The drawn edges: the two patches, the weight in S and the length in patch widths."""
    out = []
    for key in analysis.runs():
        edges = strongest_edges(analysis, key, at.layer, at.top_k)
        for (a, b, w), length in zip(edges, edge_lengths(analysis, edges)):
            out.append(
                {"run": key, "from": label(analysis, a), "to": label(analysis, b), "weight": w, "length": float(length)}
            )
    return out


def depth_table(analysis, at) -> list[dict]:
    """Every layer's per-patch mean cosine to the other patches, per run."""
    out = []
    cols = analysis.image.grid[1]
    for key in analysis.runs():
        for layer, grid in enumerate(mean_patch_cosine(analysis, key)):
            out += [
                {
                    "run": key,
                    "layer": layer,
                    "patch": label(analysis, i),
                    "row": i // cols,
                    "col": i % cols,
                    "mean_cosine": float(v),
                }
                for i, v in enumerate(grid.ravel())
            ]
    return out
