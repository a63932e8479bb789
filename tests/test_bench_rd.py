"""``codec bench rd``: outputs, resume, errors, published curves (only on the 24 Kodak images),
and the README updater."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import KODAK_DIR, REPO_DIR
from PIL import Image

from neuralcodec.bench import metrics, rd
from neuralcodec.bench.reference import (
    KODAK_NAMES,
    REFERENCE_ENV,
    default_reference_dir,
    find_reference_dir,
    is_kodak,
    load_reference_curves,
    read_reference_file,
)
from neuralcodec.codecs import classical
from neuralcodec.datasets.paths import DATA_ENV, DataPathError

REFERENCE = {
    "name": "Toy",
    "results": {
        "bpp": [0.1, 0.3, 0.9, 2.0],
        "psnr-rgb": [24.0, 28.0, 33.0, 38.0],
        "ms-ssim-rgb": [0.85, 0.93, 0.97, 0.99],
    },
}


def _tiny_images(folder: Path, n: int) -> list[Path]:
    """``n`` 64x96 crops of Kodak images (synthetic when Kodak is absent) as PNGs."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    paths = []
    for i in range(n):
        src = KODAK_DIR / f"kodim{i + 1:02d}.png"
        if src.is_file():
            with Image.open(src) as im:
                img = np.asarray(im.convert("RGB"))[100:164, 200:296]
        else:
            img = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
        paths.append(folder / f"img{i:02d}.png")
        Image.fromarray(img).save(paths[-1])
    return paths


def _kodak_like(folder: Path, portrait: tuple[int, ...] = (4, 9)) -> list[Path]:
    """24 synthetic images named and sized as the Kodak set (768x512, some 512x768)."""
    folder.mkdir(parents=True, exist_ok=True)
    ramp = np.linspace(0, 255, 768).astype(np.uint8)
    paths = []
    for i, name in enumerate(sorted(KODAK_NAMES)):
        img = np.stack([np.tile(ramp, (512, 1)), np.tile(ramp[::-1], (512, 1)), ramp[:512, None]
                        .repeat(768, 1) ^ np.uint8(i)], -1)  # fmt: skip
        paths.append(folder / name)
        Image.fromarray(img.swapaxes(0, 1) if i + 1 in portrait else img).save(paths[-1])
    return paths


@pytest.fixture
def setup(tmp_path):
    """(dataset dir, reference dir, out dir) with 2 images and one toy published curve."""
    data, ref = tmp_path / "data", tmp_path / "ref"
    _tiny_images(data, 2)
    ref.mkdir()
    (ref / "toy.json").write_text(json.dumps(REFERENCE))
    return data, ref, tmp_path / "out"


def _args(data, ref, out, *extra):
    return [
        "--dataset", str(data), "--reference", str(ref), "--out", str(out),
        "--codecs", "jpeg,webp", "--qualities", "jpeg:20,80", "webp:20,80",
        "--anchors", "jpeg,pub:toy", *extra,
    ]  # fmt: skip


@pytest.fixture
def count_calls(monkeypatch):
    """Counts (codec, quality, image shape) of every compress call of jpeg and webp."""
    calls = []
    for cls in (classical.JpegCodec, classical.WebpCodec):
        original = cls.compress

        def counted(self, img, quality, _original=original):
            calls.append((self.name, quality))
            return _original(self, img, quality)

        monkeypatch.setattr(cls, "compress", counted)
    return calls


def test_runner_writes_results_plots_and_bdrate(setup, count_calls):
    data, ref, out = setup
    assert rd.main(_args(data, ref, out)) == 0
    assert len(count_calls) == 2 * 2 * 2  # codecs x qualities x images
    doc = json.loads((out / "results.json").read_text())
    point = doc["codecs"]["jpeg"]["points"]["80"]
    assert set(point["images"]) == {"img00.png", "img01.png"}
    entry = point["images"]["img00.png"]
    assert entry["bpp"] == pytest.approx(8 * entry["bytes"] / (64 * 96))
    assert entry["psnr"] > 25 and entry["ms_ssim"] is None  # too small for 5 MS-SSIM scales
    assert entry["enc_s"] >= 0 and entry["dec_s"] >= 0
    mean = point["mean"]
    assert mean["n_images"] == 2
    assert mean["psnr"] == pytest.approx(np.mean([e["psnr"] for e in point["images"].values()]))
    assert doc["codecs"]["jpeg"]["points"]["20"]["mean"]["bpp"] < mean["bpp"]
    # two small images are not the Kodak set: the published curve is left out, with a note
    assert [a["key"] for a in doc["summary"]["anchors"]] == ["jpeg"]
    assert doc["summary"]["reference"] is None and doc["dataset"] == "data"
    assert doc["summary"]["bd"]["jpeg"]["jpeg"]["bd_rate"] == pytest.approx(0.0, abs=1e-9)
    md = (out / "bdrate.md").read_text()
    assert "| webp |" in md and "Toy" not in md and "(published)" not in md.split("left out")[1]
    assert "published curves (means over the 24 Kodak images) left out" in md
    for png in ("rd_psnr.png", "rd_msssim.png"):
        with Image.open(out / png) as im:
            assert im.format == "PNG" and im.size[0] > 800


def test_rerun_skips_measured_points_and_adds_new_ones(setup, count_calls):
    data, ref, out = setup
    assert rd.main(_args(data, ref, out)) == 0
    first = (out / "results.json").read_text()
    count_calls.clear()
    assert rd.main(_args(data, ref, out)) == 0
    assert count_calls == []
    assert json.loads((out / "results.json").read_text())["codecs"] == json.loads(first)["codecs"]
    # a new quality costs exactly one call per image
    extra = _args(data, ref, out)
    extra[extra.index("jpeg:20,80")] = "jpeg:20,50,80"
    assert rd.main(extra) == 0
    assert count_calls == [("jpeg", 50), ("jpeg", 50)]


def test_an_interrupted_point_keeps_the_images_it_finished(setup, count_calls, monkeypatch):
    data, ref, out = setup
    counted = classical.WebpCodec.compress

    def stop_on_second_image(self, img, quality):
        if sum(c == ("webp", 20) for c in count_calls) == 1:
            raise KeyboardInterrupt  # what Ctrl-C or the end of a session looks like
        return counted(self, img, quality)

    monkeypatch.setattr(classical.WebpCodec, "compress", stop_on_second_image)
    with pytest.raises(KeyboardInterrupt):
        rd.main(_args(data, ref, out))
    doc = json.loads((out / "results.json").read_text())
    assert list(doc["codecs"]["webp"]["points"]["20"]["images"]) == ["img00.png"]
    monkeypatch.setattr(classical.WebpCodec, "compress", counted)
    count_calls.clear()
    assert rd.main(_args(data, ref, out)) == 0
    assert count_calls == [("webp", 20), ("webp", 80), ("webp", 80)]  # only what was missing


@pytest.mark.slow  # spawns worker processes that import the codec registry (torch)
def test_parallel_jobs_give_the_same_sizes(setup):
    data, ref, out = setup
    assert rd.main(_args(data, ref, out / "serial")) == 0
    assert rd.main(_args(data, ref, out / "parallel", "--jobs", "2")) == 0

    def sizes(folder):
        doc = json.loads((folder / "results.json").read_text())
        return {
            (c, q, i): e["bytes"]
            for c, codec in doc["codecs"].items()
            for q, p in codec["points"].items()
            for i, e in p["images"].items()
        }

    assert sizes(out / "serial") == sizes(out / "parallel")


@pytest.mark.parametrize(
    "change, message",
    [
        (("--codecs", "jpeg,nosuchcodec"), "unknown codec 'nosuchcodec'"),
        (("--qualities", "jpeg:0"), "quality must be an integer in 1..100"),
        (("--qualities", "jpeg:ten"), "comma-separated integers"),
        (("--qualities", "avif:50"), "not among the codecs run"),
        (("--anchors", "pub:nothere"), "unknown published anchor 'pub:nothere'"),
        (("--anchors", "nosuchcodec"), "unknown codec"),
        (("--jobs", "0"), "--jobs must be >= 1"),
        (("--codecs", "jpeg@fast"), "codec 'jpeg' has no presets"),
        (("--codecs", "inr@turbo"), "unknown preset 'turbo'"),
    ],
)
def test_bad_arguments_give_one_error_line(setup, capsys, change, message):
    data, ref, out = setup
    args = _args(data, ref, out)
    flag, value = change
    if flag in args:
        i = args.index(flag)
        args[i + 1 : i + (3 if flag == "--qualities" else 2)] = [value]
    else:
        args += [flag, value]
    assert rd.main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]


def test_missing_or_empty_dataset_is_an_error(tmp_path, capsys):
    assert rd.main(["--dataset", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 1
    assert "is not a directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert rd.main(["--dataset", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 1
    assert "no images" in capsys.readouterr().err


def test_results_from_another_dataset_are_not_mixed(setup, tmp_path, capsys):
    data, ref, out = setup
    assert rd.main(_args(data, ref, out)) == 0
    other = tmp_path / "other"
    _tiny_images(other, 2)
    assert rd.main(_args(other, ref, out)) == 1
    assert "choose another --out" in capsys.readouterr().err


def test_unavailable_codec_is_skipped_with_a_message(setup, monkeypatch, capsys):
    data, ref, out = setup
    monkeypatch.setattr(
        classical.WebpCodec, "unavailable_reason", classmethod(lambda cls: "no libwebp here")
    )
    assert rd.main(_args(data, ref, out)) == 0
    assert "skipping webp: no libwebp here" in capsys.readouterr().err
    assert set(json.loads((out / "results.json").read_text())["codecs"]) == {"jpeg"}


def test_quick_plan_takes_six_images_and_four_qualities(tmp_path):
    _tiny_images(tmp_path / "data", 9)
    config = rd.BenchConfig(
        dataset=tmp_path / "data", out=tmp_path / "o", codecs=("jpeg",), quick=True
    )
    plan = rd.make_plan(config, log=lambda msg: None)
    assert [p.name for p in plan.images] == [f"img{i:02d}.png" for i in (0, 2, 3, 5, 6, 8)]
    assert plan.work == [("jpeg", q) for q in (2, 10, 55, 90)]


def test_pick_evenly_keeps_ends_and_order():
    assert rd.pick_evenly(list(range(24)), 6) == [0, 5, 9, 14, 18, 23]
    assert rd.pick_evenly([1, 2], 6) == [1, 2]
    assert rd.pick_evenly([4, 5, 6], 1) == [4]


def test_metrics_pool_channels_and_cap_identical_images():
    a = np.zeros((2, 2, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 12  # one error of 12 over 12 samples -> MSE 12
    assert metrics.mse_rgb(a, b) == 12.0
    assert metrics.psnr_rgb(a, b) == pytest.approx(10 * np.log10(255**2 / 12))
    assert metrics.psnr_rgb(a, a) == metrics.PSNR_CAP
    rows = [{"bpp": 1.0, "psnr": 30.0, "ms_ssim": None, "enc_s": 1, "dec_s": 2},
            {"bpp": 3.0, "psnr": 40.0, "ms_ssim": 0.9, "enc_s": 3, "dec_s": 4}]  # fmt: skip
    assert metrics.average_point(rows) == {
        "bpp": 2.0, "psnr": 35.0, "ms_ssim": None, "enc_s": 2.0, "dec_s": 3.0
    }  # fmt: skip
    rows[0]["est_bpp"], rows[1]["est_bpp"] = 0.9, 2.9
    assert metrics.average_point(rows)["est_bpp"] == pytest.approx(1.9)


def test_ms_ssim_of_a_full_size_image():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (192, 176, 3), dtype=np.uint8)
    assert metrics.ms_ssim_rgb(img, img) == pytest.approx(1.0, abs=1e-6)
    noisy = np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)
    assert 0.0 < metrics.ms_ssim_rgb(img, noisy) < 0.999


def test_reference_reader_accepts_both_layouts_and_reports_bad_files(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(REFERENCE))
    short = {"name": "B", "results": {"bpp": [0.5, 0.2], "psnr": [33.0, 29.0]}}
    (tmp_path / "b.json").write_text(json.dumps(short))
    (tmp_path / "bad.json").write_text('{"results": {"bpp": [1, 2]}}')
    (tmp_path / "broken.json").write_text("{")
    curves, problems = load_reference_curves(tmp_path)
    assert [c.key for c in curves] == ["pub:a", "pub:b"]
    assert curves[1].bpp == (0.2, 0.5) and curves[1].psnr == (29.0, 33.0)
    assert curves[1].ms_ssim is None and curves[0].ms_ssim[0] == 0.85
    assert all(c.published and c.label.endswith("(published)") for c in curves)
    assert len(problems) == 2 and all("skipping" in p for p in problems)
    assert load_reference_curves(tmp_path / "nowhere")[0] == []


def test_reference_dir_follows_the_data_root_and_the_env(monkeypatch, tmp_path):
    checkout, shared = tmp_path / "repo", tmp_path / "shared"
    checkout.mkdir()
    (checkout / "pyproject.toml").write_text('[project]\nname = "neuralcodec"\n')
    (shared / "data").mkdir(parents=True)
    monkeypatch.delenv(REFERENCE_ENV, raising=False)
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.chdir(checkout)
    assert default_reference_dir() == shared / "reference" / "kodak"
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "elsewhere" / "data"))
    assert default_reference_dir() == tmp_path / "elsewhere" / "reference" / "kodak"
    monkeypatch.setenv(REFERENCE_ENV, str(tmp_path))
    assert default_reference_dir() == find_reference_dir(None) == tmp_path
    assert find_reference_dir(tmp_path / "given") == tmp_path / "given"


def test_without_a_data_root_there_are_no_published_curves(monkeypatch, tmp_path):
    monkeypatch.delenv(REFERENCE_ENV, raising=False)
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.chdir(tmp_path)  # not inside a checkout
    with pytest.raises(DataPathError, match=DATA_ENV):
        default_reference_dir()
    assert find_reference_dir(None) is None
    curves, problems = load_reference_curves(None)
    assert curves == [] and REFERENCE_ENV in problems[0]


def test_kodak_is_known_by_its_file_names_and_sizes(tmp_path):
    images = _kodak_like(tmp_path / "any-folder-name")
    assert is_kodak(images)
    assert not is_kodak(images[:23])  # a subset (--quick, kodim01-08) is not the set
    assert not is_kodak([*images[:23], tmp_path / "kodim25.png"])
    Image.new("RGB", (512, 512)).save(images[0])  # right name, wrong size
    assert not is_kodak(images)
    images[0].write_bytes(b"not a png")
    assert not is_kodak(images)
    named_kodak = _tiny_images(tmp_path / "kodak", 2)  # the folder name alone does not count
    assert not is_kodak(named_kodak)


def test_published_anchors_apply_on_the_kodak_images(tmp_path, capsys, monkeypatch):
    data, ref, out = tmp_path / "kodak-copy", tmp_path / "ref", tmp_path / "out"
    _kodak_like(data)
    ref.mkdir()
    (ref / "toy.json").write_text(json.dumps(REFERENCE))
    monkeypatch.setattr(metrics, "ms_ssim_rgb", lambda a, b: None)  # most of the time; not tested
    args = ["--dataset", str(data), "--reference", str(ref), "--out", str(out)]
    assert (
        rd.main([*args, "--codecs", "jpeg", "--qualities", "30,90", "--anchors", "jpeg,pub:toy"])
        == 0
    )
    assert "left out" not in capsys.readouterr().err
    doc = json.loads((out / "results.json").read_text())
    assert [a["key"] for a in doc["summary"]["anchors"]] == ["jpeg", "pub:toy"]
    assert doc["summary"]["reference"] == "ref" and doc["dataset"] == "kodak-copy"
    assert "pub:toy" in doc["summary"]["bd"]["jpeg"]
    md = (out / "bdrate.md").read_text()
    assert "| Toy (published) |" in md and "vs Toy (published)" in md
    script, readme = _readme_script(), tmp_path / "README.md"
    readme.write_text(f"{script.START}\n{script.END}\n")
    assert script.main(["--results", str(out), "--readme", str(readme)]) == 0
    assert "BD-rate vs Toy (published)" in readme.read_text()


def test_other_images_get_no_published_anchors_and_a_note(setup, capsys):
    data, ref, out = setup
    assert rd.main(_args(data, ref, out, "--quick")) == 0
    err = capsys.readouterr().err
    assert "note: published curves (means over the 24 Kodak images) left out" in err
    assert "the 2 images of data are not that set" in err
    assert "anchor pub:toy" not in err  # one note, not one per published anchor
    doc = json.loads((out / "results.json").read_text())
    assert "pub:toy" not in json.dumps(doc["summary"])


def test_old_results_with_an_absolute_dataset_path_resume(setup, count_calls):
    data, ref, out = setup
    assert rd.main(_args(data, ref, out)) == 0
    doc = json.loads((out / "results.json").read_text())
    doc["dataset"] = "/another/machine/shared/data"  # as older versions wrote it
    (out / "results.json").write_text(json.dumps(doc))
    count_calls.clear()
    assert rd.main(_args(data, ref, out)) == 0
    assert count_calls == []  # nothing measured again
    assert json.loads((out / "results.json").read_text())["dataset"] == "data"


def test_the_dataset_defaults_to_kodak_under_the_data_root(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert rd.main(["--out", str(tmp_path / "o"), "--codecs", "jpeg"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no data folder: set NEURALCODEC_DATA")
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "data"))
    assert rd.main(["--out", str(tmp_path / "o"), "--codecs", "jpeg"]) == 1
    assert f"dataset {tmp_path / 'data' / 'kodak'} is not a directory" in capsys.readouterr().err


def test_shared_published_curves_all_parse():
    folder = REPO_DIR.parent / "shared" / "reference" / "kodak"
    if not folder.is_dir():
        pytest.skip("no shared reference folder")
    curves, problems = load_reference_curves(folder)
    assert problems == [] and len(curves) == len(list(folder.glob("*.json")))
    vtm = read_reference_file(folder / "vtm.json")
    assert vtm.key == "pub:vtm" and list(vtm.bpp) == sorted(vtm.bpp)


def _readme_script():
    spec = importlib.util.spec_from_file_location(
        "update_readme_results", REPO_DIR / "scripts" / "update_readme_results.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_section_is_regenerated_between_the_markers_only(setup, tmp_path, capsys):
    data, ref, out = setup
    assert rd.main(_args(data, ref, out)) == 0
    script = _readme_script()
    readme = tmp_path / "README.md"
    before, after = "# Title\n\nintro\n", "\n## Later\ntext\n"
    readme.write_text(f"{before}{script.START}\nold numbers\n{script.END}{after}")
    assert script.main(["--results", str(out), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith(before + script.START) and text.endswith(script.END + after)
    assert "old numbers" not in text
    assert "| `jpeg` | 2 |" in text and "| `webp` | 2 |" in text
    assert "BD-rate vs jpeg" in text and "+0.0%" in text and "(published)" not in text
    assert script.main(["--results", str(out), "--readme", str(readme)]) == 0
    assert readme.read_text() == text  # idempotent


def test_readme_script_fails_clearly_without_markers(setup, tmp_path, capsys):
    data, ref, out = setup
    assert rd.main(_args(data, ref, out)) == 0
    script = _readme_script()
    readme = tmp_path / "README.md"
    readme.write_text("# no markers here\n")
    assert script.main(["--results", str(out), "--readme", str(readme)]) == 1
    assert "error: the README needs exactly one" in capsys.readouterr().err
    assert readme.read_text() == "# no markers here\n"
    readme.write_text(f"{script.END}\n{script.START}\n")
    assert script.main(["--results", str(out), "--readme", str(readme)]) == 1
    assert script.main(["--results", str(tmp_path / "none"), "--readme", str(readme)]) == 1


def test_a_failing_codec_is_reported_and_the_others_still_run(setup, monkeypatch, capsys):
    data, ref, out = setup

    def broken(self, img, quality):
        raise RuntimeError("encoder crashed")

    monkeypatch.setattr(classical.WebpCodec, "compress", broken)
    assert rd.main(_args(data, ref, out)) == 1
    err = capsys.readouterr().err
    assert "webp at quality 20: RuntimeError('encoder crashed')" in err
    assert err.strip().splitlines()[-1].startswith("error: 1 codec(s) failed")
    doc = json.loads((out / "results.json").read_text())
    assert set(doc["codecs"]["jpeg"]["points"]) == {"20", "80"}
    assert (out / "bdrate.md").is_file()


def test_a_bad_anchor_is_refused_before_any_coding(setup, count_calls):
    data, ref, out = setup
    args = _args(data, ref, out)
    args[args.index("jpeg,pub:toy")] = "jpeg,pub:toyy"
    assert rd.main(args) == 1
    assert count_calls == [] and not (out / "results.json").exists()


def test_ncf_codecs_are_measured_through_the_container(setup):
    from neuralcodec import api

    data, ref, out = setup
    args = ["--dataset", str(data), "--reference", str(ref), "--out", str(out)]
    assert rd.main([*args, "--codecs", "test-zlib", "--qualities", "1,9"]) == 0
    doc = json.loads((out / "results.json").read_text())
    entry = doc["codecs"]["test-zlib"]["points"]["9"]["images"]["img00.png"]
    with Image.open(data / "img00.png") as im:
        img = np.asarray(im.convert("RGB"))
    assert entry["bytes"] == len(api.encode_array(img, "test-zlib", 9))  # whole .ncf file
    assert entry["psnr"] == metrics.PSNR_CAP  # lossless
    assert doc["codecs"]["test-zlib"]["writes_ncf"] is True


def test_a_codec_preset_is_its_own_curve(setup):
    data, ref, out = setup
    args = ["--dataset", str(data), "--reference", str(ref), "--out", str(out)]
    assert rd.main([*args, "--codecs", "inr@test", "--qualities", "inr@test:3"]) == 0
    doc = json.loads((out / "results.json").read_text())
    entry = doc["codecs"]["inr@test"]["points"]["3"]["images"]["img00.png"]
    assert entry["bytes"] > 0 and entry["psnr"] > 15


def test_results_measured_with_other_weights_are_measured_again(tmp_path, monkeypatch):
    shas = {"test-zlib": "a" * 64}
    monkeypatch.setattr(rd, "_weights_sha", lambda name: shas.get(name))
    store = rd.ResultsStore(tmp_path / "results.json", tmp_path / "kodak")
    store.describe("test-zlib")
    store.add("test-zlib", 3, "img.png", {"bpp": 1.0})
    assert not store.forget_stale("test-zlib") and store.has("test-zlib", 3, "img.png")
    shas["test-zlib"] = "b" * 64
    assert store.forget_stale("test-zlib")
    assert not store.has("test-zlib", 3, "img.png")


def test_results_of_a_changed_encoder_preset_are_measured_again(tmp_path, monkeypatch):
    from neuralcodec.codecs import inr

    store = rd.ResultsStore(tmp_path / "results.json", tmp_path / "kodak")
    store.describe("inr@test")
    store.add("inr@test", 3, "img.png", {"bpp": 1.0})
    assert not store.forget_stale("inr@test") and store.has("inr@test", 3, "img.png")
    store.doc["codecs"]["inr@fast"] = {"points": {"3": {"images": {"img.png": {}}}}}  # no digest
    changed = inr.preset_with("test", iterations=inr.PRESETS["test"].iterations + 1)
    monkeypatch.setitem(inr.PRESETS, "test", changed)
    assert store.forget_stale("inr@test") and not store.has("inr@test", 3, "img.png")
    assert not store.forget_stale("inr@fast") and store.has("inr@fast", 3, "img.png")


def test_readme_table_leaves_sparse_curves_without_curve_bd_rates():
    """A 2-point curve against a 4-point anchor: n/a (interpolation, not the codec); two sparse
    curves against each other keep their BD-rate."""
    script = _readme_script()

    def points(qs):
        return {str(q): {"mean": {"bpp": 0.1 * q, "psnr": 25 + q, "n_images": 1}} for q in qs}

    bd = {name: {a: {"bd_rate": -3.0} for a in ("full", "sparse")} for name in ("full", "sparse")}
    doc = {
        "codecs": {"full": {"points": points([1, 2, 3, 4])}, "sparse": {"points": points([1, 4])}},
        "summary": {
            "images": ["a.png"],
            "anchors": [{"key": "full", "label": "full"}, {"key": "sparse", "label": "sparse"}],
            "bd": bd,
        },
    }
    rows = {line.split("|")[1].strip(): line for line in script.results_table(doc).splitlines()}
    assert rows["`sparse`"].count("n/a (2 points)") == 1  # against "full" only
    assert rows["`sparse`"].endswith("| -3.0% |")
    assert "n/a" not in rows["`full`"]
