"""The ``inr`` codec: exact round trips, the coded latents, rate estimates, bad streams, MACs."""

from __future__ import annotations

import copy
import hashlib
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save as save_bytes

from neuralcodec.codecs.base import CodecError, Encoded, get_codec
from neuralcodec.codecs.inr import (
    PRESETS,
    InrCodec,
    _loss,
    _refine_rounded,
    _run,
    fit,
    preset_with,
    quality_lambda,
)
from neuralcodec.codecs.latent.wavefront import decode_latents, encode_latents
from neuralcodec.container.binary import pack, unpack
from neuralcodec.container.bridge import from_encoded, to_encoded
from neuralcodec.models import inr_fixed as fx
from neuralcodec.models import inr_tables
from neuralcodec.models.frozen import WeightsError
from neuralcodec.models.inr import (
    InrConfig,
    InrModel,
    causal_contexts,
    mac_per_pixel,
)

REPO_DIR = Path(__file__).resolve().parents[1]


def _image(h: int = 32, w: int = 48) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 5, y * 7, (x + y) * 3 + 20], axis=2) % 256
    img[8:20, 12:30] = (210, 40, 90)
    return img.astype(np.uint8)


@pytest.fixture(scope="module")
def coded() -> tuple[InrCodec, Encoded, np.ndarray]:
    torch.set_num_threads(1)
    codec = InrCodec(preset="test")
    img = _image()
    return codec, codec.encode(img, 6), img


def test_registered_with_stable_id():
    codec = get_codec("inr", preset="fast")
    assert (codec.codec_id, codec.modality, codec.writes_ncf) == (10, "image", True)
    assert codec.weights_available() and codec.preset == "fast"
    with pytest.raises(CodecError):
        InrCodec(preset="turbo")


def test_round_trip_is_exact_and_repeatable(coded):
    codec, enc, img = coded
    first, second = codec.decode(enc), codec.decode(enc)
    assert first.shape == img.shape and first.dtype == np.uint8
    assert np.array_equal(first, second)
    assert np.array_equal(first, codec.last_stats["pixels"])
    flat = img.reshape(-1, 3).mean(axis=0)  # the best constant image
    assert np.mean((first.astype(float) - img) ** 2) < np.mean((flat - img) ** 2)


def test_decodes_identically_in_another_process_with_other_threads(coded, tmp_path):
    codec, enc, _ = coded
    path = tmp_path / "a.ncf"
    path.write_bytes(pack(from_encoded(codec, enc)))
    script = (
        "import sys, torch, numpy as np; torch.set_num_threads(2);"
        "from neuralcodec.container.binary import unpack;"
        "from neuralcodec.container.bridge import to_encoded;"
        "from neuralcodec.codecs.inr import InrCodec;"
        "e = to_encoded(unpack(open(sys.argv[1], 'rb').read()));"
        "sys.stdout.write(InrCodec().decode(e).tobytes().hex())"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        cwd=REPO_DIR,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert bytes.fromhex(out.stdout) == codec.decode(enc).tobytes()


def test_reference_kernels_decode_the_same_pixels(coded, monkeypatch):
    """The whole decoder on the plain references (wavefront ARM, PyTorch upsampler and conv)."""
    codec, enc, _ = coded
    fast = codec.decode(enc)
    monkeypatch.setenv("NEURALCODEC_KERNELS", "reference")
    assert np.array_equal(codec.decode(enc), fast)


def test_container_round_trip_keeps_architecture(coded):
    codec, enc, _ = coded
    back = to_encoded(unpack(pack(from_encoded(codec, enc))))
    assert back.header["preset"] == "test" and back.header["weights_sha256"] == ""
    assert np.array_equal(codec.decode(back), codec.decode(enc))


def test_stream_decodes_to_the_latents_the_encoder_coded():
    torch.set_num_threads(1)
    cfg = PRESETS["test"].arch
    model = InrModel(cfg, 20, 27)
    rng = np.random.default_rng(0)
    grids = [rng.laplace(0, 2.0, size=y.shape[-2:]).round().astype(np.int64) for y in model.latents]
    ints = {n: fx.quantize_tensors(fx.float_tensors(model, n), 8) for n in ("arm", "ups", "syn")}
    nets = fx.assemble(cfg, ints, dict.fromkeys(ints, 8))
    layout = fx.make_layout(cfg, 20, 27)
    data, bits = encode_latents(nets, layout, grids)
    decoded = decode_latents(nets, layout, data)
    assert all(np.array_equal(a, b) for a, b in zip(decoded, grids, strict=True))
    assert abs(8 * len(data) - bits) <= 64 + 0.02 * bits  # a few bytes of range-coder flush


def test_estimated_rate_matches_stream_sizes(coded):
    codec, enc, _ = coded
    est, sizes = codec.last_stats["estimated_bits"], codec.last_stats["stream_bytes"]
    for name, bits in est.items():
        assert abs(8 * sizes[name] - bits) <= 64 + 0.02 * bits, name


def test_wavefronts_respect_causality():
    cfg = InrConfig(levels=3, arm_context=24)
    layout = fx.make_layout(cfg, 9, 13)
    wave = np.empty(layout.size, dtype=np.int64)
    wave.fill(-1)  # padding: decoded before everything
    for t in range(len(layout.starts) - 1):
        wave[layout.positions[layout.starts[t] : layout.starts[t + 1]]] = t
    for t in range(len(layout.starts) - 1):
        sl = slice(layout.starts[t], layout.starts[t + 1])
        nbr = layout.positions[sl, None] + layout.offsets[layout.levels[sl]]
        assert np.all(wave[nbr] < t)


def test_fixed_arm_matches_training_context():
    grid = torch.arange(12.0).reshape(1, 1, 3, 4)
    ctx = causal_contexts([grid], ((0, -1), (1, 0), (1, 1)))
    assert ctx[:, 5].tolist() == [4.0, 1.0, 2.0]  # (y=1, x=1): left, above, above-right
    assert ctx[:, 0].tolist() == [0.0, 0.0, 0.0]


TABLES_SHA256 = "995541491030253781dd72701b4aa073c06ada9a621727689c82a272559ff9a7"


def test_coding_tables_are_the_specified_ones():
    """The Laplace tables are part of the format: any change on any platform must show here."""
    t = fx.coding_tables()
    raw = t.cdfs.tobytes() + t.cdf_lengths.tobytes() + t.offsets.tobytes()
    assert hashlib.sha256(raw).hexdigest() == TABLES_SHA256
    assert t.num_tables == fx.NUM_SCALES * fx.NUM_FRACS


def test_shipped_tables_file_is_what_the_generator_builds_here():
    """The file is the generator's output bit for bit, and loads to the same tables."""
    data = inr_tables.tables_path().read_bytes()
    assert hashlib.sha256(data).hexdigest() == inr_tables.TABLES_SHA256
    built = inr_tables.build_tables()
    assert data == inr_tables.tables_bytes(built)
    loaded = fx.coding_tables()
    for name in ("cdfs", "cdf_lengths", "offsets"):
        assert np.array_equal(getattr(loaded, name), getattr(built, name))
    assert len(data) < 1 << 20


def test_decoding_never_rebuilds_the_tables(coded, monkeypatch):
    def refuse(*args):
        raise AssertionError("tables rebuilt at run time")

    codec, enc, _ = coded
    expected = codec.decode(enc)
    monkeypatch.setattr(inr_tables, "build_tables", refuse)
    monkeypatch.setattr(inr_tables, "table_scales", refuse)
    monkeypatch.setattr(inr_tables, "_laplace_cdf", refuse)
    inr_tables.tables_at.cache_clear()
    fx._prepared.cache_clear()
    assert np.array_equal(codec.decode(enc), expected)


def test_altered_missing_or_inconsistent_tables_files_are_refused(coded, tmp_path, monkeypatch):
    data = bytearray(inr_tables.tables_path().read_bytes())
    data[-1] ^= 1
    altered = tmp_path / "altered.safetensors"
    altered.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256"):
        inr_tables.load_tables(altered)
    with pytest.raises(WeightsError, match="unreadable"):
        inr_tables.load_tables(tmp_path / "absent.safetensors")
    arrays = inr_tables.to_compact(inr_tables.build_tables())
    arrays["lengths"][0] += 1  # frequencies no longer add up
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(save_bytes(arrays))
    digest = hashlib.sha256(broken.read_bytes()).hexdigest()
    with pytest.raises(WeightsError, match="invalid"):
        inr_tables.load_tables(broken, digest)
    # the codec looks for the file in the weights directory and says so when it is absent
    monkeypatch.setenv("NEURALCODEC_WEIGHTS", str(tmp_path))
    codec, enc, _ = coded
    with pytest.raises(WeightsError, match="inr-tables"):
        codec.decode(enc)


def test_coding_indexes_are_integer_functions():
    mu = np.array([0, 512, -512, 1024 * 3 + 100, -5000], dtype=np.float64)
    ls = np.array([fx.LS_LO - 10_000, fx.LS_LO, 0, fx.LS_HI, fx.LS_HI + 10_000], dtype=np.float64)
    idx, m = fx.coding_indexes(mu, ls)
    assert m.tolist() == [0, 1, 0, 3, -5]
    assert idx.min() >= 0 and idx.max() < fx.NUM_SCALES * fx.NUM_FRACS
    assert idx[0] // fx.NUM_FRACS == 0 and idx[-1] // fx.NUM_FRACS == fx.NUM_SCALES - 1


@pytest.mark.parametrize("stream", ["latent", "arm", "syn"])
def test_corrupted_streams_raise_codec_error(coded, stream):
    codec, enc, _ = coded
    data = bytearray(enc.streams[stream])
    for cut in (bytes(data[: len(data) // 3]), bytes(b ^ 0x5A for b in data)):
        broken = Encoded(enc.codec, enc.header, {**enc.streams, stream: cut})
        try:
            out = codec.decode(broken)
        except ValueError as exc:
            assert isinstance(exc, CodecError)
        else:  # a wrong but well-formed stream still yields an image of the right shape
            assert out.shape == (32, 48, 3)


def test_bad_header_and_inputs(coded):
    codec, enc, _ = coded
    with pytest.raises(CodecError):
        codec.decode(Encoded(enc.codec, {**enc.header, "inr": {"levels": 3}}, enc.streams))
    with pytest.raises(CodecError):
        codec.decode(Encoded(enc.codec, enc.header, {"latent": b""}))
    with pytest.raises(CodecError):
        codec.encode(np.zeros((4, 4), dtype=np.uint8), 3)
    with pytest.raises(CodecError):
        codec.encode(_image(), 0)


def test_mac_per_pixel_counts_layers():
    cfg = InrConfig(
        levels=1, arm_context=8, arm_hidden=4, arm_layers=1, syn_hidden=(5,), syn_residual=1
    )
    macs = mac_per_pixel(cfg, 16, 16)
    assert macs["arm"] == 8 * 4 + 4 * 2
    assert macs["upsampler"] == 0
    assert macs["synthesis"] == 1 * 5 + 5 * 3 + 81
    medium = mac_per_pixel(PRESETS["medium"].arch, 512, 768)
    assert 1000 < medium["total"] < 3000
    assert (
        mac_per_pixel(replace(PRESETS["medium"].arch, arm_hidden=24), 512, 768)["arm"]
        > medium["arm"]
    )


def test_lambda_decreases_with_quality():
    lams = [quality_lambda(q) for q in range(1, 9)]
    assert all(a > b for a, b in zip(lams, lams[1:], strict=False))


def test_latents_take_larger_adam_steps_than_the_networks():
    # Adam's first step moves every parameter with a gradient by its learning rate; the latents
    # start at 0 and must reach several quantisation steps within a short fit, so they get
    # ``latent_lr_scale`` times the networks' rate at quality 4, more at higher qualities.
    preset = preset_with("test", lr=1e-3, latent_lr_scale=10.0, latent_lr_slope=0.25)
    x = torch.from_numpy(_image()).permute(2, 0, 1)[None].float() / 255
    lam4 = quality_lambda(4)
    for lam, latent_step in ((lam4, 1e-2), (lam4 / 16, 2e-2)):
        torch.manual_seed(0)
        model = InrModel(preset.arch, 32, 48)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        _run(model, x, lam, preset, 0, 1)
        params = dict(model.named_parameters())
        moved = {n: float((params[n].detach() - v).abs().max()) for n, v in before.items()}
        latent = [v for n, v in moved.items() if n.startswith("latents.")]
        nets = [v for n, v in moved.items() if not n.startswith("latents.")]
        assert max(latent) == pytest.approx(latent_step, rel=0.05)
        assert max(nets) == pytest.approx(1e-3, rel=0.05)


def test_straight_through_phase_keeps_its_best_rounded_iterate():
    # At this learning rate the straight-through steps make the rounded loss worse; the
    # phase must hand back the parameters it started from, not the last iterate.
    preset = preset_with("test", ste_iterations=4, ste_lr=0.5)
    x = torch.from_numpy(_image()).permute(2, 0, 1)[None].float() / 255
    lam = quality_lambda(4)
    torch.manual_seed(0)
    model = InrModel(preset.arch, 32, 48)
    _run(model, x, lam, preset, 0, preset.iterations)

    def rounded_loss(m):
        with torch.no_grad():
            return float(_loss(m, x, lam, "ste")[0])

    start = rounded_loss(model)
    drifted = copy.deepcopy(model)
    opt = torch.optim.Adam(drifted.parameters(), lr=preset.ste_lr)
    for _ in range(preset.ste_iterations):
        loss = _loss(drifted, x, lam, "ste")[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert rounded_loss(drifted) > start  # the plain phase ends worse than it began
    assert rounded_loss(_refine_rounded(model, x, lam, preset)) <= start


def test_encoding_reports_its_fitting_progress_to_a_listener():
    from neuralcodec import progress

    preset = PRESETS["test"]
    seen: list[tuple[str, int, int]] = []
    with progress.listening(lambda *event: seen.append(event)):
        InrCodec(preset="test").encode(_image(16, 16), 2)
    total = preset.iterations + preset.ste_iterations
    assert seen == [("fit", k, total) for k in range(1, total + 1)]
    progress.report("fit", 1, 1)  # no listener outside the block: nothing recorded
    assert len(seen) == total
    # candidates trained for the warm-up count too
    restarts = replace(preset, restarts=2, warmup=5)
    seen.clear()
    with progress.listening(lambda *event: seen.append(event)):
        fit(torch.rand(1, 3, 16, 16), 1e-3, restarts)
    assert seen[-1] == ("fit", total + 5, total + 5) and len(seen) == total + 5
