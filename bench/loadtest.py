"""A classroom burst against one server: N real Chromium sessions open N different sentences at once.

    python bench/loadtest.py --sessions 8                 # starts a public server on a free port
    python bench/loadtest.py --sessions 8 --url http://127.0.0.1:8501 --pid 1234
    python bench/loadtest.py --sessions 40 --client protocol   # no browsers: the server's side alone

With browsers on the same machine as the server, their rendering takes much of the CPU (the
first view is the depth tab's 3 plotly charts; before the page had tabs it drew 19 at once); ``--client protocol`` speaks Streamlit's websocket protocol instead (one
``rerun_script`` message per session, then every message until ``script_finished``), so the
times are the server's: each session's time to its last chart sent.

Reports, per burst: time to the first chart and to every chart of the first view (median, max),
errors, the server's CPU seconds per new sentence and its cores in use, its RSS (start, peak,
end) and the latency of ``/_stcore/health`` polled every 0.5 s during the burst. Writes JSON to
``bench/results/loadtest-N.json`` (``--out`` to change). Loopback only; every wait is bounded.
Needs ``playwright`` (requirements-dev.txt) and Chromium on PATH.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
WORDS = ("attention", "graph", "token", "layer", "smooth", "signal", "spectrum", "student", "vector", "mix",
         "average", "neighbour", "collapse", "rank", "energy", "filter", "depth", "head", "model", "value")
# JS: how many charts are drawn, whether the script still runs, and whether an error shows.
PROBE = """() => {
  const charts = [...document.querySelectorAll('[data-testid="stPlotlyChart"]')];
  return {drawn: charts.filter(c => c.querySelector('.js-plotly-plot .main-svg')).length, total: charts.length,
          running: !!document.querySelector('[data-testid="stStatusWidget"]')?.innerText.includes('Running'),
          ahead: (document.body.innerText.match(/(\\d+) analys[ie]s ahead of yours/) || [null, null])[1],
          error: [...document.querySelectorAll('[data-testid="stException"], [data-testid="stAlertContentError"]')]
                 .map(e => e.innerText).join(' | ')};
}"""


def sentence(i: int) -> str:
    """A different sentence of 12–20 words for session ``i`` (so every session misses the cache)."""
    n = 12 + i % 9
    return f"Student {i} asks: " + " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(n)) + "."


def _proc_stat(pid: int) -> tuple[float, float]:
    """(CPU seconds used so far, RSS in MB) of process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return cpu, rss


class Monitor(threading.Thread):
    """Polls the health endpoint and the server's RSS every 0.5 s until stopped."""

    def __init__(self, url: str, pid: int | None):
        super().__init__(daemon=True)
        self.url, self.pid, self.stopped = url, pid, threading.Event()
        self.health: list[float] = []
        self.health_failures = 0
        self.rss: list[float] = []

    def run(self):
        while not self.stopped.is_set():
            start = time.perf_counter()
            try:
                urllib.request.urlopen(self.url + "/_stcore/health", timeout=30).read()
                self.health.append(time.perf_counter() - start)
            except OSError:
                self.health_failures += 1
            if self.pid:
                self.rss.append(_proc_stat(self.pid)[1])
            self.stopped.wait(max(0.0, 0.5 - (time.perf_counter() - start)))


async def session(browser, url: str, i: int, timeout: float, min_charts: int) -> dict:
    """Open the page with sentence ``i``; time the first chart and every chart of the first view."""
    page = await browser.new_page(viewport={"width": 1366, "height": 768})
    result = {"session": i, "first_chart_s": None, "all_charts_s": None, "error": None, "most_ahead": None}
    start = time.perf_counter()
    try:
        await page.goto(f"{url}/?{urllib.parse.urlencode({'text': sentence(i)})}", timeout=timeout * 1000)
        while time.perf_counter() - start < timeout:
            state = await page.evaluate(PROBE)
            elapsed = time.perf_counter() - start
            if state["error"]:
                result["error"] = state["error"][:300]
                break
            if state["ahead"] is not None:  # the page said how many analyses were ahead in the queue
                result["most_ahead"] = max(result["most_ahead"] or 0, int(state["ahead"]))
            if state["drawn"] and result["first_chart_s"] is None:
                result["first_chart_s"] = round(elapsed, 2)
            if state["drawn"] >= min_charts and state["drawn"] == state["total"] and not state["running"]:
                result["all_charts_s"] = round(elapsed, 2)
                break
            await asyncio.sleep(0.2)
        else:
            result["error"] = f"timeout after {timeout:.0f} s"
    except Exception as err:  # noqa: BLE001 - a failed session is a result, not a crash
        result["error"] = f"{type(err).__name__}: {err}"[:300]
    finally:
        await page.close()
    return result


async def protocol_session(url: str, i: int, timeout: float, min_charts: int) -> dict:
    """One session without a browser: ask for the page with sentence ``i`` over the websocket."""
    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    result = {"session": i, "first_chart_s": None, "all_charts_s": None, "error": None}
    start, charts = time.perf_counter(), 0
    try:
        async with websockets.connect(url.replace("http", "ws", 1) + "/_stcore/stream", subprotocols=["streamlit"],
                                      max_size=2**28, open_timeout=timeout) as ws:
            back = BackMsg()
            back.rerun_script.query_string = urllib.parse.urlencode({"text": sentence(i)})
            await ws.send(back.SerializeToString())
            while True:
                left = timeout - (time.perf_counter() - start)
                msg = ForwardMsg()
                msg.ParseFromString(await asyncio.wait_for(ws.recv(), max(left, 0.001)))
                kind = msg.WhichOneof("type")
                if kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                    element = msg.delta.new_element.WhichOneof("type")
                    if element == "plotly_chart":
                        charts += 1
                        if result["first_chart_s"] is None:
                            result["first_chart_s"] = round(time.perf_counter() - start, 2)
                    elif element == "exception" or (element == "alert" and msg.delta.new_element.alert.format == 1):
                        result["error"] = element
                elif kind == "script_finished" and charts:
                    if charts >= min_charts:
                        result["all_charts_s"] = round(time.perf_counter() - start, 2)
                    else:
                        result["error"] = result["error"] or f"only {charts} charts"
                    break
    except Exception as err:  # noqa: BLE001 - a failed session is a result, not a crash
        result["error"] = f"{type(err).__name__}: {err}"[:300]
    return result


async def burst(url: str, sessions, timeout: float, min_charts: int, client: str = "chromium") -> list[dict]:
    """Sessions ``sessions`` (sentence numbers) opened at the same moment (in one browser)."""
    if client == "protocol":
        return await asyncio.gather(*(protocol_session(url, i, timeout, min_charts) for i in sessions))
    from playwright.async_api import async_playwright
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
        try:
            return await asyncio.gather(*(session(browser, url, i, timeout, min_charts) for i in sessions))
        finally:
            await browser.close()


def start_server(env: dict, log) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(ROOT),
           "SMOOTHVIZ_TIMINGS": "1", **env}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app/SmoothViz.py", "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=2)
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the server did not start")


def _page_times(path: str) -> list[float]:
    """The server's ``smoothviz-timing page MS ms`` lines (``SMOOTHVIZ_TIMINGS=1``), in ms."""
    return [float(line.split()[2]) for line in Path(path).read_text().splitlines()
            if line.startswith("smoothviz-timing page ")]


def summary(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 2), "max": round(max(values), 2)} if values else {}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--url", help="a running server (default: start one, public mode)")
    ap.add_argument("--client", choices=("chromium", "protocol"), default="chromium",
                    help="real browsers, or Streamlit's websocket protocol without a browser")
    ap.add_argument("--pid", type=int, help="the running server's process id, for its CPU time and RSS")
    ap.add_argument("--timeout", type=float, default=600, help="seconds a session may take")
    ap.add_argument("--min-charts", type=int, default=3, help="charts of the first view (the depth tab's 3)")
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for a started server")
    ap.add_argument("--settle", type=float, default=0,
                    help="after the first session, wait up to this many seconds for the UMAP warm-up to end "
                         "(a started server logs it); 0: the burst meets the warm-up, as in a class's first minute")
    ap.add_argument("--start-at", type=float, default=0,
                    help="Unix time to start the burst at (several replicas' bursts at once)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)

    proc, log = None, tempfile.NamedTemporaryFile("w+", suffix=".log", prefix="smoothviz-loadtest-")
    if args.url:
        url, pid = args.url.rstrip("/"), args.pid
    else:
        env = {"SMOOTHVIZ_PUBLIC": "1", **dict(kv.split("=", 1) for kv in args.env)}
        proc, url = start_server(env, log)
        pid = proc.pid
    try:
        warm = asyncio.run(burst(url, [10_000], args.timeout, args.min_charts, args.client))[0]  # loads the model
        deadline = time.monotonic() + args.settle
        while time.monotonic() < deadline and "smoothviz-timing umap-warm-up" not in Path(log.name).read_text():
            time.sleep(1)
        settled = round(args.settle - max(0.0, deadline - time.monotonic()), 1)
        time.sleep(max(0.0, args.start_at - time.time()))
        seen = len(_page_times(log.name))
        monitor = Monitor(url, pid)
        cpu0, rss0 = _proc_stat(pid) if pid else (None, None)
        monitor.start()
        start = time.perf_counter()
        results = asyncio.run(burst(url, range(args.sessions), args.timeout, args.min_charts, args.client))
        wall = time.perf_counter() - start
        monitor.stopped.set()
        monitor.join()
        cpu1, rss1 = _proc_stat(pid) if pid else (None, None)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

    ok = [r for r in results if r["error"] is None]
    page_s = [ms / 1000 for ms in _page_times(log.name)[seen:]]
    report = {
        "sessions": args.sessions, "client": args.client, "cores": len(os.sched_getaffinity(0)), "url": url,
        "first_session_s": warm["all_charts_s"], "settled_s": settled, "burst_started": round(time.time() - wall, 1),
        "burst_wall_s": round(wall, 1),
        "first_chart_s": summary([r["first_chart_s"] for r in ok if r["first_chart_s"] is not None]),
        "all_charts_s": summary([r["all_charts_s"] for r in ok]),
        "errors": [r for r in results if r["error"] is not None],
        "sessions_shown_their_place_in_the_queue": sum(r.get("most_ahead") is not None for r in results),
        "health_s": {**summary(monitor.health), "failures": monitor.health_failures},
        "server_page_run_s": summary(page_s),  # the server's own wall time per page run (a started server)
    }
    if pid:
        report.update(server_cpu_s_per_sentence=round((cpu1 - cpu0) / args.sessions, 2),
                      server_cores_used=round((cpu1 - cpu0) / wall, 2),
                      server_rss_mb={"start": round(rss0), "peak": round(max(monitor.rss + [rss1])), "end": round(rss1)})
    report["per_session"] = results
    out = args.out or ROOT / "bench" / "results" / f"loadtest-{args.client}-{args.sessions}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "per_session"}, indent=1))
    return report


if __name__ == "__main__":
    main()
