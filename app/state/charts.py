"""Built figures, shared by every session (:data:`figure_cache`, one :class:`~state.cache.Bounded`)."""

from __future__ import annotations

import json
import sys

import numpy as np
import plotly.graph_objects as go

from . import cache
from .cache import Bounded, key


class FrozenFigure(go.Figure):
    """A built figure reduced to the dict ``st.plotly_chart`` reads, never changed again.

    ``st.plotly_chart`` only calls ``to_dict()`` (a deep copy and a walk over every value, about
    1 ms a chart) and serialises the result. Keeping only that dict, not the figure's validated
    object tree, holds a figure in ~15–50 kB instead of ~150 kB. ``go.Figure.__init__`` is
    deliberately not called: nothing but :meth:`to_dict` is ever used.
    """

    def __init__(self, spec: dict):
        self._frozen = spec

    def to_dict(self):
        return self._frozen


def _size(obj) -> int:
    """Bytes held by a figure's dict: containers, strings and numbers as CPython sizes them,
    numpy arrays by their buffers (shared templates are counted once, elsewhere)."""
    if isinstance(obj, dict):
        return sys.getsizeof(obj) + sum(sys.getsizeof(k) + _size(v) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return sys.getsizeof(obj) + sum(_size(v) for v in obj)
    if isinstance(obj, np.ndarray):
        return sys.getsizeof(obj) + (obj.nbytes if obj.base is None else 0)
    return sys.getsizeof(obj)


class FigureCache(Bounded):
    """Built figures shared by every session, least recently used out first, within
    ``cache.FIGURE_BYTES`` (``SMOOTHVIZ_FIGURE_CACHE_MB``, 128: some 5,000 figures, the first views of ~250 sentences).

    Every figure of every layer and setting anyone viewed lands here, so a count alone (the
    2,048 entries this replaced) let memory grow with the number of sentences seen. Each entry
    is weighed once, when built: its dict (:func:`_size`) and its key. The plotly template that
    every figure carries is stored once and shared. The newest entry always stays.
    """

    def __init__(self):
        super().__init__(budget=lambda: cache.FIGURE_BYTES)
        self._templates: dict[str, dict] = {}

    def get(self, build, key_: tuple) -> FrozenFigure:
        name = key(list(key_))
        fig = super().get(name)
        if fig is not None:
            return fig
        spec = build().to_dict()  # outside the lock: sessions build different figures at once
        layout = spec.get("layout", {})
        if "template" in layout:
            text = json.dumps(layout["template"], sort_keys=True, default=str)
            with self._lock:
                layout["template"] = self._templates.setdefault(text, layout["template"])
                if len(self._templates) > 16:  # figures.py uses one; never let this grow either
                    self._templates.clear()
        size = _size({k: v for k, v in spec.items() if k != "layout"}) + _size(
            {k: v for k, v in layout.items() if k != "template"}
        )
        with self._lock:
            self.misses += 1
        return self.put(name, FrozenFigure(spec), size)


figure_cache = FigureCache()


def figure(build, key_: tuple) -> FrozenFigure:
    """The figure ``build()`` makes, shared by every session (read-only: Streamlit only reads its dict).

    ``key_`` holds everything the figure depends on (the settings, the view, the layer, …).
    """
    return figure_cache.get(build, key_)
