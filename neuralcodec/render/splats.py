"""A CPU renderer for Gaussian splat scenes in PyTorch (the INRIA 3DGS forward pass).

::

    GaussianScene --project--> per splat: depth, 2-D mean, 2-D conic, pixel radius, RGB, opacity
       3-D covariance  S = R(q) diag(exp(scale))^2 R(q)^T
       2-D covariance  J W S W^T J^T + 0.3 I     (EWA splat; +0.3 px^2 is the usual low-pass)
       colour          SH (degree 0..3) at the view direction, + 0.5, clamped at 0
    --bin--> (tile, splat) pairs for every 16 x 16 tile a splat's 3-sigma square touches,
             sorted by tile, then by depth
    --composite--> per pixel, front to back: alpha = min(0.99, o * exp(-d^T conic d / 2)),
             skipped below 1/255; stops before the splat that would take the
             transmittance under 1e-4; C = sum alpha_i T_i c_i + T_final * background

Compositing runs on batches of tiles padded to the same splat count (tiles sorted by count, a
batch bounded in elements), with the transmittance as an exclusive cumulative sum of
``log(1 - alpha)``: no Python loop over pixels or splats. ``render_full(..., hits=True)`` also returns
each splat's summed blending weight ``alpha_i T_i`` over the image (how much it shows), which the
splat codec uses as importance.

Splats behind the near plane (z <= 0.2) or with a singular 2-D covariance are culled, as are
those whose square misses the image. Float32 throughout; the output is HxWx3 float in [0, 1]
(``to_uint8`` rounds it for metrics and files).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from neuralcodec.render.camera import Camera

TILE = 16
NEAR = 0.2
LOWPASS = 0.3
ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.99
T_MIN = 1e-4
BATCH_ELEMENTS = 1 << 22  # splat x pixel pairs composited at once
CHUNK = 64  # splats per tile composited at once (tiles whose pixels all stopped leave)

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (
    1.0925484305920792,
    -1.0925484305920792,
    0.31539156525252005,
    -1.0925484305920792,
    0.5462742152960396,
)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def sh_basis(dirs: torch.Tensor, degree: int) -> torch.Tensor:
    """Real SH basis (the 3DGS sign convention) at unit ``dirs`` (N x 3): N x (degree + 1)^2."""
    x, y, z = dirs[:, 0], dirs[:, 1], dirs[:, 2]
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [
            SH_C2[0] * xy,
            SH_C2[1] * yz,
            SH_C2[2] * (2 * zz - xx - yy),
            SH_C2[3] * xz,
            SH_C2[4] * (xx - yy),
        ]
    if degree >= 3:
        out += [
            SH_C3[0] * y * (3 * xx - yy),
            SH_C3[1] * xy * z,
            SH_C3[2] * y * (4 * zz - xx - yy),
            SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            SH_C3[4] * x * (4 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy),
            SH_C3[6] * x * (xx - 3 * yy),
        ]
    return torch.stack(out, dim=1)


def quaternion_matrix(q: torch.Tensor) -> torch.Tensor:
    """N x 4 quaternions (w, x, y, z; normalised here) -> N x 3 x 3 rotation matrices."""
    q = q / q.norm(dim=1, keepdim=True)
    w, x, y, z = q.unbind(1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - w * z),
            2 * (x * z + w * y),
            2 * (x * y + w * z),
            1 - 2 * (x * x + z * z),
            2 * (y * z - w * x),
            2 * (x * z - w * y),
            2 * (y * z + w * x),
            1 - 2 * (x * x + y * y),
        ],
        dim=1,
    ).reshape(-1, 3, 3)


@dataclass
class SceneTensors:
    """A scene as float32 tensors, converted once and rendered from many cameras."""

    positions: torch.Tensor
    cov3d: torch.Tensor  # N x 3 x 3
    opacity: torch.Tensor  # N, in (0, 1)
    sh: torch.Tensor  # N x (degree + 1)^2 x 3
    degree: int

    @staticmethod
    def of(scene) -> SceneTensors:
        """From a ``GaussianScene`` (numpy arrays, logit opacity, log scales)."""
        if isinstance(scene, SceneTensors):
            return scene
        f = lambda a: torch.as_tensor(np.asarray(a, np.float32))  # noqa: E731
        scale = torch.exp(f(scene.scales_log))
        m = quaternion_matrix(f(scene.rotations)) * scale[:, None, :]
        sh = torch.cat([f(scene.sh_dc)[:, None, :], f(scene.sh_rest)], dim=1)
        return SceneTensors(
            f(scene.positions), m @ m.transpose(1, 2), torch.sigmoid(f(scene.opacities)), sh,
            int(scene.sh_degree),
        )  # fmt: skip


@dataclass
class Projected:
    index: torch.Tensor  # int64 [M]: which splats survived culling
    depth: torch.Tensor
    mean: torch.Tensor  # M x 2 pixels
    conic: torch.Tensor  # M x 3 (a, b, c) of the inverse 2-D covariance
    radius: torch.Tensor  # M pixels (int64): 3 sigma along the major axis

    color: torch.Tensor  # M x 3
    opacity: torch.Tensor  # M
    extent: torch.Tensor  # M x 2 pixels: half-size of the box in which alpha can reach 1/255


def project(s: SceneTensors, cam: Camera) -> Projected:
    rot = torch.as_tensor(cam.rotation, dtype=torch.float32)
    trans = torch.as_tensor(cam.translation, dtype=torch.float32)
    pc = s.positions @ rot.T + trans
    z = pc[:, 2]
    keep = z > NEAR
    idx = torch.nonzero(keep).squeeze(1)
    pc, z = pc[idx], z[idx]
    lim_x = 1.3 * (cam.width / 2.0) / cam.fx
    lim_y = 1.3 * (cam.height / 2.0) / cam.fy
    tx = (pc[:, 0] / z).clamp(-lim_x, lim_x) * z
    ty = (pc[:, 1] / z).clamp(-lim_y, lim_y) * z
    zero = torch.zeros_like(z)
    jac = torch.stack(
        [cam.fx / z, zero, -cam.fx * tx / (z * z), zero, cam.fy / z, -cam.fy * ty / (z * z)], 1
    ).reshape(-1, 2, 3)
    t = jac @ rot
    cov = t @ s.cov3d[idx] @ t.transpose(1, 2)
    a = cov[:, 0, 0] + LOWPASS
    b = cov[:, 0, 1]
    c = cov[:, 1, 1] + LOWPASS
    det = a * c - b * b
    mid = 0.5 * (a + c)
    lam = mid + torch.sqrt(torch.clamp(mid * mid - det, min=0.1))
    # the splat is drawn where alpha >= 1/255, at most 3 sigma out; its box on each axis
    sigmas = torch.sqrt(2.0 * torch.log(torch.clamp_min(255.0 * s.opacity[idx], 1.0)))
    sigmas = torch.clamp_max(sigmas, 3.0)
    radius = torch.ceil(3.0 * torch.sqrt(lam))
    ext = torch.stack([torch.ceil(sigmas * torch.sqrt(a)), torch.ceil(sigmas * torch.sqrt(c))], 1)
    u = cam.fx * pc[:, 0] / z + cam.cx
    v = cam.fy * pc[:, 1] / z + cam.cy
    ok = (
        (det > 0)
        & (sigmas > 0)
        & (u + ext[:, 0] >= 0)
        & (u - ext[:, 0] <= cam.width - 1)
        & (v + ext[:, 1] >= 0)
        & (v - ext[:, 1] <= cam.height - 1)
    )
    sel = torch.nonzero(ok).squeeze(1)
    idx, z, a, b, c, det, radius, u, v, ext = (
        x[sel] for x in (idx, z, a, b, c, det, radius, u, v, ext)
    )
    conic = torch.stack([c / det, -b / det, a / det], 1)
    centre = torch.as_tensor(cam.center, dtype=torch.float32)
    dirs = s.positions[idx] - centre
    dirs = dirs / dirs.norm(dim=1, keepdim=True).clamp_min(1e-12)
    basis = sh_basis(dirs, s.degree)
    color = torch.clamp_min(torch.einsum("nk,nkc->nc", basis, s.sh[idx]) + 0.5, 0.0)
    return Projected(
        idx, z, torch.stack([u, v], 1), conic, radius.long(), color, s.opacity[idx], ext
    )


def _bin(p: Projected, tiles_x: int, tiles_y: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(splat order within the sorted pairs, tile id of each pair), sorted by tile then depth."""
    u, v = p.mean[:, 0], p.mean[:, 1]
    rx, ry = p.extent[:, 0], p.extent[:, 1]
    x0 = torch.floor((u - rx) / TILE).long().clamp(0, tiles_x - 1)
    x1 = torch.floor((u + rx) / TILE).long().clamp(0, tiles_x - 1)
    y0 = torch.floor((v - ry) / TILE).long().clamp(0, tiles_y - 1)
    y1 = torch.floor((v + ry) / TILE).long().clamp(0, tiles_y - 1)
    nx, ny = x1 - x0 + 1, y1 - y0 + 1
    counts = nx * ny
    depth_rank = torch.empty_like(counts)
    depth_rank[torch.argsort(p.depth, stable=True)] = torch.arange(len(counts))
    splat = torch.repeat_interleave(torch.arange(len(counts)), counts)
    first = torch.cumsum(counts, 0) - counts
    local = torch.arange(len(splat)) - first[splat]
    tx = x0[splat] + local % nx[splat]
    ty = y0[splat] + local // nx[splat]
    tile = ty * tiles_x + tx
    key = tile * len(counts) + depth_rank[splat]
    order = torch.argsort(key)
    return splat[order], tile[order]


@dataclass
class Rendered:
    image: torch.Tensor  # H x W x 3 in [0, 1]
    alpha: torch.Tensor  # H x W accumulated opacity (1 - final transmittance)
    hits: torch.Tensor | None  # N summed blending weights, when asked for


def render(scene, cam: Camera, background=(0.0, 0.0, 0.0)) -> torch.Tensor:
    """HxWx3 float32 image in [0, 1] of ``scene`` (a ``GaussianScene`` or ``SceneTensors``)
    seen by ``cam``."""
    return render_full(scene, cam, background).image


def render_full(scene, cam: Camera, background=(0.0, 0.0, 0.0), hits: bool = False) -> Rendered:
    """``render`` plus the accumulated opacity and, with ``hits=True``, the N summed blending
    weights of the splats."""
    s = SceneTensors.of(scene)
    w, h = cam.width, cam.height
    tiles_x, tiles_y = -(-w // TILE), -(-h // TILE)
    n_tiles = tiles_x * tiles_y
    bg = torch.as_tensor(background, dtype=torch.float32)
    out = torch.zeros(n_tiles, TILE * TILE, 3)
    log_t = torch.zeros(n_tiles, TILE * TILE)
    weights = torch.zeros(len(s.positions)) if hits else None
    p = project(s, cam)
    if len(p.index):
        splat, tile = _bin(p, tiles_x, tiles_y)
        per_tile = torch.bincount(tile, minlength=n_tiles)
        start = torch.cumsum(per_tile, 0) - per_tile
        busy = torch.nonzero(per_tile).squeeze(1)
        busy = busy[torch.argsort(per_tile[busy], stable=True)]
        offs = torch.arange(TILE * TILE)
        pix_local = torch.stack([offs % TILE, offs // TILE], 1).float()
        per_batch = max(1, BATCH_ELEMENTS // (CHUNK * TILE * TILE))
        for i in range(0, len(busy), per_batch):
            ids = busy[i : i + per_batch]
            _composite(p, splat, start[ids], per_tile[ids], ids, tiles_x, pix_local, out, log_t,
                       weights)  # fmt: skip
    t_final = torch.exp(log_t)
    out += t_final[..., None] * bg
    img = out.reshape(tiles_y, tiles_x, TILE, TILE, 3).permute(0, 2, 1, 3, 4)
    img = img.reshape(tiles_y * TILE, tiles_x * TILE, 3)[:h, :w].clamp(0.0, 1.0)
    t = t_final.reshape(tiles_y, tiles_x, TILE, TILE).permute(0, 2, 1, 3)
    t = t.reshape(tiles_y * TILE, tiles_x * TILE)[:h, :w]
    return Rendered(img, 1.0 - t, weights)


def _composite(p, splat, start, count, ids, tiles_x, pix_local, out, log_t, weights):
    """Front-to-back over the tiles ``ids``, CHUNK splats at a time; a tile leaves the loop
    when it runs out of splats or every pixel has stopped."""
    origin = torch.stack([ids % tiles_x, ids // tiles_x], 1).float() * TILE  # B x 2
    pix = origin[:, None, :] + pix_local[None]  # B x P x 2
    lt = torch.zeros(len(ids), TILE * TILE)  # log transmittance so far
    done = torch.zeros(len(ids), TILE * TILE, dtype=torch.bool)
    col = torch.zeros(len(ids), TILE * TILE, 3)
    thr = float(np.log(T_MIN))
    k0 = 0
    act = torch.arange(len(ids))
    while True:
        act = act[(count[act] > k0) & ~done[act].all(dim=1)]
        if len(act) == 0:
            break
        k = k0 + torch.arange(CHUNK)
        valid = k[None, :] < count[act, None]  # A x C
        sidx = splat[(start[act, None] + k[None, :]).clamp(max=len(splat) - 1)]  # A x C
        mean = p.mean[sidx]
        px = pix[act]
        dx = mean[:, :, None, 0] - px[:, None, :, 0]  # A x C x P
        dy = mean[:, :, None, 1] - px[:, None, :, 1]
        con = p.conic[sidx]
        power = con[..., 0, None] * dx * dx
        power += con[..., 2, None] * dy * dy
        power *= -0.5
        power -= con[..., 1, None] * dx * dy
        del dx, dy
        alpha = torch.clamp_max(p.opacity[sidx][..., None] * torch.exp(power), ALPHA_MAX)
        keep = (alpha >= ALPHA_MIN) & (power <= 0) & valid[..., None] & ~done[act][:, None, :]
        alpha = torch.where(keep, alpha, 0.0)
        del power, keep
        log1m = torch.log1p(-alpha)
        cum = torch.cumsum(log1m, dim=1) + lt[act][:, None, :]
        shown = cum >= thr  # the transmittance after this splat is still >= T_MIN
        wgt = torch.where(shown, alpha * torch.exp(cum - log1m), 0.0)
        col[act] += torch.einsum("akp,akc->apc", wgt, p.color[sidx])
        lt[act] += (log1m * shown).sum(dim=1)
        done[act] |= cum[:, -1, :] < thr
        if weights is not None:
            per_splat = wgt.sum(dim=2)
            weights.index_add_(0, p.index[sidx[valid]], per_splat[valid])
        k0 += CHUNK
    out[ids] = col
    log_t[ids] = lt


def to_uint8(img: torch.Tensor | np.ndarray) -> np.ndarray:
    """[0, 1] float image -> uint8, rounded."""
    a = img.numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    return np.clip(np.floor(a * 255.0 + 0.5), 0, 255).astype(np.uint8)
