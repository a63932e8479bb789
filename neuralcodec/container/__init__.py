"""The ``.ncf`` container: a checked header and named byte segments (docs/format.md).

::

    Codec.encode -> Encoded --from_encoded--> NcfFile --pack--> bytes --write_ncf--> file
    header --NcfWriter(path).add(name, bytes)...close()--> file (segments streamed to disk)
    file --read_ncf--> bytes --unpack--> NcfFile --to_encoded--> Encoded -> Codec.decode
    file --open_ncf--> NcfReader (header + index; reader[name] reads one segment)

Files are written as version 2 (indexed segments, ``segments.py``); version 1 files (at most 64
flat streams, ``binary.py``) are still read, and ``pack(ncf, version=1)`` still writes them.
``pack``/``unpack`` know nothing of codecs; ``bridge`` maps codec headers onto the field table
and checks that the decoding codec holds the weights the file was coded with.
"""

from __future__ import annotations

import os
from pathlib import Path

from neuralcodec.container.binary import MAGIC, MAX_STREAMS, VERSION, NcfFile, pack, unpack
from neuralcodec.container.bridge import (
    check_weights,
    from_encoded,
    resolve_codec_class,
    to_encoded,
    weights_status,
)
from neuralcodec.container.fields import (
    COLORSPACES,
    FIELDS,
    LIMITS,
    ContainerError,
    Field,
    ShapeLimits,
    describe,
    validate_header,
)
from neuralcodec.container.reader import NcfReader, open_ncf
from neuralcodec.container.segments import MAX_SEGMENTS, SUPPORTED_VERSIONS, NcfWriter, check_name
from neuralcodec.datasets.paths import write_bytes_atomic

MAX_FILE_BYTES = 1 << 33


def read_ncf(path: str | os.PathLike[str]) -> NcfFile:
    """Read and check a whole ``.ncf`` file, every segment included (``ContainerError`` /
    ``OSError`` on failure). ``open_ncf`` reads lazily instead."""
    path = Path(path)
    if path.is_dir():
        raise ContainerError(f"{path} is a directory, not an .ncf file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ContainerError(
            f"{path}: {size} bytes is larger than any .ncf file this reader accepts"
        )
    with open_ncf(path) as reader:
        return NcfFile(header=reader.header, streams=reader.read_all(), version=reader.version)


def write_ncf(
    path: str | os.PathLike[str], ncf: NcfFile, force: bool = False, version: int = VERSION
) -> int:
    """Atomically write ``ncf`` to ``path`` as format ``version``; returns the file size."""
    if version != VERSION:
        data = pack(ncf, version=version)
        write_bytes_atomic(path, data, force=force)
        return len(data)
    with NcfWriter(path, ncf.header, force=force) as writer:
        for name, data in ncf.streams.items():
            writer.add(name, data)
    return writer.bytes_written


__all__ = [
    "COLORSPACES",
    "FIELDS",
    "LIMITS",
    "MAGIC",
    "MAX_SEGMENTS",
    "MAX_STREAMS",
    "SUPPORTED_VERSIONS",
    "VERSION",
    "ContainerError",
    "Field",
    "NcfFile",
    "NcfReader",
    "NcfWriter",
    "ShapeLimits",
    "check_name",
    "check_weights",
    "describe",
    "from_encoded",
    "open_ncf",
    "pack",
    "read_ncf",
    "resolve_codec_class",
    "to_encoded",
    "unpack",
    "validate_header",
    "weights_status",
    "write_ncf",
]
