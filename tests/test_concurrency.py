"""Eight classroom sessions at once: each gets exactly what it gets alone, no error, bounded memory.

Each session is a real Streamlit script run (AppTest) opened from a shared link (query
parameters), all started together in threads of one process, sharing the server's caches and
models as a real server does. Their curves are compared with sequential library runs.
"""

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import smoothviz
from smoothviz.model import handles

pytestmark = pytest.mark.slow  # many analyses at once

APP = Path(__file__).resolve().parent.parent / "app" / "SmoothViz.py"

SESSIONS = [
    (
        {"text": "Every student types a different sentence.", "mit": "neutreno", "neutreno_lambda": "0.6"},
        dict(mitigation="neutreno", params={"lambda": 0.6}),
    ),
    ({"text": "Singular values decay when tokens agree.", "mit": "softdecay"}, dict(mitigation="softdecay")),
    ({"text": "Attention scaling sharpens the graph.", "mit": "attnscale"}, dict(mitigation="attnscale")),
    (
        {"text": "Flip the value spectrum and watch.", "mit": "spectral", "spectral_mode": "flip"},
        dict(mitigation="spectral", params={"mode": "flip"}),
    ),
    (
        {"text": "ContraNorm pushes tokens apart.", "mit": "contranorm", "nospecial": "true"},
        dict(mitigation="contranorm", exclude_special=True),
    ),
    (
        {"text": "Fusion mixes every layer.", "mit": "fusion-mean", "sym": "ata"},
        dict(mitigation="fusion-mean", symmetrize="ata"),
    ),
    (
        {
            "text": "A deep lab model smooths.",
            "model": "lab",
            "lab_depth": "12",
            "lab_value_spectrum": "positive",
            "mit": "spectral",
        },
        dict(model="lab", lab={"depth": 12, "value_spectrum": "positive"}, mitigation="spectral"),
    ),
    (
        {"text": "Another lab, another seed.", "model": "lab", "lab_depth": "16", "lab_seed": "3", "mit": "none"},
        dict(model="lab", lab={"depth": 16, "seed": 3}),
    ),
]


def curves(app) -> dict:
    """cosine_mean and dm_rel over depth per run, read from the first chart on the page."""
    fig = json.loads(app.get("plotly_chart")[0].proto.spec)
    out = {}
    for trace in fig["data"]:
        metric = trace.get("hovertemplate", "").split("<br>")[0]  # "plain name (code_name)"
        metric = metric[metric.rfind("(") + 1 : -1] if metric.endswith(")") else metric
        if metric in ("cosine_mean", "dm_rel") and "layer" in trace.get("hovertemplate", ""):
            out[(trace["legendgroup"], metric)] = trace["y"]
    return out


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return float("nan")


def test_eight_sessions_at_once_match_their_sequential_results():
    import sys

    sys.path.insert(0, str(APP.parent))
    import state

    state.process._use_the_cores()  # the server's threads per analysis here too: float sums depend on them
    expected = []
    for _, kwargs in SESSIONS:
        r = smoothviz.analyze(SESSIONS[len(expected)][0]["text"], device="auto", **kwargs)
        expected.append({(key, m): run.metric(m) for key, run in r.runs().items() for m in ("cosine_mean", "dm_rel")})

    apps, errors, barrier = [], [], threading.Barrier(len(SESSIONS))
    for params, _ in SESSIONS:
        app = AppTest.from_file(str(APP), default_timeout=600)
        app.query_params.update(params)
        apps.append(app)

    def session(app):
        barrier.wait()
        try:
            app.run()
        except Exception as err:
            errors.append(repr(err))

    before, start = _rss_mb(), time.perf_counter()
    threads = [threading.Thread(target=session, args=(a,)) for a in apps]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed, grown = time.perf_counter() - start, _rss_mb() - before
    print(
        f"\n{len(apps)} concurrent sessions: {elapsed:.1f} s, RSS grew {grown:.0f} MB, "
        f"{handles.cached_handles()} models held"
    )

    assert not errors
    for app, want in zip(apps, expected):
        assert not app.exception, [e.value for e in app.exception]
        assert not app.error, [e.value for e in app.error]
        got = curves(app)
        assert set(got) == set(want)
        for key in want:
            assert np.allclose(np.array(got[key], dtype=float), np.array(want[key], dtype=float), rtol=1e-9, atol=0)
    assert handles.cached_handles() <= handles.MAX_MODELS + handles.MAX_LABS
