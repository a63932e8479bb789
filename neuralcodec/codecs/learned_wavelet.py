"""The ``wavelet`` codec: a cheap encoder, an exact integer decoder.

New files are format 3 (``codecs/dyadic.py``): a colour rotation, a 6-level dyadic CDF 9/7
wavelet, per-band steps, context-coded bands and an integer post-filter; no learned transform
and no ``wavelet.safetensors``. Formats 1 and 2 (below) still decode.

Formats 1 and 2 are a composition (``learned_image.LearnedImageCodec`` + latent codecs), with the model of
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

import numpy as np
import torch

from ..entropy import rangecoder
from ..models.wavelet import KIND, FrozenWavelet
from . import dyadic
from .base import CodecError, Encoded, register
from .latent import HyperpriorLatent, LatentCodec
from .latent.spatial import SpatialAdaptiveLatent
from .learned_image import HyperpriorCodec, hyper_analysis, scale_condition, side_shape

# Bitstream formats (header field "format"; absent = 1):
#   1  every y channel coded with the hyperprior's frozen Gaussian tables (GaussianLatent)
#   2  spatial adaptive contexts (SpatialAdaptiveLatent): the thumbnail channels listed in the
#      header field "dc" by DPCM from decoded neighbours, the others with the hyperprior's scale
#      and a neighbour-size context. Same weights, same synthesis.
#   3  no learned transform (codecs/dyadic.py): a colour rotation, a 6-level dyadic CDF 9/7
#      wavelet, per-band steps and context-coded bands (stream "w"); the decoder is integer
#      arithmetic throughout and needs no weights. The default for new files.
FORMAT = 3
LATENT_FORMATS = (1, 2)
MAX_DC = 16
MAX_SIDE = 1 << 15
# A format-3 stream has at least one byte per MIN_STREAM_PIXELS pixels: the encoder pads it with
# zero bytes (the range decoder never reads them; only near-flat images need it), so a header
# claiming a larger image than its stream is refused before the image is allocated.
MIN_STREAM_PIXELS = 1024
FILTER_MODEL_ID = "wavelet-filter"  # format 3's model id: its weights are the post-filter
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
    description = "dyadic CDF 9/7 wavelet + context coding (cheap), integer decoder, bit-exact"
    write_format: int = FORMAT  # the format new files get (2: the learned packet codec)

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
        """sha256 of the bitstream format and the encoder's choices (stored benchmark points
        measured with other ones are stale)."""
        if self.write_format == 3:
            settings = {
                "format": 3,
                "deadzone": dyadic.DEADZONES,
                "steps": dyadic.QSTEP16,
                "rec": dyadic.REC16,
                "filter": getattr(dyadic.load_filter(), "sha256", None),
                "model_id": FILTER_MODEL_ID,
                "ctx": [
                    dyadic.CTX_W,
                    dyadic.PARENT_W,
                    dyadic.LUMA_W,
                    dyadic.SIBLING_W,
                    dyadic.EDGES,
                    dyadic.RATE,
                    dyadic.LEVEL_WEIGHT,
                ],
            }
        else:
            settings = {"format": self.write_format, "deadzone": DEADZONE}
        text = json.dumps(settings, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def weights_sha256(self, model_id: str | None = None) -> str:
        """sha256 of ``wavelet.safetensors``, or of the post-filter for its model id (format 3
        files name the filter as their weights; "" when it is not here)."""
        if model_id == FILTER_MODEL_ID:
            filt = dyadic.load_filter()
            return "" if filt is None else filt.sha256
        return super().weights_sha256(model_id)

    def header_fields(self, frozen: FrozenWavelet) -> dict:
        return {"format": 2, "dc": list(thumbnail_channels(frozen))}

    # -- format 3: no learned transform, no weights -------------------------------------------
    def _image(self, data: np.ndarray) -> np.ndarray:
        if data.ndim != 3 or data.shape[2] != 3 or data.dtype != np.uint8:
            raise CodecError(f"{self.name}: expects an h x w x 3 uint8 image")
        h, w = data.shape[:2]
        if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
            raise CodecError(f"{self.name}: image sides must be 1..{MAX_SIDE}, got {h} x {w}")
        return np.ascontiguousarray(data)

    def _encode3(self, data: np.ndarray, quality: int):
        qi = self.check_quality(quality) - self.quality_range[0]
        img = self._image(data)
        stream, q, levels = dyadic.encode(img, qi)
        h, w = img.shape[:2]
        stream += bytes(max(0, -(-h * w // MIN_STREAM_PIXELS) - len(stream)))
        header = {"shape": [h, w, 3], "quality": qi + self.quality_range[0], "format": 3}
        filt = dyadic.load_filter()
        if filt is not None:  # the decoder needs these exact filter weights
            header["model_id"] = FILTER_MODEL_ID
            header["weights_sha256"] = filt.sha256
        return Encoded(codec=self.name, header=header, streams={"w": stream}), q, levels, qi

    def encode(self, data: np.ndarray, quality: int) -> Encoded:
        if self.write_format != 3:
            return super().encode(data, quality)
        return self._encode3(data, quality)[0]

    def encode_with_reconstruction(self, data: np.ndarray, quality: int):
        if self.write_format != 3:
            return super().encode_with_reconstruction(data, quality)
        encoded, q, levels, qi = self._encode3(data, quality)
        h, w = data.shape[:2]
        return encoded, self._post_filter(encoded.header, dyadic.reconstruct(q, h, w, levels, qi))

    def estimate_bits(self, data: np.ndarray, quality: int) -> dict[str, float]:
        if self.write_format != 3:
            return super().estimate_bits(data, quality)
        from ..entropy import adaptive

        qi = self.check_quality(quality) - self.quality_range[0]
        q, levels = dyadic.quantise(self._image(data), qi)
        return {"w": adaptive.symbol_bits(*dyadic.encode_symbols(q, levels))}

    def estimated_bits(self, data: np.ndarray, quality: int) -> float:
        if self.write_format != 3:
            return super().estimated_bits(data, quality)
        return sum(self.estimate_bits(data, quality).values())

    def decode(self, encoded: Encoded) -> np.ndarray:
        hdr = encoded.header
        if hdr.get("format", 1) != 3:
            return super().decode(encoded)
        q = self.check_quality(int(hdr["quality"]))
        shape = hdr.get("shape")
        try:
            h, w = (int(v) for v in shape[:2])
        except (TypeError, ValueError):
            raise CodecError(f"{self.name}: bad image shape {shape!r}") from None
        if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
            raise CodecError(f"{self.name}: bad image shape {shape!r}")
        if "w" not in encoded.streams:
            raise CodecError(f"{self.name}: the file has no stream 'w'")
        if len(encoded.streams["w"]) * MIN_STREAM_PIXELS < h * w:
            raise CodecError(
                f"{self.name}: corrupt stream: {len(encoded.streams['w'])} bytes cannot hold a "
                f"{h} x {w} image"
            )
        qi = q - self.quality_range[0]
        levels = dyadic.levels_for(h, w, dyadic.MAX_LEVELS)
        try:
            bands = dyadic.decode_bands(encoded.streams["w"], h, w, levels)
        except rangecoder.DecodeError as exc:
            raise CodecError(f"{self.name}: corrupt stream: {exc}") from None
        except ValueError as exc:
            raise CodecError(f"{self.name}: corrupt stream: {exc}") from None
        return self._post_filter(hdr, dyadic.reconstruct(bands, h, w, levels, qi))

    def _post_filter(self, header: dict, img: np.ndarray) -> np.ndarray:
        """The learned post-filter of ``weights/wavelet-filter.safetensors`` when the header
        names it (model id ``wavelet-filter``, its sha256); files without it are not filtered."""
        want = header.get("weights_sha256")
        if not want:
            return img
        filt = dyadic.load_filter()
        if header.get("model_id") != FILTER_MODEL_ID or filt is None or filt.sha256 != want:
            raise CodecError(
                f"{self.name}: the file needs the post-filter weights {dyadic.FILTER_FILE} "
                f"with sha256 {str(want)[:64]!r}, which are not here"
            )
        return filt(img, int(header["quality"]) - self.quality_range[0])

    def latent_codec_for(self, frozen: FrozenWavelet, header: dict) -> LatentCodec:
        fmt = header.get("format", 1)
        if fmt == 1:  # files written before the spatial contexts: the hyperprior alone
            return super().latent_codec(frozen)
        if fmt != 2:
            raise CodecError(
                f"{self.name}: the file is in format {fmt!r}; this version decodes formats 1, "
                "2 and 3"
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
