"""Pure-Python reference of the range-coder bitstream (slow; for tests and for reading).

It produces the same bytes as ``_rangecoder.c`` (see ``docs/entropy-coder.md``)::

    value v, table j ──> symbol s = v - offsets[j]  (escape if s not in 0..len-3)
    symbol k of the stream ──> lane k % 4: low/range interval narrowing, 8-bit renormalisation
    stream = varint(len lane0) varint(len lane1) varint(len lane2) + lane0..lane3 bytes
"""

from __future__ import annotations

import numpy as np

from neuralcodec.entropy.tables import CodingTables

NUM_LANES = 4
TOP = 1 << 24
MASK32 = 0xFFFFFFFF
ESC_HEAD_BITS = 7
ESC_MAX_LEN1 = 31
READ_SLACK = 3


class ReferenceDecodeError(ValueError):
    """The stream is inconsistent (same conditions as the C decoder's DecodeError)."""


class LaneEncoder:
    def __init__(self) -> None:
        self.low, self.range = 0, MASK32
        self.cache, self.pending = 0, 1
        self.out = bytearray()  # out[0] is the always-zero leading byte, dropped at the end

    def _shift_low(self) -> None:
        if self.low < 0xFF000000 or self.low >= 1 << 32:
            carry = self.low >> 32
            self.out.append((self.cache + carry) & 0xFF)
            self.out.extend([(0xFF + carry) & 0xFF] * (self.pending - 1))
            self.pending = 0
            self.cache = (self.low >> 24) & 0xFF
        self.pending += 1
        self.low = (self.low & 0xFFFFFF) << 8

    def put(self, start: int, freq: int, bits: int) -> None:
        r = self.range >> bits
        self.low += r * start
        self.range = r * freq
        while self.range < TOP:
            self.range <<= 8
            self._shift_low()

    def raw(self, value: int, nbits: int) -> None:
        while nbits > 0:
            k = nbits - 16 if nbits > 16 else nbits
            nbits -= k
            self.put((value >> nbits) & ((1 << k) - 1), 1, k)

    def finish(self) -> bytes:
        self.low = (self.low + 0xFFFFFF) & ~0xFFFFFF
        self._shift_low()
        self._shift_low()
        return bytes(self.out[1:])


class LaneDecoder:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0
        self.range, self.code = MASK32, 0
        for _ in range(4):
            self.code = (self.code << 8) | self._byte()

    def _byte(self) -> int:
        b = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return b

    def _renorm(self) -> None:
        while self.range < TOP:
            self.code = ((self.code << 8) | self._byte()) & MASK32
            self.range <<= 8

    def _narrow(self, bits: int) -> tuple[int, int]:
        r = self.range >> bits
        x = self.code // r
        if x >= 1 << bits:
            raise ReferenceDecodeError("target beyond the total")
        return r, x

    def get(self, cdf: np.ndarray, bits: int) -> int:
        r, x = self._narrow(bits)
        s = int(np.searchsorted(cdf, x, side="right")) - 1
        self.code -= r * int(cdf[s])
        self.range = r * int(cdf[s + 1] - cdf[s])
        self._renorm()
        return s

    def raw(self, nbits: int) -> int:
        value = 0
        while nbits > 0:
            k = nbits - 16 if nbits > 16 else nbits
            nbits -= k
            r, x = self._narrow(k)
            self.code -= r * x
            self.range = r
            self._renorm()
            value = (value << k) | x
        return value


def _escape_payload(lane: LaneEncoder, v: int, offset: int, nreg: int) -> None:
    s = v - offset
    sign = 1 if s < 0 else 0
    m = -s if sign else s - nreg + 1
    len1 = m.bit_length() - 1
    lane.put((sign << 6) | len1, 1, ESC_HEAD_BITS)
    lane.raw(m - (1 << len1), len1)


def _escape_value(lane: LaneDecoder, offset: int, nreg: int) -> int:
    head = lane.raw(ESC_HEAD_BITS)
    len1 = head & 63
    if len1 > ESC_MAX_LEN1:
        raise ReferenceDecodeError("escape length out of range")
    m = (1 << len1) + lane.raw(len1)
    v = offset + (-m if head >> 6 else nreg + m - 1)
    if not -(1 << 31) <= v < 1 << 31:
        raise ReferenceDecodeError("escape value outside int32")
    return v


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 35, 7):
        if pos >= len(data):
            raise ReferenceDecodeError("truncated lane header")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
    raise ReferenceDecodeError("lane length too long")


class ReferenceEncoder:
    """Same contract as ``rangecoder.RangeEncoder``."""

    def __init__(self) -> None:
        self.lanes = [LaneEncoder() for _ in range(NUM_LANES)]
        self.count = 0

    def encode(self, values, indexes, tables: CodingTables) -> None:
        prec = tables.precision
        for v, j in zip(np.ravel(values).tolist(), np.ravel(indexes).tolist(), strict=True):
            lane = self.lanes[self.count % NUM_LANES]
            cdf, offset = tables.cdfs[j, : tables.cdf_lengths[j]], int(tables.offsets[j])
            nreg = len(cdf) - 2
            s = v - offset
            esc = not 0 <= s < nreg
            k = nreg if esc else s
            lane.put(int(cdf[k]), int(cdf[k + 1] - cdf[k]), prec)
            if esc:
                _escape_payload(lane, v, offset, nreg)
            self.count += 1

    def finish(self) -> bytes:
        parts = [lane.finish() for lane in self.lanes]
        head = b"".join(_varint(len(p)) for p in parts[:-1])
        return head + b"".join(parts)


class ReferenceDecoder:
    """Same contract as ``rangecoder.RangeDecoder`` (raises ``ReferenceDecodeError``)."""

    def __init__(self, data: bytes) -> None:
        data, pos, lens = bytes(data), 0, []
        for _ in range(NUM_LANES - 1):
            n, pos = _read_varint(data, pos)
            lens.append(n)
        if sum(lens) > len(data) - pos:
            raise ReferenceDecodeError("lanes exceed the data")
        self.lanes = []
        for n in [*lens, len(data) - pos - sum(lens)]:
            self.lanes.append(LaneDecoder(data[pos : pos + n]))
            pos += n
        self.count = 0

    def decode(self, indexes, tables: CodingTables) -> np.ndarray:
        idx = np.asarray(indexes)
        out = np.empty(idx.size, dtype=np.int32)
        for i, j in enumerate(idx.ravel().tolist()):
            if not 0 <= j < tables.num_tables:
                raise ReferenceDecodeError("index out of range")
            lane = self.lanes[self.count % NUM_LANES]
            cdf, offset = tables.cdfs[j, : tables.cdf_lengths[j]], int(tables.offsets[j])
            s = lane.get(cdf, tables.precision)
            nreg = len(cdf) - 2
            out[i] = _escape_value(lane, offset, nreg) if s == nreg else offset + s
            self.count += 1
        if any(lane.pos > len(lane.data) + READ_SLACK for lane in self.lanes):
            raise ReferenceDecodeError("read past the end of a lane")
        return out.reshape(idx.shape)


def encode(values, indexes, tables: CodingTables) -> bytes:
    enc = ReferenceEncoder()
    enc.encode(values, indexes, tables)
    return enc.finish()


def decode(data: bytes, indexes, tables: CodingTables) -> np.ndarray:
    return ReferenceDecoder(data).decode(indexes, tables)
