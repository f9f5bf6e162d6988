"""A lecturer's class, end to end in a real Chromium (issue 22): a setting on the main page →
"Present this" → arrow keys → the copied URL opened in a new browser context → the same screen.
On the way, every Present view passes a projector check at 1280×720 and 1024×768, measured from
the element boxes and computed styles: text contrast ≥ 4.5:1 (WCAG AA), no text under 16 px,
no text outside the window or its chart, no two tick labels of an axis overlapping, no two page
elements overlapping. Screenshots and the arrow keys' redraw times go to $SMOOTHVIZ_SCREENSHOTS
(a temporary folder unless set).

Reuses test_browser's server and Chromium.
"""

import json
import re
import time
from urllib.parse import urlencode

import pytest

from smoothviz.outputs.views import SECTIONS, VIEWS

from test_browser import ALL_DRAWN, SERVER_LOG, SHOTS, _set_text, browser, server  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser, pytest.mark.slow]
TITLE = re.compile(r"view (\d+) of (\d+) · (?:layer (\d+) of (\d+)|fused output, after layer (\d+) of (\d+))")
FUSED = 13  # the lab has 12 layers; a fusion adds the fused output as position 13
SENTENCE = "Fusion mixes the layers, so the last layer alone no longer decides how alike the tokens look."

# JS: every visible text on the page, HTML and SVG, with its size, colours, box and chart.
TEXTS = r"""() => {
  const rgb = s => (s.match(/[\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => { const f = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
                               return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const background = el => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const main = document.querySelector('[data-testid="stMain"]');
  const out = [];
  const walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement, text = n.textContent.trim();
    if (!text || !el.checkVisibility({opacityProperty: true, visibilityProperty: true})) continue;
    if (el.closest('.modebar, .hoverlayer, style, script, [data-testid="stExpanderDetails"]')) continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    const svg = el.closest('svg'), chart = el.closest('[data-testid="stPlotlyChart"]');
    const cs = getComputedStyle(el);
    // The ink as seen: its own alpha and every ancestor's opacity blended over the background.
    const ink = rgb(svg ? (cs.fill || cs.color) : cs.color), bg = background(el);
    let alpha = (ink.length === 4 ? ink[3] : 1) * (svg ? parseFloat(cs.fillOpacity || 1) : 1);
    for (let e = el; e; e = e.parentElement) alpha *= parseFloat(getComputedStyle(e).opacity);
    const colour = ink.slice(0, 3).map((c, i) => alpha * c + (1 - alpha) * bg[i]);
    // Cut short: a box narrower than its text (an ellipsis, a button label). The sentence line is
    // the one cut on purpose (its full text in its tooltip).
    const cut = !el.closest('.sentence') && !svg && el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0;
    const onCell = !!el.closest('.heatmaplayer, .cbaxis, .legend');  // over coloured cells: plotly picks the ink
    const c = chart ? chart.getBoundingClientRect() : null;
    out.push({text: text.slice(0, 40), size: parseFloat(cs.fontSize), contrast: onCell ? 21 : ratio(colour, bg),
              svg: !!svg && !onCell, cut,
              box: [r.left, r.top, r.right, r.bottom], chart: c ? [c.left, c.top, c.right, c.bottom] : null,
              axis: (el.closest('.xtick, .ytick') && el.closest('g[class*="axislayer"]')) ?
                    [...document.querySelectorAll('g[class*="axislayer"]')].indexOf(el.closest('g[class*="axislayer"]'))
                    + ':' + (el.closest('.xtick') ? 'x' : 'y') + ':' + [...document.querySelectorAll('.js-plotly-plot')]
                    .indexOf(el.closest('.js-plotly-plot')) : null});
  }
  return {texts: out, width: innerWidth, height: innerHeight};
}"""
# JS: the boxes of the leaf page elements (Streamlit's element containers holding no other).
BLOCKS = r"""() => [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stElementContainer"]')]
  .filter(e => e.checkVisibility() && !e.querySelector('[data-testid="stElementContainer"]'))
  .map(e => { const r = e.getBoundingClientRect(); return {name: e.innerText.slice(0, 30), box: [r.left, r.top, r.right, r.bottom]}; })
  .filter(b => b.box[2] - b.box[0] > 1 && b.box[3] - b.box[1] > 1)"""


def _overlap(a, b, slack: float = 1.0) -> bool:
    return min(a[2], b[2]) - max(a[0], b[0]) > slack and min(a[3], b[3]) - max(a[1], b[1]) > slack


def projector_problems(page) -> list[str]:
    """What a projector check finds wrong on the screen as it stands (empty: nothing)."""
    seen = page.evaluate(TEXTS)
    width, height = seen["width"], seen["height"]
    problems = []
    for t in seen["texts"]:
        if t["size"] < 16:
            problems.append(f"{t['text']!r} is {t['size']:.1f} px")
        if t["contrast"] < 4.5:
            problems.append(f"{t['text']!r} has contrast {t['contrast']:.2f}:1")
        if t["cut"]:
            problems.append(f"{t['text']!r} is cut short by its box")
        x0, y0, x1, y1 = t["box"]
        if x0 < -1 or x1 > width + 1 or y0 < -1 or y1 > height + 1:
            problems.append(f"{t['text']!r} lies outside the {width}×{height} window: {t['box']}")
        if t["chart"] and (
            x0 < t["chart"][0] - 1 or x1 > t["chart"][2] + 1 or y0 < t["chart"][1] - 1 or y1 > t["chart"][3] + 1
        ):
            problems.append(f"{t['text']!r} is cut by its chart's edge")
    in_charts: dict = {}
    for t in seen["texts"]:
        if t["svg"] and t["chart"]:
            in_charts.setdefault(tuple(t["chart"]), []).append(t)
    for texts in in_charts.values():  # titles, notes, labels and ticks of one chart clear of each other
        for i, a in enumerate(texts):
            for b in texts[i + 1 :]:
                if _overlap(a["box"], b["box"], slack=2) and not (a["axis"] and a["axis"] == b["axis"]):
                    problems.append(f"{a['text']!r} and {b['text']!r} overlap in a chart")
    ticks: dict = {}
    for t in seen["texts"]:
        if t["axis"]:
            ticks.setdefault(t["axis"], []).append(t)
    for labels in ticks.values():
        for i, a in enumerate(labels):
            for b in labels[i + 1 :]:
                if _overlap(a["box"], b["box"]):
                    problems.append(f"tick labels {a['text']!r} and {b['text']!r} overlap")
    blocks = page.evaluate(BLOCKS)
    for i, a in enumerate(blocks):
        for b in blocks[i + 1 :]:
            if _overlap(a["box"], b["box"], slack=2):
                problems.append(f"{a['name']!r} and {b['name']!r} overlap")
    return problems


def _screen(page) -> tuple[int, int]:
    m = TITLE.search(page.get_by_text(TITLE).inner_text())
    return int(m.group(1)), int(m.group(3)) if m.group(3) else FUSED


STALE_GONE = """() => !document.querySelector('[data-testid="stMain"] [data-stale="true"]')"""


def _drawn(page, view: int, layer: int) -> None:
    where = "fused output, after layer" if layer == FUSED else f"layer {layer} of "
    page.get_by_text(re.compile(rf"view {view} of \d+ · {where}")).wait_for(timeout=240_000)
    # The step counter is drawn first; the previous screen's charts stay (faded, data-stale) until
    # the new ones replace them, and Present hides the "Running" sign ALL_DRAWN reads.
    page.wait_for_function(STALE_GONE, timeout=240_000, polling=100)
    page.wait_for_function(ALL_DRAWN, arg=1, timeout=240_000, polling=100)


# JS: what the screen shows, apart from the step counter: each chart's traces (with a sum of their
# numbers), shapes and notes, and the view's heading (which names the layer for per-layer views).
FINGERPRINT = """() => {
  const sum = a => a == null ? 0 : typeof a === 'number' ? (isNaN(a) ? 0 : a)
      : a.length !== undefined && typeof a !== 'string' ? Array.prototype.reduce.call(a, (s, v) => s + sum(v), 0) : 0;
  const charts = [...document.querySelectorAll('.js-plotly-plot')].filter(g => g.checkVisibility()).map(g =>
    JSON.stringify([(g._fullData || []).map(d => [d.type, d.name, d.line && d.line.width,
                    Math.round(1e4 * (sum(d.x) + sum(d.y) + sum(d.z)))]),
                    (g._fullLayout.shapes || []).map(s => [s.x0, s.x1, s.y0, s.y1]),
                    (g._fullLayout.annotations || []).map(a => a.text)]));
  const headings = [...document.querySelectorAll('[data-testid="stMain"] strong')].map(b => b.innerText)
    .filter(t => !/^view \\d+ of /.test(t));
  return [...headings, ...charts];
}"""


def test_a_class_from_a_setting_to_the_projector_and_back_from_a_link(server, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    times: dict = {"arrow_new_s": [], "arrow_seen_s": []}
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda err: errors.append(str(err)))

    # The lecturer's setting: the lab without residual, MLP or LayerNorm (it collapses), fusion of
    # layers 4-6, layer 3 of the one-layer tab; then their own sentence, typed in the sidebar.
    setup = {
        "model": "lab",
        "lab_depth": "12",
        "lab_residual": "false",
        "lab_mlp": "false",
        "lab_layernorm": "none",
        "mit": "fusion-mean",
        "fusion_mean_layers": "4-6",
        "section": SECTIONS["layer"],
        "layer": "3",
    }
    page.goto(server + "/?" + urlencode(setup))
    page.wait_for_function(ALL_DRAWN, arg=2, timeout=240_000, polling=100)
    _set_text(page, SENTENCE)
    page.wait_for_function(
        "() => [...document.querySelectorAll('a')].some(a => a.innerText === 'Present this' "
        "&& a.href.includes('Fusion+mixes'))",
        timeout=240_000,
        polling=100,
    )
    page.wait_for_function(ALL_DRAWN, arg=2, timeout=240_000, polling=100)
    # The fused layers moved on the page (the slider, not the sidebar's text box): 4-6 → 3-6, and
    # the page explains the change with its own numbers; Present will carry it.
    page.get_by_text(re.compile(r"Fusion \(fusion-mean of layers 4–6\)")).wait_for(timeout=60_000)
    thumb = page.locator(".st-key-fuse_span-4-6 input").first  # the lower thumb
    thumb.focus()
    thumb.press("ArrowLeft")
    page.get_by_text(
        re.compile(
            r"Fusion \(fusion-mean of layers 3–6\).{1,3}the fused output's mean token cosine "
            r"similarity is \d\.\d{3}"
        )
    ).wait_for(timeout=240_000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('a')].some(a => a.innerText === 'Present this' "
        "&& a.href.includes('fusion_mean_layers=3-6') && a.href.includes('Fusion+mixes'))",
        timeout=240_000,
        polling=100,
    )
    assert (
        page.get_by_label("layers — 'all', one layer 'N' or a range 'A-B' of layer indices 0..L").input_value() == "3-6"
    )
    page.wait_for_function(ALL_DRAWN, arg=2, timeout=240_000, polling=100)
    page.evaluate("document.activeElement?.blur()")
    page.screenshot(path=str(SHOTS / "class-main-1280x720.png"))

    page.get_by_role("link", name=re.compile("Present this")).click()
    page.wait_for_url(re.compile(r"/Present\?"), timeout=60_000)
    _drawn(page, 4, 3)  # the similarity view (the one-layer tab's first) at the main page's layer
    assert _screen(page) == (4, 3)
    page.get_by_text(SENTENCE[:40], exact=False).first.wait_for()
    assert "fusion-mean (layers=3-6)" in page.get_by_text(re.compile("baseline beside")).inner_text()
    page.screenshot(path=str(SHOTS / "class-present-1280x720.png"))

    # Arrow keys: every view, stepping the layer on each; every screen passes the projector check.
    page.evaluate("document.activeElement?.blur()")
    problems = {}
    for size in ({"width": 1280, "height": 720}, {"width": 1024, "height": 768}):
        page.set_viewport_size(size)
        for _ in range(len(VIEWS)):
            view, layer = _screen(page)
            before = page.evaluate(FINGERPRINT)
            t0 = time.perf_counter()
            page.keyboard.press("ArrowRight")  # a new layer: the figure changes on every view
            _drawn(page, view, layer % FUSED + 1)
            page.wait_for_function(
                f"() => JSON.stringify(({FINGERPRINT})()) !== {json.dumps(json.dumps(before))}",
                timeout=60_000,
                polling=50,
            )
            times["arrow_new_s"].append(round(time.perf_counter() - t0, 3))
            t0 = time.perf_counter()
            page.keyboard.press("ArrowLeft")  # back to a screen already shown: from the figure cache
            _drawn(page, view, layer)
            times["arrow_seen_s"].append(round(time.perf_counter() - t0, 3))
            page.wait_for_timeout(300)
            if found := projector_problems(page):
                problems[f"{size['width']}x{size['height']} view {view} ({VIEWS[view - 1].key})"] = found
                page.screenshot(path=str(SHOTS / f"class-problem-{size['width']}-{VIEWS[view - 1].key}.png"))
            page.keyboard.press("ArrowDown")
            _drawn(page, view % len(VIEWS) + 1, layer)
    (SHOTS / "class-timings.json").write_text(json.dumps(times, indent=1))
    assert not problems, json.dumps(problems, indent=1, ensure_ascii=False)

    # The fused output is a position after the last layer: ← from layer 1 wraps to it. Then the
    # copied link in a fresh browser context: the same screen.
    page.set_viewport_size({"width": 1280, "height": 720})
    assert _screen(page) == (4, 3)  # the 12 views went round
    for layer in (2, 1, FUSED):
        page.keyboard.press("ArrowLeft")
        _drawn(page, 4, layer)
    page.get_by_text("Token similarity of the fused output (after layer 12)").wait_for()
    page.wait_for_timeout(500)
    page.screenshot(path=str(SHOTS / "class-present-fused-1280x720.png"))
    copied, shown = page.url, (page.evaluate(FINGERPRINT), page.get_by_text(TITLE).inner_text())
    other = browser.new_context(viewport={"width": 1280, "height": 720})
    again = other.new_page()
    again.goto(copied)
    _drawn(again, 4, FUSED)
    assert (again.evaluate(FINGERPRINT), again.get_by_text(TITLE).inner_text()) == shown
    again.get_by_text(SENTENCE[:40], exact=False).first.wait_for()
    again.screenshot(path=str(SHOTS / "class-copied-1280x720.png"))
    other.close()
    context.close()
    assert not errors, errors


def test_a_nan_link_leaves_no_stack_trace_in_the_server_log(server, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    page.goto(server + "/?neutreno_lambda=NaN")
    page.get_by_text(re.compile(r"neutreno_lambda=NaN is not available here")).wait_for(timeout=240_000)
    page.wait_for_function(ALL_DRAWN, arg=2, timeout=240_000, polling=100)
    page.close()
    log = SERVER_LOG["path"].read_text()
    assert "Traceback" not in log and "Stack (most recent call last)" not in log, log[-3000:]


ODD = {  # settings other than the reference sentence's (issue 22: the class is prepared again from outside)
    "one-word-ablated": ({"text": "Hello", "mit": "heads", "heads_ablate": "2.1,4.11", "layer": "4"}, (1280, 720)),
    "emoji-fused": ({"text": "🎉🎉 party 🎉", "mit": "fusion-mean", "fusion_mean_layers": "2-4"}, (1280, 720)),
    "gemma-fused": (
        {
            "text": "Rain fell on the old stone bridge all night.",
            "model": "gemma-3-270m",
            "mit": "fusion-mean",
            "fusion_mean_layers": "2-4",
        },
        (1024, 768),
    ),
}


@pytest.mark.parametrize("case", list(ODD))
def test_present_passes_the_projector_check_with_other_settings(server, browser, case):
    """Every view of Present passes the projector check with a one-word sentence and two heads
    ablated, emoji (unknown tokens) with a fusion, and Gemma (pre-norm: a final norm beside the
    fused output) at 1024×768; the copied link of the last screen reopens it in a new context."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    query, (width, height) = ODD[case]
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(server + "/Present?" + urlencode(query))
    problems = {}
    for view in range(1, len(VIEWS) + 1):
        page.get_by_text(re.compile(rf"view {view} of \d+ · ")).wait_for(timeout=600_000)
        page.wait_for_function(STALE_GONE, timeout=600_000, polling=100)
        page.wait_for_function(ALL_DRAWN, arg=1, timeout=600_000, polling=100)
        page.wait_for_timeout(300)
        if found := projector_problems(page):
            problems[f"view {view} ({VIEWS[view - 1].key})"] = found
            page.screenshot(path=str(SHOTS / f"class-{case}-problem-{VIEWS[view - 1].key}.png"))
        if view < len(VIEWS):
            page.keyboard.press("ArrowDown")
    page.screenshot(path=str(SHOTS / f"class-{case}-{width}x{height}.png"))
    assert not problems, json.dumps(problems, indent=1, ensure_ascii=False)
    if "heads_ablate" in query:
        assert "heads_ablate=2.1%2C4.11" in page.url or "heads_ablate=2.1,4.11" in page.url
    copied, shown = page.url, (page.evaluate(FINGERPRINT), page.get_by_text(TITLE).inner_text())
    again = browser.new_context(viewport={"width": width, "height": height}).new_page()
    again.goto(copied)
    again.get_by_text(re.compile(rf"view {len(VIEWS)} of \d+ · ")).wait_for(timeout=600_000)
    again.wait_for_function(ALL_DRAWN, arg=1, timeout=600_000, polling=100)
    assert (again.evaluate(FINGERPRINT), again.get_by_text(TITLE).inner_text()) == shown
    again.context.close()
    context.close()
    assert not errors, errors
