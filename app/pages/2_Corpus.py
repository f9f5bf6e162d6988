"""The Corpus page: smoothing over many sentences, median lines with quartile bands.

Thin like the main page: the sidebar gives the corpus and the settings (controls.py), state
runs or fetches the result (a progress bar while it runs), smoothviz.outputs.corpus_figures draws.
"""

from __future__ import annotations

import functools
import urllib.parse
from pathlib import Path

import streamlit as st

from smoothviz.corpora.run import lines_of, parse_corpus, read_corpus
from smoothviz.corpora.store import changes, histograms, metric_columns
from smoothviz.mitigations import label as mitigation_label
from smoothviz.model.vision import takes_images
from smoothviz.outputs import corpus_figures, figures
from smoothviz.science.metrics import METRICS
from smoothviz.words.claims import frozen_caveat, frozen_caveat_line

import controls
import images
import state
from markup import md
from state import SETTINGS

state.setup()  # the process's set-up, once (state.process)

st.set_page_config(page_title="SmoothViz · Corpus", page_icon="🫧", layout="wide")
URL = controls.URL
CORPORA = Path(__file__).resolve().parents[2] / "assets" / "corpora"
SHIPPED = {p.stem: p for p in sorted(CORPORA.glob("*.txt"))}
UPLOAD = "upload"
EXAMPLES = "examples"  # a vision model's corpus: the shipped example pictures (app/images.py), or uploads
PASTE = "paste"  # sentences typed or pasted into a box; a small corpus goes into the link (paste=)
DEFAULT = "everyday"
SHOWN = 6  # sentences in each of the "most" and "least" tables

with st.sidebar:
    st.subheader("Corpus")
    corpus_box = st.container()  # a text model's corpus; a vision model's pictures instead (filled below)
    refused: list = []  # a link's value the widgets cannot hold, reset to its default
    model, lab, device = controls.model_controls(refused)
    mitigation, params = controls.mitigation_controls(refused, lambda: state.model_shape(model, device, lab))
    graph = controls.graph_controls(model, device, lab, refused)
    for message in refused:
        st.warning(md(message), icon=":material/tune:")
PICTURES = bool(model) and takes_images(model)  # a vision model: a corpus of pictures, not of lines
upload = pasted = None
uploads: list = []
with corpus_box:
    if PICTURES:
        source = st.radio(
            "Pictures",
            [EXAMPLES, UPLOAD],
            key="pictures",
            bind=URL,
            label_visibility="collapsed",
            help="SmoothViz's example pictures (assets/images, CC0), or pictures of your own.",
        )
        if source == UPLOAD:
            uploads = (
                st.file_uploader(
                    "Pictures", type=images.UPLOAD_TYPES, accept_multiple_files=True, key="picture_uploads"
                )
                or []
            )
    else:
        source = st.selectbox(
            "Corpus",
            [*SHIPPED, PASTE, UPLOAD],
            index=list(SHIPPED).index(DEFAULT),
            key="corpus",
            bind=URL,
            label_visibility="collapsed",
            help="A shipped teaching corpus, or your own file: one sentence per line (.txt), or "
            "a .csv / .jsonl with a 'text' column.",
        )
        upload = st.file_uploader("Corpus file", type=["txt", "csv", "jsonl"]) if source == UPLOAD else None
        pasted = ""
        if source == PASTE:
            if "paste_text" not in st.session_state:  # this session's first run: the link decides
                st.session_state["paste_text"] = st.query_params.get("paste", "")
            pasted = st.text_area(
                "Sentences, one per line (Ctrl+Enter to apply)",
                key="paste_text",
                height=180,
                max_chars=controls.TEXT_CHARS,
            )
            short = controls._url_text(pasted)
            if st.query_params.get("paste", "") != short:
                if short:
                    st.query_params["paste"] = short
                elif "paste" in st.query_params:
                    del st.query_params["paste"]
            if len(short) < len(pasted):
                st.caption(f"A copied link holds only the first {len(short):,} characters of these lines.")

UNIT, ONE = ("pictures", "picture") if PICTURES else ("sentences", "sentence")
st.title(f"Corpus: smoothing over many {UNIT}")
st.markdown(
    "One sentence's curve is noisy; what the papers claim is a statistic over many sentences. Here every "
    "line of a corpus goes through the same analysis as on the main page, and each metric is drawn as "
    "the median over the sentences with the band between their quartiles."
)
if PICTURES:
    st.caption(
        "This model takes pictures: each of the corpus's lines is one picture, its patches the tokens, and "
        "the rows name its file; below, 'sentence' and 'line' stand for a picture."
    )


def name_of(text: str) -> str:
    """A row's line as the table shows it: a picture by its file's name (an upload's own), a sentence whole."""
    return Path(text).name if PICTURES else text


def lines_or_stop():
    """The chosen corpus as numbered lines (capped on a public server), or stop with a message."""
    try:
        if PICTURES:
            if len(uploads) > images.UPLOADS:  # the server keeps this many uploads at once (app/images.py)
                st.info(
                    f"This page analyses the first {images.UPLOADS} of the {len(uploads)} uploaded pictures; "
                    "for more, run `smoothviz corpus <folder>` on your machine.",
                    icon=":material/info:",
                )
            refs = (
                list(images.examples().values())
                if source == EXAMPLES
                else [images.remember(f.name, f.getvalue()) for f in uploads[: images.UPLOADS]]
            )
            if not refs:
                st.info("Choose pictures in the sidebar (PNG, JPEG, GIF, BMP or WebP).", icon=":material/upload:")
                st.stop()
            lines = lines_of(images.as_file(ref) for ref in refs)
        elif source == PASTE:
            if not pasted.strip():
                st.info(
                    "Type or paste sentences in the sidebar, one per line; a small corpus is kept in the link.",
                    icon=":material/edit:",
                )
                st.stop()
            lines = parse_corpus(pasted, "pasted.txt")
        elif source == UPLOAD:
            if upload is None:
                st.info("Choose a file in the sidebar: one sentence per line, UTF-8.", icon=":material/upload:")
                st.stop()
            lines = parse_corpus(upload.getvalue().decode("utf-8-sig"), upload.name)
        else:
            lines = read_corpus(SHIPPED[source])
    except ValueError as err:  # CorpusError, a file that is not UTF-8, ImageError (an upload over 20 MB)
        st.error(md(f"This file cannot be used: {str(err).splitlines()[0]}"), icon=":material/error:")
        st.stop()
    cap = SETTINGS.max_corpus_lines
    if cap and len(lines) > cap:
        st.info(f"This public server analyses the first {cap} of the {len(lines)} lines.", icon=":material/info:")
        lines = lines[:cap]
    return lines


if not model:
    st.error("Type a Hugging Face id or a local model directory, or choose the default model.", icon=":material/error:")
    st.stop()
lines = lines_or_stop()
settings = dict(model=model, device=device, lab=lab, mitigation=mitigation, params=params, **graph)
result = state.corpus_or_error(lines, settings, unit=UNIT)  # cached, or run in the server's line; None: a message shown
if result is None:
    st.stop()

KEY = state.corpus_key(lines, settings)
summary = result.summary()
names = {"baseline": "baseline"}
if "mitigation" in summary:
    names["mitigated"] = mitigation_label(summary["mitigation"]["name"], summary["mitigation"]["params"])
speed = f" · {result.rate:.1f} {UNIT}/s" if result.computed else ""
st.caption(
    f"Model **{md(summary['model'])}** on {summary['device']} · {summary['sentences']} {UNIT} · "
    f"{summary['tokens']} tokens · baseline beside **{md(names.get('mitigated', 'no mitigation'))}**{speed}"
)
for note in summary["notes"]:
    st.info(md(note), icon=":material/info:")
corpus_mitigation = summary.get("mitigation", {}).get("name")
if line := frozen_caveat_line(corpus_mitigation, lab):  # one line, as on the main page; the full text inside
    with st.expander(f":orange[:material/science: {md(line)}]"):
        st.markdown(md(frozen_caveat(corpus_mitigation, lab)))
if result.errors:
    with st.expander(f"{len(result.errors)} line(s) could not be analysed"):
        st.dataframe(
            [{"line": e["sentence"] + 1, "text": name_of(e["text"]), "error": e["error"]} for e in result.errors],
            hide_index=True,
        )


# Under 640 px (a phone) the small multiples of the bands keep a readable width and scroll sideways,
# as the main page's curves do: squeezed to 390 px their titles overlapped (issue 22).
st.html(
    "<style>@media (max-width: 640px) { .st-key-corpus-bands { overflow-x: auto; }"
    " .st-key-corpus-bands [data-testid='stElementContainer'] { min-width: 820px; } }</style>"
)


def chart(build, name: str, *parts) -> None:
    fig = state.figure(build, (KEY, name, *parts))
    box = st.container(key="corpus-bands") if name == "bands" else st.container()  # a class for the CSS above
    box.plotly_chart(fig, theme=None, config=figures.image_config(f"corpus-{name}"))


# --------------------------------------------------------------------------- 1 · bands
st.header("1 · Metrics over depth: median and quartiles", anchor="bands")
st.caption(corpus_figures.CAPTIONS["bands"])
available = metric_columns(result.table)
picked = st.multiselect(
    "Metrics", available, default=[m.name for m in METRICS if m.curve and m.name in available], key="corpus_metrics"
)
if picked:
    chart(lambda: corpus_figures.band_curves(summary, picked, names), "bands", tuple(picked))
    if ranks := [m for m in picked if "rank" in m]:  # bounded by each sentence's length: say what the median mixes
        lengths = [r["tokens"] for r in changes(result.table, ranks[0])]
        st.caption(
            f"{', '.join(ranks)} cannot exceed a sentence's token count, and these sentences have "
            f"{min(lengths)}–{max(lengths)} tokens: the median and the band mix sentences of different "
            "lengths (a rank summarised across lengths; SmoothViz's own note)."
        )

# --------------------------------------------------------------------------- 2 · cosines
st.header("2 · Pairwise token cosines, layer by layer", anchor="cosines")
st.caption(corpus_figures.CAPTIONS["cosines"])
runs = [r for r in ("baseline", "mitigated") if r in summary]
for run, col in zip(runs, st.columns(len(runs))):
    with col:
        chart(
            lambda run=run: corpus_figures.cosine_histograms(*histograms(result.table, run), title=names[run]),
            "cosines",
            run,
        )

# --------------------------------------------------------------------------- 3 · ranking
st.header(f"3 · The {UNIT} that smooth most and least", anchor="ranking")
st.caption(corpus_figures.CAPTIONS["ranking"])
ranked = [m for m in corpus_figures.COLLAPSE if m in available]
metric = st.selectbox("Ranked by the change of", ranked, key="corpus_rank", bind=URL)
link = controls.url_state()


def opener(text: str) -> str | None:
    """The main page with this line and these settings; for a picture, an example's only (a link
    cannot carry an upload)."""
    if not PICTURES:
        return "./?" + urllib.parse.urlencode({**link, "text": text})
    example = Path(text)
    if example.parent != images.EXAMPLES_DIR:
        return None
    return "./?" + urllib.parse.urlencode({**link, "image": example.stem})


def table(rows: list[dict]) -> None:
    L = summary["baseline"]["layers"][-1]["layer"]
    # The sentence right after its line number (it was last, cut off at 1366 px); lines count from 1.
    data = [
        {
            "open": opener(r["text"]),
            "line": r["sentence"] + 1,
            ONE: name_of(r["text"]),
            "change": r["change"],
            "layer 0": r["first"],
            f"layer {L}": r["last"],
            "tokens": r["tokens"],
        }
        for r in rows
    ]
    st.dataframe(
        data,
        hide_index=True,
        column_config={
            "open": st.column_config.LinkColumn(
                "open",
                display_text="open ↗",
                width="small",
                help=f"Open this {ONE} on the main page with these settings",
            ),
            ONE: st.column_config.TextColumn(width="large"),
            "layer 0": st.column_config.NumberColumn(format="%.3g"),
            f"layer {L}": st.column_config.NumberColumn(format="%.3g"),
            "change": st.column_config.NumberColumn(format="%+.3g"),
        },
    )


scored = [r for r in changes(result.table, metric) if r["change"] == r["change"]]  # NaN: undefined (one token)
scored.sort(key=lambda r: corpus_figures.COLLAPSE[metric] * r["change"], reverse=True)
# Full width, one table under the other: side by side, the sentence column was cut at 1366 px (issue 22).
if len(scored) <= 2 * SHOWN:  # a small corpus: every sentence once, rather than the same ones in both tables
    st.subheader("From most to least smoothing")
    table(scored)
else:
    st.subheader("Smooth most")
    table(scored[:SHOWN])
    st.subheader("Smooth least")
    table(scored[::-1][:SHOWN])

# --------------------------------------------------------------------------- export
st.header("Download", anchor="download")
st.caption(
    "One row per (sentence, run, layer), every metric of the main page: the table `smoothviz corpus --out` "
    "writes (the Parquet also holds each row's cosine histogram)."
)


c1, c2 = st.columns(2)  # built when pressed, from the lines and settings (state.report_html says why)
c1.download_button(
    "Rows (CSV)",
    functools.partial(state.corpus_table, lines, settings, "csv"),
    "smoothviz-corpus.csv",
    "text/csv",
    on_click="ignore",
    width="stretch",
)
c2.download_button(
    "Rows (Parquet)",
    functools.partial(state.corpus_table, lines, settings, "parquet"),
    "smoothviz-corpus.parquet",
    "application/vnd.apache.parquet",
    on_click="ignore",
    width="stretch",
)
state.let_go(globals(), "result")  # the shared cache keeps it; a session Streamlit keeps must not
