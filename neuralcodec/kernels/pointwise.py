"""1x1 layers over pixels (the INR synthesis' pointwise part and the ARM at training time).

``pointwise_mlp(x, params)``: ``x`` (C, n) pixels, ``params`` = (w_0, b_0, w_1, b_1, ...) with
``w_j`` (out, in) and ``b_j`` (out,) -> (out_last, n); ReLU between layers, none after the last.

* reference: whole-image ``w @ x + b`` per layer (autograd keeps every hidden activation);
* autograd: ``PointwiseMlp``, block by block (``CHUNK`` pixels) in both passes, so a block's
  hidden activations stay in the CPU cache; the backward recomputes them instead of keeping the
  (hidden x pixels) tensors: far less memory traffic than autograd over whole images.
"""

from __future__ import annotations

import torch

from .dispatch import Implementation, always, reference

CHUNK = 8192  # pixels per block


def pointwise_mlp_reference(x: torch.Tensor, params: tuple[torch.Tensor, ...]) -> torch.Tensor:
    for k in range(0, len(params), 2):
        x = params[k] @ x + params[k + 1][:, None]
        if k + 2 < len(params):
            x = x.clamp_min(0)
    return x


class PointwiseMlp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, chunk: int, x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        weights, biases = params[0::2], params[1::2]
        out = x.new_empty(weights[-1].shape[0], x.shape[1])
        for a in range(0, x.shape[1], chunk):
            t = x[:, a : a + chunk]
            for k, (w, b) in enumerate(zip(weights, biases, strict=True)):
                t = torch.addmm(b[:, None], w, t)
                if k + 1 < len(weights):
                    t.clamp_min_(0)
            out[:, a : a + chunk] = t
        ctx.chunk = chunk
        ctx.save_for_backward(x, *params)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, *params = ctx.saved_tensors
        chunk, weights, biases = ctx.chunk, params[0::2], params[1::2]
        gw = [torch.zeros_like(w) for w in weights]
        gb = [torch.zeros_like(b) for b in biases]
        gx = torch.empty_like(x) if ctx.needs_input_grad[1] else None
        for a in range(0, x.shape[1], chunk):
            acts = [x[:, a : a + chunk]]  # input of each layer
            for k, (w, b) in enumerate(zip(weights[:-1], biases[:-1], strict=True)):
                acts.append(torch.addmm(b[:, None], w, acts[k]).clamp_min_(0))
            g = grad[:, a : a + chunk]
            for k in range(len(weights) - 1, -1, -1):
                gw[k].addmm_(g, acts[k].t())
                gb[k].add_(g.sum(1))
                if k > 0:
                    # through the ReLU: zero where the activation was clamped
                    g = torch.ops.aten.threshold_backward(weights[k].t() @ g, acts[k], 0)
                elif gx is not None:
                    gx[:, a : a + chunk] = weights[0].t() @ g
        grads = [v for pair in zip(gw, gb, strict=True) for v in pair]
        return (None, gx, *grads)


def pointwise_mlp_autograd(
    x: torch.Tensor, params: tuple[torch.Tensor, ...], chunk: int = CHUNK
) -> torch.Tensor:
    return PointwiseMlp.apply(chunk, x, *params)


IMPLEMENTATIONS = (
    Implementation("autograd", pointwise_mlp_autograd, always),
    reference(pointwise_mlp_reference),
)
