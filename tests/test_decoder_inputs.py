"""What a researcher may bring that SmoothViz cannot analyse, or not whole: a directory without a
config, a model type it does not support (as a directory and as a GGUF file), a file that is not
GGUF, a GGUF architecture transformers cannot read, and a text longer than the model's positions.
Each gives one clear message: a ModelError from Python, one line and exit status 2 on the CLI, an
error box (never a traceback) on the page; the long text is cut with a note."""

import shutil

import numpy as np
import pytest
import torch

import smoothviz
from smoothviz import cli
from smoothviz.model.models import ModelError, default_model_path

SUPPORTED = "and decoders built like Llama or Gemma"


def _with_tokenizer(path):
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(default_model_path() / name, path / name)
    return path


def _gguf_header(path, arch: str, **numbers) -> None:
    """A GGUF file with its architecture's hyper-parameters and one tensor: all a header check reads."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_context_length(64)
    writer.add_embedding_length(32)
    writer.add_block_count(2)
    writer.add_feed_forward_length(64)
    writer.add_head_count(4)
    writer.add_head_count_kv(4)
    writer.add_layer_norm_eps(1e-5)
    writer.add_tensor("token_embd.weight", np.zeros((29, 32), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """name -> (path, words the message must hold)."""
    import transformers as tf
    from transformers import AutoModel

    root = tmp_path_factory.mktemp("bad")
    torch.manual_seed(0)
    bloom = root / "bloom"
    AutoModel.from_config(tf.BloomConfig(hidden_size=32, n_layer=2, n_head=4, vocab_size=30522)).save_pretrained(bloom)
    _with_tokenizer(bloom)
    no_config = root / "no-config"
    no_config.mkdir()
    shutil.copy(bloom / "model.safetensors", no_config)
    _gguf_header(root / "bloom.gguf", "bloom")  # a family transformers reads from GGUF, SmoothViz does not
    _gguf_header(root / "rwkv.gguf", "rwkv6")  # a family transformers cannot read from GGUF
    (root / "notes.gguf").write_text("not a GGUF file")
    return {
        "directory without config": (no_config, "it has no config.json"),
        "unsupported model type": (bloom, "model type 'bloom' is not supported"),
        "GGUF of an unsupported family": (root / "bloom.gguf", "model type 'bloom' is not supported"),
        "GGUF transformers cannot read": (root / "rwkv.gguf", "architecture rwkv6 is not supported"),
        "not a GGUF file": (root / "notes.gguf", "is not a GGUF file"),
    }


CASES = (
    "directory without config",
    "unsupported model type",
    "GGUF of an unsupported family",
    "GGUF transformers cannot read",
    "not a GGUF file",
)


@pytest.mark.parametrize("case", CASES)
def test_python_and_cli_say_why_in_one_line(case, bad, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SMOOTHVIZ_CACHE_DIR", str(tmp_path / "cache"))
    path, words = bad[case]
    with pytest.raises(ModelError, match=words.replace("(", r"\(")):
        smoothviz.analyze("The storm came.", model=str(path), device="cpu")
    capsys.readouterr()  # the library's own output (transformers' progress bars): the CLI's line is what counts
    with pytest.raises(SystemExit) as exit_:  # the entry point, as the console command runs it
        cli.main(["analyze", "The storm came.", "--model", str(path), "--json", "--device", "cpu"])
    assert exit_.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("smoothviz: error: ") and words in err
    if "model type" in words:  # every supported family is named, the derivable decoders too
        assert "llama" in err and "gemma3_text" in err and SUPPORTED in err
    # refused from the header: nothing was dequantised into the cache
    assert not list((tmp_path / "cache").glob("gguf/*/model.safetensors"))


def test_a_supported_family_s_gguf_header_passes_the_check(tmp_path):
    """The check refuses only what cannot be analysed: a Llama header is in the table, a StableLM
    header (not in the table) builds a base model whose modules derive_spec recognises."""
    from smoothviz.model.models import _check_gguf_family

    for arch in ("llama", "stablelm"):
        _gguf_header(tmp_path / f"{arch}.gguf", arch)
        _check_gguf_family(tmp_path / f"{arch}.gguf")


def test_a_text_longer_than_the_decoders_positions_is_cut_with_a_note(tmp_path, capsys):
    """A Llama with 16 positions: a 40-word text keeps its first 16 tokens, and the note says how
    many were dropped (the tokenizer's count, by hand), on the API and the CLI."""
    import json

    import transformers as tf
    from transformers import AutoModel, AutoTokenizer

    path = tmp_path / "llama16"
    torch.manual_seed(0)
    AutoModel.from_config(
        tf.LlamaConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=64,
            vocab_size=30522,
            max_position_embeddings=16,
        )
    ).save_pretrained(path)
    _with_tokenizer(path)
    text = " ".join(["storm"] * 40)
    total = len(AutoTokenizer.from_pretrained(path)(text)["input_ids"])
    r = smoothviz.analyze(text, model=str(path), device="cpu", heads=False)
    assert len(r.tokens) == 16 and r.baseline.attentions.shape[-1] == 16
    assert f"The text was truncated to 16 tokens: {total - 16} tokens were dropped." in r.notes
    assert cli.run(["analyze", text, "--model", str(path), "--json", "--device", "cpu"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["tokens"]) == 16 and f"{total - 16} tokens were dropped" in " ".join(data["notes"])


@pytest.mark.slow  # AppTest runs of the whole page
def test_the_page_says_why_and_recovers(bad):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    app_file = Path(__file__).resolve().parent.parent / "app" / "SmoothViz.py"
    for case in CASES:
        path, words = bad[case]
        app = AppTest.from_file(str(app_file), default_timeout=600)
        app.query_params.update({"model": "custom", "model_id": str(path), "mit": "none"})
        app.run()
        assert not app.exception, (case, [e.value for e in app.exception])
        shown = [e.value.replace("\u2060", "").replace("\\", "") for e in app.error]
        assert len(shown) == 1 and words in shown[0], (case, shown)
        assert "Traceback" not in shown[0]


def test_a_checkpoint_missing_weights_is_refused_not_filled_at_random(tmp_path):
    """transformers fills a weight the checkpoint lacks at random and only logs it; SmoothViz refuses
    the model, naming the weight (a Llama directory without one block's down projection)."""
    import transformers as tf
    from safetensors.torch import load_file, save_file
    from transformers import AutoModel

    path = tmp_path / "llama"
    torch.manual_seed(0)
    AutoModel.from_config(
        tf.LlamaConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=64,
            vocab_size=30522,
            max_position_embeddings=64,
        )
    ).save_pretrained(path)
    _with_tokenizer(path)
    assert smoothviz.analyze("The storm came.", model=str(path), device="cpu", heads=False).n_layers == 2
    partial = tmp_path / "partial"
    shutil.copytree(path, partial)
    weights = load_file(partial / "model.safetensors")
    del weights["layers.1.mlp.down_proj.weight"]
    save_file(weights, partial / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(
        ModelError,
        match=r"lacks 1 weight\(s\) that transformers would fill at random "
        r"\(layers.1.mlp.down_proj.weight\)",
    ):
        smoothviz.analyze("The storm came.", model=str(partial), device="cpu", heads=False)
