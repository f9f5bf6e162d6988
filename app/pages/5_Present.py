"""Presentation mode: one view per screen, large type, no sidebar; arrow keys step the layer
(← →) and the view (↑ ↓). The run comes from the URL with the main page's keys and checks
(:func:`controls.linked_settings`: text, model and lab, device, mitigation and its parameters,
graph options), so the main page's "Present this" link projects exactly its setup; ``view`` and
``layer`` say where the lecturer is, so a copied link reopens the same screen. A value that
cannot be used is reset to its default with a warning naming it, as on the main page.
"""

from __future__ import annotations

import functools
import html
import json

import streamlit as st

from smoothviz.outputs import figures, views
from smoothviz.science.metrics import CARDS
from smoothviz.words.claims import frozen_caveat

import controls
import state
from markup import md

state.setup()  # the process's set-up, once (state.process)

st.set_page_config(page_title="SmoothViz · Present", page_icon="🫧", layout="wide", initial_sidebar_state="collapsed")
# No sidebar and no top bar: the bar (fixed, its height in rem, so taller in this page's large type)
# covered the first row, the step buttons, at 1280×720. Captions in the text's own dark grey at full
# opacity: the theme's (60 % opacity) is 3.9:1 on white, under WCAG AA's 4.5:1, for a washed-out projector.
st.markdown(
    "<style>[data-testid='stSidebar'],[data-testid='stSidebarCollapsedControl'],"
    "[data-testid='stHeader']{display:none}html{font-size:20px}"
    "[data-testid='stCaptionContainer']{opacity:1 !important}"
    "[data-testid='stCaptionContainer'],[data-testid='stCaptionContainer'] *{color:#31333F !important}"
    ".block-container{padding-top:0.6rem;padding-bottom:0.5rem}"
    "[data-testid='stButton'] button{padding:0.2rem 0.6rem}"
    ".sentence{white-space:nowrap;overflow:hidden;text-overflow:ellipsis;color:#31333F}</style>",
    unsafe_allow_html=True,
)
KEYS = {"ArrowLeft": "◀ layer", "ArrowRight": "layer ▶", "ArrowUp": "◀ view", "ArrowDown": "view ▶"}
FONT_SCALE = 1.3  # every font of the main page's figures, for a projector
MIN_FONT = 16  # px: no chart text smaller (a projector at the back of a room)
CHART_HEIGHT = 410  # the buttons, the heading, the sentence, the chart and a one-line caption fit 1280×720
CAPTION_LINE = (90, 30)  # characters and pixels of a caption line at 1024 px wide: a longer caption, a lower chart
ORDER = [view.key for view in views.VIEWS]
FUSED = "fused"  # the layer position after the last, for a fusion's fused output
CURVES = CARDS  # the per-layer cards' metrics: four panels readable from the back


def where(query, L: int, fused: bool) -> tuple[int, int, list[str]]:
    """The view (its index) and layer a link asks for (``view=<key>``, ``layer=<1…L>``, or ``fused``:
    position L + 1, a fusion's fused output), and what was reset."""
    refused = []
    view = query.get("view", ORDER[0])
    if view not in ORDER:
        refused.append(controls.refusal("view", view, "one of " + ", ".join(ORDER), ORDER[0]))
        del query["view"]
        view = ORDER[0]
    layer = query.get("layer", str(L))
    if fused and layer == FUSED:
        return ORDER.index(view), L + 1, refused
    if not controls._in_range(1, L, integer=True)(layer):
        refused.append(
            controls.refusal("layer", layer, f"this model has layers 1–{L}" + (" and fused" if fused else ""), L)
        )
        del query["layer"]
        layer = L
    return ORDER.index(view), int(float(layer)), refused


settings, refused = controls.linked_settings(st.query_params)
analysis = state.analysis_or_error(settings)  # the one way in
if analysis is None:
    for message in refused:
        st.warning(md(message), icon=":material/tune:")
    st.stop()
L = analysis.n_layers
ORDER = [view.key for view in views.views_for(analysis)]  # a picture: its own views after the shared ones
positions = L + (1 if views.has_fused(analysis) else 0)  # the fused output: one more position
index, layer, more = where(st.query_params, L, positions > L)  # the URL is this page's state: the buttons write it
st.session_state.update(present_view=index, present_layer=layer)
refused += more
for message in refused:  # as on the main page: a link's value that cannot be used, reset
    st.warning(md(message), icon=":material/tune:")


def step(key: str, delta: int, size: int, first: int) -> None:
    """A button's (or an arrow key's) step, written into the URL: a copied link reopens this screen."""
    st.session_state[key] = (st.session_state.get(key, first) - first + delta) % size + first
    st.query_params["view"] = ORDER[st.session_state["present_view"]]
    position = st.session_state["present_layer"]
    st.query_params["layer"] = FUSED if position > L else str(position)


view = views.views_for(analysis)[index]
cols = st.columns([4, 4, 10, 4, 4], vertical_alignment="center")  # buttons wide enough for their labels at 1024 px
cols[0].button(KEYS["ArrowUp"], on_click=step, args=("present_view", -1, len(ORDER), 0))
cols[1].button(KEYS["ArrowLeft"], on_click=step, args=("present_layer", -1, positions, 1))
fused = layer > L
cols[2].markdown(
    f"**view {index + 1} of {len(ORDER)} · "
    + (f"fused output, after layer {L} of {L}**" if fused else f"layer {layer} of {L}**")
)
cols[3].button(KEYS["ArrowRight"], on_click=step, args=("present_layer", 1, positions, 1))
cols[4].button(KEYS["ArrowDown"], on_click=step, args=("present_view", 1, len(ORDER), 0))
layer = min(layer, L)  # the fused output is measured on the last layer's graph
picked = None  # the main page's highlighted token, "i · token" as its menu (and so its link) names it
if (asked := st.query_params.get("token")) is not None:
    head = asked.split(" · ", 1)[0]
    if head.isdigit() and int(head) < len(analysis.labels) and asked == f"{head} · {analysis.labels[int(head)]}":
        picked = int(head)
    else:
        st.warning(
            md(controls.refusal("token", asked, f"this sentence has tokens 0–{len(analysis.labels) - 1}", "none")),
            icon=":material/tune:",
        )
        del st.query_params["token"]
at = views.At(layer=layer, top_k=3, head_layer=layer, fused=fused, picked=picked)
heading = view.heading(at) or views.SECTIONS[view.section]
if fused and "fused output" not in heading:  # said only where the chart draws it (the curves' ★)
    heading += (
        " · the fused output: ★" if view.key in ("curves", "trajectories") else " · this view has no fused output"
    )
st.markdown(f"**{heading}**")

# The sentence on one line (cut with an ellipsis where the screen ends; its full text in the tooltip).
text = " ".join(settings["text"].split())
if analysis.image is not None:  # a vision model: the picture's name and patch grid stand for the sentence
    info = analysis.image
    text = f"{info.name}, {info.grid[0]}×{info.grid[1]} patches"
beside = figures.run_name(analysis, "mitigated") if analysis.mitigation else "no mitigation"
st.html(
    f"<div class='sentence' title='{html.escape(text, quote=True)}'>{html.escape(analysis.model)}, baseline "
    f"beside <b>{html.escape(beside)}</b>: “{html.escape(text)}”</div>"
)
unknown = controls.unknown_note(analysis.labels)  # e.g. an emoji: its [UNK] labels need a word
if unknown:  # one more line, cut like the sentence's where the screen ends (its full text in the tooltip)
    st.html(f"<div class='sentence' title='{html.escape(unknown, quote=True)}'>{html.escape(unknown)}</div>")

shown = analysis
if view.section == "trajectories":
    shown = state.projected(settings, analysis)
    if shown is None:
        st.stop()
settings_key = json.dumps(settings, sort_keys=True, default=str)


def build(name: str, run_key: str | None):
    """The view's figure for a projector, the layer marked where the view shows every layer."""
    if view.key == "curves":
        # wide panels, the positions after L ticked ◆ / ★ (named in the axis title): clear of each other
        fig = figures.metric_curves(shown, list(CURVES), cols=2, row_gap=0.3, compact=True)
    else:
        fig = view.build(shown, run_key, at)
    return figures.enlarged(figures.mark_layer(fig, view.key, layer + fused), FONT_SCALE, height, floor=MIN_FONT)


lines = view.lines(analysis, {key: md(figures.run_name(analysis, key)) for key in analysis.runs()}, at)
height = max(
    280,
    CHART_HEIGHT
    - CAPTION_LINE[1] * (-(-len(view.caption) // CAPTION_LINE[0]) - 1)
    - (45 if lines else 0)
    - (40 if unknown else 0),
)


names = [f"{view.key}-{k}" for k in shown.runs()] if view.per_run else [view.key]
# Cached (state.figure, keyed on the settings, the view and the layer): an arrow press for a screen
# already shown redraws from the cache instead of rebuilding (1.9 s before).
for name, col in zip(names, st.columns(len(names))):
    run_key = name.removeprefix(f"{view.key}-") if view.per_run else None
    fig = state.figure(
        functools.partial(build, name, run_key), (settings_key, "present", name, layer, fused, picked, height)
    )
    col.plotly_chart(fig, theme=None, config=figures.image_config(name))
caveat = frozen_caveat((analysis.mitigation or {}).get("name"), analysis.lab)
st.caption(view.caption, help=caveat)  # the caveat on hover and in the expander: no room on a 1280×720 screen
if lines or caveat:
    label = "The lines the caption refers to" if lines else "About this mitigation"
    with st.expander(label):  # computed from the numbers (and the caveat); folded to fit the screen
        st.caption("  \n".join(lines + ([md(caveat)] if caveat else [])))

# Arrow keys press the buttons above. st.html runs the script in the page itself (no iframe,
# unlike components.v1.html, deprecated in Streamlit 1.67 in favour of st.iframe); the listener is
# added once per browser tab. The script is this file's own text, never anything from the URL.
st.html(
    "<script>(()=>{const d=document;if(d.smoothvizKeys)return;d.smoothvizKeys=1;"  # once; no globals
    f"const k={KEYS!r};".replace("'", '"')
    + "d.addEventListener('keydown',e=>{const l=k[e.key];if(!l||/INPUT|TEXTAREA/.test(e.target.tagName))"
    "return;const b=[...d.querySelectorAll('button')].find(b=>b.innerText.trim()===l);"
    "if(b){e.preventDefault();b.click();}});})()</script>",
    unsafe_allow_javascript=True,
)
state.let_go(globals(), "analysis", "shown")  # the shared cache keeps them; a session Streamlit keeps must not
