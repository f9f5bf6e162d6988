"""Server time of the page interactions issue 28 names, measured in-process with Streamlit's AppTest.

``PYTHONPATH=. python bench/app_times.py [--out bench/results/app-times.json] [--rounds 5]``

AppTest runs the page script in this process, so a run's wall time is the server's time for it
(no browser, no websocket). On the default model and the page's default sentence:

* the main page's first load (the analysis), then the first open of the per-layer tab;
* a layer slider step to a layer not yet seen, then steps between two layers already seen;
* Present: an arrow press to a layer not yet seen, then presses between two layers already seen.

AppTest reruns the whole script on every interaction, where the browser's slider reruns only the
per-layer fragment: the main page's slider figures here are an upper bound on the server's time.
The fragment's own time in those same runs (``SMOOTHVIZ_TIMINGS=1``'s ``layer-views`` line, set by
this script) is what a slider step in the browser costs the server's script.

Each "seen" figure is the best of ``--rounds`` presses (the least disturbed by other work on a
shared machine); the JSON stores every press and the load average.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["SMOOTHVIZ_TIMINGS"] = "1"  # the page logs each fragment's own time (app/state/process.py)

from streamlit.testing.v1 import AppTest  # noqa: E402

from smoothviz.bench import _load  # noqa: E402
from smoothviz.outputs import views  # noqa: E402

FRAGMENTS: dict[str, list[float]] = {}  # the latest run's fragment times, seconds, by name


def _run(at: AppTest) -> float:
    log = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stderr(log):
        at.run()
    took = time.perf_counter() - start
    if at.exception:
        raise RuntimeError(f"the page raised: {at.exception[0].message}")
    FRAGMENTS.clear()
    for name, ms in re.findall(r"smoothviz-timing (\S+) ([0-9.]+) ms", log.getvalue()):
        FRAGMENTS.setdefault(name, []).append(float(ms) / 1000)
    return took


def main_page(rounds: int) -> dict:
    at = AppTest.from_file(str(ROOT / "app" / "SmoothViz.py"), default_timeout=900)
    first = _run(at)
    at.session_state["section"] = views.SECTIONS["layer"]
    layer_tab = _run(at)
    slider = at.slider(key="layer")
    top = slider.value
    slider.set_value(top - 1)
    new_layer = _run(at)
    seen, fragment = [], []
    for i in range(rounds):
        at.slider(key="layer").set_value(top if i % 2 == 0 else top - 1)
        seen.append(_run(at))
        fragment.append(FRAGMENTS["layer-views"][-1])
    return {
        "first_load_s": first,
        "layer_tab_first_open_s": layer_tab,
        "slider_new_layer_s": new_layer,
        "slider_seen_layer_s": seen,
        "slider_seen_best_s": min(seen),
        "fragment_seen_layer_s": fragment,
        "fragment_seen_best_s": min(fragment),
    }


def present(rounds: int) -> dict:
    at = AppTest.from_file(str(ROOT / "app" / "pages" / "5_Present.py"), default_timeout=900)
    first = _run(at)

    def button(label):  # the page's ◀ layer / layer ▶ buttons (what the arrow keys press)
        return next(b for b in at.button if b.label == label)

    button("◀ layer").click()  # the page opens on the last layer
    new_layer = _run(at)
    seen = []
    for i in range(rounds):
        button("layer ▶" if i % 2 == 0 else "◀ layer").click()
        seen.append(_run(at))
    return {
        "first_load_s": first,
        "arrow_new_layer_s": new_layer,
        "arrow_seen_layer_s": seen,
        "arrow_seen_best_s": min(seen),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench/results/app-times.json")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    load_before = _load()
    result = {
        "main": main_page(args.rounds),
        "present": present(args.rounds),
        "load_avg_before": load_before,
        "load_avg_after": _load(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    m, pr = result["main"], result["present"]
    print(
        f"main: first load {m['first_load_s']:.2f} s, per-layer tab first open {m['layer_tab_first_open_s'] * 1e3:.0f} ms, "
        f"slider to a new layer {m['slider_new_layer_s'] * 1e3:.0f} ms, to a seen layer {m['slider_seen_best_s'] * 1e3:.0f} ms (best; the per-layer fragment's own "
        f"{m['fragment_seen_best_s'] * 1e3:.0f} ms)"
    )
    print(
        f"present: first load {pr['first_load_s']:.2f} s, arrow to a new layer {pr['arrow_new_layer_s'] * 1e3:.0f} ms, "
        f"to a seen layer {pr['arrow_seen_best_s'] * 1e3:.0f} ms (best)"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
