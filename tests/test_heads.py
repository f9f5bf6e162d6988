"""The ``heads`` mitigation (issue 13) against a BertLayer run by hand on the default model."""

import math

import numpy as np
import pytest
import torch

import smoothviz
from smoothviz.mitigations import MitigationError, make
from smoothviz.model.handles import get_handle

TEXT = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def bert():
    return get_handle("default", "cpu", None).model


@pytest.fixture(scope="module")
def baseline():
    return smoothviz.analyze(TEXT, device="cpu")


def by_hand(block, x, cut=(), key_mask=None):
    """One BertLayer, written out: attention (heads in ``cut`` zeroed before the output
    projection; keys outside ``key_mask`` masked), Add & LayerNorm, FFN, Add & LayerNorm."""
    sa, n_heads = block.attention.self, 12
    n, d = x.shape
    d_h = d // n_heads
    split = lambda t: t.view(n, n_heads, d_h).transpose(0, 1)  # noqa: E731
    q, k, v = split(sa.query(x)), split(sa.key(x)), split(sa.value(x))
    logits = q @ k.transpose(-1, -2) / math.sqrt(d_h)
    if key_mask is not None:
        logits = logits.masked_fill(~key_mask, float("-inf"))
    A = logits.softmax(-1)
    ctx = A @ v  # [h, n, d_h]
    for head in cut:
        ctx[head] = 0
    ctx = ctx.transpose(0, 1).reshape(n, d)
    h = block.attention.output.LayerNorm(block.attention.output.dense(ctx) + x)
    f = block.output.dense(block.intermediate(h))
    return block.output.LayerNorm(f + h), A


def test_ablated_head_is_zeroed_before_the_output_projection(bert, baseline):
    r = smoothviz.analyze(TEXT, device="cpu", mitigation="heads", params={"ablate": "3.4,3.7", "sink": "none"})
    m = r.mitigated
    # layers before 3 are untouched
    assert np.array_equal(m.hidden[:3], baseline.baseline.hidden[:3])
    with torch.no_grad():
        out, _ = by_hand(bert.encoder.layer[2], torch.tensor(m.hidden[2]), cut=(4, 7))
        plain, _ = by_hand(bert.encoder.layer[2], torch.tensor(m.hidden[2]))
    assert np.allclose(m.hidden[3], out.numpy(), atol=1e-5)
    assert not np.allclose(m.hidden[3], plain.numpy(), atol=1e-3)  # the ablation does something


def test_ablated_heads_leave_the_head_mean_graph(baseline):
    r = smoothviz.analyze(TEXT, device="cpu", mitigation="heads", params={"ablate": "2.0,2.5", "sink": "none"})
    m = r.mitigated
    A = m.attentions[1]  # layer 2, all tokens kept
    kept = [h for h in range(12) if h not in (0, 5)]
    mean = A[kept].mean(0).astype(np.float64)
    assert np.allclose(m.layer_graph[1], (mean + mean.T) / 2, atol=1e-6)
    assert m.kept_heads[1].tolist() == [h in kept for h in range(12)]
    full = A.mean(0)
    assert not np.allclose(m.layer_graph[1], (full + full.T) / 2, atol=1e-4)
    # other layers: the plain mean of all heads
    A3 = m.attentions[2].mean(0)
    assert np.allclose(m.layer_graph[2], (A3 + A3.T) / 2, atol=1e-6)
    # the networkx graph of the layer uses the same mean
    G = r.graph(2, run="mitigated", top_k=None)
    assert G.number_of_nodes() == len(r.keep)


def test_a_layer_without_heads_has_null_graph_metrics():
    every = ",".join(f"4.{h}" for h in range(12))
    r = smoothviz.analyze(TEXT, device="cpu", mitigation="heads", params={"ablate": every, "sink": "none"})
    rows = r.mitigated.rows
    assert rows[4]["spectral_gap"] is None and rows[4]["dirichlet"] is None
    assert all(rows[l]["rollout_ratio"] is None for l in (4, 5, 6))
    assert rows[3]["spectral_gap"] is not None and rows[5]["spectral_gap"] is not None
    assert rows[4]["cosine_mean"] is not None  # state metrics do not read the graph
    assert any("layer 4 is ablated" in n for n in r.notes)


def test_sink_drop_is_the_attention_the_model_computes_with(bert, baseline):
    r = smoothviz.analyze(TEXT, device="cpu", mitigation="heads", params={"sink": "drop"})
    m, special = r.mitigated, np.array(r.special)
    assert special.sum() == 2
    assert np.all(m.attentions[..., special] == 0)  # no weight on [CLS]/[SEP], every layer
    assert np.allclose(m.attentions.sum(-1), 1, atol=1e-5)  # rows renormalised
    # layer 1: the baseline's attention with the special columns removed and rows renormalised
    A0 = baseline.baseline.attentions[0].copy()
    A0[..., special] = 0
    assert np.allclose(m.attentions[0], A0 / A0.sum(-1, keepdims=True), atol=1e-5)
    # a later layer, by hand: the next state is computed with that attention
    keys = torch.tensor(~special)
    with torch.no_grad():
        out, A = by_hand(bert.encoder.layer[3], torch.tensor(m.hidden[3]), key_mask=keys)
    assert np.allclose(m.attentions[3], A.numpy(), atol=1e-5)
    assert np.allclose(m.hidden[4], out.numpy(), atol=1e-4)
    # the graphs are those of the attention used
    mean = m.attentions[3].mean(0).astype(np.float64)
    assert np.allclose(m.layer_graph[3], (mean + mean.T) / 2, atol=1e-6)


def test_sink_drop_on_the_lab_model():
    r = smoothviz.analyze(TEXT, model="lab", device="cpu", mitigation="heads", params={"sink": "drop"})
    special = np.array(r.special)
    assert np.all(r.mitigated.attentions[..., special] == 0)
    assert np.allclose(r.mitigated.attentions.sum(-1), 1, atol=1e-5)


def test_neutral_is_the_baseline(baseline):
    r = smoothviz.analyze(TEXT, device="cpu", mitigation="heads", params={"ablate": " ", "sink": "none"})
    assert r.mitigated.rows == baseline.baseline.rows


@pytest.mark.parametrize(
    "ablate, message",
    [("7.0", "layers 1..6"), ("1.12", "heads 0..11"), ("3-1", "like 3.0,5.11"), ("0.1", "count from 1")],
)
def test_bad_ablate_is_a_clear_error(ablate, message):
    with pytest.raises(MitigationError, match=message.replace(".", r"\.")):
        smoothviz.analyze(TEXT, device="cpu", mitigation="heads", params={"ablate": ablate})


def test_bad_syntax_fails_before_any_model():
    with pytest.raises(MitigationError):
        make("heads", {"ablate": "3;1"})
    with pytest.raises(MitigationError):
        make("heads", {"sink": "keep"})


def test_the_atlas_ablates_the_chosen_head_and_restores_it():
    """On the page: pick a cell of the head × layer atlas, press Ablate: every view is redrawn with
    the heads mitigation zeroing that head; press again to restore it."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app" / "SmoothViz.py"), default_timeout=300)
    app.run()
    from smoothviz.outputs.views import SECTIONS

    app.session_state["section"] = SECTIONS["atlas"]  # open the atlas's tab
    app.run()
    app.selectbox(key="atlas_layer").set_value(3).run()
    app.selectbox(key="atlas_head").set_value(5).run()
    app.button(key="ablate").click().run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert app.selectbox(key="mit").value == "heads" and app.text_input(key="heads_ablate").value == "3.5"
    assert app.selectbox(key="heads_sink").value == "none"
    assert any("heads (ablate=3.5" in c.value.replace("\\", "") for c in app.caption)  # the mitigated run, named
    assert app.button(key="ablate").label == "Restore this head"
    app.button(key="ablate").click().run()
    assert app.text_input(key="heads_ablate").value == ""
