"""Every supported architecture, as a tiny random model saved locally (safetensors, offline):
the analysis matches transformers' own outputs, and each mitigation's hooks act on it."""

import shutil

import numpy as np
import pytest
import torch

import smoothviz
from smoothviz.mitigations import REGISTRY
from smoothviz.model.models import default_model_path

TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    vocab_size=30522,
    max_position_embeddings=64,
)


# Modern decoders: grouped KV heads (4 query heads over 2), and where the family has them a sliding
# window shorter than the sentence (Mistral, Gemma 2/3) and logit soft-capping (Gemma 2).
DECODER = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=64,
    vocab_size=30522,
    max_position_embeddings=64,
)


def _config(kind):
    import transformers as tf

    if kind in DECODERS_NEW:
        extra = {
            "qwen3": dict(head_dim=8),
            "mistral": dict(sliding_window=4),
            "gemma": dict(head_dim=8),
            "gemma2": dict(head_dim=8, sliding_window=4, attn_logit_softcapping=2.0),
            "gemma3_text": dict(head_dim=8, sliding_window=4, layer_types=["sliding_attention", "full_attention"]),
            "phi3": dict(pad_token_id=0),
        }.get(kind, {})
        cls = {
            "llama": tf.LlamaConfig,
            "qwen2": tf.Qwen2Config,
            "qwen3": tf.Qwen3Config,
            "mistral": tf.MistralConfig,
            "gemma": tf.GemmaConfig,
            "gemma2": tf.Gemma2Config,
            "gemma3_text": tf.Gemma3TextConfig,
            "phi3": tf.Phi3Config,
        }[kind]
        return cls(**DECODER, **extra)
    if kind == "distilbert":
        return tf.DistilBertConfig(
            dim=32, n_layers=2, n_heads=4, hidden_dim=64, vocab_size=30522, max_position_embeddings=64
        )
    if kind == "gpt2":
        return tf.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=30522, n_positions=64)
    if kind == "albert":
        return tf.AlbertConfig(embedding_size=16, **TINY)
    return {
        "bert": tf.BertConfig,
        "roberta": tf.RobertaConfig,
        "xlm-roberta": tf.XLMRobertaConfig,
        "electra": tf.ElectraConfig,
        "mpnet": tf.MPNetConfig,
    }[kind](**TINY)


DECODERS_NEW = ("llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2", "gemma3_text", "phi3")
DECODERS = ("gpt2", *DECODERS_NEW)  # causal, pre-norm
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


ACTIVE = {
    "neutreno": {"lambda": 0.5},
    "softdecay": {"where": "every"},
    "spectral": {"mode": "flip"},
    "attnscale": {"omega": 1.0},
    "contranorm": {"s": 0.2},
    "no-residual": {},
    "heads": {"ablate": "1.0", "sink": "none"},
}


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
        r = smoothviz.analyze(
            SENTENCE, model=path, device="cpu", mitigation=name, heads=False, params=cls.neutral(base.n_layers)
        )
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
    from smoothviz.mitigations.inference import soft_decay
    from smoothviz.model.handles import get_handle
    from smoothviz.model.models import get_module

    handle = get_handle(path, "cpu")
    block = get_module(handle.model, handle.spec.layers)[-1]
    ln = get_module(block, handle.spec.layernorms[-1])
    seen = {}
    hooks = [
        get_module(block, handle.spec.ffn_in).register_forward_pre_hook(
            lambda m, a: seen.setdefault("x", []).append(a[0])
        ),
        ln.register_forward_pre_hook(lambda m, a: seen.setdefault("s", []).append(a[0])),
    ]
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


# --------------------------------------------------------------------------- by path: Python API and CLI


def _cosine_mean(H: np.ndarray) -> float:
    """Mean cosine over ordered pairs i ≠ j, by hand."""
    U = H / np.linalg.norm(H, axis=-1, keepdims=True)
    n = len(H)
    return float(((U @ U.T).sum() - n) / (n * (n - 1)))


def _dm_rel(H: np.ndarray) -> float:
    """‖H − 1·mean‖_F / ‖H‖_F, by hand."""
    return float(np.linalg.norm(H - H.mean(0)) / np.linalg.norm(H))


def _eager(path: str, text: str):
    """transformers' own eager pass: (hidden states as transformers returns them, block L's output,
    attentions), batch dimension dropped."""
    from transformers import AutoModel, AutoTokenizer

    from smoothviz.model.models import ARCHITECTURES, get_module

    model = AutoModel.from_pretrained(path, attn_implementation="eager").eval()
    seen = []
    hook = get_module(model, ARCHITECTURES[model.config.model_type].layers)[-1].register_forward_hook(
        lambda m, a, o: seen.append(o[0] if isinstance(o, tuple) else o)
    )
    try:
        with torch.no_grad():
            out = model(
                **AutoTokenizer.from_pretrained(path)(text, return_tensors="pt"),
                output_hidden_states=True,
                output_attentions=True,
            )
    finally:
        hook.remove()
    return (
        [h[0].double().numpy() for h in out.hidden_states],
        seen[-1][0].double().numpy(),
        torch.stack(out.attentions)[:, 0].double().numpy(),
    )


@pytest.mark.parametrize("kind", DECODERS)
def test_a_decoder_directory_by_path_keeps_the_state_convention(kind, model_dir, capsys):
    """Layer 0 is block 1's input and layer l block l's output, for every l, against transformers'
    own hidden states: transformers' h_0…h_{L−1} as they are; its last one is the final norm's
    output in a pre-norm model (GPT-2's ln_f too), which SmoothViz keeps as a row of its own, and
    layer L is block L's output before it. Through the Python API and ``analyze --json`` by path."""
    from smoothviz import cli

    path = model_dir(kind)
    states, block_L, A = _eager(path, SENTENCE)
    L = len(A)
    r = smoothviz.analyze(SENTENCE, model=path, device="cpu", heads=False)
    assert r.n_layers == L and r.baseline.hidden.shape[0] == L + 1
    assert np.allclose(r.baseline.hidden[:L], np.stack(states[:L]), atol=1e-5)  # transformers' own h_0…h_{L−1}
    assert np.allclose(r.baseline.hidden[L], block_L, atol=1e-5)  # block L's output …
    assert not np.allclose(r.baseline.hidden[L], states[L], atol=1e-3)  # … not transformers' last
    assert np.allclose(r.baseline.final_norm, states[L], atol=1e-5)  # which is the final norm's
    assert np.allclose(r.baseline.attentions, A, atol=1e-6)

    assert cli.run(["analyze", SENTENCE, "--model", path, "--json", "--device", "cpu"]) == 0
    data = __import__("json").loads(capsys.readouterr().out)
    layers = data["baseline"]["layers"]
    assert [row["layer"] for row in layers] == list(range(L + 1))
    for layer, row in enumerate(layers):
        H = states[layer] if layer < L else block_L
        assert row["cosine_mean"] == pytest.approx(_cosine_mean(H), abs=1e-5)
        assert row["dm_rel"] == pytest.approx(_dm_rel(H), abs=1e-5)
        if layer:
            assert row["first_token_mass"] == pytest.approx(A[layer - 1][..., 0].mean(), abs=1e-5)
    final = data["baseline"]["final_norm"]
    assert final["dm_rel"] == pytest.approx(_dm_rel(states[L]), abs=1e-5)
    assert final["cosine_mean"] == pytest.approx(_cosine_mean(states[L]), abs=1e-5)
    assert final["dm_rel"] != pytest.approx(layers[-1]["dm_rel"], abs=1e-4)  # a different state


# --------------------------------------------------------------------------- a GGUF file by path

GGUF_WORDS = SENTENCE.replace(".", " .").split()


def _gguf_vocabulary() -> list[str]:
    """A small sentencepiece vocabulary: <unk>, <s>, </s>, then every prefix and letter of the
    sentence's words (▁-marked), so that each word is one token."""
    pieces = set()
    for word in GGUF_WORDS:
        word = "\u2581" + word
        pieces.update(word[:i] for i in range(1, len(word) + 1))
        pieces.update(word)
    return ["<unk>", "<s>", "</s>", *sorted(pieces, key=lambda p: (len(p), p))]


def _llama_qk_permutation(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf ``permute`` of Q and K rows (rotary halves interleaved),
    which transformers' GGUF loader undoes (``LlamaTensorProcessor._reverse_permute_weights``)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _write_gguf(model, path, arch: str, permute: bool = True) -> None:
    """Write a transformers base model to a float32 GGUF file with gguf's own writer, as llama.cpp's
    converter names and lays out the tensors."""
    import gguf

    cfg, vocab = model.config, _gguf_vocabulary()
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    rope = cfg.rope_parameters
    writer.add_rope_freq_base((rope.get("full_attention") or rope)["rope_theta"])  # Gemma 3: one per layer type
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    writer.add_rope_dimension_count(head_dim)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    if getattr(cfg, "sliding_window", None):
        writer.add_sliding_window(cfg.sliding_window)
    writer.add_vocab_size(len(vocab))
    writer.add_tokenizer_model("llama")
    writer.add_token_list(vocab)
    writer.add_token_scores([0.0] * 3 + [-float(i) for i in range(len(vocab) - 3)])
    writer.add_token_types([2, 3, 3] + [1] * (len(vocab) - 3))  # unknown, control, control, normal
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_pad_token_id(0)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], cfg.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        module, suffix = name.rsplit(".", 1)
        target = names.get_name("model." + module)
        data = tensor.detach().float().numpy()
        if arch.startswith("gemma") and suffix == "weight" and "norm" in target:
            data = data + 1  # llama.cpp stores Gemma's RMSNorm scale as 1 + w
        if permute and arch == "llama" and target.endswith(("attn_q", "attn_k")):
            data = _llama_qk_permutation(
                data, cfg.num_attention_heads if target.endswith("attn_q") else cfg.num_key_value_heads
            )
        writer.add_tensor(f"{target}.{suffix}", np.ascontiguousarray(data))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


# family -> (llama.cpp's GGUF architecture, extra config). Mistral is written as llama.cpp writes it, as
# "llama"; Qwen3 with its family's head_dim of 128 (transformers reads no head_dim from a Qwen3 file);
# Gemma 2/3 with head_dim ≠ hidden/heads and a sliding window (their GGUF layer pattern: every layer of
# a 2-layer model slides), the RMSNorm scales stored as 1 + w.
GGUF_FAMILIES = {
    "llama": ("llama", {}),
    "qwen2": ("qwen2", {}),
    "mistral": ("llama", {}),
    "qwen3": ("qwen3", dict(head_dim=128)),
    "gemma2": ("gemma2", dict(head_dim=16, sliding_window=4)),
    "gemma3_text": ("gemma3", dict(head_dim=16, sliding_window=4)),
    "phi3": ("phi3", dict(pad_token_id=0)),
}


@pytest.mark.parametrize("kind", GGUF_FAMILIES)
def test_a_gguf_file_of_another_family_loads_by_path(kind, tmp_path, monkeypatch, capsys):
    """A small random model of each family (a Llama's Q/K rows permuted as llama.cpp writes them, a
    Qwen2 with biases) written to GGUF, analysed by path (``--model x.gguf``): dequantised once into
    SmoothViz's cache, its states and attention are those of the model it was written from, under
    transformers' eager pass."""
    from transformers import AutoModel, AutoTokenizer

    from smoothviz import cli
    from smoothviz.model.handles import get_handle

    monkeypatch.setenv("SMOOTHVIZ_CACHE_DIR", str(tmp_path / "cache"))
    arch, extra = GGUF_FAMILIES[kind]
    config = _config(kind).__class__(
        **{**DECODER, "vocab_size": len(_gguf_vocabulary())}, bos_token_id=1, eos_token_id=2, **extra
    )
    torch.manual_seed(0)
    model = AutoModel.from_config(config).eval()
    if kind == "qwen2":  # random biases on q, k, v, so that a lost one shows
        for block in model.layers:
            for proj in (block.self_attn.q_proj, block.self_attn.k_proj, block.self_attn.v_proj):
                torch.nn.init.normal_(proj.bias)
    if kind.startswith("gemma"):  # random norm scales, so that a lost + 1 shows
        for name, param in model.named_parameters():
            if "norm" in name:
                torch.nn.init.normal_(param, std=0.5)
    gguf_path = tmp_path / f"tiny-{kind}.gguf"
    _write_gguf(model, gguf_path, arch)

    r = smoothviz.analyze(SENTENCE, model=str(gguf_path), device="cpu", heads=False)
    assert r.tokens[0] == "<s>"
    if arch == "llama":  # (transformers builds Qwen2's and Gemma's tokenizer from the same vocabulary letter by letter)
        assert len(r.tokens) == len(GGUF_WORDS) + 1  # one token per word
    ids = AutoTokenizer.from_pretrained(tmp_path, gguf_file=gguf_path.name)(SENTENCE, return_tensors="pt")
    assert ids["input_ids"][0].tolist() == get_handle(str(gguf_path), "cpu").tokenizer(SENTENCE)["input_ids"]
    model.config._attn_implementation = "eager"
    seen = []
    hook = model.layers[-1].register_forward_hook(lambda m, a, o: seen.append(o[0] if isinstance(o, tuple) else o))
    with torch.no_grad():
        out = model(**ids, output_hidden_states=True, output_attentions=True)
    hook.remove()
    states = torch.stack([*out.hidden_states[:-1], seen[-1]])[:, 0].numpy()
    assert np.allclose(r.baseline.hidden, states, atol=1e-5)
    assert np.allclose(r.baseline.attentions, torch.stack(out.attentions)[:, 0].numpy(), atol=1e-6)
    assert np.allclose(r.baseline.final_norm, out.hidden_states[-1][0].numpy(), atol=1e-5)
    assert len(list((tmp_path / "cache" / "gguf").glob("*/model.safetensors"))) == 1  # dequantised once

    assert cli.run(["analyze", SENTENCE, "--model", str(gguf_path), "--json", "--device", "cpu"]) == 0
    data = __import__("json").loads(capsys.readouterr().out)
    assert data["tokens"] == r.tokens and data["causal"] is True
    assert data["baseline"]["layers"][-1]["dm_rel"] == pytest.approx(_dm_rel(states[-1].astype(np.float64)), abs=1e-5)
    assert len(list((tmp_path / "cache" / "gguf").glob("*/model.safetensors"))) == 1  # the cache, reused


def test_a_llama_gguf_without_llama_cpps_permutation_is_another_model(tmp_path):
    """The check above can fail: Q and K written unpermuted load as a different model (rotary halves
    mixed), whose states leave the original's after the first block."""
    import transformers as tf
    from transformers import AutoModel

    config = tf.LlamaConfig(**{**DECODER, "vocab_size": len(_gguf_vocabulary())}, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    model = AutoModel.from_config(config).eval()
    _write_gguf(model, tmp_path / "wrong.gguf", "llama", permute=False)
    loaded = AutoModel.from_pretrained(tmp_path, gguf_file="wrong.gguf", dtype=torch.float32).eval()
    ids = torch.tensor([[1, 5, 9, 12, 7]])
    with torch.no_grad():
        a, b = (m(input_ids=ids, output_hidden_states=True).hidden_states for m in (model, loaded))
    assert torch.equal(a[0], b[0]) and not torch.allclose(a[-1], b[-1], atol=1e-4)


# --------------------------------------------------------------------------- compare, corpus, animate, page

LINES = [SENTENCE, "A short one.", "Stacking many attention layers pulls every token toward the same vector."]


def _close(a, b) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and a == pytest.approx(b, rel=1e-4, abs=1e-5))


def test_compare_and_corpus_on_a_decoder_directory(model_dir):
    """Gemma 3 (sliding window of 4, shorter than the lines) beside the default encoder over relative
    depth; and a corpus of lines of three lengths in one padded pass, each line's rows equal to its
    own analysis (right padding is exact for a causal model: no real token sees a padded one)."""
    from smoothviz.corpora.run import BatchAnalyser, settings_of
    from smoothviz.outputs import figures
    from smoothviz.pipeline.compare import compare

    path = model_dir("gemma3_text")
    alone = {text: smoothviz.analyze(text, model=path, device="cpu", heads=False) for text in LINES}
    c = compare(SENTENCE, [f"model={path}", "model=default"], device="cpu", heads=False)
    runs = c.to_json()["runs"]
    mine = alone[SENTENCE].baseline
    assert [r["layer"] for r in runs[0]["layers"]] == [0, 1, 2] and len(runs[1]["layers"]) == 7
    assert all(_close(got[k], want[k]) for got, want in zip(runs[0]["layers"], mine.table()) for k in want)
    assert all(_close(runs[0]["final_norm"][k], v) for k, v in mine.final_norm_row.items())
    assert "final_norm" not in runs[1]  # MiniLM is post-LN: no final norm
    fig = figures.compare_curves([(r.label, r.run) for r in c.runs], relative=True)
    assert list(fig.data[0].x) == [0, 0.5, 1] and list(fig.data[0].y) == [r["cosine_mean"] for r in mine.rows]

    assert BatchAnalyser(settings_of(model=path, device="cpu")).padded
    result = smoothviz.corpus(LINES, model=path, device="cpu", batch_size=8)
    assert result.computed == 3 and not result.errors
    table = result.table.to_pylist()
    for sentence, text in enumerate(LINES):
        rows = [r for r in table if r["sentence"] == sentence and r["run"] == "baseline"]
        assert [r["layer"] for r in rows] == [0, 1, 2] and rows[0]["tokens"] == len(alone[text].tokens)
        for got, want in zip(rows, alone[text].baseline.rows):
            for key in ("cosine_mean", "dm_rel", "effective_rank", "spectral_gap", "first_token_mass"):
                assert _close(got[key], want[key]), (sentence, want["layer"], key)


@pytest.mark.slow
@pytest.mark.browser
def test_animate_on_a_decoder_directory(model_dir, tmp_path):
    """One GIF frame per layer 0…L of a decoder (Llama, grouped KV heads), baseline beside NeuTRENO."""
    from PIL import Image

    from smoothviz.outputs.animate import animate, frame_figures

    r = smoothviz.analyze(SENTENCE, model=model_dir("llama"), device="cpu", mitigation="neutreno")
    figs = frame_figures(r, ("heatmap", "graph"))
    assert len(figs) == r.n_layers + 1
    info = animate(r, str(tmp_path / "llama.gif"), ("heatmap", "graph"))
    with Image.open(tmp_path / "llama.gif") as im:
        assert im.n_frames == r.n_layers + 1 == info["frames"]


@pytest.mark.slow
def test_the_final_norm_on_the_page_is_a_position_of_its_own(model_dir):
    """A decoder's page: the curves carry a "final norm" point after layer L (◆, its own tick), the
    layer slider a "final norm" position after L, whose cards read the final-norm row and whose
    similarity heatmap is the normed states'; layer L stays block L's output."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from smoothviz.outputs import figures, views

    path = model_dir("llama")
    r = smoothviz.analyze(SENTENCE, model=path, device="cpu", mitigation="neutreno")
    L = r.n_layers
    fig = figures.metric_curves(r)
    diamonds = [t for t in fig.data if t.marker.symbol == "diamond"]
    assert diamonds and all(list(t.x) == [L + 1] for t in diamonds)
    first = next(t for t in diamonds if t.xaxis in (None, "x"))  # the first panel: cosine_mean, baseline
    assert first.y[0] == pytest.approx(r.baseline.final_norm_row["cosine_mean"])
    ticks = dict(zip(fig.layout.xaxis.tickvals, fig.layout.xaxis.ticktext))
    assert ticks[L + 1] == "final norm" and ticks[L] == str(L)
    line = " ".join(views.final_norm_lines(r, {"baseline": "baseline", "mitigated": "neutreno"}))
    assert f"dm_rel {r.baseline.final_norm_row['dm_rel']:.3f} (layer {L}: {r.baseline.rows[L]['dm_rel']:.3f})" in line
    normed = np.asarray(r.baseline.final_norm, dtype=np.float64)
    U = normed / np.linalg.norm(normed, axis=1, keepdims=True)
    assert np.allclose(views.final_norm_similarity(r.baseline, r.keep), U @ U.T)

    root = Path(__file__).resolve().parent.parent
    at = AppTest.from_file(str(root / "app" / "SmoothViz.py"), default_timeout=600)
    for key, value in {
        "model": "custom",
        "model_id": path,
        "text": SENTENCE,
        "mit": "neutreno",
        "section": views.SECTIONS["layer"],
        "layer": "final norm",
    }.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    slider = next(s for s in at.select_slider if s.label.startswith("Layer"))
    assert list(slider.options) == [*map(str, range(1, L + 1)), "final norm"] and slider.value == "final norm"
    cards = {m.label: m.value for m in at.metric}
    b, m = r.baseline.final_norm_row["dm_rel"], r.mitigated.final_norm_row["dm_rel"]
    assert cards[f"{figures.plain_title('dm_rel')} · the final norm"] == f"{b:.3g} → {m:.3g}"
    assert cards[f"{figures.plain_title('spectral_gap')} · the final norm"] == "— → —"  # no attention of its own
    assert f"Token similarity after the final norm (applied to layer {L})" in [s.value for s in at.subheader]


@pytest.mark.slow  # a whole report: every view drawn (about 5 MB of HTML)
def test_report_on_a_decoder_directory(model_dir):
    """The HTML report of a Gemma 3 directory under sink=drop: the sink view with its numbers'
    sentence, the final-norm row, the first_token_mass of its table, and sink=drop's note."""
    import html

    from smoothviz.outputs import report
    from smoothviz.science.sinks import sink_lines

    r = smoothviz.analyze(
        SENTENCE,
        model=model_dir("gemma3_text"),
        device="cpu",
        mitigation="heads",
        params={"ablate": "", "sink": "drop"},
    )
    page = html.unescape(report.build_report(r))
    assert "Attention received by each token, layer by layer" in page
    for line in sink_lines(r, {"baseline": "baseline", "mitigated": "heads (sink=drop)"}):
        assert line.replace("`", "") in page.replace("`", "").replace("<code>", "").replace("</code>", ""), line
    assert "final norm" in page and "first token sees only itself" in page
