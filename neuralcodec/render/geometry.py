"""Point clouds and meshes drawn from orbit cameras, for the demo's side-by-side views.

::

    point cloud  --project (render/camera.py)--> nearest point per pixel (z-buffer), drawn as
                 2 x 2 px dots; its colours where it has them, else shaded by depth
    mesh         --area-weighted surface samples (fixed seed), face normals--> the same, shaded
                 by a light at the camera (|n . view|)

No GPU and no WebGL: NumPy only, so the views render the same in a headless browser test as on a
laptop. ``orbit_views(original)`` chooses the cameras (``orbit_cameras``) and ``up``
(``guess_up``); the decoded geometry is drawn with the same cameras.
"""

from __future__ import annotations

import numpy as np

from .camera import Camera, orbit_cameras

BACKGROUND = 250
DOT = 2  # pixels per side of a drawn point


def guess_up(points: np.ndarray) -> tuple[float, float, float]:
    """+z for flat, wide scenes (LiDAR sweeps: tens of metres across, a few high), else +y (the
    usual convention of meshes and scans)."""
    p = np.asarray(points, np.float64)
    lo, hi = np.percentile(p, 2, axis=0), np.percentile(p, 98, axis=0)
    ext = hi - lo
    return (0.0, 0.0, 1.0) if ext[2] < 0.35 * min(ext[0], ext[1]) else (0.0, 1.0, 0.0)


def surface_samples(
    vertices: np.ndarray, faces: np.ndarray, count: int = 120_000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` points spread over the triangles by area (fixed ``seed``) and their unit face
    normals: a mesh as a dense shaded point set."""
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    if len(f) == 0:
        return v, np.zeros_like(v)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    n = np.cross(b - a, c - a)
    area = np.linalg.norm(n, axis=1)
    normals = n / np.maximum(area, 1e-30)[:, None]
    total = area.sum()
    rng = np.random.default_rng(seed)
    if total <= 0:
        return v, np.zeros_like(v)
    tri = rng.choice(len(f), size=count, p=area / total)
    r1, r2 = rng.random(count), rng.random(count)
    s = np.sqrt(r1)
    w0, w1, w2 = 1 - s, s * (1 - r2), s * r2
    pts = w0[:, None] * a[tri] + w1[:, None] * b[tri] + w2[:, None] * c[tri]
    return pts, normals[tri]


def render_points(
    points: np.ndarray,
    cam: Camera,
    colors: np.ndarray | None = None,
    normals: np.ndarray | None = None,
) -> np.ndarray:
    """(H, W, 3) uint8: the nearest point at every pixel, as ``DOT`` x ``DOT`` dots. Colour:
    ``colors`` (N x 3, uint8 or floats in [0, 1]) if given; else a grey shaded by ``normals``
    against the view direction; else by depth (near = dark)."""
    p = np.asarray(points, np.float64)
    pc = p @ cam.rotation.T + cam.translation
    z = pc[:, 2]
    keep = z > 1e-9
    u = np.floor(cam.fx * pc[keep, 0] / z[keep] + cam.cx + 0.5).astype(np.int64)
    v = np.floor(cam.fy * pc[keep, 1] / z[keep] + cam.cy + 0.5).astype(np.int64)
    zk = z[keep]
    if colors is not None:
        col = np.asarray(colors)[keep]
        col = col.astype(np.float64) / 255.0 if col.dtype == np.uint8 else col.astype(np.float64)
        col = np.clip(col[:, :3], 0, 1)
    elif normals is not None:
        view = pc[keep] / np.linalg.norm(pc[keep], axis=1, keepdims=True)
        nc = np.asarray(normals, np.float64)[keep] @ cam.rotation.T
        shade = 0.25 + 0.7 * np.abs((nc * view).sum(1))
        col = np.repeat(shade[:, None], 3, axis=1) * np.array([0.95, 0.9, 0.8])
    else:
        lo, hi = np.percentile(zk, (2, 98)) if len(zk) else (0.0, 1.0)
        t = np.clip((zk - lo) / max(hi - lo, 1e-12), 0, 1)
        col = np.stack([0.15 + 0.6 * t, 0.3 + 0.5 * t, 0.55 + 0.35 * t], axis=1)
    h, w = cam.height, cam.width
    img = np.full((h * w, 3), BACKGROUND / 255.0)
    depth = np.full(h * w, np.inf)
    for dy in range(DOT):
        for dx in range(DOT):
            uu, vv = u + dx, v + dy
            inside = (uu >= 0) & (uu < w) & (vv >= 0) & (vv < h)
            pix = vv[inside] * w + uu[inside]
            zz, cc = zk[inside], col[inside]
            order = np.lexsort((zz, pix))  # by pixel, nearest first
            pix, zz, cc = pix[order], zz[order], cc[order]
            first = np.ones(len(pix), bool)
            first[1:] = pix[1:] != pix[:-1]
            pix, zz, cc = pix[first], zz[first], cc[first]
            nearer = zz < depth[pix]
            depth[pix[nearer]] = zz[nearer]
            img[pix[nearer]] = cc[nearer]
    return (img.reshape(h, w, 3) * 255 + 0.5).astype(np.uint8)


def _drawable(geometry) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(points, colours, normals) of a ``PointCloud`` or ``Mesh``."""
    faces = getattr(geometry, "faces", None)
    if faces is not None:
        pts, normals = surface_samples(geometry.vertices, faces)
        return pts, None, normals
    rgb = geometry.attributes.get("rgb") if getattr(geometry, "attributes", None) else None
    if rgb is not None and (np.ndim(rgb) != 2 or len(rgb) != len(geometry.xyz)):
        rgb = None
    return geometry.xyz, rgb, None


def orbit_views(
    original, decoded, size: int = 256, azimuths=(0.0, 90.0, 180.0, 270.0)
) -> tuple[np.ndarray, np.ndarray]:
    """Side-by-side strips (size x len(azimuths) * size) of ``original`` and ``decoded`` (point
    clouds or meshes) from the same orbit cameras, chosen on the original."""
    a_pts, a_col, a_nrm = _drawable(original)
    b_pts, b_col, b_nrm = _drawable(decoded)
    up = guess_up(a_pts)
    flat = up == (0.0, 0.0, 1.0)  # a wide sweep: look down on it, closer in
    cams = orbit_cameras(
        a_pts, size=size, up=up, azimuths_deg=list(azimuths),
        elevation_deg=55.0 if flat else 25.0, margin=0.75 if flat else 1.1,
    )  # fmt: skip
    left = np.concatenate([render_points(a_pts, c, a_col, a_nrm) for c in cams], axis=1)
    right = np.concatenate([render_points(b_pts, c, b_col, b_nrm) for c in cams], axis=1)
    return left, right
