"""Sensor-ordered predictive geometry for ``octree`` (format 3): the points of a spinning LiDAR
or of a depth camera's pixel grid, in the sensor's own order, each predicted from the previous one.

::

    quantised points q (integers) --sensor model estimated by the encoder (header)-->
      (row, column, range) per point: LiDAR (beam, azimuth in 2^A steps per turn, radius in the
      xy plane), depth camera (pixel row, pixel column, depth along the optical axis, in the
      sensor's own depth steps when the encoder finds them)
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
        if np.any(steps < 0) or np.any(steps > 1 << 20):
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

RANGE_EXTRA = 6  # radii, depths (and depth-lattice indexes) stay below 2^(bits + 6)
TAN_SHIFT = 20  # beam slopes in 1/2^20
HEAD_SIZE = 0.02  # lasers' heights on the head at most 2 % of the median radius
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
    """Index of the beam whose predicted height at the point's radius is nearest its height
    (among the seven beams around its slope)."""
    t = p[:, 2] / np.maximum(rng, 1)
    k = np.searchsorted(slopes / 2.0**TAN_SHIFT, t)
    best, out = None, None
    for d in (-3, -2, -1, 0, 1, 2, 3):
        cand = np.clip(k + d, 0, len(slopes) - 1)
        pz = (rng * slopes[cand] + (heights[cand] << (TAN_SHIFT - HEIGHT_SHIFT))) / 2.0**TAN_SHIFT
        err = np.abs(p[:, 2] - pz)
        if best is None:
            best, out = err, cand.copy()
        else:
            better = err < best
            out[better], best = cand[better], np.minimum(err, best)
    return out


def _refit_lines(p, r, rng, slopes, heights, bits, hmax):
    """Each beam's line z = r slope + height refitted by least squares to the points nearest it
    (float radii ``r``), |height| at most ``hmax`` (lasers sit on a small head: a free height
    would let one line take a whole ground plane, z = constant, from several beams); beams with
    too few points keep theirs. (slopes, heights, counts)."""
    k = len(slopes)
    z = p[:, 2].astype(np.float64)
    b = _nearest_beam(p, rng, slopes, heights)
    n = np.bincount(b, minlength=k).astype(np.float64)
    sr, sz = np.bincount(b, r, k), np.bincount(b, z, k)
    srr, srz = np.bincount(b, r * r, k), np.bincount(b, r * z, k)
    det = n * srr - sr * sr
    ok = (n >= 8) & (det > 1e-9 * np.maximum(n * srr, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(ok, (n * srz - sr * sz) / np.where(ok, det, 1), 0)
        h = np.where(ok, (sz - t * sr) / np.maximum(n, 1), 0)
        clip = np.clip(h, -hmax, hmax)
        t = np.where(clip != h, (srz - clip * sr) / np.maximum(srr, 1e-9), t)
        h = clip
    ok &= np.abs(t) < 64
    slopes = np.where(ok, np.rint(t * 2.0**TAN_SHIFT), slopes).astype(np.int64)
    heights = np.where(ok, np.rint(h * 2.0**HEIGHT_SHIFT), heights).astype(np.int64)
    return slopes, heights, n


def _fit_beams(p, rf, rng, centres, bits, rounds: int = 3):
    """Beam table (slopes, heights) from peak slopes: a few rounds of assigning points to the
    nearest beam line z = r slope + height and refitting each line by least squares on its far
    points; beams left with almost no points are dropped, beams whose lines stay within a grid
    step of a neighbour's over the radii seen are merged. With a rough cost of the result."""
    hmax = HEAD_SIZE * float(np.median(rf))
    slopes = np.rint(centres * 2.0**TAN_SHIFT).astype(np.int64)
    heights = np.zeros(len(slopes), np.int64)
    for it in range(rounds):
        # first the far half (a laser's height offset moves the near points' slopes most)
        far = rf > (np.median(rf) if it == 0 else 8)
        r = rf[far]
        if len(r) < 16:
            break
        lo, hi = np.quantile(r, [0.05, 0.95])
        slopes, heights, n = _refit_lines(p[far], r, rng[far], slopes, heights, bits, hmax)
        keep = (n >= max(4, 2e-4 * len(r))) | (it == 0)  # the far half misses low beams
        order = np.argsort(slopes, kind="stable")
        order = order[keep[order]]
        if len(order) < 2:
            break
        slopes, heights, n = slopes[order], heights[order], n[order]
        ts, hs = slopes / 2.0**TAN_SHIFT, heights / 2.0**HEIGHT_SHIFT
        gap = np.maximum(
            np.abs(np.diff(ts) * lo + np.diff(hs)), np.abs(np.diff(ts) * hi + np.diff(hs))
        )
        drop = np.zeros(len(slopes), bool)
        for i in np.flatnonzero((gap < 1.0) & (it > 0)):  # into the better-populated one
            if not drop[i] and not drop[i + 1]:
                drop[i if n[i] < n[i + 1] else i + 1] = True
        slopes, heights = slopes[~drop], heights[~drop]
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
    sub = slice(None, None, max(1, len(p) // 50000))  # the estimate on at most ~50k points
    ps, rs, ns = p[sub], rf[sub], rng[sub]
    slope = ps[:, 2] / np.maximum(rs, 0.5)
    best, seen = None, []
    for scale in (0.25, 0.5, 1.0, 2.0, 4.0):
        centres = _find_beams(slope, rs, scale)
        if centres is None or any(np.array_equal(centres, c) for c in seen):
            continue
        seen.append(centres)
        fit = _fit_beams(ps, rs, ns, centres, bits)
        if best is None or fit[0] < best[0]:
            best = fit
    if best is None:
        return None
    _, slopes, heights, _ = best
    far = rf > 8  # the lines once more on every point
    hmax = HEAD_SIZE * float(np.median(rf))
    slopes, heights, _ = _refit_lines(p[far], rf[far], rng[far], slopes, heights, bits, hmax)
    order = np.argsort(slopes, kind="stable")
    slopes, heights = slopes[order], heights[order]
    return slopes, heights, rng, _nearest_beam(p, rng, slopes, heights), rf


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
    if not 1 <= nrows <= MAX_BEAMS or not 8 <= abits <= 24 or not 0 < step_fp < 1 << 38:
        raise CodecError("octree: corrupt stream (sensor header)")
    if np.any(np.abs(centre) > 1 << (bits + 4)):
        raise CodecError("octree: corrupt stream (sensor centre)")
    slopes = _cumsum_checked(ints.get("hdr", nrows), "slopes")
    heights = _cumsum_checked(ints.get("hdr", nrows), "heights")
    if np.abs(slopes).max() > 1 << 30 or np.abs(heights).max() > 1 << (bits + 8):
        raise CodecError("octree: corrupt stream (beam table)")
    row, phi, rng = _decode_sequence(ints, n, step_fp, nrows)
    if np.any(rng < 0) or np.any(rng > 1 << (bits + RANGE_EXTRA)):
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
    # A (azimuth steps per turn 2^A): 1 to 16 times coarser than one grid step at the far radius
    top = int(np.ceil(np.log2(2 * np.pi * max(np.quantile(plan[2], 0.9), 1))))
    return [(a, step, plan) for a in range(top - 4, top + 1) if 8 <= a <= 24]


# ----------------------------------------------------------------------------- entry points

MODES = ("lidar", "camera")


def encode(q: np.ndarray, bits: int, centre, modes=MODES, rel=None):
    """(mode, stream, ideal bits) of the cheapest sensor model of ``modes`` for the quantised
    points ``q`` (N x 3 int64), or None when none fits. ``centre``: the grid position of the
    coordinates' origin (where a LiDAR or a camera sits in its own frame), or None; ``rel``:
    the unquantised points relative to that origin, in grid units (the camera model is
    estimated on them; default q - centre)."""
    q = np.asarray(q, np.int64)
    if centre is None or np.any(np.abs(centre) >= 1 << (bits + 3)):
        return None
    c = np.rint(np.asarray(centre, np.float64)).astype(np.int64)
    if "camera" in modes:
        model = camera_model(q - centre if rel is None else rel)
        if model is not None:
            enc = AdaptiveEncoder()
            try:
                cfix = np.rint(np.asarray(centre, np.float64) * (1 << CENTRE_BITS))
                lam = None if rel is None else rel @ model[2]
                quantum = None if lam is None else depth_quantum(lam)
                encode_camera(_Ints(enc=enc), q, cfix.astype(np.int64), model, rel, quantum)
                return "camera", enc.finish(), enc.bits
            except ValueError:
                pass
    best = None
    if "lidar" in modes:
        for abits, step, plan in _lidar_candidates(q, bits, c):
            # the azimuth resolution costed on every k-th beam (about 25k points)
            k = max(1, len(q) // 25000)
            sub = plan[3] % k == 0
            part = (*plan[:2], *(a[sub] for a in plan[2:]))
            ints = _Ints()
            try:
                encode_lidar(ints, q[sub], c, part, abits, step)
            except ValueError:
                continue
            if best is None or ints.bits < best[0]:
                best = (ints.bits, (c, plan, abits, step))
    if best is None:
        return None
    enc = AdaptiveEncoder()
    encode_lidar(_Ints(enc=enc), q, *best[1])
    return "lidar", enc.finish(), enc.bits


def decode(mode: str, dec: AdaptiveDecoder, n: int, bits: int) -> np.ndarray:
    """The quantised points (N x 3 int64, in coding order) of a ``mode`` stream."""
    ints = _Ints(dec=dec)
    if mode == "lidar":
        q = decode_lidar(ints, n, bits)
    elif mode == "camera":
        q = decode_camera(ints, n, bits)
    else:
        raise CodecError(f"octree: unknown geometry mode {mode!r}")
    if len(q) != n or np.any(q < 0) or np.any(q >= 1 << bits):
        raise CodecError("octree: corrupt stream (sensor points off the grid)")
    return q


# ----------------------------------------------------------------------------- camera model

CAM_SHIFT = 30  # the inverse projection's entries in 1/2^30
CENTRE_BITS = 8  # the camera's centre in 1/256 of a grid step
MAX_PIXELS = 1 << 15


def _rayleigh(st: np.ndarray, k: np.ndarray) -> complex:
    return complex(np.exp(2j * np.pi * (st @ k)).mean())


def _lattice_basis(st: np.ndarray, rho: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Two shortest reciprocal vectors (cycles per unit) of the pixel lattice of the points
    within ``rho`` of the image-plane origin, from a 2D FFT of their density, refined on the
    points' Rayleigh statistic."""
    pts = st[np.all(np.abs(st) < rho, axis=1)]
    if len(pts) < 200:
        return None
    pts = pts[:: max(1, len(pts) // 4000)]
    nbin = 1024  # frequencies up to 256 / rho: focal lengths up to 2560 pixels at rho 0.1
    ij = ((pts + rho) / (2 * rho) * nbin).astype(np.int64).clip(0, nbin - 1)
    h = np.bincount(ij[:, 0] * nbin + ij[:, 1], minlength=nbin * nbin).reshape(nbin, nbin)
    f = np.abs(np.fft.rfft2(h - h.mean()))
    f[0, 0] = 0
    f[:3, :3] = 0  # the region's own envelope
    flat = f.ravel()
    top = np.argpartition(flat, flat.size - 40)[-40:]
    i, j = np.unravel_index(top, f.shape)
    i = np.where(i < nbin // 2, i, i - nbin)
    peaks = np.stack([i, j], 1) / (2 * rho)
    cand = np.concatenate([peaks, (peaks[:, None] - peaks[None]).reshape(-1, 2)])
    cand = cand[np.lexsort([cand[:, 1], cand[:, 0]])]  # an order independent of ties in f
    cand = cand * np.where(cand[:, :1] < 0, -1, 1)  # k and -k are the same lattice row
    length = np.hypot(cand[:, 0], cand[:, 1])
    cand = cand[np.argsort(np.round(length, 6), kind="stable")]
    cand = cand[np.hypot(cand[:, 0], cand[:, 1]) > 20]
    found: list[np.ndarray] = []
    tried: list[np.ndarray] = []
    sub = pts[:: max(1, len(pts) // 1500)]
    for k in cand:
        if len(tried) >= 24:
            break
        if any(np.hypot(*(k - t)) < 6 for t in tried):
            continue
        tried.append(k)
        if found:
            k1 = found[0]
            cross = abs(k[0] * k1[1] - k[1] * k1[0]) / (np.hypot(*k) * np.hypot(*k1))
            if cross < 0.5:
                continue
        r, kk = _refine(sub, k)
        if r >= 0.4:
            found.append(_refine(pts, kk)[1])
            if len(found) == 2:
                return found[0], found[1]
    return None


def _refine(pts: np.ndarray, k: np.ndarray) -> tuple[float, np.ndarray]:
    """The lattice vector near ``k`` with the largest Rayleigh statistic (coarse to fine)."""
    best = (abs(_rayleigh(pts, k)), k)
    for width in (8.0, 2.0, 0.5, 0.12):
        for dx in np.linspace(-width, width, 9):
            for dy in np.linspace(-width, width, 9):
                kk = best[1] + (dx, dy)
                r = abs(_rayleigh(pts, kk))
                if r > best[0]:
                    best = (r, kk)
        if width == 8.0 and best[0] < 0.15:
            break
    return best


def _fit_homography(st: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """H (3 x 3, H[2, 2] = 1) with (u, v, 1) ~ H (s, t, 1), least squares (DLT)."""
    s, t = st[:, 0], st[:, 1]
    u, v = uv[:, 0].astype(np.float64), uv[:, 1].astype(np.float64)
    n = len(s)
    z, o = np.zeros(n), np.ones(n)
    a = np.concatenate(
        [
            np.stack([s, t, o, z, z, z, -u * s, -u * t], 1),
            np.stack([z, z, z, s, t, o, -v * s, -v * t], 1),
        ]
    )
    b = np.concatenate([u, v])
    h, *_ = np.linalg.lstsq(a, b, rcond=None)
    return np.append(h, 1.0).reshape(3, 3)


def camera_model(p: np.ndarray) -> np.ndarray | None:
    """A pinhole camera at the origin that saw the points ``p`` (N x 3 float, the camera's or
    any rotated frame): M (3 x 3) with M p = depth * (u, v, 1), u and v integer pixel indexes
    for most points; or None. The image plane is first taken across the points' mean direction;
    the pixel lattice is found near its centre (2D FFT), then the projective map is fitted to the
    rounded pixel indexes on a growing region."""
    norm = np.linalg.norm(p, axis=1)
    ok = norm > 0
    if ok.sum() < 500:
        return None
    w = p[ok] / norm[ok, None]
    m = w.mean(0)
    if np.linalg.norm(m) < 0.5:
        return None
    m /= np.linalg.norm(m)
    ax = np.eye(3)[np.argmin(np.abs(m))]
    e1 = ax - m * (ax @ m)
    e1 /= np.linalg.norm(e1)
    basis = np.stack([e1, np.cross(m, e1), m])
    c = p[ok] @ basis.T
    front = c[:, 2] > 1e-9 * norm[ok]
    st = c[front, :2] / c[front, 2:3]
    spread = np.quantile(np.abs(st), 0.99)
    rho = 0.1
    while rho < spread and np.all(np.abs(st) < rho, axis=1).sum() < 1500:
        rho *= 1.5
    lat = _lattice_basis(st, rho)
    if lat is None:
        return None
    k = np.stack(lat)  # rows: u, v per unit of (s, t)
    near = np.all(np.abs(st) < rho, axis=1)
    phase = [-np.angle(_rayleigh(st[near], kk)) / (2 * np.pi) for kk in lat]
    h = np.eye(3)
    h[:2, :2], h[:2, 2] = k, phase
    region = rho
    for _ in range(30):
        sel = np.flatnonzero(np.all(np.abs(st) < region, axis=1))
        sel = sel[:: max(1, len(sel) // 20000)]  # enough for 8 parameters, and fast
        x = np.c_[st[sel], np.ones(len(sel))] @ h.T
        uv = np.rint(x[:, :2] / x[:, 2:3])
        h = _fit_homography(st[sel], uv)
        if region > spread * 1.2:
            break
        region *= 1.4
    x = np.c_[st, np.ones(len(st))] @ h.T
    frac = x[:, :2] / x[:, 2:3]
    if np.mean(np.all(np.abs(frac - np.rint(frac)) < 0.1, axis=1)) < 0.6:
        return None
    mm = h @ basis
    return mm / np.linalg.norm(mm[2])


DEPTH_SHIFT = 20  # the depth step and offset in 1/2^20 grid steps


def depth_quantum(depth: np.ndarray) -> tuple[float, float] | None:
    """(step, offset) of the lattice the depths lie on (a sensor's depth unit, e.g. 1 mm, in
    grid steps), when they do and the step is worth coding in, else None."""
    levels = np.unique(np.round(depth[depth > 0], 3))
    gaps = np.diff(levels)
    gaps = gaps[gaps > 0.25]
    if len(gaps) < 64:
        return None
    step0 = float(np.median(gaps))
    if not 0.5 <= step0 < 2048:
        return None
    n = np.rint(gaps / step0)
    ok = (n >= 1) & (np.abs(gaps - n * step0) < 0.05 * step0)
    if ok.mean() < 0.8:
        return None
    # the levels against their lattice indexes: a straight line whose slope is the step
    d = np.diff(levels)
    index = np.r_[0, np.cumsum(np.where(d > 0.25 * step0, np.rint(d / step0), 0))]
    step = float(np.polyfit(index, levels, 1)[0])
    mean = np.exp(2j * np.pi * depth / step).mean()
    if abs(mean) < 0.9:
        return None
    return step, float(np.angle(mean) / (2 * np.pi) * step % step)


def _depth_fixed(k: np.ndarray, dstep: int, doff: int) -> tuple[np.ndarray, np.ndarray]:
    d = k * dstep + doff
    return d >> DEPTH_SHIFT, d & ((1 << DEPTH_SHIFT) - 1)


def camera_predict(row, col, k, centre, g, dstep, doff) -> np.ndarray:
    """Cartesian prediction (int64 N x 3): centre / 2^8 + depth * G (u, v, 1) / 2^30, integers;
    G the inverse projection, u = col + u0, v = row + v0 folded into its last column, the depth
    (k dstep + doff) / 2^20."""
    ray = g[:, 0][None] * col[:, None] + g[:, 1][None] * row[:, None] + g[:, 2][None]
    offset = centre[None] << (CAM_SHIFT - CENTRE_BITS)
    whole, frac = _depth_fixed(k, dstep, doff)
    prod = whole[:, None] * ray + ((frac[:, None] * ray) >> DEPTH_SHIFT)
    return _rshift_round(prod + offset, CAM_SHIFT)


def encode_camera(ints, q, centre, model, rel=None, quantum=None) -> None:
    """``centre``: the camera's position in 1/2^8 grid steps; ``rel``: the unquantised points
    around it; ``quantum``: the depths' (step, offset) (``depth_quantum``), or None."""
    p = q - centre / (1 << CENTRE_BITS)
    x = p @ model.T
    if quantum is None:
        dstep, doff = 1 << DEPTH_SHIFT, 0
        depth = np.rint(np.maximum(x[:, 2], 0)).astype(np.int64)
    else:
        dstep = int(round(quantum[0] * (1 << DEPTH_SHIFT)))
        doff = int(round(quantum[1] * (1 << DEPTH_SHIFT)))
        lam = (rel @ model[2]) if rel is not None else x[:, 2]
        depth = np.rint(np.maximum(lam - quantum[1], 0) / quantum[0]).astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.where(x[:, 2:3] > 0.5, x[:, :2] / x[:, 2:3], 0.0)
    uv = np.rint(np.clip(uv, -MAX_PIXELS, MAX_PIXELS)).astype(np.int64)
    lo = uv.min(0)
    col, row = uv[:, 0] - lo[0], uv[:, 1] - lo[1]
    if col.max() >= MAX_PIXELS or row.max() >= MAX_PIXELS:
        raise ValueError("image too large")
    inv = np.linalg.inv(model)
    inv[:, 2] += inv[:, 0] * lo[0] + inv[:, 1] * lo[1]  # pixel indexes from 0
    g = np.rint(inv * 2.0**CAM_SHIFT).astype(np.int64)
    if np.abs(g).max() >= 2**31 - 1:
        raise ValueError("projection out of range")
    order = np.lexsort([depth, col, row])
    row, col, depth, qq = row[order], col[order], depth[order], q[order]
    nrows = int(row.max()) + 1
    ints.put("hdr", [nrows, *centre, dstep, doff])
    ints.put("hdr", g.T.reshape(-1))
    _code_sequence(ints, row, col, depth, None, nrows)
    pred = camera_predict(row, col, depth, centre, g, dstep, doff)
    _code_residuals(ints, qq - pred, _depth_fixed(depth, dstep, doff)[0])


def decode_camera(ints: _Ints, n: int, bits: int) -> np.ndarray:
    hdr = ints.get("hdr", 6)
    nrows, centre, dstep, doff = int(hdr[0]), hdr[1:4], int(hdr[4]), int(hdr[5])
    if not 1 <= nrows <= MAX_PIXELS or np.any(np.abs(centre) > 1 << (bits + 4 + CENTRE_BITS)):
        raise CodecError("octree: corrupt stream (camera header)")
    if not 1 <= dstep < 1 << 31 or not 0 <= doff < 1 << 31:
        raise CodecError("octree: corrupt stream (camera depth step)")
    g = ints.get("hdr", 9).reshape(3, 3).T
    row, col, depth = _decode_sequence(ints, n, None, nrows)
    if np.any(col < 0) or np.any(col >= MAX_PIXELS):
        raise CodecError("octree: corrupt stream (pixel columns)")
    if np.any(depth < 0) or np.any(depth > 1 << (bits + RANGE_EXTRA)):
        raise CodecError("octree: corrupt stream (depths)")
    whole = (int(depth.max()) * dstep + doff >> DEPTH_SHIFT) + 1
    a = [[abs(int(v)) for v in r] for r in g]
    ray = max(r[0] * int(col.max()) + r[1] * (nrows - 1) + r[2] for r in a) + 1
    big = whole * ray + (1 << (CAM_SHIFT + CENTRE_BITS + bits + 5)) >= 1 << 62
    if big or ray >= 1 << (62 - DEPTH_SHIFT):
        raise CodecError("octree: corrupt stream (camera projection out of range)")
    pred = camera_predict(row, col, depth, centre, g, dstep, doff)
    return pred + _decode_residuals(ints, _depth_fixed(depth, dstep, doff)[0])
