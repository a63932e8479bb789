/* The INR context model's fused decode loop: fixed-point ARM -> table index -> range decoder.
 *
 *   decode(decoder, tables, buf, positions, levels, offsets, layers, step, coding)
 *
 * For each symbol i, in order, the context is buf[positions[i] + offsets[levels[i], 0..K-1]]
 * (values decoded earlier; one row of neighbour offsets per latent grid, so no per-symbol index
 * table); a small fixed-point MLP maps it to (mu, log b) of a Laplace; those select one of the
 * num_scales x num_fracs Laplace tables and an integer mean m; the value v decoded with that
 * table gives buf[positions[i]] = clip(v + m, +-latent_limit).
 *
 * The range coder itself stays generic: symbols are decoded through its C API (a capsule,
 * entropy/_rangecoder_api.h), one call per symbol, on the caller's `_rangecoder.Decoder`.
 *
 * Arithmetic is integer values carried in doubles, exactly as the NumPy reference
 * (kernels/inr_arm.py): every product and partial sum is an integer below 2^53, a layer's
 * accumulator is rescaled by floor(acc * 2^e + 1/2) with a power-of-two e, so the result does not
 * depend on summation order, FMA contraction or the compiler.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../entropy/_rangecoder_api.h"

#define MLP_MAX_LAYERS 8
#define MLP_MAX_WIDTH 64
#define MLP_MAX_LEVELS 64

typedef struct {
    double *wt;      /* [in, out]: the given [out, in] weight transposed, owned (PyMem) */
    const double *b; /* [out] */
    int in, out;
} MlpLayer;

typedef struct {
    int act_bits;
    double act_limit;
    int64_t num_fracs, num_scales, ls_lo, ls_hi, latent_limit;
} MlpCoding;

static inline int64_t floor_div(int64_t a, int64_t b) /* b > 0 */
{
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* REQUIRES: a holds layers[0].in values.
 * Writes (mu, log b) at scale 2^act_bits. The outputs of a layer accumulate side by side
 * (independent sums, vectorisable); the order of exact integer sums does not matter. */
static void mlp_eval(const MlpLayer *layers, int nl, int k, const MlpCoding *c, double *a,
                     double *mu, double *ls)
{
    double acc[MLP_MAX_WIDTH];
    const double limit = c->act_limit;
    int in_bits = 0;
    for (int j = 0; j < nl; j++) {
        const MlpLayer *L = &layers[j];
        const int out = L->out, relu = j + 1 < nl;
        const double bias_scale = ldexp(1.0, in_bits);
        const double out_scale = ldexp(1.0, c->act_bits - in_bits - k);
        for (int o = 0; o < out; o++)
            acc[o] = L->b[o] * bias_scale;
        for (int i = 0; i < L->in; i++) {
            const double x = a[i], *w = L->wt + (size_t)i * out;
            for (int o = 0; o < out; o++)
                acc[o] += x * w[o];
        }
        for (int o = 0; o < out; o++) {
            double v = floor(acc[o] * out_scale + 0.5);
            v = v < -limit ? -limit : (v > limit ? limit : v);
            a[o] = (relu && v < 0) ? 0.0 : v;
        }
        in_bits = c->act_bits;
    }
    *mu = a[0];
    *ls = a[1];
}

static const NcRangeDecoderApi *rc_api;

/* x86-64: an AVX2 clone is picked at load time when the CPU has it (same results: exact). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
__attribute__((target_clones("avx2", "default")))
#endif
static int decode_run(NcDecodeRun *run, double *buf, const int64_t *pos, const int64_t *lvl,
                      const int64_t *offs, Py_ssize_t n, int K, const MlpLayer *layers, int nl,
                      int k, const MlpCoding *c)
{
    int64_t one = (int64_t)1 << c->act_bits, span = c->ls_hi - c->ls_lo;
    double a[MLP_MAX_WIDTH];
    for (Py_ssize_t i = 0; i < n; i++) {
        const double *at = buf + pos[i];
        const int64_t *oi = offs + (size_t)lvl[i] * K;
        for (int j = 0; j < K; j++)
            a[j] = at[oi[j]];
        double mu_d, ls_d;
        mlp_eval(layers, nl, k, c, a, &mu_d, &ls_d);
        int64_t mu_q = floor_div((int64_t)mu_d * c->num_fracs + one / 2, one);
        int64_t m = floor_div(mu_q + c->num_fracs / 2, c->num_fracs);
        int64_t frac = mu_q - m * c->num_fracs + c->num_fracs / 2;
        int64_t s = floor_div(((int64_t)ls_d - c->ls_lo) * (c->num_scales - 1) * 2 + span, 2 * span);
        s = s < 0 ? 0 : (s >= c->num_scales ? c->num_scales - 1 : s);
        int32_t v;
        if (rc_api->decode(run, (Py_ssize_t)(s * c->num_fracs + frac), &v) < 0)
            return -1;
        int64_t y = (int64_t)v + m;
        y = y < -c->latent_limit ? -c->latent_limit : (y > c->latent_limit ? c->latent_limit : y);
        buf[pos[i]] = (double)y;
    }
    return 0;
}

/* Contiguous buffer of 8-byte items of kind 'd' (float64) or 'q' (int64). */
static int get_8(PyObject *obj, Py_buffer *view, int writable, char kind, const char *name)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return -1;
    const char *f = view->format ? view->format : "B";
    if (*f == '@' || *f == '=' || *f == '<')
        f++;
    int ok = view->itemsize == 8 &&
             (kind == 'd' ? strcmp(f, "d") == 0 : (strcmp(f, "q") == 0 || strcmp(f, "l") == 0));
    if (!ok) {
        PyErr_Format(PyExc_TypeError, "%s must be a contiguous %s buffer (got format '%s')", name,
                     kind == 'd' ? "float64" : "int64", view->format ? view->format : "B");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* Every neighbour pos[i] + offs[lvl[i], j] lies in [0, size): checked once per symbol against
 * the smallest and largest offset of its level (nlev levels of K offsets). */
static int neighbours_in_range(const int64_t *pos, const int64_t *lvl, Py_ssize_t n,
                               const int64_t *offs, Py_ssize_t nlev, int K, Py_ssize_t size)
{
    int64_t lo[MLP_MAX_LEVELS], hi[MLP_MAX_LEVELS];
    for (Py_ssize_t l = 0; l < nlev; l++) {
        lo[l] = hi[l] = offs[l * K];
        for (int j = 1; j < K; j++) {
            int64_t o = offs[l * K + j];
            lo[l] = o < lo[l] ? o : lo[l];
            hi[l] = o > hi[l] ? o : hi[l];
        }
        if (lo[l] < -size || hi[l] > size)
            return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (lvl[i] < 0 || lvl[i] >= nlev || pos[i] < 0 || pos[i] >= size)
            return 0;
        if (pos[i] + lo[lvl[i]] < 0 || pos[i] + hi[lvl[i]] >= size)
            return 0;
    }
    return 1;
}

static PyObject *arm_decode(PyObject *mod, PyObject *args)
{
    PyObject *odec, *otab, *obuf, *opos, *olvl, *ooff, *olayers;
    int k;
    MlpCoding c;
    long long nf, ns, lo, hi, lim;
    if (!PyArg_ParseTuple(args, "OOOOOOOi(idLLLLL):decode", &odec, &otab, &obuf, &opos, &olvl,
                          &ooff, &olayers, &k, &c.act_bits, &c.act_limit, &nf, &ns, &lo, &hi,
                          &lim))
        return NULL;
    c.num_fracs = nf, c.num_scales = ns, c.ls_lo = lo, c.ls_hi = hi, c.latent_limit = lim;
    if (nf <= 0 || ns <= 0 || hi <= lo || nf > (1 << 20) || ns > (1 << 20) || lim < 0 ||
        c.act_bits < 1 || c.act_bits > 20 || k < 0 || k > 24) {
        PyErr_SetString(PyExc_ValueError, "inr_arm: inconsistent coding parameters");
        return NULL;
    }
    if (!PyTuple_Check(olayers) || PyTuple_GET_SIZE(olayers) < 1 ||
        PyTuple_GET_SIZE(olayers) > MLP_MAX_LAYERS) {
        PyErr_SetString(PyExc_ValueError, "inr_arm: layers must be a tuple of 1..8 (w, b)");
        return NULL;
    }
    /* got: layers whose buffers are held; made: layers whose transposed weights exist */
    int nl = (int)PyTuple_GET_SIZE(olayers), got = 0, made = 0, rc = -1, st = 0;
    MlpLayer layers[MLP_MAX_LAYERS];
    Py_buffer wv[MLP_MAX_LAYERS], bv[MLP_MAX_LAYERS], buf, pos, lvl, off;
    int have_buf = 0, have_pos = 0, have_lvl = 0, have_off = 0;
    NcDecodeRun *run;
    for (; got < nl; got++) {
        PyObject *pair = PyTuple_GET_ITEM(olayers, got), *ow, *ob;
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_ValueError, "inr_arm: each layer must be a (w, b) tuple");
            goto done;
        }
        ow = PyTuple_GET_ITEM(pair, 0);
        ob = PyTuple_GET_ITEM(pair, 1);
        if (get_8(ow, &wv[got], 0, 'd', "weight") < 0)
            goto done;
        if (get_8(ob, &bv[got], 0, 'd', "bias") < 0) {
            PyBuffer_Release(&wv[got]);
            goto done;
        }
        int out = (int)(bv[got].len / 8), in = out ? (int)(wv[got].len / 8 / out) : 0;
        int prev = got ? layers[got - 1].out : 0;
        if (out < 1 || out > MLP_MAX_WIDTH || in < 1 || in > MLP_MAX_WIDTH ||
            (Py_ssize_t)in * out * 8 != wv[got].len || (got && in != prev) ||
            (got == nl - 1 && out < 2)) {
            PyErr_Format(PyExc_ValueError, "inr_arm: layer %d has inconsistent shapes", got);
            got++;
            goto done;
        }
        double *wt = PyMem_Malloc(sizeof(double) * (size_t)in * (size_t)out);
        if (!wt) {
            PyErr_NoMemory();
            got++;
            goto done;
        }
        const double *w = wv[got].buf;
        for (int o = 0; o < out; o++)
            for (int i = 0; i < in; i++)
                wt[(size_t)i * out + o] = w[(size_t)o * in + i];
        layers[got] = (MlpLayer){wt, bv[got].buf, in, out};
        made++;
    }
    int K = layers[0].in;
    if (get_8(obuf, &buf, 1, 'd', "buf") < 0)
        goto done;
    have_buf = 1;
    if (get_8(opos, &pos, 0, 'q', "positions") < 0)
        goto done;
    have_pos = 1;
    if (get_8(olvl, &lvl, 0, 'q', "levels") < 0)
        goto done;
    have_lvl = 1;
    if (get_8(ooff, &off, 0, 'q', "offsets") < 0)
        goto done;
    have_off = 1;
    Py_ssize_t n = pos.len / 8, size = buf.len / 8, nlev = off.len / 8 / K;
    if (lvl.len != pos.len || off.len != nlev * K * 8 || nlev < 1 || nlev > MLP_MAX_LEVELS) {
        PyErr_SetString(PyExc_ValueError, "inr_arm: one level per position and K offsets "
                                          "per level (1..64 levels)");
        goto done;
    }
    if (!neighbours_in_range(pos.buf, lvl.buf, n, off.buf, nlev, K, size)) {
        PyErr_SetString(PyExc_ValueError, "inr_arm: an index points outside buf");
        goto done;
    }
    run = rc_api->begin(odec, otab);
    if (!run)
        goto done;
    if (nf * ns > rc_api->num_tables(run)) {
        rc_api->end(run, 0); /* nothing decoded: the decoder stays as it was */
        PyErr_SetString(PyExc_ValueError, "inr_arm: inconsistent coding parameters");
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    st = decode_run(run, buf.buf, pos.buf, lvl.buf, off.buf, n, K, layers, nl, k, &c);
    Py_END_ALLOW_THREADS
    if (rc_api->end(run, st) < 0)
        goto done;
    rc = 0;
done:
    for (int j = 0; j < got; j++) {
        PyBuffer_Release(&wv[j]);
        PyBuffer_Release(&bv[j]);
    }
    for (int j = 0; j < made; j++)
        PyMem_Free(layers[j].wt);
    if (have_buf)
        PyBuffer_Release(&buf);
    if (have_pos)
        PyBuffer_Release(&pos);
    if (have_lvl)
        PyBuffer_Release(&lvl);
    if (have_off)
        PyBuffer_Release(&off);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"decode", arm_decode, METH_VARARGS,
     "decode(decoder, tables, buf, positions, levels, offsets, layers, step, coding): decode "
     "len(positions) values into buf, each with a Laplace table chosen by a fixed-point MLP of "
     "earlier values."},
    {NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_inr_arm",
    "Fused decode loop of the INR context model (ARM) over the range decoder's C API.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__inr_arm(void)
{
    PyObject *rc_module = PyImport_ImportModule("neuralcodec.entropy._rangecoder");
    if (!rc_module)
        return NULL;
    Py_DECREF(rc_module); /* kept alive by sys.modules; the capsule lookup walks attributes */
    rc_api = PyCapsule_Import(NC_RANGE_DECODER_API, 0);
    if (!rc_api)
        return NULL;
    if (rc_api->version != NC_RANGE_DECODER_API_VERSION) {
        PyErr_Format(PyExc_ImportError, "_inr_arm needs range decoder C API %d, got %d",
                     NC_RANGE_DECODER_API_VERSION, rc_api->version);
        return NULL;
    }
    return PyModule_Create(&module);
}
