"""The Lesson page: every step predicts before it reveals, and answers with the measured numbers."""

import json
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import smoothviz
from smoothviz.words.lesson import STEPS

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "app"))
import controls


def link(step) -> dict:
    return {k: str(v) for k, v in controls.query_for(step.settings, step.layer, step.section).items()}


PAGE = Path(__file__).resolve().parent.parent / "app" / "pages" / "4_Lesson.py"


def test_five_to_eight_steps_each_a_preset_a_question_and_a_theory_link():
    assert 5 <= len(STEPS) <= 8
    for step in STEPS:
        q = link(step)
        assert q["text"] == step.settings["text"] and q["mit"] == step.settings.get("mitigation", "none")
        assert len(step.options) >= 2 and step.anchor
    assert link(STEPS[3])["lab_residual"] == "false"


@pytest.mark.parametrize("index", range(len(STEPS)))
def test_answers_are_computed_from_the_analysis(index):
    step = STEPS[index]
    s = dict(step.settings)
    text, mit = s.pop("text"), s.pop("mitigation")
    a = smoothviz.analyze(text, device="cpu", mitigation=None if mit == "none" else mit, **s)
    right, lines = step.answer(a)
    assert right in step.options and lines
    if index == 5:  # NeuTRENO at layer 6: the numbers quoted are the analysis's
        assert f"{a.baseline.rows[6]['cosine_mean']:.3f}" in lines[0]
        assert f"{a.mitigated.rows[6]['cosine_mean']:.3f}" in lines[0]
        assert right == ("down" if a.mitigated.rows[6]["cosine_mean"] < a.baseline.rows[6]["cosine_mean"] else "up")


@pytest.mark.slow
def test_the_page_reveals_only_after_a_prediction():
    at = AppTest.from_file(str(PAGE), default_timeout=240).run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.radio) == len(STEPS) and not at.expander
    assert sum("Open this step in the main view" in m.value for m in at.markdown) == len(STEPS)
    at.radio(key="lesson_5").set_value("up").run()
    assert not at.exception
    assert len(at.expander) == 1
    shown = " ".join(m.value for m in at.markdown) + " ".join(e.value for e in [*at.info, *at.success])
    assert "cosine_mean at layer 6: baseline" in shown and "the answer is **down**" in shown


@pytest.mark.slow
def test_a_step_link_opens_its_preset_in_the_main_view():
    step = STEPS[5]  # NeuTRENO, λ = 0.4, layer 6
    at = AppTest.from_file(str(PAGE.parent.parent / "SmoothViz.py"), default_timeout=240)
    for key, value in link(step).items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="mit").value == "neutreno"
    assert at.slider(key="neutreno_lambda").value == pytest.approx(0.4)
    assert at.slider(key="layer").value == 6  # the step's tab is open, at its layer
    assert any(sub.value == "Token similarity at layer 6" for sub in at.subheader)
    assert at.text_area(key="text").value == step.settings["text"]


@pytest.mark.slow
def test_each_answer_draws_the_chart_of_the_numbers_it_quotes():
    """Issue 22's audit: a step comparing two runs (NeuTRENO against the baseline) draws both, and
    the λ₂ step draws λ₂ over depth, not a similarity heatmap of one layer."""
    from smoothviz.outputs.views import BY_KEY

    assert all(step.view is None or step.view in BY_KEY for step in STEPS)
    at = AppTest.from_file(str(PAGE), default_timeout=240).run()
    at.radio(key="lesson_5").set_value("down").run()
    at.radio(key="lesson_1").set_value("larger").run()
    assert not at.exception, [e.value for e in at.exception]
    figs = {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    names = {t.get("name") for t in figs["lesson_chart_5"]["data"]}
    assert {"baseline", "neutreno (lambda=0.4)"} <= names, names
    titles = [a["text"] for a in figs["lesson_chart_1"]["layout"]["annotations"]]
    assert "spectral gap λ₂" in titles and all(t["type"] == "scatter" for t in figs["lesson_chart_1"]["data"])
