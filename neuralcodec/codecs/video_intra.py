"""Block intra coding of ``elic-ip``'s I frames (``tools`` bit 256): directional prediction
from decoded neighbours, an integer 8x8 DCT, the residual coder's adaptive contexts.

::

    plane (padded to 8x8 blocks by repeating its last row / column), blocks in raster order:
        prediction p of the block from the decoded row above (and the 8 pixels above-right,
            or the last pixel above repeated at the plane's right edge), the decoded column to
            the left and the corner, by the block's mode: 0 DC (mean of the available edges;
            128 with none), 1 vertical, 2 horizontal, 3 planar (mean of a horizontal and a
            vertical ramp), then the directions of H.264's 8x8 intra modes, 2- and 3-tap
            averages of the edge pixels: 4 diagonal down-left, 5 diagonal down-right,
            6 vertical-right, 7 horizontal-down, 8 vertical-left, 9 horizontal-up; each mode
            only where its edges exist
        levels q of (block - p) in the 8x8 DCT (integer, zigzag order) at the frame's step
        decoded block = clip(p + dequantise(q), 0, 255); then the in-loop deblocking filter
    stream, per plane (Y, U, V): the modes row by row (adaptive counts, context: the mode of
        the block above), then the levels of the whole plane at once (``code_plane_adaptive``,
        fresh contexts for the frame, the block's hint = its mode class), on one range coder

The levels are decoded before any pixel (their contexts are levels and modes, never pixels),
so the decoder range-decodes a plane in two calls and then rebuilds it block by block. Every
prediction is integer arithmetic on decoded pixels and the inverse transform is the residual
coder's exact integer one (``dequantise``): the same frames on every machine.

The encoder (``encode_plane``) takes, for each block in order, the mode of least squared error
+ lambda x (approximate bits of its levels + MODE_WEIGHT x the mode's code length under the
adaptive counts as the decoder will have them), the levels chosen by the same cost, with the
prediction from what the decoder will have decoded. ``learned_video`` codes an I frame with
this coder and with ``elic-int`` and keeps the one of least squared error + lambda x bits at
the quality's step, so the choice is per frame. ``learned_video`` also uses ``dct_basis`` for
the inter frames' residuals (``tools`` bit 512).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from neuralcodec.kernels import _ext

from .base import CodecError
from .latent.sinks import DecoderSinks, EncoderSinks
from .video_motion import AdaptiveSymbolModel, code_modes, mode_context
from .video_residual import (
    BASIS_BITS,
    NC,
    Q_LIMIT,
    RES_HINTS,
    STEP_BITS,
    STEP_GRID,
    TB,
    ResidualModel,
    code_plane_adaptive,
    deblock,
    residual_base,
    residual_states,
)

INTRA_MODES = 10
LEVEL_BITS = (1.5, 1.0)  # approximate bits of a non-zero level: this[0] + this[1] log2(1 + |q|)
MODE_WEIGHT = 0.5  # a mode's cost in the encoder's choice: this x its code length (adaptive)
HINT = np.array([0, 1, 1, 2, 3, 3, 3, 3, 3, 3], np.int32)  # hint class of each mode
assert HINT.max() < RES_HINTS


# the 8-point DCT-II, orthonormal, in 2^-14 units (rows: frequency 0..7)
_DCT8 = (
    (5793, 5793, 5793, 5793, 5793, 5793, 5793, 5793),
    (8035, 6811, 4551, 1598, -1598, -4551, -6811, -8035),
    (7568, 3135, -3135, -7568, -7568, -3135, 3135, 7568),
    (6811, -1598, -8035, -4551, 4551, 8035, 1598, -6811),
    (5793, -5793, -5793, 5793, 5793, -5793, -5793, 5793),
    (4551, -8035, 1598, 6811, -6811, -1598, 8035, -4551),
    (3135, -7568, 7568, -3135, -3135, 7568, -7568, 3135),
    (1598, -4551, 6811, -8035, 8035, -6811, 4551, -1598),
)  # fmt: skip


def dct_basis() -> np.ndarray:
    """The 2-D 8x8 DCT as the residual coder's basis: int64 (64 pixels, 64 coefficients) in
    2^-BASIS_BITS units, the coefficients in zigzag order (low frequencies first, as the
    adaptive contexts expect of the KLT's energy order). Integers only."""
    c = np.array(_DCT8, np.int64)
    order = sorted(
        ((u, v) for u in range(TB) for v in range(TB)),
        key=lambda t: (t[0] + t[1], t[0] if (t[0] + t[1]) % 2 else t[1]),
    )
    shift = 28 - BASIS_BITS
    cols = [(np.outer(c[u], c[v]).reshape(NC) + (1 << (shift - 1))) >> shift for u, v in order]
    return np.stack(cols, 1)


@lru_cache(maxsize=4)
def dct_model(rounding: float = 0.5) -> ResidualModel:
    """The residual coder with the DCT for both plane kinds and the encoder rounding offset
    ``rounding`` (used by ``quantise``; the intra coder chooses its levels itself); no tables:
    its levels go on the adaptive contexts. On intra residuals it codes in about 6% fewer bits
    than the inter residuals' KLT."""
    basis = dct_basis()
    steps = np.array([16], np.int64)  # unused: callers pass their step
    return ResidualModel({"luma": basis, "chroma": basis}, None, None, steps, rounding, {})  # type: ignore[arg-type]


def available(y: int, x: int, mode: int) -> bool:
    """Whether ``mode`` has its edges at the block whose top-left pixel is (y, x)."""
    if mode == 0:
        return True
    if mode in (1, 4, 8):
        return y > 0
    if mode in (2, 9):
        return x > 0
    return y > 0 and x > 0


# Every mode but DC and planar is (w_a E[a] + w_b E[b] + w_c E[c] + 2) >> 2 per pixel, E the
# block's edge vector: E[_OFF] the corner, E[_OFF - 1 - j] the left column's pixel j (j > 7:
# the last one repeated), E[_OFF + 1 + j] the row above (j < 8), then above-right (8 <= j < 16),
# then its last pixel repeated. A 2-tap mean (a + b + 1) >> 1 is (2a + 2b + 2) >> 2.
_OFF = 14
_ELEN = _OFF + 19


def _lx(j: int) -> int:
    return _OFF - 1 - j


def _tx(j: int) -> int:
    return _OFF + 1 + j


def _tap_tables() -> tuple[np.ndarray, np.ndarray]:
    """(index (modes, 3, 64), weight (modes, 3, 64)) of the directional modes 1, 2, 4..9."""
    idx = np.full((INTRA_MODES, 3, NC), _OFF, np.int64)
    wgt = np.zeros((INTRA_MODES, 3, NC), np.int64)

    def put(m, p, taps):
        for k, (i, w) in enumerate(taps):
            idx[m, k, p], wgt[m, k, p] = i, w

    def e(m: int) -> int:  # the diagonal modes' edge array e[m] (e[TB] the corner)
        return _OFF - TB + m

    for y in range(TB):
        for x in range(TB):
            p = y * TB + x
            put(1, p, [(_tx(x), 4)])
            put(2, p, [(_lx(y), 4)])
            k = x + y
            put(4, p, [(_tx(k), 1), (_tx(k + 1), 2), (_tx(k + 2), 1)])
            put(5, p, [(e(TB + x - y - 1), 1), (e(TB + x - y), 2), (e(TB + x - y + 1), 1)])
            for m, (u, v, sgn) in ((6, (x, y, 1)), (7, (y, x, -1))):
                z, j = 2 * u - v, u - (v >> 1)
                if z >= 0 and z % 2 == 0:
                    taps = [(e(TB + sgn * j), 2), (e(TB + sgn * (j + 1)), 2)]
                elif z > 0:
                    taps = [
                        (e(TB + sgn * (j - 1)), 1),
                        (e(TB + sgn * j), 2),
                        (e(TB + sgn * (j + 1)), 1),
                    ]
                elif z == -1:
                    taps = [(e(TB - 1), 1), (e(TB), 2), (e(TB + 1), 1)]
                else:
                    t = min(max(v - 2 * u, 2), TB - 1)
                    taps = [
                        (e(TB - sgn * t), 1),
                        (e(TB - sgn * (t - 1)), 2),
                        (e(TB - sgn * (t - 2)), 1),
                    ]
                put(m, p, taps)
            k = x + (y >> 1)
            put(
                8,
                p,
                [(_tx(k), 2), (_tx(k + 1), 2)]
                if y % 2 == 0
                else [(_tx(k), 1), (_tx(k + 1), 2), (_tx(k + 2), 1)],
            )
            z, k = x + 2 * y, y + (x >> 1)
            if z > 2 * TB - 3:
                taps = [(_lx(TB - 1), 4)]
            elif z == 2 * TB - 3:
                taps = [(_lx(TB - 2), 1), (_lx(TB - 1), 3)]
            elif z % 2 == 0:
                taps = [(_lx(k), 2), (_lx(k + 1), 2)]
            else:
                taps = [(_lx(k), 1), (_lx(k + 1), 2), (_lx(k + 2), 1)]
            put(9, p, taps)
    return idx, wgt


_TAP_IDX, _TAP_W = _tap_tables()
_TAP_IDX32, _TAP_W32 = _TAP_IDX.astype(np.int32), _TAP_W.astype(np.int32)
_RAMP = np.arange(TB)


def edges(rec: np.ndarray, y: int, x: int) -> np.ndarray:
    """The edge vector E (int64, ``_ELEN``) of the block at (y, x); entries of absent edges are
    0 (no available mode reads them)."""
    e = np.zeros(_ELEN, np.int64)
    if x > 0:
        left = rec[y : y + TB, x - 1]
        e[_OFF - TB : _OFF] = left[::-1]
        e[: _OFF - TB] = left[-1]
    if y > 0:
        top = rec[y - 1, x : x + TB]
        e[_OFF + 1 : _OFF + 1 + TB] = top
        w = rec.shape[1]
        if x + 2 * TB <= w:
            e[_OFF + 1 + TB : _OFF + 1 + 2 * TB] = rec[y - 1, x + TB : x + 2 * TB]
        else:
            e[_OFF + 1 + TB : _OFF + 1 + 2 * TB] = top[-1]
        e[_OFF + 1 + 2 * TB :] = e[_OFF + 2 * TB]
        if x > 0:
            e[_OFF] = rec[y - 1, x - 1]
    return e


def predict_modes(e: np.ndarray, y: int, x: int, modes) -> np.ndarray:
    """Predictions (len(modes), 64) int64 of the block at (y, x) from its edge vector ``e``,
    row-major; every mode must be ``available`` there."""
    out = np.empty((len(modes), NC), np.int64)
    taps = [m for m in modes if m not in (0, 3)]
    if taps:
        out[[modes.index(m) for m in taps]] = (
            (_TAP_W[taps] * e[_TAP_IDX[taps]]).sum(axis=1) + 2
        ) >> 2
    if 0 in modes:
        s = n = 0
        if y > 0:
            s, n = s + int(e[_OFF + 1 : _OFF + 1 + TB].sum()), n + TB
        if x > 0:
            s, n = s + int(e[_OFF - TB : _OFF].sum()), n + TB
        out[modes.index(0)] = (s + n // 2) // n if n else 128
    if 3 in modes:
        top, right0 = e[_OFF + 1 : _OFF + 1 + TB], e[_OFF + 1 + TB]
        left = e[_OFF - TB : _OFF][::-1]
        i = _RAMP
        hor = (TB - 1 - i)[None, :] * left[:, None] + (i + 1)[None, :] * right0
        ver = (TB - 1 - i)[:, None] * top[None, :] + (i + 1)[:, None] * left[-1]
        out[modes.index(3)] = ((hor + ver + TB) >> 4).reshape(NC)
    return out


def predict(rec: np.ndarray, y: int, x: int, mode: int) -> np.ndarray:
    """The 8x8 prediction (int64) of the block at (y, x) from the decoded pixels ``rec``."""
    if not available(y, x, mode):
        raise ValueError("intra mode without its edges")
    return predict_modes(edges(rec, y, x), y, x, [mode])[0].reshape(TB, TB)


def pad_plane(plane: np.ndarray) -> np.ndarray:
    """``plane`` with its last row / column repeated up to multiples of 8."""
    h, w = plane.shape
    return np.pad(plane, ((0, -h % TB), (0, -w % TB)), mode="edge")


def encode_plane(
    model: ResidualModel, plane: np.ndarray, kind: str, step: int, lam: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(modes, levels (nby, nbx, 64) int32, decoded plane before deblocking) of a padded plane:
    per block, the mode of least squared error + ``lam`` x approximate bits (``lam`` per bit,
    in squared steps), every available mode costed at once."""
    h, w = plane.shape
    nby, nbx = h // TB, w // TB
    basis = model.basis[kind].astype(np.float64) / (1 << BASIS_BITS)
    d = float(step) / (1 << STEP_BITS)
    rec = np.zeros((h, w), np.int64)
    modes = np.zeros((nby, nbx), np.int64)
    levels = np.zeros((nby, nbx, NC), np.int32)
    src = plane.astype(np.int64)
    mode_model = AdaptiveSymbolModel(INTRA_MODES + 1, INTRA_MODES)  # as code_planes will
    row_kernel = _ext.exact_kernel("intra_row")
    if row_kernel is not None:  # the row loop below in C: the same modes, levels and pixels
        rec = np.zeros((h, w), np.int32)
        src32 = src.astype(np.int32)
        int_basis = np.ascontiguousarray(model.basis[kind], dtype=np.int64)
        consts = (int_basis, BASIS_BITS, int(step), STEP_BITS, d, float(lam))
        tables = (_level_bit_table(), Q_LIMIT, _TAP_IDX32, _TAP_W32)
        row_modes, row_levels = np.empty(nbx, np.int32), np.empty((nbx, NC), np.int32)
    for by in range(nby):
        ctx = mode_context(modes[by - 1] if by else None, nbx, INTRA_MODES)
        counts = mode_model.counts[:, :INTRA_MODES].astype(np.float64)
        mode_bits = MODE_WEIGHT * -np.log2(counts / mode_model.counts.sum(1, keepdims=True))
        if row_kernel is not None:
            bits = np.ascontiguousarray(mode_bits[ctx])
            row_kernel(src32, rec, by, *consts, bits, *tables, row_modes, row_levels)
            modes[by], levels[by] = row_modes, row_levels
            mode_model.update(ctx, modes[by])
            continue
        for bx in range(nbx):
            y, x = by * TB, bx * TB
            cands = [m for m in range(INTRA_MODES) if available(y, x, m)]
            preds = predict_modes(edges(rec, y, x), y, x, cands)
            blk = src[y : y + TB, x : x + TB].reshape(NC)
            a = ((blk - preds).astype(np.float64) @ basis) / d
            q, cost = _levels(np.abs(a), lam)
            k = int(np.argmin(cost + lam * mode_bits[ctx[bx], cands]))
            m = cands[k]
            qk = (np.sign(a[k]) * q[k]).astype(np.int32)
            modes[by, bx], levels[by, bx] = m, qk
            r = model.dequantise(qk.reshape(1, 1, NC), kind, step)
            rec[y : y + TB, x : x + TB] = np.clip(preds[k].reshape(TB, TB) + r, 0, 255)
        mode_model.update(ctx, modes[by])
    return modes, levels, rec.astype(np.uint8)


@lru_cache(maxsize=1)
def _level_bit_table() -> np.ndarray:
    """``_level_bits`` of 0 .. 4095 (NumPy's own values; levels stay below 2041 as samples are
    8-bit and the finest step is 1)."""
    return _level_bits(np.arange(4096, dtype=np.float64))


def _level_bits(q: np.ndarray) -> np.ndarray:
    return np.where(q > 0, LEVEL_BITS[0] + LEVEL_BITS[1] * np.log2(1 + q), 0.0)


def _levels(a: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Levels of coefficient magnitudes ``a`` (candidates x 64, in steps) and each row's squared
    error + ``lam`` x approximate bits: each level the best of rounded, rounded - 1 and 0, and a
    row emptied where that costs less."""
    q0 = np.floor(a + 0.5)
    q1 = np.maximum(q0 - 1, 0)
    j = np.stack(
        [(a - q0) ** 2 + lam * _level_bits(q0), (a - q1) ** 2 + lam * _level_bits(q1), a * a]
    )
    pick = np.argmin(j, axis=0)  # ties: the first, rounded before rounded - 1 before 0
    q = np.choose(pick, [q0, q1, np.zeros_like(q0)])
    total = np.take_along_axis(j, pick[None], 0)[0].sum(-1)
    empty = (a * a).sum(-1)
    drop = empty <= total
    q[drop] = 0
    return q, np.where(drop, empty, total)


def decode_plane(
    model: ResidualModel, modes: np.ndarray, levels: np.ndarray, kind: str, step: int
) -> np.ndarray:
    """The decoded padded plane (before deblocking) from its modes and levels."""
    nby, nbx = modes.shape
    res = model.dequantise(levels, kind, step)
    kernel = _ext.exact_kernel("intra_decode")
    if kernel is None:
        return _decode_plane_numpy(modes, res)
    rec = np.zeros((nby * TB, nbx * TB), np.int32)
    kernel(modes.astype(np.int32), np.ascontiguousarray(res), _TAP_IDX32, _TAP_W32, rec)
    return rec.astype(np.uint8)


def _decode_plane_numpy(modes: np.ndarray, res: np.ndarray) -> np.ndarray:
    """``decode_plane``'s block loop in NumPy (the C kernel's reference)."""
    nby, nbx = modes.shape
    res = res.astype(np.int64)
    rec = np.zeros((nby * TB, nbx * TB), np.int64)
    for by in range(nby):
        for bx in range(nbx):
            y, x = by * TB, bx * TB
            m = int(modes[by, bx])
            if not available(y, x, m):
                raise ValueError("intra mode without its edges in the stream")
            p = predict_modes(edges(rec, y, x), y, x, [m])[0].reshape(TB, TB)
            rec[y : y + TB, x : x + TB] = np.clip(p + res[y : y + TB, x : x + TB], 0, 255)
    return rec.astype(np.uint8)


def code_planes(sink, si: int, shapes, coded=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Code (``coded``: (modes, levels) per plane) or decode (None) an intra frame's planes
    through ``sink``: modes row by row, then the plane's levels (contexts of the step
    ``STEP_GRID[si]``); ``shapes``: the padded planes' block grids. Returns (modes, levels)."""
    states = residual_states()
    out = []
    for i, grid in enumerate(shapes):
        kind = "luma" if i == 0 else "chroma"
        mm = AdaptiveSymbolModel(INTRA_MODES + 1, INTRA_MODES)
        modes = code_modes(sink, grid, None if coded is None else coded[i][0], mm)
        q = None if coded is None else coded[i][1]
        q = code_plane_adaptive(sink, grid, q, HINT[modes], states, residual_base(kind, si))
        out.append((modes, q))
    return out


def _finish(rec: np.ndarray, shape: tuple[int, int], step: int) -> np.ndarray:
    """The reference plane: deblocked, cropped to the frame's plane size."""
    return deblock(rec, step)[: shape[0], : shape[1]]


def encode_frame(planes, si: int, lam: float, weight=None) -> tuple[bytes, tuple[np.ndarray, ...]]:
    """(stream, decoded planes) of the 4:2:0 ``planes`` coded at ``STEP_GRID[si]``, levels and
    modes chosen at ``lam`` per bit in squared steps. The stream starts with ``si``.
    ``weight(mse, plane)`` (optional, encoder only): the chroma planes are coded again at
    ``lam`` x that factor, from the three planes' squared errors at ``lam``."""
    model, step = dct_model(), STEP_GRID[si]
    coded, recs = [], []
    for i, f in enumerate(planes):
        kind = "luma" if i == 0 else "chroma"
        modes, q, rec = encode_plane(model, pad_plane(f), kind, step, lam)
        coded.append((modes, q))
        recs.append(_finish(rec, f.shape, step))
    if weight is not None:
        mse = [
            float(np.mean((f.astype(np.float64) - r) ** 2))
            for f, r in zip(planes, recs, strict=True)
        ]
        for i in (1, 2):
            w = weight(mse, i)
            if w < 1:
                modes, q, rec = encode_plane(model, pad_plane(planes[i]), "chroma", step, lam * w)
                coded[i] = (modes, q)
                recs[i] = _finish(rec, planes[i].shape, step)
    sinks = EncoderSinks()
    code_planes(sinks["p"], si, [m.shape for m, _ in coded], coded)
    return bytes([si]) + sinks.finish()["p"], tuple(recs)


def decode_frame(stream: bytes, h: int, w: int) -> tuple[np.ndarray, ...]:
    """The Y, U, V planes of an ``h`` x ``w`` 4:2:0 frame from ``encode_frame``'s stream."""
    if not stream or stream[0] >= len(STEP_GRID):
        raise CodecError("elic-ip: bad quantiser step in an I frame")
    model, si = dct_model(), stream[0]
    step = STEP_GRID[si]
    sizes = [(h, w), (h // 2, w // 2), (h // 2, w // 2)]
    shapes = [(-(-a // TB), -(-b // TB)) for a, b in sizes]
    coded = code_planes(DecoderSinks({"p": stream[1:]})["p"], si, shapes)
    return tuple(
        _finish(decode_plane(model, modes, q, "luma" if i == 0 else "chroma", step), size, step)
        for i, ((modes, q), size) in enumerate(zip(coded, sizes, strict=True))
    )
