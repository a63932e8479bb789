"""The ``mlic`` codec: multi-reference entropy model on ``elic``'s transforms, exact decoding.

A composition (``learned_image.LearnedImageCodec`` + latent codecs)::

    y = g_a(x) * gain[q]                                       (elic's float analysis, encoder)
    y --HyperpriorLatent--> z_int (FactorizedLatent "z")
                            hyper_fx = h_s_fixed(z_int * zinv[q])           (exact)
                            ŷ = MultiReferenceLatent(hyper_fx)            (stream "y")
    x_hat = IntSynthesis(ŷ, q)                                 (elic-int's integer synthesis)

The latent's CDF indexes come from exact integer networks and the exact int64 linear
attention (``models/mlic.py``), and the pixels from ``elic-int``'s integer synthesis, so decoded
images are identical on every CPU, instruction set and thread count. ``weights/mlic.safetensors``
holds only what ``mlic`` adds to ``elic-int`` (aggregations, attention projections, 2.3 MB) and
names ``weights/elic-int.safetensors`` by sha256; the loader joins the two and refuses another
base. The header's ``weights_sha256`` is the ``mlic`` file's.
"""

from __future__ import annotations

import torch

from ..models.mlic import KIND, FrozenMlic, load
from .base import register
from .latent import FactorizedLatent, HyperpriorLatent, LatentCodec
from .latent.multiref import MultiReferenceLatent
from .learned_image import LearnedImageCodec, hyper_analysis, side_shape


@register
class MlicCodec(LearnedImageCodec):
    """Channel + local + global (linear attention) contexts, integer synthesis, bit-exact."""

    name = "mlic"
    codec_id = 7
    rank = 1  # after elic-int4 (the default); ties with elic and elic-int are broken by name
    description = "multi-reference entropy model (global linear-attention context) on elic"
    kinds = (KIND,)

    def latent_codec(self, frozen: FrozenMlic) -> LatentCodec:
        return HyperpriorLatent(
            side=FactorizedLatent(frozen.z_tables, "z"),
            analysis=hyper_analysis(frozen),
            synthesis=frozen.hyper_fixed,
            main=MultiReferenceLatent(frozen, "y"),
            side_shape=side_shape(frozen.config.n),
        )

    def model_bits(self, frozen: FrozenMlic, y: torch.Tensor, qi: int) -> float:
        _, likelihoods = frozen.model.eval().code_forward(y, torch.tensor([qi]))
        return float(sum(-torch.log2(lik).sum() for lik in likelihoods.values()))


# the loader joins the file to the elic-int file it names (and checks its sha256)
MlicCodec.load_weights = staticmethod(load)
