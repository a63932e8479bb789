"""Integer indices (vector-quantiser codebook indices, labels) with a categorical model.

::

    static     frozen table (``CategoricalModel.freeze``) -> every index coded with table 0
    adaptive   counts of 0..N-1 coded first (escape-coded small table), then the indices with
               the table both sides rebuild from those counts in integer arithmetic

The latent is an integer tensor with values in ``0..N-1``; indices outside are still coded
(escape) and come back as they were.
"""

from __future__ import annotations

import numpy as np
import torch

from neuralcodec.entropy.categorical import CategoricalModel
from neuralcodec.entropy.cdf import counts_to_quantized_cdf, tables_from_cdfs
from neuralcodec.entropy.tables import PRECISION, CodingTables

from .base import LatentCodec, LatentContext, round_to_int32
from .sinks import Sinks

# Counts: symbols 0..15 (roughly geometric), larger ones through the escape code.
_COUNT_SYMBOLS = 16


def _count_table() -> CodingTables:
    weights = [1 << max(0, 11 - s // 2) for s in range(_COUNT_SYMBOLS)] + [64]  # + escape
    cdf = counts_to_quantized_cdf(np.array(weights, np.int64), PRECISION)
    return tables_from_cdfs([cdf], [0], PRECISION)


COUNT_TABLE = _count_table()


class CategoricalLatent(LatentCodec):
    """``tables`` given: static coding; ``num_categories`` given instead: adaptive counts."""

    def __init__(
        self,
        tables: CodingTables | None = None,
        num_categories: int | None = None,
        stream: str = "idx",
    ):
        if (tables is None) == (num_categories is None):
            raise ValueError("give either frozen tables or num_categories (adaptive)")
        self.tables, self.num_categories, self.stream = tables, num_categories, stream

    def code(self, sinks: Sinks, latent: torch.Tensor | None, ctx: LatentContext) -> torch.Tensor:
        sink = sinks[self.stream]
        values = None if latent is None else round_to_int32(latent)
        tables = self.tables
        if tables is None:
            n = self.num_categories
            counts = None
            if values is not None:
                inside = values[(values >= 0) & (values < n)]
                counts = np.bincount(inside, minlength=n).astype(np.int32)
            counts = sink.code(np.zeros(n, np.int32), COUNT_TABLE, counts)
            if counts.min() < 0:
                raise ValueError("negative symbol count in the stream")
            tables = CategoricalModel.from_counts(counts.astype(np.int64))
        size = int(np.prod(ctx.shape))
        v = sink.code(CategoricalModel.indexes((size,)), tables, values)
        return torch.from_numpy(v.reshape(ctx.shape))
