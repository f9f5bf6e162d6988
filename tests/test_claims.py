"""Every sentence SmoothViz writes about the numbers is true for every input (issue 23).

The sentences are rendered from :class:`smoothviz.words.claims.Claim` objects; :func:`claims.check_all`
re-derives each claim from the analysis's rows, independently of the code that made it. The property
test runs it over many inputs; the other tests each pin one sentence that was false before.
"""

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import smoothviz
from smoothviz.data import examples
from smoothviz.mitigations import REGISTRY
from smoothviz.outputs import views
from smoothviz.words import claims as cl
from smoothviz.words import trends
from smoothviz.words.lesson import PURE_LAB, REFERENCE, STEPS

ROOT = Path(__file__).resolve().parent.parent
TEXTS = {
    "short": "Hi.",
    "reference": REFERENCE,
    "long": examples()["examples"]["A long paragraph (60+ tokens)"],
    "repeated": "the the the the the the the the",
    "numbers": "3 14 15 92 65 35 89 79 32 38",
    "non-latin": "Привет, мир! 你好，世界。 مرحبا بالعالم",
    "typed special": "before [SEP] after [CLS] end",
    "emoji": "🦊",
}
# an active setting per mitigation (the neutral one is the registry's NEUTRAL)
ACTIVE = {
    "fusion-mean": {"layers": "all"},
    "fusion-max": {"layers": "all"},
    "fusion-concat": {"layers": "all"},
    "fusion-gate": {},
    "neutreno": {"lambda": 0.6},
    "softdecay": {"where": "every"},
    "spectral": {"mode": "flip"},
    "attnscale": {"omega": 1.0},
    "contranorm": {"s": 0.2},
    "no-residual": {},
    "heads": {"ablate": "1.0,1.1,2.3", "sink": "drop"},
}
NAMES = {"baseline": "baseline", "mitigated": "mitigated"}


def _neutral(name, L=6):
    return {k: str(v).replace("{L}", str(L)) if isinstance(v, str) else v for k, v in REGISTRY[name].NEUTRAL.items()}


def _claims_hold(a):
    """Check every claim of every line the analysis's captions write; return the lines."""
    made = [c for line in trends.line_claims(a, NAMES) for c in line]
    problems = cl.check_all(made, a)
    assert not problems, problems
    lines = trends.trend_lines(a, NAMES)
    text = " ".join(lines)
    for same in re.finditer(r"from (\S+) to (\S+?)[ ,.(]", text):
        assert same.group(1) != same.group(2), text  # never "raises X from 0.325 to 0.325"
    if len(a.keep) < 2:
        assert "(a collapse)" not in text, text
    if a.mitigated is not None and a.mitigated.fused_row is None:
        assert "fusion only combines" not in text, text
    if "every layer" in text and "Every metric moves" in text:  # only when nothing is unchanged or undefined
        assert "Unchanged" not in text and "Undefined" not in text
    return lines


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    """A GPT-2-shaped tiny random model with a byte-level BPE tokenizer whose special token is
    <|endoftext|>, built from a config (offline)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2Model, GPT2TokenizerFast

    path = tmp_path_factory.mktemp("gpt2")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        [REFERENCE, *TEXTS.values()] * 2, vocab_size=500, min_frequency=1, special_tokens=["<|endoftext|>"]
    )
    tok = GPT2TokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>"
    )
    tok.save_pretrained(path)
    torch.manual_seed(0)
    eos = tok.eos_token_id
    GPT2Model(
        GPT2Config(
            n_embd=32, n_layer=3, n_head=4, vocab_size=len(tok), n_positions=128, bos_token_id=eos, eos_token_id=eos
        )
    ).save_pretrained(path, safe_serialization=True)
    return str(path)


def _cases(gpt2):
    """(label, analyze kwargs): many inputs, every preset, every mitigation neutral and active."""
    rng = random.Random(23)
    out = [(f"text {k}", dict(text=t)) for k, t in TEXTS.items()]
    out += [
        ("one token", dict(text="x", exclude_special=True)),
        ("one token, fused", dict(text="x", exclude_special=True, mitigation="fusion-mean", params={"layers": "all"})),
    ]
    for title, preset in examples()["presets"].items():
        s = dict(preset["settings"])
        s.pop("projection", None)
        mit = s.pop("mitigation")
        out.append((f"preset {title}", dict({"text": REFERENCE, **s}, mitigation=None if mit == "none" else mit)))
    for name in REGISTRY:
        for setting, params in (("neutral", _neutral(name)), ("active", ACTIVE[name])):
            text = rng.choice([TEXTS["short"], REFERENCE, TEXTS["long"]])
            out.append((f"{name} {setting}", dict(text=text, mitigation=name, params=params)))
    out += [
        ("lab post-LN collapse", dict(text=REFERENCE, model="lab", lab={**PURE_LAB, "layernorm": "post"})),
        (
            "lab pre-LN collapse + neutreno",
            dict(
                text=REFERENCE,
                model="lab",
                lab={**PURE_LAB, "layernorm": "pre"},
                mitigation="neutreno",
                params={"lambda": 0.5},
            ),
        ),
        ("lab shallow", dict(text=TEXTS["numbers"], model="lab", lab={"depth": 4})),
        ("exclude special", dict(text=REFERENCE, exclude_special=True, mitigation="attnscale")),
        (
            "metrics disagree",
            dict(text=REFERENCE, exclude_special=True, mitigation="fusion-concat", params={"layers": "4-6"}),
        ),
    ]
    for text in ("The fox <|endoftext|> jumps over the lazy dog.", REFERENCE, "Hi."):
        out.append((f"gpt2 {text[:12]}", dict(text=text, model=gpt2)))
        out.append(
            (
                f"gpt2 sink {text[:12]}",
                dict(text=text, model=gpt2, mitigation="heads", params={"ablate": "", "sink": "drop"}),
            )
        )
    for name in ("neutreno", "attnscale", "fusion-max", "softdecay", "contranorm", "spectral", "no-residual"):
        out.append((f"gpt2 {name}", dict(text=REFERENCE, model=gpt2, mitigation=name, params=ACTIVE[name])))
    return out


@pytest.mark.slow
def test_every_claim_holds_on_many_inputs(gpt2_dir):
    """The property test: no claim any caption or note writes is contradicted by the numbers."""
    checked, skipped = 0, []
    for label, kwargs in _cases(gpt2_dir):
        try:
            a = smoothviz.analyze(device="cpu", heads=True, **kwargs)
        except ValueError as err:  # a clear refusal is a valid outcome (e.g. an emoji-only GPT-2 text)
            skipped.append((label, str(err)))
            continue
        _claims_hold(a)
        sink = (a.mitigation or {}).get("params", {}).get("sink") == "drop"
        if sink:
            [note] = [n for n in a.notes if n.startswith("sink=drop")]
            claim = cl.sink_claim(a, [t for t, s in zip(a.tokens, a.special) if s] or ["<|endoftext|>"])
            assert not cl.check(claim, a)
            assert ("dropped nothing" in note) == (not any(a.special)), note
        checked += 1
    print(f"checked {checked} analyses; refused: {skipped}")
    assert checked >= 50, (checked, skipped)
    assert all(label.startswith("gpt2") or label.startswith("fusion-gate") for label, _ in skipped), skipped


@pytest.mark.slow
def test_every_lesson_claim_holds():
    for step in STEPS:
        s = dict(step.settings)
        text, mit = s.pop("text"), s.pop("mitigation")
        a = smoothviz.analyze(text, device="cpu", mitigation=None if mit == "none" else mit, **s)
        assert not cl.check_all(step.claims(a), a), step.title
        right, lines = step.answer(a)
        assert right in step.options and all("{}" not in line for line in lines)


def test_a_checker_catches_a_false_claim(base):
    """The checkers can fail: each wrong claim about the reference sentence is caught."""
    good = [c for line in trends.line_claims(base, NAMES) for c in line]
    assert not cl.check_all(good, base)
    wrong = [
        cl.Claim("span", "baseline", "cosine_mean", (0, 6), (0.045, 0.4)),
        cl.Claim("against", "baseline", "sv_skewness", (3,), (6,)),  # it is 3 and 5
        cl.Claim("flat", "baseline", "cosine_mean", (1,), (6,)),
        cl.Claim("collapse", "baseline", "dm_rel", (2,), (1e-5,)),
        cl.Claim("one_token", "baseline"),
    ]
    for claim in wrong:
        assert cl.check(claim, base), claim
    dropped = [c for c in good if c.kind != "flat"]  # leaving out the unchanged numerical rank is caught
    assert any("not accounted" in p or "exceptions" in p for p in cl.check_all(dropped, base))


# --------------------------------------------------------------------------- item 3: trend sentences


def test_flat_rank_is_said_not_every_metric_moves(base):
    [line] = trends.trend_lines(base, NAMES)
    assert "Every metric moves in the smoothing direction at every layer" not in line
    assert (
        "Unchanged (a relative move of at most 0.1%): effective_rank at layer 1; numerical_rank at every layer." in line
    )
    assert base.baseline.metric("numerical_rank") == [27] * 7


def test_pure_attention_preset_says_where_it_collapses():
    a = smoothviz.analyze(REFERENCE, model="lab", lab=PURE_LAB, device="cpu", heads=False)
    [line] = trends.trend_lines(a, NAMES)
    assert "From layer 3 on dm_rel stays below 1e-5" in line and "numerical_rank 27 → 1" in line
    assert "Every metric moves in the smoothing direction at every layer" not in line  # numerical_rank is flat at 1
    assert "numerical_rank at layer 1" in line


def test_a_neutral_non_fusion_is_not_called_a_fusion(reference):
    a = smoothviz.analyze(reference, device="cpu", mitigation="neutreno", params={"lambda": 0.0}, heads=False)
    lines = trends.trend_lines(a, {"baseline": "baseline", "mitigated": "neutreno (λ=0)"})
    assert lines[1] == (
        "neutreno (λ=0) leaves every layer exactly as the baseline has it (at this setting it "
        "changes nothing the metrics read)."
    )
    assert lines[2] == (
        "At layer 6, neutreno (λ=0) leaves cosine_mean unchanged at 0.325 (at the shown precision) "
        "and leaves dm_rel unchanged at 0.861 (at the shown precision). By cosine_mean and dm_rel the "
        "output reads as the baseline's at the shown precision."
    )


def test_one_token_is_not_a_collapse():
    a = smoothviz.analyze("x", device="cpu", exclude_special=True)
    [line] = trends.trend_lines(a, NAMES)
    assert "(a collapse)" not in line and "not a collapse" in line
    assert trends.collapsed_from(a.baseline, len(a.keep)) is None


def test_equal_at_the_shown_precision_is_unchanged():
    b = {"cosine_mean": 0.32501, "dm_rel": 0.861}
    a = _toy([b, b], [{"cosine_mean": 0.32503, "dm_rel": 0.8612}])
    said = trends.effect(a, "m")
    assert "from 0.325 to 0.325" not in said and "leaves cosine_mean unchanged at 0.325" in said


def test_tiny_moves_are_listed_not_dropped():
    rows = [{"cosine_mean": 0.3}, {"cosine_mean": 0.3 + 1e-5}, {"cosine_mean": 0.5}]
    a = _toy(rows)
    [line] = trends.trend_lines(a, NAMES)
    assert "Unchanged (a relative move of at most 0.1%): cosine_mean at layer 1" in line


def _toy(rows, mitigated=None):
    """An analysis-shaped object with these state rows (other metrics undefined)."""
    from types import SimpleNamespace

    from smoothviz.science.metrics import names

    def full(rs):
        return [{"layer": i, **{m: None for m in names()}, "numerical_rank": 3, **r} for i, r in enumerate(rs)]

    run = lambda rs: SimpleNamespace(rows=full(rs), fused_row=None, hidden=np.zeros((len(rs), 3, 8)))  # noqa: E731
    base = run(rows)
    mit = None if mitigated is None else run([*rows[:-1], *mitigated])
    runs = {"baseline": base, **({"mitigated": mit} if mit else {})}
    return SimpleNamespace(baseline=base, mitigated=mit, keep=[0, 1, 2], n_layers=len(rows) - 1, runs=lambda: runs)


# --------------------------------------------------------------------------- item 4: which metric


def test_metrics_that_disagree_are_said_to(reference):
    """fusion-concat of layers 4-6, the reference without [CLS]/[SEP]: cosine_mean says less smoothing
    (0.316 → 0.262), dm_rel says more (0.867 → 0.862)."""
    a = smoothviz.analyze(
        reference, device="cpu", mitigation="fusion-concat", params={"layers": "4-6"}, exclude_special=True, heads=False
    )
    base, fused = a.baseline.rows[-1], a.mitigated.fused_row
    assert fused["cosine_mean"] < base["cosine_mean"] and fused["dm_rel"] < base["dm_rel"]
    said = trends.effect(a, "fusion-concat")
    assert "(less smoothing by cosine_mean)" in said and "(more smoothing by dm_rel)" in said
    assert "The metrics disagree" in said and "neither" in said


# --------------------------------------------------------------------------- item 5: ablated heads


def test_ablated_heads_leave_the_verdicts(reference):
    from smoothviz.outputs import figures, tables

    ablate = ",".join(f"2.{h}" for h in range(12)) + ",3.0"
    a = smoothviz.analyze(reference, device="cpu", mitigation="heads", params={"ablate": ablate, "sink": "none"})
    rows = a.mitigated.rows
    assert rows[2]["heads_smoothing"] is None  # every head of layer 2 ablated
    kept = [h for h in range(12) if h != 0]
    assert rows[3]["heads_smoothing"] == pytest.approx(np.asarray(a.mitigated.smooths)[2, kept].mean())
    fig = figures.dovonon(a.mitigated, 3)
    # the unit circle, the used heads' eigenvalues in grey, then one dominant eigenvalue per used head
    d_h = np.asarray(a.mitigated.value_eigs).shape[-1]
    assert len(fig.data) == 2 + 11 and len(fig.data[1].x) == 11 * d_h
    assert not any("head 0 " in (t.hovertemplate or "") for t in fig.data)
    share = int(np.asarray(a.mitigated.smooths)[2, kept].sum())
    assert f"layer 3: {share}/11 heads low-pass (1 ablated)" in fig.layout.title.text
    heat = figures.verdicts(a)
    assert heat.data[0].z[1][1] is None and heat.data[0].text[1][1] == "no head"
    assert "SmoothViz's summary" in heat.layout.title.text
    assert tables.dovonon(a, views.At(layer=3))[12]["verdict"] == "ablated (not counted)"


# --------------------------------------------------------------------------- item 7: Fiedler caption


def test_fiedler_caption_true_for_signed_graphs():
    """A signed graph's Fiedler vector can have one sign, so the caption must not promise both colours."""
    from smoothviz.science import graph

    rng = np.random.default_rng(0)
    one_sign = 0
    for _ in range(400):
        n = int(rng.integers(3, 8))
        A = rng.dirichlet(np.ones(n), size=n)
        S = graph.symmetrize(torch.tensor(A + 1.0 * (A - 1 / n))[None], "sym")  # AttnScale, ω = 1
        _, vecs = graph.laplacian_spectrum(S)
        f = graph.fiedler(vecs)[0].numpy()
        one_sign += bool((f >= -1e-9).all() or (f <= 1e-9).all())
    assert one_sign > 0
    caption = views.BY_KEY["graph"].caption
    assert "always appear" not in caption and "signed graph" in caption


# --------------------------------------------------------------------------- item 8: dm_ratio 0/0


def test_dm_ratio_is_null_where_it_is_zero_over_zero():
    one = smoothviz.analyze("x", device="cpu", exclude_special=True, heads=False)
    assert all(r["dm_ratio"] is None for r in one.baseline.rows) and any("dm_ratio is null" in n for n in one.notes)
    pure = smoothviz.analyze(REFERENCE, model="lab", lab=PURE_LAB, device="cpu", heads=False)
    dm = pure.baseline.metric("dm_rel")
    for l in range(1, len(dm)):
        assert (pure.baseline.rows[l]["dm_ratio"] is None) == (dm[l - 1] == 0)
    assert any(dm_ == 0 for dm_ in dm) and any("dm_ratio is null" in n for n in pure.notes)


# --------------------------------------------------------------------------- item 9: special tokens


def test_typed_special_tokens_are_special(reference):
    a = smoothviz.analyze(
        "before [SEP] after", device="cpu", mitigation="heads", params={"ablate": "", "sink": "drop"}, heads=False
    )
    assert [t for t, s in zip(a.tokens, a.special) if s] == ["[CLS]", "[SEP]", "[SEP]"]
    assert any(
        "marks as special ([PAD], [CLS], [SEP], [MASK])" in n and "here [CLS], [SEP], [SEP]" in n for n in a.notes
    )
    emoji = smoothviz.analyze("a 🦊", device="cpu", heads=False)
    assert emoji.tokens[2] == "[UNK]" and not emoji.special[2]  # unknown is a word, not a marker


@pytest.mark.slow
def test_gpt2_endoftext_is_special_and_a_drop_of_nothing_is_said(gpt2_dir):
    a = smoothviz.analyze(
        "The fox <|endoftext|> jumps.",
        model=gpt2_dir,
        device="cpu",
        mitigation="heads",
        params={"ablate": "", "sink": "drop"},
        heads=False,
    )
    assert [t for t, s in zip(a.tokens, a.special) if s] == ["<|endoftext|>"]
    plain = smoothviz.analyze(
        "The fox jumps.",
        model=gpt2_dir,
        device="cpu",
        mitigation="heads",
        params={"ablate": "", "sink": "drop"},
        heads=False,
    )
    assert not any(plain.special)
    assert any("(<|endoftext|>): this text has none, so sink=drop dropped nothing" in n for n in plain.notes)
    assert np.array_equal(plain.mitigated.attentions, plain.baseline.attentions)


# --------------------------------------------------------------------------- items 1, 2, 6, 10: pages and texts


def test_theory_facts_hold_and_layernorm_is_a_cause():
    from smoothviz.words.theory import FACTS

    for key, fact in FACTS.items():
        s = dict(fact.settings)
        a = smoothviz.analyze(s.pop("text"), device="cpu", **s)
        assert fact.holds(a), key
    page = (ROOT / "app" / "pages" / "1_Theory.py").read_text()
    assert "LayerNorms counteract" not in page
    assert (
        "LayerNorm plays a key role in *causing* over-smoothing" in page
        and "Dong et al. (2021) show that skip connections and MLPs" in page
    )
    from smoothviz.science.metrics import by_name

    assert by_name()["heads_smoothing"].collapse != "→ 1"
    assert all(m.source for m in by_name().values())  # every metric cites its paper or says SmoothViz's own choice


def test_one_caveat_everywhere_a_mitigation_is_shown():
    from smoothviz.outputs import report

    caveat = cl.frozen_caveat("neutreno")
    assert caveat and cl.frozen_caveat("fusion-mean") is None and cl.frozen_caveat("neutreno", lab={"depth": 4}) is None
    assert cl.frozen_caveat(None) is None and cl.frozen_caveat("none") is None
    for page in ("SmoothViz.py", "pages/1_Theory.py", "pages/2_Corpus.py", "pages/3_Compare.py", "pages/5_Present.py"):
        assert "frozen_caveat" in (ROOT / "app" / page).read_text(), page
    [step] = [s for s in STEPS if s.settings.get("mitigation") == "neutreno"]
    assert caveat in step.intro
    a = smoothviz.analyze("Attention is a graph.", device="cpu", mitigation="neutreno")
    html = report.build_report(a)
    import html as h

    assert h.escape(caveat) in html
    fused = smoothviz.analyze("Attention is a graph.", device="cpu", mitigation="fusion-mean")
    assert "never seen in training" not in report.build_report(fused)


def test_no_collapse_where_there_is_none():
    assert "collapse" not in (ROOT / "app" / "pages" / "2_Corpus.py").read_text().split("st.title(")[1].split(")")[0]
    main = (ROOT / "app" / "SmoothViz.py").read_text()
    assert "The collapse as an animation" not in main and "smoothviz-collapse" not in main
    cli = (ROOT / "smoothviz" / "cli.py").read_text()
    assert '"the collapse as a GIF' not in cli
    readme = (ROOT / "README.md").read_text()
    assert "the collapse as a GIF" not in readme and "writes the collapse" not in readme
    assert "collapse towards a rank-one" not in json.dumps(examples())


def test_lesson_texts_add_up_and_give_reasons():
    a = smoothviz.analyze(REFERENCE, device="cpu", heads=False)
    _, lines = STEPS[0].answer(a)
    assert "the model sees 27 tokens = 21 (one per word) + 4 (where a word splits" in lines[0]
    assert "+ 2 special ([CLS], [SEP])" in lines[0] and len(a.tokens) == 27
    _, lines = STEPS[2].answer(a)
    assert any("dm_rel" in l and "0.964" in l and "0.861" in l and "27" in l for l in lines)
    pure = smoothviz.analyze(REFERENCE, model="lab", lab=PURE_LAB, device="cpu", heads=False)
    _, lines = STEPS[3].answer(pure)
    assert any("by layer 2: dm_rel 0.00448" in l for l in lines)


@pytest.mark.slow
def test_present_and_compare_pages_carry_the_caveat():
    from streamlit.testing.v1 import AppTest

    caveat = cl.frozen_caveat("neutreno")
    at = AppTest.from_file(str(ROOT / "app" / "pages" / "5_Present.py"), default_timeout=240)
    at.query_params["mit"] = "neutreno"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(c.proto.help == caveat for c in at.caption)  # the caption's tooltip: no room left on a projector
    at = AppTest.from_file(str(ROOT / "app" / "pages" / "3_Compare.py"), default_timeout=240).run()
    assert not at.exception, [e.value for e in at.exception]
    shown = [c.value.replace("\\", "").replace("\u2060", "") for c in at.caption]  # md() escapes and joins
    assert any(c.startswith("B: ") and caveat in c for c in shown)  # B is NeuTRENO by default
    assert not any(c.startswith("A: ") and "never seen in training" in c for c in shown)  # A has no mitigation


@pytest.mark.slow  # the real gemma-3-270m (dequantised once into the cache, then about ten seconds a text)
def test_a_real_decoder_s_claims_hold_and_name_its_shared_component():
    """Gemma 3 270M: a raw cosine near 1 with dm_rel far from 0 is a shared component, said as a claim
    the checker re-derives (massive activations, Sun et al. 2024), never a collapse; every other claim
    holds too, plain and under a mitigation."""
    from smoothviz.words.lesson import SINK_SENTENCE

    for text, mitigation in ((SINK_SENTENCE, None), (REFERENCE, "neutreno")):
        a = smoothviz.analyze(text, model="gemma-3-270m", device="cpu", mitigation=mitigation)
        _claims_hold(a)
        said = [c for line in trends.line_claims(a, NAMES) for c in line]
        shared = [c for c in said if c.kind == "shared" and c.run == "baseline"]
        last = a.baseline.rows[-1]
        if text != SINK_SENTENCE and not (last["cosine_mean"] >= cl.SHARED_COSINE and last["dm_rel"] >= cl.SHARED_DM):
            assert not shared  # below the thresholds (the reference ends at cosine_mean 0.89): not claimed
            continue
        assert shared and not [c for c in said if c.kind == "collapse"], (text, [c.kind for c in said])
        cos, dm, _, dims = shared[0].values
        assert cos >= cl.SHARED_COSINE and dm >= cl.SHARED_DM and dims  # a dimension that dominates the norm
        assert "not the tokens becoming alike" in " ".join(trends.trend_lines(a, NAMES))
        wrong = cl.Claim(
            "shared", "baseline", "cosine_mean", shared[0].layers, (cos, dm, shared[0].values[2], ()), shared[0].rule
        )
        assert cl.check(wrong, a)  # leaving out the dominant dimension is caught
