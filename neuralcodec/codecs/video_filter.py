"""In-loop Wiener filter of ``elic-ip``'s inter frames (``learned_video``'s ``TOOL_WIENER``).

After the deblocking filter, each plane of an inter frame may go through a point-symmetric
5x5 diamond filter whose six coefficients the encoder fits to that frame by least squares
(the squared error against the source) and sends::

    d_k(p) = clip(x[p + t_k] - x[p], -C, C) + clip(x[p - t_k] - x[p], -C, C)
    out[p] = clip(x[p] + ((sum_k c_k d_k(p) + 32) >> 6), 0, 255)

with ``t_k`` the ``TAPS``, ``c_k`` integers in 1/64 (the centre weight is implied, so the
filter keeps a flat area's level) and ``C`` one of ``CLIPS``. Integers only, the plane's edge
repeated outside it, so the decoder's references stay the encoder's. Per plane the stream holds
a mode (0 off, 1 the whole plane, 2 per region of 32x32 luma / 16x16 chroma pixels with a flag
each, in contexts of the left and upper regions' flags), then for modes 1 and 2 the clipping's
index and the coefficients as differences from the plane's last ones, all as integers on
adaptive contexts carried over the GOP. The encoder takes the mode and the regions by squared
error + lambda x bits (the residual levels' lambda), refitting on the regions kept.
"""

from __future__ import annotations

import numpy as np

from neuralcodec.codecs.latent.sinks import CounterSinks
from neuralcodec.entropy import adaptive

TAPS = ((0, 1), (1, 0), (0, 2), (2, 0), (1, 1), (1, -1))
SHIFT = 6
MAX_COEF = 96  # |c_k| at most this (1/64 units)
REGION = 32  # luma pixels per side of a region with its own flag (chroma: half)
PAD = 2
CLIPS = (255, 32, 16, 8, 4)  # a plane's differences are clipped to +-CLIPS[index] (255: none)
CLIP_TRIALS = (0, 1, 2)  # encoder: the clippings it tries (255, 32, 16)
# context sets of the integer coder: per plane kind (luma, chroma) a mode set, a clipping set,
# one per tap, and three flag sets (left + upper flags on)
_MODE, _CLIP, _COEF = 0, 1, 2
_FLAG = _COEF + len(TAPS)
_SETS_PER_KIND = _FLAG + 3


class FilterState:
    """What both sides carry over a GOP: the side information's context states (both plane
    kinds) and each plane's last coefficients (zero before its first filter), from which the
    next ones are coded as differences."""

    def __init__(self) -> None:
        self.st = adaptive.states(2 * _SETS_PER_KIND * adaptive.INT_CONTEXTS)
        self.prev = np.zeros((3, len(TAPS)), np.int64)
        self.prev_clip = np.zeros(3, np.int64)  # ... and clipping (the encoder's candidate)

    def copy(self) -> FilterState:
        other = FilterState()
        other.st, other.prev = self.st.copy(), self.prev.copy()
        other.prev_clip = self.prev_clip.copy()
        return other


def _differences(plane: np.ndarray, clip: int = 255) -> np.ndarray:
    """(len(TAPS), h, w) int32: x[p + t] - x[p] and x[p - t] - x[p], each clipped to
    +-``clip``, summed, per tap; edges repeated."""
    h, w = plane.shape
    x = np.pad(plane.astype(np.int32), PAD, mode="edge")
    c = x[PAD : PAD + h, PAD : PAD + w]
    out = np.empty((len(TAPS), h, w), np.int32)
    for k, (dy, dx) in enumerate(TAPS):
        a = x[PAD + dy : PAD + dy + h, PAD + dx : PAD + dx + w] - c
        b = x[PAD - dy : PAD - dy + h, PAD - dx : PAD - dx + w] - c
        if clip < 255:  # differences of 8-bit pixels are within +-255 already
            a, b = np.clip(a, -clip, clip), np.clip(b, -clip, clip)
        out[k] = a + b
    return out


def _correction(diffs: np.ndarray, coefs: np.ndarray) -> np.ndarray:
    s = np.tensordot(coefs.astype(np.int32), diffs, axes=(0, 0))
    return (s + (1 << (SHIFT - 1))) >> SHIFT


def _region_map(mask: np.ndarray | None, shape: tuple[int, int], side: int) -> np.ndarray:
    if mask is None:
        return np.ones(shape, bool)
    full = np.repeat(np.repeat(mask, side, 0), side, 1)
    return full[: shape[0], : shape[1]]


def apply(plane: np.ndarray, coefs, mask: np.ndarray | None, side: int, clip: int = 255):
    """``plane`` (uint8) filtered with ``coefs`` (differences clipped to +-``clip``) where
    the regions of ``mask`` (or all) are on."""
    corr = _correction(_differences(plane, clip), coefs)
    out = np.clip(plane.astype(np.int32) + corr, 0, 255).astype(np.uint8)
    return np.where(_region_map(mask, plane.shape, side), out, plane)


def _fit(diffs: np.ndarray, err: np.ndarray, on: np.ndarray) -> np.ndarray | None:
    """Least-squares coefficients (1/64, rounded, clipped) of the correction on ``on`` pixels."""
    if on.all():
        f = diffs.reshape(len(TAPS), -1).astype(np.float64)
        t = err.reshape(-1).astype(np.float64)
    else:
        f = diffs[:, on].astype(np.float64)
        t = err[on].astype(np.float64)
    if t.size < 64:
        return None
    a = f @ f.T
    b = f @ t
    try:
        c = np.linalg.solve(a + 1e-6 * np.trace(a) * np.eye(len(TAPS)), b)
    except np.linalg.LinAlgError:
        return None
    return np.clip(np.rint(c * (1 << SHIFT)), -MAX_COEF, MAX_COEF).astype(np.int64)


def _region_sse(sq: np.ndarray, side: int, grid: tuple[int, int]) -> np.ndarray:
    h, w = sq.shape
    pad = np.zeros((grid[0] * side, grid[1] * side))
    pad[:h, :w] = sq
    return pad.reshape(grid[0], side, grid[1], side).sum((1, 3))


def _flag_sets(flags: np.ndarray, base: int) -> np.ndarray:
    left = np.zeros_like(flags)
    left[:, 1:] = flags[:, :-1]
    up = np.zeros_like(flags)
    up[1:] = flags[:-1]
    return base + _FLAG + left + up


def _side_info(sink, plane: int, spec, fs: FilterState, grid):
    """Code (``spec``: (mode, clip index, coefficients, flags)) or decode (None) one plane's
    mode, its clipping, its coefficients (as differences from the plane's last ones) and its
    region flags; returns the spec."""
    base = min(plane, 1) * _SETS_PER_KIND
    st = fs.st
    mode, ci, coefs, flags = (None,) * 4 if spec is None else spec
    m = sink.code_ints(np.array([base + _MODE]), st, None if mode is None else np.array([mode]))
    mode = int(m[0])
    if mode not in (0, 1, 2):
        raise ValueError("bad loop filter mode in the stream")
    if mode == 0:
        return 0, 0, None, None
    c = sink.code_ints(np.array([base + _CLIP]), st, None if ci is None else np.array([ci]))
    ci = int(c[0])
    if not 0 <= ci < len(CLIPS):
        raise ValueError("bad loop filter clipping in the stream")
    sets = base + _COEF + np.arange(len(TAPS))
    diff = None if coefs is None else coefs - fs.prev[plane]
    coefs = sink.code_ints(sets, st, diff).astype(np.int64) + fs.prev[plane]
    if np.abs(coefs).max() > MAX_COEF:
        raise ValueError("loop filter coefficient out of range in the stream")
    fs.prev[plane], fs.prev_clip[plane] = coefs, ci
    if mode == 1:
        return 1, ci, coefs, None
    if flags is not None:  # coding: every context is known, so one call codes them all
        sink.code_ints(_flag_sets(flags, base).reshape(-1), st, flags.reshape(-1))
        return 2, ci, coefs, flags
    out = np.zeros(grid, np.int64)
    # decoding, one region at a time: each context needs the flags to the left and above
    for y in range(grid[0]):
        for x in range(grid[1]):
            s = base + _FLAG + (out[y, x - 1] if x else 0) + (out[y - 1, x] if y else 0)
            v = sink.code_ints(np.array([s]), st)
            if v[0] not in (0, 1):
                raise ValueError("bad loop filter flag in the stream")
            out[y, x] = v[0]
    return 2, ci, coefs, out


def code_plane(sink, rec: np.ndarray, plane: int, fs: FilterState, source=None, lam=0.0):
    """Filter one reconstructed plane (uint8; ``plane`` 0 = Y, 1 = U, 2 = V) of an inter
    frame: the encoder (``source``: the original plane) chooses and codes the filter at ``lam``
    per bit, the decoder (None) reads it; both return the filtered plane."""
    side = REGION if plane == 0 else REGION // 2
    grid = (-(-rec.shape[0] // side), -(-rec.shape[1] // side))
    spec = None if source is None else choose(rec, source, plane, fs, lam, side, grid)
    mode, ci, coefs, flags = _side_info(sink, plane, spec, fs, grid)
    if mode == 0:
        return rec
    return apply(rec, coefs, flags, side, CLIPS[ci])


def choose(plane, source, index: int, fs: FilterState, lam: float, side: int, grid):
    """The encoder's (mode, clip index, coefficients, flags) by squared error + ``lam`` x
    bits: the plane's last filter, and a least-squares fit at each clipping; the best of the
    fits refitted on the regions it improves, twice."""
    err = source.astype(np.int32) - plane
    src = source.astype(np.float64)
    base_region = _region_sse(err.astype(np.float64) ** 2, side, grid)

    def bits(spec) -> float:
        counter = CounterSinks()
        _side_info(counter["f"], index, spec, fs.copy(), grid)
        return counter.bits["f"]

    best = [(0, 0, None, None), float(base_region.sum()) + lam * bits((0, 0, None, None))]

    def trial(ci: int, coefs, diffs) -> np.ndarray:
        """Cost the filter whole and on the regions it improves; returns those regions."""
        new = np.clip(plane.astype(np.int32) + _correction(diffs, coefs), 0, 255)
        region = _region_sse((src - new) ** 2, side, grid)
        flags = (region < base_region).astype(np.int64)
        for spec, sse in (
            ((1, ci, coefs, None), float(region.sum())),
            ((2, ci, coefs, flags), float(np.where(flags, region, base_region).sum())),
        ):
            cost = sse + lam * bits(spec)
            if cost < best[1]:
                best[:] = [spec, cost]
        return flags

    if fs.prev[index].any():
        ci = int(fs.prev_clip[index])
        trial(ci, fs.prev[index], _differences(plane, CLIPS[ci]))
    everywhere = np.ones(plane.shape, bool)
    refine = None  # the fit that lowered the cost last, the best: (clipping, diffs, regions)
    for ci in CLIP_TRIALS:
        diffs = _differences(plane, CLIPS[ci])
        coefs = _fit(diffs, err, everywhere)
        if coefs is not None and coefs.any():
            before = best[1]
            flags = trial(ci, coefs, diffs)
            if best[1] < before:
                refine = (ci, diffs, flags)
    if refine is not None:
        ci, diffs, flags = refine
        for _ in range(2):
            if not flags.any():
                break
            coefs = _fit(diffs, err, _region_map(flags.astype(bool), plane.shape, side))
            if coefs is None or not coefs.any():
                break
            flags = trial(ci, coefs, diffs)
    return best[0]
