"""PLY files (ascii, binary little / big endian) <-> numpy arrays, one reader for every modality.

Point clouds, meshes and Gaussian splats all use ``.ply``; they share this reader and writer::

    path --read_ply_header--> PlyHeader (elements, properties, format, comments; no data read)
    path --read_ply(elements=...)--> {element: {property: array | Ragged}}
    {element: {property: array | Ragged}} --write_ply--> binary little endian file (atomic)

Scalar properties come back as 1-D arrays of their declared type; list properties (face
``vertex_indices``) as ``Ragged(lengths, values)``, or with ``Ragged.rows()`` as an ``F x k`` array
when every list has the same length. Every count in the header is checked against the file size
(binary) or the number of tokens (ascii) before anything large is allocated, so a header that claims
more than the file holds is a one-line ``PlyError``, never a huge allocation. The writer stores
types PLY lacks as the nearest it has (``ply_compatible``: float16 -> float, 64-bit integers ->
int / uint when they fit, else double).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from neuralcodec.codecs.base import CodecError
from neuralcodec.datasets.paths import atomic_output

PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
_TYPE_NAMES = {"i1": "char", "u1": "uchar", "i2": "short", "u2": "ushort", "i4": "int",
               "u4": "uint", "f4": "float", "f8": "double"}  # fmt: skip
FORMATS = {"ascii": "", "binary_little_endian": "<", "binary_big_endian": ">"}
MAX_HEADER_BYTES = 1 << 20
MAX_COUNT = 1 << 31


class PlyError(CodecError):
    """A file that is not a readable PLY (or one that cannot be written); one-line message."""


@dataclass
class PlyProperty:
    name: str
    dtype: str  # numpy type code without byte order, e.g. "f4"
    count_dtype: str | None = None  # set for list properties


@dataclass
class PlyElement:
    name: str
    count: int
    properties: list[PlyProperty] = field(default_factory=list)

    def prop(self, name: str) -> PlyProperty | None:
        return next((p for p in self.properties if p.name == name), None)


@dataclass
class PlyHeader:
    format: str
    elements: list[PlyElement]
    comments: list[str]
    data_offset: int

    def element(self, name: str) -> PlyElement | None:
        return next((e for e in self.elements if e.name == name), None)


@dataclass
class Ragged:
    """A list property: ``lengths[i]`` values per row, concatenated in ``values``."""

    lengths: np.ndarray
    values: np.ndarray

    def rows(self) -> np.ndarray | None:
        """An ``n x k`` array when every row has the same length ``k``; else None."""
        if len(self.lengths) == 0:
            return self.values.reshape(0, 0)
        k = int(self.lengths[0])
        if np.all(self.lengths == k):
            return self.values.reshape(len(self.lengths), k)
        return None

    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.lengths, dtype=np.int64)])


# ----------------------------------------------------------------------------- header


def _parse_property(path: Path, words: list[str]) -> PlyProperty:
    if len(words) == 5 and words[1] == "list":
        count_t, item_t, name = PLY_TYPES.get(words[2]), PLY_TYPES.get(words[3]), words[4]
        if count_t is None or item_t is None or count_t[0] == "f":
            raise PlyError(f"{path}: bad list property {' '.join(words[1:])!r}")
        return PlyProperty(name, item_t, count_t)
    if len(words) != 3 or words[1] not in PLY_TYPES:
        raise PlyError(f"{path}: bad property line {' '.join(words)!r}")
    return PlyProperty(words[2], PLY_TYPES[words[1]])


def _header_lines(path: Path) -> tuple[list[str], int]:
    try:
        with open(path, "rb") as f:
            head = f.read(MAX_HEADER_BYTES)
    except IsADirectoryError:
        raise PlyError(f"{path} is a directory, not a PLY file") from None
    except OSError as exc:
        raise PlyError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not head.startswith(b"ply") or head[3:4] not in (b"\n", b"\r"):
        raise PlyError(f"{path}: not a PLY file (no 'ply' magic line)")
    m = re.search(rb"[\r\n]end_header[ \t]*(\r?\n|\r)", head)
    if m is None:
        raise PlyError(
            f"{path}: PLY header has no end_header line in its first {MAX_HEADER_BYTES} bytes"
        )
    end, nl = m.start() + 1, m.end() - 1
    text = head[:end].decode("ascii", errors="replace")
    return text.splitlines()[1:], nl + 1


def read_ply_header(path: str | os.PathLike[str]) -> PlyHeader:
    """Parse the header of a PLY file (nothing after ``end_header`` is read)."""
    path = Path(path)
    lines, offset = _header_lines(path)
    fmt, elements, comments = None, [], []
    for line in lines:
        words = line.split()
        if not words:
            continue
        key = words[0]
        if key in ("comment", "obj_info"):
            comments.append(line.strip())
        elif key == "format":
            if len(words) != 3 or words[1] not in FORMATS:
                raise PlyError(f"{path}: unsupported PLY format line {line.strip()!r}")
            fmt = words[1]
        elif key == "element":
            if len(words) != 3 or not words[2].isdigit() or int(words[2]) > MAX_COUNT:
                raise PlyError(f"{path}: bad element line {line.strip()!r}")
            elements.append(PlyElement(words[1], int(words[2])))
        elif key == "property":
            if not elements:
                raise PlyError(f"{path}: property before any element")
            elements[-1].properties.append(_parse_property(path, words))
        else:
            raise PlyError(f"{path}: unknown PLY header line {line.strip()!r}")
    if fmt is None:
        raise PlyError(f"{path}: PLY header has no format line")
    return PlyHeader(fmt, elements, comments, offset)


# ----------------------------------------------------------------------------- binary body


def _scalar_dtype(el: PlyElement, order: str) -> np.dtype:
    return np.dtype([(f"p{i}", order + p.dtype) for i, p in enumerate(el.properties)])


def _read_binary_element(
    path: Path, buf: memoryview, pos: int, el: PlyElement, order: str
) -> tuple[dict, int]:
    """Decode one element starting at ``buf[pos]``; return (properties, next position)."""
    if all(p.count_dtype is None for p in el.properties):
        dt = _scalar_dtype(el, order)
        need = dt.itemsize * el.count
        if len(buf) - pos < need:
            raise PlyError(f"{path}: truncated: element {el.name!r} needs {need} bytes")
        rec = np.frombuffer(buf, dtype=dt, count=el.count, offset=pos)
        out = {p.name: rec[f"p{i}"].astype(p.dtype) for i, p in enumerate(el.properties)}
        return out, pos + need
    fast = _read_uniform_lists(buf, pos, el, order)
    if fast is not None:
        return fast
    return _read_binary_records(path, buf, pos, el, order)


def _read_uniform_lists(buf: memoryview, pos: int, el: PlyElement, order: str):
    """Fast path: every list of the element has the length of the first record's lists."""
    lengths, fields, off = [], [], pos
    for i, p in enumerate(el.properties):
        if p.count_dtype is None:
            fields.append((f"p{i}", order + p.dtype))
            off += np.dtype(p.dtype).itemsize
            continue
        if len(buf) - off < np.dtype(p.count_dtype).itemsize:
            return None
        k = int(np.frombuffer(buf, order + p.count_dtype, 1, off)[0])
        lengths.append(k)
        fields += [(f"n{i}", order + p.count_dtype), (f"p{i}", order + p.dtype, (k,))]
        off += np.dtype(p.count_dtype).itemsize + k * np.dtype(p.dtype).itemsize
    dt = np.dtype(fields)
    if el.count == 0 or len(buf) - pos < dt.itemsize * el.count:
        return None
    rec = np.frombuffer(buf, dtype=dt, count=el.count, offset=pos)
    out, li = {}, 0
    for i, p in enumerate(el.properties):
        if p.count_dtype is None:
            out[p.name] = rec[f"p{i}"].astype(p.dtype)
            continue
        if np.any(rec[f"n{i}"] != lengths[li]):
            return None
        vals = rec[f"p{i}"].astype(p.dtype).reshape(-1)
        out[p.name] = Ragged(np.full(el.count, lengths[li], np.int64), vals)
        li += 1
    return out, pos + dt.itemsize * el.count


def _read_binary_records(path: Path, buf: memoryview, pos: int, el: PlyElement, order: str):
    """General path: records with lists of varying lengths, one record at a time."""
    cols: dict[str, list] = {p.name: [] for p in el.properties}
    lens: dict[str, list] = {p.name: [] for p in el.properties if p.count_dtype}
    for _ in range(el.count):
        for p in el.properties:
            size = np.dtype(p.dtype).itemsize
            if p.count_dtype is None:
                if len(buf) - pos < size:
                    raise PlyError(f"{path}: truncated inside element {el.name!r}")
                cols[p.name].append(np.frombuffer(buf, order + p.dtype, 1, pos))
                pos += size
                continue
            csize = np.dtype(p.count_dtype).itemsize
            if len(buf) - pos < csize:
                raise PlyError(f"{path}: truncated inside element {el.name!r}")
            k = int(np.frombuffer(buf, order + p.count_dtype, 1, pos)[0])
            pos += csize
            if k < 0 or len(buf) - pos < k * size:
                raise PlyError(f"{path}: truncated or bad list in element {el.name!r}")
            cols[p.name].append(np.frombuffer(buf, order + p.dtype, k, pos))
            lens[p.name].append(k)
            pos += k * size
    return _assemble(el, cols, lens), pos


def _assemble(el: PlyElement, cols: dict, lens: dict) -> dict:
    out = {}
    for p in el.properties:
        vals = np.concatenate(cols[p.name]) if cols[p.name] else np.zeros(0, p.dtype)
        vals = vals.astype(p.dtype)
        out[p.name] = vals if p.count_dtype is None else Ragged(np.array(lens[p.name]), vals)
    return out


# ----------------------------------------------------------------------------- ascii body


def _read_ascii_element(path: Path, tokens: list[bytes], pos: int, el: PlyElement):
    if all(p.count_dtype is None for p in el.properties):
        n = len(el.properties) * el.count
        if len(tokens) - pos < n:
            raise PlyError(f"{path}: truncated: element {el.name!r} needs {n} values")
        table = _numbers(path, tokens[pos : pos + n]).reshape(el.count, len(el.properties))
        out = {p.name: _cast(path, table[:, i], p.dtype) for i, p in enumerate(el.properties)}
        return out, pos + n
    cols: dict[str, list] = {p.name: [] for p in el.properties}
    lens: dict[str, list] = {p.name: [] for p in el.properties if p.count_dtype}
    for _ in range(el.count):
        for p in el.properties:
            if pos >= len(tokens):
                raise PlyError(f"{path}: truncated inside element {el.name!r}")
            if p.count_dtype is None:
                cols[p.name].append(tokens[pos])
                pos += 1
                continue
            k = _int_token(path, tokens[pos])
            if k < 0 or len(tokens) - pos - 1 < k:
                raise PlyError(f"{path}: truncated or bad list in element {el.name!r}")
            cols[p.name].extend(tokens[pos + 1 : pos + 1 + k])
            lens[p.name].append(k)
            pos += 1 + k
    out = {}
    for p in el.properties:
        vals = _cast(path, _numbers(path, cols[p.name]), p.dtype)
        out[p.name] = vals if p.count_dtype is None else Ragged(np.array(lens[p.name]), vals)
    return out, pos


def _int_token(path: Path, token: bytes) -> int:
    try:
        return int(token)
    except ValueError:
        raise PlyError(f"{path}: expected a list length, got {token[:20]!r}") from None


def _numbers(path: Path, tokens: list[bytes]) -> np.ndarray:
    try:
        return np.array(tokens, dtype=np.float64) if tokens else np.zeros(0)
    except ValueError:
        raise PlyError(f"{path}: non-numeric value in the PLY data") from None


def _cast(path: Path, values: np.ndarray, dtype: str) -> np.ndarray:
    if dtype[0] in "iu":
        info = np.iinfo(dtype)
        if np.any(values != np.round(values)) or np.any((values < info.min) | (values > info.max)):
            raise PlyError(f"{path}: value out of range for integer type {_TYPE_NAMES[dtype]}")
    return values.astype(dtype)


# ----------------------------------------------------------------------------- public reader


def read_ply(
    path: str | os.PathLike[str], elements: tuple[str, ...] | None = None
) -> tuple[PlyHeader, dict[str, dict]]:
    """Read the named ``elements`` (all if None) of a PLY file; reading stops after the last one."""
    path = Path(path)
    header = read_ply_header(path)
    wanted = [e.name for e in header.elements] if elements is None else list(elements)
    last = max((i for i, e in enumerate(header.elements) if e.name in wanted), default=-1)
    data = path.read_bytes()
    out: dict[str, dict] = {}
    if header.format == "ascii":
        tokens = data[header.data_offset :].split()
        pos = 0
        for el in header.elements[: last + 1]:
            values, pos = _read_ascii_element(path, tokens, pos, el)
            if el.name in wanted:
                out[el.name] = values
        return header, out
    buf, pos, order = memoryview(data), header.data_offset, FORMATS[header.format]
    for el in header.elements[: last + 1]:
        values, pos = _read_binary_element(path, buf, pos, el, order)
        if el.name in wanted:
            out[el.name] = values
    return header, out


# ----------------------------------------------------------------------------- writer


def ply_compatible(arr: np.ndarray) -> np.ndarray:
    """``arr`` in a type PLY has: float16 -> float32; 64-bit integers -> 32-bit when they fit,
    else float64; booleans -> uint8."""
    arr = np.asarray(arr)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    if arr.dtype == np.float16:
        return arr.astype(np.float32)
    if arr.dtype.kind in "iu" and arr.dtype.itemsize == 8:
        for t in (np.int32, np.uint32):
            info = np.iinfo(t)
            if arr.size == 0 or (arr.min() >= info.min and arr.max() <= info.max):
                return arr.astype(t)
        return arr.astype(np.float64)
    return arr


def _element_block(name: str, props: dict) -> tuple[list[str], bytes]:
    """Header lines and packed records of one element (lists: uchar length, one length each)."""
    lines, fields, values, count = [], [], [], None
    for i, (pname, value) in enumerate(props.items()):
        arr = value.rows() if isinstance(value, Ragged) else ply_compatible(value)
        if arr is None or (isinstance(value, Ragged) and not 0 < arr.shape[1] <= 255):
            raise PlyError(f"cannot write {name}.{pname}: lists of different lengths or over 255")
        code = arr.dtype.str[1:]
        if code not in _TYPE_NAMES or arr.ndim != (2 if isinstance(value, Ragged) else 1):
            raise PlyError(f"cannot write {name}.{pname}: {arr.dtype} {arr.shape}")
        if count is not None and len(arr) != count:
            raise PlyError(f"cannot write element {name}: properties of different lengths")
        count = len(arr)
        if isinstance(value, Ragged):
            lines.append(f"property list uchar {_TYPE_NAMES[code]} {pname}")
            fields += [(f"n{i}", "u1"), (f"p{i}", "<" + code, (arr.shape[1],))]
            values += [(f"n{i}", arr.shape[1]), (f"p{i}", arr)]
        else:
            lines.append(f"property {_TYPE_NAMES[code]} {pname}")
            fields.append((f"p{i}", "<" + code))
            values.append((f"p{i}", arr))
    rec = np.empty(count or 0, dtype=np.dtype(fields))
    for key, value in values:
        rec[key] = value
    return [f"element {name} {count or 0}", *lines], rec.tobytes()


def write_ply(
    path: str | os.PathLike[str],
    elements: dict[str, dict],
    comments: tuple[str, ...] = (),
    force: bool = False,
) -> Path:
    """Write ``{element: {property: 1-D array | Ragged}}`` as binary little endian PLY, atomically.

    List properties are written with a ``uchar`` length; every list of one property must have the
    same length (triangles), up to 255."""
    head = ["ply", "format binary_little_endian 1.0"] + [f"comment {c}" for c in comments]
    bodies = []
    for name, props in elements.items():
        lines, body = _element_block(name, props)
        head += lines
        bodies.append(body)
    head.append("end_header")
    with atomic_output(path, force) as f:
        f.write(("\n".join(head) + "\n").encode("ascii"))
        for body in bodies:
            f.write(body)
    return Path(path)
