"""Structure-aware fuzzing of every ``.ncf`` decoder (``make fuzz``, ``python -m neuralcodec.fuzz``).

::

    corpus:  small real .ncf files, one or two per codec and quality (cached in OUT/corpus,
             rebuilt when they stop decoding): image codecs code crops of a training image,
             the others small synthetic samples of their modality (a point cloud with colours,
             meshes with a border, a seam, normals and UVs, a splat scene, a 4:2:0 clip), all
             through api.encode_array as the CLI does
    cases:   make_case(corpus, seed, index) (container/mutate.py): damaged structurally, every
             CRC recomputed, so the damage reaches each codec's own decoder
    workers: subprocesses (RLIMIT_AS memory cap, one torch thread) decode cases with
             api.decode_bytes and report one line per case
    parent:  hands out batches of case numbers, kills a worker that exceeds the per-case time
             limit, notices one that dies, and writes a reproducer for every failure

A case passes when it decodes to what the header describes (an image array of the header's shape; a
point cloud, mesh or splat scene with the header's counts of points, vertices and faces or splats
and consistent tables; a video whose frame stream, read to the end, has the header's frame count
and plane sizes), or raises a one-line error of a ``ValueError`` subclass the project defines
(``ContainerError``, ``CodecError``, ``WeightsError``, ...). Anything else is a failure: another
exception type, a multi-line message, a wrong shape, a warning (numpy's overflow warnings, say),
``MemoryError``, a crash of the worker or a hang. Failures are grouped by signature (kind,
exception type, innermost project frame); the first few reproducers of each signature are kept in
OUT/failures. The campaign is seeded and resumable: OUT/state.json records how far it got.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import os
import resource
import selectors
import subprocess
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neuralcodec.container.mutate import MUTATOR_VERSION, Seed, make_case, parse_seed

IMAGE_CODECS = ("elic-int4", "elic-int", "elic", "mbt-mean", "inr", "test-raw", "test-zlib")
OTHER_CODECS = ("octree", "meshtrav", "splat-vq", "elic-ip")  # point cloud, mesh, splats, video
CORPUS_CODECS = IMAGE_CODECS + OTHER_CODECS
CORPUS_OPTIONS = {"inr": {"preset": "test"}, "elic-ip": {"gop": 3}}
CORPUS_CROPS = {"inr": ((32, 48),), "test-raw": ((4, 6),), "test-zlib": ((4, 6),)}
DEFAULT_CROPS = ((32, 48), (64, 64))
QUALITIES = (2, 6)
# splat-vq 8: the exact level, its own code path; octree 9: 16 bits, the sensor modes
CORPUS_QUALITIES = {"splat-vq": (2, 6, 8), "octree": (2, 6, 9)}
CORPUS_IMAGE = Path("train") / "set5" / "bird.png"
KEEP_PER_SIGNATURE = 3
CHECKPOINT_CASES = 2000


# ----------------------------------------------------------------------------- corpus


def _crop(image: np.ndarray, h: int, w: int) -> np.ndarray:
    y, x = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
    return np.ascontiguousarray(image[y : y + h, x : x + w, :3])


def _decodes(data: bytes) -> bool:
    return run_case(data)[0] == "ok"


# Synthetic but realistic samples of the other modalities, small so that a case decodes fast;
# seeded, so a cached corpus file stays valid.


def _ring_cloud():
    """400 points on a noisy ring (a lidar-like sweep) with colours and an intensity."""
    from neuralcodec.datasets.pointcloud import PointCloud

    rng = np.random.default_rng(11)
    n = 400
    t = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = 6.0 + 0.4 * np.sin(3 * t) + rng.normal(0, 0.05, n)
    xyz = np.stack([r * np.cos(t), r * np.sin(t), rng.normal(0, 0.3, n)], 1).astype(np.float32)
    shade = (127 + 120 * np.sin(t)).astype(np.uint8)
    rgb = np.stack([shade, 255 - shade, np.full(n, 90, np.uint8)], 1)
    intensity = np.clip(0.5 + 0.1 * rng.normal(size=n), 0, 1).astype(np.float32)
    return PointCloud(xyz, {"rgb": rgb, "intensity": intensity})


def lidar_sweep(beams: int = 8, steps: int = 120, seed: int = 12):
    """A spinning LiDAR's sweep of a ground plane and a wavy wall around it (analytic scene):
    ``beams`` lasers from -15 to +5 degrees, ``steps`` firings per turn with jitter, range
    noise and dropouts."""
    from neuralcodec.datasets.pointcloud import PointCloud

    rng = np.random.default_rng(seed)
    el = np.radians(np.linspace(-15, 5, beams))[:, None]
    az = 2 * np.pi * (np.arange(steps)[None, :] + rng.uniform(0, 1, (beams, 1))) / steps
    az = az + rng.normal(0, 2e-4, az.shape)
    wall = 8 + 2 * np.sin(3 * az) + np.where(np.cos(az) > 0.9, -3.0, 0.0)
    ground = np.where(el < 0, 1.7 / np.tan(-np.minimum(el, -1e-6)), np.inf)
    r = np.minimum(wall, ground) + rng.normal(0, 0.01, az.shape)
    keep = rng.random(az.shape) > 0.05
    r, az, el = r[keep], az[keep], np.broadcast_to(el, keep.shape)[keep]
    xyz = np.stack([r * np.cos(az), r * np.sin(az), r * np.tan(el)], 1).astype(np.float32)
    return PointCloud(xyz)


def depth_view(width: int = 48, height: int = 36, seed: int = 13, tilt: float = 9.0):
    """A pinhole depth camera (depth in millimetres, noise, a random 60 % of the pixels) looking
    at a floor, a back wall and a ball, back-projected and pitched by ``tilt`` degrees into an
    upright frame (x right, y forward, z up)."""
    from neuralcodec.datasets.pointcloud import PointCloud

    rng = np.random.default_rng(seed)
    f = width * 0.9
    u, v = np.meshgrid(np.arange(width), np.arange(height))
    d = np.stack([(u - width / 2 + 0.3) / f, (v - height / 2 - 0.2) / f, np.ones(u.shape)], -1)
    d = d.reshape(-1, 3)
    z = np.full(len(d), 5.0)  # back wall at depth 5
    with np.errstate(divide="ignore"):
        floor = np.where(d[:, 1] > 0, 1.2 / d[:, 1], np.inf)  # y down: floor at y = 1.2
    z = np.minimum(z, floor)
    centre, radius = np.array([0.3, 0.4, 3.0]), 0.6
    b = d @ centre
    disc = b * b - (d * d).sum(1) * (centre @ centre - radius**2)
    t = (b - np.sqrt(np.maximum(disc, 0))) / (d * d).sum(1)
    z = np.where(disc > 0, np.minimum(z, t), z)
    z = np.round((z + rng.normal(0, 0.002, z.shape) * z * z) * 1000) / 1000
    keep = rng.random(len(z)) < 0.6
    p = d[keep] * z[keep, None]
    a = np.radians(tilt)
    rot = np.array([[1, 0, 0], [0, np.sin(a), np.cos(a)], [0, -np.cos(a), np.sin(a)]])
    return PointCloud((p @ rot.T).astype(np.float32))


def _seam_grid():
    """A curved 8 x 8 grid (a surface with a border) cut along a column whose vertices are
    duplicated (a UV seam), with per-corner UVs, per-vertex normals and colours."""
    from neuralcodec.datasets.mesh import Mesh

    n, cut = 8, 4
    y, x = np.mgrid[0:n, 0:n]
    z = np.sin(x / 2.5) * np.cos(y / 3.0)
    v = np.stack([x.ravel(), y.ravel(), z.ravel()], 1).astype(np.float64)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = (idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel(),
                  idx[1:, :-1].ravel())  # fmt: skip
    f = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    seam = np.flatnonzero(x.ravel() == cut)
    copy_of = dict(zip(seam.tolist(), range(n * n, n * n + len(seam)), strict=True))
    right = (v[f][:, :, 0] >= cut).all(axis=1)
    f[right] = np.vectorize(lambda i: copy_of.get(int(i), int(i)))(f[right])
    v = np.concatenate([v, v[seam]])
    normals = np.stack([-np.gradient(v[:, 2]), np.zeros(len(v)), np.ones(len(v))], 1)
    normals = (normals / np.linalg.norm(normals, axis=1, keepdims=True)).astype(np.float32)
    uvs = v[:, :2] / (n - 1)
    uvs[n * n :, 0] += 0.05  # the copies sit on the other side of the seam in UV space
    rgb = (np.clip(v[:, [0, 1, 2]] * [30, 30, 60] + 60, 0, 255)).astype(np.uint8)
    return Mesh(v, f, normals, uvs, None, f.copy(), {"rgb": rgb})


def _closed_mesh():
    """A closed, manifold surface: an octahedron with each face split into four."""
    from neuralcodec.datasets.mesh import Mesh

    v = [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]]
    tris = [[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]]
    mid: dict[tuple[int, int], int] = {}

    def middle(i: int, j: int) -> int:
        key = (min(i, j), max(i, j))
        if key not in mid:
            p = np.add(v[i], v[j]) / 2
            v.append(list(p / np.linalg.norm(p)))
            mid[key] = len(v) - 1
        return mid[key]

    faces = []
    for a, b, c in tris:
        ab, bc, ca = middle(a, b), middle(b, c), middle(c, a)
        faces += [[a, ab, ca], [ab, b, bc], [ca, bc, c], [ab, bc, ca]]
    return Mesh(np.array(v, np.float64), np.array(faces, np.int64))


def _splat_scene():
    """160 degree-1 Gaussians on a noisy sphere, colours varying smoothly over it."""
    from neuralcodec.datasets.splat import GaussianScene

    rng = np.random.default_rng(12)
    n = 160
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    q = rng.normal(size=(n, 4))
    return GaussianScene(
        positions=(d * (1.0 + 0.02 * rng.normal(size=(n, 1)))).astype(np.float32),
        scales_log=rng.uniform(-4.5, -3.0, (n, 3)).astype(np.float32),
        rotations=(q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32),
        opacities=rng.uniform(-2, 4, n).astype(np.float32),
        sh_dc=(np.stack([d[:, 0], d[:, 1], -d[:, 2]], 1) * 1.2).astype(np.float32),
        sh_rest=(rng.normal(size=(n, 3, 3)) * 0.1).astype(np.float32),
        sh_degree=1,
    )


def _panning_clip():
    """Four 48 x 32 4:2:0 frames of a textured scene panning by (1.5, 2) pixels a frame."""
    from fractions import Fraction

    from neuralcodec.codecs.learned_video import rgb_to_yuv420
    from neuralcodec.datasets.video import VideoInfo, frames_source

    w, h, n = 48, 32, 4
    rng = np.random.default_rng(13)
    y, x = np.mgrid[0 : h + 16, 0 : w + 16]
    base = 110 + 60 * np.sin(x / 5.0) * np.cos(y / 7.0) + rng.normal(0, 6, x.shape)
    base[8:18, 10:30] += 50
    rgb = np.clip(np.stack([base, base * 0.8 + 30, 255 - base], -1), 0, 255).astype(np.uint8)
    frames = [
        rgb_to_yuv420(rgb[2 * i : 2 * i + h, (3 * i) // 2 : (3 * i) // 2 + w]) for i in range(n)
    ]
    info = VideoInfo(w, h, "420", 8, Fraction(25), Fraction(1), "p", {}, frames=n)
    return frames_source(info, iter(frames), "fuzz clip")


SAMPLES = {  # modality -> corpus label -> sample
    "pointcloud": {"ring400": _ring_cloud, "lidar": lidar_sweep, "depth": depth_view},
    "mesh": {"seamgrid": _seam_grid, "closed": _closed_mesh},
    "splat": {"sphere160": _splat_scene},
    "video": {"48x32x4": _panning_clip},
}


def build_corpus(directory: Path, codecs: tuple[str, ...], image: Path, log=print) -> list[Path]:
    """Small real files of every ``.ncf`` codec here whose weights are available."""
    from neuralcodec import api
    from neuralcodec.codecs.base import codec_class, codec_names
    from neuralcodec.datasets.images import read_image
    from neuralcodec.datasets.paths import write_bytes_atomic

    directory.mkdir(parents=True, exist_ok=True)
    known, pixels, paths = set(codec_names(ncf_only=True)), None, []
    for name in codecs:
        if name not in known or not api.weights_available(name):
            log(f"corpus: skipping {name} (not registered or no weights)")
            continue
        cls = codec_class(name)
        lo, hi = cls.quality_range
        qualities = sorted({min(max(q, lo), hi) for q in CORPUS_QUALITIES.get(name, QUALITIES)})
        if cls.modality == "image":
            samples = [(f"{h}x{w}", (h, w)) for h, w in CORPUS_CROPS.get(name, DEFAULT_CROPS)]
        elif cls.modality in SAMPLES:
            samples = [(label, None) for label in SAMPLES[cls.modality]]
        else:
            log(f"corpus: skipping {name} (no {cls.modality} samples to code)")
            continue
        for label, crop in samples:
            for q in qualities:
                path = directory / f"{name}_{label}_q{q}.ncf"
                if not (path.is_file() and _decodes(path.read_bytes())):
                    log(f"corpus: encoding {path.name}")
                    if crop is None:
                        data = SAMPLES[cls.modality][label]()
                    else:
                        pixels = read_image(image) if pixels is None else pixels
                        data = _crop(pixels, *crop)
                    options = CORPUS_OPTIONS.get(name)
                    blob = api.encode_array(data, name, q, options, cls.modality)
                    write_bytes_atomic(path, blob, force=True)
                paths.append(path)
    return paths


def load_seeds(paths: list[Path]) -> list[Seed]:
    return [parse_seed(p.read_bytes(), p.stem) for p in paths]


def corpus_digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- one case


def _allowed(exc: BaseException) -> bool:
    cls = type(exc)
    return isinstance(exc, ValueError) and cls.__module__.split(".")[0] == "neuralcodec"


def _signature(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "neuralcodec" in f.filename or "conftest" in f.filename]
    where = ours[-1] if ours else (frames[-1] if frames else None)
    place = f"{Path(where.filename).name}:{where.lineno}" if where else "?"
    return f"{type(exc).__name__} at {place}"


def run_case(data: bytes) -> tuple[str, str]:
    """('ok' | 'error' | 'fail', detail) of decoding ``data``; a warning the decode emits (a
    numpy overflow, say) is a failure too: the CLI would print it above the one-line error."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status, detail = _decode_case(data)
    if caught and status != "fail":
        w = caught[0]
        where = f"{Path(w.filename).name}:{w.lineno}"
        return "fail", f"warning: {w.category.__name__} at {where} | {str(w.message)[:200]}"
    return status, detail


def _decode_case(data: bytes) -> tuple[str, str]:
    from neuralcodec import api

    try:
        array, info = api.decode_bytes(data)
    except MemoryError as exc:
        return "fail", f"memory: {_signature(exc)}"
    except Exception as exc:  # the point: classify every exception
        return _classify(exc)
    if info["modality"] == "video":  # a frame stream: decoding happens while it is read
        try:
            problem = _check_video(array, info)
        except MemoryError as exc:
            return "fail", f"memory: {_signature(exc)}"
        except Exception as exc:
            return _classify(exc)
    else:
        problem = _check_decoded(array, info)
    return ("fail", f"shape: {problem}") if problem else ("ok", "")


def _classify(exc: BaseException) -> tuple[str, str]:
    msg = str(exc)
    if _allowed(exc) and "\n" not in msg and msg:
        return "error", type(exc).__name__
    first = msg.splitlines()[0][:200] if msg else ""
    return "fail", f"exception: {_signature(exc)} | {first}"


def _rows(name: str, arr: Any, want: tuple[int, ...]) -> str:
    """'' when ``arr`` is a numeric array of shape ``want`` (None: any size there), else why."""
    shape = np.shape(arr) if arr is not None else None
    if (
        shape is None
        or len(shape) != len(want)
        or any(w is not None and s != w for s, w in zip(shape, want, strict=True))
        or np.asarray(arr).dtype.kind not in "iuf"
    ):
        return f"{name} is {shape}, want {want}"
    return ""


def _indices(name: str, arr: Any, rows: int, size: int) -> str:
    """'' when ``arr`` is a ``rows`` x 3 integer table of indexes into ``size`` entries."""
    bad = _rows(name, arr, (rows, 3))
    if bad or not rows:
        return bad
    arr = np.asarray(arr)
    if arr.dtype.kind not in "iu" or arr.min() < 0 or arr.max() >= size:
        return f"{name} index outside 0..{size - 1}"
    return ""


def _check_decoded(data: Any, info: dict[str, Any]) -> str:
    """Why ``data`` (a non-video decode) does not match its header ``info``; '' if it does."""
    shape, modality = tuple(info["shape"]), info["modality"]
    if modality == "pointcloud":
        xyz = getattr(data, "xyz", None)
        n = shape[0]
        problems = [_rows("xyz", xyz, (n, 3))]
        for name, arr in getattr(data, "attributes", {}).items():
            problems.append(_rows(f"attribute {name}", arr, (n,) + (None,) * (np.ndim(arr) - 1)))
    elif modality == "mesh":
        nv, nf = shape
        faces = getattr(data, "faces", None)
        problems = [_rows("vertices", getattr(data, "vertices", None), (nv, 3))]
        problems.append(_indices("faces", faces, nf, nv))
        for kind in ("normal", "uv"):
            table, idx = getattr(data, f"{kind}s", None), getattr(data, f"{kind}_faces", None)
            if table is not None:
                width = 3 if kind == "normal" else 2
                rows = nv if idx is None else None
                problems.append(_rows(f"{kind}s", table, (rows, width)))
                if idx is not None:
                    problems.append(_indices(f"{kind} indexes", idx, nf, len(table)))
        for name, arr in getattr(data, "attributes", {}).items():
            problems.append(_rows(f"attribute {name}", arr, (nv,) + (None,) * (np.ndim(arr) - 1)))
    elif modality == "splat":  # lossy levels may prune splats and lower the SH degree
        n, coeffs = shape
        m, degree = len(getattr(data, "positions", ())), getattr(data, "sh_degree", -1)
        if not 1 <= m <= n or degree not in (0, 1, 2, 3) or (degree + 1) ** 2 > coeffs:
            return f"{m} splats of SH degree {degree}, header says {n} x {coeffs}"
        k = (degree + 1) ** 2 - 1
        want = {"positions": (m, 3), "scales_log": (m, 3), "rotations": (m, 4),
                "opacities": (m,), "sh_dc": (m, 3), "sh_rest": (m, k, 3)}  # fmt: skip
        problems = [_rows(f, getattr(data, f, None), w) for f, w in want.items()]
    else:
        got = tuple(np.shape(data))
        problems = [f"decoded {got}, header says {shape}" if got != shape else ""]
    return "; ".join(p for p in problems if p)


def _check_video(source: Any, info: dict[str, Any]) -> str:
    """Read the decoded frame stream to its end; why it does not match ``info``, '' if it does."""
    frames, h, w, channels = info["shape"]
    ch, cw = (h, w) if info["colorspace"] != "yuv420" else ((h + 1) // 2, (w + 1) // 2)
    planes = [(h, w)] if channels == 1 else [(h, w), (ch, cw), (ch, cw)]
    got = 0
    for frame in source:
        shapes = [np.shape(p) for p in frame]
        if shapes != planes:
            return f"frame {got} planes {shapes}, header says {planes}"
        got += 1
        if got > frames:
            break
    return f"{got} frames decoded, header says {frames}" if got != frames else ""


# ----------------------------------------------------------------------------- worker


def _import_plugin(path: str) -> None:
    """Import the ``.py`` file at ``path`` once (it registers extra codecs)."""
    target = Path(path).resolve()
    specs = (getattr(m, "__spec__", None) for m in list(sys.modules.values()))
    origins = (getattr(spec, "origin", None) for spec in specs)
    if any(o and o not in ("built-in", "frozen") and Path(o).resolve() == target for o in origins):
        return
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    sys.path.insert(0, str(Path(path).parent))
    spec.loader.exec_module(module)


def _virtual_size() -> int:
    """This process's address-space size in bytes (VmSize), 0 where /proc is not there."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) << 10
    except OSError:
        pass
    return 0


def _cap_address_space(headroom_mb: int) -> None:
    """Cap the address space at what is mapped now (every codec loaded) plus `headroom_mb`.

    What a process maps after importing torch and loading the models (libraries, thread arenas,
    weights) differs between machines and grows with every shipped codec; a fixed cap would sit
    below it on some machines and turn ordinary allocations into failures. The headroom is what
    one case may add, which is what the cap is there to bound."""
    limit = _virtual_size() + (headroom_mb << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def worker_main(args: argparse.Namespace) -> int:
    """Read 'start count' lines; answer 'index status detail' per case."""
    import faulthandler

    import torch

    faulthandler.enable()
    torch.set_num_threads(1)
    for plugin in args.plugin:
        _import_plugin(plugin)
    paths = [Path(p) for p in json.loads(Path(args.corpus_list).read_text())]
    seeds = load_seeds(paths)
    for p in paths:  # load every model before the first timed case
        run_case(p.read_bytes())
    _cap_address_space(args.memory_mb)
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    for line in sys.stdin:
        start, count = map(int, line.split())
        for index in range(start, start + count):
            data, _ = make_case(seeds, args.seed, index)
            status, detail = run_case(data)
            out.write(f"{index}\t{status}\t{detail}\n")
            out.flush()
    return 0


@dataclass
class Worker:
    proc: subprocess.Popen
    stderr_path: Path
    pending: list[int] = field(default_factory=list)  # case numbers sent, not yet answered
    since: float = 0.0
    buffer: bytes = b""


def _spawn(args: argparse.Namespace, slot: int) -> Worker:
    cmd = [sys.executable, "-m", "neuralcodec.fuzz", "--worker", "--seed", str(args.seed)]
    cmd += ["--corpus-list", str(args.out / "corpus.json"), "--memory-mb", str(args.memory_mb)]
    for plugin in args.plugin:
        cmd += ["--plugin", plugin]
    err = args.out / f"worker{slot}.stderr"
    with open(err, "wb") as f:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=f)
    line = proc.stdout.readline()
    if line != b"ready\n":
        tail = err.read_bytes()[-2000:].decode(errors="replace")
        raise RuntimeError(f"fuzz worker did not start: {line!r} {tail}")
    return Worker(proc, err)


# ----------------------------------------------------------------------------- campaign


@dataclass
class Tally:
    counts: dict[str, int] = field(default_factory=lambda: {"ok": 0, "error": 0, "fail": 0})
    errors: dict[str, int] = field(default_factory=dict)
    signatures: dict[str, dict[str, Any]] = field(default_factory=dict)


class Campaign:
    """Runs case numbers [start, stop) on ``args.workers`` subprocesses."""

    def __init__(self, args: argparse.Namespace, seeds: list[Seed], tally: Tally) -> None:
        self.args, self.seeds, self.tally = args, seeds, tally
        self.sel = selectors.DefaultSelector()
        self.workers: dict[int, Worker] = {}
        self.queue: list[tuple[int, int]] = []

    def run(self, start: int, stop: int, batch: int = 32) -> None:
        self.queue = [(i, min(batch, stop - i)) for i in range(start, stop, batch)]
        for slot in range(self.args.workers):
            if slot not in self.workers:
                self._start(slot)
            self._feed(slot)
        while any(w.pending for w in self.workers.values()):
            for key, _ in self.sel.select(timeout=0.5):
                self._read(key.data)
            self._check_timeouts()

    def close(self) -> None:
        for slot in list(self.workers):
            self._stop(slot)

    def _start(self, slot: int) -> None:
        w = _spawn(self.args, slot)
        self.workers[slot] = w
        self.sel.register(w.proc.stdout, selectors.EVENT_READ, slot)

    def _stop(self, slot: int) -> list[int]:
        w = self.workers.pop(slot)
        self.sel.unregister(w.proc.stdout)
        with contextlib.suppress(ProcessLookupError):
            w.proc.kill()
        w.proc.wait()
        w.proc.stdout.close()
        w.proc.stdin.close()
        return w.pending

    def _feed(self, slot: int) -> None:
        w = self.workers[slot]
        if w.pending or not self.queue:
            return
        start, count = self.queue.pop(0)
        w.pending = list(range(start, start + count))
        w.since = time.monotonic()
        w.proc.stdin.write(f"{start} {count}\n".encode())
        w.proc.stdin.flush()

    def _read(self, slot: int) -> None:
        w = self.workers[slot]
        chunk = os.read(w.proc.stdout.fileno(), 65536)
        if not chunk:
            code = w.proc.wait()
            tail = w.stderr_path.read_bytes()[-3000:].decode(errors="replace").strip()
            last = tail.splitlines()[-6:] if tail else []
            self._lost(slot, f"crash: worker exit status {code} | {' / '.join(last)[:600]}")
            return
        w.buffer += chunk
        *lines, w.buffer = w.buffer.split(b"\n")
        for line in lines:
            index, status, detail = line.decode().split("\t", 2)
            self._record(int(index), status, detail)
            w.pending.remove(int(index))
            w.since = time.monotonic()
        self._feed(slot)

    def _check_timeouts(self) -> None:
        now = time.monotonic()
        for slot, w in list(self.workers.items()):
            if w.pending and now - w.since > self.args.timeout:
                self._lost(slot, f"hang: no answer within {self.args.timeout:g} s")

    def _lost(self, slot: int, detail: str) -> None:
        """The worker died or hung on its first pending case: record it, restart the rest."""
        pending = self._stop(slot)
        if pending:
            self._record(pending[0], "fail", detail)
            if len(pending) > 1:
                self.queue.insert(0, (pending[1], len(pending) - 1))
        self._start(slot)
        self._feed(slot)

    def _record(self, index: int, status: str, detail: str) -> None:
        t = self.tally
        t.counts[status] = t.counts.get(status, 0) + 1
        if status == "error":
            t.errors[detail] = t.errors.get(detail, 0) + 1
        if status != "fail":
            return
        sig = detail.split(" | ")[0]
        entry = t.signatures.setdefault(sig, {"count": 0, "cases": [], "detail": detail})
        entry["count"] += 1
        if len(entry["cases"]) < KEEP_PER_SIGNATURE:
            entry["cases"].append(index)
            self._write_reproducer(index, detail)

    def _write_reproducer(self, index: int, detail: str) -> None:
        data, steps = make_case(self.seeds, self.args.seed, index)
        folder = self.args.out / "failures"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"case{index}.ncf").write_bytes(data)
        text = f"seed {self.args.seed} case {index}\n{detail}\nmutations: {steps}\n"
        (folder / f"case{index}.txt").write_text(text)


# ----------------------------------------------------------------------------- driver


def _load_state(path: Path, key: dict[str, Any], log) -> tuple[int, Tally]:
    if path.is_file():
        state = json.loads(path.read_text())
        if state.get("key") == key:
            tally = Tally(state["counts"], state["errors"], state["signatures"])
            log(f"resuming at case {state['next']} ({path})")
            return state["next"], tally
        log(f"{path} is for another seed or corpus: starting over")
    return 0, Tally()


def _save_state(path: Path, key: dict[str, Any], nxt: int, tally: Tally, rate: float) -> None:
    state = {"key": key, "next": nxt, "cases_per_second": round(rate, 1)}
    state.update(counts=tally.counts, errors=tally.errors, signatures=tally.signatures)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    tmp.replace(path)


def run(args: argparse.Namespace, log=print) -> dict[str, Any]:
    """Build the corpus, then run cases up to ``args.cases`` (resuming); returns the state."""
    from neuralcodec.datasets.paths import data_root

    args.out.mkdir(parents=True, exist_ok=True)
    for plugin in args.plugin:
        _import_plugin(plugin)
    image = args.image or data_root() / CORPUS_IMAGE
    paths = build_corpus(args.corpus or args.out / "corpus", tuple(args.codecs), image, log)
    if not paths:
        raise SystemExit("fuzz: no corpus (no codec with available weights)")
    (args.out / "corpus.json").write_text(json.dumps([str(p.resolve()) for p in paths]))
    key = {"seed": args.seed, "corpus": corpus_digest(paths), "mutator": MUTATOR_VERSION}
    state_path = args.out / "state.json"
    start, tally = (0, Tally()) if args.fresh else _load_state(state_path, key, log)
    campaign = Campaign(args, load_seeds(paths), tally)
    t0, done = time.monotonic(), 0
    try:
        while start < args.cases:
            stop = min(start + CHECKPOINT_CASES, args.cases)
            campaign.run(start, stop)
            done, start = done + stop - start, stop
            rate = done / max(time.monotonic() - t0, 1e-9)
            _save_state(state_path, key, start, tally, rate)
            log(f"{start}/{args.cases} cases, {rate:.1f}/s, {tally.counts}")
    finally:
        campaign.close()
    rate = done / max(time.monotonic() - t0, 1e-9)
    _save_state(state_path, key, start, tally, rate)
    return json.loads(state_path.read_text())


def replay(path: Path, plugins: list[str], memory_mb: int) -> tuple[str, str]:
    """Decode one file in this process, as a worker would (same memory cap), for a reproducer."""
    for plugin in plugins:
        _import_plugin(plugin)
    data = path.read_bytes()
    run_case(b"")  # imports and registers every codec before the cap
    _cap_address_space(memory_mb)
    return run_case(data)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m neuralcodec.fuzz", description=__doc__.split("\n")[0]
    )
    p.add_argument("--cases", type=int, default=int(os.environ.get("FUZZ_CASES", 1_000_000)))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=float, default=20.0, help="seconds per case")
    p.add_argument(
        "--memory-mb",
        type=int,
        default=2048,
        help="address space a worker may add to what it maps with every codec loaded",
    )
    p.add_argument("--out", type=Path, default=Path("build/fuzz"))
    p.add_argument("--corpus", type=Path, default=None, help="default OUT/corpus")
    p.add_argument("--image", type=Path, default=None, help="image the corpus is cropped from")
    p.add_argument("--codecs", type=lambda s: s.split(","), default=list(CORPUS_CODECS))
    p.add_argument("--plugin", action="append", default=[], help="a .py file to import first")
    p.add_argument("--fresh", action="store_true", help="ignore OUT/state.json")
    p.add_argument("--replay", type=Path, default=None, help="decode one file and classify it")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--corpus-list", default="", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.worker:
        return worker_main(args)
    if args.replay:
        status, detail = replay(args.replay, args.plugin, args.memory_mb)
        print(f"{status} {detail}".strip())
        return 1 if status == "fail" else 0
    state = run(args)
    fails = state["signatures"]
    for _sig, entry in sorted(fails.items()):
        print(f"FAIL x{entry['count']}: {entry['detail'][:300]} (cases {entry['cases']})")
    print(f"{state['next']} cases: {state['counts']}; {len(fails)} failure signatures")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
