"""Whatever a user types: a result or a clear message, never a crash (library and CLI)."""

import json
import shutil
import subprocess
import sys

import pytest
import torch

import smoothviz

ODD_TEXTS = {
    "emoji": "Transformers 🤖 smooth 🔥 everything 🙂👍🏽",
    "cjk": "注意力是一个图，堆叠会使词元趋同。",
    "rtl": "הקשב הוא גרף والانتباه رسم بياني",
    "zero-width": "zero\u200bwidth\u200djoiner\ufeff text",
    "control": "bell\x07 null\x00 escape\x1b[31m red \r\n tab\t end",
    "html": "<script>alert('x')</script><b>bold</b> &amp; <img src=x onerror=alert(1)>",
}


@pytest.mark.parametrize("name", ODD_TEXTS)
def test_odd_text_is_analysed(name):
    r = smoothviz.analyze(ODD_TEXTS[name], mitigation="neutreno", device="cpu")
    assert len(r.tokens) >= 3 and r.baseline.rows[-1]["cosine_mean"] is not None
    json.dumps(r.to_json(), allow_nan=False, ensure_ascii=False)


def test_text_without_word_tokens_is_refused():
    with pytest.raises(smoothviz.AnalysisError, match="only special tokens"):
        smoothviz.analyze("\u200b\x00\x07", device="cpu")


def test_a_hundred_thousand_characters_are_truncated_with_a_note():
    text = ("Over-smoothing makes every token alike. " * 2600)[:100_000]
    r = smoothviz.analyze(text, device="cpu", heads=False)
    assert len(r.tokens) == 512
    note = next(n for n in r.notes if "truncated" in n)
    dropped = int(note.split(": ")[1].split()[0])
    assert dropped > 10_000 and f"{dropped} tokens were dropped" in note


@pytest.mark.slow
def test_cli_handles_odd_text_and_long_text():
    for text in (ODD_TEXTS["html"], ODD_TEXTS["control"].replace("\x00", ""), "x" * 100_000):  # argv cannot hold NUL
        out = subprocess.run(
            [sys.executable, "-m", "smoothviz", "analyze", text, "--json"], capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stderr
        data = json.loads(out.stdout)
        assert data["tokens"] and data["baseline"]["layers"]


def test_report_shows_markup_as_text():
    from smoothviz.outputs.report import build_report

    r = smoothviz.analyze(ODD_TEXTS["html"] + " <script>evil()</script>", device="cpu")
    html = build_report(r)
    assert "<script>alert" not in html and "<script>evil" not in html and "onerror=alert" not in html
    assert html.count("<script") >= 1  # plotly.js itself is embedded: the report opens offline
    import re

    assert not re.search(r"<script[^>]*\bsrc=", html)  # nothing is fetched: no CDN


def test_out_of_memory_on_the_gpu_retries_on_the_cpu(tmp_path):
    """A CUDA OOM during the forward pass falls back to the CPU with a note (raised for real
    inside the model's forward, on a private copy of the model)."""
    from smoothviz.model.handles import get_handle
    from smoothviz.model.models import default_model_path

    local = tmp_path / "oom-model"
    shutil.copytree(default_model_path(), local)
    handle = get_handle(str(local), "cpu")
    fired = []

    def boom(module, args):
        if not fired:
            fired.append(True)
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    hook = handle.model.encoder.layer[0].register_forward_pre_hook(boom)
    try:
        r = smoothviz.analyze("Out of memory, then the CPU.", model=str(local), device="cpu")
    finally:
        hook.remove()
    assert fired and r.device == "cpu"
    assert any("ran out of memory" in n for n in r.notes)


def test_twenty_megabytes_are_cut_to_characters_before_tokenizing():
    """Issue 16: 20 MB over the websocket took 70 s and 3 GB while tokenized whole."""
    from smoothviz.model.handles import MAX_CHARS

    text = "Over-smoothing makes every token alike. " * 500_000  # 20,000,000 characters
    r = smoothviz.analyze(text, device="cpu", heads=False, max_tokens=16)
    assert any(
        n == f"The text was cut to its first {MAX_CHARS:,} characters: "
        f"{len(text) - MAX_CHARS:,} characters were dropped."
        for n in r.notes
    ), r.notes
    assert len(r.tokens) == 16 and any("tokens were dropped" in n for n in r.notes)
    r = smoothviz.analyze(text[:5000], device="cpu", heads=False, max_tokens=16, max_chars=1000)
    assert "The text was cut to its first 1,000 characters: 4,000 characters were dropped." in r.notes
    short = smoothviz.analyze("Short text.", device="cpu", heads=False, max_chars=1000)
    assert not any("characters" in n for n in short.notes)


def test_a_checkpoint_with_nan_weights_says_so(tmp_path):
    """Issue 16: NaN weights were reported as an overflow to cure with fewer layers."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer, BertConfig, BertModel

    from smoothviz.model.models import default_model_path

    AutoTokenizer.from_pretrained(default_model_path()).save_pretrained(tmp_path)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(tmp_path, safe_serialization=True)
    weights = load_file(tmp_path / "model.safetensors")
    name = next(k for k in weights if "layer.1.attention.self.query.weight" in k)
    weights[name][0, 0] = float("nan")
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})

    with pytest.raises(
        smoothviz.AnalysisError, match=r"weights contain NaN values \(1 tensor, first .*layer\.1\."
    ) as err:
        smoothviz.analyze("A sentence for a broken model.", model=str(tmp_path), device="cpu")
    assert "fewer layers" not in str(err.value)
