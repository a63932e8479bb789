"""The ``.ncf`` header fields, declared once: name, binary type, allowed values, printer.

Every header field of the container is one ``Field`` row of ``FIELDS``. The writer packs the rows
in table order, the reader unpacks them in the same order, and both run ``validate_header`` so a
value outside its declared range can neither be written nor read::

    dict {name: value} --validate_header--> pack_fields --> bytes
    bytes --unpack_fields--> dict {name: value} --validate_header--> NcfFile.header

Types (all integers little-endian):

    u8 / u16            unsigned integer in ``[lo, hi]``
    str                 u8 byte length + ASCII text, length in ``[lo, hi]``, matching ``pattern``
    enum                u8 index into ``choices``
    digest              u8 byte length (0 or 32) + raw bytes; held as a hex string ("" = none)
    shape               u8 number of dimensions + one u32 per dimension; checked per modality
    json                u32 byte length + canonical UTF-8 JSON of a dict, length <= ``hi``
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from neuralcodec.codecs.base import MODALITIES

COLORSPACES = ("none", "rgb", "gray", "rgba", "gray-alpha", "yuv420", "yuv444")
IMAGE_CHANNELS = {"rgb": 3, "gray": 1, "rgba": 4, "gray-alpha": 2}


class ContainerError(ValueError):
    """An ``.ncf`` file (or header) that cannot be written or read; the message is one line."""


@dataclass(frozen=True)
class ShapeLimits:
    """Sizes a header may claim, checked before anything is allocated."""

    max_side: int = 1 << 16  # image / video height and width
    max_pixels: int = 1 << 28  # height * width of one image or frame
    max_channels: int = 4
    max_frames: int = 1 << 20
    max_elements: int = 1 << 32  # product of all dimensions (point clouds, meshes, splats)
    max_dim: int = 1 << 28  # any one dimension outside image / video
    max_ndim: int = 4


LIMITS = ShapeLimits()


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # u8 | u16 | str | enum | digest | shape | json
    label: str
    lo: int = 0
    hi: int = 0
    choices: tuple[str, ...] = ()
    pattern: str = ""
    default: Any = None


FIELDS: tuple[Field, ...] = (
    Field("codec_id", "u16", "codec id", 1, 0xFFFF),
    Field("codec_name", "str", "codec", 1, 32, pattern=r"[a-z0-9][a-z0-9._-]*"),
    Field("model_id", "str", "model id", 0, 64, pattern=r"[A-Za-z0-9._:+-]*", default=""),
    Field("weights_sha256", "digest", "weights sha256", default=""),
    Field("modality", "enum", "modality", choices=MODALITIES),
    Field("shape", "shape", "shape"),
    Field("colorspace", "enum", "colour space", choices=COLORSPACES, default="none"),
    Field("bit_depth", "u8", "bit depth", 1, 16, default=8),
    Field("quality", "u16", "quality", 0, 0xFFFF, default=0),
    Field("metadata", "json", "metadata", 0, 16384, default=None),
)
FIELD_NAMES = tuple(f.name for f in FIELDS)
_INTS = {"u8": "<B", "u16": "<H"}


# ----------------------------------------------------------------------------- validation


def _check_value(field: Field, value: Any) -> Any:
    """Return ``value`` in its canonical form or raise ``ContainerError``."""
    name = field.name
    if field.kind in _INTS:
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not field.lo <= value <= field.hi
        ):
            raise ContainerError(
                f"header field {name}: {value!r} not an integer in {field.lo}..{field.hi}"
            )
        return int(value)
    if field.kind == "str":
        ok = isinstance(value, str) and value.isascii() and field.lo <= len(value) <= field.hi
        if not ok or not re.fullmatch(field.pattern, value):
            raise ContainerError(
                f"header field {name}: {value!r} is not {field.lo}..{field.hi} chars of {field.pattern}"
            )
        return value
    if field.kind == "enum":
        if value not in field.choices:
            raise ContainerError(
                f"header field {name}: {value!r} not one of {', '.join(field.choices)}"
            )
        return value
    if field.kind == "digest":
        if not isinstance(value, str) or not re.fullmatch(r"([0-9a-f]{64})?", value.lower()):
            raise ContainerError(
                f"header field {name}: expected 64 hex digits or empty, got {value!r}"
            )
        return value.lower()
    if field.kind == "shape":
        return _check_shape_type(value)
    return _check_metadata(field, value)


def _check_shape_type(value: Any) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in value)
    except (TypeError, ValueError):
        raise ContainerError(
            f"header field shape: {value!r} is not a sequence of integers"
        ) from None
    if not 1 <= len(dims) <= LIMITS.max_ndim or any(d < 0 or d >= 1 << 32 for d in dims):
        raise ContainerError(
            f"header field shape: {dims} needs 1..{LIMITS.max_ndim} dimensions in 0..2^32-1"
        )
    return dims


def _check_metadata(field: Field, value: Any) -> dict[str, Any]:
    value = {} if value is None else value
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ContainerError("header field metadata: must be a dict with string keys")
    try:
        size = len(canonical_json(value))
    except (TypeError, ValueError) as exc:
        raise ContainerError(f"header field metadata: not JSON-able ({exc})") from None
    if size > field.hi:
        raise ContainerError(f"header field metadata: {size} bytes of JSON, limit {field.hi}")
    return json.loads(canonical_json(value))


def check_shape(modality: str, colorspace: str, shape: tuple[int, ...]) -> None:
    """Reject shapes a modality cannot have or that exceed ``LIMITS`` (before any allocation)."""
    lim = LIMITS
    if modality in ("image", "video"):
        want = 3 if modality == "image" else 4
        if len(shape) != want:
            raise ContainerError(f"{modality} shape must have {want} dimensions, got {shape}")
        frames, (h, w, c) = (shape[0] if want == 4 else 1), shape[-3:]
        if not (1 <= h <= lim.max_side and 1 <= w <= lim.max_side) or h * w > lim.max_pixels:
            raise ContainerError(
                f"{modality} size {h}x{w} outside the limits (sides 1..{lim.max_side}, at most {lim.max_pixels} pixels)"
            )
        if not 1 <= c <= lim.max_channels or not 1 <= frames <= lim.max_frames:
            raise ContainerError(f"{modality} shape {shape}: channels or frames out of range")
        need = IMAGE_CHANNELS.get(colorspace)
        if modality == "image" and need is None:
            raise ContainerError(f"colour space {colorspace} is not an image colour space")
        if modality == "image" and need != c:
            raise ContainerError(f"colour space {colorspace} needs {need} channels, shape has {c}")
        return
    # a mesh's shape counts two things (vertices, triangles): their sum bounds the work
    elements = sum(shape) if modality == "mesh" else math.prod(shape)
    if any(d > lim.max_dim for d in shape) or elements > lim.max_elements:
        raise ContainerError(f"{modality} shape {shape} exceeds the limits")


def validate_header(header: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults, check every field against ``FIELDS`` and return the canonical header."""
    unknown = set(header) - set(FIELD_NAMES)
    if unknown:
        raise ContainerError(f"unknown header fields: {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    for field in FIELDS:
        value = header.get(field.name, field.default)
        if value is None and field.kind != "json":
            raise ContainerError(f"header field {field.name} is required")
        out[field.name] = _check_value(field, value)
    check_shape(out["modality"], out["colorspace"], out["shape"])
    return out


# ----------------------------------------------------------------------------- binary form


def canonical_json(value: dict[str, Any]) -> bytes:
    """Sorted keys, no spaces, ASCII only: the same dict always gives the same bytes."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode()


def _pack_one(field: Field, value: Any) -> bytes:
    kind = field.kind
    if kind in _INTS:
        return struct.pack(_INTS[kind], value)
    if kind == "str":
        raw = value.encode("ascii")
        return struct.pack("<B", len(raw)) + raw
    if kind == "enum":
        return struct.pack("<B", field.choices.index(value))
    if kind == "digest":
        raw = bytes.fromhex(value)
        return struct.pack("<B", len(raw)) + raw
    if kind == "shape":
        return struct.pack(f"<B{len(value)}I", len(value), *value)
    raw = canonical_json(value)
    return struct.pack("<I", len(raw)) + raw


def pack_fields(header: dict[str, Any]) -> bytes:
    """The field block of a validated header, in table order."""
    return b"".join(_pack_one(f, header[f.name]) for f in FIELDS)


class _Cursor:
    """Reads fixed-size pieces off a buffer, raising ``ContainerError`` past its end."""

    def __init__(self, buf: bytes | memoryview, what: str) -> None:
        self.buf, self.pos, self.what = memoryview(buf), 0, what

    def take(self, n: int) -> bytes:
        if n > len(self.buf) - self.pos:
            raise ContainerError(f"corrupt header: {self.what} ends inside a field")
        out = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return out

    def unpack(self, fmt: str) -> tuple[int, ...]:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))


def _unpack_one(field: Field, cur: _Cursor) -> Any:
    kind = field.kind
    if kind in _INTS:
        return cur.unpack(_INTS[kind])[0]
    if kind == "str":
        raw = cur.take(cur.unpack("<B")[0])
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise ContainerError(f"header field {field.name}: not ASCII") from None
    if kind == "enum":
        index = cur.unpack("<B")[0]
        if index >= len(field.choices):
            raise ContainerError(f"header field {field.name}: unknown value {index}")
        return field.choices[index]
    if kind == "digest":
        return cur.take(cur.unpack("<B")[0]).hex()
    if kind == "shape":
        ndim = cur.unpack("<B")[0]
        if not 1 <= ndim <= LIMITS.max_ndim:
            raise ContainerError(f"header field shape: {ndim} dimensions")
        return cur.unpack(f"<{ndim}I")
    return _unpack_json(field, cur)


def _unpack_json(field: Field, cur: _Cursor) -> dict[str, Any]:
    size = cur.unpack("<I")[0]
    if size > field.hi:
        raise ContainerError(f"header field {field.name}: {size} bytes, limit {field.hi}")
    try:
        value = json.loads(cur.take(size).decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ContainerError(f"header field {field.name}: not valid JSON") from None
    if not isinstance(value, dict):
        raise ContainerError(f"header field {field.name}: not a JSON object")
    return value


def unpack_fields(block: bytes | memoryview) -> dict[str, Any]:
    """Parse a field block (exactly: leftover bytes are an error) and validate it."""
    cur = _Cursor(block, "field block")
    header = {f.name: _unpack_one(f, cur) for f in FIELDS}
    if cur.pos != len(cur.buf):
        raise ContainerError(
            f"corrupt header: {len(cur.buf) - cur.pos} unused bytes in the field block"
        )
    return validate_header(header)


# ----------------------------------------------------------------------------- printing


def _fmt(field: Field, value: Any) -> str:
    if field.kind == "shape":
        return " x ".join(str(d) for d in value)
    if field.kind == "json":
        return canonical_json(value).decode() if value else "{}"
    if value == "" or value is None:
        return "-"
    return str(value)


FORMATTERS: dict[str, Callable[[Any], str]] = {f.name: (lambda v, f=f: _fmt(f, v)) for f in FIELDS}


def describe(header: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, text) rows of a header in table order, for ``codec info``."""
    return [(f.label, FORMATTERS[f.name](header[f.name])) for f in FIELDS]
