"""Reading a compiled seccomp program without the kernel: what it answers for a system call,
and the same program with every denial turned into a user notification.

The first brick of `--explain` (issue #18): the container loads `notify_variant(plain)`, so
that each call the policy denies stops and is reported to the monitor, which answers with
what `evaluate(plain, data)` says the plain filter would have returned: the errno, exactly,
and never "continue". libseccomp (2.5) emits constant returns only, so a denial is a
`ret #ERRNO|e` instruction and the variant differs from the plain program in those
instructions alone: everywhere else, the two programs take the same paths.

The interpreter covers classic BPF as seccomp admits it (loads of the 64-byte seccomp_data,
the scratch memory, ALU, jumps, returns) and refuses anything else with ValueError, so a
program it cannot read is never guessed at. Standard library only."""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

T = TypeVar("T")

INSTRUCTION = struct.Struct("=HBBI")  # struct sock_filter: u16 code, u8 jt, u8 jf, u32 k
SECCOMP_DATA = struct.Struct("=iIQ6Q")  # nr, arch, instruction_pointer, args[6]: 64 bytes

RET_ACTION_FULL = 0xFFFF0000
RET_DATA = 0x0000FFFF
RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_USER_NOTIF = 0x7FC00000
RET_TRACE = 0x7FF00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000

_CLASS_LD, _CLASS_LDX, _CLASS_ST, _CLASS_STX, _CLASS_ALU, _CLASS_JMP, _CLASS_RET, _CLASS_MISC = range(8)
_MASK32 = 0xFFFFFFFF
_SCRATCH_WORDS = 16
_MAX_STEPS = 1 << 16  # cBPF only jumps forward; a bound all the same, for a damaged program


def instructions(bpf: bytes) -> list[tuple[int, int, int, int]]:
    """(code, jt, jf, k) of each instruction; ValueError for what is not a program."""
    if not bpf or len(bpf) % INSTRUCTION.size:
        raise ValueError(f"not a BPF program: {len(bpf)} bytes")
    return [INSTRUCTION.unpack_from(bpf, offset) for offset in range(0, len(bpf), INSTRUCTION.size)]


def notify_variant(bpf: bytes) -> bytes:
    """The program with each `ret #ERRNO|e` made `ret #USER_NOTIF`: the same decisions,
    except that a denial waits for the monitor's answer instead of failing at once."""
    changed = bytearray()
    for code, jt, jf, k in instructions(bpf):
        if code & 0x07 == _CLASS_RET and code & 0x18 != 0x00:
            raise ValueError("a return of a register, not a constant: the denials cannot be told apart")
        if code & 0x07 == _CLASS_RET and k & RET_ACTION_FULL == RET_ERRNO:
            k = RET_USER_NOTIF
        changed += INSTRUCTION.pack(code, jt, jf, k)
    return bytes(changed)


Test = tuple[int, int, int, int] | tuple[int, int, int, int, int]


def with_notified_calls(bpf: bytes, arch: int, tests: Sequence[Test]) -> bytes:
    """`bpf` behind a prologue that answers the calls of architecture `arch` matching a test
    (number, argument, mask, value: argument & mask == value, so a mask of 0 matches every
    call; and what to return, RET_USER_NOTIF unless a fifth item says) before `bpf` is asked.
    --explain hears calls the filter allows but the kernel refuses without a capability
    (socket(AF_PACKET) without CAP_NET_RAW) or on a read-only mount (sandbox.pathwrites),
    and the monitor lets them go on; and a filter that would bring a listener of its own is
    refused (notify.with_foreign_listeners_refused). The first matching test decides.

    One block per call number, so a call matched by nothing passes one comparison per number;
    the jumps out are `ja` (a 32-bit offset: an 8-bit one cannot reach past 255 instructions)."""
    if not tests:
        return bpf
    code = INSTRUCTION.pack
    by_number: dict[int, list[tuple[int, int, int, int]]] = {}
    for test in tests:
        number, index, mask, value = test[:4]
        by_number.setdefault(number, []).append((index, mask, value, test[4] if len(test) > 4 else RET_USER_NOTIF))
    blocks = [_block(number, checks) for number, checks in by_number.items()]
    length = sum(len(block) for block in blocks)
    prologue = [code(0x20, 0, 0, 4), code(0x15, 1, 0, arch), code(0x05, 0, 0, length + 1), code(0x20, 0, 0, 0)]
    for block in blocks:
        start = len(prologue)
        for offset, instruction in enumerate(block):
            if INSTRUCTION.unpack(instruction)[0] == 0x05:  # ja: to the first instruction of `bpf`
                instruction = code(0x05, 0, 0, 4 + length - (start + offset) - 1)
            prologue.append(instruction)
    return b"".join(prologue) + bpf


def _block(number: int, checks: list[tuple[int, int, int, int]]) -> list[bytes]:
    """jeq number (else over the block); each test (ld the argument's low word, and mask,
    jeq value: to its return); none matched: ja to the filter; then the returns."""
    code = INSTRUCTION.pack
    returns = list(dict.fromkeys(ret for *_, ret in checks))
    body: list[bytes] = []
    for position, (index, mask, value, ret) in enumerate(checks):
        to_return = 3 * (len(checks) - position - 1) + 1 + returns.index(ret)  # the tests left, the ja
        body += [code(0x20, 0, 0, 16 + 8 * index), code(0x54, 0, 0, mask), code(0x15, to_return, 0, value)]
    body.append(code(0x05, 0, 0, 0))  # none matched: to `bpf` (the offset is filled in by the caller)
    body += [code(0x06, 0, 0, ret) for ret in returns]
    return [code(0x15, 0, len(body), number), *body]


def by_number(table: Mapping[str, T], number_of: Callable[[str], int | None]) -> dict[int, T]:
    """A table of calls by name as this machine numbers them (names it lacks left out)."""
    return {number: item for name, item in table.items() if (number := number_of(name)) is not None}


def seccomp_data(nr: int, arch: int, args: tuple[int, ...] = (), ip: int = 0) -> bytes:
    """The 64 bytes the kernel gives a filter (and a notification carries) for one call."""
    padded = (*args, 0, 0, 0, 0, 0, 0)[:6]
    return SECCOMP_DATA.pack(nr, arch, ip, *padded)


def evaluate(bpf: bytes, data: bytes, looked_at: set[int] | None = None) -> int:
    """The 32-bit value the program returns for `data` (a seccomp_data); the offsets of
    seccomp_data it read are added to `looked_at` (arguments_read names them)."""
    return run(instructions(bpf), data, looked_at)


def arguments_read(offsets: set[int]) -> tuple[int, ...]:
    """Which arguments (0 to 5) a program read, by the offsets evaluate saw it load."""
    first = SECCOMP_DATA.size - 6 * 8
    return tuple(sorted({(offset - first) // 8 for offset in offsets if offset >= first}))


def run(program: list[tuple[int, int, int, int]], data: bytes, looked_at: set[int] | None = None) -> int:
    """evaluate, for a program already decoded by `instructions` (a monitor decodes once)."""
    if len(data) != SECCOMP_DATA.size:
        raise ValueError(f"seccomp_data is {SECCOMP_DATA.size} bytes, not {len(data)}")
    a = x = pc = 0
    scratch = [0] * _SCRATCH_WORDS
    for _ in range(_MAX_STEPS):
        if pc >= len(program):
            raise ValueError(f"the program runs past its end at instruction {pc}")
        code, jt, jf, k = program[pc]
        kind = code & 0x07
        pc += 1
        if kind == _CLASS_RET:
            return (a if code & 0x18 == 0x10 else k) & _MASK32
        if kind in (_CLASS_LD, _CLASS_LDX):
            loaded = _load(code, k, data, scratch, x)
            if looked_at is not None and code & 0xE0 == 0x20:
                looked_at.add(k)
            if kind == _CLASS_LD:
                a = loaded
            else:
                x = loaded
        elif kind in (_CLASS_ST, _CLASS_STX):
            scratch[_slot(k)] = a if kind == _CLASS_ST else x
        elif kind == _CLASS_ALU:
            a = _alu(code, a, x if code & 0x08 else k)
        elif kind == _CLASS_JMP:
            pc += _jump(code, jt, jf, k, a, x)
        elif code == 0x07:  # misc: tax
            x = a
        elif code == 0x87:  # misc: txa
            a = x
        else:
            raise ValueError(f"instruction {pc - 1}: code {code:#x} is not seccomp's BPF")
    raise ValueError("the program does not end")


def _load(code: int, k: int, data: bytes, scratch: list[int], x: int) -> int:
    mode, size = code & 0xE0, code & 0x18
    if mode == 0x00:  # imm
        return k & _MASK32
    if mode == 0x60:  # mem
        return scratch[_slot(k)]
    if mode == 0x80:  # len
        return SECCOMP_DATA.size
    if mode == 0x20 and size == 0x00:  # abs, a word: seccomp admits 32-bit aligned loads only
        if k % 4 or k + 4 > SECCOMP_DATA.size:
            raise ValueError(f"a load at offset {k} is outside seccomp_data or not aligned")
        return int.from_bytes(data[k : k + 4], "little")
    raise ValueError(f"load code {code:#x} is not seccomp's BPF")


def _slot(k: int) -> int:
    if k >= _SCRATCH_WORDS:
        raise ValueError(f"scratch memory has {_SCRATCH_WORDS} words, not {k + 1}")
    return k


def _alu(code: int, a: int, operand: int) -> int:
    operation = code & 0xF0
    results = {
        0x00: lambda: a + operand,
        0x10: lambda: a - operand,
        0x20: lambda: a * operand,
        0x40: lambda: a | operand,
        0x50: lambda: a & operand,
        0x60: lambda: a << operand if operand < 32 else 0,
        0x70: lambda: a >> operand if operand < 32 else 0,
        0x80: lambda: -a,
        0xA0: lambda: a ^ operand,
    }
    if operation == 0x30:  # div: the kernel refuses a program dividing by a constant 0
        if operand == 0:
            raise ValueError("division by zero")
        return (a // operand) & _MASK32
    if operation not in results:
        raise ValueError(f"alu code {code:#x} is not seccomp's BPF")
    return results[operation]() & _MASK32


def _jump(code: int, jt: int, jf: int, k: int, a: int, x: int) -> int:
    """How far to skip: `ja` by k, a test by jt or jf."""
    operation = code & 0xF0
    if operation == 0x00:
        return k
    operand = x if code & 0x08 else k
    tests = {0x10: a == operand, 0x20: a > operand, 0x30: a >= operand, 0x40: bool(a & operand)}
    if operation not in tests:
        raise ValueError(f"jump code {code:#x} is not seccomp's BPF")
    return jt if tests[operation] else jf


def action_of(value: int) -> tuple[int, int]:
    """(the action, its data): (RET_ERRNO, 1) for `errno EPERM`."""
    return value & RET_ACTION_FULL, value & RET_DATA
