"""The one module that owns Streamlit's caches; every analysis goes through :func:`run_analysis`.

Models live in the library's own thread-safe LRU (``smoothviz.handles``), shared by every session;
analyses (graphs, metrics and the projection together) are cached here with ``st.cache_resource``,
keyed on every setting, so a second visit to the same settings is instant and moving the layer
slider only re-slices arrays that are already in memory. An analysis is immutable (its arrays
refuse writes), so every session reads the same object: ``st.cache_data`` would pickle it on
every rerun (190 MB and 90 ms at 512 tokens). :class:`_Ledger` bounds that cache by bytes as well
as by entries.
"""
from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

import smoothviz
from smoothviz import projection
from smoothviz.settings import SETTINGS

ASSETS = Path(__file__).resolve().parent.parent / "assets"
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


CACHE_ENTRIES = int(os.environ.get("SMOOTHVIZ_CACHE_ENTRIES", "32"))
CACHE_BYTES = int(float(os.environ.get("SMOOTHVIZ_CACHE_MB", "2048")) * 2**20)
CACHE_TTL = 3600  # seconds


# Bounded by _Ledger: one entry is ~1 MB at 27 tokens, ~14 MB at 128 and ~190 MB at 512 (MiniLM).
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
                             max_tokens=SETTINGS.max_tokens)


class _Ledger:
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

    def __len__(self) -> int:
        return len(self._entries)


ledger = _Ledger()


def analysis_or_error(settings: dict) -> smoothviz.Analysis | None:
    """Run (or fetch) the analysis; show progress on a miss and ``st.error`` on bad input."""
    what = "Loading the model and analysing the sentence"
    if settings.get("projection") == "umap":
        what += ", then projecting every layer with UMAP"
    try:
        with st.spinner(what + "…", show_time=True):  # the spinner only appears after 0.5 s: hits stay silent
            analysis = run_analysis(**settings)
        ledger.use(settings, analysis)
        return analysis
    except ValueError as err:  # AnalysisError, ModelError, MitigationError: messages meant for users
        st.error(str(err), icon=":material/error:")
    except Exception as err:  # never a traceback in the page; the log keeps it
        log.exception("analysis failed")
        st.error(f"The analysis failed unexpectedly ({type(err).__name__}: {err}). "
                 "Try other settings; the details are in the server log.", icon=":material/error:")
    return None


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
    """A figure that is never changed once built: its ``to_dict()`` is computed once.

    ``st.plotly_chart`` calls ``to_dict()`` on every draw (a deep copy and a walk over every
    value, about 1 ms a chart); a cached figure gives the same dict to every draw instead.
    """

    def to_dict(self):
        if self._frozen is None:
            self._frozen = super().to_dict()
        return self._frozen


@st.cache_resource(max_entries=2048, show_spinner=False)
def figure(_build, key: tuple) -> FrozenFigure:
    """A built plotly figure, shared by every session (read-only: Streamlit only reads its dict).

    ``key`` holds everything the figure depends on (the settings, the view, the layer, …);
    ``_build`` is not hashed. A few kB each; 2,048 of them stay within ~50 MB.
    """
    fig = _build()
    fig.__class__, fig._frozen = FrozenFigure, None  # the built figure itself, no copy
    return fig


@st.cache_data(show_spinner=False)
def examples() -> dict:
    """Example sentences and presets from ``assets/examples.json``."""
    return json.loads((ASSETS / "examples.json").read_text(encoding="utf-8"))


@st.cache_resource
def warm_up() -> threading.Thread:
    """Compile UMAP's numba code once per process, in the background, off the first page view."""
    # plotly peeks at sys.modules for pandas; had the thread's `import umap` half-imported it
    # at that moment, figure building would fail. Import it here, in the page's thread, first.
    import pandas  # noqa: F401

    def work():
        try:
            projection.warm_up()
        except Exception:  # a failed warm-up only costs time later
            log.exception("UMAP warm-up failed")

    thread = threading.Thread(target=timed("umap-warm-up", work), name="smoothviz-umap-warm-up", daemon=True)
    thread.start()
    return thread
