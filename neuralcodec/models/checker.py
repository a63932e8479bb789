"""Checkerboard halves of a latent map, and a convolution from one half to the other.

The two-pass checkerboard codes the positions of one parity at a time: anchors where
``(row + col)`` is even (parity 0), then the others (parity 1). On a map with an even number of
rows and columns, each half is stored *packed*, ``(B, C, H, W / 2)``::

    half(t, p)[..., i, m] = t[..., i, 2 m + (i + p) % 2]

which is also the order in which a boolean checkerboard mask selects the positions (row-major),
so ``half(t, p).reshape(B, C, -1)`` is ``t`` gathered at the pass's positions (strided copies,
no index tensor).

The spatial context of the second pass is a K x K convolution (stride 1, ``(K - 1) / 2`` zero
padding) of a map that is zero outside the anchors, read at the non-anchors only: every output
sees about half the taps, and half the outputs are wanted. ``half_conv`` computes exactly those:
for output rows of one parity, the taps that land on anchors form a K x J kernel on the packed
anchors (J = 3 for K = 5) applied with a row stride of 2, so the work is about a quarter of the
full convolution's. The taps it drops multiply zeros, and the ones it keeps are the layer's own
integer weights, so every partial sum is a partial sum of the full convolution: the exactness
bounds of the layer's plan (``compress/intconv.py``) still hold and the integers are the same.

``net_input`` / ``run_prepared`` run an ``IntNet`` from its first layer's prepared input (shift,
clamp, float32) instead of its float64 input: the aggregation's input is a concatenation whose
largest part, the hyper features at one pass's positions, is the same for every group, so it is
prepared once per pass; and a layer's input already bounded by the previous layer's output
clamp skips its own clamping pass.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch.nn import functional as F

from .fixedpoint import ACT_BITS


def packable(h: int, w: int) -> bool:
    return h % 2 == 0 and w % 2 == 0 and h > 0 and w > 0


def half(t: torch.Tensor, parity: int) -> torch.Tensor:
    """The positions of ``parity`` of ``t`` (B, C, H, W), packed (B, C, H, W / 2); H, W even."""
    b, c, h, w = t.shape
    v = t.reshape(b, c, h // 2, 2, w // 2, 2)
    return torch.stack((v[:, :, :, 0, :, parity], v[:, :, :, 1, :, 1 - parity]), 3).view(
        b, c, h, w // 2
    )


def merge(anchors: torch.Tensor, others: torch.Tensor, out: torch.Tensor | None = None):
    """The map (B, C, H, W) whose halves are ``anchors`` (parity 0) and ``others`` (parity 1),
    written into ``out`` when given."""
    b, c, h, w2 = anchors.shape
    if out is None:
        out = anchors.new_empty(b, c, h, 2 * w2)
    v = out.view(b, c, h // 2, 2, w2, 2)
    a, o = anchors.view(b, c, h // 2, 2, w2), others.view(b, c, h // 2, 2, w2)
    v[:, :, :, 0, :, 0] = a[:, :, :, 0]
    v[:, :, :, 1, :, 1] = a[:, :, :, 1]
    v[:, :, :, 0, :, 1] = o[:, :, :, 0]
    v[:, :, :, 1, :, 0] = o[:, :, :, 1]
    return out


@lru_cache(maxsize=16)
def half_taps(k: int, src: int = 0, dst: int = 1):
    """Taps of a K x K, stride-1, ``(K - 1) / 2``-padded convolution from the packed half ``src``
    to the packed half ``dst``: per output row parity r, ``(dy, dx, o)`` for every tap that lands
    on ``src`` (packed column offset o), then the offsets' range ``(lo, hi)``."""
    p = (k - 1) // 2
    rows, offsets = [], []
    for r in (0, 1):
        taps = []
        for dy in range(k):
            src_row = (r + dy - p) % 2
            for dx in range(k):
                num = (r + dst) % 2 + dx - p - (src_row + src) % 2
                if num % 2 == 0:
                    taps.append((dy, dx, num // 2))
                    offsets.append(num // 2)
        rows.append(tuple(taps))
    return tuple(rows), min(offsets), max(offsets)


def half_weights(w: torch.Tensor) -> list[torch.Tensor]:
    """``w`` (N, C, K, K) -> per output row parity, the (N, C, K, J) kernel from the anchors'
    packed half to the non-anchors'."""
    k = w.shape[-1]
    rows, lo, hi = half_taps(k)
    out = []
    for taps in rows:
        wr = w.new_zeros(*w.shape[:2], k, hi - lo + 1)
        for dy, dx, o in taps:
            wr[:, :, dy, o - lo] = w[:, :, dy, dx]
        out.append(wr.contiguous())
    return out


def half_conv(a: torch.Tensor, weights: list[torch.Tensor], groups: int = 1) -> torch.Tensor:
    """The full convolution at the non-anchors, from ``a``: the anchors packed (B, C, H, W / 2),
    with ``weights`` from ``half_weights``. Returns (B, N, H, W / 2), the non-anchors packed."""
    k, j = weights[0].shape[-2:]
    _, lo, _ = half_taps(k)
    p = (k - 1) // 2
    padded = F.pad(a, (-lo, j - 1 + lo, p, p))
    parts = [
        F.conv2d(padded[:, :, r:], wr, None, (2, 1), 0, 1, groups) for r, wr in enumerate(weights)
    ]
    b, n, hh, w2 = parts[0].shape
    return torch.stack(parts, 3).view(b, n, 2 * hh, w2)


# ------------------------------------------------------------------------ integer networks


def preparable(net) -> bool:
    """Whether ``net_input`` / ``run_prepared`` take ``net``: an ``IntNet`` (float32 inputs)."""
    from ..compress.intnet import IntNet

    return isinstance(net, IntNet) and net.layers[0].in_bound < 1 << 24


def net_input(net, x: torch.Tensor) -> torch.Tensor | None:
    """What an ``IntNet``'s first layer computes on ``x`` (float64 integers at 2^ACT_BITS)
    before its product: the rounding shift to the layer's scale and the clamp to its input
    bound, as float32 (exact: the bound is below 2^24). None for other networks. Elementwise,
    so the input of a concatenation can be prepared part by part (and a part shared by several
    networks of the same scale and bound prepared once)."""
    if not preparable(net):
        return None
    shift, bound = net.exponents[0] - ACT_BITS, net.layers[0].in_bound
    t = x * 2.0**shift
    if shift < 0:
        t.add_(0.5).floor_()
    return t.clamp_(-bound, bound).float()


def net_key(net) -> tuple[int, int]:
    """(input shift, input bound) of an ``IntNet``: nets with equal keys take equal inputs."""
    return net.exponents[0], net.layers[0].in_bound


def run_prepared(net, a: torch.Tensor) -> torch.Tensor:
    """``net(x)`` from ``a = net_input(net, x)``: the same integers (float64), without the
    clamping passes of inputs that the previous layer already bounded."""
    from ..compress import intconv
    from ..kernels import _ext

    bound = net.layers[0].in_bound  # net_input clamped the first layer's input to it
    for layer in net.layers:
        g = layer.geometry
        plain = (
            not g.transposed
            and intconv._use_c(None, a)
            and not layer.int16_preferred(a)
            and not layer.flat16_preferred(a)
            and not layer.int8_preferred(a)
            and not layer.small_preferred(a)
        )
        if not plain:
            a = layer(a)
        else:  # IntConv.__call__'s float plan, its clamp skipped when the input is in bounds
            acc, factors = layer.raw(a, bounded=bound <= layer.in_bound)
            out = torch.empty(layer.out_shape(a), dtype=torch.float32)
            lo = 0 if layer.relu else -layer.out_bound
            args = (acc[0].contiguous().numpy(), factors, 1, 0, layer.bias, layer.mult)
            args += (layer.shift, lo, layer.out_bound, out[0].numpy(), 0)
            intconv.by_channels(_ext._intnet.requant, args, layer.cout, out.numel())
            a = out
        bound = layer.out_bound
    return a.double()
