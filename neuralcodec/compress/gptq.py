"""Error-compensating weight rounding (GPTQ-style) for the integer networks.

Plain rounding picks each integer weight on its own. GPTQ rounds the weights of an output
channel one input column at a time and moves the rounding error of each column onto the columns
not rounded yet, weighted by the inverse Hessian ``H = E[x x^T]`` of the layer's inputs, so the
*output* error on the calibration data is what gets minimised, not the weight error::

    H = X X^T / n + damp * mean(diag) * I          (X: the layer's im2col'd inputs)
    U = chol(H^-1) (upper)
    for column i:  q_i = clamp(round(w_i / step), +-qmax)
                   e   = (w_i - q_i step) / U_ii
                   w_j -= e * U_ij  for every later column j

The per-channel step stays the plain one (max |w| / qmax), so the integer layer's format, its
requantisation and every exactness bound are unchanged: only which integers are stored differs.

Transposed convolutions: an output pixel's inputs depend on its sub-pixel phase, so their
Hessian is approximated by the input channels' covariance times the identity over the taps
(``kron(C, I)``): error moves between channels of the same tap, not between taps.

``HessianRecorder`` gathers ``H`` with forward pre-hooks during calibration (like
``intnet.PeakRecorder``); ``quantize(weight, hessian, bits, transposed)`` returns what
``intnet.quantize_weights`` returns.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

MAX_COLUMNS = 4096  # input vectors sampled per forward call


def _columns(m: nn.Module, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """(D, n) input vectors of ``m`` for one call: im2col for a convolution, channel vectors for
    a transposed one; at most ``MAX_COLUMNS`` sampled."""
    x = x.detach().double()
    if isinstance(m, nn.ConvTranspose2d):
        cols = x.transpose(0, 1).reshape(x.shape[1], -1)
    else:
        cols = F.unfold(x, m.kernel_size, m.dilation, m.padding, m.stride)
        cols = cols.transpose(0, 1).reshape(cols.shape[1], -1)
    if cols.shape[1] > MAX_COLUMNS:
        cols = cols[:, torch.randperm(cols.shape[1], generator=gen)[:MAX_COLUMNS]]
    return cols


class HessianRecorder:
    """Forward pre-hooks summing ``x x^T`` of the inputs of chosen convolutions."""

    def __init__(self, modules: dict[str, nn.Module], seed: int = 0):
        self.sums: dict[str, torch.Tensor] = {}
        self.counts = dict.fromkeys(modules, 0)
        self._modules = modules
        self._gen = torch.Generator().manual_seed(seed)
        self._handles = [m.register_forward_pre_hook(self._hook(n)) for n, m in modules.items()]

    def _hook(self, name: str):
        def hook(module, args):
            cols = _columns(module, args[0], self._gen)
            prod = cols @ cols.T
            self.sums[name] = self.sums[name] + prod if name in self.sums else prod
            self.counts[name] += cols.shape[1]

        return hook

    def hessian(self, name: str) -> np.ndarray:
        """``E[x x^T]`` over the weight's input axis (channels x taps, in weight order)."""
        m = self._modules[name]
        h = (self.sums[name] / max(self.counts[name], 1)).numpy()
        if isinstance(m, nn.ConvTranspose2d):
            h = np.kron(h, np.eye(m.kernel_size[0] * m.kernel_size[1]))
        return h

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()

    def __enter__(self) -> HessianRecorder:
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


def quantize(
    weight: torch.Tensor,
    hessian: np.ndarray,
    bits: int,
    transposed: bool,
    damp: float = 0.01,
) -> tuple[np.ndarray, np.ndarray]:
    """``(integer weights, step per output channel)`` like ``intnet.quantize_weights``, with the
    rounding errors compensated through ``hessian`` (D x D, D = input channels x taps)."""
    w = weight.detach().double().cpu().numpy()
    if transposed:  # (cin, cout, k, k) -> rows = outputs, columns = (cin, k, k)
        rows = w.transpose(1, 0, 2, 3).reshape(w.shape[1], -1)
    else:
        rows = w.reshape(w.shape[0], -1)
    qmax = 2 ** (bits - 1) - 1
    peak = np.abs(rows).max(axis=1)
    step = np.where(peak > 0, peak / qmax, 1.0)
    h = np.array(hessian, dtype=np.float64)
    if h.shape != (rows.shape[1],) * 2:
        raise ValueError(f"hessian {h.shape} does not match {rows.shape[1]} weight columns")
    dead = np.diag(h) <= 0
    h[dead, dead] = 1.0  # inputs never seen: plain rounding there
    h += damp * float(np.mean(np.diag(h))) * np.eye(len(h))
    u = np.linalg.cholesky(np.linalg.inv(h)).T  # upper: H^-1 = U^T U
    work = rows.copy()
    q = np.zeros_like(rows, dtype=np.int64)
    for i in range(work.shape[1]):
        qi = np.clip(np.round(work[:, i] / step), -qmax, qmax)
        q[:, i] = qi.astype(np.int64)
        err = (work[:, i] - qi * step) / u[i, i]
        work[:, i + 1 :] -= np.outer(err, u[i, i + 1 :])
    if transposed:
        q = q.reshape(w.shape[1], w.shape[0], *w.shape[2:]).transpose(1, 0, 2, 3)
    else:
        q = q.reshape(w.shape)
    return np.ascontiguousarray(q), step
