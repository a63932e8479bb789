"""Orbit views of point clouds and meshes (render/geometry.py): what is drawn is where the
camera says, nearest first, in the points' colours."""

from __future__ import annotations

import numpy as np

from neuralcodec.datasets.mesh import Mesh
from neuralcodec.datasets.pointcloud import PointCloud
from neuralcodec.render.camera import Camera
from neuralcodec.render.geometry import (
    BACKGROUND,
    guess_up,
    orbit_views,
    render_points,
    surface_samples,
)


def _front_camera(size=64) -> Camera:
    return Camera.look_at(np.array([0, 0, -5.0]), np.zeros(3), np.array([0, -1.0, 0]), size, size)


def test_nearest_point_wins_and_lands_where_projected():
    cam = _front_camera()
    pts = np.array([[0.0, 0, 0], [0.0, 0, 1.0]])  # same pixel, the first is nearer
    colours = np.array([[255, 0, 0], [0, 0, 255]], np.uint8)
    img = render_points(pts, cam, colours)
    c = int(round(cam.cx))
    assert tuple(img[c, c]) == (255, 0, 0)
    assert tuple(render_points(pts[::-1], cam, colours[::-1])[c, c]) == (255, 0, 0)
    drawn = np.argwhere((img != BACKGROUND).any(-1))
    assert len(drawn) == 4  # one 2x2 dot
    behind = render_points(np.array([[0.0, 0, -10]]), cam)  # behind the camera: not drawn
    assert (behind == BACKGROUND).all()


def test_surface_samples_lie_on_the_triangles():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 3]], float)
    f = np.array([[0, 1, 2], [0, 1, 3]])
    pts, normals = surface_samples(v, f, count=4000, seed=1)
    on_xy = np.abs(pts[:, 2]) < 1e-12
    on_xz = np.abs(pts[:, 1]) < 1e-12
    assert np.all(on_xy | on_xz)
    assert 0.2 < on_xy.mean() < 0.4  # areas 0.5 and 1.5
    assert np.allclose(np.abs(normals[on_xy & ~on_xz]), [0, 0, 1])
    again, _ = surface_samples(v, f, count=4000, seed=1)
    assert np.array_equal(pts, again)


def test_orbit_views_of_a_cloud_and_a_mesh():
    rng = np.random.default_rng(0)
    sweep = np.c_[rng.uniform(-40, 40, (5000, 2)), rng.uniform(-1, 2, 5000)]  # flat and wide
    assert guess_up(sweep) == (0.0, 0.0, 1.0)
    ball = rng.normal(size=(3000, 3))
    assert guess_up(ball) == (0.0, 1.0, 0.0)
    cloud = PointCloud(ball)
    left, right = orbit_views(cloud, PointCloud(ball + 1e-4), size=96)
    assert left.shape == (96, 4 * 96, 3) and np.abs(left.astype(int) - right).mean() < 3
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float)
    tet = Mesh(v, np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]))
    a, b = orbit_views(tet, tet, size=64, azimuths=(30.0,))
    assert a.shape == (64, 64, 3) and np.array_equal(a, b)
    assert 0.05 < (a != BACKGROUND).any(-1).mean() < 0.9
