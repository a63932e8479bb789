"""Merge the point cloud rows of a point-clouds-only ``codec bench 3d`` run into the 3D results.

    codec bench 3d --dataset ../shared/data/3d/pointclouds --layout 'sunrgbd*=xyzrgb' \\
        --codecs octree,draco --qualities 1,3,5,7,9 --out /tmp/bench_pc
    python scripts/pointcloud_bench_merge.py /tmp/bench_pc [--into results/bench3d]

Replaces the point cloud entries (file names get the ``pointclouds/`` prefix of the full run),
the ``pointcloud:octree`` summary and bdrate.md lines, and the clouds' ``rd_*.png``; mesh rows
stay as they are (``scripts/mesh_bench_merge.py`` does the same for the meshes).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mesh_bench_merge import merge  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="output folder of the point-clouds-only bench")
    p.add_argument("--into", type=Path, default=Path("results/bench3d"))
    args = p.parse_args()
    merge(args.run, args.into, "pointcloud", "pointclouds/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
