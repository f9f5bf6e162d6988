"""Offline, on the real embedded model. Hub access must never be attempted."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

REFERENCE = ("The quick brown fox jumps over the lazy dog because it wanted to see what "
             "over-smoothing looks like in a transformer.")


@pytest.fixture(scope="session")
def reference():
    return REFERENCE


@pytest.fixture(scope="session")
def base(reference):
    """The default model's baseline analysis of the reference sentence."""
    import smoothviz
    return smoothviz.analyze(reference, device="cpu")


@pytest.fixture(scope="session")
def matches_transformers():
    """Check an analysis against transformers' own eager forward pass of the same model and text."""
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    def check(result, path, text):
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path, attn_implementation="eager").eval()
        with torch.no_grad():
            out = model(**tok(text, return_tensors="pt"), output_hidden_states=True, output_attentions=True)
        assert np.allclose(result.baseline.hidden, torch.stack(out.hidden_states)[:, 0].numpy(), atol=1e-5)
        assert np.allclose(result.baseline.attentions, torch.stack(out.attentions)[:, 0].numpy(), atol=1e-6)
    return check
