"""``python -m smoothviz.bench``: how far above the forward pass SmoothViz costs, as ratios.

For each model and sentence length n it measures, in one run: the forward pass alone (the
floor), the analysis without projection (core: no per-head spectra; full: with them), the
projections (PCA, UMAP warm; UMAP cold once, in a fresh process), each mitigation, the peak
memory of one mitigated analysis, the bytes of the figures one page view sends, and BertViz's
head view on the same attention (time and page size). The forward pass, the analyses and the
mitigations are timed in interleaved rounds, each the best of its rounds (the least disturbed
by other work on a shared, noisy machine), and the table reports ratios against references
measured in the same rounds.

Long inputs (``--long 2048,8192``): a random-weight model of SmolLM2-135M's shape (30 layers,
9 heads, 3 KV heads, width 576) at those lengths: the bare forward pass against the core
analysis (streamed layer by layer, :mod:`smoothviz.pipeline.stream`), in time and in peak memory above
the process's resting size, and the bytes of the first view of the page.

Corpus mode (``--corpus N``): N lines of 4–40 words end to end (model load included) against
the bare floor (the same load, then one forward pass per line, one line at a time), in
interleaved rounds, with where the corpus run's time went.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from smoothviz import analyze
from smoothviz.mitigations import NAMES
from smoothviz.model import handles
from smoothviz.model.handles import get_handle
from smoothviz.model.models import default_model_path

TEXT = (
    "The quick brown fox jumps over the lazy dog because it wanted to see what over-smoothing "
    "looks like in a transformer. "
) * 60
FULL_SIZES = (16, 64, 128, 256, 512)
QUICK_SIZES = (16, 64)


def bert_base_dir(root: Path) -> str:
    """A BERT-base-sized model (12 layers, 12 heads, width 768) with random weights, saved as safetensors."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
    BertModel(config).save_pretrained(root, safe_serialization=True)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(default_model_path() / name, root / name)
    return str(root)


LONG_SHAPE = dict(
    hidden_size=576,
    intermediate_size=1536,
    num_attention_heads=9,
    num_key_value_heads=3,
    num_hidden_layers=30,
    vocab_size=30522,
    tie_word_embeddings=True,
)  # SmolLM2-135M's shape


def smollm2_shape_dir(root: Path, max_tokens: int = 8192) -> str:
    """A model of SmolLM2-135M's shape (Llama: 30 layers, 9 query and 3 key-value heads, width 576)
    with random weights, saved as safetensors, with the default model's tokenizer (a vocabulary of
    30,522 instead of 49,152: the same shape where the analysis is concerned)."""
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(0)
    LlamaModel(LlamaConfig(**LONG_SHAPE, max_position_embeddings=max_tokens)).save_pretrained(
        root, safe_serialization=True
    )
    for name in ("vocab.txt", "tokenizer.json", "special_tokens_map.json"):
        shutil.copy(default_model_path() / name, root / name)
    config = json.loads((default_model_path() / "tokenizer_config.json").read_text())
    (root / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": max_tokens}))
    return str(root)


def bench_long(model: str, n: int, reps: int) -> dict:
    """The bare forward pass against the core analysis at ``n`` tokens: best seconds of ``reps``
    interleaved rounds, and each one's peak memory above the resting process (first round)."""
    handle = get_handle(model, "cpu")
    text = text_of(n)
    inputs, _, _ = handle.encode(text, n, [])
    assert inputs["input_ids"].shape[1] == n, "the benchmark text must give at least n tokens"

    def forward():
        with torch.inference_mode():
            handle.model(**inputs)

    fns = {"forward": forward, "core": lambda: analyze(text, model=model, device="cpu", max_tokens=n, heads=False)}
    best, peak, result = {k: float("inf") for k in fns}, {}, None
    for round_ in range(reps):
        for name, fn in fns.items():
            import gc

            gc.collect()
            before = _rss("VmRSS")
            _rss_peak_reset()
            start = time.perf_counter()
            out = fn()
            best[name] = min(best[name], time.perf_counter() - start)
            if round_ == 0:
                peak[name] = _rss("VmHWM") - before
            if name == "core":
                result = out
            del out
    start = time.perf_counter()
    size = page_bytes(result, first_view=True)
    view_s = time.perf_counter() - start
    return {
        "model": "smollm2-shape",
        "n": n,
        "forward_s": best["forward"],
        "analysis_core_s": best["core"],
        "ratio": best["core"] / best["forward"],
        "forward_peak_mb": peak["forward"],
        "core_peak_mb": peak["core"],
        "above_forward_mb": peak["core"] - peak["forward"],
        "first_view_bytes": size,
        "first_view_s": view_s,
    }


def bench_long_core(model: str, n: int) -> dict:
    """The core analysis alone at ``n`` tokens, once (``--long … --core-only``): wall and CPU seconds,
    peak memory above the resting process, the first view. For lengths whose bare forward pass
    alone takes minutes on a shared machine (8,192 tokens), where the target is that it completes."""
    handle = get_handle(model, "cpu")
    load = _load()
    before = _rss("VmRSS")
    _rss_peak_reset()
    start, cpu = time.perf_counter(), time.process_time()
    result = analyze(text_of(n), model=model, device="cpu", max_tokens=n, heads=False)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = _rss("VmHWM") - before
    start = time.perf_counter()
    size = page_bytes(result, first_view=True)
    return {
        "model": "smollm2-shape",
        "n": len(result.tokens),
        "completed": True,
        "analysis_core_s": wall,
        "cpu_s": cpu,
        "core_peak_above_rest_mb": peak,
        "first_view_bytes": size,
        "first_view_s": time.perf_counter() - start,
        "notes": result.notes,
        "load_avg_before": load,
        "layers": handle.n_layers,
    }


def long_table(rows: list[dict]) -> str:
    """The long-input table, as aligned text."""
    lines = [
        [
            "model",
            "n",
            "fwd s",
            "core s",
            "core×fwd",
            "fwd peak MB",
            "core peak MB",
            "above fwd MB",
            "first view MB",
            "first view s",
        ]
    ]
    for r in rows:
        lines.append(
            [
                r["model"],
                str(r["n"]),
                f"{r['forward_s']:.1f}",
                f"{r['analysis_core_s']:.1f}",
                f"{r['ratio']:.2f}",
                f"{r['forward_peak_mb']:.0f}",
                f"{r['core_peak_mb']:.0f}",
                f"{r['above_forward_mb']:.0f}",
                f"{r['first_view_bytes'] / 1e6:.2f}",
                f"{r['first_view_s']:.2f}",
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join("| " + " | ".join(c.rjust(w) for c, w in zip(line, widths)) + " |" for line in lines)


def _load() -> list[float]:
    """The machine's load averages (1, 5, 15 min): a shared machine's absolute times vary with it."""
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fns: dict, reps: int, device: str) -> dict:
    """Best (minimum) seconds of each function of ``fns`` over ``reps`` rounds, after a warm-up round.

    Each round calls every function once, so that a busy moment of a shared machine slows all of
    them alike instead of one of them: the ratios to the forward pass stay meaningful.
    """
    for fn in fns.values():
        fn()
    best = {name: float("inf") for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def _rss_peak_reset() -> None:
    try:  # Linux: writing 5 resets the peak-RSS counter
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _rss(field: str) -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def page_bytes(result, first_view: bool = False) -> int:
    """Bytes of the figures one page view sends (every view at the last layer); ``first_view``:
    only the first section's (the tab the page opens on)."""
    from smoothviz.outputs.views import SECTIONS, VIEWS, At

    at = At(layer=result.n_layers, head_layer=result.n_layers)
    first = next(iter(SECTIONS))
    return sum(
        len(fig.to_json())
        for view in VIEWS
        if not first_view or view.section == first
        for _, fig in view.figures(result, at)
    )


def umap_cold_seconds() -> float:
    """UMAP's first use in a fresh process (import and numba compile included)."""
    code = (
        "import time,numpy as np;t=time.perf_counter();from smoothviz.science.projection import umap_2d;"
        "umap_2d(np.random.default_rng(0).normal(size=(400,32)));print(time.perf_counter()-t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    return float(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else float("nan")


def bertviz_head_view(result) -> tuple[float, int] | None:
    """BertViz's head view on the same attention: (seconds, HTML bytes), or None without bertviz."""
    try:
        from bertviz import head_view
    except ImportError:
        return None
    attn = tuple(torch.tensor(a).unsqueeze(0) for a in result.baseline.attentions)
    start = time.perf_counter()
    html = head_view(attn, result.tokens, html_action="return")
    return time.perf_counter() - start, len(html.data)


LOAD = "import time, sys; t = time.perf_counter(); from smoothviz.model.handles import get_handle; get_handle(sys.argv[1], 'cpu'); print(time.perf_counter() - t)"


def load_seconds(model: str) -> tuple[float, float]:
    """``(cold, cached)`` seconds to load ``model`` in a fresh process (imports included): first with
    an empty SmoothViz cache directory (a GGUF model is dequantised and written), then again
    with the cache it left."""
    import os

    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "SMOOTHVIZ_CACHE_DIR": cache}
        runs = [
            float(
                subprocess.run([sys.executable, "-c", LOAD, model], env=env, capture_output=True, text=True, check=True)
                .stdout.strip()
                .splitlines()[-1]
            )
            for _ in range(2)
        ]
    return runs[0], runs[1]


def text_of(n: int) -> str:
    """The first n words of TEXT: at least n tokens, so the analysis sees exactly n, without
    timing the tokenizer on 1,500 words that truncation then drops (4 ms, half the forward
    pass at 16 tokens)."""
    words = TEXT.split()
    return " ".join((words * (n // len(words) + 1))[:n])  # TEXT repeated for the long-input lengths


def bench_one(model: str, label: str, n: int, device: str, reps: int, mitigations: bool) -> dict:
    """Time one model at one sentence length; one row of the results table."""
    handle = get_handle(model, device)
    text = text_of(n)
    inputs, _, _ = handle.encode(text, n, [])
    assert inputs["input_ids"].shape[1] == n, "the benchmark text must give at least n tokens"

    def forward():
        with torch.inference_mode():
            handle.model(**inputs, output_hidden_states=True, output_attentions=True)

    kwargs = dict(model=model, device=device, max_tokens=n)
    fns = {
        "forward": forward,
        "core": lambda: analyze(text, heads=False, **kwargs),
        "full": lambda: analyze(text, **kwargs),
    }
    if mitigations:
        for name in NAMES:
            if name == "fusion-gate" and handle.model.config.hidden_size != 384:
                continue  # the shipped gate is fitted for the default model's width
            fns[name] = lambda name=name: analyze(text, mitigation=name, heads=False, **kwargs)
    analyze(text, heads=False, **kwargs)  # the model's one-time caches (value spectra, weight norms)
    before = _rss("VmRSS")
    _rss_peak_reset()
    result = analyze(text, mitigation="neutreno", **kwargs)  # what one page's analysis adds, at its peak
    peak = _rss("VmHWM") - before
    t = timed(fns, reps, device)
    from smoothviz.science.projection import project

    runs = [result.baseline.hidden, result.mitigated.hidden]
    points = sum(r.shape[0] * r.shape[1] for r in runs)
    t_pca = timed({"pca": lambda: project(runs, "pca")}, reps, "cpu")["pca"]
    t_umap = timed({"umap": lambda: project(runs, "umap")}, 1, "cpu")["umap"] if points <= 20_000 else None
    row = {
        "model": label,
        "n": n,
        "device": handle.device,
        "points": points,
        "forward_s": t["forward"],
        "analysis_core_s": t["core"],
        "analysis_full_s": t["full"],
        "pca_s": t_pca,
        "umap_warm_s": t_umap,
        "peak_mem_mb": peak,
        "page_bytes": page_bytes(result),
        "mitigations_s": {name: t[name] for name in NAMES if name in t},
    }
    bv = bertviz_head_view(result) if device == "cpu" else None
    if bv is not None:
        row["bertviz_s"], row["bertviz_bytes"] = bv
    return row


def _ratio(a, b) -> str:
    return "—" if a is None or b in (None, 0) else f"{a / b:.2f}"


def table(rows: list[dict]) -> str:
    """The main results table, as aligned text."""
    head = [
        "model",
        "n",
        "fwd ms",
        "core×fwd",
        "full×fwd",
        "PCA×fwd",
        "UMAP s",
        "peak MB",
        "page MB",
        "time/BertViz",
        "bytes/BertViz",
    ]
    lines = [head]
    for r in rows:
        lines.append(
            [
                r["model"],
                str(r["n"]),
                f"{r['forward_s'] * 1000:.1f}",
                _ratio(r["analysis_core_s"], r["forward_s"]),
                _ratio(r["analysis_full_s"], r["forward_s"]),
                _ratio(r["pca_s"], r["forward_s"]),
                "—" if r["umap_warm_s"] is None else f"{r['umap_warm_s']:.2f}",
                f"{r['peak_mem_mb']:.0f}",
                f"{r['page_bytes'] / 1e6:.2f}",
                _ratio(r["analysis_full_s"], r.get("bertviz_s")),
                _ratio(r["page_bytes"], r.get("bertviz_bytes")),
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("| " + " | ".join(c.rjust(w) for c, w in zip(line, widths)) + " |" for line in lines)


def mitigation_table(rows: list[dict]) -> str:
    """Each mitigation's analysis time over the forward pass, as aligned text."""
    names = [n for n in NAMES if any(n in r["mitigations_s"] for r in rows)]
    lines = [["model", "n", *names]]
    for r in rows:
        lines.append([r["model"], str(r["n"]), *(_ratio(r["mitigations_s"].get(n), r["forward_s"]) for n in names)])
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join("| " + " | ".join(c.rjust(w) for c, w in zip(line, widths)) + " |" for line in lines)


def corpus_lines(count: int, seed: int = 0) -> list[str]:
    """``count`` lines of 4–40 words from TEXT (a fixed draw): sentences of mixed lengths."""
    import numpy as np

    words, rng = TEXT.split(), np.random.default_rng(seed)
    out = []
    for _ in range(count):
        n, start = int(rng.integers(4, 41)), int(rng.integers(0, 200))
        out.append(" ".join(words[start : start + n]))
    return out


def _forget_models() -> None:
    """Drop every loaded model, so that the next use loads it again (end-to-end timing)."""
    with handles._guard:
        handles._handles.clear()


def bench_corpus(count: int, device: str, reps: int, batch_size: int = 32) -> dict:
    """Corpus mode end to end against the bare floor, both loading the model, in interleaved rounds."""
    from smoothviz.corpora.run import corpus

    lines = corpus_lines(count)
    runs: dict = {}

    def floor():
        handle = get_handle("default", device)
        for text in lines:
            inputs, _, _ = handle.encode(text, None, [])
            with torch.inference_mode():
                handle.model(**inputs, output_hidden_states=True, output_attentions=True)
        _sync(device)

    def floor_batched():  # the floor a user compares with: the corpus's own batches, forward only
        from smoothviz.corpora.run import collate, groups

        handle = get_handle("default", device)
        encoded = [handle.encode(text, None, [])[0] for text in lines]
        lengths = [x["input_ids"].shape[1] for x in encoded]
        cell = 4 * handle.n_layers * handle.heads * 2  # as BatchAnalyser._cell_bytes for one run
        pad = getattr(handle.tokenizer, "pad_token_id", None) or 0
        for group in groups(lengths, batch_size, True, cell):
            with torch.inference_mode():
                handle.model(
                    **collate([encoded[i] for i in group], pad), output_hidden_states=True, output_attentions=True
                )
        _sync(device)

    def end_to_end(mitigation):
        def run():  # keeps the result of its fastest round, whose split the report shows
            result = corpus(lines, device=device, mitigation=mitigation, batch_size=batch_size)
            if mitigation not in runs or result.seconds < runs[mitigation].seconds:
                runs[mitigation] = result

        return run

    def fresh(fn):  # each timed call loads the model itself
        def run():
            _forget_models()
            fn()

        return run

    t = timed(
        {
            "floor": fresh(floor),
            "floor_batched": fresh(floor_batched),
            "corpus": fresh(end_to_end(None)),
            "corpus_neutreno": fresh(end_to_end("neutreno")),
        },
        reps,
        device,
    )
    _forget_models()
    start = time.perf_counter()
    get_handle("default", device)
    load = time.perf_counter() - start
    base = runs[None]
    tokens = base.summary()["tokens"]
    with tempfile.TemporaryDirectory() as tmp:  # what the Parquet of a corpus weighs on disk
        import pyarrow.parquet as pq

        pq.write_table(runs["neutreno"].table, Path(tmp) / "c.parquet")
        parquet = (Path(tmp) / "c.parquet").stat().st_size
    return {
        "lines": count,
        "tokens": tokens,
        "device": base.device,
        "batch_size": batch_size,
        "load_s": load,
        "floor_s": t["floor"],
        "corpus_s": t["corpus"],
        "corpus_neutreno_s": t["corpus_neutreno"],
        "ratio": t["corpus"] / t["floor"],
        "ratio_neutreno": t["corpus_neutreno"] / t["floor"],
        "floor_batched_s": t["floor_batched"],
        "ratio_batched": t["corpus"] / t["floor_batched"],
        "sentences_per_s": count / t["corpus"],
        "split_s": base.timings,
        "split_neutreno_s": runs["neutreno"].timings,
        "parquet_bytes_per_line_neutreno": parquet / count,
        "threads": torch.get_num_threads(),
    }


def corpus_report(c: dict) -> str:
    split = ", ".join(f"{k} {v:.2f} s" for k, v in c["split_s"].items())
    return (
        f"Corpus mode, {c['lines']} lines ({c['tokens']} tokens), default model, {c['device']} "
        f"({c['threads']} threads), batch "
        f"{c['batch_size']}: end to end {c['corpus_s']:.2f} s vs floor {c['floor_s']:.2f} s (load "
        f"{c['load_s']:.2f} s + one forward pass per line): ratio {c['ratio']:.2f}× "
        f"({c['sentences_per_s']:.1f} sentences/s); with NeuTRENO (two passes) {c['ratio_neutreno']:.2f}×.\n"
        f"  against the bare batched forward pass of the same batches of {c['batch_size']} (load included): "
        f"{c.get('floor_batched_s', float('nan')):.2f} s, ratio {c.get('ratio_batched', float('nan')):.2f}×\n"
        f"  where the corpus run went (its fastest round): {split}; Parquet with "
        f"NeuTRENO: {c['parquet_bytes_per_line_neutreno'] / 1e3:.1f} kB per line"
    )


def main(argv=None) -> int:
    """``python -m smoothviz.bench``: run, print the tables, write the JSON; returns the exit code."""
    p = argparse.ArgumentParser(prog="python -m smoothviz.bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, one repetition (CI)")
    p.add_argument("--sizes", help="comma-separated token counts (default 16,64,128,256,512)")
    p.add_argument("--models", default="default,bert-base", help="default, bert-base and/or gemma-3-270m")
    p.add_argument("--no-mitigations", action="store_true", help="time the forward pass and analyses only")
    p.add_argument(
        "--load-times",
        help="comma-separated models whose load is timed cold (an empty "
        "SmoothViz cache) and cached, each in a fresh process",
    )
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    p.add_argument("--out", default="bench/results/latest.json")
    p.add_argument(
        "--corpus", type=int, help="lines for the corpus-mode benchmark (default 300, 40 with --quick; 0 skips it)"
    )
    p.add_argument("--only-corpus", action="store_true", help="run only the corpus-mode benchmark")
    p.add_argument(
        "--long",
        help="comma-separated token counts for the long-input benchmark on a model of "
        "SmolLM2-135M's shape (e.g. 2048,8192); runs only that benchmark",
    )
    p.add_argument(
        "--core-only",
        action="store_true",
        help="with --long: the core analysis alone, once (no bare forward pass; peak memory and time)",
    )
    args = p.parse_args(argv)
    if args.long:
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            model = smollm2_shape_dir(Path(tmp), max(int(s) for s in args.long.split(",")))
            for n in (int(s) for s in args.long.split(",")):
                rows.append(
                    bench_long_core(model, n)
                    if args.core_only
                    else bench_long(model, n, 1 if args.quick or n > 4096 else 2)
                )
                print(f"  smollm2-shape n={n}: done", file=sys.stderr)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        if args.core_only:
            Path(args.out).write_text(
                json.dumps({"long_core": rows, "load_avg_after": _load(), "threads": torch.get_num_threads()}, indent=2)
            )
            print(json.dumps([{k: v for k, v in r.items() if k != "notes"} for r in rows], indent=1))
            return 0
        Path(args.out).write_text(
            json.dumps(
                {
                    "long": rows,
                    "load_avg": _load(),
                    "threads": torch.get_num_threads(),
                    "platform": platform.platform(),
                },
                indent=2,
            )
        )
        print(long_table(rows))
        print(f"wrote {args.out}")
        return 0
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else list(QUICK_SIZES if args.quick else FULL_SIZES)
    reps = 1 if args.quick else 5
    lines = args.corpus if args.corpus is not None else (40 if args.quick else 300)
    if args.only_corpus:
        c = bench_corpus(lines, args.device, 1 if args.quick else 3)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(
            json.dumps(
                {"quick": args.quick, "threads": torch.get_num_threads(), "load_avg": _load(), "corpus": c}, indent=2
            )
        )
        print(corpus_report(c))
        print(f"wrote {args.out}")
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = {"default": "default", "bert-base": None, "gemma-3-270m": "gemma-3-270m"}
        for label in args.models.split(","):
            model = models[label] if models[label] else bert_base_dir(Path(tmp))
            for n in sizes:
                rows.append(
                    bench_one(
                        model,
                        label,
                        n,
                        args.device,
                        reps if n <= 128 else max(1, reps // 2),
                        mitigations=not args.no_mitigations,
                    )
                )
                print(f"  {label} n={n}: done", file=sys.stderr)
    loads = {m: load_seconds(m) for m in args.load_times.split(",")} if args.load_times else None
    cold = umap_cold_seconds()
    c = bench_corpus(lines, args.device, 1 if args.quick else 3) if lines else None
    summary = {
        "corpus": c,
        "machine": {
            "platform": platform.platform(),
            "cpus": torch.get_num_threads(),
            "load_avg": _load(),
            "device": rows[0]["device"],
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "quick": args.quick,
        "umap_cold_s": cold,
        "rows": rows,
        "load_s": loads,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2))
    print(table(rows))
    print()
    print("Mitigated analysis (core) time ÷ forward pass:")
    print(mitigation_table(rows))
    print(f"\nUMAP cold start (fresh process, import + numba compile): {cold:.1f} s")
    for model, (cold_s, cached_s) in (loads or {}).items():
        print(f"{model} load, fresh process: cold (empty SmoothViz cache) {cold_s:.1f} s, cached {cached_s:.1f} s")
    if c is not None:
        print(corpus_report(c))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
