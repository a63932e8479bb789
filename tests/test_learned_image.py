"""Learned hyperprior codecs: round trips, bit-exactness, rate estimates, shipped weights."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from neuralcodec.codecs.base import Encoded, codec_class, get_codec
from neuralcodec.codecs.learned_image import BmshjFactorized, BmshjHyperprior, MbtMean, manifest
from neuralcodec.models.fixedpoint import ACT_BITS, FixedPointNet, to_fixed
from neuralcodec.models.frozen import WeightsError, freeze, load, save, sha256_file
from neuralcodec.models.hyperprior import HyperpriorConfig, HyperpriorModel

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "data" / "kodak"
GOLDEN = ROOT / "tests" / "golden" / "learned_image.json"
CODECS = {"mean-scale": MbtMean, "scale": BmshjHyperprior, "factorized": BmshjFactorized}


def _photo(h: int = 96, w: int = 128) -> np.ndarray:
    path = ROOT / "examples" / "sample.png"
    img = np.asarray(Image.open(path).convert("RGB"))
    return np.ascontiguousarray(img[200 : 200 + h, 300 : 300 + w])


def _tiny_weights(tmp: Path, kind: str, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = HyperpriorModel(HyperpriorConfig(kind=kind, n=32, m=48))
    path = tmp / f"tiny-{kind}-{seed}.safetensors"
    save(freeze(model, {"model_id": f"tiny-{kind}"}), path)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("weights")
    return {kind: _tiny_weights(tmp, kind) for kind in CODECS}


@pytest.mark.parametrize("kind", list(CODECS))
def test_round_trip_gives_full_size_uint8(tiny, kind):
    codec = CODECS[kind](weights=tiny[kind])
    img = _photo()
    enc = codec.encode(img, 3)
    rec = codec.decode(enc)
    assert rec.shape == img.shape and rec.dtype == np.uint8
    assert enc.header["shape"] == [96, 128, 3] and enc.payload_bytes > 0


@pytest.mark.parametrize("kind", list(CODECS))
def test_encoding_twice_gives_identical_bytes(tiny, kind):
    codec = CODECS[kind](weights=tiny[kind])
    img = _photo()
    assert codec.encode(img, 5).streams == codec.encode(img, 5).streams


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (65, 130)])
def test_odd_and_tiny_sizes_round_trip(tiny, size):
    codec = MbtMean(weights=tiny["mean-scale"])
    img = _photo(*size)
    assert codec.decode(codec.encode(img, 1)).shape == img.shape


_DECODE_SCRIPT = """
import sys, numpy as np, torch
torch.set_num_threads(int(sys.argv[1]))
from pathlib import Path
from neuralcodec.codecs.base import Encoded
from neuralcodec.codecs.learned_image import MbtMean
z, y = Path(sys.argv[3]).read_bytes(), Path(sys.argv[4]).read_bytes()
enc = Encoded("mbt-mean", {"shape": [96, 128, 3], "quality": 4}, {"z": z, "y": y})
sys.stdout.buffer.write(MbtMean(weights=Path(sys.argv[2])).decode(enc).tobytes())
"""


def test_decoding_is_identical_across_processes_and_thread_counts(tiny, tmp_path):
    codec = MbtMean(weights=tiny["mean-scale"])
    enc = codec.encode(_photo(), 4)
    (tmp_path / "z").write_bytes(enc.streams["z"])
    (tmp_path / "y").write_bytes(enc.streams["y"])
    outputs = []
    for threads in (1, 2):
        args = [
            sys.executable,
            "-c",
            _DECODE_SCRIPT,
            str(threads),
            str(tiny["mean-scale"]),
            str(tmp_path / "z"),
            str(tmp_path / "y"),
        ]
        outputs.append(
            subprocess.run(args, capture_output=True, check=True, cwd=ROOT, timeout=600).stdout
        )
    assert outputs[0] == outputs[1] == codec.decode(enc).tobytes()


def test_fixed_point_hyper_synthesis_tracks_the_float_network(tiny):
    frozen = MbtMean(weights=tiny["mean-scale"]).frozen()[0]
    z = torch.randint(-8, 9, (1, 32, 3, 4)).double()
    exact = frozen.hs_fixed(to_fixed(z)) * 2.0**-ACT_BITS
    with torch.no_grad():
        ref = frozen.model.h_s(z.float()).double()
    assert torch.allclose(exact, ref, atol=0.05, rtol=0.01)


def test_fixed_point_net_survives_storage(tiny):
    frozen = MbtMean(weights=tiny["mean-scale"]).frozen()[0]
    again = FixedPointNet.from_arrays(frozen.hs_fixed.to_arrays("x."), "x.")
    z = to_fixed(torch.randn(1, 32, 2, 3) * 4)
    assert torch.equal(again(z), frozen.hs_fixed(z))


def test_weights_file_keeps_one_copy_of_the_hyper_synthesis(tmp_path):
    torch.manual_seed(1)
    model = HyperpriorModel(HyperpriorConfig(kind="mean-scale", n=32, m=48)).eval()
    path = tmp_path / "w.safetensors"
    save(freeze(model), path)
    stored = load_file(str(path))
    assert not any(k.startswith("model.h_s.") for k in stored)
    assert stored["model.g_s.0.weight"].dtype == torch.float16
    assert stored["frozen.hs.0.weight"].dtype == torch.int16
    restored = load(path).model
    for name, ref in model.h_s.state_dict().items():
        got = restored.h_s.state_dict()[name]
        assert torch.allclose(got, ref, atol=2e-4 * float(ref.abs().max()) + 1e-6), name
    g = restored.g_s[0].weight
    assert torch.allclose(g, model.g_s[0].weight, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("kind", list(CODECS))
def test_counted_rate_matches_every_coded_stream(tiny, kind):
    # The bit-counting sink runs the encoder's own code path: each stream's ideal length under
    # the frozen tables is within the coder's flush bytes (4 lanes) and 1% of its real size.
    codec = CODECS[kind](weights=tiny[kind])
    img = _photo(128, 192)
    for quality in (2, 6):
        enc = codec.encode(img, quality)
        est = codec.estimate_bits(img, quality)
        assert set(est) == set(enc.streams)
        for name, bits in est.items():
            assert abs(len(enc.streams[name]) - bits / 8) <= 0.01 * bits / 8 + 20, (name, quality)


@pytest.mark.parametrize("kind", list(CODECS))
def test_model_rate_estimate_matches_the_coded_streams(tiny, kind):
    # The float likelihoods (training's rate) against the real streams: the gap is the coder's
    # flush bytes (4 lanes per stream) plus the table quantisation of scales, about 1%.
    codec = CODECS[kind](weights=tiny[kind])
    img = _photo(128, 192)
    for quality in (2, 7):
        est = codec.estimated_bits(img, quality)
        actual = 8 * codec.encode(img, quality).payload_bytes
        assert abs(actual - est) <= 0.01 * est + 160, (quality, est, actual)


def test_decoding_with_other_weights_is_refused(tiny, tmp_path):
    enc = MbtMean(weights=tiny["mean-scale"]).encode(_photo(), 2)
    other = MbtMean(weights=_tiny_weights(tmp_path, "mean-scale", seed=1))
    with pytest.raises(WeightsError):
        other.decode(enc)


def test_missing_weights_give_a_clear_error(tmp_path):
    codec = MbtMean(weights=tmp_path / "absent.safetensors")
    assert not codec.weights_available()
    with pytest.raises(WeightsError, match="no weights"):
        codec.encode(_photo(), 1)


def test_weights_of_another_kind_are_refused(tiny):
    with pytest.raises(WeightsError, match="factorized"):
        MbtMean(weights=tiny["factorized"]).encode(_photo(), 1)


def test_truncated_stream_fails_cleanly(tiny):
    codec = MbtMean(weights=tiny["mean-scale"])
    enc = codec.encode(_photo(), 8)
    bad = Encoded(enc.codec, enc.header, {"z": enc.streams["z"], "y": enc.streams["y"][:3]})
    with pytest.raises(ValueError):
        codec.decode(bad)


# -- shipped weights -----------------------------------------------------------------------
SHIPPED = manifest()["models"]


def test_manifest_lists_existing_weights_with_their_hashes():
    assert SHIPPED, "weights/manifest.json lists no model"
    for entry in SHIPPED:
        path = ROOT / "weights" / entry["file"]
        assert path.is_file(), f"{path} missing"
        assert sha256_file(path) == entry["sha256"]


SHIPPED_IMAGE = [e for e in SHIPPED if codec_class(e["name"]).modality == "image"]


@pytest.mark.parametrize("entry", SHIPPED_IMAGE, ids=[e["name"] for e in SHIPPED_IMAGE])
def test_shipped_model_reproduces_its_golden_bitstream(entry, monkeypatch):
    if entry["name"] == "wavelet":  # the golden bytes are format 2 (format 3: test_wavelet_dyadic)
        from neuralcodec.codecs.learned_wavelet import WaveletCodec

        monkeypatch.setattr(WaveletCodec, "write_format", 2)
    golden = json.loads(GOLDEN.read_text())[entry["name"]]
    assert golden["weights_sha256"] == entry["sha256"], (
        "weights changed: regenerate tests/golden/learned_image.json with "
        "`python tests/make_golden_learned.py`"
    )
    codec = get_codec(entry["name"])
    enc = codec.encode(_photo(), golden["quality"])
    digest = hashlib.sha256(b"".join(enc.streams[k] for k in sorted(enc.streams))).hexdigest()
    assert digest == golden["streams_sha256"]
    before = torch.get_num_threads()
    try:
        for threads in (1, 2, 8):  # the convolution library changes kernels with thread count
            torch.set_num_threads(threads)
            rec = codec.decode(enc)
            assert hashlib.sha256(rec.tobytes()).hexdigest() == golden["pixels_sha256"], threads
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("entry", SHIPPED_IMAGE, ids=[e["name"] for e in SHIPPED_IMAGE])
def test_shipped_model_rate_and_quality_grow_with_the_quality_level(entry):
    codec = get_codec(entry["name"])
    img = np.asarray(Image.open(KODAK / "kodim23.png").convert("RGB"))[128:384, 256:512]
    sizes, psnrs = [], []
    for q in range(codec.quality_range[0], codec.quality_range[1] + 1):
        enc = codec.encode(img, q)
        rec = codec.decode(enc).astype(np.float64)
        sizes.append(enc.payload_bytes)
        psnrs.append(10 * np.log10(255**2 / np.mean((rec - img) ** 2)))
    assert sizes == sorted(sizes) and psnrs == sorted(psnrs)
    assert psnrs[-1] > psnrs[0] + 2 and psnrs[0] > 22


def test_large_images_are_analysed_tile_by_tile_to_the_same_latents(monkeypatch):
    from neuralcodec.codecs import learned_image
    from neuralcodec.models.transforms import HybridAnalysis

    torch.manual_seed(0)
    g_a = HybridAnalysis(8, 16).eval()
    with torch.no_grad():
        for m in g_a.residual:
            if isinstance(m, torch.nn.Conv2d):
                m.weight.normal_(0, 0.1)
    x = torch.rand(1, 3, 7 * 16, 5 * 16)
    with torch.no_grad():
        whole = g_a(x)
        monkeypatch.setattr(learned_image, "ANALYSIS_TILE", 2)
        tiled = learned_image.tiled_analysis(g_a, x, 16)
        assert tiled.shape == whole.shape
        assert float((tiled - whole).abs().max()) < 1e-4 * float(whole.abs().max())
        monkeypatch.setattr(learned_image, "ANALYSIS_HALO", 0)  # the halo is what makes it so
        assert float((learned_image.tiled_analysis(g_a, x, 16) - whole).abs().max()) > 1e-2
