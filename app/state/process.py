"""Process set-up, once, from :func:`setup` (every page calls it first): nothing happens at import.

What a server process needs before the libraries run: numba's cache and the hub's downloads under
the temporary directory, ``ast.parse`` serialised, threads per analysis, the fair queue handed to
the library, an exit that does not crash under busy threads, and (in a real server) the memory
thread (:mod:`state.memory`) and UMAP's warm-up (:mod:`state.warm`).
"""

from __future__ import annotations

import ast
import atexit
import logging
import os
import sys
import tempfile
import threading
import time

TIMINGS = os.environ.get("SMOOTHVIZ_TIMINGS") == "1"  # one stderr line per page run, fragment run, warm-up
_done = threading.Lock()
_set_up: list[bool] = []


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


def setup() -> None:
    """Set the process up for the app, once (later calls return at once); every page calls it first."""
    if _set_up:
        return
    with _done:
        if _set_up:
            return
        _environment()
        _serialise_ast_parse()
        _use_the_cores()
        import smoothviz.throttle

        from .server import compute_slots

        smoothviz.throttle.set_throttle(compute_slots.turn)  # every analysis and corpus batch takes a turn
        from smoothviz.model.models import quiet_hub_logging

        quiet_hub_logging()
        if _in_a_server():
            from . import memory

            atexit.register(_exit_at_once_when_threads_are_busy)
            memory.start()
        _set_up.append(True)


def _environment() -> None:
    """numba (UMAP) caches compiled code beside its sources unless told otherwise, and a public
    server writes only under the temporary directory, downloads of allow-listed hub models included.
    Set before numba or the hub is first imported by a page (smoothviz imports neither at import)."""
    os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(tempfile.gettempdir(), "smoothviz-numba"))
    if os.environ.get("SMOOTHVIZ_PUBLIC", "").strip().lower() in ("1", "true", "yes", "on"):
        os.environ.setdefault("HF_HOME", os.path.join(tempfile.gettempdir(), "smoothviz-hf"))


def _serialise_ast_parse() -> None:
    """Make ``ast.parse`` one-at-a-time in this process.

    CPython before 3.12 keeps ast.parse's recursion counter in interpreter-wide state, so two
    threads parsing at once can fail with "SystemError: AST constructor recursion depth mismatch"
    (CPython gh-106905). Here they do: Streamlit parses each page script, while numba, compiling
    UMAP in the warm-up thread, parses array expressions. A lock around the call removes the race;
    on 3.12 and later nothing is changed.
    """
    if sys.version_info >= (3, 12) or getattr(ast.parse, "_smoothviz_locked", False):
        return
    original, lock = ast.parse, threading.RLock()

    def parse(*args, **kwargs):
        with lock:
            return original(*args, **kwargs)

    parse._smoothviz_locked = True
    ast.parse = parse


def _use_the_cores() -> None:
    """``SMOOTHVIZ_THREADS`` threads per analysis in torch and in numpy's BLAS, for the process.

    With as many analysis slots as cores (the default), each analysis on one thread uses the
    cores without oversubscribing them: torch's two threads per analysis took twice the CPU
    time for the same 27-token analysis, and OpenBLAS's threads spinning on busy cores made
    PCA's 384×384 eigendecomposition take 1–3 s instead of 30 ms.
    """
    import torch
    from threadpoolctl import threadpool_limits

    from .server import SETTINGS

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
    from .memory import GC_THREAD

    busy = [t for t in threading.enumerate() if t is not threading.current_thread() and t.name != GC_THREAD]
    if any(t.daemon and t.is_alive() for t in busy):  # the collector only sleeps or collects: no C++ to unwind
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
