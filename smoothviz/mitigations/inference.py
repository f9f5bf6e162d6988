"""Mitigations that change the forward pass: NeuTRENO, SoftDecay, AttnScale, ContraNorm, no-residual.

Each returns an :class:`~smoothviz.model.capture.Intervention` of pure functions; none touches the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from smoothviz.mitigations.base import Mitigation, MitigationError, Param
from smoothviz.model.capture import Intervention


def uniform_average(V: torch.Tensor, causal: bool) -> torch.Tensor:
    """A_DC V: each row the mean of the value rows it may attend to (all, or j ≤ i when causal)."""
    if causal:
        count = torch.arange(1, V.shape[-2] + 1, dtype=V.dtype, device=V.device).unsqueeze(-1)
        return V.cumsum(-2) / count
    return V.mean(-2, keepdim=True).expand_as(V)


def uniform_attention(n: int, causal: bool, dtype=torch.float32, device=None) -> torch.Tensor:
    """A_DC = 11ᵀ/n, or its causal counterpart (row i uniform over j ≤ i)."""
    if causal:
        tri = torch.tril(torch.ones(n, n, dtype=dtype, device=device))
        return tri / tri.sum(-1, keepdim=True)
    return torch.full((n, n), 1.0 / n, dtype=dtype, device=device)


@dataclass(frozen=True)
class NeuTRENO(Mitigation):
    name = "neutreno"
    token_wise = True
    in_forward = True
    NEUTRAL = {"lambda": 0.0}
    summary = "U_l = softmax(QKᵀ/√d_k)V_l + λ(V_0 − V_l) in every layer l ≥ 1 (Nguyen et al. 2023)."
    PARAMS = {"lambda": Param("float", 0.4, 0.0, 1.0, help="fidelity weight λ")}

    def intervention(self, ctx):
        lam = self["lambda"]

        def context(layer, out, v, v0):
            return out if layer < 1 or lam == 0 else out + lam * (v0 - v)

        return Intervention(context=context)


def soft_decay(H: torch.Tensor, alpha: float, eps: float = 1e-6) -> torch.Tensor:
    """Yan et al.'s singular value transform of ``H [..., n, d]``; α = 0 is the identity (its limit).

    f(σ) = −ln(1 − α(σ + α) + ε)/α, rescaled so that the largest singular value is unchanged.
    """
    if alpha == 0:
        return H
    U, S, Vh = torch.linalg.svd(H.double(), full_matrices=False)
    f = -torch.log(1 - alpha * (S + alpha) + eps) / alpha
    f = f * (S[..., :1] / f[..., :1])
    return ((U * f.unsqueeze(-2)) @ Vh).to(H.dtype)


@dataclass(frozen=True)
class SoftDecay(Mitigation):
    """Yan et al.'s SoftDecay at one of three places.

    ``last`` (default): the transform of the final hidden states, as the paper describes it;
    ``every``: each block's output, before the next block reads it; ``official``: where the
    authors' released code (tokenUni) puts it, inside the last block before its final LayerNorm,
    on the feed-forward output plus its residual, with the residual added again:
    ``LN(SVT(FFN(x) + x) + x)``, x the FFN's input. That placement exists only in post-LN blocks
    with a feed-forward sub-layer, and it has no neutral setting: even at α = 0 (SVT the
    identity) it computes LN(FFN(x) + 2x).
    """

    name = "softdecay"
    in_forward = True
    NEUTRAL = {"alpha": 0.0}
    summary = (
        "Map each singular value of a token matrix by f(σ) = −ln(1 − α(σ+α) + ε)/α (Yan et al. 2022). "
        "where=last: the final hidden states (the paper); every: each layer's output; official: inside "
        "the last block as the authors' released code does, LN(SVT(FFN(x) + x) + x) — the residual x "
        "counted twice, so it differs from the baseline even at α = 0."
    )
    PARAMS = {
        "alpha": Param("float", -0.6, -1.0, 0.0, help="α < 0; 0 switches it off (official: see its note)"),
        "where": Param("choice", "last", choices=("last", "every", "official")),
    }

    def intervention(self, ctx):
        alpha, last = self["alpha"], ctx.n_layers - 1
        if self["where"] == "official":
            missing = [
                why
                for why, bad in (
                    ("pre-LN blocks", ctx.layernorm == "pre"),
                    ("blocks without LayerNorm", ctx.layernorm == "none"),
                    ("no feed-forward sub-layer", not ctx.ffn),
                    ("no residual connections", not ctx.residual),
                )
                if bad
            ]
            if missing:
                raise MitigationError(
                    f"softdecay: where=official (inside the last block, before its final "
                    f"LayerNorm, on FFN(x) + x) needs post-LN blocks with a feed-forward "
                    f"sub-layer and residuals; this model has {' and '.join(missing)}: "
                    f"use where=last"
                )

            def final_ln(layer, s, x):
                return soft_decay(s, alpha) + x if layer == last else s

            return Intervention(final_ln=final_ln)
        every = self["where"] == "every"

        def block(layer, h):
            return soft_decay(h, alpha) if every or layer == last else h

        return Intervention(block=block)


@dataclass(frozen=True)
class AttnScale(Mitigation):
    name = "attnscale"
    in_forward = True
    NEUTRAL = {"omega": 0.0}
    summary = (
        "A′ = A_DC + (1 + ω)(A − A_DC): amplify attention's high-frequency part (Wang et al. 2022). "
        "A fixed ω stands in for the paper's learned per-head scale, which starts at 0 in training. On the "
        "frozen default model it raises smoothing instead (reference sentence, ω = 0.5: last-layer "
        "cosine_mean 0.325 → 0.362); A′ has negative entries, so its graphs are signed."
    )
    PARAMS = {"omega": Param("float", 0.5, 0.0, 100.0, help="ω ≥ 0")}

    def intervention(self, ctx):
        omega, causal = self["omega"], ctx.causal

        def attention(A):
            dc = uniform_attention(A.shape[-1], causal, A.dtype, A.device)
            return dc + (1 + omega) * (A - dc)

        if ctx.registry:
            # A_DC is the uniform row over the keys each query may see (the mask the model passed):
            # 1/(i+1) on row i of a causal model, never 1/n, which would mix in future tokens;
            # the same for a sliding window and padding.
            def probs(layer, A, visible):
                if omega == 0:
                    return A
                dc = visible.to(A.dtype).expand_as(A)
                dc = dc / dc.sum(-1, keepdim=True).clamp_min(1)
                return dc + (1 + omega) * (A - dc)

            return Intervention(probs=probs, attention=attention)

        def context(layer, out, v, v0):
            # A'V = (1 + ω) AV − ω A_DC V, computed on the heads' outputs without touching softmax.
            return out if omega == 0 else (1 + omega) * out - omega * uniform_average(v, causal)

        return Intervention(context=context, attention=attention)


def contra_norm(H: torch.Tensor, s: float, tau: float, causal: bool) -> torch.Tensor:
    """Guo et al.'s ContraNorm: (1 + s)H − s·softmax(ĤĤᵀ/τ)H, Ĥ the row-normalised H."""
    Hn = H / H.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    logits = Hn @ Hn.transpose(-1, -2) / tau
    if causal:  # a decoder token may not look ahead
        n = H.shape[-2]
        logits = logits.masked_fill(~torch.tril(torch.ones(n, n, dtype=torch.bool, device=H.device)), float("-inf"))
    return (1 + s) * H - s * torch.softmax(logits, dim=-1) @ H


@dataclass(frozen=True)
class ContraNorm(Mitigation):
    name = "contranorm"
    in_forward = True
    NEUTRAL = {"s": 0.0}
    summary = "After the attention residual, H ← (1+s)H − s·softmax(ĤĤᵀ/τ)H (Guo et al. 2023)."
    PARAMS = {
        "s": Param("float", 0.05, 0.0, 0.2, help="strength s"),
        "tau": Param("float", 1.0, 0.01, 100.0, help="temperature τ"),
    }

    def intervention(self, ctx):
        s, tau, causal, residual = self["s"], self["tau"], ctx.causal, ctx.residual

        def branch(layer, out, x):
            if s == 0:
                return out
            skip = x if residual else torch.zeros_like(out)
            return contra_norm(out + skip, s, tau, causal) - skip

        return Intervention(branch=branch)


@dataclass(frozen=True)
class NoResidual(Mitigation):
    name = "no-residual"
    token_wise = True
    in_forward = True
    NEUTRAL = {"residual": 1.0}
    summary = "Remove (or scale by β) the skip connection around attention (Dong et al. 2021)."
    PARAMS = {
        "residual": Param("float", 0.0, 0.0, 1.0, help="weight β kept on the skip; 0 removes it, 1 is the baseline")
    }

    def intervention(self, ctx):
        beta = self["residual"]
        if beta == 1 or not ctx.residual:
            return None

        def branch(layer, out, x):
            return out - (1 - beta) * x

        return Intervention(branch=branch)
