"""Coding tools of the splat codec, on the shared range coder through the latent codecs' sinks
(one code path for encoding and decoding): adaptive context models, integers of any size, Morton
codes, K-means and SH distillation.

::

    adaptive   values in 0..S-1 under context c (known to both sides): the S x C counts are
               coded first, then every value with the table of its context, rebuilt from the
               counts in integer arithmetic (``CategoricalModel.from_counts``)
    magnitude  any int64: class = 0 (zero) or 2 L - 1 + sign (L = bit length of |v|), adaptive
               per context; then the L - 1 bits under the leading one, 12 bits a symbol,
               uniform tables (what a bypass code would write)
    morton     x, y, z (up to 21 bits each) <-> one int64 with the bits interleaved (z y x)

Every table index depends only on values decoded before it, so the decoder calls the sink once
per group of symbols and never per symbol.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from neuralcodec.codecs.base import CodecError
from neuralcodec.codecs.geometry import compact, spread
from neuralcodec.codecs.latent.categorical import COUNT_TABLE
from neuralcodec.codecs.latent.sinks import Sink
from neuralcodec.entropy.cdf import counts_to_quantized_cdf, tables_from_cdfs
from neuralcodec.entropy.tables import PRECISION, CodingTables

PIECE_BITS = 12
MAX_MAGNITUDE_BITS = 62


def _counts_tables(counts: np.ndarray) -> CodingTables:
    cdfs = [counts_to_quantized_cdf(np.append(c.astype(np.int64), 0), PRECISION) for c in counts]
    return tables_from_cdfs(cdfs, [0] * len(cdfs), PRECISION)


def code_adaptive(
    sink: Sink,
    values: np.ndarray | None,
    contexts: np.ndarray | int,
    n_ctx: int,
    n_sym: int,
    size: int | None = None,
) -> np.ndarray:
    """Values in ``0..n_sym-1``, each coded with the counts table of its context. ``contexts``
    may be one int for all ``size`` values: the decoder then allocates nothing of that size
    before the counts in the stream agree with it."""
    if np.ndim(contexts) == 0:
        contexts = _Constant(int(contexts), len(values) if values is not None else size)
    else:
        contexts = np.asarray(contexts, np.int64).reshape(-1)
    counts = None
    if values is not None:
        values = np.asarray(values, np.int64).reshape(-1)
        if values.size and (values.min() < 0 or values.max() >= n_sym):
            raise ValueError(f"adaptive symbols outside 0..{n_sym - 1}")
        counts = np.bincount(contexts * n_sym + values, minlength=n_ctx * n_sym).astype(np.int64)
        if counts.max(initial=0) >= 1 << 31:
            raise ValueError("too many symbols for one table")
    got = sink.code(np.zeros(n_ctx * n_sym, np.int32), COUNT_TABLE, counts)
    if got.min(initial=0) < 0:
        raise CodecError("negative symbol count in the stream")
    counts = got.astype(np.int64).reshape(n_ctx, n_sym)
    if int(counts.sum()) != contexts.size:
        raise CodecError(f"stream counts {int(counts.sum())} symbols, expected {contexts.size}")
    if contexts.size == 0:
        return np.zeros(0, np.int64)
    out = sink.code(np.asarray(contexts, np.int32), _counts_tables(counts), values)
    return out.astype(np.int64)


class _Constant:
    """``size`` copies of one context, materialised only when coded."""

    def __init__(self, value: int, size: int | None):
        if size is None:
            raise ValueError("a constant context needs the number of values")
        self.value, self.size = value, int(size)

    def __mul__(self, other: int) -> np.ndarray:
        return np.full(self.size, self.value * other, np.int64)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return np.full(self.size, self.value, dtype or np.int64)


@functools.cache
def _uniform_tables() -> CodingTables:
    """Table b - 1: the 2^b values 0..2^b - 1 equally likely (b = 1..PIECE_BITS), the escape
    the range coder's tables carry at the least frequency, so a value costs b bits."""
    cdfs = []
    for b in range(1, PIECE_BITS + 1):
        counts = np.full((1 << b) + 1, 1 << PRECISION, np.int64)
        counts[-1] = 1  # the escape
        cdfs.append(counts_to_quantized_cdf(counts, PRECISION))
    return tables_from_cdfs(cdfs, [0] * PIECE_BITS, PRECISION)


def _bit_length(a: np.ndarray) -> np.ndarray:
    """Bit length of non-negative int64 values (0 for 0)."""
    out = np.zeros(a.shape, np.int64)
    a = a.copy()
    for shift in (32, 16, 8, 4, 2, 1):
        big = a >= (np.int64(1) << shift)
        out[big] += shift
        a[big] >>= shift
    return out + (a > 0)


def code_bits(sink: Sink, values: np.ndarray | None, nbits: np.ndarray) -> np.ndarray:
    """Non-negative values of ``nbits`` bits each (known to both sides), as raw bits."""
    nbits = np.asarray(nbits, np.int64).reshape(-1)
    out = np.zeros(nbits.size, np.int64)
    if values is not None:
        values = np.asarray(values, np.int64).reshape(-1)
    tables = _uniform_tables()
    top = int(nbits.max(initial=0))
    for low in range(((top - 1) // PIECE_BITS) * PIECE_BITS, -1, -PIECE_BITS):  # high pieces first
        width = np.clip(nbits - low, 0, PIECE_BITS)
        sel = np.nonzero(width > 0)[0]
        if sel.size == 0:
            continue
        piece = None
        if values is not None:
            piece = (values[sel] >> low) & ((np.int64(1) << width[sel]) - 1)
        got = sink.code((width[sel] - 1).astype(np.int32), tables, piece).astype(np.int64)
        if got.size and (got.min() < 0 or np.any(got >> width[sel])):
            raise CodecError("raw bits out of range in the stream")
        out[sel] |= got << low
    return out


def code_magnitude(
    sink: Sink,
    values: np.ndarray | None,
    contexts: np.ndarray | int,
    n_ctx: int = 1,
    max_bits: int = 32,
    signed: bool = True,
    size: int | None = None,
) -> np.ndarray:
    """Integers with ``|v| < 2^max_bits`` (non-negative ones when ``signed`` is False): an adaptive
    class per context (one context per value, or one int for all ``size`` of them), then the
    bits under the leading one."""
    if not 1 <= max_bits <= MAX_MAGNITUDE_BITS:
        raise ValueError(f"max_bits must be in 1..{MAX_MAGNITUDE_BITS}")
    n = None if values is None else np.asarray(values, np.int64).reshape(-1)
    ctx = contexts if np.ndim(contexts) == 0 else np.asarray(contexts, np.int64).reshape(-1)
    cls = None
    if n is not None:
        if not signed and n.size and n.min() < 0:
            raise ValueError("negative value for an unsigned magnitude")
        mag = np.abs(n)
        length = _bit_length(mag)
        if length.max(initial=0) > max_bits:
            raise ValueError(f"value needs more than {max_bits} bits")
        cls = np.where(mag == 0, 0, 2 * length - 1 + (n < 0)) if signed else length
    n_sym = 2 * max_bits + 1 if signed else max_bits + 1
    cls = code_adaptive(sink, cls, ctx, n_ctx, n_sym, size)
    length = (cls + 1) // 2 if signed else cls
    neg = (cls % 2 == 0) & (cls > 0) if signed else np.zeros(cls.shape, bool)
    nbits = np.maximum(length - 1, 0)
    rest = None if n is None else np.abs(n) - np.where(length > 0, np.int64(1) << nbits, 0)
    rest = code_bits(sink, rest, nbits)
    mag = np.where(length > 0, (np.int64(1) << nbits) + rest, 0)
    return np.where(neg, -mag, mag)


# ----------------------------------------------------------------------------- Morton codes


def morton_encode(q: np.ndarray) -> np.ndarray:
    """N x 3 integers in 0..2^21 - 1 -> N int64 codes (x in the lowest bit of each triple)."""
    q = np.asarray(q, np.int64)
    code = spread(q[:, 0]) | (spread(q[:, 1]) << np.uint64(1)) | (spread(q[:, 2]) << np.uint64(2))
    return code.astype(np.int64)


def morton_decode(code: np.ndarray) -> np.ndarray:
    c = np.asarray(code, np.int64).astype(np.uint64)
    return np.stack([compact(c >> np.uint64(i)) for i in range(3)], axis=1)


# ----------------------------------------------------------------------------- vector quantisation


def kmeans(
    x: np.ndarray,
    k: int,
    weights: np.ndarray | None = None,
    iters: int = 8,
    sample: int = 40000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(k x D codebook, N assignments): weighted Lloyd iterations on a fixed-seed sample,
    initialised with ``k`` distinct sample points; then every point goes to its nearest centre.
    Deterministic for a given input, seed and thread count."""
    x = np.asarray(x, np.float32)
    n = len(x)
    w = np.ones(n, np.float32) if weights is None else np.asarray(weights, np.float32)
    if n <= k:
        return x.copy(), np.arange(n)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, size=min(n, max(sample, k)), replace=False))
    xs, ws = torch.from_numpy(x[idx]), torch.from_numpy(w[idx] + 1e-6)
    init = np.sort(rng.choice(len(idx), size=k, replace=False))
    centres = xs[init].clone()
    for _ in range(iters):
        assign = _nearest(xs, centres)
        sums = torch.zeros_like(centres).index_add_(0, assign, xs * ws[:, None])
        mass = torch.zeros(k).index_add_(0, assign, ws)
        used = mass > 0
        centres[used] = sums[used] / mass[used, None]
    return centres.numpy(), _nearest(torch.from_numpy(x), centres).numpy()


def _nearest(x: torch.Tensor, centres: torch.Tensor, block: int = 8192) -> torch.Tensor:
    c2 = (centres * centres).sum(1)
    out = torch.empty(len(x), dtype=torch.int64)
    for i in range(0, len(x), block):
        xb = x[i : i + block]
        out[i : i + block] = torch.argmin(c2[None, :] - 2.0 * xb @ centres.T, dim=1)
    return out


# ----------------------------------------------------------------------------- SH distillation


def fibonacci_directions(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = np.pi * (1 + 5**0.5) * i
    return np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], 1)


def distill_sh(
    sh_dc: np.ndarray, sh_rest: np.ndarray, degree: int, target: int, n_dirs: int = 192
) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares fit of a degree-``target`` SH colour (DC included) to the renderer's colour
    ``max(0, SH(d) + 0.5)`` of the degree-``degree`` one over ``n_dirs`` directions on the sphere.
    Returns (sh_dc, sh_rest) of the lower degree."""
    from neuralcodec.render.splats import sh_basis

    dirs = torch.from_numpy(fibonacci_directions(n_dirs))
    full = sh_basis(dirs, degree).numpy()  # D x K
    low = sh_basis(dirs, target).numpy()  # D x k
    coeffs = np.concatenate([sh_dc[:, None, :], sh_rest], axis=1).astype(np.float64)  # N x K x 3
    colour = np.maximum(np.einsum("dk,nkc->ndc", full, coeffs) + 0.5, 0.0) - 0.5
    fit = np.einsum("kd,ndc->nkc", np.linalg.pinv(low), colour)
    return fit[:, 0].astype(np.float32), fit[:, 1:].astype(np.float32)


# ----------------------------------------------------------------------------- orientations


def quaternion_matrices(q: np.ndarray) -> np.ndarray:
    """N x 4 quaternions (w, x, y, z) -> N x 3 x 3 rotation matrices (column i: the axis of
    scale i), float64."""
    q = np.asarray(q, np.float64)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    m = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return np.stack([np.stack(row, axis=1) for row in m], axis=1)


def matrix_quaternions(m: np.ndarray) -> np.ndarray:
    """N x 3 x 3 rotation matrices -> N x 4 unit quaternions (w, x, y, z), w >= 0."""
    m = np.asarray(m, np.float64)
    t = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    cand = np.stack(
        [
            np.stack(
                [1 + t, m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]],
                1,
            ),
            np.stack(
                [
                    m[:, 2, 1] - m[:, 1, 2],
                    1 + 2 * m[:, 0, 0] - t,
                    m[:, 0, 1] + m[:, 1, 0],
                    m[:, 0, 2] + m[:, 2, 0],
                ],
                1,
            ),
            np.stack(
                [
                    m[:, 0, 2] - m[:, 2, 0],
                    m[:, 0, 1] + m[:, 1, 0],
                    1 + 2 * m[:, 1, 1] - t,
                    m[:, 1, 2] + m[:, 2, 1],
                ],
                1,
            ),
            np.stack(
                [
                    m[:, 1, 0] - m[:, 0, 1],
                    m[:, 0, 2] + m[:, 2, 0],
                    m[:, 1, 2] + m[:, 2, 1],
                    1 + 2 * m[:, 2, 2] - t,
                ],
                1,
            ),
        ],
        axis=1,
    )  # row k: 4 q_k q (the largest |q_k| gives the best-conditioned row)
    diag = np.stack(
        [1 + t, 1 + 2 * m[:, 0, 0] - t, 1 + 2 * m[:, 1, 1] - t, 1 + 2 * m[:, 2, 2] - t], 1
    )
    q = cand[np.arange(len(m)), np.argmax(diag, axis=1)]
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return np.where(q[:, :1] < 0, -q, q)


def octahedral_encode(n: np.ndarray, bits: int) -> np.ndarray:
    """Unit axes (n and -n alike) -> N x 2 integers in 0..2^bits - 1: the upper hemisphere's
    octahedral map, turned 45 degrees to fill the square."""
    n = np.asarray(n, np.float64)
    n = np.where(n[:, 2:3] < 0, -n, n)
    p = n[:, :2] / np.abs(n).sum(axis=1, keepdims=True)
    ab = np.stack([p[:, 0] + p[:, 1], p[:, 0] - p[:, 1]], axis=1)  # in [-1, 1]^2
    top = (1 << bits) - 1
    return np.clip(np.floor((ab + 1.0) * 0.5 * top + 0.5), 0, top).astype(np.int64)


def octahedral_decode(q: np.ndarray, bits: int) -> np.ndarray:
    ab = np.asarray(q, np.float64) / ((1 << bits) - 1) * 2.0 - 1.0
    u, v = (ab[:, 0] + ab[:, 1]) * 0.5, (ab[:, 0] - ab[:, 1]) * 0.5
    n = np.stack([u, v, np.maximum(1.0 - np.abs(u) - np.abs(v), 0.0)], axis=1)
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def plane_basis(n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors spanning the plane perpendicular to each unit ``n`` (a fixed rule)."""
    helper = np.where(np.abs(n[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    e1 = np.cross(n, helper)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    return e1, np.cross(n, e1)
