"""``codec train``: a few real steps on a tiny model, checkpoints, resume, hybrid initialisation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from neuralcodec import train

ROOT = Path(__file__).resolve().parents[1]


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--data", str(data), "--out", str(out), "--n", "16", "--m", "24", "--batch", "2",
        "--crop", "64", "--warmup", "1", "--save-every", "2", "--threads", "1", *extra,
    ]  # fmt: skip


def _step(path: Path) -> int:
    with safe_open(str(path), framework="pt") as f:
        return int(f.metadata()["step"])


def test_train_checkpoints_and_resumes(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(ROOT / "examples" / "sample.png", data / "a.png")
    out = tmp_path / "run"
    assert train.main(_args(data, out, "--steps", "3")) == 0
    ckpt = out / "last.safetensors"
    assert _step(ckpt) == 3
    with safe_open(str(ckpt), framework="pt") as f:
        config = json.loads(f.metadata()["config"])
    assert config["transform"] == "hybrid" and config["m"] == 24
    # the block transform started from principal components: still nearly orthonormal
    basis = load_file(str(ckpt))["g_a.block.weight"].reshape(24, -1)
    assert torch.allclose(basis @ basis.T, torch.eye(24), atol=0.05)
    first = load_file(str(ckpt))
    assert train.main(_args(data, out, "--steps", "5", "--resume")) == 0
    assert _step(ckpt) == 5
    log = (out / "train.log").read_text()
    assert "starting at step 3" in log
    second = load_file(str(ckpt))
    assert any(not torch.equal(first[k], second[k]) for k in first)


def test_gain_units_learn_faster_than_the_transforms(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(ROOT / "examples" / "sample.png", data / "a.png")
    out = tmp_path / "run"
    init = train.HyperpriorModel(train.HyperpriorConfig(n=16, m=24, transform="hybrid"))
    before = {k: v.clone() for k, v in init.state_dict().items()}
    assert train.main(_args(data, out, "--steps", "4", "--lr", "1e-3", "--transform", "gdn")) == 0
    after = load_file(str(out / "last.safetensors"))
    moved = (after["y_gain.log_gain"] - before["y_gain.log_gain"]).abs().max()
    assert moved > 4 * 1e-3  # Adam moves a parameter by about lr per step; gains 20x lr


def test_warm_start_from_shipped_weights_restores_every_tensor(tmp_path):
    from neuralcodec.models.frozen import freeze, save

    torch.manual_seed(3)
    src = train.HyperpriorModel(train.HyperpriorConfig(n=16, m=24, transform="hybrid")).eval()
    path = tmp_path / "shipped.safetensors"
    save(freeze(src), path)  # float16 transforms, h_s only as its integer twin
    dst = train.HyperpriorModel(train.HyperpriorConfig(n=16, m=24, transform="hybrid"))
    assert train.warm_start(dst, path) == len(dst.state_dict())
    for name, ref in src.state_dict().items():
        got = dst.state_dict()[name]
        assert torch.allclose(got, ref, rtol=2e-3, atol=1e-3 * float(ref.abs().max()) + 1e-6), name


def test_remap_gains_interpolates_in_log_lambda_and_extrapolates_outside():
    src = (0.01, 0.02, 0.04)
    log_gain = torch.tensor([[0.0, 1.0], [1.0, 3.0], [2.0, 5.0]])
    got = train.remap_gains(log_gain, src, (0.005, 0.02, 0.02 * 2**0.5, 0.08))
    want = torch.tensor([[-1.0, -1.0], [1.0, 3.0], [1.5, 4.0], [3.0, 7.0]])
    assert torch.allclose(got, want, atol=1e-6)


def test_warm_start_with_a_shifted_quality_ladder_keeps_the_shared_levels(tmp_path):
    from neuralcodec.models.frozen import freeze, save

    torch.manual_seed(4)
    src = train.HyperpriorModel(train.HyperpriorConfig(n=16, m=24, transform="hybrid")).eval()
    path = tmp_path / "shipped.safetensors"
    save(freeze(src), path)
    old = src.config.lambdas
    shifted = (old[0] / 4, old[0] / 2, *old[:-2])
    dst = train.HyperpriorModel(
        train.HyperpriorConfig(n=16, m=24, transform="hybrid", lambdas=shifted)
    )
    train.warm_start(dst, path)
    for name in ("y_gain.log_gain", "y_gain.log_inverse", "z_gain.log_gain"):
        got, ref = dst.state_dict()[name], src.state_dict()[name]
        assert torch.allclose(got[2:], ref[:-2], atol=1e-2), name


def test_lambdas_option_sets_the_quality_ladder(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(ROOT / "examples" / "sample.png", data / "a.png")
    out = tmp_path / "run"
    assert train.main(_args(data, out, "--steps", "1", "--lambdas", "0.001,0.004,0.016")) == 0
    with safe_open(str(out / "last.safetensors"), framework="pt") as f:
        assert json.loads(f.metadata()["config"])["lambdas"] == [0.001, 0.004, 0.016]
    for bad in ("0.01", "0.02,0.01", "a,b", "0,0.1"):
        try:
            train.main(_args(data, out, "--steps", "1", "--lambdas", bad))
        except SystemExit as e:
            assert e.code == 2
        else:
            raise AssertionError(bad)


def test_time_budget_sets_the_schedule_from_the_measured_speed(monkeypatch):
    from neuralcodec import train as tr

    now = [1000.0]
    monkeypatch.setattr(tr.time, "time", lambda: now[0])
    assert tr.TimeBudget(0).total(5, 777) == 777  # no budget: the schedule as given
    budget = tr.TimeBudget(1.0)  # 60 s, from t = 1000
    assert budget.total(10, 10_000) == 10_000  # first call: the probe starts
    now[0] += 3.0  # 30 steps in 3 s: 10 steps/s, 57 s left -> 0.9 * 570 more steps
    assert budget.total(10 + tr.TimeBudget.PROBE, 10_000) == 40 + 513
    assert budget.note.startswith("10.0 steps/s") and not budget.over()
    assert budget.total(41, 553) == 553
    now[0] = 1061.0  # time is up: this step is the last
    assert budget.over() and budget.total(300, 553) == 301
