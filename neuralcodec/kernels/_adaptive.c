/* Adaptive binary context models over the shared range coder.
 *
 * Each context holds an integer probability state (int32: p1 in bits 0..15 = P(bit = 1) * 2^16,
 * an observation count in bits 16..23). A bit is coded with one of BANK_SIZE static binary tables
 * of the range coder (table p1 >> 4, built once by neuralcodec.entropy.adaptive), then the state
 * moves towards the bit:
 *
 *     p1 += ((bit ? 65536 : 0) - p1) / min(count + 2, RATE_LIMIT)     (C division, truncating)
 *     p1 = clamp(p1, P_MIN, P_MAX); count = min(count + 1, 255)
 *
 * so the first observations of a context count as in a frequency estimate and later ones decay
 * exponentially. Only integers decide a table, so encoder and decoder agree bit for bit.
 *
 * The encoder side turns (bits, contexts) into (values, table indexes) for RangeEncoder.encode
 * (the bitstream belongs to the range coder); the decoder side decodes bit by bit through the
 * range decoder's C API (entropy/_rangecoder_api.h), choosing each table from the state.
 *
 * Three binarisations share the state update:
 *   bits   one bit per symbol, context given per symbol
 *   bytes  8 bits per byte, MSB first, down a binary tree: context = base * 255 + node - 1
 *          (node 1..255 = 1 followed by the bits seen so far): an adaptive model over the
 *          256 byte values conditioned on a per-byte base context
 *   ints   signed integers: zero flag, sign, unary exponent k = floor(log2 |v|) (at most 31
 *          ones, no terminator after 31), the mantissa's top bit with a context per k, the other
 *          mantissa bits at probability 1/2. Contexts: 64 per set; the set of value i is
 *          sets[i] * markov + min(bit length of |previous value|, markov - 1) (markov = 1: no
 *          dependence on the previous value); markov = -m: order 2, (sets[i] * m + class of the
 *          previous value) * m + class of the one before, m classes each.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../entropy/_rangecoder_api.h"

#define BANK_SHIFT 4
#define BANK_SIZE (1 << (16 - BANK_SHIFT))
#define HALF_TABLE (BANK_SIZE / 2)
#define RATE_LIMIT 32
#define P_MIN 32
#define P_MAX (65536 - 32)
#define INT_CTX 64

static const NcRangeDecoderApi *rc_api;

static inline int32_t state_table(int32_t s) { return (s & 0xFFFF) >> BANK_SHIFT; }

/* The state s moves towards the bit at rate 1 / min(n + 2, limit), n the bits it has seen. */
static inline int32_t rate_update(int32_t s, int bit, int32_t limit)
{
    int32_t p = s & 0xFFFF, n = (s >> 16) & 0xFF;
    int32_t d = n + 2 < limit ? n + 2 : limit;
    p += ((bit ? 65536 : 0) - p) / d;
    p = p < P_MIN ? P_MIN : (p > P_MAX ? P_MAX : p);
    n = n < 255 ? n + 1 : 255;
    return p | (n << 16);
}

static inline int32_t state_update(int32_t s, int bit) { return rate_update(s, bit, RATE_LIMIT); }

static inline int64_t floor_div(int64_t a, int64_t b) /* b > 0 */
{
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* ----------------------------------------------------------------------------- buffers */

static int get_i32(PyObject *obj, Py_buffer *view, int writable, const char *name)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return -1;
    const char *f = view->format ? view->format : "B";
    if (*f == '@' || *f == '=' || *f == '<')
        f++;
    if (view->itemsize != 4 || !(strcmp(f, "i") == 0 || strcmp(f, "l") == 0)) {
        PyErr_Format(PyExc_TypeError, "%s must be a contiguous int32 buffer", name);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

#define MAXBUF 12
typedef struct {
    Py_buffer v[MAXBUF];
    int n;
} Bufs;

static int32_t *take(Bufs *b, PyObject *obj, int writable, const char *name, Py_ssize_t *len)
{
    if (get_i32(obj, &b->v[b->n], writable, name) < 0)
        return NULL;
    *len = b->v[b->n].len / 4;
    return (int32_t *)b->v[b->n++].buf;
}

static void release(Bufs *b)
{
    for (int i = 0; i < b->n; i++)
        PyBuffer_Release(&b->v[i]);
    b->n = 0;
}

/* The range decoder's run over the binary table bank, or NULL with the error set. */
static NcDecodeRun *begin_bank(PyObject *decoder, PyObject *bank)
{
    NcDecodeRun *run = rc_api->begin(decoder, bank);
    if (!run)
        return NULL;
    if (rc_api->num_tables(run) != BANK_SIZE) {
        rc_api->end(run, 0);
        PyErr_SetString(PyExc_ValueError, "adaptive: not the binary table bank");
        return NULL;
    }
    return run;
}

static int check_states(const int32_t *st, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        int32_t p = st[i] & 0xFFFF;
        if (st[i] < 0 || (st[i] >> 24) || p < P_MIN || p > P_MAX) {
            PyErr_SetString(PyExc_ValueError, "adaptive: invalid context state");
            return -1;
        }
    }
    return 0;
}

static int check_ctx(const int32_t *ctx, Py_ssize_t n, Py_ssize_t nctx, const char *what)
{
    for (Py_ssize_t i = 0; i < n; i++)
        if (ctx[i] < 0 || ctx[i] >= nctx) {
            PyErr_Format(PyExc_ValueError, "adaptive: %s %d outside 0..%zd", what, (int)ctx[i],
                         nctx - 1);
            return -1;
        }
    return 0;
}

/* ----------------------------------------------------------------------------- bits */

static PyObject *bits_encode(PyObject *mod, PyObject *args)
{
    PyObject *ob, *oc, *os, *oi;
    if (!PyArg_ParseTuple(args, "OOOO:bits_encode", &ob, &oc, &os, &oi))
        return NULL;
    Bufs b = {.n = 0};
    Py_ssize_t n, nc, ns, ni;
    int32_t *bits, *ctx, *st, *idx;
    if (!(bits = take(&b, ob, 0, "bits", &n)) || !(ctx = take(&b, oc, 0, "contexts", &nc)) ||
        !(st = take(&b, os, 1, "states", &ns)) || !(idx = take(&b, oi, 1, "indexes", &ni)))
        goto fail;
    if (nc != n || ni != n) {
        PyErr_SetString(PyExc_ValueError, "adaptive: bits, contexts, indexes differ in size");
        goto fail;
    }
    if (check_states(st, ns) < 0 || check_ctx(ctx, n, ns, "context") < 0)
        goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        int32_t c = ctx[i];
        idx[i] = state_table(st[c]);
        st[c] = state_update(st[c], bits[i] != 0);
    }
    release(&b);
    Py_RETURN_NONE;
fail:
    release(&b);
    return NULL;
}

static PyObject *bits_decode(PyObject *mod, PyObject *args)
{
    PyObject *odec, *otab, *oc, *os, *oo;
    if (!PyArg_ParseTuple(args, "OOOOO:bits_decode", &odec, &otab, &oc, &os, &oo))
        return NULL;
    Bufs b = {.n = 0};
    Py_ssize_t n, ns, no;
    int32_t *ctx, *st, *out;
    if (!(ctx = take(&b, oc, 0, "contexts", &n)) || !(st = take(&b, os, 1, "states", &ns)) ||
        !(out = take(&b, oo, 1, "out", &no)))
        goto fail;
    if (no != n) {
        PyErr_SetString(PyExc_ValueError, "adaptive: contexts and out differ in size");
        goto fail;
    }
    if (check_states(st, ns) < 0 || check_ctx(ctx, n, ns, "context") < 0)
        goto fail;
    NcDecodeRun *run = begin_bank(odec, otab);
    if (!run)
        goto fail;
    int status = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        int32_t c = ctx[i], v;
        if (rc_api->decode(run, state_table(st[c]), &v) < 0 || (v != 0 && v != 1)) {
            status = -1;
            break;
        }
        out[i] = v;
        st[c] = state_update(st[c], v);
    }
    Py_END_ALLOW_THREADS
    if (rc_api->end(run, status) < 0)
        goto fail;
    release(&b);
    Py_RETURN_NONE;
fail:
    release(&b);
    return NULL;
}

/* ----------------------------------------------------------------------------- bytes */

static PyObject *bytes_encode(PyObject *mod, PyObject *args)
{
    PyObject *ob, *oc, *os, *ov, *oi;
    if (!PyArg_ParseTuple(args, "OOOOO:bytes_encode", &ob, &oc, &os, &ov, &oi))
        return NULL;
    Bufs b = {.n = 0};
    Py_ssize_t n, nc, ns, nv, ni;
    int32_t *bytes, *base, *st, *val, *idx;
    if (!(bytes = take(&b, ob, 0, "bytes", &n)) || !(base = take(&b, oc, 0, "bases", &nc)) ||
        !(st = take(&b, os, 1, "states", &ns)) || !(val = take(&b, ov, 1, "values", &nv)) ||
        !(idx = take(&b, oi, 1, "indexes", &ni)))
        goto fail;
    if (nc != n || nv != 8 * n || ni != 8 * n) {
        PyErr_SetString(PyExc_ValueError, "adaptive: bytes_encode sizes disagree");
        goto fail;
    }
    if (check_states(st, ns) < 0 || check_ctx(base, n, ns / 255, "base context") < 0)
        goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        int32_t node = 1, by = bytes[i] & 0xFF;
        for (int k = 7; k >= 0; k--) {
            int bit = (by >> k) & 1;
            int32_t c = base[i] * 255 + node - 1;
            val[8 * i + 7 - k] = bit;
            idx[8 * i + 7 - k] = state_table(st[c]);
            st[c] = state_update(st[c], bit);
            node = 2 * node + bit;
        }
    }
    release(&b);
    Py_RETURN_NONE;
fail:
    release(&b);
    return NULL;
}

static PyObject *bytes_decode(PyObject *mod, PyObject *args)
{
    PyObject *odec, *otab, *oc, *os, *oo;
    if (!PyArg_ParseTuple(args, "OOOOO:bytes_decode", &odec, &otab, &oc, &os, &oo))
        return NULL;
    Bufs b = {.n = 0};
    Py_ssize_t n, ns, no;
    int32_t *base, *st, *out;
    if (!(base = take(&b, oc, 0, "bases", &n)) || !(st = take(&b, os, 1, "states", &ns)) ||
        !(out = take(&b, oo, 1, "out", &no)))
        goto fail;
    if (no != n) {
        PyErr_SetString(PyExc_ValueError, "adaptive: bases and out differ in size");
        goto fail;
    }
    if (check_states(st, ns) < 0 || check_ctx(base, n, ns / 255, "base context") < 0)
        goto fail;
    NcDecodeRun *run = begin_bank(odec, otab);
    if (!run)
        goto fail;
    int status = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n && status == 0; i++) {
        int32_t node = 1;
        for (int k = 0; k < 8; k++) {
            int32_t c = base[i] * 255 + node - 1, v;
            if (rc_api->decode(run, state_table(st[c]), &v) < 0 || (v != 0 && v != 1)) {
                status = -1;
                break;
            }
            st[c] = state_update(st[c], v);
            node = 2 * node + v;
        }
        out[i] = node - 256;
    }
    Py_END_ALLOW_THREADS
    if (rc_api->end(run, status) < 0)
        goto fail;
    release(&b);
    Py_RETURN_NONE;
fail:
    release(&b);
    return NULL;
}

/* ----------------------------------------------------------------------------- ints */

static inline int bitlen_u32(uint32_t m) /* m >= 1 */
{
    return 31 - __builtin_clz(m);
}

static inline int32_t bitlen_class(int64_t v, int m)
{
    uint64_t a = (uint64_t)(v < 0 ? -v : v);
    int32_t cls = 0;
    while (a && cls < m - 1) { /* bit length of |v|, capped at m - 1 */
        a >>= 1;
        cls++;
    }
    return cls;
}

/* markov > 0: order 1 (markov classes of the previous value); markov < 0: order 2 (-markov
 * classes of each of the two previous values). */
static inline int32_t int_set(const int32_t *sets, Py_ssize_t i, int markov, int64_t prev,
                              int64_t prev2)
{
    if (markov > 0)
        return sets[i] * markov + bitlen_class(prev, markov);
    int m = -markov;
    return (sets[i] * m + bitlen_class(prev, m)) * m + bitlen_class(prev2, m);
}

static inline Py_ssize_t markov_classes(int markov)
{
    return markov > 0 ? markov : (Py_ssize_t)markov * markov;
}

/* Symbols of one value; writes into val/idx from *pos; returns nothing (the caller sized them). */
static void int_encode_one(int32_t v, int32_t *st, int32_t c0, int32_t *val, int32_t *idx,
                           Py_ssize_t *pos)
{
    Py_ssize_t p = *pos;
#define PUT(bit, ctx)                                                                             \
    do {                                                                                         \
        val[p] = (bit);                                                                          \
        idx[p++] = state_table(st[ctx]);                                                         \
        st[ctx] = state_update(st[ctx], (bit));                                                  \
    } while (0)
    PUT(v != 0, c0);
    if (v != 0) {
        PUT(v < 0, c0 + 1);
        uint32_t m = v < 0 ? (uint32_t)(-(int64_t)v) : (uint32_t)v;
        int k = bitlen_u32(m);
        for (int i = 0; i < k; i++)
            PUT(1, c0 + 2 + i);
        if (k < 31)
            PUT(0, c0 + 2 + k);
        if (k >= 1) {
            int c = c0 + 33 + (k < 30 ? k : 30);
            PUT((int)((m >> (k - 1)) & 1), c);
            for (int i = k - 2; i >= 0; i--) {
                val[p] = (int32_t)((m >> i) & 1);
                idx[p++] = HALF_TABLE;
            }
        }
    }
#undef PUT
    *pos = p;
}

static PyObject *ints_encode(PyObject *mod, PyObject *args)
{
    PyObject *ov, *oset, *os, *oval, *oidx;
    int markov;
    if (!PyArg_ParseTuple(args, "OOOiOO:ints_encode", &ov, &oset, &os, &markov, &oval, &oidx))
        return NULL;
    Bufs b = {.n = 0};
    Py_ssize_t n, nset, ns, nval, nidx, pos = 0;
    int32_t *v, *sets, *st, *val, *idx;
    if (!(v = take(&b, ov, 0, "values", &n)) || !(sets = take(&b, oset, 0, "sets", &nset)) ||
        !(st = take(&b, os, 1, "states", &ns)) || !(val = take(&b, oval, 1, "symbols", &nval)) ||
        !(idx = take(&b, oidx, 1, "indexes", &nidx)))
        goto fail;
    if (markov == 0 || markov < -64 || nset != n || nidx != nval || nval < 65 * n) {
        PyErr_SetString(PyExc_ValueError, "adaptive: ints_encode sizes disagree");
        goto fail;
    }
    if (check_states(st, ns) < 0 || check_ctx(sets, n, ns / INT_CTX / markov_classes(markov), "set") < 0)
        goto fail;
    int64_t prev = 0, prev2 = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int32_t c0 = int_set(sets, i, markov, prev, prev2) * INT_CTX;
        int_encode_one(v[i], st, c0, val, idx, &pos);
        prev2 = prev;
        prev = v[i];
    }
    release(&b);
    return PyLong_FromSsize_t(pos);
fail:
    release(&b);
    return NULL;
}

/* Decodes one value with the 64 contexts from c0; 0 or -1 (inconsistent stream). */
static int int_decode_one(NcDecodeRun *run, int32_t *st, int32_t c0, int32_t *out)
{
    int32_t b;
#define GET(ctx)                                                                                  \
    do {                                                                                         \
        if (rc_api->decode(run, state_table(st[ctx]), &b) < 0 || (b != 0 && b != 1))             \
            return -1;                                                                           \
        st[ctx] = state_update(st[ctx], b);                                                      \
    } while (0)
    GET(c0);
    if (!b) {
        *out = 0;
        return 0;
    }
    GET(c0 + 1);
    int neg = b, k = 0;
    while (k < 31) {
        GET(c0 + 2 + k);
        if (!b)
            break;
        k++;
    }
    int64_t m = (int64_t)1 << k;
    if (k >= 1) {
        GET(c0 + 33 + (k < 30 ? k : 30));
        m |= (int64_t)b << (k - 1);
        for (int j = k - 2; j >= 0; j--) {
            if (rc_api->decode(run, HALF_TABLE, &b) < 0 || (b != 0 && b != 1))
                return -1;
            m |= (int64_t)b << j;
        }
    }
#undef GET
    int64_t val = neg ? -m : m;
    if (val < INT32_MIN || val > INT32_MAX)
        return -1;
    *out = (int32_t)val;
    return 0;
}

static int int_decode_run(NcDecodeRun *run, const int32_t *sets, int32_t *st, int markov,
                          int32_t *out, Py_ssize_t n)
{
    int64_t prev = 0, prev2 = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (int_decode_one(run, st, int_set(sets, i, markov, prev, prev2) * INT_CTX, &out[i]) < 0)
            return -1;
        prev2 = prev;
        prev = out[i];
    }
    return 0;
}

static PyObject *ints_decode(PyObject *mod, PyObject *args)
{
    PyObject *odec, *otab, *oset, *os, *oo;
    int markov;
    if (!PyArg_ParseTuple(args, "OOOOiO:ints_decode", &odec, &otab, &oset, &os, &markov, &oo))
        return NULL;
    Bufs b = {.n = 0};
    Py_ssize_t n, ns, no;
    int32_t *sets, *st, *out;
    if (!(sets = take(&b, oset, 0, "sets", &n)) || !(st = take(&b, os, 1, "states", &ns)) ||
        !(out = take(&b, oo, 1, "out", &no)))
        goto fail;
    if (markov == 0 || markov < -64 || no != n) {
        PyErr_SetString(PyExc_ValueError, "adaptive: sets and out differ in size");
        goto fail;
    }
    if (check_states(st, ns) < 0 || check_ctx(sets, n, ns / INT_CTX / markov_classes(markov), "set") < 0)
        goto fail;
    NcDecodeRun *run = begin_bank(odec, otab);
    if (!run)
        goto fail;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = int_decode_run(run, sets, st, markov, out, n);
    Py_END_ALLOW_THREADS
    if (rc_api->end(run, status) < 0)
        goto fail;
    release(&b);
    Py_RETURN_NONE;
fail:
    release(&b);
    return NULL;
}

/* ----------------------------------------------------------------------------- mesh positions
 *
 * positions_decode(decoder, bank, states, markov, starts, triples, refs, kinds, top, out,
 *                  palette, palette_offsets, nb_starts, nbrs, weight, select
 *                  [, mirror axis, mirror s2, mixer weights, linear coefficients])
 *
 * Format 6: select bit 4 codes the residuals with mixed contexts (mesh positions, mixed, below;
 * states of PMX_STATES, mixer weights given); linear coefficients (6 int32, or None) replace the
 * blend by the linear prediction (LIN_ below). Format 9: select bits 5..6 (c > 0) give the
 * prediction fractions F = c + 1 classes (POS_FRAC_MAX; plain states then POS_STATES_ALL sets).
 * Format 10: select bit 7 (with bit 4 only) codes the mantissas' second and third bits in
 * contexts (PMX_MANT_AT). Format 11: select bit 8 (with bit 4 only) adds the recency inputs and
 * the second refinement table to the mix (PMX_R_*; states of PMX_STATES_R, weights of
 * PMX_WEIGHTS_R).
 *
 * Rebuilds V vertices in order (3 int32 coordinates each). Vertex w has the parallelograms
 * triples[starts[w] .. starts[w+1]) = (a, b, o), all < w; with n >= 1 of them the prediction of
 * axis k is floor((2 sum(p[a] + p[b] - p[o]) + n) / (2 n)), else p[refs[w]] (refs[w] < w) or 0
 * (refs[w] == -1); clamped to 0..top. The residual of axis k is decoded as an integer (above) with
 * set ((kinds[w] * POS_SCALES + scale) * 3 + k), scale = min(bit length of
 * (edge >> r) + (spread << r), POS_SCALES - 1), edge = sum_k |p[a0] - p[b0]| for the first triple
 * (a0, b0, o0), spread = sum_k (max - min of the parallelograms' predictions), r = weight >> 8
 * (0..2, the mesh's scale rule; 0 before format 5); 0 without parallelograms. codecs/mesh_traversal.py computes
 * the same sets with NumPy for the encoder.
 *
 * Palettes: axis k has one when pal_off[k] < pal_off[k + 1]: the sorted distinct values
 * palette[pal_off[k] .. pal_off[k + 1]) that the axis takes. Its residual is then one of palette
 * indexes, against the index of the palette value nearest the (clamped) prediction (the lower one
 * on a tie), with set + POS_KINDS * POS_SCALES * 3 (their own statistics), and the coordinate
 * is the palette value at the decoded index.
 *
 * Blend: weight = t2 + 16 t1 (+ 256 r, the scale rule), t2 for vertices with 2+ parallelograms, t1 for those with one
 * (0..8 each). With t > 0, a vertex with at least two earlier neighbours
 * nbrs[nb_starts[w] .. nb_starts[w+1]) (all < w) is predicted by
 * floor(((8 - t) * P + t * C + 4) / 8), P the parallelogram prediction above and C the
 * rounded mean of those neighbours, floor((2 sum + m) / (2 m)) per axis.
 *
 * Selection (select = 1): before the residuals of a vertex with n >= 2 parallelograms, an
 * integer o (0..n) with set POS_OPT_BASE + (clamp(bitlen(spread) - bitlen(edge) + 4, 0, 7) * 3
 * + min(n, 4) - 2), spread = sum_k (max - min of the parallelograms' predictions), edge =
 * sum_k |p[a0] - p[b0]|: o = 0 keeps the prediction above, o >= 1 predicts by the o-th
 * parallelogram alone (the encoder's choice where the others cross a crease), and the residuals
 * then take kind POS_KINDS - 1 (their own statistics) in their sets.
 */
#define POS_OPT_BASE (2 * POS_KINDS * POS_SCALES * 3)
#define POS_OPT_SETS 24
/* Repeats (select bit 1): kinds[w] bit 3 marks the border vertices (on an edge of one triangle).
 * For each border vertex but the first, after its prediction, a flag (set POS_DUP_BASE + the
 * previous flag): 1 = its position is that of the earlier border vertex nearest (L1) to the
 * clamped prediction among the last POS_DUP_WINDOW ones (ties: the newest), and no residuals
 * follow (split vertices along seams, which other coders merge). */
#define POS_DUP_BASE (POS_OPT_BASE + POS_OPT_SETS)
#define POS_DUP_WINDOW 4096
#define POS_SCALES 16
#define POS_KINDS 5 /* 0..3 from kinds[], 4: one parallelogram chosen (selection) */
/* Normal axis (select bit 2): a vertex with parallelograms gets a normal estimate N, the sum of
 * the normals (a - o) x (b - o) of its parallelograms' triangles (each floor-divided by
 * 2^max(0, 2 bits - 27), bits = bit length of top, and turned to agree in sign with the first
 * one: dot product >= 0), then floor-divided by 2^max(0, bit length of max_k |N_k| - 20). Its
 * largest component (the first on a tie) names axis n; when N_n != 0 and axis n has no palette,
 * the other two axes are decoded first (n + 1, n + 2 mod 3), and axis n's residual is coded
 * against the tangent plane: the decoded value is p_n + d + r with p_n the clamped prediction,
 * d = clamp(floor((2 * num + N_n) / (2 N_n)), -top, top), num = -(N_i r_i + N_j r_j) over the
 * other two axes' value residuals (decoded value - clamped prediction), N turned so that
 * N_n > 0; set POS_NRM_BASE + kind * POS_SCALES + scale. On smooth surfaces the residual's
 * normal component is several times smaller than its tangential ones. */
#define POS_NRM_BASE (POS_DUP_BASE + 2)
#define POS_NRM_SETS (POS_KINDS * POS_SCALES)
/* Mirror (select bit 3; mirrored axis a and s2 given): models made of mirrored halves. Before
 * vertex w, the earlier vertex m nearest (L1; ties: the lowest number) to the mirror image of the
 * clamped prediction (axis a: s2 - p_a) among those in the 27 grid cells (side 2^max(0, bits - 6))
 * around that image; when there is one, a flag (set POS_MIR_BASE + the previous flag): 1 = w is
 * predicted by m's mirror image (clamped) instead, its residuals take kind 3 and scale 15 in their
 * sets (a combination no other vertex has: kind 3 has no parallelograms, so scale 0), and no
 * normal axis or repeat flag applies. */
#define POS_MIR_BASE (POS_NRM_BASE + POS_NRM_SETS)
#define POS_MIR_SETS 2
#define POS_SETS_BASE (POS_MIR_BASE + POS_MIR_SETS)
/* Prediction fractions (format 9, select bits 5..6 = c, F = c + 1 classes when c > 0): where a
 * vertex is predicted by the linear prediction (LIN_ below; not by a chosen parallelogram or a
 * mirror image) and axis k has no palette and is not the normal axis, the rounding of
 * floor((2 num + den) / (2 den)) = p leaves dd = (2 num + den) - 2 den p - den, -den <= dd < den
 * (the prediction before rounding is p + dd / (2 den)); when 0 <= p <= top, the residual is coded
 * negated where dd < 0 and its set moves by (1 + min(|dd| F / den, F - 1)) * POS_SETS_BASE: the
 * coder then knows on which side of p, and how far, the real-valued prediction lies, which at
 * low bit depths (residuals of a step or two) says much about the residual. */
#define POS_FRAC_MAX 4
#define POS_STATES_ALL (POS_SETS_BASE * (1 + POS_FRAC_MAX))

static inline int bitlen64(uint64_t a)
{
    int n = 0;
    while (a) {
        a >>= 1;
        n++;
    }
    return n;
}

typedef struct {
    int32_t *head, *next;
    uint32_t mask;
    int shift, axis;
    int64_t s2;
} MirrorGrid;

static inline uint32_t mg_hash(int64_t cx, int64_t cy, int64_t cz, uint32_t mask)
{
    uint64_t h = (uint64_t)cx * 73856093u ^ (uint64_t)cy * 19349663u ^ (uint64_t)cz * 83492791u;
    return (uint32_t)(h ^ (h >> 29)) & mask;
}

/* Fresh grid for n vertices of a grid of top + 1 values per axis; 0 or -1 (no memory). */
static int mg_init(MirrorGrid *g, Py_ssize_t n, int64_t top, int axis, int64_t s2)
{
    uint32_t size = 1;
    while (size < 2 * (uint64_t)n + 2 && size < (1u << 30))
        size <<= 1;
    g->head = malloc(size * sizeof(int32_t));
    g->next = malloc(((size_t)n + 1) * sizeof(int32_t));
    if (!g->head || !g->next) {
        free(g->head);
        free(g->next);
        g->head = g->next = NULL;
        return -1;
    }
    for (uint32_t i = 0; i < size; i++)
        g->head[i] = -1;
    g->mask = size - 1;
    int shift = bitlen64((uint64_t)top) - 6;
    g->shift = shift > 0 ? shift : 0;
    g->axis = axis;
    g->s2 = s2;
    return 0;
}

static void mg_free(MirrorGrid *g)
{
    free(g->head);
    free(g->next);
}

static inline void mg_insert(MirrorGrid *g, const int32_t *pos, int32_t v)
{
    const int32_t *x = pos + 3 * (Py_ssize_t)v;
    uint32_t h = mg_hash(x[0] >> g->shift, x[1] >> g->shift, x[2] >> g->shift, g->mask);
    g->next[v] = g->head[h];
    g->head[h] = v;
}

/* The inserted vertex nearest the mirror image of p (above), or -1. */
static int32_t mg_find(const MirrorGrid *g, const int32_t *pos, const int64_t p[3])
{
    int64_t t[3] = {p[0], p[1], p[2]}, c[3];
    t[g->axis] = g->s2 - t[g->axis];
    for (int k = 0; k < 3; k++)
        c[k] = floor_div(t[k], (int64_t)1 << g->shift);
    int32_t best = -1;
    int64_t bestd = 0;
    for (int dx = -1; dx <= 1; dx++)
        for (int dy = -1; dy <= 1; dy++)
            for (int dz = -1; dz <= 1; dz++) {
                int64_t cx = c[0] + dx, cy = c[1] + dy, cz = c[2] + dz;
                for (int32_t v = g->head[mg_hash(cx, cy, cz, g->mask)]; v >= 0; v = g->next[v]) {
                    const int32_t *x = pos + 3 * (Py_ssize_t)v;
                    if ((x[0] >> g->shift) != cx || (x[1] >> g->shift) != cy ||
                        (x[2] >> g->shift) != cz)
                        continue;
                    int64_t d = 0;
                    for (int k = 0; k < 3; k++) {
                        int64_t e = x[k] - t[k];
                        d += e < 0 ? -e : e;
                    }
                    if (best < 0 || d < bestd || (d == bestd && v < best)) {
                        best = v;
                        bestd = d;
                    }
                }
            }
    return best;
}


/* The normal estimate of a vertex from its parallelograms tri[s..e) (above); the axis n, or -1
 * when N is zero. N is turned so that N_n > 0. */
static int normal_axis(const int32_t *out, const int32_t *tri, int32_t s, int32_t e, int sh,
                       int64_t nrm[3])
{
    int64_t first[3] = {0, 0, 0};
    nrm[0] = nrm[1] = nrm[2] = 0;
    for (int32_t t = s; t < e; t++) {
        const int32_t *r = tri + 3 * t;
        int64_t da[3], db[3], c[3];
        for (int k = 0; k < 3; k++) {
            da[k] = (int64_t)out[3 * r[0] + k] - out[3 * r[2] + k];
            db[k] = (int64_t)out[3 * r[1] + k] - out[3 * r[2] + k];
        }
        c[0] = floor_div(da[1] * db[2] - da[2] * db[1], (int64_t)1 << sh);
        c[1] = floor_div(da[2] * db[0] - da[0] * db[2], (int64_t)1 << sh);
        c[2] = floor_div(da[0] * db[1] - da[1] * db[0], (int64_t)1 << sh);
        if (t == s)
            for (int k = 0; k < 3; k++)
                first[k] = c[k];
        int64_t dot = c[0] * first[0] + c[1] * first[1] + c[2] * first[2];
        for (int k = 0; k < 3; k++)
            nrm[k] += dot < 0 ? -c[k] : c[k];
    }
    int64_t m = 0;
    for (int k = 0; k < 3; k++) {
        int64_t a = nrm[k] < 0 ? -nrm[k] : nrm[k];
        m = a > m ? a : m;
    }
    if (m == 0)
        return -1;
    int sh2 = bitlen64((uint64_t)m) - 20;
    int n = 0;
    int64_t best = -1;
    for (int k = 0; k < 3; k++) {
        if (sh2 > 0)
            nrm[k] = floor_div(nrm[k], (int64_t)1 << sh2);
        int64_t a = nrm[k] < 0 ? -nrm[k] : nrm[k];
        if (a > best) {
            best = a;
            n = k;
        }
    }
    if (nrm[n] == 0)
        return -1;
    if (nrm[n] < 0)
        for (int k = 0; k < 3; k++)
            nrm[k] = -nrm[k];
    return n;
}

/* Index of the palette value nearest p (the lower one on a tie); n >= 1. */
static inline Py_ssize_t palette_nearest(const int32_t *pal, Py_ssize_t n, int64_t p)
{
    Py_ssize_t lo = 0, hi = n; /* first index with pal >= p */
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (pal[mid] < p)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == n)
        return n - 1;
    if (lo > 0 && p - pal[lo - 1] <= pal[lo] - p)
        return lo - 1;
    return lo;
}

/* ----------------------------------------------------------------------------- mesh positions, mixed
 *
 * Format 6 of meshtrav (select bit 4 of positions_decode, weights given): every residual of the
 * positions is binarised as ints_encode does (zero flag, sign, unary bit length, first mantissa
 * bit in contexts; the other mantissa bits at 1/2), and each context-coded bit mixes PMX_MODELS
 * adaptive predictions (the 64-context blocks of the value's models) in the logistic domain, as
 * the octree mixer does, in integers:
 *   p = squash(sum_m (w_m + v_m) * stretch(p_m) >> 17) (+ a bias input of 256), clamped to
 *   1..4095, with two weight vectors w (by the residual's slot and the bit's context index) and
 *   v (by N and the bit's context index), each trained on its own output squash(... >> 16);
 *   the bit is coded with bank table (p + a + 1) >> 1, clamped to 1..4095, a from a refinement
 *   table over 33 steps of stretch(p) (linearly interpolated, context: slot, N >> 2, the bit's
 *   context index; both steps move towards the bit at octree rate); then
 *   w_m += stretch(p_m) * ((bit << 12) - p_w) * PMX_LR >> 13 (clamped to +-2^24) and each model's
 *   state moves towards the bit (state_update).
 * The slot is the residual's place in its vertex (0..2, in coding order). Models (block
 * indexes; set = the residual's set as above):
 *   0: set                                    (the plain block: POS_STATES_ALL sets)
 *   1: PMX_M1 + set * 16 + N                  N: the earlier neighbours' residual magnitudes
 *   2: PMX_M2 + set * 8 + I                   I: the magnitudes of this vertex's earlier slots
 *   3: PMX_M3 + (slot * 16 + N) * 8 + I
 * with mag(v) = min(sum of |residual| over the three coded residuals of v, 2^20) (0 for repeats),
 * N = 0 without earlier neighbours, else 1 + min(bitlen(4 * sum of their mag // their count),
 * 14); I = min(bitlen(sum of |residual| of the vertex's earlier slots), 7). Flags (options,
 * mirror and repeat flags) stay plain (ints_encode's contexts). */
/* Linear prediction (format 6, coefficients given: A2 B2 G2 A1 B1 G1): a vertex with n
 * parallelograms (w, a, b | a, b, o), n <= LIN_MAX, and m earlier neighbours, 2 <= m <= LIN_MAX,
 * is predicted, instead of the blend, by E + A / 64 (E - O) + B / 64 (C - E) + G / 64 (C - R)
 * per axis (A, B, G = A2, B2, G2 for n >= 2, A1, B1, G1 for n = 1): E the mean of the edges'
 * midpoints (a + b) / 2, O the mean of the o, C the mean of the neighbours, R the mean over the
 * neighbours' own earlier neighbours (M of them, counted with repeats; the term is left out, G =
 * 0 and M = 1, when M is 0 or above LIN_M2_MAX); in integers floor((2 num + den) / (2 den)) with
 * num = ((64 + A - B) m sum(a + b) - 2 A m sum(o) + 2 (B + G) n sum(neighbours)) M
 *       - 2 G n m sum(second ring), den = 128 n m M. */
#define LIN_MAX 64
/* Format 7: 9 coefficients + a threshold T: vertices with n >= 2 whose parallelograms spread
 * widely, bitlen(spread) - bitlen(edge) >= T (spread and edge as for the scale), take A2' B2'
 * G2' (lin[3..5]), the other n >= 2 vertices lin[0..2], those with n = 1 lin[6..8]. */
#define LIN_SPLIT_LEN 10
#define LIN_SPLIT_MIN (-8)
#define LIN_SPLIT_MAX 8
#define LIN_M2_MAX 4096
#define LIN_G_MIN (-128)
#define LIN_G_MAX 128
#define LIN_A_MIN (-128)
#define LIN_A_MAX 128
#define LIN_B_MIN (-128)
#define LIN_B_MAX 256
#define PMX_MODELS 4
#define PMX_IN (PMX_MODELS + 1)
#define PMX_WSETS 3
#define PMX_WEIGHTS ((PMX_WSETS + 16) * INT_CTX * PMX_IN)
#define PMX_W2 (PMX_WSETS * INT_CTX * PMX_IN) /* the second vectors (by N) */
#define PMX_LR 4
#define PMX_W0 (1 << 14)
#define PMX_M1 POS_STATES_ALL
#define PMX_M2 (PMX_M1 + POS_STATES_ALL * 16)
#define PMX_M3 (PMX_M2 + POS_STATES_ALL * 8)
#define PMX_APM_AT ((PMX_M3 + 3 * 16 * 8) * INT_CTX) /* refinement tables (states) */
#define PMX_APM (3 * 4 * INT_CTX * 33)
/* Format 10 (slot | 4 when encoding, select bit 7 when decoding, only with mixing): the
 * mantissa's second bit of a residual with k >= 2 (k = floor(log2 |v|)) in a plain adaptive
 * context by k, its third (k >= 3) by k too (states 32 + k); states after the refinement tables,
 * fresh at 1/2, updated by pmx_mant_update. */
#define PMX_MANT_AT (PMX_APM_AT + PMX_APM)
#define PMX_MANT 64
#define PMX_STATES (PMX_MANT_AT + PMX_MANT)
#define PMX_MAG_CAP (1 << 20)
/* Format 11 (slot | 8 when encoding, select bit 8 when decoding, only with mixing): two more
 * mixer inputs that follow what model 0's context (set, bit) saw last, and a second refinement
 * table.
 *   fast: a copy of model 0's state moving at rate 1 / min(n + 2, PMX_R_FAST) (n the bits seen),
 *         i.e. mostly the last two or three bits of that context;
 *   history: the context's last PMX_R_HLEN bits (h = 1 + those bits behind a leading 1, 1..15)
 *         index an adaptive table per bit context (j, h) (state_update);
 *   each with one weight per weight vector of the mix (starting at 0), learning as the others;
 *   the coded probability (2 p + a + a2 + 2) >> 2 instead of (p + a + 1) >> 1, a2 from a second
 *   refinement table over the same 33 steps of stretch(p) in context of the bit alone (j).
 * States after PMX_STATES: the fast copies (POS_STATES_ALL * INT_CTX), the history tables
 * (INT_CTX * 16), the second refinement table (INT_CTX * 33); the extra weights (2 x 19 sets x
 * INT_CTX) and the histories (POS_STATES_ALL * INT_CTX, 0: none yet) after PMX_WEIGHTS, all 0
 * when fresh (pos_mix_model). */
#define PMX_R_FAST 3
#define PMX_R_HLEN 3
#define PMX_R_FAST_AT PMX_STATES
#define PMX_R_HTAB_AT (PMX_R_FAST_AT + (Py_ssize_t)POS_STATES_ALL * INT_CTX)
#define PMX_R_APM_AT (PMX_R_HTAB_AT + INT_CTX * (2 << PMX_R_HLEN))
#define PMX_STATES_R (PMX_R_APM_AT + INT_CTX * 33)
#define PMX_R_W_AT PMX_WEIGHTS
#define PMX_R_WSET ((PMX_WSETS + 16) * INT_CTX) /* one input's weights */
#define PMX_R_H_AT (PMX_R_W_AT + 2 * PMX_R_WSET)
#define PMX_WEIGHTS_R (PMX_R_H_AT + (Py_ssize_t)POS_STATES_ALL * INT_CTX)

static int16_t omx_stretch_t[4096];
static inline int32_t omx_squash(int32_t d);
static inline int32_t omx_clamp_w(int64_t w);
static inline int32_t omx_update(int32_t s, int bit);
static void omx_init(void);

/* One binary coder for the mixing models (the octree's and the mesh positions'): encoding when
 * run == NULL (symbols to val / idx), else decoding. */
typedef struct {
    NcDecodeRun *run;
    int32_t *val, *idx;
    Py_ssize_t pos;
} OmxCoder;

/* Codes one bit with table t (encoding: `bit`; decoding: returns the decoded bit or -1). */
static inline int omx_code(OmxCoder *c, int32_t t, int bit)
{
    if (!c->run) {
        c->val[c->pos] = bit;
        c->idx[c->pos++] = t;
        return bit;
    }
    int32_t v;
    if (rc_api->decode(c->run, t, &v) < 0 || (v != 0 && v != 1))
        return -1;
    return v;
}

typedef struct {
    OmxCoder bits;
    int32_t *w2;   /* the second weight vector set of the value (chosen by N) */
    int32_t *mant; /* format 10: the mantissa contexts (PMX_MANT states), NULL: at 1/2 */
    int32_t *rst;  /* format 11: the states (PMX_STATES_R), NULL: off */
    int32_t *rw;   /* format 11: the weights (PMX_WEIGHTS_R) */
    Py_ssize_t rw1, rw2; /* format 11: the residual's extra weight sets (by slot, by N) */
} PmxCoder;

/* Format 11's fast copies: rate 1 / min(n + 2, PMX_R_FAST). */
static inline int32_t pmx_fast_update(int32_t s, int bit)
{
    return rate_update(s, bit, PMX_R_FAST);
}

/* Format 11 on (st, w: the model's states and weights) or off (st NULL) for the next residual. */
static inline void pmx_recency(PmxCoder *c, int32_t *st, int32_t *w, int slot, int32_t nbc)
{
    c->rst = st;
    c->rw = w;
    c->rw1 = PMX_R_W_AT + (Py_ssize_t)slot * INT_CTX;
    c->rw2 = PMX_R_W_AT + (Py_ssize_t)(PMX_WSETS + nbc) * INT_CTX;
}

/* The mantissa contexts' update: the running frequency (rate 1 / (n + 2), n <= 255 the bits
 * seen): their skews are small and steady, which state_update's faster rate would drown. */
static inline int32_t pmx_mant_update(int32_t s, int bit)
{
    int32_t p = s & 0xFFFF, n = (s >> 16) & 0xFF;
    p += ((bit ? 65536 : 0) - p) / (n + 2);
    p = p < P_MIN ? P_MIN : (p > P_MAX ? P_MAX : p);
    n = n < 255 ? n + 1 : 255;
    return p | (n << 16);
}

static inline int pmx_code(PmxCoder *c, int32_t t, int bit)
{
    return omx_code(&c->bits, t, bit);
}

static inline int pmx_bit(PmxCoder *c, int32_t *st, const Py_ssize_t *cx, int32_t *w, int32_t *apm,
                          int j, int bit)
{
    int32_t in[PMX_IN], *wj = w + j * PMX_IN, *wj2 = c->w2 + j * PMX_IN;
    int64_t dot = 0, dot2 = 0;
    for (int m = 0; m < PMX_MODELS; m++) {
        in[m] = omx_stretch_t[(st[cx[m] + j] & 0xFFFF) >> 4];
        dot += (int64_t)wj[m] * in[m];
        dot2 += (int64_t)wj2[m] * in[m];
    }
    in[PMX_MODELS] = 256;
    dot += (int64_t)wj[PMX_MODELS] * 256;
    dot2 += (int64_t)wj2[PMX_MODELS] * 256;
    int32_t rin[2] = {0, 0}, *rs = NULL, *rh = NULL, *rt = NULL, *rw1 = NULL, *rw2 = NULL;
    if (c->rst) { /* format 11: the fast copy and the history of model 0's context */
        rs = c->rst + PMX_R_FAST_AT + cx[0] + j;
        rh = c->rw + PMX_R_H_AT + cx[0] + j;
        int32_t h = *rh & ((2 << PMX_R_HLEN) - 1); /* masked: weights come from the caller */
        rt = c->rst + PMX_R_HTAB_AT + j * (2 << PMX_R_HLEN) + (h ? h : 1);
        rw1 = c->rw + c->rw1 + j;
        rw2 = c->rw + c->rw2 + j;
        rin[0] = omx_stretch_t[(*rs & 0xFFFF) >> 4];
        rin[1] = omx_stretch_t[(*rt & 0xFFFF) >> 4];
        for (int m = 0; m < 2; m++) {
            dot += (int64_t)rw1[m * PMX_R_WSET] * rin[m];
            dot2 += (int64_t)rw2[m * PMX_R_WSET] * rin[m];
        }
    }
    int32_t p1 = omx_squash((int32_t)(dot >> 16)), p2 = omx_squash((int32_t)(dot2 >> 16));
    int32_t p = omx_squash((int32_t)((dot + dot2) >> 17));
    p = p < 1 ? 1 : (p > 4095 ? 4095 : p);
    int32_t sp = omx_stretch_t[p] + 2048, lo = sp >> 7, wt = sp & 127;
    int32_t *ap = apm + j * 33 + lo, *bp = NULL;
    int32_t pa = ((ap[0] & 0xFFFF) * (128 - wt) + (ap[wt ? 1 : 0] & 0xFFFF) * wt) >> 11;
    int32_t pf;
    if (rs) { /* format 11: the second refinement table (context: the bit alone) */
        bp = c->rst + PMX_R_APM_AT + j * 33 + lo;
        int32_t pb = ((bp[0] & 0xFFFF) * (128 - wt) + (bp[wt ? 1 : 0] & 0xFFFF) * wt) >> 11;
        pf = (2 * p + pa + pb + 2) >> 2;
    } else
        pf = (p + pa + 1) >> 1;
    pf = pf < 1 ? 1 : (pf > 4095 ? 4095 : pf);
    int b = pmx_code(c, pf, bit);
    if (b < 0)
        return -1;
    ap[0] = omx_update(ap[0], b);
    if (wt)
        ap[1] = omx_update(ap[1], b);
    int32_t err = ((b << 12) - p1) * PMX_LR, err2 = ((b << 12) - p2) * PMX_LR;
    for (int m = 0; m < PMX_IN; m++) {
        wj[m] = omx_clamp_w((int64_t)wj[m] + (((int64_t)in[m] * err) >> 13));
        wj2[m] = omx_clamp_w((int64_t)wj2[m] + (((int64_t)in[m] * err2) >> 13));
    }
    for (int m = 0; m < PMX_MODELS; m++)
        st[cx[m] + j] = state_update(st[cx[m] + j], b);
    if (rs) {
        bp[0] = omx_update(bp[0], b);
        if (wt)
            bp[1] = omx_update(bp[1], b);
        for (int m = 0; m < 2; m++) {
            Py_ssize_t o = m * PMX_R_WSET;
            rw1[o] = omx_clamp_w((int64_t)rw1[o] + (((int64_t)rin[m] * err) >> 13));
            rw2[o] = omx_clamp_w((int64_t)rw2[o] + (((int64_t)rin[m] * err2) >> 13));
        }
        *rs = pmx_fast_update(*rs, b);
        *rt = state_update(*rt, b);
        int32_t h = *rh & ((2 << PMX_R_HLEN) - 1);
        h = ((h ? h : 1) << 1) | b; /* a leading 1, then up to PMX_R_HLEN bits */
        *rh = h >= (2 << PMX_R_HLEN) ? (h & ((1 << PMX_R_HLEN) - 1)) | (1 << PMX_R_HLEN) : h;
    }
    return b;
}

/* One integer with mixed contexts; cx: the models' first states (block * INT_CTX); w: the weight
 * set's first weight. Encoding: v; decoding: *out. 0 or -1. */
static int pmx_int(PmxCoder *c, int32_t *st, const Py_ssize_t *cx, int32_t *w, int32_t *apm,
                   int32_t v, int32_t *out)
{
    int enc = c->bits.run == NULL, b;
    uint32_t m = enc ? (v < 0 ? (uint32_t)(-(int64_t)v) : (uint32_t)v) : 0;
    int k = enc && m ? bitlen_u32(m) : 0;
    if ((b = pmx_bit(c, st, cx, w, apm, 0, enc ? v != 0 : 0)) < 0)
        return -1;
    if (!b) {
        *out = 0;
        return 0;
    }
    int neg = pmx_bit(c, st, cx, w, apm, 1, enc ? v < 0 : 0);
    if (neg < 0)
        return -1;
    int kk = 0;
    while (kk < 31) {
        if ((b = pmx_bit(c, st, cx, w, apm, 2 + kk, enc ? kk < k : 0)) < 0)
            return -1;
        if (!b)
            break;
        kk++;
    }
    int64_t mm = (int64_t)1 << kk;
    if (kk >= 1) {
        if ((b = pmx_bit(c, st, cx, w, apm, 33 + (kk < 30 ? kk : 30),
                         enc ? (int)((m >> (kk - 1)) & 1) : 0)) < 0)
            return -1;
        mm |= (int64_t)b << (kk - 1);
        for (int j = kk - 2; j >= 0; j--) {
            int32_t *ms = NULL;
            if (c->mant && j >= kk - 3) /* kk <= 31: index < 64 */
                ms = c->mant + (j == kk - 2 ? 0 : 32) + kk;
            if (ms) {
                if ((b = pmx_code(c, state_table(*ms), enc ? (int)((m >> j) & 1) : 0)) < 0)
                    return -1;
                *ms = pmx_mant_update(*ms, b);
            } else if ((b = pmx_code(c, HALF_TABLE, enc ? (int)((m >> j) & 1) : 0)) < 0)
                return -1;
            mm |= (int64_t)b << j;
        }
    }
    int64_t val = neg ? -mm : mm;
    if (val < INT32_MIN || val > INT32_MAX)
        return -1;
    *out = (int32_t)val;
    return 0;
}

static inline int32_t pmx_nb_class(const int32_t *mag, const int32_t *nbrs, int32_t s, int32_t e)
{
    if (e <= s)
        return 0;
    int64_t sum = 0;
    for (int32_t j = s; j < e; j++)
        sum += mag[nbrs[j]];
    int n = bitlen64((uint64_t)(4 * sum / (e - s)));
    return 1 + (n < 14 ? n : 14);
}

static inline void pmx_models(Py_ssize_t cx[PMX_MODELS], int32_t set, int slot, int32_t nbc,
                              int64_t done)
{
    int inc = bitlen64((uint64_t)done);
    inc = inc < 7 ? inc : 7;
    cx[0] = (Py_ssize_t)set * INT_CTX;
    cx[1] = (PMX_M1 + (Py_ssize_t)set * 16 + nbc) * INT_CTX;
    cx[2] = (PMX_M2 + (Py_ssize_t)set * 8 + inc) * INT_CTX;
    cx[3] = (PMX_M3 + ((Py_ssize_t)slot * 16 + nbc) * 8 + inc) * INT_CTX;
}

/* pos_mix_encode(values, sets, slots, vids, nb_starts, nbrs, states, weights, symbols, indexes)
 *     -> symbol count
 * The encoder's side: values in coding order with their sets (as ints_encode, markov 1), slots
 * (0..2 for residuals, -1 for flags: plain) and vertex ids (non-decreasing; the vertex whose
 * residual it is), the earlier-neighbour lists of the decoder. states: PMX_STATES,
 * weights: PMX_WEIGHTS (fresh: pmx_init); slot | 4: format 10's mantissa contexts; slot | 8:
 * format 11's recency inputs (states: PMX_STATES_R, weights: PMX_WEIGHTS_R). */
static PyObject *pos_mix_encode(PyObject *mod, PyObject *args)
{
    PyObject *ov, *oset, *oslot, *ovid, *onbs, *onbr, *os, *ow, *oval, *oidx;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOO:pos_mix_encode", &ov, &oset, &oslot, &ovid, &onbs,
                          &onbr, &os, &ow, &oval, &oidx))
        return NULL;
    Py_buffer views[10];
    PyObject *objs[10] = {ov, oset, oslot, ovid, onbs, onbr, os, ow, oval, oidx};
    const char *names[10] = {"values", "sets", "slots", "vertex ids", "neighbour starts",
                             "neighbours", "states", "weights", "symbols", "indexes"};
    int nview = 0;
    for (; nview < 10; nview++)
        if (get_i32(objs[nview], &views[nview], nview >= 6, names[nview]) < 0)
            goto fail;
    int32_t *v = views[0].buf, *sets = views[1].buf, *slots = views[2].buf, *vid = views[3].buf;
    int32_t *nbs = views[4].buf, *nbr = views[5].buf, *st = views[6].buf, *w = views[7].buf;
    Py_ssize_t n = views[0].len / 4, nv = views[4].len / 4 - 1, nnb = views[5].len / 4;
    if (views[1].len / 4 != n || views[2].len / 4 != n || views[3].len / 4 != n || nv < 0 ||
        views[6].len / 4 < (Py_ssize_t)PMX_STATES ||
        (views[7].len / 4 != PMX_WEIGHTS && views[7].len / 4 != PMX_WEIGHTS_R) ||
        views[8].len != views[9].len || views[8].len / 4 < 65 * n) {
        PyErr_SetString(PyExc_ValueError, "adaptive: pos_mix_encode sizes disagree");
        goto fail;
    }
    int recency_ok = views[6].len / 4 >= (Py_ssize_t)PMX_STATES_R &&
                     views[7].len / 4 == PMX_WEIGHTS_R; /* format 11 possible */
    omx_init();
    int32_t *mag = calloc((size_t)nv + 1, sizeof(int32_t));
    if (!mag) {
        PyErr_NoMemory();
        goto fail;
    }
    PmxCoder c = {.bits = {.run = NULL, .val = views[8].buf, .idx = views[9].buf, .pos = 0}};
    int32_t cur = -1, nbc = 0;
    int64_t done = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int32_t set = sets[i];
        if (set < 0 || set >= POS_STATES_ALL || vid[i] < 0 || vid[i] >= nv ||
            (cur >= 0 && vid[i] < cur) || (slots[i] >= 0 && (slots[i] & 3) > 2) || slots[i] > 14 ||
            (slots[i] >= 8 && !recency_ok)) {
            free(mag);
            PyErr_SetString(PyExc_ValueError, "adaptive: pos_mix_encode bad set / vertex");
            goto fail;
        }
        if (vid[i] != cur) {
            cur = vid[i];
            int32_t s = nbs[cur], e = nbs[cur + 1];
            if (s < 0 || e < s || e > nnb) {
                free(mag);
                PyErr_SetString(PyExc_ValueError, "adaptive: pos_mix_encode bad neighbours");
                goto fail;
            }
            for (int32_t j = s; j < e; j++)
                if (nbr[j] < 0 || nbr[j] >= cur) {
                    free(mag);
                    PyErr_SetString(PyExc_ValueError, "adaptive: pos_mix_encode bad neighbours");
                    goto fail;
                }
            nbc = pmx_nb_class(mag, nbr, s, e);
            done = 0;
        }
        if (slots[i] < 0) {
            int_encode_one(v[i], st, set * INT_CTX, c.bits.val, c.bits.idx, &c.bits.pos);
            continue;
        }
        Py_ssize_t cx[PMX_MODELS];
        int32_t o, slot = slots[i] & 3;
        pmx_models(cx, set, slot, nbc, done);
        c.w2 = w + PMX_W2 + nbc * INT_CTX * PMX_IN;
        c.mant = (slots[i] & 4) ? st + PMX_MANT_AT : NULL;
        pmx_recency(&c, (slots[i] & 8) ? st : NULL, w, slot, nbc);
        pmx_int(&c, st, cx, w + slot * INT_CTX * PMX_IN,
                st + PMX_APM_AT + (slot * 4 + (nbc >> 2)) * INT_CTX * 33, v[i], &o);
        int64_t a = v[i] < 0 ? -(int64_t)v[i] : v[i];
        done += a;
        mag[cur] = (int32_t)(done < PMX_MAG_CAP ? done : PMX_MAG_CAP);
    }
    free(mag);
    for (int k = nview - 1; k >= 0; k--)
        PyBuffer_Release(&views[k]);
    return PyLong_FromSsize_t(c.bits.pos);
fail:
    for (int k = nview - 1; k >= 0; k--)
        PyBuffer_Release(&views[k]);
    return NULL;
}

/* pos_mix_init(states): the refinement tables start at the identity (bucket k: squash of its
 * stretch value, within P_MIN..P_MAX), as octree_mix_init's. */
static PyObject *pos_mix_init(PyObject *mod, PyObject *args)
{
    PyObject *os;
    if (!PyArg_ParseTuple(args, "O:pos_mix_init", &os))
        return NULL;
    Py_buffer v;
    if (get_i32(os, &v, 1, "states") < 0)
        return NULL;
    if (v.len / 4 != PMX_STATES && v.len / 4 != PMX_STATES_R) {
        PyBuffer_Release(&v);
        PyErr_SetString(PyExc_ValueError, "adaptive: pos_mix_init size");
        return NULL;
    }
    omx_init();
    int32_t *st = v.buf;
    for (Py_ssize_t i = 0; i < PMX_APM; i++) {
        int32_t p = omx_squash((int32_t)(i % 33) * 128 - 2048) << 4;
        st[PMX_APM_AT + i] = p < P_MIN ? P_MIN : (p > P_MAX ? P_MAX : p);
    }
    if (v.len / 4 == PMX_STATES_R) /* format 11's second refinement table: the identity too */
        for (Py_ssize_t i = 0; i < INT_CTX * 33; i++)
            st[PMX_R_APM_AT + i] = st[PMX_APM_AT + i];
    PyBuffer_Release(&v);
    Py_RETURN_NONE;
}

static PyObject *pos_mix_sizes(PyObject *mod, PyObject *noargs)
{
    return Py_BuildValue("(nnin)", (Py_ssize_t)PMX_STATES_R, (Py_ssize_t)PMX_WEIGHTS_R,
                         PMX_W0, (Py_ssize_t)PMX_WEIGHTS);
}

static int positions_run(NcDecodeRun *run, int32_t *st, int markov, const int32_t *starts,
                         const int32_t *tri, Py_ssize_t ntri, const int32_t *refs,
                         const int32_t *kinds, int64_t top, int32_t *out, Py_ssize_t nv,
                         const int32_t *pal, const int32_t *pal_off, const int32_t *nb_starts,
                         const int32_t *nbrs, Py_ssize_t nnbrs, int weight, int select,
                         int dups, int normal, int32_t *blist, MirrorGrid *mg, int32_t *mw,
                         int32_t *mag, const int32_t *lin, int frac, int mant, int recency)
{
    PmxCoder pc = {.bits = {.run = run, .val = NULL, .idx = NULL, .pos = 0}};
    pc.mant = mant && mw ? st + PMX_MANT_AT : NULL;
    recency = recency && mw;
    int bits = bitlen64((uint64_t)top), nsh = 2 * bits - 27;
    nsh = nsh > 0 ? nsh : 0;
    int32_t prevmir = 0;
    int64_t prev = 0, prev2 = 0;
    int32_t prevdup = 0;
    Py_ssize_t nbord = 0;
    if (starts[0] != 0 || nb_starts[0] != 0)
        return -1;
    for (Py_ssize_t w = 0; w < nv; w++) {
        if (mg && w > 0)
            mg_insert(mg, out, (int32_t)(w - 1));
        int32_t s = starts[w], e = starts[w + 1];
        int32_t kind = kinds[w] & 7, border = (kinds[w] >> 3) & 1;
        if (e < s || e > ntri || (kinds[w] & ~15) || kind >= POS_KINDS - 1)
            return -1;
        if (nb_starts[w + 1] < nb_starts[w] || nb_starts[w + 1] > nnbrs)
            return -1;
        for (int32_t j = nb_starts[w]; j < nb_starts[w + 1]; j++)
            if (nbrs[j] < 0 || nbrs[j] >= w)
                return -1;
        int32_t nbc = mw ? pmx_nb_class(mag, nbrs, nb_starts[w], nb_starts[w + 1]) : 0;
        int64_t done = 0;
        int64_t pred[3], scale = 0, spread = 0, edge = 0;
        int fbin[3] = {0, 0, 0}, fneg[3] = {0, 0, 0};
        if (e > s) {
            int64_t n = e - s;
            for (int32_t t = s; t < e; t++) {
                int32_t a = tri[3 * t], b = tri[3 * t + 1], o = tri[3 * t + 2];
                if (a < 0 || b < 0 || o < 0 || a >= w || b >= w || o >= w)
                    return -1;
            }
            int lin_hi = 0; /* format 7: the spread class of the linear prediction */
            if (lin && n >= 2 && lin[9] <= LIN_SPLIT_MAX) {
                int64_t sp = 0, ed = 0;
                for (int k = 0; k < 3; k++) {
                    int64_t lo = 0, hi = 0;
                    for (int32_t t = s; t < e; t++) {
                        const int32_t *r = tri + 3 * t;
                        int64_t v = (int64_t)out[3 * r[0] + k] + out[3 * r[1] + k] -
                                    out[3 * r[2] + k];
                        lo = (t == s || v < lo) ? v : lo;
                        hi = (t == s || v > hi) ? v : hi;
                    }
                    int64_t d = (int64_t)out[3 * tri[3 * s] + k] - out[3 * tri[3 * s + 1] + k];
                    sp += hi - lo;
                    ed += d < 0 ? -d : d;
                }
                lin_hi = bitlen64((uint64_t)sp) - bitlen64((uint64_t)ed) >= lin[9];
            }
            for (int k = 0; k < 3; k++) {
                int64_t sum = 0, lo = 0, hi = 0;
                for (int32_t t = s; t < e; t++) {
                    const int32_t *r = tri + 3 * t;
                    int64_t v = (int64_t)out[3 * r[0] + k] + out[3 * r[1] + k] - out[3 * r[2] + k];
                    sum += v;
                    lo = (t == s || v < lo) ? v : lo;
                    hi = (t == s || v > hi) ? v : hi;
                }
                pred[k] = floor_div(2 * sum + n, 2 * n);
                int32_t ns0 = nb_starts[w], ns1 = nb_starts[w + 1];
                int t = n >= 2 ? (weight & 15) : ((weight >> 4) & 15);
                if (lin && ns1 - ns0 >= 2 && n <= LIN_MAX && ns1 - ns0 <= LIN_MAX) {
                    int64_t se = 0, so = 0, sc = 0, s2 = 0, m2 = 0, m = ns1 - ns0;
                    for (int32_t t2 = s; t2 < e; t2++) {
                        const int32_t *r = tri + 3 * t2;
                        se += (int64_t)out[3 * r[0] + k] + out[3 * r[1] + k];
                        so += out[3 * r[2] + k];
                    }
                    for (int32_t j = ns0; j < ns1; j++) {
                        int32_t u = nbrs[j];
                        sc += out[3 * (Py_ssize_t)u + k];
                        m2 += nb_starts[u + 1] - nb_starts[u];
                        if (m2 > LIN_M2_MAX)
                            continue;
                        for (int32_t jj = nb_starts[u]; jj < nb_starts[u + 1]; jj++)
                            s2 += out[3 * (Py_ssize_t)nbrs[jj] + k];
                    }
                    int c3 = n >= 2 ? 3 * (lin_hi != 0) : 6;
                    int64_t A = lin[c3], B = lin[c3 + 1], G = lin[c3 + 2];
                    if (m2 < 1 || m2 > LIN_M2_MAX) {
                        G = 0;
                        m2 = 1;
                        s2 = 0;
                    }
                    int64_t num = ((64 + A - B) * se * m - 2 * A * so * m + 2 * (B + G) * sc * n) * m2 -
                                  2 * G * s2 * n * m;
                    int64_t den = 128 * n * m * m2;
                    pred[k] = floor_div(2 * num + den, 2 * den);
                    if (frac && pred[k] >= 0 && pred[k] <= top) {
                        int64_t dd = 2 * num + den - 2 * den * pred[k] - den;
                        int64_t bin = (dd < 0 ? -dd : dd) * frac / den;
                        fbin[k] = 1 + (int)(bin < frac - 1 ? bin : frac - 1);
                        fneg[k] = dd < 0;
                    }
                } else if (t > 0 && ns1 - ns0 >= 2) {
                    int64_t m = ns1 - ns0, csum = 0;
                    for (int32_t j = ns0; j < ns1; j++)
                        csum += out[3 * (Py_ssize_t)nbrs[j] + k];
                    int64_t c = floor_div(2 * csum + m, 2 * m);
                    pred[k] = floor_div((8 - t) * pred[k] + t * c + 4, 8);
                }
                int64_t d = (int64_t)out[3 * tri[3 * s] + k] - out[3 * tri[3 * s + 1] + k];
                spread += hi - lo;
                edge += d < 0 ? -d : d;
            }
            scale = (edge >> (weight >> 8)) + (spread << (weight >> 8));
            if (select && n >= 2) {
                int32_t ctx = bitlen64((uint64_t)spread) - bitlen64((uint64_t)edge) + 4, o;
                ctx = ctx < 0 ? 0 : (ctx > 7 ? 7 : ctx);
                ctx = POS_OPT_BASE + ctx * 3 + (n < 4 ? (int32_t)n : 4) - 2;
                if (int_decode_one(run, st, int_set(&ctx, 0, markov, prev, prev2) * INT_CTX, &o) < 0)
                    return -1;
                if (o < 0 || o > n)
                    return -1;
                if (o > 0) {
                    const int32_t *r = tri + 3 * (s + o - 1);
                    kind = POS_KINDS - 1;
                    fbin[0] = fbin[1] = fbin[2] = 0;
                    for (int k = 0; k < 3; k++)
                        pred[k] = (int64_t)out[3 * r[0] + k] + out[3 * r[1] + k] - out[3 * r[2] + k];
                }
            }
        } else {
            int32_t r = refs[w];
            if (r >= w)
                return -1;
            for (int k = 0; k < 3; k++)
                pred[k] = r >= 0 ? out[3 * (Py_ssize_t)r + k] : 0;
        }
        int mir = 0;
        if (mg) {
            int64_t pc[3];
            for (int k = 0; k < 3; k++)
                pc[k] = pred[k] < 0 ? 0 : (pred[k] > top ? top : pred[k]);
            int32_t m = mg_find(mg, out, pc);
            if (m >= 0) {
                int32_t ctx = POS_MIR_BASE + prevmir, f;
                if (int_decode_one(run, st, ctx * INT_CTX, &f) < 0 || (f != 0 && f != 1))
                    return -1;
                prevmir = f;
                if (f) {
                    mir = 1;
                    fbin[0] = fbin[1] = fbin[2] = 0;
                    for (int k = 0; k < 3; k++)
                        pred[k] = out[3 * (Py_ssize_t)m + k];
                    pred[mg->axis] = mg->s2 - pred[mg->axis];
                    kind = 3;
                    scale = (int64_t)1 << (POS_SCALES - 1);
                }
            }
        }
        if (mir && dups && border)
            blist[nbord++] = (int32_t)w;
        if (!mir && dups && border && nbord > 0) {
            int32_t ctx = POS_DUP_BASE + prevdup, f;
            if (int_decode_one(run, st, ctx * INT_CTX, &f) < 0 || (f != 0 && f != 1))
                return -1;
            prevdup = f;
            if (f) {
                int64_t p[3], bestd = -1;
                int32_t best = -1;
                for (int k = 0; k < 3; k++)
                    p[k] = pred[k] < 0 ? 0 : (pred[k] > top ? top : pred[k]);
                Py_ssize_t lo = nbord > POS_DUP_WINDOW ? nbord - POS_DUP_WINDOW : 0;
                for (Py_ssize_t j = nbord - 1; j >= lo; j--) {
                    int32_t v = blist[j];
                    int64_t d = 0;
                    for (int k = 0; k < 3; k++) {
                        int64_t x = out[3 * (Py_ssize_t)v + k] - p[k];
                        d += x < 0 ? -x : x;
                    }
                    if (best < 0 || d < bestd) {
                        best = v;
                        bestd = d;
                    }
                }
                for (int k = 0; k < 3; k++)
                    out[3 * w + k] = out[3 * (Py_ssize_t)best + k];
                blist[nbord++] = (int32_t)w;
                continue;
            }
        }
        if (!mir && dups && border)
            blist[nbord++] = (int32_t)w;
        int cls = bitlen64((uint64_t)scale);
        cls = cls < POS_SCALES - 1 ? cls : POS_SCALES - 1;
        int nax = -1, order[3] = {0, 1, 2};
        int64_t nrm[3], rv[3] = {0, 0, 0};
        if (normal && e > s && !mir) {
            nax = normal_axis(out, tri, s, e, nsh, nrm);
            if (nax >= 0 && pal_off[nax + 1] > pal_off[nax])
                nax = -1;
            if (nax >= 0) {
                order[0] = (nax + 1) % 3;
                order[1] = (nax + 2) % 3;
                order[2] = nax;
            }
        }
        for (int m = 0; m < 3; m++) {
            int k = order[m];
            Py_ssize_t np_ = pal_off[k + 1] - pal_off[k];
            int32_t set = (kind * POS_SCALES + cls) * 3 + k, res;
            if (np_ > 0)
                set += POS_KINDS * POS_SCALES * 3;
            if (k == nax)
                set = POS_NRM_BASE + kind * POS_SCALES + cls;
            int neg = 0;
            if (fbin[k] && np_ == 0 && k != nax) {
                set += fbin[k] * POS_SETS_BASE;
                neg = fneg[k];
            }
            if (mw) {
                Py_ssize_t cx[PMX_MODELS];
                pmx_models(cx, set, m, nbc, done);
                pc.w2 = mw + PMX_W2 + nbc * INT_CTX * PMX_IN;
                pmx_recency(&pc, recency ? st : NULL, mw, m, nbc);
                if (pmx_int(&pc, st, cx, mw + m * INT_CTX * PMX_IN,
                            st + PMX_APM_AT + (m * 4 + (nbc >> 2)) * INT_CTX * 33, 0, &res) < 0)
                    return -1;
                done += res < 0 ? -(int64_t)res : res;
                mag[w] = (int32_t)(done < PMX_MAG_CAP ? done : PMX_MAG_CAP);
            } else if (int_decode_one(run, st, int_set(&set, 0, markov, prev, prev2) * INT_CTX,
                                      &res) < 0)
                return -1;
            prev2 = prev;
            prev = res;
            if (neg) {
                if (res == INT32_MIN)
                    return -1;
                res = -res;
            }
            int64_t p = pred[k] < 0 ? 0 : (pred[k] > top ? top : pred[k]);
            if (np_ > 0) {
                const int32_t *pk = pal + pal_off[k];
                int64_t j = (int64_t)palette_nearest(pk, np_, p) + res;
                if (j < 0 || j >= np_)
                    return -1;
                out[3 * w + k] = pk[j];
                rv[k] = pk[j] - p;
                continue;
            }
            int64_t v = p + res;
            if (k == nax) {
                int i = order[0], j = order[1];
                int64_t num = -(nrm[i] * rv[i] + nrm[j] * rv[j]);
                int64_t d = floor_div(2 * num + nrm[k], 2 * nrm[k]);
                d = d < -top ? -top : (d > top ? top : d);
                v += d;
            }
            if (v < INT32_MIN || v > INT32_MAX)
                return -1;
            out[3 * w + k] = (int32_t)v;
            rv[k] = v - p;
        }
    }
    return 0;
}

static PyObject *positions_decode(PyObject *mod, PyObject *args)
{
    PyObject *odec, *otab, *os, *ost, *otri, *oref, *okind, *oout, *opal, *opoff, *onbs, *onbr;
    PyObject *ow = NULL, *olin = NULL;
    int markov, weight, select, maxis = 0;
    long long top, ms2 = 0;
    if (!PyArg_ParseTuple(args, "OOOiOOOOLOOOOOii|iLOO:positions_decode", &odec, &otab, &os,
                          &markov, &ost, &otri, &oref, &okind, &top, &oout, &opal, &opoff, &onbs,
                          &onbr, &weight, &select, &maxis, &ms2, &ow, &olin))
        return NULL;
    int32_t lin[LIN_SPLIT_LEN] = {0};
    int have_lin = olin && olin != Py_None;
    if (have_lin) {
        Py_buffer lv;
        if (get_i32(olin, &lv, 0, "linear coefficients") < 0)
            return NULL;
        Py_ssize_t nlin = lv.len / 4;
        int bad = nlin != 6 && nlin != LIN_SPLIT_LEN;
        static const int32_t lo[3] = {LIN_A_MIN, LIN_B_MIN, LIN_G_MIN};
        static const int32_t hi[3] = {LIN_A_MAX, LIN_B_MAX, LIN_G_MAX};
        for (int k = 0; k < nlin && !bad; k++) {
            lin[k] = ((int32_t *)lv.buf)[k];
            if (k < 9)
                bad = lin[k] < lo[k % 3] || lin[k] > hi[k % 3];
            else
                bad = lin[k] < LIN_SPLIT_MIN || lin[k] > LIN_SPLIT_MAX;
        }
        if (!bad && nlin == 6) { /* A2 B2 G2 A1 B1 G1: the same weights for both classes */
            for (int k = 0; k < 3; k++) {
                lin[6 + k] = lin[3 + k];
                lin[3 + k] = lin[k];
            }
            lin[9] = LIN_SPLIT_MAX + 1; /* never reached: every vertex in class 0 */
        }
        PyBuffer_Release(&lv);
        if (bad) {
            PyErr_SetString(PyExc_ValueError, "adaptive: positions_decode bad linear coefficients");
            return NULL;
        }
    }
    Bufs b = {.n = 0};
    Py_buffer pv, ov, sv, nv_;
    Py_buffer wv;
    int have_pv = 0, have_ov = 0, have_sv = 0, have_nv = 0, have_wv = 0, mix = 0;
    Py_ssize_t ns, nst, ntri, nref, nkind, nout;
    int32_t *st, *starts, *tri, *refs, *kinds, *out;
    if (!(st = take(&b, os, 1, "states", &ns)) || !(starts = take(&b, ost, 0, "starts", &nst)) ||
        !(tri = take(&b, otri, 0, "triples", &ntri)) || !(refs = take(&b, oref, 0, "refs", &nref)) ||
        !(kinds = take(&b, okind, 0, "kinds", &nkind)) || !(out = take(&b, oout, 1, "out", &nout)))
        goto fail;
    /* Bufs holds MAXBUF = 6 views: the palettes are read through their own */
    if (get_i32(opal, &pv, 0, "palette") < 0)
        goto fail;
    have_pv = 1;
    if (get_i32(opoff, &ov, 0, "palette offsets") < 0)
        goto fail;
    have_ov = 1;
    if (get_i32(onbs, &sv, 0, "neighbour starts") < 0)
        goto fail;
    have_sv = 1;
    if (get_i32(onbr, &nv_, 0, "neighbours") < 0)
        goto fail;
    have_nv = 1;
    mix = (select >> 4) & 1;
    if (mix) {
        if (!ow || ow == Py_None) {
            PyErr_SetString(PyExc_ValueError, "adaptive: positions_decode mixing needs weights");
            goto fail;
        }
        if (get_i32(ow, &wv, 1, "weights") < 0)
            goto fail;
        have_wv = 1;
        if ((wv.len / 4 != PMX_WEIGHTS && wv.len / 4 != PMX_WEIGHTS_R) ||
            ns < (Py_ssize_t)PMX_STATES ||
            ((select & 256) && (wv.len / 4 != PMX_WEIGHTS_R || ns < (Py_ssize_t)PMX_STATES_R))) {
            PyErr_SetString(PyExc_ValueError, "adaptive: positions_decode mixing sizes disagree");
            goto fail;
        }
        omx_init();
    }
    if (sv.len / 4 != nref + 1 || weight < 0 || (weight & 15) > 8 ||
        ((weight >> 4) & 15) > 8 || (weight >> 8) > 2) {
        PyErr_SetString(PyExc_ValueError, "adaptive: positions_decode bad neighbour lists");
        goto fail;
    }
    const int32_t *pal = pv.buf, *poff = ov.buf;
    Py_ssize_t npal = pv.len / 4;
    if (markov == 0 || markov < -64 || nkind != nref || nst != nref + 1 || nout != 3 * nref ||
        ntri % 3 || ov.len / 4 != 4 ||
        markov != 1 || ns < (Py_ssize_t)(((select >> 5) & 3) ? POS_STATES_ALL : POS_SETS_BASE) * INT_CTX ||
        select < 0 || select > 511 || ((select & 384) && !((select >> 4) & 1)) ||
        top < 1 || top > ((int64_t)1 << 24) || maxis < 0 || maxis > 2 || ms2 < 0 ||
        ms2 > 2 * top) {
        PyErr_SetString(PyExc_ValueError, "adaptive: positions_decode sizes disagree");
        goto fail;
    }
    if (poff[0] != 0 || poff[3] != npal || poff[1] < poff[0] || poff[2] < poff[1] ||
        poff[3] < poff[2]) {
        PyErr_SetString(PyExc_ValueError, "adaptive: positions_decode bad palette offsets");
        goto fail;
    }
    if (check_states(st, ns) < 0)
        goto fail;
    NcDecodeRun *run = begin_bank(odec, otab);
    if (!run)
        goto fail;
    int status;
    Py_BEGIN_ALLOW_THREADS
    int32_t *blist = (select & 2) ? malloc(((size_t)nref + 1) * sizeof(int32_t)) : NULL;
    int32_t *mag = mix ? calloc((size_t)nref + 1, sizeof(int32_t)) : NULL;
    MirrorGrid mg;
    int have_mg = (select & 8) && mg_init(&mg, nref, top, maxis, ms2) == 0;
    if (((select & 2) && !blist) || ((select & 8) && !have_mg) || (mix && !mag))
        status = -1;
    else
        status = positions_run(run, st, markov, starts, tri, ntri / 3, refs, kinds, top, out,
                               nref, pal, poff, sv.buf, nv_.buf, nv_.len / 4, weight, select & 1,
                               (select >> 1) & 1, (select >> 2) & 1, blist,
                               have_mg ? &mg : NULL, mix ? (int32_t *)wv.buf : NULL, mag,
                               have_lin ? lin : NULL, ((select >> 5) & 3) ? ((select >> 5) & 3) + 1 : 0,
                               (select >> 7) & 1, (select >> 8) & 1);
    free(blist);
    free(mag);
    if (have_mg)
        mg_free(&mg);
    Py_END_ALLOW_THREADS
    if (rc_api->end(run, status) < 0)
        goto fail;
    if (have_wv)
        PyBuffer_Release(&wv);
    PyBuffer_Release(&nv_);
    PyBuffer_Release(&sv);
    PyBuffer_Release(&ov);
    PyBuffer_Release(&pv);
    release(&b);
    Py_RETURN_NONE;
fail:
    if (have_wv)
        PyBuffer_Release(&wv);
    if (have_nv)
        PyBuffer_Release(&nv_);
    if (have_sv)
        PyBuffer_Release(&sv);
    if (have_ov)
        PyBuffer_Release(&ov);
    if (have_pv)
        PyBuffer_Release(&pv);
    release(&b);
    return NULL;
}

/* ----------------------------------------------------------------------------- mesh traversal steps
 *
 * mesh_step(decoder, bank, states, set, flip_set, noflip) -> int
 *
 * One step of the mesh connectivity decoder, which interleaves decoding with its traversal (the
 * contexts come from the traversal state, so the symbols cannot be decoded in one batch): an
 * integer v (the binarisation of ints_decode) with the 64 contexts of `set`; when flip_set >= 0
 * and v != noflip, a second one f with the contexts of flip_set, which must be 0 or 1 (else
 * f = 0); the result is 2 * v + f. The encoder writes the same sequence with ints_encode
 * (markov = 1, absolute sets). Only the contexts touched are checked, so a step costs O(1).
 */
static int check_set(const int32_t *st, Py_ssize_t ns, int32_t set)
{
    if (set < 0 || ((Py_ssize_t)set + 1) * INT_CTX > ns) {
        PyErr_Format(PyExc_ValueError, "adaptive: set %d outside the states", (int)set);
        return -1;
    }
    return check_states(st + (Py_ssize_t)set * INT_CTX, INT_CTX);
}

static PyObject *mesh_step(PyObject *mod, PyObject *args)
{
    PyObject *odec, *otab, *os;
    int set, flip_set, noflip;
    if (!PyArg_ParseTuple(args, "OOOiii:mesh_step", &odec, &otab, &os, &set, &flip_set, &noflip))
        return NULL;
    Py_buffer view;
    if (get_i32(os, &view, 1, "states") < 0)
        return NULL;
    int32_t *st = view.buf;
    Py_ssize_t ns = view.len / 4;
    if (check_set(st, ns, set) < 0 || (flip_set >= 0 && check_set(st, ns, flip_set) < 0)) {
        PyBuffer_Release(&view);
        return NULL;
    }
    NcDecodeRun *run = begin_bank(odec, otab);
    if (!run) {
        PyBuffer_Release(&view);
        return NULL;
    }
    int32_t v = 0, f = 0;
    int status = int_decode_one(run, st, set * INT_CTX, &v);
    if (status == 0 && flip_set >= 0 && v != noflip) {
        status = int_decode_one(run, st, flip_set * INT_CTX, &f);
        if (status == 0 && f != 0 && f != 1)
            status = -1;
    }
    PyBuffer_Release(&view);
    if (rc_api->end(run, status) < 0)
        return NULL;
    return PyLong_FromLongLong(2 * (long long)v + f);
}

/* ----------------------------------------------------------------------------- mesh repeat partners
 *
 * repeat_partners(q, pred, border, out)
 *
 * The encoder's side of the repeat flags (positions_decode, POS_DUP_*): q and pred are V x 3
 * int32 (positions, clamped predictions), border the border vertices in coding order; out[i] =
 * the vertex among border[max(0, i - POS_DUP_WINDOW) .. i) nearest (L1) to pred[border[i]]
 * (ties: the newest), -1 for i = 0.
 */
static PyObject *repeat_partners(PyObject *mod, PyObject *args)
{
    PyObject *oq, *op, *ob, *oo;
    if (!PyArg_ParseTuple(args, "OOOO:repeat_partners", &oq, &op, &ob, &oo))
        return NULL;
    Bufs b = {.n = 0};
    Py_ssize_t nq, np_, nb, no;
    int32_t *q, *pred, *bord, *out;
    if (!(q = take(&b, oq, 0, "q", &nq)) || !(pred = take(&b, op, 0, "pred", &np_)) ||
        !(bord = take(&b, ob, 0, "border", &nb)) || !(out = take(&b, oo, 1, "out", &no)))
        goto fail;
    if (nq != np_ || nq % 3 || no != nb) {
        PyErr_SetString(PyExc_ValueError, "adaptive: repeat_partners sizes disagree");
        goto fail;
    }
    for (Py_ssize_t i = 0; i < nb; i++)
        if (bord[i] < 0 || bord[i] >= nq / 3) {
            PyErr_SetString(PyExc_ValueError, "adaptive: repeat_partners vertex out of range");
            goto fail;
        }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < nb; i++) {
        const int32_t *p = pred + 3 * (Py_ssize_t)bord[i];
        int64_t bestd = -1;
        int32_t best = -1;
        Py_ssize_t lo = i > POS_DUP_WINDOW ? i - POS_DUP_WINDOW : 0;
        for (Py_ssize_t j = i - 1; j >= lo; j--) {
            const int32_t *x = q + 3 * (Py_ssize_t)bord[j];
            int64_t d = 0;
            for (int k = 0; k < 3; k++) {
                int64_t t = (int64_t)x[k] - p[k];
                d += t < 0 ? -t : t;
            }
            if (best < 0 || d < bestd) {
                best = bord[j];
                bestd = d;
            }
        }
        out[i] = best;
    }
    Py_END_ALLOW_THREADS
    release(&b);
    Py_RETURN_NONE;
fail:
    release(&b);
    return NULL;
}

/* ----------------------------------------------------------------------------- mesh mirror partners
 *
 * mirror_partners(q, pred, axis, s2, top, out)
 *
 * The encoder's side of the mirror flags (positions_decode, POS_MIR_*): q and pred are V x 3 int32
 * (positions in coding order, clamped predictions); out[w] = the vertex among 0 .. w - 1 nearest
 * the mirror image of pred[w] in the grid the decoder keeps, -1 when none.
 */
static PyObject *mirror_partners(PyObject *mod, PyObject *args)
{
    PyObject *oq, *op, *oo;
    int axis;
    long long s2, top;
    if (!PyArg_ParseTuple(args, "OOiLLO:mirror_partners", &oq, &op, &axis, &s2, &top, &oo))
        return NULL;
    Bufs b = {.n = 0};
    Py_ssize_t nq, np_, no;
    int32_t *q, *pred, *out;
    if (!(q = take(&b, oq, 0, "q", &nq)) || !(pred = take(&b, op, 0, "pred", &np_)) ||
        !(out = take(&b, oo, 1, "out", &no)))
        goto fail;
    if (nq != np_ || nq % 3 || no != nq / 3 || axis < 0 || axis > 2 || top < 1 ||
        top > ((int64_t)1 << 24)) {
        PyErr_SetString(PyExc_ValueError, "adaptive: mirror_partners sizes disagree");
        goto fail;
    }
    MirrorGrid g;
    if (mg_init(&g, no, top, axis, s2) < 0) {
        PyErr_NoMemory();
        goto fail;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t w = 0; w < no; w++) {
        int64_t p[3];
        for (int k = 0; k < 3; k++)
            p[k] = pred[3 * w + k];
        out[w] = mg_find(&g, q, p);
        mg_insert(&g, q, (int32_t)w);
    }
    Py_END_ALLOW_THREADS
    mg_free(&g);
    release(&b);
    Py_RETURN_NONE;
fail:
    release(&b);
    return NULL;
}

/* ----------------------------------------------------------------------------- mesh position order
 *
 * position_order(starts, pairs, out)
 *
 * The order in which the mesh codec codes positions, from the connectivity alone: vertex v has
 * the triangles (v, a, b) with (a, b) = pairs[2 j], pairs[2 j + 1], j in starts[v] .. starts[v+1]
 * (all a, b < V = len(starts) - 1). Repeatedly the not yet ordered vertex with the largest
 * (score, near, -v) among those with near > 0 is taken, score = its triangles whose other two
 * corners are ordered, near = the ordered corners over its triangles (counted per triangle);
 * when no vertex has near > 0, the lowest-numbered one not yet ordered. A binary heap with lazy
 * deletion (stale entries are skipped).
 */
typedef struct {
    int32_t score, near, v;
} OrderKey;

static inline int order_before(const OrderKey *x, const OrderKey *y) /* x pops first */
{
    if (x->score != y->score)
        return x->score > y->score;
    if (x->near != y->near)
        return x->near > y->near;
    return x->v < y->v;
}

static int order_push(OrderKey **heap, Py_ssize_t *n, Py_ssize_t *cap, OrderKey k)
{
    if (*n == *cap) {
        Py_ssize_t nc = *cap ? 2 * *cap : 1024;
        OrderKey *h = realloc(*heap, (size_t)nc * sizeof(OrderKey));
        if (!h)
            return -1;
        *heap = h;
        *cap = nc;
    }
    OrderKey *h = *heap;
    Py_ssize_t i = (*n)++;
    while (i > 0) {
        Py_ssize_t p = (i - 1) / 2;
        if (!order_before(&k, &h[p]))
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = k;
    return 0;
}

static OrderKey order_pop(OrderKey *h, Py_ssize_t *n)
{
    OrderKey top = h[0], last = h[--*n];
    Py_ssize_t i = 0;
    for (;;) {
        Py_ssize_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && order_before(&h[c + 1], &h[c]))
            c++;
        if (!order_before(&h[c], &last))
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0)
        h[i] = last;
    return top;
}

static PyObject *position_order(PyObject *mod, PyObject *args)
{
    PyObject *ost, *opr, *oout;
    if (!PyArg_ParseTuple(args, "OOO:position_order", &ost, &opr, &oout))
        return NULL;
    Bufs b = {.n = 0};
    Py_ssize_t nst, npr, nout;
    int32_t *starts, *pairs, *out;
    if (!(starts = take(&b, ost, 0, "starts", &nst)) || !(pairs = take(&b, opr, 0, "pairs", &npr)) ||
        !(out = take(&b, oout, 1, "out", &nout)))
        goto fail;
    Py_ssize_t nv = nst - 1;
    if (nv < 0 || nout != nv || npr % 2 || starts[0] != 0 || (nv > 0 && starts[nv] != npr / 2)) {
        PyErr_SetString(PyExc_ValueError, "adaptive: position_order sizes disagree");
        goto fail;
    }
    for (Py_ssize_t v = 0; v < nv; v++)
        if (starts[v + 1] < starts[v]) {
            PyErr_SetString(PyExc_ValueError, "adaptive: position_order starts not sorted");
            goto fail;
        }
    for (Py_ssize_t j = 0; j < npr; j++)
        if (pairs[j] < 0 || pairs[j] >= nv) {
            PyErr_SetString(PyExc_ValueError, "adaptive: position_order corner out of range");
            goto fail;
        }
    int32_t *score = calloc((size_t)nv + 1, sizeof(int32_t));
    int32_t *near = calloc((size_t)nv + 1, sizeof(int32_t));
    char *done = calloc((size_t)nv + 1, 1);
    OrderKey *heap = NULL;
    Py_ssize_t hn = 0, hcap = 0, count = 0, next = 0;
    int status = (score && near && done) ? 0 : -1;
    while (status == 0 && count < nv) {
        int32_t v = -1;
        while (hn > 0) {
            OrderKey k = order_pop(heap, &hn);
            if (!done[k.v] && k.score == score[k.v] && k.near == near[k.v]) {
                v = k.v;
                break;
            }
        }
        if (v < 0) {
            while (done[next])
                next++;
            v = (int32_t)next;
        }
        done[v] = 1;
        out[count++] = v;
        for (int32_t j = starts[v]; j < starts[v + 1] && status == 0; j++) {
            for (int t = 0; t < 2; t++) {
                int32_t x = pairs[2 * j + t], y = pairs[2 * j + 1 - t];
                if (done[x])
                    continue;
                near[x]++;
                if (done[y])
                    score[x]++;
                OrderKey k = {score[x], near[x], x};
                if (order_push(&heap, &hn, &hcap, k) < 0) {
                    status = -1;
                    break;
                }
            }
        }
    }
    free(score);
    free(near);
    free(done);
    free(heap);
    if (status < 0) {
        PyErr_NoMemory();
        goto fail;
    }
    release(&b);
    Py_RETURN_NONE;
fail:
    release(&b);
    return NULL;
}

/* ============================================================================= octree v2 (mixing)
 *
 * The point cloud codec `octree` (stream "tree"). The functions above this block serve the other
 * codecs (and the integer model is shared).
 *
 * octree_mix_encode(nb, pat, info, occ, single, offs, depth, bits, states, weights, values, idx)
 *     -> number of binary symbols written to values / idx
 * octree_mix_decode(decoder, bank, nb, pat, info, depth, bits, states, weights, occ, single, offs)
 *
 * One octree level, nodes in Morton order (N nodes). Per node i:
 *   nb[OMX_NB i + m - 1], m = 1..7: index of the node at offset -(m >> 2 & 1, m >> 1 & 1, m & 1)
 *       in this level (x, y, z), or -1; then (m = 8, 9, 10) the nodes two steps towards -x, -y,
 *       -z. Morton order puts all of them before node i (checked).
 *   pat[i]: which of the 26 neighbours exist (bit 9 (dx + 1) + 3 (dy + 1) + dz + 1).
 *   info[i]: the parent's occupancy byte | the node's slot in the parent << 8.
 * Direct mode: a node with none of its 26 neighbours occupied and at least two levels below it
 * codes a flag (context: levels left): 1 = its subtree holds one leaf voxel, whose remaining
 * bits - depth bits per axis follow (MSB first, x y z per level, adaptive contexts per axis and
 * bit position); occ[i] = 0x100 | the child holding it, single[i] = 1, offs[3 i + a] = the bits
 * of axis a. Otherwise the node's occupancy byte is coded child by child (slot k = 4x + 2y + z),
 * the last child of a node with none so far implied. Each bit's probability mixes OMX_MODELS
 * adaptive predictions p_j (12-bit) in the logistic domain, all in integers:
 *   mix_m = squash(sum_j w_mj * stretch(p_j) >> 16) for two weight vectors m (chosen by
 *           (S, dc) and by (k, T)), each trained on its own output:
 *           w_mj += stretch(p_j) * ((bit << 12) - mix_m) * OMX_LR >> 13 (clamped to +-2^24);
 *   p = squash of the mean of the two dot products, then averaged with an adaptive refinement
 *       table over 33 steps of stretch(p) (context k, S, C), linearly interpolated.
 * squash is the logistic 4096 / (1 + e^(-d / 256)) interpolated in a fixed 65-entry table; stretch
 * is its inverse, tabulated from squash in integers. The range coder codes the bit with bank table
 * p (P(1) ~ (p + 1/2) / 4096). States move towards each bit at rate 1 / min(count + 2, OMX_RATE)
 * (12 for the two fast models). Context models (k slot, P children found so far as bits, S their
 * count capped at 3, dc depth class: last level, the one above, higher; pc the parent's child
 * count class 1 | 2-3 | 4+; A the face neighbours on the child's sides, F those on its far
 * sides; C the child's 7 neighbours towards -x, -y, -z, all decoded: siblings or children of the
 * node's nb, Bf its 3 face ones; T / O the count / pattern of the node's 7 neighbours touching the
 * child's octant; Pj / P2 whether the -x / -y / -z neighbour node one / two steps away has a child
 * in the child's row along that axis; Q whether it has the child's slot occupied):
 *   0: pc dc A Bf S k       1: model 0 x F        2: pc dc k P        3: dc S k C
 *   4: the parent's occupancy byte, the node's slot in the parent, k, S > 0
 *   5: dc S k, the 6-neighbour pattern            6: dc S k T Bf      7: dc S k O
 *   8: dc S k Pj Bf         9: dc S k Pj P2       10: k P Pj dc       11: dc S k Q Bf
 *   12..17 hashed to 2^OMX_HASH_BITS states each: C O P dc | C Pj P2 Q A F P dc | pat P dc C |
 *       the occupancy bytes of the -x, -y, -z nodes, P, dc | of the edge and corner nodes, P, dc
 *       | of the two-step nodes, P, Bf != 0, dc
 *   18, 19: models 0 and 3 with fast adaptation
 */
#define OMX_NB 10 /* neighbour indexes per node */
#define OMX_MODELS 20
#define OMX_SLOW 18 /* models 18, 19: models 0 and 3 with fast adaptation */
#define OMX_INPUTS (OMX_MODELS + 1)
#define OMX_RATE 64
#define OMX_LR 4
#define OMX_M0 (9 * 8 * 8 * 4 * 8)
#define OMX_M1 (OMX_M0 * 8)
#define OMX_M2 (9 * 256)
#define OMX_M3 (3 * 4 * 8 * 128)
#define OMX_M4 (256 * 8 * 8 * 2)
#define OMX_M5 (3 * 4 * 8 * 64)
#define OMX_M6 (3 * 4 * 8 * 8 * 8)
#define OMX_M7 (3 * 4 * 8 * 128)
#define OMX_M8 (3 * 4 * 8 * 8 * 8)
#define OMX_M9 (3 * 4 * 8 * 8 * 8)
#define OMX_DIRECT (16 + 3 * 17) /* flag contexts per remaining depth, bit contexts */
#define OMX_APM (8 * 4 * 128 * 33)
#define OMX_FAST_AT (OMX_APM_AT + OMX_APM + OMX_DIRECT)
#define OMX_APM_AT (OMX_M0 + OMX_M1 + OMX_M2 + OMX_M3 + OMX_M4 + OMX_M5 + OMX_M6 + OMX_M7 + OMX_M8 + OMX_M9)
#define OMX_EXTRA_AT (OMX_FAST_AT + OMX_M0 + OMX_M3)
#define OMX_HASH_BITS 18
#define OMX_HASH_AT (OMX_EXTRA_AT + 256 * 8 * 3 + 3 * 4 * 8 * 8 * 8)
#define OMX_STATES (OMX_HASH_AT + (6 << OMX_HASH_BITS))
#define OMX_SETS (4 * 3)
#define OMX_WEIGHTS ((OMX_SETS + 64) * OMX_INPUTS)
#define OMX_W0 (1 << 13) /* initial weight 1/8 */

static const int16_t omx_squash_t[65] = {
    1,    2,    2,    3,    4,    5,    6,    8,    10,   13,   17,   21,   27,   35,   45,   58,   74,
    94,   120,  153,  194,  246,  311,  391,  488,  606,  747,  912,  1102, 1314, 1546, 1793, 2048,
    2303, 2550, 2782, 2994, 3184, 3349, 3490, 3608, 3705, 3785, 3850, 3902, 3943, 3976, 4002, 4022,
    4038, 4051, 4061, 4069, 4075, 4079, 4083, 4086, 4088, 4090, 4091, 4092, 4093, 4094, 4094, 4095};
static int16_t omx_stretch_t[4096];
static int omx_ready = 0;

static inline int32_t omx_squash(int32_t d)
{
    d = d < -2047 ? -2047 : (d > 2047 ? 2047 : d);
    int32_t x = d + 2048, j = x >> 6, w = x & 63;
    return (omx_squash_t[j] * (64 - w) + omx_squash_t[j + 1] * w + 32) >> 6;
}

static void omx_init(void)
{
    if (omx_ready)
        return;
    int32_t next = 0;
    for (int32_t d = -2047; d <= 2047; d++) {
        int32_t v = omx_squash(d);
        for (; next <= v && next < 4096; next++)
            omx_stretch_t[next] = (int16_t)d;
    }
    for (; next < 4096; next++)
        omx_stretch_t[next] = 2047;
    omx_ready = 1;
}

static inline int32_t omx_update(int32_t s, int bit)
{
    int32_t p = s & 0xFFFF, n = (s >> 16) & 0xFF;
    int32_t d = n + 2 < OMX_RATE ? n + 2 : OMX_RATE;
    p += ((bit ? 65536 : 0) - p) / d;
    p = p < P_MIN ? P_MIN : (p > P_MAX ? P_MAX : p);
    n = n < 255 ? n + 1 : 255;
    return p | (n << 16);
}

static inline int32_t omx_update_fast(int32_t s, int bit)
{
    int32_t p = s & 0xFFFF, n = (s >> 16) & 0xFF;
    int32_t d = n + 2 < 12 ? n + 2 : 12;
    p += ((bit ? 65536 : 0) - p) / d;
    p = p < P_MIN ? P_MIN : (p > P_MAX ? P_MAX : p);
    n = n < 255 ? n + 1 : 255;
    return p | (n << 16);
}

/* Mixer weights stay within +-2^24 (256.0). */
static inline int32_t omx_clamp_w(int64_t w)
{
    return (int32_t)(w < -(1 << 24) ? -(1 << 24) : (w > (1 << 24) ? (1 << 24) : w));
}

/* The coding side of one level: encoding when run == NULL (bits from occ / single / offs, symbols
 * to val / idx), else decoding into occ / single / offs. */

/* A bit with one adaptive context and no mixing. */
static inline int omx_plain(OmxCoder *c, int32_t *st, int bit)
{
    int b = omx_code(c, state_table(*st), bit);
    if (b >= 0)
        *st = omx_update(*st, b);
    return b;
}

static int omx_level(OmxCoder *c, const int32_t *nb, const int32_t *pat, const int32_t *info,
                     int32_t *occ, int32_t *single, int32_t *offs, Py_ssize_t n, int depth, int bits,
                     int32_t *st, int32_t *w)
{
    int rem = bits - depth, dc = rem == 1 ? 0 : (rem == 2 ? 1 : 2);
    int32_t *sd = st + OMX_APM_AT + OMX_APM; /* direct-mode contexts */
    for (Py_ssize_t i = 0; i < n; i++) {
        const int32_t *nbi = nb + OMX_NB * i;
        for (int m = 0; m < OMX_NB; m++)
            if (nbi[m] >= i)
                return -1; /* neighbours come first */
        int32_t pb = info[i] & 0xFF, pslot = (info[i] >> 8) & 7, pcount = __builtin_popcount(pb);
        int32_t pm = pat[i], pc = pcount < 2 ? 0 : (pcount < 4 ? 1 : 2);
        int32_t pa = ((pm >> 4) & 1) | ((pm >> 22) & 1) << 1 | ((pm >> 10) & 1) << 2 |
                     ((pm >> 16) & 1) << 3 | ((pm >> 12) & 1) << 4 | ((pm >> 14) & 1) << 5;
        if (pm == 0 && rem >= 2) {
            int32_t *sf = sd + (rem < 16 ? rem : 15);
            int one = omx_plain(c, sf, c->run ? 0 : single[i] != 0);
            if (one < 0)
                return -1;
            if (one) {
                int32_t o[3] = {0, 0, 0};
                for (int r = rem - 1; r >= 0; r--)
                    for (int a = 0; a < 3; a++) {
                        int32_t *sb = sd + 16 + a * 17 + (r < 16 ? r : 16);
                        int b = omx_plain(c, sb, c->run ? 0 : (offs[3 * i + a] >> r) & 1);
                        if (b < 0)
                            return -1;
                        o[a] |= b << r;
                    }
                int32_t k = (((o[0] >> (rem - 1)) & 1) << 2) | (((o[1] >> (rem - 1)) & 1) << 1) |
                            ((o[2] >> (rem - 1)) & 1);
                occ[i] = 0x100 | (1 << k);
                single[i] = 1;
                offs[3 * i] = o[0], offs[3 * i + 1] = o[1], offs[3 * i + 2] = o[2];
                continue;
            }
        }
        single[i] = 0;
        int32_t partial = 0, by = occ[i] & 0xFF;
        for (int32_t k = 0; k < 8; k++) {
            if (k == 7 && partial == 0) {
                partial = 0x80;
                break;
            }
            int32_t cb[3] = {(k >> 2) & 1, (k >> 1) & 1, k & 1}, A = 0, F = 0, C = 0;
            for (int a = 0; a < 3; a++) {
                A |= ((pa >> (2 * a + cb[a])) & 1) << a;
                F |= ((pa >> (2 * a + 1 - cb[a])) & 1) << a;
            }
            for (int m = 1; m < 8; m++) { /* the child's neighbour at -(m's bits) */
                int32_t node = 0, slot = 0;
                for (int a = 0; a < 3; a++) {
                    int d = (m >> (2 - a)) & 1, x = cb[a] - d;
                    node |= (x < 0) << (2 - a);
                    slot |= (x < 0 ? 1 : x) << (2 - a);
                }
                int32_t bit;
                if (node == 0)
                    bit = (partial >> slot) & 1;
                else {
                    int32_t j = nbi[node - 1];
                    bit = j >= 0 ? (occ[j] >> slot) & 1 : 0;
                }
                C |= bit << (m - 1);
            }
            int32_t T = 0, O = 0; /* node-level neighbours touching the child's octant */
            for (int m = 1; m < 8; m++) {
                int dx = (m >> 2) & 1 ? 2 * cb[0] - 1 : 0, dy = (m >> 1) & 1 ? 2 * cb[1] - 1 : 0;
                int dz = m & 1 ? 2 * cb[2] - 1 : 0;
                int32_t e = (pm >> (9 * (dx + 1) + 3 * (dy + 1) + dz + 1)) & 1;
                T += e;
                O |= e << (m - 1);
            }
            int32_t Pj = 0; /* the -x / -y / -z neighbour node has a child in the child's row */
            for (int a = 0; a < 3; a++) {
                int32_t j = nbi[(1 << (2 - a)) - 1];
                if (j < 0)
                    continue;
                int32_t row = (k & ~(1 << (2 - a))) & 7;
                Pj |= (((occ[j] >> row) | (occ[j] >> (row | (1 << (2 - a))))) & 1) << a;
            }
            int32_t Q = 0; /* the same slot of the -x / -y / -z neighbour node */
            for (int a = 0; a < 3; a++) {
                int32_t j = nbi[(1 << (2 - a)) - 1];
                Q |= (j >= 0 ? (occ[j] >> k) & 1 : 0) << a;
            }
            int32_t P2 = 0; /* the same two cells further */
            for (int a = 0; a < 3; a++) {
                int32_t j = nbi[7 + a];
                if (j < 0)
                    continue;
                int32_t row = (k & ~(1 << (2 - a))) & 7;
                P2 |= (((occ[j] >> row) | (occ[j] >> (row | (1 << (2 - a))))) & 1) << a;
            }
            /* C bits: m = 1 (-z), 2 (-y), 4 (-x) are the face neighbours */
            int32_t Bf = (((C >> 3) & 1) << 0) | (((C >> 1) & 1) << 1) | ((C & 1) << 2);
            int32_t S = __builtin_popcount((unsigned)partial);
            S = S < 3 ? S : 3;
            int32_t base = pc * 3 + dc;
            Py_ssize_t x0 = (((base * 8 + A) * 8 + Bf) * 4 + S) * 8 + k;
            /* two large combined contexts, hashed (multiplicative) to OMX_HASH_BITS bits */
            uint32_t pk = (uint32_t)((1 << k) | partial);
            uint32_t h1 = (((((uint32_t)C * 128 + O) * 256 + pk) * 3 + dc) * 2654435761u) >>
                          (32 - OMX_HASH_BITS);
            uint32_t h2 = ((((((((uint32_t)C * 8 + Pj) * 8 + P2) * 8 + Q) * 64 + A * 8 + F) * 256 +
                             pk) * 3 + dc) * 2246822519u) >> (32 - OMX_HASH_BITS);
            uint32_t h3 = (((((uint32_t)pm * 256 + pk) * 3 + dc) ^ ((uint32_t)C << 25)) *
                           3266489917u) >> (32 - OMX_HASH_BITS);
            uint32_t h4 = (uint32_t)dc * 3 + 1;
            for (int a = 0; a < 3; a++) {
                int32_t j = nbi[(1 << (2 - a)) - 1];
                h4 = h4 * 257 + (j >= 0 ? (uint32_t)(occ[j] & 0xFF) + 1 : 0);
            }
            h4 = ((h4 * 256 + pk) * 2654435769u) >> (32 - OMX_HASH_BITS);
            uint32_t h5 = (uint32_t)dc * 3 + 2;
            for (int m = 3; m <= 7; m++) { /* edge and corner neighbours (-x-y, -x-z, -y-z, all) */
                if (m == 4)
                    continue;
                int32_t j = nbi[m - 1];
                h5 = h5 * 257 + (j >= 0 ? (uint32_t)(occ[j] & 0xFF) + 1 : 0);
            }
            h5 = ((h5 * 256 + pk) * 2246822519u) >> (32 - OMX_HASH_BITS);
            uint32_t h6 = (uint32_t)dc * 3 + 3;
            for (int a = 0; a < 3; a++) { /* the nodes two steps towards -x, -y, -z */
                int32_t j = nbi[7 + a];
                h6 = h6 * 257 + (j >= 0 ? (uint32_t)(occ[j] & 0xFF) + 1 : 0);
            }
            h6 = ((h6 * 512 + pk * 2 + (Bf != 0)) * 3266489917u) >> (32 - OMX_HASH_BITS);
            Py_ssize_t xs[OMX_MODELS] = {
                x0,
                OMX_M0 + x0 * 8 + F,
                OMX_M0 + OMX_M1 + base * 256 + ((1 << k) | partial),
                OMX_M0 + OMX_M1 + OMX_M2 + ((dc * 4 + S) * 8 + k) * 128 + C,
                OMX_M0 + OMX_M1 + OMX_M2 + OMX_M3 + ((pb * 8 + pslot) * 8 + k) * 2 + (S > 0),
                OMX_M0 + OMX_M1 + OMX_M2 + OMX_M3 + OMX_M4 + ((dc * 4 + S) * 8 + k) * 64 + pa,
                OMX_M0 + OMX_M1 + OMX_M2 + OMX_M3 + OMX_M4 + OMX_M5 +
                    (((dc * 4 + S) * 8 + k) * 8 + T) * 8 + Bf,
                OMX_M0 + OMX_M1 + OMX_M2 + OMX_M3 + OMX_M4 + OMX_M5 + OMX_M6 +
                    ((dc * 4 + S) * 8 + k) * 128 + O,
                OMX_M0 + OMX_M1 + OMX_M2 + OMX_M3 + OMX_M4 + OMX_M5 + OMX_M6 + OMX_M7 +
                    (((dc * 4 + S) * 8 + k) * 8 + Pj) * 8 + Bf,
                OMX_M0 + OMX_M1 + OMX_M2 + OMX_M3 + OMX_M4 + OMX_M5 + OMX_M6 + OMX_M7 + OMX_M8 +
                    (((dc * 4 + S) * 8 + k) * 8 + Pj) * 8 + P2,
                OMX_EXTRA_AT + (((1 << k) | partial) * 8 + Pj) * 3 + dc,
                OMX_EXTRA_AT + 256 * 8 * 3 + (((dc * 4 + S) * 8 + k) * 8 + Q) * 8 + Bf,
                OMX_HASH_AT + (Py_ssize_t)h1,
                OMX_HASH_AT + (1 << OMX_HASH_BITS) + (Py_ssize_t)h2,
                OMX_HASH_AT + (2 << OMX_HASH_BITS) + (Py_ssize_t)h3,
                OMX_HASH_AT + (3 << OMX_HASH_BITS) + (Py_ssize_t)h4,
                OMX_HASH_AT + (4 << OMX_HASH_BITS) + (Py_ssize_t)h5,
                OMX_HASH_AT + (5 << OMX_HASH_BITS) + (Py_ssize_t)h6,
                OMX_FAST_AT + x0,
                OMX_FAST_AT + OMX_M0 + ((dc * 4 + S) * 8 + k) * 128 + C,
            };
            int32_t in[OMX_INPUTS];
            int32_t *wi = w + (S * 3 + dc) * OMX_INPUTS;
            int32_t *wi2 = w + (OMX_SETS + k * 8 + T) * OMX_INPUTS;
            int64_t dot = 0, dot2 = 0;
            for (int j = 0; j < OMX_MODELS; j++) {
                in[j] = omx_stretch_t[(st[xs[j]] & 0xFFFF) >> 4];
                dot += (int64_t)wi[j] * in[j];
                dot2 += (int64_t)wi2[j] * in[j];
            }
            in[OMX_MODELS] = 256;
            dot += (int64_t)wi[OMX_MODELS] * 256;
            dot2 += (int64_t)wi2[OMX_MODELS] * 256;
            int32_t p1 = omx_squash((int32_t)(dot >> 16)), p2 = omx_squash((int32_t)(dot2 >> 16));
            int32_t p = omx_squash((int32_t)((dot + dot2) >> 17));
            /* refinement: a table over the mixed probability (33 steps of its stretch) */
            int32_t sp = omx_stretch_t[p] + 2048, lo = sp >> 7, wt = sp & 127;
            int32_t *ap = st + OMX_APM_AT + ((k * 4 + S) * 128 + C) * 33 + lo;
            int32_t pa2 = ((ap[0] & 0xFFFF) * (128 - wt) + (ap[wt ? 1 : 0] & 0xFFFF) * wt) >> 11;
            int32_t pf = (p + pa2 + 1) >> 1;
            pf = pf < 1 ? 1 : (pf > 4095 ? 4095 : pf);
            int b = omx_code(c, pf, c->run ? 0 : (by >> k) & 1);
            if (b < 0)
                return -1;
            ap[0] = omx_update(ap[0], b);
            if (wt)
                ap[1] = omx_update(ap[1], b);
            int32_t err = ((b << 12) - p1) * OMX_LR, err2 = ((b << 12) - p2) * OMX_LR;
            for (int j = 0; j < OMX_INPUTS; j++) {
                wi[j] = omx_clamp_w((int64_t)wi[j] + (((int64_t)in[j] * err) >> 13));
                wi2[j] = omx_clamp_w((int64_t)wi2[j] + (((int64_t)in[j] * err2) >> 13));
            }
            for (int j = 0; j < OMX_SLOW; j++)
                st[xs[j]] = omx_update(st[xs[j]], b);
            for (int j = OMX_SLOW; j < OMX_MODELS; j++)
                st[xs[j]] = omx_update_fast(st[xs[j]], b);
            partial |= b << k;
        }
        occ[i] = partial;
    }
    return 0;
}


/* Shared argument checks; 0 or -1 with an exception set. */
static int omx_check(Py_ssize_t n, Py_ssize_t nnb, Py_ssize_t npat, Py_ssize_t ninfo,
                     Py_ssize_t nocc, Py_ssize_t nsingle, Py_ssize_t noffs, int depth, int bits,
                     const int32_t *st, Py_ssize_t ns, Py_ssize_t nw)
{
    if (nnb != OMX_NB * n || npat != n || ninfo != n || nocc != n || nsingle != n || noffs != 3 * n ||
        ns != OMX_STATES || nw != OMX_WEIGHTS || bits < 1 || bits > 21 || depth < 0 ||
        depth >= bits) {
        PyErr_SetString(PyExc_ValueError, "adaptive: octree_mix sizes disagree");
        return -1;
    }
    (void)st; /* any int32 is a usable state here: only masked fields are read */
    return 0;
}

static PyObject *octree_mix_encode(PyObject *mod, PyObject *args)
{
    PyObject *onb, *opat, *oinfo, *oocc, *osingle, *ooffs, *os, *ow, *ov, *oi;
    int depth, bits;
    if (!PyArg_ParseTuple(args, "OOOOOOiiOOOO:octree_mix_encode", &onb, &opat, &oinfo, &oocc,
                          &osingle, &ooffs, &depth, &bits, &os, &ow, &ov, &oi))
        return NULL;
    omx_init();
    Bufs b = {.n = 0};
    Py_ssize_t n, nnb, npat, ninfo, nocc, nsingle, noffs, ns, nw, nv, ni;
    int32_t *nb, *pat, *info, *occ, *single, *offs, *st, *w, *val, *idx;
    if (!(nb = take(&b, onb, 0, "neighbours", &nnb)) ||
        !(pat = take(&b, opat, 0, "patterns", &npat)) ||
        !(info = take(&b, oinfo, 0, "info", &ninfo)) ||
        !(occ = take(&b, oocc, 1, "occupancy", &nocc)) ||
        !(single = take(&b, osingle, 1, "single", &nsingle)) ||
        !(offs = take(&b, ooffs, 1, "offsets", &noffs)) ||
        !(st = take(&b, os, 1, "states", &ns)) || !(w = take(&b, ow, 1, "weights", &nw)) ||
        !(val = take(&b, ov, 1, "values", &nv)) || !(idx = take(&b, oi, 1, "indexes", &ni)))
        goto fail;
    n = npat;
    if (omx_check(n, nnb, npat, ninfo, nocc, nsingle, noffs, depth, bits, st, ns, nw) < 0)
        goto fail;
    if (nv != ni || nv < (Py_ssize_t)(8 + 3 * bits) * n) {
        PyErr_SetString(PyExc_ValueError, "adaptive: octree_mix_encode output too small");
        goto fail;
    }
    OmxCoder c = {.run = NULL, .val = val, .idx = idx, .pos = 0};
    if (omx_level(&c, nb, pat, info, occ, single, offs, n, depth, bits, st, w) < 0) {
        PyErr_SetString(PyExc_ValueError, "adaptive: octree_mix_encode bad neighbours");
        goto fail;
    }
    release(&b);
    return PyLong_FromSsize_t(c.pos);
fail:
    release(&b);
    return NULL;
}

static PyObject *octree_mix_decode(PyObject *mod, PyObject *args)
{
    PyObject *odec, *otab, *onb, *opat, *oinfo, *oocc, *osingle, *ooffs, *os, *ow;
    int depth, bits;
    if (!PyArg_ParseTuple(args, "OOOOOiiOOOOO:octree_mix_decode", &odec, &otab, &onb, &opat,
                          &oinfo, &depth, &bits, &os, &ow, &oocc, &osingle, &ooffs))
        return NULL;
    omx_init();
    Bufs b = {.n = 0};
    Py_ssize_t n, nnb, npat, ninfo, nocc, nsingle, noffs, ns, nw;
    int32_t *nb, *pat, *info, *occ, *single, *offs, *st, *w;
    if (!(nb = take(&b, onb, 0, "neighbours", &nnb)) ||
        !(pat = take(&b, opat, 0, "patterns", &npat)) ||
        !(info = take(&b, oinfo, 0, "info", &ninfo)) ||
        !(st = take(&b, os, 1, "states", &ns)) || !(w = take(&b, ow, 1, "weights", &nw)) ||
        !(occ = take(&b, oocc, 1, "occupancy", &nocc)) ||
        !(single = take(&b, osingle, 1, "single", &nsingle)) ||
        !(offs = take(&b, ooffs, 1, "offsets", &noffs)))
        goto fail;
    n = npat;
    if (omx_check(n, nnb, npat, ninfo, nocc, nsingle, noffs, depth, bits, st, ns, nw) < 0)
        goto fail;
    NcDecodeRun *run = begin_bank(odec, otab);
    if (!run)
        goto fail;
    int status;
    OmxCoder c = {.run = run, .val = NULL, .idx = NULL, .pos = 0};
    Py_BEGIN_ALLOW_THREADS
    status = omx_level(&c, nb, pat, info, occ, single, offs, n, depth, bits, st, w);
    Py_END_ALLOW_THREADS
    if (rc_api->end(run, status) < 0)
        goto fail;
    release(&b);
    Py_RETURN_NONE;
fail:
    release(&b);
    return NULL;
}

/* Fresh states: every probability 1/2, the refinement tables the identity. */
static PyObject *octree_mix_init(PyObject *mod, PyObject *args)
{
    PyObject *os;
    if (!PyArg_ParseTuple(args, "O:octree_mix_init", &os))
        return NULL;
    omx_init();
    Py_buffer v;
    if (get_i32(os, &v, 1, "states") < 0)
        return NULL;
    int32_t *st = v.buf;
    if (v.len / 4 != OMX_STATES) {
        PyBuffer_Release(&v);
        PyErr_SetString(PyExc_ValueError, "adaptive: octree_mix_init sizes disagree");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < OMX_STATES; i++)
        st[i] = 1 << 15;
    for (Py_ssize_t i = 0; i < OMX_APM; i++) {
        int32_t p = omx_squash((int32_t)(i % 33) * 128 - 2048) << 4;
        st[OMX_APM_AT + i] = p < P_MIN ? P_MIN : (p > P_MAX ? P_MAX : p);
    }
    PyBuffer_Release(&v);
    Py_RETURN_NONE;
}

static PyObject *octree_mix_sizes(PyObject *mod, PyObject *noargs)
{
    return Py_BuildValue("(nnn)", (Py_ssize_t)OMX_STATES, (Py_ssize_t)OMX_WEIGHTS, (Py_ssize_t)OMX_W0);
}

/* octree_counts_encode(values, nb, states, symbols, indexes) -> n
 * octree_counts_decode(decoder, bank, nb, states, out)
 *
 * Points per leaf voxel minus one (values >= 0), voxels in Morton order, each an integer
 * (int_encode_one above) with set = the rounded-down mean of the values of its -x, -y, -z
 * neighbours (nb[3 i + a], earlier voxels, or -1) and of the previous voxel, as a bit length
 * capped at OMX_COUNT_SETS - 2; set OMX_COUNT_SETS - 1 for the first voxel. */
#define OMX_COUNT_SETS 9

static inline int32_t omx_count_set(const int32_t *v, const int32_t *nb, Py_ssize_t i)
{
    if (i == 0)
        return OMX_COUNT_SETS - 1;
    int64_t sum = v[i - 1], m = 1;
    for (int a = 0; a < 3; a++)
        if (nb[3 * i + a] >= 0 && nb[3 * i + a] < i - 1) {
            sum += v[nb[3 * i + a]];
            m++;
        }
    int32_t cls = bitlen64((uint64_t)(sum / m));
    return cls < OMX_COUNT_SETS - 2 ? cls : OMX_COUNT_SETS - 2;
}

static PyObject *octree_counts_encode(PyObject *mod, PyObject *args)
{
    PyObject *ov, *onb, *os, *osym, *oidx;
    if (!PyArg_ParseTuple(args, "OOOOO:octree_counts_encode", &ov, &onb, &os, &osym, &oidx))
        return NULL;
    Bufs b = {.n = 0};
    Py_ssize_t n, nnb, ns, nsym, nidx, pos = 0;
    int32_t *v, *nb, *st, *sym, *idx;
    if (!(v = take(&b, ov, 0, "values", &n)) || !(nb = take(&b, onb, 0, "nb", &nnb)) ||
        !(st = take(&b, os, 1, "states", &ns)) ||
        !(sym = take(&b, osym, 1, "symbols", &nsym)) ||
        !(idx = take(&b, oidx, 1, "indexes", &nidx)))
        goto fail;
    if (nnb != 3 * n || ns != OMX_COUNT_SETS * INT_CTX || nsym != nidx || nsym < 65 * n) {
        PyErr_SetString(PyExc_ValueError, "adaptive: octree_counts_encode sizes disagree");
        goto fail;
    }
    if (check_states(st, ns) < 0)
        goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (v[i] < 0) {
            PyErr_SetString(PyExc_ValueError, "adaptive: negative voxel count");
            goto fail;
        }
        int_encode_one(v[i], st, omx_count_set(v, nb, i) * INT_CTX, sym, idx, &pos);
    }
    release(&b);
    return PyLong_FromSsize_t(pos);
fail:
    release(&b);
    return NULL;
}

static PyObject *octree_counts_decode(PyObject *mod, PyObject *args)
{
    PyObject *odec, *otab, *onb, *os, *oo;
    if (!PyArg_ParseTuple(args, "OOOOO:octree_counts_decode", &odec, &otab, &onb, &os, &oo))
        return NULL;
    Bufs b = {.n = 0};
    Py_ssize_t n, nnb, ns;
    int32_t *nb, *st, *out;
    if (!(nb = take(&b, onb, 0, "nb", &nnb)) || !(st = take(&b, os, 1, "states", &ns)) ||
        !(out = take(&b, oo, 1, "out", &n)))
        goto fail;
    if (nnb != 3 * n || ns != OMX_COUNT_SETS * INT_CTX) {
        PyErr_SetString(PyExc_ValueError, "adaptive: octree_counts_decode sizes disagree");
        goto fail;
    }
    if (check_states(st, ns) < 0)
        goto fail;
    NcDecodeRun *run = begin_bank(odec, otab);
    if (!run)
        goto fail;
    int status = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++)
        if (int_decode_one(run, st, omx_count_set(out, nb, i) * INT_CTX, &out[i]) < 0 ||
            out[i] < 0) {
            status = -1;
            break;
        }
    Py_END_ALLOW_THREADS
    if (rc_api->end(run, status) < 0)
        goto fail;
    release(&b);
    Py_RETURN_NONE;
fail:
    release(&b);
    return NULL;
}

/* ============================================================================= end octree v2 */

/* ----------------------------------------------------------------------------- video residual
 *
 * Context-adaptive coding of the quantised 8x8 transform coefficients of one plane of an
 * elic-ip inter frame (tools bit 64), CABAC-like. q holds nby x nbx blocks of 64 coefficients in
 * the transform's energy order (coefficient j of block b at q[64 b + j]), blocks in raster order.
 * All contexts of the call lie in states[base .. base + RES_SET) (the caller picks base from the
 * plane kind and the step class). Per block:
 *
 *   cbf   coded-block flag (any coefficient != 0), context (n, hint): n = number of coded blocks
 *         among the left, above-left, above and above-right ones, hint = hints[b] (0..3, the
 *         caller's class of the block's prediction)
 *   then for j = 0, 1, ...:
 *     sig   q[j] != 0 (inferred 1 at j = 63), context (pb(j), nb, prev): pb the position bucket
 *           (j below 8; 8 + (j - 8) / 4 below 24; 12 + (j - 24) / 8), nb = number of the left
 *           and above blocks whose coefficient j is != 0, prev = number of q[j - 1], q[j - 2]
 *           != 0
 *     if sig:
 *       gt1   |q| > 1, context (pg, min(c1, 2), nbm): pg = 0 for j = 0, 1 below 4, 2 below 16,
 *             else 3; c1 the block's earlier coefficients above 1; nbm the left / above blocks'
 *             coefficient j above 1
 *       gt2   |q| > 2 (after gt1 = 1), context (pg, min(c2, 2)), c2 the earlier ones above 2
 *       rem   |q| - 3 (after gt2 = 1) as exp-Golomb of order 0: n ones (context (pg >= 2,
 *             min(i, 7)) for the i-th), a zero (n < RES_MAX_PREFIX), then n bits at 1/2
 *       sign  at 1/2
 *       last  (j < 63) no further coefficient, context (pb(j), nl): nl = number of the left and
 *             above blocks whose last coefficient lies beyond j
 *
 * The same function encodes (symbols and table indexes for RangeEncoder.encode with the bank)
 * and decodes (through a run of the range decoder), so both sides take identical contexts.
 */
#define RES_NC 64
#define RES_NPB 17
#define RES_CBF 0
#define RES_HINTS 4
#define RES_SIG (RES_CBF + 5 * RES_HINTS)
#define RES_LAST (RES_SIG + RES_NPB * 9)
#define RES_GT1 (RES_LAST + RES_NPB * 3)
#define RES_GT2 (RES_GT1 + 36)
#define RES_REM (RES_GT2 + 12)
#define RES_SET (RES_REM + 16)
#define RES_MAX_PREFIX 24

typedef struct {
    int decoding, err;
    NcDecodeRun *run;
    int32_t *sym, *idx, *st;
    Py_ssize_t n, cap;
} ResCoder;

static inline int res_bin(ResCoder *c, int32_t ctx, int bit, int bypass)
{
    int32_t t = bypass ? HALF_TABLE : state_table(c->st[ctx]);
    if (c->err)
        return 0;
    if (c->decoding) {
        int32_t v;
        if (rc_api->decode(c->run, t, &v) < 0 || (v != 0 && v != 1)) {
            c->err = 1;
            return 0;
        }
        bit = v;
    } else {
        if (c->n >= c->cap) {
            c->err = 2;
            return 0;
        }
        c->sym[c->n] = bit;
        c->idx[c->n++] = t;
    }
    if (!bypass)
        c->st[ctx] = state_update(c->st[ctx], bit);
    return bit;
}

static const uint8_t res_pb[RES_NC] = {
    0,  1,  2,  3,  4,  5,  6,  7,  8,  8,  8,  8,  9,  9,  9,  9,  10, 10, 10, 10, 11, 11,
    11, 11, 12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13, 14, 14, 14, 14,
    14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15, 16, 16, 16, 16, 16, 16, 16, 16};

static inline int res_pg(int j) { return j == 0 ? 0 : (j < 4 ? 1 : (j < 16 ? 2 : 3)); }

/* Codes (or decodes into) q; last[b] receives each block's last coefficient (-1: empty). */
static void res_plane(ResCoder *c, int32_t *q, int nby, int nbx, int32_t base, int32_t *last,
                      const int32_t *hints)
{
    for (int by = 0; by < nby && !c->err; by++)
        for (int bx = 0; bx < nbx && !c->err; bx++) {
            Py_ssize_t b = (Py_ssize_t)by * nbx + bx;
            int32_t *x = q + RES_NC * b;
            const int32_t *ql = bx ? x - RES_NC : NULL;
            const int32_t *qa = by ? x - (Py_ssize_t)RES_NC * nbx : NULL;
            int lastl = bx ? last[b - 1] : -1, lasta = by ? last[b - nbx] : -1;
            int cbf = 0;
            if (!c->decoding)
                for (int j = 0; j < RES_NC; j++)
                    cbf |= x[j] != 0;
            int ncb = (lastl >= 0) + (lasta >= 0);
            if (by) {
                ncb += bx && last[b - nbx - 1] >= 0;
                ncb += bx + 1 < nbx && last[b - nbx + 1] >= 0;
            }
            cbf = res_bin(c, base + RES_CBF + ncb * RES_HINTS + hints[b], cbf, 0);
            last[b] = -1;
            if (!cbf) {
                if (c->decoding)
                    memset(x, 0, RES_NC * sizeof(int32_t));
                continue;
            }
            int elast = RES_NC - 1;
            if (!c->decoding)
                while (x[elast] == 0)
                    elast--;
            int c1 = 0, c2 = 0;
            for (int j = 0; j < RES_NC; j++) {
                int a = 0, neg = 0;
                if (!c->decoding) {
                    a = x[j] < 0 ? -x[j] : x[j];
                    neg = x[j] < 0;
                }
                int sig = 1;
                if (j < RES_NC - 1) {
                    int nb = (ql && ql[j] != 0) + (qa && qa[j] != 0);
                    int prev = (j >= 1 && x[j - 1] != 0) + (j >= 2 && x[j - 2] != 0);
                    sig = res_bin(c, base + RES_SIG + (res_pb[j] * 3 + nb) * 3 + prev, a != 0, 0);
                }
                if (!sig) {
                    if (c->decoding)
                        x[j] = 0;
                    continue;
                }
                int pg = res_pg(j);
                int nbm = (ql && (ql[j] > 1 || ql[j] < -1)) + (qa && (qa[j] > 1 || qa[j] < -1));
                int v = 1;
                if (res_bin(c, base + RES_GT1 + (pg * 3 + (c1 < 2 ? c1 : 2)) * 3 + nbm, a > 1, 0)) {
                    c1++;
                    v = 2;
                    if (res_bin(c, base + RES_GT2 + pg * 3 + (c2 < 2 ? c2 : 2), a > 2, 0)) {
                        c2++;
                        uint32_t r = c->decoding ? 0 : (uint32_t)(a - 3) + 1;
                        int n = 0;
                        if (!c->decoding)
                            n = bitlen_u32(r);
                        int rb = base + RES_REM + (pg >= 2) * 8;
                        int k = 0;
                        while (k < RES_MAX_PREFIX && res_bin(c, rb + (k < 7 ? k : 7), k < n, 0))
                            k++;
                        if (k >= RES_MAX_PREFIX && c->decoding) {
                            c->err = 1;
                            return;
                        }
                        uint32_t m = 1;
                        for (int i = k - 1; i >= 0; i--)
                            m = 2 * m + (uint32_t)res_bin(c, 0, (r >> i) & 1, 1);
                        v = (int)(m - 1) + 3;
                    }
                }
                neg = res_bin(c, 0, neg, 1);
                if (c->decoding)
                    x[j] = neg ? -v : v;
                if (j < RES_NC - 1) {
                    int nl = (lastl > j) + (lasta > j);
                    if (res_bin(c, base + RES_LAST + res_pb[j] * 3 + nl, j == elast, 0)) {
                        last[b] = j;
                        if (c->decoding)
                            for (int i = j + 1; i < RES_NC; i++)
                                x[i] = 0;
                        break;
                    }
                } else
                    last[b] = j;
            }
            if (c->decoding && last[b] < 0 && !c->err)
                c->err = 1; /* cannot happen: j = 63 is always last */
        }
}

static int res_args(Bufs *b, PyObject *oq, int writable, PyObject *oh, PyObject *os, int nby,
                    int nbx, int base, int32_t **q, int32_t **hints, int32_t **st)
{
    Py_ssize_t nq, nh, ns;
    if (!(*q = take(b, oq, writable, "coefficients", &nq)) || !(*hints = take(b, oh, 0, "hints", &nh)) ||
        !(*st = take(b, os, 1, "states", &ns)))
        return -1;
    if (nby < 0 || nbx < 0 || nq != (Py_ssize_t)nby * nbx * RES_NC || nh != (Py_ssize_t)nby * nbx) {
        PyErr_SetString(PyExc_ValueError, "adaptive: coefficients do not match the block grid");
        return -1;
    }
    if (check_ctx(*hints, nh, RES_HINTS, "hint") < 0)
        return -1;
    if (base < 0 || (Py_ssize_t)base + RES_SET > ns) {
        PyErr_SetString(PyExc_ValueError, "adaptive: residual contexts outside the states");
        return -1;
    }
    return check_states(*st + base, RES_SET);
}

/* resid_encode(q, hints, nby, nbx, base, states, symbols_out, indexes_out) -> count, or -1 when the
 * output buffers are too small (states then partly updated: the caller restores them). Values
 * must lie within +-2^24. */
static PyObject *resid_encode(PyObject *mod, PyObject *args)
{
    PyObject *oq, *oh, *os, *osym, *oidx;
    int nby, nbx, base;
    if (!PyArg_ParseTuple(args, "OOiiiOOO:resid_encode", &oq, &oh, &nby, &nbx, &base, &os, &osym,
                          &oidx))
        return NULL;
    Bufs b = {.n = 0};
    int32_t *q, *hints, *st, *sym, *idx, *last = NULL;
    Py_ssize_t nsym, nidx;
    if (res_args(&b, oq, 0, oh, os, nby, nbx, base, &q, &hints, &st) < 0 ||
        !(sym = take(&b, osym, 1, "symbols", &nsym)) || !(idx = take(&b, oidx, 1, "indexes", &nidx)))
        goto fail;
    if (nsym != nidx) {
        PyErr_SetString(PyExc_ValueError, "adaptive: symbols and indexes differ in size");
        goto fail;
    }
    for (Py_ssize_t i = 0; i < (Py_ssize_t)nby * nbx * RES_NC; i++)
        if (q[i] > (1 << 24) || q[i] < -(1 << 24)) {
            PyErr_SetString(PyExc_ValueError, "adaptive: residual coefficient out of range");
            goto fail;
        }
    last = malloc(sizeof(int32_t) * ((size_t)nby * nbx + 1));
    if (!last) {
        PyErr_NoMemory();
        goto fail;
    }
    ResCoder c = {.decoding = 0, .err = 0, .run = NULL, .sym = sym, .idx = idx, .st = st,
                  .n = 0, .cap = nsym};
    res_plane(&c, q, nby, nbx, base, last, hints);
    free(last);
    release(&b);
    return PyLong_FromSsize_t(c.err ? -1 : c.n);
fail:
    free(last);
    release(&b);
    return NULL;
}

/* resid_decode(decoder, bank, hints, nby, nbx, base, states, out): what resid_encode coded. */
static PyObject *resid_decode(PyObject *mod, PyObject *args)
{
    PyObject *odec, *otab, *oh, *os, *oo;
    int nby, nbx, base;
    if (!PyArg_ParseTuple(args, "OOOiiiOO:resid_decode", &odec, &otab, &oh, &nby, &nbx, &base, &os,
                          &oo))
        return NULL;
    Bufs b = {.n = 0};
    int32_t *q, *hints, *st, *last = NULL;
    if (res_args(&b, oo, 1, oh, os, nby, nbx, base, &q, &hints, &st) < 0)
        goto fail;
    last = malloc(sizeof(int32_t) * ((size_t)nby * nbx + 1));
    if (!last) {
        PyErr_NoMemory();
        goto fail;
    }
    NcDecodeRun *run = begin_bank(odec, otab);
    if (!run)
        goto fail;
    ResCoder c = {.decoding = 1, .err = 0, .run = run, .sym = NULL, .idx = NULL, .st = st,
                  .n = 0, .cap = 0};
    Py_BEGIN_ALLOW_THREADS
    res_plane(&c, q, nby, nbx, base, last, hints);
    Py_END_ALLOW_THREADS
    free(last);
    last = NULL;
    if (rc_api->end(run, c.err ? -1 : 0) < 0)
        goto fail;
    release(&b);
    Py_RETURN_NONE;
fail:
    free(last);
    release(&b);
    return NULL;
}

static PyObject *resid_sizes(PyObject *mod, PyObject *noargs)
{
    return Py_BuildValue("{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i}", "set", RES_SET, "hints",
                         RES_HINTS, "cbf", RES_CBF,
                         "sig", RES_SIG, "last", RES_LAST, "gt1", RES_GT1, "gt2", RES_GT2, "rem",
                         RES_REM, "max_prefix", RES_MAX_PREFIX);
}

/* ----------------------------------------------------------------------------- wavelet bands
 *
 * wav_band_encode(values, h, w, parent, hp, wp, luma, par, states, symbols_out, indexes_out) -> n
 *   (n = -1: the outputs were too small, states partly updated; 66 per value always suffice)
 * wav_band_decode(decoder, bank, h, w, parent, hp, wp, luma, par, states, out)
 *
 * One h x w band of quantised wavelet coefficients (format 3 of the wavelet codec,
 * codecs/dyadic.py), in raster order. par (int32): [mode, a, an, b, c, d, e, nb, base,
 * sign_base, rate, edge_1 .. edge_{nb-1}]. Every value has a set of 64 contexts (the layout of `ints`:
 * zero flag, -, unary exponent, mantissa top bit per exponent; further mantissa bits at 1/2) and
 * its sign a context of its own:
 *   mode 0 (detail band): s = a |W| + an |N| + b (|NW| + |NE|) + c (|WW| + |NN|)
 *          + d |parent[min(i/2, hp-1)][min(j/2, wp-1)]| (hp > 0) + e |luma[i][j]| (luma given),
 *          neighbours outside the band are 0; set = base + (number of edges <= s);
 *          sign context = sign_base + 3 (sgn W + 1) + (sgn N + 1); the value itself is coded.
 *   mode 1 (low band, DPCM): W, N, NW with W = N at the left edge, N = W on the top row,
 *          NW = N / W likewise, (0, 0) predicted 0; prediction = median(W, N, W + N - NW);
 *          s = |W - NW| + |N - NW|; the residual is coded; sign context = sign_base.
 * States move towards each bit at 1 / min(count + 2, rate) (rate 2..256), the rule of the
 * other kernels with a slower limit.
 */
#define WAV_MAXNB 32

typedef struct {
    int mode, a, an, b, c, d, e, nb, base, sbase, rate;
    int32_t edges[WAV_MAXNB];
} WavPar;

static int wav_parse(const int32_t *p, Py_ssize_t n, WavPar *wp, Py_ssize_t nctx)
{
    if (n < 11)
        goto bad;
    wp->mode = p[0], wp->a = p[1], wp->an = p[2], wp->b = p[3], wp->c = p[4], wp->d = p[5];
    wp->e = p[6], wp->nb = p[7], wp->base = p[8], wp->sbase = p[9], wp->rate = p[10];
    for (int i = 1; i <= 6; i++)
        if (p[i] < 0 || p[i] > 64)
            goto bad;
    if ((wp->mode != 0 && wp->mode != 1) || wp->nb < 1 || wp->nb > WAV_MAXNB ||
        n != 11 + wp->nb - 1 || wp->rate < 2 || wp->rate > 256 || wp->base < 0 || wp->sbase < 0 ||
        (int64_t)(wp->base + wp->nb) * INT_CTX > nctx || wp->sbase + 9 > nctx)
        goto bad;
    for (int i = 0; i < wp->nb - 1; i++)
        wp->edges[i] = p[11 + i];
    return 0;
bad:
    PyErr_SetString(PyExc_ValueError, "adaptive: bad wavelet band parameters");
    return -1;
}

static inline int32_t wav_update(int32_t s, int bit, int rate)
{
    int32_t p = s & 0xFFFF, n = (s >> 16) & 0xFF;
    int32_t d = n + 2 < rate ? n + 2 : rate;
    p += ((bit ? 65536 : 0) - p) / d;
    p = p < P_MIN ? P_MIN : (p > P_MAX ? P_MAX : p);
    n = n < 255 ? n + 1 : 255;
    return p | (n << 16);
}

static inline int64_t wav_abs(int64_t v) { return v < 0 ? -v : v; }
static inline int wav_sgn(int32_t v) { return (v > 0) - (v < 0); }

/* (set, sign context, prediction) of value (i, j) given the decoded values v. */
static inline void wav_context(const WavPar *P, const int32_t *v, int h, int w, const int32_t *par,
                               int hp, int wpp, const int32_t *luma, int i, int j, int32_t *set,
                               int32_t *sctx, int32_t *pred)
{
    (void)h;
    const int32_t *row = v + (Py_ssize_t)i * w;
    int64_t s;
    if (P->mode == 1) {
        int32_t W, N, NW;
        if (i == 0 && j == 0) {
            W = N = NW = 0;
        } else if (i == 0) {
            W = N = NW = row[j - 1];
        } else if (j == 0) {
            W = N = NW = row[j - w];
        } else {
            W = row[j - 1], N = row[j - w], NW = row[j - w - 1];
        }
        int32_t mx = W > N ? W : N, mn = W > N ? N : W;
        *pred = NW >= mx ? mn : (NW <= mn ? mx : W + N - NW);
        s = wav_abs((int64_t)W - NW) + wav_abs((int64_t)N - NW);
        *sctx = P->sbase;
    } else {
        int64_t W = j > 0 ? row[j - 1] : 0, N = i > 0 ? row[j - w] : 0;
        int64_t NW = (i > 0 && j > 0) ? row[j - w - 1] : 0;
        int64_t NE = (i > 0 && j + 1 < w) ? row[j - w + 1] : 0;
        int64_t WW = j > 1 ? row[j - 2] : 0, NN = i > 1 ? row[j - 2 * w] : 0;
        s = P->a * wav_abs(W) + P->an * wav_abs(N) + P->b * (wav_abs(NW) + wav_abs(NE)) +
            P->c * (wav_abs(WW) + wav_abs(NN));
        if (hp > 0) {
            int pi = i / 2 < hp - 1 ? i / 2 : hp - 1, pj = j / 2 < wpp - 1 ? j / 2 : wpp - 1;
            s += P->d * wav_abs(par[(Py_ssize_t)pi * wpp + pj]);
        }
        if (luma)
            s += P->e * wav_abs(luma[(Py_ssize_t)i * w + j]);
        *sctx = P->sbase + 3 * (wav_sgn((int32_t)W) + 1) + (wav_sgn((int32_t)N) + 1);
        *pred = 0;
    }
    int k = 0;
    while (k < P->nb - 1 && s >= P->edges[k])
        k++;
    *set = P->base + k;
}

static int wav_shapes(Py_ssize_t nv, int h, int w, Py_ssize_t npar, int hp, int wp, Py_ssize_t nl)
{
    if (h < 1 || w < 1 || (Py_ssize_t)h * w != nv || hp < 0 || wp < 0 ||
        (Py_ssize_t)hp * wp != npar || (hp > 0) != (wp > 0) || (nl != 0 && nl != nv)) {
        PyErr_SetString(PyExc_ValueError, "adaptive: wavelet band sizes disagree");
        return -1;
    }
    return 0;
}

static PyObject *wav_band_encode(PyObject *mod, PyObject *args)
{
    PyObject *ov, *opar, *oluma, *op, *os, *oval, *oidx;
    int h, w, hp, wp;
    if (!PyArg_ParseTuple(args, "OiiOiiOOOOO:wav_band_encode", &ov, &h, &w, &opar, &hp, &wp,
                          &oluma, &op, &os, &oval, &oidx))
        return NULL;
    Bufs b = {.n = 0};
    Py_ssize_t n, npar, nl, np_, ns, nval, nidx, pos = 0;
    int32_t *v, *par, *luma, *pp, *st, *val, *idx;
    WavPar P;
    if (!(v = take(&b, ov, 0, "values", &n)) || !(par = take(&b, opar, 0, "parent", &npar)) ||
        !(luma = take(&b, oluma, 0, "luma", &nl)) || !(pp = take(&b, op, 0, "par", &np_)) ||
        !(st = take(&b, os, 1, "states", &ns)) || !(val = take(&b, oval, 1, "symbols", &nval)) ||
        !(idx = take(&b, oidx, 1, "indexes", &nidx)))
        goto fail;
    if (wav_shapes(n, h, w, npar, hp, wp, nl) < 0 || wav_parse(pp, np_, &P, ns) < 0)
        goto fail;
    if (nidx != nval) {
        PyErr_SetString(PyExc_ValueError, "adaptive: wav_band_encode output sizes differ");
        goto fail;
    }
    if (check_states(st, ns) < 0)
        goto fail;
    for (int i = 0; i < h; i++)
        for (int j = 0; j < w; j++) {
            int32_t set, sctx, pred;
            wav_context(&P, v, h, w, par, hp, wp, nl ? luma : NULL, i, j, &set, &sctx, &pred);
            int64_t r = (int64_t)v[(Py_ssize_t)i * w + j] - pred;
            if (r < -INT32_MAX || r > INT32_MAX) {
                PyErr_SetString(PyExc_ValueError, "adaptive: wavelet value out of range");
                goto fail;
            }
            if (pos + 66 > nval) { /* not enough room: the caller retries with 66 per value */
                release(&b);
                return PyLong_FromSsize_t(-1);
            }
            int32_t c0 = set * INT_CTX;
#define WPUT(bit, ctx)                                                                            \
    do {                                                                                         \
        val[pos] = (bit);                                                                        \
        idx[pos++] = state_table(st[ctx]);                                                       \
        st[ctx] = wav_update(st[ctx], (bit), P.rate);                                            \
    } while (0)
            WPUT(r != 0, c0);
            if (r != 0) {
                WPUT(r < 0, sctx);
                uint32_t m = (uint32_t)(r < 0 ? -r : r);
                int k = bitlen_u32(m);
                for (int t = 0; t < k; t++)
                    WPUT(1, c0 + 2 + t);
                if (k < 31)
                    WPUT(0, c0 + 2 + k);
                if (k >= 1) {
                    WPUT((int)((m >> (k - 1)) & 1), c0 + 33 + (k < 30 ? k : 30));
                    for (int t = k - 2; t >= 0; t--) {
                        val[pos] = (int32_t)((m >> t) & 1);
                        idx[pos++] = HALF_TABLE;
                    }
                }
            }
#undef WPUT
        }
    release(&b);
    return PyLong_FromSsize_t(pos);
fail:
    release(&b);
    return NULL;
}

static int wav_decode_run(NcDecodeRun *run, const WavPar *P, int32_t *st, int h, int w,
                          const int32_t *par, int hp, int wp, const int32_t *luma, int32_t *out)
{
    int32_t b;
#define WGET(ctx)                                                                                 \
    do {                                                                                         \
        if (rc_api->decode(run, state_table(st[ctx]), &b) < 0 || (b != 0 && b != 1))             \
            return -1;                                                                           \
        st[ctx] = wav_update(st[ctx], b, P->rate);                                               \
    } while (0)
    for (int i = 0; i < h; i++)
        for (int j = 0; j < w; j++) {
            int32_t set, sctx, pred;
            wav_context(P, out, h, w, par, hp, wp, luma, i, j, &set, &sctx, &pred);
            int32_t c0 = set * INT_CTX;
            int64_t r = 0;
            WGET(c0);
            if (b) {
                WGET(sctx);
                int neg = b, k = 0;
                while (k < 31) {
                    WGET(c0 + 2 + k);
                    if (!b)
                        break;
                    k++;
                }
                int64_t m = (int64_t)1 << k;
                if (k >= 1) {
                    WGET(c0 + 33 + (k < 30 ? k : 30));
                    m |= (int64_t)b << (k - 1);
                    for (int t = k - 2; t >= 0; t--) {
                        if (rc_api->decode(run, HALF_TABLE, &b) < 0 || (b != 0 && b != 1))
                            return -1;
                        m |= (int64_t)b << t;
                    }
                }
                r = neg ? -m : m;
            }
            int64_t val = r + pred;
            if (val < -INT32_MAX || val > INT32_MAX)
                return -1;
            out[(Py_ssize_t)i * w + j] = (int32_t)val;
        }
#undef WGET
    return 0;
}

static PyObject *wav_band_decode(PyObject *mod, PyObject *args)
{
    PyObject *odec, *otab, *opar, *oluma, *op, *os, *oo;
    int h, w, hp, wp;
    if (!PyArg_ParseTuple(args, "OOiiOiiOOOO:wav_band_decode", &odec, &otab, &h, &w, &opar, &hp,
                          &wp, &oluma, &op, &os, &oo))
        return NULL;
    Bufs b = {.n = 0};
    Py_ssize_t n, npar, nl, np_, ns;
    int32_t *par, *luma, *pp, *st, *out;
    WavPar P;
    if (!(out = take(&b, oo, 1, "out", &n)) || !(par = take(&b, opar, 0, "parent", &npar)) ||
        !(luma = take(&b, oluma, 0, "luma", &nl)) || !(pp = take(&b, op, 0, "par", &np_)) ||
        !(st = take(&b, os, 1, "states", &ns)))
        goto fail;
    if (wav_shapes(n, h, w, npar, hp, wp, nl) < 0 || wav_parse(pp, np_, &P, ns) < 0 ||
        check_states(st, ns) < 0)
        goto fail;
    NcDecodeRun *run = begin_bank(odec, otab);
    if (!run)
        goto fail;
    int status;
    const int32_t *lp = nl ? luma : NULL;
    Py_BEGIN_ALLOW_THREADS
    status = wav_decode_run(run, &P, st, h, w, par, hp, wp, lp, out);
    Py_END_ALLOW_THREADS
    if (rc_api->end(run, status) < 0)
        goto fail;
    release(&b);
    Py_RETURN_NONE;
fail:
    release(&b);
    return NULL;
}

static PyMethodDef methods[] = {
    {"wav_band_encode", wav_band_encode, METH_VARARGS,
     "wav_band_encode(values, h, w, parent, hp, wp, luma, par, states, symbols, indexes) -> n."},
    {"wav_band_decode", wav_band_decode, METH_VARARGS,
     "wav_band_decode(decoder, bank, h, w, parent, hp, wp, luma, par, states, out)."},
    {"bits_encode", bits_encode, METH_VARARGS,
     "bits_encode(bits, contexts, states, indexes_out): table index of every bit."},
    {"bits_decode", bits_decode, METH_VARARGS,
     "bits_decode(decoder, bank, contexts, states, out): decode len(contexts) bits."},
    {"bytes_encode", bytes_encode, METH_VARARGS,
     "bytes_encode(bytes, bases, states, values_out, indexes_out): 8 binary symbols a byte."},
    {"bytes_decode", bytes_decode, METH_VARARGS,
     "bytes_decode(decoder, bank, bases, states, out): decode len(bases) bytes."},
    {"ints_encode", ints_encode, METH_VARARGS,
     "ints_encode(values, sets, states, markov, symbols_out, indexes_out) -> symbol count."},
    {"ints_decode", ints_decode, METH_VARARGS,
     "ints_decode(decoder, bank, sets, states, markov, out): decode len(sets) integers."},
    {"mirror_partners", mirror_partners, METH_VARARGS,
     "mirror_partners(q, pred, axis, s2, top, out): the mesh encoder's mirror candidates."},
    {"repeat_partners", repeat_partners, METH_VARARGS,
     "repeat_partners(q, pred, border, out): the mesh encoder's repeat candidates."},
    {"position_order", position_order, METH_VARARGS,
     "position_order(starts, pairs, out): the mesh codec's position coding order."},
    {"mesh_step", mesh_step, METH_VARARGS,
     "mesh_step(decoder, bank, states, set, flip_set, noflip) -> int: one mesh traversal step."},
    {"pos_mix_encode", pos_mix_encode, METH_VARARGS,
     "pos_mix_encode(values, sets, slots, vids, nb_starts, nbrs, states, weights, symbols, "
     "indexes) -> count: mesh positions with mixed contexts (format 6)."},
    {"pos_mix_init", pos_mix_init, METH_VARARGS, "pos_mix_init(states): fresh refinement tables."},
    {"pos_mix_sizes", pos_mix_sizes, METH_NOARGS,
     "pos_mix_sizes() -> (states, weights, initial weight, weights of the mixer itself) of "
     "pos_mix_encode."},
    {"positions_decode", positions_decode, METH_VARARGS,
     "positions_decode(decoder, bank, states, markov, starts, triples, refs, kinds, top, out, "
     "palette, palette_offsets, nb_starts, nbrs, weight, select): "
     "decode and rebuild predicted mesh positions."},
    {"octree_mix_encode", octree_mix_encode, METH_VARARGS,
     "octree_mix_encode(nb, pat, info, occ, single, offs, depth, bits, states, weights, values, "
     "indexes) -> count: one octree level with mixed contexts and direct mode."},
    {"octree_mix_decode", octree_mix_decode, METH_VARARGS,
     "octree_mix_decode(decoder, bank, nb, pat, info, depth, bits, states, weights, occ, single, "
     "offs): decode one octree level."},
    {"octree_counts_encode", octree_counts_encode, METH_VARARGS,
     "octree_counts_encode(values, nb, states, symbols, indexes) -> count: voxel point counts."},
    {"octree_counts_decode", octree_counts_decode, METH_VARARGS,
     "octree_counts_decode(decoder, bank, nb, states, out): decode voxel point counts."},
    {"octree_mix_init", octree_mix_init, METH_VARARGS,
     "octree_mix_init(states): fresh states for octree_mix."},
    {"octree_mix_sizes", octree_mix_sizes, METH_NOARGS,
     "(states, weights, initial weight) of octree_mix."},
    {"resid_encode", resid_encode, METH_VARARGS,
     "resid_encode(q, hints, nby, nbx, base, states, symbols, indexes) -> count (-1: buffers too "
     "small): one plane of video residual coefficients."},
    {"resid_decode", resid_decode, METH_VARARGS,
     "resid_decode(decoder, bank, hints, nby, nbx, base, states, out): decode one residual plane."},
    {"resid_sizes", resid_sizes, METH_NOARGS, "context layout of resid_encode / resid_decode."},
    {NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_adaptive",
    "Adaptive binary context models coded through the shared range coder.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__adaptive(void)
{
    PyObject *rc_module = PyImport_ImportModule("neuralcodec.entropy._rangecoder");
    if (!rc_module)
        return NULL;
    Py_DECREF(rc_module);
    rc_api = PyCapsule_Import(NC_RANGE_DECODER_API, 0);
    if (!rc_api)
        return NULL;
    if (rc_api->version != NC_RANGE_DECODER_API_VERSION) {
        PyErr_Format(PyExc_ImportError, "_adaptive needs range decoder C API %d, got %d",
                     NC_RANGE_DECODER_API_VERSION, rc_api->version);
        return NULL;
    }
    return PyModule_Create(&module);
}
