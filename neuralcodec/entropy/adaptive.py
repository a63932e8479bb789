"""Adaptive binary context models on the shared range coder (geometry codecs' entropy core).

::

    encoder: (bits | bytes | ints, contexts) --C state machine--> (values 0/1, table indexes)
             --RangeEncoder.encode (bank of static binary tables)--> bytes
    decoder: bytes --RangeDecoder.native + C kernel (state -> table -> decode -> update)--> values

Every context holds an integer probability state that both sides update after each bit in the
same integer arithmetic (``neuralcodec/kernels/_adaptive.c`` documents the rule), so nothing is
sent for the model: the statistics are learnt while coding. The range coder stays generic: it sees
``BANK_SIZE`` frozen binary tables (one per probability step, ``bank()``) and a table index per
symbol.

Binarisations (see the C file): ``bits`` (one context per bit), ``bytes`` (a binary tree of 255
contexts per base context: an adaptive model over byte values, e.g. octree occupancy patterns)
and ``ints`` (zero flag, sign, unary exponent, mantissa; 64 contexts per set, optionally
conditioned on the previous value). The point cloud codec has its own kernels: octree levels whose
child bits come from a logistic mix of several adaptive context models (integer mixer, trained
online) with direct coding of isolated points, and voxel point counts with contexts from decoded
neighbours; the mesh codec's position residuals (format 6) can take such a mix too.
``Estimate`` counts the ideal code length of what the encoder wrote, for estimated-vs-actual
checks.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from neuralcodec.entropy import rangecoder
from neuralcodec.entropy.tables import PRECISION, CodingTables
from neuralcodec.kernels import _adaptive

BANK_SHIFT = 4
BANK_SIZE = 1 << (16 - BANK_SHIFT)
INT_CONTEXTS = 64  # contexts per set of the integer binarisation
POSITION_KINDS, POSITION_SCALES = 5, 16  # integer sets of code_positions: kinds x scales x 3
BYTE_CONTEXTS = 255  # contexts per base context of the byte binarisation
_INITIAL_STATE = 1 << 15  # p1 = 1/2, no observation
# states, mixer weights and the initial weight of code_octree_mix_level (the C file's sizes)
OCTREE_MIX_STATES, OCTREE_MIX_WEIGHTS, _OCTREE_MIX_W0 = _adaptive.octree_mix_sizes()
OCTREE_COUNT_SETS = 9  # integer sets of code_octree_counts
# states, mixer weights and the initial weight of the mesh positions with mixed contexts
# states and weights of the mixed position contexts (with format 11's recency parts after
# the mixer's own weights, which start at 0)
POS_MIX_STATES, POS_MIX_WEIGHTS, _POS_MIX_W0, _POS_MIX_W_OWN = _adaptive.pos_mix_sizes()


@lru_cache(maxsize=1)
def bank_tables() -> CodingTables:
    """The static binary tables: table j codes P(1) ~ (16 j + 8) / 2^16 (escape: frequency 1)."""
    total = 1 << PRECISION
    j = np.arange(BANK_SIZE, dtype=np.int64)
    f1 = np.clip(j * (1 << BANK_SHIFT) + (1 << (BANK_SHIFT - 1)), 24, total - 25)
    f0 = (total - 1) - f1
    cdfs = np.stack([np.zeros_like(f0), f0, f0 + f1, np.full_like(f0, total)], axis=1)
    return CodingTables(
        cdfs=cdfs.astype(np.int32),
        cdf_lengths=np.full(BANK_SIZE, 4, np.int32),
        offsets=np.zeros(BANK_SIZE, np.int32),
        precision=PRECISION,
    )


@lru_cache(maxsize=1)
def bank() -> rangecoder.PreparedTables:
    return rangecoder.prepare(bank_tables())


@lru_cache(maxsize=1)
def _cost_table() -> np.ndarray:
    """Bits of coding 0 / 1 with every bank table: [BANK_SIZE, 2]."""
    c = bank_tables().cdfs.astype(np.float64)
    freq = np.stack([c[:, 1] - c[:, 0], c[:, 2] - c[:, 1]], axis=1)
    return PRECISION - np.log2(freq)


def states(n: int) -> np.ndarray:
    """Fresh context states (probability 1/2, nothing seen) for ``n`` contexts."""
    return np.full(int(n), _INITIAL_STATE, dtype=np.int32)


def octree_mix_model() -> tuple[np.ndarray, np.ndarray]:
    """Fresh (states, mixer weights) for ``code_octree_mix_level``."""
    st = states(OCTREE_MIX_STATES)
    _adaptive.octree_mix_init(st)
    return st, np.full(OCTREE_MIX_WEIGHTS, _OCTREE_MIX_W0, np.int32)


def pos_mix_model() -> tuple[np.ndarray, np.ndarray]:
    """Fresh (states, mixer weights) for the mesh positions with mixed contexts."""
    st = states(POS_MIX_STATES)
    _adaptive.pos_mix_init(st)
    w = np.zeros(POS_MIX_WEIGHTS, np.int32)
    w[:_POS_MIX_W_OWN] = _POS_MIX_W0
    return st, w


def pos_mix_symbols(values, sets, slots, vids, nb_starts, neighbours, model=None):
    """(binary symbols, bank table indexes) of the mesh positions with mixed contexts (the C
    file's format-6 block says how); ``model`` (states, weights) is updated."""
    st, w = pos_mix_model() if model is None else model
    v = _i32(values)
    sym = np.empty(65 * v.size + 1, np.int32)
    idx = np.empty_like(sym)
    n = _adaptive.pos_mix_encode(
        v, _i32(sets), _i32(slots), _i32(vids), _i32(nb_starts), _i32(neighbours), st, w, sym, idx
    )
    return sym[:n], idx[:n]


def pos_mix_bits(values, sets, slots, vids, nb_starts, neighbours) -> float:
    """Ideal code length of ``pos_mix_symbols`` with a fresh model."""
    sym, idx = pos_mix_symbols(values, sets, slots, vids, nb_starts, neighbours)
    return float(_cost_table()[idx, sym].sum())


def _i32(x) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.int32).reshape(-1)


def ideal_int_bits(values, sets, st: np.ndarray, markov: int = 1) -> float:
    """Ideal code length of ``AdaptiveEncoder.code_ints(values, sets, st, markov)`` without
    writing anything (``st`` is updated as that call would): for encoders choosing a mode."""
    v, s = _i32(values), _i32(sets)
    sym = np.empty(65 * v.size, np.int32)
    idx = np.empty_like(sym)
    n = _adaptive.ints_encode(v, s, st, int(markov), sym, idx)
    return float(_cost_table()[idx[:n], sym[:n]].sum())


def int_symbols(values, sets, st: np.ndarray, markov: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The binary symbols and bank table indexes of ``AdaptiveEncoder.code_ints`` (``st``
    updated), for a caller that writes them with its own ``RangeEncoder`` and ``bank()``."""
    v, s = _i32(values), _i32(sets)
    sym = np.empty(65 * v.size, np.int32)
    idx = np.empty_like(sym)
    n = _adaptive.ints_encode(v, s, st, int(markov), sym, idx)
    return sym[:n], idx[:n]


def decode_ints(decoder: rangecoder.RangeDecoder, sets, st: np.ndarray, markov: int = 1):
    """What ``int_symbols`` wrote, read from ``decoder``'s stream where it stands."""
    s = _i32(sets)
    out = np.empty_like(s)
    _adaptive.ints_decode(decoder.native, bank(), s, st, int(markov), out)
    return out


def wav_band_symbols(values, parent, luma, par, st: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The binary symbols and bank table indexes of one wavelet band (``values`` h x w, its
    ``parent`` band hp x wp or empty, the co-located ``luma`` band or empty; ``par`` as
    ``kernels/_adaptive.c`` (wavelet bands) says); ``st`` is updated."""
    v = np.ascontiguousarray(values, dtype=np.int32)
    h, w = v.shape
    pa = np.ascontiguousarray(parent, dtype=np.int32)
    hp, wp = pa.shape if pa.ndim == 2 else (0, 0)
    saved = st.copy()
    for room in (4 * v.size + 256, 66 * v.size):
        sym = np.empty(room, np.int32)
        idx = np.empty_like(sym)
        n = _adaptive.wav_band_encode(
            v.reshape(-1), h, w, pa.reshape(-1), hp, wp, _i32(luma), _i32(par), st, sym, idx
        )
        if n >= 0:
            return sym[:n], idx[:n]
        st[:] = saved
    raise AssertionError("wav_band_encode: 66 symbols per value always suffice")


def symbol_bits(symbols: np.ndarray, indexes: np.ndarray) -> float:
    """Ideal code length of (symbols, table indexes) with the bank."""
    return float(_cost_table()[indexes, symbols].sum())


def decode_wav_band(decoder: rangecoder.RangeDecoder, shape, parent, luma, par, st: np.ndarray):
    """The h x w band ``wav_band_symbols`` wrote, read from ``decoder`` where it stands."""
    h, w = int(shape[0]), int(shape[1])
    pa = np.ascontiguousarray(parent, dtype=np.int32)
    hp, wp = pa.shape if pa.ndim == 2 else (0, 0)
    out = np.zeros(h * w, np.int32)
    _adaptive.wav_band_decode(
        decoder.native, bank(), h, w, pa.reshape(-1), hp, wp, _i32(luma), _i32(par), st, out
    )
    return out.reshape(h, w)


def position_order(starts, pairs) -> np.ndarray:
    """The mesh codec's position coding order (``kernels/_adaptive.c``, position_order): vertex v
    has the triangles (v, pairs[j]) for j in starts[v] .. starts[v + 1]."""
    st = _i32(starts)
    out = np.empty(max(st.size - 1, 0), np.int32)
    _adaptive.position_order(st, _i32(pairs), out)
    return out


def mirror_partners(q, pred, axis: int, s2: int, top: int) -> np.ndarray:
    """For each vertex (in coding order) the earlier vertex nearest the mirror image of its
    clamped prediction (axis ``axis``: s2 - p), as the mesh position decoder finds it
    (``kernels/_adaptive.c``, mirror); -1 when none is near."""
    qq = _i32(q)
    out = np.empty(qq.size // 3, np.int32)
    _adaptive.mirror_partners(qq, _i32(pred), int(axis), int(s2), int(top), out)
    return out


def repeat_partners(q, pred, border) -> np.ndarray:
    """For each border vertex (in coding order) the earlier border vertex nearest its
    prediction, as the mesh position decoder finds it (``kernels/_adaptive.c``); -1 first."""
    b = _i32(border)
    out = np.empty_like(b)
    _adaptive.repeat_partners(_i32(q), _i32(pred), b, out)
    return out


class AdaptiveEncoder:
    """Writes adaptive binary symbols into one range-coded stream; ``bits`` is the ideal length."""

    def __init__(self) -> None:
        self._enc = rangecoder.RangeEncoder()
        self.bits = 0.0

    def _put(self, values: np.ndarray, indexes: np.ndarray) -> None:
        if values.size:
            self._enc.encode(values, indexes, bank())
            self.bits += float(_cost_table()[indexes, values].sum())

    def code_bits(self, bits, contexts, st: np.ndarray) -> None:
        b, c = _i32(bits), _i32(contexts)
        idx = np.empty_like(b)
        _adaptive.bits_encode(b, c, st, idx)
        self._put(b, idx)

    def code_bytes(self, values, bases, st: np.ndarray) -> None:
        v, c = _i32(values), _i32(bases)
        sym = np.empty(8 * v.size, np.int32)
        idx = np.empty_like(sym)
        _adaptive.bytes_encode(v, c, st, sym, idx)
        self._put(sym, idx)

    def code_octree_mix_level(
        self, occupancy, single, offsets, neighbours, patterns, info, depth, bits, model
    ) -> np.ndarray:
        """One octree level with mixed contexts and direct coding of isolated points (the C
        file's octree v2 block says how). ``single`` / ``offsets`` say which nodes hold one leaf
        and its remaining bits; returns the occupancy as coded (0x100 | child for direct nodes)."""
        occ = _i32(occupancy).copy()
        n = occ.size
        sym = np.empty((8 + 3 * int(bits)) * n + 1, np.int32)
        idx = np.empty_like(sym)
        count = _adaptive.octree_mix_encode(
            _i32(neighbours),
            _i32(patterns),
            _i32(info),
            occ,
            _i32(single).copy(),
            _i32(offsets).copy(),
            int(depth),
            int(bits),
            model[0],
            model[1],
            sym,
            idx,
        )
        self._put(sym[:count], idx[:count])
        return occ

    def code_octree_counts(self, values, neighbours) -> None:
        """Voxel point counts minus one, contexts from decoded neighbours (the C file says how)."""
        v = _i32(values)
        sym = np.empty(65 * v.size + 1, np.int32)
        idx = np.empty_like(sym)
        st = states(OCTREE_COUNT_SETS * INT_CONTEXTS)
        n = _adaptive.octree_counts_encode(v, _i32(neighbours), st, sym, idx)
        self._put(sym[:n], idx[:n])

    def code_pos_mix(self, values, sets, slots, vids, nb_starts, neighbours) -> None:
        self._put(*pos_mix_symbols(values, sets, slots, vids, nb_starts, neighbours))

    def code_ints(self, values, sets, st: np.ndarray, markov: int = 1) -> None:
        v, s = _i32(values), _i32(sets)
        sym = np.empty(65 * v.size, np.int32)
        idx = np.empty_like(sym)
        n = _adaptive.ints_encode(v, s, st, int(markov), sym, idx)
        self._put(sym[:n], idx[:n])

    def finish(self) -> bytes:
        return self._enc.finish()


class AdaptiveDecoder:
    """Reads what ``AdaptiveEncoder`` wrote, call for call with the same contexts and states."""

    def __init__(self, data: bytes) -> None:
        self._dec = rangecoder.RangeDecoder(data)

    def code_bits(self, contexts, st: np.ndarray) -> np.ndarray:
        c = _i32(contexts)
        out = np.empty_like(c)
        _adaptive.bits_decode(self._dec.native, bank(), c, st, out)
        return out

    def code_bytes(self, bases, st: np.ndarray) -> np.ndarray:
        c = _i32(bases)
        out = np.empty_like(c)
        _adaptive.bytes_decode(self._dec.native, bank(), c, st, out)
        return out

    def code_octree_mix_level(
        self, neighbours, patterns, info, depth, bits, model
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(occupancy, single, offsets N x 3) of one level, as the encoder's call coded them."""
        pat = _i32(patterns)
        n = pat.size
        occ, single = np.zeros(n, np.int32), np.zeros(n, np.int32)
        offs = np.zeros(3 * n, np.int32)
        _adaptive.octree_mix_decode(
            self._dec.native,
            bank(),
            _i32(neighbours),
            pat,
            _i32(info),
            int(depth),
            int(bits),
            model[0],
            model[1],
            occ,
            single,
            offs,
        )
        return occ, single, offs.reshape(-1, 3)

    def code_octree_counts(self, neighbours) -> np.ndarray:
        nb = _i32(neighbours)
        out = np.empty(nb.size // 3, np.int32)
        st = states(OCTREE_COUNT_SETS * INT_CONTEXTS)
        _adaptive.octree_counts_decode(self._dec.native, bank(), nb, st, out)
        return out

    def code_ints(self, sets, st: np.ndarray, markov: int = 1) -> np.ndarray:
        s = _i32(sets)
        out = np.empty_like(s)
        _adaptive.ints_decode(self._dec.native, bank(), s, st, int(markov), out)
        return out

    def code_step(self, st: np.ndarray, sym_set: int, flip_set: int = -1, noflip: int = 0) -> int:
        """One integer v with the contexts of ``sym_set`` and, when ``flip_set >= 0`` and
        v != ``noflip``, a 0/1 one f with those of ``flip_set`` (else f = 0): 2 * v + f, as
        ``AdaptiveEncoder.code_ints`` wrote them with markov 1: for decoders whose contexts
        depend on what they decoded (the mesh traversal)."""
        code = _adaptive.mesh_step(
            self._dec.native, bank(), st, int(sym_set), int(flip_set), int(noflip)
        )
        return code if flip_set >= 0 else code >> 1

    def code_positions(
        self,
        starts,
        triples,
        refs,
        kinds,
        top: int,
        st: np.ndarray,
        markov: int,
        palette=None,
        palette_offsets=None,
        nb_starts=None,
        neighbours=None,
        weight: int = 0,
        select: int = 0,
        mirror_axis: int = 0,
        mirror_s2: int = 0,
        weights=None,
        linear=None,
    ) -> np.ndarray:
        """Mesh positions predicted while decoding, optionally through per-axis palettes and
        blended with the mean of earlier neighbours, or (``linear``: 6 coefficients, or format
        7's 9 and a threshold) predicted linearly, and (select bit 4, ``weights`` and states of ``pos_mix_model``) with mixed
        residual contexts (the C file says how); V x 3 int32."""
        r = _i32(refs)
        out = np.empty(3 * r.size, np.int32)
        pal = _i32(np.zeros(0) if palette is None else palette)
        off = _i32(np.zeros(4) if palette_offsets is None else palette_offsets)
        _adaptive.positions_decode(
            self._dec.native,
            bank(),
            st,
            int(markov),
            _i32(starts),
            _i32(triples),
            r,
            _i32(kinds),
            int(top),
            out,
            pal,
            off,
            _i32(np.zeros(r.size + 1) if nb_starts is None else nb_starts),
            _i32(np.zeros(0) if neighbours is None else neighbours),
            int(weight),
            int(select),
            int(mirror_axis),
            int(mirror_s2),
            weights,
            None if linear is None else _i32(linear),
        )
        return out.reshape(-1, 3)
