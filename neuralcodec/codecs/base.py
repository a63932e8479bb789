"""The codec protocol and the one registry of codec names.

Two kinds of codec sit behind the same registry:

* ``Codec`` subclasses with ``writes_ncf = True`` turn data into named byte streams plus header
  fields (``Encoded``); the container (``neuralcodec.container``) wraps those into an ``.ncf`` file.
  Each has a stable numeric ``codec_id`` that is written into every file and never reused.
* ``Codec`` subclasses with ``writes_ncf = False`` (JPEG, WebP, AVIF, x265, ...) exist for
  benchmarking only. They implement ``compress(array, quality) -> bytes`` in their own native
  format and ``decompress(bytes) -> array``.

A class registers itself with ``@register``; ``get_codec(name)`` builds one, ``codec_names()``
lists them by name and ``ranked_names()`` in order of preference. A test builds every registered
name and asks it every capability below.

Capabilities every codec answers (the base class gives the defaults; callers never probe for
attributes)::

    rank                 ClassVar[int]          preference for the default codec (lower first)
    slow_reason          ClassVar[str | None]   why one encode takes minutes (None: not slow)
    bench_qualities      ClassVar[tuple[int]]   qualities a benchmark runs; () = the whole range
                                                (``qualities_to_bench()`` resolves that)
    unavailable_reason() classmethod            why the codec cannot run here (None: it can)
    weights_available()                         its weights ship here (True: needs none)
    weights_sha256(model_id=None)               sha256 of its weights (None: uses none)
    settings_fingerprint()                      digest of encoder settings (None: none)
    estimated_bits(data, quality)               the model's own rate estimate (None: none)
    encode_with_reconstruction(data, quality)   (Encoded, what decode will return)
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

MODALITIES = ("image", "video", "pointcloud", "mesh", "splat")
DEFAULT_RANK = 100


class CodecError(ValueError):
    """Anything a codec refuses: bad quality, unsupported input, inconsistent streams."""


@dataclass
class Encoded:
    """What an ``.ncf`` codec produces: header fields and named byte streams.

    ``header`` holds the codec-specific part of the container header (e.g. ``model_id``,
    ``weights_sha256``, ``shape``, ``colorspace``, ``bit_depth``, ``quality``, ``metadata``);
    ``streams`` maps a short stream name to its bytes, in the order they are written.
    """

    codec: str
    header: dict[str, Any]
    streams: dict[str, bytes] = field(default_factory=dict)

    @property
    def payload_bytes(self) -> int:
        return sum(len(s) for s in self.streams.values())


class Codec:
    """Base class of every codec. Subclasses set the class attributes and implement the methods."""

    name: ClassVar[str]
    codec_id: ClassVar[int] = 0  # stable id written into .ncf files; 0 = benchmark-only
    modality: ClassVar[str] = "image"
    quality_range: ClassVar[tuple[int, int]] = (1, 8)  # inclusive; higher = better and bigger
    writes_ncf: ClassVar[bool] = True
    extensions: ClassVar[tuple[str, ...]] = ()  # input file extensions this codec accepts
    description: ClassVar[str] = ""
    rank: ClassVar[int] = DEFAULT_RANK  # default-codec preference within a modality, lower first
    slow_reason: ClassVar[str | None] = None  # e.g. "fits a network to each image: minutes"
    bench_qualities: ClassVar[tuple[int, ...]] = ()  # () = every quality of quality_range

    def check_quality(self, quality: int) -> int:
        lo, hi = self.quality_range
        if not isinstance(quality, (int, np.integer)) or not lo <= int(quality) <= hi:
            raise CodecError(
                f"{self.name}: quality must be an integer in {lo}..{hi}, got {quality!r}"
            )
        return int(quality)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why this codec cannot run here (a library built without it), or None when it can."""
        return None

    def weights_available(self) -> bool:
        """Whether the weights this codec needs are present (True for codecs without weights)."""
        return True

    def weights_sha256(self, model_id: str | None = None) -> str | None:
        """sha256 of the weights used for ``model_id`` (None: the current model); None for
        codecs without weights. Call only when ``weights_available()``."""
        return None

    def settings_fingerprint(self) -> str | None:
        """A digest of the encoder settings that change its output without changing its code
        (an encoder preset's definition), so stored benchmark results can be recognised as
        stale; None for codecs without such settings."""
        return None

    @classmethod
    def qualities_to_bench(cls) -> tuple[int, ...]:
        """``bench_qualities``, or every quality of ``quality_range`` when it is empty."""
        lo, hi = cls.quality_range
        return tuple(cls.bench_qualities) or tuple(range(lo, hi + 1))

    def estimated_bits(self, data: Any, quality: int) -> float | None:
        """The model's own estimate of the coded size in bits (learned codecs: ``-sum log2``
        of the latents' likelihoods), to compare with the real size; None when it has none."""
        return None

    def encode_with_reconstruction(self, data: Any, quality: int) -> tuple[Encoded, Any]:
        """``(Encoded, what decode returns for it)``; codecs that know their reconstruction
        while encoding override this to skip the decode."""
        encoded = self.encode(data, quality)
        return encoded, self.decode(encoded)

    # .ncf codecs
    def encode(self, data: Any, quality: int) -> Encoded:
        raise NotImplementedError(f"{self.name} does not write .ncf files")

    def decode(self, encoded: Encoded) -> Any:
        raise NotImplementedError(f"{self.name} does not read .ncf files")

    # benchmark-only codecs
    def compress(self, data: Any, quality: int) -> bytes:
        raise NotImplementedError(f"{self.name} has no native format; use encode()")

    def decompress(self, data: bytes) -> Any:
        raise NotImplementedError(f"{self.name} has no native format; use decode()")

    def info(self) -> dict[str, Any]:
        lo, hi = self.quality_range
        return {
            "name": self.name,
            "codec_id": self.codec_id,
            "modality": self.modality,
            "qualities": [lo, hi],
            "writes_ncf": self.writes_ncf,
            "description": self.description,
        }


_REGISTRY: dict[str, type[Codec]] = {}
_BY_ID: dict[int, str] = {}

# Modules that register codecs when imported. Listed here, imported lazily by the registry.
CODEC_MODULES = (
    "neuralcodec.codecs.classical",
    "neuralcodec.codecs.learned_image",
    "neuralcodec.codecs.learned_elic",
    "neuralcodec.codecs.learned_wavelet",
    "neuralcodec.codecs.learned_mlic",
    "neuralcodec.codecs.inr",
    "neuralcodec.codecs.pointcloud_octree",
    "neuralcodec.codecs.mesh_traversal",
    "neuralcodec.codecs.draco",
    "neuralcodec.codecs.learned_video",
    "neuralcodec.codecs.splat_vq",
    "neuralcodec.codecs.splat_formats",
)


def register(cls: type[Codec]) -> type[Codec]:
    """Class decorator: make ``cls`` available as ``get_codec(cls.name)``."""
    name = cls.name
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise RuntimeError(f"codec name {name!r} registered twice")
    if cls.modality not in MODALITIES:
        raise RuntimeError(f"codec {name!r}: unknown modality {cls.modality!r}")
    if cls.writes_ncf:
        if cls.codec_id <= 0:
            raise RuntimeError(f"codec {name!r} writes .ncf files but has no codec_id")
        other = _BY_ID.get(cls.codec_id)
        if other is not None and other != name:
            raise RuntimeError(f"codec id {cls.codec_id} used by {other!r} and {name!r}")
        _BY_ID[cls.codec_id] = name
    _REGISTRY[name] = cls
    return cls


def _load_all() -> None:
    for mod in CODEC_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:  # a codec module not written yet
            if exc.name != mod:
                raise


def codec_names(modality: str | None = None, ncf_only: bool = False) -> list[str]:
    _load_all()
    return sorted(
        n
        for n, c in _REGISTRY.items()
        if (modality is None or c.modality == modality) and (not ncf_only or c.writes_ncf)
    )


def ranked_names(modality: str, ncf_only: bool = True) -> list[str]:
    """The codecs of ``modality`` in order of preference: by ``rank``, then by name."""
    return sorted(codec_names(modality, ncf_only), key=lambda n: (_REGISTRY[n].rank, n))


def weights_available(name: str) -> bool:
    """Whether codec ``name`` (built with its default options) has its weights here."""
    cls = codec_class(name)
    try:
        return bool(cls().weights_available())
    except (OSError, ValueError, RuntimeError):
        return False


def codec_class(name: str) -> type[Codec]:
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(codec_names()) or "none"
        raise CodecError(f"unknown codec {name!r} (known: {known})") from None


def get_codec(name: str, **kwargs: Any) -> Codec:
    return codec_class(name)(**kwargs)


def name_for_id(codec_id: int) -> str:
    _load_all()
    try:
        return _BY_ID[codec_id]
    except KeyError:
        raise CodecError(f"unknown codec id {codec_id}") from None
