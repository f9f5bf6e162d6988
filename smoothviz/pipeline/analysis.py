"""``analyze()``: the one entry point the app, the CLI and notebooks call.

sentence → tokens → Trace (baseline, and mitigated when asked) → graphs and metrics → Analysis.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch

from smoothviz.mitigations import Mitigation, make
from smoothviz.model import capture, vision
from smoothviz.model.handles import Handle, get_handle
from smoothviz.model.vision import ImageInfo
from smoothviz.options import PROJECTIONS
from smoothviz.pipeline import stream
from smoothviz.science import diagnostics, graph, metrics
from smoothviz.science.graph import GraphOptions
from smoothviz.science.linalg import one_thread
from smoothviz.science.projection import project_with
from smoothviz.throttle import slot
from smoothviz.words.claims import render, sink_claim

SIGNED_NOTE = (
    "The {run} run's attention has negative weights (AttnScale's A′ = A_DC + (1 + ω)(A − A_DC)), so "
    "its graphs are signed. Their spectra use the signed normalized Laplacian with absolute degrees, "
    "I − D̄^(−1/2) S D̄^(−1/2) with D̄ = diag(|S|·1) (Kunegis et al. 2010): the eigenvalues still lie in "
    "[0, 2], but the smallest is 0 only when the graph is balanced, so λ₂ is not the mixing gap of a "
    "random walk and reads differently from the baseline's."
)


SINK_FIRST_ROW_NOTE = (
    "Special tokens dropped as keys: in a causal model the first token sees only itself, so "
    "its row (and any row that sees only dropped tokens) keeps its attention unchanged; every "
    "other row is renormalised over the tokens it may still see (SmoothViz's own choice)."
)


SHI_PRE_LN_NOTE = (
    "Shi et al.'s bound v is derived for post-LN blocks; this model is pre-LN, so v is not shown "
    "(the measured d_M ratio still is)."
)


DM_RATIO_NOTE = (
    "The {run} run's dm_ratio is null at layer(s) {layers}: d_M is exactly 0 at the layer before "
    "(every token exactly the same vector), so the ratio is 0/0 and measures nothing."
)


class AnalysisError(ValueError):
    """Input the analysis cannot use (empty text, bad option); the message says what to do."""


@dataclass(frozen=True)
class Run:
    """The analysis of one forward pass (baseline or mitigated), as numpy arrays.

    Shapes (L layers, h heads, n tokens kept by the graph options, d width, k = min(n, d)):

    ================  ================  =====================================================
    rows              list of dicts     per layer 0…L: ``{"layer": l, name: value}`` for every
                                        metric of ``smoothviz.science.metrics.METRICS`` (None where
                                        undefined; layer metrics are None at layer 0)
    fused_row         dict or None      the state metrics of a fusion's fused output
    final_norm_row    dict or None      the state metrics of a pre-norm model's final norm applied
                                        to H_L (GPT-2's ln_f, Llama's norm): a row of its own, not
                                        layer L (layer l is always block l's output)
    hidden            [L+1, N, d]       every token's state (all N tokens, special ones too)
    attentions        [L, h, N, N]      the attention the model used; None for a sentence analysed
                                        layer by layer (from ``stream.STREAM_FROM`` tokens: see
                                        :mod:`smoothviz.pipeline.stream`, which says what it keeps)
    received          [L, N] or None    each token's share of the attention (mean over heads and
                                        rows), kept where ``attentions`` is not
    similarity        [L+1, n, n]       token cosine similarity (kept tokens; computed per state
                                        on first read for a streamed sentence)
    sv                [L+1, k]          singular values / σ₁
    layer_graph       [L, n, n]         the symmetrised, aggregated graph S of each layer
    layer_eigs        [L, n]            its normalized-Laplacian eigenvalues (ascending; the signed
                                        Laplacian with absolute degrees, see smoothviz.science.graph;
                                        computed per layer on first read for a streamed sentence)
    fiedler           [L, n]            its Fiedler vector (largest entry positive)
    head_gap          [L, h]            per-head spectral gap λ₂ (None if heads=False, or
                                        head_gaps=False in :func:`analyze_batch`)
    head_entropy      [L, h]            mean row entropy of attention (nats)
    head_uniform      [L, h]            ‖A − 11ᵀ/n‖_F
    value_eigs        [L, h, d_h]       eigenvalues of W_O^h W_V^h (complex)
    smooths           [L, h]            Dovonon verdict: True = low-pass (None if heads=False)
    fused             [n, d'] or None   the fused output of a fusion mitigation
    final_norm        [N, d] or None    a pre-norm model's final norm applied to H_L (every token):
                                        what ``final_norm_row`` measures; never layer L
    signed            [L]               S has a negative weight (AttnScale's A′): a signed graph
    heads_signed      bool              some head's graph has a negative weight
    ln_sigma          [L, m]            σ_min of the input of each of a block's m LayerNorms,
                                        over the kept tokens (what Shi's v uses)
    softmax           [L, h, N, N]      the softmax before ``attention_map`` (AttnScale only)
    attention_map     callable or None  ``A -> A′`` (AttnScale); see ``_kept_heads``
    kept_heads        [L, h] or None    heads the model used (False: ablated by ``heads``);
                                        the head-mean graph averages the kept ones only
    ================  ================  =====================================================
    """

    rows: list
    fused_row: dict | None
    hidden: np.ndarray
    attentions: np.ndarray
    similarity: np.ndarray
    sv: np.ndarray
    layer_graph: np.ndarray
    layer_eigs: np.ndarray
    fiedler: np.ndarray
    head_gap: np.ndarray
    head_entropy: np.ndarray
    head_uniform: np.ndarray
    value_eigs: np.ndarray
    smooths: np.ndarray
    fused: np.ndarray | None = None
    signed: np.ndarray | None = None
    heads_signed: bool = False
    ln_sigma: np.ndarray | None = None
    softmax: np.ndarray | None = None
    attention_map: Callable | None = None
    kept_heads: np.ndarray | None = None
    final_norm_row: dict | None = None
    final_norm: np.ndarray | None = None
    received: np.ndarray | None = None

    def metric(self, name: str, include_fused: bool = False) -> list:
        """One metric over depth 0…L (``None`` where undefined), then the fused output's if asked."""
        fused = [self.fused_row.get(name)] if include_fused and self.fused_row is not None else []
        return [r[name] for r in self.rows] + fused

    def table(self) -> list[dict]:
        """The rows of ``analyze --json``: layers 0…L, then ``{"layer": "fused", …}`` for a fusion."""
        return self.rows + ([{"layer": "fused", **self.fused_row}] if self.fused_row is not None else [])

    def used_heads(self) -> np.ndarray | None:
        """``[L, h]`` bool: the heads the model used (all but ablated ones); ``None`` without verdicts."""
        if self.smooths is None:
            return None
        return np.ones(self.smooths.shape, bool) if self.kept_heads is None else np.asarray(self.kept_heads, bool)

    def low_pass_share(self) -> np.ndarray | None:
        """``[L]`` the share of the used heads whose Dovonon verdict is 'smooths' (NaN: no head used)."""
        if self.smooths is None:
            return None
        used = self.used_heads()
        count = used.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, (np.asarray(self.smooths) & used).sum(1) / np.maximum(count, 1), np.nan)

    def layer_verdicts(self) -> list[str]:
        """Per layer, SmoothViz's own majority summary of Dovonon's per-head verdicts: "smooths" when
        at least half the used heads are low-pass, "sharpens" otherwise, "no head" when all are ablated."""
        if self.smooths is None:
            return []
        return ["no head" if np.isnan(s) else "smooths" if s >= 0.5 else "sharpens" for s in self.low_pass_share()]


@dataclass(frozen=True)
class Analysis:
    """One sentence through one model, baseline beside an optional mitigation.

    Attributes:
        tokens: every token (special ones included); ``special`` marks [CLS]/[SEP]/….
        keep: indices of the tokens the graphs and metrics use (all, or without specials).
        projection: ``[runs, L+1, N_keep, 2]`` joint coordinates, or ``None``.
        fused_projection: ``[N_keep, 2]``: a fusion's fused output in the same projection (fitted
            with the layers' states), or ``None``.
        layernorm: where the blocks' LayerNorms sit, ``post``, ``pre`` or ``none`` (Shi et al.'s
            bound v is shown for post-LN blocks only).
        image: for a picture (a vision model), the pixels the model saw and its patch grid
            (:class:`smoothviz.model.vision.ImageInfo`); ``None`` for a sentence.
    """

    model: str
    device: str
    tokens: list
    special: list
    keep: list
    causal: bool
    options: GraphOptions
    baseline: Run
    mitigated: Run | None = None
    mitigation: dict | None = None
    projection: np.ndarray | None = None
    fused_projection: np.ndarray | None = None
    projection_method: str = "none"
    notes: list = field(default_factory=list)
    lab: dict | None = None
    layernorm: str = "post"
    image: ImageInfo | None = None

    @property
    def n_layers(self) -> int:
        """L, the number of layers (attention tensors)."""
        return self.baseline.head_entropy.shape[0]

    @property
    def heads(self) -> int:
        """h, the number of heads per layer."""
        return self.baseline.head_entropy.shape[1]

    @property
    def labels(self) -> list[str]:
        """Display labels of the kept tokens."""
        return [_display(self.tokens[i]) for i in self.keep]

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays of both runs and the projection (what a cache of it costs)."""
        arrays = [v for r in self.runs().values() for v in vars(r).values() if isinstance(v, np.ndarray)]
        return sum(a.nbytes for a in arrays + [self.projection, self.fused_projection] if a is not None)

    def runs(self) -> dict[str, Run]:
        """``{"baseline": Run}``, plus ``"mitigated"`` when a mitigation was applied."""
        return {"baseline": self.baseline, **({"mitigated": self.mitigated} if self.mitigated else {})}

    def graph(
        self,
        layer: int,
        head: int | None = None,
        run: str = "baseline",
        top_k: int | None = None,
        directed: bool = False,
    ):
        """A networkx graph of tokens for layer ``layer`` (1…L) and one head or the aggregate."""
        r = self.runs()[run]
        if not 1 <= layer <= self.n_layers:
            raise AnalysisError(f"layer must be in 1..{self.n_layers}, got {layer}")
        if r.attentions is None:  # a streamed sentence keeps the head-mean graph S only
            if directed or (head is not None and head != self.options.head):
                raise AnalysisError(
                    f"a sentence of {len(self.tokens)} tokens keeps only each layer's "
                    "symmetrised graph, not every head's or the directed attention"
                )
            return graph.to_networkx(np.asarray(r.layer_graph[layer - 1]), self.labels, top_k=top_k)
        at = lambda x: None if x is None else torch.tensor(x[layer - 1 : layer])  # noqa: E731
        A = _kept_graph(
            at(r.attentions),
            at(r.softmax),
            r.attention_map,
            torch.tensor(self.keep),
            head if head is not None else self.options.head,
            at(r.kept_heads),
        )[0]
        W = A if directed else graph.symmetrize(A, self.options.symmetrize)
        return graph.to_networkx(W.numpy(), self.labels, top_k=top_k, directed=directed)

    def projected(self, method: str, normalize: bool = True) -> Analysis:
        """This analysis with the tokens' joint 2-D projection over every layer of both runs.

        A new object that shares every array with this one (only the coordinates are new), so an
        app can draw the metrics first and project only when the trajectories are looked at.

        Args:
            method: ``pca`` or ``umap`` (UMAP falls back to PCA on too few points, with a note).
            normalize: centre and scale each layer's states before projecting.
        """
        runs = [run.hidden[:, self.keep] for run in self.runs().values()]
        fused = self.mitigated.fused if self.mitigated is not None else None
        coords, fused_xy, used, note = project_with(
            runs, None if fused is None else np.asarray(fused)[self.keep], method, normalize
        )
        for a in (coords, fused_xy):
            if a is not None:
                a.setflags(write=False)
        return replace(
            self,
            projection=coords,
            fused_projection=fused_xy,
            projection_method=used,
            notes=self.notes + ([note] if note else []),
        )

    def to_json(self) -> dict:
        """The CLI's ``--json`` object."""
        out = {
            "model": self.model,
            "device": self.device,
            "tokens": self.tokens,
            "special_tokens": [t for t, s in zip(self.tokens, self.special) if s],
            "causal": self.causal,
            "notes": self.notes,
            "graph": {
                "head": self.options.head if self.options.head is not None else "mean",
                "symmetrize": self.options.symmetrize,
                "exclude_special": self.options.exclude_special,
            },
            "baseline": _run_json(self.baseline),
        }
        if self.lab is not None:
            out["lab"] = self.lab
        if self.image is not None:
            out["image"] = self.image.to_json()
        if self.mitigated is not None:
            out["mitigation"] = self.mitigation
            out["mitigated"] = _run_json(self.mitigated)
        return out


def _run_json(run: Run) -> dict:
    """A run's layers, and its final norm's row apart (never a layer)."""
    out = {"layers": run.table()}
    if run.final_norm_row is not None:
        out["final_norm"] = run.final_norm_row
    return out


def _display(token: str) -> str:
    return token.replace("Ġ", "·").replace("▁", "·").replace("Ċ", "⏎") or "∅"


# --------------------------------------------------------------------------- the entry point


def analyze(
    text: str | None = None,
    *,
    image=None,
    model: str = "default",
    device: str = "auto",
    lab: dict | None = None,
    mitigation: str | Mitigation | None = None,
    params: dict | None = None,
    head: int | None = None,
    symmetrize: str = "sym",
    exclude_special: bool = False,
    projection: str = "none",
    normalize_projection: bool = True,
    max_tokens: int | None = None,
    heads: bool = True,
    max_chars: int | None = None,
) -> Analysis:
    """Analyse one sentence, or one picture: baseline, and beside it ``mitigation`` when given.

    Args:
        text: the sentence (truncated to the model's maximum, with a note).
        image: instead of ``text``, a picture for a vision model (ViT, DeiT, DINOv2): a path, the
            bytes of an upload or a PIL image (:mod:`smoothviz.model.vision`); its patches are the tokens.
        model: ``"default"`` (embedded all-MiniLM-L6-v2), ``"lab"``, a Hugging Face id or a directory.
        device: ``auto`` (CUDA, then MPS, then CPU), ``cpu`` or ``cuda``.
        lab: the lab model's settings (``KEY: VALUE``) when ``model == "lab"``.
        mitigation, params: a name from ``smoothviz.mitigations.NAMES`` and its parameters.
        head, symmetrize, exclude_special: graph options (RESEARCH §1).
        projection: ``none``, ``pca`` or ``umap``.
        max_tokens: a cap below the model's own maximum (public-demo mode).
        max_chars: characters kept before tokenizing (default ``handles.MAX_CHARS``, 200,000),
            with a note saying how many were dropped.
        heads: also compute every head's Laplacian spectrum and Dovonon verdict (the costly
            part for long sentences: one eigendecomposition per head).

    Raises:
        AnalysisError, ModelError, MitigationError: with a message meant for the user.
    """
    if image is not None:
        if text is not None and str(text).strip():
            raise AnalysisError("give a sentence or an image, not both")
        text = _Picture(image)
    elif not isinstance(text, str) or not text.strip():
        raise AnalysisError("the text is empty: type a sentence to analyse")
    if projection not in PROJECTIONS:
        raise AnalysisError(f"projection must be one of {', '.join(PROJECTIONS)}, got '{projection}'")
    try:
        options = GraphOptions(head=head, symmetrize=symmetrize, exclude_special=exclude_special)
    except ValueError as err:
        raise AnalysisError(str(err)) from None
    if isinstance(mitigation, str):
        mitigation = make(mitigation, params)
    notes: list[str] = []
    with slot():  # a server's turn (smoothviz.throttle.set_throttle); nothing by default
        return _guarded(
            text,
            model,
            device,
            lab,
            mitigation,
            options,
            projection,
            normalize_projection,
            (max_tokens, max_chars),
            heads,
            notes,
            head,
        )


def _guarded(text, model, device, lab, mitigation, options, projection, normalize_projection, caps, heads, notes, head):
    handle = get_handle(model, device, lab)
    if head is not None and head >= handle.heads:
        raise AnalysisError(f"head {head} does not exist: this model has heads 0..{handle.heads - 1}")
    try:
        return _analyze(handle, text, mitigation, options, projection, normalize_projection, caps, heads, notes)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        notes.append("The GPU ran out of memory; this result was computed on the CPU.")
        handle = get_handle(model, "cpu", lab)
        return _analyze(handle, text, mitigation, options, projection, normalize_projection, caps, heads, notes)


def _analyze(handle: Handle, text, mitigation, options, projection, normalize_projection, caps, heads, notes):
    max_tokens, max_chars = caps
    picture = None
    if vision.is_vision(handle) and mitigation is not None:
        vision.check_mitigation(mitigation)
    if isinstance(text, _Picture):
        inputs, tokens, special, picture = vision.encode(handle, text.source, notes)
    elif vision.is_vision(handle):
        raise AnalysisError(
            f"model '{handle.name}' takes images, not text: give it a picture "
            "(the main page's image box, --image, or image=…)"
        )
    else:
        inputs, tokens, special = handle.encode(text, max_tokens, notes, max_chars)
    analysis = analyze_encoded(
        handle,
        inputs,
        tokens,
        special,
        mitigation,
        options,
        projection=projection,
        normalize_projection=normalize_projection,
        heads=heads,
        notes=notes,
    )
    return analysis if picture is None else replace(analysis, image=picture)


@dataclass(frozen=True)
class _Picture:
    """An image passed through ``analyze``'s text slot to :func:`_analyze` (which encodes it)."""

    source: object


def analyze_encoded(
    handle: Handle,
    inputs: dict,
    tokens: list,
    special: list,
    mitigation: Mitigation | None,
    options: GraphOptions,
    *,
    projection: str = "none",
    normalize_projection: bool = True,
    heads: bool = True,
    notes: list | None = None,
    forward=capture.run,
) -> Analysis:
    """Everything :func:`analyze` does once :meth:`Handle.encode` has tokenised the sentence.

    Args:
        inputs, tokens, special: what :meth:`Handle.encode` returned.
        forward: ``(model, inputs, intervention=None, special=None) -> Trace``, how the model is run (on the
            baseline model, or the mitigated one with its intervention). :mod:`smoothviz.corpus`
            passes one that hands back this sentence's slice of a padded batch, so a corpus row
            and ``analyze`` share every step after the forward pass.
    """
    notes = [] if notes is None else notes
    [analysis] = analyze_batch(
        handle,
        [(inputs, tokens, special, notes)],
        mitigation,
        options,
        heads=heads,
        runs_together=False,
        forwards=[forward],
    )
    return analysis if projection == "none" else analysis.projected(projection, normalize_projection)


def analyze_batch(
    handle: Handle,
    sentences: list,
    mitigation: Mitigation | None,
    options: GraphOptions,
    *,
    heads: bool = True,
    head_gaps: bool = True,
    runs_together: bool = True,
    forwards: list | None = None,
) -> list[Analysis]:
    """:func:`analyze_encoded` (without projection) for several sentences, batched where it pays.

    Each sentence is traced on its own (``forwards[i]``, :func:`capture.run` by default); then the
    sentences that keep the same number of tokens have their graphs and metrics computed together,
    as one more leading dimension besides layers and heads. Every operation still acts on each
    sentence's own matrices, so the numbers are those of the sentence alone (up to float
    rounding); but a short sentence's analysis is thousands of tiny tensor operations whose cost is
    mostly their overhead, and one operation on several sentences costs about what it does on one
    (corpus mode: several times faster).

    Args:
        sentences: ``(inputs, tokens, special, notes)`` per sentence, from :meth:`Handle.encode`;
            each one's notes are appended to its ``notes`` list.
        forwards: per sentence, its ``forward`` (see :func:`analyze_encoded`).
        head_gaps: with ``heads``, also every head's spectral gap (``Run.head_gap``: the page's
            per-head chart, one eigendecomposition per head). Corpus rows hold only the metrics,
            whose per-head part is the Dovonon verdicts, so corpus mode skips them (a third of
            its analysis time on sentences of 50 tokens).
        runs_together: the baseline and mitigated traces share those batched calls where they can
            (half the calls for NeuTRENO). Batching changes nothing but float rounding, which at a
            collapsed state's rounding floor moves σ/σ₁ noise by a few 0.1%; :func:`analyze_encoded`
            (the page) keeps each run on its own, so its numbers stay exactly those of one run.

    Raises:
        AnalysisError: the first sentence that cannot be analysed (then none is returned: a caller
            that wants the others analyses them one by one).
    """
    if not sentences:
        return []
    forwards = forwards or [capture.run] * len(sentences)
    keeps = [_kept_tokens(handle, special, options, notes) for _, _, special, notes in sentences]
    forwards = [
        _streaming(handle, keep, options, heads, head_gaps)
        if fw is capture.run
        and len(sentences) == 1
        and len(keep) >= stream.STREAM_FROM
        and capture.uses_registry(handle.model)
        else fw
        for fw, keep in zip(forwards, keeps)
    ]
    for fw, keep, (*_, notes) in zip(forwards, keeps, sentences):
        if isinstance(fw, stream.Forward) and len(keep) > stream.ROLLOUT_UP_TO:
            notes.append(stream.ROLLOUT_NOTE.format(limit=stream.ROLLOUT_UP_TO, n=len(keep)))
    base = [_finite(fw(handle.model, inputs), "baseline", handle) for (inputs, *_), fw in zip(sentences, forwards)]
    n = len(sentences)
    traces, value_eigs, fused, described = list(base), [handle.value_eigs()] * n, [None] * n, None
    if mitigation is not None:
        described = {"name": mitigation.name, "params": mitigation.params()}
        ctx = handle.context()
        alt = handle.for_mitigation(mitigation)
        if alt is not handle:  # the lab's value-spectrum switch
            traces += [
                _finite(_with_values(fw, alt.value_eigs())(alt.model, inputs), mitigation.name, alt)
                for (inputs, *_), fw in zip(sentences, forwards)
            ]
            value_eigs += [alt.value_eigs()] * n
            described["lab_value_spectrum"] = alt.lab["value_spectrum"]
        else:
            iv = mitigation.intervention(ctx)
            mitigated_eigs = handle.value_eigs(mitigation.out_weights(ctx))
            for (inputs, _, special, notes), fw, trace in zip(sentences, forwards, base):
                fw = _with_values(fw, mitigated_eigs)
                if iv is not None and iv.keys is not None and handle.causal and not iv.keys(torch.tensor(special))[0]:
                    if not ctx.registry:
                        raise AnalysisError(
                            f"{mitigation.name}: the first token is special and a causal model's "
                            "first token sees only itself, so its attention cannot leave the "
                            "special tokens"
                        )
                    notes.append(SINK_FIRST_ROW_NOTE)
                traces.append(
                    _finite(fw(handle.model, inputs, iv, special), mitigation.name, handle) if iv is not None else trace
                )
            value_eigs += [mitigated_eigs] * n
        fused += [mitigation.fuse(t.hidden.double(), ctx) for t in traces[n:]]
    run_of = [i // n if not runs_together else 0 for i in range(len(traces))]
    with one_thread():  # eigensolvers: one thread each (see linalg.one_thread)
        runs = _summarise_by_length(
            traces, keeps * (len(traces) // n), value_eigs, fused, run_of, options, handle, heads, head_gaps
        )
    out = []
    for (_, tokens, special, notes), keep, baseline, run in zip(sentences, keeps, runs[:n], runs[n:] or [None] * n):
        if run is not None and run.kept_heads is not None and options.head is None:
            empty = [i + 1 for i, row in enumerate(run.kept_heads) if not row.any()]
            if empty:
                notes.append(
                    f"Every head of layer{'s' if len(empty) > 1 else ''} {', '.join(map(str, empty))} is "
                    "ablated: that layer has no head-mean graph, so its graph metrics (dirichlet, "
                    "spectral_gap, rollout_ratio from it on) are null."
                )
        for name, r in (("baseline", baseline), ("mitigated", run)):
            if r is not None and (r.signed.any() or r.heads_signed):
                notes.append(SIGNED_NOTE.format(run=name))
            if r is not None and len(keep) > 1:
                null = [row["layer"] for row in r.rows[1:] if row["dm_ratio"] is None]
                if null:
                    notes.append(DM_RATIO_NOTE.format(run=name, layers=", ".join(map(str, null))))
        analysis = Analysis(
            model=handle.name,
            device=handle.device,
            tokens=tokens,
            special=special,
            keep=keep,
            causal=handle.causal,
            options=options,
            baseline=baseline,
            mitigated=run,
            mitigation=described,
            notes=notes,
            lab=handle.lab,
            layernorm=handle.layernorm,
        )
        if described and described["params"].get("sink") == "drop":  # say what counted as special, and if nothing did
            notes.append(render(sink_claim(analysis, handle.special_tokens())))
        out.append(analysis)
    return out


def _streaming(handle: Handle, keep: list[int], options: GraphOptions, heads: bool, head_gaps: bool) -> stream.Forward:
    """The forward that analyses a long sentence layer by layer (:mod:`smoothviz.pipeline.stream`)."""
    return stream.Forward(
        keep,
        options,
        n_layers=handle.n_layers,
        heads=heads,
        head_gaps=head_gaps,
        value_eigs=handle.value_eigs() if heads else None,
        post_ln=handle.layernorm == "post",
    )


def _with_values(fw, value_eigs):
    """``fw`` with the value spectra of the run it traces (a streaming forward's Dovonon verdicts)."""
    return fw.using(value_eigs) if isinstance(fw, stream.Forward) and fw.heads else fw


def _kept_tokens(handle: Handle, special: list, options: GraphOptions, notes: list) -> list[int]:
    """The indices of the tokens the graphs and metrics use, and the notes the tokens alone call for."""
    if all(special):
        raise AnalysisError("the text gives no tokens for this model (only special tokens): type some words")
    keep = [i for i, s in enumerate(special) if not (options.exclude_special and s)]
    if not keep:
        raise AnalysisError("no tokens are left once special tokens are excluded: type some text")
    if len(keep) == 1:
        notes.append(
            "Only one token: pairwise metrics (cosine_mean, spectral gap, skewness) are undefined, "
            "dm_rel is 0 by definition (not a collapse) and dm_ratio is null (0/0)."
        )
    if handle.causal:
        notes.append("Causal (decoder) attention: every attention row is lower-triangular.")
    if handle.layernorm == "pre":
        notes.append(SHI_PRE_LN_NOTE)
    return keep


def _summarise_by_length(
    traces: list,
    keeps: list,
    value_eigs: list,
    fused: list,
    apart: list,
    options: GraphOptions,
    handle: Handle,
    heads: bool,
    head_gaps: bool,
) -> list[Run]:
    """:func:`_summarise` on traces together where it can take them in one call: the same kept
    tokens, the same value spectra, attention map and kept heads, all fused or none (so a
    baseline and a NeuTRENO run can share one call, an AttnScale run has its own), and the same
    ``apart`` label (traces labelled differently never share a call). One Run per trace, in order."""
    same: dict = {}
    for i, (trace, keep) in enumerate(zip(traces, keeps)):
        key = (
            trace.hidden.shape[1],
            tuple(keep),
            fused[i] is None,
            id(value_eigs[i]),
            id(trace.attention_map),
            id(trace.kept_heads),
            apart[i],
        )
        same.setdefault(key, []).append(i)
    runs: list = [None] * len(traces)
    for i, trace in enumerate(traces):
        if isinstance(trace, stream.Streamed):
            runs[i] = _summarise_streamed(trace, keeps[i], options, handle, value_eigs[i], fused[i])
            same = {key: [j for j in group if j != i] for key, group in same.items()}
    same = {key: group for key, group in same.items() if group}
    for (_, keep, no_fusion, *_), group in same.items():
        summaries = _summarise(
            [traces[i] for i in group],
            list(keep),
            options,
            handle,
            value_eigs[group[0]],
            heads,
            None if no_fusion else torch.stack([fused[i] for i in group]),
            head_gaps=head_gaps,
        )
        for i, run in zip(group, summaries):
            runs[i] = run
    return runs


def _finite(trace: capture.Trace, run: str, handle: Handle) -> capture.Trace:
    """Refuse states that overflowed (a deep lab without LayerNorm, an extreme parameter), or that
    a broken checkpoint made NaN whatever the settings."""
    bad = ~torch.isfinite(trace.hidden).flatten(1).all(1)
    if bad.any():
        layer = int(bad.nonzero()[0])
        broken = handle.nonfinite_weights()
        if broken:
            kinds = " and ".join(sorted({kind for _, kind in broken}))
            raise AnalysisError(
                f"the model's weights contain {kinds} values ({len(broken)} tensor"
                f"{'s' if len(broken) > 1 else ''}, first {broken[0][0]}): the checkpoint is "
                "broken, so no setting can help; try another model"
            )
        raise AnalysisError(
            f"the {run} run overflowed (inf/NaN) at layer {layer}: try fewer layers, "
            "a LayerNorm, a lower temperature or a milder parameter"
        )
    return trace


def _summarise(
    traces: list,
    keep: list[int],
    options: GraphOptions,
    handle: Handle,
    value_eigs: torch.Tensor,
    heads: bool,
    fused: torch.Tensor | None = None,
    *,
    head_gaps: bool = True,
) -> list[Run]:
    """Graphs and metrics of traces of one length, batched over them, their layers and heads.

    Builds the graphs and the per-head diagnostics, then evaluates every metric of
    :data:`smoothviz.science.metrics.METRICS` on them. Per-state metrics and the per-layer graph are
    computed in float64 (small); per-head work on ``[B, L, h, n, n]`` stays in float32, where it is
    memory- and time-bound. The traces come from one model and one mitigation (one attention
    map, one set of kept heads); ``fused [B, N, d']``: a fusion's fused outputs.
    """
    idx = torch.tensor(keep)
    first = traces[0]
    stacked = lambda name: torch.stack([getattr(t, name) for t in traces])  # noqa: E731  [B, …]
    attentions = stacked("attentions")
    softmax = None if first.softmax is None else stacked("softmax")
    H = stacked("hidden")[:, :, idx].double().cpu()  # [B, L+1, n, d]
    A = _kept_heads(attentions, softmax, first.attention_map, idx)  # [B, L, h, n, n]
    L = A.shape[1]
    kept = first.kept_heads if options.head is None else None
    directed = _kept_graph(attentions, softmax, first.attention_map, idx, options.head, kept)  # [B, L, n, n]
    S = graph.symmetrize(directed, options.symmetrize)
    eigs, vecs = graph.laplacian_spectrum(S)
    head_gap = smooths = None
    heads_signed = graph.has_negative(A).flatten(1).any(1)  # [B]
    if heads and head_gaps:
        head_gap = graph.by_layer(lambda a: graph.spectral_gaps(graph.symmetrize(a, options.symmetrize)), A)
    if heads:
        smooths = diagnostics.dovonon(A, value_eigs.to(torch.complex64))
    x = metrics.Inputs(
        H=H,
        graphs=torch.cat([S[:, :1], S], 1),
        directed=directed,
        eigs=eigs,
        heads=A,
        smooths=smooths,  # σ_min over the kept tokens, as λ uses
        ln_sigma=stacked("ln_sigma")[..., idx].double().amin(-1),
        # s only where the bound applies: a decoder's SVDs of every weight cost seconds
        weight_norm=handle.weight_norm() if handle.layernorm == "post" else None,
        post_ln=handle.layernorm == "post",
        kept=first.kept_heads,
        first=attentions[..., 0].float().cpu(),
    )  # [B, L, h, N]: every row, specials kept
    values = metrics.evaluate(x)
    if kept is not None:
        _null_headless(values, ~kept.any(1))
    final_values = None
    if first.final_norm is not None:  # the final norm's output: states only, on the last layer's graph
        finals = torch.stack([t.final_norm for t in traces])[:, idx].double().cpu().unsqueeze(1)
        final_values = metrics.evaluate(metrics.Inputs(H=finals, graphs=S[:, -1:]), states_only=True)
    fused_values = None
    if fused is not None:  # a state of its own, measured on the last layer's graph; no layer metrics
        fx = metrics.Inputs(H=fused[:, idx].double().cpu().unsqueeze(1), graphs=S[:, -1:])
        fused_values = metrics.evaluate(fx, states_only=True)
    per = {
        "similarity": _f32(metrics.similarity(H, x.gram)),
        "sv": _f32(x.sv / x.sv[..., :1].clamp_min(1e-30)),
        "layer_graph": _f32(S),
        "layer_eigs": _f32(eigs),
        "fiedler": _f32(graph.fiedler(vecs)),
        "head_gap": _f32(head_gap),
        "head_entropy": _f32(graph.by_layer(graph.row_entropy, A)),
        "head_uniform": _f32(graph.by_layer(graph.distance_from_uniform, A)),
        "smooths": None if smooths is None else _frozen(smooths),
        "signed": _frozen(graph.has_negative(S)),
        "ln_sigma": _f32(x.ln_sigma),
    }
    runs = []
    for b, trace in enumerate(traces):
        fused_row = None
        if fused_values is not None:
            row = metrics.rows({k: v[b] for k, v in fused_values.items()}, 1)[0]
            fused_row = {k: v for k, v in row.items() if k != "layer"}
        final_row = None
        if final_values is not None:
            row = metrics.rows({k: v[b] for k, v in final_values.items()}, 1)[0]
            final_row = {k: v for k, v in row.items() if k != "layer"}
        runs.append(
            Run(
                final_norm_row=final_row,
                rows=metrics.rows({k: v[b] for k, v in values.items()}, L + 1),
                fused_row=fused_row,
                hidden=_f32(trace.hidden),
                attentions=_f32(trace.attentions),
                **{k: None if v is None else v[b] for k, v in per.items()},
                value_eigs=_frozen(value_eigs),
                fused=None if fused is None else _f32(fused[b]),
                final_norm=_f32(trace.final_norm),
                heads_signed=bool(heads_signed[b]),
                softmax=_f32(trace.softmax),
                attention_map=trace.attention_map,
                kept_heads=None if trace.kept_heads is None else _frozen(trace.kept_heads),
            )
        )
    return runs


def _summarise_streamed(
    trace: stream.Streamed,
    keep: list[int],
    options: GraphOptions,
    handle: Handle,
    value_eigs: torch.Tensor,
    fused: torch.Tensor | None,
) -> Run:
    """:func:`_summarise` for a sentence analysed layer by layer: the same Run, from what each layer
    left (:mod:`smoothviz.pipeline.stream`), with its attention not kept."""
    idx, p = torch.tensor(keep), trace.parts
    ln_sigma = trace.ln_sigma[..., idx].double().amin(-1)
    weight_norm = handle.weight_norm() if handle.layernorm == "post" else None
    values = stream.evaluate(trace, keep, ln_sigma, weight_norm, handle.layernorm == "post")
    sv = values.pop("_sv")
    kept = trace.kept_heads if options.head is None else None
    if kept is not None:
        _null_headless(values, ~torch.as_tensor(kept).any(1))
    S = p["graph"]
    L = S.shape[0]

    def states(H):
        row = metrics.rows(
            metrics.evaluate(metrics.Inputs(H=H[idx].double().unsqueeze(0), graphs=S[-1:].double()), states_only=True),
            1,
        )[0]
        return {k: v for k, v in row.items() if k != "layer"}

    layer_graph = _frozen(S)
    hidden = _f32(trace.hidden)
    return Run(
        rows=metrics.rows(values, L + 1),
        fused_row=None if fused is None else states(fused),
        final_norm_row=None if trace.final_norm is None else states(trace.final_norm),
        hidden=hidden,
        attentions=_f32(trace.attentions),  # None from stream.KEEP_HEADS_BELOW tokens
        final_norm=_f32(trace.final_norm),
        received=_f32(p["received"]),
        similarity=stream.PerLayer(hidden if len(keep) == hidden.shape[1] else hidden[:, keep], "similarity"),
        sv=_f32(sv),
        layer_graph=layer_graph,
        layer_eigs=stream.PerLayer(layer_graph, "laplacian"),
        fiedler=_f32(graph.signed_vector(p["fiedler"])),
        head_gap=_f32(p["head_gap"]),
        head_entropy=_f32(p["entropy"]),
        head_uniform=_f32(p["uniform"]),
        value_eigs=_frozen(value_eigs),
        smooths=None if p["smooths"] is None else _frozen(p["smooths"]),
        fused=_f32(fused),
        signed=_frozen(p["signed"]),
        heads_signed=p["heads_signed"],
        ln_sigma=_f32(ln_sigma),
        kept_heads=None if trace.kept_heads is None else _frozen(trace.kept_heads),
    )


def _null_headless(values: dict, empty: torch.Tensor) -> None:
    """NaN (null in the rows) for the graph metrics of the layers ``empty [L]`` that keep no head."""
    if not empty.any():
        return
    for m in metrics.METRICS:
        if not m.graph or values.get(m.name) is None:
            continue
        mask = empty.cummax(0).values if m.graph == "from" else empty
        if not m.per_layer:  # state l reads layer l's graph; state 0 reads layer 1's
            mask = torch.cat([mask[:1], mask])
        value = values[m.name].clone()
        value[..., mask.to(value.device)] = float("nan")
        values[m.name] = value


def _kept_heads(attentions: torch.Tensor, softmax: torch.Tensor | None, mapping, idx: torch.Tensor) -> torch.Tensor:
    """Each head's attention over the kept tokens ``[L, h, n, n]`` (float32), restricted on its own.

    With an attention map (AttnScale's A′ = A_DC + (1 + ω)(A − A_DC)) the special tokens leave
    the softmax A, whose rows are renormalised, and the map then acts over the kept tokens:
    removed from A′ itself they can leave a row whose kept weights sum to zero or less (a head
    that sends most of its attention to [SEP]), which no renormalisation can fix. SmoothViz's
    own choice; with every token kept it is A′ itself.
    """
    if mapping is None or idx.numel() == attentions.shape[-1]:
        return graph.restrict(attentions.float().cpu(), idx)
    return mapping(graph.restrict(softmax.float().cpu(), idx))


def _kept_graph(
    attentions: torch.Tensor, softmax: torch.Tensor | None, mapping, idx: torch.Tensor, head: int | None, kept=None
) -> torch.Tensor:
    """The directed graph of each layer over the kept tokens ``[L, n, n]`` (float64).

    RESEARCH §1's order: the mean over heads first, then the special tokens' rows and columns
    removed and rows renormalised, so a head that sends 95% of its attention to [SEP] weighs
    little among the words; one head's graph is restricted on its own (the same thing for one
    head). An attention map acts after the restriction, as in :func:`_kept_heads`. ``kept [L, h]``:
    the mean takes the kept heads only (ablated ones are left out).
    """
    kept = None if kept is None else torch.as_tensor(kept)
    if mapping is None or idx.numel() == attentions.shape[-1]:  # A′ is linear in A: its mean is the map's
        return graph.restrict(graph.aggregate(attentions.float().cpu(), head, kept).double(), idx)
    return mapping(graph.restrict(graph.aggregate(softmax.float().cpu(), head, kept).double(), idx))


def _frozen(t: torch.Tensor) -> np.ndarray:
    """A numpy view that refuses writes: an analysis is shared as is by every session of the app."""
    array = t.cpu().numpy()
    array.setflags(write=False)
    return array


def _f32(t: torch.Tensor | None) -> np.ndarray | None:
    """``t`` in float32 as :func:`_frozen` gives it; None stays None."""
    return None if t is None else _frozen(t.float())
