"""Write seven video frames as RGB PNGs: an image set that no model here was trained on.

Frames f001, f034, f067 and f100 of BasketballPass (416x240, copied as they are) and frames 0,
15 and 29 of Mobile & Calendar (352x288 4:2:0 y4m, converted with BT.601 limited-range
coefficients and nearest-neighbour chroma upsampling). Both sources are 4:2:0 video.

    python scripts/heldout_frames.py /tmp/heldout
    codec bench rd --dataset /tmp/heldout --codecs elic,webp --out /tmp/heldout_rd
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from neuralcodec.datasets.paths import DataPathError, data_root

BASKETBALL_FRAMES = (1, 34, 67, 100)
MOBILE_FRAMES = (0, 15, 29)


def y4m_frames(path: Path) -> tuple[int, int, list[bytes]]:
    data = path.read_bytes()
    header, rest = data.split(b"\n", 1)
    fields = {f[:1]: f[1:] for f in header.split()[1:]}
    w, h = int(fields[b"W"]), int(fields[b"H"])
    if not fields.get(b"C", b"420").startswith(b"420"):
        raise SystemExit(f"error: {path.name}: only 4:2:0 y4m is supported")
    size = w * h * 3 // 2
    frames = []
    while rest.startswith(b"FRAME"):
        start = rest.index(b"\n") + 1
        frames.append(rest[start : start + size])
        rest = rest[start + size :]
    return w, h, frames


def yuv420_to_rgb(frame: bytes, w: int, h: int) -> np.ndarray:
    b = np.frombuffer(frame, np.uint8)
    y = b[: w * h].reshape(h, w).astype(np.float64)
    cw, ch = w // 2, h // 2
    u = b[w * h : w * h + cw * ch].reshape(ch, cw).astype(np.float64)
    v = b[w * h + cw * ch :].reshape(ch, cw).astype(np.float64)
    u = (u.repeat(2, 0).repeat(2, 1) - 128) * 255 / 224
    v = (v.repeat(2, 0).repeat(2, 1) - 128) * 255 / 224
    y = (y - 16) * 255 / 219
    rgb = np.stack([y + 1.402 * v, y - 0.344136 * u - 0.714136 * v, y + 1.772 * u], -1)
    return np.clip(rgb.round(), 0, 255).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--video", type=Path, help="default: <data root>/video")
    args = ap.parse_args()
    try:
        args.video = args.video or data_root() / "video"
    except DataPathError as exc:
        raise SystemExit(f"error: {exc}") from None
    args.out.mkdir(parents=True, exist_ok=True)
    for i in BASKETBALL_FRAMES:
        src = args.video / "BasketballPass_416x240_png" / f"f{i:03d}.png"
        shutil.copyfile(src, args.out / f"basketball_f{i:03d}.png")
    w, h, frames = y4m_frames(args.video / "mobile_cif_30f_decoded_from_CVPCMNL1.y4m")
    for i in MOBILE_FRAMES:
        Image.fromarray(yuv420_to_rgb(frames[i], w, h)).save(args.out / f"mobile_{i:02d}.png")
    print(f"wrote {len(BASKETBALL_FRAMES) + len(MOBILE_FRAMES)} frames to {args.out}")


if __name__ == "__main__":
    main()
