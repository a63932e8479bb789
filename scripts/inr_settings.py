"""Compare INR encoder settings on centre crops of training images (never the test set).

Each run fits, codes and decodes every crop with one preset (changed by ``--set``) and prints
the rounded rate-distortion loss ``MSE + lambda * bpp`` of the decoded files, the quantity the
encoder minimises, with each crop's bpp / PSNR. Compare settings by their mean loss at equal
quality; one fit per crop and setting, so differences below about 0.5% are within the noise.

    PYTHONPATH=. python scripts/inr_settings.py --quality 8 --set latent_lr_scale=20
    PYTHONPATH=. python scripts/inr_settings.py --set 'arch={"syn_hidden": [64]}'
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from neuralcodec.codecs import inr
from neuralcodec.datasets.paths import DataPathError, data_root

IMAGES = ("bsds500/val/101085.jpg", "bsds500/val/102061.jpg", "set5/butterfly.png")


def changed_preset(base: str, settings: list[str]) -> inr.InrPreset:
    changes = {}
    for item in settings:
        key, _, value = item.partition("=")
        changes[key] = json.loads(value)
    for key in ("temperature", "noise"):
        if key in changes:
            changes[key] = tuple(changes[key])
    if "arch" in changes:
        arch = dict(changes["arch"])
        if "syn_hidden" in arch:
            arch["syn_hidden"] = tuple(arch["syn_hidden"])
        changes["arch"] = replace(inr.PRESETS[base].arch, **arch)
    return inr.preset_with(base, **changes)


def train_dir(override: Path | None) -> Path:
    """``--data``, else ``<data root>/train`` (``neuralcodec.datasets.paths``)."""
    try:
        return override or data_root() / "train"
    except DataPathError as exc:
        raise SystemExit(f"error: {exc}") from None


def centre_crop(path: Path, size: int) -> np.ndarray:
    img = np.asarray(Image.open(path).convert("RGB"))
    h, w = img.shape[:2]
    top, left = max((h - size) // 2, 0), max((w - size) // 2, 0)
    return np.ascontiguousarray(img[top : top + size, left : left + size])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="medium", choices=list(inr.PRESETS))
    ap.add_argument("--quality", type=int, default=4)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--data", type=Path, help="default: <data root>/train")
    ap.add_argument("--images", nargs="+", default=list(IMAGES))
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=JSON")
    args = ap.parse_args()
    args.data = train_dir(args.data)
    torch.set_num_threads(1)
    inr.PRESETS["experiment"] = changed_preset(args.preset, args.set)
    lam = inr.quality_lambda(args.quality)
    losses, parts = [], []
    for name in args.images:
        img = centre_crop(args.data / name, args.crop)
        codec = inr.InrCodec(preset="experiment")
        start = time.perf_counter()
        encoded = codec.encode(img, args.quality)
        out = codec.decode(encoded)
        seconds = time.perf_counter() - start
        mse = float(np.mean((out.astype(np.float64) - img) ** 2)) / 255**2
        bpp = 8 * encoded.payload_bytes / (img.shape[0] * img.shape[1])
        losses.append(mse + lam * bpp)
        parts.append(f"{bpp:.4f}/{-10 * math.log10(mse):.2f}")
        print(f"  {name}: loss {losses[-1]:.4e}, {parts[-1]} bpp/dB, {seconds:.0f} s", flush=True)
    label = " ".join(args.set) or "(preset as is)"
    print(
        f"{args.preset} q{args.quality} {label}: mean loss {np.mean(losses):.4e} | {' '.join(parts)}"
    )


if __name__ == "__main__":
    main()
