"""Every chart's numbers as a table ("show as table" on the page): rows of plain values.

Each function takes ``(analysis, at)`` like a view's builder and returns ``[{column: value}]``, the
numbers the chart draws, rounded as the chart shows them. :data:`smoothviz.outputs.views.VIEWS` names one
per view.
"""

from __future__ import annotations

import numpy as np

from smoothviz.outputs.figures import run_name


def _f(x, digits: int = 4):
    """A float for a table cell (``None`` where undefined)."""
    if x is None:
        return None
    x = complex(x) if np.iscomplexobj(x) else float(x)
    if isinstance(x, complex):
        return None if not np.isfinite(x) else str(np.round(x, digits))
    return round(x, digits) if np.isfinite(x) else None


def _named(analysis) -> list[tuple[str, object]]:
    return [(run_name(analysis, k), run) for k, run in analysis.runs().items()]


def metrics(analysis, at=None) -> list[dict]:
    """Per run and layer 0…L (and the fused output): every metric."""
    return [
        {"run": name, **{k: (v if k == "layer" else _f(v)) for k, v in row.items()}}
        for name, run in _named(analysis)
        for row in run.table()
    ]


def shi(analysis, at=None) -> list[dict]:
    """Per run and layer 1…L: Shi's bound v and the measured d_M ratio."""
    return [
        {"run": name, "layer": row["layer"], "v (bound)": _f(row["shi_v"]), "measured d_M ratio": _f(row["dm_ratio"])}
        for name, run in _named(analysis)
        for row in run.rows[1:]
    ]


def rollout(analysis, at=None) -> list[dict]:
    """Per run and layer 1…L: σ₂/σ₁ of the attention rollout."""
    return [
        {"run": name, "layer": row["layer"], "rollout σ₂/σ₁": _f(row["rollout_ratio"], 6)}
        for name, run in _named(analysis)
        for row in run.rows[1:]
    ]


def similarity(analysis, at) -> list[dict]:
    """Per run and token: its cosine similarity to every token at ``at.layer`` (after the final
    norm at the final-norm position)."""
    from smoothviz.outputs.views import final_norm_similarity  # views imports this module

    cols = [f"{j} · {t}" for j, t in enumerate(analysis.labels)]

    def matrix(run):
        if getattr(at, "final_norm", False) and run.final_norm is not None:
            return final_norm_similarity(run, analysis.keep)
        return np.asarray(run.similarity[at.layer])

    return [
        {"run": name, "token": cols[i], **{c: _f(v, 3) for c, v in zip(cols, row)}}
        for name, run in _named(analysis)
        for i, row in enumerate(matrix(run))
    ]


def graph(analysis, at) -> list[dict]:
    """Per run and token at ``at.layer``: its Fiedler value and its strongest links (weights)."""
    out = []
    for name, run in _named(analysis):
        W = np.array(run.layer_graph[at.layer - 1], dtype=np.float64)
        np.fill_diagonal(W, 0.0)
        for i, label in enumerate(analysis.labels):
            top = [j for j in np.argsort(-W[i], kind="stable")[: at.top_k] if W[i, j] > 0]
            out.append(
                {
                    "run": name,
                    "token": f"{i} · {label}",
                    "Fiedler": _f(run.fiedler[at.layer - 1][i]),
                    "strongest links": ", ".join(f"{j} · {analysis.labels[j]} ({W[i, j]:.3f})" for j in top),
                }
            )
    return out


def spectrum(analysis, at) -> list[dict]:
    """Per run: the normalized-Laplacian eigenvalues of ``at.layer``, ascending."""
    return [
        {"run": name, "index": i + 1, "eigenvalue": _f(e)}
        for name, run in _named(analysis)
        for i, e in enumerate(run.layer_eigs[at.layer - 1])
    ]


def dovonon(analysis, at) -> list[dict]:
    """Per run and head of ``at.layer``: its verdict and its largest-modulus eigenvalue of W_O·W_V."""
    out = []
    for name, run in _named(analysis):
        if run.smooths is None:
            continue
        eigs = np.asarray(run.value_eigs[at.layer - 1])
        used = run.used_heads()[at.layer - 1]
        for h, e in enumerate(eigs):
            top = e[np.argmax(np.abs(e))]
            said = "smooths" if run.smooths[at.layer - 1, h] else "sharpens"
            out.append(
                {
                    "run": name,
                    "head": h,
                    "verdict": said if used[h] else "ablated (not counted)",
                    "dominant eigenvalue": f"{top.real:.3f} {top.imag:+.3f}i",
                }
            )
    return out


def verdicts(analysis, at=None) -> list[dict]:
    """Per run and layer: the share of the used (not ablated) heads that are low-pass, and
    SmoothViz's own majority summary of it."""
    return [
        {
            "run": name,
            "layer": l + 1,
            "low-pass heads": None if np.isnan(share) else _f(share, 3),
            "majority (SmoothViz's summary)": word,
        }
        for name, run in _named(analysis)
        if run.smooths is not None
        for l, (share, word) in enumerate(zip(run.low_pass_share(), run.layer_verdicts()))
    ]


def trajectories(analysis, at=None) -> list[dict]:
    """Per run, token and layer: its 2-D projected position."""
    if analysis.projection is None:
        return []
    keys = list(analysis.runs())
    rows = [
        {
            "run": run_name(analysis, keys[r]),
            "token": f"{i} · {t}",
            "layer": l,
            "x": _f(analysis.projection[r, l, i, 0], 3),
            "y": _f(analysis.projection[r, l, i, 1], 3),
        }
        for r in range(analysis.projection.shape[0])
        for l in range(analysis.projection.shape[1])
        for i, t in enumerate(analysis.labels)
    ]
    fused = getattr(analysis, "fused_projection", None)
    if fused is not None:
        rows += [
            {
                "run": run_name(analysis, "mitigated"),
                "token": f"{i} · {t}",
                "layer": "fused",
                "x": _f(fused[i, 0], 3),
                "y": _f(fused[i, 1], 3),
            }
            for i, t in enumerate(analysis.labels)
        ]
    return rows


def atlas(analysis, at) -> list[dict]:
    """Per run, layer and head: the atlas's quantity."""
    return [
        {"run": name, "layer": l + 1, "head": h, at.quantity: _f(v, 3)}
        for name, run in _named(analysis)
        if getattr(run, at.quantity) is not None
        for l, row in enumerate(getattr(run, at.quantity))
        for h, v in enumerate(row)
    ]


def head_graph(analysis, at) -> list[dict]:
    """Per run and token: its weighted degree in the chosen head's graph."""
    out = []
    for key in analysis.runs():
        G = analysis.graph(at.head_layer, head=at.head, run=key, top_k=at.top_k)
        out += [
            {
                "run": run_name(analysis, key),
                "token": f"{i} · {G.nodes[i]['label']}",
                "strength": _f(G.degree(i, weight="weight")),
            }
            for i in G.nodes
        ]
    return out


def sv(analysis, at=None) -> list[dict]:
    """Per run and layer: σᵢ/σ₁ for every i."""
    return [
        {"run": name, "layer": l, **{f"σ{i + 1}/σ₁": _f(v, 5) for i, v in enumerate(row)}}
        for name, run in _named(analysis)
        for l, row in enumerate(np.asarray(run.sv))
    ]
