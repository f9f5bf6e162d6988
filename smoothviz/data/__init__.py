"""Data shipped inside the package (a non-editable ``pip install .`` carries it): the example
sentences and presets, and the default fusion gate."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

DATA = Path(str(resources.files(__name__)))
DEFAULT_GATE = DATA / "gates" / "default-sentiment.json"


def examples() -> dict:
    """``{"examples": {title: sentence}, "presets": {title: {"description", "settings"}}}``."""
    return json.loads((DATA / "examples.json").read_text(encoding="utf-8"))
