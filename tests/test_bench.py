"""The benchmark runs end to end in its short mode and writes the documented JSON."""

import json

import pytest

from smoothviz import bench

pytestmark = pytest.mark.slow  # the benchmark's short mode (UMAP's cold compile in a fresh process)


def test_quick_benchmark_writes_results(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--sizes", "16", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert {r["model"] for r in data["rows"]} == {"default", "bert-base"}
    for row in data["rows"]:
        assert row["n"] == 16 and row["forward_s"] > 0 and row["analysis_full_s"] > 0
        assert row["page_bytes"] > 0 and "neutreno" in row["mitigations_s"]
        assert row["bertviz_bytes"] > 0  # BertViz's page for the same attention
    assert data["umap_cold_s"] > 0
    corpus = data["corpus"]  # corpus mode end to end against the bare floor, in the same rounds
    assert corpus["lines"] == 40 and corpus["floor_s"] > 0 and corpus["ratio"] == corpus["corpus_s"] / corpus["floor_s"]
    assert corpus["floor_batched_s"] > 0 and corpus["ratio_batched"] == corpus["corpus_s"] / corpus["floor_batched_s"]
    assert {"load", "encode", "forward", "analysis"} <= set(corpus["split_s"])
    printed = capsys.readouterr().out
    assert "core×fwd" in printed and "bytes/BertViz" in printed and "Corpus mode, 40 lines" in printed
