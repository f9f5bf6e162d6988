"""Metrics and graphs against hand computations and closed forms (docs/SCIENCE.md §1–2)."""

import math

import numpy as np
import pytest
import scipy.stats
import torch

from smoothviz.science import graph, metrics


def test_rank_one_matrix_is_fully_collapsed():
    c = torch.tensor([0.3, -1.2, 2.0, 0.5], dtype=torch.float64)
    H = torch.ones(6, 1, dtype=torch.float64) * c  # every token the same vector
    m = metrics.hidden_metrics(H.unsqueeze(0))
    assert m["dm_rel"][0].item() == pytest.approx(0.0, abs=1e-12)
    assert m["hfc_lfc"][0].item() == pytest.approx(0.0, abs=1e-12)
    assert m["effective_rank"][0].item() == pytest.approx(1.0, abs=1e-6)
    assert m["numerical_rank"][0].item() == 1
    assert m["cosine_mean"][0].item() == pytest.approx(1.0)
    assert m["cls_cosine"][0].item() == pytest.approx(1.0)


def test_orthonormal_tokens():
    n = 5
    H = torch.eye(n, 7, dtype=torch.float64)
    m = metrics.hidden_metrics(H.unsqueeze(0))
    assert m["cosine_mean"][0].item() == pytest.approx(0.0, abs=1e-12)
    assert m["cls_cosine"][0].item() == pytest.approx(1 / n)  # only itself
    assert m["dm_rel"][0].item() == pytest.approx(math.sqrt((n - 1) / n))
    assert m["hfc_lfc"][0].item() == pytest.approx(math.sqrt(n - 1))
    assert m["effective_rank"][0].item() == pytest.approx(n)
    assert m["numerical_rank"][0].item() == n
    assert m["sv_median"][0].item() == pytest.approx(1.0)
    assert math.isnan(m["sv_skewness"][0].item())  # all σ equal: undefined, as scipy says


def test_cosine_mean_by_hand():
    H = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, -2.0]], dtype=torch.float64)
    c = [[1, 1 / math.sqrt(2), 0], [1 / math.sqrt(2), 1, -1 / math.sqrt(2)], [0, -1 / math.sqrt(2), 1]]
    expected = (sum(map(sum, c)) - 3) / 6
    assert metrics.cosine_mean(H).item() == pytest.approx(expected)
    assert metrics.cls_cosine(H).item() == pytest.approx(sum(c[0]) / 3)


def test_spectrum_metrics_match_scipy_and_numpy():
    rng = np.random.default_rng(0)
    H = rng.normal(size=(3, 9, 12)) * np.array([1, 5, 0.1])[:, None, None]
    m = metrics.hidden_metrics(torch.from_numpy(H))
    for i in range(3):
        sv = np.linalg.svd(H[i], compute_uv=False)
        rel = sv / sv[0]
        p = sv / sv.sum()
        assert m["effective_rank"][i].item() == pytest.approx(np.exp(-(p * np.log(p)).sum()))
        assert m["sv_skewness"][i].item() == pytest.approx(scipy.stats.skew(rel))
        assert m["sv_median"][i].item() == pytest.approx(np.median(rel))
        assert m["numerical_rank"][i].item() == (sv > sv[0] * 1e-3).sum()
        P = np.eye(9) - 1 / 9
        assert m["dm_rel"][i].item() == pytest.approx(np.linalg.norm(P @ H[i]) / np.linalg.norm(H[i]))
        assert m["hfc_lfc"][i].item() == pytest.approx(
            np.linalg.norm(P @ H[i]) / np.linalg.norm((np.eye(9) - P) @ H[i])
        )


def test_even_count_median_averages_the_middle_pair():
    sv = torch.tensor([[4.0, 3.0, 2.0, 1.0]], dtype=torch.float64)
    assert metrics.spectrum_metrics(sv)["sv_median"].item() == pytest.approx(0.625)


def test_dirichlet_two_tokens_by_hand():
    H = torch.tensor([[1.0, 2.0], [3.0, -1.0]], dtype=torch.float64)
    S = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    expected = (2**2 + 3**2) / (5 + 10)
    assert metrics.dirichlet(H, S).item() == pytest.approx(expected)


def test_metrics_invariant_under_token_order():
    rng = np.random.default_rng(1)
    H = torch.from_numpy(rng.normal(size=(10, 6)))
    perm = torch.from_numpy(rng.permutation(10))
    a, b = metrics.hidden_metrics(H[None]), metrics.hidden_metrics(H[perm][None])
    for key in ("cosine_mean", "dm_rel", "hfc_lfc", "effective_rank", "numerical_rank", "sv_skewness", "sv_median"):
        assert a[key].item() == pytest.approx(b[key].item())
    S = torch.from_numpy(rng.random((10, 10)))
    S = (S + S.T) / 2
    assert metrics.dirichlet(H, S).item() == pytest.approx(metrics.dirichlet(H[perm], S[perm][:, perm]).item())
    e1, _ = graph.laplacian_spectrum(S)
    e2, _ = graph.laplacian_spectrum(S[perm][:, perm])
    assert torch.allclose(e1, e2, atol=1e-10)


def test_complete_graph_spectrum():
    n = 6
    uniform = torch.full((n, n), 1.0 / n, dtype=torch.float64)  # with self-loops
    vals, _ = graph.laplacian_spectrum(graph.symmetrize(uniform, "sym"))
    assert vals[0].item() == pytest.approx(0, abs=1e-12)
    assert torch.allclose(vals[1:], torch.ones(n - 1, dtype=torch.float64))
    K = (torch.ones(n, n, dtype=torch.float64) - torch.eye(n, dtype=torch.float64)) / (n - 1)
    vals, _ = graph.laplacian_spectrum(K)
    assert torch.allclose(vals[1:], torch.full((n - 1,), n / (n - 1), dtype=torch.float64))
    assert graph.spectral_gap(vals).item() == pytest.approx(n / (n - 1))


def test_disconnected_graph_has_zero_gap_and_eigenvalues_in_range():
    S = torch.block_diag(torch.full((3, 3), 1 / 3), torch.full((2, 2), 1 / 2)).double()
    vals, _ = graph.laplacian_spectrum(S)
    assert graph.spectral_gap(vals).item() == pytest.approx(0, abs=1e-9)
    rng = np.random.default_rng(2)
    A = torch.softmax(torch.from_numpy(rng.normal(size=(4, 3, 8, 8))), -1)
    for mode in ("sym", "ata"):
        v, _ = graph.laplacian_spectrum(graph.symmetrize(A, mode))
        assert (v >= -1e-12).all() and (v <= 2 + 1e-12).all()  # never clamped: in range up to rounding


def signed_laplacian_by_hand(S: np.ndarray) -> np.ndarray:
    """I − D̄^{-1/2} S D̄^{-1/2} with absolute degrees D̄ = diag(|S|·1) (Kunegis et al. 2010)."""
    d = np.abs(S).sum(-1)
    inv = np.where(d > 0, 1 / np.sqrt(np.where(d > 0, d, 1)), 0)
    return np.eye(S.shape[-1]) - inv[..., :, None] * S * inv[..., None, :]


def test_signed_graph_spectrum_is_the_signed_laplacian_unclamped():
    """A hand-built signed graph: the spectrum is the signed Laplacian's, nothing clamped.

    With the plain degrees D = S·1 (the old definition) node 0's degree is 0.5 − 0.4 + 0.3 and
    the spectrum leaves [0, 2]; with absolute degrees it stays inside, and this unbalanced graph
    has no zero eigenvalue.
    """
    S = np.array([[0.0, 0.5, -0.4, 0.3], [0.5, 0.0, 0.6, -0.2], [-0.4, 0.6, 0.0, 0.7], [0.3, -0.2, 0.7, 0.0]])
    expected = np.linalg.eigvalsh(signed_laplacian_by_hand(S))
    vals, vecs = graph.laplacian_spectrum(torch.from_numpy(S))
    assert vals.numpy() == pytest.approx(expected, abs=1e-12)
    assert expected[0] > 0.4 and expected[-1] <= 2 + 1e-12  # unbalanced: λ₁ > 0; inside [0, 2]
    d = S.sum(-1)  # the plain degrees: a spectrum reaching 2.9, which clamping used to hide
    assert np.linalg.eigvalsh(np.eye(4) - S / np.sqrt(np.outer(d, d)))[-1] > 2.5
    assert graph.spectral_gaps(torch.from_numpy(S)).item() == pytest.approx(expected[1], abs=1e-12)
    L = signed_laplacian_by_hand(S)
    assert np.allclose(L @ vecs.numpy(), vecs.numpy() * vals.numpy())
    assert bool(graph.has_negative(torch.from_numpy(S))) and not bool(graph.has_negative(torch.from_numpy(np.abs(S))))
    # a balanced signed graph (two camps, negative edges only between them) has λ₁ = 0
    B = np.array([[0, 1, -1], [1, 0, -1], [-1, -1, 0]], dtype=float)
    assert graph.laplacian_spectrum(torch.from_numpy(B))[0][0].item() == pytest.approx(0, abs=1e-12)
    # and a zero-degree node keeps its zero row and column (eigenvalue 1), as before
    Z = np.zeros((3, 3))
    Z[0, 1] = Z[1, 0] = -0.5
    assert graph.laplacian_spectrum(torch.from_numpy(Z))[0].numpy() == pytest.approx([0, 1, 2])


def test_fiedler_sign_convention_and_restriction():
    rng = np.random.default_rng(3)
    A = torch.softmax(torch.from_numpy(rng.normal(size=(8, 8)) * 3), -1)
    _, vecs = graph.laplacian_spectrum(graph.symmetrize(A, "sym"))
    f = graph.fiedler(vecs)
    assert f[f.abs().argmax()].item() > 0
    _, vecs2 = graph.laplacian_spectrum(graph.symmetrize(A, "sym"))
    assert torch.equal(graph.fiedler(-vecs2), f)
    R = graph.restrict(A, torch.tensor([1, 2, 5]))
    assert torch.allclose(R.sum(-1), torch.ones(3, dtype=R.dtype))
    expected = A[[1, 2, 5]][:, [1, 2, 5]]
    assert torch.allclose(R, expected / expected.sum(-1, keepdim=True))


def test_rollout_of_uniform_attention_halves_each_layer():
    n, L = 5, 4
    A = torch.full((L, n, n), 1.0 / n, dtype=torch.float64)
    ratio = graph.rollout_ratio(A)
    assert torch.allclose(ratio, torch.tensor([0.5 ** (l + 1) for l in range(L)], dtype=torch.float64))
    assert torch.allclose(
        graph.rollout_ratio(torch.eye(n, dtype=torch.float64).repeat(L, 1, 1)), torch.ones(L, dtype=torch.float64)
    )


def test_entropy_and_distance_from_uniform():
    n = 4
    uniform = torch.full((1, n, n), 1.0 / n, dtype=torch.float64)
    assert graph.row_entropy(uniform).item() == pytest.approx(math.log(n))
    assert graph.distance_from_uniform(uniform).item() == pytest.approx(0)
    eye = torch.eye(n, dtype=torch.float64)[None]
    assert graph.row_entropy(eye).item() == pytest.approx(0)
    assert graph.distance_from_uniform(eye).item() == pytest.approx(math.sqrt(n * ((1 - 1 / n) ** 2 + (n - 1) / n**2)))


def test_networkx_top_k_keeps_the_strongest_edges():
    W = np.array([[0, 0.5, 0.3, 0.2], [0.5, 0, 0.1, 0.4], [0.3, 0.1, 0, 0.6], [0.2, 0.4, 0.6, 0]])
    G = graph.to_networkx(W, ["a", "b", "<script>", "a"], top_k=1)
    assert set(map(frozenset, G.edges())) == {frozenset((0, 1)), frozenset((2, 3))}
    assert G.nodes[2]["label"] == "<script>" and G[0][1]["weight"] == 0.5
