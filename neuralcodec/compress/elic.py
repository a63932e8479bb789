"""Post-training quantisation of a float ``elic`` model into ``elic-int`` weights.

::

    elic (float transforms, float64 context nets) --calibrate on training crops--> peaks
      --IntNet / IntSynthesis (weights per output channel, activations per tensor)--> elic-int

Calibration runs the float model (eval mode: rounded latents) over centre crops of training
photos at every quality and records the largest input magnitude of every layer the decoder runs;
those set the power-of-two activation scales. Kodak is never used (``datasets.training`` refuses
it). The bit widths are the measured trade-off (``docs/compression.md``): entropy-model networks
8-bit weights, 14-bit activations into the first layer (the latents) and 11-bit after it; synthesis 12-bit block transform, 10-bit weights in the
first deconvolution and 8-bit after it, 16-bit activations at 1/16 and 1/8 of the resolution and
12-bit above, where most of the work is.

``python -m neuralcodec.compress.elic --source weights/elic.safetensors --out OUT`` writes the
file; ``--images N`` sets the number of calibration photos.
"""

from __future__ import annotations

import argparse
import copy
import sys
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..datasets.paths import data_root
from ..datasets.training import _image_files
from ..models import frozen as frozen_protocol
from ..models.elic import INT_KIND, FrozenElic
from ..models.elic_int import FrozenElicInt
from . import gptq
from .gptq import HessianRecorder
from .intnet import IntNet, IntSynthesis, PeakRecorder

NET_ACT_BITS = (14, 11)  # the first layer sees the latents: it needs the width
NET_WEIGHT_BITS = 8
SYNTHESIS_ACT_BITS = (16, 16, 16, 12, 12, 12, 12)  # inputs of residual[0..6]
SYNTHESIS_WEIGHT_BITS = (10, 8, 8, 8)  # the four deconvolutions
BLOCK_BITS = 12
CROP = 256


def calibration_crops(
    root: Path, count: int, crop: int = CROP, files: list[Path] | None = None
) -> list[torch.Tensor]:
    """``count`` centre crops (1, 3, crop, crop) in [0, 1] from photos spread over ``root``
    (or over ``files``)."""
    files = [p for p in (files or _image_files(root)) if min(Image.open(p).size) >= crop]
    if not files:
        raise ValueError(f"no calibration images of at least {crop} px under {root}")
    picks = [files[i] for i in np.linspace(0, len(files) - 1, min(count, len(files))).astype(int)]
    out = []
    for p in picks:
        img = np.asarray(Image.open(p).convert("RGB"))
        h, w = img.shape[:2]
        y0, x0 = (h - crop) // 2, (w - crop) // 2
        x = torch.from_numpy(img[y0 : y0 + crop, x0 : x0 + crop].copy()).permute(2, 0, 1)
        out.append(x[None].float() / 255)
    return out


def _convs(seq: nn.Module) -> list[nn.Module]:
    return [m for m in seq if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def calibrate(
    source: FrozenElic, crops: list[torch.Tensor], hessians: bool = False
) -> dict[str, float] | tuple[dict[str, float], dict[str, np.ndarray]]:
    """Max |input| of every layer the integer decoder runs, over ``crops`` x every quality;
    with ``hessians``, also ``E[x x^T]`` of the entropy-model layers' inputs (``gptq.py``)."""
    model = source.model.eval()
    twins = type(source).twin_modules(source.config)
    modules = {}
    for name, path in twins.items():
        for i, m in enumerate(_convs(model.get_submodule(path))):
            modules[f"{name}.{i}"] = m
    nets = dict(modules)
    for i, m in enumerate(model.g_s.residual):
        modules[f"gs.{i}"] = m
    hrec = HessianRecorder(nets) if hessians else nullcontext()
    with PeakRecorder(modules) as rec, hrec, torch.no_grad():
        for x in crops:
            for q in range(model.num_qualities):
                model(x, torch.tensor([q]))
    if not hessians:
        return rec.peaks
    return rec.peaks, {name: hrec.hessian(name) for name in nets}


def quantize(
    source: FrozenElic,
    peaks: dict[str, float],
    meta: dict | None = None,
    net_weight_bits: int = NET_WEIGHT_BITS,
    hessians: dict[str, np.ndarray] | None = None,
) -> FrozenElicInt:
    """The ``elic-int`` twin of a float ``elic`` model, from calibrated ``peaks``; with
    ``hessians``, the entropy-model weights are rounded by ``gptq.quantize``."""
    model = copy.deepcopy(source.model).eval()
    model.config = copy.deepcopy(model.config)
    model.config.kind = INT_KIND
    nets = {}
    for name, path in type(source).twin_modules(source.config).items():
        seq = model.get_submodule(path)
        convs = _convs(seq)
        layer_peaks = [peaks[f"{name}.{i}"] for i in range(len(convs))]
        rounded = None
        if hessians is not None:
            rounded = [
                gptq.quantize(
                    m.weight, hessians[f"{name}.{i}"], net_weight_bits,
                    isinstance(m, nn.ConvTranspose2d),
                )
                for i, m in enumerate(convs)
            ]  # fmt: skip
        nets[name] = IntNet.from_sequential(
            seq, layer_peaks, NET_ACT_BITS, net_weight_bits, weights=rounded
        )
    nets["gs"] = IntSynthesis.from_module(
        model.g_s,
        torch.exp(model.y_gain.log_inverse.detach()),
        [peaks[f"gs.{i}"] for i in range(len(model.g_s.residual))],
        act_bits=SYNTHESIS_ACT_BITS,
        weight_bits=SYNTHESIS_WEIGHT_BITS,
        block_bits=BLOCK_BITS,
    )
    frozen = FrozenElicInt(model, dict(source.tables), nets, dict(source.ints), dict(meta or {}))
    # the float modules the integer twins replace now hold their dequantised weights
    for name, path in FrozenElicInt.twin_modules(model.config).items():
        nets[name].load_into(model.get_submodule(path))
    return frozen


def low_rank_hyper(model: nn.Module, ranks: tuple[int, ...]) -> None:
    """Replace ``model.h_s`` by its truncated-SVD factorisation (``lowrank.py``), in place."""
    from .lowrank import factorize_convs

    model.h_s = factorize_convs(model.h_s, ranks)
    model.config.hyper_ranks = tuple(ranks)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m neuralcodec.compress.elic", description=__doc__)
    p.add_argument("--source", type=Path, required=True, help="float elic weights")
    p.add_argument("--out", type=Path, required=True, help="elic-int weights to write")
    p.add_argument("--data", type=Path, default=None, help="calibration photos (default: train)")
    p.add_argument("--images", type=int, default=12)
    p.add_argument("--model-id", default=None)
    p.add_argument(
        "--net-weight-bits",
        type=int,
        default=NET_WEIGHT_BITS,
        help="weight bits of the entropy-model networks (default 8)",
    )
    p.add_argument(
        "--gptq", action="store_true", help="round those weights with error compensation (gptq.py)"
    )
    p.add_argument(
        "--hyper-ranks",
        default=None,
        help="low-rank hyper-synthesis: rank of each of its 3 convolutions, 0 = keep (lowrank.py)",
    )
    args = p.parse_args(argv)
    torch.manual_seed(0)
    source = frozen_protocol.load(args.source, kinds=("elic",))
    if args.hyper_ranks:
        low_rank_hyper(source.model, tuple(int(v) for v in args.hyper_ranks.split(",")))
    crops = calibration_crops(args.data or data_root() / "train", args.images)
    hessians = None
    if args.gptq:
        peaks, hessians = calibrate(source, crops, hessians=True)
    else:
        peaks = calibrate(source, crops)
    model_id = args.model_id or f"{source.meta.get('model_id', 'elic')}-int"
    meta = {
        **source.meta,
        "model_id": model_id,
        "quantized_from": source.meta.get("model_id", "elic"),
        "calibration": {"images": len(crops), "crop": CROP, "peaks": peaks},
    }
    if args.net_weight_bits != NET_WEIGHT_BITS or args.gptq:
        meta["entropy_weights"] = {"bits": args.net_weight_bits, "gptq": bool(args.gptq)}
    frozen = quantize(source, peaks, meta, args.net_weight_bits, hessians)
    sha = frozen_protocol.save(frozen, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, sha256 {sha[:16]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
