"""One joint 2-D projection of all layers' token states (docs/SCIENCE.md §5).

Both runs and every layer go into one fit so that positions are comparable; a token's
trajectory is its path through layers 0…L. Projections distort: the metrics are the truth.
"""

from __future__ import annotations

import threading

import numpy as np

from smoothviz.options import PROJECTIONS

SEED = 42
MIN_UMAP_POINTS = 12  # below this UMAP's neighbour graph is meaningless: PCA instead, with a note

_umap_lock = threading.Lock()


def prepare(states: np.ndarray, normalize: bool = True) -> np.ndarray:
    """Mean-centre and L2-normalise each layer's tokens: ``[..., n, d]`` → same shape.

    Without it the norm growth of deep layers dominates the picture.
    """
    x = np.asarray(states, dtype=np.float64)
    if not normalize:
        return x
    x = x - x.mean(axis=-2, keepdims=True)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def pca_2d(points: np.ndarray) -> np.ndarray:
    """Deterministic PCA to 2-D (SVD; each axis signed so its largest-magnitude loading is positive)."""
    x = points - points.mean(0)
    if x.shape[0] < 2:
        return np.zeros((x.shape[0], 2))
    # Principal axes from the d×d covariance: thousands of points cost no more than a few.
    _, vecs = np.linalg.eigh(x.T @ x)
    vt = vecs[:, ::-1][:, :2].T
    signs = np.sign(vt[np.arange(vt.shape[0]), np.abs(vt).argmax(1)])
    coords = x @ (vt * np.where(signs == 0, 1, signs)[:, None]).T
    if coords.shape[1] < 2:
        coords = np.hstack([coords, np.zeros((coords.shape[0], 2 - coords.shape[1]))])
    return coords


def umap_2d(points: np.ndarray) -> np.ndarray:
    """UMAP with a fixed random_state (reproducible); neighbours scale with the point count.

    Nearest-neighbour descent is forced even below UMAP's 4,096-point switch: after its one-off
    compile (paid by :func:`warm_up`) it beats the exact search there (measured by ``smoothviz.bench``).
    """
    import umap  # heavy import (numba): only when asked for

    n_neighbors = int(min(15, max(2, points.shape[0] // 10 + 5), points.shape[0] - 1))
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=n_neighbors,
        min_dist=0.3,
        random_state=SEED,
        n_jobs=1,
        init="pca",
        n_epochs=200,
        metric="euclidean",
        force_approximation_algorithm=True,
    )
    with _umap_lock:  # numba's first compile is not something to do twice at once
        return reducer.fit_transform(points.astype(np.float32)).astype(np.float64)


def project(runs: list[np.ndarray], method: str, normalize: bool = True) -> tuple[np.ndarray, str, str]:
    """Project ``runs`` (each ``[L+1, n, d]``) jointly.

    Returns:
        ``(coords [len(runs), L+1, n, 2], method actually used, note)``; the note says why
        UMAP fell back to PCA, or is empty.
    """
    coords, _, method, note = project_with(runs, None, method, normalize)
    return coords, method, note


def project_with(
    runs: list[np.ndarray], extra: np.ndarray | None, method: str, normalize: bool = True
) -> tuple[np.ndarray, np.ndarray | None, str, str]:
    """:func:`project`, with ``extra`` states ``[n, d]`` (a fusion's fused output) fitted in the
    same projection as one more layer: ``(coords, extra's [n, 2] or None, method, note)``.

    An ``extra`` of another width (fusion-concat's n × k·d) has no place among the layers' d-wide
    states: it is left out (``None``) and the note says so."""
    if method == "none" or method not in PROJECTIONS:
        raise ValueError(f"projection must be one of {', '.join(set(PROJECTIONS) - {'none'})}; got '{method}'")
    stacked = np.stack([prepare(r, normalize) for r in runs])  # [R, L+1, n, d]
    points = stacked.reshape(-1, stacked.shape[-1])
    notes = []
    if extra is not None and np.shape(extra)[-1] != points.shape[-1]:
        notes.append(
            f"The fused output has {np.shape(extra)[-1]} dimensions per token, the layers {points.shape[-1]}: "
            "it cannot share their projection, so it has no ★."
        )
        extra = None
    if extra is not None:
        points = np.concatenate([points, prepare(extra, normalize)])
    if method == "umap" and points.shape[0] < MIN_UMAP_POINTS:
        method = "pca"
        notes.append(f"UMAP needs at least {MIN_UMAP_POINTS} points; showing PCA instead.")
    coords = umap_2d(points) if method == "umap" else pca_2d(points)
    main = stacked.shape[0] * stacked.shape[1] * stacked.shape[2]
    extra_xy = None if extra is None else coords[main:]
    return (coords[:main].reshape(*stacked.shape[:-1], 2), extra_xy, method, " ".join(notes))


def warm_up() -> None:
    """Pay numba's compile cost for UMAP once (call from a background thread at start-up)."""
    rng = np.random.default_rng(0)
    umap_2d(rng.normal(size=(40, 8)))
