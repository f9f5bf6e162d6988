"""Issue 22, library side: the first screen's computed lines, fusion made visible, Present's
projector figures, and the heads mitigation doing only what is asked."""
import numpy as np
import pytest

import smoothviz
from smoothviz.outputs import figures
from smoothviz.outputs import views
from smoothviz.words.lesson import REFERENCE


@pytest.fixture(scope="module")
def fused():
    return smoothviz.analyze(REFERENCE, device="cpu", mitigation="fusion-mean", params={"layers": "4-6"},
                             projection="none")


def test_the_story_line_states_the_baselines_own_numbers(fused):
    cos = [row["cosine_mean"] for row in fused.baseline.rows]
    line = views.story(fused)
    assert f"from {cos[0]:.3f} at the embeddings (layer 0) to {cos[-1]:.3f} at layer {len(cos) - 1}" in line
    peak = int(np.argmax(cos))
    assert ("peaks there" in line) == (round(max(cos), 3) == round(cos[-1], 3))
    if "peaks there" not in line:
        assert f"peaks at layer {peak} ({max(cos):.3f})" in line


def test_the_fusion_line_sets_the_fused_value_beside_each_fused_layer(fused):
    line = views.fusion_line(fused)
    value = fused.mitigated.fused_row["cosine_mean"]
    assert f"is {value:.3f}" in line
    each = [fused.mitigated.rows[layer]["cosine_mean"] for layer in (4, 5, 6)]
    for layer, v in zip((4, 5, 6), each):
        assert f"{v:.3f} (layer {layer})" in line
    below = sum(value < v for v in each)
    assert (f"lower than {below} of the 3" in line) or (below == 3 and "lower than every" in line) \
        or (below == 0 and "higher than every" in line)
    assert views.fusion_line(smoothviz.analyze(REFERENCE, device="cpu", projection="none")) == ""


def test_coinciding_curves_are_said_and_both_drawn(fused):
    fig = figures.metric_curves(fused)
    mitigated = [t for t in fig.data if t.legendgroup == "mitigated" and t.mode == "lines+markers"]
    assert mitigated and all(t.line.dash == "dash" for t in mitigated)
    assert "same as the baseline at every layer" in next(t.name for t in mitigated if t.showlegend)
    other = smoothviz.analyze(REFERENCE, device="cpu", mitigation="neutreno", projection="none")
    assert all(t.line.dash in (None, "solid") for t in figures.metric_curves(other).data if t.mode == "lines+markers")


def test_projector_figures_keep_every_text_at_the_floor_and_mark_the_layer(fused):
    at = views.At(layer=3, head_layer=3)
    for view in views.VIEWS:
        if view.key == "trajectories":
            continue
        for name, fig in view.figures(fused, at):
            big = figures.enlarged(figures.mark_layer(fig, view.key, 3), 1.3, 410, floor=16).to_dict()
            sizes = [node["size"] for node in _fonts(big)]
            assert sizes and min(sizes) >= 16, (name, min(sizes))
    curves = figures.mark_layer(figures.metric_curves(fused), "curves", 3)
    assert any(s.x0 == 3 == s.x1 for s in curves.layout.shapes)


def _fonts(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if "font" in key and isinstance(value, dict) and "size" in value:
                yield value
            yield from _fonts(value)
    elif isinstance(node, list):
        for value in node:
            yield from _fonts(value)


def test_ablating_a_head_alone_keeps_the_sinks():
    """--mitigation heads --param ablate=5.3 removed the sinks too (sink defaulted to drop)."""
    alone = smoothviz.analyze(REFERENCE, device="cpu", mitigation="heads", params={"ablate": "5.3"},
                              projection="none")
    explicit = smoothviz.analyze(REFERENCE, device="cpu", mitigation="heads",
                                 params={"ablate": "5.3", "sink": "none"}, projection="none")
    both = smoothviz.analyze(REFERENCE, device="cpu", mitigation="heads", params={"ablate": "5.3", "sink": "drop"},
                             projection="none")
    last = lambda a: a.mitigated.rows[-1]["cosine_mean"]  # noqa: E731
    assert last(alone) == pytest.approx(last(explicit)) and last(alone) != pytest.approx(last(both))
    neutral = smoothviz.analyze(REFERENCE, device="cpu", mitigation="heads", projection="none")
    assert neutral.mitigated.rows[-1]["cosine_mean"] == pytest.approx(neutral.baseline.rows[-1]["cosine_mean"])


def test_the_gif_keeps_a_diverging_scale_smooth(tmp_path):
    """The octree palette banded the heatmaps' RdBu scale (73 shades over 600 px)."""
    from PIL import Image
    from plotly.colors import sample_colorscale

    from smoothviz.outputs.animate import _encode_gif
    scale = sample_colorscale("RdBu_r", list(np.linspace(0, 1, 600)))
    row = np.array([[int(float(x)) for x in c[4:-1].split(",")] for c in scale], dtype=np.uint8)
    frames = [Image.fromarray(np.tile(row[None], (60, 1, 1))), Image.fromarray(np.tile(row[None, ::-1], (60, 1, 1)))]
    _encode_gif(frames, str(tmp_path / "g.gif"))
    back = np.asarray(Image.open(tmp_path / "g.gif").convert("RGB"), dtype=float)
    assert len(np.unique(back[30], axis=0)) >= 150  # the octree palette kept 73
    assert np.abs(back - np.tile(row[None], (60, 1, 1))).max() <= 8
