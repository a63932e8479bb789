"""Version 2 of the ``.ncf`` layout: indexed segments, written as a stream, read lazily.

::

    magic (8) | version u16 = 2 | field-block length u32 | field block | header crc32 u32
    segment data, back to back, in index order (no gaps, no padding)
    index:    per segment  name length u8 | name | offset u64 | length u64 | crc32 u32
    trailer:  index offset u64 | segment count u32 | index crc32 u32 | trailer crc32 u32

The trailer is the last ``TRAILER.size`` bytes, so a reader finds the index with one seek and
never scans. Segment ``i`` starts where segment ``i - 1`` ends (the first right after the header
CRC) and the index starts where the last segment ends, so every byte is covered by the magic, the
version or a CRC: the header CRC (bytes before it), each segment's CRC (in its index entry), the
index CRC (the entries) and the trailer CRC (the trailer's first 16 bytes).

Writing::

    SegmentSink(file, header) --add(name, bytes)...--> finish() --> index + trailer
    NcfWriter(path, header): the same sink on a temporary file, renamed into place on close

Reading::

    NcfReader(file): header + index only (sizes checked against the file size before any
    allocation); reader[name] seeks, reads that one segment and checks its CRC.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

from neuralcodec.container.fields import ContainerError, pack_fields, unpack_fields, validate_header
from neuralcodec.datasets.paths import atomic_output

MAGIC = b"\x89NCF\r\n\x1a\n"
VERSION = 2
SUPPORTED_VERSIONS = (1, 2)
MAX_FIELD_BLOCK = 1 << 16
MAX_SEGMENTS = 1 << 22  # 4,194,304
MAX_NAME_BYTES = 255
SEGMENT_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*(?:/[a-z0-9][a-z0-9._-]*)*")

PREFIX = struct.Struct("<8sHI")  # magic, version, field-block length
CRC = struct.Struct("<I")
ENTRY = struct.Struct("<QQI")  # offset, length, crc32 (after name length + name)
TRAILER = struct.Struct("<QII")  # index offset, segment count, index crc32 (+ its own crc32)
TRAILER_BYTES = TRAILER.size + CRC.size
MIN_ENTRY = 1 + 1 + ENTRY.size
MAX_ENTRY = 1 + MAX_NAME_BYTES + ENTRY.size


def check_name(name: Any) -> bytes:
    """The ASCII bytes of a valid segment name, else ``ContainerError``."""
    if (
        not isinstance(name, str)
        or not name.isascii()
        or len(name) > MAX_NAME_BYTES
        or not SEGMENT_NAME.fullmatch(name)
    ):
        raise ContainerError(
            f"bad segment name {name!r} (1..{MAX_NAME_BYTES} chars of a-z 0-9 . _ - in "
            "'/'-separated parts, each starting with a-z or 0-9)"
        )
    return name.encode("ascii")


def head_bytes(header: dict[str, Any], version: int) -> bytes:
    """Magic, version, field block and header CRC of a header (validated here)."""
    block = pack_fields(validate_header(header))
    head = PREFIX.pack(MAGIC, version, len(block)) + block
    return head + CRC.pack(zlib.crc32(head))


# ----------------------------------------------------------------------------- writing


class SegmentSink:
    """Writes a version 2 file to a binary file object, one segment at a time."""

    def __init__(self, f: BinaryIO, header: dict[str, Any]) -> None:
        self._f = f
        head = head_bytes(header, VERSION)
        f.write(head)
        self._pos = len(head)
        self._entries: list[bytes] = []
        self._names: set[bytes] = set()
        self._done = False

    def add(self, name: str, data: bytes | bytearray | memoryview) -> None:
        """Append one segment (its bytes go to the file now; only the index entry is kept)."""
        if self._done:
            raise ContainerError("segment added after the file was finished")
        raw = check_name(name)
        if raw in self._names:
            raise ContainerError(f"segment name {name!r} appears twice")
        if len(self._entries) >= MAX_SEGMENTS:
            raise ContainerError(f"more than {MAX_SEGMENTS} segments")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ContainerError(f"segment {name!r} must be bytes, got {type(data).__name__}")
        view = memoryview(data).cast("B")
        self._f.write(view)
        entry = ENTRY.pack(self._pos, len(view), zlib.crc32(view))
        self._entries.append(bytes([len(raw)]) + raw + entry)
        self._names.add(raw)
        self._pos += len(view)

    def finish(self) -> int:
        """Write the index and the trailer; returns the file size."""
        if self._done:
            raise ContainerError("file already finished")
        index = b"".join(self._entries)
        trailer = TRAILER.pack(self._pos, len(self._entries), zlib.crc32(index))
        self._f.write(index)
        self._f.write(trailer + CRC.pack(zlib.crc32(trailer)))
        self._done = True
        return self._pos + len(index) + TRAILER_BYTES


def pack_v2(header: dict[str, Any], streams: Mapping[str, bytes]) -> bytes:
    """The bytes of a version 2 file holding ``streams`` in their order."""
    buf = io.BytesIO()
    sink = SegmentSink(buf, header)
    for name, data in streams.items():
        sink.add(name, data)
    sink.finish()
    return buf.getvalue()


class _Aborted(Exception):
    """Thrown into the temporary-file context to make it remove the file."""


class NcfWriter:
    """Streams a version 2 file to ``path``: segments go to a temporary file as they come, the
    index is written at ``close()`` and the file renamed into place. Leaving the ``with`` block
    by an exception (or calling ``abort()``) leaves nothing behind."""

    def __init__(
        self, path: str | os.PathLike[str], header: dict[str, Any], force: bool = False
    ) -> None:
        self.path = Path(path)
        self._stack = contextlib.ExitStack()
        f = self._stack.enter_context(atomic_output(self.path, force))
        try:
            self._sink = SegmentSink(f, header)
        except BaseException:
            self.abort()
            raise
        self.bytes_written = 0

    def add(self, name: str, data: bytes | bytearray | memoryview) -> None:
        self._sink.add(name, data)

    def close(self) -> int:
        """Finish and publish the file; returns its size in bytes."""
        try:
            self.bytes_written = self._sink.finish()
        except BaseException:
            self.abort()
            raise
        self._stack.close()
        return self.bytes_written

    def abort(self) -> None:
        """Drop the temporary file; ``path`` is left as it was."""
        with contextlib.suppress(_Aborted):
            self._stack.__exit__(_Aborted, _Aborted(), None)

    def __enter__(self) -> NcfWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


# ----------------------------------------------------------------------------- reading


def read_exact(f: BinaryIO, offset: int, n: int, what: str) -> bytes:
    f.seek(offset)
    data = f.read(n)
    if len(data) != n:
        raise ContainerError(f"truncated .ncf file: {what} ends past the end of the file")
    return data


def read_head(f: BinaryIO, size: int) -> tuple[dict[str, Any], int, int]:
    """Check magic, version and header CRC; return (header, version, header end)."""
    if size == 0:
        raise ContainerError("empty file, not an .ncf file")
    first = read_exact(f, 0, min(size, PREFIX.size), "the header")
    if first[: len(MAGIC)] != MAGIC[: len(first)]:
        raise ContainerError("not an .ncf file (bad magic bytes)")
    if size < PREFIX.size:
        raise ContainerError(f"truncated .ncf file: {size} bytes, the header alone needs more")
    _, version, block_len = PREFIX.unpack(first)
    if version not in SUPPORTED_VERSIONS:
        known = ", ".join(map(str, SUPPORTED_VERSIONS))
        raise ContainerError(
            f"unsupported .ncf format version {version} (this reader knows {known})"
        )
    extra = 2 if version == 1 else 0  # version 1 has a u16 stream count before the block
    if block_len > MAX_FIELD_BLOCK:
        raise ContainerError(f"corrupt header: {block_len}-byte field block")
    end = PREFIX.size + extra + block_len
    if size < end + CRC.size:
        raise ContainerError(
            f"truncated .ncf file: header needs {end + CRC.size} bytes, file has {size}"
        )
    head = read_exact(f, 0, end + CRC.size, "the header")
    if zlib.crc32(head[:end]) != CRC.unpack_from(head, end)[0]:
        raise ContainerError("header CRC mismatch: the file is corrupt")
    return unpack_fields(head[PREFIX.size + extra : end]), version, end + CRC.size


def read_trailer(f: BinaryIO, size: int, head_end: int) -> tuple[int, int, int]:
    """(index offset, segment count, index crc32), checked against the file size."""
    if size < head_end + TRAILER_BYTES:
        raise ContainerError(
            f"truncated .ncf file: {size} bytes, header and trailer need {head_end + TRAILER_BYTES}"
        )
    raw = read_exact(f, size - TRAILER_BYTES, TRAILER_BYTES, "the trailer")
    if zlib.crc32(raw[: TRAILER.size]) != CRC.unpack_from(raw, TRAILER.size)[0]:
        raise ContainerError(
            "truncated or corrupt .ncf file: no valid trailer at its end (CRC mismatch)"
        )
    index_at, count, index_crc = TRAILER.unpack_from(raw)
    index_len = size - TRAILER_BYTES - index_at
    if not head_end <= index_at <= size - TRAILER_BYTES:
        raise ContainerError(f"corrupt trailer: index offset {index_at} outside the file")
    if count > MAX_SEGMENTS or not count * MIN_ENTRY <= index_len <= count * MAX_ENTRY:
        raise ContainerError(
            f"corrupt trailer: {count} segments cannot have a {index_len}-byte index "
            f"(at most {MAX_SEGMENTS} segments)"
        )
    return index_at, count, index_crc


def parse_index(buf: bytes, count: int, head_end: int, index_at: int) -> dict[str, tuple]:
    """name -> (offset, length, crc32); checks names, order and that segments tile the file."""
    index: dict[str, tuple[int, int, int]] = {}
    pos, expect = 0, head_end
    for i in range(count):
        if pos + MIN_ENTRY > len(buf) or pos + 1 + buf[pos] + ENTRY.size > len(buf):
            raise ContainerError(f"corrupt index: entry {i} ends past the index")
        n = buf[pos]
        name = buf[pos + 1 : pos + 1 + n].decode("ascii", errors="replace")
        offset, length, crc = ENTRY.unpack_from(buf, pos + 1 + n)
        if not SEGMENT_NAME.fullmatch(name):
            raise ContainerError(f"corrupt index: segment {i} has a bad name {name!r}")
        if offset != expect or length > index_at - offset:
            raise ContainerError(
                f"corrupt index: segment {name!r} at {offset}+{length}, expected to start at "
                f"{expect} and end by {index_at}"
            )
        if name in index:
            raise ContainerError(f"segment name {name!r} appears twice")
        index[name] = (offset, length, crc)
        pos, expect = pos + 1 + n + ENTRY.size, offset + length
    if pos != len(buf) or expect != index_at:
        raise ContainerError(
            f"corrupt index: {len(buf) - pos} unused index bytes, {index_at - expect} bytes "
            "between the last segment and the index"
        )
    return index


def read_index(f: BinaryIO, size: int, head_end: int) -> dict[str, tuple]:
    index_at, count, index_crc = read_trailer(f, size, head_end)
    buf = read_exact(f, index_at, size - TRAILER_BYTES - index_at, "the index")
    if zlib.crc32(buf) != index_crc:
        raise ContainerError("index CRC mismatch: the file is corrupt")
    return parse_index(buf, count, head_end, index_at)
