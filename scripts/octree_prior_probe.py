"""Would a learned prior help the ``octree`` coder? Measures it, ships nothing.

The octree coder starts every cloud from fresh context states and mixer weights and adapts.
A prior learns them offline: code training clouds one after another with one model carried
through, cap every state's observation count (so that it keeps adapting fast), and start
the test clouds from it. Geometry stream bytes, fresh against prior:

    python scripts/octree_prior_probe.py              # train: bunny scans + LiDAR / RGB-D clouds
                                                      # test: the 12 shared meshes' vertex sets
    python scripts/octree_prior_probe.py --leave-one-out   # every scan and vertex set from the others
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import neuralcodec.codecs.pointcloud_octree as po  # noqa: E402
from neuralcodec.codecs.base import get_codec  # noqa: E402
from neuralcodec.datasets.mesh import read_mesh  # noqa: E402
from neuralcodec.datasets.paths import data_root  # noqa: E402
from neuralcodec.datasets.pointcloud import PointCloud, read_pointcloud  # noqa: E402
from neuralcodec.entropy.adaptive import AdaptiveEncoder, octree_mix_model  # noqa: E402
from neuralcodec.kernels import _adaptive  # noqa: E402

CODEC = get_codec("octree")
HASHED = 6 << 18  # the hashed models' states at the end of the state array (kernels/_adaptive.c)


def geometry_bytes(cloud: PointCloud, quality: int, model) -> int:
    """Bytes of the octree stream of ``cloud`` coded from ``model`` (updated in place)."""
    _, bits, _, _, codes, _ = CODEC._prepare(cloud, quality)
    fresh = po.octree_mix_model
    po.octree_mix_model = lambda: model
    try:
        enc = AdaptiveEncoder()
        CODEC._code_geometry(enc, codes, bits)
        return len(enc.finish())
    finally:
        po.octree_mix_model = fresh


def learn(clouds: list[PointCloud], qualities, cap: int):
    st, w = octree_mix_model()
    for q in qualities:
        for cloud in clouds:
            geometry_bytes(cloud, q, (st, w))
    p, n = st & 0xFFFF, (st >> 16) & 0xFF
    capped = (p | (np.minimum(n, cap) << 16)).astype(np.int32)
    size = _adaptive.octree_mix_sizes()[0]
    capped[size - HASHED :] = octree_mix_model()[0][size - HASHED :]  # hashed: fresh
    return capped, w


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--leave-one-out", action="store_true")
    ap.add_argument("--cap", type=int, default=8, help="observation count kept per state")
    ap.add_argument("--qualities", default="1,3,5,7,9")
    args = ap.parse_args()
    qualities = [int(v) for v in args.qualities.split(",")]
    d3 = data_root() / "3d"
    scans = {p.stem: read_pointcloud(p) for p in sorted((d3 / "pointclouds/stanford_bunny_range_scans").glob("*.ply"))}  # fmt: skip
    lidar = d3 / "pointclouds/lidar_rgbd"
    sensors = {
        "kitti": read_pointcloud(lidar / "kitti_000008.bin", "xyzi"),
        "nuscenes": read_pointcloud(
            lidar / "nuscenes_LIDAR_TOP_1532402927647951.pcd.bin", "x,y,z,intensity,ring"
        ),
        "sunrgbd": read_pointcloud(lidar / "sunrgbd_000017.bin", "xyzrgb"),
    }
    meshes = {
        p.stem: PointCloud(np.asarray(read_mesh(p).vertices, np.float32))
        for p in sorted((d3 / "meshes/common_3d_test_models").glob("*.obj"))
    }
    if not args.leave_one_out:
        prior = learn([*scans.values(), *sensors.values()], range(1, 10), args.cap)
    tests = {**scans, **meshes} if args.leave_one_out else meshes
    total = [0, 0]
    for q in qualities:
        row = [0, 0]
        for name, cloud in tests.items():
            if args.leave_one_out:
                others = [c for n, c in tests.items() if n != name]
                prior = learn(others, [q], args.cap)
            a = geometry_bytes(cloud, q, octree_mix_model())
            b = geometry_bytes(cloud, q, (prior[0].copy(), prior[1].copy()))
            row[0] += a
            row[1] += b
        total = [total[0] + row[0], total[1] + row[1]]
        print(f"q{q}: fresh {row[0]} B, prior {row[1]} B ({100 * (row[1] / row[0] - 1):+.2f}%)")
    print(f"all: fresh {total[0]} B, prior {total[1]} B ({100 * (total[1] / total[0] - 1):+.2f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
