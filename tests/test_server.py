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
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
sys.path.insert(0, str(ROOT / "app"))


def _start_server(log_path: Path, **env) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(ROOT), **env}
    env.pop("SMOOTHVIZ_PUBLIC", None)
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app/SmoothViz.py", "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1"],
                            cwd=ROOT, env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
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


def test_analyses_use_one_thread_each_when_slots_fill_the_cores():
    """Issue 16: two slots × two torch threads on two cores doubled the CPU time of an analysis."""
    import torch
    from threadpoolctl import threadpool_info

    import state
    from smoothviz.settings import SETTINGS
    assert SETTINGS.max_concurrent * SETTINGS.threads <= max(len(os.sched_getaffinity(0)), SETTINGS.max_concurrent)
    assert torch.get_num_threads() == SETTINGS.threads
    assert all(pool["num_threads"] == SETTINGS.threads for pool in threadpool_info() if pool["user_api"] == "blas")
    assert state.SETTINGS is SETTINGS
