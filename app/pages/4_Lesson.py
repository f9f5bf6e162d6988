"""The Lesson: the over-smoothing story in steps; predict, then see the answer from the numbers.

Thin: the steps, their questions and the answers' computations live in :mod:`smoothviz.words.lesson`;
an answer's analysis runs (``state.analysis_or_error``, cached and shared) only once the student
predicts, and the answer comes with the step's chart (the first view of the tab the step opens).
"""

from __future__ import annotations

import streamlit as st

from smoothviz.outputs import figures, views
from smoothviz.words.lesson import STEPS

import controls
import state

state.setup()  # the process's set-up, once (state.process)

CURVES = ["cosine_mean", "dm_rel", "effective_rank", "spectral_gap"]  # the lesson's column is narrow

st.set_page_config(page_title="SmoothViz · Lesson", page_icon="🫧", layout="centered")
st.title("Lesson: how tokens become alike")
st.caption(
    "Each step asks you to predict first. The answer is measured on the spot from a real analysis; "
    "open the step in the main view to see every chart, and the Theory page to see why."
)

for i, step in enumerate(STEPS):
    st.subheader(step.title)
    st.markdown(step.intro)
    # Same-tab links (a markdown link opens a new tab): the step's setting, and its theory.
    st.markdown(
        controls.same_tab_link(
            "Open this step in the main view →", "./", controls.query_for(step.settings, step.layer, step.section)
        )
        + " · "
        + controls.same_tab_link("Theory →", f"Theory#{step.anchor}", {}),
        unsafe_allow_html=True,
    )
    guess = st.radio(step.question, step.options, index=None, key=f"lesson_{i}", horizontal=True)
    if guess is None:
        st.caption("Predict to reveal the answer.")
        continue
    s = step.settings
    settings = dict(
        text=s["text"],
        model=s.get("model", "default"),
        device="auto",
        lab=s.get("lab"),
        mitigation=s.get("mitigation") or "none",
        params=s.get("params") or {},
        head=None,
        symmetrize="sym",
        exclude_special=False,
        projection="none",
    )
    analysis = state.analysis_or_error(settings)  # a public server may refuse a step's model: it says why
    if analysis is None:
        continue
    right, lines = step.answer(analysis)
    with st.expander("Answer", expanded=True):
        (st.success if guess == right else st.info)(
            f"{'Right' if guess == right else 'Not quite'}: the answer is **{right}**."
        )
        st.markdown("  \n".join(lines))
        # the chart with the numbers the answer quotes (both runs where it compares two)
        view = views.BY_KEY[step.view] if step.view else views.in_section(step.section)[0]
        layer = step.layer or analysis.n_layers
        at = views.At(layer=layer, head_layer=layer)
        if view.key == "curves":
            shown = [("curves", figures.metric_curves(analysis, CURVES, cols=2))]
        else:
            shown = view.figures(analysis, at)[-1:]  # per-run views: the mitigated run, or the baseline alone
        for name, fig in shown:
            st.plotly_chart(fig, theme=None, config=figures.image_config(name), key=f"lesson_chart_{i}")
        st.caption(f"{view.heading(at) or views.SECTIONS[view.section]}: {view.caption}")
state.let_go(globals(), "analysis")  # the shared cache keeps it; a session Streamlit keeps must not
