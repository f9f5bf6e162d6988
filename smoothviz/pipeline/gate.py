"""``smoothviz fit-gate``: learn Shi et al.'s fusion gate on a small labelled CSV.

The encoder stays frozen. A token-wise gate α_{i,l} = softmax_l(w_lᵀh_{i,l} + b_l), one w_l and
b_l per fused layer (a single bias would cancel in the softmax over layers), and a linear
classifier on the mean of the fused tokens are trained together on the CPU; a linear classifier
on the last layer alone is the reference. The file records the layers the gate was fitted on:
it fuses exactly those. A gate from a toy set is illustrative, not a result.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch

from smoothviz.mitigations.fusion import GATE_FORMAT, gate_fuse, select_layers
from smoothviz.model.handles import get_handle

MAX_ROWS = 5000


def read_labelled_csv(path: str) -> tuple[list[str], list[str]]:
    """Rows of a ``text,label`` CSV; raises ValueError with the reason when it is not one."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"text", "label"} <= {f.strip() for f in reader.fieldnames}:
                raise ValueError(f"'{path}' needs a header with columns text,label")
            rows = [(r["text"] or "", (r["label"] or "").strip()) for r in reader]
    except UnicodeDecodeError:
        raise ValueError(f"'{path}' is not a UTF-8 CSV file") from None
    rows = [(t, y) for t, y in rows if t.strip() and y]
    if len(rows) < 10:
        raise ValueError(f"'{path}' has {len(rows)} usable rows; at least 10 are needed")
    if len(rows) > MAX_ROWS:
        raise ValueError(f"'{path}' has {len(rows)} rows; at most {MAX_ROWS} are allowed")
    if len({y for _, y in rows}) < 2:
        raise ValueError(f"'{path}' has a single label; a classifier needs at least two")
    return [t for t, _ in rows], [y for _, y in rows]


def _features(handle, texts: list[str], layers: list[int], batch: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden states of the chosen layers for every text, padded: ``([N, k, n_max, d], mask [N, n_max])``.

    The encoder is frozen: one batched forward per ``batch`` texts, padding masked out.
    """
    tok = handle.tokenizer
    enc = tok(texts, padding=True, truncation=True, max_length=min(handle.max_length, 256), return_tensors="pt")
    chunks = []
    for start in range(0, len(texts), batch):
        part = {k: v[start : start + batch].to(handle.device) for k, v in enc.items()}
        with torch.inference_mode():
            hidden = handle.model(**part, output_hidden_states=True).hidden_states
        chunks.append(torch.stack([hidden[l] for l in layers], 1).float().cpu())
    return torch.cat(chunks), enc["attention_mask"].float()


def _pool(x: torch.Tensor, mask: torch.Tensor, w: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor:
    """Mean over real tokens of the gated fusion (or of the last layer when ``w`` is None).

    Args:
        x: ``[N, k, n, d]``; mask: ``[N, n]``; w: ``[k, d]``; b: ``[k]``.
    """
    tokens = x[:, -1] if w is None else gate_fuse(x.transpose(0, 1), w, b)  # [N, n, d]
    return (tokens * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)


def _train(x, mask, y, n_classes, gate: bool, epochs: int, seed: int):
    """Train the classifier (and the gate's ``w [k, d]``, ``b [k]`` when ``gate``) with Adam."""
    torch.manual_seed(seed)
    k, d = x.shape[1], x.shape[-1]
    w = torch.zeros(k, d, requires_grad=True)  # zeros: the gate starts as the uniform mean
    b = torch.zeros(k, requires_grad=True)
    clf = torch.nn.Linear(d, n_classes)
    params = list(clf.parameters()) + ([w, b] if gate else [])
    opt = torch.optim.Adam(params, lr=3e-2, weight_decay=1e-4)
    for _ in range(epochs):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(clf(_pool(x, mask, w if gate else None, b)), y)
        loss.backward()
        opt.step()
    return w.detach(), b.detach(), clf


def _accuracy(clf, x, mask, y, w, b) -> float:
    with torch.no_grad():
        return float((clf(_pool(x, mask, w, b)).argmax(-1) == y).float().mean())


def fit_gate(
    data: str,
    *,
    model: str = "default",
    out: str,
    layers: str = "all",
    epochs: int = 100,
    seed: int = 0,
    device: str = "auto",
) -> dict:
    """Fit a gate and write it as JSON (never a pickle). Returns the summary that was written."""
    texts, labels = read_labelled_csv(data)
    if not 1 <= epochs <= 5000:
        raise ValueError(f"--epochs must be in 1..5000, got {epochs}")
    handle = get_handle(model, device)
    chosen = select_layers(layers, handle.n_layers, "fit-gate")
    classes = sorted(set(labels))
    y = torch.tensor([classes.index(v) for v in labels])
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(seed))
    n_test = max(2, len(texts) // 5)
    test, train = order[:n_test], order[n_test:]
    x, mask = _features(handle, texts, chosen)
    w, b, clf_gate = _train(x[train], mask[train], y[train], len(classes), True, epochs, seed)
    _, _, clf_last = _train(x[train], mask[train], y[train], len(classes), False, epochs, seed)
    summary = {
        "format": GATE_FORMAT,
        "model": model,
        "width": int(x.shape[-1]),
        "layers": chosen,
        "classes": classes,
        "n_train": len(train),
        "n_test": len(test),
        "held_out_accuracy": {
            "last_layer": _accuracy(clf_last, x[test], mask[test], y[test], None, None),
            "fused": _accuracy(clf_gate, x[test], mask[test], y[test], w, b),
        },
        "note": "Illustrative: a gate learned on a small toy set with the encoder frozen.",
        "w": w.tolist(),
        "b": b.tolist(),
    }
    Path(out).expanduser().write_text(json.dumps(summary))
    return {k: v for k, v in summary.items() if k != "w"}
