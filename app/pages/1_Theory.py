"""The theory behind the charts, short: attention as a graph, why stacking smooths, the mitigations.

Section anchors are the ones the main page's captions link to. The formulas follow
docs/SCIENCE.md; this page only explains, it computes nothing.
"""

import streamlit as st

from smoothviz.mitigations import REGISTRY
from smoothviz.science.metrics import METRICS
from smoothviz.words.claims import frozen_caveat_all
from smoothviz.words.lesson import SINK_SENTENCE
from smoothviz.words.theory import DECODER_FACTS, FACTS


def metric_table() -> str:
    """Every registered metric (smoothviz.science.metrics.METRICS): the table grows with the registry."""
    rows = [f"| `{m.name}` {m.direction} | {m.formula} | {m.collapse} | {m.source} |" for m in METRICS]
    return "| metric | formula | collapse means | source |\n|---|---|---|---|\n" + "\n".join(rows)


def mitigation_table() -> str:
    """Every registered mitigation (smoothviz.mitigations.REGISTRY), its parameters and neutral setting."""
    rows = []
    for name, cls in REGISTRY.items():
        params = ", ".join(f"`{k}`={p.default!r}" for k, p in cls.PARAMS.items()) or "—"
        neutral = ", ".join(f"`{k}`={v}" for k, v in cls.NEUTRAL.items()).replace("{L}", "L") or "—"
        inside = "inside the forward pass" if cls.in_forward else "after it"
        rows.append(f"| `{name}` | {cls.summary} | {params} | {neutral} | {inside} |")
    return (
        "| mitigation | what it does | parameters (defaults) | neutral setting | acts |\n"
        "|---|---|---|---|---|\n" + "\n".join(rows)
    )


st.set_page_config(page_title="SmoothViz · Theory", page_icon="🫧", layout="wide")
st.title("Why tokens become alike")
st.caption("Notation: n tokens, hidden states H_l (n × d) after layer l, attention A_l (rows sum to 1).")

st.header("Attention is a graph", anchor="attention-is-a-graph")
st.markdown(
    "Each attention matrix is the normalised adjacency matrix of a weighted graph whose nodes are "
    "the tokens (Shi et al. 2022). One attention step is one round of message passing: every token "
    "becomes a weighted average of the tokens it attends to."
)
st.latex(
    r"S = \tfrac12 (A + A^\top), \qquad \mathcal{L} = I - \bar D^{-1/2} S \bar D^{-1/2}, "
    r"\quad \bar D = \operatorname{diag}(|S|\,\mathbf 1)"
)
st.markdown(
    "Softmax attention has no negative weight, so D̄ is the usual degree matrix D = diag(S𝟙) and 𝓛 is "
    "the normalized Laplacian; its eigenvalues lie in [0, 2] and the smallest is 0. The second smallest, "
    "the **spectral gap** λ₂, measures how fast the graph mixes; its eigenvector (the **Fiedler "
    "vector**) splits the tokens along the graph's weakest cut, and λ₂ measures how weak that cut is. "
    "The **rollout** R_l = Â_l ⋯ Â_1 with Â = ½(A + I) follows the mixing through depth: "
    "σ₂/σ₁ → 0 means every token draws on the same mix of inputs. With special tokens excluded, the "
    "head-mean graph is the mean over heads first, then [CLS]/[SEP] rows and columns are removed and rows "
    "renormalised, so a head that sends most of its attention to [SEP] weighs little among the words; "
    "per-head views restrict each head on its own (that order is SmoothViz's own choice)."
)
st.markdown(
    "**Signed graphs.** AttnScale's A′ = A_DC + (1 + ω)(A − A_DC) has negative entries. SmoothViz then "
    "uses the same formula with absolute degrees D̄ = diag(|S|𝟙), the *signed normalized Laplacian* "
    "(Kunegis et al. 2010): its eigenvalues still lie in [0, 2], and nothing is clamped. But the "
    "smallest eigenvalue is 0 only when the signed graph is balanced (its nodes split into two camps "
    "with negative edges only between them), so λ₂ is no longer a random walk's mixing gap and reads "
    "differently from the baseline's. The page notes it whenever a run's graph is signed, and the "
    "graph views draw only the positive edges (SmoothViz's own choice)."
)

st.header("Why stacking smooths", anchor="why-stacking-smooths")
st.markdown(
    "Averaging neighbours is a low-pass filter: it keeps the constant signal (every token the same "
    "vector) and damps everything else (Shi et al. 2022). **Pure attention** — no residual connection, no "
    "MLP, no LayerNorm — is nothing but that averaging, and stacked it collapses toward one vector: its "
    "rank falls doubly exponentially with depth (Dong et al. 2021). Try the lab preset *Pure attention in a "
    f"32-layer lab model*: on the reference sentence {FACTS['pure'].said} (measured by SmoothViz)."
)
st.markdown(
    "**A trained model is not pure attention.** Dong et al. (2021) show that skip connections and MLPs "
    "counteract the rank collapse; LayerNorm is not among what they credit. Shi et al. (2022) find that "
    "LayerNorm plays a key role in *causing* over-smoothing (with a large enough standard deviation the "
    "output converges to a low-rank subspace), and the lab agrees: in pure attention, "
    f"{FACTS['post_ln'].said}, {FACTS['pre_ln'].said} (measured by SmoothViz). On the default model "
    "(all-MiniLM-L6-v2, six layers) and the reference sentence, "
    f"{FACTS['trained'].said}: mild, uneven smoothing, not a collapse (measured by SmoothViz). For any "
    "sentence, the lines under the over-depth curves name each layer where a metric moves against the "
    "smoothing direction or does not move."
)
st.markdown("Shi et al. measure the distance d_M to the smooth subspace M = {𝟙cᵀ} and bound its change per layer:")
st.latex(r"d_M(H_{l+1}) \le v \, d_M(H_l), \qquad v = \frac{(1 + s^2)(1 + \sqrt{\lambda}\, h\, s)}{\sigma_1 \sigma_2}")
st.markdown(
    "with s the largest singular value of the block's weights, λ the largest eigenvalue of AᵀPA and "
    "σ₁, σ₂ the LayerNorms' smallest input deviations over the tokens analysed. Only v < 1 guarantees "
    "collapse (Shi et al. 2022); for trained models v is far above 1 (on the default model and the reference "
    f"sentence {FACTS['shi_v'].said}; measured by SmoothViz), which "
    "is why the dashboard shows v beside the measured ratio and never asserts it. The bound is derived "
    "for post-LN blocks (each LayerNorm after its residual sum, as in BERT); for pre-LN blocks (GPT-2, the "
    "lab with layernorm=pre) v is not shown."
)

st.header("The metrics", anchor="the-metrics")
st.markdown(metric_table())

st.header("What each mitigation changes", anchor="what-each-mitigation-changes")
st.markdown(
    "Every mitigation runs at inference on the same sentence, beside the baseline; each has a neutral "
    "setting that reproduces the baseline exactly, except SoftDecay's *where=official* placement (below) "
    "(SmoothViz's own choice: the papers train with them)."
)
st.markdown(
    "**Hierarchical fusion** leaves the layers alone and combines the outputs of the chosen layers "
    "l = a … b into one, drawn as an extra *fused* point. Shi et al. propose concatenation, the maximum "
    "and a token-wise gate; the weighted mean is SmoothViz's own baseline beside them."
)
st.latex(
    r"\textbf{concat: } H_{\text{fused}} = [\,H_a \,\|\, \cdots \,\|\, H_b\,] \qquad "
    r"\textbf{max: } (H_{\text{fused}})_{ij} = \max_l\, (H_l)_{ij}"
)
st.latex(
    r"\textbf{gate: } h_i = \textstyle\sum_l \alpha_{i,l}\, h_{i,l}, \quad "
    r"\alpha_{i,l} = \operatorname{softmax}_l\big(w_l^\top h_{i,l} + b_l\big) \qquad "
    r"\textbf{mean (SmoothViz): } H_{\text{fused}} = \textstyle\sum_l w_l H_l"
)
st.markdown(
    "The gate has one w_l and b_l per fused layer (a bias shared by every layer would cancel in the "
    "softmax). In the paper they are learned during fine-tuning; here `smoothviz fit-gate` learns them on "
    "a labelled CSV with the encoder frozen, and a gate fuses exactly the layers it was fitted on "
    "(SmoothViz's own choice). The "
    "shipped gate comes from a toy sentiment set: illustrative, not a result."
)
st.markdown(mitigation_table())
st.markdown(
    "**NeuTRENO** (Nguyen et al.) pulls each layer's attention output back towards the first layer's "
    "values, the fidelity term of a regularised functional:"
)
st.latex(r"U_l = \operatorname{softmax}\!\big(Q_l K_l^\top/\sqrt{d_k}\big) V_l + \lambda\,(V_0 - V_l)")
st.markdown(
    "**SoftDecay** (Yan et al.) flattens the singular-value spectrum of a token matrix H = UΣVᵀ, "
    "rescaled so the largest singular value is unchanged:"
)
st.latex(r"f(\sigma) = -\ln\!\big(1 - \alpha(\sigma + \alpha) + \varepsilon\big)/\alpha, \quad \alpha < 0")
st.markdown(
    "Where it acts is a choice. *where=last* (the default) transforms the final hidden states, as the "
    "paper describes; *where=every* transforms each layer's output before the next layer reads it "
    "(SmoothViz's own choice). "
    "*where=official* follows the authors' released code (tokenUni): inside the last block, before its "
    "final LayerNorm, on the feed-forward output plus its residual, with the residual added again — so "
    "x counts twice, and even α = 0 differs from the baseline. It exists only in post-LN blocks with a "
    "feed-forward sub-layer (not GPT-2, not a lab without post-LN and an MLP)."
)
st.latex(r"H_L = \mathrm{LN}\big(\mathrm{SVT}(\mathrm{FFN}(x) + x) + x\big), \quad x = \text{the FFN's input}")
st.markdown(
    "**AttnScale** (Wang et al.) amplifies the high-frequency part of attention, "
    "A′ = A_DC + (1 + ω)(A − A_DC) with A_DC = 𝟙𝟙ᵀ/n. In the paper ω is a learned per-head scale that "
    "starts at 0 in training; here one fixed ω stands in for it (SmoothViz's own choice). On the frozen "
    f"default model it *raises* smoothing: on the reference sentence {FACTS['attnscale'].said} (measured "
    "by SmoothViz). A′ has negative entries, so its attention graphs are signed (see above). "
    "**ContraNorm** (Guo et al.) pushes tokens apart after attention, H ← (1 + s)H − s·softmax(ĤĤᵀ/τ)H. "
    "**No residual** (Dong et al.) removes the skip connection to show pure attention collapsing."
)
st.info(frozen_caveat_all())  # the one caveat every page and export shares (smoothviz.words.claims)

st.header("The Dovonon diagnostic", anchor="the-dovonon-diagnostic")
st.markdown(
    "A layer's update X ← X + AXH with H = W_V W_O has eigenvalues 1 + λᴬλᴴ (Dovonon, Bronstein & "
    "Kusner 2024). If the dominant one pairs λᴴ with A's eigenvalue 1 — the constant eigenvector — the "
    "layer is a low-pass filter and **smooths**; otherwise it **sharpens**. A negative value spectrum "
    "(Λ = −ψ², clipped to [−1, 0)) avoids smoothing; a positive one (Λ = +ψ², clipped to (0, 1]) "
    "guarantees it."
)
st.latex(r"\operatorname{eig}(I + A \otimes H) = \{\, 1 + \lambda^A_i \lambda^H_j \,\}")
st.markdown(
    "*Spectral control* is a what-if on a pretrained model: each head's M = W_O W_V = PΛP⁻¹ gets a new "
    "spectrum f(Λ) on the same eigenbasis, W_O′ = P f(Λ) Λ⁻¹ P⁻¹ W_O. **clip-negative** sets "
    "f(λ) = −min(|λ|, 1), a real spectrum in [−1, 0), so by the rule above no head smooths; "
    "**clip-positive** sets f(λ) = +min(|λ|, 1), in (0, 1], so every head does; **flip** negates the real "
    "parts and keeps the imaginary ones. Keeping the eigenbasis and each eigenvalue's modulus is "
    "SmoothViz's choice (a pretrained head's eigenvalues are mostly complex: clipping only their real "
    "parts would leave them mostly imaginary). The verdict is about the heads, not the whole network: "
    "the frozen model's later layers see states they never saw, so its tokens can still become more "
    "alike — on the reference sentence the default model's last-layer cosine_mean rises under each "
    f"of the three modes ({FACTS['clip-negative'].said}, {FACTS['clip-positive'].said}, {FACTS['flip'].said}; "
    "measured by SmoothViz). The dashboard "
    "states the measured change beside the curves for any sentence."
)

st.header("Projections", anchor="projections")
st.markdown(
    "Trajectories come from one joint 2-D projection (PCA, or UMAP with a fixed seed) of every layer "
    "of both runs, after mean-centring and L2-normalising each layer (SmoothViz's own choices). Projections distort distances "
    "and can invent clusters: **the metrics are the ground truth**; the pictures only help to see them."
)
st.page_link("SmoothViz.py", label="← Back to the dashboard")

st.header("Attention sinks: why does everything attend to the first token?", anchor="attention-sinks")
st.markdown(
    "Plot a trained model's attention and many rows put most of their weight on the first token "
    "(`<bos>`, `[CLS]`), whatever the sentence says. This is an **attention sink** (Xiao et al. 2024, "
    "*Efficient streaming language models with attention sinks*; Gu et al. 2024, *When attention sink "
    "emerges in language models*). Xiao et al.'s explanation: a softmax row must sum to 1, so a head with "
    "nothing to look for in this sentence has to put its weight somewhere, and in a causal model only the "
    "first token is visible to every row; Gu et al. find the sink's value vector small, so the weight "
    "parked there changes the output little. SmoothViz measures it per layer with two metrics (null at layer 0): "
    "**first_token_mass**, the mean over heads and query rows of the attention to the first token, and "
    "**sink_rate**, the share of heads whose mean attention to the first token exceeds ε = 0.3 (Gu et "
    "al.'s Sink₁^ε, per layer). The *sink view* (atlas tab) shows every token's share of each layer's "
    "attention on a log colour scale."
)
st.markdown(
    "Measured by SmoothViz on the embedded `gemma-3-270m` (Gemma 3 270M, 18 layers, 4 heads) for "
    f"*{SINK_SENTENCE}* {DECODER_FACTS['sink'].said}. Lesson step 8 recomputes these numbers "
    "for the page."
)
st.markdown(
    "**Why it matters here** (SmoothViz's reading). The head-mean graph of such a layer is close to a "
    "star around the first token, so its spectral gap and Dirichlet energy say more about the sink than "
    "about the words. Excluding "
    "special tokens (the sidebar's option) restricts the graph to the words and renormalises the rows; "
    "the *heads* mitigation with `sink=drop` removes the sink inside the forward pass. In a causal "
    "model the first row sees only itself, so it keeps its attention (a softmax over no key is "
    "undefined; SmoothViz's own choice, stated in the notes)."
)
st.markdown(
    f"**A decoder's high cosine is not collapse.** On the same sentence {DECODER_FACTS['shared'].said} "
    "— a *massive activation* shared by every token (Sun et al. 2024, *Massive "
    f"activations in large language models*). {DECODER_FACTS['centred'].said}: the tokens are not alike, they share one huge coordinate. The sentences under "
    "the curves say so whenever cosine_mean is above 0.9 while dm_rel is above 0.1."
)
