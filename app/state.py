"""The one module that owns the app's caches; every page enters through :func:`analysis_or_error`.

Models live in the library's own thread-safe LRU (``smoothviz.handles``), shared by every session.
Everything computed from them is kept in :class:`Bounded` caches shared by every session,
bounded by entries and by bytes and counted: analyses (:data:`ledger`), projections, animations,
corpus results and built figures. An analysis is immutable (its arrays refuse writes), so every
session reads the same object, never a pickled copy. Nothing else may hold a result past its
page run: a download's callable is a ``functools.partial`` of a function here with the settings,
never a closure over the page (Streamlit keeps those as long as it keeps the session). So the
server's memory levels off however many sentences and pages it sees (README, Deployment).
"""
from __future__ import annotations

import ast
import atexit
import dataclasses
import hashlib
import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path

# Process-wide set-up belongs to the app's entry point, before the libraries read it: numba
# (UMAP) caches compiled code beside its sources unless told otherwise, and a public server writes
# only under the temporary directory, downloads of allow-listed hub models included.
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(tempfile.gettempdir(), "smoothviz-numba"))
if os.environ.get("SMOOTHVIZ_PUBLIC", "").strip().lower() in ("1", "true", "yes", "on"):
    os.environ.setdefault("HF_HOME", os.path.join(tempfile.gettempdir(), "smoothviz-hf"))

import numpy as np  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
import streamlit as st  # noqa: E402

import smoothviz
from smoothviz import data, projection
from smoothviz.handles import get_handle
from smoothviz.models import quiet_hub_logging
from smoothviz.settings import SETTINGS, compute_slots

import images  # noqa: E402  (app/images.py: the example pictures and uploads)
from markup import md  # noqa: E402

quiet_hub_logging()

log = logging.getLogger("smoothviz.app")
TIMINGS = os.environ.get("SMOOTHVIZ_TIMINGS") == "1"  # one stderr line per page run, fragment run, warm-up


def log_time(name: str, start: float) -> None:
    """With ``SMOOTHVIZ_TIMINGS=1``: ``smoothviz-timing NAME MS ms`` on stderr, the server's own time."""
    if TIMINGS:
        print(f"smoothviz-timing {name} {1000 * (time.perf_counter() - start):.1f} ms", file=sys.stderr, flush=True)


def timed(name: str, fn):
    """``fn`` logging its server time under ``name`` (``SMOOTHVIZ_TIMINGS=1``)."""
    def run(*args):
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            log_time(name, start)
    return run


def _serialise_ast_parse() -> None:
    """Make ``ast.parse`` one-at-a-time in this process.

    CPython before 3.12 keeps ast.parse's recursion counter in interpreter-wide state, so two
    threads parsing at once can fail with "SystemError: AST constructor recursion depth mismatch"
    (CPython gh-106905). Here they do: Streamlit parses each page script, while numba, compiling
    UMAP in the warm-up thread, parses array expressions. A lock around the call removes the race.
    """
    if getattr(ast.parse, "_smoothviz_locked", False):
        return
    original, lock = ast.parse, threading.RLock()

    def parse(*args, **kwargs):
        with lock:
            return original(*args, **kwargs)
    parse._smoothviz_locked = True
    ast.parse = parse


_serialise_ast_parse()


def _use_the_cores() -> None:
    """``SMOOTHVIZ_THREADS`` threads per analysis in torch and in numpy's BLAS, for the process.

    With as many analysis slots as cores (the default), each analysis on one thread uses the
    cores without oversubscribing them: torch's two threads per analysis took twice the CPU
    time for the same 27-token analysis, and OpenBLAS's threads spinning on busy cores made
    PCA's 384×384 eigendecomposition take 1–3 s instead of 30 ms.
    """
    import torch
    from threadpoolctl import threadpool_limits
    torch.set_num_threads(SETTINGS.threads)
    threadpool_limits(limits=SETTINGS.threads, user_api="blas")


def _in_a_server() -> bool:
    """True under ``streamlit run`` (not AppTest, whose runtime is a mock, nor a plain import)."""
    from streamlit.runtime import Runtime
    return Runtime.exists() and type(Runtime.instance()) is Runtime


def _exit_at_once_when_threads_are_busy() -> None:
    """At interpreter exit, after Streamlit's own stop (SIGTERM, Ctrl+C): end the process now if
    a daemon thread (an analysis, the UMAP warm-up) is still running.

    Python (3.11 here) finalises with daemon threads still inside torch's C++ code; when they next
    take the GIL they are unwound, which C++ turns into "terminate called without an active
    exception" and exit −6 (134 in Docker). Nothing is left to save at this point: Streamlit
    has stopped, and caches live in memory only.
    """
    busy = [t for t in threading.enumerate() if t is not threading.current_thread() and t.name != GC_THREAD]
    if any(t.daemon and t.is_alive() for t in busy):  # the collector only sleeps or collects: no C++ to unwind
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


GC_SECONDS = float(os.environ.get("SMOOTHVIZ_GC_SECONDS", "30"))
GC_THREAD = "smoothviz-gc"


def _collect_now_and_then() -> threading.Thread:
    """Run Python's full garbage collection every ``GC_SECONDS`` (30) in a daemon thread.

    Each Streamlit session keeps its last page run alive (a widget's callback or format function
    holds the page's globals, the analysis among them), connected or not: a disconnected session
    waits ``server.disconnectedSessionTTL`` for its visitor to come back (30 s in the shipped
    config). A session let go is part of reference cycles, so only a full collection frees it, and
    with Streamlit's collection after every run switched off (``runner.postScriptGC``, for speed)
    and 600,000 long-lived objects, Python's own came too rarely: 300 new 107-token links held
    2.2 GB, growing (issue 27). One collection (about 0.3 s of one core) every 30 s bounds that;
    ``malloc_trim`` then returns the pages freed to the system, so RSS shows what is held.
    """
    import ctypes
    import gc
    try:  # glibc keeps freed memory in its per-thread arenas; give the free pages back to the system
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        trim = None

    def work():
        while True:
            time.sleep(GC_SECONDS)
            gc.collect()
            if trim is not None:
                trim(0)
    thread = threading.Thread(target=work, name=GC_THREAD, daemon=True)
    thread.start()
    return thread


def _set_up_the_process() -> None:
    """Once per process, at the first page run (the app's entry point imports this module)."""
    _use_the_cores()
    if _in_a_server():
        atexit.register(_exit_at_once_when_threads_are_busy)
        _collect_now_and_then()


_set_up_the_process()


CACHE_ENTRIES = int(os.environ.get("SMOOTHVIZ_CACHE_ENTRIES", "32"))
CACHE_BYTES = int(float(os.environ.get("SMOOTHVIZ_CACHE_MB", "2048")) * 2**20)
CACHE_TTL = 3600  # seconds
FIGURE_BYTES = int(float(os.environ.get("SMOOTHVIZ_FIGURE_CACHE_MB", "128")) * 2**20)
PROJECTION_ENTRIES = 4 * CACHE_ENTRIES
PROJECTION_BYTES = 64 * 2**20  # coordinates only: 2·(L+1)·n·2 floats, 1.7 MB at 512 tokens on 12 layers
ANIMATION_ENTRIES = 8  # ≤ 10 MB each (animate refuses more)
ANIMATION_BYTES = 80 * 2**20
CORPUS_ENTRIES = int(os.environ.get("SMOOTHVIZ_CORPUS_ENTRIES", "8"))  # corpus results kept (~1 MB per 100 lines)
CORPUS_BYTES = int(float(os.environ.get("SMOOTHVIZ_CORPUS_CACHE_MB", "256")) * 2**20)


def _key(obj) -> str:
    """A cache key for settings (dicts, lists, strings): their canonical JSON."""
    return obj if isinstance(obj, str) else json.dumps(obj, sort_keys=True, default=str)


class Bounded:
    """The one cache type of the app: results shared by every session, least recently used out
    first, within ``entries()`` entries and ``budget()`` bytes (callables, so a test or the
    environment can change them), each entry older than ``ttl`` seconds forgotten.

    Streamlit's caches bound by entries only, and one 512-token analysis weighs as much as a
    hundred short ones, so each entry here is weighed once, when stored (its ``size`` plus its
    key, which holds the whole text). The newest entry always stays, whatever its size. Two
    sessions asking for the same missing key compute it once: the second waits for the first.
    Counted (:meth:`stats`): hits, misses, evictions, entries and bytes held.
    """

    def __init__(self, entries=lambda: None, budget=lambda: None, ttl: float | None = None):
        self._limits, self._ttl = (entries, budget), ttl
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[object, int]] = OrderedDict()  # key → (value, bytes)
        self._stored: dict[str, float] = {}  # key → when stored (monotonic)
        self._computing: dict[str, threading.Lock] = {}
        self._bytes = 0
        self.hits = self.misses = self.evictions = 0

    def get(self, key):
        """The value stored under ``key`` (settings or a string), or ``None``; a hit makes it the newest."""
        key = _key(key)
        with self._lock:
            self._expire()
            if key not in self._entries:
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return self._entries[key][0]

    def put(self, key, value, size: int):
        """Store ``value`` (``size`` bytes) as the newest entry, then evict the oldest past the bounds."""
        key = _key(key)
        with self._lock:
            if key in self._entries:
                self._bytes -= self._entries[key][1]
            self._entries[key] = (value, size + sys.getsizeof(key))
            self._entries.move_to_end(key)
            self._stored[key] = time.monotonic()
            self._bytes += self._entries[key][1]
            entries, budget = (limit() for limit in self._limits)
            while len(self._entries) > 1 and ((entries is not None and len(self._entries) > entries)
                                              or (budget is not None and self._bytes > budget)):
                self._drop(next(iter(self._entries)))
            return value

    def get_or_compute(self, key, compute, size):
        """``get(key)``, else ``compute()`` stored with ``size(value)`` bytes (computed once at a time)."""
        key = _key(key)
        value = self.get(key)
        if value is not None:
            return value
        with self._lock:
            lock = self._computing.setdefault(key, threading.Lock())
        with lock:  # another session computing the same key: wait for it, then read its result
            try:
                value = self.get(key)
                if value is None:
                    with self._lock:
                        self.misses += 1
                    value = compute()
                    self.put(key, value, size(value))
                return value
            finally:
                with self._lock:
                    self._computing.pop(key, None)

    def _expire(self) -> None:
        if self._ttl is None:
            return
        now = time.monotonic()
        for key in [k for k, at in self._stored.items() if now - at > self._ttl]:
            self._drop(key)

    def _drop(self, key: str) -> None:
        _, size = self._entries.pop(key)
        del self._stored[key]
        self._bytes -= size
        self.evictions += 1

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._stored.clear()
            self._bytes = 0

    def bytes(self) -> int:
        return self._bytes

    def stats(self) -> dict:
        """What the cache holds and how it was used, for the log and the tests."""
        with self._lock:
            return {"entries": len(self._entries), "bytes": self._bytes, "hits": self.hits,
                    "misses": self.misses, "evictions": self.evictions}

    def __contains__(self, key) -> bool:
        with self._lock:
            return _key(key) in self._entries

    def __len__(self) -> int:
        return len(self._entries)


class Ledger(Bounded):
    """The analyses: at most ``CACHE_ENTRIES`` (``SMOOTHVIZ_CACHE_ENTRIES``, 32) and ``CACHE_BYTES``
    bytes (``SMOOTHVIZ_CACHE_MB``, 2048), each kept at most ``CACHE_TTL`` (an hour). An entry's
    size grows with the square of the sentence's length (``Analysis.nbytes``)."""

    def __init__(self):
        super().__init__(lambda: CACHE_ENTRIES, lambda: CACHE_BYTES, ttl=CACHE_TTL)


ledger = Ledger()
_SETTINGS = dict(model="default", device="auto", lab=None, mitigation="neutreno", params=None, head=None,
                 symmetrize="sym", exclude_special=False, projection="pca", image=None)


def run_analysis(*, text: str, **options) -> smoothviz.Analysis:
    """The analysis of ``text`` with ``options`` (see ``_SETTINGS`` for the defaults), from the
    analysis cache (:data:`ledger`) or computed and stored there; no queue, no page output (pages
    use :func:`analysis_or_error`).

    Raises:
        smoothviz.AnalysisError, ModelError, MitigationError: with a message for the user.
    """
    unknown = options.keys() - _SETTINGS.keys()
    if unknown:
        raise TypeError(f"unknown analysis settings: {', '.join(sorted(unknown))}")
    settings = {**_SETTINGS, **options, "text": text}
    return ledger.get_or_compute(settings, lambda: _compute(settings), lambda analysis: analysis.nbytes)


def _compute(s: dict) -> smoothviz.Analysis:
    """:func:`smoothviz.analyze` with the public-demo limits."""
    lab = s["lab"] if s["model"] == "lab" else None
    SETTINGS.check(s["model"], lab, s["params"])  # the public-demo allow-list
    image = images.resolve(s["image"]) if s["image"] else None  # a vision model's picture (app/images.py)
    return smoothviz.analyze(None if image else s["text"], image=image, model=s["model"], device=s["device"], lab=lab,
                             mitigation=None if s["mitigation"] in (None, "none") else s["mitigation"],
                             params=s["params"] or None, head=s["head"], symmetrize=s["symmetrize"],
                             exclude_special=s["exclude_special"], projection=s["projection"],
                             max_tokens=SETTINGS.max_tokens, max_chars=SETTINGS.max_chars)


def analysis_or_error(settings: dict, project: bool = False) -> smoothviz.Analysis | None:
    """The one way in for every page: run (or fetch) the analysis of ``settings`` through the
    analysis cache, waiting in the server's line with its place shown on a miss; ``None`` and a
    message on the page when it fails. Without ``project`` the analysis has no projection
    (:func:`projected` adds it when the trajectories are opened); with it, the projection of
    ``settings["projection"]``."""
    plain = {**settings, "projection": "none"}
    analysis = _or_error(lambda: run_analysis(**plain), "Loading the model and analysing the sentence",
                         cached=_full(plain) in ledger)
    if analysis is None or not project or settings.get("projection", "none") == "none":
        return analysis
    return projected(settings, analysis)


def _full(settings: dict) -> dict:
    return {**_SETTINGS, **settings}


projections = Bounded(lambda: PROJECTION_ENTRIES, lambda: PROJECTION_BYTES, ttl=CACHE_TTL)
animations = Bounded(lambda: ANIMATION_ENTRIES, lambda: ANIMATION_BYTES, ttl=CACHE_TTL)


def projected(settings: dict, analysis: smoothviz.Analysis) -> smoothviz.Analysis | None:
    """``analysis`` with its tokens projected as ``settings["projection"]`` says (cached: only the
    coordinates are kept, the arrays stay the analysis's own)."""
    key, method = _key(_full(settings)), settings["projection"]

    def compute():
        done = analysis.projected(method)
        return done.projection, done.projection_method, done.notes[len(analysis.notes):]
    extra = _or_error(lambda: projections.get_or_compute(key, compute, lambda v: v[0].nbytes),
                      "Projecting every layer with " + method.upper(), cached=key in projections)
    if extra is None:
        return None
    coords, used, notes = extra
    return dataclasses.replace(analysis, projection=coords, projection_method=used, notes=analysis.notes + notes)


def animation_or_error(settings: dict, analysis: smoothviz.Analysis, views: tuple[str, ...],
                       fmt: str) -> bytes | None:
    """The collapse as a GIF or MP4 (``fmt``: ``.gif`` / ``.mp4``) of ``views``, one frame per
    layer (``smoothviz.animate``); rendered in the server's line, then cached for everyone."""
    shown = projected(settings, analysis) if "trajectory" in views else analysis
    if shown is None:
        return None
    key = _key([_full(settings), views, fmt])
    return _or_error(lambda: animations.get_or_compute(key, lambda: _animation(shown, views, fmt), len),
                     f"Rendering {analysis.n_layers + 1} frames and encoding them", cached=key in animations)


def _animation(analysis: smoothviz.Analysis, views: tuple[str, ...], fmt: str) -> bytes:
    from smoothviz import animate
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "collapse" + fmt)
        animate.animate(analysis, out, views)
        return Path(out).read_bytes()


def report_html(settings: dict, layer: int) -> str:
    """The main page's HTML report of ``settings`` at ``layer``, trajectories included: a download
    built when its button is pressed. Give the button ``functools.partial(report_html, settings,
    layer)``, never a closure over the page: Streamlit keeps a download's callable for as long as
    it keeps the session (disconnected ones too), and a closure would keep the page's analysis
    alive with it, outside every cache bound."""
    from smoothviz import report
    analysis = run_analysis(**{**settings, "projection": "none"})
    return report.build_report(analysis.projected(settings["projection"]), layer)


def _or_error(compute, what: str, cached: bool):
    """``compute()``, after waiting for the server's turn unless ``cached``; ``None`` and a message
    on the page when it fails.

    While other analyses run, the page shows how many are ahead (first come, first served) and
    a bar that fills as they finish, instead of a frozen page; the spinner that follows appears
    only after 0.5 s, so a cache hit stays silent.
    """
    line = st.empty()
    first: list[int] = []

    def show(ahead: int) -> None:
        first.append(ahead)
        done = (first[0] - ahead) / max(first[0], 1)
        line.progress(done, text=f"The server is busy: {ahead} {'analysis' if ahead == 1 else 'analyses'} ahead of "
                                 "yours (first come, first served). Yours starts as soon as a slot frees up.")
    try:
        if cached:
            return compute()
        with compute_slots.turn(on_wait=show):
            line.empty()
            with st.spinner(what + "…", show_time=True):
                return compute()
    except ValueError as err:  # AnalysisError, ModelError, MitigationError: messages meant for users
        st.error(md(err), icon=":material/error:")
    except Exception as err:  # never a traceback in the page; the log keeps it
        log.exception("analysis failed")
        st.error(f"The analysis failed unexpectedly ({md(type(err).__name__)}: {md(err)}). "
                 "Try other settings; the details are in the server log.", icon=":material/error:")
    return None


def model_shape(model: str, device: str, lab: dict | None) -> tuple[int, int] | None:
    """The chosen model's ``(layers, heads)``, for the head box and the mitigation's parameters;
    ``None`` when it cannot load (the analysis, about to load the same model from the same shared
    cache, then says why)."""
    if model == "lab":
        return (int(lab["depth"]), int(lab["heads"])) if lab else None
    try:
        SETTINGS.check(model)  # a public server never loads what it does not allow
        handle = get_handle(model, device)
        return handle.n_layers, handle.heads
    except Exception:  # noqa: BLE001 - reported by the analysis
        return None


def head_count(model: str, device: str, lab: dict | None) -> int | None:
    """The chosen model's heads (:func:`model_shape`), ``None`` when it cannot load."""
    shape = model_shape(model, device, lab)
    return shape[1] if shape else None


def compare_report_html(text: str, runs: list[tuple[str, dict]], *, relative: bool, depth: float) -> str:
    """The Compare page's HTML report of ``runs`` (name, analysis settings): a download built when
    pressed, from the settings alone (:func:`report_html` says why)."""
    from smoothviz import report
    shown = []
    for name, settings in runs:
        analysis = run_analysis(**settings)
        shown.append((name, analysis, analysis.mitigated if analysis.mitigated is not None else analysis.baseline))
    return report.build_compare_report(text, shown, relative=relative, depth=depth)


corpora = Bounded(lambda: CORPUS_ENTRIES, lambda: CORPUS_BYTES, ttl=CACHE_TTL)


def corpus_key(texts: list[str], settings: dict) -> str:
    """What a corpus result depends on: every line and every setting."""
    return hashlib.sha256(json.dumps([texts, settings], sort_keys=True, default=str).encode()).hexdigest()


def cached_corpus(texts: list[str], settings: dict):
    """The corpus result for these lines and settings if one is cached, else ``None``."""
    return corpora.get(corpus_key(texts, settings))


def run_corpus(texts: list[str], settings: dict, progress=None):
    """The Corpus page's entry point to :func:`smoothviz.corpus`, cached (public-demo limits here).

    Not through :meth:`Bounded.get_or_compute`'s wait: a corpus run reports progress to its own page.

    Args:
        settings: ``model``, ``device``, ``lab``, ``mitigation``, ``params`` and the graph options.
        progress: ``(done, total, lines per second)``, called while a new corpus runs.
    Raises:
        ValueError (CorpusError, AnalysisError, ModelError, MitigationError): a message for the user.
    """
    hit = cached_corpus(texts, settings)
    if hit is not None:
        return hit
    SETTINGS.check(settings["model"], settings.get("lab"), settings.get("params"))
    s = dict(settings)
    mitigation = s.pop("mitigation")
    result = smoothviz.corpus(texts, mitigation=None if mitigation in (None, "none") else mitigation,
                              params=s.pop("params") or None, max_tokens=SETTINGS.max_tokens, progress=progress, **s)
    return corpora.put(corpus_key(texts, settings), result, result.table.nbytes)  # the table holds the lines too


def corpus_table(texts: list, settings: dict, fmt: str) -> bytes:
    """The corpus result of ``texts`` and ``settings`` as CSV or Parquet (``fmt``): a download built
    when pressed, from the lines and settings alone (:func:`report_html` says why); computed again
    if it has left the cache since."""
    import io

    import pyarrow.parquet as pq
    from smoothviz.corpus_store import HIST
    result = run_corpus(texts, settings)
    if fmt == "csv":
        return result.table.drop([HIST]).to_pandas().to_csv(index=False).encode()
    buffer = io.BytesIO()
    pq.write_table(result.table, buffer)
    return buffer.getvalue()


class FrozenFigure(go.Figure):
    """A built figure reduced to the dict ``st.plotly_chart`` reads, never changed again.

    ``st.plotly_chart`` only calls ``to_dict()`` (a deep copy and a walk over every value, about
    1 ms a chart) and serialises the result. Keeping only that dict, not the figure's validated
    object tree, holds a figure in ~15–50 kB instead of ~150 kB. ``go.Figure.__init__`` is
    deliberately not called: nothing but :meth:`to_dict` is ever used.
    """

    def __init__(self, spec: dict):  # noqa: D107 - see the class docstring
        self._frozen = spec

    def to_dict(self):
        return self._frozen


def _size(obj) -> int:
    """Bytes held by a figure's dict: containers, strings and numbers as CPython sizes them,
    numpy arrays by their buffers (shared templates are counted once, elsewhere)."""
    if isinstance(obj, dict):
        return sys.getsizeof(obj) + sum(sys.getsizeof(k) + _size(v) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return sys.getsizeof(obj) + sum(_size(v) for v in obj)
    if isinstance(obj, np.ndarray):
        return sys.getsizeof(obj) + (obj.nbytes if obj.base is None else 0)
    return sys.getsizeof(obj)


class FigureCache(Bounded):
    """Built figures shared by every session, least recently used out first, within
    ``FIGURE_BYTES`` (``SMOOTHVIZ_FIGURE_CACHE_MB``, 128: some 5,000 figures, the first views of ~250 sentences).

    Every figure of every layer and setting anyone viewed lands here, so a count alone (the
    2,048 entries this replaced) let memory grow with the number of sentences seen. Each entry
    is weighed once, when built: its dict (:func:`_size`) and its key. The plotly template that
    every figure carries is stored once and shared. The newest entry always stays.
    """

    def __init__(self):
        super().__init__(budget=lambda: FIGURE_BYTES)
        self._templates: dict[str, dict] = {}

    def get(self, build, key: tuple) -> FrozenFigure:  # noqa: D102 - see the class docstring
        name = _key(list(key))
        fig = super().get(name)
        if fig is not None:
            return fig
        spec = build().to_dict()  # outside the lock: sessions build different figures at once
        layout = spec.get("layout", {})
        if "template" in layout:
            text = json.dumps(layout["template"], sort_keys=True, default=str)
            with self._lock:
                layout["template"] = self._templates.setdefault(text, layout["template"])
                if len(self._templates) > 16:  # figures.py uses one; never let this grow either
                    self._templates.clear()
        size = _size({k: v for k, v in spec.items() if k != "layout"}) + _size(
            {k: v for k, v in layout.items() if k != "template"})
        with self._lock:
            self.misses += 1
        return self.put(name, FrozenFigure(spec), size)


figure_cache = FigureCache()


def figure(build, key: tuple) -> FrozenFigure:
    """The figure ``build()`` makes, shared by every session (read-only: Streamlit only reads its dict).

    ``key`` holds everything the figure depends on (the settings, the view, the layer, …).
    """
    return figure_cache.get(build, key)


@st.cache_data(show_spinner=False)
def examples() -> dict:
    """Example sentences and presets (``smoothviz/data/examples.json``)."""
    return data.examples()


WARM_UP_NICE = 10  # the UMAP compile yields the CPU to page runs (Linux: per thread)


def _start_warm_up() -> threading.Thread:
    """Compile UMAP's numba code in a background thread at low priority; return the thread."""
    # plotly peeks at sys.modules for pandas; had the thread's `import umap` half-imported it
    # at that moment, figure building would fail. Import it here, in the page's thread, first.
    import pandas  # noqa: F401

    def work():
        try:  # on Linux a thread has its own nice value; elsewhere this is the process's: skip
            tid = threading.get_native_id()
            if sys.platform.startswith("linux"):
                os.setpriority(os.PRIO_PROCESS, tid, max(WARM_UP_NICE, os.getpriority(os.PRIO_PROCESS, tid)))
        except OSError:
            pass
        try:
            projection.warm_up()
        except Exception:  # a failed warm-up only costs time later
            log.exception("UMAP warm-up failed")

    thread = threading.Thread(target=timed("umap-warm-up", work), name="smoothviz-umap-warm-up", daemon=True)
    thread.start()
    return thread


@st.cache_resource
def warm_up() -> threading.Thread:
    """Compile UMAP's numba code once per process, in the background, off the first page view.

    It takes 30–80 s of CPU; at nice 10 it only takes what page runs leave. (It still shares
    the GIL with them, so the Docker image also compiles what numba caches at build time.)
    """
    return _start_warm_up()

