"""Video files <-> ``VideoSource``: stream information plus frames read one at a time.

A video is never held whole: ``VideoSource`` carries ``VideoInfo`` (size, chroma format, bit
depth, frame rate as a fraction, aspect, interlacing, colour description, frame count) and opens a
fresh frame iterator each time it is iterated. A frame is a tuple of planes ``(Y, U, V)`` (``(Y,)``
for monochrome), uint8 for 8-bit video and uint16 above::

    .y4m                  --read_y4m-->  header tags W H F A I C X; FRAME [params] + planes
    .yuv (raw planar)     --read_yuv-->  size / pixel format / rate from options or the file name
    .mp4 .mkv .mov .264.. --read_av-->   PyAV decode, converted to yuv420p (datasets.video_av)
    directory of images   --read_image_dir--> RGB -> Y'CbCr BT.601 limited range 4:2:0 (or 4:4:4)
    VideoSource --write_y4m--> .y4m      VideoSource --write_av--> .mp4/.mkv/.mov (H.264 preview)

Frame counts are known before the first frame is decoded (y4m: FRAME headers scanned; raw: file
size; PyAV: container index or packet count), and every iterator checks it delivers exactly that
many, so a truncated or shortened file is a one-line ``VideoError``.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from neuralcodec.codecs.base import CodecError
from neuralcodec.datasets.paths import atomic_output

Frame = tuple[np.ndarray, ...]
CHROMAS = ("420", "444", "mono")
MAX_SIDE = 1 << 16
MAX_PIXELS = 1 << 28
MAX_FRAMES = 1 << 20
Y4M_MAGIC = b"YUV4MPEG2"
_Y4M_SITING = {"420jpeg": "center", "420mpeg2": "left", "420paldv": "topleft", "420": "center"}


class VideoError(CodecError):
    """A video that cannot be read, written or coded; one-line message."""


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    chroma: str = "420"  # "420" | "444" | "mono"
    bit_depth: int = 8
    fps: Fraction = Fraction(25)
    aspect: Fraction | None = None  # sample (pixel) aspect ratio; None = unknown
    interlace: str = "p"  # y4m I tag: p, t, b, m
    colour: dict[str, Any] = field(
        default_factory=dict
    )  # matrix, range, primaries, transfer, siting
    frames: int | None = None

    def check(self, what: str = "video") -> VideoInfo:
        w, h = self.width, self.height
        if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE) or w * h > MAX_PIXELS:
            raise VideoError(f"{what}: frame size {w}x{h} outside the limits")
        if self.chroma not in CHROMAS:
            raise VideoError(
                f"{what}: chroma format {self.chroma!r} not one of {', '.join(CHROMAS)}"
            )
        if self.chroma == "420" and (w % 2 or h % 2):
            raise VideoError(f"{what}: 4:2:0 video needs an even width and height, got {w}x{h}")
        if not 8 <= self.bit_depth <= 16:
            raise VideoError(f"{what}: bit depth {self.bit_depth} not in 8..16")
        if self.fps <= 0:
            raise VideoError(f"{what}: frame rate {self.fps} is not positive")
        if self.frames is not None and not 0 < self.frames <= MAX_FRAMES:
            raise VideoError(f"{what}: {self.frames} frames (need 1..{MAX_FRAMES})")
        return self

    @property
    def dtype(self) -> type:
        return np.uint8 if self.bit_depth <= 8 else np.uint16

    def plane_shapes(self) -> list[tuple[int, int]]:
        h, w = self.height, self.width
        if self.chroma == "mono":
            return [(h, w)]
        ch, cw = (h // 2, w // 2) if self.chroma == "420" else (h, w)
        return [(h, w), (ch, cw), (ch, cw)]

    def frame_bytes(self) -> int:
        return sum(a * b for a, b in self.plane_shapes()) * np.dtype(self.dtype).itemsize


class VideoSource:
    """``info`` plus a re-openable frame iterator; at most ``max_frames`` frames are delivered."""

    def __init__(self, info: VideoInfo, opener: Callable[[], Iterator[Frame]], what: str = "video"):
        self.info, self._opener, self.what = info.check(what), opener, what
        if info.frames is None:
            raise VideoError(f"{what}: frame count unknown")

    def __len__(self) -> int:
        return int(self.info.frames)

    def __iter__(self) -> Iterator[Frame]:
        shapes, n, got = self.info.plane_shapes(), len(self), 0
        frames = self._opener()
        try:
            for frame in itertools.islice(frames, n):
                check_frame(frame, self.info, shapes, f"{self.what} frame {got}")
                got += 1
                yield frame
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()  # a decoder left with frames beyond ``n`` releases its file now
        if got != n:
            raise VideoError(f"{self.what}: ended after {got} frames, {n} expected (truncated?)")

    def limited(self, max_frames: int | None) -> VideoSource:
        """The first ``max_frames`` frames (all if None)."""
        if max_frames is None or max_frames >= len(self):
            return self
        if max_frames < 1:
            raise VideoError(f"max_frames must be at least 1, got {max_frames}")
        return VideoSource(replace(self.info, frames=max_frames), self._opener, self.what)


def frames_source(info: VideoInfo, frames: Iterable[Frame], what: str = "video") -> VideoSource:
    """A single-pass ``VideoSource`` over an existing iterable of frames (e.g. a generator)."""
    it = iter(frames)
    used = []

    def opener() -> Iterator[Frame]:
        if used:
            raise VideoError(f"{what}: this frame stream can be read once only")
        used.append(True)
        return it

    return VideoSource(info, opener, what)


def check_frame(frame: Any, info: VideoInfo, shapes: list[tuple[int, int]], what: str) -> None:
    if not isinstance(frame, tuple) or len(frame) != len(shapes):
        raise VideoError(f"{what}: expected a tuple of {len(shapes)} planes")
    for plane, shape in zip(frame, shapes, strict=True):
        if not isinstance(plane, np.ndarray) or plane.shape != shape or plane.dtype != info.dtype:
            got = f"{getattr(plane, 'dtype', type(plane).__name__)} {getattr(plane, 'shape', '')}"
            raise VideoError(f"{what}: plane is {got}, expected {np.dtype(info.dtype)} {shape}")
        if info.bit_depth not in (8, 16) and plane.max(initial=0) >> info.bit_depth:
            raise VideoError(f"{what}: sample {int(plane.max())} exceeds {info.bit_depth} bits")


def _split_planes(buf: bytes, info: VideoInfo) -> Frame:
    out, off = [], 0
    dt = np.dtype(info.dtype).newbyteorder("<")
    for h, w in info.plane_shapes():
        n = h * w
        out.append(np.frombuffer(buf, dt, n, off).reshape(h, w).astype(info.dtype))
        off += n * dt.itemsize
    return tuple(out)


# ----------------------------------------------------------------------------- y4m


def _y4m_chroma(tag: str, what: str) -> tuple[str, int, str]:
    """(chroma, bit depth, siting) of a y4m ``C`` tag such as 420jpeg, 444p10, mono."""
    m = re.fullmatch(r"(420jpeg|420mpeg2|420paldv|420|444|mono)(?:p?(\d+))?", tag)
    if not m or (m.group(2) and not 8 <= int(m.group(2)) <= 16):
        raise VideoError(
            f"{what}: unsupported y4m colour space C{tag} (420*, 444, mono; 8..16 bit)"
        )
    base = m.group(1)
    chroma = "420" if base.startswith("420") else base
    return chroma, int(m.group(2) or 8), _Y4M_SITING.get(base, "")


def _ratio(text: str, what: str, tag: str) -> Fraction:
    m = re.fullmatch(r"(\d+):(\d+)", text)
    if not m:
        raise VideoError(f"{what}: bad y4m {tag} tag {text!r}")
    num, den = int(m.group(1)), int(m.group(2))
    return Fraction(num, den) if den else Fraction(0)


def parse_y4m_header(line: bytes, what: str) -> VideoInfo:
    words = line.decode("ascii", errors="replace").split()
    if not words or words[0] != "YUV4MPEG2":
        raise VideoError(f"{what}: not a YUV4MPEG2 file")
    tags: dict[str, str] = {}
    extra: list[str] = []
    for w in words[1:]:
        (extra.append(w[1:]) if w[0] == "X" else tags.__setitem__(w[0], w[1:]))
    try:
        width, height = int(tags["W"]), int(tags["H"])
    except (KeyError, ValueError):
        raise VideoError(f"{what}: y4m header without a valid W and H") from None
    chroma, depth, siting = _y4m_chroma(tags.get("C", "420jpeg"), what)
    fps = _ratio(tags.get("F", "25:1"), what, "F")
    aspect = _ratio(tags.get("A", "0:0"), what, "A")
    colour: dict[str, Any] = {"siting": siting} if siting else {}
    for x in extra:
        if x.startswith("COLORRANGE="):
            colour["range"] = {"LIMITED": "tv", "FULL": "pc"}.get(x.split("=", 1)[1], "unknown")
    info = VideoInfo(
        width, height, chroma, depth, fps, aspect or None, tags.get("I", "p")[:1] or "p", colour
    )
    return info.check(what)


def _read_line(f, what: str, limit: int = 1024) -> bytes:
    line = f.readline(limit)
    if line and not line.endswith(b"\n"):
        raise VideoError(f"{what}: header line longer than {limit} bytes or cut off")
    return line


def _scan_y4m(path: Path, info: VideoInfo, max_frames: int | None) -> list[int]:
    """Byte offsets of the frame data, checking every FRAME header and frame size."""
    size, fb, offsets = path.stat().st_size, info.frame_bytes(), []
    with open(path, "rb") as f:
        _read_line(f, str(path))
        while max_frames is None or len(offsets) < max_frames:
            start = f.tell()
            line = _read_line(f, f"{path} frame {len(offsets)}")
            if not line:
                break
            if not line.startswith(b"FRAME"):
                raise VideoError(f"{path}: frame {len(offsets)} does not start with FRAME")
            if size - f.tell() < fb:
                raise VideoError(
                    f"{path}: truncated: frame {len(offsets)} has {size - f.tell()} of {fb} bytes"
                )
            offsets.append(f.tell())
            f.seek(start + len(line) + fb)
            if len(offsets) > MAX_FRAMES:
                raise VideoError(f"{path}: more than {MAX_FRAMES} frames")
    if not offsets:
        raise VideoError(f"{path}: no frames (0-frame video)")
    return offsets


def read_y4m(path: str | os.PathLike[str], max_frames: int | None = None) -> VideoSource:
    path = Path(path)
    with open(path, "rb") as f:
        info = parse_y4m_header(_read_line(f, str(path)), str(path))
    offsets = _scan_y4m(path, info, max_frames)
    info = replace(info, frames=len(offsets))

    def opener() -> Iterator[Frame]:
        with open(path, "rb") as f:
            for off in offsets:
                f.seek(off)
                buf = f.read(info.frame_bytes())
                if len(buf) != info.frame_bytes():
                    raise VideoError(f"{path}: truncated while reading")
                yield _split_planes(buf, info)

    return VideoSource(info, opener, str(path))


def _y4m_header(info: VideoInfo) -> bytes:
    depth = "" if info.bit_depth == 8 else f"p{info.bit_depth}"
    if info.chroma == "420":
        siting = {"left": "420mpeg2", "topleft": "420paldv"}.get(
            info.colour.get("siting", ""), "420jpeg"
        )
        tag = "420" + depth if depth else siting
    else:
        tag = info.chroma + (depth[1:] if info.chroma == "mono" else depth)  # mono10, 444p10
    aspect = f"{info.aspect.numerator}:{info.aspect.denominator}" if info.aspect else "0:0"
    words = [
        "YUV4MPEG2",
        f"W{info.width}",
        f"H{info.height}",
        f"F{info.fps.numerator}:{info.fps.denominator}",
        f"I{info.interlace}",
        f"A{aspect}",
        f"C{tag}",
    ]
    rng = {"tv": "LIMITED", "pc": "FULL"}.get(info.colour.get("range", ""))
    if rng:
        words.append(f"XCOLORRANGE={rng}")
    return (" ".join(words) + "\n").encode("ascii")


def write_y4m(path: str | os.PathLike[str], source: VideoSource, force: bool = False) -> Path:
    """Stream ``source`` into a ``.y4m`` file, one frame at a time, atomically."""
    info = source.info
    with atomic_output(path, force) as f:
        f.write(_y4m_header(info))
        for frame in source:
            f.write(b"FRAME\n")
            for plane in frame:
                f.write(plane.astype(np.dtype(info.dtype).newbyteorder("<"), copy=False).tobytes())
    return Path(path)


# ----------------------------------------------------------------------------- raw .yuv

RAW_FORMATS = {
    "yuv420p": ("420", 8), "yuv444p": ("444", 8), "gray": ("mono", 8),
    "yuv420p10le": ("420", 10), "yuv444p10le": ("444", 10), "gray10le": ("mono", 10),
}  # fmt: skip


def _size_from_name(name: str) -> tuple[int | None, int | None, Fraction | None]:
    m = re.search(r"(\d+)x(\d+)", name)
    r = re.search(r"_(\d+(?:\.\d+)?)fps", name)
    w, h = (int(m.group(1)), int(m.group(2))) if m else (None, None)
    return w, h, Fraction(r.group(1)).limit_denominator(1001) if r else None


def read_yuv(
    path: str | os.PathLike[str],
    width: int | None = None,
    height: int | None = None,
    pix_fmt: str = "yuv420p",
    fps: Fraction | str | float | None = None,
    max_frames: int | None = None,
) -> VideoSource:
    """Raw planar frames back to back; size and rate default to ``WxH`` / ``_NNfps`` in the name."""
    path = Path(path)
    if pix_fmt not in RAW_FORMATS:
        raise VideoError(
            f"{path}: raw pixel format {pix_fmt!r} not one of {', '.join(RAW_FORMATS)}"
        )
    nw, nh, nfps = _size_from_name(path.name)
    width, height = width or nw, height or nh
    if not width or not height:
        raise VideoError(f"{path}: raw .yuv needs a width and height (options, or WxH in the name)")
    chroma, depth = RAW_FORMATS[pix_fmt]
    rate = Fraction(fps).limit_denominator(1001) if fps is not None else (nfps or Fraction(25))
    info = VideoInfo(int(width), int(height), chroma, depth, rate).check(str(path))
    size, fb = path.stat().st_size, info.frame_bytes()
    if size == 0 or size % fb:
        raise VideoError(
            f"{path}: {size} bytes is not a whole number of {width}x{height} {pix_fmt} frames ({fb} bytes)"
        )
    count = min(size // fb, max_frames or size // fb)
    info = replace(info, frames=count).check(str(path))

    def opener() -> Iterator[Frame]:
        with open(path, "rb") as f:
            for _ in range(count):
                buf = f.read(fb)
                if len(buf) != fb:
                    raise VideoError(f"{path}: truncated while reading")
                yield _split_planes(buf, info)

    return VideoSource(info, opener, str(path))


# ----------------------------------------------------------------------------- entry points

Y4M_EXTENSIONS = (".y4m",)
RAW_EXTENSIONS = (".yuv",)


def read_video(
    path: str | os.PathLike[str], max_frames: int | None = None, **options: Any
) -> VideoSource:
    """Read a video by extension (a directory: its images as frames); ``options`` go to the reader."""
    from neuralcodec.datasets import video_av

    path = Path(path)
    if not path.exists():
        raise VideoError(f"no such file: {path}")
    if max_frames is not None and (isinstance(max_frames, bool) or int(max_frames) < 1):
        raise VideoError(f"max_frames must be at least 1, got {max_frames!r}")
    ext = path.suffix.lower()
    raw_opts = {"width", "height", "pix_fmt", "fps"}
    allowed = raw_opts if ext in RAW_EXTENSIONS else ({"chroma", "fps"} if path.is_dir() else set())
    unknown = set(options) - allowed
    if unknown:
        raise VideoError(f"{path}: options {', '.join(sorted(unknown))} do not apply to this input")
    if path.is_dir():
        return video_av.read_image_dir(path, max_frames=max_frames, **options)
    if ext in Y4M_EXTENSIONS:
        return read_y4m(path, max_frames)
    if ext in RAW_EXTENSIONS:
        return read_yuv(path, max_frames=max_frames, **options)
    if ext in video_av.AV_EXTENSIONS:
        return video_av.read_av(path, max_frames)
    raise VideoError(f"{path}: not a video file (.y4m, .yuv, {', '.join(video_av.AV_EXTENSIONS)})")


def write_video(
    path: str | os.PathLike[str], source: VideoSource, force: bool = False, **options: Any
) -> Path:
    """Write ``.y4m`` (exact) or ``.mp4``/``.mkv``/``.mov`` (H.264 through PyAV, ``options``)."""
    from neuralcodec.datasets import video_av

    ext = Path(path).suffix.lower()
    if ext in Y4M_EXTENSIONS:
        if options:
            raise VideoError(f"{path}: .y4m takes no writer options")
        return write_y4m(path, source, force)
    if ext in video_av.AV_WRITE_EXTENSIONS:
        return video_av.write_av(path, source, force, **options)
    raise VideoError(
        f"{path}: videos are written as .y4m or {', '.join(video_av.AV_WRITE_EXTENSIONS)}"
    )
