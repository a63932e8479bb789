/* Exact epilogues of the integer networks (compress/intconv.py, compress/intnet.py).
 *
 * A convolution's accumulator arrives as K partial sums (float32 or float64 holding exact
 * integers, or int32 from the int8 matrix products). Everything here is int64 arithmetic on those integers, plus one correctly rounded
 * IEEE sqrt, so the result is the same on every CPU and compiler (no -ffast-math here).
 *
 *   requant(acc, factors, s, pad, bias, mult, shift, lo, hi, out, c0, c1)
 *       v = sum_p factors[p] * acc[p] + bias[c];  r = floor((v * mult[c] + 2^(shift-1)) / 2^shift)
 *       clamped to [lo, hi]; phase channel c*s*s + ry*s + rx at (qy, qx) is written to
 *       out[c, qy*s + ry - pad, qx*s + rx - pad] when inside out (pixel shuffle + crop fused).
 *   igdn(acc, factors, beta, a, root_scale, mult, shift, bound, out, c0, c1)
 *       n = sum_p factors[p] * acc[p] + beta[c];  r = floor(sqrt(n * root_scale));
 *       out = clamp(floor((a * r * mult + 2^(shift-1)) / 2^shift), +-bound)
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

static inline int64_t acc_at(const fbuf *b, Py_ssize_t i)
{
    if (b->isint)
        return (int64_t)((const int32_t *)b->view.buf)[i];
    return b->is64 ? (int64_t)((const double *)b->view.buf)[i]
                   : (int64_t)((const float *)b->view.buf)[i];
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

static PyObject *py_requant(PyObject *mod, PyObject *args)
{
    PyObject *acc_o, *fac_o, *bias_o, *mult_o, *out_o;
    Py_ssize_t s, pad;
    int shift;
    long long lo, hi;
    Py_ssize_t c0, c1;
    if (!PyArg_ParseTuple(args, "OOnnOOiLLOnn", &acc_o, &fac_o, &s, &pad, &bias_o, &mult_o, &shift,
                          &lo, &hi, &out_o, &c0, &c1))
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
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t c = c0; c < c1; c++) {
            for (Py_ssize_t ry = 0; ry < s; ry++) {
                for (Py_ssize_t rx = 0; rx < s; rx++) {
                    Py_ssize_t base = ((c * s + ry) * s + rx) * plane;
                    for (Py_ssize_t qy = 0; qy < H; qy++) {
                        Py_ssize_t oy = qy * s + ry - pad;
                        if (oy < 0 || oy >= HO)
                            continue;
                        for (Py_ssize_t qx = 0; qx < W; qx++) {
                            Py_ssize_t ox = qx * s + rx - pad;
                            if (ox < 0 || ox >= WO)
                                continue;
                            Py_ssize_t i = base + qy * W + qx;
                            int64_t v = bp[c];
                            for (Py_ssize_t g = 0; g < k; g++)
                                v += fp[g] * acc_at(&acc, i + g * group);
                            v = clamp64(floor_shift(v * mp[c], shift), lo, hi);
                            op[(c * HO + oy) * WO + ox] = (float)v;
                        }
                    }
                }
            }
        }
        Py_END_ALLOW_THREADS
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
        /* the common case (one float32 partial sum, factor 1) without the generic reads */
        const float *a32 = (k == 1 && fp[0] == 1 && !acc.is64 && !acc.isint)
                               ? (const float *)acc.view.buf
                               : NULL;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t c = c0; c < c1; c++) {
            for (Py_ssize_t p = 0; p < plane; p++) {
                Py_ssize_t i = c * plane + p;
                int64_t n = bp[c];
                if (a32)
                    n += (int64_t)a32[i];
                else
                    for (Py_ssize_t g = 0; g < k; g++)
                        n += fp[g] * acc_at(&acc, i + g * group);
                if (n < 0)
                    n = 0;
                /* n >= 0: truncation is the floor; sqrt is correctly rounded (IEEE) */
                int64_t r = (int64_t)sqrt((double)n * root_scale);
                int64_t t = (int64_t)ap[i] * r * (int64_t)mult;
                op[i] = (float)clamp64(floor_shift(t, shift), -bound, bound);
            }
        }
        Py_END_ALLOW_THREADS
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

static PyMethodDef methods[] = {
    {"requant", py_requant, METH_VARARGS,
     "requant(acc, factors, s, pad, bias, mult, shift, lo, hi, out, c0, c1): conv epilogue"},
    {"igdn", py_igdn, METH_VARARGS,
     "igdn(acc, factors, beta, a, root_scale, mult, shift, bound, out, c0, c1): inverse GDN"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_intnet", "Exact epilogues of the integer networks.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__intnet(void) { return PyModule_Create(&module); }
