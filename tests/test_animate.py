"""smoothviz animate: frames counted, the GIF and the MP4 opened, errors one line (exit 2)."""

import subprocess
import sys

import pytest

import smoothviz
from smoothviz.outputs.animate import MAX_BYTES, animate, animated_figure, frame_figures, frames_of

TEXT = "The cat sat on the mat because it was warm."


@pytest.fixture(scope="module")
def neutreno():
    return smoothviz.analyze(TEXT, device="cpu", mitigation="neutreno", params={"lambda": "0.4"}, projection="pca")


@pytest.fixture(scope="module")
def fusion():
    return smoothviz.analyze(TEXT, device="cpu", mitigation="fusion-mean")


def test_one_frame_per_layer_and_one_for_the_fused_output(neutreno, fusion):
    L = neutreno.n_layers
    assert len(frames_of(neutreno)) == L + 1
    assert len(frames_of(fusion)) == L + 2 and frames_of(fusion)[-1].layer is None
    figs = frame_figures(neutreno, ("heatmap", "graph", "trajectory"))
    assert len(figs) == L + 1
    # Nothing jumps: every frame has the same traces, axes and colour ranges; only data and title change.
    shapes = {tuple(type(t).__name__ for t in f.data) for f in figs}
    assert len(shapes) == 1
    assert len({f.layout.to_json() for f in (f.update_layout(title=None) for f in figs)}) == 1
    assert all(t.zmin == -1 and t.zmax == 1 for f in figs for t in f.data if t.type == "heatmap")


def test_frame_titles_carry_the_layer_and_headline_metrics(neutreno):
    figs = frame_figures(neutreno, ("heatmap",))
    title = figs[3].layout.title.text
    assert f"layer 3 of {neutreno.n_layers}" in title
    assert f"cosine_mean {neutreno.baseline.rows[3]['cosine_mean']:.3f}" in title
    assert f"dm_rel {neutreno.mitigated.rows[3]['dm_rel']:.3f}" in title


def test_report_figure_has_frames_and_a_play_button(neutreno):
    fig = animated_figure(neutreno, ("heatmap", "graph"))
    assert len(fig.frames) == neutreno.n_layers + 1
    assert fig.layout.updatemenus[0].buttons[0].method == "animate"
    assert len(fig.layout.sliders[0].steps) == neutreno.n_layers + 1


def test_the_report_plays_the_same_frames(fusion):
    import json
    import re

    from smoothviz.outputs.report import build_report

    page = build_report(fusion)
    specs = [json.loads(m) for m in re.findall(r"var f=(\{.*?\});var c=", page)]
    animated = [s for s in specs if s.get("frames")]
    assert len(animated) == 1
    spec = animated[0]
    assert [f["name"] for f in spec["frames"]] == [str(l) for l in range(fusion.n_layers + 1)] + ["fused"]
    assert spec["layout"]["updatemenus"][0]["buttons"][0]["label"] == "▶ play"
    assert "frames:f.frames" in page  # the frames reach Plotly.newPlot


@pytest.mark.slow
def test_gif_opens_with_pillow(neutreno, tmp_path):
    from PIL import Image

    out = tmp_path / "a.gif"
    info = animate(neutreno, str(out), ("heatmap", "graph", "trajectory"))
    with Image.open(out) as im:
        assert im.n_frames == neutreno.n_layers + 1 == info["frames"]
        assert im.size[0] >= 1200
    assert 0 < out.stat().st_size <= MAX_BYTES


@pytest.mark.slow
def test_mp4_opens_with_ffmpeg(fusion, tmp_path):
    import imageio_ffmpeg

    out = tmp_path / "a.mp4"
    animate(fusion, str(out), ("heatmap", "graph"))
    reader = imageio_ffmpeg.read_frames(str(out))
    meta = reader.__next__()
    frames = sum(1 for _ in reader)
    assert frames == fusion.n_layers + 2
    assert meta["size"][0] >= 1200 and meta["size"][0] % 16 == 0
    assert 0 < out.stat().st_size <= MAX_BYTES


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (["--out", "x.png"], "--out must end in .gif or .mp4"),
        (["--out", "x.gif", "--views", "heatmap,pie"], "--views must be"),
    ],
)
def test_cli_errors_are_one_line_exit_2(args, message, tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "smoothviz", "animate", TEXT, *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and message in p.stderr
    assert not list(tmp_path.iterdir())
