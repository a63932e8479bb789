/* Sequential reconstruction of predicted integer vertex positions (the mesh decoder's loop).
 *
 *   reconstruct(residuals, starts, triples, refs, top, out)
 *
 * Vertices are rebuilt in order w = 0 .. V-1 (3 int32 coordinates each). Vertex w has
 * starts[w+1] - starts[w] parallelograms (a, b, o) in `triples`, all indices < w; with n >= 1 of
 * them the prediction is
 *
 *     pred = floor((2 * sum(p[a] + p[b] - p[o]) + n) / (2 n))        (rounded mean, per axis)
 *
 * otherwise pred = p[refs[w]] (refs[w] < w), or 0 when refs[w] == -1. The prediction is clamped
 * to 0..top and out[w] = pred + residual[w]. The NumPy side (codecs/mesh_traversal.py) computes the
 * same predictions from the encoder's positions, so residuals round-trip exactly. Indexes are
 * checked: a reference to a vertex not yet rebuilt raises ValueError.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

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

static inline int64_t floor_div(int64_t a, int64_t b) /* b > 0 */
{
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

static int run(const int32_t *res, const int32_t *starts, const int32_t *tri, Py_ssize_t ntri,
               const int32_t *refs, int64_t top, int32_t *out, Py_ssize_t nv)
{
    if (starts[0] != 0)
        return -1;
    for (Py_ssize_t w = 0; w < nv; w++) {
        int32_t s = starts[w], e = starts[w + 1];
        if (e < s || e > ntri)
            return -1;
        for (int k = 0; k < 3; k++) {
            int64_t pred;
            if (e > s) {
                int64_t sum = 0, n = e - s;
                for (int32_t t = s; t < e; t++) {
                    int32_t a = tri[3 * t], b = tri[3 * t + 1], o = tri[3 * t + 2];
                    if (a < 0 || b < 0 || o < 0 || a >= w || b >= w || o >= w)
                        return -1;
                    sum += (int64_t)out[3 * a + k] + out[3 * b + k] - out[3 * o + k];
                }
                pred = floor_div(2 * sum + n, 2 * n);
            } else if (refs[w] >= 0) {
                if (refs[w] >= w)
                    return -1;
                pred = out[3 * (Py_ssize_t)refs[w] + k];
            } else {
                pred = 0;
            }
            pred = pred < 0 ? 0 : (pred > top ? top : pred);
            int64_t v = pred + res[3 * w + k];
            if (v < INT32_MIN || v > INT32_MAX)
                return -1;
            out[3 * w + k] = (int32_t)v;
        }
    }
    return 0;
}

static PyObject *reconstruct(PyObject *mod, PyObject *args)
{
    PyObject *ores, *ost, *otri, *oref, *oout;
    long long top;
    if (!PyArg_ParseTuple(args, "OOOOLO:reconstruct", &ores, &ost, &otri, &oref, &top, &oout))
        return NULL;
    Py_buffer v[5];
    int got = 0, status = -1;
    PyObject *objs[5] = {ores, ost, otri, oref, oout};
    const char *names[5] = {"residuals", "starts", "triples", "refs", "out"};
    for (; got < 5; got++)
        if (get_i32(objs[got], &v[got], got == 4, names[got]) < 0)
            goto done;
    Py_ssize_t nv = v[3].len / 4;
    if (v[0].len != 12 * nv || v[4].len != 12 * nv || v[1].len != 4 * (nv + 1) ||
        v[2].len % 12) {
        PyErr_SetString(PyExc_ValueError, "meshpred: inconsistent array sizes");
        goto done;
    }
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = run(v[0].buf, v[1].buf, v[2].buf, v[2].len / 12, v[3].buf, top, v[4].buf, nv);
    Py_END_ALLOW_THREADS
    if (st < 0) {
        PyErr_SetString(PyExc_ValueError, "meshpred: a prediction refers to a later vertex");
        goto done;
    }
    status = 0;
done:
    for (int i = 0; i < got; i++)
        PyBuffer_Release(&v[i]);
    if (status < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"reconstruct", reconstruct, METH_VARARGS,
     "reconstruct(residuals, starts, triples, refs, top, out): rebuild predicted positions."},
    {NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_meshpred", "Mesh position prediction: the decoder's sequential loop.",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__meshpred(void) { return PyModule_Create(&module); }
