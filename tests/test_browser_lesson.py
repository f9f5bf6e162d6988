"""The Lesson and Present pages in a real browser: a prediction reveals its measured answer; the
arrow keys step the presentation; screenshots at 1280×720 (and the Present page at 1366×768).

Reuses test_browser's server (``streamlit run app/SmoothViz.py``, its pages included) and
Chromium; screenshots go to $SMOOTHVIZ_SCREENSHOTS (a temporary folder unless set).
"""

import re

import pytest

from test_browser import ALL_DRAWN, SHOTS, browser, server  # noqa: F401 - fixtures, reused

pytestmark = [pytest.mark.browser, pytest.mark.slow]
TITLE = re.compile(r"view (\d+) of (\d+) · layer (\d+) of (\d+)")


def _page(browser, width: int, height: int):
    page = browser.new_page(viewport={"width": width, "height": height})
    errors = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    return page, errors


def test_lesson_reveals_a_measured_answer(server, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page, errors = _page(browser, 1280, 720)
    page.goto(server + "/Lesson")
    page.get_by_text("Predict to reveal the answer.").first.wait_for(timeout=120_000)
    question = page.get_by_role("radiogroup", name="Will cosine similarity at layer 6 go up or down under NeuTRENO?")
    question.get_by_text("up", exact=True).click()
    answer = page.get_by_text(re.compile(r"cosine_mean at layer 6: baseline \d\.\d+, NeuTRENO \(λ = 0\.4\) \d\.\d+"))
    answer.wait_for(timeout=240_000)
    page.get_by_text(re.compile("the answer is (up|down)")).wait_for()
    answer.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    page.screenshot(path=str(SHOTS / "lesson-1280x720.png"))
    page.close()
    assert not errors, errors


def _title(page) -> tuple[int, int]:
    """(view, layer) from the title line between the step buttons."""
    m = TITLE.search(page.get_by_text(TITLE).inner_text())
    return int(m.group(1)), int(m.group(3))


def _visible(page, locator) -> None:
    """``locator`` lies inside the viewport and nothing (the top bar) covers its centre."""
    box = locator.bounding_box()
    size = page.viewport_size
    assert box and box["y"] >= 0 and box["y"] + box["height"] <= size["height"], box
    assert box["x"] >= 0 and box["x"] + box["width"] <= size["width"], box
    on_top = page.evaluate(
        "([x, y]) => document.elementFromPoint(x, y)?.closest('button')?.innerText.trim()",
        [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2],
    )
    assert on_top == locator.inner_text().strip(), on_top


def _fits(page) -> None:
    """The step buttons, the charts and the caption under them are all on screen, uncovered."""
    for label in ("◀ view", "◀ layer", "layer ▶", "view ▶"):
        _visible(page, page.get_by_role("button", name=label, exact=True))
    bottom = page.viewport_size["height"]
    for chart in page.locator('[data-testid="stPlotlyChart"]').all():
        box = chart.bounding_box()
        assert box["y"] >= 0 and box["y"] + box["height"] <= bottom, box
    caption = page.locator('[data-testid="stCaptionContainer"]:not([data-testid="stExpander"] *)').last.bounding_box()
    assert caption["y"] + caption["height"] <= bottom, caption


@pytest.mark.parametrize("width, height", [(1280, 720), (1366, 768)])
def test_present_steps_with_the_arrow_keys(server, browser, width, height):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page, errors = _page(browser, width, height)
    page.goto(server + "/Present?mit=neutreno&neutreno_lambda=0.4")
    page.wait_for_function(ALL_DRAWN, arg=1, timeout=240_000, polling=100)
    page.screenshot(path=str(SHOTS / f"present-{width}x{height}.png"))
    _fits(page)

    view, layer = _title(page)
    assert (view, layer) == (1, 6)
    page.evaluate("document.activeElement?.blur()")  # keys go to the page, not a widget
    page.keyboard.press("ArrowRight")  # layer 6 → 1 (wraps)
    page.get_by_text(re.compile(r"layer 1 of 6")).wait_for()
    page.keyboard.press("ArrowRight")
    page.get_by_text(re.compile(r"layer 2 of 6")).wait_for()
    page.keyboard.press("ArrowLeft")
    page.get_by_text(re.compile(r"layer 1 of 6")).wait_for()
    for expected in (2, 3, 4):  # curves → shi → rollout → similarity
        page.keyboard.press("ArrowDown")
        page.get_by_text(re.compile(rf"view {expected} of ")).wait_for()
    page.keyboard.press("ArrowUp")
    page.get_by_text(re.compile(r"view 3 of ")).wait_for()
    page.keyboard.press("ArrowDown")
    page.get_by_text(re.compile(r"view 4 of ")).wait_for()
    assert _title(page) == (4, 1)
    page.get_by_text("Token similarity at layer 1").wait_for()  # the view's own heading follows
    page.wait_for_function(ALL_DRAWN, arg=2, timeout=120_000, polling=100)
    page.wait_for_timeout(500)
    page.screenshot(path=str(SHOTS / f"present-similarity-{width}x{height}.png"))
    _fits(page)
    page.close()
    assert not errors, errors
