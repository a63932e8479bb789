"""PlayCanvas / SuperSplat ``compressed.ply`` <-> ``GaussianScene``: the bit packing, both ways.

Layout: element ``chunk`` (one per 256 splats, in order) with float bounds ``min_x..max_z``,
``min_scale_x..max_scale_z`` (log scales) and, in newer files, ``min_r..max_b`` (colour); element
``vertex`` with four uint32 per splat; optional element ``sh`` with ``f_rest_*`` as uint8.

::

    packed_position  x:11 | y:10 | z:11 bits (x in the high bits), unorm within the chunk bounds
    packed_scale     the same 11-10-11 split, within the chunk's log-scale bounds
    packed_rotation  2 bits: index of the largest |component| of (rot_0..rot_3), sign made
                     positive; then the other three in order, 10 bits each, as
                     unorm(q * sqrt(2)/2 + 0.5); the largest is rebuilt as sqrt(1 - a^2 - b^2 - c^2)
    packed_color     r:8 | g:8 | b:8 | a:8 (r high): colour 0.5 + SH_C0 * f_dc within the chunk's
                     colour bounds (or [0, 1] without them), a = sigmoid(opacity)
    sh f_rest_*      uint8 q -> q / 255 * 8 - 4 (range [-4, 4])

unorm(t, bits) = clamp(floor(t * (2^bits - 1) + 0.5)); decoding is ``lerp(min, max, q / (2^bits-1))``
in float64. Opacity 0 and 255 decode to finite logits (a quarter step inside 0 and 1). A scene
read from such a file keeps the chunk bounds in ``GaussianScene.packing``; the writer reuses them
when they still hold the values, so decode -> encode gives back the same packed integers.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from neuralcodec.datasets.ply import read_ply, read_ply_header, write_ply
from neuralcodec.datasets.splat import (
    MAX_SPLATS,
    SH_C0,
    GaussianScene,
    SplatError,
    degree_of,
    logit,
    normalized,
    sigmoid,
)

CHUNK = 256
POSITION = ("min_x", "min_y", "min_z", "max_x", "max_y", "max_z")
SCALE = ("min_scale_x", "min_scale_y", "min_scale_z", "max_scale_x", "max_scale_y", "max_scale_z")
COLOR = ("min_r", "min_g", "min_b", "max_r", "max_g", "max_b")
PACKED = ("packed_position", "packed_rotation", "packed_scale", "packed_color")
_BITS_111011 = ((21, 11), (11, 10), (0, 11))
_SQRT1_2 = np.sqrt(0.5)


def _unorm(value: np.ndarray, bits: int) -> np.ndarray:
    t = (1 << bits) - 1
    return (np.asarray(value, np.uint32) & t).astype(np.float64) / t


def _pack_unorm(t: np.ndarray, bits: int) -> np.ndarray:
    top = (1 << bits) - 1
    return np.clip(np.floor(np.asarray(t, np.float64) * top + 0.5), 0, top).astype(np.uint32)


def _lerp(lo: np.ndarray, hi: np.ndarray, t: np.ndarray) -> np.ndarray:
    return lo * (1.0 - t) + hi * t


def _fraction(v: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    span = hi - lo
    safe = np.where(span > 0, span, 1.0)
    return np.where(span > 0, (np.asarray(v, np.float64) - lo) / safe, 0.0)


# ----------------------------------------------------------------------------- decode


def _float32(what: str, name: str, values: np.ndarray) -> np.ndarray:
    """``values`` as float32; ``SplatError`` when chunk bounds put one beyond float32's range."""
    values = np.asarray(values, np.float64)
    if values.size and float(np.abs(values).max()) > float(np.finfo(np.float32).max):
        raise SplatError(f"{what}: chunk bounds put {name} beyond the float32 range")
    return values.astype(np.float32)


def _bounds(
    chunk: dict, names: tuple[str, ...], per_splat: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    table = np.stack([chunk[n].astype(np.float64) for n in names], axis=1)[per_splat]
    return table[:, :3], table[:, 3:]


def unpack_111011(packed: np.ndarray) -> np.ndarray:
    return np.stack([_unorm(packed >> s, b) for s, b in _BITS_111011], axis=1)


def unpack_rotation(packed: np.ndarray) -> np.ndarray:
    packed = np.asarray(packed, np.uint32)
    abc = np.stack([(_unorm(packed >> s, 10) - 0.5) / _SQRT1_2 for s in (20, 10, 0)], axis=1)
    m = np.sqrt(np.maximum(0.0, 1.0 - np.sum(abc * abc, axis=1)))
    largest = (packed >> 30).astype(np.int64)
    q = np.empty((len(packed), 4))
    for i in range(4):
        others = [j for j in range(4) if j != i]
        sel = largest == i
        q[sel, i] = m[sel]
        q[np.ix_(sel, others)] = abc[sel]
    return q


def read_compressed(path: Path) -> GaussianScene:
    header = read_ply_header(path)
    chunk_el, vertex_el = header.element("chunk"), header.element("vertex")
    if vertex_el is None or any(vertex_el.prop(p) is None for p in PACKED):
        raise SplatError(f"{path}: compressed.ply without the packed vertex properties")
    if any(chunk_el.prop(p) is None for p in POSITION + SCALE):
        raise SplatError(f"{path}: compressed.ply chunk element lacks position / scale bounds")
    n = vertex_el.count
    if not 1 <= n <= MAX_SPLATS or chunk_el.count != -(-n // CHUNK):
        raise SplatError(
            f"{path}: {n} splats need {-(-n // CHUNK)} chunks, file has {chunk_el.count}"
        )
    _, data = read_ply(path, ("chunk", "vertex", "sh"))
    return unpack_compressed(data, str(path))


def unpack_compressed(data: dict[str, dict], what: str = "compressed.ply") -> GaussianScene:
    """The scene of compressed.ply elements ``{"chunk": .., "vertex": .., "sh": ..}`` (arrays as
    the PLY reader returns them); ``pack_compressed`` is its inverse on the integers."""
    chunk, vert = data["chunk"], data["vertex"]
    n = len(vert["packed_position"])
    per = np.arange(n) // CHUNK
    lo, hi = _bounds(chunk, POSITION, per)
    positions = _lerp(lo, hi, unpack_111011(vert["packed_position"]))
    lo, hi = _bounds(chunk, SCALE, per)
    scales = _lerp(lo, hi, unpack_111011(vert["packed_scale"]))
    color = vert["packed_color"].astype(np.uint32)
    rgba = np.stack([_unorm(color >> s, 8) for s in (24, 16, 8, 0)], axis=1)
    rgb = rgba[:, :3]
    has_color = all(p in chunk for p in COLOR)
    if has_color:
        lo, hi = _bounds(chunk, COLOR, per)
        rgb = _lerp(lo, hi, rgb)
    sh_rest, degree = _read_sh(what, data.get("sh"), n)
    packing = {
        name: chunk[name].astype(np.float32)
        for name in POSITION + SCALE + (COLOR if has_color else ())
    }
    packing["rotation_largest"] = (vert["packed_rotation"].astype(np.uint32) >> 30).astype(np.uint8)
    scene = GaussianScene(
        positions=_float32(what, "positions", positions),
        scales_log=_float32(what, "scales", scales),
        rotations=normalized(unpack_rotation(vert["packed_rotation"])),
        opacities=logit(rgba[:, 3]).astype(np.float32),
        sh_dc=_float32(what, "colours", (rgb - 0.5) / SH_C0),
        sh_rest=sh_rest,
        sh_degree=degree,
        packing=packing,
    )
    return scene.validate(what)


def _read_sh(path: str, sh: dict | None, n: int) -> tuple[np.ndarray, int]:
    if not sh:
        return np.zeros((n, 0, 3), np.float32), 0
    degree = degree_of(len(sh), str(path))
    k = (degree + 1) ** 2 - 1
    try:
        q = np.stack([sh[f"f_rest_{i}"] for i in range(3 * k)], axis=1).astype(np.float64)
    except KeyError:
        raise SplatError(
            f"{path}: sh element coefficients not named f_rest_0..{3 * k - 1}"
        ) from None
    if len(q) != n:
        raise SplatError(f"{path}: sh element has {len(q)} rows for {n} splats")
    rest = q / 255.0 * 8.0 - 4.0
    return rest.reshape(n, 3, k).transpose(0, 2, 1).astype(np.float32), degree


# ----------------------------------------------------------------------------- encode


def pack_111011(t: np.ndarray) -> np.ndarray:
    out = np.zeros(len(t), np.uint32)
    for col, (shift, bits) in enumerate(_BITS_111011):
        out |= _pack_unorm(t[:, col], bits) << np.uint32(shift)
    return out


def pack_rotation(q: np.ndarray, hint: np.ndarray | None = None) -> np.ndarray:
    """Smallest-three packing; ``hint`` (the dropped index a file used) wins over the largest
    component when the two are within two 10-bit steps, so near-ties repack as they were."""
    q = np.asarray(q, np.float64)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    largest = np.argmax(np.abs(q), axis=1)
    if hint is not None and len(hint) == len(q):
        hint = np.asarray(hint, np.int64) & 3
        near = np.abs(q[np.arange(len(q)), hint]) >= np.abs(q).max(axis=1) - 2.0 / 1023
        largest = np.where(near, hint, largest)
    q = np.where(q[np.arange(len(q)), largest][:, None] < 0, -q, q)
    out = largest.astype(np.uint32)
    for slot in range(3):  # the three components other than the largest, in order
        idx = slot + (largest <= slot)
        comp = q[np.arange(len(q)), idx]
        out = (out << np.uint32(10)) | _pack_unorm(comp * _SQRT1_2 + 0.5, 10)
    return out


def _chunk_bounds(values: np.ndarray, n_chunks: int) -> tuple[np.ndarray, np.ndarray]:
    pad = n_chunks * CHUNK - len(values)
    full = np.concatenate([values, np.repeat(values[-1:], pad, axis=0)]).reshape(
        n_chunks, CHUNK, -1
    )
    return full.min(axis=1), full.max(axis=1)


def _reusable(
    packing: dict | None, names: tuple[str, ...], values: np.ndarray, n_chunks: int
) -> bool:
    if not packing or any(k not in packing or len(packing[k]) != n_chunks for k in names):
        return False
    per = np.arange(len(values)) // CHUNK
    lo = np.stack([packing[k] for k in names[:3]], 1)[per].astype(np.float64)
    hi = np.stack([packing[k] for k in names[3:]], 1)[per].astype(np.float64)
    tol = 1e-6 * np.maximum(1.0, np.abs(hi - lo))
    return bool(np.all((values >= lo - tol) & (values <= hi + tol)))


def _bounds_for(scene: GaussianScene, names: tuple[str, ...], values: np.ndarray, n_chunks: int):
    if _reusable(scene.packing, names, values, n_chunks):
        lo = np.stack([scene.packing[k] for k in names[:3]], 1).astype(np.float32)
        hi = np.stack([scene.packing[k] for k in names[3:]], 1).astype(np.float32)
        return lo, hi
    lo, hi = _chunk_bounds(values, n_chunks)
    return lo.astype(np.float32), hi.astype(np.float32)


def _quantise(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    per = np.arange(len(values)) // CHUNK
    return _fraction(values, lo[per].astype(np.float64), hi[per].astype(np.float64))


def write_compressed(
    path: str | os.PathLike[str], scene: GaussianScene, force: bool = False
) -> Path:
    """Write ``scene`` as compressed.ply (``pack_compressed``)."""
    scene.validate(str(path))
    return write_ply(path, pack_compressed(scene), ("written by neuralcodec",), force=force)


def pack_compressed(scene: GaussianScene) -> dict[str, dict[str, np.ndarray]]:
    """The compressed.ply elements of ``scene``: chunks of 256 splats in scene order, with colour
    bounds (unless the scene came from a file without them) and, for SH degree > 0, ``sh``."""
    n = len(scene)
    n_chunks = -(-n // CHUNK)
    pos = np.asarray(scene.positions, np.float64)
    scl = np.asarray(scene.scales_log, np.float64)
    rgb = 0.5 + SH_C0 * np.asarray(scene.sh_dc, np.float64)
    chunk: dict[str, np.ndarray] = {}
    packed = {}
    for names, values, key in ((POSITION, pos, "packed_position"), (SCALE, scl, "packed_scale")):
        lo, hi = _bounds_for(scene, names, values, n_chunks)
        chunk.update({k: lo[:, i] for i, k in enumerate(names[:3])})
        chunk.update({k: hi[:, i] for i, k in enumerate(names[3:])})
        packed[key] = pack_111011(_quantise(values, lo, hi))
    colour_names = () if scene.packing and "min_r" not in scene.packing else COLOR
    if colour_names:
        lo, hi = _bounds_for(scene, COLOR, rgb, n_chunks)
        chunk.update({k: lo[:, i] for i, k in enumerate(COLOR[:3])})
        chunk.update({k: hi[:, i] for i, k in enumerate(COLOR[3:])})
        rgb = _quantise(rgb, lo, hi)
    t = np.concatenate([rgb, sigmoid(scene.opacities)[:, None]], axis=1)
    color = np.zeros(n, np.uint32)
    for col, shift in enumerate((24, 16, 8, 0)):
        color |= _pack_unorm(t[:, col], 8) << np.uint32(shift)
    vertex = {
        "packed_position": packed["packed_position"],
        "packed_rotation": pack_rotation(
            scene.rotations, (scene.packing or {}).get("rotation_largest")
        ),
        "packed_scale": packed["packed_scale"],
        "packed_color": color,
    }
    elements = {"chunk": {k: chunk[k] for k in POSITION + SCALE + colour_names}, "vertex": vertex}
    if scene.sh_degree > 0:
        rest = np.asarray(scene.sh_rest, np.float64).transpose(0, 2, 1).reshape(n, -1)
        q = np.clip(np.floor((rest + 4.0) / 8.0 * 255.0 + 0.5), 0, 255).astype(np.uint8)
        elements["sh"] = {f"f_rest_{i}": q[:, i] for i in range(q.shape[1])}
    return elements
