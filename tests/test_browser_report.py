"""The offline report's animation in a real browser (issue 28): its frames carry only what changes
from layer to layer (the heatmaps' z, the graphs' edges and node colours), so stepping to a layer
must still draw that layer's numbers with everything the frames leave out (node positions, colour
scales) in place — checked in Chromium against the analysis itself, forwards and back."""

import numpy as np
import pytest

import smoothviz
from smoothviz.outputs import animate
from smoothviz.outputs.report import ANIMATION_VIEWS, build_report
from smoothviz.words.lesson import REFERENCE

from test_browser import ARGS, CHROMIUM

pytestmark = [pytest.mark.browser, pytest.mark.slow]

READ = """(layer) => new Promise((done) => {
  const gd = document.querySelector('[data-name="smoothviz-animation"]');
  Plotly.animate(gd, [layer], {mode: 'immediate', frame: {duration: 0, redraw: true}, transition: {duration: 0}})
    .then(() => done(gd._fullData.map((t) => ({
      type: t.type,
      z: t.z ? Array.from(t.z, (row) => Array.from(row)) : null,
      x: t.x ? Array.from(t.x) : null,
      color: t.marker && t.marker.color && t.marker.color.length ? Array.from(t.marker.color) : null,
      colorscale: t.colorscale || (t.marker && t.marker.colorscale) || null,
      title: gd.layout.title.text,
    }))));
})"""


def test_the_reports_animation_steps_to_each_layers_numbers(tmp_path):
    from playwright.sync_api import sync_playwright

    analysis = smoothviz.analyze(REFERENCE, device="cpu", mitigation="neutreno", heads=False)
    path = tmp_path / "report.html"
    path.write_text(build_report(analysis))
    frames = animate.frame_figures(analysis, ANIMATION_VIEWS)  # the full frames the GIF renders
    assert CHROMIUM, "chromium is not on PATH: apt-get install -y chromium (the README's test command does)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.goto(path.as_uri())
            page.wait_for_function("document.querySelector('[data-name=\"smoothviz-animation\"]')?._fullData")
            for layer in (3, 6, 0, 2):  # forwards and back: nothing a later frame changed may stay
                drawn = page.evaluate(READ, str(layer))
                want = [t.to_plotly_json() for t in frames[layer].data]
                assert f"layer {layer} of 6" in drawn[0]["title"]
                assert len(drawn) == len(want)
                for got, full in zip(drawn, want):
                    assert got["type"] == full["type"]
                    if full["type"] == "heatmap":
                        assert np.allclose(got["z"], full["z"], atol=1e-6) and got["colorscale"]
                    elif full.get("mode") == "markers+text":  # the graph's nodes: fixed circle, this layer's colours
                        assert np.allclose(got["x"], full["x"]) and got["colorscale"]
                        assert np.allclose(got["color"], full["marker"]["color"], atol=1e-6)
                    elif full.get("mode") == "lines":  # this layer's edges
                        assert [v is None for v in got["x"]] == [v is None for v in full["x"]]
                        assert np.allclose(
                            [v for v in got["x"] if v is not None], [v for v in full["x"] if v is not None]
                        )
        finally:
            browser.close()
