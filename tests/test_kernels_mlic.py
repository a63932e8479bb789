"""The ``mlic`` context-model kernels: exact int64 linear attention and the fused fixed-point
1x1 layers, reference against Triton (run on CPU under ``TRITON_INTERPRET=1``), bit for bit."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from neuralcodec import kernels
from neuralcodec.kernels.context_model import linear_attention_reference
from neuralcodec.models.fixedpoint import FixedPointNet, to_fixed

REPO_DIR = Path(__file__).resolve().parents[1]
needs_triton = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None, reason="triton not installed"
)


def _attention_inputs(seed: int, b=1, p=37, n=29, d=16, c=21):
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(1, 257, (b, p, d), generator=g)
    k = torch.randint(1, 257, (b, n, d), generator=g)
    v = torch.randint(-(2**15) + 1, 2**15, (b, n, c), generator=g)
    return q, k, v


def test_linear_attention_reference_is_the_rounded_exact_quotient():
    q, k, v = _attention_inputs(0, p=9, n=7, d=3, c=4)
    got = kernels.linear_attention_exact(q, k, v, impl="reference")
    for p in range(9):
        w = [int((q[0, p] * k[0, j]).sum()) for j in range(7)]
        for c in range(4):
            num = sum(w[j] * int(v[0, j, c]) for j in range(7))
            den = sum(w)
            assert int(got[0, p, c]) == (2 * num + den) // (2 * den)  # Python ints: no overflow
    # the output is a weighted mean of the values: inside their range, per channel
    assert torch.all(got >= v.min(1, keepdim=True).values)
    assert torch.all(got <= v.max(1, keepdim=True).values)


def test_linear_attention_extreme_values_stay_exact_in_int64():
    n = 70000  # more positions than a 4k x 4k image's latent has anchors
    q = torch.full((1, 3, 16), 256, dtype=torch.int64)
    k = torch.full((1, n, 16), 256, dtype=torch.int64)
    v = torch.full((1, n, 2), 2**15 - 1, dtype=torch.int64)
    v[0, ::2, 1] = -(2**15) + 1
    got = linear_attention_reference(q, k, v)
    assert got[0, :, 0].tolist() == [2**15 - 1] * 3
    assert got[0, :, 1].tolist() == [0] * 3  # exact mean of +-(2^15-1), half up


def test_bad_inputs_are_refused():
    q, k, v = _attention_inputs(1)
    with pytest.raises(TypeError):
        kernels.linear_attention_exact(q.double(), k, v)
    with pytest.raises(ValueError):
        kernels.linear_attention_exact(q, k[:, :, :5], v)
    net = FixedPointNet.from_sequential(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1)))
    with pytest.raises(ValueError, match="1x1"):
        kernels.fixed_pointwise(torch.zeros(1, 4, 5, dtype=torch.float64), net)


def _pointwise_net(seed: int) -> FixedPointNet:
    torch.manual_seed(seed)
    seq = nn.Sequential(
        nn.Conv2d(40, 24, 1), nn.ReLU(), nn.Conv2d(24, 24, 1), nn.ReLU(), nn.Conv2d(24, 6, 1)
    )  # fmt: skip
    return FixedPointNet.from_sequential(seq)


def test_fixed_pointwise_reference_equals_the_fixed_point_network():
    net = _pointwise_net(2)
    x = to_fixed(torch.randn(2, 40, 53) * 3)
    want = net(x[..., None])[..., 0]
    assert torch.equal(kernels.fixed_pointwise(x, net, impl="reference"), want)


def test_cpu_dispatch_takes_the_reference():
    q, k, v = _attention_inputs(3)
    if os.environ.get("TRITON_INTERPRET") != "1":
        assert kernels.implementation("linear_attention_exact", q, k, v) == "reference"
    assert [i.name for i in kernels.KERNELS["linear_attention_exact"]] == ["triton", "reference"]
    assert [i.name for i in kernels.KERNELS["fixed_pointwise"]] == ["triton", "reference"]


PARITY = """
import json, torch
from torch import nn
from neuralcodec import kernels
from neuralcodec.models.fixedpoint import FixedPointNet, to_fixed
out = {}
for seed, (b, p, n, d, c) in enumerate([(1, 37, 29, 16, 21), (2, 64, 100, 16, 128), (1, 5, 3, 7, 3)]):
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(1, 257, (b, p, d), generator=g)
    k = torch.randint(1, 257, (b, n, d), generator=g)
    v = torch.randint(-(2**15) + 1, 2**15, (b, n, c), generator=g)
    a = kernels.linear_attention_exact(q, k, v, impl="triton")
    r = kernels.linear_attention_exact(q, k, v, impl="reference")
    out[f"attn{seed}"] = bool(torch.equal(a, r))
torch.manual_seed(4)
seq = nn.Sequential(nn.Conv2d(40, 24, 1), nn.ReLU(), nn.Conv2d(24, 24, 1), nn.ReLU(), nn.Conv2d(24, 6, 1))
net = FixedPointNet.from_sequential(seq)
x = to_fixed(torch.randn(2, 40, 53) * 50)
a = kernels.fixed_pointwise(x, net, impl="triton")
r = kernels.fixed_pointwise(x, net, impl="reference")
out["pointwise"] = bool(torch.equal(a, r))
out["picked"] = kernels.implementation("linear_attention_exact", q, k, v)
print(json.dumps(out))
"""


@needs_triton
def test_triton_kernels_equal_the_references_under_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(REPO_DIR)}
    run = subprocess.run(
        [sys.executable, "-c", PARITY], capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result.pop("picked") == "triton"
    assert all(result.values()), result
