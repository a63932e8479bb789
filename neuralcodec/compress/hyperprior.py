"""Integer synthesis for the mean-scale hyperprior (``mbt-mean``): ``mbt-mean-int`` weights.

::

    mbt-mean.safetensors (float g_s) --calibrate on training crops--> peaks of g_s' layers
      --IntSynthesis (compress/intnet.py)--> mbt-mean-int.safetensors: the integer synthesis
      only, plus the name and sha256 of the mbt-mean file it completes

``mbt-mean``'s entropy side is exact already (its hyper-synthesis is a fixed-point network and
its tables are integers); only the float synthesis made the decoded pixels depend on the CPU.
The integer twin of that synthesis is small (about 1.7 MB), so it ships as a separate file that
names the float file it belongs to, instead of a second copy of the whole model: the codec
``mbt-mean-int`` loads both, checks the pairing, and records the twin's sha256 in every file it
writes. Files written by ``mbt-mean`` keep decoding with the float synthesis they were made with.

Bit widths are ``elic-int``'s (``compress/elic.py``, measured in ``docs/compression.md``): the
two models share the hybrid synthesis architecture.

``python -m neuralcodec.compress.hyperprior --source weights/mbt-mean.safetensors --out OUT``
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..datasets.paths import data_root
from ..models import frozen as frozen_protocol
from ..models.frozen import Frozen, WeightsError
from .elic import BLOCK_BITS, CROP, SYNTHESIS_ACT_BITS, SYNTHESIS_WEIGHT_BITS, calibration_crops
from .intnet import IntNetError, IntSynthesis, PeakRecorder

KIND = "mean-scale-int"  # a twin file: the integer synthesis of a "mean-scale" model
BASE_KIND = "mean-scale"
PREFIX = "frozen.gs."


def calibrate(source: Frozen, crops: list[torch.Tensor]) -> list[float]:
    """Max |input| of every layer of ``g_s.residual`` over ``crops`` x every quality."""
    model = source.model.eval()
    mods = {f"gs.{i}": m for i, m in enumerate(model.g_s.residual)}
    with PeakRecorder(mods) as rec, torch.no_grad():
        for x in crops:
            for q in range(model.num_qualities):
                model(x, torch.tensor([q]))
    return [rec.peaks[f"gs.{i}"] for i in range(len(mods))]


def integer_synthesis(source: Frozen, peaks: list[float]) -> IntSynthesis:
    model = source.model
    return IntSynthesis.from_module(
        model.g_s,
        torch.exp(model.y_gain.log_inverse.detach()),
        peaks,
        act_bits=SYNTHESIS_ACT_BITS,
        weight_bits=SYNTHESIS_WEIGHT_BITS,
        block_bits=BLOCK_BITS,
    )


def save_twin(synthesis: IntSynthesis, path: Path, base: Path, meta: dict[str, Any]) -> str:
    """Write the twin file (atomically); returns its sha256."""
    arrays = synthesis.to_arrays(PREFIX)
    return frozen_protocol.save_twin(path, arrays, {"kind": KIND}, meta, base)


@dataclass
class FrozenWithIntSynthesis:
    """A frozen float model whose synthesis runs as ``synthesis_int``; everything else (tables,
    exact entropy networks, the analysis for encoding) is the base model's."""

    base: Frozen
    synthesis_int: IntSynthesis
    meta: dict[str, Any]

    def __getattr__(self, name: str) -> Any:  # config, model, y_tables, hs_fixed, ...
        if name == "base":  # not set yet (copy / unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.base, name)


def load(path: Path) -> FrozenWithIntSynthesis:
    """The twin at ``path`` joined to the float model it names (same folder, same sha256)."""
    path = Path(path)
    arrays, config, meta = frozen_protocol.read_weights_file(path)
    if config.get("kind") != KIND:
        raise WeightsError(f"{path.name} is not an integer-synthesis file ({KIND})")
    base = frozen_protocol.load_twin_base(path, config, (BASE_KIND,))
    try:
        synthesis = IntSynthesis.from_arrays(arrays, PREFIX)
    except IntNetError as exc:
        raise WeightsError(f"weights {path}: {exc}") from None
    if synthesis.block.cin != base.config.m:
        raise WeightsError(f"{path.name}: synthesis for {synthesis.block.cin} latent channels")
    return FrozenWithIntSynthesis(base, synthesis, {**base.meta, **meta})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m neuralcodec.compress.hyperprior", description=__doc__
    )
    p.add_argument("--source", type=Path, required=True, help="float mbt-mean weights")
    p.add_argument("--out", type=Path, required=True, help="integer-synthesis twin to write")
    p.add_argument("--data", type=Path, default=None, help="calibration photos (default: train)")
    p.add_argument("--images", type=int, default=12)
    p.add_argument("--model-id", default=None)
    args = p.parse_args(argv)
    if args.out.resolve().parent != args.source.resolve().parent:
        p.error("--out must be in the folder of --source (the twin names its base file)")
    torch.manual_seed(0)
    source = frozen_protocol.load(args.source, kinds=(BASE_KIND,))
    crops = calibration_crops(args.data or data_root() / "train", args.images)
    peaks = calibrate(source, crops)
    base_id = source.meta.get("model_id", "mbt-mean")
    meta = {
        "model_id": args.model_id or f"{base_id}-int",
        "quantized_from": base_id,
        "calibration": {"images": len(crops), "crop": CROP, "peaks": peaks},
    }
    sha = save_twin(integer_synthesis(source, peaks), args.out, args.source, meta)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, sha256 {sha[:16]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
