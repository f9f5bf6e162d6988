"""Corpus mode: rows equal ``analyze`` line by line (padding never leaks), resume, bad lines, inputs,
the summary's quantiles, Ray equal to local, and the Corpus page."""

import io
import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

import smoothviz
from smoothviz import cli
from smoothviz.corpora.run import BatchAnalyser, collate, groups, read_corpus, settings_of
from smoothviz.corpora.store import metric_columns, summarise
from smoothviz.mitigations import NAMES, REGISTRY
from smoothviz.model import capture

ROOT = Path(__file__).resolve().parent.parent
SHORT = "Yes."
LONG = (
    "Attention averages the tokens it looks at, and when one layer of averaging is stacked on another, "
    "every token drifts towards the same mixture of its neighbours."
)
SAME = "Stop."  # as many tokens as SHORT: one exact-length group for the methods that mix tokens
LINES = [SHORT, LONG, SAME, "The quick brown fox jumps over the lazy dog."]
FLOOR = 1e-5  # dm_rel below this: one vector to float32 precision
AT_FLOOR = ("dm_ratio", "shi_v", "cosine_centred")  # quotients of rounding errors there; the
# centred cosine of a collapsed state is the cosine of its rounding errors
BAD = "\u200b"  # not blank to Python, but no token for the model: a bad line


def close(a, b, tol: float = 1e-4) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


def same_rows(a: list[dict], b: list[dict], rel: float = 1e-6) -> bool:
    """Equal rows: text, ints and histograms exactly, floats to ``rel`` (batches of another make-up
    sum in another order)."""
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(close(x[k], y[k], rel) if isinstance(x[k], float) else x[k] == y[k] for k in x)
        for x, y in zip(a, b)
    )


def assert_rows_match(result, text: str, sentence: int, **kwargs) -> None:
    """Every row of ``sentence`` equals ``smoothviz.analyze(text)`` to 1e-4, metric by metric.

    Once a state has collapsed to float32 precision (``dm_rel`` < :data:`FLOOR`, e.g. deep layers
    without the residual), d_M and Shi's λ are rounding errors (λ ≈ 5e-8 for a true 1e-11), and
    any batching, padded or not, changes that noise: their quotients ``dm_ratio`` and ``shi_v``
    then move by a few %. There both sides must agree that the state collapsed.
    """
    alone = smoothviz.analyze(text, device="cpu", **kwargs)
    rows = [r for r in result.table.to_pylist() if r["sentence"] == sentence]
    for run, analysed in alone.runs().items():
        mine = [r for r in rows if r["run"] == run]
        assert len(mine) == len(analysed.table()), (run, len(mine), len(analysed.table()))
        L = alone.n_layers
        for got, want in zip(mine, analysed.table()):
            assert got["layer"] == (L + 1 if want["layer"] == "fused" else want["layer"])
            assert got["fused"] == (want["layer"] == "fused") and got["tokens"] == len(alone.tokens)
            for key, value in want.items():
                if key != "layer":
                    if key in AT_FLOOR and want["dm_rel"] is not None and want["dm_rel"] < FLOOR:
                        assert got["dm_rel"] < FLOOR
                    else:
                        assert close(got[key], value), (run, want["layer"], key, got[key], value)


@pytest.mark.parametrize("mitigation", [None, *NAMES])
def test_each_line_equals_analyze_shortest_padded_with_longest(mitigation):
    settings = settings_of(model="default", device="cpu", mitigation=mitigation)
    analyser = BatchAnalyser(settings, batch_size=8)
    lengths = [len(analyser.handle.encode(t, None, [])[1]) for t in LINES]
    batches = groups(lengths, 8, analyser.padded, analyser._cell_bytes())
    if mitigation is None or REGISTRY[mitigation].token_wise:
        assert analyser.padded and batches == [[0, 2, 3, 1]]  # shortest and longest in one padded pass
    else:  # softdecay, attnscale, contranorm, heads: they read every token, one length per pass
        assert not analyser.padded and [0, 2] in batches
    result = smoothviz.corpus(LINES, device="cpu", mitigation=mitigation, batch_size=8)
    assert result.computed == 4 and not result.errors
    for sentence in (0, 1, 2):
        assert_rows_match(result, LINES[sentence], sentence, mitigation=mitigation)


def test_padding_never_reaches_a_trace():
    analyser = BatchAnalyser(settings_of(model="default", device="cpu", mitigation="no-residual"))
    encoded = [analyser.handle.encode(t, None, []) for t in (SHORT, LONG)]
    model, intervention = analyser.second
    for iv in (None, intervention):
        batch = capture.run_batch(model, collate([e[0] for e in encoded], analyser.pad_id), iv)
        for (inputs, tokens, _), trace in zip(encoded, batch):
            alone = capture.run(model, inputs, iv)
            assert trace.hidden.shape == alone.hidden.shape and trace.hidden.shape[1] == len(tokens)
            assert torch.allclose(trace.hidden, alone.hidden, atol=1e-5)
            assert torch.allclose(trace.attentions, alone.attentions, atol=1e-6)
            assert torch.allclose(trace.attentions.sum(-1), torch.ones(()), atol=1e-5)  # no weight on padding
            assert torch.allclose(trace.ln_sigma, alone.ln_sigma, rtol=1e-4)


def test_graph_options_and_lab_model_equal_analyze():
    kwargs = dict(exclude_special=True, head=2, symmetrize="ata", mitigation="neutreno")
    result = smoothviz.corpus(LINES[:2], device="cpu", **kwargs)
    assert_rows_match(result, LONG, 1, **kwargs)
    lab = {"depth": 4, "width": 32}
    result = smoothviz.corpus(
        [SHORT, SAME, LONG], model="lab", lab=lab, device="cpu", mitigation="spectral", params={"mode": "clip-positive"}
    )
    for sentence, text in enumerate([SHORT, SAME, LONG]):
        assert_rows_match(
            result, text, sentence, model="lab", lab=lab, mitigation="spectral", params={"mode": "clip-positive"}
        )


def test_metric_columns_come_from_the_analysis_rows(base):
    result = smoothviz.corpus([SHORT], device="cpu")
    assert metric_columns(result.table) == [k for k in base.baseline.rows[0] if k != "layer"]
    assert result.table.column_names[:7] == ["sentence", "text", "run", "layer", "fused", "tokens", "truncated"]
    hist = result.table.column("cosine_hist").to_pylist()
    n = result.table.column("tokens").to_pylist()[0]
    assert all(sum(h) == n * (n - 1) // 2 for h in hist)  # every pair i < j counted once per layer


def test_bad_lines_are_recorded_and_the_others_kept(tmp_path, capsys):
    path = tmp_path / "lines.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"text": SHORT}),
                "{not json",
                json.dumps({"text": BAD}),
                "",
                json.dumps({"text": 5}),
                json.dumps({"text": LONG}),
            ]
        ),
        encoding="utf-8",
    )
    lines = read_corpus(path)
    assert [line.sentence for line in lines] == [0, 1, 2, 3, 4]  # the blank line is skipped
    result = smoothviz.corpus(lines, device="cpu")
    assert {e["sentence"] for e in result.errors} == {1, 2, 3}
    assert result.sentences == 2 and sorted(set(result.table.column("sentence").to_pylist())) == [0, 4]
    code = cli.run(["corpus", str(path), "--device", "cpu", "--json"])
    out = capsys.readouterr()
    assert code == 0 and json.loads(out.out)["sentences"] == 2
    assert "line 2: the text gives no tokens" in out.err
    with pytest.raises(smoothviz.AnalysisError, match="no line could be analysed"):
        smoothviz.corpus([BAD], device="cpu")


@pytest.mark.parametrize("content", ["", "\n  \n\n"])
def test_empty_file_is_one_line_and_exit_2(tmp_path, capsys, content):
    path = tmp_path / "empty.txt"
    path.write_text(content)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["corpus", str(path)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "has no text" in err


def test_csv_jsonl_stdin_and_text_give_the_same_rows(tmp_path, monkeypatch, capsys):
    lines = [SHORT, "", LONG, SAME]
    (tmp_path / "a.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "a.csv").write_text(
        "id,text\n" + "\n".join(f'{i},"{t}"' for i, t in enumerate(lines)), encoding="utf-8"
    )
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in lines), encoding="utf-8")
    tables = []
    for name in ("a.txt", "a.csv", "a.jsonl", "-"):
        if name == "-":
            monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines)))
        out = tmp_path / f"{name.strip('-') or 'stdin'}.parquet"
        assert (
            cli.run(["corpus", name if name == "-" else str(tmp_path / name), "--device", "cpu", "--out", str(out)])
            == 0
        )
        tables.append(pq.read_table(out).drop(["cosine_hist"]).to_pylist())
    assert all(t == tables[0] for t in tables[1:])
    assert [r["text"] for r in tables[0] if r["layer"] == 0] == [SHORT, LONG, SAME]
    assert "median over sentences" in capsys.readouterr().out
    (tmp_path / "b.csv").write_text("sentence\nhello\n")
    with pytest.raises(smoothviz.CorpusError, match="no 'text' column"):
        read_corpus(tmp_path / "b.csv")


def test_resume_skips_lines_already_written(tmp_path):
    out = tmp_path / "r.parquet"
    first = smoothviz.corpus(LINES[:2], device="cpu", mitigation="fusion-mean", out=out)
    assert first.computed == 2 and out.exists() and not Path(f"{out}.partial").exists()
    again = smoothviz.corpus(LINES[:2], device="cpu", mitigation="fusion-mean", out=out)
    assert again.computed == 0 and again.table.equals(first.table)
    more = smoothviz.corpus(LINES, device="cpu", mitigation="fusion-mean", out=out, batch_size=1)
    assert more.computed == 2 and more.sentences == 4
    fresh = smoothviz.corpus(LINES, device="cpu", mitigation="fusion-mean")
    assert same_rows(more.table.drop(["cosine_hist"]).to_pylist(), fresh.table.drop(["cosine_hist"]).to_pylist())

    # A run stopped half-way leaves checkpoints; the next one starts from them.
    stopped = tmp_path / "s.parquet"

    def stop(done, total, rate):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        smoothviz.corpus(LINES, device="cpu", out=stopped, batch_size=1, progress=stop)
    assert not stopped.exists() and len(list(Path(f"{stopped}.partial").glob("part-*.parquet"))) == 1
    resumed = smoothviz.corpus(LINES, device="cpu", out=stopped, batch_size=1)
    assert resumed.computed == 3 and resumed.sentences == 4 and not Path(f"{stopped}.partial").exists()

    with pytest.raises(smoothviz.CorpusError, match="other settings"):
        smoothviz.corpus(LINES, device="cpu", mitigation="neutreno", out=out)
    with pytest.raises(smoothviz.CorpusError, match="another corpus"):
        smoothviz.corpus(["Something else entirely.", *LINES[1:]], device="cpu", mitigation="fusion-mean", out=out)


def test_truncated_line_is_noted():
    result = smoothviz.corpus([LONG, SHORT], device="cpu", max_tokens=8)
    rows = result.table.to_pylist()
    assert {r["tokens"] for r in rows if r["sentence"] == 0} == {8}
    assert [r["truncated"] for r in rows if r["layer"] == 0] == [True, False]
    assert result.notes == ["Truncated to the model's token limit (1 line)"]


def test_summary_quantiles_against_numpy():
    result = smoothviz.corpus(LINES, device="cpu", mitigation="fusion-max")
    summary = json.loads(json.dumps(result.summary(), allow_nan=False))
    rows = result.table.to_pylist()
    assert summary["sentences"] == 4 and summary["tokens"] == sum(
        r["tokens"] for r in rows if r["layer"] == 0 and r["run"] == "baseline"
    )
    assert summary["model"] == "default" and summary["device"] == "cpu"
    for run in ("baseline", "mitigated"):
        layers = summary[run]["layers"]
        assert [e["layer"] for e in layers] == [*range(7), "fused"] if run == "mitigated" else list(range(7))
        for entry in layers:
            layer = 7 if entry["layer"] == "fused" else entry["layer"]
            for metric in ("cosine_mean", "spectral_gap", "numerical_rank"):
                v = np.array(
                    [r[metric] for r in rows if r["run"] == run and r["layer"] == layer and r[metric] is not None],
                    dtype=float,
                )
                got = entry[metric]
                assert got["n"] == v.size
                if v.size:
                    assert got["median"] == pytest.approx(np.median(v)) and got["mean"] == pytest.approx(v.mean())
                    assert got["q25"] == pytest.approx(np.percentile(v, 25)) and got["q75"] == pytest.approx(
                        np.percentile(v, 75)
                    )
                else:
                    assert got["median"] is None
    assert summarise(result.table.slice(0, 0)) == {"sentences": 0, "tokens": 0}


@pytest.mark.slow  # starts a Ray cluster of two workers
def test_ray_engine_gives_the_rows_of_the_local_engine(tmp_path):
    import ray  # in requirements-dev.txt: a missing Ray fails here, never skips

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = smoothviz.corpus(
            LINES + [BAD],
            device="cpu",
            mitigation="neutreno",
            engine="ray",
            workers=2,
            batch_size=2,
            out=tmp_path / "ray.parquet",
        )
        with pytest.raises(smoothviz.CorpusError, match="head 99 does not exist"):  # an actor's error, one line
            smoothviz.corpus(LINES, device="cpu", head=99, engine="ray", workers=1)
    finally:
        ray.shutdown()
    local = smoothviz.corpus(
        LINES + [BAD], device="cpu", mitigation="neutreno", batch_size=2, out=tmp_path / "local.parquet"
    )
    assert remote.computed == local.computed == 5 and remote.errors == local.errors
    a, b = pq.read_table(tmp_path / "ray.parquet"), pq.read_table(tmp_path / "local.parquet")
    assert a.schema.equals(b.schema) and same_rows(
        a.drop(["cosine_hist"]).to_pylist(), b.drop(["cosine_hist"]).to_pylist()
    )


def test_corpus_page_runs_a_shipped_corpus(monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.syspath_prepend(str(ROOT / "app"))  # as `streamlit run app/SmoothViz.py` does for its pages
    at = AppTest.from_file(str(ROOT / "app" / "pages" / "2_Corpus.py"), default_timeout=900).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert at.selectbox(key="corpus").value == "everyday" and at.selectbox(key="mit").value == "neutreno"
    assert any("30 sentences" in c.value for c in at.caption)
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert len(charts) == 3  # the bands, and the cosine histograms of both runs
    bands = charts[0]["data"]
    assert {t.get("fill") for t in bands} >= {"toself"} and len(
        {t["line"].get("color") for t in bands if "line" in t and t["line"].get("color")}
    ) == 2
    assert all(c["data"][0]["type"] == "heatmap" for c in charts[1:])
    tables = at.dataframe
    assert len(tables) == 2
    links = [cell for t in tables for cell in t.value["open"]]
    assert len(links) == 12 and all(link.startswith("./?") and "text=" in link for link in links)
    assert len(at.get("download_button")) == 2

    at.selectbox(key="mit").set_value("fusion-mean").run()
    assert not at.exception and not at.error
    bands = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    assert any(t.get("marker", {}).get("symbol") == "star" for t in bands)  # the fused point
    link = at.dataframe[0].value["open"][0]
    assert "mit=fusion-mean" in link

    # The link opens that sentence on the main page, with the same settings.
    import urllib.parse

    params = dict(urllib.parse.parse_qsl(link.removeprefix("./?")))
    main = AppTest.from_file(str(ROOT / "app" / "SmoothViz.py"), default_timeout=900)
    main.query_params.update(params)
    main.run()
    assert not main.exception and not main.error
    assert main.text_area(key="text").value == params["text"] and main.selectbox(key="mit").value == "fusion-mean"


def test_a_small_pasted_corpus_is_one_full_width_table_counted_from_one(monkeypatch):
    """Issue 22's audit: a pasted corpus of a few lines is ranked once (not the same sentences in a
    "most" and a "least" table side by side, where the sentence column was cut at 1366 px), its
    lines numbered from 1 as in the box, and the frozen-weights caveat is one line with its text inside."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.syspath_prepend(str(ROOT / "app"))
    lines = ["One cat.", "The dog barked at the mailman all morning.", "Short one here"]
    at = AppTest.from_file(str(ROOT / "app" / "pages" / "2_Corpus.py"), default_timeout=900)
    at.query_params.update({"corpus": "paste", "paste": "\n".join(lines)})
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.exception]
    [table] = at.dataframe
    shown = dict(zip(table.value["line"], table.value["sentence"]))
    assert shown == {i + 1: text for i, text in enumerate(lines)}
    change = list(table.value["change"])
    assert change == sorted(change, reverse=True)  # cosine_mean rises as tokens become alike: most first
    assert "From most to least smoothing" in [h.value for h in at.subheader]
    [caveat] = [e for e in at.expander if "frozen weights" in e.label]
    from smoothviz.words import claims as cl

    assert any(cl.frozen_caveat("neutreno") in m.value.replace("\\", "").replace("\u2060", "") for m in caveat.markdown)
    assert not any("never seen in training" in i.value for i in at.info)  # not in full at the top any more


@pytest.mark.parametrize("mitigation", [None, "neutreno"])
def test_a_long_line_streams_on_its_own_and_equals_analyze(monkeypatch, mitigation):
    """A line from ``stream.STREAM_FROM`` tokens is analysed alone, layer by layer (no padded batch
    holding every layer's attention of it); its rows equal the batched ``analyze``'s."""
    from smoothviz.pipeline import stream

    streamed = []
    call = stream.Forward.__call__
    monkeypatch.setattr(stream.Forward, "__call__", lambda self, *a, **k: streamed.append(1) or call(self, *a, **k))
    monkeypatch.setattr(stream, "STREAM_FROM", 20)  # LONG has 30 tokens, the other lines fewer than 20
    result = smoothviz.corpus(LINES, device="cpu", mitigation=mitigation, batch_size=8)
    assert result.computed == 4 and not result.errors
    assert len(streamed) == (1 if mitigation is None else 2)  # LONG's baseline (and mitigated) pass only
    monkeypatch.undo()
    for sentence in (0, 1, 3):
        assert_rows_match(result, LINES[sentence], sentence, mitigation=mitigation)


def test_a_failed_batch_runs_its_lines_one_at_a_time_and_equal_to_analyze(monkeypatch):
    """One-line groups; the second batch's forward pass fails (as out of memory would): its line runs
    alone, the others in their batches, every line's rows equal to analyze's."""
    calls, real = [], capture.run_batch

    def second_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("out of memory (injected)")
        return real(*args, **kwargs)

    monkeypatch.setattr(capture, "run_batch", second_fails)
    result = smoothviz.corpus(LINES, device="cpu", batch_size=1)
    assert len(calls) == len(LINES) and result.computed == len(LINES) and not result.errors
    for sentence, text in enumerate(LINES):
        assert_rows_match(result, text, sentence)
