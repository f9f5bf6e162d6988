"""The lab model: a small, configurable deep transformer for teaching over-smoothing.

Real checkpoints are shallow and trained; the theory (docs/SCIENCE.md §4) is about depth. The lab is
untrained: its weights come from ``LabConfig.seed`` through a local generator, so a config always
builds the same model. Its input is a real model's embedding output ``[1, n, d_in]``. Module
names (``layers.i.attn.v``, ``.attn.o``, ``.ln1``, ``.ln2``) are those of the ``"lab"`` ArchSpec.

Measured (seeds 0-2, 27-token MiniLM embeddings and the Gaussian input of tests/test_lab.py):
- pure attention (``residual=False``, no MLP, no LayerNorm): ``dm_rel`` ~0.97, ~0.5-0.8, ~5e-3,
  then ~1e-7 (float32's floor) from layer 3 on: the doubly exponential collapse of Dong et al.;
- residual, no LayerNorm, ``value_spectrum="positive"``: ``cosine_mean`` ~0.05 -> ~0.6 (layer 8)
  -> 0.98 (16) -> 1.00 (32); ``"negative"``: never above its layer-0 value, about -0.03 deep down;
- the default config: ~0.05 -> 0.2-0.45 (8) -> 0.5-0.8 (16) -> 0.93-0.99 (32).
Without LayerNorm norms grow (positive spectrum: mean token norm ~3e3 at layer 32, entries ~1e7
at depth 64 and width 1024), far from float32's limit; no rescaling is done inside blocks.
With zero biases and no MLP, ``ln_sign="negative"`` under post-LN only flips the sign of every
hidden state (attention logits are quadratic), so the metrics equal the positive sign's.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from types import SimpleNamespace

import torch
from torch import nn

# Numeric keys -> inclusive (min, max); string and bool keys -> allowed values. A UI builds its
# sliders and select boxes from these two tables, and __post_init__ validates against them.
LIMITS: dict[str, tuple[float, float]] = {
    "depth": (1, 64),
    "width": (8, 1024),
    "heads": (1, 16),
    "temperature": (0.05, 20.0),
    "seed": (0, 2**31 - 1),
}
CHOICES: dict[str, tuple] = {
    "residual": (True, False),
    "layernorm": ("none", "pre", "post"),
    "ln_sign": ("positive", "negative"),
    "mlp": (False, True),
    "value_spectrum": ("random", "positive", "negative"),
}
_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}

QK_GAIN = 1.0  # q, k weight std = QK_GAIN / sqrt(width): attention logits of std ~1 at layer 0
VO_GAIN = 0.7  # v, o weight std = VO_GAIN / sqrt(width) for value_spectrum="random"
PSI_STD = 0.5  # psi ~ N(0, PSI_STD^2) for the positive/negative value spectra
MLP_GAIN = 0.5  # MLP weight std = MLP_GAIN / sqrt(fan_in): a modest update per block


@dataclass(frozen=True)
class LabConfig:
    """Every knob of the lab model; validated once, in ``__post_init__``.

    The defaults (32 layers, width 64, residual, no LayerNorm, random values) smooth visibly but
    gradually over depth; ``residual=False`` shows the fast collapse, ``value_spectrum`` the
    Dovonon et al. switch. ``temperature`` divides the attention logits (low = sharper).
    """

    depth: int = 32
    width: int = 64
    heads: int = 4
    residual: bool = True
    layernorm: str = "none"
    ln_sign: str = "positive"
    mlp: bool = False
    value_spectrum: str = "random"
    temperature: float = 1.0
    seed: int = 0

    def __post_init__(self):
        for key, (lo, hi) in LIMITS.items():
            value, real = getattr(self, key), key == "temperature"
            number = isinstance(value, (int, float) if real else int) and not isinstance(value, bool)
            if not (number and lo <= value <= hi):  # NaN fails the comparison too
                kind = "a number" if real else "an integer"
                raise ValueError(f"lab {key} must be {kind} in {lo}..{hi}, got {value!r}")
        object.__setattr__(self, "temperature", float(self.temperature))
        for key, allowed in CHOICES.items():
            value = getattr(self, key)
            # `True in (1, 0)` holds in Python, so compare types too: 1 is not a valid bool.
            if not any(value == a and type(value) is type(a) for a in allowed):
                raise ValueError(f"lab {key} must be one of {', '.join(map(str, allowed))}, got {value!r}")
        if self.width % self.heads:
            raise ValueError(f"lab width must be divisible by heads ({self.heads}), got {self.width}")

    @classmethod
    def from_strings(cls, pairs: dict[str, str]) -> "LabConfig":
        """Build a config from CLI ``KEY=VALUE`` strings, e.g. ``{"depth": "16", "mlp": "yes"}``.

        Raises:
            ValueError: an unknown key (the message lists the allowed ones), a value that does
                not parse, or one outside its limits.
        """
        types = {f.name: f.default for f in fields(cls)}
        kwargs = {}
        for key, text in pairs.items():
            if key not in types:
                raise ValueError(f"unknown lab key {key!r}; allowed: {', '.join(types)}")
            kind, text = type(types[key]), str(text).strip()
            try:
                kwargs[key] = _BOOLS[text.lower()] if kind is bool else kind(text)
            except (KeyError, ValueError):
                expected = "true/false/yes/no/1/0" if kind is bool else f"a {kind.__name__}"
                raise ValueError(f"lab {key} must be {expected}, got {text!r}") from None
        return cls(**kwargs)

    def to_dict(self) -> dict:
        """The fields as a plain dict (JSON-ready; a cache key with ``sorted(items())``)."""
        return asdict(self)


@dataclass
class LabOutput:
    """What :meth:`LabModel.forward` returns.

    Attributes:
        hidden_states: ``depth + 1`` tensors ``[1, n, width]``; index 0 is ``proj(inputs_embeds)``.
        attentions: ``depth`` tensors ``[1, heads, n, n]``, rows sum to 1.
    """

    hidden_states: tuple[torch.Tensor, ...]
    attentions: tuple[torch.Tensor, ...]


class LabProjection(nn.Module):
    """A fixed isometry ``d_in -> width`` followed by one per-sentence scale.

    The scale makes the mean squared entry 1 (as after a LayerNorm), so the lab behaves the same
    whatever the source model's embedding norm. Every metric of docs/SCIENCE.md §2 is scale-invariant.
    """

    def __init__(self, d_in: int, width: int, generator: torch.Generator):
        super().__init__()
        if d_in == width:
            weight = torch.eye(width)
        else:  # orthonormal rows (d_in > width) or columns (d_in < width), stored as [width, d_in]
            q, _ = torch.linalg.qr(torch.randn(max(d_in, width), min(d_in, width), generator=generator))
            weight = q if width > d_in else q.T
        self.register_buffer("weight", weight.contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[b, n, d_in] -> [b, n, width]``."""
        y = x @ self.weight.T
        return y / y.pow(2).mean(dim=(-2, -1), keepdim=True).sqrt().clamp_min(1e-12)


class LabAttention(nn.Module):
    """Multi-head softmax attention; ``v`` and ``o`` are called as modules so hooks fire."""

    def __init__(self, width: int, heads: int, temperature: float):
        super().__init__()
        self.heads, self.temperature = heads, temperature
        self.q, self.k, self.v, self.o = (nn.utils.skip_init(nn.Linear, width, width) for _ in range(4))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [b, n, width] -> (out [b, n, width], attn [b, heads, n, n])``; ``mask [b, n]``: keys
        that may be attended to (the others get no weight, rows renormalised)."""
        b, n, width = x.shape
        d_h = width // self.heads

        def split(t):  # [b, n, width] -> [b, heads, n, d_h]
            return t.view(b, n, self.heads, d_h).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        logits = q @ k.transpose(-1, -2) / (math.sqrt(d_h) * self.temperature)
        if mask is not None:
            logits = logits.masked_fill(~mask.bool()[:, None, None, :], float("-inf"))
        attn = logits.softmax(dim=-1)
        ctx = (attn @ v).transpose(1, 2).reshape(b, n, width)
        return self.o(ctx), attn


class LabBlock(nn.Module):
    """One block: attention (+ MLP), residuals and LayerNorms placed as the config says."""

    def __init__(self, config: LabConfig):
        super().__init__()
        w = config.width
        self.pre, self.residual = config.layernorm == "pre", config.residual
        self.attn = LabAttention(w, config.heads, config.temperature)
        norm = (lambda: nn.Identity()) if config.layernorm == "none" else (lambda: nn.LayerNorm(w))
        self.ln1, self.ln2 = norm(), norm()
        self.mlp = (
            nn.Sequential(nn.utils.skip_init(nn.Linear, w, 4 * w), nn.GELU(), nn.utils.skip_init(nn.Linear, 4 * w, w))
            if config.mlp
            else None
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [b, n, width] -> (x_out [b, n, width], attn [b, heads, n, n])``."""
        if self.pre:
            a, attn = self.attn(self.ln1(x), mask)
            h = x + a if self.residual else a
            if self.mlp is not None:
                m = self.mlp(self.ln2(h))
                h = h + m if self.residual else m
            return h, attn
        a, attn = self.attn(x, mask)  # post-LN; "none" is post-LN with identities
        h = self.ln1(x + a if self.residual else a)
        if self.mlp is not None:
            m = self.mlp(h)
            h = self.ln2(h + m if self.residual else m)
        return h, attn


class LabModel(nn.Module):
    """The lab transformer. Deterministic given ``config.seed``; eval mode, float32, no dropout.

    Args:
        config: the lab's knobs.
        d_in: width of the embeddings fed in (the selected real model's hidden size).
    """

    def __init__(self, config: LabConfig, d_in: int):
        super().__init__()
        self.lab_config = config
        # The attribute names Hugging Face configs use, so generic code can read the lab too.
        self.config = SimpleNamespace(
            model_type="lab", num_hidden_layers=config.depth, num_attention_heads=config.heads, hidden_size=config.width
        )
        gen = torch.Generator().manual_seed(config.seed)
        self.proj = LabProjection(d_in, config.width, gen)
        self.layers = nn.ModuleList(LabBlock(config) for _ in range(config.depth))
        with torch.no_grad():
            for block in self.layers:
                _init_block(block, config, gen)
        self.requires_grad_(False)
        self.eval()

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        output_hidden_states: bool = True,
        output_attentions: bool = True,
        attention_mask: torch.Tensor | None = None,
    ) -> LabOutput:
        """``inputs_embeds [1, n, d_in]`` -> :class:`LabOutput` of all hidden states and attentions.

        The ``output_*`` flags are accepted for Hugging Face-style callers; both are always returned.
        """
        h = self.proj(inputs_embeds.to(torch.float32))
        hidden, attentions = [h], []
        for block in self.layers:  # depth is sequential; each block is batched over heads
            h, attn = block(h, attention_mask)
            hidden.append(h)
            attentions.append(attn)
        return LabOutput(tuple(hidden), tuple(attentions))


def _init_block(block: LabBlock, config: LabConfig, gen: torch.Generator) -> None:
    """Draw one block's weights from ``gen`` (never the global RNG); all biases are zero."""
    w, attn = config.width, block.attn
    for lin in (attn.q, attn.k, attn.v, attn.o):
        lin.bias.zero_()
    for lin in (attn.q, attn.k):
        lin.weight.copy_(torch.randn(w, w, generator=gen) * (QK_GAIN / math.sqrt(w)))
    if config.value_spectrum == "random":
        for lin in (attn.v, attn.o):
            lin.weight.copy_(torch.randn(w, w, generator=gen) * (VO_GAIN / math.sqrt(w)))
    else:
        # Dovonon et al.: H_h = W_V^h W_O^h = U_h diag(lam_h) U_h^T, heads on disjoint column
        # blocks of one orthogonal U. With W_V^h = U_h and W_O^h = diag(lam_h) U_h^T, and
        # nn.Linear computing x W^T: v.weight = U^T and o.weight = U diag(lam).
        u, _ = torch.linalg.qr(torch.randn(w, w, generator=gen))
        psi = torch.randn(w, generator=gen) * PSI_STD
        lam = psi.square().clamp(1e-6, 1.0)  # |psi| >= 1e-3, so lam is never exactly 0
        attn.v.weight.copy_(u.T)
        attn.o.weight.copy_(u * (-lam if config.value_spectrum == "negative" else lam))
    for ln in (block.ln1, block.ln2):
        if isinstance(ln, nn.LayerNorm) and config.ln_sign == "negative":
            ln.weight.fill_(-1.0)  # LayerNorm's bias stays 0, its default
    if block.mlp is not None:
        for lin in (block.mlp[0], block.mlp[2]):
            fan_in = lin.weight.shape[1]
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=gen) * (MLP_GAIN / math.sqrt(fan_in)))
            lin.bias.zero_()
