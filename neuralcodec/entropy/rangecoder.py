"""Python API of the C range coder: int32 values + table indexes + ``CodingTables`` <-> bytes.

::

    values  int32[...] ─┐                                   ┌─> bytes
    indexes int32[...] ─┼─> encode / RangeEncoder.encode ───┤
    tables  CodingTables┘   (C, four interleaved lanes)     │
                                                            │
    bytes ─> decode / RangeDecoder.decode(indexes, tables) ─┴─> int32[indexes.shape]

Value ``v`` with index ``j`` is coded with table ``j`` (symbol ``v - offsets[j]``); values outside
a table's range go through its escape symbol, so every int32 round-trips. ``RangeEncoder`` and
``RangeDecoder`` work in chunks for context models: the bitstream does not depend on how the
symbols are split into calls, so the decoder may compute chunk ``i + 1``'s indexes from chunk
``i``'s values. Arrays cross into C through the buffer protocol only (numpy arrays, any integer
dtype, converted once; torch tensors via ``.numpy()``); nothing becomes a Python list.

Corrupt, truncated or inconsistent input raises ``DecodeError`` (a ``ValueError``); tables are
validated once per ``prepare()`` (the stateful coders cache the last tables they were given).

The coder knows no model. A context model whose every table index depends on the values just
decoded either calls ``RangeDecoder.decode`` once per group of independent symbols or, in C,
decodes symbol by symbol through the capsule ``_rangecoder._C_API`` on ``RangeDecoder.native``
(``_rangecoder_api.h``; ``neuralcodec.kernels`` has such a kernel).
The format is specified in ``docs/entropy-coder.md``; ``reference.py`` implements it in Python.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neuralcodec.entropy import _rangecoder as _rc
from neuralcodec.entropy.tables import CodingTables, TableError

__all__ = [
    "DecodeError",
    "as_int32",
    "PreparedTables",
    "RangeDecoder",
    "RangeEncoder",
    "decode",
    "encode",
    "prepare",
]

DecodeError = _rc.DecodeError
PreparedTables = _rc.Tables
NUM_LANES = _rc.NUM_LANES

_I32 = np.iinfo(np.int32)


def prepare(tables: CodingTables | PreparedTables) -> PreparedTables:
    """Validate ``tables`` once and build the C lookup structures (reusable, immutable)."""
    if isinstance(tables, PreparedTables):
        return tables
    if not isinstance(tables, CodingTables):
        raise TypeError(f"expected CodingTables, got {type(tables).__name__}")
    try:
        return PreparedTables(tables.cdfs, tables.cdf_lengths, tables.offsets, tables.precision)
    except ValueError as err:
        raise TableError(str(err)) from None


def as_int32(x: Any, name: str = "array") -> np.ndarray:
    """``x`` as a C-contiguous int32 array; integers outside int32 raise ``ValueError``."""
    if hasattr(x, "detach") and hasattr(x, "numpy"):  # torch.Tensor, without importing torch
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype == np.int32:
        return np.ascontiguousarray(arr)
    if arr.size == 0:
        return np.zeros(arr.shape, dtype=np.int32)
    if arr.dtype.kind not in "iub":
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    if arr.size and arr.dtype.kind != "b" and arr.dtype.itemsize >= 4:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < _I32.min or hi > _I32.max:
            raise ValueError(f"{name} has values outside int32 ({lo}..{hi})")
    return np.ascontiguousarray(arr, dtype=np.int32)


def _pair(values: Any, indexes: Any) -> tuple[np.ndarray, np.ndarray]:
    v, i = as_int32(values, "values"), as_int32(indexes, "indexes")
    if v.shape != i.shape:
        raise ValueError(f"values {v.shape} and indexes {i.shape} differ in shape")
    return v, i


def encode(values: Any, indexes: Any, tables: CodingTables | PreparedTables) -> bytes:
    """Code ``values[k]`` with ``tables[indexes[k]]`` (C order) into one stream."""
    v, i = _pair(values, indexes)
    return _rc.encode(v, i, prepare(tables))


def decode(data: bytes, indexes: Any, tables: CodingTables | PreparedTables) -> np.ndarray:
    """Inverse of ``encode``: int32 values shaped like ``indexes``."""
    i = as_int32(indexes, "indexes")
    out = np.empty(i.shape, dtype=np.int32)
    _rc.decode(_as_bytes(data), i, prepare(tables), out)
    return out


def _as_bytes(data: Any) -> Any:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return data
    arr = np.asarray(data)
    if arr.dtype != np.uint8:
        raise TypeError(f"data must be bytes or a uint8 array, got {arr.dtype}")
    return np.ascontiguousarray(arr)


class _TableCache:
    """Keeps the prepared form of the last tables seen, keyed by identity."""

    def __init__(self) -> None:
        self._key: object = None
        self._prepared: PreparedTables | None = None

    def get(self, tables: CodingTables | PreparedTables) -> PreparedTables:
        if tables is not self._key:
            self._prepared = prepare(tables)
            self._key = tables
        return self._prepared


class RangeEncoder:
    """Chunked encoder: ``encode(values, indexes, tables)`` any number of times, then ``finish()``.

    The stream equals ``encode(concatenated values, concatenated indexes, ...)`` whatever the
    chunking (tables may differ between chunks; the decoder must use the same per chunk).
    """

    def __init__(self) -> None:
        self._enc = _rc.Encoder()
        self._tables = _TableCache()

    @property
    def count(self) -> int:
        """Number of values encoded so far."""
        return self._enc.count

    def encode(self, values: Any, indexes: Any, tables: CodingTables | PreparedTables) -> None:
        v, i = _pair(values, indexes)
        self._enc.encode(v, i, self._tables.get(tables))

    def finish(self) -> bytes:
        """Flush and return the stream; the encoder cannot be used afterwards."""
        return self._enc.finish()


class RangeDecoder:
    """Chunked decoder: ``decode(indexes, tables)`` returns the next ``indexes.size`` values.

    Raises ``DecodeError`` on a corrupt stream; after that every call raises it again.
    """

    def __init__(self, data: bytes) -> None:
        self._dec = _rc.Decoder(_as_bytes(data))
        self._tables = _TableCache()

    @property
    def count(self) -> int:
        """Number of values decoded so far."""
        return self._dec.count

    @property
    def native(self) -> Any:
        """The C ``Decoder`` object, for C kernels that decode through the coder's C API
        (``_rangecoder_api.h``): what they decode continues this decoder's stream."""
        return self._dec

    def decode(self, indexes: Any, tables: CodingTables | PreparedTables) -> np.ndarray:
        i = as_int32(indexes, "indexes")
        out = np.empty(i.shape, dtype=np.int32)
        self._dec.decode(i, self._tables.get(tables), out)
        return out
