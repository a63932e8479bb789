"""``octree``: point clouds as a breadth-first octree with adaptive context coding.

::

    PointCloud --quantise (quality q -> 7 + q bits per axis over the cubic bounding box)-->
    integer points --Morton sort--> octree levels 0..bits-1, breadth first, nodes in Morton order
      occupancy of every node, child by child (slot 0..7), one adaptive bit each
      (entropy/adaptive.py, kernels/_adaptive.c) with a context from
          which face neighbours of the node lie on the child's sides (3 bits)
        x which neighbours of the child towards -x, -y, -z are occupied (3 bits: earlier
          siblings, or children of the node's -x / -y / -z neighbours, which Morton order puts
          before the node)
        x children found so far (0..3+) x slot x the parent's child count (1, 2-3, 4+)
        x depth class (last level, one above, higher); the last child of a node with none so
          far is implied
    leaves: points per occupied voxel - 1 (adaptive integer model)     -> stream "occ"
    attributes: rows in the decoder's order, residual against the previous point (Morton order),
      colour channels decorrelated, adaptive integer models             -> streams "a<i>"
    origin + step (float64), bits                                      -> stream "geom"

The decoder finds every node's neighbours of a level with NumPy (the level above fixes them),
then decodes the level in one C call that forms each context from what it has decoded.

Output (canonical order): the quantised points ``origin + q * step`` sorted by Morton code of q
(x, y, z interleaved, x highest); duplicates (points quantised to the same voxel) are all kept:
each voxel's point count is coded, and points of one voxel are ordered by their attribute values.
Attributes are lossless: integers exactly, floats through their float32 bit patterns (raw bytes
for anything else).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neuralcodec.datasets.pointcloud import MAX_POINTS, PointCloud
from neuralcodec.entropy.adaptive import (
    AdaptiveDecoder,
    AdaptiveEncoder,
    octree_mix_model,
)
from neuralcodec.entropy.rangecoder import DecodeError

from . import geometry as g
from . import pointcloud_sensor as sensor
from .base import Codec, CodecError, Encoded, register

MAGIC = b"NCPC"
# 3: the header's "geometry" names the geometry coder: absent for the octree (stream "tree", as
# format 2), else a sensor-ordered predictive coder, "lidar" or "camera" (stream "sensor",
# pointcloud_sensor.py);
# 2: the mixing octree coder (stream "tree"), still decoded; format 1 (stream "geom" only, no
# header field) is refused
FORMAT = 3
FORMATS = (2, 3)
GEOMETRY_MODES = ("octree", *sensor.MODES)
# the bits of x, y and z in a Morton code (x highest in each triple), 21 triples
_AXIS_MASKS = [
    sum(1 << (3 * i + 2 - a) for i in range(21)) for a in range(3)
]  # parent's child count x depth class
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)


# ----------------------------------------------------------------------------- level structure

_NB = 10  # neighbour indexes per node: the 7 towards -x, -y, -z, then -2x, -2y, -2z
_NEG_OFFSETS = [((m >> 2) & 1, (m >> 1) & 1, m & 1) for m in range(1, 8)]  # -(dx, dy, dz)


def _step(codes: np.ndarray, axis: int, sign: int) -> np.ndarray:
    """Morton codes moved one cell along ``axis`` (sign -1 or +1), arithmetic on its bits."""
    mask, unit = _AXIS_MASKS[axis], 1 << (2 - axis)
    rest = codes & ~mask
    if sign > 0:
        return (((codes | ~mask) + unit) & mask) | rest
    return (((codes & mask) - unit) & mask) | rest


def _find(codes: np.ndarray, wanted: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Index of each wanted code in sorted ``codes`` or -1 (where ``valid``)."""
    pos = np.searchsorted(codes, wanted)
    pos = np.minimum(pos, len(codes) - 1)
    hit = valid & (codes[pos] == wanted)
    return np.where(hit, pos, -1)


def _mix_contexts(codes, coords, depth) -> tuple[np.ndarray, np.ndarray]:
    """(N x 7 indexes of the neighbours at -(m >> 2 & 1, m >> 1 & 1, m & 1), m = 1..7, or -1;
    which of the 26 neighbours exist: bit 9 (dx + 1) + 3 (dy + 1) + dz + 1) of the sorted codes
    of one level."""
    side = 1 << depth
    n = len(codes)
    nb = np.empty((n, _NB), np.int64)
    mask = np.zeros(n, np.int64)
    for dx in (-1, 0, 1):
        cx = codes if dx == 0 else _step(codes, 0, dx)
        okx = (
            np.ones(n, bool)
            if dx == 0
            else (coords[:, 0] > 0 if dx < 0 else coords[:, 0] < side - 1)
        )
        for dy in (-1, 0, 1):
            cy = cx if dy == 0 else _step(cx, 1, dy)
            oky = (
                okx if dy == 0 else okx & (coords[:, 1] > 0 if dy < 0 else coords[:, 1] < side - 1)
            )
            for dz in (-1, 0, 1):
                if dx == dy == dz == 0:
                    continue
                cz = cy if dz == 0 else _step(cy, 2, dz)
                okz = (
                    oky
                    if dz == 0
                    else oky & (coords[:, 2] > 0 if dz < 0 else coords[:, 2] < side - 1)
                )
                found = _find(codes, cz, okz)
                mask |= (found >= 0).astype(np.int64) << (9 * (dx + 1) + 3 * (dy + 1) + dz + 1)
                if dx <= 0 and dy <= 0 and dz <= 0:
                    nb[:, (-dx) * 4 + (-dy) * 2 + (-dz) - 1] = found
    for a in range(3):  # two steps towards -x, -y, -z
        c = _step(_step(codes, a, -1), a, -1)
        nb[:, 7 + a] = _find(codes, c, coords[:, a] > 1)
    return nb, mask


def _next_level(codes, coords, occ):
    """Children (codes, coords, info = parent's occupancy | slot << 8) of the nodes with
    occupancy bytes ``occ`` (0 for none), in Morton order."""
    mask = np.unpackbits(occ.astype(np.uint8)[:, None], axis=1)[:, ::-1]
    node, slot = np.nonzero(mask)
    bit = np.stack([(slot >> 2) & 1, (slot >> 1) & 1, slot & 1], axis=1)
    return codes[node] * 8 + slot, coords[node] * 2 + bit, occ[node] | (slot << 8)


def _eligible(pattern, rem) -> np.ndarray:
    """Nodes that code the direct-mode flag: none of their 26 neighbours occupied, two or more
    levels below (the C file's rule)."""
    return (pattern == 0) & (rem >= 2)


_FACES = (1 << 4) | (1 << 22) | (1 << 10) | (1 << 16) | (1 << 12) | (1 << 14)


def _leaf_neighbours(leaves: np.ndarray) -> np.ndarray:
    """Indexes of the -x, -y, -z neighbours of every sorted leaf voxel, or -1 (N x 3)."""
    coords = np.stack([g.compact(leaves >> s) for s in (2, 1, 0)], axis=1)
    return np.stack(
        [_find(leaves, _step(leaves, a, -1), coords[:, a] > 0) for a in range(3)], axis=1
    )


def _children(codes, coords, occupancy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Child codes, coords and each child's parent's child count, in Morton order."""
    mask = np.unpackbits(occupancy.astype(np.uint8)[:, None], axis=1)  # MSB = child 7
    node, slot = np.nonzero(mask[:, ::-1])  # slot = child index 0..7, ascending per node
    child_codes = codes[node] * 8 + slot
    bit = np.stack([(slot >> 2) & 1, (slot >> 1) & 1, slot & 1], axis=1)
    child_coords = coords[node] * 2 + bit
    return child_codes, child_coords, _POPCOUNT[occupancy[node]]


class _Octree:
    """Occupancy of every level of the octree of sorted unique Morton codes."""

    def __init__(self, leaves: np.ndarray, bits: int):
        self.levels = []  # occupancy bytes per depth 0..bits-1
        self.codes = []  # the sorted node codes of each depth
        codes = leaves
        for _ in range(bits):
            parents = codes >> 3
            starts = np.flatnonzero(np.r_[True, parents[1:] != parents[:-1]])
            occ = np.bitwise_or.reduceat(np.left_shift(1, codes & 7), starts)
            self.levels.append(occ.astype(np.int64))
            codes = parents[starts]
            self.codes.append(codes)
        self.levels.reverse()
        self.codes.reverse()

    def occupancy(self, depth: int, codes: np.ndarray) -> np.ndarray:
        """Occupancy bytes of the given nodes (sorted codes present at ``depth``)."""
        return self.levels[depth][np.searchsorted(self.codes[depth], codes)]


@register
class OctreePointCloudCodec(Codec):
    name = "octree"
    codec_id = 40
    modality = "pointcloud"
    quality_range = (1, 9)
    extensions = (".ply", ".pcd", ".xyz", ".bin")
    description = "octree occupancy with adaptive neighbour contexts; quality q = 7 + q bits/axis"
    rank = 10

    # ------------------------------------------------------------------ encode
    def _prepare(self, data: Any, quality: int):
        if not isinstance(data, PointCloud):
            raise CodecError(f"octree takes a PointCloud, got {type(data).__name__}")
        cloud = data.validate()
        bits = g.quality_to_bits(self.check_quality(quality))
        q, origin, step = g.quantise(cloud.xyz, bits)
        codes = g.morton(q)
        keys = []
        for name in reversed(list(cloud.attributes)):
            arr = np.asarray(cloud.attributes[name])
            cols = arr.reshape(len(arr), -1)
            keys.extend(cols[:, j] for j in reversed(range(cols.shape[1])))
        order = np.lexsort([*keys, codes])
        return cloud, bits, origin, step, codes[order], order

    def _code_geometry(self, enc: AdaptiveEncoder, codes: np.ndarray, bits: int) -> None:
        leaves, counts = np.unique(codes, return_counts=True)
        tree = _Octree(leaves, bits)
        model = octree_mix_model()
        level, coords = np.zeros(1, np.int64), np.zeros((1, 3), np.int64)
        info = np.zeros(1, np.int64)
        direct = []
        for depth in range(bits):
            rem = bits - depth
            nb, pattern = _mix_contexts(level, coords, depth)
            occ = tree.occupancy(depth, level)
            single = np.zeros(len(level), np.int64)
            offsets = np.zeros((len(level), 3), np.int64)
            cand = np.flatnonzero(_eligible(pattern, rem))
            if len(cand):
                lo = np.searchsorted(leaves, level[cand] << (3 * rem))
                hi = np.searchsorted(leaves, (level[cand] + 1) << (3 * rem))
                cand, lo = cand[hi - lo == 1], lo[hi - lo == 1]
                single[cand] = 1
                rest = leaves[lo] - (level[cand] << (3 * rem))
                offsets[cand] = np.stack([g.compact(rest >> s) for s in (2, 1, 0)], axis=1)
                direct.append(leaves[lo])
            enc.code_octree_mix_level(occ, single, offsets, nb, pattern, info, depth, bits, model)
            level, coords, info = _next_level(level, coords, np.where(single == 1, 0, occ))
        enc.code_octree_counts(counts - 1, _leaf_neighbours(leaves))

    def _streams(self, data: Any, quality: int, modes=GEOMETRY_MODES):
        """(streams, ideal geometry bits, bits per axis, geometry mode): every mode in ``modes``
        is tried and the one with the shortest geometry stream kept."""
        cloud, bits, origin, step, codes, order = self._prepare(data, quality)
        best = None
        if "octree" in modes:
            enc = AdaptiveEncoder()
            self._code_geometry(enc, codes, bits)
            best = ("octree", "tree", enc.finish(), enc.bits)
        sensor_modes = [m for m in modes if m in sensor.MODES]
        if sensor_modes:
            q, _, _ = g.quantise(cloud.xyz, bits)
            centre = -origin / step if np.all(np.isfinite(-origin / step)) else None
            # the points in grid units around the coordinates' origin, unrounded
            rel = np.asarray(cloud.xyz, np.float64) / step
            found = sensor.encode(q, bits, centre, sensor_modes, rel)
            if found is not None and (best is None or len(found[1]) < len(best[2])):
                # kept only if it decodes to these points (a model the decoder's range checks
                # refuse, e.g. a sensor far outside the cloud, falls back to the octree)
                try:
                    back = sensor.decode(found[0], AdaptiveDecoder(found[1]), len(q), bits)
                    same = np.array_equal(np.sort(g.morton(back)), codes)
                except (CodecError, DecodeError):
                    same = False
                if same:
                    best = (found[0], "sensor", found[1], found[2])
        if best is None:
            raise CodecError(f"octree: no geometry mode of {', '.join(modes)} fits this cloud")
        mode, name, payload, estimate = best
        streams = {"geom": g.pack_geometry(MAGIC, bits, origin, step), name: payload}
        descs = []
        for i, (name, arr) in enumerate(cloud.attributes.items()):
            stream, desc = g.encode_attribute(np.asarray(arr)[order])
            streams[f"a{i}"] = stream
            descs.append({"name": name, **desc})
        streams["attrs"] = g.pack_json(descs)
        return streams, estimate, bits, mode

    def encode(self, data: Any, quality: int, modes=GEOMETRY_MODES) -> Encoded:
        """``modes``: the geometry coders to try (default all; the shortest is kept)."""
        streams, _, bits, mode = self._streams(data, quality, modes)
        header = {"bit_depth": bits, "quality": quality, "shape": (len(data), 3), "format": FORMAT}
        if mode != "octree":  # no field: the octree (small clouds pay for every header byte)
            header["geometry"] = mode
        return Encoded(self.name, header, streams)

    def estimated_bits(self, data: Any, quality: int) -> float:
        """Ideal code length of the geometry stream under the adaptive model (attributes and the
        fixed-size headers excluded)."""
        return self._streams(data, quality)[1]

    def geometry_mode(self, data: Any, quality: int) -> str:
        """The geometry coder ``encode`` picks for ``data`` at ``quality``."""
        return self._streams(data, quality)[3]

    # ------------------------------------------------------------------ decode
    def decode(self, encoded: Encoded) -> PointCloud:
        streams = encoded.streams
        fmt = encoded.header.get("format", 1)
        if fmt not in FORMATS:
            raise CodecError(
                f"octree: the file is in format {fmt!r} of this codec; this version decodes "
                f"formats {', '.join(map(str, FORMATS))} (re-encode the source with this version)"
            )
        mode = encoded.header.get("geometry", "octree") if fmt == 3 else "octree"
        if mode not in GEOMETRY_MODES:
            raise CodecError(f"octree: unknown geometry mode {mode!r}")
        payload = "tree" if mode == "octree" else "sensor"
        missing = [s for s in ("geom", payload, "attrs") if s not in streams]
        if missing:
            raise CodecError(f"octree: missing streams {', '.join(missing)}")
        bits, origin, step = g.unpack_geometry(MAGIC, streams["geom"], "octree")
        try:
            n = int(encoded.header["shape"][0])
        except (KeyError, TypeError, ValueError, IndexError):
            raise CodecError("octree: header has no point count") from None
        if not 1 <= n <= MAX_POINTS:
            raise CodecError(f"octree: header claims {n} points")
        try:
            if mode == "octree":
                codes = self._decode_geometry(AdaptiveDecoder(streams["tree"]), bits, n)
            else:
                q = sensor.decode(mode, AdaptiveDecoder(streams["sensor"]), n, bits)
                codes = np.sort(g.morton(q))
        except DecodeError as exc:
            raise CodecError(f"octree: corrupt {payload} stream ({exc})") from None
        q = np.stack([g.compact(codes >> s) for s in (2, 1, 0)], axis=1)
        xyz = g.dequantise(q, origin, step)
        attrs = {}
        descs = g.unpack_json(streams["attrs"], "octree")
        if not isinstance(descs, list):
            raise CodecError("octree: bad attribute list")
        for i, desc in enumerate(descs):
            if not isinstance(desc, dict) or not isinstance(desc.get("name"), str):
                raise CodecError("octree: bad attribute list")
            if f"a{i}" not in streams:
                raise CodecError(f"octree: missing stream a{i}")
            attrs[desc["name"]] = g.decode_attribute(streams[f"a{i}"], desc, n, "octree")
        return PointCloud(xyz, attrs)

    def _decode_geometry(self, dec: AdaptiveDecoder, bits: int, n: int) -> np.ndarray:
        model = octree_mix_model()
        level, coords = np.zeros(1, np.int64), np.zeros((1, 3), np.int64)
        info = np.zeros(1, np.int64)
        direct, direct_count = [], 0
        for depth in range(bits):
            rem = bits - depth
            nb, pattern = _mix_contexts(level, coords, depth)
            occ, single, offsets = dec.code_octree_mix_level(nb, pattern, info, depth, bits, model)
            one = single == 1
            if one.any():
                direct.append((level[one] << (3 * rem)) | g.morton(offsets[one].astype(np.int64)))
                direct_count += int(one.sum())
            level, coords, info = _next_level(level, coords, np.where(one, 0, occ & 0xFF))
            if len(level) + direct_count > n:
                raise CodecError(f"octree: corrupt occupancy stream (more than {n} voxels)")
        leaves = np.sort(np.concatenate([level, *direct]))
        counts = dec.code_octree_counts(_leaf_neighbours(leaves)).astype(np.int64) + 1
        if np.any(counts < 1) or int(counts.sum()) != n:
            raise CodecError(f"octree: corrupt stream (voxel counts do not add up to {n} points)")
        return np.repeat(leaves, counts)


# ----------------------------------------------------------------------------- for the demo


def quantised_points(cloud: PointCloud, quality: int) -> np.ndarray:
    """The points the decoder returns for ``cloud`` at ``quality`` (canonical order, float64)."""
    codec = OctreePointCloudCodec()
    _, bits, origin, step, codes, _ = codec._prepare(cloud, quality)
    q = np.stack([g.compact(codes >> s) for s in (2, 1, 0)], axis=1)
    return g.dequantise(q, origin, step)
