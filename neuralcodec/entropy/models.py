"""Entropy models: differentiable likelihoods for training.

* ``FactorizedDensity`` — a learned, per-channel univariate density (Balle et al. 2018, the
  "non-parametric" prior used for hyper-latents). Its CDF is a small monotone network.
* ``GaussianConditional`` — a discretised Gaussian whose mean and scale come from another
  network (hyper-decoder / context model). Coding uses a fixed table of scales.

Training path: ``likelihood(values, ...)`` returns the probability mass of the unit-width bin
centred on each value, differentiable in the values and the parameters.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

LIKELIHOOD_BOUND = 1e-9
SCALE_MIN = 0.11
SCALE_MAX = 256.0
NUM_SCALES = 64


def default_scale_table(
    lo: float = SCALE_MIN, hi: float = SCALE_MAX, n: int = NUM_SCALES
) -> np.ndarray:
    """``n`` log-spaced scales from ``lo`` to ``hi`` (float64, the canonical coding scales)."""
    return np.exp(np.linspace(math.log(lo), math.log(hi), n))


def _std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-x * (2**-0.5))


class FactorizedDensity(nn.Module):
    """Per-channel density ``p_c`` whose CDF is a monotone MLP of the scalar input.

    The network maps a scalar to a logit: layers ``x <- softplus(H_k) x + b_k`` (monotone since
    ``softplus(H_k) > 0``) with a gated ``x + tanh(a_k) * tanh(x)`` non-linearity between them.
    """

    def __init__(
        self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0
    ):
        super().__init__()
        self.channels = channels
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for k in range(len(filters) + 1):
            init = math.log(math.expm1(1 / scale / dims[k + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[k + 1], dims[k]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[k + 1], 1) - 0.5))
            if k < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[k + 1], 1)))

    def logits_cdf(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (C, 1, N) -> logits of the CDF at ``x``, same shape."""
        for k, (mat, bias) in enumerate(zip(self.matrices, self.biases, strict=True)):
            x = torch.matmul(F.softplus(mat), x) + bias
            if k < len(self.factors):
                x = x + torch.tanh(self.factors[k]) * torch.tanh(x)
        return x

    def likelihood(self, values: torch.Tensor) -> torch.Tensor:
        """Mass of ``[v - 1/2, v + 1/2]`` for every element of ``values`` (B, C, H, W)."""
        b, c, h, w = values.shape
        v = values.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lower = self.logits_cdf(v - 0.5)
        upper = self.logits_cdf(v + 0.5)
        # Evaluate in the tail where the sigmoids are far from 1 (numerical precision).
        sign = -torch.sign(lower + upper).detach()
        lik = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        lik = lik.reshape(c, b, h, w).permute(1, 0, 2, 3)
        return lik.clamp_min(LIKELIHOOD_BOUND)


class GaussianConditional(nn.Module):
    """Discretised Gaussian ``N(mean, scale^2)`` integrated over unit bins.

    Scales are bounded below by the smallest coding scale so that training and coding agree.
    """

    def __init__(self, scale_table: np.ndarray | None = None):
        super().__init__()
        table = default_scale_table() if scale_table is None else np.asarray(scale_table)
        self.register_buffer("scale_table", torch.as_tensor(table, dtype=torch.float64))

    @property
    def scale_min(self) -> float:
        return float(self.scale_table[0])

    def likelihood(
        self, values: torch.Tensor, scales: torch.Tensor, means: torch.Tensor | None = None
    ) -> torch.Tensor:
        centred = values - means if means is not None else values
        scales = scales.clamp_min(self.scale_min)
        v = torch.abs(centred)
        upper = _std_normal_cdf((0.5 - v) / scales)
        lower = _std_normal_cdf((-0.5 - v) / scales)
        return (upper - lower).clamp_min(LIKELIHOOD_BOUND)


def quantize_noise(x: torch.Tensor) -> torch.Tensor:
    """Additive uniform noise in [-1/2, 1/2): the training proxy for rounding (rate term)."""
    return x + torch.empty_like(x).uniform_(-0.5, 0.5)


def quantize_ste(x: torch.Tensor) -> torch.Tensor:
    """Rounding with a straight-through gradient (distortion term)."""
    return x + (torch.round(x) - x).detach()
