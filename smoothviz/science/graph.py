"""Attention as a graph (docs/SCIENCE.md §1): aggregation, symmetrisation, Laplacian spectra, rollout.

All functions are batched over leading dimensions (layers, heads); none loops over matrices
except :func:`rollout`, whose product over depth is sequential by definition.

One Laplacian for every graph: the signed normalized Laplacian with absolute degrees (Kunegis
et al. 2010), ``𝓛 = I − D̄^{-1/2} S D̄^{-1/2}`` with ``D̄ = diag(|S|·1)``. For the nonnegative
graphs of softmax attention D̄ = D and it is docs/SCIENCE.md §1's Laplacian exactly; AttnScale's
A′ = A_DC + (1 + ω)(A − A_DC) has negative entries, and with absolute degrees its spectrum still
lies in [0, 2] (D̄^{-1/2} S D̄^{-1/2} is similar to D̄^{-1} S, whose absolute row sums are 1).
Eigenvalues are never clamped: a value outside [0, 2] would be a bug, not something to hide.
For a signed graph the smallest eigenvalue is 0 only when the graph is balanced, so λ₂ is then
not the mixing gap of a random walk.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np
import scipy.linalg
import torch
from threadpoolctl import threadpool_limits

from smoothviz.options import SYMMETRIZE, check
from smoothviz.science import linalg
from smoothviz.science.linalg import per_matrix, singular_values

Tensor = torch.Tensor


@dataclass(frozen=True)
class GraphOptions:
    """How an attention tensor becomes a graph.

    Attributes:
        head: ``None`` for the mean over heads, or the index of one head.
        symmetrize: ``"sym"`` for (A + Aᵀ)/2, ``"ata"`` for AᵀA.
        exclude_special: drop [CLS]/[SEP]/<s>/</s> rows and columns, then renormalise rows.
    """

    head: int | None = None
    symmetrize: str = "sym"
    exclude_special: bool = False

    def __post_init__(self):
        check("symmetrisation", self.symmetrize, SYMMETRIZE)
        if self.head is not None and (not isinstance(self.head, int) or self.head < 0):
            raise ValueError(f"head must be a non-negative integer or None (mean over heads), got {self.head!r}")


BY_LAYER_BYTES = 4 * 2**20  # elementwise temporaries of about this size (one long layer, many short ones)


def by_layer(fn, A: Tensor) -> Tensor:
    """``fn`` on the heads ``[h, n, n]`` of each layer of ``A [..., L, h, n, n]``, a few layers at a
    time; results stacked to ``[..., L, …]``: the same numbers as ``fn`` on every layer at once.

    An elementwise temporary of every head at once is fresh memory whose page faults cost more
    than its arithmetic on long sentences; one layer's temporary reuses freed memory and stays in
    cache. Short sentences (corpus mode) take as many layers per call as fit
    :data:`BY_LAYER_BYTES`, so that their calls are not mostly overhead.
    """
    layers = A.reshape(-1, *A.shape[-3:])
    step = max(1, BY_LAYER_BYTES // max(1, layers[0].numel() * layers.element_size()))
    out = torch.cat([fn(chunk) for chunk in layers.split(step)])  # fn is batched over leading dims
    return out.reshape(*A.shape[:-3], *out.shape[1:])


def restrict(A: Tensor, keep: Tensor) -> Tensor:
    """Keep the token rows and columns in ``keep`` and renormalise rows to sum to 1.

    With every token kept, ``A`` itself: its softmax rows already sum to 1, and at 512 tokens a
    copy of every head costs a tenth of the forward pass.
    """
    if keep.numel() == A.shape[-1] and bool((keep == torch.arange(keep.numel())).all()):
        return A
    A = A[..., keep, :][..., keep]
    return A / A.sum(-1, keepdim=True).clamp_min(1e-30)


def aggregate(A: Tensor, head: int | None, kept: Tensor | None = None) -> Tensor:
    """``[..., L, h, n, n]`` → ``[..., L, n, n]``: mean over heads or one head.

    ``kept [L, h]`` (bool): the mean takes only the kept heads of each layer; a layer that
    keeps none gets an all-zero graph (the caller nulls its graph metrics).
    """
    if head is None and kept is not None:
        w = kept.to(A.dtype).to(A.device)
        return (A * w[..., None, None]).sum(-3) / w.sum(-1).clamp_min(1)[..., None, None]
    if head is None:
        return A.mean(-3)
    if head >= A.shape[-3]:
        raise ValueError(f"head {head} does not exist: this model has heads 0..{A.shape[-3] - 1}")
    return A[..., head, :, :]


def symmetrize(A: Tensor, mode: str) -> Tensor:
    """(A + Aᵀ)/2 or AᵀA, batched."""
    At = A.transpose(-1, -2)
    return (A + At).mul_(0.5) if mode == "sym" else At @ A


def normalized_adjacency(S: Tensor) -> Tensor:
    """D̄^{-1/2} S D̄^{-1/2} with absolute degrees D̄ = diag(|S|·1) (D̄ = D when S ≥ 0).

    A node of zero degree gets an all-zero row and column.
    """
    deg = S.abs().sum(-1)
    inv = torch.where(deg > 0, deg.clamp_min(1e-300).rsqrt(), torch.zeros_like(deg))
    return (S * inv.unsqueeze(-1)).mul_(inv.unsqueeze(-2))


def has_negative(S: Tensor) -> Tensor:
    """Per graph ``[..., n, n]`` → ``[...]``: some weight is negative (a signed graph, e.g. AttnScale's)."""
    return S.amin(-1).amin(-1) < 0


def normalized_laplacian(S: Tensor) -> Tensor:
    """𝓛 = I − D̄^{-1/2} S D̄^{-1/2}, D̄ = diag(|S|·1): the signed normalized Laplacian (Kunegis
    et al. 2010), equal to I − D^{-1/2} S D^{-1/2} for a nonnegative S; eigenvalues in [0, 2]."""
    return torch.eye(S.shape[-1], dtype=S.dtype, device=S.device) - normalized_adjacency(S)


SUBSET_FROM = 160  # from about this many nodes, LAPACK's subset solver beats a batched full eigvalsh
ITERATIVE_FROM = 512  # from this many nodes, ARPACK's Lanczos (O(n²) per step) beats any O(n³) solver
NODES_PER_RESTART = 160  # ARPACK's restarts (22 products each) allowed per node count, then LAPACK


def arpack_restarts(n: int) -> int:
    """ARPACK's ``maxiter`` for an n-node problem: about n/7 matrix–vector products, what LAPACK's
    dense solver costs for the same answer. Typical attention graphs converge in 25–200 products
    (MiniLM's heads at 511 tokens); a collapsed one whose top eigenvalues crowd together took up to
    112,000 (0.6 s each, 5 minutes for a 64-layer lab model's heads at 512 tokens): after this many
    restarts the dense solver answers instead, so the worst case costs about twice the dense one."""
    return max(2, n // NODES_PER_RESTART)


def spectral_gaps(S: Tensor) -> Tensor:
    """λ₂ of each graph's normalized Laplacian, ``[..., n, n]`` → ``[...]``; NaN for one node.

    λ₂ = 1 − μ₂ with μ₂ the second-largest eigenvalue of D̄^{-1/2} S D̄^{-1/2} (never clamped). Below
    ``SUBSET_FROM`` nodes a batched eigvalsh computes every μ; from there scipy's ``evr`` driver
    computes only the top two, about twice as fast at 256 nodes (one call per matrix).
    """
    n = S.shape[-1]
    if n < 2:
        return torch.full(S.shape[:-2], float("nan"), dtype=S.dtype)
    N = normalized_adjacency(S)
    if n < SUBSET_FROM:
        mu2 = per_matrix(linalg.eigvalsh, N.reshape(-1, n, n))[..., -2].reshape(S.shape[:-2])
    elif n >= ITERATIVE_FROM:
        gaps = [second_pair(m, normalized=True)[0] for m in N.reshape(-1, n, n)]
        return torch.tensor(gaps, dtype=S.dtype).reshape(S.shape[:-2])
    else:
        top_two = [
            scipy.linalg.eigh(m, eigvals_only=True, subset_by_index=[n - 2, n - 1], driver="evr", check_finite=False)
            for m in N.reshape(-1, n, n).cpu().numpy()
        ]
        mu2 = torch.tensor(np.array(top_two)[:, 0], dtype=S.dtype).reshape(S.shape[:-2])
    return 1 - mu2


def _start(n: int) -> np.ndarray:
    """ARPACK's starting vector: fixed (the same answer on every run), positive, not constant."""
    return np.random.default_rng(0).uniform(0.5, 1.5, n)


def second_pair(S: Tensor, normalized: bool = False) -> tuple[float, Tensor]:
    """λ₂ of one graph's normalized Laplacian and its eigenvector, for a long sentence's graph
    ``[n, n]``: the two largest eigenvalues μ₁ ≥ μ₂ of D̄^{-1/2} S D̄^{-1/2} by ARPACK's Lanczos
    (``scipy.sparse.linalg.eigsh``, tolerance 0: machine precision), λ₂ = 1 − μ₂. Each step is
    one matrix–vector product, O(n²), where a dense eigendecomposition is O(n³): at 2,048 nodes
    a few hundred milliseconds instead of seconds. ``normalized``: ``S`` already is
    D̄^{-1/2} S D̄^{-1/2}. The vector's sign is ARPACK's (:func:`fiedler` fixes it). Falls back to
    LAPACK's subset solver if Lanczos does not converge. A graph without edges (every head of a
    layer ablated: S = 0, 𝓛 = I) has no Krylov space to search (ARPACK stops with "starting
    vector is zero"); it and any other ARPACK error take the dense eigendecomposition of 𝓛, the
    short-sentence path's own (:func:`laplacian_spectrum`), so both paths give the same vector.

    Returns:
        ``(λ₂, vector [n] float64)``; NaN and zeros for fewer than two nodes.
    """
    from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, eigsh

    n = S.shape[-1]
    if n < 2:
        return float("nan"), torch.zeros(n, dtype=torch.float64)
    N = (S if normalized else normalized_adjacency(S)).double().cpu().numpy()
    if not N.any():  # no edge: 𝓛 = I
        return _dense_second_pair(N)
    try:
        if n < 4:
            raise ArpackNoConvergence("too small for ARPACK", np.zeros(0), np.zeros((n, 0)))
        with threadpool_limits(1):  # ARPACK's products: one BLAS thread (see linalg.one_thread)
            mu, vecs = eigsh(N, k=2, which="LA", tol=0, v0=_start(n), ncv=min(n, 24), maxiter=arpack_restarts(n))
    except ArpackNoConvergence:
        mu, vecs = scipy.linalg.eigh(N, subset_by_index=[n - 2, n - 1], driver="evr", check_finite=False)
    except ArpackError:
        return _dense_second_pair(N)
    return float(1 - mu[0]), torch.from_numpy(np.ascontiguousarray(vecs[:, 0]))


def _dense_second_pair(N: np.ndarray) -> tuple[float, Tensor]:
    """λ₂ and its vector from the full eigendecomposition of 𝓛 = I − N (the batched path's solver)."""
    vals, vecs = linalg.eigh(torch.eye(N.shape[0], dtype=torch.float64) - torch.from_numpy(N))
    return float(vals[1]), vecs[:, 1].contiguous()


def top_singular_ratio(R: Tensor) -> float:
    """σ₂/σ₁ of one matrix ``[n, n]`` by ARPACK (``scipy.sparse.linalg.svds``, tolerance 0): only
    the two largest singular values, O(n²) per step, for the rollout of a long sentence."""
    from scipy.sparse.linalg import ArpackNoConvergence, svds

    n = R.shape[-1]
    M = R.double().cpu().numpy()
    try:
        if n < 4:
            raise ArpackNoConvergence("too small for ARPACK", np.zeros(0), np.zeros((n, 0)))
        with threadpool_limits(1):
            sv = svds(M, k=2, tol=0, v0=_start(n), maxiter=arpack_restarts(n), return_singular_vectors=False)
            sv = np.sort(sv)[::-1]
    except ArpackNoConvergence:
        sv = scipy.linalg.svdvals(M)[:2]
    return float(sv[1] / max(sv[0], 1e-300)) if n > 1 else float("nan")


def laplacian_spectrum(S: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues (ascending, in [0, 2] up to rounding; never clamped) and eigenvectors of the
    normalized Laplacian."""
    return linalg.eigh(normalized_laplacian(S.double()))


def spectral_gap(vals: Tensor) -> Tensor:
    """λ₂ of the normalized Laplacian from ascending eigenvalues; NaN for one node."""
    if vals.shape[-1] < 2:
        return torch.full(vals.shape[:-1], float("nan"), dtype=vals.dtype)
    return vals[..., 1]


def fiedler(vecs: Tensor) -> Tensor:
    """Eigenvector of λ₂ with its largest-magnitude entry positive, so plots never flip."""
    if vecs.shape[-1] < 2:
        return torch.zeros(vecs.shape[:-1], dtype=vecs.dtype)
    return signed_vector(vecs[..., :, 1])


def signed_vector(v: Tensor) -> Tensor:
    """``v [..., n]`` with its largest-magnitude entry positive (:func:`fiedler`'s convention)."""
    top = torch.gather(v, -1, v.abs().argmax(-1, keepdim=True))
    return v * torch.where(top < 0, -1.0, 1.0).to(v.dtype)


def row_entropy(A: Tensor) -> Tensor:
    """Mean over rows of −Σ_j A_ij ln A_ij (nats), ``[...]``."""
    return -torch.special.xlogy(A, A).sum(-1).mean(-1)  # xlogy(0, 0) = 0


def distance_from_uniform(A: Tensor) -> Tensor:
    """‖A − 11ᵀ/n‖_F."""
    return (A - 1.0 / A.shape[-1]).norm(dim=(-2, -1))


def is_stochastic(P: Tensor) -> Tensor:
    """Per matrix: no negative entry (rows summing to 1 then make it stochastic, every |λ| ≤ 1)."""
    return P.amin(-1).amin(-1) >= 0


def subdominant_bound(P: Tensor) -> Tensor:
    """An upper bound on |λ| for every eigenvalue of ``P`` but one Perron 1, ``[...]``.

    ``P`` has rows summing to 1 (P1 = 1), its entries may be negative (AttnScale's A′). Brauer:
    with ``v = Pᵀ1/n`` (so vᵀ1 = 1), ``B = P − 1vᵀ`` has P's eigenvalues with that 1 replaced by
    0, so any matrix norm of B bounds the rest (Frobenius, max row and column sums). For a
    nonnegative P, so do 1 (P is stochastic) and Doeblin's coefficient ``1 − Σ_k min_i P_ik``,
    which bounds Dobrushin's τ₁(P). The result is raised by 1e-4 (relative) and 1e-6 to cover
    float32 rounding.
    """
    B = (P - P.mean(-2, keepdim=True)).abs_()
    doeblin = torch.where(
        is_stochastic(P), (1 - P.amin(-2).sum(-1)).clamp_max(1), torch.full_like(B[..., 0, 0], torch.inf)
    )
    norms = torch.stack([torch.linalg.vector_norm(B, dim=(-2, -1)), B.sum(-1).amax(-1), B.sum(-2).amax(-1), doeblin])
    return _raised(norms.amin(0).clamp_min(0))


def deflated_radius(P: Tensor, steps: int = 8) -> Tensor:
    """A sharper, costlier bound than :func:`subdominant_bound` on P's non-Perron |λ|, ``[...]``.

    Brauer's deflation ``B = P − 1vᵀ`` (vᵀ1 = 1) holds for every such v; the bound is best for
    P's stationary distribution, which ``steps`` products v ← vP approach (each keeps vᵀ1 = 1
    because P1 = 1). Then ρ(B) ≤ ρ(|B|) ≤ max_i (|B|x)_i / x_i for any x > 0 (Collatz–Wielandt),
    with x from ``steps`` power iterations on |B|. Computed in float64 and raised like
    :func:`subdominant_bound`; about 2·steps matrix–vector products per matrix.
    """
    P = P.double()
    v = P.mean(-2, keepdim=True)  # [..., 1, n], sums to 1
    for _ in range(steps):
        v = v @ P
    Bt = (P - v).abs_().transpose(-1, -2)  # x ↦ |B|x as rows: x Bᵀ
    x = torch.ones(P.shape[:-2] + (1, P.shape[-1]), dtype=P.dtype, device=P.device)
    for _ in range(steps):
        x = x @ Bt
        x = x / x.amax(-1, keepdim=True).clamp_min(1e-300) + 1e-12  # stays positive
    return _raised(((x @ Bt) / x).amax(-1).squeeze(-1))


def _raised(bound: Tensor) -> Tensor:
    """A bound computed from float32 attention, raised by 1e-4 (relative) and 1e-6 to cover rounding."""
    return bound * (1 + 1e-4) + 1e-6


def rollout_ratio(A: Tensor) -> Tensor:
    """σ₂/σ₁ of R_l = Â_l … Â_1 with Â = ½(A + I), for directed graphs ``[..., L, n, n]`` → ``[..., L]``."""
    L, n = A.shape[-3], A.shape[-1]
    eye = torch.eye(n, dtype=A.dtype, device=A.device)
    R, products = eye, []
    for layer in range(L):  # sequential by definition
        R = (0.5 * (A[..., layer, :, :] + eye)) @ R
        products.append(R)
    if n < 2:
        return torch.full(A.shape[:-2], float("nan"), dtype=A.dtype)
    sv = singular_values(torch.stack(products, -3))
    return sv[..., 1] / sv[..., 0].clamp_min(1e-300)


def attention_contraction_lambda(A: Tensor, steps: int = 64, rtol: float = 1e-6) -> Tensor:
    """Shi et al.'s λ: the largest eigenvalue of Aᵀ P A over heads, ``[L, h, n, n]`` → ``[L]``.

    λ_h = ‖B‖₂² with B = PA (A less its column means). Two O(n²) bounds per head settle which
    heads can hold their layer's maximum: every unit vector's Rayleigh quotient is a lower bound
    (a column's or a row's squared norm of B), and ‖B‖_F² and ‖B‖₁‖B‖_∞ are upper bounds. A head
    whose upper bound lies below the best lower bound of its layer cannot be the maximum and is
    left out (on MiniLM at 128 tokens 45 of 72 heads). The rest go to :func:`_lanczos_top`, or
    up to :data:`SHI_DENSE_UP_TO` tokens to one dense eigendecomposition each (faster there: 0.6 ms
    for every head of MiniLM at 16 tokens against 2.2 ms of Lanczos).
    """
    n = A.shape[-1]
    bounds = by_layer(_shi_bounds, A.unsqueeze(-3))  # one head at a time when long: [..., L, h, 2]
    lower, upper = bounds[..., 0], bounds[..., 1]
    layer_lower = lower.amax(-1, keepdim=True).expand_as(lower)
    live = (upper * (1 + 1e-4) + 1e-6 >= layer_lower * (1 - 1e-4)).flatten()  # float32 rounding
    flat, scale = A.reshape(-1, n, n), layer_lower.reshape(-1)
    idx = live.nonzero().squeeze(-1)
    step = max(1, (64 * 2**20) // max(1, n * n * A.element_size()))  # a copy of live heads ≤ 64 MB
    tops = torch.full(live.shape, -torch.inf, dtype=A.dtype, device=A.device)
    for chunk in idx.split(step):
        heads = flat[chunk] if chunk.numel() > 1 else flat[int(chunk) : int(chunk) + 1]  # one: a view
        tops[chunk] = _dense_top(heads) if n <= SHI_DENSE_UP_TO else _lanczos_top(heads, scale[chunk], steps, rtol)
    return tops.reshape(A.shape[:-2]).amax(-1)


SHI_DENSE_UP_TO = 32  # tokens up to which Shi's λ takes a dense eigendecomposition per head


def _dense_top(A: Tensor) -> Tensor:
    """The largest eigenvalue of Aᵀ P A = (PA)ᵀ(PA) for each matrix of ``A [k, n, n]``, by LAPACK (float64)."""
    B = (A - A.mean(-2, keepdim=True)).double()
    return linalg.eigvalsh(B.transpose(-1, -2) @ B)[..., -1].to(A.dtype)


def _shi_bounds(X: Tensor) -> Tensor:
    """Lower and upper bounds on ‖PX‖₂² for matrices ``[c, 1, n, n]`` → ``[c, 2]``."""
    B = X - X.mean(-2, keepdim=True)
    B2 = B.square()
    lower = torch.maximum(B2.sum(-2).amax(-1), B2.sum(-1).amax(-1))
    B = B.abs_()
    upper = torch.minimum(B2.sum((-2, -1)), B.sum(-2).amax(-1) * B.sum(-1).amax(-1))
    return torch.stack([lower, upper], -1).reshape(-1, 2)


def _lanczos_top(A: Tensor, scale: Tensor, steps: int, rtol: float) -> Tensor:
    """The largest eigenvalue of Aᵀ P A for each matrix of ``A [k, n, n]``.

    Batched Lanczos with full reorthogonalisation on the operator v ↦ Aᵀ P A v (each step reads A
    twice; a dense eigendecomposition of every head would cost more than the forward pass). The
    vectors are rows, ``[k, 1, n]``: a batched row-times-matrix product runs several times faster than
    the matrix-times-column one in torch on CPU. Every fourth step it checks convergence (one
    eigendecomposition of every head's tridiagonal T costs about what three steps do), and stops once
    every head's top Ritz pair has a residual below ``rtol``·max(θ, ``scale``) (so each value is
    within that of an eigenvalue; ``scale``: a lower bound on the layer's λ); it is exact once
    ``steps ≥ n``.
    """
    n = A.shape[-1]
    k = min(steps, n)
    At = A.transpose(-1, -2)

    def apply(v):  # (Aᵀ P A vᵀ)ᵀ = (v Aᵀ P) A
        u = v @ At
        return (u - u.mean(-1, keepdim=True)) @ A

    g = torch.Generator().manual_seed(0)
    q = torch.rand(1, n, generator=g, dtype=A.dtype).expand(*A.shape[:-2], 1, n).to(A.device)
    q = q / q.norm(dim=-1, keepdim=True)
    basis, alphas, betas = [], [], []
    seen = torch.zeros(A.shape[:-2], dtype=A.dtype, device=A.device)  # ≤ ‖Aᵀ P A‖ = λ (PSD)
    for j in range(1, k + 1):
        basis.append(q)
        w = apply(q)
        alphas.append((q * w).sum((-2, -1)))
        seen = torch.maximum(seen, alphas[-1])
        Q = torch.cat(basis, -2)  # [k, j, n]
        w = w - (w @ Q.transpose(-1, -2)) @ Q  # full reorthogonalisation
        w = w - (w @ Q.transpose(-1, -2)) @ Q
        beta = w.norm(dim=-1, keepdim=True)
        # Breakdown: the Krylov space is invariant and T already holds its top eigenvalue. Going
        # on would turn rounding noise into new directions; a zero vector adds only zeros to T
        # (and 0 ≤ λ), dropping a coupling ≤ 1e-6·λ.
        beta = torch.where(beta > 1e-6 * seen[..., None, None], beta, torch.zeros_like(beta))
        betas.append(beta[..., 0, 0])
        q = torch.where(beta > 0, w / beta.clamp_min(1e-30), torch.zeros_like(w))
        if j == k or (j >= 4 and j % 4 == 0):
            vals, vecs = torch.linalg.eigh(_tridiagonal(alphas, betas[:-1]))
            top = vals[..., -1]
            # Each head's top Ritz value θ is within its residual ‖Mv − θv‖ = |β_j·s_j| of an
            # eigenvalue (s_j: the last entry of θ's eigenvector of T): stop once every head's is
            # below rtol·λ of its layer (comparing λ between steps stopped early where a head's
            # value stalled for a step, 9% low on one MiniLM layer).
            residual = (betas[-1].double() * vecs[..., -1, -1]).abs()
            if j == k or bool((residual <= rtol * torch.maximum(top.abs(), scale.double())).all()):
                return top.to(A.dtype)


def _tridiagonal(alphas: list, betas: list) -> Tensor:
    T = torch.diag_embed(torch.stack(alphas, -1).double())
    if betas:
        off = torch.stack(betas, -1).double()
        T = T + torch.diag_embed(off, 1) + torch.diag_embed(off, -1)
    return T


def to_networkx(W: np.ndarray, labels: list[str], top_k: int | None = None, directed: bool = False) -> nx.Graph:
    """A weighted graph of tokens; with ``top_k`` only each node's k strongest edges are kept.

    Node attributes: ``label`` (the token text) and ``position`` (its index). Edge: ``weight``.
    Self-loops are dropped: they carry no message between tokens. Only positive weights become
    edges; ``G.graph["signed"]`` says whether ``W`` had negative ones (AttnScale's A′).
    """
    n = W.shape[0]
    G = nx.DiGraph() if directed else nx.Graph()
    G.graph["signed"] = bool((np.asarray(W) < 0).any())
    for i, label in enumerate(labels):
        G.add_node(i, label=label, position=i)
    W = np.array(W, dtype=float)
    np.fill_diagonal(W, 0.0)
    k = n - 1 if top_k is None else min(top_k, n - 1)
    if k <= 0:
        return G
    nearest = np.argsort(-W, axis=1, kind="stable")[:, :k]
    for i in range(n):
        for j in nearest[i]:
            if W[i, j] > 0:
                G.add_edge(i, int(j), weight=float(W[i, j]))
    return G
