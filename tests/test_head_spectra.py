"""The per-head spectral quantities against dense numpy eigendecompositions.

The engine takes shortcuts for speed (Lanczos for Shi's λ, a subset solver for λ₂, bounds that
settle most Dovonon verdicts without A's spectrum); each must give what the plain formula gives.
"""

import numpy as np
import pytest
import torch

from smoothviz.bench import TEXT
from smoothviz.model import capture
from smoothviz.model.handles import get_handle
from smoothviz.science import graph
from smoothviz.science.diagnostics import dovonon

RNG = np.random.default_rng(7)


def stochastic(k, n, sharpness, causal=False):
    logits = RNG.normal(size=(k, n, n)) * sharpness
    if causal:
        logits = np.where(np.tril(np.ones((n, n))) > 0, logits, -np.inf)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return torch.from_numpy((e / e.sum(-1, keepdims=True)).astype(np.float32))


@pytest.fixture(scope="module")
def minilm():
    """Real attention and value spectra of the default model at three lengths."""
    handle = get_handle("default", "cpu")
    out = {}
    for n in (5, 27, 128):
        inputs, _, _ = handle.encode(TEXT, n, [])
        out[n] = capture.run(handle.model, inputs).attentions.float()
    return out, handle.value_eigs()


def dovonon_by_hand(A: np.ndarray, lam_h: np.ndarray) -> np.ndarray:
    """RESEARCH §3.4 literally: the largest |1 + λ^A_i λ^H_j| over all pairs; smooths if i is A's eigenvalue 1."""
    out = np.zeros(A.shape[:2], dtype=bool)
    for l in range(A.shape[0]):
        for h in range(A.shape[1]):
            ev = np.linalg.eigvals(A[l, h].astype(np.float64))
            update = np.abs(1 + ev[:, None] * lam_h[l, h][None, :])
            i = np.unravel_index(update.argmax(), update.shape)[0]
            out[l, h] = i == np.abs(ev - 1).argmin() or abs(ev[i] - 1) < 1e-5
    return out


def test_dovonon_matches_every_pair_on_the_default_model(minilm):
    attentions, value_eigs = minilm
    for n, A in attentions.items():
        fast = dovonon(A, value_eigs).numpy()
        assert (fast == dovonon_by_hand(A.numpy(), value_eigs.numpy())).all(), n


@pytest.mark.parametrize("causal", [False, True])
def test_dovonon_matches_every_pair_on_random_heads(causal):
    """Sharp and flat attention with value spectra that both smooth and sharpen."""
    L, h, n, d = 3, 8, 24, 6
    A = torch.cat([stochastic(1, n, s, causal) for s in (0.05, 1.0, 4.0) for _ in range(h)]).reshape(L, h, n, n)
    lam = RNG.normal(size=(L, h, d)) * RNG.uniform(0.2, 3, size=(L, h, 1)) + 1j * RNG.normal(size=(L, h, d))
    lam[0, :4] = -np.abs(lam[0, :4].real) * 1.5  # negative spectra favour a non-Perron pairing
    lam = torch.from_numpy(lam.astype(np.complex64))
    fast = dovonon(A, lam).numpy()
    by_hand = dovonon_by_hand(A.numpy(), lam.numpy())
    assert (fast == by_hand).all()
    assert by_hand.any() and not by_hand.all()  # the case covers both verdicts


def test_dovonon_matches_every_pair_with_attnscale_attention():
    """AttnScale's A′ = A_DC + (1 + ω)(A − A_DC) has negative entries and eigenvalues beyond 1."""
    L, h, n, d = 2, 6, 16, 5
    A = stochastic(L * h, n, 2.0)
    A = (1 / n + 3.0 * (A - 1 / n)).reshape(L, h, n, n)  # ω = 2
    assert (A < 0).any() and (np.abs(np.linalg.eigvals(A.numpy().astype(np.float64))) > 1.01).any()
    lam = torch.from_numpy(
        (RNG.uniform(0.05, 0.6, size=(L, h, d)) * RNG.choice([-1, 1], size=(L, h, d))).astype(np.complex64)
    )
    fast = dovonon(A, lam).numpy()
    by_hand = dovonon_by_hand(A.numpy(), lam.numpy())
    assert (fast == by_hand).all()
    assert not by_hand.all()


def test_subdominant_bounds_cover_every_other_eigenvalue():
    def second_modulus(A):
        return np.sort(np.abs(np.linalg.eigvals(A.numpy().astype(np.float64))), -1)[:, -2]

    cases = [stochastic(40, n, sharpness) for n in (2, 3, 10, 60) for sharpness in (0.05, 1.0, 5.0, 30.0)]
    cases += [
        1 / 30 + (1 + omega) * (stochastic(40, 30, 2.0) - 1 / 30)  # AttnScale: negative entries
        for omega in (0.5, 2.0)
    ]
    for A in cases:
        assert (second_modulus(A) <= graph.subdominant_bound(A).numpy()).all()
        assert (second_modulus(A) <= graph.deflated_radius(A).numpy()).all()
    two = torch.tensor([[[0.8, 0.2], [0.3, 0.7]]])  # eigenvalues 1 and 0.5; Doeblin: 1 − 0.3 − 0.2
    assert graph.subdominant_bound(two).item() == pytest.approx(0.5, rel=1e-3)


def shi_by_hand(A: np.ndarray) -> np.ndarray:
    n = A.shape[-1]
    P = np.eye(n) - np.ones((n, n)) / n
    M = np.swapaxes(A, -1, -2) @ P @ A
    return np.linalg.eigvalsh(M.astype(np.float64))[..., -1].max(-1)


def test_shi_lambda_matches_a_dense_eigendecomposition(minilm):
    attentions, _ = minilm
    cases = list(attentions.values()) + [stochastic(12, 40, s).reshape(3, 4, 40, 40) for s in (0.1, 1.0, 6.0)]
    # heads of very different sharpness in one layer: the bounds leave most out of the solver
    cases.append(torch.cat([stochastic(12, 40, s).reshape(3, 4, 40, 40) for s in (0.1, 1.0, 6.0)], 1))
    cases.append(torch.cat([stochastic(12, 20, s).reshape(3, 4, 20, 20) for s in (0.1, 1.0, 6.0)], 1))
    assert {A.shape[-1] <= graph.SHI_DENSE_UP_TO for A in cases} == {True, False}  # both solvers
    for A in cases:
        assert graph.attention_contraction_lambda(A).numpy() == pytest.approx(shi_by_hand(A.numpy()), rel=1e-5)


def test_shi_bounds_enclose_each_heads_lambda(minilm):
    """The bounds that leave heads out of the solver: lower ≤ λ_h ≤ upper for every head."""
    attentions, _ = minilm
    for A in list(attentions.values()) + [stochastic(12, 40, s) for s in (0.1, 1.0, 6.0)]:
        A = A.reshape(-1, *A.shape[-2:])
        n = A.shape[-1]
        P = np.eye(n) - np.ones((n, n)) / n
        lam = np.linalg.eigvalsh(np.swapaxes(A.numpy(), -1, -2).astype(np.float64) @ P @ A.numpy())[..., -1]
        lower, upper = graph._shi_bounds(A.unsqueeze(1)).double().unbind(-1)
        assert (lower.numpy() <= lam * (1 + 1e-5) + 1e-7).all() and (lam <= upper.numpy() * (1 + 1e-5) + 1e-7).all()


def test_shi_lambda_survives_a_krylov_breakdown():
    """The default lab (32 layers) on a repeated word: some heads' Aᵀ P A have few directions, so
    Lanczos runs out of them and must stop there, not amplify rounding noise (that gave NaN, and
    values 10⁴× too large with more steps)."""
    from smoothviz import analyze

    A = analyze("a " * 200, model="lab", device="cpu", heads=False).baseline.attentions.copy()
    expected = shi_by_hand(A)
    for steps in (24, 200):
        got = graph.attention_contraction_lambda(torch.from_numpy(A), steps=steps).numpy()
        assert np.isfinite(got).all()
        assert got == pytest.approx(expected, rel=1e-4)  # float32 attention, 32 layers deep


def test_spectral_gaps_match_the_full_laplacian_spectrum(minilm):
    attentions, _ = minilm
    cases = [graph.symmetrize(A, "sym") for A in attentions.values()]
    sizes = (2, 5, graph.SUBSET_FROM - 1, graph.SUBSET_FROM, 200)  # both solvers
    cases += [graph.symmetrize(stochastic(6, n, 2.0), mode) for n in sizes for mode in ("sym", "ata")]
    for S in cases:
        expected = np.linalg.eigvalsh(laplacian_by_hand(S.double().numpy()))[..., 1]
        assert graph.spectral_gaps(S).numpy() == pytest.approx(expected, abs=2e-5)
    assert np.isnan(graph.spectral_gaps(torch.ones(3, 1, 1)).numpy()).all()  # one node: undefined


def laplacian_by_hand(S: np.ndarray) -> np.ndarray:
    """The signed normalized Laplacian I − D̄^{-1/2} S D̄^{-1/2}, D̄ = diag(|S|·1); RESEARCH §1's for S ≥ 0."""
    d = np.abs(S).sum(-1)
    inv = np.where(d > 0, 1 / np.sqrt(np.where(d > 0, d, 1)), 0)
    return np.eye(S.shape[-1]) - inv[..., :, None] * S * inv[..., None, :]


def test_attnscale_gaps_are_the_signed_spectrum_never_clamped(reference):
    """AttnScale with a large ω on the default model: signed per-head graphs whose λ₂ is the signed
    Laplacian's (dense numpy), not clamped to 0, and every eigenvalue inside [0, 2] up to rounding."""
    from smoothviz import analyze

    r = analyze(reference, device="cpu", mitigation="attnscale", params={"omega": 20})
    A = r.mitigated.attentions.astype(np.float64)
    S = (A + np.swapaxes(A, -1, -2)) / 2
    assert (S < 0).any() and r.mitigated.heads_signed and r.mitigated.signed.any()
    eigs = np.linalg.eigvalsh(laplacian_by_hand(S))
    assert eigs.min() > -1e-9 and eigs.max() < 2 + 1e-9
    assert r.mitigated.head_gap == pytest.approx(eigs[..., 1], abs=2e-5)
    layer = np.linalg.eigvalsh(laplacian_by_hand((A.mean(1) + np.swapaxes(A.mean(1), -1, -2)) / 2))
    assert r.mitigated.layer_eigs == pytest.approx(layer, abs=2e-5)
    assert [row["spectral_gap"] for row in r.mitigated.rows[1:]] == pytest.approx(layer[:, 1], abs=1e-6)
    assert any("signed" in note and "Kunegis" in note for note in r.notes)
    assert not r.baseline.signed.any() and not r.baseline.heads_signed
    # the graph views say so
    from smoothviz.outputs import figures

    layer = int(np.flatnonzero(r.mitigated.signed)[0]) + 1
    notes = lambda fig: " ".join(a.text for a in fig.layout.annotations)  # noqa: E731
    assert "Signed graph" in notes(figures.laplacian_spectrum(r.mitigated, layer))
    assert "Signed graph" not in notes(figures.laplacian_spectrum(r.baseline, layer))
    G = graph.to_networkx(r.mitigated.layer_graph[layer - 1], r.labels, top_k=3)
    assert G.graph["signed"] and "Signed graph" in notes(figures.attention_graph(G, r.mitigated.fiedler[layer - 1]))
    assert r.graph(layer, head=0, run="mitigated").graph["signed"]


def test_per_matrix_splits_over_threads_inside_one_thread_with_the_same_numbers():
    """The per-head eigenvalue problems spread over the cores inside one_thread (each LAPACK call on one
    thread), from linalg.PARALLEL_WORK; the numbers equal one batched call's."""
    import threading

    from smoothviz.science import linalg

    X = stochastic(40, 64, 1.0)  # 40 · 64³ ≈ 10⁷ ≥ PARALLEL_WORK
    assert X.shape[0] * X.shape[-1] ** 3 >= linalg.PARALLEL_WORK
    seen = set()

    def eig(chunk):
        seen.add(threading.get_ident())
        return torch.linalg.eigvals(chunk)

    with linalg.one_thread():
        split = linalg.per_matrix(eig, X)
    expected = torch.linalg.eigvals(X)
    assert torch.equal(split, expected)
    assert len(seen) == min(torch.get_num_threads(), X.shape[0])  # one_thread set aside the process count
    seen.clear()
    linalg.per_matrix(eig, X)  # outside one_thread: torch's own threads, one call
    assert len(seen) == 1


def test_a_collapsed_deep_lab_gets_its_per_head_gaps_where_float32_lapack_fails():
    """A 64-layer lab under NeuTRENO at 30 tokens: some heads' normalized adjacency (entries from
    0.18 down to denormals) made LAPACK's float32 eigvalsh fail to converge, and the analysis
    crashed. Each head's λ₂ now equals the float64 dense one."""
    from smoothviz import analyze
    from smoothviz.bench import text_of

    a = analyze(text_of(40), max_tokens=30, model="lab", lab={"depth": 64}, mitigation="neutreno", device="cpu")
    for run in (a.baseline, a.mitigated):
        A = np.asarray(run.attentions, dtype=np.float64)  # [L, h, n, n]
        S = (A + A.swapaxes(-1, -2)) / 2
        d = S.sum(-1)
        inv = np.where(d > 0, 1 / np.sqrt(np.where(d > 0, d, 1)), 0)
        N = inv[..., :, None] * S * inv[..., None, :]
        want = 1 - np.linalg.eigvalsh(N)[..., -2]
        assert np.isfinite(run.head_gap).all()
        np.testing.assert_allclose(run.head_gap, want, atol=2e-5)
