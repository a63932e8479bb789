"""Triangle mesh files (``.obj``, ``.ply``) <-> ``Mesh``.

::

    .obj --read_obj--> v / vt / vn / f (v, v/vt, v//vn, v/vt/vn; negative = relative) --+
    .ply --read_ply_mesh--> vertex (x y z, nx ny nz, u v | s t, colours, others)        +--> Mesh
                            face vertex_indices | vertex_index, or tristrips (-1 = restart) --+
    Mesh --write_obj--> .obj (v, vt, vn, f a/b/c)     Mesh --write_ply_mesh--> binary LE .ply

Polygons are split into triangle fans (0, i, i+1) and the reader says so in ``Mesh.notes``; groups,
objects, materials, smoothing groups, lines and points are ignored, also with a note. OBJ keeps
separate index lists for positions, uvs and normals (``uv_faces``/``normal_faces``); a PLY file
cannot, so ``write_ply_mesh`` splits vertices whose corners disagree (``unweld``). Faces pointing
past the vertex list, empty meshes and non-finite numbers are one-line ``MeshError``s.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from neuralcodec.codecs.base import CodecError
from neuralcodec.datasets.paths import atomic_output
from neuralcodec.datasets.ply import Ragged, read_ply, read_ply_header, write_ply

MESH_EXTENSIONS = (".obj", ".ply")
MAX_VERTICES = 1 << 27
MAX_FACES = 1 << 28
_OBJ_IGNORED = {"g", "o", "s", "usemtl", "mtllib", "l", "p", "vp", "cstype", "deg", "curv", "surf"}


class MeshError(CodecError):
    """A mesh that cannot be read, written or coded; one-line message."""


@dataclass
class Mesh:
    """``vertices`` V x 3 float, ``faces`` F x 3 int64 (0-based).

    ``normals`` / ``uvs`` are per vertex (V rows) when ``normal_faces`` / ``uv_faces`` is None, else
    tables indexed per face corner by those F x 3 arrays (OBJ). ``attributes``: per-vertex arrays
    (colours as ``rgb``, anything else by name). ``notes``: what the reader changed or dropped."""

    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray | None = None
    uvs: np.ndarray | None = None
    normal_faces: np.ndarray | None = None
    uv_faces: np.ndarray | None = None
    attributes: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def validate(self, what: str = "mesh") -> Mesh:
        v, f = np.asarray(self.vertices), np.asarray(self.faces)
        if v.ndim != 2 or v.shape[1] != 3 or v.dtype.kind != "f":
            raise MeshError(f"{what}: vertices must be V x 3 floats, got {v.dtype} {v.shape}")
        if f.ndim != 2 or f.shape[1] != 3 or f.dtype.kind not in "iu":
            raise MeshError(f"{what}: faces must be F x 3 integers, got {f.dtype} {f.shape}")
        if len(v) == 0 or len(f) == 0:
            raise MeshError(f"{what}: empty mesh ({len(v)} vertices, {len(f)} faces)")
        if len(v) > MAX_VERTICES or len(f) > MAX_FACES:
            raise MeshError(f"{what}: {len(v)} vertices / {len(f)} faces exceed the limits")
        _finite(what, "vertex", v)
        _indices(what, "face", f, len(v))
        for name, table, idx, width in (
            ("normal", self.normals, self.normal_faces, 3),
            ("uv", self.uvs, self.uv_faces, 2),
        ):
            if table is None:
                if idx is not None:
                    raise MeshError(f"{what}: {name} indices without {name}s")
                continue
            table = np.asarray(table)
            if table.ndim != 2 or table.shape[1] != width or table.dtype.kind != "f":
                raise MeshError(f"{what}: {name}s must be n x {width} floats")
            _finite(what, name, table)
            if idx is None and len(table) != len(v):
                raise MeshError(f"{what}: {len(table)} per-vertex {name}s for {len(v)} vertices")
            if idx is not None:
                if np.shape(idx) != f.shape:
                    raise MeshError(f"{what}: {name} indices must be F x 3 like the faces")
                _indices(what, name, np.asarray(idx), len(table))
        for name, arr in self.attributes.items():
            if len(arr) != len(v) or np.asarray(arr).dtype.kind not in "iuf":
                raise MeshError(
                    f"{what}: vertex attribute {name!r} is not one number row per vertex"
                )
        return self


def _finite(what: str, name: str, arr: np.ndarray) -> None:
    bad = int(np.count_nonzero(~np.isfinite(arr).all(axis=1)))
    if bad:
        raise MeshError(f"{what}: {bad} {name}s with NaN or infinite values")


def _indices(what: str, name: str, idx: np.ndarray, n: int) -> None:
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise MeshError(
            f"{what}: {name} index {int(idx.max() if idx.max() >= n else idx.min())} outside 0..{n - 1}"
        )


# ----------------------------------------------------------------------------- OBJ


def fan(lengths: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Triangles (first, i, i+1) of polygons given as lengths + concatenated corner values."""
    lengths = np.asarray(lengths, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    ntri = np.maximum(lengths - 2, 0)
    poly = np.repeat(np.arange(len(lengths)), ntri)
    k = np.arange(ntri.sum()) - np.repeat(np.cumsum(ntri) - ntri, ntri)
    first = starts[poly]
    return np.stack([values[first], values[first + k + 1], values[first + k + 2]], axis=-1)


class _ObjState:
    def __init__(self) -> None:
        self.v: list[list[float]] = []
        self.vt: list[list[float]] = []
        self.vn: list[list[float]] = []
        self.corners: list[tuple[int, int, int]] = []  # (v, vt, vn), -1 = absent
        self.lengths: list[int] = []
        self.ignored: set[str] = set()


def _obj_index(path: Path, token: str, count: int, lineno: int) -> int:
    try:
        i = int(token)
    except ValueError:
        raise MeshError(f"{path}:{lineno}: bad face index {token!r}") from None
    j = i - 1 if i > 0 else count + i
    if i == 0 or not 0 <= j < count:
        raise MeshError(f"{path}:{lineno}: face index {i} outside the {count} defined so far")
    return j


def _obj_face(path: Path, st: _ObjState, words: list[str], lineno: int) -> None:
    if len(words) < 3:
        raise MeshError(f"{path}:{lineno}: a face needs at least 3 corners")
    for w in words:
        parts = w.split("/")
        if len(parts) > 3 or not parts[0]:
            raise MeshError(f"{path}:{lineno}: bad face corner {w!r}")
        vi = _obj_index(path, parts[0], len(st.v), lineno)
        ti = _obj_index(path, parts[1], len(st.vt), lineno) if len(parts) > 1 and parts[1] else -1
        ni = _obj_index(path, parts[2], len(st.vn), lineno) if len(parts) > 2 and parts[2] else -1
        st.corners.append((vi, ti, ni))
    st.lengths.append(len(words))


def _obj_numbers(path: Path, words: list[str], lo: int, hi: int, lineno: int) -> list[float]:
    if not lo <= len(words) <= hi:
        raise MeshError(f"{path}:{lineno}: expected {lo}..{hi} numbers")
    try:
        return [float(w) for w in words]
    except ValueError:
        raise MeshError(f"{path}:{lineno}: non-numeric value") from None


def read_obj(path: Path) -> Mesh:
    st = _ObjState()
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            words = raw.split(b"#", 1)[0].decode("latin-1").split()
            if not words:
                continue
            key, args = words[0], words[1:]
            if key == "v":
                st.v.append(_obj_numbers(path, args, 3, 7, lineno))
            elif key == "vt":
                st.vt.append(
                    _obj_numbers(path, args, 1, 3, lineno)[:2] + [0.0] * (2 - len(args[:2]))
                )
            elif key == "vn":
                st.vn.append(_obj_numbers(path, args, 3, 3, lineno))
            elif key == "f":
                _obj_face(path, st, args, lineno)
            elif key in _OBJ_IGNORED:
                st.ignored.add(key)
            else:
                raise MeshError(f"{path}:{lineno}: not an OBJ line ({key[:20]!r})")
    return _obj_mesh(path, st)


def _obj_mesh(path: Path, st: _ObjState) -> Mesh:
    if not st.v or not st.lengths:
        raise MeshError(f"{path}: empty mesh ({len(st.v)} vertices, {len(st.lengths)} faces)")
    widths = {len(r) for r in st.v}
    rows = st.v if len(widths) == 1 else [r[:3] for r in st.v]
    table = np.array(rows, dtype=np.float64)
    corners = np.array(st.corners, dtype=np.int64)
    lengths = np.array(st.lengths)
    mesh = Mesh(table[:, :3], fan(lengths, corners[:, 0]))
    if widths == {6} or widths == {7}:
        mesh.attributes["rgb"] = table[:, -3:]
    if np.any(lengths > 3):
        mesh.notes.append(f"{int(np.sum(lengths > 3))} polygons split into triangle fans")
    for name, col, src in (("uv", 1, st.vt), ("normal", 2, st.vn)):
        have = corners[:, col] >= 0
        if have.all() and src:
            setattr(mesh, name + "s", np.array(src, dtype=np.float64))
            setattr(mesh, name + "_faces", fan(lengths, corners[:, col]))
        elif have.any() or src:
            mesh.notes.append(f"{name}s dropped: not every face corner has one")
    if st.ignored:
        mesh.notes.append(f"ignored OBJ statements: {', '.join(sorted(st.ignored))}")
    return mesh.validate(str(path))


def _fmt_rows(arr: np.ndarray, prefix: str) -> str:
    fmt = "%.9g" if arr.dtype == np.float32 else "%.17g"
    line = prefix + " " + " ".join([fmt] * arr.shape[1])
    return "\n".join(line % tuple(r) for r in arr.tolist()) + "\n" if len(arr) else ""


def write_obj(path: str | os.PathLike[str], mesh: Mesh, force: bool = False) -> Path:
    """Write ``mesh`` as OBJ (``v``, ``vt``, ``vn``, ``f a/b/c``, 1-based), atomically."""
    mesh.validate(str(path))
    v = np.asarray(mesh.vertices)
    rgb = mesh.attributes.get("rgb")
    body = [
        "# written by neuralcodec\n",
        _fmt_rows(np.concatenate([v, np.asarray(rgb, v.dtype)], 1) if rgb is not None else v, "v"),
    ]
    cols = [np.asarray(mesh.faces) + 1]
    if mesh.uvs is not None:
        body.append(_fmt_rows(np.asarray(mesh.uvs), "vt"))
        cols.append((mesh.faces if mesh.uv_faces is None else np.asarray(mesh.uv_faces)) + 1)
    if mesh.normals is not None:
        body.append(_fmt_rows(np.asarray(mesh.normals), "vn"))
        idx = mesh.faces if mesh.normal_faces is None else np.asarray(mesh.normal_faces)
        if mesh.uvs is None:
            cols.append(np.zeros_like(cols[0]))
        cols.append(idx + 1)
    corners = np.stack(cols, axis=-1).tolist()
    body.append(
        "".join(
            "f " + " ".join("/".join(str(x) if x else "" for x in c) for c in tri) + "\n"
            for tri in corners
        )
    )
    with atomic_output(path, force) as f:
        f.write("".join(body).encode("ascii"))
    return Path(path)


# ----------------------------------------------------------------------------- PLY


def _strips(lengths: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Triangles of PLY triangle strips (-1 restarts a strip; odd triangles flipped)."""
    tris = []
    for strip in np.split(values, np.cumsum(lengths)[:-1]):
        for seg in np.split(strip, np.flatnonzero(strip < 0)):
            seg = seg[seg >= 0]
            for i in range(len(seg) - 2):
                a, b, c = seg[i : i + 3]
                if a != b and b != c and a != c:
                    tris.append((a, b, c) if i % 2 == 0 else (b, a, c))
    return np.array(tris, dtype=np.int64).reshape(-1, 3)


def ply_has_faces(path: str | os.PathLike[str]) -> bool:
    """True when the PLY header declares a face or tristrips element with at least one entry."""
    try:
        header = read_ply_header(path)
    except CodecError:
        return False
    return any(e.name in ("face", "tristrips") and e.count > 0 for e in header.elements)


def _ply_faces(path: Path, data: dict, notes: list[str]) -> np.ndarray:
    if "face" in data:
        face = data["face"]
        key = next((k for k in ("vertex_indices", "vertex_index") if k in face), None)
        if key is None or not isinstance(face[key], Ragged):
            raise MeshError(f"{path}: face element has no vertex_indices list")
        dropped = sorted(set(face) - {key})
        if dropped:
            notes.append(f"face properties dropped: {', '.join(dropped)}")
        lists = face[key]
        if np.any(lists.lengths > 3):
            notes.append(f"{int(np.sum(lists.lengths > 3))} polygons split into triangle fans")
        if np.any(lists.lengths < 3):
            raise MeshError(f"{path}: a face has fewer than 3 corners")
        return fan(lists.lengths, lists.values.astype(np.int64))
    strips = data["tristrips"].get("vertex_indices")
    if not isinstance(strips, Ragged):
        raise MeshError(f"{path}: tristrips element has no vertex_indices list")
    notes.append("triangle strips converted to triangles")
    return _strips(strips.lengths, strips.values.astype(np.int64))


def read_ply_mesh(path: Path) -> Mesh:
    header = read_ply_header(path)
    names = [e.name for e in header.elements]
    if "vertex" not in names or not ({"face", "tristrips"} & set(names)):
        raise MeshError(f"{path}: a PLY mesh needs vertex and face elements")
    _, data = read_ply(path, ("vertex", "face", "tristrips"))
    notes: list[str] = []
    faces = _ply_faces(path, data, notes)
    vert = {k: v for k, v in data["vertex"].items() if not isinstance(v, Ragged)}
    if not all(k in vert for k in "xyz"):
        raise MeshError(f"{path}: vertex element has no x, y, z")
    xyz = np.stack([vert.pop(k) for k in "xyz"], axis=1)
    mesh = Mesh(
        xyz.astype(np.float64 if xyz.dtype.itemsize > 4 else np.float32), faces, notes=notes
    )
    groups = {
        "normals": (("nx", "ny", "nz"),),
        "uvs": (("u", "v"), ("s", "t"), ("texture_u", "texture_v")),
    }
    for attr, spellings in groups.items():
        for keys in spellings:
            if all(k in vert for k in keys):
                setattr(mesh, attr, np.stack([vert.pop(k) for k in keys], 1).astype(np.float32))
                break
    for keys in (("red", "green", "blue"), ("r", "g", "b")):
        if all(k in vert for k in keys):
            mesh.attributes["rgb"] = np.stack([vert.pop(k) for k in keys], axis=1)
            break
    mesh.attributes.update(vert)
    others = sorted(set(names) - {"vertex", "face", "tristrips"})
    if others:
        notes.append(f"PLY elements dropped: {', '.join(others)}")
    return mesh.validate(str(path))


def unweld(mesh: Mesh) -> Mesh:
    """The same mesh with normals / uvs per vertex, splitting vertices whose corners disagree."""
    if mesh.normal_faces is None and mesh.uv_faces is None:
        return mesh
    faces = np.asarray(mesh.faces)
    cols = [faces] + [np.asarray(i) for i in (mesh.uv_faces, mesh.normal_faces) if i is not None]
    corners = np.stack([c.reshape(-1) for c in cols], axis=1)
    uniq, inverse = np.unique(corners, axis=0, return_inverse=True)
    out = Mesh(np.asarray(mesh.vertices)[uniq[:, 0]], inverse.reshape(-1, 3).astype(np.int64))
    col = 1
    for name in ("uv", "normal"):
        table, idx = getattr(mesh, name + "s"), getattr(mesh, name + "_faces")
        if table is not None and idx is None:
            setattr(out, name + "s", np.asarray(table)[uniq[:, 0]])
        elif table is not None:
            setattr(out, name + "s", np.asarray(table)[uniq[:, col]])
            col += 1
    out.attributes = {k: np.asarray(v)[uniq[:, 0]] for k, v in mesh.attributes.items()}
    return out


def write_ply_mesh(path: str | os.PathLike[str], mesh: Mesh, force: bool = False) -> Path:
    """Write ``mesh`` as binary little endian PLY (per-vertex normals / uvs; see ``unweld``)."""
    mesh = unweld(mesh.validate(str(path)))
    v = np.asarray(mesh.vertices)
    props = {k: v[:, i] for i, k in enumerate("xyz")}
    if mesh.normals is not None:
        props.update({k: np.asarray(mesh.normals)[:, i] for i, k in enumerate(("nx", "ny", "nz"))})
    if mesh.uvs is not None:
        props.update({k: np.asarray(mesh.uvs)[:, i] for i, k in enumerate(("u", "v"))})
    for name, arr in mesh.attributes.items():
        arr = np.asarray(arr)
        keys = ("red", "green", "blue") if name == "rgb" and arr.ndim == 2 else None
        if arr.ndim == 1:
            props[name] = arr
        else:
            props.update(
                {(keys[j] if keys else f"{name}_{j}"): arr[:, j] for j in range(arr.shape[1])}
            )
    f = np.asarray(mesh.faces)
    index_type = np.int32 if len(v) < 1 << 31 else np.uint32
    faces = Ragged(np.full(len(f), 3), f.astype(index_type).reshape(-1))
    elements = {"vertex": props, "face": {"vertex_indices": faces}}
    return write_ply(path, elements, ("written by neuralcodec",), force=force)


# ----------------------------------------------------------------------------- entry points


def read_mesh(path: str | os.PathLike[str]) -> Mesh:
    """Read an ``.obj`` or ``.ply`` mesh (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise MeshError(f"no such file: {path}" if not path.exists() else f"{path} is not a file")
    ext = path.suffix.lower()
    if ext == ".obj":
        return read_obj(path)
    if ext == ".ply":
        return read_ply_mesh(path)
    raise MeshError(f"{path}: not a mesh file ({', '.join(MESH_EXTENSIONS)})")


def write_mesh(path: str | os.PathLike[str], mesh: Mesh, force: bool = False) -> Path:
    ext = Path(path).suffix.lower()
    if ext == ".obj":
        return write_obj(path, mesh, force)
    if ext == ".ply":
        return write_ply_mesh(path, mesh, force)
    raise MeshError(f"{path}: meshes are written as .obj or .ply")
