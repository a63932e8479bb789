"""The latent probe behind docs/mlic.md "Adaptive context coding": its code-length models."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from neuralcodec.codecs.base import get_codec, weights_available
from neuralcodec.entropy.cdf import information_bits
from neuralcodec.models.fixedpoint import ACT_BITS

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "mlic_latent_probe.py"


@pytest.fixture(scope="module")
def probe():
    spec = importlib.util.spec_from_file_location("mlic_latent_probe", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def codec():
    if not weights_available("mlic"):
        pytest.skip("mlic weights missing")
    torch.set_num_threads(1)
    return get_codec("mlic")


def _sequential_bits(bits: list[int], p: float, strength: float) -> float:
    """Bit-by-bit counting estimator with a Beta(S (1 - p), S p) prior."""
    n0 = n1 = 0
    total = 0.0
    for b in bits:
        p1 = (n1 + strength * p) / (n0 + n1 + strength)
        total -= math.log2(p1 if b else 1 - p1)
        n0, n1 = n0 + (not b), n1 + b
    return total


def test_dirichlet_code_length_equals_the_sequential_estimator(probe):
    rng = np.random.default_rng(3)
    v = rng.integers(-3, 4, 200)
    ctx = rng.integers(0, 2, 200)
    priors = np.array([[0.3, 0.4, 0.2, 0.5], [0.6, 0.5, 0.5, 0.5]])
    got = probe.dirichlet_bits(ctx, ctx, v, priors, 8.0)
    want = 0.0
    for c in (0, 1):
        a = np.abs(v[ctx == c])
        for node in range(4):  # the unary nodes each value visits, in coding order
            seq = [int(x > node) for x in a if x >= node]
            want += _sequential_bits(seq, priors[c, node], 8.0)
    assert got == pytest.approx(want, rel=1e-9)
    # a very strong prior is the static model
    static = probe.dirichlet_bits(ctx, ctx, v, priors, None)
    assert probe.dirichlet_bits(ctx, ctx, v, priors, 1e7) == pytest.approx(static, rel=1e-4)


def test_empirical_bits(probe):
    assert probe.empirical_bits(np.zeros(10, np.int64), np.full(10, 5)) == 0.0
    ctx = np.array([0, 0, 1, 1, 1, 1])
    v = np.array([1, -1, 2, 3, 2, 3])
    assert probe.empirical_bits(ctx, v) == pytest.approx(6.0)


def test_records_every_symbol_with_its_table_and_exact_scale(probe, codec):
    rng = np.random.default_rng(0)
    img = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    img[16:48] //= 3
    sym = probe.record(codec, img, 4)
    frozen, _ = codec.frozen()
    m = frozen.config.m
    assert sym["v"].size == m * 4 * 4  # every latent element once (stride 16)
    tables = frozen.y_tables
    static = information_bits(sym["v"].astype(np.int32), sym["idx"].astype(np.int32), tables)
    assert static == pytest.approx(codec.estimate_bits(img, 4)["y"], rel=1e-12)
    # the recorded exact scales pick the recorded tables
    cond = frozen.model.y_conditional
    fx = np.round(sym["scale"] * 2.0**ACT_BITS).astype(np.int64)
    np.testing.assert_array_equal(cond.scale_indexes_fixed(fx, ACT_BITS), sym["idx"])
    assert "scale_indexes_fixed" not in vars(cond)  # the spy is removed
    res = probe.measure(sym, tables, probe.unary_priors(tables))
    assert res["binarised static"] == pytest.approx(res["static"], rel=0.02)
    assert set(sym["pass"].tolist()) == {0, 1} and sym["slice"].max() == 4
