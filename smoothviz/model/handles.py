"""Loaded models, shared by every caller: a small thread-safe LRU of :class:`Handle`.

A handle is read-only after loading; mitigations read its weights through
:meth:`Handle.context` and never write to it.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from smoothviz.model import capture, weights
from smoothviz.model.models import (
    ARCHITECTURES,
    DEFAULT_MODEL,
    LAB_MODEL,
    ArchSpec,
    ModelError,
    get_module,
    load,
    pick_device,
)

MAX_MODELS = int(os.environ.get("SMOOTHVIZ_MAX_MODELS", "4"))  # loaded checkpoints kept in memory
MAX_LABS = int(os.environ.get("SMOOTHVIZ_MAX_LABS", "8"))  # built lab models
# …and the bytes their weights may hold together, per kind (a 32×256 lab with MLPs is 100 MB,
# a 64×1024 one 3.2 GB): the least recently used go first; the newest always stays.
MAX_MODEL_BYTES = int(float(os.environ.get("SMOOTHVIZ_MODEL_CACHE_MB", "4096")) * 2**20)
MAX_LAB_BYTES = int(float(os.environ.get("SMOOTHVIZ_LAB_CACHE_MB", "1024")) * 2**20)
# Characters kept before tokenizing: tokenizing costs time and memory in the text's length, not
# in the tokens kept (20 MB took 70 s and 3 GB). 200,000 characters are ~40,000 English tokens,
# far beyond any model's maximum; a public server keeps fewer (the app's app/state/server.py).
MAX_CHARS = 200_000


def special_ids(tokenizer) -> set[int]:
    """The ids a tokenizer lists as special ([CLS], [SEP], <s>, </s>, GPT-2's <|endoftext|>, …), wherever
    they occur in the text. Its unknown token is a word the vocabulary lacks, not a marker, so it is
    left out, unless it is also the model's begin/end token (GPT-2: one id for all three)."""
    ids = set(tokenizer.all_special_ids)
    markers = {getattr(tokenizer, f"{k}_token_id", None) for k in ("bos", "eos", "cls", "sep")}
    if tokenizer.unk_token_id is not None and tokenizer.unk_token_id not in markers:
        ids.discard(tokenizer.unk_token_id)
    return ids


@dataclass(frozen=True)
class ModelContext:
    """What a mitigation may read about the model it is applied to (never the model itself).

    Attributes:
        n_layers, heads: the model's depth and head count.
        causal: attention rows are lower-triangular (GPT-2).
        residual: the attention sub-layer has a skip connection (False only for some lab models).
        w_v, w_o: ``[L, h*d_h, d]`` and ``[L, d, h*d_h]`` value and output weights (nn.Linear layout).
        b_o: ``[L, d]`` output projection biases (zeros where the model has none).
        model_name: the name the user chose (for fitted gates).
        layernorm: where the blocks' LayerNorms sit: ``post``, ``pre`` or ``none``.
        ffn: the blocks have a feed-forward sub-layer (``ArchSpec.ffn_in``; the lab's ``mlp``).
        registry: the model runs SmoothViz's attention function, so an intervention may act on
            the probabilities themselves (``Intervention.probs``); else only on the heads' outputs.
        derived: results that depend on the weights alone (a spectral what-if's new weights),
            computed once per model; recomputing one by two threads at once is harmless.
    """

    n_layers: int
    heads: int
    causal: bool
    residual: bool
    w_v: torch.Tensor
    w_o: torch.Tensor
    b_o: torch.Tensor
    model_name: str = "default"
    layernorm: str = "post"
    ffn: bool = True
    registry: bool = False
    derived: dict = field(default_factory=dict, compare=False, hash=False, repr=False)  # weight-only results


@dataclass(eq=False)
class Handle:
    """A loaded model with what the analysis needs to know about it.

    Attributes:
        name: what the user asked for (``default``, ``lab``, an id or a path).
        lab: the lab settings (dict) for the lab model, else ``None``.
        embedder: for the lab, the handle whose embedding output feeds it.
    """

    name: str
    device: str
    tokenizer: object
    model: torch.nn.Module
    spec: ArchSpec
    n_layers: int
    heads: int
    max_length: int
    lab: dict | None = None
    embedder: "Handle | None" = None
    nbytes: int = 0  # the weights' own bytes (a lab's embedder not included)
    _cache: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def causal(self) -> bool:
        """Attention rows are lower-triangular (a decoder)."""
        return self.spec.causal

    @property
    def layernorm(self) -> str:
        """Where the blocks' LayerNorms sit: ``post`` (after each residual sum), ``pre`` or ``none``."""
        if self.lab is not None:
            return self.lab["layernorm"]
        return "post" if self.spec.post_ln else "pre"

    def encode(
        self, text: str, max_tokens: int | None, notes: list, max_chars: int | None = None
    ) -> tuple[dict, list, list]:
        """Tokenise (truncating with a note) and return ``(model inputs, tokens, special mask)``.

        The text is first cut to ``max_chars`` characters (default :data:`MAX_CHARS`), with a note.
        """
        from smoothviz.model.vision import is_vision

        if is_vision(self):
            raise ModelError(
                f"model '{self.name}' takes images, not text: give it a picture "
                "(the main page's image box, --image, or image=…)"
            )
        limit = MAX_CHARS if max_chars is None else max(1, int(max_chars))
        if len(text) > limit:
            notes.append(
                f"The text was cut to its first {limit:,} characters: {len(text) - limit:,} characters were dropped."
            )
            text = text[:limit]
        source = self.embedder or self
        cap = source.max_length if max_tokens is None else min(max_tokens, source.max_length)
        total = len(source.tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"])
        enc = source.tokenizer(
            text, truncation=True, max_length=cap, return_tensors="pt", return_special_tokens_mask=True
        )
        kept = enc["input_ids"].shape[1]
        if kept == 0:
            raise ModelError("the text gives no tokens for this model: type some words")
        if total > kept:
            notes.append(f"The text was truncated to {kept} tokens: {total - kept} tokens were dropped.")
        marked = special_ids(source.tokenizer)  # added by the tokenizer, or typed in the text ("[SEP]")
        special = [
            bool(s) or i in marked
            for s, i in zip(enc.pop("special_tokens_mask")[0].tolist(), enc["input_ids"][0].tolist())
        ]
        tokens = source.tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist())
        inputs = {k: v.to(source.device) for k, v in enc.items()}
        if self.embedder is not None:
            with torch.inference_mode():
                out = source.model(**inputs, output_hidden_states=True)
            inputs = {"inputs_embeds": out.hidden_states[0].to(self.device)}
        return inputs, tokens, special

    def special_tokens(self) -> list[str]:
        """The tokens this model's tokenizer marks as special (see :func:`special_ids`); for a vision
        model, the tokens before its patches ([CLS], [DIST], [REG1] …)."""
        from smoothviz.model.vision import is_vision, prefix_labels

        if is_vision(self):
            return prefix_labels(self.model)
        tokenizer = (self.embedder or self).tokenizer
        return tokenizer.convert_ids_to_tokens(sorted(special_ids(tokenizer)))

    def context(self) -> ModelContext:
        """Weights and facts a mitigation may read (computed once)."""
        with self._lock:
            if "context" not in self._cache:
                w_v, w_o = weights.value_output_weights(self.model, self.spec, self.n_layers, self.heads)
                blocks = get_module(self.model, self.spec.layers)
                biases = []
                for layer in range(self.n_layers):
                    out = get_module(blocks[layer % len(blocks)], self.spec.out_proj)
                    b = getattr(out, "bias", None)
                    biases.append(b.detach() if b is not None else torch.zeros(w_o.shape[1], device=w_o.device))
                residual = True if self.lab is None else bool(self.lab["residual"])
                self._cache["context"] = ModelContext(
                    n_layers=self.n_layers,
                    heads=self.heads,
                    causal=self.causal,
                    residual=residual,
                    w_v=w_v,
                    w_o=w_o,
                    b_o=torch.stack(biases),
                    model_name=self.name,
                    layernorm=self.layernorm,
                    registry=capture.uses_registry(self.model),
                    ffn=self.spec.ffn_in is not None and (self.lab is None or bool(self.lab["mlp"])),
                )
            return self._cache["context"]

    def value_eigs(self, w_o: torch.Tensor | None = None) -> torch.Tensor:
        """Eigenvalues of each head's W_O W_V, ``[L, h, d_h]`` complex.

        ``w_o`` replaces the output weights (a spectral what-if); ``None`` means the model's own,
        whose eigenvalues are computed once.
        """
        if w_o is None:
            with self._lock:
                cached = self._cache.get("value_eigs")
            if cached is None:
                cached = self.value_eigs(self.context().w_o)
                with self._lock:
                    self._cache["value_eigs"] = cached
            return cached
        product = weights.value_output_product(self.context().w_v.double(), w_o.double(), self.heads)
        # One small LAPACK geev per head gains nothing from threads and loses much when cores are
        # shared: Gemma 3 270M's 72 heads of 256×256 took 76 s with 2 threads on a busy 2-core
        # machine, 6 s with one (scoped to this call; threadpoolctl restores the count after).
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            return torch.linalg.eigvals(product).cpu()

    def weight_norm(self) -> torch.Tensor:
        """Shi et al.'s s per layer (computed once)."""
        with self._lock:
            if "weight_norm" not in self._cache:
                self._cache["weight_norm"] = (
                    weights.block_weight_norm(self.model, self.spec, self.n_layers).double().cpu()
                )
            return self._cache["weight_norm"]

    def nonfinite_weights(self) -> list[tuple[str, str]]:
        """``(parameter name, "NaN" or "infinite")`` for every weight that is not finite, the
        embedder's included (checked once, only when a run has overflowed)."""
        with self._lock:
            if "nonfinite" not in self._cache:
                found = []
                for name, p in self.model.named_parameters():
                    if not torch.isfinite(p).all():
                        found.append((name, "NaN" if torch.isnan(p).any() else "infinite"))
                self._cache["nonfinite"] = found
            found = self._cache["nonfinite"]
        return found + (self.embedder.nonfinite_weights() if self.embedder is not None else [])

    def for_mitigation(self, mitigation) -> "Handle":
        """The model the mitigated run uses: this one, or on the lab the lab that the mitigation's
        :meth:`~smoothviz.mitigations.Mitigation.lab_settings` stands for (another lab)."""
        lab = None if self.lab is None else mitigation.lab_settings(self.lab)
        return self if lab is None else get_handle(LAB_MODEL, self.device, lab)


_handles: OrderedDict = OrderedDict()
_guard = threading.Lock()
_loading: dict = {}


def get_handle(name: str, device: str = "auto", lab: dict | None = None) -> Handle:
    """The loaded model for ``(name, device, lab settings)``, loading it once (thread-safe LRU)."""
    name = (name or "").strip()
    if not name:
        raise ModelError("no model given: use 'default', 'lab', a Hugging Face id or a local directory")
    device = pick_device(device)
    lab_config = _lab_config(lab) if name == LAB_MODEL else None
    key = (name, device, tuple(sorted(lab_config.to_dict().items())) if lab_config else None)
    with _guard:
        if key in _handles:
            _handles.move_to_end(key)
            return _handles[key]
        lock = _loading.setdefault(key, threading.Lock())
    with lock:  # one loader per key; others wait for it
        with _guard:
            if key in _handles:
                return _handles[key]
        handle = _build_lab(lab_config, device) if lab_config else _build(name, device)
        with _guard:
            _handles[key] = handle
            _evict(lab=lab_config is not None)
            _loading.pop(key, None)
        return handle


def _evict(lab: bool) -> None:
    """Drop the least recently used handles of one kind (labs and checkpoints apart) while there
    are more than its count or their weights weigh more than its bytes; never the newest."""
    count, budget = (MAX_LABS, MAX_LAB_BYTES) if lab else (MAX_MODELS, MAX_MODEL_BYTES)
    same = [k for k in _handles if (k[0] == LAB_MODEL) == lab]
    while len(same) > 1 and (len(same) > count or sum(_handles[k].nbytes for k in same) > budget):
        del _handles[same.pop(0)]


def cached_handles() -> int:
    """How many models are held in memory now (for tests and the deployment notes)."""
    with _guard:
        return len(_handles)


def _lab_config(lab):
    from smoothviz.model.lab import LabConfig

    if isinstance(lab, LabConfig):
        return lab
    try:
        return LabConfig.from_strings({k: str(v) for k, v in (lab or {}).items()})
    except ValueError as err:
        raise ModelError(str(err)) from None


def _build(name: str, device: str) -> Handle:
    tokenizer, model, spec = load(name, device)
    config = model.config
    capture.install(model, spec)
    limits = [
        getattr(config, "max_position_embeddings", None),
        getattr(config, "n_positions", None),
        getattr(tokenizer, "model_max_length", None),
    ]
    max_length = min([x for x in limits if isinstance(x, int) and 0 < x < 100_000] or [512])
    return Handle(
        name=name,
        device=device,
        tokenizer=tokenizer,
        model=model,
        spec=spec,
        n_layers=config.num_hidden_layers,
        heads=config.num_attention_heads,
        max_length=max_length,
        nbytes=_weight_bytes(model),
    )


def _build_lab(config, device: str) -> Handle:
    from smoothviz.model.lab import LabModel

    base = get_handle(DEFAULT_MODEL, device)
    d_in = base.model.config.hidden_size
    model = LabModel(config, d_in).to(device).eval()
    spec = ARCHITECTURES["lab"]
    capture.install(model, spec)
    return Handle(
        name=LAB_MODEL,
        device=device,
        tokenizer=base.tokenizer,
        model=model,
        spec=spec,
        n_layers=config.depth,
        heads=config.heads,
        max_length=base.max_length,
        lab=config.to_dict(),
        embedder=base,
        nbytes=_weight_bytes(model),
    )


def _weight_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
