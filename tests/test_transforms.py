"""The hybrid block + GDN transforms and their configuration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuralcodec.codecs.learned_image import MbtMean
from neuralcodec.models.frozen import freeze, load, save
from neuralcodec.models.hyperprior import HyperpriorConfig, HyperpriorModel
from neuralcodec.models.transforms import (
    BLOCK,
    HybridAnalysis,
    HybridSynthesis,
    init_block_basis,
    make_transforms,
)


def _crops(n: int = 64, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth random images: low-pass noise, so principal components are meaningful."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, size // 8, size // 8, generator=g)
    up = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear")
    return (up + 0.02 * torch.rand(n, 3, size, size, generator=g)).clamp(0, 1)


def test_full_block_basis_reconstructs_exactly():
    m = 3 * BLOCK * BLOCK
    g_a, g_s = HybridAnalysis(8, m), HybridSynthesis(8, m)
    init_block_basis(g_a, g_s, _crops())
    x = _crops(4, 48, seed=1)
    with torch.no_grad():
        err = (g_s(g_a(x)) - x).abs().max()
    assert err < 1e-4


def test_block_basis_is_orthonormal_and_ordered_by_variance():
    m = 40
    g_a, g_s = HybridAnalysis(8, m), HybridSynthesis(8, m)
    crops = _crops()
    init_block_basis(g_a, g_s, crops)
    basis = g_a.block.weight.reshape(m, -1)
    assert torch.allclose(basis @ basis.T, torch.eye(m), atol=1e-4)
    with torch.no_grad():
        var = g_a.block(crops - 0.5).pow(2).mean(dim=(0, 2, 3))
    assert torch.all(var[:-1] >= var[1:] - 1e-6)


def test_truncated_basis_loses_less_than_the_same_number_of_pixels():
    # Keeping the leading components must beat any fixed subset of raw coordinates.
    m = 48
    g_a, g_s = HybridAnalysis(8, m), HybridSynthesis(8, m)
    crops = _crops(128)
    init_block_basis(g_a, g_s, crops)
    with torch.no_grad():
        err_pca = (g_s(g_a(crops)) - crops).pow(2).mean()
    err_mean = (crops - 0.5).pow(2).mean()
    assert err_pca < 0.1 * err_mean


def test_configs_without_a_transform_field_are_gdn_models():
    old = {"kind": "mean-scale", "n": 32, "m": 48, "lambdas": [0.01, 0.02]}
    config = HyperpriorConfig.from_dict(old)
    assert config.transform == "gdn"
    assert HyperpriorConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown transform"):
        make_transforms("wavelet", 8, 8)


def test_hybrid_model_survives_freezing_and_codes_bit_exactly(tmp_path):
    torch.manual_seed(0)
    model = HyperpriorModel(HyperpriorConfig(kind="mean-scale", n=32, m=48, transform="hybrid"))
    init_block_basis(model.g_a, model.g_s, _crops(32, 64))
    path = tmp_path / "hybrid.safetensors"
    save(freeze(model, {"model_id": "tiny-hybrid"}), path)
    assert load(path).config.transform == "hybrid"
    codec = MbtMean(weights=path)
    rng = np.random.default_rng(0)
    img = (_crops(1, 96, seed=3)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    img = np.ascontiguousarray(img[:80, :72] ^ rng.integers(0, 4, (80, 72, 3), dtype=np.uint8))
    first, second = codec.encode(img, 5), codec.encode(img, 5)
    assert first.streams == second.streams
    rec = codec.decode(first)
    assert rec.shape == img.shape
    # The untrained hybrid model is already a block transform: a high quality level is close.
    mse = np.mean((rec.astype(float) - img.astype(float)) ** 2)
    assert 10 * np.log10(255**2 / mse) > 25
