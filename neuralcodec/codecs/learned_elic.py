"""The ELIC codec: uneven channel groups x two-pass checkerboard, decoded bit-exactly.

::

    encode:  RGB uint8 --pad to 64--> x --g_a * gain[q]--> y --h_a * zgain[q]--> z
             z_int = round(z)                                -> stream "z" (factorized tables)
             hyper = h_s_fixed(z_int * zinv[q])              (exact integer network)
             for group k = 0..G-1:   ch = channel_context_fixed(k, ŷ[<k])
               for pass in (anchors, non-anchors):
                 (scale, mean) = pass_params_fixed(k, hyper, ch, ŷ[k] anchors | none)
                 v = round(y - mean) at the pass's positions -> stream "y" (Gaussian tables)
                 ŷ = v * 2^10 + mean                         (fixed point, exact)
    decode:  the same loop with RangeDecoder.decode(indexes, tables) in place of round(y - mean),
             one vectorised call per (group, pass); x_hat = g_s(ŷ / gain[q]), cropped, uint8.

Encoder and decoder run the same function (``_code_latent_groups``) on the same integers; only
the source of the values differs. Everything that selects a CDF is integer arithmetic, so the
decoded latent is identical on every machine and thread count. Weights (with frozen tables and
fixed-point nets) load from ``weights/elic.safetensors``; the container records their sha256.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import numpy as np
import torch

from ..entropy import rangecoder
from ..entropy.cdf import information_bits
from ..entropy.tables import CodingTables
from ..models.elic import KIND, FrozenElic, checkerboard_masks, load
from ..models.fixedpoint import ACT_BITS
from .base import Codec, CodecError, Encoded, register
from .learned_image import IMAGE_EXTENSIONS, PAD_MULTIPLE, _pad, _to_tensor, synthesis_threads
from .weights import WeightsFile

# values(k, positions, scale-table indexes, means_fx) -> int32 values of that (group, pass)
SymbolSource = Callable[[int, torch.Tensor, np.ndarray, torch.Tensor], np.ndarray]


class _BitCounter:
    """Encoder-shaped sink that adds up the ideal code length instead of writing bytes."""

    def __init__(self) -> None:
        self.bits = 0.0

    def encode(self, values: np.ndarray, indexes: np.ndarray, tables: CodingTables) -> None:
        self.bits += information_bits(values, indexes, tables)


def _code_latent_groups(frozen: FrozenElic, hyper_fx: torch.Tensor, values: SymbolSource):
    """ŷ at scale 2^ACT_BITS, built group by group and pass by pass (anchors, non-anchors).

    ``values`` supplies the integers of each (group, pass): the encoder rounds ``y - mean`` and
    writes them, the decoder reads them. Everything else is shared, hence identical.
    """
    b, _, h, w = hyper_fx.shape
    masks = [m.bool() for m in checkerboard_masks(h, w)]
    hats: list[torch.Tensor] = []
    for k, (s0, s1) in enumerate(frozen.config.group_slices()):
        hat = hyper_fx.new_zeros(b, s1 - s0, h, w)
        channel_fx = frozen.channel_context_fixed(k, hats)
        for p, mask in enumerate(masks):
            scales_fx, means_fx = frozen.pass_params_fixed(
                k, hyper_fx, channel_fx, hat if p else None, mask[0, 0]
            )
            sel = mask.expand_as(hat)
            idx = frozen.model.y_conditional.scale_indexes_fixed(
                scales_fx.reshape(-1).numpy().astype(np.int64), ACT_BITS
            )
            means_sel = means_fx.reshape(-1)
            v = values(k, sel, idx, means_sel)
            hat[sel] = torch.from_numpy(v.astype(np.float64)) * 2.0**ACT_BITS + means_sel
        hats.append(hat)
    return torch.cat(hats, 1)


def _encoder_source(frozen: FrozenElic, y: torch.Tensor, sink) -> SymbolSource:
    slices = frozen.config.group_slices()
    y64 = y.double()

    def values(k, sel, idx, means_fx):
        s0, s1 = slices[k]
        v = torch.round(y64[:, s0:s1][sel] - means_fx * 2.0**-ACT_BITS)
        v = rangecoder.as_int32(v.clamp(-(2**31), 2**31 - 1).to(torch.int64).numpy(), "y")
        sink.encode(v, idx, frozen.y_tables)
        return v

    return values


def _decoder_source(frozen: FrozenElic, decoder: rangecoder.RangeDecoder) -> SymbolSource:
    def values(k, sel, idx, means_fx):
        return decoder.decode(idx, frozen.y_tables)

    return values


@register
class ElicCodec(WeightsFile, Codec):
    """ELIC-style space-channel context codec, variable rate, bit-exact decoding."""

    name = "elic"
    codec_id = 4
    modality = "image"
    quality_range = (1, 8)
    extensions = IMAGE_EXTENSIONS
    description = "uneven channel groups + checkerboard context (He et al. 2022), bit-exact"
    kind: ClassVar[str] = KIND
    load_weights = staticmethod(load)

    # -- coding ---------------------------------------------------------------------------
    def encode(self, data: np.ndarray, quality: int) -> Encoded:
        return self._encode(data, quality)[0]

    def encode_with_reconstruction(self, data: np.ndarray, quality: int):
        """``(Encoded, image the decoder will produce)``, from the encoder's own ŷ."""
        encoded, y_hat_fx, qi = self._encode(data, quality)
        frozen, _ = self.frozen()
        return encoded, self._synthesize(frozen, y_hat_fx, qi, data.shape[:2])

    def estimate_bits(self, data: np.ndarray, quality: int) -> dict[str, float]:
        """Ideal code length (bits) of each stream under the frozen tables, without coding."""
        frozen, _ = self.frozen()
        y, qi = self._analyse(frozen, data, quality)
        z_counter, y_counter = _BitCounter(), _BitCounter()
        self._code_latents(frozen, y, qi, z_counter, y_counter)
        return {"z": z_counter.bits, "y": y_counter.bits}

    def estimated_bits(self, data: np.ndarray, quality: int) -> float:
        """The float model's own rate for ``data``: ``-sum log2`` of the likelihoods of the
        latents rounded around the float means (what training minimises), to compare with the
        coded size."""
        frozen, _ = self.frozen()
        y, qi = self._analyse(frozen, data, quality)
        with torch.no_grad():
            _, likelihoods = frozen.model.eval().code_forward(y, torch.tensor([qi]))
        return float(sum(-torch.log2(lik).sum() for lik in likelihoods.values()))

    def decode(self, encoded: Encoded) -> np.ndarray:
        frozen, _ = self.frozen()
        hdr = encoded.header
        self.check_weights(hdr)
        q = self.check_quality(int(hdr["quality"]))
        h, w = (int(v) for v in hdr["shape"][:2])
        if h <= 0 or w <= 0:
            raise CodecError(f"{self.name}: bad image shape {hdr['shape']!r}")
        qi = q - self.quality_range[0]
        y_hw = ((h + -h % PAD_MULTIPLE) // 16, (w + -w % PAD_MULTIPLE) // 16)
        try:
            y_hat_fx = self._decode_latents(frozen, encoded.streams, qi, y_hw)
        except rangecoder.DecodeError as exc:
            raise CodecError(f"{self.name}: corrupt stream: {exc}") from None
        return self._synthesize(frozen, y_hat_fx, qi, (h, w))

    # -- pieces ---------------------------------------------------------------------------
    def _analyse(self, frozen: FrozenElic, data: np.ndarray, quality: int):
        qi = self.check_quality(quality) - self.quality_range[0]
        x = _to_tensor(data)
        with torch.no_grad():
            y = frozen.model.g_a(_pad(x)) * frozen.model.y_gain.gain(torch.tensor([qi]))
        return y, qi

    def _encode(self, data: np.ndarray, quality: int):
        frozen, sha = self.frozen()
        y, qi = self._analyse(frozen, data, quality)
        z_enc, y_enc = rangecoder.RangeEncoder(), rangecoder.RangeEncoder()
        y_hat_fx = self._code_latents(frozen, y, qi, z_enc, y_enc)
        h, w = data.shape[:2]
        header = {
            "model_id": frozen.meta.get("model_id", self.name),
            "weights_sha256": sha,
            "shape": [h, w, 3],
            "quality": qi + self.quality_range[0],
        }
        streams = {"z": z_enc.finish(), "y": y_enc.finish()}
        return Encoded(codec=self.name, header=header, streams=streams), y_hat_fx, qi

    def _code_latents(self, frozen: FrozenElic, y, qi: int, z_sink, y_sink) -> torch.Tensor:
        model = frozen.model
        with torch.no_grad():
            z = model.h_a(y) * model.z_gain.gain(torch.tensor([qi]))
        z_int = torch.round(z).to(torch.int32)
        z_idx = model.z_density.channel_indexes(tuple(z_int.shape))
        z_sink.encode(z_int.numpy().ravel(), z_idx, frozen.z_tables)
        hyper_fx = frozen.hyper_fixed(z_int, qi)
        return _code_latent_groups(frozen, hyper_fx, _encoder_source(frozen, y, y_sink))

    def _decode_latents(self, frozen: FrozenElic, streams, qi: int, y_hw) -> torch.Tensor:
        for name in ("z", "y"):
            if name not in streams:
                raise CodecError(f"{self.name}: missing stream {name!r}")
        z_shape = (1, frozen.config.n, y_hw[0] // 4, y_hw[1] // 4)
        z_idx = frozen.model.z_density.channel_indexes(z_shape)
        z_vals = rangecoder.decode(streams["z"], z_idx, frozen.z_tables)
        z_int = torch.from_numpy(z_vals.astype(np.int32).reshape(z_shape))
        hyper_fx = frozen.hyper_fixed(z_int, qi)
        decoder = rangecoder.RangeDecoder(streams["y"])
        return _code_latent_groups(frozen, hyper_fx, _decoder_source(frozen, decoder))

    @staticmethod
    def _synthesize(frozen: FrozenElic, y_hat_fx: torch.Tensor, qi: int, hw) -> np.ndarray:
        model = frozen.model
        h, w = hw
        with torch.no_grad():
            y_hat = (y_hat_fx * 2.0**-ACT_BITS).float()
            with synthesis_threads():
                x_hat = model.g_s(y_hat * model.y_gain.inverse(torch.tensor([qi])))
        img = x_hat[0, :, :h, :w].clamp(0, 1).mul(255).round().to(torch.uint8)
        return img.permute(1, 2, 0).contiguous().numpy()
