"""Packaging: the weights are package data found through importlib.resources, a wheel carries
them, and data paths come from options / NEURALCODEC_DATA, never from where the package lives.

The full install check (a fresh venv outside the checkout running the CLI) is
``scripts/check_wheel.sh`` (``make check-wheel``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib import resources
from pathlib import Path

import pytest
from conftest import REPO_DIR

import neuralcodec
from neuralcodec.codecs.learned_elic import ElicCodec
from neuralcodec.codecs.weights import WEIGHTS_ENV, weights_dir
from neuralcodec.datasets.paths import DATA_ENV, DataPathError, checkout_root, data_root, kodak_dir
from neuralcodec.models.frozen import WeightsError
from neuralcodec.models.packing import unpack

PACKAGE_WEIGHTS = REPO_DIR / "neuralcodec" / "weights"


def _manifest_files() -> dict[str, str]:
    """file name -> sha256 of every model in the shipped manifest."""
    doc = json.loads((PACKAGE_WEIGHTS / "manifest.json").read_text())
    return {m["file"]: m["sha256"] for m in doc["models"]}


def test_weights_dir_is_the_package_data_folder(monkeypatch):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    folder = weights_dir()
    assert folder == Path(str(resources.files("neuralcodec.weights")))
    assert folder == Path(neuralcodec.__file__).parent / "weights"
    files = _manifest_files()
    assert set(files) == {
        "elic.safetensors",
        "elic-int.safetensors",
        "elic-int4.safetensors",
        "mbt-mean.safetensors",
        "mbt-mean-int.safetensors",
        "elic-ip.safetensors",
        "wavelet.safetensors",
        "mlic.safetensors",
    }
    for name, sha in files.items():
        assert hashlib.sha256(unpack((folder / name).read_bytes())).hexdigest() == sha
    assert ElicCodec().weights_path == folder / "elic.safetensors"


def test_the_env_variable_replaces_the_weights_folder(monkeypatch, tmp_path):
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path))
    assert weights_dir() == tmp_path
    codec = ElicCodec()
    assert codec.weights_path == tmp_path / "elic.safetensors" and not codec.weights_available()
    with pytest.raises(WeightsError, match="no weights for elic"):
        codec.frozen()


def test_pyproject_declares_every_weights_file_as_package_data():
    meta = tomllib.loads((REPO_DIR / "pyproject.toml").read_text())
    patterns = meta["tool"]["setuptools"]["package-data"]["neuralcodec.weights"]
    shipped = [p.name for p in PACKAGE_WEIGHTS.iterdir() if p.suffix != ".py" and p.is_file()]
    assert "manifest.json" in shipped and set(_manifest_files()) <= set(shipped)
    for name in shipped:
        assert any(fnmatch.fnmatch(name, pat) for pat in patterns), name
    assert (PACKAGE_WEIGHTS / "__init__.py").is_file()  # a regular package: files() is a Path


def test_the_package_weights_are_the_root_weights_folder():
    link = REPO_DIR / "neuralcodec" / "weights"
    assert link.is_symlink() and link.resolve() == (REPO_DIR / "weights").resolve()
    assert PACKAGE_WEIGHTS.resolve() == (REPO_DIR / "weights").resolve()


def test_no_module_finds_files_relative_to_its_own_source():
    for path in (REPO_DIR / "neuralcodec").rglob("*.py"):
        text = path.read_text()
        assert "__file__" not in text and ".parents[" not in text, path


COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "runs", "results", "__pycache__", "*.egg-info", "*.so",
    ".pytest_cache", ".ruff_cache", ".hypothesis",
)  # fmt: skip


def test_a_wheel_carries_the_weights_the_manifest_and_the_extensions(tmp_path):
    """Built from a copy of the checkout (about 6 s with the C extensions on this machine)."""
    src = tmp_path / "src"
    shutil.copytree(REPO_DIR, src, symlinks=True, ignore=COPY_IGNORE)
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*cmd, str(src), "-w", str(tmp_path)], check=True, timeout=300)
    (wheel,) = tmp_path.glob("neuralcodec-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for file, sha in {**_manifest_files(), "manifest.json": None}.items():
            data = zf.read(f"neuralcodec/weights/{file}")
            expected = (PACKAGE_WEIGHTS / file).read_bytes()
            assert data == expected  # the wheel carries the file as shipped (packed or not)
            assert sha is None or hashlib.sha256(unpack(data)).hexdigest() == sha
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "codec = neuralcodec.app.cli:main" in zf.read(entry_points).decode()
    for ext in ("entropy/_rangecoder", "kernels/_exact", "kernels/_inr_arm", "kernels/_adaptive"):
        ext = f"neuralcodec/{ext}"
        assert any(n.startswith(ext) and n.endswith(".so") for n in names), ext
    assert "neuralcodec/weights/__init__.py" in names
    assert not any(n.startswith(("weights/", "tests/", "results/")) for n in names)


# ------------------------------------------------------------------------------- data paths


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A fake checkout ``tmp/repo`` (its pyproject names the project) beside ``tmp/shared/data``."""
    repo = tmp_path / "repo"
    (repo / "sub" / "dir").mkdir(parents=True)
    (repo / "pyproject.toml").write_text('[project]\nname = "neuralcodec"\n')
    (tmp_path / "shared" / "data").mkdir(parents=True)
    monkeypatch.delenv(DATA_ENV, raising=False)
    return repo


def test_the_data_root_is_beside_the_checkout_holding_the_working_directory(checkout, monkeypatch):
    monkeypatch.chdir(checkout / "sub" / "dir")
    assert checkout_root() == checkout
    assert data_root() == checkout.parent / "shared" / "data"
    assert kodak_dir() == checkout.parent / "shared" / "data" / "kodak"


def test_an_option_or_the_env_variable_wins(checkout, monkeypatch, tmp_path):
    monkeypatch.chdir(checkout)
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "mine"))
    assert data_root() == tmp_path / "mine"
    assert data_root(tmp_path / "given") == tmp_path / "given"


def test_without_a_checkout_or_setting_the_data_root_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "pyproject.toml").write_text('[project]\nname = "something-else"\n')
    monkeypatch.chdir(other)
    assert checkout_root() is None
    with pytest.raises(DataPathError, match=f"set {DATA_ENV} or pass the folder as an option"):
        data_root()
    assert data_root(tmp_path) == tmp_path  # an explicit folder needs no checkout


def test_a_checkout_without_shared_data_is_a_clear_error(checkout, monkeypatch):
    shutil.rmtree(checkout.parent / "shared")
    monkeypatch.chdir(checkout)
    with pytest.raises(DataPathError, match="shared/data does not exist"):
        data_root()


def test_the_cli_reports_a_missing_data_root_in_one_line(tmp_path):
    """``codec bench speed`` run outside a checkout without NEURALCODEC_DATA or --image."""
    env = {k: v for k, v in os.environ.items() if k != DATA_ENV}
    env["PYTHONPATH"] = str(REPO_DIR)
    cmd = [sys.executable, "-m", "neuralcodec.app.cli", "bench", "speed", "--codecs", "mbt-mean"]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and r.stdout == "" and len(lines) == 1
    assert lines[0].startswith(f"error: no data folder: set {DATA_ENV}")
