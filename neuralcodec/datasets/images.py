"""Image files <-> numpy arrays (HxWxC, uint8 or uint16).

``read_image`` accepts PNG, JPEG, WebP, BMP, TIFF and PNM (PPM/PGM/PBM). The size is checked from
the file header before any pixel is decoded, so an absurdly large image fails fast::

    path --checks--> Pillow header --size cap--> decode --> HxWxC array
                                                  |-- 16-bit colour PNG / TIFF: imagecodecs
                                                  '-- everything else: Pillow (EXIF rotation
                                                      applied; palette -> RGB(A); 1-bit -> 8-bit)

Channels: 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA). ``write_png_atomic`` writes any of
those, 8 or 16 bits, to a temporary file that replaces the destination only when complete.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from neuralcodec.datasets.paths import write_bytes_atomic

IMAGE_EXTENSIONS = (
    ".png",
    ".jpg",
    ".jpeg",
    ".webp",
    ".bmp",
    ".tif",
    ".tiff",
    ".ppm",
    ".pgm",
    ".pbm",
    ".pnm",
)
MAX_IMAGE_PIXELS = 1 << 26  # 64 Mpixel, e.g. 8192 x 8192
SUPPORTED = "png, jpg, webp, bmp, tiff, ppm/pgm/pbm"
_MODES_8BIT = {
    "L": "L",
    "LA": "LA",
    "RGB": "RGB",
    "RGBA": "RGBA",
    "1": "L",
    "CMYK": "RGB",
    "YCbCr": "RGB",
    "LAB": "RGB",
    "HSV": "RGB",
}
_MODES_16BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class ImageReadError(ValueError):
    """A path that is not a readable image (missing, a directory, unknown format, too large)."""


def _check_path(path: Path) -> None:
    if not path.exists():
        raise ImageReadError(f"no such file: {path}")
    if path.is_dir():
        raise ImageReadError(f"{path} is a directory, not an image")
    if not os.access(path, os.R_OK):
        raise ImageReadError(f"cannot read {path}: permission denied")


def _open(path: Path) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageReadError(
            f"{path}: image too large to read (limit {MAX_IMAGE_PIXELS} pixels)"
        ) from None
    except UnidentifiedImageError:
        raise ImageReadError(f"cannot read {path}: not a supported image ({SUPPORTED})") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(f"cannot read {path}: {exc}") from None


def _check_size(path: Path, img: Image.Image, max_pixels: int) -> None:
    w, h = img.size
    if w < 1 or h < 1:
        raise ImageReadError(f"{path}: empty image ({w}x{h})")
    if w * h > max_pixels:
        raise ImageReadError(
            f"{path}: {w}x{h} is {w * h} pixels, more than the limit of {max_pixels}"
        )
    if getattr(img, "n_frames", 1) > 1:
        raise ImageReadError(
            f"{path}: animated or multi-page image ({img.n_frames} frames); give a single image"
        )


def _is_16bit_colour(path: Path, img: Image.Image) -> bool:
    """True for 16-bit RGB(A) PNG / TIFF, which Pillow would silently reduce to 8 bits."""
    if img.format == "PNG":
        with open(path, "rb") as f:
            ihdr = f.read(26)
        return len(ihdr) == 26 and ihdr[24] == 16 and ihdr[25] in (2, 4, 6)
    if img.format == "TIFF":
        bits = img.tag_v2.get(258, (8,))
        bits = bits if isinstance(bits, tuple) else (bits,)
        return max(bits) == 16 and img.mode not in _MODES_16BIT
    return False


def _decode_16bit_colour(path: Path, fmt: str) -> np.ndarray:
    import imagecodecs

    decode = imagecodecs.png_decode if fmt == "PNG" else imagecodecs.tiff_decode
    try:
        arr = np.asarray(decode(path.read_bytes()))
    except Exception as exc:  # imagecodecs raises its own error classes per format
        raise ImageReadError(f"cannot read {path}: {exc}") from None
    return arr if arr.ndim == 3 else arr[..., None]


def _decode_pillow(path: Path, img: Image.Image) -> np.ndarray:
    img = ImageOps.exif_transpose(img)
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA" if "transparency" in img.info or img.mode == "PA" else "RGB")
    if img.mode in _MODES_16BIT:
        arr = np.asarray(img)
        if arr.min() < 0 or arr.max() > 0xFFFF:
            raise ImageReadError(f"{path}: 32-bit integer pixels outside 0..65535")
        return arr.astype(np.uint16)[..., None]
    if img.mode not in _MODES_8BIT:
        raise ImageReadError(f"{path}: unsupported pixel mode {img.mode}")
    arr = np.asarray(img.convert(_MODES_8BIT[img.mode]), dtype=np.uint8)
    return arr if arr.ndim == 3 else arr[..., None]


def read_image(path: str | os.PathLike[str], max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Read an image file as an HxWxC uint8 / uint16 array (C in 1..4); ``ImageReadError`` if not."""
    path = Path(path)
    _check_path(path)
    with _open(path) as img:
        _check_size(path, img, max_pixels)
        try:
            if _is_16bit_colour(path, img):
                arr = _decode_16bit_colour(path, img.format)
            else:
                arr = _decode_pillow(path, img)
        except ImageReadError:
            raise
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise ImageReadError(f"cannot read {path}: {exc}") from None
    if arr.dtype not in (np.uint8, np.uint16) or arr.shape[2] not in (1, 2, 3, 4):
        raise ImageReadError(f"{path}: unsupported pixel layout {arr.dtype} {arr.shape}")
    return np.ascontiguousarray(arr)


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of an HxW or HxWxC (C in 1..4) uint8 / uint16 array."""
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4) or arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(
            f"cannot write {arr.dtype} {arr.shape} as PNG (need HxWxC, C<=4, uint8/uint16)"
        )
    if arr.dtype == np.uint16:
        import imagecodecs

        return bytes(
            imagecodecs.png_encode(np.ascontiguousarray(arr if arr.shape[2] > 1 else arr[..., 0]))
        )
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[arr.shape[2]]
    buf = io.BytesIO()
    Image.fromarray(arr[..., 0] if mode == "L" else arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def write_png_atomic(
    path: str | os.PathLike[str], array: np.ndarray, overwrite: bool = True
) -> Path:
    """Write ``array`` as a PNG file that appears at ``path`` only once complete."""
    return write_bytes_atomic(path, encode_png(array), force=overwrite)


def list_images(directory: str | os.PathLike[str]) -> list[Path]:
    """Image files directly inside ``directory``, sorted by name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ImageReadError(f"not a directory: {directory}")
    return sorted(
        p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
