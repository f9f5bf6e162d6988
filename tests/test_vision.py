"""Vision transformers: a picture's patches as the tokens (issue 26).

No pretrained vision weights can be downloaded here: small random-weight ViT, DeiT (with its
distillation token) and DINOv2 (with and without register tokens) models are built from configs,
saved with their image processors, and loaded by path, as a user's local directory would be.
"""

import html
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import smoothviz
from smoothviz.model import vision
from smoothviz.model.handles import get_handle
from smoothviz.outputs import views

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "assets" / "images"
SMALL = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64, patch_size=8)


def _build(kind: str, folder: Path, image_size=32, processor_size=None) -> str:
    """Save a random-weight model of ``kind`` and its image processor in ``folder``; return the path."""
    from transformers import (
        BitImageProcessor,
        DeiTConfig,
        DeiTImageProcessor,
        DeiTModel,
        Dinov2Config,
        Dinov2Model,
        Dinov2WithRegistersConfig,
        Dinov2WithRegistersModel,
        ViTConfig,
        ViTImageProcessor,
        ViTModel,
    )

    torch.manual_seed(0)
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    size = processor_size or {"height": h, "width": w}
    if kind == "vit":
        model, processor = ViTModel(ViTConfig(image_size=image_size, **SMALL)), ViTImageProcessor(size=size)
    elif kind == "deit":
        model = DeiTModel(DeiTConfig(image_size=image_size, **SMALL))
        processor = DeiTImageProcessor(size=size, crop_size=size)
    elif kind == "dinov2":
        model = Dinov2Model(Dinov2Config(image_size=image_size, **SMALL))
        processor = BitImageProcessor(size={"shortest_edge": size["height"]}, crop_size=size)
    elif kind == "dinov2_reg":
        model = Dinov2WithRegistersModel(
            Dinov2WithRegistersConfig(image_size=image_size, num_register_tokens=4, **SMALL)
        )
        processor = BitImageProcessor(size={"shortest_edge": size["height"]}, crop_size=size)
    else:  # ViT-MSN, I-JEPA (no [CLS]), DINOv3 (rotary positions, registers): any processor a folder holds
        from transformers import DINOv3ViTConfig, DINOv3ViTModel, IJepaConfig, IJepaModel, ViTMSNConfig, ViTMSNModel

        config = {
            "vit_msn": lambda: ViTMSNConfig(image_size=image_size, **SMALL),
            "ijepa": lambda: IJepaConfig(image_size=image_size, **SMALL),
            "dinov3": lambda: DINOv3ViTConfig(image_size=image_size, num_register_tokens=4, **SMALL),
        }[kind]()
        model = {"vit_msn": ViTMSNModel, "ijepa": IJepaModel, "dinov3": DINOv3ViTModel}[kind](config)
        processor = ViTImageProcessor(size=size)
    with torch.no_grad():  # transformers starts these at zero (trained checkpoints have them learned)
        for name in ("cls_token", "distillation_token", "register_tokens"):
            if hasattr(model.embeddings, name):
                getattr(model.embeddings, name).normal_(0, 0.5)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return str(folder)


KINDS = ("vit", "deit", "dinov2", "dinov2_reg", "vit_msn", "ijepa", "dinov3")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    return {kind: _build(kind, tmp_path_factory.mktemp(kind)) for kind in KINDS}


@pytest.fixture(scope="module")
def wide(tmp_path_factory) -> str:
    """A ViT built for 32×48-pixel images: a 4×6 grid of 8-pixel patches."""
    return _build("vit", tmp_path_factory.mktemp("wide"), image_size=(32, 48))


def _eager(path: str, pixel_values: torch.Tensor, **kwargs):
    """transformers' own eager forward pass of the model in ``path``."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(path, attn_implementation="eager").eval()
    with torch.no_grad():
        return model(pixel_values=pixel_values, output_hidden_states=True, output_attentions=True, **kwargs)


def _pixel_values(path: str, image) -> torch.Tensor:
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(path)(images=vision.load_image(image)[0], return_tensors="pt")[
        "pixel_values"
    ]


# --------------------------------------------------------------------------- against transformers


@pytest.mark.parametrize("kind", KINDS)
def test_states_and_probabilities_match_transformers_eager(models, kind):
    """SmoothViz's attention function and capture give transformers' eager states and attention."""
    image = EXAMPLES / "house.png"
    result = smoothviz.analyze(image=image, model=models[kind], device="cpu")
    out = _eager(models[kind], _pixel_values(models[kind], image))
    states = torch.stack(out.hidden_states)[:, 0].numpy()  # layer outputs; the final norm feeds only the pooler
    assert result.baseline.hidden.shape == states.shape
    assert np.abs(result.baseline.hidden - states).max() < 1e-5
    probs = torch.stack(out.attentions)[:, 0].numpy()
    assert np.abs(result.baseline.attentions - probs).max() < 1e-5
    assert np.allclose(result.baseline.attentions.sum(-1), 1, atol=1e-5)


def test_tokens_name_the_prefix_and_every_patch(models):
    """[CLS], DeiT's [DIST], DINOv2's registers, then one token per patch in raster order."""
    expected = {
        "vit": ["[CLS]"],
        "deit": ["[CLS]", "[DIST]"],
        "dinov2": ["[CLS]"],
        "dinov2_reg": ["[CLS]", "[REG1]", "[REG2]", "[REG3]", "[REG4]"],
        "vit_msn": ["[CLS]"],
        "ijepa": [],
        "dinov3": ["[CLS]", "[REG1]", "[REG2]", "[REG3]", "[REG4]"],
    }
    patches = [f"p{r},{c}" for r in range(4) for c in range(4)]
    for kind, prefix in expected.items():
        result = smoothviz.analyze(image=EXAMPLES / "ball.png", model=models[kind], device="cpu")
        assert result.tokens == prefix + patches, kind
        assert result.special == [True] * len(prefix) + [False] * 16
        assert result.image.grid == (4, 4) and result.image.prefix == len(prefix)
        assert result.baseline.hidden.shape[1] == len(prefix) + 16
        assert result.image.pixels.shape == (32, 32, 3) and result.image.pixels.dtype == np.uint8


def test_register_tokens_excluded_as_special(models):
    """exclude_special leaves the 16 patches: the graph and metrics are over patches only."""
    result = smoothviz.analyze(
        image=EXAMPLES / "shapes.png", model=models["dinov2_reg"], device="cpu", exclude_special=True
    )
    assert result.labels == [f"p{r},{c}" for r in range(4) for c in range(4)]
    assert result.baseline.layer_graph.shape == (3, 16, 16)
    grid = views.image_views.patch_similarity(result, "baseline", 2, 5)
    assert grid.shape == (4, 4) and grid[1, 1] == pytest.approx(1.0, abs=1e-6)  # patch 5 is p1,1


def test_non_square_patch_grid(wide):
    """A model built for 32×48 images: 4 rows × 6 columns of patches, equal to transformers' pass."""
    result = smoothviz.analyze(image=EXAMPLES / "house.png", model=wide, device="cpu")
    assert result.image.grid == (4, 6) and result.image.pixels.shape == (32, 48, 3)
    assert result.tokens[1:] == [f"p{r},{c}" for r in range(4) for c in range(6)]
    out = _eager(wide, _pixel_values(wide, EXAMPLES / "house.png"))
    assert np.abs(result.baseline.hidden - torch.stack(out.hidden_states)[:, 0].numpy()).max() < 1e-5
    fig = views.image_views.fiedler_figure(result, "baseline", 1)
    assert np.asarray(fig.data[1].z).shape == (4, 6)


def test_other_image_size_interpolates_positions(models, tmp_path):
    """A square ViT given a 32×48 image (its processor changed): transformers' interpolate_pos_encoding."""
    import shutil

    from transformers import ViTImageProcessor

    path = tmp_path / "vit-wide-input"
    shutil.copytree(models["vit"], path)
    ViTImageProcessor(size={"height": 32, "width": 48}).save_pretrained(path)
    result = smoothviz.analyze(image=EXAMPLES / "stripes.png", model=str(path), device="cpu")
    assert result.image.grid == (4, 6)
    assert any("interpolate_pos_encoding" in note for note in result.notes)
    out = _eager(str(path), _pixel_values(str(path), EXAMPLES / "stripes.png"), interpolate_pos_encoding=True)
    assert np.abs(result.baseline.hidden - torch.stack(out.hidden_states)[:, 0].numpy()).max() < 1e-5


# --------------------------------------------------------------------------- metrics by hand


def test_metrics_equal_hand_computations(models):
    """cosine_mean, the patch-similarity map, λ₂ and the Fiedler map from transformers' own numbers."""
    image = EXAMPLES / "ball.png"
    result = smoothviz.analyze(image=image, model=models["deit"], device="cpu")
    out = _eager(models["deit"], _pixel_values(models["deit"], image))
    H = torch.stack(out.hidden_states)[:, 0].double().numpy()  # [L+1, n, d]
    X = H / np.linalg.norm(H, axis=-1, keepdims=True)
    cos = X @ X.transpose(0, 2, 1)
    n = H.shape[1]
    by_hand = (cos.sum((1, 2)) - np.trace(cos, axis1=1, axis2=2)) / (n * (n - 1))
    assert np.allclose(result.baseline.metric("cosine_mean"), by_hand, atol=1e-6)
    # similarity of every patch to p2,1 (token 2 + 2·4 + 1 = 11: [CLS], [DIST] come first) at layer 2
    grid = views.image_views.patch_similarity(result, "baseline", 2, 9)
    assert np.allclose(grid.ravel(), cos[2, 11, 2:], atol=1e-5)
    # the depth grid: each patch's mean cosine to the 15 other patches ([CLS] and [DIST] left out)
    patches = cos[:, 2:, 2:]
    mean = (patches.sum(-1) - np.einsum("lii->li", patches)) / 15
    assert np.allclose(views.image_views.mean_patch_cosine(result, "baseline"), mean.reshape(-1, 4, 4), atol=1e-5)
    # λ₂ and the Fiedler vector of layer 3's graph S = (Ā + Āᵀ)/2, Ā the mean over heads
    A = torch.stack(out.attentions)[2, 0].double().mean(0).numpy()
    S = (A + A.T) / 2
    d = S.sum(1)
    Lap = np.eye(n) - S / np.sqrt(np.outer(d, d))
    vals, vecs = np.linalg.eigh(Lap)
    fied, gap = views.image_views.fiedler_grid(result, "baseline", 3)
    assert gap == pytest.approx(vals[1], abs=1e-6)
    v = vecs[:, 1] * np.sign(vecs[np.argmax(np.abs(vecs[:, 1])), 1])
    assert np.allclose(fied.ravel(), v[2:], atol=1e-5)


def test_strongest_edges_are_the_largest_weights(models):
    """Each patch's top-k edges are its k largest off-diagonal weights among patches, each pair once."""
    result = smoothviz.analyze(image=EXAMPLES / "house.png", model=models["vit"], device="cpu")
    edges = views.image_views.strongest_edges(result, "baseline", 2, 2)
    S = np.asarray(result.baseline.layer_graph[1], dtype=np.float64)[1:, 1:]
    np.fill_diagonal(S, -np.inf)
    want = {tuple(sorted((a, int(b)))) for a in range(16) for b in np.argsort(-S[a])[:2]}
    assert {(a, b) for a, b, _ in edges} == want
    assert all(S[a, b] == pytest.approx(w) for a, b, w in edges)
    lengths = views.image_views.edge_lengths(result, [(0, 5, 0.0), (0, 1, 0.0)])
    assert lengths.tolist() == pytest.approx([2**0.5, 1.0])


# --------------------------------------------------------------------------- mitigations and views


def test_mitigations_apply_or_are_refused_up_front(models):
    """Every mitigation runs on a vision model at its neutral setting as the baseline, or is refused
    before any forward pass with the reason."""
    from smoothviz.mitigations import REGISTRY, MitigationError

    handle = get_handle(models["vit"], "cpu")
    base = smoothviz.analyze(image=EXAMPLES / "ball.png", model=models["vit"], device="cpu")
    for name, cls in REGISTRY.items():
        if name in vision.REFUSED:
            with pytest.raises(MitigationError, match="cannot apply to a vision model"):
                smoothviz.analyze(image=EXAMPLES / "ball.png", model=models["vit"], device="cpu", mitigation=name)
            continue
        result = smoothviz.analyze(
            image=EXAMPLES / "ball.png",
            model=models["vit"],
            device="cpu",
            mitigation=name,
            params=cls.neutral(handle.n_layers) or None,
        )
        assert np.allclose(result.mitigated.hidden, base.baseline.hidden, atol=1e-5), name
    neutreno = smoothviz.analyze(image=EXAMPLES / "ball.png", model=models["vit"], device="cpu", mitigation="neutreno")
    assert not np.allclose(neutreno.mitigated.hidden[-1], base.baseline.hidden[-1], atol=1e-4)


def test_image_views_only_for_pictures(models, base):
    """The picture's views are drawn for an image, with captions and computed lines; never for text."""
    result = smoothviz.analyze(image=EXAMPLES / "shapes.png", model=models["vit"], device="cpu", mitigation="neutreno")
    assert views.views_for(base) == views.VIEWS and "image" not in views.sections_for(base)
    shown = views.views_for(result)
    assert [v.key for v in shown[len(views.VIEWS) :]] == [
        "patch-similarity",
        "patch-fiedler",
        "patch-edges",
        "patch-depth",
    ]
    at = views.At(layer=2, picked=result.keep.index(6), top_k=3)  # token 6 = p1,1
    names = {"baseline": "baseline", "mitigated": "neutreno"}
    for view in views.IMAGE_VIEWS:
        assert view.caption and "\n" not in view.caption
        figs = view.figures(result, at)
        assert len(figs) == 2
        lines = view.lines(result, names)
        assert len(lines) == 2 and all(line.startswith(("baseline", "neutreno")) for line in lines)
        assert view.rows(result, at)
    assert "similarity to p1,1" in views.IMAGE_VIEWS[0].build(result, "baseline", at).layout.title.text
    gap = float(result.baseline.layer_eigs[1][1])
    assert f"λ₂ = {gap:.3f}" in views.IMAGE_VIEWS[1].build(result, "baseline", at).layout.title.text
    assert views.chart_count(result) == sum(view.count(result) for view in views.VIEWS) + 2 * 4  # four views, two runs


def test_similarity_line_states_the_numbers(models):
    """The similarity view's sentence quotes the standard deviations the map has at layers 0 and L."""
    result = smoothviz.analyze(image=EXAMPLES / "house.png", model=models["dinov2"], device="cpu")
    line = views.image_views.similarity_lines(result, {"baseline": "baseline"})[0]
    first = views.image_views.patch_similarity(result, "baseline", 0, 10)  # centre of 4×4: p2,2
    last = views.image_views.patch_similarity(result, "baseline", 3, 10)
    assert "p2,2" in line and f"{first.std():.3f} at layer 0" in line and f"{last.std():.3f} at layer 3" in line
    # a chosen patch (p0,3: token 4, after [CLS]): the line follows it, as the map does
    view = views.BY_KEY["patch-similarity"]
    line = view.lines(result, {"baseline": "baseline"}, views.At(layer=3, picked=4))[0]
    first = views.image_views.patch_similarity(result, "baseline", 0, 3)
    last = views.image_views.patch_similarity(result, "baseline", 3, 3)
    assert "similarity to patch p0,3" in line and f"{first.std():.3f} at layer 0" in line
    assert f"{last.std():.3f} at layer 3" in line


def test_report_contains_the_image_views(models):
    from smoothviz.outputs.report import build_report

    result = smoothviz.analyze(image=EXAMPLES / "house.png", model=models["vit"], device="cpu")
    page = build_report(result)
    assert "On the picture" in page
    assert "<b>image</b>: house.png, 32×32 px as the model saw it, 4×4 patches of 8 px after 1 prefix tokens" in page
    for view in views.IMAGE_VIEWS:
        assert html.escape(view.caption) in page


def test_compare_takes_an_image(models):
    result = smoothviz.compare(
        None,
        [f"model={models['vit']}", f"model={models['vit']},mitigation=neutreno"],
        image=EXAMPLES / "ball.png",
        device="cpu",
    )
    assert result.text == "ball.png" and len(result.runs) == 2
    assert result.runs[0].analysis.image.grid == (4, 4)


@pytest.mark.slow
def test_compare_page_takes_a_picture(models):
    """The Compare page offers the image box for vision runs; its curves are smoothviz.compare(image=…)'s
    numbers; a text run beside a vision run is refused in one line."""
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(str(ROOT / "app" / "pages" / "3_Compare.py"), default_timeout=600)
    app.query_params.update(
        {
            "a_model": "custom",
            "a_model_id": models["vit"],
            "a_mit": "none",
            "b_model": "custom",
            "b_model_id": models["vit"],
            "b_mit": "neutreno",
            "image": "ball",
        }
    )
    app.run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert not [t for t in app.text_area if t.key == "text"] and app.file_uploader(key="image_upload") is not None
    assert app.selectbox(key="image").value == "ball"
    specs = [json.loads(c.proto.spec) for c in app.get("plotly_chart")]
    assert len(specs) == 1 + 2 * len([v for v in views.compared() if v.per_run])
    api = smoothviz.compare(
        None,
        [f"model={models['vit']}", f"model={models['vit']},mitigation=neutreno,lambda=0.4"],
        image=EXAMPLES / "ball.png",
        device="cpu",
    )
    curves = specs[0]["data"]
    assert [t["name"] for t in curves if t.get("showlegend")][1].endswith("neutreno (lambda=0.4)")
    assert {int(t["legendgroup"]) for t in curves} == {0, 1}
    for trace in curves:
        metric, run = trace["hovertemplate"].split("<br>")[0], api.runs[int(trace["legendgroup"])].run
        assert trace["y"] == pytest.approx(run.metric(metric), abs=1e-6), metric
    assert api.runs[1].run.metric("cosine_mean") != pytest.approx(api.runs[0].run.metric("cosine_mean"), abs=1e-6)
    assert any("image=ball" in m.value and "Present run B" in m.value for m in app.markdown)
    app.selectbox(key="b_model").set_value("default").run()  # a text model beside a vision model
    assert not app.exception and not app.get("plotly_chart")
    assert [e.value for e in app.error] == [
        "Run A takes pictures and run B takes sentences: every run reads the same "
        "input, so compare vision models with vision models and text models with "
        "text models."
    ]


# --------------------------------------------------------------------------- bad input


def test_bad_images_are_refused_in_one_line(models, tmp_path, monkeypatch):
    not_image = tmp_path / "notes.png"
    not_image.write_text("not a picture")
    cases = [
        (tmp_path / "missing.png", "no such file"),
        (not_image, "not an image"),
        (b"\x89PNG broken", "not an image"),
    ]
    for source, words in cases:
        with pytest.raises(vision.ImageError, match=words) as err:
            smoothviz.analyze(image=source, model=models["vit"], device="cpu")
        assert "\n" not in str(err.value)
    monkeypatch.setattr(vision, "MAX_IMAGE_BYTES", 100)
    with pytest.raises(vision.ImageError, match="MB: images up to"):
        smoothviz.analyze(image=EXAMPLES / "house.png", model=models["vit"], device="cpu")
    monkeypatch.undo()
    with pytest.raises(smoothviz.AnalysisError, match="takes images, not text"):
        smoothviz.analyze("A sentence.", model=models["vit"], device="cpu")
    with pytest.raises(ValueError, match="takes text, not images"):
        smoothviz.analyze(image=EXAMPLES / "house.png", device="cpu")
    with pytest.raises(smoothviz.AnalysisError, match="not both"):
        smoothviz.analyze("A sentence.", image=EXAMPLES / "house.png", model=models["vit"], device="cpu")


# --------------------------------------------------------------------------- corpus and the CLI


def test_corpus_of_a_folder_names_each_file(models, tmp_path):
    import pyarrow.parquet as pq

    folder = tmp_path / "pictures"
    folder.mkdir()
    for name in ("ball", "house", "stripes"):
        (folder / f"{name}.png").write_bytes((EXAMPLES / f"{name}.png").read_bytes())
    (folder / "readme.txt").write_text("not a picture")
    (folder / "broken.png").write_text("not a picture either")
    out = tmp_path / "rows.parquet"
    result = smoothviz.corpus(images=folder, model=models["dinov2_reg"], device="cpu", out=out)
    table = pq.read_table(out).to_pylist()
    named = {Path(row["text"]).name for row in table}
    assert named == {"ball.png", "house.png", "stripes.png"}
    assert len(table) == 3 * 4 and all(row["tokens"] == 21 for row in table)  # 3 images × (L + 1) rows
    assert [Path(e["text"]).name for e in result.errors] == ["broken.png"]
    single = smoothviz.analyze(image=folder / "house.png", model=models["dinov2_reg"], device="cpu")
    rows = [row for row in table if row["text"].endswith("house.png")]
    assert [r["cosine_mean"] for r in sorted(rows, key=lambda r: r["layer"])] == pytest.approx(
        single.baseline.metric("cosine_mean"), abs=1e-5
    )


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "smoothviz", *args], capture_output=True, text=True, timeout=600, cwd=ROOT
    )


@pytest.mark.slow
def test_cli_analyze_image_json_and_bad_input(models, tmp_path):
    done = _cli("analyze", "--image", str(EXAMPLES / "ball.png"), "--model", models["deit"], "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["image"] == {"name": "ball.png", "grid": [4, 4], "patch_size": 8, "size": [32, 32], "prefix_tokens": 2}
    assert out["special_tokens"] == ["[CLS]", "[DIST]"] and len(out["baseline"]["layers"]) == 4
    for args, words in [
        (("--image", str(tmp_path / "nope.jpg"), "--model", models["deit"]), "no such file"),
        (("--image", str(EXAMPLES / "LICENSE"), "--model", models["deit"]), "not an image"),
        (
            ("--image", str(EXAMPLES / "ball.png"), "--model", models["deit"], "--mitigation", "fusion-gate"),
            "cannot apply to a vision model",
        ),
        (("--image", str(EXAMPLES / "ball.png"), "--model", str(tmp_path)), "not a model directory"),
    ]:
        bad = _cli("analyze", *args, "--json")
        assert bad.returncode == 2 and bad.stdout == ""
        assert len(bad.stderr.strip().splitlines()) == 1 and words in bad.stderr, bad.stderr


@pytest.mark.slow
def test_cli_corpus_of_a_folder(models, tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    for name in ("ball", "shapes"):
        (folder / f"{name}.png").write_bytes((EXAMPLES / f"{name}.png").read_bytes())
    done = _cli("corpus", str(folder), "--model", models["vit"], "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sentences"] == 2
    assert "smoothviz: 2 images analysed in" in done.stderr  # the lines are pictures, and the summary says so


# --------------------------------------------------------------------------- the page


@pytest.mark.slow
def test_page_uploads_a_picture_and_draws_its_views(models):
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(str(ROOT / "app" / "SmoothViz.py"), default_timeout=600)
    app.query_params.update({"model": "custom", "model_id": models["vit"], "mit": "none"})
    app.run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert app.file_uploader(key="image_upload") is not None
    assert not [t for t in app.text_area if t.key == "text"]  # a vision model: the picture replaces the sentence
    app.file_uploader(key="image_upload").set_value(("house.png", (EXAMPLES / "house.png").read_bytes(), "image/png"))
    app.session_state["section"] = views.IMAGE_SECTIONS["image"]
    app.run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert any(m.value.startswith("**Image:** house") for m in app.markdown)
    assert any("this picture's tokens" in m.value for m in app.markdown)
    captions = " ".join(c.value for c in app.caption)
    for view in views.IMAGE_VIEWS:
        assert view.caption in captions
    assert "similarity to the centre patch p2,2" in captions  # a sentence computed from the numbers
    specs = [json.loads(c.proto.spec) for c in app.get("plotly_chart")]
    titles = [s["layout"].get("title", {}).get("text", "") for s in specs]
    assert any("Fiedler vector, λ₂ =" in t for t in titles) and any("strongest edges" in t for t in titles)
    # a bad upload: one clear message, no traceback
    app.file_uploader(key="image_upload").set_value(("fake.png", b"not a picture at all", "image/png"))
    app.run()
    assert not app.exception
    assert any("not an image SmoothViz can read" in e.value for e in app.error)


def test_takes_images_reads_the_config_alone(models, tmp_path):
    """The page offers the image box for a vision model's folder, never for text models or unknowns."""
    assert all(vision.takes_images(models[kind]) for kind in KINDS)
    assert not any(vision.takes_images(name) for name in ("default", "lab", "", str(tmp_path), "no/such-model-here"))


# --------------------------------------------------------------------------- pictures of every kind


def _saved(image, fmt="PNG", **kwargs) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def test_picture_modes_reach_the_model_as_a_viewer_shows_them():
    """Transparency on white (as transformers' convert_to_rgb), 16-bit and float greyscale scaled
    (not clipped to white), a phone photo turned upright by its EXIF orientation, CMYK, 1×1."""
    from PIL import Image

    # RGBA: the left half fully transparent over black hidden pixels → white, the right half opaque red
    rgba = np.zeros((20, 40, 4), np.uint8)
    rgba[:, 20:] = (255, 0, 0, 255)
    img, _ = vision.load_image(_saved(Image.fromarray(rgba, "RGBA")))
    px = np.asarray(img)
    assert (px[:, :20] == 255).all() and (px[:, 20:] == (255, 0, 0)).all()
    # 16-bit greyscale at half scale → mid grey 128 (convert("RGB") alone gave 255)
    half = Image.fromarray(np.full((8, 8), 32768, np.uint16))
    assert half.mode.startswith("I;16")
    assert np.unique(np.asarray(vision.load_image(_saved(half))[0])).tolist() == [128]
    # float greyscale 0…1 → its own range to 0…255 (convert alone gave black)
    ramp = Image.fromarray(np.tile(np.linspace(0, 1, 16, dtype=np.float32), (4, 1)))
    grey = np.asarray(vision.load_image(_saved(ramp, "TIFF"))[0])[..., 0]
    assert grey[0, 0] == 0 and grey[0, -1] == 255 and (np.diff(grey[0].astype(int)) > 0).all()
    # EXIF orientation 6 (stored turned 90° anticlockwise): left red, right blue stored → top red, bottom blue shown
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, :20, 0], wide[:, 20:, 2] = 255, 255
    exif = Image.Exif()
    exif[0x0112] = 6
    upright = np.asarray(vision.load_image(_saved(Image.fromarray(wide), exif=exif))[0])
    assert upright.shape == (40, 20, 3)
    assert (upright[:20, :, 0] == 255).all() and (upright[20:, :, 2] == 255).all()
    # CMYK (a print JPEG) and a single pixel
    assert vision.load_image(_saved(Image.fromarray(wide).convert("CMYK"), "JPEG"))[0].mode == "RGB"
    assert np.asarray(vision.load_image(_saved(Image.new("RGB", (1, 1), (0, 200, 0))))[0]).tolist() == [[[0, 200, 0]]]


def test_huge_pictures_are_refused_before_decoding(monkeypatch):
    """Over 40 megapixels, whether PIL's own bomb guard fires first or not, and a PIL image given directly."""
    from PIL import Image

    small_bomb = _saved(Image.new("1", (1_000, 1_000)))
    for data in (_saved(Image.new("1", (10_000, 5_000))), small_bomb):  # 50 MP: ours; 1 MP: PIL's guard, set low
        if data is small_bomb:
            monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)  # PIL raises past twice this
        assert len(data) < vision.MAX_IMAGE_BYTES
        with pytest.raises(vision.ImageError, match="megapixels are accepted") as err:
            vision.load_image(data)
        assert "\n" not in str(err.value)
    with pytest.raises(vision.ImageError, match="10000×5000 pixels"):
        vision.load_image(Image.new("1", (10_000, 5_000)))


def test_other_image_families_are_refused_by_name(tmp_path):
    """A vision model of a family SmoothViz does not analyse (BEiT here) says so, not a tokenizer error."""
    from transformers import BeitConfig, BeitModel, ViTImageProcessor

    from smoothviz.model.models import ModelError

    BeitModel(BeitConfig(image_size=32, **SMALL)).save_pretrained(tmp_path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    with pytest.raises(
        ModelError, match="model type 'beit' takes images, but SmoothViz analyses only the vision families deit, dinov2"
    ):
        smoothviz.analyze(image=EXAMPLES / "ball.png", model=str(tmp_path), device="cpu")


@pytest.mark.parametrize("kind", ["vit", "dinov2"])
def test_patch_14_and_a_size_no_patch_divides(kind, tmp_path, monkeypatch):
    """14-pixel patches (DINOv2's) on a 45×59 input: the grid is floor(45/14) × floor(59/14) = 3×4, as
    the patch convolution cuts it, and the states equal transformers' own pass."""
    from transformers import ViTImageProcessor

    monkeypatch.setitem(SMALL, "patch_size", 14)
    path = _build(kind, tmp_path, image_size=42)
    ViTImageProcessor(size={"height": 45, "width": 59}).save_pretrained(path)
    result = smoothviz.analyze(image=EXAMPLES / "house.png", model=path, device="cpu")
    assert result.image.grid == (3, 4) and result.image.patch == 14 and result.image.pixels.shape == (45, 59, 3)
    assert result.tokens == ["[CLS]"] + [f"p{r},{c}" for r in range(3) for c in range(4)]
    extra = {"interpolate_pos_encoding": True} if kind == "vit" else {}
    out = _eager(path, _pixel_values(path, EXAMPLES / "house.png"), **extra)
    assert np.abs(result.baseline.hidden - torch.stack(out.hidden_states)[:, 0].numpy()).max() < 1e-5
    assert views.image_views.patch_similarity(result, "baseline", 1, 0).shape == (3, 4)


def test_page_uploads_are_bounded_and_referenced(monkeypatch):
    """app/images.py: an upload over 20 MB is refused in one line; at most UPLOADS are kept, the least
    recently used dropped first (its reference then says to upload again); an unknown example is named."""
    import images

    monkeypatch.setattr(images, "_uploads", type(images._uploads)())
    with pytest.raises(vision.ImageError, match="21 MB: images up to 20 MB"):
        images.remember("big.png", b"\0" * (21 * 2**20))
    monkeypatch.setattr(images, "UPLOADS", 2)
    refs = [images.remember(f"{i}.png", bytes([i]) * 10) for i in range(3)]
    assert len(set(refs)) == 3 and images.resolve(refs[2]) == (bytes([2]) * 10, "2.png")
    with pytest.raises(vision.ImageError, match="no longer on the server: upload it again"):
        images.resolve(refs[0])
    assert images.resolve("example:house") == (images.EXAMPLES_DIR / "house.png", "house.png")
    with pytest.raises(
        vision.ImageError, match="no example picture 'nope' \\(choose one of: ball, house, shapes, stripes\\)"
    ):
        images.resolve("example:nope")


def test_picture_is_drawn_from_a_lossless_png(models):
    """Each view's picture travels as a PNG data URI (not a JSON array of pixels), decoding to exactly
    the pixels the model saw."""
    import base64
    import io

    from PIL import Image

    result = smoothviz.analyze(image=EXAMPLES / "house.png", model=models["vit"], device="cpu")
    fig = views.image_views.similarity_figure(result, "baseline", 1, None)
    source = fig.data[0].source
    assert fig.data[0].z is None and source.startswith("data:image/png;base64,")
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))).convert("RGB"))
    assert np.array_equal(decoded, result.image.pixels)


@pytest.mark.slow
def test_corpus_page_takes_pictures(models):
    """For a vision model the Corpus page's corpus is the example pictures (or uploads): its ranking
    table holds smoothviz.corpus()'s numbers over the same files, each row named by its file."""
    from streamlit.testing.v1 import AppTest

    from smoothviz.corpora.store import changes

    app = AppTest.from_file(str(ROOT / "app" / "pages" / "2_Corpus.py"), default_timeout=600)
    app.query_params.update({"model": "custom", "model_id": models["vit"], "mit": "none"})
    app.run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert app.title[0].value == "Corpus: smoothing over many pictures"
    api = smoothviz.corpus(images=EXAMPLES, model=models["vit"], device="cpu")
    metric = app.selectbox(key="corpus_rank").value
    expected = {Path(r["text"]).name: r for r in changes(api.table, metric)}
    assert set(expected) == {"ball.png", "house.png", "shapes.png", "stripes.png"}
    shown = app.dataframe[-1].value
    assert sorted(shown["picture"]) == sorted(expected)
    L = len(api.summary()["baseline"]["layers"]) - 1
    for _, row in shown.iterrows():
        want = expected[row["picture"]]
        assert (row["change"], row["layer 0"], row[f"layer {L}"]) == pytest.approx(
            (want["change"], want["first"], want["last"]), abs=1e-6
        )
        assert row["open"].endswith("image=" + row["picture"].removesuffix(".png"))
    # uploads: a picture and a text file named .png; the rows name the uploaded file, the bad one is listed
    app.radio(key="pictures").set_value("upload").run()
    assert not app.exception and any("Choose pictures" in i.value for i in app.info)
    app.file_uploader(key="picture_uploads").set_value(
        [
            ("my house.png", (EXAMPLES / "house.png").read_bytes(), "image/png"),
            ("fake.png", b"not a picture", "image/png"),
        ]
    )
    app.run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    shown = app.dataframe[-1].value
    assert list(shown["picture"]) == ["my house.png"] and shown["open"].isna().all()  # no link carries an upload
    assert shown["change"][0] == pytest.approx(expected["house.png"]["change"], abs=1e-6)
    assert list(app.dataframe[0].value["text"]) == ["fake.png"]


@pytest.mark.slow
@pytest.mark.parametrize("page", ["SmoothViz.py", "pages/5_Present.py"])
def test_a_hostile_image_link_is_refused_as_plain_text(models, page):
    """image= in a link that is not an example is reset and quoted, never rendered as a link."""
    from streamlit.testing.v1 import AppTest
    from test_hostile import ALL, OWN_LINK, messages, unsafe

    app = AppTest.from_file(str(ROOT / "app" / page), default_timeout=600)
    app.query_params.update({"model": "custom", "model_id": models["vit"], "image": ALL})
    app.run()
    assert not app.exception
    shown = messages(app)
    assert any("is not available here" in m and "ball\\, house\\, shapes\\, stripes" in m for m in shown)  # md-escaped
    assert not [m for m in shown if unsafe(OWN_LINK.sub("<a>", m))]
