/* Exact fixed-point image kernels of the INR decoder (kernels/exact_upsample.py, exact_conv.py).
 *
 * Values are integers carried in float64 (C-contiguous (C, H, W) planes). Every product and
 * partial sum stays an integer below 2^53, so results are exact and identical to the NumPy /
 * PyTorch reference whatever the summation order, FMA contraction or compiler.
 *
 *   conv3x3(x, w, b, out)     out[o] = b[o] + sum_{i,dy,dx} w[o,i,dy,dx] x[i, y+dy-1, x+dx-1]
 *                             (replicate borders; no rescaling)
 *   up2(x, taps, scale, limit, out)
 *                             x2 upsampling along width then height, 4 taps per phase,
 *                             replicate borders, each pass rescaled by floor(v * scale + 1/2)
 *                             and clamped to +-limit
 *   block_sads(cur, ref, r, block, out)
 *                             the video encoder's full-pel motion search: out[k, by, bx] = sum
 *                             over the block of |cur - ref shifted by offset k| (int16 planes,
 *                             ref padded by r on every side, offsets (dy, dx) in raster order
 *                             over [-r, r]^2, int32 sums: exact, so the same as NumPy's)
 *   bilinear(ref, mv, block, frac_bits, up, rows, cols, out)
 *                             the video codec's motion-compensated prediction
 *                             (video_motion.predict_plane): out[i, j] = bilinear sample of the
 *                             int32 plane ref at (rows[i], cols[j]) x up x 2^frac_bits + the
 *                             vector of the block holding it (mv: (nby, nbx, 2) int32, in
 *                             1 / 2^frac_bits of ref's pels), edges repeated, rounded; integer
 *                             arithmetic, so the same as NumPy's
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A C-contiguous ndim-d buffer of items of ``size`` bytes and struct format ``fmt`` ("d":
 * float64, "h": int16, "i": int32); TypeError naming ``name`` otherwise. */
static int get_typed(PyObject *obj, Py_buffer *view, int writable, int ndim, Py_ssize_t size,
                     const char *fmt, const char *name)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_ND | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return -1;
    const char *f = view->format ? view->format : "B";
    if (*f == '@' || *f == '=' || *f == '<')
        f++;
    if (view->itemsize != size || strcmp(f, fmt) != 0 || view->ndim != ndim) {
        const char *type = strcmp(fmt, "d") == 0 ? "float64" : strcmp(fmt, "h") == 0 ? "int16" : "int32";
        PyErr_Format(PyExc_TypeError, "%s must be a contiguous %d-d %s array", name, ndim, type);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static int get_f64(PyObject *obj, Py_buffer *view, int writable, int ndim, const char *name)
{
    return get_typed(obj, view, writable, ndim, 8, "d", name);
}

static inline Py_ssize_t clampi(Py_ssize_t v, Py_ssize_t hi) /* into [0, hi] */
{
    return v < 0 ? 0 : (v > hi ? hi : v);
}

/* REQUIRES: x (ci, h, w), w (co, ci, 3, 3), b (co), out (co, h, w), all distinct. */
static void conv3x3_run(const double *x, const double *wt, const double *b, double *out,
                        Py_ssize_t ci, Py_ssize_t co, Py_ssize_t h, Py_ssize_t w)
{
    double *row = malloc(sizeof(double) * (size_t)(w + 2));
    if (!row)
        return;
    for (Py_ssize_t o = 0; o < co; o++) {
        double *dst = out + o * h * w;
        for (Py_ssize_t p = 0; p < h * w; p++)
            dst[p] = b[o];
    }
    for (Py_ssize_t i = 0; i < ci; i++) {
        const double *src = x + i * h * w;
        for (Py_ssize_t y = 0; y < h; y++) {
            for (int dy = 0; dy < 3; dy++) {
                const double *s = src + clampi(y + dy - 1, h - 1) * w;
                row[0] = s[0];
                memcpy(row + 1, s, sizeof(double) * (size_t)w);
                row[w + 1] = s[w - 1];
                for (Py_ssize_t o = 0; o < co; o++) {
                    const double *k = wt + ((o * ci + i) * 3 + dy) * 3;
                    double k0 = k[0], k1 = k[1], k2 = k[2], *d = out + (o * h + y) * w;
                    for (Py_ssize_t xx = 0; xx < w; xx++)
                        d[xx] += k0 * row[xx] + k1 * row[xx + 1] + k2 * row[xx + 2];
                }
            }
        }
    }
    free(row);
}

static PyObject *py_conv3x3(PyObject *mod, PyObject *args)
{
    PyObject *ox, *ow, *ob, *oo;
    if (!PyArg_ParseTuple(args, "OOOO:conv3x3", &ox, &ow, &ob, &oo))
        return NULL;
    Py_buffer x, w, b, out;
    if (get_f64(ox, &x, 0, 3, "x") < 0)
        return NULL;
    if (get_f64(ow, &w, 0, 4, "w") < 0)
        goto fail_x;
    if (get_f64(ob, &b, 0, 1, "b") < 0)
        goto fail_w;
    if (get_f64(oo, &out, 1, 3, "out") < 0)
        goto fail_b;
    Py_ssize_t ci = x.shape[0], h = x.shape[1], wd = x.shape[2], co = w.shape[0];
    if (w.shape[1] != ci || w.shape[2] != 3 || w.shape[3] != 3 || b.shape[0] != co ||
        out.shape[0] != co || out.shape[1] != h || out.shape[2] != wd || h < 1 || wd < 1 ||
        out.buf == x.buf) {
        PyErr_SetString(PyExc_ValueError, "conv3x3: inconsistent shapes");
        goto fail_out;
    }
    Py_BEGIN_ALLOW_THREADS
    conv3x3_run(x.buf, w.buf, b.buf, out.buf, ci, co, h, wd);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&out);
    PyBuffer_Release(&b);
    PyBuffer_Release(&w);
    PyBuffer_Release(&x);
    Py_RETURN_NONE;
fail_out:
    PyBuffer_Release(&out);
fail_b:
    PyBuffer_Release(&b);
fail_w:
    PyBuffer_Release(&w);
fail_x:
    PyBuffer_Release(&x);
    return NULL;
}

static inline double rescale(double v, double scale, double limit)
{
    v = v * scale + 0.5; /* exact; |v| < 2^53 */
    double t = (double)(int64_t)v;
    v = t > v ? t - 1.0 : t; /* floor without a libm call */
    return v < -limit ? -limit : (v > limit ? limit : v);
}

/* One x2 pass along rows: src (n, len) -> dst (n, 2 len). even[j] = sum_t taps[t] p[j + t],
 * odd[j] = sum_t taps[3 - t] p[j + 1 + t], p = src padded by 2 (replicate) on both sides. */
static void up2_rows(const double *src, double *dst, Py_ssize_t n, Py_ssize_t len,
                     const double *taps, double scale, double limit, double *pad)
{
    for (Py_ssize_t r = 0; r < n; r++) {
        const double *s = src + r * len;
        pad[0] = pad[1] = s[0];
        memcpy(pad + 2, s, sizeof(double) * (size_t)len);
        pad[len + 2] = pad[len + 3] = s[len - 1];
        double *d = dst + r * 2 * len;
        for (Py_ssize_t j = 0; j < len; j++) {
            const double *p = pad + j;
            double even = taps[0] * p[0] + taps[1] * p[1] + taps[2] * p[2] + taps[3] * p[3];
            double odd = taps[3] * p[1] + taps[2] * p[2] + taps[1] * p[3] + taps[0] * p[4];
            d[2 * j] = rescale(even, scale, limit);
            d[2 * j + 1] = rescale(odd, scale, limit);
        }
    }
}

/* Transpose (c, a, b) -> (c, b, a). */
static void transpose(const double *src, double *dst, Py_ssize_t c, Py_ssize_t a, Py_ssize_t b)
{
    for (Py_ssize_t k = 0; k < c; k++)
        for (Py_ssize_t i = 0; i < a; i++)
            for (Py_ssize_t j = 0; j < b; j++)
                dst[(k * b + j) * a + i] = src[(k * a + i) * b + j];
}

static PyObject *py_up2(PyObject *mod, PyObject *args)
{
    PyObject *ox, *ot, *oo;
    double scale, limit;
    if (!PyArg_ParseTuple(args, "OOddO:up2", &ox, &ot, &scale, &limit, &oo))
        return NULL;
    Py_buffer x, t, out;
    if (get_f64(ox, &x, 0, 3, "x") < 0)
        return NULL;
    if (get_f64(ot, &t, 0, 1, "taps") < 0) {
        PyBuffer_Release(&x);
        return NULL;
    }
    if (get_f64(oo, &out, 1, 3, "out") < 0) {
        PyBuffer_Release(&t);
        PyBuffer_Release(&x);
        return NULL;
    }
    Py_ssize_t c = x.shape[0], h = x.shape[1], w = x.shape[2];
    int ok = t.shape[0] == 4 && out.shape[0] == c && out.shape[1] == 2 * h &&
             out.shape[2] == 2 * w && h >= 1 && w >= 1;
    double *wide = NULL, *wide_t = NULL, *tall_t = NULL, *pad = NULL;
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "up2: inconsistent shapes");
    } else {
        size_t n = (size_t)(c * h * 2 * w), m = (size_t)(2 * (h > w ? h : w) + 4);
        wide = malloc(sizeof(double) * n);
        wide_t = malloc(sizeof(double) * n);
        tall_t = malloc(sizeof(double) * 2 * n);
        pad = malloc(sizeof(double) * m);
        if (!wide || !wide_t || !tall_t || !pad) {
            PyErr_NoMemory();
            ok = 0;
        }
    }
    if (ok) {
        const double *taps = t.buf;
        Py_BEGIN_ALLOW_THREADS
        up2_rows(x.buf, wide, c * h, w, taps, scale, limit, pad); /* (c, h, 2w) */
        transpose(wide, wide_t, c, h, 2 * w);                     /* (c, 2w, h) */
        up2_rows(wide_t, tall_t, c * 2 * w, h, taps, scale, limit, pad); /* (c, 2w, 2h) */
        transpose(tall_t, out.buf, c, 2 * w, 2 * h);              /* (c, 2h, 2w) */
        Py_END_ALLOW_THREADS
    }
    free(wide);
    free(wide_t);
    free(tall_t);
    free(pad);
    PyBuffer_Release(&out);
    PyBuffer_Release(&t);
    PyBuffer_Release(&x);
    if (!ok)
        return NULL;
    Py_RETURN_NONE;
}

/* REQUIRES: cur (hh, ww), ref (hh + 2r, ww + 2r), out ((2r+1)^2, hh/block, ww/block). */
static void block_sads_run(const int16_t *cur, const int16_t *ref, int32_t *out, Py_ssize_t hh,
                           Py_ssize_t ww, Py_ssize_t r, Py_ssize_t block)
{
    Py_ssize_t nby = hh / block, nbx = ww / block, rw = ww + 2 * r, side = 2 * r + 1;
    for (Py_ssize_t by = 0; by < nby; by++) {
        for (Py_ssize_t dy = -r; dy <= r; dy++) {
            for (Py_ssize_t bx = 0; bx < nbx; bx++) {
                const int16_t *c0 = cur + by * block * ww + bx * block;
                const int16_t *r0 = ref + (by * block + r + dy) * rw + bx * block + r;
                int32_t *o = out + ((dy + r) * side) * nby * nbx + by * nbx + bx;
                for (Py_ssize_t dx = -r; dx <= r; dx++) {
                    int32_t sum = 0;
                    for (Py_ssize_t y = 0; y < block; y++) {
                        const int16_t *c = c0 + y * ww, *q = r0 + y * rw + dx;
                        for (Py_ssize_t x = 0; x < block; x++) {
                            int32_t d = (int32_t)c[x] - (int32_t)q[x];
                            sum += d < 0 ? -d : d;
                        }
                    }
                    o[(dx + r) * nby * nbx] = sum;
                }
            }
        }
    }
}

static PyObject *py_block_sads(PyObject *mod, PyObject *args)
{
    PyObject *oc, *oref, *oo;
    Py_ssize_t r, block;
    if (!PyArg_ParseTuple(args, "OOnnO:block_sads", &oc, &oref, &r, &block, &oo))
        return NULL;
    Py_buffer c, ref, out;
    if (get_typed(oc, &c, 0, 2, 2, "h", "cur") < 0)
        return NULL;
    if (get_typed(oref, &ref, 0, 2, 2, "h", "ref") < 0) {
        PyBuffer_Release(&c);
        return NULL;
    }
    if (get_typed(oo, &out, 1, 3, 4, "i", "out") < 0) {
        PyBuffer_Release(&c);
        PyBuffer_Release(&ref);
        return NULL;
    }
    Py_ssize_t hh = c.shape[0], ww = c.shape[1];
    int ok = r >= 0 && r <= 1024 && block > 0 && hh % block == 0 && ww % block == 0 &&
             ref.shape[0] == hh + 2 * r && ref.shape[1] == ww + 2 * r &&
             out.shape[0] == (2 * r + 1) * (2 * r + 1) && out.shape[1] == hh / block &&
             out.shape[2] == ww / block;
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        block_sads_run(c.buf, ref.buf, out.buf, hh, ww, r, block);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&c);
    PyBuffer_Release(&ref);
    PyBuffer_Release(&out);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "block_sads: shapes do not fit");
        return NULL;
    }
    Py_RETURN_NONE;
}

/* REQUIRES: 0 <= rows[i] < nby * block, 0 <= cols[j] < nbx * block, 1 <= fb <= 8. */
static void bilinear_run(const int32_t *ref, Py_ssize_t h, Py_ssize_t w, const int32_t *mv,
                         Py_ssize_t nbx, Py_ssize_t block, int fb, Py_ssize_t up,
                         const int32_t *rows, Py_ssize_t nr, const int32_t *cols, Py_ssize_t nc,
                         int32_t *out)
{
    const int64_t s = (int64_t)1 << fb, mask = s - 1, half = (int64_t)1 << (2 * fb - 1);
    const int64_t scale = (int64_t)up << fb;
    for (Py_ssize_t i = 0; i < nr; i++) {
        const int64_t y = rows[i];
        const int32_t *vrow = mv + (y / block) * nbx * 2;
        int32_t *o = out + i * nc;
        for (Py_ssize_t j = 0; j < nc; j++) {
            const int64_t x = cols[j];
            const int32_t *v = vrow + (x / block) * 2;
            const int64_t py = y * scale + v[0], px = x * scale + v[1];
            const int64_t fy = py & mask, fx = px & mask; /* two's complement: floor remainder */
            const int64_t y0 = (py - fy) / s, x0 = (px - fx) / s;  /* exact divisions */
            const int64_t ya = y0 < 0 ? 0 : y0 > h - 1 ? h - 1 : y0;
            const int64_t yb = y0 + 1 < 0 ? 0 : y0 + 1 > h - 1 ? h - 1 : y0 + 1;
            const int64_t xa = x0 < 0 ? 0 : x0 > w - 1 ? w - 1 : x0;
            const int64_t xb = x0 + 1 < 0 ? 0 : x0 + 1 > w - 1 ? w - 1 : x0 + 1;
            const int64_t top = ref[ya * w + xa] * (s - fx) + ref[ya * w + xb] * fx;
            const int64_t bot = ref[yb * w + xa] * (s - fx) + ref[yb * w + xb] * fx;
            o[j] = (int32_t)((top * (s - fy) + bot * fy + half) >> (2 * fb));
        }
    }
}

static PyObject *py_bilinear(PyObject *mod, PyObject *args)
{
    PyObject *oref, *omv, *orows, *ocols, *oo;
    Py_ssize_t block, fb, up;
    if (!PyArg_ParseTuple(args, "OOnnnOOO:bilinear", &oref, &omv, &block, &fb, &up, &orows,
                          &ocols, &oo))
        return NULL;
    Py_buffer ref, mv, rows, cols, out;
    if (get_typed(oref, &ref, 0, 2, 4, "i", "ref") < 0)
        return NULL;
    if (get_typed(omv, &mv, 0, 3, 4, "i", "mv") < 0) {
        PyBuffer_Release(&ref);
        return NULL;
    }
    if (get_typed(orows, &rows, 0, 1, 4, "i", "rows") < 0) {
        PyBuffer_Release(&ref);
        PyBuffer_Release(&mv);
        return NULL;
    }
    if (get_typed(ocols, &cols, 0, 1, 4, "i", "cols") < 0) {
        PyBuffer_Release(&ref);
        PyBuffer_Release(&mv);
        PyBuffer_Release(&rows);
        return NULL;
    }
    if (get_typed(oo, &out, 1, 2, 4, "i", "out") < 0) {
        PyBuffer_Release(&ref);
        PyBuffer_Release(&mv);
        PyBuffer_Release(&rows);
        PyBuffer_Release(&cols);
        return NULL;
    }
    Py_ssize_t nr = rows.shape[0], nc = cols.shape[0];
    Py_ssize_t nby = mv.shape[0], nbx = mv.shape[1];
    int ok = block > 0 && fb >= 1 && fb <= 8 && up >= 1 && up <= 16 && mv.shape[2] == 2 &&
             ref.shape[0] > 0 && ref.shape[1] > 0 && out.shape[0] == nr && out.shape[1] == nc;
    const int32_t *r = rows.buf, *c = cols.buf;
    for (Py_ssize_t i = 0; ok && i < nr; i++)
        ok = r[i] >= 0 && r[i] < nby * block;
    for (Py_ssize_t j = 0; ok && j < nc; j++)
        ok = c[j] >= 0 && c[j] < nbx * block;
    const int32_t *v = mv.buf;
    for (Py_ssize_t k = 0; ok && k < 2 * nby * nbx; k++)
        ok = v[k] > -(1 << 24) && v[k] < (1 << 24);
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        bilinear_run(ref.buf, ref.shape[0], ref.shape[1], mv.buf, nbx, block, (int)fb, up,
                     rows.buf, nr, cols.buf, nc, out.buf);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&ref);
    PyBuffer_Release(&mv);
    PyBuffer_Release(&rows);
    PyBuffer_Release(&cols);
    PyBuffer_Release(&out);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "bilinear: shapes or vectors do not fit");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"bilinear", py_bilinear, METH_VARARGS,
     "bilinear(ref, mv, block, frac_bits, up, rows, cols, out): motion-compensated samples."},
    {"block_sads", py_block_sads, METH_VARARGS,
     "block_sads(cur, ref, r, block, out): block SADs of every full-pel offset within r."},
    {"conv3x3", py_conv3x3, METH_VARARGS,
     "conv3x3(x, w, b, out): exact replicate-padded 3x3 convolution of float64 integers."},
    {"up2", py_up2, METH_VARARGS,
     "up2(x, taps, scale, limit, out): exact x2 upsampling (width, then height) with rescaling."},
    {NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_exact", "Exact fixed-point image kernels of the INR decoder (see kernels/exact_*.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__exact(void)
{
    return PyModule_Create(&module);
}
