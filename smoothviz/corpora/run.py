"""Corpus mode: the over-smoothing metrics of many sentences, as one table and a summary with bands.

lines → batches of similar length → one padded forward pass per batch and run
(:func:`capture.run_batch`) → each sentence's own tokens → the analysis of ``analyze`` itself,
batched over the sentences of one length (:func:`analysis.analyze_batch`) → rows (sentence, run,
layer) → Parquet
(:mod:`smoothviz.corpora.store`) and a summary: median, quartiles and mean per layer.

The per-line function is :class:`BatchAnalyser` (a batch of lines in, their rows out, one model
per instance): the local engine calls it on consecutive batches, the Ray engine runs it as a Ray
Data actor pool. Either way the rows are the same.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pyarrow as pa
import torch

from smoothviz.corpora.store import BINS, CorpusError, Store, summarise
from smoothviz.mitigations import make
from smoothviz.model import capture, vision
from smoothviz.model.handles import get_handle
from smoothviz.model.models import LAB_MODEL
from smoothviz.pipeline import stream
from smoothviz.pipeline.analysis import AnalysisError, analyze_batch, analyze_encoded
from smoothviz.science.graph import GraphOptions
from smoothviz.science.metrics import similarity
from smoothviz.throttle import slot

ENGINES = ("local", "ray")
ATTENTION_BUDGET = 256 * 2**20  # bytes of captured attention per padded batch (long lines: smaller batches)


@dataclass(frozen=True)
class Line:
    """One non-blank line: ``sentence`` is its 0-based index among the non-blank lines."""

    sentence: int
    text: str
    error: str | None = None  # set when the line could not be read (a malformed JSONL record)


# --------------------------------------------------------------------------- reading


def read_corpus(source: str | os.PathLike) -> list[Line]:
    """The lines of a UTF-8 file: one sentence or passage per line, blank lines skipped.

    ``-`` reads standard input; a folder gives the paths of its images (for a vision model:
    :func:`smoothviz.model.vision.image_paths`); a ``.csv`` file or a ``.jsonl`` file (one JSON object per line)
    gives the values of its ``text`` column. A JSONL record that does not parse, or has no text,
    is kept as a bad line (its error recorded) so that the others still run.

    Raises:
        CorpusError: no line with text, or a CSV without a ``text`` column.
    """
    name = str(source)
    if name != "-" and Path(source).is_dir():  # a folder of images, for a vision model
        from smoothviz.model.vision import image_paths

        return lines_of(image_paths(source))
    return parse_corpus(
        sys.stdin.read() if name == "-" else Path(source).read_text(encoding="utf-8-sig"),
        "standard input" if name == "-" else name,
    )


def parse_corpus(raw: str, name: str) -> list[Line]:
    """:func:`read_corpus` on text already read; ``name``'s suffix says the format (an upload's name)."""
    suffix = Path(name).suffix.lower()
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(raw))
        if "text" not in (reader.fieldnames or []):
            raise CorpusError(f"{name} has no 'text' column (columns: {', '.join(reader.fieldnames or []) or 'none'})")
        items = [row.get("text") or "" for row in reader]
    elif suffix in (".jsonl", ".ndjson"):
        items = [_json_text(line) for line in raw.splitlines()]
    else:
        items = raw.splitlines()
    lines = lines_of(items)
    if not lines:
        raise CorpusError(f"{name} has no text: give one sentence per line")
    return lines


def _json_text(line: str):
    if not line.strip():
        return ""
    try:
        record = json.loads(line)
    except ValueError as err:
        return Line(-1, line.strip(), f"not a JSON object: {err}")
    text = record.get("text") if isinstance(record, dict) else None
    return text if isinstance(text, str) else Line(-1, line.strip(), "no string 'text' field in this record")


def lines_of(items: Iterable) -> list[Line]:
    """Number the non-blank items (strings, or :class:`Line` for bad records) 0, 1, 2, …"""
    out = []
    for item in items:
        if isinstance(item, Line):
            out.append(Line(len(out), item.text, item.error))
        elif isinstance(item, str) and item.strip():
            out.append(Line(len(out), item.strip()))
        elif item is not None and not isinstance(item, str):
            out.append(Line(len(out), repr(item), f"not text: {type(item).__name__}"))
    return out


# --------------------------------------------------------------------------- the per-line function


@dataclass
class _Encoded:
    sentence: int
    text: str
    inputs: dict
    tokens: list
    special: list
    notes: list

    @property
    def length(self) -> int:
        return len(self.tokens)


class BatchAnalyser:
    """A batch of lines in, their rows out: the function both engines run (one model per instance).

    Lines are grouped by token count: each group is one forward pass per run, padded to its
    longest line (or, where padding could leak, of lines of one length), and every line is then
    analysed on its own tokens by the code of ``analyze``.

    Args:
        settings: :func:`settings_of`'s dict.
        batch_size: at most this many lines per forward pass.
    """

    def __init__(self, settings: dict, batch_size: int = 32):
        s = settings
        self.settings, self.batch_size = settings, max(1, int(batch_size))
        self.handle = get_handle(s["model"], s["device"], s["lab"])
        if s["head"] is not None and s["head"] >= self.handle.heads:
            raise AnalysisError(f"head {s['head']} does not exist: this model has heads 0..{self.handle.heads - 1}")
        self.options = GraphOptions(head=s["head"], symmetrize=s["symmetrize"], exclude_special=s["exclude_special"])
        self.mitigation = make(s["mitigation"], s["params"]) if s["mitigation"] else None
        self.second = self._second_pass()
        # The lab model takes no attention mask: its lines are grouped by exact length too.
        self.padded = self.handle.lab is None and (self.mitigation is None or self.mitigation.token_wise)
        tokenizer = (self.handle.embedder or self.handle).tokenizer
        self.pad_id = getattr(tokenizer, "pad_token_id", None) or 0  # an image processor has none
        self.vision = vision.is_vision(self.handle)  # its lines are image paths
        if self.vision and self.mitigation is not None:
            vision.check_mitigation(self.mitigation)
        self.seconds = {"encode": 0.0, "forward": 0.0, "analysis": 0.0}

    def _second_pass(self):
        """The mitigated forward pass as ``analyze`` runs it: (model, intervention), or None."""
        if self.mitigation is None:
            return None
        alt = self.handle.for_mitigation(self.mitigation)
        if alt is not self.handle:  # the lab's value-spectrum switch is another lab model
            return alt.model, None
        iv = self.mitigation.intervention(self.handle.context())
        return (self.handle.model, iv) if iv is not None else None

    def __call__(self, batch) -> pa.Table:
        """Ray Data's entry point: ``{"sentence": […], "text": […]}`` (a dict or an Arrow table) in,
        ``{"rows": […]}`` out, each line's rows as one JSON text (floats round-trip exactly), so
        Ray never has to reconcile the types of batches that hold only nulls in some column."""
        lines = [Line(int(i), t) for i, t in zip(_column(batch, "sentence"), _column(batch, "text"))]
        by_line: dict[int, list] = {line.sentence: [] for line in lines}
        for row in self.rows(lines):
            by_line[row["sentence"]].append(row)
        return pa.table({"rows": [json.dumps(rows) for rows in by_line.values()]})

    def rows(self, lines: list[Line]) -> list[dict]:
        """Every row of these lines; a line that fails gives one row with its ``error``."""
        out, encoded = [], []
        start = time.perf_counter()
        for line in lines:
            notes: list[str] = []
            try:
                if self.vision:  # the line names an image file
                    encoded.append(
                        _Encoded(line.sentence, line.text, *vision.encode(self.handle, line.text, notes)[:3], notes)
                    )
                else:
                    encoded.append(
                        _Encoded(
                            line.sentence,
                            line.text,
                            *self.handle.encode(line.text, self.settings["max_tokens"], notes),
                            notes,
                        )
                    )
            except ValueError as err:
                out.append(_error_row(line, err))
        self.seconds["encode"] += time.perf_counter() - start
        streamed = [e for e in encoded if self._streams(e)]
        for item in streamed:  # a long line on its own, analysed layer by layer as ``analyze`` does it
            with slot():
                out.extend(self._alone(item))
        encoded = [e for e in encoded if not self._streams(e)]
        for group in groups([e.length for e in encoded], self.batch_size, self.padded, self._cell_bytes()):
            with slot():  # a server's turn, shared with single-sentence analyses (smoothviz.throttle)
                out.extend(self._group([encoded[i] for i in group]))
        return out

    def _streams(self, item: _Encoded) -> bool:
        """A line long enough for the streamed analysis (:mod:`smoothviz.pipeline.stream`): a padded batch
        would hold every layer's attention of it at once (4.3 GB in float32 at 2,000 tokens on a 30-layer,
        9-head decoder), where streaming holds one layer's."""
        return item.length >= stream.STREAM_FROM and not self.vision and capture.uses_registry(self.handle.model)

    def _alone(self, item: _Encoded) -> list[dict]:
        """The rows of one long line: its own forward pass, streamed (the same rows as ``analyze``)."""
        start = time.perf_counter()
        try:
            [analysis] = analyze_batch(
                self.handle,
                [(item.inputs, item.tokens, item.special, list(item.notes))],
                self.mitigation,
                self.options,
                head_gaps=False,
            )
            return rows_of(analysis, item.sentence, item.text)
        except (ValueError, RuntimeError) as err:  # AnalysisError, a numerical failure: this line only
            return [_error_row(Line(item.sentence, item.text), err)]
        finally:
            self.seconds["analysis"] += time.perf_counter() - start

    def _cell_bytes(self) -> int:
        h = self.handle
        return 4 * h.n_layers * h.heads * (2 if self.second else 1) * 2  # float32, both runs, the stack's copy

    def _group(self, items: list[_Encoded]) -> list[dict]:
        start = time.perf_counter()
        try:
            inputs = collate([it.inputs for it in items], self.pad_id)
            base = capture.run_batch(self.handle.model, inputs)
            mitigated = capture.run_batch(self.second[0], inputs, self.second[1]) if self.second else None
        except (RuntimeError, ValueError):  # out of memory, an odd model: each line on its own
            base = mitigated = None
        self.seconds["forward"] += time.perf_counter() - start
        start = time.perf_counter()
        forwards = [
            capture.run
            if base is None
            else _replay(self.handle.model, base[i], None if mitigated is None else mitigated[i])
            for i in range(len(items))
        ]
        out = []
        try:  # the whole group at once: its lines of one length share every tensor operation
            analyses = analyze_batch(
                self.handle,
                [(it.inputs, it.tokens, it.special, list(it.notes)) for it in items],
                self.mitigation,
                self.options,
                head_gaps=False,
                forwards=forwards,
            )
            for it, analysis in zip(items, analyses):
                out.extend(rows_of(analysis, it.sentence, it.text))
        except (ValueError, RuntimeError):  # some line failed: each on its own, so that only it fails
            out = []
            for it, forward in zip(items, forwards):
                try:
                    analysis = analyze_encoded(
                        self.handle,
                        it.inputs,
                        it.tokens,
                        it.special,
                        self.mitigation,
                        self.options,
                        notes=list(it.notes),
                        forward=forward,
                    )
                    out.extend(rows_of(analysis, it.sentence, it.text))
                except (ValueError, RuntimeError) as err:  # AnalysisError, a numerical failure: this line only
                    out.append(_error_row(Line(it.sentence, it.text), err))
        self.seconds["analysis"] += time.perf_counter() - start
        return out


def _column(batch, name: str) -> list:
    column = batch[name]
    return column.to_pylist() if hasattr(column, "to_pylist") else list(column)


def _replay(model, base: capture.Trace, mitigated: capture.Trace | None):
    """A ``forward`` for :func:`analyze_encoded` that hands back this line's slices of the batch."""

    def forward(m, inputs, intervention=None, special=None):
        trace = base if m is model and intervention is None else mitigated
        return trace if trace is not None else capture.run(m, inputs, intervention, special)

    return forward


def groups(lengths: list[int], batch_size: int, padded: bool, cell_bytes: int) -> list[list[int]]:
    """Indices of ``lengths`` in forward-pass groups: by increasing length, at most ``batch_size``
    and :data:`ATTENTION_BUDGET` bytes of attention each, one length per group unless ``padded``."""
    out: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        n = lengths[i]
        last = out[-1] if out else None
        if (
            last
            and len(last) < batch_size
            and (padded or lengths[last[0]] == n)
            and (len(last) + 1) * n * n * cell_bytes <= ATTENTION_BUDGET
        ):
            last.append(i)
        else:
            out.append([i])
    return out


def collate(inputs: list[dict], pad_id: int) -> dict:
    """One batch of right-padded model inputs (``attention_mask`` 0 on padding)."""
    n = max(x[next(iter(x))].shape[1] for x in inputs)
    out = {}
    for key in inputs[0]:
        if not torch.is_tensor(inputs[0][key]):  # a flag (a vision model's interpolate_pos_encoding)
            out[key] = inputs[0][key]
            continue
        parts = []
        for x in inputs:
            t = x[key]
            if t.shape[1] < n:
                if t.dim() != 2:
                    raise ValueError(f"cannot pad {key} of shape {tuple(t.shape)}")
                t = torch.nn.functional.pad(t, (0, n - t.shape[1]), value=pad_id if key == "input_ids" else 0)
            parts.append(t)
        out[key] = torch.cat(parts)
    return out


def rows_of(analysis, sentence: int, text: str) -> list[dict]:
    """One row per (run, layer) of one sentence's :class:`~smoothviz.pipeline.analysis.Analysis`.

    Metric columns are the keys of the analysis's rows (``Run.table()``, the registry's metrics), so
    a metric added to the registry appears here too. The fused output of a fusion is the row
    ``layer = L + 1, fused = True``.
    """
    L, keep = analysis.n_layers, analysis.keep
    truncated = any(n.startswith("The text was truncated") for n in analysis.notes)
    out = []
    for run, r in analysis.runs().items():
        sims = torch.from_numpy(np.array(r.similarity))  # [L+1, n, n]
        if r.fused is not None:
            fused = torch.from_numpy(np.array(r.fused[keep], dtype=np.float64))
            sims = torch.cat([sims, similarity(fused).float().unsqueeze(0)])
        hist = cosine_histogram(sims)
        for i, row in enumerate(r.table()):
            fused = row["layer"] == "fused"
            out.append(
                {
                    "sentence": sentence,
                    "text": text,
                    "run": run,
                    "layer": L + 1 if fused else row["layer"],
                    "fused": fused,
                    "tokens": len(analysis.tokens),
                    "truncated": truncated,
                    **{k: v for k, v in row.items() if k != "layer"},
                    "cosine_hist": hist[i].tolist(),
                    "device": analysis.device,
                    "note": list(analysis.notes) or None,
                }
            )
    return out


def cosine_histogram(sims: torch.Tensor) -> torch.Tensor:
    """Counts of token pairs i < j in :data:`BINS` equal bins of cosine over [−1, 1], per layer.

    Args:
        sims: ``[layers, n, n]`` cosine similarities. Returns ``[layers, BINS]`` int64.
    """
    layers, n = sims.shape[0], sims.shape[-1]
    i, j = torch.triu_indices(n, n, 1)
    cos = sims[:, i, j].float()  # [layers, pairs]
    idx = ((cos + 1) * (BINS / 2)).floor().clamp(0, BINS - 1).long() + BINS * torch.arange(layers).unsqueeze(-1)
    return torch.bincount(idx.flatten(), minlength=layers * BINS).view(layers, BINS)


def _error_row(line: Line, err: Exception | str) -> dict:
    message = str(err).splitlines()[0] if str(err) else type(err).__name__
    return {"sentence": line.sentence, "text": line.text, "error": message}


# --------------------------------------------------------------------------- the entry point


def settings_of(
    *,
    model: str = "default",
    device: str = "auto",
    lab: dict | None = None,
    mitigation: str | None = None,
    params: dict | None = None,
    head: int | None = None,
    symmetrize: str = "sym",
    exclude_special: bool = False,
    max_tokens: int | None = None,
) -> dict:
    """Validated, JSON-ready settings (what a resumed ``--out`` must match); raises ValueError."""
    from smoothviz.model.lab import LabConfig

    GraphOptions(head=head, symmetrize=symmetrize, exclude_special=exclude_special)
    model = (model or "").strip()
    if model == LAB_MODEL:
        lab = (
            lab if isinstance(lab, LabConfig) else LabConfig.from_strings({k: str(v) for k, v in (lab or {}).items()})
        ).to_dict()
    elif lab:
        raise ValueError("lab settings need model 'lab'")
    mitigation = None if mitigation in (None, "", "none") else make(mitigation, params)
    if params and mitigation is None:
        raise ValueError("mitigation parameters need a mitigation")
    return {
        "model": model,
        "device": device,
        "lab": lab if model == LAB_MODEL else None,
        "mitigation": mitigation and mitigation.name,
        "params": mitigation.params() if mitigation else {},
        "head": head,
        "symmetrize": symmetrize,
        "exclude_special": bool(exclude_special),
        "max_tokens": max_tokens,
    }


Progress = Callable[[int, int, float], None]  # (lines done, lines in all, lines per second)


def corpus(
    texts: Iterable | None = None,
    *,
    images=None,
    model: str = "default",
    device: str = "auto",
    lab: dict | None = None,
    mitigation: str | None = None,
    params: dict | None = None,
    head: int | None = None,
    symmetrize: str = "sym",
    exclude_special: bool = False,
    max_tokens: int | None = None,
    batch_size: int = 32,
    engine: str = "local",
    workers: int | None = None,
    out: str | os.PathLike | None = None,
    progress: Progress | None = None,
) -> "CorpusResult":
    """Analyse many sentences: every metric of ``analyze`` per (sentence, run, layer), and a summary.

    Args:
        texts: sentences (strings; blank ones skipped), or the :class:`Line` list of :func:`read_corpus`.
        images: instead of ``texts``, for a vision model: a folder of images or a list of image
            paths; each row's ``text`` is the image's path.
        model, device, lab, mitigation, params, head, symmetrize, exclude_special, max_tokens: as
            for :func:`smoothviz.analyze`.
        batch_size: lines per forward pass (fewer for long lines, see :data:`ATTENTION_BUDGET`).
        engine: ``local`` (this process) or ``ray`` (a Ray Data actor pool on the cluster that
            ``ray.init()`` connects to: ``RAY_ADDRESS``, or a local one).
        workers: Ray actors (default: one per GPU, else one per 2 CPUs of the cluster).
        out: a Parquet file. Rows are checkpointed beside it (``OUT.partial/``) while the run
            goes; a rerun with the same ``out`` and settings skips the lines already there.
        progress: called after each batch with (lines done, lines in all, lines per second).

    Raises:
        CorpusError: no line to analyse, or ``out`` holds another corpus or other settings.
        AnalysisError, ModelError, MitigationError: settings that no line can use.
    """
    if engine not in ENGINES:
        raise CorpusError(f"engine must be one of {', '.join(ENGINES)}, got '{engine}'")
    if images is not None:
        if texts is not None:
            raise CorpusError("give sentences or images, not both")
        texts = vision.image_paths(images) if isinstance(images, (str, os.PathLike)) else [str(p) for p in images]
        if not vision.is_vision(get_handle(model, device, lab)):
            raise CorpusError(
                f"model '{model}' takes text, not images: choose a vision model (ViT, DeiT, DINOv2, DINOv3, ViT-MSN, I-JEPA)"
            )
    lines = (
        texts
        if isinstance(texts, list) and texts and all(isinstance(x, Line) for x in texts)
        else lines_of(texts or [])
    )
    if not lines:
        raise CorpusError("no text to analyse: give at least one non-blank sentence")
    settings = settings_of(
        model=model,
        device=device,
        lab=lab,
        mitigation=mitigation,
        params=params,
        head=head,
        symmetrize=symmetrize,
        exclude_special=exclude_special,
        max_tokens=max_tokens,
    )
    store = Store(out, settings)
    store.check(lines)
    store.add_errors([_error_row(line, line.error) for line in lines if line.error])
    todo = [line for line in lines if line.error is None and line.sentence not in store.done]
    todo.sort(key=lambda line: len(line.text))  # similar lengths side by side: little padding
    start, timings = time.perf_counter(), {}
    if todo:
        run = _run_ray if engine == "ray" else _run_local
        timings = run(todo, settings, batch_size, workers, store, _meter(progress, len(todo), start))
    seconds = time.perf_counter() - start
    table = store.finish()
    ok = {int(s) for s in table.column("sentence").to_pylist()} if table.num_rows else set()
    if not ok and store.errors:
        raise AnalysisError(
            f"no line could be analysed: line {store.errors[0]['sentence']}: {store.errors[0]['error']}"
        )
    return CorpusResult(
        table=table,
        settings=settings,
        errors=sorted(store.errors, key=lambda e: e["sentence"]),
        notes=store.notes(),
        device=store.device or settings["device"],
        computed=len(todo),
        seconds=seconds,
        timings=timings,
    )


def _meter(progress: Progress | None, total: int, start: float):
    def tick(done: int) -> None:
        if progress is not None:
            progress(done, total, done / max(time.perf_counter() - start, 1e-9))

    return tick


def _run_local(todo: list[Line], settings: dict, batch_size: int, workers, store: Store, tick) -> dict:
    start = time.perf_counter()
    analyser = BatchAnalyser(settings, batch_size)
    load = time.perf_counter() - start  # the model, once (nothing when it is already loaded)
    done = 0
    for k in range(0, len(todo), batch_size):
        chunk = todo[k : k + batch_size]
        store.add(analyser.rows(chunk))
        done += len(chunk)
        tick(done)
    return {"load": load, **analyser.seconds}


def _run_ray(todo: list[Line], settings: dict, batch_size: int, workers, store: Store, tick) -> dict:
    """The same :class:`BatchAnalyser` as a Ray Data actor pool; rows stream back to ``store``."""
    try:
        import ray
    except ImportError:
        raise CorpusError("--engine ray needs Ray: pip install 'smoothviz[ray]'") from None
    started = not ray.is_initialized()
    if started:  # RAY_ADDRESS's cluster, whose nodes have smoothviz installed; or a local one
        local = (
            {}
            if os.environ.get("RAY_ADDRESS")
            else {"runtime_env": {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}}}
        )
        ray.init(log_to_driver=False, **local)  # a local Ray's workers import what this process imports
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0)) if settings["device"] in ("auto", "cuda") else 0
        cpus = max(1, int(resources.get("CPU", 1)))
        size = workers or (gpus if gpus else max(1, cpus // 2))
        ray.data.DataContext.get_current().enable_progress_bars = False  # ours is enough
        ds = ray.data.from_items(
            [{"sentence": line.sentence, "text": line.text} for line in todo],
            override_num_blocks=max(1, min(len(todo) // batch_size, 4 * size)),
        )
        ds = ds.map_batches(
            BatchAnalyser,
            fn_constructor_kwargs={"settings": settings, "batch_size": batch_size},
            batch_size=batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=size),
            num_gpus=1 if gpus else 0,
            num_cpus=1 if gpus else max(1, min(2, cpus // size)),
        )
        seen: set = set()
        try:
            for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                rows = [row for text in table.column("rows").to_pylist() for row in json.loads(text)]
                store.add(rows)
                seen.update(r["sentence"] for r in rows)
                tick(len(seen))
        except ray.exceptions.RayError as err:  # an actor's own error is the last line of Ray's report
            lines = [line for line in str(err).splitlines() if line.strip()]
            raise CorpusError(f"the Ray run failed: {lines[-1] if lines else type(err).__name__}") from err
    finally:
        if started:
            ray.shutdown()
    return {}


# --------------------------------------------------------------------------- the result


@dataclass
class CorpusResult:
    """What :func:`corpus` returns.

    Attributes:
        table: every row (this run's and any resumed ones), sorted by (sentence, run, layer); the
            schema is the Parquet's (README, "Corpus mode").
        errors: ``{"sentence", "text", "error"}`` for each line that could not be analysed.
        computed: lines analysed by this call (the others were in ``out`` already).
        seconds: wall time of this call's analysis; ``timings``: where it went (local engine: the
            model's load, tokenising, the forward passes, the per-line analysis), in seconds.
    """

    table: pa.Table
    settings: dict
    errors: list
    notes: list
    device: str
    computed: int
    seconds: float
    timings: dict = field(default_factory=dict)

    @property
    def model(self) -> str:
        return self.settings["model"]

    @property
    def sentences(self) -> int:
        return len(set(self.table.column("sentence").to_pylist())) if self.table.num_rows else 0

    @property
    def rate(self) -> float:
        """Lines analysed per second by this call (NaN when nothing was computed)."""
        return self.computed / self.seconds if self.computed and self.seconds > 0 else math.nan

    def summary(self) -> dict:
        """The ``--json`` object: model, device, sentences, tokens, and per run the quantiles per layer."""
        out = {
            "model": self.model,
            "device": self.device,
            **summarise(self.table),
            "errors": self.errors,
            "notes": self.notes,
        }
        if self.settings["lab"] is not None:
            out["lab"] = self.settings["lab"]
        if self.settings["mitigation"]:
            out["mitigation"] = {"name": self.settings["mitigation"], "params": self.settings["params"]}
        out["graph"] = {
            "head": "mean" if self.settings["head"] is None else self.settings["head"],
            "symmetrize": self.settings["symmetrize"],
            "exclude_special": self.settings["exclude_special"],
        }
        return out

    def frame(self):
        """The table as a pandas DataFrame."""
        return self.table.to_pandas()
