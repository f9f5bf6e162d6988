"""Issue 22, library side: the first screen's computed lines, fusion made visible, Present's
projector figures, and the heads mitigation doing only what is asked."""

import numpy as np
import pytest

import smoothviz
from smoothviz.outputs import figures, views
from smoothviz.words.lesson import REFERENCE


@pytest.fixture(scope="module")
def fused():
    return smoothviz.analyze(
        REFERENCE, device="cpu", mitigation="fusion-mean", params={"layers": "4-6"}, projection="none"
    )


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
    below = sum(round(value, 3) < round(v, 3) for v in each)  # compared at the digits shown
    assert (
        (f"lower than {below} of the 3" in line)
        or (below == 3 and "lower than every" in line)
        or (below == 0 and "higher than every" in line)
    )
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
    alone = smoothviz.analyze(REFERENCE, device="cpu", mitigation="heads", params={"ablate": "5.3"}, projection="none")
    explicit = smoothviz.analyze(
        REFERENCE, device="cpu", mitigation="heads", params={"ablate": "5.3", "sink": "none"}, projection="none"
    )
    both = smoothviz.analyze(
        REFERENCE, device="cpu", mitigation="heads", params={"ablate": "5.3", "sink": "drop"}, projection="none"
    )
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


def test_coinciding_shi_and_rollout_lines_are_said_and_both_drawn(fused):
    """A fusion leaves every layer as the baseline's: the mitigated line is drawn dashed over the
    baseline's and named so (both visible); a mitigation that changes the layers is drawn plain."""
    for fig in (figures.shi_bound(fused), figures.rollout(fused)):
        mitigated = [t for t in fig.data if "fusion-mean" in t.name]
        assert mitigated and all(figures.SAME in t.name and t.line.dash in ("dash", "dashdot") for t in mitigated)
        assert all(t.line.dash in (None, "solid", "dot") for t in fig.data if figures.SAME not in t.name)
    other = smoothviz.analyze("Rain fell softly on the old tin roof.", device="cpu", mitigation="neutreno")
    assert not any(figures.SAME in t.name for t in figures.shi_bound(other).data + figures.rollout(other).data)


def test_the_shi_line_reads_the_bound_against_the_measured_ratio(fused):
    from types import SimpleNamespace

    v, ratio = (
        np.asarray(fused.baseline.metric("shi_v")[1:], float),
        np.asarray(fused.baseline.metric("dm_ratio")[1:], float),
    )
    [line] = views.shi_lines(fused, {"baseline": "baseline"})
    assert v.min() >= 1 and "at least 1 at every layer" in line  # the default model: a loose bound (~10⁴)
    assert (
        f"between {v.min():,.0f} and {v.max():,.0f}" in line
        and f"between {ratio.min():.3g} and {ratio.max():.3g}" in line
    )
    # a bound under 1 guarantees shrinking at that layer, and is said at that layer only
    rows = {"shi_v": [None, 2.0, 0.5, 0.9], "dm_ratio": [None, 0.95, 0.4, 0.8]}  # layer 0 has neither
    tight = SimpleNamespace(baseline=SimpleNamespace(metric=rows.get), layernorm="post")
    [line] = views.shi_lines(tight, {"baseline": "baseline"})
    assert "v is below 1 at layers 2, 3: there the bound guarantees that d_M shrinks" in line
    assert views.shi_lines(SimpleNamespace(baseline=tight.baseline, layernorm="pre"), {"baseline": "b"}) == []


def test_an_ablated_heads_atlas_cell_is_blank_and_marked():
    a = smoothviz.analyze(
        "Rain fell softly on the old tin roof.",
        device="cpu",
        mitigation="heads",
        params={"ablate": "5.3", "sink": "none"},
    )
    fig = figures.head_atlas(a.mitigated, "head_gap", title="heads")
    z = np.asarray(fig.data[0].z, dtype=float)
    assert np.isnan(z[4, 3]) and np.isfinite(np.delete(z.ravel(), 4 * z.shape[1] + 3)).all()
    [marks] = [t for t in fig.data if t.name == "ablated"]
    assert list(marks.x) == [3] and list(marks.y) == [5] and "(1 ablated: ×)" in fig.layout.title.text
    assert not np.isnan(np.asarray(figures.head_atlas(a.baseline, "head_gap").data[0].z, float)).any()


def test_the_fusion_line_compares_at_the_digits_it_shows():
    """A collapsed lab: every value reads 1.000; "lower than 1.000" would not add up on screen."""
    from types import SimpleNamespace

    rows = [{"cosine_mean": c} for c in (0.1, 0.5, 0.99991, 0.99998, 0.99999)]
    fake = SimpleNamespace(
        mitigation={"name": "fusion-mean", "params": {"layers": "1-3"}},
        n_layers=4,
        mitigated=SimpleNamespace(fused_row={"cosine_mean": 0.99995}, rows=rows),
    )
    line = views.fusion_line(fake)
    assert "is 1.000, equal to 2 of the 3 fused layers', higher than 1 of the 3 fused layers'" in line
    assert "0.500 (layer 1), 1.000 (layer 2), 1.000 (layer 3)" in line  # rows[l] is layer l (0: embeddings)
    fake.mitigation["params"]["layers"] = "3-4"
    assert "is 1.000, the same as every fused layer's at the digits shown" in views.fusion_line(fake)


def test_projector_curves_tick_the_positions_after_the_last_layer_with_their_markers(fused):
    """Issue 22's audit (Gemma, pre-norm, with a fusion, at 1024 px): "final norm" and "fused" one
    position apart overlapped; on Present they are ticked ★/◆ and named in the axis title."""
    fig = figures.metric_curves(fused, ["cosine_mean", "dm_rel"], cols=2, compact=True)
    L = fused.n_layers
    assert list(fig.layout.xaxis.tickvals)[-1] == L + 1 and list(fig.layout.xaxis.ticktext)[-1] == "★"
    assert fig.layout.xaxis.title.text == "layer (★ fused)"
    name = next(t.name for t in fig.data if t.legendgroup == "mitigated" and t.showlegend)
    assert name.endswith("(= baseline except ★)")
    words = figures.metric_curves(fused, ["cosine_mean"], cols=1)  # the main page keeps the words
    assert list(words.layout.xaxis.ticktext)[-1] == "fused" and words.layout.xaxis.title.text == "layer"


def test_a_short_projector_log_panel_keeps_only_powers_of_ten():
    import plotly.graph_objects as go

    fig = go.Figure(go.Scatter(x=[1, 2, 3], y=[1.2, 4, 35]))
    fig.update_yaxes(type="log", **figures.log_ticks([1.2, 4, 35]))
    assert {1, 2, 5} <= set(fig.layout.yaxis.tickvals)  # the 1-2-5 labels of the page
    big = figures.enlarged(fig, 1.3, 300, floor=16)
    assert list(big.layout.yaxis.tickvals) == [1, 10]


def test_trajectory_labels_stay_apart_on_the_axes_scale():
    a = smoothviz.analyze(
        "Rain fell on the old stone bridge all night and the river rose.", device="cpu", projection="pca"
    )
    fig = figures.trajectories(a)
    xy = np.asarray(a.projection[0], dtype=np.float64).reshape(-1, 2)
    span = xy.max(axis=0) - xy.min(axis=0)
    [labels] = [t for t in fig.data if t.mode == "text"][:1]
    pts = np.c_[labels.x, labels.y]
    assert 2 <= len(pts) < len(a.labels)  # some named, not every one of the packed end points
    for i in range(len(pts)):
        for j in range(i):
            dx, dy = np.abs(pts[i] - pts[j])
            assert dx > 0.2 * span[0] - 1e-3 or dy > 0.1 * span[1] - 1e-3


def test_the_fused_output_is_a_point_of_the_trajectories(fused):
    """Issue 22: fusion seen where students look — the fused output in the same joint projection
    (fitted with every layer's states), drawn as ★ on the mitigated panel, in the table and as the
    animation's last frame."""
    from smoothviz.outputs import animate, tables
    from smoothviz.science.projection import pca_2d, prepare

    p = fused.projected("pca")
    keep = fused.keep
    states = [run.hidden[:, keep] for run in fused.runs().values()]
    fused_states = np.asarray(fused.mitigated.fused)[keep]
    points = np.concatenate(
        [np.stack([prepare(s) for s in states]).reshape(-1, states[0].shape[-1]), prepare(fused_states)]
    )
    by_hand = pca_2d(points)  # one fit over both runs' layers and the fused output
    n = len(keep)
    assert p.fused_projection.shape == (n, 2) and np.allclose(p.fused_projection, by_hand[-n:])
    assert np.allclose(p.projection.reshape(-1, 2), by_hand[:-n])
    assert (
        fused.projected("pca").fused_projection is not None
        and smoothviz.analyze(REFERENCE, device="cpu", mitigation="neutreno").projected("pca").fused_projection is None
    )
    fig = figures.trajectories(p)
    [stars] = [t for t in fig.data if t.name == "fused output"]
    assert stars.xaxis == "x2" and np.allclose(np.c_[stars.x, stars.y], np.round(p.fused_projection, 3))
    rows = [r for r in tables.trajectories(p) if r["layer"] == "fused"]
    assert len(rows) == n and rows[0]["x"] == pytest.approx(p.fused_projection[0, 0], abs=1e-3)
    last = animate.frame_figures(p, ("trajectory",))[-1]  # the fused frame
    now = [t for t in last.data if t.mode == "markers"]
    assert np.allclose(np.c_[now[1].x, now[1].y], np.round(p.fused_projection, 3))  # mitigated: fused output
    assert np.allclose(np.c_[now[0].x, now[0].y], np.round(p.projection[0, -1], 3))  # baseline: layer L


def test_a_concatenated_fused_output_is_left_out_of_the_projection_and_said():
    """fusion-concat's fused output is n × k·d, the layers n × d: it cannot join their projection.
    The layers still project (with PCA, as by hand, and with UMAP), the ★ is absent from the figure,
    the table and the animation, and the note says why instead of the projection failing."""
    from smoothviz.outputs import animate, tables
    from smoothviz.science.projection import pca_2d, prepare

    a = smoothviz.analyze(REFERENCE, device="cpu", mitigation="fusion-concat", params={"layers": "4-6"}, heads=False)
    assert a.mitigated.fused.shape[-1] == 3 * a.baseline.hidden.shape[-1]
    states = [run.hidden[:, a.keep] for run in a.runs().values()]
    by_hand = pca_2d(np.stack([prepare(s) for s in states]).reshape(-1, states[0].shape[-1]))
    for method in ("pca", "umap"):
        p = a.projected(method)
        assert p.projection_method == method and p.fused_projection is None
        assert np.isfinite(p.projection).all() and p.projection.shape[:2] == (2, a.n_layers + 1)
        [note] = [x for x in p.notes if "no ★" in x]
        assert "1152 dimensions per token, the layers 384" in note
    assert np.allclose(a.projected("pca").projection.reshape(-1, 2), by_hand)
    p = a.projected("pca")
    assert not [t for t in figures.trajectories(p).data if t.name == "fused output"]
    assert not [r for r in tables.trajectories(p) if r["layer"] == "fused"]
    frames = animate.frame_figures(p, ("trajectory",))
    assert len(frames) == a.n_layers + 2  # the fused frame stays for its metrics and heatmap
    now = [t for t in frames[-1].data if t.mode == "markers"]
    assert np.allclose(np.c_[now[1].x, now[1].y], np.round(p.projection[1, -1], 3))  # layer L, said so:
    said = [t.text[0] for frame in frames for t in frame.data if t.mode == "text" and t.text[0]]
    assert said == ["layer L: the fused output is wider, not projected"]  # the fused frame's mitigated panel only
    assert len({len(frame.data) for frame in frames}) == 1  # the same traces in every frame
    played = animate.animated_figure(p, ("heatmap", "trajectory"))  # the report's frames, one per trace
    assert all(len(frame.data) == len(played.data) for frame in played.frames)


def test_a_long_texts_trajectories_draw_evenly_spaced_paths_and_say_so():
    """Issue 28: above figures.MAX_PATHS tokens the trajectories draw that many evenly spaced
    tokens' paths (and the picked one), every layer of each, and the line under the chart says so."""
    from smoothviz.bench import text_of

    a = smoothviz.analyze(text_of(400), device="cpu", max_tokens=400, projection="pca", heads=False)
    n, layers = len(a.labels), a.n_layers + 1
    assert n == 400 > figures.MAX_PATHS
    grid = figures.drawn_tokens(n)
    assert len(grid) == figures.MAX_PATHS and grid[0] == 0 and grid[-1] == n - 1
    assert set(np.diff(grid)) == {1, 2}  # evenly spaced: 399 / 255 ≈ 1.56 apart
    picked = int(np.setdiff1d(np.arange(n), grid)[0])  # a token off the grid joins the drawn ones
    idx = figures.drawn_tokens(n, picked)
    assert picked in idx and len(idx) == figures.MAX_PATHS + 1
    fig = figures.trajectories(a, picked)
    paths, points = [t for t in fig.data if t.mode == "lines"][0], [t for t in fig.data if t.mode == "markers"][0]
    assert len(paths.x) == len(idx) * (layers + 1)  # each drawn path: every layer and a break
    assert len(points.x) == len(idx) * layers
    xy = np.round(np.asarray(a.projection[0], dtype=np.float64), 3)  # [L+1, n, 2]
    assert np.allclose(np.asarray(points.x, dtype=float), xy[:, idx, 0].ravel())
    line = views.BY_KEY["trajectories"].lines(a, {}, views.At(layer=1, picked=picked))
    assert line and f"This text has {n:,} tokens: the paths of {len(idx):,} of them are drawn" in line[0]
    assert "(one in 1.6), and the picked one" in line[0]
    short = smoothviz.analyze(text_of(40), device="cpu", max_tokens=40, projection="pca", heads=False)
    assert not views.BY_KEY["trajectories"].lines(short, {}) and len(figures.drawn_tokens(40)) == 40


def test_a_report_of_an_analysis_without_per_head_diagnostics_says_what_it_left_out():
    """``analyze(..., heads=False)`` computes no Dovonon verdicts and no per-head gaps: the report
    leaves out the views that read them, each with a sentence in its place, and draws the rest."""
    from smoothviz.outputs.report import build_report

    a = smoothviz.analyze(REFERENCE, device="cpu", mitigation="neutreno", heads=False)
    assert a.baseline.smooths is None and a.baseline.head_gap is None
    html = build_report(a)
    missing = [line for line in html.split("<div class='note'>") if "run without the per-head diagnostics" in line]
    assert len(missing) == 3  # the value-matrix eigenvalues, the verdicts, the head atlas
    assert "Token similarity at layer" in html and "Attention received by each token" in html
    full = build_report(smoothviz.analyze(REFERENCE, device="cpu", mitigation="neutreno"))
    assert "run without the per-head diagnostics" not in full
    assert [v.key for v in views.in_section("layer", a)] == [
        v.key for v in views.in_section("layer") if v.key not in ("dovonon", "verdicts")
    ]
