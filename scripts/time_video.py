"""Time ``elic-ip`` on one clip: encode and decode, wall and CPU seconds, I and P frames apart.

python scripts/time_video.py CLIP [--frames 32] [--quality 4] [--threads 2] [--bframes 1]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from neuralcodec.codecs.base import get_codec
from neuralcodec.datasets.video import read_video


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("clip")
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--quality", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bframes", type=int, default=1, help="anchor spacing (1: P frames only)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    src = read_video(args.clip, max_frames=args.frames)
    codec = get_codec("elic-ip", gop=args.frames, bframes=args.bframes)
    codec.intra.frozen(), codec.residual()  # weights loaded before timing
    w, c = time.perf_counter(), time.process_time()
    encoded, sizes = codec.encode_frames(src, args.quality)
    enc = (time.perf_counter() - w, time.process_time() - c)
    frames = codec.decode(encoded)
    w, c = time.perf_counter(), time.process_time()
    next(frames)
    dec_i = (time.perf_counter() - w, time.process_time() - c)
    w, c = time.perf_counter(), time.process_time()
    rest = sum(1 for _ in frames)
    dec_p = (time.perf_counter() - w, time.process_time() - c)
    n = len(sizes)
    out = {
        "clip": args.clip, "frames": n, "quality": args.quality, "threads": args.threads,
        "bframes": args.bframes,
        "encode_fps_wall": n / enc[0], "encode_fps_cpu": n / enc[1],
        "decode_fps_wall": n / (dec_i[0] + dec_p[0]), "decode_fps_cpu": n / (dec_i[1] + dec_p[1]),
        "decode_i_frame_s": dec_i, "decode_p_frame_ms": [1000 * v / max(rest, 1) for v in dec_p],
    }  # fmt: skip
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
