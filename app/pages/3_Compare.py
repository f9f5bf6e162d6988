"""Compare runs side by side: each run a model plus an optional mitigation (issue 13).

Run A, B (and optionally C) are chosen with the same controls as the main page, every widget
bound to the URL with the run's prefix (``a_``, ``b_``, ``c_``). Each run is one cached
analysis (``state.analysis_or_error``); the over-depth curves share an axis, absolute or relative
(layer / L) depth, and each run keeps its colour (``figures.RUN_PALETTE``) in every view.
"""

from __future__ import annotations

import functools

import streamlit as st

from smoothviz.mitigations import REGISTRY
from smoothviz.model.vision import takes_images
from smoothviz.options import SYMMETRIZE
from smoothviz.outputs import figures, views
from smoothviz.pipeline.compare import RunSpec
from smoothviz.words.claims import frozen_caveat

import controls
import state
from markup import md

state.setup()  # the process's set-up, once (state.process)

URL = controls.URL
DEFAULTS = {"a": ("default", "none"), "b": ("default", "neutreno"), "c": ("default", "heads")}

st.set_page_config(page_title="SmoothViz · Compare", page_icon="🫧", layout="wide")
st.title("Compare runs")
st.caption(
    "Each run is a model plus an optional mitigation, on the same sentence (or, for vision models, the same "
    "picture) and graph options. "
    "Models of different depths share an axis with relative depth (layer / L)."
)


def run_controls(letter: str, column) -> dict | None:
    """One run's model, lab settings and mitigation; ``None`` when its settings cannot be read."""
    p = f"{letter}_"
    model0, mit0 = DEFAULTS[letter]
    with column:
        colour = figures.run_colour("abc".index(letter))
        st.markdown(
            f"<span style='color:{colour};font-size:1.3em'>■</span> **Run {letter.upper()}**", unsafe_allow_html=True
        )
        models = list(controls.MODELS)
        model = st.selectbox(
            "Model", models, index=models.index(model0) if model0 in models else 0, key=p + "model", bind=URL
        )
        if model == "custom":
            model = st.text_input("Hugging Face id or local directory", key=p + "model_id", bind=URL).strip()
        refused: list = []  # a link's value the widget cannot hold, reset to its default
        lab = None
        if model == "lab":  # the main page's widgets (sliders, toggles, menus), keys a_lab_depth, …
            lab = controls.lab_widgets(True, refused, prefix=p)
        names = ["none", *REGISTRY]
        mitigation = st.selectbox("Mitigation", names, index=names.index(mit0), key=p + "mit", bind=URL)
        params = controls.mitigation_params(mitigation, refused, prefix=p) if mitigation != "none" else {}
        for message in refused:
            column.warning(md(message), icon=":material/tune:")
    return dict(model=model, lab=lab, mitigation=mitigation, params=params)


def label(run: dict) -> str:
    mitigation = None if run["mitigation"] == "none" else run["mitigation"]
    return RunSpec(model=run["model"], lab=run["lab"], mitigation=mitigation, params=run["params"]).describe()


source = st.container()  # the sentence box, or the picture box when the runs' models take images (below)
with st.expander("Graph options and runs", expanded=True):
    opt = st.columns(4)
    third = opt[0].toggle("Third run (C)", key="third", bind=URL)
    relative = opt[1].toggle("Relative depth (layer / L)", key="relative", bind=URL)
    sym = opt[2].radio("Symmetrisation", list(SYMMETRIZE), key="sym", bind=URL, horizontal=True)
    exclude = opt[3].checkbox("Exclude special tokens", key="nospecial", bind=URL)
    letters = "abc" if third else "ab"
    cols = st.columns(len(letters))
    specs = {x: run_controls(x, c) for x, c in zip(letters, cols)}

# One input for every run: a sentence for text models, a picture (the main page's image box) for vision models.
takes = {letter: takes_images(spec["model"]) for letter, spec in specs.items() if spec is not None}
image = None
with source:
    if len(set(takes.values())) > 1:

        def runs_that(kind: bool) -> str:
            named = [x.upper() for x, v in takes.items() if v == kind]
            return f"run {named[0]} takes" if len(named) == 1 else f"runs {' and '.join(named)} take"

        first = runs_that(True)
        st.error(
            f"{first[0].upper()}{first[1:]} pictures and {runs_that(False)} sentences: every run reads the "
            "same input, so compare vision models with vision models and text models with text models.",
            icon=":material/error:",
        )
        st.stop()
    if any(takes.values()):
        refused_image: list = []
        image, text = controls.image_box(refused_image), ""
        for message in refused_image:
            st.warning(md(message), icon=":material/tune:")
        if not image:  # an unusable upload: the box says why
            st.stop()
    else:
        text = st.text_area("Text", value=controls.default_text(), key="text", bind=URL, height=80)

runs, reported, presents = [], [], []  # reported: (name, settings), what the report's download holds;
# presents: "Present this", each run on the projector page beside its baseline
for letter, spec in specs.items():
    if spec is None:
        continue
    settings = dict(
        text=text or "",
        model=spec["model"],
        device="auto",
        lab=spec["lab"],
        mitigation=spec["mitigation"],
        params=spec["params"],
        head=None,
        symmetrize=sym,
        exclude_special=exclude,
        projection="none",
        image=image,
    )
    analysis = state.analysis_or_error(settings)
    if analysis is None:
        continue
    run = analysis.mitigated if spec["mitigation"] != "none" else analysis.baseline
    runs.append((letter, f"{letter.upper()}: {label(spec)}", analysis, run))
    reported.append((f"{letter.upper()}: {label(spec)}", settings))
    if image and not image.startswith("example:"):  # a link cannot carry an upload: no Present link for it
        continue
    query = {
        "model": spec["model"],
        "mit": spec["mitigation"],
        "sym": sym,
        "nospecial": str(exclude).lower(),
        **{f"lab_{k}": str(v).lower() if isinstance(v, bool) else str(v) for k, v in (spec["lab"] or {}).items()},
        **{controls._param_key(spec["mitigation"], k): str(v) for k, v in spec["params"].items()},
    }
    query.update({"image": image.partition(":")[2]} if image else {"text": controls._url_text(text or "")})
    if spec["model"] not in controls.MODELS:  # a Hugging Face id or a directory: Present's custom model
        query.update(model="custom", model_id=spec["model"])
    presents.append(controls.same_tab_link(f"Present run {letter.upper()}", "Present", query))

if presents:
    st.markdown(
        "▶ " + " · ".join(presents) + " — one run at a time on the projector page, beside its baseline",
        unsafe_allow_html=True,
    )
if runs:
    notes_drawn = False
    depth = 1.0
    for view in views.compared():  # the registry's views that compare, in page order
        st.subheader(view.compare.title)
        if not view.per_run:
            st.caption(
                view.compare.caption
                + (" x = layer / L, so runs of different depths share an axis." if relative else "")
            )
            st.plotly_chart(
                view.compare.build([(name, run) for _, name, _, run in runs], relative), key=f"cmp_{view.key}"
            )
            continue
        if not notes_drawn:  # once, under the first chart: each run's notes and caveat
            notes_drawn = True
            for letter, _, analysis, _ in runs:
                for note in analysis.notes + [
                    c for c in [frozen_caveat((analysis.mitigation or {}).get("name"), analysis.lab)] if c
                ]:
                    st.caption(md(f"{letter.upper()}: {note}"))
            depth = st.select_slider(
                "Depth (fraction of each run's layers)",
                [0.25, 0.5, 0.75, 1.0],
                value=1.0,
                key="depth",
                bind=URL,
                help="Each run shows its layer nearest this fraction of its depth.",
            )
        st.caption(view.compare.caption)
        for col, (letter, _, analysis, run) in zip(st.columns(len(runs)), runs):
            L = analysis.n_layers
            layer = max(1, round(depth * L))
            with col:
                st.markdown(
                    f"<span style='color:{figures.run_colour('abc'.index(letter))}'>■</span> "
                    f"**Run {letter.upper()}**, layer {layer} of {L}, {len(analysis.keep)} tokens",
                    unsafe_allow_html=True,
                )
                st.plotly_chart(
                    view.compare.build(view.compare.title.split(",")[0].lower(), analysis, run, layer),
                    key=f"cmp_{view.key}_{letter}",
                )

    shown_input = runs[0][2].image.name if image else text  # the report names the picture in the sentence's place
    st.download_button(
        "Report of every run (one HTML file, works offline)",
        functools.partial(state.compare_report_html, shown_input, reported, relative=relative, depth=depth),
        "smoothviz-comparison.html",
        "text/html",
        on_click="ignore",
        key="compare_report",
    )
state.let_go(globals(), "analysis", "run", "runs")  # the shared cache keeps them; a session Streamlit keeps must not
