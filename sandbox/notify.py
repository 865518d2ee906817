"""Hearing each system call the policy denies while a container runs (`run --explain`).

The command loads bpfeval.notify_variant of its filter with a notification listener, just
before execve, and hands the listener to the monitor over a socket (runner._load_filter).
From then on a denied call waits in the kernel until the monitor answers it here. The answer
is what the plain filter returns for the same seccomp_data (bpfeval.evaluate): the same
errno, so the program behaves as it would without --explain. The monitor answers "continue"
only where the plain filter itself allows the call (a raw socket heard for its capability,
capability_tests), never for a denial, whatever it reads: nothing the container does can turn
a denial into an allowed call (learn's observation, Listening(observe=True), is the one
deliberate exception). What it records (the call, the arguments the filter looked at, path
arguments read from the caller's memory with process_vm_readv) is only kept when
SECCOMP_IOCTL_NOTIF_ID_VALID says, after the read, that the caller is still the one that
made the call (a pid reused meanwhile would otherwise lend another process's memory to the
report). Writes the filter allows but a read-only mount refuses are heard too, through a
prologue like the capability one (sandbox.pathwrites).

Bounded: a storm of denials costs the container the monitor's answer time per call (tens of
microseconds) and the monitor at most MAX_DISTINCT records; repeats are counted.

The listener must outlive every process under the filter: once it is closed, the kernel
answers ENOSYS to each call the filter notifies, and would let a process load a filter with
a listener of its own, which then hears those calls first. The first is why an exec'd
process's listener is served by a process of its own until the filter's last process is gone
(sandbox.enter); the second, why every notifying filter refuses such a filter
(with_foreign_listeners_refused)."""

from __future__ import annotations

import errno
import fcntl
import os
import select
import struct
import threading

from pysbx.policies.record import Record
from pysbx.sandbox import auditlog, bpfeval, capcheck, destinations, fdroom, pathwrites
from pysbx.sandbox.caller import Caller

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Mapping

# linux/seccomp.h: the ioctls are _IOWR('!', 0/1) and _IOW('!', 2) on every architecture
NOTIF_RECV = 0xC0502100
NOTIF_SEND = 0xC0182101
NOTIF_ID_VALID = 0x40082102
NOTIF = struct.Struct("=QII64s")  # struct seccomp_notif: id, pid, flags, struct seccomp_data
RESPONSE = struct.Struct("=QqiI")  # struct seccomp_notif_resp: id, val, error, flags
LISTENER_LINK = "anon_inode:seccomp notify"
MAX_DISTINCT = 256
MAX_OBSERVED = 1024  # kinds of call a learned workload may make: Linux has about 450 calls
USER_NOTIF_FLAG_CONTINUE = 1
MAX_STRING = 512
PATH_MAX = 4096  # a path the monitor resolves is read whole (or not used)
MAX_ODD = 16  # kinds kept of calls with no name here (junk numbers must not crowd out real calls)
LAST_NUMBER = 1024  # above every call number of every architecture (x32's bit aside)
X32_BIT = 0x40000000


class Denial(Record):
    """One kind of denied call: its number and architecture (AUDIT_ARCH_*), the errno it
    got, the arguments the filter read (index -> value: calls that differ in these are other
    kinds), all six of the first such call, path arguments as read from the caller (index ->
    bytes), how many times, and the first caller's pid (the monitor's view). A write refused
    by a read-only mount (no seccomp denial: the filter allowed it, `verdict`) names the
    mount's point, one refused for a capability names it, and its kind is the call and that."""

    __slots__ = ("arch", "args", "count", "errno", "first", "mount", "needs", "nr", "pid", "strings", "verdict")

    def __init__(
        self,
        nr: int,
        arch: int,
        errno: int,
        args: dict[int, int],
        strings: dict[int, bytes],
        pid: int,
        first: tuple[int, ...] = (),
    ) -> None:
        self.nr, self.arch, self.errno, self.args, self.strings, self.pid = nr, arch, errno, args, strings, pid
        self.first = first or tuple(args.get(index, 0) for index in range(6))
        self.count = 1
        self.verdict = bpfeval.RET_ERRNO | errno  # what the plain filter returns for it
        self.mount = ""  # a write a read-only mount refuses (sandbox.pathwrites): the mount's point
        self.needs = ""  # a call refused for a capability the caller lacks (sandbox.capcheck): its name


class Heard(Record):
    """What a run's listener heard: the denials in the order first made, how many calls in
    all, how many more kinds than were kept, and why nothing was heard (or ""); and how
    often each cgroup-enforced limit was reached (Cgroup.limits_reached). Under observation
    (learn), also the folders written on the container's root (the first folder below it:
    /tmp) and the destinations sent to (sandbox.destinations), each with how many calls;
    MAX_PLACES of each, the rest counted under "*"."""

    __slots__ = ("denials", "dropped", "limits", "reached", "total", "unavailable", "via", "written")

    def __init__(self) -> None:
        self.denials: list[Denial] = []
        self.total = 0
        self.dropped = 0
        self.unavailable = ""
        self.limits: dict[str, int] = {}
        self.written: dict[str, int] = {}
        self.reached: dict[str, int] = {}
        self.via = ""  # no listener, but the kernel's audit log was read (sandbox.auditlog)


def heard_as_json(heard: Heard) -> dict[str, object]:
    """A record as plain JSON (run -d keeps it in the container's folder: `explain NAME`)."""
    return {
        "denials": [
            {
                **denial.as_dict(),
                "args": sorted(denial.args.items()),
                "strings": {i: t.hex() for i, t in denial.strings.items()},
            }
            for denial in heard.denials
        ],
        "total": heard.total,
        "dropped": heard.dropped,
        "unavailable": heard.unavailable,
        "limits": heard.limits,
        "written": heard.written,
        "reached": heard.reached,
        "via": heard.via,
    }


def heard_from_json(document: dict[str, object]) -> Heard:
    """heard_as_json read back; ValueError (or TypeError, KeyError) for what it did not write."""
    heard = Heard()
    heard.total, heard.dropped = int(document["total"]), int(document["dropped"])  # type: ignore[call-overload]
    heard.unavailable, heard.via = str(document["unavailable"]), str(document.get("via", ""))
    heard.limits, heard.written, heard.reached = (
        {str(name): int(count) for name, count in dict(document.get(field) or {}).items()}  # type: ignore[call-overload]
        for field in ("limits", "written", "reached")
    )
    for item in document["denials"]:  # type: ignore[attr-defined]
        args = {int(index): int(value) for index, value in item["args"]}
        strings = {int(index): bytes.fromhex(text) for index, text in item["strings"].items()}
        first = tuple(int(value) for value in item["first"])
        denial = Denial(int(item["nr"]), int(item["arch"]), int(item["errno"]), args, strings, int(item["pid"]), first)
        denial.count, denial.verdict = int(item["count"]), int(item["verdict"])
        denial.mount, denial.needs = str(item.get("mount", "")), str(item.get("needs", ""))
        heard.denials.append(denial)
    return heard


def merged(earlier: Heard | None, later: Heard) -> Heard:
    """Two runs' records as one (a restarted container's): kinds matched, counts added; the
    later alone when there is no earlier."""
    if earlier is None:
        return later
    both = Heard()
    both.total, both.dropped = earlier.total + later.total, earlier.dropped + later.dropped
    both.unavailable = later.unavailable or earlier.unavailable
    both.via = later.via or earlier.via
    both.limits = _added(earlier.limits, later.limits)
    for place, counts in (
        (both.written, (earlier.written, later.written)),
        (both.reached, (earlier.reached, later.reached)),
    ):
        for counted in counts:
            for name, count in counted.items():
                count_place(place, name, count)
    kinds: dict[tuple[object, ...], Denial] = {}
    for denial in (*earlier.denials, *later.denials):
        key = (denial.nr, denial.arch, denial.verdict, denial.mount, denial.needs, tuple(sorted(denial.args.items())))
        if key in kinds:
            kinds[key].count += denial.count
            continue
        if len(kinds) >= MAX_DISTINCT:  # restarts add counts, not kinds beyond the bound
            both.dropped += denial.count
            continue
        copy = Denial(denial.nr, denial.arch, denial.errno, denial.args, denial.strings, denial.pid, denial.first)
        copy.count, copy.verdict, copy.mount, copy.needs = denial.count, denial.verdict, denial.mount, denial.needs
        kinds[key] = copy
        both.denials.append(copy)
    return both


def _added(first: dict[str, int], second: dict[str, int]) -> dict[str, int]:
    return {name: first.get(name, 0) + second.get(name, 0) for name in {*first, *second}}


MAX_PLACES = 64
MORE = "*"  # places beyond MAX_PLACES, counted together


def count_place(places: dict[str, int], name: str, count: int = 1) -> None:
    """One more call to `name` in a bounded record of places (written folders, destinations)."""
    if name not in places and len(places) >= MAX_PLACES:
        name = MORE
    places[name] = places.get(name, 0) + count


class Listening:
    """The monitor's side for one run: started before the container, it takes the listener
    from `receiver` and answers every notification until the container's last task is gone.
    `path_arguments` maps call numbers to the indices of their path arguments.

    With `observe` (`pysandbox learn`), the container's filter is observing_program: every
    call notifies, each is recorded with what the plain filter (the base policy's; None:
    none) would have answered, and each goes on ("continue") within the `ceiling` filter
    (the default profile under the base's capabilities: what it refuses is refused here too,
    with its errno). But an ENOSYS the plain filter answers on purpose (clone3: glibc falls back to
    clone) is answered as such: a workload observed taking the newer call would be learned
    without the fallback it takes later."""

    def __init__(
        self,
        plain: bytes | None,
        receiver: socket.socket,
        path_arguments: Mapping[int, tuple[int, ...]],
        observe: bool = False,
        ceiling: bytes | None = None,
        writes: Mapping[int, pathwrites.Write] | None = None,
    ) -> None:
        self.plain = Verdicts(plain, MAX_OBSERVED if observe else MAX_DISTINCT)
        self.ceiling = Verdicts(ceiling, MAX_OBSERVED)
        self.receiver = receiver
        self.path_arguments = path_arguments
        self.writes = writes or {}  # the writing calls the prologue notifies (sandbox.pathwrites)
        self.checks: Mapping[int, capcheck.Check] = {}  # calls it notifies for a capability (sandbox.capcheck)
        self.sends: Mapping[int, tuple[int, int]] = {}  # learn: calls with a destination (sandbox.destinations)
        self.fd_calls: frozenset[int] = frozenset()  # calls that make a descriptor (sandbox.fdroom)
        self.capability_calls: frozenset[int] = frozenset()  # capability_tests' calls (raw sockets)
        # Under limits.writable_size: the container's root, held from its first heard call on,
        # so that finish() can tell whether the writable layer (a tmpfs) was left full.
        self.watch_root = False
        self._root = -1
        self.kernel_log: auditlog.KernelLog | None = None  # root: read should no listener come
        self.init_pid = 0  # the container's init, set once known: its pid namespace is the container's
        self.session = -1  # the container's own audit session (auditlog.new_session), or -1
        self.observe = observe
        self.most = MAX_OBSERVED if observe else MAX_DISTINCT
        self.heard = Heard()
        self.on_new_kind: Callable[[Heard], object] | None = None  # run -d: the record is kept as it grows
        self._kinds: dict[tuple[object, ...], Denial] = {}
        self._odd = 0
        self.native = native_arch()  # path_arguments' architecture
        self._stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._serve, name="pysandbox-explain", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def finish(self, grace: float = 2.0) -> Heard:
        """The record, once the container is gone (its listener hung up) or `grace` later."""
        self._thread.join(grace)
        os.write(self._stop_w, b"x")
        self._thread.join()
        return self._ended()

    def descriptors(self) -> tuple[int, ...]:
        """What the listening holds open (a server process closes everything else)."""
        held = (self.receiver.fileno(), self._stop_r, self._stop_w)
        return held + ((self.kernel_log.fd,) if self.kernel_log is not None else ())

    def run_to_end(self) -> Heard:
        """finish(), without the grace: served in this thread until every process under the
        filter is gone (the listener hangs up). For a process that serves nothing else
        (sandbox.enter's server for an exec'd process)."""
        self._serve()
        return self._ended()

    def _ended(self) -> Heard:
        for fd in (self._stop_r, self._stop_w):
            os.close(fd)
        if self.kernel_log is not None:  # the thread never got as far as the listener
            self.kernel_log.close()
            self.kernel_log = None
        if self._root >= 0:
            if _is_full(self._root):
                self.heard.limits["writable_size"] = 1
            os.close(self._root)
            self._root = -1
        return self.heard

    def _serve(self) -> None:
        try:
            listener = self._receive_listener()
        finally:
            self.receiver.close()
        if listener < 0:
            self._read_kernel_log()
            return
        if self.kernel_log is not None:  # a listener came: the log is not needed
            self.kernel_log.close()
            self.kernel_log = None
        try:
            self._answer_until_hung_up(listener)
        except Exception as error:  # never a hung container: closed, the listener answers ENOSYS
            self.heard.unavailable = f"the monitor stopped listening: {type(error).__name__}: {error}"
        finally:
            os.close(listener)

    def _read_kernel_log(self) -> None:
        """No listener: the filter logs its denials (sandbox.auditlog); read them until the
        run is over, and once more then (a record written just before the end)."""
        log = self.kernel_log
        if log is None:
            return
        self.kernel_log = None
        try:
            waiting = select.poll()
            waiting.register(log.fd, select.POLLIN)
            waiting.register(self._stop_r, select.POLLIN)
            while True:
                ended = self._stop_r in dict(waiting.poll())
                for record in log.records():
                    self._record_logged(*record)
                if ended:
                    return
        except Exception as error:  # what was heard stays; the run goes on
            self.heard.unavailable += f"; the kernel's log could not be read on ({type(error).__name__}: {error})"
        finally:
            log.close()

    def _record_logged(self, session: int, pid: int, arch: int, nr: int, code: int) -> None:
        """One record: kept when it carries the container's own audit session, or, where
        the container has none, when its process is in the container's pid namespace (read
        now: one gone is missed; with no pid namespace of its own, none can be told)."""
        if not self.init_pid or code & bpfeval.RET_ACTION_FULL != bpfeval.RET_ERRNO:
            return
        if self.session in (-1, auditlog.UNSET, auditlog.session_of(os.getpid())):
            shared = auditlog.in_namespace_of(os.getpid(), self.init_pid)  # no pid namespace of its own
            if shared or not auditlog.in_namespace_of(pid, self.init_pid):
                return
        elif session != self.session:
            return
        self.heard.via = "the kernel's audit log"
        value, _ = self.plain.of(bpfeval.seccomp_data(nr, arch))  # the record has no arguments
        action, number = bpfeval.action_of(value)

        def new() -> Denial:
            denial = Denial(nr, arch, number if action == bpfeval.RET_ERRNO else errno.EPERM, {}, {}, pid)
            denial.verdict = value
            return denial

        self._count((nr, arch, value, "", ""), new)

    def _receive_listener(self) -> int:
        """The listener the command sent, or -1 with the reason it gave (or none: the setup
        failed before the command was reached, and says so itself)."""
        import socket

        waiting = select.poll()
        waiting.register(self.receiver.fileno(), select.POLLIN)
        waiting.register(self._stop_r, select.POLLIN)
        if self._stop_r in dict(waiting.poll()):
            self.heard.unavailable = "the container ended before its command listened"
            return -1
        try:
            message, fds, _, _ = socket.recv_fds(self.receiver, 4096, 1, socket.MSG_CMSG_CLOEXEC)
        except OSError as error:
            self.heard.unavailable = f"the listener did not arrive: {error.strerror or error}"
            return -1
        if len(fds) == 1 and message == b"listener" and _is_listener(fds[0]):
            return fds[0]
        for fd in fds:
            os.close(fd)
        self.heard.unavailable = message.decode(errors="replace") or "the command ended before it listened"
        return -1

    def _answer_until_hung_up(self, listener: int) -> None:
        poller = select.poll()
        poller.register(listener, select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        buffer = bytearray(NOTIF.size)
        while True:
            events = dict(poller.poll())
            if self._stop_r in events:
                return
            state = events.get(listener, 0)
            if state & select.POLLIN:
                self._answer_one(listener, buffer)
            elif state & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                return  # every task of the filter is gone

    def _answer_one(self, listener: int, buffer: bytearray) -> None:
        buffer[:] = bytes(NOTIF.size)  # the kernel wants a zeroed request
        try:
            fcntl.ioctl(listener, NOTIF_RECV, buffer, True)
        except OSError as error:
            if error.errno in (errno.ENOENT, errno.EINTR):  # withdrawn: the caller was killed
                return
            raise
        notification_id, pid, _, data = NOTIF.unpack(buffer)
        if self.watch_root and self._root < 0:
            self._hold_root(listener, notification_id, pid)
        value, read = self.plain.of(data)
        action, number = bpfeval.action_of(value)
        if self.observe:
            answer = self._observed_answer(data, value)
            needs = self._capability_needed(listener, notification_id, pid, data) if not answer else ""
            self._record(listener, notification_id, pid, data, answer, read, value, needs)
            if not answer:
                self._note_effects(listener, notification_id, pid, data)
                nr, arch = bpfeval.SECCOMP_DATA.unpack(data)[:2]
                if arch == self.native and nr in self.fd_calls:
                    self._out_of_descriptors(listener, notification_id, pid)
            flags = 0 if answer else USER_NOTIF_FLAG_CONTINUE
            response = RESPONSE.pack(notification_id, 0, -answer, flags)
        elif action in (bpfeval.RET_ALLOW, bpfeval.RET_LOG):  # heard by the prologue: it goes on, as the filter says
            nr, arch = bpfeval.SECCOMP_DATA.unpack(data)[:2]
            native = arch == self.native
            if native and nr in self.fd_calls and self._out_of_descriptors(listener, notification_id, pid):
                pass  # EMFILE comes before any look at a path: counted, nothing more to tell
            elif nr in self.writes or nr in self.checks:
                self._hear_allowed(listener, notification_id, pid, data)
            elif native and nr in self.capability_calls:  # the kernel refuses it without a capability
                self._record(listener, notification_id, pid, data, errno.EPERM, read, value)
            response = RESPONSE.pack(notification_id, 0, 0, USER_NOTIF_FLAG_CONTINUE)
        else:
            # What the plain filter answers, which is an errno: the variant notifies where the
            # plain program returns one (anything else would get EPERM, never "continue").
            answer = number if action == bpfeval.RET_ERRNO else errno.EPERM
            self._record(listener, notification_id, pid, data, answer, read, value)
            response = RESPONSE.pack(notification_id, 0, -answer, 0)
        try:
            fcntl.ioctl(listener, NOTIF_SEND, response)
        except OSError as failure:
            if failure.errno != errno.ENOENT:  # the caller died meanwhile
                raise

    def _out_of_descriptors(self, listener: int, notification_id: int, pid: int) -> bool:
        """The call will get EMFILE (sandbox.fdroom): counted as limits.open_files reached."""
        try:
            full = fdroom.out_of_descriptors(pid)
        except Exception:  # nothing to tell: the call goes on as the filter says
            return False
        if full and _still_valid(listener, notification_id):
            self.heard.limits["open_files"] = self.heard.limits.get("open_files", 0) + 1
            return True
        return False

    def _hold_root(self, listener: int, notification_id: int, pid: int) -> None:
        """The caller's root (the container's overlay, whose free space is its writable
        layer's), open as O_PATH; only once the call's id says the pid was the caller's."""
        try:
            root = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return
        if _still_valid(listener, notification_id):
            self._root = root
        else:
            os.close(root)

    def _hear_allowed(self, listener: int, notification_id: int, pid: int, data: bytes) -> None:
        """A call the filter allows and the prologue notified for a look: recorded when a
        read-only mount (sandbox.pathwrites) or a missing capability (sandbox.capcheck) will
        refuse it. Whatever happens here, the call goes on as the filter says: an error must
        not stop the listening, which would fail every call it hears."""
        nr, arch, _, *args = bpfeval.SECCOMP_DATA.unpack(data)
        if arch != self.native:
            return
        write, check = self.writes.get(nr), self.checks.get(nr)
        if write is not None and check is None and not pathwrites.may_write(write, args):
            return  # an open to read, heard for its descriptor only
        index = write.path if write is not None else check.path if check is not None else -1
        try:
            path = _read_strings(pid, args, (index,), PATH_MAX).get(index) if index >= 0 else None
            if path is not None and len(path) >= PATH_MAX:  # cut short
                return
            refusal = self._refusal(pid, write, check, args, path)
            strings = {index: path} if path is not None else {}
            if refusal is not None and check is not None and check.kind == "bind":  # the family and port
                strings = {1: _read_memory(pid, args[1], min(args[2], 28))}
        except Exception:  # a prediction that cannot be made is no denial
            return
        if refusal is None or not _still_valid(listener, notification_id):  # after every read of its memory
            return
        number, mount, needs = refusal

        def new() -> Denial:
            denial = Denial(nr, arch, number, {}, strings, pid, tuple(args))
            denial.verdict, denial.mount, denial.needs = bpfeval.RET_ALLOW, mount, needs
            return denial

        self._count((nr, arch, bpfeval.RET_ALLOW, mount, needs), new)

    def _refusal(
        self,
        pid: int,
        write: pathwrites.Write | None,
        check: capcheck.Check | None,
        args: list[int],
        path: bytes | None,
    ) -> tuple[int, str, str] | None:
        """(errno, mount point, capability) of the refusal the call will meet, or None."""

        def read(at: int, size: int) -> bytes:
            return _read_memory(pid, at, size)

        if write is not None and (path or write.kind == "fd"):
            refusal = pathwrites.refusal(pid, write, args, path or b"", read)
            if refusal is not None:
                return refusal
        if check is not None and capcheck.refused(pid, check, args, path, read):
            return capcheck.refused_errno(check), "", check.capability
        return None

    def _capability_needed(self, listener: int, notification_id: int, pid: int, data: bytes) -> str:
        """Under observation: the capability this call needs (sandbox.capcheck), whether
        the caller holds it (it is used) or not (the call fails); "" for none or unknown."""
        nr, arch, _, *args = bpfeval.SECCOMP_DATA.unpack(data)
        check = self.checks.get(nr) if arch == self.native else None
        if check is None:
            return ""
        try:
            path = _read_strings(pid, args, (check.path,), PATH_MAX).get(check.path) if check.path >= 0 else None
            caller = Caller(pid)
            if check.kind == "open" and not (caller.holds(check.capability) or caller.is_root()):
                return ""  # a permission refused to anyone else is no capability's matter
            needs = capcheck.needed(caller, pid, check, args, path, lambda at, size: _read_memory(pid, at, size))
        except Exception:  # nothing to tell: no capability counted
            return ""
        return needs if needs and _still_valid(listener, notification_id) else ""

    def _note_effects(self, listener: int, notification_id: int, pid: int, data: bytes) -> None:
        """Under observation: a write that lands on the container's root (its folder is
        counted in heard.written), a send to another host (heard.reached)."""
        nr, arch, _, *args = bpfeval.SECCOMP_DATA.unpack(data)
        write, send = self.writes.get(nr), self.sends.get(nr)
        if arch != self.native:
            return
        if send is None and write is None:
            return
        places = "reached" if send is not None else "written"
        try:
            if send is not None:
                place = destinations.destination(send, args, lambda at, n: _read_memory(pid, at, n))
            elif write is not None:
                place = self._root_folder_written(pid, write, args)
            else:
                return
        except Exception:  # what cannot be told keeps the base's: a root writable, egress open
            place = MORE if send is not None else "?"
        if place and _still_valid(listener, notification_id):
            count_place(getattr(self.heard, places), place)

    def _root_folder_written(self, pid: int, write: pathwrites.Write, args: list[int]) -> str:
        """The first folder below the root (/tmp) of a write that lands on the root's own
        mount, or "" (another mount, no write); "?" where that cannot be told, which keeps a
        learned root writable: a write unaccounted for must not become a read-only root."""
        path = _read_strings(pid, args, (write.path,), PATH_MAX).get(write.path) if write.path >= 0 else b""
        if path is None or len(path) >= PATH_MAX:
            return "?"
        try:
            landed = pathwrites.landing(pid, write, args, path, lambda at, n: _read_memory(pid, at, n))
        except OSError:
            return "?"
        if landed != "/":
            return ""
        full = pathwrites.absolute(pid, write, args, path)
        if full is None:
            return "?"
        parts = [part for part in full.split(b"/") if part and part != b"."]
        if not parts or b".." in parts:
            return "?"
        return "/" + parts[0].decode(errors="backslashreplace")

    def _observed_answer(self, data: bytes, value: int) -> int:
        """Under observation: 0 (the call goes on), or the errno it gets: the base's ENOSYS
        on purpose, or the ceiling's refusal."""
        if value == bpfeval.RET_ERRNO | errno.ENOSYS:
            return errno.ENOSYS
        action, number = bpfeval.action_of(self.ceiling.of(data)[0])
        if action in (bpfeval.RET_ALLOW, bpfeval.RET_LOG):
            return 0
        return number if action == bpfeval.RET_ERRNO and number else errno.EPERM

    def _record(
        self,
        listener: int,
        notification_id: int,
        pid: int,
        data: bytes,
        number: int,
        read: tuple[int, ...],
        verdict: int,
        needs: str = "",
    ) -> None:
        nr, arch, _, *args = bpfeval.SECCOMP_DATA.unpack(data)
        shown = {index: args[index] for index in read}
        kind = (nr, arch, verdict, needs, *(value for item in sorted(shown.items()) for value in item))

        def new() -> Denial:  # a new kind only: its path arguments are read once
            strings = _read_strings(pid, args, self.path_arguments.get(nr, ()) if arch == self.native else ())
            if strings and not _still_valid(listener, notification_id):
                strings = {}  # the caller is gone, and the pid may be another process's now
            denial = Denial(nr, arch, number, shown, strings, pid, tuple(args))
            denial.verdict, denial.needs = verdict, needs
            return denial

        self._count(kind, new, odd=not 0 <= nr & ~X32_BIT < LAST_NUMBER)

    def _count(self, kind: tuple[object, ...], new: Callable[[], Denial], odd: bool = False) -> None:
        """One more call of `kind`: counted, or kept as a new kind (made by `new`) while the
        record has room (and, for calls with no name, the bucket of odd ones has)."""
        self.heard.total += 1
        known = self._kinds.get(kind)
        if known is not None:
            known.count += 1
            return
        if len(self._kinds) >= self.most or (odd and self._odd >= MAX_ODD):
            self.heard.dropped += 1
            return
        self._odd += odd
        denial = self._kinds[kind] = new()
        self.heard.denials.append(denial)
        if self.on_new_kind is not None:
            self.on_new_kind(self.heard)


class Verdicts:
    """What a program returns for each call, and which arguments it read, cached by the
    call, the architecture and the arguments the program has read for that call so far: its
    path depends on nothing else, so two calls equal in those take the same path. No program:
    everything is allowed."""

    def __init__(self, bpf: bytes | None, most: int) -> None:
        self.program = bpfeval.instructions(bpf) if bpf is not None else None
        self.most = most
        self._reads: dict[tuple[int, int], set[int]] = {}
        self._answers: dict[tuple[int, ...], tuple[int, tuple[int, ...]]] = {}

    def of(self, data: bytes) -> tuple[int, tuple[int, ...]]:
        if self.program is None:
            return bpfeval.RET_ALLOW, ()
        nr, arch, _, *args = bpfeval.SECCOMP_DATA.unpack(data)
        reads = self._reads.setdefault((nr, arch), set())
        cached = self._answers.get((nr, arch, *(args[index] for index in sorted(reads))))
        if cached is None:
            offsets: set[int] = set()
            try:
                value = bpfeval.run(self.program, data, offsets)
            except ValueError:
                value = bpfeval.RET_ERRNO | errno.EPERM
            read = bpfeval.arguments_read(offsets)
            reads.update(read)
            cached = (value, read)
            if len(self._answers) > 4 * self.most or len(self._reads) > 4 * self.most:
                self._answers.clear()  # a container making up call numbers grows neither
                self._reads.clear()
                reads = self._reads.setdefault((nr, arch), set(read))
            self._answers[(nr, arch, *(args[index] for index in sorted(reads)))] = cached
        return cached


def _is_full(root: int) -> bool:
    """Whether the filesystem under `root` has no block or no inode left (an overlay says
    its writable layer's)."""
    try:
        status = os.fstatvfs(root)
    except OSError:
        return False
    return status.f_bavail == 0 or (status.f_files > 0 and status.f_favail == 0)


def _is_listener(fd: int) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == LISTENER_LINK
    except OSError:
        return False


def _still_valid(listener: int, notification_id: int) -> bool:
    try:
        fcntl.ioctl(listener, NOTIF_ID_VALID, struct.pack("=Q", notification_id))
    except OSError:
        return False
    return True


def _read_strings(pid: int, args: list[int], indices: tuple[int, ...], most: int = MAX_STRING) -> dict[int, bytes]:
    """The NUL-terminated strings at the given arguments of process `pid`'s call, as far as
    they can be read (`most` bytes at most each); none when its memory cannot be."""
    return {index: text for index in indices if args[index] and (text := _c_string(pid, args[index], most)) is not None}


def _read_memory(pid: int, address: int, size: int) -> bytes:
    """Bytes of process `pid`'s memory (linux.process_vm_read); none where it cannot be read."""
    from pysbx.sandbox import linux

    if not 0 < address < 1 << 63 or not 0 < size <= PATH_MAX:  # no user address
        return b""
    try:
        return linux.process_vm_read(pid, address, size)
    except (OSError, OverflowError, ValueError):  # unmapped, gone, or not ours to read
        return b""


def _c_string(pid: int, address: int, most: int = MAX_STRING) -> bytes | None:
    """Read page by page: a string near the end of a mapping must not fail for the bytes
    beyond it."""
    if not 0 < address < 1 << 63:  # no user address
        return None
    collected = b""
    while len(collected) < most:
        chunk = min(4096 - (address + len(collected)) % 4096, most - len(collected))
        piece = _read_memory(pid, address + len(collected), chunk)
        if not piece:
            return collected or None
        end = piece.find(b"\0")
        if end >= 0:
            return collected + piece[:end]
        collected += piece
    return collected


def path_arguments(number_of: Callable[[str], int | None]) -> dict[int, tuple[int, ...]]:
    """The path arguments of the calls that take them, by this machine's call numbers."""
    table: dict[int, tuple[int, ...]] = {}
    for name, indices in PATH_ARGUMENTS.items():
        number = number_of(name)
        if number is not None:
            table[number] = indices
    return table


PATH_ARGUMENTS: dict[str, tuple[int, ...]] = {
    "open": (0,), "openat": (1,), "openat2": (1,), "creat": (0,), "open_tree": (1,),
    "mkdir": (0,), "mkdirat": (1,), "mknod": (0,), "mknodat": (1,), "rmdir": (0,),
    "unlink": (0,), "unlinkat": (1,), "rename": (0, 1), "renameat": (1, 3), "renameat2": (1, 3),
    "link": (0, 1), "linkat": (1, 3), "symlink": (0, 1), "symlinkat": (0, 2),
    "chmod": (0,), "fchmodat": (1,), "chown": (0,), "lchown": (0,), "fchownat": (1,),
    "truncate": (0,), "execve": (0,), "execveat": (1,), "chdir": (0,), "chroot": (0,),
    "mount": (0, 1, 2), "umount2": (0,), "pivot_root": (0, 1), "move_mount": (1, 3), "fsopen": (0,),
    "swapon": (0,), "swapoff": (0,), "acct": (0,), "quotactl": (1,),
    "setxattr": (0, 1), "lsetxattr": (0, 1), "removexattr": (0, 1), "lremovexattr": (0, 1),
    "access": (0,), "faccessat": (1,), "faccessat2": (1,), "stat": (0,), "lstat": (0,),
    "newfstatat": (1,), "statx": (1,), "readlink": (0,), "readlinkat": (1,), "statfs": (0,),
    "utimensat": (1,), "name_to_handle_at": (1,), "inotify_add_watch": (1,), "delete_module": (0,),
}  # fmt: skip


# What the command does between loading the notifying filter and handing its listener over:
# were the profile to deny one of these, the call would wait for a monitor that has no
# listener yet. Numbers by machine (asm/unistd.h), with the machine's AUDIT_ARCH_*.
_HANDOVER_CALLS = {
    "x86_64": (0xC000003E, {"sendmsg": 46, "close": 3, "execve": 59, "mmap": 9, "munmap": 11, "brk": 12,
                            "mprotect": 10, "write": 1, "exit_group": 231}),
    "aarch64": (0xC00000B7, {"sendmsg": 211, "close": 57, "execve": 221, "mmap": 222, "munmap": 215,
                             "brk": 214, "mprotect": 226, "write": 64, "exit_group": 94}),
}  # fmt: skip


def listener_blocker(plain: bytes) -> str:
    """Why this filter cannot hand its listener over (a call the handover makes is not
    allowed), or ""."""
    machine = os.uname().machine
    if machine not in _HANDOVER_CALLS:
        return f"--explain does not know the system calls of {machine} yet"
    arch, numbers = _HANDOVER_CALLS[machine]
    program = bpfeval.instructions(plain)
    for name, number in numbers.items():
        value = bpfeval.run(program, bpfeval.seccomp_data(number, arch))
        if bpfeval.action_of(value)[0] != bpfeval.RET_ALLOW:
            return f"the seccomp profile does not allow {name}, which handing the listener to the monitor needs"
    return ""


def observing_program() -> bytes:
    """`pysandbox learn`'s filter: every call notifies (and is continued by the monitor)
    but those of the handover, which must not wait for a monitor without a listener."""
    machine = os.uname().machine
    if machine not in _HANDOVER_CALLS:
        raise OSError(errno.ENOSYS, f"learn does not know the system calls of {machine} yet")
    arch, numbers = _HANDOVER_CALLS[machine]
    allowed = sorted(set(numbers.values()))
    count = len(allowed)
    code = bpfeval.INSTRUCTION.pack
    program = [code(0x20, 0, 0, 4), code(0x15, 0, count + 1, arch), code(0x20, 0, 0, 0)]  # ld arch; jeq; ld nr
    program += [code(0x15, count - index, 0, number) for index, number in enumerate(allowed)]
    program += [code(0x06, 0, 0, bpfeval.RET_USER_NOTIF), code(0x06, 0, 0, bpfeval.RET_ALLOW)]
    return with_foreign_listeners_refused(b"".join(program), None)


def always_allows(plain: bytes) -> Callable[[int], bool]:
    """Whether the filter allows a call of this machine, by number, whatever its arguments
    (it reads none of them and answers ALLOW or LOG)."""
    program = bpfeval.instructions(plain)
    arch = native_arch()

    def allows(number: int) -> bool:
        offsets: set[int] = set()
        value = bpfeval.run(program, bpfeval.seccomp_data(number, arch), offsets)
        allowed = bpfeval.action_of(value)[0] in (bpfeval.RET_ALLOW, bpfeval.RET_LOG)
        return allowed and not bpfeval.arguments_read(offsets)

    return allows


# seccomp(2) in each ABI a machine runs, as (AUDIT_ARCH_*, number): x86_64, x32 (the native
# arch with bit 30 in the number) and i386; aarch64 and 32-bit ARM. SECCOMP_FILTER_FLAG_NEW_LISTENER
# is bit 3 of its flags (linux/seccomp.h), and SECCOMP_SET_MODE_FILTER its operation 1.
_SECCOMP_CALLS = {
    "x86_64": ((0xC000003E, 317), (0xC000003E, 0x40000000 | 317), (0x40000003, 354)),
    "aarch64": ((0xC00000B7, 277), (0x40000028, 383)),
}
NEW_LISTENER_FLAG = 8


def with_foreign_listeners_refused(bpf: bytes, plain: bytes | None) -> bytes:
    """`bpf` behind a prologue that answers EBUSY to seccomp() loading a filter with a
    listener of its own (what the kernel answers anyway while ours listens), in every ABI of
    this machine. Once ours is closed (its server gone, a process left over), the kernel would
    let one in, and the newest listener hears the calls our filter sends to the monitor: its
    owner, in the container, could answer "continue" to a denied call. With this, a left-over
    process's notified calls fail (ENOSYS) and none can be let through. Where the `plain`
    filter does not allow that call it needs none (our filter notifies it: ENOSYS then);
    plain None (learn's observing filter): everywhere."""
    by_arch: dict[int, list[bpfeval.Test]] = {}
    for arch, number in _SECCOMP_CALLS.get(os.uname().machine, ()):
        if plain is not None:
            asked = bpfeval.evaluate(plain, bpfeval.seccomp_data(number, arch, (1, NEW_LISTENER_FLAG)))
            if bpfeval.action_of(asked)[0] not in (bpfeval.RET_ALLOW, bpfeval.RET_LOG):
                continue
        refusal = (number, 1, NEW_LISTENER_FLAG, NEW_LISTENER_FLAG, bpfeval.RET_ERRNO | errno.EBUSY)
        by_arch.setdefault(arch, []).append(refusal)
    for arch, tests in by_arch.items():
        bpf = bpfeval.with_notified_calls(bpf, arch, tests)
    return bpf


def native_arch() -> int:
    """This machine's AUDIT_ARCH_* (0 where --explain knows none)."""
    return _HANDOVER_CALLS.get(os.uname().machine, (0, {}))[0]


def handover_calls() -> tuple[str, ...]:
    """The names of the calls observing_program lets through unheard."""
    return tuple(_HANDOVER_CALLS.get(os.uname().machine, (0, {}))[1])


# Calls a filter may allow that the kernel refuses without a capability, told apart by a
# register argument: (capability, number by machine, argument, mask, value). A raw or packet
# socket (ping) needs CAP_NET_RAW.
_CAPABILITY_CALLS = (
    ("CAP_NET_RAW", {"x86_64": 41, "aarch64": 198}, 0, 0xFFFFFFFF, 17),  # socket(AF_PACKET, ...)
    ("CAP_NET_RAW", {"x86_64": 41, "aarch64": 198}, 1, 0xF, 3),  # socket(..., SOCK_RAW, ...)
)
CAPABILITY_BITS = {"CAP_NET_RAW": 13}


def capability_tests(capabilities: int, plain: bytes) -> tuple[int, list[tuple[int, int, int, int]]]:
    """This machine's AUDIT_ARCH and the tests (bpfeval.with_notified_calls) for the calls
    that need a capability not in the mask `capabilities`. None when the plain filter answers
    such a call with anything the monitor cannot give in its place (kill, trap, trace): the
    prologue asks before the filter does, so the monitor must be able to answer as it would."""
    machine = os.uname().machine
    arch = native_arch()
    tests = [
        (numbers[machine], index, mask, value)
        for capability, numbers, index, mask, value in _CAPABILITY_CALLS
        if machine in numbers and not capabilities >> CAPABILITY_BITS[capability] & 1
    ]
    program = bpfeval.instructions(plain)
    # what the prologue takes: a packet socket of any type, a raw socket of any family
    asked = {(17, kind) for kind in (1, 2, 3, 5, 10)} | {
        (family, kind) for family in range(64) for kind in (3, 0x80803)
    }
    for number in {test[0] for test in tests}:
        for family, kind in sorted(asked):
            value = bpfeval.run(program, bpfeval.seccomp_data(number, arch, (family, kind, 0)))
            if bpfeval.action_of(value)[0] not in (bpfeval.RET_ALLOW, bpfeval.RET_LOG, bpfeval.RET_ERRNO):
                return arch, []
    return arch, tests
