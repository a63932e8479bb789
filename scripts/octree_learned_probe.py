"""Does a small learned occupancy model beat the adaptive contexts of ``octree``?

Trains an MLP (26 same-depth neighbours, parent occupancy byte, slot in the parent, depth class ->
softmax over the 255 occupancy patterns) on some clouds and compares, on held-out clouds, its
ideal code length (sum of -log2 p, float: a lower bound for any integer version of it) with the
size the adaptive model actually writes for the same octree (``octree``'s occupancy stream).

    nice -n 10 python scripts/octree_learned_probe.py [--minutes 3]

One thread; a few minutes. Prints one line per held-out cloud and bit depth, then the totals.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from neuralcodec.codecs import geometry as g
from neuralcodec.codecs.pointcloud_octree import OctreePointCloudCodec, _children, _Octree
from neuralcodec.datasets.paths import data_root
from neuralcodec.datasets.pointcloud import PointCloud, read_pointcloud

OFFSETS = np.array(
    [
        (x, y, z)
        for x in (-1, 0, 1)
        for y in (-1, 0, 1)
        for z in (-1, 0, 1)
        if (x, y, z) != (0, 0, 0)
    ],
    dtype=np.int64,
)
TRAIN = [
    "pointclouds/stanford_bunny_range_scans/bun000.ply",
    "pointclouds/stanford_bunny_range_scans/top2.ply",
    "pointclouds/lidar_rgbd/kitti_000008.bin",
]
HELD_OUT = [
    "pointclouds/stanford_bunny_range_scans/bun090.ply",
    "pointclouds/lidar_rgbd/nuscenes_LIDAR_TOP_1532402927647951.pcd.bin",
    ("pointclouds/lidar_rgbd/sunrgbd_000017.bin", "xyzrgb"),
]
BITS = (10, 12, 14)


def node_features(cloud: PointCloud, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(features N x 47 float32, occupancy N) of every octree node, breadth first."""
    q, _, _ = g.quantise(cloud.xyz, bits)
    leaves = np.unique(g.morton(q))
    tree = _Octree(leaves, bits)
    codes, coords = np.zeros(1, np.int64), np.zeros((1, 3), np.int64)
    parent_occ, slot = np.full(1, 255, np.int64), np.zeros(1, np.int64)
    feats, occs = [], []
    for depth, occ in enumerate(tree.levels):
        side = 1 << depth
        nb = np.zeros((len(codes), 26), np.float32)
        for k, off in enumerate(OFFSETS):
            c = coords + off
            inside = np.all((c >= 0) & (c < side), axis=1)
            nc = g.morton(np.where(inside[:, None], c, 0))
            pos = np.searchsorted(codes, nc)
            found = inside & (pos < len(codes))
            found[found] = codes[pos[found]] == nc[found]
            nb[:, k] = found
        pbits = ((parent_occ[:, None] >> np.arange(8)) & 1).astype(np.float32)
        sl = np.eye(8, dtype=np.float32)[slot]
        r = bits - depth
        dcls = np.zeros((len(codes), 5), np.float32)
        dcls[:, min(r, 4) - 1] = 1
        dcls[:, 4] = depth / bits
        feats.append(np.concatenate([nb, pbits, sl, dcls], axis=1))
        occs.append(occ)
        mask = np.unpackbits(occ.astype(np.uint8)[:, None], axis=1)[:, ::-1]
        node, s = np.nonzero(mask)
        parent_occ, slot = occ[node], s
        codes, coords, _ = _children(codes, coords, occ)
    return np.concatenate(feats), np.concatenate(occs)


def adaptive_bytes(cloud: PointCloud, bits: int) -> int:
    quality = bits - 7
    return len(OctreePointCloudCodec().encode(PointCloud(cloud.xyz), quality).streams["tree"])


def load(root: Path, item) -> PointCloud:
    name, layout = (item, None) if isinstance(item, str) else item
    return read_pointcloud(root / "3d" / name, layout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=3.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    root = data_root()
    xs, ys = [], []
    for item in TRAIN:
        cloud = load(root, item)
        for b in BITS:
            f, o = node_features(cloud, b)
            xs.append(f)
            ys.append(o - 1)
    x = torch.from_numpy(np.concatenate(xs))
    y = torch.from_numpy(np.concatenate(ys)).long()
    print(f"training nodes: {len(x)}")
    net = nn.Sequential(
        nn.Linear(47, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 255)
    )
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    start, step = time.time(), 0
    while time.time() - start < 60 * args.minutes:
        idx = torch.randint(0, len(x), (4096,))
        loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 500 == 0:
            print(f"step {step}: {loss.item() / np.log(2):.3f} bits/node", flush=True)
    net.eval()
    tot_l = tot_a = 0.0
    for item in HELD_OUT:
        cloud = load(root, item)
        for b in BITS:
            f, o = node_features(cloud, b)
            with torch.no_grad():
                logp = torch.log_softmax(net(torch.from_numpy(f)), dim=1)
            bits_l = float(
                -logp[torch.arange(len(o)), torch.from_numpy(o - 1).long()].sum()
            ) / np.log(2)
            bits_a = 8.0 * adaptive_bytes(cloud, b)
            tot_l += bits_l
            tot_a += bits_a
            name = item if isinstance(item, str) else item[0]
            print(
                f"{Path(name).name} {b} bits: learned (ideal) {bits_l / len(cloud):.3f} "
                f"vs adaptive (real) {bits_a / len(cloud):.3f} bits/point"
            )
    print(
        f"held-out total: learned {tot_l / 8:.0f} B vs adaptive {tot_a / 8:.0f} B "
        f"({100 * (tot_l / tot_a - 1):+.1f}%), {step} steps, {sum(p.numel() for p in net.parameters())} weights"
    )


if __name__ == "__main__":
    main()
