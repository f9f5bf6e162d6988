"""The corpus table: its Parquet file (checkpoints, resume) and its statistics.

One row per (sentence, run, layer). Columns, in order: ``sentence`` (0-based index of the
non-blank line), ``text``, ``run`` (``baseline`` / ``mitigated``), ``layer`` (0…L; L + 1 for a
fusion's fused output), ``fused`` (True on that row only), ``tokens`` (tokens the model saw),
``truncated`` (the line was cut to the model's limit), every metric of ``analyze --json`` under
its own name (null where undefined), and ``cosine_hist``: counts of token pairs in :data:`BINS`
equal bins of cosine similarity over [−1, 1].
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

BINS = 40
FIXED = ("sentence", "text", "run", "layer", "fused", "tokens", "truncated")
HIST = "cosine_hist"
INTERNAL = ("error", "device", "note")  # in the rows a BatchAnalyser returns, never in the file
META = b"smoothviz"
TRUNCATED = "Truncated to the model's token limit"
SORT = [("sentence", "ascending"), ("run", "ascending"), ("layer", "ascending")]


class CorpusError(ValueError):
    """A corpus or an ``--out`` file the run cannot use; the message says why and what to do."""


class Store:
    """Rows so far: those of an existing ``out`` (and its checkpoints), then this run's.

    With ``out``, each batch of rows is written at once as a checkpoint file in ``OUT.partial/``;
    :meth:`finish` merges everything into ``out`` and removes the checkpoints. A run stopped
    half-way leaves its checkpoints, and the next run with the same ``out`` starts from them.
    """

    def __init__(self, out: str | os.PathLike | None, settings: dict):
        self.out = Path(out) if out is not None else None
        self.partial = Path(f"{out}.partial") if out is not None else None
        self.settings = {k: v for k, v in settings.items() if k != "device"}
        self.tables: list[pa.Table] = []
        self.errors: list[dict] = []
        self.device: str | None = None
        self._notes: Counter = Counter()
        self._added = False
        if self.out is not None:
            for path in ([self.out] if self.out.exists() else []) + sorted(
                self.partial.glob("part-*.parquet") if self.partial.is_dir() else []
            ):
                self.tables.append(self._read(path))
        self.texts: dict[int, str] = {}
        for table in self.tables:
            self.texts.update(zip(table.column("sentence").to_pylist(), table.column("text").to_pylist()))

    @property
    def done(self) -> set[int]:
        return set(self.texts)

    def _read(self, path: Path) -> pa.Table:
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowInvalid) as err:
            raise CorpusError(f"{path} is not a Parquet file ({err}): choose another --out") from None
        meta = json.loads((table.schema.metadata or {}).get(META, b"null"))
        if not isinstance(meta, dict) or "settings" not in meta:
            raise CorpusError(f"{path} was not written by smoothviz corpus: choose another --out")
        if meta["settings"] != self.settings:
            changed = sorted(
                k for k in set(meta["settings"]) | set(self.settings) if meta["settings"].get(k) != self.settings.get(k)
            )
            raise CorpusError(
                f"{path} holds a run with other settings ({', '.join(changed)}): "
                "use the same settings to resume, or another --out"
            )
        self.device = meta.get("device", self.device)
        return table

    def check(self, lines) -> None:
        """Refuse to resume a file written for another corpus (a line's text differs)."""
        for line in lines:
            if line.sentence in self.texts and self.texts[line.sentence] != line.text:
                raise CorpusError(
                    f"{self.out} holds another corpus (line {line.sentence} differs): "
                    "use another --out, or delete it to start again"
                )

    def add_errors(self, errors: list[dict]) -> None:
        self.errors.extend(errors)

    def add(self, rows: list[dict]) -> None:
        """Keep a batch's rows (error rows go to :attr:`errors`); checkpoint them with ``out``."""
        good, seen = [], set()
        for row in rows:
            if row.get("error") is not None:
                self.errors.append({k: row[k] for k in ("sentence", "text", "error")})
                continue
            self.device = row.get("device") or self.device
            if row["sentence"] not in seen and row.get("note"):
                seen.add(row["sentence"])
                self._notes.update(_note_kinds(row["note"]))
            good.append({k: v for k, v in row.items() if k not in INTERNAL})
        if not good:
            return
        table = pa.Table.from_pylist(good)
        if HIST in table.column_names:  # counts fit in 32 bits: half the bytes of a row's largest column
            table = table.set_column(
                table.column_names.index(HIST), HIST, table.column(HIST).cast(pa.list_(pa.int32()))
            )
        table = table.replace_schema_metadata(self._meta())
        self.tables.append(table)
        self._added = True
        if self.partial is not None:
            self.partial.mkdir(parents=True, exist_ok=True)
            part = self.partial / f"part-{len(list(self.partial.glob('part-*.parquet'))):06d}.parquet"
            _write(table, part)

    def _meta(self) -> dict:
        return {META: json.dumps({"settings": self.settings, "device": self.device, "version": 1}).encode()}

    def notes(self) -> list[str]:
        return [f"{note} ({count} line{'s' * (count != 1)})" for note, count in self._notes.items()]

    def finish(self) -> pa.Table:
        """Every row, sorted by (sentence, run, layer); written to ``out`` when given."""
        if not self.tables:
            return pa.table({})
        table = pa.concat_tables(self.tables, promote_options="permissive") if len(self.tables) > 1 else self.tables[0]
        table = ordered(table).sort_by(SORT).replace_schema_metadata(self._meta())
        if self.out is not None and (self._added or (self.partial and self.partial.is_dir())):
            _write(table, self.out)
            shutil.rmtree(self.partial, ignore_errors=True)
        return table


def _note_kinds(notes: list[str]) -> list[str]:
    """A line's notes, counted by kind (a truncation whatever the number of tokens dropped)."""
    return [TRUNCATED if n.startswith("The text was truncated") else n.rstrip(".") for n in notes]


def _write(table: pa.Table, path: Path) -> None:
    """Write atomically: a reader (or a crash) never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def metric_columns(table: pa.Table) -> list[str]:
    """The metric columns: every numeric column but the fixed ones (from the rows, never a list)."""
    return [
        f.name
        for f in table.schema
        if f.name not in FIXED
        and f.name != HIST
        and (pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_null(f.type))
    ]


def ordered(table: pa.Table) -> pa.Table:
    """Columns in the documented order: the fixed ones, the metrics, the histogram."""
    names = [c for c in FIXED if c in table.column_names] + metric_columns(table)
    rest = [c for c in table.column_names if c not in names and c != HIST]
    return table.select(names + rest + ([HIST] if HIST in table.column_names else []))


def values(table: pa.Table, name: str) -> np.ndarray:
    """A column as float64, NaN for null."""
    return pc.cast(table.column(name), pa.float64()).to_numpy(zero_copy_only=False)


def stats(v: np.ndarray) -> dict:
    """Median, quartiles (numpy's linear interpolation), mean and count of the finite values."""
    v = v[np.isfinite(v)]
    if not v.size:
        return {"median": None, "q25": None, "q75": None, "mean": None, "n": 0}
    q25, median, q75 = np.percentile(v, [25, 50, 75])
    return {"median": float(median), "q25": float(q25), "q75": float(q75), "mean": float(v.mean()), "n": int(v.size)}


def summarise(table: pa.Table) -> dict:
    """``sentences``, ``tokens`` and per run ``{"layers": [{"layer": l, metric: stats, …}, …]}``."""
    if not table.num_rows:
        return {"sentences": 0, "tokens": 0}
    sentence = table.column("sentence").to_numpy()
    first = np.unique(sentence, return_index=True)[1]
    out = {"sentences": int(first.size), "tokens": int(table.column("tokens").to_numpy()[first].sum())}
    runs = np.asarray(table.column("run").to_pylist())
    layer = table.column("layer").to_numpy()
    fused = table.column("fused").to_numpy(zero_copy_only=False)
    columns = {m: values(table, m) for m in metric_columns(table)}
    for run in sorted(set(runs)):
        layers = []
        for value in sorted(set(layer[runs == run].tolist())):
            mask = (runs == run) & (layer == value)
            entry = {"layer": "fused" if fused[mask].any() else int(value)}
            entry.update({m: stats(v[mask]) for m, v in columns.items()})
            layers.append(entry)
        out[run] = {"layers": layers}
    return out


def histograms(table: pa.Table, run: str) -> tuple[list, np.ndarray]:
    """Pairwise-cosine counts summed over sentences: (layer labels, ``[layers, BINS]``)."""
    sub = table.filter(pc.equal(table.column("run"), run))
    layer = sub.column("layer").to_numpy()
    fused = sub.column("fused").to_numpy(zero_copy_only=False)
    counts = np.asarray(sub.column(HIST).to_pylist(), dtype=np.int64).reshape(-1, BINS)
    labels = sorted(set(layer.tolist()))
    out = np.stack([counts[layer == v].sum(0) for v in labels]) if labels else np.zeros((0, BINS), np.int64)
    return ["fused" if fused[layer == v].any() else int(v) for v in labels], out


def changes(table: pa.Table, metric: str, run: str = "baseline") -> list[dict]:
    """Per sentence: ``metric`` at layer 0 and at the last layer L of ``run``, and the change."""
    sub = table.filter(pc.and_(pc.equal(table.column("run"), run), pc.invert(table.column("fused"))))
    if not sub.num_rows:
        return []
    sentence, layer, v = sub.column("sentence").to_numpy(), sub.column("layer").to_numpy(), values(sub, metric)
    text, tokens = sub.column("text").to_pylist(), sub.column("tokens").to_numpy()
    last = int(layer.max())
    first_at = {int(s): i for i, s in enumerate(sentence) if layer[i] == 0}
    out = []
    for i in np.flatnonzero(layer == last):
        s = int(sentence[i])
        j = first_at.get(s)
        start = float(v[j]) if j is not None else math.nan
        out.append(
            {
                "sentence": s,
                "text": text[i],
                "tokens": int(tokens[i]),
                "first": start,
                "last": float(v[i]),
                "change": float(v[i]) - start,
            }
        )
    return out
