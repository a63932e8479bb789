"""Where ``elic-ip``'s bytes go, frame by frame: side information (split flags, still flags,
vector components, split blocks' extra vectors, B-frame modes) against residual levels, coded
blocks, and each frame's PSNR.

python scripts/video_bits.py CLIP [--frames 9] [--quality 4] [--bframes 0]

The side-information bytes are the ideal code lengths of what goes through the range coder's
symbol calls, counted by a sink that passes every call on to the real one (so the file is the
codec's own); the residual is the rest of the frame's payload. PSNR is the bench's
(6 Y + U + V) / 8 of the per-plane PSNR against the source.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from neuralcodec.bench.video import frame_psnr
from neuralcodec.codecs import learned_video, video_motion
from neuralcodec.codecs.base import get_codec
from neuralcodec.codecs.latent.sinks import CounterSinks
from neuralcodec.datasets.video import read_video

PARTS = {
    "code_split_flags": "split",
    "code_vectors_joint": "vectors with still flags",
    "code_sub_vectors": "sub-vectors",
    "code_modes": "B modes",
}


class CountingSink:
    """Passes every call to ``real`` and adds each symbol call's ideal bits to ``counter``."""

    def __init__(self, real) -> None:
        self.real = real
        self.counter = CounterSinks()["p"]

    def code(self, ctx, tables, values):
        self.counter.code(ctx, tables, values)
        return self.real.code(ctx, tables, values)

    def __getattr__(self, name):
        return getattr(self.real, name)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("clip", type=Path)
    p.add_argument("--frames", type=int, default=9)
    p.add_argument("--quality", type=int, default=4)
    p.add_argument("--bframes", type=int, default=0, help="0: the encoder's choice per clip")
    args = p.parse_args()
    torch.set_num_threads(1)
    parts: dict[str, float] = {}

    def counted(name, fn):
        def wrapped(sink, *a, **k):
            before = sink.counter.bits if isinstance(sink, CountingSink) else 0.0
            out = fn(sink, *a, **k)
            if isinstance(sink, CountingSink):
                parts[name] = parts.get(name, 0.0) + sink.counter.bits - before
            return out

        return wrapped

    for fn, label in PARTS.items():
        setattr(learned_video, fn, counted(label, getattr(learned_video, fn)))
    still = video_motion._code_still_flags
    video_motion._code_still_flags = counted("still flags", still)

    codec = get_codec("elic-ip", gop=args.frames, bframes=args.bframes)
    inter = type(codec)._inter
    rows: list[dict] = []  # the inter frames, in coding order

    def logged(self, sink, refs, si, tools, mv=None, qs=None, state=None, dist=None, *a, **k):
        if qs is None:  # decoding
            return inter(self, sink, refs, si, tools, mv, qs, state, dist, *a, **k)
        parts.clear()
        counting = CountingSink(sink)
        out = inter(self, counting, refs, si, tools, mv, qs, state, dist, *a, **k)
        coded = [int(q.any(-1).sum()) for q in qs]
        rows.append(
            {
                "type": "B" if dist is not None else "P",
                "side": counting.counter.bits / 8,
                "parts": {n: b / 8 for n, b in parts.items()},
                "coded": coded,
            }
        )
        return out

    type(codec)._inter = logged
    frames: dict[int, tuple] = {}
    encoded, sizes = codec.encode_frames(
        read_video(args.clip, max_frames=args.frames),
        args.quality,
        keep=lambda i, o, d: frames.__setitem__(i, (o, d)),
    )
    type(codec)._inter = inter
    order = [
        i for i, _, _ in learned_video.coding_order(0, len(sizes), encoded.header.get("bgop", 1))
    ]
    inter_rows = dict(zip(order[1:], rows, strict=True))
    print(f"{args.clip.name}: {len(sizes)} frames, quality {args.quality}, bgop "
          f"{encoded.header.get('bgop', 1)}, tools {encoded.header['tools']}")  # fmt: skip
    total_side = total_inter = 0.0
    for i, size in enumerate(sizes):
        y, u, v = frame_psnr(*frames[i])
        psnr = (6 * y + u + v) / 8
        if i not in inter_rows:
            print(f"{i:3d} I {size:7d} B  {psnr:6.2f} dB")
            continue
        r = inter_rows[i]
        total_side += r["side"]
        total_inter += size
        detail = ", ".join(f"{n} {b:.0f}" for n, b in r["parts"].items())
        print(
            f"{i:3d} {r['type']} {size:7d} B  {psnr:6.2f} dB  side {r['side']:6.0f} B ({detail}); "
            f"residual {size - r['side']:6.0f} B, coded blocks Y/U/V {r['coded']}"
        )
    if total_inter:
        print(f"inter frames: {total_inter:.0f} B, side information {total_side:.0f} B "
              f"({100 * total_side / total_inter:.0f}%)")  # fmt: skip


if __name__ == "__main__":
    main()
