"""Offline, on the real embedded model. Hub access must never be attempted."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest

REFERENCE = (
    "The quick brown fox jumps over the lazy dog because it wanted to see what "
    "over-smoothing looks like in a transformer."
)


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
        from smoothviz.model.models import ARCHITECTURES, get_module

        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path, attn_implementation="eager").eval()
        spec = ARCHITECTURES[model.config.model_type]
        seen = []  # every block call's output: the last is block L's (ALBERT calls one block L times)
        hooks = [
            b.register_forward_hook(lambda m, a, o: seen.append(o[0] if isinstance(o, tuple) else o))
            for b in get_module(model, spec.layers)
        ]
        try:
            with torch.no_grad():
                out = model(**tok(text, return_tensors="pt"), output_hidden_states=True, output_attentions=True)
        finally:
            for hook in hooks:
                hook.remove()
        # layer l = block l's output for every l; transformers' last hidden state is the final norm's
        # output in a pre-norm model, which SmoothViz keeps apart
        states = torch.stack([*out.hidden_states[:-1], seen[-1]])[:, 0].numpy()
        assert np.allclose(result.baseline.hidden, states, atol=1e-5)
        assert np.allclose(result.baseline.attentions, torch.stack(out.attentions)[:, 0].numpy(), atol=1e-6)
        if spec.final_norm is not None:
            assert result.baseline.final_norm_row is not None
            assert not np.allclose(states[-1], out.hidden_states[-1][0].numpy(), atol=1e-3)

    return check


@pytest.fixture(autouse=True)
def _processes_only_in_marked_tests(request, monkeypatch):
    """The fast lane (``-m "not slow"``) is honest: a test that starts a process (a CLI subprocess, a
    server, a browser, Ray's workers, kaleido's Chromium, ffmpeg) must carry the ``slow`` mark, so
    an unmarked one fails here with the reason instead of slowing the lane down."""
    if request.node.get_closest_marker("slow") is not None:
        return
    import subprocess

    def refuse(*args, **kwargs):
        raise AssertionError(
            f"{request.node.nodeid} starts a process ({args[1] if len(args) > 1 else kwargs.get('args')!r}): "
            "mark it @pytest.mark.slow"
        )

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
