"""The lab model: config validation, structure, determinism, and docs/SCIENCE.md §4's claims."""

import dataclasses

import pytest
import torch

from smoothviz.model.lab import CHOICES, LIMITS, LabConfig, LabModel
from smoothviz.model.models import ARCHITECTURES, get_module
from smoothviz.model.weights import value_output_product, value_output_weights

D_IN, N = 384, 20  # all-MiniLM-L6-v2's hidden size; a 20-token sentence
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The lab's matrices are tiny: one thread avoids OpenMP stalls on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def embeds():
    """Fixed stand-in for a real model's embedding output, ``[1, 20, 384]``."""
    return torch.randn(1, N, D_IN, generator=torch.Generator().manual_seed(1234))


def run(embeds, **kwargs):
    with torch.no_grad():
        return LabModel(LabConfig(**kwargs), D_IN)(embeds)


def dm_rel(h):
    """``||P H||_F / ||H||_F`` for ``h [n, d]``, P removing the mean token."""
    return ((h - h.mean(0)).norm() / h.norm()).item()


def cosine_mean(h):
    """Mean of cos(h_i, h_j) over ordered pairs i != j, for ``h [n, d]``."""
    u = h / h.norm(dim=1, keepdim=True)
    c = u @ u.T
    n = h.shape[0]
    return ((c.sum() - c.diagonal().sum()) / (n * (n - 1))).item()


# --- config ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(depth=0), ["depth", "1..64", "0"]),
        (dict(depth=65), ["depth", "1..64", "65"]),
        (dict(depth=True), ["depth"]),
        (dict(width=4), ["width", "8..1024"]),
        (dict(width=66, heads=4), ["width", "divisible", "4", "66"]),
        (dict(heads=17), ["heads", "1..16"]),
        (dict(layernorm="middle"), ["layernorm", "none, pre, post", "middle"]),
        (dict(ln_sign="zero"), ["ln_sign", "positive, negative"]),
        (dict(value_spectrum="zero"), ["value_spectrum", "random, positive, negative", "zero"]),
        (dict(temperature=0), ["temperature", "0.05..20"]),
        (dict(temperature=float("nan")), ["temperature"]),
        (dict(seed=-1), ["seed"]),
        (dict(residual="yes"), ["residual", "True, False"]),
        (dict(mlp=1), ["mlp"]),
    ],
)
def test_config_rejects_bad_value(kwargs, words):
    with pytest.raises(ValueError) as err:
        LabConfig(**kwargs)
    for word in words:
        assert word in str(err.value)


def test_from_strings_unknown_key_lists_allowed():
    with pytest.raises(ValueError, match="unknown lab key 'layers'.*depth, width, heads"):
        LabConfig.from_strings({"layers": "3"})


@pytest.mark.parametrize(
    "pairs, key", [({"mlp": "maybe"}, "mlp"), ({"depth": "3.5"}, "depth"), ({"temperature": "hot"}, "temperature")]
)
def test_from_strings_unparsable_value_names_key(pairs, key):
    with pytest.raises(ValueError, match=f"lab {key} must be"):
        LabConfig.from_strings(pairs)


def test_from_strings_parses_and_round_trips():
    cfg = LabConfig.from_strings(
        {
            "depth": "8",
            "residual": "No",
            "mlp": "YES",
            "temperature": "0.5",
            "layernorm": "pre",
            "value_spectrum": "negative",
        }
    )
    assert (cfg.depth, cfg.residual, cfg.mlp, cfg.temperature) == (8, False, True, 0.5)
    assert LabConfig.from_strings({k: str(v) for k, v in cfg.to_dict().items()}) == cfg
    assert LabConfig.from_strings({}) == LabConfig()


def test_limits_cover_every_field():
    names = {f.name for f in dataclasses.fields(LabConfig)}
    assert set(LIMITS) | set(CHOICES) == names and not set(LIMITS) & set(CHOICES)


# --- structure and determinism ---------------------------------------------------------------


def test_shapes_and_config(embeds):
    model = LabModel(LabConfig(depth=3, width=32, heads=4, mlp=True, layernorm="pre"), D_IN)
    assert (model.config.model_type, model.config.num_hidden_layers) == ("lab", 3)
    assert (model.config.num_attention_heads, model.config.hidden_size) == (4, 32)
    assert not model.training
    with torch.no_grad():
        out = model(inputs_embeds=embeds, output_hidden_states=True, output_attentions=True)
    assert len(out.hidden_states) == 4 and len(out.attentions) == 3
    assert all(h.shape == (1, N, 32) and h.dtype == torch.float32 for h in out.hidden_states)
    assert all(a.shape == (1, 4, N, N) for a in out.attentions)
    torch.testing.assert_close(torch.stack(out.attentions).sum(-1), torch.ones(3, 1, 4, N))


def test_projection_is_an_isometry_up_to_scale(embeds):
    w = LabModel(LabConfig(depth=1, width=64), D_IN).proj.weight  # [64, 384]
    torch.testing.assert_close(w @ w.T, torch.eye(64), atol=1e-5, rtol=0)
    w = LabModel(LabConfig(depth=1, width=512, heads=8), D_IN).proj.weight  # [512, 384]
    torch.testing.assert_close(w.T @ w, torch.eye(D_IN), atol=1e-5, rtol=0)
    same = LabModel(LabConfig(depth=1, width=D_IN, heads=4), D_IN)
    with torch.no_grad():
        h0 = same(embeds).hidden_states[0]
    torch.testing.assert_close(h0 / h0.norm(), embeds / embeds.norm())
    assert h0.pow(2).mean().item() == pytest.approx(1.0, rel=1e-5)  # unit mean square entry


def test_same_seed_same_outputs_and_global_rng_untouched(embeds):
    state = torch.random.get_rng_state()
    a, b = run(embeds, depth=4, mlp=True, seed=7), run(embeds, depth=4, mlp=True, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(x, y) for x, y in zip(a.hidden_states, b.hidden_states))
    c = run(embeds, depth=4, mlp=True, seed=8)
    assert not torch.equal(a.hidden_states[-1], c.hidden_states[-1])


@pytest.mark.parametrize("layernorm", ["none", "pre", "post"])
def test_hooks_fire_and_out_proj_is_added_to_block_input(embeds, layernorm):
    model = LabModel(LabConfig(depth=2, layernorm=layernorm, mlp=True), D_IN)
    spec = ARCHITECTURES["lab"]
    seen, handles = {}, []

    def recorder(key):
        def hook(module, inputs, output):
            seen[key] = (inputs[0], output)

        return hook

    try:
        for i, block in enumerate(get_module(model, spec.layers)):
            for path in (spec.value, spec.out_proj, *spec.layernorms):
                handles.append(get_module(block, path).register_forward_hook(recorder((i, path))))
        with torch.no_grad():
            out = model(embeds)
    finally:
        for handle in handles:
            handle.remove()
    assert len(seen) == 2 * 4
    # The residual sums the block input and out_proj's output; post/none normalise that sum next.
    for i in range(2):
        summed = out.hidden_states[i] + seen[(i, spec.out_proj)][1]
        if layernorm == "pre":
            torch.testing.assert_close(seen[(i, "ln2")][0], summed)
        else:
            torch.testing.assert_close(seen[(i, "ln1")][0], summed)


def test_ln_sign_negative_sets_weight():
    model = LabModel(LabConfig(depth=1, layernorm="post", ln_sign="negative"), D_IN)
    assert torch.all(model.layers[0].ln1.weight == -1) and torch.all(model.layers[0].ln2.weight == -1)
    assert isinstance(LabModel(LabConfig(depth=1), D_IN).layers[0].ln1, torch.nn.Identity)


@pytest.mark.parametrize("spectrum, sign", [("positive", 1.0), ("negative", -1.0)])
def test_value_output_spectrum_has_the_chosen_sign(spectrum, sign):
    model = LabModel(LabConfig(depth=3, width=32, heads=4, value_spectrum=spectrum), D_IN)
    m = value_output_product(*value_output_weights(model, ARCHITECTURES["lab"], 3), heads=4)
    assert m.shape == (3, 4, 8, 8)
    eig = torch.linalg.eigvals(m.double())
    assert eig.imag.abs().max() < 1e-6
    magnitude = sign * eig.real  # in (0, 1] for positive, and [-1, 0) flipped for negative
    assert magnitude.min() > 0 and magnitude.max() <= 1 + 1e-6
    # M is W_O^h W_V^h of the weights the forward pass uses: heads sum to o(v(x)) without bias.
    attn, x = model.layers[0].attn, torch.randn(5, 32, generator=torch.Generator().manual_seed(0))
    w_v = attn.v.weight.T.reshape(32, 4, 8).permute(1, 0, 2)  # [h, width, d_h]
    w_o = attn.o.weight.T.reshape(4, 8, 32)  # [h, d_h, width]
    torch.testing.assert_close(torch.einsum("hij,hjk->hik", w_o, w_v), m[0])
    torch.testing.assert_close(attn.o(attn.v(x)), sum(x @ w_v[h] @ w_o[h] for h in range(4)))


# --- docs/SCIENCE.md §4's claims -----------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_pure_attention_collapses_to_rank_one(embeds, seed):
    out = run(embeds, depth=10, residual=False, mlp=False, layernorm="none", seed=seed)
    assert dm_rel(out.hidden_states[0][0]) > 0.9
    assert dm_rel(out.hidden_states[10][0]) < 1e-3


@pytest.mark.parametrize("seed", SEEDS)
def test_positive_value_spectrum_smooths(embeds, seed):
    out = run(embeds, depth=32, value_spectrum="positive", seed=seed)
    cos = [cosine_mean(h[0]) for h in out.hidden_states]
    assert cos[0] < 0.1 and cos[32] > 0.9


@pytest.mark.parametrize("seed", SEEDS)
def test_negative_value_spectrum_does_not_smooth(embeds, seed):
    out = run(embeds, depth=32, value_spectrum="negative", seed=seed)
    assert max(cosine_mean(h[0]) for h in out.hidden_states) < 0.3


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(value_spectrum="positive"),
        dict(mlp=True),
        dict(value_spectrum="negative", temperature=0.05),
        dict(layernorm="pre", mlp=True),
        dict(residual=False),
    ],
)
def test_depth_64_stays_finite(embeds, kwargs):
    out = run(embeds, depth=64, **kwargs)
    assert all(torch.isfinite(h).all() for h in out.hidden_states)
    assert all(torch.isfinite(a).all() for a in out.attentions)


def test_default_config_smooths_gradually(embeds):
    """The teaching default: visible, gradual smoothing over 32 layers (not a one-layer collapse)."""
    out = run(embeds)
    cos = [cosine_mean(h[0]) for h in out.hidden_states]
    assert cos[0] < 0.1 and 0.1 < cos[8] < 0.6 and cos[32] > 0.9


# --------------------------------------------------------------------------- through analyze()


def test_lab_claims_through_the_analysis(reference):
    """RESEARCH §4 on the real sentence's embeddings, as a user runs it (fixed seeds)."""
    import smoothviz

    pure = smoothviz.analyze(
        reference,
        model="lab",
        device="cpu",
        lab={"residual": "false", "mlp": "false", "layernorm": "none", "depth": 12},
    )
    dm = pure.baseline.metric("dm_rel")
    assert dm[0] > 0.9 and min(dm[1:6]) < 1e-3  # rank one within a few layers
    assert pure.lab["residual"] is False and pure.baseline.hidden.shape == (13, 27, 64)
    spectral = smoothviz.analyze(
        reference, model="lab", device="cpu", mitigation="spectral", lab={"value_spectrum": "positive", "seed": 1}
    )
    assert spectral.baseline.rows[-1]["cosine_mean"] > 0.9  # positive spectrum: collapse
    assert max(spectral.mitigated.metric("cosine_mean")[1:]) < 0.3  # negative: tokens stay apart
    assert spectral.mitigation["lab_value_spectrum"] == "negative"
    assert (spectral.mitigated.value_eigs.real < 0).all() and (spectral.baseline.value_eigs.real > 0).all()
    assert spectral.baseline.smooths.mean() > spectral.mitigated.smooths.mean()


@pytest.mark.parametrize("layernorm", ["pre", "post"])
def test_shi_bound_only_for_post_ln_blocks(reference, layernorm):
    """Shi et al.'s v is derived for post-LN blocks: a pre-LN lab shows none, and says why."""
    import smoothviz
    from smoothviz.outputs import figures
    from smoothviz.pipeline.analysis import SHI_PRE_LN_NOTE

    r = smoothviz.analyze(
        reference, model="lab", device="cpu", heads=False, lab={"depth": 4, "layernorm": layernorm, "mlp": "true"}
    )
    v = r.baseline.metric("shi_v")[1:]
    fig = figures.shi_bound(r)
    note = " ".join([fig.layout.title.text or ""] + [a.text for a in fig.layout.annotations])  # the title's 2nd line
    assert r.layernorm == layernorm and r.baseline.ln_sigma.shape == (4, 2)
    assert all(x is not None for x in r.baseline.metric("dm_ratio")[1:])  # the measured ratio stays
    if layernorm == "pre":
        assert v == [None] * 4
        assert SHI_PRE_LN_NOTE in r.notes and "post-LN" in SHI_PRE_LN_NOTE and "pre-LN" in note
        assert not any(t.name.startswith("v (bound)") for t in fig.data)  # no legend entry for a line not drawn
    else:
        assert all(x is not None and x > 0 for x in v) and SHI_PRE_LN_NOTE not in r.notes
        assert "pre-LN" not in note


def test_lab_bad_settings_are_model_errors():
    import smoothviz

    with pytest.raises(smoothviz.ModelError, match="depth"):
        smoothviz.analyze("hello", model="lab", lab={"depth": "65"})
    with pytest.raises(smoothviz.ModelError, match="unknown lab key"):
        smoothviz.analyze("hello", model="lab", lab={"layers": "3"})


def test_lab_models_are_kept_within_a_byte_budget(monkeypatch):
    """Issue 16: every cache is bounded by bytes; a 64×1024 lab alone holds 3.2 GB of weights."""
    from smoothviz.model import handles

    def labs():
        return [h for k, h in handles._handles.items() if k[0] == "lab"]

    one = handles.get_handle("lab", "cpu", {"depth": 2, "width": 64, "seed": 0}).nbytes
    assert one >= 2 * 4 * 64 * 64 * 4  # q, k, v, o of two layers in float32
    monkeypatch.setattr(handles, "MAX_LAB_BYTES", 2 * one)  # room for two
    for seed in (1, 2, 3):
        newest = handles.get_handle("lab", "cpu", {"depth": 2, "width": 64, "seed": seed})
        assert sum(h.nbytes for h in labs()) <= 2 * one and newest in labs()
    assert len(labs()) == 2
    monkeypatch.setattr(handles, "MAX_LAB_BYTES", 1)  # the newest always stays
    newest = handles.get_handle("lab", "cpu", {"depth": 2, "width": 64, "seed": 4})
    assert labs() == [newest]
