"""The Compare page (issue 13) through AppTest: default runs, a third run, relative depth, bad input."""

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from smoothviz.outputs.figures import run_colour

pytestmark = pytest.mark.slow
PAGE = Path(__file__).resolve().parent.parent / "app" / "pages" / "3_Compare.py"


def charts(app):
    return [json.loads(c.proto.spec) for c in app.get("plotly_chart")]


def test_compare_page_default_and_third_run():
    at = AppTest.from_file(str(PAGE), default_timeout=240).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    specs = charts(at)
    assert len(specs) == 5  # curves + (similarity, graph) per run
    names = {t["name"]: t["line"]["color"] for t in specs[0]["data"] if t.get("showlegend")}
    assert list(names) == ["A: default", "B: default + neutreno (lambda=0.4)"]
    assert list(names.values()) == [run_colour(0), run_colour(1)]
    assert [b.label for b in at.get("download_button")] == ["Report of every run (one HTML file, works offline)"]
    at.toggle(key="third").set_value(True).run()
    at.toggle(key="relative").set_value(True).run()
    assert not at.exception and not at.error
    specs = charts(at)
    assert len(specs) == 7
    legend = [t["name"] for t in specs[0]["data"] if t.get("showlegend")]
    assert legend[2].startswith("C: default + heads")
    assert max(max(t["x"]) for t in specs[0]["data"]) == 1.0  # layer / L
    at.text_input(key="c_heads_ablate").set_value("9.0").run()
    assert any("layer 9 does not exist" in e.value for e in at.error)
    assert len(charts(at)) == 5  # the other two runs still shown


def test_the_comparison_report_holds_every_run():
    """The offline report of a comparison: every run's curves, heatmap, graph and table, user text escaped."""
    import smoothviz
    from smoothviz.outputs import report

    cmp = smoothviz.compare(
        "<b>Two</b> models & one sentence.", ["model=default", "model=lab,lab.depth=8,lab.residual=false"], device="cpu"
    )
    runs = [(r.label, r.analysis, r.run) for r in cmp.runs]
    page = report.build_compare_report(cmp.text, runs, relative=True, depth=0.5)
    body = page.split("</head>", 1)[1]
    assert body.count("Plotly.newPlot(") == 1 + 2 * len(runs)
    assert "&lt;b&gt;Two&lt;/b&gt; models &amp; one sentence." in body and "<b>Two</b>" not in body
    for label, analysis, _ in runs:
        assert f"<h3>{label}</h3>" in body
        assert f"layer {max(1, round(0.5 * analysis.n_layers))} of {analysis.n_layers}" in body
    assert body.count("<table>") == len(runs)
