"""The CPU splat renderer against pixels computed by hand from the 3DGS formulas: isotropic and
rotated anisotropic splats, front-to-back order, the 1e-4 transmittance stop, SH colour, hits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neuralcodec.datasets.splat import GaussianScene
from neuralcodec.render import Camera, orbit_cameras, render, render_full, scene_bounds
from neuralcodec.render.splats import ALPHA_MAX, SH_C0, SH_C1, sh_basis

F = 40.0  # focal length in pixels
W = H = 33  # odd: the image centre is pixel (16, 16)


def identity_camera(w: int = W, h: int = H) -> Camera:
    return Camera(np.eye(3), np.zeros(3), F, F, w, h)


def scene_of(rows: list[dict], degree: int = 0) -> GaussianScene:
    """rows: pos, scale (linear sigma per axis), rot (w x y z), opacity (0..1), rgb, rest."""
    k = (degree + 1) ** 2 - 1
    n = len(rows)
    op = np.array([r["opacity"] for r in rows], np.float64)
    return GaussianScene(
        positions=np.array([r["pos"] for r in rows], np.float32),
        scales_log=np.log(np.array([r["scale"] for r in rows], np.float32)),
        rotations=np.array([r.get("rot", (1, 0, 0, 0)) for r in rows], np.float32),
        opacities=np.log(op / (1 - op)).astype(np.float32),
        sh_dc=((np.array([r["rgb"] for r in rows]) - 0.5) / SH_C0).astype(np.float32),
        sh_rest=np.array([r.get("rest", np.zeros((k, 3))) for r in rows], np.float32).reshape(
            n, k, 3
        ),
        sh_degree=degree,
    )


def gaussian_alpha(opacity, du, dv, var_u, var_v):
    return min(ALPHA_MAX, opacity * math.exp(-0.5 * (du * du / var_u + dv * dv / var_v)))


def test_single_isotropic_splat_matches_hand_computed_pixels():
    z, s, op, rgb = 5.0, 0.2, 0.8, (0.9, 0.4, 0.1)
    img = render(scene_of([{"pos": (0, 0, z), "scale": (s, s, s), "opacity": op, "rgb": rgb}]),
                 identity_camera()).numpy()  # fmt: skip
    var = (F * s / z) ** 2 + 0.3  # EWA: J S J^T with J = f / z at the axis, plus the low-pass
    for u, v in [(16, 16), (18, 16), (16, 13), (20, 21), (10, 16)]:
        a = gaussian_alpha(op, u - 16, v - 16, var, var)
        want = [a * c if a >= 1 / 255 else 0.0 for c in rgb]
        assert img[v, u] == pytest.approx(want, abs=2e-5), (u, v)
    assert img[0, 0].tolist() == [0.0, 0.0, 0.0]  # far outside 3 sigma: background


def test_rotated_anisotropic_splat():
    z, sx, sy, op = 4.0, 0.3, 0.05, 0.6
    rot = (math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4))  # 90 degrees about z
    scene = scene_of(
        [{"pos": (0, 0, z), "scale": (sx, sy, 0.01), "rot": rot, "opacity": op, "rgb": (1, 1, 1)}]
    )
    img = render(scene, identity_camera()).numpy()
    # the long axis now runs along y (image v), the short one along x (image u)
    var_u, var_v = (F * sy / z) ** 2 + 0.3, (F * sx / z) ** 2 + 0.3
    for u, v in [(16, 16), (17, 16), (16, 20), (15, 25), (17, 12)]:
        a = gaussian_alpha(op, u - 16, v - 16, var_u, var_v)
        assert img[v, u, 0] == pytest.approx(a if a >= 1 / 255 else 0.0, abs=2e-5), (u, v)


def test_two_splats_composite_front_to_back_whatever_their_order():
    back = {"pos": (0, 0, 6), "scale": (0.3, 0.3, 0.3), "opacity": 0.9, "rgb": (0, 0, 1)}
    front = {"pos": (0.05, 0, 3), "scale": (0.1, 0.1, 0.1), "opacity": 0.7, "rgb": (1, 0, 0)}
    bg = (0.2, 0.3, 0.4)
    for rows in ([back, front], [front, back]):
        img = render(scene_of(rows), identity_camera(), background=bg).numpy()
        # off the axis, J's third column (-f x / z^2) widens the front splat along u
        var_fu = (F * 0.1 / 3) ** 2 * (1 + (0.05 / 3) ** 2) + 0.3
        var_fv, var_b = (F * 0.1 / 3) ** 2 + 0.3, (F * 0.3 / 6) ** 2 + 0.3
        mu_f = F * 0.05 / 3 + 16  # projected centre of the front splat
        for u, v in [(16, 16), (17, 17), (14, 16)]:
            af = gaussian_alpha(0.7, u - mu_f, v - 16, var_fu, var_fv)
            ab = gaussian_alpha(0.9, u - 16, v - 16, var_b, var_b)
            af, ab = (a if a >= 1 / 255 else 0.0 for a in (af, ab))
            t = (1 - af) * (1 - ab)
            want = np.array([af, 0, (1 - af) * ab]) + t * np.array(bg)
            assert img[v, u] == pytest.approx(want, abs=3e-5), (rows[0]["rgb"], u, v)


def test_transmittance_stops_before_it_falls_under_1e_4():
    # 5 splats in a row, alpha 0.95 at the centre pixel: T after each is 0.05^k; the fourth would
    # take it to 6.25e-6 < 1e-4, so only three are blended and the background keeps 1.25e-4
    rows = [
        {"pos": (0, 0, 2 + i), "scale": (1.0, 1.0, 1.0), "opacity": 0.95, "rgb": c}
        for i, c in enumerate([(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1), (1, 1, 1)])
    ]
    out = render_full(scene_of(rows), identity_camera(), background=(1, 1, 1))
    px = out.image.numpy()[16, 16]
    a, t3 = 0.95, 0.05**3
    want = np.array([a, 0.05 * a, 0.0025 * a]) + t3
    assert px == pytest.approx(want, abs=2e-5)  # the 4th (white) would add 1.2e-4 more
    assert float(out.alpha[16, 16]) == pytest.approx(1 - t3, abs=1e-6)


def test_sh_degree_one_colour_depends_on_view_direction():
    rest = np.zeros((3, 3))
    rest[1] = (0.4, -0.2, 0.0)  # the z coefficient: seen along +z it adds C1 * rest[1]
    rest[2] = (0.3, 0.3, 0.3)  # the x coefficient: zero along +z
    row = {"pos": (0, 0, 5), "scale": (0.5, 0.5, 0.5), "opacity": 0.999, "rgb": (0.5, 0.5, 0.5),
           "rest": rest}  # fmt: skip
    img = render(scene_of([row], degree=1), identity_camera()).numpy()
    want = np.clip(0.5 + SH_C1 * rest[1], 0, None) * ALPHA_MAX
    assert img[16, 16] == pytest.approx(want, abs=2e-5)


def test_sh_basis_is_orthonormal_up_to_degree_3():
    n = 40000
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = math.pi * (1 + 5**0.5) * i
    d = np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], 1)
    b = sh_basis(torch.tensor(d, dtype=torch.float64), 3)
    gram = (b.T @ b).numpy() * 4 * math.pi / n
    assert gram == pytest.approx(np.eye(16), abs=2e-3)


def test_hits_add_up_to_the_opacity_map_and_far_splats_are_culled():
    rows = [
        {"pos": (0, 0, 5), "scale": (0.2, 0.2, 0.2), "opacity": 0.5, "rgb": (1, 1, 1)},
        {"pos": (0, 0, -5), "scale": (0.2, 0.2, 0.2), "opacity": 0.5, "rgb": (1, 1, 1)},  # behind
        {"pos": (50, 0, 5), "scale": (0.2, 0.2, 0.2), "opacity": 0.5, "rgb": (1, 1, 1)},  # outside
    ]
    out = render_full(scene_of(rows), identity_camera(), hits=True)
    assert float(out.hits[0]) == pytest.approx(float(out.alpha.sum()), rel=1e-5)
    assert out.hits[1:].tolist() == [0.0, 0.0]


def test_orbit_cameras_look_at_the_scene_centre():
    rng = np.random.default_rng(0)
    pos = rng.normal(size=(500, 3)) + np.array([3.0, -1.0, 2.0])
    cams = orbit_cameras(pos, count=6, size=64)
    centre, radius = scene_bounds(pos)
    assert len(cams) == 6 and all(c.width == c.height == 64 for c in cams)
    for c in cams:
        p = c.rotation @ centre + c.translation
        assert abs(p[0]) < 1e-9 and abs(p[1]) < 1e-9 and p[2] > radius  # centre on the axis
        assert np.allclose(c.rotation @ c.rotation.T, np.eye(3), atol=1e-12)
    dists = [np.linalg.norm(c.center - centre) for c in cams]
    assert max(dists) - min(dists) < 1e-9
    with pytest.raises(ValueError):
        orbit_cameras(pos, count=0)
