"""The sidebar: every control, bound to the URL, read into one ``settings`` dict.

Each widget's key is its query parameter (``bind="query-params"``), so a copied link reopens
the same view. Presets and example sentences only write widget keys into ``st.session_state``
(in callbacks, before the widgets are drawn); they are never analysis inputs themselves.
"""
from __future__ import annotations

from dataclasses import fields

import streamlit as st

from smoothviz.lab import CHOICES, LIMITS, LabConfig
from smoothviz.mitigations import NAMES, REGISTRY
from smoothviz.settings import SETTINGS

import state

URL = "query-params"
# Bound widgets write their *displayed* option into the URL, so options are short words, not labels.
# A public server offers only its allow-list (smoothviz.settings); a private one anything.
MODELS = SETTINGS.models if SETTINGS.public else ("default", "lab", "custom")
LAB_DEFAULTS = {f.name: f.default for f in fields(LabConfig)}
DEFAULT_MITIGATION = "neutreno"


def default_text() -> str:
    return next(iter(state.examples()["examples"].values()))


def _param_key(mitigation: str, name: str) -> str:
    return f"{mitigation}_{name}".replace("-", "_")


def apply_preset() -> None:
    """Copy the chosen preset's settings into the widgets' state (an on_change callback)."""
    preset = state.examples()["presets"].get(st.session_state.get("preset"))
    if not preset:
        return
    s = preset["settings"]
    st.session_state["model"] = s.get("model", "default")
    st.session_state["text"] = s.get("text", st.session_state.get("text", default_text()))
    st.session_state["mit"] = s.get("mitigation", DEFAULT_MITIGATION)
    for name, value in s.get("params", {}).items():
        st.session_state[_param_key(st.session_state["mit"], name)] = value
    for name, value in {**LAB_DEFAULTS, **s.get("lab", {})}.items():
        st.session_state[f"lab_{name}"] = value
    if "projection" in s:
        st.session_state["proj"] = s["projection"]


def apply_example() -> None:
    """Put the picked example sentence into the text box (an on_change callback)."""
    text = state.examples()["examples"].get(st.session_state.get("example"))
    if text:
        st.session_state["text"] = text


def _lab_settings(active: bool) -> dict:
    """Widgets for the lab model, built from ``smoothviz.lab.LIMITS`` and ``CHOICES``.

    Drawn even when another model is chosen (collapsed): a widget that first appears with a
    preset's value never reaches the URL, one that already exists does.
    """
    lab = {}
    with st.expander("Lab model settings" + ("" if active else " (used when the model is 'lab')"), expanded=active):
        for name, (lo, hi) in LIMITS.items():
            key, default = f"lab_{name}", LAB_DEFAULTS[name]
            if name == "width":  # powers of two keep width divisible by the usual head counts
                options = [2 ** i for i in range(3, 11) if lo <= 2 ** i <= hi]
                lab[name] = st.select_slider("width", options, value=default, key=key, bind=URL)
            elif name == "heads":
                options = [h for h in (1, 2, 4, 8, 16) if lo <= h <= hi]
                lab[name] = st.select_slider("heads", options, value=default, key=key, bind=URL)
            elif name == "depth":
                lab[name] = st.slider("depth (layers)", int(lo), int(hi), default, key=key, bind=URL)
            elif isinstance(default, float):
                lab[name] = st.number_input(name, float(lo), float(hi), float(default), step=0.05, key=key, bind=URL)
            else:
                lab[name] = st.number_input(name, int(lo), int(hi), int(default), step=1, key=key, bind=URL)
        for name, allowed in CHOICES.items():
            key, default = f"lab_{name}", LAB_DEFAULTS[name]
            if isinstance(default, bool):
                lab[name] = st.toggle(name, value=default, key=key, bind=URL)
            else:
                lab[name] = st.selectbox(name.replace("_", " "), list(allowed), index=list(allowed).index(default),
                                         key=key, bind=URL)
    return lab


def _mitigation_params(name: str) -> dict:
    """One widget per ``Param`` of the chosen mitigation, at its default."""
    params = {}
    for pname, spec in REGISTRY[name].PARAMS.items():
        key, label = _param_key(name, pname), f"{pname} — {spec.help}" if spec.help else pname
        if spec.kind == "choice":
            params[pname] = st.selectbox(label, list(spec.choices), index=list(spec.choices).index(spec.default),
                                         key=key, bind=URL)
        elif spec.kind == "float" and spec.hi - spec.lo <= 2:
            params[pname] = st.slider(label, float(spec.lo), float(spec.hi), float(spec.default),
                                      step=round((spec.hi - spec.lo) / 40, 4), key=key, bind=URL)
        elif spec.kind in ("float", "int"):
            cast = float if spec.kind == "float" else int
            params[pname] = st.number_input(label, cast(spec.lo), cast(spec.hi), cast(spec.default),
                                            step=0.1 if spec.kind == "float" else 1, key=key, bind=URL)
        else:
            params[pname] = st.text_input(label, value=str(spec.default), key=key, bind=URL)
    return params


def model_controls() -> tuple[str, dict | None, str]:
    """The model (with the lab's settings) and the device: ``(model, lab or None, device)``."""
    st.subheader("Model")
    model = st.selectbox("Model", MODELS, key="model", bind=URL, label_visibility="collapsed",
                         help="default: the embedded all-MiniLM-L6-v2 (offline). lab: a deep, untrained "
                              "transformer to configure. custom: a Hugging Face id or a local directory.")
    if model == "custom":
        model = st.text_input("Hugging Face id or local directory", key="model_id", bind=URL,
                              placeholder="bert-base-uncased or /path/to/model").strip()
    lab = _lab_settings(model == "lab")
    lab = lab if model == "lab" else None
    device = st.selectbox("Device", ["auto", "cpu", "cuda"], key="device", bind=URL)
    return model, lab, device


def mitigation_controls() -> tuple[str, dict]:
    """The mitigation and its parameters: ``(name or "none", params)``."""
    st.subheader("Mitigation")
    mitigation = st.selectbox("Mitigation", ["none", *NAMES], index=1 + NAMES.index(DEFAULT_MITIGATION),
                              key="mit", bind=URL, label_visibility="collapsed")
    if mitigation != "none":
        st.caption(REGISTRY[mitigation].summary)
    return mitigation, _mitigation_params(mitigation) if mitigation != "none" else {}


def graph_controls() -> dict:
    """The graph options, as ``analyze``'s keyword arguments ``head``, ``symmetrize``, ``exclude_special``."""
    with st.expander("Graph options"):
        one = st.radio("Head aggregation", ["mean", "one head"], key="agg", bind=URL, horizontal=True)
        head = st.number_input("Head index", 0, 63, 0, key="head", bind=URL) if one == "one head" else None
        sym = st.radio("Symmetrisation", ["sym", "ata"], key="sym", bind=URL, horizontal=True,
                       captions=["(A + Aᵀ)/2", "AᵀA"])
        exclude = st.checkbox("Exclude special tokens ([CLS], [SEP], …)", key="nospecial", bind=URL)
    return dict(head=int(head) if head is not None else None, symmetrize=sym, exclude_special=exclude)


def url_state() -> dict:
    """The URL parameters of the model, mitigation and graph widgets as they stand (a link to the
    main page with the same settings)."""
    ss = st.session_state
    keys = ["model", "device", "mit", "agg", "sym", "nospecial"]
    if ss.get("model") == "custom":
        keys.append("model_id")
    if ss.get("model") == "lab":
        keys += [f"lab_{name}" for name in LAB_DEFAULTS]
    if ss.get("mit") in REGISTRY:
        keys += [_param_key(ss["mit"], name) for name in REGISTRY[ss["mit"]].PARAMS]
    if ss.get("agg") == "one head":
        keys.append("head")
    return {k: ("true" if ss[k] else "false") if isinstance(ss[k], bool) else str(ss[k]) for k in keys if k in ss}


def sidebar() -> tuple[dict, str]:
    """Draw the sidebar; return the settings for :func:`state.run_analysis` and the image format."""
    data = state.examples()
    sb = st.sidebar
    sb.selectbox("Ready-made preset", ["—", *data["presets"]], key="preset", on_change=apply_preset,
                 help="Loads a model, sentence and mitigation that show one effect clearly.")
    if (chosen := data["presets"].get(st.session_state.get("preset"))):
        sb.caption(chosen["description"])

    with sb:
        model, lab, device = model_controls()

        st.subheader("Sentence")
        st.selectbox("Example sentences", ["—", *data["examples"]], key="example", on_change=apply_example)
        text = st.text_area("Text (Ctrl+Enter to apply)", value=default_text(), key="text", bind=URL, height=110)

        mitigation, params = mitigation_controls()
        graph = graph_controls()

        st.subheader("Projection")
        proj = st.radio("Projection", ["pca", "umap"], key="proj", bind=URL, horizontal=True,
                        format_func=str.upper, label_visibility="collapsed",
                        help="PCA is fast and deterministic; UMAP (fixed seed) keeps neighbourhoods.")
        img = st.radio("Chart download format", ["png", "svg"], key="img", bind=URL, horizontal=True,
                       format_func=str.upper, help="What the camera button in every chart's toolbar saves.")
    settings = dict(text=text or "", model=model, device=device, lab=lab, mitigation=mitigation, params=params,
                    **graph, projection=proj)
    return settings, img
