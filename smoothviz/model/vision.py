"""Images as input: a vision transformer's patches are its tokens.

A picture (a path, a PIL image or an upload's bytes) is prepared by the model's own image
processor (``AutoImageProcessor``); the tokens are ``[CLS]`` (then DeiT's distillation token
``[DIST]`` and DINOv2/v3's register tokens ``[REG1]`` …; I-JEPA has none) and one token per patch, labelled by its
row and column (``p3,5``: row 3, column 5, counted from 0 at the top left), in the model's own
raster order (row by row). Everything after :func:`encode` is the sentence's path: the same
capture, graphs and metrics. :class:`ImageInfo` keeps what the picture-only views need: the
pixels the model saw (the processor's output, un-normalised) and the patch grid.
"""

from __future__ import annotations

import inspect
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from smoothviz.model.models import VISION

MAX_IMAGE_BYTES = 20 * 2**20  # an upload or file larger than this is refused before decoding
MAX_IMAGE_PIXELS = 40_000_000  # …and a decoded size larger than this (a "decompression bomb")
SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff")


class ImageError(ValueError):
    """An input that is not a usable picture; the message says why, in one line."""


@dataclass(frozen=True)
class ImageInfo:
    """The picture as the model saw it, and where its patches lie.

    Attributes:
        name: the file name (or ``"upload"``/``"image"``).
        pixels: ``[H, W, 3]`` uint8, the processor's output with its normalisation undone
            (resized and cropped as the model saw it), read-only.
        grid: ``(rows, cols)`` of patches.
        patch: the patch side in pixels.
        prefix: tokens before the first patch ([CLS], [DIST], registers).
    """

    name: str
    pixels: np.ndarray
    grid: tuple[int, int]
    patch: int
    prefix: int

    @property
    def patches(self) -> int:
        """The number of patch tokens, rows × cols."""
        return self.grid[0] * self.grid[1]

    def position(self, token: int) -> tuple[int, int] | None:
        """``(row, col)`` of a token (index among all tokens), ``None`` for a prefix token."""
        i = token - self.prefix
        return None if not 0 <= i < self.patches else divmod(i, self.grid[1])

    def to_json(self) -> dict:
        """What ``analyze --json`` says about the picture."""
        return {
            "name": self.name,
            "grid": list(self.grid),
            "patch_size": self.patch,
            "size": [int(self.pixels.shape[0]), int(self.pixels.shape[1])],
            "prefix_tokens": self.prefix,
        }


# Mitigations that cannot act on an image model, with the reason (every other one applies as on text).
REFUSED = {
    "fusion-gate": "its gate is learned from labelled sentences (`smoothviz fit-gate` reads text), so no "
    "gate exists for an image model; use fusion-mean, fusion-max or fusion-concat"
}


def check_mitigation(mitigation) -> None:
    """Refuse, up front and in one line, a mitigation that cannot act on an image model."""
    from smoothviz.mitigations import MitigationError

    name = getattr(mitigation, "name", mitigation)
    if name in REFUSED:
        raise MitigationError(f"{name} cannot apply to a vision model: {REFUSED[name]}")


def is_vision(handle) -> bool:
    """The handle's model takes images (a family of :data:`smoothviz.model.models.VISION`)."""
    return getattr(handle.model.config, "model_type", None) in VISION


def takes_images(name: str) -> bool:
    """Whether the model ``name`` (an id or a directory) is a vision model, from its config alone
    (local files or the hub's cache, else the hub's config.json when it can be reached; no weights
    are loaded). ``False`` when unknown: the analysis itself then says what is wrong."""
    from transformers import AutoConfig

    from smoothviz.model.models import EMBEDDED, LAB_MODEL, _hub_offline, _hub_reachable

    name = (name or "").strip()
    if not name or name in EMBEDDED or name == LAB_MODEL or name.lower().endswith(".gguf"):
        return False
    local = Path(name).expanduser()
    source = str(local) if local.is_dir() else name
    for offline in (True, False):
        if not offline and (local.is_dir() or _hub_offline() or not _hub_reachable()):
            return False
        try:
            config = AutoConfig.from_pretrained(source, local_files_only=offline, trust_remote_code=False)
        except Exception:
            continue
        return config.model_type in VISION
    return False


def prefix_labels(model) -> list[str]:
    """The tokens a vision model puts before its patches, read from its embedding module: ``[CLS]``
    (none in I-JEPA), DeiT's distillation token ``[DIST]``, DINOv2/v3's register tokens ``[REG1]`` …"""
    embeddings = getattr(model, "embeddings", None)
    labels = ["[CLS]"] if getattr(embeddings, "cls_token", None) is not None else []
    if getattr(embeddings, "distillation_token", None) is not None:
        labels.append("[DIST]")
    registers = getattr(embeddings, "register_tokens", None)
    labels += [f"[REG{i + 1}]" for i in range(0 if registers is None else registers.shape[1])]
    return labels


def load_image(source, name: str | None = None):
    """A picture as an RGB PIL image, and its name.

    Args:
        source: a path (str or Path), raw bytes (an upload), or a PIL image (:func:`encode` also
            takes a ``(source, name)`` pair).
        name: the name to show (default: the file's name, ``upload`` for bytes).

    Raises:
        ImageError: no such file, not an image, or too large (:data:`MAX_IMAGE_BYTES`,
            :data:`MAX_IMAGE_PIXELS`).
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, Image.Image):
        image, name = source, name or "image"
        if image.width * image.height > MAX_IMAGE_PIXELS:
            raise ImageError(
                f"'{name}' is {image.width}×{image.height} pixels: images up to "
                f"{MAX_IMAGE_PIXELS / 1e6:.0f} megapixels are accepted"
            )
    else:
        if isinstance(source, (bytes, bytearray, memoryview)):
            data, name = bytes(source), name or "upload"
        elif isinstance(source, (str, Path)):
            path = Path(source).expanduser()
            if not path.is_file():
                raise ImageError(f"'{source}' is not an image file (no such file)")
            if path.stat().st_size > MAX_IMAGE_BYTES:
                raise ImageError(
                    f"'{path.name}' is {path.stat().st_size / 2**20:.0f} MB: images up to "
                    f"{MAX_IMAGE_BYTES // 2**20} MB are accepted"
                )
            data, name = path.read_bytes(), name or path.name
        else:
            raise ImageError(f"an image must be a path, bytes or a PIL image, got {type(source).__name__}")
        if len(data) > MAX_IMAGE_BYTES:
            raise ImageError(
                f"'{name}' is {len(data) / 2**20:.0f} MB: images up to {MAX_IMAGE_BYTES // 2**20} MB are accepted"
            )
        try:
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise ImageError(
                    f"'{name}' is {image.width}×{image.height} pixels: images up to "
                    f"{MAX_IMAGE_PIXELS / 1e6:.0f} megapixels are accepted"
                )
            image.load()
        except ImageError:
            raise
        except Image.DecompressionBombError:  # PIL's own guard, past twice its limit: too large, not broken
            raise ImageError(
                f"'{name}' has too many pixels to decode: images up to "
                f"{MAX_IMAGE_PIXELS / 1e6:.0f} megapixels are accepted"
            ) from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
            raise ImageError(f"'{name}' is not an image SmoothViz can read ({type(err).__name__})") from None
    if image.width < 1 or image.height < 1:
        raise ImageError(f"'{name}' has no pixels")
    return to_rgb(image), name


def to_rgb(image):
    """A PIL image of any mode as the RGB picture a viewer shows.

    - turned upright by its EXIF orientation (a phone's photo is stored sideways);
    - transparency composited onto white, as transformers' ``convert_to_rgb`` does (``convert("RGB")``
      alone would show a transparent background as whatever colour its hidden pixels hold, often black);
    - 16-bit and float greyscale scaled to 0…255 (``convert`` clips them: a 16-bit PNG turned white):
      16-bit by 255/65535, 32-bit integer and float by their own minimum and maximum (their range has
      no convention).
    """
    from PIL import Image, ImageOps

    try:
        image = ImageOps.exif_transpose(image)
    except Exception:
        pass
    if image.mode.startswith("I;16"):
        array = np.asarray(image, dtype=np.float64) * (255 / 65535)
        image = Image.fromarray(array.round().clip(0, 255).astype(np.uint8))
    elif image.mode in ("I", "F"):
        array = np.asarray(image, dtype=np.float64)
        finite = array[np.isfinite(array)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        array = np.nan_to_num((array - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(array))
        image = Image.fromarray(array.round().clip(0, 255).astype(np.uint8))
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return image.convert("RGB")


def encode(handle, source, notes: list, name: str | None = None) -> tuple[dict, list, list, ImageInfo]:
    """Prepare a picture with the model's image processor: ``(inputs, tokens, special, ImageInfo)``.

    ``inputs`` holds ``pixel_values [1, 3, H, W]`` (and, for ViT/DeiT when H×W is not the size the
    model was built for, ``interpolate_pos_encoding``: its position embeddings interpolated, as
    transformers does for DINOv2 always).

    Raises:
        ImageError: not an image, or a model that takes text.
    """
    if not is_vision(handle):
        raise ImageError(
            f"model '{handle.name}' takes text, not images: choose a vision model "
            f"({', '.join(sorted(VISION))}) or type a sentence"
        )
    if isinstance(source, tuple) and len(source) == 2:  # (path or bytes, name to show)
        source, name = source
    image, name = load_image(source, name)
    config = handle.model.config
    try:
        pixel_values = handle.tokenizer(images=image, return_tensors="pt")["pixel_values"]
    except Exception as err:
        raise ImageError(
            f"the model's image processor cannot prepare '{name}': {str(err).splitlines()[0][:200]}"
        ) from None
    size = tuple(pixel_values.shape[-2:])
    patch = config.patch_size if isinstance(config.patch_size, int) else config.patch_size[0]
    grid = (size[0] // patch, size[1] // patch)
    if min(grid) < 1:
        raise ImageError(f"the prepared image is {size[0]}×{size[1]} pixels, smaller than one {patch}-pixel patch")
    inputs = {"pixel_values": pixel_values.to(handle.device, dtype=next(handle.model.parameters()).dtype)}
    built = config.image_size if isinstance(config.image_size, (tuple, list)) else (config.image_size,) * 2
    # ViT, DeiT, ViT-MSN and I-JEPA interpolate their position embeddings only when asked; DINOv2
    # always does, and DINOv3's rotary positions need nothing
    if tuple(built) != size and "interpolate_pos_encoding" in inspect.signature(handle.model.forward).parameters:
        inputs["interpolate_pos_encoding"] = True
        notes.append(
            f"The prepared image is {size[0]}×{size[1]} pixels, not the {built[0]}×{built[1]} the model was "
            "built for: its position embeddings are interpolated (transformers' interpolate_pos_encoding)."
        )
    prefix = prefix_labels(handle.model)
    tokens = prefix + [f"p{r},{c}" for r in range(grid[0]) for c in range(grid[1])]
    special = [True] * len(prefix) + [False] * (grid[0] * grid[1])
    info = ImageInfo(
        name=name, pixels=_pixels(handle.tokenizer, pixel_values[0]), grid=grid, patch=patch, prefix=len(prefix)
    )
    return inputs, tokens, special, info


def _pixels(processor, values: torch.Tensor) -> np.ndarray:
    """``[3, H, W]`` processor output → ``[H, W, 3]`` uint8, the normalisation and rescaling undone."""
    x = values.detach().float().cpu()
    if getattr(processor, "do_normalize", False):
        mean = torch.tensor(processor.image_mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(processor.image_std, dtype=torch.float32).view(-1, 1, 1)
        x = x * std + mean
    scale = getattr(processor, "rescale_factor", 1 / 255) if getattr(processor, "do_rescale", True) else 1.0
    array = (x / scale).clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).numpy().copy()
    array.setflags(write=False)
    return array


def image_paths(folder: str | Path) -> list[str]:
    """The image files of a folder (by suffix, sorted by name), for corpus mode.

    Raises:
        ImageError: not a folder, or no image in it.
    """
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise ImageError(f"'{folder}' is not a folder")
    found = sorted(str(p) for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not found:
        raise ImageError(f"'{folder}' holds no image ({', '.join(SUFFIXES)})")
    return found
