"""Learned image codecs of the hyperprior family, with bit-exact decoding.

::

    encode:  RGB uint8 --pad to 64--> x --g_a * gain[q]--> y --h_a * zgain[q]--> z
             z_int = round(z)                    -> stream "z"  (factorized tables, index = channel)
             (scale, mean) = h_s_fixed(z_int)    (exact integer network)
             y_int = round(y - mean)             -> stream "y"  (Gaussian tables, index = scale bin)
    decode:  z_int <- "z";  (scale, mean) <- h_s_fixed(z_int);  y_int <- "y"
             x_hat = g_s((y_int + mean) / gain[q]), cropped, rounded to uint8

Only the synthesis ``g_s`` runs in floating point; every value that selects a CDF is integer.
Weights (with their frozen tables) load from ``weights/<name>.safetensors``; the container
records their sha256 so a file is never decoded with other weights.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

import numpy as np
import torch
from torch.nn import functional as F

from ..entropy import rangecoder
from ..models.fixedpoint import ACT_BITS
from ..models.frozen import FrozenHyperprior, WeightsError, load
from .base import Codec, CodecError, Encoded, register
from .weights import WeightsFile, weights_dir

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm")

PAD_MULTIPLE = 64


# Fixed, so pixels never depend on the caller; 2 decodes kodim23 in 0.31 s against 0.49 s with 1.
SYNTHESIS_THREADS = 2


@contextmanager
def synthesis_threads() -> Iterator[None]:
    """Run the float synthesis on a fixed number of threads.

    The CPU convolution library picks kernels and reduction order by thread count, so without
    this the decoded pixels would depend on the caller's ``torch.set_num_threads`` (measured on
    Kodak: 1 and 8 threads vs 2-4 threads differ in a few pixels). Everything before the
    synthesis is exact integer arithmetic and does not need it.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(SYNTHESIS_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _pad(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = -h % PAD_MULTIPLE, -w % PAD_MULTIPLE
    if ph == 0 and pw == 0:
        return x
    if h == 1 or w == 1 or ph >= h or pw >= w:
        return F.pad(x, (0, pw, 0, ph), mode="replicate")
    return F.pad(x, (0, pw, 0, ph), mode="reflect")


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise CodecError("learned image codecs take HxWx3 uint8 RGB arrays")
    return torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)[None].float() / 255.0


class HyperpriorCodec(WeightsFile, Codec):
    """Shared coding path of the hyperprior family; subclasses name a kind and a weights file."""

    kind: ClassVar[str]
    modality = "image"
    extensions = IMAGE_EXTENSIONS
    load_weights = staticmethod(load)

    def frozen(self) -> tuple[FrozenHyperprior, str]:
        frozen, sha = super().frozen()
        if frozen.config.kind != self.kind:
            raise WeightsError(
                f"{self.weights_path} holds a {frozen.config.kind!r} model, not {self.kind!r}"
            )
        return frozen, sha

    # -- coding ---------------------------------------------------------------------------
    def encode(self, data: np.ndarray, quality: int) -> Encoded:
        q = self.check_quality(quality)
        frozen, sha = self.frozen()
        model, qi = frozen.model, torch.tensor([q - self.quality_range[0]])
        x = _to_tensor(data)
        with torch.no_grad():
            y = model.g_a(_pad(x)) * model.y_gain.gain(qi)
            streams = self._encode_latents(frozen, y, qi)
        h, w = data.shape[:2]
        header = {
            "model_id": frozen.meta.get("model_id", self.name),
            "weights_sha256": sha,
            "shape": [h, w, 3],
            "quality": q,
        }
        return Encoded(codec=self.name, header=header, streams=streams)

    def estimated_bits(self, data: np.ndarray, quality: int) -> float:
        """The float model's own rate for ``data``: ``-sum log2`` of the likelihoods of the
        rounded latents (what training minimises), to compare with the coded size."""
        q = self.check_quality(quality)
        frozen, _ = self.frozen()
        model, qi = frozen.model, torch.tensor([q - self.quality_range[0]])
        with torch.no_grad():
            y = model.g_a(_pad(_to_tensor(data))) * model.y_gain.gain(qi)
            if self.kind == "factorized":
                return float(-torch.log2(model.y_density.likelihood(torch.round(y))).sum())
            z_hat = torch.round(model.h_a(y) * model.z_gain.gain(qi))
            scales, means = model.hyper_params(z_hat, qi)
            y_hat = torch.round(y - means) + means
            bits = -torch.log2(model.y_conditional.likelihood(y_hat, scales, means)).sum()
            return float(bits - torch.log2(model.z_density.likelihood(z_hat)).sum())

    def decode(self, encoded: Encoded) -> np.ndarray:
        frozen, _ = self.frozen()
        hdr = encoded.header
        self.check_weights(hdr)
        q = self.check_quality(int(hdr["quality"]))
        h, w = int(hdr["shape"][0]), int(hdr["shape"][1])
        qi = torch.tensor([q - self.quality_range[0]])
        ph, pw = h + (-h % PAD_MULTIPLE), w + (-w % PAD_MULTIPLE)
        model = frozen.model
        with torch.no_grad():
            y_hat = self._decode_latents(frozen, encoded.streams, qi, (ph // 16, pw // 16))
            with synthesis_threads():
                x_hat = model.g_s(y_hat * model.y_gain.inverse(qi))
        img = x_hat[0, :, :h, :w].clamp(0, 1).mul(255).round().to(torch.uint8)
        return img.permute(1, 2, 0).contiguous().numpy()

    def _encode_latents(self, frozen, y, qi) -> dict[str, bytes]:
        model = frozen.model
        z = model.h_a(y) * model.z_gain.gain(qi)
        z_int = torch.round(z).to(torch.int32)
        z_idx = model.z_density.channel_indexes(tuple(z_int.shape))
        z_bytes = rangecoder.encode(z_int.numpy().ravel(), z_idx.ravel(), frozen.z_tables)
        scale_idx, means = self._hyper(frozen, z_int, qi)
        y_int = torch.round(y.double() - means).to(torch.int32)
        y_bytes = rangecoder.encode(y_int.numpy().ravel(), scale_idx.ravel(), frozen.y_tables)
        return {"z": z_bytes, "y": y_bytes}

    def _decode_latents(self, frozen, streams, qi, y_hw) -> torch.Tensor:
        model = frozen.model
        cfg = frozen.config
        z_shape = (1, cfg.n, y_hw[0] // 4, y_hw[1] // 4)
        z_idx = model.z_density.channel_indexes(z_shape)
        z_vals = rangecoder.decode(self._stream(streams, "z"), z_idx.ravel(), frozen.z_tables)
        z_int = torch.from_numpy(np.asarray(z_vals, dtype=np.int32).reshape(z_shape))
        scale_idx, means = self._hyper(frozen, z_int, qi)
        y_vals = rangecoder.decode(self._stream(streams, "y"), scale_idx.ravel(), frozen.y_tables)
        y_int = torch.from_numpy(np.asarray(y_vals, dtype=np.int32).reshape(means.shape))
        return (y_int.double() + means).float()

    @staticmethod
    def _stream(streams: dict[str, bytes], name: str) -> bytes:
        if name not in streams:
            raise CodecError(f"missing stream {name!r}")
        return streams[name]

    def _hyper(self, frozen, z_int, qi) -> tuple[np.ndarray, torch.Tensor]:
        """Exact integer hyper-synthesis -> (scale-table indexes, means as float64)."""
        zinv = torch.from_numpy(frozen.z_inverse_fixed[int(qi)].astype(np.float64))
        out = frozen.hs_fixed(z_int.double() * zinv[None, :, None, None])
        if self.kind == "mean-scale":
            scales_fx, means_fx = out.chunk(2, dim=1)
            means = means_fx * 2.0**-ACT_BITS
        else:
            scales_fx, means = out, torch.zeros_like(out)
        idx = frozen.model.y_conditional.scale_indexes_fixed(
            scales_fx.numpy().astype(np.int64), ACT_BITS
        )
        return np.asarray(idx, dtype=np.int32), means


class FactorizedCodec(HyperpriorCodec):
    """Factorized prior: y coded with one learned density per channel, no side information."""

    def _encode_latents(self, frozen, y, qi) -> dict[str, bytes]:
        y_int = torch.round(y).to(torch.int32)
        idx = frozen.model.y_density.channel_indexes(tuple(y_int.shape))
        return {"y": rangecoder.encode(y_int.numpy().ravel(), idx.ravel(), frozen.y_tables)}

    def _decode_latents(self, frozen, streams, qi, y_hw) -> torch.Tensor:
        shape = (1, frozen.config.m, *y_hw)
        idx = frozen.model.y_density.channel_indexes(shape)
        vals = rangecoder.decode(self._stream(streams, "y"), idx.ravel(), frozen.y_tables)
        return torch.from_numpy(np.asarray(vals, dtype=np.int32).reshape(shape)).float()


@register
class BmshjFactorized(FactorizedCodec):
    name = "bmshj-factorized"
    codec_id = 1
    kind = "factorized"
    quality_range = (1, 8)
    description = "factorized prior (Balle et al. 2017), variable rate"


@register
class BmshjHyperprior(HyperpriorCodec):
    name = "bmshj-hyper"
    codec_id = 2
    kind = "scale"
    quality_range = (1, 8)
    description = "scale hyperprior (Balle et al. 2018), variable rate"


@register
class MbtMean(HyperpriorCodec):
    name = "mbt-mean"
    codec_id = 3
    kind = "mean-scale"
    quality_range = (1, 8)
    description = "mean-scale hyperprior (Minnen et al. 2018), variable rate, bit-exact"


def manifest() -> dict:
    path = weights_dir() / "manifest.json"
    if not path.is_file():
        return {"models": []}
    return json.loads(path.read_text())
