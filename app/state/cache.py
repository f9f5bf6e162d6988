"""The one cache type of the app (:class:`Bounded`) and the bounds of every cache, from the environment.

``SMOOTHVIZ_CACHE_ENTRIES`` (32) and ``SMOOTHVIZ_CACHE_MB`` (2048) bound the analyses,
``SMOOTHVIZ_FIGURE_CACHE_MB`` (128) the built figures, ``SMOOTHVIZ_CORPUS_ENTRIES`` (8) and
``SMOOTHVIZ_CORPUS_CACHE_MB`` (256) the corpus results; projections and animations have fixed
bounds. README, Deployment, sums them into the server's memory bound.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import OrderedDict

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


def key(obj) -> str:
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

    def get(self, key_):
        """The value stored under ``key_`` (settings or a string), or ``None``; a hit makes it the newest."""
        key_ = key(key_)
        with self._lock:
            self._expire()
            if key_ not in self._entries:
                return None
            self._entries.move_to_end(key_)
            self.hits += 1
            return self._entries[key_][0]

    def put(self, key_, value, size: int):
        """Store ``value`` (``size`` bytes) as the newest entry, then evict the oldest past the bounds."""
        key_ = key(key_)
        with self._lock:
            if key_ in self._entries:
                self._bytes -= self._entries[key_][1]
            self._entries[key_] = (value, size + sys.getsizeof(key_))
            self._entries.move_to_end(key_)
            self._stored[key_] = time.monotonic()
            self._bytes += self._entries[key_][1]
            entries, budget = (limit() for limit in self._limits)
            while len(self._entries) > 1 and (
                (entries is not None and len(self._entries) > entries) or (budget is not None and self._bytes > budget)
            ):
                self._drop(next(iter(self._entries)))
            return value

    def get_or_compute(self, key_, compute, size):
        """``get(key_)``, else ``compute()`` stored with ``size(value)`` bytes (computed once at a time)."""
        key_ = key(key_)
        value = self.get(key_)
        if value is not None:
            return value
        with self._lock:
            lock = self._computing.setdefault(key_, threading.Lock())
        with lock:  # another session computing the same key: wait for it, then read its result
            try:
                value = self.get(key_)
                if value is None:
                    with self._lock:
                        self.misses += 1
                    value = compute()
                    self.put(key_, value, size(value))
                return value
            finally:
                with self._lock:
                    self._computing.pop(key_, None)

    def _expire(self) -> None:
        if self._ttl is None:
            return
        now = time.monotonic()
        for k in [k for k, at in self._stored.items() if now - at > self._ttl]:
            self._drop(k)

    def _drop(self, key_: str) -> None:
        _, size = self._entries.pop(key_)
        del self._stored[key_]
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
            return {
                "entries": len(self._entries),
                "bytes": self._bytes,
                "hits": self.hits,
                "misses": self.misses,
                "evictions": self.evictions,
            }

    def __contains__(self, key_) -> bool:
        with self._lock:
            return key(key_) in self._entries

    def __len__(self) -> int:
        return len(self._entries)
