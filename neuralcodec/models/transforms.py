"""Analysis / synthesis transforms of the hyperprior family.

::

    x (3,H,W) --g_a--> y (M,H/16,W/16) --h_a--> z (N,H/64,W/64)
    x_hat <--g_s-- y_hat                 params <--h_s-- z_hat

``g_a``/``g_s``: four stride-2 5x5 convolutions with GDN / inverse GDN between them
(Balle et al. 2018). ``h_a``/``h_s``: the mean-scale hyper transforms of Minnen et al. 2018,
with plain ReLU in ``h_s`` so that it can run in exact integer arithmetic at coding time.

``HybridAnalysis``/``HybridSynthesis`` (``transform="hybrid"``) add a linear path to the GDN
stack: a 16x16 block transform (stride-16 convolution, initialised from the principal
components of training patches) plus the GDN stack as a residual whose last layer starts at
zero. At step 0 the model is already a decorrelating block transform with a near-lossless
ceiling (33 dB on kodim01 from 160 of 768 components), so training spends its steps on the
entropy model and on removing block artefacts instead of on learning an invertible transform
from scratch, which on two CPU cores takes far longer than the budget allows.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import GDN, conv, deconv


def analysis(n: int, m: int) -> nn.Sequential:
    return nn.Sequential(conv(3, n), GDN(n), conv(n, n), GDN(n), conv(n, n), GDN(n), conv(n, m))


def synthesis(n: int, m: int, widths: tuple[int, ...] = ()) -> nn.Sequential:
    """``widths``: the three hidden widths, coarse to fine (default ``(n, n, n)``); a pruned
    synthesis (``compress/prune.py``) is narrower where the resolution is high."""
    a, b, c = widths or (n, n, n)
    return nn.Sequential(
        deconv(m, a),
        GDN(a, inverse=True),
        deconv(a, b),
        GDN(b, inverse=True),
        deconv(b, c),
        GDN(c, inverse=True),
        deconv(c, 3),
    )


def hyper_analysis(n: int, m: int) -> nn.Sequential:
    return nn.Sequential(
        conv(m, n, 3, 1),
        nn.LeakyReLU(inplace=True),
        conv(n, n, 5, 2),
        nn.LeakyReLU(inplace=True),
        conv(n, n, 5, 2),
    )


def hyper_synthesis(n: int, m: int, out_per_channel: int = 2) -> nn.Sequential:
    """``out_per_channel`` = 2 for (scale, mean), 1 for scale only."""
    mid = m * 3 // 2
    return nn.Sequential(
        deconv(n, m, 5, 2),
        nn.ReLU(inplace=True),
        deconv(m, mid, 5, 2),
        nn.ReLU(inplace=True),
        conv(mid, m * out_per_channel, 3, 1),
    )


BLOCK = 16  # the block transform's size = the total down-sampling factor of g_a
# y = COEFF_SCALE * (block coefficients of x - 1/2): one unit of y is 1/12 of the [0, 1] range,
# about the quantisation step of a mid quality before the gain units scale it.
COEFF_SCALE = 12.0


class HybridAnalysis(nn.Module):
    def __init__(self, n: int, m: int):
        super().__init__()
        self.block = nn.Conv2d(3, m, BLOCK, stride=BLOCK, bias=False)
        self.residual = analysis(n, m)
        nn.init.zeros_(self.residual[-1].weight)
        nn.init.zeros_(self.residual[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x - 0.5
        return COEFF_SCALE * (self.block(x) + self.residual(x))


class HybridSynthesis(nn.Module):
    def __init__(self, n: int, m: int, widths: tuple[int, ...] = ()):
        super().__init__()
        self.block = nn.ConvTranspose2d(m, 3, BLOCK, stride=BLOCK, bias=False)
        self.residual = synthesis(n, m, widths)
        nn.init.zeros_(self.residual[-1].weight)
        nn.init.zeros_(self.residual[-1].bias)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        y = y / COEFF_SCALE
        return self.block(y) + self.residual(y) + 0.5


def init_block_basis(g_a: HybridAnalysis, g_s: HybridSynthesis, crops: torch.Tensor) -> None:
    """Set both block transforms to the leading principal components of ``crops``' blocks.

    ``crops`` (B, 3, H, W) in [0, 1], H and W multiples of ``BLOCK``. The basis is orthonormal,
    so analysis followed by synthesis is the projection onto the top ``m`` components.
    """
    m = g_a.block.out_channels
    blocks = nn.functional.unfold(crops - 0.5, BLOCK, stride=BLOCK)  # (B, 3*16*16, L)
    blocks = blocks.transpose(1, 2).reshape(-1, blocks.shape[1]).double()
    cov = blocks.T @ blocks / blocks.shape[0]
    _, vectors = torch.linalg.eigh(cov)  # ascending eigenvalues
    basis = vectors.flip(1)[:, :m].T.float()  # (m, 768), largest variance first
    with torch.no_grad():
        g_a.block.weight.copy_(basis.reshape(m, 3, BLOCK, BLOCK))
        g_s.block.weight.copy_(basis.reshape(m, 3, BLOCK, BLOCK))


def make_transforms(
    kind: str, n: int, m: int, widths: tuple[int, ...] = ()
) -> tuple[nn.Module, nn.Module]:
    """(g_a, g_s) for ``kind`` = "gdn" (Balle 2018) or "hybrid" (block transform + GDN);
    ``widths``: the synthesis' hidden widths (default n everywhere)."""
    if widths and (len(widths) != 3 or min(widths) <= 0):
        raise ValueError(f"synthesis widths must be three positive numbers, not {widths}")
    if kind == "gdn":
        return analysis(n, m), synthesis(n, m, widths)
    if kind == "hybrid":
        return HybridAnalysis(n, m), HybridSynthesis(n, m, widths)
    raise ValueError(f"unknown transform {kind!r}")
