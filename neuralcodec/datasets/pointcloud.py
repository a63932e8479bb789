"""Point cloud files <-> ``PointCloud`` (coordinates + named per-point attributes).

Formats read (by extension)::

    .ply   ascii / binary LE / binary BE; the ``vertex`` element (other elements are dropped)
    .pcd   PCL, DATA ascii / binary / binary_compressed (LZF, column-major)
    .xyz   text, one point per line: "x y z", "x y z i" or "x y z r g b" (or ``layout``)
    .bin   raw little-endian float32 records; ``layout`` names the columns (default KITTI
           "xyzi"; a name ending in ".pcd.bin" defaults to nuScenes "x,y,z,intensity,ring")

Written: ``.ply`` (binary little endian). Every reader builds named columns, then ``_assemble``
maps them onto one vocabulary::

    x, y, z                               -> PointCloud.xyz (N x 3; float64 when the file has
                                             doubles or 32-bit integers, else float32)
    red/green/blue, r/g/b, packed PCD rgb -> attributes["rgb"]    (N x 3, uint8 or float as stored)
    nx/ny/nz, normal_x/normal_y/normal_z  -> attributes["normal"] (N x 3)
    anything else (intensity, ring, ...)  -> attributes[name]     (N, as stored)

Empty clouds, non-finite coordinates (unless ``drop_nonfinite``), truncated files and record sizes
that do not divide the file are one-line ``PointCloudError``s.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from neuralcodec.codecs.base import CodecError
from neuralcodec.datasets.ply import read_ply, read_ply_header, write_ply

POINTCLOUD_EXTENSIONS = (".ply", ".pcd", ".xyz", ".bin")
MAX_POINTS = 1 << 28
LAYOUTS = {
    "xyz": "x,y,z",
    "xyzi": "x,y,z,intensity",
    "xyzrgb": "x,y,z,red,green,blue",
    "xyzirgb": "x,y,z,intensity,red,green,blue",
    "xyzit": "x,y,z,intensity,ring",
}
_GROUPS = {
    "rgb": (("red", "green", "blue"), ("r", "g", "b"), ("diffuse_red", "diffuse_green", "diffuse_blue")),
    "normal": (("nx", "ny", "nz"), ("normal_x", "normal_y", "normal_z")),
}  # fmt: skip


class PointCloudError(CodecError):
    """A point cloud that cannot be read, written or coded; one-line message."""


@dataclass
class PointCloud:
    """``xyz``: N x 3 float32/float64; ``attributes``: name -> N or N x k array."""

    xyz: np.ndarray
    attributes: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.xyz)

    def validate(self, what: str = "point cloud") -> PointCloud:
        """Raise ``PointCloudError`` unless this is a non-empty, finite, consistent cloud."""
        xyz = np.asarray(self.xyz)
        if xyz.ndim != 2 or xyz.shape[1] != 3 or xyz.dtype not in (np.float32, np.float64):
            raise PointCloudError(
                f"{what}: xyz must be N x 3 float32/float64, got {xyz.dtype} {xyz.shape}"
            )
        if len(xyz) == 0:
            raise PointCloudError(f"{what}: empty point cloud (0 points)")
        if len(xyz) > MAX_POINTS:
            raise PointCloudError(f"{what}: {len(xyz)} points, more than the limit {MAX_POINTS}")
        bad = int(np.count_nonzero(~np.isfinite(xyz).all(axis=1)))
        if bad:
            raise PointCloudError(f"{what}: {bad} points with NaN or infinite coordinates")
        for name, arr in self.attributes.items():
            arr = np.asarray(arr)
            if arr.ndim not in (1, 2) or len(arr) != len(xyz) or arr.dtype.kind not in "iuf":
                raise PointCloudError(
                    f"{what}: attribute {name!r} is {arr.dtype} {arr.shape}, need N or N x k numbers"
                )
        return self


# ----------------------------------------------------------------------------- column mapping


def _xyz_dtype(columns: list[np.ndarray]) -> type:
    wide = any(c.dtype in (np.float64, np.int32, np.uint32, np.int64, np.uint64) for c in columns)
    return np.float64 if wide else np.float32


def _assemble(path: Path, columns: dict[str, np.ndarray], drop_nonfinite: bool) -> PointCloud:
    """Map named columns onto ``PointCloud`` (see the module docstring)."""
    if not all(k in columns for k in "xyz"):
        raise PointCloudError(f"{path}: no x, y, z columns (has {', '.join(columns) or 'none'})")
    cols = [columns.pop(k) for k in "xyz"]
    xyz = np.stack(cols, axis=1).astype(_xyz_dtype(cols))
    attrs: dict[str, np.ndarray] = {}
    for group, spellings in _GROUPS.items():
        for names in spellings:
            if all(n in columns for n in names):
                attrs[group] = np.stack([columns.pop(n) for n in names], axis=1)
                break
    attrs.update(columns)
    if drop_nonfinite:
        keep = np.isfinite(xyz).all(axis=1)
        xyz, attrs = xyz[keep], {k: v[keep] for k, v in attrs.items()}
    cloud = PointCloud(
        np.ascontiguousarray(xyz), {k: np.ascontiguousarray(v) for k, v in attrs.items()}
    )
    return cloud.validate(str(path))


# ----------------------------------------------------------------------------- PLY


def read_ply_cloud(path: Path, drop_nonfinite: bool = False) -> PointCloud:
    header = read_ply_header(path)
    vertex = header.element("vertex")
    if vertex is None:
        raise PointCloudError(f"{path}: PLY file has no vertex element")
    lists = [p.name for p in vertex.properties if p.count_dtype]
    _, data = read_ply(path, ("vertex",))
    columns = {k: v for k, v in data["vertex"].items() if k not in lists}
    return _assemble(path, columns, drop_nonfinite)


def write_ply_cloud(path: str | os.PathLike[str], cloud: PointCloud, force: bool = False) -> Path:
    """Write ``cloud`` as binary little endian PLY: x, y, z, then the attributes in order."""
    cloud.validate(str(path))
    props = {k: cloud.xyz[:, i] for i, k in enumerate("xyz")}
    names = {"rgb": ("red", "green", "blue"), "normal": ("nx", "ny", "nz")}
    for name, arr in cloud.attributes.items():
        arr = np.asarray(arr)
        if arr.ndim == 1:
            props[name] = arr
            continue
        sub = names.get(name) if arr.shape[1] == 3 else None
        for j in range(arr.shape[1]):
            props[sub[j] if sub else f"{name}_{j}"] = arr[:, j]
    return write_ply(path, {"vertex": props}, ("written by neuralcodec",), force=force)


# ----------------------------------------------------------------------------- PCD


def _pcd_header(path: Path, raw: bytes) -> tuple[dict[str, list[str]], int]:
    fields: dict[str, list[str]] = {}
    pos = 0
    while pos < len(raw) and pos < 1 << 16:
        nl = raw.find(b"\n", pos)
        if nl < 0:
            break
        line = raw[pos:nl].decode("ascii", errors="replace").strip()
        pos = nl + 1
        if not line or line.startswith("#"):
            continue
        key, *values = line.split()
        fields[key.upper()] = values
        if key.upper() == "DATA":
            return fields, pos
    raise PointCloudError(f"{path}: not a PCD file (no DATA line in the header)")


def _pcd_layout(
    path: Path, head: dict[str, list[str]]
) -> tuple[list[str], list[str], list[int], int]:
    try:
        names = head["FIELDS"]
        sizes = [int(s) for s in head["SIZE"]]
        types = head["TYPE"]
        counts = [int(c) for c in head.get("COUNT", ["1"] * len(names))]
        points = (
            int(head["POINTS"][0])
            if "POINTS" in head
            else int(head["WIDTH"][0]) * int(head["HEIGHT"][0])
        )
    except (KeyError, ValueError, IndexError):
        raise PointCloudError(f"{path}: PCD header lacks FIELDS/SIZE/TYPE/POINTS") from None
    if not len(names) == len(sizes) == len(types) == len(counts):
        raise PointCloudError(f"{path}: PCD FIELDS, SIZE, TYPE and COUNT differ in length")
    dtypes = []
    for s, t in zip(sizes, types, strict=True):
        kind = {"F": "f", "I": "i", "U": "u"}.get(t)
        if kind is None or s not in (1, 2, 4, 8) or (kind == "f" and s < 4):
            raise PointCloudError(f"{path}: unsupported PCD field type {t}{s}")
        dtypes.append(f"<{kind}{s}")
    if not 0 <= points <= MAX_POINTS or any(c < 1 for c in counts):
        raise PointCloudError(f"{path}: PCD header claims {points} points")
    return names, dtypes, counts, points


def _unpack_rgb(values: np.ndarray) -> np.ndarray:
    """PCL's packed colour (a float32 or uint32 holding 0x00RRGGBB) -> N x 3 uint8."""
    packed = np.ascontiguousarray(values).view(np.uint32)
    return np.stack([(packed >> s) & 0xFF for s in (16, 8, 0)], axis=1).astype(np.uint8)


def _pcd_columns(names, dtypes, counts, table: list[np.ndarray]) -> dict[str, np.ndarray]:
    columns = {}
    for name, dt, c, col in zip(names, dtypes, counts, table, strict=True):
        if name == "_":
            continue
        if name in ("rgb", "rgba") and c == 1 and dt[2] == "4":
            columns["rgb"] = _unpack_rgb(col.reshape(-1).astype(dt))
        else:
            columns[name] = col if c > 1 else col.reshape(-1)
    return columns


def _lzf_decompress(path: Path, data: bytes, size: int) -> bytes:
    import imagecodecs

    try:
        out = imagecodecs.lzf_decode(data, out=size)
    except Exception as exc:  # imagecodecs raises its own error class
        raise PointCloudError(f"{path}: corrupt binary_compressed PCD data ({exc})") from None
    if len(out) != size:
        raise PointCloudError(f"{path}: binary_compressed data decompresses to the wrong size")
    return bytes(out)


def read_pcd(path: Path, drop_nonfinite: bool = False) -> PointCloud:
    raw = path.read_bytes()
    head, pos = _pcd_header(path, raw)
    names, dtypes, counts, n = _pcd_layout(path, head)
    mode = (head.get("DATA") or ["?"])[0].lower()
    rec = np.dtype(
        [(f"f{i}", dt, (c,)) for i, (dt, c) in enumerate(zip(dtypes, counts, strict=True))]
    )
    if mode == "ascii":
        tokens = raw[pos:].split()
        width = sum(counts)
        if len(tokens) < n * width:
            raise PointCloudError(f"{path}: truncated: {n} points need {n * width} values")
        try:
            flat = np.array(tokens[: n * width], dtype=np.float64).reshape(n, width)
        except ValueError:
            raise PointCloudError(f"{path}: non-numeric value in the PCD data") from None
        bounds = np.cumsum([0, *counts])
        table = [flat[:, bounds[i] : bounds[i + 1]].astype(dtypes[i]) for i in range(len(names))]
    elif mode == "binary":
        if len(raw) - pos < rec.itemsize * n:
            raise PointCloudError(f"{path}: truncated: {n} points need {rec.itemsize * n} bytes")
        arr = np.frombuffer(raw, dtype=rec, count=n, offset=pos)
        table = [arr[f"f{i}"] for i in range(len(names))]
    elif mode == "binary_compressed":
        if len(raw) - pos < 8:
            raise PointCloudError(f"{path}: truncated binary_compressed PCD")
        csize, usize = np.frombuffer(raw, "<u4", 2, pos)
        if usize != rec.itemsize * n or len(raw) - pos - 8 < csize:
            raise PointCloudError(f"{path}: binary_compressed sizes do not match the header")
        data = _lzf_decompress(path, raw[pos + 8 : pos + 8 + int(csize)], int(usize))
        table, off = [], 0
        # column-major: every point of one field, then the next field
        for dt, c in zip(dtypes, counts, strict=True):
            size = np.dtype(dt).itemsize * c * n
            table.append(np.frombuffer(data, dt, c * n, off).reshape(n, c))
            off += size
    else:
        raise PointCloudError(f"{path}: unsupported PCD DATA mode {mode!r}")
    return _assemble(path, _pcd_columns(names, dtypes, counts, table), drop_nonfinite)


# ----------------------------------------------------------------------------- .xyz and .bin


def parse_layout(layout: str) -> list[str]:
    """Column names of a layout: an alias ("xyzi", "xyzrgb", ...) or "x,y,z,name,..."."""
    names = [s.strip() for s in LAYOUTS.get(layout, layout).split(",")]
    if not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n) for n in names) or len(set(names)) != len(
        names
    ):
        raise PointCloudError(
            f"bad point layout {layout!r} (an alias {sorted(LAYOUTS)} or names x,y,z,...)"
        )
    if not {"x", "y", "z"} <= set(names):
        raise PointCloudError(f"point layout {layout!r} has no x, y and z")
    return names


def read_bin(path: Path, layout: str | None = None, drop_nonfinite: bool = False) -> PointCloud:
    if layout is None:
        layout = LAYOUTS["xyzit"] if path.name.lower().endswith(".pcd.bin") else "xyzi"
    names = parse_layout(layout)
    size = path.stat().st_size
    rec = 4 * len(names)
    if size == 0 or size % rec:
        raise PointCloudError(
            f"{path}: {size} bytes is not a whole number of {rec}-byte records (layout {layout!r})"
        )
    arr = np.fromfile(path, dtype="<f4").reshape(-1, len(names))
    columns = {n: arr[:, i].copy() for i, n in enumerate(names)}
    return _assemble(path, columns, drop_nonfinite)


def read_xyz(path: Path, layout: str | None = None, drop_nonfinite: bool = False) -> PointCloud:
    lines = [ln.split() for ln in path.read_bytes().splitlines()]
    rows = [r for r in lines if r and not r[0].startswith((b"#", b"//"))]
    if not rows:
        raise PointCloudError(f"{path}: empty point cloud (no points)")
    width = len(rows[0])
    if any(len(r) != width for r in rows):
        raise PointCloudError(f"{path}: lines with different numbers of values")
    if layout is None:
        default = {3: "xyz", 4: "xyzi", 6: "xyzrgb", 7: "xyzirgb"}.get(width)
        if default is None:
            raise PointCloudError(f"{path}: {width} values per line; give a layout")
        layout = default
    names = parse_layout(layout)
    if len(names) != width:
        raise PointCloudError(
            f"{path}: {width} values per line, layout {layout!r} has {len(names)}"
        )
    try:
        table = np.array(rows, dtype=np.float64)
    except ValueError:
        raise PointCloudError(f"{path}: non-numeric value in the point list") from None
    columns = {n: table[:, i] for i, n in enumerate(names)}
    for c in ("red", "green", "blue"):
        if (
            c in columns
            and np.all(columns[c] == np.round(columns[c]))
            and np.all((columns[c] >= 0) & (columns[c] <= 255))
        ):
            columns[c] = columns[c].astype(np.uint8)
    return _assemble(path, columns, drop_nonfinite)


# ----------------------------------------------------------------------------- entry points


def read_pointcloud(
    path: str | os.PathLike[str], layout: str | None = None, drop_nonfinite: bool = False
) -> PointCloud:
    """Read a point cloud file by extension (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise PointCloudError(
            f"no such file: {path}" if not path.exists() else f"{path} is not a file"
        )
    ext = path.suffix.lower()
    if layout is not None and ext not in (".bin", ".xyz"):
        raise PointCloudError(f"{path}: a layout applies to .bin and .xyz files only")
    if ext == ".ply":
        return read_ply_cloud(path, drop_nonfinite)
    if ext == ".pcd":
        return read_pcd(path, drop_nonfinite)
    if ext == ".bin":
        return read_bin(path, layout, drop_nonfinite)
    if ext == ".xyz":
        return read_xyz(path, layout, drop_nonfinite)
    raise PointCloudError(f"{path}: not a point cloud file ({', '.join(POINTCLOUD_EXTENSIONS)})")


def write_pointcloud(path: str | os.PathLike[str], cloud: PointCloud, force: bool = False) -> Path:
    """Write ``cloud`` to ``path`` (``.ply``, binary little endian), atomically."""
    if Path(path).suffix.lower() != ".ply":
        raise PointCloudError(f"{path}: point clouds are written as .ply")
    return write_ply_cloud(path, cloud, force)
