"""Only the C extension is declared here; everything else is in pyproject.toml.

pysbx.sandbox._syscall is optional: where it cannot be compiled (no compiler or Python headers),
the install goes on and sandbox/linux.py makes the same calls through ctypes."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("pysbx.sandbox._syscall", ["pysbx/sandbox/_syscall.c"], optional=True)])
