"""Low-rank factorisation of large convolutions by truncated SVD.

A k x k convolution ``cin -> cout`` is a matrix ``cout x (cin k^2)``; keeping its ``r`` largest
singular values gives two layers, ``k x k: cin -> r`` then ``1x1: r -> cout``, with
``r (cin k^2 + cout)`` weights instead of ``cout cin k^2``. A transposed convolution is a matrix
``(cin k^2) x cout`` the other way round: ``transposed k x k: cin -> r`` then ``1x1: r -> cout``.
Both halves share the singular values' square roots; the bias stays on the second layer. The
factored pair is an ordinary stack of convolutions, so the integer twins (``IntNet``) and the
frozen-weights protocol take it unchanged.

``choose_rank`` picks the smallest rank keeping a fraction of the weight matrix's energy; the
rank actually shipped is chosen from the measured rate cost (``docs/compression.md``).
"""

from __future__ import annotations

import torch
from torch import nn


def _matrix(m: nn.Conv2d | nn.ConvTranspose2d) -> torch.Tensor:
    w = m.weight.detach().double()
    if isinstance(m, nn.ConvTranspose2d):  # (cin, cout, k, k) -> (cin k^2) x cout
        return w.permute(0, 2, 3, 1).reshape(-1, w.shape[1])
    return w.reshape(w.shape[0], -1)  # cout x (cin k^2)


def singular_values(m: nn.Conv2d | nn.ConvTranspose2d) -> torch.Tensor:
    return torch.linalg.svdvals(_matrix(m))


def choose_rank(m: nn.Conv2d | nn.ConvTranspose2d, energy: float) -> int:
    """Smallest rank whose singular values hold ``energy`` of the squared Frobenius norm."""
    s2 = singular_values(m).pow(2)
    kept = torch.cumsum(s2, 0) / s2.sum()
    return int(torch.searchsorted(kept, torch.tensor(energy, dtype=kept.dtype)).item()) + 1


def factorize(m: nn.Conv2d | nn.ConvTranspose2d, rank: int) -> nn.Sequential:
    """``m`` as (k x k to ``rank`` channels, then 1x1), the best rank-``rank`` approximation."""
    u, s, vh = torch.linalg.svd(_matrix(m), full_matrices=False)
    r = max(1, min(rank, s.numel()))
    root = s[:r].sqrt()
    k = m.kernel_size
    if isinstance(m, nn.ConvTranspose2d):
        cin, cout = m.in_channels, m.out_channels
        first = nn.ConvTranspose2d(cin, r, k, m.stride, m.padding, m.output_padding, bias=False)
        a = (u[:, :r] * root).reshape(cin, k[0], k[1], r).permute(0, 3, 1, 2)
        b = (root[:, None] * vh[:r]).T  # cout x r
    else:
        cin, cout = m.in_channels, m.out_channels
        first = nn.Conv2d(cin, r, k, m.stride, m.padding, bias=False)
        a = (root[:, None] * vh[:r]).reshape(r, cin, k[0], k[1])
        b = u[:, :r] * root  # cout x r
    second = nn.Conv2d(r, cout, 1)
    with torch.no_grad():
        first.weight.copy_(a.float())
        second.weight.copy_(b.float().reshape(cout, r, 1, 1))
        if m.bias is not None:
            second.bias.copy_(m.bias)
        else:
            second.bias.zero_()
    return nn.Sequential(first, second)


def factorize_sequential(seq: nn.Sequential, ranks: dict[int, int]) -> nn.Sequential:
    """A flat copy of ``seq`` with the layers at the indexes in ``ranks`` factorised."""
    out = []
    for i, m in enumerate(seq):
        if i in ranks:
            out.extend(factorize(m, ranks[i]))
        else:
            out.append(m)
    return nn.Sequential(*out)


def factorize_convs(seq: nn.Sequential, ranks: tuple[int, ...]) -> nn.Sequential:
    """``seq`` with its i-th convolution factorised to rank ``ranks[i]`` (0: kept as it is)."""
    convs = [i for i, m in enumerate(seq) if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    return factorize_sequential(seq, {i: r for i, r in zip(convs, ranks, strict=True) if r})


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
