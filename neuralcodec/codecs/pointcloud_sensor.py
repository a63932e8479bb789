"""Sensor-ordered predictive geometry for ``octree`` (format 3): the points of a spinning LiDAR
or of a depth camera's pixel grid, in the sensor's own order, each predicted from the previous one.

::

    quantised points q (integers) --sensor model estimated by the encoder (header)-->
      (row, column, range) per point: LiDAR (beam, azimuth in 2^A steps per turn, radius in the
      xy plane), depth camera (pixel row, pixel column, depth along the optical axis)
    sorted by row, column, range; coded as integers (entropy/adaptive.py ``code_ints``):
      points per row; per row its first column and range (against the previous row's);
      per point: column step in firings / pixels, azimuth residual against
      previous + steps x firing interval (LiDAR), range residual against the previous point of
      the row; then the Cartesian residual q - prediction(row, column, range), 3 integers.

The prediction from (row, column, range) is integer arithmetic only: the LiDAR's cosine / sine
come from a table of 2^14 + 1 fixed-point values per turn computed with Python integers (a
Taylor series on a 160-bit fixed-point angle), linearly interpolated in integers; the beams'
slopes and heights, the camera's projection, are fixed-point integers sent in the header. What
the encoder estimated in floating point is only a choice of what to send: every value the
decoder returns is q = prediction + residual, exactly the quantised point set.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from neuralcodec.entropy.adaptive import (
    INT_CONTEXTS,
    AdaptiveDecoder,
    AdaptiveEncoder,
    ideal_int_bits,
    states,
)

from .base import CodecError

# ----------------------------------------------------------------------------- integer trig

TRIG_BITS = 14  # table steps per turn: 2^14
TRIG_ONE = 30  # fixed point of the table values
_PI_DIGITS = 3141592653589793238462643383279502884197169399375105820974944592307816406286
_PI_SCALE = 10**75


@lru_cache(maxsize=1)
def cos_table() -> np.ndarray:
    """cos(2 pi k / 2^14) * 2^30 rounded to nearest, k = 0 .. 2^14 (int64), from integers only."""
    quarter = 1 << (TRIG_BITS - 2)
    prec = 160
    one = 1 << prec
    half_pi = _PI_DIGITS * one // (2 * _PI_SCALE)
    vals = []
    for k in range(quarter + 1):
        x = half_pi * k // quarter
        x2 = x * x >> prec
        term, total, i = one, one, 0
        while term:
            term = -(term * x2 >> prec) // ((2 * i + 1) * (2 * i + 2))
            total += term
            i += 1
        vals.append((total + (1 << (prec - TRIG_ONE - 1))) >> (prec - TRIG_ONE))
    q = np.array(vals, np.int64)  # cos over the first quarter turn
    full = np.empty(4 * quarter + 1, np.int64)
    full[: quarter + 1] = q
    full[quarter : 2 * quarter + 1] = -q[::-1]
    full[2 * quarter : 3 * quarter + 1] = -q
    full[3 * quarter :] = q[::-1]
    return full


def cos_sin(phi: np.ndarray, abits: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-point (2^30) cos and sin of 2 pi phi / 2^abits, integers only."""
    table = cos_table()
    turn = 1 << TRIG_BITS
    phi = np.asarray(phi, np.int64) & ((1 << abits) - 1)
    shift = abits - TRIG_BITS
    out = []
    for offset in (0, 3 * turn // 4):  # sin(a) = cos(a - turn / 4) = cos(a + 3 turn / 4)
        if shift <= 0:
            k = ((phi << -shift) + offset) & (turn - 1)
            out.append(table[k])
        else:
            k = ((phi >> shift) + offset) & (turn - 1)
            frac = phi & ((1 << shift) - 1)
            c0, c1 = table[k], table[k + 1]
            out.append(c0 + (((c1 - c0) * frac) >> shift))
    return out[0], out[1]


def _rshift_round(v: np.ndarray, s: int) -> np.ndarray:
    return (v + (1 << (s - 1))) >> s


# ----------------------------------------------------------------------------- integer coding


class _Ints:
    """Integer streams with their own context sets, written or only costed (ideal bits)."""

    # name: (sets, markov)
    KINDS = {
        "hdr": (1, 1),
        "rows": (1, 4),
        "first": (2, 4),
        "dcol": (2, 4),
        "dphi": (4, 4),
        "drange": (8, 6),
        "res": (3 * 20, 3),
    }

    def __init__(self, enc: AdaptiveEncoder | None = None, dec: AdaptiveDecoder | None = None):
        self.enc, self.dec, self.bits = enc, dec, 0.0
        self.by_kind: dict[str, float] = {}
        self.st = {k: states(s * abs(m) * INT_CONTEXTS) for k, (s, m) in self.KINDS.items()}

    def put(self, kind: str, values, sets=None) -> None:
        v = np.asarray(values, np.int64).reshape(-1)
        if v.size and (v.max() > 2**31 - 1 or v.min() < -(2**31) + 1):
            raise ValueError("value out of the int32 range")
        s = np.zeros(v.size, np.int32) if sets is None else np.asarray(sets, np.int32)
        markov = self.KINDS[kind][1]
        if self.enc is None:
            b = ideal_int_bits(v, s, self.st[kind], markov)
            self.bits += b
            self.by_kind[kind] = self.by_kind.get(kind, 0.0) + b
        else:
            self.enc.code_ints(v, s, self.st[kind], markov)

    def get(self, kind: str, n: int, sets=None) -> np.ndarray:
        s = np.zeros(n, np.int32) if sets is None else np.asarray(sets, np.int32)
        return self.dec.code_ints(s, self.st[kind], self.KINDS[kind][1]).astype(np.int64)


def _bitlen(v: np.ndarray) -> np.ndarray:
    a = np.abs(np.asarray(v, np.int64))
    out = np.zeros(a.shape, np.int64)
    while np.any(a):
        out += a > 0
        a >>= 1
    return out


def _segments(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row of every point, whether it is the first of its row) for rows of ``counts`` points."""
    row = np.repeat(np.arange(len(counts)), counts)
    first = np.zeros(len(row), bool)
    starts = np.cumsum(counts) - counts
    first[starts[counts > 0]] = True
    return row, first


def _seg_cumsum(values: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Cumulative sums restarting at every ``first`` (values at firsts are absolute)."""
    c = np.cumsum(values)
    idx = np.flatnonzero(first)
    base = np.zeros(len(values), np.int64)
    if len(idx):
        base_at = c[idx] - values[idx]
        base = base_at[np.searchsorted(idx, np.arange(len(values)), side="right") - 1]
    return c - base


# ----------------------------------------------------------------------------- the sequence


def _code_sequence(ints: _Ints, rows: np.ndarray, col, rng, step_fp: int | None, nrows: int):
    """Code the sorted (rows, col, rng) sequence; LiDAR (``step_fp`` = firing interval in
    1/65536 azimuth steps): column steps in firings plus an azimuth residual; camera
    (``step_fp`` None): column steps directly."""
    counts = np.bincount(rows, minlength=nrows)
    ints.put("rows", np.diff(np.r_[0, counts]))
    _, first = _segments(counts)
    fi = np.flatnonzero(first)
    ints.put("first", np.diff(np.r_[0, col[fi]]), np.zeros(len(fi)))
    ints.put("first", np.diff(np.r_[0, rng[fi]]), np.ones(len(fi)))
    rest = ~first
    dcol = np.diff(np.r_[0, col])[rest]
    if step_fp is not None:
        n = np.maximum(np.rint(dcol * 65536.0 / step_fp), 0).astype(np.int64)
        e = dcol - _rshift_round(n * step_fp, 16)
        ints.put("dcol", n)
        ints.put("dphi", e, np.minimum(n, 3))
        gap = n
    else:
        ints.put("dcol", dcol)
        gap = dcol
    dr = np.diff(np.r_[0, rng])[rest]
    ints.put("drange", dr, np.minimum(gap, 7))


def _decode_sequence(ints: _Ints, n: int, step_fp: int | None, nrows: int):
    counts = _cumsum_checked(ints.get("rows", nrows), "rows")
    if np.any(counts < 0) or int(counts.sum()) != n:
        raise CodecError("octree: corrupt stream (sensor rows do not add up)")
    rows, first = _segments(counts)
    fi = np.flatnonzero(first)
    col0 = _cumsum_checked(ints.get("first", len(fi), np.zeros(len(fi))), "columns")
    rng0 = _cumsum_checked(ints.get("first", len(fi), np.ones(len(fi))), "ranges")
    m = n - len(fi)
    if step_fp is not None:
        steps = ints.get("dcol", m)
        if np.any(steps < 0) or np.any(steps > 1 << 24):
            raise CodecError("octree: corrupt stream (azimuth steps)")
        e = ints.get("dphi", m, np.minimum(steps, 3))
        dcol = _rshift_round(steps * step_fp, 16) + e
        gap = steps
    else:
        dcol = ints.get("dcol", m)
        gap = dcol
    dr = ints.get("drange", m, np.clip(gap, 0, 7))
    colv, rngv = np.zeros(n, np.int64), np.zeros(n, np.int64)
    colv[first], rngv[first] = col0, rng0
    colv[~first], rngv[~first] = dcol, dr
    col, rng = _seg_cumsum(colv, first), _seg_cumsum(rngv, first)
    return rows, col, rng


def _cumsum_checked(v: np.ndarray, what: str) -> np.ndarray:
    c = np.cumsum(v)
    if len(c) and np.abs(c).max() > 1 << 40:
        raise CodecError(f"octree: corrupt stream (sensor {what})")
    return c


def _code_residuals(ints: _Ints, res: np.ndarray, rng: np.ndarray) -> None:
    cls = np.minimum(_bitlen(rng), 19)
    for a in range(3):
        ints.put("res", res[:, a], a * 20 + cls)


def _decode_residuals(ints: _Ints, rng: np.ndarray) -> np.ndarray:
    cls = np.minimum(_bitlen(np.clip(rng, -(1 << 40), 1 << 40)), 19)
    return np.stack([ints.get("res", len(rng), a * 20 + cls) for a in range(3)], axis=1)


# ----------------------------------------------------------------------------- LiDAR model

TAN_SHIFT = 20  # beam slopes in 1/2^20
HEIGHT_SHIFT = 4  # beam heights in 1/16 of a grid step
MAX_BEAMS = 512


def lidar_predict(row, phi, rng, centre, abits, slopes, heights) -> np.ndarray:
    """Cartesian prediction (int64 N x 3) of the quantised points from beam, azimuth, radius."""
    c, s = cos_sin(phi, abits)
    x = centre[0] + _rshift_round(rng * c, TRIG_ONE)
    y = centre[1] + _rshift_round(rng * s, TRIG_ONE)
    z = centre[2] + _rshift_round(
        rng * slopes[row] + (heights[row] << (TAN_SHIFT - HEIGHT_SHIFT)), TAN_SHIFT
    )
    return np.stack([x, y, z], axis=1)


def _find_beams(slope: np.ndarray, r: np.ndarray, scale: float) -> np.ndarray | None:
    """Beam slopes (tan of the elevation) from the points' slopes: the peaks of a histogram of
    the slopes, each point weighted by its radius (far points know their slope better), with a
    bin width of about the slope's rounding error at the median radius."""
    sel = r >= 4
    t, w = slope[sel], r[sel]
    if len(t) < 64:
        return None
    lo, hi = np.quantile(t, [0.0002, 0.9998])
    width = float(np.clip(scale / np.median(w), 1e-4, 1e-2))
    nb = int((hi - lo) / width) + 7
    if nb > 100000 or nb < 8:
        return None
    h = np.bincount(((t - lo) / width + 3).astype(np.int64).clip(0, nb - 1), w, minlength=nb)
    h = np.convolve(h, [1, 4, 6, 4, 1], "same")
    pad = np.r_[np.zeros(3), h, np.zeros(3)]
    win = np.max([pad[i : i + nb] for i in range(7)], axis=0)  # max over +-3 bins
    peak = (h >= win) & (h > 0.01 * h.max())
    idx = np.flatnonzero(peak)
    idx = idx[np.r_[True, np.diff(idx) > 1]]  # flat tops: the first bin
    centres = lo + (idx - 3 + 0.5) * width
    if not 2 <= len(centres) <= MAX_BEAMS:
        return None
    for _ in range(2):  # refine: the weighted mean slope of the points nearest each peak
        mid = (centres[1:] + centres[:-1]) / 2
        k = np.searchsorted(mid, t)
        sums = np.bincount(k, t * w, len(centres))
        cnt = np.bincount(k, w, len(centres))
        keep = cnt > 0
        centres = sums[keep] / cnt[keep]
    return centres


def _nearest_beam(p: np.ndarray, rng: np.ndarray, slopes, heights) -> np.ndarray:
    """Index of the beam whose predicted height at the point's radius is nearest its height."""
    t = p[:, 2] / np.maximum(rng, 1)
    k = np.clip(np.searchsorted(slopes / 2.0**TAN_SHIFT, t), 1, len(slopes) - 1)
    best = None
    for cand in (k - 1, k):
        pz = (rng * slopes[cand] + (heights[cand] << (TAN_SHIFT - HEIGHT_SHIFT))) / 2.0**TAN_SHIFT
        err = np.abs(p[:, 2] - pz)
        if best is None:
            best, out = err, cand.copy()
        else:
            better = err < best
            out[better], best = cand[better], np.minimum(err, best)
    return out


def _fit_beams(p, rf, rng, centres, bits):
    slopes = np.rint(centres * 2.0**TAN_SHIFT).astype(np.int64)
    heights = np.zeros(len(slopes), np.int64)
    row = _nearest_beam(p, rng, slopes, heights)
    # per-beam least-squares height (offsets of the lasers) and slope on the far points
    far = rf > 8
    for b in np.unique(row[far]):
        sel = far & (row == b)
        if sel.sum() >= 8:
            a = np.stack([rf[sel], np.ones(sel.sum())], 1)
            (t, h), *_ = np.linalg.lstsq(a, p[sel, 2].astype(np.float64), rcond=None)
            if abs(h) < 2.0 ** (bits + 1) and abs(t) < 64:
                slopes[b] = int(np.rint(t * 2.0**TAN_SHIFT))
                heights[b] = int(np.rint(h * 2.0**HEIGHT_SHIFT))
    order = np.argsort(slopes, kind="stable")
    slopes, heights = slopes[order], heights[order]
    row = _nearest_beam(p, rng, slopes, heights)
    pz = _rshift_round(rng * slopes[row] + (heights[row] << (TAN_SHIFT - HEIGHT_SHIFT)), TAN_SHIFT)
    # a rough cost: the height residuals' bits, the row changes along the azimuth order
    cost = float(np.log2(1.0 + np.abs(p[:, 2] - pz)).sum() * 2 + 2 * len(slopes) * 16)
    return cost, slopes, heights, row


def lidar_plan(q: np.ndarray, centre: np.ndarray, bits: int):
    """Encoder's model of a spinning LiDAR seen from ``centre`` (grid units), or None:
    (beam slopes, heights, per point radius and row). The beam table is the best (by a rough
    cost of the height residuals) of the histogram peaks at a few bin widths."""
    p = q - centre
    rf = np.hypot(p[:, 0], p[:, 1])
    rng = np.rint(rf).astype(np.int64)
    if rng.max() < 16:
        return None
    slope = p[:, 2] / np.maximum(rf, 0.5)
    best = None
    for scale in (0.25, 0.5, 1.0, 2.0, 4.0):
        centres = _find_beams(slope, rf, scale)
        if centres is None:
            continue
        fit = _fit_beams(p, rf, rng, centres, bits)
        if best is None or fit[0] < best[0]:
            best = fit
    if best is None:
        return None
    _, slopes, heights, row = best
    return slopes, heights, rng, row, rf


def lidar_azimuth_step(row, phi_turn) -> float:
    """Firing interval (in turns) from the per-beam azimuth gaps."""
    o = np.lexsort([phi_turn, row])
    d = np.diff(phi_turn[o])[np.diff(row[o]) == 0]
    d = d[d > 1e-7]
    if len(d) < 8:
        return 0.0
    s0 = np.quantile(d, 0.3)
    m = np.rint(d / s0)
    ok = (m >= 1) & (m <= 4) & (np.abs(d / np.maximum(m, 1) - s0) < 0.3 * s0)
    if ok.sum() < 8:
        return float(s0)
    return float(np.median(d[ok] / m[ok]))


def encode_lidar(ints: _Ints, q: np.ndarray, centre: np.ndarray, plan, abits: int, step) -> None:
    slopes, heights, rng, row, rf = plan
    p = q - centre
    turn = 1 << abits
    phi = np.rint(np.arctan2(p[:, 1], p[:, 0]) / (2 * np.pi) * turn).astype(np.int64) % turn
    step_fp = max(1, int(round(step * turn * 65536)))
    order = np.lexsort([rng, phi, row])
    row, phi, rng, qq = row[order], phi[order], rng[order], q[order]
    nrows = len(slopes)
    ints.put("hdr", [nrows, abits, step_fp >> 16, step_fp & 0xFFFF, *centre])
    ints.put("hdr", np.diff(np.r_[0, slopes]))
    ints.put("hdr", np.diff(np.r_[0, heights]))
    _code_sequence(ints, row, phi, rng, step_fp, nrows)
    pred = lidar_predict(row, phi, rng, centre, abits, slopes, heights)
    _code_residuals(ints, qq - pred, rng)


def decode_lidar(ints: _Ints, n: int, bits: int) -> np.ndarray:
    hdr = ints.get("hdr", 7)
    nrows, abits = int(hdr[0]), int(hdr[1])
    step_fp = (int(hdr[2]) << 16) | (int(hdr[3]) & 0xFFFF)
    centre = hdr[4:7]
    if not 1 <= nrows <= MAX_BEAMS or not 8 <= abits <= 30 or not 0 < step_fp < 1 << 40:
        raise CodecError("octree: corrupt stream (sensor header)")
    if np.any(np.abs(centre) > 1 << (bits + 4)):
        raise CodecError("octree: corrupt stream (sensor centre)")
    slopes = _cumsum_checked(ints.get("hdr", nrows), "slopes")
    heights = _cumsum_checked(ints.get("hdr", nrows), "heights")
    if np.abs(slopes).max() > 1 << 30 or np.abs(heights).max() > 1 << (bits + 8):
        raise CodecError("octree: corrupt stream (beam table)")
    row, phi, rng = _decode_sequence(ints, n, step_fp, nrows)
    if np.any(rng < 0) or np.any(rng > 1 << (bits + 2)):
        raise CodecError("octree: corrupt stream (sensor ranges)")
    pred = lidar_predict(row, phi, rng, centre, abits, slopes, heights)
    return pred + _decode_residuals(ints, rng)


def _lidar_candidates(q: np.ndarray, bits: int, centre: np.ndarray):
    """(azimuth bits, firing interval in turns, plan) worth costing for a LiDAR at ``centre``."""
    plan = lidar_plan(q, centre, bits)
    if plan is None:
        return []
    p = q - centre
    phi_turn = np.arctan2(p[:, 1], p[:, 0]) / (2 * np.pi) % 1.0
    step = lidar_azimuth_step(plan[3], phi_turn)
    if not 0 < step < 0.25:
        return []
    # an azimuth step of one grid unit at the far points' radius, and one bit either side
    top = int(np.ceil(np.log2(2 * np.pi * max(np.quantile(plan[2], 0.9), 1))))
    return [(a, step, plan) for a in (top - 1, top, top + 1) if 8 <= a <= 30]


# ----------------------------------------------------------------------------- entry points

MODES = ("lidar",)


def encode(q: np.ndarray, bits: int, centre, modes=MODES):
    """(mode, stream, ideal bits) of the cheapest sensor model of ``modes`` for the quantised
    points ``q`` (N x 3 int64), or None when none fits. ``centre``: the grid position of the
    coordinates' origin (where a LiDAR sits in its own frame), or None."""
    q = np.asarray(q, np.int64)
    best = None
    if "lidar" in modes and centre is not None and np.all(np.abs(centre) < 1 << (bits + 3)):
        c = np.asarray(centre, np.int64)
        for abits, step, plan in _lidar_candidates(q, bits, c):
            ints = _Ints()
            try:
                encode_lidar(ints, q, c, plan, abits, step)
            except ValueError:
                continue
            if best is None or ints.bits < best[0]:
                best = (ints.bits, "lidar", (c, plan, abits, step))
    if best is None:
        return None
    _, mode, args = best
    enc = AdaptiveEncoder()
    ints = _Ints(enc=enc)
    if mode == "lidar":
        encode_lidar(ints, q, *args)
    return mode, enc.finish(), enc.bits


def decode(mode: str, dec: AdaptiveDecoder, n: int, bits: int) -> np.ndarray:
    """The quantised points (N x 3 int64, in coding order) of a ``mode`` stream."""
    ints = _Ints(dec=dec)
    if mode == "lidar":
        q = decode_lidar(ints, n, bits)
    else:
        raise CodecError(f"octree: unknown geometry mode {mode!r}")
    if len(q) != n or np.any(q < 0) or np.any(q >= 1 << bits):
        raise CodecError("octree: corrupt stream (sensor points off the grid)")
    return q
