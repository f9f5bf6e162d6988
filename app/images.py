"""Pictures for the page: the shipped examples and the visitors' uploads, named by a short reference.

The analysis cache is keyed on the settings (JSON), so a picture enters them as a reference:
``example:<name>`` (a file of ``assets/images``) or ``upload:<sha256>`` (the bytes of an upload,
kept here, shared by every session: the same picture is one entry whoever sent it). Uploads are
bounded in count and bytes, least recently used out first. The Corpus page's runs read files, so
:func:`as_file` writes an upload to this process's temporary folder, removed with the upload.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from smoothviz.model.vision import MAX_IMAGE_BYTES, ImageError

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "assets" / "images"
UPLOADS = 16  # uploads kept at once …
UPLOAD_BYTES = 64 * 2**20  # … and their bytes together
UPLOAD_TYPES = ["png", "jpg", "jpeg", "gif", "bmp", "webp"]
UPLOAD_DIR = Path(tempfile.gettempdir()) / f"smoothviz-uploads-{os.getpid()}"  # the uploads as files (as_file)
atexit.register(shutil.rmtree, UPLOAD_DIR, ignore_errors=True)  # written only while this process runs

_uploads: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
_lock = threading.Lock()


def examples() -> dict[str, str]:
    """``{name: reference}`` of the shipped example pictures (made by SmoothViz, CC0)."""
    return {p.stem: f"example:{p.stem}" for p in sorted(EXAMPLES_DIR.glob("*.png"))}


def remember(name: str, data: bytes) -> str:
    """Keep an upload's bytes and return its reference.

    Raises:
        ImageError: over :data:`smoothviz.model.vision.MAX_IMAGE_BYTES`.
    """
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError(
            f"'{name}' is {len(data) / 2**20:.0f} MB: images up to {MAX_IMAGE_BYTES // 2**20} MB are accepted"
        )
    ref = "upload:" + hashlib.sha256(data).hexdigest()[:32]
    with _lock:
        _uploads[ref] = (name, bytes(data))
        _uploads.move_to_end(ref)
        while len(_uploads) > 1 and (
            len(_uploads) > UPLOADS or sum(len(d) for _, d in _uploads.values()) > UPLOAD_BYTES
        ):
            gone, _ = _uploads.popitem(last=False)
            shutil.rmtree(UPLOAD_DIR / gone.partition(":")[2], ignore_errors=True)
    return ref


def resolve(ref: str) -> tuple[object, str]:
    """A reference → ``(path or bytes, name)`` for :func:`smoothviz.analyze`'s ``image``.

    Raises:
        ImageError: an unknown example, or an upload this server no longer holds.
    """
    kind, _, key = (ref or "").partition(":")
    if kind == "example":
        path = EXAMPLES_DIR / f"{key}.png"
        if key not in {p.stem for p in EXAMPLES_DIR.glob("*.png")}:
            raise ImageError(f"there is no example picture '{key}' (choose one of: {', '.join(examples())})")
        return path, path.name
    with _lock:
        found = _uploads.get(ref)
    if found is None:
        raise ImageError("this uploaded picture is no longer on the server: upload it again")
    name, data = found
    return data, name


def as_file(ref: str) -> str:
    """A reference → the path of its picture on this server, for :func:`smoothviz.corpus` (which
    reads files): an example's own file, or an upload written as ``UPLOAD_DIR/<hash>/<its name>``,
    so that the corpus's rows name the file the visitor sent.

    Raises:
        ImageError: as :func:`resolve`.
    """
    source, name = resolve(ref)
    if isinstance(source, Path):
        return str(source)
    base = Path(name).name
    path = UPLOAD_DIR / ref.partition(":")[2] / (base if base not in ("", ".", "..") else "upload")
    with _lock:
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(source)
    return str(path)
