"""Shared pieces of the geometry codecs (point clouds, meshes): quantisation, Morton codes,
attribute residual coding and the small stream headers.

Quantisation: ``bits`` per axis over the cubic bounding box of the input (the largest extent,
as Draco does), ``q = round((x - origin) / step)`` with ``step = extent / (2^bits - 1)``; origin
and step are stored as float64, so the decoder returns ``origin + q * step`` exactly as the
encoder computed it.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

from neuralcodec.entropy.adaptive import INT_CONTEXTS, AdaptiveDecoder, AdaptiveEncoder, states
from neuralcodec.entropy.rangecoder import DecodeError

from .base import CodecError

MIN_BITS, MAX_BITS = 8, 16


def quality_to_bits(quality: int) -> int:
    """Quality 1..9 -> 8..16 bits per axis."""
    return MIN_BITS - 1 + int(quality)


def quantise(xyz: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(integer coordinates int64 N x 3, origin float64[3], step float64)."""
    x = np.asarray(xyz, dtype=np.float64)
    origin = x.min(axis=0)
    extent = float((x.max(axis=0) - origin).max())
    top = (1 << bits) - 1
    step = extent / top if extent > 0 else 1.0
    q = np.rint((x - origin) / step)
    return np.clip(q, 0, top).astype(np.int64), origin, step


def dequantise(q: np.ndarray, origin: np.ndarray, step: float) -> np.ndarray:
    return origin + np.asarray(q, dtype=np.float64) * step


_GEOM = struct.Struct("<4sBB3dd")  # magic, version, bits, origin, step


def pack_geometry(magic: bytes, bits: int, origin: np.ndarray, step: float) -> bytes:
    return _GEOM.pack(magic, 1, bits, *(float(v) for v in origin), float(step))


def unpack_geometry(magic: bytes, data: bytes, what: str) -> tuple[int, np.ndarray, float]:
    if len(data) != _GEOM.size:
        raise CodecError(f"{what}: geometry header is {len(data)} bytes, expected {_GEOM.size}")
    m, version, bits, ox, oy, oz, step = _GEOM.unpack(data)
    if m != magic or version != 1:
        raise CodecError(f"{what}: not a {magic.decode()} v1 geometry header")
    if not MIN_BITS <= bits <= MAX_BITS:
        raise CodecError(f"{what}: {bits} bits per axis outside {MIN_BITS}..{MAX_BITS}")
    origin = np.array([ox, oy, oz])
    if not grid_is_finite(origin, step, bits):
        raise CodecError(f"{what}: origin and step in the geometry header overflow the grid")
    return bits, origin, step


def grid_is_finite(origin: np.ndarray, step: float, bits: int) -> bool:
    """Whether every point of the ``bits``-per-axis grid at ``origin`` with ``step`` (step > 0) is a
    finite float64, so that ``dequantise`` cannot overflow."""
    if not (np.isfinite(origin).all() and np.isfinite(step) and step > 0):
        return False
    with np.errstate(over="ignore"):
        far = np.abs(np.asarray(origin, np.float64)) + float((1 << bits) - 1) * step
    return bool(np.isfinite(far).all())


# ----------------------------------------------------------------------------- Morton codes


def spread(v: np.ndarray) -> np.ndarray:
    """Bits 0..20 of v to bits 0, 3, 6, ... (uint64)."""
    x = v.astype(np.uint64) & np.uint64(0x1FFFFF)
    x = (x | (x << np.uint64(32))) & np.uint64(0x1F00000000FFFF)
    x = (x | (x << np.uint64(16))) & np.uint64(0x1F0000FF0000FF)
    x = (x | (x << np.uint64(8))) & np.uint64(0x100F00F00F00F00F)
    x = (x | (x << np.uint64(4))) & np.uint64(0x10C30C30C30C30C3)
    x = (x | (x << np.uint64(2))) & np.uint64(0x1249249249249249)
    return x


def compact(code: np.ndarray) -> np.ndarray:
    """Inverse of ``spread``: every third bit of ``code`` from bit 0 (int64)."""
    x = code.astype(np.uint64) & np.uint64(0x1249249249249249)
    x = (x | (x >> np.uint64(2))) & np.uint64(0x10C30C30C30C30C3)
    x = (x | (x >> np.uint64(4))) & np.uint64(0x100F00F00F00F00F)
    x = (x | (x >> np.uint64(8))) & np.uint64(0x1F0000FF0000FF)
    x = (x | (x >> np.uint64(16))) & np.uint64(0x1F00000000FFFF)
    x = (x | (x >> np.uint64(32))) & np.uint64(0x1FFFFF)
    return x.astype(np.int64)


def morton(q: np.ndarray) -> np.ndarray:
    """Morton code of integer coordinates (N x 3, < 2^21): x in the highest bit of each triple."""
    q = np.asarray(q)
    code = (spread(q[:, 0]) << np.uint64(2)) | (spread(q[:, 1]) << np.uint64(1)) | spread(q[:, 2])
    return code.astype(np.int64)


# ----------------------------------------------------------------------------- attributes

# Attribute coding modes
INT_MODE = 0  # integer values (or floats that are all integers in int32 range)
FLOAT32_MODE = 1  # float32 bit patterns mapped to ordered integers (lossless)
RAW_MODE = 2  # anything else: raw little-endian bytes
UV_MODE = 3  # texture coordinates quantised over their bounding square (lossy)
NORMAL_MODE = 4  # normals as quantised octahedral coordinates (lossy)
_MODES = (INT_MODE, FLOAT32_MODE, RAW_MODE, UV_MODE, NORMAL_MODE)


def _ordered_from_f32(a: np.ndarray) -> np.ndarray:
    """float32 -> int64 whose order follows the float order (bit pattern, sign folded)."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.int32).astype(np.int64)
    return np.where(u < 0, -(u & 0x7FFFFFFF) - 1, u)


def _f32_from_ordered(o: np.ndarray) -> np.ndarray:
    u = np.where(o < 0, (-(o + 1)) | -0x80000000, o).astype(np.int64)
    return (u & 0xFFFFFFFF).astype(np.uint32).view(np.float32)


def attribute_mode(arr: np.ndarray) -> int:
    a = np.asarray(arr)
    if a.dtype.kind in "iu":
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
        return INT_MODE if lo >= -(1 << 30) and hi < 1 << 30 else RAW_MODE
    if a.dtype.kind == "f":
        f = a.astype(np.float64)
        if np.all(np.isfinite(f)) and np.all(f == np.round(f)) and np.all(np.abs(f) < 1 << 30):
            return INT_MODE
        if a.dtype != np.float64 or np.array_equal(a.astype(np.float32).astype(np.float64), a):
            return FLOAT32_MODE
    return RAW_MODE


def _predict_residuals(v: np.ndarray) -> np.ndarray:
    """Residuals against the previous row (N x k int64); colour-like rows (k = 3) code the second
    channel's change first and the other two relative to it."""
    d = np.diff(v, axis=0, prepend=np.zeros((1, v.shape[1]), np.int64))
    if v.shape[1] == 3:
        d = d.copy()
        d[:, 0] -= d[:, 1]
        d[:, 2] -= d[:, 1]
        d = d[:, [1, 0, 2]]
    return d


def _undo_residuals(d: np.ndarray) -> np.ndarray:
    if d.shape[1] == 3:
        g = d[:, 0]
        d = np.stack([d[:, 1] + g, g, d[:, 2] + g], axis=1)
    return np.cumsum(d, axis=0)


def _encode_rows(v: np.ndarray) -> bytes | None:
    """Integer rows (N x k int64) as residuals with adaptive models; None if out of range."""
    d = _predict_residuals(v)
    if d.size and (d.min() < -(1 << 31) or d.max() >= 1 << 31):
        return None
    k = d.shape[1]
    enc = AdaptiveEncoder()
    sets = np.tile(np.arange(k, dtype=np.int32), len(d))
    enc.code_ints(d.reshape(-1), sets, states(k * 3 * INT_CONTEXTS), markov=3)
    return enc.finish()


def _decode_rows(data: bytes, n: int, k: int, what: str) -> np.ndarray:
    sets = np.tile(np.arange(k, dtype=np.int32), n)
    try:
        dec = AdaptiveDecoder(data)
        d = dec.code_ints(sets, states(k * 3 * INT_CONTEXTS), markov=3)
    except DecodeError as exc:
        raise CodecError(f"{what}: corrupt attribute stream ({exc})") from None
    return _undo_residuals(d.astype(np.int64).reshape(n, k))


def _raw(rows: np.ndarray) -> bytes:
    return np.ascontiguousarray(rows.astype(rows.dtype.newbyteorder("<"))).tobytes()


def encode_attribute(arr: np.ndarray) -> tuple[bytes, dict[str, Any]]:
    """One attribute column (N or N x k, rows in the decoder's order) -> (stream, description),
    lossless."""
    a = np.asarray(arr)
    width = 0 if a.ndim == 1 else int(a.shape[1])
    desc = {"dtype": str(a.dtype), "width": width, "mode": attribute_mode(a)}
    rows = a.reshape(len(a), -1)
    if desc["mode"] == RAW_MODE:
        return _raw(rows), desc
    if desc["mode"] == INT_MODE:
        v = np.rint(rows.astype(np.float64)).astype(np.int64) if a.dtype.kind == "f" else rows
        v = v.astype(np.int64)
    else:
        v = _ordered_from_f32(rows)
    stream = _encode_rows(v)
    if stream is None:
        return _raw(rows), {**desc, "mode": RAW_MODE}
    return stream, desc


def encode_uvs(arr: np.ndarray, bits: int) -> tuple[bytes, dict[str, Any]]:
    """Texture coordinates (N x 2 floats) quantised to ``bits`` per component over their
    bounding square, like positions."""
    a = np.asarray(arr)
    q, origin, step = quantise_columns(a, bits)
    desc = {"dtype": str(a.dtype), "width": int(a.shape[1]), "mode": UV_MODE, "bits": bits}
    desc.update(origin=[float(x) for x in origin], step=float(step))
    return _encode_rows(q), desc


def quantise_columns(a: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, float]:
    x = np.asarray(a, dtype=np.float64)
    origin = x.min(axis=0) if len(x) else np.zeros(x.shape[1])
    extent = float((x.max(axis=0) - origin).max()) if len(x) else 0.0
    top = (1 << bits) - 1
    step = extent / top if extent > 0 else 1.0
    return np.clip(np.rint((x - origin) / step), 0, top).astype(np.int64), origin, step


def octahedral(normals: np.ndarray, bits: int) -> np.ndarray:
    """Unit normals -> N x 2 integers in 0..2^bits-1 (octahedral map; zero vectors -> +z)."""
    n = np.asarray(normals, dtype=np.float64)
    l1 = np.abs(n).sum(axis=1, keepdims=True)
    p = np.where(l1 > 0, n / np.where(l1 > 0, l1, 1), [0.0, 0.0, 1.0])
    u, v, z = p[:, 0], p[:, 1], p[:, 2]
    su, sv = np.where(u >= 0, 1.0, -1.0), np.where(v >= 0, 1.0, -1.0)
    uu = np.where(z < 0, (1 - np.abs(v)) * su, u)
    vv = np.where(z < 0, (1 - np.abs(u)) * sv, v)
    top = (1 << bits) - 1
    return np.clip(np.rint((np.stack([uu, vv], 1) + 1) / 2 * top), 0, top).astype(np.int64)


def from_octahedral(q: np.ndarray, bits: int) -> np.ndarray:
    top = (1 << bits) - 1
    uv = np.asarray(q, dtype=np.float64) / top * 2 - 1
    u, v = uv[:, 0], uv[:, 1]
    z = 1 - np.abs(u) - np.abs(v)
    su, sv = np.where(u >= 0, 1.0, -1.0), np.where(v >= 0, 1.0, -1.0)
    x = np.where(z < 0, (1 - np.abs(v)) * su, u)
    y = np.where(z < 0, (1 - np.abs(u)) * sv, v)
    n = np.stack([x, y, z], 1)
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def encode_normals(arr: np.ndarray, bits: int) -> tuple[bytes, dict[str, Any]]:
    """Normals (N x 3 floats), normalised, as octahedral coordinates of ``bits`` each."""
    a = np.asarray(arr)
    desc = {"dtype": str(a.dtype), "width": 3, "mode": NORMAL_MODE, "bits": bits}
    return _encode_rows(octahedral(a, bits)), desc


def decode_attribute(data: bytes, desc: dict[str, Any], n: int, what: str) -> np.ndarray:
    try:
        dtype = np.dtype(desc["dtype"])
        width, mode = int(desc["width"]), int(desc["mode"])
    except (KeyError, TypeError, ValueError):
        raise CodecError(f"{what}: bad attribute description") from None
    if dtype.kind not in "iuf" or not 0 <= width <= 64 or mode not in _MODES:
        raise CodecError(f"{what}: bad attribute description")
    k = max(width, 1)
    shape = (n,) if width == 0 else (n, width)
    if mode == RAW_MODE:
        want = n * k * dtype.itemsize
        if len(data) != want:
            raise CodecError(f"{what}: raw attribute has {len(data)} bytes, expected {want}")
        return np.frombuffer(data, dtype.newbyteorder("<")).astype(dtype).reshape(shape)
    if mode in (UV_MODE, NORMAL_MODE):
        return _decode_quantised(data, desc, dtype, n, what)
    v = _decode_rows(data, n, k, what)
    if mode == FLOAT32_MODE:
        if v.size and (v.min() < -(1 << 31) or v.max() >= 1 << 31):
            raise CodecError(f"{what}: corrupt attribute stream (value out of range)")
        out = _f32_from_ordered(v)
    else:
        out = v
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if v.size and (v.min() < info.min or v.max() > info.max):
            raise CodecError(f"{what}: corrupt attribute stream (value outside {dtype})")
    return out.astype(dtype).reshape(shape)


def _decode_quantised(data, desc, dtype, n: int, what: str) -> np.ndarray:
    try:
        bits, mode, width = int(desc["bits"]), int(desc["mode"]), int(desc["width"])
        if mode == UV_MODE:
            origin = np.array([float(x) for x in desc["origin"]], dtype=np.float64)
            step = float(desc["step"])
    except (KeyError, TypeError, ValueError):
        raise CodecError(f"{what}: bad attribute description") from None
    if not 1 <= bits <= 24 or dtype.kind != "f":
        raise CodecError(f"{what}: bad attribute description")
    if mode == UV_MODE:
        if origin.shape != (width,) or not (np.isfinite(origin).all() and np.isfinite(step)):
            raise CodecError(f"{what}: bad attribute description")
        q = _decode_rows(data, n, width, what)
        return (origin + q * step).astype(dtype)
    if width != 3:
        raise CodecError(f"{what}: bad attribute description")
    q = _decode_rows(data, n, 2, what)
    return from_octahedral(np.clip(q, 0, (1 << bits) - 1), bits).astype(dtype)


def pack_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def unpack_json(data: bytes, what: str) -> Any:
    try:
        return json.loads(bytes(data).decode())
    except (UnicodeDecodeError, ValueError):
        raise CodecError(f"{what}: unreadable description stream") from None
