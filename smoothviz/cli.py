"""The ``smoothviz`` command line: ``analyze``, ``compare``, ``corpus``, ``report``, ``animate`` and ``fit-gate``.

A contract other tools rely on: ``--json`` prints exactly one JSON object on stdout; any
error prints one line on stderr and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from smoothviz.options import DEVICES, PROJECTIONS, SYMMETRIZE


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's own code)
        self.exit(2, f"smoothviz: error: {message}\n")


def _pairs(values: list[str], what: str) -> dict:
    out = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{what} must be KEY=VALUE, got '{item}'")
        out[key.strip()] = value.strip()
    return out


def _add_analysis_options(
    p: argparse.ArgumentParser, what: str = "text", help: str = "the sentence to analyse"
) -> None:
    if what == "text":  # a sentence, or --image for a vision model
        p.add_argument(what, nargs="?", help=help + " (or --image)")
        p.add_argument("--image", help="an image file instead of a sentence, for a vision model (ViT, DeiT, DINOv2)")
    else:
        p.add_argument(what, help=help)
    p.add_argument(
        "--model",
        default="default",
        help="default | gemma-3-270m | lab | a Hugging Face id | a local directory | a .gguf file",
    )
    p.add_argument("--lab", action="append", metavar="KEY=VALUE", help="lab model setting (repeatable)")
    p.add_argument("--mitigation", help="a mitigation name (see `smoothviz mitigations`)")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="mitigation parameter (repeatable)")
    p.add_argument("--head", default="mean", help="'mean' over heads (default) or one head index")
    p.add_argument("--symmetrize", default="sym", choices=tuple(SYMMETRIZE), help=" or ".join(SYMMETRIZE.values()))
    p.add_argument("--exclude-special", action="store_true", help="drop [CLS]/[SEP]-like tokens")
    if what == "text":
        p.add_argument("--projection", default="none", choices=tuple(PROJECTIONS))
    p.add_argument("--device", default="auto", choices=tuple(DEVICES))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = _Parser(prog="smoothviz", description="See over-smoothing in Transformers.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    a = sub.add_parser("analyze", help="per-layer over-smoothing metrics of one sentence")
    _add_analysis_options(a)
    a.add_argument("--json", action="store_true", help="print one JSON object")
    c = sub.add_parser("compare", help="per-layer metrics of one sentence under several runs (model + mitigation)")
    c.add_argument("text", nargs="?", help="the sentence to analyse (or --image)")
    c.add_argument("--image", help="an image file instead of a sentence, for vision models (ViT, DeiT, DINOv2)")
    c.add_argument(
        "--run",
        action="append",
        required=True,
        metavar="SPEC",
        help="a run, comma-separated key=value: model=..., lab.<key>=..., mitigation=..., its "
        "parameters by name, label=... (repeatable; e.g. model=default,mitigation=neutreno,lambda=0.4)",
    )
    c.add_argument("--head", default="mean", help="'mean' over heads (default) or one head index")
    c.add_argument("--symmetrize", default="sym", choices=tuple(SYMMETRIZE), help=" or ".join(SYMMETRIZE.values()))
    c.add_argument("--exclude-special", action="store_true", help="drop [CLS]/[SEP]-like tokens")
    c.add_argument("--device", default="auto", choices=tuple(DEVICES))
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c = sub.add_parser("corpus", help="the metrics of many sentences: Parquet rows and a summary with quartiles")
    _add_analysis_options(
        c,
        "file",
        "UTF-8 text, one sentence per line ('-': standard input), or .csv/.jsonl "
        "with a 'text' column; for a vision model, a folder of images or a "
        "file with one image path per line",
    )
    c.add_argument("--batch-size", type=int, default=32, help="lines per forward pass (default 32)")
    c.add_argument(
        "--engine",
        default="local",
        choices=("local", "ray"),
        help="local, or a Ray Data actor pool on the cluster of RAY_ADDRESS (else a local one)",
    )
    c.add_argument("--workers", type=int, help="Ray actors (default: one per GPU, else one per 2 CPUs)")
    c.add_argument("--out", help="Parquet file of every row; rerunning with it resumes")
    c.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    r = sub.add_parser("report", help="a self-contained offline HTML report with every view")
    _add_analysis_options(r)
    r.add_argument("--out", required=True, help="the HTML file to write")
    m = sub.add_parser("animate", help="the layers as a GIF or MP4: one frame per layer, baseline beside mitigated")
    _add_analysis_options(m)
    m.add_argument("--views", default="heatmap,graph", help="comma-separated: heatmap, graph, trajectory")
    m.add_argument("--out", required=True, help="the .gif or .mp4 file to write")
    g = sub.add_parser("fit-gate", help="learn a fusion gate on a labelled CSV (text,label)")
    g.add_argument("data", help="CSV file with columns text,label")
    g.add_argument("--model", default="default")
    g.add_argument("--out", required=True, help="gate file to write (JSON)")
    g.add_argument("--layers", default="all", help="layers to fuse: all | N | A-B")
    g.add_argument("--epochs", type=int, default=100)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="auto", choices=tuple(DEVICES))
    sub.add_parser("mitigations", help="list mitigations and their parameters")
    return parser


def _head(text: str) -> int | None:
    if text == "mean":
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"--head must be 'mean' or a head index, got '{text}'") from None


def _analysis_kwargs(args) -> dict:
    head = _head(args.head)
    lab = _pairs(args.lab, "--lab")
    if lab and args.model != "lab":
        raise ValueError("--lab settings need --model lab")
    params = _pairs(args.param, "--param")
    if params and not args.mitigation:
        raise ValueError("--param needs --mitigation")
    return dict(
        model=args.model,
        device=args.device,
        lab=lab if args.model == "lab" else None,
        mitigation=args.mitigation,
        params=params,
        head=head,
        symmetrize=args.symmetrize,
        exclude_special=args.exclude_special,
        **({"projection": args.projection} if "projection" in args else {}),
    )


def _text(args) -> str | None:
    """The sentence, or ``None`` with ``--image``; one of the two is needed, not both."""
    if args.image is not None and args.text is not None:
        raise ValueError("give a sentence or --image, not both")
    if args.image is None and args.text is None:
        raise ValueError("give a sentence to analyse (or --image FILE for a vision model)")
    if args.image is not None and not args.image.strip():
        raise ValueError("--image needs a file name")
    return args.text


def _fmt(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}" if math.isfinite(value) else str(value)


def table(rows: list[dict]) -> str:
    """A readable fixed-width table of per-layer metrics."""
    from smoothviz.science.metrics import names

    columns = names()
    head = ["layer", *columns]
    lines = [[str(r["layer"]), *(_fmt(r.get(k)) for k in columns)] for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
    fmt = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([fmt(head), *map(fmt, lines)])


def _print_readable(result) -> None:
    print(
        f"model: {result.model}   device: {result.device}   tokens: {len(result.tokens)}"
        + (
            f"   image: {result.image.name} ({result.image.grid[0]}×{result.image.grid[1]} patches)"
            if result.image is not None
            else ""
        )
    )
    for note in result.notes:
        print(f"note: {note}")
    print("\nbaseline")
    print(table(_with_final_norm(result.baseline)))
    if result.mitigated is not None:
        params = ", ".join(f"{k}={v}" for k, v in result.mitigation["params"].items())
        print(f"\nmitigated: {result.mitigation['name']} ({params})")
        print(table(_with_final_norm(result.mitigated)))


def _with_final_norm(run) -> list[dict]:
    """The run's rows, then its final norm's (a pre-norm model's ln_f/norm on layer L) labelled apart."""
    return run.table() + ([{"layer": "final norm", **run.final_norm_row}] if run.final_norm_row else [])


def _list_mitigations() -> None:
    from smoothviz.mitigations import REGISTRY

    for name, cls in REGISTRY.items():
        params = "; ".join(f"{k}={p.default!r} ({p.allowed()})" for k, p in cls.PARAMS.items())
        print(f"{name}: {cls.summary}\n    {params or 'no parameters'}")


def _compare(args) -> int:
    from smoothviz.pipeline.compare import RunSpec, compare

    specs = [RunSpec.parse(spec) for spec in args.run]  # every SPEC read before any model loads
    result = compare(
        _text(args),
        specs,
        image=args.image,
        device=args.device,
        head=_head(args.head),
        symmetrize=args.symmetrize,
        exclude_special=args.exclude_special,
    )
    if args.json:
        print(json.dumps(result.to_json(), allow_nan=False, ensure_ascii=False))
        return 0
    for r in result.runs:
        a = r.analysis
        print(f"{r.label}\n  model: {a.model}   device: {a.device}   tokens: {len(a.tokens)}")
        for note in a.notes:
            print(f"  note: {note}")
        print(table(r.run.table()) + "\n")
    return 0


def _animate(args) -> int:
    from smoothviz import analyze
    from smoothviz.outputs.animate import FORMATS, animate, parse_views

    views = parse_views(args.views)
    if not args.out.lower().endswith(FORMATS):  # before the model loads
        raise ValueError(f"--out must end in {' or '.join(FORMATS)}, got '{args.out}'")
    kwargs = _analysis_kwargs(args)
    if "trajectory" in views and kwargs["projection"] == "none":
        kwargs["projection"] = "pca"
    info = animate(analyze(_text(args), image=args.image, **kwargs), args.out, views)
    print(
        f"wrote {info['path']}: {info['frames']} frames, {info['width']}×{info['height']} px, "
        f"{info['bytes'] / 1024:.0f} KiB in {info['seconds']} s"
    )
    return 0


def run(argv: list[str] | None = None) -> int:
    """Run one command line; user errors raise ValueError (``main`` prints them). Returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "mitigations":
        _list_mitigations()
        return 0
    from smoothviz import analyze

    if args.command == "fit-gate":
        from smoothviz.pipeline.gate import fit_gate

        summary = fit_gate(
            args.data,
            model=args.model,
            out=args.out,
            layers=args.layers,
            epochs=args.epochs,
            seed=args.seed,
            device=args.device,
        )
        print(json.dumps(summary, indent=2))
        return 0
    if args.command == "compare":
        return _compare(args)
    if args.command == "corpus":
        return _corpus(args)
    if args.command == "animate":
        return _animate(args)
    result = analyze(_text(args), image=args.image, **_analysis_kwargs(args))
    if args.command == "report":
        from smoothviz.outputs.report import build_report

        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(build_report(result))
        print(f"wrote {args.out}")
    elif args.json:
        print(json.dumps(result.to_json(), allow_nan=False, ensure_ascii=False))
    else:
        _print_readable(result)
    return 0


def _corpus(args) -> int:
    """``smoothviz corpus``: a tqdm bar on stderr; the summary on stdout; bad lines on stderr."""
    from tqdm import tqdm

    from smoothviz.corpora.run import corpus, read_corpus

    lines = read_corpus(args.file)  # a folder: its images (a vision model's corpus)
    from smoothviz.model.vision import takes_images

    unit = "images" if takes_images(args.model) else "sentences"  # what the lines are, in the words printed
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    bar = tqdm(total=len(lines), unit="line", file=sys.stderr, dynamic_ncols=True, disable=None, leave=False)

    def progress(done: int, total: int, rate: float) -> None:
        bar.total = total
        bar.update(done - bar.n)
        bar.set_postfix_str(f"{rate:.1f} {unit}/s", refresh=False)

    try:
        result = corpus(
            lines,
            batch_size=args.batch_size,
            engine=args.engine,
            workers=args.workers,
            out=args.out,
            progress=progress,
            **_analysis_kwargs(args),
        )
    except KeyboardInterrupt:
        if args.out:
            print(
                f"smoothviz: stopped; the lines done are in {args.out}.partial/: rerun the same command to go on",
                file=sys.stderr,
            )
        raise
    finally:
        bar.close()
    for err in result.errors[:20]:
        print(f"smoothviz: line {err['sentence']}: {err['error']}", file=sys.stderr)
    if len(result.errors) > 20:
        print(f"smoothviz: … and {len(result.errors) - 20} more bad lines", file=sys.stderr)
    print(
        f"smoothviz: {result.computed} {unit} analysed in {result.seconds:.1f} s"
        + (f" ({result.rate:.1f} {unit}/s)" if result.computed else "")
        + (
            f", {result.sentences - result.computed} resumed from {args.out}"
            if result.sentences > result.computed
            else ""
        )
        + (f"; rows in {args.out}" if args.out else ""),
        file=sys.stderr,
    )
    summary = result.summary()
    if args.json:
        print(json.dumps(summary, allow_nan=False, ensure_ascii=False))
        return 0
    print(
        f"model: {summary['model']}   device: {summary['device']}   {unit}: {summary['sentences']}   "
        f"tokens: {summary['tokens']}"
    )
    for note in summary["notes"]:
        print(f"note: {note}")
    for run in ("baseline", "mitigated"):
        if run in summary:
            title = run if run == "baseline" else f"mitigated: {summary['mitigation']['name']}"
            print(f"\n{title} (median over {unit})")
            print(
                table(
                    [
                        {"layer": e["layer"], **{k: v["median"] for k, v in e.items() if k != "layer"}}
                        for e in summary[run]["layers"]
                    ]
                )
            )
    return 0


def main(argv: list[str] | None = None) -> None:
    """The ``smoothviz`` entry point: one line on stderr and exit code 2 on a user error."""
    from smoothviz.model.models import quiet_hub_logging

    quiet_hub_logging()
    try:
        code = run(argv)
    except (ValueError, OSError) as err:  # our user-facing errors are ValueErrors
        print(f"smoothviz: error: {str(err).splitlines()[0] if str(err) else type(err).__name__}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
