"""Hand-written kernels: each with a plain reference, a fast implementation and one dispatch point.

::

    caller (models/, codecs/) ──> kernels.<name>(..., impl=None) ──> dispatch.select
                                                                       │ first usable, fastest first
                          ┌──────────────┬──────────────┬─────────────┴──┐
                          c (extension)  triton (CUDA)  autograd (torch)  reference (torch/NumPy)

One module per kernel holds its reference, its fast implementation(s) and their
``IMPLEMENTATIONS`` tuple; ``KERNELS`` below lists them all. ``tests/test_kernels.py`` checks
every fast implementation against its reference: bit for bit for the exact integer kernels,
to a tight tolerance (values and gradients) for the float ones. ``impl="reference"`` or
``NEURALCODEC_KERNELS=reference`` forces the references (see ``dispatch``).

| kernel | fast implementation | what it fuses, and why |
| --- | --- | --- |
| ``up2_exact`` | C ``_exact.up2`` | INR decoder upsampler: 4-tap x2 filter, rescale and clamp per axis in one pass over rows; the reference allocates a padded slice per tap |
| ``conv3x3_exact`` | C ``_exact.conv3x3`` | INR synthesis residual conv in exact float64 integers: one padded row feeds every output channel; PyTorch's float64 conv is slow for 3 channels |
| ``arm_decode`` | C ``_inr_arm.decode`` | INR latent decoding: neighbours -> fixed-point MLP -> table index -> range-decoder symbol, per latent, in one C loop over the coder's C API; the reference needs a NumPy call per wavefront (about W + 4H of them) |
| ``causal_contexts`` | autograd ``CausalContext`` | INR training: K shifted neighbour slices written into one buffer, gradients added in place into one padded grid per level (autograd through slices allocates a grid per neighbour) |
| ``pointwise_mlp`` | autograd ``PointwiseMlp`` | INR synthesis / ARM training: 1x1 layers block by block, backward recomputes a block's activations, so hidden activations stay in cache |
| ``laplace_rate`` | Triton ``laplace_triton`` (CUDA); autograd ``LaplaceBits`` (CPU) | INR training rate: bits and closed-form derivatives of a discretised Laplace in one pass (Triton: one kernel, intermediates in registers; CPU: blocks in cache) instead of a dozen full-size autograd steps |
| ``linear_attention_exact`` | Triton ``context_triton`` (CUDA) | ``mlic`` global context: KV-sum with the D x C accumulator in registers, then query products, denominator and the rounding integer division in one pass per block of positions; int64 throughout, so bit-exact (CPU: int64 matmuls) |
| ``fixed_pointwise`` | Triton ``context_triton`` (CUDA) | ``mlic`` parameter fusion: each exact 1x1 layer of the aggregation (accumulate, bias, ReLU, rounding shift, clamp) in one pass per tile instead of four full-size passes; float64 integers below 2^51, bit-exact in any order (CPU: float64 matmul) |
| ``_intnet`` (``compress/intconv.py``, ``intnet.py``) | C ``requant`` / ``igdn`` | integer networks: partial sums, bias, requantisation, ReLU/clamp, pixel shuffle and crop (or the inverse GDN's root and scaling) in one int64 pass per output channel range; ``NEURALCODEC_KERNELS=reference`` runs the float64 PyTorch twin, which the tests compare bit for bit |

Triton fits element-wise and gather kernels on a GPU (``laplace_rate`` has one) and the
context-model parameter fusions of the learned codecs (checkerboard / channel contexts,
scale-to-CDF-index): each is one more ``Implementation("triton", fn, usable)`` in its kernel's
tuple, ``usable`` checking for a CUDA tensor (or ``TRITON_INTERPRET=1``, how the tests run it on
CPU) and an importable ``triton``, which is imported only when such a call runs. The exact
kernels stay on the CPU: they are bit-exact integer arithmetic for the decoder.
"""

from __future__ import annotations

from typing import Any

from . import causal_context, context_model, exact_conv, exact_upsample, inr_arm, laplace, pointwise
from .dispatch import Implementation, call, select
from .inr_arm import ArmCoding

KERNELS: dict[str, tuple[Implementation, ...]] = {
    "up2_exact": exact_upsample.IMPLEMENTATIONS,
    "conv3x3_exact": exact_conv.IMPLEMENTATIONS,
    "arm_decode": inr_arm.IMPLEMENTATIONS,
    "causal_contexts": causal_context.IMPLEMENTATIONS,
    "pointwise_mlp": pointwise.IMPLEMENTATIONS,
    "laplace_rate": laplace.IMPLEMENTATIONS,
    "linear_attention_exact": context_model.LINEAR_ATTENTION,
    "fixed_pointwise": context_model.FIXED_POINTWISE,
}

__all__ = [
    "KERNELS",
    "ArmCoding",
    "Implementation",
    "arm_decode",
    "causal_contexts",
    "conv3x3_exact",
    "fixed_pointwise",
    "implementation",
    "laplace_rate",
    "linear_attention_exact",
    "pointwise_mlp",
    "up2_exact",
]


def implementation(kernel: str, *args: Any, impl: str | None = None) -> str:
    """Name of the implementation that ``kernel(*args)`` would run."""
    return select(kernel, KERNELS[kernel], *args, impl=impl).name


def up2_exact(x, taps, scale: float, limit: float, *, impl: str | None = None):
    """(C, h, w) float64 integers -> (C, 2h, 2w): x2 per axis, rescaled, clamped (exact)."""
    return call("up2_exact", KERNELS["up2_exact"], x, taps, scale, limit, impl=impl)


def conv3x3_exact(x, w, b, *, impl: str | None = None):
    """(C, H, W) float64 integers -> (O, H, W): replicate-padded 3x3 convolution (exact)."""
    return call("conv3x3_exact", KERNELS["conv3x3_exact"], x, w, b, impl=impl)


def arm_decode(
    decoder,
    tables,
    buf,
    positions,
    levels,
    offsets,
    layers,
    step: int,
    coding: ArmCoding,
    starts=None,
    *,
    impl: str | None = None,
) -> None:
    """Decode ``len(positions)`` ARM-conditioned values into ``buf`` (see ``inr_arm``)."""
    args = (decoder, tables, buf, positions, levels, offsets, layers, step, coding, starts)
    return call("arm_decode", KERNELS["arm_decode"], *args, impl=impl)


def causal_contexts(grids, offsets, *, impl: str | None = None):
    """Grids (h_l, w_l) -> (K, sum h_l w_l) causal neighbours, differentiable."""
    return call("causal_contexts", KERNELS["causal_contexts"], grids, offsets, impl=impl)


def pointwise_mlp(x, params, *, impl: str | None = None):
    """(C, n) -> (out, n) through 1x1 layers ``params = (w0, b0, w1, b1, ...)``, ReLU between."""
    return call("pointwise_mlp", KERNELS["pointwise_mlp"], x, tuple(params), impl=impl)


def laplace_rate(y, mu, log_scale, *, impl: str | None = None):
    """Total bits of ``y`` under discretised Laplace(mu, exp(log_scale)), differentiable."""
    return call("laplace_rate", KERNELS["laplace_rate"], y, mu, log_scale, impl=impl)


def linear_attention_exact(q, k, v, *, impl: str | None = None):
    """int64 q (B, P, D), k (B, N, D), v (B, N, C) -> (B, P, C): rounded linear attention."""
    return call("linear_attention_exact", KERNELS["linear_attention_exact"], q, k, v, impl=impl)


def fixed_pointwise(x, net, *, impl: str | None = None):
    """(B, Cin, n) float64 integers at 2^10 through a ``FixedPointNet`` of 1x1 layers (exact)."""
    return call("fixed_pointwise", KERNELS["fixed_pointwise"], x, net, impl=impl)
