"""Every kernel against its reference: bit for bit (integer kernels), values and gradients (float
ones); the dispatch point; the ARM decode kernel on real and broken streams."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from neuralcodec import kernels
from neuralcodec.codecs.inr import PRESETS
from neuralcodec.codecs.latent.wavefront import decode_latents, encode_latents
from neuralcodec.entropy.rangecoder import DecodeError, RangeDecoder
from neuralcodec.kernels import dispatch, pointwise
from neuralcodec.kernels.laplace import laplace_bits
from neuralcodec.models import inr_fixed as fx
from neuralcodec.models.inr import NEIGHBOURHOODS, InrConfig, InrModel

REPO_DIR = Path(__file__).resolve().parents[1]


def test_every_kernel_has_a_fast_implementation_and_ends_with_its_reference():
    for name, impls in kernels.KERNELS.items():
        assert impls[-1].name == "reference", name
        assert len(impls) >= 2 and impls[0].name in ("c", "triton", "autograd"), name
    cpu = torch.zeros(3)
    assert kernels.implementation("laplace_rate", cpu, cpu, cpu) in ("autograd", "triton")


def test_dispatch_picks_the_fast_path_unless_forced(monkeypatch):
    x = torch.zeros(1, 2, 2, dtype=torch.float64)
    taps = torch.zeros(4, dtype=torch.float64)
    assert kernels.implementation("up2_exact", x, taps, 1.0, 10.0) == "c"
    assert kernels.implementation("up2_exact", x.float(), taps, 1.0, 10.0) == "reference"
    assert kernels.implementation("up2_exact", x, taps, 1.0, 10.0, impl="reference") == "reference"
    monkeypatch.setenv(dispatch.FORCE_ENV, "reference")
    assert kernels.implementation("up2_exact", x, taps, 1.0, 10.0) == "reference"
    assert kernels.implementation("laplace_rate", x, x, x) == "reference"
    monkeypatch.setenv(dispatch.FORCE_ENV, "autograd,reference")
    assert kernels.implementation("laplace_rate", x, x, x) == "autograd"
    assert kernels.implementation("conv3x3_exact", x, None, None) == "reference"
    with pytest.raises(ValueError, match="no implementation 'triton'"):
        kernels.up2_exact(x, taps, 1.0, 10.0, impl="triton")
    with pytest.raises(ValueError, match="cannot run this call"):  # the C kernel is float64 only
        kernels.up2_exact(x.float(), taps, 1.0, 10.0, impl="c")


# ----------------------------------------------------------------------------- exact kernels


@pytest.mark.parametrize("shape", [(3, 1, 1), (2, 1, 7), (5, 9, 4), (7, 33, 50)])
def test_exact_upsampler_and_convolution_equal_their_references(shape):
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randint(-(2**21), 2**21, shape, generator=g).double()
    taps = torch.randint(-(2**10), 2**12, (4,), generator=g).double()
    args = (x, taps, 2.0**-11, 2.0**30)
    fast = kernels.up2_exact(*args)
    assert fast.shape == (shape[0], 2 * shape[1], 2 * shape[2])
    assert torch.equal(fast, kernels.up2_exact(*args, impl="reference"))
    clamped = (x, taps, 2.0**-11, 1000.0)  # the clamp is part of the kernel
    assert torch.equal(kernels.up2_exact(*clamped), kernels.up2_exact(*clamped, impl="reference"))
    w = torch.randint(-(2**14), 2**14, (3, shape[0], 3, 3), generator=g).double().numpy()
    b = torch.randint(-(2**14), 2**14, (3,), generator=g).double().numpy()
    conv = kernels.conv3x3_exact(x, w, b)
    assert torch.equal(conv, kernels.conv3x3_exact(x, w, b, impl="reference"))


def test_exact_kernels_refuse_inconsistent_shapes():
    x = torch.zeros(2, 3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        kernels.conv3x3_exact(x, np.zeros((3, 5, 3, 3)), np.zeros(3))
    with pytest.raises(ValueError, match="inconsistent shapes"):
        kernels.up2_exact(x, torch.zeros(3, dtype=torch.float64), 1.0, 1.0)


# ----------------------------------------------------------------------------- autograd kernels


def test_causal_contexts_equal_the_sliced_reference_with_gradients():
    offsets = NEIGHBOURHOODS[16]
    g = torch.Generator().manual_seed(3)
    shapes = [(6, 9), (3, 5), (1, 1)]
    grids = [torch.randn(s, dtype=torch.float64, generator=g, requires_grad=True) for s in shapes]
    ours = kernels.causal_contexts(grids, offsets)
    ref = kernels.causal_contexts(grids, offsets, impl="reference")
    assert kernels.implementation("causal_contexts", grids, offsets) == "autograd"
    assert torch.equal(ours, ref)
    weight = torch.randn(ref.shape, dtype=torch.float64, generator=g)
    mine = torch.autograd.grad((ours * weight).sum(), grids)
    theirs = torch.autograd.grad((ref * weight).sum(), grids)
    assert all(torch.allclose(a, b) for a, b in zip(mine, theirs, strict=True))
    assert torch.autograd.gradcheck(lambda *t: kernels.causal_contexts(list(t), offsets), grids)


def test_blockwise_pointwise_layers_have_exact_gradients():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 30, dtype=torch.float64, generator=g, requires_grad=True)
    shapes = [(6, 5), (6,), (4, 6), (4,), (3, 4), (3,)]
    params = [torch.randn(s, dtype=torch.float64, generator=g, requires_grad=True) for s in shapes]

    def blocked(x, *p):  # several blocks and a ragged last one
        return pointwise.pointwise_mlp_autograd(x, p, chunk=7)

    assert torch.autograd.gradcheck(blocked, (x, *params))
    ref = kernels.pointwise_mlp(x, params, impl="reference")
    assert torch.allclose(blocked(x, *params), ref)
    assert torch.allclose(kernels.pointwise_mlp(x, params), ref)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_laplace_rate_matches_its_definition_and_gradients(dtype):
    """Central bin, tails, clamped likelihoods and clamped scales, against plain autograd."""
    torch.manual_seed(5)
    n = 50_000
    y = (torch.randn(n, dtype=dtype) * 5).round() + torch.rand(n, dtype=dtype) - 0.5
    mu = torch.randn(n, dtype=dtype) * 3
    log_scale = torch.rand(n, dtype=dtype) * 14 - 6.5  # beyond both clamp limits
    ref_in = [t.clone().requires_grad_() for t in (y, mu, log_scale)]
    ref = kernels.laplace_rate(*ref_in, impl="reference")
    ref.backward()
    assert torch.allclose(ref.detach(), laplace_bits(y, mu, log_scale).sum())
    got_in = [t.clone().requires_grad_() for t in (y, mu, log_scale)]
    got = kernels.laplace_rate(*got_in)
    got.backward()
    tol = 1e-9 if dtype == torch.float64 else 1e-5
    assert abs(float(got.detach()) - float(ref.detach())) <= tol * float(ref.detach())
    for a, b in zip(got_in, ref_in, strict=True):
        assert torch.allclose(a.grad, b.grad, rtol=100 * tol, atol=1e3 * tol)


TRITON_PARITY = """
import json, torch
from neuralcodec import kernels
out = {}
for dtype in (torch.float64, torch.float32):
    torch.manual_seed(5)
    n = 5000
    y = (torch.randn(n, dtype=dtype) * 5).round() + torch.rand(n, dtype=dtype) - 0.5
    mu = torch.randn(n, dtype=dtype) * 3
    ls = torch.rand(n, dtype=dtype) * 14 - 6.5
    res = {}
    for impl in ("triton", "reference"):
        ins = [t.clone().requires_grad_() for t in (y, mu, ls)]
        v = kernels.laplace_rate(*ins, impl=impl)
        v.backward()
        res[impl] = (v.detach(), [t.grad for t in ins])
    (a, ga), (b, gb) = res["triton"], res["reference"]
    out[str(dtype)] = {
        "picked": kernels.implementation("laplace_rate", y, mu, ls),
        "value": float(abs(a - b) / b),
        "grads": [float(((g - h).abs() / (h.abs() + 1)).max()) for g, h in zip(ga, gb)],
    }
print(json.dumps(out))
"""


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton not installed")
def test_triton_laplace_rate_matches_the_reference_under_the_interpreter():
    """The Triton kernel runs on CPU with TRITON_INTERPRET=1 (set before triton compiles it)."""
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(REPO_DIR)}
    run = subprocess.run(
        [sys.executable, "-c", TRITON_PARITY], capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    for dtype, tol in (("torch.float64", 1e-7), ("torch.float32", 1e-5)):
        r = result[dtype]
        assert r["picked"] == "triton"
        assert r["value"] <= tol, (dtype, r)
        assert max(r["grads"]) <= 100 * tol, (dtype, r)


# ----------------------------------------------------------------------------- ARM decode


def _random_coder(cfg: InrConfig, h: int, w: int, spread: float, seed: int = 0):
    torch.manual_seed(seed)
    model = InrModel(cfg, h, w)
    rng = np.random.default_rng(seed)
    grids = [
        rng.laplace(0, spread, size=y.shape[-2:]).round().astype(np.int64) for y in model.latents
    ]
    ints = {n: fx.quantize_tensors(fx.float_tensors(model, n), 8) for n in ("arm", "ups", "syn")}
    nets = fx.assemble(cfg, ints, dict.fromkeys(ints, 8))
    return nets, fx.make_layout(cfg, h, w), grids


@pytest.mark.parametrize("spread", [0.7, 40.0])  # mostly zeros / many escapes
def test_c_arm_decoder_equals_the_numpy_wavefront_decoder(spread):
    nets, layout, grids = _random_coder(PRESETS["fast"].arch, 37, 53, spread)
    data, _ = encode_latents(nets, layout, grids)
    fast = decode_latents(nets, layout, data)
    ref = decode_latents(nets, layout, data, impl="reference")
    assert all(np.array_equal(a, b) for a, b in zip(fast, grids, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(ref, grids, strict=True))


def test_arm_decode_continues_the_decoders_stream_between_runs_and_chunks():
    """A C run, an ordinary chunk and another C run on one decoder read one stream."""
    nets, layout, grids = _random_coder(PRESETS["test"].arch, 19, 23, 3.0, seed=1)
    data, _ = encode_latents(nets, layout, grids)
    layers = [(w.astype(np.float64), b.astype(np.float64)) for w, b in nets.arm]
    tables, n = fx.prepared_tables(), len(layout.positions)
    pos, lvl, off, k = layout.positions, layout.levels, layout.offsets, nets.steps["arm"]
    cuts = (0, n // 3, n // 3 + layout.starts[60] - layout.starts[59], n)
    dec, buf = RangeDecoder(data), np.zeros(layout.size)
    for j, (a, b) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
        sl = slice(a, b)
        impl = "reference" if j == 1 else "c"
        kernels.arm_decode(
            dec, tables, buf, pos[sl], lvl[sl], off, layers, k, fx.MLP_CODING, impl=impl
        )
        assert dec.count == b
    assert all(np.array_equal(a, b) for a, b in zip(fx._gather(layout, buf), grids, strict=True))


def test_arm_decoder_rejects_bad_streams_and_arguments():
    nets, layout, grids = _random_coder(PRESETS["test"].arch, 24, 31, 3.0)
    data, _ = encode_latents(nets, layout, grids)
    with pytest.raises(DecodeError):
        decode_latents(nets, layout, data[: len(data) // 2])
    dec = RangeDecoder(data)
    buf = np.zeros(layout.size)
    pos, lvl, off = layout.positions, layout.levels, layout.offsets
    coding = fx.MLP_CODING
    layers = [(w.astype(np.float64), b.astype(np.float64)) for w, b in nets.arm]
    tables = fx.prepared_tables()

    def call(**kw):
        a = dict(buf=buf, pos=pos, lvl=lvl, off=off, layers=layers, k=8, coding=coding) | kw
        kernels.arm_decode(
            dec, tables, a["buf"], a["pos"], a["lvl"], a["off"], a["layers"], a["k"],
            a["coding"], impl="c",
        )  # fmt: skip

    # every neighbour of every symbol must lie inside buf: positions, levels and offsets
    for bad in (
        dict(pos=pos + layout.size),
        dict(pos=pos - pos.min() - 1),
        dict(lvl=lvl + 1),
        dict(lvl=-lvl - 1),
        dict(off=off + layout.size),
        dict(off=off - 10 * layout.size),
    ):
        with pytest.raises(ValueError, match="outside buf"):
            call(**bad)
    with pytest.raises(ValueError, match="one level per position"):
        call(lvl=lvl[:-1])
    with pytest.raises(ValueError, match="one level per position"):
        call(off=off[:, :-1])
    one_output = [*layers[:-1], (layers[-1][0][:1], layers[-1][1][:1])]
    with pytest.raises(ValueError, match="inconsistent shapes"):
        call(layers=one_output)
    with pytest.raises(TypeError):
        call(buf=buf.astype(np.float32))
    with pytest.raises(ValueError, match="coding parameters"):
        call(coding=(*coding[:3], 1000, *coding[4:]))  # more scales than tables
    assert dec.count == 0
    # after refusing bad arguments the decoder still decodes the stream correctly
    call(k=nets.steps["arm"])
    assert all(np.array_equal(a, b) for a, b in zip(fx._gather(layout, buf), grids, strict=True))
    with pytest.raises(DecodeError):  # the stream is used up: reading on is an overread
        call(k=nets.steps["arm"])
    with pytest.raises(DecodeError, match="earlier corrupt"):
        dec.decode(np.zeros(1, dtype=np.int32), tables)
