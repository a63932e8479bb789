"""Gaussian splat scenes <-> ``GaussianScene``: INRIA 3DGS ``.ply``, PlayCanvas ``compressed.ply``
and antimatter15 ``.splat``.

::

    INRIA .ply      x y z [nx ny nz] f_dc_0..2 f_rest_0..(3K-1) opacity scale_0..2 rot_0..3 --+
    compressed.ply  chunk bounds (256 splats) + packed uint32 position/rotation/scale/colour  +--> GaussianScene
                    [+ sh element, uint8]   (datasets.splat_packed)                            |
    .splat          32 bytes: 3 f32 position, 3 f32 linear scale, RGBA u8, quaternion u8 ---+

``GaussianScene`` holds what the INRIA trainer stores: positions, log scales, unit quaternions
(w, x, y, z = rot_0..rot_3), logit opacities, the DC colour coefficient and the higher spherical
harmonics as N x K x 3 (K = (degree + 1)^2 - 1). INRIA ``f_rest_*`` are channel-major:
``f_rest[c * K + k] = sh_rest[:, k, c]``. Every writer is atomic and refuses to overwrite without
``force``. Empty scenes, non-finite values, zero quaternions and truncated files are one-line
``SplatError``s.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neuralcodec.codecs.base import CodecError
from neuralcodec.datasets.paths import atomic_output
from neuralcodec.datasets.ply import read_ply, read_ply_header, write_ply

SPLAT_EXTENSIONS = (".ply", ".splat")
SH_C0 = 0.28209479177387814
MAX_SPLATS = 1 << 26
SPLAT_RECORD = np.dtype(
    [("pos", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)]
)


class SplatError(CodecError):
    """A splat scene that cannot be read, written or coded; one-line message."""


@dataclass
class GaussianScene:
    """N Gaussians; float32 arrays. ``packing``: the chunk bounds and dropped-rotation indices of
    the compressed.ply a scene was read from (reused by the compressed writer while they still fit
    the values, so decode -> encode gives the same integers)."""

    positions: np.ndarray  # N x 3
    scales_log: np.ndarray  # N x 3, natural log of the standard deviations
    rotations: np.ndarray  # N x 4 unit quaternions, w x y z (rot_0..rot_3)
    opacities: np.ndarray  # N, logit
    sh_dc: np.ndarray  # N x 3
    sh_rest: np.ndarray  # N x K x 3, K = (sh_degree + 1)^2 - 1
    sh_degree: int = 0
    packing: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.positions)

    def validate(self, what: str = "splat scene") -> GaussianScene:
        n = len(self.positions)
        if n == 0:
            raise SplatError(f"{what}: empty scene (0 splats)")
        if n > MAX_SPLATS:
            raise SplatError(f"{what}: {n} splats, more than the limit {MAX_SPLATS}")
        if self.sh_degree not in (0, 1, 2, 3):
            raise SplatError(f"{what}: SH degree {self.sh_degree} not in 0..3")
        k = (self.sh_degree + 1) ** 2 - 1
        want = {
            "positions": (n, 3),
            "scales_log": (n, 3),
            "rotations": (n, 4),
            "opacities": (n,),
            "sh_dc": (n, 3),
            "sh_rest": (n, k, 3),
        }
        for name, shape in want.items():
            arr = np.asarray(getattr(self, name))
            if arr.shape != shape or arr.dtype.kind != "f":
                raise SplatError(f"{what}: {name} is {arr.dtype} {arr.shape}, need float {shape}")
            if not np.isfinite(arr).all():
                bad = int(np.count_nonzero(~np.isfinite(arr.reshape(n, -1)).all(axis=1)))
                raise SplatError(f"{what}: {bad} splats with NaN or infinite {name}")
        if np.any(np.linalg.norm(self.rotations, axis=1) < 1e-12):
            raise SplatError(f"{what}: zero-length rotation quaternion")
        return self


def normalized(q: np.ndarray) -> np.ndarray:
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def logit(p: np.ndarray, steps: int = 255) -> np.ndarray:
    """Logit of ``p``, with 0 and 1 moved a quarter of a ``1/steps`` step inwards (finite)."""
    eps = 0.25 / steps
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    return np.log(p / (1 - p))


def degree_of(n_rest: int, what: str) -> int:
    for d in range(4):
        if 3 * ((d + 1) ** 2 - 1) == n_rest:
            return d
    raise SplatError(f"{what}: {n_rest} f_rest coefficients is not SH degree 0..3")


# ----------------------------------------------------------------------------- INRIA .ply


def is_splat_ply(path: str | os.PathLike[str]) -> bool:
    """A ``.ply`` whose vertex element has ``f_dc_0`` and ``scale_0``, or that has ``chunk``."""
    try:
        header = read_ply_header(path)
    except CodecError:
        return False
    vertex = header.element("vertex")
    inria = vertex is not None and vertex.prop("f_dc_0") and vertex.prop("scale_0")
    return bool(inria or header.element("chunk"))


def read_inria(path: Path) -> GaussianScene:
    header = read_ply_header(path)
    vertex = header.element("vertex")
    need = ["x", "y", "z", "opacity"] + [
        f"{p}_{i}" for p, n in (("f_dc", 3), ("scale", 3), ("rot", 4)) for i in range(n)
    ]
    missing = [p for p in need if vertex is None or vertex.prop(p) is None]
    if missing:
        raise SplatError(f"{path}: not an INRIA 3DGS PLY (missing {', '.join(missing[:4])})")
    if vertex.count > MAX_SPLATS:
        raise SplatError(f"{path}: {vertex.count} splats, more than the limit {MAX_SPLATS}")
    _, data = read_ply(path, ("vertex",))
    v = data["vertex"]
    n_rest = sum(1 for p in vertex.properties if p.name.startswith("f_rest_"))
    degree = degree_of(n_rest, str(path))
    k = (degree + 1) ** 2 - 1
    n = vertex.count
    try:
        rest = np.stack([v[f"f_rest_{i}"] for i in range(3 * k)], axis=1) if k else np.zeros((n, 0))
    except KeyError as exc:
        raise SplatError(
            f"{path}: f_rest coefficients not numbered 0..{3 * k - 1} ({exc})"
        ) from None

    def cols(*names: str) -> np.ndarray:
        return np.stack([v[n] for n in names], axis=1).astype(np.float32)

    scene = GaussianScene(
        positions=cols("x", "y", "z"),
        scales_log=cols("scale_0", "scale_1", "scale_2"),
        rotations=cols("rot_0", "rot_1", "rot_2", "rot_3"),
        opacities=v["opacity"].astype(np.float32),
        sh_dc=cols("f_dc_0", "f_dc_1", "f_dc_2"),
        sh_rest=rest.reshape(n, 3, k).transpose(0, 2, 1).astype(np.float32),
        sh_degree=degree,
    )
    scene.validate(str(path))
    scene.rotations = normalized(scene.rotations)
    return scene


def write_inria(path: str | os.PathLike[str], scene: GaussianScene, force: bool = False) -> Path:
    """The INRIA layout, float32: x y z nx ny nz (zeros) f_dc f_rest opacity scale rot."""
    scene.validate(str(path))
    n = len(scene)
    props: dict[str, np.ndarray] = {}
    for i, k in enumerate("xyz"):
        props[k] = scene.positions[:, i]
    for k in ("nx", "ny", "nz"):
        props[k] = np.zeros(n, np.float32)
    for i in range(3):
        props[f"f_dc_{i}"] = scene.sh_dc[:, i]
    rest = np.asarray(scene.sh_rest).transpose(0, 2, 1).reshape(n, -1)
    for i in range(rest.shape[1]):
        props[f"f_rest_{i}"] = rest[:, i]
    props["opacity"] = scene.opacities
    for i in range(3):
        props[f"scale_{i}"] = scene.scales_log[:, i]
    for i in range(4):
        props[f"rot_{i}"] = scene.rotations[:, i]
    props = {k: np.asarray(a, dtype=np.float32) for k, a in props.items()}
    return write_ply(path, {"vertex": props}, force=force)


# ----------------------------------------------------------------------------- antimatter15 .splat


def read_dotsplat(path: Path) -> GaussianScene:
    size = path.stat().st_size
    if size == 0 or size % SPLAT_RECORD.itemsize:
        raise SplatError(f"{path}: {size} bytes is not a whole number of 32-byte splats")
    if size // SPLAT_RECORD.itemsize > MAX_SPLATS:
        raise SplatError(f"{path}: more than {MAX_SPLATS} splats")
    rec = np.fromfile(path, dtype=SPLAT_RECORD)
    rot = (rec["rot"].astype(np.float32) - 128.0) / 128.0
    if np.any(np.linalg.norm(rot, axis=1) == 0):
        raise SplatError(f"{path}: zero rotation quaternion")
    scale = rec["scale"].astype(np.float64)
    if not np.isfinite(rec["pos"]).all() or not np.isfinite(scale).all() or np.any(scale <= 0):
        raise SplatError(f"{path}: non-finite position or non-positive scale (not a .splat file?)")
    rgba = rec["rgba"].astype(np.float64) / 255.0
    scene = GaussianScene(
        positions=rec["pos"].astype(np.float32),
        scales_log=np.log(scale).astype(np.float32),
        rotations=normalized(rot),
        opacities=logit(rgba[:, 3]).astype(np.float32),
        sh_dc=((rgba[:, :3] - 0.5) / SH_C0).astype(np.float32),
        sh_rest=np.zeros((len(rec), 0, 3), np.float32),
    )
    return scene.validate(str(path))


def write_dotsplat(path: str | os.PathLike[str], scene: GaussianScene, force: bool = False) -> Path:
    """32-byte records in scene order; colour and quaternion rounded (not truncated) to uint8."""
    scene.validate(str(path))
    rec = np.zeros(len(scene), dtype=SPLAT_RECORD)
    rec["pos"] = scene.positions
    rec["scale"] = np.exp(np.asarray(scene.scales_log, dtype=np.float64))
    rgb = 0.5 + SH_C0 * np.asarray(scene.sh_dc, dtype=np.float64)
    rgba = np.concatenate([rgb, sigmoid(scene.opacities)[:, None]], axis=1)
    rec["rgba"] = np.clip(np.floor(rgba * 255 + 0.5), 0, 255)
    q = np.asarray(scene.rotations, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    rec["rot"] = np.clip(np.floor(q * 128 + 128 + 0.5), 0, 255)
    with atomic_output(path, force) as f:
        f.write(rec.tobytes())
    return Path(path)


# ----------------------------------------------------------------------------- entry points


def read_splat(path: str | os.PathLike[str]) -> GaussianScene:
    """Read an INRIA ``.ply``, a PlayCanvas ``compressed.ply`` or a ``.splat`` file."""
    from neuralcodec.datasets.splat_packed import read_compressed

    path = Path(path)
    if not path.is_file():
        raise SplatError(f"no such file: {path}" if not path.exists() else f"{path} is not a file")
    ext = path.suffix.lower()
    if ext == ".splat":
        return read_dotsplat(path)
    if ext != ".ply":
        raise SplatError(f"{path}: not a splat file (.ply, .compressed.ply, .splat)")
    if read_ply_header(path).element("chunk") is not None:
        return read_compressed(path)
    return read_inria(path)


def write_splat(
    path: str | os.PathLike[str],
    scene: GaussianScene,
    force: bool = False,
    compressed: bool | None = None,
) -> Path:
    """Write by name: ``*.splat``, ``*.compressed.ply`` (or ``compressed=True``), else INRIA ``.ply``."""
    from neuralcodec.datasets.splat_packed import write_compressed

    name = Path(path).name.lower()
    if name.endswith(".splat"):
        return write_dotsplat(path, scene, force)
    if not name.endswith(".ply"):
        raise SplatError(f"{path}: splat scenes are written as .ply, .compressed.ply or .splat")
    if compressed or (compressed is None and name.endswith(".compressed.ply")):
        return write_compressed(path, scene, force)
    return write_inria(path, scene, force)
