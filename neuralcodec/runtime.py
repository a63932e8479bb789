"""Process-wide settings that the applications (``codec`` and its demo) choose for themselves.

A library should not change its host process, so nothing here runs on ``import neuralcodec``:
the command line (``app/cli.py``) calls :func:`tune_allocator` once at start, and a program
using the library may call it too.

**The allocator.** Decoding an image or a video frame allocates many large, short-lived
buffers (a 768 x 512 image's full-resolution activations are 96 x 512 x 768 float32, 151 MB).
glibc serves every block above its mmap threshold (at most 32 MB) with a fresh ``mmap`` and
returns it with ``munmap`` when freed, so each such buffer is faulted in page by page and
zeroed by the kernel again at every use: 55,000-65,000 page faults per Kodak decode. With
mmap off for the heap (``M_MMAP_MAX`` = 0) and a high trim threshold, freed blocks stay in the
process and are reused. The values decoded are the same either way (the allocator decides
where numbers live, not what they are); only the time changes (``docs/compression.md``).
The cost: the process keeps up to ``TRIM_BYTES`` of freed memory for reuse instead of handing
it back at once. ``NEURALCODEC_MALLOC=system`` leaves glibc's defaults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager

M_TRIM_THRESHOLD = -1  # glibc's <malloc.h>
M_MMAP_MAX = -4
TRIM_BYTES = 1 << 30  # freed memory kept for reuse before the heap's top is returned

_TUNED: bool | None = None


def tune_allocator() -> bool:
    """Keep large freed blocks for reuse (glibc only; once per process). Returns whether the
    settings are in force; ``False`` on other C libraries or with ``NEURALCODEC_MALLOC=system``."""
    global _TUNED
    if _TUNED is not None:
        return _TUNED
    _TUNED = False
    if os.environ.get("NEURALCODEC_MALLOC", "").lower() == "system":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt returns 1 on success; the trim threshold first, so that a refusal of either
    # leaves glibc's dynamic behaviour as it was
    if mallopt(M_TRIM_THRESHOLD, TRIM_BYTES) != 1:
        return False
    if mallopt(M_MMAP_MAX, 0) != 1:
        return False
    _TUNED = True
    return True


def allocator_tuned() -> bool:
    """Whether :func:`tune_allocator` put its settings in force in this process."""
    return bool(_TUNED)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block on ``n`` PyTorch intra-op threads, restoring the caller's count after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
