"""Exact integer twin of ``inr.InrModel``: fixed-point networks, coding tables, wavefront coder.

Everything the decoder computes is integer arithmetic carried in float64 (every partial sum
stays far below 2^53, so the result does not depend on summation order, BLAS or threads)::

    network weights  w_int = round(w * 2^k)      one step exponent k per network (arm/ups/syn)
    activations      a_int at scale 2^ACT_BITS   (latents enter at scale 2^0)
    layer            acc = a_int @ w_int + b_int * 2^a_in ;  out = floor(acc * 2^(ACT - a_in - k) + 1/2)

The integer kernels (upsampler, 3x3 convolutions, the ARM decode loop) live in
``neuralcodec.kernels`` with their references; the coding tables are the frozen ones of
``inr_tables`` (a shipped file, never rebuilt at run time).

Latent coding (``encode_latents`` / ``decode_latents``): the ARM gives ``mu`` and ``log b`` in
fixed point;  ``mu`` is split into an integer ``m`` and a fraction bin ``f`` (1/8 steps) and
``log b`` into a scale bin ``s`` of a log-spaced table; the value coded is ``y - m`` with table
``s * NUM_FRACS + f`` (a discretised Laplace of scale ``b_s`` centred at ``f``). Latents of all
levels are coded along anti-diagonal wavefronts ``t = x + 4 y``: those on one wavefront depend
only on earlier ones, so the decoder runs one vectorised ARM call and one range-decoder chunk
per wavefront (about ``W + 4 H`` steps for the whole image).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from .. import kernels
from ..entropy import rangecoder
from ..entropy.tables import PRECISION
from ..kernels.exact_upsample import rescale
from ..kernels.inr_arm import ArmCoding, arm_mlp
from ..kernels.inr_arm import coding_indexes as _coding_indexes
from .fixedpoint import ACT_BITS, ACT_LIMIT, WEIGHT_MAGNITUDE_BITS
from .inr import NEIGHBOURHOODS, WAVEFRONT_SLOPE, InrConfig, grid_shapes
from .inr_tables import LS_HI, LS_LO, NUM_FRACS, NUM_SCALES, tables_at, tables_path
from .inr_tables import coding_tables as coding_tables

LATENT_LIMIT = 2**20
# The constants of ``arm_fixed`` + ``coding_indexes``: the ARM decode kernel's ``coding``.
MLP_CODING = ArmCoding(
    ACT_BITS, float(ACT_LIMIT), NUM_FRACS, NUM_SCALES, LS_LO, LS_HI, LATENT_LIMIT
)


class InrStreamError(ValueError):
    """An INR stream or parameter set that cannot be decoded exactly."""


# ----------------------------------------------------------------------------- tables


@lru_cache(maxsize=4)
def _prepared(path: str) -> rangecoder.PreparedTables:
    return rangecoder.prepare(tables_at(path))


def prepared_tables() -> rangecoder.PreparedTables:
    """The shipped tables (``inr_tables``) in the range coder's prepared form."""
    return _prepared(str(tables_path()))


def table_bits(values: np.ndarray, indexes: np.ndarray) -> float:
    """Exact information content (bits) of coding ``values`` with ``indexes`` (escapes approx.)."""
    t = coding_tables()
    sym = values.astype(np.int64) - t.offsets[indexes]
    nreg = t.cdf_lengths[indexes].astype(np.int64) - 2
    inside = (sym >= 0) & (sym < nreg)
    s = np.where(inside, sym, nreg)
    freq = t.cdfs[indexes, s + 1].astype(np.int64) - t.cdfs[indexes, s]
    bits = PRECISION - np.log2(freq)
    dist = np.where(sym < 0, -sym, sym - nreg + 1)
    bits = bits + np.where(inside, 0, 7 + np.floor(np.log2(np.maximum(dist, 1))))
    return float(bits.sum())


def coding_indexes(mu_fx: np.ndarray, ls_fx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-point (mu, log b) -> (table indexes int32, integer means int64). Integer-only."""
    return _coding_indexes(mu_fx, ls_fx, MLP_CODING)


# ----------------------------------------------------------------------------- fixed networks


@dataclass
class FixedNets:
    """Integer weights of the three networks and their step exponents."""

    arm: list[tuple[np.ndarray, np.ndarray]]  # (weight [out, in], bias [out]) per linear layer
    ups: np.ndarray  # [levels - 1, 4] taps
    syn_pointwise: list[tuple[np.ndarray, np.ndarray]]  # (weight [out, in], bias)
    syn_residual: list[tuple[np.ndarray, np.ndarray]]  # (weight [3, 3, 3, 3], bias [3])
    steps: dict[str, int]  # step exponent k per network: values are int / 2^k


def _shift(acc: torch.Tensor, in_bits: int, k: int) -> torch.Tensor:
    """Rounding rescale of a fresh accumulator (modified in place) to scale 2^ACT_BITS."""
    return rescale(acc, 2.0 ** (ACT_BITS - in_bits - k), float(ACT_LIMIT))


def arm_fixed(nets: FixedNets, ctx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, K) integer latents -> (mu, log b) at scale 2^ACT_BITS, exact float64 integers."""
    return arm_mlp(nets.arm, nets.steps["arm"], MLP_CODING, ctx)


def _up2_fixed(x: torch.Tensor, taps: torch.Tensor, k: int) -> torch.Tensor:
    """Exact x2 upsampling of fixed-point (C, h, w) along both axes (4 taps per phase)."""
    return kernels.up2_exact(x, taps, 2.0**-k, float(ACT_LIMIT))


def _conv3x3(s: torch.Tensor, w: np.ndarray, b: np.ndarray) -> torch.Tensor:
    """(C, H, W) replicate-padded 3x3 convolution, exact (bias at scale 2^ACT_BITS)."""
    return kernels.conv3x3_exact(s, w, b * 2.0**ACT_BITS)


# Pixels per block of the pointwise synthesis: its hidden activations stay in the CPU cache.
SYN_CHUNK = 4096


def _pointwise(nets: FixedNets, s: torch.Tensor) -> torch.Tensor:
    """The synthesis' 1x1 layers on (C, n) fixed-point features, block by block."""
    ks = nets.steps["syn"]
    layers = [
        (torch.from_numpy(w.astype(np.float64)), torch.from_numpy(b * 2.0**ACT_BITS)[:, None])
        for w, b in nets.syn_pointwise
    ]
    out = torch.empty(layers[-1][0].shape[0], s.shape[1], dtype=torch.float64)
    for a in range(0, s.shape[1], SYN_CHUNK):
        t = s[:, a : a + SYN_CHUNK]
        for j, (w, b) in enumerate(layers):
            t = _shift(torch.addmm(b, w, t), ACT_BITS, ks)
            if j + 1 < len(layers):
                t.clamp_min_(0)
        out[:, a : a + SYN_CHUNK] = t
    return out


def synthesize_fixed(nets: FixedNets, grids: list[np.ndarray]) -> torch.Tensor:
    """Integer latent grids -> RGB (3, H, W) in [0, 1] (float64), exact."""
    with torch.no_grad():
        g = [torch.from_numpy(np.asarray(y, dtype=np.float64))[None] * 2.0**ACT_BITS for y in grids]
        s, ku = g[-1], nets.steps["ups"]
        taps = torch.from_numpy(nets.ups.astype(np.float64))
        for lvl in range(len(g) - 1, 0, -1):
            up = _up2_fixed(s, taps[lvl - 1], ku)
            h, w = g[lvl - 1].shape[-2:]
            s = torch.cat([g[lvl - 1], up[..., :h, :w]], dim=0)
        ks, (c, h, w) = nets.steps["syn"], s.shape
        s = _pointwise(nets, s.reshape(c, h * w)).reshape(-1, h, w)
        for j, (wt, b) in enumerate(nets.syn_residual):
            s = s + _shift(_conv3x3(s, wt, b), ACT_BITS, ks)
            if j + 1 < len(nets.syn_residual):
                s = s.clamp_min(0)
        return (s * 2.0**-ACT_BITS).clamp(0, 1)


def check_exact_range(nets: FixedNets) -> None:
    """Raise ``InrStreamError`` unless every weight fits the exact-arithmetic bounds."""
    arrays = [a for pair in nets.arm + nets.syn_pointwise + nets.syn_residual for a in pair]
    for a in [*arrays, nets.ups]:
        if a.size and float(np.abs(a).max()) >= 2**WEIGHT_MAGNITUDE_BITS:
            raise InrStreamError("network weight outside the exact fixed-point range")
    for name, k in nets.steps.items():
        if not 0 <= k <= 16:
            raise InrStreamError(f"step exponent of {name} out of range: {k}")


# ----------------------------------------------------------------------------- wavefronts


@dataclass
class Layout:
    """All latent grids in one zero-padded flat buffer, positions sorted by wavefront."""

    shapes: list[tuple[int, int]]
    bases: list[int]  # flat index of each level's (0, 0)
    strides: list[int]  # row stride of each level in the buffer
    size: int
    positions: np.ndarray  # flat index of every latent, wavefront order
    levels: np.ndarray  # level of every latent, same order
    raster: np.ndarray  # raster (level-major) rank of every latent, same order
    starts: np.ndarray  # positions[starts[t]:starts[t+1]] is wavefront t
    offsets: np.ndarray  # [levels, K] flat neighbour offsets per level

    def context_index(self) -> np.ndarray:
        """[N, K] flat buffer index of every latent's causal neighbours, wavefront order."""
        return self.positions[:, None] + self.offsets[self.levels]


def make_layout(cfg: InrConfig, height: int, width: int) -> Layout:
    nbrs = NEIGHBOURHOODS[cfg.arm_context]
    top = max(dy for dy, _ in nbrs)
    side = max(abs(dx) for _, dx in nbrs)
    shapes = grid_shapes(height, width, cfg.levels)
    bases, strides, offsets, pos, lvl, wave = [], [], [], [], [], []
    size = 0
    for level, (h, w) in enumerate(shapes):
        stride = w + 2 * side
        base = size + top * stride + side
        bases.append(base)
        strides.append(stride)
        offsets.append([-dy * stride + dx for dy, dx in nbrs])
        yy, xx = np.mgrid[0:h, 0:w]
        pos.append((base + yy * stride + xx).ravel())
        wave.append((xx + WAVEFRONT_SLOPE * yy).ravel())
        lvl.append(np.full(h * w, level))
        size += (h + top) * stride
    wave_all = np.concatenate(wave)
    order = np.argsort(wave_all, kind="stable")
    counts = np.bincount(wave_all, minlength=int(wave_all.max()) + 1)
    starts = np.concatenate([[0], np.cumsum(counts)])
    return Layout(
        shapes=shapes,
        bases=bases,
        strides=strides,
        size=size,
        positions=np.concatenate(pos)[order],
        levels=np.concatenate(lvl)[order],
        raster=order,
        starts=starts,
        offsets=np.array(offsets, dtype=np.int64),
    )


def _scatter(layout: Layout, grids: list[np.ndarray]) -> np.ndarray:
    buf = np.zeros(layout.size, dtype=np.float64)
    flat = np.concatenate([np.asarray(g, dtype=np.float64).ravel() for g in grids])
    buf[layout.positions] = flat[layout.raster]
    return buf


def _gather(layout: Layout, buf: np.ndarray) -> list[np.ndarray]:
    out = []
    for (h, w), base, stride in zip(layout.shapes, layout.bases, layout.strides, strict=True):
        idx = base + np.arange(h)[:, None] * stride + np.arange(w)[None, :]
        out.append(buf[idx].astype(np.int64))
    return out


# ----------------------------------------------------------------------------- parameters


def best_scale_index(values: np.ndarray) -> tuple[int, float]:
    """The zero-mean table (scale bin) that codes ``values`` in the fewest bits."""
    best = (0, math.inf)
    if values.size == 0:
        return best[0], 0.0
    for s in range(NUM_SCALES):
        idx = np.full(values.shape, s * NUM_FRACS + NUM_FRACS // 2, dtype=np.int32)
        bits = table_bits(values, idx)
        if bits < best[1]:
            best = (s, bits)
    return best


def encode_tensors(tensors: list[np.ndarray]) -> tuple[bytes, float]:
    """Integer tensors -> stream: u8 scale bin per tensor, then one range-coded block."""
    head, vals, idxs, bits = bytearray(), [], [], 0.0
    for t in tensors:
        v = np.asarray(t, dtype=np.int64).ravel()
        if np.abs(v).max(initial=0) >= 2**WEIGHT_MAGNITUDE_BITS:
            raise InrStreamError("parameter outside the exact fixed-point range")
        s, b = best_scale_index(v)
        head.append(s)
        vals.append(v.astype(np.int32))
        idxs.append(np.full(v.shape, s * NUM_FRACS + NUM_FRACS // 2, dtype=np.int32))
        bits += b
    body = rangecoder.encode(np.concatenate(vals), np.concatenate(idxs), prepared_tables())
    return bytes(head) + body, bits + 8 * len(head)


def decode_tensors(data: bytes, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """Inverse of ``encode_tensors`` for tensors of the given shapes."""
    n = len(shapes)
    if len(data) < n:
        raise InrStreamError("parameter stream truncated")
    scales = np.frombuffer(data[:n], dtype=np.uint8).astype(np.int64)
    if scales.max(initial=0) >= NUM_SCALES:
        raise InrStreamError("parameter stream names an unknown table")
    sizes = [int(np.prod(s)) for s in shapes]
    idx = np.repeat(scales * NUM_FRACS + NUM_FRACS // 2, sizes).astype(np.int32)
    flat = rangecoder.decode(data[n:], idx, prepared_tables()).astype(np.float64)
    out, at = [], 0
    for shape, size in zip(shapes, sizes, strict=True):
        out.append(flat[at : at + size].reshape(shape))
        at += size
    return out


# ----------------------------------------------------------------------------- float <-> fixed


def network_shapes(cfg: InrConfig, name: str) -> list[tuple[int, ...]]:
    """Shapes of the integer tensors of network ``name`` ('arm', 'ups', 'syn'), coding order."""
    if name == "arm":
        dims = [cfg.arm_context] + [cfg.arm_hidden] * cfg.arm_layers + [2]
        return [s for a, b in zip(dims[:-1], dims[1:], strict=True) for s in ((b, a), (b,))]
    if name == "ups":
        return [(max(cfg.levels - 1, 1), 4)]
    dims = [cfg.levels, *cfg.syn_hidden, 3]
    pw = [s for a, b in zip(dims[:-1], dims[1:], strict=True) for s in ((b, a), (b,))]
    return pw + [(3, 3, 3, 3), (3,)] * cfg.syn_residual


def float_tensors(model, name: str) -> list[torch.Tensor]:
    """The float parameters of network ``name`` of an ``InrModel``, in ``network_shapes`` order."""
    if name == "arm":
        layers = [*model.arm.hidden, model.arm.out]
        return [t for layer in layers for t in (layer.weight, layer.bias)]
    if name == "ups":
        return [model.upsampler.taps]
    syn = model.synthesis
    pw = [t for c in syn.pointwise for t in (c.weight.flatten(1), c.bias)]
    return pw + [t for c in syn.residual for t in (c.weight, c.bias)]


def quantize_tensors(tensors: list[torch.Tensor], k: int) -> list[np.ndarray]:
    return [np.round(t.detach().double().numpy() * 2.0**k) for t in tensors]


def assemble(cfg: InrConfig, ints: dict[str, list[np.ndarray]], steps: dict[str, int]) -> FixedNets:
    """Integer tensors per network (``network_shapes`` order) -> ``FixedNets`` (checked)."""
    arm, syn = ints["arm"], ints["syn"]
    npw = 2 * (len(cfg.syn_hidden) + 1)
    nets = FixedNets(
        arm=[(arm[j], arm[j + 1]) for j in range(0, len(arm), 2)],
        ups=ints["ups"][0],
        syn_pointwise=[(syn[j], syn[j + 1]) for j in range(0, npw, 2)],
        syn_residual=[(syn[j], syn[j + 1]) for j in range(npw, len(syn), 2)],
        steps=dict(steps),
    )
    check_exact_range(nets)
    return nets


def load_into(model, ints: dict[str, list[np.ndarray]], steps: dict[str, int]) -> None:
    """Overwrite the float networks of ``model`` with the dequantised integer tensors."""
    with torch.no_grad():
        for name, arrays in ints.items():
            for t, a in zip(float_tensors(model, name), arrays, strict=True):
                t.copy_(torch.from_numpy(a * 2.0 ** -steps[name]).reshape(t.shape).to(t.dtype))
