"""BD-rate of ``elic-ip`` against x264 medium on a development clip, with encoder or tool
settings changed for the run (for measuring one coding tool or setting at a time).

python scripts/video_ablation.py CLIP [--frames 16] [--qualities 2,4,6] [--bframes 0]
    [--set learned_video.TOOLS=7 --set learned_video.P_STEP_PATTERN=(0,) ...]

``--set MODULE.NAME=VALUE`` replaces a constant of ``neuralcodec.codecs.MODULE`` (a Python
literal) before encoding. The intra period is ``--frames``; x264 (PyAV, preset medium, the bench's
settings) is run once per clip and frame count and cached under ``--cache``. Rates count the whole
``.ncf`` file; PSNR is the bench's (6 Y + U + V) / 8 of the mean per-plane PSNR.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import time
from pathlib import Path

import torch

from neuralcodec.bench import bdrate
from neuralcodec.bench import video as bench
from neuralcodec.codecs.base import get_codec
from neuralcodec.container import from_encoded, pack
from neuralcodec.datasets.video import read_video


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("clip")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--qualities", default="2,4,6")
    p.add_argument("--bframes", type=int, default=0, help="0: the encoder's choice per clip")
    p.add_argument("--set", action="append", default=[], metavar="MODULE.NAME=VALUE")
    p.add_argument("--cache", type=Path, default=Path("/tmp/elic-ip-anchors"))
    args = p.parse_args()
    torch.set_num_threads(1)
    for item in args.set:
        key, value = item.split("=", 1)
        module, name = key.rsplit(".", 1)
        mod = importlib.import_module(f"neuralcodec.codecs.{module}")
        if not hasattr(mod, name):
            raise SystemExit(f"no {name} in neuralcodec.codecs.{module}")
        setattr(mod, name, ast.literal_eval(value))
    n, clip = args.frames, Path(args.clip)
    source = read_video(clip, max_frames=n)
    orig, fps = list(source), float(source.info.fps)
    args.cache.mkdir(parents=True, exist_ok=True)
    cached = args.cache / f"x264_{clip.stem}_{n}.json"
    if not cached.exists():
        points = bench.run_sequence(clip, ["x264"], None, n, n, 1, print)["x264"]
        cached.write_text(json.dumps(points))
    anchor = json.loads(cached.read_text())
    codec = get_codec("elic-ip", gop=n, bframes=args.bframes)
    ours = []
    for q in (int(v) for v in args.qualities.split(",")):
        decoded: list = []
        start = time.perf_counter()
        encoded, sizes = codec.encode_frames(
            read_video(clip, max_frames=n), q, keep=lambda i, o, d, out=decoded: out.append(d)
        )
        seconds = time.perf_counter() - start
        nbytes = len(pack(from_encoded(codec, encoded)))
        point = bench.summarise(orig, decoded, nbytes, fps, seconds, 1.0)
        ours.append(point)
        print(
            f"q{q}: {point['bpp']:.4f} bpp {point['psnr']:.2f} dB, I frame {sizes[0]} B, "
            f"inter frames {sum(sizes[1:]) / max(len(sizes) - 1, 1):.0f} B, "
            f"encode {n / seconds:.2f} fps",
            flush=True,
        )
    a = ([p["bpp"] for p in anchor], [p["psnr"] for p in anchor])
    b = ([p["bpp"] for p in ours], [p["psnr"] for p in ours])
    bd = bdrate.try_bd(bdrate.bd_rate, a, b)
    print("BD-rate vs x264: " + ("n/a (no overlap)" if bd is None else f"{bd:+.1f}%"))


if __name__ == "__main__":
    main()
