"""Encode / decode seconds of ``octree`` on a ~100k-point cloud and ``meshtrav`` on a large mesh.

The cloud is three of the shared bunny range scans put together (about 110k points, xyz only);
the mesh is the largest shared OBJ. Best of 3, one thread, through the library API (container
included).

    nice -n 10 python scripts/geometry_speed.py [--only pointcloud|sensor|mesh] [--qualities 5,9]

``sensor``: a 64-beam LiDAR sweep and a depth image of about 100k points each (the analytic
scenes of ``neuralcodec/fuzz.py``), which ``octree`` codes in its sensor modes.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from neuralcodec import api
from neuralcodec.datasets.mesh import read_mesh
from neuralcodec.datasets.paths import data_root
from neuralcodec.datasets.pointcloud import PointCloud, read_pointcloud


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
    p.add_argument("--only", choices=("pointcloud", "sensor", "mesh"), default=None)
    p.add_argument("--qualities", default="5,9")
    args = p.parse_args()
    qualities = [int(x) for x in args.qualities.split(",")]
    root = data_root() / "3d"
    if args.only in (None, "pointcloud"):
        time_cloud(root, qualities)
    if args.only in (None, "sensor"):
        time_sensor_clouds(qualities)
    if args.only in (None, "mesh"):
        time_mesh(root, qualities)


def time_sensor_clouds(qualities) -> None:
    """~100k-point clouds that take the sensor modes: a 64-beam LiDAR sweep and a depth image."""
    from neuralcodec.container import unpack
    from neuralcodec.fuzz import depth_view, lidar_sweep

    for name, cloud in (("lidar", lidar_sweep(64, 1700)), ("camera", depth_view(420, 400))):
        for q in qualities:
            te, blob = best(
                lambda q=q, c=cloud: api.encode_array(c, "octree", q, modality="pointcloud")
            )
            td, _ = best(lambda blob=blob: api.decode_bytes(blob))
            mode = unpack(blob).header["metadata"].get("geometry")
            print(
                f"octree q={q} ({7 + q} bits), {name} {len(cloud)} points, {mode} mode: "
                f"{len(blob)} B, {8 * len(blob) / len(cloud):.3f} bits/point, "
                f"encode {te:.3f} s, decode {td:.3f} s"
            )


def time_cloud(root, qualities) -> None:
    scans = root / "pointclouds" / "stanford_bunny_range_scans"
    xyz = np.concatenate(
        [read_pointcloud(scans / f).xyz for f in ("bun000.ply", "bun045.ply", "bun090.ply")]
    )
    cloud = PointCloud(xyz)
    for q in qualities:
        te, blob = best(lambda q=q: api.encode_array(cloud, "octree", q, modality="pointcloud"))
        td, _ = best(lambda blob=blob: api.decode_bytes(blob))
        print(
            f"octree q={q} ({7 + q} bits), {len(cloud)} points: {len(blob)} B, "
            f"{8 * len(blob) / len(cloud):.3f} bits/point, encode {te:.3f} s, decode {td:.3f} s"
        )


def time_mesh(root, qualities) -> None:
    mesh = read_mesh(root / "meshes" / "common_3d_test_models" / "ogre.obj")
    for q in qualities:
        te, blob = best(lambda q=q: api.encode_array(mesh, "meshtrav", q, modality="mesh"))
        td, _ = best(lambda blob=blob: api.decode_bytes(blob))
        print(
            f"meshtrav q={q} ({7 + q} bits), {len(mesh.vertices)} vertices / {len(mesh.faces)} "
            f"triangles: {len(blob)} B, encode {te:.3f} s, decode {td:.3f} s"
        )


if __name__ == "__main__":
    main()
