"""The dashboard through Streamlit's AppTest: opens on the worked example, reacts, survives bad input.

Analyses are cached process-wide (st.cache_resource), so after the first test most runs are hits.
"""

import html
import json
from pathlib import Path

import plotly.io as pio
import pytest
from streamlit.testing.v1 import AppTest

from smoothviz.data import examples
from smoothviz.outputs.views import SECTIONS, VIEWS, chart_count, in_section
from smoothviz.words import claims

pytestmark = pytest.mark.slow  # AppTest runs of the whole page

APP = Path(__file__).resolve().parent.parent / "app"
TIMEOUT = 240


@pytest.fixture
def at():
    app = AppTest.from_file(str(APP / "SmoothViz.py"), default_timeout=TIMEOUT)
    return app.run()


def ok(app) -> None:
    assert not app.exception, [e.value for e in app.exception]
    assert not app.error, [e.value for e in app.error]


def charts(app) -> list[dict]:
    return [json.loads(c.proto.spec) for c in app.get("plotly_chart")]


def open_tab(app, section: str):
    """Open the page's tab for ``section`` (a key of views.SECTIONS) and rerun, as a click would."""
    app.session_state["section"] = SECTIONS[section]
    return app.run()


def metric(app, name: str):
    return next(m for m in app.metric if m.label.startswith(name))


def test_opens_on_the_worked_example(at):
    ok(at)
    figs = charts(at)  # only the open tab is drawn: the depth curves, light for a classroom's first load
    assert len(figs) == sum(2 if view.per_run else 1 for view in in_section("depth")) == 3
    assert any("Against the smoothing trend" in c.value for c in at.caption)
    for section in SECTIONS:
        if section != "depth":
            figs += charts(open_tab(at, section))
            ok(at)
    two_runs = sum(2 if view.per_run else 1 for view in VIEWS)
    assert len(figs) == two_runs  # every view of the list, a run per column where it is per run
    assert all(f["data"] for f in figs)
    open_tab(at, "layer")
    assert at.text_area(key="text").value.startswith("The quick brown fox")
    assert at.selectbox(key="mit").value == "neutreno"
    assert any("27 tokens analysed" in c.value for c in at.caption)
    cos = metric(at, "mean token cosine ↑ · layer 6")  # a plain name on the card; the code name in its tooltip
    assert "→" in cos.value and cos.proto.help.startswith("`cosine_mean`")  # baseline → mitigated
    # the problem before the cure: the baseline's story, then the mitigation's effect measured on screen
    said = [m.value for m in at.markdown]
    problem = next(i for i, m in enumerate(said) if m.startswith("**The problem.**"))
    cure = next(i for i, m in enumerate(said) if m.startswith("**The cure, beside it.**"))
    assert problem < cure and "0.045 at the embeddings (layer 0) to 0.325 at layer 6" in said[problem]
    assert "lowers cosine_mean from 0.325 to 0.226" in said[cure]
    # the frozen-weights caveat: one line, its full text (the one source, smoothviz.words.claims) inside
    [caveat] = [e for e in at.expander if "frozen weights" in e.label]
    assert "neutreno on frozen weights" in caveat.label
    assert any(
        claims.frozen_caveat("neutreno") in m.value.replace("\\", "").replace("\u2060", "") for m in caveat.markdown
    )


def test_mitigation_parameter_layer_and_sentence_change_the_view(at):
    open_tab(at, "layer")
    before = metric(at, "mean token cosine").value
    at.slider(key="neutreno_lambda").set_value(0.8).run()
    ok(at)
    after = metric(at, "mean token cosine").value
    assert after.split("→")[0] == before.split("→")[0]  # the baseline stays
    assert after != before  # the mitigated side moves

    at.selectbox(key="mit").set_value("fusion-mean").run()
    ok(at)
    curves = charts(open_tab(at, "depth"))[0]
    assert any(t.get("marker", {}).get("symbol") == "star" for t in curves["data"])  # the fused point
    assert not at.warning  # fusion does not touch the forward pass
    open_tab(at, "layer")

    assert at.select_slider(key="layer").options[-1] == "fused"  # a fusion: its output is a place on the slider
    at.select_slider(key="layer").set_value(2).run()
    ok(at)
    assert metric(at, "mean token cosine").label == "mean token cosine ↑ · layer 2"
    assert any(s.value == "Token similarity at layer 2" for s in at.subheader)

    at.text_area(key="text").input("A short sentence.").run()
    ok(at)
    assert any("6 tokens analysed" in c.value for c in at.caption)


def test_no_mitigation_draws_the_baseline_alone(at):
    open_tab(at, "layer")
    at.selectbox(key="mit").set_value("none").run()
    ok(at)
    assert "→" not in metric(at, "mean token cosine").value
    heatmap = next(f for f in charts(at) if f["data"][0]["type"] == "heatmap")
    assert heatmap["layout"]["title"]["text"] == "baseline"


@pytest.mark.parametrize("setting, value", [("text", "   "), ("model_id", "/nonexistent/model")])
def test_bad_input_shows_an_error_and_the_app_recovers(at, setting, value):
    if setting == "model_id":
        at.selectbox(key="model").set_value("custom").run()
    (at.text_area if setting == "text" else at.text_input)(key=setting).input(value).run()
    assert not at.exception
    assert at.error, "a message for the user"
    assert "empty" in at.error[0].value or "nonexistent" in at.error[0].value
    if setting == "model_id":
        at.selectbox(key="model").set_value("default").run()
    else:
        at.text_area(key="text").input("Back to a good sentence.").run()
    ok(at)
    assert charts(at)


def test_the_head_box_offers_only_the_models_heads(at):
    """A head beyond the model's is never accepted, so never an error (a link's: test_page_inputs)."""
    at.radio(key="agg").set_value("one head").run()
    assert at.number_input(key="head").max == 11  # all-MiniLM-L6-v2: 12 heads
    at.number_input(key="head").set_value(40).run()
    ok(at)
    assert at.number_input(key="head").value == 0 and charts(at)


def test_token_labels_are_escaped(at):
    at.text_area(key="text").input("<script>alert(1)</script> & <b>bold</b>").run()
    ok(at)
    text = json.dumps(charts(open_tab(at, "layer")))
    assert "<script>" not in text and "<b>" not in text
    assert "&lt;" in text


def test_query_params_reopen_the_same_view():
    app = AppTest.from_file(str(APP / "SmoothViz.py"), default_timeout=TIMEOUT)
    app.query_params.update(
        {
            "mit": "softdecay",
            "softdecay_alpha": "-0.3",
            "layer": "3",
            "sym": "ata",
            "section": SECTIONS["layer"],
            "text": "Links keep every setting.",
        }
    )
    app.run()
    ok(app)
    assert app.selectbox(key="mit").value == "softdecay"
    assert app.slider(key="softdecay_alpha").value == pytest.approx(-0.3)
    assert app.radio(key="sym").value == "ata"
    assert app.text_area(key="text").value == "Links keep every setting."
    assert metric(app, "mean token cosine").label == "mean token cosine ↑ · layer 3"
    assert any("softdecay" in c.value for c in app.caption)


def test_preset_loads_its_settings(at):
    at.selectbox(key="preset").set_value("Fusion vs no fusion").run()
    ok(at)
    assert at.selectbox(key="mit").value == "fusion-mean"
    assert any("SmoothViz's own baseline" in c.value for c in at.sidebar.caption)


def test_the_reference_preset_says_what_the_data_show(at):
    """No preset promises a collapse the default model does not show; the lines under the curves
    name the layers where a metric moves against the trend."""
    presets = examples()["presets"]
    assert "Watch a sentence collapse" not in presets
    at.selectbox(key="preset").set_value("How a trained model smooths: mildly and unevenly").run()
    ok(at)
    assert at.selectbox(key="mit").value == "none"
    assert any("dm_rel only falls from 0.96 to 0.86" in c.value for c in at.sidebar.caption)
    lines = next(c.value for c in at.caption if c.value.startswith("baseline: cosine_mean"))
    assert "Against the smoothing trend" in lines and "d_M grows at layers 1 and 4" in lines


def test_theory_page_quotes_only_what_the_numbers_say(base, reference):
    """Every number the Theory page states about the default model is what the analysis gives."""
    import smoothviz

    theory = " ".join((APP / "pages" / "1_Theory.py").read_text().split())
    theory = theory.replace('" "', "").replace('" f"', "")  # join the source's string pieces
    from smoothviz.words.theory import FACTS  # the measured facts it quotes (tests/test_claims.py)

    for key, fact in FACTS.items():
        theory = theory.replace(f"{{FACTS['{key}'].said}}", fact.said)
    rows = base.baseline.rows
    assert "cosine_mean rises from 0.045 to 0.325" in theory
    assert round(rows[0]["cosine_mean"], 3) == 0.045 and round(rows[-1]["cosine_mean"], 3) == 0.325
    assert "dm_rel only falls from 0.96 to 0.86" in theory
    assert round(rows[0]["dm_rel"], 2) == 0.96 and round(rows[-1]["dm_rel"], 2) == 0.86
    assert "stays full (27 of 27 tokens)" in theory and {r["numerical_rank"] for r in rows} == {27}
    assert "d_M grows at layers 1 and 4" in theory
    assert [r["layer"] for r in rows[1:] if r["dm_ratio"] > 1] == [1, 4]
    assert "between 3.7×10⁴ and 1.1×10⁵ at every layer" in theory
    assert all(3.65e4 <= r["shi_v"] <= 1.15e5 for r in rows[1:])
    assert "between 0.68 and 1.15" in theory and all(0.675 <= r["dm_ratio"] <= 1.155 for r in rows[1:])
    assert "goes from 0.325 to 0.362 at ω = 0.5" in theory
    assert "(0.325 → 0.548 clip-negative, 0.826 clip-positive, 0.836 flip;" in theory
    for mode, value in (("clip-negative", 0.548), ("clip-positive", 0.826), ("flip", 0.836)):
        r = smoothviz.analyze(reference, mitigation="spectral", params={"mode": mode}, device="cpu", heads=False)
        assert r.mitigated.rows[-1]["cosine_mean"] == pytest.approx(value, abs=5e-4), mode
    for stale in ("only the constant survives", "one colour", "Watch a sentence collapse"):
        assert stale not in theory


def test_theory_page_opens(at):
    page = at.switch_page("pages/1_Theory.py").run()
    assert not page.exception
    assert [h.value for h in page.header][:2] == ["Attention is a graph", "Why stacking smooths"]
    assert page.latex


def test_every_view_stays_light_at_512_tokens():
    """At 512 tokens no view may send more than ~5 MB (heatmaps pooled, floats rounded, no hidden states)."""
    from types import SimpleNamespace

    import numpy as np
    import plotly.io as pio

    from smoothviz.outputs import figures
    from smoothviz.science.graph import to_networkx
    from smoothviz.science.metrics import names

    n, L, h, k = 512, 12, 12, 384
    rng = np.random.default_rng(0)
    rows = [{"layer": i, **{m: float(rng.uniform()) for m in names()}} for i in range(L + 1)]

    def run():
        S = rng.uniform(size=(L, n, n)).astype(np.float32)
        return SimpleNamespace(
            rows=rows,
            fused_row=None,
            final_norm_row=None,
            final_norm=None,
            similarity=rng.uniform(-1, 1, size=(L + 1, n, n)).astype(np.float32),
            layer_graph=S,
            layer_eigs=np.sort(rng.uniform(0, 2, size=(L, n)), axis=1),
            fiedler=rng.normal(size=(L, n)),
            sv=np.sort(rng.uniform(size=(L + 1, k)), axis=1)[:, ::-1],
            head_gap=rng.uniform(size=(L, h)),
            value_eigs=rng.normal(size=(L, h, 32)) + 1j * rng.normal(size=(L, h, 32)),
            smooths=rng.uniform(size=(L, h)) > 0.5,
            metric=lambda name, include_fused=False: [r[name] for r in rows],
            layer_verdicts=lambda: ["smooths"] * L,
            used_heads=lambda: np.ones((L, h), bool),
            low_pass_share=lambda: np.full(L, 0.5),
        )

    runs = {"baseline": run(), "mitigated": run()}
    analysis = SimpleNamespace(
        runs=lambda: runs,
        n_layers=L,
        mitigation={"name": "neutreno", "params": {}},
        labels=[f"tok{i}" for i in range(n)],
        projection=rng.normal(size=(2, L + 1, n, 2)),
    )
    labels = analysis.labels
    views = {
        "curves": [figures.metric_curves(analysis), figures.shi_bound(analysis), figures.rollout(analysis)],
        "layer": [
            f(r)
            for r in runs.values()
            for f in (
                lambda r: figures.similarity_heatmap(r, labels, L, picked=3),
                lambda r: figures.attention_graph(to_networkx(r.layer_graph[-1], labels, top_k=3), r.fiedler[-1], 3),
                lambda r: figures.laplacian_spectrum(r, L),
                lambda r: figures.dovonon(r, L),
            )
        ]
        + [figures.verdicts(analysis)],
        "trajectories": [figures.trajectories(analysis, picked=3)],
        "atlas": [figures.head_atlas(r) for r in runs.values()],
        "sv": [figures.sv_spectra(r) for r in runs.values()],
    }
    for name, figs in views.items():
        size = sum(len(pio.to_json(f, validate=False)) for f in figs)
        assert size < 5e6, f"{name}: {size / 1e6:.1f} MB"


def test_one_token_shows_the_library_note_and_still_draws(at):
    at.checkbox(key="nospecial").check().run()
    at.text_area(key="text").input("Hello").run()
    ok(at)
    assert any("Only one token" in i.value for i in at.info)
    assert charts(at)


def test_chart_toolbar_saves_svg_when_asked(at):
    assert all(json.loads(c.proto.config)["toImageButtonOptions"]["format"] == "png" for c in at.get("plotly_chart"))
    at.radio(key="img").set_value("svg").run()
    assert all(json.loads(c.proto.config)["toImageButtonOptions"]["format"] == "svg" for c in at.get("plotly_chart"))


def test_umap_projection(at):
    at.radio(key="proj").set_value("umap").run()
    ok(at)
    assert not any("Joint" in c.value for c in at.caption)  # nothing is projected until the tab opens
    open_tab(at, "trajectories")
    ok(at)
    assert any("Joint UMAP" in c.value for c in at.caption)
    [fig] = charts(at)
    assert len(fig["data"]) > 2  # every token's path, both runs'
    at.radio(key="proj").set_value("pca").run()
    assert any("Joint PCA" in c.value for c in at.caption)


def test_report_is_one_offline_file_with_escaped_tokens():
    import smoothviz
    from smoothviz.outputs import report

    analysis = smoothviz.analyze("</script><img src=x onerror=alert(1)> & co", mitigation="fusion-mean")
    page = report.build_report(analysis)
    assert "<script src" not in page and 'src="http' not in page  # nothing is fetched
    body = page.split("</head>", 1)[1]
    drawn = chart_count(analysis)
    assert drawn == sum(2 if view.per_run else 1 for view in VIEWS)
    assert body.count("Plotly.newPlot(") == drawn + 1  # every view and the animation, drawn inline
    assert body.count("<script") == drawn + 1  # and no script a token smuggled in
    assert all(view.caption in html.unescape(body) for view in VIEWS)
    assert "<img" not in body and "&lt;" in body
    csv_text = report.metrics_csv(analysis)
    assert csv_text.splitlines()[0].startswith("run,layer,cosine_mean")
    assert sum(line.startswith("mitigated,fused") for line in csv_text.splitlines()) == 1


def test_labels_with_markup_stay_text():
    from types import SimpleNamespace

    import numpy as np

    from smoothviz.outputs import figures
    from smoothviz.science.graph import to_networkx

    labels = ["<b>bold</b>", "a & b", "<script>x</script>", "the", "the"]
    run = SimpleNamespace(similarity=np.eye(5)[None].repeat(2, 0))
    heat = figure_strings(figures.similarity_heatmap(run, labels, 1, picked=2))
    graph = figure_strings(figures.attention_graph(to_networkx(np.ones((5, 5)) / 5, labels), np.zeros(5)))
    for strings in (heat, graph):
        text = "\n".join(strings)
        assert "<b>" not in text and "<script>" not in text and "&lt;b&gt;" in text and "a &amp; b" in text
    assert "3 · the" in heat and "4 · the" in heat  # duplicates stay two tokens


def figure_strings(fig) -> set[str]:
    """Every string a figure sends to the browser, decoded: what plotly.js will show.

    Decoding the JSON (rather than searching it as text) makes the check independent of the JSON
    engine: plotly writes "·" raw with orjson and as "\\u00b7" with the standard json module.
    """
    out, todo = set(), [json.loads(pio.to_json(fig, validate=False))]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            out.add(item)
        elif isinstance(item, dict):
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return out


@pytest.mark.parametrize(
    "preset", ["Pure attention in a 32-layer lab model", "A negative value spectrum keeps tokens apart"]
)
def test_lab_presets(at, preset):
    settings = examples()["presets"][preset]["settings"]
    at.selectbox(key="preset").set_value(preset).run()
    ok(at)
    assert at.slider(key="lab_depth").value == 32
    assert at.toggle(key="lab_residual").value is settings["lab"]["residual"]
    assert any("32 layers" in c.value for c in at.caption)
    assert metric(open_tab(at, "layer"), "mean token cosine").label == "mean token cosine ↑ · layer 32"


def test_the_analysis_cache_keeps_to_its_byte_budget(monkeypatch):
    """The oldest analyses leave the cache once the bytes they hold pass the budget."""
    import sys

    sys.path.insert(0, str(APP))
    import state

    monkeypatch.setattr(state.analyses, "ledger", state.analyses.Ledger())
    settings = [
        dict(text=t, mitigation="none", projection="none")
        for t in ("A first sentence that is somewhat longer than the others here.", "A second one.", "Third.")
    ]
    first, second = (state.analysis_or_error(s) for s in settings[:2])
    monkeypatch.setattr(state.cache, "CACHE_BYTES", first.nbytes + second.nbytes)  # room for these two
    ledger = state.analyses.ledger
    assert state.run_analysis(**settings[0]) is first and len(ledger) == 2
    state.analysis_or_error(settings[0])  # used again: now the newest
    third = state.analysis_or_error(settings[2])
    held = ledger.bytes() - first.nbytes - third.nbytes  # plus the two keys, which hold the texts
    assert len(ledger) == 2 and 2 * 100 < held < 2 * 1_000
    assert state.run_analysis(**settings[0]) is first  # kept
    assert state.run_analysis(**settings[2]) is third  # kept
    assert state.run_analysis(**settings[1]) is not second  # the least recently used: computed anew


def test_one_bounded_cache_type_keeps_to_its_entries_and_bytes_and_counts():
    """Every cache of the app (analyses, projections, animations, corpus results, figures) is a
    Bounded: least recently used out first, within its entries and its bytes (keys, which hold the
    whole text, weighed too), counted; two sessions asking for one missing key compute it once."""
    import sys
    import threading

    sys.path.insert(0, str(APP))
    import state

    limits = {"entries": 3, "bytes": 10_000}
    cache = state.cache.Bounded(lambda: limits["entries"], lambda: limits["bytes"])
    keys = [{"text": "x" * 2_000, "projection": "umap"}, ["y", ["heatmap"], ".gif"], "z"]
    for key in keys:
        cache.put(key, key, 100)
    assert len(cache) == 3 and cache.bytes() > 2_000 + 300  # the 2,000-character key is counted
    assert cache.get(keys[0]) is keys[0]  # used again: now the newest
    cache.put("w", "w", 100)  # a fourth: the least recently used goes
    assert keys[1] not in cache and keys[0] in cache and keys[2] in cache
    cache.put("big", "big", 9_000)  # past the bytes: the oldest go, the newest stays
    assert cache.bytes() <= 10_000 and "big" in cache and keys[0] not in cache
    cache.put("huge", "huge", 50_000)  # bigger than the budget alone: kept, alone
    assert len(cache) == 1 and "huge" in cache
    calls, started = [], threading.Event()

    def compute():
        calls.append(1)
        started.wait(5)
        return "done"

    threads = [threading.Thread(target=cache.get_or_compute, args=("k", compute, len)) for _ in range(3)]
    for t in threads:
        t.start()
    started.set()
    for t in threads:
        t.join(10)
    assert calls == [1] and cache.get("k") == "done"
    stats = cache.stats()
    assert stats["misses"] == 1 and stats["hits"] >= 3 and stats["evictions"] == 6 and stats["entries"] == 1


def test_log_axes_label_one_two_five_within_three_decades():
    """Short log ranges get readable 1-2-5 labels; wide ones keep plotly's powers of ten."""
    from smoothviz.outputs.figures import log_ticks

    short = log_ticks([0.028, 0.15, 0.67, None, float("nan")])
    assert short["tickvals"] == pytest.approx([0.05, 0.1, 0.2, 0.5])
    assert short["ticktext"] == ["0.05", "0.1", "0.2", "0.5"]
    assert log_ticks([2e-6, 9e-5])["ticktext"] == ["2×10⁻⁶", "5×10⁻⁶", "10⁻⁵", "2×10⁻⁵", "5×10⁻⁵", "10⁻⁴"]
    assert "tickvals" not in log_ticks([1e-6, 0.5])  # seven decades
    assert "tickvals" not in log_ticks([0.31, 0.33])  # inside one 1-2-5 step


def test_the_figure_cache_keeps_to_its_byte_budget(monkeypatch):
    """Issue 16: figures were bounded by count only, so memory grew with every sentence seen."""
    import sys

    import numpy as np
    import plotly.graph_objects as go

    sys.path.insert(0, str(APP))
    import state

    cache = state.charts.FigureCache()
    monkeypatch.setattr(state.cache, "FIGURE_BYTES", 2_000_000)
    rng = np.random.default_rng(0)

    def build(n):
        return go.Figure(go.Heatmap(z=rng.uniform(size=(n, n)).round(3).tolist())).update_layout(
            template="plotly_white"
        )

    first = cache.get(lambda: build(40), ("settings 0", "similarity", 1))
    assert cache.get(lambda: 1 / 0, ("settings 0", "similarity", 1)) is first  # a hit builds nothing
    sizes = []
    for i in range(1, 300):  # distinct settings, as 300 sentences would give
        cache.get(lambda i=i: build(20 + i % 30), (f"settings {i}", "similarity", 1))
        sizes.append(cache.bytes())
        assert cache.bytes() <= state.cache.FIGURE_BYTES
    assert len(cache) < 299 and max(sizes) > 0.8 * state.cache.FIGURE_BYTES  # it filled up, then held
    assert cache.get(lambda: build(40), ("settings 0", "similarity", 1)) is not first  # the oldest went
    specs = [fig.to_dict() for fig, _ in cache._entries.values()]
    assert all(s["layout"]["template"] is specs[0]["layout"]["template"] for s in specs)  # stored once
    assert json.loads(go.Figure(specs[0]).to_json())["data"][0]["type"] == "heatmap"


def test_the_page_makes_the_collapse_as_a_gif_and_an_mp4_on_request(at):
    """Nothing is rendered until asked; then a download of the real file (sizes from its bytes)."""
    labels = lambda: [b.label for b in at.get("download_button")]  # noqa: E731
    assert not any("animation" in label for label in labels())
    assert not any(b.label == "Make the animation" for b in at.button)  # its controls wait in a closed expander
    at.session_state["animation"] = True  # the reader opens it
    at.run()
    make = next(b for b in at.button if b.label == "Make the animation")
    make.click().run()
    ok(at)
    [gif] = [label for label in labels() if label.startswith("Download the animation (GIF, ")]
    assert 0.05 < float(gif.split(", ")[1].split(" MB")[0]) <= 10
    at.radio(key="anim_fmt").set_value(".mp4").run()
    assert not any("animation" in label for label in labels())  # another format: asked again
    next(b for b in at.button if b.label == "Make the animation").click().run()
    ok(at)
    assert any(label.startswith("Download the animation (MP4, ") for label in labels())
    at.multiselect(key="anim_views").set_value([]).run()
    assert next(b for b in at.button if b.label == "Make the animation").disabled


def test_the_fused_layers_are_a_slider_on_the_page_explained_with_its_numbers():
    """Issue 22: the layers a fusion fuses change on the page (not only the sidebar's text box),
    and the change is explained with the fused output's similarity beside each fused layer's."""
    import numpy as np

    import smoothviz

    text = "Cats sleep all day in the warm sun."
    app = AppTest.from_file(str(APP / "SmoothViz.py"), default_timeout=TIMEOUT)
    app.query_params.update({"mit": "fusion-max", "fusion_max_layers": "4-6", "text": text})
    ok(app.run())
    slider = next(w for w in app.select_slider if w.key.startswith("fuse_span"))
    assert slider.value == (4, 6) and slider.options[0] == "0" and slider.options[-1] == "6"
    slider.set_value((2, 5)).run()
    ok(app)
    assert app.text_input(key="fusion_max_layers").value == "2-5" and app.query_params["fusion_max_layers"] == "2-5"
    assert next(w for w in app.select_slider if w.key.startswith("fuse_span")).value == (2, 5)
    [line] = [m.value.replace("\\", "").replace("\u2060", "") for m in app.markdown if m.value.startswith("Fusion")]
    a = smoothviz.analyze(text, device="cpu", mitigation="fusion-max", params={"layers": "2-5"})
    x = np.asarray(a.mitigated.fused, dtype=np.float64)[a.keep]  # by hand: the fused states' mean pairwise cosine
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    n = len(x)
    fused = ((x @ x.T).sum() - n) / (n * (n - 1))
    each = {
        layer: float(np.asarray(a.baseline.similarity[layer])[~np.eye(n, dtype=bool)].mean()) for layer in range(2, 6)
    }
    assert f"fusion-max of layers 2–5): the fused output's mean token cosine similarity is {fused:.3f}" in line
    for layer, value in each.items():
        assert f"{value:.3f} (layer {layer})" in line
    below = sum(round(fused, 6) < round(v, 6) for v in each.values())
    assert (
        f"lower than {below} of the 4" in line
        if 0 < below < 4
        else ("lower than every" if below == 4 else "higher than every") in line
    ), line


def test_a_mitigation_that_adds_smoothing_is_not_called_the_cure():
    """Issue 22's audit: ablating head 5.3 alone raises the reference sentence's mean cosine at layer
    6 (0.325 → 0.372, issue 22): the heading says "mitigation", not "cure", and the sentence "raises"."""
    import smoothviz

    text = next(iter(examples()["examples"].values()))  # the page's default sentence
    a = smoothviz.analyze(text, device="cpu", mitigation="heads", params={"ablate": "5.3", "sink": "none"})
    base, mit = a.baseline.rows[6]["cosine_mean"], a.mitigated.rows[6]["cosine_mean"]
    assert mit > base  # more smoothing by cosine_mean: the case under test
    app = AppTest.from_file(str(APP / "SmoothViz.py"), default_timeout=TIMEOUT)
    app.query_params.update({"mit": "heads", "heads_ablate": "5.3", "heads_sink": "none"})
    ok(app.run())
    [line] = [m.value for m in app.markdown if "beside it.**" in m.value]
    assert line.startswith("**The mitigation, beside it.**"), line
    assert f"raises cosine_mean from {base:.3g} to {mit:.3g} (more smoothing by cosine_mean)" in line


def test_a_collapsed_lab_fused_is_not_called_cured():
    """Issue 22's audit: the lab without residual, MLP or LayerNorm has collapsed (cosine 1.000);
    fusing layers 3-6 leaves cosine_mean unchanged at the shown precision, so no "cure" heading."""
    app = AppTest.from_file(str(APP / "SmoothViz.py"), default_timeout=TIMEOUT)
    app.query_params.update(
        {
            "model": "lab",
            "lab_depth": "12",
            "lab_residual": "false",
            "lab_mlp": "false",
            "lab_layernorm": "none",
            "mit": "fusion-mean",
            "fusion_mean_layers": "3-6",
            "text": "Fusion mixes the layers of a collapsed model.",
        }
    )
    ok(app.run())
    [line] = [m.value for m in app.markdown if "beside it.**" in m.value]
    assert "leaves cosine_mean unchanged" in line and line.startswith("**The mitigation, beside it.**"), line
