"""Categorical model for discrete symbols such as vector-quantiser indices.

::

    training   indices --likelihood--> softmax(logits)[indices]      (differentiable)
    coding     logits --freeze()--> one table: symbols 0..N-1, escape     index 0 for every symbol
    adaptive   counts (sent in the stream) --from_counts()--> one table (integers only)

Indices outside ``0..N-1`` are still encodable through the escape symbol.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .cdf import counts_to_quantized_cdf, pmf_to_quantized_cdf, tables_from_cdfs
from .models import LIKELIHOOD_BOUND
from .tables import PRECISION, CodingTables


class CategoricalModel(nn.Module):
    """A learned distribution over ``num_categories`` symbols (logits, initially uniform)."""

    def __init__(self, num_categories: int):
        super().__init__()
        if not 1 <= num_categories < 1 << PRECISION:
            raise ValueError(f"num_categories must be in 1..{(1 << PRECISION) - 1}")
        self.num_categories = num_categories
        self.logits = nn.Parameter(torch.zeros(num_categories))

    def likelihood(self, indices: torch.Tensor) -> torch.Tensor:
        """Probability of every index (any shape, integer dtype), same shape as ``indices``."""
        if indices.dtype.is_floating_point or indices.dtype == torch.bool:
            raise ValueError(f"indices must be integers, got {indices.dtype}")
        if indices.numel() and (indices.min() < 0 or indices.max() >= self.num_categories):
            raise ValueError(f"indices must be in 0..{self.num_categories - 1}")
        probs = torch.softmax(self.logits, dim=0)
        return probs[indices].clamp_min(LIKELIHOOD_BOUND)

    @torch.no_grad()
    def freeze(self, precision: int = PRECISION) -> CodingTables:
        """One table over ``0 .. N-1``; the escape gets the minimum count (one)."""
        probs = torch.softmax(self.logits.detach().double(), dim=0).cpu().numpy()
        cdf = pmf_to_quantized_cdf(np.append(probs, 0.0), precision)
        return tables_from_cdfs([cdf], [0], precision)

    @staticmethod
    def from_counts(counts: np.ndarray, precision: int = PRECISION) -> CodingTables:
        """Integer occurrence counts of ``0 .. N-1`` -> one table, in integer arithmetic only.

        Zero counts keep a non-zero frequency (every symbol stays encodable); all-zero counts
        give a uniform table. Encoder and decoder derive identical tables from the same counts.
        """
        c = np.asarray(counts)
        if c.ndim != 1 or c.size == 0 or not np.issubdtype(c.dtype, np.integer):
            raise ValueError("counts must be a non-empty 1-D integer array")
        cdf = counts_to_quantized_cdf(np.append(c.astype(np.int64), 0), precision)
        return tables_from_cdfs([cdf], [0], precision)

    @staticmethod
    def indexes(shape: tuple[int, ...]) -> np.ndarray:
        """The table index of every symbol: all zeros (int32, flattened)."""
        return np.zeros(int(np.prod(shape)), dtype=np.int32)
