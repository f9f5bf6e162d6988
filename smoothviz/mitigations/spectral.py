"""Spectral control (Dovonon, Bronstein & Kusner 2024) as a what-if on a pretrained model.

Each head's ``M = W_O^h W_V^h = P Λ P⁻¹`` gets a new spectrum ``f(Λ)`` through
``W_O'^h = P f(Λ) Λ⁻¹ P⁻¹ W_O^h``; f acts on real parts and keeps imaginary parts, so
conjugate pairs map alike and the weights stay real. The model computes something else
afterwards: the UI says so.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..capture import Intervention, value_output_product
from .base import Mitigation, ModelContext, Param

MODES = ("clip-negative", "clip-positive", "flip", "identity")


def spectrum_map(eig: torch.Tensor, mode: str) -> torch.Tensor:
    """f on complex eigenvalues: acts on the real part, keeps the imaginary part."""
    re, im = eig.real, eig.imag
    if mode == "flip":
        re = -re
    elif mode == "clip-negative":
        re = re.clamp(-1.0, 0.0)
    elif mode == "clip-positive":
        re = re.clamp(0.0, 1.0)
    return torch.complex(re, im)


def respectrum_out_weights(w_v: torch.Tensor, w_o: torch.Tensor, heads: int, mode: str) -> torch.Tensor:
    """New output weights ``[L, d, h*d_h]`` (nn.Linear layout) whose heads' M have spectrum f(Λ).

    With M = W_O W_V (right-multiplying, RESEARCH §3.4) and ``w_o[:, hs] = (W_O^h)ᵀ``:
    ``w_o'[:, hs] = w_o[:, hs] @ Tᵀ`` where ``T = P f(Λ) Λ⁻¹ P⁻¹``.
    """
    M = value_output_product(w_v.double(), w_o.double(), heads)  # [L, h, dh, dh]
    lam, P = torch.linalg.eig(M)
    f = spectrum_map(lam, mode)
    safe = lam.abs() > 1e-12
    ratio = torch.where(safe, f / torch.where(safe, lam, torch.ones_like(lam)), torch.ones_like(lam))
    T = (P * ratio.unsqueeze(-2)) @ torch.linalg.inv(P)
    T = T.real  # imaginary parts cancel between conjugate pairs (up to rounding)
    L, d, hd = w_o.shape
    dh = hd // heads
    o = w_o.double().reshape(L, d, heads, dh).permute(0, 2, 1, 3)  # [L, h, d, dh]
    new = o @ T.transpose(-1, -2)
    return new.permute(0, 2, 1, 3).reshape(L, d, hd).to(w_o.dtype)


@dataclass(frozen=True)
class Spectral(Mitigation):
    name = "spectral"
    in_forward = True
    NEUTRAL = {"mode": "identity"}
    summary = "Replace each head's W_O W_V spectrum by a clipped or flipped one (Dovonon et al. 2024)."
    PARAMS = {"mode": Param("choice", "clip-negative", choices=MODES)}

    def intervention(self, ctx):
        new = self.out_weights(ctx)
        if new is None:
            return None

        def out_weight(layer):
            return new[layer], ctx.b_o[layer]
        return Intervention(out_weight=out_weight)

    def lab_settings(self, lab: dict) -> dict | None:
        """On the lab, clipping is its value-spectrum switch (RESEARCH §4): another lab."""
        if self["mode"] not in ("clip-negative", "clip-positive"):
            return None
        return {**lab, "value_spectrum": "negative" if self["mode"] == "clip-negative" else "positive"}

    def out_weights(self, ctx: ModelContext) -> torch.Tensor | None:
        """The output weights the mitigated model uses (computed once per model and mode)."""
        mode = self["mode"]
        if mode == "identity":
            return None
        key = ("spectral", mode)
        if key not in ctx.derived:
            ctx.derived[key] = respectrum_out_weights(ctx.w_v, ctx.w_o, ctx.heads, mode)
        return ctx.derived[key]
