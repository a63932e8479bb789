"""The INR latent grids, coded along wavefronts with the exact integer ARM (Cool-chic style).

::

    grids of all levels --scatter--> one padded buffer (Layout), positions in wavefront order
    per latent: (mu, log b) = ARM_fixed(causal neighbours)      (exact integer MLP)
                table = scale bin(log b) x fraction bin(mu);  value = y - floor part of mu
    encoder / bit counter: one vectorised ARM call over all positions (the grids are known)
    decoder: the ARM decode kernel (``kernels.arm_decode``), symbol by symbol in C, or one
             wavefront per NumPy call (reference), reading the decoder sink's range decoder

Both directions compute the same integers (``models/inr_fixed.py``); the tables are the frozen
INR Laplace tables (``models/inr_tables.py``).
"""

from __future__ import annotations

import numpy as np

from neuralcodec import kernels
from neuralcodec.models import inr_fixed as fx

from .base import LatentCodec, LatentContext
from .sinks import EncoderSinks, Sinks


class WavefrontLatent(LatentCodec):
    """``latent``: the list of integer grids (one per level); returns the decoded list."""

    def __init__(self, nets: fx.FixedNets, layout: fx.Layout, stream: str = "latent", impl=None):
        self.nets, self.layout, self.stream, self.impl = nets, layout, stream, impl

    def code(self, sinks: Sinks, latent, ctx: LatentContext | None = None) -> list[np.ndarray]:
        sink, layout = sinks[self.stream], self.layout
        if sink.decoding:
            buf = np.zeros(layout.size, dtype=np.float64)
            kernels.arm_decode(
                sink.decoder,
                fx.prepared_tables(),
                buf,
                layout.positions,
                layout.levels,
                layout.offsets,
                [(w.astype(np.float64), b.astype(np.float64)) for w, b in self.nets.arm],
                self.nets.steps["arm"],
                fx.MLP_CODING,
                layout.starts,
                impl=self.impl,
            )
            return fx._gather(layout, buf)
        buf = fx._scatter(layout, latent)
        mu, ls = fx.arm_fixed(self.nets, buf[layout.context_index()])
        idx, m = fx.coding_indexes(mu, ls)
        values = buf[layout.positions].astype(np.int64) - m
        if np.abs(values).max(initial=0) >= 2**31 - 1:
            raise fx.InrStreamError("latent values outside int32")
        sink.code(idx, fx.coding_tables(), values.astype(np.int32))
        return [np.asarray(g, dtype=np.int64) for g in latent]


def encode_latents(nets, layout, grids) -> tuple[bytes, float]:
    """Integer grids -> (latent stream, its ideal code length in bits) in one pass."""
    codec = WavefrontLatent(nets, layout)
    sinks = EncoderSinks()
    codec.code(sinks, grids)
    bits = codec.bits(grids, None)[codec.stream]
    return sinks.finish()[codec.stream], bits


def decode_latents(nets, layout, data: bytes, impl=None) -> list[np.ndarray]:
    """Inverse of ``encode_latents``; ``impl="reference"`` forces the NumPy wavefront decoder."""
    return WavefrontLatent(nets, layout, impl=impl).decode({"latent": data}, None)
