"""Issue 6 through the page: every bad or odd input a student can type gives a result or a clear
message, never a traceback, and the same session keeps working afterwards."""

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from smoothviz.model.models import default_model_path

pytestmark = pytest.mark.slow  # AppTest runs of the whole page

APP = Path(__file__).resolve().parent.parent / "app" / "SmoothViz.py"
J = "\u2060"  # markup.JOINER: md() puts it after every ":" and "@" and every "www" before a dot

TEXTS = {
    "emoji": "Transformers 🤖 smooth 🔥 everything 🙂👍🏽",
    "cjk": "注意力是一个图，堆叠会使词元趋同。",
    "rtl": "הקשב הוא גרף والانتباه رسم بياني",
    "zero-width and control": "zero\u200bwidth\u200d text\x07 with\x1b[31m control",
    "markup": "<script>alert('x')</script><b>bold</b> <img src=x onerror=alert(1)>",
    "one token": "hello",
    "100k characters": ("Every token becomes alike. " * 4000)[:100_000],
}


def _session(**params):
    app = AppTest.from_file(str(APP), default_timeout=600)
    app.query_params.update(params)
    return app.run()


def _fine(app):
    assert not app.exception, [e.value for e in app.exception]
    assert not app.error, [e.value for e in app.error]
    assert app.get("plotly_chart")


@pytest.mark.parametrize("name", TEXTS)
def test_odd_text_is_drawn(name):
    app = _session(text=TEXTS[name], mit="neutreno")
    _fine(app)
    if name == "100k characters":
        assert any("tokens were dropped" in i.value for i in app.info)
        # The text box holds what the analysis reads; Streamlit cuts longer values on the server.
        assert app.text_area(key="text").proto.max_chars == 200_000
    if name == "one token":  # hello alone is [CLS] hello [SEP]; without specials one token is left
        app = _session(text="hello", nospecial="true", mit="none")
        assert not app.exception and any("undefined" in i.value for i in app.info)


def _expect_message(app, words):
    assert not app.exception, [e.value for e in app.exception]
    assert app.error and words in app.error[0].value, [e.value for e in app.error]


def test_models_that_cannot_load_say_why(tmp_path):
    pickled = tmp_path / "pickled"
    shutil.copytree(default_model_path(), pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    cases = {
        "no-such-org/no-such-model": "cannot load model",
        str(tmp_path): "not a model directory",
        str(pickled): "pickle",
    }
    for model_id, words in cases.items():
        app = _session(model="custom", model_id=model_id)
        _expect_message(app, words)
        app.selectbox(key="model").set_value("default").run()  # the session recovers
        _fine(app)


@pytest.mark.parametrize(
    "params",
    [
        {"mit": "neutreno", "neutreno_lambda": "3"},  # the widget clamps or refuses it
        {"model": "lab", "lab_depth": "200"},
    ],
)
def test_out_of_range_parameters_never_crash(params):
    app = _session(**params)
    assert not app.exception, [e.value for e in app.exception]
    # A value outside a widget's range never reaches the analysis: the widget shows an allowed value
    # and the page draws with it.
    _fine(app)
    if "neutreno_lambda" in params:
        assert 0 <= app.slider(key="neutreno_lambda").value <= 1
    else:
        assert 1 <= app.slider(key="lab_depth").value <= 64


PRESENT = APP.parent / "pages" / "5_Present.py"
# A link's mitigation setting the mitigation cannot use on this model: (URL, the key reset, why).
BAD_LINKS = [
    ({"mit": "neutreno", "neutreno_lambda": "abc"}, "neutreno_lambda", "lambda must be a number in [0.0, 1.0]"),
    ({"mit": "heads", "heads_ablate": "zzz"}, "heads_ablate", "ablate must be a list like 3.0,5.11"),
    ({"mit": "heads", "heads_ablate": "9.0,3.1"}, "heads_ablate", "layer 9 does not exist: this model has layers 1..6"),
    ({"mit": "heads", "heads_sink": "maybe"}, "heads_sink", "sink must be one of none, drop"),
    ({"mit": "fusion-gate", "fusion_gate_gate": "/no/such/gate.json"}, "fusion_gate_gate", "is not a gate file"),
    ({"mit": "fusion-gate", "fusion_gate_layers": "2-4"}, "fusion_gate_layers", "the gate was fitted on layers 1-6"),
    ({"mit": "fusion-mean", "fusion_mean_weights": "1,2"}, "fusion_mean_weights", "6 weights needed"),
    ({"mit": "fusion-max", "fusion_max_layers": "9-12"}, "fusion_max_layers", "layers must lie within 0..6"),
    ({"mit": "gate"}, "mit", "one of none, fusion-mean"),
]


def _reset(app, params: dict, key: str, why: str) -> None:
    """One warning names the key, the value asked for and why it was reset; no other is left."""
    said = [w for w in _plain(app.warning) if "is not available here" in w]
    assert len(said) == 1 and said[0].startswith(f"{key}={params[key]} is not available here (") and why in said[0], (
        said
    )


@pytest.mark.parametrize("params, key, why", BAD_LINKS, ids=[k for _, k, _ in BAD_LINKS])
def test_a_bad_mitigation_setting_in_a_link_is_reset_and_the_page_draws(params, key, why):
    """A link's value the mitigation cannot use left the page on an error for good: now it is reset
    to its default, with a warning, and the page draws; a new sentence draws too, warned no more."""
    from smoothviz.mitigations import REGISTRY

    app = _session(**params)
    _reset(app, params, key, why)
    _fine(app)
    mit = app.session_state["mit"]
    default = (
        "neutreno" if key == "mit" else REGISTRY[mit].PARAMS[key.removeprefix(mit.replace("-", "_") + "_")].default
    )
    assert app.session_state[key] == default
    assert app.query_params.get(key) in (None, default, [default])  # a copied link no longer carries it
    app.text_area(key="text").input("Another sentence after the reset.").run()
    _fine(app)
    assert not any("is not available here" in w for w in _plain(app.warning))


@pytest.mark.parametrize(
    "params, key, why", BAD_LINKS[:3] + BAD_LINKS[-1:], ids=[k for _, k, _ in BAD_LINKS[:3] + BAD_LINKS[-1:]]
)
def test_the_present_page_resets_a_bad_link_setting_too(params, key, why):
    app = AppTest.from_file(str(PRESENT), default_timeout=600)
    app.query_params.update(params)
    app.run()
    _reset(app, params, key, why)
    _fine(app)
    next(b for b in app.button if b.label == "layer ▶").click().run()  # the session goes on
    _fine(app)


@pytest.mark.parametrize(
    "params, raw, escaped",
    [
        (
            {"mit": "fusion-mean", "fusion_mean_layers": "[click me](https://example.com)"},
            "[click me](https://example.com)",
            r"\[click me\]\(https\:" + J + r"\/\/example\.com\)",
        ),
        (
            {"mit": "fusion-mean", "fusion_mean_weights": "![t](http://127.0.0.1:9/track.png)"},
            "![t](",
            r"\!\[t\]\(http\:" + J + r"\/\/127\.0\.0\.1\:" + J + r"9\/track\.png\)",
        ),
        (
            {"mit": "fusion-max", "fusion_max_layers": r"$$\textcolor{red}{\huge big}$$"},
            "$$",
            r"\$\$\\textcolor\{red\}\{\\huge big\}\$\$",
        ),
        (
            {"model": "custom", "model_id": "/x/<img src=x onerror=alert(1)>/**b**"},
            "src=x onerror",
            r"\<img src\=x onerror\=alert\(1\)\>\/\*\*b\*\*",
        ),
    ],
)
def test_values_echoed_in_messages_are_escaped(params, raw, escaped):
    """Issue 16: a link, an image, LaTeX or HTML in a parameter is shown as text, never rendered."""
    app = _session(**params)
    assert not app.exception, [e.value for e in app.exception]
    said = app.error or [w for w in app.warning if "is not available here" in w.value]
    assert said, "the value is refused with a message"
    body = said[0].value
    assert escaped in body and raw not in body, body


def test_markdown_escaper_leaves_no_construct():
    import sys

    sys.path.insert(0, str(APP.parent))
    from markup import md

    assert md("a_b *c* `d` <b> [l](u) ![i](u) $x$ :red[y] https://e.com www.e.com a@b.c") == (
        r"a\_b \*c\* \`d\` \<b\> \[l\]\(u\) \!\[i\]\(u\) \$x\$ \:"
        + J
        + r"red\[y\] https\:"
        + J
        + r"\/\/e\.com www"
        + J
        + r"\.e\.com a\@"
        + J
        + r"b\.c"
    )  # J: a word joiner breaks each pattern GFM links (issue 27)
    assert md("plain words 123 é ü 注意") == "plain words 123 é ü 注意"


def _plain(messages) -> list[str]:
    """Message bodies without the markdown escapes."""
    return [m.value.replace("\\", "").replace(J, "") for m in messages]


def test_a_rejected_head_in_a_link_is_reset_and_the_session_goes_on():
    """Issue 16 (issue 15's dead end): ?head=40 on a 12-head model left the error up for good."""
    app = _session(agg="one head", head="40", mit="none")
    assert any(
        "head=40 is not available here (this model has heads 0–11): reset to 0." in w for w in _plain(app.warning)
    ), _plain(app.warning)
    _fine(app)
    assert app.number_input(key="head").value == 0 and app.number_input(key="head").max == 11
    app.text_area(key="text").input("Another sentence after the reset.").run()
    _fine(app)
    assert not app.warning  # said once, not on every run

    app.number_input(key="head").set_value(9).run()  # a head the lab below does not have
    app.selectbox(key="model").set_value("lab").run()
    assert any(
        "head=9 is not available here (this model has heads 0–3): reset to 0." in w for w in _plain(app.warning)
    ), _plain(app.warning)
    _fine(app)


def test_a_long_text_keeps_the_link_short():
    """Issue 16: the text went into the URL whole, and links over ~128 kB fail with HTTP 400."""
    long = "Every token becomes alike over many layers of attention. " * 400  # 22,800 characters
    app = _session(mit="none")
    app.text_area(key="text").input(long).run()
    _fine(app)
    link = app.query_params["text"]
    link = link[0] if isinstance(link, list) else link
    assert link == long[:8000] and app.text_area(key="text").value == long
    assert any("first 8,000 of the text's 22,800 characters" in c for c in _plain(app.caption))
    reopened = _session(mit="none", text=link)  # the copied link opens on what it holds
    _fine(reopened)
    assert reopened.text_area(key="text").value == long[:8000]
    assert not any("A copied link holds" in c for c in _plain(reopened.caption))
    wide = "注意力" * 3000  # 9 bytes each once percent-encoded: cut by bytes, not characters
    app.text_area(key="text").input(wide).run()
    link = app.query_params["text"]
    link = link[0] if isinstance(link, list) else link
    assert wide.startswith(link) and 2000 < len(link) < 8000


PUBLIC_LAB = r"""
import json
from streamlit.testing.v1 import AppTest
at = AppTest.from_file("app/SmoothViz.py", default_timeout=600)
at.query_params.update({"model": "lab", "lab_depth": "64", "lab_width": "1024", "mit": "none"})
at.run()
first = {"warnings": [w.value.replace("\\", "").replace("\u2060", "") for w in at.warning],
         "errors": [e.value for e in at.error],
         "exceptions": [e.value for e in at.exception], "charts": len(at.get("plotly_chart")),
         "depth": [at.slider(key="lab_depth").value, at.slider(key="lab_depth").max],
         "width": [at.select_slider(key="lab_width").value, at.select_slider(key="lab_width").options]}
at.text_area(key="text").input("A new sentence after the reset.").run()
then = {"warnings": [w.value for w in at.warning], "errors": [e.value for e in at.error],
        "exceptions": [e.value for e in at.exception], "charts": len(at.get("plotly_chart"))}
print(json.dumps({"first": first, "then": then}))
"""


def test_a_public_server_offers_only_its_lab_caps_and_resets_beyond_them():
    """Issue 16: the lab sliders offered depth 64 and width 1024 where only 32 and 256 run."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "SMOOTHVIZ_PUBLIC": "1", "SMOOTHVIZ_MAX_LAB_DEPTH": "16", "SMOOTHVIZ_MAX_LAB_WIDTH": "128"}
    out = subprocess.run(
        [sys.executable, "-c", PUBLIC_LAB], cwd=APP.parent.parent, env=env, capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, out.stderr[-2000:]
    page = json.loads(out.stdout.strip().splitlines()[-1])
    first, then = page["first"], page["then"]
    assert not first["errors"] and not first["exceptions"] and first["charts"]
    assert first["depth"] == [16, 16] and first["width"][0] == 64 and first["width"][1][-1] == "128"
    assert any("lab_depth=64 is not available here (lab depth 1–16): reset to 16." in w for w in first["warnings"])
    assert any(
        "lab_width=1024 is not available here (lab width 8, 16, 32, 64, 128): reset to 64." in w
        for w in first["warnings"]
    )
    assert not then["errors"] and not then["exceptions"] and then["charts"] and not then["warnings"]


def test_unworkable_blames_each_setting_in_turn_and_heeds_the_public_server(monkeypatch):
    """Which of a link's values to reset: the one whose default makes the rest apply, then the next;
    a public server's own limit (no gate file of one's own) is a reason too."""
    import dataclasses
    import sys

    sys.path.insert(0, str(APP.parent))
    from smoothviz.data import DEFAULT_GATE

    import controls

    reasons = controls.unworkable("fusion-mean", {"layers": "9-12", "weights": "1,2,3,4"}, (6, 12))
    assert "layers must lie within 0..6" in reasons["layers"] and "6 weights needed" in reasons["weights"]
    assert controls.unworkable("fusion-mean", {"layers": "2-3", "weights": "1,2"}, (6, 12)) == {}
    assert controls.unworkable("heads", {"ablate": "9.0"}, None) == {}  # the model unknown: syntax only
    assert controls.unworkable("fusion-gate", {"gate": str(DEFAULT_GATE)}, (6, 12)) == {}
    monkeypatch.setattr(controls, "SETTINGS", dataclasses.replace(controls.SETTINGS, public=True))
    assert (
        "only the shipped fusion gate"
        in controls.unworkable("fusion-gate", {"gate": str(DEFAULT_GATE)}, (6, 12))["gate"]
    )
