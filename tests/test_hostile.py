"""Issue 27, item 4: nothing a visitor typed renders as a link, an image or HTML, anywhere.

A crafted class link put a clickable phishing link on the teacher's server: the markdown link
syntax was escaped, but GitHub-flavoured markdown also turns a bare ``https://…``, ``www.…``,
``mailto:…`` or ``name@host`` in plain text into a link. Every page's every message is checked
here (AppTest: the markdown each element sends), and the offline reports (their HTML).
"""

import re
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app"
sys.path.insert(0, str(APP))
pytestmark = pytest.mark.slow  # AppTest runs of whole pages

EVIL = "evil.example"
HOSTILE = {  # each as a visitor would type it or put it in a class link
    "bare URL": "see https://evil.example/login now",
    "www": "go to www.evil.example today",
    "mailto": "mailto:teacher@evil.example",
    "e-mail": "write to teacher@evil.example",
    "autolink": "<https://evil.example/a>",
    "markdown link": "[your grades](https://evil.example/x)",
    "markdown image": "![t](https://evil.example/track.png)",
    "HTML": "<a href='https://evil.example/'>x</a><img src=https://evil.example/i.png>",
    "ftp and xmpp": "ftp://evil.example xmpp:bot@evil.example",
    "upper case": "WWW.EVIL.EXAMPLE HTTPS://EVIL.EXAMPLE",
}
ALL = " ".join(HOSTILE.values())
_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
# What remark-gfm (Streamlit's renderer) links in the text once escapes are resolved, and the
# constructs markdown itself reads from the source: each, when it touches the hostile host.
LITERAL = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"(?:https?|ftp)://[^\s]*evil",
        r"(?<![\w.])www\.[^\s]*evil",
        r"(?:mailto|xmpp):[-.\w+]+@[^\s]*evil",
        r"[-.\w+]+@evil\.example",
    )
]
SOURCE = [
    re.compile(p, re.IGNORECASE)
    for p in (r"(?<!\\)\]\((?<!\\)[^)]*evil", r"(?<!\\)<[a-z/!][^>]*evil", r"(?<!\\)<(?:https?|mailto|ftp)[^>]*evil")
]


def unsafe(markdown: str) -> list[str]:
    """The links, images or HTML that ``markdown`` would render around the hostile host."""
    text = _ESCAPE.sub(r"\1", markdown)
    return [m.group(0) for p in LITERAL for m in p.finditer(text)] + [
        m.group(0) for p in SOURCE for m in p.finditer(markdown)
    ]


def test_the_check_finds_what_markdown_would_link():
    """The check itself: raw hostile text is unsafe in every form; md() of it is safe in every form."""
    from markup import md

    for name, value in HOSTILE.items():
        assert unsafe(value), name
        assert not unsafe(md(value)), (name, md(value))
        assert md(value).replace("\\", "").replace("\u2060", "") == value  # it reads the same


def messages(app) -> list[str]:
    """The markdown source of every element that renders markdown."""
    kinds = (
        "markdown",
        "caption",
        "warning",
        "error",
        "info",
        "success",
        "exception",
        "subheader",
        "header",
        "title",
        "metric",
    )
    return [str(getattr(e, "value", "")) for kind in kinds for e in app.get(kind)] + [
        str(getattr(e, "label", "")) for kind in ("expander", "metric") for e in app.get(kind)
    ]


def _run(page: str, params: dict) -> AppTest:
    app = AppTest.from_file(str(APP / page), default_timeout=600)
    app.query_params.update(params)
    return app.run()


# The app's own links to its pages (controls.same_tab_link: "Present this"): a relative path with a
# percent-encoded query, so a typed value in it is a parameter of our page, never a link of its own.
OWN_LINK = re.compile(r'<a href="[A-Za-z]*\?[A-Za-z0-9_.~%=&;+-]*" target="_self">')


def _check(app, must_echo: bool = True) -> None:
    shown = [OWN_LINK.sub("<a>", m) for m in messages(app)]
    bad = [(m[:120], unsafe(m)) for m in shown if unsafe(m)]
    assert not bad, bad
    if must_echo:  # the value is shown (as text), so the check above had something to check
        assert any(EVIL in _ESCAPE.sub(r"\1", m).replace("\u2060", "").lower() for m in shown), shown


@pytest.mark.parametrize(
    "page, params",
    [
        ("SmoothViz.py", {"mit": "neutreno", "neutreno_lambda": ALL}),  # a refused parameter
        ("SmoothViz.py", {"mit": ALL}),  # a refused mitigation
        ("SmoothViz.py", {"model": "custom", "model_id": "https://evil.example/www.evil.example/a@evil.example"}),
        ("SmoothViz.py", {"mit": "heads", "heads_ablate": ALL}),  # a text parameter the library quotes
        ("pages/5_Present.py", {"mit": "neutreno", "neutreno_lambda": ALL}),
        ("pages/5_Present.py", {"mit": ALL}),
        ("pages/3_Compare.py", {"a_model": "lab", "a_lab_depth": ALL}),  # a lab widget's value, refused
        ("pages/3_Compare.py", {"b_mit": "neutreno", "b_neutreno_lambda": ALL}),
        ("pages/2_Corpus.py", {"mit": "neutreno", "neutreno_lambda": ALL}),
    ],
    ids=[
        "main-param",
        "main-mit",
        "main-model",
        "main-heads",
        "present-param",
        "present-mit",
        "compare-lab",
        "compare-param",
        "corpus-param",
    ],
)
def test_no_typed_value_renders_as_a_link_in_any_message(page, params):
    app = _run(page, params)
    assert not app.exception, [e.value for e in app.exception]
    _check(app)


def test_a_hostile_sentence_is_drawn_and_never_linked():
    """The sentence itself: its tokens reach captions, notes and the sentences under the charts."""
    app = _run("SmoothViz.py", {"text": ALL, "mit": "neutreno"})
    assert not app.exception and app.get("plotly_chart")
    _check(app, must_echo=False)


def _tags(html: str) -> list[tuple[str, list[str]]]:
    """Every start tag in ``html`` with its attribute names, as an HTML parser reads them."""
    from html.parser import HTMLParser

    found = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, [name for name, _ in attrs]))

    Parser().feed(html)
    return found


def test_the_offline_reports_hold_no_link_or_image_from_the_text():
    """The HTML reports: every typed value is HTML-escaped text outside the scripts, and inside
    them (the figures' JSON) no "<" is left to open a tag."""
    import state

    settings = dict(
        text=ALL,
        model="default",
        device="cpu",
        lab=None,
        mitigation="neutreno",
        params={},
        head=None,
        symmetrize="sym",
        exclude_special=False,
        projection="pca",
    )
    for html in (
        state.report_html(settings, 3),
        state.compare_report_html(ALL, [("A: " + ALL, {**settings, "projection": "none"})], relative=False, depth=1.0),
    ):
        body = re.sub(r"<script>.*?</script>", "", html, flags=re.DOTALL)
        assert "evil" in body.lower()  # the text is there, as text (the report shows it as tokens)
        tags = _tags(body)  # what a browser parses: the typed "<a href=…>" is text, not a tag
        assert not {name for name, _ in tags} & {"a", "img", "iframe", "object", "embed", "link", "base", "form"}
        assert not [attrs for _, attrs in tags if {"href", "src", "action"} & set(attrs)]
        scripts = re.findall(r"<script>(.*?)</script>", html, flags=re.DOTALL)[1:]  # after plotly.js itself
        assert scripts and not any(re.search(r"<(a|img|/script)", s, re.IGNORECASE) for s in scripts)


@pytest.mark.browser
def test_in_a_real_browser_no_hostile_link_or_image_is_rendered(tmp_path):
    """The renderer itself (Streamlit's markdown in Chromium): the warnings show the typed values
    as text, and the page holds no link or image to the hostile host."""
    import importlib.util
    import shutil

    spec = importlib.util.spec_from_file_location("loadtest", ROOT / "bench" / "loadtest.py")
    loadtest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loadtest)
    from urllib.parse import urlencode

    from playwright.sync_api import sync_playwright

    assert shutil.which("chromium"), "chromium is not on PATH (apt-get install -y chromium)"
    with open(tmp_path / "server.log", "w") as log:
        proc, url = loadtest.start_server({"SMOOTHVIZ_PUBLIC": "1"}, log)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=loadtest.ARGS)
                page = browser.new_page()
                for path, params in [("", {"mit": "neutreno", "neutreno_lambda": ALL}), ("Present", {"mit": ALL})]:
                    page.goto(f"{url}/{path}?{urlencode(params)}")
                    alert = page.locator('[data-testid="stAlertContainer"]').filter(has_text="not available here")
                    alert.first.wait_for(timeout=240_000)
                    shown = alert.first.inner_text()
                    assert "evil.example" in shown.replace("\u2060", "").lower(), shown
                    links = page.eval_on_selector_all(
                        "a[href], img[src]",
                        "els => els.map(e => e.href || e.src)"
                        ".filter(h => /evil/i.test(new URL(h).hostname)"
                        " || /^(mailto|xmpp):/i.test(h))",
                    )
                    assert links == [], links
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
