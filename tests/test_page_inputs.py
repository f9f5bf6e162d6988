"""Issue 6 through the page: every bad or odd input a student can type gives a result or a clear
message, never a traceback, and the same session keeps working afterwards."""
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from smoothviz.models import default_model_path

APP = Path(__file__).resolve().parent.parent / "app" / "SmoothViz.py"

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
    cases = {"no-such-org/no-such-model": "cannot load model", str(tmp_path): "not a model directory",
             str(pickled): "pickle"}
    for model_id, words in cases.items():
        app = _session(model="custom", model_id=model_id)
        _expect_message(app, words)
        app.selectbox(key="model").set_value("default").run()  # the session recovers
        _fine(app)


@pytest.mark.parametrize("params, words", [
    ({"mit": "neutreno", "neutreno_lambda": "3"}, None),        # the widget clamps or refuses it
    ({"model": "lab", "lab_depth": "200"}, None),
    ({"mit": "fusion-mean", "fusion_mean_weights": "1,2"}, "weights needed"),
    ({"mit": "fusion-max", "fusion_max_layers": "9-12"}, "layers must lie within"),
])
def test_out_of_range_parameters_never_crash(params, words):
    app = _session(**params)
    assert not app.exception, [e.value for e in app.exception]
    if words:
        _expect_message(app, words)


@pytest.mark.parametrize("params, raw, escaped", [
    ({"mit": "fusion-mean", "fusion_mean_layers": "[click me](https://example.com)"},
     "[click me](https://example.com)", r"\[click me\]\(https\:\/\/example\.com\)"),
    ({"mit": "fusion-mean", "fusion_mean_weights": "![t](http://127.0.0.1:9/track.png)"},
     "![t](", r"\!\[t\]\(http\:\/\/127\.0\.0\.1\:9\/track\.png\)"),
    ({"mit": "fusion-max", "fusion_max_layers": r"$$\textcolor{red}{\huge big}$$"},
     "$$", r"\$\$\\textcolor\{red\}\{\\huge big\}\$\$"),
    ({"model": "custom", "model_id": "/x/<img src=x onerror=alert(1)>/**b**"},
     "src=x onerror", r"\<img src\=x onerror\=alert\(1\)\>\/\*\*b\*\*"),
])
def test_values_echoed_in_messages_are_escaped(params, raw, escaped):
    """Issue 16: a link, an image, LaTeX or HTML in a parameter is shown as text, never rendered."""
    app = _session(**params)
    assert not app.exception, [e.value for e in app.exception]
    assert app.error, "the value is refused with a message"
    body = app.error[0].value
    assert escaped in body and raw not in body, body


def test_markdown_escaper_leaves_no_construct():
    import sys
    sys.path.insert(0, str(APP.parent))
    from markup import md
    assert md("a_b *c* `d` <b> [l](u) ![i](u) $x$ :red[y] https://e.com www.e.com a@b.c") == (
        r"a\_b \*c\* \`d\` \<b\> \[l\]\(u\) \!\[i\]\(u\) \$x\$ \:red\[y\] https\:\/\/e\.com www\.e\.com a\@b\.c")
    assert md("plain words 123 é ü 注意") == "plain words 123 é ü 注意"
