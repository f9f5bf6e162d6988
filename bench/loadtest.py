"""A classroom burst against one server: N real Chromium sessions open N different sentences at once.

The three bursts the README reports (issue 27's targets: 8 Chromium sessions all drawn within 30 s,
40 protocol sessions within 10 s), each 5 times on a quiet machine, each after UMAP's compile:

    python bench/loadtest.py --sessions 8 --settle 120 --out bench/results/loadtest-chromium-8-settled-1.json
    python bench/loadtest.py --sessions 16 --settle 120 --out bench/results/loadtest-chromium-16-settled-1.json
    python bench/loadtest.py --sessions 40 --client protocol --settle 120 \
        --out bench/results/loadtest-protocol-40-settled-1.json

Other uses:

    python bench/loadtest.py --sessions 8 --url http://127.0.0.1:8501 --pid 1234     # a running server
    python bench/loadtest.py --sessions 10 --client protocol --rounds 50                # RSS over 500 sentences
    python bench/loadtest.py --sessions 2 --client protocol --rounds 150 --page Present --words 100
                                                  # RSS over 300 distinct 107-token Present links

Each session is a student's own browser: a Chromium process of its own, started and idle on a
blank page before the burst, then sent to the page with its sentence (the first view is the depth
tab's 3 plotly charts; before the page had tabs it drew 19 at once). With the browsers on the same
machine as the server, their rendering takes most of the CPU. ``--client protocol`` speaks
Streamlit's websocket protocol instead (one ``rerun_script`` message per session, then every
message until ``script_finished``), so the times are the server's: each session's time to its
last chart sent. ``--client playwright`` opens every session as a Playwright page of one shared
Chromium, as the browser tests do: Playwright instruments each page, and the pages share one
browser process, so it costs the machine more than the students' own browsers would.
``--page`` sends the sessions to another page that analyses (Present, Lesson, Compare, Corpus),
each with a link of its own (:func:`link`); ``--words`` makes the sentences longer.

Reports, per burst: time to the first chart and to every chart of the first view (median, max),
errors, the server's CPU seconds per new sentence and its cores in use, the whole machine's busy
and idle CPU seconds and its load average before and after (a figure measured on a busy machine
says so in its JSON), the server's RSS (start, peak, end) and the latency of ``/_stcore/health``
polled every 0.5 s during the burst. Writes JSON to ``bench/results/loadtest-CLIENT-N.json``
(``--out`` to change). Loopback only; every wait is bounded. Needs Chromium on PATH (and
``playwright``, from requirements-dev.txt, for ``--client playwright``).
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
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WORDS = (
    "attention",
    "graph",
    "token",
    "layer",
    "smooth",
    "signal",
    "spectrum",
    "student",
    "vector",
    "mix",
    "average",
    "neighbour",
    "collapse",
    "rank",
    "energy",
    "filter",
    "depth",
    "head",
    "model",
    "value",
)
# JS: how many charts are drawn, whether the script still runs, and whether an error shows.
PROBE = """() => {
  const charts = [...document.querySelectorAll('[data-testid="stPlotlyChart"]')];
  return {drawn: charts.filter(c => c.querySelector('.js-plotly-plot .main-svg')).length, total: charts.length,
          running: !!document.querySelector('[data-testid="stStatusWidget"]')?.textContent.includes('Running'),
          ahead: (document.body.textContent.match(/(\\d+) analys[ie]s ahead of yours/) || [null, null])[1],
          error: [...document.querySelectorAll('[data-testid="stException"], [data-testid="stAlertContentError"]')]
                 .map(e => e.textContent).join(' | ')};
}"""


PAGES = ("main", "Present", "Lesson", "Compare", "Corpus")
CORPORA = ("everyday", "code", "french", "repeated-words", "short-and-long")


def sentence(i: int, words: int = 12) -> str:
    """A different sentence of ``words`` to ``words + 8`` words for session ``i`` (so every session
    misses the cache); ``words=100`` gives 107–115 tokens on the default model."""
    n = words + i % 9
    return f"Student {i} asks: " + " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(n)) + "."


def link(page: str, i: int, words: int = 12) -> dict:
    """The query of session ``i``'s link to ``page``: a new analysis on every page that analyses
    one from the link (the Lesson's are its own steps; the Corpus page's, a shipped corpus with
    a NeuTRENO λ of its own)."""
    if page == "Corpus":
        return {"corpus": CORPORA[i % len(CORPORA)], "mit": "neutreno", "neutreno_lambda": f"{(i + 1) / 1000:.3f}"}
    return {"text": sentence(i, words)}


def _path(page: str) -> str:
    return "" if page == "main" else page


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


class Student:
    """One student's browser: its own Chromium process (as on a student's own machine), open on a
    blank page before the burst. Driven over the DevTools protocol with two commands only,
    ``Page.navigate`` and a ``Runtime.evaluate`` poll every 0.5 s, so the page does what it does
    for a student, nothing more: no protocol domain is enabled (a Playwright page enables several,
    including network events that copy every websocket frame to the driver, and that measured
    about 1 s of extra Chromium CPU per page here)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="smoothviz-student-")
        self.proc = subprocess.Popen(
            [
                shutil.which("chromium"),
                *ARGS,
                "--window-size=1366,768",
                "--no-first-run",
                "--remote-debugging-port=0",
                f"--user-data-dir={self.dir}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.ws, self.calls = None, 0

    async def open(self, timeout: float = 60) -> None:
        """Wait for the browser's DevTools port, then connect to its blank page."""
        import websockets

        active, deadline = Path(self.dir) / "DevToolsActivePort", time.monotonic() + timeout
        while not active.exists() or not active.read_text().strip():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("Chromium did not start")
            await asyncio.sleep(0.1)
        port = active.read_text().split()[0]
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        page = next(t for t in targets if t["type"] == "page")
        self.ws = await websockets.connect(page["webSocketDebuggerUrl"], max_size=2**24, open_timeout=timeout)

    async def navigate(self, url: str) -> None:
        await self.call("Page.navigate", url=url)

    async def call(self, method: str, **params):
        self.calls += 1
        await self.ws.send(json.dumps({"id": self.calls, "method": method, "params": params}))
        while True:  # no domain is enabled, so the only messages are replies
            reply = json.loads(await self.ws.recv())
            if reply.get("id") == self.calls:
                if "error" in reply:
                    raise RuntimeError(reply["error"].get("message", "DevTools error"))
                return reply["result"]

    async def probe(self) -> dict:
        result = await self.call("Runtime.evaluate", expression=f"({PROBE})()", returnByValue=True)
        return result["result"].get("value") or {"drawn": 0, "total": 0, "running": True, "ahead": None, "error": ""}

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class PlaywrightPage:
    """A page of one shared Chromium driven by Playwright (``--client playwright``): Playwright
    instruments every page (network events, its own scripts), which costs the browser more CPU
    than a student's page, and all pages share one browser process. For comparison."""

    def __init__(self, browser):
        self.browser, self.page = browser, None

    async def open(self) -> None:
        self.page = await self.browser.new_page(viewport={"width": 1366, "height": 768})

    async def navigate(self, url: str) -> None:
        await self.page.goto(url)

    async def probe(self) -> dict:
        return await self.page.evaluate(PROBE)

    async def close(self) -> None:
        if self.page is not None:
            await self.page.close()


async def session(
    student, url: str, i: int, timeout: float, min_charts: int, page: str = "main", words: int = 12
) -> dict:
    """Open the page with link ``i``; time the first chart and every chart of the first view."""
    result = {"session": i, "first_chart_s": None, "all_charts_s": None, "error": None, "most_ahead": None}
    start = time.perf_counter()
    try:
        await student.navigate(f"{url}/{_path(page)}?{urllib.parse.urlencode(link(page, i, words))}")
        while time.perf_counter() - start < timeout:
            state = await student.probe()
            elapsed = time.perf_counter() - start
            if state["error"]:
                result["error"] = state["error"][:300]
                break
            if state["ahead"] is not None:  # the page said how many analyses were ahead in the queue
                result["most_ahead"] = max(result["most_ahead"] or 0, int(state["ahead"]))
            if state["drawn"] and result["first_chart_s"] is None:
                result["first_chart_s"] = round(elapsed, 2)
            if (
                state["drawn"] >= min_charts
                and state["drawn"] == state["total"]
                and not state["running"]
                and (min_charts or elapsed > 2)
            ):  # a page without charts: once its script has run
                result["all_charts_s"] = round(elapsed, 2)
                break
            await asyncio.sleep(0.5)
        else:
            result["error"] = f"timeout after {timeout:.0f} s"
    except Exception as err:
        result["error"] = f"{type(err).__name__}: {err}"[:300]
    return result


async def protocol_session(
    url: str, i: int, timeout: float, min_charts: int, page: str = "main", words: int = 12
) -> dict:
    """One session without a browser: ask for ``page`` with link ``i`` over the websocket."""
    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    result = {"session": i, "first_chart_s": None, "all_charts_s": None, "error": None}
    start, charts = time.perf_counter(), 0
    try:
        async with websockets.connect(
            url.replace("http", "ws", 1) + "/_stcore/stream",
            subprotocols=["streamlit"],
            max_size=2**28,
            open_timeout=timeout,
        ) as ws:
            back = BackMsg()
            back.rerun_script.query_string = urllib.parse.urlencode(link(page, i, words))
            back.rerun_script.page_name = _path(page)
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
                elif kind == "script_finished" and msg.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                    if charts >= min_charts:
                        result["all_charts_s"] = round(time.perf_counter() - start, 2)
                    else:
                        result["error"] = result["error"] or f"only {charts} charts"
                    break
    except Exception as err:
        result["error"] = f"{type(err).__name__}: {err}"[:300]
    return result


async def burst(
    url: str,
    sessions,
    timeout: float,
    min_charts: int,
    client: str = "chromium",
    begin=lambda: None,
    end=lambda: None,
    page: str = "main",
    words: int = 12,
) -> list[dict]:
    """Sessions ``sessions`` (sentence numbers) opened at the same moment: over the protocol, each
    in its own Chromium (started and idle on a blank page before the burst begins), or each in a
    Playwright page of one shared Chromium. ``begin`` and ``end`` are called when the sessions
    start and when the last one is done."""
    if client == "protocol":
        return await _timed([protocol_session(url, i, timeout, min_charts, page, words) for i in sessions], begin, end)
    if client == "playwright":
        from playwright.async_api import async_playwright

        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
            pages = [PlaywrightPage(browser) for _ in sessions]
            try:
                await asyncio.gather(*(page.open() for page in pages))
                return await _timed(
                    [session(tab, url, i, timeout, min_charts, page, words) for tab, i in zip(pages, sessions)],
                    begin,
                    end,
                )
            finally:
                await asyncio.gather(*(page.close() for page in pages))
                await browser.close()
    students = [Student() for _ in sessions]
    try:
        await asyncio.gather(*(student.open() for student in students))
        await asyncio.sleep(3)  # the browsers' own start-up work ends before the burst
        return await _timed(
            [session(student, url, i, timeout, min_charts, page, words) for student, i in zip(students, sessions)],
            begin,
            end,
        )
    finally:
        await asyncio.gather(*(student.close() for student in students))


async def _timed(sessions: list, begin, end) -> list[dict]:
    """Run the session coroutines together, between ``begin()`` and ``end()``."""
    begin()
    results = await asyncio.gather(*sessions)
    end()
    return results


def start_server(env: dict, log) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONPATH": str(ROOT),
        "SMOOTHVIZ_TIMINGS": "1",
        **env,
    }
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
        stdout=log,
        stderr=subprocess.STDOUT,
    )
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
    return [
        float(line.split()[2])
        for line in Path(path).read_text().splitlines()
        if line.startswith("smoothviz-timing page ")
    ]


def _machine_cpu() -> tuple[float, float, float]:
    """(busy, idle, stolen) CPU seconds of the whole machine so far, from /proc/stat."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = ticks
    hz = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / hz, (idle + iowait) / hz, steal / hz


def summary(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 2), "max": round(max(values), 2)} if values else {}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--url", help="a running server (default: start one, public mode)")
    ap.add_argument(
        "--client",
        choices=("chromium", "playwright", "protocol"),
        default="chromium",
        help="a Chromium per student; one Chromium with a Playwright page per student; or "
        "Streamlit's websocket protocol without a browser",
    )
    ap.add_argument("--pid", type=int, help="the running server's process id, for its CPU time and RSS")
    ap.add_argument("--timeout", type=float, default=600, help="seconds a session may take")
    ap.add_argument(
        "--min-charts",
        type=int,
        help="charts of the first view (default: the page's, main: the depth tab's 3, Lesson: 0, other pages: 1)",
    )
    ap.add_argument(
        "--page", choices=PAGES, default="main", help="the page the links open (link() says how they differ)"
    )
    ap.add_argument(
        "--words",
        type=int,
        default=12,
        help="words per sentence, plus 0-8 (12: 19-27 tokens; 100: 107-115 tokens, issue 27's memory runs)",
    )
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for a started server")
    ap.add_argument(
        "--settle",
        type=float,
        default=0,
        help="after the first session, wait up to this many seconds for the UMAP warm-up to end "
        "(a started server logs it); 0: the burst meets the warm-up, as in a class's first minute",
    )
    ap.add_argument(
        "--start-at", type=float, default=0, help="Unix time to start the burst at (several replicas' bursts at once)"
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="after the measured burst, more bursts of new sentences, one after another; the "
        "server's RSS after each shows whether its memory levels off",
    )
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if args.min_charts is None:
        args.min_charts = {"main": 3, "Lesson": 0}.get(args.page, 1)
    load_before = os.getloadavg()  # a figure measured on a busy machine says so

    if args.client != "protocol" and not shutil.which("chromium"):
        raise SystemExit("chromium is not on PATH (apt-get install -y chromium), or use --client protocol")
    proc, log = None, tempfile.NamedTemporaryFile("w+", suffix=".log", prefix="smoothviz-loadtest-")
    if args.url:
        url, pid = args.url.rstrip("/"), args.pid
    else:
        env = {"SMOOTHVIZ_PUBLIC": "1", **dict(kv.split("=", 1) for kv in args.env)}
        proc, url = start_server(env, log)
        pid = proc.pid
    try:
        warm = asyncio.run(
            burst(url, [10_000], args.timeout, args.min_charts, args.client, page=args.page, words=args.words)
        )[0]  # loads the model
        deadline = time.monotonic() + args.settle
        while time.monotonic() < deadline and "smoothviz-timing umap-warm-up" not in Path(log.name).read_text():
            time.sleep(1)
        settled = round(args.settle - max(0.0, deadline - time.monotonic()), 1)
        time.sleep(max(0.0, args.start_at - time.time()))
        seen = len(_page_times(log.name))
        monitor = Monitor(url, pid)
        at = {}

        def begin():  # the sessions start now: so do the counters
            at.update(
                cpu=_proc_stat(pid) if pid else (None, None),
                machine=_machine_cpu(),
                start=time.perf_counter(),
                load=os.getloadavg(),
            )
            monitor.start()

        def end():
            at.update(
                wall=time.perf_counter() - at["start"],
                cpu1=_proc_stat(pid) if pid else (None, None),
                machine1=_machine_cpu(),
                load1=os.getloadavg(),
            )
            monitor.stopped.set()

        results = asyncio.run(
            burst(
                url, range(args.sessions), args.timeout, args.min_charts, args.client, begin, end, args.page, args.words
            )
        )
        monitor.join()
        wall, (cpu0, rss0), (cpu1, rss1) = at["wall"], at["cpu"], at["cpu1"]
        busy, idle, stolen = (round(b - a, 1) for a, b in zip(at["machine"], at["machine1"]))
        rounds = []
        for r in range(1, args.rounds):
            more = asyncio.run(
                burst(
                    url,
                    range(r * args.sessions, (r + 1) * args.sessions),
                    args.timeout,
                    args.min_charts,
                    args.client,
                    page=args.page,
                    words=args.words,
                )
            )
            rounds.append(
                {
                    "sentences": (r + 1) * args.sessions,
                    "errors": sum(m["error"] is not None for m in more),
                    "rss_mb": round(_proc_stat(pid)[1]) if pid else None,
                    "load_1min": round(os.getloadavg()[0], 2),
                }
            )
            print(json.dumps(rounds[-1]), flush=True)
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
        "sessions": args.sessions,
        "client": args.client,
        "page": args.page,
        "words": args.words,
        "cores": len(os.sched_getaffinity(0)),
        "url": url,
        # the machine's load average (1, 5, 15 min) when the script started, and at the burst's start
        # and end: other work on the machine shows here, and a figure taken under it is no figure
        "machine_load": {
            name: [round(v, 2) for v in load]
            for name, load in (("at_start", load_before), ("burst_start", at["load"]), ("burst_end", at["load1"]))
        },
        "first_session_s": warm["all_charts_s"],
        "settled_s": settled,
        "burst_started": round(time.time() - wall, 1),
        "burst_wall_s": round(wall, 1),
        "first_chart_s": summary([r["first_chart_s"] for r in ok if r["first_chart_s"] is not None]),
        "all_charts_s": summary([r["all_charts_s"] for r in ok]),
        "errors": [r for r in results if r["error"] is not None],
        "sessions_shown_their_place_in_the_queue": sum(r.get("most_ahead") is not None for r in results),
        "health_s": {**summary(monitor.health), "failures": monitor.health_failures},
        "server_page_run_s": summary(page_s),  # the server's own wall time per page run (a started server)
        # the whole machine during the burst: busy is the server plus the browsers (with --client
        # chromium); idle cores mean something waited; stolen is time the hypervisor took
        "machine_cpu_s": {"busy": busy, "idle": idle, "stolen": stolen},
    }
    if pid:
        report.update(
            server_cpu_s_per_sentence=round((cpu1 - cpu0) / args.sessions, 2),
            server_cores_used=round((cpu1 - cpu0) / wall, 2),
            server_rss_mb={"start": round(rss0), "peak": round(max(monitor.rss + [rss1])), "end": round(rss1)},
        )
    if rounds:
        report["rounds"] = rounds
    report["per_session"] = results
    out = args.out or ROOT / "bench" / "results" / f"loadtest-{args.client}-{args.sessions}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "per_session"}, indent=1))
    return report


if __name__ == "__main__":
    main()
