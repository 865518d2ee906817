/* sandbox._syscall: one raw system call from Python, for the calls the os module lacks
 * (unshare, mount, pivot_root, prctl, capset, seccomp...).
 *
 * Why C: loading ctypes (libffi, ctypes/__init__.py, struct) costs a `pysandbox run` warm
 * start about 2 ms, where this module loads in a fraction of that. sandbox/linux.py falls
 * back to ctypes where this extension was not built, so both give the same answers.
 *
 *   syscall(number, *args) -> int   up to six arguments: int, None (0), bytes (read-only
 *                                   buffer), bytearray (writable buffer); raises OSError
 *                                   with errno when the kernel answers -1
 *   address(buffer) -> int          where a bytes or bytearray object's data lives (for
 *                                   structures that hold pointers, such as sock_fprog);
 *                                   valid while the object is alive and unresized */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>

static int argument(PyObject *value, long *out) {
    if (value == Py_None) {
        *out = 0;
        return 0;
    }
    if (PyLong_Check(value)) {
        unsigned long number = PyLong_AsUnsignedLongMask(value);
        if (number == (unsigned long)-1 && PyErr_Occurred())
            return -1;
        *out = (long)number;
        return 0;
    }
    if (PyBytes_Check(value)) {
        *out = (long)PyBytes_AS_STRING(value);
        return 0;
    }
    if (PyByteArray_Check(value)) {
        *out = (long)PyByteArray_AS_STRING(value);
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "a system call argument must be int, None, bytes or bytearray, not %.100s",
                 Py_TYPE(value)->tp_name);
    return -1;
}

static PyObject *raw_syscall(PyObject *module, PyObject *const *args, Py_ssize_t count) {
    long values[7] = {0};
    if (count < 1 || count > 7) {
        PyErr_SetString(PyExc_TypeError, "syscall(number, *args) takes a number and up to six arguments");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        if (argument(args[i], &values[i]) < 0)
            return NULL;
    }
    long result = syscall(values[0], values[1], values[2], values[3], values[4], values[5], values[6]);
    if (result == -1)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromLong(result);
}

static PyObject *address(PyObject *module, PyObject *value) {
    long where;
    if (!PyBytes_Check(value) && !PyByteArray_Check(value)) {
        PyErr_SetString(PyExc_TypeError, "address() takes bytes or bytearray");
        return NULL;
    }
    argument(value, &where);
    return PyLong_FromUnsignedLong((unsigned long)where);
}

static PyMethodDef methods[] = {
    {"syscall", (PyCFunction)(void (*)(void))raw_syscall, METH_FASTCALL, "syscall(number, *args) -> int"},
    {"address", address, METH_O, "address(buffer) -> int"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef definition = {PyModuleDef_HEAD_INIT, "_syscall", NULL, 0, methods};

PyMODINIT_FUNC PyInit__syscall(void) { return PyModule_Create(&definition); }
