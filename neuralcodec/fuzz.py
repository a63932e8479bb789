"""Structure-aware fuzzing of every ``.ncf`` decoder (``make fuzz``, ``python -m neuralcodec.fuzz``).

::

    corpus:  crops of a training image --api.encode_array--> small real .ncf files, one or two
             per codec and quality (cached in OUT/corpus, rebuilt when they stop decoding)
    cases:   make_case(corpus, seed, index) (container/mutate.py): damaged structurally, every
             CRC recomputed, so the damage reaches each codec's own decoder
    workers: subprocesses (RLIMIT_AS memory cap, one torch thread) decode cases with
             api.decode_bytes and report one line per case
    parent:  hands out batches of case numbers, kills a worker that exceeds the per-case time
             limit, notices one that dies, and writes a reproducer for every failure

A case passes when it decodes to an array of the header's shape, or raises a one-line error of a
``ValueError`` subclass the project defines (``ContainerError``, ``CodecError``, ``WeightsError``,
...). Anything else is a failure: another exception type, a multi-line message, a wrong shape,
``MemoryError``, a crash of the worker or a hang. Failures are grouped by signature (kind,
exception type, innermost project frame); the first few reproducers of each signature are kept
in OUT/failures. The campaign is seeded and resumable: OUT/state.json records how far it got.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neuralcodec.container.mutate import MUTATOR_VERSION, Seed, make_case, parse_seed

CORPUS_CODECS = ("elic-int", "elic", "mbt-mean", "inr", "test-raw", "test-zlib")
CORPUS_OPTIONS = {"inr": {"preset": "test"}}
CORPUS_CROPS = {"inr": ((32, 48),), "test-raw": ((4, 6),), "test-zlib": ((4, 6),)}
DEFAULT_CROPS = ((32, 48), (64, 64))
QUALITIES = (2, 6)
CORPUS_IMAGE = Path("train") / "set5" / "bird.png"
KEEP_PER_SIGNATURE = 3
CHECKPOINT_CASES = 2000


# ----------------------------------------------------------------------------- corpus


def _crop(image: np.ndarray, h: int, w: int) -> np.ndarray:
    y, x = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
    return np.ascontiguousarray(image[y : y + h, x : x + w, :3])


def _decodes(data: bytes) -> bool:
    from neuralcodec import api

    try:
        api.decode_bytes(data)
    except ValueError:
        return False
    return True


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
        lo, hi = codec_class(name).quality_range
        for h, w in CORPUS_CROPS.get(name, DEFAULT_CROPS):
            for q in sorted({min(max(q, lo), hi) for q in QUALITIES}):
                path = directory / f"{name}_{h}x{w}_q{q}.ncf"
                if not (path.is_file() and _decodes(path.read_bytes())):
                    pixels = read_image(image) if pixels is None else pixels
                    log(f"corpus: encoding {path.name}")
                    data = api.encode_array(_crop(pixels, h, w), name, q, CORPUS_OPTIONS.get(name))
                    write_bytes_atomic(path, data, force=True)
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
    """('ok' | 'error' | 'fail', detail) of decoding ``data``."""
    from neuralcodec import api

    try:
        array, info = api.decode_bytes(data)
    except MemoryError as exc:
        return "fail", f"memory: {_signature(exc)}"
    except Exception as exc:  # the point: classify every exception
        msg = str(exc)
        if _allowed(exc) and "\n" not in msg and msg:
            return "error", type(exc).__name__
        first = msg.splitlines()[0][:200] if msg else ""
        return "fail", f"exception: {_signature(exc)} | {first}"
    want = tuple(info["shape"])
    if tuple(np.shape(array)) != want:
        return "fail", f"shape: decoded {np.shape(array)}, header says {want}"
    return "ok", ""


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
    limit = args.memory_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
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
    limit = memory_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return run_case(data)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m neuralcodec.fuzz", description=__doc__.split("\n")[0]
    )
    p.add_argument("--cases", type=int, default=int(os.environ.get("FUZZ_CASES", 1_000_000)))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=float, default=20.0, help="seconds per case")
    p.add_argument("--memory-mb", type=int, default=4096, help="address-space cap per worker")
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
