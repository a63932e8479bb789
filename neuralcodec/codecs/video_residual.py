"""The learned residual coder of ``elic-ip``'s inter frames: a learned block transform, a
discrete hyperprior (one class per block) and frozen learned tables, decoded in integers.

::

    residual plane (current - prediction, int) --8x8 blocks--> coefficients c = B^T r
        (B: the KLT of prediction residuals, learned from training clips, stored as int32
         B * 2**12) --quantise (step of the quality, encoder rounding offset)--> q (int)
    class of a block = min(9, bit length of sum |q|)   (0: the block has no coefficients)
    classes: coded row by row, table chosen by the largest class of the three blocks above
    q of blocks with class > 0: one call, table = (plane kind, class, coefficient index)
    decoder: r = (B_int (q * step16) + 2**15) >> 16      (int64, exact on every machine)

With ``elic-ip`` tools bit 64 the coefficients are coded instead with adaptive binary contexts
(``code_plane_adaptive``, below; no classes, no frozen tables), the basis and steps unchanged.

``fit`` learns everything from residual samples (``scripts/train_video_residual.py``): the
basis by eigen-decomposition of the residual blocks' covariance, the tables from the quantised
coefficients' histograms at every quality (with a small Laplace prior per class so rare
combinations keep sensible probabilities). The weights are a few hundred kB of integers
(``weights/elic-ip.safetensors``); nothing is derived from floats at decode time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neuralcodec.entropy import adaptive, rangecoder
from neuralcodec.entropy.cdf import counts_to_quantized_cdf, tables_from_cdfs
from neuralcodec.entropy.tables import PRECISION, CodingTables
from neuralcodec.kernels import _adaptive

TB = 8  # transform block side
NC = TB * TB
CLASSES = 10
COEF_RANGE = 40  # |q| coded in the tables; larger values escape
BASIS_BITS = 12
STEP_BITS = 4  # quantiser steps are stored in 1/16
Q_LIMIT = 1 << 20  # decoded coefficients are clipped to this magnitude (keeps the sums exact)
MAX_STEP = 1 << 14
# the quantiser steps a P frame may pick (1/16 units): round(2 ** (4 + i / 4)), i = 0..40
STEP_GRID = (
    16, 19, 23, 27, 32, 38, 45, 54, 64, 76, 91, 108, 128, 152, 181, 215, 256, 304, 362, 431,
    512, 609, 724, 861, 1024, 1218, 1448, 1722, 2048, 2435, 2896, 3444, 4096, 4871, 5793, 6889,
    8192, 9742, 11585, 13777, 16384,
)  # fmt: skip
KINDS = ("luma", "chroma")


def to_blocks(plane: np.ndarray) -> np.ndarray:
    h, w = plane.shape
    return (
        plane.reshape(h // TB, TB, w // TB, TB).transpose(0, 2, 1, 3).reshape(h // TB, w // TB, NC)
    )


def from_blocks(blocks: np.ndarray) -> np.ndarray:
    nby, nbx = blocks.shape[:2]
    return blocks.reshape(nby, nbx, TB, TB).transpose(0, 2, 1, 3).reshape(nby * TB, nbx * TB)


def block_classes(q: np.ndarray) -> np.ndarray:
    """Class of every block of quantised coefficients ``q`` (..., 64): 0 for an empty block,
    else the bit length of the sum of magnitudes, at most ``CLASSES - 1``."""
    s = np.abs(q.astype(np.int64)).sum(-1)
    bits = np.zeros(s.shape, np.int64)
    for b in range(1, CLASSES):
        bits += s >= (1 << (b - 1))
    return bits


def class_context(above: np.ndarray | None, nbx: int) -> np.ndarray:
    """Largest class among the above-left, above and above-right blocks (0 on the first row)."""
    if above is None:
        return np.zeros(nbx, np.int64)
    p = np.pad(above, 1)
    return np.maximum(np.maximum(p[:-2], p[1:-1]), p[2:])


def class_context_map(cls: np.ndarray) -> np.ndarray:
    """``class_context`` of every block of a class map at once (row 0: context 0)."""
    p = np.pad(cls, ((1, 0), (1, 1)))[:-1]
    out = np.maximum(np.maximum(p[:, :-2], p[:, 1:-1]), p[:, 2:])
    out[0] = 0
    return out


@dataclass
class ResidualModel:
    basis: dict[str, np.ndarray]  # kind -> int64 (64 pixels, 64 coefficients), scaled 2**12
    class_tables: CodingTables  # index kind * CLASSES + context
    coef_tables: CodingTables  # index (kind * CLASSES + class) * 64 + coefficient
    steps: np.ndarray  # int64 quantiser step per quality, in 1/16
    rounding: float  # encoder rounding offset (0.5 = plain rounding)
    meta: dict

    # -- encoder ------------------------------------------------------------------------------
    def quantise(self, residual: np.ndarray, kind: str, step: int) -> np.ndarray:
        """Coefficients of a residual plane (sides multiples of 8) quantised with ``step``
        (1/16 units; encoder only)."""
        b = self.basis[kind].astype(np.float64) / (1 << BASIS_BITS)
        c = to_blocks(residual.astype(np.float64)) @ b
        inv = (1 << STEP_BITS) / float(step)
        return (np.sign(c) * np.floor(np.abs(c) * inv + self.rounding)).astype(np.int32)

    def bit_costs(self) -> tuple[np.ndarray, np.ndarray]:
        """Code lengths (bits, float; encoder only) under the frozen tables: of every
        coefficient value -COEF_RANGE..COEF_RANGE per (kind x class, coefficient), an escaped
        value costing its escape symbol plus 12 bits, and of every class per (kind x context)."""
        if "_bits" not in self.__dict__:

            def bits(t: CodingTables) -> np.ndarray:
                c = t.cdfs.astype(np.float64)
                freq = np.maximum(c[:, 1:] - c[:, :-1], 1)
                return t.precision - np.log2(freq)

            cb = bits(self.coef_tables)[:, : 2 * COEF_RANGE + 2]
            cb[:, -1] += 12
            coef = cb.reshape(len(KINDS) * CLASSES, NC, 2 * COEF_RANGE + 2)
            cls = bits(self.class_tables)[:, :CLASSES]
            self.__dict__["_bits"] = (coef, cls)
        return self.__dict__["_bits"]

    def quantise_rd(self, residual: np.ndarray, kind: str, step: int, lam: float) -> np.ndarray:
        """Rate-distortion optimised quantisation (encoder only): every coefficient takes the
        level among (rounded, rounded - 1, 0) that minimises squared error + ``lam`` x step**2
        x its code length under its block's class tables, then every block is emptied where its
        squared error with no coefficients plus the cost of class 0 is lower; twice, since the
        classes follow the levels."""
        b = self.basis[kind].astype(np.float64) / (1 << BASIS_BITS)
        c = to_blocks(residual.astype(np.float64)) @ b
        d = float(step) / (1 << STEP_BITS)
        a = np.abs(c) / d  # in steps
        sign = np.where(c < 0, -1, 1)
        k = KINDS.index(kind)
        coef_bits, cls_bits = self.bit_costs()
        q0 = np.floor(a + 0.5).astype(np.int64)
        q = np.floor(a + self.rounding).astype(np.int64)
        cands = [q0, np.maximum(q0 - 1, 0), np.zeros_like(q0)]
        j = np.arange(NC)
        zero_cost = (a * a).sum(-1)
        for _ in range(2):
            cls = block_classes(q)
            ctx = class_context_map(cls) + k * CLASSES
            row = (k * CLASSES + np.maximum(cls, 1))[..., None]
            best, best_j = None, None
            for v in cands:
                sym = np.where(v <= COEF_RANGE, sign * v + COEF_RANGE, 2 * COEF_RANGE + 1)
                jv = (a - v) ** 2 + lam * coef_bits[row, j, sym]
                if best is None:
                    best, best_j = v.copy(), jv
                else:
                    better = jv < best_j
                    best = np.where(better, v, best)
                    best_j = np.where(better, jv, best_j)
            new_cls = block_classes(best)
            keep_cost = (
                best_j.sum(-1)
                + lam * np.take_along_axis(cls_bits[ctx], new_cls[..., None], -1)[..., 0]
            )
            empty = zero_cost + lam * cls_bits[ctx, 0] <= keep_cost
            best[empty] = 0
            q = best
        return (sign * q).astype(np.int32)

    # -- both sides ---------------------------------------------------------------------------
    def dequantise(self, q: np.ndarray, kind: str, step: int) -> np.ndarray:
        """The residual plane the decoder rebuilds from ``q`` (nby, nbx, 64): exact integers."""
        # |q * step| < 2**35 and |basis| <= 2**12: each of the 64 products and every partial sum
        # stays below 2**53, so the float64 product is exact whatever the summation order
        val = np.clip(q, -Q_LIMIT, Q_LIMIT).astype(np.float64) * float(step)
        shift = BASIS_BITS + STEP_BITS
        r = (val @ self._basis_f64(kind)).astype(np.int64)
        r = (r + (1 << (shift - 1))) >> shift
        return from_blocks(r).astype(np.int32)

    def _basis_f64(self, kind: str) -> np.ndarray:
        cache = self.__dict__.setdefault("_f64", {})
        if kind not in cache:
            cache[kind] = np.ascontiguousarray(self.basis[kind].T.astype(np.float64))
        return cache[kind]

    def prepared(self) -> tuple:
        """The class and coefficient tables prepared once for the range coder."""
        if "_prepared" not in self.__dict__:
            self.__dict__["_prepared"] = (
                rangecoder.prepare(self.class_tables),
                rangecoder.prepare(self.coef_tables),
            )
        return self.__dict__["_prepared"]

    def code_plane(self, sink, kind: str, shape: tuple[int, int], q: np.ndarray | None):
        """Code (``q`` given) or decode (``q`` None) a plane's quantised coefficients."""
        nby, nbx = shape
        k = KINDS.index(kind)
        class_tables, coef_tables = self.prepared()
        classes = None if q is None else block_classes(q)
        out_cls = np.zeros((nby, nbx), np.int64)
        above = None
        for by in range(nby):
            ctx = class_context(above, nbx) + k * CLASSES
            vals = None if classes is None else classes[by]
            got = sink.code(ctx.astype(np.int32), class_tables, vals).astype(np.int64)
            if got.min() < 0 or got.max() >= CLASSES:
                raise ValueError("block class out of range in the stream")
            out_cls[by] = got
            above = got
        mask = out_cls > 0
        idx = ((k * CLASSES + out_cls[mask]) * NC)[:, None] + np.arange(NC)[None, :]
        vals = None if q is None else q[mask]
        coefs = np.zeros((nby, nbx, NC), np.int32)
        if idx.size:
            coefs[mask] = sink.code(idx.astype(np.int32), coef_tables, vals).reshape(-1, NC)
        return coefs


# ----------------------------------------------------------------------------- adaptive coding
# tools bit 64 of elic-ip: the coefficients coded with adaptive binary contexts (CABAC-like;
# kernels/_adaptive.c, resid_encode, documents the binarisation and the contexts) instead of the
# block classes and frozen tables. The states are carried from inter frame to inter frame of a
# GOP; each (step class, plane kind) has its own RES_SET contexts.

_RES = _adaptive.resid_sizes()
RES_SET = _RES["set"]
RES_HINTS = _RES["hints"]
RES_STEP_CLASSES = 5
RES_CLASS_STEPS = 8  # STEP_GRID indexes per step class
_PB = np.array(
    [j if j < 8 else 8 + (j - 8) // 4 if j < 24 else 12 + (j - 24) // 8 for j in range(NC)]
)
_PG = np.array([0] + [1] * 3 + [2] * 12 + [3] * 48)


def residual_states() -> np.ndarray:
    """Fresh context states of the adaptive residual coder (every step class and kind)."""
    return adaptive.states(RES_STEP_CLASSES * len(KINDS) * RES_SET)


def residual_base(kind: str, si: int) -> int:
    """Offset in the states of the contexts of plane ``kind`` at ``STEP_GRID[si]``."""
    sc = min(si // RES_CLASS_STEPS, RES_STEP_CLASSES - 1)
    return (sc * len(KINDS) + KINDS.index(kind)) * RES_SET


def prediction_hints(pred: np.ndarray, step: int) -> np.ndarray:
    """The class (0..3) of every 8x8 block of a prediction plane (sides multiples of 8) that
    conditions its coded-block flag: t = sum of |horizontal| + |vertical| differences inside
    the block (the last row and column against themselves), r = t * 16 // step (``step`` in
    1/16), class = clamp(bit length of (r + 1) - 2, 0, 3). Integers only."""
    p = pred.astype(np.int64)
    g = np.zeros_like(p)
    g[:, :-1] += np.abs(p[:, 1:] - p[:, :-1])
    g[:-1] += np.abs(p[1:] - p[:-1])
    h, w = p.shape
    t = g.reshape(h // TB, TB, w // TB, TB).sum(axis=(1, 3))
    r = (t << STEP_BITS) // int(step) + 1
    bits = np.zeros(r.shape, np.int64)
    for k in range(1, 6):
        bits += r >= (1 << k)
    return np.ascontiguousarray(np.clip(bits - 1, 0, RES_HINTS - 1), dtype=np.int32)


def _adaptive_symbols(q, hints, states, base):
    nby, nbx = q.shape[:2]
    qc = np.ascontiguousarray(np.clip(q, -Q_LIMIT, Q_LIMIT), dtype=np.int32)
    cap = 8 * qc.size + 64
    saved = states.copy()
    while True:
        sym = np.empty(cap, np.int32)
        idx = np.empty(cap, np.int32)
        n = _adaptive.resid_encode(qc, hints, nby, nbx, base, states, sym, idx)
        if n >= 0:
            return qc, sym[:n], idx[:n]
        states[:] = saved
        cap *= 8


def code_plane_adaptive(sink, shape: tuple[int, int], q, hints, states: np.ndarray, base: int):
    """Code (``q`` given) or decode (``q`` None) a plane's quantised coefficients (nby, nbx, 64)
    with the adaptive contexts ``states[base : base + RES_SET]`` (updated in place) and the
    blocks' ``prediction_hints``."""
    nby, nbx = shape
    hints = np.ascontiguousarray(hints, dtype=np.int32)
    if sink.decoding:
        out = np.zeros((nby, nbx, NC), np.int32)
        _adaptive.resid_decode(
            sink.decoder.native, adaptive.bank(), hints, nby, nbx, base, states, out
        )
        return out
    qc, sym, idx = _adaptive_symbols(q, hints, states, base)
    if sym.size:
        sink.encoder.encode(sym, idx, adaptive.bank())
    return qc


def adaptive_plane_bits(q: np.ndarray, hints, states: np.ndarray, base: int) -> float:
    """Ideal code length (bits) of ``code_plane_adaptive`` of ``q`` (``states`` updated as
    coding would): for the encoder's decisions and measurements."""
    _, sym, idx = _adaptive_symbols(q, np.ascontiguousarray(hints, dtype=np.int32), states, base)
    return float(adaptive._cost_table()[idx, sym].sum())


def _shift(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """x of the block above (dy = 1) or to the left (dx = 1); zeros outside the plane."""
    out = np.zeros_like(x)
    out[dy:, dx:] = x[: x.shape[0] - dy, : x.shape[1] - dx]
    return out


def quantise_rd_adaptive(
    model: ResidualModel, residual: np.ndarray, kind: str, step: int, lam: float,
    states: np.ndarray, base: int, hints: np.ndarray, start: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    """``quantise_rd`` at the adaptive coder's code lengths (encoder only): each coefficient
    takes the level among (rounded, rounded - 1, 0) with the least squared error + ``lam`` x
    step**2 x bits, the bits from the present ``states`` with every context taken from the
    previous pass's levels (``start``, else plain rounding with the model's offset); zeros past
    a block's last coefficient are free; then blocks are emptied where that costs less. Twice."""
    b = model.basis[kind].astype(np.float64) / (1 << BASIS_BITS)
    c = to_blocks(residual.astype(np.float64)) @ b
    d = float(step) / (1 << STEP_BITS)
    a = np.abs(c) / d
    sign = np.where(c < 0, -1, 1)
    cost = adaptive._cost_table()
    tab = (states[base : base + RES_SET] & 0xFFFF) >> adaptive.BANK_SHIFT
    c0, c1 = cost[tab, 0], cost[tab, 1]
    rem_ctx = _RES["rem"] + np.array([[g * 8 + min(i, 7) for i in range(26)] for g in range(2)])
    # exp-Golomb prefix cost of n ones then a zero, per group g: pre[g, n]
    ones = np.concatenate([np.zeros((2, 1)), np.cumsum(c1[rem_ctx], axis=1)], axis=1)[:, :-1]
    pre = ones + c0[rem_ctx]
    q0 = np.floor(a + 0.5).astype(np.int64)
    q = (
        np.abs(start).astype(np.int64)
        if start is not None
        else np.floor(a + model.rounding).astype(np.int64)
    )
    cands = [q0, np.maximum(q0 - 1, 0), np.zeros_like(q0)]
    j = np.arange(NC)
    pb, pg = _PB[None, None], _PG[None, None]
    zero_cost = (a * a).sum(-1)
    for _ in range(2):
        nz = q > 0
        big = q > 1
        nzl, nza = _shift(nz, 0, 1), _shift(nz, 1, 0)
        nb = nzl.astype(np.int64) + nza
        prev = np.zeros_like(q)
        prev[..., 1:] += nz[..., :-1]
        prev[..., 2:] += nz[..., :-2]
        sig_ctx = _RES["sig"] + (pb * 3 + nb) * 3 + prev
        last = np.where(nz.any(-1), NC - 1 - np.argmax(nz[..., ::-1], axis=-1), -1)
        lastl, lasta = _shift(last + 1, 0, 1) - 1, _shift(last + 1, 1, 0) - 1
        nl = (lastl[..., None] > j).astype(np.int64) + (lasta[..., None] > j)
        last0 = c0[_RES["last"] + pb * 3 + nl]
        c1n = np.minimum(np.cumsum(big, -1) - big, 2)
        nbm = _shift(big, 0, 1).astype(np.int64) + _shift(big, 1, 0)
        gt1_ctx = _RES["gt1"] + (pg * 3 + c1n) * 3 + nbm
        c2n = np.minimum(np.cumsum(q > 2, -1) - (q > 2), 2)
        gt2_ctx = _RES["gt2"] + pg * 3 + c2n
        g = (pg >= 2).astype(np.int64)
        before_last = j[None, None] < last[..., None]
        best, best_j = None, None
        for v in cands:
            r = np.maximum(v - 2, 1)
            n = np.floor(np.log2(r)).astype(np.int64)
            rem = pre[np.broadcast_to(g, n.shape), np.minimum(n, 25)] + n
            bits_nz = (
                c1[sig_ctx] + 1.0 + last0
                + np.where(v > 1, c1[gt1_ctx] + np.where(v > 2, c1[gt2_ctx] + rem, c0[gt2_ctx]), c0[gt1_ctx])
            )  # fmt: skip
            bits = np.where(v > 0, bits_nz, np.where(before_last, c0[sig_ctx], 0.0))
            jv = (a - v) ** 2 + lam * bits
            if best is None:
                best, best_j = v.copy(), jv
            else:
                better = jv < best_j
                best = np.where(better, v, best)
                best_j = np.where(better, jv, best_j)
        cb = nz.any(-1)
        ncb = np.zeros(cb.shape, np.int64)
        ncb += _shift(cb, 0, 1)
        ncb += _shift(cb, 1, 0)
        ncb[1:, 1:] += cb[:-1, :-1]
        ncb[1:, :-1] += cb[:-1, 1:]
        cbf_ctx = _RES["cbf"] + ncb * RES_HINTS + hints
        keep_cost = best_j.sum(-1) + lam * c1[cbf_ctx]
        empty = (zero_cost + lam * c0[cbf_ctx] <= keep_cost) | ~(best > 0).any(-1)
        best[empty] = 0
        q = best
    return (sign * q).astype(np.int32)


# ----------------------------------------------------------------------------- learning


def _laplace_counts(mean_abs: float, scale: int = 4096) -> np.ndarray:
    """Pseudo-counts of a discrete Laplace with mean |q| ``mean_abs`` over the table range."""
    v = np.arange(-COEF_RANGE, COEF_RANGE + 1)
    b = max(mean_abs, 0.05)
    p = np.exp(-np.abs(v) / b)
    p = p / p.sum()
    return np.append(np.rint(p * scale), 1).astype(np.int64)


def fit(
    samples: dict[str, list[np.ndarray]], steps: list[int], rounding: float, meta: dict
) -> ResidualModel:
    """Learn the basis and the tables from residual planes (``samples[kind]``, sides multiples
    of 8) at every quantiser step in ``steps`` (1/16 units)."""
    basis = {}
    for kind in KINDS:
        blocks = np.concatenate(
            [to_blocks(p.astype(np.float64)).reshape(-1, NC) for p in samples[kind]]
        )
        cov = blocks.T @ blocks / len(blocks)
        w, v = np.linalg.eigh(cov)
        v = v[:, np.argsort(w)[::-1]]
        v = v * np.sign(v[np.abs(v).argmax(axis=0), np.arange(NC)])  # deterministic signs
        basis[kind] = np.rint(v * (1 << BASIS_BITS)).astype(np.int64)
    model = ResidualModel(basis, None, None, np.array(steps, np.int64), rounding, meta)  # type: ignore[arg-type]
    cls_counts = np.zeros((len(KINDS) * CLASSES, CLASSES), np.int64)
    coef_hist = np.zeros((len(KINDS) * CLASSES, NC, 2 * COEF_RANGE + 2), np.int64)
    for k, kind in enumerate(KINDS):
        for qi in range(len(steps)):
            for plane in samples[kind]:
                q = model.quantise(plane, kind, int(steps[qi]))
                cls = block_classes(q)
                ctx = np.concatenate([np.zeros((1, cls.shape[1]), np.int64), cls[:-1]])
                p = np.pad(ctx, ((0, 0), (1, 1)))
                ctx = np.maximum(np.maximum(p[:, :-2], p[:, 1:-1]), p[:, 2:])
                ctx[0] = 0
                np.add.at(cls_counts, (k * CLASSES + ctx.reshape(-1), cls.reshape(-1)), 1)
                m = cls > 0
                qs, cs = q[m].astype(np.int64), cls[m]
                sym = np.where(np.abs(qs) <= COEF_RANGE, qs + COEF_RANGE, 2 * COEF_RANGE + 1)
                rows = np.broadcast_to((k * CLASSES + cs)[:, None], sym.shape)
                cols = np.broadcast_to(np.arange(NC)[None, :], sym.shape)
                np.add.at(coef_hist, (rows, cols, sym), 1)
    cls_cdfs = [counts_to_quantized_cdf(c * 16 + 1, PRECISION) for c in cls_counts]
    class_tables = tables_from_cdfs(cls_cdfs, [0] * len(cls_cdfs), PRECISION)
    cdfs = []
    for r in range(len(KINDS) * CLASSES):
        for j in range(NC):
            h = coef_hist[r, j]
            vals = np.arange(-COEF_RANGE, COEF_RANGE + 1)
            n = h[:-1].sum()
            mean_abs = (np.abs(vals) * h[:-1]).sum() / n if n else 0.3 * (1 << (r % CLASSES)) / NC
            prior = _laplace_counts(mean_abs, 64)
            cdfs.append(counts_to_quantized_cdf(h * 64 + prior, PRECISION))
    coef_tables = tables_from_cdfs(cdfs, [-COEF_RANGE] * len(cdfs), PRECISION)
    model.class_tables, model.coef_tables = class_tables, coef_tables
    return model


# ----------------------------------------------------------------------------- storage


def save(model: ResidualModel, path: Path) -> None:
    from safetensors.numpy import save_file

    arrays = {f"basis.{k}": v.astype(np.int32) for k, v in model.basis.items()}
    arrays.update(model.class_tables.to_arrays("class."))
    arrays.update(model.coef_tables.to_arrays("coef."))
    arrays["steps"] = model.steps.astype(np.int32)
    meta = {
        "kind": "video-residual",
        "rounding": repr(model.rounding),
        "meta": json.dumps(model.meta, sort_keys=True),
    }
    save_file(
        {k: np.ascontiguousarray(v) for k, v in sorted(arrays.items())}, str(path), metadata=meta
    )


def load(path: Path) -> ResidualModel:
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        meta = f.metadata() or {}
        arrays = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (a safetensors handle)
    if meta.get("kind") != "video-residual":
        raise ValueError(f"{path} does not hold a video residual model")
    basis = {k: arrays[f"basis.{k}"].astype(np.int64) for k in KINDS}
    for b in basis.values():
        if b.shape != (NC, NC):
            raise ValueError(f"{path}: basis of shape {b.shape}")
    steps = arrays["steps"].astype(np.int64)
    if steps.ndim != 1 or steps.min() < 1 or steps.max() > MAX_STEP:
        raise ValueError(f"{path}: quantiser steps out of range")
    if max(int(np.abs(b).max()) for b in basis.values()) > 1 << BASIS_BITS:
        raise ValueError(f"{path}: basis entries exceed 2**{BASIS_BITS}")
    return ResidualModel(
        basis,
        CodingTables.from_arrays(arrays, "class."),
        CodingTables.from_arrays(arrays, "coef."),
        steps,
        float(meta["rounding"]),
        json.loads(meta.get("meta", "{}")),
    )


# ----------------------------------------------------------------------------- loop filter


DEBLOCK = (13, 13, 10)  # alpha, beta, tc in 1/256, 1/1024, 1/1024 of the step (1/16 units)


def deblock(plane: np.ndarray, step: int) -> np.ndarray:
    """In-loop deblocking of a reconstructed plane (uint8) coded with quantiser ``step`` (1/16
    units): across every vertical, then every horizontal 8x8 transform block edge, where the
    step between the two pixels at the edge (p0, q0) is below alpha and each side is smooth
    (|p1 - p0|, |q1 - q0| below beta), p0 and q0 move towards each other by
    ((q0 - p0) * 4 + p1 - q1 + 4) >> 3 clipped to +-tc. alpha, beta and tc are about 0.8, 0.2
    and 0.15 steps. Integers only; the two passes see the edges of all blocks at once."""
    alpha = (step * DEBLOCK[0]) >> 8
    beta = (step * DEBLOCK[1]) >> 10
    tc = max(1, (step * DEBLOCK[2]) >> 10)
    x = plane.astype(np.int32)
    for axis in (1, 0):
        y = x if axis == 1 else x.T
        edges = np.arange(TB, y.shape[1] - 1, TB)
        if edges.size == 0 or beta == 0:
            continue
        p1, p0, q0, q1 = y[:, edges - 2], y[:, edges - 1], y[:, edges], y[:, edges + 1]
        m = (np.abs(p0 - q0) < alpha) & (np.abs(p1 - p0) < beta) & (np.abs(q1 - q0) < beta)
        d = np.clip(((q0 - p0) * 4 + (p1 - q1) + 4) >> 3, -tc, tc) * m
        y = y.copy()
        y[:, edges - 1] = np.clip(p0 + d, 0, 255)
        y[:, edges] = np.clip(q0 - d, 0, 255)
        x = y if axis == 1 else y.T
    return np.ascontiguousarray(x).astype(np.uint8)
