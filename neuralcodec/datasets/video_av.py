"""Compressed video through PyAV, and image directories as video (see ``datasets.video``).

::

    .mp4 .mkv .mov .webm .avi .264 .h264 .265 .hevc --av.open--> first video stream
        --decode--> yuv420p / yuvj420p planes as they are; any other pixel format converted to
                    yuv420p by swscale (10-bit sources become 8-bit) --> VideoSource
    VideoSource --write_av--> libx264 (yuv420p, or yuv444p for 4:4:4), crf 12 by default or
                    lossless (qp 0); monochrome gets neutral chroma; >8-bit is rounded to 8 bits
    directory of images (sorted by name) --RGB -> Y'CbCr, BT.601 limited range--> 4:2:0 (chroma
                    averaged over 2x2) or 4:4:4 --> VideoSource

The frame rate is the stream's average rate (a fraction); colour description (matrix, primaries,
transfer: ITU-T H.273 code points; range tv/pc) comes from the first decoded frame.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from neuralcodec.datasets.images import ImageReadError, list_images, read_image
from neuralcodec.datasets.paths import atomic_output
from neuralcodec.datasets.video import MAX_FRAMES, Frame, VideoError, VideoInfo, VideoSource

AV_EXTENSIONS = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".264", ".h264", ".265", ".hevc")
AV_WRITE_EXTENSIONS = (".mp4", ".mkv", ".mov")
_MUXERS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov"}
_DIRECT = {"yuv420p": "tv", "yuvj420p": "pc"}
_RANGES = {1: "tv", 2: "pc"}
BT601 = np.array(
    [
        [0.256788, 0.504129, 0.097906],
        [-0.148223, -0.290993, 0.439216],
        [0.439216, -0.367788, -0.071427],
    ]
)


def _av():
    import av

    return av


def _open(path: Path):
    av = _av()
    try:
        return av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"cannot read {path}: not a readable video ({exc})") from None


def _planes(frame: Any) -> Frame:
    """The Y, U, V planes of a decoded frame as uint8 arrays (converted to yuv420p if needed)."""
    if frame.format.name not in _DIRECT:
        frame = frame.reformat(format="yuv420p")
    out = []
    for plane in frame.planes:
        rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
        out.append(rows[: plane.height, : plane.width].copy())
    return tuple(out)


def _colour(frame: Any) -> dict[str, Any]:
    rng = _DIRECT.get(frame.format.name) or _RANGES.get(int(frame.color_range or 0))
    colour: dict[str, Any] = {"range": rng} if rng else {}
    for key, attr in (
        ("matrix", "colorspace"),
        ("primaries", "color_primaries"),
        ("transfer", "color_trc"),
    ):
        code = int(getattr(frame, attr, 2) or 2)
        if code != 2:  # 2 = unspecified
            colour[key] = code
    return colour


def _count_packets(path: Path) -> int:
    with _open(path) as container:
        stream = container.streams.video[0]
        return sum(1 for p in container.demux(stream) if p.size > 0)


def read_av(path: str | os.PathLike[str], max_frames: int | None = None) -> VideoSource:
    """The first video stream of a file PyAV can open, as 8-bit 4:2:0."""
    av, path = _av(), Path(path)
    with _open(path) as container:
        if not container.streams.video:
            raise VideoError(f"{path}: no video stream")
        stream = container.streams.video[0]
        try:
            first = next(container.decode(stream), None)
        except av.FFmpegError as exc:
            raise VideoError(f"cannot decode {path}: {exc}") from None
        if first is None:
            raise VideoError(f"{path}: no frames (0-frame video)")
        fps = stream.average_rate or stream.guessed_rate or Fraction(25)
        sar = stream.codec_context.sample_aspect_ratio
        count = int(stream.frames or 0)
    count = count or _count_packets(path)
    count = min(count, max_frames or count, MAX_FRAMES)
    info = VideoInfo(
        first.width, first.height, "420", 8, Fraction(fps), Fraction(sar) if sar else None,
        "p", _colour(first), count,
    )  # fmt: skip

    def opener() -> Iterator[Frame]:
        with _open(path) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            try:
                for frame in c.decode(s):
                    if (frame.width, frame.height) != (info.width, info.height):
                        raise VideoError(f"{path}: frame size changes mid-stream")
                    yield _planes(frame)
            except av.FFmpegError as exc:
                raise VideoError(f"cannot decode {path}: {exc}") from None

    return VideoSource(info, opener, str(path))


# ----------------------------------------------------------------------------- writing


def _to_8bit(plane: np.ndarray, depth: int) -> np.ndarray:
    if depth <= 8:
        return plane
    shift = depth - 8
    return np.clip((plane.astype(np.uint32) + (1 << (shift - 1))) >> shift, 0, 255).astype(np.uint8)


def _av_frame(frame: Frame, info: VideoInfo) -> Any:
    av = _av()
    planes = [_to_8bit(p, info.bit_depth) for p in frame]
    if info.chroma == "444":
        return av.VideoFrame.from_ndarray(np.stack(planes), format="yuv444p")
    if info.chroma == "mono":
        grey = np.full((info.height // 2, info.width // 2), 128, np.uint8)
        planes = [planes[0], grey, grey]
    flat = np.concatenate([p.reshape(-1) for p in planes])
    return av.VideoFrame.from_ndarray(flat.reshape(-1, info.width), format="yuv420p")


def write_av(
    path: str | os.PathLike[str],
    source: VideoSource,
    force: bool = False,
    crf: int = 12,
    preset: str = "medium",
    lossless: bool = False,
) -> Path:
    """An H.264 (libx264) preview of ``source``, streamed frame by frame, written atomically."""
    av, path, info = _av(), Path(path), source.info
    if info.chroma == "mono" and (info.width % 2 or info.height % 2):
        raise VideoError(f"{path}: H.264 preview of monochrome video needs even sizes")
    if not 0 <= int(crf) <= 51:
        raise VideoError(f"{path}: crf must be in 0..51, got {crf}")
    with atomic_output(path, force) as f:
        container = av.open(f, mode="w", format=_MUXERS[path.suffix.lower()])
        stream = container.add_stream("libx264", rate=info.fps)
        stream.width, stream.height = info.width, info.height
        stream.pix_fmt = "yuv444p" if info.chroma == "444" else "yuv420p"
        stream.options = {"qp": "0"} if lossless else {"crf": str(int(crf)), "preset": preset}
        if info.aspect:
            stream.codec_context.sample_aspect_ratio = info.aspect
        rng = info.colour.get("range")
        if rng in ("tv", "pc"):
            stream.codec_context.color_range = 1 if rng == "tv" else 2
        for key, attr in (
            ("matrix", "colorspace"),
            ("primaries", "color_primaries"),
            ("transfer", "color_trc"),
        ):
            if isinstance(info.colour.get(key), int):
                setattr(stream.codec_context, attr, info.colour[key])
        for i, frame in enumerate(source):
            vf = _av_frame(frame, info)
            vf.pts = i
            container.mux(stream.encode(vf))
        container.mux(stream.encode(None))
        container.close()
    return path


# ----------------------------------------------------------------------------- image directories


def rgb_to_ycbcr(rgb: np.ndarray, chroma: str = "420") -> Frame:
    """8-bit RGB (H x W x 3) -> Y'CbCr planes, BT.601 limited range; 4:2:0 averages 2x2 chroma."""
    ycc = rgb.astype(np.float64) @ BT601.T + np.array([16.0, 128.0, 128.0])
    planes = [ycc[..., 0], ycc[..., 1], ycc[..., 2]]
    if chroma == "420":
        h, w = rgb.shape[:2]
        planes[1:] = [p.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)) for p in planes[1:]]
    return tuple(np.clip(np.floor(p + 0.5), 0, 255).astype(np.uint8) for p in planes)


def _rgb8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint16:
        arr = np.floor(arr / 257.0 + 0.5).astype(np.uint8)
    if arr.shape[2] in (1, 2):
        return np.repeat(arr[..., :1], 3, axis=2)
    return arr[..., :3]


def read_image_dir(
    path: str | os.PathLike[str],
    max_frames: int | None = None,
    chroma: str = "420",
    fps: Fraction | str | float = 25,
) -> VideoSource:
    """The images of a directory, sorted by name, as frames (alpha dropped, 16-bit rounded)."""
    path = Path(path)
    if chroma not in ("420", "444"):
        raise VideoError(f"{path}: image frames become 4:2:0 or 4:4:4, not {chroma!r}")
    files = list_images(path)[: max_frames or None]
    if not files:
        raise VideoError(f"{path}: no image files (0 frames)")
    try:
        first = read_image(files[0])
    except ImageReadError as exc:
        raise VideoError(str(exc)) from None
    h, w = first.shape[:2]
    colour = {"matrix": 6, "range": "tv", "siting": "center"}  # 6 = BT.601 (SMPTE 170M)
    info = VideoInfo(
        w, h, chroma, 8, Fraction(fps).limit_denominator(1001), None, "p", colour, len(files)
    )
    info = replace(info).check(str(path))

    def opener() -> Iterator[Frame]:
        for f in files:
            try:
                arr = read_image(f)
            except ImageReadError as exc:
                raise VideoError(str(exc)) from None
            if arr.shape[:2] != (h, w):
                raise VideoError(f"{f}: {arr.shape[1]}x{arr.shape[0]}, the first frame is {w}x{h}")
            yield rgb_to_ycbcr(_rgb8(arr), chroma)

    return VideoSource(info, opener, str(path))
