"""The library as a user installs it: a built wheel carries its data, and importing it leaves
the process as it was (environment, logging, ast.parse)."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds a wheel, imports in fresh processes
ROOT = Path(__file__).resolve().parent.parent


def test_a_wheel_carries_the_default_gate_and_the_examples(tmp_path):
    """A non-editable install (the wheel `pip install .` builds) finds its data without the repo."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next((tmp_path / "dist").glob("smoothviz-*.whl"))
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import json, smoothviz, smoothviz.data as d; from smoothviz.mitigations.fusion import load_gate;"
        "print(json.dumps({'file': smoothviz.__file__, 'presets': len(d.examples()['presets']),"
        "'gate': sorted(load_gate(str(d.DEFAULT_GATE)))}))"
    )
    # From an empty folder with only the unpacked wheel first on the path: not the checkout.
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(site)},
    )
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert found["file"].startswith(str(site))
    assert found["presets"] >= 3 and "w" in found["gate"]


def test_importing_the_library_changes_nothing_process_wide():
    code = """
import ast, json, logging, os
env, parse = dict(os.environ), ast.parse
import smoothviz, smoothviz.cli, smoothviz.outputs.figures, smoothviz.outputs.report, smoothviz.science.projection, smoothviz.throttle
print(json.dumps({"env": sorted(set(os.environ.items()) ^ set(env.items())), "parse": ast.parse is parse,
                  "hub": logging.getLogger("huggingface_hub").level}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"env": [], "parse": True, "hub": logging_notset()}


def logging_notset() -> int:
    import logging

    return logging.NOTSET
