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

from ..models.wavelet import KIND, FrozenWavelet
from .base import register
from .learned_image import HyperpriorCodec


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
