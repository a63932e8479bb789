"""``elic-int``: the ELIC model with every decoder network in exact integer arithmetic.

Same model and coding tables as ``elic`` (``models/elic.py``); what changes is how the decoder
computes: the hyper-synthesis and the context networks are ``IntNet`` twins (8-bit weights,
calibrated activation scales) instead of float64 ``FixedPointNet``s, and the synthesis is an
``IntSynthesis`` (``compress/intnet.py``), so the decoded *pixels*, not only the latents, are
identical on every CPU, instruction set and thread count. Files of this family come from
``compress.elic.quantize`` (``codec compress``) applied to a float ``elic`` model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..compress.intnet import IntNet, IntSynthesis
from . import frozen as frozen_protocol
from .elic import INT_KIND, FrozenElic
from .frozen import family


@family
class FrozenElicInt(FrozenElic):
    """``FrozenElic`` whose twins are integer networks, plus the integer synthesis ``gs``."""

    kinds = (INT_KIND,)

    @classmethod
    def twin_modules(cls, config) -> dict[str, str]:
        return {**super().twin_modules(config), "gs": "g_s"}

    @classmethod
    def load_twin(cls, name: str, arrays: dict[str, np.ndarray], prefix: str):
        if name == "gs":
            return IntSynthesis.from_arrays(arrays, prefix)
        return IntNet.from_arrays(arrays, prefix)

    @property
    def synthesis_int(self) -> IntSynthesis:
        return self.nets["gs"]


def load(path: Path) -> FrozenElicInt:
    """``frozen.load`` that accepts ``elic-int`` weights only."""
    return frozen_protocol.load(path, kinds=(INT_KIND,))
