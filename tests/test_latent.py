"""Latent codecs and the frozen-weights protocol: one code path for coding, decoding, counting."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO_DIR

from neuralcodec.codecs.base import CodecError
from neuralcodec.codecs.latent import (
    CategoricalLatent,
    FactorizedLatent,
    GaussianLatent,
    HyperpriorLatent,
    LatentContext,
)
from neuralcodec.entropy import rangecoder
from neuralcodec.entropy.categorical import CategoricalModel
from neuralcodec.entropy.models import FactorizedDensity, GaussianConditional
from neuralcodec.models import frozen
from neuralcodec.models.hyperprior import HyperpriorConfig, HyperpriorModel

SHAPE = (1, 4, 6, 10)


def _factorized(channels: int) -> FactorizedDensity:
    torch.manual_seed(1)
    density = FactorizedDensity(channels)
    with torch.no_grad():
        for p in density.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return density


def _roundtrip(codec, latent, ctx):
    streams, hat = codec.encode(latent, ctx)
    decoded = codec.decode(streams, ctx)
    bits = codec.bits(latent, ctx)
    return streams, hat, decoded, bits


def _assert_consistent(streams, hat, decoded, bits):
    assert torch.equal(hat, decoded)
    assert set(bits) == set(streams)
    for name, b in bits.items():  # the counter sees the encoder's symbols: same size, 4 lanes
        assert abs(len(streams[name]) - b / 8) <= 0.02 * b / 8 + 20, name


def test_factorized_latent_round_trips_and_counts_what_it_writes():
    tables = _factorized(SHAPE[1]).freeze()
    latent = torch.randn(SHAPE) * 6
    codec = FactorizedLatent(tables, "y")
    streams, hat, decoded, bits = _roundtrip(codec, latent, LatentContext(SHAPE))
    _assert_consistent(streams, hat, decoded, bits)
    assert torch.equal(hat, torch.round(latent).to(torch.int32))


def test_factorized_latent_refuses_a_shape_its_tables_do_not_fit():
    codec = FactorizedLatent(_factorized(4).freeze(), "y")
    with pytest.raises(ValueError, match="does not fit"):
        codec.encode(torch.zeros(1, 5, 2, 2), LatentContext((1, 5, 2, 2)))


def test_hyperprior_latent_conditions_y_on_the_decoded_side_latent():
    side_tables = _factorized(2).freeze()
    conditional = GaussianConditional()
    y_tables = conditional.freeze()

    def condition(z_int, qi):  # integer-only: scale index and mean from the decoded z
        idx = np.clip(z_int.numpy().sum(1, keepdims=True) + 8, 0, y_tables.num_tables - 1)
        idx = np.broadcast_to(idx.repeat(3, 2).repeat(3, 3), (1, 4, 6, 9)).astype(np.int32)
        means = torch.from_numpy(idx.astype(np.float64) / 4)
        return idx.reshape(-1).copy(), means

    codec = HyperpriorLatent(
        side=FactorizedLatent(side_tables, "z"),
        analysis=lambda y, qi: y[:, :2, ::3, ::3] * 0.5,
        synthesis=condition,
        main=GaussianLatent(y_tables, "y"),
        side_shape=lambda s: (1, 2, s[2] // 3, s[3] // 3),
    )
    torch.manual_seed(0)
    y = torch.randn(1, 4, 6, 9) * 5
    ctx = LatentContext((1, 4, 6, 9), 3)
    streams, hat, decoded, bits = _roundtrip(codec, y, ctx)
    assert list(streams) == ["z", "y"]
    _assert_consistent(streams, hat, decoded, bits)
    assert (hat - y).abs().max() <= 0.5 + 1e-6  # reconstruction = round(y - mean) + mean


@pytest.mark.parametrize("adaptive", [False, True])
def test_categorical_latent_round_trips_indices_including_out_of_range(adaptive):
    rng = np.random.default_rng(3)
    idx = rng.choice(16, size=(2, 50), p=np.r_[0.5, np.full(15, 0.5 / 15)]).astype(np.int32)
    idx[0, :3] = (-1, 16, 1000)  # outside 0..15: escape-coded, still exact
    if adaptive:
        codec = CategoricalLatent(num_categories=16)
    else:
        model = CategoricalModel(16)
        with torch.no_grad():
            model.logits[0] = 2.0
        codec = CategoricalLatent(tables=model.freeze())
    ctx = LatentContext(idx.shape)
    streams, hat, decoded, bits = _roundtrip(codec, torch.from_numpy(idx), ctx)
    _assert_consistent(streams, hat, decoded, bits)
    assert np.array_equal(decoded.numpy(), idx)
    assert len(streams["idx"]) < idx.size * 4 / 8 + 40  # skewed: well under 4 bits an index


def test_categorical_latent_needs_one_kind_of_table():
    with pytest.raises(ValueError):
        CategoricalLatent()
    with pytest.raises(ValueError):
        CategoricalLatent(tables=CategoricalModel(4).freeze(), num_categories=4)


def test_decoding_a_missing_stream_is_a_codec_error():
    codec = FactorizedLatent(_factorized(4).freeze(), "y")
    with pytest.raises(CodecError, match="missing stream 'y'"):
        codec.decode({}, LatentContext(SHAPE))


def test_truncated_stream_raises_a_decode_error_not_garbage_silently():
    tables = _factorized(4).freeze()
    codec = FactorizedLatent(tables, "y")
    streams, _ = codec.encode(torch.randn(1, 4, 32, 32) * 20, LatentContext((1, 4, 32, 32)))
    with pytest.raises(rangecoder.DecodeError):
        codec.decode({"y": streams["y"][:5]}, LatentContext((1, 4, 32, 32)))


# ----------------------------------------------------------------------------- frozen protocol


def _sha(path: Path) -> str:
    """sha256 of a weights file as written (a packed shipped file: what it unpacks to)."""
    from neuralcodec.models.packing import unpack

    return hashlib.sha256(unpack(path.read_bytes())).hexdigest()


@pytest.mark.parametrize("kind", ["mean-scale", "scale", "factorized"])
def test_freeze_save_load_save_is_a_fixed_point(tmp_path, kind):
    torch.manual_seed(0)
    model = HyperpriorModel(HyperpriorConfig(kind=kind, n=16, m=24))
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    sha = frozen.save(frozen.freeze(model, {"model_id": f"t-{kind}"}), first)
    loaded = frozen.load(first)
    assert type(loaded) is frozen.FrozenHyperprior and loaded.meta["model_id"] == f"t-{kind}"
    assert frozen.save(loaded, second) == sha == _sha(second)


@pytest.mark.parametrize("name", ["elic", "mbt-mean"])
def test_shipped_weights_load_through_the_one_protocol_and_resave_byte_for_byte(tmp_path, name):
    path = REPO_DIR / "weights" / f"{name}.safetensors"
    if not path.is_file():
        pytest.skip(f"{name} weights not shipped")
    assert frozen.save(frozen.load(path), tmp_path / "again.safetensors") == _sha(path)


def test_load_refuses_a_family_the_caller_does_not_decode(tmp_path):
    path = tmp_path / "m.safetensors"
    frozen.save(frozen.freeze(HyperpriorModel(HyperpriorConfig(n=16, m=24))), path)
    with pytest.raises(frozen.WeightsError, match="not elic"):
        frozen.load(path, kinds=("elic",))


def test_load_of_an_unknown_family_or_broken_file_is_one_line(tmp_path):
    path = tmp_path / "m.safetensors"
    frozen.save(frozen.freeze(HyperpriorModel(HyperpriorConfig(n=16, m=24))), path)
    from safetensors.numpy import load_file, save_file

    arrays = load_file(str(path))
    save_file(arrays, str(path), metadata={"config": '{"kind": "nope"}', "meta": "{}"})
    with pytest.raises(frozen.WeightsError, match="no model family"):
        frozen.load(path)
    del arrays["frozen.zinv"]
    save_file(arrays, str(path), metadata={"config": '{"kind": "mean-scale", "n": 16, "m": 24}'})
    with pytest.raises(frozen.WeightsError, match="do not match"):
        frozen.load(path)
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(frozen.WeightsError, match="cannot read"):
        frozen.load(path)
