"""The layers as an animation: one frame per layer 0…L (and the fused output of a fusion), baseline
beside mitigated, for slides (GIF, MP4) and for the report (plotly frames; every k-th layer past
:data:`MAX_FRAMES`).

Every frame has the same traces in the same order, the same axes and the same colour ranges, so
nothing jumps between frames: only the data changes. Frames are plotly figures rendered by
kaleido with a system Chrome/Chromium, encoded by Pillow (GIF) or imageio-ffmpeg (MP4).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from smoothviz.outputs import figures
from smoothviz.outputs.figures import RUN_COLOURS, escape
from smoothviz.science.graph import to_networkx
from smoothviz.science.metrics import HEADLINE

VIEWS = ("heatmap", "graph", "trajectory")  # what a frame can show, one row each
FORMATS = (".gif", ".mp4")
WIDTH = 1280  # px; heights and width are multiples of 16 (H.264 blocks)
ROW_HEIGHT, TITLE_HEIGHT = 432, 112
MAX_BYTES = 10 * 1024 * 1024
TOP_K = 3  # strongest edges per token in a frame's graph, while FRAME_EDGES allows
MAX_FRAME_HEATMAP = 96  # cells per side of a frame's heatmap: pooled above this
# What every frame of every run may carry together (the report holds them all): today's largest
# default-model case, 8 frames (layers 0…6 and a fused output) × 2 runs at 512 tokens. A deeper
# model pools its heatmaps into bigger blocks and draws fewer edges per token instead of growing.
FRAME_CELLS = 16 * MAX_FRAME_HEATMAP**2
FRAME_EDGES = 16 * 512 * TOP_K
FRAME_MS, LAST_MS = 1000, 2500  # GIF frame durations (the last frame is held)
# Layer frames the report's animation holds at most: every layer of a model up to 24 layers (MiniLM,
# BERT-base and -large, Gemma 3 270M, Qwen2.5-0.5B), every k-th one and the last for a deeper one. A
# frame costs its bytes whatever the text's length: 65 frames of a 64-layer lab on 30 tokens made a
# 6.2 MB report (SmoothViz's choice). A GIF or MP4 keeps every layer (its size does not grow with the
# data), its heatmaps pooled as the report's are.
MAX_FRAMES = 25


@dataclass(frozen=True)
class Frame:
    """One step of the animation: ``layer`` is 0…L, or ``None`` for the fused output."""

    layer: int | None

    def name(self) -> str:
        return "fused" if self.layer is None else str(self.layer)


def parse_views(text: str) -> tuple[str, ...]:
    """``"heatmap,graph"`` → ``("heatmap", "graph")``; ValueError listing the allowed views."""
    views = tuple(v.strip() for v in str(text).split(",") if v.strip())
    bad = [v for v in views if v not in VIEWS]
    if not views or bad:
        raise ValueError(f"--views must be a comma-separated subset of {','.join(VIEWS)}, got '{text}'")
    return tuple(dict.fromkeys(views))


def frame_step(n_layers: int, most: int | None) -> int:
    """Layers between two frames: 1 up to ``most − 1`` layers (or with no ``most``), more beyond."""
    return 1 if most is None else max(1, math.ceil(n_layers / (most - 1)))


def frames_of(analysis, most: int | None = None) -> list[Frame]:
    """Layers 0…L (with ``most``, every :func:`frame_step`-th one and L), then the fused output when a
    run has one. The GIF and MP4 take every layer; the report's animation ``most=MAX_FRAMES``."""
    L = analysis.n_layers
    fused = any(run.fused is not None for run in analysis.runs().values())
    layers = sorted({*range(0, L + 1, frame_step(L, most)), L})
    return [Frame(l) for l in layers] + ([Frame(None)] if fused else [])


def frames_note(analysis) -> str | None:
    """What the report's animation of a deep model leaves out (None where every layer is a frame)."""
    L, k = analysis.n_layers, frame_step(analysis.n_layers, MAX_FRAMES)
    if k == 1:
        return None
    return (
        f"{L} layers: every {_ordinal(k)} layer is a frame (0, {k}, {2 * k}, …) and the last, so the animation "
        f"has at most {MAX_FRAMES} layer frames (SmoothViz's choice); the per-layer views show any layer on the "
        "page, and `smoothviz animate` makes a GIF or MP4 of every layer."
    )


def _ordinal(k: int) -> str:
    return f"{k}{'th' if 10 <= k % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"


def _row(run, layer: int | None) -> dict:
    if layer is None:
        return run.fused_row if run.fused_row is not None else run.rows[-1]
    return run.rows[layer]


def _fmt(value) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.3f}" if value == 0 or abs(value) >= 0.01 else f"{value:.2e}"  # a collapse reads 1e-9, not 0.000


def frame_title(analysis, frame: Frame) -> str:
    """``layer l of L`` (or ``fused output``) and each run's headline metrics (escaped plotly text)."""
    L = analysis.n_layers
    where = "fused output (baseline: layer {L})".format(L=L) if frame.layer is None else f"layer {frame.layer} of {L}"
    runs = " · ".join(
        f"<span style='color:{RUN_COLOURS[k]}'>{escape(figures.run_name(analysis, k))}</span>: "
        + ", ".join(f"{m} {_fmt(_row(run, frame.layer).get(m))}" for m in HEADLINE)
        for k, run in analysis.runs().items()
    )
    return f"<b>{where}</b><br>{runs}"


def _cosine(H: np.ndarray) -> np.ndarray:
    H = np.asarray(H, dtype=np.float64)
    U = H / np.maximum(np.linalg.norm(H, axis=1, keepdims=True), 1e-12)
    return U @ U.T


def _similarity(analysis, run, layer: int | None) -> np.ndarray:
    if layer is None and run.fused is not None:
        return _cosine(run.fused[analysis.keep])
    return np.asarray(run.similarity[analysis.n_layers if layer is None else layer], dtype=np.float64)


def _heatmap(analysis, run, layer, first: bool) -> list:
    # Pooled like the page's heatmaps, but smaller: a frame's heatmap is ~560 px wide, so cells past 96 a
    # side are under 6 px, and every frame of the report carries its own copy (512 tokens: 34 MB -> 1 MB).
    z, _, f = figures._pool(_similarity(analysis, run, layer), analysis.labels, _side(analysis))
    z = np.round(z, 3).astype(np.float32)  # 3 decimals survive float32; half the report's bytes
    where = "tokens %{y} · %{x}" if f == 1 else f"blocks of {f} tokens %{{y}} · %{{x}}"
    return [
        go.Heatmap(
            z=z,
            zmin=-1,
            zmax=1,
            colorscale="RdBu_r",
            showscale=first,
            colorbar=dict(title="cos", thickness=12, len=0.25, y=1, yanchor="top"),
            hovertemplate=where + ": cos %{z:.3f}<extra></extra>",
        )
    ]


def _circle(n: int) -> np.ndarray:
    angle = math.pi / 2 - 2 * math.pi * np.arange(n) / max(n, 1)
    return np.round(np.stack([np.cos(angle), np.sin(angle)], axis=1), 3)  # sub-pixel; a third of the bytes


def _graph(analysis, run, layer, colour_range: float) -> list:
    """Edges (top-k per token) and nodes on a fixed circle; the embeddings (layer 0) have no attention."""
    labels = analysis.labels
    pos = _circle(len(labels))
    L = analysis.n_layers
    g = L if layer is None else layer  # the fused output is measured on the last layer's graph
    xs, ys, colour = [], [], np.zeros(len(labels))
    if g >= 1:
        G = to_networkx(run.layer_graph[g - 1], labels, top_k=_top_k(analysis))
        edges = sorted(G.edges(data="weight"), key=lambda e: -e[2])[: _most_edges(analysis)]
        for i, j, _ in edges:
            xs += [pos[i, 0], pos[j, 0], None]
            ys += [pos[i, 1], pos[j, 1], None]
        colour = np.asarray(run.fiedler[g - 1], dtype=np.float64)
    note = "" if g >= 1 else "embeddings: no attention yet"
    return [
        go.Scatter(
            x=xs or [None],
            y=ys or [None],
            mode="lines",
            hoverinfo="skip",
            showlegend=False,
            line=dict(color="rgba(90,90,90,0.45)", width=1.2),
        ),
        go.Scatter(
            x=pos[:, 0],
            y=pos[:, 1],
            mode="markers+text",
            showlegend=False,
            text=[escape(t) for t in labels] if len(labels) <= 40 else None,
            textposition="top center",
            textfont=dict(size=10),
            marker=dict(
                size=11,
                color=np.round(colour, 4).astype(np.float32),
                colorscale="PuOr",
                cmin=-colour_range,
                cmax=colour_range,
                line=dict(color="black", width=0.5),
            ),
            hovertemplate="%{text}<extra></extra>",
        ),
        go.Scatter(x=[0], y=[0], mode="text", text=[note], showlegend=False, hoverinfo="skip"),
    ]


def _trajectory(analysis, r: int, key: str, layer) -> list:
    """Every token's path up to this layer (grey) and where it is now (the run's colour)."""
    coords = analysis.projection[r]  # [L+1, n, 2]
    fused = getattr(analysis, "fused_projection", None)
    if layer is None and key == "mitigated" and fused is not None:  # the fused frame: after layer L, the fused output
        coords = np.concatenate([coords, np.asarray(fused)[None]])
    l = coords.shape[0] - 1 if layer is None else layer
    path = np.concatenate([coords[: l + 1].transpose(1, 0, 2), np.full((coords.shape[1], 1, 2), np.nan)], axis=1)
    path = np.round(path.reshape(-1, 2), 3)
    now = np.round(coords[l], 3)
    unplaced = layer is None and fused is None and analysis.runs()[key].fused is not None  # fusion-concat: k·d wide
    corner = np.nanmin(coords[:, :, 0]), np.nanmax(coords[:, :, 1])
    return [
        go.Scatter(
            x=path[:, 0],
            y=path[:, 1],
            mode="lines",
            hoverinfo="skip",
            showlegend=False,
            line=dict(color="rgba(120,120,120,0.35)", width=1),
        ),
        go.Scatter(
            x=now[:, 0],
            y=now[:, 1],
            mode="markers",
            showlegend=False,
            text=[escape(t) for t in analysis.labels],
            hovertemplate="%{text}<extra></extra>",
            marker=dict(size=8, color=RUN_COLOURS[key], line=dict(color="white", width=0.5)),
        ),
        go.Scatter(  # every frame has it (the same traces in every frame); the fused frame may say something
            x=[corner[0]],
            y=[corner[1]],
            mode="text",
            text=["layer L: the fused output is wider, not projected" if unplaced else ""],
            textposition="bottom right",
            showlegend=False,
            hoverinfo="skip",
        ),
    ]


def _heatmaps(analysis) -> int:
    """Heatmaps (or graphs) over all frames: one per frame and run."""
    return len(frames_of(analysis, MAX_FRAMES)) * len(analysis.runs())


def _side(analysis) -> int:
    """A frame heatmap's most cells per side: MAX_FRAME_HEATMAP, less where the frames together
    would pass FRAME_CELLS (a deep model)."""
    return max(8, min(MAX_FRAME_HEATMAP, math.isqrt(FRAME_CELLS // _heatmaps(analysis))))


def _block(analysis) -> int:
    """Tokens per heatmap cell in a frame (1 up to :func:`_side` tokens), as figures._pool pools."""
    return math.ceil(len(analysis.labels) / _side(analysis))


def _top_k(analysis) -> int:
    """Edges per token in a frame's graph: TOP_K, less (at least 1) where the frames together would
    pass FRAME_EDGES."""
    return max(1, min(TOP_K, FRAME_EDGES // (_heatmaps(analysis) * max(1, len(analysis.labels)))))


def _most_edges(analysis) -> int:
    """Edges a frame's graph draws at most: where even one per token would pass FRAME_EDGES (a deep
    model on a long text), the strongest of them only."""
    return FRAME_EDGES // _heatmaps(analysis)


def _view_title(view: str, analysis) -> str:
    if view == "graph":
        k, most = _top_k(analysis), _most_edges(analysis)
        if k * len(analysis.labels) > most:
            return f"graph (each token's top {k}, the {most} strongest drawn)"
        return f"graph (top {k} edge{'s' if k > 1 else ''} per token)"
    f = _block(analysis)
    return f"heatmap (mean over blocks of {f} tokens)" if view == "heatmap" and f > 1 else view


def _skeleton(analysis, views: tuple[str, ...]):
    """The empty subplot grid every frame shares, with fixed axes."""
    keys = list(analysis.runs())
    fig = make_subplots(
        rows=len(views),
        cols=len(keys),
        horizontal_spacing=0.08,
        vertical_spacing=0.09 if len(views) > 1 else 0.0,
        subplot_titles=[
            f"{escape(figures.run_name(analysis, k))} — {_view_title(v, analysis)}" for v in views for k in keys
        ],
    )
    f = _block(analysis)
    n = math.ceil(len(analysis.labels) / f)  # the heatmaps' cells per side
    for row, view in enumerate(views, start=1):
        for col in range(1, len(keys) + 1):
            if view == "heatmap":
                step = max(1, math.ceil(n / 24))
                ticks = list(range(0, n, step))
                text = [escape(analysis.labels[i * f])[:12] + ("…" if f > 1 else "") for i in ticks]
                fig.update_xaxes(
                    range=[-0.5, n - 0.5],
                    tickvals=ticks,
                    ticktext=text,
                    tickangle=-90,
                    tickfont_size=9,
                    showgrid=False,
                    row=row,
                    col=col,
                )
                fig.update_yaxes(
                    range=[n - 0.5, -0.5],
                    tickvals=ticks,
                    ticktext=text,
                    tickfont_size=9,
                    showgrid=False,
                    row=row,
                    col=col,
                )
            elif view == "graph":
                fig.update_xaxes(range=[-1.35, 1.35], visible=False, row=row, col=col)
                fig.update_yaxes(range=[-1.3, 1.35], visible=False, row=row, col=col)
            else:
                xy = analysis.projection.reshape(-1, 2)
                if getattr(analysis, "fused_projection", None) is not None:
                    xy = np.concatenate([xy, analysis.fused_projection])
                lo, hi = np.nanmin(xy, axis=0), np.nanmax(xy, axis=0)
                pad = 0.06 * (hi - lo + 1e-9)
                fig.update_xaxes(range=[lo[0] - pad[0], hi[0] + pad[0]], showticklabels=False, row=row, col=col)
                fig.update_yaxes(range=[lo[1] - pad[1], hi[1] + pad[1]], showticklabels=False, row=row, col=col)
    fig.update_layout(
        template="plotly_white",
        font=figures.FONT,
        width=WIDTH,
        height=TITLE_HEIGHT + ROW_HEIGHT * len(views),
        margin=dict(l=70, r=40, t=TITLE_HEIGHT, b=30),
    )
    fig.update_annotations(font_size=13)
    return fig


def _traces(analysis, views, frame: Frame) -> tuple[list, list, list]:
    """Every trace of one frame with its (row, col); the same structure for every frame."""
    runs = analysis.runs()
    fied = [np.abs(np.asarray(r.fiedler, dtype=np.float64)).max() for r in runs.values()]
    colour_range = float(max(fied + [1e-9]))
    traces, rows, cols = [], [], []
    for row, view in enumerate(views, start=1):
        for col, (key, run) in enumerate(runs.items(), start=1):
            if view == "heatmap":
                out = _heatmap(analysis, run, frame.layer, first=(row, col) == (views.index("heatmap") + 1, 1))
            elif view == "graph":
                out = _graph(analysis, run, frame.layer, colour_range)
            else:
                out = _trajectory(analysis, col - 1, key, frame.layer)
            traces += out
            rows += [row] * len(out)
            cols += [col] * len(out)
    return traces, rows, cols


def _check(analysis, views) -> None:
    if "trajectory" in views and analysis.projection is None:
        raise ValueError("the trajectory view needs a projection: analyse with projection='pca' or 'umap'")


def frame_figures(analysis, views: tuple[str, ...] = ("heatmap", "graph")) -> list[go.Figure]:
    """One complete figure per frame (:func:`frames_of`), for rendering to images."""
    _check(analysis, views)
    out = []
    for frame in frames_of(analysis):
        fig = _skeleton(analysis, views)
        traces, rows, cols = _traces(analysis, views, frame)
        fig.add_traces(traces, rows=rows, cols=cols)
        fig.update_layout(title=dict(text=frame_title(analysis, frame), x=0.01, font=dict(size=17)))
        out.append(fig)
    return out


def animated_figure(analysis, views: tuple[str, ...] = ("heatmap", "graph")) -> go.Figure:
    """One plotly figure holding every frame, with a play button and a layer slider (for the report)."""
    _check(analysis, views)
    frames = frames_of(analysis, MAX_FRAMES)
    fig = _skeleton(analysis, views)
    built = [_traces(analysis, views, f) for f in frames]  # each frame's traces, built once
    traces, rows, cols = built[0]
    fig.add_traces(traces, rows=rows, cols=cols)
    every = [[t.to_plotly_json() for t in frame_traces] for frame_traces, _, _ in built]
    changing = [_changing([frame[i] for frame in every]) for i in range(len(traces))]
    fig.frames = [
        go.Frame(
            data=[{"type": t["type"], **_pick(t, c)} for t, c in zip(frame, changing)],
            name=f.name(),
            layout=dict(title=dict(text=frame_title(analysis, f))),
        )
        for f, frame in zip(frames, every)
    ]
    fig.update_layout(
        title=dict(text=frame_title(analysis, frames[0]), x=0.01, font=dict(size=16)),
        width=None,
        margin=dict(l=70, r=40, t=TITLE_HEIGHT, b=90),
        height=TITLE_HEIGHT + ROW_HEIGHT * len(views) + 60,
        updatemenus=[
            dict(
                type="buttons",
                direction="left",
                x=0,
                y=-0.02,
                xanchor="left",
                yanchor="top",
                showactive=False,
                buttons=[
                    dict(
                        label="▶ play",
                        method="animate",
                        args=[
                            None,
                            dict(
                                frame=dict(duration=FRAME_MS, redraw=True),
                                fromcurrent=True,
                                transition=dict(duration=0),
                            ),
                        ],
                    ),
                    dict(
                        label="❚❚ pause",
                        method="animate",
                        args=[[None], dict(frame=dict(duration=0, redraw=False), mode="immediate")],
                    ),
                ],
            )
        ],
        sliders=[
            dict(
                active=0,
                x=0.22,
                y=-0.02,
                len=0.78,
                yanchor="top",
                currentvalue=dict(prefix="layer "),
                steps=[
                    dict(
                        label=f.name(),
                        method="animate",
                        args=[
                            [f.name()],
                            dict(mode="immediate", frame=dict(duration=0, redraw=True), transition=dict(duration=0)),
                        ],
                    )
                    for f in frames
                ],
            )
        ],
    )
    return fig


def _same(a, b) -> bool:
    if isinstance(a, dict) or isinstance(b, dict):
        return (
            isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
        )
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and a.dtype == b.dtype and bool(np.all((a == b) | ((a != a) & (b != b))))
    return a == b


def _changing(versions: list[dict]) -> dict:
    """Which properties of one trace differ between frames: ``{key: True}`` for a value that changes,
    ``{key: {…}}`` inside a nested dict (a marker whose colour alone changes)."""
    out = {}
    for key in dict.fromkeys(k for v in versions for k in v):
        values = [v.get(key) for v in versions]
        if all(_same(values[0], x) for x in values[1:]):
            continue
        out[key] = _changing(values) if all(isinstance(x, dict) for x in values) else True
    return out


def _pick(trace: dict, changing: dict) -> dict:
    """The part of ``trace`` that :func:`_changing` marked: what a report's frame must carry (plotly
    merges a frame into the figure's traces, so what every frame shares is written once)."""
    return {k: trace[k] if c is True else _pick(trace[k], c) for k, c in changing.items() if k in trace}


def _browser() -> None:
    """Point kaleido at a system Chrome/Chromium (it would otherwise try to download one)."""
    if os.environ.get("BROWSER_PATH"):
        return
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        path = shutil.which(name)
        if path:
            os.environ["BROWSER_PATH"] = path
            return
    raise ValueError("animate renders frames with Chrome or Chromium: install one or set BROWSER_PATH to it")


def render_png(figs: list[go.Figure]) -> list[bytes]:
    """Each figure as PNG bytes at its own width and height, in one browser session."""
    import kaleido

    _browser()
    with tempfile.TemporaryDirectory() as tmp:
        paths = [os.path.join(tmp, f"{i:03d}.png") for i in range(len(figs))]
        kaleido.write_fig_from_object_sync(
            [
                dict(fig=fig, path=path, opts=dict(format="png", width=fig.layout.width, height=fig.layout.height))
                for fig, path in zip(figs, paths)
            ]
        )
        out = []
        for path in paths:
            with open(path, "rb") as fh:
                out.append(fh.read())
    return out


def _encode_gif(images, out: str) -> None:
    # One median-cut palette for every frame: the fast octree kept 73 shades of a 600-px diverging
    # colour scale (visible bands in the heatmaps and their colour bars), median cut 254; a shared
    # palette also keeps a colour the same from frame to frame. Sampled from every frame at half size
    # (nearest neighbour: no new colours).
    from PIL import Image

    rgb = [im.convert("RGB") for im in images]
    halves = [im.resize((max(1, im.width // 2), max(1, im.height // 2)), Image.Resampling.NEAREST) for im in rgb]
    sample = Image.new("RGB", (max(h.width for h in halves), sum(h.height for h in halves)), "white")
    y = 0
    for half in halves:
        sample.paste(half, (0, y))
        y += half.height
    palette = sample.quantize(colors=255, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    frames = [im.quantize(palette=palette, dither=Image.Dither.NONE) for im in rgb]
    durations = [FRAME_MS] * (len(frames) - 1) + [LAST_MS]
    frames[0].save(out, save_all=True, append_images=frames[1:], duration=durations, loop=0, optimize=True)


def _encode_mp4(images, out: str) -> None:
    import imageio_ffmpeg

    w, h = images[0].size
    writer = imageio_ffmpeg.write_frames(
        out,
        (w, h),
        fps=1,
        codec="libx264",
        pix_fmt_in="rgb24",
        pix_fmt_out="yuv420p",
        quality=8,
        macro_block_size=16,
        ffmpeg_log_level="error",
    )
    writer.send(None)
    try:
        for im in images:
            writer.send(np.ascontiguousarray(np.asarray(im.convert("RGB"))))
    finally:
        writer.close()


def animate(analysis, out: str, views: tuple[str, ...] = ("heatmap", "graph")) -> dict:
    """Write the animation of ``analysis`` to ``out`` (``.gif`` or ``.mp4``).

    Returns:
        ``{"path", "frames", "width", "height", "bytes", "seconds"}``.

    Raises:
        ValueError: an unknown extension or view, no browser, or a file over 10 MB.
    """
    import io

    from PIL import Image

    ext = os.path.splitext(out)[1].lower()
    if ext not in FORMATS:
        raise ValueError(f"--out must end in {' or '.join(FORMATS)}, got '{out}'")
    start = time.perf_counter()
    pngs = render_png(frame_figures(analysis, views))
    images = [Image.open(io.BytesIO(b)) for b in pngs]
    (_encode_gif if ext == ".gif" else _encode_mp4)(images, out)
    size = os.path.getsize(out)
    if size > MAX_BYTES:
        os.remove(out)
        raise ValueError(f"the animation is {size / 2**20:.1f} MB, over 10 MB: show fewer views or a shorter sentence")
    return {
        "path": out,
        "frames": len(images),
        "width": images[0].size[0],
        "height": images[0].size[1],
        "bytes": size,
        "seconds": round(time.perf_counter() - start, 1),
    }
