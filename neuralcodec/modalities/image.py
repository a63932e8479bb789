"""The image modality: image files <-> arrays, and the policy that maps any image onto RGB.

::

    file --read (datasets.images.read_image)--> HxWxC uint8/uint16 array, C in 1..4
         --prepare--> Prepared(coded = HxWx3 uint8 RGB, fields = shape/colorspace/bit_depth,
                               streams = {"ncf.alpha": zlib(alpha)} when there is alpha, notes)
    decoded HxWx3 uint8 --restore(header, {"ncf.alpha": ...})--> array in the original layout
         --write--> PNG (atomic; an existing file is replaced only when forced)

Image policy (image codecs always see an HxWx3 uint8 RGB array; docs/format.md):

* grayscale (1 channel) is coded as RGB with colour space ``gray`` and decoded back to 1 channel;
* alpha (RGBA, gray + alpha): fully opaque alpha is dropped (the notes say so); any other alpha
  is coded losslessly with zlib in the stream ``ncf.alpha`` and restored on decode;
* 16-bit input is coded with 8 bits per sample (round(v / 257)), bit depth 16 is recorded, the
  notes warn, and decoding gives 16-bit samples (v * 257); a 16-bit alpha stays exact;
* any size from 1x1 up to ``MAX_IMAGE_PIXELS`` (64 Mpixel); larger inputs are refused, and so
  are files whose header claims more.

The rate unit is bits per pixel: 8 * file bytes / (height * width).
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from neuralcodec.codecs.base import CodecError
from neuralcodec.container import ContainerError
from neuralcodec.datasets.images import (
    IMAGE_EXTENSIONS,
    MAX_IMAGE_PIXELS,
    read_image,
    write_png_atomic,
)
from neuralcodec.modalities.base import ModalityAdapter, Prepared, adapter

ALPHA_STREAM = "ncf.alpha"
ALPHA_SPACES = ("rgba", "gray-alpha")


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
    h, w, _ = header["shape"]
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
    if space not in ALPHA_SPACES:
        return np.ascontiguousarray(colour)
    if alpha_data is None:
        raise ContainerError(f"colour space {space} but no {ALPHA_STREAM} stream")
    alpha = _restore_alpha(alpha_data, h, w, header["bit_depth"])
    return np.ascontiguousarray(
        np.concatenate([colour, alpha.astype(colour.dtype)[..., None]], axis=2)
    )


@adapter
class ImageAdapter(ModalityAdapter):
    """Still images: PNG/JPEG/WebP/BMP/TIFF/PNM in, PNG out, coded as HxWx3 uint8 RGB."""

    modality: ClassVar[str] = "image"
    rate_unit: ClassVar[str] = "bpp"
    read_extensions: ClassVar[tuple[str, ...]] = IMAGE_EXTENSIONS
    write_extensions: ClassVar[tuple[str, ...]] = (".png",)

    def read(
        self, path: str | os.PathLike[str], max_pixels: int = MAX_IMAGE_PIXELS, **options: Any
    ) -> np.ndarray:
        if options:
            raise CodecError(f"image files take no read option {', '.join(options)}")
        return read_image(path, max_pixels=max_pixels)

    def write(
        self, path: str | os.PathLike[str], data: Any, header: dict[str, Any], force: bool = False
    ) -> None:
        write_png_atomic(path, data, overwrite=force)

    def prepare(self, data: Any) -> Prepared:
        img = prepare_image(data)
        fields = {"shape": img.shape, "colorspace": img.colorspace, "bit_depth": img.bit_depth}
        streams = {} if img.alpha is None else {ALPHA_STREAM: _alpha_bytes(img.alpha)}
        return Prepared(img.rgb, fields, streams, img.notes)

    def restore(self, decoded: Any, header: dict[str, Any], streams: dict[str, bytes]) -> Any:
        return restore_image(decoded, header, streams.get(ALPHA_STREAM))

    def coded_view(self, header: dict[str, Any]) -> dict[str, Any]:
        h, w = header["shape"][:2]
        return {"shape": (h, w, 3)}

    def check_header(self, header: dict[str, Any]) -> None:
        h, w = header["shape"][:2]
        if h * w > MAX_IMAGE_PIXELS:
            raise ContainerError(
                f"the file claims a {w}x{h} image, more than the {MAX_IMAGE_PIXELS} pixel limit"
            )
        if header["bit_depth"] not in (8, 16):
            raise ContainerError(f"image bit depth {header['bit_depth']} is not 8 or 16")

    def units(self, header: dict[str, Any]) -> int:
        h, w = header["shape"][:2]
        return int(h) * int(w)
