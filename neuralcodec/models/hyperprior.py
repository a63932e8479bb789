"""Variable-rate hyperprior image models (training side).

One network serves every quality level through *gain units* (Cui et al. 2021): quality ``q``
multiplies the latent by a learned per-channel gain before rounding and divides it back after,
so a single set of transforms covers the whole rate range::

    x --g_a--> y --*gain[q]--> y_g --h_a--> z --*zgain[q]--> z_g --round--> z_hat
                                                                          |
              x_hat <--g_s-- y_hat / gain[q] <-- round(y_g - mu) + mu   <-+-- h_s(z_hat / zgain[q])
                                                                              = (scale, mu)

``kind`` selects the member of the family: ``"mean-scale"`` (Minnen 2018), ``"scale"``
(Balle 2018, zero mean) or ``"factorized"`` (Balle 2017, no hyperprior: y coded with a
factorized density).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..entropy.models import FactorizedDensity, GaussianConditional, quantize_noise, quantize_ste
from .transforms import hyper_analysis, hyper_synthesis, make_transforms

# Rate-distortion trade-offs of the quality levels: loss = lambda * 255^2 * MSE + bpp.
DEFAULT_LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800)


@dataclass
class HyperpriorConfig:
    kind: str = "mean-scale"  # "mean-scale" | "scale" | "factorized"
    n: int = 96
    m: int = 160
    transform: str = "gdn"  # "gdn" | "hybrid" (see transforms.py)
    lambdas: tuple[float, ...] = field(default_factory=lambda: DEFAULT_LAMBDAS)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lambdas"] = list(self.lambdas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> HyperpriorConfig:
        d = dict(d)
        d["lambdas"] = tuple(d["lambdas"])
        return cls(**d)


class GainUnits(nn.Module):
    """Per-quality, per-channel gains stored as logs; ``inverse`` returns the learned inverse."""

    def __init__(self, lambdas: tuple[float, ...], channels: int, exponent: float):
        super().__init__()
        ref = math.exp(sum(math.log(lam) for lam in lambdas) / len(lambdas))
        init = torch.tensor([exponent * math.log(lam / ref) for lam in lambdas])
        self.log_gain = nn.Parameter(init[:, None].repeat(1, channels))
        self.log_inverse = nn.Parameter(-init[:, None].repeat(1, channels))

    def gain(self, q: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.log_gain[q])[:, :, None, None]

    def inverse(self, q: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.log_inverse[q])[:, :, None, None]


def build_transforms(model: nn.Module, config, hyper_outputs: int) -> None:
    """Give ``model`` the analysis/synthesis pair and y gain units, plus, when ``hyper_outputs``
    (1: scales, 2: scales and means) is non-zero, the hyper transforms, z gain units, z density
    and y conditional. Shared by every model of the family and by the context models."""
    n, m = config.n, config.m
    widths = tuple(getattr(config, "synthesis_widths", ()))
    model.g_a, model.g_s = make_transforms(config.transform, n, m, widths)
    model.y_gain = GainUnits(config.lambdas, m, exponent=0.5)
    if hyper_outputs:
        model.h_a = hyper_analysis(n, m)
        model.h_s = hyper_synthesis(n, m, hyper_outputs)
        ranks = tuple(getattr(config, "hyper_ranks", ()))
        if any(ranks):  # low-rank h_s (compress/lowrank.py): convolution i -> rank ranks[i]
            from ..compress.lowrank import factorize_convs

            model.h_s = factorize_convs(model.h_s, ranks)
        model.z_gain = GainUnits(config.lambdas, n, exponent=0.0)
        model.z_density = FactorizedDensity(n)
        model.y_conditional = GaussianConditional()


class HyperpriorModel(nn.Module):
    """The hyperprior family with gain units; ``forward`` is the training path."""

    def __init__(self, config: HyperpriorConfig):
        super().__init__()
        self.config = config
        if config.kind == "factorized":
            build_transforms(self, config, hyper_outputs=0)
            self.y_density = FactorizedDensity(config.m)
        else:
            build_transforms(self, config, hyper_outputs=2 if config.kind == "mean-scale" else 1)

    @property
    def num_qualities(self) -> int:
        return len(self.config.lambdas)

    def hyper_params(self, z_hat: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(scales, means) of y_g from the quantised hyper-latent (means are 0 for ``scale``)."""
        out = self.h_s(z_hat * self.z_gain.inverse(q))
        if self.config.kind == "mean-scale":
            scales, means = out.chunk(2, dim=1)
        else:
            scales, means = out, torch.zeros_like(out)
        return scales, means

    def forward(self, x: torch.Tensor, q: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x`` in [0, 1], shape (B, 3, H, W) with H, W multiples of 64; ``q`` (B,) int64."""
        y = self.g_a(x) * self.y_gain.gain(q)
        likelihoods = {}
        if self.config.kind == "factorized":
            likelihoods["y"] = self.y_density.likelihood(quantize_noise(y))
            y_hat = quantize_ste(y)
        else:
            z = self.h_a(y) * self.z_gain.gain(q)
            likelihoods["z"] = self.z_density.likelihood(quantize_noise(z))
            scales, means = self.hyper_params(quantize_ste(z), q)
            likelihoods["y"] = self.y_conditional.likelihood(quantize_noise(y), scales, means)
            y_hat = quantize_ste(y - means) + means
        x_hat = self.g_s(y_hat * self.y_gain.inverse(q))
        return {"x_hat": x_hat, "likelihoods": likelihoods}


def rd_loss(
    out: dict[str, torch.Tensor], x: torch.Tensor, lambdas: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Per-sample ``lambda * 255^2 * MSE + bpp``, averaged over the batch."""
    b, _, h, w = x.shape
    bits = sum(torch.log2(lik).reshape(b, -1).sum(1) for lik in out["likelihoods"].values())
    bpp = -bits / (h * w)
    mse = (out["x_hat"] - x).pow(2).reshape(b, -1).mean(1)
    loss = (lambdas * 255**2 * mse + bpp).mean()
    return {
        "loss": loss,
        "bpp": bpp.mean(),
        "mse": mse.mean(),
        "psnr": (10 * torch.log10(1 / mse.clamp_min(1e-10))).mean(),
    }
