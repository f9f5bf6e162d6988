"""Server settings from the environment, read once: the public-demo mode and resource limits.

``SMOOTHVIZ_PUBLIC=1`` turns on the public-demo mode for a classroom server: only the models in
``SMOOTHVIZ_MODELS`` (default ``default,lab``; never local paths), at most
``SMOOTHVIZ_MAX_TOKENS`` tokens (default 128), and a lab model of at most
``SMOOTHVIZ_MAX_LAB_DEPTH`` layers (32) and ``SMOOTHVIZ_MAX_LAB_WIDTH`` width (256).
``SMOOTHVIZ_MAX_CONCURRENT`` analyses run at once (default: the CPU count); others wait their turn,
so one long sentence cannot starve everybody else. The Corpus page of a public server analyses at
most ``SMOOTHVIZ_MAX_CORPUS_LINES`` lines (default 200) of a corpus.
"""
from __future__ import annotations

import os
import tempfile
import threading
from dataclasses import dataclass

from .models import LAB_MODEL, ModelError


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _int(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        return default


@dataclass(frozen=True)
class Settings:
    public: bool
    models: tuple[str, ...]
    max_tokens: int | None
    max_lab_depth: int
    max_lab_width: int
    max_concurrent: int
    max_corpus_lines: int | None = None

    def check(self, model: str, lab: dict | None = None, params: dict | None = None) -> None:
        """Refuse what the public-demo mode does not allow, with a message that says what is."""
        if not self.public:
            return
        gate = str((params or {}).get("gate", "default")).strip()
        if gate not in ("", "default"):
            raise ModelError("this public server uses only the shipped fusion gate (gate=default)")
        if model not in self.models:
            raise ModelError(f"this public server allows only these models: {', '.join(self.models)}")
        if model == LAB_MODEL and lab:
            for key, cap in (("depth", self.max_lab_depth), ("width", self.max_lab_width)):
                try:
                    value = int(float(lab.get(key, 0)))
                except (TypeError, ValueError):
                    continue  # the lab's own validation names the bad value
                if value > cap:
                    raise ModelError(f"this public server allows a lab {key} of at most {cap}, got {value}")


def load() -> Settings:
    """Read the settings from the environment (see the module docstring)."""
    public = _flag("SMOOTHVIZ_PUBLIC")
    models = tuple(m.strip() for m in os.environ.get("SMOOTHVIZ_MODELS", "default,lab").split(",") if m.strip())
    return Settings(public=public, models=models,
                    max_tokens=_int("SMOOTHVIZ_MAX_TOKENS", 128) if public else None,
                    max_lab_depth=_int("SMOOTHVIZ_MAX_LAB_DEPTH", 32),
                    max_lab_width=_int("SMOOTHVIZ_MAX_LAB_WIDTH", 256),
                    max_concurrent=_int("SMOOTHVIZ_MAX_CONCURRENT", os.cpu_count() or 2),
                    max_corpus_lines=_int("SMOOTHVIZ_MAX_CORPUS_LINES", 200) if public else None)


SETTINGS = load()
# Numba (UMAP) caches compiled code beside its sources unless told otherwise; a public server
# writes only under the temporary directory, downloads of allow-listed hub models included.
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(tempfile.gettempdir(), "smoothviz-numba"))
if SETTINGS.public:
    os.environ.setdefault("HF_HOME", os.path.join(tempfile.gettempdir(), "smoothviz-hf"))
compute_slots = threading.BoundedSemaphore(SETTINGS.max_concurrent)
