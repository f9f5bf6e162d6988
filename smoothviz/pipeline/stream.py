"""The analysis of a long sentence, one layer at a time as the forward pass produces it.

Every layer's attention ``[h, N, N]`` is read once, in the attention function's per-layer
callback (:func:`smoothviz.model.capture.run`'s ``on_layer``), and let go: a 30-layer, 9-head model
at 2,048 tokens would otherwise hold 4.5 GB of probabilities before any metric is computed.
What is kept, per layer: the head-mean graph S ``[n, n]`` (float32: the graph views and the
Dirichlet energy read it), its λ₂ and Fiedler vector, and the per-head numbers of the atlas and
the metrics (entropy, distance from uniform, attention to the first token, each token's received
share, Shi's λ, and with ``heads`` each head's λ₂ and Dovonon verdict). The rollout product is
carried from layer to layer (one ``[n, n]`` matrix). Long-input specifics, each SmoothViz's own
choice for speed, never a different formula:

* λ₂, its vector and the rollout's σ₂/σ₁ come from ARPACK's Lanczos (only the two extreme
  eigen/singular pairs, O(n²) per step) instead of full O(n³) decompositions
  (:func:`smoothviz.science.graph.second_pair`, :func:`smoothviz.science.graph.top_singular_ratio`);
* a layer's full Laplacian spectrum and a state's token similarity are computed when a view asks
  for that layer, and cached (:class:`PerLayer`);
* the graph S is stored in float32 (the metrics read it back in float64), so the Dirichlet
  energy differs from the short-sentence path by float32 rounding (≈1e-7 relative);
* the per-head numbers (entropy, distance from uniform, received share) are reduced one head at a
  time: an elementwise temporary of every head at 8,192 tokens is 2.4 GB;
* above :data:`ROLLOUT_UP_TO` kept tokens the rollout ratio is not computed (null, with a note):
  carrying R_l = Â_l R_{l−1} is one dense n×n product per layer, O(n³) where the forward pass
  grows as n² — at 2,048 tokens on SmolLM2's shape already 5.5 s of a 32 s analysis against an
  11 s forward pass, at 4,096 eight times that, more than the forward pass itself — and no
  iterative solver avoids forming the product without keeping every layer's directed graph. (The AᵀA symmetrisation is
  such a product too, per layer: the default (A + Aᵀ)/2 is what long inputs should use.)

Used from :data:`STREAM_FROM` kept tokens (512: from there it takes about half the batched
analysis's time on MiniLM, whose eigendecompositions of every layer dominate) on the models that
route attention through SmoothViz's attention function, for the baseline and every mitigation
except those that change A itself (AttnScale), which keep the batched path. Below
:data:`KEEP_HEADS_BELOW` kept tokens the forward pass also collects every head's attention, as the
batched path does, for the per-head views; from there it is not kept (a streamed Run's
``attentions`` is ``None``), and the page says which view it leaves out and why.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, fields

import numpy as np
import torch

from smoothviz.model import capture
from smoothviz.science import diagnostics, graph, linalg, metrics
from smoothviz.science.graph import GraphOptions
from smoothviz.science.linalg import all_threads, one_thread

STREAM_FROM = 512  # kept tokens from which a sentence is analysed layer by layer
KEEP_HEADS_BELOW = 1024  # below this many kept tokens a streamed analysis also keeps every head's attention
ROLLOUT_UP_TO = 2048  # kept tokens up to which the rollout product is carried (see the module docstring)
ROLLOUT_NOTE = (
    "The rollout ratio is not computed above {limit:,} tokens: its product Â_l ⋯ Â_1 is one n×n "
    "matrix product per layer (O(n³)), which at {n:,} tokens costs more than the forward pass itself "
    "(SmoothViz's own limit); rollout_ratio is null."
)


@dataclass(frozen=True)
class Streamed(capture.Trace):
    """A :class:`~smoothviz.model.capture.Trace` with what each layer left, and without ``attentions``
    from :data:`KEEP_HEADS_BELOW` kept tokens.

    ``parts``: ``graph [L, n, n]`` f32 (S), ``lambda2 [L]``, ``fiedler [L, n]``, ``rollout [L]``,
    ``entropy``/``uniform``/``shi_lambda`` ``[L, h]``/``[L, h]``/``[L]``, ``first [L, h, N]``,
    ``received [L, N]``, ``heads_signed`` bool, ``head_gap``/``smooths`` ``[L, h]`` or None.
    """

    parts: dict | None = None


class Forward:
    """A drop-in for :func:`capture.run` that streams (see the module docstring).

    Args:
        keep: the kept token indices; options: the graph options; heads: also every head's
            Dovonon verdict (with ``value_eigs [L, h, d_h]``), and with ``head_gaps`` its λ₂;
        post_ln: compute Shi's λ (the bound v is shown for post-LN blocks only).
    """

    def __init__(
        self,
        keep: list[int],
        options: GraphOptions,
        *,
        n_layers: int,
        heads: bool,
        head_gaps: bool,
        value_eigs: torch.Tensor | None,
        post_ln: bool,
    ):
        self.keep, self.options, self.n_layers, self.heads, self.head_gaps = keep, options, n_layers, heads, head_gaps
        self.value_eigs, self.post_ln = value_eigs, post_ln

    def using(self, value_eigs: torch.Tensor) -> Forward:
        """The same forward with other value spectra (a spectral mitigation's W_O)."""
        return Forward(
            self.keep,
            self.options,
            n_layers=self.n_layers,
            heads=self.heads,
            head_gaps=self.head_gaps,
            value_eigs=value_eigs,
            post_ln=self.post_ln,
        )

    def __call__(
        self, model, inputs: dict, intervention: capture.Intervention | None = None, special: list | None = None
    ) -> capture.Trace:
        iv = intervention or capture.Intervention()
        if iv.probs is not None or iv.attention is not None or not capture.uses_registry(model):
            return capture.run(model, inputs, intervention, special)  # A itself changed: the batched path
        layers = _Layers(self, iv.kept_heads)
        keep_attentions = len(self.keep) < KEEP_HEADS_BELOW  # the per-head views, as the batched path
        trace = capture.run(model, inputs, intervention, special, on_layer=layers, keep_attentions=keep_attentions)
        return Streamed(**{f.name: getattr(trace, f.name) for f in fields(capture.Trace)}, parts=layers.result())


class _Layers:
    """The per-layer callback: reads one layer's attention ``[1, h, N, N]`` and keeps its summary."""

    def __init__(self, fw: Forward, kept_heads: torch.Tensor | None):
        self.fw, self.idx = fw, torch.tensor(fw.keep)
        self.kept = None if kept_heads is None or fw.options.head is not None else torch.as_tensor(kept_heads)
        self.rows: list[dict] = []
        self.graphs: torch.Tensor | None = None
        self.R: torch.Tensor | None = None

    def __call__(self, layer: int, probs: torch.Tensor) -> None:
        directed = self._read(layer, probs)
        if directed is not None:
            self.rows[-1]["rollout"] = self._roll(directed)

    def _roll(self, directed: torch.Tensor) -> float:
        """R_l = Â_l R_{l−1} with Â = ½(A + I), in place on ``directed``; σ₂/σ₁ of R_l."""
        directed.diagonal().add_(1)
        directed.mul_(0.5)
        self.R = directed @ self.R
        return graph.top_singular_ratio(self.R)

    def _read(self, layer: int, probs: torch.Tensor) -> torch.Tensor | None:
        """Appends the layer's row; returns its directed graph for the rollout (None above
        :data:`ROLLOUT_UP_TO` tokens, where the row's rollout is NaN).

        The elementwise passes over every head and the rollout's dense product keep torch's
        threads (at 2,048 tokens they are most of the layer's time); torch's eigensolvers run on one
        thread each (:func:`~smoothviz.science.linalg.one_thread`), ARPACK's on one BLAS thread."""
        fw, n = self.fw, len(self.fw.keep)
        P = probs[0].float().cpu()  # [h, N, N]
        A = graph.restrict(P, self.idx)  # [h, n, n]
        kept = None if self.kept is None else self.kept[layer]
        directed = graph.restrict(graph.aggregate(P, fw.options.head, kept).double(), self.idx)  # [n, n]
        S = graph.symmetrize(directed, fw.options.symmetrize)
        rollout = n <= ROLLOUT_UP_TO
        if self.graphs is None:  # one block for every layer's graph, filled as the layers come
            self.graphs = torch.empty(fw.n_layers, n, n)
            self.R = torch.eye(n, dtype=torch.float64) if rollout else None
        self.graphs[layer] = S
        lam2, vec = graph.second_pair(S)
        per_head = lambda fn: torch.stack([fn(a) for a in A])  # noqa: E731  one head's temporaries at a time
        row = {
            "lambda2": lam2,
            "fiedler": vec,
            "rollout": float("nan"),  # set by _roll when computed
            "entropy": per_head(graph.row_entropy),
            "uniform": per_head(graph.distance_from_uniform),
            "first": P[..., 0].clone(),
            # heads summed in float32 (each entry to 9·2⁻²⁴), rows in float64: 5× faster than a float64
            # sum per head (0.47 → 0.09 s a layer at 4,096 tokens), within 1e-8 of it, stored as float32
            "received": P.sum(0).sum(0, dtype=torch.float64) / (P.shape[0] * P.shape[1]),
            "signed": bool(graph.has_negative(S)),
            "heads_signed": bool(graph.has_negative(A).any()),
        }
        with one_thread():
            row["shi_lambda"] = (
                graph.attention_contraction_lambda(A[None])[0] if fw.post_ln else torch.tensor(float("nan"))
            )
            if fw.heads and fw.head_gaps:
                row["head_gap"] = graph.spectral_gaps(graph.symmetrize(A, fw.options.symmetrize))
            if fw.heads:
                row["smooths"] = diagnostics.dovonon(A[None], fw.value_eigs[layer : layer + 1].to(torch.complex64))[0]
        self.rows.append(row)
        return directed if rollout else None

    def result(self) -> dict:
        stack = lambda key: torch.stack([torch.as_tensor(r[key]) for r in self.rows])  # noqa: E731
        out = {
            k: stack(k)
            for k in (
                "lambda2",
                "fiedler",
                "rollout",
                "entropy",
                "uniform",
                "first",
                "received",
                "signed",
                "shi_lambda",
            )
        }
        out["graph"] = self.graphs[: len(self.rows)]
        out["heads_signed"] = any(r["heads_signed"] for r in self.rows)
        for key in ("head_gap", "smooths"):
            out[key] = stack(key) if self.rows and key in self.rows[0] else None
        return out


class PerLayer:
    """A read-only stack ``[count, n, n]`` whose entries are computed when first read, and cached.

    ``kind``: ``"similarity"`` (token cosine similarity of each state of ``source [L+1, n, d]``)
    or ``"laplacian"`` (the normalized-Laplacian eigenvalues of each graph of ``source
    [L, n, n]``). Integer indexing computes one entry (the last :attr:`CACHE` are kept); any
    other indexing, or ``np.asarray``, computes them all.
    """

    CACHE = 4

    def __init__(self, source: np.ndarray, kind: str):
        self.source, self.kind = source, kind
        n = source.shape[1]
        self.shape = (source.shape[0], n, n) if kind == "similarity" else (source.shape[0], n)
        self.ndim, self.dtype = len(self.shape), np.dtype(np.float32)
        self._cache: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def _compute(self, i: int) -> np.ndarray:
        x = torch.tensor(np.asarray(self.source[i]), dtype=torch.float64)
        if self.kind == "similarity":
            out = metrics.similarity(x)
        else:
            with one_thread():
                out = linalg.eigvalsh(graph.normalized_laplacian(x))
        out = out.float().numpy()
        out.setflags(write=False)
        return out

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            i = int(key) + (len(self) if key < 0 else 0)
            if not 0 <= i < len(self):
                raise IndexError(f"index {key} is out of range for {len(self)} entries")
            with self._lock:
                hit = self._cache.get(i)
                if hit is not None:
                    self._cache.move_to_end(i)
                    return hit
            out = self._compute(i)
            with self._lock:
                self._cache[i] = out
                while len(self._cache) > self.CACHE:
                    self._cache.popitem(last=False)
            return out
        return np.asarray(self)[key]

    def __array__(self, dtype=None, copy=None):
        out = np.stack([self[i] for i in range(len(self))])
        return out if dtype is None else out.astype(dtype)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __getstate__(self):
        return {"source": self.source, "kind": self.kind}

    def __setstate__(self, state):
        self.__init__(state["source"], state["kind"])


LAYER_METRICS = (
    "spectral_gap",
    "rollout_ratio",
    "shi_v",
    "dm_ratio",
    "first_token_mass",
    "sink_rate",
    "heads_smoothing",
)


def evaluate(trace: Streamed, keep: list[int], ln_sigma: torch.Tensor, weight_norm, post_ln: bool) -> dict:
    """Every metric of :data:`smoothviz.science.metrics.METRICS` for a streamed trace: the state metrics one
    state at a time (one ``[n, n]`` Gram matrix at a time), the layer metrics from the per-layer
    summaries. Returns ``{name: [S] or [L]}`` as :func:`smoothviz.science.metrics.evaluate`, and the
    singular values ``[L+1, k]`` (σ/σ₁) and d_M per state under ``"_sv"``, ``"_dm"``."""
    p, idx = trace.parts, torch.tensor(keep)
    missing = {m.name for m in metrics.METRICS if m.per_layer} - set(LAYER_METRICS)
    if missing:  # a new layer metric needs its streamed form here
        raise NotImplementedError(f"no streamed form for the layer metric(s) {sorted(missing)}")
    G, L = p["graph"], p["graph"].shape[0]
    per_state, svs, dms = [], [], []
    with all_threads():  # each state's n×n Gram matrix: a dense product, twice as fast on two cores
        for s in range(L + 1):
            x = metrics.Inputs(H=trace.hidden[s : s + 1, idx].double(), graphs=G[max(s - 1, 0)][None].double())
            per_state.append(metrics.evaluate(x, states_only=True))
            svs.append(x.sv / x.sv[..., :1].clamp_min(1e-30))
            dms.append(metrics.dm_abs(x.H))
    values = {k: torch.cat([v[k] for v in per_state]) for k in per_state[0]}
    dm = torch.cat(dms)
    h = p["entropy"].shape[-1]
    smooths = p["smooths"]
    values.update(
        spectral_gap=p["lambda2"].double(),
        rollout_ratio=p["rollout"].double(),
        shi_v=diagnostics.shi_bound(p["shi_lambda"].double(), h, ln_sigma, weight_norm, post_ln),
        dm_ratio=metrics.ratio_of_dm(dm),
        first_token_mass=metrics.first_token_mass(p["first"]),
        sink_rate=metrics.sink_rate(p["first"]),
        heads_smoothing=metrics.heads_smoothing(smooths, trace.kept_heads, L),
    )
    values["_sv"] = torch.cat(svs)
    return values
