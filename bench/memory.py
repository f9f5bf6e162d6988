"""Server memory over many distinct sentences: does RSS level off once the caches are full?

    python bench/memory.py --sentences 500 [--figure-mb 256] [--cache-entries 32]

Runs each new sentence through the app's cache path in one process, as the server does
(``state.analysis_or_error`` for the analysis, ``state.figure`` for the figures of the first
view: curves, Shi's bound, rollout, and per run the similarity heatmap, attention graph,
Laplacian spectrum, value spectrum, head atlas, head graph and singular values, plus the
verdicts and the trajectories), and records RSS and what the caches hold every ``--every``
sentences. Writes ``bench/results/memory-N.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sentences", type=int, default=500)
    ap.add_argument("--every", type=int, default=25)
    ap.add_argument("--figure-mb", type=float, default=None, help="SMOOTHVIZ_FIGURE_CACHE_MB (default: the app's)")
    ap.add_argument("--cache-entries", type=int, default=None, help="SMOOTHVIZ_CACHE_ENTRIES (default: the app's)")
    ap.add_argument("--mitigation", default="neutreno")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if args.figure_mb is not None:
        os.environ["SMOOTHVIZ_FIGURE_CACHE_MB"] = str(args.figure_mb)
    if args.cache_entries is not None:
        os.environ["SMOOTHVIZ_CACHE_ENTRIES"] = str(args.cache_entries)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path[:0] = [str(ROOT / "app"), str(ROOT), str(ROOT / "bench")]
    import logging

    import state

    state.setup()
    for name in list(logging.root.manager.loggerDict):  # "no runtime" warnings: bare mode is intended
        if name.startswith("streamlit"):
            logging.getLogger(name).setLevel(logging.ERROR)
    from loadtest import sentence

    from smoothviz.outputs import figures
    from smoothviz.science.graph import to_networkx

    def first_view(settings: dict, analysis) -> None:
        key = json.dumps(settings, sort_keys=True, default=str)
        labels, L = analysis.labels, analysis.n_layers
        views = {
            "curves": lambda: figures.metric_curves(analysis),
            "shi": lambda: figures.shi_bound(analysis),
            "rollout": lambda: figures.rollout(analysis),
            "verdicts": lambda: figures.verdicts(analysis),
            "trajectories": lambda: figures.trajectories(analysis, None),
        }
        for name, run in analysis.runs().items():
            views.update(
                {
                    f"similarity-{name}": lambda r=run: figures.similarity_heatmap(r, labels, L, None),
                    f"graph-{name}": lambda r=run: figures.attention_graph(
                        to_networkx(r.layer_graph[L - 1], labels, top_k=3), r.fiedler[L - 1], None
                    ),
                    f"spectrum-{name}": lambda r=run: figures.laplacian_spectrum(r, L),
                    f"dovonon-{name}": lambda r=run: figures.dovonon(r, L),
                    f"atlas-{name}": lambda r=run: figures.head_atlas(r, "head_gap", picked=(L, 0)),
                    f"head-graph-{name}": lambda n=name: figures.attention_graph(
                        analysis.graph(L, head=0, run=n, top_k=3), None, None
                    ),
                    f"sv-{name}": lambda r=run: figures.sv_spectra(r),
                }
            )
        for name, build in views.items():
            state.figure(build, (key, name, None, L)).to_dict()

    rows, start = [], time.perf_counter()
    for i in range(args.sentences + 1):
        settings = dict(
            text=sentence(i),
            model="default",
            device="cpu",
            lab=None,
            mitigation=args.mitigation,
            params={},
            head=None,
            symmetrize="sym",
            exclude_special=False,
            projection="pca",
        )
        analysis = state.analysis_or_error(settings)
        first_view(settings, analysis)
        if i % args.every == 0:
            gc.collect()
            rows.append(
                {
                    "sentences": i,
                    "rss_mb": round(rss_mb()),
                    "analyses": len(state.ledger),
                    "analysis_mb": round(state.ledger.bytes() / 2**20, 1),
                    "figures": len(state.figure_cache),
                    "figure_mb": round(state.figure_cache.bytes() / 2**20, 1),
                    "elapsed_s": round(time.perf_counter() - start),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    report = {
        "sentences": args.sentences,
        "mitigation": args.mitigation,
        "figure_budget_mb": state.cache.FIGURE_BYTES / 2**20,
        "analysis_entries": state.cache.CACHE_ENTRIES,
        "rows": rows,
    }
    out = args.out or ROOT / "bench" / "results" / f"memory-{args.sentences}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
