"""SmoothViz: see over-smoothing in Transformers — the main page.

Thin by design: the sidebar (controls.py) gives the settings, state.py runs or fetches the
analysis, smoothviz.figures draws. The layer slider and the head atlas live in fragments, so
moving them re-slices the cached analysis without rerunning the page.
"""
from __future__ import annotations

import json
import time

import streamlit as st

import controls
import state
from markup import md
from smoothviz import figures, report
from smoothviz.graph import to_networkx

PAGE_START = time.perf_counter()  # the server's time for this run (SMOOTHVIZ_TIMINGS=1)
st.set_page_config(page_title="SmoothViz", page_icon="🫧", layout="wide")
URL = controls.URL
THEORY = "Theory"  # the theory page's URL path (app/pages/1_Theory.py)
# Interventions inside the forward pass: a frozen pretrained model never saw such states.
IN_FORWARD = {"neutreno", "attnscale", "contranorm", "no-residual", "spectral"}
PLAY_SECONDS = 1.2

settings, img, refused = controls.sidebar()


def chart(build, name: str, *parts) -> None:
    """Draw the figure ``build()`` makes, built once per (settings, view, picked token, parts).

    Building a plotly figure is most of a slider move's cost (~15 ms of validation each), so
    built figures are shared from ``state.figure``; ``parts`` names what else the view depends on.
    """
    fig = state.figure(build, (SETTINGS_KEY, name, picked, *parts))
    st.plotly_chart(fig, theme=None, config=figures.image_config(name, img))


def caption(key: str, anchor: str | None = None) -> None:
    link = f" [Theory →]({THEORY}#{anchor})" if anchor else ""
    st.caption(figures.CAPTIONS[key] + link)


def run_title(analysis, key: str) -> str:
    return figures._run_name(analysis, key)


st.title("SmoothViz")
st.markdown("Watch the tokens of a sentence become alike, layer by layer — a transformer's baseline beside a "
            f"mitigation. New here? Start with a preset in the sidebar, or read the [theory]({THEORY}).")
for message in refused:  # a link's value the widgets cannot hold, reset to the default
    st.warning(md(message), icon=":material/tune:")
if not settings["model"]:
    st.error("Type a Hugging Face id or a local model directory, or choose the default model.", icon=":material/error:")
    st.stop()
analysis = state.analysis_or_error(settings)
state.warm_up()  # after the first analysis, so numba's compile never competes with it
if analysis is None:
    st.stop()

labels = analysis.labels
n, L = len(labels), analysis.n_layers
if st.session_state.get("token", -1) >= n:  # a token picked in a longer sentence
    del st.session_state["token"]
picked = st.sidebar.selectbox("Highlight a token", [-1, *range(n)], key="token", bind=URL,
                              format_func=lambda i: "none" if i < 0 else f"{i} · {labels[i]}",
                              help="Marks the token in every view.")
picked = None if picked < 0 else picked
SETTINGS_KEY = json.dumps(settings, sort_keys=True, default=str)  # what the analysis depends on

mitigation = analysis.mitigation["name"] if analysis.mitigation else None
beside = md(run_title(analysis, "mitigated")) if mitigation else "no mitigation"
st.caption(f"Model **{md(analysis.model)}** on {analysis.device} · {n} tokens analysed · {L} layers × "
           f"{analysis.heads} heads · baseline beside **{beside}**")
for note in analysis.notes:
    st.info(md(note), icon=":material/info:")
if mitigation in IN_FORWARD and analysis.lab is None:
    extra = " Spectral control also changes what the model computes." if mitigation == "spectral" else ""
    st.warning(f"{mitigation} was never part of this pretrained model's training: applied to the frozen weights, "
               f"later layers see states out of distribution, so the mitigated curves show what the intervention "
               f"does, not what a model trained with it would do.{extra}", icon=":material/science:")

# --------------------------------------------------------------------------- 1 · over depth
st.header("1 · Over-smoothing over depth", anchor="curves")
caption("curves", "the-metrics")
chart(lambda: figures.metric_curves(analysis), "curves")
left, right = st.columns(2)
with left:
    caption("shi", "why-stacking-smooths")
    chart(lambda: figures.shi_bound(analysis), "shi-bound")
with right:
    caption("rollout", "attention-is-a-graph")
    chart(lambda: figures.rollout(analysis), "rollout")


# --------------------------------------------------------------------------- 2 · one layer
def step(delta: int) -> None:
    st.session_state["layer"] = min(L, max(1, st.session_state.get("layer", L) + delta))


def layer_views(analysis, picked) -> None:
    """Everything drawn for the chosen layer; reruns alone when the slider moves."""
    if st.session_state.get("play"):
        last = st.session_state.get("_played", 0.0)
        if time.monotonic() - last >= PLAY_SECONDS * 0.8:  # timer ticks, not other reruns, advance
            st.session_state["layer"] = st.session_state.get("layer", L) % L + 1
            st.session_state["_played"] = time.monotonic()
    back, slider, fwd = st.columns([1, 14, 1], vertical_alignment="bottom")
    back.button("◀", on_click=step, args=(-1,), help="previous layer", disabled=L == 1)
    fwd.button("▶", on_click=step, args=(1,), help="next layer", disabled=L == 1)
    with slider:
        layer = st.slider("Layer", 1, L, L, key="layer", bind=URL) if L > 1 else 1
    runs = analysis.runs()
    metric_names = ("cosine_mean", "dm_rel", "effective_rank", "spectral_gap")
    if "mitigated" in runs:
        st.caption(f"At layer {layer}: baseline → {md(run_title(analysis, 'mitigated'))} (difference below)")
    for col, name in zip(st.columns(len(metric_names)), metric_names):
        b = runs["baseline"].rows[layer][name]
        text = "—" if b is None else f"{b:.3g}"
        if "mitigated" in runs:
            m = runs["mitigated"].rows[layer][name]
            col.metric(f"{name} · layer {layer}", f"{text} → {'—' if m is None else f'{m:.3g}'}",
                       delta=None if None in (b, m) else f"{m - b:+.3g}", delta_color="off")
        else:
            col.metric(f"{name} · layer {layer}", text)

    st.subheader(f"Token similarity at layer {layer}")
    caption("similarity", "the-metrics")
    for (key, run), col in zip(runs.items(), st.columns(len(runs))):
        with col:
            chart(lambda: figures.similarity_heatmap(run, labels, layer, picked, title=run_title(analysis, key)),
                  f"similarity-{key}", layer)

    st.subheader(f"Attention graph of layer {layer}")
    caption("graph", "attention-is-a-graph")
    top_k = st.slider("Edges drawn per token (top-k)", 1, 10, 3, key="topk", bind=URL, width=320)
    for (key, run), col in zip(runs.items(), st.columns(len(runs))):
        with col:
            chart(lambda: figures.attention_graph(to_networkx(run.layer_graph[layer - 1], labels, top_k=top_k),
                                                  run.fiedler[layer - 1], picked, title=run_title(analysis, key)),
                  f"graph-{key}", layer, top_k)
    caption("spectrum", "attention-is-a-graph")
    for (key, run), col in zip(runs.items(), st.columns(len(runs))):
        with col:
            chart(lambda: figures.laplacian_spectrum(run, layer, title=f"Laplacian spectrum — {run_title(analysis, key)}"),
                  f"spectrum-{key}", layer)

    st.subheader(f"Value spectrum of layer {layer} (Dovonon et al.)")
    caption("dovonon", "the-dovonon-diagnostic")
    for (key, run), col in zip(runs.items(), st.columns(len(runs))):
        with col:
            chart(lambda: figures.dovonon(run, layer, title=run_title(analysis, key)), f"dovonon-{key}", layer)
    chart(lambda: figures.verdicts(analysis), "verdicts")


st.header("2 · One layer, side by side", anchor="layer")
playing = st.toggle("▶ Play through the layers", key="play", disabled=L == 1,
                    help="Steps the layer slider every second; switch off to stop.")
st.fragment(state.timed("layer-views", layer_views), run_every=PLAY_SECONDS if playing else None)(analysis, picked)

# --------------------------------------------------------------------------- 3 · trajectories
st.header("3 · Token trajectories", anchor="trajectories")
caption("trajectories", "projections")
st.caption(f"Joint {analysis.projection_method.upper()} of every layer of both runs (same coordinates). "
           "**Projections distort distances: the metrics above are the ground truth.**")
chart(lambda: figures.trajectories(analysis, picked), "trajectories")


# --------------------------------------------------------------------------- 4 · atlas
def atlas(analysis, picked) -> None:
    """Head × layer heatmaps; the chosen cell's graph below. Reruns alone."""
    runs = analysis.runs()
    c1, c2, c3 = st.columns([3, 1, 1])
    quantity = c1.radio("Quantity", list(figures.HEAD_QUANTITIES), key="atlas_q", bind=URL, horizontal=True,
                        captions=list(figures.HEAD_QUANTITIES.values()))
    layer = c2.selectbox("Layer", list(range(1, L + 1)), index=L - 1, key="atlas_layer", bind=URL)
    head = c3.selectbox("Head", list(range(analysis.heads)), key="atlas_head", bind=URL)
    for (key, run), col in zip(runs.items(), st.columns(len(runs))):
        with col:
            chart(lambda: figures.head_atlas(run, quantity, title=run_title(analysis, key), picked=(layer, head)),
                  f"atlas-{key}", quantity, layer, head)
    top_k = st.session_state.get("topk", 3)
    for key, col in zip(runs, st.columns(len(runs))):
        with col:
            chart(lambda: figures.attention_graph(analysis.graph(layer, head=head, run=key, top_k=top_k), None, picked,
                                                  title=f"layer {layer}, head {head} — {run_title(analysis, key)}"),
                  f"head-graph-{key}", layer, head, top_k)


st.header("4 · Head × layer atlas", anchor="atlas")
caption("atlas", "attention-is-a-graph")
st.fragment(state.timed("atlas", atlas))(analysis, picked)

# --------------------------------------------------------------------------- 5 · singular values
st.header("5 · Singular-value spectra", anchor="sv")
caption("sv", "the-metrics")
for (key, run), col in zip(analysis.runs().items(), st.columns(len(analysis.runs()))):
    with col:
        chart(lambda: figures.sv_spectra(run, title=run_title(analysis, key)), f"sv-{key}")

# --------------------------------------------------------------------------- export
st.header("Share and export", anchor="export")
st.caption("Every setting lives in the address bar: copy the URL to reopen this exact view. "
           "Each chart's camera button saves it as PNG or SVG (choose in the sidebar).")
c1, c2, c3 = st.columns(3)
c1.download_button("Metrics (CSV)", report.metrics_csv(analysis), "smoothviz-metrics.csv", "text/csv",
                   on_click="ignore", width="stretch")
c2.download_button("Metrics (JSON)", json.dumps(analysis.to_json(), indent=1), "smoothviz-metrics.json",
                   "application/json", on_click="ignore", width="stretch")
report_layer = st.session_state.get("layer", L)
c3.download_button("Report (one HTML file, works offline)", lambda: report.build_report(analysis, report_layer),
                   "smoothviz-report.html", "text/html", on_click="ignore", width="stretch")
state.log_time("page", PAGE_START)
