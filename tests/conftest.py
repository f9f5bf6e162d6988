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
