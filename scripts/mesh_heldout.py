"""Meshes the mesh coder was never tuned on, made from the shared ones and from shapes of its own.

    python scripts/mesh_heldout.py --out build/mesh_heldout
    codec bench 3d --dataset build/mesh_heldout --codecs meshtrav,draco --qualities 1,3,5,7,9 \\
        --out /tmp/heldout_mesh_bench

Each is a kind of mesh the shared set does not hold (seeded, so the files are the same on every
run):

- ``spot_loop``: spot after one Loop subdivision (regular valence-6 vertices, smooth);
- ``cow_quadric``: cow decimated to 40 % of its triangles by quadric error (irregular, coarse);
- ``homer_noisy``: homer with Gaussian noise along the vertex normals (a tenth of the mean edge);
- ``alligator_cluster``: alligator remeshed by vertex clustering (cells of 1/120 of the box);
- ``torus_poisson``: a Poisson surface (marching cubes of the fitted indicator, octree depth 6)
  of points sampled on a torus (one thread: its sums run in one order, so the file repeats);
- ``sheet_delaunay``: a wavy height field over 4,000 random points in the unit square, Delaunay
  triangulated (irregular triangles, a border).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import open3d as o3d
from scipy.spatial import Delaunay

from neuralcodec.datasets.mesh import Mesh, read_mesh, write_mesh
from neuralcodec.datasets.paths import data_root

MODELS = data_root() / "3d" / "meshes" / "common_3d_test_models"


def _o3d(path: Path) -> o3d.geometry.TriangleMesh:
    m = read_mesh(path)
    return o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(np.asarray(m.vertices, np.float64)),
        o3d.utility.Vector3iVector(np.asarray(m.faces, np.int32)),
    )


def _mesh(m: o3d.geometry.TriangleMesh) -> Mesh:
    m.remove_unreferenced_vertices()
    return Mesh(np.asarray(m.vertices, np.float64), np.asarray(m.triangles, np.int64))


def spot_loop() -> Mesh:
    return _mesh(_o3d(MODELS / "spot.obj").subdivide_loop(number_of_iterations=1))


def cow_quadric() -> Mesh:
    m = _o3d(MODELS / "cow.obj")
    return _mesh(m.simplify_quadric_decimation(int(0.4 * len(m.triangles))))


def homer_noisy() -> Mesh:
    m = _o3d(MODELS / "homer.obj")
    m.compute_vertex_normals()
    v, f = np.asarray(m.vertices), np.asarray(m.triangles)
    edges = np.linalg.norm(v[f] - v[np.roll(f, 1, axis=1)], axis=2).mean()
    rng = np.random.default_rng(11)
    noise = rng.normal(0.0, 0.1 * edges, len(v))[:, None] * np.asarray(m.vertex_normals)
    return Mesh(v + noise, f.astype(np.int64))


def alligator_cluster() -> Mesh:
    m = _o3d(MODELS / "alligator.obj")
    size = float(np.max(m.get_max_bound() - m.get_min_bound())) / 120
    m = m.simplify_vertex_clustering(size, o3d.geometry.SimplificationContraction.Average)
    m.remove_degenerate_triangles()
    return _mesh(m)


def torus_poisson() -> Mesh:
    rng = np.random.default_rng(5)
    u, w = rng.uniform(0, 2 * np.pi, (2, 20000))
    big, small = 1.0, 0.35
    c = np.stack([np.cos(u), np.sin(u), np.zeros_like(u)], 1)
    n = np.cos(w)[:, None] * c + np.sin(w)[:, None] * np.array([0.0, 0.0, 1.0])
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(big * c + small * n))
    pcd.normals = o3d.utility.Vector3dVector(n)
    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        m, _ = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(pcd, depth=6, n_threads=1)
    m.remove_degenerate_triangles()
    return _mesh(m)


def sheet_delaunay() -> Mesh:
    rng = np.random.default_rng(7)
    p = rng.uniform(0, 1, (4000, 2))
    h = 0.15 * np.sin(5 * p[:, 0]) * np.cos(4 * p[:, 1]) + 0.05 * np.sin(17 * p[:, 0] * p[:, 1])
    return Mesh(np.column_stack([p, h]), Delaunay(p).simplices.astype(np.int64))


MAKERS = {
    "spot_loop.obj": spot_loop,
    "cow_quadric.obj": cow_quadric,
    "homer_noisy.obj": homer_noisy,
    "alligator_cluster.obj": alligator_cluster,
    "torus_poisson.ply": torus_poisson,
    "sheet_delaunay.obj": sheet_delaunay,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("build/mesh_heldout"))
    ap.add_argument("--force", action="store_true", help="overwrite existing files")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, make in MAKERS.items():
        target = args.out / name
        if target.exists() and not args.force:
            raise SystemExit(f"error: {target} exists (use --force)")
        mesh = make()
        write_mesh(target, mesh, force=args.force)
        print(f"{target}: {len(mesh.vertices)} vertices, {len(mesh.faces)} triangles")


if __name__ == "__main__":
    main()
