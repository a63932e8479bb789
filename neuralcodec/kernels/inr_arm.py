"""The INR context model (ARM) at decode time: exact fixed-point MLP -> table -> range decoder.

``arm_decode(decoder, tables, buf, positions, levels, offsets, layers, step, coding, starts)``
decodes ``len(positions)`` values in order into the float64 buffer ``buf``. Value ``i`` is coded
with the Laplace table that a fixed-point MLP (``layers`` of integer-valued ``(w [out, in],
b [out])``, step exponent ``step``) picks from its causal neighbours
``buf[positions[i] + offsets[levels[i]]]`` (``offsets``: [levels, K], one row per latent grid)::

    a_0 = neighbours;  a_j+1 = clip(floor((a_j @ w_j.T + b_j 2^in_j) 2^(A - in_j - step) + 1/2))
    (mu, log b) = a_last at scale 2^A     (A = act_bits; ReLU between layers; in_0 = 0, then A)
    mu -> integer mean m and fraction bin f (num_fracs per unit); log b -> scale bin s
    v = decode(table s * num_fracs + f);  buf[positions[i]] = clip(v + m, +-latent_limit)

``coding`` (``ArmCoding``) carries A, the activation limit, the bin counts and the latent limit.
Integer values carried in float64 keep every sum below 2^53: the result is exact in any order.

* reference: NumPy, one vectorised MLP call and one ``RangeDecoder.decode`` chunk per group of
  mutually independent symbols (``starts``: group boundaries, e.g. the INR wavefronts; one symbol
  per group without it);
* c: ``_inr_arm.decode``, the fused per-symbol loop in C, decoding through the range decoder's
  C API (``entropy/_rangecoder_api.h``): no Python or NumPy call per symbol or per wavefront.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..entropy import rangecoder
from . import _ext
from .dispatch import Implementation, reference


class ArmCoding(NamedTuple):
    act_bits: int
    act_limit: float
    num_fracs: int
    num_scales: int
    ls_lo: int  # log b range at scale 2^act_bits, mapped onto num_scales bins
    ls_hi: int
    latent_limit: int


def arm_mlp(layers, step: int, coding: ArmCoding, ctx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, K) integer neighbours -> (mu, log b) at scale 2^act_bits, exact float64 integers."""
    a, in_bits = np.asarray(ctx, dtype=np.float64), 0
    for j, (w, b) in enumerate(layers):
        a = a @ np.asarray(w, dtype=np.float64).T + np.asarray(b, dtype=np.float64) * 2.0**in_bits
        a *= 2.0 ** (coding.act_bits - in_bits - step)
        a += 0.5
        np.floor(a, out=a)
        np.clip(a, -coding.act_limit, coding.act_limit, out=a)
        if j + 1 < len(layers):
            a = np.maximum(a, 0)
        in_bits = coding.act_bits
    return a[:, 0], a[:, 1]


def coding_indexes(
    mu: np.ndarray, ls: np.ndarray, coding: ArmCoding
) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-point (mu, log b) -> (table indexes int32, integer means int64). Integer-only."""
    one, nf = 2**coding.act_bits, coding.num_fracs
    mu_q = (mu.astype(np.int64) * nf + one // 2) // one
    m = (mu_q + nf // 2) // nf
    frac = mu_q - m * nf + nf // 2
    span = coding.ls_hi - coding.ls_lo
    s = ((ls.astype(np.int64) - coding.ls_lo) * (coding.num_scales - 1) * 2 + span) // (2 * span)
    s = np.clip(s, 0, coding.num_scales - 1)
    return (s * nf + frac).astype(np.int32), m


def arm_decode_reference(
    decoder, tables, buf, positions, levels, offsets, layers, step, coding, starts=None
) -> None:
    ctx_index = positions[:, None] + offsets[levels]
    if starts is None:
        starts = np.arange(len(positions) + 1)
    prepared = rangecoder.prepare(tables)
    for a, b in zip(starts[:-1], starts[1:], strict=True):
        mu, ls = arm_mlp(layers, step, coding, buf[ctx_index[a:b]])
        idx, m = coding_indexes(mu, ls, coding)
        vals = decoder.decode(idx, prepared)
        buf[positions[a:b]] = np.clip(vals + m, -coding.latent_limit, coding.latent_limit)


def arm_decode_c(
    decoder, tables, buf, positions, levels, offsets, layers, step, coding, starts=None
) -> None:
    if not isinstance(buf, np.ndarray) or buf.dtype != np.float64 or not buf.flags.c_contiguous:
        raise TypeError("buf must be a contiguous float64 array")
    layers = tuple(
        (np.ascontiguousarray(w, dtype=np.float64), np.ascontiguousarray(b, dtype=np.float64))
        for w, b in layers
    )
    _ext._inr_arm.decode(
        decoder.native,
        rangecoder.prepare(tables),
        buf,
        np.ascontiguousarray(positions, dtype=np.int64),
        np.ascontiguousarray(levels, dtype=np.int64),
        np.ascontiguousarray(offsets, dtype=np.int64),
        layers,
        int(step),
        tuple(coding),
    )


IMPLEMENTATIONS = (
    Implementation("c", arm_decode_c, _ext.has_inr_arm),
    reference(arm_decode_reference),
)
