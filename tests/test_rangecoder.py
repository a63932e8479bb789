"""Specification tests of the C range coder (neuralcodec.entropy.rangecoder) and its reference."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from neuralcodec.entropy import rangecoder as rc
from neuralcodec.entropy import reference as ref
from neuralcodec.entropy.tables import CodingTables, TableError

I32_MIN, I32_MAX = -(2**31), 2**31 - 1


def random_tables(rng, n=6, max_symbols=40, precision=16, offset_range=50) -> CodingTables:
    """Random tables built with integer arithmetic only: frequencies >= 1 summing to 2^p."""
    total = 1 << precision
    lengths = rng.integers(1, max_symbols + 1, n) + 2  # regular symbols + escape + end
    cdfs = np.zeros((n, int(lengths.max())), dtype=np.int32)
    for j, length in enumerate(lengths):
        k = int(length) - 1
        weights = rng.integers(1, 1000, k) ** 2
        freq = 1 + weights * (total - k) // int(weights.sum())
        freq[int(np.argmax(freq))] += total - int(freq.sum())
        cdfs[j, :length] = np.concatenate([[0], np.cumsum(freq)])
    offsets = rng.integers(-offset_range, offset_range, n).astype(np.int32)
    return CodingTables(cdfs, lengths.astype(np.int32), offsets, precision)


def sample(rng, tables: CodingTables, n: int, escape_rate=0.0):
    """Values drawn from each symbol's own table (plus optional far-away escapes)."""
    idx = rng.integers(0, tables.num_tables, n).astype(np.int32)
    total = 1 << tables.precision
    u = rng.integers(0, total, n)
    rows = [tables.cdfs[j, : tables.cdf_lengths[j]] for j in range(tables.num_tables)]
    sym = np.array(
        [np.searchsorted(rows[j], x, side="right") - 1 for j, x in zip(idx, u, strict=True)]
    )
    nreg = tables.cdf_lengths[idx] - 2
    vals = tables.offsets[idx].astype(np.int64) + np.minimum(sym, nreg - 1)
    esc = rng.random(n) < escape_rate
    far = rng.integers(I32_MIN, I32_MAX, n, endpoint=True)
    vals[esc] = far[esc]
    return vals.astype(np.int32), idx


def ideal_bits(vals, idx, tables: CodingTables) -> float:
    sym = vals.astype(np.int64) - tables.offsets[idx]
    freq = tables.cdfs[idx, sym + 1].astype(np.int64) - tables.cdfs[idx, sym]
    return float(np.sum(tables.precision - np.log2(freq)))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.mark.parametrize("seed", range(6))
def test_roundtrip_and_bytes_equal_reference(seed):
    rng = np.random.default_rng(seed)
    tables = random_tables(rng, precision=int(rng.integers(8, 17)))
    vals, idx = sample(rng, tables, int(rng.integers(1, 400)), escape_rate=0.05)
    data = rc.encode(vals, idx, tables)
    assert data == ref.encode(vals, idx, tables)
    np.testing.assert_array_equal(rc.decode(data, idx, tables), vals)
    np.testing.assert_array_equal(ref.decode(data, idx, tables), vals)


@pytest.mark.parametrize(
    "value", [I32_MIN, I32_MIN + 1, -70_000, -51, 1_000_000, I32_MAX - 1, I32_MAX]
)
def test_escape_roundtrips_extreme_values(rng, value):
    tables = random_tables(rng, n=3)
    idx = np.array([0, 1, 2, 0, 1], dtype=np.int32)
    vals = np.full(5, value, dtype=np.int32)
    data = rc.encode(vals, idx, tables)
    assert data == ref.encode(vals, idx, tables)
    np.testing.assert_array_equal(rc.decode(data, idx, tables), vals)


def test_table_at_int32_edges_escapes_both_ways(rng):
    cdf = np.array([[0, 30000, 60000, 65536]], dtype=np.int32)
    for offset in (I32_MIN, I32_MAX - 1):
        tables = CodingTables(cdf, np.array([4], np.int32), np.array([offset], np.int32))
        vals = np.array([I32_MIN, I32_MAX, offset, offset + 1, 0], dtype=np.int32)
        idx = np.zeros(5, dtype=np.int32)
        data = rc.encode(vals, idx, tables)
        assert data == ref.encode(vals, idx, tables)
        np.testing.assert_array_equal(rc.decode(data, idx, tables), vals)


def test_empty_and_single_symbol(rng):
    tables = random_tables(rng)
    empty = rc.encode(np.zeros(0, np.int32), np.zeros(0, np.int32), tables)
    assert empty == ref.encode([], [], tables)
    assert rc.decode(empty, np.zeros(0, np.int32), tables).shape == (0,)
    one = rc.encode([7], [2], tables)
    assert rc.decode(one, [2], tables).tolist() == [7]


def test_chunked_encoding_equals_one_shot(rng):
    tables = random_tables(rng)
    vals, idx = sample(rng, tables, 1000, escape_rate=0.01)
    one_shot = rc.encode(vals, idx, tables)
    enc = rc.RangeEncoder()
    for a, b in [(0, 1), (1, 3), (3, 3), (3, 10), (10, 517), (517, 1000)]:
        enc.encode(vals[a:b], idx[a:b], tables)
    assert enc.count == 1000
    assert enc.finish() == one_shot


def test_chunked_decoding_equals_one_shot(rng):
    tables = random_tables(rng)
    vals, idx = sample(rng, tables, 1000, escape_rate=0.01)
    dec = rc.RangeDecoder(rc.encode(vals, idx, tables))
    cuts = [0, 2, 3, 7, 8, 500, 999, 1000]
    parts = [dec.decode(idx[a:b], tables) for a, b in zip(cuts, cuts[1:], strict=False)]
    np.testing.assert_array_equal(np.concatenate(parts), vals)
    assert dec.count == 1000


def _context_index(previous: np.ndarray, n_tables: int) -> np.ndarray:
    return (np.abs(previous.astype(np.int64)) % n_tables).astype(np.int32)


def test_context_decoding_indexes_depend_on_previous_chunk(rng):
    tables = random_tables(rng, n=8)
    chunk, n_chunks = 37, 12
    enc, chunks, idxs = rc.RangeEncoder(), [], []
    prev = np.zeros(chunk, dtype=np.int32)
    for _ in range(n_chunks):
        idx = _context_index(prev, tables.num_tables)
        vals = (rng.integers(-60, 60, chunk)).astype(np.int32)
        enc.encode(vals, idx, tables)
        chunks.append(vals)
        idxs.append(idx)
        prev = vals
    data = enc.finish()
    assert data == rc.encode(np.concatenate(chunks), np.concatenate(idxs), tables)
    dec, prev = rc.RangeDecoder(data), np.zeros(chunk, dtype=np.int32)
    for vals in chunks:
        prev = dec.decode(_context_index(prev, tables.num_tables), tables)
        np.testing.assert_array_equal(prev, vals)


def test_different_tables_per_chunk(rng):
    t1, t2 = random_tables(rng, precision=16), random_tables(rng, precision=11)
    v1, i1 = sample(rng, t1, 50)
    v2, i2 = sample(rng, t2, 51)
    enc = rc.RangeEncoder()
    enc.encode(v1, i1, t1)
    enc.encode(v2, i2, t2)
    dec = rc.RangeDecoder(enc.finish())
    np.testing.assert_array_equal(dec.decode(i1, t1), v1)
    np.testing.assert_array_equal(dec.decode(i2, t2), v2)


@pytest.mark.parametrize("precision", [1, 2, 5, 12, 15])
def test_low_precision(rng, precision):
    tables = random_tables(rng, max_symbols=min(40, (1 << precision) - 1), precision=precision)
    vals, idx = sample(rng, tables, 300, escape_rate=0.02)
    data = rc.encode(vals, idx, tables)
    assert data == ref.encode(vals, idx, tables)
    np.testing.assert_array_equal(rc.decode(data, idx, tables), vals)


def test_shapes_dtypes_and_prepared_tables(rng):
    tables = random_tables(rng)
    vals, idx = sample(rng, tables, 60)
    prepared = rc.prepare(tables)
    data = rc.encode(
        vals.astype(np.int64).reshape(3, 20), idx.astype(np.uint8).reshape(3, 20), prepared
    )
    assert data == rc.encode(vals, idx, tables)
    out = rc.decode(bytearray(data), idx.reshape(3, 20), prepared)
    assert out.dtype == np.int32 and out.shape == (3, 20)
    np.testing.assert_array_equal(out.ravel(), vals)
    np.testing.assert_array_equal(rc.decode(np.frombuffer(data, np.uint8), idx, tables), vals)


def test_torch_tensors_accepted(rng):
    torch = pytest.importorskip("torch")
    tables = random_tables(rng)
    vals, idx = sample(rng, tables, 40)
    data = rc.encode(torch.from_numpy(vals), torch.from_numpy(idx).long(), tables)
    np.testing.assert_array_equal(rc.decode(data, torch.from_numpy(idx), tables), vals)


def test_rate_close_to_ideal(rng):
    tables = random_tables(rng, n=16, max_symbols=200)
    vals, idx = sample(rng, tables, 200_000)
    nbytes = len(rc.encode(vals, idx, tables))
    ideal = ideal_bits(vals, idx, tables) / 8
    assert ideal <= nbytes <= ideal * 1.005 + 32


def test_bad_arguments_rejected(rng):
    tables = random_tables(rng, n=4)
    with pytest.raises(ValueError, match="indexes"):
        rc.encode([1, 2, 3], [0, 4, 1], tables)
    with pytest.raises(ValueError, match="indexes"):
        rc.encode([1, 2, 3], [0, -1, 1], tables)
    with pytest.raises(ValueError, match="shape"):
        rc.encode([1, 2, 3], [0, 1], tables)
    with pytest.raises(ValueError, match="int32"):
        rc.encode(np.array([2**40]), [0], tables)
    with pytest.raises(TypeError):
        rc.encode(np.array([0.5]), [0], tables)
    enc = rc.RangeEncoder()
    enc.finish()
    with pytest.raises(ValueError, match="finished"):
        enc.encode([1], [0], tables)


def test_wrong_index_on_decode_raises_and_keeps_state(rng):
    tables = random_tables(rng, n=4)
    vals, idx = sample(rng, tables, 20)
    dec = rc.RangeDecoder(rc.encode(vals, idx, tables))
    with pytest.raises(rc.DecodeError):
        dec.decode(np.array([0, 9], np.int32), tables)
    with pytest.raises(rc.DecodeError):
        rc.decode(rc.encode(vals, idx, tables), idx + 4, tables)
    np.testing.assert_array_equal(dec.decode(idx, tables), vals)


def test_truncated_stream_raises(rng):
    tables = random_tables(rng)
    vals, idx = sample(rng, tables, 2000, escape_rate=0.01)
    data = rc.encode(vals, idx, tables)
    for cut in (1, 2, 5, len(data) // 2, len(data) - 1):
        with pytest.raises(rc.DecodeError):
            rc.decode(data[:-cut], idx, tables)
    for bad in (b"", b"\x80", b"\xff\xff\xff\xff\xff\xff", b"\x05\x00\x00"):
        with pytest.raises(rc.DecodeError):
            rc.RangeDecoder(bad)


def test_bit_flips_never_crash(rng):
    tables = random_tables(rng)
    vals, idx = sample(rng, tables, 500, escape_rate=0.02)
    data = bytearray(rc.encode(vals, idx, tables))
    for _ in range(300):
        bad = bytearray(data)
        pos = int(rng.integers(0, len(bad)))
        bad[pos] ^= 1 << int(rng.integers(0, 8))
        try:
            out = rc.decode(bytes(bad), idx, tables)
        except rc.DecodeError:
            continue
        assert out.shape == vals.shape and out.dtype == np.int32


def test_decoder_refuses_after_corruption(rng):
    tables = random_tables(rng)
    vals, idx = sample(rng, tables, 400)
    dec = rc.RangeDecoder(rc.encode(vals, idx, tables)[:-40])
    with pytest.raises(rc.DecodeError):
        dec.decode(idx, tables)
    with pytest.raises(rc.DecodeError, match="earlier"):
        dec.decode(idx[:1], tables)


def test_decode_error_is_value_error():
    assert issubclass(rc.DecodeError, ValueError)


def _tables(cdf, lengths=None, offsets=(0,), precision=16):
    cdf = np.atleast_2d(np.asarray(cdf, dtype=np.int32))
    lengths = np.asarray(lengths if lengths is not None else [cdf.shape[1]], np.int32)
    return cdf, lengths, np.asarray(offsets, np.int32), precision


@pytest.mark.parametrize(
    "args",
    [
        _tables([0, 100, 100, 65536]),  # zero frequency
        _tables([0, 200, 100, 65536]),  # decreasing
        _tables([0, 100, 65535]),  # wrong total
        _tables([1, 100, 65536]),  # does not start at 0
        _tables([0, 65536]),  # no regular symbol
        _tables([0, 100, 65536], lengths=[4]),  # length beyond the row
        _tables([0, 10, 20, 65536], precision=17),  # precision too high
        _tables([0, 10, 20, 65536], offsets=[2**31 - 1]),  # values beyond int32
    ],
)
def test_invalid_tables_rejected(args):
    cdfs, lengths, offsets, precision = args
    with pytest.raises(ValueError):
        rc.prepare(rc.PreparedTables(cdfs, lengths, offsets, precision))
    with pytest.raises(TableError):
        rc.prepare(CodingTables(cdfs, lengths, offsets, precision))


def test_prepared_tables_reject_wrong_dtypes():
    cdf = np.array([[0, 100, 65536]], dtype=np.int64)
    with pytest.raises(TypeError, match="int32"):
        rc.PreparedTables(cdf, np.array([3], np.int32), np.array([0], np.int32), 16)


def test_docs_hello_world_runs():
    doc = Path(__file__).resolve().parents[1] / "docs" / "entropy-coder.md"
    example = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)[0]
    exec(compile(example, str(doc), "exec"), {})


def test_the_decoder_c_api_capsule_is_exported_under_its_documented_name():
    from neuralcodec.entropy import _rangecoder

    assert "neuralcodec.entropy._rangecoder._C_API" in repr(_rangecoder._C_API)
    assert not hasattr(_rangecoder.Decoder, "decode_mlp")  # no model inside the coder
