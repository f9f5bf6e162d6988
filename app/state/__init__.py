"""The pages' one way in: every page calls :func:`setup` first, then only what this package exports.

One module per job, one cache type behind all of them (:class:`~state.cache.Bounded`, bounded by
entries and bytes, counted), nothing done at import:

- :mod:`state.process`: the process's set-up (:func:`setup`), timings;
- :mod:`state.server`: the server's settings from the environment and its fair queue;
- :mod:`state.waiting`: the queue's place and progress on the page, and every failure as a message;
- :mod:`state.cache`: :class:`Bounded` and every cache's bounds;
- :mod:`state.analyses`: the analyses (:data:`ledger`), projections, animations, reports, model shapes;
- :mod:`state.corpus`: the Corpus page's results;
- :mod:`state.charts`: built figures shared by every session;
- :mod:`state.warm`: the examples and UMAP's warm-up;
- :mod:`state.memory`: the memory thread (collection, glibc's allocator) and its diagnosis log.

A page analyses through :func:`analysis_or_error` (or :func:`corpus_or_error`): the same cache,
bounds, place in the server's line and messages (never a traceback) on every page. The server's
memory levels off however many sentences and pages it sees (README, Deployment).
"""

from __future__ import annotations

from .analyses import (
    analysis_or_error,
    animation_or_error,
    compare_report_html,
    head_count,
    ledger,
    model_shape,
    projected,
    report_html,
    run_analysis,
)
from .charts import figure, figure_cache
from .corpus import cached_corpus, corpora, corpus_key, corpus_or_error, corpus_table, run_corpus
from .memory import let_go
from .process import log_time, setup, timed
from .server import SETTINGS
from .warm import examples, warm_up

__all__ = [
    "setup",
    "analysis_or_error",
    "corpus_or_error",
    "projected",
    "animation_or_error",
    "report_html",
    "compare_report_html",
    "model_shape",
    "head_count",
    "run_analysis",
    "run_corpus",
    "cached_corpus",
    "corpus_key",
    "corpus_table",
    "figure",
    "examples",
    "warm_up",
    "log_time",
    "let_go",
    "timed",
    "SETTINGS",
    "ledger",
    "corpora",
    "figure_cache",
    "caches",
]


def caches() -> dict:
    """Every cache of the app by name, for the memory log and the tests."""
    from .analyses import animations, projections

    return {
        "analyses": ledger,
        "projections": projections,
        "animations": animations,
        "corpora": corpora,
        "figures": figure_cache,
    }
