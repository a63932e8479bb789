"""Format 3 of the ``wavelet`` codec: a colour rotation, a dyadic CDF 9/7 wavelet, context coding.

::

    encode  RGB - 128 --3x3 rotation C (orthonormal, principal axes of training photos)-->
            3 planes --CDF 9/7 lifting (float), LEVELS dyadic levels--> LL + 3 details per level
            --uniform steps: quality step x per-subband weight / synthesis norm, dead zone-->
            integers --LL: DPCM; details: adaptive binary contexts from decoded neighbours
            (W, N, NW, NE, WW, NN), the parent (coarser level, same orientation) and, for chroma,
            the co-located luma--> one range-coded stream
    decode  the same contexts on decoded integers --dequantise (integer steps at 2^FRAC)-->
            integer inverse lifting (coefficients at 2^LIFT_SHIFT, floor shifts, int64)
            --integer inverse rotation--> uint8 pixels

Everything the decoder does after the range decoder is integer arithmetic, so pixels are the
same on every machine. The encoder's forward transform is float (the exact inverse, in float,
of the integer lifting's coefficients); only its rounding decisions depend on it.
"""

from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------------------------------------
# lifting

LIFT_SHIFT = 14
_ALPHA, _BETA, _GAMMA, _DELTA = (
    -1.586134342059924,
    -0.052980118572961,
    0.882911075530934,
    0.443506852043971,
)
LIFT = tuple(int(round(c * (1 << LIFT_SHIFT))) for c in (_ALPHA, _BETA, _GAMMA, _DELTA))
LIFT_F = tuple(c / (1 << LIFT_SHIFT) for c in LIFT)
FRAC = 8  # fractional bits of the decoder's fixed-point samples


def _neighbours_s(s: np.ndarray, nd: int) -> tuple[np.ndarray, np.ndarray]:
    """(s[i], s[i+1]) for the nd odd samples, whole-sample symmetric extension (axis 0)."""
    right = np.concatenate([s[1:], s[-1:]], axis=0)[:nd]
    return s[:nd], right


def _neighbours_d(d: np.ndarray, ns: int) -> tuple[np.ndarray, np.ndarray]:
    """(d[i-1], d[i]) for the ns even samples, symmetric extension (axis 0)."""
    left = np.concatenate([d[:1], d], axis=0)[:ns]
    right = np.concatenate([d, d[-1:]], axis=0)[:ns]
    return left, right


def _predict(d: np.ndarray, s: np.ndarray, c: float) -> np.ndarray:
    """d[i] + c (s[i] + s[i+1]) with the extension of ``_neighbours_s`` (no copies of s)."""
    nd, ns = d.shape[0], s.shape[0]
    out = np.empty_like(d)
    k = min(nd, ns - 1)
    out[:k] = d[:k] + c * (s[:k] + s[1 : k + 1])
    if k < nd:
        out[k:] = d[k:] + c * (s[k:nd] + s[k:nd])
    return out


def _update(s: np.ndarray, d: np.ndarray, c: float) -> np.ndarray:
    """s[i] + c (d[i-1] + d[i]) with the extension of ``_neighbours_d``."""
    ns, nd = s.shape[0], d.shape[0]
    out = np.empty_like(s)
    out[:1] = s[:1] + c * (d[:1] + d[:1])
    k = min(ns, nd)
    out[1:k] = s[1:k] + c * (d[: k - 1] + d[1:k])
    if ns > nd:
        out[nd:] = s[nd:] + c * (d[nd - 1 :] + d[nd - 1 :])
    return out


def split97(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float analysis along axis 0: (low, high), unnormalised lifting (the encoder's)."""
    s = x[0::2]
    d = x[1::2]
    if d.shape[0] == 0:
        return s, d
    a, b, g, dl = LIFT_F
    d = _predict(d, s, a)
    s = _update(s, d, b)
    d = _predict(d, s, g)
    s = _update(s, d, dl)
    return s, d


def merge97(s: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Float synthesis along axis 0 (inverse of split97)."""
    n = s.shape[0] + d.shape[0]
    out = np.empty((n,) + s.shape[1:], np.float64)
    if d.shape[0] == 0:
        out[0::2] = s
        return out
    a, b, g, dl = LIFT_F
    d0, d1 = _neighbours_d(d, s.shape[0])
    s = s - dl * (d0 + d1)
    s0, s1 = _neighbours_s(s, d.shape[0])
    d = d - g * (s0 + s1)
    d0, d1 = _neighbours_d(d, s.shape[0])
    s = s - b * (d0 + d1)
    s0, s1 = _neighbours_s(s, d.shape[0])
    d = d - a * (s0 + s1)
    out[0::2] = s
    out[1::2] = d
    return out


def _lift_int(c: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (c * (u + v) + (1 << (LIFT_SHIFT - 1))) >> LIFT_SHIFT


def merge97_int(s: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Integer synthesis along axis 0 on int64: each lifting step adds floor((c (u + v) +
    2^13) / 2^14) with the integer coefficient c (LIFT)."""
    n = s.shape[0] + d.shape[0]
    out = np.empty((n,) + s.shape[1:], np.int64)
    if d.shape[0] == 0:
        out[0::2] = s
        return out
    a, b, g, dl = LIFT
    d0, d1 = _neighbours_d(d, s.shape[0])
    s = s - _lift_int(dl, d0, d1)
    s0, s1 = _neighbours_s(s, d.shape[0])
    d = d - _lift_int(g, s0, s1)
    d0, d1 = _neighbours_d(d, s.shape[0])
    s = s - _lift_int(b, d0, d1)
    s0, s1 = _neighbours_s(s, d.shape[0])
    d = d - _lift_int(a, s0, s1)
    out[0::2] = s
    out[1::2] = d
    return out


def levels_for(h: int, w: int, max_levels: int) -> int:
    """Dyadic levels for an h x w plane: while the low band stays at least 4 x 4 (at most max)."""
    n = 0
    while n < max_levels and min(h, w) >= 8:
        h, w = (h + 1) // 2, (w + 1) // 2
        n += 1
    return n


def analysis(x: np.ndarray, levels: int) -> list:
    """[LL, (HL, LH, HH) of the coarsest level, ..., of level 1] (HL: high horizontally)."""
    bands = []
    ll = x
    for _ in range(levels):
        lo, hi = split97(ll.T)  # along the width
        lo, hi = lo.T, hi.T
        ll_, lh = split97(lo)
        hl, hh = split97(hi)
        bands.append((hl, lh, hh))
        ll = ll_
    return [ll] + bands[::-1]


def synthesis(bands: list) -> np.ndarray:
    ll = bands[0]
    for hl, lh, hh in bands[1:]:
        lo = merge97(ll, lh)
        hi = merge97(hl, hh)
        ll = merge97(lo.T, hi.T).T
    return ll


def synthesis_int(bands: list) -> np.ndarray:
    ll = bands[0]
    for hl, lh, hh in bands[1:]:
        lo = merge97_int(ll, lh)
        hi = merge97_int(hl, hh)
        ll = merge97_int(lo.T, hi.T).T
    return ll


def band_shapes(h: int, w: int, levels: int) -> list:
    """Shapes in the order of ``analysis``: LL, then (HL, LH, HH) coarse to fine."""
    out = []
    for _ in range(levels):
        wl, wh = (w + 1) // 2, w // 2
        hl_, hh_ = (h + 1) // 2, h // 2
        out.append(((hl_, wh), (hh_, wl), (hh_, wh)))
        h, w = hl_, wl
    return [(h, w)] + out[::-1]


# ---------------------------------------------------------------------------------------------
# colour, steps, contexts (chosen on the validation photos of ../shared/data/train, never Kodak)

MAX_LEVELS = 6
COLOUR_SHIFT = 12
# Rows: principal axes of the RGB pixels of 80 training photos (luma-like, blue-red,
# green-magenta), at 2^-12; the decoder applies the transpose (an orthonormal matrix's inverse).
COLOUR = ((2297, 2382, 2414), (2810, 295, -2965), (1898, -3319, 1469))
COLOUR_INV = tuple(zip(*COLOUR, strict=True))
# Quality steps (pixel units at 2^-4), qualities 1..8.
QSTEP16 = (3200, 2080, 1360, 888, 580, 378, 246, 160)
STEP_SHIFT = 16
# Encoder only: |v| / step + 0.5 - dead zone, rounded down, the dead zone chosen by how many of
# the 8 neighbours and the parent are nonzero (0, 1, 2, 3 or more).
DEADZONES = (0.6, 0.45, 0.35, 0.3)  # the last is the narrowest (below 0.5)
# Decoder: a nonzero detail value q reconstructs at sign(q) (|q| + REC16 / 16) step (REC16_ONE
# for |q| = 1).
REC16 = 4
REC16_ONE = 4
RATE = 64  # adaptation limit of the context states
CTX_W = (4, 1, 1)  # weights of |W| + |N|, |NW| + |NE|, |WW| + |NN|
CTX_WN = ((2, 6), (6, 2), (4, 4))  # weights of |W| and |N| by orientation (HL, LH, HH)
PARENT_W, LUMA_W, SIBLING_W = 1, 1, 1
EDGES = (1, 2, 3, 4, 6, 8, 11, 15, 20, 28, 40, 56, 80, 120)
LL_EDGES = (1, 2, 4, 8, 16, 32, 64)
LEVEL_CLASSES = 2  # detail classes: colour x min(level, LEVEL_CLASSES) x ORIENT_CLASS
MAX_VALUE = (
    1 << 30
)  # decoded coefficients are clipped to this (fixed point), valid ones never reach it
COLOUR_MUL16 = (16, 18, 18)  # step multipliers of the three colour planes at 2^-4
LL_WEIGHT16 = 16  # low band step multiplier at 2^-4
LEVEL_WEIGHT = 0.93  # step x LEVEL_WEIGHT^(level - 1): coarser levels quantised a little finer

# Step multipliers at 2^-(STEP_SHIFT - FRAC + 4): DETAIL_MUL[level - 1][orientation] =
# LEVEL_WEIGHT^(level - 1) / (synthesis norm of the band), LL_MUL[levels] = 1 / (norm of the low
# band after that many levels); written out so the decoder uses integers only (``step_table``
# recomputes them in float, a test checks they agree).
DETAIL_MUL = (
    (1036875, 1036875, 1331868),
    (739099, 739099, 1008216),
    (496548, 496548, 660106),
    (342593, 342593, 449215),
    (239718, 239718, 313016),
    (168449, 168449, 219712),
)
LL_MUL = (1048576, 807220, 582597, 431860, 324829, 245417, 185639)


def _norms(levels: int, size: int = 1024) -> tuple[float, list]:
    """Synthesis norms (float, for the tables only): the low band's and [(HL, LH, HH)] by level."""
    shapes = band_shapes(size, size, levels)

    def norm(li: int, o: int) -> float:
        bands = [np.zeros(shapes[0])] + [tuple(np.zeros(s) for s in t) for t in shapes[1:]]
        if li == 0:
            bands[0][shapes[0][0] // 2, shapes[0][1] // 2] = 1
        else:
            s = shapes[li][o]
            bands[li][o][s[0] // 2, s[1] // 2] = 1
        return float(np.sqrt(np.square(synthesis(bands)).sum()))

    details = [[norm(li, o) for o in range(3)] for li in range(levels, 0, -1)]
    return norm(0, 0), details


def step_table() -> tuple[tuple, tuple]:
    """(DETAIL_MUL, LL_MUL) from the float norms (how the literals were made)."""
    scale = float(1 << (STEP_SHIFT + FRAC - 4))
    ll = [int(round(scale))]
    for n in range(1, MAX_LEVELS + 1):
        ll.append(int(round(scale / _norms(n)[0])))
    det = _norms(MAX_LEVELS)[1]
    detail = tuple(
        tuple(int(round(scale * LEVEL_WEIGHT**lev / det[lev][o])) for o in range(3))
        for lev in range(MAX_LEVELS)
    )
    return detail, tuple(ll)


def steps(quality_index: int, levels: int, colour: int = 0) -> tuple[int, list]:
    """Integer steps at 2^-FRAC of one colour plane: (low band, [(HL, LH, HH)] in ``analysis``
    order)."""
    q = QSTEP16[quality_index] * COLOUR_MUL16[colour]
    shift = STEP_SHIFT + 4
    ll = max(1, (q * LL_MUL[levels] * LL_WEIGHT16) >> (shift + 4))
    det = [
        tuple(max(1, (q * DETAIL_MUL[lev - 1][o]) >> shift) for o in range(3))
        for lev in range(levels, 0, -1)
    ]
    return ll, det


# ---------------------------------------------------------------------------------------------
# context coding

ORIENT_CLASSES = 2
ORIENT_CLASS = (0, 0, 1)
_EMPTY = np.zeros(0, np.int32)


def _sign0() -> int:
    """First sign context (after every set's 64)."""
    return (3 * (len(LL_EDGES) + 1) + 3 * LEVEL_CLASSES * ORIENT_CLASSES * (len(EDGES) + 1)) * 64


def n_states() -> int:
    return _sign0() + 9 * 12


def _fit(a: np.ndarray, shape) -> np.ndarray:
    """|a| (int32) cropped / zero-padded to ``shape`` (sibling bands differ by at most a row or
    column). Sums of these wrap on overflow, which valid streams never reach: either way
    encoder and decoder compute the same contexts."""
    if a.shape == tuple(shape):
        return np.abs(a)
    out = np.zeros(shape, np.int32)
    a = np.abs(a[: shape[0], : shape[1]])
    out[: a.shape[0], : a.shape[1]] = a
    return out


def _band_inputs(q: list, c: int, li: int, o: int, levels: int, shape):
    """(parent map, co-located map, kernel parameters) of band (colour c, index li, orientation
    o): integer functions of bands coded before it (coarser levels; luma; earlier siblings)."""
    lev = levels + 1 - li
    parent = q[c][li - 1][o] if li > 1 else _EMPTY  # the kernel takes |parent|
    extra = None
    if c > 0 and LUMA_W:
        extra = _fit(q[0][li][o], shape) * np.int32(LUMA_W)
    for s in range(o):
        sib = _fit(q[c][li][s], shape) * np.int32(SIBLING_W)
        extra = sib if extra is None else extra + sib
    nb = len(EDGES) + 1
    cls = (c * LEVEL_CLASSES + min(lev, LEVEL_CLASSES) - 1) * ORIENT_CLASSES + ORIENT_CLASS[o]
    aw, an = CTX_WN[o]
    par = [0, aw, an, *CTX_W[1:], PARENT_W if li > 1 else 0, 1, nb]
    par += [3 * (len(LL_EDGES) + 1) + cls * nb]
    par += [_sign0() + 27 + 9 * (c * 3 + o), RATE, *EDGES]
    lum = _EMPTY if extra is None else extra
    return parent, lum, par


def _ll_par(c: int) -> list:
    nb = len(LL_EDGES) + 1
    return [1, 0, 0, 0, 0, 0, 0, nb, c * nb, _sign0() + 9 * c, RATE, *LL_EDGES]


def code_order(levels: int):
    """(colour, band index, orientation) of every detail band in coding order."""
    for li in range(1, levels + 1):
        for c in range(3):
            for o in range(3):
                yield c, li, o


def encode_symbols(q: list, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Symbols and bank indexes of every band ([colour][LL, (HL, LH, HH)...] integers)."""
    from ..entropy import adaptive

    st = adaptive.states(n_states())
    syms, idxs = [], []
    for c in range(3):
        s, i = adaptive.wav_band_symbols(q[c][0], _EMPTY, _EMPTY, _ll_par(c), st)
        syms.append(s), idxs.append(i)
    for c, li, o in code_order(levels):
        parent, lum, par = _band_inputs(q, c, li, o, levels, q[c][li][o].shape)
        s, i = adaptive.wav_band_symbols(q[c][li][o], parent, lum, par, st)
        syms.append(s), idxs.append(i)
    return np.concatenate(syms), np.concatenate(idxs)


def decode_bands(data: bytes, h: int, w: int, levels: int) -> list:
    from ..entropy import adaptive, rangecoder

    shapes = band_shapes(h, w, levels)
    dec = rangecoder.RangeDecoder(data)
    st = adaptive.states(n_states())
    q = [[None] + [[None, None, None] for _ in range(levels)] for _ in range(3)]
    for c in range(3):
        q[c][0] = adaptive.decode_wav_band(dec, shapes[0], _EMPTY, _EMPTY, _ll_par(c), st)
    for c, li, o in code_order(levels):
        parent, lum, par = _band_inputs(q, c, li, o, levels, shapes[li][o])
        q[c][li][o] = adaptive.decode_wav_band(dec, shapes[li][o], parent, lum, par, st)
    return q


# ---------------------------------------------------------------------------------------------
# image


def _colour_forward() -> np.ndarray:
    inv = np.array(COLOUR_INV, np.float64) / (1 << COLOUR_SHIFT)
    return np.linalg.inv(inv)


_RING = ((0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2))  # 8 neighbours, padded


def quantise(img: np.ndarray, quality_index: int) -> tuple[list, int]:
    """The encoder: uint8 RGB h x w x 3 -> ([colour][LL, (HL, LH, HH) coarse to fine], levels)."""
    h, w = img.shape[:2]
    levels = levels_for(h, w, MAX_LEVELS)
    x = img.astype(np.float32) - np.float32(128.0)
    planes = np.ascontiguousarray(np.moveaxis(x @ _colour_forward().T.astype(np.float32), 2, 0))
    unit = float(1 << FRAC)
    out = []
    for c in range(3):
        ll_step, det_steps = steps(quality_index, levels, c)
        bands = analysis(planes[c], levels)
        qb = [np.round(bands[0] * unit / ll_step).astype(np.int32)]
        for li in range(1, levels + 1):
            t = []
            for o in range(3):
                v = bands[li][o] * unit / det_steps[li - 1][o]
                a = np.abs(v)
                # the dead zone by the number of nonzero neighbours (8) and parent after a
                # first rounding with the narrowest one: wider around isolated values
                # (only values that are nonzero after it can change)
                a5 = a + 0.5
                m = np.floor(a5 - DEADZONES[-1])  # >= 0: the narrowest dead zone is below 0.5
                i, j = np.nonzero(m)
                if i.size:
                    nz = np.pad(m > 0, 1)
                    n = np.zeros(i.size, np.int32)
                    for di, dj in _RING:
                        n += nz[i + di, j + dj]
                    if li > 1:
                        par = qb[li - 1][o]
                        pi = np.minimum(i // 2, par.shape[0] - 1)
                        n += par[pi, np.minimum(j // 2, par.shape[1] - 1)] != 0
                    dz = np.array(DEADZONES, np.float32)[np.minimum(n, len(DEADZONES) - 1)]
                    m[i, j] = np.floor(np.maximum(a5[i, j] - dz, 0.0))
                t.append(np.copysign(m, v).astype(np.int32))
            qb.append(t)
        out.append(qb)
    return out, levels


def reconstruct(q: list, h: int, w: int, levels: int, quality_index: int) -> np.ndarray:
    """The decoder's integer synthesis: bands -> uint8 RGB (int64 arithmetic only)."""
    planes = []
    for c in range(3):
        ll_step, det_steps = steps(quality_index, levels, c)
        bands = [np.clip(q[c][0].astype(np.int64) * ll_step, -MAX_VALUE, MAX_VALUE)]
        for li in range(1, levels + 1):
            t = []
            for o in range(3):
                v = q[c][li][o].astype(np.int64)
                a = np.abs(v)
                off = np.where(a == 1, REC16_ONE, REC16)
                r = np.where(v == 0, 0, np.sign(v) * ((16 * a + off) * det_steps[li - 1][o] >> 4))
                t.append(np.clip(r, -MAX_VALUE, MAX_VALUE))
            bands.append(tuple(t))
        planes.append(synthesis_int(bands))
    inv = np.array(COLOUR_INV, np.int64)
    shift = FRAC + COLOUR_SHIFT
    out = np.empty((h, w, 3), np.uint8)
    for k in range(3):
        v = inv[k, 0] * planes[0] + inv[k, 1] * planes[1] + inv[k, 2] * planes[2]
        out[..., k] = np.clip(((v + (1 << (shift - 1))) >> shift) + 128, 0, 255)
    return out


def encode(img: np.ndarray, quality_index: int) -> tuple[bytes, list, int]:
    """(range-coded stream, quantised bands, levels) of a uint8 RGB image."""
    from ..entropy import adaptive, rangecoder

    q, levels = quantise(img, quality_index)
    sym, idx = encode_symbols(q, levels)
    enc = rangecoder.RangeEncoder()
    enc.encode(sym, idx, adaptive.bank())
    return enc.finish(), q, levels


# ---------------------------------------------------------------------------------------------
# the learned post-filter (integer)

FILTER_FILE = "wavelet-filter.safetensors"
FILTER_TILE = 256  # rows per tile
FILTER_HALO = 4  # rows of context (three 3x3 layers need 3)
FILTER_IN_SHIFT = 4  # input (pixel - 128) / 64 at 2^10: (pixel - 128) << 4
FILTER_GAIN_SHIFT = 12  # added pixels = floor((residual at 2^10 x gain + 2^11) / 2^12)


class PostFilter:
    """A 3-layer residual CNN on decoded pixels as an ``IntNet`` (exact integers), with a
    per-quality gain (at 2^-8; 0: off)."""

    def __init__(self, net, gains: tuple[int, ...], sha256: str):
        self.net, self.gains, self.sha256 = net, gains, sha256

    @classmethod
    def from_arrays(cls, arrays: dict, sha256: str) -> PostFilter:
        from ..compress.intnet import IntNet

        net = IntNet.from_arrays(arrays, "filter.")
        gain = tuple(int(g) for g in np.asarray(arrays["filter.gains"]).reshape(-1))
        if len(gain) != len(QSTEP16) or not all(0 <= g < 1 << 12 for g in gain):
            raise ValueError("bad post-filter gains")
        if net.layers[0].cin != 3 or net.layers[-1].cout != 3:
            raise ValueError("the post-filter must map 3 channels to 3")
        return cls(net, gain, sha256)

    def to_arrays(self) -> dict:
        out = self.net.to_arrays("filter.")
        out["filter.gains"] = np.array(self.gains, np.int64)
        return out

    def __call__(self, img: np.ndarray, quality_index: int) -> np.ndarray:
        import torch

        gain = self.gains[quality_index]
        if gain == 0:
            return img
        h = img.shape[0]
        out = np.empty_like(img)
        for top in range(0, h, FILTER_TILE):
            lo, hi = max(0, top - FILTER_HALO), min(h, top + FILTER_TILE + FILTER_HALO)
            x = torch.from_numpy(img[lo:hi].astype(np.float64)).permute(2, 0, 1)[None]
            r = self.net((x - 128.0) * float(1 << FILTER_IN_SHIFT))
            add = torch.floor(
                (r * gain + float(1 << (FILTER_GAIN_SHIFT - 1))) / (1 << FILTER_GAIN_SHIFT)
            )
            y = (x + add).clamp_(0, 255)[0].permute(1, 2, 0).numpy().astype(np.uint8)
            n = min(FILTER_TILE, h - top)
            out[top : top + n] = y[top - lo : top - lo + n]
        return out


_FILTERS: dict = {}


def load_filter(folder=None) -> PostFilter | None:
    """The shipped post-filter (cached per file and modification time); None when absent."""
    from ..codecs.weights import weights_dir
    from ..models.frozen import sha256_file

    path = (weights_dir() if folder is None else folder) / FILTER_FILE
    if not path.is_file():
        return None
    key = (str(path), path.stat().st_mtime)
    if key not in _FILTERS:
        from safetensors.numpy import load_file

        _FILTERS[key] = PostFilter.from_arrays(load_file(str(path)), sha256_file(path))
    return _FILTERS[key]
