"""The code passes the project's linter and formatter (ruff, with pyproject.toml's settings), as CI checks."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUFF = Path(sys.executable).parent / "ruff"  # installed beside the interpreter by requirements-dev.txt


@pytest.mark.slow
@pytest.mark.parametrize("args", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_finds_nothing(args):
    assert RUFF.exists(), f"ruff is not installed beside {sys.executable}: pip install -r requirements-dev.txt"
    p = subprocess.run([str(RUFF), *args, "--no-cache", str(ROOT)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
