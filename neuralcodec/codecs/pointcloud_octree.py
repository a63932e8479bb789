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
    INT_CONTEXTS,
    OCTREE_CONTEXTS,
    AdaptiveDecoder,
    AdaptiveEncoder,
    states,
)
from neuralcodec.entropy.rangecoder import DecodeError

from . import geometry as g
from .base import Codec, CodecError, Encoded, register

MAGIC = b"NCPC"
_NUM_BASES = 3 * 3
# the bits of x, y and z in a Morton code (x highest in each triple), 21 triples
_AXIS_MASKS = [
    sum(1 << (3 * i + 2 - a) for i in range(21)) for a in range(3)
]  # parent's child count x depth class
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)


def _level_contexts(
    codes: np.ndarray, coords: np.ndarray, parent_children: np.ndarray, depth: int, bits: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indexes of the -x, -y, -z face neighbours in this level or -1 (N x 3), 6-neighbour
    pattern, base context) of every node of one level (codes sorted, coords N x 3)."""
    side = 1 << depth
    pattern = np.zeros(len(codes), dtype=np.int64)
    neighbours = np.full((len(codes), 3), -1, dtype=np.int64)
    for axis in range(3):
        mask, unit = _AXIS_MASKS[axis], 1 << (2 - axis)
        rest = codes & ~mask
        for sign in (0, 1):  # -1, then +1 along the axis (Morton arithmetic on the axis' bits)
            if sign:
                inside = coords[:, axis] < side - 1
                nc = (((codes | ~mask) + unit) & mask) | rest
            else:
                inside = coords[:, axis] > 0
                nc = (((codes & mask) - unit) & mask) | rest
            pos = np.searchsorted(codes, nc)
            found = inside & (pos < len(codes))
            found[found] = codes[pos[found]] == nc[found]
            pattern |= found.astype(np.int64) << (2 * axis + sign)
            if not sign:
                neighbours[found, axis] = pos[found]
    density = np.minimum(np.searchsorted([2, 4], parent_children, side="right"), 2)
    remaining = bits - depth
    depth_class = 0 if remaining == 1 else (1 if remaining == 2 else 2)
    return neighbours, pattern, density * 3 + depth_class


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
        codes = leaves
        for _ in range(bits):
            parents = codes >> 3
            starts = np.flatnonzero(np.r_[True, parents[1:] != parents[:-1]])
            occ = np.bitwise_or.reduceat(np.left_shift(1, codes & 7), starts)
            self.levels.append(occ.astype(np.int64))
            codes = parents[starts]
        self.levels.reverse()


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
        st = states(_NUM_BASES * OCTREE_CONTEXTS)
        level_codes = np.zeros(1, np.int64)
        coords = np.zeros((1, 3), np.int64)
        parent_children = np.ones(1, np.int64)
        for depth, occ in enumerate(tree.levels):
            ctx = _level_contexts(level_codes, coords, parent_children, depth, bits)
            enc.code_octree_level(occ, *ctx, st)
            level_codes, coords, parent_children = _children(level_codes, coords, occ)
        enc.code_ints(counts - 1, np.zeros(len(counts), np.int32), states(2 * INT_CONTEXTS), 2)

    def _streams(self, data: Any, quality: int) -> tuple[dict[str, bytes], float, int]:
        cloud, bits, origin, step, codes, order = self._prepare(data, quality)
        enc = AdaptiveEncoder()
        self._code_geometry(enc, codes, bits)
        streams = {"geom": g.pack_geometry(MAGIC, bits, origin, step), "occ": enc.finish()}
        estimate = enc.bits
        descs = []
        for i, (name, arr) in enumerate(cloud.attributes.items()):
            stream, desc = g.encode_attribute(np.asarray(arr)[order])
            streams[f"a{i}"] = stream
            descs.append({"name": name, **desc})
        streams["attrs"] = g.pack_json(descs)
        return streams, estimate, bits

    def encode(self, data: Any, quality: int) -> Encoded:
        streams, _, bits = self._streams(data, quality)
        header = {"bit_depth": bits, "quality": quality, "shape": (len(data), 3)}
        return Encoded(self.name, header, streams)

    def estimated_bits(self, data: Any, quality: int) -> float:
        """Ideal code length of the geometry stream under the adaptive model (attributes and the
        fixed-size headers excluded)."""
        return self._streams(data, quality)[1]

    # ------------------------------------------------------------------ decode
    def decode(self, encoded: Encoded) -> PointCloud:
        streams = encoded.streams
        missing = [s for s in ("geom", "occ", "attrs") if s not in streams]
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
            codes = self._decode_geometry(AdaptiveDecoder(streams["occ"]), bits, n)
        except DecodeError as exc:
            raise CodecError(f"octree: corrupt occupancy stream ({exc})") from None
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
        st = states(_NUM_BASES * OCTREE_CONTEXTS)
        level_codes = np.zeros(1, np.int64)
        coords = np.zeros((1, 3), np.int64)
        parent_children = np.ones(1, np.int64)
        for depth in range(bits):
            ctx = _level_contexts(level_codes, coords, parent_children, depth, bits)
            occ = dec.code_octree_level(*ctx, st).astype(np.int64)
            if np.any(occ == 0):
                raise CodecError("octree: corrupt occupancy stream (empty node)")
            if int(_POPCOUNT[occ].sum()) > n:
                raise CodecError(f"octree: corrupt occupancy stream (more than {n} nodes)")
            level_codes, coords, parent_children = _children(level_codes, coords, occ)
        counts = (
            dec.code_ints(np.zeros(len(level_codes), np.int32), states(2 * INT_CONTEXTS), 2).astype(
                np.int64
            )
            + 1
        )
        if np.any(counts < 1) or int(counts.sum()) != n:
            raise CodecError(f"octree: corrupt stream (voxel counts do not add up to {n} points)")
        return np.repeat(level_codes, counts)


# ----------------------------------------------------------------------------- for the demo


def quantised_points(cloud: PointCloud, quality: int) -> np.ndarray:
    """The points the decoder returns for ``cloud`` at ``quality`` (canonical order, float64)."""
    codec = OctreePointCloudCodec()
    _, bits, origin, step, codes, _ = codec._prepare(cloud, quality)
    q = np.stack([g.compact(codes >> s) for s in (2, 1, 0)], axis=1)
    return g.dequantise(q, origin, step)
