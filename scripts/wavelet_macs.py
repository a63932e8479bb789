"""Encoder and decoder multiply-adds per pixel of the shipped ``wavelet`` model, next to ``elic``.

    python scripts/wavelet_macs.py [--size 256]

``wavelet``: the closed form of ``models.wavelet.encoder_macs`` / ``decoder_macs`` for the
shipped configuration, checked against a count by forward hooks. ``elic``: counted by forward
hooks on the float model's training forward at one quality (every convolution, and the 1x1
convolution inside each GDN), split into what the encoder runs (everything but the synthesis
``g_s``: analysis, hyper-analysis, hyper-synthesis, context networks) and the decoder (all but
``g_a`` and ``h_a``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neuralcodec.codecs.base import get_codec  # noqa: E402
from neuralcodec.models.layers import GDN  # noqa: E402
from neuralcodec.models.wavelet import decoder_macs, encoder_macs  # noqa: E402


def count_macs(model: nn.Module, x: torch.Tensor, run) -> dict[str, float]:
    """Multiply-adds of every convolution (and GDN) ``run(model, x)`` calls, by top-level module."""
    totals: dict[str, float] = {}
    handles = []
    for name, m in model.named_modules():
        top = name.split(".")[0]
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):

            def hook(mod, args, out, top=top):
                k = mod.kernel_size[0] * mod.kernel_size[1] / mod.groups
                if isinstance(mod, nn.ConvTranspose2d):
                    positions = args[0].shape[-2] * args[0].shape[-1]
                    macs = positions * mod.in_channels * mod.out_channels * k
                else:
                    macs = out.shape[-2] * out.shape[-1] * mod.in_channels * mod.out_channels * k
                totals[top] = totals.get(top, 0.0) + macs * out.shape[0]

            handles.append(m.register_forward_hook(hook))
        elif isinstance(m, GDN):

            def gdn_hook(mod, args, out, top=top):
                c, (h, w) = args[0].shape[1], args[0].shape[-2:]
                totals[top] = totals.get(top, 0.0) + c * c * h * w * args[0].shape[0]

            handles.append(m.register_forward_hook(gdn_hook))
    with torch.no_grad():
        run(model, x)
    for h in handles:
        h.remove()
    pixels = x.shape[-2] * x.shape[-1] * x.shape[0]
    return {k: v / pixels for k, v in totals.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256)
    args = p.parse_args(argv)
    x = torch.rand(1, 3, args.size, args.size)
    q = torch.tensor([3])

    wavelet = get_codec("wavelet").frozen()[0]
    config = wavelet.config
    enc = encoder_macs(config)
    print(f"wavelet ({config.levels} levels, C = {config.m}): encoder MACs per pixel")
    for stage, value in enc.items():
        print(f"  {stage:24s} {value:10.1f}")
    print(f"  decoder                  {decoder_macs(config):10.1f}")
    counted = count_macs(wavelet.model, x, lambda m, x: m(x, q))
    hooked = sum(v for k, v in counted.items() if k in ("g_a", "h_a", "h_s"))
    print(f"  (hooks: projection + hyper networks {hooked:.1f})")

    elic = get_codec("elic").frozen()[0].model.eval()
    counted = count_macs(elic, x, lambda m, x: m(x, q))
    enc_elic = sum(v for k, v in counted.items() if k != "g_s")
    dec_elic = sum(v for k, v in counted.items() if k not in ("g_a", "h_a"))
    print("elic: MACs per pixel by module " + ", ".join(f"{k} {v:.0f}" for k, v in counted.items()))
    print(f"  encoder {enc_elic:10.1f}   decoder {dec_elic:10.1f}")
    print(f"wavelet encoder / elic encoder: {enc['total'] / enc_elic:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
