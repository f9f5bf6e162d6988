"""The sidebar: every control, bound to the URL, read into one ``settings`` dict.

Each widget's key is its query parameter (``bind="query-params"``), so a copied link reopens
the same view; the text is the one exception (:func:`_text_box`): it goes into the URL by hand,
cut to what a link can carry. Presets and example sentences only write widget keys into
``st.session_state`` (in callbacks, before the widgets are drawn); they are never analysis inputs
themselves. Widgets offer only what the server accepts; a value asked for that they cannot hold,
or that the mitigation cannot use on the chosen model (a head it lacks, an unreadable gate), from a
link, a preset or another model, is reset to the default, and the page says so.
"""

from __future__ import annotations

import html
import math
from dataclasses import fields
from urllib.parse import quote, urlencode

import streamlit as st
from streamlit.errors import StreamlitAPIException

from smoothviz.mitigations import REGISTRY, Mitigation, make
from smoothviz.model.handles import MAX_CHARS
from smoothviz.model.lab import CHOICES, LIMITS, LabConfig
from smoothviz.model.vision import MAX_IMAGE_BYTES, ImageError, takes_images
from smoothviz.options import DEVICES, PROJECTIONS, SYMMETRIZE
from smoothviz.outputs.views import IMAGE_SECTIONS, SECTIONS

import images
import state
from state import SETTINGS

URL = "query-params"
# Bound widgets write their *displayed* option into the URL, so options are short words, not labels.
# A public server offers only its allow-list (state.server); a private one anything.
MODELS = SETTINGS.models if SETTINGS.public else ("default", "gemma-3-270m", "lab", "custom")
LAB_DEFAULTS = {f.name: f.default for f in fields(LabConfig)}
DEFAULT_MITIGATION = "neutreno"
TEXT_CHARS = SETTINGS.max_chars or MAX_CHARS  # the text box holds no more than the analysis reads
# A shared link holds at most this much of the text: servers refuse long addresses (HTTP 400 from
# ~128 kB here; browsers and proxies often allow less), and one character can take 12 bytes once
# percent-encoded.
URL_TEXT_CHARS, URL_TEXT_BYTES = 8_000, 24_000


# A public server's lab stays within its caps (state.server), and its widgets say so.
def _devices_here() -> tuple[str, ...]:
    """The devices this machine has (issue 27: a CPU server offered cuda and mps, and then failed)."""
    import torch  # already imported by smoothviz

    return (
        "auto",
        "cpu",
        *(["cuda"] if torch.cuda.is_available() else []),
        *(["mps"] if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() else []),
    )


DEVICES_HERE = _devices_here()
AGGREGATIONS = ("mean", "one head")
SHOWN_PROJECTIONS = tuple(p for p in PROJECTIONS if p != "none")
IMAGE_FORMATS = ("png", "svg")
LAB_LIMITS = {
    **LIMITS,
    **(
        {
            "depth": (LIMITS["depth"][0], min(LIMITS["depth"][1], SETTINGS.max_lab_depth)),
            "width": (LIMITS["width"][0], min(LIMITS["width"][1], SETTINGS.max_lab_width)),
        }
        if SETTINGS.public
        else {}
    ),
}


def default_text() -> str:
    return next(iter(state.examples()["examples"].values()))


UNKNOWN = ("[UNK]", "<unk>")  # the unknown token of BERT-like and of SentencePiece tokenizers


def unknown_note(labels: list[str]) -> str | None:
    """What the unknown tokens among ``labels`` are (e.g. an emoji alone: [CLS] [UNK] [SEP]), as plain
    text (escape before showing); ``None`` when there are none."""
    unknown = [label for label in labels if label in UNKNOWN]
    if not unknown:
        return None
    return (
        f"{len(unknown)} of the {len(labels)} tokens analysed {'is' if len(unknown) == 1 else 'are'} the "
        f"unknown token {unknown[0]}: the tokenizer has no piece for those characters (emoji, some scripts), "
        "so the model sees one and the same vector for each of them."
    )


def _param_key(mitigation: str, name: str, prefix: str = "") -> str:
    return f"{prefix}{mitigation}_{name}".replace("-", "_")


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


def _in_range(lo: float, hi: float, integer: bool = False):
    """A test for a widget value (a number, or the URL's text of one) within ``lo..hi``."""

    def ok(value) -> bool:
        try:
            x = float(value)
        except (TypeError, ValueError):
            return False
        return math.isfinite(x) and lo <= x <= hi and (not integer or x.is_integer())

    return ok


def _span(lo: float, hi: float) -> str:
    return "–".join(str(int(x)) if float(x).is_integer() else f"{x:g}" for x in (lo, hi))


def _one_of(options):
    allowed = {str(o) for o in options}
    return lambda value: str(value) in allowed


def _asked(key: str):
    """The value asked for the widget ``key``: its state, or before it is first drawn, the link's."""
    return st.session_state[key] if key in st.session_state else st.query_params.get(key)


def _refuse(refused: list, key: str, ok, allowed: str, default) -> None:
    """Before the widget ``key`` is drawn: drop a value it cannot hold, and say so in ``refused``.

    The value asked for comes from the browser, a preset or another model's settings (in
    ``st.session_state``) or, the first time the widget is drawn, from the link. Streamlit would
    show the widget's default for it silently (or raise, for a preset's value); the analysis
    would then refuse nothing, but the visitor would never learn that the link was not followed.
    """
    asked = _asked(key)
    if asked is None or ok(asked):
        return
    if key in st.session_state:
        del st.session_state[key]
    if key in st.query_params:  # a copied link would carry it again
        del st.query_params[key]
    refused.append(refusal(key, asked, allowed, default))


def _bool_word(value) -> bool:
    return isinstance(value, bool) or str(value).lower() in ("true", "false")


def _as_bool(value) -> bool:
    return value if isinstance(value, bool) else str(value).lower() == "true"


def _lab_options(name: str) -> list[int] | None:
    """The lab widths and head counts offered (powers of two keep width divisible by the head counts)."""
    if name not in ("width", "heads"):
        return None
    lo, hi = LAB_LIMITS[name]
    return [2**i for i in range(0 if name == "heads" else 3, 5 if name == "heads" else 11) if lo <= 2**i <= hi]


def lab_checks() -> dict[str, tuple]:
    """Every lab setting's URL key → ``(test, what is allowed, default)``, within this server's caps."""
    checks = {}
    for name, (lo, hi) in LAB_LIMITS.items():
        if (options := _lab_options(name)) is not None:
            checks[f"lab_{name}"] = (
                _one_of(options),
                f"lab {name} {', '.join(map(str, options))}",
                min(LAB_DEFAULTS[name], options[-1]),
            )
        else:
            default = min(max(LAB_DEFAULTS[name], lo), hi)
            checks[f"lab_{name}"] = (
                _in_range(lo, hi, not isinstance(default, float)),
                f"lab {name} {_span(lo, hi)}",
                default,
            )
    for name, allowed in CHOICES.items():
        default = LAB_DEFAULTS[name]
        if isinstance(default, bool):
            checks[f"lab_{name}"] = (_bool_word, "true or false", str(default).lower())
        else:
            checks[f"lab_{name}"] = (_one_of(allowed), "one of " + ", ".join(allowed), default)
    return checks


def lab_widgets(active: bool, refused: list, prefix: str = "") -> dict:
    """Widgets for the lab model, built from ``smoothviz.model.lab.LIMITS`` and ``CHOICES`` (keys
    ``{prefix}lab_{name}``: the Compare page's runs have their own).

    Drawn even when another model is chosen (collapsed): a widget that first appears with a
    preset's value never reaches the URL, one that already exists does.
    """
    lab, checks = {}, lab_checks()
    for key, (ok, allowed, default) in checks.items():
        _refuse(refused, prefix + key, ok, allowed, default)
    with st.expander("Lab model settings" + ("" if active else " (used when the model is 'lab')"), expanded=active):
        for name, (lo, hi) in LAB_LIMITS.items():
            key, default = f"{prefix}lab_{name}", checks[f"lab_{name}"][2]
            if (options := _lab_options(name)) is not None:
                lab[name] = st.select_slider(name, options, value=default, key=key, bind=URL)
            elif name == "depth":
                lab[name] = st.slider("depth (layers)", int(lo), int(hi), int(default), key=key, bind=URL)
            elif isinstance(default, float):
                lab[name] = st.number_input(name, float(lo), float(hi), float(default), step=0.05, key=key, bind=URL)
            else:
                lab[name] = st.number_input(name, int(lo), int(hi), int(default), step=1, key=key, bind=URL)
        for name, allowed in CHOICES.items():
            key, default = f"{prefix}lab_{name}", LAB_DEFAULTS[name]
            if isinstance(default, bool):
                lab[name] = st.toggle(name, value=default, key=key, bind=URL)
            else:
                lab[name] = st.selectbox(
                    name.replace("_", " "), list(allowed), index=list(allowed).index(default), key=key, bind=URL
                )
    return lab


def simple_checks() -> dict[str, tuple]:
    """Every URL key of the sidebar with a fixed set of values → ``(test, what is allowed, default)``."""
    model_why = (
        f"this public server allows only {', '.join(MODELS)}"
        if SETTINGS.public
        else f"one of {', '.join(MODELS)}; another model: model=custom&model_id=<Hugging Face id or directory>"
    )
    return {
        "model": (_one_of(MODELS), model_why, "default"),
        "device": (_one_of(DEVICES_HERE), "this server has " + ", ".join(DEVICES_HERE), "auto"),
        "agg": (_one_of(AGGREGATIONS), "one of " + ", ".join(AGGREGATIONS), AGGREGATIONS[0]),
        "sym": (_one_of(SYMMETRIZE), "one of " + ", ".join(SYMMETRIZE), next(iter(SYMMETRIZE))),
        "nospecial": (_bool_word, "true or false", "false"),
        "proj": (_one_of(SHOWN_PROJECTIONS), "one of " + ", ".join(SHOWN_PROJECTIONS), SHOWN_PROJECTIONS[0]),
        "img": (_one_of(IMAGE_FORMATS), "one of " + ", ".join(IMAGE_FORMATS), IMAGE_FORMATS[0]),
    }


def check_section(refused: list, sections: dict[str, str]) -> None:
    """The open tab (``section=``, a tab's label; a section's short key is taken for its label)."""
    asked = _asked("section")
    if asked is None or asked in sections.values():
        return
    if asked in sections:  # ?section=layer: the short key the README and the lesson may use
        st.session_state["section"] = sections[asked]
        return
    _refuse(
        refused, "section", lambda v: False, "one of " + ", ".join(sections) + " or a tab's title", next(iter(sections))
    )


def _shown(value) -> str:
    return "the default (empty)" if value == "" else str(value)


def refusal(key: str, asked, why: str, default) -> str:
    """The message for a value reset to its default (plain text: escape before showing)."""
    return f"{key}={asked} is not available here ({why}): reset to {_shown(default)}."


def unworkable(mitigation: str, asked: dict, shape: tuple[int, int] | None) -> dict[str, str]:
    """The parameters among ``asked`` (name → value, as typed or linked) to reset, and why.

    A value is reset when it does not parse; then, on a model of ``shape`` ``(layers, heads)``
    (``None``: unknown, syntax only), when the values together cannot apply
    (:meth:`~smoothviz.mitigations.Mitigation.check`) and putting this one back to its default,
    the first in the parameters' order that does, makes them apply; if none does, every value asked
    for. If even the defaults cannot apply, nothing is reset: the analysis says why.
    """

    def problem(values: dict, on_model: bool = True) -> str | None:
        try:
            config = make(mitigation, values)
            if on_model:
                SETTINGS.check_params(values)  # a public server's own limits
                if shape:
                    config.check(*shape)
        except ValueError as err:  # "name: key must be …, got 'x'": the key=value is shown already
            return str(err).removeprefix(f"{mitigation}: ").rsplit(", got ", 1)[0]
        return None

    if problem({}):
        return {}
    reasons = {name: why for name, raw in asked.items() if (why := problem({name: raw}, on_model=False))}
    values = {name: raw for name, raw in asked.items() if name not in reasons}
    while values and (why := problem(values)):
        blame = next(
            (name for name in values if not problem({k: v for k, v in values.items() if k != name})), next(iter(values))
        )
        reasons[blame] = why
        del values[blame]
    return reasons


def linked_mitigation(query, shape: tuple[int, int] | None) -> tuple[str, dict, list[str]]:
    """The mitigation and parameters a link asks for, for a page without widgets (Present):
    ``(name or "none", params, what was reset)``, with the sidebar's checks and messages."""
    names, refused = ["none", *REGISTRY], []
    mitigation = query.get("mit", DEFAULT_MITIGATION)
    if mitigation not in names:
        refused.append(refusal("mit", mitigation, "one of " + ", ".join(names), DEFAULT_MITIGATION))
        mitigation = DEFAULT_MITIGATION
    if mitigation == "none":
        return mitigation, {}, refused
    specs = REGISTRY[mitigation].PARAMS
    asked = {name: query[key] for name in specs if (key := _param_key(mitigation, name)) in query}
    reasons = unworkable(mitigation, asked, shape)
    refused += [
        refusal(_param_key(mitigation, name), asked[name], why, specs[name].default) for name, why in reasons.items()
    ]
    return mitigation, {k: v for k, v in asked.items() if k not in reasons}, refused


def _typed(value, like):
    """A link's text ``value`` as the type of ``like`` (what a widget would return)."""
    if isinstance(like, bool):
        return _as_bool(value)
    if isinstance(like, (int, float)):
        return type(like)(float(value))
    return str(value)


def linked_settings(query) -> tuple[dict, list[str]]:
    """The settings a link asks for, for a page without the sidebar (Present): the same keys, the
    same checks and the same messages as the sidebar's (:func:`sidebar`), as ``(settings for
    state.analysis_or_error, what was reset)``."""
    refused, got = [], {}
    for key, (ok, allowed, default) in {**simple_checks(), **lab_checks()}.items():
        asked = query.get(key)
        if asked is not None and not ok(asked):
            refused.append(refusal(key, asked, allowed, default))
            asked = None
        got[key] = default if asked is None else asked
    model = got["model"]
    if model == "custom":
        model = str(query.get("model_id", "")).strip()
    lab = None
    if model == "lab":
        lab = {name: _typed(got[f"lab_{name}"], default) for name, default in LAB_DEFAULTS.items()}
    device = got["device"]
    head = None
    if got["agg"] == "one head":
        heads = state.head_count(model, device, lab)
        top = (heads or 64) - 1
        asked = query.get("head", "0")
        head = int(float(asked)) if _in_range(0, top, integer=True)(asked) else None
        if head is None:
            refused.append(refusal("head", asked, f"this model has heads 0–{top}", 0))
            head = 0
    mitigation, params, more = linked_mitigation(query, state.model_shape(model, device, lab))
    if mitigation != "none":  # typed as the sidebar's widgets give them: the same analysis, shared in the cache
        specs = REGISTRY[mitigation].PARAMS
        cast = {"float": float, "int": lambda v: int(float(v))}
        params = {name: cast.get(spec.kind, str)(params.get(name, spec.default)) for name, spec in specs.items()}
    text = str(query.get("text") or default_text())[:TEXT_CHARS]
    image = None
    if takes_images(model):  # a vision model: the link's example picture (an upload is never in a link)
        choices = images.examples()
        asked = query.get("image")
        if asked is not None and asked not in choices:
            refused.append(refusal("image", asked, "one of " + ", ".join(choices), next(iter(choices))))
            asked = None
        image, text = choices[asked or next(iter(choices))], ""
    return dict(
        text=text,
        model=model,
        device=device,
        lab=lab,
        mitigation=mitigation,
        params=params,
        head=head,
        symmetrize=got["sym"],
        exclude_special=_as_bool(got["nospecial"]),
        projection=got["proj"],
        image=image,
    ), refused + more


def mitigation_params(name: str, refused: list, prefix: str = "", shape=None) -> dict:
    """One widget per ``Param`` of the chosen mitigation, at its default (keys start with ``prefix``).

    A value asked for (typed, linked, kept from another model) that the mitigation cannot use is
    reset first (:func:`unworkable`); ``shape()`` gives the model's ``(layers, heads)`` for that,
    or ``None`` (syntax alone).
    """
    specs = REGISTRY[name].PARAMS
    keys = {pname: _param_key(name, pname, prefix) for pname in specs}
    asked = {pname: value for pname, key in keys.items() if (value := _asked(key)) is not None}
    on_model = shape and asked and REGISTRY[name].check is not Mitigation.check  # else no need to load it
    reasons = unworkable(name, asked, shape() if on_model else None)
    # A bound text box takes the value of the link the page was opened with on its first draw,
    # whatever the state says: draw it once, then rerun with the state set (found refused again).
    linked = any(specs[pname].kind == "text" and keys[pname] not in st.session_state for pname in reasons)
    for pname, why in reasons.items():
        refused.append(refusal(keys[pname], asked[pname], why, specs[pname].default))
        st.session_state[keys[pname]] = specs[pname].default
        if keys[pname] in st.query_params:  # a copied link would carry it again
            del st.query_params[keys[pname]]
    params = {}
    for pname, spec in specs.items():
        key, label = keys[pname], f"{pname} — {spec.help}" if spec.help else pname
        if spec.kind == "choice":
            params[pname] = st.selectbox(
                label, list(spec.choices), index=list(spec.choices).index(spec.default), key=key, bind=URL
            )
        elif spec.kind == "float" and spec.hi - spec.lo <= 2:
            params[pname] = st.slider(
                label,
                float(spec.lo),
                float(spec.hi),
                float(spec.default),
                step=round((spec.hi - spec.lo) / 40, 4),
                key=key,
                bind=URL,
            )
        elif spec.kind in ("float", "int"):
            cast = float if spec.kind == "float" else int
            params[pname] = st.number_input(
                label,
                cast(spec.lo),
                cast(spec.hi),
                cast(spec.default),
                step=0.1 if spec.kind == "float" else 1,
                key=key,
                bind=URL,
            )
        else:
            params[pname] = st.text_input(label, value=str(spec.default), key=key, bind=URL, max_chars=500)
    if linked and not st.session_state.get("_relinked"):  # once: never a loop of reruns
        st.session_state["_relinked"] = True
        st.rerun()
    st.session_state.pop("_relinked", None)
    return params


def _url_text(text: str) -> str:
    """The longest start of ``text`` a shared link carries (``URL_TEXT_CHARS``, ``URL_TEXT_BYTES``)."""
    short = text[:URL_TEXT_CHARS]
    while len(quote(short, safe="")) > URL_TEXT_BYTES:
        short = short[: len(short) * URL_TEXT_BYTES // len(quote(short, safe=""))]
    return short


def _text_box() -> str:
    """The text area, and the start of its text in the URL.

    The text is not bound to the URL like the other widgets: a bound widget puts all of its value
    in the address, and a link over ~128 kB fails with HTTP 400. A session's first run takes the
    link's text; afterwards the URL gets the text's first ``URL_TEXT_CHARS`` characters at most.
    """
    if "text" not in st.session_state:  # this session's first run: the link decides
        st.session_state["text"] = st.query_params.get("text", default_text())[:TEXT_CHARS]
    text = st.text_area("Text (Ctrl+Enter to apply)", key="text", height=110, max_chars=TEXT_CHARS) or ""
    if len(text) >= TEXT_CHARS:
        st.caption(f"The text box holds at most {TEXT_CHARS:,} characters: longer text is cut there.")
    short = _url_text(text)
    if text == default_text():
        if "text" in st.query_params:
            del st.query_params["text"]
    elif st.query_params.get("text") != short:
        st.query_params["text"] = short
    if len(short) < len(text):
        st.caption(
            f"A copied link holds only the first {len(short):,} of the text's {len(text):,} characters "
            "(longer addresses are refused)."
        )
    return text


def image_box(refused: list) -> str:
    """A vision model's picture: a shipped example, or an upload (which wins while it is there);
    the main page's sidebar and the Compare page draw it.
    Returns its reference for the settings (app/images.py), or ``""`` when the upload is unusable
    (the reason is shown here; the page then analyses nothing). A link's example (``image=``) that
    is not one goes to ``refused``."""
    choices = images.examples()
    _refuse(refused, "image", lambda v: v in choices, "one of " + ", ".join(choices), next(iter(choices)))
    pick = st.selectbox(
        "Example pictures",
        list(choices),
        key="image",
        bind=URL,  # a link reopens the example
        help="Simple shapes drawn by SmoothViz (CC0, assets/images).",
    )
    upload = st.file_uploader(
        "Or upload a picture",
        type=images.UPLOAD_TYPES,
        key="image_upload",
        help=f"PNG, JPEG, GIF, BMP or WebP, up to {MAX_IMAGE_BYTES // 2**20} MB; "
        "the model's own image processor resizes and crops it.",
    )
    if upload is None:
        return choices[pick]
    st.caption(
        "The upload is analysed (the example is not); remove it (×) to go back to the examples. "
        "A copied link does not carry an upload."
    )
    try:
        return images.remember(upload.name, upload.getvalue())
    except ImageError as err:
        st.error(str(err), icon=":material/error:")
        return ""


def _head_box(model: str, device: str, lab: dict | None, refused: list) -> int:
    """The head index, offered only within the chosen model's heads (the model is loaded for it)."""
    heads = state.head_count(model, device, lab)  # None if it cannot load: the analysis will say why
    top = (heads or 64) - 1
    _refuse(
        refused,
        "head",
        _in_range(0, top, integer=True),
        f"this model has heads 0–{top}" if heads else f"heads 0–{top}",
        0,
    )
    return st.number_input("Head index", 0, top, 0, key="head", bind=URL, help=f"0–{top}")


def model_controls(refused: list) -> tuple[str, dict | None, str]:
    """The model (with the lab's settings) and the device: ``(model, lab or None, device)``."""
    st.subheader("Model")
    model = st.selectbox(
        "Model",
        MODELS,
        key="model",
        bind=URL,
        label_visibility="collapsed",
        help="default: the embedded all-MiniLM-L6-v2 (offline). gemma-3-270m: the embedded Gemma 3 "
        "270M decoder (offline; the first load dequantises it, about 2 minutes). lab: a "
        "deep, untrained transformer to configure. custom: a Hugging Face id, a local "
        "directory or a .gguf file.",
    )
    if model == "custom":
        model = st.text_input(
            "Hugging Face id, local directory or .gguf file",
            key="model_id",
            bind=URL,
            max_chars=500,
            placeholder="bert-base-uncased or /path/to/model",
        ).strip()
    lab = lab_widgets(model == "lab", refused)
    lab = lab if model == "lab" else None
    device = st.selectbox(
        "Device",
        list(DEVICES_HERE),
        key="device",
        bind=URL,
        help=", ".join(DEVICES[d] for d in DEVICES_HERE) + " (the devices this server has)",
    )
    return model, lab, device


def mitigation_controls(refused: list, shape=None) -> tuple[str, dict]:
    """The mitigation and its parameters: ``(name or "none", params)``; ``shape()`` is the model's
    ``(layers, heads)`` the parameters must fit (:func:`mitigation_params`)."""
    st.subheader("Mitigation")
    names = ["none", *REGISTRY]  # every registered mitigation, in registry order
    _refuse(refused, "mit", _one_of(names), "one of " + ", ".join(names), DEFAULT_MITIGATION)
    mitigation = st.selectbox(
        "Mitigation", names, index=names.index(DEFAULT_MITIGATION), key="mit", bind=URL, label_visibility="collapsed"
    )
    if mitigation != "none":
        st.caption(REGISTRY[mitigation].summary)
    return mitigation, mitigation_params(mitigation, refused, shape=shape) if mitigation != "none" else {}


def graph_controls(model: str, device: str, lab: dict | None, refused: list) -> dict:
    """The graph options, as ``analyze``'s keyword arguments ``head``, ``symmetrize``, ``exclude_special``."""
    with st.expander("Graph options"):
        one = st.radio("Head aggregation", list(AGGREGATIONS), key="agg", bind=URL, horizontal=True)
        head = _head_box(model, device, lab, refused) if one == "one head" and model else None
        sym = st.radio(
            "Symmetrisation", list(SYMMETRIZE), key="sym", bind=URL, horizontal=True, captions=list(SYMMETRIZE.values())
        )
        exclude = st.checkbox("Exclude special tokens ([CLS], [SEP], …)", key="nospecial", bind=URL)
    return dict(head=int(head) if head is not None else None, symmetrize=sym, exclude_special=exclude)


def write_to_url(defaults: dict | None = None, **values) -> None:
    """Set widgets' values from code (a callback, before they are drawn) and put them in the URL.

    Streamlit writes a value set in code into the URL only for a widget drawn in the run before;
    a widget drawn for the first time (the heads' parameters when another mitigation was chosen)
    kept the value out of the address, and a copied link opened another experiment (issue 22).
    Such a key is not bound yet, so it is written here; a bound one (its widget drawn before)
    Streamlit writes itself, and refuses a direct write. A value equal to its default
    (``defaults``) is left out of the link, as Streamlit does.
    """
    st.session_state.update(values)
    for key, value in values.items():
        try:
            if value == (defaults or {}).get(key):
                if key in st.query_params:
                    del st.query_params[key]
            else:
                st.query_params[key] = str(value)
        except StreamlitAPIException:  # bound to a widget drawn before: Streamlit syncs it
            pass


def query_for(settings: dict, layer: int | None = None, section: str = "depth") -> dict:
    """The main page's URL keys that open ``settings`` (a preset's or a Lesson step's), at ``layer``
    and on the tab ``section`` (a key of :data:`smoothviz.outputs.views.SECTIONS`)."""
    mit = settings.get("mitigation") or "none"
    q = {"model": settings.get("model", "default"), "text": settings["text"], "mit": mit}
    q.update({_param_key(mit, k): v for k, v in (settings.get("params") or {}).items()})
    q.update({f"lab_{k}": str(v).lower() if isinstance(v, bool) else v for k, v in (settings.get("lab") or {}).items()})
    if layer is not None:
        q["layer"] = layer
    q["section"] = SECTIONS[section]
    return q


def same_tab_link(label: str, path: str, query: dict) -> str:
    """HTML for a link to another page of the app, opened in this tab as a fresh page load.

    Not ``st.page_link``: Streamlit's own page change keeps the session and drops every URL key
    bound to a widget of another page (the model, the mitigation, the layer…), so Present opened
    with the text alone. Not a markdown link: those open a new tab. ``label`` is this app's own
    text; the query is percent-encoded, so nothing a visitor typed can leave the attribute.
    """
    href = html.escape(f"{path}?{urlencode(query)}" if query else path, quote=True)
    return f'<a href="{href}" target="_self">{html.escape(label)}</a>'


def url_state() -> dict:
    """The URL parameters of the model, mitigation and graph widgets as they stand (a link to the
    main page with the same settings)."""
    ss = st.session_state
    keys = ["model", "device", "mit", "agg", "sym", "nospecial"]
    if ss.get("model") == "custom":
        keys += ["model_id", "image"]  # a vision model's example picture (absent for a text model)
    if ss.get("model") == "lab":
        keys += [f"lab_{name}" for name in LAB_DEFAULTS]
    if ss.get("mit") in REGISTRY:
        keys += [_param_key(ss["mit"], name) for name in REGISTRY[ss["mit"]].PARAMS]
    if ss.get("agg") == "one head":
        keys.append("head")
    return {k: ("true" if ss[k] else "false") if isinstance(ss[k], bool) else str(ss[k]) for k in keys if k in ss}


def sidebar() -> tuple[dict, str, list[str]]:
    """Draw the sidebar; return the settings for :func:`state.run_analysis`, the image format, and
    what was asked for but reset (plain text: escape before showing)."""
    data = state.examples()
    refused: list[str] = []
    for key, (ok, allowed, default) in simple_checks().items():  # a link's value no widget here can hold
        _refuse(refused, key, ok, allowed, default)
    check_section(refused, {**SECTIONS, **IMAGE_SECTIONS})  # a picture's tab too
    sb = st.sidebar
    sb.selectbox(
        "Ready-made preset",
        ["—", *data["presets"]],
        key="preset",
        on_change=apply_preset,
        help="Loads a model, sentence and mitigation that show one effect clearly.",
    )
    if chosen := data["presets"].get(st.session_state.get("preset")):
        sb.caption(chosen["description"])

    with sb:
        model, lab, device = model_controls(refused)

        image = None
        if takes_images(model):  # a vision model (ViT, DeiT, DINOv2): a picture instead of a sentence
            st.subheader("Image")
            image, text = image_box(refused), ""
        else:
            st.subheader("Sentence")
            st.selectbox("Example sentences", ["—", *data["examples"]], key="example", on_change=apply_example)
            text = _text_box()

        mitigation, params = mitigation_controls(refused, lambda: state.model_shape(model, device, lab))
        graph = graph_controls(model, device, lab, refused)

        st.subheader("Projection")
        proj = st.radio(
            "Projection",
            list(SHOWN_PROJECTIONS),
            key="proj",
            bind=URL,
            horizontal=True,
            label_visibility="collapsed",  # no format_func: the URL holds the option
            help="pca: PCA, fast and deterministic; umap: UMAP (fixed seed), keeps neighbourhoods.",
        )
        img = st.radio(
            "Chart download format",
            list(IMAGE_FORMATS),
            key="img",
            bind=URL,
            horizontal=True,
            help="What the camera button in every chart's toolbar saves.",
        )
    settings = dict(
        text=text,
        model=model,
        device=device,
        lab=lab,
        mitigation=mitigation,
        params=params,
        **graph,
        projection=proj,
        image=image,
    )
    return settings, img, refused
