"""Exact 3x3 convolution of fixed-point planes (the INR synthesis' residual layers).

``conv3x3(x, w, b)``: ``x`` (C, H, W) float64 integers, ``w`` (O, C, 3, 3), ``b`` (O,) ->
(O, H, W), replicate borders, no rescaling. Integer products and sums below 2^53 are exact in
any order, so the C kernel equals the reference bit for bit.

* reference: ``F.conv2d`` in float64 on the replicate-padded input;
* c: ``_exact.conv3x3`` (one padded row at a time, every output channel from it: no padded
  copy of the image, and none of PyTorch's float64 convolution set-up for 3 channels).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from . import _ext
from .dispatch import Implementation, reference


def _f64(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


def conv3x3_reference(x: torch.Tensor, w, b) -> torch.Tensor:
    p = F.pad(x[None], (1, 1, 1, 1), mode="replicate")
    return F.conv2d(p, _f64(w), _f64(b))[0]


def conv3x3_c(x: torch.Tensor, w, b) -> torch.Tensor:
    x = x.contiguous()
    wt = np.ascontiguousarray(w, dtype=np.float64)
    out = torch.empty(wt.shape[0], *x.shape[1:], dtype=torch.float64)
    _ext._exact.conv3x3(x.numpy(), wt, np.ascontiguousarray(b, dtype=np.float64), out.numpy())
    return out


def _c_usable(x: torch.Tensor, *args) -> bool:
    return _ext.has_exact() and x.device.type == "cpu" and x.dtype == torch.float64


IMPLEMENTATIONS = (Implementation("c", conv3x3_c, _c_usable), reference(conv3x3_reference))
