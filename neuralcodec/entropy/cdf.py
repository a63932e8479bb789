"""From probabilities to frozen integer tables, and the ideal code length of a message.

::

    float pmf (values..., escape) --round once--> int counts --fit (integers)--> cdf 0..2^P
    int counts (values..., escape) --rescale (integers)------^
    [cdf, cdf, ...] + offsets --build_tables--> CodingTables (padded int32 matrix)

Every table keeps a non-zero count for every symbol, escape included, so any int32 value can be
coded. Floats are read exactly once (``pmf_to_quantized_cdf`` divides by a correctly rounded
``math.fsum`` and rounds to integers); every later step is integer arithmetic, so the same pmf
gives the same table on every machine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .tables import MAX_PRECISION, PRECISION, CodingTables

# The escape payload of the range coder: a 7-bit head (sign, bit length L-1 of m), then L-1 bits.
ESCAPE_HEAD_BITS = 7
_MAX_SAFE_PRODUCT = 1 << 62


def _check_precision(precision: int, num_symbols: int) -> int:
    if not isinstance(precision, int | np.integer) or not 1 <= precision <= MAX_PRECISION:
        raise ValueError(f"precision must be an int in 1..{MAX_PRECISION}, got {precision!r}")
    if num_symbols < 2:
        raise ValueError(f"a table needs at least one value and the escape, got {num_symbols}")
    if num_symbols > 1 << precision:
        raise ValueError(f"{num_symbols} symbols do not fit {precision}-bit precision")
    return int(precision)


def _fit_counts(counts: np.ndarray, total: int) -> np.ndarray:
    """Integer counts >= 1 -> counts >= 1 summing to ``total`` (``len(counts) <= total``).

    Surplus is taken from the largest bins (first in proportion to ``count - 1``, then one by one
    from the largest, ties to the lowest index); a deficit is added to the largest bins.
    """
    counts = counts.astype(np.int64, copy=True)
    excess = int(counts.sum()) - total
    if excess > 0:
        spare = counts - 1
        counts -= (spare * excess) // max(int(spare.sum()), 1)
        excess = int(counts.sum()) - total
    order = np.argsort(-counts, kind="stable")
    while excess > 0:
        movable = order[counts[order] > 1][:excess]
        if movable.size == 0:
            raise ValueError(f"{counts.size} symbols cannot fit a total of {total}")
        counts[movable] -= 1
        excess -= movable.size
    if excess < 0:
        rounds, rest = divmod(-excess, counts.size)
        counts += rounds
        counts[order[:rest]] += 1
    return counts


def _cdf_from_counts(counts: np.ndarray) -> np.ndarray:
    cdf = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=cdf[1:])
    return cdf.astype(np.int32)


def pmf_to_quantized_cdf(pmf: np.ndarray, precision: int = PRECISION) -> np.ndarray:
    """Probabilities of the regular symbols *and* the final escape -> int32 cdf of len(pmf) + 1.

    ``pmf`` need not be normalised (it is divided by its exact sum); zero entries are allowed and
    get one count. The result runs from 0 to ``2**precision`` with every step >= 1.
    """
    p = np.asarray(pmf, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"pmf must be 1-D, got shape {p.shape}")
    precision = _check_precision(precision, p.size)
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError("pmf must be finite and non-negative")
    mass = math.fsum(p.tolist())
    if mass <= 0:
        raise ValueError("pmf has no mass")
    total = 1 << precision
    counts = np.maximum(np.rint(p / mass * total), 1).astype(np.int64)
    return _cdf_from_counts(_fit_counts(counts, total))


def counts_to_quantized_cdf(counts: np.ndarray, precision: int = PRECISION) -> np.ndarray:
    """Integer weights (values..., escape) -> int32 cdf, with integer arithmetic only.

    Each weight ``c`` becomes ``max(1, round(c * 2**precision / sum))`` (half rounds up), then the
    total is fitted exactly. All-zero weights give a uniform table.
    """
    c = np.asarray(counts)
    if c.ndim != 1 or not np.issubdtype(c.dtype, np.integer):
        raise ValueError(f"counts must be a 1-D integer array, got {c.dtype} {c.shape}")
    precision = _check_precision(precision, c.size)
    c = c.astype(np.int64)
    if np.any(c < 0):
        raise ValueError("counts must be non-negative")
    total = 1 << precision
    limit = min(_MAX_SAFE_PRODUCT >> precision, _MAX_SAFE_PRODUCT // c.size)
    while int(c.max()) >= limit:  # keeps c * total and sum(c) inside int64
        c >>= 1
    mass = int(c.sum())
    if mass == 0:
        q = np.ones(c.size, dtype=np.int64)
    else:
        q = np.maximum((c * total + mass // 2) // mass, 1)
    return _cdf_from_counts(_fit_counts(q, total))


def tables_from_cdfs(
    cdfs: Sequence[np.ndarray], offsets: Sequence[int] | np.ndarray, precision: int = PRECISION
) -> CodingTables:
    """Quantised cdfs (each len(symbols) + 1) and value offsets -> one padded ``CodingTables``.

    Padding repeats each cdf's final ``2**precision`` (the coder never reads past a length).
    """
    if len(cdfs) == 0 or len(cdfs) != len(offsets):
        raise ValueError(f"need one offset per cdf, got {len(cdfs)} cdfs, {len(offsets)} offsets")
    lengths = np.array([len(c) for c in cdfs], dtype=np.int32)
    matrix = np.full((len(cdfs), int(lengths.max())), 1 << precision, dtype=np.int32)
    for j, c in enumerate(cdfs):
        matrix[j, : lengths[j]] = c
    return CodingTables(matrix, lengths, _as_offsets(offsets), precision)


def _as_offsets(offsets: Sequence[int] | np.ndarray) -> np.ndarray:
    o = np.asarray(offsets, dtype=np.int64)
    if np.any(o < np.iinfo(np.int32).min) or np.any(o > np.iinfo(np.int32).max):
        raise ValueError("offsets must fit in int32")
    return o.astype(np.int32)


def build_tables(
    pmfs: Sequence[np.ndarray], offsets: Sequence[int] | np.ndarray, precision: int = PRECISION
) -> CodingTables:
    """Float pmfs (values..., escape), one per table, and their value offsets -> tables."""
    return tables_from_cdfs([pmf_to_quantized_cdf(p, precision) for p in pmfs], offsets, precision)


def escape_payload_bits(
    values: np.ndarray, offsets: np.ndarray, num_regular: np.ndarray
) -> np.ndarray:
    """Raw bits the coder writes after an escape symbol: 7 + floor(log2(m)).

    ``m`` is ``offset - value + 1`` below the range and ``value - (offset + n) + 1`` above it.
    """
    s = values.astype(np.int64) - offsets
    m = np.where(s < 0, -s + 1, s - num_regular + 1)
    _, exponent = np.frexp(np.maximum(m, 1).astype(np.float64))
    return ESCAPE_HEAD_BITS + exponent.astype(np.int64) - 1


def _symbol_stats(values: np.ndarray, indexes: np.ndarray, tables: CodingTables):
    v = np.asarray(values).reshape(-1).astype(np.int64)
    idx = np.asarray(indexes).reshape(-1).astype(np.int64)
    if v.shape != idx.shape:
        raise ValueError(f"values and indexes differ in size: {v.size} vs {idx.size}")
    if idx.size and (idx.min() < 0 or idx.max() >= tables.num_tables):
        raise ValueError(f"indexes must be in 0..{tables.num_tables - 1}")
    offsets = tables.offsets[idx].astype(np.int64)
    nreg = tables.cdf_lengths[idx].astype(np.int64) - 2
    s = v - offsets
    escaped = (s < 0) | (s >= nreg)
    sym = np.where(escaped, nreg, s)
    freq = tables.cdfs[idx, sym + 1].astype(np.int64) - tables.cdfs[idx, sym]
    extra = np.where(escaped, escape_payload_bits(v, offsets, nreg), 0)
    return freq, extra


def information_bits(values: np.ndarray, indexes: np.ndarray, tables: CodingTables) -> float:
    """Ideal code length in bits of ``values`` coded with ``tables[indexes]``.

    ``sum(precision - log2(freq))`` over the symbols, plus, for every escaped value, the exact
    bypass payload of the range coder (``escape_payload_bits``). The real stream adds only the
    coder's flush and lane headers (a few bytes) and its finite-precision loss.
    """
    freq, extra = _symbol_stats(values, indexes, tables)
    bits = tables.precision * freq.size - np.log2(freq.astype(np.float64)).sum()
    return float(bits + extra.sum())
