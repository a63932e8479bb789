"""The latent-codec protocol: one ``code`` method serves encoding, decoding and rate estimation.

::

    LatentCodec.code(sinks, latent | None, ctx)            -> reconstructed latent
    ConditionalLatentCodec.code(sinks, latent | None, ctx, condition) -> reconstructed latent

``latent`` is the encoder's float (or integer) latent, ``None`` when decoding; ``sinks`` decides
what happens to the symbols (``sinks.py``). ``encode``/``decode``/``bits`` are the three uses.
A codec is a stack of latent codecs: e.g. a hyperprior is a factorized codec for ``z`` whose
decoded value conditions another latent codec for ``y``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from neuralcodec.entropy import rangecoder

from .sinks import CounterSinks, DecoderSinks, EncoderSinks, Sinks

_I32 = (-(2**31), 2**31 - 1)


@dataclass(frozen=True)
class LatentContext:
    """What both sides know before a latent is coded: its shape and the quality level."""

    shape: tuple[int, ...]
    quality_index: int = 0


def round_to_int32(x: torch.Tensor) -> np.ndarray:
    """``round(x)`` as a flat int32 array (values beyond int32 saturate; the coder's escape
    code carries any int32)."""
    v = torch.round(x).clamp(*_I32).to(torch.int64).numpy().reshape(-1)
    return rangecoder.as_int32(v, "latent")


class LatentCodec:
    """Codes one latent; subclasses implement ``code``."""

    def code(self, sinks: Sinks, latent: torch.Tensor | None, ctx: LatentContext) -> Any:
        raise NotImplementedError

    def encode(self, latent: torch.Tensor, ctx: LatentContext) -> tuple[dict[str, bytes], Any]:
        """(streams, reconstruction the decoder will produce)."""
        sinks = EncoderSinks()
        hat = self.code(sinks, latent, ctx)
        return sinks.finish(), hat

    def decode(self, streams: Mapping[str, bytes], ctx: LatentContext) -> Any:
        return self.code(DecoderSinks(streams), None, ctx)

    def bits(self, latent: torch.Tensor, ctx: LatentContext) -> dict[str, float]:
        """Ideal code length of each stream under the frozen tables, without coding."""
        sinks = CounterSinks()
        self.code(sinks, latent, ctx)
        return sinks.bits


class ConditionalLatentCodec:
    """Codes one latent given a condition both sides computed (e.g. decoded hyper features)."""

    def code(
        self, sinks: Sinks, latent: torch.Tensor | None, ctx: LatentContext, condition: Any
    ) -> Any:
        raise NotImplementedError
