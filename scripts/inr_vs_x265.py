"""Fit the INR codec to a centre crop of a training image and compare it with x265 on that crop.

x265 (4:4:4, the benchmark's settings) codes the crop at 12 QPs; the INR file's PSNR is compared
with x265's PSNR at the same rate, interpolated in log rate. For measuring how far the fit is
from converged (``--set iterations=...``) on crops small enough to fit for long; never Kodak.

    PYTHONPATH=. python scripts/inr_vs_x265.py set5/butterfly.png --quality 8 \\
        --set iterations=1200 --set ste_iterations=120
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from inr_settings import centre_crop, changed_preset, train_dir  # scripts/ is on sys.path

from neuralcodec.bench.metrics import psnr_rgb
from neuralcodec.codecs import inr
from neuralcodec.codecs.classical import X265Codec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image", help="path under the training folder, e.g. set5/butterfly.png")
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--quality", type=int, default=8)
    ap.add_argument("--preset", default="fast", choices=list(inr.PRESETS))
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=JSON")
    ap.add_argument("--data", type=Path, help="default: <data root>/train")
    args = ap.parse_args()
    args.data = train_dir(args.data)
    torch.set_num_threads(1)
    img = centre_crop(args.data / args.image, args.crop)
    pixels = img.shape[0] * img.shape[1]
    x265 = X265Codec()
    curve = []
    for q in range(1, 46, 4):
        data = x265.compress(img, q)
        curve.append((8 * len(data) / pixels, psnr_rgb(img, x265.decompress(data))))
    curve.sort()
    inr.PRESETS["experiment"] = changed_preset(args.preset, args.set)
    codec = inr.InrCodec(preset="experiment")
    start = time.perf_counter()
    encoded = codec.encode(img, args.quality)
    decoded = codec.decode(encoded)
    seconds = time.perf_counter() - start
    bpp, quality_db = 8 * encoded.payload_bytes / pixels, psnr_rgb(img, decoded)
    ref = float(np.interp(math.log(bpp), [math.log(r) for r, _ in curve], [p for _, p in curve]))
    label = " ".join(args.set) or args.preset
    print(
        f"{args.image} {args.crop}px q{args.quality} {label}: {bpp:.3f} bpp {quality_db:.2f} dB"
        f" | x265 {ref:.2f} dB at that rate | difference {quality_db - ref:+.2f} dB"
        f" | {seconds:.0f} s"
    )


if __name__ == "__main__":
    main()
