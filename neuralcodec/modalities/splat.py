"""The Gaussian splat adapter: INRIA ``.ply`` / ``compressed.ply`` / ``.splat`` <-> ``GaussianScene``.

::

    file --read (datasets.splat, datasets.splat_packed)--> GaussianScene
         --prepare--> Prepared(coded=GaussianScene, fields: shape (N, (degree + 1)^2),
                               metadata {sh_degree, source})
    decoded GaussianScene --restore--> GaussianScene checked against the header (at most the
                                       header's splats and SH degree: codecs may prune / distil)
         --write--> by name: *.splat, *.compressed.ply, else INRIA .ply

``accepts`` takes a ``.ply`` only when its header has ``f_dc_0`` and ``scale_0`` vertex properties or a
``chunk`` element (read from the header alone). The rate unit is bytes per splat.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from neuralcodec.codecs.base import CodecError
from neuralcodec.container.fields import ContainerError
from neuralcodec.datasets.splat import (
    MAX_SPLATS,
    GaussianScene,
    SplatError,
    is_splat_ply,
    read_splat,
    write_splat,
)
from neuralcodec.modalities._headers import check_count, extension, metadata_of, shape_of
from neuralcodec.modalities.base import ModalityAdapter, Prepared, adapter


@adapter
class SplatAdapter(ModalityAdapter):
    modality = "splat"
    rate_unit = "bytes/splat"
    read_extensions = (".ply", ".splat")
    write_extensions = (".ply", ".splat")

    def accepts(self, path: str | os.PathLike[str], writing: bool = False) -> bool:
        ext = extension(path)
        if ext == ".splat":
            return True
        return ext == ".ply" and (writing or is_splat_ply(path))

    def read(self, path: str | os.PathLike[str], **options: Any) -> GaussianScene:
        if options:
            raise CodecError(f"unknown splat read options: {', '.join(sorted(options))}")
        return read_splat(path)

    def write(
        self, path: str | os.PathLike[str], data: Any, header: dict[str, Any], force: bool = False
    ) -> None:
        write_splat(path, _as_scene(data), force)

    def prepare(self, data: Any) -> Prepared:
        scene = _as_scene(data).validate()
        d = scene.sh_degree
        fields = {"shape": (len(scene), (d + 1) ** 2), "metadata": {"sh_degree": d}}
        notes = [f"{len(scene)} splats, SH degree {d}"]
        return Prepared(coded=scene, fields=fields, notes=notes)

    def restore(
        self, decoded: Any, header: dict[str, Any], streams: dict[str, bytes]
    ) -> GaussianScene:
        self.check_header(header)
        scene = _as_scene(decoded)
        n, coeffs = shape_of(self.modality, header, 2)
        # lossy codecs may prune splats and lower the SH degree, never add either
        if not 1 <= len(scene) <= n or (scene.sh_degree + 1) ** 2 > coeffs:
            raise CodecError(
                f"decoded {len(scene)} splats of SH degree {scene.sh_degree}, header says {n} x {coeffs}"
            )
        for name in ("positions", "scales_log", "rotations", "opacities", "sh_dc", "sh_rest"):
            setattr(scene, name, np.asarray(getattr(scene, name), dtype=np.float32))
        if not _packing_fits(scene):
            scene.packing = None
        return scene.validate("decoded splat scene")

    def check_header(self, header: dict[str, Any]) -> None:
        n, coeffs = shape_of(self.modality, header, 2)
        check_count(self.modality, "splats", n, 1, MAX_SPLATS)
        if coeffs not in (1, 4, 9, 16):
            raise ContainerError(
                f"splat shape {(n, coeffs)}: {coeffs} SH coefficients is not degree 0..3"
            )
        degree = metadata_of(header).get("sh_degree", 0)
        if not isinstance(degree, int) or isinstance(degree, bool) or (degree + 1) ** 2 != coeffs:
            raise ContainerError(f"splat metadata sh_degree {degree!r} does not match the shape")

    def units(self, header: dict[str, Any]) -> int:
        return shape_of(self.modality, header, 2)[0]


def _packing_fits(scene: GaussianScene) -> bool:
    """Whether the compressed.ply packing a codec decoded (exact codecs keep it, so that writing
    compressed.ply gives back the file's integers) matches the scene's size."""
    p = scene.packing
    if not p:
        return False
    chunks = -(-len(scene) // 256)
    lens = {len(v) for k, v in p.items() if k != "rotation_largest"}
    return lens == {chunks} and len(p.get("rotation_largest", ())) == len(scene)


def _as_scene(data: Any) -> GaussianScene:
    if isinstance(data, GaussianScene):
        return data
    raise SplatError(f"expected a GaussianScene, got {type(data).__name__}")
