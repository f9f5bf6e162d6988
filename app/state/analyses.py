"""The analyses every page shows, and what is derived from them: projections, animations, reports.

All kept in :class:`~state.cache.Bounded` caches shared by every session: the analyses in
:data:`ledger` (entries and bytes, counted), the projections' coordinates, the animations.
An analysis is immutable (its arrays refuse writes), so every session reads the same object,
never a pickled copy. Nothing else may hold a result past its page run: a download's callable is
a ``functools.partial`` of a function here with the settings, never a closure over the page
(Streamlit keeps those as long as it keeps the session).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import smoothviz
from smoothviz.model.handles import get_handle

import images  # app/images.py: the example pictures and uploads
from . import cache
from .cache import Bounded, key
from .server import SETTINGS
from .waiting import in_line


class Ledger(Bounded):
    """The analyses: at most ``CACHE_ENTRIES`` (``SMOOTHVIZ_CACHE_ENTRIES``, 32) and ``CACHE_BYTES``
    bytes (``SMOOTHVIZ_CACHE_MB``, 2048), each kept at most ``CACHE_TTL`` (an hour). An entry's
    size grows with the square of the sentence's length (``Analysis.nbytes``)."""

    def __init__(self):
        super().__init__(lambda: cache.CACHE_ENTRIES, lambda: cache.CACHE_BYTES, ttl=cache.CACHE_TTL)


ledger = Ledger()
projections = Bounded(lambda: cache.PROJECTION_ENTRIES, lambda: cache.PROJECTION_BYTES, ttl=cache.CACHE_TTL)
animations = Bounded(lambda: cache.ANIMATION_ENTRIES, lambda: cache.ANIMATION_BYTES, ttl=cache.CACHE_TTL)
DEFAULTS = dict(
    model="default",
    device="auto",
    lab=None,
    mitigation="neutreno",
    params=None,
    head=None,
    symmetrize="sym",
    exclude_special=False,
    projection="pca",
    image=None,
)


def run_analysis(*, text: str, **options) -> smoothviz.Analysis:
    """The analysis of ``text`` with ``options`` (see :data:`DEFAULTS`), from the analysis cache
    (:data:`ledger`) or computed and stored there; no queue, no page output (pages use
    :func:`analysis_or_error`).

    Raises:
        smoothviz.AnalysisError, ModelError, MitigationError: with a message for the user.
    """
    unknown = options.keys() - DEFAULTS.keys()
    if unknown:
        raise TypeError(f"unknown analysis settings: {', '.join(sorted(unknown))}")
    settings = {**DEFAULTS, **options, "text": text}
    return ledger.get_or_compute(settings, lambda: _compute(settings), lambda analysis: analysis.nbytes)


def _compute(s: dict) -> smoothviz.Analysis:
    """:func:`smoothviz.analyze` with the public-demo limits."""
    lab = s["lab"] if s["model"] == "lab" else None
    SETTINGS.check(s["model"], lab, s["params"])  # the public-demo allow-list
    image = images.resolve(s["image"]) if s["image"] else None  # a vision model's picture (app/images.py)
    return smoothviz.analyze(
        None if image else s["text"],
        image=image,
        model=s["model"],
        device=s["device"],
        lab=lab,
        mitigation=None if s["mitigation"] in (None, "none") else s["mitigation"],
        params=s["params"] or None,
        head=s["head"],
        symmetrize=s["symmetrize"],
        exclude_special=s["exclude_special"],
        projection=s["projection"],
        max_tokens=SETTINGS.max_tokens,
        max_chars=SETTINGS.max_chars,
    )


def _full(settings: dict) -> dict:
    return {**DEFAULTS, **settings}


def analysis_or_error(settings: dict, project: bool = False) -> smoothviz.Analysis | None:
    """The one way in for every page: run (or fetch) the analysis of ``settings`` through the
    analysis cache, waiting in the server's line with its place shown on a miss; ``None`` and a
    message on the page when it fails. Without ``project`` the analysis has no projection
    (:func:`projected` adds it when the trajectories are opened); with it, the projection of
    ``settings["projection"]``."""
    plain = {**settings, "projection": "none"}
    analysis = in_line(
        lambda: run_analysis(**plain), "Loading the model and analysing the sentence", cached=_full(plain) in ledger
    )
    if analysis is None or not project or settings.get("projection", "none") == "none":
        return analysis
    return projected(settings, analysis)


def projected(settings: dict, analysis: smoothviz.Analysis) -> smoothviz.Analysis | None:
    """``analysis`` with its tokens projected as ``settings["projection"]`` says (cached: only the
    coordinates are kept, the arrays stay the analysis's own)."""
    name, method = key(_full(settings)), settings["projection"]

    def compute():
        done = analysis.projected(method)
        return done.projection, done.fused_projection, done.projection_method, done.notes[len(analysis.notes) :]

    extra = in_line(
        lambda: projections.get_or_compute(name, compute, lambda v: v[0].nbytes + (0 if v[1] is None else v[1].nbytes)),
        "Projecting every layer with " + method.upper(),
        cached=name in projections,
        failed="The projection",
    )
    if extra is None:
        return None
    coords, fused, used, notes = extra
    return dataclasses.replace(
        analysis, projection=coords, fused_projection=fused, projection_method=used, notes=analysis.notes + notes
    )


def animation_or_error(settings: dict, analysis: smoothviz.Analysis, views: tuple[str, ...], fmt: str) -> bytes | None:
    """The collapse as a GIF or MP4 (``fmt``: ``.gif`` / ``.mp4``) of ``views``, one frame per
    layer (``smoothviz.outputs.animate``); rendered in the server's line, then cached for everyone."""
    from smoothviz.outputs import animate

    shown = projected(settings, analysis) if "trajectory" in views else analysis
    if shown is None:
        return None
    name = key([_full(settings), views, fmt])
    return in_line(
        lambda: animations.get_or_compute(name, lambda: _animation(shown, views, fmt), len),
        f"Rendering {len(animate.frames_of(analysis))} frames and encoding them",
        cached=name in animations,
        failed="The animation",
    )


def _animation(analysis: smoothviz.Analysis, views: tuple[str, ...], fmt: str) -> bytes:
    from smoothviz.outputs import animate

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "collapse" + fmt)
        animate.animate(analysis, out, views)
        return Path(out).read_bytes()


def report_html(settings: dict, layer: int) -> str:
    """The main page's HTML report of ``settings`` at ``layer``, trajectories included: a download
    built when its button is pressed. Give the button ``functools.partial(report_html, settings,
    layer)``, never a closure over the page: Streamlit keeps a download's callable for as long as
    it keeps the session (disconnected ones too), and a closure would keep the page's analysis
    alive with it, outside every cache bound."""
    from smoothviz.outputs import report

    analysis = run_analysis(**{**settings, "projection": "none"})
    return report.build_report(analysis.projected(settings["projection"]), layer)


def compare_report_html(text: str, runs: list[tuple[str, dict]], *, relative: bool, depth: float) -> str:
    """The Compare page's HTML report of ``runs`` (name, analysis settings): a download built when
    pressed, from the settings alone (:func:`report_html` says why)."""
    from smoothviz.outputs import report

    shown = []
    for name, settings in runs:
        analysis = run_analysis(**settings)
        shown.append((name, analysis, analysis.mitigated if analysis.mitigated is not None else analysis.baseline))
    return report.build_compare_report(text, shown, relative=relative, depth=depth)


def model_shape(model: str, device: str, lab: dict | None) -> tuple[int, int] | None:
    """The chosen model's ``(layers, heads)``, for the head box and the mitigation's parameters;
    ``None`` when it cannot load (the analysis, about to load the same model from the same shared
    cache, then says why)."""
    if model == "lab":
        return (int(lab["depth"]), int(lab["heads"])) if lab else None
    try:
        SETTINGS.check(model)  # a public server never loads what it does not allow
        handle = get_handle(model, device)
        return handle.n_layers, handle.heads
    except Exception:
        return None


def head_count(model: str, device: str, lab: dict | None) -> int | None:
    """The chosen model's heads (:func:`model_shape`), ``None`` when it cannot load."""
    shape = model_shape(model, device, lab)
    return shape[1] if shape else None
