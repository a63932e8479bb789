"""The ``wavelet`` decoder in exact integers, and the recipe that builds it from a checkpoint.

::

    y_hat * 2^ACT_BITS --requantize(inverse gain[q] / LATENT_SCALE)--> a   (scale 2^e0)
    a --linear 1x1 (IntConv)-------------------------------------------+
    a --3x3 IntConv + ReLU --...--> 3x3 IntConv -----------------------+--> subbands (int32,
                                                                            255 * 2^PIXEL_BITS
                                                                            per pixel unit)
      --integer 5/3 packet synthesis (floors of halves and quarters)--> v
      pixel = clamp((v + 127.5 * 2^PIXEL_BITS + 2^(PIXEL_BITS-1)) >> PIXEL_BITS, 0, 255)

The float model's subband normalisation is folded into the last layers of both paths (their
weights and biases are divided by each subband's factor before quantisation), so the integer
lifting works on unnormalised subbands. Every convolution is an ``IntConv`` (exact in any
summation order, ``intconv.py``); the rest is int64 arithmetic. The hyper-synthesis becomes an
``IntNet`` (the ``FixedPointNet`` contract). Pixels are therefore identical on every CPU,
instruction set and thread count.

Recipe (post-training, ``python -m neuralcodec.compress.wavelet --checkpoint C --out W``):
calibrate the largest input of every decoder layer on centre crops of training photos at every
quality (never Kodak), quantise, write the frozen weights file.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from ..models.fixedpoint import ACT_BITS
from ..models.wavelet import (
    LATENT_SCALE,
    FrozenWavelet,
    WaveletConfig,
    WaveletModel,
    packet_synthesis_int,
    subband_norms,
)
from .intconv import IntConv, IntNetError, fixed_multiplier, requantize
from .intnet import PIXEL_BITS, IntNet, PeakRecorder, _load_conv, _scale_exponent, int_conv

# Bit widths (measured, docs/wavelet.md): the decoder's input (the dequantised latent) 14 bits,
# the hidden activations 12 (16 / 14 changed Kodak PSNR by under 0.02 dB); 8-bit weights in the
# residual stack, 12-bit in the linear path (it carries most of the signal); the
# hyper-synthesis as elic-int's entropy networks.
SYNTH_IN_BITS = 14
SYNTH_ACT_BITS = 12
SYNTH_WEIGHT_BITS = 8
LINEAR_BITS = 12
HS_ACT_BITS = (14, 12)
HS_WEIGHT_BITS = 8
PIXEL_LIMIT = 2**23 - 1  # float32-exact


def _folded(conv: nn.Conv2d, factors: torch.Tensor) -> nn.Conv2d:
    """A copy of ``conv`` whose output channels are multiplied by ``factors``."""
    m = copy.deepcopy(conv)
    with torch.no_grad():
        m.weight.mul_(factors.view(-1, 1, 1, 1).to(m.weight))
        if m.bias is not None:
            m.bias.mul_(factors.to(m.bias))
    return m


@dataclass
class WaveletSynthesisInt:
    """Integer twin of ``WaveletSynthesis``: y_hat (multiples of 2^-ACT_BITS) -> uint8 pixels."""

    levels: int
    gain_mult: np.ndarray  # (Q, C) int64
    gain_shift: int
    in_bound: int
    linear: IntConv
    residual: list[IntConv]
    steps: list[np.ndarray]  # weight steps of linear then residual (load_into only)
    exponents: list[int]  # input exponent of linear/residual[0], then of each residual layer

    @classmethod
    def from_module(
        cls, synthesis: nn.Module, inverse_gains: torch.Tensor, peaks: list[float]
    ) -> WaveletSynthesisInt:
        """``peaks``: max |input| of residual convolution 0, 1, ... (0's is also linear's)."""
        convs = [m for m in synthesis.residual if isinstance(m, nn.Conv2d)]
        if len(peaks) != len(convs):
            raise IntNetError(f"{len(peaks)} calibrated peaks for {len(convs)} layers")
        levels = synthesis.levels
        unnorm = 1.0 / subband_norms(levels, synthesis.linear.out_channels // 4**levels)
        bits = [SYNTH_IN_BITS] + [SYNTH_ACT_BITS] * (len(convs) - 1)
        bounds = [2 ** (b - 1) - 1 for b in bits]
        exps = [_scale_exponent(p, b) for p, b in zip(peaks, bits, strict=True)]
        gm, gs = fixed_multiplier(
            inverse_gains.detach().double().numpy() / LATENT_SCALE * 2.0 ** (exps[0] - ACT_BITS),
            20,
        )
        linear, lstep = int_conv(
            _folded(synthesis.linear, unnorm), exps[0], PIXEL_BITS, bounds[0], PIXEL_LIMIT,
            False, LINEAR_BITS, out_gain=255.0,
        )  # fmt: skip
        residual, steps = [], [lstep]
        for n, m in enumerate(convs):
            last = n == len(convs) - 1
            layer, step = int_conv(
                _folded(m, unnorm) if last else m,
                exps[n],
                PIXEL_BITS if last else exps[n + 1],
                bounds[n],
                PIXEL_LIMIT if last else bounds[n + 1],
                not last,
                SYNTH_WEIGHT_BITS,
                out_gain=255.0 if last else 1.0,
            )
            residual.append(layer)
            steps.append(step)
        return cls(levels, gm, gs, bounds[0], linear, residual, steps, exps)

    def subbands(self, y_hat: torch.Tensor, qi: int) -> torch.Tensor:
        """int32 subbands at 255 * 2^PIXEL_BITS per unit of pixel / 255 (each path's output is
        clamped to +-PIXEL_LIMIT < 2^23, so the sum and the lifting steps stay far inside int32)."""
        y = torch.round(y_hat.double() * 2.0**ACT_BITS)  # exact: already integers
        a = requantize(y, self.gain_mult[qi], self.gain_shift).clamp_(-self.in_bound, self.in_bound)
        out = self.linear(a).to(torch.int32)
        for layer in self.residual:
            a = layer(a)
        return out.add_(a.to(torch.int32))

    def __call__(self, y_hat: torch.Tensor, qi: int) -> torch.Tensor:
        """``y_hat`` (1, C, h, w) -> (1, 3, h * 2^levels, w * 2^levels) uint8."""
        with torch.no_grad():
            v = packet_synthesis_int(self.subbands(y_hat, qi), self.levels)
            offset = int(127.5 * 2**PIXEL_BITS) + 2 ** (PIXEL_BITS - 1)
            return ((v + offset) >> PIXEL_BITS).clamp_(0, 255).to(torch.uint8)

    # -- storage ------------------------------------------------------------------------------
    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        out = {
            prefix + "gain_mult": self.gain_mult.astype(np.int64),
            prefix + "meta": np.array(
                [self.levels, self.gain_shift, self.in_bound, len(self.residual)], np.int64
            ),
            prefix + "exponents": np.array(self.exponents, dtype=np.int64),
        }
        out.update(self.linear.to_arrays(prefix + "linear."))
        out[prefix + "linear.step"] = self.steps[0].astype(np.float32)
        for n, layer in enumerate(self.residual):
            out.update(layer.to_arrays(f"{prefix}res{n}."))
            out[f"{prefix}res{n}.step"] = self.steps[n + 1].astype(np.float32)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> WaveletSynthesisInt:
        try:
            levels, gs, ib, depth = (int(v) for v in arrays[prefix + "meta"])
            exps = [int(v) for v in arrays[prefix + "exponents"]]
            linear = IntConv.from_arrays(arrays, prefix + "linear.")
            residual = [IntConv.from_arrays(arrays, f"{prefix}res{n}.") for n in range(depth)]
            steps = [np.asarray(arrays[prefix + "linear.step"], np.float64)] + [
                np.asarray(arrays[f"{prefix}res{n}.step"], np.float64) for n in range(depth)
            ]
            gm = np.asarray(arrays[prefix + "gain_mult"], dtype=np.int64)
        except (KeyError, ValueError) as exc:
            raise IntNetError(f"stored synthesis {prefix!r} is incomplete: {exc}") from None
        chained = all(a.cout == b.cin for a, b in zip(residual, residual[1:], strict=False))
        if (
            not 1 <= levels <= 4
            or not 0 <= gs < 63
            or gm.ndim != 2
            or gm.shape[1] != linear.cin
            or not residual
            or residual[0].cin != linear.cin
            or residual[-1].cout != linear.cout
            or linear.cout % (3 * 4**levels)
            or not chained
            or len(exps) != depth
        ):
            raise IntNetError(f"stored synthesis {prefix!r} is inconsistent")
        return cls(levels, gm, gs, ib, linear, residual, steps, exps)

    def load_into(self, synthesis: nn.Module) -> None:
        """Dequantised weights back into the float ``WaveletSynthesis`` (normalisation undone)."""
        norm = subband_norms(self.levels, self.linear.cout // 4**self.levels).double()
        convs = [m for m in synthesis.residual if isinstance(m, nn.Conv2d)]
        if len(convs) != len(self.residual):
            raise IntNetError(f"{len(self.residual)} stored layers for {len(convs)} convolutions")
        _load_conv(synthesis.linear, self.linear, self.steps[0], self.exponents[0])
        for n, (m, layer) in enumerate(zip(convs, self.residual, strict=True)):
            _load_conv(m, layer, self.steps[n + 1], self.exponents[n])
        with torch.no_grad():
            for m in (synthesis.linear, convs[-1]):
                m.weight.mul_(norm.view(-1, 1, 1, 1).to(m.weight))
                if m.bias is not None:
                    m.bias.mul_(norm.to(m.bias))


# ----------------------------------------------------------------------------- recipe


def load_checkpoint(path: Path) -> tuple[WaveletModel, int]:
    """A training checkpoint (``scripts/train_wavelet.py``) -> (model in eval mode, step)."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    config = WaveletConfig.from_dict(json.loads(meta["config"]))
    model = WaveletModel(config)
    model.load_state_dict(load_file(str(path)))
    return model.eval(), int(meta.get("step", 0))


def _convs(seq: nn.Module) -> list[nn.Module]:
    return [m for m in seq if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def calibrate(model: WaveletModel, crops: list[torch.Tensor]) -> dict[str, float]:
    """Max |input| of every layer the integer decoder runs, over ``crops`` x every quality."""
    model = model.eval()
    modules = {f"hs.{i}": m for i, m in enumerate(_convs(model.h_s))}
    modules.update({f"gs.{i}": m for i, m in enumerate(_convs(model.g_s.residual))})
    with PeakRecorder(modules) as rec, torch.no_grad():
        for x in crops:
            for q in range(model.num_qualities):
                model(x, torch.tensor([q]))
    return rec.peaks


def quantize(model: WaveletModel, peaks: dict[str, float], meta: dict | None = None):
    """The frozen ``wavelet`` model (``FrozenWavelet``) with integer decoder networks."""
    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        hs_peaks = [peaks[f"hs.{i}"] for i in range(len(_convs(model.h_s)))]
        gs_peaks = [peaks[f"gs.{i}"] for i in range(len(_convs(model.g_s.residual)))]
        nets = {
            "hs": IntNet.from_sequential(model.h_s, hs_peaks, HS_ACT_BITS, HS_WEIGHT_BITS),
            "gs": WaveletSynthesisInt.from_module(
                model.g_s, torch.exp(model.y_gain.log_inverse.detach()), gs_peaks
            ),
        }
        tables, ints = FrozenWavelet.integer_parts(model)
        # the float modules the twins replace hold their dequantised weights from now on
        nets["hs"].load_into(model.h_s)
        nets["gs"].load_into(model.g_s)
    ints = {k: np.asarray(v, dtype=np.int64) for k, v in ints.items()}
    return FrozenWavelet(model, tables, nets, ints, dict(meta or {}))


def main(argv: list[str] | None = None) -> int:
    from ..datasets.paths import data_root
    from ..datasets.training import split_photos
    from ..models import frozen as frozen_protocol
    from .elic import calibration_crops

    p = argparse.ArgumentParser(prog="python -m neuralcodec.compress.wavelet", description=__doc__)
    p.add_argument("--checkpoint", type=Path, required=True, help="train_wavelet.py checkpoint")
    p.add_argument("--out", type=Path, required=True, help="weights file to write")
    p.add_argument("--data", type=Path, default=None, help="calibration photos (default: train)")
    p.add_argument("--images", type=int, default=12)
    p.add_argument("--model-id", default=None)
    p.add_argument(
        "--manifest",
        type=Path,
        default=None,
        help="also record the file in this manifest.json (entry 'wavelet'; eval points are added "
        "later by `python -m neuralcodec.export --name wavelet --eval-results ...`)",
    )
    p.add_argument("--recipe", default="", help="how the checkpoint was trained, for the record")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    model, step = load_checkpoint(args.checkpoint)
    root = args.data or data_root() / "train"
    train_files = split_photos(root)[0]  # neither validation nor held-out test photos
    crops = calibration_crops(root, args.images, files=train_files)
    peaks = calibrate(model, crops)
    meta = {
        "model_id": args.model_id or f"wavelet-s{step}",
        "steps": step,
        "calibration": {"images": len(crops), "peaks": peaks},
    }
    frozen = quantize(model, peaks, meta)
    sha = frozen_protocol.save(frozen, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.3f} MB, sha256 {sha[:16]})")
    if args.manifest is not None:
        doc = json.loads(args.manifest.read_text()) if args.manifest.exists() else {"models": []}
        entries = {m["name"]: m for m in doc["models"]}
        entries["wavelet"] = {
            "name": "wavelet",
            "file": args.out.name,
            "sha256": sha,
            "size_bytes": args.out.stat().st_size,
            "architecture": model.config.to_dict(),
            "model_id": meta["model_id"],
            "qualities": list(range(1, len(model.config.lambdas) + 1)),
            "training": {
                "data": "shared/data/train (bsds500, sun_hays80, urban100, wikipedia_photos, "
                "set5), less the 8 held-out test photos and a validation split",
                "steps": step,
                **({"recipe": args.recipe} if args.recipe else {}),
            },
        }
        doc["models"] = list(entries.values())
        args.manifest.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
