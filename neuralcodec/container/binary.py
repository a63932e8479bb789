"""Bytes <-> ``NcfFile``: ``pack`` writes version 2 (``segments.py``) unless asked for version 1;
``unpack`` reads both (specified in docs/format.md). Version 1, kept here::

    magic (8) | version u16 | field-block length u32 | stream count u16 | field block | crc32 u32
    then per stream:  name length u8 | name | data length u32 | data | crc32 u32
    end of file right after the last stream

The header CRC covers every byte before it (magic included); a stream CRC covers its whole record
(name length, name, data length, data). So every byte of a file is checked by magic, version or a
CRC, and any corruption is reported as a ``ContainerError`` before a codec sees a stream.
Version 1 holds at most ``MAX_STREAMS`` streams with flat names; version 2 lifts both limits.
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from neuralcodec.container.fields import ContainerError, pack_fields, unpack_fields, validate_header
from neuralcodec.container.segments import (
    MAGIC,
    MAX_FIELD_BLOCK,
    SUPPORTED_VERSIONS,
    VERSION,
    pack_v2,
)

MAX_STREAMS = 64
STREAM_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}")

_PREFIX = struct.Struct("<8sHIH")  # magic, version, field-block length, stream count
_CRC = struct.Struct("<I")
_LEN = struct.Struct("<I")


@dataclass
class NcfFile:
    """A parsed (or to-be-written) ``.ncf`` file: validated header fields and named streams."""

    header: dict[str, Any]
    streams: Mapping[str, bytes] = field(default_factory=dict)  # a dict, or a lazy NcfReader
    version: int = VERSION

    @property
    def payload_bytes(self) -> int:
        return sum(self.stream_sizes().values())

    def stream_sizes(self) -> dict[str, int]:
        """Stream name -> length, without reading lazily held segments (an ``NcfReader``)."""
        sizes = getattr(self.streams, "sizes", None)
        return sizes() if callable(sizes) else {n: len(s) for n, s in self.streams.items()}


def _check_streams(streams: dict[str, bytes]) -> None:
    if len(streams) > MAX_STREAMS:
        raise ContainerError(f"{len(streams)} streams, at most {MAX_STREAMS}")
    for name, data in streams.items():
        if not isinstance(name, str) or not STREAM_NAME.fullmatch(name):
            raise ContainerError(f"bad stream name {name!r} (1..32 chars of a-z 0-9 . _ -)")
        if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) >= 1 << 32:
            raise ContainerError(f"stream {name!r} must be bytes shorter than 4 GiB")


def pack(ncf: NcfFile, version: int = VERSION) -> bytes:
    """Serialise ``ncf`` as format ``version`` (1 or 2) after validating every field and name."""
    if version == 2:
        return pack_v2(ncf.header, ncf.streams)
    if version != 1:
        raise ContainerError(f"cannot write .ncf format version {version} (1 or 2)")
    header = validate_header(ncf.header)
    _check_streams(ncf.streams)
    block = pack_fields(header)
    head = _PREFIX.pack(MAGIC, 1, len(block), len(ncf.streams)) + block
    parts = [head, _CRC.pack(zlib.crc32(head))]
    for name, data in ncf.streams.items():
        raw = name.encode("ascii")
        record = struct.pack("<B", len(raw)) + raw + _LEN.pack(len(data)) + bytes(data)
        parts += [record, _CRC.pack(zlib.crc32(record))]
    return b"".join(parts)


def _read_head(buf: memoryview) -> tuple[dict[str, Any], int, int]:
    """Check magic, version, sizes and the header CRC; return (header, stream count, end)."""
    if len(buf) == 0:
        raise ContainerError("empty file, not an .ncf file")
    n = min(len(buf), len(MAGIC))
    if bytes(buf[:n]) != MAGIC[:n]:
        raise ContainerError("not an .ncf file (bad magic bytes)")
    if len(buf) < _PREFIX.size:
        raise ContainerError(f"truncated .ncf file: {len(buf)} bytes, the header alone needs more")
    _, version, block_len, count = _PREFIX.unpack_from(buf)
    if version not in SUPPORTED_VERSIONS:
        known = ", ".join(map(str, SUPPORTED_VERSIONS))
        raise ContainerError(
            f"unsupported .ncf format version {version} (this reader knows {known})"
        )
    if block_len > MAX_FIELD_BLOCK or count > MAX_STREAMS:
        raise ContainerError(f"corrupt header: {block_len}-byte field block, {count} streams")
    end = _PREFIX.size + block_len
    if len(buf) < end + _CRC.size:
        raise ContainerError(
            f"truncated .ncf file: header needs {end + _CRC.size} bytes, file has {len(buf)}"
        )
    (crc,) = _CRC.unpack_from(buf, end)
    if zlib.crc32(buf[:end]) != crc:
        raise ContainerError("header CRC mismatch: the file is corrupt")
    return unpack_fields(buf[_PREFIX.size : end]), count, end + _CRC.size


def _read_stream(buf: memoryview, pos: int, index: int) -> tuple[str, bytes, int]:
    """One stream record starting at ``pos``; returns (name, data, next position)."""
    where = f"truncated .ncf file: stream {index} ends past the end of the file"
    if pos + 1 > len(buf):
        raise ContainerError(where)
    name_len = buf[pos]
    data_at = pos + 1 + name_len + _LEN.size
    if data_at > len(buf):
        raise ContainerError(where)
    (data_len,) = _LEN.unpack_from(buf, data_at - _LEN.size)
    end = data_at + data_len
    if end + _CRC.size > len(buf):
        raise ContainerError(f"{where} (claims {data_len} bytes, {len(buf) - data_at} left)")
    (crc,) = _CRC.unpack_from(buf, end)
    if zlib.crc32(buf[pos:end]) != crc:
        raise ContainerError(f"stream {index} CRC mismatch: the file is corrupt")
    name = bytes(buf[pos + 1 : pos + 1 + name_len]).decode("ascii", errors="replace")
    if not STREAM_NAME.fullmatch(name):
        raise ContainerError(f"stream {index} has a bad name {name!r}")
    return name, bytes(buf[data_at:end]), end + _CRC.size


def unpack(data: bytes | bytearray | memoryview) -> NcfFile:
    """Parse and check a whole ``.ncf`` file (any version); raise ``ContainerError`` on any
    defect. Every segment is read and CRC-checked (``open_ncf`` reads lazily instead)."""
    buf = memoryview(data).cast("B")
    if len(buf) >= 10 and bytes(buf[:8]) == MAGIC and struct.unpack_from("<H", buf, 8)[0] == 2:
        from neuralcodec.container.reader import NcfReader

        with NcfReader(io.BytesIO(buf)) as reader:
            return NcfFile(header=reader.header, streams=reader.read_all(), version=2)
    header, count, pos = _read_head(buf)
    streams: dict[str, bytes] = {}
    for index in range(count):
        name, payload, pos = _read_stream(buf, pos, index)
        if name in streams:
            raise ContainerError(f"stream name {name!r} appears twice")
        streams[name] = payload
    if pos != len(buf):
        raise ContainerError(f"trailing garbage: {len(buf) - pos} bytes after the last stream")
    return NcfFile(header=header, streams=streams, version=1)
