"""Lazy reading of ``.ncf`` files: ``open_ncf(path)`` reads the header and the index only.

::

    open_ncf(path) --header + index (version 2) or whole file (version 1)--> NcfReader
    reader[name] --seek, read one segment, check its CRC--> bytes

``NcfReader`` is a ``Mapping[str, bytes]``, so it goes wherever a codec takes ``streams``
(``NcfFile.streams``, ``Encoded.streams``). A segment is read from disk each time it is asked
for (nothing is cached) and its CRC checked then: a damaged segment raises ``ContainerError``
when, and only when, it is read. Use the reader as a context manager; ``close()`` closes the file
it opened (a file object passed in is left open).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

from neuralcodec.container.binary import NcfFile, unpack
from neuralcodec.container.fields import ContainerError
from neuralcodec.container.segments import read_exact, read_head, read_index

MAX_V1_FILE_BYTES = 1 << 33


def _file_size(f: BinaryIO) -> int:
    return f.seek(0, os.SEEK_END)


class NcfReader(Mapping[str, bytes]):
    """An open ``.ncf`` file: ``header``, ``version``, ``sizes()`` and lazy ``reader[name]``."""

    def __init__(self, f: BinaryIO, owns: bool = False, name: str = "") -> None:
        self._f: BinaryIO | None = f
        self._owns = owns
        self.name = name
        try:
            self.file_bytes = _file_size(f)
            self.header, self.version, head_end = read_head(f, self.file_bytes)
            self._memory: dict[str, bytes] | None = None
            if self.version == 1:
                self._memory = self._read_v1()
                self._index = {n: (0, len(d), 0) for n, d in self._memory.items()}
            else:
                self._index = read_index(f, self.file_bytes, head_end)
        except BaseException:
            self.close()
            raise

    def _read_v1(self) -> dict[str, bytes]:
        if self.file_bytes > MAX_V1_FILE_BYTES:
            raise ContainerError(f"{self.file_bytes}-byte version 1 file: too large")
        data = read_exact(self._file(), 0, self.file_bytes, "the file")
        return dict(unpack(data).streams)

    def _file(self) -> BinaryIO:
        if self._f is None:
            raise ContainerError(f"{self.name or '.ncf file'} is closed")
        return self._f

    # Mapping
    def __getitem__(self, name: str) -> bytes:
        return self.segment(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def segment(self, name: str) -> bytes:
        """The bytes of segment ``name``, read now and CRC-checked (``KeyError`` if absent)."""
        offset, length, crc = self._index[name]
        if self._memory is not None:
            return self._memory[name]
        data = read_exact(self._file(), offset, length, f"segment {name!r}")
        if zlib.crc32(data) != crc:
            raise ContainerError(f"segment {name!r} CRC mismatch: the file is corrupt")
        return data

    def sizes(self) -> dict[str, int]:
        """Segment name -> length in bytes, in file order, from the index (nothing read)."""
        return {n: e[1] for n, e in self._index.items()}

    def locations(self) -> dict[str, tuple[int, int, int]]:
        """Segment name -> (offset, length, crc32) from the index (version 1: offsets are 0)."""
        return dict(self._index)

    def read_all(self) -> dict[str, bytes]:
        """Every segment, read in file order and checked."""
        return {n: self.segment(n) for n in self._index}

    @property
    def payload_bytes(self) -> int:
        return sum(e[1] for e in self._index.values())

    def ncf(self) -> NcfFile:
        """An ``NcfFile`` whose ``streams`` is this reader (segments still read lazily)."""
        return NcfFile(header=self.header, streams=self, version=self.version)

    def close(self) -> None:
        f, self._f = self._f, None
        if f is not None and self._owns:
            f.close()

    @property
    def closed(self) -> bool:
        return self._f is None

    def __enter__(self) -> NcfReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<NcfReader {self.name!r} v{self.version} {len(self)} segments, {state}>"


def open_ncf(source: str | os.PathLike[str] | BinaryIO) -> NcfReader:
    """Open an ``.ncf`` file (a path, or a seekable binary file object) for lazy reading."""
    if hasattr(source, "read") and hasattr(source, "seek"):
        return NcfReader(source, owns=False, name=str(getattr(source, "name", "")))
    path = Path(source)
    if path.is_dir():
        raise ContainerError(f"{path} is a directory, not an .ncf file")
    return NcfReader(open(path, "rb"), owns=True, name=str(path))  # noqa: SIM115 (closed by close())
