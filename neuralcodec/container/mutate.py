"""Structure-aware mutation of ``.ncf`` files, for the fuzzer (``neuralcodec.fuzz``).

A real file is taken apart (header fields + named segments), damaged at the level a codec reads
(segment payloads, header fields, metadata values, segment names and count) and put back together
with every CRC recomputed, so the damage gets past the container's checks and reaches the codec's
own decoder. A share of the cases damage the container itself (field block, index, trailer, raw
bytes, truncation) to exercise the reader.

::

    Seed(file bytes) --parse--> (header, [(name, bytes)], version)
    make_case(seeds, seed, index) --1-3 mutations--> assemble(...) --container damage?--> bytes

The same ``(seed, index)`` always gives the same bytes (``random.Random`` seeded by both), so any
case can be rebuilt from its number alone.
"""

from __future__ import annotations

import copy
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from neuralcodec.codecs.base import MODALITIES
from neuralcodec.container.binary import unpack
from neuralcodec.container.fields import COLORSPACES, pack_fields
from neuralcodec.container.segments import CRC, ENTRY, MAGIC, PREFIX, TRAILER, TRAILER_BYTES

Segments = list[tuple[bytes, bytes]]
MUTATOR_VERSION = 3  # bump when a change makes case numbers give other bytes
INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)
INTERESTING_INTS = (0, 1, 2, 3, 7, 8, 15, 16, 17, 63, 64, 65, 255, 256, 1 << 15, 65535, 65536)
INTERESTING_JSON: tuple[Any, ...] = (
    None,
    True,
    False,
    0,
    -1,
    1,
    2,
    255,
    1 << 31,
    1 << 63,
    10**30,
    -(10**30),
    0.5,
    -0.0,
    1e308,
    "",
    "x",
    "0",
    [],
    [0],
    [1, 2, 3],
    [[1]],
    {},
    {"a": 1},
)


@dataclass
class Seed:
    """One real file, taken apart."""

    header: dict[str, Any]
    segments: Segments
    version: int
    label: str = ""


def parse_seed(data: bytes, label: str = "") -> Seed:
    ncf = unpack(data)
    segs = [(n.encode("ascii"), bytes(v)) for n, v in ncf.streams.items()]
    return Seed(dict(ncf.header), segs, ncf.version, label)


# ----------------------------------------------------------------------------- assembling


def assemble(block: bytes, segments: Segments, version: int = 2) -> bytes:
    """A file of ``version`` from a raw field block and raw segments, every CRC correct (names
    and values are not checked: this builds files the writer refuses)."""
    if version == 1:
        head = struct.pack("<8sHIH", MAGIC, 1, len(block), len(segments) & 0xFFFF) + block
        out = [head, CRC.pack(zlib.crc32(head))]
        for name, data in segments:
            rec = bytes([len(name[:255])]) + name[:255] + struct.pack("<I", len(data)) + data
            out += [rec, CRC.pack(zlib.crc32(rec))]
        return b"".join(out)
    head = PREFIX.pack(MAGIC, version, len(block)) + block
    head += CRC.pack(zlib.crc32(head))
    pos, entries = len(head), []
    for name, data in segments:
        entries.append(bytes([len(name[:255])]) + name[:255])
        entries.append(ENTRY.pack(pos, len(data), zlib.crc32(data)))
        pos += len(data)
    index = b"".join(entries)
    return head + b"".join(d for _, d in segments) + index + trailer(pos, len(segments), index)


def trailer(index_at: int, count: int, index: bytes) -> bytes:
    raw = TRAILER.pack(index_at, count, zlib.crc32(index))
    return raw + CRC.pack(zlib.crc32(raw))


def pack_block(header: dict[str, Any]) -> bytes:
    """The field block of a possibly invalid header (values only need to be packable)."""
    return pack_fields(header)


# ----------------------------------------------------------------------------- segment mutations


def _pick(rng: random.Random, segs: Segments) -> int | None:
    return rng.randrange(len(segs)) if segs else None


def _with_payload(segs: Segments, i: int, data: bytes) -> None:
    segs[i] = (segs[i][0], data)


def m_flip_bits(rng, seed, segs, seeds) -> str:
    i = _pick(rng, segs)
    if i is None or not segs[i][1]:
        return "flip: nothing"
    data = bytearray(segs[i][1])
    for _ in range(rng.choice((1, 1, 2, 4, 8))):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    _with_payload(segs, i, bytes(data))
    return f"flip bits in {segs[i][0].decode(errors='replace')}"


def m_set_bytes(rng, seed, segs, seeds) -> str:
    i = _pick(rng, segs)
    if i is None or not segs[i][1]:
        return "set: nothing"
    data = bytearray(segs[i][1])
    pos = rng.choice((0, 1, len(data) - 1, rng.randrange(len(data))))
    for k in range(rng.randint(1, 4)):
        if pos + k < len(data):
            data[pos + k] = rng.choice((*INTERESTING_BYTES, rng.randrange(256)))
    _with_payload(segs, i, bytes(data))
    return f"set bytes at {pos}"


def m_truncate(rng, seed, segs, seeds) -> str:
    i = _pick(rng, segs)
    if i is None:
        return "truncate: nothing"
    n = len(segs[i][1])
    cut = rng.choice((0, 1, n // 2, max(n - 1, 0), rng.randint(0, n)))
    _with_payload(segs, i, segs[i][1][:cut])
    return f"truncate segment {i} to {cut}"


def m_extend(rng, seed, segs, seeds) -> str:
    i = _pick(rng, segs)
    if i is None:
        return "extend: nothing"
    n = rng.choice((1, 4, 64, 4096))
    fill = rng.choice((b"\x00" * n, b"\xff" * n, rng.randbytes(n), segs[i][1] * 2))
    _with_payload(segs, i, segs[i][1] + fill)
    return f"extend segment {i} by {len(fill)}"


def m_splice(rng, seed, segs, seeds) -> str:
    """Payload from another real file: the same-named segment, or a head/tail splice."""
    i = _pick(rng, segs)
    donor = rng.choice(seeds).segments
    if i is None or not donor:
        return "splice: nothing"
    same = [d for n, d in donor if n == segs[i][0]]
    other = same[0] if same and rng.random() < 0.6 else rng.choice(donor)[1]
    mine = segs[i][1]
    if rng.random() < 0.5:
        cut = rng.randint(0, len(mine))
        other = mine[:cut] + other[rng.randint(0, len(other)) :]
    _with_payload(segs, i, other)
    return f"splice into segment {i}"


def m_swap(rng, seed, segs, seeds) -> str:
    if len(segs) < 2:
        return "swap: nothing"
    a, b = rng.sample(range(len(segs)), 2)
    (na, da), (nb, db) = segs[a], segs[b]
    segs[a], segs[b] = (na, db), (nb, da)
    return f"swap payloads {a} {b}"


def m_structure(rng, seed, segs, seeds) -> str:
    """Drop, duplicate, rename, reorder or add segments."""
    op = rng.choice(("drop", "dup", "rename", "reorder", "add", "clear"))
    if op == "drop" and segs:
        segs.pop(rng.randrange(len(segs)))
    elif op == "dup" and segs:
        name, data = rng.choice(segs)
        segs.insert(rng.randint(0, len(segs)), (rng.choice((name, name + b"x")), data))
    elif op == "rename" and segs:
        names = [n for s in seeds for n, _ in s.segments]
        new = rng.choice(
            (*names, b"ncf.alpha", b"a/b", b"Bad", b"", b"x" * 255, b"gop0/f0/y", b"\xff")
        )
        i = rng.randrange(len(segs))
        segs[i] = (new, segs[i][1])
    elif op == "reorder":
        rng.shuffle(segs)
    elif op == "add":
        name = rng.choice((b"ncf.alpha", b"extra", b"gop0/f1/y", b"z"))
        segs.append((name, rng.randbytes(rng.choice((0, 1, 16, 300)))))
    elif op == "clear":
        segs.clear()
    return f"segments: {op}"


# ----------------------------------------------------------------------------- header mutations


def _mutate_json(rng: random.Random, value: Any, depth: int = 0) -> Any:
    """A copy of a JSON value with one node replaced, dropped, added or changed."""
    if isinstance(value, dict) and value and depth < 4 and rng.random() < 0.8:
        key = rng.choice(sorted(value))
        out = dict(value)
        op = rng.random()
        if op < 0.2:
            del out[key]
        elif op < 0.3:
            out[key + "_"] = rng.choice(INTERESTING_JSON)
        else:
            out[key] = _mutate_json(rng, value[key], depth + 1)
        return out
    if isinstance(value, list) and value and depth < 4 and rng.random() < 0.8:
        out = list(value)
        i = rng.randrange(len(out))
        op = rng.random()
        if op < 0.2:
            out.pop(i)
        elif op < 0.3:
            out.insert(i, copy.deepcopy(out[i]))
        else:
            out[i] = _mutate_json(rng, out[i], depth + 1)
        return out
    if isinstance(value, bool) or not isinstance(value, (int, float)) or rng.random() < 0.4:
        return rng.choice(INTERESTING_JSON)
    return rng.choice((value + 1, value - 1, value * 2, -value, value // 2 if value else 3))


def _shape(rng: random.Random, shape: tuple[int, ...]) -> tuple[int, ...]:
    h, w, c = (*shape, 3, 3, 3)[:3] if len(shape) >= 3 else (1, 1, 3)
    return rng.choice(
        (
            (w, h, c),
            (h + 1, w, c),
            (h, w - 1 or 1, c),
            (h * 2, w * 2, c),
            (1, 1, c),
            (h, w, rng.choice((1, 2, 4))),
            (h, w),
            (1, h, w, c),
            (65536, 65536, 3),
            (1 << 16, 1 << 12, 3),
            (1 << 12, 1 << 12, 3),
            (1 << 10, 1 << 13, c),
            (h, rng.choice(INTERESTING_INTS) or 1, c),
            (0xFFFFFFFF, 1, 3),
        )
    )


def _counts(rng: random.Random, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A changed shape of a non-image file (point cloud (N, 3), mesh (V, F), splats (N, coeffs),
    video (frames, H, W, C)): one count off by one, doubled, halved, zero, huge or swapped."""
    out = list(shape)
    i = rng.randrange(len(out))
    v = out[i]
    out[i] = rng.choice(
        (
            v + 1,
            v - 1,
            v * 2,
            v // 2,
            0,
            1,
            1 << 20,
            1 << 31,
            0xFFFFFFFF,
            rng.choice(INTERESTING_INTS),
        )
    )
    if rng.random() < 0.15:
        return tuple(out[::-1])
    if rng.random() < 0.1:
        return (*shape, 1) if rng.random() < 0.5 else tuple(shape[:-1])
    return tuple(out)


def m_header(rng, seed, segs, seeds) -> str:
    """Change one header field to a value of the right binary type."""
    h = seed.header
    name = rng.choice(
        ("shape", "shape", "quality", "model_id", "weights_sha256", "metadata", "metadata")
        + ("metadata", "bit_depth", "colorspace", "modality", "identity")
    )
    other = rng.choice(seeds).header
    if name == "shape" and h.get("modality", "image") != "image":
        h["shape"] = _counts(rng, tuple(h["shape"]))
    elif name == "shape":  # the image cases stay as they were
        h["shape"] = _shape(rng, tuple(h["shape"]))
    elif name == "quality":
        h["quality"] = rng.choice((0, 1, 2, 7, 8, 9, 255, 65535, max(h["quality"] - 1, 0)))
    elif name == "model_id":
        h["model_id"] = rng.choice((other["model_id"], "", "x" * 64, h["model_id"] + "-q9"))
    elif name == "weights_sha256":
        h["weights_sha256"] = rng.choice((other["weights_sha256"], "", rng.randbytes(32).hex()))
    elif name == "metadata":
        h["metadata"] = _mutate_json(rng, h["metadata"])
    elif name == "bit_depth":
        h["bit_depth"] = rng.choice((1, 7, 8, 9, 15, 16, 0, 255))
    elif name == "colorspace":
        h["colorspace"] = rng.choice(COLORSPACES)
    elif name == "modality":
        h["modality"] = rng.choice(MODALITIES)
    else:  # another codec's identity and weights: its decoder gets these streams
        for key in ("codec_id", "codec_name", "model_id", "weights_sha256", "modality"):
            h[key] = other[key]
    return f"header {name}"


MUTATIONS: tuple[tuple[Callable[..., str], int], ...] = (
    (m_flip_bits, 6),
    (m_set_bytes, 4),
    (m_truncate, 3),
    (m_extend, 2),
    (m_splice, 3),
    (m_swap, 1),
    (m_structure, 2),
    (m_header, 6),
)


# ----------------------------------------------------------------------------- container damage


def _damage_block(rng: random.Random, block: bytes) -> bytes:
    data = bytearray(block)
    if data and rng.random() < 0.8:
        data[rng.randrange(len(data))] = rng.choice((*INTERESTING_BYTES, rng.randrange(256)))
    else:
        data = data[: rng.randint(0, len(data))] + rng.randbytes(rng.randint(0, 3))
    return bytes(data)


def _damage_index(rng: random.Random, data: bytes) -> bytes:
    """Rewrite the trailer or an index byte of a version 2 file, CRCs recomputed."""
    if len(data) < TRAILER_BYTES or data[8:10] != b"\x02\x00":
        return data
    at, count, _ = TRAILER.unpack_from(data, len(data) - TRAILER_BYTES)
    index = bytearray(data[at : len(data) - TRAILER_BYTES])
    if rng.random() < 0.5 or not index:
        count = rng.choice((0, count + 1, max(count - 1, 0), 10**6, 1 << 22, 0xFFFFFFFF))
        at = rng.choice((at, at + 1, max(at - 1, 0), 0, len(data)))
    else:
        pos = rng.randrange(len(index))
        index[pos] = rng.choice((*INTERESTING_BYTES, rng.randrange(256)))
    body = data[: TRAILER.unpack_from(data, len(data) - TRAILER_BYTES)[0]]
    return body + bytes(index) + trailer(at, count, bytes(index))


def _damage_raw(rng: random.Random, data: bytes) -> bytes:
    """No CRC fixed: flips, truncation or extension anywhere."""
    out = bytearray(data)
    op = rng.random()
    if op < 0.5 and out:
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    elif op < 0.8:
        out = out[: rng.randrange(len(out) + 1)]
    else:
        out += rng.randbytes(rng.randint(1, 16))
    return bytes(out)


# ----------------------------------------------------------------------------- cases


def case_rng(seed: int, index: int) -> random.Random:
    return random.Random(f"ncf-fuzz:{seed}:{index}")


def make_case(seeds: list[Seed], seed: int, index: int) -> tuple[bytes, str]:
    """Case ``index`` of campaign ``seed``: (file bytes, what was done)."""
    rng = case_rng(seed, index)
    base = rng.choice(seeds)
    work = Seed(copy.deepcopy(base.header), list(base.segments), base.version, base.label)
    ops, weights = zip(*MUTATIONS, strict=True)
    steps = [f"from {base.label}"]
    for op in rng.choices(ops, weights, k=rng.choice((1, 1, 1, 2, 3))):
        steps.append(op(rng, work, work.segments, seeds))
    try:
        block = pack_block(work.header)
    except (struct.error, ValueError, TypeError, KeyError, UnicodeEncodeError):
        work.header = copy.deepcopy(base.header)
        block = pack_block(work.header)
        steps.append("header not packable: kept")
    version = 1 if len(work.segments) <= 64 and rng.random() < 0.1 else 2
    roll = rng.random()
    if roll < 0.08:
        block = _damage_block(rng, block)
        steps.append("field block bytes")
    data = assemble(block, work.segments, version)
    if 0.08 <= roll < 0.14:
        data = _damage_index(rng, data)
        steps.append("index / trailer")
    elif 0.14 <= roll < 0.2:
        data = _damage_raw(rng, data)
        steps.append("raw bytes")
    return data, "; ".join(steps)
