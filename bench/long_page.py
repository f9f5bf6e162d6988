"""The main page for a long input, measured in-process with Streamlit's AppTest (issue 28, goal 3).

``PYTHONPATH=. python bench/long_page.py --tokens 2048 [--out bench/results/long-page-2048.json]``

A random-weight model of SmolLM2-135M's shape (``smoothviz.bench.smollm2_shape_dir``: 30 layers,
9 query / 3 KV heads) at ``--tokens`` tokens, opened as a link would open it (``model=custom``,
``model_id=`` its folder, ``text=``). For the first run (the analysis and the page), the same
setting again (the server's time after the analysis: what a second visitor or a rerun pays), and
each tab of the main page opened in turn, it records the server's time (AppTest runs the page
in this process) and the bytes of what the run sends: the sum of its elements' protobuf messages,
the payload of Streamlit's deltas (the websocket's framing aside).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamlit.testing.v1 import AppTest  # noqa: E402

from smoothviz.bench import _load, smollm2_shape_dir, text_of  # noqa: E402
from smoothviz.outputs import views  # noqa: E402


def _sent(at: AppTest) -> int:
    """Bytes of the protobuf messages of every element the run drew."""
    total, stack = 0, [at._tree]
    while stack:
        node = stack.pop()
        proto = getattr(node, "proto", None)
        if proto is not None and hasattr(proto, "ByteSize"):
            total += proto.ByteSize()
        children = getattr(node, "children", None)
        if children:
            stack.extend(children.values() if isinstance(children, dict) else children)
    return total


def _run(at: AppTest) -> dict:
    start = time.perf_counter()
    at.run()
    took = time.perf_counter() - start
    row = {"server_s": took, "sent_bytes": _sent(at), "charts": len(at.get("plotly_chart"))}
    if at.exception:
        row["exception"] = at.exception[0].message
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=2048)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    n = args.tokens
    out = args.out or f"bench/results/long-page-{n}.json"
    result: dict = {"tokens": n, "load_avg_before": _load()}
    with tempfile.TemporaryDirectory() as tmp:
        model = smollm2_shape_dir(Path(tmp), max_tokens=max(n, 2048))
        at = AppTest.from_file(str(ROOT / "app" / "SmoothViz.py"), default_timeout=3600)
        at.query_params.update(model="custom", model_id=model, text=text_of(n))
        result["first_run"] = _run(at)  # the analysis, then the first view
        result["first_view_again"] = _run(at)  # the same setting, analysis cached
        for key, title in views.SECTIONS.items():
            at.session_state["section"] = title
            result[f"section_{key}"] = _run(at)
            result[f"section_{key}_again"] = _run(at)
            print(f"{key}: {result[f'section_{key}']}", flush=True)
    result["load_avg_after"] = _load()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2))
    for key, row in result.items():
        if isinstance(row, dict):
            print(f"{key:>24}: {row['server_s']:7.2f} s, {row['sent_bytes'] / 1e6:6.2f} MB, {row['charts']} charts")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
