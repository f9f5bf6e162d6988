"""Accessibility: one colour-blind-safe palette for runs in every view, and every chart as a table."""

from pathlib import Path

import pytest

import smoothviz
from smoothviz.outputs import figures, views

APP = Path(__file__).resolve().parent.parent / "app"


@pytest.fixture(scope="module")
def analysis():
    return smoothviz.analyze("The cat sat on the mat.", device="cpu", mitigation="neutreno", projection="pca")


def test_runs_share_the_okabe_ito_palette():
    assert figures.RUN_COLOURS == {"baseline": figures.run_colour(0), "mitigated": figures.run_colour(1)}
    assert figures.RUN_PALETTE[:2] == ("#0072B2", "#D55E00")


def test_every_run_coloured_view_uses_the_palette(analysis):
    at = views.At(layer=2)
    for key in ("curves", "shi", "rollout"):
        fig = views.BY_KEY[key].build(analysis, None, at)
        colours = {t.line.color for t in fig.data if t.line is not None and t.line.color}
        assert colours <= set(figures.RUN_COLOURS.values()), (key, colours)


def test_every_view_has_a_table_of_its_numbers(analysis):
    at = views.At(layer=2, top_k=2, head_layer=2, head=1)
    for view in views.VIEWS:
        rows = view.rows(analysis, at)
        assert rows and all(isinstance(r, dict) for r in rows), view.key
    curves = views.BY_KEY["curves"].rows(analysis, at)
    assert len(curves) == 2 * (analysis.n_layers + 1)
    assert curves[3]["cosine_mean"] == round(analysis.baseline.rows[3]["cosine_mean"], 4)
    sim = views.BY_KEY["similarity"].rows(analysis, at)
    assert len(sim) == 2 * len(analysis.labels)
    assert sim[0]["0 · [CLS]"] == pytest.approx(1.0, abs=1e-3)


@pytest.mark.slow
def test_the_page_offers_every_chart_as_a_table():
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(str(APP / "SmoothViz.py"), default_timeout=240).run()
    assert not app.exception, [e.value for e in app.exception]
    tables, frames = [], []
    for section, heading in views.SECTIONS.items():  # every tab and every table, as a reader would open them
        app.session_state["section"] = heading
        app.run()
        assert not app.exception, [e.value for e in app.exception]
        shown = [view for view in views.in_section(section) if view.table is not None]
        assert len(app.dataframe) == 0  # a closed table is not even sent to the browser
        tables += [e for e in app.expander if e.label == "Show as table"]
        for view in shown:
            app.session_state[f"table-{view.key}"] = True
        app.run()
        assert not app.exception, [e.value for e in app.exception]
        assert len(app.dataframe) == len(shown)
        frames += list(app.dataframe)
    assert len(tables) == len(views.VIEWS)
    assert len(frames) >= len(views.VIEWS)
    curves = frames[0].value
    assert {"run", "layer", "cosine_mean", "dm_rel"} <= set(curves.columns)
