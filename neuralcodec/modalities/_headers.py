"""Header checks shared by the adapters: shapes, element counts and metadata entries.

Every check raises ``ContainerError`` with one line naming the modality and the field, before any
decoding work (allocation) happens.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from neuralcodec.container.fields import ContainerError

ATTRIBUTE_DTYPES = (
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64",
    "float16", "float32", "float64",
)  # fmt: skip
MAX_ATTRIBUTES = 64
MAX_ATTRIBUTE_WIDTH = 64


def shape_of(modality: str, header: dict[str, Any], ndim: int) -> tuple[int, ...]:
    """The header's shape as ints, refusing another number of dimensions."""
    if header.get("modality", modality) != modality:
        raise ContainerError(f"{modality} adapter given a {header.get('modality')} header")
    try:
        shape = tuple(int(d) for d in header["shape"])
    except (KeyError, TypeError, ValueError):
        raise ContainerError(f"{modality} header has no usable shape") from None
    if len(shape) != ndim:
        raise ContainerError(f"{modality} shape must have {ndim} dimensions, got {shape}")
    return shape


def check_count(modality: str, what: str, n: int, lo: int, hi: int) -> int:
    if not lo <= n <= hi:
        raise ContainerError(f"{modality} header claims {n} {what} (allowed {lo}..{hi})")
    return n


def metadata_of(header: dict[str, Any]) -> dict[str, Any]:
    meta = header.get("metadata") or {}
    if not isinstance(meta, dict):
        raise ContainerError("header metadata is not a JSON object")
    return meta


def check_attributes(modality: str, entries: Any) -> list[tuple[str, str, int]]:
    """Metadata ``attributes``: a list of [name, dtype, width]; width 0 means a 1-D column."""
    if entries is None:
        return []
    if not isinstance(entries, list) or len(entries) > MAX_ATTRIBUTES:
        raise ContainerError(
            f"{modality} metadata attributes: not a list of at most {MAX_ATTRIBUTES}"
        )
    out = []
    for e in entries:
        ok = (
            isinstance(e, list)
            and len(e) == 3
            and isinstance(e[0], str)
            and re.fullmatch(r"[!-~]{1,64}", e[0])
            and e[1] in ATTRIBUTE_DTYPES
            and isinstance(e[2], int)
            and 0 <= e[2] <= MAX_ATTRIBUTE_WIDTH
        )
        if not ok:
            raise ContainerError(f"{modality} metadata attribute {e!r} is not [name, dtype, width]")
        out.append((e[0], e[1], e[2]))
    if len({e[0] for e in out}) != len(out):
        raise ContainerError(f"{modality} metadata attributes repeat a name")
    return out


def describe_attributes(modality: str, attributes: dict[str, Any]) -> list[list[Any]]:
    """The ``[name, dtype, width]`` list of a dict of N or N x k arrays (width 0 for N), checked
    as ``check_header`` will check it."""
    entries = [
        [name, str(arr.dtype), 0 if arr.ndim == 1 else int(arr.shape[1])]
        for name, arr in ((k, np.asarray(v)) for k, v in attributes.items())
    ]
    check_attributes(modality, entries)
    return entries


def extension(path: str | os.PathLike[str]) -> str:
    return os.path.splitext(os.fspath(path))[1].lower()
