"""The offline report stays small enough to mail to a class (issue 28): at most 6 MB at about 30
tokens, where plotly.js (embedded once) is most of it, and at most 10 MB at 512 tokens, where the
animation's frames carry pooled heatmaps instead of every token pair."""

import json
import math
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


@pytest.mark.slow  # a 64-layer lab model on 256 tokens, both runs (about ten seconds here)
def test_a_deep_models_frames_share_one_budget():
    """65 frames × 2 runs: the heatmaps pool into bigger blocks and the graphs draw only their
    strongest edges so that all frames together hold FRAME_CELLS cells and FRAME_EDGES edges, as
    the subplot titles say; the frames carry only what changes (no colour scale repeated)."""
    from smoothviz.bench import text_of
    from smoothviz.outputs import animate

    analysis = smoothviz.analyze(
        text_of(300), model="lab", lab={"depth": 64}, device="cpu", max_tokens=256, mitigation="neutreno", heads=False
    )
    html = build_report(analysis)
    assert len(html.encode()) <= 10 * MB, f"{len(html.encode()) / MB:.1f} MB"
    spec = _animation(html)
    frames = spec["frames"]
    assert len(frames) == 65
    graphs = 65 * 2
    side = math.isqrt(animate.FRAME_CELLS // graphs)  # 33 cells a side at most: blocks of ceil(256 / 33) = 8 tokens
    block = -(-256 // side)
    heatmaps = [t for frame in frames for t in frame["data"] if t["type"] == "heatmap"]
    assert len(heatmaps) == graphs and all(_shape(t["z"]) == (-(-256 // block),) * 2 for t in heatmaps)
    assert sum(math.prod(_shape(t["z"])) for t in heatmaps) <= animate.FRAME_CELLS
    most = animate.FRAME_EDGES // graphs  # 189 edges a graph (one per token would be 256)
    edges = [t for frame in frames for t in frame["data"] if t["type"] == "scatter" and "x" in t and None in t["x"]]
    assert len(edges) == graphs and max(t["x"].count(None) for t in edges) == most
    titles = json.dumps(spec["layout"]["annotations"])
    assert (
        f"mean over blocks of {block} tokens" in titles and f"each token's top 1, the {most} strongest drawn" in titles
    )
    assert "colorscale" not in json.dumps(frames)  # written once, in the figure's traces
