"""The Lesson: the over-smoothing story in eight steps, each a preset, a prediction and an answer
computed from a real analysis (never written by hand), with the Theory section that explains it.

The page (app/pages/4_Lesson.py) draws :data:`STEPS`; this module never imports the UI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from smoothviz.words.claims import Claim, frozen_caveat, layer_list, render
from smoothviz.words.trends import collapsed_from

REFERENCE = (
    "The quick brown fox jumps over the lazy dog because it wanted to see what over-smoothing "
    "looks like in a transformer."
)
PURE_LAB = {"depth": 32, "residual": False, "mlp": False, "layernorm": "none", "value_spectrum": "random"}
POSITIVE_LAB = {"depth": 32, "residual": True, "mlp": False, "layernorm": "none", "value_spectrum": "positive"}


@dataclass(frozen=True)
class Step:
    """One step of the lesson.

    Attributes:
        title, intro: what the step is about (no numbers: those come from ``explain``).
        settings: keyword arguments of ``analyze`` (``text``, ``model``, ``lab``, ``mitigation``, ``params``).
        layer: the layer the main view opens at (``None``: the last).
        section: the main view's tab it opens (a key of :data:`smoothviz.outputs.views.SECTIONS`).
        view: the key of the chart drawn with the answer (a key of ``views.BY_KEY``), the one that shows
            the numbers the answer quotes; ``None``: the first view of ``section``.
        question, options: the prediction asked before anything is revealed.
        explain: ``analysis -> (the right option, lines)``; each line is ``(template, *claims)``, its
            ``{}`` filled with the rendered claims (:mod:`smoothviz.words.claims`), so every number shown is a
            claim a test checks against the analysis.
        anchor: the Theory page's section.
    """

    title: str
    intro: str
    settings: dict
    question: str
    options: tuple[str, ...]
    explain: Callable
    anchor: str
    layer: int | None = None
    section: str = "depth"
    view: str | None = None
    extra: dict = field(default_factory=dict)

    def answer(self, analysis) -> tuple[str, list[str]]:
        """The right option and the answer's sentences, with the measured numbers."""
        right, lines = self.explain(analysis)
        return right, [template.format(*map(render, claims)) for template, *claims in lines]

    def claims(self, analysis) -> list[Claim]:
        """Every claim the answer's sentences quote."""
        return [c for _, *claims in self.explain(analysis)[1] for c in claims]


def _v(a, metric: str, layer: int, run: str = "baseline", digits: int = 3) -> Claim:
    """The claim that ``metric`` of ``run`` at ``layer`` (−1: the fused output) is what is quoted."""
    r = a.runs()[run]
    value = r.fused_row[metric] if layer == -1 else r.rows[layer][metric]
    return Claim("value", run, metric, (layer,), (value, digits), "read from the rows")


def word_splits(text: str, tokens: list, special: list) -> list[tuple[str, tuple[str, ...]]] | None:
    """Each space-separated word of ``text`` that became several tokens, with its tokens; ``None`` when
    the tokens cannot be matched to the words by their characters (an unknown token, a cased vocabulary)."""
    plain = [t for t, s in zip(tokens, special) if not s]
    out, i = [], 0
    for word in text.split():
        taken, length = [], 0
        while length < len(word) and i < len(plain):
            piece = plain[i].removeprefix("##")
            taken.append(plain[i])
            length += len(piece)
            i += 1
        if length != len(word):
            return None
        if len(taken) > 1:
            out.append((word, tuple(taken)))
    return out if i == len(plain) else None


def _tokens(a):
    n, words = len(a.tokens), len(REFERENCE.split())
    right = "more" if n > words else "fewer" if n < words else "the same"
    specials = tuple(t for t, s in zip(a.tokens, a.special) if s)
    splits = word_splits(REFERENCE, a.tokens, a.special) or []
    return right, [("{}", Claim("tokens", "", values=(words, specials, tuple(splits)), rule="tokens matched to words"))]


def _gap(a):
    gaps = a.baseline.layer_eigs[:, 1]
    L = a.n_layers
    right = "larger" if gaps[-1] > gaps[0] else "smaller"
    return right, [
        (
            "Spectral gap λ₂ of the head-mean attention graph: layer 1 {}, layer " + str(L) + " {}.",
            _v(a, "spectral_gap", 1),
            _v(a, "spectral_gap", L),
        ),
        ("A larger λ₂ means one attention step mixes the tokens more strongly.",),
    ]


def _default_depth(a):
    cos = a.baseline.metric("cosine_mean")
    L, n = a.n_layers, len(a.keep)
    falls = [l for l in range(1, L + 1) if cos[l] < cos[l - 1]]
    right = "higher" if cos[-1] > cos[0] else "lower"
    rank = a.baseline.metric("numerical_rank")
    full = set(rank) == {min(n, a.baseline.hidden.shape[-1])}
    ranks = Claim("constant", "baseline", "numerical_rank", tuple(range(L + 1)), (rank[0],), "rank at each layer")
    lines = [
        ("cosine_mean: layer 0 {}, layer " + str(L) + " {}.", _v(a, "cosine_mean", 0), _v(a, "cosine_mean", L)),
        ("It falls at " + layer_list(falls) + ": the rise is not steady." if falls else "It rises at every layer.",),
    ]
    said = (
        "But how much? dm_rel (the tokens' relative distance from all being one vector; 0 would be a collapse) "
        "only falls from {} to {}"
    )
    if full:
        lines.append(
            (
                said + ", and the numerical rank stays full ({}): mild smoothing, not a collapse.",
                _v(a, "dm_rel", 0),
                _v(a, "dm_rel", L),
                ranks,
            )
        )
    else:
        lines.append(
            (
                said + ", and the numerical rank goes from {} to {}.",
                _v(a, "dm_rel", 0),
                _v(a, "dm_rel", L),
                _v(a, "numerical_rank", 0, digits=0),
                _v(a, "numerical_rank", L, digits=0),
            )
        )
    return right, lines


def _pure(a):
    dm = a.baseline.metric("dm_rel")
    L = a.n_layers
    last = dm[-1]
    right = "below 0.01" if last < 0.01 else "between 0.01 and 0.5" if last < 0.5 else "above 0.5"
    lines = [
        (
            "dm_rel (distance to 'every token the same vector', relative): layer 0 {}, layer " + str(L) + " {}.",
            _v(a, "dm_rel", 0),
            _v(a, "dm_rel", L),
        )
    ]
    collapsed = collapsed_from(a.baseline, len(a.keep))
    early = next((l for l in range(1, L + 1) if dm[l] < 0.01), None)
    if early is not None:
        lines.append(
            (
                f"It has all but collapsed by layer {early}: dm_rel {{}} there, cosine_mean {{}}.",
                _v(a, "dm_rel", early),
                _v(a, "cosine_mean", early, digits=5),
            )
        )
    if collapsed is not None:
        lines.append(
            (
                f"From layer {collapsed} on dm_rel stays below 1e-5: every token is the same vector up to "
                "float32 rounding.",
                Claim("collapse", "baseline", "dm_rel", (collapsed,), (1e-5,), "dm_rel"),
            )
        )
    lines.append(
        ("With no residual, MLP or LayerNorm, only attention acts, and its products converge (Dong et al. 2021).",)
    )
    return right, lines


def _spectrum(a):
    L = a.n_layers
    base, mit = a.baseline.metric("dm_rel")[-1], a.mitigated.metric("dm_rel")[-1]
    right = "higher" if mit > base else "lower"

    def share(run):
        return Claim(
            "constant",
            run,
            "heads_smoothing",
            tuple(range(1, L + 1)),
            (a.runs()[run].rows[1]["heads_smoothing"],),
            "Dovonon verdicts",
        )

    return right, [
        (
            "dm_rel at layer " + str(L) + ": positive value spectrum {}, clip-negative {}.",
            _v(a, "dm_rel", L),
            _v(a, "dm_rel", L, "mitigated"),
        ),
        (
            "Why: with the positive spectrum every head is low-pass ({}): each head's dominant "
            "eigenvalue pairs with attention's constant eigenvector, so each layer pulls the tokens towards "
            "one vector. With clip-negative no head is ({}), so depth no longer drives them "
            "together (Dovonon et al. 2024).",
            share("baseline"),
            share("mitigated"),
        ),
    ]


def _neutreno(a):
    layer = min(6, a.n_layers)
    base, mit = a.baseline.rows[layer]["cosine_mean"], a.mitigated.rows[layer]["cosine_mean"]
    right = "down" if mit < base else "up"
    return right, [
        (
            f"cosine_mean at layer {layer}: baseline {{}}, NeuTRENO (λ = 0.4) {{}}.",
            _v(a, "cosine_mean", layer),
            _v(a, "cosine_mean", layer, "mitigated"),
        ),
        (
            "Why: each layer is pulled back towards the value vectors the first layer computes from the "
            "embeddings (layer 0), where the tokens are far less alike (cosine_mean {} at layer 0).",
            _v(a, "cosine_mean", 0),
        ),
    ]


def _fusion(a):
    L = a.n_layers
    last, fused = a.baseline.rows[-1]["cosine_mean"], a.mitigated.fused_row["cosine_mean"]
    right = "lower" if fused < last else "higher"
    layers = list(range(1, L + 1)) if a.mitigation["params"].get("layers") == "all" else None
    lines = [
        (
            "cosine_mean: last layer {}, fused output (the mean of layers 1–" + str(L) + ") {}.",
            _v(a, "cosine_mean", L),
            _v(a, "cosine_mean", -1, "mitigated"),
        )
    ]
    if layers:
        lines.append(
            (
                "Why: the fusion averages in the earlier layers, whose tokens are less alike (cosine_mean "
                + ", ".join(f"{{}} at layer {l}" for l in layers)
                + ").",
                *[_v(a, "cosine_mean", l) for l in layers],
            )
        )
    return right, lines


SINK_SENTENCE = "The old lighthouse keeper counted seven ships before the storm."


def _sink(a):
    """Gemma 3 270M's attention to its first token (<bos>), from the analysis's own numbers (as claims)."""
    from smoothviz.science.sinks import uniform_share

    mass = a.baseline.metric("first_token_mass")
    L, n = a.n_layers, len(a.tokens)
    uniform = uniform_share(n, a.causal)
    right = (
        "more than half"
        if mass[-1] > 0.5
        else "about its uniform share"
        if mass[-1] < 2 * uniform
        else "more than its uniform share, less than half"
    )
    top = max(range(1, L + 1), key=lambda l: mass[l])
    first = a.tokens[0]
    return right, [
        (
            f"At layer {L}, {{}} of all attention goes to the first token `{first}` (uniform attention over the "
            f"visible tokens would give it {uniform:.2f} of {n} tokens); sink_rate {{}}: the share of the last "
            "layer's heads that send it more than 0.3 on average.",
            _v(a, "first_token_mass", L, digits=2),
            _v(a, "sink_rate", L, digits=2),
        ),
        (
            f"The most at layer {top}: {{}}. The token carries no meaning of its own: a head that has nothing to "
            "look for in this sentence parks its attention there, since softmax must put it somewhere (an "
            "attention sink, Xiao et al. 2024; Gu et al. 2024).",
            _v(a, "first_token_mass", top, digits=2),
        ),
        (
            f"So a high attention weight is not importance, and the head-mean graph's edges to `{first}` say "
            "little about the words.",
        ),
    ]


STEPS: list[Step] = [
    Step(
        "1 · The sentence and its tokens",
        "The model never sees words: it sees tokens, and adds special ones of its own.",
        {"text": REFERENCE, "model": "default", "mitigation": "none"},
        f"This sentence has {len(REFERENCE.split())} words. Will the model see more tokens, fewer, or the same number?",
        ("more", "fewer", "the same"),
        _tokens,
        "attention-is-a-graph",
        layer=1,
        section="layer",
    ),
    Step(
        "2 · Attention as a graph",
        "Each layer's attention is a weighted graph between tokens; its spectral gap λ₂ says how strongly "
        "one step mixes them.",
        {"text": REFERENCE, "model": "default", "mitigation": "none"},
        "Will the spectral gap λ₂ be larger or smaller at the last layer than at layer 1?",
        ("larger", "smaller"),
        _gap,
        "attention-is-a-graph",
        section="layer",
        view="curves",
    ),
    Step(
        "3 · Smoothing over depth, in a trained model",
        "Over-smoothing: token representations become alike layer after layer. Here is what a trained "
        "model really does.",
        {"text": REFERENCE, "model": "default", "mitigation": "none"},
        "Will the mean cosine similarity between tokens be higher or lower at the last layer than at the embeddings?",
        ("higher", "lower"),
        _default_depth,
        "the-metrics",
    ),
    Step(
        "4 · Pure attention collapses",
        "The lab model: 32 layers of attention alone (no residual, no MLP, no LayerNorm).",
        {"text": REFERENCE, "model": "lab", "lab": PURE_LAB, "mitigation": "none"},
        "At layer 32, how far will the tokens be from all being the same vector (dm_rel)?",
        ("above 0.5", "between 0.01 and 0.5", "below 0.01"),
        _pure,
        "why-stacking-smooths",
    ),
    Step(
        "5 · Why: the value spectrum",
        "Dovonon et al.: the sign of W_O·W_V's eigenvalues decides whether a head smooths or sharpens. "
        "Here the lab's value spectrum is positive, and the mitigation replaces it with a negative one.",
        {
            "text": REFERENCE,
            "model": "lab",
            "lab": POSITIVE_LAB,
            "mitigation": "spectral",
            "params": {"mode": "clip-negative"},
        },
        "With a negative value spectrum, will dm_rel at the last layer be higher or lower than with the positive one?",
        ("higher", "lower"),
        _spectrum,
        "the-dovonon-diagnostic",
        section="layer",
        view="curves",
    ),
    Step(
        "6 · A mitigation against the baseline",
        "NeuTRENO adds λ(V₀ − Vₗ) to each attention output: a pull back towards the first layer's values. "
        + frozen_caveat("neutreno"),
        {"text": REFERENCE, "model": "default", "mitigation": "neutreno", "params": {"lambda": 0.4}},
        "Will cosine similarity at layer 6 go up or down under NeuTRENO?",
        ("up", "down"),
        _neutreno,
        "what-each-mitigation-changes",
        layer=6,
        section="layer",
        view="curves",
    ),
    Step(
        "7 · Fusion vs no fusion",
        "A fusion reads out a mix of every layer instead of the last one alone.",
        {"text": REFERENCE, "model": "default", "mitigation": "fusion-mean", "params": {"layers": "all"}},
        "Will the fused output's mean cosine similarity be lower or higher than the last layer's?",
        ("lower", "higher"),
        _fusion,
        "what-each-mitigation-changes",
    ),
    Step(
        "8 · Why does everything attend to the first token?",
        "A real decoder, Gemma 3 270M (embedded, offline). Every row of a causal model sees the first token, "
        "and many heads of trained models send it most of their attention.",
        {"text": SINK_SENTENCE, "model": "gemma-3-270m", "mitigation": "none"},
        "At Gemma's last layer, how much of all attention goes to the first token `<bos>`?",
        ("about its uniform share", "more than its uniform share, less than half", "more than half"),
        _sink,
        "attention-sinks",
        section="atlas",
        view="sinks",
    ),
]
