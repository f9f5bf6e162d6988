"""The Lesson: the over-smoothing story in eight steps, each a preset, a prediction and an answer
computed from a real analysis (never written by hand), with the Theory section that explains it.

The page (app/pages/4_Lesson.py) draws :data:`STEPS`; this module never imports the UI.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlencode

from .views import SECTIONS

REFERENCE = ("The quick brown fox jumps over the lazy dog because it wanted to see what over-smoothing "
             "looks like in a transformer.")
PURE_LAB = {"depth": 32, "residual": False, "mlp": False, "layernorm": "none", "value_spectrum": "random"}
POSITIVE_LAB = {"depth": 32, "residual": True, "mlp": False, "layernorm": "none", "value_spectrum": "positive"}


@dataclass(frozen=True)
class Step:
    """One step of the lesson.

    Attributes:
        title, intro: what the step is about (no numbers: those come from ``answer``).
        settings: keyword arguments of ``analyze`` (``text``, ``model``, ``lab``, ``mitigation``, ``params``).
        layer: the layer the main view opens at (``None``: the last).
        section: the main view's tab it opens (a key of :data:`smoothviz.views.SECTIONS`).
        question, options: the prediction asked before anything is revealed.
        answer: ``analysis -> (the right option, [sentences with the measured numbers])``.
        anchor: the Theory page's section.
    """

    title: str
    intro: str
    settings: dict
    question: str
    options: tuple[str, ...]
    answer: Callable
    anchor: str
    layer: int | None = None
    section: str = "depth"
    extra: dict = field(default_factory=dict)

    def query(self) -> str:
        """The main page's query string that opens this step's preset (the widgets' URL keys)."""
        s = self.settings
        mit = s.get("mitigation") or "none"
        q = {"model": s.get("model", "default"), "text": s["text"], "mit": mit}
        q.update({f"{mit}_{k}".replace("-", "_"): v for k, v in (s.get("params") or {}).items()})
        q.update({f"lab_{k}": str(v).lower() if isinstance(v, bool) else v for k, v in (s.get("lab") or {}).items()})
        if self.layer is not None:
            q["layer"] = self.layer
        q["section"] = SECTIONS[self.section]
        return urlencode(q)


def _f(x: float) -> str:
    return f"{x:.3f}"


def _tokens(a):
    n, special = len(a.tokens), sum(a.special)
    words = len(REFERENCE.split())
    right = "more" if n > words else "fewer" if n < words else "the same"
    return right, [f"The sentence has {words} words separated by spaces; the model sees {n} tokens, {special} of "
                   f"them special ({', '.join(t for t, s in zip(a.tokens, a.special) if s)}).",
                   "Words the vocabulary lacks are split into pieces (marked ##): "
                   + (", ".join(t for t in a.tokens if t.startswith("##")) or "none here") + "."]


def _gap(a):
    gaps = a.baseline.layer_eigs[:, 1]
    L = a.n_layers
    right = "larger" if gaps[-1] > gaps[0] else "smaller"
    return right, [f"Spectral gap λ₂ of the head-mean attention graph: layer 1 {_f(gaps[0])}, layer {L} {_f(gaps[-1])}.",
                   "A larger λ₂ means one attention step mixes the tokens more strongly."]


def _default_depth(a):
    cos = a.baseline.metric("cosine_mean")
    L = a.n_layers
    falls = [l for l in range(1, L + 1) if cos[l] < cos[l - 1]]
    right = "higher" if cos[-1] > cos[0] else "lower"
    lines = [f"cosine_mean: layer 0 {_f(cos[0])}, layer {L} {_f(cos[-1])}."]
    lines.append(f"It falls at layer{'s' if len(falls) > 1 else ''} {', '.join(map(str, falls))}: the rise is not "
                 "steady." if falls else "It rises at every layer.")
    return right, lines


def _pure(a):
    dm = a.baseline.metric("dm_rel")
    L = a.n_layers
    last = dm[-1]
    right = "below 0.01" if last < 0.01 else "between 0.01 and 0.5" if last < 0.5 else "above 0.5"
    return right, [f"dm_rel (distance to 'every token the same vector', relative): layer 0 {_f(dm[0])}, "
                   f"layer {L} {last:.2e}.",
                   "With no residual, MLP or LayerNorm, only attention acts, and its products converge."]


def _spectrum(a):
    base, mit = a.baseline.metric("dm_rel")[-1], a.mitigated.metric("dm_rel")[-1]
    right = "higher" if mit > base else "lower"
    return right, [f"dm_rel at layer {a.n_layers}: positive value spectrum {base:.3g}, "
                   f"clip-negative {mit:.3g}."]


def _neutreno(a):
    layer = min(6, a.n_layers)
    base, mit = a.baseline.rows[layer]["cosine_mean"], a.mitigated.rows[layer]["cosine_mean"]
    right = "down" if mit < base else "up"
    return right, [f"cosine_mean at layer {layer}: baseline {_f(base)}, NeuTRENO (λ = 0.4) {_f(mit)}."]


def _fusion(a):
    last, fused = a.baseline.rows[-1]["cosine_mean"], a.mitigated.fused_row["cosine_mean"]
    right = "lower" if fused < last else "higher"
    return right, [f"cosine_mean: last layer {_f(last)}, fused output (mean of every layer) {_f(fused)}."]


SINK_SENTENCE = "The old lighthouse keeper counted seven ships before the storm."


def _sink(a):
    """Gemma 3 270M's attention to its first token (<bos>), from the analysis's own numbers."""
    from .sinks import uniform_share
    mass = a.baseline.metric("first_token_mass")
    rate = a.baseline.metric("sink_rate")
    L, n = a.n_layers, len(a.tokens)
    uniform = uniform_share(n, a.causal)
    right = "more than half" if mass[-1] > 0.5 else "about its uniform share" if mass[-1] < 2 * uniform else \
        "more than its uniform share, less than half"
    top = max(range(1, L + 1), key=lambda l: mass[l])
    return right, [
        f"At layer {L}, {mass[-1]:.2f} of all attention goes to the first token `{a.tokens[0]}` "
        f"(uniform attention over the visible tokens would give it {uniform:.2f} of {n} tokens); "
        f"{rate[-1]:.0%} of the last layer's heads send it more than 0.3 on average.",
        f"The most at layer {top}: {mass[top]:.2f}. The token carries no meaning of its own: a head that has "
        "nothing to look for in this sentence parks its attention there, since softmax must put it somewhere "
        "(an attention sink, Xiao et al. 2024; Gu et al. 2024).",
        f"So a high attention weight is not importance, and the head-mean graph's edges to `{a.tokens[0]}` say "
        "little about the words."]


STEPS: list[Step] = [
    Step("1 · The sentence and its tokens",
         "The model never sees words: it sees tokens, and adds special ones of its own.",
         {"text": REFERENCE, "model": "default", "mitigation": "none"},
         f"This sentence has {len(REFERENCE.split())} words. Will the model see more tokens, fewer, or the same number?",
         ("more", "fewer", "the same"), _tokens, "attention-is-a-graph", layer=1,
         section="layer"),
    Step("2 · Attention as a graph",
         "Each layer's attention is a weighted graph between tokens; its spectral gap λ₂ says how strongly "
         "one step mixes them.",
         {"text": REFERENCE, "model": "default", "mitigation": "none"},
         "Will the spectral gap λ₂ be larger or smaller at the last layer than at layer 1?",
         ("larger", "smaller"), _gap, "attention-is-a-graph", section="layer"),
    Step("3 · Smoothing over depth, in a trained model",
         "Over-smoothing: token representations become alike layer after layer. Here is what a trained "
         "model really does.",
         {"text": REFERENCE, "model": "default", "mitigation": "none"},
         "Will the mean cosine similarity between tokens be higher or lower at the last layer than at the embeddings?",
         ("higher", "lower"), _default_depth, "the-metrics"),
    Step("4 · Pure attention collapses",
         "The lab model: 32 layers of attention alone (no residual, no MLP, no LayerNorm).",
         {"text": REFERENCE, "model": "lab", "lab": PURE_LAB, "mitigation": "none"},
         "At layer 32, how far will the tokens be from all being the same vector (dm_rel)?",
         ("above 0.5", "between 0.01 and 0.5", "below 0.01"), _pure, "why-stacking-smooths"),
    Step("5 · Why: the value spectrum",
         "Dovonon et al.: the sign of W_O·W_V's eigenvalues decides whether a head smooths or sharpens. "
         "Here the lab's value spectrum is positive, and the mitigation replaces it with a negative one.",
         {"text": REFERENCE, "model": "lab", "lab": POSITIVE_LAB, "mitigation": "spectral",
          "params": {"mode": "clip-negative"}},
         "With a negative value spectrum, will dm_rel at the last layer be higher or lower than with the positive one?",
         ("higher", "lower"), _spectrum, "the-dovonon-diagnostic", section="layer"),
    Step("6 · A mitigation against the baseline",
         "NeuTRENO adds λ(V₀ − Vₗ) to each attention output: a pull back towards the first layer's values.",
         {"text": REFERENCE, "model": "default", "mitigation": "neutreno", "params": {"lambda": 0.4}},
         "Will cosine similarity at layer 6 go up or down under NeuTRENO?",
         ("up", "down"), _neutreno, "what-each-mitigation-changes", layer=6,
         section="layer"),
    Step("7 · Fusion vs no fusion",
         "A fusion reads out a mix of every layer instead of the last one alone.",
         {"text": REFERENCE, "model": "default", "mitigation": "fusion-mean", "params": {"layers": "all"}},
         "Will the fused output's mean cosine similarity be lower or higher than the last layer's?",
         ("lower", "higher"), _fusion, "what-each-mitigation-changes"),
    Step("8 · Why does everything attend to the first token?",
         "A real decoder, Gemma 3 270M (embedded, offline). Every row of a causal model sees the first token, "
         "and many heads of trained models send it most of their attention.",
         {"text": SINK_SENTENCE, "model": "gemma-3-270m", "mitigation": "none"},
         "At Gemma's last layer, how much of all attention goes to the first token `<bos>`?",
         ("about its uniform share", "more than its uniform share, less than half", "more than half"), _sink,
         "attention-sinks", section="atlas"),
]
