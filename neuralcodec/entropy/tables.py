"""Frozen integer coding tables: the only thing the range coder ever sees of a distribution.

A ``CodingTables`` holds ``n`` quantised CDFs padded into one int32 matrix::

    cdfs[j, 0 .. cdf_lengths[j]-1]   strictly increasing, cdfs[j, 0] == 0,
                                     cdfs[j, cdf_lengths[j]-1] == 1 << precision
    offsets[j]                       the integer value coded by symbol 0 of table j

Table ``j`` has ``cdf_lengths[j] - 1`` symbols. Symbols ``0 .. cdf_lengths[j]-3`` stand for the
values ``offsets[j] + s``; the last symbol (``cdf_lengths[j]-2``) is the *escape*: a value outside
the table's range is coded as the escape symbol followed by the value in bypass (raw-bit) code,
so every int32 is encodable. Every symbol, escape included, has a non-zero frequency.

Tables are built once by an entropy model's ``freeze()`` with integer arithmetic only, saved with
the weights (safetensors) and loaded as they are: the decoder never re-derives them from floats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PRECISION = 16
MAX_PRECISION = 16


class TableError(ValueError):
    """Coding tables that break the invariants above."""


@dataclass(frozen=True, eq=False)
class CodingTables:
    cdfs: np.ndarray  # int32 [n, max_len]
    cdf_lengths: np.ndarray  # int32 [n]
    offsets: np.ndarray  # int32 [n]
    precision: int = PRECISION

    def __post_init__(self) -> None:
        self._freeze()
        self.validate()

    def _freeze(self) -> None:
        for name in ("cdfs", "cdf_lengths", "offsets"):
            arr = np.ascontiguousarray(getattr(self, name), dtype=np.int32)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @classmethod
    def built(
        cls, cdfs: np.ndarray, cdf_lengths: np.ndarray, offsets: np.ndarray,
        precision: int = PRECISION,
    ) -> CodingTables:  # fmt: skip
        """Tables valid by construction (rows from ``cdf.counts_to_quantized_cdf``, as adaptive
        models rebuild them row by row), without ``validate``'s pass; the range coder's
        ``prepare`` checks every table again in C before coding with it."""
        obj = cls.__new__(cls)
        values = {"cdfs": cdfs, "cdf_lengths": cdf_lengths, "offsets": offsets}
        for name, value in (*values.items(), ("precision", precision)):
            object.__setattr__(obj, name, value)
        obj._freeze()
        return obj

    @property
    def num_tables(self) -> int:
        return int(self.cdf_lengths.shape[0])

    def validate(self) -> None:
        """Raise ``TableError`` unless every invariant of the module docstring holds."""
        cdfs, lengths, offsets = self.cdfs, self.cdf_lengths, self.offsets
        if not 1 <= self.precision <= MAX_PRECISION:
            raise TableError(f"precision must be in 1..{MAX_PRECISION}, got {self.precision}")
        if cdfs.ndim != 2 or lengths.ndim != 1 or offsets.ndim != 1:
            raise TableError("cdfs must be 2-D, cdf_lengths and offsets 1-D")
        n = cdfs.shape[0]
        if n == 0 or lengths.shape[0] != n or offsets.shape[0] != n:
            raise TableError("cdfs, cdf_lengths and offsets must agree on the number of tables")
        if lengths.min() < 3 or lengths.max() > cdfs.shape[1]:
            raise TableError("each cdf needs at least 3 entries (one value, escape, end)")
        total = 1 << self.precision
        c = cdfs.astype(np.int64)
        inside = np.arange(1, c.shape[1])[None, :] < lengths[:, None]  # steps within each cdf
        bad = (c[:, 0] != 0) | (c[np.arange(n), lengths - 1] != total)
        bad |= ((np.diff(c, axis=1) <= 0) & inside).any(axis=1)
        if bad.any():
            j = int(np.argmax(bad))
            raise TableError(f"cdf {j} is not a strictly increasing 0..{total} table")

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Arrays to store beside the weights (e.g. in a safetensors file)."""
        return {
            f"{prefix}cdfs": np.asarray(self.cdfs),
            f"{prefix}cdf_lengths": np.asarray(self.cdf_lengths),
            f"{prefix}offsets": np.asarray(self.offsets),
            f"{prefix}precision": np.asarray([self.precision], dtype=np.int32),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "") -> CodingTables:
        return cls(
            cdfs=np.asarray(arrays[f"{prefix}cdfs"]),
            cdf_lengths=np.asarray(arrays[f"{prefix}cdf_lengths"]),
            offsets=np.asarray(arrays[f"{prefix}offsets"]),
            precision=int(np.asarray(arrays[f"{prefix}precision"]).reshape(-1)[0]),
        )
