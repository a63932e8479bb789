"""Triton implementations of ``context_model``'s exact kernels (see its docstring).

Imported only when a call can use them (a CUDA tensor, or ``TRITON_INTERPRET=1`` on CPU).
Every product and sum is an integer: int64 in the attention kernels, float64 holding integers
below 2^51 in the pointwise layer, so the results equal the references bit for bit.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..models.fixedpoint import ACT_LIMIT

BLOCK_N = 32
BLOCK_C = 16
BLOCK_P = 32


@triton.jit
def _kv_sum_kernel(k_ptr, v_ptr, kv_ptr, ks_ptr, N, D, C,
                   BD: tl.constexpr, BN: tl.constexpr, BC: tl.constexpr):  # fmt: skip
    b = tl.program_id(0)
    cb = tl.program_id(1)
    d = tl.arange(0, BD)
    c = cb * BC + tl.arange(0, BC)
    acc = tl.zeros((BD, BC), dtype=tl.int64)
    ks = tl.zeros((BD,), dtype=tl.int64)
    for n0 in range(0, N, BN):
        n = n0 + tl.arange(0, BN)
        kk = tl.load(k_ptr + b * N * D + n[:, None] * D + d[None, :],
                     mask=(n[:, None] < N) & (d[None, :] < D), other=0)  # fmt: skip
        vv = tl.load(v_ptr + b * N * C + n[:, None] * C + c[None, :],
                     mask=(n[:, None] < N) & (c[None, :] < C), other=0)  # fmt: skip
        acc += tl.sum(kk[:, :, None] * vv[:, None, :], axis=0)
        ks += tl.sum(kk, axis=0)
    tl.store(kv_ptr + b * D * C + d[:, None] * C + c[None, :], acc,
             mask=(d[:, None] < D) & (c[None, :] < C))  # fmt: skip
    tl.store(ks_ptr + b * D + d, ks, mask=(d < D) & (cb == 0))


@triton.jit
def _query_kernel(q_ptr, kv_ptr, ks_ptr, out_ptr, P, D, C,
                  BD: tl.constexpr, BP: tl.constexpr, BC: tl.constexpr):  # fmt: skip
    b = tl.program_id(0)
    p = tl.program_id(1) * BP + tl.arange(0, BP)
    d = tl.arange(0, BD)
    qq = tl.load(q_ptr + b * P * D + p[:, None] * D + d[None, :],
                 mask=(p[:, None] < P) & (d[None, :] < D), other=0)  # fmt: skip
    ks = tl.load(ks_ptr + b * D + d, mask=d < D, other=0)
    den2 = 2 * tl.sum(qq * ks[None, :], axis=1)  # (BP,), >= 2 D on real rows
    den2 = tl.where(p < P, den2, 1)
    for c0 in range(0, C, BC):
        c = c0 + tl.arange(0, BC)
        kv = tl.load(kv_ptr + b * D * C + d[:, None] * C + c[None, :],
                     mask=(d[:, None] < D) & (c[None, :] < C), other=0)  # fmt: skip
        num = tl.sum(qq[:, :, None] * kv[None, :, :], axis=1)  # (BP, BC)
        t = 2 * num + (den2 // 2)[:, None]
        # floor(t / den2) with divisions of non-negative numbers only (no sign convention)
        a = tl.abs(t)
        pos = a // den2[:, None]
        neg = -((a + den2[:, None] - 1) // den2[:, None])
        res = tl.where(t >= 0, pos, neg)
        tl.store(out_ptr + b * P * C + p[:, None] * C + c[None, :], res,
                 mask=(p[:, None] < P) & (c[None, :] < C))  # fmt: skip


def linear_attention_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    q, k, v = (t.contiguous() for t in (q, k, v))
    b, p, d = q.shape
    n, c = k.shape[1], v.shape[2]
    bd = triton.next_power_of_2(d)
    kv = torch.empty(b, d, c, dtype=torch.int64, device=q.device)
    ks = torch.empty(b, d, dtype=torch.int64, device=q.device)
    _kv_sum_kernel[(b, triton.cdiv(c, BLOCK_C))](k, v, kv, ks, n, d, c,
                                                 BD=bd, BN=BLOCK_N, BC=BLOCK_C)  # fmt: skip
    out = torch.empty(b, p, c, dtype=torch.int64, device=q.device)
    _query_kernel[(b, triton.cdiv(p, BLOCK_P))](q, kv, ks, out, p, d, c,
                                                BD=bd, BP=BLOCK_P, BC=BLOCK_C)  # fmt: skip
    return out


@triton.jit
def _pointwise_kernel(x_ptr, w_ptr, b_ptr, out_ptr, CIN, COUT, N, scale, limit,
                      RELU: tl.constexpr, BO: tl.constexpr, BK: tl.constexpr,
                      BN: tl.constexpr):  # fmt: skip
    bi = tl.program_id(0)
    o = tl.program_id(1) * BO + tl.arange(0, BO)
    n = tl.program_id(2) * BN + tl.arange(0, BN)
    acc = tl.zeros((BO, BN), dtype=tl.float64)
    for k0 in range(0, CIN, BK):
        k = k0 + tl.arange(0, BK)
        w = tl.load(w_ptr + o[:, None] * CIN + k[None, :],
                    mask=(o[:, None] < COUT) & (k[None, :] < CIN), other=0.0)  # fmt: skip
        a = tl.load(x_ptr + bi * CIN * N + k[:, None] * N + n[None, :],
                    mask=(k[:, None] < CIN) & (n[None, :] < N), other=0.0)  # fmt: skip
        acc += tl.sum(w[:, :, None] * a[None, :, :], axis=1)
    acc += tl.load(b_ptr + o, mask=o < COUT, other=0.0)[:, None]
    if RELU:
        acc = tl.maximum(acc, 0.0)
    out = tl.floor(acc * scale + 0.5)
    out = tl.minimum(tl.maximum(out, -limit), limit)
    tl.store(out_ptr + bi * COUT * N + o[:, None] * N + n[None, :], out,
             mask=(o[:, None] < COUT) & (n[None, :] < N))  # fmt: skip


def fixed_pointwise_triton(x: torch.Tensor, net) -> torch.Tensor:
    a = x.contiguous().double()
    for layer in net.layers:
        w = layer.weight.reshape(layer.weight.shape[0], -1).to(a.device).contiguous()
        bias = layer.bias.to(a.device).contiguous()
        b, cin, n = a.shape
        cout = w.shape[0]
        out = torch.empty(b, cout, n, dtype=torch.float64, device=a.device)
        grid = (b, triton.cdiv(cout, 16), triton.cdiv(n, 32))
        _pointwise_kernel[grid](a, w, bias, out, cin, cout, n, 2.0**-layer.wbits, float(ACT_LIMIT),
                                RELU=bool(layer.relu), BO=16, BK=16, BN=32)  # fmt: skip
        a = out
    return a
