"""The ctypes stand-in for the C extension sandbox._syscall, where it was not built: the
same two functions with the same answers (tests/sandbox/test_syscall.py holds them to it)."""

from __future__ import annotations

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_MASK = (1 << (8 * ctypes.sizeof(ctypes.c_ulong))) - 1


def _argument(value: int | bytes | bytearray | None) -> object:
    if value is None:
        return ctypes.c_ulong(0)
    if isinstance(value, int):
        return ctypes.c_ulong(value & _MASK)
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray):
        return (ctypes.c_char * len(value)).from_buffer(value)
    raise TypeError(f"a system call argument must be int, None, bytes or bytearray, not {type(value).__name__}")


def syscall(number: int, *args: int | bytes | bytearray | None) -> int:
    if len(args) > 6:
        raise TypeError("syscall(number, *args) takes a number and up to six arguments")
    result: int = _libc.syscall(ctypes.c_long(number), *map(_argument, args))
    if result == -1:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))
    return result


def address(buffer: bytes | bytearray) -> int:
    if isinstance(buffer, bytes):
        return ctypes.cast(ctypes.c_char_p(buffer), ctypes.c_void_p).value or 0
    if isinstance(buffer, bytearray):
        return ctypes.addressof((ctypes.c_char * len(buffer)).from_buffer(buffer))
    raise TypeError("address() takes bytes or bytearray")
