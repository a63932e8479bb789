/* Exact kernels: the INR decoder's fixed-point image kernels (kernels/exact_upsample.py,
 * exact_conv.py) and the video codec's (below, from block_sads on).
 *
 * conv3x3 / up2: values are integers carried in float64 (C-contiguous (C, H, W) planes). Every
 * product and partial sum stays an integer below 2^53, so results are exact and identical to the
 * NumPy / PyTorch reference whatever the summation order, FMA contraction or compiler.
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
 *   qpel8(ref, out)           the video codec's 8-tap quarter-pel luma plane
 *                             (video_motion.quarter_pel_plane): out[4y + fy, 4x + fx] = ref at
 *                             (y + fy / 4, x + fx / 4) by the separable filters QPEL8_TAPS
 *                             (1/64 each; rows first, unrounded, then columns), edges
 *                             repeated, (sum + 2048) >> 12 clipped to 0..255; integers only
 *   counts_cdf(counts, precision, out)
 *                             entropy.cdf.counts_to_quantized_cdf (integers only, the same
 *                             table), for the video codec's adaptive models
 *   intra_row(src, rec, by, basis, ...), intra_decode(modes, res, tap_idx, tap_w, rec)
 *                             the video codec's block intra coder (video_intra.encode_plane's
 *                             choice of modes and levels for one row of 8x8 blocks; its
 *                             decode_plane): integer predictions and transforms, and the
 *                             encoder's float64 costs computed in NumPy's order (no FMA
 *                             contraction; sums of 64 as NumPy's pairwise sum), so the same
 *                             modes, levels and pixels as the NumPy code
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_buffers.h"

static int get_f64(PyObject *obj, Py_buffer *view, int writable, int ndim, const char *name)
{
    return get_typed(obj, view, writable, ndim, 8, "d", name);
}

/* One buffer argument of an entry point: get_typed's checks, with fmt "i" (int32), "h" (int16),
 * "d" (float64) or "q" (int64, whatever letter the platform's buffers use for it). */
typedef struct {
    PyObject *obj;
    int writable, ndim;
    const char *fmt, *name;
} BufSpec;

static void release_all(Py_buffer *b, int n)
{
    for (int k = 0; k < n; k++)
        PyBuffer_Release(&b[k]);
}

/* get_typed of every spec in order into b; on a failure those taken are released, -1 */
static int get_all(const BufSpec *spec, Py_buffer *b, int n)
{
    for (int k = 0; k < n; k++) {
        const char *f = spec[k].fmt;
        Py_ssize_t size = f[0] == 'h' ? 2 : (f[0] == 'i' ? 4 : 8);
        if (f[0] == 'q' && sizeof(long) == 8)
            f = "l";
        if (get_typed(spec[k].obj, &b[k], spec[k].writable, spec[k].ndim, size, f,
                      spec[k].name) < 0) {
            release_all(b, k);
            return -1;
        }
    }
    return 0;
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
    Py_buffer b[3];
    const BufSpec spec[3] = {
        {oc, 0, 2, "h", "cur"}, {oref, 0, 2, "h", "ref"}, {oo, 1, 3, "i", "out"}};
    if (get_all(spec, b, 3) < 0)
        return NULL;
    Py_buffer c = b[0], ref = b[1], out = b[2];
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
    release_all(b, 3);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "block_sads: shapes do not fit");
        return NULL;
    }
    Py_RETURN_NONE;
}

/* one sample of ref at (py, px) in 1 / 2^fb of its pels, edges repeated */
static inline int32_t bilinear_sample(const int32_t *ref, Py_ssize_t h, Py_ssize_t w, int64_t py,
                                      int64_t px, int fb)
{
    const int64_t s = (int64_t)1 << fb, mask = s - 1, half = (int64_t)1 << (2 * fb - 1);
    const int64_t fy = py & mask, fx = px & mask; /* two's complement: floor remainder */
    const int64_t y0 = (py - fy) >> fb, x0 = (px - fx) >> fb; /* exact: multiples of 2^fb */
    const int64_t ya = y0 < 0 ? 0 : y0 > h - 1 ? h - 1 : y0;
    const int64_t yb = y0 + 1 < 0 ? 0 : y0 + 1 > h - 1 ? h - 1 : y0 + 1;
    const int64_t xa = x0 < 0 ? 0 : x0 > w - 1 ? w - 1 : x0;
    const int64_t xb = x0 + 1 < 0 ? 0 : x0 + 1 > w - 1 ? w - 1 : x0 + 1;
    const int64_t top = ref[ya * w + xa] * (s - fx) + ref[ya * w + xb] * fx;
    const int64_t bot = ref[yb * w + xa] * (s - fx) + ref[yb * w + xb] * fx;
    return (int32_t)((top * (s - fy) + bot * fy + half) >> (2 * fb));
}

/* REQUIRES: 0 <= rows[i] < nby * block, 0 <= cols[j] < nbx * block, 1 <= fb <= 8; colv: nc
 * scratch entries (each column's vector offset within a row of mv) */
static void bilinear_run(const int32_t *ref, Py_ssize_t h, Py_ssize_t w, const int32_t *mv,
                         Py_ssize_t nbx, Py_ssize_t block, int fb, Py_ssize_t up,
                         const int32_t *rows, Py_ssize_t nr, const int32_t *cols, Py_ssize_t nc,
                         int32_t *out, int32_t *colv)
{
    const int64_t s = (int64_t)1 << fb, mask = s - 1, half = (int64_t)1 << (2 * fb - 1);
    const int64_t scale = (int64_t)up << fb;
    for (Py_ssize_t j = 0; j < nc; j++)
        colv[j] = (int32_t)(cols[j] / block) * 2;
    for (Py_ssize_t i = 0; i < nr; i++) {
        const int64_t y = rows[i];
        const int32_t *vrow = mv + (y / block) * nbx * 2;
        int32_t *o = out + i * nc;
        for (Py_ssize_t j = 0; j < nc;) {
            /* a run of consecutive columns in one block: one vector, so the fractions and the
             * rows are fixed and x0 steps by ``up``; inside the plane, no clamping */
            Py_ssize_t k = j + 1;
            while (k < nc && colv[k] == colv[j] && cols[k] == cols[k - 1] + 1)
                k++;
            const int32_t *v = vrow + colv[j];
            const int64_t py = y * scale + v[0], px = cols[j] * scale + v[1];
            const int64_t fy = py & mask, fx = px & mask;
            const int64_t y0 = (py - fy) >> fb, x0 = (px - fx) >> fb;
            if (x0 >= 0 && x0 + up * (int64_t)(k - 1 - j) + 1 <= w - 1) {
                const int64_t ya = y0 < 0 ? 0 : y0 > h - 1 ? h - 1 : y0;
                const int64_t yb = y0 + 1 < 0 ? 0 : y0 + 1 > h - 1 ? h - 1 : y0 + 1;
                const int32_t *pa = ref + ya * w + x0, *pb = ref + yb * w + x0;
                const int64_t wx = s - fx, wy = s - fy;
                for (; j < k; j++, pa += up, pb += up) {
                    const int64_t top = pa[0] * wx + pa[1] * fx;
                    const int64_t bot = pb[0] * wx + pb[1] * fx;
                    o[j] = (int32_t)((top * wy + bot * fy + half) >> (2 * fb));
                }
            } else {
                for (; j < k; j++)
                    o[j] = bilinear_sample(ref, h, w, y * scale + v[0], cols[j] * scale + v[1],
                                           fb);
            }
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
    Py_buffer b[5];
    const BufSpec spec[5] = {{oref, 0, 2, "i", "ref"},   {omv, 0, 3, "i", "mv"},
                             {orows, 0, 1, "i", "rows"}, {ocols, 0, 1, "i", "cols"},
                             {oo, 1, 2, "i", "out"}};
    if (get_all(spec, b, 5) < 0)
        return NULL;
    Py_buffer ref = b[0], mv = b[1], rows = b[2], cols = b[3], out = b[4];
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
    int32_t *colv = NULL;
    if (ok) {
        colv = malloc(sizeof(int32_t) * (size_t)(nc > 0 ? nc : 1));
        if (!colv) {
            ok = 0;
            PyErr_NoMemory();
        }
    }
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        bilinear_run(ref.buf, ref.shape[0], ref.shape[1], mv.buf, nbx, block, (int)fb, up,
                     rows.buf, nr, cols.buf, nc, out.buf, colv);
        Py_END_ALLOW_THREADS
    }
    free(colv);
    release_all(b, 5);
    if (!ok) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "bilinear: shapes or vectors do not fit");
        return NULL;
    }
    Py_RETURN_NONE;
}


/* the 8-tap filter of each quarter-pel phase (taps at -3 .. +4), 1/64 */
static const int32_t QPEL8_TAPS[4][8] = {
    {0, 0, 0, 64, 0, 0, 0, 0},
    {-1, 4, -10, 58, 17, -5, 1, 0},
    {-1, 4, -11, 40, 40, -11, 4, -1},
    {0, 1, -5, 17, 58, -10, 4, -1},
};

/* REQUIRES: h, w >= 1; tmp: (h + 7) x 4w + (w + 7) + 4w scratch (the rows pass over rows
 * -3 .. h + 3, a padded row, an accumulator row) */
static void qpel8_run(const int32_t *ref, Py_ssize_t h, Py_ssize_t w, int32_t *out, int32_t *tmp)
{
    const Py_ssize_t w4 = 4 * w;
    int32_t *pad = tmp + (h + 7) * w4, *acc = pad + (w + 7);
    for (Py_ssize_t r = 0; r < h + 7; r++) {
        Py_ssize_t y = r - 3;
        y = y < 0 ? 0 : y > h - 1 ? h - 1 : y;
        const int32_t *row = ref + y * w;
        for (Py_ssize_t x = 0; x < w + 7; x++) {
            Py_ssize_t xx = x - 3;
            pad[x] = row[xx < 0 ? 0 : xx > w - 1 ? w - 1 : xx];
        }
        int32_t *t = tmp + r * w4;
        for (Py_ssize_t x = 0; x < w; x++) {
            const int32_t *p = pad + x;
            t[4 * x] = 64 * p[3];
            for (int f = 1; f < 4; f++) {
                const int32_t *c = QPEL8_TAPS[f];
                t[4 * x + f] = c[0] * p[0] + c[1] * p[1] + c[2] * p[2] + c[3] * p[3] +
                               c[4] * p[4] + c[5] * p[5] + c[6] * p[6] + c[7] * p[7];
            }
        }
    }
    for (Py_ssize_t y = 0; y < h; y++) {
        for (int f = 0; f < 4; f++) {
            const int32_t *c = QPEL8_TAPS[f];
            memset(acc, 0, sizeof(int32_t) * (size_t)w4);
            for (int k = 0; k < 8; k++) {
                if (!c[k])
                    continue;
                const int32_t ck = c[k], *t = tmp + (y + k) * w4;
                for (Py_ssize_t x = 0; x < w4; x++)
                    acc[x] += ck * t[x];
            }
            int32_t *o = out + (4 * y + f) * w4;
            for (Py_ssize_t x = 0; x < w4; x++) {
                const int32_t v = (acc[x] + 2048) >> 12;
                o[x] = v < 0 ? 0 : v > 255 ? 255 : v;
            }
        }
    }
}

static PyObject *py_qpel8(PyObject *mod, PyObject *args)
{
    PyObject *oref, *oo;
    if (!PyArg_ParseTuple(args, "OO:qpel8", &oref, &oo))
        return NULL;
    Py_buffer b[2];
    const BufSpec spec[2] = {{oref, 0, 2, "i", "ref"}, {oo, 1, 2, "i", "out"}};
    if (get_all(spec, b, 2) < 0)
        return NULL;
    Py_ssize_t h = b[0].shape[0], w = b[0].shape[1];
    int ok = h > 0 && w > 0 && b[1].shape[0] == 4 * h && b[1].shape[1] == 4 * w;
    const int32_t *r = b[0].buf;
    for (Py_ssize_t k = 0; ok && k < h * w; k++)
        ok = r[k] >= 0 && r[k] <= 255;
    int32_t *tmp = NULL;
    if (ok) {
        tmp = malloc(sizeof(int32_t) * ((size_t)(h + 8) * (size_t)(4 * w) + (size_t)w + 7));
        if (!tmp) {
            ok = 0;
            PyErr_NoMemory();
        }
    }
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        qpel8_run(b[0].buf, h, w, b[1].buf, tmp);
        Py_END_ALLOW_THREADS
    }
    free(tmp);
    release_all(b, 2);
    if (!ok) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "qpel8: shapes do not fit or samples not 8-bit");
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ intra row (encoder) */

#define ITB 8
#define INC 64
#define IMODES 10
#define IOFF 14
#define IELEN (IOFF + 19)

/* numpy's float64 sum of 64 contiguous values (8 interleaved partial sums, then a tree):
 * the same order, so the same rounding */
static double sum64(const double *v)
{
    double r[8];
    for (int j = 0; j < 8; j++)
        r[j] = v[j];
    for (int i = 8; i < INC; i += 8)
        for (int j = 0; j < 8; j++)
            r[j] += v[i + j];
    return ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
}

static int intra_available(Py_ssize_t y, Py_ssize_t x, int m)
{
    if (m == 0)
        return 1;
    if (m == 1 || m == 4 || m == 8)
        return y > 0;
    if (m == 2 || m == 9)
        return x > 0;
    return y > 0 && x > 0;
}

/* video_intra.edges + predict_modes for one block and one mode */
static void intra_edges(const int32_t *rec, Py_ssize_t w, Py_ssize_t y, Py_ssize_t x,
                        int64_t *e)
{
    for (int k = 0; k < IELEN; k++)
        e[k] = 0;
    if (x > 0) {
        for (int j = 0; j < ITB; j++)
            e[IOFF - 1 - j] = rec[(y + j) * w + x - 1];
        for (int k = 0; k < IOFF - ITB; k++)
            e[k] = rec[(y + ITB - 1) * w + x - 1];
    }
    if (y > 0) {
        const int32_t *above = rec + (y - 1) * w;
        for (int j = 0; j < ITB; j++)
            e[IOFF + 1 + j] = above[x + j];
        for (int j = 0; j < ITB; j++)
            e[IOFF + 1 + ITB + j] = x + 2 * ITB <= w ? above[x + ITB + j] : above[x + ITB - 1];
        for (int k = IOFF + 1 + 2 * ITB; k < IELEN; k++)
            e[k] = e[IOFF + 2 * ITB];
        if (x > 0)
            e[IOFF] = above[x - 1];
    }
}

static void intra_predict(const int64_t *e, Py_ssize_t y, Py_ssize_t x, int m,
                          const int32_t *tap_idx, const int32_t *tap_w, int64_t *out)
{
    if (m == 0) {
        int64_t s = 0, n = 0;
        if (y > 0) {
            for (int j = 0; j < ITB; j++)
                s += e[IOFF + 1 + j];
            n += ITB;
        }
        if (x > 0) {
            for (int j = 0; j < ITB; j++)
                s += e[IOFF - ITB + j];
            n += ITB;
        }
        int64_t v = n ? (s + n / 2) / n : 128;
        for (int p = 0; p < INC; p++)
            out[p] = v;
    } else if (m == 3) {
        const int64_t right0 = e[IOFF + 1 + ITB], bottom = e[IOFF - ITB];
        for (int r = 0; r < ITB; r++)
            for (int i = 0; i < ITB; i++) {
                int64_t hor = (ITB - 1 - i) * e[IOFF - 1 - r] + (i + 1) * right0;
                int64_t ver = (ITB - 1 - r) * e[IOFF + 1 + i] + (r + 1) * bottom;
                out[r * ITB + i] = (hor + ver + ITB) >> 4;
            }
    } else {
        const int32_t *ix = tap_idx + m * 3 * INC, *wt = tap_w + m * 3 * INC;
        for (int p = 0; p < INC; p++)
            out[p] = (wt[p] * e[ix[p]] + wt[INC + p] * e[ix[INC + p]] +
                      wt[2 * INC + p] * e[ix[2 * INC + p]] + 2) >> 2;
    }
}

/* video_intra.encode_plane's loop over one row of blocks (see its docstring); rec (h, w) is
 * read above and left and written for the row. Float decisions in numpy's order: the
 * residual's coefficients are exact integers x 2^-basis_bits, divided once by d. */
static int intra_row_run(const int32_t *src, int32_t *rec, Py_ssize_t h, Py_ssize_t w,
                         Py_ssize_t by, const int64_t *basis, int basis_bits, int64_t step,
                         int step_bits, double d, double lam, const double *mode_bits,
                         const double *lbits, Py_ssize_t nl, int64_t q_limit,
                         const int32_t *tap_idx, const int32_t *tap_w, int32_t *modes,
                         int32_t *levels)
{
    const Py_ssize_t nbx = w / ITB, y = by * ITB;
    const double unit = 1.0 / (double)((int64_t)1 << basis_bits);
    const int shift = basis_bits + step_bits;
    int64_t e[IELEN], pred[IMODES][INC], res[INC];
    double a[IMODES][INC], q[IMODES][INC], jsel[INC], sq[INC];
    for (Py_ssize_t bx = 0; bx < nbx; bx++) {
        const Py_ssize_t x = bx * ITB;
        intra_edges(rec, w, y, x, e);
        int best = -1;
        double best_cost = 0;
        for (int m = 0; m < IMODES; m++) {
            if (!intra_available(y, x, m))
                continue;
            intra_predict(e, y, x, m, tap_idx, tap_w, pred[m]);
            for (int p = 0; p < INC; p++)
                res[p] = src[(y + p / ITB) * w + x + p % ITB] - pred[m][p];
            double total_in[INC];
            for (int c = 0; c < INC; c++) {
                int64_t dot = 0;
                for (int p = 0; p < INC; p++)
                    dot += res[p] * basis[p * INC + c];
                double v = ((double)dot * unit) / d;
                a[m][c] = v;
                double av = fabs(v);
                double q0 = floor(av + 0.5), q1 = q0 - 1 > 0 ? q0 - 1 : 0;
                if (q0 >= (double)nl)
                    return -1;
                double t0 = av - q0, t1 = av - q1;
                double l0 = q0 > 0 ? lam * lbits[(Py_ssize_t)q0] : lam * 0.0;
                double l1 = q1 > 0 ? lam * lbits[(Py_ssize_t)q1] : lam * 0.0;
                double j0 = t0 * t0 + l0, j1 = t1 * t1 + l1, j2 = av * av;
                if (j0 <= j1 && j0 <= j2) {
                    q[m][c] = q0;
                    total_in[c] = j0;
                } else if (j1 <= j2) {
                    q[m][c] = q1;
                    total_in[c] = j1;
                } else {
                    q[m][c] = 0;
                    total_in[c] = j2;
                }
                sq[c] = av * av;
            }
            for (int c = 0; c < INC; c++)
                jsel[c] = total_in[c];
            double total = sum64(jsel), empty = sum64(sq), cost = total;
            if (empty <= total) {
                for (int c = 0; c < INC; c++)
                    q[m][c] = 0;
                cost = empty;
            }
            cost = cost + lam * mode_bits[bx * IMODES + m];
            if (best < 0 || cost < best_cost) {
                best = m;
                best_cost = cost;
            }
        }
        modes[bx] = best;
        int32_t *lv = levels + bx * INC;
        for (int c = 0; c < INC; c++) {
            double v = a[best][c], qq = q[best][c];
            lv[c] = (int32_t)(v > 0 ? qq : v < 0 ? -qq : 0);
        }
        for (int p = 0; p < INC; p++) {
            int64_t r = 0;
            for (int c = 0; c < INC; c++) {
                int64_t qc = lv[c] < -q_limit ? -q_limit : lv[c] > q_limit ? q_limit : lv[c];
                r += qc * step * basis[p * INC + c];
            }
            r = (r + ((int64_t)1 << (shift - 1))) >> shift;
            int64_t v = pred[best][p] + r;
            rec[(y + p / ITB) * w + x + p % ITB] = (int32_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    (void)h;
    return 0;
}

static PyObject *py_intra_row(PyObject *mod, PyObject *args)
{
    PyObject *os, *orec, *obasis, *omb, *olb, *oti, *otw, *om, *olv;
    Py_ssize_t by, basis_bits, step, step_bits, q_limit;
    double d, lam;
    if (!PyArg_ParseTuple(args, "OOnOnnnddOOnOOOO:intra_row", &os, &orec, &by, &obasis,
                          &basis_bits, &step, &step_bits, &d, &lam, &omb, &olb, &q_limit, &oti,
                          &otw, &om, &olv))
        return NULL;
    Py_buffer b[9];
    const BufSpec spec[9] = {
        {os, 0, 2, "i", "src"},         {orec, 1, 2, "i", "rec"},     {obasis, 0, 2, "q", "basis"},
        {omb, 0, 2, "d", "mode_bits"},  {olb, 0, 1, "d", "level_bits"}, {oti, 0, 3, "i", "tap_idx"},
        {otw, 0, 3, "i", "tap_w"},      {om, 1, 1, "i", "modes"},     {olv, 1, 2, "i", "levels"}};
    if (get_all(spec, b, 9) < 0)
        return NULL;
    int ok = 1;
    if (ok) {
        Py_ssize_t h = b[0].shape[0], w = b[0].shape[1], nbx = w / ITB;
        ok = h % ITB == 0 && w % ITB == 0 && h > 0 && w > 0 && b[1].shape[0] == h &&
             b[1].shape[1] == w && by >= 0 && by < h / ITB && b[2].shape[0] == INC &&
             b[2].shape[1] == INC && b[3].shape[0] == nbx && b[3].shape[1] == IMODES &&
             b[4].shape[0] > 1 && b[5].shape[0] == IMODES && b[5].shape[1] == 3 &&
             b[5].shape[2] == INC && b[6].shape[0] == IMODES && b[6].shape[1] == 3 &&
             b[6].shape[2] == INC && b[7].shape[0] == nbx && b[8].shape[0] == nbx &&
             b[8].shape[1] == INC && basis_bits >= 1 && basis_bits <= 20 && step_bits >= 0 &&
             step_bits <= 20 && step > 0 && step < ((Py_ssize_t)1 << 20) && q_limit > 0 &&
             q_limit <= ((Py_ssize_t)1 << 20) && d > 0;
        const int32_t *ti = b[5].buf;
        for (Py_ssize_t k = 0; ok && k < IMODES * 3 * INC; k++)
            ok = ti[k] >= 0 && ti[k] < IELEN;
        const int64_t *bs = b[2].buf;
        for (Py_ssize_t k = 0; ok && k < INC * INC; k++)
            ok = bs[k] > -(1 << 20) && bs[k] < (1 << 20);
        if (ok) {
            int rc;
            Py_BEGIN_ALLOW_THREADS
            rc = intra_row_run(b[0].buf, b[1].buf, h, w, by, b[2].buf, (int)basis_bits, step,
                               (int)step_bits, d, lam, b[3].buf, b[4].buf, b[4].shape[0],
                               q_limit, b[5].buf, b[6].buf, b[7].buf, b[8].buf);
            Py_END_ALLOW_THREADS
            ok = rc == 0;
        }
        if (!ok)
            PyErr_SetString(PyExc_ValueError, "intra_row: shapes or values do not fit");
    }
    release_all(b, 9);
    if (!ok)
        return NULL;
    Py_RETURN_NONE;
}


/* video_intra.decode_plane: rec (nby*8, nbx*8) from the blocks' modes and residuals (the
 * dequantised plane, same size); -1 where a mode's edges are absent */
static int intra_decode_run(const int32_t *modes, const int32_t *res, int32_t *rec,
                            Py_ssize_t nby, Py_ssize_t nbx, const int32_t *tap_idx,
                            const int32_t *tap_w)
{
    const Py_ssize_t w = nbx * ITB;
    int64_t e[IELEN], pred[INC];
    for (Py_ssize_t by = 0; by < nby; by++)
        for (Py_ssize_t bx = 0; bx < nbx; bx++) {
            const Py_ssize_t y = by * ITB, x = bx * ITB;
            const int m = modes[by * nbx + bx];
            if (m < 0 || m >= IMODES || !intra_available(y, x, m))
                return -1;
            intra_edges(rec, w, y, x, e);
            intra_predict(e, y, x, m, tap_idx, tap_w, pred);
            for (int p = 0; p < INC; p++) {
                const Py_ssize_t k = (y + p / ITB) * w + x + p % ITB;
                const int64_t v = pred[p] + res[k];
                rec[k] = (int32_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    return 0;
}

static PyObject *py_intra_decode(PyObject *mod, PyObject *args)
{
    PyObject *om, *ores, *oti, *otw, *orec;
    if (!PyArg_ParseTuple(args, "OOOOO:intra_decode", &om, &ores, &oti, &otw, &orec))
        return NULL;
    Py_buffer b[5];
    const BufSpec spec[5] = {{om, 0, 2, "i", "modes"},   {ores, 0, 2, "i", "res"},
                             {oti, 0, 3, "i", "tap_idx"}, {otw, 0, 3, "i", "tap_w"},
                             {orec, 1, 2, "i", "rec"}};
    if (get_all(spec, b, 5) < 0)
        return NULL;
    int ok = 1, bad_mode = 0;
    if (ok) {
        Py_ssize_t nby = b[0].shape[0], nbx = b[0].shape[1];
        ok = nby > 0 && nbx > 0 && b[1].shape[0] == nby * ITB && b[1].shape[1] == nbx * ITB &&
             b[4].shape[0] == nby * ITB && b[4].shape[1] == nbx * ITB && b[2].shape[0] == IMODES &&
             b[2].shape[1] == 3 && b[2].shape[2] == INC && b[3].shape[0] == IMODES &&
             b[3].shape[1] == 3 && b[3].shape[2] == INC;
        const int32_t *ti = b[2].buf;
        for (Py_ssize_t k = 0; ok && k < IMODES * 3 * INC; k++)
            ok = ti[k] >= 0 && ti[k] < IELEN;
        const int32_t *tw = b[3].buf;
        for (Py_ssize_t k = 0; ok && k < IMODES * 3 * INC; k++)
            ok = tw[k] >= -64 && tw[k] <= 64;
        if (ok) {
            int rc;
            Py_BEGIN_ALLOW_THREADS
            rc = intra_decode_run(b[0].buf, b[1].buf, b[4].buf, nby, nbx, b[2].buf, b[3].buf);
            Py_END_ALLOW_THREADS
            bad_mode = rc != 0;
        }
        if (!ok)
            PyErr_SetString(PyExc_ValueError, "intra_decode: shapes or values do not fit");
        else if (bad_mode)
            PyErr_SetString(PyExc_ValueError, "intra mode without its edges in the stream");
    }
    release_all(b, 5);
    if (!ok || bad_mode)
        return NULL;
    Py_RETURN_NONE;
}


/* ------------------------------------------------------------ counts -> quantised cdf */

static const int64_t *cdf_sort_q; /* the comparator's keys (qsort has no context argument) */

static int cdf_order_cmp(const void *a, const void *b)
{
    const int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (cdf_sort_q[i] != cdf_sort_q[j])
        return cdf_sort_q[i] > cdf_sort_q[j] ? -1 : 1; /* larger first */
    return i < j ? -1 : (i > j); /* ties: lower index first (a stable sort's order) */
}

/* entropy.cdf.counts_to_quantized_cdf, integer for integer (see its docstring and _fit_counts):
 * returns 0, or -1 where the counts cannot fit the total */
static int counts_cdf_run(const int64_t *counts, Py_ssize_t k, int precision, int32_t *out,
                          int64_t *q, int32_t *order)
{
    const int64_t total = (int64_t)1 << precision, safe = (int64_t)1 << 62;
    int64_t limit = safe >> precision;
    if (safe / k < limit)
        limit = safe / k;
    int64_t shift = 0;
    for (;;) {
        int64_t mx = 0;
        for (Py_ssize_t i = 0; i < k; i++)
            mx = (counts[i] >> shift) > mx ? (counts[i] >> shift) : mx;
        if (mx < limit)
            break;
        shift++;
    }
    int64_t mass = 0;
    for (Py_ssize_t i = 0; i < k; i++)
        mass += counts[i] >> shift;
    for (Py_ssize_t i = 0; i < k; i++) {
        if (mass == 0) {
            q[i] = 1;
        } else {
            int64_t v = ((counts[i] >> shift) * total + mass / 2) / mass;
            q[i] = v > 1 ? v : 1;
        }
    }
    int64_t sum = 0;
    for (Py_ssize_t i = 0; i < k; i++)
        sum += q[i];
    int64_t excess = sum - total;
    if (excess > 0) {
        int64_t spare = 0;
        for (Py_ssize_t i = 0; i < k; i++)
            spare += q[i] - 1;
        if (spare < 1)
            spare = 1;
        sum = 0;
        for (Py_ssize_t i = 0; i < k; i++) {
            q[i] -= ((q[i] - 1) * excess) / spare;
            sum += q[i];
        }
        excess = sum - total;
    }
    for (Py_ssize_t i = 0; i < k; i++)
        order[i] = (int32_t)i;
    cdf_sort_q = q;
    qsort(order, (size_t)k, sizeof(int32_t), cdf_order_cmp);
    while (excess > 0) {
        int64_t moved = 0;
        for (Py_ssize_t t = 0; t < k && moved < excess; t++)
            if (q[order[t]] > 1) {
                q[order[t]]--;
                moved++;
            }
        if (moved == 0)
            return -1;
        excess -= moved;
    }
    if (excess < 0) {
        int64_t rounds = -excess / k, rest = -excess % k;
        for (Py_ssize_t i = 0; i < k; i++)
            q[i] += rounds;
        for (int64_t t = 0; t < rest; t++)
            q[order[t]]++;
    }
    int64_t c = 0;
    out[0] = 0;
    for (Py_ssize_t i = 0; i < k; i++) {
        c += q[i];
        out[i + 1] = (int32_t)c;
    }
    return 0;
}

static PyObject *py_counts_cdf(PyObject *mod, PyObject *args)
{
    PyObject *oc, *oo;
    Py_ssize_t precision;
    if (!PyArg_ParseTuple(args, "OnO:counts_cdf", &oc, &precision, &oo))
        return NULL;
    Py_buffer b[2];
    const BufSpec spec[2] = {{oc, 0, 1, "q", "counts"}, {oo, 1, 1, "i", "out"}};
    if (get_all(spec, b, 2) < 0)
        return NULL;
    Py_buffer c = b[0], o = b[1];
    Py_ssize_t k = c.shape[0];
    int ok = precision >= 1 && precision <= 16 && k >= 2 && k <= ((Py_ssize_t)1 << precision) &&
             o.shape[0] == k + 1;
    const int64_t *cv = c.buf;
    for (Py_ssize_t i = 0; ok && i < k; i++)
        ok = cv[i] >= 0;
    int rc = -1;
    if (ok) {
        int64_t *q = malloc(sizeof(int64_t) * (size_t)k);
        int32_t *order = malloc(sizeof(int32_t) * (size_t)k);
        if (q && order)
            rc = counts_cdf_run(cv, k, (int)precision, o.buf, q, order);
        else
            PyErr_NoMemory();
        free(q);
        free(order);
    }
    release_all(b, 2);
    if (rc != 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "counts_cdf: counts do not make a table");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"bilinear", py_bilinear, METH_VARARGS,
     "bilinear(ref, mv, block, frac_bits, up, rows, cols, out): motion-compensated samples."},
    {"block_sads", py_block_sads, METH_VARARGS,
     "block_sads(cur, ref, r, block, out): block SADs of every full-pel offset within r."},
    {"qpel8", py_qpel8, METH_VARARGS,
     "qpel8(ref, out): the 8-tap quarter-pel plane (4H x 4W) of an 8-bit plane."},
    {"counts_cdf", py_counts_cdf, METH_VARARGS,
     "counts_cdf(counts, precision, out): entropy.cdf.counts_to_quantized_cdf in C."},
    {"intra_decode", py_intra_decode, METH_VARARGS,
     "intra_decode(modes, res, tap_idx, tap_w, rec): the intra decoder's block loop."},
    {"intra_row", py_intra_row, METH_VARARGS,
     "intra_row(src, rec, by, basis, basis_bits, step, step_bits, d, lam, mode_bits, "
     "level_bits, q_limit, tap_idx, tap_w, modes, levels): one row of the intra encoder."},
    {"conv3x3", py_conv3x3, METH_VARARGS,
     "conv3x3(x, w, b, out): exact replicate-padded 3x3 convolution of float64 integers."},
    {"up2", py_up2, METH_VARARGS,
     "up2(x, taps, scale, limit, out): exact x2 upsampling (width, then height) with rescaling."},
    {NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_exact",
    "Exact kernels of the INR decoder (kernels/exact_*.py) and of the video codec.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__exact(void)
{
    return PyModule_Create(&module);
}
