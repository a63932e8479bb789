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

VALUE_LIMIT = 1 << 20  # |v| bound on both sides (valid latents stay far inside; keeps int64 safe)
ACTIVITY_BINS = np.array([2, 3, 4, 7, 11, 16, 26], dtype=np.int64)  # ceil(2^(k / 1.5)), k=1..7
SIZE_BINS = ACTIVITY_BINS[:5]
DC_SETS = len(ACTIVITY_BINS) + 1  # per thumbnail channel
SIZE_SETS = len(SIZE_BINS) + 1
SCALE_GROUP = 3  # scale indexes per context group


@lru_cache(maxsize=8)
def wavefront(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, step starts): positions in step order t = 2 i + j, rows ascending within a
    step; step t holds positions starts[t] .. starts[t + 1]."""
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    t = (2 * i + j).reshape(-1)
    order = np.argsort(t * h + i.reshape(-1), kind="stable")
    counts = np.bincount(t, minlength=2 * (h - 1) + w)
    starts = np.concatenate([[0], np.cumsum(counts)])
    return i.reshape(-1)[order], j.reshape(-1)[order], starts


@lru_cache(maxsize=8)
def symbol_order(c: int, h: int, w: int) -> np.ndarray:
    """Flat indexes into a (c, n) array of per-position values (positions in wavefront order)
    giving the coding order: step by step, channel-major within a step."""
    n = h * w
    starts = wavefront(h, w)[2]
    parts = [
        (np.arange(c)[:, None] * n + np.arange(a, b)[None, :]).reshape(-1)
        for a, b in zip(starts[:-1], starts[1:], strict=True)
    ]
    return np.concatenate(parts)


def _neighbours(vpad: np.ndarray, i: np.ndarray, j: np.ndarray):
    """W, N, NW, NE of positions (i, j) in ``vpad`` (c, h + 1, w + 2): the latent at offset
    (1, 1) in a zero border."""
    return vpad[:, i + 1, j], vpad[:, i, j + 1], vpad[:, i, j], vpad[:, i, j + 2]


def contexts(
    vpad: np.ndarray, sidx: np.ndarray, dc: np.ndarray, i: np.ndarray, j: np.ndarray, w: int
) -> tuple[np.ndarray, np.ndarray]:
    """(context sets (c, n) int32, predictions (c, n) int64) at positions (i, j), from decoded
    values only (the causal neighbours in ``vpad``) and the scale indexes ``sidx`` (c, n)."""
    wv, nv, nw, ne = _neighbours(vpad, i, j)
    c = vpad.shape[0]
    sets = np.empty((c, i.size), np.int64)
    pred = np.zeros((c, i.size), np.int64)
    other = np.ones(c, bool)
    other[dc] = False
    if dc.size:
        dw, dn, dnw, dne = wv[dc], nv[dc], nw[dc], ne[dc]
        top, left, right = i == 0, j == 0, j == w - 1
        dw = np.where(left, dn, dw)  # first column: W = NW = N
        dnw = np.where(left, dn, dnw)
        dn = np.where(top, dw, dn)  # first row: N = NW = NE = W
        dnw = np.where(top, dw, dnw)
        dne = np.where(top | right, dn, dne)
        pred[dc] = (dw + dn) >> 1
        act = np.abs(dw - dnw) + np.abs(dn - dnw) + np.abs(dne - dn)
        bins = np.searchsorted(ACTIVITY_BINS, act + 1, side="right")
        sets[dc] = np.arange(dc.size)[:, None] * DC_SETS + bins
    if other.any():
        size = (
            np.abs(wv[other])
            + np.abs(nv[other])
            + ((np.abs(nw[other]) + np.abs(ne[other])) >> 1)
        )
        bins = np.searchsorted(SIZE_BINS, size + 1, side="right")
        sets[other] = dc.size * DC_SETS + (sidx[other] // SCALE_GROUP) * SIZE_SETS + bins
    return sets.astype(np.int32), pred


class SpatialAdaptiveLatent(ConditionalLatentCodec):
    """``y`` given the hyperprior's (scale indexes, means), with spatial adaptive contexts.

    ``dc``: the thumbnail channels (DPCM); ``num_scales``: the number of scale indexes the
    condition can hold (it sizes the context sets).
    """

    def __init__(self, dc: tuple[int, ...], num_scales: int, stream: str = "y"):
        self.dc = np.asarray(sorted(dc), dtype=np.int64)
        self.num_scales, self.stream = int(num_scales), stream

    def num_sets(self) -> int:
        groups = -(-self.num_scales // SCALE_GROUP)
        return self.dc.size * DC_SETS + groups * SIZE_SETS

    def code(self, sinks, latent, ctx: LatentContext, condition) -> torch.Tensor:
        indexes, means = condition
        _, c, h, w = ctx.shape
        if self.dc.size and (self.dc[0] < 0 or self.dc[-1] >= c):
            raise ValueError(f"thumbnail channels {self.dc.tolist()} outside {c} channels")
        sidx = np.asarray(indexes, dtype=np.int64).reshape(c, h * w)
        rows, cols, starts = wavefront(h, w)
        sidx = sidx[:, rows * w + cols]  # wavefront order
        m = means.reshape(c, h, w)
        thumb = torch.zeros(c, dtype=torch.bool)
        thumb[torch.from_numpy(self.dc)] = True
        st = states(self.num_sets() * INT_CONTEXTS)
        sink = sinks[self.stream]
        vpad = np.zeros((c, h + 1, w + 2), np.int64)
        if latent is not None:  # encoder / rate: every context at once, one coding call
            y = latent.double().reshape(c, h, w)
            v = torch.where(thumb[:, None, None], y, y - m).round_()
            v = v.clamp_(-VALUE_LIMIT, VALUE_LIMIT).to(torch.int64).numpy()
            vpad[:, 1:, 1:-1] = v
            sets, pred = contexts(vpad, sidx, self.dc, rows, cols, w)
            r = v[:, rows, cols] - pred
            order = symbol_order(c, h, w)
            sink.code_ints(sets.reshape(-1)[order], st, r.reshape(-1)[order])
        else:
            for a, b in zip(starts[:-1], starts[1:], strict=True):
                i, j = rows[a:b], cols[a:b]
                sets, pred = contexts(vpad, sidx[:, a:b], self.dc, i, j, w)
                r = sink.code_ints(sets.reshape(-1), st).reshape(c, b - a)
                vpad[:, i + 1, j + 1] = np.clip(r + pred, -VALUE_LIMIT, VALUE_LIMIT)
            v = vpad[:, 1:, 1:-1]
        y_hat = torch.from_numpy(np.ascontiguousarray(v)).double()
        y_hat = torch.where(thumb[:, None, None], y_hat, y_hat + m)
        return y_hat.reshape(ctx.shape).float()
