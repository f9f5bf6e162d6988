"""The public-demo mode: an allow-list of models, caps, no server paths."""

import pytest

from smoothviz.model.models import ModelError

from state import server as settings


@pytest.fixture
def public(monkeypatch):
    monkeypatch.setenv("SMOOTHVIZ_PUBLIC", "1")
    monkeypatch.delenv("SMOOTHVIZ_MODELS", raising=False)
    return settings.load()


def test_off_by_default(monkeypatch):
    monkeypatch.delenv("SMOOTHVIZ_PUBLIC", raising=False)
    s = settings.load()
    assert not s.public and s.max_tokens is None
    s.check("/etc", None, {"gate": "/etc/passwd"})  # a private server trusts its user


def test_public_mode_allows_only_listed_models(public):
    assert public.public and public.models == ("default", "gemma-3-270m", "lab") and public.max_tokens == 128
    public.check("default")
    for name in ("/etc", "./models/x", "bert-base-uncased", "gpt2"):
        with pytest.raises(ModelError, match="allows only these models: default, gemma-3-270m, lab"):
            public.check(name)


def test_public_mode_caps_the_lab_and_refuses_gate_paths(public):
    public.check("lab", {"depth": "32", "width": "256"})
    with pytest.raises(ModelError, match="depth of at most 32"):
        public.check("lab", {"depth": 64})
    with pytest.raises(ModelError, match="width of at most 256"):
        public.check("lab", {"width": "1024"})
    with pytest.raises(ModelError, match="gate=default"):
        public.check("default", None, {"gate": "/etc/passwd"})


def test_allow_list_and_caps_from_the_environment(monkeypatch):
    monkeypatch.setenv("SMOOTHVIZ_PUBLIC", "yes")
    monkeypatch.setenv("SMOOTHVIZ_MODELS", "default, distilbert-base-uncased")
    monkeypatch.setenv("SMOOTHVIZ_MAX_TOKENS", "64")
    s = settings.load()
    assert s.models == ("default", "distilbert-base-uncased") and s.max_tokens == 64
    with pytest.raises(ModelError):
        s.check("lab")


PAGE_CHECK = r"""
import json, sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file("app/SmoothViz.py", default_timeout=600)
at.query_params.update({"text": "word " * 300, "mit": "none"})
at.run()
print(json.dumps({"models": list(at.selectbox(key="model").options),
                  "errors": [e.value for e in at.error], "exceptions": [e.value for e in at.exception],
                  "notes": [i.value for i in at.info], "captions": [c.value for c in at.caption]}))
"""


@pytest.mark.slow
def test_public_page_offers_only_the_allow_list_and_caps_tokens():
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "SMOOTHVIZ_PUBLIC": "1", "SMOOTHVIZ_MAX_TOKENS": "64"}
    out = subprocess.run(
        [sys.executable, "-c", PAGE_CHECK], cwd=root, env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    page = json.loads(out.stdout.strip().splitlines()[-1])
    assert page["models"] == ["default", "gemma-3-270m", "lab"]
    assert not page["errors"] and not page["exceptions"]
    assert any("truncated to 64 tokens" in n for n in page["notes"])
    assert any("64 tokens analysed" in c for c in page["captions"])


def test_public_mode_caps_characters(public, monkeypatch):
    assert public.max_chars == 20_000
    monkeypatch.setenv("SMOOTHVIZ_MAX_CHARS", "5000")
    assert settings.load().max_chars == 5000
    monkeypatch.delenv("SMOOTHVIZ_PUBLIC")
    assert settings.load().max_chars == 5000
    monkeypatch.delenv("SMOOTHVIZ_MAX_CHARS")
    assert settings.load().max_chars is None  # the library's own default


def test_threads_per_analysis_fill_the_cores_without_oversubscribing(monkeypatch):
    import os

    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv("SMOOTHVIZ_THREADS", raising=False)
    monkeypatch.delenv("SMOOTHVIZ_MAX_CONCURRENT", raising=False)
    s = settings.load()
    assert s.max_concurrent == cores and s.threads == 1
    monkeypatch.setenv("SMOOTHVIZ_MAX_CONCURRENT", "1")
    assert settings.load().threads == cores
    monkeypatch.setenv("SMOOTHVIZ_THREADS", "3")
    assert settings.load().threads == 3


def test_the_compute_queue_serves_in_arrival_order_and_says_how_many_are_ahead():
    """One slot, five callers arriving in turn: served first come, first served; each waiting
    caller is told how many are ahead of it, a count that only falls; a nested turn (the page's
    wait, then analyze's own) holds one slot; a caller that gives up while waiting frees its place."""
    import threading
    import time

    queue = settings.FairQueue(1)
    order, told = [], {}

    def caller(i):
        with queue.turn(on_wait=lambda ahead: told.setdefault(i, []).append(ahead), poll=0.02):
            with queue.turn():  # re-entrant: would deadlock if it took a second slot
                order.append(i)
                time.sleep(0.3)

    threads = []
    for i in range(5):
        threads.append(threading.Thread(target=caller, args=(i,)))
        threads[-1].start()
        time.sleep(0.02)  # arrive in this order
    assert queue.waiting() >= 1
    for t in threads:
        t.join(10)
    assert order == [0, 1, 2, 3, 4]
    assert 0 not in told and told[4][0] == 4 and told[4][-1] == 1
    assert all(a >= b for seen in told.values() for a, b in zip(seen, seen[1:]))
    assert queue.waiting() == 0

    class GaveUp(Exception):
        pass

    def give_up(ahead):
        raise GaveUp

    def leaver(out):
        try:
            with queue.turn(on_wait=give_up, poll=0.01):
                out.append("served")
        except GaveUp:
            out.append("gave up")

    out = []
    with queue.turn():  # this thread holds the only slot
        t = threading.Thread(target=leaver, args=(out,))
        t.start()
        t.join(10)
        assert out == ["gave up"] and queue.waiting() == 0  # the one who left is no longer in the line


def test_the_library_takes_a_servers_turn_only_when_the_server_hands_it_one():
    """Issue 24: analyze() queued on a throttle read from the environment at import; now the app
    hands its fair queue to smoothviz.throttle, and the library alone runs at once."""
    from contextlib import contextmanager

    import smoothviz
    from smoothviz import throttle

    entered = []

    @contextmanager
    def turn():
        entered.append("in")
        yield
        entered.append("out")

    throttle.set_throttle(turn)
    try:
        smoothviz.analyze("A short sentence for the server's turn.", device="cpu")
        assert entered == ["in", "out"]
    finally:
        throttle.set_throttle(None)
    smoothviz.analyze("Another short sentence, with no server.", device="cpu")
    assert entered == ["in", "out"]


@pytest.mark.slow
def test_importing_the_app_state_changes_nothing_until_setup():
    """Issue 24: importing app/state.py patched ast.parse process-wide and set environment
    variables; now only state.setup(), which every page calls first, does."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    code = """
import ast, json, os, sys
sys.path.insert(0, "app")
parse = ast.parse
import state
from smoothviz import throttle
seen = lambda: {"parse": ast.parse is parse, "numba": "NUMBA_CACHE_DIR" in os.environ,
                "turn": type(throttle.slot()).__name__}
before = seen()
state.setup()
print(json.dumps([before, seen()]))
"""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    before, after = json.loads(out.stdout.splitlines()[-1])
    assert before == {"parse": True, "numba": False, "turn": "nullcontext"}
    assert after["numba"] and after["turn"] != "nullcontext"
    assert after["parse"] is (sys.version_info >= (3, 12))  # the lock is for CPython gh-106905, before 3.12
