"""The INR codec's frozen Laplace coding tables: a shipped file, and the generator that made it.

The ``inr`` codec codes every latent and network parameter with one of NUM_SCALES x NUM_FRACS
discretised Laplace tables (index ``s * NUM_FRACS + f``: scale bin ``s`` of a log-spaced range,
mean fraction ``(f - NUM_FRACS / 2) / NUM_FRACS``). Like every other codec's tables they are
integers built once and loaded as they are::

    build_tables()  (float64 closed form, np.exp; rebuild only)
        -> compact arrays (uint16 frequencies, uint16 lengths, int16 offsets)
        -> weights/inr-tables.safetensors      sha256 pinned here as TABLES_SHA256
    coding_tables()  reads that file through ``weights_dir()``, checks the sha256, rebuilds the
                     ``CodingTables`` with integer sums only: the decoder never calls np.exp.

``tests/test_inr.py`` checks that the shipped file is exactly what ``build_tables()`` gives on
the test machine, so a change of the generator or of the libm cannot slip in unnoticed. Rebuild
(only on a deliberate format change, with a new INR format version)::

    python -m neuralcodec.models.inr_tables weights/inr-tables.safetensors
"""

from __future__ import annotations

import hashlib
import math
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
from safetensors.numpy import load as load_bytes
from safetensors.numpy import save as save_bytes

from ..entropy.tables import PRECISION, CodingTables, TableError
from ..kernels.laplace import LOG_SCALE_MAX, LOG_SCALE_MIN
from .fixedpoint import ACT_BITS
from .frozen import WeightsError

NUM_SCALES = 64
NUM_FRACS = 8
MAX_HALF_SUPPORT = 1024
LS_LO = round(LOG_SCALE_MIN * 2**ACT_BITS)
LS_HI = round(LOG_SCALE_MAX * 2**ACT_BITS)

TABLES_FILE = "inr-tables.safetensors"
TABLES_SHA256 = "3d8ca729159fc1505c7517ce58e4eda6a79b3e842cbc7efc8bd2a2e8f35a665d"
FORMAT = "inr-laplace-tables-v1"


# ----------------------------------------------------------------------------- generator


def table_scales() -> np.ndarray:
    """The NUM_SCALES Laplace scales ``b_s`` the tables were built for (float64)."""
    j = np.arange(NUM_SCALES, dtype=np.float64)
    return np.exp((LS_LO + j * (LS_HI - LS_LO) / (NUM_SCALES - 1)) / 2**ACT_BITS)


def _quantized_cdf(pmf: np.ndarray, escape: float) -> np.ndarray:
    """pmf of the regular symbols + escape mass -> int32 CDF summing to 2^PRECISION, all > 0."""
    total = 1 << PRECISION
    p = np.append(pmf, escape)
    freq = 1 + np.floor(p / p.sum() * (total - p.size)).astype(np.int64)
    freq[np.argmax(freq)] += total - int(freq.sum())  # the rounding remainder, >= 0
    return np.concatenate([[0], np.cumsum(freq)]).astype(np.int32)


def _laplace_cdf(x: np.ndarray, b: float) -> np.ndarray:
    return np.where(
        x < 0, 0.5 * np.exp(np.minimum(x, 0) / b), 1 - 0.5 * np.exp(-np.maximum(x, 0) / b)
    )


def build_tables() -> CodingTables:
    """The tables from their float definition (used to write the file and to test it only)."""
    rows, offsets = [], []
    for b in table_scales():
        half = min(int(math.ceil(10 * b)) + 1, MAX_HALF_SUPPORT)
        k = np.arange(-half, half + 1, dtype=np.float64)
        for f in range(NUM_FRACS):
            c = (f - NUM_FRACS // 2) / NUM_FRACS
            hi, lo = _laplace_cdf(k + 0.5 - c, b), _laplace_cdf(k - 0.5 - c, b)
            escape = _laplace_cdf(np.array([-half - 0.5 - c]), b)[0] + 1 - hi[-1]
            rows.append(_quantized_cdf(hi - lo, max(escape, 0.0)))
            offsets.append(-half)
    width = max(len(r) for r in rows)
    cdfs = np.zeros((len(rows), width), dtype=np.int32)
    for j, r in enumerate(rows):
        cdfs[j, : len(r)] = r
    lengths = np.array([len(r) for r in rows], dtype=np.int32)
    return CodingTables(cdfs, lengths, np.array(offsets, dtype=np.int32), PRECISION)


# ----------------------------------------------------------------------------- compact form


def to_compact(t: CodingTables) -> dict[str, np.ndarray]:
    """Frequencies (uint16, every table's back to back), lengths (uint16), offsets (int16)."""
    freqs = np.concatenate([np.diff(t.cdfs[j, : t.cdf_lengths[j]]) for j in range(t.num_tables)])
    if freqs.max() > 0xFFFF or t.cdf_lengths.max() > 0xFFFF or np.abs(t.offsets).max() > 0x7FFF:
        raise TableError("tables do not fit the compact form")
    return {
        "freqs": freqs.astype(np.uint16),
        "lengths": t.cdf_lengths.astype(np.uint16),
        "offsets": t.offsets.astype(np.int16),
        "precision": np.array([t.precision], dtype=np.uint8),
    }


def from_compact(arrays: dict[str, np.ndarray]) -> CodingTables:
    """Inverse of ``to_compact`` (integer cumulative sums only); ``TableError`` if inconsistent."""
    try:
        freqs = np.asarray(arrays["freqs"], dtype=np.int64)
        lengths = np.asarray(arrays["lengths"], dtype=np.int64)
        offsets = np.asarray(arrays["offsets"], dtype=np.int32)
        precision = int(np.asarray(arrays["precision"]).reshape(-1)[0])
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise TableError(f"incomplete tables: {exc}") from None
    if lengths.ndim != 1 or lengths.size == 0 or lengths.min() < 2:
        raise TableError("table lengths must be a non-empty list of values >= 2")
    if int((lengths - 1).sum()) != freqs.size or offsets.shape != lengths.shape:
        raise TableError("table frequencies, lengths and offsets do not match")
    cdfs = np.zeros((lengths.size, int(lengths.max())), dtype=np.int32)
    ends = np.cumsum(lengths - 1)
    for j, (end, n) in enumerate(zip(ends, lengths, strict=True)):
        cdfs[j, 1:n] = np.cumsum(freqs[end - (n - 1) : end])
    return CodingTables(cdfs, lengths.astype(np.int32), offsets, precision)


def tables_bytes(t: CodingTables) -> bytes:
    """The safetensors file holding ``t`` in compact form."""
    return save_bytes(to_compact(t), metadata={"format": FORMAT})


# ----------------------------------------------------------------------------- the shipped file


def tables_path() -> Path:
    from ..codecs.weights import weights_dir  # where every shipped weights file lives

    return weights_dir() / TABLES_FILE


def load_tables(path: Path, sha256: str = TABLES_SHA256) -> CodingTables:
    """Read and check a tables file; ``WeightsError`` (one line) if absent, altered or invalid."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise WeightsError(f"INR coding tables {path} unreadable ({exc.strerror})") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise WeightsError(f"INR coding tables {path} are not the shipped ones (sha256 differs)")
    try:
        return from_compact(load_bytes(data))
    except (TableError, ValueError) as exc:
        raise WeightsError(f"INR coding tables {path} are invalid: {exc}") from None


@lru_cache(maxsize=4)
def tables_at(path: str) -> CodingTables:
    """``load_tables(path)``, once per path."""
    return load_tables(Path(path))


def coding_tables() -> CodingTables:
    """The shipped tables (loaded and checked once per path)."""
    return tables_at(str(tables_path()))


def main(argv: list[str]) -> int:
    """Write the tables file (argument: its path) and print its size and sha256."""
    if len(argv) != 1:
        print("usage: python -m neuralcodec.models.inr_tables PATH", file=sys.stderr)
        return 2
    data = tables_bytes(build_tables())
    Path(argv[0]).write_bytes(data)
    print(f"{argv[0]}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
