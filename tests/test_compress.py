"""Integer networks (``neuralcodec/compress``): exactness of every path, closeness to the float
network they quantise, storage round trips, and identical pixels of ``elic-int`` under every
forced instruction set and thread count."""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import sysconfig

import numpy as np
import pytest
import torch
from conftest import ISA_ENVIRONMENTS, REPO_DIR, decoded_hash_in_subprocess
from torch import nn
from torch.nn import functional as F

from neuralcodec.codecs.base import get_codec, weights_available
from neuralcodec.codecs.weights import weights_dir
from neuralcodec.compress.intconv import (
    FLOAT32_EXACT,
    ConvGeometry,
    IntConv,
    IntNetError,
    _choose_plan,
    clamp_pad,
    digit_count,
    float_digits,
    int8_matmul_available,
    subpixel_weight,
    to_digits,
)
from neuralcodec.compress.intnet import IntIGDN, IntNet, IntSynthesis, PeakRecorder
from neuralcodec.kernels import _ext
from neuralcodec.models.fixedpoint import ACT_BITS
from neuralcodec.models.frozen import WeightsError
from neuralcodec.models.layers import GDN
from neuralcodec.models.transforms import HybridSynthesis
from neuralcodec.runtime import torch_threads

RNG = np.random.default_rng(7)

LAYERS = [  # cin, cout, kernel, stride, padding, transposed, output_padding, input bound
    (8, 5, 5, 2, 2, True, 1, 2047),
    (32, 3, 16, 16, 0, True, 0, 32767),
    (64, 40, 5, 1, 2, False, 0, 8191),
    (32, 16, 3, 1, 1, False, 0, 2047),
    (64, 32, 5, 2, 2, True, 1, 8191),
    (128, 24, 5, 1, 2, False, 0, 8191),
    (200, 16, 1, 1, 0, False, 0, 2**20),
    (24, 3, 5, 2, 2, True, 1, 2047),  # 12 phase outputs: the C kernel for few outputs
    (16, 4, 3, 1, 1, False, 0, 8191),
    (1024, 24, 1, 1, 0, False, 0, 511),  # 1x1 in groups: one batched matrix product
    (96, 40, 1, 1, 0, False, 0, 2**17),  # 1x1, the values split in two parts
]


def _layer(cin, cout, k, s, p, tr, op, bound, relu=False):
    shape = (cin, cout, k, k) if tr else (cout, cin, k, k)
    return IntConv(
        weight=RNG.integers(-127, 128, shape),
        bias=RNG.integers(-5000, 5000, cout),
        mult=RNG.integers(1, 2**14, cout),
        shift=13,
        geometry=ConvGeometry(k, s, p, tr, op),
        in_bound=bound,
        out_bound=2**23 - 1,
        relu=relu,
    )


def _exact_reference(layer: IntConv, x: torch.Tensor) -> torch.Tensor:
    """The same layer in plain float64 PyTorch and integer NumPy, no shortcuts."""
    g = layer.geometry
    w = torch.from_numpy(layer.weight.astype(np.float64))
    x = x.double().clamp(-layer.in_bound, layer.in_bound)
    if g.transposed:
        acc = F.conv_transpose2d(x, w, None, g.stride, g.padding, g.output_padding)
    else:
        acc = F.conv2d(x, w, None, g.stride, g.padding)
    acc = acc.numpy().astype(np.int64) + layer.bias[None, :, None, None]
    t = acc * layer.mult[None, :, None, None] + (1 << (layer.shift - 1))
    out = np.floor_divide(t, 1 << layer.shift)
    lo = 0 if layer.relu else -layer.out_bound
    return torch.from_numpy(np.clip(out, lo, layer.out_bound).astype(np.float32))


@pytest.mark.parametrize("spec", LAYERS)
def test_every_path_gives_the_exact_integer_result(spec):
    layer = _layer(*spec, relu=spec[2] == 3)
    bound = spec[-1]
    x = torch.from_numpy(RNG.integers(-bound, bound + 1, (1, spec[0], 7, 9)).astype(np.float32))
    x[0, 0, 0, :3] = torch.tensor([bound, -bound, bound])  # extremes reach the bound
    want = _exact_reference(layer, x)
    paths = (None, "float64", "int8") if int8_matmul_available() else (None, "float64")
    for path in paths:
        for impl in (None, "reference"):
            got = layer(x, path=path, impl=impl)
            assert got.shape == want.shape and torch.equal(got, want), (path, impl)


@pytest.mark.skipif(not _ext.has_intnet(), reason="C kernels not built")
@pytest.mark.parametrize(
    "spec",  # cin, cout, kernel, stride, padding, transposed, output_padding, bound, |w| max
    [
        (7, 5, 3, 1, 1, False, 0, 32767, 9),  # odd channels: a zero partner in the last pair
        (24, 3, 5, 2, 2, True, 1, 2047, 127),  # the synthesis' last layer: 12 phase outputs
        (3, 16, 5, 1, 2, False, 0, 255, 30000),  # int16 weights near their limit
        (10, 40, 3, 1, 1, False, 0, 32767, 60),  # 40 outputs: three groups of 16, 8 unused
        (16, 12, 5, 2, 2, True, 1, 1023, 7),  # 48 phase outputs, 4-bit weights
        (9, 32, 5, 2, 2, True, 1, 8191, 127),  # 128 phase outputs, phase-major groups of 16
        (40, 16, 5, 1, 2, False, 0, 32767, 127),  # sums past 2^31: channel ranges added after
    ],
)
def test_int16_kernel_gives_every_other_plans_integers(spec):
    *geom, bound, wmax = spec
    cin, cout, k, s, p, tr, op = geom
    shape = (cin, cout, k, k) if tr else (cout, cin, k, k)
    layer = IntConv(
        weight=RNG.integers(-wmax, wmax + 1, shape), bias=RNG.integers(-5000, 5000, cout),
        mult=RNG.integers(1, 2**10, cout), shift=13, geometry=ConvGeometry(k, s, p, tr, op),
        in_bound=bound, out_bound=2**30,
    )  # fmt: skip
    x = torch.from_numpy(RNG.integers(-bound, bound + 1, (1, cin, 6, 37)).astype(np.float32))
    x[0, :, 0, :2] = torch.tensor([bound, -bound], dtype=torch.float32)  # both extremes
    x[0, 0, 1, 0] = 4 * bound  # clamped first
    assert layer._int16_weights() is not None
    l1 = np.abs(layer._prepared()[0]).sum(axis=(1, 2, 3)).max()
    assert (len(layer._int16_splits()) > 1) == (l1 * bound >= 2**31)
    if tr and (cout % 16 == 0 or cout * 4 <= 16):  # each group one phase: its corner of taps
        assert layer.int16_phase_major()
        boxes = {tuple(b) for b in layer._int16_boxes().tolist()}
        assert boxes == {(0, 3, 0, 3), (0, 3, 1, 3), (1, 3, 0, 3), (1, 3, 1, 3)}
    want = _exact_reference(layer, x)
    acc = layer.raw_int16(x)[0]
    ran = 0
    for family in (1, 2, 3, 4):  # every version this CPU runs: the same integers
        try:
            got = layer.raw_int16(x, family)[0]
        except ValueError:  # a version this CPU lacks
            continue
        ran += 1
        assert torch.equal(got, acc), family
    assert ran >= 1
    for threads in (1, 3):
        with torch_threads(threads):
            assert torch.equal(layer(x), want)
    assert torch.equal(layer(x, path="int16"), want)
    paths = (None, "float64", "int8") if int8_matmul_available() else (None, "float64")
    layer._cache["w16"] = None  # the other plans
    for path in paths:
        assert torch.equal(layer(x, path=path), want), path
    if cout * (4 if tr else 1) <= 16:  # few outputs: the int16 kernel on every CPU
        layer._cache.pop("w16")
        assert layer.int16_preferred(x)


@pytest.mark.skipif(not _ext.has_intnet(), reason="C kernels not built")
def test_a_one_by_one_layer_on_flattened_positions_takes_int16_rows_of_the_same_integers():
    from neuralcodec.compress import intconv

    layer = IntConv(
        weight=RNG.integers(-7, 8, (40, 320, 1, 1)), bias=RNG.integers(-5000, 5000, 40),
        mult=RNG.integers(1, 2**10, 40), shift=13, geometry=ConvGeometry(1, 1, 0),
        in_bound=8191, out_bound=2047,
    )  # fmt: skip
    x = torch.from_numpy(RNG.integers(-8191, 8192, (1, 320, 272, 1)).astype(np.float32))
    x[0, :, :2, 0] = torch.tensor([8191.0, -8191.0])  # both extremes
    want = _exact_reference(layer, x)
    vnni = intconv._conv16_family() == intconv.CONV16_VNNI
    assert layer.flat16_preferred(x) == vnni  # 320 inputs, 272 positions: 17 rows of 16
    assert not layer.flat16_preferred(x[:, :, :270])  # positions not in rows of 16
    assert torch.equal(layer(x), want)
    rows = layer(x.reshape(1, 320, 17, 16), path="int16")  # what it runs, on any CPU
    assert torch.equal(rows.reshape(want.shape), want)
    assert torch.equal(layer(x, path="float64"), want)


@pytest.mark.skipif(not _ext.has_intnet(), reason="C kernels not built")
def test_int16_kernel_is_left_where_its_sums_could_overflow_and_refuses_bad_shapes():
    layer = IntConv(
        weight=RNG.integers(-20000, 20001, (2, 64, 5, 5)), bias=np.zeros(2, np.int64),
        mult=np.ones(2, np.int64), shift=1, geometry=ConvGeometry(5, 1, 2),
        in_bound=32767, out_bound=2**30,
    )  # fmt: skip
    assert layer._int16_splits() == []  # even one channel pair: 2 x 25 x 20000 x 32767 > 2^31
    assert layer._int16_weights() is None
    assert not layer.int16_preferred(torch.zeros(1, 64, 4, 20))
    with pytest.raises(IntNetError, match="2\\^31"):
        layer(torch.zeros(1, 64, 4, 20), path="int16")
    x = torch.full((1, 64, 4, 20), 32767.0)
    assert torch.equal(layer(x), _exact_reference(layer, x))
    a = np.zeros((2, 8, 20, 2), np.int16)  # rows too short for a 16-pixel vector past 18 - 2
    w = np.zeros((1, 2, 3, 3, 3, 2), np.int16)  # one group of 3 outputs
    with pytest.raises(ValueError, match="conv16"):
        _ext._intnet.conv16(a, w, np.zeros((3, 6, 18), np.int32), 0, 6)
    wide = np.zeros((2, 8, 34, 2), np.int16)
    _ext._intnet.conv16(wide, w, np.zeros((3, 6, 18), np.int32), 0, 6)  # the right shapes
    for groups, n in ((1, 5), (2, 20)):  # no such version: groups of 5, of 20
        with pytest.raises(ValueError, match="conv16"):
            _ext._intnet.conv16(
                wide, np.zeros((groups, 2, 3, 3, n, 2), np.int16),
                np.zeros((groups * n, 6, 18), np.int32), 0, 6,
            )  # fmt: skip
    for box in ([[0, 4, 0, 3]], [[2, 1, 0, 3]], [[0, 3, -1, 3]], [[0, 3, 0, 3]] * 2):
        with pytest.raises(ValueError, match="conv16"):  # outside the taps; one box per group
            _ext._intnet.conv16(
                wide, w, np.zeros((3, 6, 18), np.int32), 0, 6, 0, np.array(box, np.int32)
            )
    with pytest.raises(ValueError, match="pack16"):  # 3 channels need 2 pairs
        _ext._intnet.pack16(np.zeros((3, 4, 4), np.float32), 7.0, 0, 0, a[:1].copy(), 0, 1)
    with pytest.raises(TypeError):
        _ext._intnet.conv16(a.astype(np.int32), w, np.zeros((3, 6, 18), np.int32), 0, 6)


def test_int8_plan_of_a_strided_transposed_layer_skips_the_taps_a_phase_never_uses():
    layer = _layer(64, 32, 5, 2, 2, True, 1, 8191)
    order, ranges = layer._tap_plan()
    assert sorted(order) == list(range(9))
    # phases of a 5x5 stride-2 kernel use 3x3, 3x2, 2x3 and 2x2 of the 3x3 sub-pixel taps
    assert sorted(t1 - t0 for t0, t1 in ranges) == [4, 6, 6, 9]
    # a layer whose phases all use every tap keeps one product
    assert _layer(32, 3, 16, 16, 0, True, 0, 32767)._tap_plan()[1] is None
    small = _layer(24, 3, 5, 2, 2, True, 1, 2047)
    x = torch.zeros(1, 24, 4, 4)
    assert small.small_preferred(x) and not _layer(8, 5, 5, 2, 2, True, 1, 2047).small_preferred(x)


def test_plans_keep_every_float32_partial_sum_below_two_to_the_24():
    for spec in LAYERS:
        layer = _layer(*spec)
        w, (split, k), _ = layer._prepared()
        if k == 0:
            continue
        l1 = np.abs(w).sum(axis=(2, 3))
        bound = spec[-1]
        if split:
            bound = max(2**split - 1, -(-bound // 2**split))
        parts = l1.reshape(l1.shape[0], k, -1).sum(2)
        assert parts.max() * bound < FLOAT32_EXACT
    # a layer far beyond float32 falls back to float64
    big = np.full((4, 512), 127 * 9)
    assert _choose_plan(big, 2**20) == (0, 0)


def test_digits_rebuild_every_value_within_their_reach():
    for bits, bound in ((7, 63), (7, 2047), (7, 32767), (8, 127), (8, 2047), (7, 2**30)):
        n = digit_count(bound, bits)
        x = torch.from_numpy(RNG.integers(-bound, bound + 1, 5000))
        x[:2] = torch.tensor([bound, -bound])
        digits = to_digits(x, n, bits)
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        assert all(int(d.min()) >= lo and int(d.max()) <= hi for d in digits)
        assert torch.equal(sum(d.long() << (bits * i) for i, d in enumerate(digits)), x)
        assert n == 1 or bound > digit_reach(n - 1, bits)  # the fewest digits that reach it


def test_float_digits_are_the_integer_digits():
    for bound in (63, 64, 2047, 8191, 2**23 - 1):
        n = digit_count(bound)
        x = torch.from_numpy(RNG.integers(-bound, bound + 1, 5000))
        x[:4] = torch.tensor([bound, -bound, 0, -1])
        want = to_digits(x, n)
        got = float_digits(x.float(), n)
        assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True)), bound


def test_clamp_pad_is_clamp_then_pad():
    a = torch.from_numpy(RNG.integers(-3000, 3000, (1, 5, 7, 9))).float()
    for before, after in ((0, 0), (2, 1), (1, 3)):
        want = F.pad(a.clamp(-2047, 2047), (before, after, before, after))
        assert torch.equal(clamp_pad(a, 2047, before, after), want)


def digit_reach(n: int, bits: int) -> int:
    half = 1 << (bits - 1)
    return sum((half - 1) << (bits * i) for i in range(n))


_INT8_PROBE = """
import sys, torch
from neuralcodec.compress.intconv import int8_matmul_available
torch.set_num_threads(int(sys.argv[1]))
g = torch.Generator().manual_seed(3)
a = torch.randint(-128, 128, (200, 1600), dtype=torch.int8, generator=g)
b = torch.randint(-64, 64, (1600, 700), dtype=torch.int8, generator=g)
a[:7], b[:, :5] = -128, -64
exact = torch.equal(torch._int_mm(a, b), (a.double() @ b.double()).int())
print(int8_matmul_available(), exact)
"""


def test_int8_products_are_exact_or_disabled_under_every_instruction_set():
    for threads, env in ENVIRONMENTS:
        out = subprocess.run(
            [sys.executable, "-c", _INT8_PROBE, str(threads)],
            cwd=REPO_DIR, env={**os.environ, **env}, check=True, timeout=300,
            capture_output=True, text=True,
        )  # fmt: skip
        available, exact = out.stdout.split()
        assert available == "False" or exact == "True", (threads, env)


def test_a_slow_int8_product_is_settled_without_the_wide_probes(monkeypatch):
    from neuralcodec.compress import intconv

    real, calls = torch._int_mm, []

    def slow_int_mm(a, b):  # as without VNNI: the float product's work many times over
        calls.append(b.shape[1])
        for _ in range(200):  # far below the threshold, whatever the noise of one timing
            torch.mm(a.float(), b.float())
        return real(a, b)

    monkeypatch.delenv(intconv.INT8_ENV, raising=False)
    monkeypatch.setattr(intconv, "_INT8_SPEEDUP", None)
    monkeypatch.setattr(intconv, "_INT8_OK", None)
    monkeypatch.setattr(torch, "_int_mm", slow_int_mm)
    speed = intconv.int8_speedup()
    assert 0 < speed < intconv._SLOW_INT8 / 2
    assert set(calls) == {256} and intconv._INT8_OK is None  # no wide or exactness probe
    assert intconv._int8_cost_ratio((0, 0), 1, 1) > 0.8  # so no layer takes the int8 plan
    monkeypatch.setattr(intconv, "_INT8_SPEEDUP", None)
    monkeypatch.setattr(torch, "_int_mm", real)
    monkeypatch.setenv(intconv.INT8_ENV, "0")
    assert intconv.int8_speedup() == 0.0


def test_subpixel_form_is_the_transposed_convolution():
    w = RNG.normal(size=(6, 4, 5, 5))
    x = torch.from_numpy(RNG.normal(size=(1, 6, 5, 7)))
    ref = F.conv_transpose2d(x, torch.from_numpy(w), None, 2, 2, 1)
    sub = F.conv2d(F.pad(x, (2, 1, 2, 1)), torch.from_numpy(subpixel_weight(w, 2)))
    got = F.pixel_shuffle(sub, 2)[:, :, 2 : 2 + ref.shape[2], 2 : 2 + ref.shape[3]]
    assert torch.allclose(got, ref, atol=1e-12)


def test_stored_layers_round_trip_and_bad_ones_are_refused():
    layer = _layer(*LAYERS[0])
    arrays = layer.to_arrays("l.")
    assert arrays["l.weight"].dtype == np.int8
    again = IntConv.from_arrays(arrays, "l.")
    x = torch.from_numpy(RNG.integers(-2047, 2048, (1, 8, 4, 4)).astype(np.float32))
    assert torch.equal(again(x), layer(x))
    bad = dict(arrays)
    bad["l.mult"] = np.full(5, 2**40, dtype=np.int64)  # accumulator * multiplier beyond 2^53
    with pytest.raises(IntNetError):
        IntConv.from_arrays(bad, "l.")
    bad = dict(arrays)
    bad["l.bias"] = np.zeros(3, dtype=np.int64)
    with pytest.raises(IntNetError):
        IntConv.from_arrays(bad, "l.")
    with pytest.raises(IntNetError):
        IntConv.from_arrays({}, "l.")


# ----------------------------------------------------------------------------- networks


def _calibrated_net(seq: nn.Sequential, x: torch.Tensor) -> IntNet:
    convs = {str(i): m for i, m in enumerate(seq) if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))}
    with PeakRecorder(convs) as rec, torch.no_grad():
        seq(x)
    return IntNet.from_sequential(seq, [rec.peaks[k] for k in convs], act_bits=(14, 11))


def test_intnet_tracks_the_float_network_and_its_paths_agree():
    torch.manual_seed(0)
    seq = nn.Sequential(
        nn.Conv2d(12, 24, 5, padding=2), nn.ReLU(),
        nn.ConvTranspose2d(24, 16, 5, 2, 2, 1), nn.ReLU(),
        nn.Conv2d(16, 8, 3, padding=1),
    ).eval()  # fmt: skip
    x = torch.randn(1, 12, 6, 8) * 4
    net = _calibrated_net(seq, x)
    fx = torch.floor(x.double() * 2**ACT_BITS + 0.5)
    out = net(fx)
    assert out.dtype == torch.float64
    want = seq(x).double() * 2**ACT_BITS
    rel = (out - want).abs().max() / want.abs().max()
    assert rel < 0.02
    os.environ["NEURALCODEC_KERNELS"] = "reference"
    try:
        assert torch.equal(net(fx), out)
    finally:
        del os.environ["NEURALCODEC_KERNELS"]
    again = IntNet.from_arrays(net.to_arrays("n."), "n.")
    assert torch.equal(again(fx), out)
    # dequantised weights load back into the float network, which then tracks the same outputs
    seq2 = type(seq)(
        *[type(m)(**_ctor(m)) if not isinstance(m, nn.ReLU) else nn.ReLU() for m in seq]
    )
    again.load_into(seq2)
    assert (seq2(x) - seq(x)).abs().max() / seq(x).abs().max() < 0.02


def _ctor(m):
    kw = dict(in_channels=m.in_channels, out_channels=m.out_channels, kernel_size=m.kernel_size,
              stride=m.stride, padding=m.padding)  # fmt: skip
    if isinstance(m, nn.ConvTranspose2d):
        kw["output_padding"] = m.output_padding
    return kw


def test_integer_inverse_gdn_is_close_to_the_float_one_and_exact_across_paths():
    torch.manual_seed(1)
    gdn = GDN(6, inverse=True)
    with torch.no_grad():
        gdn.gamma.param.add_(torch.rand(6, 6) * 0.3)
    x = torch.randn(1, 6, 9, 11) * 2
    f_in, f_out = 9, 8
    layer = IntIGDN.from_gdn(gdn, f_in, f_out, 2**12 - 1, 2**15 - 1)
    a = torch.floor(x * 2**f_in + 0.5).clamp(-4095, 4095)
    got = layer(a)
    assert torch.equal(got, layer(a, impl="reference"))
    want = gdn(a / 2**f_in) * 2**f_out
    assert (got - want).abs().max() <= 0.01 * want.abs().max() + 2
    again = IntIGDN.from_arrays(layer.to_arrays("g."), "g.")
    assert torch.equal(again(a), got)


@pytest.mark.skipif(not _ext.has_intnet(), reason="C kernels not built")
def test_sparse_inverse_gdn_kernel_gives_the_dense_products_integers():
    """Trained gammas are nearly diagonal: the fused kernel over their non-zero entries must give
    exactly the dense product's (and the reference's) output, extremes and splits included."""
    torch.manual_seed(3)
    c = 24
    gdn = GDN(c, inverse=True)
    with torch.no_grad():  # a diagonal and a few off-diagonal couplings, one of them the largest
        g = torch.eye(c) * 0.4
        g[3, 7], g[10, 2], g[c - 1, 0] = 0.9, 0.05, 0.2
        gdn.gamma.param.copy_(torch.sqrt(g + gdn.gamma.pedestal))
    layer = IntIGDN.from_gdn(gdn, 9, 8, 2**12 - 1, 2**15 - 1)
    assert layer._sparse_rows() is not None
    a = torch.randint(-4095, 4096, (1, c, 37, 290)).float()
    a[0, :, 0, :2] = torch.tensor([4095.0, -4095.0])
    got = layer(a)
    assert torch.equal(got, layer(a, impl="dense"))
    assert torch.equal(got, layer(a, impl="reference"))
    for threads in (1, 3):
        with torch_threads(threads):
            assert torch.equal(layer(a), got)
    dense = IntIGDN.from_gdn(GDN(c, inverse=True), 9, 8, 2**12 - 1, 2**15 - 1)
    dense.norm.weight[:] = np.maximum(dense.norm.weight, 1)
    dense.norm._cache.clear()
    assert dense._sparse_rows() is None  # a full gamma keeps the dense product
    ptr, idx, val = layer._sparse_rows()
    out = torch.empty_like(a)
    base = (a[0].numpy(), layer.sq_shift, float(layer.norm.in_bound))
    tail = (layer.norm.bias, 1.0, layer.mult, layer.shift, layer.out_bound, out[0].numpy(), 0, c)
    backwards = ptr.copy()
    backwards[1] = ptr[-1]  # row 0 takes every entry, row 1 starts after its end
    for bad in (
        (backwards, idx, val),
        (ptr, np.where(idx == idx[0], c, idx), val),  # a column past the channels
        (ptr, idx, val + 0.5),  # not integers
    ):
        with pytest.raises(ValueError, match="igdn_sparse"):
            _ext._intnet.igdn_sparse(*base, *bad, *tail)


def test_integer_synthesis_tracks_the_float_synthesis():
    torch.manual_seed(2)
    syn = HybridSynthesis(8, 16).eval()
    with torch.no_grad():
        syn.block.weight.normal_(0, 0.02)
        for m in syn.residual:
            if isinstance(m, nn.ConvTranspose2d):
                m.weight.normal_(0, 0.05)
    y = torch.round(torch.randn(1, 16, 2, 3) * 6 * 1024) / 1024
    gains = torch.rand(3, 16) + 0.5
    mods = {str(i): m for i, m in enumerate(syn.residual)}
    with PeakRecorder(mods) as rec, torch.no_grad():
        for q in range(3):
            syn(y * gains[q].view(1, -1, 1, 1))
    peaks = [rec.peaks[str(i)] for i in range(len(mods))]
    isyn = IntSynthesis.from_module(syn, gains, peaks, act_bits=(16, 16, 16, 12, 12, 12, 12),
                                    weight_bits=(10, 8, 8, 8))  # fmt: skip
    fast = [isyn(y, q) for q in range(3)]
    for q, got in enumerate(fast):
        assert got.dtype == torch.uint8 and got.shape == (1, 3, 32, 48)
        with torch.no_grad():
            want = syn(y * gains[q].view(1, -1, 1, 1)).clamp(0, 1).mul(255).round()
        assert (got.float() - want).abs().max() <= 2
    os.environ["NEURALCODEC_KERNELS"] = "reference"
    try:
        slow = [isyn(y, q) for q in range(3)]
    finally:
        del os.environ["NEURALCODEC_KERNELS"]
    assert all(torch.equal(a, b) for a, b in zip(fast, slow, strict=True))
    again = IntSynthesis.from_arrays(isyn.to_arrays("s."), "s.")
    assert torch.equal(again(y, 2), fast[2])
    # large latents decode tile by tile with a halo: the same integers as one pass
    big = torch.round(torch.randn(1, 16, 11, 9) * 6 * 1024) / 1024
    whole = isyn(big, 1, tile=64)
    for tile in (3, 4, 7):
        assert torch.equal(isyn(big, 1, tile=tile), whole), tile


# ----------------------------------------------------------------------------- elic-int

ENVIRONMENTS = ISA_ENVIRONMENTS


@pytest.mark.parametrize("name", ["elic-int", "elic-int4", "mbt-mean-int"])
def test_integer_codecs_decode_to_identical_pixels_under_every_instruction_set(tmp_path, name):
    from neuralcodec.api import encode_array

    if not weights_available(name):
        pytest.skip(f"weights of {name} not shipped")
    img = np.asarray(RNG.integers(0, 256, (48, 80, 3)), dtype=np.uint8)
    img = (img // 32 * 32).astype(np.uint8)  # some structure, some texture
    codec = get_codec(name)
    data = encode_array(img, name, 6)
    path = tmp_path / "x.ncf"
    path.write_bytes(data)
    _, recon = codec.encode_with_reconstruction(img, 6)
    want = hashlib.sha256(recon.tobytes()).hexdigest()
    for threads, env in ENVIRONMENTS:
        assert decoded_hash_in_subprocess(path, threads, env) == want, (threads, env)


_DECODE_WITH_KERNELS = """
import hashlib, importlib.util, sys, torch
spec = importlib.util.spec_from_file_location("neuralcodec.kernels._intnet", sys.argv[3])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
sys.modules["neuralcodec.kernels._intnet"] = module  # before neuralcodec imports its own
torch.set_num_threads(int(sys.argv[1]))
from neuralcodec.api import decode_bytes
from neuralcodec.kernels import _ext
assert _ext._intnet is module
data = open(sys.argv[2], "rb").read()
print(hashlib.sha256(decode_bytes(data)[0].tobytes()).hexdigest())
"""


@pytest.mark.skipif(
    platform.machine() != "x86_64" or shutil.which("gcc") is None, reason="x86-64 builds with gcc"
)
def test_every_instruction_set_build_of_the_epilogues_gives_the_same_pixels(tmp_path):
    """The C epilogues are compiled once per instruction set level and picked at load time;
    this builds the baseline and the AVX2 level alone and decodes with each."""
    if not weights_available("elic-int"):
        pytest.skip("weights of elic-int not shipped")
    from neuralcodec.api import encode_array

    y, x = np.mgrid[0:160, 0:224]
    img = np.stack([(x * 3 + y) % 256, (y * 5) % 256, (x * y // 7) % 256], -1).astype(np.uint8)
    img = np.clip(img.astype(int) + RNG.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)
    path = tmp_path / "x.ncf"
    path.write_bytes(encode_array(img, "elic-int", 5))
    _, recon = get_codec("elic-int").encode_with_reconstruction(img, 5)
    want = hashlib.sha256(recon.tobytes()).hexdigest()
    source = REPO_DIR / "neuralcodec" / "kernels" / "_intnet.c"
    include = sysconfig.get_paths()["include"]
    for march in ("x86-64", "x86-64-v3"):
        so = tmp_path / f"intnet_{march}.so"
        subprocess.run(
            ["gcc", "-O3", "-std=c11", "-fno-math-errno", "-shared", "-fPIC", f"-march={march}",
             "-DNEURALCODEC_NO_CLONES", f"-I{include}", str(source), "-o", str(so)],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        for threads in (1, 2):
            out = subprocess.run(
                [sys.executable, "-c", _DECODE_WITH_KERNELS, str(threads), str(path), str(so)],
                cwd=REPO_DIR, check=True, timeout=600, capture_output=True, text=True,
            )  # fmt: skip
            assert out.stdout.strip() == want, (march, threads)


def test_mbt_mean_int_codes_the_same_latents_and_tracks_the_float_synthesis():
    if not weights_available("mbt-mean-int"):
        pytest.skip("weights of mbt-mean-int not shipped")
    img = np.asarray(RNG.integers(0, 256, (64, 96, 3)), dtype=np.uint8)
    img = (img // 64 * 64 + 20).astype(np.uint8)
    integer, float_ = get_codec("mbt-mean-int"), get_codec("mbt-mean")
    a, b = integer.encode(img, 5), float_.encode(img, 5)
    assert a.streams == b.streams  # the entropy side is the float model's, exact already
    pa, pb = integer.decode(a).astype(int), float_.decode(b).astype(int)
    assert np.abs(pa - pb).max() <= 6 and np.abs(pa - pb).mean() < 0.5
    assert a.header["weights_sha256"] != b.header["weights_sha256"]
    with pytest.raises(WeightsError, match="other weights"):
        integer.check_weights(b.header)


def test_integer_synthesis_twin_refuses_a_foreign_or_orphaned_base(tmp_path):
    import shutil

    from neuralcodec.compress import hyperprior
    from neuralcodec.models import packing

    folder = weights_dir()
    if not (folder / "mbt-mean-int.safetensors").is_file():
        pytest.skip("weights of mbt-mean-int not shipped")
    twin = tmp_path / "mbt-mean-int.safetensors"
    shutil.copy(folder / "mbt-mean-int.safetensors", twin)
    with pytest.raises(WeightsError, match="not beside it"):
        hyperprior.load(twin)
    base = tmp_path / "mbt-mean.safetensors"
    original = packing.unpack((folder / "mbt-mean.safetensors").read_bytes())
    base.write_bytes(original[:-1] + b" ")
    with pytest.raises(WeightsError, match="made for other"):
        hyperprior.load(twin)
    base.write_bytes(packing.pack(original)[:-1] + b" ")  # a damaged packed base
    with pytest.raises(WeightsError, match="cannot read weights"):
        hyperprior.load(twin)
    with pytest.raises(WeightsError, match="not an integer-synthesis file"):
        hyperprior.load(folder / "mbt-mean.safetensors")
    shutil.copy(folder / "mbt-mean.safetensors", base)
    loaded = hyperprior.load(twin)
    assert loaded.config.m == loaded.synthesis_int.block.cin


# ----------------------------------------------------------------------------- low rank, pruning


def test_full_rank_factorisation_is_the_layer_and_truncation_keeps_the_largest_part():
    from neuralcodec.compress.lowrank import choose_rank, factorize, parameter_count

    torch.manual_seed(3)
    for m in (nn.Conv2d(12, 16, 3, 1, 1), nn.ConvTranspose2d(12, 16, 5, 2, 2, 1)):
        x = torch.randn(1, 12, 7, 9)
        with torch.no_grad():
            assert torch.allclose(factorize(m, 10_000)(x), m(x), atol=1e-5)
            half = factorize(m, 6)
            err = (half(x) - m(x)).pow(2).mean()
            worse = (factorize(m, 2)(x) - m(x)).pow(2).mean()
        assert err < worse and parameter_count(half) < parameter_count(m)
        assert 1 <= choose_rank(m, 0.5) < choose_rank(m, 0.99) <= 16


def test_low_rank_hyper_synthesis_is_part_of_the_architecture():
    from neuralcodec.models.elic import ElicConfig, ElicModel

    config = ElicConfig(n=32, m=96, hyper_ranks=(0, 16, 24))
    model = ElicModel(config)
    widths = [m.out_channels for m in model.h_s if not isinstance(m, nn.ReLU)]
    assert widths == [96, 16, 144, 24, 192]
    again = ElicConfig.from_dict(config.to_dict())
    assert again.hyper_ranks == (0, 16, 24)
    assert "hyper_ranks" not in ElicConfig(n=32, m=96).to_dict()  # old files keep their bytes


def test_pruned_synthesis_keeps_the_chosen_channels_exactly():
    from neuralcodec.compress.prune import channel_importance, prune_synthesis

    torch.manual_seed(4)
    syn = HybridSynthesis(8, 16).eval()
    y = torch.randn(1, 16, 2, 3) * 3
    imp = channel_importance(syn, [y])
    assert [len(i) for i in imp] == [8, 8, 8] and all((i >= 0).all() for i in imp)
    same = prune_synthesis(syn, (8, 8, 8), imp)  # keeping everything changes nothing
    with torch.no_grad():
        assert torch.allclose(same(y), syn(y), atol=1e-6)
    small = prune_synthesis(syn, (8, 4, 2), imp)
    assert [m.out_channels for m in small.residual if isinstance(m, nn.ConvTranspose2d)] == [
        8,
        4,
        2,
        3,
    ]
    with torch.no_grad():
        assert small(y).shape == syn(y).shape


# ----------------------------------------------------------------------------- GPTQ


@pytest.mark.parametrize("transposed", [False, True])
def test_gptq_rounding_lowers_the_output_error_of_plain_rounding(transposed):
    from neuralcodec.compress import gptq
    from neuralcodec.compress.intnet import quantize_weights

    torch.manual_seed(0)
    cin, cout = 12, 8
    layer = nn.ConvTranspose2d(cin, cout, 3, 2, 1, 1) if transposed else nn.Conv2d(cin, cout, 3)
    mix = torch.randn(cin, cin) / cin**0.5  # correlated input channels: where GPTQ helps
    xs = [torch.einsum("dc,bchw->bdhw", mix, torch.randn(2, cin, 9, 9)) for _ in range(4)]
    with gptq.HessianRecorder({"l": layer}) as rec, torch.no_grad():
        for x in xs:
            layer(x)
    h = rec.hessian("l")
    assert h.shape == (cin * 9, cin * 9) and np.allclose(h, h.T)
    bits = 4
    q_gptq, step_g = gptq.quantize(layer.weight, h, bits, transposed)
    q_plain, step_p = quantize_weights(layer.weight, bits, transposed)
    assert np.array_equal(step_g, step_p)  # same format: only the integers differ
    assert np.abs(q_gptq).max() <= 2 ** (bits - 1) - 1 and q_gptq.shape == q_plain.shape
    shape = (1, -1, 1, 1) if transposed else (-1, 1, 1, 1)

    def output_error(q):
        w = torch.from_numpy(q * step_g.reshape(shape)).float()
        f = F.conv_transpose2d if transposed else F.conv2d
        kw = {"stride": 2, "padding": 1, "output_padding": 1} if transposed else {}
        with torch.no_grad():
            return sum(float(((f(x, w, **kw) - f(x, layer.weight, **kw)) ** 2).sum()) for x in xs)

    assert output_error(q_gptq) < output_error(q_plain)
    with pytest.raises(ValueError, match="does not match"):
        gptq.quantize(layer.weight, h[:-1, :-1], bits, transposed)
