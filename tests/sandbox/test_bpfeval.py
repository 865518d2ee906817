"""sandbox.bpfeval on the programs libseccomp compiles from the project's profiles: the
notifying variant decides exactly as the plain program but for denials, and what the
interpreter predicts for a call is what a real filter in the kernel answers."""

from __future__ import annotations

import ctypes
import errno
import os
import struct

import pytest

from pysbx.policies.seccomp.compile import compile_bpf, syscall_number
from pysbx.policies.seccomp.reader import load_profile
from pysbx.sandbox.bpfeval import (
    INSTRUCTION,
    RET_ALLOW,
    RET_ERRNO,
    RET_USER_NOTIF,
    action_of,
    evaluate,
    instructions,
    notify_variant,
    seccomp_data,
    with_notified_calls,
)
from pysbx.sandbox.seccomp import load_bpf

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003
ARGUMENT_SAMPLES = [(), (0x10000000,), (0x7E020000,), (1, 2, 3), (0xFFFFFFFF,), (0x8,), (16, 3, 0)]


@pytest.fixture(scope="module", params=["default", "strict"])
def plain(request: pytest.FixtureRequest) -> bytes:
    return compile_bpf(load_profile(request.param)).bpf


def test_the_notifying_variant_differs_only_where_the_plain_program_denies(plain: bytes) -> None:
    variant = notify_variant(plain)
    denials = 0
    for arch in (AUDIT_ARCH_X86_64, AUDIT_ARCH_I386, 0x12345678):
        for nr in range(0, 460):
            for args in ARGUMENT_SAMPLES:
                data = seccomp_data(nr, arch, args)
                said, noted = evaluate(plain, data), evaluate(variant, data)
                if action_of(said)[0] == RET_ERRNO:
                    denials += 1
                    assert noted == RET_USER_NOTIF, (arch, nr, args)
                else:
                    assert noted == said, (arch, nr, args)
    assert denials > 100  # the profiles deny hundreds of (call, argument) shapes


def test_the_interpreter_predicts_what_the_kernel_answers(plain: bytes) -> None:
    """A child loads the plain filter and makes calls the profile denies (and getppid, which
    it allows); each errno it sees is the one evaluate() read off the program."""
    calls = {name: syscall_number(name) for name in ("getppid", "keyctl", "mount", "kexec_load", "clone3", "unshare")}
    predicted = {
        name: action_of(
            evaluate(plain, seccomp_data(nr, AUDIT_ARCH_X86_64, (0x10000000,) if name == "unshare" else ()))
        )
        for name, nr in calls.items()
        if nr is not None
    }
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read)
            load_bpf(plain)
            libc = ctypes.CDLL(None, use_errno=True)
            seen = []
            for name, (action, _data) in predicted.items():
                if action != RET_ERRNO and name != "getppid":
                    continue  # only what is denied (or harmless) is called
                arg = 0x10000000 if name == "unshare" else 0
                result = libc.syscall(calls[name], arg, 0, 0, 0, 0)
                seen.append(f"{name}={0 if result >= 0 else ctypes.get_errno()}")
            os.write(write, " ".join(seen).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        answers = dict(item.split("=") for item in pipe.read().decode().split())
    os.waitpid(pid, 0)
    assert (
        answers["getppid"] == "0"
        and action_of(evaluate(plain, seccomp_data(calls["getppid"], AUDIT_ARCH_X86_64)))[0] == RET_ALLOW
    )
    denied = {name: data for name, (action, data) in predicted.items() if action == RET_ERRNO}
    assert {"keyctl", "mount", "kexec_load"} <= set(denied)
    for name, data in denied.items():
        assert answers[name] == str(data), (name, answers[name], data)
    assert denied.get("clone3") in (None, errno.ENOSYS)


@pytest.mark.parametrize(
    ("program", "message"),
    [
        (b"\x06\x00", "not a BPF program"),
        (struct.pack("=HBBI", 0x20, 0, 0, 0), "runs past its end"),  # a load, then nothing
        (struct.pack("=HBBI", 0x20, 0, 0, 64) + struct.pack("=HBBI", 0x06, 0, 0, RET_ALLOW), "outside seccomp_data"),
        (struct.pack("=HBBI", 0x16, 0, 0, 0), "a return of a register"),
    ],
)
def test_a_program_it_cannot_read_is_refused_not_guessed(program: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        if "register" in message:
            notify_variant(program)
        else:
            evaluate(program, seccomp_data(39, AUDIT_ARCH_X86_64))


def ins(code: int, k: int = 0, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


LOAD_NR, LOAD_ARG0 = ins(0x20, 0), ins(0x20, 16)  # ld [0] (nr), ld [16] (args[0], low word)
YES, NO = ins(0x06, RET_ALLOW), ins(0x06, RET_ERRNO | errno.EPERM)


@pytest.mark.parametrize(
    ("program", "nr", "arg", "allowed"),
    [
        (LOAD_NR + ins(0x15, 39, 0, 1) + YES + NO, 39, 0, True),  # jeq
        (LOAD_NR + ins(0x15, 39, 0, 1) + YES + NO, 40, 0, False),
        (LOAD_NR + ins(0x25, 39, 0, 1) + YES + NO, 39, 0, False),  # jgt at equality
        (LOAD_NR + ins(0x25, 39, 0, 1) + YES + NO, 40, 0, True),
        (LOAD_NR + ins(0x35, 39, 0, 1) + YES + NO, 39, 0, True),  # jge at equality
        (LOAD_NR + ins(0x35, 39, 0, 1) + YES + NO, 38, 0, False),
        (LOAD_ARG0 + ins(0x45, 0x8, 0, 1) + YES + NO, 0, 0x18, True),  # jset
        (LOAD_ARG0 + ins(0x45, 0x8, 0, 1) + YES + NO, 0, 0x10, False),
        (LOAD_ARG0 + ins(0x54, 0xF0) + ins(0x15, 0x10, 0, 1) + YES + NO, 0, 0x1F, True),  # and, then jeq
        (
            LOAD_ARG0 + ins(0x02, 3) + ins(0x00, 0) + ins(0x60, 3) + ins(0x15, 7, 0, 1) + YES + NO,
            0,
            7,
            True,
        ),  # st, ld mem
        (LOAD_ARG0 + ins(0x07) + ins(0x00, 5) + ins(0x1D, 0, 0, 1) + YES + NO, 0, 5, True),  # tax, jeq x
        (LOAD_NR + ins(0x05, 1) + YES + NO, 39, 0, False),  # ja over the allow
        (ins(0x00, RET_ALLOW) + ins(0x16), 0, 0, True),  # ld #k, ret a
    ],
)
def test_each_instruction_reads_as_the_kernel_defines_it(program: bytes, nr: int, arg: int, allowed: bool) -> None:
    value = evaluate(program, seccomp_data(nr, AUDIT_ARCH_X86_64, (arg,)))
    assert (value == RET_ALLOW) is allowed


def test_a_prologue_notifies_only_the_calls_it_tests_and_leaves_the_rest_to_the_program() -> None:
    program = b"".join([INSTRUCTION.pack(0x20, 0, 0, 0), INSTRUCTION.pack(0x15, 0, 1, 99),
                        INSTRUCTION.pack(0x06, 0, 0, RET_ERRNO | 1), INSTRUCTION.pack(0x06, 0, 0, RET_ALLOW)])  # fmt: skip
    arch = 0xC000003E
    wrapped = with_notified_calls(program, arch, [(41, 0, 0xFFFFFFFF, 17), (41, 1, 0xF, 3)])
    cases = {
        (41, arch, (17, 1)): RET_USER_NOTIF,  # the first test
        (41, arch, (2, 0x80003)): RET_USER_NOTIF,  # the second, flags masked off
        (41, arch, (2, 1)): RET_ALLOW,  # neither: the program's answer
        (41, 0x40000003, (17, 3)): RET_ALLOW,  # another architecture: the program's answer
        (99, arch, ()): RET_ERRNO | 1,
    }
    for (number, on, args), expected in cases.items():
        assert evaluate(wrapped, seccomp_data(number, on, args)) == expected, (number, on, args)
    assert with_notified_calls(program, arch, []) == program


def test_a_prologue_longer_than_a_short_jump_reaches_the_filter_for_every_call() -> None:
    """Jumps of cBPF's conditional kind reach 255 instructions at most: a prologue of many
    calls (one block each) must still reach the filter from its first block and its last,
    and a call with argument tests falls through to the filter when none matches."""
    program = b"".join([INSTRUCTION.pack(0x20, 0, 0, 0), INSTRUCTION.pack(0x15, 0, 1, 7),
                        INSTRUCTION.pack(0x06, 0, 0, RET_ERRNO | 1), INSTRUCTION.pack(0x06, 0, 0, RET_ALLOW)])  # fmt: skip
    arch = 0xC000003E
    tests = [(number, 0, 0, 0) for number in range(100, 250)]
    tests += [(257, 2, 1, 1), (257, 2, 2, 2), (257, 2, 0o100, 0o100), (257, 2, 0o1000, 0o1000)]
    wrapped = with_notified_calls(program, arch, tests)
    assert len(instructions(wrapped)) > 300
    for number in (100, 175, 249):
        assert evaluate(wrapped, seccomp_data(number, arch)) == RET_USER_NOTIF
    for flags, expected in ((0, RET_ALLOW), (1, RET_USER_NOTIF), (0o2, RET_USER_NOTIF), (0o100, RET_USER_NOTIF),
                            (0o1000, RET_USER_NOTIF), (0o4000, RET_ALLOW)):  # fmt: skip
        assert evaluate(wrapped, seccomp_data(257, arch, (0, 0, flags))) == expected, flags
    assert evaluate(wrapped, seccomp_data(7, arch)) == RET_ERRNO | 1  # the filter's own answer
    assert evaluate(wrapped, seccomp_data(99, arch)) == RET_ALLOW
    assert evaluate(wrapped, seccomp_data(175, 0x40000003)) == RET_ALLOW  # another architecture
