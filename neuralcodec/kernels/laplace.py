"""Rate of integer-ish values under a unit-bin discretised Laplace (the INR training loss).

``laplace_rate(y, mu, log_scale)`` -> total bits of flat ``y`` given flat ``mu`` and ``log b``
(``log b`` clamped to [log 0.01, log 1000], each likelihood to at least 2^-17), differentiable
in all three.

* reference: ``laplace_bits(...).sum()``, the plain definition, differentiated by autograd;
* triton: the same closed forms in one Triton kernel (``laplace_triton``), every intermediate in
  registers; for CUDA tensors (and on CPU under ``TRITON_INTERPRET=1``, for the parity test);
* autograd: ``LaplaceBits``, which computes the bits *and* their closed-form derivatives block
  by block (``CHUNK`` elements) in one pass and keeps only the two gradient factors for the
  backward. Autograd over the dozen element-wise steps of the definition would write and re-read
  a full-size tensor for each; blocks keep them in cache.
"""

from __future__ import annotations

import importlib.util
import math
import os

import torch

from .dispatch import Implementation, always, reference

LOG_SCALE_MIN = math.log(0.01)
LOG_SCALE_MAX = math.log(1000.0)
LIKELIHOOD_MIN = 2.0**-17
CHUNK = 1 << 15  # elements per block


def laplace_bits(y: torch.Tensor, mu: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """Information content (bits) of each ``y`` under a unit-bin discretised Laplace."""
    b = torch.exp(log_scale.clamp(LOG_SCALE_MIN, LOG_SCALE_MAX))
    d = torch.abs(y - mu)
    # mass of [d - 1/2, d + 1/2] of a Laplace centred at 0, written to stay accurate in the tail
    upper = torch.exp(-(d - 0.5).clamp_min(0) / b)
    lower = torch.exp(-(d + 0.5) / b)
    inside = 1 - 0.5 * (torch.exp(-(0.5 - d).clamp_min(0) / b) + lower)
    mass = torch.where(d < 0.5, inside, 0.5 * (upper - lower))
    return -torch.log2(mass.clamp_min(LIKELIHOOD_MIN))


def laplace_rate_reference(y, mu, log_scale) -> torch.Tensor:
    return laplace_bits(y.reshape(-1), mu.reshape(-1), log_scale.reshape(-1)).sum()


def laplace_terms(y, mu, log_scale):
    """Per element: (bits, d bits/d y, d bits/d log_scale) of a unit-bin Laplace, no autograd.

    With ``u = 1 / b`` and ``d = |y - mu|`` the bin mass is ``exp(-d u) sinh(u / 2)`` for
    ``d >= 1/2`` and ``1 - exp(-u / 2) cosh(d u)`` inside the central bin.
    """
    ls = log_scale.clamp(LOG_SCALE_MIN, LOG_SCALE_MAX)
    u = torch.exp(-ls)
    r = y - mu
    d = r.abs()
    half = 0.5 * u
    # log sinh(u/2) = u/2 + log(1 - exp(-u)) - log 2, accurate for small and large u
    tail = d * u - (half + torch.log1p(-torch.exp(-u).clamp_max(1 - 1e-7)) - math.log(2.0))
    e = torch.exp(-half)
    cosh, sinh = torch.cosh(d * u), torch.sinh(d * u)
    inside_mass = (1 - e * cosh).clamp_min(1e-30)
    inside = -torch.log(inside_mass)
    outer = d >= 0.5
    nats = torch.where(outer, tail, inside)
    # derivatives of the nats w.r.t. d and u
    g_d = torch.where(outer, u, e * u * sinh / inside_mass)
    coth = 1 / torch.tanh(half).clamp_min(1e-30)
    g_u = torch.where(outer, d - 0.5 * coth, -e * (0.5 * cosh - d * sinh) / inside_mass)
    limit = -math.log(LIKELIHOOD_MIN)
    live = nats < limit  # clamped likelihoods carry no gradient
    scale = live / math.log(2.0)
    g_y = g_d * torch.sign(r) * scale
    in_range = (log_scale > LOG_SCALE_MIN) & (log_scale < LOG_SCALE_MAX)
    g_ls = -g_u * u * in_range * scale
    return nats.clamp_max(limit) / math.log(2.0), g_y, g_ls


class LaplaceBits(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, mu, log_scale):
        total = y.new_zeros(())
        gy, gls = torch.empty_like(y), torch.empty_like(y)
        for a in range(0, y.numel(), CHUNK):
            sl = slice(a, a + CHUNK)
            bits, gy[sl], gls[sl] = laplace_terms(y[sl], mu[sl], log_scale[sl])
            total += bits.sum()
        ctx.save_for_backward(gy, gls)
        return total

    @staticmethod
    def backward(ctx, grad):
        gy, gls = ctx.saved_tensors
        g_y = gy * grad
        return g_y, -g_y, gls * grad


def laplace_rate_autograd(y, mu, log_scale) -> torch.Tensor:
    return LaplaceBits.apply(y.reshape(-1), mu.reshape(-1), log_scale.reshape(-1))


def laplace_rate_triton(y, mu, log_scale) -> torch.Tensor:
    from .laplace_triton import LaplaceBitsTriton  # imports triton: only when it runs

    return LaplaceBitsTriton.apply(y.reshape(-1), mu.reshape(-1), log_scale.reshape(-1))


def _triton_usable(y: torch.Tensor, *args) -> bool:
    on_device = y.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"
    return on_device and importlib.util.find_spec("triton") is not None


IMPLEMENTATIONS = (
    Implementation("triton", laplace_rate_triton, _triton_usable),
    Implementation("autograd", laplace_rate_autograd, always),
    reference(laplace_rate_reference),
)
