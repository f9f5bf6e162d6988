"""The analysis engine on the real embedded model (offline)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import smoothviz
from smoothviz.science.metrics import names as metric_names


def test_reference_sentence_smooths_mildly_and_unevenly(base):
    """RESEARCH §2's reference behaviour, as the Theory page, the README and the preset quote it."""
    cos = base.baseline.metric("cosine_mean")
    assert len(cos) == 7 and base.n_layers == 6 and base.heads == 12
    assert cos[0] == pytest.approx(0.04526, abs=1e-4) and cos[-1] == pytest.approx(0.325, abs=5e-4)
    assert all(b > a for a, b in zip(cos, cos[1:]))  # rises at every layer
    dm = base.baseline.metric("dm_rel")
    assert dm[0] == pytest.approx(0.964, abs=5e-4) and dm[-1] == pytest.approx(0.861, abs=5e-4)
    assert base.baseline.metric("numerical_rank") == [27] * 7  # full rank at every layer: no collapse
    ratio = base.baseline.metric("dm_ratio")[1:]
    assert [l for l, r in enumerate(ratio, 1) if r > 1] == [1, 4]  # d_M grows at two of six layers


def test_trend_lines_name_every_move_against_the_trend(base):
    from smoothviz.words import trends

    moves = trends.against_trend(base.baseline)
    assert moves == {"sv_skewness": [3, 5], "sv_median": [5], "dirichlet": [3, 5, 6], "d_M": [1, 4]}
    lines = trends.trend_lines(base, {"baseline": "baseline"})
    assert lines == [
        "baseline: cosine_mean 0.0453 → 0.325, dm_rel 0.964 → 0.861, numerical_rank 27 → 27 "
        "(of at most 27). Against the smoothing trend: sv_skewness falls at layers 3 and 5; sv_median "
        "rises at layer 5; dirichlet rises at layers 3 and 5–6; d_M grows at layers 1 and 4. "
        "Unchanged (a relative move of at most 0.1%): effective_rank at layer 1; numerical_rank at "
        "every layer. Every other metric and layer moves in the smoothing direction."
    ]


def test_trend_lines_for_a_mitigation_and_a_collapse():
    from types import SimpleNamespace

    from smoothviz.words import trends

    def run(cos, dm, ratio=None, fused=None):
        rows = [
            {
                "layer": l,
                "cosine_mean": c,
                "dm_rel": d,
                "numerical_rank": 3,
                "dm_ratio": None if l == 0 else (ratio[l - 1] if ratio else 0.9),
            }
            for l, (c, d) in enumerate(zip(cos, dm))
        ]
        return SimpleNamespace(rows=rows, fused_row=fused, hidden=np.zeros((len(cos), 3, 8)))

    base = run([0.1, 0.3, 0.2, 0.5], [0.9, 0.8, 0.85, 0.7], ratio=[0.9, 1.2, 0.8])
    assert trends.against_trend(base) == {"cosine_mean": [2], "dm_rel": [2], "d_M": [2]}
    assert trends.against_trend(run([0.1, 0.1 + 1e-5, 0.2], [0.9, 0.9, 0.8])) == {}  # rounding is no move
    smooth = run([0.1, 0.2, 0.3, 0.9], [0.9, 0.5, 0.2, 0.1])
    analysis = SimpleNamespace(
        baseline=base,
        mitigated=smooth,
        keep=[0, 1, 2],
        n_layers=3,
        runs=lambda: {"baseline": base, "mitigated": smooth},
    )
    lines = trends.trend_lines(analysis, {"baseline": "baseline", "mitigated": "flip"})
    # the toy rows hold only cosine_mean and dm_rel: every other metric is undefined, and said so
    assert "Undefined: cls_cosine at every layer" in lines[1]
    assert lines[2] == (
        "At layer 3, flip raises cosine_mean from 0.5 to 0.9 (more smoothing by cosine_mean) and "
        "lowers dm_rel from 0.7 to 0.1 (more smoothing by dm_rel). By cosine_mean and dm_rel: more "
        "smoothing than the baseline."
    )
    fused = run(
        [0.1, 0.3, 0.2, 0.5], [0.9, 0.8, 0.85, 0.7], ratio=[0.9, 1.2, 0.8], fused={"cosine_mean": 0.2, "dm_rel": 0.9}
    )
    analysis = SimpleNamespace(
        baseline=base, mitigated=fused, keep=[0, 1, 2], n_layers=3, runs=lambda: {"baseline": base, "mitigated": fused}
    )
    lines = trends.trend_lines(analysis, {"baseline": "baseline", "mitigated": "fusion-max"})
    assert lines[1] == (
        "fusion-max leaves every layer exactly as the baseline has it (a fusion only combines the layers' outputs)."
    )
    assert lines[2].startswith(
        "At its fused output, fusion-max lowers cosine_mean from 0.5 to 0.2 (less smoothing "
        "by cosine_mean) and raises dm_rel from 0.7 to 0.9 (less smoothing by dm_rel)."
    )
    collapse = run([0.1, 0.9, 1.0, 1.0, 1.0], [0.9, 0.1, 5e-6, 0.0, 3e-7], ratio=[0.1, 1e-4, 0.0, 2.0])
    assert trends.collapsed_from(collapse) == 2 and trends.against_trend(collapse) == {}  # noise after it
    assert "From layer 2 on dm_rel stays below 1e-5" in trends.run_summary(collapse, "lab", 3)


def test_shapes_and_attention_rows(base):
    r, n = base.baseline, len(base.tokens)
    assert n == 27 and base.special[0] and base.special[-1] and not any(base.special[1:-1])
    assert r.hidden.shape == (7, n, 384) and r.attentions.shape == (6, 12, n, n)
    assert np.allclose(r.attentions.sum(-1), 1, atol=1e-5)
    assert r.similarity.shape == (7, n, n) and r.sv.shape == (7, n)
    assert r.head_gap.shape == (6, 12)
    assert r.value_eigs.shape == (6, 12, 32) and r.smooths.shape == (6, 12)
    assert ((r.layer_eigs >= -1e-6) & (r.layer_eigs <= 2 + 1e-6)).all()  # never clamped: in [0, 2] up to rounding
    assert not r.signed.any() and not r.heads_signed
    assert base.device == "cpu" and base.model == "default"


def test_rows_carry_every_metric(base):
    rows = base.baseline.rows
    for row in rows:
        assert set(metric_names()) <= set(row)
    assert rows[0]["spectral_gap"] is None and all(r["spectral_gap"] is not None for r in rows[1:])
    assert all(isinstance(r["numerical_rank"], int) for r in rows)


def test_metrics_recomputed_from_the_hidden_states(base):
    """The rows agree with a direct numpy computation from the captured states."""
    H = base.baseline.hidden.astype(np.float64)
    for layer in (0, 3, 6):
        X = H[layer]
        U = X / np.linalg.norm(X, axis=1, keepdims=True)
        C = U @ U.T
        n = len(X)
        assert base.baseline.rows[layer]["cosine_mean"] == pytest.approx((C.sum() - n) / (n * (n - 1)), rel=1e-5)
        P = np.eye(n) - 1 / n
        assert base.baseline.rows[layer]["dm_rel"] == pytest.approx(np.linalg.norm(P @ X) / np.linalg.norm(X), rel=1e-5)
    A = base.baseline.attentions.astype(np.float64)
    S = (A[2].mean(0) + A[2].mean(0).T) / 2
    d = S.sum(1)
    lap = np.eye(len(S)) - S / np.sqrt(np.outer(d, d))
    assert base.baseline.rows[3]["spectral_gap"] == pytest.approx(np.linalg.eigvalsh(lap)[1], abs=1e-5)
    X = H[3]
    sq = (X**2).sum(1)
    dist = sq[:, None] + sq[None] - 2 * X @ X.T
    assert base.baseline.rows[3]["dirichlet"] == pytest.approx(0.5 * (S * dist).sum() / sq.sum(), rel=1e-4)


def test_hidden_states_match_transformers(base, reference, matches_transformers):
    from smoothviz.model.models import default_model_path

    matches_transformers(base, default_model_path(), reference)


def test_excluding_special_tokens_uses_the_remaining_rows(reference):
    r = smoothviz.analyze(reference, exclude_special=True, device="cpu")
    assert r.keep == list(range(1, 26)) and r.baseline.similarity.shape[-1] == 25
    X = r.baseline.hidden[6, 1:26].astype(np.float64)
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    assert r.baseline.rows[6]["cosine_mean"] == pytest.approx(((U @ U.T).sum() - 25) / (25 * 24), rel=1e-5)
    assert r.baseline.rows[6]["cls_cosine"] == pytest.approx((U @ U[0]).mean(), rel=1e-5)


def test_one_head_and_ata_graph_options(reference):
    r = smoothviz.analyze(reference, head=3, symmetrize="ata", device="cpu")
    A = r.baseline.attentions[0, 3].astype(np.float64)
    assert np.allclose(r.baseline.layer_graph[0], A.T @ A, atol=1e-5)
    with pytest.raises(smoothviz.AnalysisError, match="heads 0..11"):
        smoothviz.analyze(reference, head=12, device="cpu")


def test_networkx_graph_on_request(base):
    G = base.graph(2, head=5, top_k=3)
    assert G.number_of_nodes() == 27 and all(G.degree(i) >= 3 for i in G.nodes)
    assert G.nodes[0]["label"] == "[CLS]"


def test_single_token_metrics_say_undefined():
    r = smoothviz.analyze("hello", exclude_special=True, device="cpu")
    row = r.baseline.rows[-1]
    assert row["cosine_mean"] is None and row["spectral_gap"] is None and row["sv_skewness"] is None
    assert row["dm_rel"] == pytest.approx(0) and row["cls_cosine"] == pytest.approx(1)
    assert any("one token" in n.lower() for n in r.notes)
    json.dumps(r.to_json(), allow_nan=False)


@pytest.mark.parametrize("text", ["", "   \n\t "])
def test_empty_text_is_refused(text):
    with pytest.raises(smoothviz.AnalysisError, match="empty"):
        smoothviz.analyze(text)


@pytest.mark.parametrize(
    "name, message",
    [
        ("no-such-org/no-such-model", "cannot load model"),
        ("/nonexistent/model/dir", "not a model directory"),
        ("", "no model given"),
    ],
)
def test_bad_model_names(name, message):
    with pytest.raises(smoothviz.ModelError, match=message):
        smoothviz.analyze("hello", model=name or " ")


def test_local_directory_and_pickle_refusal(tmp_path):
    import shutil

    from smoothviz.model.models import default_model_path

    local = tmp_path / "minilm"
    shutil.copytree(default_model_path(), local)
    r = smoothviz.analyze("A local copy of the model.", model=str(local), device="cpu")
    assert r.n_layers == 6 and r.model == str(local)
    pickled = tmp_path / "pickled"
    shutil.copytree(local, pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(smoothviz.ModelError, match="pickle"):
        smoothviz.analyze("hello", model=str(pickled))


def test_truncation_note():
    r = smoothviz.analyze("word " * 700, device="cpu")
    assert len(r.tokens) == 512
    assert any("190 tokens were dropped" in n for n in r.notes)


def test_projection_pca_and_umap(reference):
    r = smoothviz.analyze(reference, mitigation="neutreno", projection="pca", device="cpu")
    assert r.projection.shape == (2, 7, 27, 2) and np.isfinite(r.projection).all()
    again = smoothviz.analyze(reference, mitigation="neutreno", projection="pca", device="cpu")
    assert np.array_equal(r.projection, again.projection)
    u = smoothviz.analyze(reference, projection="umap", device="cpu")
    assert u.projection_method == "umap" and u.projection.shape == (1, 7, 27, 2)
    tiny = smoothviz.analyze("hi", projection="umap", exclude_special=True, device="cpu")
    assert tiny.projection_method == "pca" and any("UMAP" in n for n in tiny.notes)


def test_projected_later_equals_projected_at_once(reference):
    """The page projects only when the trajectories tab opens: the same coordinates, no array copied."""
    at_once = smoothviz.analyze(reference, mitigation="neutreno", projection="pca", device="cpu")
    plain = smoothviz.analyze(reference, mitigation="neutreno", device="cpu")
    later = plain.projected("pca")
    assert plain.projection is None and plain.projection_method == "none"
    assert np.array_equal(later.projection, at_once.projection) and later.projection_method == "pca"
    assert later.baseline is plain.baseline and later.mitigated is plain.mitigated
    assert not later.projection.flags.writeable
    tiny = smoothviz.analyze("hi", exclude_special=True, device="cpu").projected("umap")
    assert tiny.projection_method == "pca" and sum("UMAP" in n for n in tiny.notes) == 1


def test_device_auto_says_which_ran():
    r = smoothviz.analyze("Which device ran?", device="auto")
    assert r.device == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(smoothviz.ModelError, match="no CUDA"):
            smoothviz.analyze("hello", device="cuda")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "smoothviz", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cli_json_contract(reference):
    out = _cli("analyze", reference, "--json", "--mitigation", "fusion-mean", "--param", "layers=4-6")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert {"model", "device", "tokens", "baseline", "mitigated", "mitigation"} <= set(data)
    assert data["model"] == "default" and len(data["tokens"]) == 27
    layers = data["baseline"]["layers"]
    assert [row["layer"] for row in layers] == list(range(7))
    assert set(metric_names()) <= set(layers[0]) and layers[0]["spectral_gap"] is None
    assert layers[0]["heads_smoothing"] is None and all(0 <= row["heads_smoothing"] <= 1 for row in layers[1:])
    assert all(row["heads_smoothing"] is not None for row in data["mitigated"]["layers"][1:-1])
    assert data["mitigated"]["layers"][-1]["layer"] == "fused"
    assert data["mitigated"]["layers"][-1]["heads_smoothing"] is None
    assert data["mitigation"] == {"name": "fusion-mean", "params": {"layers": "4-6", "weights": ""}}


@pytest.mark.slow
def test_cli_readable_table_and_errors():
    out = _cli("analyze", "A short sentence.")
    assert out.returncode == 0 and "cosine_mean" in out.stdout and "spectral_gap" in out.stdout
    assert "heads_smoothing" in out.stdout
    for args, message in [
        (("analyze", ""), "empty"),
        (("analyze", "hi", "--model", "nobody/nothing"), "cannot load model"),
        (("analyze", "hi", "--mitigation", "magic"), "unknown mitigation"),
        (("analyze", "hi", "--mitigation", "neutreno", "--param", "lambda=2"), "lambda"),
        (("analyze", "hi", "--model", "lab", "--lab", "depth=0"), "depth"),
        (("analyze", "hi", "--head", "x"), "--head"),
    ]:
        out = _cli(*args)
        assert out.returncode == 2, (args, out.stdout)
        assert out.stdout == "" and len(out.stderr.strip().splitlines()) == 1 and message in out.stderr


def test_excluded_special_tokens_leave_the_head_mean_graph_after_the_mean(reference):
    """RESEARCH §1's order: mean over heads of the full attention, then restrict and renormalise
    (not each head renormalised first, which lets a head that sent 95% of its attention to [SEP]
    count as much as one that attends to words)."""
    r = smoothviz.analyze(reference, exclude_special=True, device="cpu")
    keep = r.keep
    A = r.baseline.attentions.astype(np.float64)  # [L, h, N, N], every token
    mean_first = A.mean(1)[:, keep][:, :, keep]
    mean_first /= mean_first.sum(-1, keepdims=True)
    S = (mean_first + np.swapaxes(mean_first, -1, -2)) / 2
    assert np.allclose(r.baseline.layer_graph, S, atol=1e-6)
    d = S.sum(-1)
    gaps = np.linalg.eigvalsh(np.eye(len(keep)) - S / np.sqrt(d[..., :, None] * d[..., None, :]))[:, 1]
    assert [row["spectral_gap"] for row in r.baseline.rows[1:]] == pytest.approx(gaps, abs=1e-6)
    heads_first = A[:, :, keep][..., keep]
    heads_first = (heads_first / heads_first.sum(-1, keepdims=True)).mean(1)
    old = (heads_first + np.swapaxes(heads_first, -1, -2)) / 2
    assert np.abs(old - S).max() > 0.05  # the two orders really differ here
    d = old.sum(-1)
    old_gaps = np.linalg.eigvalsh(np.eye(len(keep)) - old / np.sqrt(d[..., :, None] * d[..., None, :]))[:, 1]
    assert np.abs(old_gaps - gaps).max() > 0.05  # λ₂ moves by up to 0.065 (layer 5)
    # the networkx view and one head's graph (restricted on its own) agree with it
    G = r.graph(5, top_k=None)
    assert G[0][1]["weight"] == pytest.approx(S[4, 0, 1], abs=1e-6)
    one = A[4, 3][keep][:, keep]
    one /= one.sum(-1, keepdims=True)
    assert r.graph(5, head=3, directed=True)[0][1]["weight"] == pytest.approx(one[0, 1], abs=1e-6)
    # per-head views still restrict each head on its own
    per_head = A[:, :, keep][..., keep]
    per_head /= per_head.sum(-1, keepdims=True)
    entropy = -(per_head * np.log(per_head)).sum(-1).mean(-1)
    assert np.allclose(r.baseline.head_entropy, entropy, atol=1e-5)


def test_shi_sigma_min_uses_the_kept_tokens(reference):
    """σ_min of each LayerNorm's input is the minimum over the same kept tokens as Shi's λ."""
    from smoothviz.model.handles import get_handle

    handle = get_handle("default", "cpu")
    seen, hooks = [], []
    for block in handle.model.encoder.layer:
        for ln in (block.attention.output.LayerNorm, block.output.LayerNorm):
            hooks.append(
                ln.register_forward_pre_hook(lambda m, args: seen.append(args[0][0].double().std(-1, unbiased=False)))
            )
    try:
        inputs, _, _ = handle.encode(reference, None, [])
        with torch.no_grad():
            handle.model(**inputs)
    finally:
        for hook in hooks:
            hook.remove()
    std = torch.stack(seen).view(6, 2, -1).numpy()  # [L, 2 LayerNorms, N tokens]
    for exclude in (False, True):
        r = smoothviz.analyze(reference, exclude_special=exclude, device="cpu")
        expected = std[..., r.keep].min(-1)
        assert r.baseline.ln_sigma == pytest.approx(expected, rel=1e-5)
        A = r.baseline.attentions.astype(np.float64)[:, :, r.keep][..., r.keep]
        A /= A.sum(-1, keepdims=True)
        n = len(r.keep)
        P = np.eye(n) - 1 / n
        lam = np.linalg.eigvalsh(np.swapaxes(A, -1, -2) @ P @ A)[..., -1].max(-1)
        s = handle.weight_norm().numpy()
        v = (1 + s**2) * (1 + np.sqrt(lam) * 12 * s) / (expected[:, 0] * expected[:, 1])
        assert [row["shi_v"] for row in r.baseline.rows[1:]] == pytest.approx(v, rel=1e-4)
    assert not np.allclose(std[..., r.keep].min(-1), std.min(-1))  # [CLS]/[SEP] hold the minimum somewhere


def test_attnscale_with_special_tokens_excluded_maps_the_restricted_softmax(reference):
    """AttnScale's A′ can leave a row whose kept weights sum to ≤ 0 once [SEP] is removed; the
    special tokens leave the softmax instead, and A′ = A_DC + (1 + ω)(A − A_DC) acts over the rest."""
    r = smoothviz.analyze(
        reference, exclude_special=True, device="cpu", mitigation="attnscale", params={"omega": 2}, heads=False
    )
    keep, n = r.keep, len(r.keep)
    used = r.mitigated.attentions.astype(np.float64)[:, :, keep][..., keep]
    assert (used.sum(-1) <= 0).any()  # why A′ itself cannot be restricted
    soft = r.mitigated.softmax.astype(np.float64).mean(1)[:, keep][:, :, keep]
    soft /= soft.sum(-1, keepdims=True)
    directed = 1 / n + 3 * (soft - 1 / n)
    assert np.allclose(r.mitigated.layer_graph, (directed + np.swapaxes(directed, -1, -2)) / 2, atol=1e-6)
    assert np.abs(r.mitigated.layer_graph).max() <= 3  # |A′| ≤ 1 + ω: nothing divided by ~0
    full = smoothviz.analyze(reference, device="cpu", mitigation="attnscale", params={"omega": 2}, heads=False)
    assert np.array_equal(full.mitigated.attentions, r.mitigated.attentions)


def test_fiedler_caption_says_what_the_vector_can_show(base):
    """The Fiedler vector is orthogonal to D^½1: on a nonnegative graph it always has both signs, so a
    caption may not read "one colour" as "mixes everything"; λ₂ measures the cut."""
    from smoothviz.outputs.views import BY_KEY

    caption = BY_KEY["graph"].caption
    assert "one colour" not in caption and "both signs" in caption and "λ₂" in caption and "weakest cut" in caption
    f = base.baseline.fiedler.astype(np.float64)  # [L, n]
    assert ((f > 0).any(1) & (f < 0).any(1)).all()
    S = base.baseline.layer_graph.astype(np.float64)
    assert np.abs(np.einsum("ln,ln->l", f, np.sqrt(S.sum(-1)))).max() < 1e-4
