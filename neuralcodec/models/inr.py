"""Overfitted image representation of the Cool-chic / C3 family (float training model).

One small model is fitted to one image. Its pieces::

    latent grids  y_0 (H x W), y_1 (H/2 x W/2), ..., y_{L-1} (H/2^(L-1) ...)   one channel each
        |  integers once quantised; coded with the ARM below
        v
    upsampler     s_{L-1} = y_{L-1};  s_{l-1} = [y_{l-1}, up2_l(s_l)]   (separable 8-tap, x2)
        |  s_0: L channels at full resolution
        v
    synthesis     1x1 convs (L -> hidden ... -> 3), then 3x3 residual convs on the 3 channels
        |
        v
    RGB in [0, 1]

    ARM (rate):   for every latent, K causal neighbours of the same grid -> MLP -> (mu, log b)
                  p(y) = Laplace(mu, b) integrated over [y - 1/2, y + 1/2]

Training replaces rounding by soft-rounding plus Kumaraswamy noise (annealed towards uniform
noise and a sharp rounding), then by straight-through rounding. The exact integer twin used for
coding lives in ``inr_fixed``. The hand-written training kernels (causal contexts, block-wise
1x1 layers, fused Laplace rate) live in ``neuralcodec.kernels`` with their references.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .. import kernels
from ..kernels.laplace import LOG_SCALE_MAX as LOG_SCALE_MAX  # re-exported
from ..kernels.laplace import LOG_SCALE_MIN as LOG_SCALE_MIN
from ..kernels.laplace import laplace_bits as laplace_bits

# Causal neighbourhoods (dy >= 0 rows above, dx columns right; dy == 0 only left neighbours).
# Every neighbour (dy, dx) satisfies dx < WAVEFRONT_SLOPE * dy for dy > 0, so the latents with
# the same  x + WAVEFRONT_SLOPE * y  never depend on each other.
NEIGHBOURHOODS: dict[int, tuple[tuple[int, int], ...]] = {
    8: ((0, -1), (0, -2), *((1, d) for d in range(-2, 3)), (2, 0)),
    16: (
        *((0, -d) for d in range(1, 4)),
        *((1, d) for d in range(-3, 4)),
        *((2, d) for d in range(-2, 3)),
        (3, 0),
    ),
    24: (
        *((0, -d) for d in range(1, 5)),
        *((1, d) for d in range(-3, 4)),
        *((2, d) for d in range(-3, 4)),
        *((3, d) for d in range(-2, 3)),
        (4, 0),
    ),
}
WAVEFRONT_SLOPE = 4


@dataclass(frozen=True)
class InrConfig:
    """Architecture of one fitted model; written into the file header to rebuild the decoder."""

    levels: int = 7
    arm_context: int = 16
    arm_hidden: int = 16
    arm_layers: int = 2
    syn_hidden: tuple[int, ...] = (40,)
    syn_residual: int = 2

    def __post_init__(self) -> None:
        if not 1 <= self.levels <= 10:
            raise ValueError(f"levels must be in 1..10, got {self.levels}")
        if self.arm_context not in NEIGHBOURHOODS:
            raise ValueError(f"arm_context must be one of {sorted(NEIGHBOURHOODS)}")
        if not (1 <= self.arm_hidden <= 64 and 1 <= self.arm_layers <= 4):
            raise ValueError("arm_hidden must be in 1..64 and arm_layers in 1..4")
        if len(self.syn_hidden) > 4 or any(not 1 <= h <= 128 for h in self.syn_hidden):
            raise ValueError("syn_hidden: at most 4 layers of 1..128 channels")
        if not 0 <= self.syn_residual <= 4:
            raise ValueError("syn_residual must be in 0..4")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["syn_hidden"] = list(self.syn_hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> InrConfig:
        try:
            return cls(
                levels=int(d["levels"]),
                arm_context=int(d["arm_context"]),
                arm_hidden=int(d["arm_hidden"]),
                arm_layers=int(d["arm_layers"]),
                syn_hidden=tuple(int(h) for h in d["syn_hidden"]),
                syn_residual=int(d["syn_residual"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"incomplete INR architecture: {exc}") from None


def grid_shapes(height: int, width: int, levels: int) -> list[tuple[int, int]]:
    """Sizes of the latent grids: level ``l`` is ``ceil(H / 2^l) x ceil(W / 2^l)``."""
    return [(-(-height // 2**k), -(-width // 2**k)) for k in range(levels)]


# ----------------------------------------------------------------------------- quantisation


def soft_round(x: torch.Tensor, temperature: float) -> torch.Tensor:
    """Differentiable rounding: -> ``round(x)`` as ``temperature`` -> 0, -> ``x`` as it grows."""
    m = torch.floor(x) + 0.5
    r = x - m
    a = 1.0 / temperature
    return m + 0.5 * torch.tanh(a * r) / math.tanh(a / 2)


def kumaraswamy_noise(like: torch.Tensor, a: float) -> torch.Tensor:
    """Noise in [-1/2, 1/2); uniform for ``a == 1``, peaked around 0 for ``a > 1``."""
    b = (2.0**a * (a - 1) + 1) / a
    u = torch.rand_like(like).clamp(1e-6, 1 - 1e-6)
    return (1 - (1 - u) ** (1 / b)) ** (1 / a) - 0.5


def quantize_latent(y: torch.Tensor, mode: str, temperature: float, noise_a: float) -> torch.Tensor:
    """``mode``: 'soft' (soft-round + noise + soft-round), 'ste' (rounding) or 'hard'."""
    if mode == "soft":
        return soft_round(soft_round(y, temperature) + kumaraswamy_noise(y, noise_a), temperature)
    if mode == "ste":
        return y + (torch.round(y) - y).detach()
    return torch.round(y)


# ----------------------------------------------------------------------------- networks


def causal_contexts(
    grids: list[torch.Tensor], offsets: tuple[tuple[int, int], ...]
) -> torch.Tensor:
    """Grids (1, 1, h_l, w_l) -> (K, sum h_l * w_l): each latent's K causal neighbours (zeros
    outside its grid), the grids side by side."""
    return kernels.causal_contexts([g[0, 0] for g in grids], offsets)


class Arm(nn.Module):
    """Autoregressive model: K causal neighbours -> (mu, log_scale) of a Laplace."""

    def __init__(self, cfg: InrConfig):
        super().__init__()
        dims = [cfg.arm_context] + [cfg.arm_hidden] * cfg.arm_layers
        self.hidden = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True)
        )
        self.out = nn.Linear(dims[-1], 2)
        nn.init.zeros_(self.out.weight)
        with torch.no_grad():
            self.out.bias.copy_(torch.tensor([0.0, math.log(0.5)]))

    def forward(self, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``ctx`` (K, n) -> ``mu``, ``log_scale`` (n,) each."""
        params = []
        for layer in (*self.hidden, self.out):
            params += [layer.weight, layer.bias]
        mu, log_scale = kernels.pointwise_mlp(ctx, params)
        return mu, log_scale


def laplace_rate(y: torch.Tensor, mu: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """Total bits of flat ``y`` given flat ``mu``, ``log_scale``; equals ``laplace_bits(...).sum()``."""
    return kernels.laplace_rate(y, mu, log_scale)


class Upsampler(nn.Module):
    """Per level, a learned symmetric 8-tap x2 interpolation filter (4 taps per phase)."""

    def __init__(self, levels: int):
        super().__init__()
        init = torch.tensor([-0.0234375, 0.2265625, 0.8671875, -0.0703125])  # ~bicubic phase 1/4
        self.taps = nn.Parameter(init.repeat(max(levels - 1, 1), 1))

    @staticmethod
    def up2_1d(x: torch.Tensor, taps: torch.Tensor, dim: int) -> torch.Tensor:
        """x2 along ``dim`` (-1 or -2) of a (1, C, h, w) tensor, replicate borders."""
        if dim == -2:
            return Upsampler.up2_1d(x.transpose(-1, -2), taps, -1).transpose(-1, -2)
        c = x.shape[1]
        p = F.pad(x, (2, 2, 0, 0), mode="replicate")
        k = torch.stack([taps, taps.flip(0)])  # even phase, odd phase
        k = k[:, None, None, :].repeat(c, 1, 1, 1)  # (2C, 1, 1, 4), grouped per channel
        out = F.conv2d(p, k, groups=c)  # (1, 2C, h, w + 1)
        w = x.shape[-1]
        even, odd = out[:, 0::2, :, :w], out[:, 1::2, :, 1 : w + 1]
        return torch.stack([even, odd], dim=-1).flatten(-2)

    def forward(self, grids: list[torch.Tensor]) -> torch.Tensor:
        s = grids[-1]
        for lvl in range(len(grids) - 1, 0, -1):
            t = self.taps[lvl - 1]
            up = self.up2_1d(self.up2_1d(s, t, -1), t, -2)
            h, w = grids[lvl - 1].shape[-2:]
            s = torch.cat([grids[lvl - 1], up[..., :h, :w]], dim=1)
        return s


class Synthesis(nn.Module):
    """1x1 convs (ReLU between) to 3 channels, then 3x3 residual convs (zero-initialised)."""

    def __init__(self, cfg: InrConfig):
        super().__init__()
        dims = [cfg.levels, *cfg.syn_hidden, 3]
        self.pointwise = nn.ModuleList(
            nn.Conv2d(a, b, 1) for a, b in zip(dims[:-1], dims[1:], strict=True)
        )
        self.residual = nn.ModuleList(nn.Conv2d(3, 3, 3) for _ in range(cfg.syn_residual))
        with torch.no_grad():
            self.pointwise[-1].bias.fill_(0.5)
            for conv in self.residual:
                conv.weight.zero_()
                conv.bias.zero_()

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        # 1x1 convolutions as block-wise matrix products over (C, H*W): PyTorch's CPU convolution
        # takes a slow path for these few channels, and whole-image activations thrash the cache.
        if s.shape[0] != 1:
            raise ValueError("the INR synthesis decodes one image at a time")
        h, w = s.shape[-2:]
        params = []
        for conv in self.pointwise:
            params += [conv.weight.reshape(conv.weight.shape[0], -1), conv.bias]
        s = kernels.pointwise_mlp(s.reshape(s.shape[1], h * w), params).reshape(1, -1, h, w)
        for k, conv in enumerate(self.residual):
            # channels-last lets the 3-channel 3x3 convolution use the fast (oneDNN) kernels:
            # 3.5x faster forward + backward than the default layout, measured at 768x512.
            p = F.pad(s, (1, 1, 1, 1), mode="replicate").contiguous(
                memory_format=torch.channels_last
            )
            weight = conv.weight.contiguous(memory_format=torch.channels_last)
            s = s + F.conv2d(p, weight, conv.bias)
            if k + 1 < len(self.residual):
                s = F.relu(s)
        return s


class InrModel(nn.Module):
    """Latent grids + ARM + upsampler + synthesis of one image."""

    def __init__(self, cfg: InrConfig, height: int, width: int):
        super().__init__()
        self.cfg = cfg
        self.shape = (height, width)
        self.offsets = NEIGHBOURHOODS[cfg.arm_context]
        self.latents = nn.ParameterList(
            nn.Parameter(torch.zeros(1, 1, h, w)) for h, w in grid_shapes(height, width, cfg.levels)
        )
        self.arm = Arm(cfg)
        self.upsampler = Upsampler(cfg.levels)
        self.synthesis = Synthesis(cfg)

    def network_modules(self) -> dict[str, nn.Module]:
        return {"arm": self.arm, "ups": self.upsampler, "syn": self.synthesis}

    def decode_grids(self, grids: list[torch.Tensor]) -> torch.Tensor:
        return self.synthesis(self.upsampler(grids))

    def rate_bits(self, grids: list[torch.Tensor]) -> torch.Tensor:
        ctx = causal_contexts(grids, self.offsets)
        values = torch.cat([g.reshape(-1) for g in grids])
        mu, log_scale = self.arm(ctx)
        return laplace_rate(values, mu, log_scale)

    def forward(self, mode: str, temperature: float = 0.3, noise_a: float = 1.0):
        """-> (reconstruction (1, 3, H, W), latent rate in bits)."""
        grids = [quantize_latent(y, mode, temperature, noise_a) for y in self.latents]
        return self.decode_grids(grids), self.rate_bits(grids)


# ----------------------------------------------------------------------------- complexity


def mac_per_pixel(cfg: InrConfig, height: int, width: int) -> dict[str, float]:
    """Multiply-accumulates of the decoder per image pixel, counted from the layer shapes."""
    shapes = grid_shapes(height, width, cfg.levels)
    pixels = height * width
    latents = sum(h * w for h, w in shapes)
    dims = [cfg.arm_context] + [cfg.arm_hidden] * cfg.arm_layers + [2]
    arm = sum(a * b for a, b in zip(dims[:-1], dims[1:], strict=True)) * latents / pixels
    ups = 0.0
    for lvl in range(cfg.levels - 1, 0, -1):
        channels = cfg.levels - lvl
        h, w = shapes[lvl]
        ups += channels * 4 * (h * 2 * w + 2 * h * 2 * w)  # horizontal then vertical pass
    syn_dims = [cfg.levels, *cfg.syn_hidden, 3]
    syn = sum(a * b for a, b in zip(syn_dims[:-1], syn_dims[1:], strict=True))
    syn += cfg.syn_residual * 3 * 3 * 9
    out = {"arm": arm, "upsampler": ups / pixels, "synthesis": float(syn)}
    out["total"] = sum(out.values())
    return out
