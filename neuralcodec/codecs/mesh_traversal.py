"""``meshtrav``: triangle meshes by a gate traversal (Edgebreaker-like) + parallelogram prediction.

::

    Mesh --quantise (quality q -> 7 + q bits per axis over the cubic bounding box)-->
    connectivity: traversal over gates (directed edges of coded triangles whose edge has exactly
      one coded triangle so far), taken newest first (a stack; format 4) or (format 5, the
      encoder's pick) by the triangles coded, or still to come, around the gate's end; at each
      gate one symbol:
          0 no triangle behind the gate (a border)     1 the third vertex is new
          2..7 it is the k-th candidate: a vertex joined to the gate's ends by a border edge
               of the coded part (most recent first; Edgebreaker's L / R / E cases)
          8 anything else (S case, non-manifold): steps along the border of the coded part from
               the gate's end (+) or start (-), else (not met within 1024 steps) counted back
      in contexts of the traversal state (coded triangles around the gate's ends, candidates,
      previous symbol; one of four layouts, the encoder's pick), so the decoder decodes while it
      traverses; or (valence layouts) with each vertex's triangle count sent as it appears and
      the triangles still to come around the gate's ends as contexts; + one orientation bit per
      triangle reached (0: consistent with its neighbour);
      when no gate is left, the next uncoded triangle starts a new part: 3 corners, each "new"
      or an index counted back (degenerate and non-manifold triangles end up here)
    positions, in a greedy order from the connectivity (most parallelograms first; C): each
      predicted by the rounded mean of every parallelogram (w, a, b | a, b, o) with a, b, o
      coded before w, blended with the mean of w's coded neighbours (0 .. 6/8: the
      encoder's pick for the mesh), or (format 6, where it pays) by E + A/64 (E - O) +
      B/64 (C - E), E / O / C the means of the parallelograms' edge midpoints, of their
      opposite corners and of w's coded neighbours, (A, B) fitted to the mesh per kind (2+ / 1
      parallelograms; format 7, where it pays: 2+ in two classes by the spread of the
      parallelograms against the edge) and sent; or, where the encoder finds it pays, by one
      parallelogram it names (creases), or by the mirror image of an earlier vertex near the
      prediction's image
      across an axis-aligned plane (mirrored halves); else by an earlier neighbour, else the
      previous vertex; the axis nearest the surface normal coded against the tangent plane of
      the other two axes' residuals (where that pays); per axis either
      the residual or, when cheaper, the index residual into the axis' palette (its sorted
      distinct values, sent as gaps or as steps of a lattice with a real step); adaptive
      integer models with sets (kind of prediction, bit length of the local scale, axis,
      palette; the scale (edge >> r) + (spread << r), r the encoder's pick in format 5; format 6,
      where it pays: each context-coded bit of a residual from an integer logistic mix of four
      adaptive models (that set; the set x the coded neighbours' residual magnitudes; the set x
      the vertex's earlier axes' magnitudes; the axis slot x both) and a refinement table;
      format 9, where it pays: the residuals of linearly predicted vertices negated where the
      prediction before rounding lies below the rounded one and in sets by how far it lies,
      2..4 classes; format 10, where it pays, with mixing: the second and third mantissa bits
      of each residual in contexts by its exponent; format 11, where it pays, with mixing: two
      more inputs to the mix, a fast-adapting copy of each context and a table over the
      context's last three bits, and a second refinement table); decoded and rebuilt in one C loop
      (kernels/_adaptive.c, positions_decode); unreferenced vertices last, after the previous
      one or as offsets from a nearby used vertex (format 8, where it pays: along the two axes
      off that vertex's normal axis, the third against its tangent plane)
    all of the above: one range-coded stream (formats 4-11: "g") after a 17-byte quantisation
      header (origin and top on float32 values; 33 bytes in older files and degenerate boxes)
    vertex attributes: lossless, in the decoder's vertex order (geometry.py); UVs quantised to
      the same bits over their bounding square, normals normalised and quantised as octahedral
      coordinates of bits - 2 each; residuals against the previous row, adaptive models

Decoded: vertices renumbered in the position order (unreferenced vertices last, in Morton order
of their quantised positions, or in the order of the used vertices they are coded from), triangles in traversal order, each the same oriented triangle as
in the input up to a rotation of its corners. Per-corner normals / UVs keep their own tables;
their corner indexes follow the triangles, each predicted by the index of the previous corner of
the same vertex.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from neuralcodec.datasets.mesh import MAX_FACES, MAX_VERTICES, Mesh
from neuralcodec.entropy.adaptive import (
    INT_CONTEXTS,
    POSITION_KINDS,
    POSITION_SCALES,
    AdaptiveDecoder,
    AdaptiveEncoder,
    ideal_int_bits,
    mirror_partners,
    pos_mix_bits,
    pos_mix_model,
    position_order,
    repeat_partners,
    states,
)
from neuralcodec.entropy.rangecoder import DecodeError

from . import geometry as g
from .base import Codec, CodecError, Encoded, register

_HEAD64 = struct.Struct("<B3dd")  # mode byte, origin, step
_HEAD32 = struct.Struct("<B3ff")  # mode byte, origin, the widest axis' largest coordinate
# 2: connectivity decoded with its traversal, one geometry stream; 3: + the normal-axis flag
# (tangent-plane prediction of one axis, mirror, near-unreferenced, lattices); 4: the same
# stream with the quantisation always on a float32 grid (17-byte header), named "g", and no
# "format" field in the container header (a file without the field and without a "g" stream is
# format 1, refused); 5: format 4 with a gate order in the first value (focus, see _State): a
# format-4 stream is a format-5 stream with focus 0; 6: format 5 with the linear prediction
# (first blend value _LIN_BASE + rule, its 6 coefficients in place of the second) and mixed
# contexts for the position residuals (select value + 2), each where it pays: a format-5 stream
# is a format-6 stream with neither; 7: format 6 with the linear weights of vertices with 2+
# parallelograms split in two classes by the parallelograms' spread (first blend value
# _LIN_SPLIT_BASE + ..., 9 coefficients), where it pays: a format-6 stream is a format-7 stream
# without the split; 8: format 7 with a third way of coding unreferenced vertices (the UNUSED_SET
# value NEAR_NORMAL: offsets in the frame of the used vertex's normal axis), where it pays: a
# format-7 stream is a format-8 stream without it; 9: format 8 with the prediction fractions
# (select value + 4 x (index in FRAC_CLASSES + 1); C: POS_FRAC_MAX), where they pay: a format-8
# stream is a format-9 stream without them; 10: format 9 with the mixed residuals' second and
# third mantissa bits in contexts (select value + 16, with mixing only; C: PMX_MANT_AT), where
# that pays: a format-9 stream is a format-10 stream without it; 11: format 10 with the recency
# inputs of the mixed residual contexts (select value + 32, with mixing only; C: PMX_R_*), where
# that pays: a format-10 stream is a format-11 stream without them, so a "g" stream decodes as
# format 11
FORMAT = 11
FORMATS = (2, 3, 4, 5, 6, 7, 8, 9, 10, 11)  # what this version decodes
STREAM = "g"  # the geometry stream of format 4 ("geom" before)
NUM_CANDIDATES = 6
BORDER, NEW, FIRST_CANDIDATE = 0, 1, 2
EXPLICIT = FIRST_CANDIDATE + NUM_CANDIDATES
_KEY = 1 << 32
NORMAL_BITS_BELOW = 2  # normals: octahedral coordinates of (bits per axis - 2) bits each
FOCUS_ORDERS = 3  # gate orders (format 5: the mode value's focus part)
FOCUS_BUCKETS = 16  # gate priorities of the focus orders
_ENCODER_FOCUS = (1, 2)  # the gate orders the encoder tries (0 was never the cheapest)
FOCUS_LARGE = 20000  # meshes with more triangles: the encoder tries focus 2 only (time)
WALK_LIMIT = 1024  # border walks of explicit references stop after this many steps
# context sets of the connectivity (64 contexts each): gate symbols (_State.symbol_set), then
SYMBOL_SETS = 8 * 8 * 4 * 3
FLIP_SET = SYMBOL_SETS  # orientation bits
REF_SET = SYMBOL_SETS + 1  # corners of triangles that start a part
WALK_SET = SYMBOL_SETS + 2  # explicit vertices: steps along the border (+ from v, - from u)
EXPLICIT_SET = SYMBOL_SETS + 3  # explicit vertices not met by the walk: counted back
PALETTE_SET = SYMBOL_SETS + 4  # which axes have a palette (bit k: axis k)
COUNT_SET = SYMBOL_SETS + 5  # values in a palette
BLEND_SET = SYMBOL_SETS + 6  # index into BLEND_WEIGHTS
LAYOUT_SET = SYMBOL_SETS + 7  # symbol codes x context layout (first in the stream)
SELECT_SET = SYMBOL_SETS + 8  # whether vertices may pick one parallelogram (0 / 1)
DUPS_SET = SYMBOL_SETS + 9  # whether border vertices carry repeat flags (0 / 1)
NORMAL_SET = SYMBOL_SETS + 10  # whether one axis is predicted in the tangent plane (format 3)
VALENCE_SET = SYMBOL_SETS + 11  # triangle counts of new vertices (valence layouts; 8 sets)
VALENCE_SETS = 8
UNUSED_SET = VALENCE_SET + VALENCE_SETS  # unreferenced vertices: how (format 3; 2: format 8)
MIRROR_SET = UNUSED_SET + 1  # mirror prediction: 0 off, else axis + 1 and the plane (format 3)
LATTICE_SET = MIRROR_SET + 1  # per palette: gaps (0) or a lattice (1, its step and first value)
CONN_SETS = LATTICE_SET + 1
VALENCE_BIAS = 6  # triangle counts are coded as count - 6 (a regular interior vertex: 0)


def _layouts() -> np.ndarray:
    """Context layouts of the gate symbols (the encoder picks the one that codes the mesh in
    the fewest bits: fine ones for large meshes, coarse ones where few symbols would spread
    over many contexts): [layout, feature code of _State.symbol_set] -> set."""
    f = np.arange(SYMBOL_SETS)
    prev, nc, tu, tv = f % 3, f // 3 % 4, f // 12 % 8, f // 96
    return np.stack(
        [
            f,  # everything
            ((tv * 4 + np.minimum(tu, 3)) * 4 + nc) * 3 + prev,  # u's triangles up to 3
            (tv * 4 + nc) * 3 + prev,  # not u's triangles
            tv * 3 + prev,  # v's triangles and the previous symbol only
        ]
    )


_LAYOUTS = _layouts()


def _valence_layouts() -> np.ndarray:
    """Context layouts of the gate symbols when every vertex's triangle count is sent as it
    appears (format 3): [layout, feature code of _State.valence_set] -> set. With the counts
    known, the triangles still to come around the gate's ends tell border, fan closing (a
    candidate) and new vertex apart almost surely."""
    f = np.arange(VALENCE_FEATURES)
    prev, ru, rv = f % 3, f // 12 % 4, f // 48
    return np.stack([f, (rv * 4 + ru) * 3 + prev])


VALENCE_FEATURES = 4 * 4 * 4 * 3
_VLAYOUTS = _valence_layouts()
NUM_LAYOUTS = len(_LAYOUTS) + len(_VLAYOUTS)  # layouts >= len(_LAYOUTS): valence layouts
_ENCODER_LAYOUTS = tuple(range(NUM_LAYOUTS))  # the layouts the encoder tries
# how gate symbols are written as integers (the encoder's pick, with the layout): as they are,
# or with "new" as 0 (zero flag: new or not), the first candidate +1, border -1, the second
# candidate +2, explicit -2, the others +3..+6 (every binary decision then carries information)
_SYMBOL_CODES = np.array([[0, 1, 2, 3, 4, 5, 6, 7, 8], [-1, 0, 1, 2, 3, 4, 5, 6, -2]])
BLEND_WEIGHTS = (0, 1, 2, 3, 4, 6)  # eighths of the neighbours' mean in the prediction (per mesh)
# scale of the residual contexts: (edge >> r) + (spread << r) for the mesh's rule r (format 5;
# sent with the first blend value, as blend + 6 r)
NUM_SCALE_RULES = 3  # what the decoder accepts
SCALE_RULES = (0, 1, 2)  # the rules the encoder tries
_ENCODER_LINEAR = None  # None: the linear prediction where it codes fewer bits (tests: 0 / 1)
_ENCODER_SPLIT = None  # None: format 7's split linear weights where they pay (tests: 0 / 1)
_ENCODER_MIX = None  # None: mixed position contexts where they code fewer bits (tests: 0 / 1)


class _State:
    """What encoder and decoder both know while the traversal runs (decoder vertex ids)."""

    def __init__(self, focus: int = 0) -> None:
        # gate order: 0 the newest first (a stack); 1 the gate whose end has the most coded
        # triangles first, 2 the one whose end has the fewest still to come (newest on ties)
        self.focus = focus
        # focus > 0: gates by bucket (see pop_gate), each a stack of (bucket, gate) entries;
        # entries whose gate was taken or whose bucket changed since are skipped
        self.buckets: list[list[tuple[int, tuple[int, int, int]]]] = [
            [] for _ in range(FOCUS_BUCKETS)
        ]
        self.live: dict[int, tuple[int, int, int]] = {}  # directed gate -> gate (focus order)
        self.edges: dict[int, int] = {}  # undirected edge -> coded triangles on it
        self.open: list[dict[int, None]] = []  # vertex -> neighbours over a border edge
        self.tris: list[int] = []  # vertex -> coded triangles around it
        self.faces: list[tuple[int, int, int]] = []
        self.gates: list[tuple[int, int, int]] = []  # (u, v, opposite) with u -> v in its face
        self.prev = 0  # class of the previous gate symbol
        self.total: list[int] = []  # vertex -> its triangle count (valence layouts), else 0

    def new_vertex(self, total: int = 0) -> int:
        self.open.append({})
        self.tris.append(0)
        self.total.append(total)
        return len(self.open) - 1

    def valence_set(self, u: int, v: int, ncand: int) -> int:
        """The gate's context when triangle counts are known (0..191): triangles still to come
        around v and around u (0..3+ each), candidates (0..3+), class of the previous symbol."""
        rv = min(max(self.total[v] - self.tris[v], 0), 3)
        ru = min(max(self.total[u] - self.tris[u], 0), 3)
        return ((rv * 4 + ru) * 4 + min(ncand, 3)) * 3 + self.prev

    def count_set(self, u: int, v: int) -> int:
        """Context set of the triangle count of a vertex new at the gate u -> v: the counts of
        u and v (their sum's distance from two regular vertices, clamped)."""
        return VALENCE_SET + min(max(self.total[u] + self.total[v] - 9, 0), VALENCE_SETS - 2)

    def pop_gate(self) -> tuple[int, int, int] | None:
        """The next gate (None: none left): focus 0 the newest; else from the first non-empty
        bucket the newest entry whose gate is live and whose bucket is current. Buckets: by the
        coded triangles around the gate's end (focus 1, most first) or by the triangles still to
        come around it (focus 2, fewest first), capped at FOCUS_BUCKETS - 1."""
        if not self.focus:
            return self.gates.pop() if self.gates else None
        live, tris, total, top = self.live, self.tris, self.total, FOCUS_BUCKETS - 1
        valence = self.focus == 2
        for b in self.buckets:
            while b:
                k, g = b.pop()
                key = g[0] * _KEY + g[1]
                if live.get(key) is not g:
                    continue
                v = g[1]
                if valence:
                    r = total[v] - tris[v]
                    r = 0 if r < 0 else (r if r < top else top)
                else:
                    r = tris[v]
                    r = top - (r if r < top else top)
                if k == r:
                    del live[key]
                    return g
        return None

    def edge_count(self, u: int, v: int) -> int:
        return self.edges.get(u * _KEY + v if u < v else v * _KEY + u, 0)

    def candidates(self, u: int, v: int) -> list[int]:
        out: list[int] = []
        for x in (v, u):
            for y in reversed(self.open[x]):
                if y != u and y != v and y not in out:
                    out.append(y)
                    if len(out) == NUM_CANDIDATES:
                        return out
        return out

    def symbol_set(self, u: int, v: int, ncand: int) -> int:
        """What the gate u -> v's context is made of, as one number (0..767): coded triangles
        around v and around u (0..7+ each), candidates (0..3+), class of the previous gate
        symbol. ``_LAYOUTS`` maps it onto the context set of the mesh's layout."""
        tv, tu = min(self.tris[v], 7), min(self.tris[u], 7)
        return ((tv * 8 + tu) * 4 + min(ncand, 3)) * 3 + self.prev

    def walk(self, a: int, b: int, target: int = -1, steps: int = 0) -> int:
        """Along the border of the coded part from ``a`` (first step not back to ``b``): the
        number of steps to ``target`` (0: not met within WALK_LIMIT steps or before the walk
        returns to ``a``), or with ``steps`` > 0 the vertex reached after that many (-1: none)."""
        opens = self.open
        prev, cur = b, a
        for d in range(1, (steps or WALK_LIMIT) + 1):
            nxt = next((y for y in reversed(opens[cur]) if y != prev), -1)
            if nxt < 0:
                return -1 if steps else 0
            prev, cur = cur, nxt
            if steps:
                continue
            if cur == target:
                return d
            if cur == a:
                return 0
        return cur if steps else 0

    def add_face(self, a: int, b: int, c: int, entry: tuple[int, int] | None) -> None:
        self.faces.append((a, b, c))
        tris = self.tris
        tris[a] += 1
        if b != a:
            tris[b] += 1
        if c != a and c != b:
            tris[c] += 1
        if a in (b, c) or b == c:
            return
        edges, opens = self.edges, self.open
        for x, y in ((a, b), (b, c), (c, a)):
            k = x * _KEY + y if x < y else y * _KEY + x
            n = edges.get(k, 0) + 1
            edges[k] = n
            if n == 1:
                opens[x][y] = None
                opens[y][x] = None
            elif n == 2:
                opens[x].pop(y, None)
                opens[y].pop(x, None)
        if entry is None:
            new = [(c, a, b), (b, c, a), (a, b, c)]
        else:  # the triangle (x, y, w) entered over x -> y: y -> w is taken next
            x, y, w = (
                (a, b, c) if entry == (a, b) else ((b, c, a) if entry == (b, c) else (c, a, b))
            )
            new = [(y, w, x), (w, x, y)]
        if not self.focus:
            self.gates += new
            return
        live, buckets, total, top = self.live, self.buckets, self.total, FOCUS_BUCKETS - 1
        valence = self.focus == 2
        ks = []
        for x in (a, b, c):  # their triangle counts changed: the gates ending there move
            if valence:
                k = total[x] - tris[x]
                k = 0 if k < 0 else (k if k < top else top)
            else:
                k = tris[x]
                k = top - (k if k < top else top)
            ks.append(k)
            bk = buckets[k]
            for y in opens[x]:
                g = live.get(y * _KEY + x)
                if g is not None:
                    bk.append((k, g))
        for g in new:  # then the new gates, the one to take next last
            k = ks[0] if g[1] == a else (ks[1] if g[1] == b else ks[2])
            live[g[0] * _KEY + g[1]] = g
            buckets[k].append((k, g))


class _EdgeMap:
    """Original triangles by undirected edge (non-degenerate triangles only)."""

    def __init__(self, faces: np.ndarray):
        f = faces
        good = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])
        ids = np.flatnonzero(good)
        e = np.concatenate([f[ids][:, [0, 1]], f[ids][:, [1, 2]], f[ids][:, [2, 0]]])
        fid = np.concatenate([ids, ids, ids])
        keys = np.minimum(e[:, 0], e[:, 1]) * _KEY + np.maximum(e[:, 0], e[:, 1])
        order = np.argsort(keys, kind="stable")
        keys, self.fid = keys[order], fid[order].tolist()
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        ends = np.r_[starts[1:], len(keys)]
        self.range = dict(
            zip(
                keys[starts].tolist(), zip(starts.tolist(), ends.tolist(), strict=True), strict=True
            )
        )

    def faces(self, u: int, v: int) -> list[int]:
        k = u * _KEY + v if u < v else v * _KEY + u
        r = self.range.get(k)
        return [] if r is None else self.fid[r[0] : r[1]]


def _traverse_encode(faces: np.ndarray, nverts: int):
    """Encoder traversal: the coded (value, set) sequence in the decoder's order, the new vertex
    order and, for every output triangle, (original triangle, rotation), under the gate order
    that codes the mesh in the fewest bits (format 5)."""
    best = None
    for focus in _ENCODER_FOCUS if len(faces) <= FOCUS_LARGE else (2,):
        out = _traverse_encode_order(faces, nverts, focus)
        if best is None or out[0] < best[0]:
            best = out
    return best[1:]


def _traverse_encode_order(faces: np.ndarray, nverts: int, focus: int):
    """(ideal bits, then as ``_traverse_encode``) under gate order ``focus``."""
    emap = _EdgeMap(faces)
    flist = faces.tolist()
    coded = bytearray(len(flist))
    new_of = [-1] * nverts
    orig_of: list[int] = []
    st = _State(focus)
    vals: list[int] = []
    sets: list[int] = []
    sym_pos: list[int] = []  # where the gate symbols are in vals / sets
    vfeat: list[int] = []  # their valence-layout features
    is_count: list[int] = []  # where triangle counts are (sent with the valence layouts only)
    # triangle count of every vertex: the triangles it is a corner of (each once)
    tcount = np.bincount(faces.reshape(-1), minlength=nverts)
    rep = (faces[:, 0] == faces[:, 1]) | (faces[:, 0] == faces[:, 2])
    np.subtract.at(tcount, faces[rep, 0], 1)
    np.subtract.at(tcount, faces[faces[:, 1] == faces[:, 2], 1], 1)
    tcount = tcount.tolist()
    placement: list[tuple[int, int]] = []  # (original face, rotation)
    next_start = 0
    total = len(flist)
    while len(st.faces) < total:
        gate = st.pop_gate()
        if gate is None:
            while coded[next_start]:
                next_start += 1
            f = next_start
            corners = []
            for ov in flist[f]:
                if new_of[ov] < 0:
                    vals.append(0)
                    sets.append(REF_SET)
                    new_of[ov] = st.new_vertex(tcount[ov])
                    orig_of.append(ov)
                    is_count.append(len(vals))
                    vals.append(tcount[ov] - VALENCE_BIAS)
                    sets.append(VALENCE_SET + VALENCE_SETS - 1)
                else:
                    vals.append(len(orig_of) - new_of[ov])
                    sets.append(REF_SET)
                corners.append(new_of[ov])
            coded[f] = 1
            placement.append((f, 0))
            st.add_face(*corners, None)
            continue
        u, v, _ = gate
        if st.edge_count(u, v) != 1:
            continue
        ou, ov = orig_of[u], orig_of[v]
        f = next((x for x in emap.faces(ou, ov) if not coded[x]), -1)
        cands = st.candidates(u, v)
        sym_pos.append(len(sets))
        sets.append(st.symbol_set(u, v, len(cands)))
        vfeat.append(st.valence_set(u, v, len(cands)))
        if f < 0:
            vals.append(BORDER)
            st.prev = 0
            continue
        tri = flist[f]
        i = tri.index(ou)
        consistent = tri[(i + 2) % 3] == ov  # the triangle runs v -> u
        if consistent:
            ow, rot = tri[(i + 1) % 3], (i + 2) % 3  # output (v, u, w) = tri rotated
        else:
            ow, rot = tri[(i + 2) % 3], i  # output (u, v, w)
        extra: list[tuple[int, int]] = []
        if new_of[ow] < 0:
            vals.append(NEW)
            extra.append((tcount[ow] - VALENCE_BIAS, st.count_set(u, v)))
            new_of[ow] = st.new_vertex(tcount[ow])
            orig_of.append(ow)
            w = new_of[ow]
        else:
            w = new_of[ow]
            if w in cands:
                vals.append(FIRST_CANDIDATE + cands.index(w))
            else:
                vals.append(EXPLICIT)
                d = st.walk(v, u, w)
                if not d:
                    d = -st.walk(u, v, w)
                extra.append((d, WALK_SET))
                if not d:
                    extra.append((len(orig_of) - w, EXPLICIT_SET))
        st.prev = 1 if vals[-1] == NEW else 2
        vals.append(0 if consistent else 1)
        sets.append(FLIP_SET)
        for x, y in extra:
            if y >= VALENCE_SET:
                is_count.append(len(vals))
            vals.append(x)
            sets.append(y)
        coded[f] = 1
        placement.append((f, rot))
        if consistent:
            st.add_face(v, u, w, (v, u))
        else:
            st.add_face(u, v, w, (u, v))
    # the symbol codes and context layout that code these symbols in the fewest bits, sent first;
    # the valence layouts pay for the triangle counts too
    vals_arr, sets_arr = np.array(vals, np.int64), np.array(sets, np.int64)
    pos = np.array(sym_pos, np.int64)
    counts = np.array(is_count, np.int64)
    count_bits = ideal_int_bits(
        vals_arr[counts], sets_arr[counts], states(CONN_SETS * INT_CONTEXTS)
    )
    features = (sets_arr[pos], np.array(vfeat, np.int64))
    best = (np.inf, 0)
    for m, codes in enumerate(_SYMBOL_CODES):
        coded = codes[vals_arr[pos]]
        for i, lay in enumerate([*_LAYOUTS, *_VLAYOUTS]):
            if i not in _ENCODER_LAYOUTS:
                continue
            valence = i >= len(_LAYOUTS)
            if focus == 2 and not valence:
                continue  # that order needs the triangle counts
            cost = ideal_int_bits(
                coded, lay[features[valence]], states(SYMBOL_SETS * INT_CONTEXTS)
            ) + (count_bits if valence else 0.0)
            if cost < best[0]:
                best = (cost, m * NUM_LAYOUTS + i)
    mode = best[1]
    layout = mode % NUM_LAYOUTS
    vals_arr[pos] = _SYMBOL_CODES[mode // NUM_LAYOUTS][vals_arr[pos]]
    if layout < len(_LAYOUTS):
        sets_arr[pos] = _LAYOUTS[layout][sets_arr[pos]]
        keep = np.ones(len(vals_arr), bool)
        keep[counts] = False
        vals_arr, sets_arr = vals_arr[keep], sets_arr[keep]
    else:
        sets_arr[pos] = _VLAYOUTS[layout - len(_LAYOUTS)][features[1]]
    bits = ideal_int_bits(vals_arr, sets_arr, states(CONN_SETS * INT_CONTEXTS))
    vals = [focus * NUM_LAYOUTS * len(_SYMBOL_CODES) + mode] + vals_arr.tolist()
    sets = [LAYOUT_SET] + sets_arr.tolist()
    return bits, vals, sets, np.array(orig_of), st.faces, placement


def _traverse_decode(
    dec: AdaptiveDecoder, st_conn: np.ndarray, nfaces: int, nverts: int, fmt: int = FORMAT
):
    """Decodes the connectivity while replaying the traversal (its state gives the contexts)."""
    step = dec.code_step
    mode = step(st_conn, LAYOUT_SET)
    nlay = NUM_LAYOUTS if fmt >= 3 else len(_LAYOUTS)  # format 2: no valence layouts
    norders = FOCUS_ORDERS if fmt >= 4 else 1  # format 5 (a "g" stream): the gate order too
    if not 0 <= mode < nlay * len(_SYMBOL_CODES) * norders:
        raise CodecError("meshtrav: corrupt stream (bad context layout)")
    focus, mode = divmod(mode, nlay * len(_SYMBOL_CODES))
    valence = mode % nlay >= len(_LAYOUTS)
    if focus == 2 and not valence:
        raise CodecError("meshtrav: corrupt stream (gate order without triangle counts)")
    st = _State(focus)
    if valence:
        lay = _VLAYOUTS[mode % nlay - len(_LAYOUTS)].tolist()
    else:
        lay = _LAYOUTS[mode % nlay].tolist()
    features = st.valence_set if valence else st.symbol_set
    codes = _SYMBOL_CODES[mode // nlay]
    symbol_of = {int(c): k for k, c in enumerate(codes)}
    noflip = int(codes[BORDER])

    def count(cset: int) -> int:
        t = step(st_conn, cset) + VALENCE_BIAS if valence else 0
        if valence and not 1 <= t <= nfaces:
            raise CodecError("meshtrav: corrupt stream (bad triangle count)")
        return t

    while len(st.faces) < nfaces:
        gate = st.pop_gate()
        if gate is None:
            corners = []
            for _ in range(3):
                r = step(st_conn, REF_SET)
                if r == 0:
                    corners.append(st.new_vertex(count(VALENCE_SET + VALENCE_SETS - 1)))
                elif 1 <= r <= len(st.open):
                    corners.append(len(st.open) - r)
                else:
                    raise CodecError("meshtrav: corrupt stream (bad vertex reference)")
            st.add_face(*corners, None)
            if len(st.open) > nverts:
                raise CodecError("meshtrav: corrupt stream (more vertices than the header says)")
            continue
        u, v, _ = gate
        if st.edge_count(u, v) != 1:
            continue
        cands = st.candidates(u, v)
        code = step(st_conn, lay[features(u, v, len(cands))], FLIP_SET, noflip)
        s, flip = symbol_of.get(code >> 1, -1), code & 1
        if s == BORDER:
            st.prev = 0
            continue
        if s == NEW:
            w = st.new_vertex(count(st.count_set(u, v)))
        elif FIRST_CANDIDATE <= s < EXPLICIT:
            if s - FIRST_CANDIDATE >= len(cands):
                raise CodecError("meshtrav: corrupt stream (no such candidate)")
            w = cands[s - FIRST_CANDIDATE]
        elif s == EXPLICIT:
            d = step(st_conn, WALK_SET)
            if d > 0 and d <= WALK_LIMIT:
                w = st.walk(v, u, steps=d)
            elif d < 0 and -d <= WALK_LIMIT:
                w = st.walk(u, v, steps=-d)
            elif d == 0:
                r = step(st_conn, EXPLICIT_SET)
                if not 1 <= r <= len(st.open):
                    raise CodecError("meshtrav: corrupt stream (bad vertex reference)")
                w = len(st.open) - r
            else:
                w = -1
            if w < 0 or w in (u, v):
                raise CodecError("meshtrav: corrupt stream (bad border walk)")
        else:
            raise CodecError("meshtrav: corrupt stream (unknown symbol)")
        st.prev = 1 if s == NEW else 2
        if flip:
            st.add_face(u, v, w, (u, v))
        else:
            st.add_face(v, u, w, (v, u))
        if len(st.open) > nverts:
            raise CodecError("meshtrav: corrupt stream (more vertices than the header says)")
    return np.array(st.faces, dtype=np.int64).reshape(-1, 3), len(st.open)


_NEAR_MARKOV = 4  # unreferenced vertices near a used one: reference steps, markov classes
_NEAR_STATES = (_NEAR_MARKOV + 3) * INT_CONTEXTS  # steps (markov 4), then one set per axis
NEAR_PLAIN, NEAR_OFFSETS, NEAR_NORMAL = 0, 1, 2  # how unreferenced vertices are coded (modes)
_ENCODER_NEAR = None  # None: the cheapest of the modes; tests force one (0, 1, 2) where it fits


def _near_unused(qn: np.ndarray, nused: int):
    """Unreferenced vertices (rows nused..) as offsets from a used vertex near each (the
    encoder's pick: the nearest, Euclidean): (their new order, the steps between the sorted
    reference numbers, the offsets). Scanned surfaces keep such vertices (points the
    triangulation left out) on the surface, close to a used vertex."""
    from scipy.spatial import cKDTree

    rest = qn[nused:]
    ref = cKDTree(qn[:nused]).query(rest)[1].astype(np.int64)
    order = np.argsort(ref, kind="stable")
    ref = ref[order]
    return order, np.diff(np.r_[0, ref]), rest[order] - qn[ref]


def _anchor_normals(used: np.ndarray, faces: np.ndarray, top: int):
    """(axis, N) of every used vertex for NEAR_NORMAL: N the sum of the normals (b - a) x
    (c - a) of all its triangles as they are listed (each shifted down by 2 bits - 27 first,
    then the sum down to at most 20 bits, arithmetic shifts), the axis that of its largest
    component (the first on a tie; -1 where N is 0), N turned so that N[axis] > 0. Integers
    only: the decoder has the same triangles and used positions."""
    nu = len(used)
    nrm = np.zeros((nu, 3), np.int64)
    axis = np.full(nu, -1, np.int64)
    f = faces[(faces < nu).all(axis=1)] if len(faces) else faces
    if not len(f):
        return axis, nrm
    p = used.astype(np.int64)
    a, b, c = p[f[:, 0]], p[f[:, 1]], p[f[:, 2]]
    cr = np.cross(b - a, c - a) >> max(0, 2 * int(top).bit_length() - 27)
    for k in range(3):
        np.add.at(nrm, f[:, k], cr)
    sh = np.maximum(_bit_length(np.abs(nrm).max(axis=1)) - 20, 0)
    nrm = nrm >> sh[:, None]
    n = np.argmax(np.abs(nrm), axis=1)
    big = nrm[np.arange(nu), n]
    nrm = np.where((big < 0)[:, None], -nrm, nrm)
    ok = big != 0
    axis[ok] = n[ok]
    return axis, nrm


def _normal_plane(axis, nrm, t0, t1, top: int) -> np.ndarray:
    """The offset along ``axis`` that puts a point on the plane through its anchor with normal
    ``nrm``, from its offsets t0, t1 along the next two axes: round(-(N1 t0 + N2 t1) / N0),
    clipped to +-top (0 where axis is -1)."""
    rows = np.arange(len(axis))
    n = np.maximum(axis, 0)
    nn = np.maximum(nrm[rows, n], 1)
    num = -(nrm[rows, (n + 1) % 3] * t0 + nrm[rows, (n + 2) % 3] * t1)
    return np.where(axis >= 0, np.clip((2 * num + nn) // (2 * nn), -top, top), 0)


def _near_normal_values(offsets, ref, axis, nrm, top: int) -> np.ndarray:
    """NEAR_NORMAL's values (n x 3, coding order): where the anchor has a normal axis n, the
    offsets along n + 1 and n + 2 (mod 3), then the offset along n less _normal_plane's
    prediction; else the offsets along x, y, z."""
    ax = axis[ref]
    n = np.maximum(ax, 0)
    rows = np.arange(len(ref))
    t0, t1 = offsets[rows, (n + 1) % 3], offsets[rows, (n + 2) % 3]
    last = offsets[rows, n] - _normal_plane(ax, nrm[ref], t0, t1, top)
    out = np.stack([t0, t1, last], axis=1)
    return np.where((ax >= 0)[:, None], out, offsets)


def _code_near(coder, steps, offsets, st: np.ndarray) -> None:
    """Writes (or with ideal_int_bits' signature, costs) the near-mode stream part (the offsets
    as NEAR_OFFSETS sends them, or NEAR_NORMAL's values)."""
    coder(steps, np.zeros(len(steps), np.int32), st, _NEAR_MARKOV)
    coder(offsets.reshape(-1), np.tile(np.arange(3) + _NEAR_MARKOV, len(offsets)), st, 1)


def _decode_near(
    dec: AdaptiveDecoder, used: np.ndarray, n: int, top: int, mode: int = NEAR_OFFSETS, faces=None
) -> np.ndarray:
    """The n unreferenced vertices of near mode, from the used ones' positions (n x 3)."""
    st = states(_NEAR_STATES)
    steps = dec.code_ints(np.zeros(n, np.int32), st, _NEAR_MARKOV).astype(np.int64)
    ref = np.cumsum(steps)
    if steps.min() < 0 or ref[-1] >= len(used):
        raise CodecError("meshtrav: corrupt stream (bad reference of an unreferenced vertex)")
    sets = np.tile(np.arange(3) + _NEAR_MARKOV, n)
    vals = dec.code_ints(sets, st, 1).reshape(n, 3).astype(np.int64)
    if mode == NEAR_NORMAL:  # back from (t0, t1, residual along the normal axis)
        axis, nrm = _anchor_normals(used, faces, top)
        ax = axis[ref]
        k = np.maximum(ax, 0)
        rows = np.arange(n)
        t0, t1 = vals[:, 0], vals[:, 1]
        last = vals[:, 2] + _normal_plane(ax, nrm[ref], t0, t1, top)
        offs = np.empty_like(vals)
        offs[rows, (k + 1) % 3], offs[rows, (k + 2) % 3], offs[rows, k] = t0, t1, last
        vals = np.where((ax >= 0)[:, None], offs, vals)
    out = used[ref].astype(np.int64) + vals
    if out.min() < 0 or out.max() > top:
        raise CodecError("meshtrav: corrupt stream (unreferenced vertex off the grid)")
    return out.astype(np.int32)


def _append_unused(orig_of: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Vertices no triangle uses go last, in Morton order of their quantised position (ties in
    their original order), so that the previous one predicts each well."""
    used = np.zeros(len(q), bool)
    used[orig_of] = True
    rest = np.flatnonzero(~used)
    rest = rest[np.argsort(g.morton(q[rest]), kind="stable")]
    return np.concatenate([orig_of, rest]).astype(np.int64)


# ----------------------------------------------------------------------------- prediction


def _position_order(faces: np.ndarray, nused: int, nverts: int) -> np.ndarray:
    """The order in which positions are coded (connectivity only, so the decoder finds it too):
    greedily the vertex with the most triangles whose two other corners are already coded (the
    most parallelograms), then the most coded neighbours, then the lowest number; a new part
    starts at its lowest-numbered vertex. Unreferenced vertices (numbers >= nused) stay last."""
    f = faces[
        (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    ]
    rots = np.concatenate([f, f[:, [1, 2, 0]], f[:, [2, 0, 1]]])
    rots = rots[np.argsort(rots[:, 0], kind="stable")]
    starts = np.searchsorted(rots[:, 0], np.arange(nused + 1))
    order = position_order(starts, rots[:, 1:])
    return np.concatenate([order, np.arange(nused, nverts)]).astype(np.int64)


def _predictors(faces: np.ndarray, nverts: int):
    """Parallelograms (CSR by vertex) and fallback references, from the decoded connectivity."""
    f = faces[
        (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    ]
    rots = np.concatenate([f, f[:, [1, 2, 0]], f[:, [2, 0, 1]]])  # (w, a, b)
    # half-edge table: edge (a, b) -> opposite z
    ekey = np.minimum(rots[:, 1], rots[:, 2]) * _KEY + np.maximum(rots[:, 1], rots[:, 2])
    order = np.argsort(ekey, kind="stable")
    skey, sopp = ekey[order], rots[order, 0]
    q = rots[(rots[:, 1] < rots[:, 0]) & (rots[:, 2] < rots[:, 0])]
    qkey = np.minimum(q[:, 1], q[:, 2]) * _KEY + np.maximum(q[:, 1], q[:, 2])
    lo = np.searchsorted(skey, qkey, side="left")
    hi = np.searchsorted(skey, qkey, side="right")
    cnt = hi - lo
    qi = np.repeat(np.arange(len(q)), cnt)
    ent = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt) + np.repeat(lo, cnt)
    z = sopp[ent]
    w = q[qi, 0]
    keep = z < w
    tri = np.stack([w, q[qi, 1], q[qi, 2], z], axis=1)[keep]
    tri = tri[np.lexsort((tri[:, 3], tri[:, 2], tri[:, 1], tri[:, 0]))]
    tri = np.unique(tri, axis=0) if len(tri) else tri.reshape(0, 4)
    starts = np.searchsorted(tri[:, 0], np.arange(nverts + 1)).astype(np.int32)
    # fallback: the newest earlier neighbour, else the previous vertex
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]], faces[:, [0, 1]]])
    e = np.concatenate([e, e[:, ::-1]])
    e = e[e[:, 1] < e[:, 0]]
    refs = np.arange(nverts, dtype=np.int64) - 1
    nb = np.full(nverts, -1, np.int64)
    np.maximum.at(nb, e[:, 0], e[:, 1])
    refs = np.where(nb >= 0, nb, refs)
    count = np.diff(starts)
    kind = np.where(count >= 2, 0, np.where(count == 1, 1, np.where(nb >= 0, 2, 3)))
    return starts, np.ascontiguousarray(tri[:, 1:], np.int32), refs.astype(np.int32), kind


def _earlier_neighbours(faces: np.ndarray, nv: int) -> tuple[np.ndarray, np.ndarray]:
    """(CSR starts, neighbours) of every vertex's lower-numbered neighbours over the edges of
    non-degenerate triangles, each neighbour once, ascending."""
    f = faces[
        (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    ]
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    e = np.concatenate([e, e[:, ::-1]])
    e = e[e[:, 1] < e[:, 0]]
    e = np.unique(e, axis=0) if len(e) else e.reshape(0, 2)
    starts = np.searchsorted(e[:, 0], np.arange(nv + 1))
    return starts.astype(np.int32), e[:, 1].astype(np.int32)


def _predict(
    q: np.ndarray, starts, tri, refs, top: int, nb=None, weight=(0, 0), lin=None
) -> np.ndarray:
    """The decoder's predictions for known positions ``q`` (V x 3 int64), vectorised; blended
    with the mean of the earlier neighbours ``nb`` by ``weight`` (eighths: for vertices with 2+
    parallelograms, for those with one), or (``lin`` = (A2, B2, G2, A1, B1, G1), format 6)
    linear in the edges' midpoints, the opposite corners, the neighbours and their neighbours
    (_linear)."""
    nv = len(q)
    pred = np.zeros((nv, 3), np.int64)
    count = np.diff(starts).astype(np.int64)
    has = count > 0
    if len(tri):
        para = q[tri[:, 0]] + q[tri[:, 1]] - q[tri[:, 2]]
        owner = np.repeat(np.arange(nv), count)
        sums = np.zeros((nv, 3), np.int64)
        np.add.at(sums, owner, para)
        pred[has] = (2 * sums[has] + count[has, None]) // (2 * count[has, None])
    if any(weight) and nb is not None:
        nbs, nbr = nb
        m = np.diff(nbs).astype(np.int64)
        csum = np.zeros((nv, 3), np.int64)
        np.add.at(csum, np.repeat(np.arange(nv), m), q[nbr])
        sel = has & (m >= 2)
        t = np.where(count[sel] >= 2, weight[0], weight[1])[:, None]
        mean = (2 * csum[sel] + m[sel, None]) // (2 * m[sel, None])
        pred[sel] = ((8 - t) * pred[sel] + t * mean + 4) // 8
    if lin is not None and nb is not None and len(tri):
        sel, value = _linear(q, starts, tri, nb, lin)
        pred[sel] = value
    fb = (count == 0) & (refs >= 0)
    pred[fb] = q[refs[fb]]
    return np.clip(pred, 0, top)


LIN_MAX = 64  # linear prediction: at most this many parallelograms and neighbours (C: LIN_MAX)
LIN_A, LIN_B, LIN_G = (-128, 128), (-128, 256), (-128, 128)  # coefficient ranges (64ths)
LIN_M2_MAX = 4096  # the second-ring term only with 1..this many second-ring entries (C too)
_LIN_BASE = len(BLEND_WEIGHTS) * NUM_SCALE_RULES  # first blend value: this + rule = linear
# format 7: the weights of vertices with 2+ parallelograms split in two classes by the spread of
# the parallelograms against the edge, bitlen(spread) - bitlen(edge) >= T (T the encoder's pick
# of LIN_SPLITS); first blend value _LIN_SPLIT_BASE + index of T * NUM_SCALE_RULES + rule, then
# 9 coefficients (A2 B2 G2 for the low class, for the high class, A1 B1 G1)
LIN_SPLITS = (-2, -1)
_LIN_SPLIT_BASE = _LIN_BASE + NUM_SCALE_RULES


def _linear_terms(q: np.ndarray, starts, tri, nb):
    """(vertices it applies to, n, m, sum(a + b), sum(o), sum(neighbours), sum(second ring),
    its count M) of _linear."""
    nv = len(q)
    count = np.diff(starts).astype(np.int64)
    nbs, nbr = nb
    m = np.diff(nbs).astype(np.int64)
    owner = np.repeat(np.arange(nv), count)
    se = np.zeros((nv, 3), np.int64)
    so = np.zeros((nv, 3), np.int64)
    sc = np.zeros((nv, 3), np.int64)
    np.add.at(se, owner, q[tri[:, 0]] + q[tri[:, 1]])
    np.add.at(so, owner, q[tri[:, 2]])
    own = np.repeat(np.arange(nv), m)
    np.add.at(sc, own, q[nbr])
    s2 = np.zeros((nv, 3), np.int64)
    np.add.at(s2, own, sc[nbr])  # sc of a neighbour: the sum of its own earlier neighbours
    m2 = np.zeros(nv, np.int64)
    np.add.at(m2, own, m[nbr])
    sel = (count > 0) & (count <= LIN_MAX) & (m >= 2) & (m <= LIN_MAX)
    return sel, count, m, se, so, sc, s2, m2


def _linear(q: np.ndarray, starts, tri, nb, lin, terms=None):
    """(vertices, their predictions) of the linear prediction (_linear_parts)."""
    sel, num, den = _linear_parts(q, starts, tri, nb, lin, terms)
    return sel, (2 * num + den) // (2 * den)


def _linear_parts(q: np.ndarray, starts, tri, nb, lin, terms=None):
    """(vertices, numerators, denominators) of the linear prediction (the C file's LIN_ block),
    floor((2 num + den) / (2 den)) per axis:
    E + A / 64 (E - O) + B / 64 (C - E) + G / 64 (C - R) per axis, E the mean of the
    parallelograms' edge midpoints, O of their opposite corners, C of the earlier neighbours, R
    of the neighbours' own earlier neighbours (left out where there are none or more than
    LIN_M2_MAX); (A, B, G) = lin[0:3] for vertices with 2+ parallelograms, lin[3:6] for those
    with one."""
    sel, n, m, se, so, sc, s2, m2 = _linear_terms(q, starts, tri, nb) if terms is None else terms
    n, m = n[sel, None], m[sel, None]
    ring = (m2[sel, None] >= 1) & (m2[sel, None] <= LIN_M2_MAX)
    m2 = np.where(ring, m2[sel, None], 1)
    if len(lin) == 10:  # format 7: two classes of vertices with 2+ parallelograms
        high = (_spread_excess(q, starts, tri)[sel] >= lin[9])[:, None]
        lin = [np.where(high, lin[3 + i], lin[i]) for i in range(3)] + list(lin[6:9])
    a = np.where(n >= 2, lin[0], lin[3])
    b = np.where(n >= 2, lin[1], lin[4])
    c = np.where(ring, np.where(n >= 2, lin[2], lin[5]), 0)
    s2 = np.where(ring, s2[sel], 0)
    num = (
        (64 + a - b) * se[sel] * m - 2 * a * so[sel] * m + 2 * (b + c) * sc[sel] * n
    ) * m2 - 2 * c * s2 * n * m
    den = 128 * n * m * m2
    return sel, num, np.broadcast_to(den, num.shape)


def _spread_excess(q: np.ndarray, starts, tri) -> np.ndarray:
    """bitlen(spread) - bitlen(edge) per vertex (0 without parallelograms), spread and edge as
    in _position_sets: the class key of format 7's linear weights."""
    out = np.zeros(len(q), np.int64)
    if len(tri):
        has, spread, edge = _spread_and_edge(q, starts, tri)
        out[has] = _bit_length(spread) - _bit_length(edge)
    return out


def _spread_and_edge(q: np.ndarray, starts, tri) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertices with parallelograms, their predictions' spread, the first one's edge length):
    spread = the L1 extent of the bounding box of a vertex's parallelogram predictions, edge =
    the L1 length of its first parallelogram's shared edge (tri non-empty)."""
    nv = len(q)
    count = np.diff(starts).astype(np.int64)
    has = count > 0
    para = q[tri[:, 0]] + q[tri[:, 1]] - q[tri[:, 2]]
    owner = np.repeat(np.arange(nv), count)
    hi = np.full((nv, 3), np.iinfo(np.int64).min)
    lo = np.full((nv, 3), np.iinfo(np.int64).max)
    np.maximum.at(hi, owner, para)
    np.minimum.at(lo, owner, para)
    first = tri[starts[:-1][has]]
    edge = np.abs(q[first[:, 0]] - q[first[:, 1]]).sum(axis=1)
    return has, (hi[has] - lo[has]).sum(axis=1), edge


def _fit_linear(q: np.ndarray, rows: np.ndarray, terms, ring: bool = True) -> tuple[int, int, int]:
    """(A, B, G) in 64ths that fit the positions of ``rows`` best (least absolute error, by
    iteratively reweighted least squares; the encoder's estimate); G = 0 without ``ring``."""
    sel, n, m, se, so, sc, s2, m2 = terms
    r = rows & sel & (m2 >= 1) & (m2 <= LIN_M2_MAX)
    if r.sum() < 8:
        return 64, 0, 0
    e = se[r] / (2.0 * n[r, None])
    o = so[r] / n[r, None]
    c = sc[r] / m[r, None]
    r2 = s2[r] / m2[r, None]
    y = (q[r] - e).reshape(-1)
    x = np.stack([(e - o).reshape(-1), (c - e).reshape(-1), (c - r2).reshape(-1)], axis=1)
    if not ring:
        x = x[:, :2]
    coef = np.linalg.lstsq(x, y, rcond=None)[0]
    for _ in range(8):
        wt = 1.0 / np.sqrt(np.maximum(np.abs(y - x @ coef), 1.0))
        coef = np.linalg.lstsq(x * wt[:, None], y * wt, rcond=None)[0]
    if not np.isfinite(coef).all():
        return 64, 0, 0
    return (
        int(np.clip(np.rint(64 * coef[0]), *LIN_A)),
        int(np.clip(np.rint(64 * coef[1]), *LIN_B)),
        int(np.clip(np.rint(64 * coef[2]), *LIN_G)) if ring else 0,
    )


def _linear_split(qn, graph, top, rows, terms, ab, sets, cost):
    """(coefficients of the low and the high class and the threshold, (A2 B2 G2) * 2 + (T,);
    the ideal bits of ``rows``' residuals) of format 7's split of the vertices with 2+
    parallelograms, the best over LIN_SPLITS with each class' weights fitted to it; (None,
    ``cost``) where no split saves the 3 more coefficients' bits over ``ab``'s ``cost``."""
    starts, tri, prefs, nb = graph
    excess = _spread_excess(qn, starts, tri)
    preds = {ab: _predict(qn, starts, tri, prefs, top, nb, (0, 0), ab + ab)}

    def pred_of(c):  # _predict's, but for the linear part, from the terms already summed
        if c not in preds:
            sel, value = _linear(qn, starts, tri, nb, c + c, terms)
            preds[c] = preds[ab].copy()
            preds[c][sel] = np.clip(value, 0, top)
        return preds[c]

    def bits(pred, part):
        return _ideal_bits((qn - pred)[part].reshape(-1), sets[part].reshape(-1), _POS_STATES)

    best = (np.inf if _ENCODER_SPLIT else cost - 32, None)
    for split in LIN_SPLITS:
        high = excess >= split
        chosen = []
        for part in (rows & ~high, rows & high):
            if part.sum() < 8:
                chosen.append(ab)
                continue
            fits = [_fit_linear(qn, part, terms), _fit_linear(qn, part, terms, ring=False)]
            chosen.append(min((bits(pred_of(c), part), c) for c in dict.fromkeys([*fits, ab]))[1])
        pred = np.where(high[:, None], pred_of(chosen[1]), pred_of(chosen[0]))
        c = bits(pred, rows)
        if c < best[0]:
            best = (c, (*chosen[0], *chosen[1], split))
    return (best[1], best[0]) if best[1] is not None else (None, cost)


def _linear_options(q: np.ndarray, rows: np.ndarray, terms, t: int) -> list[tuple[int, ...]]:
    """The coefficients the encoder tries for ``rows``: fitted with and without the second-ring
    term, and those of the blend t."""
    fits = [_fit_linear(q, rows, terms), _fit_linear(q, rows, terms, ring=False)]
    return list(dict.fromkeys([*fits, (64 - 8 * t, 8 * t, 0)]))


def _bit_length(x: np.ndarray) -> np.ndarray:
    """Bit length of non-negative int64 values below 2^53 (0 for 0), exactly."""
    return np.where(x > 0, np.frexp(x.astype(np.float64))[1], 0).astype(np.int64)


def _position_sets(q: np.ndarray, starts, tri, kind, rule: int = 0) -> np.ndarray:
    """The integer set of every residual (V*3), as the decoder's C loop computes it; the scale
    is (edge >> rule) + (spread << rule) (``rule`` > 0: format 5)."""
    scale = np.zeros(len(q), np.int64)
    if len(tri):
        has, spread, edge = _spread_and_edge(q, starts, tri)
        scale[has] = (edge >> rule) + (spread << rule)
    cls = np.minimum(_bit_length(scale), POSITION_SCALES - 1)
    sets = (kind.astype(np.int64) * POSITION_SCALES + cls)[:, None] * 3 + np.arange(3)[None, :]
    return sets.reshape(-1).astype(np.int32)


_POS_MARKOV = 1
_PALETTE_SHIFT = POSITION_KINDS * POSITION_SCALES * 3  # sets of palette axes come after these
_OPT_BASE = 2 * _PALETTE_SHIFT  # sets of the parallelogram choices (24 of them)
_DUP_BASE = _OPT_BASE + 24  # sets of the repeat flags (2: after a 0 / a 1)
_NRM_BASE = _DUP_BASE + 2  # sets of the normal axis' residuals (kind x scale)
_MIR_BASE = _NRM_BASE + POSITION_KINDS * POSITION_SCALES  # mirror flags (2: after a 0 / a 1)
_MIR_SETS = (3 * POSITION_SCALES + POSITION_SCALES - 1) * 3  # + axis: kind 3 at scale 15
_POS_STATES = (_MIR_BASE + 2) * INT_CONTEXTS  # (markov 1)
_POS_SETS = _POS_STATES // INT_CONTEXTS  # C: POS_SETS_BASE
# format 9: residuals of linearly predicted vertices in sets moved by (1 + class of the prediction's
# rounding) * _POS_SETS, F classes (the encoder's pick of FRAC_CLASSES; C: POS_FRAC_MAX = 4)
FRAC_CLASSES = (2, 3, 4)
_ENCODER_FRAC = None  # None: the prediction fractions where they code fewer bits (tests: 0 / F)
_ENCODER_MANT = None  # None: format 10's mantissa contexts where they pay (tests: 0 / 1)
MANT_SLOT = 4  # format 10: slot | this asks pos_mix_encode for the mantissa contexts
_ENCODER_RECENCY = None  # None: format 11's recency inputs where they pay (tests: 0 / 1)
RECENCY_SLOT = 8  # format 11: slot | this asks pos_mix_encode for the recency inputs


def _pos_states(frac: int) -> int:
    """States of the plain position contexts, with the prediction fractions' sets when ``frac``."""
    return _POS_STATES * (1 + max(FRAC_CLASSES)) if frac else _POS_STATES


def _fractions(q: np.ndarray, graph, top: int, lin, rows_ok: np.ndarray, mask: int, axis):
    """Per vertex and axis (V x 3, axis order): whether the prediction fraction applies (the
    linear prediction, unclamped, no palette, not the normal ``axis`` where given, ``rows_ok``),
    dd < 0, |dd| and den (C: POS_FRAC_MAX's comment)."""
    nv = len(q)
    ok, neg = np.zeros((nv, 3), bool), np.zeros((nv, 3), bool)
    ad, den = np.zeros((nv, 3), np.int64), np.ones((nv, 3), np.int64)
    starts, tri, nb = graph
    if lin is None or not len(tri):
        return ok, neg, ad, den
    sel, num, d = _linear_parts(q, starts, tri, nb, lin)
    p = (2 * num + d) // (2 * d)
    dd = 2 * num + d - 2 * d * p - d
    rows = np.flatnonzero(sel)
    good = (p >= 0) & (p <= top) & rows_ok[rows, None]
    good &= (mask >> np.arange(3) & 1 == 0)[None, :]
    if axis is not None:
        good &= axis[rows, None] != np.arange(3)[None, :]
    ok[rows], neg[rows], ad[rows], den[rows] = good, dd < 0, np.abs(dd), d
    return ok, neg, ad, den


DUP_WINDOW = 4096  # repeats look among the last this many border vertices (POS_DUP_WINDOW in C)


def _border_vertices(faces: np.ndarray, nv: int) -> np.ndarray:
    """Whether each vertex is on an edge of exactly one non-degenerate triangle."""
    f = faces[
        (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    ]
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    key = np.minimum(e[:, 0], e[:, 1]) * _KEY + np.maximum(e[:, 0], e[:, 1])
    uniq, first, count = np.unique(key, return_index=True, return_counts=True)
    out = np.zeros(nv, bool)
    single = first[count == 1]
    out[e[single, 0]] = True
    out[e[single, 1]] = True
    return out


def _repeats(qn: np.ndarray, pred: np.ndarray, border: np.ndarray) -> np.ndarray:
    """The border vertices whose position is that of the earlier border vertex nearest (L1) to
    their prediction among the last DUP_WINDOW ones (ties: the newest), as the C loop finds it:
    split vertices along seams (UV or material seams, patch borders)."""
    dup = np.zeros(len(qn), bool)
    bidx = np.flatnonzero(border)
    if len(bidx) < 2 or len(np.unique(qn[bidx], axis=0)) == len(bidx):
        return dup  # no border vertex shares a position: nothing to find
    partner = repeat_partners(qn, np.clip(pred, 0, None), bidx).astype(np.int64)
    found = partner >= 0
    same = (qn[np.maximum(partner, 0)] == qn[bidx]).all(axis=1) & found
    dup[bidx[same]] = True
    return dup


def _selections(qn: np.ndarray, starts, tri, pred: np.ndarray, top: int, quarters: int = 2):
    """Where one parallelogram predicts a vertex much better than the blend of all of them
    (the others cross a crease): (option per vertex, 0 = keep, k = the k-th parallelogram;
    its context set, -1 where none is coded; the predictions with the options applied). The
    choice is the encoder's: the one with the smallest L1 error when that is under ``quarters``
    quarters of the blend's (less 1)."""
    nv = len(qn)
    count = np.diff(starts).astype(np.int64)
    opt = np.zeros(nv, np.int64)
    ctx = np.full(nv, -1, np.int64)
    multi = count >= 2
    if not multi.any():
        return opt, ctx, pred
    has, spread, edge = _spread_and_edge(qn, starts, tri)
    m = count[has] >= 2  # the vertices of multi among those of has
    cls = np.clip(_bit_length(spread[m]) - _bit_length(edge[m]) + 4, 0, 7)
    para = qn[tri[:, 0]] + qn[tri[:, 1]] - qn[tri[:, 2]]
    owner = np.repeat(np.arange(nv), count)
    ctx[multi] = _OPT_BASE + cls * 3 + np.minimum(count[multi], 4) - 2
    err = np.abs(qn[owner] - np.clip(para, 0, top)).sum(axis=1)
    within = np.arange(len(tri)) - np.repeat(starts[:-1].astype(np.int64), count)
    order = np.lexsort((within, err, owner))
    head = np.r_[True, owner[order][1:] != owner[order][:-1]]
    best = np.full(nv, -1, np.int64)
    best[owner[order][head]] = order[head]
    e0 = np.abs(qn - pred).sum(axis=1)
    choose = multi & (4 * err[np.maximum(best, 0)] < quarters * e0 - 4)
    opt[choose] = within[best[choose]] + 1
    out = pred.copy()
    out[choose] = np.clip(para[best[choose]], 0, top)
    return opt, ctx, out


def _mirror_plane(qn: np.ndarray) -> tuple[int, int, float]:
    """(axis, s2, share): the axis-aligned plane (position s2 / 2 on the axis) across which the
    largest share of vertices off it have a vertex at exactly their mirror image; the plane is
    taken through the bounding box's middle (or a step beside it, rounding) or where the
    commonest sum of two neighbours in coordinate order that differ only on the axis puts it."""
    key = (qn[:, 0] << 42) | (qn[:, 1] << 21) | qn[:, 2]
    keys = np.sort(key)
    best = (0, 0, 0.0)
    for k in range(3):
        # the middle of the box, and the commonest sum of two vertices that differ only on k
        others = np.delete(qn, k, axis=1)
        okey = (others[:, 0] << 21) | others[:, 1]
        order = np.lexsort((qn[:, k], okey))
        same = okey[order][1:] == okey[order][:-1]
        sums = (qn[order, k][1:] + qn[order, k][:-1])[same]
        plane = [int(qn[:, k].max()) + d for d in (-1, 0, 1)]
        if len(sums):
            values, counts = np.unique(sums, return_counts=True)
            plane.append(int(values[np.argmax(counts)]))
        for s2 in dict.fromkeys(plane):
            m = qn.copy()
            m[:, k] = s2 - m[:, k]
            ok = (m[:, k] >= 0) & (m[:, k] < 1 << 21)
            mk = (m[:, 0] << 42) | (m[:, 1] << 21) | m[:, 2]
            j = np.clip(np.searchsorted(keys, mk), 0, len(keys) - 1)
            share = float((ok & (keys[j] == mk) & (m[:, k] != qn[:, k])).mean())  # off the plane
            if share > best[2]:
                best = (k, s2, share)
    return best


def _normal_axes(qn: np.ndarray, starts, tri, top: int) -> tuple[np.ndarray, np.ndarray]:
    """(axis n per vertex, -1 where none; the normal estimate N, V x 3, turned so that
    N[n] > 0), as the C loop finds them (kernels/_adaptive.c, normal axis): the sum of the
    normals of a vertex's parallelogram triangles, each agreeing in sign with the first one,
    in integers scaled down so that no product overflows."""
    nv = len(qn)
    count = np.diff(starts).astype(np.int64)
    axis = np.full(nv, -1, np.int64)
    nrm = np.zeros((nv, 3), np.int64)
    if not len(tri):
        return axis, nrm
    bits = int(top).bit_length()
    a, b, o = qn[tri[:, 0]], qn[tri[:, 1]], qn[tri[:, 2]]
    c = np.cross(a - o, b - o) >> max(0, 2 * bits - 27)  # arithmetic shift = floor division
    owner = np.repeat(np.arange(nv), count)
    first = c[starts[:-1][owner]]
    dot = (c * first).sum(axis=1)
    np.add.at(nrm, owner, np.where(dot[:, None] < 0, -c, c))
    m = np.abs(nrm).max(axis=1)
    sh = np.maximum(_bit_length(m) - 20, 0)
    nrm = nrm >> sh[:, None]
    n = np.argmax(np.abs(nrm), axis=1)
    big = nrm[np.arange(nv), n]
    ok = (m > 0) & (big != 0)
    nrm = np.where((big < 0)[:, None], -nrm, nrm)
    axis[ok] = n[ok]
    return axis, nrm


def _normal_residuals(resid, sets, value_resid, axis, nrm, top: int):
    """Residuals and sets with the normal axis of every vertex in ``axis`` (>= 0) coded against
    the tangent plane (the C loop's rule), and those vertices' axis order (V x 3)."""
    resid, sets = resid.copy(), sets.copy()
    order = np.tile(np.arange(3), (len(resid), 1))
    rows = np.flatnonzero(axis >= 0)
    n = axis[rows]
    i, j = (n + 1) % 3, (n + 2) % 3
    num = -(nrm[rows, i] * value_resid[rows, i] + nrm[rows, j] * value_resid[rows, j])
    nn = nrm[rows, n]
    d = np.clip((2 * num + nn) // (2 * nn), -top, top)
    resid[rows, n] = value_resid[rows, n] - d
    sets[rows, n] = _NRM_BASE + sets[rows, n] // 3
    order[rows] = np.stack([i, j, n], axis=1)
    return resid, sets, order


_GAP_MARKOV = 4  # palette gaps: context on the bit length of the previous gap


def _nearest_index(palette: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Index of the palette value nearest each p (the lower on a tie), as the C loop finds it."""
    n = len(palette)
    j = np.searchsorted(palette, p, side="left")
    jj = np.minimum(j, n - 1)
    below = palette[np.maximum(j - 1, 0)]
    take_lower = (j > 0) & ((j == n) | (p - below <= palette[jj] - p))
    return np.where(take_lower, j - 1, jj)


def _ideal_bits(values: np.ndarray, sets: np.ndarray, nstates: int, markov: int = 1) -> float:
    return ideal_int_bits(values, sets, states(nstates), markov)


LATTICE_SHIFT = 24  # lattice steps in 1/2^24 of a grid step
_LATTICE_STATES = _GAP_MARKOV * INT_CONTEXTS


def _lattice_values(first: int, step: int, n: np.ndarray) -> np.ndarray:
    """Lattice points first + round(n * step / 2^24) (integers only)."""
    return first + ((n * step + (1 << (LATTICE_SHIFT - 1))) >> LATTICE_SHIFT)


def _lattice(pal: np.ndarray):
    """A palette as points of a lattice with a real step (inputs written on a grid coarser than
    the quantisation, whose values are then about k * r steps apart for small k): (step in
    1/2^24, lattice steps between consecutive values, corrections), or None. The step is
    estimated from the gaps nearest the commonest one, refined by least squares; whatever it is,
    the corrections make the values exact."""
    if len(pal) < 16:
        return None
    d = np.diff(pal)
    v, c = np.unique(d, return_counts=True)
    mode = v[np.argmax(c)]
    near = d[np.abs(d - mode) <= 1]
    r = float(near.mean())
    if not 1.0 <= r < 1 << 16:
        return None
    k = np.maximum(np.rint(d / r), 1).astype(np.int64)
    n = np.r_[0, np.cumsum(k)]
    rel = (pal - pal[0]).astype(np.float64)
    r = float((n * rel).sum() / max(float((n * n).sum()), 1.0))
    step = int(round(r * (1 << LATTICE_SHIFT)))
    if not 1 << LATTICE_SHIFT <= step < 1 << 40 or n[-1] > 2 * int(pal[-1]) + 2:
        return None
    corr = pal[1:] - _lattice_values(int(pal[0]), step, n[1:])
    return step, k, corr


def _code_lattice(coder, k, corr, st_k, st_c) -> None:
    coder(k - 1, np.zeros(len(k), np.int32), st_k, _GAP_MARKOV)
    coder(corr, np.zeros(len(corr), np.int32), st_c, _GAP_MARKOV)


def _palette_cost(pal: np.ndarray, lattice: bool):
    """(bits, lattice fit or None) of sending a palette as gaps or, when ``lattice`` and that is
    cheaper, as lattice steps and corrections."""
    gaps = np.diff(np.r_[-1, pal]) - 1
    cost = _ideal_bits(gaps, np.zeros(len(gaps)), _GAP_MARKOV * INT_CONTEXTS, _GAP_MARKOV)
    fit = _lattice(pal) if lattice else None
    if fit is None:
        return cost, None
    total = [96.0]  # the step, the first value and the mode, roughly

    def count(v, sets_, st, markov):
        total[0] += ideal_int_bits(v, sets_, st, markov)

    _code_lattice(count, fit[1], fit[2], states(_LATTICE_STATES), states(_LATTICE_STATES))
    return (total[0], fit) if total[0] < cost else (cost, None)


def _palettes(qn: np.ndarray, pred: np.ndarray, resid: np.ndarray, sets: np.ndarray):
    """Per axis, whether coding the coordinate as an index into the sorted distinct values the
    axis takes (a palette, sent as gaps) is cheaper than the plain residual: the case of inputs
    whose precision is coarser than the quantisation (every value a few steps from the next) or
    whose vertices share coordinates (surfaces of revolution, CAD parts, mirrored halves).
    A palette is sent as gaps or, where cheaper, as points of a lattice (``_lattice``).
    Returns (mask, palettes, lattice fits (None: gaps), residuals, sets) with the chosen
    residuals and sets (V x 3)."""
    mask, pals, fits = 0, [], []
    resid, sets = resid.copy(), sets.copy()
    for k in range(3):
        pal = np.unique(qn[:, k])
        r = np.searchsorted(pal, qn[:, k]) - _nearest_index(pal, pred[:, k])
        plain = _ideal_bits(resid[:, k], sets[:, k], _POS_STATES)
        table, fit = _palette_cost(pal, lattice=True)
        paletted = _ideal_bits(r, sets[:, k] + _PALETTE_SHIFT, _POS_STATES) + table
        if paletted + 32 < plain:
            mask |= 1 << k
            pals.append(pal)
            fits.append(fit)
            resid[:, k] = r
            sets[:, k] += _PALETTE_SHIFT
    return mask, pals, fits, resid, sets


CORNER_MODE = 100  # per-corner table indexes, predicted from the corner's vertex


def _corner_predictions(values: np.ndarray, vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, kind) of each corner's table index from the earlier ones: the index of the
    previous corner of the same vertex (kind 0), else one past the largest index so far (kind 1)."""
    n = len(values)
    order = np.argsort(vertices, kind="stable")
    prev = np.full(n, -1, np.int64)
    same = vertices[order][1:] == vertices[order][:-1]
    prev[order[1:][same]] = order[:-1][same]
    running = np.maximum.accumulate(np.r_[-1, values[:-1]]) if n else np.zeros(0, np.int64)
    seen = prev >= 0
    pred = np.where(seen, values[np.maximum(prev, 0)], running + 1)
    return pred, (~seen).astype(np.int32)


def _encode_corner_indexes(values: np.ndarray, vertices: np.ndarray) -> bytes:
    v = np.asarray(values, np.int64)
    pred, kind = _corner_predictions(v, np.asarray(vertices, np.int64))
    enc = AdaptiveEncoder()
    enc.code_ints(v - pred, kind, states(2 * 3 * INT_CONTEXTS), 3)
    return enc.finish()


def _decode_corner_indexes(data: bytes, vertices: np.ndarray) -> np.ndarray:
    verts = np.asarray(vertices, np.int64)
    n = len(verts)
    # whether a corner's vertex appeared before depends on the vertices only: kinds up front
    _, first = np.unique(verts, return_index=True)
    kind = np.zeros(n, np.int32)
    kind[first] = 1
    try:
        resid = AdaptiveDecoder(data).code_ints(kind, states(2 * 3 * INT_CONTEXTS), 3)
    except DecodeError as exc:
        raise CodecError(f"meshtrav: corrupt corner index stream ({exc})") from None
    out = [0] * n
    last: dict[int, int] = {}
    top = -1
    for i, (vx, r) in enumerate(zip(verts.tolist(), resid.tolist(), strict=True)):
        p = last.get(vx)
        val = (top + 1 if p is None else p) + r
        out[i] = val
        last[vx] = val
        top = max(top, val)
    arr = np.array(out, np.int64)
    if n and (arr.min() < 0 or arr.max() >= 1 << 31):
        raise CodecError("meshtrav: corrupt corner index stream (index out of range)")
    return arr


def _encode_geometry(faces: np.ndarray, q: np.ndarray, top: int):
    """(range-coded connectivity + positions, ideal bits, new vertex order, new triangles,
    placement of every output triangle, ideal bits of each part and the modes chosen)."""
    nv = len(q)
    vals, sets, orig_of, new_faces, placement = _traverse_encode(faces, nv)
    nused = len(orig_of)
    orig_of = _append_unused(orig_of, q)
    new_faces = np.array(new_faces, dtype=np.int64).reshape(-1, 3)
    order = _position_order(new_faces, nused, nv)
    rank = np.empty(nv, np.int64)
    rank[order] = np.arange(nv)
    new_faces, orig_of = rank[new_faces], orig_of[order]
    qn = q[orig_of]
    starts, tri, prefs, kind = _predictors(new_faces, nv)
    pos_sets = _position_sets(qn, starts, tri, kind).reshape(-1, 3)
    nb = _earlier_neighbours(new_faces, nv)
    # the blends of the neighbours' mean that code this mesh's positions in the fewest bits, one
    # for vertices with 2+ parallelograms, one for those with one (their contexts are apart, so
    # their costs add up and each is chosen on its own)
    costs = np.zeros((len(BLEND_WEIGHTS), 2))
    for i, wt in enumerate(BLEND_WEIGHTS):
        resid = qn - _predict(qn, starts, tri, prefs, top, nb, (wt, wt))
        for k in (0, 1):
            rows = kind == k
            costs[i, k] = _ideal_bits(
                resid[rows].reshape(-1), pos_sets[rows].reshape(-1), _POS_STATES
            )
    blend = [int(np.argmin(costs[:, 0])), int(np.argmin(costs[:, 1]))]
    weights = (BLEND_WEIGHTS[blend[0]], BLEND_WEIGHTS[blend[1]])
    # format 6: a linear prediction with coefficients fitted to the mesh (or equal to the blend)
    # for each of the two kinds, where that codes fewer bits than the blends
    lin = None
    terms = _linear_terms(qn, starts, tri, nb) if len(tri) and _ENCODER_LINEAR != 0 else None
    if terms is not None and terms[0].any():
        best_lin, lin_cost, split = [], 0.0, None
        for k in (0, 1):
            rows = kind == k
            t = weights[k]
            options = _linear_options(qn, rows, terms, t)
            scored = []
            for ab in options:
                resid = qn - _predict(qn, starts, tri, prefs, top, nb, (0, 0), ab + ab)
                cost = _ideal_bits(resid[rows].reshape(-1), pos_sets[rows].reshape(-1), _POS_STATES)
                scored.append((cost, ab))
            cost, ab = min(scored)
            if k == 0 and _ENCODER_SPLIT != 0:  # format 7: two classes where that pays
                split, cost = _linear_split(
                    qn, (starts, tri, prefs, nb), top, rows, terms, ab, pos_sets, cost
                )
            best_lin += list(ab)
            lin_cost += cost
        if split is not None:
            best_lin = [*split[:6], *best_lin[3:], split[6]]
        if _ENCODER_LINEAR or lin_cost + 24 < costs[blend[0], 0] + costs[blend[1], 1]:
            lin, weights = tuple(best_lin), (0, 0)
    pred = _predict(qn, starts, tri, prefs, top, nb, weights, lin)
    # the scale rule of the residual contexts that codes these residuals in the fewest bits
    # (format 5): the spread of the parallelograms counts more than the edge on some meshes
    rule_sets = [_position_sets(qn, starts, tri, kind, r).reshape(-1, 3) for r in SCALE_RULES]
    rule_costs = [
        _ideal_bits((qn - pred).reshape(-1), rs.reshape(-1), _POS_STATES) for rs in rule_sets
    ]
    pick = int(np.argmin(rule_costs))
    rule, pos_sets, plain = SCALE_RULES[pick], rule_sets[pick], rule_costs[pick]
    # where single parallelograms pay (creases), under the choice rule that codes fewest bits
    select, sel_best = 0, (plain, None, None, None, None)
    for quarters in (1, 2, 3):
        opt_q, opt_sets_q, chosen = _selections(qn, starts, tri, pred, top, quarters)
        coded_q = opt_sets_q >= 0
        sel_sets = pos_sets.copy()  # vertices predicted by one chosen parallelogram: last kind
        sel_sets[opt_q > 0] += ((POSITION_KINDS - 1 - kind[opt_q > 0]) * POSITION_SCALES * 3)[
            :, None
        ]
        cost = _ideal_bits((qn - chosen).reshape(-1), sel_sets.reshape(-1), _POS_STATES)
        cost += _ideal_bits(opt_q[coded_q], opt_sets_q[coded_q], _POS_STATES)
        if cost < sel_best[0]:
            select, sel_best = 1, (cost, opt_q, opt_sets_q, chosen, sel_sets)
    if select:
        _, opt, opt_sets, pred, pos_sets = sel_best
        coded = opt_sets >= 0
    if not select:
        coded = np.zeros(nv, bool)
        opt, opt_sets = np.zeros(nv, np.int64), np.full(nv, -1, np.int64)
    # mirrored halves: where an earlier vertex near the prediction's mirror image predicts a
    # vertex far better (its mirror image), a flag and that prediction, where that pays
    mirror, m_axis, m_s2 = 0, 0, 0
    has_m = np.zeros(nv, bool)
    mflag = np.zeros(nv, bool)
    m_axis, m_s2, share = _mirror_plane(qn)
    if share >= 0.05:
        partner = mirror_partners(qn, np.clip(pred, 0, top), m_axis, m_s2, top).astype(np.int64)
        has_m = partner >= 0
        mpred = qn[np.maximum(partner, 0)].copy()
        mpred[:, m_axis] = m_s2 - mpred[:, m_axis]
        mpred = np.clip(mpred, 0, top)
        em = np.abs(qn - mpred).sum(axis=1)
        ep = np.abs(qn - pred).sum(axis=1)
        mflag = has_m & (4 * em < ep)
        if mflag.any():
            prev_m = np.r_[0, mflag[has_m][:-1]].astype(np.int64)
            cost = _ideal_bits(mflag[has_m], _MIR_BASE + prev_m, _POS_STATES)
            rows = mflag[:, None].repeat(3, axis=1)
            msets = np.broadcast_to(_MIR_SETS + np.arange(3), (nv, 3))
            cost += _ideal_bits((qn - mpred)[rows], msets[rows], _POS_STATES)
            cost -= _ideal_bits((qn - pred)[rows], pos_sets[rows], _POS_STATES)
            mirror = int(cost < -16)
    if mirror:
        pred = np.where(mflag[:, None], mpred, pred)
        pos_sets = np.where(mflag[:, None], _MIR_SETS + np.arange(3)[None, :], pos_sets)
    else:
        has_m[:] = False
        mflag[:] = False
    # repeated positions on borders (seams): a flag instead of residuals, where that pays
    border = _border_vertices(new_faces, nv)
    dup = _repeats(qn, pred, border)
    dup &= ~mflag
    flagged = border & (np.cumsum(border) > 1) & ~mflag  # every border vertex but the first
    dups = 0
    if dup.any():
        prev_flag = np.r_[0, dup[flagged][:-1]].astype(np.int64)
        flags_cost = _ideal_bits(dup[flagged], _DUP_BASE + prev_flag, _POS_STATES)
        rows = dup[:, None].repeat(3, axis=1)
        saved = _ideal_bits((qn - pred)[rows], pos_sets[rows], _POS_STATES)
        dups = int(flags_cost < saved)
    if not dups:
        dup[:] = False
    keep = ~dup
    mask, pals, fits, resid_keep, sets_keep = _palettes(
        qn[keep], pred[keep], (qn - pred)[keep], pos_sets[keep]
    )
    resid, pos_sets = np.zeros((nv, 3), np.int64), pos_sets.copy()
    resid[keep], pos_sets[keep] = resid_keep, sets_keep
    # one axis in the tangent plane (the normal estimate's largest component) where that pays
    axis, nrm = _normal_axes(qn, starts, tri, top)
    axis[~keep | mflag] = -1
    axis[(axis >= 0) & (mask >> np.maximum(axis, 0) & 1 == 1)] = -1  # axes with a palette
    normal = 0
    if (axis >= 0).any():
        n_resid, n_sets, n_order = _normal_residuals(resid, pos_sets, qn - pred, axis, nrm, top)
        on = _ideal_bits(n_resid[keep].reshape(-1), n_sets[keep].reshape(-1), _POS_STATES)
        off = _ideal_bits(resid[keep].reshape(-1), pos_sets[keep].reshape(-1), _POS_STATES)
        normal = int(on + 2 < off)
    # format 9: where the linear prediction applies, the side and distance of its rounding
    frac_ok, frac_neg, frac_ad, frac_den = _fractions(
        qn, (starts, tri, nb), top, lin, keep & ~mflag & (opt == 0), mask, axis if normal else None
    )
    if normal:
        rows = np.arange(nv)[:, None]
        resid, pos_sets = n_resid[rows, n_order], n_sets[rows, n_order]
        frac_ok, frac_neg = frac_ok[rows, n_order], frac_neg[rows, n_order]
        frac_ad, frac_den = frac_ad[rows, n_order], frac_den[rows, n_order]
    # unreferenced vertices: after the previous one (Morton order), or as offsets from a used
    # vertex near each, whichever codes in fewer bits
    near = NEAR_PLAIN
    if 0 < nused < nv:
        near_order, near_steps, near_offsets = _near_unused(qn, nused)
        rows = slice(nused, nv)
        plain = _ideal_bits(resid[rows].reshape(-1), pos_sets[rows].reshape(-1), _POS_STATES)
        cost = [0.0]

        def count(v, sets_, st, markov):
            cost[0] += ideal_int_bits(v, sets_, st, markov)

        _code_near(count, near_steps, near_offsets, states(_NEAR_STATES))
        near_cost = {NEAR_PLAIN: plain - 8, NEAR_OFFSETS: cost[0]}
        # format 8: the offsets in the frame of the anchor's normal axis, where that is cheaper
        ref = np.cumsum(near_steps)
        n_axis, n_nrm = _anchor_normals(qn[:nused], new_faces, top)
        normal_values = _near_normal_values(near_offsets, ref, n_axis, n_nrm, top)
        cost[0] = 0.0
        _code_near(count, near_steps, normal_values, states(_NEAR_STATES))
        near_cost[NEAR_NORMAL] = cost[0] + 8  # where it saves a byte (range coder rounding)
        if _ENCODER_NEAR is None:  # the cheapest (a tie: the older mode)
            near = min(near_cost, key=lambda m: (near_cost[m], m))
        else:
            near = _ENCODER_NEAR
        if near == NEAR_NORMAL:
            near_offsets = normal_values
        if near:  # decoded in that order: renumber them
            perm = np.r_[np.arange(nused), nused + near_order]
            orig_of, qn = orig_of[perm], qn[perm]
    if near:  # unreferenced vertices follow the others' residuals, in their own part
        resid, pos_sets, keep, coded = resid[:nused], pos_sets[:nused], keep[:nused], coded[:nused]
        frac_ok, frac_neg = frac_ok[:nused], frac_neg[:nused]
        frac_ad, frac_den = frac_ad[:nused], frac_den[:nused]
        opt, opt_sets, flagged, dup = opt[:nused], opt_sets[:nused], flagged[:nused], dup[:nused]
        has_m, mflag = has_m[:nused], mflag[:nused]
    has_flag = flagged if dups else np.zeros(len(keep), bool)

    def flatten(resid, pos_sets):  # per vertex: option, mirror flag, repeat flag, residuals
        if not (select or dups or mirror):
            vids = np.repeat(np.arange(len(resid)), 3)
            return resid.reshape(-1), pos_sets.reshape(-1), np.tile(np.arange(3), len(resid)), vids
        width = coded.astype(np.int64) + has_m + has_flag + 3 * keep
        at = np.cumsum(width) - width
        values = np.zeros(int(width.sum()), np.int64)
        where = np.zeros_like(values)
        values[at[coded]], where[at[coded]] = opt[coded], opt_sets[coded]
        mat = at + coded
        prev_m = np.r_[0, mflag[has_m][:-1]].astype(np.int64)
        values[mat[has_m]], where[mat[has_m]] = mflag[has_m], _MIR_BASE + prev_m
        fat = mat + has_m
        prev_flag = np.r_[0, dup[has_flag][:-1]].astype(np.int64)
        values[fat[has_flag]], where[fat[has_flag]] = dup[has_flag], _DUP_BASE + prev_flag
        slots = (fat + has_flag)[keep][:, None] + np.arange(3)[None, :]
        values[slots], where[slots] = resid[keep], pos_sets[keep]
        slot_of = np.full(len(values), -1, np.int64)
        slot_of[slots] = np.arange(3)[None, :]
        return values, where, slot_of, np.repeat(np.arange(len(keep)), width)

    # format 6: the residuals' bits from a mix of context models, where that codes fewer bits;
    # format 9: with the prediction fractions' classes (F of them), where that codes fewer bits
    nbs_n = nb[0][: (nused if near else nv) + 1]
    best = None
    for fr in (0, *FRAC_CLASSES) if frac_ok.any() and _ENCODER_FRAC != 0 else (0,):
        if _ENCODER_FRAC and fr != _ENCODER_FRAC and frac_ok.any():
            continue
        r_f, s_f = resid, pos_sets
        if fr:
            cls = 1 + np.minimum(frac_ad * fr // frac_den, fr - 1)
            r_f = np.where(frac_ok & frac_neg, -resid, resid)
            s_f = pos_sets + np.where(frac_ok, cls * _POS_SETS, 0)
        vals_f, sets_f, slots_f, vids_f = flatten(r_f, s_f)
        mixed = pos_mix_bits(vals_f, sets_f, slots_f, vids_f, nbs_n, nb[1])
        plain_bits = _ideal_bits(vals_f, sets_f, _pos_states(fr), _POS_MARKOV)
        mix = int(mixed < plain_bits) if _ENCODER_MIX is None else _ENCODER_MIX
        cost = (mixed if mix else plain_bits) + (24 if fr else 0)
        if best is None or cost < best[0]:
            best = (cost, fr, mix, 0, mixed, plain_bits, vals_f, sets_f, slots_f, vids_f)
        if mix and _ENCODER_MANT != 0:  # format 10: the mantissas' 2nd and 3rd bits in contexts
            slots_m = np.where(slots_f >= 0, slots_f | MANT_SLOT, slots_f)
            mant_bits = pos_mix_bits(vals_f, sets_f, slots_m, vids_f, nbs_n, nb[1])
            cost = mant_bits + (24 if fr else 0) + (8 if _ENCODER_MANT is None else -1e9)
            if cost < best[0]:
                best = (cost, fr, mix, 1, mant_bits, plain_bits, vals_f, sets_f, slots_m, vids_f)
    # format 11: the mix with the recency inputs (fast copy and bit history of each context, a
    # second refinement table), where that pays for the choice above
    _, frac, mix, mant, mixed, plain_bits, resid, pos_sets, slot_of, vids = best
    recency = 0
    if mix and _ENCODER_RECENCY != 0:
        slots_r = np.where(slot_of >= 0, slot_of | RECENCY_SLOT, slot_of)
        rec_bits = pos_mix_bits(resid, pos_sets, slots_r, vids, nbs_n, nb[1])
        if rec_bits + 8 < mixed or _ENCODER_RECENCY:
            recency, mixed, slot_of = 1, rec_bits, slots_r
    enc = AdaptiveEncoder()
    st_conn = states(CONN_SETS * INT_CONTEXTS)
    if lin is None:
        vals += [blend[0] + len(BLEND_WEIGHTS) * rule, blend[1]]
    elif len(lin) == 6:  # format 6: the linear prediction's 6 coefficients, not the 2nd blend
        vals += [_LIN_BASE + rule, *lin]
    else:  # format 7: the split's threshold with the rule, 9 coefficients
        vals += [_LIN_SPLIT_BASE + LIN_SPLITS.index(lin[9]) * NUM_SCALE_RULES + rule, *lin[:9]]
    sets += [BLEND_SET] * (2 if lin is None else 1 + min(len(lin), 9))
    fcode = FRAC_CLASSES.index(frac) + 1 if frac else 0
    vals += [select + 2 * mix + 4 * fcode + 16 * mant + 32 * recency, dups, normal, near] + (
        [m_axis + 1, m_s2] if mirror else [0]
    )
    sets += [SELECT_SET, DUPS_SET, NORMAL_SET, UNUSED_SET]
    sets += [MIRROR_SET] * (2 if mirror else 1)
    vals += [mask] + [len(p) for p in pals]
    sets += [PALETTE_SET]
    sets += [COUNT_SET] * len(pals)
    for p, fit in zip(pals, fits, strict=True):  # lattice palettes: step (2 parts), first value
        vals += [0] if fit is None else [1, fit[0] >> 20, fit[0] & 0xFFFFF, int(p[0])]
        sets += [LATTICE_SET] * (1 if fit is None else 4)
    enc.code_ints(np.array(vals, np.int32), np.array(sets, np.int32), st_conn)
    traversal_bits = enc.bits
    st_gaps = states(_GAP_MARKOV * INT_CONTEXTS)
    st_k, st_c = states(_LATTICE_STATES), states(_LATTICE_STATES)
    for p, fit in zip(pals, fits, strict=True):
        if fit is not None:
            _code_lattice(enc.code_ints, fit[1], fit[2], st_k, st_c)
            continue
        gaps = np.diff(np.r_[-1, p]) - 1
        enc.code_ints(gaps, np.zeros(len(gaps), np.int32), st_gaps, _GAP_MARKOV)
    conn_bits = enc.bits
    if mix:
        enc.code_pos_mix(resid, pos_sets, slot_of, vids, nbs_n, nb[1])
    else:
        enc.code_ints(resid, pos_sets, states(_pos_states(frac)), _POS_MARKOV)
    if near:
        _code_near(enc.code_ints, near_steps, near_offsets, states(_NEAR_STATES))
    parts = {
        "connectivity": conn_bits,  # the traversal, the modes and the palettes
        "palette_bits": conn_bits - traversal_bits,
        "positions": enc.bits - conn_bits,
        "layout": vals[0] % NUM_LAYOUTS,  # >= 4: valence layouts
        "symbol_codes": vals[0] // NUM_LAYOUTS % len(_SYMBOL_CODES),
        "focus": vals[0] // (NUM_LAYOUTS * len(_SYMBOL_CODES)),
        "blend": weights,
        "linear": lin,
        "scale_rule": rule,
        "select": select,
        "mix": mix,
        "frac": frac,  # format 9: classes of the prediction fractions (0: not used)
        "mant": mant,  # format 10: the mantissas' second and third bits in contexts
        "recency": recency,  # format 11: the recency inputs of the mix
        "positions_plain": plain_bits,  # ideal bits of the position part without / with mixing
        "positions_mixed": mixed,
        "palettes": mask,
        "repeats": int(dup.sum()),
        "normal": normal,
        "near": near,
        "mirror": int(mflag.sum()) if mirror else 0,
        "lattice": sum(f is not None for f in fits),
    }
    return enc.finish(), enc.bits, orig_of, new_faces, placement, parts


def _decode_palettes(
    dec: AdaptiveDecoder, st_conn: np.ndarray, nv: int, top: int, fmt: int = FORMAT
):
    """(concatenated palettes, offsets of the 3 axes' palettes), as ``_encode_geometry`` wrote."""
    mask = dec.code_step(st_conn, PALETTE_SET)
    if not 0 <= mask <= 7:
        raise CodecError("meshtrav: corrupt stream (bad palette mask)")
    counts = []
    for k in range(3):
        n = dec.code_step(st_conn, COUNT_SET) if mask >> k & 1 else 0
        if mask >> k & 1 and not 1 <= n <= nv:
            raise CodecError("meshtrav: corrupt stream (bad palette size)")
        counts.append(n)
    lattice = {}  # axis -> (step, first value)
    for k in range(3):
        if fmt < 3 or not counts[k]:
            continue
        m = dec.code_step(st_conn, LATTICE_SET)
        if m not in (0, 1):
            raise CodecError("meshtrav: corrupt stream (bad palette mode)")
        if m:
            hi, lo, first = (dec.code_step(st_conn, LATTICE_SET) for _ in range(3))
            step = (hi << 20) + lo
            if not (0 <= lo < 1 << 20 and 1 << LATTICE_SHIFT <= step < 1 << 40 and first >= 0):
                raise CodecError("meshtrav: corrupt stream (bad palette lattice)")
            lattice[k] = (step, first)
    st_gaps = states(_GAP_MARKOV * INT_CONTEXTS)
    st_k, st_c = states(_LATTICE_STATES), states(_LATTICE_STATES)
    parts = []
    for k, n in enumerate(counts):
        if n and k in lattice:
            step, first = lattice[k]
            zeros = np.zeros(n - 1, np.int32)
            steps = dec.code_ints(zeros, st_k, _GAP_MARKOV).astype(np.int64) + 1
            corr = dec.code_ints(zeros, st_c, _GAP_MARKOV).astype(np.int64)
            n_at = np.r_[0, np.cumsum(steps)]
            if steps.min(initial=1) < 1 or n_at[-1] > 2 * top + 2:
                raise CodecError("meshtrav: corrupt stream (bad palette lattice steps)")
            values = np.r_[first, _lattice_values(first, step, n_at[1:]) + corr]
            if (np.diff(values) <= 0).any() or values[-1] > top:
                raise CodecError("meshtrav: corrupt stream (palette value out of range)")
            parts.append(values)
        elif n:
            gaps = dec.code_ints(np.zeros(n, np.int32), st_gaps, _GAP_MARKOV).astype(np.int64)
            if gaps.min() < 0:
                raise CodecError("meshtrav: corrupt stream (bad palette gap)")
            values = np.cumsum(gaps + 1) - 1
            if values[-1] > top:
                raise CodecError("meshtrav: corrupt stream (palette value out of range)")
            parts.append(values)
    offsets = np.r_[0, np.cumsum(counts)]
    pal = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    return pal.astype(np.int32), offsets.astype(np.int32)


def _grid(vertices: np.ndarray, bits: int):
    """(q, origin, step, widest axis, its top coordinate) of ``quantise``."""
    x = np.asarray(vertices, np.float64)
    lo, hi = x.min(axis=0), x.max(axis=0)
    axis = int(np.argmax(hi - lo))
    top = (1 << bits) - 1
    with np.errstate(over="ignore", invalid="ignore"):
        o32 = lo.astype(np.float32)
        o32 = np.where(o32.astype(np.float64) > lo, np.nextafter(o32, np.float32(-np.inf)), o32)
        t32 = np.float32(hi[axis])
        if float(t32) < hi[axis]:
            t32 = np.nextafter(t32, np.float32(np.inf))
        origin = o32.astype(np.float64)
        step = (float(t32) - origin[axis]) / top
    if not (np.isfinite(origin).all() and np.isfinite(step) and step > 0):
        q, origin, step = g.quantise(x, bits)
        return q, origin, step, axis, float(hi[axis])
    q = np.rint((x - origin) / step)
    return np.clip(q, 0, top).astype(np.int64), origin, step, axis, float(t32)


def quantise(vertices: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The quantisation of format 4: ``geometry.quantise``'s grid with the origin moved down and
    the widest axis' top moved up to float32 values (each by less than one float32 step), so
    that the header holds them in 16 bytes; the same as ``geometry.quantise`` for float32 inputs.
    Inputs whose box has no extent or does not fit float32 keep ``geometry.quantise``'s grid
    (the 33-byte header)."""
    return _grid(vertices, bits)[:3]


def _pack_header(bits: int, origin: np.ndarray, step: float, axis: int, t: float) -> bytes:
    """The quantisation in 17 or 33 bytes. Mode byte: bits - 8 (bits 0..3), float32 form
    (bit 4), the widest axis (bits 5..6). Float32 form, when the origin and the widest axis' top
    ``t`` are float32 values (always with ``quantise``'s grid, else float32 inputs): origin and
    ``t`` as float32, from which the decoder recomputes the step exactly as the encoder did;
    else origin and step as float64."""
    with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: the float64 form
        o32, t32 = origin.astype(np.float32), np.float32(t)
    exact = (o32 == origin).all() and t32 == t and t > origin[axis]
    if exact and (float(t32) - origin[axis]) / ((1 << bits) - 1) == step:
        mode = (bits - 8) | 16 | axis << 5
        return _HEAD32.pack(mode, *(float(v) for v in o32), float(t32))
    return _HEAD64.pack(bits - 8, *(float(v) for v in origin), float(step))


def _unpack_header(data: bytes) -> tuple[int, np.ndarray, float, int]:
    """(bits, origin, step, header size) of a geometry stream."""
    if not data:
        raise CodecError("meshtrav: empty geometry stream")
    mode = data[0]
    bits, axis = 8 + (mode & 15), mode >> 5 & 3
    if mode & 128 or bits > g.MAX_BITS or axis > 2:
        raise CodecError("meshtrav: bad geometry header")
    head = _HEAD32 if mode & 16 else _HEAD64
    if len(data) < head.size:
        raise CodecError("meshtrav: truncated geometry header")
    _, *vals = head.unpack(data[: head.size])
    origin = np.array(vals[:3], np.float64)
    if mode & 16:
        step = float(np.float64(vals[3]) - origin[axis]) / ((1 << bits) - 1)
    else:
        step = float(vals[3])
    if not g.grid_is_finite(origin, step, bits):
        raise CodecError("meshtrav: origin and step in the geometry header overflow the grid")
    return bits, origin, step, head.size


# ----------------------------------------------------------------------------- codec


def _corner_table(mesh: Mesh, name: str):
    table = getattr(mesh, name + "s")
    idx = getattr(mesh, name + "_faces")
    return (None if table is None else np.asarray(table)), (
        None if idx is None else np.asarray(idx)
    )


@register
class TraversalMeshCodec(Codec):
    name = "meshtrav"
    codec_id = 41
    modality = "mesh"
    quality_range = (1, 9)
    extensions = (".obj", ".ply")
    description = "gate traversal connectivity + multi-parallelogram positions; 7 + q bits/axis"
    rank = 10
    quantise = staticmethod(quantise)  # the grid of format 4 (bench.geometry3d.same_triangles)

    def _streams(self, data: Any, quality: int) -> tuple[dict[str, bytes], float, int]:
        if not isinstance(data, Mesh):
            raise CodecError(f"meshtrav takes a Mesh, got {type(data).__name__}")
        mesh = data.validate()
        bits = g.quality_to_bits(self.check_quality(quality))
        top = (1 << bits) - 1
        faces = np.asarray(mesh.faces, dtype=np.int64)
        q, origin, step, axis, t = _grid(mesh.vertices, bits)
        geometry, estimate, orig_of, new_faces, placement, _ = _encode_geometry(faces, q, top)
        streams = {STREAM: _pack_header(bits, origin, step, axis, t) + geometry}
        descs = []
        face_idx = np.array([p[0] for p in placement], np.int64)
        rot = np.array([p[1] for p in placement], np.int64)
        corner_perm = face_idx[:, None] * 3 + (rot[:, None] + np.arange(3)[None, :]) % 3
        items = [(f"v:{k}", np.asarray(v)[orig_of], None) for k, v in mesh.attributes.items()]
        for name in ("normal", "uv"):
            table, idx = _corner_table(mesh, name)
            if table is None:
                continue
            if idx is None:
                items.append((f"{name}:vertex", table[orig_of], name))
            else:
                items.append((f"{name}:table", table, name))
                items.append(
                    (f"{name}:corners", idx.reshape(-1)[corner_perm.reshape(-1)], "corners")
                )
        for i, (key, arr, kind) in enumerate(items):
            if kind == "uv":
                stream, desc = g.encode_uvs(arr, bits)
            elif kind == "normal":
                stream, desc = g.encode_normals(arr, max(bits - NORMAL_BITS_BELOW, 4))
            elif kind == "corners":
                stream = _encode_corner_indexes(arr, new_faces.reshape(-1))
                desc = {"dtype": "int64", "width": 0, "mode": CORNER_MODE}
            else:
                stream, desc = g.encode_attribute(arr)
            streams[f"a{i}"] = stream
            descs.append({"key": key, "rows": len(arr), **desc})
        if descs:  # geometry-only meshes carry no attribute list
            streams["attrs"] = g.pack_json(descs)
        return streams, estimate, bits

    def encode(self, data: Any, quality: int) -> Encoded:
        streams, _, bits = self._streams(data, quality)
        header = {
            "bit_depth": bits,
            "quality": quality,
            "shape": (len(data.vertices), len(data.faces)),
        }  # formats 4, 5: no "format" field (it would cost the JSON metadata block 11 bytes)
        return Encoded(self.name, header, streams)

    def estimated_bits(self, data: Any, quality: int) -> float:
        """Ideal code length of the connectivity + positions stream under the adaptive models."""
        return self._streams(data, quality)[1]

    def decode(self, encoded: Encoded) -> Mesh:
        streams = encoded.streams
        fmt = encoded.header.get("format", FORMAT if STREAM in streams else 1)
        if fmt not in FORMATS:
            raise CodecError(
                f"meshtrav: the file is in format {fmt!r} of this codec; this version decodes "
                f"formats {', '.join(map(str, FORMATS))} (re-encode the source with this version)"
            )
        name = STREAM if fmt >= 4 else "geom"
        if name not in streams:
            raise CodecError(f"meshtrav: missing stream {name}")
        head = bytes(streams[name])
        bits, origin, step, size = _unpack_header(head)
        try:
            nv, nf = (int(x) for x in encoded.header["shape"])
        except (KeyError, TypeError, ValueError):
            raise CodecError("meshtrav: header has no vertex / face counts") from None
        if not (1 <= nv <= MAX_VERTICES and 1 <= nf <= MAX_FACES):
            raise CodecError("meshtrav: header counts out of range")
        try:
            dec = AdaptiveDecoder(head[size:])
            st_conn = states(CONN_SETS * INT_CONTEXTS)
            faces, nused = _traverse_decode(dec, st_conn, nf, nv, fmt)
            rank = np.empty(nv, np.int64)
            rank[_position_order(faces, nused, nv)] = np.arange(nv)
            faces = rank[faces]
            top = (1 << bits) - 1
            blend = [dec.code_step(st_conn, BLEND_SET)]
            lin = None
            if blend[0] >= _LIN_BASE and fmt >= 6:  # format 6: linear prediction
                split = blend[0] >= _LIN_SPLIT_BASE and fmt >= 7  # format 7: in two classes
                lin = tuple(dec.code_step(st_conn, BLEND_SET) for _ in range(9 if split else 6))
                top_mode = _LIN_SPLIT_BASE + (len(LIN_SPLITS) * NUM_SCALE_RULES if split else 0)
                if (
                    not all(
                        lo <= c <= hi
                        for c, (lo, hi) in zip(lin, (LIN_A, LIN_B, LIN_G) * 3, strict=False)
                    )
                    or blend[0] >= top_mode
                ):
                    raise CodecError("meshtrav: corrupt stream (bad linear prediction)")
                if split:
                    ti, blend[0] = divmod(blend[0] - _LIN_SPLIT_BASE, NUM_SCALE_RULES)
                    lin, blend[0] = (*lin, LIN_SPLITS[ti]), blend[0] + _LIN_BASE
                blend = [blend[0] - _LIN_BASE, 0]  # the rule, blend weights 0
                blend[0] *= len(BLEND_WEIGHTS)
            else:
                blend.append(dec.code_step(st_conn, BLEND_SET))
            select = dec.code_step(st_conn, SELECT_SET)
            dups = dec.code_step(st_conn, DUPS_SET)
            normal = dec.code_step(st_conn, NORMAL_SET) if fmt >= 3 else 0
            near = dec.code_step(st_conn, UNUSED_SET) if fmt >= 3 else 0
            mirror = dec.code_step(st_conn, MIRROR_SET) if fmt >= 3 else 0
            m_s2 = dec.code_step(st_conn, MIRROR_SET) if mirror else 0
            if not (0 <= mirror <= 3 and 0 <= m_s2 <= 2 * ((1 << bits) - 1)):
                raise CodecError("meshtrav: corrupt stream (bad mirror plane)")
            rule, blend[0] = divmod(blend[0], len(BLEND_WEIGHTS))  # format 5: + the scale rule
            sel_top = (2, 4, 16, 32, 64)[(fmt >= 6) + (fmt >= 9) + (fmt >= 10) + (fmt >= 11)]
            if not (
                0 <= rule < (NUM_SCALE_RULES if fmt >= 4 else 1)
                and all(0 <= b < len(BLEND_WEIGHTS) for b in blend)
                and 0 <= select < sel_top
                and dups in (0, 1)
                and normal in (0, 1)
                and near in ((0, 1, 2)[: 1 + (0 < nused < nv) * (2 if fmt >= 8 else 1)])
            ):
                raise CodecError("meshtrav: corrupt stream (bad prediction mode)")
            mant, recency = (select >> 4) & 1, select >> 5
            select, mix, fcode = select & 1, (select >> 1) & 1, (select >> 2) & 3
            if (fcode and lin is None) or ((mant or recency) and not mix):
                raise CodecError("meshtrav: corrupt stream (bad prediction mode)")
            pal, offsets = _decode_palettes(dec, st_conn, nv, top, fmt)
            starts, tri, prefs, kind = _predictors(faces, nv)
            nbs, nbr = _earlier_neighbours(faces, nv)
            n = nused if near else nv  # near: the unreferenced vertices come after
            st_pos, mix_weights = pos_mix_model() if mix else (states(_pos_states(fcode)), None)
            q = dec.code_positions(
                starts[: n + 1],
                tri,
                prefs[:n],
                (kind + 8 * _border_vertices(faces, nv))[:n],
                top,
                st_pos,
                _POS_MARKOV,
                pal,
                offsets,
                nbs[: n + 1],
                nbr,
                BLEND_WEIGHTS[blend[0]] + 16 * BLEND_WEIGHTS[blend[1]] + 256 * rule,
                select
                | dups << 1
                | normal << 2
                | (mirror > 0) << 3
                | mix << 4
                | fcode << 5
                | mant << 7
                | recency << 8,
                max(mirror - 1, 0),
                m_s2,
                mix_weights,
                lin,
            )
            if near:
                q = np.concatenate([q, _decode_near(dec, q, nv - nused, top, near, faces)])
        except CodecError:
            raise
        except (DecodeError, ValueError) as exc:  # ValueError: sizes the stream got wrong
            raise CodecError(f"meshtrav: corrupt stream ({exc})") from None
        mesh = Mesh(g.dequantise(q.reshape(nv, 3), origin, step), faces)
        if "attrs" in streams:
            self._decode_attributes(mesh, streams, nv, nf)
        return mesh

    def _decode_attributes(self, mesh: Mesh, streams, nv: int, nf: int) -> None:
        descs = g.unpack_json(streams["attrs"], "meshtrav")
        if not isinstance(descs, list):
            raise CodecError("meshtrav: bad attribute list")
        parts: dict[str, np.ndarray] = {}
        for i, desc in enumerate(descs):
            if not isinstance(desc, dict) or not isinstance(desc.get("key"), str):
                raise CodecError("meshtrav: bad attribute list")
            rows = desc.get("rows")
            if not isinstance(rows, int) or not 0 <= rows <= max(3 * nf, nv, 1 << 26):
                raise CodecError("meshtrav: bad attribute row count")
            if f"a{i}" not in streams:
                raise CodecError(f"meshtrav: missing stream a{i}")
            if desc.get("mode") == CORNER_MODE:
                if rows != 3 * nf:
                    raise CodecError("meshtrav: corner index count does not match the faces")
                parts[desc["key"]] = _decode_corner_indexes(
                    streams[f"a{i}"], mesh.faces.reshape(-1)
                )
            else:
                parts[desc["key"]] = g.decode_attribute(streams[f"a{i}"], desc, rows, "meshtrav")
        for key, arr in parts.items():
            kind, _, name = key.partition(":")
            if kind == "v":
                mesh.attributes[name] = arr
        for name in ("normal", "uv"):
            if f"{name}:vertex" in parts:
                setattr(mesh, name + "s", parts[f"{name}:vertex"])
            elif f"{name}:table" in parts and f"{name}:corners" in parts:
                setattr(mesh, name + "s", parts[f"{name}:table"])
                idx = parts[f"{name}:corners"].astype(np.int64)
                if idx.size != 3 * nf:
                    raise CodecError(f"meshtrav: {name} corner indexes do not match the faces")
                setattr(mesh, name + "_faces", idx.reshape(nf, 3))
