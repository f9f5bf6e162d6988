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
    """A 64-layer lab: every 3rd layer and the last is a frame (23, said under the animation); the
    frames × 2 runs pool their heatmaps into bigger blocks and draw fewer edges per token so that all
    frames together hold FRAME_CELLS cells and FRAME_EDGES edges, as the subplot titles say; the frames
    carry only what changes (no colour scale repeated); the trajectories draw 63 paths of 65 points."""
    from smoothviz.bench import text_of
    from smoothviz.outputs import animate, figures

    analysis = smoothviz.analyze(
        text_of(300),
        model="lab",
        lab={"depth": 64},
        device="cpu",
        max_tokens=256,
        mitigation="neutreno",
        heads=False,
        projection="pca",
    )
    html = build_report(analysis)
    assert len(html.encode()) <= 10 * MB, f"{len(html.encode()) / MB:.1f} MB"
    spec = _animation(html)
    frames = spec["frames"]
    assert [f["name"] for f in frames] == [str(layer) for layer in range(0, 64, 3)] + ["64"]
    assert "64 layers: every 3rd layer is a frame (0, 3, 6, …) and the last" in html
    graphs = 23 * 2
    side = math.isqrt(animate.FRAME_CELLS // graphs)  # 56 cells a side at most: blocks of ceil(256 / 56) = 5 tokens
    block = -(-256 // side)
    assert (side, block) == (56, 5)
    heatmaps = [t for frame in frames for t in frame["data"] if t["type"] == "heatmap"]
    assert len(heatmaps) == graphs and all(_shape(t["z"]) == (52, 52) for t in heatmaps)
    assert sum(math.prod(_shape(t["z"])) for t in heatmaps) <= animate.FRAME_CELLS
    k = animate.FRAME_EDGES // (graphs * 256)  # two edges a token: 512 a graph, under the 534 a graph may draw
    edges = [t for frame in frames for t in frame["data"] if t["type"] == "scatter" and "x" in t and None in t["x"]]
    assert k == 2 and len(edges) == graphs and 400 < max(t["x"].count(None) for t in edges) <= 512  # pairs merge
    assert sum(t["x"].count(None) for t in edges) <= animate.FRAME_EDGES
    titles = json.dumps(spec["layout"]["annotations"])
    assert f"mean over blocks of {block} tokens" in titles and "top 2 edges per token" in titles
    assert "colorscale" not in json.dumps(frames)  # written once, in the figure's traces
    for run in ("baseline", "mitigated"):  # the report's similarity: 128 cells a side where the page draws 256
        spec = re.search(
            rf'data-name="smoothviz-similarity-{run}"></div>\n<script>\(function\(\)\{{var f=(.*?);var c=', html, re.S
        )
        heatmap = json.loads(spec.group(1))
        assert _shape(heatmap["data"][0]["z"]) == (128, 128) and "(pooled 2×2)" in heatmap["layout"]["title"]["text"]
    paths = figures.path_limit(65)
    assert paths == 4096 // 65 == 63
    assert f"the paths of {paths} of them are drawn (65 positions each, to keep a run near 4,096 points)" in html


def test_a_deep_model_on_30_tokens_stays_under_6_mb():
    """65 frames of a 64-layer lab made 6.1 MB on 18 tokens and 6.2 MB on 30 with fusion-concat (a
    frame's bytes do not shrink with the text): its report animates every 3rd layer and the last, each
    frame still one cell per token pair and every token's top 3 edges."""
    from smoothviz.bench import text_of

    analysis = smoothviz.analyze(
        text_of(40), max_tokens=30, model="lab", lab={"depth": 64}, device="cpu", mitigation="fusion-concat"
    )
    html = build_report(analysis)
    assert len(analysis.tokens) == 30 and len(html.encode()) <= 6 * MB, f"{len(html.encode()) / MB:.2f} MB"
    spec = _animation(html)
    assert [f["name"] for f in spec["frames"]] == [str(layer) for layer in range(0, 64, 3)] + ["64", "fused"]
    heatmaps = [t for frame in spec["frames"] for t in frame["data"] if t["type"] == "heatmap"]
    assert len(heatmaps) == 24 * 2 and all(_shape(t["z"]) == (30, 30) for t in heatmaps)
    titles = json.dumps(spec["layout"]["annotations"])
    assert "mean over blocks" not in titles and "top 3 edges per token" in titles
