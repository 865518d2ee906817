/* images._tarhead: the fields of a plain tar header, read in C.
 *
 * Why C: a layer walk reads one header per member, and reading it in Python (a regular
 * expression for the numbers, the checksum, three names decoded) took about 3 us of the main
 * thread's time per member: a tenth of an image audit of 30,000 entries. images/tarstream.py
 * falls back to its own reading where this extension was not built, and asks it again of
 * every header this function does not take, so both give the same answers; the property
 * tests (tests/properties/test_tarstream.py) hold them to each other and to tarfile.
 *
 *   plain_fields(block) -> (name, linkname, type, mode, uid, gid, size, mtime) | None
 *
 * A block is taken when it is the common case that tarfile reads one way only: 512 bytes, a
 * type of regular file, link, symlink, device, directory or FIFO, every number written as
 * tar writers write it (zero-padded octal digits, then a NUL or a space; the checksum of
 * six digits with two such bytes or seven with one; device numbers the same or all NULs),
 * and an unsigned checksum that adds up. Names are decoded as tarfile decodes them (UTF-8,
 * surrogateescape), with the prefix joined where Go's archive/tar (Docker's) reads one and
 * a directory's slashes stripped as tarfile strips them. Anything else is None: Python
 * reads it. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#define BLOCK 512

static int separator(unsigned char c) { return c == 0 || c == ' '; }

/* `digits` octal digits from `field` into *value; 0 when one is not an octal digit. */
static int octal(const unsigned char *field, int digits, long long *value) {
    long long number = 0;
    for (int i = 0; i < digits; i++) {
        if (field[i] < '0' || field[i] > '7')
            return 0;
        number = number * 8 + (field[i] - '0');
    }
    *value = number;
    return 1;
}

/* A number of `digits` octal digits and one separator, as tarstream's _WRITTEN reads it. */
static int written(const unsigned char *field, int digits, long long *value) {
    return octal(field, digits, value) && separator(field[digits]);
}

/* The checksum field (8 bytes): six digits and two separators, or seven and one. */
static int written_checksum(const unsigned char *field, long long *value) {
    if (octal(field, 7, value) && separator(field[7]))
        return 1;
    return octal(field, 6, value) && separator(field[6]) && separator(field[7]);
}

/* A device number field (8 bytes): seven digits and a separator, or eight NULs. */
static int no_device(const unsigned char *field) {
    long long ignored;
    static const unsigned char nuls[8] = {0};
    return written(field, 7, &ignored) || memcmp(field, nuls, 8) == 0;
}

/* The length of a name field: up to its first NUL. */
static Py_ssize_t field_length(const unsigned char *field, Py_ssize_t width) {
    const unsigned char *nul = memchr(field, 0, (size_t)width);
    return nul == NULL ? width : nul - field;
}

static Py_ssize_t without_trailing_slashes(const char *text, Py_ssize_t length) {
    while (length > 0 && text[length - 1] == '/')
        length--;
    return length;
}

static PyObject *decoded(const char *text, Py_ssize_t length) {
    return PyUnicode_DecodeUTF8(text, length, "surrogateescape");
}

static PyObject *fields_of(const unsigned char *block) {
    unsigned char type = block[156];
    if (!(type == 0 || (type >= '0' && type <= '7')))
        return NULL;
    long long mode, uid, gid, size, mtime, checksum;
    if (!(written(block + 100, 7, &mode) && written(block + 108, 7, &uid) && written(block + 116, 7, &gid) &&
          written(block + 124, 11, &size) && written(block + 136, 11, &mtime) &&
          written_checksum(block + 148, &checksum) && no_device(block + 329) && no_device(block + 337)))
        return NULL;
    long long sum = 256; /* the checksum field counts as eight spaces */
    for (int i = 0; i < BLOCK; i++)
        sum += (i >= 148 && i < 156) ? 0 : block[i];
    if (sum != checksum)
        return NULL;

    char name[155 + 1 + 100];
    Py_ssize_t name_length = field_length(block, 100);
    memcpy(name, block, (size_t)name_length);
    if (type == 0 && name_length > 0 && name[name_length - 1] == '/')
        type = '5'; /* old V7: a directory is a regular file named with a slash */
    int directory = type == '5';
    /* prefix/name, where Go's archive/tar (Docker's) reads a prefix: a POSIX header (magic
     * "ustar\0"), 155 bytes, or 131 in a star header ("tar\0" at 508). A directory's slashes
     * after the name go below, all of them. */
    int posix = memcmp(block + 257, "ustar\0", 6) == 0;
    Py_ssize_t prefix_width = memcmp(block + 508, "tar\0", 4) == 0 ? 131 : 155;
    if (posix && block[345]) {
        Py_ssize_t prefix_length = field_length(block + 345, prefix_width);
        memmove(name + prefix_length + 1, name, (size_t)name_length);
        memcpy(name, block + 345, (size_t)prefix_length);
        name[prefix_length] = '/';
        name_length += prefix_length + 1;
    }
    if (directory)
        name_length = without_trailing_slashes(name, name_length);
    Py_ssize_t link_length = field_length(block + 157, 100);
    char kind = (char)type;
    return Py_BuildValue("(NNy#LLLLL)", decoded(name, name_length), decoded((const char *)block + 157, link_length),
                         &kind, (Py_ssize_t)1, mode, uid, gid, size, mtime);
}

static PyObject *plain_fields(PyObject *self, PyObject *argument) {
    (void)self;
    Py_buffer view;
    if (PyObject_GetBuffer(argument, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *fields = view.len == BLOCK ? fields_of((const unsigned char *)view.buf) : NULL;
    PyBuffer_Release(&view);
    if (fields == NULL && !PyErr_Occurred())
        Py_RETURN_NONE;
    return fields;
}

static PyMethodDef methods[] = {
    {"plain_fields", plain_fields, METH_O,
     "plain_fields(block) -> (name, linkname, type, mode, uid, gid, size, mtime) | None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef definition = {PyModuleDef_HEAD_INIT, .m_name = "_tarhead", .m_size = 0, .m_methods = methods};

PyMODINIT_FUNC PyInit__tarhead(void) { return PyModule_Create(&definition); }
