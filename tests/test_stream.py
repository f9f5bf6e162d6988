"""Long sentences analysed layer by layer (smoothviz.pipeline.stream) against the batched analysis, and the
iterative solvers it uses against dense ones.

The streamed path starts at ``stream.STREAM_FROM`` kept tokens; these tests lower that threshold
(and ``graph.ITERATIVE_FROM``) so that both paths run on the same short sentence of the real
default model, whose numbers must then agree.
"""

import numpy as np
import pytest
import scipy.linalg
import torch

from smoothviz import analyze
from smoothviz.bench import text_of
from smoothviz.model import capture
from smoothviz.model.handles import get_handle
from smoothviz.pipeline import stream
from smoothviz.science import graph, sinks

RNG = np.random.default_rng(3)


def streaming_lean(monkeypatch) -> None:
    """Stream from 8 kept tokens, and keep no head's attention (a long input's path, on a short one)."""
    monkeypatch.setattr(stream, "STREAM_FROM", 8)
    monkeypatch.setattr(stream, "KEEP_HEADS_BELOW", 8)


N_TOKENS = 40


def attention_graph(n: int, sharpness: float = 2.0, causal: bool = False) -> torch.Tensor:
    logits = RNG.normal(size=(n, n)) * sharpness
    if causal:
        logits = np.where(np.tril(np.ones((n, n))) > 0, logits, -np.inf)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    A = torch.from_numpy(e / e.sum(-1, keepdims=True))
    return graph.symmetrize(A, "sym")


@pytest.mark.parametrize("n,causal", [(12, False), (40, True), (90, False)])
def test_second_pair_matches_a_dense_eigendecomposition(n, causal):
    S = attention_graph(n, causal=causal)
    vals, vecs = torch.linalg.eigh(graph.normalized_laplacian(S))
    lam2, vec = graph.second_pair(S)
    assert lam2 == pytest.approx(vals[1].item(), abs=1e-6)
    assert abs(float(vec @ vecs[:, 1])) == pytest.approx(1, abs=1e-6)  # the same vector up to its sign
    assert torch.equal(graph.signed_vector(vec[None])[0], graph.signed_vector(-vec[None])[0])


def test_second_pair_on_a_disconnected_graph_and_one_node():
    S = torch.block_diag(attention_graph(8), attention_graph(9))  # two components: λ₂ = 0
    assert graph.second_pair(S)[0] == pytest.approx(0, abs=1e-9)
    assert np.isnan(graph.second_pair(torch.ones(1, 1))[0])


def test_second_pair_on_a_graph_without_edges_equals_the_dense_answer():
    """Every head of a layer ablated leaves S = 0 (𝓛 = I): ARPACK has no Krylov space there."""
    vals, vecs = graph.laplacian_spectrum(torch.zeros(30, 30, dtype=torch.float64))
    lam2, vec = graph.second_pair(torch.zeros(30, 30, dtype=torch.float64))
    assert lam2 == pytest.approx(vals[1].item()) == pytest.approx(1.0)
    assert torch.equal(graph.fiedler(vecs[None])[0], graph.signed_vector(vec[None])[0])


@pytest.mark.parametrize("n", [5, 30, 70])
def test_top_singular_ratio_matches_the_dense_svd(n):
    R = torch.from_numpy(RNG.uniform(size=(n, n)))
    sv = scipy.linalg.svdvals(R.numpy())
    assert graph.top_singular_ratio(R) == pytest.approx(sv[1] / sv[0], abs=1e-6)


def test_spectral_gaps_iterative_matches_dense(monkeypatch):
    S = torch.stack([attention_graph(60, s) for s in (0.2, 1.0, 4.0)])
    dense = graph.spectral_gaps(S)
    monkeypatch.setattr(graph, "ITERATIVE_FROM", 50)
    assert graph.spectral_gaps(S).numpy() == pytest.approx(dense.numpy(), abs=1e-6)


@pytest.fixture()
def both(monkeypatch):
    """``(batched, streamed)`` analyses of one sentence of the default model, same settings."""

    def run(**kwargs):
        text = text_of(N_TOKENS)
        monkeypatch.setattr(stream, "STREAM_FROM", 10**9)
        batched = analyze(text, device="cpu", max_tokens=N_TOKENS, **kwargs)
        streaming_lean(monkeypatch)
        monkeypatch.setattr(graph, "ITERATIVE_FROM", 8)  # every per-head λ₂ by ARPACK too
        streamed = analyze(text, device="cpu", max_tokens=N_TOKENS, **kwargs)
        return batched, streamed

    return run


def same_rows(a, b, rel=1e-6):
    for ra, rb in zip(a.table(), b.table()):
        assert ra.keys() == rb.keys()
        for key, x in ra.items():
            y = rb[key]
            if x is None or isinstance(x, str):
                assert y == x, (ra["layer"], key)
            else:
                assert y == pytest.approx(x, rel=rel, abs=1e-9), (ra["layer"], key)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"exclude_special": True},
        {"mitigation": "neutreno"},
        {"symmetrize": "ata", "head": 2},
        {"mitigation": "heads", "params": {"ablate": ",".join([f"2.{h}" for h in range(12)] + ["4.3"])}},
    ],
    ids=["default", "no-specials", "neutreno", "one-head-ata", "ablated"],
)
def test_streamed_analysis_equals_the_batched_one(both, kwargs):
    batched, streamed = both(**kwargs)
    assert streamed.baseline.attentions is None and batched.baseline.attentions is not None
    assert (streamed.n_layers, streamed.heads) == (batched.n_layers, batched.heads) == (6, 12)
    assert streamed.notes == batched.notes
    for key, a in batched.runs().items():
        b = streamed.runs()[key]
        same_rows(a, b)
        for field in ("head_gap", "head_entropy", "head_uniform", "fiedler", "sv", "layer_graph", "ln_sigma"):
            x, y = getattr(a, field), getattr(b, field)
            assert (x is None) == (y is None), field
            if x is not None:
                assert np.asarray(y) == pytest.approx(np.asarray(x), abs=1e-5, nan_ok=True), field
        assert (np.asarray(a.smooths) == np.asarray(b.smooths)).all()
        assert np.asarray(b.layer_eigs) == pytest.approx(np.asarray(a.layer_eigs), abs=1e-5)
        for layer in (0, 3, a.similarity.shape[0] - 1):
            assert b.similarity[layer] == pytest.approx(np.asarray(a.similarity[layer]), abs=1e-6)
        assert sinks.received(b) == pytest.approx(sinks.received(a), abs=1e-6)  # what the sink view draws


def test_streamed_decoder_equals_the_batched_one(tmp_path, monkeypatch):
    """A causal, pre-LN decoder with grouped KV heads (a small random Llama)."""
    import shutil

    from transformers import LlamaConfig, LlamaModel

    from smoothviz.model.models import default_model_path

    torch.manual_seed(0)
    LlamaModel(
        LlamaConfig(
            hidden_size=48,
            intermediate_size=96,
            num_attention_heads=6,
            num_key_value_heads=2,
            num_hidden_layers=3,
            vocab_size=30522,
            max_position_embeddings=128,
        )
    ).save_pretrained(tmp_path)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(default_model_path() / name, tmp_path / name)
    text = text_of(N_TOKENS)
    monkeypatch.setattr(stream, "STREAM_FROM", 10**9)
    batched = analyze(text, model=str(tmp_path), device="cpu", max_tokens=N_TOKENS)
    streaming_lean(monkeypatch)
    streamed = analyze(text, model=str(tmp_path), device="cpu", max_tokens=N_TOKENS)
    assert streamed.baseline.attentions is None and streamed.causal
    same_rows(batched.baseline, streamed.baseline)
    assert streamed.baseline.metric("first_token_mass")[1:] == pytest.approx(
        batched.baseline.metric("first_token_mass")[1:]
    )
    assert streamed.baseline.final_norm_row == pytest.approx(batched.baseline.final_norm_row)


def test_attnscale_keeps_the_batched_path(monkeypatch):
    """AttnScale changes A itself: its run keeps every head's attention, the baseline streams."""
    streaming_lean(monkeypatch)
    r = analyze(text_of(N_TOKENS), device="cpu", max_tokens=N_TOKENS, mitigation="attnscale", heads=False)
    assert r.baseline.attentions is None and r.mitigated.attentions is not None


def test_a_streamed_analysis_draws_its_graph_and_refuses_what_it_did_not_keep(monkeypatch):
    streaming_lean(monkeypatch)
    r = analyze(text_of(N_TOKENS), device="cpu", max_tokens=N_TOKENS, heads=False)
    G = r.graph(3, top_k=2)
    assert G.number_of_nodes() == len(r.keep) and G.number_of_edges() > 0
    with pytest.raises(ValueError, match="keeps only each layer's symmetrised graph"):
        r.graph(3, head=1)


def test_capture_without_attentions_keeps_the_same_states():
    handle = get_handle("default", "cpu")
    inputs, _, _ = handle.encode(text_of(20), 20, [])
    seen = []
    full = capture.run(handle.model, inputs)
    light = capture.run(handle.model, inputs, on_layer=lambda l, p: seen.append((l, p.shape)), keep_attentions=False)
    assert light.attentions is None and torch.equal(light.hidden, full.hidden)
    assert torch.allclose(light.ln_sigma, full.ln_sigma, equal_nan=True)
    assert [l for l, _ in seen] == list(range(6)) and seen[0][1] == (1, 12, 20, 20)


def test_per_layer_stack_computes_on_demand_and_caches():
    H = RNG.normal(size=(7, 10, 4)).astype(np.float32)
    lazy = stream.PerLayer(H, "similarity")
    assert lazy.shape == (7, 10, 10) and len(lazy) == 7
    first = lazy[2]
    assert lazy[2] is first and lazy[-5] is first  # cached, negative indices count from the end
    U = H[2] / np.linalg.norm(H[2], axis=-1, keepdims=True)
    assert first == pytest.approx(U @ U.T, abs=1e-6)
    assert np.asarray(lazy).shape == (7, 10, 10) and lazy[:, 0, 0] == pytest.approx(np.ones(7), abs=1e-6)
    with pytest.raises(IndexError):
        lazy[7]
    S = np.stack([attention_graph(6).numpy() for _ in range(3)]).astype(np.float32)
    eigs = stream.PerLayer(S, "laplacian")
    assert eigs[1] == pytest.approx(
        np.linalg.eigvalsh(graph.normalized_laplacian(torch.tensor(S[1]).double())), abs=1e-6
    )


def test_above_the_rollout_limit_the_ratio_is_null_with_a_note_and_the_rest_unchanged(monkeypatch):
    streaming_lean(monkeypatch)
    full = analyze(text_of(N_TOKENS), device="cpu", max_tokens=N_TOKENS, heads=False)
    monkeypatch.setattr(stream, "ROLLOUT_UP_TO", N_TOKENS - 1)
    lean = analyze(text_of(N_TOKENS), device="cpu", max_tokens=N_TOKENS, heads=False)
    assert all(row["rollout_ratio"] is None for row in lean.baseline.rows[1:])
    assert all(row["rollout_ratio"] is not None for row in full.baseline.rows[1:])
    assert any("rollout ratio is not computed above" in note for note in lean.notes)
    assert not any("rollout ratio is not computed" in note for note in full.notes)
    for a, b in zip(full.baseline.rows, lean.baseline.rows):
        assert {k: v for k, v in a.items() if k != "rollout_ratio"} == {
            k: v for k, v in b.items() if k != "rollout_ratio"
        }


def chart_titles(at) -> list[str]:
    import json

    titles = [json.loads(chart.proto.spec)["layout"].get("title", {}) for chart in at.get("plotly_chart")]
    return [t.get("text", "") if isinstance(t, dict) else str(t) for t in titles]


@pytest.mark.slow  # AppTest pages: outside the fast set, as the README says
def test_every_page_and_the_report_draw_a_streamed_analysis_and_say_what_they_left_out(monkeypatch):
    """A long input's analysis keeps no head's own attention: the atlas tab, Present and the report
    draw everything else and say, where the chosen head's graph would be, why it is not drawn (the
    atlas tab raised an AnalysisError there before)."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from smoothviz.outputs import report, views

    streaming_lean(monkeypatch)
    app = Path(__file__).resolve().parent.parent / "app"
    text = "Streamed here: " + text_of(N_TOKENS)  # a text of its own: the app's analyses are cached per process
    at = AppTest.from_file(str(app / "SmoothViz.py"), default_timeout=300)
    at.query_params.update(text=text, section=views.SECTIONS["atlas"])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    said = " ".join(i.value for i in at.info).replace("\\", "").replace("\u2060", "")  # markdown escapes
    assert "its own graph — not drawn: from 8 tokens SmoothViz analyses a text layer by layer" in said
    assert "one head" in said
    monkeypatch.undo()  # the same link, short enough to keep every head: the head's graph is one more chart
    whole = AppTest.from_file(str(app / "SmoothViz.py"), default_timeout=300)
    whole.query_params.update(text="Kept here: " + text_of(N_TOKENS), section=views.SECTIONS["atlas"])
    whole.run()
    assert not whole.exception and "not drawn" not in " ".join(i.value for i in whole.info)
    streamed_titles, kept_titles = chart_titles(at), chart_titles(whole)
    assert [t for t in kept_titles if "head 0" not in t] == streamed_titles  # everything else drawn
    assert len(kept_titles) == len(streamed_titles) + 2  # the head's graph, for each of the page's two runs
    streaming_lean(monkeypatch)

    r = analyze(text, device="cpu")
    assert r.baseline.attentions is None
    assert "head-graph" not in [v.key for v in views.views_for(r)] and views.in_section("atlas", r)
    html = report.build_report(r)
    assert "its own graph — not drawn" in html and "head-graph-baseline" not in html

    present = AppTest.from_file(str(app / "pages" / "5_Present.py"), default_timeout=300)
    present.query_params.update(text=text, view="head-graph")
    present.run()
    assert not present.exception, [e.value for e in present.exception]
    refused = " ".join(w.value for w in present.warning).replace("\\", "")
    assert "view=head-graph is not available here" in refused  # a link's view it cannot draw: refused, reset


def test_all_threads_gives_dense_products_the_process_threads_inside_one_thread_only():
    from smoothviz.science.linalg import all_threads, one_thread

    saved = torch.get_num_threads()
    with all_threads():
        assert torch.get_num_threads() == saved
    with one_thread():
        assert torch.get_num_threads() == 1
        with all_threads():
            assert torch.get_num_threads() == saved
        assert torch.get_num_threads() == 1  # the eigensolvers after it: one thread again
    assert torch.get_num_threads() == saved


def test_a_streamed_analysis_below_keep_heads_below_keeps_every_heads_attention(monkeypatch):
    """From STREAM_FROM to KEEP_HEADS_BELOW tokens the analysis streams (faster) and still keeps
    every head's attention for the per-head views: the same attention and head graph as the batched path."""
    text = text_of(N_TOKENS)
    monkeypatch.setattr(stream, "STREAM_FROM", 10**9)
    batched = analyze(text, device="cpu", max_tokens=N_TOKENS, heads=False)
    monkeypatch.setattr(stream, "STREAM_FROM", 8)
    assert stream.KEEP_HEADS_BELOW > N_TOKENS
    calls = []
    read = stream._Layers._read
    monkeypatch.setattr(stream._Layers, "_read", lambda self, *a: calls.append(1) or read(self, *a))
    streamed = analyze(text, device="cpu", max_tokens=N_TOKENS, heads=False)
    assert len(calls) == streamed.n_layers  # it did stream
    assert np.array_equal(np.asarray(streamed.baseline.attentions), np.asarray(batched.baseline.attentions))
    same_rows(batched.baseline, streamed.baseline)
    a, b = batched.graph(3, head=1, top_k=2), streamed.graph(3, head=1, top_k=2)
    assert sorted(a.edges(data="weight")) == pytest.approx(sorted(b.edges(data="weight")))


@pytest.mark.slow  # a 64-layer lab model on 512 tokens (about half a minute here)
def test_arpack_gives_up_at_the_dense_solvers_cost_on_a_collapsed_graph(monkeypatch):
    """The deep layers of a 64-layer lab model under NeuTRENO attend almost uniformly: their graphs'
    top eigenvalues crowd together and ARPACK needed up to 112,000 products for one λ₂ (0.6 s; five
    minutes for the model's heads). It now stops after graph.arpack_restarts(n) restarts and LAPACK
    answers: every λ₂ still equals the dense one, and no call passes the budget."""
    import scipy.sparse.linalg as spl

    a = analyze(
        text_of(700), model="lab", lab={"depth": 64}, device="cpu", max_tokens=512, mitigation="neutreno", heads=False
    )
    A = torch.as_tensor(np.array(a.mitigated.attentions[-4:]))  # [4, h, n, n]: the deepest layers
    n = A.shape[-1]
    assert n == 512 >= graph.ITERATIVE_FROM
    products, gave_up, eigsh = [], [], spl.eigsh

    def counted(M, *args, **kwargs):  # the real ARPACK, its products counted
        count = [0]

        def matvec(v):
            count[0] += 1
            return M @ v

        try:
            return eigsh(spl.LinearOperator(M.shape, matvec=matvec, dtype=M.dtype), *args, **kwargs)
        except spl.ArpackNoConvergence:
            gave_up.append(count[0])
            raise
        finally:
            products.append(count[0])

    monkeypatch.setattr(spl, "eigsh", counted)
    S = graph.symmetrize(A.double(), "sym")
    gaps = graph.spectral_gaps(S)
    dense = 1 - torch.linalg.eigvalsh(graph.normalized_adjacency(S))[..., -2]
    assert torch.allclose(gaps, dense, atol=1e-6)
    assert len(products) == A.shape[0] * A.shape[1] and gave_up  # some of these heads need LAPACK
    assert max(products) <= 25 + 22 * graph.arpack_restarts(n)  # the start's 25 products (ncv + 1), 22 a restart
