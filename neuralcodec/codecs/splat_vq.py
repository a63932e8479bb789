"""``splat-vq``: a post-hoc Gaussian splat codec (from the ``.ply`` alone, no retraining), in the
manner of LightGaussian: prune, distil SH, quantise, entropy-code.

Levels 1..7 (lossy)::

    scene --importance (summed blending weight over 8 orbit views at 384 px)
          --prune the least important fraction (and every splat with opacity < 1/255)
          --SH distillation to the level's degree (least squares over 192 directions)
          --each splat's axes sorted by scale (smallest first; the same Gaussian)
    scales     log-scale grid (or a K-means codebook), coded as smallest + two gaps
    positions  a fine grid (step = robust extent / 2^pos_bits); a coarse grid of 2^shift fine
               steps, sorted Morton codes -> deltas -> magnitude classes + raw bits ("pos");
               then each splat's fine bits under its coarse cell, as many as its middle scale
               asks for (cell <= 2^pos_rel x middle scale, thresholds in the header; "posr").
               The encoder picks the shift with the fewest estimated bits.
    orientation  the smallest axis (a normal, either sign) on an octahedral grid ("rot"), the
               middle axis' angle in the normal's plane on 2^k cells, k from the gap between
               the largest and middle scale (a round splat needs none; "angle")
    opacity    sigmoid, b bits
    colour     0.5 + C0 f_dc, b bits/channel over the scene's range, integer YCoCg-R
    SH rest    VQ (codebook coded, 1/256 steps, adaptive index table; "sh")
    scales, opacity, colour and the normal go through ``code_rows``: adaptive binary integer
    models (``entropy.adaptive``), each field as it is or as the delta from the previous splat
    in Morton order, conditioned on the size of the previous value.

Level 8 (exact): the scene's compressed.ply integers (``pack_compressed``: the file's own when the
scene was read from one, else chunks of 256 in Morton order) coded losslessly: chunk bounds as
float32, each packed field directly or as the delta from the previous splat in its chunk, with
adaptive tables. Decoding gives ``unpack_compressed`` of those integers, so a compressed.ply input
comes back value for value, packing included (written as compressed.ply: the same integers).

Everything the decoder needs is in the ``hdr`` stream (compact JSON) and the coded streams
(range coder: counts-table models from ``splat_coding`` or adaptive binary models from
``entropy.adaptive``) and ``chunk`` (float32 bounds). Which bits are coded, and with which
model, depends only on integers already decoded; floats appear only in the final conversions.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from neuralcodec.codecs.base import Codec, CodecError, Encoded, register
from neuralcodec.codecs.latent.sinks import DecoderSinks, EncoderSinks, Sinks
from neuralcodec.codecs.splat_coding import (
    code_adaptive,
    code_bits,
    code_magnitude,
    distill_sh,
    kmeans,
    matrix_quaternions,
    morton_decode,
    morton_encode,
    octahedral_decode,
    octahedral_encode,
    plane_basis,
    quaternion_matrices,
)
from neuralcodec.datasets.splat import (
    MAX_SPLATS,
    SH_C0,
    GaussianScene,
    logit,
    normalized,
    sigmoid,
)
from neuralcodec.datasets.splat_packed import (
    CHUNK,
    COLOR,
    POSITION,
    SCALE,
    pack_compressed,
    unpack_compressed,
)
from neuralcodec.entropy.adaptive import INT_CONTEXTS, AdaptiveDecoder, AdaptiveEncoder, states
from neuralcodec.entropy.rangecoder import DecodeError

FORMAT_VERSION = 2
EXACT_LEVEL = 8
IMPORTANCE_VIEWS = 8
IMPORTANCE_SIZE = 384
MAX_CODEBOOK = 1 << 14
MAX_POS_BITS = 20
MAX_DROP = 8  # at most this many fine position bits skipped for a large splat
VQ_SCALE_UNITS = 64  # scale codebook entries on a 1/64 log grid
ROW_MARKOV = 8  # classes of the previous value in ``code_rows``
MAX_ROW_SHIFT = 12  # low bits a ``code_rows`` field may send raw


@dataclass(frozen=True)
class Level:
    prune: float  # fraction of the splats dropped, least important first
    pos_bits: int  # finest grid step = robust extent / 2^pos_bits
    pos_rel: float  # a splat's grid step may grow to 2^pos_rel x its middle scale
    sh_degree: int  # highest SH degree kept
    sh_codebook: int  # at most this many SH codewords
    scale_vq: int  # codebook size, 0 = scalar with scale_step
    scale_step: float  # log-scale step
    rot_bits: int  # bits of each octahedral coordinate of the normal, and at most of the angle
    color_bits: int
    opacity_bits: int


LEVELS = {
    # prune, finest grid bits, position step / middle scale (log2), SH degree, SH codebook,
    # scale VQ codebook or log-scale step, orientation bits, colour bits, opacity bits
    1: Level(0.60, 12, -2.0, 0, 0, 2048, 0.0, 5, 5, 4),
    2: Level(0.45, 13, -2.5, 1, 1024, 0, 0.15, 5, 5, 5),
    3: Level(0.35, 13, -3.0, 1, 1024, 0, 0.12, 6, 6, 5),
    4: Level(0.25, 14, -3.0, 1, 2048, 0, 0.12, 6, 6, 6),
    5: Level(0.15, 15, -3.5, 2, 4096, 0, 0.08, 7, 7, 6),
    6: Level(0.05, 16, -4.5, 3, 4096, 0, 0.04, 8, 7, 7),
    7: Level(0.00, 16, -6.0, 3, 8192, 0, 0.01, 10, 8, 8),
}


# ----------------------------------------------------------------------------- importance


def importance(
    scene: GaussianScene, views: int = IMPORTANCE_VIEWS, size: int = IMPORTANCE_SIZE
) -> np.ndarray:
    """Per splat: its summed blending weight (opacity x transmittance over the pixels it
    touches) in ``views`` orbit renders (half of them 20 degrees above the orbit plane, half 20
    degrees below, staggered in azimuth): what it adds to the images. Plus a tiny opacity x
    volume term so that splats no view hits still have an order."""
    from neuralcodec.render import SceneTensors, orbit_cameras, render_full

    st = SceneTensors.of(scene)
    hits = np.zeros(len(scene), np.float64)
    half = max(1, views // 2)
    cams = []
    for k, elevation in enumerate((20.0, -20.0)):
        azimuths = [(i + 0.5 * k) * 360.0 / half for i in range(half)]
        cams += orbit_cameras(scene.positions, half, size, elevation, azimuths_deg=azimuths)
    for cam in cams:
        hits += render_full(st, cam, hits=True).hits.numpy()
    vol = np.exp(np.asarray(scene.scales_log, np.float64).sum(axis=1))
    vol = vol / max(float(np.percentile(vol, 90)), 1e-30)
    fallback = sigmoid(scene.opacities) * np.minimum(vol, 1.0) * 1e-9
    return hits + fallback


def _select(scene: GaussianScene, keep: np.ndarray) -> GaussianScene:
    return GaussianScene(
        scene.positions[keep],
        scene.scales_log[keep],
        scene.rotations[keep],
        scene.opacities[keep],
        scene.sh_dc[keep],
        scene.sh_rest[keep],
        scene.sh_degree,
    )


def _entropy_bits(v: np.ndarray) -> float:
    if v.size == 0:
        return 0.0
    _, counts = np.unique(v, return_counts=True)
    p = counts / v.size
    return float(-(counts * np.log2(p)).sum())


# ----------------------------------------------------------------------------- fields


def ycocg(q: np.ndarray, bits: int) -> np.ndarray:
    """Integer r g b (``bits`` each) -> y (``bits``), co and cg (offset to ``bits + 1`` bits):
    the lifting YCoCg-R transform, exactly invertible."""
    r, g, b = (np.asarray(q[:, i], np.int64) for i in range(3))
    co = r - b
    t = b + (co >> 1)
    cg = g - t
    y = t + (cg >> 1)
    return np.stack([y, co + (1 << bits), cg + (1 << bits)], axis=1)


def ycocg_inverse(v: np.ndarray, bits: int) -> np.ndarray:
    y, co, cg = v[:, 0], v[:, 1] - (1 << bits), v[:, 2] - (1 << bits)
    t = y - (cg >> 1)
    g = cg + t
    b = t - (co >> 1)
    return np.stack([b + co, g, b], axis=1)


def _ints_bits(c: np.ndarray) -> float:
    probe = AdaptiveEncoder()
    probe.code_ints(c, np.zeros(len(c), np.int32), states(INT_CONTEXTS * ROW_MARKOV), ROW_MARKOV)
    return probe.bits


def code_rows(values: np.ndarray) -> tuple[bytes, list[int]]:
    """N x F integers: each field as it is or as the delta from the previous row, whichever
    codes shorter, split into high part >> s and the s low bits. The high parts go into one
    adaptive binary stream (``entropy.adaptive`` integers, field f in set f, conditioned on the
    size of the previous high part of its field), the low bits raw. s is the largest shift that
    costs under 1 % more than the best one: it bounds the binary decisions per value, and so the
    decoding time, at almost no cost in size. Returns (stream, modes), mode = 2 s + delta."""
    values = np.asarray(values, np.int64)
    n, f = values.shape
    highs, lows, modes = [], [], []
    for j in range(f):
        cands = [values[:, j], np.diff(values[:, j], prepend=0)]
        delta = int(_ints_bits(cands[1]) < _ints_bits(cands[0]))
        c = cands[delta]
        top = int(np.abs(c).max(initial=0)).bit_length()
        costs = [_ints_bits(c >> k) + n * k for k in range(min(top, MAX_ROW_SHIFT) + 1)]
        shift = max(k for k, b in enumerate(costs) if b <= 1.01 * min(costs))
        highs.append(c >> shift)
        lows.append(c & ((1 << shift) - 1))
        modes.append(2 * shift + delta)
    enc = AdaptiveEncoder()
    st = states(f * INT_CONTEXTS * ROW_MARKOV)
    for j, c in enumerate(highs):
        enc.code_ints(c, np.full(n, j, np.int32), st, ROW_MARKOV)
    head = enc.finish()
    low = np.zeros(n, np.int64)
    for j in range(f):  # one value of all the fields' low bits per row
        low = (low << (modes[j] >> 1)) | lows[j]
    sinks = EncoderSinks()
    code_bits(sinks["low"], low, np.full(n, sum(m >> 1 for m in modes), np.int64))
    return len(head).to_bytes(4, "little") + head + sinks.finish()["low"], modes


def decode_rows(data: bytes, n: int, modes: list, lo: list[int], hi: list[int]) -> np.ndarray:
    """What ``code_rows`` wrote: N x F integers, field f checked to lie in lo[f]..hi[f]."""
    f = len(modes)
    if not all(isinstance(m, int) and 0 <= m <= 2 * MAX_ROW_SHIFT + 1 for m in modes):
        raise CodecError("splat-vq: bad field modes")
    data = bytes(data)
    size = int.from_bytes(data[:4], "little")
    if len(data) < 4 or size > len(data) - 4:
        raise CodecError("splat-vq: truncated field stream")
    dec = AdaptiveDecoder(data[4 : 4 + size])
    st = states(f * INT_CONTEXTS * ROW_MARKOV)
    highs = [dec.code_ints(np.full(n, j, np.int32), st, ROW_MARKOV) for j in range(f)]
    total = sum(m >> 1 for m in modes)
    low = code_bits(DecoderSinks({"low": data[4 + size :]})["low"], None, np.full(n, total))
    out = np.zeros((n, f), np.int64)
    for j in reversed(range(f)):
        shift = modes[j] >> 1
        out[:, j] = (highs[j].astype(np.int64) << shift) + (low & ((1 << shift) - 1))
        low >>= shift
    for j in range(f):
        v = out[:, j]
        out[:, j] = np.cumsum(v) if modes[j] & 1 else v
        if out[:, j].min() < lo[j] or out[:, j].max() > hi[j]:
            raise CodecError("splat-vq: decoded field out of its range")
    return out


def code_fields(
    sinks: Sinks,
    stream: str,
    values: np.ndarray | None,
    bits: tuple[int, ...],
    first: np.ndarray,
    modes: list[int] | None,
) -> tuple[np.ndarray, list[int]]:
    """N x F unsigned fields of ``bits[f]`` bits; per field mode 0 = adaptive table of the value,
    1 = signed delta from the previous row (rows where ``first`` is set: from 0). The encoder
    picks the modes (smaller empirical entropy); the decoder is given them."""
    n, f = len(first), len(bits)
    out = np.zeros((n, f), np.int64)
    chosen = []
    for j in range(f):
        col = None if values is None else np.asarray(values[:, j], np.int64)
        if modes is None:
            d = np.where(first, col, col - np.roll(col, 1))
            mode = int(_entropy_bits(d) < _entropy_bits(col) and bits[j] > 1)
        else:
            mode = modes[j]
        if mode == 0:
            got = code_adaptive(sinks[stream], col, 0, 1, 1 << bits[j], size=n)
        else:
            d = None if col is None else np.where(first, col, col - np.roll(col, 1))
            dd = code_magnitude(sinks[stream], d, first.astype(np.int64), 2, bits[j] + 1)
            got = _undelta(dd, first)
            if got.size and (got.min() < 0 or got.max() >= 1 << bits[j]):
                raise CodecError(f"{stream}: decoded field out of its {bits[j]}-bit range")
        out[:, j] = got
        chosen.append(mode)
    return out, chosen


def _undelta(d: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Cumulative sums restarting at every ``first`` row."""
    c = np.cumsum(d)
    if len(d) == 0:
        return c
    starts = np.maximum.accumulate(np.where(first, np.arange(len(d)), 0))
    base = np.where(starts > 0, c[starts - 1], 0)
    return c - base


# ----------------------------------------------------------------------------- the codec


@register
class SplatVQ(Codec):
    name = "splat-vq"
    codec_id = 30
    modality = "splat"
    quality_range = (1, EXACT_LEVEL)
    extensions = (".ply", ".splat")
    description = (
        "Gaussian splats: importance pruning, SH distillation, VQ, Morton-coded positions; "
        "level 8 = the compressed.ply integers, lossless"
    )
    rank = 10
    bench_qualities: ClassVar[tuple[int, ...]] = ()

    def encode(self, data: Any, quality: int) -> Encoded:
        q = self.check_quality(quality)
        if not isinstance(data, GaussianScene):
            raise CodecError(f"{self.name}: expected a GaussianScene, got {type(data).__name__}")
        scene = data.validate()
        sinks = EncoderSinks()
        if q == EXACT_LEVEL:
            hdr, raw = _encode_exact(scene, sinks)
        else:
            hdr, raw = _encode_lossy(scene, LEVELS[q], sinks)
        hdr = {"v": FORMAT_VERSION, "in": len(scene), "in_degree": scene.sh_degree, **hdr}
        streams = {"hdr": json.dumps(hdr, sort_keys=True, separators=(",", ":")).encode()}
        streams.update(raw)
        streams.update(sinks.finish())
        d = scene.sh_degree
        # the adapter checks sh_degree in the metadata; the container keeps the codec's metadata
        header = {"shape": (len(scene), (d + 1) ** 2), "sh_degree": d}
        return Encoded(self.name, header, streams)

    def decode(self, encoded: Encoded) -> GaussianScene:
        try:
            hdr = json.loads(bytes(encoded.streams["hdr"]).decode())
            if not isinstance(hdr, dict) or hdr.get("v") != FORMAT_VERSION:
                raise CodecError(f"{self.name}: unknown stream version")
            sinks = DecoderSinks(encoded.streams)
            if hdr.get("mode") == "exact":
                return _decode_exact(hdr, sinks, encoded.streams)
            return _decode_lossy(hdr, sinks, encoded.streams)
        except KeyError as exc:
            raise CodecError(f"{self.name}: missing stream or field {exc}") from None
        except (DecodeError, ValueError, TypeError, OverflowError) as exc:
            if isinstance(exc, CodecError) and str(exc).startswith(self.name):
                raise
            raise CodecError(f"{self.name}: corrupt stream ({exc})") from None


def _int(hdr: dict, key: str, lo: int, hi: int) -> int:
    v = hdr[key]
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise CodecError(f"splat-vq: header {key}={v!r} outside {lo}..{hi}")
    return v


def _floats(hdr: dict, key: str, n: int) -> np.ndarray:
    v = np.asarray(hdr[key], np.float64)
    if v.shape != (n,) or not np.isfinite(v).all():
        raise CodecError(f"splat-vq: header {key} is not {n} finite numbers")
    return v


def _f32(a: np.ndarray) -> list[float]:
    return [float(x) for x in np.asarray(a, np.float32)]


# ----------------------------------------------------------------------------- lossy levels


def _prune(scene: GaussianScene, lv: Level, score: np.ndarray | None):
    """(pruned scene, weights of its splats for K-means) of a level."""
    visible = sigmoid(scene.opacities) >= 1.0 / 255.0
    if not visible.any():
        visible[np.argmax(scene.opacities)] = True
    keep = np.nonzero(visible)[0]
    if lv.prune > 0 and len(keep) > 1:
        score = importance(scene) if score is None else score
        n_keep = max(1, int(round(len(scene) * (1.0 - lv.prune))))
        if n_keep < len(keep):
            order = np.lexsort((keep, -score[keep]))  # most important first, ties by index
            keep = np.sort(keep[order[:n_keep]])
    s = _select(scene, keep)
    weights = score[keep] if score is not None else sigmoid(s.opacities)
    return s, weights


def _grid(
    pos: np.ndarray, pos_bits: int, floor: bool = False
) -> tuple[np.ndarray, float, np.ndarray]:
    """(origin as float32 values, step, N x 3 grid integers) of positions on a level's grid:
    the nearest grid point, or with ``floor`` the cell (the decoder puts it at the centre)."""
    pos = np.asarray(pos, np.float64)
    lo = pos.min(axis=0).astype(np.float32).astype(np.float64)
    span = pos.max(axis=0) - lo
    robust = np.percentile(pos, 98, axis=0) - np.percentile(pos, 2, axis=0)
    step = max(float(robust.max()), 1e-9) / (1 << pos_bits)
    while np.any(span / step >= (1 << MAX_POS_BITS) - 1):
        step *= 2.0
    step = float(np.float32(step))
    qpos = np.floor((pos - lo) / step + (0.0 if floor else 0.5))
    return lo, step, np.clip(qpos, 0, (1 << MAX_POS_BITS) - 1).astype(np.int64)


def lossy_reference(scene: GaussianScene, lv: Level, score: np.ndarray | None = None):
    """The scene a lossy level starts from, unquantised: pruned, SH distilled to the level's
    degree, in the decoder's splat order (for measuring what each attribute's coding costs)."""
    s, weights = _prune(scene.validate(), lv, score)
    degree = min(s.sh_degree, lv.sh_degree)
    dc, rest = s.sh_dc, s.sh_rest
    if degree < s.sh_degree:
        dc, rest = distill_sh(dc, rest, s.sh_degree, degree)
    order = _layout(s, lv, weights)["order"]
    s = GaussianScene(s.positions, s.scales_log, s.rotations, s.opacities, dc, rest, degree)
    return _select(s, order)


def _layout(s: GaussianScene, lv: Level, weights: np.ndarray) -> dict[str, Any]:
    """The splat order and the quantised scales and positions of a lossy level.

    Scales come first: they set every splat's position precision. Positions sit on a fine grid;
    a coarse grid (2^shift fine steps) is coded as sorted Morton-code deltas, then every splat
    gets the fine bits its size asks for (drop = how many of the shift bits it skips)."""
    n = len(s)
    # every splat's axes sorted by scale, smallest first (the same Gaussian)
    perm = np.argsort(np.asarray(s.scales_log, np.float64), axis=1, kind="stable")
    scl = np.take_along_axis(np.asarray(s.scales_log, np.float64), perm, axis=1)
    axes = np.take_along_axis(quaternion_matrices(s.rotations), perm[:, None, :], axis=2)
    out: dict[str, Any] = {"axes": axes, "unit": 0.0}
    if lv.scale_vq:
        centres, assign = kmeans(scl, int(min(lv.scale_vq, n)), weights)
        book = np.floor(centres.astype(np.float64) * VQ_SCALE_UNITS + 0.5).astype(np.int64)
        book = np.sort(book, axis=1)  # means of sorted rows are sorted, up to float rounding
        qs, unit = book[assign], 1.0 / VQ_SCALE_UNITS
        out.update(book=book, assign=assign)
    else:
        qs = np.floor(scl / lv.scale_step + 0.5).astype(np.int64)
        unit = lv.scale_step
    lo, step, qf = _grid(s.positions, lv.pos_bits, floor=True)
    thresholds = _drop_thresholds(step, unit, lv.pos_rel)
    drop_max = _drops(qs[:, 1], thresholds)
    shift = _best_shift(qf, drop_max)
    drop = np.minimum(drop_max, shift)
    coarse = morton_encode(qf >> shift)
    order = np.lexsort((morton_encode(qf), coarse))
    out.update(order=order, coarse=coarse[order], qf=qf[order], drop=drop[order], qs=qs[order])
    out.update(shift=shift, lo=lo, step=step, thresholds=thresholds, unit=unit)
    out["axes"] = axes[order]
    return out


def _encode_lossy(scene: GaussianScene, lv: Level, sinks: EncoderSinks, score=None):
    s, weights = _prune(scene, lv, score)
    degree = min(s.sh_degree, lv.sh_degree)
    dc, rest = s.sh_dc, s.sh_rest
    if degree < s.sh_degree:
        dc, rest = distill_sh(dc, rest, s.sh_degree, degree)
    n = len(s)
    hdr: dict[str, Any] = {"mode": "lossy", "n": n, "degree": degree}
    raw: dict[str, bytes] = {}

    p = _layout(s, lv, weights)
    order, coarse, qf, drop, qs = p["order"], p["coarse"], p["qf"], p["drop"], p["qs"]
    shift, lo, step, thresholds = p["shift"], p["lo"], p["step"], p["thresholds"]
    code_magnitude(sinks["pos"], np.diff(coarse, prepend=0), 0, 1, 62, signed=False)
    hdr.update(pos_lo=_f32(lo), pos_step=step, pos_shift=shift, pos_drop=thresholds)

    w = np.asarray(weights, np.float64)[order]
    if lv.scale_vq:
        k = len(p["book"])
        code_magnitude(sinks["scale"], p["book"].reshape(-1), 0, 1, 30)
        code_adaptive(sinks["scale"], p["assign"][order], 0, 1, k)
        hdr["scale"] = {"k": k}
    else:
        qs = np.stack([qs[:, 0], qs[:, 1] - qs[:, 0], qs[:, 2] - qs[:, 1]], axis=1)
        raw["scale"], smodes = code_rows(qs)
        hdr["scale"] = {"step": lv.scale_step, "modes": smodes}
        hdr["scale"].update(
            lo=[int(v) for v in qs.min(axis=0)], hi=[int(v) for v in qs.max(axis=0)]
        )
    _code_refinement(sinks, qf, shift, drop)

    # opacity and colour
    ob, cb = lv.opacity_bits, lv.color_bits
    op = np.floor(sigmoid(s.opacities[order]) * ((1 << ob) - 1) + 0.5).astype(np.int64)
    rgb = 0.5 + SH_C0 * np.asarray(dc[order], np.float64)
    # the range of the colours but a few outliers (clamped), in float32 as the header keeps it
    c_lo = np.percentile(rgb, 0.05, axis=0).astype(np.float32)
    c_hi = np.percentile(rgb, 99.95, axis=0).astype(np.float32)
    c_span = np.maximum(c_hi.astype(np.float64) - c_lo, 1e-6)
    qc = np.floor((rgb - c_lo) / c_span * ((1 << cb) - 1) + 0.5).astype(np.int64)
    qc = np.clip(qc, 0, (1 << cb) - 1)
    raw["op"], modes = code_rows(op[:, None])
    raw["col"], m2 = code_rows(ycocg(qc, cb))
    modes += m2
    hdr.update(op_bits=ob, col_bits=cb, col_lo=_f32(c_lo), col_hi=_f32(c_hi), attr_modes=modes)

    # orientation: the normal (the smallest scale's axis), then the angle of the middle axis
    psi_t = _angle_thresholds(p["unit"], lv.rot_bits)
    raw["rot"], rmodes = _code_orientation(sinks, p["axes"], p["qs"], lv.rot_bits, psi_t)
    hdr["rot"] = {"bits": lv.rot_bits, "modes": rmodes, "angle": psi_t}
    # SH rest
    if degree > 0:
        flat = np.asarray(rest[order], np.float64).reshape(n, -1)
        k = min(lv.sh_codebook, max(256, 1 << int(math.ceil(math.log2(max(n, 2) / 8)))))
        hdr["sh"] = _code_vq(sinks, "sh", flat, k, 1.0 / 256, w)
    return hdr, raw


def _drop_thresholds(step: float, unit: float, pos_rel: float) -> list[int]:
    """t[e - 1] = the smallest middle log-scale integer (in ``unit`` steps) of a splat whose
    position may sit on a grid of 2^e fine steps: 2^e step <= 2^pos_rel x its middle scale."""
    out = []
    for e in range(1, MAX_DROP + 1):
        t = (math.log(step) + (e - pos_rel) * math.log(2.0)) / unit
        out.append(int(min(max(math.ceil(t - 1e-9), -(1 << 30)), 1 << 30)))
    return out


def _drops(mid: np.ndarray, thresholds: list[int]) -> np.ndarray:
    """Fine bits a splat may skip: how many thresholds its middle log-scale integer reaches."""
    t = np.asarray(thresholds, np.int64)
    return (np.asarray(mid, np.int64)[:, None] >= t[None, :]).sum(axis=1)


def _best_shift(qf: np.ndarray, drop_max: np.ndarray) -> int:
    """The coarse grid (shift) with the fewest bits for coarse codes + fine bits (estimated with
    the same models the coder uses)."""
    from neuralcodec.codecs.latent.sinks import CounterSinks

    best, best_bits = 0, math.inf
    fine = morton_encode(qf)
    for shift in range(int(drop_max.max(initial=0)) + 1):
        coarse = morton_encode(qf >> shift)
        order = np.lexsort((fine, coarse))
        counter = CounterSinks()
        code_magnitude(counter["pos"], np.diff(coarse[order], prepend=0), 0, 1, 62, signed=False)
        bits = counter.bits["pos"] + 3.0 * float(np.sum(shift - np.minimum(drop_max, shift)))
        if bits < best_bits:
            best, best_bits = shift, bits
    return best


def _code_refinement(sinks: Sinks, qf: np.ndarray | None, shift: int, drop: np.ndarray):
    """The fine bits of every splat's three grid coordinates under its coarse cell: 3 x (shift -
    drop) raw bits, x's highest. Returns them as one integer per splat (what the decoder
    splits)."""
    r = shift - drop
    val = None
    if qf is not None:
        val = np.zeros(len(drop), np.int64)
        for a in range(3):
            val = (val << r) | ((qf[:, a] >> drop) & ((np.int64(1) << r) - 1))
    return code_bits(sinks["posr"], val, 3 * r)


def _list(hdr: dict, key: str, n: int) -> list:
    v = hdr[key]
    if not (isinstance(v, list) and len(v) == n):
        raise CodecError(f"splat-vq: header {key} is not a list of {n}")
    return v


def _bounds(hdr: dict, n: int) -> tuple[list[int], list[int]]:
    lo, hi = _list(hdr, "lo", n), _list(hdr, "hi", n)
    for v in lo + hi:
        if not isinstance(v, int) or isinstance(v, bool) or abs(v) >= 1 << 30:
            raise CodecError("splat-vq: bad field bounds")
    return lo, hi


def _decode_lossy(hdr: dict, sinks: DecoderSinks, streams) -> GaussianScene:
    n = _int(hdr, "n", 1, min(MAX_SPLATS, _int(hdr, "in", 1, MAX_SPLATS)))
    degree = _int(hdr, "degree", 0, min(3, _int(hdr, "in_degree", 0, 3)))
    coarse = np.cumsum(code_magnitude(sinks["pos"], None, 0, 1, 62, signed=False, size=n))
    if coarse[-1] >= 1 << 62:
        raise CodecError("splat-vq: position codes out of range")
    lo = _floats(hdr, "pos_lo", 3)
    step = float(hdr["pos_step"])
    if not (math.isfinite(step) and step > 0):
        raise CodecError("splat-vq: bad position step")
    shift = _int(hdr, "pos_shift", 0, MAX_DROP)
    thresholds = hdr["pos_drop"]
    if not (
        isinstance(thresholds, list)
        and len(thresholds) == MAX_DROP
        and all(isinstance(t, int) and abs(t) <= 1 << 30 for t in thresholds)
    ):
        raise CodecError("splat-vq: bad position precision thresholds")
    sc = hdr["scale"]
    if "k" in sc:
        k = _int(sc, "k", 1, MAX_CODEBOOK)
        book = code_magnitude(sinks["scale"], None, 0, 1, 30, size=3 * k).reshape(k, 3)
        qs = book[code_adaptive(sinks["scale"], None, 0, 1, k, size=n)]
        unit = 1.0 / VQ_SCALE_UNITS
    else:
        unit = float(sc["step"])
        if not (math.isfinite(unit) and unit > 0):
            raise CodecError("splat-vq: bad scale step")
        d = decode_rows(streams["scale"], n, _list(sc, "modes", 3), *_bounds(sc, 3))
        if d.size and d[:, 1:].min() < 0:
            raise CodecError("splat-vq: decoded scales out of order")
        qs = np.cumsum(d, axis=1)
    scales = qs * unit
    if qs.size and (qs[:, 1] < qs[:, 0]).any() | (qs[:, 2] < qs[:, 1]).any():
        raise CodecError("splat-vq: decoded scales out of order")
    drop = np.minimum(_drops(qs[:, 1], thresholds), shift)
    ref = _code_refinement(sinks, None, shift, drop)
    cell = morton_decode(coarse).astype(np.int64)
    r = shift - drop
    fine = np.zeros((n, 3), np.int64)
    for a in (2, 1, 0):
        part = ref & ((np.int64(1) << r) - 1)
        ref >>= r
        fine[:, a] = (((cell[:, a] << r) | part) << drop) + (np.int64(1) << drop) // 2
    if fine.max() >= 1 << (MAX_POS_BITS + 1):
        raise CodecError("splat-vq: position codes out of range")
    # the cell centre: + half a cell (for drop = 0, half a fine step)
    half = np.where(drop == 0, 0.5, 0.0)[:, None]
    positions = lo + (fine.astype(np.float64) + half) * step
    ob, cb = _int(hdr, "op_bits", 1, 12), _int(hdr, "col_bits", 1, 12)
    modes = _list(hdr, "attr_modes", 4)  # decode_rows checks them
    op = decode_rows(streams["op"], n, modes[:1], [0], [(1 << ob) - 1])
    hi = (1 << cb) - 1
    col = decode_rows(streams["col"], n, modes[1:], [0] * 3, [hi, 2 * hi + 1, 2 * hi + 1])
    vals = np.concatenate([op, col], axis=1)
    opacity = logit(vals[:, 0] / ((1 << ob) - 1))
    c_lo, c_hi = _floats(hdr, "col_lo", 3), _floats(hdr, "col_hi", 3)
    c_span = np.maximum(c_hi - c_lo, 1e-6)
    qc = ycocg_inverse(vals[:, 1:], cb)
    if qc.min() < 0 or qc.max() >= 1 << cb:
        raise CodecError("splat-vq: decoded colour out of range")
    rgb = c_lo + qc / ((1 << cb) - 1) * c_span
    rt = hdr["rot"]
    bits = _int(rt, "bits", 2, 12)
    psi_t = _list(rt, "angle", bits)
    if not all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < 1 << 30 for t in psi_t):
        raise CodecError("splat-vq: bad angle thresholds")
    rot = _decode_orientation(sinks, streams["rot"], qs, bits, psi_t, _list(rt, "modes", 2))
    k = (degree + 1) ** 2 - 1
    rest = np.zeros((n, k, 3))
    if degree > 0:
        rest = _decode_vq(sinks, "sh", hdr["sh"], n, 3 * k).reshape(n, k, 3)
    return GaussianScene(
        positions=positions.astype(np.float32),
        scales_log=scales.astype(np.float32),
        rotations=normalized(rot),
        opacities=opacity.astype(np.float32),
        sh_dc=((rgb - 0.5) / SH_C0).astype(np.float32),
        sh_rest=rest.astype(np.float32),
        sh_degree=degree,
    ).validate("decoded splat scene")


def _code_vq(
    sinks: EncoderSinks, name: str, x: np.ndarray, k: int, step: float, w: np.ndarray
) -> dict:
    """K-means codebook of the rows of ``x`` on a ``step`` grid (coded per dimension), then the
    indices with an adaptive table."""
    n, dims = x.shape
    k = int(min(k, n))
    centres, assign = kmeans(x, k, w)
    qc = np.floor(centres.astype(np.float64) / step + 0.5).astype(np.int64)
    for j in range(dims):
        code_magnitude(sinks[name], qc[:, j], 0, 1, 30)
    code_adaptive(sinks[name], assign, 0, 1, k)
    return {"k": k, "step": step}


def _decode_vq(sinks: DecoderSinks, name: str, hdr: dict, n: int, dims: int) -> np.ndarray:
    k = _int(hdr, "k", 1, MAX_CODEBOOK)
    step = float(hdr["step"])
    if not (math.isfinite(step) and step > 0):
        raise CodecError(f"splat-vq: bad {name} codebook step")
    cols = [code_magnitude(sinks[name], None, 0, 1, 30, size=k) for _ in range(dims)]
    book = np.stack(cols, axis=1).astype(np.float64) * step
    idx = code_adaptive(sinks[name], None, 0, 1, k, size=n)
    return book[idx]


def _angle_thresholds(unit: float, bits: int) -> list[int]:
    """t[k - 1] = the smallest gap (largest - middle log-scale integer, in ``unit`` steps) at
    which a splat's in-plane angle gets k bits: its shape changes with the angle in proportion
    to 1 - (middle / largest)^2, so a round splat needs none and a long one all ``bits``."""
    out = []
    for k in range(1, bits + 1):
        t = -math.log(1.0 - 2.0 ** (k - 1 - bits)) / (2.0 * unit)
        out.append(int(min(math.floor(t + 1e-9) + 1, (1 << 30) - 1)))
    return out


def _angle_bits(qs: np.ndarray, thresholds: list[int]) -> np.ndarray:
    gap = np.asarray(qs[:, 2] - qs[:, 1], np.int64)
    return (gap[:, None] >= np.asarray(thresholds, np.int64)[None, :]).sum(axis=1)


def _code_orientation(
    sinks: Sinks, axes: np.ndarray, qs: np.ndarray, bits: int, thresholds: list[int]
) -> tuple[bytes, list[int]]:
    """Axes sorted by scale (columns, smallest first): the smallest's direction (either sign)
    on the octahedral grid (``code_rows``), then the middle axis' angle in the plane of the
    decoded normal, in [0, pi) on 2^k cells (raw bits, k from the scale gap)."""
    oct_q = octahedral_encode(axes[:, :, 0], bits)
    data, modes = code_rows(oct_q)
    normal = octahedral_decode(oct_q, bits)
    e1, e2 = plane_basis(normal)
    mid = axes[:, :, 1]
    psi = np.mod(np.arctan2((mid * e2).sum(axis=1), (mid * e1).sum(axis=1)), math.pi)
    k = _angle_bits(qs, thresholds)
    cell = np.minimum(np.floor(psi / math.pi * (np.int64(1) << k)), (np.int64(1) << k) - 1)
    code_bits(sinks["angle"], cell.astype(np.int64), k)
    return data, modes


def _decode_orientation(
    sinks: DecoderSinks, data: bytes, qs: np.ndarray, bits: int, thresholds: list, modes: list
) -> np.ndarray:
    n = len(qs)
    top = (1 << bits) - 1
    normal = octahedral_decode(decode_rows(data, n, modes, [0, 0], [top, top]), bits)
    k = _angle_bits(qs, thresholds)
    cell = code_bits(sinks["angle"], None, k)
    psi = (cell + 0.5) / (np.int64(1) << k) * math.pi
    e1, e2 = plane_basis(normal)
    mid = np.cos(psi)[:, None] * e1 + np.sin(psi)[:, None] * e2
    m = np.stack([normal, mid, np.cross(normal, mid)], axis=2)
    return matrix_quaternions(m)


# ----------------------------------------------------------------------------- exact level


_FIELDS_111011 = ((21, 11), (11, 10), (0, 11))


def _morton_order(positions: np.ndarray) -> np.ndarray:
    p = np.asarray(positions, np.float64)
    lo, hi = p.min(axis=0), p.max(axis=0)
    q = np.floor((p - lo) / np.maximum(hi - lo, 1e-30) * 1023 + 0.5).astype(np.int64)
    return np.argsort(morton_encode(q), kind="stable")


def _encode_exact(scene: GaussianScene, sinks: EncoderSinks):
    if scene.packing is None:  # chunks in Morton order, as PlayCanvas writes them
        order = _morton_order(scene.positions)
        scene = _select(scene, order)
    el = pack_compressed(scene)
    n = len(scene)
    chunk = el["chunk"]
    names = POSITION + SCALE + (COLOR if "min_r" in chunk else ())
    bounds = np.stack([np.asarray(chunk[k], np.float32) for k in names], axis=1)
    v = el["vertex"]
    first = (np.arange(n) % CHUNK) == 0
    cols, bits = _split_packed(v)
    _, modes = code_fields(sinks, "attr", cols, bits, first, None)
    k3 = 0
    if "sh" in el:
        sh = el["sh"]
        k3 = len(sh)
        q = np.stack([sh[f"f_rest_{i}"] for i in range(k3)], axis=1).astype(np.int64)
        ctx = np.broadcast_to(np.arange(k3), q.shape)
        code_adaptive(sinks["sh"], q.reshape(-1), ctx.reshape(-1), k3, 256)
    hdr = {"mode": "exact", "n": n, "colour_bounds": "min_r" in chunk, "modes": modes, "sh": k3}
    return hdr, {"chunk": bounds.astype("<f4").tobytes()}


def _split_packed(v: dict) -> tuple[np.ndarray, tuple[int, ...]]:
    """The packed uint32s as 14 fields: position 11-10-11, scale 11-10-11, the dropped rotation
    component (2 bits) and three 10-bit components, r g b a."""
    cols = []
    for key in ("packed_position", "packed_scale"):
        p = np.asarray(v[key], np.int64)
        cols += [(p >> s) & ((1 << b) - 1) for s, b in _FIELDS_111011]
    r = np.asarray(v["packed_rotation"], np.int64)
    cols += [(r >> 30) & 3] + [(r >> s) & 1023 for s in (20, 10, 0)]
    c = np.asarray(v["packed_color"], np.int64)
    cols += [(c >> s) & 255 for s in (24, 16, 8, 0)]
    bits = (11, 10, 11, 11, 10, 11, 2, 10, 10, 10, 8, 8, 8, 8)
    return np.stack(cols, axis=1), bits


def _join_packed(f: np.ndarray) -> dict[str, np.ndarray]:
    def pack(cols, shifts):
        out = np.zeros(len(f), np.int64)
        for c, s in zip(cols, shifts, strict=True):
            out |= f[:, c] << s
        return out.astype(np.uint32)

    return {
        "packed_position": pack((0, 1, 2), (21, 11, 0)),
        "packed_rotation": pack((6, 7, 8, 9), (30, 20, 10, 0)),
        "packed_scale": pack((3, 4, 5), (21, 11, 0)),
        "packed_color": pack((10, 11, 12, 13), (24, 16, 8, 0)),
    }


def _decode_exact(hdr: dict, sinks: DecoderSinks, streams) -> GaussianScene:
    n = _int(hdr, "n", 1, min(MAX_SPLATS, _int(hdr, "in", 1, MAX_SPLATS)))
    k3 = _int(hdr, "sh", 0, 45)
    if k3 not in (0, 9, 24, 45):
        raise CodecError(f"splat-vq: {k3} SH coefficients is not degree 1..3")
    colour = hdr["colour_bounds"]
    if not isinstance(colour, bool):
        raise CodecError("splat-vq: bad colour_bounds flag")
    names = POSITION + SCALE + (COLOR if colour else ())
    n_chunks = -(-n // CHUNK)
    raw = bytes(streams["chunk"])
    if len(raw) != 4 * n_chunks * len(names):
        raise CodecError(f"splat-vq: chunk stream holds {len(raw)} bytes for {n_chunks} chunks")
    bounds = np.frombuffer(raw, "<f4").reshape(n_chunks, len(names))
    if not np.isfinite(bounds).all():
        raise CodecError("splat-vq: non-finite chunk bounds")
    modes = hdr["modes"]
    if not (isinstance(modes, list) and len(modes) == 14 and all(m in (0, 1) for m in modes)):
        raise CodecError("splat-vq: bad field modes")
    first = (np.arange(n) % CHUNK) == 0
    bits = (11, 10, 11, 11, 10, 11, 2, 10, 10, 10, 8, 8, 8, 8)
    fields, _ = code_fields(sinks, "attr", None, bits, first, modes)
    data: dict[str, dict] = {
        "chunk": {k: bounds[:, i].copy() for i, k in enumerate(names)},
        "vertex": _join_packed(fields),
    }
    if k3:
        ctx = np.broadcast_to(np.arange(k3), (n, k3)).reshape(-1)
        q = code_adaptive(sinks["sh"], None, ctx, k3, 256).reshape(n, k3).astype(np.uint8)
        data["sh"] = {f"f_rest_{i}": q[:, i] for i in range(k3)}
    return unpack_compressed(data, "decoded splat scene")
