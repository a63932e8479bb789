"""Measure the model-compression methods on ``elic``: weights MB, decode ms, BD-rate cost.

    python scripts/compression_table.py --variant NAME=WEIGHTS [...] --out results/compression.json

Every variant is an ``elic`` / ``elic-int`` weights file. For each: the file size, the decode
time of kodim23 at quality 4 (best of ``--repeat``, 2 threads, same process), and the BD-rate
(bpp vs PSNR-RGB) against the float ``elic`` over ``--images`` Kodak images x 8 qualities
(every ``len/images``-th image, so the subset is spread over the set). The float reference is
always measured first in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neuralcodec.bench.bdrate import bd_rate  # noqa: E402
from neuralcodec.codecs.base import get_codec  # noqa: E402
from neuralcodec.datasets.images import read_image  # noqa: E402
from neuralcodec.datasets.paths import kodak_dir  # noqa: E402
from neuralcodec.models import frozen as frozen_protocol  # noqa: E402


def codec_for(path: Path):
    kind = frozen_protocol.read_weights_file(path)[1].get("kind")
    return get_codec("elic-int" if kind == "elic-int" else "elic", weights=str(path))


def curve(codec, images: list[np.ndarray]) -> tuple[list[float], list[float]]:
    """Mean bpp and mean PSNR (dB, RGB) over ``images`` at qualities 1..8."""
    bpps, psnrs = [], []
    for q in range(1, 9):
        bits, psnr = [], []
        for img in images:
            enc = codec.encode(img, q)
            rec = codec.decode(enc)
            bits.append(enc.payload_bytes * 8 / (img.shape[0] * img.shape[1]))
            mse = float(((rec.astype(np.float64) - img) ** 2).mean())
            psnr.append(10 * np.log10(255**2 / mse))
        bpps.append(float(np.mean(bits)))
        psnrs.append(float(np.mean(psnr)))
    return bpps, psnrs


def decode_ms(codec, img: np.ndarray, repeat: int) -> float:
    enc = codec.encode(img, 4)
    codec.decode(enc)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        codec.decode(enc)
        best = min(best, time.perf_counter() - t)
    return best * 1000


def retime(args: argparse.Namespace) -> int:
    torch.set_num_threads(2)
    results = json.loads(args.out.read_text())
    img = read_image(kodak_dir() / "kodim23.png")
    for name, v in results["variants"].items():
        v["decode_ms"] = decode_ms(codec_for(Path(v["weights"])), img, args.repeat)
        print(f"{name:44s} {v['decode_ms']:8.0f} ms")
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--variant", action="append", default=[], help="NAME=weights file")
    p.add_argument("--reference", type=Path, default=Path("weights/elic.safetensors"))
    p.add_argument("--images", type=int, default=6)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("results/compression.json"))
    p.add_argument(
        "--speed-only",
        action="store_true",
        help="re-time the decoders of the variants already in --out (a quiet machine), keep curves",
    )
    args = p.parse_args(argv)
    if args.speed_only:
        return retime(args)
    torch.set_num_threads(2)
    files = sorted(kodak_dir().glob("*.png"))
    step = max(1, len(files) // args.images)
    subset = files[::step][: args.images]
    images = [read_image(f) for f in subset]
    speed_img = read_image(kodak_dir() / "kodim23.png")
    results = json.loads(args.out.read_text()) if args.out.is_file() else {"variants": {}}
    results.update(images=[f.name for f in subset], speed_image="kodim23.png q4, 2 threads")
    ref = codec_for(args.reference)
    stored = results["variants"].get("elic (float)")
    if (
        stored
        and stored["weights"] == str(args.reference)
        and results.get("subset") == [f.name for f in subset]
    ):
        ref_curve = (stored["bpp"], stored["psnr"])  # same reference, same images: reuse
    else:
        ref_curve = curve(ref, images)
    results["subset"] = [f.name for f in subset]
    results["variants"]["elic (float)"] = {
        "weights": str(args.reference),
        "mb": args.reference.stat().st_size / 1e6,
        "decode_ms": decode_ms(ref, speed_img, args.repeat),
        "bpp": ref_curve[0],
        "psnr": ref_curve[1],
        "bd_rate_vs_elic": 0.0,
    }
    for spec in args.variant:
        name, path = spec.split("=", 1)
        codec = codec_for(Path(path))
        c = curve(codec, images)
        results["variants"][name] = {
            "weights": path,
            "mb": Path(path).stat().st_size / 1e6,
            "decode_ms": decode_ms(codec, speed_img, args.repeat),
            "bpp": c[0],
            "psnr": c[1],
            "bd_rate_vs_elic": bd_rate(ref_curve[0], ref_curve[1], c[0], c[1]),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'variant':44s} {'MB':>7s} {'decode ms':>10s} {'BD-rate':>8s}")
    for name, v in results["variants"].items():
        print(f"{name:44s} {v['mb']:7.2f} {v['decode_ms']:10.0f} {v['bd_rate_vs_elic']:+7.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
