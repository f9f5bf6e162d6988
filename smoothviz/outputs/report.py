"""Exports: the metrics as CSV, and one self-contained HTML report with every view.

The report opens offline: plotly.js is embedded once, figures are drawn from inline JSON, and
every toolbar offers PNG and SVG. All user text (tokens, model names, notes) is escaped.
"""

from __future__ import annotations

import csv
import html
import io
import json

import plotly.io as pio
from plotly.offline import get_plotlyjs

from smoothviz.outputs import figures
from smoothviz.outputs.animate import animated_figure, frames_note
from smoothviz.outputs.views import At, compared, in_section, left_out, sections_for
from smoothviz.science.metrics import HEADLINE
from smoothviz.words.claims import frozen_caveat

TOP_K = 3  # edges per token in the report's graphs (the page's slider default)
# Cells a side of the report's similarity heatmaps (the page draws figures.MAX_HEATMAP = 256): at 512
# tokens blocks of 4 tokens, 4 px each in a half-width chart, and 0.3 MB less a heatmap, so a deep
# model's report stays under 10 MB with room to spare (SmoothViz's choice).
REPORT_HEATMAP = 128
ANIMATION_VIEWS = ("heatmap", "graph")
ANIMATION_CAPTION = (
    "Press play (or drag the slider) to step through the layers, the fused output last for a "
    "fusion: every frame keeps the same axes and colours, and its title gives each run's "
    f"{' and '.join(HEADLINE)} at that layer."
)


def metrics_csv(analysis) -> str:
    """One row per run and layer (the fused output too): every metric of docs/SCIENCE.md §2."""
    rows = [{"run": key, **row} for key, run in analysis.runs().items() for row in run.table()]
    columns = ["run", "layer"] + [c for c in rows[0] if c not in ("run", "layer")]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
    return out.getvalue()


_SVG_BUTTON = (
    "{name:'svg',title:'Download plot as an SVG',icon:Plotly.Icons.camera,"
    "click:function(gd){Plotly.downloadImage(gd,{format:'svg',filename:gd.dataset.name})}}"
)


def _figure_div(fig, name: str, index: int) -> str:
    """A div and the script that draws ``fig`` into it (PNG and SVG buttons on its toolbar)."""
    # JSON inside <script>: escape "<" so no string (a token "</script>") can end the block.
    spec = pio.to_json(fig, validate=False).replace("<", "\\u003c")
    config = json.dumps(figures.image_config(name, "png"))
    div_id = f"fig{index}"
    return (
        f'<div class="fig" id="{div_id}" data-name="smoothviz-{html.escape(name)}"></div>\n'
        f"<script>(function(){{var f={spec};var c={config};c.modeBarButtonsToAdd=[{_SVG_BUTTON}];"
        f"Plotly.newPlot('{div_id}',{{data:f.data,layout:f.layout,frames:f.frames||[],config:c}});}})();</script>"
    )


def _table(analysis) -> str:
    keys = [k for k in analysis.baseline.rows[0] if k != "layer"]
    head = "".join(f"<th>{html.escape(k)}</th>" for k in ["run", "layer", *keys])
    body = []
    for run_key, run in analysis.runs().items():
        for row in run.table():
            cells = [run_key, str(row["layer"])] + ["" if row[k] is None else f"{row[k]:.4g}" for k in keys]
            body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


_CSS = """body{font-family:Inter,'Segoe UI',Arial,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}h3{font-size:1em;margin-bottom:0}
.cap{color:#555;font-size:.92em}.row{display:flex;flex-wrap:wrap;gap:8px}.row .fig{flex:1 1 520px;min-width:420px}
.note{background:#eef5ff;border-left:4px solid #4a90d9;padding:.4em .8em;margin:.4em 0}
table{border-collapse:collapse;font-size:.8em;overflow-x:auto;display:block}td,th{border:1px solid #ddd;padding:2px 6px;text-align:right}
.tokens{font-family:monospace;white-space:pre-wrap;word-break:break-all}"""


def build_report(analysis, layer: int | None = None) -> str:
    """One self-contained HTML page with every view of :data:`smoothviz.outputs.views.VIEWS` (per-layer views
    at ``layer``, default the last; the head atlas's cell at that layer, head 0).

    Returns:
        The HTML text; it needs no network (plotly.js is embedded once, no CDN).
    """
    layer = analysis.n_layers if layer is None else max(1, min(int(layer), analysis.n_layers))
    esc = html.escape
    settings = {
        "model": analysis.model,
        "device": analysis.device,
        "tokens": len(analysis.tokens),
        "layers": analysis.n_layers,
        "heads": analysis.heads,
        "mitigation": json.dumps(analysis.mitigation) if analysis.mitigation else "none",
        "graph": f"head={'mean' if analysis.options.head is None else analysis.options.head}, "
        f"symmetrize={analysis.options.symmetrize}, exclude_special={analysis.options.exclude_special}",
        "projection": analysis.projection_method,
    }
    if analysis.lab:
        settings["lab"] = json.dumps(analysis.lab)
    if analysis.image is not None:  # a picture: which one, and how the model cut it
        info = analysis.image
        settings["image"] = (
            f"{info.name}, {info.pixels.shape[0]}×{info.pixels.shape[1]} px as the model saw it, "
            f"{info.grid[0]}×{info.grid[1]} patches of {info.patch} px after {info.prefix} prefix tokens"
        )
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>SmoothViz report</title>",
        f"<style>{_CSS}</style><script>{get_plotlyjs()}</script></head><body>",
        "<h1>SmoothViz report</h1>",
        "<p>" + "<br>".join(f"<b>{esc(k)}</b>: {esc(str(v))}" for k, v in settings.items()) + "</p>",
        f"<p><b>tokens</b>:</p><p class='tokens'>{esc(' | '.join(analysis.tokens))}</p>",
    ]
    caveat = frozen_caveat(analysis.mitigation["name"] if analysis.mitigation else None, analysis.lab)
    parts += [f"<div class='note'>{esc(n)}</div>" for n in analysis.notes + ([caveat] if caveat else [])]
    parts.append("<p class='note'>Projections distort distances; the metrics are the ground truth.</p>")
    index = 0
    at = At(layer=layer, top_k=TOP_K, head_layer=layer, heatmap=REPORT_HEATMAP)
    names = {key: figures.run_name(analysis, key) for key in analysis.runs()}
    for section, heading in sections_for(analysis).items():  # a picture's own views too
        parts.append(f"<h2>{esc(heading)}</h2>")
        if section == "layer":  # the same frames as `smoothviz animate`, played in the page
            note = frames_note(analysis)
            parts += [
                "<h3>Layer by layer</h3>",
                f"<p class='cap'>{esc(ANIMATION_CAPTION)}</p>",
                *([f"<p class='cap'>{esc(note)}</p>"] if note else []),
                _figure_div(animated_figure(analysis, ANIMATION_VIEWS), "animation", index),
            ]
            index += 1
        parts += [f"<div class='note'>{esc(line)}</div>" for line in left_out(section, analysis, at)]
        for view in in_section(section, analysis):
            title = view.heading(at)
            parts.append((f"<h3>{esc(title)}</h3>" if title else "") + f"<p class='cap'>{esc(view.caption)}</p>")
            parts.append("<div class='row'>")
            for name, fig in view.figures(analysis, at):
                parts.append(_figure_div(fig, name, index))
                index += 1
            parts.append("</div>")
            parts += [f"<p class='cap'>{esc(line)}</p>" for line in view.lines(analysis, names)]  # under the chart
    parts += ["<h2>Metrics</h2>", _table(analysis), "</body></html>"]
    return "\n".join(parts)


def build_compare_report(text: str, runs: list, *, relative: bool = False, depth: float = 1.0) -> str:
    """One self-contained HTML page holding every run of a comparison.

    Args:
        text: the sentence.
        runs: ``(label, analysis, run)`` per run (``run`` is the analysis's baseline or mitigated Run).
        relative: curves over layer / L rather than layers.
        depth: the per-run views show each run's layer nearest this fraction of its depth.
    """
    esc = html.escape
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>SmoothViz comparison</title>",
        f"<style>{_CSS}</style><script>{get_plotlyjs()}</script></head><body>",
        "<h1>SmoothViz comparison</h1>",
        f"<p><b>text</b>: {esc(text)}</p>",
    ]
    for i, (label, analysis, _) in enumerate(runs):
        parts.append(
            f"<p><span style='color:{figures.run_colour(i)}'>■</span> <b>{esc(label)}</b>: "
            f"model {esc(analysis.model)} on {esc(analysis.device)}, {len(analysis.keep)} tokens, "
            f"{analysis.n_layers} layers</p>"
        )
        caveat = frozen_caveat(analysis.mitigation["name"] if analysis.mitigation else None, analysis.lab)
        parts += [
            f"<div class='note'>{esc(label)}: {esc(n)}</div>" for n in analysis.notes + ([caveat] if caveat else [])
        ]
    index = 0
    for view in compared():  # the registry's views that compare, in page order
        parts.append(f"<h2>{esc(view.compare.title)}</h2><p class='cap'>{esc(view.compare.caption)}</p>")
        if not view.per_run:
            parts.append(
                _figure_div(
                    view.compare.build([(label, run) for label, _, run in runs], relative), f"{view.key}-{index}", index
                )
            )
            index += 1
            continue
        parts.append("<div class='row'>")
        for label, analysis, run in runs:
            layer = max(1, round(depth * analysis.n_layers))
            fig = view.compare.build(f"{label} — layer {layer} of {analysis.n_layers}", analysis, run, layer)
            parts.append(_figure_div(fig, f"{view.key}-{index}", index))
            index += 1
        parts.append("</div>")
    parts.append("<h2>Metrics</h2>")
    for label, _, run in runs:
        keys = [k for k in run.rows[0] if k != "layer"]
        head = "".join(f"<th>{esc(k)}</th>" for k in ["layer", *keys])
        body = "".join(
            "<tr>"
            + "".join(
                f"<td>{esc(c)}</td>" for c in [str(r["layer"])] + ["" if r[k] is None else f"{r[k]:.4g}" for k in keys]
            )
            + "</tr>"
            for r in run.table()
        )
        parts.append(f"<h3>{esc(label)}</h3><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    parts.append("</body></html>")
    return "\n".join(parts)
