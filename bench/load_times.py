"""Time gemma-3-270m's load (cold: an empty SmoothViz cache, the GGUF file dequantised and written;
then cached) in fresh processes, and record the machine's load beside each number.

    PYTHONPATH=. python bench/load_times.py --models gemma-3-270m,default --rounds 2 \
        --out bench/results/gemma-3-270m-load.json

Each round calls :func:`smoothviz.bench.load_seconds` (two fresh processes sharing one new cache
directory). The 1-minute load average before and after each round, sampled every 5 s during it,
and the CPU count are stored with the times: on a shared machine they say how much else was running.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path

from smoothviz.bench import load_seconds


def _sample(samples: list, done: threading.Event, every: float = 5.0) -> None:
    """The 1-minute load average every ``every`` seconds until ``done`` (at least once)."""
    while True:
        samples.append(round(os.getloadavg()[0], 2))
        if done.wait(every):
            return


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="gemma-3-270m,default")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", default="bench/results/gemma-3-270m-load.json")
    args = p.parse_args(argv)
    runs = []
    for r in range(args.rounds):
        for model in args.models.split(","):
            before, samples, done = os.getloadavg(), [], threading.Event()
            sampler = threading.Thread(target=_sample, args=(samples, done), daemon=True)
            sampler.start()
            cold, cached = load_seconds(model)
            done.set()
            sampler.join()
            after = os.getloadavg()
            runs.append(
                {
                    "model": model,
                    "round": r,
                    "cold_s": round(cold, 2),
                    "cached_s": round(cached, 2),
                    "loadavg_1_5_15_before": [round(x, 2) for x in before],
                    "loadavg_1_5_15_after": [round(x, 2) for x in after],
                    "loadavg_1min_during": {
                        "min": min(samples),
                        "mean": round(sum(samples) / len(samples), 2),
                        "max": max(samples),
                        "samples": len(samples),
                    },
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
            )
            print(
                f"{model} round {r}: cold {cold:.1f} s, cached {cached:.1f} s; load average "
                f"{before[0]:.2f} -> {after[0]:.2f} on {os.cpu_count()} CPUs",
                flush=True,
            )
    summary = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "note": "shared with other engineers' tests while measured: see the load averages",
        },
        "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
