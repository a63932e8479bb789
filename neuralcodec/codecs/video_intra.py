"""Block intra coding of ``elic-ip``'s I frames (``tools`` bit 256): directional prediction
from decoded neighbours, the residual coder's 8x8 transform and adaptive contexts, integers.

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
prediction is integer arithmetic on decoded pixels and the transform is the residual coder's
exact integer inverse: the same frames on every machine.

The encoder (``encode_plane``) takes, for each block in order, the mode of least squared error
+ lambda x (approximate bits of its levels + MODE_WEIGHT x the mode's code length under the
adaptive counts as the decoder will have them), the levels chosen by the same cost, with the
prediction from what the decoder will have decoded; ``learned_video`` codes an I frame with this coder or with ``elic-int``, whichever
costs less (squared error + lambda x bits at the quality's step), so the choice is per frame.
"""

from __future__ import annotations

import numpy as np

from .video_motion import AdaptiveSymbolModel, code_modes
from .video_residual import (
    BASIS_BITS,
    NC,
    RES_HINTS,
    STEP_BITS,
    TB,
    ResidualModel,
    code_plane_adaptive,
    deblock,
    residual_base,
    residual_states,
)

INTRA_MODES = 10
ROUNDING = 0.4  # the encoder's rounding offset of the levels (dead zone below 0.6 steps)
LEVEL_BITS = (1.5, 1.0)  # approximate bits of a non-zero level: this[0] + this[1] log2(1 + |q|)
MODE_WEIGHT = 0.5  # a mode's cost in the encoder's choice: this x its code length (adaptive)
RDOQ = True  # levels by squared error + lambda x approximate bits (else plain dead-zone rounding)
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


_MODEL: list[ResidualModel] = []


def intra_model() -> ResidualModel:
    """The residual coder with the DCT for both plane kinds (on intra residuals it codes in
    about 6% fewer bits than the inter residuals' KLT); no tables: levels use adaptive contexts."""
    if not _MODEL:
        basis = dct_basis()
        steps = np.array([16], np.int64)
        _MODEL.append(ResidualModel({"luma": basis, "chroma": basis}, None, None, steps, 0.5, {}))  # type: ignore[arg-type]
    return _MODEL[0]


def available(y: int, x: int, mode: int) -> bool:
    """Whether ``mode`` has its edges at the block whose top-left pixel is (y, x)."""
    if mode == 0:
        return True
    if mode in (1, 4, 8):
        return y > 0
    if mode in (2, 9):
        return x > 0
    return y > 0 and x > 0


def predict(rec: np.ndarray, y: int, x: int, mode: int) -> np.ndarray:
    """The 8x8 prediction (int64) of the block at (y, x) from the decoded pixels ``rec``."""
    w = rec.shape[1]
    if mode == 0:
        s = n = 0
        if y > 0:
            s, n = s + int(rec[y - 1, x : x + TB].sum()), n + TB
        if x > 0:
            s, n = s + int(rec[y : y + TB, x - 1].sum()), n + TB
        return np.full((TB, TB), (s + n // 2) // n if n else 128, np.int64)
    if not available(y, x, mode):
        raise ValueError("intra mode without its edges")
    i = np.arange(TB)
    if mode == 2:
        return np.repeat(rec[y : y + TB, x - 1].astype(np.int64)[:, None], TB, 1)
    yy, xx = np.mgrid[0:TB, 0:TB]
    if mode == 9:  # horizontal-up, from the left column only
        left = rec[y : y + TB, x - 1].astype(np.int64)
        e = np.concatenate([left, np.repeat(left[-1:], 6)])
        z, k = xx + 2 * yy, yy + (xx >> 1)
        two = (e[k] + e[k + 1] + 1) >> 1
        three = (e[k] + 2 * e[k + 1] + e[k + 2] + 2) >> 2
        out = np.where(z % 2 == 0, two, three)
        out = np.where(z == 2 * TB - 3, (left[-2] + 3 * left[-1] + 2) >> 2, out)
        return np.where(z > 2 * TB - 3, left[-1], out)
    top = rec[y - 1, x : x + TB].astype(np.int64)
    if mode == 1:
        return np.repeat(top[None], TB, 0)
    right = (
        rec[y - 1, x + TB : x + 2 * TB].astype(np.int64)
        if x + 2 * TB <= w
        else np.full(TB, top[-1], np.int64)
    )
    if mode == 4:
        e = np.concatenate([top, right, right[-1:]])
        k = i[:, None] + i[None, :]
        return (e[k] + 2 * e[k + 1] + e[k + 2] + 2) >> 2
    if mode == 8:  # vertical-left, from above and above-right
        e = np.concatenate([top, right])
        k = xx + (yy >> 1)
        two = (e[k] + e[k + 1] + 1) >> 1
        three = (e[k] + 2 * e[k + 1] + e[k + 2] + 2) >> 2
        return np.where(yy % 2 == 0, two, three)
    left = rec[y : y + TB, x - 1].astype(np.int64)
    if mode == 3:
        hor = (TB - 1 - i)[None, :] * left[:, None] + (i + 1)[None, :] * right[0]
        ver = (TB - 1 - i)[:, None] * top[None, :] + (i + 1)[:, None] * left[-1]
        return (hor + ver + TB) >> 4
    corner = np.array([rec[y - 1, x - 1]], np.int64)
    e = np.concatenate([left[::-1], corner, top, top[-1:]])  # e[TB] is the corner
    if mode == 5:  # diagonal down-right
        k = TB + i[None, :] - i[:, None]
        return (e[k - 1] + 2 * e[k] + e[k + 1] + 2) >> 2
    # vertical-right (6) and horizontal-down (7, its mirror image): edge position j counts
    # along the top from the corner (e[TB + j]: j = 0 the corner, j > 0 above, j < 0 left)
    u, v = (xx, yy) if mode == 6 else (yy, xx)  # along, across the main edge
    sgn = 1 if mode == 6 else -1
    z = 2 * u - v
    j = u - (v >> 1)
    two = (e[TB + sgn * j] + e[TB + sgn * (j + 1)] + 1) >> 1
    three = (e[TB + sgn * (j - 1)] + 2 * e[TB + sgn * j] + e[TB + sgn * (j + 1)] + 2) >> 2
    out = np.where(z % 2 == 0, two, three)
    out = np.where(z == -1, (e[TB - 1] + 2 * e[TB] + e[TB + 1] + 2) >> 2, out)
    # beyond the corner: the other edge at distance v - 2u from it, 1-2-1 smoothed
    t = np.clip(v - 2 * u, 2, TB - 1)
    side = (e[TB - sgn * t] + 2 * e[TB - sgn * (t - 1)] + e[TB - sgn * (t - 2)] + 2) >> 2
    return np.where(z < -1, side, out)


def pad_plane(plane: np.ndarray) -> np.ndarray:
    """``plane`` with its last row / column repeated up to multiples of 8."""
    h, w = plane.shape
    return np.pad(plane, ((0, -h % TB), (0, -w % TB)), mode="edge")


def encode_plane(
    model: ResidualModel, plane: np.ndarray, kind: str, step: int, lam: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(modes, levels (nby, nbx, 64) int32, decoded plane before deblocking) of a padded plane:
    per block, the mode of least squared error + ``lam`` x approximate bits (``lam`` per bit,
    in squared steps)."""
    h, w = plane.shape
    nby, nbx = h // TB, w // TB
    basis = model.basis[kind].astype(np.float64) / (1 << BASIS_BITS)
    d = float(step) / (1 << STEP_BITS)
    rec = np.zeros((h, w), np.int64)
    modes = np.zeros((nby, nbx), np.int64)
    levels = np.zeros((nby, nbx, NC), np.int32)
    src = plane.astype(np.int64)
    mode_model = AdaptiveSymbolModel(INTRA_MODES + 1, INTRA_MODES)  # as code_planes will
    for by in range(nby):
        ctx = np.full(nbx, INTRA_MODES, np.int64) if by == 0 else modes[by - 1]
        counts = mode_model.counts[:, :INTRA_MODES].astype(np.float64)
        mode_bits = MODE_WEIGHT * -np.log2(counts / mode_model.counts.sum(1, keepdims=True))
        for bx in range(nbx):
            y, x = by * TB, bx * TB
            blk = src[y : y + TB, x : x + TB]
            best = None
            for m in range(INTRA_MODES):
                if not available(y, x, m):
                    continue
                p = predict(rec, y, x, m)
                a = ((blk - p).reshape(NC).astype(np.float64) @ basis) / d
                q, err_bits = _levels(np.abs(a), lam)
                cost = err_bits + lam * mode_bits[ctx[bx], m]
                if best is None or cost < best[0]:
                    best = (cost, m, p, (np.sign(a) * q).astype(np.int32))
            _, m, p, q = best
            modes[by, bx], levels[by, bx] = m, q
            r = model.dequantise(q.reshape(1, 1, NC), kind, step)
            rec[y : y + TB, x : x + TB] = np.clip(p + r, 0, 255)
        mode_model.update(ctx, modes[by])
    return modes, levels, rec.astype(np.uint8)


def _level_bits(q: np.ndarray) -> np.ndarray:
    return np.where(q > 0, LEVEL_BITS[0] + LEVEL_BITS[1] * np.log2(1 + q), 0.0)


def _levels(a: np.ndarray, lam: float) -> tuple[np.ndarray, float]:
    """Levels of one block's coefficient magnitudes ``a`` (in steps) and their squared error +
    ``lam`` x approximate bits: with RDOQ each the best of rounded, rounded - 1 and 0, and the
    whole block emptied where that costs less; else rounded with the offset ROUNDING."""
    if not RDOQ:
        q = np.floor(a + ROUNDING)
        return q, float(((a - q) ** 2).sum() + lam * _level_bits(q).sum())
    q0 = np.floor(a + 0.5)
    best, best_j = q0, (a - q0) ** 2 + lam * _level_bits(q0)
    for v in (np.maximum(q0 - 1, 0), np.zeros_like(q0)):
        j = (a - v) ** 2 + lam * _level_bits(v)
        better = j < best_j
        best, best_j = np.where(better, v, best), np.where(better, j, best_j)
    total = float(best_j.sum())
    empty = float((a * a).sum())
    if empty <= total:
        return np.zeros_like(a), empty
    return best, total


def decode_plane(
    model: ResidualModel, modes: np.ndarray, levels: np.ndarray, kind: str, step: int
) -> np.ndarray:
    """The decoded padded plane (before deblocking) from its modes and levels."""
    nby, nbx = modes.shape
    res = model.dequantise(levels, kind, step).astype(np.int64)
    rec = np.zeros((nby * TB, nbx * TB), np.int64)
    for by in range(nby):
        for bx in range(nbx):
            y, x = by * TB, bx * TB
            m = int(modes[by, bx])
            if not available(y, x, m):
                raise ValueError("intra mode without its edges in the stream")
            rec[y : y + TB, x : x + TB] = np.clip(
                predict(rec, y, x, m) + res[y : y + TB, x : x + TB], 0, 255
            )
    return rec.astype(np.uint8)


def code_planes(
    sink, model: ResidualModel, si_steps: list[tuple[int, int]], shapes, coded=None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Code (``coded``: (modes, levels) per plane) or decode (None) an intra frame's planes
    through ``sink``: modes row by row, then the plane's levels; ``si_steps``: (grid index,
    step) per plane; ``shapes``: the padded planes' block grids. Returns (modes, levels)."""
    states = residual_states()
    out = []
    for i, (grid, (si, _)) in enumerate(zip(shapes, si_steps, strict=True)):
        kind = "luma" if i == 0 else "chroma"
        mm = AdaptiveSymbolModel(INTRA_MODES + 1, INTRA_MODES)
        modes = code_modes(sink, grid, None if coded is None else coded[i][0], mm)
        q = None if coded is None else coded[i][1]
        q = code_plane_adaptive(sink, grid, q, HINT[modes], states, residual_base(kind, si))
        out.append((modes, q))
    return out


def finish(rec: np.ndarray, shape: tuple[int, int], step: int) -> np.ndarray:
    """The reference plane: deblocked, cropped to the frame's plane size."""
    return deblock(rec, step)[: shape[0], : shape[1]]
