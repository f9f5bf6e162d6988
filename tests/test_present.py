"""Presentation mode: one view per screen, its run from the URL, buttons (and so arrow keys) step."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from smoothviz.outputs import views

PAGE = Path(__file__).resolve().parent.parent / "app" / "pages" / "5_Present.py"
pytestmark = pytest.mark.slow


def test_one_view_per_screen_stepped_by_the_buttons_the_keys_press():
    at = AppTest.from_file(str(PAGE), default_timeout=240)
    at.query_params["mit"] = "neutreno"
    at.query_params["neutreno_lambda"] = "0.6"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("plotly_chart")) == 1  # the first view: the curves
    assert "layer 6 of 6" in at.markdown[1].value
    labels = {b.label for b in at.button}
    assert {"◀ layer", "layer ▶", "◀ view", "view ▶"} <= labels
    next(b for b in at.button if b.label == "layer ▶").click().run()
    assert "layer 1 of 6" in at.markdown[1].value  # wraps around
    for _ in range(3):  # shi, rollout, similarity
        next(b for b in at.button if b.label == "view ▶").click().run()
    assert not at.exception
    assert at.session_state["present_view"] == 3 and views.VIEWS[3].key == "similarity"
    assert len(at.get("plotly_chart")) == 2  # baseline beside NeuTRENO
    assert "Token similarity at layer 1" in " ".join(m.value for m in at.markdown)


def test_enlarged_scales_every_font_and_leaves_the_original_alone():
    import plotly.graph_objects as go

    from smoothviz.outputs import figures

    fig = go.Figure(go.Scatter(y=[1, 2], marker_size=7, textfont_size=10))
    fig.update_layout(font_size=13, legend_font_size=11).update_xaxes(tickfont_size=11)
    big = figures.enlarged(fig, 1.5, 400)
    assert big.layout.font.size == 19.5 and big.layout.legend.font.size == 16.5
    assert big.layout.xaxis.tickfont.size == 16.5 and big.data[0].textfont.size == 15
    assert big.data[0].marker.size == 7 and big.layout.height == 400  # sizes of marks are not fonts
    assert fig.layout.font.size == 13 and fig.layout.height is None


def test_unknown_tokens_are_named_under_the_sentence():
    """Issue 22's audit: an emoji is [UNK] to the default model; Present says so, as the main page
    does, and a sentence without one gets no such line."""
    at = AppTest.from_file(str(PAGE), default_timeout=240)
    at.query_params.update({"text": "🎉 party 🎉", "view": "similarity"})
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    shown = " ".join(h.proto.body for h in at.get("html"))
    assert "2 of the 5 tokens analysed are the unknown token [UNK]" in shown
    plain = AppTest.from_file(str(PAGE), default_timeout=240)
    plain.query_params.update({"text": "A party", "view": "similarity"})
    plain.run()
    assert not plain.exception and "unknown token" not in " ".join(h.proto.body for h in plain.get("html"))


def test_at_the_fused_output_a_view_without_it_says_so():
    """Issue 22's audit: at the fused position the heading claimed "the fused output" on views that
    do not draw it (rollout, trajectories, the atlas); only the curves (★) and the similarity show it."""
    said = {}
    for view in ("curves", "rollout", "similarity"):
        at = AppTest.from_file(str(PAGE), default_timeout=240)
        at.query_params.update({"mit": "fusion-mean", "fusion_mean_layers": "4-6", "layer": "fused", "view": view})
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        said[view] = " ".join(m.value for m in at.markdown)
    assert "· the fused output: ★" in said["curves"]
    assert "this view has no fused output" in said["rollout"]
    assert "Token similarity of the fused output" in said["similarity"] and "no fused output" not in said["similarity"]
