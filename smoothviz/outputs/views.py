"""The list of views, defined once: the page and the HTML report draw what :data:`VIEWS` holds.

A view is a figure builder plus what the reader needs beside it: a section, a title, a one-line
caption saying what to look for, and the Theory page's section that explains it. Adding a view is
one :class:`View` entry (and its builder in :mod:`smoothviz.outputs.figures`); the page, the report and
the tests that count charts all read this list.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Callable

import numpy as np
import plotly.graph_objects as go

from smoothviz.outputs import figures, image_views, tables
from smoothviz.pipeline import stream
from smoothviz.science import sinks
from smoothviz.science.graph import to_networkx
from smoothviz.words import trends

# Page and report sections, in order: key → heading (the page's tab labels, and its URL's
# ``section=`` values).
SECTIONS = {
    "depth": "Over-smoothing over depth",
    "layer": "One layer, side by side",
    "trajectories": "Token trajectories",
    "atlas": "Head × layer atlas",
    "sv": "Token singular values",
}


@dataclass(frozen=True)
class At:
    """Where the reader is looking: the choices that per-layer and per-head views depend on.

    Attributes:
        layer: the layer of the per-layer views (1…L).
        picked: a highlighted token (index among the kept tokens) or ``None``.
        top_k: edges drawn per token in graph views.
        quantity: the head atlas's per-head quantity (a key of ``figures.HEAD_QUANTITIES``).
        head_layer, head: the atlas's chosen cell (layer 1…L, head index).
        fused: the position after the last layer, a fusion's fused output: ``layer`` is then L
            (the fused output is measured on the last layer's graph); the similarity view and the
            cards show the fused states.
        final_norm: the position after the last layer of a pre-norm model, its final norm applied
            to layer L's states (never layer L itself): ``layer`` is then L; the similarity view
            and the cards show the normed states, the graph views layer L's attention.
        heatmap: cells a side of the similarity heatmap, pooled above (the page's
            ``figures.MAX_HEATMAP``; the offline report draws fewer, ``report.REPORT_HEATMAP``).
    """

    layer: int
    picked: int | None = None
    top_k: int = 3
    quantity: str = "head_gap"
    head_layer: int = 1
    head: int = 0
    fused: bool = False
    final_norm: bool = False
    heatmap: int = figures.MAX_HEATMAP


@dataclass(frozen=True)
class Compared:
    """A view on the Compare page and in its report: its heading, its caption there, and its builder.

    A per-run view's builder is called once per run, ``(label, analysis, run, layer) -> Figure``, each
    run at its own layer; another view's once for every run, ``([(label, run)], relative) -> Figure``.
    """

    title: str
    caption: str
    build: Callable[..., go.Figure]


@dataclass(frozen=True)
class View:
    """One chart of the page and the report.

    Attributes:
        key: a short name (figure file names, the cache key, tests).
        section: a key of :data:`SECTIONS`.
        title: a heading (``{layer}``, ``{head_layer}``, ``{head}``, ``{top_k}`` are filled in),
            or ``""`` for none.
        caption: one line: what to look for. Only what the numbers on screen support.
        anchor: the Theory page's section that explains it.
        build: ``(analysis, run_key, at) -> Figure``; ``run_key`` is ``None`` unless ``per_run``.
        per_run: one figure per run (baseline, mitigated), side by side.
        depends: the fields of :class:`At` the figure depends on (its cache key).
        half: drawn at half width, beside the next half-width view of its section.
        notes: ``(analysis, names) -> [line]``: sentences computed from the numbers, drawn under the
            caption (``names`` maps a run key to its display name, escaped for where it is shown).
        table: ``(analysis, at) -> [row]``: the chart's numbers as rows (``{column: value}``), for
            "show as table" (functions in :mod:`smoothviz.outputs.tables`).
        compare: how the view appears on the Compare page and in its report (:class:`Compared`;
            ``None``: not compared).
        every_head: the builder reads one head's own attention, which a streamed analysis of a
            long input does not keep (:func:`left_out` says so in its place).
        reads: the :class:`~smoothviz.pipeline.analysis.Run` fields the builder needs that an
            analysis may lack (the per-head diagnostics of ``analyze(..., heads=False)``).
    """

    key: str
    section: str
    title: str
    caption: str
    anchor: str
    build: Callable[..., go.Figure]
    per_run: bool = False
    depends: tuple[str, ...] = field(default=())
    half: bool = False
    notes: Callable[..., list[str]] | None = None
    table: Callable[..., list[dict]] | None = None
    compare: Compared | None = None
    every_head: bool = False
    reads: tuple[str, ...] = ()

    def heading(self, at: At) -> str:
        """The title with ``at``'s values filled in (``""`` for none)."""
        title = self.title.format(**vars(at))
        if at.fused and "layer" in self.depends and title:
            if self.key == "similarity":
                return f"Token similarity of the fused output (after layer {at.layer})"
            return title + " — the fused output has no layer of its own: the last layer's"
        if at.final_norm and "layer" in self.depends and title:
            if self.key == "similarity":
                return f"Token similarity after the final norm (applied to layer {at.layer})"
            return title + " — the final norm has no attention of its own: the last layer's"
        return title

    def figures(self, analysis, at: At) -> list[tuple[str, go.Figure]]:
        """``[(figure name, Figure)]``: one per run for a per-run view, else one."""
        if not self.per_run:
            return [(self.key, self.build(analysis, None, at))]
        return [(f"{self.key}-{key}", self.build(analysis, key, at)) for key in analysis.runs()]

    def lines(self, analysis, names: dict[str, str], at: At | None = None) -> list[str]:
        """The view's data-driven sentences (none for most views); ``at`` reaches a ``notes`` function
        that takes it (the picture's similarity lines follow the chosen patch)."""
        if self.notes is None:
            return []
        if at is not None and "at" in inspect.signature(self.notes).parameters:
            return self.notes(analysis, names, at=at)
        return self.notes(analysis, names)

    def rows(self, analysis, at: At) -> list[dict]:
        """The chart's numbers as table rows (empty when the view has no table)."""
        return [] if self.table is None else self.table(analysis, at)

    def count(self, analysis) -> int:
        """How many charts the view draws for ``analysis``."""
        return len(analysis.runs()) if self.per_run else 1


def _run(analysis, key):
    return analysis.runs()[key]


def _title(analysis, key) -> str:
    return figures.run_name(analysis, key)


def has_fused(analysis) -> bool:
    """Whether the analysis has a fused output (a fusion mitigation): a position after the last layer."""
    return analysis.mitigated is not None and analysis.mitigated.fused is not None


def fused_similarity(analysis) -> np.ndarray:
    """``[n, n]`` cosine similarity of the fused output's kept tokens."""
    x = np.asarray(analysis.mitigated.fused, dtype=np.float64)[analysis.keep]
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x @ x.T


def has_final_norm(analysis) -> bool:
    """Whether the model has a final norm after its last block (pre-norm): a position after the last layer."""
    return analysis.baseline.final_norm is not None


def final_norm_similarity(run, keep) -> np.ndarray:
    """``[n, n]`` cosine similarity of the kept tokens after the model's final norm."""
    x = np.asarray(run.final_norm, dtype=np.float64)[keep]
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x @ x.T


def final_norm_lines(analysis, names: dict[str, str]) -> list[str]:
    """What the "final norm" point after the last layer is, with its numbers beside layer L's."""
    runs = {k: r for k, r in analysis.runs().items() if r.final_norm_row is not None}
    if not runs:
        return []
    L = analysis.n_layers
    parts = []
    for key, run in runs.items():
        pairs = [(m, run.final_norm_row.get(m), run.rows[L].get(m)) for m in ("cosine_mean", "dm_rel")]
        said = ", ".join(f"{m} {f:.3f} (layer {L}: {v:.3f})" for m, f, v in pairs if None not in (f, v))
        if said:
            parts.append(f"{names.get(key, key)}: {said}")
    return [
        f'"final norm" (◆ after layer {L}) is the model\'s own norm after its last block applied to '
        f"layer {L}'s states, what its output head reads; SmoothViz shows it apart and never as layer {L}, "
        "whose point is the last block's output (SmoothViz's choice: every layer is a block's output)"
        + (": " + "; ".join(parts) + "." if parts else ".")
    ]


def _curve_notes(analysis, names: dict[str, str]) -> list[str]:
    return trends.trend_lines(analysis, names) + final_norm_lines(analysis, names)


def _fiedler_span(analysis, layer: int) -> float:
    """The largest |Fiedler entry| at ``layer`` over the runs: one colour range for both panels."""
    values = [np.abs(np.asarray(run.fiedler[layer - 1], dtype=np.float64)) for run in analysis.runs().values()]
    return max((float(np.nanmax(v)) for v in values if v.size and np.isfinite(v).any()), default=0.0) or 1.0


def shi_lines(analysis, names: dict[str, str]) -> list[str]:
    """Under Shi et al.'s chart: what its bound says about this run, from its numbers. A bound of
    10⁴ beside a measured ratio of ~1 needs a sentence a student can follow (issue 22): v ≥ 1
    guarantees nothing, v < 1 guarantees that d_M shrinks at that layer (d_M(H_l) ≤ v·d_M(H_{l−1}))."""
    run = analysis.baseline
    v, ratio = (np.asarray(x, dtype=np.float64) for x in (run.metric("shi_v")[1:], run.metric("dm_ratio")[1:]))
    known = np.isfinite(v)
    if not known.any() or getattr(analysis, "layernorm", "post") == "pre":  # the chart shows no v then
        return []

    def num(x: float) -> str:  # 25,512 rather than 2.55e+04: a student reads it
        return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"

    measured = ratio[np.isfinite(ratio)]
    seen = f"; the measured ratio lies between {num(measured.min())} and {num(measured.max())}" if measured.size else ""
    tight = [layer + 1 for layer in np.flatnonzero(known & (v < 1))]
    if not tight:
        return [
            f"For the {names['baseline']}, v lies between {num(np.nanmin(v))} and {num(np.nanmax(v))}: at least 1 "
            f"at every layer, so the bound allows d_M to grow and guarantees no smoothing here{seen}. "
            "What the layers do is the measured line, not the bound."
        ]
    return [
        f"For the {names['baseline']}, v is below 1 at layer{'s' if len(tight) > 1 else ''} "
        f"{', '.join(map(str, tight))}: there the bound guarantees that d_M shrinks{seen}."
    ]


def _similarity(analysis, key, at):
    run = _run(analysis, key)
    if at.fused and key == "mitigated" and run.fused is not None:
        fused = SimpleNamespace(similarity=[fused_similarity(analysis)])  # the one matrix the heatmap reads
        return figures.similarity_heatmap(
            fused, analysis.labels, 0, at.picked, title=_title(analysis, key) + " — fused output", cells=at.heatmap
        )
    if at.final_norm and run.final_norm is not None:
        normed = SimpleNamespace(similarity=[final_norm_similarity(run, analysis.keep)])
        return figures.similarity_heatmap(
            normed, analysis.labels, 0, at.picked, title=_title(analysis, key) + " — final norm", cells=at.heatmap
        )
    note = f" — layer {at.layer} (no fusion)" if at.fused else ""
    return figures.similarity_heatmap(
        run, analysis.labels, at.layer, at.picked, title=_title(analysis, key) + note, cells=at.heatmap
    )


VIEWS: list[View] = [
    View(
        "curves",
        "depth",
        "",
        "Each panel is one over-smoothing metric over depth; arrows give the direction in which tokens "
        "become alike. Compare the two colours at the same layer; the lines below name every layer where a "
        "metric moves against that direction, does not move (under 0.1%) or has no value.",
        "the-metrics",
        lambda a, k, at: figures.metric_curves(a),
        notes=_curve_notes,
        table=tables.metrics,
        compare=Compared(
            "Over-smoothing over depth",
            "Each metric over depth for every run; the same colour is the same run in every chart.",
            lambda runs, relative: figures.compare_curves(runs, relative=relative),
        ),
    ),
    View(
        "shi",
        "depth",
        "",
        "Below the dashed line a layer shrinks the distance to the smooth subspace (every token the same "
        "vector); v is Shi et al.'s upper bound on that ratio, derived for post-LN blocks and shown only for "
        "them (shown, not asserted: v ≥ 1 guarantees nothing).",
        "why-stacking-smooths",
        lambda a, k, at: figures.shi_bound(a),
        half=True,
        notes=shi_lines,
        table=tables.shi,
    ),
    View(
        "rollout",
        "depth",
        "",
        "σ₂/σ₁ of the product of attention matrices up to each layer: when it nears 0 every token draws "
        "on the same mix of inputs.",
        "attention-is-a-graph",
        lambda a, k, at: figures.rollout(a),
        half=True,
        table=tables.rollout,
    ),
    View(
        "similarity",
        "layer",
        "Token similarity at layer {layer}",
        "Cosine similarity between every pair of tokens at this layer: a uniformly red square means the "
        "tokens have become alike.",
        "the-metrics",
        lambda a, k, at: _similarity(a, k, at),
        per_run=True,
        depends=("layer", "picked", "fused", "final_norm", "heatmap"),
        table=tables.similarity,
        compare=Compared(
            "Token similarity, side by side",
            "Cosine similarity between every pair of the run's own tokens at the layer nearest the "
            "chosen fraction of its depth: a uniformly red square means the tokens have become alike.",
            lambda label, a, run, layer: figures.similarity_heatmap(run, a.labels, layer, title=label),
        ),
    ),
    View(
        "graph",
        "layer",
        "Attention graph of layer {layer} (top {top_k} edges per token)",
        "Attention as a graph: edges are each token's strongest links; colour is the Fiedler vector (the "
        "eigenvector of λ₂), which splits the tokens along the graph's weakest cut. For softmax attention (no "
        "negative weight) it is orthogonal to D^½𝟙, so it has both signs and both colours show where the cut "
        "runs; for a signed graph (AttnScale's A′) that need not hold: its vector can have a single sign. λ₂ in "
        "the graph eigenvalues below measures how weak the cut is (near 0: two groups that barely exchange "
        "messages). Both panels use the same colour scale.",
        "attention-is-a-graph",
        lambda a, k, at: figures.attention_graph(
            to_networkx(_run(a, k).layer_graph[at.layer - 1], a.labels, top_k=at.top_k),
            _run(a, k).fiedler[at.layer - 1],
            at.picked,
            title=_title(a, k),
            span=_fiedler_span(a, at.layer),
        ),
        per_run=True,
        depends=("layer", "picked", "top_k"),
        table=tables.graph,
        compare=Compared(
            "Attention graph, side by side",
            "The run's attention graph at that layer (each token's 3 strongest links; colour: the "
            "Fiedler vector, which splits the tokens along the graph's weakest cut).",
            lambda label, a, run, layer: figures.attention_graph(
                to_networkx(run.layer_graph[layer - 1], a.labels, top_k=3), run.fiedler[layer - 1], title=label
            ),
        ),
    ),
    View(
        "spectrum",
        "layer",
        "Attention-graph eigenvalues of layer {layer} (normalised Laplacian)",
        "Normalized-Laplacian eigenvalues; a large spectral gap λ₂ means one attention step mixes the tokens strongly.",
        "attention-is-a-graph",
        lambda a, k, at: figures.laplacian_spectrum(_run(a, k), at.layer, title=_title(a, k)),
        per_run=True,
        depends=("layer",),
        table=tables.spectrum,
    ),
    View(
        "dovonon",
        "layer",
        "Value-matrix eigenvalues of layer {layer} (W_O·W_V, Dovonon et al.)",
        "Eigenvalues of each head's W_O·W_V (not the graph's, not the tokens'), grey; each head's dominant one "
        "large: a head whose dominant mode pairs with the constant attention eigenvector smooths (circle), "
        "otherwise it sharpens (cross) (Dovonon et al. 2024); ablated heads are left out.",
        "the-dovonon-diagnostic",
        lambda a, k, at: figures.dovonon(_run(a, k), at.layer, title=_title(a, k)),
        per_run=True,
        depends=("layer",),
        table=tables.dovonon,
        reads=("smooths",),
    ),
    View(
        "verdicts",
        "layer",
        "",
        "Dovonon et al.'s verdict is per head; each cell is the share of a layer's heads that are low-pass "
        "(ablated heads left out), and its word is SmoothViz's own majority summary (smooths when at least "
        "half are), not a verdict from the paper.",
        "the-dovonon-diagnostic",
        lambda a, k, at: figures.verdicts(a),
        table=tables.verdicts,
        reads=("smooths",),
    ),
    View(
        "trajectories",
        "trajectories",
        "",
        "Each token's path from the embeddings to the last layer (dark → bright); paths converging to "
        "one spot are over-smoothing; a fusion's fused output is the ★, fitted in the same projection. "
        "Projections distort: trust the metrics.",
        "projections",
        lambda a, k, at: figures.trajectories(a, at.picked),
        depends=("picked",),
        notes=lambda a, names, at=None: trajectory_lines(a, None if at is None else at.picked),
        table=tables.trajectories,
    ),
    View(
        "atlas",
        "atlas",
        "",
        "One cell per head and layer; pick a cell to draw that head's graph, or ablate it to see every view "
        "without it. Heads with a large gap mix strongly, low-entropy heads attend to few tokens.",
        "attention-is-a-graph",
        lambda a, k, at: figures.head_atlas(
            _run(a, k), at.quantity, title=_title(a, k), picked=(at.head_layer, at.head)
        ),
        per_run=True,
        depends=("quantity", "head_layer", "head"),
        table=tables.atlas,
        reads=("head_gap",),
    ),
    View(
        "head-graph",
        "atlas",
        "Layer {head_layer}, head {head}: its own graph",
        "The chosen head's attention as a graph, coloured by weighted degree: a head that sends most of "
        "its attention to one token (often [SEP]) draws a star around it.",
        "attention-is-a-graph",
        lambda a, k, at: figures.attention_graph(
            a.graph(at.head_layer, head=at.head, run=k, top_k=at.top_k),
            None,
            at.picked,
            title=f"layer {at.head_layer}, head {at.head} — {_title(a, k)}",
        ),
        per_run=True,
        depends=("head_layer", "head", "top_k", "picked"),
        table=tables.head_graph,
        every_head=True,
    ),
    View(
        "sinks",
        "atlas",
        "Attention received by each token, layer by layer",
        "Each row is a layer and each column a token; colour is the share of all that layer's attention "
        "(mean over heads and query rows) the token receives, on a log scale. A bright first column is an "
        "attention sink (Xiao et al. 2024; Gu et al. 2024).",
        "attention-sinks",
        lambda a, k, at: sinks.sink_heatmap(_run(a, k), a.tokens, title=_title(a, k)),
        per_run=True,
        notes=sinks.sink_lines,
        table=sinks.sink_table,
    ),
    View(
        "sv",
        "sv",
        "",
        "Singular values of the token matrix (the tokens' own spectrum, not the graph's), normalised by the largest: a fast-dropping, skewed spectrum "
        "is Yan et al.'s token uniformity.",
        "the-metrics",
        lambda a, k, at: figures.sv_spectra(_run(a, k), title=_title(a, k)),
        per_run=True,
        table=tables.sv,
    ),
]

# Views only a picture allows (a vision model's analysis, ``analysis.image`` set): per-patch numbers
# drawn over the image the model saw, in their own section. Drawn beside VIEWS for images only.
IMAGE_SECTIONS = {"image": "On the picture"}
IMAGE_VIEWS: list[View] = [
    View(
        "patch-similarity",
        "image",
        "Similarity to one patch at layer {layer}, over the picture",
        "Cosine similarity of every patch's state to the chosen patch's (×: the centre one until you pick or "
        "click another), on a fixed −1…1 scale: over-smoothing is this map turning one uniform colour.",
        "the-metrics",
        lambda a, k, at: image_views.similarity_figure(a, k, at.layer, at.picked),
        per_run=True,
        depends=("layer", "picked"),
        notes=image_views.similarity_lines,
        table=image_views.similarity_table,
    ),
    View(
        "patch-fiedler",
        "image",
        "Fiedler vector of layer {layer}'s attention graph, over the picture",
        "The Fiedler vector (eigenvector of λ₂) of the layer's attention graph, one value per patch: its sign "
        "splits the patches in two, approximating the graph's weakest normalised cut (Shi & Malik 2000), and λ₂ "
        "(in the title) bounds how weak that cut is. "
        "Where the split follows shapes in the picture is for the eye to judge; SmoothViz measures no "
        "segmentation quality.",
        "attention-is-a-graph",
        lambda a, k, at: image_views.fiedler_figure(a, k, at.layer),
        per_run=True,
        depends=("layer",),
        notes=image_views.fiedler_lines,
        table=image_views.fiedler_table,
    ),
    View(
        "patch-edges",
        "image",
        "Strongest attention edges of layer {layer} between patches",
        "Each patch's strongest links (top k per patch, as chosen) to other patches in the layer's symmetrised attention graph, drawn "
        "between patch centres (thick: the stronger half); the lines below give how far apart the joined "
        "patches lie.",
        "attention-is-a-graph",
        lambda a, k, at: image_views.edges_figure(a, k, at.layer, at.top_k),
        per_run=True,
        depends=("layer", "top_k"),
        notes=image_views.edge_lines,
        table=image_views.edges_table,
    ),
    View(
        "patch-depth",
        "image",
        "Each patch's mean similarity to the others, layer by layer",
        "One panel per layer, each patch's mean cosine similarity to the other patches drawn at its place in "
        "the patch grid (raster order, row by row), one colour scale for all panels (the chart's own range): "
        "patches becoming alike push every cell towards 1.",
        "the-metrics",
        lambda a, k, at: image_views.depth_figure(a, k),
        per_run=True,
        notes=image_views.depth_lines,
        table=image_views.depth_table,
    ),
]

BY_KEY = {view.key: view for view in VIEWS + IMAGE_VIEWS}


def views_for(analysis) -> list[View]:
    """The views drawn for ``analysis``: :data:`VIEWS`, and :data:`IMAGE_VIEWS` for a picture;
    without the views that need every head's attention where ``analysis`` keeps none (see :func:`left_out`)."""
    shown = VIEWS + (IMAGE_VIEWS if getattr(analysis, "image", None) is not None else [])
    return [view for view in shown if drawable(view, analysis)]


def _kept_heads(view: View, analysis) -> bool:
    return not view.every_head or analysis.baseline.attentions is not None


def _has_reads(view: View, analysis) -> bool:
    return all(getattr(analysis.baseline, name, None) is not None for name in view.reads)


def drawable(view: View, analysis) -> bool:
    """Whether ``view`` can be drawn for ``analysis``: a view that reads one head's own attention
    needs an analysis that kept it (a streamed long input keeps each layer's head-mean graph only),
    one that reads the per-head diagnostics an analysis that computed them."""
    return analysis is None or (_kept_heads(view, analysis) and _has_reads(view, analysis))


def left_out(section: str, analysis, at: At) -> list[str]:
    """One sentence per view of ``section`` not drawn for ``analysis``, saying why, for its place."""
    out = []
    for view in in_section(section):
        if not _kept_heads(view, analysis):
            out.append(
                f"{view.heading(at) or view.key} — not drawn: from {stream.KEEP_HEADS_BELOW:,} tokens SmoothViz "
                "analyses a text layer by layer as the model runs and keeps each layer's head-mean graph, not every "
                f"head's attention (this text has {len(analysis.tokens):,} tokens). Choose “one head” in the graph "
                "options to see that head's graph in the per-layer views, or analyse a shorter text."
            )
        elif not _has_reads(view, analysis):
            out.append(
                f"{view.heading(at) or view.key} — not drawn: this analysis was run without the per-head "
                "diagnostics (analyze(..., heads=False)); analyse with heads=True to see it."
            )
    return out


def trajectory_lines(analysis, picked: int | None = None) -> list[str]:
    """For a long text, which tokens' paths the trajectories draw (:func:`figures.drawn_tokens`)."""
    n = len(analysis.labels)
    if analysis.projection is None:
        return []
    positions = analysis.projection.shape[1]
    limit = figures.path_limit(positions)
    if n <= limit:
        return []
    m = len(figures.drawn_tokens(n, picked, limit))
    deep = (
        f" ({positions} positions each, to keep a run near {figures.PATH_POINTS:,} points)"
        if limit < figures.MAX_PATHS
        else ""
    )
    return [
        f"This text has {n:,} tokens: the paths of {m:,} of them are drawn{deep}, evenly spaced from the first "
        f"to the last (one in {n / limit:.{1 if n < 10 * limit else 0}f}){', and the picked one' if m > limit else ''}"
        " — more would be a tangle no one can read (SmoothViz's choice). “Show as table” lists every token."
    ]


def sections_for(analysis) -> dict[str, str]:
    """The sections drawn for ``analysis``: :data:`SECTIONS`, and :data:`IMAGE_SECTIONS` for a picture."""
    return {**SECTIONS, **(IMAGE_SECTIONS if getattr(analysis, "image", None) is not None else {})}


def compared() -> list[View]:
    """The views the Compare page and its report draw, in page order."""
    return [view for view in VIEWS if view.compare is not None]


def in_section(section: str, analysis=None) -> list[View]:
    """The views of one section, in page order (those :func:`drawable` for ``analysis`` when given)."""
    return [view for view in VIEWS + IMAGE_VIEWS if view.section == section and drawable(view, analysis)]


def story(analysis) -> str:
    """The sentence's smoothing story in one line, from the baseline's mean token cosine similarity
    (SmoothViz's own summary: where it starts, where it peaks, where it ends)."""
    values = [row.get("cosine_mean") for row in analysis.baseline.rows]
    known = [(layer, v) for layer, v in enumerate(values) if v is not None]
    if len(known) < 2:
        return ""
    (first, a), (last, z) = known[0], known[-1]
    peak, top = max(known, key=lambda lv: lv[1])
    if round(top, 3) == round(z, 3):  # the same to the digits shown: the end is the peak
        peak = last
    where = (
        "and peaks there"
        if peak == last
        else f"and peaks at layer {peak} ({top:.3f})" + (" — the embeddings" if peak == 0 else "")
    )
    change = "rises" if z > a else "falls" if z < a else "stays"
    what = "this picture's tokens" if getattr(analysis, "image", None) is not None else "this sentence's tokens"
    return (
        f"Without a mitigation, the mean cosine similarity between {what} {change} from "
        f"{a:.3f} at the embeddings (layer {first}) to {z:.3f} at layer {last}, {where}: "
        f"{'the tokens end more alike than they start' if z > a else 'the tokens end less alike than they start'}."
    )


def fusion_line(analysis) -> str:
    """For a fusion: the fused output's mean token cosine beside each fused layer's, from the
    mitigated run's rows (a fusion leaves the layers themselves as the baseline's)."""
    from smoothviz.mitigations.fusion import select_layers

    m, run = analysis.mitigation, analysis.mitigated
    if not m or run is None or run.fused_row is None or run.fused_row.get("cosine_mean") is None:
        return ""
    try:
        layers = select_layers(str(m["params"].get("layers", "all")), analysis.n_layers, m["name"])
    except ValueError:
        return ""
    fused = run.fused_row["cosine_mean"]
    each = [(layer, run.rows[layer].get("cosine_mean")) for layer in layers]
    each = [(layer, v) for layer, v in each if v is not None]
    if not each:
        return ""
    shown = (
        ", ".join(f"{v:.3f} (layer {layer})" for layer, v in each)
        if len(each) <= 8
        else f"{min(v for _, v in each):.3f} to {max(v for _, v in each):.3f}"
    )
    # compared at the digits shown: "lower than 1.000 (layer 3)" beside 1.000 would not add up
    f3 = round(fused, 3)
    below, equal = sum(f3 < round(v, 3) for _, v in each), sum(f3 == round(v, 3) for _, v in each)
    above, k = len(each) - below - equal, len(each)
    verdict = (
        "lower than every fused layer's"
        if below == k
        else "higher than every fused layer's"
        if above == k
        else "the same as every fused layer's at the digits shown"
        if equal == k
        else ", ".join(
            f"{word} {count} of the {k} fused layers'"
            for word, count in (("lower than", below), ("equal to", equal), ("higher than", above))
            if count
        )
    )
    span = f"layers {layers[0]}–{layers[-1]}" if len(layers) > 1 else f"layer {layers[0]}"
    return (
        f"Fusion ({m['name']} of {span}): the fused output's mean token cosine similarity is {fused:.3f}, "
        f"{verdict} ({shown}); the layers themselves are the baseline's, so the curves differ only at "
        f'"fused". Move the fused layers (the slider here, or layers=A-B in the sidebar) to see the fused value move.'
    )


def first_view(section: str) -> str:
    """The key of the first view of ``section`` (Present opens there)."""
    return in_section(section)[0].key


def chart_count(analysis) -> int:
    """How many charts the page and the report draw for ``analysis``."""
    return sum(view.count(analysis) for view in views_for(analysis))
