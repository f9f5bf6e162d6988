"""SmoothViz's registered attention function against transformers' eager kernels, the attention-level
interventions on decoders (sink drop, AttnScale's visible-key DC, grouped value heads), the
attention-sink metrics by hand, and the embedded gemma-3-270m end to end."""

import shutil

import numpy as np
import pytest
import torch

import smoothviz
from smoothviz.model import attention, capture
from smoothviz.model.handles import get_handle
from smoothviz.model.models import default_model_path
from smoothviz.science import metrics

SENTENCE = "Attention is a graph and stacking it smooths the tokens together."


def _tiny(tmp_path, kind, **extra):
    import transformers as tf
    from transformers import AutoModel

    base = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        vocab_size=30522,
        max_position_embeddings=64,
    )
    if kind == "mpnet":
        base.pop("num_key_value_heads")
    if kind == "gemma3_text":
        base["head_dim"] = 8
    cls = {
        "llama": tf.LlamaConfig,
        "mistral": tf.MistralConfig,
        "mpnet": tf.MPNetConfig,
        "gemma3_text": tf.Gemma3TextConfig,
    }[kind]
    path = tmp_path / f"{kind}-{abs(hash(tuple(sorted(extra.items()))))}"
    if path.exists():
        return str(path)
    torch.manual_seed(0)
    AutoModel.from_config(cls(**base, **extra)).save_pretrained(path)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(default_model_path() / name, path / name)
    return str(path)


def test_the_function_equals_eager_with_groups_softcap_and_a_sliding_mask():
    """Direct call against transformers' Gemma 2 eager kernel (repeat_kv, tanh soft-cap, float mask)."""
    from transformers.models.gemma2.modeling_gemma2 import eager_attention_forward

    torch.manual_seed(1)
    B, h, kv, n, d = 2, 6, 2, 9, 8
    q, k, v = torch.randn(B, h, n, d), torch.randn(B, kv, n, d), torch.randn(B, kv, n, d)
    i = torch.arange(n)
    allowed = (i[None, :] <= i[:, None]) & (i[:, None] - i[None, :] < 3)  # causal, window 3
    mask = torch.zeros(B, 1, n, n).masked_fill(~allowed, torch.finfo(torch.float32).min)
    module = torch.nn.Module()
    module.num_key_value_groups, module.head_dim, module.training = h // kv, d, False
    want_out, want_p = eager_attention_forward(module, q, k, v, mask, scaling=0.3, softcap=2.0)
    out, p = attention.attention_forward(module, q, k, v, mask, scaling=0.3, softcap=2.0, sliding_window=3)
    assert torch.allclose(out, want_out, atol=1e-6) and torch.allclose(p, want_p, atol=1e-7)
    assert torch.all(p[..., ~allowed] == 0)


def test_registry_is_used_and_mpnet_keeps_the_fallback(tmp_path):
    for name in (_tiny(tmp_path, "llama"), "default"):  # a decoder, and MiniLM (BERT)
        model = get_handle(name, "cpu").model
        assert model.config._attn_implementation == attention.NAME and capture.uses_registry(model)
    mpnet = get_handle(_tiny(tmp_path, "mpnet"), "cpu").model  # MPNet does not call the registry
    assert mpnet.config._attn_implementation == "eager" and not capture.uses_registry(mpnet)


def test_sliding_window_reaches_the_recorded_probabilities(tmp_path):
    r = smoothviz.analyze(SENTENCE, model=_tiny(tmp_path, "mistral", sliding_window=4), device="cpu", heads=False)
    A = r.baseline.attentions  # [L, h, n, n]
    n = A.shape[-1]
    i = np.arange(n)
    outside = (i[None, :] > i[:, None]) | (i[:, None] - i[None, :] >= 4)
    assert np.all(A[..., outside] == 0) and np.allclose(A.sum(-1), 1, atol=1e-5)


def test_per_layer_callback_sees_every_layer_in_order(tmp_path):
    handle = get_handle(_tiny(tmp_path, "llama"), "cpu")
    inputs, _, _ = handle.encode(SENTENCE, None, [])
    seen = []
    trace = capture.run(handle.model, inputs, on_layer=lambda layer, p: seen.append((layer, p.clone())))
    assert [layer for layer, _ in seen] == [0, 1]
    assert torch.allclose(torch.stack([p[0] for _, p in seen]), trace.attentions)


def test_sink_drop_on_a_decoder_keeps_the_first_row_and_renormalises_the_rest(tmp_path):
    path = _tiny(tmp_path, "llama")
    r = smoothviz.analyze(SENTENCE, model=path, device="cpu", mitigation="heads", params={"sink": "drop"}, heads=False)
    special = np.array(r.special)
    assert special[0]  # [CLS] first: the first row sees only a dropped token
    A, B = r.mitigated.attentions, r.baseline.attentions
    assert np.allclose(A[:, :, 0], B[:, :, 0])  # row 0 as it was: 1 on itself
    assert np.all(A[:, :, 1:][..., special] == 0)  # no other row attends to a special token
    assert np.allclose(A.sum(-1), 1, atol=1e-5) and np.allclose(np.triu(A, 1), 0)
    # rows renormalised over what they may still see: A_ij = B_ij / Σ_{kept j' ≤ i} B_ij'
    layer0 = B[0, :, 1:][..., ~special]
    mit0 = A[0, :, 1:][..., ~special]
    assert np.allclose(mit0, layer0 / layer0.sum(-1, keepdims=True), atol=1e-5)
    assert any("first token sees only itself" in n for n in r.notes)


def test_attnscale_dc_is_uniform_over_the_keys_a_row_may_see():
    """The registry path's A_DC: 1/(i+1) on a causal row, 1/window on a sliding one, never 1/n."""
    from smoothviz.mitigations import make
    from smoothviz.mitigations.base import ModelContext

    iv = make("attnscale", {"omega": 1.0}).intervention(
        ModelContext(
            n_layers=1,
            heads=1,
            causal=True,
            residual=True,
            w_v=torch.zeros(1),
            w_o=torch.zeros(1),
            b_o=torch.zeros(1),
            registry=True,
        )
    )
    n = 5
    i = torch.arange(n)
    seen = ((i[None, :] <= i[:, None]) & (i[:, None] - i[None, :] < 3))[None, None]
    A = torch.softmax(torch.randn(1, 1, n, n).masked_fill(~seen, float("-inf")), -1)
    out = iv.probs(0, A, seen)
    dc = seen.double() / seen.sum(-1, keepdim=True)
    assert torch.allclose(out.double(), dc + 2 * (A.double() - dc), atol=1e-6)
    assert torch.all(out[~seen.expand_as(out)] == 0)  # no weight on a future or far key
    assert torch.allclose(out.sum(-1), torch.ones(1, 1, n))


def test_grouped_value_heads_in_dovonons_products(tmp_path):
    """Query head i reads value head i // (h / h_kv): W_V^i is that head's rows."""
    from smoothviz.model.models import get_module
    from smoothviz.model.weights import value_output_weights

    handle = get_handle(_tiny(tmp_path, "llama"), "cpu")
    w_v, w_o = value_output_weights(handle.model, handle.spec, 2, heads=4)
    v_proj = get_module(get_module(handle.model, "layers")[0], "self_attn.v_proj").weight  # [2*8, 32]
    assert w_v.shape == (2, 32, 32) and w_o.shape == (2, 32, 32)
    for head in range(4):
        assert torch.equal(w_v[0, head * 8 : (head + 1) * 8], v_proj[(head // 2) * 8 : (head // 2 + 1) * 8])


def test_no_residual_on_gemma_removes_the_skip_after_the_post_attention_norm(tmp_path):
    """Gemma adds norm(attention) to the block input: β = 0 leaves h = p + FFN-part(p), p that norm's output."""
    from smoothviz.model.models import get_module

    path = _tiny(tmp_path, "gemma3_text")
    handle = get_handle(path, "cpu")
    block = get_module(handle.model, "layers")[0]
    seen = {}
    hook = block.post_attention_layernorm.register_forward_hook(lambda m, a, o: seen.setdefault("p", o))
    try:
        base = smoothviz.analyze(SENTENCE, model=path, device="cpu", heads=False)
    finally:
        hook.remove()
    r = smoothviz.analyze(
        SENTENCE, model=path, device="cpu", mitigation="no-residual", params={"residual": 0}, heads=False
    )
    p = seen["p"]
    with torch.no_grad():
        expected = p + block.post_feedforward_layernorm(block.mlp(block.pre_feedforward_layernorm(p)))
    assert np.allclose(r.mitigated.hidden[1], expected[0].numpy(), atol=1e-5)
    assert not np.allclose(r.mitigated.hidden[1], base.baseline.hidden[1], atol=1e-3)


def test_sink_metrics_by_hand(tmp_path):
    r = smoothviz.analyze(SENTENCE, model=_tiny(tmp_path, "llama"), device="cpu", heads=False, exclude_special=True)
    A = r.baseline.attentions.astype(np.float64)  # every token, specials kept
    col = A[..., 0]  # [L, h, n]
    assert r.baseline.rows[0]["first_token_mass"] is None and r.baseline.rows[0]["sink_rate"] is None
    for layer in range(1, r.n_layers + 1):
        row = r.baseline.rows[layer]
        assert row["first_token_mass"] == pytest.approx(col[layer - 1].mean(), abs=1e-6)
        assert row["sink_rate"] == pytest.approx((col[layer - 1].mean(-1) > 0.3).mean())
    # the received shares of the sink view sum to 1 over the tokens in every layer
    from smoothviz.science.sinks import received, uniform_share

    assert np.allclose(received(r.baseline).sum(-1), 1) and np.allclose(received(r.baseline)[:, 0], col.mean((-1, -2)))
    assert uniform_share(4, True) == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)
    from smoothviz.science.sinks import FLOOR, sink_heatmap, sink_table

    fig = sink_heatmap(r.baseline, r.tokens)  # layers down, every token across
    share = received(r.baseline)
    assert np.allclose(np.asarray(fig.data[0].z, dtype=float), np.log10(np.clip(share, FLOOR, None)), atol=1e-3)
    assert len(fig.data[0].x) == len(r.tokens) and list(fig.data[0].y) == list(range(1, r.n_layers + 1))
    rows = sink_table(r)
    assert len(rows) == r.n_layers and rows[0]["0 · " + r.tokens[0]] == pytest.approx(share[0, 0], abs=1e-4)


def test_centred_cosine_by_hand():
    H = torch.tensor([[[10.0, 1.0, 0.0], [10.0, 0.0, 1.0], [10.0, -1.0, -1.0]]], dtype=torch.float64)
    C = H - H.mean(-2, keepdim=True)
    U = C / C.norm(dim=-1, keepdim=True)
    S = U @ U.transpose(-1, -2)
    expected = (S.sum() - 3) / 6
    assert metrics.cosine_centred(H).item() == pytest.approx(expected.item())
    assert metrics.cosine_mean(H).item() > 0.98  # the shared dimension dominates


def test_final_norm_row_is_the_models_own_norm_of_layer_L(tmp_path):
    path = _tiny(tmp_path, "llama")
    r = smoothviz.analyze(SENTENCE, model=path, device="cpu", heads=False)
    handle = get_handle(path, "cpu")
    with torch.no_grad():
        normed = handle.model.norm(torch.tensor(r.baseline.hidden[-1])).double()
    # (RMSNorm rescales each token: cosines stay, the distance to the mean token does not)
    assert r.baseline.final_norm_row["dm_rel"] == pytest.approx(metrics.dm_rel(normed).item(), abs=1e-6)
    assert r.baseline.final_norm_row["dm_rel"] != pytest.approx(r.baseline.rows[-1]["dm_rel"], abs=1e-4)
    assert "final_norm" in r.to_json()["baseline"] and len(r.baseline.rows) == r.n_layers + 1


def test_a_gguf_path_that_is_not_a_file_is_refused():
    from smoothviz.model.models import ModelError, resolve

    with pytest.raises(ModelError, match="not a GGUF file"):
        resolve("/no/such/model.gguf")


@pytest.mark.slow
def test_gemma_3_270m_end_to_end():
    """The embedded decoder: 18 layers, 4 query heads over 1 KV head, <bos> first; its last layer
    is an attention sink on this sentence (the Lesson's and the Theory page's numbers)."""
    from smoothviz.words.lesson import SINK_SENTENCE

    a = smoothviz.analyze(SINK_SENTENCE, model="gemma-3-270m", device="cpu")
    handle = get_handle("gemma-3-270m", "cpu")
    assert handle.model.config.num_key_value_heads == 1 and a.heads == 4 and a.n_layers == 18
    assert a.tokens[0] == "<bos>" and a.causal and a.layernorm == "pre"
    assert a.baseline.final_norm_row is not None
    A = a.baseline.attentions
    assert np.allclose(np.triu(A, 1), 0) and np.allclose(A.sum(-1), 1, atol=1e-4)
    mass = a.baseline.metric("first_token_mass")
    assert mass[0] is None and mass[-1] == pytest.approx(A[-1][..., 0].mean(), abs=1e-6)
    assert mass[-1] > 0.5  # a sink, far above its uniform share
    row = a.baseline.rows[-1]
    assert row["cosine_mean"] > 0.9 and row["dm_rel"] > 0.1  # high cosine without collapse
    from smoothviz.words import trends

    assert "not the tokens becoming alike" in " ".join(trends.trend_lines(a, {"baseline": "baseline"}))


@pytest.mark.slow
def test_gemma_3_270m_on_the_page_with_the_sink_view_and_on_the_cli():
    import json
    import subprocess
    import sys
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from smoothviz.outputs.views import SECTIONS
    from smoothviz.words.lesson import SINK_SENTENCE

    root = Path(__file__).resolve().parent.parent
    at = AppTest.from_file(str(root / "app" / "SmoothViz.py"), default_timeout=900)
    for key, value in {
        "model": "gemma-3-270m",
        "text": SINK_SENTENCE,
        "mit": "none",
        "section": SECTIONS["atlas"],
    }.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    captions = " ".join(c.value for c in at.caption)
    assert "18 layers × 4 heads" in captions and "attention sink" in captions
    assert "receives 0.70 of all attention" in captions.replace("\\", "")
    out = subprocess.run(
        [sys.executable, "-m", "smoothviz", "analyze", SINK_SENTENCE, "--model", "gemma-3-270m", "--json"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out.stdout)
    assert len(data["baseline"]["layers"]) == 19 and "final_norm" in data["baseline"]
    assert data["baseline"]["layers"][-1]["first_token_mass"] == pytest.approx(0.70, abs=0.01)


def test_attnscale_records_what_the_model_mixed_with_on_a_sliding_window(tmp_path):
    """Beyond the window a row's A_DC is 1/window, not 1/(i+1): the recorded A′ is the one applied."""
    r = smoothviz.analyze(
        SENTENCE,
        model=_tiny(tmp_path, "mistral", sliding_window=4),
        device="cpu",
        mitigation="attnscale",
        params={"omega": 1.0},
        heads=False,
    )
    S = r.mitigated.softmax.astype(np.float64)  # the mitigated run's own softmax
    n = S.shape[-1]
    i = np.arange(n)
    seen = (i[None, :] <= i[:, None]) & (i[:, None] - i[None, :] < 4)
    dc = seen / seen.sum(-1, keepdims=True)
    assert np.allclose(r.mitigated.attentions, dc + 2 * (S - dc), atol=1e-5)
    assert np.all(r.mitigated.attentions[..., ~seen] == 0)


@pytest.mark.parametrize("name, params", [("neutreno", {"lambda": 0.5}), ("attnscale", {"omega": 0.5})])
def test_the_hook_fallback_reads_grouped_values_as_the_registry_does(tmp_path, name, params):
    """A model that bypasses the registry (StableLM does, with grouped KV heads) gets its values from a
    hook on v_proj, h_kv·d_h wide: each KV head's values are repeated for its query heads, so the
    per-head interventions match the registry path. The same Llama weights (4 query heads over 2) run
    both ways: transformers' eager model with the fallback hooks, and SmoothViz's registered function."""
    import dataclasses

    from transformers import AutoModel

    from smoothviz.mitigations import make

    path = _tiny(tmp_path, "llama")
    handle = get_handle(path, "cpu")
    eager = AutoModel.from_pretrained(path, attn_implementation="eager").eval()
    capture.install(eager, handle.spec)
    assert capture.uses_registry(handle.model) and not capture.uses_registry(eager)
    inputs, _, _ = handle.encode(SENTENCE, None, [])
    ctx = handle.context()
    mitigation = make(name, params)
    a = capture.run(handle.model, inputs, mitigation.intervention(ctx))
    b = capture.run(eager, inputs, mitigation.intervention(dataclasses.replace(ctx, registry=False)))
    base = capture.run(handle.model, inputs)
    assert torch.allclose(a.hidden, b.hidden, atol=1e-5)
    assert not torch.allclose(a.hidden[-1], base.hidden[-1], atol=1e-4)


def test_a_registry_bypassing_decoder_with_grouped_heads_takes_every_mitigation(tmp_path):
    """StableLM (derived from its modules, hook fallback, 4 query heads over 2 KV heads): its states
    and attention equal transformers' eager pass, and NeuTRENO and AttnScale act (they failed on
    the value width before)."""
    import transformers as tf
    from transformers import AutoModel

    path = tmp_path / "stablelm"
    torch.manual_seed(0)
    AutoModel.from_config(
        tf.StableLmConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=64,
            vocab_size=30522,
        )
    ).save_pretrained(path)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(default_model_path() / name, path / name)
    assert not capture.uses_registry(get_handle(str(path), "cpu").model)
    base = smoothviz.analyze(SENTENCE, model=str(path), device="cpu", heads=False)
    for name, params in (("neutreno", {"lambda": 0.5}), ("attnscale", {"omega": 0.5})):
        r = smoothviz.analyze(SENTENCE, model=str(path), device="cpu", mitigation=name, params=params, heads=False)
        assert np.array_equal(r.baseline.hidden, base.baseline.hidden)
        assert not np.allclose(r.mitigated.hidden[-1], base.baseline.hidden[-1], atol=1e-4), name
