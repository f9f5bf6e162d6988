"""What is loaded once per process and shared: the example sentences, and UMAP's compiled code."""

from __future__ import annotations

import logging
import os
import sys
import threading

import streamlit as st

from smoothviz import data
from smoothviz.science import projection

from .process import timed

log = logging.getLogger("smoothviz.app")
WARM_UP_NICE = 10  # the UMAP compile yields the CPU to page runs (Linux: per thread)


@st.cache_data(show_spinner=False)
def examples() -> dict:
    """Example sentences and presets (``smoothviz/data/examples.json``)."""
    return data.examples()


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
