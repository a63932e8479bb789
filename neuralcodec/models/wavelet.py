"""A wavelet + autoencoder image model whose encoder is cheap enough for a camera.

Learned codecs usually spend their compute in the analysis transform; this one inverts that.
The encoder is a fixed wavelet packet transform and one learned linear projection; the decoder
is a shallow non-linear network back to the subbands and the exact inverse transform::

    x (3,H,W) --packet analysis, LeGall 5/3, L levels--> s (3*4^L, H/2^L, W/2^L), normalised
              --1x1 projection P (PCA init) * LATENT_SCALE--> y (C, H/2^L, W/2^L)
    y * gain[q] --mean-scale hyperprior (z at 1/4 of y's resolution)--> y_hat
    y_hat / gain[q] --linear path B (pseudo-inverse of P) + residual 3x3 ReLU stack (zero init)
                    --> s_hat --packet synthesis--> x_hat

At step 0 (``init_from_crops``), P holds the leading principal components of the training
crops' subband vectors and B its transpose, and the residual's last layer is zero: the model
is already a KLT transform codec, and training only improves it.

The 5/3 lifting steps have an integer form (``packet_synthesis_int``: floors of halves and
quarters), so the decoder's last stage is exact integer arithmetic; the decoder networks become
``compress/intconv.py`` layers after training (``WaveletSynthesisInt``), and the
hyper-synthesis an ``IntNet``, so decoded pixels are identical on every machine.

Encoder cost per pixel (``encoder_macs``): the lifting (a few additions per sample), the
projection (3*4^L*C / 4^L = 3C multiply-adds), the hyper-analysis and the hyper-synthesis
(the encoder needs the means to quantise around them).

The shipped model (``WaveletConfig`` defaults) has 3 levels: 192 subbands at 1/8 resolution
projected to C = 96 channels (1.5 values per pixel; the KLT alone reconstructs training crops at
41 dB). With 2 levels (48 subbands at 1/4, C = 24) the low-pass thumbnail, which a hyperprior
cannot predict spatially, cost four times as many samples (docs/wavelet.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from ..entropy.models import FactorizedDensity, GaussianConditional, quantize_noise, quantize_ste
from .frozen import Frozen, HyperParts, family
from .hyperprior import DEFAULT_LAMBDAS, GainUnits

KIND = "wavelet"

# One unit of y is 1/LATENT_SCALE of the normalised subband range (pixels in [-1/2, 1/2]).
LATENT_SCALE = 16.0
# Normalisation of one 1-D split: the 5/3 low-pass has DC gain 1, the high-pass removes DC; these
# bring both closer to an orthonormal transform, so that subband MSE ~ pixel MSE.
NORM_LOW = math.sqrt(2.0)
NORM_HIGH = 1.0 / math.sqrt(2.0)


# ----------------------------------------------------------------------------- 5/3 lifting


def _add_neighbour(acc: torch.Tensor, v: torch.Tensor, dim: int, step: int) -> torch.Tensor:
    """acc += v[n + step] along ``dim`` (step = +1 or -1), with symmetric extension at the
    ends (v[N] = v[N-1], v[-1] = v[0]); in place, no copies of the shifted signal."""
    n = v.shape[dim]
    if step > 0:
        acc.narrow(dim, 0, n - 1).add_(v.narrow(dim, 1, n - 1))
        acc.narrow(dim, n - 1, 1).add_(v.narrow(dim, n - 1, 1))
    else:
        acc.narrow(dim, 1, n - 1).add_(v.narrow(dim, 0, n - 1))
        acc.narrow(dim, 0, 1).add_(v.narrow(dim, 0, 1))
    return acc


def _pair_sum(v: torch.Tensor, dim: int, step: int) -> torch.Tensor:
    """v[n] + v[n + step] along ``dim`` (symmetric extension)."""
    return _add_neighbour(v.clone(), v, dim, step)


def _evens_odds(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    dim %= x.ndim
    n = x.shape[dim]
    if n % 2:
        raise ValueError(f"wavelet split of an odd length {n}")
    y = x.unflatten(dim, (n // 2, 2))
    return y.select(dim + 1, 0), y.select(dim + 1, 1)


def _interleave(e: torch.Tensor, o: torch.Tensor, dim: int) -> torch.Tensor:
    dim %= e.ndim
    return torch.stack([e, o], dim + 1).flatten(dim, dim + 1)


def split53(x: torch.Tensor, dim: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """One 5/3 analysis step along ``dim`` (even length): (low, high), float."""
    e, o = _evens_odds(x, dim)
    d = o - 0.5 * _pair_sum(e, dim, 1)
    s = e + 0.25 * _pair_sum(d, dim, -1)
    return s, d


def merge53(s: torch.Tensor, d: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Inverse of ``split53``."""
    e = s - 0.25 * _pair_sum(d, dim, -1)
    o = d + 0.5 * _pair_sum(e, dim, 1)
    return _interleave(e, o, dim)


def split53_int(x: torch.Tensor, dim: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer 5/3 analysis (floors): the reversible form of ``split53``."""
    e, o = _evens_odds(x, dim)
    d = o - (_pair_sum(e, dim, 1) >> 1)
    s = e + ((_pair_sum(d, dim, -1) + 2) >> 2)
    return s, d


def merge53_int(s: torch.Tensor, d: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Exact inverse of ``split53_int``: integer additions and arithmetic shifts only."""
    e = s - ((_pair_sum(d, dim, -1) + 2) >> 2)
    o = d + (_pair_sum(e, dim, 1) >> 1)
    return _interleave(e, o, dim)


def _split2d(x, split):
    """(B, C, H, W) -> (B, 4C, H/2, W/2): children LL, LH, HL, HH of each channel in turn."""
    lo, hi = split(x, -2)  # along H
    ll, lh = split(lo, -1)  # along W
    hl, hh = split(hi, -1)
    b, c, h, w = ll.shape
    return torch.stack([ll, lh, hl, hh], 2).reshape(b, 4 * c, h, w)


def _merge2d(s, merge):
    b, c4, h, w = s.shape
    ll, lh, hl, hh = s.reshape(b, c4 // 4, 4, h, w).unbind(2)
    return merge(merge(ll, lh, -1), merge(hl, hh, -1), -2)


def subband_norms(levels: int, channels: int = 3) -> torch.Tensor:
    """Per-subband normalisation factor (3*4^levels,) in the packet order of ``_split2d``."""
    g = torch.ones(channels)
    one = torch.tensor(
        [NORM_LOW * NORM_LOW, NORM_LOW * NORM_HIGH, NORM_HIGH * NORM_LOW, NORM_HIGH**2]
    )
    for _ in range(levels):
        g = (g[:, None] * one[None, :]).reshape(-1)
    return g


def packet_analysis(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Full wavelet packet (every subband split again), normalised; H, W multiples of 2^levels.

    (Strided depthwise convolutions compute the same map but measured 7x slower on this CPU.)"""
    for _ in range(levels):
        x = _split2d(x, split53)
    return x * subband_norms(levels, x.shape[1] // 4**levels).to(x)[None, :, None, None]


def packet_synthesis(s: torch.Tensor, levels: int) -> torch.Tensor:
    """Inverse of ``packet_analysis`` (float)."""
    s = s / subband_norms(levels, s.shape[1] // 4**levels).to(s)[None, :, None, None]
    for _ in range(levels):
        s = _merge2d(s, merge53)
    return s


def packet_analysis_int(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Integer packet analysis (int64, not normalised): the reversible transform."""
    for _ in range(levels):
        x = _split2d(x, split53_int)
    return x


def packet_synthesis_int(s: torch.Tensor, levels: int) -> torch.Tensor:
    """Exact inverse of ``packet_analysis_int``; on any integer subbands it is the decoder's
    last stage (not normalised: the normalisation is folded into the integer networks)."""
    for _ in range(levels):
        s = _merge2d(s, merge53_int)
    return s


# ----------------------------------------------------------------------------- model


@dataclass
class WaveletConfig:
    kind: str = KIND
    levels: int = 3  # wavelet packet levels: 3*4^levels subbands at 1/2^levels resolution
    m: int = 96  # latent channels C
    n: int = 32  # hyper-latent channels
    hyper: int = 64  # hyper-network width
    width: int = 128  # decoder residual width
    depth: int = 3  # decoder residual hidden layers (3x3 conv + ReLU each)
    lambdas: tuple[float, ...] = field(default_factory=lambda: DEFAULT_LAMBDAS)

    @property
    def subbands(self) -> int:
        return 3 * 4**self.levels

    @property
    def stride(self) -> int:
        return 2**self.levels

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lambdas"] = list(self.lambdas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> WaveletConfig:
        d = dict(d)
        d["lambdas"] = tuple(d["lambdas"])
        return cls(**d)


class WaveletAnalysis(nn.Module):
    """x in [0, 1] -> y = LATENT_SCALE * P s, s the normalised packet subbands of x - 1/2."""

    def __init__(self, levels: int, subbands: int, m: int):
        super().__init__()
        self.levels = levels
        self.project = nn.Conv2d(subbands, m, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous() - 0.5  # NCHW rows for the lifting steps (images arrive as HWC views)
        return LATENT_SCALE * self.project(packet_analysis(x, self.levels))


def residual_stack(m: int, width: int, depth: int, out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    cin = m
    for _ in range(depth):
        layers += [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU(inplace=True)]
        cin = width
    layers.append(nn.Conv2d(cin, out, 3, padding=1))
    nn.init.zeros_(layers[-1].weight)
    nn.init.zeros_(layers[-1].bias)
    return nn.Sequential(*layers)


class WaveletSynthesis(nn.Module):
    """Dequantised latent -> subbands (linear path + residual ReLU stack) -> pixels in [0, 1]."""

    def __init__(self, levels: int, subbands: int, m: int, width: int, depth: int):
        super().__init__()
        self.levels = levels
        self.linear = nn.Conv2d(m, subbands, 1, bias=False)
        self.residual = residual_stack(m, width, depth, subbands)

    def subbands(self, y: torch.Tensor) -> torch.Tensor:
        """Normalised subbands of ``y`` (the dequantised latent, LATENT_SCALE units)."""
        y = y / LATENT_SCALE
        return self.linear(y) + self.residual(y)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return packet_synthesis(self.subbands(y), self.levels) + 0.5


def hyper_analysis(m: int, hyper: int, n: int) -> nn.Sequential:
    """y (1/2^L) -> z (1/2^(L+2)): a 4x4 patch projection and one 3x3 layer (encoder only)."""
    return nn.Sequential(
        nn.Conv2d(m, hyper, 4, stride=4),
        nn.LeakyReLU(inplace=True),
        nn.Conv2d(hyper, n, 3, padding=1),
    )


def hyper_synthesis(m: int, hyper: int, n: int) -> nn.Sequential:
    """z -> (scales, means) of y; ReLU only, so it has an exact integer twin."""
    return nn.Sequential(
        nn.ConvTranspose2d(n, hyper, 5, stride=2, padding=2, output_padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(hyper, hyper, 1),
        nn.ReLU(inplace=True),
        nn.ConvTranspose2d(hyper, 2 * m, 2, stride=2),
    )


class WaveletModel(nn.Module):
    """Training side; attribute names follow the hyperprior family (g_a, g_s, h_a, h_s, ...)."""

    def __init__(self, config: WaveletConfig):
        super().__init__()
        self.config = config
        c = config
        self.g_a = WaveletAnalysis(c.levels, c.subbands, c.m)
        self.g_s = WaveletSynthesis(c.levels, c.subbands, c.m, c.width, c.depth)
        self.h_a = hyper_analysis(c.m, c.hyper, c.n)
        self.h_s = hyper_synthesis(c.m, c.hyper, c.n)
        self.y_gain = GainUnits(c.lambdas, c.m, exponent=0.5)
        self.z_gain = GainUnits(c.lambdas, c.n, exponent=0.0)
        self.z_density = FactorizedDensity(c.n)
        self.y_conditional = GaussianConditional()

    @property
    def num_qualities(self) -> int:
        return len(self.config.lambdas)

    def hyper_params(self, z_hat: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, ...]:
        scales, means = self.h_s(z_hat * self.z_gain.inverse(q)).chunk(2, dim=1)
        return scales, means

    def forward(self, x: torch.Tensor, q: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x`` in [0, 1], (B, 3, H, W), H and W multiples of 4 * 2^levels; ``q`` (B,) int64."""
        y = self.g_a(x) * self.y_gain.gain(q)
        z = self.h_a(y) * self.z_gain.gain(q)
        likelihoods = {"z": self.z_density.likelihood(quantize_noise(z))}
        scales, means = self.hyper_params(quantize_ste(z), q)
        likelihoods["y"] = self.y_conditional.likelihood(quantize_noise(y), scales, means)
        y_hat = quantize_ste(y - means) + means
        x_hat = self.g_s(y_hat * self.y_gain.inverse(q))
        return {"x_hat": x_hat, "likelihoods": likelihoods}


@torch.no_grad()
def init_from_crops(model: WaveletModel, crops: torch.Tensor) -> torch.Tensor:
    """PCA (KLT) initialisation: P = leading eigenvectors of the subband vectors' second moment
    over ``crops`` (B, 3, H, W) in [0, 1]; B = P^T (its pseudo-inverse). Returns the eigenvalues,
    largest first."""
    s = packet_analysis(crops - 0.5, model.config.levels)
    v = s.permute(0, 2, 3, 1).reshape(-1, s.shape[1]).double()
    values, vectors = torch.linalg.eigh(v.T @ v / v.shape[0])
    values, vectors = values.flip(0), vectors.flip(1)
    basis = vectors[:, : model.config.m].T.float()  # (C, subbands), orthonormal rows
    model.g_a.project.weight.copy_(basis[:, :, None, None])
    model.g_s.linear.weight.copy_(basis.T[:, :, None, None])
    return values


# ----------------------------------------------------------------------------- frozen family


@family
class FrozenWavelet(HyperParts, Frozen):
    """The ``wavelet`` family: tables ``y``, ``z`` and ``zinv`` as the hyperprior family, the
    hyper-synthesis as an ``IntNet`` twin ``hs`` and the synthesis as the integer twin ``gs``
    (``compress/wavelet.py``). Files come from ``python -m neuralcodec.compress.wavelet``."""

    kinds = (KIND,)
    config_class, model_class = WaveletConfig, WaveletModel

    @classmethod
    def twin_modules(cls, config: WaveletConfig) -> dict[str, str]:
        return {"hs": "h_s", "gs": "g_s"}

    @classmethod
    def load_twin(cls, name: str, arrays: dict[str, np.ndarray], prefix: str):
        from ..compress.intnet import IntNet
        from ..compress.wavelet import WaveletSynthesisInt

        if name == "gs":
            return WaveletSynthesisInt.from_arrays(arrays, prefix)
        return IntNet.from_arrays(arrays, prefix)

    @classmethod
    def part_names(cls, config: WaveletConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return ("y", "z"), ("zinv",)

    @classmethod
    def integer_parts(cls, model: WaveletModel):
        return cls.hyper_integer_parts(model)

    @property
    def synthesis_int(self):
        return self.nets["gs"]


# ----------------------------------------------------------------------------- cost


def _conv_macs(m: nn.Module, out_positions: float) -> float:
    """Multiply-adds of one convolution per output position (transposed: per output position
    of the upsampled grid, counting only the taps that land there)."""
    k = m.kernel_size[0] * m.kernel_size[1]
    if isinstance(m, nn.ConvTranspose2d):
        k /= m.stride[0] * m.stride[1]
    return out_positions * m.in_channels * m.out_channels * k / m.groups


def encoder_macs(config: WaveletConfig) -> dict[str, float]:
    """Encoder multiply-adds (and lifting additions) per input pixel, by stage."""
    model = WaveletModel(config)
    s = config.stride
    # lifting: per 1-D split of n samples, n/2 predictions (1 mul + 2 adds) and n/2 updates;
    # count 2 operations per sample per 1-D split, 2 splits per level, on all 3 colour samples.
    wavelet = 3 * config.levels * 2 * 2.0
    y_pos = 1 / s**2
    ha = model.h_a
    hs = model.h_s
    out = {
        "wavelet (lifting ops)": wavelet,
        "projection": _conv_macs(model.g_a.project, y_pos),
        "hyper-analysis": _conv_macs(ha[0], y_pos / 16) + _conv_macs(ha[2], y_pos / 16),
        "hyper-synthesis": _conv_macs(hs[0], y_pos / 4)
        + _conv_macs(hs[2], y_pos / 4)
        + _conv_macs(hs[4], y_pos),
    }
    # format 2's spatial contexts (codecs/latent/spatial.py): per latent element 4 absolute
    # values, 3 additions, a shift, a clamp, a table look-up and the set offset (integer ops)
    out["contexts (integer ops)"] = CONTEXT_OPS * config.m * y_pos
    out["total"] = sum(out.values())
    return out


CONTEXT_OPS = 11


def decoder_macs(config: WaveletConfig) -> float:
    """Decoder multiply-adds per pixel (hyper-synthesis + linear path + residual stack)."""
    model = WaveletModel(config)
    y_pos = 1 / config.stride**2
    convs = [m for m in model.g_s.modules() if isinstance(m, nn.Conv2d)]
    total = sum(_conv_macs(m, y_pos) for m in convs)
    enc = encoder_macs(config)
    return total + enc["hyper-synthesis"] + enc["contexts (integer ops)"]
