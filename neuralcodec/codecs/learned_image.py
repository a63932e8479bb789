"""Learned image codecs: one composition for every transform-coding model, bit-exact decoding.

::

    encode:  RGB uint8 --pad to 64--> x --g_a * gain[q]--> y --latent codec--> streams
    decode:  streams --latent codec--> ŷ --g_s(ŷ / gain[q])--> cropped, rounded to uint8

``LearnedImageCodec`` owns the image side (padding, analysis, synthesis, header, weights check);
the latent coding is a stack of latent codecs (``codecs/latent``) built from the frozen weights:

    bmshj-factorized   FactorizedLatent("y")
    bmshj-hyper        HyperpriorLatent(z: FactorizedLatent, h_s exact, GaussianLatent (means 0))
    mbt-mean           HyperpriorLatent(z: FactorizedLatent, h_s exact, GaussianLatent)
    elic               HyperpriorLatent(z, h_s exact, CheckerboardGroupsLatent)  (learned_elic.py)

Encoding, decoding and the rate estimate run the same latent-codec code (with an encoder, a
decoder or a bit-counting sink). Only the synthesis ``g_s`` runs in floating point; every value
that selects a CDF is integer. Weights (with their frozen tables) load from
``weights/<name>.safetensors``; the container records their sha256 so a file is never decoded
with other weights.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch.nn import functional as F

from ..entropy import rangecoder
from ..models import frozen as frozen_protocol
from ..models.fixedpoint import ACT_BITS
from ..models.frozen import Frozen, FrozenHyperprior
from ..runtime import torch_threads
from .base import Codec, CodecError, Encoded, register
from .latent import (
    FactorizedLatent,
    GaussianLatent,
    HyperpriorLatent,
    LatentCodec,
    LatentContext,
)
from .weights import WeightsFile, weights_dir

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm")

PAD_MULTIPLE = 64
Y_STRIDE = 16  # g_a downsamples by 16, h_a by 4 more
Z_STRIDE = 4


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
    with torch_threads(SYNTHESIS_THREADS):
        yield


ANALYSIS_TILE = 64  # latent pixels per tile side (1024 x 1024 pixels at stride 16)
ANALYSIS_HALO = 4  # latent pixels of context; four 5x5 stride-2 layers reach about 2


def tiled_analysis(g_a, x: torch.Tensor, stride: int) -> torch.Tensor:
    """``g_a(x)`` for a padded image, tile by tile above ``ANALYSIS_TILE`` latent pixels a side
    (each tile with ``ANALYSIS_HALO`` latent pixels of context), so the encoder's memory is one
    tile's activations. Interior latents equal one pass's up to float rounding (the encoder's
    float analysis is not bit-exact anyway; the decoder never runs it)."""
    h, w = x.shape[-2] // stride, x.shape[-1] // stride
    t, halo = ANALYSIS_TILE, ANALYSIS_HALO
    if h <= t and w <= t:
        return g_a(x)
    out = None
    for r0 in range(0, h, t):
        for c0 in range(0, w, t):
            r1, c1 = min(r0 + t, h), min(c0 + t, w)
            a0, b0 = max(r0 - halo, 0), max(c0 - halo, 0)
            a1, b1 = min(r1 + halo, h), min(c1 + halo, w)
            part = g_a(x[..., stride * a0 : stride * a1, stride * b0 : stride * b1])
            if out is None:
                out = part.new_empty((x.shape[0], part.shape[1], h, w))
            out[..., r0:r1, c0:c1] = part[..., r0 - a0 : r1 - a0, c0 - b0 : c1 - b0]
    return out


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


def to_uint8_image(x_hat: torch.Tensor, h: int, w: int) -> np.ndarray:
    """(1, 3, H', W') float in [0, 1] -> the top-left HxWx3 uint8 image."""
    img = x_hat[0, :, :h, :w].clamp(0, 1).mul(255).round().to(torch.uint8)
    return img.permute(1, 2, 0).contiguous().numpy()


def latent_shape(channels: int, h: int, w: int, stride: int = Y_STRIDE) -> tuple[int, ...]:
    """Shape of the latent of an h x w image after padding to ``PAD_MULTIPLE``."""
    ph, pw = h + -h % PAD_MULTIPLE, w + -w % PAD_MULTIPLE
    return (1, channels, ph // stride, pw // stride)


def side_shape(channels: int) -> Callable[[tuple[int, ...]], tuple[int, ...]]:
    """``y`` shape -> ``z`` shape (h_a downsamples by ``Z_STRIDE``) with ``channels``."""
    return lambda shape: (shape[0], channels, shape[2] // Z_STRIDE, shape[3] // Z_STRIDE)


class LearnedImageCodec(WeightsFile, Codec):
    """Image side of every learned transform codec; subclasses build the latent codec."""

    kinds: ClassVar[tuple[str, ...]] = ()  # model kinds (frozen families) this codec decodes
    load_weights: ClassVar[Callable[[Path], Frozen]]
    modality = "image"
    extensions = IMAGE_EXTENSIONS
    quality_range = (1, 8)

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "kinds" in cls.__dict__:  # the weights loader accepts these kinds only
            cls.load_weights = staticmethod(partial(frozen_protocol.load, kinds=cls.kinds))

    def latent_codec(self, frozen: Frozen) -> LatentCodec:
        raise NotImplementedError

    def latent_stride(self, frozen: Frozen) -> int:
        """Down-sampling factor from the image to the main latent ``y``."""
        return Y_STRIDE

    def header_fields(self, frozen: Frozen) -> dict:
        """Header fields the encoder adds (a bitstream format and its parameters)."""
        return {}

    def latent_codec_for(self, frozen: Frozen, header: dict) -> LatentCodec:
        """The latent codec that decodes a file with this header (older formats included)."""
        return self.latent_codec(frozen)

    def model_bits(self, frozen: Frozen, y: torch.Tensor, qi: int) -> float:
        """The float model's own rate of ``y`` (what training minimises)."""
        raise NotImplementedError

    # -- coding ---------------------------------------------------------------------------
    def encode(self, data: np.ndarray, quality: int) -> Encoded:
        return self._encode(data, quality)[0]

    def encode_with_reconstruction(self, data: np.ndarray, quality: int):
        """``(Encoded, image the decoder will produce)``, from the encoder's own ŷ."""
        encoded, y_hat, qi = self._encode(data, quality)
        frozen, _ = self.frozen()
        return encoded, self._synthesize(frozen, y_hat, qi, data.shape[:2])

    def estimate_bits(self, data: np.ndarray, quality: int) -> dict[str, float]:
        """Ideal code length (bits) of each stream under the frozen tables, without coding."""
        frozen, _ = self.frozen()
        y, qi = self._analyse(frozen, data, quality)
        with torch.no_grad():
            return self.latent_codec(frozen).bits(y, LatentContext(tuple(y.shape), qi))

    def estimated_bits(self, data: np.ndarray, quality: int) -> float:
        """The float model's own rate for ``data``: ``-sum log2`` of the likelihoods of the
        rounded latents (what training minimises), to compare with the coded size."""
        frozen, _ = self.frozen()
        y, qi = self._analyse(frozen, data, quality)
        with torch.no_grad():
            return self.model_bits(frozen, y, qi)

    def decode(self, encoded: Encoded) -> np.ndarray:
        frozen, _ = self.frozen()
        hdr = encoded.header
        self.check_weights(hdr)
        q = self.check_quality(int(hdr["quality"]))
        h, w = (int(v) for v in hdr["shape"][:2])
        if h <= 0 or w <= 0:
            raise CodecError(f"{self.name}: bad image shape {hdr['shape']!r}")
        qi = q - self.quality_range[0]
        ctx = LatentContext(latent_shape(frozen.config.m, h, w, self.latent_stride(frozen)), qi)
        try:
            with torch.no_grad():
                y_hat = self.latent_codec_for(frozen, hdr).decode(encoded.streams, ctx)
        except rangecoder.DecodeError as exc:
            raise CodecError(f"{self.name}: corrupt stream: {exc}") from None
        return self._synthesize(frozen, y_hat, qi, (h, w))

    # -- pieces ---------------------------------------------------------------------------
    def _analyse(self, frozen: Frozen, data: np.ndarray, quality: int):
        qi = self.check_quality(quality) - self.quality_range[0]
        x = _to_tensor(data)
        with torch.no_grad():
            y = tiled_analysis(frozen.model.g_a, _pad(x), self.latent_stride(frozen))
            y = y * frozen.model.y_gain.gain(torch.tensor([qi]))
        return y, qi

    def _encode(self, data: np.ndarray, quality: int):
        frozen, sha = self.frozen()
        y, qi = self._analyse(frozen, data, quality)
        with torch.no_grad():
            streams, y_hat = self.latent_codec(frozen).encode(y, LatentContext(tuple(y.shape), qi))
        h, w = data.shape[:2]
        header = {
            "model_id": frozen.meta.get("model_id", self.name),
            "weights_sha256": sha,
            "shape": [h, w, 3],
            "quality": qi + self.quality_range[0],
            **self.header_fields(frozen),
        }
        return Encoded(codec=self.name, header=header, streams=streams), y_hat, qi

    @staticmethod
    def _synthesize(frozen: Frozen, y_hat: torch.Tensor, qi: int, hw) -> np.ndarray:
        integer = getattr(frozen, "synthesis_int", None)
        if integer is not None:  # exact integer synthesis: identical pixels everywhere
            h, w = hw
            return integer(y_hat, qi)[0, :, :h, :w].permute(1, 2, 0).contiguous().numpy()
        model = frozen.model
        with torch.no_grad(), synthesis_threads():
            x_hat = model.g_s(y_hat * model.y_gain.inverse(torch.tensor([qi])))
        return to_uint8_image(x_hat, *hw)


# ----------------------------------------------------------------------------- hyperprior family


def hyper_analysis(frozen: Frozen):
    """``(y, qi) -> z``: the float hyper-analysis with its gain (encoder side only)."""
    model = frozen.model
    return lambda y, qi: model.h_a(y) * model.z_gain.gain(torch.tensor([qi]))


def scale_condition(frozen: FrozenHyperprior):
    """``(z_int, qi) -> (scale-table indexes, means as float64)`` by the exact hyper-synthesis."""

    def condition(z_int: torch.Tensor, qi: int):
        zinv = torch.from_numpy(frozen.z_inverse_fixed[int(qi)].astype(np.float64))
        out = frozen.hs_fixed(z_int.double() * zinv[None, :, None, None])
        if frozen.kind != "scale":  # mean-scale and the families built like it
            scales_fx, means_fx = out.chunk(2, dim=1)
            means = means_fx * 2.0**-ACT_BITS
        else:
            scales_fx, means = out, torch.zeros_like(out)
        idx = frozen.model.y_conditional.scale_indexes_fixed(
            scales_fx.numpy().astype(np.int64), ACT_BITS
        )
        return np.asarray(idx, dtype=np.int32).reshape(-1), means

    return condition


class HyperpriorCodec(LearnedImageCodec):
    """The scale and mean-scale hyperprior: z factorized, y Gaussian given h_s(z) (exact)."""

    def latent_codec(self, frozen: FrozenHyperprior) -> LatentCodec:
        return HyperpriorLatent(
            side=FactorizedLatent(frozen.z_tables, "z"),
            analysis=hyper_analysis(frozen),
            synthesis=scale_condition(frozen),
            main=GaussianLatent(frozen.y_tables, "y"),
            side_shape=side_shape(frozen.config.n),
        )

    def model_bits(self, frozen: FrozenHyperprior, y: torch.Tensor, qi: int) -> float:
        model, q = frozen.model, torch.tensor([qi])
        z_hat = torch.round(model.h_a(y) * model.z_gain.gain(q))
        scales, means = model.hyper_params(z_hat, q)
        y_hat = torch.round(y - means) + means
        bits = -torch.log2(model.y_conditional.likelihood(y_hat, scales, means)).sum()
        return float(bits - torch.log2(model.z_density.likelihood(z_hat)).sum())


class FactorizedCodec(LearnedImageCodec):
    """Factorized prior: y coded with one learned density per channel, no side information."""

    def latent_codec(self, frozen: FrozenHyperprior) -> LatentCodec:
        return _FloatLatent(FactorizedLatent(frozen.y_tables, "y"))

    def model_bits(self, frozen: FrozenHyperprior, y: torch.Tensor, qi: int) -> float:
        return float(-torch.log2(frozen.model.y_density.likelihood(torch.round(y))).sum())


class _FloatLatent(LatentCodec):
    """An integer latent codec whose reconstruction the synthesis takes as float."""

    def __init__(self, inner: LatentCodec):
        self.inner = inner

    def code(self, sinks, latent, ctx):
        return self.inner.code(sinks, latent, ctx).float()


@register
class BmshjFactorized(FactorizedCodec):
    name = "bmshj-factorized"
    codec_id = 1
    rank = 5
    kinds = ("factorized",)
    description = "factorized prior (Balle et al. 2017), variable rate"


@register
class BmshjHyperprior(HyperpriorCodec):
    name = "bmshj-hyper"
    codec_id = 2
    rank = 4
    kinds = ("scale",)
    description = "scale hyperprior (Balle et al. 2018), variable rate"


def _load_int_twin(path: Path):
    from ..compress.hyperprior import load

    return load(path)


@register
class MbtMean(HyperpriorCodec):
    name = "mbt-mean"
    codec_id = 3
    rank = 3
    kinds = ("mean-scale",)
    description = "mean-scale hyperprior (Minnen et al. 2018), variable rate, bit-exact"


@register
class MbtMeanInt(MbtMean):
    """``mbt-mean`` decoding to identical pixels on every CPU: same latents and tables, the
    synthesis in exact integer arithmetic (``compress/hyperprior.py``). Its weights file is the
    integer synthesis alone; it names (and pins by sha256) the ``mbt-mean`` file it completes."""

    name = "mbt-mean-int"
    codec_id = 8
    rank = 2
    description = "mbt-mean with integer synthesis: identical pixels on every CPU"
    load_weights = staticmethod(_load_int_twin)


def manifest() -> dict:
    """``weights/manifest.json``: the shipped models, their hashes and measured points."""
    path = weights_dir() / "manifest.json"
    if not path.is_file():
        return {"models": []}
    return json.loads(path.read_text())
