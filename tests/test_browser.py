"""The dashboard in a real browser: load, move the layer slider, change the sentence, screenshots.

Starts ``streamlit run app/SmoothViz.py`` on a free port and drives Debian's chromium through
Playwright (no browser download). Screenshots and timings.json go to $SMOOTHVIZ_SCREENSHOTS
(a temporary folder unless set).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from smoothviz.data import examples
from smoothviz.outputs.views import SECTIONS, in_section

ROOT = Path(__file__).resolve().parent.parent
# Screenshots and timings go to a temporary folder, so a test run leaves the work tree clean;
# SMOOTHVIZ_SCREENSHOTS=assets/screenshots refreshes the README's pictures on purpose.
SHOTS = Path(os.environ.get("SMOOTHVIZ_SCREENSHOTS") or tempfile.mkdtemp(prefix="smoothviz-shots-")).resolve()
CHROMIUM = shutil.which("chromium")
# No skip when chromium is missing: the README's test command installs it, so a missing browser is
# a broken set-up to report, not a test to pass over. Deselect with -m "not browser" on purpose.
pytestmark = [pytest.mark.browser, pytest.mark.slow]
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_LOG = {}  # the running server's log file
EXAMPLES = examples()["examples"]
LONG = EXAMPLES["A long paragraph (60+ tokens)"]

# JS: are all visible Streamlit plotly charts drawn (and at least `min` of them)? A closed tab's
# charts may stay in the document, hidden.
ALL_DRAWN = """min => {
  const charts = [...document.querySelectorAll('[data-testid="stPlotlyChart"]')].filter(c => c.checkVisibility());
  const running = document.querySelector('[data-testid="stStatusWidget"]')?.innerText.includes('Running');
  return !running && charts.length >= min && charts.every(c => c.querySelector('.js-plotly-plot .main-svg'));
}"""
# JS: a fingerprint of the first similarity heatmap (sum of its cells), to see it change.
HEATMAP_SUM = """() => {
  const g = [...document.querySelectorAll('.js-plotly-plot')].find(
      g => g.data && g.data[0] && g.data[0].type === 'heatmap' && g.data[0].zmin === -1);
  if (!g) return null;
  const sum = a => a == null ? 0 : typeof a === 'number' ? (isNaN(a) ? 0 : a)
      : a.length !== undefined ? Array.prototype.reduce.call(a, (s, v) => s + sum(v), 0) : 0;
  return sum(g._fullData[0].z);  // decoded cells (g.data may hold plotly's base64 form)
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path_factory.mktemp("streamlit") / "server.log", "w")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "SMOOTHVIZ_TIMINGS": "1",
    }  # the server logs each page and fragment run's time
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
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail(f"streamlit did not start; see {log.name}")
            time.sleep(0.5)
        SERVER_LOG["path"] = Path(log.name)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "chromium is not on PATH: apt-get install -y chromium (the README's test command does)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def _load(page, url: str, min_charts: int = 3, timeout: float = 240) -> float:
    """Open ``url``; return the seconds until every chart is drawn."""
    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_function(ALL_DRAWN, arg=min_charts, timeout=timeout * 1000, polling=100)
    return time.perf_counter() - t0


def _full_page(page, path: Path) -> None:
    """Screenshot the whole app: Streamlit scrolls inside stMain, so grow the viewport to fit it."""
    size = page.viewport_size
    height = page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": size["width"], "height": min(int(height), 16000)})
    page.wait_for_timeout(1500)  # plotly redraws on resize
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)


def _wait_changed(page, before, t0: float, timeout: float = 120) -> float:
    """Wait until the similarity heatmap differs from ``before``; seconds since ``t0``."""
    page.wait_for_function(
        f"() => {{ const s = ({HEATMAP_SUM})(); return s !== null && Math.abs(s - {before}) > 1e-6; }}",
        timeout=timeout * 1000,
        polling=50,
    )
    return time.perf_counter() - t0


def _set_text(page, text: str) -> None:
    area = page.get_by_label("Text (Ctrl+Enter to apply)")
    area.fill(text)
    area.press("Control+Enter")


def _timings(name: str) -> list[float]:
    """The server's own times (ms) for every run of ``name`` (page or a fragment), from its log."""
    return [
        float(line.split()[2])
        for line in SERVER_LOG["path"].read_text().splitlines()
        if line.startswith(f"smoothviz-timing {name} ")
    ]


def _server_ms(name: str, seen: int) -> float:
    """The time of the first run of ``name`` logged after the ``seen`` runs before it."""
    for _ in range(1200):
        times = _timings(name)
        if len(times) > seen:
            return times[seen]
        time.sleep(0.1)
    pytest.fail(f"no new timing line for {name} in the server log")


def charts_in(section: str) -> int:
    """The charts a section draws with a mitigation (baseline beside mitigated): from the registry."""
    return sum(2 if view.per_run else 1 for view in in_section(section))


def _open_tab(page, section: str, charts: int) -> None:
    """Click the tab of ``section`` (a key of views.SECTIONS) and wait for its ``charts`` to draw."""
    page.get_by_role("tab", name=SECTIONS[section]).click()
    page.wait_for_function(
        f"() => ({ALL_DRAWN})({charts}) && ({VISIBLE_CHARTS})() === {charts}", timeout=240_000, polling=100
    )


VISIBLE_CHARTS = """() => [...document.querySelectorAll('[data-testid="stPlotlyChart"]')]
  .filter(c => c.checkVisibility()).length"""


def _count_charts(page) -> int:
    return page.evaluate(VISIBLE_CHARTS)


def test_dashboard_in_browser(server, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    errors = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    timings = {"cold_load_s": round(_load(page, server), 2)}  # includes loading the model
    # The first page is light: the depth tab's three charts, nothing of the other tabs.
    assert _count_charts(page) == charts_in("depth")
    # Server times are measured once UMAP's one-time numba compile (a background thread that
    # competes for the interpreter) is over, as on a server that has been up for a minute.
    timings["umap_warm_up_s"] = round(_server_ms("umap-warm-up", 0) / 1000, 1)
    seen = len(_timings("page"))
    timings["warm_load_s"] = round(_load(page, server), 2)  # same settings: the cache answers
    timings["warm_page_server_ms"] = _server_ms("page", seen)
    page.screenshot(path=str(SHOTS / "dashboard-1366x768.png"))
    page.set_viewport_size({"width": 1280, "height": 720})  # a classroom projector
    page.wait_for_timeout(1500)  # plotly redraws on resize
    page.screenshot(path=str(SHOTS / "dashboard-1280x720.png"))
    page.set_viewport_size({"width": 1366, "height": 768})

    # The layer tab; its slider driven by the keyboard alone: the similarity heatmap must change.
    t0 = time.perf_counter()
    _open_tab(page, "layer", charts_in("layer"))
    timings["layer_tab_s"] = round(time.perf_counter() - t0, 2)
    assert "section=" in page.url  # the open tab is part of the link
    before = page.evaluate(HEATMAP_SUM)
    thumb = page.get_by_role("slider", name="Layer")
    thumb.focus()
    seen = len(_timings("layer-views"))
    t0 = time.perf_counter()
    thumb.press("ArrowLeft")
    timings["slider_to_chart_s"] = round(_wait_changed(page, before, t0), 3)
    timings["slider_server_ms_new_layer"] = _server_ms("layer-views", seen)
    for layer, key in ((6, "ArrowRight"), (5, "ArrowLeft")):  # layers already drawn: figures from the cache
        page.get_by_role("heading", name=f"Token similarity at layer {11 - layer}").wait_for()
        page.wait_for_function(ALL_DRAWN, arg=charts_in("layer"))
        seen = len(_timings("layer-views"))
        thumb.press(key)
        page.get_by_role("heading", name=f"Token similarity at layer {layer}").wait_for()
        timings[f"slider_server_ms_seen_layer_{layer}"] = _server_ms("layer-views", seen)
    thumb.press("Home")  # the first layer from the keyboard, too
    page.get_by_role("heading", name="Token similarity at layer 1").wait_for()
    thumb.press("ArrowRight")
    thumb.press("ArrowRight")
    thumb.press("ArrowRight")
    thumb.press("ArrowRight")
    page.get_by_role("heading", name="Token similarity at layer 5").wait_for()
    page.wait_for_function("() => location.search.includes('layer=5')", timeout=30_000)  # the setting is in the link
    page.wait_for_function(ALL_DRAWN, arg=charts_in("layer"))
    _full_page(page, SHOTS / "dashboard-1366-full.png")

    # The other tabs draw when opened, and the layer is kept when coming back.
    for section in ("trajectories", "atlas", "sv"):
        charts = charts_in(section)
        _open_tab(page, section, charts)
        assert _count_charts(page) == charts
    _open_tab(page, "layer", charts_in("layer"))
    page.get_by_role("heading", name="Token similarity at layer 5").wait_for()

    # A new sentence: the analysis reruns and the charts follow.
    before, t0 = page.evaluate(HEATMAP_SUM), time.perf_counter()
    _set_text(page, "Graphs of attention smooth every token towards the same vector.")
    timings["sentence_to_chart_s"] = round(_wait_changed(page, before, t0), 2)
    page.wait_for_function(ALL_DRAWN, arg=charts_in("layer"))

    # A long sentence (60+ tokens) must stay legible.
    before, t0 = page.evaluate(HEATMAP_SUM), time.perf_counter()
    _set_text(page, LONG)
    timings["long_sentence_to_chart_s"] = round(_wait_changed(page, before, t0), 2)
    page.wait_for_function(ALL_DRAWN, arg=charts_in("layer"))
    tokens = page.get_by_text("tokens analysed").first.inner_text()
    assert int(tokens.split(" tokens analysed")[0].split("·")[-1]) >= 60
    _full_page(page, SHOTS / "long-sentence-1366-full.png")
    page.close()

    wide = browser.new_page(viewport={"width": 1920, "height": 1080})
    wide.on("pageerror", lambda err: errors.append(str(err)))
    timings["warm_load_1920_s"] = round(_load(wide, server), 2)
    wide.screenshot(path=str(SHOTS / "dashboard-1920x1080.png"))
    wide.close()

    (SHOTS / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    print("timings:", timings)
    assert not errors, errors


def test_corpus_page_in_browser(server, browser):
    """The Corpus page runs the default shipped corpus, draws its three charts and both tables."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    errors = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    _load(page, server + "/Corpus", min_charts=3, timeout=600)
    page.get_by_text("Smooth least").wait_for()
    page.wait_for_timeout(1000)  # the tables' canvas
    page.screenshot(path=str(SHOTS / "corpus-1366x768.png"))
    _full_page(page, SHOTS / "corpus-1366-full.png")
    page.close()
    assert not errors, errors
