"""The embedded gemma-3-270m against independent computations: transformers' own eager pass of the
same weights (states, probabilities, and the sink metrics recomputed from its probabilities), its
sliding-window layers past the 512-token window, compare beside MiniLM over relative depth, a
padded corpus batch, and the Theory page's numbers about it. All slow: they load the real model
(dequantised once into SmoothViz's cache, then about 20 s a process)."""

import numpy as np
import pytest
import torch

import smoothviz
from smoothviz.model.handles import get_handle
from smoothviz.words.lesson import SINK_SENTENCE

pytestmark = pytest.mark.slow

GEMMA = "gemma-3-270m"


@pytest.fixture(scope="module")
def analysis():
    return smoothviz.analyze(SINK_SENTENCE, model=GEMMA, device="cpu")


@pytest.fixture(scope="module")
def eager():
    """transformers' own Gemma 3, eager attention, from the same dequantised folder."""
    from transformers import AutoModel, AutoTokenizer

    from smoothviz.model.models import resolve

    path, _ = resolve(GEMMA)
    model = AutoModel.from_pretrained(path, attn_implementation="eager", dtype=torch.float32).eval()
    assert model.config._attn_implementation == "eager"
    return model, AutoTokenizer.from_pretrained(path)


def test_states_probabilities_and_sink_metrics_against_transformers(analysis, eager):
    model, tokenizer = eager
    ids = tokenizer(SINK_SENTENCE, return_tensors="pt")
    assert tokenizer.convert_ids_to_tokens(ids["input_ids"][0]) == analysis.tokens
    with torch.no_grad():
        out = model(**ids, output_hidden_states=True, output_attentions=True)
    A = torch.stack(out.attentions)[:, 0].double().numpy()  # [18, 4, n, n]
    states = [h[0].double().numpy() for h in out.hidden_states]
    L = len(A)
    assert np.allclose(analysis.baseline.attentions, A, atol=1e-6)
    assert np.allclose(analysis.baseline.hidden[:L], np.stack(states[:L]), atol=1e-4)
    assert np.allclose(analysis.baseline.final_norm, states[L], atol=1e-4)  # transformers' last = the final norm
    # one KV head serves all 4 query heads, yet the heads differ (their queries do)
    assert model.config.num_key_value_heads == 1 and not np.allclose(A[:, 0], A[:, 1], atol=1e-3)
    # the sink metrics by hand from transformers' probabilities: the mean over heads and query rows of
    # the column of the first token, and the share of heads whose row-mean there exceeds 0.3
    rows = analysis.baseline.rows
    for layer in range(1, L + 1):
        column = A[layer - 1][..., 0]  # [4 heads, n rows]
        assert rows[layer]["first_token_mass"] == pytest.approx(column.mean(), abs=1e-6)
        assert rows[layer]["sink_rate"] == pytest.approx(np.mean(column.mean(-1) > 0.3))
    assert rows[0]["first_token_mass"] is None and rows[0]["sink_rate"] is None


def test_sliding_window_layers_past_the_window(eager):
    """661 tokens, past Gemma's 512-token window: the sliding layers (5 of every 6) give a query no
    key 512 or more positions back, the global ones do; each equals transformers' eager kernel."""
    from smoothviz.model import capture

    model, _ = eager
    handle = get_handle(GEMMA, "cpu")
    config = handle.model.config
    text = " ".join([SINK_SENTENCE] * 60)
    inputs, tokens, _ = handle.encode(text, None, [])
    n = len(tokens)
    assert n > config.sliding_window == 512
    with torch.no_grad():
        trace = capture.run(handle.model, inputs)
        want = model(**inputs, output_attentions=True).attentions
    i = np.arange(n)
    far = (i[:, None] - i[None, :]) >= config.sliding_window
    kinds = config.layer_types
    assert kinds.count("full_attention") == 3 and kinds.count("sliding_attention") == 15
    for layer, kind in enumerate(kinds):
        P = trace.attentions[layer].double().numpy()  # [4, n, n]
        assert np.allclose(P, want[layer][0].double().numpy(), atol=1e-6), layer
        assert np.allclose(P.sum(-1), 1, atol=1e-5) and np.all(np.triu(P, 1) == 0)
        beyond = P[:, far].sum()
        assert (beyond == 0) if kind == "sliding_attention" else (beyond > 1), (layer, kind, beyond)


def test_compare_beside_minilm_and_a_padded_corpus(analysis):
    """An encoder beside a decoder, both real, over relative depth; and two lines of different
    lengths in one padded batch, each line's rows (the sink metrics included) equal to its own analysis."""
    from smoothviz.outputs import figures
    from smoothviz.pipeline.compare import compare

    c = compare(SINK_SENTENCE, [f"model={GEMMA}", "model=default"], device="cpu", heads=False)
    runs = c.to_json()["runs"]
    assert len(runs[0]["layers"]) == 19 and len(runs[1]["layers"]) == 7
    assert runs[0]["layers"][-1]["first_token_mass"] == pytest.approx(analysis.baseline.rows[-1]["first_token_mass"])
    assert "final_norm" in runs[0] and "final_norm" not in runs[1]
    fig = figures.compare_curves([(r.label, r.run) for r in c.runs], relative=True)
    first_panel = [list(t.x) for t in fig.data if t.xaxis in (None, "x") and len(t.x) > 1]
    assert [l / 18 for l in range(19)] in first_panel and [l / 6 for l in range(7)] in first_panel

    lines = [SINK_SENTENCE, "A short one."]
    result = smoothviz.corpus(lines, model=GEMMA, device="cpu", batch_size=8)
    assert result.computed == 2 and not result.errors
    table = result.table.to_pylist()
    for sentence, text in enumerate(lines):
        alone = smoothviz.analyze(text, model=GEMMA, device="cpu", heads=False).baseline.rows
        rows = [r for r in table if r["sentence"] == sentence and r["run"] == "baseline"]
        assert len(rows) == 19
        for got, want in zip(rows, alone):
            for key in ("cosine_mean", "dm_rel", "cosine_centred", "first_token_mass", "sink_rate"):
                assert (got[key] is None and want[key] is None) or got[key] == pytest.approx(want[key], abs=1e-4), (
                    sentence,
                    want["layer"],
                    key,
                )


def test_the_theory_page_s_decoder_numbers_hold(analysis):
    """Every number the Theory page states about gemma-3-270m is re-derived from the analysis, and the
    page shows those words."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from smoothviz.words.theory import DECODER_FACTS

    for key, fact in DECODER_FACTS.items():
        assert fact.settings == {"text": SINK_SENTENCE, "model": GEMMA}
        assert fact.holds(analysis), key
    app = Path(__file__).resolve().parent.parent / "app" / "SmoothViz.py"
    at = AppTest.from_file(str(app), default_timeout=600).run().switch_page("pages/1_Theory.py").run()
    assert not at.exception, [e.value for e in at.exception]
    shown = " ".join(m.value for m in at.markdown).replace("\u2060", "")
    for key, fact in DECODER_FACTS.items():
        assert fact.said.replace("\u2060", "") in shown, key


def test_sink_drop_on_gemma_by_hand(analysis):
    """heads sink=drop on the real decoder: no row but the first attends to `<bos>`; the first row,
    which sees only `<bos>`, keeps its 1 (SmoothViz's stated choice); so first_token_mass is exactly
    1/n at every layer (one row of n holds 1, in every head), and the note says what was dropped."""
    a = smoothviz.analyze(
        SINK_SENTENCE, model=GEMMA, device="cpu", mitigation="heads", params={"ablate": "", "sink": "drop"}, heads=False
    )
    A = a.mitigated.attentions.astype(np.float64)
    n = len(a.tokens)
    assert a.special == [True] + [False] * (n - 1)
    assert np.all(A[:, :, 1:, 0] == 0) and np.allclose(A[:, :, 0, 0], 1)
    assert np.allclose(A.sum(-1), 1, atol=1e-5) and np.all(np.triu(A, 1) == 0)
    assert a.mitigated.metric("first_token_mass")[1:] == pytest.approx([1 / n] * a.n_layers, abs=1e-7)
    assert a.mitigated.metric("sink_rate")[1:] == [0.0] * a.n_layers  # 1/n = 0.083 < 0.3
    # layer 1 sees the same input as the baseline: its rows are the baseline's renormalised without <bos>
    B = analysis.baseline.attentions[0].astype(np.float64)[:, 1:, 1:]
    assert np.allclose(A[0][:, 1:, 1:], B / B.sum(-1, keepdims=True), atol=1e-5)
    assert any("first token sees only itself" in note for note in a.notes)


def test_the_spectral_what_if_on_gemma_gives_each_head_the_mapped_spectrum():
    """``--mitigation spectral`` on Gemma 3 failed ("Pivots given to lu_solve must all be greater or
    equal to 1"): torch 2.13's batched inverse of the 18 × 4 eigenbases of 256 breaks once
    torch.set_num_threads has been called, as every analysis does. Each head's new W_O W_V now has
    the mapped spectrum, and the analysis runs."""
    from smoothviz.mitigations.spectral import respectrum_out_weights, spectrum_map
    from smoothviz.model.weights import value_output_product

    torch.set_num_threads(torch.get_num_threads())  # the state every analysis leaves
    ctx = get_handle(GEMMA, "cpu").context()
    new = respectrum_out_weights(ctx.w_v, ctx.w_o, ctx.heads, "flip")
    for layer, head in ((0, 0), (17, 3)):
        M = value_output_product(ctx.w_v.double(), ctx.w_o.double(), ctx.heads)[layer, head]
        M2 = value_output_product(ctx.w_v.double(), new.double(), ctx.heads)[layer, head]
        key = lambda z: (round(z.real, 3), round(z.imag, 3))  # noqa: E731
        want = sorted(spectrum_map(torch.linalg.eigvals(M), "flip").tolist(), key=key)
        got = sorted(torch.linalg.eigvals(M2).tolist(), key=key)
        assert np.allclose(got, want, atol=1e-4)
    r = smoothviz.analyze("The cat sat on the mat.", model=GEMMA, mitigation="spectral", params={"mode": "flip"})
    assert np.isfinite(r.mitigated.rows[-1]["cosine_mean"])
