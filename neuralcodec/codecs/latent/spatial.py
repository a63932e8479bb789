"""Spatial adaptive coding of a hyperprior latent: causal neighbours, adaptive binary contexts.

::

    condition (exact): scale index s and mean m of every element (the hyper-synthesis)
    thumbnail channels (``dc``):  v = round(y)        r = v - ((W + N) >> 1)
                                  context: channel x activity |W-NW| + |N-NW| + |NE-N| (8 bins)
    other channels:               v = round(y - m)    r = v
                                  context: s // 3 x neighbour size |W| + |N| + (|NW| + |NE|) // 2
                                  (6 bins)
    r --adaptive ``ints`` binarisation (entropy/adaptive.py) on the shared range coder--> stream
    y_hat = v (thumbnail channels), v + m (others)

A latent whose projection keeps an image's low-pass thumbnail (the ``wavelet`` codec's DC-like
channels) cannot be predicted by a hyperprior at a quarter of its resolution, but its decoded
neighbours predict it well (DPCM); the other channels keep the hyperprior's scale and gain a
neighbour-size context. All contexts and predictions are integer functions of decoded values,
and the binary models adapt while coding (nothing is sent for them), so the decoder chooses the
same probabilities on every machine.

Order: a skewed wavefront, step t = 2 i + j over the (h, w) grid, so that W, NW, N and NE of
every position lie on earlier steps; within a step, channel-major, then by row. The encoder
codes the whole latent in one call; the decoder decodes step by step (2 h + w - 2 steps), each
step vectorised over the channels and the positions of the step.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from neuralcodec.entropy.adaptive import INT_CONTEXTS, states

from .base import ConditionalLatentCodec, LatentContext

VALUE_LIMIT = 1 << 20  # |v| bound on both sides (valid latents stay far inside; int32-safe sums)
ACTIVITY_BINS = (2, 3, 4, 7, 11, 16, 26)  # bin = #{k : ACTIVITY_BINS[k] <= activity + 1}
SIZE_BINS = ACTIVITY_BINS[:5]  # (ceil(2^(k / 1.5)), k = 1..7: log-spaced)
DC_SETS = len(ACTIVITY_BINS) + 1  # per thumbnail channel
SIZE_SETS = len(SIZE_BINS) + 1
SCALE_GROUP = 3  # scale indexes per context group


def _bin_table(bounds: tuple[int, ...]) -> np.ndarray:
    """Lookup table: bin of every activity 0 .. bounds[-1] - 1 (larger ones: the last bin)."""
    a = np.arange(bounds[-1], dtype=np.int64)
    return np.searchsorted(np.asarray(bounds), a + 1, side="right").astype(np.int32)


_ACTIVITY_LUT = _bin_table(ACTIVITY_BINS)
_SIZE_LUT = _bin_table(SIZE_BINS)


def _bins(lut: np.ndarray, a: np.ndarray) -> np.ndarray:
    return lut[np.minimum(a, lut.size - 1)]


@lru_cache(maxsize=4)
def wavefront(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, step starts): positions in step order t = 2 i + j, rows ascending within a
    step; step t holds positions starts[t] .. starts[t + 1]."""
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    t = (2 * i + j).reshape(-1)
    order = np.argsort(t * h + i.reshape(-1), kind="stable")
    counts = np.bincount(t, minlength=2 * (h - 1) + w)
    starts = np.concatenate([[0], np.cumsum(counts)])
    return i.reshape(-1)[order], j.reshape(-1)[order], starts


@lru_cache(maxsize=2)
def symbol_order(c: int, h: int, w: int) -> np.ndarray:
    """Flat indexes into a (c, h * w) raster array giving the coding order: step by step,
    channel-major within a step, rows ascending (int32 below 2^31 elements)."""
    rows, cols, starts = wavefront(h, w)
    t = 2 * rows + cols
    first, count = starts[t], np.diff(starts)[t]
    dest = c * first + np.arange(h * w) - first  # channel 0's place of every position
    raster = rows * w + cols
    dtype = np.int32 if c * h * w < 2**31 else np.int64
    out = np.empty(c * h * w, dtype)
    for ch in range(c):  # one channel at a time: no (c, h * w) int64 temporaries
        out[dest + ch * count] = raster + ch * (h * w)
    return out


def _context_sets(wv, nv, nw, ne, base, n_dc: int, top, left, right):
    """(sets, predictions) from the four causal neighbours (arrays (c, ...), thumbnail channels
    first), ``base`` the scale-group set offsets of the other channels, and the edge masks of
    the positions. Integer arithmetic only; the encoder calls it on whole grids, the decoder on
    one wavefront step: both get the same numbers."""
    sets = np.empty(wv.shape, np.int32)
    pred = np.zeros(wv.shape, np.int32)
    if n_dc:
        dw, dn, dnw, dne = wv[:n_dc], nv[:n_dc], nw[:n_dc], ne[:n_dc]
        dw = np.where(left, dn, dw)  # first column: W = NW = N
        dnw = np.where(left, dn, dnw)
        dn = np.where(top, dw, dn)  # first row: N = NW = NE = W
        dnw = np.where(top, dw, dnw)
        dne = np.where(top | right, dn, dne)
        pred[:n_dc] = (dw + dn) >> 1
        act = np.abs(dw - dnw) + np.abs(dn - dnw) + np.abs(dne - dn)
        ids = (np.arange(n_dc, dtype=np.int32) * DC_SETS).reshape((n_dc,) + (1,) * (wv.ndim - 1))
        sets[:n_dc] = ids + _bins(_ACTIVITY_LUT, act)
    if wv.shape[0] > n_dc:
        a_w, a_n = np.abs(wv[n_dc:]), np.abs(nv[n_dc:])
        size = a_w + a_n + ((np.abs(nw[n_dc:]) + np.abs(ne[n_dc:])) >> 1)
        sets[n_dc:] = base + _bins(_SIZE_LUT, size)
    return sets, pred


class SpatialAdaptiveLatent(ConditionalLatentCodec):
    """``y`` given the hyperprior's (scale indexes, means), with spatial adaptive contexts.

    ``dc``: the thumbnail channels (DPCM); ``num_scales``: the number of scale indexes the
    condition can hold (it sizes the context sets); ``deadzone``: the encoder's dead zone on
    the other channels (rounding of ``max(|y - m| - deadzone, 0)``; decoders ignore it).
    """

    def __init__(
        self,
        dc: tuple[int, ...],
        num_scales: int,
        stream: str = "y",
        deadzone: float = 0.0,
    ):
        self.dc = np.asarray(sorted(dc), dtype=np.int64)
        self.num_scales, self.stream = int(num_scales), stream
        self.deadzone = float(deadzone)

    def num_sets(self) -> int:
        groups = -(-self.num_scales // SCALE_GROUP)
        return self.dc.size * DC_SETS + groups * SIZE_SETS

    def code(self, sinks, latent, ctx: LatentContext, condition) -> torch.Tensor:
        indexes, means = condition
        _, c, h, w = ctx.shape
        nd = self.dc.size
        if nd and (self.dc[0] < 0 or self.dc[-1] >= c or np.unique(self.dc).size != nd):
            raise ValueError(f"thumbnail channels {self.dc.tolist()} do not fit {c} channels")
        # channel permutation: thumbnail channels first (the context sets are numbered so)
        perm = np.concatenate([self.dc, np.setdiff1d(np.arange(c), self.dc)])
        sidx = np.asarray(indexes, dtype=np.int32).reshape(c, h, w)[perm[nd:]]
        base = nd * DC_SETS + np.clip(sidx, 0, self.num_scales - 1) // SCALE_GROUP * SIZE_SETS
        m = means.reshape(c, h, w)[torch.from_numpy(perm)]
        st = states(self.num_sets() * INT_CONTEXTS)
        sink = sinks[self.stream]
        vpad = np.zeros((c, h + 1, w + 2), np.int32)  # the latent at (1, 1) in a zero border
        if latent is not None:  # encoder / rate: every context at once, one coding call
            y = latent.double().reshape(c, h, w)[torch.from_numpy(perm)]
            d = y[nd:] - m[nd:]
            if self.deadzone:  # encoder-side rate-distortion choice: small values go to zero
                d = torch.sign(d) * torch.clamp(d.abs() - self.deadzone, min=0)
            v = torch.cat([y[:nd], d]).round_().clamp_(-VALUE_LIMIT, VALUE_LIMIT)
            vpad[:, 1:, 1:-1] = v.to(torch.int32).numpy()
            jj = np.arange(w)
            sets, pred = _context_sets(
                vpad[:, 1:, :-2],
                vpad[:, :-1, 1:-1],
                vpad[:, :-1, :-2],
                vpad[:, :-1, 2:],
                base,
                nd,
                (np.arange(h) == 0)[:, None],
                jj == 0,
                jj == w - 1,
            )
            r = vpad[:, 1:, 1:-1] - pred
            order = symbol_order(c, h, w)
            sink.code_ints(sets.reshape(-1)[order], st, r.reshape(-1)[order])
        else:
            rows, cols, starts = wavefront(h, w)
            base = base.reshape(c - nd, h * w)[:, rows * w + cols]
            for a, b in zip(starts[:-1], starts[1:], strict=True):
                i, j = rows[a:b], cols[a:b]
                sets, pred = _context_sets(
                    vpad[:, i + 1, j],
                    vpad[:, i, j + 1],
                    vpad[:, i, j],
                    vpad[:, i, j + 2],
                    base[:, a:b],
                    nd,
                    i == 0,
                    j == 0,
                    j == w - 1,
                )
                r = sink.code_ints(sets.reshape(-1), st).reshape(c, b - a).astype(np.int64)
                vpad[:, i + 1, j + 1] = np.clip(r + pred, -VALUE_LIMIT, VALUE_LIMIT)
        v = torch.from_numpy(np.ascontiguousarray(vpad[:, 1:, 1:-1])).double()
        v[nd:] += m[nd:]
        y_hat = torch.empty_like(v)
        y_hat[torch.from_numpy(perm)] = v
        return y_hat.reshape(ctx.shape).float()
