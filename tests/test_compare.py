"""``smoothviz.compare`` and ``smoothviz compare`` (issue 13): a compare run is the same analyze."""

import json
import subprocess
import sys

import pytest

import smoothviz
from smoothviz.cli import run as cli_run
from smoothviz.pipeline.compare import RunSpec

TEXT = "The quick brown fox jumps over the lazy dog."


def test_spec_parsing():
    s = RunSpec.parse("model=default,mitigation=neutreno,lambda=0.4")
    assert (s.model, s.mitigation, s.params) == ("default", "neutreno", {"lambda": "0.4"})
    s = RunSpec.parse("model=lab,lab.depth=12,lab.residual=false")
    assert s.lab == {"depth": "12", "residual": "false"} and s.mitigation is None
    s = RunSpec.parse("mitigation=heads,ablate=3.0,5.11,sink=drop")  # a piece without '=' continues a value
    assert s.params == {"ablate": "3.0,5.11", "sink": "drop"} and s.model == "default"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "empty run SPEC"),
        ("model", "key=value"),
        ("=x", "key=value"),
        ("model=default,lambda=0.4", "need mitigation"),
        ("mitigation=nope", "unknown mitigation"),
        ("mitigation=neutreno,lambda=3", "lambda must be"),
        ("model=default,lab.depth=4", "need model=lab"),
        ("model=lab,lab.colour=red", "unknown lab key"),
        ("model=a,model=b", "given twice"),
        ("mitigation=heads,ablate=x", "ablate must be"),
    ],
)
def test_bad_specs_are_clear_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        RunSpec.parse(spec)


def test_a_compare_run_equals_the_same_analyze():
    c = smoothviz.compare(
        TEXT,
        [
            "model=default",
            "model=default,mitigation=neutreno,lambda=0.4",
            "model=lab,lab.depth=8",
            "model=default,mitigation=heads,ablate=2.3,4.0,sink=none",
        ],
        device="cpu",
        exclude_special=True,
    )
    base = smoothviz.analyze(TEXT, device="cpu", exclude_special=True)
    neut = smoothviz.analyze(TEXT, device="cpu", exclude_special=True, mitigation="neutreno", params={"lambda": 0.4})
    lab = smoothviz.analyze(TEXT, model="lab", lab={"depth": "8"}, device="cpu", exclude_special=True)
    heads = smoothviz.analyze(
        TEXT, device="cpu", exclude_special=True, mitigation="heads", params={"ablate": "2.3,4.0", "sink": "none"}
    )
    r = c.runs
    assert r[0].run.rows == base.baseline.rows
    assert r[1].run.rows == neut.mitigated.rows and r[1].mitigation == {"name": "neutreno", "params": {"lambda": 0.4}}
    assert r[2].run.rows == lab.baseline.rows and len(r[2].run.rows) == 9
    assert r[3].run.rows == heads.mitigated.rows
    assert r[0].analysis is r[1].analysis  # one analysis per model: the baseline is reused
    labels = [x.label for x in r]
    assert len(set(labels)) == 4
    out = c.to_json()
    assert [x["label"] for x in out["runs"]] == labels
    assert set(out["runs"][0]) >= {"label", "model", "device", "tokens", "mitigation", "layers"}
    assert out["runs"][1]["layers"] == neut.to_json()["mitigated"]["layers"]
    assert out["runs"][2]["lab"]["depth"] == 8


def test_cli_json(capsys):
    assert (
        cli_run(
            [
                "compare",
                TEXT,
                "--run",
                "model=default",
                "--run",
                "model=default,mitigation=heads,sink=drop,label=no sinks",
                "--device",
                "cpu",
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert [r["label"] for r in out["runs"]] == ["default", "no sinks"]
    base = smoothviz.analyze(TEXT, device="cpu")
    assert out["runs"][0]["layers"] == base.to_json()["baseline"]["layers"]
    assert out["runs"][1]["mitigation"] == {"name": "heads", "params": {"ablate": "", "sink": "drop"}}
    assert out["runs"][1]["layers"] != out["runs"][0]["layers"]


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["model=default,lambda=0.4", "mitigation=neutreno,lambda=x", "model=lab,lab.depth=0"])
def test_cli_bad_spec_is_one_line_exit_2(spec):
    p = subprocess.run(
        [sys.executable, "-m", "smoothviz", "compare", TEXT, "--run", spec, "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("smoothviz: error:"), p.stderr


@pytest.mark.slow
def test_cli_needs_a_run():
    p = subprocess.run(
        [sys.executable, "-m", "smoothviz", "compare", TEXT], capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 2 and "--run" in p.stderr
