"""Exact context-model kernels of the multi-reference entropy model (``models/mlic.py``).

Both kernels run on integers (int64, or float64 holding integers below 2^53), so every
implementation gives the same bits whatever its summation order; the decoder can therefore pick
any of them without changing a CDF index.

``linear_attention_exact(q, k, v)``: q (B, P, D), k (B, N, D), v (B, N, C), all int64, q and k
>= 1 -> (B, P, C) int64::

    KV = Σ_n k[n] v[n]ᵀ  (D x C),  Ks = Σ_n k[n]  (D)          "KV-sum" (one pass over N)
    out[p] = floor((2 q[p]ᵀ KV + q[p]ᵀ Ks) / (2 q[p]ᵀ Ks))       rounded quotient (one pass over P)

The reference is three int64 matmuls and a floor division in PyTorch. The Triton version is two
kernels: the KV-sum reads k and v once and keeps the D x C accumulator in registers (the
reference writes the (N, D, C) products through a BLAS call that int64 does not have, i.e. a
slow generic loop); the query kernel reads q once and fuses numerator, denominator and the
rounding division, so no (P, C) intermediate is written before the quotient.

``fixed_pointwise(x, net)``: a ``FixedPointNet`` of 1x1 convolutions (the parameter
aggregation that turns hyper / channel / spatial / global contexts into means and scales)
applied to gathered positions x (B, Cin, n), float64 integers at 2^ACT_BITS. Per layer the
reference does ``W @ x + b`` then ReLU, the rounding shift and the clamp as separate passes;
the Triton kernel fuses them into one pass per tile (accumulator, bias, ReLU, shift, clamp in
registers). The sums are exact integers below 2^51, so tile order does not matter.

Dispatch: ``triton`` for CUDA tensors (or ``TRITON_INTERPRET=1`` with triton installed, how the
parity tests run it on CPU), the reference otherwise.
"""

from __future__ import annotations

import importlib.util
import os

import torch

from ..models.fixedpoint import ACT_LIMIT
from .dispatch import Implementation, reference


def linear_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    kv = k.transpose(1, 2) @ v  # (B, D, C) int64
    ks = k.sum(1, keepdim=True).transpose(1, 2)  # (B, D, 1)
    num = q @ kv
    den = q @ ks  # (B, P, 1), >= D since every feature is >= 1
    return torch.div(2 * num + den, 2 * den, rounding_mode="floor")


def fixed_pointwise_reference(x: torch.Tensor, net) -> torch.Tensor:
    a = x
    for layer in net.layers:
        w = layer.weight.reshape(layer.weight.shape[0], -1)
        acc = torch.matmul(w, a) + layer.bias[:, None]
        if layer.relu:
            acc = acc.clamp_min(0)
        a = torch.floor(acc * 2.0**-layer.wbits + 0.5).clamp_(-ACT_LIMIT, ACT_LIMIT)
    return a


def _check_attention(q, k, v) -> None:
    if not (q.dtype == k.dtype == v.dtype == torch.int64):
        raise TypeError("linear_attention_exact takes int64 tensors")
    if q.ndim != 3 or k.ndim != 3 or v.ndim != 3 or k.shape[:2] != v.shape[:2]:
        raise ValueError("shapes must be q (B, P, D), k (B, N, D), v (B, N, C)")
    if q.shape[2] != k.shape[2] or q.shape[0] != k.shape[0]:
        raise ValueError("q and k must share B and D")


def linear_attention_checked(q, k, v):
    _check_attention(q, k, v)
    return linear_attention_reference(q, k, v)


def _triton_usable(x: torch.Tensor, *args) -> bool:
    on_device = x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"
    return on_device and importlib.util.find_spec("triton") is not None


def _linear_attention_triton(q, k, v):
    from .context_triton import linear_attention_triton  # imports triton: only when it runs

    _check_attention(q, k, v)
    return linear_attention_triton(q, k, v)


def _fixed_pointwise_triton(x, net):
    from .context_triton import fixed_pointwise_triton

    return fixed_pointwise_triton(x, net)


def _pointwise_only(x: torch.Tensor, net) -> bool:
    return all(
        layer.weight.shape[2:] == (1, 1) and not layer.transposed and layer.stride == 1
        for layer in net.layers
    )


def _fixed_pointwise_checked(x, net):
    if not _pointwise_only(x, net):
        raise ValueError("fixed_pointwise takes a FixedPointNet of 1x1 convolutions")
    return fixed_pointwise_reference(x, net)


LINEAR_ATTENTION = (
    Implementation("triton", _linear_attention_triton, _triton_usable),
    reference(linear_attention_checked),
)
FIXED_POINTWISE = (
    Implementation(
        "triton",
        _fixed_pointwise_triton,
        lambda x, net: _triton_usable(x) and _pointwise_only(x, net),
    ),
    reference(_fixed_pointwise_checked),
)
