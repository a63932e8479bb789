"""Entropy models: differentiable likelihoods for training.

* ``FactorizedDensity`` — a learned, per-channel univariate density (Balle et al. 2018, the
  "non-parametric" prior used for hyper-latents). Its CDF is a small monotone network.
* ``GaussianConditional`` — a discretised Gaussian whose mean and scale come from another
  network (hyper-decoder / context model). Coding uses a fixed table of scales.

Training path: ``likelihood(values, ...)`` returns the probability mass of the unit-width bin
centred on each value, differentiable in the values and the parameters.

Coding path: ``freeze()`` turns the distribution into immutable integer ``CodingTables`` once
(stored with the weights); the codec then picks a table per symbol with an integer index::

    FactorizedDensity   v = round(latent)          index = channel       (channel_indexes)
    GaussianConditional v = round(y - mean)        index = scale bucket  (scale_indexes[_fixed])

``conditionals.py`` adds the Laplace and logistic variants, Gaussian mixtures and categoricals.
"""

from __future__ import annotations

import abc
import math
import statistics

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .cdf import build_tables
from .tables import PRECISION, CodingTables

LIKELIHOOD_BOUND = 1e-9
FREEZE_TAIL_MASS = 1e-9  # probability left to the escape symbol, both tails together
MAX_HALF_WIDTH = 1 << 12  # a table never spans more than 2 * 4096 + 1 values; the rest escapes
MEDIAN_BOUND = 1 << 20  # factorized medians are searched in [-2^20, 2^20]
MAX_FRAC_BITS = 32  # fixed-point scales: scale * 2**frac_bits as int64
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


class _LowerBound(torch.autograd.Function):
    """``max(x, bound)`` whose gradient still flows below the bound when it points upward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, bound: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        passes = (x >= ctx.bound) | (grad < 0)
        return grad * passes.to(grad.dtype), None


def lower_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    """Clamp from below for training: values stuck under ``bound`` (a scale that starts too
    small, a likelihood that underflows) still receive the gradient that would lift them."""
    return _LowerBound.apply(x, bound)


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
            x = torch.matmul(F.softplus(mat.to(x.dtype)), x) + bias.to(x.dtype)
            if k < len(self.factors):
                x = x + torch.tanh(self.factors[k].to(x.dtype)) * torch.tanh(x)
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
        return lower_bound(lik, LIKELIHOOD_BOUND)

    def channel_indexes(self, shape: tuple[int, ...]) -> np.ndarray:
        """Table index of every element of a (B, C, H, W) latent: its channel, C-order, int32."""
        if len(shape) != 4 or shape[1] != self.channels:
            raise ValueError(f"expected (B, {self.channels}, H, W), got {tuple(shape)}")
        ids = np.arange(self.channels, dtype=np.int32)[None, :, None, None]
        return np.ascontiguousarray(np.broadcast_to(ids, tuple(shape))).reshape(-1)

    @torch.no_grad()
    def freeze(
        self,
        precision: int = PRECISION,
        tail_mass: float = FREEZE_TAIL_MASS,
        max_half_width: int = MAX_HALF_WIDTH,
    ) -> CodingTables:
        """One table per channel over the integers around the channel's median.

        ``logits_cdf`` is evaluated in float64 on the bin edges ``v +- 1/2``: the range grows
        outward from the rounded median (doubling) until each tail holds less than
        ``tail_mass / 2`` or the half-width reaches ``max_half_width``, then is trimmed to the
        values whose bin lies inside the tails. The tails become the escape symbol.
        """
        if not 0 < tail_mass < 1:
            raise ValueError(f"tail_mass must be in (0, 1), got {tail_mass}")
        centres = self._integer_medians(MEDIAN_BOUND)
        half = self._half_width(centres, tail_mass / 2, max_half_width)
        steps = torch.arange(-half, half + 2, dtype=torch.float64, device=centres.device)
        logits = self.logits_cdf((centres[:, None] + steps - 0.5)[:, None, :])[:, 0, :].cpu()
        pmfs, offsets = [], []
        for c in range(self.channels):
            lo, hi = _trim_range(logits[c], tail_mass / 2)
            pmfs.append(_bin_pmf_with_escape(logits[c, lo : hi + 2]))
            offsets.append(int(centres[c]) - half + lo)
        return build_tables(pmfs, offsets, precision)

    def _integer_medians(self, bound: int) -> torch.Tensor:
        """Per-channel median of the density (bisection on the CDF logit), rounded, float64."""
        device = self.matrices[0].device
        lo = torch.full((self.channels, 1, 1), -float(bound), dtype=torch.float64, device=device)
        hi = -lo
        for _ in range(48):
            mid = (lo + hi) / 2
            above = self.logits_cdf(mid) > 0
            hi = torch.where(above, mid, hi)
            lo = torch.where(above, lo, mid)
        return torch.round((lo + hi) / 2).reshape(-1)

    def _half_width(self, centres: torch.Tensor, side_mass: float, cap: int) -> int:
        """Smallest power-of-two half-width (or ``cap``) whose two tails are below ``side_mass``."""
        half = 8
        while half < cap:
            edges = torch.stack([centres - half - 0.5, centres + half + 0.5], dim=1)
            logits = self.logits_cdf(edges[:, None, :])[:, 0, :]
            lower, upper = torch.sigmoid(logits[:, 0]), torch.sigmoid(-logits[:, 1])
            if bool((lower < side_mass).all() and (upper < side_mass).all()):
                break
            half *= 2
        return min(half, cap)


def _trim_range(edge_logits: torch.Tensor, side_mass: float) -> tuple[int, int]:
    """Edge logits of ``n`` consecutive values (n + 1 edges) -> first, last value index to keep.

    Keeps the values whose lower-tail mass ``F(v - 1/2)`` and upper-tail mass ``1 - F(v + 1/2)``
    both exceed ``side_mass``, plus the boundary values themselves.
    """
    n = edge_logits.numel() - 1
    below = int((torch.sigmoid(edge_logits[:-1]) <= side_mass).sum())
    above = int((torch.sigmoid(-edge_logits[1:]) <= side_mass).sum())
    lo = max(below - 1, 0)
    hi = n - above if above else n - 1
    return lo, max(hi, lo)


def _bin_pmf_with_escape(edge_logits: torch.Tensor) -> np.ndarray:
    """CDF logits at ``n + 1`` consecutive edges -> ``n`` bin masses followed by the tail mass.

    Each difference is taken on the side of the sigmoid far from 1, as in ``likelihood``.
    """
    lower, upper = edge_logits[:-1], edge_logits[1:]
    sign = torch.where(lower + upper > 0, -1.0, 1.0).to(edge_logits.dtype)
    mass = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
    tail = torch.sigmoid(edge_logits[:1]) + torch.sigmoid(-edge_logits[-1:])
    return torch.cat([mass, tail]).numpy()


class ScaleTableModule(nn.Module):
    """Holds the float64 ``scale_table`` buffer and maps scales to table indexes.

    A scale is coded with the nearest table scale in the log domain: index ``k`` covers
    ``(bound[k-1], bound[k]]`` with ``bound[k] = sqrt(scale_table[k] * scale_table[k+1])``, the
    geometric midpoints (``scale_bounds``); below the first or above the last midpoint the end
    tables are used. Both mappings pick the smallest ``k`` with ``bound[k] >= scale``:
    ``scale_indexes`` from float scales, ``scale_indexes_fixed`` from fixed-point integers.
    (Rounding up to the next table scale instead, on a 64-scale table, measured 1.7-5% more bits
    than the continuous likelihoods on two Kodak images; the nearest scale costs about 0.1%.)
    """

    def __init__(self, scale_table: np.ndarray | None = None):
        super().__init__()
        table = default_scale_table() if scale_table is None else np.asarray(scale_table)
        if table.ndim != 1 or table.size == 0 or table[0] <= 0 or np.any(np.diff(table) <= 0):
            raise ValueError("scale_table must be 1-D, positive and strictly increasing")
        self.register_buffer("scale_table", torch.as_tensor(table, dtype=torch.float64))

    @property
    def scale_min(self) -> float:
        return float(self.scale_table[0])

    def scale_bounds(self) -> np.ndarray:
        """float64 ``[n - 1]``: upper decision bound of each index but the last."""
        t = self.scale_table.cpu().numpy()
        return np.sqrt(t[:-1] * t[1:])

    def scale_indexes(self, scales: torch.Tensor) -> np.ndarray:
        """Float convenience: smallest ``k`` with ``scale_bounds()[k] >= scale``, else the last.

        Same shape as ``scales``, int32. Not bit-exact across machines when ``scales`` come from
        float networks; the decoder-side decision belongs to ``scale_indexes_fixed``.
        """
        s = scales.detach().to("cpu", torch.float64).contiguous()
        if not bool(torch.isfinite(s).all()):
            raise ValueError("scales must be finite")
        idx = torch.searchsorted(torch.from_numpy(self.scale_bounds()), s, side="left")
        return idx.numpy().astype(np.int32)

    def scale_thresholds(self, frac_bits: int) -> np.ndarray:
        """``floor(scale_bounds() * 2**frac_bits)`` as int64: the integer decision thresholds.

        For an integer ``f``, ``bound[k] >= f / 2**frac_bits`` iff ``threshold[k] >= f``.
        """
        if not isinstance(frac_bits, int | np.integer) or not 0 <= frac_bits <= MAX_FRAC_BITS:
            raise ValueError(f"frac_bits must be an int in 0..{MAX_FRAC_BITS}, got {frac_bits!r}")
        return np.floor(self.scale_bounds() * 2.0**frac_bits).astype(np.int64)

    def scale_indexes_fixed(self, scales_fixed: np.ndarray, frac_bits: int) -> np.ndarray:
        """Integer-only ``scale_indexes`` for scales given as ``scale * 2**frac_bits`` integers.

        Smallest ``k`` with ``scale_thresholds(frac_bits)[k] >= scale_fixed``, else the last. Since
        ``scale_fixed`` is an integer, this equals ``scale_indexes(scale_fixed / 2**frac_bits)``
        exactly, and it is the same on every machine (thresholds come from the stored float64
        table by one exact power-of-two scaling and a floor).
        """
        sf = np.asarray(scales_fixed)
        if not np.issubdtype(sf.dtype, np.integer):
            raise ValueError(f"scales_fixed must be integers, got {sf.dtype}")
        thresholds = self.scale_thresholds(frac_bits)
        return np.searchsorted(thresholds, sf.astype(np.int64), side="left").astype(np.int32)


class ScaledConditional(ScaleTableModule, abc.ABC):
    """Discretised zero-mean location-scale density over unit bins; a subclass gives its CDF.

    ``p(v | s) = F((1/2 - |v|) / s) - F((-1/2 - |v|) / s)`` for a standard CDF ``F`` symmetric
    about 0. Training clamps scales below at ``scale_table[0]``. Coding quantises each scale to a
    table index (the nearest table scale, in the log domain) and codes ``round(y - mean)`` with
    that table::

        scales --scale_indexes / scale_indexes_fixed--> indexes ---+
        y, means --round(y - mean)--> values ----------------------+--> rangecoder(tables)
        scale_table --freeze()--> tables (one per scale, [-k, k] + escape)
    """

    @abc.abstractmethod
    def _std_cdf(self, x: torch.Tensor) -> torch.Tensor:
        """CDF of the unit-scale distribution (symmetric about 0)."""

    @abc.abstractmethod
    def _tail_quantile(self, side_mass: float) -> float:
        """``q > 0`` with ``F(-q) = side_mass``."""

    def likelihood(
        self, values: torch.Tensor, scales: torch.Tensor, means: torch.Tensor | None = None
    ) -> torch.Tensor:
        centred = values - means if means is not None else values
        scales = lower_bound(scales, self.scale_min)
        return lower_bound(self._bin_mass(centred, scales), LIKELIHOOD_BOUND)

    def _bin_mass(self, centred: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        v = torch.abs(centred)
        upper = self._std_cdf((0.5 - v) / scales)
        lower = self._std_cdf((-0.5 - v) / scales)
        return upper - lower

    @torch.no_grad()
    def freeze(
        self,
        precision: int = PRECISION,
        tail_mass: float = FREEZE_TAIL_MASS,
        max_half_width: int = MAX_HALF_WIDTH,
    ) -> CodingTables:
        """Table ``k`` covers ``[-h_k, h_k]``, ``h_k = min(ceil(q * scale_table[k]), cap)``.

        ``q`` leaves ``tail_mass / 2`` in each tail; both tails form the escape symbol.
        """
        if not 0 < tail_mass < 1:
            raise ValueError(f"tail_mass must be in (0, 1), got {tail_mass}")
        q = self._tail_quantile(tail_mass / 2)
        pmfs, offsets = [], []
        for scale in self.scale_table.tolist():
            half = int(min(max(math.ceil(q * scale), 1), max_half_width))
            v = torch.arange(-half, half + 1, dtype=torch.float64)
            s = torch.tensor(scale, dtype=torch.float64)
            tail = 2 * self._std_cdf(-(half + 0.5) / s).reshape(1)
            pmfs.append(torch.cat([self._bin_mass(v, s), tail]).numpy())
            offsets.append(-half)
        return build_tables(pmfs, offsets, precision)


class GaussianConditional(ScaledConditional):
    """Discretised Gaussian ``N(mean, scale^2)`` integrated over unit bins.

    Scales are bounded below by the smallest coding scale so that training and coding agree.
    """

    def _std_cdf(self, x: torch.Tensor) -> torch.Tensor:
        return _std_normal_cdf(x)

    def _tail_quantile(self, side_mass: float) -> float:
        return -statistics.NormalDist().inv_cdf(side_mass)


def quantize_noise(x: torch.Tensor) -> torch.Tensor:
    """Additive uniform noise in [-1/2, 1/2): the training proxy for rounding (rate term)."""
    return x + torch.empty_like(x).uniform_(-0.5, 0.5)


def quantize_ste(x: torch.Tensor) -> torch.Tensor:
    """Rounding with a straight-through gradient (distortion term)."""
    return x + (torch.round(x) - x).detach()
