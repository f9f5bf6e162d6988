"""Every supported architecture, as a tiny random model saved locally (safetensors, offline):
the analysis matches transformers' own outputs, and each mitigation's hooks act on it."""
import shutil

import numpy as np
import pytest
import torch

import smoothviz
from smoothviz.mitigations import REGISTRY
from smoothviz.model.models import default_model_path

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            vocab_size=30522, max_position_embeddings=64)


# Modern decoders: grouped KV heads (4 query heads over 2), and where the family has them a sliding
# window shorter than the sentence (Mistral, Gemma 2/3) and logit soft-capping (Gemma 2).
DECODER = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
               intermediate_size=64, vocab_size=30522, max_position_embeddings=64)


def _config(kind):
    import transformers as tf
    if kind in DECODERS_NEW:
        extra = {"qwen3": dict(head_dim=8), "mistral": dict(sliding_window=4), "gemma": dict(head_dim=8),
                 "gemma2": dict(head_dim=8, sliding_window=4, attn_logit_softcapping=2.0),
                 "gemma3_text": dict(head_dim=8, sliding_window=4, layer_types=["sliding_attention", "full_attention"]),
                 "phi3": dict(pad_token_id=0)}.get(kind, {})
        cls = {"llama": tf.LlamaConfig, "qwen2": tf.Qwen2Config, "qwen3": tf.Qwen3Config,
               "mistral": tf.MistralConfig, "gemma": tf.GemmaConfig, "gemma2": tf.Gemma2Config, "gemma3_text": tf.Gemma3TextConfig,
               "phi3": tf.Phi3Config}[kind]
        return cls(**DECODER, **extra)
    if kind == "distilbert":
        return tf.DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=64, vocab_size=30522,
                                   max_position_embeddings=64)
    if kind == "gpt2":
        return tf.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=30522, n_positions=64)
    if kind == "albert":
        return tf.AlbertConfig(embedding_size=16, **TINY)
    return {"bert": tf.BertConfig, "roberta": tf.RobertaConfig, "xlm-roberta": tf.XLMRobertaConfig,
            "electra": tf.ElectraConfig, "mpnet": tf.MPNetConfig}[kind](**TINY)


DECODERS_NEW = ("llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2", "gemma3_text", "phi3")
DECODERS = ("gpt2", *DECODERS_NEW)   # causal, pre-norm
KINDS = ("bert", "roberta", "xlm-roberta", "electra", "distilbert", "albert", "mpnet", *DECODERS)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from transformers import AutoModel
    made = {}

    def make(kind):
        if kind not in made:
            path = tmp_path_factory.mktemp(kind)
            torch.manual_seed(0)
            AutoModel.from_config(_config(kind)).save_pretrained(path, safe_serialization=True)
            for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
                shutil.copy(default_model_path() / name, path / name)
            made[kind] = str(path)
        return made[kind]
    return make


SENTENCE = "Attention is a graph and stacking it smooths the tokens together."


@pytest.mark.parametrize("kind", KINDS)
def test_analysis_matches_transformers(kind, model_dir, matches_transformers):
    path = model_dir(kind)
    r = smoothviz.analyze(SENTENCE, model=path, device="cpu")
    matches_transformers(r, path, SENTENCE)
    decoder = kind in DECODERS
    assert r.causal == decoder
    if decoder:
        assert np.allclose(np.triu(r.baseline.attentions, 1), 0)
        assert any("lower-triangular" in n for n in r.notes)
    # Shi et al.'s bound is for post-LN blocks: the decoders are pre-LN, every encoder here post-LN
    assert (r.layernorm == "pre") == decoder
    assert all((v is None) == decoder for v in r.baseline.metric("shi_v")[1:])
    assert any("post-LN" in n for n in r.notes) == decoder
    # the final norm of a pre-norm model is a row of its own, never layer L
    assert (r.baseline.final_norm_row is not None) == decoder
    assert ("final_norm" in r.to_json()["baseline"]) == decoder


ACTIVE = {"neutreno": {"lambda": 0.5}, "softdecay": {"where": "every"}, "spectral": {"mode": "flip"},
          "attnscale": {"omega": 1.0}, "contranorm": {"s": 0.2}, "no-residual": {}, "heads": {"ablate": "1.0", "sink": "none"}}


@pytest.mark.parametrize("kind", KINDS)
def test_every_mitigation_acts_and_leaves_no_state(kind, model_dir):
    path = model_dir(kind)
    base = smoothviz.analyze(SENTENCE, model=path, device="cpu", heads=False)
    for name, params in ACTIVE.items():
        r = smoothviz.analyze(SENTENCE, model=path, device="cpu", mitigation=name, params=params, heads=False)
        assert not np.allclose(r.mitigated.hidden[-1], base.baseline.hidden[-1], atol=1e-4), name
        assert np.array_equal(r.baseline.hidden, base.baseline.hidden), name
    for name, cls in REGISTRY.items():  # every method that acts in the pass, at its declared neutral setting
        if not cls.in_forward:
            continue
        r = smoothviz.analyze(SENTENCE, model=path, device="cpu", mitigation=name, heads=False,
                              params=cls.neutral(base.n_layers))
        assert np.abs(r.mitigated.hidden - base.baseline.hidden).max() <= 1e-6, name


@pytest.mark.parametrize("kind", ("gpt2", "llama"))
def test_causal_attnscale_keeps_rows_causal(kind, model_dir):
    r = smoothviz.analyze(SENTENCE, model=model_dir(kind), device="cpu", mitigation="attnscale")
    A = r.mitigated.attentions
    assert np.allclose(np.triu(A, 1), 0) and np.allclose(A.sum(-1), 1, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_softdecay_official_placement_on_each_architecture(kind, model_dir):
    """ArchSpec.ffn_in and the last LayerNorm find LN(SVT(FFN(x) + x) + x) in every post-LN encoder;
    pre-LN GPT-2 has no such place and says to use where=last."""
    from smoothviz.mitigations import MitigationError
    path = model_dir(kind)
    params = {"where": "official"}
    if kind in DECODERS:
        with pytest.raises(MitigationError, match="pre-LN.*use where=last"):
            smoothviz.analyze(SENTENCE, model=path, device="cpu", mitigation="softdecay", params=params, heads=False)
        return
    r = smoothviz.analyze(SENTENCE, model=path, device="cpu", mitigation="softdecay", params=params, heads=False)
    assert np.array_equal(r.mitigated.hidden[:2], r.baseline.hidden[:2])
    assert not np.allclose(r.mitigated.hidden[2], r.baseline.hidden[2], atol=1e-4)
    # by hand: the baseline's FFN input x and last-LayerNorm input FFN(x) + x in the last block
    from smoothviz.model.handles import get_handle
    from smoothviz.mitigations.inference import soft_decay
    from smoothviz.model.models import get_module
    handle = get_handle(path, "cpu")
    block = get_module(handle.model, handle.spec.layers)[-1]
    ln = get_module(block, handle.spec.layernorms[-1])
    seen = {}
    hooks = [get_module(block, handle.spec.ffn_in).register_forward_pre_hook(lambda m, a: seen.setdefault("x", [])
                                                                             .append(a[0])),
             ln.register_forward_pre_hook(lambda m, a: seen.setdefault("s", []).append(a[0]))]
    try:
        inputs, _, _ = handle.encode(SENTENCE, None, [])
        with torch.no_grad():
            handle.model(**inputs)
            x, s = seen["x"][-1], seen["s"][-1]  # ALBERT's shared block runs twice: the last call
            assert torch.allclose(ln(s)[0], torch.tensor(r.baseline.hidden[2]), atol=1e-5)
            expected = ln(soft_decay(s, -0.6) + x)[0]
    finally:
        for hook in hooks:
            hook.remove()
    assert np.allclose(r.mitigated.hidden[2], expected.numpy(), atol=1e-5)
