"""More conditionals: Laplace and logistic scale families, and a Gaussian mixture.

``LaplaceConditional`` and ``LogisticConditional`` share everything with ``GaussianConditional``
(``ScaledConditional``) but their standard CDF. ``scale`` is the distribution's own scale
parameter: Laplace ``b`` (std ``b * sqrt 2``), logistic ``s`` (std ``s * pi / sqrt 3``).

``GaussianMixtureConditional`` has no fixed table set: each symbol has its own mixture, so its
coding path builds tables on both sides from *integer* parameters only::

    (weight logits, means, scales) --quantize_params--> MixtureParamsFixed (ints)
    MixtureParamsFixed --tables_for--> CodingTables (one per distinct tuple), indexes
        F(edge) = sum_k w_k * Phi_int((edge - mean_k) * inv_scale[idx_k])   (int64 throughout)

``Phi_int`` interpolates ``normal_cdf_table()``, the standard normal CDF on [0, 8] at 2^12 + 1
points scaled to 2^32, itself computed with exact integer arithmetic (a Taylor series in fixed
point), so every machine derives the same table, the same pmfs and the same bytes.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from .cdf import counts_to_quantized_cdf, tables_from_cdfs
from .models import (
    LIKELIHOOD_BOUND,
    MAX_HALF_WIDTH,
    ScaledConditional,
    ScaleTableModule,
    _std_normal_cdf,
    lower_bound,
)
from .tables import PRECISION, CodingTables


class LaplaceConditional(ScaledConditional):
    """Discretised Laplace ``L(mean, b = scale)`` integrated over unit bins."""

    def _std_cdf(self, x: torch.Tensor) -> torch.Tensor:
        half_tail = 0.5 * torch.exp(-torch.abs(x))
        return torch.where(x < 0, half_tail, 1 - half_tail)

    def _tail_quantile(self, side_mass: float) -> float:
        return math.log(0.5 / side_mass)


class LogisticConditional(ScaledConditional):
    """Discretised logistic ``Logistic(mean, s = scale)`` integrated over unit bins."""

    def _std_cdf(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x)

    def _tail_quantile(self, side_mass: float) -> float:
        return math.log(1 / side_mass - 1)


# --------------------------------------------------------------------- integer normal CDF

PHI_BITS = 32  # table values are Phi(z) * 2**32
PHI_GRID_BITS = 9  # grid step 2**-9 in z
PHI_POINTS = 1 << 12  # intervals on [0, 8]
_SERIES_BITS = 128
_PI_DIGITS = 60
_PI_SCALED = 3141592653589793238462643383279502884197169399375105820974944  # floor(pi * 10**60)


@functools.cache
def normal_cdf_table() -> np.ndarray:
    """``round(Phi(i / 2**9) * 2**32)`` for ``i = 0 .. 4096`` as int64, by integer arithmetic.

    ``Phi(z) - 1/2 = (2 pi)^-1/2 * sum_n (-1)^n z^(2n+1) / (2^n n! (2n+1))``, summed in 128-bit
    fixed point (the terms peak near 2^49 at z = 8, so no digit that matters is lost).
    """
    one = 1 << _SERIES_BITS
    inv_sqrt_2pi = math.isqrt((one * one * 10**_PI_DIGITS) // (2 * _PI_SCALED))
    grid2 = 1 << (2 * PHI_GRID_BITS)
    out = np.empty(PHI_POINTS + 1, dtype=np.int64)
    shift = _SERIES_BITS - PHI_BITS
    for i in range(PHI_POINTS + 1):
        term = i << (_SERIES_BITS - PHI_GRID_BITS)
        total, n = term, 0
        while term:
            n += 1
            term = term * i * i // (grid2 * 2 * n)
            total += (-1) ** n * (term // (2 * n + 1))
        phi = (one >> 1) + total * inv_sqrt_2pi // one
        out[i] = min((phi + (1 << (shift - 1))) >> shift, 1 << PHI_BITS)
    return out


def normal_cdf_fixed(z_fixed: np.ndarray, frac_bits: int) -> np.ndarray:
    """``Phi(z) * 2**32`` (int64) for ``z = z_fixed / 2**frac_bits`` (``frac_bits >= 9``).

    Linear interpolation of ``normal_cdf_table`` in integers; ``Phi(-z) = 2**32 - Phi(z)``;
    ``Phi(z) = 2**32`` for ``z >= 8``. Non-decreasing in ``z_fixed``.
    """
    table = normal_cdf_table()
    interp = frac_bits - PHI_GRID_BITS
    a = np.abs(z_fixed.astype(np.int64))
    i = np.minimum(a >> interp, PHI_POINTS)
    frac = np.where(a >> interp >= PHI_POINTS, 0, a & ((1 << interp) - 1))
    nxt = table[np.minimum(i + 1, PHI_POINTS)]
    value = table[i] + (((nxt - table[i]) * frac) >> interp)
    return np.where(z_fixed < 0, (1 << PHI_BITS) - value, value)


# --------------------------------------------------------------------- Gaussian mixture


MAX_COMPONENTS = 64


@dataclass(frozen=True)
class MixtureCodingConfig:
    mean_bits: int = 8  # means are sent as mean * 2**mean_bits
    weight_bits: int = 12  # component weights are integers summing to 2**weight_bits
    inv_scale_bits: int = 20  # 1 / scale_table[k] as round(2**20 / scale)
    z_bits: int = 23  # standardised edges in fixed point (>= 9 + interpolation bits)
    tail_sigmas: float = 6.5  # each component's range: mean +- ceil(6.5 * scale)
    max_half_width: int = MAX_HALF_WIDTH
    max_mean: int = 1 << 15  # |mean| bound in value units


@dataclass(frozen=True)
class MixtureParamsFixed:
    """Integer mixture parameters of ``n`` symbols with ``K`` components (all shaped (n, K))."""

    weights: np.ndarray  # int64 >= 0, each row sums to 2**weight_bits
    means: np.ndarray  # int64, mean * 2**mean_bits
    scale_indexes: np.ndarray  # int32 indexes into scale_table


class GaussianMixtureConditional(ScaleTableModule):
    """``p(v) = sum_k w_k N(mean_k, scale_k^2)`` integrated over unit bins, ``K`` components.

    Training: ``likelihood(values, weight_logits, means, scales)`` where the three parameter
    tensors have the shape of ``values`` plus a trailing ``K`` axis. Coding: the value coded is
    ``round(y)`` itself (the means live in the tables), with ``tables_for(params_fixed)``.
    Built for small latents (hyper-latents, side information): one table per distinct tuple.
    """

    def __init__(
        self,
        num_components: int,
        scale_table: np.ndarray | None = None,
        config: MixtureCodingConfig | None = None,
    ):
        super().__init__(scale_table)
        if not 1 <= num_components <= MAX_COMPONENTS:
            raise ValueError(f"num_components must be in 1..{MAX_COMPONENTS}, got {num_components}")
        self.num_components = num_components
        self.config = config or MixtureCodingConfig()
        if self.config.z_bits - PHI_GRID_BITS < 1 or not 1 <= self.config.mean_bits <= 16:
            raise ValueError("need z_bits > 9 and mean_bits in 1..16")

    def likelihood(
        self,
        values: torch.Tensor,
        weight_logits: torch.Tensor,
        means: torch.Tensor,
        scales: torch.Tensor,
    ) -> torch.Tensor:
        expected = (*values.shape, self.num_components)
        for name, t in (("weight_logits", weight_logits), ("means", means), ("scales", scales)):
            if tuple(t.shape) != expected:
                raise ValueError(f"{name} must have shape {expected}, got {tuple(t.shape)}")
        v = torch.abs(values.unsqueeze(-1) - means)
        scales = lower_bound(scales, self.scale_min)
        mass = _std_normal_cdf((0.5 - v) / scales) - _std_normal_cdf((-0.5 - v) / scales)
        weights = torch.softmax(weight_logits, dim=-1)
        return lower_bound((weights * mass).sum(dim=-1), LIKELIHOOD_BOUND)

    @torch.no_grad()
    def quantize_params(
        self, weight_logits: torch.Tensor, means: torch.Tensor, scales: torch.Tensor
    ) -> MixtureParamsFixed:
        """Float parameters (..., K) -> integers, flattened to (n, K) in C order.

        A float convenience for the encoder and for tests; a decoder that must match bit for bit
        gets its integers from a fixed-point network instead.
        """
        k, cfg = self.num_components, self.config
        probs = torch.softmax(weight_logits.double(), dim=-1).reshape(-1, k).cpu().numpy()
        fixed_means = torch.round(means.double() * 2.0**cfg.mean_bits).reshape(-1, k)
        return MixtureParamsFixed(
            weights=_integer_weights(probs, cfg.weight_bits),
            means=fixed_means.cpu().numpy().astype(np.int64),
            scale_indexes=self.scale_indexes(scales.reshape(-1, k)),
        )

    def tables_for(
        self, params: MixtureParamsFixed, precision: int = PRECISION
    ) -> tuple[CodingTables, np.ndarray]:
        """One table per distinct parameter tuple, and the int32 table index of every symbol."""
        w, m, idx = self._checked(params)
        rows = np.concatenate([w, m, idx.astype(np.int64)], axis=1)
        unique, inverse = np.unique(rows, axis=0, return_inverse=True)
        k = self.num_components
        cdfs, offsets = [], []
        for row in unique:
            cdf, offset = self._mixture_cdf(row[:k], row[k : 2 * k], row[2 * k :], precision)
            cdfs.append(cdf)
            offsets.append(offset)
        tables = tables_from_cdfs(cdfs, offsets, precision)
        return tables, inverse.reshape(-1).astype(np.int32)

    def _checked(self, params: MixtureParamsFixed):
        k, cfg = self.num_components, self.config
        w, m, idx = (np.asarray(a) for a in (params.weights, params.means, params.scale_indexes))
        if any(a.ndim != 2 or a.shape[1] != k or a.shape != w.shape for a in (w, m, idx)):
            raise ValueError(f"mixture parameters must all be shaped (n, {k})")
        if any(not np.issubdtype(a.dtype, np.integer) for a in (w, m, idx)):
            raise ValueError("mixture parameters must be integer arrays")
        if np.any(w < 0) or np.any(w.sum(axis=1) != 1 << cfg.weight_bits):
            raise ValueError(f"weights must be >= 0 and sum to 2**{cfg.weight_bits} per symbol")
        if np.any(np.abs(m) > cfg.max_mean << cfg.mean_bits):
            raise ValueError(f"|mean| must be <= {cfg.max_mean}")
        if np.any(idx < 0) or np.any(idx >= self.scale_table.numel()):
            raise ValueError(f"scale indexes must be in 0..{self.scale_table.numel() - 1}")
        return w.astype(np.int64), m.astype(np.int64), idx.astype(np.int64)

    def _integer_scale_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """Per scale index: ``round(2**inv_scale_bits / scale)`` and ``ceil(tail_sigmas * scale)``.

        Both come from the stored float64 table by one correctly rounded IEEE operation each.
        """
        table = self.scale_table.cpu().numpy()
        inv = np.rint(2.0**self.config.inv_scale_bits / table).astype(np.int64)
        half = np.ceil(self.config.tail_sigmas * table).astype(np.int64)
        return inv, np.minimum(half, self.config.max_half_width)

    def _value_range(self, w, m, idx, half) -> tuple[int, int]:
        """Integer range covering every component's ``mean +- half``, capped around the heaviest."""
        floors = m >> self.config.mean_bits
        lo = int((floors - half[idx]).min())
        hi = int((floors + 1 + half[idx]).max())
        cap = self.config.max_half_width
        if hi - lo > 2 * cap:
            centre = int(floors[int(np.argmax(w))])
            lo, hi = max(lo, centre - cap), min(hi, centre + cap)
        return lo, hi

    def _mixture_cdf(self, w, m, idx, precision: int) -> tuple[np.ndarray, int]:
        """Integer mixture CDF on the bin edges of [lo, hi] -> quantised cdf (+ escape), lo."""
        cfg = self.config
        inv, half = self._integer_scale_tables()
        lo, hi = self._value_range(w, m, idx, half)
        edges = (np.arange(lo, hi + 2, dtype=np.int64) << cfg.mean_bits) - (
            1 << (cfg.mean_bits - 1)
        )
        shift = cfg.mean_bits + cfg.inv_scale_bits - cfg.z_bits
        total = np.zeros(edges.size, dtype=np.int64)
        for wk, mk, ik in zip(w.tolist(), m.tolist(), idx.tolist(), strict=True):
            prod = (edges - mk) * int(inv[ik])
            z = prod >> shift if shift >= 0 else prod << -shift
            total += wk * normal_cdf_fixed(z, cfg.z_bits)
        full = 1 << (cfg.weight_bits + PHI_BITS)
        escape = int(total[0]) + (full - int(total[-1]))
        counts = np.append(np.diff(total), escape)
        return counts_to_quantized_cdf(counts, precision), lo


def _integer_weights(probs: np.ndarray, bits: int) -> np.ndarray:
    """Rows of probabilities -> non-negative ints summing to 2**bits (rest to the largest)."""
    total = 1 << bits
    w = np.rint(probs * total).astype(np.int64)
    top = np.argmax(w, axis=1)
    rows = np.arange(w.shape[0])
    w[rows, top] += total - w.sum(axis=1)
    return w
