"""Encode / decode seconds of ``meshtrav`` on the largest shared mesh (ogre.obj, 62k vertices /
124k triangles), best of 3, one thread, through the library API (container included).

    nice -n 10 python scripts/mesh_speed.py [--qualities 5,9]
"""

from __future__ import annotations

import argparse
import time

from neuralcodec import api
from neuralcodec.datasets.mesh import read_mesh
from neuralcodec.datasets.paths import data_root


def best(fn, repeat=3):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    import torch

    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--qualities", default="5,9")
    args = p.parse_args()
    mesh = read_mesh(data_root() / "3d" / "meshes" / "common_3d_test_models" / "ogre.obj")
    for q in (int(x) for x in args.qualities.split(",")):
        te, blob = best(lambda q=q: api.encode_array(mesh, "meshtrav", q, modality="mesh"))
        td, _ = best(lambda blob=blob: api.decode_bytes(blob))
        print(
            f"meshtrav q={q} ({7 + q} bits), {len(mesh.vertices)} vertices / {len(mesh.faces)} "
            f"triangles: {len(blob)} B, encode {te:.3f} s, decode {td:.3f} s"
        )


if __name__ == "__main__":
    main()
