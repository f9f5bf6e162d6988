"""Issue 27: every page that analyses goes through one bounded cache, and the server's memory stays
under the README's bound (Deployment) and levels off however many distinct links it is sent.

The RSS tests drive distinct links through a page of a fresh public server with
``bench/loadtest.py``'s protocol client, two at a time, with 107–115-token sentences, and record
the server's RSS after every pair. In the default run (slow): 120 links through the main page and
Present, the two pages whose memory grew, under the bound. Opt in to issue 27's full measure (under
the bound and level), 300 links through each of the five pages that analyse: ``python -m pytest -m soak tests/test_memory.py`` (12
minutes on a quiet 2-core machine, 2026-12-07; ``SMOOTHVIZ_MEMORY_LINKS`` to change the count, ``SMOOTHVIZ_MEMORY_OUT`` a
folder for each page's JSON).
"""

import importlib.util
import json
import os
import statistics
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app"
BOUND_MB = 2048  # README, Deployment: "RSS stays under 2 GB"
FULL_AFTER = 40  # links: by then the analysis cache (32 entries) is full, and memory should be level
SLOPE_MB = 1.5  # MB per link over the rest of the run, least squares: "level". Before the fix the main
# page rose 4 MB per link (2026-12-07) and Present 11 (issue 27); the figure cache,
# filling towards its 128 MB over ~1,000 links, adds about 0.15
pytestmark = pytest.mark.slow


def loadtest():
    spec = importlib.util.spec_from_file_location("loadtest", ROOT / "bench" / "loadtest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rss_over_links(page: str, links: int, out: Path) -> list[tuple[int, float]]:
    """(links so far, server RSS in MB) after every two distinct links to ``page``, on a fresh server."""
    report = loadtest().main(
        [
            "--client",
            "protocol",
            "--sessions",
            "2",
            "--rounds",
            str(max(2, links // 2)),
            "--page",
            page,
            "--words",
            "100",
            "--timeout",
            "600",
            "--out",
            str(out),
        ]
    )
    assert report["errors"] == [] and all(r["errors"] == 0 for r in report["rounds"]), report["errors"]
    curve = [(2, report["server_rss_mb"]["end"])] + [(r["sentences"], r["rss_mb"]) for r in report["rounds"]]
    print(f"{page}: (links, RSS MB) {curve}")  # the curve, for the report
    return curve


def check_bounded(curve: list[tuple[int, float]]) -> None:
    assert max(mb for _, mb in curve) < BOUND_MB, curve


def check_bounded_and_level(curve: list[tuple[int, float]]) -> None:
    check_bounded(curve)
    full = [(n, mb) for n, mb in curve if n >= FULL_AFTER]
    slope = statistics.linear_regression([n for n, _ in full], [mb for _, mb in full]).slope
    assert slope < SLOPE_MB, f"RSS rose {slope:.2f} MB per link after link {FULL_AFTER}: {curve}"


def _out(tmp_path: Path, page: str, links: int) -> Path:
    folder = Path(os.environ.get("SMOOTHVIZ_MEMORY_OUT", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"memory-{page}-{links}.json"


@pytest.mark.parametrize("page", ["main", "Present"])
def test_memory_stays_under_the_bound_over_120_links(page, tmp_path):
    """120 distinct links: under the README's bound. Whether the curve is level is the soak's
    question (300 links): over 120 the figure and projection caches are still filling, and the
    saw-tooth of the sessions freed at each collection makes a slope over so few links noise (on a
    busy machine, 2026-12-07: 3.5 and 5.0 MB per link, peaks 1.69 and 1.60 GB)."""
    check_bounded(rss_over_links(page, 120, _out(tmp_path, page, 120)))


@pytest.mark.soak  # opt in: python -m pytest -m soak tests/test_memory.py
@pytest.mark.parametrize("page", ["main", "Present", "Lesson", "Compare", "Corpus"])
def test_distinct_links_keep_the_server_under_its_memory_bound(page, tmp_path):
    """Issue 27's measure: 300 distinct links (``SMOOTHVIZ_MEMORY_LINKS``) through each page."""
    links = int(os.environ.get("SMOOTHVIZ_MEMORY_LINKS", "300"))
    check_bounded_and_level(rss_over_links(page, links, _out(tmp_path, page, links)))


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
    assert _holds(
        state,
        text=s["text"],
        model=s.get("model", "default"),
        lab=s.get("lab"),
        mitigation=s.get("mitigation") or "none",
        projection="none",
    )


def test_downloads_hold_the_settings_not_the_result():
    """A download's callable lives as long as its session: the Corpus page's hold the lines and
    settings, and build the CSV and Parquet from the cached result when pressed (again if it left)."""
    import io

    import pyarrow.parquet as pq

    state = _state()
    lines = ["The cat sat on the mat.", "Tokens become alike with depth."]
    settings = dict(
        model="default",
        device="cpu",
        lab=None,
        mitigation="none",
        params={},
        head=None,
        symmetrize="sym",
        exclude_special=False,
    )
    rows = state.run_corpus(lines, settings).table.num_rows
    csv = state.corpus_table(lines, settings, "csv").decode().splitlines()
    assert len(csv) == 1 + rows and "cosine_mean" in csv[0]
    assert pq.read_table(io.BytesIO(state.corpus_table(lines, settings, "parquet"))).num_rows == rows
    state.corpora.clear()
    assert len(state.corpus_table(lines, settings, "csv").decode().splitlines()) == 1 + rows  # computed again


KEPT = "A sentence whose analysis only the shared cache may keep, once its page has run."


@pytest.mark.parametrize(
    "page, query",
    [
        ("SmoothViz.py", dict(mit="neutreno")),
        ("SmoothViz.py", dict(mit="neutreno", section="One layer, side by side")),  # a fragment
        ("SmoothViz.py", dict(mit="heads", section="Head × layer atlas")),  # another
        ("SmoothViz.py", dict(mit="fusion-mean")),  # the fused layers' slider and its callback
        ("pages/5_Present.py", dict(mit="neutreno")),
        ("pages/3_Compare.py", {}),
        ("pages/2_Corpus.py", {}),
        ("pages/4_Lesson.py", {}),
    ],
)
def test_a_session_keeps_settings_never_an_analysis(page, query):
    """Issue 27's remaining growth: a session Streamlit keeps (while connected, and 30 s after) held
    its last run's namespace through the widgets' callbacks and format functions, and with it the
    page's analysis — 100 sessions kept and 102 live analyses for the cache's 32 at 2.5 new links a
    second. Once the shared caches let go, nothing of the page's run may hold an analysis (a
    fragment fetches its own from the cache by its settings), and the page still draws."""
    import gc
    import weakref

    from smoothviz.corpora.run import CorpusResult
    from smoothviz.pipeline.analysis import Analysis

    result = CorpusResult if page.endswith("Corpus.py") else Analysis
    state = _state()
    for cache in state.caches().values():  # this page computes its own results (the Lesson's are fixed steps)
        cache.clear()
    gc.collect()
    before = {id(o): weakref.ref(o) for o in gc.get_objects() if isinstance(o, result)}  # held by other tests
    app = AppTest.from_file(str(APP / page), default_timeout=600)
    app.query_params.update(text=KEPT, **query)
    app.run()
    if page.endswith("Lesson.py"):
        from smoothviz.words.lesson import STEPS

        app.radio(key="lesson_0").set_value(STEPS[0].options[0]).run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert app.get("plotly_chart")
    gc.collect()
    new = [
        weakref.ref(o)
        for o in gc.get_objects()
        if isinstance(o, result) and not (id(o) in before and before[id(o)]() is o)
    ]
    assert new  # the page's results, held by the cache now (the check can fail)
    for cache in state.caches().values():
        cache.clear()
    gc.collect()
    assert [ref() for ref in new] == [None] * len(new)
    if "section" in query:  # the fragment reruns on its own, its analysis fetched again
        app.run()
        assert not app.exception and not app.error and app.get("plotly_chart")


@pytest.mark.parametrize(
    "page", ["SmoothViz.py", "pages/2_Corpus.py", "pages/3_Compare.py", "pages/4_Lesson.py", "pages/5_Present.py"]
)
def test_every_page_enters_through_one_way_and_shows_an_unexpected_failure_as_one_line(page, monkeypatch):
    """Issue 24: an unexpected error on Lesson, Present, Compare or Corpus showed a traceback; now
    every page's analysis goes through state (the same queue and messages) and says what failed."""
    import smoothviz

    state = _state()

    def boom(*args, **kwargs):
        raise RuntimeError("a fault the page did not expect")

    monkeypatch.setattr(state.analyses, "_compute", boom)
    monkeypatch.setattr(smoothviz, "corpus", boom)
    state.analyses.ledger.clear()  # the Lesson's steps are fixed settings: an earlier test may have cached them
    app = AppTest.from_file(str(APP / page), default_timeout=600)
    app.query_params.update(text=f"A sentence no cache holds, for {page}.", mit="none")
    app.run()
    if page.endswith("Lesson.py"):  # its analyses run once a student predicts
        from smoothviz.words.lesson import STEPS

        app.radio(key="lesson_0").set_value(STEPS[0].options[0]).run()
    assert not app.exception, page
    errors = [e.value for e in app.error]
    assert any("failed unexpectedly" in e and "RuntimeError" in e and "server log" in e for e in errors), errors


def test_big_blocks_are_mapped_on_their_own_so_freeing_them_returns_them():
    """The cause of issue 27's growth: glibc raises its mapping threshold to the size of every mapped
    block freed (up to 32 MB), so after the first analysis its arrays came from the heap, whose
    holes are never returned. The app's setting (state.memory) fixes the threshold: a 4 MB block
    is mapped on its own even after an 8 MB one was freed. Each in a fresh process: mallopt is
    process-wide, and a block freed into the heap would serve the next one."""
    import subprocess

    code = """
import ctypes, json, sys
sys.path.insert(0, "app")
from state import memory
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
def mapped_mb_of_a_4_mb_block():
    libc.free(ctypes.c_void_p(libc.malloc(8 << 20)))  # an 8 MB block freed: glibc's threshold follows
    before = memory._mallinfo()["mmapped_mb"]
    block = libc.malloc(4 << 20)
    mapped = memory._mallinfo()["mmapped_mb"] - before
    libc.free(ctypes.c_void_p(block))
    return mapped
if sys.argv[1] == "tuned":
    memory._tune_malloc(libc)
print(json.dumps(mapped_mb_of_a_4_mb_block()))
"""

    def mapped(how: str) -> float:
        out = subprocess.run([sys.executable, "-c", code, how], capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.splitlines()[-1])

    untuned, tuned = mapped("untuned"), mapped("tuned")
    assert untuned == 0  # glibc's default: from the heap
    assert 4 <= tuned < 4.1  # the app's: a mapping of its own, unmapped when freed
