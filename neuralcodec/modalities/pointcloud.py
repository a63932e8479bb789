"""The point cloud adapter: ``.ply``/``.pcd``/``.xyz``/``.bin`` <-> ``PointCloud`` <-> codec.

::

    file --read (datasets.pointcloud)--> PointCloud(xyz N x 3, attributes)
         --prepare--> Prepared(coded=PointCloud, fields: shape (N, 3), colorspace rgb|none,
                               metadata {xyz_dtype, attributes: [[name, dtype, width], ...]})
    decoded PointCloud --restore--> PointCloud with the header's dtypes and attribute list
         --write--> .ply (binary little endian)

The rate unit is bits per point; ``units`` is N.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from neuralcodec.codecs.base import CodecError
from neuralcodec.container.fields import ContainerError
from neuralcodec.datasets.pointcloud import (
    MAX_POINTS,
    POINTCLOUD_EXTENSIONS,
    PointCloud,
    PointCloudError,
    read_pointcloud,
    write_pointcloud,
)
from neuralcodec.modalities._headers import (
    check_attributes,
    check_count,
    describe_attributes,
    metadata_of,
    shape_of,
)
from neuralcodec.modalities.base import ModalityAdapter, Prepared, adapter


@adapter
class PointCloudAdapter(ModalityAdapter):
    modality = "pointcloud"
    rate_unit = "bits/point"
    read_extensions = POINTCLOUD_EXTENSIONS
    write_extensions = (".ply",)

    def read(self, path: str | os.PathLike[str], **options: Any) -> PointCloud:
        """Options: ``layout`` (.bin / .xyz columns), ``drop_nonfinite`` (default False)."""
        unknown = set(options) - {"layout", "drop_nonfinite"}
        if unknown:
            raise CodecError(f"unknown point cloud read options: {', '.join(sorted(unknown))}")
        return read_pointcloud(path, options.get("layout"), bool(options.get("drop_nonfinite")))

    def write(
        self, path: str | os.PathLike[str], data: Any, header: dict[str, Any], force: bool = False
    ) -> None:
        write_pointcloud(path, _as_cloud(data), force)

    def prepare(self, data: Any) -> Prepared:
        cloud = _as_cloud(data).validate()
        meta = {
            "xyz_dtype": str(cloud.xyz.dtype),
            "attributes": describe_attributes(self.modality, cloud.attributes),
        }
        fields = {
            "shape": (len(cloud), 3),
            "colorspace": "rgb" if "rgb" in cloud.attributes else "none",
            "metadata": meta,
        }
        notes = [f"{len(cloud)} points, attributes: {', '.join(cloud.attributes) or 'none'}"]
        return Prepared(coded=cloud, fields=fields, notes=notes)

    def restore(
        self, decoded: Any, header: dict[str, Any], streams: dict[str, bytes]
    ) -> PointCloud:
        self.check_header(header)
        cloud = _as_cloud(decoded)
        n = shape_of(self.modality, header, 2)[0]
        meta = metadata_of(header)
        if len(cloud) != n:
            raise CodecError(f"decoded {len(cloud)} points, the header says {n}")
        attrs = {}
        for name, dtype, width in check_attributes(self.modality, meta.get("attributes")):
            arr = np.asarray(cloud.attributes.get(name)) if name in cloud.attributes else None
            want = (n,) if width == 0 else (n, width)
            if arr is None or arr.shape != want:
                raise CodecError(f"decoded attribute {name!r} missing or not of shape {want}")
            attrs[name] = _cast(arr, dtype, f"attribute {name!r}")
        xyz = _cast(np.asarray(cloud.xyz), meta.get("xyz_dtype", "float32"), "coordinates")
        return PointCloud(xyz, attrs).validate("decoded point cloud")

    def check_header(self, header: dict[str, Any]) -> None:
        n, three = shape_of(self.modality, header, 2)
        check_count(self.modality, "points", n, 1, MAX_POINTS)
        if three != 3:
            raise ContainerError(f"pointcloud shape must be (N, 3), got {(n, three)}")
        meta = metadata_of(header)
        if meta.get("xyz_dtype", "float32") not in ("float32", "float64"):
            raise ContainerError(f"pointcloud xyz_dtype {meta.get('xyz_dtype')!r} not float32/64")
        check_attributes(self.modality, meta.get("attributes"))

    def units(self, header: dict[str, Any]) -> int:
        return shape_of(self.modality, header, 2)[0]


def _as_cloud(data: Any) -> PointCloud:
    if isinstance(data, PointCloud):
        return data
    arr = np.asarray(data) if isinstance(data, np.ndarray) else None
    if arr is not None and arr.ndim == 2 and arr.shape[1] == 3 and arr.dtype.kind == "f":
        return PointCloud(arr)
    raise PointCloudError(
        f"expected a PointCloud or an N x 3 float array, got {type(data).__name__}"
    )


def _cast(arr: np.ndarray, dtype: str, what: str) -> np.ndarray:
    """Decoded values in the header's dtype (integers rounded and clipped to the type's range;
    ``CodecError`` for finite floats beyond a narrower float type's range)."""
    if np.dtype(dtype).kind in "iu" and arr.dtype.kind == "f":
        info = np.iinfo(dtype)
        arr = np.clip(np.rint(arr), info.min, info.max)
    elif np.dtype(dtype).kind == "f" and arr.dtype.kind == "f" and arr.size:
        top = float(np.finfo(dtype).max)
        if float(np.nanmax(np.abs(np.where(np.isfinite(arr), arr, 0)))) > top:
            raise CodecError(f"decoded {what} exceed the range of {dtype}")
    return np.ascontiguousarray(arr.astype(dtype))
