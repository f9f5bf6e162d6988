"""Issue 22 item 1: a copied link reopens exactly what was on screen, and a link's value that
cannot be used is reset with a message naming its key and value (issue 27 items 5 and 6).

Random valid states (seeded) are opened as links in fresh AppTest sessions; the state read back
from the widgets must be the state asked for, and the URL the page then holds (what a lecturer
copies) must reopen the same state in another fresh session.
"""

import base64
import html
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from smoothviz.outputs.views import SECTIONS

pytestmark = pytest.mark.slow  # AppTest runs of whole pages

ROOT = Path(__file__).resolve().parent.parent
MAIN, PRESENT = ROOT / "app" / "SmoothViz.py", ROOT / "app" / "pages" / "5_Present.py"
SENTENCES = [
    "Links keep every setting.",
    "The cat sat on the mat because it was warm.",
    "Attention is a graph, and stacking it smooths the tokens.",
]
RESET = "is not available here"


def _open(page: Path, link: dict) -> AppTest:
    app = AppTest.from_file(str(page), default_timeout=600)
    app.query_params.update({k: str(v) for k, v in link.items()})
    return app.run()


def _plain(messages) -> list[str]:
    return [m.value.replace("\\", "") for m in messages]


def _fine(app) -> None:
    assert not app.exception, [e.value for e in app.exception]
    assert not app.error, [e.value for e in app.error]
    assert not [w for w in _plain(app.warning) if RESET in w]


def _url(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def random_state(rng: random.Random) -> dict:
    """A valid state of the main page: widget key → the value its widget should hold."""
    s = {"text": rng.choice(SENTENCES)}
    layers, heads = 6, 12  # all-MiniLM-L6-v2
    mits = ["none", "neutreno", "softdecay", "fusion-mean", "heads", "attnscale", "contranorm"]
    if rng.random() < 0.3:
        layers, heads = rng.randint(2, 6), rng.choice([1, 2, 4])
        s.update(
            model="lab",
            lab_depth=layers,
            lab_heads=heads,
            lab_width=rng.choice([16, 32, 64]),
            lab_residual=rng.choice([True, False]),
            lab_layernorm=rng.choice(["none", "pre", "post"]),
            lab_mlp=rng.choice([True, False]),
            lab_ln_sign=rng.choice(["positive", "negative"]),
            lab_value_spectrum=rng.choice(["random", "positive", "negative"]),
            lab_temperature=rng.choice([0.5, 1.0, 2.5]),
            lab_seed=rng.randint(0, 99),
        )
        mits = ["none", "neutreno", "fusion-mean", "heads"]
    s["device"] = rng.choice(["auto", "cpu"])
    s["mit"] = mit = rng.choice(mits)
    if mit == "neutreno":
        s["neutreno_lambda"] = rng.randint(0, 40) / 40
    elif mit == "softdecay":
        s.update(softdecay_alpha=-rng.randint(0, 40) / 40, softdecay_where=rng.choice(["last", "every", "official"]))
    elif mit == "fusion-mean":
        a = rng.randint(0, layers)
        s["fusion_mean_layers"] = rng.choice(["all", f"{a}-{rng.randint(a, layers)}", str(a)])
    elif mit == "heads":
        cells = sorted({(rng.randint(1, layers), rng.randrange(heads)) for _ in range(rng.randint(1, 2))})
        s.update(heads_ablate=",".join(f"{l}.{h}" for l, h in cells), heads_sink=rng.choice(["none", "drop"]))
    elif mit == "attnscale":
        s["attnscale_omega"] = rng.randint(0, 40) / 10
    elif mit == "contranorm":
        s.update(contranorm_s=rng.randint(0, 40) * 0.005, contranorm_tau=rng.randint(1, 40) / 10)
    if rng.random() < 0.3:
        s.update(agg="one head", head=rng.randrange(heads))
    s.update(
        sym=rng.choice(["sym", "ata"]),
        nospecial=rng.choice([True, False]),
        img=rng.choice(["png", "svg"]),
        proj=rng.choice(["pca", "umap"]),
    )
    section = rng.choice([k for k in SECTIONS if not (k == "trajectories" and s["proj"] == "umap")])  # UMAP: slow
    s["section"] = SECTIONS[section]
    if section == "layer":
        s.update(layer=rng.randint(1, layers), topk=rng.randint(1, 10))
    elif section == "atlas":
        s.update(
            atlas_q=rng.choice(["head_gap", "head_entropy", "head_uniform"]),
            atlas_layer=rng.randint(1, layers),
            atlas_head=rng.randrange(heads),
        )
    return s


def read_back(app: AppTest, keys) -> dict:
    return {key: app.session_state[key] if key in app.session_state else None for key in keys}


def same(got: dict, asked: dict) -> None:
    for key, value in asked.items():
        if isinstance(value, float):
            assert got[key] == pytest.approx(value, abs=1e-9), (key, got[key], value)
        else:
            assert got[key] == value, (key, got[key], value)


@pytest.mark.parametrize("seed", range(8))
def test_a_copied_link_reopens_the_same_state(seed):
    """Open a random valid state as a link and read it back; the same with a highlighted token
    (the link names it as its menu shows it); then the URL the page holds after that run (what a
    lecturer copies; AppTest has no browser, so the widgets' own writes are the browser test's),
    opened in a fresh session, gives the same state again."""
    rng = random.Random(2200 + seed)
    asked = random_state(rng)
    link = {k: _url(v) for k, v in asked.items()}
    first = _open(MAIN, link)
    _fine(first)
    same(read_back(first, asked), asked)
    assert first.get("plotly_chart")

    options = first.selectbox(key="token").options  # "none", "0 · [CLS]", …
    asked["token"] = token = rng.randrange(len(options) - 1)
    second = _open(MAIN, {**link, "token": options[token + 1]})
    _fine(second)
    same(read_back(second, asked), asked)

    copied = {k: v[0] if isinstance(v, list) else v for k, v in second.query_params.items()}
    third = _open(MAIN, copied)
    _fine(third)
    same(read_back(third, asked), asked)


def _heatmaps(app) -> list:
    """The similarity heatmaps' matrices (the charts whose colour bar is titled cos)."""

    def matrix(z):  # plotly sends arrays as {"dtype", "bdata" (base64), "shape"}
        if isinstance(z, dict):
            flat = np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"])
            return flat.reshape([int(x) for x in str(z["shape"]).split(",")]).astype(float)
        return np.asarray(z, dtype=float)

    figs = [json.loads(c.proto.spec) for c in app.get("plotly_chart")]
    return [
        matrix(f["data"][0]["z"])
        for f in figs
        if f["data"]
        and f["data"][0]["type"] == "heatmap"
        and f["data"][0].get("colorbar", {}).get("title", {}).get("text") == "cos"
    ]


def test_present_this_carries_the_setup_and_present_honours_the_lab():
    """Issue 22's central demo: the lab without residual, MLP or LayerNorm collapses; Present drew
    the residual lab for the same link. Now the main page's "Present this" link carries the whole
    setup, and Present opened with it draws the same similarity matrices at the same layer."""
    setup = {
        "model": "lab",
        "lab_depth": "12",
        "lab_residual": "false",
        "lab_mlp": "false",
        "lab_layernorm": "none",
        "mit": "fusion-mean",
        "fusion_mean_layers": "4-6",
        "layer": "3",
        "section": SECTIONS["layer"],
        "text": "Fusion is seen, not inferred.",
    }
    main = _open(MAIN, setup)
    _fine(main)
    link = next(m.value for m in main.markdown if ">Present this</a>" in m.value)
    href = html.unescape(re.search(r'href="([^"]+)" target="_self"', link).group(1))
    assert href.startswith("Present?")
    query = dict(parse_qsl(href.split("?", 1)[1]))
    assert {k: query.get(k) for k in setup if k != "section"} == {k: v for k, v in setup.items() if k != "section"}
    assert query["view"] == "similarity"
    present = _open(PRESENT, query)
    _fine(present)
    assert "layer 3 of 12" in " ".join(m.value for m in present.markdown)
    assert "Fusion is seen, not inferred." in " ".join(e.proto.body for e in present.get("html"))
    shown, projected = _heatmaps(main), _heatmaps(present)
    assert len(shown) == len(projected) == 2 and all((a == b).all() for a, b in zip(shown, projected))
    last = _open(PRESENT, {**query, "layer": "12"})
    z = _heatmaps(last)[0]  # the baseline: pure attention, no residual — every token alike
    assert z.min() > 0.99


MISSING_DEVICE = next(
    d for d in ("cuda", "mps") if not (torch.cuda.is_available() if d == "cuda" else torch.backends.mps.is_available())
)
BAD = [  # (link, key, value) on the main page
    ({"model": "does-not-exist/foo"}, "model", "does-not-exist/foo"),
    ({"model": "/etc"}, "model", "/etc"),
    ({"device": MISSING_DEVICE}, "device", MISSING_DEVICE),
    ({"proj": "tsne"}, "proj", "tsne"),
    ({"sym": "x"}, "sym", "x"),
    ({"img": "gif"}, "img", "gif"),
    ({"nospecial": "maybe"}, "nospecial", "maybe"),
    ({"agg": "max"}, "agg", "max"),
    ({"section": "Bogus"}, "section", "Bogus"),
    ({"layer": "99", "section": SECTIONS["layer"]}, "layer", "99"),
    ({"layer": "0", "section": SECTIONS["layer"]}, "layer", "0"),
    ({"topk": "50", "section": SECTIONS["layer"]}, "topk", "50"),
    ({"atlas_q": "foo", "section": SECTIONS["atlas"]}, "atlas_q", "foo"),
    ({"atlas_layer": "99", "section": SECTIONS["atlas"]}, "atlas_layer", "99"),
    ({"atlas_head": "40", "section": SECTIONS["atlas"]}, "atlas_head", "40"),
    ({"token": "99 · nothing"}, "token", "99 · nothing"),
    ({"neutreno_lambda": "NaN"}, "neutreno_lambda", "NaN"),
    ({"mit": "bogus"}, "mit", "bogus"),
    ({"model": "lab", "lab_residual": "maybe"}, "lab_residual", "maybe"),
    ({"model": "lab", "lab_layernorm": "sideways"}, "lab_layernorm", "sideways"),
]


@pytest.mark.parametrize("link, key, value", BAD, ids=[f"{k}={v}" for _, k, v in BAD])
def test_every_invalid_value_is_reset_with_a_message_naming_it(link, key, value):
    app = _open(MAIN, link)
    said = [w for w in _plain(app.warning) if RESET in w]
    assert len(said) == 1 and said[0].startswith(f"{key}={value} {RESET} ("), said
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert app.get("plotly_chart")
    assert app.query_params.get(key) in (None, []), "a copied link would carry the bad value again"


def test_a_section_key_opens_its_tab():
    app = _open(MAIN, {"section": "layer", "layer": "1"})  # the Lesson's step 1 link: layer 1
    _fine(app)
    assert app.session_state["section"] == SECTIONS["layer"] and app.session_state["layer"] == 1
    assert any(m.label.startswith("mean token cosine ↑ · layer 1") for m in app.metric)


def test_the_atlas_ablation_is_written_into_the_url():
    app = _open(MAIN, {"section": SECTIONS["atlas"], "atlas_layer": "3", "atlas_head": "5"})
    app.button(key="ablate").click().run()
    _fine(app)
    assert app.query_params.get("mit") in ("heads", ["heads"])
    assert app.query_params.get("heads_ablate") in ("3.5", ["3.5"])
    copied = {k: v[0] if isinstance(v, list) else v for k, v in app.query_params.items()}
    again = _open(MAIN, copied)
    _fine(again)
    assert again.session_state["heads_ablate"] == "3.5" and again.session_state["heads_sink"] == "none"


@pytest.mark.parametrize(
    "link, key, value",
    [
        ({"view": "bogus"}, "view", "bogus"),
        ({"layer": "99"}, "layer", "99"),
        ({"model": "nope"}, "model", "nope"),
        ({"device": MISSING_DEVICE}, "device", MISSING_DEVICE),
        ({"model": "lab", "lab_mlp": "perhaps"}, "lab_mlp", "perhaps"),
    ],
)
def test_present_resets_an_invalid_value_with_a_message(link, key, value):
    app = _open(PRESENT, link)
    said = [w for w in _plain(app.warning) if RESET in w]
    assert len(said) == 1 and said[0].startswith(f"{key}={value} {RESET} ("), said
    assert not app.exception and not app.error and app.get("plotly_chart")


PUBLIC = r"""
import json
from streamlit.testing.v1 import AppTest
out = {}
for page in ("app/SmoothViz.py", "app/pages/5_Present.py"):
    at = AppTest.from_file(page, default_timeout=600)
    at.query_params.update({"model": "bert-base-uncased", "device": "cuda"})
    at.run()
    out[page] = {"warnings": [w.value.replace("\\", "") for w in at.warning], "errors": [e.value for e in at.error],
                 "exceptions": [e.value for e in at.exception], "charts": len(at.get("plotly_chart")),
                 "devices": at.selectbox(key="device").options if page.endswith("SmoothViz.py") else None}
print(json.dumps(out))
"""


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a CPU-only server")
def test_a_public_server_names_a_model_off_its_list_and_offers_only_its_devices():
    env = {**os.environ, "SMOOTHVIZ_PUBLIC": "1"}
    out = subprocess.run([sys.executable, "-c", PUBLIC], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    pages = json.loads(out.stdout.strip().splitlines()[-1])
    for page in pages.values():
        assert not page["errors"] and not page["exceptions"] and page["charts"]
        allowed = "default, gemma-3-270m, lab"  # the public allow-list's default (app/state/server.py)
        assert any(
            w.replace("\u2060", "").startswith(
                f"model=bert-base-uncased is not available here (this public server allows only {allowed})"
            )
            for w in page["warnings"]
        ), page["warnings"]
        assert any(
            w.replace("\u2060", "").startswith("device=cuda is not available here (this server has auto, cpu")
            for w in page["warnings"]
        )
    assert pages["app/SmoothViz.py"]["devices"] == ["auto", "cpu"]


def test_the_fused_output_is_a_position_after_the_last_layer():
    """Issue 22: the slider stopped at L, so a fusion's cards read "0.325 → 0.325, +0"."""
    link = {"mit": "fusion-mean", "fusion_mean_layers": "4-6", "layer": "fused", "section": SECTIONS["layer"]}
    app = _open(MAIN, link)
    _fine(app)
    assert app.select_slider(key="layer").options[-1] == "fused" and app.session_state["layer"] == "fused"
    card = next(m for m in app.metric if m.label == "mean token cosine ↑ · the fused output")
    assert card.value == "0.325 → 0.24"  # the reference sentence: layer 6, then the fused output (issue 22)
    heatmaps = _heatmaps(app)
    assert len(heatmaps) == 2 and not np.allclose(heatmaps[0], heatmaps[1])  # the fused states differ from layer 6
    present = _open(PRESENT, {**{k: v for k, v in link.items() if k != "section"}, "view": "similarity"})
    _fine(present)
    assert "fused output, after layer 6 of 6" in " ".join(m.value for m in present.markdown)
    assert all((a == b).all() for a, b in zip(heatmaps, _heatmaps(present)))


def test_an_emoji_alone_is_said_to_be_unknown_to_the_tokenizer():
    app = _open(MAIN, {"text": "🙂"})
    _fine(app)
    assert any("1 of the 3 tokens analysed is the unknown token [UNK]" in i.value.replace("\\", "") for i in app.info)


def test_compare_takes_lab_settings_as_widgets_and_presents_each_run():
    app = _open(
        ROOT / "app" / "pages" / "3_Compare.py",
        {
            "a_model": "lab",
            "a_lab_depth": "8",
            "a_lab_residual": "false",
            "b_mit": "neutreno",
            "b_neutreno_lambda": "0.6",
        },
    )
    _fine(app)
    assert app.slider(key="a_lab_depth").value == 8 and app.toggle(key="a_lab_residual").value is False
    links = next(m.value for m in app.markdown if "Present run A" in m.value)
    hrefs = [html.unescape(h) for h in re.findall(r'href="([^"]+)"', links)]
    a = dict(parse_qsl(hrefs[0].split("?", 1)[1]))
    assert a["model"] == "lab" and a["lab_depth"] == "8" and a["lab_residual"] == "false"
    b = dict(parse_qsl(hrefs[1].split("?", 1)[1]))
    assert b["mit"] == "neutreno" and float(b["neutreno_lambda"]) == pytest.approx(0.6)
    bad = _open(ROOT / "app" / "pages" / "3_Compare.py", {"a_model": "lab", "a_lab_depth": "abc"})
    assert not bad.exception and not any("must be a" in e.value for e in bad.error)
    assert any("a_lab_depth=abc is not available here" in w for w in _plain(bad.warning))


def test_a_pasted_corpus_lives_in_the_link():
    lines = ["The cat sat on the mat.", "Attention is a graph.", "Stacking attention smooths the tokens of a sentence."]
    app = _open(ROOT / "app" / "pages" / "2_Corpus.py", {"corpus": "paste", "paste": "\n".join(lines)})
    _fine(app)
    assert app.text_area(key="paste_text").value == "\n".join(lines)
    assert any("3 sentences" in c.value for c in app.caption)
    tables = [t.value for t in app.dataframe]
    ranked = next(t for t in tables if "sentence" in t.columns)
    assert list(ranked.columns[:3]) == ["open", "line", "sentence"]
    assert sorted(ranked["line"]) == [1, 2, 3] and set(ranked["sentence"]) == set(lines)  # 1-based, shown
    assert any("cannot exceed a sentence's token count" in c.value for c in app.caption)
    assert app.query_params.get("paste") in ("\n".join(lines), ["\n".join(lines)])


def test_present_this_carries_the_highlighted_token():
    main = _open(MAIN, {"section": SECTIONS["layer"], "token": "4 · fox"})
    _fine(main)
    link = next(m.value for m in main.markdown if ">Present this</a>" in m.value)
    query = dict(parse_qsl(html.unescape(re.search(r'href="([^"]+)"', link).group(1)).split("?", 1)[1]))
    assert query["token"] == "4 · fox"
    present = _open(PRESENT, query)
    _fine(present)
    framed = [json.loads(c.proto.spec)["layout"].get("shapes", []) for c in present.get("plotly_chart")]
    assert framed and all(len(shapes) == 2 for shapes in framed)  # the picked token's row and column, framed
    bad = _open(PRESENT, {"token": "99 · nothing", "view": "similarity"})
    assert any(w.startswith("token=99 · nothing is not available here") for w in _plain(bad.warning))
