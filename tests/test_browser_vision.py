"""A picture on the page in a real browser (issue 26): an example from the link, an upload, the
layer slider, a click on the similarity map (its cells checked against transformers' own pass),
a file that is not a picture, and Present for an example picture.

Starts ``streamlit run app/SmoothViz.py`` on a free port with a small random-weight DeiT saved in a
temporary folder (no vision weights can be downloaded here) and drives Debian's chromium.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from test_vision import EXAMPLES, _build, _eager, _pixel_values

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.browser, pytest.mark.slow]
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DRAWN = """min => {
  const charts = [...document.querySelectorAll('[data-testid="stPlotlyChart"]')].filter(c => c.checkVisibility());
  const running = document.querySelector('[data-testid="stStatusWidget"]')?.innerText.includes('Running');
  return !running && charts.length >= min && charts.every(c => c.querySelector('.js-plotly-plot .main-svg'));
}"""
IDLE = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')?.innerText.includes('Running')"
SIMILARITY = "() => document.querySelector('.st-key-view-patch-similarity .js-plotly-plot')"


@pytest.fixture(scope="module")
def deit(tmp_path_factory) -> str:
    return _build("deit", tmp_path_factory.mktemp("deit"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path_factory.mktemp("streamlit") / "server.log", "w")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app/SmoothViz.py",
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--browser.gatherUsageStats",
            "false",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 90
        while True:
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail(f"streamlit did not start; see {log.name}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 2400})
        errors = []
        tab.on("pageerror", lambda e: errors.append(str(e)))
        tab.js_errors = errors
        yield tab
        browser.close()


def _settle(page, charts: int = 1) -> None:
    page.wait_for_timeout(1500)  # the rerun starts after the input event
    page.wait_for_function(DRAWN, arg=charts, timeout=300_000)


def _similarity(page) -> tuple[str, np.ndarray]:
    """The similarity map's title and cells as the browser holds them (trace 1: the heatmap)."""
    title, z = page.evaluate(
        SIMILARITY.replace("() =>", "() => { const g =") + "; return [g.layout.title.text, g._fullData[1].z]; }"
    )
    return title, np.array(z, dtype=np.float64)


def _alerts(page) -> list[str]:
    return page.locator('[data-testid="stAlert"]').all_inner_texts()


def test_a_picture_on_the_page(server, deit, page, tmp_path):
    base = f"{server}/?model=custom&model_id={quote(deit, safe='')}&mit=none"
    page.goto(base + "&image=stripes&section=On+the+picture")
    _settle(page, 4)
    assert page.locator('[data-testid="stException"]').count() == 0
    assert "stripes.png — 4×4 patches of 8 px, after 2 tokens ([CLS], [DIST])" in page.locator("body").inner_text()
    title, _ = _similarity(page)
    assert "layer 3: similarity to p2,2 spans" in title  # the last layer and the centre patch by default

    # an upload replaces the example; the page names it
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(EXAMPLES / "house.png"))
    _settle(page, 4)
    assert "house.png — 4×4 patches" in page.locator("body").inner_text()
    assert any(
        "A copied link does not carry an upload" in c
        for c in page.locator('[data-testid="stCaptionContainer"]').all_inner_texts()
    )

    # the layer slider to layer 1, then a click on patch p0,3's centre (x = 3·8 + 3.5, y = 3.5 pixels)
    page.locator(".st-key-image_layer").get_by_role("slider").focus()
    page.keyboard.press("Home")
    _settle(page, 4)
    point = page.evaluate(
        SIMILARITY.replace("() =>", "() => { const g =")
        + """;
        const xa = g._fullLayout.xaxis, ya = g._fullLayout.yaxis, r = g.getBoundingClientRect();
        return [r.left + xa._offset + xa.l2p(27.5), r.top + ya._offset + ya.l2p(3.5)]; }"""
    )
    page.mouse.move(*point)
    page.mouse.click(*point)
    _settle(page, 4)
    title, cells = _similarity(page)
    assert "layer 1: similarity to p0,3" in title
    assert any(
        "baseline: the similarity to patch p0,3 has a standard deviation" in c
        for c in page.locator('[data-testid="stCaptionContainer"]').all_inner_texts()
    )  # the line follows the click
    # the cells on screen = cosines of transformers' own layer-1 patch states to p0,3 (token 2 + 3)
    out = _eager(deit, _pixel_values(deit, EXAMPLES / "house.png"))
    H = out.hidden_states[1][0].double().numpy()[2:]
    X = H / np.linalg.norm(H, axis=-1, keepdims=True)
    assert np.allclose(cells, (X @ X[3]).reshape(4, 4), atol=1e-4)

    # a text file named .png: one line, no traceback, nothing analysed
    bad = tmp_path / "smoothviz-not-a-picture.png"
    bad.write_text("this is not a picture")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(bad))
    page.wait_for_timeout(2000)
    page.wait_for_function(IDLE, timeout=120_000)
    assert any("'smoothviz-not-a-picture.png' is not an image SmoothViz can read" in a for a in _alerts(page))
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator('[data-testid="stPlotlyChart"]').count() == 0
    assert page.js_errors == []


def test_an_example_picture_goes_to_present(server, deit, page):
    page.goto(f"{server}/?model=custom&model_id={quote(deit, safe='')}&mit=none&image=nope")
    _settle(page, 1)
    assert any("image=nope is not available here (one of ball, house, shapes, stripes)" in a for a in _alerts(page))
    page.locator(".st-key-image").click()
    page.get_by_role("option", name="shapes").click()
    _settle(page, 1)
    assert "image=shapes" in page.url
    page.get_by_role("tab", name="On the picture").click()
    _settle(page, 4)
    page.get_by_text("Present this").click()
    page.wait_for_timeout(2000)
    _settle(page, 1)
    assert "/Present?" in page.url and "image=shapes" in page.url and "view=patch-similarity" in page.url
    assert "shapes.png, 4×4 patches" in page.locator(".sentence").inner_text()
    assert page.locator('[data-testid="stException"]').count() == 0 and not _alerts(page)
    titles = page.evaluate("() => [...document.querySelectorAll('.js-plotly-plot')].map(g => g.layout.title.text)")
    assert titles and all("layer 3: similarity to p2,2" in t for t in titles)  # the picture's own view, on screen
