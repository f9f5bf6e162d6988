"""The README's map is the tree (issue 24): every module of the library, every app module and every
benchmark script is named in it, in the folder where it lives, and the library never imports the app."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _map() -> str:
    start = README.index("\nsmoothviz/ ")
    return README[start : README.index("```", start)]


def _folders(block: str) -> dict[str, str]:
    """Each folder line of the map (``  model/   …``) → the text of the lines under it, by indentation."""
    lines, out = block.splitlines(), {}
    for i, line in enumerate(lines):
        m = re.match(r"^( *)([\w]+)/\s", line)
        if not m:
            continue
        depth, body = len(m.group(1)), []
        for below in lines[i + 1 :]:
            name = re.match(r"^( *)\S", below)
            if name and len(name.group(1)) <= depth and not below.startswith(" " * (depth + 4) + " "):
                break
            body.append(below)
        out[m.group(2)] = line + "\n" + "\n".join(body)
    return out


def test_the_map_names_every_module_where_it_lives():
    folders = _folders(_map())
    for folder in ("model", "science", "pipeline", "corpora", "words", "outputs"):
        names = {p.name for p in (ROOT / "smoothviz" / folder).glob("*.py") if p.name != "__init__.py"}
        assert names, folder
        missing = sorted(n for n in names if n not in folders[folder])
        assert not missing, f"smoothviz/{folder}/ has modules the README's map does not name: {missing}"
    top = {p.name for p in (ROOT / "smoothviz").glob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    assert not [n for n in top if n not in folders["smoothviz"]], top
    app = {p.name for p in (ROOT / "app").glob("*.py")} | {
        p.stem + "/" for p in (ROOT / "app").iterdir() if p.is_dir() and p.name not in ("__pycache__", ".streamlit")
    }
    assert not [n for n in app if n.removesuffix(".py") not in folders["app"]], app
    state = {p.stem for p in (ROOT / "app" / "state").glob("*.py") if p.name != "__init__.py"}
    assert not [n for n in state if n not in folders["app"]], state
    bench = {p.name for p in (ROOT / "bench").glob("*.py")}
    assert not [n for n in bench if n not in folders["bench"]], bench


def test_every_module_the_map_names_exists():
    named = set(re.findall(r"\b(\w+\.py)\b", _map()))
    files = {p.name for folder in ("smoothviz", "app", "bench", "tests") for p in (ROOT / folder).rglob("*.py")}
    assert named <= files, sorted(named - files)


def test_the_library_never_imports_the_app_or_streamlit():
    for path in (ROOT / "smoothviz").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            for name in names:
                top = name.split(".")[0]
                assert top not in ("streamlit", "state", "controls", "markup", "images"), f"{path}: imports {name}"
