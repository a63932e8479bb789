"""Draco (through the DracoPy binding) as benchmark anchors: ``draco`` for point clouds and
``draco-mesh`` for meshes, geometry only.

Quality q means ``quantization_bits = 7 + q`` (the same bits per axis as ``octree`` and
``meshtrav``), compression level 7. Native format: the Draco bitstream. Draco keeps only
positions (and faces) here; attributes, normals and UVs are not passed to it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from neuralcodec.datasets.mesh import Mesh
from neuralcodec.datasets.pointcloud import PointCloud

from . import geometry as g
from .base import Codec, CodecError, register

COMPRESSION_LEVEL = 7


def _draco():
    try:
        import DracoPy
    except ImportError:
        return None
    return DracoPy


class _DracoBase(Codec):
    writes_ncf = False
    quality_range = (1, 9)
    rank = 1000

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None if _draco() is not None else "DracoPy is not installed (pip install DracoPy)"

    def _need(self):
        lib = _draco()
        if lib is None:
            raise CodecError(f"{self.name}: {self.unavailable_reason()}")
        return lib

    def settings_fingerprint(self) -> str | None:
        return hashlib.sha256(f"draco compression_level={COMPRESSION_LEVEL}".encode()).hexdigest()


@register
class DracoPointCloud(_DracoBase):
    name = "draco"
    modality = "pointcloud"
    description = "Draco point cloud (kd-tree), 7 + q quantisation bits, level 7 (benchmark only)"

    def compress(self, data: Any, quality: int) -> bytes:
        lib = self._need()
        if not isinstance(data, PointCloud):
            raise CodecError(f"draco takes a PointCloud, got {type(data).__name__}")
        xyz = np.asarray(data.validate().xyz, dtype=np.float32)
        bits = g.quality_to_bits(self.check_quality(quality))
        return bytes(lib.encode(xyz, quantization_bits=bits, compression_level=COMPRESSION_LEVEL))

    def decompress(self, data: bytes) -> PointCloud:
        pts = np.asarray(self._need().decode(data).points, dtype=np.float32).reshape(-1, 3)
        return PointCloud(pts)


@register
class DracoMesh(_DracoBase):
    name = "draco-mesh"
    modality = "mesh"
    description = "Draco mesh (edgebreaker), 7 + q quantisation bits, level 7 (benchmark only)"

    def compress(self, data: Any, quality: int) -> bytes:
        lib = self._need()
        if not isinstance(data, Mesh):
            raise CodecError(f"draco-mesh takes a Mesh, got {type(data).__name__}")
        mesh = data.validate()
        bits = g.quality_to_bits(self.check_quality(quality))
        return bytes(
            lib.encode(
                np.asarray(mesh.vertices, dtype=np.float32),
                faces=np.asarray(mesh.faces, dtype=np.uint32),
                quantization_bits=bits,
                compression_level=COMPRESSION_LEVEL,
            )
        )

    def decompress(self, data: bytes) -> Mesh:
        out = self._need().decode(data)
        v = np.asarray(out.points, dtype=np.float32).reshape(-1, 3)
        f = np.asarray(out.faces, dtype=np.int64).reshape(-1, 3)
        return Mesh(v, f)
