/* Buffer arguments shared by the kernel modules (_exact.c, _intnet.c): one C-contiguous
 * n-d buffer of a given item type, checked in one place. Header-only (each module is its own
 * shared library). Needs Python.h and string.h first. */
#ifndef NEURALCODEC_BUFFERS_H
#define NEURALCODEC_BUFFERS_H

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
        const char *type = strcmp(fmt, "d") == 0   ? "float64"
                           : strcmp(fmt, "h") == 0 ? "int16"
                           : strcmp(fmt, "i") == 0 ? "int32"
                                                   : "int64";
        PyErr_Format(PyExc_TypeError, "%s must be a contiguous %d-d %s array", name, ndim, type);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

#endif
