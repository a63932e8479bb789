"""Latent codecs: the composable pieces that turn latents into streams (see ``base``).

::

    sinks.py         EncoderSinks | DecoderSinks | CounterSinks   (one code path, three uses)
    base.py          LatentCodec / ConditionalLatentCodec protocol, LatentContext
    hyperprior.py    FactorizedLatent, GaussianLatent, HyperpriorLatent
    checkerboard.py  CheckerboardGroupsLatent (ELIC channel groups x checkerboard)
    categorical.py   CategoricalLatent (VQ / label indices, static or adaptive tables)
    wavefront.py     WavefrontLatent (INR latent grids, exact integer ARM, C decode kernel)
    spatial.py       SpatialAdaptiveLatent (hyperprior + causal neighbours, adaptive binary
                     contexts: the wavelet codec's format 2)
"""

from .base import ConditionalLatentCodec, LatentCodec, LatentContext, round_to_int32
from .categorical import CategoricalLatent
from .checkerboard import CheckerboardGroupsLatent
from .hyperprior import FactorizedLatent, GaussianLatent, HyperpriorLatent, channel_indexes
from .sinks import CounterSinks, DecoderSinks, EncoderSinks, Sink, Sinks

__all__ = [
    "CategoricalLatent",
    "CheckerboardGroupsLatent",
    "ConditionalLatentCodec",
    "CounterSinks",
    "DecoderSinks",
    "EncoderSinks",
    "FactorizedLatent",
    "GaussianLatent",
    "HyperpriorLatent",
    "LatentCodec",
    "LatentContext",
    "Sink",
    "Sinks",
    "channel_indexes",
    "round_to_int32",
]
