"""``runtime.tune_allocator``: large freed buffers are reused, decoded bytes do not change."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from neuralcodec import api

REPO_DIR = Path(__file__).resolve().parents[1]
GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# page faults of each of 8 allocations of a 64 MB buffer, each freed before the next (the
# first few grow the heap: an aligned request is a little larger than the block freed before)
_FAULTS = """
import resource, sys, torch
from neuralcodec.runtime import allocator_tuned, tune_allocator
tuned = tune_allocator()
assert tune_allocator() == tuned == allocator_tuned()  # once per process, same answer
faults = []
for _ in range(8):
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(16 << 20); s = float(x[::4096].sum()); del x
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
print(int(tuned), min(faults[4:]))
"""


def _faults(env: dict[str, str]) -> tuple[bool, int]:
    out = subprocess.run(
        [sys.executable, "-c", _FAULTS], cwd=REPO_DIR, env={**os.environ, **env}, check=True,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    tuned, faults = out.stdout.split()
    return tuned == "1", int(faults)


@pytest.mark.skipif(not GLIBC, reason="the allocator settings are glibc's")
def test_a_freed_large_buffer_is_reused_without_page_faults():
    tuned, faults = _faults({"NEURALCODEC_MALLOC": ""})
    assert tuned
    assert faults < 1000  # 64 MB in 4 kB pages is 16,384 faults when mapped afresh


def test_the_opt_out_leaves_the_allocator_alone():
    tuned, _ = _faults({"NEURALCODEC_MALLOC": "system"})
    assert not tuned


def test_the_command_line_decodes_the_same_bytes_either_way(tmp_path):
    src = REPO_DIR / "examples" / "sample.png"
    ncf = tmp_path / "s.ncf"
    api.encode_file(src, ncf, quality=2)
    outs = []
    for mode in ("", "system"):
        out = tmp_path / f"d{mode}.png"
        cmd = [sys.executable, "-m", "neuralcodec.app.cli", "decode", str(ncf), str(out)]
        env = {**os.environ, "NEURALCODEC_MALLOC": mode}
        subprocess.run(cmd, cwd=REPO_DIR, env=env, check=True, capture_output=True, timeout=300)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
