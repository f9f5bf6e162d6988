"""The server's settings, read once from the environment, and its fair queue of analyses.

The app's, not the library's: the library runs whatever it is asked at once, and the app hands it
this queue's turn (:func:`smoothviz.throttle.set_throttle`, in :func:`state.process.setup`).

``SMOOTHVIZ_PUBLIC=1`` turns on the public-demo mode for a classroom server: only the models in
``SMOOTHVIZ_MODELS`` (default ``default,gemma-3-270m,lab``; never local paths), at most
``SMOOTHVIZ_MAX_TOKENS`` tokens (default 128) from at most ``SMOOTHVIZ_MAX_CHARS`` characters
(default 20,000; elsewhere the library's 200,000), and a lab model of at most
``SMOOTHVIZ_MAX_LAB_DEPTH`` layers (32) and ``SMOOTHVIZ_MAX_LAB_WIDTH`` width (256).
``SMOOTHVIZ_MAX_CONCURRENT`` analyses run at once (default: the CPU count); others wait their turn
in arrival order (:class:`FairQueue`), so one long sentence cannot starve everybody else. ``SMOOTHVIZ_THREADS`` is how many threads one
analysis uses (default: CPUs ÷ concurrent analyses, at least 1), so that slots × threads ≈ cores;
the app applies it to torch and BLAS for its whole process (the library never does).
The Corpus page of a public server analyses at most ``SMOOTHVIZ_MAX_CORPUS_LINES`` lines (default
200) of a corpus.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from smoothviz.model.models import DEFAULT_MODEL, GEMMA_MODEL, LAB_MODEL, ModelError


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _int(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        return default


@dataclass(frozen=True)
class Settings:
    """The server's limits, read once from the environment by :func:`load`."""

    public: bool
    models: tuple[str, ...]
    max_tokens: int | None
    max_chars: int | None  # None: the library's default (smoothviz.model.handles.MAX_CHARS)
    max_lab_depth: int
    max_lab_width: int
    max_concurrent: int
    threads: int  # per analysis: slots × threads ≈ cores
    max_corpus_lines: int | None = None

    def check_params(self, params: dict | None) -> None:
        """Refuse mitigation parameters the public-demo mode does not allow (a gate file of one's own)."""
        gate = str((params or {}).get("gate", "default")).strip()
        if self.public and gate not in ("", "default"):
            raise ModelError("this public server uses only the shipped fusion gate (gate=default)")

    def check(self, model: str, lab: dict | None = None, params: dict | None = None) -> None:
        """Refuse what the public-demo mode does not allow, with a message that says what is."""
        if not self.public:
            return
        self.check_params(params)
        if model not in self.models:
            raise ModelError(f"this public server allows only these models: {', '.join(self.models)}")
        if model == LAB_MODEL and lab:
            for key, cap in (("depth", self.max_lab_depth), ("width", self.max_lab_width)):
                try:
                    value = int(float(lab.get(key, 0)))
                except (TypeError, ValueError):
                    continue  # the lab's own validation names the bad value
                if value > cap:
                    raise ModelError(f"this public server allows a lab {key} of at most {cap}, got {value}")


def load() -> Settings:
    """Read the settings from the environment (see the module docstring)."""
    public = _flag("SMOOTHVIZ_PUBLIC")
    models = tuple(
        m.strip()
        for m in os.environ.get("SMOOTHVIZ_MODELS", f"{DEFAULT_MODEL},{GEMMA_MODEL},{LAB_MODEL}").split(",")
        if m.strip()
    )
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    slots = _int("SMOOTHVIZ_MAX_CONCURRENT", cores)
    return Settings(
        public=public,
        models=models,
        max_tokens=_int("SMOOTHVIZ_MAX_TOKENS", 128) if public else None,
        max_chars=_int("SMOOTHVIZ_MAX_CHARS", 20_000) if public or os.environ.get("SMOOTHVIZ_MAX_CHARS") else None,
        max_lab_depth=_int("SMOOTHVIZ_MAX_LAB_DEPTH", 32),
        max_lab_width=_int("SMOOTHVIZ_MAX_LAB_WIDTH", 256),
        max_concurrent=slots,
        threads=_int("SMOOTHVIZ_THREADS", max(1, cores // slots)),
        max_corpus_lines=_int("SMOOTHVIZ_MAX_CORPUS_LINES", 200) if public else None,
    )


class FairQueue:
    """At most ``slots`` holders at once; the others wait in arrival order (first come, first served).

    A plain semaphore lets a newcomer take a freed slot before a thread that has waited longer,
    and cannot say how long the line is. Here every caller takes a ticket; the first ``slots``
    tickets of the line hold a slot, and a waiting caller can be told how many are ahead of it
    (the page shows it). Re-entrant per thread: a page that waits for its turn and then runs
    :func:`smoothviz.analyze`, which takes a turn too, holds one slot, not two. Use it as
    ``with queue.turn():``.
    """

    def __init__(self, slots: int):
        self.slots = slots
        self._cond = threading.Condition()
        self._line: deque = deque()  # tickets in arrival order; the first ``slots`` hold a slot
        self._held = threading.local()

    @contextmanager
    def turn(self, on_wait: Callable[[int], None] | None = None, poll: float = 0.5) -> Iterator[None]:
        """Wait for a slot, then hold it for the ``with`` block.

        Args:
            on_wait: called with the number of callers ahead (running or waiting) every ``poll``
                seconds while this one waits, outside the queue's lock (it may draw on a page, or
                raise to give up: the ticket is returned either way).
        """
        if getattr(self._held, "depth", 0):
            self._held.depth += 1
            try:
                yield
            finally:
                self._held.depth -= 1
            return
        ticket = object()
        with self._cond:
            self._line.append(ticket)
        try:
            while (ahead := self._place(ticket, poll)) >= self.slots:
                if on_wait is not None:
                    on_wait(ahead)
            self._held.depth = 1
            yield
        finally:
            self._held.depth = 0
            with self._cond:
                self._line.remove(ticket)
                self._cond.notify_all()

    def _place(self, ticket, poll: float) -> int:
        """How many tickets are ahead of ``ticket``, after waiting up to ``poll`` seconds for a slot."""
        with self._cond:
            if self._line.index(ticket) >= self.slots:
                self._cond.wait(poll)
            return self._line.index(ticket)

    def waiting(self) -> int:
        """How many callers wait for a slot now (not counting those that hold one)."""
        with self._cond:
            return max(0, len(self._line) - self.slots)


SETTINGS = load()
compute_slots = FairQueue(SETTINGS.max_concurrent)
