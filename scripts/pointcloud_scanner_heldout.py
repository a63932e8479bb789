"""Synthetic scanner clouds for the point cloud codec, made without the shared point clouds.

Scenes are assembled from the shared meshes (``3d/meshes``: scaled to object size and placed
around the sensor), a ground plane, walls and boxes, and scanned by ray casting (open3d's
``RaycastingScene``):

* spinning LiDARs with other beam counts than the shared KITTI (64) and nuScenes (32) clouds:
  16, 32 and 128 beams, uniform or denser-at-the-horizon elevation tables, other azimuth
  resolutions, firing jitter, range noise, dropouts, range limits, a forward field of view for
  one of them, lasers at different heights on the head for another;
* pinhole depth cameras (other resolutions and intrinsics than SUN RGB-D / ScanNet): depth
  quantised like a Kinect (1 mm steps, or disparity steps), noise growing with depth, missing
  pixels, random subsampling for one; back-projected to xyz in the camera frame, or rotated
  upright by the camera's tilt as SUN RGB-D's clouds are.

    python scripts/pointcloud_scanner_heldout.py --out /tmp/scanner_heldout
    codec bench 3d --dataset /tmp/scanner_heldout --codecs octree,draco --qualities 1,3,5,7,9

Everything is seeded: the same command writes the same files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from neuralcodec.datasets.mesh import read_mesh
from neuralcodec.datasets.paths import data_root
from neuralcodec.datasets.pointcloud import PointCloud, write_pointcloud


def _meshes() -> list[tuple[np.ndarray, np.ndarray]]:
    root = data_root() / "3d" / "meshes"
    out = []
    for path in sorted(root.rglob("*.obj")) + sorted(root.rglob("bun_zipper_res2.ply")):
        m = read_mesh(path)
        v = np.asarray(m.vertices, np.float64)
        f = np.asarray(m.faces, np.int64).reshape(-1, 3)
        v = v - (v.min(0) + v.max(0)) / 2
        v /= np.abs(v).max()  # unit half-extent
        out.append((v, f))
    return out


def _box(lo, hi) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    c = np.array([[(i >> 2) & 1, (i >> 1) & 1, i & 1] for i in range(8)], float)
    v = lo + c * (hi - lo)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    f = [(a, b, c_) for a, b, c_, _ in quads] + [(a, c_, d) for a, _, c_, d in quads]
    return v, np.array(f, np.int64)


def _scene(rng, meshes, outdoor: bool):
    """open3d raycasting scene: ground (or floor), boxes or walls, and meshes as objects."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()

    def add(v, f):
        scene.add_triangles(
            o3d.core.Tensor(np.asarray(v, np.float32)), o3d.core.Tensor(np.asarray(f, np.uint32))
        )

    if outdoor:
        ground = -1.7 - rng.uniform(0, 0.3)
        add(*_box((-120, -120, ground - 1), (120, 120, ground)))
        for _ in range(14):  # buildings / parked cars as boxes
            c = rng.uniform(-40, 40, 2)
            if np.hypot(*c) < 6:
                continue
            s = rng.uniform([1.5, 1.5, 1.2], [12, 12, 9])
            add(*_box((c[0], c[1], ground), (c[0] + s[0], c[1] + s[1], ground + s[2])))
        for _ in range(18):
            v, f = meshes[rng.integers(len(meshes))]
            c = rng.uniform(-25, 25, 2)
            if np.hypot(*c) < 4:
                continue
            size = rng.uniform(0.6, 2.5)
            a = rng.uniform(0, 2 * np.pi)
            rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
            w = v[:, [0, 2, 1]] @ rot.T * size  # meshes are y-up
            w[:, 2] += ground - w[:, 2].min()
            add(w + [c[0], c[1], 0], f)
    else:  # a room around the camera at the origin looking along +z, y down
        w, h, d = rng.uniform(3, 6), rng.uniform(2.4, 3), rng.uniform(4, 7)
        floor = rng.uniform(1.0, 1.5)
        walls = [
            ((-w, floor, -1), (w, floor + 0.1, d)),  # floor (y down)
            ((-w, floor - h - 0.1, -1), (w, floor - h, d)),  # ceiling
            ((-w - 0.1, floor - h, -1), (-w, floor, d)),
            ((w, floor - h, -1), (w + 0.1, floor, d)),
            ((-w, floor - h, d), (w, floor, d + 0.1)),  # back wall
        ]
        for lo, hi in walls:
            add(*_box(lo, hi))
        for _ in range(4):  # furniture
            x, z = rng.uniform(-w + 0.5, w - 1), rng.uniform(1.5, d - 0.8)
            s = rng.uniform([0.4, 0.4, 0.4], [1.5, 1.0, 1.2])
            add(*_box((x, floor - s[1], z), (x + s[0], floor, z + s[2])))
        for _ in range(5):
            v, f = meshes[rng.integers(len(meshes))]
            size = rng.uniform(0.2, 0.6)
            x, z = rng.uniform(-w + 0.6, w - 0.6), rng.uniform(1.2, d - 0.5)
            p = v * size
            p[:, 1] = -p[:, 1]  # y down
            p[:, 1] += floor - p[:, 1].max()
            add(p + [x, 0, z], f)
    return scene


def _cast(scene, origins, dirs) -> np.ndarray:
    import open3d as o3d

    rays = np.concatenate([origins, dirs], axis=1).astype(np.float32)
    ans = scene.cast_rays(o3d.core.Tensor(rays), nthreads=1)
    return ans["t_hit"].numpy().astype(np.float64)


def lidar(
    rng, meshes, beams, elev, azimuth_steps, jitter, noise, dropout, max_range, fov=None, offset=0.0
):
    """One sweep of a spinning LiDAR at the origin: float32 xyz (the sensor frame). ``offset``:
    the spread (m) of the lasers' heights on the head (each fires from its own point)."""
    scene = _scene(rng, meshes, outdoor=True)
    lo, hi = elev
    if beams >= 64:  # denser towards the horizon (about half the mean spacing there)
        s = np.linspace(-1, 1, beams)
        s = 0.5 * s + 0.5 * np.sign(s) * np.abs(s) ** 2
        el = (lo + hi) / 2 + (hi - lo) / 2 * s
    else:
        el = np.linspace(lo, hi, beams)
    el = np.radians(el + rng.normal(0, 0.02, beams))  # calibration spread
    heights = rng.normal(0, offset, beams) if offset else np.zeros(beams)
    phase = rng.uniform(0, 2 * np.pi / azimuth_steps, beams)  # per-laser firing offset
    k = np.arange(azimuth_steps)
    az = phase[:, None] + 2 * np.pi * k[None, :] / azimuth_steps
    az = az + rng.normal(0, jitter, az.shape)
    elg = np.broadcast_to(el[:, None], az.shape)
    dirs = np.stack([np.cos(elg) * np.cos(az), np.cos(elg) * np.sin(az), np.sin(elg)], -1)
    dirs = dirs.reshape(-1, 3)
    origins = np.zeros_like(dirs)
    origins[:, 2] = np.repeat(heights, azimuth_steps)
    if fov is not None:
        a = np.arctan2(dirs[:, 1], dirs[:, 0])
        inside = np.abs(a) < np.radians(fov / 2)
        dirs, origins = dirs[inside], origins[inside]
    t = _cast(scene, origins, dirs)
    keep = np.isfinite(t) & (t < max_range) & (t > 1.0) & (rng.random(len(t)) > dropout)
    t = t[keep] + rng.normal(0, noise, keep.sum())
    return (origins[keep] + dirs[keep] * t[:, None]).astype(np.float32)


def camera(rng, meshes, width, height, fov_x, disparity, noise, missing, subsample, tilt):
    """One depth image of a pinhole camera, back-projected: float32 xyz.

    Camera frame (x right, y down, z forward), or with ``tilt`` (degrees: pitch, roll) rotated to
    an upright frame (x right, y forward, z up) the way SUN RGB-D's clouds are stored."""
    scene = _scene(rng, meshes, outdoor=False)
    fx = width / 2 / np.tan(np.radians(fov_x) / 2)
    fy = fx * rng.uniform(0.995, 1.005)
    cx, cy = width / 2 + rng.uniform(-8, 8), height / 2 + rng.uniform(-8, 8)
    u, v = np.meshgrid(np.arange(width), np.arange(height))
    d = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u, float)], -1).reshape(-1, 3)
    t = _cast(scene, np.zeros_like(d), d / np.linalg.norm(d, axis=1, keepdims=True))
    z = t / np.linalg.norm(d, axis=1)  # depth along the axis
    z = z + rng.normal(0, 1, z.shape) * noise * z * z
    if disparity:  # disparity quantised in 1/8 pixel steps (baseline 7.5 cm)
        disp = np.round(8 * fx * 0.075 / z) / 8
        z = fx * 0.075 / np.maximum(disp, 1e-9)
    else:
        z = np.round(z * 1000) / 1000  # millimetres
    keep = np.isfinite(z) & (z > 0.4) & (z < 8) & (rng.random(len(z)) > missing)
    if subsample:
        keep &= rng.random(len(z)) < subsample
    p = d[keep] * z[keep, None]
    if tilt is not None:
        pitch, roll = np.radians(tilt)
        # camera (x right, y down, z forward) -> upright (x right, y forward, z up)
        base = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], float)
        rx = np.array(
            [[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]]
        )
        ry = np.array(
            [[np.cos(roll), 0, np.sin(roll)], [0, 1, 0], [-np.sin(roll), 0, np.cos(roll)]]
        )
        p = p @ (rx @ ry @ base).T
    return p.astype(np.float32)


def clouds(seed: int = 7):
    """(name, float32 xyz) of every held-out cloud."""
    meshes = _meshes()
    rng = np.random.default_rng(seed)
    yield "lidar16", lidar(rng, meshes, 16, (-15, 15), 1800, 2e-4, 0.01, 0.02, 100)
    yield "lidar32", lidar(rng, meshes, 32, (-30, 10), 1084, 5e-4, 0.02, 0.05, 70)
    yield "lidar128", lidar(rng, meshes, 128, (-25, 15), 1024, 1e-4, 0.008, 0.01, 200)
    yield "lidar64fov", lidar(rng, meshes, 64, (-24.8, 2), 2048, 3e-4, 0.015, 0.03, 120, 90)
    yield "depth_kinect1", camera(rng, meshes, 320, 240, 57, True, 0.0015, 0.05, None, None)
    yield "depth_mm_tilt", camera(rng, meshes, 512, 424, 70, False, 0.001, 0.08, 0.35, (-12, 3))
    yield "depth_vga_tilt", camera(rng, meshes, 640, 480, 62, False, 0.002, 0.1, 0.15, (8, -2))
    # lasers at their own heights on the head (up to about +-15 cm), as in two-block sensors
    yield "lidar64off", lidar(rng, meshes, 64, (-24, 3), 2000, 2e-4, 0.01, 0.03, 120, None, 0.06)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the .ply clouds")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--force", action="store_true", help="overwrite existing files")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, xyz in clouds(args.seed):
        target = args.out / f"{name}.ply"
        if target.exists() and not args.force:
            raise SystemExit(f"error: {target} exists (use --force)")
        write_pointcloud(target, PointCloud(xyz), force=args.force)
        print(f"{target}: {len(xyz)} points")


if __name__ == "__main__":
    main()
