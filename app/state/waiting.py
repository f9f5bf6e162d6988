"""The server's line as a page shows it, and the one place where a failed computation becomes a message."""

from __future__ import annotations

import logging

import streamlit as st

from .server import compute_slots
from markup import md

log = logging.getLogger("smoothviz.app")


def in_line(compute, what: str, cached: bool, failed: str = "The analysis", spinner: bool = True):
    """``compute()``, after waiting for the server's turn unless ``cached``; ``None`` and a message
    on the page when it fails (``failed`` names what failed in the unexpected case). Without
    ``spinner``, ``compute`` shows its own progress.

    While other analyses run, the page shows how many are ahead (first come, first served) and
    a bar that fills as they finish, instead of a frozen page; the spinner that follows appears
    only after 0.5 s, so a cache hit stays silent. A ``ValueError`` (AnalysisError, ModelError,
    MitigationError, CorpusError) is a message meant for users; anything else is shown as one
    line, never a traceback, and logged whole.
    """
    line = st.empty()
    first: list[int] = []

    def show(ahead: int) -> None:
        first.append(ahead)
        done = (first[0] - ahead) / max(first[0], 1)
        line.progress(
            done,
            text=f"The server is busy: {ahead} {'analysis' if ahead == 1 else 'analyses'} ahead of "
            "yours (first come, first served). Yours starts as soon as a slot frees up.",
        )

    try:
        if cached:
            return compute()
        with compute_slots.turn(on_wait=show):
            line.empty()
            if not spinner:
                return compute()
            with st.spinner(what + "…", show_time=True):
                return compute()
    except ValueError as err:  # messages meant for users
        st.error(md(err), icon=":material/error:")
    except Exception as err:  # never a traceback in the page; the log keeps it
        log.exception("%s failed", failed)
        st.error(
            f"{failed} failed unexpectedly ({md(type(err).__name__)}: {md(err)}). "
            "Try other settings; the details are in the server log.",
            icon=":material/error:",
        )
    return None
