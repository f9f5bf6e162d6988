"""The Corpus page's results, kept in :data:`corpora` (a :class:`~state.cache.Bounded`, counted)."""

from __future__ import annotations

import hashlib
import json

import streamlit as st

import smoothviz

from . import cache
from .cache import Bounded
from .server import SETTINGS
from .waiting import in_line

corpora = Bounded(lambda: cache.CORPUS_ENTRIES, lambda: cache.CORPUS_BYTES, ttl=cache.CACHE_TTL)


def corpus_key(texts: list[str], settings: dict) -> str:
    """What a corpus result depends on: every line and every setting."""
    return hashlib.sha256(json.dumps([texts, settings], sort_keys=True, default=str).encode()).hexdigest()


def cached_corpus(texts: list[str], settings: dict):
    """The corpus result for these lines and settings if one is cached, else ``None``."""
    return corpora.get(corpus_key(texts, settings))


def run_corpus(texts: list[str], settings: dict, progress=None):
    """:func:`smoothviz.corpus` with the public-demo limits, cached; no queue, no page output
    (the page uses :func:`corpus_or_error`).

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
    result = smoothviz.corpus(
        texts,
        mitigation=None if mitigation in (None, "none") else mitigation,
        params=s.pop("params") or None,
        max_tokens=SETTINGS.max_tokens,
        progress=progress,
        **s,
    )
    with corpora._lock:
        corpora.misses += 1
    return corpora.put(corpus_key(texts, settings), result, result.table.nbytes)  # the table holds the lines too


def corpus_or_error(texts: list[str], settings: dict, unit: str = "sentences"):
    """The Corpus page's way in, as :func:`state.analyses.analysis_or_error` is the others': the
    cached result, or the corpus run in the server's line (its place shown while it waits, then a
    bar that fills line by line, counting ``unit``); ``None`` and a message on the page when it fails."""
    if cached_corpus(texts, settings) is not None:
        return run_corpus(texts, settings)
    bar = st.empty()

    def progress(done: int, total: int, rate: float) -> None:
        bar.progress(done / total, text=f"{done} of {total} {unit} · {rate:.1f} {unit}/s")

    def compute():
        bar.progress(0.0, text=f"Loading the model and analysing {len(texts)} {unit}…")
        return run_corpus(texts, settings, progress)

    try:
        return in_line(compute, "Analysing the corpus", cached=False, failed="The corpus run", spinner=False)
    finally:
        bar.empty()


def corpus_table(texts: list, settings: dict, fmt: str) -> bytes:
    """The corpus result of ``texts`` and ``settings`` as CSV or Parquet (``fmt``): a download built
    when pressed, from the lines and settings alone (:func:`state.analyses.report_html` says why);
    computed again if it has left the cache since."""
    import io

    import pyarrow.parquet as pq

    from smoothviz.corpora.store import HIST

    result = run_corpus(texts, settings)
    if fmt == "csv":
        return result.table.drop([HIST]).to_pandas().to_csv(index=False).encode()
    buffer = io.BytesIO()
    pq.write_table(result.table, buffer)
    return buffer.getvalue()
