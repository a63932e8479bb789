"""Exact x2 upsampling of fixed-point planes (the INR upsampler at decode time).

``up2(x, taps, scale, limit)``: ``x`` (C, h, w) float64 integers -> (C, 2h, 2w). Along the
width, then the height: each output is a 4-tap sum over the replicate-padded input (even phase
``taps``, odd phase ``taps`` reversed), rescaled by ``floor(v * scale + 1/2)`` and clamped to
``+-limit``. Every partial sum is an integer below 2^53, so any order of summation gives the
same result: the C kernel equals the reference bit for bit.

* reference: PyTorch, one padded slice per tap;
* c: ``_exact.up2`` (one pass per axis with a transpose between, no temporaries per tap).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from . import _ext
from .dispatch import Implementation, reference


def rescale(acc: torch.Tensor, scale: float, limit: float) -> torch.Tensor:
    """``floor(acc * scale + 1/2)`` clamped to ``+-limit``, in place on a fresh tensor."""
    return acc.mul_(scale).add_(0.5).floor_().clamp_(-limit, limit)


def up2_reference(x: torch.Tensor, taps: torch.Tensor, scale: float, limit: float) -> torch.Tensor:
    for _ in range(2):  # width, then height (by transposing twice)
        w = x.shape[-1]
        p = F.pad(x[None], (2, 2, 0, 0), mode="replicate")[0]
        even = sum(p[..., t : t + w] * taps[t] for t in range(4))
        odd = sum(p[..., 1 + t : 1 + t + w] * taps[3 - t] for t in range(4))
        x = torch.stack([rescale(even, scale, limit), rescale(odd, scale, limit)], dim=-1)
        x = x.flatten(-2).transpose(-1, -2)
    return x.contiguous()


def up2_c(x: torch.Tensor, taps: torch.Tensor, scale: float, limit: float) -> torch.Tensor:
    x = x.contiguous()
    out = torch.empty(x.shape[0], 2 * x.shape[1], 2 * x.shape[2], dtype=torch.float64)
    t = np.ascontiguousarray(taps.numpy(), dtype=np.float64)
    _ext._exact.up2(x.numpy(), t, float(scale), float(limit), out.numpy())
    return out


def _c_usable(x: torch.Tensor, *args) -> bool:
    return _ext.has_exact() and x.device.type == "cpu" and x.dtype == torch.float64


IMPLEMENTATIONS = (Implementation("c", up2_c, _c_usable), reference(up2_reference))
