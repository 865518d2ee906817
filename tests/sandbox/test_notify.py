"""The monitor's side of `run --explain` (sandbox.notify) against real notifications: a
forked child loads a notifying filter with a listener and hands it over, as the container's
command does. Ids of callers that are gone must not lend another process's memory to the
report, and every answer is the plain filter's errno."""

from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import socket
import struct

import pytest

from pysbx.sandbox import bpfeval, notify
from pysbx.sandbox.linux import address
from pysbx.sandbox.seccomp import load_bpf

GETPGID = {"x86_64": 121, "aarch64": 155}.get(os.uname().machine)
ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}.get(os.uname().machine)
pytestmark = pytest.mark.skipif(GETPGID is None, reason="call numbers known for x86_64 and aarch64 only")


def plain_filter(errno_value: int) -> bytes:
    """getpgid answers `errno_value`; everything else is allowed."""
    code = bpfeval.INSTRUCTION.pack
    return b"".join(
        [
            code(0x20, 0, 0, 0),  # ld [nr]
            code(0x15, 0, 1, GETPGID or 0),  # jeq getpgid
            code(0x06, 0, 0, bpfeval.RET_ERRNO | errno_value),
            code(0x06, 0, 0, bpfeval.RET_ALLOW),
        ]
    )


def start_caller(plain: bytes, calls: int) -> tuple[int, socket.socket]:
    """A child that loads the notifying variant, sends its listener, makes `calls` denied
    calls and exits with the number of them that failed with the plain filter's errno."""
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        ours.close()
        try:
            listener = load_bpf(bpfeval.notify_variant(plain), listener=True)
            socket.send_fds(theirs, [b"listener"], [listener])
            os.close(listener)
            theirs.close()
            expected = bpfeval.action_of(bpfeval.evaluate(plain, bpfeval.seccomp_data(GETPGID or 0, ARCH or 0)))[1]
            matched = 0
            for _ in range(calls):
                try:
                    os.getpgid(0)
                except OSError as error:
                    matched += error.errno == expected
            os._exit(matched)
        finally:
            os._exit(255)
    theirs.close()
    return pid, ours


def test_every_denial_gets_the_plain_filters_errno_and_is_counted() -> None:
    plain = plain_filter(errno.EACCES)
    pid, receiver = start_caller(plain, 200)
    listening = notify.Listening(plain, receiver, {})
    listening.start()
    _, status = os.waitpid(pid, 0)
    heard = listening.finish()
    assert os.waitstatus_to_exitcode(status) == 200  # every call failed with EACCES, none got through
    assert heard.total == 200 and len(heard.denials) == 1
    assert (heard.denials[0].nr, heard.denials[0].errno, heard.denials[0].count) == (GETPGID, errno.EACCES, 200)


def test_a_caller_gone_before_its_answer_leaves_no_memory_of_another_process() -> None:
    """The caller is killed while its call waits; its pid could now be anyone's. Reading
    the strings at the call's pointers from a live process (ours, standing in for a process
    that took the pid) must be thrown away because the notification id is no longer valid."""
    plain = plain_filter(errno.EPERM)
    pid, receiver = start_caller(plain, 1)
    _, fds, _, _ = socket.recv_fds(receiver, 64, 1)
    listener = fds[0]
    try:
        select.select([listener], [], [], 10)
        buffer = bytearray(notify.NOTIF.size)
        fcntl.ioctl(listener, notify.NOTIF_RECV, buffer, True)
        notification_id, caller, _, _ = notify.NOTIF.unpack(buffer)
        assert caller == pid
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        secret = b"another process's secret\0"
        forged = bpfeval.seccomp_data(GETPGID or 0, ARCH or 0, (address(secret),))
        listening = notify.Listening(plain, receiver, {GETPGID or 0: (0,)})
        assert notify._read_strings(os.getpid(), [address(secret), 0, 0, 0, 0, 0], (0,)) == {0: secret[:-1]}
        listening._record(listener, notification_id, os.getpid(), forged, errno.EPERM, (), bpfeval.RET_ERRNO | 1)
        assert listening.heard.denials[0].strings == {}
        with pytest.raises(OSError) as answered:
            fcntl.ioctl(listener, notify.NOTIF_SEND, notify.RESPONSE.pack(notification_id, 0, -errno.EPERM, 0))
        assert answered.value.errno == errno.ENOENT
    finally:
        os.close(listener)
        receiver.close()


def test_a_message_instead_of_a_listener_is_the_reason_nothing_was_heard() -> None:
    ours, theirs = socket.socketpair()
    theirs.sendall(b"the kernel gave no seccomp notification listener (EBUSY)")
    theirs.close()
    listening = notify.Listening(plain_filter(errno.EPERM), ours, {})
    listening.start()
    assert listening.finish().unavailable == "the kernel gave no seccomp notification listener (EBUSY)"


def test_a_descriptor_that_is_not_a_listener_is_refused() -> None:
    """Whatever comes through the socket, only a seccomp listener is served."""
    ours, theirs = socket.socketpair()
    read_end, write_end = os.pipe()
    socket.send_fds(theirs, [b"listener"], [read_end])
    theirs.close()
    listening = notify.Listening(plain_filter(errno.EPERM), ours, {})
    listening.start()
    assert listening.finish().unavailable == "listener"
    for fd in (read_end, write_end):
        os.close(fd)


def test_the_handover_is_refused_when_the_filter_denies_what_it_needs() -> None:
    code = bpfeval.INSTRUCTION.pack
    sendmsg = {"x86_64": 46, "aarch64": 211}[os.uname().machine]
    denies_sendmsg = b"".join(
        [
            code(0x20, 0, 0, 0),
            code(0x15, 0, 1, sendmsg),
            code(0x06, 0, 0, bpfeval.RET_ERRNO | errno.EPERM),
            code(0x06, 0, 0, bpfeval.RET_ALLOW),
        ]
    )
    assert "sendmsg" in notify.listener_blocker(denies_sendmsg)
    assert notify.listener_blocker(plain_filter(errno.EPERM)) == ""


def test_a_string_ending_where_its_mapping_ends_is_read_up_to_it() -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    base = libc.mmap(None, 8192, 3, 0x22, -1, 0)  # PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS
    assert base not in (None, ctypes.c_void_p(-1).value)
    ctypes.memmove(base + 4096 - 5, b"tail!", 5)
    assert libc.munmap(base + 4096, 4096) == 0  # no NUL before the mapping ends
    try:
        assert notify._c_string(os.getpid(), base + 4096 - 5) == b"tail!"
    finally:
        libc.munmap(base, 4096)
    assert struct.calcsize("=QII64s") == notify.NOTIF.size == 80


def test_a_record_survives_json_and_two_runs_add_up() -> None:
    """run -d --explain keeps the record in explain.json and adds each restart's to it."""
    first = notify.Heard()
    kind = notify.Denial(165, ARCH or 0, errno.EPERM, {1: 7}, {0: b"\x1b/x"}, 12, (1, 7, 0, 0, 0, 0))
    first.denials.append(kind)
    first.total, first.limits = 3, {"pids": 2}
    kind.count = 3
    refused = notify.Denial(92, ARCH or 0, errno.EPERM, {}, {0: b"/home/owned"}, 12)  # chown, for a capability
    refused.verdict, refused.needs = 0x7FFF0000, "CAP_CHOWN"
    read_only = notify.Denial(2, ARCH or 0, errno.EROFS, {}, {0: b"/etc/x"}, 12)
    read_only.verdict, read_only.mount = 0x7FFF0000, "/"
    first.denials += [refused, read_only]
    again = notify.heard_from_json(notify.heard_as_json(first))
    assert again == first and [d.needs for d in again.denials] == ["", "CAP_CHOWN", ""]
    assert [d.mount for d in notify.merged(again, again).denials] == ["", "", "/"]
    second = notify.Heard()
    other = notify.Denial(165, ARCH or 0, errno.EPERM, {1: 8}, {}, 13)
    same = notify.Denial(165, ARCH or 0, errno.EPERM, {1: 7}, {}, 14)
    second.denials += [same, other]
    second.total, second.limits = 2, {"pids": 1, "memory": 1}
    both = notify.merged(again, second)
    assert [(d.args, d.count) for d in both.denials] == [({1: 7}, 4), ({}, 1), ({}, 1), ({1: 8}, 1)]
    assert both.total == 5 and both.limits == {"pids": 3, "memory": 1}
    assert first.denials[0].count == 3  # the earlier record is not changed


def test_made_up_call_numbers_grow_neither_the_cache_nor_the_record() -> None:
    """A container may make calls of any 32-bit number: the monitor's memory stays bounded,
    and real calls made after thousands of junk ones are still itemised."""
    verdicts = notify.Verdicts(plain_filter(errno.EPERM), notify.MAX_DISTINCT)
    for number in range(100_000, 110_000):
        verdicts.of(bpfeval.seccomp_data(number, ARCH or 0))
    assert len(verdicts._reads) <= 4 * notify.MAX_DISTINCT + 1
    assert len(verdicts._answers) <= 4 * notify.MAX_DISTINCT + 1
    ours, _ = socket.socketpair()
    listening = notify.Listening(plain_filter(errno.EPERM), ours, {})
    for number in range(100_000, 101_000):
        listening._record(-1, 0, 0, bpfeval.seccomp_data(number, ARCH or 0), errno.ENOSYS, (), bpfeval.RET_ERRNO | 1)
    listening._record(-1, 0, 0, bpfeval.seccomp_data(GETPGID or 0, ARCH or 0), errno.EPERM, (), bpfeval.RET_ERRNO | 1)
    assert len(listening.heard.denials) == notify.MAX_ODD + 1
    assert listening.heard.denials[-1].nr == GETPGID and listening.heard.dropped == 1000 - notify.MAX_ODD
    ours.close()


def test_a_merged_record_keeps_its_bound() -> None:
    many = notify.Heard()
    many.denials = [notify.Denial(number, ARCH or 0, 1, {}, {}, 1) for number in range(300)]
    both = notify.merged(notify.Heard(), many)
    assert len(both.denials) == notify.MAX_DISTINCT and both.dropped == 300 - notify.MAX_DISTINCT


def test_an_address_no_process_can_have_is_not_read() -> None:
    assert notify._c_string(os.getpid(), 0xFFFFFFFFFFFFF000) is None
    assert notify._read_strings(os.getpid(), [0xFFFFFFFFFFFFF000, 0, 0, 0, 0, 0], (0,)) == {}
    assert notify._read_memory(os.getpid(), 0x1000, 1 << 20) == b""  # more than a path: not read


def test_no_capability_prologue_where_the_filter_would_kill_or_trap_the_call() -> None:
    """The prologue asks before the filter: where the filter kills a raw socket, the monitor
    could not do the same, so nothing is put before it."""
    socket_nr = {"x86_64": 41, "aarch64": 198}[os.uname().machine]
    code = bpfeval.INSTRUCTION.pack
    kills_sockets = b"".join(
        [
            code(0x20, 0, 0, 0),
            code(0x15, 0, 1, socket_nr),
            code(0x06, 0, 0, bpfeval.RET_KILL_PROCESS),
            code(0x06, 0, 0, bpfeval.RET_ALLOW),
        ]
    )
    assert notify.capability_tests(0, kills_sockets)[1] == []
    assert notify.capability_tests(0, plain_filter(errno.EPERM))[1] != []
    assert notify.capability_tests(1 << 13, plain_filter(errno.EPERM))[1] == []  # CAP_NET_RAW held


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the ABIs named are x86_64's")
def test_a_listener_of_the_containers_own_is_refused_in_every_abi() -> None:
    """seccomp(SECCOMP_SET_MODE_FILTER, FLAG_NEW_LISTENER) gets EBUSY from the notifying
    filter in x86_64, x32 and i386 alike (a 32-bit program could otherwise bring its own
    listener once ours is gone); other flags go to the filter, and an ABI the plain filter
    already refuses needs nothing."""
    from pysbx.policies.seccomp import compile_bpf, load_profile

    plain = compile_bpf(load_profile("default"), frozenset()).bpf
    heard = notify.with_foreign_listeners_refused(bpfeval.notify_variant(plain), plain)
    for arch, number in ((0xC000003E, 317), (0xC000003E, 0x40000000 | 317), (0x40000003, 354)):
        assert bpfeval.evaluate(heard, bpfeval.seccomp_data(number, arch, (1, 8))) == bpfeval.RET_ERRNO | errno.EBUSY
        assert bpfeval.evaluate(heard, bpfeval.seccomp_data(number, arch, (1, 0))) == bpfeval.RET_ALLOW
        observing = notify.observing_program()
        assert (
            bpfeval.evaluate(observing, bpfeval.seccomp_data(number, arch, (1, 8))) == bpfeval.RET_ERRNO | errno.EBUSY
        )
    strict = compile_bpf(load_profile("strict"), frozenset()).bpf
    kept = notify.with_foreign_listeners_refused(bpfeval.notify_variant(strict), strict)
    assert bpfeval.evaluate(kept, bpfeval.seccomp_data(354, 0x40000003, (1, 8))) == bpfeval.evaluate(
        strict, bpfeval.seccomp_data(354, 0x40000003, (1, 8))
    )
