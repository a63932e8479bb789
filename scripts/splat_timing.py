"""Timing of the splat renderer and decoder on a scene of N splats (default 150,000) made by
tiling a given scene side by side (4 copies offset along x, cut to N).

    python scripts/splat_timing.py SCENE.ply [--splats 150000] [--threads 2] [--views 16]

Prints: seconds to render ``--views`` orbit views at 512 px; for levels 3 and 8, the .ncf size,
encode seconds, and seconds to decode the .ncf and write an INRIA .ply (``codec decode``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from neuralcodec import api
from neuralcodec.datasets.splat import GaussianScene, read_splat, write_splat
from neuralcodec.render import SceneTensors, orbit_cameras, render


def tiled(scene: GaussianScene, n: int) -> GaussianScene:
    copies = -(-n // len(scene))
    width = float(np.ptp(scene.positions[:, 0])) * 1.1
    cat = lambda a: np.concatenate([a] * copies)[:n]  # noqa: E731
    pos = np.concatenate([scene.positions + [i * width, 0, 0] for i in range(copies)])[:n]
    return GaussianScene(pos.astype(np.float32), cat(scene.scales_log), cat(scene.rotations),
                         cat(scene.opacities), cat(scene.sh_dc), cat(scene.sh_rest),
                         scene.sh_degree)  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("scene")
    p.add_argument("--splats", type=int, default=150_000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--views", type=int, default=16)
    p.add_argument("--levels", default="3,8")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    scene = tiled(read_splat(a.scene), a.splats)
    print(f"{len(scene)} splats, {a.threads} torch threads")
    st = SceneTensors.of(scene)
    t = time.perf_counter()
    for cam in orbit_cameras(scene.positions, a.views, 512):
        render(st, cam)
    print(f"render {a.views} views at 512 px: {time.perf_counter() - t:.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.ply"
        write_splat(src, scene)
        for q in (int(x) for x in a.levels.split(",")):
            ncf = Path(tmp) / f"q{q}.ncf"
            rep = api.encode_file(src, ncf, "splat-vq", q)
            t = time.perf_counter()
            api.decode_file(ncf, Path(tmp) / f"q{q}.ply")
            dec = time.perf_counter() - t
            print(f"level {q}: {rep.bytes} B ({rep.bytes / len(scene):.3f} B/splat), "
                  f"encode {rep.seconds:.1f} s, decode to .ply {dec:.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
