"""Which of x264's coding tools matter on a clip: BD-rate of x264 variants (B frames off, mb-tree
off, one reference, ...) against x264 preset medium, ``tune=psnr``, with the bench's intra period
and PSNR (``bench.video.anchor_code``, PyAV).

python scripts/x264_ablation.py CLIP FRAMES [--crfs 22,26,30,34,38]
"""

from __future__ import annotations

import argparse

from neuralcodec.bench import bdrate
from neuralcodec.bench import video as bench
from neuralcodec.datasets.video import read_video

VARIANTS = {
    "medium": "",
    "bframes=0": ":bframes=0",
    "no-mbtree": ":no-mbtree=1",
    "bframes=0, no-mbtree": ":bframes=0:no-mbtree=1",
    "ref=1": ":ref=1",
    "no-8x8dct": ":no-8x8dct=1",
    "partitions=none": ":partitions=none",
    "subme=4": ":subme=4",
    "trellis=0": ":trellis=0",
    "bframes=0, no-mbtree, ref=1": ":bframes=0:no-mbtree=1:ref=1",
}


def point(frames: list, info, crf: int, extra: str) -> dict:
    """The bench's RD point of one x264 run over the whole clip as one intra period."""
    nbytes, decoded, enc_s, dec_s = bench.anchor_code(
        "x264", frames, info, crf, len(frames), 1, extra
    )
    return bench.summarise(frames, decoded, nbytes, float(info.fps), enc_s, dec_s)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("clip")
    p.add_argument("frames", type=int)
    p.add_argument("--crfs", default="22,26,30,34,38")
    args = p.parse_args()
    source = read_video(args.clip, max_frames=args.frames)
    frames, info = list(source), source.info
    crfs = [int(c) for c in args.crfs.split(",")]
    base = None
    for name, extra in VARIANTS.items():
        pts = [point(frames, info, c, extra) for c in crfs]
        base = pts if base is None else base
        bd = bdrate.bd_rate(
            [q["bpp"] for q in base],
            [q["psnr"] for q in base],
            [q["bpp"] for q in pts],
            [q["psnr"] for q in pts],
        )
        print(f"{name:30s} {bd:+.1f}%", flush=True)


if __name__ == "__main__":
    main()
