"""Presentation mode: one view per screen, large type, no sidebar; arrow keys step the layer
(← →) and the view (↑ ↓). The run comes from the URL: ``text``, ``model``, ``mit`` and the
mitigation's parameters (``neutreno_lambda=…``), the same keys as the main page's links.
"""
from __future__ import annotations

import sys
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st
import streamlit.components.v1 as components

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # app/: run alone (AppTest) or as a page
import state  # noqa: E402
from smoothviz import figures, views  # noqa: E402
from smoothviz.lesson import REFERENCE  # noqa: E402
from smoothviz.mitigations import REGISTRY  # noqa: E402

st.set_page_config(page_title="SmoothViz · Present", page_icon="🫧", layout="wide",
                   initial_sidebar_state="collapsed")
st.markdown("<style>[data-testid='stSidebar'],[data-testid='stSidebarCollapsedControl']{display:none}"
            "html{font-size:22px}.block-container{padding-top:1rem}</style>", unsafe_allow_html=True)
KEYS = {"ArrowLeft": "◀ layer", "ArrowRight": "layer ▶", "ArrowUp": "◀ view", "ArrowDown": "view ▶"}
FONT_SIZE = 20


def run_settings(query) -> dict:
    """``run_analysis`` keyword arguments from the URL (unknown mitigations fall back to none)."""
    mit = query.get("mit", "neutreno")
    mit = mit if mit in REGISTRY else "none"
    params = {}
    if mit != "none":
        for name in REGISTRY[mit].PARAMS:
            key = f"{mit}_{name}".replace("-", "_")
            if key in query:
                params[name] = query[key]
    return dict(text=query.get("text", REFERENCE) or REFERENCE, model=query.get("model", "default"),
                mitigation=mit, params=params or None)


try:
    analysis = state.run_analysis(**run_settings(st.query_params), projection="pca")
except ValueError as err:
    st.error(f"{err}. Open this page from the main view's settings, or fix the URL.")
    st.stop()
L = analysis.n_layers


def step(key: str, delta: int, size: int, first: int) -> None:
    st.session_state[key] = (st.session_state.get(key, first) - first + delta) % size + first


layer = st.session_state.setdefault("present_layer", L)
index = st.session_state.setdefault("present_view", 0)
view = views.VIEWS[index]
cols = st.columns([1, 1, 6, 1, 1])
cols[0].button(KEYS["ArrowUp"], on_click=step, args=("present_view", -1, len(views.VIEWS), 0))
cols[1].button(KEYS["ArrowLeft"], on_click=step, args=("present_layer", -1, L, 1))
cols[2].markdown(f"**{views.SECTIONS[view.section]} · layer {layer} of {L}**")
cols[3].button(KEYS["ArrowRight"], on_click=step, args=("present_layer", 1, L, 1))
cols[4].button(KEYS["ArrowDown"], on_click=step, args=("present_view", 1, len(views.VIEWS), 0))

at = views.At(layer=layer, top_k=3, head_layer=layer)
if title := view.heading(at):
    st.markdown(f"**{title}**")
shown = view.figures(analysis, at)
for (name, fig), col in zip(shown, st.columns(len(shown))):
    fig = go.Figure(fig).update_layout(font_size=FONT_SIZE, height=540)  # a copy: figures may be shared
    col.plotly_chart(fig, theme=None, config=figures.image_config(name))
st.caption(view.caption)

# Arrow keys press the buttons above (the listener is added to the page once).
components.html("<script>const d=window.parent.document;if(!d.smoothvizKeys){d.smoothvizKeys=1;"
                f"const k={KEYS!r};".replace("'", '"')
                + "d.addEventListener('keydown',e=>{const l=k[e.key];if(!l||/INPUT|TEXTAREA/.test(e.target.tagName))"
                  "return;const b=[...d.querySelectorAll('button')].find(b=>b.innerText.trim()===l);"
                  "if(b){e.preventDefault();b.click();}});}</script>", height=0)
