"""Property-based fuzzing of the range coder: arbitrary bytes never crash the decoder, and
arbitrary int32 values round-trip through random tables (byte-identical to the reference)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuralcodec.entropy import rangecoder as rc
from neuralcodec.entropy import reference as ref
from neuralcodec.entropy.tables import CodingTables

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
INT32 = st.integers(-(2**31), 2**31 - 1)


@st.composite
def coding_tables(draw) -> CodingTables:
    precision = draw(st.integers(1, 16))
    total = 1 << precision
    n = draw(st.integers(1, 5))
    rows, lengths = [], []
    for _ in range(n):
        k = draw(st.integers(2, min(total, 12)))  # symbols, escape included
        cuts = draw(st.sets(st.integers(1, total - 1), min_size=k - 1, max_size=k - 1))
        rows.append([0, *sorted(cuts), total])
        lengths.append(k + 1)
    width = max(lengths)
    cdfs = np.zeros((n, width), dtype=np.int32)
    for j, row in enumerate(rows):
        cdfs[j, : len(row)] = row
    offsets = draw(st.lists(st.integers(-(2**31), 2**31 - 20), min_size=n, max_size=n))
    return CodingTables(cdfs, np.array(lengths, np.int32), np.array(offsets, np.int32), precision)


@SETTINGS
@given(
    tables=coding_tables(),
    data=st.binary(max_size=64),
    indexes=st.lists(st.integers(-2, 6), max_size=80),
)
def test_decoding_arbitrary_bytes_is_safe(tables, data, indexes):
    idx = np.array(indexes, dtype=np.int32)
    try:
        out = rc.decode(data, idx, tables)
    except rc.DecodeError:
        return
    assert out.shape == idx.shape
    assert np.all((idx >= 0) & (idx < tables.num_tables))
    np.testing.assert_array_equal(out, ref.decode(data, idx, tables))


@SETTINGS
@given(tables=coding_tables(), data=st.binary(max_size=48), split=st.integers(0, 40))
def test_chunked_decoding_of_arbitrary_bytes_is_safe(tables, data, split):
    idx = np.arange(40, dtype=np.int32) % tables.num_tables
    try:
        dec = rc.RangeDecoder(data)
        dec.decode(idx[:split], tables)
        dec.decode(idx[split:], tables)
    except rc.DecodeError:
        pass


@st.composite
def values_for(draw, tables: CodingTables):
    """Indexes, and values that are either anywhere in int32 or near the table's range."""
    n = draw(st.integers(0, 60))
    idx = draw(st.lists(st.integers(0, tables.num_tables - 1), min_size=n, max_size=n))
    vals = []
    for j in idx:
        near = int(tables.offsets[j]) + draw(st.integers(-3, 15))
        vals.append(draw(st.one_of(INT32, st.just(int(np.clip(near, -(2**31), 2**31 - 1))))))
    return np.array(vals, dtype=np.int32), np.array(idx, dtype=np.int32)


@SETTINGS
@given(st.data())
def test_random_values_roundtrip(data):
    tables = data.draw(coding_tables())
    vals, idx = data.draw(values_for(tables))
    stream = rc.encode(vals, idx, tables)
    assert stream == ref.encode(vals, idx, tables)
    np.testing.assert_array_equal(rc.decode(stream, idx, tables), vals)
    cut = data.draw(st.integers(0, len(vals)))
    dec = rc.RangeDecoder(stream)
    got = np.concatenate([dec.decode(idx[:cut], tables), dec.decode(idx[cut:], tables)])
    np.testing.assert_array_equal(got, vals)
