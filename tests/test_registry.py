"""Extending SmoothViz: a metric or a mitigation is one registry entry, and it reaches every place
that lists them (the analysis JSON, the CLI, the figures, the Theory page, the page's choices).

These tests register a toy metric and a toy mitigation, as CONTRIBUTING.md describes, and look for
them where a user would.
"""
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import smoothviz
from smoothviz import cli
from smoothviz.outputs import figures
from smoothviz.science import metrics
from smoothviz.model.capture import Intervention
from smoothviz.mitigations import REGISTRY, Mitigation, Param

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
    toy = metrics.Metric("toy_norm", lambda x: x.H.norm(dim=-1).mean(-1), "mean ‖h_i‖", "grows or shrinks", "↑",
                         source="a test")
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
