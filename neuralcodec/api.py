"""The library entry points used by the CLI, the demo and the benchmarks.

::

    encode_file:  image file --read_image--> array --prepare_image--> HxWx3 uint8 RGB
                  --Codec.encode--> Encoded --from_encoded--> NcfFile --pack--> .ncf (atomic write)
    decode_file:  .ncf --unpack--> NcfFile --check codec & weights--> Codec.decode --> RGB
                  --restore_image--> array in the original layout --> PNG (atomic write)

Image policy (image codecs always see an HxWx3 uint8 RGB array; docs/format.md):

* grayscale (1 channel) is coded as RGB with colour space ``gray`` and decoded back to 1 channel;
* alpha (RGBA, gray + alpha): fully opaque alpha is dropped (the report says so); any other alpha
  is coded losslessly with zlib in the stream ``ncf.alpha`` and restored on decode;
* 16-bit input is coded with 8 bits per sample (round(v / 257)), bit depth 16 is recorded, the
  report warns, and decoding gives 16-bit samples (v * 257); a 16-bit alpha stays exact;
* any size from 1x1 up to ``MAX_IMAGE_PIXELS`` (64 Mpixel); larger inputs are refused.
"""

from __future__ import annotations

import inspect
import os
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neuralcodec.codecs.base import Codec, CodecError, codec_class, codec_names, get_codec
from neuralcodec.container import (
    ContainerError,
    NcfFile,
    check_weights,
    from_encoded,
    pack,
    read_ncf,
    resolve_codec_class,
    to_encoded,
    unpack,
    weights_status,
)
from neuralcodec.datasets.images import MAX_IMAGE_PIXELS, read_image, write_png_atomic
from neuralcodec.datasets.paths import check_output, write_bytes_atomic

PREFERRED_CODECS = {"image": ("elic", "mbt-mean", "bmshj-hyper", "bmshj-factorized", "inr")}
ALPHA_STREAM = "ncf.alpha"
RESERVED_STREAM_PREFIX = "ncf."


# ----------------------------------------------------------------------------- codec choice


def weights_available(name: str) -> bool:
    """Whether codec ``name`` can run here (its weights ship); codecs without weights: True.

    The hook is ``weights_available()``, a class/static method or an instance method.
    """
    cls = codec_class(name)
    hook = inspect.getattr_static(cls, "weights_available", None)
    if hook is None:
        return True
    try:
        if isinstance(hook, (classmethod, staticmethod)):
            return bool(cls.weights_available())
        return bool(get_codec(name).weights_available())
    except (OSError, ValueError, RuntimeError):
        return False


def default_codec(modality: str = "image") -> str:
    """The best registered ``.ncf`` codec for ``modality`` whose weights are available."""
    registered = codec_names(modality, ncf_only=True)
    preferred = PREFERRED_CODECS.get(modality, tuple(registered))
    for name in preferred:
        if name in registered and weights_available(name):
            return name
    raise CodecError(f"no {modality} codec with available weights is registered; pass --codec")


def default_quality(codec: Codec | type[Codec]) -> int:
    lo, hi = codec.quality_range
    return (lo + hi) // 2


def _ncf_codec(
    name: str | None, modality: str = "image", options: dict[str, Any] | None = None
) -> Codec:
    """The codec ``name`` (default: the best one for ``modality``), built with its ``options``
    (encoder settings such as the INR codec's ``preset``)."""
    name = name or default_codec(modality)
    cls = codec_class(name)
    if not cls.writes_ncf:
        ncf = ", ".join(codec_names(ncf_only=True)) or "none"
        raise CodecError(
            f"codec {name} is for benchmarks only and writes no .ncf files (use one of: {ncf})"
        )
    try:
        return get_codec(name, **(options or {}))
    except TypeError:
        raise CodecError(f"codec {name} takes no option {', '.join(options or {})}") from None


# ----------------------------------------------------------------------------- image policy


@dataclass
class PreparedImage:
    """An input image split into what the codec sees and what the container records."""

    rgb: np.ndarray  # HxWx3 uint8, what the codec codes
    shape: tuple[int, int, int]  # the original HxWxC
    colorspace: str  # rgb | gray | rgba | gray-alpha
    bit_depth: int  # 8 or 16
    alpha: np.ndarray | None = None  # HxW, coded losslessly
    notes: list[str] = field(default_factory=list)


def _check_array(array: Any) -> np.ndarray:
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise CodecError(f"an image must be HxW or HxWxC with C in 1..4, got shape {arr.shape}")
    if arr.dtype not in (np.uint8, np.uint16):
        raise CodecError(f"image samples must be uint8 or uint16, got {arr.dtype}")
    h, w = arr.shape[:2]
    if h < 1 or w < 1 or h * w > MAX_IMAGE_PIXELS:
        raise CodecError(f"image size {h}x{w} outside 1x1 .. {MAX_IMAGE_PIXELS} pixels")
    return arr


def prepare_image(array: Any) -> PreparedImage:
    """Apply the image policy of the module docstring."""
    arr = _check_array(array)
    h, w, c = arr.shape
    notes: list[str] = []
    depth = 16 if arr.dtype == np.uint16 else 8
    alpha = arr[..., c - 1] if c in (2, 4) else None
    colour = arr[..., : c - 1] if alpha is not None else arr
    if alpha is not None and np.all(alpha == np.iinfo(arr.dtype).max):
        notes.append("alpha channel is fully opaque: dropped")
        alpha = None
    if depth == 16:
        notes.append(
            "warning: 16-bit samples coded with 8 bits (decoded as 16-bit, 8 significant bits)"
        )
        colour = np.round(colour.astype(np.float64) / 257.0).astype(np.uint8)
    rgb = np.repeat(colour, 3, axis=2) if colour.shape[2] == 1 else colour
    gray = colour.shape[2] == 1
    if alpha is not None:
        notes.append("alpha channel coded losslessly (zlib)")
    colorspace = ("gray" if gray else "rgb") + (
        "" if alpha is None else ("-alpha" if gray else "a")
    )
    shape = (h, w, colour.shape[2] + (alpha is not None))
    return PreparedImage(
        np.ascontiguousarray(rgb, dtype=np.uint8), shape, colorspace, depth, alpha, notes
    )


def _alpha_bytes(alpha: np.ndarray) -> bytes:
    return zlib.compress(
        np.ascontiguousarray(alpha, dtype=alpha.dtype.newbyteorder("<")).tobytes(), 9
    )


def _restore_alpha(data: bytes, h: int, w: int, depth: int) -> np.ndarray:
    dtype = np.dtype("<u2") if depth == 16 else np.dtype(np.uint8)
    size = h * w * dtype.itemsize
    d = zlib.decompressobj()
    try:
        raw = d.decompress(data, size + 1)
    except zlib.error:
        raise ContainerError("alpha stream is not valid zlib data") from None
    if len(raw) != size or not d.eof or d.unused_data:
        raise ContainerError(f"alpha stream holds the wrong number of bytes (want {size})")
    return np.frombuffer(raw, dtype=dtype).reshape(h, w).astype(dtype.newbyteorder("="))


def restore_image(rgb: Any, header: dict[str, Any], alpha_data: bytes | None) -> np.ndarray:
    """Undo ``prepare_image``: decoded RGB + header (+ alpha stream) -> the original layout."""
    h, w, c = header["shape"]
    rgb = np.asarray(rgb)
    if rgb.shape != (h, w, 3) or rgb.dtype != np.uint8:
        raise CodecError(
            f"codec {header['codec_name']} decoded {rgb.dtype} {rgb.shape}, expected uint8 {(h, w, 3)}"
        )
    space = header["colorspace"]
    colour = rgb
    if space.startswith("gray"):
        colour = np.round(rgb.astype(np.float32).mean(axis=2, keepdims=True)).astype(np.uint8)
    if header["bit_depth"] == 16:
        colour = colour.astype(np.uint16) * np.uint16(257)
    if space not in ("rgba", "gray-alpha"):
        return np.ascontiguousarray(colour)
    if alpha_data is None:
        raise ContainerError(f"colour space {space} but no {ALPHA_STREAM} stream")
    alpha = _restore_alpha(alpha_data, h, w, header["bit_depth"])
    return np.ascontiguousarray(
        np.concatenate([colour, alpha.astype(colour.dtype)[..., None]], axis=2)
    )


# ----------------------------------------------------------------------------- reports


@dataclass
class EncodeReport:
    codec: str
    quality: int
    shape: tuple[int, ...]
    colorspace: str
    bit_depth: int
    bytes: int
    bpp: float
    seconds: float
    notes: list[str] = field(default_factory=list)
    src: str | None = None
    dst: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DecodeReport:
    codec: str
    quality: int
    shape: tuple[int, ...]
    bytes: int
    seconds: float
    src: str | None = None
    dst: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _bpp(num_bytes: int, shape: tuple[int, ...], modality: str) -> float:
    if modality == "image":
        return 8.0 * num_bytes / (shape[0] * shape[1])
    if modality == "video":
        return 8.0 * num_bytes / (shape[0] * shape[1] * shape[2])
    return float("nan")


# ----------------------------------------------------------------------------- encode / decode


def _encode_image(codec: Codec, array: Any, quality: int) -> tuple[NcfFile, PreparedImage]:
    img = prepare_image(array)
    encoded = codec.encode(img.rgb, quality)
    clash = [n for n in encoded.streams if n.startswith(RESERVED_STREAM_PREFIX)]
    if clash:
        raise CodecError(f"codec {codec.name} used reserved stream names {clash}")
    over = {
        "shape": img.shape,
        "colorspace": img.colorspace,
        "bit_depth": img.bit_depth,
        "quality": quality,
    }
    ncf = from_encoded(codec, encoded, over)
    if img.alpha is not None:
        ncf.streams[ALPHA_STREAM] = _alpha_bytes(img.alpha)
    return ncf, img


def encode_with_report(
    array: Any,
    codec_name: str | None = None,
    quality: int | None = None,
    options: dict[str, Any] | None = None,
) -> tuple[bytes, EncodeReport]:
    """``encode_array`` plus what happened (codec, quality, size, bpp, time, policy notes)."""
    codec = _ncf_codec(codec_name, options=options)
    q = codec.check_quality(default_quality(codec) if quality is None else quality)
    start = time.perf_counter()
    if codec.modality == "image":
        ncf, img = _encode_image(codec, array, q)
        notes = img.notes
    else:
        ncf, notes = from_encoded(codec, codec.encode(array, q), {"quality": q}), []
    data = pack(ncf)
    seconds = time.perf_counter() - start
    unpack(data)  # the bytes we hand out must parse
    h = ncf.header
    report = EncodeReport(
        codec.name,
        q,
        tuple(h["shape"]),
        h["colorspace"],
        h["bit_depth"],
        len(data),
        _bpp(len(data), h["shape"], codec.modality),
        seconds,
        notes,
    )
    return data, report


def encode_array(
    array: Any,
    codec_name: str | None = None,
    quality: int | None = None,
    options: dict[str, Any] | None = None,
) -> bytes:
    """The bytes of an ``.ncf`` file coding ``array`` (image policy above) with ``codec_name``."""
    return encode_with_report(array, codec_name, quality, options)[0]


def _codec_for(ncf: NcfFile) -> Codec:
    """The codec that decodes ``ncf``, after checking its id, name, modality and weights."""
    codec = get_codec(resolve_codec_class(ncf.header).name)
    check_weights(codec, ncf.header)
    return codec


def _decode_with(codec: Codec, ncf: NcfFile) -> Any:
    header = ncf.header
    if codec.modality != "image":
        return codec.decode(to_encoded(ncf))
    streams = {k: v for k, v in ncf.streams.items() if not k.startswith(RESERVED_STREAM_PREFIX)}
    h, w = header["shape"][:2]
    rgb = codec.decode(to_encoded(ncf, streams, shape=(h, w, 3)))
    return restore_image(rgb, header, ncf.streams.get(ALPHA_STREAM))


def header_info(ncf: NcfFile, file_bytes: int) -> dict[str, Any]:
    """A JSON-able summary of a parsed file: every header field, streams, size and bpp."""
    h = ncf.header
    info: dict[str, Any] = {"format_version": ncf.version, **h, "shape": list(h["shape"])}
    info["streams"] = [{"name": n, "bytes": len(s)} for n, s in ncf.streams.items()]
    info["file_bytes"] = file_bytes
    bpp = _bpp(file_bytes, h["shape"], h["modality"])
    info["bpp"] = None if bpp != bpp else round(bpp, 6)
    return info


def decode_bytes(data: bytes) -> tuple[Any, dict[str, Any]]:
    """Decode the bytes of an ``.ncf`` file: (array in the original layout, header info)."""
    ncf = unpack(data)
    return _decode_with(_codec_for(ncf), ncf), header_info(ncf, len(data))


def encode_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    codec: str | None = None,
    quality: int | None = None,
    force: bool = False,
    options: dict[str, Any] | None = None,
) -> EncodeReport:
    """Encode image file ``src`` into the ``.ncf`` file ``dst`` (never half-written)."""
    check_output(dst, force)
    array = read_image(src)
    data, report = encode_with_report(array, codec, quality, options)
    write_bytes_atomic(dst, data, force=force)
    report.src, report.dst = str(src), str(dst)
    return report


def decode_file(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], force: bool = False
) -> DecodeReport:
    """Decode the ``.ncf`` file ``src`` into the PNG ``dst`` (original size, channels, depth)."""
    check_output(dst, force)
    ncf = read_ncf(src)
    if ncf.header["modality"] != "image":
        raise ContainerError(
            f"{src} holds a {ncf.header['modality']}; decode_file writes images only"
        )
    codec = _codec_for(ncf)
    start = time.perf_counter()
    array = _decode_with(codec, ncf)
    seconds = time.perf_counter() - start
    write_png_atomic(dst, array, overwrite=force)
    h = ncf.header
    return DecodeReport(
        h["codec_name"],
        h["quality"],
        tuple(array.shape),
        Path(src).stat().st_size,
        seconds,
        str(src),
        str(dst),
    )


def file_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Header, streams, size and bpp of an ``.ncf`` file, plus whether this build can decode it."""
    ncf = read_ncf(path)
    info = header_info(ncf, Path(path).stat().st_size)
    try:
        cls = resolve_codec_class(ncf.header)
        info["codec_known"] = True
        info["weights"] = weights_status(get_codec(cls.name), ncf.header)
    except (ContainerError, CodecError, OSError) as exc:
        info["codec_known"] = False
        info["weights"] = f"cannot check: {exc}"
    return info


def list_codecs() -> list[dict[str, Any]]:
    """Every registered codec: name, id, modality, qualities, .ncf or benchmark-only, weights."""
    rows = []
    for name in codec_names():
        cls = codec_class(name)
        row = {
            "name": name,
            "codec_id": cls.codec_id,
            "modality": cls.modality,
            "qualities": list(cls.quality_range),
            "writes_ncf": cls.writes_ncf,
            "description": cls.description,
        }
        try:
            row["weights_available"] = weights_available(name)
        except (OSError, ValueError, RuntimeError) as exc:
            row["weights_available"] = False
            row["error"] = str(exc)
        rows.append(row)
    return rows
