"""Pinhole cameras for the splat renderer, and the fixed orbit the splat benchmark renders from.

Conventions (those of the INRIA 3DGS trainer): camera space has x right, y down, z forward;
``world_to_cam = [R | t]`` maps a world point ``p`` to ``R @ p + t``; pixel ``(u, v)`` of a
``width x height`` image has its centre at ``u = fx * x / z + cx`` with ``cx = (width - 1) / 2``
(pixel centres on integers).

``orbit_cameras(positions, count, size)``: ``count`` cameras evenly spaced in azimuth around the
scene centre (the middle of the 2nd..98th percentile box of the positions, so a few stray splats
far away do not move it), all at ``elevation`` degrees above the plane perpendicular to ``up``,
looking at the centre. The radius is the distance at which the sphere around that box (half its
diagonal) just fits the field of view, times ``margin``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_FOV_DEG = 50.0
DEFAULT_ELEVATION_DEG = 25.0
DEFAULT_UP = (0.0, -1.0, 0.0)  # the INRIA trainer's COLMAP scenes have -y up


@dataclass(frozen=True)
class Camera:
    rotation: np.ndarray  # 3 x 3, world -> camera
    translation: np.ndarray  # 3
    fx: float
    fy: float
    width: int
    height: int

    @property
    def cx(self) -> float:
        return (self.width - 1) / 2.0

    @property
    def cy(self) -> float:
        return (self.height - 1) / 2.0

    @property
    def center(self) -> np.ndarray:
        """The camera position in world coordinates."""
        return -self.rotation.T @ self.translation

    @staticmethod
    def look_at(
        eye: np.ndarray,
        target: np.ndarray,
        up: np.ndarray,
        width: int,
        height: int,
        fov_deg: float = DEFAULT_FOV_DEG,
    ) -> Camera:
        """A camera at ``eye`` looking at ``target``, image-up along ``up``, horizontal field of
        view ``fov_deg`` (square pixels)."""
        eye, target, up = (np.asarray(a, np.float64) for a in (eye, target, up))
        forward = target - eye
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, up)
        if np.linalg.norm(right) < 1e-9:  # looking along up: pick any perpendicular
            right = np.cross(forward, [1.0, 0.0, 0.0] if abs(forward[0]) < 0.9 else [0, 1.0, 0])
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        rot = np.stack([right, down, forward])
        f = (width / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
        return Camera(rot, -rot @ eye, f, f, int(width), int(height))


def scene_bounds(positions: np.ndarray) -> tuple[np.ndarray, float]:
    """(centre, radius) of the 2nd..98th percentile box of ``positions``."""
    p = np.asarray(positions, np.float64)
    lo, hi = np.percentile(p, 2, axis=0), np.percentile(p, 98, axis=0)
    return (lo + hi) / 2.0, max(float(np.linalg.norm(hi - lo)) / 2.0, 1e-6)


def orbit_cameras(
    positions: np.ndarray,
    count: int = 16,
    size: int = 512,
    elevation_deg: float = DEFAULT_ELEVATION_DEG,
    fov_deg: float = DEFAULT_FOV_DEG,
    up: tuple[float, float, float] = DEFAULT_UP,
    margin: float = 1.1,
    azimuths_deg: list[float] | None = None,
) -> list[Camera]:
    """``count`` square ``size`` px cameras on an orbit around the scene (module docstring);
    ``azimuths_deg`` replaces the even spacing."""
    if count < 1 or size < 1:
        raise ValueError(f"orbit needs count >= 1 and size >= 1, got {count}, {size}")
    centre, radius = scene_bounds(positions)
    dist = margin * radius / math.sin(math.radians(fov_deg) / 2.0)
    up_v = np.asarray(up, np.float64)
    up_v /= np.linalg.norm(up_v)
    # two axes spanning the plane perpendicular to up
    a = np.cross(up_v, [1.0, 0.0, 0.0] if abs(up_v[0]) < 0.9 else [0.0, 0.0, 1.0])
    a /= np.linalg.norm(a)
    b = np.cross(up_v, a)
    angles = azimuths_deg if azimuths_deg is not None else [360.0 * i / count for i in range(count)]
    el = math.radians(elevation_deg)
    cams = []
    for az in angles:
        t = math.radians(az)
        direction = math.cos(el) * (math.cos(t) * a + math.sin(t) * b) + math.sin(el) * up_v
        cams.append(Camera.look_at(centre + dist * direction, centre, up_v, size, size, fov_deg))
    return cams
