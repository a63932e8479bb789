"""Integer networks: post-training quantisation of trained float modules into exact integer twins.

Two twins, both built from a float module plus calibration statistics, both bit-identical on
every CPU, instruction set and thread count (the convolutions are ``intconv.IntConv``; the
non-linearities are integer or correctly-rounded float64 operations on exact integers)::

    IntNet          nn.Sequential of Conv2d / ConvTranspose2d / ReLU  (entropy-model networks)
                    in and out: float64 integers at scale 2^ACT_BITS (the FixedPointNet contract)
    IntSynthesis    HybridSynthesis (16x16 block transform + deconv/IGDN residual stack)
                    in: the decoded latent y_hat (multiples of 2^-ACT_BITS) and the quality;
                    out: uint8 pixels

Quantisation (``quantize_weights``): weights symmetric per output channel (``weight_bits``,
8 by default: int8 storage); activations per tensor, scale a power of two chosen from the
calibrated peak so that it uses ``act_bits`` (sign included), clamped there; biases at the
accumulator's scale; each layer's output brought to the next one's scale by an integer
multiplier and shift. Inverse GDN runs as ``x * isqrt(beta + gamma @ x^2)`` on integers:
``gamma`` as uint8 at one scale, the square root by float64 ``sqrt`` of an exact integer
(correctly rounded in IEEE arithmetic, so identical everywhere) and ``floor``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..kernels import _ext
from ..models.fixedpoint import ACT_BITS, ACT_LIMIT
from .intconv import (
    ConvGeometry,
    IntConv,
    IntNetError,
    _use_c,
    by_channels,
    fixed_multiplier,
    requantize,
)

DEFAULT_ACT_BITS = 12
DEFAULT_WEIGHT_BITS = 8
PIXEL_BITS = 6  # synthesis output: pixel value * 2^PIXEL_BITS before the final rounding


def _scale_exponent(peak: float, bits: int) -> int:
    """Largest f with ``peak * 2^f <= 2^(bits-1) - 1`` (the activation's power-of-two scale)."""
    limit = 2 ** (bits - 1) - 1
    if not peak > 0 or not math.isfinite(peak):
        return 0
    return int(math.floor(math.log2(limit / peak)))


def quantize_weights(w: torch.Tensor, bits: int, transposed: bool) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel quantisation -> (integer weights, step per output channel)."""
    w = w.detach().double().cpu().numpy()
    axes = (0, 2, 3) if transposed else (1, 2, 3)
    peak = np.abs(w).max(axis=axes)
    step = np.where(peak > 0, peak / (2 ** (bits - 1) - 1), 1.0)
    shape = (1, -1, 1, 1) if transposed else (-1, 1, 1, 1)
    return np.round(w / step.reshape(shape)).astype(np.int64), step


def int_conv(
    m: nn.Conv2d | nn.ConvTranspose2d,
    f_in: int,
    f_out: int,
    in_bound: int,
    out_bound: int,
    relu: bool,
    weight_bits: int = DEFAULT_WEIGHT_BITS,
    out_gain: float = 1.0,
    weight: torch.Tensor | tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[IntConv, np.ndarray]:
    """``m`` quantised: input at scale 2^f_in, output ``out_gain * m(x)`` at scale 2^f_out.

    Returns the layer and its per-channel weight steps (kept for dequantising back to float).
    ``weight`` overrides ``m.weight``: another float weight, or ``(integers, step per output
    channel)`` already rounded by an error-compensating pass (``compress/gptq.py``).
    """
    transposed = isinstance(m, nn.ConvTranspose2d)
    if isinstance(weight, tuple):
        wq, step = (np.asarray(v) for v in weight)
    else:
        wq, step = quantize_weights(m.weight if weight is None else weight, weight_bits, transposed)
    acc_scale = step * 2.0**-f_in  # real value of one accumulator unit, per channel
    bias = m.bias.detach().double().numpy() if m.bias is not None else np.zeros(len(step))
    mult, shift = fixed_multiplier(acc_scale * out_gain * 2.0**f_out)
    # keep acc * mult below 2^53 (IntConv.check): fewer multiplier bits for huge fan-ins
    for bits in (20, 18, 16, 14, 12):
        mult, shift = fixed_multiplier(acc_scale * out_gain * 2.0**f_out, bits)
        try:
            layer = IntConv(
                weight=wq,
                bias=np.round(bias / acc_scale).astype(np.int64),
                mult=mult,
                shift=shift,
                geometry=ConvGeometry(
                    m.kernel_size[0],
                    m.stride[0],
                    m.padding[0],
                    transposed,
                    m.output_padding[0] if transposed else 0,
                ),
                in_bound=in_bound,
                out_bound=out_bound,
                relu=relu,
            )
            return layer, step
        except IntNetError:
            continue
    raise IntNetError("layer cannot run exactly at these activation bits")


def _round_shift(x: torch.Tensor, shift: int) -> torch.Tensor:
    """x * 2^shift, rounded half up when shift < 0 (exact in float64: a power of two)."""
    if shift >= 0:
        return x * 2.0**shift
    return torch.floor(x * 2.0**shift + 0.5)


# ----------------------------------------------------------------------------- IntNet


@dataclass
class IntNet:
    """Integer twin of a Sequential of convolutions and ReLUs (the FixedPointNet contract)."""

    layers: list[IntConv]
    steps: list[np.ndarray]  # per-layer weight steps: only for load_into (training warm starts)
    exponents: list[int]  # f_in of each layer, then f_out of the last (= ACT_BITS)

    @classmethod
    def from_sequential(
        cls,
        seq: nn.Sequential,
        input_peaks: list[float],
        act_bits: int = DEFAULT_ACT_BITS,
        weight_bits: int = DEFAULT_WEIGHT_BITS,
        weights: list | None = None,
    ) -> IntNet:
        """``input_peaks``: calibrated max |input| of each convolution, in order."""
        modules = list(seq)
        convs = [
            (i, m) for i, m in enumerate(modules) if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
        ]
        for i, m in enumerate(modules):
            if not isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.ReLU)):
                raise IntNetError(f"layer {i} ({type(m).__name__}) has no integer form")
        if len(input_peaks) != len(convs):
            raise IntNetError(f"{len(input_peaks)} calibrated peaks for {len(convs)} layers")
        bits = list(act_bits) if isinstance(act_bits, (list, tuple)) else [act_bits] * len(convs)
        bits = (bits + bits[-1:] * len(convs))[: len(convs)]  # the last width repeats
        bounds = [2 ** (b - 1) - 1 for b in bits]
        exps = [
            min(_scale_exponent(p, b), ACT_BITS) for p, b in zip(input_peaks, bits, strict=True)
        ] + [ACT_BITS]
        layers, steps = [], []
        for n, (i, m) in enumerate(convs):
            last = n == len(convs) - 1
            relu = i + 1 < len(modules) and isinstance(modules[i + 1], nn.ReLU)
            layer, step = int_conv(
                m,
                exps[n],
                exps[n + 1],
                bounds[n],
                ACT_LIMIT if last else bounds[n + 1],
                relu,
                weight_bits,
                weight=None if weights is None else weights[n],
            )
            layers.append(layer)
            steps.append(step)
        return cls(layers, steps, exps)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: float64 integers at scale 2^ACT_BITS -> output at the same scale."""
        with torch.no_grad():
            a = _round_shift(x, self.exponents[0] - ACT_BITS)
            for layer in self.layers:
                a = layer(a)
        return a.double()

    # -- storage ------------------------------------------------------------------------------
    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        out = {prefix + "exponents": np.array(self.exponents, dtype=np.int64)}
        for k, (layer, step) in enumerate(zip(self.layers, self.steps, strict=True)):
            out.update(layer.to_arrays(f"{prefix}{k}."))
            out[f"{prefix}{k}.step"] = step.astype(np.float32)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> IntNet:
        if prefix + "exponents" not in arrays:
            raise IntNetError(f"no integer network stored under {prefix!r}")
        exps = [int(v) for v in arrays[prefix + "exponents"]]
        layers = [IntConv.from_arrays(arrays, f"{prefix}{k}.") for k in range(len(exps) - 1)]
        steps = [np.asarray(arrays[f"{prefix}{k}.step"], np.float64) for k in range(len(layers))]
        if any(abs(e) > 40 for e in exps) or exps[-1] != ACT_BITS:
            raise IntNetError(f"stored network {prefix!r} has bad scales")
        for a, b in zip(layers, layers[1:], strict=False):
            if a.cout != b.cin:
                raise IntNetError(f"stored network {prefix!r}: layer sizes do not chain")
        return cls(layers, steps, exps)

    def load_into(self, seq: nn.Sequential) -> None:
        """Write the dequantised weights into the float ``seq`` they came from."""
        convs = [m for m in seq if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        if len(convs) != len(self.layers):
            raise IntNetError(f"{len(self.layers)} stored layers for {len(convs)} convolutions")
        for m, layer, step, f_in in zip(
            convs, self.layers, self.steps, self.exponents, strict=False
        ):
            _load_conv(m, layer, step, f_in)


def _load_conv(m: nn.Module, layer: IntConv, step: np.ndarray, f_in: int) -> None:
    tr = layer.geometry.transposed
    shape = (1, -1, 1, 1) if tr else (-1, 1, 1, 1)
    w = layer.weight * step.reshape(shape)
    if tuple(m.weight.shape) != w.shape:
        raise IntNetError(f"stored weight {w.shape} does not fit {tuple(m.weight.shape)}")
    with torch.no_grad():
        m.weight.copy_(torch.from_numpy(w))
        if m.bias is not None:
            m.bias.copy_(torch.from_numpy(layer.bias * step * 2.0**-f_in))


# ----------------------------------------------------------------------------- inverse GDN


SPARSE_GAMMA = 0.25  # the fused sparse inverse GDN where at most this share of gamma is non-zero


@dataclass
class IntIGDN:
    """``out = x * sqrt(beta + gamma @ x^2)`` on integers (see module doc)."""

    norm: IntConv  # 1x1: uint8 gamma on x^2 >> sq_shift, bias beta; mult 1, shift 0
    sq_shift: int
    root_bits: int  # r = floor(sqrt(norm * 4^root_bits))
    mult: int  # out = floor((x * r * mult + 2^(shift-1)) / 2^shift)
    shift: int
    out_bound: int
    gamma_step: float  # for load_into only
    f_in: int

    @classmethod
    def from_gdn(
        cls, gdn: nn.Module, f_in: int, f_out: int, in_bound: int, out_bound: int
    ) -> IntIGDN:
        if not gdn.inverse:
            raise IntNetError("only the inverse GDN has an integer form here")
        gamma = gdn.gamma().detach().double().numpy()
        beta = gdn.beta().detach().double().numpy()
        c = len(beta)
        g_step = float(gamma.max()) / 255 if gamma.max() > 0 else 1.0
        g_int = np.clip(np.round(gamma / g_step), 0, 255).astype(np.int64)
        # x^2 >> sq_shift small enough that the norm's 1x1 convolution is one exact float32 pass
        sq_bits = 2 * int(math.ceil(math.log2(in_bound + 1)))
        l1_bits = int(g_int.sum(1).max()).bit_length()
        sq_shift = max(0, sq_bits - 16, sq_bits + l1_bits - 23)
        unit = g_step * 2.0 ** (sq_shift - 2 * f_in)  # real value of one norm unit
        beta_int = np.maximum(np.round(beta / unit), 1).astype(np.int64)
        norm = IntConv(
            weight=g_int.reshape(c, c, 1, 1),
            bias=beta_int,
            mult=np.ones(c, dtype=np.int64),
            shift=0,
            geometry=ConvGeometry(1, 1, 0),
            in_bound=2 ** max(1, sq_bits - sq_shift) - 1,
            out_bound=2**31 - 1,
            relu=True,
        )
        peak = int(g_int.sum(1).max()) * norm.in_bound + int(beta_int.max())
        # a * r * mult < 2^53 with mult < 2^14: r < 2^(39 - a's bits); r ~ sqrt(peak) 2^root_bits
        a_bits = int(in_bound).bit_length()
        root_bits = max(
            0, min((52 - peak.bit_length()) // 2, 38 - a_bits - (peak.bit_length() + 1) // 2)
        )
        # out real = a 2^-f_in * r 2^-root_bits * sqrt(unit); out int = that * 2^f_out
        scale = 2.0 ** (f_out - f_in - root_bits) * math.sqrt(unit)
        mult, shift = fixed_multiplier(np.array([scale]), bits=14)
        r_peak = math.isqrt(peak << (2 * root_bits)) + 1
        if in_bound * r_peak * int(mult[0]) >= 2**53:
            raise IntNetError("IGDN product could exceed 2^53")
        return cls(norm, sq_shift, root_bits, int(mult[0]), shift, out_bound, g_step, f_in)

    def __call__(self, a: torch.Tensor, impl: str | None = None) -> torch.Tensor:
        """``a`` float32 integers -> float32 integers at the output scale."""
        if _use_c(impl, a):
            a = a.float().contiguous()
            sparse = self._sparse_rows() if impl != "dense" else None
            if sparse is not None:
                # one fused pass over gamma's non-zero entries (the same integers as below)
                out = torch.empty_like(a)
                args = (
                    a[0].numpy(), self.sq_shift, float(self.norm.in_bound), *sparse,
                    self.norm.bias, 4.0**self.root_bits, self.mult, self.shift, self.out_bound,
                    out[0].numpy(),
                )  # fmt: skip
                by_channels(_ext._intnet.igdn_sparse, args, a.shape[1], a.numel())
                return out
            # floor(a * a * 2^-sq_shift) clamped to the norm's input bound (exact: a^2 < 2^24),
            # so the norm's product needs no clamping pass of its own
            sq = torch.empty_like(a)
            args = (a[0].numpy(), self.sq_shift, float(self.norm.in_bound), sq[0].numpy())
            by_channels(_ext._intnet.square_shift, args, a.shape[1], a.numel())
            acc, factors = self.norm.raw(sq, bounded=True)
            out = torch.empty_like(a)
            args = (
                acc[0].contiguous().numpy(), factors, self.norm.bias, a[0].numpy(),
                4.0**self.root_bits, self.mult, self.shift, self.out_bound, out[0].numpy(),
            )  # fmt: skip
            by_channels(_ext._intnet.igdn, args, a.shape[1], a.numel())
            return out
        a = a.double()
        sq = torch.floor(a * a * 2.0**-self.sq_shift)
        n = self.norm.accumulate(sq) + torch.from_numpy(self.norm.bias.astype(np.float64)).view(
            1, -1, 1, 1
        )
        r = torch.floor(torch.sqrt(n.clamp_min(0) * 4.0**self.root_bits))
        out = requantize(a * r, np.array([self.mult]), self.shift)
        return out.clamp_(-self.out_bound, self.out_bound).float()

    def _sparse_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """gamma's rows in CSR form (starts, columns, values as float64) where at most
        ``SPARSE_GAMMA`` of its entries are non-zero (trained gammas are nearly diagonal), for
        the fused C kernel; None where the dense product is the cheaper one."""
        cache = self.norm._cache
        if "sparse" not in cache:
            w = self.norm.weight.reshape(self.norm.cout, -1).astype(np.int64)
            rows = None
            if np.count_nonzero(w) <= SPARSE_GAMMA * w.size:
                r, c = np.nonzero(w)
                ptr = np.searchsorted(r, np.arange(len(w) + 1)).astype(np.int64)
                rows = (ptr, c.astype(np.int64), w[r, c].astype(np.float64))
            cache["sparse"] = rows
        return cache["sparse"]

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        out = self.norm.to_arrays(prefix + "norm.")
        out[prefix + "norm.weight"] = self.norm.weight.astype(np.uint8)
        out[prefix + "meta"] = np.array(
            [self.sq_shift, self.root_bits, self.mult, self.shift, self.out_bound, self.f_in],
            dtype=np.int64,
        )
        out[prefix + "gamma_step"] = np.array([self.gamma_step], dtype=np.float64)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> IntIGDN:
        norm = IntConv.from_arrays(arrays, prefix + "norm.")
        sq, rb, mult, shift, ob, f_in = (int(v) for v in arrays[prefix + "meta"])
        if not (0 <= sq < 40 and 0 <= rb < 27 and 0 < mult < 2**15 and 0 <= shift < 63):
            raise IntNetError(f"stored IGDN {prefix!r} out of range")
        return cls(norm, sq, rb, mult, shift, ob, float(arrays[prefix + "gamma_step"][0]), f_in)

    def load_into(self, gdn: nn.Module) -> None:
        c = self.norm.cout
        unit = self.gamma_step * 2.0 ** (self.sq_shift - 2 * self.f_in)
        gamma = self.norm.weight.reshape(c, c) * self.gamma_step
        beta = self.norm.bias * unit
        with torch.no_grad():
            ped = gdn.gamma.pedestal
            gdn.gamma.param.copy_(torch.sqrt(torch.from_numpy(gamma) + ped))
            gdn.beta.param.copy_(torch.sqrt(torch.from_numpy(beta) + gdn.beta.pedestal))


# ----------------------------------------------------------------------------- synthesis


BLOCK_STRIDE = 16  # pixels per latent pixel (the block transform's size)
# Tiled decoding of large images: the residual stack's four 5x5 stride-2 deconvolutions reach
# 1.25 pixels of their input each, about 2.3 latent pixels in all; 4 covers it with margin.
HALO = 4
TILE = 64  # latent pixels per tile side: 1024 x 1024 pixels


@dataclass
class IntSynthesis:
    """Integer twin of ``HybridSynthesis``: y_hat -> uint8 pixels, exact everywhere.

    ``gain_mult`` (Q, M) int64 and ``gain_shift``: per quality and channel, the inverse gain and
    the 1/COEFF_SCALE of the transform, bringing ``y_hat * 2^ACT_BITS`` to the input scale
    2^exponent of both paths; ``block`` (the 16x16 transform) and ``residual`` (deconvolutions
    and inverse GDNs) both end at the pixel scale 255 * 2^PIXEL_BITS and are summed.
    """

    gain_mult: np.ndarray
    gain_shift: int
    in_bound: int
    block: IntConv
    residual: list  # IntConv | IntIGDN, alternating
    steps: list[np.ndarray]  # weight steps of block then the residual convolutions (load_into)
    exponents: list[int]  # input exponent of block/residual[0], then of each residual layer

    @classmethod
    def from_module(
        cls,
        synthesis: nn.Module,
        inverse_gains: torch.Tensor,
        peaks: list[float],
        act_bits: int = DEFAULT_ACT_BITS,
        weight_bits: int = DEFAULT_WEIGHT_BITS,
        block_bits: int = 10,
    ) -> IntSynthesis:
        """``synthesis``: a HybridSynthesis; ``inverse_gains`` (Q, M) float; ``peaks``: max |input|
        of residual[0..] (convolutions and GDNs in order; residual[0]'s is also the block's)."""
        from ..models.transforms import COEFF_SCALE

        mods = list(synthesis.residual)
        if len(peaks) != len(mods):
            raise IntNetError(f"{len(peaks)} calibrated peaks for {len(mods)} layers")
        bits = list(act_bits) if isinstance(act_bits, (list, tuple)) else [act_bits] * len(mods)
        bounds = [2 ** (b - 1) - 1 for b in bits]
        exps = [_scale_exponent(p, b) for p, b in zip(peaks, bits, strict=True)]
        bound = bounds[0]
        out_exp = PIXEL_BITS
        pixel = 2**23 - 1  # float32-exact; 2^23 / 2^PIXEL_BITS is far beyond 255
        # input: y_hat * 2^ACT_BITS * inverse gain / COEFF_SCALE at scale 2^exps[0]
        gm, gs = fixed_multiplier(
            inverse_gains.detach().double().numpy() / COEFF_SCALE * 2.0 ** (exps[0] - ACT_BITS), 20
        )
        block, bstep = int_conv(
            synthesis.block, exps[0], out_exp, bound, pixel, False, block_bits, out_gain=255.0
        )
        residual, steps = [], [bstep]
        conv_bits = iter(
            list(weight_bits)
            if isinstance(weight_bits, (list, tuple))
            else [weight_bits] * len(mods)
        )
        for n, m in enumerate(mods):
            last = n == len(mods) - 1
            f_out = out_exp if last else exps[n + 1]
            ob = pixel if last else bounds[n + 1]
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                layer, step = int_conv(
                    m,
                    exps[n],
                    f_out,
                    bounds[n],
                    ob,
                    False,
                    next(conv_bits),
                    out_gain=255.0 if last else 1.0,
                )
                residual.append(layer)
                steps.append(step)
            elif getattr(m, "inverse", False):
                residual.append(IntIGDN.from_gdn(m, exps[n], f_out, bounds[n], ob))
            else:
                raise IntNetError(f"synthesis layer {type(m).__name__} has no integer form")
        return cls(gm, gs, bound, block, residual, steps, exps)

    def __call__(self, y_hat: torch.Tensor, qi: int, tile: int = TILE) -> torch.Tensor:
        """``y_hat`` (1, M, h, w), multiples of 2^-ACT_BITS -> (1, 3, 16h, 16w) uint8.

        Latents larger than ``tile`` x ``tile`` are decoded tile by tile, each with ``HALO``
        latent pixels of context on every side that has a neighbour; the result is the same
        integers as one pass (every layer is exact and the stack's reach is below the halo),
        and memory stays that of one tile.
        """
        h, w = y_hat.shape[-2:]
        if h <= tile and w <= tile:
            return self._decode(y_hat, qi)
        s = BLOCK_STRIDE
        out = torch.empty((1, 3, s * h, s * w), dtype=torch.uint8)
        for r0 in range(0, h, tile):
            for c0 in range(0, w, tile):
                r1, c1 = min(r0 + tile, h), min(c0 + tile, w)
                a0, b0 = max(r0 - HALO, 0), max(c0 - HALO, 0)
                a1, b1 = min(r1 + HALO, h), min(c1 + HALO, w)
                part = self._decode(y_hat[..., a0:a1, b0:b1], qi)
                out[..., s * r0 : s * r1, s * c0 : s * c1] = part[
                    ..., s * (r0 - a0) : s * (r1 - a0), s * (c0 - b0) : s * (c1 - b0)
                ]
        return out

    def _decode(self, y_hat: torch.Tensor, qi: int) -> torch.Tensor:
        with torch.no_grad():
            y = torch.round(y_hat.double() * 2.0**ACT_BITS)  # exact: already integers
            a = requantize(y, self.gain_mult[qi], self.gain_shift)
            a.clamp_(-self.in_bound, self.in_bound)
            out = self.block(a)
            for layer in self.residual:
                a = layer(a)
            out += a
            out += 127.5 * 2**PIXEL_BITS + 2 ** (PIXEL_BITS - 1)
            out = torch.floor(out * 2.0**-PIXEL_BITS).clamp_(0, 255)
        return out.to(torch.uint8)

    # -- storage ------------------------------------------------------------------------------
    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        out = {
            prefix + "gain_mult": self.gain_mult.astype(np.int64),
            prefix + "meta": np.array([self.gain_shift, self.in_bound], dtype=np.int64),
            prefix + "exponents": np.array(self.exponents, dtype=np.int64),
            prefix + "kinds": np.array([isinstance(m, IntIGDN) for m in self.residual], np.int64),
        }
        out.update(self.block.to_arrays(prefix + "block."))
        out[prefix + "block.step"] = self.steps[0].astype(np.float32)
        k = 1
        for n, layer in enumerate(self.residual):
            out.update(layer.to_arrays(f"{prefix}res{n}."))
            if isinstance(layer, IntConv):
                out[f"{prefix}res{n}.step"] = self.steps[k].astype(np.float32)
                k += 1
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> IntSynthesis:
        try:
            gs, ib = (int(v) for v in arrays[prefix + "meta"])
            kinds = [int(v) for v in arrays[prefix + "kinds"]]
            exps = [int(v) for v in arrays[prefix + "exponents"]]
            block = IntConv.from_arrays(arrays, prefix + "block.")
            steps = [np.asarray(arrays[prefix + "block.step"], np.float64)]
            residual = []
            for n, kind in enumerate(kinds):
                p = f"{prefix}res{n}."
                if kind:
                    residual.append(IntIGDN.from_arrays(arrays, p))
                else:
                    residual.append(IntConv.from_arrays(arrays, p))
                    steps.append(np.asarray(arrays[p + "step"], np.float64))
            gm = np.asarray(arrays[prefix + "gain_mult"], dtype=np.int64)
        except (KeyError, ValueError) as exc:
            raise IntNetError(f"stored synthesis {prefix!r} is incomplete: {exc}") from None
        if gm.ndim != 2 or gm.shape[1] != block.cin or not 0 <= gs < 63 or len(exps) != len(kinds):
            raise IntNetError(f"stored synthesis {prefix!r} is inconsistent")
        return cls(gm, gs, ib, block, residual, steps, exps)

    def load_into(self, synthesis: nn.Module) -> None:
        """Dequantised weights back into a float ``HybridSynthesis`` (training warm starts)."""
        _load_conv(synthesis.block, self.block, self.steps[0], self.exponents[0])
        k = 1
        for n, (m, layer) in enumerate(zip(synthesis.residual, self.residual, strict=True)):
            if isinstance(layer, IntIGDN):
                layer.load_into(m)
            else:
                _load_conv(m, layer, self.steps[k], self.exponents[n])
                k += 1


# ----------------------------------------------------------------------------- calibration


class PeakRecorder:
    """Forward pre-hooks recording max |input| of chosen modules over calibration batches."""

    def __init__(self, modules: dict[str, nn.Module]):
        self.peaks = dict.fromkeys(modules, 0.0)
        self._handles = [
            m.register_forward_pre_hook(self._hook(name)) for name, m in modules.items()
        ]

    def _hook(self, name: str):
        def hook(_module, args):
            self.peaks[name] = max(self.peaks[name], float(args[0].detach().abs().max()))

        return hook

    def close(self) -> None:
        for h in self._handles:
            h.remove()

    def __enter__(self) -> PeakRecorder:
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False
