"""The over-smoothing metrics of docs/SCIENCE.md §2, batched over layers.

Every function takes a stack of token matrices ``H [..., n, d]`` (one per layer) and returns
one value per matrix. A value that is undefined for the input (one token has no pairs) is NaN;
the analysis turns NaN into ``None`` with a note, never into a fake number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import torch

from smoothviz.science import diagnostics, graph
from smoothviz.science.linalg import gram, singular_values

Tensor = torch.Tensor

NUMERICAL_RANK_TOL = 1e-3


SINK_EPS = 0.3  # Gu et al. 2024's threshold ε on a head's mean attention to the first token


def cosine_centred(H: Tensor) -> Tensor:
    """Mean cos(h_i − μ, h_j − μ), i ≠ j, μ the mean token: the cosine once the direction all
    tokens share is removed (a decoder's massive activations, Sun et al. 2024, put most of every
    state in a few dimensions common to all tokens, which makes the raw cosine high whatever the
    tokens say). About −1/(n−1) when the deviations are of one size and spread evenly; high
    when the tokens still agree beyond their common mean. NaN for one token."""
    return cosine_mean(H - H.mean(-2, keepdim=True))


def first_token_mass(first: Tensor) -> Tensor:
    """Mean over heads and query rows of the attention to the first token.

    Args:
        first: ``[..., L, h, n]``, each head's attention from every query row to token 0.
    """
    return first.double().mean((-1, -2))


def sink_rate(first: Tensor, eps: float = SINK_EPS) -> Tensor:
    """Share of heads whose mean attention to the first token exceeds ``eps`` (Gu et al. 2024,
    "When attention sink emerges in language models", their Sink_1^ε per layer)."""
    return (first.double().mean(-1) > eps).double().mean(-1)


def _unit_rows(H: Tensor) -> Tensor:
    return H / H.norm(dim=-1, keepdim=True).clamp_min(1e-30)


def similarity(H: Tensor, G: Tensor | None = None) -> Tensor:
    """Cosine similarity of every token pair, ``[..., n, n]`` (from ``G = gram(H)`` when given)."""
    G = gram(H) if G is None else G
    inv = torch.diagonal(G, dim1=-2, dim2=-1).sqrt().clamp_min(1e-30).reciprocal()
    return G * inv.unsqueeze(-1) * inv.unsqueeze(-2)


def cosine_mean(H: Tensor) -> Tensor:
    """TokenUni: mean of cos(h_i, h_j) over ordered pairs i ≠ j; NaN for one token."""
    n = H.shape[-2]
    U = _unit_rows(H)
    s = U.sum(dim=-2)  # Σ_i u_i, so Σ_ij u_i·u_j = ‖s‖²
    total = (s * s).sum(-1) - (U * U).sum((-1, -2))
    return total / (n * (n - 1)) if n > 1 else torch.full(H.shape[:-2], float("nan"), dtype=H.dtype)


def cls_cosine(H: Tensor) -> Tensor:
    """CLSUni: mean over all j (itself included) of cos(h_0, h_j)."""
    U = _unit_rows(H)
    return (U @ U[..., 0, :].unsqueeze(-1)).squeeze(-1).mean(-1)


def _split_mean(H: Tensor) -> tuple[Tensor, Tensor]:
    """‖P H‖_F and ‖(11ᵀ/n) H‖_F."""
    mean = H.mean(dim=-2, keepdim=True)
    high = (H - mean).norm(dim=(-2, -1))
    low = mean.norm(dim=(-2, -1)) * H.shape[-2] ** 0.5
    return high, low


def dm_abs(H: Tensor) -> Tensor:
    """Shi et al.'s d_M: distance to the smooth subspace, ‖P H‖_F."""
    return _split_mean(H)[0]


def dm_rel(H: Tensor) -> Tensor:
    """‖P H‖_F / ‖H‖_F; 0 means every token is the same vector."""
    return _split_mean(H)[0] / H.norm(dim=(-2, -1)).clamp_min(1e-30)


def hfc_lfc(H: Tensor) -> Tensor:
    """High- over low-frequency energy ‖P H‖_F / ‖(11ᵀ/n) H‖_F; inf when the mean token is 0."""
    high, low = _split_mean(H)
    return torch.where(low > 0, high / low.clamp_min(1e-300), torch.full_like(high, float("inf")))


def spectrum_metrics(sv: Tensor) -> dict[str, Tensor]:
    """Effective rank, numerical rank, skewness and median of σ/σ₁ from singular values ``[..., k]``."""
    top = sv[..., :1]
    rel = sv / top.clamp_min(1e-30)
    p = sv / sv.sum(-1, keepdim=True).clamp_min(1e-30)
    entropy = -(torch.where(p > 0, p * p.clamp_min(1e-300).log(), torch.zeros_like(p))).sum(-1)
    centred = rel - rel.mean(-1, keepdim=True)
    m2 = (centred**2).mean(-1)
    m3 = (centred**3).mean(-1)
    # scipy.stats.skew (bias=True) is NaN when every value is equal (m2 == 0).
    tiny = (torch.finfo(rel.dtype).eps * rel.abs().mean(-1)) ** 2
    skew = torch.where(m2 > tiny, m3 / m2.clamp_min(1e-300) ** 1.5, torch.full_like(m2, float("nan")))
    return {
        "effective_rank": entropy.exp(),
        "numerical_rank": (sv > top * NUMERICAL_RANK_TOL).sum(-1).to(sv.dtype),
        "sv_skewness": skew,
        "sv_median": rel.median(dim=-1).values if rel.shape[-1] % 2 else _even_median(rel),
    }


def _even_median(x: Tensor) -> Tensor:
    # torch.median returns the lower middle value; numpy/scipy average the two middle ones.
    k = x.shape[-1] // 2
    s = x.sort(dim=-1).values
    return (s[..., k - 1] + s[..., k]) / 2


def dirichlet(H: Tensor, S: Tensor, G: Tensor | None = None) -> Tensor:
    """½ Σ_ij S_ij ‖h_i − h_j‖² / Σ_i ‖h_i‖² for token matrices ``[..., n, d]`` and graphs
    ``[..., n, n]`` (from ``G = gram(H)`` when given)."""
    G = gram(H) if G is None else G
    sq = torch.diagonal(G, dim1=-2, dim2=-1)  # ‖h_i‖², [..., n]
    dist = sq.unsqueeze(-1) + sq.unsqueeze(-2) - 2 * G
    return 0.5 * (S * dist.clamp_min(0)).sum((-1, -2)) / sq.sum(-1).clamp_min(1e-30)


# --------------------------------------------------------------------------- the registry


@dataclass
class Inputs:
    """What the metrics of one run read. State metrics use ``H`` and ``graphs``; the others are
    per layer (``None`` for a fused output, which is a state without layers).

    ==============  ===================  ===================================================
    H               ``[S, n, d]`` f64    token states: S = L + 1 (H_0 … H_L), or 1 (fused)
    graphs          ``[S, n, n]``        the graph each state is measured on: layer l's S for
                                         H_l, layer 1's for H_0, the last layer's for a fusion
    directed        ``[L, n, n]``        each layer's aggregated directed graph (kept tokens)
    eigs            ``[L, n]``           its normalized-Laplacian eigenvalues, ascending
    heads           ``[L, h, n, n]`` f32 each head's attention over the kept tokens
    smooths         ``[L, h]`` or None   Dovonon verdicts (None when per-head work is skipped)
    ln_sigma        ``[L, k]``           σ_min of each LayerNorm's input over the kept tokens
    weight_norm     ``[L]``              Shi et al.'s s, the largest singular value of a block
    post_ln         bool                 the blocks are post-LN (Shi et al.'s bound applies)
    kept            ``[L, h]`` or None   heads the model used (False: ablated); verdicts of
                                         ablated heads are left out of ``heads_smoothing``
    first           ``[L, h, N]``        each head's attention from every query row to the
                                         sentence's first token (all N tokens, specials kept)
    ==============  ===================  ===================================================

    Every field but ``weight_norm`` may have leading dimensions before these (several sentences
    of one length, as corpus mode batches them); the values then have them too.
    ``gram``, ``sv`` and ``spectrum`` are computed once, on first use, for every metric.
    """

    H: Tensor
    graphs: Tensor
    directed: Tensor | None = None
    eigs: Tensor | None = None
    heads: Tensor | None = None
    smooths: Tensor | None = None
    ln_sigma: Tensor | None = None
    weight_norm: Tensor | None = None
    post_ln: bool = False
    kept: Tensor | None = None
    first: Tensor | None = None

    @cached_property
    def gram(self) -> Tensor:
        """``H Hᵀ`` ``[S, n, n]``."""
        return gram(self.H)

    @cached_property
    def sv(self) -> Tensor:
        """Singular values ``[S, k]``, largest first."""
        return singular_values(self.H, self.gram)

    @cached_property
    def spectrum(self) -> dict[str, Tensor]:
        """Effective and numerical rank, skewness and median of σ/σ₁ (see :func:`spectrum_metrics`)."""
        return spectrum_metrics(self.sv)


@dataclass(frozen=True)
class Metric:
    """One column of ``analyze --json``: how it is computed, drawn and explained.

    Attributes:
        name: the JSON key and CLI column.
        compute: ``Inputs -> [S]`` for a state metric, ``Inputs -> [L]`` for a layer metric;
            NaN where undefined (the row then holds ``None``).
        formula, collapse: the Theory table's cells (the formula; what collapse does to it).
        direction: ``"↑"`` or ``"↓"``, the way it moves as tokens become alike; ``""`` if neither.
        per_layer: defined between states, for layers 1…L (``None`` at layer 0 and for a fusion).
        log: drawn on a log axis when its values span two decades or more.
        integer: a count (``int`` in the JSON).
        curve: drawn among the over-depth curves (the others have a chart of their own).
        source: where the definition comes from (docs/SCIENCE.md's citation).
        graph: reads the layer's head-mean graph: ``"layer"`` (that layer's), ``"from"`` (every
            layer up to it, a product); null where a layer keeps no head (heads' ablate).
        headline: one of the metrics a run is summarised with (the trend lines, a mitigation's
            effect, the animation's frame titles, the report's caption).
        card: shown as a card above the per-layer views (the headline metrics and a few more).
    """

    name: str
    compute: Callable[[Inputs], Tensor]
    formula: str
    collapse: str
    direction: str = ""
    per_layer: bool = False
    log: bool = False
    integer: bool = False
    curve: bool = True
    source: str = ""
    graph: str = ""
    headline: bool = False
    card: bool = False

    @property
    def label(self) -> str:
        """Chart title: the name with its direction."""
        return f"{self.name} {self.direction}".strip()


def _dm_ratio(x: Inputs) -> Tensor:
    """d_M(H_l)/d_M(H_{l−1}); NaN (null, with a note) where d_M(H_{l−1}) = 0: one token, or every
    token exactly one vector, where the ratio is 0/0 and no contraction can be measured."""
    return ratio_of_dm(dm_abs(x.H))


def ratio_of_dm(dm: Tensor) -> Tensor:
    """``[..., S]`` d_M per state → ``[..., S − 1]`` d_M(H_l)/d_M(H_{l−1}), NaN where d_M(H_{l−1}) = 0."""
    prev = dm[..., :-1]
    return torch.where(prev > 0, dm[..., 1:] / prev.clamp_min(1e-300), torch.full_like(prev, float("nan")))


def _of_first(fn):
    def compute(x: Inputs) -> Tensor:
        if x.first is None:
            return torch.full((*x.H.shape[:-3], x.H.shape[-3] - 1), float("nan"), dtype=torch.float64)
        return fn(x.first)

    return compute


def _heads_smoothing(x: Inputs) -> Tensor:
    """The share of the heads the model used (``kept``; ablated ones left out) whose verdict is
    'smooths'; NaN for a layer that keeps no head."""
    if x.smooths is None:
        return torch.full((*x.H.shape[:-3], x.H.shape[-3] - 1), float("nan"), dtype=torch.float64)
    return heads_smoothing(x.smooths, x.kept, x.H.shape[-3] - 1)


def heads_smoothing(smooths: Tensor | None, kept: Tensor | None, n_layers: int) -> Tensor:
    """``smooths [..., L, h]`` → ``[..., L]``, the share of the kept heads that smooth (see
    :func:`_heads_smoothing`); NaN everywhere without verdicts."""
    if smooths is None:
        return torch.full((n_layers,), float("nan"), dtype=torch.float64)
    smooths = smooths.double()
    if kept is None:
        return smooths.mean(-1)
    kept = torch.as_tensor(kept, device=smooths.device).double()
    count = kept.sum(-1)
    return torch.where(count > 0, (smooths * kept).sum(-1) / count.clamp_min(1), torch.full_like(count, float("nan")))


# docs/SCIENCE.md §2 and §1, in the order of the JSON and the CLI table.
METRICS: list[Metric] = [
    Metric(
        "cosine_mean",
        lambda x: cosine_mean(x.H),
        "mean cos(h_i, h_j), i ≠ j",
        "→ 1",
        "↑",
        source="TokenUni, Shi et al. 2022",
        headline=True,
        card=True,
    ),
    Metric(
        "cosine_centred",
        lambda x: cosine_centred(x.H),
        "mean cos(h_i − μ, h_j − μ), μ = mean token",
        "high: tokens agree beyond their common mean",
        "",
        source="SmoothViz's own choice, beside cosine_mean for massive activations (Sun et al. 2024)",
    ),
    Metric(
        "cls_cosine", lambda x: cls_cosine(x.H), "mean_j cos(h_0, h_j)", "→ 1", "↑", source="CLSUni, Yan et al. 2022"
    ),
    Metric(
        "dm_rel",
        lambda x: dm_rel(x.H),
        "‖PH‖_F / ‖H‖_F, P = I − 𝟙𝟙ᵀ/n",
        "→ 0",
        "↓",
        log=True,
        source="Shi et al.'s d_M, Dong et al.'s res(X), normalised",
        headline=True,
        card=True,
    ),
    Metric("hfc_lfc", lambda x: hfc_lfc(x.H), "‖PH‖_F / ‖(𝟙𝟙ᵀ/n)H‖_F", "→ 0", "↓", log=True, source="Wang et al. 2022"),
    Metric(
        "effective_rank",
        lambda x: x.spectrum["effective_rank"],
        "exp(−Σ p_i ln p_i), p_i = σ_i/Σσ",
        "→ 1",
        "↓",
        source="Roy & Vetterli 2007",
        card=True,
    ),
    Metric(
        "numerical_rank",
        lambda x: x.spectrum["numerical_rank"],
        "#{σ_i > 10⁻³ σ₁}",
        "→ 1",
        "↓",
        integer=True,
        source="SmoothViz's own choice (the tolerance 10⁻³)",
    ),
    Metric(
        "sv_skewness", lambda x: x.spectrum["sv_skewness"], "skewness of σ_i/σ₁", "↑", "↑", source="Yan et al. 2022"
    ),
    Metric("sv_median", lambda x: x.spectrum["sv_median"], "median of σ_i/σ₁", "↓", "↓", source="Yan et al. 2022"),
    Metric(
        "dirichlet",
        lambda x: dirichlet(x.H, x.graphs, x.gram),
        "½ Σ S_ij ‖h_i − h_j‖² / Σ ‖h_i‖²",
        "→ 0",
        "↓",
        log=True,
        source="NeuTRENO's J(u), Nguyen et al. 2023",
        graph="layer",
    ),
    Metric(
        "spectral_gap",
        lambda x: graph.spectral_gap(x.eigs),
        "λ₂ of 𝓛",
        "large: strong mixing per layer",
        per_layer=True,
        source="Shi et al. 2022",
        graph="layer",
        card=True,
    ),
    Metric(
        "rollout_ratio",
        lambda x: graph.rollout_ratio(x.directed),
        "σ₂/σ₁ of Â_l ⋯ Â_1, Â = ½(A + I)",
        "→ 0",
        "↓",
        per_layer=True,
        curve=False,
        source="Abnar & Zuidema 2020",
        graph="from",
    ),
    Metric(
        "shi_v",
        lambda x: diagnostics.shi_v(x.heads, x.ln_sigma, x.weight_norm, x.post_ln),
        "(1 + s²)(1 + √λ·h·s)/(σ₁σ₂), post-LN blocks only",
        "v < 1 guarantees it",
        per_layer=True,
        curve=False,
        source="Shi et al. 2022",
    ),
    Metric(
        "dm_ratio",
        _dm_ratio,
        "d_M(H_l) / d_M(H_{l−1})",
        "< 1 at every layer",
        "↓",
        per_layer=True,
        curve=False,
        source="Shi et al. 2022",
    ),
    Metric(
        "first_token_mass",
        _of_first(first_token_mass),
        "mean over heads and rows i of A_i0",
        "an attention sink: → 1",
        per_layer=True,
        curve=False,
        source="attention to the first token, Xiao et al. 2024; Gu et al. 2024",
    ),
    Metric(
        "sink_rate",
        _of_first(sink_rate),
        f"share of heads with mean_i A_i0 > ε = {SINK_EPS}",
        "an attention sink: → 1",
        per_layer=True,
        curve=False,
        source="Gu et al. 2024's Sink_1^ε per layer",
    ),
    Metric(
        "heads_smoothing",
        _heads_smoothing,
        "share of the used (not ablated) heads whose Dovonon verdict is 'smooths'",
        "not a collapse measure: a property of the weights W_O·W_V and the attention",
        "↑",
        per_layer=True,
        curve=False,
        source="Dovonon, Bronstein & Kusner 2024 per head; the share over heads is SmoothViz's own choice",
    ),
]


HEADLINE = tuple(m.name for m in METRICS if m.headline)  # what a run is summarised with
CARDS = tuple(m.name for m in METRICS if m.card)  # the per-layer cards


def by_name() -> dict[str, Metric]:
    """The registry as ``{name: Metric}``."""
    return {m.name: m for m in METRICS}


def evaluate(x: Inputs, *, states_only: bool = False) -> dict[str, Tensor]:
    """Every registered metric of ``x``: ``name → [S]`` (state metrics) or ``[L]`` (layer metrics).

    Args:
        states_only: skip the layer metrics (a fused output has no layers).
    """
    return {m.name: m.compute(x) for m in METRICS if not (states_only and m.per_layer)}


def rows(values: dict[str, Tensor], n_states: int) -> list[dict]:
    """Per-state rows ``[{"layer": l, name: value, …}]`` for l = 0 … n_states − 1, in registry order.

    A layer metric's value ``i`` belongs to state ``i + 1``; undefined values (NaN, ±inf) and
    metrics without a value are ``None``; counts are ``int``.
    """
    out = []
    for state in range(n_states):
        row = {"layer": state}
        for m in METRICS:
            i = state - 1 if m.per_layer else state
            value = values.get(m.name)
            row[m.name] = None if value is None or i < 0 else _number(value[i], m.integer)
        out.append(row)
    return out


def _number(x, integer: bool) -> float | int | None:
    value = float(x)
    if not math.isfinite(value):
        return None
    return int(value) if integer else value


def names() -> list[str]:
    """The registered metrics' names, in JSON and table order."""
    return [m.name for m in METRICS]


def hidden_metrics(H: Tensor) -> dict[str, Tensor]:
    """Every registered metric that reads the token states alone (no graph, no layer pair), for
    ``H [..., n, d]`` (float64) — read from :data:`METRICS`, so a new state metric appears here too.

    Besides the metrics: ``sv`` (σ/σ₁), ``similarity`` and ``gram`` (for :func:`dirichlet`).
    """
    x = Inputs(H.double(), graphs=None)
    out = {m.name: m.compute(x) for m in METRICS if not (m.per_layer or m.graph)}
    out.update(sv=x.sv / x.sv[..., :1].clamp_min(1e-30), similarity=similarity(x.H, x.gram), gram=x.gram)
    return out
