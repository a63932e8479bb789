"""Triton implementation of ``laplace.laplace_terms``: bits and both derivatives per element.

One program handles ``BLOCK`` elements: it reads ``y``, ``mu``, ``log b`` once and writes the
bits and the two gradient factors, with every intermediate in registers (the PyTorch version
makes a dozen passes over each block). Same closed forms as ``laplace.laplace_terms``;
``1 - exp(-u)`` goes through a series for small ``u`` so float32 keeps its precision at large
scales. Imported only when a call can use it (a CUDA tensor, or ``TRITON_INTERPRET=1`` on CPU).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .laplace import LIKELIHOOD_MIN, LOG_SCALE_MAX, LOG_SCALE_MIN

BLOCK = 1024
LN2 = math.log(2.0)


@triton.jit
def _terms_kernel(y_ptr, mu_ptr, ls_ptr, bits_ptr, gy_ptr, gls_ptr, n, ls_min, ls_max, limit,
                  BLOCK: tl.constexpr):  # fmt: skip
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    y = tl.load(y_ptr + offs, mask=mask, other=0.0)
    mu = tl.load(mu_ptr + offs, mask=mask, other=0.0)
    log_scale = tl.load(ls_ptr + offs, mask=mask, other=0.0)
    ls = tl.minimum(tl.maximum(log_scale, ls_min), ls_max)
    u = tl.exp(-ls)
    r = y - mu
    d = tl.abs(r)
    half = 0.5 * u
    # 1 - exp(-u), accurate for small u
    em = tl.where(u < 0.01, u * (1.0 - u * (0.5 - u * (1.0 / 6.0 - u / 24.0))), 1.0 - tl.exp(-u))
    em = tl.maximum(em, 1e-7)
    tail = d * u - (half + tl.log(em) - 0.6931471805599453)
    e = tl.exp(-half)
    du = tl.minimum(d, 0.5) * u  # the central-bin terms only matter for d < 1/2
    ep, en = tl.exp(du), tl.exp(-du)
    cosh = 0.5 * (ep + en)
    sinh = 0.5 * (ep - en)
    inside_mass = tl.maximum(1.0 - e * cosh, 1e-30)
    outer = d >= 0.5
    nats = tl.where(outer, tail, -tl.log(inside_mass))
    g_d = tl.where(outer, u, e * u * sinh / inside_mass)
    coth = (2.0 - em) / tl.maximum(em, 1e-30)  # 1 / tanh(u / 2)
    g_u = tl.where(outer, d - 0.5 * coth, -e * (0.5 * cosh - d * sinh) / inside_mass)
    live = nats < limit
    scale = tl.where(live, 1.0 / 0.6931471805599453, 0.0)
    sign = tl.where(r > 0, 1.0, tl.where(r < 0, -1.0, 0.0))
    in_range = (log_scale > ls_min) & (log_scale < ls_max)
    tl.store(bits_ptr + offs, tl.minimum(nats, limit) / 0.6931471805599453, mask=mask)
    tl.store(gy_ptr + offs, g_d * sign * scale, mask=mask)
    tl.store(gls_ptr + offs, tl.where(in_range, -g_u * u * scale, 0.0), mask=mask)


def laplace_terms_triton(y, mu, log_scale):
    y, mu, log_scale = (t.contiguous() for t in (y, mu, log_scale))
    bits, gy, gls = (torch.empty_like(y) for _ in range(3))
    n = y.numel()
    grid = (triton.cdiv(n, BLOCK),)
    limit = -math.log(LIKELIHOOD_MIN)
    _terms_kernel[grid](y, mu, log_scale, bits, gy, gls, n, LOG_SCALE_MIN, LOG_SCALE_MAX, limit,
                        BLOCK=BLOCK)  # fmt: skip
    return bits, gy, gls


class LaplaceBitsTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, mu, log_scale):
        bits, gy, gls = laplace_terms_triton(y, mu, log_scale)
        ctx.save_for_backward(gy, gls)
        return bits.sum()

    @staticmethod
    def backward(ctx, grad):
        gy, gls = ctx.saved_tensors
        g_y = gy * grad
        return g_y, -g_y, gls * grad
