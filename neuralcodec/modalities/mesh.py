"""The mesh adapter: ``.obj``/``.ply`` <-> ``Mesh`` <-> codec.

::

    file --read (datasets.mesh)--> Mesh(vertices V x 3, faces F x 3, normals?, uvs?, attributes)
         --prepare--> Prepared(coded=Mesh, fields: shape (V, F),
                               metadata {vertex_dtype, normals, uvs: "vertex"|"corner"|"none",
                                         attributes: [[name, dtype, width], ...]})
    decoded Mesh --restore--> Mesh checked against the header --write--> .obj | .ply

``accepts`` takes a ``.ply`` only when its header declares a non-empty face (or tristrips) element,
so point cloud scans and splat scenes go to their own adapters. The rate unit is bits per vertex.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from neuralcodec.codecs.base import CodecError
from neuralcodec.container.fields import ContainerError
from neuralcodec.datasets.mesh import (
    MAX_FACES,
    MAX_VERTICES,
    MESH_EXTENSIONS,
    Mesh,
    MeshError,
    ply_has_faces,
    read_mesh,
    write_mesh,
)
from neuralcodec.modalities._headers import (
    check_attributes,
    check_count,
    describe_attributes,
    extension,
    metadata_of,
    shape_of,
)
from neuralcodec.modalities.base import ModalityAdapter, Prepared, adapter

_KINDS = ("none", "vertex", "corner")
_DEFAULTS = {"vertex_dtype": "float32", "normals": "none", "uvs": "none", "attributes": []}


def _kind(table: Any, index: Any) -> str:
    return "none" if table is None else ("vertex" if index is None else "corner")


@adapter
class MeshAdapter(ModalityAdapter):
    modality = "mesh"
    rate_unit = "bits/vertex"
    read_extensions = MESH_EXTENSIONS
    write_extensions = MESH_EXTENSIONS

    def accepts(self, path: str | os.PathLike[str], writing: bool = False) -> bool:
        ext = extension(path)
        if ext not in MESH_EXTENSIONS:
            return False
        return writing or ext == ".obj" or ply_has_faces(path)

    def read(self, path: str | os.PathLike[str], **options: Any) -> Mesh:
        if options:
            raise CodecError(f"unknown mesh read options: {', '.join(sorted(options))}")
        return read_mesh(path)

    def write(
        self, path: str | os.PathLike[str], data: Any, header: dict[str, Any], force: bool = False
    ) -> None:
        write_mesh(path, _as_mesh(data), force)

    def prepare(self, data: Any) -> Prepared:
        mesh = _as_mesh(data).validate()
        full = {
            "vertex_dtype": str(np.asarray(mesh.vertices).dtype),
            "normals": _kind(mesh.normals, mesh.normal_faces),
            "uvs": _kind(mesh.uvs, mesh.uv_faces),
            "attributes": describe_attributes(self.modality, mesh.attributes),
        }
        # entries at their default (what ``restore`` assumes when one is absent) are left out:
        # on a small mesh the header is a visible part of the file
        meta = {k: v for k, v in full.items() if v != _DEFAULTS[k]}
        fields = {"shape": (len(mesh.vertices), len(mesh.faces)), "metadata": meta}
        notes = [f"{len(mesh.vertices)} vertices, {len(mesh.faces)} triangles", *mesh.notes]
        return Prepared(coded=mesh, fields=fields, notes=notes)

    def restore(self, decoded: Any, header: dict[str, Any], streams: dict[str, bytes]) -> Mesh:
        self.check_header(header)
        mesh = _as_mesh(decoded)
        nv, nf = shape_of(self.modality, header, 2)
        meta = metadata_of(header)
        if (len(mesh.vertices), len(mesh.faces)) != (nv, nf):
            raise CodecError(
                f"decoded {len(mesh.vertices)} vertices / {len(mesh.faces)} faces, header says {nv} / {nf}"
            )
        for name, table, index in (
            ("normals", mesh.normals, mesh.normal_faces),
            ("uvs", mesh.uvs, mesh.uv_faces),
        ):
            if _kind(table, index) != meta.get(name, "none"):
                raise CodecError(
                    f"decoded mesh {name} are {_kind(table, index)}, header says {meta.get(name)}"
                )
        for name, dtype, width in check_attributes(self.modality, meta.get("attributes")):
            arr = mesh.attributes.get(name)
            if arr is None or np.shape(arr) != ((nv,) if width == 0 else (nv, width)):
                raise CodecError(f"decoded vertex attribute {name!r} missing or misshapen")
            mesh.attributes[name] = np.asarray(arr).astype(dtype)
        mesh.vertices = np.asarray(mesh.vertices).astype(meta.get("vertex_dtype", "float32"))
        mesh.faces = np.asarray(mesh.faces).astype(np.int64)
        return mesh.validate("decoded mesh")

    def check_header(self, header: dict[str, Any]) -> None:
        nv, nf = shape_of(self.modality, header, 2)
        check_count(self.modality, "vertices", nv, 1, MAX_VERTICES)
        check_count(self.modality, "faces", nf, 1, MAX_FACES)
        meta = metadata_of(header)
        if meta.get("vertex_dtype", "float32") not in ("float32", "float64"):
            raise ContainerError(f"mesh vertex_dtype {meta.get('vertex_dtype')!r} not float32/64")
        for key in ("normals", "uvs"):
            if meta.get(key, "none") not in _KINDS:
                raise ContainerError(f"mesh metadata {key}: {meta.get(key)!r} not one of {_KINDS}")
        check_attributes(self.modality, meta.get("attributes"))

    def units(self, header: dict[str, Any]) -> int:
        return shape_of(self.modality, header, 2)[0]


def _as_mesh(data: Any) -> Mesh:
    if isinstance(data, Mesh):
        return data
    raise MeshError(f"expected a Mesh, got {type(data).__name__}")
