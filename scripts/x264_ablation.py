"""Which of x264's coding tools matter on a clip: BD-rate of x264 variants (B frames off, mb-tree
off, one reference, ...) against x264 preset medium, ``tune=psnr``, the bench's intra period and
PSNR, through PyAV.

python scripts/x264_ablation.py CLIP FRAMES [--crfs 22,26,30,34,38]
"""

from __future__ import annotations

import argparse
import io

import numpy as np

from neuralcodec.bench import bdrate
from neuralcodec.bench import video as bench
from neuralcodec.datasets.video import read_video
from neuralcodec.datasets.video_av import _planes

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


def code(frames: list, info, crf: int, gop: int, extra: str) -> tuple[float, float, str]:
    """(bpp, PSNR-YUV, frame types) of one x264 run."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="h264") as out:
        stream = out.add_stream("libx264", rate=info.fps)
        stream.width, stream.height, stream.pix_fmt = info.width, info.height, "yuv420p"
        stream.thread_count = 1
        stream.options = {
            "preset": "medium",
            "tune": "psnr",
            "crf": str(crf),
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0" + extra,
        }
        for i, planes in enumerate(frames):
            f = av.VideoFrame(info.width, info.height, "yuv420p")
            for plane, arr in zip(f.planes, planes, strict=True):
                rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
                rows[: arr.shape[0], : arr.shape[1]] = arr
            f.pts = i
            for packet in stream.encode(f):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    data = buf.getvalue()
    decoded, types = [], []
    with av.open(io.BytesIO(data), "r", format="h264") as inp:
        for frame in inp.decode(video=0):
            decoded.append(_planes(frame))
            kind = int(frame.pict_type)  # libavutil's picture types: 1 I, 2 P, 3 B
            types.append("IPB"[kind - 1] if 1 <= kind <= 3 else "?")
    psnr = [bench.frame_psnr(o, d) for o, d in zip(frames, decoded, strict=True)]
    weighted = float(np.mean([(6 * y + u + v) / 8 for y, u, v in psnr]))
    return (
        len(data) * 8 / (info.width * info.height * len(frames)),
        weighted,
        "".join(t[:1] for t in types),
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("clip")
    p.add_argument("frames", type=int)
    p.add_argument("--crfs", default="22,26,30,34,38")
    args = p.parse_args()
    source = read_video(args.clip, max_frames=args.frames)
    frames, info = list(source), source.info
    crfs = [int(c) for c in args.crfs.split(",")]
    curves = {}
    for name, extra in VARIANTS.items():
        curves[name] = [code(frames, info, c, len(frames), extra) for c in crfs]
        print(name, curves[name][len(crfs) // 2][2], flush=True)
    base = curves["medium"]
    for name, pts in curves.items():
        bd = bdrate.bd_rate(
            [r for r, _, _ in base],
            [q for _, q, _ in base],
            [r for r, _, _ in pts],
            [q for _, q, _ in pts],
        )
        print(f"{name:30s} {bd:+.1f}%")


if __name__ == "__main__":
    main()
