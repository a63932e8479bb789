"""The ELIC codec: bit-exact round trips, determinism, rate accounting, training/coding agreement.

A small random model (n=32, m=48, groups 8/8/16/16) is frozen to a temporary weights file once
per module. Its gains and hyper bias are set so that y carries a few thousand bits, and the last
layers of the parameter aggregation are randomised so that every context really matters.
"""

from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from conftest import REPO_DIR
from torch.nn import functional as F

from neuralcodec.codecs.base import CodecError, Encoded, codec_class
from neuralcodec.codecs.learned_elic import ElicCodec
from neuralcodec.models import checker, elic, frozen
from neuralcodec.models.fixedpoint import ACT_BITS, to_fixed
from neuralcodec.models.frozen import WeightsError
from neuralcodec.models.hyperprior import HyperpriorConfig, HyperpriorModel, rd_loss

CONFIG = elic.ElicConfig(n=32, m=48, groups=(8, 8, 16, 16), ctx_hidden=24, agg_hidden=32)
QUALITY = 5


def _informative_model() -> elic.ElicModel:
    torch.manual_seed(0)
    model = elic.ElicModel(CONFIG)
    with torch.no_grad():
        model.y_gain.log_gain.add_(3.0)
        model.y_gain.log_inverse.sub_(3.0)
        model.h_s[-1].bias[: CONFIG.m].fill_(2.0)
        for seq in model.param_agg:
            seq[-1].weight.normal_(0, 0.05)
            seq[-1].bias.normal_(0, 0.1)
    return model.eval()


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    noise = np.random.default_rng(seed).integers(0, 40, (h, w, 3))
    img = np.stack([xx * 2, yy * 2, xx + yy], axis=2) + noise
    return img.clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: the suite shares two cores; the subprocess test uses another count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("elic") / "elic.safetensors"
    frozen.save(frozen.freeze(_informative_model(), meta={"model_id": "elic-test"}), path)
    return path


@pytest.fixture(scope="module")
def codec(weights) -> ElicCodec:
    return ElicCodec(weights)


@pytest.fixture(scope="module")
def coded(codec):
    img = _image(128, 128)
    encoded, reconstruction = codec.encode_with_reconstruction(img, QUALITY)
    return img, encoded, reconstruction


# ------------------------------------------------------------------------------- structure


def test_default_groups_are_uneven_and_cover_the_latent():
    assert elic.uneven_groups(160) == (16, 16, 32, 48, 48)
    assert elic.uneven_groups(320) == (16, 16, 32, 64, 192)
    assert elic.ElicConfig().groups == (16, 16, 32, 48, 48)
    with pytest.raises(ValueError):
        elic.ElicConfig(m=48, groups=(8, 8, 16))
    with pytest.raises(ValueError):
        elic.ElicConfig(m=48)


@pytest.mark.parametrize("h, w", [(1, 1), (4, 4), (5, 7), (8, 3)])
def test_checkerboard_partitions_every_position_exactly_once(h, w):
    anchor, non_anchor = elic.checkerboard_masks(h, w)
    assert torch.equal(anchor + non_anchor, torch.ones(1, 1, h, w))
    assert int(anchor.sum()) == (h * w + 1) // 2
    a = anchor[0, 0]
    # no two anchors are 4-neighbours: each non-anchor sees anchors on all its sides
    assert not bool((a[1:, :] * a[:-1, :]).any()) and not bool((a[:, 1:] * a[:, :-1]).any())


def test_codec_is_registered_under_its_name_and_id():
    assert codec_class("elic") is ElicCodec
    assert ElicCodec.codec_id == 4 and ElicCodec.modality == "image"


def test_fresh_model_is_the_mean_scale_hyperprior():
    """Warm start: with zero-initialised aggregation, parameters equal the hyperprior's."""
    torch.manual_seed(1)
    hp = HyperpriorModel(HyperpriorConfig(n=32, m=96))
    model = elic.ElicModel(elic.ElicConfig(n=32, m=96, groups=(16, 16, 32, 32)))
    missing, _ = model.load_state_dict(hp.state_dict(), strict=False)
    assert all(k.split(".")[0] in ("channel_ctx", "spatial_ctx", "param_agg") for k in missing)
    x, q = torch.rand(1, 3, 64, 64), torch.tensor([3])
    with torch.no_grad():
        z_hat = torch.round(hp.h_a(hp.g_a(x) * hp.y_gain.gain(q)) * hp.z_gain.gain(q))
        scales, means = hp.hyper_params(z_hat, q)
        hyper = model.h_s(z_hat * model.z_gain.inverse(q))
        zero = torch.zeros(1, 32, *hyper.shape[-2:])
        s1, m1 = model.group_params(1, hyper, torch.zeros(1, 32, *hyper.shape[-2:]), zero)
    assert torch.allclose(s1, scales[:, 16:32]) and torch.allclose(m1, means[:, 16:32])


# ------------------------------------------------------------------------------- fixed point


def test_fixed_point_parameters_track_the_float_network(weights):
    frozen = elic.load(weights)
    model = frozen.model
    torch.manual_seed(2)
    hyper = torch.randn(1, 2 * CONFIG.m, 6, 6)
    prev = [torch.round(4 * torch.randn(1, 8, 6, 6))]
    hat = torch.round(4 * torch.randn(1, 8, 6, 6))
    anchor, non_anchor = elic.checkerboard_masks(6, 6)
    with torch.no_grad():
        ch = model.channel_ctx[0](prev[0])
        sp = model.spatial_ctx[1](hat * anchor) * non_anchor
        s_ref, m_ref = model.group_params(1, hyper, ch, sp)
    s_fx, m_fx = frozen.group_params_fixed(1, to_fixed(hyper), [to_fixed(prev[0])], to_fixed(hat))
    assert torch.allclose(s_fx * 2.0**-ACT_BITS, s_ref.double(), atol=0.02)
    assert torch.allclose(m_fx * 2.0**-ACT_BITS, m_ref.double(), atol=0.02)
    assert torch.equal(s_fx, torch.round(s_fx)) and torch.equal(m_fx, torch.round(m_fx))


def test_contexts_change_the_parameters(weights):
    """Spatial context moves only non-anchors; channel context moves later groups."""
    frozen = elic.load(weights)
    torch.manual_seed(3)
    hyper = to_fixed(torch.randn(1, 2 * CONFIG.m, 6, 6))
    prev = [to_fixed(torch.round(3 * torch.randn(1, 8, 6, 6)))]
    hat = to_fixed(torch.round(3 * torch.randn(1, 8, 6, 6)))
    anchor = elic.checkerboard_masks(6, 6, torch.bool)[0].expand(1, 8, 6, 6)
    _, m_anchor_pass = frozen.group_params_fixed(1, hyper, prev, None)
    _, m_second_pass = frozen.group_params_fixed(1, hyper, prev, hat)
    assert torch.equal(m_anchor_pass[anchor], m_second_pass[anchor])
    assert not torch.equal(m_anchor_pass[~anchor], m_second_pass[~anchor])
    _, m_other_prev = frozen.group_params_fixed(1, hyper, [prev[0] + 2**ACT_BITS], None)
    assert not torch.equal(m_anchor_pass, m_other_prev)


@pytest.mark.parametrize("k", [0, 1])
@pytest.mark.parametrize("hw", [(5, 7), (6, 8)])  # gathered; packed halves (models/checker.py)
def test_per_pass_parameters_are_the_full_map_integers_at_that_pass(weights, k, hw):
    """The coder's gathered path (channel context once, aggregation at one pass's positions)."""
    frozen = elic.load(weights)
    torch.manual_seed(4)
    h, w = hw
    hyper = to_fixed(torch.randn(2, 2 * CONFIG.m, h, w))
    prev = [to_fixed(torch.round(3 * torch.randn(2, 8, h, w)))][:k]
    hat = to_fixed(torch.round(3 * torch.randn(2, 8, h, w)))
    masks = elic.checkerboard_masks(h, w, torch.bool)
    channel = frozen.channel_context_fixed(k, prev)
    for p, mask in enumerate(masks):
        full = frozen.group_params_fixed(k, hyper, prev, hat if p else None)
        part = frozen.pass_params_fixed(k, hyper, channel, hat if p else None, mask[0, 0])
        sel = mask.expand(2, 8, h, w)
        for f, g in zip(full, part, strict=True):
            assert g.shape == (2, 8, int(mask.sum()))
            assert torch.equal(f[sel], g.reshape(-1))


def test_checkerboard_halves_are_the_masked_positions_and_merge_back():
    torch.manual_seed(5)
    x = torch.randint(-50, 50, (2, 3, 6, 10)).double()
    for p, mask in enumerate(elic.checkerboard_masks(6, 10, torch.bool)):
        assert torch.equal(checker.half(x, p).reshape(-1), x[mask.expand_as(x)])
    assert torch.equal(checker.merge(checker.half(x, 0), checker.half(x, 1)), x)


@pytest.mark.parametrize("kernel", [3, 5, 7])
def test_half_convolution_is_the_full_one_at_the_non_anchors(kernel):
    torch.manual_seed(6)
    x = torch.randint(-50, 50, (2, 3, 8, 6)).double()
    w = torch.randint(-9, 10, (4, 3, kernel, kernel)).double()
    anchor = elic.checkerboard_masks(8, 6, torch.float64)[0]
    full = F.conv2d(x * anchor, w, None, 1, kernel // 2)
    got = checker.half_conv(checker.half(x, 0), checker.half_weights(w))
    assert torch.equal(got, checker.half(full, 1))


@pytest.mark.parametrize("plan", ["chosen", "float64", "split"])
def test_integer_spatial_context_at_the_non_anchors_is_the_full_maps(plan, monkeypatch):
    """``spatial_others_fixed``'s IntNet path under every float plan of the layer."""
    from neuralcodec.compress.intnet import IntNet

    torch.manual_seed(7)
    seq = torch.nn.Sequential(torch.nn.Conv2d(8, 16, 5, padding=2))
    net = IntNet.from_sequential(seq, [6.0])
    layer = net.layers[0]
    split, k = layer._prepared()[1]
    if plan == "float64":
        layer._cache["plan"] = (0, 0)
    elif plan == "split":  # the value split is exact wherever the plain plan is
        layer._cache["plan"] = ((int(layer.in_bound).bit_length() + 1) // 2, max(k, 1))
    hat = to_fixed(torch.round(4 * torch.randn(1, 8, 6, 8)))
    anchor = elic.checkerboard_masks(6, 8, torch.float64)[0]
    want = checker.half(net(hat * anchor), 1)
    holder = types.SimpleNamespace()
    for impl in ("c", "reference"):  # the C epilogue, then the torch one
        if impl == "reference":
            monkeypatch.setenv("NEURALCODEC_KERNELS", "reference")
        got = elic._half_spatial(holder, 0, net, checker.half(hat, 0))
        assert torch.equal(got, want), (plan, impl)
    packed = checker.half(hat, 0)
    a = checker.net_input(net, packed)
    assert torch.equal(checker.run_prepared(net, a), net(packed))


# ------------------------------------------------------------------------------- coding


def test_round_trip_decodes_the_encoders_reconstruction(codec, coded):
    img, encoded, reconstruction = coded
    decoded = codec.decode(encoded)
    assert decoded.shape == img.shape and decoded.dtype == np.uint8
    assert np.array_equal(decoded, reconstruction)
    assert set(encoded.streams) == {"z", "y"} and len(encoded.streams["y"]) > 200


def test_round_trip_with_padding(codec):
    img = _image(37, 70, seed=1)
    encoded, reconstruction = codec.encode_with_reconstruction(img, 2)
    assert encoded.header["shape"] == [37, 70, 3]
    assert np.array_equal(codec.decode(encoded), reconstruction)


def test_encoding_twice_gives_identical_bytes(codec, coded):
    img, encoded, _ = coded
    again = codec.encode(img, QUALITY)
    assert again.streams == encoded.streams and again.header == encoded.header


_DECODE_SCRIPT = """
import sys, numpy as np, torch
torch.set_num_threads(int(sys.argv[1]))
from neuralcodec.codecs.base import Encoded
from neuralcodec.codecs.learned_elic import ElicCodec
d = np.load(sys.argv[3])
enc = Encoded("elic", {"shape": [128, 128, 3], "quality": int(d["quality"])},
              {"z": d["z"].tobytes(), "y": d["y"].tobytes()})
np.save(sys.argv[4], ElicCodec(sys.argv[2]).decode(enc))
"""


def test_decoding_in_another_process_with_other_threads_gives_identical_pixels(
    weights, coded, tmp_path
):
    _, encoded, reconstruction = coded
    streams = tmp_path / "streams.npz"
    s = encoded.streams
    np.savez(streams, z=np.frombuffer(s["z"], np.uint8), y=np.frombuffer(s["y"], np.uint8),
             quality=QUALITY)  # fmt: skip
    threads = 2 if torch.get_num_threads() == 1 else 1
    out = tmp_path / "pixels.npy"
    cmd = [sys.executable, "-c", _DECODE_SCRIPT, str(threads), str(weights), str(streams), str(out)]
    subprocess.run(cmd, cwd=REPO_DIR, check=True, timeout=600, capture_output=True)
    assert np.array_equal(np.load(out), reconstruction)


def test_estimated_rate_matches_the_stream_sizes(codec, coded):
    img, encoded, _ = coded
    estimate = codec.estimate_bits(img, QUALITY)
    for name in ("z", "y"):
        actual = 8 * len(encoded.streams[name])
        assert estimate[name] <= actual <= 1.01 * estimate[name] + 8 * 16, name


def test_training_rate_is_close_to_the_coded_rate(codec, weights, coded):
    """Eval-mode forward (rounding around the float means) against the real bytes: the codec's
    ``estimated_bits`` is that forward's rate, and both are within 5% of the coded size (the
    small test model's integer contexts stray further from its float ones than a trained one's)."""
    img, encoded, _ = coded
    model = elic.load(weights).model
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        out = model(x, torch.tensor([QUALITY - 1]))
    bits = sum(float(-torch.log2(lik).sum()) for lik in out["likelihoods"].values())
    assert codec.estimated_bits(img, QUALITY) == pytest.approx(bits, rel=1e-6)
    assert abs(8 * encoded.payload_bytes - bits) <= 0.05 * bits


def test_training_step_runs_and_reaches_every_context_net():
    model = elic.ElicModel(CONFIG).train()
    with torch.no_grad():
        for seq in model.param_agg:
            seq[-1].weight.normal_(0, 0.05)
    x, q = torch.rand(2, 3, 64, 64), torch.tensor([0, 7])
    out = model(x, q)
    assert out["x_hat"].shape == x.shape
    assert out["likelihoods"]["y"].shape == (2, CONFIG.m, 4, 4)
    stats = rd_loss(out, x, torch.tensor(CONFIG.lambdas)[q])
    stats["loss"].backward()
    for nets in (model.channel_ctx, model.spatial_ctx, model.param_agg):
        for net in nets:
            assert net[0].weight.grad is not None and net[0].weight.grad.abs().sum() > 0


# ------------------------------------------------------------------------------- bad input


def test_corrupt_or_missing_streams_raise_codec_errors(codec, coded):
    _, encoded, _ = coded
    for bad in (b"", encoded.streams["y"][:10], b"\xff" * 64):
        broken = Encoded("elic", encoded.header, {"z": encoded.streams["z"], "y": bad})
        with pytest.raises(CodecError):
            codec.decode(broken)
    with pytest.raises(CodecError, match="missing stream"):
        codec.decode(Encoded("elic", encoded.header, {"z": encoded.streams["z"]}))


def test_bad_quality_and_input_are_refused(codec):
    with pytest.raises(CodecError):
        codec.encode(_image(64, 64), 9)
    with pytest.raises(CodecError):
        codec.encode(np.zeros((64, 64), np.uint8), 3)


def test_weights_problems_raise_weights_errors(tmp_path, coded, weights):
    with pytest.raises(WeightsError, match="no weights"):
        ElicCodec(tmp_path / "absent.safetensors").encode(_image(64, 64), 1)
    other = tmp_path / "mbt.safetensors"
    frozen.save(frozen.freeze(HyperpriorModel(HyperpriorConfig(n=32, m=48))), other)
    with pytest.raises(WeightsError):
        elic.load(other)
    _, encoded, _ = coded
    foreign = dict(encoded.header, weights_sha256="0" * 64)
    with pytest.raises(WeightsError, match="other weights"):
        ElicCodec(weights).decode(Encoded("elic", foreign, encoded.streams))
