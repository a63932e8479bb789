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

static inline int32_t state_update(int32_t s, int bit)
{
    int32_t p = s & 0xFFFF, n = (s >> 16) & 0xFF;
    int32_t d = n + 2 < RATE_LIMIT ? n + 2 : RATE_LIMIT;
    p += ((bit ? 65536 : 0) - p) / d;
    p = p < P_MIN ? P_MIN : (p > P_MAX ? P_MAX : p);
    n = n < 255 ? n + 1 : 255;
    return p | (n << 16);
}

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

#define MAXBUF 6
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
    NcDecodeRun *run = rc_api->begin(odec, otab);
    if (!run)
        goto fail;
    int status = 0;
    if (rc_api->num_tables(run) != BANK_SIZE) {
        rc_api->end(run, 0);
        PyErr_SetString(PyExc_ValueError, "adaptive: not the binary table bank");
        goto fail;
    }
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
    NcDecodeRun *run = rc_api->begin(odec, otab);
    if (!run)
        goto fail;
    int status = 0;
    if (rc_api->num_tables(run) != BANK_SIZE) {
        rc_api->end(run, 0);
        PyErr_SetString(PyExc_ValueError, "adaptive: not the binary table bank");
        goto fail;
    }
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
    NcDecodeRun *run = rc_api->begin(odec, otab);
    if (!run)
        goto fail;
    if (rc_api->num_tables(run) != BANK_SIZE) {
        rc_api->end(run, 0);
        PyErr_SetString(PyExc_ValueError, "adaptive: not the binary table bank");
        goto fail;
    }
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
 *                  palette, palette_offsets, nb_starts, nbrs, weight, select)
 *
 * Rebuilds V vertices in order (3 int32 coordinates each). Vertex w has the parallelograms
 * triples[starts[w] .. starts[w+1]) = (a, b, o), all < w; with n >= 1 of them the prediction of
 * axis k is floor((2 sum(p[a] + p[b] - p[o]) + n) / (2 n)), else p[refs[w]] (refs[w] < w) or 0
 * (refs[w] == -1); clamped to 0..top. The residual of axis k is decoded as an integer (above) with
 * set ((kinds[w] * POS_SCALES + scale) * 3 + k), scale = min(bit length of
 * sum_k |p[a0] - p[b0]| + sum_k (max - min of the parallelograms' predictions), POS_SCALES - 1)
 * for the first triple (a0, b0, o0), 0 without parallelograms. codecs/mesh_traversal.py computes
 * the same sets with NumPy for the encoder.
 *
 * Palettes: axis k has one when pal_off[k] < pal_off[k + 1]: the sorted distinct values
 * palette[pal_off[k] .. pal_off[k + 1]) that the axis takes. Its residual is then one of palette
 * indexes, against the index of the palette value nearest the (clamped) prediction (the lower one
 * on a tie), with set + POS_KINDS * POS_SCALES * 3 (their own statistics), and the coordinate
 * is the palette value at the decoded index.
 *
 * Blend: weight = t2 + 16 t1, t2 for vertices with 2+ parallelograms, t1 for those with one
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

static inline int bitlen64(uint64_t a)
{
    int n = 0;
    while (a) {
        a >>= 1;
        n++;
    }
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

static int positions_run(NcDecodeRun *run, int32_t *st, int markov, const int32_t *starts,
                         const int32_t *tri, Py_ssize_t ntri, const int32_t *refs,
                         const int32_t *kinds, int64_t top, int32_t *out, Py_ssize_t nv,
                         const int32_t *pal, const int32_t *pal_off, const int32_t *nb_starts,
                         const int32_t *nbrs, Py_ssize_t nnbrs, int weight, int select,
                         int dups, int32_t *blist)
{
    int64_t prev = 0, prev2 = 0;
    int32_t prevdup = 0;
    Py_ssize_t nbord = 0;
    if (starts[0] != 0 || nb_starts[0] != 0)
        return -1;
    for (Py_ssize_t w = 0; w < nv; w++) {
        int32_t s = starts[w], e = starts[w + 1];
        int32_t kind = kinds[w] & 7, border = (kinds[w] >> 3) & 1;
        if (e < s || e > ntri || (kinds[w] & ~15) || kind >= POS_KINDS - 1)
            return -1;
        if (nb_starts[w + 1] < nb_starts[w] || nb_starts[w + 1] > nnbrs)
            return -1;
        for (int32_t j = nb_starts[w]; j < nb_starts[w + 1]; j++)
            if (nbrs[j] < 0 || nbrs[j] >= w)
                return -1;
        int64_t pred[3], scale = 0, spread = 0, edge = 0;
        if (e > s) {
            int64_t n = e - s;
            for (int32_t t = s; t < e; t++) {
                int32_t a = tri[3 * t], b = tri[3 * t + 1], o = tri[3 * t + 2];
                if (a < 0 || b < 0 || o < 0 || a >= w || b >= w || o >= w)
                    return -1;
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
                int t = n >= 2 ? (weight & 15) : (weight >> 4);
                if (t > 0 && ns1 - ns0 >= 2) {
                    int64_t m = ns1 - ns0, csum = 0;
                    for (int32_t j = ns0; j < ns1; j++)
                        csum += out[3 * (Py_ssize_t)nbrs[j] + k];
                    int64_t c = floor_div(2 * csum + m, 2 * m);
                    pred[k] = floor_div((8 - t) * pred[k] + t * c + 4, 8);
                }
                int64_t d = (int64_t)out[3 * tri[3 * s] + k] - out[3 * tri[3 * s + 1] + k];
                scale += (d < 0 ? -d : d) + (hi - lo);
                spread += hi - lo;
                edge += d < 0 ? -d : d;
            }
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
        if (dups && border && nbord > 0) {
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
        if (dups && border)
            blist[nbord++] = (int32_t)w;
        int cls = bitlen64((uint64_t)scale);
        cls = cls < POS_SCALES - 1 ? cls : POS_SCALES - 1;
        for (int k = 0; k < 3; k++) {
            Py_ssize_t np_ = pal_off[k + 1] - pal_off[k];
            int32_t set = (kind * POS_SCALES + cls) * 3 + k, res;
            if (np_ > 0)
                set += POS_KINDS * POS_SCALES * 3;
            if (int_decode_one(run, st, int_set(&set, 0, markov, prev, prev2) * INT_CTX, &res) < 0)
                return -1;
            prev2 = prev;
            prev = res;
            int64_t p = pred[k] < 0 ? 0 : (pred[k] > top ? top : pred[k]);
            if (np_ > 0) {
                const int32_t *pk = pal + pal_off[k];
                int64_t j = (int64_t)palette_nearest(pk, np_, p) + res;
                if (j < 0 || j >= np_)
                    return -1;
                out[3 * w + k] = pk[j];
                continue;
            }
            int64_t v = p + res;
            if (v < INT32_MIN || v > INT32_MAX)
                return -1;
            out[3 * w + k] = (int32_t)v;
        }
    }
    return 0;
}

static PyObject *positions_decode(PyObject *mod, PyObject *args)
{
    PyObject *odec, *otab, *os, *ost, *otri, *oref, *okind, *oout, *opal, *opoff, *onbs, *onbr;
    int markov, weight, select;
    long long top;
    if (!PyArg_ParseTuple(args, "OOOiOOOOLOOOOOii:positions_decode", &odec, &otab, &os, &markov,
                          &ost, &otri, &oref, &okind, &top, &oout, &opal, &opoff, &onbs, &onbr,
                          &weight, &select))
        return NULL;
    Bufs b = {.n = 0};
    Py_buffer pv, ov, sv, nv_;
    int have_pv = 0, have_ov = 0, have_sv = 0, have_nv = 0;
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
    if (sv.len / 4 != nref + 1 || weight < 0 || (weight & 15) > 8 || (weight >> 4) > 8) {
        PyErr_SetString(PyExc_ValueError, "adaptive: positions_decode bad neighbour lists");
        goto fail;
    }
    const int32_t *pal = pv.buf, *poff = ov.buf;
    Py_ssize_t npal = pv.len / 4;
    if (markov == 0 || markov < -64 || nkind != nref || nst != nref + 1 || nout != 3 * nref ||
        ntri % 3 || ov.len / 4 != 4 ||
        markov != 1 || ns < (Py_ssize_t)(POS_DUP_BASE + 2) * INT_CTX || select < 0 || select > 3) {
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
    NcDecodeRun *run = rc_api->begin(odec, otab);
    if (!run)
        goto fail;
    if (rc_api->num_tables(run) != BANK_SIZE) {
        rc_api->end(run, 0);
        PyErr_SetString(PyExc_ValueError, "adaptive: not the binary table bank");
        goto fail;
    }
    int status;
    Py_BEGIN_ALLOW_THREADS
    int32_t *blist = (select & 2) ? malloc(((size_t)nref + 1) * sizeof(int32_t)) : NULL;
    if ((select & 2) && !blist)
        status = -1;
    else
        status = positions_run(run, st, markov, starts, tri, ntri / 3, refs, kinds, top, out,
                               nref, pal, poff, sv.buf, nv_.buf, nv_.len / 4, weight, select & 1,
                               (select >> 1) & 1, blist);
    free(blist);
    Py_END_ALLOW_THREADS
    if (rc_api->end(run, status) < 0)
        goto fail;
    PyBuffer_Release(&nv_);
    PyBuffer_Release(&sv);
    PyBuffer_Release(&ov);
    PyBuffer_Release(&pv);
    release(&b);
    Py_RETURN_NONE;
fail:
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
    NcDecodeRun *run = rc_api->begin(odec, otab);
    if (!run) {
        PyBuffer_Release(&view);
        return NULL;
    }
    if (rc_api->num_tables(run) != BANK_SIZE) {
        rc_api->end(run, 0);
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "adaptive: not the binary table bank");
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

/* ----------------------------------------------------------------------------- octree levels
 *
 * octree_encode(occupancy, neighbours, patterns, bases, states, values_out, indexes_out) -> n
 * octree_decode(decoder, bank, neighbours, patterns, bases, states, out)
 *
 * One level of an octree, nodes in Morton order. Node i's occupancy byte is coded child by child
 * (slot k = 4 x + 2 y + z, k = 0..7), one adaptive bit each, with context
 *
 *     ((((bases[i] * 8 + A) * 8 + B) * 4 + S) * 8 + k)
 *
 * A: for each axis, whether the node's face neighbour on the child's side exists (patterns[i],
 *    bit 2 * axis + side: -x, +x, -y, +y, -z, +z);
 * B: for each axis, whether the child's neighbour one step towards the negative side is occupied:
 *    a sibling already coded, or a child of the node's negative face neighbour
 *    (neighbours[3 i + axis], an earlier node of the level, -1 if none), decoded before node i
 *    because Morton order puts it first;
 * S: how many children of the node are already known to be occupied (0, 1, 2, 3+).
 * The last child of a node with no occupied child so far is not coded (a node is never empty).
 * Each bit also has a fine context: the coarse one x which face neighbours on the child's far
 * sides exist (3 bits); the table comes from both states (mixed_table), and both learn the bit.
 * states: bases x 2048 coarse contexts, then bases x 2048 x 8 fine ones.
 */
/* The far-side face neighbours of the child (3 bits), refining a context 8 ways. */
static inline int32_t octree_far(int32_t pattern, int32_t k)
{
    int32_t F = 0;
    for (int a = 0; a < 3; a++)
        F |= ((pattern >> (2 * a + 1 - ((k >> (2 - a)) & 1))) & 1) << a;
    return F;
}

/* Table of a bit from a coarse and a fine context: their probabilities averaged with weights
 * 4 (coarse) and the fine context's observation count, in integers. */
static inline int32_t mixed_table(int32_t sc, int32_t sf)
{
    int64_t nf = (sf >> 16) & 0xFF;
    int64_t p = ((int64_t)(sf & 0xFFFF) * nf + (int64_t)(sc & 0xFFFF) * 4) / (nf + 4);
    return (int32_t)(p >> BANK_SHIFT);
}

#define OCT_COARSE 2048                   /* coarse contexts per base */
#define OCT_PER_BASE (OCT_COARSE * 9)       /* + 8 fine contexts under each coarse one */

static inline int32_t octree_ctx(int32_t base, int32_t pattern, const int32_t *nb, int32_t k,
                                 int32_t partial, const int32_t *done, Py_ssize_t i)
{
    int32_t A = 0, B = 0;
    for (int a = 0; a < 3; a++) {
        int c = (k >> (2 - a)) & 1;
        A |= ((pattern >> (2 * a + c)) & 1) << a;
        int32_t bit;
        if (c)
            bit = (partial >> (k ^ (1 << (2 - a)))) & 1;
        else {
            int32_t j = nb[a];
            bit = (j >= 0 && j < i) ? (done[j] >> (k | (1 << (2 - a)))) & 1 : 0;
        }
        B |= bit << a;
    }
    int32_t S = __builtin_popcount((unsigned)partial);
    S = S < 3 ? S : 3;
    return (((base * 8 + A) * 8 + B) * 4 + S) * 8 + k;
}

static PyObject *octree_encode(PyObject *mod, PyObject *args)
{
    PyObject *oo, *onb, *opat, *obase, *os, *ov, *oi;
    if (!PyArg_ParseTuple(args, "OOOOOOO:octree_encode", &oo, &onb, &opat, &obase, &os, &ov, &oi))
        return NULL;
    Bufs b = {.n = 0};
    Py_ssize_t n, nnb, npat, nbase, ns, nv, ni, pos = 0;
    int32_t *occ, *nb, *pat, *base, *st, *val, *idx;
    if (!(occ = take(&b, oo, 0, "occupancy", &n)) || !(nb = take(&b, onb, 0, "neighbours", &nnb)) ||
        !(pat = take(&b, opat, 0, "patterns", &npat)) ||
        !(base = take(&b, obase, 0, "bases", &nbase)))
        goto fail;
    if (!(st = take(&b, os, 1, "states", &ns)))
        goto fail;
    if (!(val = take(&b, ov, 1, "values", &nv)))
        goto fail;
    /* Bufs holds MAXBUF = 6 views: the seventh array is read through its own view */
    Py_buffer iv;
    if (get_i32(oi, &iv, 1, "indexes") < 0)
        goto fail;
    idx = iv.buf;
    ni = iv.len / 4;
    if (nnb != 3 * n || npat != n || nbase != n || nv < 8 * n || ni < 8 * n) {
        PyBuffer_Release(&iv);
        PyErr_SetString(PyExc_ValueError, "adaptive: octree_encode sizes disagree");
        goto fail;
    }
    if (check_states(st, ns) < 0 || check_ctx(base, n, ns / OCT_PER_BASE, "base context") < 0) {
        PyBuffer_Release(&iv);
        goto fail;
    }
    Py_ssize_t coarse = (ns / OCT_PER_BASE) * OCT_COARSE;
    for (Py_ssize_t i = 0; i < n; i++) {
        int32_t partial = 0, by = occ[i] & 0xFF;
        for (int32_t k = 0; k < 8; k++) {
            int bit = (by >> k) & 1;
            if (k == 7 && partial == 0)
                break; /* implied */
            int32_t c = octree_ctx(base[i], pat[i], nb + 3 * i, k, partial, occ, i);
            Py_ssize_t f = coarse + (Py_ssize_t)c * 8 + octree_far(pat[i], k);
            val[pos] = bit;
            idx[pos++] = mixed_table(st[c], st[f]);
            st[c] = state_update(st[c], bit);
            st[f] = state_update(st[f], bit);
            partial |= bit << k;
        }
    }
    PyBuffer_Release(&iv);
    release(&b);
    return PyLong_FromSsize_t(pos);
fail:
    release(&b);
    return NULL;
}

static int octree_run(NcDecodeRun *run, const int32_t *nb, const int32_t *pat, const int32_t *base,
                      int32_t *st, Py_ssize_t coarse, int32_t *out, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        int32_t partial = 0;
        for (int32_t k = 0; k < 8; k++) {
            if (k == 7 && partial == 0) {
                partial = 0x80;
                break;
            }
            int32_t c = octree_ctx(base[i], pat[i], nb + 3 * i, k, partial, out, i), v;
            Py_ssize_t f = coarse + (Py_ssize_t)c * 8 + octree_far(pat[i], k);
            if (rc_api->decode(run, mixed_table(st[c], st[f]), &v) < 0 || (v != 0 && v != 1))
                return -1;
            st[c] = state_update(st[c], v);
            st[f] = state_update(st[f], v);
            partial |= v << k;
        }
        out[i] = partial;
    }
    return 0;
}

static PyObject *octree_decode(PyObject *mod, PyObject *args)
{
    PyObject *odec, *otab, *onb, *opat, *obase, *os, *oo;
    if (!PyArg_ParseTuple(args, "OOOOOOO:octree_decode", &odec, &otab, &onb, &opat, &obase, &os,
                          &oo))
        return NULL;
    Bufs b = {.n = 0};
    Py_ssize_t n, nnb, npat, ns, no;
    int32_t *nb, *pat, *base, *st, *out;
    if (!(nb = take(&b, onb, 0, "neighbours", &nnb)) || !(pat = take(&b, opat, 0, "patterns", &npat)) ||
        !(base = take(&b, obase, 0, "bases", &n)) || !(st = take(&b, os, 1, "states", &ns)) ||
        !(out = take(&b, oo, 1, "out", &no)))
        goto fail;
    if (nnb != 3 * n || npat != n || no != n) {
        PyErr_SetString(PyExc_ValueError, "adaptive: octree_decode sizes disagree");
        goto fail;
    }
    if (check_states(st, ns) < 0 || check_ctx(base, n, ns / OCT_PER_BASE, "base context") < 0)
        goto fail;
    NcDecodeRun *run = rc_api->begin(odec, otab);
    if (!run)
        goto fail;
    if (rc_api->num_tables(run) != BANK_SIZE) {
        rc_api->end(run, 0);
        PyErr_SetString(PyExc_ValueError, "adaptive: not the binary table bank");
        goto fail;
    }
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = octree_run(run, nb, pat, base, st, (ns / OCT_PER_BASE) * OCT_COARSE, out, n);
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
    {"octree_encode", octree_encode, METH_VARARGS,
     "octree_encode(occupancy, neighbours, patterns, bases, states, values, indexes) -> count."},
    {"octree_decode", octree_decode, METH_VARARGS,
     "octree_decode(decoder, bank, neighbours, patterns, bases, states, out): one level."},
    {"repeat_partners", repeat_partners, METH_VARARGS,
     "repeat_partners(q, pred, border, out): the mesh encoder's repeat candidates."},
    {"position_order", position_order, METH_VARARGS,
     "position_order(starts, pairs, out): the mesh codec's position coding order."},
    {"mesh_step", mesh_step, METH_VARARGS,
     "mesh_step(decoder, bank, states, set, flip_set, noflip) -> int: one mesh traversal step."},
    {"positions_decode", positions_decode, METH_VARARGS,
     "positions_decode(decoder, bank, states, markov, starts, triples, refs, kinds, top, out, "
     "palette, palette_offsets, nb_starts, nbrs, weight, select): "
     "decode and rebuild predicted mesh positions."},
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
