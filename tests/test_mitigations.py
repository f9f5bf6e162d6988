"""Each mitigation against a direct computation of its formula (docs/SCIENCE.md §3), its neutral
setting against the baseline, its documented effect, and thread safety on the shared model."""

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

import smoothviz
from smoothviz.mitigations import NAMES, REGISTRY, MitigationError, make
from smoothviz.mitigations.inference import contra_norm, soft_decay
from smoothviz.mitigations.spectral import respectrum_out_weights, spectrum_map
from smoothviz.model.handles import get_handle


@pytest.fixture(scope="module")
def bert():
    return get_handle("default", "cpu").model


def block(layer, x, *, probs=None, ctx=None, branch=None):
    """One BERT block by hand, with optional changes at the three places mitigations act."""
    n, d = x.shape
    sa = layer.attention.self
    h = sa.num_attention_heads if hasattr(sa, "num_attention_heads") else 12
    dh = d // h
    split = lambda t: t.view(n, h, dh).transpose(0, 1)  # noqa: E731
    v = sa.value(x)
    A = torch.softmax(split(sa.query(x)) @ split(sa.key(x)).transpose(-1, -2) / math.sqrt(dh), -1)
    if probs:
        A = probs(A)
    c = (A @ split(v)).transpose(0, 1).reshape(n, d)
    if ctx:
        c = ctx(c, v)
    s = layer.attention.output.dense(c) + x
    if branch:
        s = branch(s)
    a = layer.attention.output.LayerNorm(s)
    return layer.output.LayerNorm(layer.output.dense(layer.intermediate(a)) + a), A


def states(result, run="mitigated"):
    return torch.tensor(result.runs()[run].hidden, dtype=torch.float64)


def test_neutreno_matches_its_formula(bert, reference):
    lam = 0.4
    r = smoothviz.analyze(reference, mitigation="neutreno", params={"lambda": lam}, device="cpu")
    H = states(r)
    layers = bert.encoder.layer
    with torch.no_grad():
        v0 = layers[0].attention.self.value(H[0].float())
        expected, _ = block(layers[1], H[1].float(), ctx=lambda c, v: c + lam * (v0 - v))
    assert torch.allclose(H[2].float(), expected, atol=1e-4)
    assert torch.equal(H[1], states(r, "baseline")[1])  # layer index 0 is untouched


def test_attnscale_matches_its_formula(bert, reference):
    omega = 0.5
    r = smoothviz.analyze(reference, mitigation="attnscale", params={"omega": omega}, device="cpu")
    H = states(r)
    n = H.shape[1]
    dc = torch.full((n, n), 1 / n)
    with torch.no_grad():
        expected, A = block(bert.encoder.layer[0], H[0].float(), probs=lambda A: dc + (1 + omega) * (A - dc))
    assert torch.allclose(H[1].float(), expected, atol=1e-4)
    assert np.allclose(r.mitigated.attentions[0], A.numpy(), atol=1e-5)  # the attention it used
    assert np.allclose(r.mitigated.attentions.sum(-1), 1, atol=1e-5)


def test_contranorm_and_no_residual_match_their_formulas(bert, reference):
    r = smoothviz.analyze(reference, mitigation="contranorm", params={"s": 0.1}, device="cpu")
    H = states(r)

    def cn(S):
        Hn = S / S.norm(dim=-1, keepdim=True)
        return 1.1 * S - 0.1 * torch.softmax(Hn @ Hn.T, -1) @ S

    with torch.no_grad():
        expected, _ = block(bert.encoder.layer[0], H[0].float(), branch=cn)
    assert torch.allclose(H[1].float(), expected, atol=1e-4)

    r = smoothviz.analyze(reference, mitigation="no-residual", device="cpu")
    H = states(r)
    x = H[0].float()
    with torch.no_grad():
        expected, _ = block(bert.encoder.layer[0], x, branch=lambda s: s - x)
    assert torch.allclose(H[1].float(), expected, atol=1e-4)
    assert r.mitigated.rows[-1]["dm_rel"] < 0.05  # pure attention collapses


def test_contranorm_function_by_hand():
    rng = np.random.default_rng(0)
    H = rng.normal(size=(5, 4))
    Hn = H / np.linalg.norm(H, axis=1, keepdims=True)
    logits = Hn @ Hn.T / 0.5
    P = np.exp(logits - logits.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    expected = 1.2 * H - 0.2 * P @ H
    assert np.allclose(contra_norm(torch.from_numpy(H), 0.2, 0.5, False).numpy(), expected)


def test_softdecay_matches_its_formula_and_keeps_the_top_singular_value():
    rng = np.random.default_rng(1)
    H = rng.normal(size=(7, 5)) * 3
    alpha, eps = -0.6, 1e-6
    U, S, Vt = np.linalg.svd(H, full_matrices=False)
    f = -np.log(1 - alpha * (S + alpha) + eps) / alpha
    f *= S[0] / f[0]
    out = soft_decay(torch.from_numpy(H), alpha).numpy()
    assert np.allclose(out, (U * f) @ Vt)
    assert np.linalg.svd(out, compute_uv=False)[0] == pytest.approx(S[0])


def test_softdecay_last_and_every(reference):
    base = smoothviz.analyze(reference, device="cpu")
    last = smoothviz.analyze(reference, mitigation="softdecay", device="cpu")
    assert np.array_equal(last.mitigated.hidden[:6], base.baseline.hidden[:6])
    expected = soft_decay(torch.tensor(base.baseline.hidden[6], dtype=torch.float64), -0.6)
    assert np.allclose(last.mitigated.hidden[6], expected.numpy(), atol=1e-5)
    assert last.mitigated.rows[6]["sv_skewness"] < base.baseline.rows[6]["sv_skewness"]
    every = smoothviz.analyze(reference, mitigation="softdecay", params={"where": "every"}, device="cpu")
    assert not np.allclose(every.mitigated.hidden[3], base.baseline.hidden[3])


def test_softdecay_official_placement_matches_the_released_code(bert, reference):
    """where=official: LN(SVT(FFN(x) + x) + x) inside the last block, x the FFN's input (tokenUni's
    released code), checked against the last BertLayer run by hand."""
    base = smoothviz.analyze(reference, device="cpu")
    r = smoothviz.analyze(reference, mitigation="softdecay", params={"where": "official"}, device="cpu")
    assert np.array_equal(r.mitigated.hidden[:6], base.baseline.hidden[:6])
    layer = bert.encoder.layer[5]
    with torch.no_grad():
        h = torch.tensor(base.baseline.hidden[5]).unsqueeze(0)
        x = layer.attention(h)[0]  # the FFN's input
        y = layer.output.dense(layer.intermediate(x)) + x  # FFN(x) + x
        expected = layer.output.LayerNorm(soft_decay(y, -0.6) + x)
        assert torch.allclose(layer.output.LayerNorm(y), torch.tensor(base.baseline.hidden[6]), atol=1e-5)
    assert np.allclose(r.mitigated.hidden[6], expected[0].numpy(), atol=1e-5)
    last = smoothviz.analyze(reference, mitigation="softdecay", device="cpu")
    assert not np.allclose(r.mitigated.hidden[6], last.mitigated.hidden[6], atol=1e-3)  # two placements
    # no neutral setting: α = 0 still counts the residual twice, LN(FFN(x) + 2x)
    zero = smoothviz.analyze(reference, mitigation="softdecay", params={"where": "official", "alpha": 0}, device="cpu")
    with torch.no_grad():
        assert np.allclose(zero.mitigated.hidden[6], layer.output.LayerNorm(y + x)[0].numpy(), atol=1e-5)
    assert r.mitigation["params"] == {"alpha": -0.6, "where": "official"}


@pytest.mark.parametrize(
    "lab, missing",
    [
        ({"layernorm": "pre", "mlp": "true"}, "pre-LN"),
        ({"layernorm": "post", "mlp": "false"}, "no feed-forward"),
        ({"layernorm": "none", "mlp": "true"}, "without LayerNorm"),
        ({"layernorm": "post", "mlp": "true", "residual": "false"}, "no residual"),
    ],
)
def test_softdecay_official_needs_a_post_ln_block_with_an_ffn(reference, lab, missing):
    with pytest.raises(MitigationError, match=f"where=official.*{missing}.*use where=last"):
        smoothviz.analyze(
            reference,
            model="lab",
            lab={"depth": 2, **lab},
            mitigation="softdecay",
            params={"where": "official"},
            device="cpu",
            heads=False,
        )


def test_softdecay_official_on_a_post_ln_lab(reference):
    """The lab's post-LN block with an MLP: ln2 reads FFN(x) + x, so the placement exists there."""
    lab = {"depth": 3, "layernorm": "post", "mlp": "true"}
    base = smoothviz.analyze(reference, model="lab", lab=lab, device="cpu", heads=False)
    r = smoothviz.analyze(
        reference, model="lab", lab=lab, mitigation="softdecay", params={"where": "official"}, device="cpu", heads=False
    )
    handle = get_handle("lab", "cpu", lab)
    block = handle.model.layers[2]
    with torch.no_grad():
        h = torch.tensor(base.baseline.hidden[2]).unsqueeze(0)
        x = block.ln1(h + block.attn(h)[0])
        expected = block.ln2(soft_decay(block.mlp(x) + x, -0.6) + x)
    assert np.array_equal(r.mitigated.hidden[:3], base.baseline.hidden[:3])
    assert np.allclose(r.mitigated.hidden[3], expected[0].numpy(), atol=1e-5)


def test_spectral_gives_each_head_the_mapped_spectrum(reference):
    ctx = get_handle("default", "cpu").context()
    for mode in ("clip-negative", "clip-positive", "flip"):
        new = respectrum_out_weights(ctx.w_v, ctx.w_o, ctx.heads, mode)
        from smoothviz.model.weights import value_output_product

        before = torch.linalg.eigvals(value_output_product(ctx.w_v.double(), ctx.w_o.double(), 12))
        after = torch.linalg.eigvals(value_output_product(ctx.w_v.double(), new.double(), 12))
        want = spectrum_map(before, mode)
        for l in (0, 5):
            for h in (0, 7):
                got = sorted(after[l, h].tolist(), key=lambda z: (round(z.real, 4), round(z.imag, 4)))
                exp = sorted(want[l, h].tolist(), key=lambda z: (round(z.real, 4), round(z.imag, 4)))
                assert np.allclose(got, exp, atol=1e-3)
    r = smoothviz.analyze(reference, mitigation="spectral", device="cpu")
    assert r.mitigation == {"name": "spectral", "params": {"mode": "clip-negative"}}


def test_spectral_map_by_hand():
    lam = torch.tensor([0.3 + 0.4j, 0.3 - 0.4j, -2.0 + 0j, 0.5 + 0j, 1e-3 - 3j], dtype=torch.complex128)
    mags = [0.5, 0.5, 1.0, 0.5, 1.0]
    assert torch.allclose(spectrum_map(lam, "clip-negative"), -torch.tensor(mags, dtype=torch.complex128))
    assert torch.allclose(spectrum_map(lam, "clip-positive"), torch.tensor(mags, dtype=torch.complex128))
    assert torch.allclose(spectrum_map(lam, "flip"), torch.complex(-lam.real, lam.imag))
    assert torch.equal(spectrum_map(lam, "identity"), lam)


@pytest.mark.parametrize("mode, interval, smooths", [("clip-negative", (-1, 0), 0.0), ("clip-positive", (0, 1), 1.0)])
def test_spectral_clips_give_the_real_spectrum_they_name(reference, mode, interval, smooths):
    """On the pretrained default model: after clip-negative no head smooths and after clip-positive
    every head does, by the page's own Dovonon rule; the new eigenvalues are real and in range."""
    r = smoothviz.analyze(reference, mitigation="spectral", params={"mode": mode}, device="cpu")
    eigs = r.mitigated.value_eigs
    assert np.abs(eigs.imag).max() < 1e-6
    lo, hi = interval
    assert (eigs.real >= lo - 1e-6).all() and (eigs.real <= hi + 1e-6).all() and (eigs.real != 0).all()
    assert (r.mitigated.smooths == bool(smooths)).all()
    assert [row["heads_smoothing"] for row in r.mitigated.rows] == [None] + [smooths] * 6
    assert 0 < r.baseline.smooths.mean() < 1  # the baseline mixes both verdicts (64 of 72 smooth)


def test_heads_smoothing_in_every_row(reference):
    r = smoothviz.analyze(reference, mitigation="fusion-mean", device="cpu")
    for run in (r.baseline, r.mitigated):
        rows = run.rows
        assert [row["layer"] for row in rows] == list(range(7))  # integer layers only; the fused point apart
        assert rows[0]["heads_smoothing"] is None
        assert [row["heads_smoothing"] for row in rows[1:]] == pytest.approx(run.smooths.mean(1).tolist())
    assert r.mitigated.table()[-1]["layer"] == "fused" and r.mitigated.fused_row["heads_smoothing"] is None
    assert [row["heads_smoothing"] for row in r.baseline.rows] == [None, 1, 10 / 12, 11 / 12, 10 / 12, 10 / 12, 11 / 12]
    quick = smoothviz.analyze(reference, device="cpu", heads=False)
    assert all(row["heads_smoothing"] is None for row in quick.baseline.rows)


def test_fusions_by_hand(reference):
    base = smoothviz.analyze(reference, device="cpu")
    H = base.baseline.hidden.astype(np.float64)
    cases = {
        ("fusion-mean", "all", ""): H[1:].mean(0),
        ("fusion-mean", "4-6", "1,1,2"): (H[4] + H[5] + 2 * H[6]) / 4,
        ("fusion-max", "2-5", None): H[2:6].max(0),
        ("fusion-concat", "5-6", None): np.concatenate([H[5], H[6]], axis=1),
    }
    for (name, layers, weights), expected in cases.items():
        params = {"layers": layers, **({"weights": weights} if weights is not None else {})}
        r = smoothviz.analyze(reference, mitigation=name, params=params, device="cpu")
        assert np.allclose(r.mitigated.fused, expected, atol=1e-5)
        assert r.mitigated.fused_row is not None and len(r.mitigated.rows) == 7
        assert r.mitigated.table()[-1]["layer"] == "fused" and len(r.mitigated.table()) == 8


def test_fusion_gate_uses_the_learned_gate(reference):
    """α_{i,l} = softmax_l(w_lᵀh_{i,l} + b_l): each layer with its own w_l and b_l (Shi et al.)."""
    import json

    from smoothviz.data import DEFAULT_GATE

    gate = json.loads(DEFAULT_GATE.read_text())
    assert gate["format"] == 2 and gate["layers"] == [1, 2, 3, 4, 5, 6]
    w, b = np.array(gate["w"]), np.array(gate["b"])
    assert w.shape == (6, 384) and b.shape == (6,) and np.ptp(b) > 1e-3  # the per-layer biases differ
    r = smoothviz.analyze(reference, mitigation="fusion-gate", device="cpu")
    H = r.mitigated.hidden[1:].astype(np.float64)  # [6, n, d]
    logits = np.einsum("lnd,ld->ln", H, w) + b[:, None]
    alpha = np.exp(logits - logits.max(0)) / np.exp(logits - logits.max(0)).sum(0)
    assert np.allclose(r.mitigated.fused, (alpha[..., None] * H).sum(0), atol=1e-4)


def test_gate_bias_matters_and_the_limits_hold():
    """A single bias shared by every layer cancels in the softmax over layers; one per layer does not."""
    from smoothviz.mitigations.fusion import gate_fuse

    g = torch.Generator().manual_seed(0)
    H = torch.randn(4, 5, 8, generator=g, dtype=torch.float64)
    w = torch.randn(4, 8, generator=g, dtype=torch.float64) * 0.3
    b = torch.zeros(4, dtype=torch.float64)
    fused = gate_fuse(H, w, b)
    assert torch.allclose(gate_fuse(H, w, b + 2.5), fused)  # a shared shift cancels
    assert not torch.allclose(gate_fuse(H, w, torch.tensor([0, 0, 1.5, 0], dtype=torch.float64)), fused)
    assert torch.allclose(gate_fuse(H, torch.zeros_like(w), b), H.mean(0))  # w = 0, equal b: the mean
    assert torch.allclose(gate_fuse(H, w, torch.tensor([0, 0, 80.0, 0], dtype=torch.float64)), H[2])  # one layer wins
    assert torch.equal(gate_fuse(H[2:3], w[2:3], b[2:3]), H[2])  # one layer: itself
    batched = gate_fuse(torch.stack([H, 2 * H], 1), w, b)  # [k, N, n, d], as fit-gate calls it
    assert torch.allclose(batched[0], fused) and torch.allclose(batched[1], gate_fuse(2 * H, w, b))


def _gate_file(path, layers, width=384, **extra):
    import json

    g = torch.Generator().manual_seed(1)
    gate = {
        "format": 2,
        "model": "default",
        "width": width,
        "layers": layers,
        "w": (torch.randn(len(layers), width, generator=g) * 0.1).tolist(),
        "b": torch.linspace(-1, 1, len(layers)).tolist(),
        **extra,
    }
    path.write_text(json.dumps(gate))
    return str(path)


def test_fusion_gate_fuses_exactly_its_fitted_layers(reference, tmp_path):
    gate = _gate_file(tmp_path / "late.json", [4, 5, 6])
    r = smoothviz.analyze(reference, mitigation="fusion-gate", params={"layers": "4-6", "gate": gate}, device="cpu")
    assert r.mitigated.fused_row is not None
    for layers in ("all", "5-6", "1-3"):
        with pytest.raises(MitigationError, match="fitted on layers 4-6 \\(3 layers.*choose layers=4-6"):
            smoothviz.analyze(reference, mitigation="fusion-gate", params={"layers": layers, "gate": gate})


def test_old_format_gate_says_refit(reference, tmp_path):
    import json

    old = tmp_path / "old.json"
    old.write_text(json.dumps({"model": "default", "width": 384, "layers": "all", "w": [0.1] * 384, "b": 0.3}))
    with pytest.raises(MitigationError, match="old format.*cancels in the softmax.*refit.*smoothviz fit-gate"):
        smoothviz.analyze(reference, mitigation="fusion-gate", params={"gate": str(old)})
    broken = tmp_path / "broken.json"
    broken.write_text("{}")
    with pytest.raises(MitigationError, match="not a gate file"):
        smoothviz.analyze(reference, mitigation="fusion-gate", params={"gate": str(broken)})


def test_fit_gate_learns_one_w_and_b_per_layer(tmp_path):
    import json

    from smoothviz.pipeline.gate import fit_gate

    rows = (Path(__file__).resolve().parent.parent / "assets" / "gate_example.csv").read_text().splitlines()
    data = tmp_path / "small.csv"
    data.write_text("\n".join(rows[:41]) + "\n")
    out = tmp_path / "gate.json"
    summary = fit_gate(str(data), out=str(out), layers="5-6", epochs=30, device="cpu")
    gate = json.loads(out.read_text())
    assert gate["format"] == 2 and gate["layers"] == [5, 6] == summary["layers"]
    assert np.array(gate["w"]).shape == (2, 384) and len(gate["b"]) == 2
    assert gate["b"][0] != gate["b"][1]  # both biases were trained
    r = smoothviz.analyze(
        "A gate on two layers.",
        mitigation="fusion-gate",
        params={"layers": "5-6", "gate": str(out)},
        device="cpu",
        heads=False,
    )
    assert r.mitigated.fused.shape == (r.mitigated.hidden.shape[1], 384)


@pytest.mark.parametrize("name", NAMES)
def test_in_forward_is_declared_truthfully(name):
    """The page warns about out-of-distribution states for exactly the methods that act inside the pass."""
    ctx = get_handle("default", "cpu").context()
    # heads' defaults are its neutral values (each intervention only when asked): ablate one head
    method = make(name, {"ablate": "1.0"}) if name == "heads" else make(name)
    assert (method.intervention(ctx) is not None) == REGISTRY[name].in_forward


@pytest.mark.parametrize("name", NAMES)
def test_neutral_setting_reproduces_the_baseline(name, reference):
    """Each mitigation's declared neutral setting (REGISTRY[name].NEUTRAL) is the baseline exactly."""
    neutral = REGISTRY[name].neutral(6)
    assert neutral, f"{name} declares no neutral setting"
    r = smoothviz.analyze(reference, mitigation=name, params=neutral, device="cpu")
    assert np.abs(r.mitigated.hidden - r.baseline.hidden).max() <= 1e-6
    if r.mitigated.fused_row is not None:
        for key in ("cosine_mean", "dm_rel", "effective_rank", "sv_skewness", "dirichlet"):
            assert r.mitigated.fused_row[key] == pytest.approx(r.baseline.rows[-1][key], abs=1e-6)


def test_documented_effects_on_the_default_model(reference):
    base = smoothviz.analyze(reference, device="cpu").baseline.rows[-1]
    for lam in (0.2, 0.4, 0.8):
        r = smoothviz.analyze(reference, mitigation="neutreno", params={"lambda": lam}, device="cpu")
        assert r.mitigated.rows[-1]["cosine_mean"] < base["cosine_mean"]
    fused = smoothviz.analyze(reference, mitigation="fusion-mean", device="cpu").mitigated.fused_row
    assert fused["cosine_mean"] < base["cosine_mean"] and fused["dm_rel"] > base["dm_rel"]


def test_attnscale_raises_smoothing_on_the_frozen_default_model(reference):
    """What its summary and the Theory page say: 0.325 → 0.362 at the default ω = 0.5."""
    from smoothviz.mitigations import REGISTRY

    r = smoothviz.analyze(reference, mitigation="attnscale", device="cpu", heads=False)
    assert r.mitigation["params"] == {"omega": 0.5}
    assert r.baseline.rows[-1]["cosine_mean"] == pytest.approx(0.325, abs=5e-4)
    assert r.mitigated.rows[-1]["cosine_mean"] == pytest.approx(0.362, abs=5e-4)
    summary = REGISTRY["attnscale"].summary
    assert "0.325 → 0.362" in summary and "starts at 0" in summary and "raises smoothing" in summary


@pytest.mark.parametrize(
    "name, params, message",
    [
        ("neutreno", {"lambda": "-0.1"}, "lambda must be a number in \\[0.0, 1.0\\]"),
        ("neutreno", {"lambda": "nan"}, "lambda"),
        ("neutreno", {"lambda": "abc"}, "lambda"),
        ("softdecay", {"alpha": "0.5"}, "alpha"),
        ("softdecay", {"where": "middle"}, "one of last, every, official"),
        ("spectral", {"mode": "sideways"}, "one of clip-negative"),
        ("attnscale", {"omega": "-1"}, "omega"),
        ("contranorm", {"s": "0.5"}, "s must be"),
        ("no-residual", {"residual": "2"}, "residual"),
        ("neutreno", {"gamma": "1"}, "unknown parameter gamma \\(allowed: lambda\\)"),
        ("fusion-mean", {"weights": "1,2"}, None),
        ("warp-drive", {}, "unknown mitigation"),
    ],
)
def test_bad_parameters_say_what_is_allowed(name, params, message, reference):
    if message is None:  # only detectable once the depth is known
        with pytest.raises(MitigationError, match="6 weights needed"):
            smoothviz.analyze(reference, mitigation=name, params=params | {"layers": "all"})
        return
    with pytest.raises(MitigationError, match=message):
        make(name, params)


@pytest.mark.parametrize("layers", ["7", "5-3", "x-y", "-1"])
def test_fusion_layer_ranges_are_checked(layers):
    with pytest.raises(MitigationError, match="layers"):
        smoothviz.analyze("hello there", mitigation="fusion-max", params={"layers": layers})


@pytest.mark.parametrize(
    "name, params, message",
    [
        ("heads", {"ablate": "7.0"}, "layer 7 does not exist"),
        ("heads", {"ablate": "3.12"}, "head 12 does not exist"),
        ("fusion-max", {"layers": "2-9"}, "layers must lie within 0..6"),
        ("fusion-concat", {"layers": "x"}, "layers must be 'all'"),
        ("fusion-mean", {"weights": "1,2"}, "6 weights needed"),
        ("fusion-gate", {"gate": "/no/such/gate.json"}, "not a gate file"),
        ("fusion-gate", {"layers": "2-4"}, "fitted on layers 1-6"),
    ],
)
def test_check_refuses_what_the_model_lacks_before_any_sentence(name, params, message):
    """check(n_layers, heads) raises what the analysis would, without a model or a sentence."""
    make(name).check(6, 12)  # the defaults fit the default model's shape
    with pytest.raises(MitigationError, match=message):
        make(name, params).check(6, 12)


def test_parallel_threads_give_the_sequential_results(reference):
    jobs = [
        ("neutreno", {"lambda": 0.6}),
        ("attnscale", {}),
        ("softdecay", {"where": "every"}),
        ("spectral", {"mode": "flip"}),
        ("contranorm", {}),
        ("no-residual", {}),
        (None, None),
    ]

    def run(job):
        name, params = job
        return smoothviz.analyze(reference, mitigation=name, params=params, device="cpu")

    sequential = [run(j) for j in jobs]
    with ThreadPoolExecutor(len(jobs)) as pool:
        parallel = list(pool.map(run, jobs * 2))
    for i, r in enumerate(parallel):
        s = sequential[i % len(jobs)]
        assert np.array_equal(r.baseline.hidden, s.baseline.hidden)
        if s.mitigated is not None:
            assert np.array_equal(r.mitigated.hidden, s.mitigated.hidden)
            assert r.mitigated.rows == s.mitigated.rows
    # and nothing was left on the shared model: a plain run is still the baseline
    assert np.array_equal(run((None, None)).baseline.hidden, sequential[-1].baseline.hidden)


def test_the_page_says_flip_makes_the_default_model_smooth_more(reference):
    """The warning beside a spectral what-if states the measured change, from the data on screen."""
    from smoothviz.words import trends

    r = smoothviz.analyze(reference, mitigation="spectral", params={"mode": "flip"}, device="cpu", heads=False)
    said = trends.effect(r, "spectral (mode=flip)")
    assert said.startswith(
        "At layer 6, spectral (mode=flip) raises cosine_mean from 0.325 to 0.836 (more smoothing by cosine_mean)"
    )
