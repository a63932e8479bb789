"""``codec bench rd``: rate-distortion benchmark of image codecs over a folder of images.

Data flow::

    --dataset DIR --> images (sorted; --quick keeps 6)            --codecs --> registry
          |                                                               |
          +--> for codec, quality (bench_qualities; --quick keeps 4):     |
                 for each image not yet in results.json (--jobs processes):
                   bytes = codec.compress(img, q)        (benchmark-only codecs, native format)
                         | api.encode_array(img, name, q) (.ncf codecs: container included)
                   out   = codec.decompress(bytes) | api.decode_bytes(bytes)[0]
                   bpp = 8 * len(bytes) / (H * W), PSNR-RGB, MS-SSIM, encode / decode seconds
                 results.json rewritten atomically after every (codec, quality) point
          --> curves (mean over images per point) + published curves (--reference; only when
              the images are the 24 Kodak images they were measured on, else left out with a note)
          --> rd_psnr.png, rd_msssim.png, bdrate.md (every curve vs every --anchors entry)

Rerunning with the same ``--out`` skips (codec, quality, image) entries already measured, so an
interrupted run resumes and new codecs add to earlier ones. results.json records the dataset's
folder name and the images' file names, no absolute path (older files with one still resume).
``--dataset`` defaults to ``<data root>/kodak`` (``neuralcodec.datasets.paths``). Averaging
conventions are in ``neuralcodec.bench.metrics``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from neuralcodec.bench import bdrate, metrics, plots
from neuralcodec.bench.reference import (
    PUBLISHED_PREFIX,
    RDCurve,
    find_reference_dir,
    is_kodak,
    load_reference_curves,
    published_note,
)
from neuralcodec.codecs.base import (
    Codec,
    CodecError,
    codec_class,
    codec_names,
    get_codec,
    weights_available,
)
from neuralcodec.datasets.paths import DataPathError, kodak_dir

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_ANCHORS = (
    "jpeg",
    "webp",
    "avif",
    "x265",
    "pub:vtm",
    "pub:compressai-bmshj2018-hyperprior_mse_cpu",
    "pub:compressai-mbt2018-mean_mse_cpu",
)
RESULTS_FORMAT = "neuralcodec-rd/1"


class BenchError(Exception):
    """A benchmark that cannot run as asked (bad dataset, codec, quality, anchor, output)."""


@dataclass(frozen=True)
class QuickPreset:
    images: int = 6
    qualities: int = 4


@dataclass(frozen=True)
class BenchConfig:
    dataset: Path
    out: Path
    codecs: tuple[str, ...] | None = None  # None: every registered image codec
    qualities: tuple[str, ...] = ()  # "10,20" for all codecs or "codec:10,20"
    anchors: tuple[str, ...] | None = None  # None: DEFAULT_ANCHORS, unknown ones skipped
    reference: Path | None = None  # None: find_reference_dir's default
    quick: bool = False
    jobs: int = 1
    quick_preset: QuickPreset = QuickPreset()


# ---------------------------------------------------------------------------------------------
# inputs


def pick_evenly(items: list, n: int) -> list:
    """``n`` items spread evenly over ``items`` (first and last included), order kept."""
    if n >= len(items):
        return list(items)
    if n == 1:
        return [items[0]]
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)]


def list_images(dataset: Path, quick: QuickPreset | None) -> list[Path]:
    if not dataset.is_dir():
        raise BenchError(f"dataset {dataset} is not a directory")
    found = sorted(p for p in dataset.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not found:
        raise BenchError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {dataset}")
    return pick_evenly(found, quick.images) if quick else found


def load_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise BenchError(f"cannot read image {path}: {exc}") from None


def unavailable_reason(cls: type[Codec]) -> str | None:
    """Why a codec cannot run here: its own check, else missing weights."""
    reason = cls.unavailable_reason()
    if reason is None and not weights_available(cls.name):
        reason = "its weights are not available"
    return reason


VARIANT_SEP = "@"


def split_variant(key: str) -> tuple[str, dict[str, str]]:
    """``"inr@fast"`` -> ``("inr", {"preset": "fast"})``: a codec run with an encoder preset.

    Results are stored under the whole key, so presets of one codec are separate curves.
    """
    name, sep, preset = key.partition(VARIANT_SEP)
    return name, ({"preset": preset} if sep else {})


def variant_class(key: str) -> type[Codec]:
    return codec_class(split_variant(key)[0])


def make_codec(key: str) -> Codec:
    """The codec object of a ``name`` or ``name@preset`` key; ``BenchError`` if invalid."""
    name, options = split_variant(key)
    try:
        return get_codec(name, **options)
    except TypeError:
        raise BenchError(f"codec {name!r} has no presets (in {key!r})") from None


def select_codecs(names: tuple[str, ...] | None, log: Callable[[str], None]) -> list[str]:
    """Registered, available image codecs among ``names`` (all image codecs when None)."""
    wanted = list(names) if names else codec_names(modality="image")
    chosen = []
    for name in wanted:
        try:
            cls = variant_class(name)
            make_codec(name)
        except CodecError as exc:
            raise BenchError(str(exc)) from None
        if cls.modality != "image":
            raise BenchError(f"codec {name!r} codes {cls.modality}, not images")
        reason = unavailable_reason(cls)
        if reason:
            log(f"skipping {name}: {reason}")
        else:
            chosen.append(name)
    return chosen


def _parse_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise BenchError(f"qualities must be comma-separated integers, got {text!r}") from None
    if not values:
        raise BenchError(f"empty quality list {text!r}")
    return values


def parse_qualities(
    specs: tuple[str, ...], codecs: list[str], requested: tuple[str, ...] | None = None
) -> dict[str, tuple[int, ...]]:
    """``("10,20",)`` applies to every codec; ``("jpeg:10,20", "webp:50")`` per codec.

    A codec in ``requested`` but not in ``codecs`` (skipped as unavailable) is ignored.
    """
    chosen: dict[str, tuple[int, ...]] = {}
    for spec in specs:
        name, sep, values = spec.partition(":")
        if not sep:
            chosen.update({c: _parse_list(spec) for c in codecs})
        elif name in codecs:
            chosen[name] = _parse_list(values)
        elif name not in (requested or ()):
            raise BenchError(f"--qualities names {name!r}, which is not among the codecs run")
    return chosen


def qualities_for(name: str, explicit: dict, quick: QuickPreset | None) -> list[int]:
    codec = make_codec(name)
    if name in explicit:
        values = explicit[name]
    else:
        values = codec.qualities_to_bench()
        if quick:
            values = tuple(pick_evenly(list(values), quick.qualities))
    try:
        return sorted({codec.check_quality(q) for q in values})
    except CodecError as exc:
        raise BenchError(str(exc)) from None


# ---------------------------------------------------------------------------------------------
# measuring one image


def _code(
    codec: Codec, img: np.ndarray, quality: int, options: dict[str, str]
) -> tuple[bytes, np.ndarray, float, float]:
    """(bytes, reconstruction, encode s, decode s) through the codec's native or .ncf path."""
    if codec.writes_ncf:
        from neuralcodec import api

        t0 = time.perf_counter()
        data = api.encode_array(img, codec.name, quality, options)
        t1 = time.perf_counter()
        out = api.decode_bytes(data)[0]
    else:
        t0 = time.perf_counter()
        data = codec.compress(img, quality)
        t1 = time.perf_counter()
        out = codec.decompress(data)
    return bytes(data), np.asarray(out), t1 - t0, time.perf_counter() - t1


def measure(
    codec: Codec, quality: int, path: Path, options: dict[str, str] | None = None
) -> dict[str, Any]:
    """Code one image at one quality and return its RD entry (``options``: encoder preset)."""
    img = load_image(path)
    data, out, enc_s, dec_s = _code(codec, img, quality, options or {})
    if out.shape != img.shape or out.dtype != np.uint8:
        raise CodecError(
            f"{codec.name} returned {out.shape} {out.dtype} for a {img.shape} uint8 image"
        )
    entry = {
        "bytes": len(data),
        "bpp": metrics.bits_per_pixel(len(data), img.shape),
        "psnr": metrics.psnr_rgb(img, out),
        "ms_ssim": metrics.ms_ssim_rgb(img, out),
        "enc_s": enc_s,
        "dec_s": dec_s,
    }
    estimate = codec.estimated_bits(img, quality)
    if estimate is not None:  # learned codecs: the model's predicted rate (whole .ncf vs this)
        entry["est_bpp"] = estimate / (img.shape[0] * img.shape[1])
    return entry


def _measure_in_worker(key: str, quality: int, path: str) -> dict[str, Any]:
    return measure(make_codec(key), quality, Path(path), split_variant(key)[1])


# ---------------------------------------------------------------------------------------------
# results.json


def _weights_sha(name: str) -> str | None:
    """sha256 of the weights a learned codec uses now (None for codecs without weights)."""
    codec = make_codec(name)
    return codec.weights_sha256() if codec.weights_available() else None


def _settings(name: str) -> str | None:
    """Fingerprint of the encoder settings behind ``name`` (an ``inr@medium`` preset's definition)."""
    return make_codec(name).settings_fingerprint()


DIGEST_KEYS = ("weights_sha256", "settings_sha256")


def _digests(name: str) -> dict[str, str]:
    """What ``name``'s results were measured with, as stored beside them (absent: not applicable)."""
    found = zip(DIGEST_KEYS, (_weights_sha(name), _settings(name)), strict=True)
    return {key: value for key, value in found if value}


class ResultsStore:
    """The JSON document of results: ``codecs -> name -> points -> "<q>" -> images -> entry``."""

    def __init__(self, path: Path, dataset: Path):
        self.path = path
        self.doc = self._load(path, dataset)
        self._saved_at = time.monotonic()

    @staticmethod
    def _load(path: Path, dataset: Path) -> dict:
        fresh = {"format": RESULTS_FORMAT, "dataset": dataset.name, "codecs": {}}
        if not path.exists():
            return fresh
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise BenchError(f"cannot resume from {path}: {exc}") from None
        if not isinstance(doc, dict) or doc.get("format") != RESULTS_FORMAT:
            raise BenchError(f"{path} is not a {RESULTS_FORMAT} results file")
        # The folder name identifies the dataset, so data moved elsewhere still resumes; older
        # files stored the absolute path, which becomes the name when the file is next saved.
        if Path(str(doc.get("dataset"))).name != dataset.name:
            raise BenchError(
                f"{path} holds results for dataset {doc.get('dataset')}, not {dataset}; "
                "choose another --out"
            )
        doc["dataset"] = dataset.name
        return doc

    def _point(self, name: str, quality: int) -> dict:
        codec = self.doc["codecs"].setdefault(name, {"points": {}})
        return codec["points"].setdefault(str(quality), {"quality": quality, "images": {}})

    def has(self, name: str, quality: int, image: str) -> bool:
        point = self.doc["codecs"].get(name, {}).get("points", {}).get(str(quality), {})
        return image in point.get("images", {})

    def add(self, name: str, quality: int, image: str, entry: dict) -> None:
        self._point(name, quality)["images"][image] = entry

    def describe(self, name: str) -> None:
        cls = variant_class(name)
        codec = self.doc["codecs"].setdefault(name, {"points": {}})
        codec.update(description=cls.description, writes_ncf=cls.writes_ncf)
        codec.update(_digests(name))

    def forget_stale(self, name: str) -> bool:
        """Drop ``name``'s points when they were measured with other weights or encoder
        settings than today's (results stored without a digest are kept)."""
        codec = self.doc["codecs"].get(name, {})
        now = _digests(name)
        if all(codec.get(key) in (None, now.get(key)) for key in DIGEST_KEYS):
            return False
        del self.doc["codecs"][name]
        return True

    def update_means(self, images: list[str]) -> None:
        """Set each point's ``mean`` over ``images`` (dropped where an image is missing)."""
        for codec in self.doc["codecs"].values():
            for point in codec["points"].values():
                rows = [point["images"].get(i) for i in images]
                if all(rows):
                    point["mean"] = {**metrics.average_point(rows), "n_images": len(rows)}
                else:
                    point.pop("mean", None)

    def curves(self, images: list[str]) -> list[RDCurve]:
        """One curve per codec from the points measured on every image of ``images``."""
        self.update_means(images)
        out = []
        for name, codec in sorted(self.doc["codecs"].items()):
            points = [p["mean"] for p in codec["points"].values() if "mean" in p]
            if points:
                out.append(RDCurve.from_points(name, name, points))
        return out

    def save(self) -> None:
        write_atomic(self.path, json.dumps(self.doc, indent=1, allow_nan=False) + "\n")
        self._saved_at = time.monotonic()

    def save_every(self, seconds: float) -> None:
        """Save unless the last save is more recent than ``seconds``: a results file of a few
        hundred KB takes tens of ms to write, longer than a classical codec takes per image."""
        if time.monotonic() - self._saved_at >= seconds:
            self.save()


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------
# the run


@dataclass
class Plan:
    images: list[Path]
    work: list[tuple[str, int]]  # (codec, quality) points in run order

    def todo(self, store: ResultsStore) -> int:
        return sum(not store.has(c, q, p.name) for c, q in self.work for p in self.images)


def make_plan(config: BenchConfig, log: Callable[[str], None]) -> Plan:
    quick = config.quick_preset if config.quick else None
    images = list_images(config.dataset, quick)
    codecs = select_codecs(config.codecs, log)
    explicit = parse_qualities(config.qualities, codecs, config.codecs)
    work = [(c, q) for c in codecs for q in qualities_for(c, explicit, quick)]
    return Plan(images, work)


# A killed run loses at most this much finished work (interrupts and errors save at once).
SAVE_INTERVAL_S = 10.0


def _run_point(name, quality, paths, pool, bar, done) -> None:
    """Measure ``paths`` at one point, serially or on the process pool; ``done(image, entry)``
    is called as each image finishes, so an interrupted point keeps its finished images."""
    if pool is None:
        codec, options = make_codec(name), split_variant(name)[1]
        for p in paths:
            done(p.name, measure(codec, quality, p, options))
            bar.update(1)
        return
    futures = {p.name: pool.submit(_measure_in_worker, name, quality, str(p)) for p in paths}
    for image, fut in futures.items():
        done(image, fut.result())
        bar.update(1)


def run_points(plan: Plan, store: ResultsStore, jobs: int, log) -> list[str]:
    """Measure every missing entry; returns one message per failed codec."""
    from tqdm import tqdm

    failures: list[str] = []
    failed: set[str] = set()
    bar = tqdm(total=plan.todo(store), unit="img", disable=not sys.stderr.isatty(), leave=False)
    ctx = get_context("spawn")
    for name in dict.fromkeys(n for n, _ in plan.work):
        if store.forget_stale(name):
            log(
                f"{name}: weights or encoder settings changed since the stored results; "
                "measuring again"
            )
    with bar, ProcessPoolExecutor(jobs, mp_context=ctx) if jobs > 1 else _NoPool() as pool:
        for name, quality in plan.work:
            missing = [p for p in plan.images if not store.has(name, quality, p.name)]
            if name in failed or not missing:
                continue
            bar.set_description(f"{name} q={quality}")
            store.describe(name)

            def done(image: str, entry: dict, name=name, quality=quality) -> None:
                store.add(name, quality, image, entry)
                store.save_every(SAVE_INTERVAL_S)

            try:
                _run_point(name, quality, missing, pool if jobs > 1 else None, bar, done)
            except Exception as exc:  # one failing codec must not stop the others
                failed.add(name)
                detail = str(exc) if isinstance(exc, (CodecError, BenchError)) else repr(exc)
                failures.append(f"{name} at quality {quality}: {detail}")
                log(f"error: {failures[-1]}; skipping the rest of {name}")
            finally:
                store.save()
    return failures


class _NoPool:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def check_anchors(config: BenchConfig, published: list[RDCurve]) -> None:
    """Refuse explicit anchors that name no codec or no published curve, before any work."""
    if config.anchors is None:
        return
    keys = {c.key for c in published}
    for name in config.anchors:
        if name.startswith(PUBLISHED_PREFIX):
            if published and name not in keys:
                known = ", ".join(sorted(keys))
                raise BenchError(f"unknown published anchor {name!r} (known: {known})")
        else:
            try:
                variant_class(name)
            except CodecError as exc:
                raise BenchError(f"anchor: {exc}") from None


def resolve_anchors(
    config: BenchConfig, curves: list[RDCurve], quiet_published: bool = False
) -> tuple[list[RDCurve], list[str]]:
    """Anchor curves in the order asked, plus notes on anchors that have no curve here
    (none for published anchors with ``quiet_published``: one note already says why)."""
    by_key = {c.key: c for c in curves}
    anchors, notes = [], []
    for name in config.anchors if config.anchors is not None else DEFAULT_ANCHORS:
        if name in by_key:
            anchors.append(by_key[name])
        elif not (quiet_published and name.startswith(PUBLISHED_PREFIX)):
            notes.append(f"anchor {name} has no results for these images; left out")
    return anchors, notes


def applicable_published(
    config: BenchConfig, plan: Plan, published: list[RDCurve]
) -> tuple[list[RDCurve], list[str]]:
    """``published`` when the run covers the 24 Kodak images, else no curves and a note."""
    if not published or is_kodak(plan.images):
        return published, []
    return [], [published_note(config.dataset, len(plan.images))]


def write_reports(
    config: BenchConfig,
    plan: Plan,
    store: ResultsStore,
    published: list[RDCurve],
    left_out: Sequence[str] = (),
) -> None:
    """results.json summary, the two RD plots and bdrate.md from what the store holds;
    ``left_out``: notes on published curves that do not apply to these images."""
    image_names = [p.name for p in plan.images]
    local = store.curves(image_names)
    curves = local + published
    anchors, notes = resolve_anchors(config, curves, quiet_published=bool(left_out))
    notes = [*left_out, *notes]
    title = f"{config.dataset.name}: {len(image_names)} images"
    plots.plot_rd(curves, "psnr", config.out / "rd_psnr.png", f"{title}, PSNR-RGB")
    plots.plot_rd(curves, "ms_ssim", config.out / "rd_msssim.png", f"{title}, MS-SSIM-RGB")
    md = bdrate.bd_markdown(curves, anchors, f"BD-rates on {title}", notes)
    write_atomic(config.out / "bdrate.md", md + "\n")
    store.doc["summary"] = {
        "images": image_names,
        "reference": config.reference.name if published and config.reference else None,
        "anchors": [{"key": a.key, "label": a.label} for a in anchors],
        "bd": bdrate.bd_matrix(local, anchors),
    }
    store.save()


def run_benchmark(config: BenchConfig, log: Callable[[str], None]) -> list[str]:
    """Run the whole benchmark; returns failure messages (empty when everything ran)."""
    if config.jobs < 1:
        raise BenchError(f"--jobs must be >= 1, got {config.jobs}")
    reference = find_reference_dir(config.reference)
    config = replace(config, dataset=config.dataset.resolve(), reference=reference)
    published, problems = load_reference_curves(reference)
    check_anchors(config, published)
    plan = make_plan(config, log)
    published, left_out = applicable_published(config, plan, published)
    for msg in [*problems, *left_out]:
        log(f"note: {msg}")
    store = ResultsStore(config.out / "results.json", config.dataset)
    start = time.perf_counter()
    failures = run_points(plan, store, config.jobs, log)
    write_reports(config, plan, store, published, left_out)
    log(
        f"{len(plan.work)} points x {len(plan.images)} images in "
        f"{time.perf_counter() - start:.1f} s -> {config.out}"
    )
    return failures


# ---------------------------------------------------------------------------------------------
# command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset",
        type=Path,
        help="folder of images (default: <data root>/kodak; data root: $NEURALCODEC_DATA, "
        "else ../shared/data beside the checkout)",
    )
    parser.add_argument(
        "--codecs",
        help="comma-separated codec names, NAME@PRESET for an encoder preset (e.g. inr@fast); "
        "default: all image codecs",
    )
    parser.add_argument(
        "--qualities",
        nargs="+",
        default=[],
        metavar="Q",
        help="'10,20,30' for every codec, or per codec 'jpeg:10,20 webp:50,80' "
        "(default: each codec's bench_qualities)",
    )
    parser.add_argument("--out", type=Path, default=Path("results/rd"), help="output folder")
    parser.add_argument(
        "--quick", action="store_true", help="6 images and 4 qualities per codec, for a smoke run"
    )
    parser.add_argument("--jobs", type=int, default=1, help="processes over images (default 1)")
    parser.add_argument(
        "--anchors",
        help="comma-separated anchors: codec names and published keys 'pub:<file stem>' "
        f"(default: {','.join(DEFAULT_ANCHORS)})",
    )
    parser.add_argument(
        "--reference",
        type=Path,
        help="folder of published Kodak results JSON, used only when the images are the 24 "
        "Kodak images (default: $NEURALCODEC_REFERENCE, else <data root>/../reference/kodak)",
    )


def _split(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(t.strip() for t in text.split(",") if t.strip())


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    return BenchConfig(
        dataset=Path(args.dataset) if args.dataset else kodak_dir(),
        out=Path(args.out),
        codecs=_split(args.codecs),
        qualities=tuple(args.qualities or ()),
        anchors=_split(args.anchors),
        reference=Path(args.reference) if args.reference else None,
        quick=bool(args.quick),
        jobs=int(args.jobs),
    )


def _log(msg: str) -> None:
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``codec bench rd``: 0 when every point ran, 1 otherwise."""
    try:
        failures = run_benchmark(config_from_args(args), _log)
    except (BenchError, CodecError, DataPathError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if failures:
        print(f"error: {len(failures)} codec(s) failed: {'; '.join(failures)}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="codec bench rd", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
