/* Exact epilogues of the integer networks (compress/intconv.py, compress/intnet.py).
 *
 * A convolution's accumulator arrives as K partial sums (float32 or float64 holding exact
 * integers, or int32 from the int8 matrix products). Everything here is int64 arithmetic on those integers, plus one correctly rounded
 * IEEE sqrt, so the result is the same on every CPU and compiler (no -ffast-math here).
 *
 *   requant(acc, factors, s, pad, bias, mult, shift, lo, hi, out, phase_major, c0, c1)
 *       v = sum_p factors[p] * acc[p] + bias[c];  r = floor((v * mult[c] + 2^(shift-1)) / 2^shift)
 *       clamped to [lo, hi]; phase channel c*s*s + ry*s + rx at (qy, qx) is written to
 *       out[c, qy*s + ry - pad, qx*s + rx - pad] when inside out (pixel shuffle + crop fused);
 *       phase_major: acc's channels are ordered (ry, rx, c) instead (the int8 plan's phases).
 *   igdn(acc, factors, beta, a, root_scale, mult, shift, bound, out, c0, c1)
 *       n = sum_p factors[p] * acc[p] + beta[c];  r = floor(sqrt(n * root_scale));
 *       out = clamp(floor((a * r * mult + 2^(shift-1)) / 2^shift), +-bound)
 *   conv_small(a, w, out, y0, y1)
 *       out = conv(a, w) for at most 16 outputs (float64 sums of exact integers), rows [y0, y1)
 *   igdn_sparse(a, shift, bound, ptr, idx, val, beta, root_scale, mult, shift2, bound2, out, c0, c1)
 *       igdn with the norm's product taken over gamma's non-zero entries only (ptr/idx/val: its
 *       rows in CSR form) and the squares computed on the fly as square_shift does: the same
 *       integers, so the same output; for the nearly diagonal gammas of trained models
 *   square_shift(a, shift, bound, out, c0, c1)
 *       out = min(floor(a * a * 2^-shift), bound) in float32 (the inverse GDN's norm input,
 *       already clamped to the norm's input bound; exact for a^2 < 2^24)
 *
 * Arrays are C-contiguous; acc is (P*C', H, W) (P partial sums), a and out (C, H, W) float32;
 * factors, bias, mult, beta int64. Only output channels [c0, c1) are computed, with the GIL
 * released, so callers may run disjoint channel ranges on several threads (same result).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "_buffers.h"

typedef struct {
    Py_buffer view;
    int is64; /* float64 (1) or float32 (0) */
    int isint; /* int32 (accumulators of the int8 matrix products) */
} fbuf;

static int get_float(PyObject *obj, fbuf *b, int writable, int ndim, int allow64, const char *name)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_ND | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, &b->view, flags) < 0)
        return -1;
    const char *f = b->view.format ? b->view.format : "B";
    if (*f == '@' || *f == '=' || *f == '<')
        f++;
    b->is64 = strcmp(f, "d") == 0 && b->view.itemsize == 8;
    b->isint = (strcmp(f, "i") == 0 || strcmp(f, "l") == 0) && b->view.itemsize == 4;
    int is32 = strcmp(f, "f") == 0 && b->view.itemsize == 4;
    if (!(is32 || (allow64 && (b->is64 || b->isint))) || b->view.ndim != ndim) {
        PyErr_Format(PyExc_TypeError, "%s must be a contiguous %d-d float32%s array", name, ndim,
                     allow64 ? ", float64 or int32" : "");
        PyBuffer_Release(&b->view);
        return -1;
    }
    return 0;
}

static int get_i64(PyObject *obj, Py_buffer *view, Py_ssize_t n, const char *name)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_ND) < 0)
        return -1;
    const char *f = view->format ? view->format : "B";
    if (*f == '@' || *f == '=' || *f == '<')
        f++;
    if (view->itemsize != 8 || !(strcmp(f, "q") == 0 || strcmp(f, "l") == 0) || view->ndim != 1 ||
        view->shape[0] != n) {
        PyErr_Format(PyExc_TypeError, "%s must be a contiguous int64 array of %zd", name, n);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static inline int64_t floor_shift(int64_t t, int shift)
{
    if (shift == 0)
        return t;
    t += (int64_t)1 << (shift - 1);
    /* floor division by 2^shift for either sign, without a branch and without relying on >> of
     * negatives: shift t + 2^62 (non-negative, since every caller keeps |t| < 2^53) as unsigned,
     * then take 2^(62 - shift) back off */
    return (int64_t)(((uint64_t)t + ((uint64_t)1 << 62)) >> shift) - ((int64_t)1 << (62 - shift));
}

static inline int64_t clamp64(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* The hot loops below are compiled for several instruction sets and picked at load time
 * (x86-64 with GCC: AVX-512, AVX2, baseline). They are integer arithmetic plus one correctly
 * rounded sqrt, so every version computes the same values; only the speed differs
 * (NEURALCODEC_NO_CLONES builds one version for the compiler's target, which the tests use to
 * compare each instruction set's build with the dispatching one). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(__SANITIZE_ADDRESS__) && !defined(NEURALCODEC_NO_CLONES)
#define HOT __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define HAVE_CLONES 1
#else
#define HOT
#endif
/* a * b + c fused or not gives the same value when every operand, product and sum is an integer
 * below 2^53 (conv_small); elsewhere the default (no contraction) holds */
#if defined(__GNUC__) && !defined(__clang__)
#define CONTRACT __attribute__((optimize("fp-contract=fast")))
#else
#define CONTRACT
#endif

/* t[i] = bias + sum_g f[g] * acc_g[i] over one plane of n values; acc_g = base + g * group,
 * one loop per storage type so that each vectorises */
HOT static void sum_parts(const fbuf *acc, Py_ssize_t base, Py_ssize_t group, const int64_t *fp,
                          Py_ssize_t k, int64_t bias, Py_ssize_t n, int64_t *t)
{
    for (Py_ssize_t i = 0; i < n; i++)
        t[i] = bias;
    for (Py_ssize_t g = 0; g < k; g++) {
        const int64_t f = fp[g];
        Py_ssize_t off = base + g * group;
        if (acc->isint) {
            const int32_t *src = (const int32_t *)acc->view.buf + off;
            for (Py_ssize_t i = 0; i < n; i++)
                t[i] += f * (int64_t)src[i];
        } else if (acc->is64) {
            const double *src = (const double *)acc->view.buf + off;
            for (Py_ssize_t i = 0; i < n; i++)
                t[i] += f * (int64_t)src[i];
        } else {
            const float *src = (const float *)acc->view.buf + off;
            for (Py_ssize_t i = 0; i < n; i++)
                t[i] += f * (int64_t)src[i];
        }
    }
}

/* r[i] = clamp(floor((t[i] * m + 2^(shift-1)) / 2^shift), lo, hi) as float */
HOT static void requant_row(const int64_t *t, Py_ssize_t n, int64_t m, int shift, int64_t lo,
                            int64_t hi, float *r)
{
    for (Py_ssize_t i = 0; i < n; i++)
        r[i] = (float)clamp64(floor_shift(t[i] * m, shift), lo, hi);
}

/* out[i] = clamp(floor((a[i] * floor(sqrt(max(t[i], 0) * root_scale)) * m + 2^(shift-1))
 *           / 2^shift), +-bound) as float */
HOT static void igdn_row(const int64_t *t, const float *a, Py_ssize_t n, double root_scale,
                         int64_t m, int shift, int64_t bound, float *out)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t v = t[i] < 0 ? 0 : t[i];
        /* v >= 0: truncation is the floor; sqrt is correctly rounded (IEEE) */
        int64_t r = (int64_t)sqrt((double)v * root_scale);
        int64_t p = (int64_t)a[i] * r * m;
        out[i] = (float)clamp64(floor_shift(p, shift), -bound, bound);
    }
}

/* out[i] = floor(a[i] * a[i] * 2^-shift) in float32 (exact while a^2 < 2^24), as the reference's
 * (a * a) * 2^-shift then floor */
HOT static void square_shift_row(const float *a, Py_ssize_t n, float scale, float bound,
                                 float *out)
{
    for (Py_ssize_t i = 0; i < n; i++)
        out[i] = fminf(floorf((a[i] * a[i]) * scale), bound);
}

static PyObject *py_requant(PyObject *mod, PyObject *args)
{
    PyObject *acc_o, *fac_o, *bias_o, *mult_o, *out_o;
    Py_ssize_t s, pad;
    int shift;
    long long lo, hi;
    Py_ssize_t c0, c1;
    int phase_major;
    if (!PyArg_ParseTuple(args, "OOnnOOiLLOpnn", &acc_o, &fac_o, &s, &pad, &bias_o, &mult_o, &shift,
                          &lo, &hi, &out_o, &phase_major, &c0, &c1))
        return NULL;
    fbuf acc, out;
    Py_buffer bias, mult, fac;
    if (get_float(acc_o, &acc, 0, 3, 1, "acc") < 0)
        return NULL;
    if (get_float(out_o, &out, 1, 3, 0, "out") < 0) {
        PyBuffer_Release(&acc.view);
        return NULL;
    }
    Py_ssize_t C = out.view.shape[0], HO = out.view.shape[1], WO = out.view.shape[2];
    Py_ssize_t H = acc.view.shape[1], W = acc.view.shape[2];
    PyObject *result = NULL;
    if (get_i64(bias_o, &bias, C, "bias") < 0)
        goto done2;
    if (get_i64(mult_o, &mult, C, "mult") < 0)
        goto done1;
    if (PyObject_GetBuffer(fac_o, &fac, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_ND) < 0)
        goto done0;
    Py_ssize_t k = fac.len / 8;
    if (fac.itemsize != 8 || fac.ndim != 1 || k < 1 || k > 4096) {
        PyErr_SetString(PyExc_ValueError, "requant: factors must be 1-d int64");
        goto donef;
    }
    if (s < 1 || shift < 0 || shift > 62 || acc.view.shape[0] != k * C * s * s || c0 < 0 ||
        c1 > C || c0 > c1) {
        PyErr_SetString(PyExc_ValueError, "requant: inconsistent shapes or parameters");
        goto donef;
    }
    {
        const int64_t *bp = (const int64_t *)bias.buf, *mp = (const int64_t *)mult.buf;
        const int64_t *fp = (const int64_t *)fac.buf;
        float *op = (float *)out.view.buf;
        Py_ssize_t plane = H * W, group = C * s * s * plane;
        int64_t *t = PyMem_RawMalloc((size_t)plane * sizeof(int64_t));
        float *row = PyMem_RawMalloc((size_t)plane * sizeof(float));
        if (!t || !row) {
            PyMem_RawFree(t);
            PyMem_RawFree(row);
            PyErr_NoMemory();
            goto donef;
        }
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t c = c0; c < c1; c++) {
            for (Py_ssize_t ry = 0; ry < s; ry++) {
                for (Py_ssize_t rx = 0; rx < s; rx++) {
                    Py_ssize_t base = (phase_major ? (ry * s + rx) * C + c
                                                   : (c * s + ry) * s + rx) * plane;
                    sum_parts(&acc, base, group, fp, k, bp[c], plane, t);
                    if (s == 1 && pad == 0 && H == HO && W == WO) { /* the plane as it is */
                        requant_row(t, plane, mp[c], shift, lo, hi, op + c * plane);
                        continue;
                    }
                    requant_row(t, plane, mp[c], shift, lo, hi, row);
                    /* the columns qx with 0 <= qx * s + rx - pad < WO */
                    Py_ssize_t qx0 = pad > rx ? (pad - rx + s - 1) / s : 0;
                    Py_ssize_t qx1 = (WO - 1 + pad - rx) / s + 1;
                    qx1 = qx1 < W ? qx1 : W;
                    for (Py_ssize_t qy = 0; qy < H; qy++) {
                        Py_ssize_t oy = qy * s + ry - pad;
                        if (oy < 0 || oy >= HO)
                            continue;
                        const float *src = row + qy * W;
                        float *dst = op + (c * HO + oy) * WO + rx - pad;
                        if (s == 1 && pad == 0 && W == WO) {
                            memcpy(dst, src, (size_t)W * sizeof(float));
                            continue;
                        }
                        for (Py_ssize_t qx = qx0; qx < qx1; qx++)
                            dst[qx * s] = src[qx];
                    }
                }
            }
        }
        Py_END_ALLOW_THREADS
        PyMem_RawFree(t);
        PyMem_RawFree(row);
    }
    Py_INCREF(Py_None);
    result = Py_None;
donef:
    PyBuffer_Release(&fac);
done0:
    PyBuffer_Release(&mult);
done1:
    PyBuffer_Release(&bias);
done2:
    PyBuffer_Release(&out.view);
    PyBuffer_Release(&acc.view);
    return result;
}

static PyObject *py_igdn(PyObject *mod, PyObject *args)
{
    PyObject *acc_o, *fac_o, *beta_o, *a_o, *out_o;
    double root_scale;
    long long mult, bound;
    int shift;
    Py_ssize_t c0, c1;
    if (!PyArg_ParseTuple(args, "OOOOdLiLOnn", &acc_o, &fac_o, &beta_o, &a_o, &root_scale, &mult,
                          &shift, &bound, &out_o, &c0, &c1))
        return NULL;
    fbuf acc, a, out;
    Py_buffer beta, fac;
    PyObject *result = NULL;
    if (get_float(acc_o, &acc, 0, 3, 1, "acc") < 0)
        return NULL;
    if (get_float(a_o, &a, 0, 3, 0, "a") < 0) {
        PyBuffer_Release(&acc.view);
        return NULL;
    }
    if (get_float(out_o, &out, 1, 3, 0, "out") < 0) {
        PyBuffer_Release(&a.view);
        PyBuffer_Release(&acc.view);
        return NULL;
    }
    Py_ssize_t C = a.view.shape[0], plane = a.view.shape[1] * a.view.shape[2];
    if (get_i64(beta_o, &beta, C, "beta") < 0)
        goto done1;
    if (PyObject_GetBuffer(fac_o, &fac, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_ND) < 0)
        goto done0;
    Py_ssize_t k = fac.len / 8;
    if (fac.itemsize != 8 || fac.ndim != 1 || k < 1 || k > 4096 || c0 < 0 || c1 > C || c0 > c1 ||
        shift < 0 || shift > 62 || acc.view.shape[0] != k * C ||
        acc.view.shape[1] * acc.view.shape[2] != plane || out.view.shape[0] != C ||
        out.view.shape[1] * out.view.shape[2] != plane) {
        PyErr_SetString(PyExc_ValueError, "igdn: inconsistent shapes or parameters");
        goto donef;
    }
    {
        const int64_t *bp = (const int64_t *)beta.buf, *fp = (const int64_t *)fac.buf;
        const float *ap = (const float *)a.view.buf;
        float *op = (float *)out.view.buf;
        Py_ssize_t group = C * plane;
        int64_t *t = PyMem_RawMalloc((size_t)plane * sizeof(int64_t));
        if (!t) {
            PyErr_NoMemory();
            goto donef;
        }
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t c = c0; c < c1; c++) {
            sum_parts(&acc, c * plane, group, fp, k, bp[c], plane, t);
            igdn_row(t, ap + c * plane, plane, root_scale, mult, shift, bound, op + c * plane);
        }
        Py_END_ALLOW_THREADS
        PyMem_RawFree(t);
    }
    Py_INCREF(Py_None);
    result = Py_None;
donef:
    PyBuffer_Release(&fac);
done0:
    PyBuffer_Release(&beta);
done1:
    PyBuffer_Release(&out.view);
    PyBuffer_Release(&a.view);
    PyBuffer_Release(&acc.view);
    return result;
}

static PyObject *py_square_shift(PyObject *mod, PyObject *args)
{
    PyObject *a_o, *out_o;
    int shift;
    double bound;
    Py_ssize_t c0, c1;
    if (!PyArg_ParseTuple(args, "OidOnn", &a_o, &shift, &bound, &out_o, &c0, &c1))
        return NULL;
    fbuf a, out;
    if (get_float(a_o, &a, 0, 3, 0, "a") < 0)
        return NULL;
    if (get_float(out_o, &out, 1, 3, 0, "out") < 0) {
        PyBuffer_Release(&a.view);
        return NULL;
    }
    Py_ssize_t C = a.view.shape[0], plane = a.view.shape[1] * a.view.shape[2];
    PyObject *result = NULL;
    if (shift < 0 || shift > 60 || !(bound >= 0 && bound < 16777216.0) || c0 < 0 || c1 > C ||
        c0 > c1 || out.view.shape[0] != C ||
        out.view.shape[1] * out.view.shape[2] != plane) {
        PyErr_SetString(PyExc_ValueError, "square_shift: inconsistent shapes or parameters");
        goto done;
    }
    {
        const float *ap = (const float *)a.view.buf;
        float *op = (float *)out.view.buf;
        float scale = (float)ldexp(1.0, -shift);
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t c = c0; c < c1; c++)
            square_shift_row(ap + c * plane, plane, scale, (float)bound, op + c * plane);
        Py_END_ALLOW_THREADS
    }
    Py_INCREF(Py_None);
    result = Py_None;
done:
    PyBuffer_Release(&out.view);
    PyBuffer_Release(&a.view);
    return result;
}

/* The inverse GDN with a sparse norm, fused: for output channel c and a tile of pixels,
 * t = beta[c] + sum_k val[k] * min(floor(a[idx[k]]^2 * 2^-shift), bound) over row c's non-zero
 * entries k in [ptr[c], ptr[c+1]), then igdn_row's root and requantisation. The squares are
 * square_shift_row's float32 expression; the products and sums are integers below 2^53 in
 * float64 (the caller checks sum |val| * bound + beta < 2^53), so the order does not matter:
 * exactly the integers that square_shift + the dense product + igdn give. */
#define IGDN_TILE 2048
HOT static void igdn_sparse_tile(const float *a, Py_ssize_t plane, Py_ssize_t i0, Py_ssize_t n,
                                 float scale, float bound, const int64_t *idx, const double *val,
                                 Py_ssize_t k0, Py_ssize_t k1, double beta, double *t)
{
    for (Py_ssize_t i = 0; i < n; i++)
        t[i] = beta;
    for (Py_ssize_t k = k0; k < k1; k++) {
        const float *src = a + idx[k] * plane + i0;
        const double v = val[k];
        for (Py_ssize_t i = 0; i < n; i++) {
            float sq = fminf(floorf((src[i] * src[i]) * scale), bound);
            t[i] += v * (double)sq;
        }
    }
}

HOT static void igdn_sparse_root(const double *t, const float *a, Py_ssize_t n, double root_scale,
                                 int64_t m, int shift, int64_t bound, float *out)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        double v = t[i] < 0 ? 0 : t[i];
        int64_t r = (int64_t)sqrt(v * root_scale);
        int64_t p = (int64_t)a[i] * r * m;
        out[i] = (float)clamp64(floor_shift(p, shift), -bound, bound);
    }
}

static PyObject *py_igdn_sparse(PyObject *mod, PyObject *args)
{
    PyObject *a_o, *ptr_o, *idx_o, *val_o, *beta_o, *out_o;
    int sq_shift, shift;
    double sq_bound, root_scale;
    long long mult, bound;
    Py_ssize_t c0, c1;
    if (!PyArg_ParseTuple(args, "OidOOOOdLiLOnn", &a_o, &sq_shift, &sq_bound, &ptr_o, &idx_o,
                          &val_o, &beta_o, &root_scale, &mult, &shift, &bound, &out_o, &c0, &c1))
        return NULL;
    fbuf a, out;
    Py_buffer ptr, idx, val, beta;
    PyObject *result = NULL;
    if (get_float(a_o, &a, 0, 3, 0, "a") < 0)
        return NULL;
    if (get_float(out_o, &out, 1, 3, 0, "out") < 0) {
        PyBuffer_Release(&a.view);
        return NULL;
    }
    Py_ssize_t C = a.view.shape[0], plane = a.view.shape[1] * a.view.shape[2];
    int got = 0;
    if (get_i64(ptr_o, &ptr, C + 1, "ptr") < 0)
        goto done;
    got = 1;
    if (get_i64(beta_o, &beta, C, "beta") < 0)
        goto done;
    got = 2;
    const int64_t *pp = (const int64_t *)ptr.buf;
    Py_ssize_t nnz = pp[C];
    if (get_i64(idx_o, &idx, nnz, "idx") < 0)
        goto done;
    got = 3;
    if (PyObject_GetBuffer(val_o, &val, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_ND) < 0)
        goto done;
    got = 4;
    int ok = val.itemsize == 8 && val.ndim == 1 && val.shape[0] == nnz && val.format &&
             strchr(val.format, 'd') != NULL && out.view.shape[0] == C &&
             out.view.shape[1] * out.view.shape[2] == plane && c0 >= 0 && c1 <= C && c0 <= c1 &&
             sq_shift >= 0 && sq_shift <= 60 && sq_bound >= 0 && sq_bound < 16777216.0 &&
             shift >= 0 && shift <= 62 && root_scale > 0 && pp[0] == 0;
    const int64_t *ip = (const int64_t *)idx.buf;
    const double *vp = (const double *)val.buf;
    const int64_t *bp = (const int64_t *)beta.buf;
    for (Py_ssize_t c = 0; ok && c < C; c++) {
        /* rows ascending, columns in range, |sum| below 2^53 for every input */
        double mass = fabs((double)bp[c]);
        ok = pp[c + 1] >= pp[c] && pp[c + 1] <= nnz;
        for (Py_ssize_t k = pp[c]; ok && k < pp[c + 1]; k++) {
            ok = ip[k] >= 0 && ip[k] < C && fabs(vp[k]) < 4294967296.0 && vp[k] == floor(vp[k]);
            mass += fabs(vp[k]) * sq_bound;
        }
        ok = ok && mass < 9007199254740992.0;
    }
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "igdn_sparse: inconsistent shapes or parameters");
        goto done;
    }
    {
        const float *ap = (const float *)a.view.buf;
        float *op = (float *)out.view.buf;
        float scale = (float)ldexp(1.0, -sq_shift);
        double *t = PyMem_RawMalloc(IGDN_TILE * sizeof(double));
        if (!t) {
            PyErr_NoMemory();
            goto done;
        }
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t c = c0; c < c1; c++) {
            for (Py_ssize_t i0 = 0; i0 < plane; i0 += IGDN_TILE) {
                Py_ssize_t n = plane - i0 < IGDN_TILE ? plane - i0 : IGDN_TILE;
                igdn_sparse_tile(ap, plane, i0, n, scale, (float)sq_bound, ip, vp, pp[c],
                                 pp[c + 1], (double)bp[c], t);
                igdn_sparse_root(t, ap + c * plane + i0, n, root_scale, mult, shift, bound,
                                 op + c * plane + i0);
            }
        }
        Py_END_ALLOW_THREADS
        PyMem_RawFree(t);
    }
    Py_INCREF(Py_None);
    result = Py_None;
done:
    if (got >= 4)
        PyBuffer_Release(&val);
    if (got >= 3)
        PyBuffer_Release(&idx);
    if (got >= 2)
        PyBuffer_Release(&beta);
    if (got >= 1)
        PyBuffer_Release(&ptr);
    PyBuffer_Release(&out.view);
    PyBuffer_Release(&a.view);
    return result;
}

/* A convolution with few outputs (at most SMALL_N; the last layer of a synthesis): stride 1, no
 * padding, a (C, HP, WP) float32 integers, w (N, C, J, J) float64 integers, out (N, HO, WO)
 * float64 with HO = HP - J + 1. Every product and partial sum is an integer below 2^53 (the
 * caller checks sum |w| * max |a|), so float64 adds them exactly in any order. X outputs along a
 * row are held for all N outputs while the taps stream past them.
 *
 * X is the vector width in doubles. A vector wider than the instruction set's registers is split
 * by the compiler into pieces that go through memory, which made the kernel 3-4x slower on AVX2
 * machines than one AVX-512 register per vector: so X = 8 (one zmm) runs only where the CPU has
 * AVX-512 (the "wide" family, compiled for x86-64-v4), and X = 4 (one ymm, or two xmm) everywhere
 * else. Both add the same exact integers: the same values. */
#define SMALL_N 16
#define SMALL_X_WIDE 8
#define SMALL_X 4

/* one row block for a compile-time number of outputs NN, so the accumulators (vectors of X
 * doubles: GCC / clang vector extensions) stay in registers; products and sums are plain IEEE
 * operations on integers below 2^53: exact */
typedef double vxd8 __attribute__((vector_size(8 * sizeof(double))));
typedef float vxf8 __attribute__((vector_size(8 * sizeof(float))));
typedef double vxd4 __attribute__((vector_size(4 * sizeof(double))));
typedef float vxf4 __attribute__((vector_size(4 * sizeof(float))));
#if defined(__has_builtin)
#if __has_builtin(__builtin_convertvector)
#define HAVE_CONVERTVECTOR 1
#endif
#endif
#ifdef HAVE_CONVERTVECTOR
#define TO_VD(f, VD, X) __builtin_convertvector(f, VD)
#else /* older compilers: lane by lane (same values) */
#define TO_VD(f, VD, X)                                                                         \
    ({                                                                                          \
        VD d_;                                                                                  \
        for (int i_ = 0; i_ < (X); i_++)                                                        \
            d_[i_] = (double)(f)[i_];                                                           \
        d_;                                                                                     \
    })
#endif

#define CONV_SMALL_BODY(NN, X, VD, VF)                                                          \
    for (Py_ssize_t y = y0; y < y1; y++) {                                                      \
        for (Py_ssize_t x0 = 0; x0 < WO; x0 += (X)) {                                           \
            Py_ssize_t nx = WO - x0 < (X) ? WO - x0 : (X);                                      \
            VD acc[NN];                                                                         \
            for (int n = 0; n < NN; n++)                                                        \
                acc[n] = (VD){0};                                                               \
            for (Py_ssize_t c = 0; c < C; c++) {                                                \
                for (Py_ssize_t ty = 0; ty < J; ty++) {                                         \
                    const float *row = a + (c * HP + y + ty) * WP + x0;                         \
                    const double *wp = w + (c * J + ty) * J;                                    \
                    for (Py_ssize_t tx = 0; tx < J; tx++) {                                     \
                        VF f = {0};                                                             \
                        if (nx == (X))                                                          \
                            memcpy(&f, row + tx, sizeof(f));                                    \
                        else                                                                    \
                            for (Py_ssize_t i = 0; i < nx; i++)                                 \
                                f[i] = row[tx + i];                                             \
                        VD v = TO_VD(f, VD, X);                                                 \
                        _Pragma("GCC unroll 16") for (int n = 0; n < NN; n++)                   \
                            acc[n] += wp[n * wstride + tx] * v;                                 \
                    }                                                                           \
                }                                                                               \
            }                                                                                   \
            for (int n = 0; n < NN; n++)                                                        \
                memcpy(out + (n * HO + y) * WO + x0, &acc[n], (size_t)nx * sizeof(double));    \
        }                                                                                       \
    }

#define CONV_SMALL_ARGS                                                                         \
    const float *a, Py_ssize_t C, Py_ssize_t HP, Py_ssize_t WP, const double *w, Py_ssize_t J,   \
        double *out, Py_ssize_t HO, Py_ssize_t WO, Py_ssize_t y0, Py_ssize_t y1

/* conv_small_<family><NN> for every specialisation NN: family "" (X = 4) for every CPU,
 * family "w" (X = 8, AVX-512 code) for CPUs that have it */
#define CONV_SMALL_FN(ATTRS, FAMILY, X, VD, VF, NN)                                             \
    ATTRS CONTRACT static void conv_small_##FAMILY##NN(CONV_SMALL_ARGS)                         \
    {                                                                                           \
        Py_ssize_t wstride = C * J * J;                                                         \
        CONV_SMALL_BODY(NN, X, VD, VF)                                                          \
    }
#define SMALL_EACH(M, ...)                                                                      \
    M(__VA_ARGS__, 1) M(__VA_ARGS__, 2) M(__VA_ARGS__, 3) M(__VA_ARGS__, 4) M(__VA_ARGS__, 6)   \
        M(__VA_ARGS__, 8) M(__VA_ARGS__, 12) M(__VA_ARGS__, 16)
#define SMALL_NAME(FAMILY, NN) conv_small_##FAMILY##NN,

typedef void (*conv_small_fn)(CONV_SMALL_ARGS);
static const int small_sizes[] = {1, 2, 3, 4, 6, 8, 12, 16};
SMALL_EACH(CONV_SMALL_FN, HOT, , SMALL_X, vxd4, vxf4)
static const conv_small_fn small_fns[] = {SMALL_EACH(SMALL_NAME, )};

#ifdef HAVE_CLONES
SMALL_EACH(CONV_SMALL_FN, __attribute__((target("arch=x86-64-v4"))), w, SMALL_X_WIDE, vxd8, vxf8)
static const conv_small_fn small_wide_fns[] = {SMALL_EACH(SMALL_NAME, w)};

/* whether this CPU runs the x86-64-v4 (AVX-512) clones */
static int small_use_wide(void)
{
    static int wide = -1;
    if (wide < 0) {
        __builtin_cpu_init();
        wide = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
    }
    return wide;
}
#endif

/* the smallest specialisation with at least n outputs (extra outputs read zero weights) */
static Py_ssize_t small_slots(Py_ssize_t n, conv_small_fn *fn)
{
    const conv_small_fn *fns = small_fns;
#ifdef HAVE_CLONES
    if (small_use_wide())
        fns = small_wide_fns;
#endif
    for (int i = 0; i < 8; i++)
        if (small_sizes[i] >= n) {
            *fn = fns[i];
            return small_sizes[i];
        }
    return 0;
}

/* conv16: conv_small's convolution on int16 values with int32 sums, for layers whose every
 * partial sum is below 2^31 in magnitude and whose inputs and weights fit int16 (the caller
 * checks both). Inputs come in channel pairs, a (C2, HP, WP, 2) int16 (pack16 below), weights
 * in groups of NN outputs, (G, C2, J, J, NN, 2) int16 (a tap's pairs for the group side by
 * side, read from one pointer): one multiply-add of 16-bit pairs into 32-bit lanes (pmaddwd) takes two
 * channels at once, four times the products per instruction of conv_small's float64 lanes.
 * Integer sums are exact in any order, so the AVX-512, AVX2 and plain versions give the same
 * values, which are conv_small's. WP must reach the last vector: WP >= ceil(WO / 16) * 16 +
 * J - 1 (the extra columns' outputs are not stored). box = {ty0, ty1, tx0, tx1}: the taps the
 * call adds (the caller's weights are zero outside them for every output of the group: a phase
 * of a transposed layer in sub-pixel form uses a corner box of the J x J taps). */
#define CONV16_ARGS                                                                             \
    const int16_t *a, Py_ssize_t C2, Py_ssize_t HP, Py_ssize_t WP, const int16_t *w,            \
        Py_ssize_t J, int32_t *out, Py_ssize_t HO, Py_ssize_t WO, Py_ssize_t y0, Py_ssize_t y1, \
        const int32_t *box
#define CONV16_X 16 /* the widest vector's pixels: the caller's padding unit */
#define CONV16_ROWS 2 /* output rows per pass through the groups of 16 outputs */
typedef void (*conv16_fn)(CONV16_ARGS);

/* the loops of one version: VT a vector of X int32 lanes, MAC(acc, pixels' pairs, weight pair) */
#define CONV16_BODY(NN, X, VT, ZERO, LOAD, MAC, STORE)                                          \
    for (Py_ssize_t y = y0; y < y1; y++) {                                                      \
        for (Py_ssize_t x0 = 0; x0 < WO; x0 += (X)) {                                           \
            Py_ssize_t nx = WO - x0 < (X) ? WO - x0 : (X);                                      \
            VT acc[NN];                                                                         \
            for (int n = 0; n < NN; n++)                                                        \
                acc[n] = ZERO;                                                                  \
            for (Py_ssize_t c = 0; c < C2; c++) {                                               \
                for (Py_ssize_t ty = box[0]; ty < box[1]; ty++) {                               \
                    const int16_t *row = a + ((c * HP + y + ty) * WP + x0) * 2;                 \
                    for (Py_ssize_t tx = box[2]; tx < box[3]; tx++) {                           \
                        VT v = LOAD(row + 2 * tx);                                              \
                        const int16_t *wp = w + ((c * J + ty) * J + tx) * NN * 2;               \
                        _Pragma("GCC unroll 16") for (int n = 0; n < NN; n++) {                 \
                            int32_t pair;                                                       \
                            memcpy(&pair, wp + n * 2, sizeof(pair));                            \
                            acc[n] = MAC(acc[n], v, pair);                                      \
                        }                                                                       \
                    }                                                                           \
                }                                                                               \
            }                                                                                   \
            for (int n = 0; n < NN; n++) {                                                      \
                int32_t lanes[X];                                                               \
                STORE(lanes, acc[n]);                                                           \
                memcpy(out + (n * HO + y) * WO + x0, lanes, (size_t)nx * sizeof(int32_t));      \
            }                                                                                   \
        }                                                                                       \
    }

/* plain C: 8 pixels per block, each lane the sum of its two channels' products */
typedef struct {
    int32_t v[8];
} c16v;
static inline c16v c16_zero(void)
{
    c16v r = {{0}};
    return r;
}
static inline c16v c16_load(const int16_t *p) /* each lane: one pixel's pair, as stored */
{
    c16v r;
    memcpy(r.v, p, sizeof(r.v));
    return r;
}
static inline c16v c16_mac(c16v acc, c16v v, int32_t pair)
{
    int16_t wv[2], xv[2];
    memcpy(wv, &pair, sizeof(wv));
    for (int i = 0; i < 8; i++) {
        memcpy(xv, &v.v[i], sizeof(xv));
        acc.v[i] += (int32_t)xv[0] * wv[0] + (int32_t)xv[1] * wv[1];
    }
    return acc;
}
static inline void c16_store(int32_t *dst, c16v acc) { memcpy(dst, acc.v, sizeof(acc.v)); }
#define CONV16_PLAIN(NN)                                                                        \
    HOT static void conv16_p##NN(CONV16_ARGS)                                                   \
    {                                                                                           \
        CONV16_BODY(NN, 8, c16v, c16_zero(), c16_load, c16_mac, c16_store)                      \
    }
CONV16_PLAIN(1) CONV16_PLAIN(2) CONV16_PLAIN(3) CONV16_PLAIN(4) CONV16_PLAIN(6) CONV16_PLAIN(8)
CONV16_PLAIN(12) CONV16_PLAIN(16)
static const conv16_fn conv16_plain[] = {conv16_p1, conv16_p2,  conv16_p3, conv16_p4,
                                         conv16_p6, conv16_p8, conv16_p12, conv16_p16};

#ifdef HAVE_CLONES
#include <immintrin.h>
#define C16_AVX2_ATTR __attribute__((target("avx2")))
#define C16_AVX512_ATTR __attribute__((target("avx512f,avx512bw")))
C16_AVX2_ATTR static inline __m256i c16_mac_avx2(__m256i acc, __m256i v, int32_t pair)
{
    return _mm256_add_epi32(acc, _mm256_madd_epi16(v, _mm256_set1_epi32(pair)));
}
C16_AVX2_ATTR static inline __m256i c16_load_avx2(const int16_t *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}
C16_AVX2_ATTR static inline void c16_store_avx2(int32_t *dst, __m256i v)
{
    _mm256_storeu_si256((__m256i *)dst, v);
}
C16_AVX512_ATTR static inline __m512i c16_mac_avx512(__m512i acc, __m512i v, int32_t pair)
{
    return _mm512_add_epi32(acc, _mm512_madd_epi16(v, _mm512_set1_epi32(pair)));
}
C16_AVX512_ATTR static inline __m512i c16_load_avx512(const int16_t *p)
{
    return _mm512_loadu_si512((const void *)p);
}
C16_AVX512_ATTR static inline void c16_store_avx512(int32_t *dst, __m512i v)
{
    _mm512_storeu_si512((void *)dst, v);
}
#define C16_VNNI_ATTR __attribute__((target("avx512f,avx512bw,avx512vnni")))
C16_VNNI_ATTR static inline __m512i c16_mac_vnni(__m512i acc, __m512i v, int32_t pair)
{
    return _mm512_dpwssd_epi32(acc, v, _mm512_set1_epi32(pair));
}
#define CONV16_SIMD(NN)                                                                         \
    C16_AVX2_ATTR static void conv16_a##NN(CONV16_ARGS)                                         \
    {                                                                                           \
        CONV16_BODY(NN, 8, __m256i, _mm256_setzero_si256(), c16_load_avx2, c16_mac_avx2,        \
                    c16_store_avx2)                                                             \
    }                                                                                           \
    C16_AVX512_ATTR static void conv16_w##NN(CONV16_ARGS)                                       \
    {                                                                                           \
        CONV16_BODY(NN, 16, __m512i, _mm512_setzero_si512(), c16_load_avx512, c16_mac_avx512,   \
                    c16_store_avx512)                                                           \
    }                                                                                           \
    C16_VNNI_ATTR static void conv16_v##NN(CONV16_ARGS)                                         \
    {                                                                                           \
        CONV16_BODY(NN, 16, __m512i, _mm512_setzero_si512(), c16_load_avx512, c16_mac_vnni,     \
                    c16_store_avx512)                                                           \
    }
CONV16_SIMD(1) CONV16_SIMD(2) CONV16_SIMD(3) CONV16_SIMD(4) CONV16_SIMD(6) CONV16_SIMD(8)
CONV16_SIMD(12) CONV16_SIMD(16)
static const conv16_fn conv16_avx2[] = {conv16_a1, conv16_a2,  conv16_a3, conv16_a4,
                                        conv16_a6, conv16_a8, conv16_a12, conv16_a16};
static const conv16_fn conv16_avx512[] = {conv16_w1, conv16_w2,  conv16_w3, conv16_w4,
                                          conv16_w6, conv16_w8, conv16_w12, conv16_w16};
static const conv16_fn conv16_vnni[] = {conv16_v1, conv16_v2,  conv16_v3, conv16_v4,
                                        conv16_v6, conv16_v8, conv16_v12, conv16_v16};
#endif

/* the version for n outputs (one of small_sizes) of family 0 (this CPU's best), 1 (plain C),
 * 2 (AVX2), 3 (AVX-512) or 4 (AVX-512 VNNI: vpdpwssd), or NULL (no such size, or a family this
 * CPU or build lacks) */
static conv16_fn conv16_pick(Py_ssize_t n, int family)
{
    const conv16_fn *fns = family <= 1 ? conv16_plain : NULL;
#ifdef HAVE_CLONES
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2"), wide = small_use_wide();
    int vnni = wide && __builtin_cpu_supports("avx512vnni");
    if ((family == 0 && vnni) || (family == 4 && vnni))
        fns = conv16_vnni;
    else if ((family == 0 && wide) || (family == 3 && wide))
        fns = conv16_avx512;
    else if ((family == 0 && avx2) || (family == 2 && avx2))
        fns = conv16_avx2;
#endif
    for (int i = 0; fns && i < 8; i++)
        if (small_sizes[i] == n)
            return fns[i];
    return NULL;
}

/* the family conv16_pick(n, 0) takes on this CPU */
static PyObject *py_conv16_family(PyObject *mod, PyObject *noargs)
{
    conv16_fn best = conv16_pick(SMALL_N, 0);
    for (int f = 4; f >= 1; f--)
        if (conv16_pick(SMALL_N, f) == best)
            return PyLong_FromLong(f);
    return PyLong_FromLong(0);
}

static PyObject *py_conv16(PyObject *mod, PyObject *args)
{
    PyObject *a_o, *w_o, *out_o, *box_o = Py_None;
    Py_ssize_t y0, y1;
    int family = 0;
    if (!PyArg_ParseTuple(args, "OOOnn|iO", &a_o, &w_o, &out_o, &y0, &y1, &family, &box_o))
        return NULL;
    Py_buffer a, w, out, box = {0};
    int have_box = box_o != Py_None;
    if (get_typed(a_o, &a, 0, 4, 2, "h", "a") < 0)
        return NULL;
    if (get_typed(w_o, &w, 0, 6, 2, "h", "w") < 0) {
        PyBuffer_Release(&a);
        return NULL;
    }
    if (get_typed(out_o, &out, 1, 3, 4, "i", "out") < 0) {
        PyBuffer_Release(&w);
        PyBuffer_Release(&a);
        return NULL;
    }
    if (have_box && get_typed(box_o, &box, 0, 2, 4, "i", "box") < 0) {
        PyBuffer_Release(&out);
        PyBuffer_Release(&w);
        PyBuffer_Release(&a);
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t C2 = a.shape[0], HP = a.shape[1], WP = a.shape[2];
    Py_ssize_t J = w.shape[2], HO = out.shape[1], WO = out.shape[2];
    /* the outputs in G groups of one version's size, weights (G, C2, J, J, group, 2): a tap's
     * pairs for the group's outputs side by side */
    Py_ssize_t groups = w.shape[0], group = w.shape[4], N = groups * group;
    conv16_fn fn = conv16_pick(group, family);
    int ok = fn && a.shape[3] == 2 && w.shape[1] == C2 && w.shape[3] == J && w.shape[5] == 2 &&
             J >= 1 && out.shape[0] == N && HO == HP - J + 1 && HO >= 1 && WO >= 1 &&
             WP >= (WO + CONV16_X - 1) / CONV16_X * CONV16_X + J - 1 && y0 >= 0 && y1 <= HO &&
             y0 <= y1 && (!have_box || (box.shape[0] == groups && box.shape[1] == 4));
    const int32_t full[4] = {0, (int32_t)J, 0, (int32_t)J};
    const int32_t *bp = have_box ? (const int32_t *)box.buf : NULL;
    for (Py_ssize_t g = 0; ok && bp && g < groups; g++) /* each box inside the J x J taps */
        ok = bp[4 * g] >= 0 && bp[4 * g] <= bp[4 * g + 1] && bp[4 * g + 1] <= J &&
             bp[4 * g + 2] >= 0 && bp[4 * g + 2] <= bp[4 * g + 3] && bp[4 * g + 3] <= J;
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "conv16: inconsistent shapes");
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    /* a few rows at a time through every group, so that their input stays in cache */
    for (Py_ssize_t y = y0; y < y1; y += CONV16_ROWS)
        for (Py_ssize_t g = 0; g < groups; g++)
            fn((const int16_t *)a.buf, C2, HP, WP, (const int16_t *)w.buf + g * group * C2 * J * J * 2,
               J, (int32_t *)out.buf + g * group * HO * WO, HO, WO, y,
               y + CONV16_ROWS < y1 ? y + CONV16_ROWS : y1, bp ? bp + 4 * g : full);
    Py_END_ALLOW_THREADS
    Py_INCREF(Py_None);
    result = Py_None;
done:
    if (have_box)
        PyBuffer_Release(&box);
    PyBuffer_Release(&out);
    PyBuffer_Release(&w);
    PyBuffer_Release(&a);
    return result;
}

/* pack16(a, bound, top, left, out, c0, c1): out[c2, y, x, k] = clamp(a[2 c2 + k, y - top,
 * x - left], +-bound) as int16, 0 outside a (padding, and the odd channel count's last pair);
 * a (C, H, W) float32 integers, out (C2, HP, WP, 2); channel pairs [c0, c1). */
HOT static void pack16_pair(const float *a, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                            Py_ssize_t c2, float bound, Py_ssize_t top, Py_ssize_t left,
                            Py_ssize_t HP, Py_ssize_t WP, int16_t *out)
{
    for (Py_ssize_t y = 0; y < HP; y++) {
        int16_t *dst = out + (c2 * HP + y) * WP * 2;
        Py_ssize_t iy = y - top;
        memset(dst, 0, (size_t)WP * 2 * sizeof(int16_t));
        if (iy < 0 || iy >= H)
            continue;
        for (int k = 0; k < 2; k++) {
            Py_ssize_t ch = 2 * c2 + k;
            if (ch >= C)
                continue;
            const float *src = a + (ch * H + iy) * W;
            Py_ssize_t n = W < WP - left ? W : WP - left;
            for (Py_ssize_t x = 0; x < n; x++) {
                float v = src[x];
                v = v < -bound ? -bound : (v > bound ? bound : v);
                dst[(left + x) * 2 + k] = (int16_t)v;
            }
        }
    }
}

static PyObject *py_pack16(PyObject *mod, PyObject *args)
{
    PyObject *a_o, *out_o;
    double bound;
    Py_ssize_t top, left, c0, c1;
    if (!PyArg_ParseTuple(args, "OdnnOnn", &a_o, &bound, &top, &left, &out_o, &c0, &c1))
        return NULL;
    fbuf a;
    Py_buffer out;
    if (get_float(a_o, &a, 0, 3, 0, "a") < 0)
        return NULL;
    if (get_typed(out_o, &out, 1, 4, 2, "h", "out") < 0) {
        PyBuffer_Release(&a.view);
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t C = a.view.shape[0], H = a.view.shape[1], W = a.view.shape[2];
    Py_ssize_t C2 = out.shape[0], HP = out.shape[1], WP = out.shape[2];
    if (out.shape[3] != 2 || C2 != (C + 1) / 2 || !(bound >= 0 && bound <= 32767) || top < 0 ||
        left < 0 || top + H > HP || left + W > WP || c0 < 0 || c1 > C2 || c0 > c1) {
        PyErr_SetString(PyExc_ValueError, "pack16: inconsistent shapes or parameters");
        goto done;
    }
    {
        const float *ap = (const float *)a.view.buf;
        int16_t *op = (int16_t *)out.buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t c2 = c0; c2 < c1; c2++)
            pack16_pair(ap, C, H, W, c2, (float)bound, top, left, HP, WP, op);
        Py_END_ALLOW_THREADS
    }
    Py_INCREF(Py_None);
    result = Py_None;
done:
    PyBuffer_Release(&out);
    PyBuffer_Release(&a.view);
    return result;
}

static PyObject *py_conv_small(PyObject *mod, PyObject *args)
{
    PyObject *a_o, *w_o, *out_o;
    Py_ssize_t y0, y1;
    if (!PyArg_ParseTuple(args, "OOOnn", &a_o, &w_o, &out_o, &y0, &y1))
        return NULL;
    fbuf a, w, out;
    if (get_float(a_o, &a, 0, 3, 0, "a") < 0)
        return NULL;
    if (get_float(w_o, &w, 0, 4, 1, "w") < 0) {
        PyBuffer_Release(&a.view);
        return NULL;
    }
    if (get_float(out_o, &out, 1, 3, 1, "out") < 0) {
        PyBuffer_Release(&w.view);
        PyBuffer_Release(&a.view);
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t C = a.view.shape[0], HP = a.view.shape[1], WP = a.view.shape[2];
    Py_ssize_t N = w.view.shape[0], J = w.view.shape[2];
    Py_ssize_t HO = out.view.shape[1], WO = out.view.shape[2];
    if (!w.is64 || w.isint || !out.is64 || out.isint || N < 1 || N > SMALL_N ||
        w.view.shape[1] != C || w.view.shape[3] != J || J < 1 || out.view.shape[0] != N ||
        HO != HP - J + 1 || WO != WP - J + 1 || HO < 1 || WO < 1 || y0 < 0 || y1 > HO ||
        y0 > y1) {
        PyErr_SetString(PyExc_ValueError, "conv_small: inconsistent shapes or types");
        goto done;
    }
    {
        const float *ap = (const float *)a.view.buf;
        const double *wp = (const double *)w.view.buf;
        double *op = (double *)out.view.buf;
        conv_small_fn fn = NULL;
        if (small_slots(N, &fn) != N) {
            PyErr_SetString(PyExc_ValueError, "conv_small: pad the outputs to 1-4, 6, 8, 12 or 16");
            goto done;
        }
        Py_BEGIN_ALLOW_THREADS
        fn(ap, C, HP, WP, wp, J, op, HO, WO, y0, y1);
        Py_END_ALLOW_THREADS
    }
    Py_INCREF(Py_None);
    result = Py_None;
done:
    PyBuffer_Release(&out.view);
    PyBuffer_Release(&w.view);
    PyBuffer_Release(&a.view);
    return result;
}

static PyMethodDef methods[] = {
    {"requant", py_requant, METH_VARARGS,
     "requant(acc, factors, s, pad, bias, mult, shift, lo, hi, out, phase_major, c0, c1): "
     "conv epilogue"},
    {"igdn", py_igdn, METH_VARARGS,
     "igdn(acc, factors, beta, a, root_scale, mult, shift, bound, out, c0, c1): inverse GDN"},
    {"conv_small", py_conv_small, METH_VARARGS,
     "conv_small(a, w, out, y0, y1): exact convolution with at most 16 outputs, rows [y0, y1)"},
    {"igdn_sparse", py_igdn_sparse, METH_VARARGS,
     "igdn_sparse(a, shift, bound, ptr, idx, val, beta, root_scale, mult, shift2, bound2, out, "
     "c0, c1): inverse GDN with a sparse norm, fused"},
    {"conv16", py_conv16, METH_VARARGS,
     "conv16(a, w, out, y0, y1[, family[, box]]): exact int16 convolution with int32 sums; w (G, "
     "C2, J, J, group, 2), G groups of 1, 2, 3, 4, 6, 8, 12 or 16 outputs (family: 0 this CPU's "
     "best, 1 plain C, 2 AVX2, 3 AVX-512, 4 AVX-512 VNNI); box: (G, 4) int32, each group adding "
     "only the taps [ty0, ty1) x [tx0, tx1)"},
    {"conv16_family", py_conv16_family, METH_NOARGS,
     "conv16_family(): the version conv16 runs here (1 plain C, 2 AVX2, 3 AVX-512, 4 VNNI)"},
    {"pack16", py_pack16, METH_VARARGS,
     "pack16(a, bound, top, left, out, c0, c1): clamp, pad and pair channels as int16"},
    {"square_shift", py_square_shift, METH_VARARGS,
     "square_shift(a, shift, bound, out, c0, c1): min(floor(a * a * 2^-shift), bound), float32"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_intnet", "Exact epilogues of the integer networks.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__intnet(void) { return PyModule_Create(&module); }
