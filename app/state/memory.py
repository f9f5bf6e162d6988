"""The server's memory: glibc's allocator told to give big blocks back, a collector thread, and a log.

:func:`start` (from :func:`state.process.setup`, in a server only) sets glibc's allocator so
that every block of ``MMAP_THRESHOLD`` bytes or more is mapped on its own and returned to the
system when freed (:func:`_tune_malloc` says why), and starts a daemon thread that runs Python's
full collection every ``GC_SECONDS`` and trims glibc's heap.

With ``SMOOTHVIZ_MEMORY_LOG=PATH`` every collection then appends one JSON line
to PATH: the process's RSS, glibc's heap (``mallinfo2``: in use, free but kept, mmapped), the
Streamlit sessions (connected and kept after disconnecting), what each app cache holds, the live
objects of the types that could hold an analysis or a figure, and, with
``SMOOTHVIZ_TRACEMALLOC=1`` (slow: every allocation is traced), Python's traced memory and the
15 source lines whose allocations grew most since the last line and since the third. This is how issue 27's growth
was found (README, Deployment).
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path

PATH = os.environ.get("SMOOTHVIZ_MEMORY_LOG")
GC_SECONDS = float(os.environ.get("SMOOTHVIZ_GC_SECONDS", "30"))
GC_THREAD = "smoothviz-gc"
MMAP_THRESHOLD = int(float(os.environ.get("SMOOTHVIZ_MMAP_THRESHOLD_KB", "256")) * 1024)
ARENA_MAX = int(os.environ.get("SMOOTHVIZ_ARENA_MAX", "2"))
_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8  # glibc's mallopt parameters (malloc.h)


def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune or trim
        return None


def _tune_malloc(libc) -> None:
    """Blocks of ``MMAP_THRESHOLD`` bytes or more (``SMOOTHVIZ_MMAP_THRESHOLD_KB``, 256) each get
    their own mapping, returned to the system when freed; at most ``ARENA_MAX`` heaps
    (``SMOOTHVIZ_ARENA_MAX``, 2).

    glibc raises its mapping threshold to the size of every mapped block freed, up to 32 MB: after
    the first analysis, its arrays (a few MB each), the serialised charts and torch's activations
    all came from the heap, interleaved with small long-lived objects, and the heap's free but
    unreturnable holes grew with every distinct sentence (issue 27: 254 → 327 MB free inside the
    heap between two collections, RSS still rising at 2.3 GB). A fixed threshold switches that
    adjustment off; with one heap per thread (up to 8 per core) each thread's holes add up, so
    the heaps are capped too (``MALLOC_ARENA_MAX``'s setting, made here so that any way of
    starting the server gets it).
    """
    if not hasattr(libc, "mallopt"):
        return
    libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    if ARENA_MAX > 0:
        libc.mallopt(_M_ARENA_MAX, ARENA_MAX)


def start() -> threading.Thread:
    """Tune glibc's allocator, then run Python's full collection every ``GC_SECONDS`` (30) in a
    daemon thread, give the heap's free pages back to the system, and log (``SMOOTHVIZ_MEMORY_LOG``).

    Each Streamlit session keeps its last page run alive (a widget's callback or format function
    holds the page's globals, the analysis among them), connected or not: a disconnected session
    waits ``server.disconnectedSessionTTL`` for its visitor to come back (30 s in the shipped
    config). A session let go is part of reference cycles, so only a full collection frees it, and
    with Streamlit's collection after every run switched off (``runner.postScriptGC``, for speed)
    and 600,000 long-lived objects, Python's own came too rarely. One collection (about 0.3 s of
    one core) every 30 s bounds that; ``malloc_trim`` then returns the pages freed to the system,
    so RSS shows what is held.
    """
    libc = _libc()
    if libc is not None:
        _tune_malloc(libc)
    trim = getattr(libc, "malloc_trim", None)
    if PATH and os.environ.get("SMOOTHVIZ_TRACEMALLOC") == "1" and not tracemalloc.is_tracing():
        tracemalloc.start(1)

    def work():
        from . import caches

        while True:
            time.sleep(GC_SECONDS)
            gc.collect()
            if trim is not None:
                trim(0)
            if PATH:
                write(caches())

    thread = threading.Thread(target=work, name=GC_THREAD, daemon=True)
    thread.start()
    return thread


TYPES = (
    "AppSession",
    "ScriptRunner",
    "Analysis",
    "Run",
    "Figure",
    "FrozenFigure",
    "SessionState",
    "ForwardMsg",
    "Tensor",
    "DataFrame",
    "Table",
    "frame",
    "function",
    "cell",
)


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mallinfo() -> dict:
    fn = getattr(_libc(), "mallinfo2", None)
    if fn is None:
        return {}
    fn.restype = _MallInfo2
    m = fn()
    mb = lambda v: round(v / 2**20, 1)  # noqa: E731
    return {
        "heap_mb": mb(m.arena),
        "mmapped_mb": mb(m.hblkhd),
        "in_use_mb": mb(m.uordblks),
        "free_kept_mb": mb(m.fordblks),
    }


def let_go(namespace: dict, *names: str) -> None:
    """Drop ``names`` (a page's results) from a page's ``namespace`` at the end of its run.

    Streamlit keeps a session while its visitor is connected and ``server.disconnectedSessionTTL``
    after (30 s), and the session keeps its last run's namespace alive: every widget's callback
    and format function defined in the page holds it. Results belong to the shared, bounded
    caches; held by the page's namespace too, every kept session pinned one more analysis, so
    memory followed the rate of new links (issue 27: 100 sessions kept and 102 live analyses
    for the cache's 32, 2.1 GB, at 2.5 links a second of 107-token sentences). What runs later
    (a fragment, a callback) fetches its analysis from the cache by its settings.
    """
    for name in names:
        namespace.pop(name, None)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def _sessions() -> dict:
    try:
        from streamlit.runtime import Runtime

        manager = Runtime.instance()._session_mgr
        stored = getattr(getattr(manager, "_session_storage", None), "_cache", {})
        return {"active": len(manager.list_active_sessions()), "stored": len(stored)}
    except Exception as err:
        return {"error": repr(err)}


_kept: dict = {}  # the last line's and the third line's snapshots, and how many lines


def _grew(now, then) -> list[str]:
    return [
        f"{s.size_diff / 2**20:+.1f} MB {s.count_diff:+d} {s.traceback[0].filename}:{s.traceback[0].lineno}"
        for s in now.compare_to(then, "lineno")[:15]
    ]


def write(caches: dict) -> None:
    """Append one line to ``SMOOTHVIZ_MEMORY_LOG`` (``caches``: name → :class:`Bounded`)."""
    counts = Counter(type(o).__name__ for o in gc.get_objects())
    line = {
        "t": round(time.time()),
        "rss_mb": _rss_mb(),
        **_mallinfo(),
        "sessions": _sessions(),
        "caches": {name: cache.stats() for name, cache in caches.items()},
        "objects": len(gc.get_objects()),
        "types": {t: counts.get(t, 0) for t in TYPES},
        "threads": threading.active_count(),
    }
    if tracemalloc.is_tracing():
        snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        line["traced_mb"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 1)
        if "last" in _kept:
            line["grew_since_last"] = _grew(snap, _kept["last"])
        if "third" in _kept:  # by the third line the model and the first pages are in
            line["grew_since_third"] = _grew(snap, _kept["third"])
        _kept["last"] = snap
        _kept["lines"] = _kept.get("lines", 0) + 1
        if _kept["lines"] == 3:
            _kept["third"] = snap
    with open(PATH, "a") as f:
        f.write(json.dumps(line) + "\n")
