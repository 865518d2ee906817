"""Only the C extensions are declared here; everything else is in pyproject.toml.

Both are optional: where they cannot be compiled (no compiler or Python headers), the install
goes on. sandbox/linux.py then makes the same calls through ctypes (pysbx.sandbox._syscall),
and images/tarstream.py reads every tar header in Python (pysbx.images._tarhead)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("pysbx.sandbox._syscall", ["pysbx/sandbox/_syscall.c"], optional=True),
        Extension("pysbx.images._tarhead", ["pysbx/images/_tarhead.c"], optional=True),
    ]
)
