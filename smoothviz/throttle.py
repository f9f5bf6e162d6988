"""The hook through which a server limits how many analyses run at once; the library sets none.

:func:`smoothviz.analyze` and each batch of :func:`smoothviz.corpus` run inside ``slot()``. By
default that is a no-op: the command line and a notebook run at once. A server hands its own
turn-taking here (:func:`set_throttle`, e.g. the app's fair queue), so the library never reads a
server's settings nor queues on them by itself.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Callable

_slot: Callable[[], AbstractContextManager] = nullcontext


def set_throttle(slot: Callable[[], AbstractContextManager] | None) -> None:
    """Run every later analysis inside ``slot()`` (a context manager factory); ``None``: no limit."""
    global _slot
    _slot = slot or nullcontext


def slot() -> AbstractContextManager:
    """The context an analysis runs in: the server's turn, or nothing."""
    return _slot()
