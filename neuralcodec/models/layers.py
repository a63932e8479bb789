"""Small building blocks shared by the image transforms.

GDN (generalized divisive normalization, Balle et al. 2016) and its inverse, with the
non-negative reparametrisation of beta and gamma; convolution helpers with the usual
"same"-padding conventions for stride-2 down/up-sampling.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class NonNegative(nn.Module):
    """Stores ``sqrt(x + pedestal)`` and returns ``max(p, bound)^2 - pedestal``.

    Keeps GDN's beta and gamma non-negative while giving useful gradients near zero.
    """

    def __init__(self, init: torch.Tensor, minimum: float = 0.0, pedestal: float = 2**-18):
        super().__init__()
        self.pedestal = pedestal
        self.bound = (minimum + pedestal) ** 0.5
        self.param = nn.Parameter(torch.sqrt(init + pedestal))

    def forward(self) -> torch.Tensor:
        p = torch.maximum(self.param, torch.full_like(self.param, self.bound))
        return p * p - self.pedestal


class GDN(nn.Module):
    """y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)   (``inverse=True``: multiply instead).

    Implemented as a 1x1 convolution over squared inputs, so it works on any spatial size
    and in channels-last memory format.
    """

    def __init__(self, channels: int, inverse: bool = False, gamma_init: float = 0.1):
        super().__init__()
        self.inverse = inverse
        self.beta = NonNegative(torch.ones(channels), minimum=1e-6)
        self.gamma = NonNegative(gamma_init * torch.eye(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        gamma = self.gamma().view(c, c, 1, 1)
        norm = F.conv2d(x * x, gamma, self.beta())
        return x * torch.sqrt(norm) if self.inverse else x * torch.rsqrt(norm)


def conv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.Conv2d:
    """Convolution that divides the spatial size by ``stride`` exactly (for multiples of it)."""
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)


def deconv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    """Transposed convolution that multiplies the spatial size by ``stride`` exactly."""
    return nn.ConvTranspose2d(
        cin, cout, kernel, stride=stride, padding=kernel // 2, output_padding=stride - 1
    )
