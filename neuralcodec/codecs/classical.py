"""Classical image codecs behind the codec protocol, for rate-distortion benchmarks only.

Each codec turns an ``HxWx3 uint8`` RGB array into the bytes of its own native format and back::

    array --compress(quality)--> native bytes (JPEG / WebP / AVIF / JXL / J2K / HEVC / AV1)
    native bytes --decompress--> array (same shape, uint8)

``quality`` is an integer in ``quality_range`` (higher = better, bigger) mapped to each codec's own
knob, documented on the class. ``bench_qualities`` spans roughly 0.1-2 bpp on Kodak.

Codecs whose library is missing still register; ``available()`` is then ``False`` and
``unavailable_reason()`` says why, so the benchmark can skip them with a message.

The video codecs (x265, SVT-AV1) code a single intra frame. RGB <-> YCbCr uses full-range BT.709,
done here in numpy on both sides, so the conversion is identical for encode and decode; the
bitstream signals full range and BT.709 so other decoders agree.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from typing import ClassVar

import numpy as np

from neuralcodec.codecs.base import Codec, CodecError, register

# Full-range BT.709 luma weights.
_KR, _KB = 0.2126, 0.0722
_KG = 1.0 - _KR - _KB


# ---------------------------------------------------------------------------------------------
# shared helpers


def check_image(img: np.ndarray, name: str) -> np.ndarray:
    """Validate an ``HxWx3 uint8`` image and return it C-contiguous."""
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3:
        raise CodecError(f"{name}: expected an HxWx3 uint8 array, got {_describe(img)}")
    if img.shape[2] != 3 or img.shape[0] < 1 or img.shape[1] < 1:
        raise CodecError(f"{name}: expected an HxWx3 uint8 array, got shape {img.shape}")
    return np.ascontiguousarray(img)


def _describe(obj: object) -> str:
    if isinstance(obj, np.ndarray):
        return f"array of shape {obj.shape} and dtype {obj.dtype}"
    return type(obj).__name__


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """``HxWx3 uint8`` RGB -> ``3xHxW`` float YCbCr (full range BT.709, chroma centred on 128)."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = _KR * r + _KG * g + _KB * b
    cb = (b - y) / (2.0 * (1.0 - _KB)) + 128.0
    cr = (r - y) / (2.0 * (1.0 - _KR)) + 128.0
    return np.stack([y, cb, cr])


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """``3xHxW`` YCbCr (any numeric dtype, full range BT.709) -> ``HxWx3 uint8`` RGB."""
    y, cb, cr = (ycc[i].astype(np.float64) for i in range(3))
    cb, cr = cb - 128.0, cr - 128.0
    r = y + 2.0 * (1.0 - _KR) * cr
    b = y + 2.0 * (1.0 - _KB) * cb
    g = (y - _KR * r - _KB * b) / _KG
    return to_uint8(np.stack([r, g, b], axis=-1))


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _downsample2(plane: np.ndarray) -> np.ndarray:
    """2x2 box average of an even-sized plane (chroma sited between the four luma samples)."""
    h, w = plane.shape
    return plane.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))


def _upsample2(plane: np.ndarray) -> np.ndarray:
    """Bilinear 2x upsampling matching ``_downsample2``'s centred siting (edges clamped)."""
    p = np.pad(plane.astype(np.float64), 1, mode="edge")
    near, far = 0.75, 0.25
    rows = np.empty((2 * plane.shape[0], p.shape[1]))
    rows[0::2] = near * p[1:-1] + far * p[:-2]
    rows[1::2] = near * p[1:-1] + far * p[2:]
    out = np.empty((rows.shape[0], 2 * plane.shape[1]))
    out[:, 0::2] = near * rows[:, 1:-1] + far * rows[:, :-2]
    out[:, 1::2] = near * rows[:, 1:-1] + far * rows[:, 2:]
    return out


class ClassicalCodec(Codec):
    """Base of the benchmark-only image codecs: validation and availability."""

    writes_ncf: ClassVar[bool] = False
    modality: ClassVar[str] = "image"
    bench_qualities: ClassVar[tuple[int, ...]] = ()

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """``None`` when the codec works here, else a one-line reason."""
        return None

    @classmethod
    def available(cls) -> bool:
        return cls.unavailable_reason() is None

    def _require(self) -> None:
        reason = self.unavailable_reason()
        if reason is not None:
            raise CodecError(f"{self.name} is unavailable: {reason}")

    def _prepare(self, img: np.ndarray, quality: int) -> tuple[np.ndarray, int]:
        self._require()
        return check_image(img, self.name), self.check_quality(quality)

    def _check_bytes(self, data: bytes) -> bytes:
        self._require()
        if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) == 0:
            raise CodecError(f"{self.name}: expected non-empty bytes")
        return bytes(data)

    def _finish(self, out: np.ndarray) -> np.ndarray:
        """Decoded output as ``HxWx3 uint8`` (drops alpha, expands grey)."""
        out = np.asarray(out)
        if out.ndim == 2:
            out = np.repeat(out[..., None], 3, axis=2)
        if out.dtype != np.uint8 or out.ndim != 3 or out.shape[2] < 3:
            raise CodecError(f"{self.name}: decoder returned {_describe(out)}")
        return np.ascontiguousarray(out[..., :3])

    def info(self) -> dict:
        out = super().info()
        out["bench_qualities"] = list(self.bench_qualities)
        out["available"] = self.available()
        return out


# ---------------------------------------------------------------------------------------------
# Pillow codecs


class _PillowCodec(ClassicalCodec):
    pil_format: ClassVar[str] = ""

    def _save_options(self, quality: int) -> dict:
        raise NotImplementedError

    @classmethod
    def unavailable_reason(cls) -> str | None:
        from PIL import Image, features

        feature = {"JPEG": "jpg", "WEBP": "webp", "AVIF": "avif", "JPEG2000": "jpg_2000"}
        if not features.check(feature[cls.pil_format]):
            return f"Pillow {Image.__version__} was built without {cls.pil_format} support"
        return None

    def compress(self, img: np.ndarray, quality: int) -> bytes:
        from PIL import Image

        img, quality = self._prepare(img, quality)
        buf = io.BytesIO()
        Image.fromarray(img, "RGB").save(buf, format=self.pil_format, **self._save_options(quality))
        return buf.getvalue()

    def decompress(self, data: bytes) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        data = self._check_bytes(data)
        try:
            with Image.open(io.BytesIO(data), formats=[self.pil_format]) as im:
                return self._finish(np.asarray(im.convert("RGB")))
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise CodecError(f"{self.name}: cannot decode: {exc}") from None


@register
class JpegCodec(_PillowCodec):
    """Baseline JPEG (libjpeg-turbo via Pillow), 4:4:4, optimised Huffman tables.

    quality = libjpeg quality 1..100.
    """

    name = "jpeg"
    pil_format = "JPEG"
    quality_range = (1, 100)
    bench_qualities = (2, 5, 10, 20, 35, 55, 75, 90)
    description = (
        "JPEG (libjpeg-turbo via Pillow), 4:4:4, optimised Huffman; quality = libjpeg quality"
    )

    def _save_options(self, quality: int) -> dict:
        return {"quality": quality, "subsampling": 0, "optimize": True}


@register
class WebpCodec(_PillowCodec):
    """Lossy WebP (libwebp via Pillow), method 6 (slowest, best); quality = libwebp quality 0..100.

    WebP lossy is always 4:2:0.
    """

    name = "webp"
    pil_format = "WEBP"
    quality_range = (0, 100)
    bench_qualities = (0, 5, 15, 30, 50, 70, 85, 93)
    description = "WebP lossy (libwebp via Pillow), method 6, 4:2:0; quality = libwebp quality"

    def _save_options(self, quality: int) -> dict:
        return {"quality": quality, "method": 6, "lossless": False}


@register
class AvifCodec(_PillowCodec):
    """AVIF still image (libavif + libaom via Pillow), 4:4:4, full range, speed 6.

    quality = libavif quality 0..100 (maps linearly onto the AV1 quantizer 63..0).
    """

    name = "avif"
    pil_format = "AVIF"
    quality_range = (0, 100)
    bench_qualities = (10, 20, 30, 40, 50, 60, 70, 82)
    description = "AVIF (libavif/libaom via Pillow), 4:4:4, speed 6; quality = libavif quality"
    speed: ClassVar[int] = 6

    def _save_options(self, quality: int) -> dict:
        return {"quality": quality, "subsampling": "4:4:4", "speed": self.speed, "range": "full"}


@register
class Jpeg2000Codec(_PillowCodec):
    """JPEG 2000 (OpenJPEG via Pillow), irreversible 9/7 wavelet, one rate-controlled layer.

    quality = target rate in units of 0.05 bpp (quality 20 -> 1 bpp), so 1..200 covers
    0.05..10 bpp. OpenJPEG reaches the target from below.
    """

    name = "jpeg2000"
    pil_format = "JPEG2000"
    quality_range = (1, 200)
    bench_qualities = (2, 3, 5, 8, 13, 20, 30, 40)
    description = "JPEG 2000 (OpenJPEG via Pillow), 9/7 wavelet; quality = target bpp / 0.05"

    def _save_options(self, quality: int) -> dict:
        bpp = 0.05 * quality
        ratio = 24.0 / bpp  # compression ratio against 24-bit RGB
        return {
            "quality_mode": "rates",
            "quality_layers": [ratio],
            "irreversible": True,
            "mct": 1,
            "no_jp2": False,
        }


# ---------------------------------------------------------------------------------------------
# imagecodecs codecs


@register
class JpegXlCodec(ClassicalCodec):
    """JPEG XL (libjxl via imagecodecs), VarDCT, effort 7.

    quality 1..100 maps to the butteraugli distance like ``cjxl -q``: 100 -> 0.1 (visually
    lossless), 90 -> 1.0, 30 -> 6.4, lower qualities grow quadratically up to 25.
    """

    name = "jpegxl"
    quality_range = (1, 100)
    bench_qualities = (10, 20, 35, 50, 65, 78, 88, 94)
    description = "JPEG XL (libjxl via imagecodecs), VarDCT, effort 7; quality as cjxl -q"
    effort: ClassVar[int] = 7

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            import imagecodecs
        except ImportError:
            return "imagecodecs is not installed"
        return None if imagecodecs.JPEGXL.available else "imagecodecs was built without libjxl"

    @staticmethod
    def distance(quality: int) -> float:
        if quality >= 30:
            return 0.1 + (100 - quality) * 0.09
        return 53.0 / 3000.0 * quality**2 - 23.0 / 20.0 * quality + 25.0

    def compress(self, img: np.ndarray, quality: int) -> bytes:
        import imagecodecs

        img, quality = self._prepare(img, quality)
        return bytes(
            imagecodecs.jpegxl_encode(
                img, distance=self.distance(quality), effort=self.effort, numthreads=1
            )
        )

    def decompress(self, data: bytes) -> np.ndarray:
        import imagecodecs

        data = self._check_bytes(data)
        try:
            out = imagecodecs.jpegxl_decode(data, numthreads=1)
        except Exception as exc:  # imagecodecs raises its own JpegxlError types
            raise CodecError(f"{self.name}: cannot decode: {exc}") from None
        return self._finish(out)


# ---------------------------------------------------------------------------------------------
# PyAV (ffmpeg) intra-frame codecs


class _AvIntraCodec(ClassicalCodec):
    """One intra frame through an ffmpeg encoder; the bytes are the raw elementary stream."""

    encoder: ClassVar[str] = ""
    decoder: ClassVar[str] = ""
    pix_fmt: ClassVar[str] = "yuv444p"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            import av
        except ImportError:
            return "PyAV is not installed"
        missing = [c for c in (cls.encoder, cls.decoder) if c not in av.codecs_available]
        if missing:
            return f"PyAV's ffmpeg has no {' / '.join(missing)}"
        return None

    def _options(self, quality: int) -> dict[str, str]:
        raise NotImplementedError

    def _to_frame(self, img: np.ndarray):
        raise NotImplementedError

    def _from_frame(self, frame) -> np.ndarray:
        raise NotImplementedError

    def compress(self, img: np.ndarray, quality: int) -> bytes:
        import av

        img, quality = self._prepare(img, quality)
        ctx = av.CodecContext.create(self.encoder, "w")
        ctx.width, ctx.height = img.shape[1], img.shape[0]
        ctx.pix_fmt = self.pix_fmt
        ctx.time_base = Fraction(1, 25)
        ctx.framerate = Fraction(25, 1)
        ctx.color_range = 2  # AVCOL_RANGE_JPEG: full range
        ctx.colorspace = ctx.color_primaries = ctx.color_trc = 1  # BT.709
        ctx.thread_count = 1
        ctx.options = self._options(quality)
        try:
            packets = ctx.encode(self._to_frame(img)) + ctx.encode(None)
        except av.FFmpegError as exc:
            raise CodecError(f"{self.name}: encoder failed: {exc}") from None
        return b"".join(bytes(p) for p in packets)

    def decompress(self, data: bytes) -> np.ndarray:
        import av

        data = self._check_bytes(data)
        ctx = av.CodecContext.create(self.decoder, "r")
        ctx.thread_count = 1
        try:
            frames = []
            for packet in ctx.parse(data) + ctx.parse(None):
                frames.extend(ctx.decode(packet))
            frames.extend(ctx.decode(None))
        except av.FFmpegError as exc:
            raise CodecError(f"{self.name}: cannot decode: {exc}") from None
        if len(frames) != 1:
            raise CodecError(f"{self.name}: expected one frame, the stream holds {len(frames)}")
        if frames[0].format.name != self.pix_fmt:
            raise CodecError(f"{self.name}: decoded {frames[0].format.name}, not {self.pix_fmt}")
        return self._from_frame(frames[0])


@contextmanager
def same_scheduling() -> Iterator[None]:
    """Give the calling thread back the scheduling policy it had.

    SVT-AV1 switches the thread that opens an encoder to real-time FIFO scheduling wherever it
    is allowed to (as root). Left so, the thread, and every process it starts afterwards, runs
    ahead of everything else on the machine: a multi-threaded decode started from it then spins
    forever, its waiting threads never scheduled."""
    try:
        policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    except (AttributeError, OSError):  # no POSIX scheduling here: nothing to keep
        policy = param = None
    try:
        yield
    finally:
        if policy is not None and os.sched_getscheduler(0) != policy:
            os.sched_setscheduler(0, policy, param)


@register
class X265Codec(_AvIntraCodec):
    """HEVC intra (x265 via PyAV), Main 4:4:4 profile, preset medium, tune psnr, constant QP.

    quality 0..51 -> QP = 51 - quality. Bytes are the Annex-B bitstream (VPS/SPS/PPS + one IDR).
    """

    name = "x265"
    encoder = "libx265"
    decoder = "hevc"
    quality_range = (0, 51)
    bench_qualities = (5, 9, 13, 17, 21, 25, 29)
    description = "HEVC intra (x265 via PyAV), 4:4:4, preset medium, tune psnr; QP = 51 - quality"
    preset: ClassVar[str] = "medium"

    def _options(self, quality: int) -> dict[str, str]:
        params = [
            f"qp={51 - quality}",
            "keyint=1",
            "log-level=error",
            "range=full",
            "colorprim=bt709",
            "transfer=bt709",
            "colormatrix=bt709",
            "frame-threads=1",
            "pools=none",
        ]
        return {"preset": self.preset, "tune": "psnr", "x265-params": ":".join(params)}

    def _to_frame(self, img: np.ndarray):
        import av

        return av.VideoFrame.from_ndarray(to_uint8(rgb_to_ycbcr(img)), format="yuv444p")

    def _from_frame(self, frame) -> np.ndarray:
        return ycbcr_to_rgb(frame.to_ndarray(format="yuv444p"))


@register
class SvtAv1Codec(_AvIntraCodec):
    """AV1 intra (SVT-AV1 via PyAV, decoded by dav1d), 4:2:0 8-bit, preset 6, constant CRF.

    SVT-AV1 codes 4:2:0 only: chroma is a 2x2 box average, upsampled bilinearly on decode, so
    width and height must be even. quality 0..62 -> CRF = 63 - quality (ffmpeg reads CRF 0 as unset). Bytes are the
    low-overhead AV1 OBU stream (sequence header + one key frame).
    """

    name = "svtav1"
    encoder = "libsvtav1"
    decoder = "libdav1d"
    pix_fmt = "yuv420p"
    quality_range = (0, 62)
    bench_qualities = (8, 14, 20, 27, 34, 41, 48)
    description = "AV1 intra (SVT-AV1 via PyAV, dav1d decode), 4:2:0, preset 6; CRF = 63 - quality"
    preset: ClassVar[int] = 6

    def compress(self, img: np.ndarray, quality: int) -> bytes:
        # SVT-AV1 prints its whole configuration at info level unless SVT_LOG says otherwise;
        # keep errors only, and respect a level the user chose.
        os.environ.setdefault("SVT_LOG", "1")
        with same_scheduling():
            return super().compress(img, quality)

    def _options(self, quality: int) -> dict[str, str]:
        return {
            "preset": str(self.preset),
            "crf": str(63 - quality),
            "svtav1-params": "keyint=1:lp=1",
        }

    def _prepare(self, img: np.ndarray, quality: int) -> tuple[np.ndarray, int]:
        img, quality = super()._prepare(img, quality)
        if img.shape[0] % 2 or img.shape[1] % 2 or min(img.shape[:2]) < 8:
            raise CodecError(
                f"{self.name}: 4:2:0 needs even width and height >= 8, got {img.shape}"
            )
        return img, quality

    def _to_frame(self, img: np.ndarray):
        import av

        y, cb, cr = rgb_to_ycbcr(img)
        planes = [to_uint8(y), to_uint8(_downsample2(cb)), to_uint8(_downsample2(cr))]
        h, w = y.shape
        packed = np.concatenate([planes[0].ravel(), planes[1].ravel(), planes[2].ravel()])
        return av.VideoFrame.from_ndarray(packed.reshape(h * 3 // 2, w), format="yuv420p")

    def _from_frame(self, frame) -> np.ndarray:
        h, w = frame.height, frame.width
        flat = frame.to_ndarray(format="yuv420p").ravel()
        y = flat[: h * w].reshape(h, w)
        cb = flat[h * w : h * w * 5 // 4].reshape(h // 2, w // 2)
        cr = flat[h * w * 5 // 4 :].reshape(h // 2, w // 2)
        return ycbcr_to_rgb(np.stack([y.astype(np.float64), _upsample2(cb), _upsample2(cr)]))
