"""Extending SmoothViz: a metric, a mitigation, a view or an architecture is one registry entry, and it
reaches every place that lists them (the analysis JSON, the CLI, the CSV, the report, corpus Parquet,
the figures, the Theory page, the main page, Compare and Present).

These tests register a toy of each, as CONTRIBUTING.md describes, and look for them where a user would.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import smoothviz
from smoothviz import cli
from smoothviz.mitigations import REGISTRY, Mitigation, Param
from smoothviz.model.capture import Intervention
from smoothviz.outputs import figures
from smoothviz.science import metrics

APP = Path(__file__).resolve().parent.parent / "app" / "SmoothViz.py"
TEXT = "Toys make registries honest."


@dataclass(frozen=True)
class ToyScale(Mitigation):
    """Scales every block's output by ``factor``: simple enough to check by hand."""

    name = "toy-scale"
    summary = "Multiply every block's output by a factor (a test of the registry)."
    PARAMS = {"factor": Param("float", 0.5, 0.0, 1.0, help="the factor")}
    in_forward = True
    NEUTRAL = {"factor": 1.0}

    def intervention(self, ctx):
        factor = self["factor"]
        return None if factor == 1 else Intervention(block=lambda layer, h: h * factor)


@pytest.fixture
def toys(monkeypatch):
    """The toy metric (mean token norm) and the toy mitigation, registered for one test."""
    toy = metrics.Metric(
        "toy_norm", lambda x: x.H.norm(dim=-1).mean(-1), "mean ‖h_i‖", "grows or shrinks", "↑", source="a test"
    )
    metrics.METRICS.append(toy)
    monkeypatch.setitem(REGISTRY, ToyScale.name, ToyScale)
    yield toy
    metrics.METRICS.remove(toy)


def test_a_toy_metric_and_mitigation_reach_the_json_with_hand_checked_values(toys):
    r = smoothviz.analyze(TEXT, mitigation="toy-scale", device="cpu")
    out = r.to_json()
    norms = np.linalg.norm(r.baseline.hidden.astype(np.float64), axis=-1).mean(-1)
    assert [row["toy_norm"] for row in out["baseline"]["layers"]] == pytest.approx(norms, rel=1e-5)
    assert out["mitigation"] == {"name": "toy-scale", "params": {"factor": 0.5}}
    # The first block reads the same input in both runs, so its output is exactly halved.
    assert np.allclose(r.mitigated.hidden[1], 0.5 * r.baseline.hidden[1], atol=1e-6)
    neutral = smoothviz.analyze(TEXT, mitigation="toy-scale", params=ToyScale.neutral(6), device="cpu")
    assert np.array_equal(neutral.mitigated.hidden, neutral.baseline.hidden)


def test_they_reach_the_cli(toys, capsys):
    assert cli.run(["analyze", TEXT, "--mitigation", "toy-scale", "--json", "--device", "cpu"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "toy_norm" in data["mitigated"]["layers"][3] and data["mitigation"]["name"] == "toy-scale"
    assert cli.run(["analyze", TEXT, "--device", "cpu"]) == 0
    assert "toy_norm" in capsys.readouterr().out.splitlines()[3]  # a column of the readable table
    assert cli.run(["mitigations"]) == 0
    assert "toy-scale: Multiply every block's output" in capsys.readouterr().out


def test_they_reach_the_figures(toys):
    r = smoothviz.analyze(TEXT, mitigation="toy-scale", device="cpu")
    fig = figures.metric_curves(r)
    assert "toy_norm ↑" in [a.text for a in fig.layout.annotations]  # its own panel
    assert any("toy-scale (factor=0.5)" in (t.name or "") for t in fig.data)  # the mitigated run's legend


def test_they_reach_the_theory_page(toys):
    page = AppTest.from_file(str(APP), default_timeout=240).run().switch_page("pages/1_Theory.py").run()
    assert not page.exception
    text = "\n".join(m.value for m in page.markdown)
    assert "| `toy_norm` ↑ | mean ‖h_i‖ | grows or shrinks | a test |" in text
    assert "| `toy-scale` | Multiply every block's output" in text
    for m in metrics.METRICS:
        assert f"`{m.name}`" in text
    for name in REGISTRY:
        assert f"| `{name}` |" in text


PRESENT = APP.parent / "pages" / "5_Present.py"
TOY_CAPTION = "The toy bar is as tall as the layer shown: a test of the registry."


@pytest.fixture
def toy_view(monkeypatch):
    """A toy view in the per-layer section: one bar as tall as the layer shown, per run."""
    import plotly.graph_objects as go

    from smoothviz.outputs import views

    def build(analysis, run_key, at):
        return go.Figure(go.Bar(x=[run_key], y=[at.layer]), layout=dict(title=f"toy {run_key} at {at.layer}"))

    def compare(label, analysis, run, layer):
        return go.Figure(go.Bar(y=[layer]), layout=dict(title=f"toy compared at {layer}"))

    toy = views.View(
        "toy",
        "layer",
        "Toy at layer {layer}",
        TOY_CAPTION,
        "the-metrics",
        build,
        per_run=True,
        depends=("layer",),
        table=lambda a, at: [{"layer": at.layer}],
        compare=views.Compared("Toy, side by side", TOY_CAPTION, compare),
    )
    monkeypatch.setattr(views, "VIEWS", [*views.VIEWS, toy])
    return toy


@pytest.mark.slow
def test_a_toy_view_reaches_the_page_the_report_present_and_compare(toy_view):
    from smoothviz.outputs import report

    r = smoothviz.analyze(TEXT, mitigation="neutreno", device="cpu")
    html = report.build_report(r)
    assert TOY_CAPTION in html and "toy baseline at 6" in html and "toy mitigated at 6" in html

    page = AppTest.from_file(str(APP), default_timeout=240)
    page.query_params.update(text=TEXT, mit="neutreno", layer="2", section="One layer, side by side")
    page.run()
    assert not page.exception, [e.value for e in page.exception]
    assert any(TOY_CAPTION in c.value for c in page.caption)
    titles = [json.loads(c.proto.spec)["layout"].get("title", {}).get("text", "") for c in page.get("plotly_chart")]
    assert "toy baseline at 2" in titles and "toy mitigated at 2" in titles

    present = AppTest.from_file(str(PRESENT), default_timeout=240)
    present.query_params.update(text=TEXT, mit="neutreno", view="toy", layer="3")
    present.run()
    assert not present.exception, [e.value for e in present.exception]
    shown = [json.loads(c.proto.spec)["layout"].get("title", {}).get("text", "") for c in present.get("plotly_chart")]
    assert any("toy baseline at 3" in s for s in shown) and any("toy mitigated at 3" in s for s in shown)

    cmp = smoothviz.compare(TEXT, ["model=default", "model=lab,lab.depth=8"], device="cpu")
    html = report.build_compare_report(TEXT, [(x.label, x.analysis, x.run) for x in cmp.runs], depth=0.5)
    assert TOY_CAPTION in html and "toy compared at 3" in html and "toy compared at 4" in html
    page = AppTest.from_file(str(APP.parent / "pages" / "3_Compare.py"), default_timeout=240).run()
    assert not page.exception, [e.value for e in page.exception]
    titles = [json.loads(c.proto.spec)["layout"].get("title", {}).get("text", "") for c in page.get("plotly_chart")]
    assert titles.count("toy compared at 6") == 2 and any(TOY_CAPTION in c.value for c in page.caption)


def test_a_toy_metric_reaches_the_csv_the_report_compare_and_corpus_parquet(toys, tmp_path):
    import pyarrow.parquet as pq

    from smoothviz.outputs import report

    r = smoothviz.analyze(TEXT, device="cpu")
    header = report.metrics_csv(r).splitlines()[0].split(",")
    assert "toy_norm" in header
    norms = np.linalg.norm(r.baseline.hidden.astype(np.float64), axis=-1).mean(-1)
    cmp = smoothviz.compare(TEXT, [smoothviz.RunSpec(), smoothviz.RunSpec(mitigation="neutreno")], device="cpu")
    layers = cmp.to_json()["runs"][0]["layers"]
    assert [row["toy_norm"] for row in layers] == pytest.approx(norms, rel=1e-5)
    out = tmp_path / "toy.parquet"
    many = smoothviz.corpus([TEXT, "A second, shorter line."], device="cpu", out=str(out))
    assert not many.errors
    table = pq.read_table(out).to_pylist()
    mine = [row["toy_norm"] for row in table if row["sentence"] == 0 and row["run"] == "baseline"]
    assert mine == pytest.approx(norms, rel=1e-4)


def test_a_family_with_llama_s_module_names_needs_no_line_of_its_own(monkeypatch, tmp_path):
    """An architecture the table does not list is read from its module names (derive_spec): taking
    Llama's line out of ARCHITECTURES leaves a tiny Llama's analysis exactly as it was."""
    import shutil

    import torch
    from transformers import LlamaConfig, LlamaModel

    from smoothviz.model import handles, models

    torch.manual_seed(0)
    LlamaModel(
        LlamaConfig(
            vocab_size=30522,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
        )
    ).save_pretrained(tmp_path, safe_serialization=True)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(models.default_model_path() / name, tmp_path / name)
    listed = smoothviz.analyze(TEXT, model=str(tmp_path), device="cpu")
    monkeypatch.delitem(models.ARCHITECTURES, "llama")
    with handles._guard:
        handles._handles.clear()  # load it again, without its line
    derived = smoothviz.analyze(TEXT, model=str(tmp_path), device="cpu")
    assert np.array_equal(listed.baseline.hidden, derived.baseline.hidden)
    assert listed.baseline.rows == derived.baseline.rows
