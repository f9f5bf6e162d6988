"""bench/loadtest.py, small: two students' own Chromium against a started public server, and the
protocol client's rounds of new sentences (the server's RSS after each)."""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium")


def loadtest():
    spec = importlib.util.spec_from_file_location("loadtest", ROOT / "bench" / "loadtest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sentences_differ_so_that_every_session_misses_the_cache():
    sentence = loadtest().sentence
    assert len({sentence(i) for i in range(200)}) == 200


def test_help_gives_the_three_bursts_the_readme_reports(capsys):
    """--help is the recipe for re-measuring: 8 and 16 Chromium sessions, 40 protocol sessions, settled."""
    with pytest.raises(SystemExit):
        loadtest().main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for burst in (
        "--sessions 8 --settle 120",
        "--sessions 16 --settle 120",
        "--sessions 40 --client protocol --settle 120",
    ):
        assert burst in text
    assert "5 times" in text and "load average" in text


@pytest.mark.slow
@pytest.mark.browser
def test_two_students_browsers_see_the_first_view(tmp_path):
    assert CHROMIUM, "chromium is not on PATH (apt-get install -y chromium)"
    out = tmp_path / "burst.json"
    report = loadtest().main(["--sessions", "2", "--timeout", "240", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))  # what it printed is what it wrote
    assert report["errors"] == [], report["errors"]
    assert [s["session"] for s in report["per_session"]] == [0, 1]
    for s in report["per_session"]:  # every chart of the first view drawn, after the first one
        assert 0 < s["first_chart_s"] <= s["all_charts_s"] < 240
    assert report["server_cpu_s_per_sentence"] > 0
    machine = report["machine_cpu_s"]
    assert machine["busy"] > 2 * report["server_cpu_s_per_sentence"]  # the browsers' CPU is counted too
    assert report["server_rss_mb"]["peak"] >= report["server_rss_mb"]["start"] > 100


@pytest.mark.slow
def test_rounds_of_new_sentences_report_the_servers_memory_after_each(tmp_path):
    report = loadtest().main(
        [
            "--sessions",
            "2",
            "--client",
            "protocol",
            "--rounds",
            "3",
            "--timeout",
            "240",
            "--out",
            str(tmp_path / "rounds.json"),
        ]
    )
    assert report["errors"] == []
    assert [r["sentences"] for r in report["rounds"]] == [4, 6]
    load = report["machine_load"]  # a figure measured on a busy machine says so
    assert set(load) == {"at_start", "burst_start", "burst_end"} and all(len(v) == 3 for v in load.values())
    assert all(r["load_1min"] >= 0 for r in report["rounds"])
    assert all(r["errors"] == 0 and r["rss_mb"] > 100 for r in report["rounds"])
    assert all(s["all_charts_s"] > 0 for s in report["per_session"])
