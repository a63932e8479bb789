"""The ``.ncf`` container: a checked header and named byte streams (docs/format.md).

::

    Codec.encode -> Encoded --from_encoded--> NcfFile --pack--> bytes --write_ncf--> file
    file --read_ncf--> bytes --unpack--> NcfFile --to_encoded--> Encoded -> Codec.decode

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
from neuralcodec.datasets.paths import write_bytes_atomic

MAX_FILE_BYTES = 1 << 33


def read_ncf(path: str | os.PathLike[str]) -> NcfFile:
    """Read and check an ``.ncf`` file (``ContainerError`` / ``OSError`` on failure)."""
    path = Path(path)
    if path.is_dir():
        raise ContainerError(f"{path} is a directory, not an .ncf file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ContainerError(
            f"{path}: {size} bytes is larger than any .ncf file this reader accepts"
        )
    return unpack(path.read_bytes())


def write_ncf(path: str | os.PathLike[str], ncf: NcfFile, force: bool = False) -> int:
    """Atomically write ``ncf`` to ``path``; returns the file size in bytes."""
    data = pack(ncf)
    write_bytes_atomic(path, data, force=force)
    return len(data)


__all__ = [
    "COLORSPACES",
    "FIELDS",
    "LIMITS",
    "MAGIC",
    "MAX_STREAMS",
    "VERSION",
    "ContainerError",
    "Field",
    "NcfFile",
    "ShapeLimits",
    "check_weights",
    "describe",
    "from_encoded",
    "pack",
    "read_ncf",
    "resolve_codec_class",
    "to_encoded",
    "unpack",
    "validate_header",
    "weights_status",
    "write_ncf",
]
