"""Where the bits of an ``octree`` file go: ideal code length per octree level, direct-coded
points and voxel counts, per point.

    python scripts/octree_levels.py CLOUD [--layout xyzrgb] [--bits 10,12,14,16]

Per level: nodes coded / of them direct-coded (isolated, remaining bits sent directly) / bits per
point spent on that level (occupancy bits, direct-mode flags and direct bits).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from neuralcodec.codecs.base import get_codec
from neuralcodec.datasets.pointcloud import PointCloud
from neuralcodec.entropy.adaptive import AdaptiveEncoder
from neuralcodec.modalities import adapter_for_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cloud", type=Path)
    ap.add_argument("--layout", default=None)
    ap.add_argument("--bits", default="10,12,14,16")
    args = ap.parse_args()
    adapter = adapter_for_path(args.cloud)
    data = adapter.read(args.cloud, layout=args.layout) if args.layout else adapter.read(args.cloud)
    cloud = PointCloud(data.xyz)
    codec = get_codec("octree")
    levels = []
    real = AdaptiveEncoder.code_octree_mix_level

    def record(self, occ, single, *rest):
        before = self.bits
        out = real(self, occ, single, *rest)
        levels.append((len(occ), int(single.sum()), self.bits - before))
        return out

    AdaptiveEncoder.code_octree_mix_level = record
    for bits in (int(b) for b in args.bits.split(",")):
        levels.clear()
        enc = AdaptiveEncoder()
        _, b, _, _, codes, _ = codec._prepare(cloud, bits - 7)
        codec._code_geometry(enc, codes, b)
        n = len(cloud)
        tree = sum(lv[2] for lv in levels)
        print(
            f"{args.cloud.name} {bits} bits: {enc.bits / n:.3f} bits/point "
            f"(counts {(enc.bits - tree) / n:.3f}, direct points {sum(lv[1] for lv in levels)})"
        )
        print("  " + " ".join(f"{d}:{m}/{s}/{x / n:.2f}" for d, (m, s, x) in enumerate(levels)))


if __name__ == "__main__":
    main()
