"""The offline report stays small enough to mail to a class (issue 28): at most 6 MB at about 30
tokens, where plotly.js (embedded once) is most of it, and at most 10 MB at 512 tokens, where the
animation's frames carry pooled heatmaps instead of every token pair."""

import json
import re

import pytest

import smoothviz
from smoothviz.outputs.animate import MAX_FRAME_HEATMAP
from smoothviz.outputs.report import build_report

MB = 1e6


def _shape(z) -> tuple[int, ...]:
    """A heatmap's z as plotly writes it: a nested list, or a typed array {"dtype", "bdata", "shape"}."""
    if isinstance(z, dict):
        return tuple(int(v) for v in str(z["shape"]).split(","))
    return (len(z), len(z[0]))


def _animation(html: str) -> dict:
    spec = re.search(r'data-name="smoothviz-animation"></div>\n<script>\(function\(\)\{var f=(.*?);var c=', html, re.S)
    return json.loads(spec.group(1))


def test_a_sentence_report_is_under_6_mb(reference):
    analysis = smoothviz.analyze(reference, device="cpu", mitigation="neutreno")
    html = build_report(analysis)
    assert len(analysis.tokens) == 27 and len(html.encode()) <= 6 * MB
    heatmaps = [t for frame in _animation(html)["frames"] for t in frame["data"] if t["type"] == "heatmap"]
    assert heatmaps and all(_shape(t["z"]) == (27, 27) for t in heatmaps)  # under the limit: one cell per token pair


@pytest.mark.slow  # a 512-token analysis with NeuTRENO (about half a minute here)
def test_a_512_token_report_is_under_10_mb_with_pooled_frames():
    text = " ".join(f"word{i % 50}" for i in range(510))
    analysis = smoothviz.analyze(text, device="cpu", mitigation="neutreno")
    assert len(analysis.tokens) == 512
    html = build_report(analysis)
    assert len(html.encode()) <= 10 * MB, f"{len(html.encode()) / MB:.1f} MB"
    spec = _animation(html)
    side = -(-512 // -(-512 // MAX_FRAME_HEATMAP))  # ceil(512 / ceil(512 / 96)) cells per side
    heatmaps = [t for frame in spec["frames"] for t in frame["data"] if t["type"] == "heatmap"]
    assert heatmaps and all(_shape(t["z"]) == (side, side) for t in heatmaps)
    assert "mean over blocks of 6 tokens" in json.dumps(spec["layout"]["annotations"])
