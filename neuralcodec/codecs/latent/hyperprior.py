"""Factorized, Gaussian-conditional and hyperprior latent codecs (Balle 2017/2018, Minnen 2018).

::

    FactorizedLatent     x_int = round(x)  ->  stream  (table = channel)           -> x_int
    GaussianLatent       v = round(y - mean) -> stream (table = scale bin)         -> v + mean
    HyperpriorLatent     z = h_a(y) --FactorizedLatent("z")--> z_int
                         condition = h_s_exact(z_int)  --main (conditional) codec--> y_hat

The hyper-synthesis given to ``HyperpriorLatent`` must be exact integer arithmetic (the frozen
``FixedPointNet``s): it selects the decoder's CDFs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from neuralcodec.entropy.tables import CodingTables

from .base import ConditionalLatentCodec, LatentCodec, LatentContext, round_to_int32
from .sinks import Sinks


def channel_indexes(shape: tuple[int, ...]) -> np.ndarray:
    """Table index of every element of a (B, C, H, W) latent: its channel (C order, int32)."""
    if len(shape) != 4:
        raise ValueError(f"expected a (B, C, H, W) shape, got {tuple(shape)}")
    ids = np.arange(shape[1], dtype=np.int32)[None, :, None, None]
    return np.ascontiguousarray(np.broadcast_to(ids, tuple(shape))).reshape(-1)


class FactorizedLatent(LatentCodec):
    """Each channel coded with its own frozen table; returns the integer latent (int32 tensor)."""

    def __init__(self, tables: CodingTables, stream: str):
        self.tables, self.stream = tables, stream

    def code(self, sinks: Sinks, latent: torch.Tensor | None, ctx: LatentContext) -> torch.Tensor:
        if len(ctx.shape) != 4 or ctx.shape[1] != self.tables.num_tables:
            raise ValueError(f"{self.stream}: shape {ctx.shape} does not fit the tables")
        values = None if latent is None else round_to_int32(latent)
        v = sinks[self.stream].code(channel_indexes(ctx.shape), self.tables, values)
        return torch.from_numpy(v.reshape(ctx.shape))


class GaussianLatent(ConditionalLatentCodec):
    """``y`` around integer-derived means, table chosen by an exact scale index.

    The condition is ``(scale indexes (flat int32), means (float64, the latent's shape))``.
    """

    def __init__(self, tables: CodingTables, stream: str = "y"):
        self.tables, self.stream = tables, stream

    def code(self, sinks, latent, ctx, condition) -> torch.Tensor:
        indexes, means = condition
        values = None if latent is None else round_to_int32(latent.double() - means)
        v = sinks[self.stream].code(indexes, self.tables, values)
        return (torch.from_numpy(v.reshape(means.shape)).double() + means).float()


class HyperpriorLatent(LatentCodec):
    """Side latent ``z`` (factorized) whose exact decoding conditions the main latent's codec.

    ``analysis(y, qi)`` -> float ``z`` (encoder only); ``synthesis(z_int, qi)`` -> the condition
    of ``main`` (exact); ``side_shape(y shape)`` -> ``z``'s shape.
    """

    def __init__(
        self,
        side: FactorizedLatent,
        analysis: Callable[[torch.Tensor, int], torch.Tensor],
        synthesis: Callable[[torch.Tensor, int], Any],
        main: ConditionalLatentCodec,
        side_shape: Callable[[tuple[int, ...]], tuple[int, ...]],
    ):
        self.side, self.main = side, main
        self.analysis, self.synthesis, self.side_shape = analysis, synthesis, side_shape

    def code(self, sinks: Sinks, latent: torch.Tensor | None, ctx: LatentContext) -> Any:
        qi = ctx.quality_index
        z = None if latent is None else self.analysis(latent, qi)
        z_int = self.side.code(sinks, z, replace(ctx, shape=self.side_shape(ctx.shape)))
        return self.main.code(sinks, latent, ctx, self.synthesis(z_int, qi))
