"""Point clouds the octree coder was never tuned on: the vertices of the shared meshes.

Writes every mesh's vertex set (no faces) as a ``.ply`` point cloud into ``--out`` so that the 3D
benchmark can compare ``octree`` with Draco on them:

    python scripts/octree_heldout.py --out /tmp/heldout_clouds
    codec bench 3d --dataset /tmp/heldout_clouds --codecs octree,draco --out /tmp/heldout_bench

CAD parts (fandisk, rocker-arm), sculpted characters and low-poly models: vertex sets are far
sparser and more regular than scans or LiDAR sweeps, so they test the contexts away from the data
they were designed on.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from neuralcodec.datasets.mesh import read_mesh
from neuralcodec.datasets.paths import data_root
from neuralcodec.datasets.pointcloud import PointCloud, write_pointcloud


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the .ply clouds")
    ap.add_argument("--force", action="store_true", help="overwrite existing files")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    meshes = sorted((data_root() / "3d" / "meshes" / "common_3d_test_models").glob("*.obj"))
    for path in meshes:
        target = args.out / f"{path.stem}_vertices.ply"
        if target.exists() and not args.force:
            raise SystemExit(f"error: {target} exists (use --force)")
        vertices = np.asarray(read_mesh(path).vertices, np.float32)
        write_pointcloud(target, PointCloud(vertices))
        print(f"{target}: {len(vertices)} points")


if __name__ == "__main__":
    main()
