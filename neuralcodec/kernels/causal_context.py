"""Causal neighbour gathering of the INR context model (training side, differentiable).

``causal_contexts(grids, offsets)``: grids (h_l, w_l) -> (K, sum h_l * w_l), row ``k`` holding
every latent's neighbour ``offsets[k] = (dy, dx)`` (``dy`` rows above, ``dx`` columns right;
zeros outside its grid), the grids side by side.

* reference: K shifted slices of a zero-padded grid, stacked and concatenated (autograd);
* autograd: ``CausalContext``, which writes the slices straight into one output buffer and
  whose backward adds each neighbour's gradient in place into one padded grid per level.
  Autograd through the reference allocates and fills a zero grid per neighbour and level
  before summing them.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .dispatch import Implementation, always, reference


def _padding(offsets: tuple[tuple[int, int], ...]) -> tuple[int, int]:
    return max(dy for dy, _ in offsets), max(abs(dx) for _, dx in offsets)


def causal_contexts_reference(
    grids: list[torch.Tensor], offsets: tuple[tuple[int, int], ...]
) -> torch.Tensor:
    top, side = _padding(offsets)
    blocks = []
    for grid in grids:
        h, w = grid.shape
        p = F.pad(grid[None, None], (side, side, top, 0))[0, 0]
        views = [p[top - dy : top - dy + h, side + dx : side + dx + w] for dy, dx in offsets]
        blocks.append(torch.stack(views).reshape(len(offsets), h * w))
    return torch.cat(blocks, dim=1)


class CausalContext(torch.autograd.Function):
    @staticmethod
    def forward(ctx, offsets: tuple[tuple[int, int], ...], *grids: torch.Tensor) -> torch.Tensor:
        top, side = _padding(offsets)
        sizes = [g.numel() for g in grids]
        out = grids[0].new_empty(len(offsets), sum(sizes))
        start = 0
        for grid, n in zip(grids, sizes, strict=True):
            h, w = grid.shape
            p = F.pad(grid[None, None], (side, side, top, 0))[0, 0]
            block = out[:, start : start + n].view(len(offsets), h, w)
            for k, (dy, dx) in enumerate(offsets):
                block[k] = p[top - dy : top - dy + h, side + dx : side + dx + w]
            start += n
        ctx.geometry = (offsets, top, side, [g.shape for g in grids])
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        offsets, top, side, shapes = ctx.geometry
        grads, start = [], 0
        for h, w in shapes:
            g = grad[:, start : start + h * w].reshape(len(offsets), h, w)
            acc = grad.new_zeros(h + top, w + 2 * side)
            for k, (dy, dx) in enumerate(offsets):
                acc[top - dy : top - dy + h, side + dx : side + dx + w] += g[k]
            grads.append(acc[top:, side : side + w])
            start += h * w
        return (None, *grads)


def causal_contexts_autograd(
    grids: list[torch.Tensor], offsets: tuple[tuple[int, int], ...]
) -> torch.Tensor:
    return CausalContext.apply(offsets, *grids)


IMPLEMENTATIONS = (
    Implementation("autograd", causal_contexts_autograd, always),
    reference(causal_contexts_reference),
)
