"""Spectral control (Dovonon, Bronstein & Kusner 2024) as a what-if on a pretrained model.

Each head's ``M = W_O^h W_V^h = P Λ P⁻¹`` gets a new spectrum ``f(Λ)`` on the same eigenbasis
through ``W_O'^h = P f(Λ) Λ⁻¹ P⁻¹ W_O^h``, so that ``W_O'^h W_V^h = P f(Λ) P⁻¹``:

- ``clip-negative``: ``f(λ) = −min(|λ|, 1)``, a real spectrum in [−1, 0), the paper's Λ = −ψ²
  clipped, which avoids smoothing;
- ``clip-positive``: ``f(λ) = +min(|λ|, 1)``, real in (0, 1], Λ = +ψ² clipped, which guarantees it;
- ``flip``: ``f(λ) = −Re λ + i Im λ`` (real parts negated, imaginary parts kept);
- ``identity``: the model's own weights.

The clip modes keep each eigenvalue's modulus (capped at 1) and drop its phase: a pretrained
head's eigenvalues are mostly complex, and acting on real parts alone would leave them mostly
imaginary, so the head would not have the spectrum the mode names (on MiniLM 28 of 72 heads
still smoothed after such a clip-negative). SmoothViz's own choice of a real spectrum on the same
eigenbasis; the paper's ``H = V Λ Vᵀ`` would also replace the eigenvectors by orthogonal ones.
Every f maps a conjugate pair to a conjugate pair (the clips to one real value twice), so
``P f(Λ) Λ⁻¹ P⁻¹`` is real and so are the new weights. The model computes something else
afterwards: the UI says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from smoothviz.mitigations.base import Mitigation, ModelContext, Param
from smoothviz.model.capture import Intervention
from smoothviz.model.weights import value_output_product

MODES = ("clip-negative", "clip-positive", "flip", "identity")


def spectrum_map(eig: torch.Tensor, mode: str) -> torch.Tensor:
    """f on complex eigenvalues ``[...]``: the real ∓min(|λ|, 1) of the clips, flip's −Re λ + i Im λ."""
    if mode == "flip":
        return torch.complex(-eig.real, eig.imag)
    if mode in ("clip-negative", "clip-positive"):
        magnitude = eig.abs().clamp_max(1.0)
        return torch.complex(-magnitude if mode == "clip-negative" else magnitude, torch.zeros_like(magnitude))
    return eig


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
    # P⁻¹ by numpy: torch 2.13's batched inverse fails ("Pivots given to lu_solve must all be greater
    # or equal to 1") on Gemma 3 270M's 18 × 4 heads of 256 once torch.set_num_threads has been
    # called, as every analysis and the app do.
    T = (P * ratio.unsqueeze(-2)) @ torch.from_numpy(np.linalg.inv(P.cpu().numpy())).to(P.device)
    T = T.real  # imaginary parts cancel between conjugate pairs (up to rounding)
    L, d, hd = w_o.shape
    dh = hd // heads
    o = w_o.double().reshape(L, d, heads, dh).permute(0, 2, 1, 3)  # [L, h, d, dh]
    new = o @ T.transpose(-1, -2)
    return new.permute(0, 2, 1, 3).reshape(L, d, hd).to(w_o.dtype)


@dataclass(frozen=True)
class Spectral(Mitigation):
    name = "spectral"
    token_wise = True
    caveat = "Spectral control also changes what the model computes."
    in_forward = True
    NEUTRAL = {"mode": "identity"}
    summary = (
        "A what-if after Dovonon et al. 2024: give each head's W_O W_V a new spectrum on its own eigenbasis. "
        "clip-negative: the real −min(|λ|, 1), in [−1, 0), so no head smooths; clip-positive: +min(|λ|, 1), "
        "in (0, 1], so every head smooths; flip: real parts negated. Keeping the eigenbasis and the moduli "
        "is SmoothViz's choice; the model then computes something else."
    )
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
