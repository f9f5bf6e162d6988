"""The server process itself (issue 16): a clean, quick stop in the middle of an analysis, cores
used without oversubscription, and the UMAP warm-up kept out of the way of page runs.

The stop test starts ``streamlit run app/SmoothViz.py`` and drives Debian's Chromium through
Playwright, as tests/test_browser.py does.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
sys.path.insert(0, str(ROOT / "app"))


def _start_server(log_path: Path, **env) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": str(ROOT),
        **env,
    }
    env.pop("SMOOTHVIZ_PUBLIC", None)
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
        ],
        cwd=ROOT,
        env=env,
        stdout=open(log_path, "w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                return proc, url
        except OSError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail(f"streamlit did not start: {log_path.read_text()[-2000:]}")
        time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.browser
def test_sigterm_during_a_lab_analysis_stops_cleanly(tmp_path):
    """Issue 16: SIGTERM while a deep lab ran in torch aborted the process ("terminate called
    without an active exception", exit −6 / 134 in Docker). How long the stop takes is a measurement
    (Docker's grace period is 10 s), not an assertion: a busy machine stretches it."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "chromium is not on PATH: the README's test command installs it (apt-get install chromium)"

    log = tmp_path / "server.log"
    proc, url = _start_server(log)
    query = urllib.parse.urlencode(
        {
            "model": "lab",
            "lab_depth": "64",
            "lab_width": "1024",
            "mit": "none",
            "text": "Every token of a long text becomes alike. " * 80,
        }
    )
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page()
            page.goto(f"{url}/?{query}")
            page.get_by_text("Loading the model and analysing the sentence").wait_for(timeout=120_000)
            time.sleep(8)  # well inside the lab's forward pass and per-head spectra (minutes in all)
            assert not page.query_selector('[data-testid="stPlotlyChart"]'), "the analysis should still run"
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=30)
            finally:
                browser.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    output = log.read_text()
    assert "terminate called" not in output, output[-2000:]
    assert code in (0, -signal.SIGTERM), (code, output[-2000:])


def test_the_umap_warm_up_thread_runs_at_low_priority(monkeypatch):
    """Issue 16: the warm-up's 30–80 s of compiling competed with the first visitors."""
    from smoothviz.science import projection

    import state

    seen = {}

    def fake_warm_up():
        tid = threading.get_native_id()
        seen["thread"] = os.getpriority(os.PRIO_PROCESS, tid)
        seen["stat"] = int(Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()[16])

    monkeypatch.setattr(projection, "warm_up", fake_warm_up)
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    state.warm._start_warm_up().join(timeout=60)
    assert seen["thread"] == seen["stat"] == max(state.warm.WARM_UP_NICE, before)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before  # this thread only


@pytest.mark.slow
def test_analyses_use_one_thread_each_when_slots_fill_the_cores():
    """Issue 16: two slots × two torch threads on two cores doubled the CPU time of an analysis.
    In a fresh process, as a page's first call finds it: other tests in this process set torch's
    thread count after the app's one-time set-up (issue 24: no order dependence)."""
    check = """
import os, threading, torch
from threadpoolctl import threadpool_info
import state
from state.server import SETTINGS
state.setup()  # what every page does first
assert SETTINGS.max_concurrent * SETTINGS.threads <= max(len(os.sched_getaffinity(0)), SETTINGS.max_concurrent)
seen = []  # page runs start new threads; torch gives a new thread the process's setting
worker = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
worker.start(); worker.join()
assert seen == [SETTINGS.threads], seen
assert all(pool["num_threads"] == SETTINGS.threads for pool in threadpool_info() if pool["user_api"] == "blas")
assert state.SETTINGS is SETTINGS
print("ok", SETTINGS.threads)
"""
    app = Path(__file__).resolve().parent.parent / "app"
    p = subprocess.run(
        [sys.executable, "-c", check],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(app)},
    )
    assert p.returncode == 0 and p.stdout.startswith("ok"), p.stderr[-2000:]
