"""SmoothViz: see over-smoothing in Transformers — the main page.

Thin by design: the sidebar (controls.py) gives the settings, state runs or fetches the
analysis, smoothviz.outputs.figures draws. The layer slider and the head atlas live in fragments, so
moving them re-slices the cached analysis without rerunning the page.
"""

from __future__ import annotations

import functools
import json
import time

import streamlit as st

from smoothviz.mitigations import REGISTRY
from smoothviz.mitigations.heads import format_ablate, parse_ablate
from smoothviz.outputs import animate, figures, image_views, report, views
from smoothviz.science.metrics import CARDS
from smoothviz.science.metrics import by_name as metrics_registry
from smoothviz.words import claims, trends

import controls
import state
from markup import md

state.setup()  # the process's set-up, once (state.process)

PAGE_START = time.perf_counter()  # the server's time for this run (SMOOTHVIZ_TIMINGS=1)
st.set_page_config(page_title="SmoothViz", page_icon="🫧", layout="wide")
URL = controls.URL
THEORY = "Theory"  # the theory page's URL path (app/pages/1_Theory.py)
PLAY_SECONDS = 1.2
SENTENCE_CHARS = 300  # the sentence as shown above the charts (the text box holds all of it)

settings, img, refused = state.timed("sidebar", controls.sidebar)()
# Under 640 px (a phone) Streamlit stacks columns, but the ten small over-depth charts stay one
# figure of five columns, ~70 px each: their titles overlapped (issue 22). There the figure keeps
# a readable width and scrolls sideways instead.
# The Shi and rollout charts' one-line legends ("… (same as the baseline: drawn dashed over it)")
# were cut at the right edge at 390 px: they scroll sideways too.
NARROW = (
    "<style>@media (max-width: 640px) { .st-key-view-curves, .st-key-view-shi, .st-key-view-rollout"
    " { overflow-x: auto; }"
    " .st-key-view-curves [data-testid='stHorizontalBlock'] { min-width: 820px; }"
    " .st-key-view-shi [data-testid='stHorizontalBlock'], .st-key-view-rollout [data-testid='stHorizontalBlock']"
    " { min-width: 700px; } }</style>"
)
st.html(NARROW)


def draw(view: views.View, at: views.At, shown) -> None:
    """One view of the analysis ``shown``: its heading, its caption (with a link to the Theory
    page) and its figures, a run per column. Built figures are shared from ``state.figure``, keyed
    on the settings and the parts of ``at`` the view depends on (building one is most of a slider
    move's cost)."""
    if title := view.heading(at):
        st.subheader(title)
    st.caption(f"{view.caption} [Theory →]({THEORY}#{view.anchor})")
    parts = tuple(getattr(at, name) for name in view.depends)
    box = st.container(key=f"view-{view.key}")  # a class for NARROW's CSS
    for name, col in zip(figure_names(view, shown), box.columns(view.count(shown))):
        key = name.removeprefix(f"{view.key}-") if view.per_run else None
        fig = state.figure(functools.partial(view.build, shown, key, at), (SETTINGS_KEY, name, *parts))
        pick = {}
        if view.key == "patch-similarity":  # a picture: clicking a patch compares every patch with it
            pick = dict(on_select=lambda k=f"pick-{name}": pick_patch(k), selection_mode="points", key=f"pick-{name}")
        col.plotly_chart(fig, theme=None, config=figures.image_config(name, img), **pick)
    if lines := view.lines(shown, NAMES, at):  # sentences computed from the numbers on screen, under the chart
        st.caption("  \n".join(lines))
    if view.table is not None:  # the numbers behind the chart (accessibility, copying into a report)
        with st.expander("Show as table", key=f"table-{view.key}", on_change="rerun") as box:
            if box.open:  # built and sent only when opened: a closed table cost every page ~0.1 s of browser CPU
                st.dataframe(view.rows(shown, at), hide_index=True)


def figure_names(view: views.View, shown) -> list[str]:
    return [f"{view.key}-{key}" for key in shown.runs()] if view.per_run else [view.key]


def draw_section(section: str, at: views.At, shown=None) -> None:
    """Every view of ``section`` in list order, of ``shown`` (the page's analysis unless given);
    consecutive half-width views share a row."""
    shown = analysis if shown is None else shown
    for line in views.left_out(section, shown, at):  # a view a long input's analysis cannot draw
        st.info(md(line), icon=":material/info:")
    pending: list = []
    for view in views.in_section(section, shown) + [None]:
        if view is not None and view.half:
            pending.append(view)
            if len(pending) < 2:
                continue
        for half, col in zip(pending, st.columns(2) if pending else []):
            with col:
                draw(half, at, shown)
        pending = []
        if view is not None and not view.half:
            draw(view, at, shown)


def run_title(analysis, key: str) -> str:
    return figures.run_name(analysis, key)


st.title("SmoothViz")
WHAT = "a picture's patches" if settings.get("image") is not None else "a sentence's tokens"  # a vision model: patches
st.markdown(f"Watch {WHAT} become alike, layer by layer. New here? Try a preset, or read the [theory]({THEORY}).")
for message in refused:  # a link's value the widgets cannot hold, reset to the default
    st.warning(md(message), icon=":material/tune:")
if not settings["model"]:
    st.error("Type a Hugging Face id or a local model directory, or choose the default model.", icon=":material/error:")
    st.stop()
if settings.get("image") == "":  # a vision model with an unusable upload: the sidebar says why
    st.error(
        "The uploaded picture cannot be used (see the sidebar): choose an example or upload another.",
        icon=":material/error:",
    )
    st.stop()
analysis = state.analysis_or_error(settings)
state.warm_up()  # after the first analysis, so numba's compile never competes with it
if analysis is None:
    st.stop()

labels = analysis.labels
n, L = len(labels), analysis.n_layers
token_name = lambda i: "none" if i < 0 else f"{i} · {labels[i]}"  # noqa: E731 - also the URL's value
if st.session_state.get("token", -1) >= n:  # a token picked in a longer sentence
    del st.session_state["token"]
elif (
    "token" not in st.session_state
    and (asked := st.query_params.get("token")) is not None
    and asked not in {token_name(i) for i in range(-1, n)}
):
    st.warning(
        md(controls.refusal("token", asked, f"this sentence has tokens 0–{n - 1}, e.g. '{token_name(0)}'", "none")),
        icon=":material/tune:",
    )
    del st.query_params["token"]
picked = st.sidebar.selectbox(
    "Highlight a token",
    [-1, *range(n)],
    key="token",
    bind=URL,
    format_func=token_name,
    help="Marks the token in every view.",
)
picked = None if picked < 0 else picked
SETTINGS_KEY = json.dumps(settings, sort_keys=True, default=str)  # what the analysis depends on

mitigation = analysis.mitigation["name"] if analysis.mitigation else None
beside = md(run_title(analysis, "mitigated")) if mitigation else "no mitigation"
shown_text = " ".join(settings["text"].split())
if analysis.image is not None:  # a picture: its name and patch grid, and the image as the model saw it
    info = analysis.image
    st.markdown(
        f"**Image:** {md(info.name)} — {info.grid[0]}×{info.grid[1]} patches of {info.patch} px, "
        f"after {info.prefix} token{'s' if info.prefix > 1 else ''} ({md(', '.join(analysis.tokens[: info.prefix]))})"
    )
    st.image(info.pixels, width=160, caption="As the model saw it (after its image processor)")
else:
    st.markdown(f"**Sentence:** {md(shown_text[:SENTENCE_CHARS])}" + ("…" if len(shown_text) > SENTENCE_CHARS else ""))
st.caption(
    f"Model **{md(analysis.model)}** on {analysis.device} · {n} tokens analysed · {L} layers × "
    f"{analysis.heads} heads · baseline beside **{beside}**"
)
NAMES = {key: md(run_title(analysis, key)) for key in analysis.runs()}  # display names, escaped


# --------------------------------------------------------------------------- the problem, then the cure
# The first screen is a worked example (issue 22): the problem first (the baseline's story, from
# the numbers of the first chart), the cure second (what the mitigation changed, measured), the
# caveat in one line with its full text one click away, and a fusion's layers on a slider here.
def fuse_layers(slider: str, key: str, weights: str | None) -> None:
    """Write the "Layers fused" slider's span into the mitigation's ``layers`` parameter (an
    on_change callback: before the sidebar's widgets are drawn). Weights per layer no longer fit
    another number of layers: they go back to uniform."""
    lo, hi = st.session_state[slider]
    values = {key: str(lo) if lo == hi else f"{lo}-{hi}"}
    if weights:
        values[weights] = ""
    controls.write_to_url({k: "all" if k == key else "" for k in values}, **values)


def fusion_control() -> None:
    """A fusion's fused layers as a range slider (the sidebar's ``layers=`` text box, kept in step),
    and the fused output's similarity beside each fused layer's, from this run's numbers."""
    from smoothviz.mitigations.fusion import select_layers

    key = controls._param_key(mitigation, "layers")
    try:
        chosen = select_layers(str(settings["params"].get("layers", "all")), L, mitigation)
    except ValueError:  # the sidebar's value was refused: the analysis said why
        return
    weights = controls._param_key(mitigation, "weights") if "weights" in REGISTRY[mitigation].PARAMS else None
    span = (chosen[0], chosen[-1])
    slider = f"fuse_span-{span[0]}-{span[1]}"  # a new widget per span: its value always follows the sidebar's box
    st.select_slider(
        "Layers fused (0 = the embeddings)",
        list(range(L + 1)),
        value=span,
        key=slider,
        width=420,
        on_change=fuse_layers,
        args=(slider, key, weights),
        help=f"The same as the sidebar's layers= box of {mitigation}: the fused output combines these "
        "layers' states." + (" Per-layer weights go back to uniform when the span changes." if weights else ""),
    )
    if line := views.fusion_line(analysis):  # why fusion lowers similarity, in this run's own numbers
        st.markdown(md(line))


st.markdown(f"**The problem.** {views.story(analysis) or 'One layer or one token: no smoothing story to tell.'}")
if mitigation:
    measured = trends.effect(analysis, NAMES["mitigated"])  # from the numbers below, never written in advance
    said = {c.values[2] for c in trends.effect_claims(analysis, NAMES["mitigated"]) if c.kind == "effect"}
    # "cure" only where every headline metric says less smoothing: an ablation can add smoothing, and a
    # collapsed lab fused stays collapsed (cosine 1.000 unchanged, dm_rel 0 → 1e-7)
    st.markdown(
        f"**{'The cure' if said == {'less'} else 'The mitigation'}, beside it.** "
        f"{measured or md(REGISTRY[mitigation].summary)}"
    )
    if "layers" in REGISTRY[mitigation].PARAMS and views.has_fused(analysis):
        fusion_control()
    if line := claims.frozen_caveat_line(mitigation, analysis.lab):  # one line; the one caveat in full inside
        with st.expander(f":orange[:material/science: {md(line)}]", key="caveat"):
            extra = f" {REGISTRY[mitigation].caveat}" if REGISTRY[mitigation].caveat else ""
            st.markdown(md(claims.frozen_caveat(mitigation, analysis.lab) + extra))
present_slot = st.container()  # "Present this", filled once the layer is known
for note in analysis.notes:
    st.info(md(note), icon=":material/info:")
if unknown := controls.unknown_note(labels):  # e.g. an emoji alone: [CLS] [UNK] [SEP]
    st.info(md(unknown), icon=":material/info:")


# --------------------------------------------------------------------------- the views
# Sections and views come from smoothviz.outputs.views.VIEWS, the list the HTML report draws too. Each
# section is a tab, and only the open tab runs: a new visitor's page builds the depth curves
# (three charts), not all nineteen, and the projection is computed only when its tab is opened.
# The layer and atlas sections are fragments, so moving their controls reruns only them.
def remember(key: str, default, valid, allowed: str) -> None:
    """Keep a tab's control at its value while the tab is closed (Streamlit forgets the state of
    a widget that a run does not draw), start it at the link's value or ``default``, and reset a
    value the current analysis cannot hold, saying so when the link asked for it (``allowed``:
    what it may be, in words)."""
    if key in st.session_state:
        value = st.session_state[key]
    elif (asked := st.query_params.get(key)) is not None:
        try:
            value = int(asked) if isinstance(default, int) else asked
        except ValueError:
            value = asked
        if not valid(value):
            st.warning(md(controls.refusal(key, asked, allowed, default)), icon=":material/tune:")
            del st.query_params[key]
    else:
        value = default
    st.session_state[key] = value if valid(value) else default


new_depth = st.session_state.get("_depth", L) != L  # another model: its layer controls start at its last layer
st.session_state["_depth"] = L
a_layer = lambda v: not new_depth and isinstance(v, int) and 1 <= v <= L  # noqa: E731
FUSED = "fused"  # the slider's position after the last layer when a fusion has a fused output
FINAL = figures.FINAL_NORM  # a pre-norm model's final norm: its own position after layer L, never layer L
POSITIONS = [
    *range(1, L + 1),
    *([FINAL] if views.has_final_norm(analysis) else []),
    *([FUSED] if views.has_fused(analysis) else []),
]
remember(
    "layer",
    L,
    lambda v: not new_depth and v in POSITIONS,
    f"this model has layers 1–{L}" + "".join(f" and {p}" for p in POSITIONS[L:]),
)
remember("topk", 3, lambda v: isinstance(v, int) and 1 <= v <= 10, "1–10")
remember(
    "atlas_q",
    next(iter(figures.HEAD_QUANTITIES)),
    lambda v: v in figures.HEAD_QUANTITIES,
    "one of " + ", ".join(figures.HEAD_QUANTITIES),
)
remember("atlas_layer", L, a_layer, f"this model has layers 1–{L}")
remember(
    "atlas_head",
    0,
    lambda v: isinstance(v, int) and 0 <= v < analysis.heads,
    f"this model has heads 0–{analysis.heads - 1}",
)


def present_link() -> None:
    """A link to Present with this page's setup, its open tab's first view and its layer (for a
    picture: an example's only, since a link cannot carry an upload)."""
    if analysis.image is not None and not str(settings.get("image")).startswith("example:"):
        return
    section = next(
        (k for k, label in views.sections_for(analysis).items() if label == st.session_state.get("section")), "depth"
    )
    on_picture = section == "image"  # the picture's tab: its own layer slider and patch
    query = {
        **controls.url_state(),
        "text": controls._url_text(settings["text"]),
        "proj": settings["projection"],
        "view": views.first_view(section),
        "layer": str(layer_number(st.session_state.get("image_layer" if on_picture else "layer", L))),
    }
    token = st.session_state.get("image_patch") if on_picture else picked
    if token is not None:
        query["token"] = token_name(token)
    present_slot.markdown(
        "▶ "
        + controls.same_tab_link("Present this", "Present", query)
        + " — the same setup on a projector, one view per screen, arrow keys step",
        unsafe_allow_html=True,
    )


def layer_number(position) -> int | str:
    """The layer a slider position stands for outside this page: the final norm's is layer L's."""
    return L if position == FINAL else position


def depth_tab() -> None:
    draw_section("depth", views.At(layer=L))


def step(delta: int) -> None:
    at = POSITIONS.index(st.session_state.get("layer", L)) if st.session_state.get("layer", L) in POSITIONS else L - 1
    st.session_state["layer"] = POSITIONS[min(len(POSITIONS) - 1, max(0, at + delta))]


def layer_views(settings: dict, picked) -> None:
    """Everything drawn for the chosen layer; reruns alone when the slider moves (its analysis
    fetched from the shared cache: the session keeps the settings, never the analysis)."""
    analysis = state.analysis_or_error(settings)
    if analysis is None:
        return
    if st.session_state.get("play"):
        last = st.session_state.get("_played", 0.0)
        if time.monotonic() - last >= PLAY_SECONDS * 0.8:  # timer ticks, not other reruns, advance
            at = (
                POSITIONS.index(st.session_state.get("layer", L))
                if st.session_state.get("layer", L) in POSITIONS
                else -1
            )
            st.session_state["layer"] = POSITIONS[(at + 1) % len(POSITIONS)]
            st.session_state["_played"] = time.monotonic()
    back, slider, fwd = st.columns([1, 14, 1], vertical_alignment="bottom")
    back.button("◀", on_click=step, args=(-1,), help="previous layer", disabled=L == 1)
    fwd.button("▶", on_click=step, args=(1,), help="next layer", disabled=L == 1)
    with slider:
        if len(POSITIONS) > L:  # the final norm and the fused output are places after the last layer
            after = " and ".join(f"the {p if p == FINAL else 'fused output'}" for p in POSITIONS[L:])
            layer = st.select_slider(
                f"Layer (then {after})",
                POSITIONS,
                value=L,
                key="layer",
                bind=URL,
                format_func=str,
                help="Drag, or click the handle and use the arrow keys; "
                + (
                    "'final norm' is the model's own norm after its last block, applied to "
                    f"layer {L}'s states (not a layer); "
                    if FINAL in POSITIONS
                    else ""
                )
                + ("'fused' is the fusion's output after the last layer." if FUSED in POSITIONS else ""),
            )
        else:
            layer = (
                st.slider(
                    "Layer",
                    1,
                    L,
                    L,
                    key="layer",
                    bind=URL,  # default: the last layer, as with no link
                    help="Drag, or click the handle and use the arrow keys (Home/End: first/last layer).",
                )
                if L > 1
                else 1
            )
    fused, final = layer == FUSED, layer == FINAL
    where = "the fused output" if fused else "the final norm" if final else f"layer {layer}"
    layer = L if fused or final else layer
    runs = analysis.runs()
    metric_names = CARDS
    if final:
        st.caption(
            f"The final norm is the model's own norm after block {L}, applied to layer {L}'s states: what its "
            f"output head reads, shown apart from layer {L} (SmoothViz's choice). It has no attention of its "
            f"own: graph metrics are blank (—) here, and the graph views show layer {L}'s."
        )
    if "mitigated" in runs:
        same = (
            FUSED in POSITIONS
            and not (fused or final)
            and runs["mitigated"].rows[layer] == runs["baseline"].rows[layer]
        )
        st.caption(
            f"At {where}: baseline"
            + (f" (layer {L}: it has no fused output)" if fused else "")
            + f" → {md(run_title(analysis, 'mitigated'))} (difference below)"
            + (
                ". The fusion leaves this layer as the baseline's: both columns show the same numbers here; "
                "move to 'fused' on the slider to see what it changes."
                if same
                else ""
            )
        )
    registry = metrics_registry()

    def value(run, name):
        if final:
            return (run.final_norm_row or {}).get(name)
        return (run.fused_row or {}).get(name) if fused else run.rows[layer][name]

    for col, name in zip(st.columns(len(metric_names)), metric_names):
        b = value(runs["baseline"], name) if final else runs["baseline"].rows[layer][name]
        text = "—" if b is None else f"{b:.3g}"
        # a plain name on the card; the code name (the tables' and the CSV's column) in its tooltip
        label, tip = f"{figures.plain_title(name)} · {where}", f"`{name}`: {registry[name].formula}"
        if "mitigated" in runs:
            m = value(runs["mitigated"], name)
            col.metric(
                label,
                f"{text} → {'—' if m is None else f'{m:.3g}'}",
                help=tip,
                delta=None if None in (b, m) else f"{m - b:+.3g}",
                delta_color="off",
            )
        else:
            col.metric(label, text, help=tip)
    top_k = st.slider("Edges drawn per token (top-k)", 1, 10, 3, key="topk", bind=URL, width=320)
    draw_section("layer", views.At(layer=layer, picked=picked, top_k=top_k, fused=fused, final_norm=final), analysis)


def layer_tab() -> None:
    playing = st.toggle(
        "▶ Play through the layers",
        key="play",
        disabled=L == 1,
        help="Steps the layer slider every second; switch off to stop.",
    )
    st.fragment(state.timed("layer-views", layer_views), run_every=PLAY_SECONDS if playing else None)(settings, picked)


def trajectories_tab() -> None:
    projected = state.projected(settings, analysis)
    if projected is None:
        return
    for note in projected.notes[len(analysis.notes) :]:  # e.g. why UMAP fell back to PCA
        st.info(md(note), icon=":material/info:")
    st.caption(
        f"Joint {projected.projection_method.upper()} of every layer of both runs (same coordinates). "
        "**Projections distort distances: the metrics are the ground truth.**"
    )
    draw_section("trajectories", views.At(layer=L, picked=picked), projected)


def ablated() -> list[tuple[int, int]]:
    """The heads the ``heads`` mitigation ablates now (none unless it is the chosen mitigation)."""
    if st.session_state.get("mit") != "heads":
        return []
    try:
        return parse_ablate(st.session_state.get("heads_ablate", ""))
    except ValueError:  # a bad value typed in the sidebar: the analysis says what is wrong
        return []


def toggle_ablation(layer: int, head: int) -> None:
    """Ablate the atlas's chosen cell, or restore it (an on_click callback: runs before the rerun)."""
    cells = set(ablated())
    cells ^= {(layer, head)}
    st.session_state.update(_ablation_changed=True)
    controls.write_to_url(
        {"heads_ablate": "", "heads_sink": "none", "mit": controls.DEFAULT_MITIGATION},
        mit="heads",
        heads_ablate=format_ablate(cells),
        heads_sink="none",
    )


def atlas(settings: dict, picked) -> None:
    """Head × layer heatmaps; the chosen cell's graph below. Reruns alone (its analysis from the shared cache)."""
    analysis = state.analysis_or_error(settings)
    if analysis is None:
        return
    c1, c2, c3, c4 = st.columns([3, 1, 1, 1.3], vertical_alignment="bottom")
    quantity = c1.radio(
        "Quantity",
        list(figures.HEAD_QUANTITIES),
        key="atlas_q",
        bind=URL,
        horizontal=True,
        captions=list(figures.HEAD_QUANTITIES.values()),
    )
    layer = c2.selectbox("Layer", list(range(1, L + 1)), index=L - 1, key="atlas_layer", bind=URL)
    head = c3.selectbox("Head", list(range(analysis.heads)), key="atlas_head", bind=URL)
    cut = (layer, head) in ablated()
    c4.button(
        "Restore this head" if cut else "Ablate this head",
        key="ablate",
        on_click=toggle_ablation,
        args=(layer, head),
        help="Zero this head's output before the output projection and leave it out of "
        "its layer's head-mean graph (the heads mitigation); press again to restore.",
    )
    if st.session_state.pop("_ablation_changed", False):
        st.rerun()  # the mitigation changed: the whole page, not only this fragment
    draw_section(
        "atlas",
        views.At(
            layer=L,
            picked=picked,
            top_k=st.session_state.get("topk", 3),
            quantity=quantity,
            head_layer=layer,
            head=head,
        ),
        analysis,
    )


def atlas_tab() -> None:
    st.fragment(state.timed("atlas", atlas))(settings, picked)


def sv_tab() -> None:
    draw_section("sv", views.At(layer=L, picked=picked))


def pick_patch(chart_key: str) -> None:
    """A click on the similarity map (its chart's selection): that patch becomes the tab's patch."""
    points = st.session_state[chart_key].selection.points
    patch = points[0].get("customdata") if points else None
    if isinstance(patch, list):  # plotly may send a scalar customdata as a one-item list
        patch = patch[0] if patch else None
    analysis = state.analysis_or_error(settings)  # the page let go of its own (at its end)
    if analysis is None:
        return
    info = analysis.image
    if isinstance(patch, (int, float)) and 0 <= int(patch) < info.patches and info.prefix + int(patch) in analysis.keep:
        st.session_state["image_patch"] = analysis.keep.index(info.prefix + int(patch))


def image_tab() -> None:
    """The views only a picture allows, at a layer and patch of this tab's own."""
    info = analysis.image
    patch_tokens = [i for i, t in enumerate(analysis.keep) if info.position(t) is not None]  # kept indices
    centre = image_views.picked_patch(analysis, None)
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    layer = c1.slider("Layer", 1, L, L, key="image_layer") if L > 1 else 1
    chosen = c2.selectbox(
        "Patch to compare with",
        patch_tokens,
        index=centre,
        key="image_patch",
        format_func=lambda i: labels[i],
        help="Row, column from the top left (p0,0); or click a patch on the similarity map.",
    )
    st.caption(
        "How to read these maps depends on the weights: a randomly initialised model's patch states are "
        "random projections of the pixels, so its maps follow the pixels' look alone and its patches need "
        "not grow alike with depth; the papers measured pretrained checkpoints (e.g. "
        "google/vit-base-patch16-224, facebook/dinov2-small). SmoothViz's note; the numbers below are this "
        "model's own."
    )
    draw_section("image", views.At(layer=layer, picked=chosen, top_k=st.session_state.get("topk", 3)))


TABS = {
    "depth": depth_tab,
    "layer": layer_tab,
    "trajectories": trajectories_tab,
    "atlas": atlas_tab,
    "sv": sv_tab,
    "image": image_tab,
}
assert TABS.keys() == {**views.SECTIONS, **views.IMAGE_SECTIONS}.keys(), (
    "a section of smoothviz.outputs.views without a tab here"
)
SHOWN = views.sections_for(analysis)  # a picture's own tab only for a picture
st.caption("Each tab is one way to look at the run; only the open tab is computed and drawn.")
for tab, draw_tab in zip(
    st.tabs(list(SHOWN.values()), key="section", bind=URL, on_change="rerun"), [TABS[key] for key in SHOWN]
):
    with tab:
        if tab.open:
            draw_tab()
present_link()  # after the tabs: the open tab and the layer are known

# --------------------------------------------------------------------------- export
st.header("Share and export", anchor="export")
if analysis.image is not None and not str(settings.get("image")).startswith("example:"):
    st.caption(
        "Every setting but the uploaded picture lives in the address bar: a copied URL reopens this view "
        "on the example picture chosen in the sidebar (an upload stays on this server only). Each chart's "
        "camera button saves it as PNG or SVG (choose in the sidebar)."
    )
else:
    st.caption(
        "Every setting lives in the address bar: copy the URL to reopen this exact view. "
        "Each chart's camera button saves it as PNG or SVG (choose in the sidebar)."
    )
c1, c2, c3 = st.columns(3)
c1.download_button(
    "Metrics (CSV)",
    report.metrics_csv(analysis),
    "smoothviz-metrics.csv",
    "text/csv",
    on_click="ignore",
    width="stretch",
)
c2.download_button(
    "Metrics (JSON)",
    json.dumps(analysis.to_json(), indent=1),
    "smoothviz-metrics.json",
    "application/json",
    on_click="ignore",
    width="stretch",
)
# built when pressed, from the settings alone (state.report_html says why not a closure over the page);
# at the fused position the report's per-layer views show the last layer
report_layer = st.session_state.get("layer", L) if st.session_state.get("layer", L) not in (FUSED, FINAL) else L
c3.download_button(
    "Report (one HTML file, works offline)",
    functools.partial(state.report_html, settings, report_layer),
    "smoothviz-report.html",
    "text/html",
    on_click="ignore",
    width="stretch",
)


def animation_controls() -> None:
    """Make the layers a GIF or MP4 for slides, on request (rendering takes seconds)."""
    st.caption(
        "One frame per layer (and the fused output of a fusion), baseline beside mitigated, with the same "
        "axes and colours in every frame and each frame titled with its layer and headline metrics. Rendered "
        "in a headless Chromium on the server: 6–9 s for the default sentence with two views on a 2-core "
        "machine; more views and longer sentences take longer."
    )
    c1, c2, c3 = st.columns([3, 1.2, 1.5], vertical_alignment="bottom")
    chosen = tuple(
        c1.multiselect(
            "Views in each frame",
            animate.VIEWS,
            default=["heatmap", "graph"],
            key="anim_views",
            help="trajectory: every token's path in the joint projection",
        )
    )
    fmt = c2.radio("Format", animate.FORMATS, key="anim_fmt", horizontal=True, format_func=lambda f: f[1:].upper())
    request = (SETTINGS_KEY, chosen, fmt)
    if c3.button("Make the animation", disabled=not chosen, width="stretch"):
        st.session_state["_animation"] = request
    if st.session_state.get("_animation") != request:  # nothing asked yet for these settings
        return
    data = state.animation_or_error(settings, analysis, chosen, fmt)
    if data is None:
        return
    st.download_button(
        f"Download the animation ({fmt[1:].upper()}, {len(data) / 2**20:.1f} MB)",
        data,
        f"smoothviz-layers{fmt}",
        "image/gif" if fmt == ".gif" else "video/mp4",
        on_click="ignore",
    )
    (st.image if fmt == ".gif" else st.video)(data)


with st.expander("Layer by layer as an animation, for slides (GIF or MP4)", key="animation", on_change="rerun") as box:
    if box.open:  # its controls are drawn only when asked for: the first page stays light
        animation_controls()
state.log_time("page", PAGE_START)
state.let_go(globals(), "analysis")  # the shared cache keeps it; a session Streamlit keeps must not (state.let_go)
