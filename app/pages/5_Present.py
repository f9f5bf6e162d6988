"""Presentation mode: one view per screen, large type, no sidebar; arrow keys step the layer
(← →) and the view (↑ ↓). The run comes from the URL: ``text``, ``model``, ``mit`` and the
mitigation's parameters (``neutreno_lambda=…``), the same keys as the main page's links; a value
the mitigation cannot use is reset to its default with a warning, as on the main page.
"""
from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # app/: run alone (AppTest) or as a page
import controls  # noqa: E402
import state  # noqa: E402
from markup import md  # noqa: E402
from smoothviz import figures, views  # noqa: E402
from smoothviz.claims import frozen_caveat  # noqa: E402
from smoothviz.lesson import REFERENCE  # noqa: E402

st.set_page_config(page_title="SmoothViz · Present", page_icon="🫧", layout="wide",
                   initial_sidebar_state="collapsed")
# No sidebar and no top bar: the bar (fixed, its height in rem, so taller in this page's large type)
# covered the first row, the step buttons, at 1280×720.
st.markdown("<style>[data-testid='stSidebar'],[data-testid='stSidebarCollapsedControl'],"
            "[data-testid='stHeader']{display:none}html{font-size:22px}"
            ".block-container{padding-top:1rem;padding-bottom:1rem}</style>", unsafe_allow_html=True)
KEYS = {"ArrowLeft": "◀ layer", "ArrowRight": "layer ▶", "ArrowUp": "◀ view", "ArrowDown": "view ▶"}
FONT_SCALE = 1.3    # every font of the main page's figures, for a projector
CHART_HEIGHT = 440  # the buttons, a heading, the chart and its caption fit a 1280×720 screen


def run_settings(query) -> tuple[dict, list[str]]:
    """``run_analysis`` keyword arguments from the URL, and the values reset (plain text)."""
    model = query.get("model", "default")
    mit, params, refused = controls.linked_mitigation(query, state.model_shape(model, "auto", None))
    return dict(text=query.get("text", REFERENCE) or REFERENCE, model=model, mitigation=mit,
                params=params or None), refused


settings, refused = run_settings(st.query_params)
for message in refused:  # as on the main page: a link's value that cannot be used, reset
    st.warning(md(message), icon=":material/tune:")
analysis = state.analysis_or_error({**settings, "projection": "pca"}, project=True)  # the one way in
if analysis is None:
    st.stop()
L = analysis.n_layers


def step(key: str, delta: int, size: int, first: int) -> None:
    st.session_state[key] = (st.session_state.get(key, first) - first + delta) % size + first


layer = st.session_state.setdefault("present_layer", L)
index = st.session_state.setdefault("present_view", 0)
view = views.VIEWS[index]
cols = st.columns([3, 3, 14, 3, 3], vertical_alignment="center")  # buttons wide enough for their labels
cols[0].button(KEYS["ArrowUp"], on_click=step, args=("present_view", -1, len(views.VIEWS), 0))
cols[1].button(KEYS["ArrowLeft"], on_click=step, args=("present_layer", -1, L, 1))
cols[2].markdown(f"**{views.SECTIONS[view.section]} · view {index + 1} of {len(views.VIEWS)} · "
                 f"layer {layer} of {L}**")
cols[3].button(KEYS["ArrowRight"], on_click=step, args=("present_layer", 1, L, 1))
cols[4].button(KEYS["ArrowDown"], on_click=step, args=("present_view", 1, len(views.VIEWS), 0))

at = views.At(layer=layer, top_k=3, head_layer=layer)
if title := view.heading(at):
    st.markdown(f"**{title}**")
shown = view.figures(analysis, at)
for (name, fig), col in zip(shown, st.columns(len(shown))):
    fig = figures.enlarged(fig, FONT_SCALE, CHART_HEIGHT)  # a copy: figures may be shared
    col.plotly_chart(fig, theme=None, config=figures.image_config(name))
st.caption(view.caption, help=frozen_caveat((analysis.mitigation or {}).get("name"), analysis.lab))  # no room on screen
if lines := view.lines(analysis, {key: md(figures.run_name(analysis, key)) for key in analysis.runs()}):
    with st.expander("The lines the caption refers to"):  # computed from the numbers; folded to fit the screen
        st.caption("  \n".join(lines))

# Arrow keys press the buttons above. st.html runs the script in the page itself (no iframe,
# unlike components.v1.html, deprecated in Streamlit 1.67 in favour of st.iframe); the listener is
# added once per browser tab. The script is this file's own text, never anything from the URL.
st.html("<script>(()=>{const d=document;if(d.smoothvizKeys)return;d.smoothvizKeys=1;"  # once; no globals
        f"const k={KEYS!r};".replace("'", '"')
        + "d.addEventListener('keydown',e=>{const l=k[e.key];if(!l||/INPUT|TEXTAREA/.test(e.target.tagName))"
          "return;const b=[...d.querySelectorAll('button')].find(b=>b.innerText.trim()===l);"
          "if(b){e.preventDefault();b.click();}});})()</script>", unsafe_allow_javascript=True)
