"""The ``mlic`` codec: exact round trips, rate accounting, identical pixels under every
instruction set and thread count, golden hashes, the warm start, and bad inputs."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO_DIR

from neuralcodec.api import encode_array
from neuralcodec.codecs.base import CodecError, Encoded, get_codec, weights_available
from neuralcodec.codecs.learned_mlic import MlicCodec
from neuralcodec.models import frozen, mlic, packing
from neuralcodec.models.frozen import WeightsError

needs_weights = pytest.mark.skipif(
    not weights_available("mlic"), reason="weights/mlic.safetensors not shipped"
)
WEIGHTS = REPO_DIR / "weights" / "mlic.safetensors"

# Golden values of the shipped weights (update together with weights/mlic.safetensors).
GOLDEN_NCF_SHA256 = "914f8b2492270b260210eb67835083365ce5e43b29d803447cd690dde6553dd8"
GOLDEN_PIXELS_SHA256 = "a8eac0cecdd00eed942632407bbe0fd8c248fa900d096b594275d44202dd6e24"


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    noise = np.random.default_rng(seed).integers(0, 60, (h, w, 3))
    img = np.stack([xx * 3 % 256, yy * 2, (xx * yy) % 200], axis=2) + noise
    return img.clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def codec():
    return get_codec("mlic")


@pytest.fixture(scope="module")
def coded(codec):
    img = _image(80, 112)
    return img, {q: codec.encode_with_reconstruction(img, q) for q in (1, 4, 8)}


def test_registered_after_the_default():
    cls = MlicCodec
    assert cls.name == "mlic" and cls.codec_id == 7
    from neuralcodec.codecs.base import ranked_names

    names = ranked_names("image")
    assert names.index("elic-int4") < names.index("mlic")


def test_linear_attention_twins_agree():
    """The float training attention and the exact kernel agree up to the rounding."""
    from neuralcodec.kernels import linear_attention_exact

    g = torch.Generator().manual_seed(0)
    q = torch.randint(1, 257, (1, 50, 16), generator=g)
    k = torch.randint(1, 257, (1, 40, 16), generator=g)
    v = torch.randint(-3000, 3000, (1, 40, 8), generator=g)
    exact = linear_attention_exact(q, k, v)
    approx = mlic.linear_attention(q.double(), k.double(), v.double())
    assert torch.all((exact - approx).abs() <= 0.5 + 1e-9)


@needs_weights
def test_warm_start_is_elic_at_step_zero():
    """The new aggregation columns start at zero: the fresh model has elic's rate exactly."""
    src = frozen.load(REPO_DIR / "weights" / "elic.safetensors", kinds=("elic",))
    cfg = src.config.to_dict()
    cfg["kind"] = "mlic"
    model = mlic.MlicModel(mlic.MlicConfig.from_dict(cfg)).eval()
    model.load_elic(src.model)
    torch.manual_seed(1)
    y = torch.randn(1, 256, 8, 12) * 3
    q = torch.tensor([3])
    with torch.no_grad():
        _, a = src.model.eval().code_forward(y, q)
        _, b = model.code_forward(y, q)
    assert torch.equal(a["z"], b["z"])  # the same hyperprior
    # same network, computed as matrix products on gathered positions: equal up to float order
    assert torch.allclose(a["y"], b["y"], rtol=1e-5, atol=1e-7)


@needs_weights
def test_round_trips_at_several_qualities(codec, coded):
    img, runs = coded
    sizes, psnrs = [], []
    for q, (encoded, recon) in runs.items():
        out = codec.decode(encoded)
        assert out.shape == img.shape and out.dtype == np.uint8
        assert np.array_equal(out, recon), q
        sizes.append(encoded.payload_bytes)
        mse = ((out.astype(np.float64) - img) ** 2).mean()
        psnrs.append(10 * np.log10(255**2 / mse))
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    assert psnrs == sorted(psnrs) and psnrs[-1] > psnrs[0] + 1


@needs_weights
def test_estimated_rate_matches_the_streams(codec, coded):
    img, runs = coded
    for q, (encoded, _) in runs.items():
        est = codec.estimate_bits(img, q)
        for name, bits in est.items():
            actual = 8 * len(encoded.streams[name])
            # the coder's flush and 16-bit table rounding: at most a few bytes above the ideal
            assert bits <= actual <= 1.01 * bits + 8 * 16, (q, name, actual, bits)
        model = codec.estimated_bits(img, q)
        total = 8 * sum(len(s) for s in encoded.streams.values())
        assert abs(model - total) <= 64 + 0.05 * total, (q, model, total)


@needs_weights
def test_the_global_context_is_used(codec, coded):
    """Zeroing the global-context input columns of every aggregation changes the coded rate."""
    img, _ = coded
    with_global = codec.estimate_bits(img, 4)["y"]
    fz, _ = codec.frozen()
    saved = {}
    try:
        for k, c in enumerate(fz.config.groups):
            layer = fz.nets[f"agg{k}"].layers[0]
            saved[k] = layer.weight
            w = layer.weight.clone()
            w[:, -(2 if k else 1) * c :] = 0
            layer.weight = w
        without = codec.estimate_bits(img, 4)["y"]
    finally:
        for k, w in saved.items():
            fz.nets[f"agg{k}"].layers[0].weight = w
    assert without != with_global
    assert codec.estimate_bits(img, 4)["y"] == with_global


@needs_weights
def test_the_file_completes_elic_int_and_is_pinned_to_it(tmp_path):
    """mlic.safetensors holds only mlic's own networks; the rest (analysis, tables, hyper and
    context networks, integer synthesis) is elic-int's file, named and pinned by sha256."""
    import shutil

    from safetensors.numpy import load_file

    assert WEIGHTS.stat().st_size < 3_500_000
    names = {k.split(".")[1] for k in load_file(str(WEIGHTS))}
    assert names == set(mlic.FrozenMlic.own_twins(mlic.load(WEIGHTS).config))
    fz = mlic.load(WEIGHTS)
    base = frozen.load(REPO_DIR / "weights" / "elic-int.safetensors", kinds=("elic-int",))
    assert type(fz.synthesis_int) is type(base.nets["gs"])
    assert fz.synthesis_int.to_arrays("").keys() == base.nets["gs"].to_arrays("").keys()
    # a base file with other bytes is refused, and so is a missing one
    shutil.copy(WEIGHTS, tmp_path / "mlic.safetensors")
    base_bytes = (REPO_DIR / "weights" / "elic-int.safetensors").read_bytes()
    (tmp_path / "elic-int.safetensors").write_bytes(packing.unpack(base_bytes) + b"\0")
    with pytest.raises(WeightsError, match="other elic-int.safetensors"):
        mlic.load(tmp_path / "mlic.safetensors")
    if packing.is_packed(base_bytes):  # a damaged packed base: refused before its digest
        (tmp_path / "elic-int.safetensors").write_bytes(base_bytes + b"\0")
        with pytest.raises(WeightsError, match="cannot read weights"):
            mlic.load(tmp_path / "mlic.safetensors")
    (tmp_path / "elic-int.safetensors").unlink()
    with pytest.raises(WeightsError, match="not beside it"):
        mlic.load(tmp_path / "mlic.safetensors")


@needs_weights
def test_manifest_entry_matches_the_file():
    entries = json.loads((REPO_DIR / "weights" / "manifest.json").read_text())["models"]
    entry = next(e for e in entries if e["name"] == "mlic")
    assert entry["sha256"] == frozen.sha256_file(WEIGHTS)
    assert entry["size_bytes"] == WEIGHTS.stat().st_size


@needs_weights
def test_golden_hashes():
    img = _image(64, 96, seed=7)
    data = encode_array(img, "mlic", 5)
    from neuralcodec.api import decode_bytes

    pixels = decode_bytes(data)[0]
    got = (hashlib.sha256(data).hexdigest(), hashlib.sha256(pixels.tobytes()).hexdigest())
    assert got == (GOLDEN_NCF_SHA256, GOLDEN_PIXELS_SHA256), got


_DECODE = """
import hashlib, sys, torch
torch.set_num_threads(int(sys.argv[1]))
from neuralcodec.api import decode_bytes
data = open(sys.argv[2], "rb").read()
print(hashlib.sha256(decode_bytes(data)[0].tobytes()).hexdigest())
"""

ENVIRONMENTS = [
    (1, {"ONEDNN_MAX_CPU_ISA": "SSE41"}),
    (8, {"ONEDNN_MAX_CPU_ISA": "AVX2"}),
    (2, {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"}),
]


@needs_weights
def test_identical_pixels_under_every_instruction_set_and_thread_count(tmp_path, codec):
    img = _image(48, 80, seed=3)
    path = tmp_path / "x.ncf"
    path.write_bytes(encode_array(img, "mlic", 6))
    want = hashlib.sha256(codec.encode_with_reconstruction(img, 6)[1].tobytes()).hexdigest()
    for threads, env in ENVIRONMENTS:
        out = subprocess.run(
            [sys.executable, "-c", _DECODE, str(threads), str(path)],
            cwd=REPO_DIR, env={**os.environ, **env}, check=True, timeout=600,
            capture_output=True, text=True,
        )  # fmt: skip
        assert out.stdout.strip() == want, (threads, env)


@pytest.mark.slow
@needs_weights
def test_decoding_through_the_triton_kernels_gives_the_same_pixels(tmp_path, codec):
    pytest.importorskip("triton")
    img = _image(32, 48, seed=5)
    path = tmp_path / "x.ncf"
    path.write_bytes(encode_array(img, "mlic", 3))
    want = hashlib.sha256(codec.encode_with_reconstruction(img, 3)[1].tobytes()).hexdigest()
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(REPO_DIR)}
    out = subprocess.run(
        [sys.executable, "-c", _DECODE, "1", str(path)],
        cwd=REPO_DIR, env=env, check=True, timeout=900, capture_output=True, text=True,
    )  # fmt: skip
    assert out.stdout.strip() == want


# ------------------------------------------------------------------------------- bad input


@needs_weights
def test_corrupt_streams_and_bad_inputs_raise_codec_errors(codec, coded):
    _, runs = coded
    encoded = runs[4][0]
    for bad in (b"", encoded.streams["y"][:10], b"\xff" * 64):
        broken = Encoded("mlic", encoded.header, {"z": encoded.streams["z"], "y": bad})
        with pytest.raises(CodecError):
            codec.decode(broken)
    with pytest.raises(CodecError, match="missing stream"):
        codec.decode(Encoded("mlic", encoded.header, {"z": encoded.streams["z"]}))
    with pytest.raises(CodecError):
        codec.encode(_image(64, 64), 9)
    with pytest.raises(CodecError):
        codec.encode(np.zeros((64, 64), np.uint8), 3)
    foreign = dict(encoded.header, weights_sha256="0" * 64)
    with pytest.raises(WeightsError, match="other weights"):
        codec.decode(Encoded("mlic", foreign, encoded.streams))


def test_weights_of_another_family_are_refused(tmp_path):
    with pytest.raises(WeightsError, match="no weights"):
        MlicCodec(tmp_path / "absent.safetensors").encode(_image(64, 64), 1)
    with pytest.raises(WeightsError):
        mlic.load(REPO_DIR / "weights" / "mbt-mean.safetensors")
