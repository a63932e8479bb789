"""The ``wavelet`` codec: fixed wavelet packets + a linear encoder, a shallow integer decoder.

A composition (``learned_image.LearnedImageCodec`` + latent codecs), with the model of
``models/wavelet.py``::

    encode:  RGB --5/3 packets (3 levels)--> 192 subbands at 1/8 --1x1 projection--> y (96)
             y * gain[q] --HyperpriorLatent--> z_int  (FactorizedLatent "z")
                                               means, scales = h_s_int(z_int * zinv[q])
                                               round(y - mean)  (GaussianLatent "y")
    decode:  y_hat --WaveletSynthesisInt (IntConv linear path + 3x3 ReLU stack, integer
             5/3 packet synthesis)--> uint8 pixels

The encoder runs the lifting, one 1x1 projection and the small hyper networks (a few hundred
multiply-adds per pixel, ``models.wavelet.encoder_macs``); the decoder is integer arithmetic
only after the entropy decoder, so pixels are identical on every machine and thread count.
Weights: ``weights/wavelet.safetensors`` (``python -m neuralcodec.compress.wavelet``).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache

import torch

from ..models.wavelet import KIND, FrozenWavelet
from .base import CodecError, register
from .latent import HyperpriorLatent, LatentCodec
from .latent.spatial import SpatialAdaptiveLatent
from .learned_image import HyperpriorCodec, hyper_analysis, scale_condition, side_shape

# Bitstream formats (header field "format"; absent = 1):
#   1  every y channel coded with the hyperprior's frozen Gaussian tables (GaussianLatent)
#   2  spatial adaptive contexts (SpatialAdaptiveLatent): the thumbnail channels listed in the
#      header field "dc" by DPCM from decoded neighbours, the others with the hyperprior's scale
#      and a neighbour-size context. Same weights, same synthesis.
FORMAT = 2
MAX_DC = 16
# Encoder-side dead zone of the non-thumbnail channels: |y - mean| is reduced by this before
# rounding (values within 0.6 of the mean become 0). Decoders do not need it. Chosen on the
# validation photos (6 photos, 8 qualities, BD-rate against no dead zone: 0.05 -2.2%,
# 0.1 -2.8%, 0.15 -2.3%, 0.2 -1.2%).
DEADZONE = 0.1


@lru_cache(maxsize=4)
def _thumbnail_channels(weight_bytes: bytes, shape: tuple[int, ...], levels: int) -> tuple:
    w = torch.frombuffer(bytearray(weight_bytes), dtype=torch.float32).reshape(shape).double()
    energy = w.square()
    dc = energy[:, :: 4**levels].sum(1)  # the all-low-pass subband of each colour
    return tuple(int(c) for c in torch.nonzero(dc > 0.5 * energy.sum(1)).reshape(-1))


def thumbnail_channels(frozen: FrozenWavelet) -> tuple[int, ...]:
    """Channels whose projection puts more than half its energy on the colours' low-pass
    subbands (LL at every level): the latent's thumbnail, coded by DPCM in format 2. Chosen by
    the encoder and written in the header, so the decoder never recomputes it."""
    w = frozen.model.g_a.project.weight.detach().float()[:, :, 0, 0].contiguous()
    return _thumbnail_channels(w.numpy().tobytes(), tuple(w.shape), frozen.config.levels)


@register
class WaveletCodec(HyperpriorCodec):
    """Wavelet packet + linear encoder, mean-scale hyperprior, exact integer decoder."""

    name = "wavelet"
    codec_id = 6
    rank = 5  # after the elic family, mbt-mean and the bmshj models: never the default
    kinds = (KIND,)
    description = "wavelet packets + linear encoder (cheap), integer decoder, bit-exact"

    def latent_stride(self, frozen: FrozenWavelet) -> int:
        return frozen.config.stride

    def _spatial_codec(self, frozen: FrozenWavelet, dc: tuple[int, ...]) -> LatentCodec:
        return HyperpriorLatent(
            side=self.side_codec(frozen),
            analysis=hyper_analysis(frozen),
            synthesis=scale_condition(frozen),
            main=SpatialAdaptiveLatent(dc, frozen.y_tables.num_tables, "y", DEADZONE),
            side_shape=side_shape(frozen.config.n),
        )

    def side_codec(self, frozen: FrozenWavelet):
        return super().latent_codec(frozen).side

    def latent_codec(self, frozen: FrozenWavelet) -> LatentCodec:
        return self._spatial_codec(frozen, thumbnail_channels(frozen))

    def settings_fingerprint(self) -> str:
        """sha256 of the bitstream format and the encoder's dead zone (stored benchmark points
        measured with other ones are stale)."""
        text = json.dumps({"format": FORMAT, "deadzone": DEADZONE}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def header_fields(self, frozen: FrozenWavelet) -> dict:
        return {"format": FORMAT, "dc": list(thumbnail_channels(frozen))}

    def latent_codec_for(self, frozen: FrozenWavelet, header: dict) -> LatentCodec:
        fmt = header.get("format", 1)
        if fmt == 1:  # files written before the spatial contexts: the hyperprior alone
            return super().latent_codec(frozen)
        if fmt != FORMAT:
            raise CodecError(
                f"{self.name}: the file is in format {fmt!r}; this version decodes formats 1 "
                f"and {FORMAT}"
            )
        dc = header.get("dc")
        m = frozen.config.m
        if (
            not isinstance(dc, list)
            or len(dc) > MAX_DC
            or not all(type(c) is int and 0 <= c < m for c in dc)
            or len(set(dc)) != len(dc)
        ):
            raise CodecError(f"{self.name}: bad thumbnail channel list {dc!r} in the header")
        return self._spatial_codec(frozen, tuple(dc))
