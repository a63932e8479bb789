"""Uneven channel groups x two-pass checkerboard (ELIC, He et al. 2022), coded exactly.

::

    condition: hyper features at scale 2^ACT_BITS (exact integer hyper-synthesis)
    for group k = 0..G-1:      ch = channel_context_fixed(k, ŷ[<k])
      for pass in (anchors, non-anchors):
        (scale, mean) = pass_params_fixed(k, hyper, ch, ŷ[k] anchors | none)   (exact)
        v = round(y - mean) at the pass's positions  -> sink "y" (Gaussian tables, scale bin)
        ŷ = v * 2^ACT_BITS + mean                        (fixed point, exact)

The decoder runs the same loop with the values coming from the sink: one vectorised call per
(group, pass). ``frozen`` is a ``models.elic.FrozenElic``.

On a latent of even height and width (every image padded to the codec's stride) the loop works
on packed checkerboard halves (``models/checker.py``): the hyper features are split into the two
passes' positions once, a pass's values go straight into its half, and the second pass's spatial
context is computed at the non-anchors from the anchors alone. Same integers, same symbols.
"""

from __future__ import annotations

import numpy as np
import torch

from neuralcodec.models import checker
from neuralcodec.models.elic import FrozenElic, checkerboard_masks
from neuralcodec.models.fixedpoint import ACT_BITS

from .base import ConditionalLatentCodec, LatentContext, round_to_int32
from .sinks import Sinks


class CheckerboardGroupsLatent(ConditionalLatentCodec):
    def __init__(self, frozen: FrozenElic, stream: str = "y"):
        self.frozen, self.stream = frozen, stream

    def code(
        self, sinks: Sinks, latent: torch.Tensor | None, ctx: LatentContext, condition
    ) -> torch.Tensor:
        frozen, hyper_fx = self.frozen, condition
        b, _, h, w = hyper_fx.shape
        y64 = None if latent is None else latent.double()
        if checker.packable(h, w):
            return self._code_halves(sinks[self.stream], y64, hyper_fx)
        masks = [m.bool() for m in checkerboard_masks(h, w)]
        hats: list[torch.Tensor] = []
        for k, (s0, s1) in enumerate(frozen.config.group_slices()):
            hat = hyper_fx.new_zeros(b, s1 - s0, h, w)
            channel_fx = frozen.channel_context_fixed(k, hats)
            for p, mask in enumerate(masks):
                scales_fx, means_fx = frozen.pass_params_fixed(
                    k, hyper_fx, channel_fx, hat if p else None, mask[0, 0]
                )
                code_pass(sinks[self.stream], frozen, hat, mask, scales_fx, means_fx, y64, s0, s1)
            hats.append(hat)
        return (torch.cat(hats, 1) * 2.0**-ACT_BITS).float()

    def _code_halves(self, sink, y64: torch.Tensor | None, hyper_fx: torch.Tensor) -> torch.Tensor:
        """``code`` on packed checkerboard halves (H and W even): the same calls to ``sink``."""
        frozen = self.frozen
        b, _, h, w = hyper_fx.shape
        n = h * (w // 2)

        def at(t: torch.Tensor, p: int) -> torch.Tensor:
            return checker.half(t, p).reshape(b, t.shape[1], n)

        hyper_at = [at(hyper_fx, p) for p in (0, 1)]
        memos: list[dict] = [{}, {}]  # the hyper features' prepared inputs, per pass
        hat = hyper_fx.new_empty(b, frozen.config.m, h, w)
        for k, (s0, s1) in enumerate(frozen.config.group_slices()):
            channel_fx = frozen.channel_context_fixed(k, [hat[:, :s0]])
            halves: list[torch.Tensor] = []
            for p in (0, 1):
                scales_fx, means_fx = frozen.checker_params_fixed(
                    k,
                    hyper_at[p],
                    None if channel_fx is None else at(channel_fx, p),
                    halves[0] if p else None,
                    memos[p],
                )
                y_at = None if y64 is None else at(y64[:, s0:s1], p)
                v = code_values(sink, frozen, scales_fx, means_fx, y_at)
                halves.append(v.view(b, s1 - s0, h, w // 2))
            checker.merge(*halves, out=hat[:, s0:s1])
        return (hat * 2.0**-ACT_BITS).float()


def code_values(sink, frozen, scales_fx, means_fx, y_at) -> torch.Tensor:
    """Code one pass's values (``code_pass`` in the order of ``scales_fx`` / ``means_fx``,
    ``y_at`` the latent there when encoding) and return ŷ there, fixed point, that shape."""
    idx = frozen.model.y_conditional.scale_indexes_fixed(
        scales_fx.reshape(-1).numpy().astype(np.int64), ACT_BITS
    )
    means = means_fx.reshape(-1)
    values = None
    if y_at is not None:
        values = round_to_int32(y_at.reshape(-1) - means * 2.0**-ACT_BITS)
    v = sink.code(idx, frozen.y_tables, values)
    return (torch.from_numpy(v.astype(np.float64)) * 2.0**ACT_BITS + means).view(means_fx.shape)


def code_pass(sink, frozen, hat, mask, scales_fx, means_fx, y64, s0: int, s1: int) -> None:
    """Code the positions ``mask`` of channels ``[s0, s1)`` through ``sink`` with Gaussian
    tables chosen by the exact ``scales_fx`` around ``means_fx`` (both at 2^ACT_BITS, in mask
    order), and write the decoded values into ``hat`` (fixed point). ``y64``: the latent when
    encoding, None when decoding."""
    sel = mask.expand_as(hat)
    idx = frozen.model.y_conditional.scale_indexes_fixed(
        scales_fx.reshape(-1).numpy().astype(np.int64), ACT_BITS
    )
    means = means_fx.reshape(-1)
    values = None
    if y64 is not None:
        values = round_to_int32(y64[:, s0:s1][sel] - means * 2.0**-ACT_BITS)
    v = sink.code(idx, frozen.y_tables, values)
    hat[sel] = torch.from_numpy(v.astype(np.float64)) * 2.0**ACT_BITS + means
