"""Motion for the inter frames of ``elic-ip``: integer prediction, block matching, vector coding.

::

    reference planes (decoded, uint8) + vectors (quarter-pel luma, 1 per 16x16 block)
        --predict (bilinear, integer weights, edge-clamped)--> prediction planes (exact)
    current Y + reference Y --estimate (encoder only: half-resolution full search, full-pel,
        half-pel and quarter-pel refinement, SAD + lambda * |vector - predictor|)--> vectors
    vectors --median predictor (left, above, above-right) + differences coded row by row with
        adaptive counts (context: the difference above) on the shared range coder--> symbols

Luma vectors are in quarter pels; the chroma planes of 4:2:0 video use the same numbers as
eighth pels of their half-size grid. Every value the decoder computes is integer arithmetic on
numpy arrays (no floats), so the prediction is identical on every machine.
"""

from __future__ import annotations

import numpy as np

from neuralcodec.entropy.cdf import counts_to_quantized_cdf
from neuralcodec.entropy.tables import PRECISION, CodingTables
from neuralcodec.kernels import _ext

BLOCK = 16  # luma block of one motion vector
SEARCH = 24  # full-pel search range (pixels) around the zero vector
WIDE_SEARCH = True  # encoder: also search around each block's motion found at a coarse level
B_SEARCH = 12  # ... of B frames (nearer references) ...
B_TOP = 8  # ... where the mean of both predictions is tried at each block's best forward ones
MVD_RANGE = 24  # |difference| in quarter pels coded in the table; larger ones escape
_ADAPT_STEP = 24
_ADAPT_LIMIT = 1 << 13


# ----------------------------------------------------------------------------- prediction


def _grid(n: int, size: int) -> np.ndarray:
    return np.arange(n * size, dtype=np.int64)


_TAPS = np.array([1, -5, 20, 20, -5, 1], np.int64)


def half_pel_plane(ref: np.ndarray) -> np.ndarray:
    """``ref`` on a grid twice as fine (2H x 2W, int32): whole-pel samples as they are, half-pel
    samples by the 6-tap filter (1, -5, 20, 20, -5, 1) / 32 horizontally, vertically and (from
    the unrounded horizontal sums) diagonally, edges repeated, rounded and clipped: integers."""
    h, w = ref.shape
    r = np.pad(ref.astype(np.int64), 3, mode="edge")
    hs = sum(t * r[:, k + 1 : k + 1 + w] for k, t in enumerate(_TAPS))  # (h+6, w): x + 1/2
    vs = sum(t * r[k + 1 : k + 1 + h, 3 : 3 + w] for k, t in enumerate(_TAPS))  # y + 1/2
    ds = sum(t * hs[k + 1 : k + 1 + h] for k, t in enumerate(_TAPS))  # both
    out = np.empty((2 * h, 2 * w), np.int32)
    out[0::2, 0::2] = ref
    out[0::2, 1::2] = np.clip((hs[3 : 3 + h] + 16) >> 5, 0, 255)
    out[1::2, 0::2] = np.clip((vs + 16) >> 5, 0, 255)
    out[1::2, 1::2] = np.clip((ds + 512) >> 10, 0, 255)
    return out


QPEL8_TAPS = (
    (0, 0, 0, 64, 0, 0, 0, 0),
    (-1, 4, -10, 58, 17, -5, 1, 0),
    (-1, 4, -11, 40, 40, -11, 4, -1),
    (0, 1, -5, 17, 58, -10, 4, -1),
)  # the sharp filter of each quarter-pel phase, taps at -3 .. +4, 1/64 (tools bit 4096)


def quarter_pel_plane(ref: np.ndarray) -> np.ndarray:
    """``ref`` on a grid four times as fine (4H x 4W, int32) by the sharp filters: sample
    (4y + fy, 4x + fx) is the separable ``QPEL8_TAPS`` filter of phase fx along the rows (not
    rounded), then of phase fy down the columns, (sum + 2048) >> 12 clipped to 0..255, edges
    repeated: integers only. The C kernel (``_exact.qpel8``) where built, else NumPy."""
    ref = np.ascontiguousarray(ref, dtype=np.int32)
    h, w = ref.shape
    out = np.empty((4 * h, 4 * w), np.int32)
    kernel = _ext.exact_kernel("qpel8")
    if kernel is not None:
        kernel(ref, out)
        return out
    r = np.pad(ref.astype(np.int64), 4, mode="edge")
    rows = [sum(c * r[:, 1 + k : 1 + k + w] for k, c in enumerate(t)) for t in QPEL8_TAPS]
    for fx, hs in enumerate(rows):
        for fy, t in enumerate(QPEL8_TAPS):
            v = sum(c * hs[1 + k : 1 + k + h] for k, c in enumerate(t))
            out[fy::4, fx::4] = np.clip((v + 2048) >> 12, 0, 255)
    return out


def luma_plane(ref: np.ndarray, sharp: bool = False) -> np.ndarray:
    """The sub-pel luma plane of a reference: ``half_pel_plane`` or, ``sharp``,
    ``quarter_pel_plane``."""
    return quarter_pel_plane(ref) if sharp else half_pel_plane(ref)


def predict_plane(
    ref: np.ndarray,
    mv: np.ndarray,
    block: int,
    frac_bits: int,
    up: int = 1,
    rows: np.ndarray | None = None,
    cols: np.ndarray | None = None,
) -> np.ndarray:
    """Prediction (``block``-multiple size, int32) of a plane from ``ref`` with one vector per
    block, in units of ``1 / 2**frac_bits`` pels of a grid ``up`` times finer than the output's
    (``ref`` is on that grid); bilinear between samples, outside ``ref`` its edge repeats.
    ``rows`` / ``cols``: only those rows / columns of it (the same values). The C kernel
    (``_exact.bilinear``) where built, else ``_predict_plane_numpy``: both integer, so equal."""
    kernel = _ext.exact_kernel("bilinear")
    if kernel is None:
        return _predict_plane_numpy(ref, mv, block, frac_bits, up, rows, cols)
    nby, nbx = mv.shape[:2]
    ry = _grid(nby, block) if rows is None else rows
    rx = _grid(nbx, block) if cols is None else cols
    out = np.empty((len(ry), len(rx)), np.int32)
    kernel(
        np.ascontiguousarray(ref, dtype=np.int32),
        np.ascontiguousarray(mv, dtype=np.int32),
        block, frac_bits, up,
        np.ascontiguousarray(ry, dtype=np.int32),
        np.ascontiguousarray(rx, dtype=np.int32),
        out,
    )  # fmt: skip
    return out


def _predict_plane_numpy(ref, mv, block, frac_bits, up=1, rows=None, cols=None) -> np.ndarray:
    """``predict_plane`` in NumPy (the reference of the C kernel)."""
    h, w = ref.shape
    nby, nbx = mv.shape[:2]
    s = 1 << frac_bits
    ry = _grid(nby, block) if rows is None else rows.astype(np.int64)
    rx = _grid(nbx, block) if cols is None else cols.astype(np.int64)
    field = mv.astype(np.int64)[ry // block][:, rx // block]  # each pixel's vector
    mvy, mvx = field[..., 0], field[..., 1]
    py = ry[:, None] * (up << frac_bits) + mvy
    px = rx[None, :] * (up << frac_bits) + mvx
    # samples are 0..255 and weights sum to s per axis: every product fits int32
    fy, fx = (py & (s - 1)).astype(np.int32), (px & (s - 1)).astype(np.int32)
    y0, x0 = py >> frac_bits, px >> frac_bits
    ya = np.clip(y0, 0, h - 1) * w  # flat row offsets
    yb = np.clip(y0 + 1, 0, h - 1) * w
    xa, xb = np.clip(x0, 0, w - 1), np.clip(x0 + 1, 0, w - 1)
    r = np.ascontiguousarray(ref, dtype=np.int32).reshape(-1)
    top = r.take(ya + xa) * (s - fx) + r.take(ya + xb) * fx
    bot = r.take(yb + xa) * (s - fx) + r.take(yb + xb) * fx
    out = (top * (s - fy) + bot * fy + (1 << (2 * frac_bits - 1))) >> (2 * frac_bits)
    return out.astype(np.int32)


def predict_luma(
    ref2: np.ndarray, mv: np.ndarray, rows=None, cols=None, sharp: bool = False, block=BLOCK
) -> np.ndarray:
    """Luma prediction from the half-pel plane ``ref2`` with quarter-pel vectors: half-pel
    positions from the 6-tap samples, quarter-pel positions the rounded mean of the two (or
    four) nearest of them; ``sharp``: ``ref2`` is a ``quarter_pel_plane``, sampled as it is."""
    if sharp:
        return predict_plane(ref2, mv * 2, block, 1, up=4, rows=rows, cols=cols)
    return predict_plane(ref2, mv, block, 1, up=2, rows=rows, cols=cols)


OBMC_BITS = 6  # overlapped-block weights are in 1/64


def obmc_weights(block: int) -> np.ndarray:
    """Weight (in 1/64) of the neighbour's prediction at each row of a block, counted from the
    shared edge: a linear fade over the block's outer quarter, from 7/16 at the edge
    (``block`` 16: 28, 20, 12, 4, 0, ...; ``block`` 8: 24, 8, 0, ...)."""
    r = block // 4
    i = np.arange(block)
    return np.where(i < r, ((2 * r - 2 * i - 1) << OBMC_BITS) // (4 * r), 0).astype(np.int64)


def _neighbour_fields(mv: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each block's above, below, left and right neighbour's vector (its own at the border)."""
    up = np.concatenate([mv[:1], mv[:-1]], 0)
    down = np.concatenate([mv[1:], mv[-1:]], 0)
    left = np.concatenate([mv[:, :1], mv[:, :-1]], 1)
    right = np.concatenate([mv[:, 1:], mv[:, -1:]], 1)
    return up, down, left, right


def overlapped(predict, mv: np.ndarray, block: int) -> np.ndarray:
    """Overlapped block motion compensation: ``predict(field, rows, cols)`` (a plane predicted
    with one vector per ``block``, or those rows / columns of it) blended near every block edge
    with the prediction by the neighbour's vector across that edge, integer weights
    (``obmc_weights``) summing to 64, rounded. Blocks whose neighbours share their vector are
    unchanged; the edges between blocks of different motion lose the step a single vector per
    block leaves there. The neighbours' predictions are computed on the weighted bands only."""
    own = predict(mv, None, None).astype(np.int64)
    nby, nbx = mv.shape[:2]
    w = obmc_weights(block)
    wu = np.tile(w, nby)  # weight of the block above at each row
    wd = np.tile(w[::-1], nby)
    wl = np.tile(w, nbx)  # of the block on the left at each column
    wr = np.tile(w[::-1], nbx)
    acc = own * ((1 << OBMC_BITS) - wu[:, None] - wd[:, None] - wl[None, :] - wr[None, :])
    up, down, left, right = _neighbour_fields(mv)
    for field, wt in ((up, wu), (down, wd)):
        rows = np.flatnonzero(wt)
        acc[rows] += predict(field, rows, None).astype(np.int64) * wt[rows, None]
    for field, wt in ((left, wl), (right, wr)):
        cols = np.flatnonzero(wt)
        acc[:, cols] += predict(field, None, cols).astype(np.int64) * wt[None, cols]
    return ((acc + (1 << (OBMC_BITS - 1))) >> OBMC_BITS).astype(np.int32)


def predict_frame(
    ref: tuple[np.ndarray, ...], mv: np.ndarray, obmc: bool = False, sharp: bool = False
) -> tuple[np.ndarray, ...]:
    """Y, U, V predictions (cropped to the planes' sizes) of 4:2:0 ``ref`` with luma vectors;
    ``obmc``: overlapped block motion compensation (``overlapped``); ``sharp``: luma sub-pel
    samples by the 8-tap filters (``quarter_pel_plane``)."""
    ref2 = luma_plane(ref[0], sharp)
    luma = lambda f, r, c: predict_luma(ref2, f, r, c, sharp)  # noqa: E731
    out = [overlapped(luma, mv, BLOCK) if obmc else luma(mv, None, None)]
    for plane in ref[1:]:
        chroma = lambda f, r, c, p=plane: predict_plane(p, f, BLOCK // 2, 3, 1, r, c)  # noqa: E731
        out.append(overlapped(chroma, mv, BLOCK // 2) if obmc else chroma(mv, None, None))
    return tuple(p[: r.shape[0], : r.shape[1]] for p, r in zip(out, ref, strict=True))


# ----------------------------------------------------------------------------- estimation


def _pad_to(x: np.ndarray, hh: int, ww: int) -> np.ndarray:
    return np.pad(x, ((0, hh - x.shape[0]), (0, ww - x.shape[1])), mode="edge")


def _block_sad(diff: np.ndarray, block: int) -> np.ndarray:
    h, w = diff.shape
    return np.abs(diff).reshape(h // block, block, w // block, block).sum(axis=(1, 3))


def full_pel_sads(cur: np.ndarray, rp: np.ndarray, r: int, block: int) -> np.ndarray:
    """SAD of every ``block`` x ``block`` block of ``cur`` (int16, sides multiples of ``block``)
    at every full-pel offset within ``r`` of ``rp`` (``cur``'s reference, int16, padded by ``r``):
    ((2r+1)^2, nby, nbx) int32, offsets in raster order. The C kernel when built, else NumPy;
    both are exact integer sums, so they agree."""
    hh, ww = cur.shape
    nby, nbx = hh // block, ww // block
    sads = np.empty(((2 * r + 1) ** 2, nby, nbx), np.int32)
    if _ext._exact is not None:
        cur = np.ascontiguousarray(cur, dtype=np.int16)
        _ext._exact.block_sads(cur, np.ascontiguousarray(rp, dtype=np.int16), r, block, sads)
        return sads
    k = 0
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            d = cur - rp[r + dy : r + dy + hh, r + dx : r + dx + ww]
            sads[k] = np.abs(d).reshape(nby, block, nbx, block).sum(axis=(1, 3), dtype=np.int32)
            k += 1
    return sads


COARSE = 4  # wide search: luma averaged over COARSE x COARSE pixels ...
COARSE_SEARCH = 16  # ... searched within this many coarse pixels (64 pels) ...
COARSE_REFINE = 3  # ... and each block's best, scaled up, refined within this many pels


def coarse_plane(a: np.ndarray) -> np.ndarray:
    """``a`` (sides multiples of ``COARSE``) averaged over ``COARSE`` x ``COARSE`` pixels, rounded
    (int16)."""
    hh, ww, c = a.shape[0], a.shape[1], COARSE
    x = a.astype(np.int32).reshape(hh // c, c, ww // c, c).sum((1, 3))
    return ((x + c * c // 2) // (c * c)).astype(np.int16)


def coarse_centres(cur: np.ndarray, ref: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """Full-pel motion of every ``block`` block (``cur``: int16, sides multiples of ``block``;
    ``ref``: its reference, same size) from a search of the planes averaged over ``COARSE`` x
    ``COARSE`` pixels within ``COARSE_SEARCH`` coarse pixels: (nby, nbx, 2) int64, multiples of
    ``COARSE``. Finds motion far beyond the full-resolution window (encoder only)."""
    c, r = COARSE, COARSE_SEARCH
    small = coarse_plane(cur)
    rp = np.pad(coarse_plane(ref), r, mode="edge")
    sads = full_pel_sads(small, rp, r, block // c)
    offsets = np.array([(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)])
    # the least SAD, ties to the shortest vector
    cost = sads.astype(np.float64) + 1e-3 * np.abs(offsets).sum(-1)[:, None, None]
    return offsets[np.argmin(cost, axis=0)].astype(np.int64) * c


def centred_sads(cur: np.ndarray, ref: np.ndarray, centres: np.ndarray, r: int, cell: int):
    """SAD of every ``cell`` x ``cell`` cell of ``cur`` (sides multiples of 2 x ``cell`` when
    ``centres`` has one vector per 2 x 2 cells, else of ``cell``) against ``ref`` (edge-clamped)
    at every full-pel offset within ``r`` of its block's centre vector (``centres``: (nby,
    nbx, 2) full pels, one per ``BLOCK``): ((2r+1)^2, ny, nx) int32, offsets in raster order."""
    hh, ww = cur.shape
    ny, nx = hh // cell, ww // cell
    per = BLOCK // cell
    cen = np.repeat(np.repeat(centres, per, 0), per, 1)[:ny, :nx]
    tgt = cells_of(cur.astype(np.int32), cell)
    ref32 = ref.astype(np.int32)
    out = np.empty(((2 * r + 1) ** 2, ny, nx), np.int32)
    k = 0
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out[k] = np.abs(tgt - gather_cells(ref32, cen + (dy, dx), cell)).sum((2, 3))
            k += 1
    return out


def cells_of(plane: np.ndarray, cell: int) -> np.ndarray:
    """``plane`` (sides multiples of ``cell``) as (ny, nx, cell, cell) cells."""
    hh, ww = plane.shape
    return plane.reshape(hh // cell, cell, ww // cell, cell).transpose(0, 2, 1, 3)


def gather_cells(ref: np.ndarray, vec: np.ndarray, cell: int) -> np.ndarray:
    """The (ny, nx, cell, cell) cells of ``ref`` displaced by the full-pel vectors ``vec``
    (ny, nx, 2), coordinates clamped to the plane (its edge repeated)."""
    hh, ww = ref.shape
    ny, nx = vec.shape[:2]
    yy = np.clip(np.arange(ny * cell).reshape(ny, 1, cell) + vec[..., 0, None], 0, hh - 1)
    xx = np.clip(np.arange(nx * cell).reshape(1, nx, cell) + vec[..., 1, None], 0, ww - 1)
    return ref[yy[..., :, None], xx[..., None, :]]


def _bits(d: np.ndarray) -> np.ndarray:
    """Approximate code length of vector differences (quarter pels), per component summed."""
    a = np.abs(d)
    return np.where(a == 0, 0.4, 1.5 + 2 * np.log2(np.maximum(a, 1))).sum(-1)


def _median_field(mv: np.ndarray) -> np.ndarray:
    """The median predictor of every block from a whole vector field (estimation helper)."""
    nby, nbx = mv.shape[:2]
    pad = np.zeros((nby + 1, nbx + 2, 2), np.int64)
    pad[1:, 1:-1] = mv
    left, up, upr = pad[1:, :-2], pad[:-1, 1:-1], pad[:-1, 2:]
    return np.median(np.stack([left, up, upr]), axis=0).astype(np.int64)


def estimate(
    cur_y: np.ndarray,
    ref_y: np.ndarray,
    lam: float,
    search: int | None = None,
    models: VectorModels | None = None,
    lam_sse: float = 0.0,
    split_models: SplitModels | None = None,
    sharp: bool = False,
):
    """Quarter-pel luma vectors (nby, nbx, 2) for ``cur_y`` from ``ref_y`` (encoder only).

    Full-pel: the SAD of every block at every offset within ``search`` pels (with
    ``WIDE_SEARCH`` also within ``COARSE_REFINE`` pels of the block's coarse-level motion,
    ``coarse_centres``: motion far beyond the window), then a raster-order
    choice minimising SAD + lam * bits(vector - its true median predictor); then, with the
    adaptive vector ``models`` of the frame, ``_refine_rd`` at squared error + ``lam_sse`` x code
    length; without, half- and quarter-pel refinement of the whole field against the predictors
    of the full-pel field at SAD + lam x approximate bits. With ``models`` and ``split_models``
    (tools bit 128) the 8x8 cells are searched as well (``_full_pel_cells``) and the result is
    (block vectors, split flags (nby, nbx), the field of one vector per 8x8 cell). ``sharp``:
    sub-pel samples by the 8-tap filters."""
    search = SEARCH if search is None else search
    h, w = cur_y.shape
    nby, nbx = -(-h // BLOCK), -(-w // BLOCK)
    hh, ww = nby * BLOCK, nbx * BLOCK
    cur = _pad_to(cur_y.astype(np.int16), hh, ww)
    r = search
    rp = np.pad(ref_y.astype(np.int16), ((r, r + hh - h), (r, r + ww - w)), mode="edge")
    offsets = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
    cells = split_models is not None and models is not None
    if cells:
        sads8 = full_pel_sads(cur, rp, r, SUB)  # the 16x16 SADs are their sums
        sads = sads8.reshape(len(offsets), nby, 2, nbx, 2).sum((2, 4), dtype=np.int32)
    else:
        sads = full_pel_sads(cur, rp, r, BLOCK)
    cands = np.array(offsets, np.int64) * 4
    wide = centres = None
    if WIDE_SEARCH:  # and around each block's coarse-level motion
        refp = _pad_to(ref_y.astype(np.int16), hh, ww)
        centres = coarse_centres(cur, refp)
        if np.abs(centres).max() + COARSE_REFINE <= r:
            centres = None  # all of it inside the window already
    if centres is not None:
        rc = COARSE_REFINE
        near = np.array([(dy, dx) for dy in range(-rc, rc + 1) for dx in range(-rc, rc + 1)])
        if cells:
            esads8 = centred_sads(cur, refp, centres, rc, SUB)
            esads = esads8.reshape(len(near), nby, 2, nbx, 2).sum((2, 4), dtype=np.int32)
            wide = (centres, near, esads8)
        else:
            esads = centred_sads(cur, refp, centres, rc, BLOCK)
    mv = np.zeros((nby, nbx, 2), np.int64)
    for by in range(nby):
        for bx in range(nbx):
            pred = np.array(_predictor(mv, by, bx))
            cost = sads[:, by, bx] + lam * _bits(cands - pred)
            k = int(np.argmin(cost))
            mv[by, bx] = cands[k]
            if centres is not None:
                ec = (centres[by, bx] + near) * 4
                ecost = esads[:, by, bx] + lam * _bits(ec - pred)
                j = int(np.argmin(ecost))
                if ecost[j] < cost[k]:
                    mv[by, bx] = ec[j]
    ref2 = luma_plane(ref_y, sharp)
    cur32 = cur.astype(np.int32)
    if models is not None:
        qpel = QuarterPelPlane(ref2, sharp)
        if split_models is None:
            return _refine_rd(cur32, qpel, mv, lam_sse, models)
        full8 = _full_pel_cells(sads8, cands, mv, lam, wide)
        return _refine_rd(cur32, qpel, mv, lam_sse, models, split_models, full8)

    def refine(mv: np.ndarray, step: int) -> np.ndarray:
        pred = _median_field(mv)
        best = _block_sad(cur32 - predict_luma(ref2, mv, sharp=sharp), BLOCK)
        best = best + lam * _bits(mv - pred)
        out = mv.copy()
        for dy in (-step, 0, step):
            for dx in (-step, 0, step):
                if dy == 0 and dx == 0:
                    continue
                cand = mv + np.array([dy, dx])
                cost = _block_sad(cur32 - predict_luma(ref2, cand, sharp=sharp), BLOCK)
                cost = cost + lam * _bits(cand - pred)
                better = cost < best
                best = np.where(better, cost, best)
                out[better] = cand[better]
        return out

    mv = refine(refine(mv, 2), 1)
    return mv.astype(np.int32)


SUBPEL = 3  # sub-pel candidates: the full-pel vector + (dy, dx), |dy|, |dx| <= this (quarter pels)


def _cost_tables(models: VectorModels) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Code lengths (bits) under ``models``' present counts: still flag 0 / 1 per context,
    component values per ``mvd`` context, x after y == 0 per ``second`` context."""

    def bits(counts: np.ndarray) -> np.ndarray:
        c = counts.astype(np.float64)
        return np.log2(c.sum(-1, keepdims=True)) - np.log2(c)

    return (
        bits(models.still.counts)[:, :2],
        bits(models.mvd.counts),
        bits(models.second.counts),
        np.arange(-MVD_RANGE, MVD_RANGE + 1),
    )


def vector_bits(tables, d: np.ndarray, still_ctx: int, comp_ctx: int) -> np.ndarray:
    """Code length of differences ``d`` (k, 2) of one block under ``_cost_tables``."""
    still, mvd, second, _ = tables
    esc = 2 * MVD_RANGE + 1
    sy = np.where(np.abs(d[:, 0]) <= MVD_RANGE, d[:, 0] + MVD_RANGE, esc)
    sx = np.where(np.abs(d[:, 1]) <= MVD_RANGE, d[:, 1] + MVD_RANGE, esc)
    big = 2 * (np.abs(d) > MVD_RANGE).sum(-1) * 6.0
    move = still[still_ctx, 0] + mvd[comp_ctx, sy] + big
    move = move + np.where(d[:, 0] == 0, second[comp_ctx, sx], mvd[comp_ctx + 3, sx])
    return np.where((d == 0).all(-1), still[still_ctx, 1], move)


class QuarterPelPlane:
    """Every quarter-pel luma sample ``predict_luma`` can produce, precomputed once per reference
    (encoder only): sample (qy, qx) in quarter pels, clamped to where the edge starts repeating
    (-2 .. 4H - 2), at ``plane[qy + 2, qx + 2]``; same formula as ``predict_plane``. ``sharp``:
    ``ref2`` is a ``quarter_pel_plane``, the plane itself (clamped to 0 .. 4H - 1)."""

    def __init__(self, ref2: np.ndarray, sharp: bool = False) -> None:
        self.sharp = sharp
        self.ref2 = np.ascontiguousarray(ref2, dtype=np.int32)
        if sharp:
            h4, w4 = ref2.shape
            self.h, self.w = h4 // 4, w4 // 4
            self.lo, self.hi_y, self.hi_x, self.off = 0, 4 * self.h - 1, 4 * self.w - 1, 0
            self.plane = self.ref2
            self.flat = self.plane.reshape(-1)
            self.width = self.plane.shape[1]
            return
        h2, w2 = ref2.shape
        self.h, self.w = h2 // 2, w2 // 2
        self.lo, self.hi_y, self.hi_x, self.off = -2, 4 * self.h - 2, 4 * self.w - 2, 2
        if _ext.exact_kernel("bilinear"):  # the same samples from the C kernel, by (qy, qx) parity
            self.plane = np.empty((2 * h2 + 1, 2 * w2 + 1), np.int32)
            big = max(h2, w2) + 1  # one vector for the whole plane
            for oy in (0, 1):
                for ox in (0, 1):
                    mv = np.array([[[oy - 2, ox - 2]]], np.int32)
                    rows = np.arange(h2 + 1 - oy, dtype=np.int32)
                    cols = np.arange(w2 + 1 - ox, dtype=np.int32)
                    self.plane[oy::2, ox::2] = predict_plane(self.ref2, mv, big, 1, 1, rows, cols)
            self.flat = self.plane.reshape(-1)
            self.width = self.plane.shape[1]
            return

        def taps(n2: int) -> tuple[np.ndarray, ...]:
            p = np.arange(-2, 2 * n2 - 1)
            y0, f = p >> 1, p & 1
            return np.clip(y0, 0, n2 - 1), np.clip(y0 + 1, 0, n2 - 1), f

        ya, yb, fy = taps(h2)
        xa, xb, fx = taps(w2)
        r = ref2.astype(np.int32)
        top = r[ya][:, xa] * (2 - fx) + r[ya][:, xb] * fx
        bot = r[yb][:, xa] * (2 - fx) + r[yb][:, xb] * fx
        self.plane = ((top * (2 - fy)[:, None] + bot * fy[:, None] + 2) >> 2).astype(np.int32)
        self.flat = self.plane.reshape(-1)
        self.width = self.plane.shape[1]

    def predict(self, field: np.ndarray, block: int) -> np.ndarray:
        """The prediction (block-multiple size) with one vector per ``block``."""
        if _ext.exact_kernel("bilinear"):
            return predict_luma(self.ref2, field, sharp=self.sharp, block=block)
        nby, nbx = field.shape[:2]
        f = np.repeat(np.repeat(field.astype(np.int32), block, 0), block, 1)
        ys = np.arange(nby * block, dtype=np.int32)[:, None] * 4
        xs = np.arange(nbx * block, dtype=np.int32)[None, :] * 4
        qy, qx = self._clamp(ys + f[..., 0], xs + f[..., 1])
        return self.flat[qy * self.width + qx]

    def _clamp(self, qy, qx):
        """Plane indexes of quarter-pel positions (edges repeated)."""
        qy = np.clip(qy, self.lo, self.hi_y) + self.off
        qx = np.clip(qx, self.lo, self.hi_x) + self.off
        return qy, qx

    def block(self, by: int, bx: int, v: np.ndarray, block: int) -> np.ndarray:
        """The prediction of one block with vector ``v``."""
        ys = np.arange(by * block, (by + 1) * block) * 4 + int(v[0])
        xs = np.arange(bx * block, (bx + 1) * block) * 4 + int(v[1])
        qy, qx = self._clamp(ys, xs)
        return self.plane[qy[:, None], qx[None, :]]


def _full_pel_cells(sads8: np.ndarray, cands: np.ndarray, mv: np.ndarray, lam: float, wide=None):
    """Full-pel vector of every 8x8 cell: the least SAD + lam x approximate bits of its
    difference from its 16x16 block's full-pel vector ``mv`` (encoder only); ``wide``:
    (coarse centres, offsets, their SADs per cell) of the wide search, candidates as well."""
    base = np.repeat(np.repeat(mv, 2, 0), 2, 1)
    span = int(np.abs(cands).max() + np.abs(base).max())
    tab = _bits(np.arange(-span, span + 1)[:, None])
    ny, nx = base.shape[:2]
    best = np.full((ny, nx), np.inf)
    out = np.zeros((ny, nx, 2), np.int64)
    for k, c in enumerate(cands):  # one (ny, nx) plane per offset: little memory
        cost = sads8[k] + lam * (tab[c[0] - base[..., 0] + span] + tab[c[1] - base[..., 1] + span])
        better = cost < best
        best = np.where(better, cost, best)
        out[better] = c
    if wide is not None:
        centres, near, esads8 = wide
        cen = np.repeat(np.repeat(centres, 2, 0), 2, 1)
        for k, off in enumerate(near):
            c = (cen + off) * 4
            cost = esads8[k] + lam * _bits(c - base)
            better = cost < best
            best = np.where(better, cost, best)
            out[better] = c[better]
    return out


def _refine_rd(cur32, qpel, mv_full, lam, models, split_models=None, full8=None):
    """Sub-pel choice of every block in raster order against its true median predictor (from
    the final vectors of the blocks before it), at the squared error of the prediction + lam x
    the code length of the vector
    under the present adaptive counts; candidates: every sub-pel offset within ``SUBPEL``
    quarter pels of the block's full-pel vector, the predictor itself and the vectors of the
    left and above blocks."""
    nby, nbx = mv_full.shape[:2]
    deltas = np.array(
        [(dy, dx) for dy in range(-SUBPEL, SUBPEL + 1) for dx in range(-SUBPEL, SUBPEL + 1)]
    )
    sads = np.empty((len(deltas), nby, nbx), np.int64)
    for k, dlt in enumerate(deltas):
        d = cur32 - qpel.predict(mv_full + dlt, BLOCK)
        sads[k] = _block_sad(d * d, BLOCK)
    tables = _cost_tables(models)
    out = np.zeros((nby, nbx, 2), np.int64)
    above_still = None
    above_d = None
    if split_models is not None:
        sse8 = np.empty((len(deltas), 2 * nby, 2 * nbx), np.int64)
        for k, dlt in enumerate(deltas):
            d = cur32 - qpel.predict(full8 + dlt, SUB)
            sse8[k] = _block_sad(d * d, SUB)
        split = np.zeros((nby, nbx), np.int64)
        field = np.zeros((2 * nby, 2 * nbx, 2), np.int64)
        sub_tables = _sub_cost_tables(split_models)
        cells = _cell_choice(sse8, full8, deltas, mv_full, lam, sub_tables)
    for by in range(nby):
        sctx = VectorModels.still_context(above_still, nbx)
        cctx = AdaptiveMvdModel.context(above_d, nbx)
        if split_models is not None:
            fctx = VectorModels.still_context(split[by - 1] if by else None, nbx)
        row_d = np.zeros((nbx, 2), np.int64)
        for bx in range(nbx):
            pred = np.array(_predictor(out, by, bx), np.int64)
            cands = mv_full[by, bx] + deltas
            cost = sads[:, by, bx] + lam * vector_bits(tables, cands - pred, sctx[bx], cctx[bx])
            k = int(np.argmin(cost))
            best, best_cost = cands[k], cost[k]
            extra = _merge_candidates(out, by, bx, pred)
            cur_blk = cur32[by * BLOCK : (by + 1) * BLOCK, bx * BLOCK : (bx + 1) * BLOCK]
            for v in extra:
                if np.abs(v - mv_full[by, bx]).max() <= SUBPEL:
                    continue  # among the candidates already
                d = cur_blk - qpel.block(by, bx, v, BLOCK)
                c = (d * d).sum()
                c = c + lam * vector_bits(tables, (v - pred)[None], sctx[bx], cctx[bx])[0]
                if c < best_cost:
                    best, best_cost = v.copy(), c
            if split_models is not None:
                nb = [out[by, bx - 1]] if bx else []
                nb += [out[by - 1, bx]] if by else []
                nb = nb if SPLIT_NEIGHBOURS else []
                v4 = _split_choice(cur32, qpel, cells, best, by, bx, lam, sub_tables, nb)
                flag_bits = sub_tables[0][fctx[bx]]
                field[2 * by : 2 * by + 2, 2 * bx : 2 * bx + 2] = best
                if v4 is not None:
                    v4, cost4, sse4 = v4
                    vb = vector_bits(tables, (v4[0] - pred)[None], sctx[bx], cctx[bx])[0]
                    extra = cost4 - sse4 + lam * (vb + flag_bits[1])
                    if sse4 + SPLIT_BIAS * extra < best_cost + lam * flag_bits[0]:
                        best = v4[0]
                        split[by, bx] = 1
                        field[2 * by : 2 * by + 2, 2 * bx : 2 * bx + 2] = v4.reshape(2, 2, 2)
            out[by, bx] = best
            row_d[bx] = best - pred
        above_still = (row_d == 0).all(-1)
        above_d = row_d
    if split_models is not None:
        return out.astype(np.int32), split, field.astype(np.int32)
    return out.astype(np.int32)


def _sub_cost_tables(models: SplitModels):
    """Code lengths under ``SplitModels``' counts: split flag 0 / 1 per context, still flag
    per position, difference components per ``mvd`` context."""

    def bits(counts: np.ndarray) -> np.ndarray:
        c = counts.astype(np.float64)
        return np.log2(c.sum(-1, keepdims=True)) - np.log2(c)

    return (
        bits(models.flag.counts)[:, :2],
        bits(models.still.counts)[:, :2],
        bits(models.mvd.counts),
    )


def _sub_bits(sub_tables, d: np.ndarray, pos) -> np.ndarray:
    """Code length of differences ``d`` (..., 2) of vectors at ``pos`` (1..3, broadcast) of
    split blocks."""
    _, still, mvd = sub_tables
    c = np.asarray(pos) - 1
    idx = np.clip(d, -MVD_RANGE - 1, MVD_RANGE + 1)
    sym = np.where(np.abs(d) <= MVD_RANGE, idx + MVD_RANGE, 2 * MVD_RANGE + 1)
    big = 2 * (np.abs(d) > MVD_RANGE).sum(-1) * 6.0
    move = still[c, 0] + mvd[c, sym[..., 0]] + mvd[c + 3, sym[..., 1]] + big
    return np.where((d == 0).all(-1), still[c, 1], move)


def _cell_choice(sse8, full8, deltas, mv_full, lam, sub_tables):
    """Every 8x8 cell's best quarter-pel vector within ``SUBPEL`` of its full-pel one, at
    squared error + lam x its code length as a difference from its block's full-pel vector:
    (vectors (ny, nx, 2), their squared errors (ny, nx))."""
    ny, nx = full8.shape[:2]
    base = np.repeat(np.repeat(mv_full, 2, 0), 2, 1)
    pos = np.maximum(np.arange(ny)[:, None] % 2 * 2 + np.arange(nx)[None, :] % 2, 1)
    cands = full8[None] + deltas[:, None, None, :]  # (K, ny, nx, 2)
    cost = sse8 + lam * _sub_bits(sub_tables, cands - base[None], pos[None])
    k = np.argmin(cost, 0)
    yy, xx = np.mgrid[0:ny, 0:nx]
    return cands[k, yy, xx], sse8[k, yy, xx]


_CELL_POS = np.array([1, 1, 2, 3])  # the split-vector contexts the cells' differences approximate


def _split_choice(cur32, qpel, cells, v16, by, bx, lam, sub_tables, neighbours=()):
    """The four vectors of block (by, bx) split (encoder only): each 8x8 cell's choice
    (``_cell_choice``) or the block's vector ``v16``, whichever costs less at squared error +
    lam x its code length as the difference from ``v16``; then (vectors (4, 2), squared error +
    lam x the code length of the three further vectors, squared error), or None when all four
    are equal (nothing to gain)."""
    best, best_sse = cells
    blk = cur32[by * BLOCK : (by + 1) * BLOCK, bx * BLOCK : (bx + 1) * BLOCK]
    # candidates in reverse order of preference on equal cost: the neighbours, v16, the cell's
    cands = [np.broadcast_to(u, (4, 2)) for u in (*neighbours[::-1], v16)]
    sses = []
    for u in cands:
        e = blk - qpel.block(by, bx, u[0], BLOCK)
        sses.append((e * e).reshape(2, SUB, 2, SUB).sum((1, 3)).reshape(4))
    cands.append(best[2 * by : 2 * by + 2, 2 * bx : 2 * bx + 2].reshape(4, 2))
    sses.append(best_sse[2 * by : 2 * by + 2, 2 * bx : 2 * bx + 2].reshape(4))
    cv = np.stack(cands).astype(np.int64)  # (candidates, 4 cells, 2)
    sv = np.stack(sses).astype(np.int64)
    cost = sv + lam * _sub_bits(sub_tables, cv - v16, _CELL_POS)
    k = np.argmin(cost, 0)
    vs = cv[k, np.arange(4)]
    sse = int(sv[k, np.arange(4)].sum())
    if (vs == vs[0]).all():
        return None
    d = (vs - sub_predictors(vs[None])[0])[1:]
    bits = float(_sub_bits(sub_tables, d, np.arange(1, 4)).sum())
    return vs, sse + lam * bits, sse


# ----------------------------------------------------------------------------- vector coding


def _merge_candidates(out: np.ndarray, by: int, bx: int, pred: np.ndarray) -> list[np.ndarray]:
    """Vectors a block also tries besides its search window: the predictor and the left and
    above blocks' chosen vectors (each costs few bits where the field is smooth)."""
    extra = [pred]
    if bx > 0:
        extra.append(out[by, bx - 1])
    if by > 0:
        extra.append(out[by - 1, bx])
    return extra


def _median3(a: int, b: int, c: int) -> int:
    return max(min(a, b), min(max(a, b), c))


def _predictor(mv: np.ndarray, by: int, bx: int) -> tuple[int, int]:
    nbx = mv.shape[1]
    if by == 0:
        if bx == 0:
            return 0, 0
        return int(mv[by, bx - 1, 0]), int(mv[by, bx - 1, 1])
    left = mv[by, bx - 1] if bx > 0 else mv[by - 1, bx]
    up = mv[by - 1, bx]
    upr = mv[by - 1, bx + 1] if bx + 1 < nbx else mv[by - 1, bx - 1] if bx > 0 else up
    return (
        _median3(int(left[0]), int(up[0]), int(upr[0])),
        _median3(int(left[1]), int(up[1]), int(upr[1])),
    )


class _CountTables:
    """The coding tables of a model's ``counts`` (one row per context, the escape last; values
    from ``value_offset``), rebuilt after ``_tables`` is cleared; a row's cdf is recomputed only
    where its counts differ from those it was last built from, which gives the same tables as
    rebuilding every row (by ``_exact.counts_cdf`` where built: ``counts_to_quantized_cdf`` in
    C)."""

    value_offset = 0
    counts: np.ndarray
    _tables: CodingTables | None

    def tables(self) -> CodingTables:
        if self._tables is None:
            n, k = self.counts.shape
            built = self.__dict__.get("_built")
            if built is None or built[0].shape != self.counts.shape:
                built = self._built = (
                    np.full((n, k), -1, np.int64),
                    np.zeros((n, k + 1), np.int32),
                )
            seen, cdfs = built
            fast = _ext.exact_kernel("counts_cdf")
            for j in np.flatnonzero((seen != self.counts).any(axis=1)):
                row = np.ascontiguousarray(self.counts[j], dtype=np.int64)
                if fast is not None:  # the same table from C
                    fast(row, PRECISION, cdfs[j])
                else:
                    cdfs[j] = counts_to_quantized_cdf(row, PRECISION)
                seen[j] = row
            self._tables = CodingTables.built(
                cdfs.copy(), np.full(n, k + 1, np.int32), np.full(n, self.value_offset, np.int32)
            )
        return self._tables


class AdaptiveMvdModel(_CountTables):
    """Counts of vector differences per context (component x 3 neighbour classes), rebuilt into
    tables between rows; integer updates only, so both sides hold the same tables."""

    contexts = 6
    value_offset = -MVD_RANGE

    def __init__(self) -> None:
        v = np.arange(-MVD_RANGE, MVD_RANGE + 1)
        prior = np.maximum(1, 128 >> np.minimum(2 * np.abs(v), 7)).astype(np.int64)
        self.counts = np.tile(np.append(prior, 2), (self.contexts, 1))
        self._tables = None  # rebuilt when counts change

    def update(self, ctx: np.ndarray, values: np.ndarray) -> None:
        if len(ctx) == 0:
            return
        sym = np.where(np.abs(values) <= MVD_RANGE, values + MVD_RANGE, 2 * MVD_RANGE + 1)
        np.add.at(self.counts, (ctx, sym), _ADAPT_STEP)
        for c in np.unique(ctx):
            if self.counts[c].sum() > _ADAPT_LIMIT:
                self.counts[c] = (self.counts[c] + 1) >> 1
        self._tables = None

    @staticmethod
    def context(above: np.ndarray | None, nbx: int) -> np.ndarray:
        """Neighbour class (0: zero, 1: small, 2: large difference above) of a row's blocks."""
        if above is None:
            return np.ones(nbx, np.int64)
        mag = np.abs(above).sum(-1)
        return np.where(mag == 0, 0, np.where(mag <= 4, 1, 2)).astype(np.int64)


def _code_still_flags(sink, models, ctx: np.ndarray, d: np.ndarray | None) -> np.ndarray:
    """Code (``d``: the vector differences, still where zero) or decode (None) one still flag
    per context in ``ctx`` with ``models.still``, which learns them; returns the flags."""
    flags = None if d is None else (np.abs(d).sum(-1) == 0).astype(np.int32)
    flags = sink.code(ctx.astype(np.int32), models.still.tables(), flags).astype(np.int64)
    if flags.min(initial=0) < 0 or flags.max(initial=0) > 1:
        raise ValueError("bad still flag in the stream")
    models.still.update(ctx, flags)
    return flags


def _row_differences(mv: np.ndarray, out: np.ndarray, by: int) -> np.ndarray:
    """Encoder side: copy row ``by`` of ``mv`` into ``out`` and return each block's vector minus
    its median predictor (from the blocks coded before it), (nbx, 2) int64."""
    nbx = mv.shape[1]
    preds = np.zeros((nbx, 2), np.int64)
    for bx in range(nbx):
        out[by, bx] = mv[by, bx]
        preds[bx] = _predictor(out, by, bx)
    return mv[by].astype(np.int64) - preds


class AdaptiveFlagModel(_CountTables):
    """Adaptive counts of a binary symbol in ``contexts`` contexts (integer updates)."""

    def __init__(self, contexts: int) -> None:
        self.counts = np.full((contexts, 3), 4, np.int64)  # symbols 0, 1 and the escape
        self.counts[:, 2] = 1
        self._tables = None

    def update(self, ctx: np.ndarray, values: np.ndarray) -> None:
        if len(ctx) == 0:
            return
        np.add.at(self.counts, (ctx, np.clip(values, 0, 1)), _ADAPT_STEP)
        for c in np.unique(ctx):
            if self.counts[c].sum() > _ADAPT_LIMIT:
                self.counts[c] = np.maximum((self.counts[c] + 1) >> 1, 1)
        self._tables = None


class VectorModels:
    """The adaptive state of joint vector coding: a still flag per block (difference (0, 0))
    in 5 contexts (how many of the above-left, above and above-right blocks were still; 4 on
    the first row), then the components of moving blocks (``AdaptiveMvdModel``; the second
    component in extra contexts when the first is 0, where it cannot be 0)."""

    def __init__(self) -> None:
        self.still = AdaptiveFlagModel(5)
        self.mvd = AdaptiveMvdModel()
        self.second = AdaptiveMvdModel()  # x when y == 0: three classes as mvd's

    @staticmethod
    def still_context(above_still: np.ndarray | None, nbx: int) -> np.ndarray:
        if above_still is None:
            return np.full(nbx, 4, np.int64)
        a = above_still.astype(np.int64)
        pad = np.concatenate([a[:1], a, a[-1:]])
        return pad[:-2] + pad[1:-1] + pad[2:]


def code_vectors_joint(
    sink, shape: tuple[int, int], mv: np.ndarray | None, models: VectorModels
) -> np.ndarray:
    """``code_vectors`` with joint still flags (``VectorModels``): per row, the flags of every
    block, then y of the moving blocks, then their x (contexts from the row above)."""
    nby, nbx = shape
    out = np.zeros((nby, nbx, 2), np.int64)
    above_still, above_d = None, None
    for by in range(nby):
        d = None if mv is None else _row_differences(mv, out, by)
        ctx = models.still_context(above_still, nbx)
        flags = _code_still_flags(sink, models, ctx, d)
        moving = np.flatnonzero(flags == 0)
        comp_ctx = AdaptiveMvdModel.context(above_d, nbx)[moving]
        dy = None if d is None else d[moving, 0].astype(np.int32)
        dy = sink.code(comp_ctx.astype(np.int32), models.mvd.tables(), dy).astype(np.int64)
        models.mvd.update(comp_ctx, dy)
        zero_y = dy == 0
        dx_enc = None if d is None else d[moving, 1].astype(np.int32)
        idx_x = comp_ctx + 3  # mvd's x contexts; x after y == 0 in ``second``
        dx = np.zeros(len(moving), np.int64)
        for model, sel, idx in ((models.mvd, ~zero_y, idx_x), (models.second, zero_y, comp_ctx)):
            vals = None if dx_enc is None else dx_enc[sel]
            got = sink.code(idx[sel].astype(np.int32), model.tables(), vals).astype(np.int64)
            model.update(idx[sel], got)
            dx[sel] = got
        if (zero_y & (dx == 0)).any():
            raise ValueError("a moving block without motion in the stream")
        row_d = np.zeros((nbx, 2), np.int64)
        row_d[moving, 0], row_d[moving, 1] = dy, dx
        if mv is None:
            for bx in range(nbx):
                py, px = _predictor(out, by, bx)
                out[by, bx] = (py + row_d[bx, 0], px + row_d[bx, 1])
        above_still, above_d = flags, row_d
    return out.astype(np.int32)


def code_vectors(
    sink, shape: tuple[int, int], mv: np.ndarray | None, model: AdaptiveMvdModel | None = None
) -> np.ndarray:
    """Code (encoder: ``mv`` given) or decode (``mv`` None) a vector field through ``sink``.
    ``model``: the adaptive counts to start from and update (carried from frame to frame by
    both sides); None starts from the prior."""
    nby, nbx = shape
    model = AdaptiveMvdModel() if model is None else model
    out = np.zeros((nby, nbx, 2), np.int64)
    above = None
    for by in range(nby):
        ctx = model.context(above, nbx)
        idx = np.stack([ctx, ctx + 3], axis=1)  # (nbx, 2): x/y components
        values = None if mv is None else _row_differences(mv, out, by).astype(np.int32)
        d = sink.code(idx.astype(np.int32), model.tables(), values).reshape(nbx, 2).astype(np.int64)
        if mv is None:
            for bx in range(nbx):
                py, px = _predictor(out, by, bx)
                out[by, bx] = (py + d[bx, 0], px + d[bx, 1])
        model.update(idx.reshape(-1), d.reshape(-1))
        above = d
    return out.astype(np.int32)


# ----------------------------------------------------------------------------- B frames

MODE_BI, MODE_FWD, MODE_BWD = 0, 1, 2  # a B block's prediction: the mean of both, one or other
MODES = 3


def scale_vectors(mv: np.ndarray, d0: int, d1: int) -> np.ndarray:
    """The vectors towards the later reference of a B frame ``d0`` frames after its earlier
    reference and ``d1`` before its later one, for vectors ``mv`` towards the earlier one
    (constant motion): -round(mv x d1 / d0), halves rounded up, integers only."""
    m = mv.astype(np.int64)
    return (-((2 * m * d1 + d0) // (2 * d0))).astype(np.int32)


def blend_modes(fwd, bwd, modes: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-block choice between the two predictions (Y, U, V tuples, int32) and their rounded
    mean; ``modes`` has one entry per 16x16 luma block (8x8 chroma)."""
    out = []
    for i, (f, b) in enumerate(zip(fwd, bwd, strict=True)):
        block = BLOCK if i == 0 else BLOCK // 2
        h, w = f.shape
        m = np.repeat(np.repeat(modes, block, 0), block, 1)[:h, :w]
        mean = (f.astype(np.int32) + b + 1) >> 1
        out.append(np.where(m == MODE_FWD, f, np.where(m == MODE_BWD, b, mean)).astype(np.int32))
    return tuple(out)


class AdaptiveSymbolModel(AdaptiveFlagModel):
    """``AdaptiveFlagModel`` for ``symbols`` values (0 .. symbols - 1) and the escape."""

    def __init__(self, contexts: int, symbols: int) -> None:
        self.symbols = symbols
        self.counts = np.full((contexts, symbols + 1), 4, np.int64)
        self.counts[:, symbols] = 1
        self._tables = None

    def update(self, ctx: np.ndarray, values: np.ndarray) -> None:
        if len(ctx) == 0:
            return
        np.add.at(self.counts, (ctx, np.clip(values, 0, self.symbols - 1)), _ADAPT_STEP)
        for c in np.unique(ctx):
            if self.counts[c].sum() > _ADAPT_LIMIT:
                self.counts[c] = np.maximum((self.counts[c] + 1) >> 1, 1)
        self._tables = None


def mode_context(above: np.ndarray | None, nbx: int, first: int = MODES) -> np.ndarray:
    """Context of a row's block modes: the mode of the block above (``first`` on the first
    row: ``MODES`` for the B frames' modes)."""
    if above is None:
        return np.full(nbx, first, np.int64)
    return above.astype(np.int64)


def code_modes(
    sink, shape: tuple[int, int], modes: np.ndarray | None, model: AdaptiveSymbolModel
) -> np.ndarray:
    """Code (``modes`` given) or decode (None) a frame's block modes (B frames' prediction
    modes; an intra frame's prediction directions), row by row, each in the context of the
    mode above (``model.symbols`` on the first row)."""
    nby, nbx = shape
    out = np.zeros((nby, nbx), np.int64)
    above = None
    for by in range(nby):
        ctx = mode_context(above, nbx, model.symbols)
        vals = None if modes is None else modes[by].astype(np.int32)
        got = sink.code(ctx.astype(np.int32), model.tables(), vals).astype(np.int64)
        if got.min() < 0 or got.max() >= model.symbols:
            raise ValueError("bad block mode in the stream")
        model.update(ctx, got)
        out[by] = got
        above = got
    return out


def estimate_b(
    cur_y: np.ndarray,
    ref0_y: np.ndarray,
    ref1_y: np.ndarray,
    d0: int,
    d1: int,
    lam: float,
    models: VectorModels,
    mode_model: AdaptiveSymbolModel,
    search: int = B_SEARCH,
    lam_sse: float = 0.0,
    sharp: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Vectors (towards ``ref0``; ``scale_vectors`` gives those towards ``ref1``) and block
    modes of a B frame (encoder only). Full pel: the SAD of the forward prediction of every
    block at every offset within ``search`` (the C kernel), and of the mean of both predictions
    at each block's ``B_TOP`` best of those, the best at SAD + lam x approximate vector bits;
    then in coding order, every quarter-pel offset within
    ``SUBPEL`` of it, its predictor and its left and above neighbours' vectors, in each mode, at
    SAD + lam x their code lengths under the present adaptive counts (``lam_sse`` > 0: squared
    error + ``lam_sse`` x code lengths). With ``WIDE_SEARCH``
    the full-pel stage also tries every offset within ``COARSE_REFINE`` of each block's
    coarse-level motion towards ``ref0`` (``coarse_centres``). ``sharp``: sub-pel samples by
    the 8-tap filters."""
    h, w = cur_y.shape
    nby, nbx = -(-h // BLOCK), -(-w // BLOCK)
    hh, ww = nby * BLOCK, nbx * BLOCK
    cur = _pad_to(cur_y.astype(np.int32), hh, ww)
    r = search
    offsets = np.array([(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)])
    bits = lam * _bits(offsets * 4)
    rp0 = np.pad(ref0_y.astype(np.int16), ((r, r + hh - h), (r, r + ww - w)), mode="edge")
    cost = full_pel_sads(cur.astype(np.int16), rp0, r, BLOCK) + bits[:, None, None]
    best, best_v = cost.min(0), offsets[cost.argmin(0)] * 4  # forward prediction
    top = np.argpartition(cost, B_TOP - 1, axis=0)[:B_TOP]  # the mean at the best forward ones
    r0 = _pad_to(ref0_y.astype(np.int32), hh, ww)
    r1 = _pad_to(ref1_y.astype(np.int32), hh, ww)
    tgt = cells_of(cur, BLOCK)
    for k in range(B_TOP):
        v = offsets[top[k]]
        a = gather_cells(r0, v, BLOCK)
        b = gather_cells(r1, scale_vectors(v * 4, d0, d1) // 4, BLOCK)
        cost = np.abs(tgt - ((a + b + 1) >> 1)).sum((2, 3)) + bits[top[k]]
        better = cost < best
        best = np.where(better, cost, best)
        best_v[better] = (v * 4)[better]
    if WIDE_SEARCH:  # and around each block's coarse-level motion towards ref0
        centres = coarse_centres(cur.astype(np.int16), r0.astype(np.int16))
        rc = COARSE_REFINE
        for dy in range(-rc, rc + 1):
            for dx in range(-rc, rc + 1):
                v = centres + (dy, dx)
                a = gather_cells(r0, v, BLOCK)
                b = gather_cells(r1, scale_vectors(v * 4, d0, d1) // 4, BLOCK)
                sad = np.minimum(
                    np.abs(tgt - ((a + b + 1) >> 1)).sum((2, 3)), np.abs(tgt - a).sum((2, 3))
                )
                cost = sad + lam * _bits(v * 4)
                better = cost < best
                best = np.where(better, cost, best)
                best_v[better] = (v * 4)[better]
    q0 = QuarterPelPlane(luma_plane(ref0_y, sharp), sharp)
    q1 = QuarterPelPlane(luma_plane(ref1_y, sharp), sharp)
    deltas = np.array(
        [(dy, dx) for dy in range(-SUBPEL, SUBPEL + 1) for dx in range(-SUBPEL, SUBPEL + 1)]
    )
    sads = np.empty((len(deltas), MODES, nby, nbx), np.int64)

    def err(diff: np.ndarray) -> np.ndarray:  # per block
        return _block_sad(diff * diff if lam_sse > 0 else diff, BLOCK)

    for k, dlt in enumerate(deltas):
        field = best_v + dlt
        f = q0.predict(field, BLOCK)
        b = q1.predict(scale_vectors(field, d0, d1), BLOCK)
        sads[k, MODE_BI] = err(cur - ((f + b + 1) >> 1))
        sads[k, MODE_FWD] = err(cur - f)
        sads[k, MODE_BWD] = err(cur - b)
    if lam_sse > 0:
        lam = lam_sse
    tables = _cost_tables(models)
    mc = mode_model.counts.astype(np.float64)
    mode_bits = np.log2(mc.sum(-1, keepdims=True)) - np.log2(mc)
    out = np.zeros((nby, nbx, 2), np.int64)
    modes = np.zeros((nby, nbx), np.int64)
    above_still = above_d = above_m = None
    for by in range(nby):
        sctx = VectorModels.still_context(above_still, nbx)
        cctx = AdaptiveMvdModel.context(above_d, nbx)
        mctx = mode_context(above_m, nbx)
        row_d = np.zeros((nbx, 2), np.int64)
        for bx in range(nbx):
            pred = np.array(_predictor(out, by, bx), np.int64)
            cands = best_v[by, bx] + deltas
            vb = vector_bits(tables, cands - pred, sctx[bx], cctx[bx])
            cost = sads[:, :, by, bx] + lam * (vb[:, None] + mode_bits[mctx[bx], :MODES][None])
            k, m = np.unravel_index(int(np.argmin(cost)), cost.shape)
            bv, bm, bc = cands[k], int(m), cost[k, m]
            extra = _merge_candidates(out, by, bx, pred)
            cur_blk = cur[by * BLOCK : (by + 1) * BLOCK, bx * BLOCK : (bx + 1) * BLOCK]
            for v in extra:
                if np.abs(v - best_v[by, bx]).max() <= SUBPEL:
                    continue
                f = q0.block(by, bx, v, BLOCK)
                b = q1.block(by, bx, scale_vectors(v, d0, d1), BLOCK)
                s = [err(cur_blk - p)[0, 0] for p in ((f + b + 1) >> 1, f, b)]
                bits = vector_bits(tables, (v - pred)[None], sctx[bx], cctx[bx])[0]
                for m in range(MODES):
                    c = s[m] + lam * (bits + mode_bits[mctx[bx], m])
                    if c < bc:
                        bv, bm, bc = v.copy(), m, c
            out[by, bx] = bv
            modes[by, bx] = bm
            row_d[bx] = bv - pred
        above_still = (row_d == 0).all(-1)
        above_d = row_d
        above_m = modes[by]
    return out.astype(np.int32), modes


# ----------------------------------------------------------------------------- split blocks

SUB = BLOCK // 2  # luma side of a split block's four vectors (tools bit 128)
SPLIT_BIAS = 1.5  # encoder: a split must win by this x lam x (its extra bits) in squared error


def overlapped_split(predict, field: np.ndarray, split: np.ndarray, block: int) -> np.ndarray:
    """``overlapped`` for a field of one vector per ``block // 2`` cell (``field``: (2 nby,
    2 nbx, 2)) where the ``block`` blocks not ``split`` have four equal cells: every block
    blends its outer edges with the adjacent cells of its neighbours at the ``block`` weights
    (so with nothing split this is ``overlapped`` exactly), and a split block the edges between
    its own cells at the ``block // 2`` weights (so a split block of four equal vectors is the
    whole block's prediction). ``predict(field, cell, rows, cols)`` predicts with one vector per
    ``cell``."""
    half = block // 2
    ny, nx = field.shape[:2]
    own = predict(field, half, None, None).astype(np.int64)
    hh, ww = own.shape
    s = np.repeat(np.repeat(split.astype(bool), block, 0), block, 1)[:hh, :ww]
    w16 = obmc_weights(block)
    w8 = np.concatenate([w16[:half], obmc_weights(half)])  # outer edge as whole, inner at half

    def band(n: int, flip: bool) -> tuple[np.ndarray, np.ndarray]:
        a, b = (w16[::-1], w8[::-1]) if flip else (w16, w8)
        return np.tile(a, n // block), np.tile(b, n // block)

    wu16, wu8 = band(hh, False)
    wd16, wd8 = band(hh, True)
    wl16, wl8 = band(ww, False)
    wr16, wr8 = band(ww, True)
    wu = np.where(s, wu8[:, None], wu16[:, None])
    wd = np.where(s, wd8[:, None], wd16[:, None])
    wl = np.where(s, wl8[None, :], wl16[None, :])
    wr = np.where(s, wr8[None, :], wr16[None, :])
    acc = own * ((1 << OBMC_BITS) - wu - wd - wl - wr)
    cs = np.repeat(np.repeat(split.astype(bool), 2, 0), 2, 1)  # per cell
    y = np.arange(ny)[:, None]
    x = np.arange(nx)[None, :]
    whole_y, whole_x = 2 * (y // 2), 2 * (x // 2)
    up_y = np.where(cs, y - 1, whole_y - 1)
    down_y = np.where(cs, y + 1, whole_y + 2)
    left_x = np.where(cs, x - 1, whole_x - 1)
    right_x = np.where(cs, x + 1, whole_x + 2)
    yy, xx = np.broadcast_to(y, (ny, nx)), np.broadcast_to(x, (ny, nx))

    def at(fy: np.ndarray, fx: np.ndarray) -> np.ndarray:
        inside = (fy >= 0) & (fy < ny) & (fx >= 0) & (fx < nx)
        return field[np.where(inside, fy, yy), np.where(inside, fx, xx)]  # own at the border

    for nf, wt in ((at(up_y, xx), wu), (at(down_y, xx), wd)):
        rows = np.flatnonzero(wt.any(1))
        acc[rows] += predict(nf, half, rows, None).astype(np.int64) * wt[rows]
    for nf, wt in ((at(yy, left_x), wl), (at(yy, right_x), wr)):
        cols = np.flatnonzero(wt.any(0))
        acc[:, cols] += predict(nf, half, None, cols).astype(np.int64) * wt[:, cols]
    return ((acc + (1 << (OBMC_BITS - 1))) >> OBMC_BITS).astype(np.int32)


def predict_frame_split(
    ref: tuple[np.ndarray, ...], field: np.ndarray, split: np.ndarray, sharp: bool = False
) -> tuple[np.ndarray, ...]:
    """``predict_frame`` (with overlapped compensation) of a split field (``overlapped_split``):
    one luma vector per 8x8 cell, 4x4 in the chroma planes; ``sharp`` as there."""
    ref2 = luma_plane(ref[0], sharp)
    luma = lambda f, b, r, c: predict_luma(ref2, f, r, c, sharp, b)  # noqa: E731
    out = [overlapped_split(luma, field, split, BLOCK)]
    for plane in ref[1:]:
        chroma = lambda f, b, r, c, p=plane: predict_plane(p, f, b, 3, 1, r, c)  # noqa: E731
        out.append(overlapped_split(chroma, field, split, BLOCK // 2))
    return tuple(p[: r.shape[0], : r.shape[1]] for p, r in zip(out, ref, strict=True))


SPLIT_NEIGHBOURS = (
    True  # encoder: a split block's cells also try the left and above blocks' vectors
)
SPLIT_PRIOR = 60  # initial count of "not split" in every split-flag context (4 for "split")


class SplitModels:
    """The adaptive state of split blocks: a split flag per 16x16 block (contexts as the still
    flags': how many of the above-left, above and above-right blocks are split, 4 on the first
    row), then for every split block the differences of its top-right, bottom-left and
    bottom-right vectors (the top-left one is the block's vector in the joint coding) from their
    predictors: a still flag in a context per position, then y and x (``AdaptiveMvdModel``,
    contexts position - 1 and position + 2)."""

    def __init__(self) -> None:
        self.flag = AdaptiveFlagModel(5)
        self.flag.counts[:, 0] = SPLIT_PRIOR  # splits start rare
        self.still = AdaptiveFlagModel(3)
        self.mvd = AdaptiveMvdModel()


def sub_predictors(v: np.ndarray) -> np.ndarray:
    """Predictors of the four vectors (k, 4, 2) of split blocks, in raster order within the
    block: the top-left vector for the top-right and bottom-left ones, the median of the other
    three for the bottom-right one (the top-left one: itself)."""
    p = np.repeat(v[:, :1], 4, 1).copy()
    p[:, 3] = np.median(v[:, :3], axis=1).astype(v.dtype)
    return p


def code_split_flags(sink, shape, split: np.ndarray | None, models: SplitModels) -> np.ndarray:
    """Code (``split`` given) or decode (None) the split flags of a P frame, row by row."""
    nby, nbx = shape
    out = np.zeros((nby, nbx), np.int64)
    above = None
    for by in range(nby):
        ctx = VectorModels.still_context(above, nbx)
        vals = None if split is None else split[by].astype(np.int32)
        got = sink.code(ctx.astype(np.int32), models.flag.tables(), vals).astype(np.int64)
        if got.min(initial=0) < 0 or got.max(initial=0) > 1:
            raise ValueError("bad split flag in the stream")
        models.flag.update(ctx, got)
        out[by] = got
        above = got
    return out


def code_sub_vectors(
    sink, mv: np.ndarray, split: np.ndarray, field: np.ndarray | None, models: SplitModels
) -> np.ndarray:
    """Code (``field`` given: (2 nby, 2 nbx, 2)) or decode (None) the three further vectors of
    every split block (``mv``: the blocks' vectors, a split block's its top-left cell's) and
    return the full field, one vector per 8x8 cell."""
    nby, nbx = split.shape
    out = np.repeat(np.repeat(mv.astype(np.int64), 2, 0), 2, 1)
    bys, bxs = np.nonzero(split)
    k = len(bys)
    if k == 0:
        return out.astype(np.int32)
    pos = ((0, 1), (1, 0), (1, 1))
    ctx = np.tile(np.arange(3), k)
    d = None
    if field is not None:
        v = np.stack([field[2 * bys + dy, 2 * bxs + dx] for dy, dx in ((0, 0), *pos)], 1).astype(
            np.int64
        )
        d = (v - sub_predictors(v))[:, 1:].reshape(-1, 2)
    flags = _code_still_flags(sink, models, ctx, d)
    moving = np.flatnonzero(flags == 0)
    got = np.zeros((3 * k, 2), np.int64)
    for comp, off in ((0, 0), (1, 3)):
        c = ctx[moving] + off
        vals = None if d is None else d[moving, comp].astype(np.int32)
        got[moving, comp] = sink.code(c.astype(np.int32), models.mvd.tables(), vals)
        models.mvd.update(c, got[moving, comp])
    got = got.reshape(k, 3, 2)
    v = np.zeros((k, 4, 2), np.int64)
    v[:, 0] = mv[bys, bxs]
    v[:, 1] = v[:, 0] + got[:, 0]
    v[:, 2] = v[:, 0] + got[:, 1]
    v[:, 3] = np.median(v[:, :3], axis=1).astype(np.int64) + got[:, 2]
    for i, (dy, dx) in enumerate(((0, 0), *pos)):
        out[2 * bys + dy, 2 * bxs + dx] = v[:, i]
    return out.astype(np.int32)
