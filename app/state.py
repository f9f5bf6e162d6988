"""The one module that owns Streamlit's caches; every analysis goes through :func:`run_analysis`.

Models live in the library's own thread-safe LRU (``smoothviz.handles``), shared by every session;
analyses (graphs, metrics and the projection together) are cached here with ``st.cache_resource``,
keyed on every setting, so a second visit to the same settings is instant and moving the layer
slider only re-slices arrays that are already in memory. An analysis is immutable (its arrays
refuse writes), so every session reads the same object: ``st.cache_data`` would pickle it on
every rerun (the README's Performance section has the numbers). :class:`Ledger` bounds that cache by bytes as well
as by entries, and :class:`FigureCache` holds the built figures within a byte budget too, so the
server's memory levels off however many sentences it sees.
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
    if any(t.daemon and t.is_alive() for t in threading.enumerate() if t is not threading.current_thread()):
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _set_up_the_process() -> None:
    """Once per process, at the first page run (the app's entry point imports this module)."""
    _use_the_cores()
    if _in_a_server():
        atexit.register(_exit_at_once_when_threads_are_busy)


_set_up_the_process()


CACHE_ENTRIES = int(os.environ.get("SMOOTHVIZ_CACHE_ENTRIES", "32"))
CACHE_BYTES = int(float(os.environ.get("SMOOTHVIZ_CACHE_MB", "2048")) * 2**20)
CACHE_TTL = 3600  # seconds
FIGURE_BYTES = int(float(os.environ.get("SMOOTHVIZ_FIGURE_CACHE_MB", "128")) * 2**20)


# Bounded by Ledger: an entry's size grows with the square of the sentence's length (Analysis.nbytes).
@st.cache_resource(ttl=CACHE_TTL, show_spinner=False)
def run_analysis(*, text: str, model: str = "default", device: str = "auto", lab: dict | None = None,
                 mitigation: str | None = "neutreno", params: dict | None = None, head: int | None = None,
                 symmetrize: str = "sym", exclude_special: bool = False,
                 projection: str = "pca") -> smoothviz.Analysis:
    """The app's single entry point to :func:`smoothviz.analyze` (limits for a public demo go here).

    Raises:
        smoothviz.AnalysisError, ModelError, MitigationError: with a message for the user.
    """
    SETTINGS.check(model, lab if model == "lab" else None, params)  # the public-demo allow-list
    return smoothviz.analyze(text, model=model, device=device, lab=lab if model == "lab" else None,
                             mitigation=None if mitigation in (None, "none") else mitigation,
                             params=params or None, head=head, symmetrize=symmetrize,
                             exclude_special=exclude_special, projection=projection,
                             max_tokens=SETTINGS.max_tokens, max_chars=SETTINGS.max_chars)


class Ledger:
    """What :func:`run_analysis` holds, least recently used first: at most ``CACHE_ENTRIES``
    analyses and ``CACHE_BYTES`` bytes (``SMOOTHVIZ_CACHE_MB``).

    Streamlit bounds a cache by its number of entries only, and one 512-token analysis weighs
    as much as a hundred short ones; so every use is recorded here, and the oldest entries are
    cleared from Streamlit's cache by their settings until both bounds hold. The newest entry
    always stays, whatever its size. Entries past the cache's TTL are forgotten (Streamlit
    dropped them already).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[dict, int, float]] = {}  # key → (settings, bytes, last use)

    def use(self, settings: dict, analysis: smoothviz.Analysis) -> None:
        key = json.dumps(settings, sort_keys=True, default=str)
        now = time.monotonic()
        with self._lock:
            self._entries.pop(key, None)  # re-insert: dicts keep insertion order, oldest first
            self._entries[key] = (settings, analysis.nbytes, now)
            stale = [k for k, (_, _, used) in self._entries.items() if now - used > CACHE_TTL]
            evict = [self._entries.pop(k)[0] for k in stale]
            while len(self._entries) > 1 and (len(self._entries) > CACHE_ENTRIES or self.bytes() > CACHE_BYTES):
                evict.append(self._entries.pop(next(iter(self._entries)))[0])
        for old in evict:
            run_analysis.clear(**old)

    def bytes(self) -> int:
        return sum(size for _, size, _ in self._entries.values())

    def __contains__(self, settings: dict) -> bool:
        """Whether the analysis of ``settings`` is (most likely) cached: a hint for skipping the line."""
        return json.dumps(settings, sort_keys=True, default=str) in self._entries

    def __len__(self) -> int:
        return len(self._entries)


ledger = Ledger()


def analysis_or_error(settings: dict) -> smoothviz.Analysis | None:
    """Run (or fetch) the analysis, without its projection (:func:`projected` adds it when the
    trajectories are opened); wait in the server's line and show progress on a miss, ``st.error``
    on bad input."""
    settings = {**settings, "projection": "none"}
    return _or_error(lambda: _analysis(settings), "Loading the model and analysing the sentence",
                     cached=settings in ledger)


def _analysis(settings: dict) -> smoothviz.Analysis:
    analysis = run_analysis(**settings)
    ledger.use(settings, analysis)
    return analysis


class Recent:
    """The newest ``size`` keys (their digests) whose results a cache bounded to ``size`` entries
    most likely still holds: a hint that lets a page skip the server's line. Bounded like the
    cache it stands for; a key it has forgotten only waits in line once more."""

    def __init__(self, size: int):
        self._size = size
        self._lock = threading.Lock()
        self._keys: OrderedDict[bytes, None] = OrderedDict()

    @staticmethod
    def _digest(key) -> bytes:
        return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).digest()

    def __contains__(self, key) -> bool:
        with self._lock:
            return self._digest(key) in self._keys

    def add(self, key) -> None:
        digest = self._digest(key)
        with self._lock:
            self._keys[digest] = None
            self._keys.move_to_end(digest)
            while len(self._keys) > self._size:
                self._keys.popitem(last=False)


def _in_line_once(recent: Recent, key, compute, what: str):
    """:func:`_or_error` for a cached computation: in the server's line unless ``recent`` says
    ``key`` was computed lately."""
    result = _or_error(compute, what, cached=key in recent)
    if result is not None:
        recent.add(key)
    return result


PROJECTION_ENTRIES = 4 * CACHE_ENTRIES
ANIMATION_ENTRIES = 8  # ≤ 10 MB each (animate refuses more)
_projected, _animated = Recent(PROJECTION_ENTRIES), Recent(ANIMATION_ENTRIES)


def projected(settings: dict, analysis: smoothviz.Analysis) -> smoothviz.Analysis | None:
    """``analysis`` with its tokens projected as ``settings["projection"]`` says (cached: only the
    coordinates are kept, the arrays stay the analysis's own)."""
    key, method = json.dumps(settings, sort_keys=True, default=str), settings["projection"]
    extra = _in_line_once(_projected, key, lambda: _projection(key, method, analysis),
                          "Projecting every layer with " + method.upper())
    if extra is None:
        return None
    coords, used, notes = extra
    return dataclasses.replace(analysis, projection=coords, projection_method=used, notes=analysis.notes + notes)


@st.cache_resource(ttl=CACHE_TTL, max_entries=PROJECTION_ENTRIES, show_spinner=False)
def _projection(key: str, method: str, _analysis: smoothviz.Analysis) -> tuple:
    """(coordinates, method used, new notes) of ``_analysis.projected(method)``; ``key`` is its settings."""
    done = _analysis.projected(method)
    return done.projection, done.projection_method, done.notes[len(_analysis.notes):]


def animation_or_error(settings: dict, analysis: smoothviz.Analysis, views: tuple[str, ...],
                       fmt: str) -> bytes | None:
    """The collapse as a GIF or MP4 (``fmt``: ``.gif`` / ``.mp4``) of ``views``, one frame per
    layer (``smoothviz.animate``); rendered in the server's line, then cached for everyone."""
    shown = projected(settings, analysis) if "trajectory" in views else analysis
    if shown is None:
        return None
    key = (json.dumps(settings, sort_keys=True, default=str), views, fmt)
    return _in_line_once(_animated, key, lambda: _animation(*key, shown),
                         f"Rendering {analysis.n_layers + 1} frames and encoding them")


@st.cache_resource(ttl=CACHE_TTL, max_entries=ANIMATION_ENTRIES, show_spinner=False)
def _animation(settings_key: str, views: tuple[str, ...], fmt: str, _analysis: smoothviz.Analysis) -> bytes:
    from smoothviz import animate
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "collapse" + fmt)
        animate.animate(_analysis, out, views)
        return Path(out).read_bytes()


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


CORPUS_ENTRIES = int(os.environ.get("SMOOTHVIZ_CORPUS_ENTRIES", "8"))  # corpus results kept (~1 MB per 100 lines)


@st.cache_resource(show_spinner=False)
def _corpora() -> tuple[OrderedDict, threading.Lock]:
    """Corpus results shared by every session, least recently used first, and their lock.

    Not a cached function of its own: a corpus run reports progress to the page while it runs,
    and Streamlit would replay those progress messages on every later hit.
    """
    return OrderedDict(), threading.Lock()


def corpus_key(texts: list[str], settings: dict) -> str:
    """What a corpus result depends on: every line and every setting."""
    return hashlib.sha256(json.dumps([texts, settings], sort_keys=True, default=str).encode()).hexdigest()


def cached_corpus(texts: list[str], settings: dict):
    """The corpus result for these lines and settings if one is cached, else ``None``."""
    store, lock = _corpora()
    key = corpus_key(texts, settings)
    with lock:
        if key in store:
            store.move_to_end(key)
        return store.get(key)


def run_corpus(texts: list[str], settings: dict, progress=None):
    """The Corpus page's entry point to :func:`smoothviz.corpus`, cached (public-demo limits here).

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
    store, lock = _corpora()
    with lock:
        store[corpus_key(texts, settings)] = result
        while len(store) > CORPUS_ENTRIES:
            store.popitem(last=False)
    return result


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


class FigureCache:
    """Built figures shared by every session, least recently used out first, within
    ``FIGURE_BYTES`` (``SMOOTHVIZ_FIGURE_CACHE_MB``, 128: some 5,000 figures, the first views of ~250 sentences).

    Every figure of every layer and setting anyone viewed lands here, so a count alone (the
    2,048 entries this replaced) let memory grow with the number of sentences seen. Each entry
    is weighed once, when built: its dict (:func:`_size`) and its key. The plotly template that
    every figure carries is stored once and shared. The newest entry always stays.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple, tuple[FrozenFigure, int]] = OrderedDict()
        self._bytes = 0
        self._templates: dict[str, dict] = {}

    def get(self, build, key: tuple) -> FrozenFigure:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key][0]
        spec = build().to_dict()  # outside the lock: sessions build different figures at once
        layout = spec.get("layout", {})
        if "template" in layout:
            text = json.dumps(layout["template"], sort_keys=True, default=str)
            with self._lock:
                layout["template"] = self._templates.setdefault(text, layout["template"])
                if len(self._templates) > 16:  # figures.py uses one; never let this grow either
                    self._templates.clear()
        fig = FrozenFigure(spec)
        size = _size({k: v for k, v in spec.items() if k != "layout"}) + _size(
            {k: v for k, v in layout.items() if k != "template"}) + sum(_size(part) for part in key)
        with self._lock:
            if key not in self._entries:
                self._entries[key] = (fig, size)
                self._bytes += size
            self._entries.move_to_end(key)
            while len(self._entries) > 1 and self._bytes > FIGURE_BYTES:
                _, (_, old) = self._entries.popitem(last=False)
                self._bytes -= old
            return self._entries[key][0]

    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)


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
