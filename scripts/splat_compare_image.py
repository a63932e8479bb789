"""Render a splat scene and its splat-vq decoding side by side (the README's comparison image).

    python scripts/splat_compare_image.py SCENE.ply OUT.png [--quality 3] [--size 256]

Top row: the input's renders from two orbit angles; bottom row: the decoded scene's. Prints the
sizes and metrics that ``neuralcodec.bench.splat.compare_levels`` returns.
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from neuralcodec.bench.splat import compare_levels


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("scene")
    p.add_argument("out")
    p.add_argument("--quality", type=int, default=3)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--azimuths", default="30,150")
    a = p.parse_args()
    angles = [float(x) for x in a.azimuths.split(",")]
    res = compare_levels(a.scene, a.quality, angles, a.size)
    grid = np.concatenate(
        [np.concatenate(res["original"], axis=1), np.concatenate(res["decoded"], axis=1)], axis=0
    )
    Image.fromarray(grid).save(a.out, optimize=True)
    keys = ("splats", "splats_decoded", "bytes", "bytes_per_splat", "compressed_ply_bytes",
            "ratio_to_compressed_ply", "psnr", "psnr_covered", "ssim", "encode_s", "decode_s")  # fmt: skip
    for k in keys:
        print(f"{k}: {res[k]:.4f}" if isinstance(res[k], float) else f"{k}: {res[k]}")


if __name__ == "__main__":
    main()
