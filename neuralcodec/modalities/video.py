"""The video adapter: y4m / raw yuv / PyAV files / image directories <-> ``VideoSource`` <-> codec.

Video is streamed: the adapter's data is a ``VideoSource`` (stream info + frame iterator, see
``datasets.video``), never an array of all frames::

    file --read (max_frames=...)--> VideoSource(info, frames of planes (Y, U, V))
         --prepare--> Prepared(coded=VideoSource, fields: shape (frames, H, W, 3 | 1),
                               colorspace yuv420 | yuv444 | gray, bit_depth,
                               metadata {fps "num/den", aspect, interlace, colour})
    decoded frames (an iterable, or a VideoSource) --restore(header)--> VideoSource
         --write--> .y4m (exact) | .mp4 / .mkv / .mov (H.264 preview)

The header carries everything ``restore`` needs to rebuild ``VideoInfo``, so frame rate, aspect,
interlacing, chroma siting and colour description survive an encode / decode round trip. The rate
unit is bits per luma pixel over all frames.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import Any

from neuralcodec.codecs.base import CodecError
from neuralcodec.container.fields import ContainerError
from neuralcodec.datasets.video import (
    MAX_FRAMES,
    MAX_PIXELS,
    MAX_SIDE,
    VideoError,
    VideoInfo,
    VideoSource,
    frames_source,
    read_video,
    write_video,
)
from neuralcodec.datasets.video_av import AV_EXTENSIONS, AV_WRITE_EXTENSIONS
from neuralcodec.modalities._headers import metadata_of, shape_of
from neuralcodec.modalities.base import ModalityAdapter, Prepared, adapter

COLORSPACE = {"420": "yuv420", "444": "yuv444", "mono": "gray"}
CHROMA = {v: k for k, v in COLORSPACE.items()}
_COLOUR_KEYS = {"matrix": int, "primaries": int, "transfer": int, "range": str, "siting": str}


def _fraction_text(value: Fraction) -> str:
    return f"{value.numerator}/{value.denominator}"


def _parse_fraction(text: Any, what: str) -> Fraction:
    m = re.fullmatch(r"(\d{1,10})/(\d{1,10})", text) if isinstance(text, str) else None
    if not m or int(m.group(1)) == 0 or int(m.group(2)) == 0:
        raise ContainerError(f"video metadata {what}: {text!r} is not a positive fraction n/d")
    return Fraction(int(m.group(1)), int(m.group(2)))


def info_from_header(header: dict[str, Any]) -> VideoInfo:
    """The ``VideoInfo`` a header describes (after ``check_header``)."""
    frames, h, w, _ = shape_of("video", header, 4)
    meta = metadata_of(header)
    aspect = meta.get("aspect")
    colour = meta.get("colour") or {}
    if not isinstance(colour, dict) or any(
        k not in _COLOUR_KEYS or not isinstance(v, _COLOUR_KEYS[k]) for k, v in colour.items()
    ):
        raise ContainerError(f"video metadata colour {colour!r} is not a colour description")
    interlace = meta.get("interlace", "p")
    if interlace not in ("p", "t", "b", "m"):
        raise ContainerError(f"video metadata interlace {interlace!r} not one of p, t, b, m")
    return VideoInfo(
        width=w,
        height=h,
        chroma=CHROMA[header.get("colorspace", "yuv420")],
        bit_depth=int(header.get("bit_depth", 8)),
        fps=_parse_fraction(meta.get("fps", "25/1"), "fps"),
        aspect=_parse_fraction(aspect, "aspect") if aspect is not None else None,
        interlace=interlace,
        colour=dict(colour),
        frames=frames,
    )


@adapter
class VideoAdapter(ModalityAdapter):
    modality = "video"
    rate_unit = "bpp"
    read_extensions = (".y4m", ".yuv", *AV_EXTENSIONS)
    write_extensions = (".y4m", *AV_WRITE_EXTENSIONS)

    def accepts(self, path: str | os.PathLike[str], writing: bool = False) -> bool:
        if not writing and Path(path).is_dir():
            return True  # a directory of image frames
        return super().accepts(path, writing)

    def read(self, path: str | os.PathLike[str], **options: Any) -> VideoSource:
        """Options: ``max_frames``; raw ``.yuv``: ``width``, ``height``, ``pix_fmt``, ``fps``;
        image directories: ``chroma`` ("420" / "444"), ``fps``."""
        return read_video(path, **options)

    def write(
        self, path: str | os.PathLike[str], data: Any, header: dict[str, Any], force: bool = False
    ) -> None:
        write_video(path, self._source(data, header), force)

    def prepare(self, data: Any) -> Prepared:
        source = _as_source(data)
        info = source.info
        meta: dict[str, Any] = {"fps": _fraction_text(info.fps), "interlace": info.interlace}
        if info.aspect:
            meta["aspect"] = _fraction_text(info.aspect)
        if info.colour:
            meta["colour"] = dict(info.colour)
        channels = 1 if info.chroma == "mono" else 3
        fields = {
            "shape": (len(source), info.height, info.width, channels),
            "colorspace": COLORSPACE[info.chroma],
            "bit_depth": info.bit_depth,
            "metadata": meta,
        }
        notes = [
            f"{len(source)} frames {info.width}x{info.height} {fields['colorspace']} {info.bit_depth}-bit at {meta['fps']} fps"
        ]
        return Prepared(coded=source, fields=fields, notes=notes)

    def restore(
        self, decoded: Any, header: dict[str, Any], streams: dict[str, bytes]
    ) -> VideoSource:
        self.check_header(header)
        return self._source(decoded, header)

    def _source(self, data: Any, header: dict[str, Any]) -> VideoSource:
        if isinstance(data, VideoSource):
            if header:
                want = info_from_header(header)
                got = data.info
                if (got.width, got.height, got.chroma, got.bit_depth, len(data)) != (
                    want.width, want.height, want.chroma, want.bit_depth, want.frames,
                ):  # fmt: skip
                    raise CodecError(f"video does not match its header ({header.get('shape')})")
            return data
        if not header:
            raise VideoError("a frame iterator needs a header to describe it")
        if not isinstance(data, Iterable):
            raise VideoError(
                f"expected a VideoSource or an iterable of frames, got {type(data).__name__}"
            )
        return frames_source(info_from_header(header), data, "decoded video")

    def check_header(self, header: dict[str, Any]) -> None:
        frames, h, w, c = shape_of(self.modality, header, 4)
        cs = header.get("colorspace", "yuv420")
        if cs not in CHROMA:
            raise ContainerError(f"video colour space {cs!r} not one of {', '.join(CHROMA)}")
        if c != (1 if cs == "gray" else 3):
            raise ContainerError(f"video colour space {cs} with {c} channels")
        if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE) or w * h > MAX_PIXELS:
            raise ContainerError(f"video frame size {w}x{h} outside the limits")
        if not 1 <= frames <= MAX_FRAMES:
            raise ContainerError(f"video header claims {frames} frames (allowed 1..{MAX_FRAMES})")
        if cs == "yuv420" and (w % 2 or h % 2):
            raise ContainerError(f"video 4:2:0 frame size {w}x{h} is not even")
        if not 8 <= int(header.get("bit_depth", 8)) <= 16:
            raise ContainerError(f"video bit depth {header.get('bit_depth')} not in 8..16")
        info_from_header(header)

    def units(self, header: dict[str, Any]) -> int:
        frames, h, w, _ = shape_of(self.modality, header, 4)
        return frames * h * w


def _as_source(data: Any) -> VideoSource:
    if isinstance(data, VideoSource):
        return data
    raise VideoError(f"expected a VideoSource, got {type(data).__name__}")
