/*
 * Queue (FIFO) range coder over frozen integer CDF tables, with four interleaved lanes.
 *
 *   values[i], indexes[i] --(table indexes[i], symbol = value - offset)--> lane (pos % 4)
 *   lane state: 64-bit low (33 bits used) / 32-bit range, byte-wise renormalisation with
 *   carry propagation (a cached byte plus a run of pending 0xFF bytes).
 *   stream = varint(len lane0) varint(len lane1) varint(len lane2) lane0 lane1 lane2 lane3
 *
 * A value outside its table's range is coded as the escape symbol followed by a bypass
 * payload: 7 raw bits (side, bit length - 1 of m = how far the value lies beyond the range,
 * 1 for the nearest), then m without its leading 1 bit.
 * docs/entropy-coder.md specifies the format; reference.py implements it in pure Python.
 *
 * Types exported: Tables (validated once, reusable), Encoder (stateful, chunked), Decoder
 * (stateful, chunked, for context models); functions encode() and decode(); DecodeError; and
 * the capsule _C_API (_rangecoder_api.h): decoding runs on a Decoder, one symbol per call, for
 * C kernels whose model picks each table from earlier values. The coder holds no model.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_rangecoder_api.h"

#define NLANES 4
#define RC_TOP (1u << 24)
#define MAX_PRECISION 16
#define LUT_BITS 10
#define ESC_HEAD_BITS 7
#define ESC_MAX_LEN1 31        /* escape magnitude m < 2^32 */
#define READ_SLACK 3           /* a complete lane is read exactly 3 bytes past its end */
#define MAX_BYTES_PER_SYMBOL 8 /* escape symbol 2 + head 2 + mantissa 4 */
#define DEC_CLAMP 8            /* read position limit past a lane's end (> READ_SLACK) */
#define DEC_PAD 16             /* zero bytes after each lane's copy (>= DEC_CLAMP + 2) */

#if defined(__GNUC__)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define UNLIKELY(x) (x)
#endif

static PyObject *DecodeError;

/* ------------------------------------------------------------------ buffers */

/* REQUIRES: obj exports a C-contiguous buffer of native int32. Fills *view (release it). */
static int get_i32(PyObject *obj, Py_buffer *view, int writable, const char *name)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return -1;
    const char *f = view->format ? view->format : "B";
    if (*f == '@' || *f == '=' || *f == '<')
        f++;
    if (view->itemsize != 4 || (strcmp(f, "i") != 0 && strcmp(f, "l") != 0)) {
        PyErr_Format(PyExc_TypeError, "%s must be a contiguous int32 buffer (got format '%s')",
                     name, view->format ? view->format : "B");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ tables */

typedef struct {
    const uint32_t *cdf; /* nreg + 2 entries, cdf[0] = 0, cdf[nreg + 1] = 1 << precision */
    const uint16_t *lut; /* bucket b -> symbol whose interval holds b << lut_shift */
    int64_t offset;
    uint32_t nreg; /* regular symbols; symbol nreg is the escape */
} Table;

typedef struct {
    PyObject_HEAD
    Py_ssize_t n;
    int precision;
    int lut_shift;
    Table *tabs;
    uint32_t *cdf_store;
    uint16_t *lut_store;
} TablesObject;

static void Tables_dealloc(TablesObject *self)
{
    PyMem_Free(self->tabs);
    PyMem_Free(self->cdf_store);
    PyMem_Free(self->lut_store);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* REQUIRES: row holds len entries. Returns 0 if it is a strictly increasing 0..total table. */
static int check_cdf(const int32_t *row, Py_ssize_t len, int64_t total)
{
    if (row[0] != 0 || row[len - 1] != total)
        return -1;
    for (Py_ssize_t k = 1; k < len; k++)
        if (row[k] <= row[k - 1])
            return -1;
    return 0;
}

/* REQUIRES: cdf valid for 1 << precision; lut has 1 << (precision - shift) entries. */
static void build_lut(const uint32_t *cdf, uint16_t *lut, int precision, int shift)
{
    uint32_t s = 0, nb = 1u << (precision - shift);
    for (uint32_t b = 0; b < nb; b++) {
        uint32_t t = b << shift;
        while (cdf[s + 1] <= t)
            s++;
        lut[b] = (uint16_t)s;
    }
}

static int tables_fill(TablesObject *self, Py_buffer *cdfs, Py_buffer *lens, Py_buffer *offs)
{
    Py_ssize_t n = self->n, width = cdfs->shape[1], total_len = 0;
    const int32_t *len = lens->buf, *off = offs->buf, *rows = cdfs->buf;
    int64_t total = (int64_t)1 << self->precision;
    for (Py_ssize_t j = 0; j < n; j++) {
        if (len[j] < 3 || len[j] > width || len[j] > total + 1) {
            PyErr_Format(PyExc_ValueError, "cdf_lengths[%zd] = %d is not in 3..%zd", j, len[j],
                         width);
            return -1;
        }
        if (check_cdf(rows + j * width, len[j], total) < 0) {
            PyErr_Format(PyExc_ValueError, "cdf %zd is not a strictly increasing 0..%lld table",
                         j, (long long)total);
            return -1;
        }
        if ((int64_t)off[j] + len[j] - 3 > INT32_MAX) {
            PyErr_Format(PyExc_ValueError, "table %zd codes values beyond int32", j);
            return -1;
        }
        total_len += len[j];
    }
    self->lut_shift = self->precision > LUT_BITS ? self->precision - LUT_BITS : 0;
    size_t nb = (size_t)1 << (self->precision - self->lut_shift);
    self->tabs = PyMem_Calloc((size_t)n, sizeof(Table));
    self->cdf_store = PyMem_Calloc((size_t)total_len, sizeof(uint32_t));
    self->lut_store = PyMem_Calloc((size_t)n * nb, sizeof(uint16_t));
    if (!self->tabs || !self->cdf_store || !self->lut_store) {
        PyErr_NoMemory();
        return -1;
    }
    uint32_t *c = self->cdf_store;
    for (Py_ssize_t j = 0; j < n; j++) {
        for (int32_t k = 0; k < len[j]; k++)
            c[k] = (uint32_t)rows[j * width + k];
        uint16_t *lut = self->lut_store + (size_t)j * nb;
        build_lut(c, lut, self->precision, self->lut_shift);
        self->tabs[j] = (Table){c, lut, off[j], (uint32_t)(len[j] - 2)};
        c += len[j];
    }
    return 0;
}

/* Tables(cdfs int32[n, w], cdf_lengths int32[n], offsets int32[n], precision) */
static PyObject *Tables_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"cdfs", "cdf_lengths", "offsets", "precision", NULL};
    PyObject *ocdfs, *olens, *ooffs;
    int precision = MAX_PRECISION;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO|i", kwlist, &ocdfs, &olens, &ooffs,
                                     &precision))
        return NULL;
    if (precision < 1 || precision > MAX_PRECISION) {
        PyErr_Format(PyExc_ValueError, "precision must be in 1..%d, got %d", MAX_PRECISION,
                     precision);
        return NULL;
    }
    Py_buffer cdfs, lens, offs;
    if (get_i32(ocdfs, &cdfs, 0, "cdfs") < 0)
        return NULL;
    if (get_i32(olens, &lens, 0, "cdf_lengths") < 0) {
        PyBuffer_Release(&cdfs);
        return NULL;
    }
    if (get_i32(ooffs, &offs, 0, "offsets") < 0) {
        PyBuffer_Release(&cdfs);
        PyBuffer_Release(&lens);
        return NULL;
    }
    TablesObject *self = NULL;
    if (cdfs.ndim != 2 || lens.ndim != 1 || offs.ndim != 1 || cdfs.shape[0] == 0 ||
        lens.shape[0] != cdfs.shape[0] || offs.shape[0] != cdfs.shape[0] ||
        cdfs.shape[0] > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "need cdfs [n, w], cdf_lengths [n], offsets [n], n > 0");
        goto done;
    }
    self = (TablesObject *)type->tp_alloc(type, 0);
    if (!self)
        goto done;
    self->n = cdfs.shape[0];
    self->precision = precision;
    if (tables_fill(self, &cdfs, &lens, &offs) < 0)
        Py_CLEAR(self);
done:
    PyBuffer_Release(&cdfs);
    PyBuffer_Release(&lens);
    PyBuffer_Release(&offs);
    return (PyObject *)self;
}

static PyObject *Tables_len(TablesObject *self, void *closure)
{
    return PyLong_FromSsize_t(self->n);
}

static PyObject *Tables_precision(TablesObject *self, void *closure)
{
    return PyLong_FromLong(self->precision);
}

static PyGetSetDef Tables_getset[] = {
    {"num_tables", (getter)Tables_len, NULL, "number of tables", NULL},
    {"precision", (getter)Tables_precision, NULL, "CDF precision in bits", NULL},
    {NULL},
};

static PyTypeObject TablesType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "neuralcodec.entropy._rangecoder.Tables",
    .tp_basicsize = sizeof(TablesObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Validated coding tables with a decoding lookup accelerator (immutable).",
    .tp_new = Tables_new,
    .tp_dealloc = (destructor)Tables_dealloc,
    .tp_getset = Tables_getset,
};

static TablesObject *as_tables(PyObject *obj)
{
    if (!PyObject_TypeCheck(obj, &TablesType)) {
        PyErr_SetString(PyExc_TypeError, "tables must be a _rangecoder.Tables");
        return NULL;
    }
    return (TablesObject *)obj;
}

/* REQUIRES: idx holds n entries. Returns the first position whose index is out of range, or -1. */
static Py_ssize_t first_bad_index(const int32_t *idx, Py_ssize_t n, Py_ssize_t ntables)
{
    uint32_t acc = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        acc |= (uint32_t)idx[i] >= (uint32_t)ntables;
    if (!acc)
        return -1;
    for (Py_ssize_t i = 0; i < n; i++)
        if ((uint32_t)idx[i] >= (uint32_t)ntables)
            return i;
    return -1;
}

/* ------------------------------------------------------------------ encoder lanes */

typedef struct {
    uint64_t low;     /* < 2^33: bit 32 is a carry into the cached byte */
    uint32_t range;   /* >= RC_TOP between symbols */
    uint32_t cache;   /* last byte not yet written (may still receive a carry) */
    uint64_t pending; /* cache byte + 0xFF bytes waiting for the carry decision */
    uint8_t *buf;     /* buf[0] is always 0 and is dropped by finish */
    size_t len, cap;
} EncLane;

static void enc_lane_init(EncLane *e)
{
    memset(e, 0, sizeof(*e));
    e->range = 0xFFFFFFFFu;
    e->pending = 1;
}

/* REQUIRES: cap >= len + pending + 1. */
static inline void shift_low(EncLane *e)
{
    if ((uint32_t)e->low < 0xFF000000u || (e->low >> 32) != 0) {
        uint8_t carry = (uint8_t)(e->low >> 32), c = (uint8_t)e->cache;
        do {
            e->buf[e->len++] = (uint8_t)(c + carry);
            c = 0xFF;
        } while (--e->pending != 0);
        e->cache = (uint32_t)(e->low >> 24) & 0xFF;
    }
    e->pending++;
    e->low = (e->low & 0x00FFFFFFu) << 8;
}

/* REQUIRES: 0 < bits <= 16, start + freq <= 1 << bits, freq > 0, 2 bytes of room. */
static inline void enc_put(EncLane *e, uint32_t start, uint32_t freq, int bits)
{
    uint32_t r = e->range >> bits;
    e->low += (uint64_t)r * start;
    e->range = r * freq;
    while (e->range < RC_TOP) {
        e->range <<= 8;
        shift_low(e);
    }
}

/* REQUIRES: 0 <= nbits <= 32, value < 2^nbits. Raw bits, at most 16 per step. */
static void enc_raw(EncLane *e, uint32_t value, int nbits)
{
    while (nbits > 0) {
        int k = nbits > 16 ? nbits - 16 : nbits;
        nbits -= k;
        enc_put(e, (value >> nbits) & ((1u << k) - 1), 1, k);
    }
}

/* REQUIRES: v outside [offset, offset + nreg); escape symbol already coded. */
static void enc_escape_payload(EncLane *e, int64_t v, const Table *t)
{
    int64_t s = v - t->offset;
    uint32_t sign = s < 0;
    uint64_t m = sign ? (uint64_t)(-s) : (uint64_t)(s - t->nreg) + 1; /* 1 .. 2^32 - 1 */
    int len1 = 63 - __builtin_clzll(m);                                  /* 0 .. 32 */
    enc_put(e, (sign << 6) | (uint32_t)len1, 1, ESC_HEAD_BITS);
    enc_raw(e, (uint32_t)(m - ((uint64_t)1 << len1)), len1);
}

/* REQUIRES: t valid, MAX_BYTES_PER_SYMBOL bytes of room in e. */
static inline void enc_value(EncLane *e, int32_t value, const Table *t, int prec)
{
    int64_t s = (int64_t)value - t->offset;
    if ((uint64_t)s < t->nreg) {
        uint32_t lo = t->cdf[s];
        enc_put(e, lo, t->cdf[s + 1] - lo, prec);
        return;
    }
    uint32_t lo = t->cdf[t->nreg];
    enc_put(e, lo, t->cdf[t->nreg + 1] - lo, prec);
    enc_escape_payload(e, value, t);
}

static int enc_reserve(EncLane *e, size_t extra)
{
    size_t need = e->len + (size_t)e->pending + extra + 16;
    if (need <= e->cap)
        return 0;
    size_t cap = e->cap + e->cap / 2;
    if (cap < need)
        cap = need;
    uint8_t *p = PyMem_Realloc(e->buf, cap);
    if (!p) {
        PyErr_NoMemory();
        return -1;
    }
    e->buf = p;
    e->cap = cap;
    return 0;
}

/* Final interval point with 24 trailing zero bits; the decoder pads with zeros. */
static void enc_flush(EncLane *e)
{
    e->low = (e->low + 0xFFFFFFu) & ~(uint64_t)0xFFFFFFu;
    shift_low(e);
    shift_low(e);
}

/* ------------------------------------------------------------------ Encoder object */

typedef struct {
    PyObject_HEAD
    EncLane lanes[NLANES];
    uint64_t count; /* symbols coded so far: the next one goes to lane count % NLANES */
    int finished;
    int busy; /* set while the GIL is released */
} EncoderObject;

static int claim(int *busy)
{
    if (*busy) {
        PyErr_SetString(PyExc_RuntimeError, "coder is in use by another thread");
        return -1;
    }
    *busy = 1;
    return 0;
}

static void Encoder_dealloc(EncoderObject *self)
{
    for (int k = 0; k < NLANES; k++)
        PyMem_Free(self->lanes[k].buf);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Encoder_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (!PyArg_ParseTuple(args, ":Encoder"))
        return NULL;
    EncoderObject *self = (EncoderObject *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    for (int k = 0; k < NLANES; k++)
        enc_lane_init(&self->lanes[k]);
    return (PyObject *)self;
}

/* Table for index j; an index changed by another thread after validation falls back to 0. */
static inline const Table *tab_at(const Table *tabs, uint32_t ntab, int32_t j)
{
    uint32_t u = (uint32_t)j;
    return &tabs[u < ntab ? u : 0];
}
#define TAB(j) tab_at(tabs, ntab, (j))

/* REQUIRES: indexes valid for T, room reserved in every lane. */
static void encode_run(EncoderObject *E, const int32_t *val, const int32_t *idx, Py_ssize_t n,
                       const TablesObject *T)
{
    EncLane L[NLANES]; /* local copy: lets the compiler keep the states in registers */
    memcpy(L, E->lanes, sizeof(L));
    const Table *tabs = T->tabs;
    int prec = T->precision;
    uint32_t ntab = (uint32_t)T->n;
    Py_ssize_t i = 0;
    uint64_t c = E->count;
    for (; i < n && ((c + i) & 3); i++)
        enc_value(&L[(c + i) & 3], val[i], TAB(idx[i]), prec);
    for (; i + 4 <= n; i += 4) {
        enc_value(&L[0], val[i], TAB(idx[i]), prec);
        enc_value(&L[1], val[i + 1], TAB(idx[i + 1]), prec);
        enc_value(&L[2], val[i + 2], TAB(idx[i + 2]), prec);
        enc_value(&L[3], val[i + 3], TAB(idx[i + 3]), prec);
    }
    for (; i < n; i++)
        enc_value(&L[(c + i) & 3], val[i], TAB(idx[i]), prec);
    memcpy(E->lanes, L, sizeof(L));
    E->count = c + (uint64_t)n;
}

static int encoder_encode(EncoderObject *E, PyObject *ovals, PyObject *oidx, PyObject *otab)
{
    TablesObject *T = as_tables(otab);
    if (!T)
        return -1;
    if (E->finished) {
        PyErr_SetString(PyExc_ValueError, "encoder already finished");
        return -1;
    }
    if (claim(&E->busy) < 0)
        return -1;
    Py_buffer vals, idx;
    if (get_i32(ovals, &vals, 0, "values") < 0) {
        E->busy = 0;
        return -1;
    }
    if (get_i32(oidx, &idx, 0, "indexes") < 0) {
        PyBuffer_Release(&vals);
        E->busy = 0;
        return -1;
    }
    int rc = -1;
    Py_ssize_t n = vals.len / 4, bad;
    if (idx.len != vals.len) {
        PyErr_Format(PyExc_ValueError, "values (%zd) and indexes (%zd) differ in size", n,
                     idx.len / 4);
        goto done;
    }
    if ((bad = first_bad_index(idx.buf, n, T->n)) >= 0) {
        PyErr_Format(PyExc_ValueError, "indexes[%zd] = %d is not in 0..%zd", bad,
                     ((int32_t *)idx.buf)[bad], T->n - 1);
        goto done;
    }
    for (int k = 0; k < NLANES; k++)
        if (enc_reserve(&E->lanes[k], (size_t)(n / NLANES + 1) * MAX_BYTES_PER_SYMBOL) < 0)
            goto done;
    Py_BEGIN_ALLOW_THREADS
    encode_run(E, vals.buf, idx.buf, n, T);
    Py_END_ALLOW_THREADS
    rc = 0;
done:
    PyBuffer_Release(&vals);
    PyBuffer_Release(&idx);
    E->busy = 0;
    return rc;
}

static PyObject *Encoder_encode(EncoderObject *self, PyObject *args)
{
    PyObject *v, *i, *t;
    if (!PyArg_ParseTuple(args, "OOO:encode", &v, &i, &t))
        return NULL;
    if (encoder_encode(self, v, i, t) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static int put_varint(uint8_t *p, size_t v)
{
    int k = 0;
    while (v >= 0x80) {
        p[k++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[k++] = (uint8_t)v;
    return k;
}

static PyObject *Encoder_finish(EncoderObject *self, PyObject *unused)
{
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "coder is in use by another thread");
        return NULL;
    }
    if (self->finished) {
        PyErr_SetString(PyExc_ValueError, "encoder already finished");
        return NULL;
    }
    size_t total = 0;
    for (int k = 0; k < NLANES; k++) {
        if (enc_reserve(&self->lanes[k], 8) < 0)
            return NULL;
        enc_flush(&self->lanes[k]);
        total += self->lanes[k].len - 1;
    }
    self->finished = 1;
    uint8_t head[3 * 10];
    int hl = 0;
    for (int k = 0; k < NLANES - 1; k++)
        hl += put_varint(head + hl, self->lanes[k].len - 1);
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(total + hl));
    if (!out)
        return NULL;
    uint8_t *p = (uint8_t *)PyBytes_AS_STRING(out);
    memcpy(p, head, hl);
    p += hl;
    for (int k = 0; k < NLANES; k++) {
        memcpy(p, self->lanes[k].buf + 1, self->lanes[k].len - 1);
        p += self->lanes[k].len - 1;
        PyMem_Free(self->lanes[k].buf);
        self->lanes[k].buf = NULL;
        self->lanes[k].cap = self->lanes[k].len = 0;
    }
    return out;
}

static PyObject *Encoder_count(EncoderObject *self, void *closure)
{
    return PyLong_FromUnsignedLongLong(self->count);
}

static PyMethodDef Encoder_methods[] = {
    {"encode", (PyCFunction)Encoder_encode, METH_VARARGS,
     "encode(values, indexes, tables): append int32 values coded with tables[indexes]."},
    {"finish", (PyCFunction)Encoder_finish, METH_NOARGS,
     "finish() -> bytes: flush every lane and return the stream (once)."},
    {NULL},
};

static PyGetSetDef Encoder_getset[] = {
    {"count", (getter)Encoder_count, NULL, "symbols encoded so far", NULL},
    {NULL},
};

static PyTypeObject EncoderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "neuralcodec.entropy._rangecoder.Encoder",
    .tp_basicsize = sizeof(EncoderObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Stateful four-lane range encoder: encode() chunks, then finish().",
    .tp_new = Encoder_new,
    .tp_dealloc = (destructor)Encoder_dealloc,
    .tp_methods = Encoder_methods,
    .tp_getset = Encoder_getset,
};


/* ------------------------------------------------------------------ decoder lanes */

typedef struct {
    uint32_t code;       /* < range for a valid stream */
    uint32_t range;      /* >= RC_TOP between symbols */
    const uint8_t *data; /* len bytes followed by DEC_PAD zero bytes */
    size_t len, pos;     /* pos <= len + DEC_CLAMP: bytes past len read as 0 */
} DecLane;

/* REQUIRES: range >= 2^8. Shifts in 0, 1 or 2 bytes without a data-dependent branch. */
static inline void dec_renorm(DecLane *d)
{
    uint32_t n = (d->range < RC_TOP) + (d->range < (1u << 16)), sh = 8 * n;
    const uint8_t *p = d->data + d->pos;
    uint32_t two = ((uint32_t)p[0] << 8) | p[1];
    d->code = (uint32_t)(((uint64_t)d->code << sh) | (two >> (16 - sh)));
    d->range <<= sh;
    size_t pos = d->pos + n, lim = d->len + DEC_CLAMP;
    d->pos = pos < lim ? pos : lim;
}

/* REQUIRES: 0 < bits <= 16. Reads a raw value < 2^bits; -1 if the stream is inconsistent. */
static int dec_raw(DecLane *d, int bits, uint32_t *out)
{
    uint32_t r = d->range >> bits, x = d->code / r;
    if (x >> bits)
        return -1;
    d->code -= r * x;
    d->range = r;
    dec_renorm(d);
    *out = x;
    return 0;
}

/* REQUIRES: the escape symbol of t was just decoded. Bounded: at most 1 + 2 raw reads. */
static int dec_escape(DecLane *d, const Table *t, int32_t *out)
{
    uint32_t head, part, mant = 0;
    if (dec_raw(d, ESC_HEAD_BITS, &head) < 0 || (head & 63) > ESC_MAX_LEN1)
        return -1;
    int len1 = (int)(head & 63), nbits = len1;
    while (nbits > 0) {
        int k = nbits > 16 ? nbits - 16 : nbits;
        nbits -= k;
        if (dec_raw(d, k, &part) < 0)
            return -1;
        mant = (mant << k) | part;
    }
    int64_t m = ((int64_t)1 << len1) + mant;
    int64_t v = t->offset + ((head >> 6) ? -m : (int64_t)t->nreg + m - 1);
    if (v < INT32_MIN || v > INT32_MAX)
        return -1;
    *out = (int32_t)v;
    return 0;
}

/* REQUIRES: t valid for precision prec, lut built with shift. -1 on an inconsistent stream. */
static inline int dec_value(DecLane *d, const Table *t, int prec, int shift, int32_t *out)
{
    uint32_t r = d->range >> prec, x = d->code / r;
    if (UNLIKELY(x >= (1u << prec)))
        return -1;
    const uint32_t *cdf = t->cdf;
    uint32_t s = t->lut[x >> shift];
    while (cdf[s + 1] <= x)
        s++;
    uint32_t lo = cdf[s];
    d->code -= r * lo;
    d->range = r * (cdf[s + 1] - lo);
    dec_renorm(d);
    if (UNLIKELY(s == t->nreg))
        return dec_escape(d, t, out);
    *out = (int32_t)(t->offset + s);
    return 0;
}

/* ------------------------------------------------------------------ Decoder object */

typedef struct {
    PyObject_HEAD
    DecLane lanes[NLANES];
    uint8_t *data;
    uint64_t count; /* symbols decoded so far */
    int failed;
    int busy;
} DecoderObject;

static void Decoder_dealloc(DecoderObject *self)
{
    PyMem_Free(self->data);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* REQUIRES: *pos <= size. Reads one LEB128 length that fits in what is left; -1 if not. */
static int get_varint(const uint8_t *p, size_t size, size_t *pos, size_t *out)
{
    size_t v = 0;
    for (int shift = 0; shift < 35; shift += 7) {
        if (*pos >= size)
            return -1;
        uint8_t b = p[(*pos)++];
        v |= (size_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* Parses the lane header and copies each lane, followed by DEC_PAD zeros. */
static int decoder_open(DecoderObject *D, const uint8_t *src, size_t size)
{
    size_t pos = 0, lens[NLANES], used = 0;
    for (int k = 0; k < NLANES - 1; k++) {
        if (get_varint(src, size, &pos, &lens[k]) < 0 || lens[k] > size - pos) {
            PyErr_SetString(DecodeError, "corrupt range-coder stream: bad lane header");
            return -1;
        }
    }
    for (int k = 0; k < NLANES - 1; k++) {
        if (lens[k] > size - pos - used) {
            PyErr_SetString(DecodeError, "corrupt range-coder stream: lanes exceed the data");
            return -1;
        }
        used += lens[k];
    }
    lens[NLANES - 1] = size - pos - used;
    D->data = PyMem_Calloc(size - pos + NLANES * DEC_PAD, 1);
    if (!D->data) {
        PyErr_NoMemory();
        return -1;
    }
    uint8_t *dst = D->data;
    for (int k = 0; k < NLANES; k++) {
        DecLane *d = &D->lanes[k];
        memcpy(dst, src + pos, lens[k]);
        uint32_t code = ((uint32_t)dst[0] << 24) | ((uint32_t)dst[1] << 16) |
                        ((uint32_t)dst[2] << 8) | dst[3];
        *d = (DecLane){code, 0xFFFFFFFFu, dst, lens[k], 4};
        pos += lens[k];
        dst += lens[k] + DEC_PAD;
    }
    return 0;
}

static PyObject *Decoder_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "y*:Decoder", &data))
        return NULL;
    DecoderObject *self = (DecoderObject *)type->tp_alloc(type, 0);
    if (self && decoder_open(self, data.buf, (size_t)data.len) < 0)
        Py_CLEAR(self);
    PyBuffer_Release(&data);
    return (PyObject *)self;
}

#define DEC_STEP(k, i)                                                                    \
    {                                                                                     \
        uint32_t j = (uint32_t)idx[i];                                                    \
        if (UNLIKELY(j >= ntab) || dec_value(&L[k], &tabs[j], prec, shift, &out[i]) < 0)  \
            return -1;                                                                    \
    }

/* REQUIRES: indexes valid for T, out holds n int32. -1 on an inconsistent stream. */
static int decode_run(DecoderObject *D, const int32_t *idx, int32_t *out, Py_ssize_t n,
                      const TablesObject *T)
{
    DecLane L[NLANES]; /* local copy, written back when the whole chunk decoded */
    memcpy(L, D->lanes, sizeof(L));
    const Table *tabs = T->tabs;
    int prec = T->precision, shift = T->lut_shift;
    uint32_t ntab = (uint32_t)T->n;
    uint64_t c = D->count;
    Py_ssize_t i = 0;
    for (; i < n && ((c + i) & 3); i++)
        DEC_STEP((c + i) & 3, i)
    for (; i + 4 <= n; i += 4) {
        DEC_STEP(0, i)
        DEC_STEP(1, i + 1)
        DEC_STEP(2, i + 2)
        DEC_STEP(3, i + 3)
    }
    for (; i < n; i++)
        DEC_STEP((c + i) & 3, i)
    for (int k = 0; k < NLANES; k++)
        if (L[k].pos > L[k].len + READ_SLACK)
            return -1;
    memcpy(D->lanes, L, sizeof(L));
    D->count = c + (uint64_t)n;
    return 0;
}

static int decoder_decode(DecoderObject *D, PyObject *oidx, PyObject *otab, PyObject *oout)
{
    TablesObject *T = as_tables(otab);
    if (!T)
        return -1;
    if (D->failed) {
        PyErr_SetString(DecodeError, "decoder stopped at an earlier corrupt chunk");
        return -1;
    }
    if (claim(&D->busy) < 0)
        return -1;
    Py_buffer idx, out;
    int rc = -1, st;
    if (get_i32(oidx, &idx, 0, "indexes") < 0) {
        D->busy = 0;
        return -1;
    }
    if (get_i32(oout, &out, 1, "out") < 0) {
        PyBuffer_Release(&idx);
        D->busy = 0;
        return -1;
    }
    Py_ssize_t n = idx.len / 4, bad;
    if (out.len != idx.len) {
        PyErr_SetString(PyExc_ValueError, "out and indexes differ in size");
        goto done;
    }
    if ((bad = first_bad_index(idx.buf, n, T->n)) >= 0) {
        PyErr_Format(DecodeError, "indexes[%zd] = %d is not in 0..%zd", bad,
                     ((int32_t *)idx.buf)[bad], T->n - 1);
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    st = decode_run(D, idx.buf, out.buf, n, T);
    Py_END_ALLOW_THREADS
    if (st < 0) {
        D->failed = 1;
        PyErr_SetString(DecodeError, "corrupt or truncated range-coder stream");
        goto done;
    }
    rc = 0;
done:
    PyBuffer_Release(&idx);
    PyBuffer_Release(&out);
    D->busy = 0;
    return rc;
}

static PyObject *Decoder_decode(DecoderObject *self, PyObject *args)
{
    PyObject *i, *t, *o;
    if (!PyArg_ParseTuple(args, "OOO:decode", &i, &t, &o))
        return NULL;
    if (decoder_decode(self, i, t, o) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Decoder_count(DecoderObject *self, void *closure)
{
    return PyLong_FromUnsignedLongLong(self->count);
}

static PyMethodDef Decoder_methods[] = {
    {"decode", (PyCFunction)Decoder_decode, METH_VARARGS,
     "decode(indexes, tables, out): decode the next len(indexes) values into out (int32)."},
    {NULL},
};

static PyGetSetDef Decoder_getset[] = {
    {"count", (getter)Decoder_count, NULL, "symbols decoded so far", NULL},
    {NULL},
};

static PyTypeObject DecoderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "neuralcodec.entropy._rangecoder.Decoder",
    .tp_basicsize = sizeof(DecoderObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Stateful four-lane range decoder over a copy of the stream bytes.",
    .tp_new = Decoder_new,
    .tp_dealloc = (destructor)Decoder_dealloc,
    .tp_methods = Decoder_methods,
    .tp_getset = Decoder_getset,
};

/* ------------------------------------------------------------------ C API (_rangecoder_api.h) */

struct NcDecodeRun {
    DecLane lanes[NLANES]; /* working copy, written back by run_end on success */
    uint64_t count;
    DecoderObject *decoder; /* strong references until run_end */
    TablesObject *tables;
};

static NcDecodeRun *run_begin(PyObject *odec, PyObject *otab)
{
    TablesObject *T = as_tables(otab);
    if (!T)
        return NULL;
    if (!PyObject_TypeCheck(odec, &DecoderType)) {
        PyErr_SetString(PyExc_TypeError, "decoder must be a _rangecoder.Decoder");
        return NULL;
    }
    DecoderObject *D = (DecoderObject *)odec;
    if (D->failed) {
        PyErr_SetString(DecodeError, "decoder stopped at an earlier corrupt chunk");
        return NULL;
    }
    NcDecodeRun *run = PyMem_Malloc(sizeof(NcDecodeRun));
    if (!run) {
        PyErr_NoMemory();
        return NULL;
    }
    if (claim(&D->busy) < 0) {
        PyMem_Free(run);
        return NULL;
    }
    memcpy(run->lanes, D->lanes, sizeof(run->lanes));
    run->count = D->count;
    Py_INCREF(odec);
    Py_INCREF(otab);
    run->decoder = D;
    run->tables = T;
    return run;
}

static int run_decode(NcDecodeRun *run, Py_ssize_t j, int32_t *out)
{
    const TablesObject *T = run->tables;
    if (UNLIKELY(j < 0 || j >= T->n))
        return -1;
    DecLane *d = &run->lanes[run->count & (NLANES - 1)];
    if (UNLIKELY(dec_value(d, &T->tabs[j], T->precision, T->lut_shift, out) < 0))
        return -1;
    run->count++;
    return 0;
}

static int run_end(NcDecodeRun *run, int status)
{
    DecoderObject *D = run->decoder;
    for (int k = 0; k < NLANES && status == 0; k++)
        if (run->lanes[k].pos > run->lanes[k].len + READ_SLACK)
            status = -1;
    if (status == 0) {
        memcpy(D->lanes, run->lanes, sizeof(D->lanes));
        D->count = run->count;
    } else {
        D->failed = 1;
        PyErr_SetString(DecodeError, "corrupt or truncated range-coder stream");
    }
    D->busy = 0;
    Py_DECREF(run->tables);
    Py_DECREF(D);
    PyMem_Free(run);
    return status == 0 ? 0 : -1;
}

static Py_ssize_t run_num_tables(const NcDecodeRun *run)
{
    return run->tables->n;
}

static const NcRangeDecoderApi decoder_api = {
    NC_RANGE_DECODER_API_VERSION, run_begin, run_decode, run_end, run_num_tables,
};

/* ------------------------------------------------------------------ module */

static PyObject *rc_encode(PyObject *mod, PyObject *args)
{
    PyObject *v, *i, *t;
    if (!PyArg_ParseTuple(args, "OOO:encode", &v, &i, &t))
        return NULL;
    PyObject *enc = PyObject_CallNoArgs((PyObject *)&EncoderType);
    if (!enc)
        return NULL;
    PyObject *res = NULL;
    if (encoder_encode((EncoderObject *)enc, v, i, t) == 0)
        res = Encoder_finish((EncoderObject *)enc, NULL);
    Py_DECREF(enc);
    return res;
}

static PyObject *rc_decode(PyObject *mod, PyObject *args)
{
    PyObject *d, *i, *t, *o;
    if (!PyArg_ParseTuple(args, "OOOO:decode", &d, &i, &t, &o))
        return NULL;
    PyObject *dec = PyObject_CallOneArg((PyObject *)&DecoderType, d);
    if (!dec)
        return NULL;
    int st = decoder_decode((DecoderObject *)dec, i, t, o);
    Py_DECREF(dec);
    if (st < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"encode", rc_encode, METH_VARARGS, "encode(values, indexes, tables) -> bytes"},
    {"decode", rc_decode, METH_VARARGS, "decode(data, indexes, tables, out): fill out (int32)"},
    {NULL},
};

static struct PyModuleDef rc_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "neuralcodec.entropy._rangecoder",
    .m_doc = "Four-lane queue range coder over frozen int32 CDF tables (see rangecoder.py).",
    .m_size = -1,
    .m_methods = module_methods,
};

static int add_capsule(PyObject *m)
{
    PyObject *cap = PyCapsule_New((void *)&decoder_api, NC_RANGE_DECODER_API, NULL);
    if (!cap)
        return -1;
    int rc = PyModule_AddObjectRef(m, "_C_API", cap);
    Py_DECREF(cap);
    return rc;
}

PyMODINIT_FUNC PyInit__rangecoder(void)
{
    if (PyType_Ready(&TablesType) < 0 || PyType_Ready(&EncoderType) < 0 ||
        PyType_Ready(&DecoderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&rc_module);
    if (!m)
        return NULL;
    DecodeError = PyErr_NewExceptionWithDoc(
        "neuralcodec.entropy.rangecoder.DecodeError",
        "A range-coder stream that is corrupt, truncated or inconsistent with its indexes.",
        PyExc_ValueError, NULL);
    if (!DecodeError || PyModule_AddObjectRef(m, "DecodeError", DecodeError) < 0 ||
        PyModule_AddObjectRef(m, "Tables", (PyObject *)&TablesType) < 0 ||
        PyModule_AddObjectRef(m, "Encoder", (PyObject *)&EncoderType) < 0 ||
        PyModule_AddObjectRef(m, "Decoder", (PyObject *)&DecoderType) < 0 ||
        PyModule_AddIntConstant(m, "NUM_LANES", NLANES) < 0 ||
        PyModule_AddIntConstant(m, "MAX_PRECISION", MAX_PRECISION) < 0 ||
        add_capsule(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
