"""The ELIC codec: uneven channel groups x two-pass checkerboard, decoded bit-exactly.

A composition (``learned_image.LearnedImageCodec`` + latent codecs)::

    y --HyperpriorLatent--> z_int  (FactorizedLatent "z")
                            hyper_fx = h_s_fixed(z_int * zinv[q])          (exact integer network)
                            ŷ = CheckerboardGroupsLatent(hyper_fx)        (stream "y")
    x_hat = g_s(ŷ / gain[q]), cropped, uint8

Encoder, decoder and rate estimate run the same latent-codec code on the same integers; only
the source of the values differs (``codecs/latent/sinks.py``). Everything that selects a CDF is
integer arithmetic, so the decoded latent is identical on every machine and thread count.
Weights (with frozen tables and fixed-point nets) load from ``weights/elic.safetensors``; the
container records their sha256.
"""

from __future__ import annotations

import torch

from ..models.elic import INT_KIND, KIND, FrozenElic
from .base import register
from .latent import FactorizedLatent, HyperpriorLatent, LatentCodec
from .latent.checkerboard import CheckerboardGroupsLatent
from .learned_image import LearnedImageCodec, hyper_analysis, side_shape


@register
class ElicCodec(LearnedImageCodec):
    """ELIC-style space-channel context codec, variable rate, bit-exact decoding."""

    name = "elic"
    codec_id = 4
    rank = 1  # the float-synthesis original; elic-int4 is the default
    description = "uneven channel groups + checkerboard context (He et al. 2022), bit-exact"
    kinds = (KIND,)

    def latent_codec(self, frozen: FrozenElic) -> LatentCodec:
        return HyperpriorLatent(
            side=FactorizedLatent(frozen.z_tables, "z"),
            analysis=hyper_analysis(frozen),
            synthesis=frozen.hyper_fixed,
            main=CheckerboardGroupsLatent(frozen, "y"),
            side_shape=side_shape(frozen.config.n),
        )

    def model_bits(self, frozen: FrozenElic, y: torch.Tensor, qi: int) -> float:
        _, likelihoods = frozen.model.eval().code_forward(y, torch.tensor([qi]))
        return float(sum(-torch.log2(lik).sum() for lik in likelihoods.values()))


@register
class ElicIntCodec(ElicCodec):
    """``elic`` with every decoder network in integer arithmetic: identical pixels everywhere.

    Same latent coding as ``elic`` (``CheckerboardGroupsLatent`` over integer context networks,
    here ``IntNet``s with 8-bit weights) and an exact integer synthesis (``IntSynthesis``); the
    weights come from ``compress.elic`` applied to ``elic``'s (``weights/elic-int.safetensors``).
    """

    name = "elic-int"
    codec_id = 5
    rank = 1  # the default before elic-int4 (8-bit entropy networks: 0.9% less rate, 3.9 MB more)
    description = "elic with integer synthesis and 8-bit weights: identical pixels on every CPU"
    kinds = (INT_KIND,)


@register
class ElicInt4Codec(ElicIntCodec):
    """``elic-int`` with 4-bit entropy-model weights: the default image codec.

    The hyper-synthesis and the context networks (most of the file) keep their integer design
    but hold weights in -8..7, rounded with error compensation (``compress/gptq.py``) on the
    calibration crops; the file ships packed (``models/packing.py``), where 4-bit values in
    int8 storage take about half a byte each. Synthesis, analysis and tables are ``elic-int``'s.
    Built by ``python -m neuralcodec.compress.elic --net-weight-bits 4 --gptq``.
    """

    name = "elic-int4"
    codec_id = 9
    rank = 0  # the default image codec (docs/compression.md: the 4-bit trade-off)
    description = "elic-int with 4-bit GPTQ-rounded entropy-model weights: the smallest elic"
