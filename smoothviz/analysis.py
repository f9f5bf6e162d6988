"""``analyze()``: the one entry point the app, the CLI and notebooks call.

sentence → tokens → Trace (baseline, and mitigated when asked) → graphs and metrics → Analysis.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from . import capture, graph, metrics
from .graph import GraphOptions
from .handles import Handle, get_handle
from .mitigations import Mitigation, make
from .projection import project
from .settings import compute_slots

PROJECTIONS = ("none", "pca", "umap")


class AnalysisError(ValueError):
    """Input the analysis cannot use (empty text, bad option); the message says what to do."""


@dataclass(frozen=True)
class Run:
    """The analysis of one forward pass (baseline or mitigated), as numpy arrays.

    Shapes (L layers, h heads, n tokens kept by the graph options, d width, k = min(n, d)):

    ================  ================  =====================================================
    rows              list of dicts     per layer 0…L (and ``"fused"``): the §2 metrics
    hidden            [L+1, N, d]       every token's state (all N tokens, special ones too)
    attentions        [L, h, N, N]      the attention the model used
    similarity        [L+1, n, n]       token cosine similarity (kept tokens)
    sv                [L+1, k]          singular values / σ₁
    layer_graph       [L, n, n]         the symmetrised, aggregated graph S of each layer
    layer_eigs        [L, n]            its normalized-Laplacian eigenvalues (ascending)
    fiedler           [L, n]            its Fiedler vector (largest entry positive)
    head_gap          [L, h]            per-head spectral gap λ₂ (None if heads=False)
    head_entropy      [L, h]            mean row entropy of attention (nats)
    head_uniform      [L, h]            ‖A − 11ᵀ/n‖_F
    rollout           [L]               σ₂/σ₁ of the attention rollout up to each layer
    shi_v             [L]               Shi et al.'s bound v (NaN without two LayerNorms)
    dm_ratio          [L]               measured d_M(H_l)/d_M(H_{l−1})
    value_eigs        [L, h, d_h]       eigenvalues of W_O^h W_V^h (complex)
    smooths           [L, h]            Dovonon verdict: True = low-pass (None if heads=False)
    fused             [n, d'] or None   the fused output of a fusion mitigation
    ================  ================  =====================================================
    """

    rows: list
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
    rollout: np.ndarray
    shi_v: np.ndarray
    dm_ratio: np.ndarray
    value_eigs: np.ndarray
    smooths: np.ndarray
    fused: np.ndarray | None = None

    def metric(self, name: str, include_fused: bool = False) -> list:
        """One metric over depth (``None`` where undefined)."""
        return [r[name] for r in self.rows if include_fused or r["layer"] != "fused"]

    def layer_verdicts(self) -> list[str]:
        """Per layer: "smooths" when most heads are low-pass, else "sharpens"."""
        if self.smooths is None:
            return []
        return ["smooths" if row.mean() >= 0.5 else "sharpens" for row in self.smooths]


@dataclass(frozen=True)
class Analysis:
    """One sentence through one model, baseline beside an optional mitigation.

    Attributes:
        tokens: every token (special ones included); ``special`` marks [CLS]/[SEP]/….
        keep: indices of the tokens the graphs and metrics use (all, or without specials).
        projection: ``[runs, L+1, N_keep, 2]`` joint coordinates, or ``None``.
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
    projection_method: str = "none"
    notes: list = field(default_factory=list)
    lab: dict | None = None

    @property
    def n_layers(self) -> int:
        return self.baseline.attentions.shape[0]

    @property
    def heads(self) -> int:
        return self.baseline.attentions.shape[1]

    @property
    def labels(self) -> list[str]:
        """Display labels of the kept tokens."""
        return [_display(self.tokens[i]) for i in self.keep]

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays of both runs and the projection (what a cache of it costs)."""
        arrays = [v for r in self.runs().values() for v in vars(r).values() if isinstance(v, np.ndarray)]
        return sum(a.nbytes for a in arrays) + (0 if self.projection is None else self.projection.nbytes)

    def runs(self) -> dict[str, Run]:
        return {"baseline": self.baseline, **({"mitigated": self.mitigated} if self.mitigated else {})}

    def graph(self, layer: int, head: int | None = None, run: str = "baseline", top_k: int | None = None,
              directed: bool = False):
        """A networkx graph of tokens for layer ``layer`` (1…L) and one head or the aggregate."""
        r = self.runs()[run]
        if not 1 <= layer <= self.n_layers:
            raise AnalysisError(f"layer must be in 1..{self.n_layers}, got {layer}")
        A = graph.restrict(torch.tensor(r.attentions[layer - 1], dtype=torch.float64), torch.tensor(self.keep))
        A = graph.aggregate(A.unsqueeze(0), head if head is not None else self.options.head)[0]
        W = A if directed else graph.symmetrize(A, self.options.symmetrize)
        return graph.to_networkx(W.numpy(), self.labels, top_k=top_k, directed=directed)

    def to_json(self) -> dict:
        """The CLI's ``--json`` object."""
        out = {"model": self.model, "device": self.device, "tokens": self.tokens,
               "special_tokens": [t for t, s in zip(self.tokens, self.special) if s],
               "causal": self.causal, "notes": self.notes,
               "graph": {"head": self.options.head if self.options.head is not None else "mean",
                         "symmetrize": self.options.symmetrize,
                         "exclude_special": self.options.exclude_special},
               "baseline": {"layers": self.baseline.rows}}
        if self.lab is not None:
            out["lab"] = self.lab
        if self.mitigated is not None:
            out["mitigation"] = self.mitigation
            out["mitigated"] = {"layers": self.mitigated.rows}
        return out


def _display(token: str) -> str:
    return token.replace("Ġ", "·").replace("▁", "·").replace("Ċ", "⏎") or "∅"


# --------------------------------------------------------------------------- the entry point

def analyze(text: str, *, model: str = "default", device: str = "auto", lab: dict | None = None,
            mitigation: str | Mitigation | None = None, params: dict | None = None,
            head: int | None = None, symmetrize: str = "sym", exclude_special: bool = False,
            projection: str = "none", normalize_projection: bool = True,
            max_tokens: int | None = None, heads: bool = True) -> Analysis:
    """Analyse one sentence: baseline, and beside it ``mitigation`` when given.

    Args:
        text: the sentence (truncated to the model's maximum, with a note).
        model: ``"default"`` (embedded all-MiniLM-L6-v2), ``"lab"``, a Hugging Face id or a directory.
        device: ``auto`` (CUDA, then MPS, then CPU), ``cpu`` or ``cuda``.
        lab: the lab model's settings (``KEY: VALUE``) when ``model == "lab"``.
        mitigation, params: a name from ``smoothviz.mitigations.NAMES`` and its parameters.
        head, symmetrize, exclude_special: graph options (RESEARCH §1).
        projection: ``none``, ``pca`` or ``umap``.
        max_tokens: a cap below the model's own maximum (public-demo mode).
        heads: also compute every head's Laplacian spectrum and Dovonon verdict (the costly
            part for long sentences: one eigendecomposition per head).

    Raises:
        AnalysisError, ModelError, MitigationError: with a message meant for the user.
    """
    if not isinstance(text, str) or not text.strip():
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
    with compute_slots:  # at most SMOOTHVIZ_MAX_CONCURRENT analyses at once; the rest queue
        return _guarded(text, model, device, lab, mitigation, options, projection, normalize_projection,
                        max_tokens, heads, notes, head)


def _guarded(text, model, device, lab, mitigation, options, projection, normalize_projection, max_tokens,
             heads, notes, head):
    handle = get_handle(model, device, lab)
    if head is not None and head >= handle.heads:
        raise AnalysisError(f"head {head} does not exist: this model has heads 0..{handle.heads - 1}")
    try:
        return _analyze(handle, text, mitigation, options, projection, normalize_projection, max_tokens, heads, notes)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        notes.append("The GPU ran out of memory; this result was computed on the CPU.")
        handle = get_handle(model, "cpu", lab)
        return _analyze(handle, text, mitigation, options, projection, normalize_projection, max_tokens, heads, notes)


def _analyze(handle: Handle, text, mitigation, options, projection, normalize_projection, max_tokens, heads, notes):
    inputs, tokens, special = handle.encode(text, max_tokens, notes)
    return analyze_encoded(handle, inputs, tokens, special, mitigation, options, projection=projection,
                           normalize_projection=normalize_projection, heads=heads, notes=notes)


def analyze_encoded(handle: Handle, inputs: dict, tokens: list, special: list, mitigation: Mitigation | None,
                    options: GraphOptions, *, projection: str = "none", normalize_projection: bool = True,
                    heads: bool = True, notes: list | None = None, forward=capture.run) -> Analysis:
    """Everything :func:`analyze` does once :meth:`Handle.encode` has tokenised the sentence.

    Args:
        inputs, tokens, special: what :meth:`Handle.encode` returned.
        forward: ``(model, inputs, intervention=None) -> Trace``, how the model is run (on the
            baseline model, or the mitigated one with its intervention). :mod:`smoothviz.corpus`
            passes one that hands back this sentence's slice of a padded batch, so a corpus row
            and ``analyze`` share every step after the forward pass.
    """
    notes = [] if notes is None else notes
    if all(special):
        raise AnalysisError("the text gives no tokens for this model (only special tokens): type some words")
    keep = [i for i, s in enumerate(special) if not (options.exclude_special and s)]
    if not keep:
        raise AnalysisError("no tokens are left once special tokens are excluded: type some text")
    if len(keep) == 1:
        notes.append("Only one token: pairwise metrics (cosine_mean, spectral gap, skewness) are undefined.")
    if handle.causal:
        notes.append("Causal (decoder) attention: every attention row is lower-triangular.")

    base_trace = _finite(forward(handle.model, inputs), "baseline")
    ctx = handle.context()
    baseline = _summarise(base_trace, keep, options, handle, handle.value_eigs(), heads)
    mitigated, described = None, None
    if mitigation is not None:
        described = {"name": mitigation.name, "params": mitigation.params()}
        alt = handle.for_mitigation(mitigation)
        if alt is not handle:  # the lab's value-spectrum switch
            trace, value_eigs = _finite(forward(alt.model, inputs), mitigation.name), alt.value_eigs()
            described["lab_value_spectrum"] = alt.lab["value_spectrum"]
        else:
            iv = mitigation.intervention(ctx)
            trace = _finite(forward(handle.model, inputs, iv), mitigation.name) if iv is not None else base_trace
            value_eigs = handle.value_eigs(mitigation.out_weights(ctx))
        fused = mitigation.fuse(trace.hidden.double(), ctx)
        mitigated = _summarise(trace, keep, options, handle, value_eigs, heads, fused)
    coords, method = None, "none"
    if projection != "none":
        runs = [baseline.hidden[:, keep]] + ([mitigated.hidden[:, keep]] if mitigated else [])
        coords, method, note = project(runs, projection, normalize_projection)
        coords.setflags(write=False)
        if note:
            notes.append(note)
    return Analysis(model=handle.name, device=handle.device, tokens=tokens, special=special, keep=keep,
                    causal=handle.causal, options=options, baseline=baseline, mitigated=mitigated,
                    mitigation=described, projection=coords, projection_method=method, notes=notes,
                    lab=handle.lab)


def _finite(trace: capture.Trace, run: str) -> capture.Trace:
    """Refuse states that overflowed (a deep lab without LayerNorm, an extreme parameter)."""
    bad = ~torch.isfinite(trace.hidden).flatten(1).all(1)
    if bad.any():
        layer = int(bad.nonzero()[0])
        raise AnalysisError(f"the {run} run overflowed (inf/NaN) at layer {layer}: try fewer layers, "
                            "a LayerNorm, a lower temperature or a milder parameter")
    return trace


def _summarise(trace: capture.Trace, keep: list[int], options: GraphOptions, handle: Handle,
               value_eigs: torch.Tensor, heads: bool, fused: torch.Tensor | None = None) -> Run:
    """Graphs and metrics of one trace, batched over layers and heads.

    Per-state metrics and the per-layer graph are computed in float64 (small); per-head work
    on ``[L, h, n, n]`` stays in float32, where it is memory- and time-bound.
    """
    idx = torch.tensor(keep)
    H = trace.hidden[:, idx].double().cpu()                 # [L+1, n, d]
    A = graph.restrict(trace.attentions.float().cpu(), idx)  # [L, h, n, n]
    L, h = A.shape[0], A.shape[1]

    hm = metrics.hidden_metrics(H)
    directed = graph.aggregate(A, options.head).double()    # [L, n, n]
    S = graph.symmetrize(directed, options.symmetrize)
    eigs, vecs = graph.laplacian_spectrum(S)
    gap = graph.spectral_gap(eigs)
    dirichlet = metrics.dirichlet(H, torch.cat([S[:1], S]), hm["gram"])  # H_0 uses layer 1's graph
    rollout = graph.rollout_ratio(directed)
    dm = metrics.dm_abs(H)
    dm_ratio = dm[1:] / dm[:-1].clamp_min(1e-300)
    shi_v = _shi_v(A, trace.ln_sigma.double(), handle.weight_norm(), h)

    head_gap = smooths = None
    if heads:
        head_gap = _by_layer(lambda a: graph.spectral_gaps(graph.symmetrize(a, options.symmetrize)), A)
        smooths = _dovonon(A, value_eigs.to(torch.complex64))

    rows = [_row(layer, hm, layer, dirichlet) for layer in range(L + 1)]
    for layer in range(1, L + 1):
        rows[layer].update(spectral_gap=_num(gap[layer - 1]), rollout_ratio=_num(rollout[layer - 1]),
                           shi_v=_num(shi_v[layer - 1]), dm_ratio=_num(dm_ratio[layer - 1]))
    fused_np = None
    if fused is not None:
        F = fused[idx].double().cpu().unsqueeze(0)
        hf = metrics.hidden_metrics(F)
        rows.append(_row("fused", hf, 0, metrics.dirichlet(F, S[-1:], hf["gram"])))  # last layer's graph
        fused_np = _frozen(fused.float())
    f32 = lambda t: None if t is None else _frozen(t.float())  # noqa: E731
    return Run(rows=rows, hidden=f32(trace.hidden), attentions=f32(trace.attentions),
               similarity=f32(hm["similarity"]), sv=f32(hm["sv"]), layer_graph=f32(S),
               layer_eigs=f32(eigs), fiedler=f32(graph.fiedler(vecs)), head_gap=f32(head_gap),
               head_entropy=f32(_by_layer(graph.row_entropy, A)),
               head_uniform=f32(_by_layer(graph.distance_from_uniform, A)), rollout=f32(rollout),
               shi_v=f32(shi_v), dm_ratio=f32(dm_ratio), value_eigs=_frozen(value_eigs),
               smooths=None if smooths is None else _frozen(smooths), fused=fused_np)


def _by_layer(fn, A: torch.Tensor) -> torch.Tensor:
    """``fn`` on each layer's heads ``A[l]`` in turn, results stacked: the same numbers as ``fn(A)``.

    An elementwise temporary of every head at once is fresh memory (150 MB for BERT-base at
    512 tokens) whose page faults cost more than its arithmetic; one layer's (12 MB) reuses
    freed memory and stays in cache, 2–8× faster for a pass over every entry.
    """
    return torch.stack([fn(a) for a in A])


def _frozen(t: torch.Tensor) -> np.ndarray:
    """A numpy view that refuses writes: an analysis is shared as is by every session of the app."""
    array = t.cpu().numpy()
    array.setflags(write=False)
    return array


_STATE_METRICS = ("cosine_mean", "cls_cosine", "dm_rel", "hfc_lfc", "effective_rank",
                  "numerical_rank", "sv_skewness", "sv_median")


def _row(layer, hm: dict, i: int, dirichlet: torch.Tensor) -> dict:
    """One table row; graph-based entries are None until a layer's graph fills them."""
    row = {"layer": layer, **{name: _num(hm[name][i]) for name in _STATE_METRICS}}
    row["numerical_rank"] = int(row["numerical_rank"])
    row.update(dirichlet=_num(dirichlet[i]), spectral_gap=None, rollout_ratio=None, shi_v=None, dm_ratio=None)
    return row


def _num(x) -> float | None:
    value = float(x)
    return None if math.isnan(value) else (value if math.isfinite(value) else None)


def _shi_v(A: torch.Tensor, ln_sigma: torch.Tensor, weight_norm: torch.Tensor, heads: int) -> torch.Tensor:
    """v = (1 + s²)(1 + √λ·h·s)/(σ₁σ₂) per layer; NaN where the block has fewer than two LayerNorms."""
    lam = graph.attention_contraction_lambda(A).double().clamp_min(0)
    s = weight_norm.double()
    if ln_sigma.shape[1] < 2:
        return torch.full((A.shape[0],), float("nan"), dtype=torch.float64)
    s1, s2 = ln_sigma[:, 0], ln_sigma[:, 1]
    return (1 + s ** 2) * (1 + lam.sqrt() * heads * s) / (s1 * s2)


def _dovonon(A: torch.Tensor, value_eigs: torch.Tensor) -> torch.Tensor:
    """True where the dominant eigenvalue 1 + λ^A λ^H pairs λ^H with A's eigenvalue 1 (low-pass).

    A non-Perron pairing reaches at most 1 + r·max_j |λ^H_j| when every eigenvalue of A but its
    Perron 1 has modulus ≤ r; a head whose Perron pairing max_j |1 + λ^H_j| is at least that
    smooths whatever those eigenvalues are. :func:`graph.subdominant_bound` gives such an r in
    O(n²) (r ≤ 1 for a stochastic A), which settles most heads, and
    :func:`graph.deflated_radius` a sharper one for the rest (on MiniLM at 128 tokens: 36, then
    11 more of 72 heads). Only the heads left need A's spectrum (its diagonal when A is
    triangular, i.e. causal; otherwise one general eigendecomposition each, the costly part:
    bounds from A², A⁴… settle a few more heads, but their float64 products cost about what the
    eigendecompositions they save would). No modulus bound can settle a head that sharpens.

    Args:
        A: ``[L, h, n, n]``, rows summing to 1; value_eigs: ``[L, h, d_h]`` complex.
    """
    L, h = A.shape[:2]
    lam_h = value_eigs.to(torch.complex64).flatten(0, 1)                 # [L·h, d_h]
    perron_best = (1 + lam_h).abs().amax(-1).double()
    reach = lam_h.abs().amax(-1).double()
    flat = A.flatten(0, 1)
    # Every |λ^A| ≤ 1 for a stochastic head: a Perron pairing that reaches 1 + max|λ^H| wins (ties too).
    def settled(radius: torch.Tensor, heads) -> torch.Tensor:  # every non-Perron |λ^A| ≤ radius
        return 1 + radius.double() * reach[heads] <= perron_best[heads] * (1 - 1e-6)

    smooths = graph.is_stochastic(flat) & ((1 + reach - perron_best) <= 1e-6 * (1 + reach))
    smooths |= settled(_by_layer(graph.subdominant_bound, A).flatten(), slice(None))
    todo = (~smooths).nonzero().squeeze(-1)
    triangular = torch.zeros_like(smooths)
    triangular[todo] = _triangular(flat[todo])
    general = todo[~triangular[todo]]  # a triangular head's spectrum is its diagonal: cheaper than any bound
    if general.numel():
        smooths[general] = settled(graph.deflated_radius(flat[general]), general)
        todo = (~smooths).nonzero().squeeze(-1)
    if todo.numel():
        attn_eigs = _eigenvalues(flat[todo], triangular[todo])            # [k, n]
        lam = lam_h[todo]
        update = (1 + attn_eigs.unsqueeze(-1) * lam.unsqueeze(-2)).abs()  # [k, n, d_h]
        best = update.flatten(-2).argmax(-1) // lam.shape[-1]             # index into A's eigenvalues
        chosen = torch.gather(attn_eigs, -1, best.unsqueeze(-1)).squeeze(-1)
        perron = (attn_eigs - 1).abs().argmin(-1)
        smooths[todo] = (best == perron) | ((chosen - 1).abs() < 1e-5)
    return smooths.view(L, h)


def _eigenvalues(X: torch.Tensor, triangular: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of each matrix of ``X [k, n, n]`` (complex64): the diagonal where ``triangular``,
    LAPACK's general solver otherwise; from n = 128 in chunks over the CPU's threads (about 1.2×
    faster on two cores; below that, starting threads costs more than it saves)."""
    out = torch.diagonal(X, dim1=-2, dim2=-1).to(torch.complex64)
    full = (~triangular).nonzero().squeeze(-1)
    if full.numel():
        workers = torch.get_num_threads() if X.shape[-1] >= 128 else 1
        chunks = full.tensor_split(min(workers, full.numel()))
        with ThreadPoolExecutor(len(chunks)) as pool:
            out[full] = torch.cat(list(pool.map(lambda idx: _eigvals(X[idx]), chunks)))
    return out


def _triangular(X: torch.Tensor) -> torch.Tensor:
    """Per matrix of ``X [k, n, n]``: no entry above the diagonal (a causal head), by 16 at a time."""
    if not X.shape[0]:
        return torch.zeros(0, dtype=torch.bool)
    return torch.cat([~x.triu(1).ne(0).flatten(1).any(-1) for x in X.split(16)])


def _eigvals(X: torch.Tensor) -> torch.Tensor:
    try:
        return torch.linalg.eigvals(X).to(torch.complex64)
    except torch.linalg.LinAlgError:  # rare non-convergence in float32: retry in float64
        return torch.linalg.eigvals(X.double()).to(torch.complex64)
