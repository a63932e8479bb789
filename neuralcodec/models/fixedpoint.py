"""Exact integer inference for the networks that choose coding distributions.

Whatever decides which CDF the range decoder uses (hyper-decoder, context networks) must give
the same answer on every machine and thread count. A ``FixedPointNet`` runs a stack of
convolutions / transposed convolutions / ReLUs on *integers*:

* weights are stored as integers ``round(w * 2^wbits)`` (``wbits`` chosen per layer so the
  largest weight fits in 15 bits), biases at the accumulator's scale;
* activations are integers at scale ``2^ACT_BITS`` and clamped to ``+-ACT_LIMIT``;
* each layer accumulates in float64 holding exact integers: with |activation| < 2^22,
  |weight| < 2^15 and fan-in < 2^14, every partial sum stays below 2^51 < 2^53, so the sum is
  exact whatever the summation order, BLAS or thread count;
* the accumulator is brought back to ``2^ACT_BITS`` by a rounding right shift
  (``floor(x / 2^s + 1/2)``, exact in float64).

The result is bit-identical everywhere, and within ~2^-10 of the float network.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

ACT_BITS = 10
ACT_LIMIT = 2**22 - 1
WEIGHT_MAGNITUDE_BITS = 15
MAX_FAN_IN = 2**14


class FixedPointError(ValueError):
    """A network that cannot run exactly in fixed point, or stored layers that are inconsistent."""


@dataclass
class FixedLayer:
    weight: torch.Tensor  # float64 holding integers
    bias: torch.Tensor  # float64 holding integers, at scale 2^(ACT_BITS + wbits)
    wbits: int
    transposed: bool
    stride: int
    padding: int
    output_padding: int
    relu: bool

    def __call__(self, a: torch.Tensor) -> torch.Tensor:
        if self.transposed:
            acc = F.conv_transpose2d(
                a, self.weight, self.bias, self.stride, self.padding, self.output_padding
            )
        else:
            acc = F.conv2d(a, self.weight, self.bias, self.stride, self.padding)
        if self.relu:
            acc = acc.clamp_min(0)
        out = torch.floor(acc * 2.0**-self.wbits + 0.5)
        return out.clamp_(-ACT_LIMIT, ACT_LIMIT)


def _weight_bits(w: torch.Tensor) -> int:
    peak = float(w.abs().max())
    if peak == 0:
        return WEIGHT_MAGNITUDE_BITS
    bits = WEIGHT_MAGNITUDE_BITS - int(np.ceil(np.log2(peak + 1e-12))) - 1
    return max(0, min(bits, 24))


def _fan_in(layer: nn.Conv2d | nn.ConvTranspose2d) -> int:
    (kh, kw), (sh, sw) = layer.kernel_size, layer.stride
    if isinstance(layer, nn.ConvTranspose2d):
        return layer.in_channels * -(-kh // sh) * -(-kw // sw)
    return layer.in_channels * kh * kw


class FixedPointNet:
    """Integer twin of an ``nn.Sequential`` of Conv2d / ConvTranspose2d / ReLU."""

    def __init__(self, layers: list[FixedLayer]):
        self.layers = layers

    @classmethod
    def from_sequential(cls, seq: nn.Sequential) -> FixedPointNet:
        modules = list(seq)
        layers = []
        for i, m in enumerate(modules):
            if isinstance(m, nn.ReLU):
                continue
            if not isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                raise FixedPointError(f"layer {i} ({type(m).__name__}) has no fixed-point form")
            if _fan_in(m) > MAX_FAN_IN:
                raise FixedPointError(f"layer {i}: fan-in {_fan_in(m)} > {MAX_FAN_IN}")
            relu = i + 1 < len(modules) and isinstance(modules[i + 1], nn.ReLU)
            w = m.weight.detach().double()
            wbits = _weight_bits(w)
            bias = m.bias.detach().double() if m.bias is not None else torch.zeros(w.shape[0])
            layers.append(
                FixedLayer(
                    weight=torch.round(w * 2.0**wbits),
                    bias=torch.round(bias * 2.0 ** (ACT_BITS + wbits)),
                    wbits=wbits,
                    transposed=isinstance(m, nn.ConvTranspose2d),
                    stride=m.stride[0],
                    padding=m.padding[0],
                    output_padding=m.output_padding[0] if isinstance(m, nn.ConvTranspose2d) else 0,
                    relu=relu,
                )
            )
        return cls(layers)

    def __call__(self, a: torch.Tensor) -> torch.Tensor:
        """``a``: float64 integers at scale 2^ACT_BITS -> output at the same scale."""
        with torch.no_grad():
            for layer in self.layers:
                a = layer(a)
        return a

    # -- storage -------------------------------------------------------------------------
    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        out = {}
        for k, L in enumerate(self.layers):
            p = f"{prefix}{k}."
            # |weight| < 2^WEIGHT_MAGNITUDE_BITS = 2^15: int16 holds it (loads back as float64).
            out[p + "weight"] = L.weight.numpy().astype(np.int16)
            out[p + "bias"] = L.bias.numpy().astype(np.int64)
            out[p + "meta"] = np.array(
                [L.wbits, int(L.transposed), L.stride, L.padding, L.output_padding, int(L.relu)],
                dtype=np.int32,
            )
        return out

    def load_into(self, seq: nn.Sequential) -> None:
        """Write the dequantised weights (``w / 2^wbits``) into the float ``seq`` it came from.

        Shipped files store only this integer form of such networks; training-side code that
        warm-starts from them gets the float network back through this.
        """
        convs = [m for m in seq if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        if len(convs) != len(self.layers):
            raise FixedPointError(f"{len(self.layers)} stored layers for {len(convs)} convolutions")
        with torch.no_grad():
            for m, L in zip(convs, self.layers, strict=True):
                if m.weight.shape != L.weight.shape:
                    raise FixedPointError(f"stored weight {tuple(L.weight.shape)} does not fit")
                m.weight.copy_(L.weight / 2.0**L.wbits)
                if m.bias is not None:
                    m.bias.copy_(L.bias / 2.0 ** (ACT_BITS + L.wbits))

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> FixedPointNet:
        layers, k = [], 0
        while f"{prefix}{k}.meta" in arrays:
            p = f"{prefix}{k}."
            wbits, tr, stride, pad, opad, relu = (int(v) for v in arrays[p + "meta"])
            w = torch.from_numpy(np.asarray(arrays[p + "weight"], dtype=np.float64))
            b = torch.from_numpy(np.asarray(arrays[p + "bias"], dtype=np.float64))
            if w.ndim != 4 or b.shape[0] != (w.shape[1] if tr else w.shape[0]):
                raise FixedPointError(f"stored layer {prefix}{k} has inconsistent shapes")
            if float(w.abs().max()) >= 2**WEIGHT_MAGNITUDE_BITS or not 0 <= wbits <= 24:
                raise FixedPointError(f"stored layer {prefix}{k} is out of the exact range")
            layers.append(FixedLayer(w, b, wbits, bool(tr), stride, pad, opad, bool(relu)))
            k += 1
        if not layers:
            raise FixedPointError(f"no fixed-point layers stored under {prefix!r}")
        return cls(layers)


def to_fixed(x: torch.Tensor) -> torch.Tensor:
    """Float tensor -> float64 integers at scale 2^ACT_BITS (rounded, clamped)."""
    return torch.floor(x.double() * 2.0**ACT_BITS + 0.5).clamp_(-ACT_LIMIT, ACT_LIMIT)
