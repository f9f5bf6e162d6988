"""The Lesson: the over-smoothing story in steps; predict, then see the answer from the numbers.

Thin: the steps, their questions and the answers' computations live in :mod:`smoothviz.lesson`;
an answer's analysis runs (``state.analysis_or_error``, cached and shared) only once the student predicts.
"""
from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # app/: run alone (AppTest) or as a page
import state  # noqa: E402
from smoothviz.lesson import STEPS  # noqa: E402

st.set_page_config(page_title="SmoothViz · Lesson", page_icon="🫧", layout="centered")
st.title("Lesson: how tokens become alike")
st.caption("Each step asks you to predict first. The answer is measured on the spot from a real analysis; "
           "open the step in the main view to see the charts, and the Theory page to see why.")

for i, step in enumerate(STEPS):
    st.subheader(step.title)
    st.markdown(step.intro)
    st.markdown(f"[Open this step in the main view →](/?{step.query()}) · [Theory →](Theory#{step.anchor})")
    guess = st.radio(step.question, step.options, index=None, key=f"lesson_{i}", horizontal=True)
    if guess is None:
        st.caption("Predict to reveal the answer.")
        continue
    s = step.settings
    analysis = state.analysis_or_error(dict(text=s["text"], model=s.get("model", "default"), lab=s.get("lab"),
                                            mitigation=s.get("mitigation"), params=s.get("params")))
    if analysis is None:  # e.g. a public server that does not allow this step's deep lab: the message is shown
        continue
    right, lines = step.answer(analysis)
    with st.expander("Answer", expanded=True):
        (st.success if guess == right else st.info)(
            f"{'Right' if guess == right else 'Not quite'}: the answer is **{right}**.")
        st.markdown("  \n".join(lines))
