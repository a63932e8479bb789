"""Lossless packing of shipped weights files: smaller on disk, the same file once read.

A packed file is itself a safetensors file. It holds the original file's header verbatim
(``packed.header``) and its data region with every tensor's bytes regrouped into byte planes
(all first bytes of its elements, then all second bytes, ...) and deflated (``packed.planes``).
Byte planes separate what repeats (the sign and exponent bytes of floats, the high bytes of
integers) from what does not, which is what makes deflate worth it on weights: 24.5 -> 17.8 MB
for ``elic``, 15.7 -> 11.6 MB for ``elic-int``. Its metadata records the sha256 and size of the
original (*canonical*) bytes and copies the original's ``config`` and ``meta`` for inspection.

Reading returns the canonical bytes, checked against the recorded sha256, so everything above
this module (the sha256 a ``.ncf`` header names, twin files that pin a base by sha256, the
manifest) sees the original file: packing changes neither a digest nor a decoded pixel.

``python -m neuralcodec.models.packing pack|unpack|check FILE...``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
import zlib
from pathlib import Path

import numpy as np

PACKING = "planes-deflate-1"
_ITEMSIZE = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2,
    "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
_MAX_HEADER = 100 << 20


class PackingError(ValueError):
    """A weights file that claims to be packed but does not unpack to what it records."""


def split_header(raw: bytes) -> tuple[dict, int]:
    """(header JSON, offset of the data region) of safetensors bytes; ``PackingError`` if not."""
    if len(raw) < 8:
        raise PackingError("not a safetensors file (shorter than its header length)")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > min(len(raw) - 8, _MAX_HEADER):
        raise PackingError("not a safetensors file (header length past the end)")
    try:
        header = json.loads(raw[8 : 8 + n])
    except (UnicodeDecodeError, ValueError):
        raise PackingError("not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise PackingError("not a safetensors file (header is not a JSON object)")
    return header, 8 + n


def metadata_of(raw: bytes) -> dict:
    """The ``__metadata__`` of safetensors bytes ({} when absent)."""
    meta = split_header(raw)[0].get("__metadata__") or {}
    return meta if isinstance(meta, dict) else {}


def _extents(header: dict, size: int) -> list[tuple[int, int, int]]:
    """(start, end, item size) of every tensor's bytes, in file order, covering ``size`` bytes."""
    spans = []
    for name, t in header.items():
        if name == "__metadata__":
            continue
        try:
            a, b = (int(x) for x in t["data_offsets"])
            spans.append((a, b, _ITEMSIZE[t["dtype"]]))
        except (KeyError, TypeError, ValueError):
            raise PackingError(f"tensor {name!r} has no dtype or offsets we know") from None
    spans.sort()
    pos = 0
    for a, b, s in spans:
        if a != pos or b < a or (b - a) % s:
            raise PackingError("tensor data is not one contiguous run of whole elements")
        pos = b
    if pos != size:
        raise PackingError("tensor data does not fill the data region")
    return spans


def _planes(data: bytes, spans: list[tuple[int, int, int]], inverse: bool) -> bytes:
    """Regroup each tensor's bytes into byte planes (or back, ``inverse``)."""
    buf = np.frombuffer(data, dtype=np.uint8)
    out = np.empty_like(buf)
    for a, b, s in spans:
        if inverse:
            out[a:b] = buf[a:b].reshape(s, -1).T.reshape(-1)
        else:
            out[a:b] = buf[a:b].reshape(-1, s).T.reshape(-1)
    return out.tobytes()


def is_packed(raw: bytes) -> bool:
    try:
        return metadata_of(raw).get("packing") is not None
    except PackingError:
        return False


def pack(raw: bytes) -> bytes:
    """Packed safetensors bytes of the (unpacked) safetensors bytes ``raw``."""
    from safetensors.numpy import save

    if is_packed(raw):
        raise PackingError("already packed")
    header, start = split_header(raw)
    spans = _extents(header, len(raw) - start)
    planes = zlib.compress(_planes(raw[start:], spans, inverse=False), 9)
    meta = {
        "packing": PACKING,
        "sha256": hashlib.sha256(raw).hexdigest(),
        "size": str(len(raw)),
    }
    original = header.get("__metadata__") or {}
    for key in ("config", "meta"):
        if key in original:
            meta[key] = original[key]
    arrays = {
        "packed.header": np.frombuffer(raw[:start], dtype=np.uint8),
        "packed.planes": np.frombuffer(planes, dtype=np.uint8),
    }
    packed = save(arrays, metadata=dict(sorted(meta.items())))
    if unpack(packed) != raw:  # never ship a file that does not read back
        raise PackingError("packing did not round-trip")
    return packed


def unpack(raw: bytes) -> bytes:
    """The canonical bytes of a file's bytes: unpacked if packed (checked), else ``raw``."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    meta = metadata_of(raw)
    packing = meta.get("packing")
    if packing is None:
        return raw
    if packing != PACKING:
        raise PackingError(f"unknown weights packing {packing!r}")
    try:
        arrays = load(raw)
        head = arrays["packed.header"].tobytes()
        size = int(meta["size"])
        header, start = split_header(head)
        if start != len(head) or not start <= size <= 1 << 32:
            raise PackingError("packed header does not match the recorded size")
        d = zlib.decompressobj()
        data = d.decompress(arrays["packed.planes"].tobytes(), size - start)
        if len(data) != size - start or d.unconsumed_tail or not d.eof:
            raise PackingError("packed planes do not hold the recorded size")
        out = head + _planes(data, _extents(header, len(data)), inverse=True)
    except (KeyError, ValueError, zlib.error, SafetensorError) as exc:
        raise PackingError(f"damaged packed weights: {exc}") from None
    if hashlib.sha256(out).hexdigest() != meta.get("sha256"):
        raise PackingError("packed weights do not unpack to their recorded sha256")
    return out


# sha256 of the packed files this process has unpacked and checked, per file version: the
# digest of a file just loaded is then known without unpacking it again (nor keeping its bytes).
_CHECKED: dict[tuple[str, int, int], str] = {}


def _version(path: Path) -> tuple[str, int, int]:
    st = Path(path).stat()
    return str(path), st.st_mtime_ns, st.st_size


def canonical_bytes(path: Path) -> bytes:
    """The bytes of the weights file at ``path`` as written before packing (checked)."""
    key = _version(path)
    raw = Path(path).read_bytes()
    out = unpack(raw)
    if out is not raw:
        _CHECKED[key] = hashlib.sha256(out).hexdigest()
    return out


def canonical_sha256(path: Path) -> str:
    """sha256 of ``canonical_bytes(path)``, unpacking only a file version not checked yet."""
    known = _CHECKED.get(_version(path))
    return known if known is not None else hashlib.sha256(canonical_bytes(path)).hexdigest()


def _rewrite(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o644)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m neuralcodec.models.packing", description=__doc__)
    p.add_argument("action", choices=["pack", "unpack", "check"])
    p.add_argument("files", nargs="+", type=Path)
    args = p.parse_args(argv)
    for path in args.files:
        try:
            raw = path.read_bytes()
            canonical = unpack(raw)
            sha = hashlib.sha256(canonical).hexdigest()
            if args.action == "pack" and not is_packed(raw):
                _rewrite(path, pack(raw))
            elif args.action == "unpack" and is_packed(raw):
                _rewrite(path, canonical)
        except (OSError, PackingError) as exc:
            print(f"error: {path}: {exc}", file=sys.stderr)
            return 1
        now = path.stat().st_size
        print(f"{path}: {now:,} bytes on disk, {len(canonical):,} canonical, sha256 {sha}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
