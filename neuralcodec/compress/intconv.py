"""Exact integer convolutions that run at float32 speed.

Integer weights ``W`` and integer activations ``a`` with ``|a| <= A``: every product and every
partial sum of one output is an integer of magnitude at most ``sum |W| * A``. When that bound is
below 2^24, float32 holds every partial sum exactly, so *any* summation order (oneDNN's blocking,
SIMD width, thread split, FMA or not) gives the same integer. That is the whole trick::

    bound = max over outputs of  sum |W[o, i, taps]| * A
    bound <  2^24                 one float32 convolution
    split into K channel groups   a grouped float32 convolution (K partial sums, each < 2^24),
    with each group's bound       partial sums added in float64 (exact below 2^53)
    < 2^24
    otherwise                     one float64 convolution (exact below 2^53)

A fourth plan needs no bound below 2^24: int8 matrix products (``torch._int_mm``, int32
accumulators). Weights are split into signed base-256 digits (8-bit weights: one), activations
into signed base-128 digits in [-64, 63] (12-bit activations: two), the activation digits are
im2col'd, and every (weight digit, activation digit) pair is one exact int8 x int8 -> int32
product, summed with its factor 256^j 128^i in the int64 epilogue. On CPUs without VNNI the
library shifts the first operand to unsigned and multiplies pairs with an instruction whose
16-bit pair sum saturates (u8 x s8); with the second operand (the activations) kept to 7 bits
no pair sum can reach 2^15, so the products are exact on every instruction set. A probe at
first use checks extreme values in both roles and disables the plan if a product is ever wrong,
and the tests force SSE4.1, AVX2 and the ATen default path. The plan is taken where its cost
model beats the float plan: on this CPU, the wide layers.

The path changes the speed, never the result: ``IntConv.__call__(..., path=...)`` forces one
and the tests compare them. Transposed convolutions are rewritten as an ordinary convolution
with ``s^2`` phase outputs followed by a pixel shuffle (``subpixel_weight``); it is the same sum
over the same integer taps, and far faster on CPU than a strided transposed convolution.

After the sum, ``requantize`` brings the integer accumulator to the next layer's scale with a
per-channel integer multiplier and a shared right shift, rounding half up, in float64 where
every intermediate stays an exact integer below 2^53.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from ..kernels import _ext

FLOAT32_EXACT = 2**24
FLOAT64_EXACT = 2**53
INT16_MAX = 2**15 - 1
INT16_WIDE = True  # the int16 plan for more than 16 outputs where it pays (int16_preferred)
INT16_SPLIT_SMALL = True  # a few-output transposed layer's phases in groups of their own
FLAT16_MIN_INPUTS = 256  # flat16_preferred: the narrowest 1x1 layer it takes
INT16_GROUP_BYTES = 64 << 10  # int16_preferred: the widest layers at 2 digit pairs it takes
CONV16_X = 16  # conv16's widest vector in pixels (kernels/_intnet.c CONV16_X): rows padded to it


class IntNetError(ValueError):
    """Stored integer layers that are inconsistent or outside the exact range."""


def subpixel_weight(w: np.ndarray, stride: int) -> np.ndarray:
    """Transposed-conv weight (cin, cout, k, k) -> conv weight (s*s*cout, cin, J, J), J=ceil(k/s).

    Output channel ``(cout_index * s + ry) * s + rx`` is phase (ry, rx), in the order
    ``pixel_shuffle`` expects. Tap ``u`` of phase ``r`` is the transposed tap ``(J-1-u)*s + r``.
    """
    cin, cout, k, k2 = w.shape
    if k != k2:
        raise IntNetError("only square kernels")
    s = stride
    j = -(-k // s)
    out = np.zeros((cout, s, s, cin, j, j), dtype=w.dtype)
    for ry in range(s):
        for rx in range(s):
            for u in range(j):
                ty = (j - 1 - u) * s + ry
                if ty >= k:
                    continue
                for v in range(j):
                    tx = (j - 1 - v) * s + rx
                    if tx >= k:
                        continue
                    out[:, ry, rx, :, u, v] = w[:, :, ty, tx].T
    return out.reshape(cout * s * s, cin, j, j)


@dataclass
class ConvGeometry:
    """Where a layer's taps sit: an ordinary convolution, or a transposed one (sub-pixel form)."""

    kernel: int
    stride: int
    padding: int
    transposed: bool = False
    output_padding: int = 0

    def out_size(self, n: int) -> int:
        k, s, p = self.kernel, self.stride, self.padding
        if self.transposed:
            return (n - 1) * s - 2 * p + k + self.output_padding
        return (n + 2 * p - k) // s + 1

    def as_array(self) -> np.ndarray:
        return np.array(
            [self.kernel, self.stride, self.padding, int(self.transposed), self.output_padding],
            dtype=np.int32,
        )

    @classmethod
    def from_array(cls, a: np.ndarray) -> ConvGeometry:
        k, s, p, t, op = (int(v) for v in a)
        if not (1 <= k <= 32 and 1 <= s <= k and 0 <= p < k and 0 <= op < s):
            raise IntNetError(f"bad convolution geometry {a.tolist()}")
        return cls(k, s, p, bool(t), op)


def _choose_plan(l1: np.ndarray, bound: int) -> tuple[int, int]:
    """``(lo_bits, K)``: the cheapest exact float32 plan, or ``(0, 0)`` for float64.

    ``l1``: (cout, cin) sums of |W| over taps; ``bound``: A, the input's magnitude limit.
    ``K`` splits the input channels into K groups (a grouped convolution, K partial sums);
    ``lo_bits`` > 0 also splits every input value into ``hi * 2^lo_bits + lo`` (``0 <= lo <
    2^lo_bits``), both halves convolved in one call as a batch of two. Plans are tried by cost:
    no split with K = 1..4, then the value split with K = 1..4; beyond that many small grouped
    convolutions cost more than one float64 convolution.
    """
    cin = l1.shape[1]
    lo_bits = (int(bound).bit_length() + 1) // 2
    halves = max(2**lo_bits - 1, -(-bound // 2**lo_bits))
    for split in (0, lo_bits):
        a = halves if split else bound
        for k in (1, 2, 3, 4):
            if cin % k:
                continue
            parts = l1.reshape(l1.shape[0], k, cin // k).sum(2)
            if int(parts.max(initial=0)) * a < FLOAT32_EXACT:
                return split, k
    return 0, 0


DIGIT_BITS = 7  # signed base-128 digits in [-64, 63]: exact int8 products on every ISA
_DIGIT = 1 << DIGIT_BITS
_INT8_OK: bool | None = None


def int8_matmul_available() -> bool:
    """``torch._int_mm`` exists and is exact here: probed once with the extreme products of the
    plan (full-range int8 first operand, 7-bit second) and of the roles swapped."""
    global _INT8_OK
    if _INT8_OK is None:
        try:
            ok = True
            for va, vb in ((-128, -64), (-128, 63), (127, -64), (127, 63), (None, None)):
                g = torch.Generator().manual_seed(1)
                a = torch.randint(-128, 128, (96, 864), dtype=torch.int8, generator=g)
                b = torch.randint(-64, 64, (864, 1024), dtype=torch.int8, generator=g)
                if va is not None:
                    a[:], b[:] = va, vb
                want = (a.double() @ b.double()).int()
                ok = ok and bool(torch.equal(torch._int_mm(a, b), want))
            _INT8_OK = ok
        except (AttributeError, RuntimeError, NotImplementedError):
            _INT8_OK = False
    return _INT8_OK


def digit_count(bound: int, bits: int = DIGIT_BITS) -> int:
    """Signed base-2^bits digits (each in [-2^(bits-1), 2^(bits-1) - 1]) needed for every
    integer in [-bound, bound]."""
    half = 1 << (bits - 1)
    n, reach = 1, half - 1  # the largest magnitude n digits always reach
    while reach < bound:
        n += 1
        reach = (reach << bits) + half - 1
    return n


def to_digits(x: torch.Tensor, n: int, bits: int = DIGIT_BITS) -> list[torch.Tensor]:
    """``x`` (int32/int64, within ``digit_count``'s reach of ``n``) -> ``n`` int8 digits, least
    significant first: ``x = sum_i d_i * 2^(bits i)``, every ``d_i`` in [-2^(bits-1), 2^(bits-1))."""
    half, out = 1 << (bits - 1), []
    for _ in range(n):
        lo = ((x + half) & ((1 << bits) - 1)) - half
        out.append(lo.to(torch.int8))
        x = (x - lo) >> bits
    return out


def clamp_pad(a: torch.Tensor, bound: int, before: int, after: int) -> torch.Tensor:
    """``F.pad(a.clamp(-bound, bound), (before, after, before, after))`` in one pass: the
    clamp writes into the interior of the zeroed, padded result (float32 ``a``)."""
    if before == 0 and after == 0:
        return a.clamp(-bound, bound)
    h, w = a.shape[-2:]
    out = a.new_zeros(*a.shape[:-2], h + before + after, w + before + after)
    torch.clamp(a, -bound, bound, out=out[..., before : before + h, before : before + w])
    return out


def float_digits(x: torch.Tensor, n: int) -> list[torch.Tensor]:
    """``to_digits`` of a float tensor holding integers (below 2^24 in magnitude), computed in
    float32, where every step is exact: the same int8 digits, in about half the time."""
    x = x.float()
    out = []
    for _ in range(n - 1):
        hi = torch.floor((x + _DIGIT // 2) * (1.0 / _DIGIT))
        out.append((x - hi * _DIGIT).to(torch.int8))
        x = hi
    out.append(x.to(torch.int8))
    return out


_INT8_SPEEDUP: float | None = None
INT8_ENV = "NEURALCODEC_INT8"  # "0": never the int8 plan, "1": as if int8 products were 3.5x


def int8_speedup() -> float:
    """Multiply-add rate of ``torch._int_mm`` over a float32 matrix product, measured once per
    process on a shape the plan uses (best of three, after a warm-up), unless a narrow product
    measured first shows int8 to be far slower (then that rate, and no exactness probe).

    With VNNI (AVX-512 or AVX-VNNI) int8 products run about 3.5x float32's rate; without it
    oneDNN has no fast int8 kernel and they run ten to twenty times *slower* than float32 (an
    AVX2-only CPU: 0.06x). The rate picks a plan, never a value: every plan gives the same
    integers. ``$NEURALCODEC_INT8`` = 0 or 1 skips the measurement (0: no int8 plan)."""
    global _INT8_SPEEDUP
    if _INT8_SPEEDUP is None:
        env = os.environ.get(INT8_ENV)
        if env in ("0", "1"):
            _INT8_SPEEDUP = 3.5 if env == "1" else 0.0
        else:
            _INT8_SPEEDUP = _measure_int8_speedup()
    return _INT8_SPEEDUP


# below this rate (int8 over float32) no plan takes int8 products: the cost ratio of the
# cheapest case, one digit each against the float64 plan, is 1 / (0.25 x 3) > 0.8
_SLOW_INT8 = 0.25


def _measure_int8_speedup() -> float:
    g = torch.Generator().manual_seed(2)
    a = torch.randint(-64, 64, (96, 864), dtype=torch.int8, generator=g)

    def rate(cols: int, repeats: int) -> float:
        b = torch.randint(-64, 64, (864, cols), dtype=torch.int8, generator=g)
        af, bf = a.float(), b.float()

        def best(fn) -> float:
            fn()
            fn()  # the first call also builds oneDNN's kernel for the shape
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            return max(min(times), 1e-9)

        return best(lambda: torch.mm(af, bf)) / best(lambda: torch._int_mm(a, b))

    # a narrow product first: where int8 is many times slower than float32 (no VNNI) this
    # settles it in a few milliseconds, not the seconds the wide product and the exactness
    # probe would take there
    try:
        quick = rate(256, 1)
    except (AttributeError, RuntimeError, NotImplementedError):
        return 0.0
    if quick < _SLOW_INT8 / 2:  # halved: narrow products understate the rate
        return quick
    if not int8_matmul_available():
        return 0.0
    # a product as wide as the synthesis' (a few thousand pixels): on 64 columns the rate was
    # dominated by call overheads and came out 1.4x where the layers see 3-5x
    return rate(2048, 3)


def _int8_cost_ratio(plan: tuple[int, int], act_digits: int, w_digits: int) -> float:
    """Time of the int8 plan over the float plan's, per multiply-add (int8 products at
    ``int8_speedup()`` times float32's rate; a grouped float32 convolution runs at about 55% of
    a plain one, float64 at a third, the value split doubles the work)."""
    split, k = plan
    float_cost = 3.0 if k == 0 else (1.0 if k == 1 else 1.8) * (2 if split else 1)
    speedup = int8_speedup()
    if speedup <= 0:
        return float("inf")
    return act_digits * w_digits / speedup / float_cost


@dataclass
class IntConv:
    """One integer convolution: ``acc = conv(a, W) + b``, then requantised (see module doc).

    ``weight``: int (cout, cin, k, k), or (cin, cout, k, k) when transposed, stored as int8 or
    int16; ``bias``: int64 at the accumulator's scale; ``mult`` (cout,) int64 and ``shift``:
    ``out = floor((acc * mult + 2^(shift-1)) / 2^shift)``; ``in_bound``: the input magnitude
    limit A (the input is clamped to it); ``out_bound``: the output is clamped to +-out_bound
    (after the ReLU when ``relu``).
    """

    weight: np.ndarray
    bias: np.ndarray
    mult: np.ndarray
    shift: int
    geometry: ConvGeometry
    in_bound: int
    out_bound: int
    relu: bool = False
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.check()

    # -- validation ------------------------------------------------------------------------
    @property
    def cout(self) -> int:
        return self.weight.shape[1] if self.geometry.transposed else self.weight.shape[0]

    @property
    def cin(self) -> int:
        return self.weight.shape[0] if self.geometry.transposed else self.weight.shape[1]

    def check(self) -> None:
        w, g = self.weight, self.geometry
        if w.ndim != 4 or w.shape[2] != g.kernel or w.shape[3] != g.kernel:
            raise IntNetError(f"weight {w.shape} does not match kernel {g.kernel}")
        if self.bias.shape != (self.cout,) or self.mult.shape != (self.cout,):
            raise IntNetError("bias / multiplier do not match the output channels")
        if not (0 < self.in_bound < 2**24 and 0 < self.out_bound < 2**31 and 0 <= self.shift < 63):
            raise IntNetError("activation bounds or shift out of range")
        l1 = int(
            np.abs(w.astype(np.int64)).sum(axis=(0, 2, 3) if g.transposed else (1, 2, 3)).max()
        )
        acc = l1 * self.in_bound + int(np.abs(self.bias).max(initial=0))
        if acc * int(np.abs(self.mult).max(initial=0)) + 2**self.shift >= FLOAT64_EXACT:
            raise IntNetError("accumulator times multiplier could exceed 2^53")

    # -- the prepared (fast) form ------------------------------------------------------------
    def _prepared(self):
        if "w" in self._cache:
            return self._cache["w"], self._cache["plan"], self._cache["pad"]
        g = self.geometry
        w = self.weight.astype(np.int64)
        if g.transposed:
            w = subpixel_weight(w, g.stride)
            j = w.shape[-1]
            # left/top J-1; right/bottom enough rows for the last phase of the last output
            pad = (j - 1, max(0, (g.kernel + g.output_padding - 1 - g.padding) // g.stride))
        else:
            pad = (g.padding, g.padding)
        plan = _choose_plan(np.abs(w).sum(axis=(2, 3)), self.in_bound)
        self._cache.update(w=w, plan=plan, pad=pad)
        return w, plan, pad

    def _int8_digits(self) -> tuple[int, int]:
        """(activation digits (7-bit), weight digits (8-bit)) of the int8 plan."""
        if "digits" not in self._cache:
            w = self._prepared()[0]
            self._cache["digits"] = (
                digit_count(self.in_bound),
                digit_count(int(np.abs(w).max(initial=1)), 8),
            )
        return self._cache["digits"]

    def int8_preferred(self, a: torch.Tensor) -> bool:
        """Whether the int8 plan is the faster exact one for this layer (cost model only)."""
        if "int8" not in self._cache:
            w, plan, _ = self._prepared()
            n, taps = w.shape[0], int(np.prod(w.shape[1:]))
            self._cache["int8"] = (
                n >= 32
                and taps >= 64
                and _int8_cost_ratio(plan, *self._int8_digits()) < 0.8
                and int8_matmul_available()
            )
        return (
            self._cache["int8"]
            and a.shape[0] == 1
            # a sub-pixel layer's product has s^2 outputs per input pixel: worth it sooner
            and a.shape[-1] * a.shape[-2] >= (256 if self.geometry.transposed else 1024)
        )

    def _int8_weights(self) -> list[torch.Tensor]:
        if "w8" not in self._cache:
            w = self._prepared()[0]  # (N, C, J, J) -> (N, J*J*C): taps outer, channels inner
            order, _ = self._tap_plan()
            taps = w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1, w.shape[1])[:, order]
            mat = torch.from_numpy(np.ascontiguousarray(taps.reshape(w.shape[0], -1)))
            digits = to_digits(mat, self._int8_digits()[1], 8)
            self._cache["w8"] = [d.contiguous() for d in digits]
        return self._cache["w8"]

    def _tap_plan(self) -> tuple[list[int], list[tuple[int, int]] | None]:
        """``(tap order, phase ranges)`` of the int8 plan. A transposed layer in sub-pixel form
        has taps that are zero for a whole phase (a 5x5 stride-2 kernel: 9, 6, 6 and 4 of the 3x3
        taps are used by its four phases). The taps are ordered so that each phase's used taps
        are one contiguous range ``[t0, t1)``; its product then skips the others (25 instead of
        36 tap products per pixel). ``None`` ranges: one product over every tap."""
        if "taps" in self._cache:
            return self._cache["taps"]
        w, g = self._prepared()[0], self.geometry
        j = w.shape[-1]
        plain = list(range(j * j)), None
        plan = plain
        if g.transposed and g.stride > 1:
            s = g.stride
            used = np.abs(w).reshape(-1, s * s, w.shape[1], j, j).sum(axis=(0, 2)) > 0  # (P, J, J)
            # used taps of every phase are a box [u0, J) x [v0, J) (later taps reach the kernel)
            firsts = sorted({int(np.argmax(used[p].any(1))) for p in range(s * s)} | {0, j})
            if len(firsts) <= 3:  # at most two box corners per axis: an order exists
                c = firsts[1] if len(firsts) == 3 else 0
                cells = [(u, v) for u in range(j) for v in range(j)]
                rank = {  # rows below c first, then the box, then its left columns, then the rest
                    (u, v): (0 if u >= c and v < c else 1 if u >= c else 2 if v >= c else 3)
                    for u, v in cells
                }
                order_cells = sorted(cells, key=lambda t: (rank[t], t))
                order = [u * j + v for u, v in order_cells]
                ranges = []
                for p in range(s * s):
                    pos = [i for i, (u, v) in enumerate(order_cells) if used[p, u, v]]
                    if not pos or pos != list(range(pos[0], pos[-1] + 1)):
                        break
                    ranges.append((pos[0], pos[-1] + 1))
                else:
                    if any(r != (0, j * j) for r in ranges):  # some phase skips taps
                        plan = order, ranges
        self._cache["taps"] = plan
        return plan

    def raw_int8(self, a: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
        """``(partial sums, factors)`` from int8 matrix products: ``acc`` (1, P * C', H, W)
        int32, one partial per (activation digit i, weight digit j), factor 128^i 256^j."""
        _, _, pad = self._prepared()
        g = self.geometry
        exact32 = self.in_bound < 1 << 24  # float32 holds every clamped input exactly
        a = a.float() if exact32 else a.double()
        if g.transposed:
            stride, a = 1, clamp_pad(a, self.in_bound, pad[0], pad[1])
        else:
            stride, a = g.stride, clamp_pad(a, self.in_bound, g.padding, g.padding)
        wd = self._int8_weights()
        j = self._prepared()[0].shape[-1]
        hp, wp = a.shape[-2:]
        ho, wo = (hp - j) // stride + 1, (wp - j) // stride + 1
        n_act = self._int8_digits()[0]
        digits = float_digits if exact32 else lambda x, n: to_digits(x.to(torch.int64), n)
        acts = digits(a[0], n_act)
        acc = torch.empty(len(wd) * len(acts), wd[0].shape[0], ho * wo, dtype=torch.int32)
        order, ranges = self._tap_plan()
        cin = a.shape[1]
        factors = []
        for i, d in enumerate(acts):
            cols = torch.stack(
                [
                    d[:, dy : dy + stride * (ho - 1) + 1 : stride,
                      dx : dx + stride * (wo - 1) + 1 : stride]
                    for dy, dx in (divmod(t, j) for t in order)
                ]
            ).reshape(-1, ho * wo)  # fmt: skip
            for m, wm in enumerate(wd):
                out = acc[i * len(wd) + m]
                if ranges is None:
                    torch._int_mm(wm, cols, out=out)
                else:  # phase-major rows: phase p's outputs over its own taps only
                    for p, (t0, t1) in enumerate(ranges):
                        torch._int_mm(
                            self._phase_weights(m, p, t0, t1),
                            cols[t0 * cin : t1 * cin],
                            out=out[p * self.cout : (p + 1) * self.cout],
                        )
                factors.append(_DIGIT**i * 256**m)
        return acc.view(1, -1, ho, wo), np.array(factors, dtype=np.int64)

    def _phase_weights(self, m: int, p: int, t0: int, t1: int) -> torch.Tensor:
        """Weight digit ``m``'s rows of phase ``p`` over taps ``[t0, t1)`` (contiguous)."""
        key = ("pw", m, p)
        if key not in self._cache:
            s, cin = self.geometry.stride, self.cin
            rows = self._int8_weights()[m].view(self.cout, s * s, -1)[:, p]
            self._cache[key] = rows[:, t0 * cin : t1 * cin].contiguous()
        return self._cache[key]

    def int8_phase_major(self) -> bool:
        """Whether ``raw_int8``'s partial sums are phase-major (``_tap_plan`` found ranges):
        row ``(p, c)`` instead of the sub-pixel order ``(c, p)``."""
        return self._tap_plan()[1] is not None

    def flat16_preferred(self, a: torch.Tensor) -> bool:
        """Whether a 1x1 layer runs on ``conv16`` with its positions laid out as rows of 16
        (a 1x1 convolution does not see the layout; the entropy model's parameter networks run
        on positions flattened to one column): on CPUs with AVX-512 VNNI, for at least 256
        inputs and 256 positions (measured in ``docs/compression.md``; narrower layers were
        no faster than the float32 product)."""
        g = self.geometry
        return (
            g.kernel == 1
            and g.stride == 1
            and g.padding == 0
            and not g.transposed
            and a.shape[0] == 1
            and self.cin >= FLAT16_MIN_INPUTS
            and a.shape[-1] * a.shape[-2] % CONV16_X == 0
            and a.shape[-1] * a.shape[-2] >= 256
            and _conv16_family() == CONV16_VNNI
            and self._int16_weights() is not None
        )

    def small_preferred(self, a: torch.Tensor) -> bool:
        """Whether the C kernel for few outputs (``raw_small``) takes this layer: at most
        ``SMALL_OUTPUTS`` (phase) outputs, stride 1 once in sub-pixel form, one image."""
        if "small" not in self._cache:
            w = self._prepared()[0]
            g = self.geometry
            self._cache["small"] = (
                w.shape[0] <= SMALL_OUTPUTS
                and (g.transposed or g.stride == 1)
                and _ext.has_intnet()
            )
        return self._cache["small"] and a.shape[0] == 1

    def raw_small(self, a: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
        """``(acc, [1])``: the exact accumulator as float64 from ``kernels/_intnet.c``'s
        ``conv_small`` (every partial sum is an integer below 2^53, ``check``), split by rows
        over the intra-op threads."""
        _, _, pad = self._prepared()
        g = self.geometry
        before, after = (pad[0], pad[1]) if g.transposed else (g.padding, g.padding)
        a = clamp_pad(a.float(), self.in_bound, before, after)
        w0 = self._prepared()[0]
        n = w0.shape[0]
        slots = next(k for k in SMALL_SLOTS if k >= n)
        if "w64" not in self._cache:  # zero outputs up to the kernel's specialisation
            w = np.zeros((slots, *w0.shape[1:]), dtype=np.float64)
            w[:n] = w0
            self._cache["w64"] = w
        w = self._cache["w64"]
        j = w.shape[-1]
        ho, wo = a.shape[-2] - j + 1, a.shape[-1] - j + 1
        acc = torch.empty((1, slots, ho, wo), dtype=torch.float64)
        args = (a[0].contiguous().numpy(), w, acc[0].numpy())
        by_channels(_ext._intnet.conv_small, args, ho, acc.numel() * a.shape[1] * j * j // 64)
        return acc[:, :n], np.ones(1, dtype=np.int64)

    def _int16_weights(self) -> np.ndarray | None:
        """The int16 channel-pair weights of ``conv16``, (groups, ceil(C / 2), J, J, group, 2),
        where its int32 sums are exact (inputs and weights within int16, every partial sum of
        magnitude below 2^31 within each range of ``_int16_splits``), else None. The outputs are rounded up to a ``conv16`` version
        (one of SMALL_SLOTS, or a multiple of 16), the extra ones with zero weights, in groups
        of 16 (or one group); phase-major (``int16_phase_major``) where a transposed layer's
        phases fill whole groups."""
        if "w16" not in self._cache:
            w0 = self._prepared()[0]
            n, c = w0.shape[:2]
            fits = (
                self.in_bound <= INT16_MAX
                and float(np.abs(w0).max(initial=0)) <= INT16_MAX
                and self._int16_splits()
                and _ext.has_intnet()
                and hasattr(_ext._intnet, "conv16")
            )
            w16 = None
            if fits:
                if self._int16_group() < 0:
                    slots = next((k for k in SMALL_SLOTS if k >= n), -(-n // 16) * 16)
                else:  # rows (phase, output) instead of (output, phase): no padding needed
                    s2, slots = self.geometry.stride**2, n
                    w0 = w0.reshape(n // s2, s2, *w0.shape[1:]).swapaxes(0, 1)
                    w0 = w0.reshape(n, *w0.shape[2:])
                w16 = np.zeros((slots, (c + 1) // 2 * 2, *w0.shape[2:]), dtype=np.int16)
                w16[:n, :c] = w0
                size = self._int16_group() if self._int16_group() > 0 else min(16, slots)
                j = w0.shape[-1]  # (G, group, C2, 2, J, J) -> (G, C2, J, J, group, 2)
                w16 = w16.reshape(slots // size, size, -1, 2, j, j).transpose(0, 2, 4, 5, 1, 3)
                w16 = np.ascontiguousarray(w16)
            self._cache["w16"] = w16
        return self._cache["w16"]

    def _int16_splits(self) -> list[tuple[int, int]]:
        """Ranges ``[p0, p1)`` of input channel pairs, each convolved on its own into an int32
        partial sum: the fewest equal ranges (at most 4) in which every output's sum of |w| x
        the input bound stays below 2^31; ``[]`` if none. One range for most layers; a layer
        with 16-bit inputs and wide weights (the synthesis' first layers) needs two."""
        if "splits16" not in self._cache:
            w0 = self._prepared()[0]
            pairs = (w0.shape[1] + 1) // 2
            l1 = np.abs(w0.astype(np.float64)).sum(axis=(2, 3))  # (N, C)
            l1 = np.pad(l1, ((0, 0), (0, 2 * pairs - l1.shape[1]))).reshape(len(l1), pairs, 2)
            l1 = l1.sum(2)
            splits: list[tuple[int, int]] = []
            for k in range(1, min(4, pairs) + 1):
                edges = [pairs * i // k for i in range(k + 1)]
                ranges = list(zip(edges, edges[1:], strict=False))
                if all(l1[:, p0:p1].sum(1).max() * self.in_bound < 2**31 for p0, p1 in ranges):
                    splits = ranges
                    break
            self._cache["splits16"] = splits
        return self._cache["splits16"]

    def _int16_parts(self) -> list[np.ndarray]:
        """``_int16_weights`` cut into the channel-pair ranges of ``_int16_splits`` (contiguous)."""
        if "w16parts" not in self._cache:
            w16 = self._int16_weights()
            self._cache["w16parts"] = [
                np.ascontiguousarray(w16[:, p0:p1]) for p0, p1 in self._int16_splits()
            ]
        return self._cache["w16parts"]

    def _int16_group(self) -> int:
        """Outputs per ``conv16`` group in phase-major order, or -1 (the sub-pixel order, groups
        of 16 or one group). A transposed layer's phases use corner boxes of the taps (a 5x5
        stride-2 kernel: 9, 6, 6 and 4 of the 3x3); with the rows ordered (phase, output) every
        group holds one phase and adds only its box. Taken where the phases split into whole
        groups: outputs per phase a multiple of 16, or (``INT16_SPLIT_SMALL``) one of
        SMALL_SLOTS for a few-output layer."""
        g = self.geometry
        if not (g.transposed and g.stride > 1):
            return -1
        cout = self.cout
        if cout % 16 == 0:
            return 16
        if INT16_SPLIT_SMALL and cout * g.stride**2 <= SMALL_OUTPUTS and cout in SMALL_SLOTS:
            return cout
        return -1

    def int16_phase_major(self) -> bool:
        """Whether ``raw_int16``'s sums are phase-major: row ``(p, c)``, not ``(c, p)``."""
        return self._int16_weights() is not None and self._int16_group() > 0

    def _int16_boxes(self) -> np.ndarray:
        """(groups, 4) int32: each ``conv16`` group's taps ``[ty0, ty1) x [tx0, tx1)``, the
        smallest box holding every non-zero weight of its outputs (an all-zero group: empty)."""
        if "box16" not in self._cache:
            used = (self._int16_weights() != 0).any(axis=(1, 4, 5))  # (groups, J, J)
            boxes = np.zeros((used.shape[0], 4), dtype=np.int32)
            for i, u in enumerate(used):
                rows, cols = np.flatnonzero(u.any(1)), np.flatnonzero(u.any(0))
                if rows.size:
                    boxes[i] = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
            self._cache["box16"] = boxes
        return self._cache["box16"]

    def int16_preferred(self, a: torch.Tensor) -> bool:
        """Whether ``raw_int16`` takes this layer (stride 1 once in sub-pixel form, its sums
        exact): for few outputs (up to 16, instead of ``conv_small``) on every CPU; for more,
        on CPUs with AVX-512 VNNI where the int8 plan would take it, and either needs 3 or more
        products (digit pairs) or a group's weights (16 outputs' int16 taps) are at most
        ``INT16_GROUP_BYTES``: ``vpdpwssd`` makes half the int8 plan's products per
        instruction, in one pass and without the int8 plan's column stack; layers with wider
        inputs were slower or no faster (measured in ``docs/compression.md``)."""
        g = self.geometry
        if a.shape[0] != 1 or not (g.transposed or g.stride == 1):
            return False
        w16 = self._int16_weights()
        if w16 is None:
            return False
        if self._prepared()[0].shape[0] <= SMALL_OUTPUTS:
            return True
        n_act, n_w = self._int8_digits()
        group_bytes = 16 * w16[0, ..., 0, :].nbytes
        return (
            INT16_WIDE
            and _conv16_family() == CONV16_VNNI
            and (n_act * n_w >= 3 or group_bytes <= INT16_GROUP_BYTES)
            and self.int8_preferred(a)
        )

    def raw_int16(self, a: torch.Tensor, family: int = 0) -> tuple[torch.Tensor, np.ndarray]:
        """``(acc, factors)`` by ``conv16``: clamped, padded and paired (``pack16``), then int16
        products with int32 sums, one partial sum per range of ``_int16_splits`` (factors 1), in the sub-pixel layout of a transposed layer (phase-major
        where ``int16_phase_major``); the same integers as every other plan's. ``family``: the kernel version (0 this CPU's best; 1
        plain C, 2 AVX2, 3 AVX-512, 4 AVX-512 VNNI, for tests)."""
        _, _, pad = self._prepared()
        g = self.geometry
        before, after = (pad[0], pad[1]) if g.transposed else (g.padding, g.padding)
        w = self._int16_weights()
        n, j = self._prepared()[0].shape[0], w.shape[2]
        c, h, wd = a.shape[1:]
        hp, wp = h + before + after, wd + before + after
        ho, wo = hp - j + 1, wp - j + 1
        wide = -(-wo // CONV16_X) * CONV16_X + j - 1  # the last vector's reach, zeros beyond
        packed = np.empty(((c + 1) // 2, hp, max(wp, wide), 2), dtype=np.int16)
        src = a[0].float().contiguous().numpy()
        args = (src, float(self.in_bound), before, before, packed)
        by_channels(_ext._intnet.pack16, args, packed.shape[0], packed.size)
        slots, parts = w.shape[0] * w.shape[4], self._int16_parts()
        acc = torch.empty((len(parts), slots, ho, wo), dtype=torch.int32)
        boxes = self._int16_boxes()
        for (p0, p1), wk, out in zip(self._int16_splits(), parts, acc.numpy(), strict=True):
            by_channels(
                lambda y0, y1, a=packed[p0:p1], wk=wk, out=out: _ext._intnet.conv16(
                    a, wk, out, y0, y1, family, boxes
                ),
                (), ho, out.size * 2 * (p1 - p0) * j * j // 64,
            )  # fmt: skip
        return acc[:, :n].reshape(1, -1, ho, wo), np.ones(len(parts), dtype=np.int64)

    def _weights(self, path: str, k: int) -> torch.Tensor:
        key = ("t", path, k)
        if key not in self._cache:
            w = self._prepared()[0]
            if path == "float64":
                t = torch.from_numpy(w.astype(np.float64))
            elif k <= 1:
                t = torch.from_numpy(w.astype(np.float32))
            else:  # K groups stacked along the outputs: group g sees input channels of g only
                cout, cin = w.shape[:2]
                parts = w.reshape(cout, k, cin // k, *w.shape[2:]).transpose(1, 0, 2, 3, 4)
                parts = np.ascontiguousarray(parts.reshape(k * cout, cin // k, *w.shape[2:]))
                t = torch.from_numpy(parts.astype(np.float32))
            self._cache[key] = t
        return self._cache[key]

    def raw(
        self, a: torch.Tensor, path: str | None = None, bounded: bool = False
    ) -> tuple[torch.Tensor, np.ndarray]:
        """``(partial sums, factors)``: the exact accumulator is ``sum_p factors[p] * acc[:, p]``
        with ``acc`` (B, P * C', H, W) float32 (or float64 with P = 1), still in sub-pixel phase
        layout for a transposed layer. ``path``: "float64" forces the plain float64 convolution;
        None takes the layer's cheapest exact plan (``_choose_plan``). ``bounded``: the caller
        guarantees ``|a| <= in_bound`` already (no clamping pass)."""
        _, (split, k), pad = self._prepared()
        g = self.geometry
        stride, padding = (1, 0) if g.transposed else (g.stride, g.padding)
        if g.transposed:
            a = clamp_pad(a, self.in_bound, pad[0], pad[1])
        elif not bounded:
            a = a.clamp(-self.in_bound, self.in_bound)
        with _highest_precision():
            if path == "float64" or k == 0:
                acc = F.conv2d(a.double(), self._weights("float64", 0), None, stride, padding)
                return acc, np.ones(1, dtype=np.int64)
            a = a.float()
            factors = np.ones(k, dtype=np.int64)
            one_by_one = g.kernel == 1 and stride == 1 and padding == 0 and a.shape[0] == 1
            if k == 1 and not split and one_by_one:
                # one matrix product (faster than a 1x1 convolution on CPU); every partial sum
                # is below 2^24 whatever the order, as for the convolution
                n, (h, w) = self.cout, a.shape[-2:]
                flat = a[0].reshape(a.shape[1], h * w)
                return (self._weights("float32", 1).view(n, -1) @ flat).view(1, n, h, w), factors
            if split:  # a = hi * 2^split + lo, both exact in float32; batch of two
                hi = torch.floor(a * 2.0**-split)
                a = torch.cat([hi, a - hi * 2.0**split], 0)
                factors = np.concatenate([np.full(k, 2**split), factors])
            if one_by_one:
                # grouped 1x1: one batched matrix product per (value part, group), laid out as
                # the grouped convolution's output (3-4x faster than it on CPU; the same exact
                # partial sums, each below 2^24)
                n, (h, w) = self.cout, a.shape[-2:]
                wk = self._weights("float32", k).view(k, n, -1)
                acc = torch.matmul(wk, a.reshape(a.shape[0], k, -1, h * w))
                return acc.reshape(1, -1, h, w), factors
            acc = F.conv2d(a, self._weights("float32", k), None, stride, padding, 1, k)
            if split:  # (2, K*C', H, W) -> (1, 2*K*C', H, W): hi partials first
                acc = acc.reshape(1, -1, *acc.shape[-2:])
            return acc, factors

    def out_shape(self, a: torch.Tensor) -> tuple[int, int, int, int]:
        h, w = a.shape[-2:]
        g = self.geometry
        return (a.shape[0], self.cout, g.out_size(h), g.out_size(w))

    def accumulate(self, a: torch.Tensor, path: str | None = None) -> torch.Tensor:
        """Exact integer ``conv(a, W)`` as float64 (no bias), in the output layout."""
        acc, factors = self.raw_int8(a) if path == "int8" else self.raw(a, path)
        b, _, h, w = acc.shape
        if path == "int8" and self.int8_phase_major():  # back to the sub-pixel order
            s2 = self.geometry.stride**2
            acc = acc.view(b, len(factors), s2, self.cout, h, w).transpose(2, 3)
            acc = acc.reshape(b, -1, h, w)
        f = torch.from_numpy(factors.astype(np.float64)).view(1, -1, 1, 1, 1)
        acc = (acc.double().view(b, len(factors), -1, h, w) * f).sum(1)
        if self.geometry.transposed:
            acc = _unshuffle_crop(acc, self.geometry, *a.shape[-2:])
        return acc

    def __call__(
        self, a: torch.Tensor, path: str | None = None, impl: str | None = None
    ) -> torch.Tensor:
        """The layer's output: float32 integers clamped to ``out_bound`` (after the ReLU)."""
        lo = 0 if self.relu else -self.out_bound
        if path is None and _use_c(impl, a) and self.flat16_preferred(a):
            h, w = a.shape[-2:]
            rows = a.reshape(1, a.shape[1], h * w // CONV16_X, CONV16_X)
            return self(rows, path="int16").view(1, self.cout, h, w)
        if _use_c(impl, a):
            phase_major = False
            if path == "int16" or (path is None and self.int16_preferred(a)):
                if self._int16_weights() is None:
                    raise IntNetError("the int16 plan's sums could pass 2^31 on this layer")
                acc, factors = self.raw_int16(a)
                phase_major = self.int16_phase_major()
            elif path == "int8" or (path is None and self.int8_preferred(a)):
                acc, factors = self.raw_int8(a)
                phase_major = self.int8_phase_major()
            elif path is None and self.small_preferred(a):
                acc, factors = self.raw_small(a)
            else:
                acc, factors = self.raw(a, path)
            out = torch.empty(self.out_shape(a), dtype=torch.float32)
            g = self.geometry
            s, pad = (g.stride, g.padding) if g.transposed else (1, 0)
            acc = acc[0].contiguous().numpy()
            args = (acc, factors, s, pad, self.bias, self.mult, self.shift, lo, self.out_bound)
            args += (out[0].numpy(), int(phase_major))
            by_channels(_ext._intnet.requant, args, self.cout, out.numel())
            return out
        acc = self.accumulate(a, path)
        acc = acc + torch.from_numpy(self.bias.astype(np.float64)).view(1, -1, 1, 1)
        return requantize(acc, self.mult, self.shift).clamp_(lo, self.out_bound).float()

    # -- storage -------------------------------------------------------------------------------
    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        peak = int(np.abs(self.weight).max(initial=0))
        wdtype = np.int8 if peak <= 127 else np.int16
        return {
            prefix + "weight": self.weight.astype(wdtype),
            prefix + "bias": self.bias.astype(np.int64),
            prefix + "mult": self.mult.astype(np.int64),
            prefix + "geometry": self.geometry.as_array(),
            prefix + "meta": np.array(
                [self.shift, self.in_bound, self.out_bound, int(self.relu)], dtype=np.int64
            ),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> IntConv:
        try:
            shift, in_bound, out_bound, relu = (int(v) for v in arrays[prefix + "meta"])
            return cls(
                weight=np.asarray(arrays[prefix + "weight"]).astype(np.int64),
                bias=np.asarray(arrays[prefix + "bias"], dtype=np.int64),
                mult=np.asarray(arrays[prefix + "mult"], dtype=np.int64),
                shift=shift,
                geometry=ConvGeometry.from_array(np.asarray(arrays[prefix + "geometry"])),
                in_bound=in_bound,
                out_bound=out_bound,
                relu=bool(relu),
            )
        except KeyError as exc:
            raise IntNetError(f"missing stored tensor {exc}") from None


_POOL: ThreadPoolExecutor | None = None
PARALLEL_MIN = 1 << 18  # work below this runs on the calling thread (a hand-off costs ~50-100 us)
SMALL_SLOTS = (1, 2, 3, 4, 6, 8, 12, 16)  # kernels/_intnet.c conv_small's specialisations
SMALL_OUTPUTS = SMALL_SLOTS[-1]


def by_channels(fn, args: tuple, channels: int, work: int) -> None:
    """``fn(*args, c0, c1)`` over output channels, split across up to ``torch.get_num_threads()``
    threads (at most 4) for large outputs. Channels are independent: same result on any split."""
    global _POOL
    parts = min(4, torch.get_num_threads(), channels)
    if parts < 2 or work < PARALLEL_MIN:
        fn(*args, 0, channels)
        return
    if _POOL is None:
        _POOL = ThreadPoolExecutor(4, thread_name_prefix="intnet")
    edges = [channels * i // parts for i in range(parts + 1)]
    spans = list(zip(edges, edges[1:], strict=False))
    # the calling thread takes the first span itself: one hand-off fewer per call
    jobs = [_POOL.submit(fn, *args, c0, c1) for c0, c1 in spans[1:]]
    try:
        fn(*args, *spans[0])
    finally:
        for job in jobs:
            job.result()


CONV16_VNNI = 4  # conv16's AVX-512 VNNI family (kernels/_intnet.c conv16_pick)


def _conv16_family() -> int:
    """The family of ``conv16`` this CPU runs (0 when the kernel is absent)."""
    if "conv16" not in _FAMILY:
        fn = getattr(_ext._intnet, "conv16_family", None) if _ext.has_intnet() else None
        _FAMILY["conv16"] = int(fn()) if fn is not None else 0
    return _FAMILY["conv16"]


_FAMILY: dict[str, int] = {}


def _use_c(impl: str | None, a: torch.Tensor) -> bool:
    """The C epilogue (``kernels/_intnet.c``) unless the reference is asked for or it is absent."""
    if impl == "reference" or os.environ.get("NEURALCODEC_KERNELS") == "reference":
        return False
    return _ext.has_intnet() and a.shape[0] == 1 and a.device.type == "cpu"


def _unshuffle_crop(acc: torch.Tensor, g: ConvGeometry, hin: int, win: int) -> torch.Tensor:
    """Sub-pixel phases -> the transposed convolution's output (interleave, then crop).

    Phase ``r`` of sub-pixel row ``q`` is row ``o' = q*s + r`` of the transposed output shifted
    by its padding (``o' = o + padding``), so the output is rows ``[padding, padding + H_out)``.
    """
    s = g.stride
    full = F.pixel_shuffle(acc, s) if s > 1 else acc
    ho, wo = g.out_size(hin), g.out_size(win)
    return full[:, :, g.padding : g.padding + ho, g.padding : g.padding + wo]


def requantize(acc: torch.Tensor, mult: np.ndarray, shift: int) -> torch.Tensor:
    """``floor((acc * mult + 2^(shift-1)) / 2^shift)`` per channel, exact in float64."""
    m = torch.from_numpy(mult.astype(np.float64)).view(1, -1, 1, 1)
    t = acc * m
    if shift:
        t += 2.0 ** (shift - 1)
        t *= 2.0**-shift
    return torch.floor(t)


class _highest_precision:
    """Keep float32 convolutions in full IEEE float32 (no bf16 / tf32 shortcuts)."""

    def __enter__(self):
        self.before = torch.get_float32_matmul_precision()
        if self.before != "highest":
            torch.set_float32_matmul_precision("highest")
        return self

    def __exit__(self, *exc):
        if self.before != "highest":
            torch.set_float32_matmul_precision(self.before)
        return False


def fixed_multiplier(scale: np.ndarray, bits: int = 20) -> tuple[np.ndarray, int]:
    """Per-channel real ``scale`` -> (integer multipliers, shared shift): ``scale ~ M / 2^shift``
    with the largest ``|M|`` in ``[2^(bits-1), 2^bits)``."""
    scale = np.asarray(scale, dtype=np.float64)
    peak = float(np.abs(scale).max(initial=0))
    if peak == 0 or not np.isfinite(peak):
        return np.zeros(scale.shape, dtype=np.int64), 0
    shift = bits - 1 - int(np.floor(np.log2(peak)))
    shift = int(min(max(shift, 0), 62))
    return np.round(scale * 2.0**shift).astype(np.int64), shift
