"""Small linear-algebra helpers shared by the metrics, the graphs and the weight readers."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import torch

Tensor = torch.Tensor


def gram(H: Tensor) -> Tensor:
    """Inner products of every token pair, ``H Hᵀ`` ``[..., n, n]``: similarity, the Dirichlet
    energy and (for n ≤ d) the singular values all read it, so the analysis computes it once."""
    return H @ H.transpose(-1, -2)


def singular_values(H: Tensor, G: Tensor | None = None) -> Tensor:
    """σ_1 ≥ … ≥ σ_k of each matrix ``H [..., n, d]``, ``[..., k]`` with k = min(n, d).

    From the eigenvalues of the smaller Gram matrix (float64: σ down to ~1e-7·σ₁ stay exact,
    far below the 1e-3 rank threshold); several times faster than an SVD. ``G = gram(H)`` is
    used when given and n ≤ d.
    """
    n, d = H.shape[-2:]
    if n <= d:
        small = gram(H) if G is None else G
    else:
        small = H.transpose(-1, -2) @ H
    return eigvalsh(small).flip(-1).clamp_min(0).sqrt()


def eigvalsh(X: Tensor) -> Tensor:
    """``torch.linalg.eigvalsh`` (ascending, ``X``'s dtype) that does not fail where LAPACK's
    divide-and-conquer driver does not converge. That happens in float32 on graphs a deep model
    has collapsed (a 64-layer lab at 30 tokens: entries from 0.18 down to denormals); the batch is
    then solved again in float64, and a batch that fails there too by scipy's QR driver ``ev`` (real
    symmetric input, as the graphs are)."""
    return _symmetric(X, vectors=False)


def eigh(X: Tensor) -> tuple[Tensor, Tensor]:
    """``torch.linalg.eigh`` with :func:`eigvalsh`'s fallbacks (float64, then scipy's ``ev`` driver)."""
    return _symmetric(X, vectors=True)


def _symmetric(X: Tensor, vectors: bool):
    """:func:`eigvalsh` (``vectors=False``) or :func:`eigh`: torch's solver, on failure in float64, then scipy's."""
    solve = torch.linalg.eigh if vectors else torch.linalg.eigvalsh
    try:
        return solve(X)
    except torch.linalg.LinAlgError:
        pass
    try:
        out = solve(X.double())
    except torch.linalg.LinAlgError:
        import numpy as np
        import scipy.linalg

        flat = X.double().reshape(-1, *X.shape[-2:]).cpu().numpy()
        pairs = [scipy.linalg.eigh(m, driver="ev", check_finite=False) for m in flat]
        vals = torch.from_numpy(np.stack([p[0] for p in pairs])).reshape(X.shape[:-1])
        out = (vals, torch.from_numpy(np.stack([p[1] for p in pairs])).reshape(X.shape)) if vectors else vals
    like = lambda t: t.to(device=X.device, dtype=X.dtype)  # noqa: E731
    return tuple(map(like, out)) if vectors else like(out)


_threads = threading.Lock()
_depth = 0
_saved = 1


@contextmanager
def one_thread():
    """Torch's intra-op pool at one thread for the duration (nested and concurrent uses restore the
    count once, when the last one leaves).

    LAPACK's eigensolvers gain little from a second thread and lose everything when the cores are
    shared: on the 2-core machine with other work running, 72 symmetric 128×128 eigenvalue
    problems took 4.7 s with torch's 2 threads and 76 ms with one; 25 general ones 4.9 s and
    0.17 s (``smoothviz.bench``'s README section). The analysis after the forward pass (and each
    streamed layer's eigensolvers) runs inside this; the forward pass keeps every thread.
    Another thread's torch work meanwhile also runs on one thread: slower, never different.
    """
    global _depth, _saved
    with _threads:
        if _depth == 0:
            _saved = torch.get_num_threads()
            torch.set_num_threads(1)
        _depth += 1
    try:
        yield
    finally:
        with _threads:
            _depth -= 1
            if _depth == 0:
                torch.set_num_threads(_saved)


@contextmanager
def all_threads():
    """Inside :func:`one_thread`: torch's intra-op pool back at the process's count for the duration,
    for large dense products (a 2,048-token Gram matrix), which gain from every core where
    eigensolvers do not. Outside it, nothing changes. Concurrent analyses inside ``one_thread``
    meanwhile get every thread too: faster or slower, never different."""
    with _threads:
        inside = _depth > 0
        if inside:
            torch.set_num_threads(_saved)
    try:
        yield
    finally:
        with _threads:
            if inside and _depth > 0:
                torch.set_num_threads(1)


PARALLEL_WORK = 2_000_000  # Σ n³ of the matrices (about 8 ms of LAPACK) from which threads pay


def per_matrix(fn, X: Tensor) -> Tensor:
    """``fn`` (batched over the leading dimension) on the matrices ``X [k, n, n]``; inside
    :func:`one_thread`, from :data:`PARALLEL_WORK`, split over as many Python threads as the count
    ``one_thread`` set aside, each LAPACK call on one thread (LAPACK releases the interpreter lock).

    At 128 tokens on MiniLM: 25 general eigenvalue problems 45 → 26 ms, 72 symmetric ones 23 → 13 ms on
    2 cores. Outside ``one_thread`` (torch's threads already inside each call) and below the threshold
    (starting threads costs more than it saves), ``fn(X)`` as it is. Same numbers either way.
    """
    with _threads:
        workers = _saved if _depth > 0 else 1
    workers = min(workers if X.shape[0] * X.shape[-1] ** 3 >= PARALLEL_WORK else 1, X.shape[0])
    if workers <= 1:
        return fn(X)
    with ThreadPoolExecutor(workers) as pool:
        return torch.cat(list(pool.map(fn, X.tensor_split(workers))))
