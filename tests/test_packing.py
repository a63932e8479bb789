"""Packed weights files (models/packing.py): lossless, same digest, damage refused in one line."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from conftest import one_line_error
from safetensors.numpy import save

from neuralcodec.models import frozen, packing
from neuralcodec.models.frozen import WeightsError


def _weights_bytes(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    arrays = {
        "frozen.a": rng.integers(-128, 128, (64, 33), dtype=np.int8),
        "frozen.b": rng.integers(-(2**20), 2**20, (17, 5)).astype(np.int32),
        "frozen.c": rng.integers(-(2**40), 2**40, (9,)).astype(np.int64),
        "model.w": rng.normal(0, 0.05, (32, 16, 3, 3)).astype(np.float16),
        "model.g": rng.normal(1, 0.1, (31,)).astype(np.float32),
        "model.d": rng.normal(0, 1, (3,)).astype(np.float64),
        "frozen.u": rng.integers(0, 256, (7,)).astype(np.uint8),
        "frozen.s": rng.integers(-3000, 3000, (40, 3)).astype(np.int16),
    }
    meta = {"config": json.dumps({"kind": "test"}), "meta": json.dumps({"seed": seed})}
    return save(arrays, metadata=meta)


def test_pack_is_lossless_and_smaller_on_weights_like_data():
    raw = _weights_bytes()
    packed = packing.pack(raw)
    assert packing.is_packed(packed) and not packing.is_packed(raw)
    assert packing.unpack(packed) == raw
    assert packing.unpack(raw) == raw  # an unpacked file reads as itself
    assert len(packed) < len(raw)
    meta = packing.metadata_of(packed)
    assert meta["sha256"] == hashlib.sha256(raw).hexdigest()
    assert json.loads(meta["config"]) == {"kind": "test"}  # inspectable without unpacking
    with pytest.raises(packing.PackingError, match="already packed"):
        packing.pack(packed)


def test_digest_and_arrays_of_a_packed_file_are_the_originals(tmp_path):
    raw = _weights_bytes(1)
    plain, packed = tmp_path / "plain.safetensors", tmp_path / "packed.safetensors"
    plain.write_bytes(raw)
    packed.write_bytes(packing.pack(raw))
    assert (
        frozen.sha256_file(packed) == frozen.sha256_file(plain) == hashlib.sha256(raw).hexdigest()
    )
    a, config_a, meta_a = frozen.read_weights_file(plain)
    b, config_b, meta_b = frozen.read_weights_file(packed)
    assert (config_a, meta_a) == (config_b, meta_b) == ({"kind": "test"}, {"seed": 1})
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k])


def _damaged(raw_packed: bytes, where: str) -> bytes:
    data = bytearray(raw_packed)
    if where == "planes":  # last bytes of the deflate stream
        data[-3] ^= 0x5A
    elif where == "truncated":
        return bytes(data[: len(data) - 40])
    elif where == "sha":
        meta = packing.metadata_of(raw_packed)
        old = meta["sha256"].encode()
        i = bytes(data).index(old)
        data[i : i + 4] = b"0000" if old[:4] != b"0000" else b"1111"
    return bytes(data)


@pytest.mark.parametrize("where", ["planes", "truncated", "sha"])
def test_damaged_packed_file_is_a_one_line_weights_error(tmp_path, where):
    path = tmp_path / "w.safetensors"
    path.write_bytes(_damaged(packing.pack(_weights_bytes(2)), where))
    one_line_error(WeightsError, frozen.read_weights_file, path, match="cannot read weights")
    one_line_error(WeightsError, frozen.sha256_file, path, match="cannot read weights")


def test_command_line_packs_and_unpacks_in_place(tmp_path, capsys):
    raw = _weights_bytes(3)
    path = tmp_path / "w.safetensors"
    path.write_bytes(raw)
    assert packing.main(["pack", str(path)]) == 0
    assert packing.is_packed(path.read_bytes())
    assert hashlib.sha256(raw).hexdigest() in capsys.readouterr().out
    assert packing.main(["check", str(path)]) == 0
    assert packing.main(["unpack", str(path)]) == 0
    assert path.read_bytes() == raw
    path.write_bytes(b"not weights")
    assert packing.main(["check", str(path)]) == 1
    assert "error:" in capsys.readouterr().err


def test_manifest_records_the_packed_and_canonical_sizes_of_shipped_files():
    from conftest import REPO_DIR

    manifest = json.loads((REPO_DIR / "weights" / "manifest.json").read_text())
    for entry in manifest["models"]:
        path = REPO_DIR / "weights" / entry["file"]
        raw = path.read_bytes()
        assert packing.is_packed(raw) == ("packed_bytes" in entry), entry["name"]
        canonical = packing.unpack(raw)
        assert len(canonical) == entry["size_bytes"], entry["name"]
        assert hashlib.sha256(canonical).hexdigest() == entry["sha256"], entry["name"]
        if "packed_bytes" in entry:
            assert len(raw) == entry["packed_bytes"] and entry["packing"] == packing.PACKING
