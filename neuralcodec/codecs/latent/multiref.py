"""Multi-reference latent coding (``models/mlic.py``): channel slices x two-pass checkerboard,
with local (5x5), channel and global (exact linear attention) contexts.

::

    condition: hyper features at 2^ACT_BITS (exact integer hyper-synthesis)
    for slice k = 0..G-1:
      ref = hyper (k = 0) | ŷ[k-1];  q, κ = φ(qk[k](ref))                 int64, every position
      ch = channel_context_fixed(k, ŷ[<k]);  g_inter = attn(q, κ, vi[k](ŷ[k-1]))   (k >= 1)
      anchors:      (scale, mean) = agg[k](hyper, ch, 0, g_inter, 0)         at anchor positions
      non-anchors:  sp = spatial[k](ŷ[k] anchors); g_intra = attn(q, κ|anchors, va[k](ŷ[k]|anchors))
                    (scale, mean) = agg[k](hyper, ch, sp, g_inter, g_intra)  at non-anchor positions
      v = round(y - mean) -> sink "y";  ŷ = v * 2^ACT_BITS + mean             (exact)

Every quantity above is an integer computed identically by encoder and decoder
(``FixedPointNet`` layers, int64 attention with a rounding integer division), one vectorised
call per (slice, pass). ``frozen`` is a ``models.mlic.FrozenMlic``.
"""

from __future__ import annotations

import torch

from neuralcodec.models.elic import _fixed_hat, checkerboard_masks
from neuralcodec.models.fixedpoint import ACT_BITS

from .base import ConditionalLatentCodec, LatentContext
from .checkerboard import code_pass
from .sinks import Sinks


class MultiReferenceLatent(ConditionalLatentCodec):
    def __init__(self, frozen, stream: str = "y"):
        self.frozen, self.stream = frozen, stream

    def code(
        self, sinks: Sinks, latent: torch.Tensor | None, ctx: LatentContext, condition
    ) -> torch.Tensor:
        frozen, hyper_fx = self.frozen, condition
        b, _, h, w = hyper_fx.shape
        y64 = None if latent is None else latent.double()
        masks = [m.bool()[0, 0] for m in checkerboard_masks(h, w)]
        where = [m.reshape(-1).nonzero().squeeze(1) for m in masks]

        def gather(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, t.shape[1], h * w)[:, :, idx]

        hyper_at = [gather(hyper_fx, idx) for idx in where]
        hats: list[torch.Tensor] = []
        for k, (s0, s1) in enumerate(frozen.config.group_slices()):
            c = s1 - s0
            hat = hyper_fx.new_zeros(b, c, h, w)
            q, kk = frozen.features_fixed(k, hyper_fx if k == 0 else hats[-1])
            channel_fx = frozen.channel_context_fixed(k, hats)
            inter = frozen.inter_fixed(k, q, kk, hats[-1]) if k else None
            for p, (mask, idx) in enumerate(zip(masks, where, strict=True)):
                n = idx.numel()
                parts = [hyper_at[p]]
                if channel_fx is not None:
                    parts.append(gather(channel_fx, idx))
                if p == 0:
                    parts.append(hyper_fx.new_zeros(b, 2 * c, n))
                else:
                    anchor = masks[0].to(torch.float64)
                    sp = frozen.spatial_fixed[k](_fixed_hat(hat) * anchor)
                    parts.append(gather(sp, idx))
                if inter is not None:
                    parts.append(inter[:, :, idx])
                if p == 0:
                    parts.append(hyper_fx.new_zeros(b, c, n))
                else:
                    anchors = gather(hat, where[0])
                    parts.append(frozen.intra_fixed(k, q[:, idx], kk[:, where[0]], anchors))
                scales_fx, means_fx = frozen.params_at(k, parts)
                code_pass(sinks[self.stream], frozen, hat, mask, scales_fx, means_fx, y64, s0, s1)
            hats.append(hat)
        return (torch.cat(hats, 1) * 2.0**-ACT_BITS).float()
