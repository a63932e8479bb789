"""Analysis / synthesis transforms of the hyperprior family.

::

    x (3,H,W) --g_a--> y (M,H/16,W/16) --h_a--> z (N,H/64,W/64)
    x_hat <--g_s-- y_hat                 params <--h_s-- z_hat

``g_a``/``g_s``: four stride-2 5x5 convolutions with GDN / inverse GDN between them
(Balle et al. 2018). ``h_a``/``h_s``: the mean-scale hyper transforms of Minnen et al. 2018,
with plain ReLU in ``h_s`` so that it can run in exact integer arithmetic at coding time.
"""

from __future__ import annotations

from torch import nn

from .layers import GDN, conv, deconv


def analysis(n: int, m: int) -> nn.Sequential:
    return nn.Sequential(conv(3, n), GDN(n), conv(n, n), GDN(n), conv(n, n), GDN(n), conv(n, m))


def synthesis(n: int, m: int) -> nn.Sequential:
    return nn.Sequential(
        deconv(m, n),
        GDN(n, inverse=True),
        deconv(n, n),
        GDN(n, inverse=True),
        deconv(n, n),
        GDN(n, inverse=True),
        deconv(n, 3),
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
