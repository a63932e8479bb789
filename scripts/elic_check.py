"""Quick rate-distortion check of ELIC / hyperprior checkpoints during training.

For each checkpoint (a training checkpoint or a shipped weights file) and each quality, the
eval-mode float model's rate (its likelihoods, which predict the coded size within about 1%)
and PSNR are averaged over a few images, then compared with WebP on the same images, read from
a ``codec bench rd`` results file. Only for comparing checkpoints with each other: the shipped
numbers come from ``codec bench rd`` on real files.

    PYTHONPATH=. python scripts/elic_check.py runs/elic256/last.safetensors weights/elic.safetensors
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from neuralcodec.bench.bdrate import bd_psnr, bd_rate
from neuralcodec.codecs.learned_image import _pad
from neuralcodec.datasets.paths import DataPathError, kodak_dir
from neuralcodec.export import load_model

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ("kodim01.png", "kodim05.png", "kodim13.png", "kodim23.png")


def curve(model, images: list[np.ndarray]) -> tuple[list[float], list[float]]:
    rates, psnrs = [], []
    for q in range(model.num_qualities):
        bpp, mse_db = [], []
        for img in images:
            x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
            h, w = img.shape[:2]
            with torch.no_grad():  # padded as the codec pads, measured on the real pixels
                out = model(_pad(x), torch.tensor([q]))
            bits = sum(float(-torch.log2(v).sum()) for v in out["likelihoods"].values())
            bpp.append(bits / (h * w))
            x_hat = (out["x_hat"][..., :h, :w].clamp(0, 1) * 255).round() / 255
            mse_db.append(-10 * math.log10(float(((x_hat - x) ** 2).mean())))
        rates.append(float(np.mean(bpp)))
        psnrs.append(float(np.mean(mse_db)))
    return rates, psnrs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--dataset", type=Path, help="default: <data root>/kodak")
    ap.add_argument("--images", nargs="+", default=list(IMAGES))
    ap.add_argument("--results", type=Path, default=ROOT / "results" / "kodak" / "results.json")
    ap.add_argument("--anchor", default="webp")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    try:
        args.dataset = args.dataset or kodak_dir()
    except DataPathError as exc:
        raise SystemExit(f"error: {exc}") from None
    torch.set_num_threads(args.threads)
    images = [np.array(Image.open(args.dataset / n).convert("RGB")) for n in args.images]
    points = json.loads(args.results.read_text())["codecs"][args.anchor]["points"]
    anchor = sorted(
        (
            float(np.mean([p["images"][n]["bpp"] for n in args.images])),
            float(np.mean([p["images"][n]["psnr"] for n in args.images])),
        )
        for p in points.values()
    )
    ar, ap_ = [a for a, _ in anchor], [b for _, b in anchor]
    for path in args.checkpoints:
        rates, psnrs = curve(load_model(path), images)
        pts = " ".join(f"{r:.3f}/{p:.2f}" for r, p in zip(rates, psnrs, strict=True))
        print(
            f"{path}: BD-rate vs {args.anchor} {bd_rate(ar, ap_, rates, psnrs):+.1f}%, "
            f"BD-PSNR {bd_psnr(ar, ap_, rates, psnrs):+.2f} dB\n  {pts}",
            flush=True,
        )


if __name__ == "__main__":
    main()
