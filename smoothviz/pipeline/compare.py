"""``compare()``: one sentence through a list of runs, each a model plus an optional mitigation.

A run is a :class:`RunSpec`; ``smoothviz compare`` reads it from a SPEC, a comma-separated
``key=value`` list (``model=…``, ``lab.<key>=…``, ``mitigation=…``, that mitigation's parameters
by name, ``label=…``). A piece without ``=`` continues the previous value, so
``mitigation=heads,ablate=3.0,5.11`` ablates two heads. Each run is one :func:`analyze` result:
one analysis per distinct model and mitigation, and a run without a mitigation reuses the
baseline of an analysis of the same model (``analyze()`` itself is unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from smoothviz.mitigations import label as mitigation_label
from smoothviz.mitigations import make
from smoothviz.model.lab import LabConfig
from smoothviz.pipeline.analysis import Analysis, Run, analyze

RUN_LETTERS = "ABCDEFGHIJ"


class SpecError(ValueError):
    """A run SPEC that cannot be read; the message says what is allowed."""


@dataclass(frozen=True)
class RunSpec:
    """One run: a model (``lab`` settings for ``model="lab"``) and an optional mitigation."""

    model: str = "default"
    lab: dict | None = None
    mitigation: str | None = None
    params: dict = field(default_factory=dict)
    label: str = ""

    def __post_init__(self):
        if not (self.model or "").strip():
            raise SpecError("a run needs a model: model=default, model=lab, a Hugging Face id or a directory")
        if self.lab and self.model != "lab":
            raise SpecError(f"lab.<key> settings need model=lab, got model={self.model}")
        if self.lab:
            LabConfig.from_strings(self.lab)  # an unknown key or a bad value, before any model loads
        if self.params and not self.mitigation:
            raise SpecError(f"parameters {', '.join(self.params)} need mitigation=NAME")
        if self.mitigation:
            make(self.mitigation, self.params)  # MitigationError names what is allowed

    @classmethod
    def parse(cls, text: str) -> RunSpec:
        """A SPEC such as ``model=default,mitigation=neutreno,lambda=0.4``; SpecError if unreadable."""
        pairs: list[list[str]] = []
        for piece in (text or "").split(","):
            key, sep, value = piece.partition("=")
            if sep:
                if not key.strip():
                    raise SpecError(f"run SPEC pieces are key=value, got '{piece}' in '{text}'")
                pairs.append([key.strip(), value.strip()])
            elif pairs and piece.strip():
                pairs[-1][1] += "," + piece.strip()  # ablate=3.0,5.11
            elif piece.strip():
                raise SpecError(f"run SPEC pieces are key=value, got '{piece.strip()}' in '{text}'")
        if not pairs:
            raise SpecError("an empty run SPEC: use e.g. model=default or model=default,mitigation=neutreno")
        model, label, mitigation, lab, params = "default", "", None, {}, {}
        seen = set()
        for key, value in pairs:
            if key in seen:
                raise SpecError(f"'{key}' is given twice in run SPEC '{text}'")
            seen.add(key)
            if key == "model":
                model = value
            elif key == "label":
                label = value
            elif key == "mitigation":
                mitigation = value or None
            elif key.startswith("lab."):
                lab[key[4:]] = value
            else:
                params[key] = value
        return cls(model=model, lab=lab or None, mitigation=mitigation, params=params, label=label)

    def describe(self) -> str:
        """A short label: the model, its lab settings and the mitigation with its parameters."""
        text = self.model + "".join(f" {k}={v}" for k, v in (self.lab or {}).items())
        return text + (f" + {mitigation_label(self.mitigation, self.params)}" if self.mitigation else "")

    def model_key(self) -> tuple:
        return (self.model, tuple(sorted((self.lab or {}).items())))


@dataclass(frozen=True)
class CompareRun:
    """One run of a comparison: its label, spec and the analysis it was read from."""

    label: str
    spec: RunSpec
    analysis: Analysis

    @property
    def run(self) -> Run:
        """The run itself: the analysis's mitigated run, or its baseline."""
        return self.analysis.mitigated if self.spec.mitigation else self.analysis.baseline

    @property
    def mitigation(self) -> dict | None:
        return self.analysis.mitigation if self.spec.mitigation else None

    def to_json(self) -> dict:
        a = self.analysis
        out = {
            "label": self.label,
            "model": a.model,
            "device": a.device,
            "tokens": a.tokens,
            "mitigation": self.mitigation,
            "layers": self.run.table(),
        }
        if self.run.final_norm_row is not None:  # a pre-norm model's final norm: a row apart, never a layer
            out["final_norm"] = self.run.final_norm_row
        if a.lab is not None:
            out["lab"] = a.lab
        out["notes"] = a.notes
        return out


@dataclass(frozen=True)
class Comparison:
    """The runs of :func:`compare`, in the order given."""

    text: str
    runs: list

    def to_json(self) -> dict:
        """The CLI's ``compare --json`` object."""
        return {"runs": [r.to_json() for r in self.runs]}


def compare(
    text: str | None,
    runs: list,
    *,
    image=None,
    device: str = "auto",
    head: int | None = None,
    symmetrize: str = "sym",
    exclude_special: bool = False,
    max_tokens: int | None = None,
    heads: bool = True,
) -> Comparison:
    """Analyse ``text`` (or, for vision models, ``image``: see :func:`smoothviz.analyze`) with every run of
    ``runs`` (RunSpecs or SPEC strings) under one set of graph options.

    Raises:
        SpecError, AnalysisError, ModelError, MitigationError: with a message meant for the user.
    """
    specs = [r if isinstance(r, RunSpec) else RunSpec.parse(r) for r in runs]
    if not specs:
        raise SpecError("compare needs at least one run")
    by_model: dict[tuple, Analysis] = {}
    results: dict[int, Analysis] = {}
    # Mitigated runs first: a baseline run then reuses the baseline of an analysis of its model.
    for i in sorted(range(len(specs)), key=lambda i: specs[i].mitigation is None):
        spec, key = specs[i], specs[i].model_key()
        if spec.mitigation is None and key in by_model:
            results[i] = by_model[key]
            continue
        results[i] = analyze(
            text,
            image=image,
            model=spec.model,
            device=device,
            lab=spec.lab,
            mitigation=spec.mitigation,
            params=spec.params,
            head=head,
            symmetrize=symmetrize,
            exclude_special=exclude_special,
            max_tokens=max_tokens,
            heads=heads,
        )
        by_model.setdefault(key, results[i])
    out, labels = [], set()
    for i, spec in enumerate(specs):
        result = results[i]
        label = spec.label or spec.describe()
        if label in labels:
            label = f"{label} ({RUN_LETTERS[i] if i < len(RUN_LETTERS) else i + 1})"
        labels.add(label)
        out.append(CompareRun(label=label, spec=spec, analysis=result))
    name = None if image is None else results[0].image.name if results[0].image is not None else "image"
    return Comparison(text=text if image is None else name, runs=out)
