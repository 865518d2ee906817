"""Work an ordinary user does as their containers' root: a forked child in a new user
namespace, mapped as the containers' own (the user's id as root, the /etc/subuid and
/etc/subgid ranges above it), so that what it writes and reads has the owners the containers
see. Rootless podman does the same (`podman unshare`): the user's layers are unpacked with
the image's owners (a file of uid 100 is the host's first subordinate id + 99), and what the
containers' other users leave behind can be read, checked and removed again.

The child runs our own code on a copy of this process, never an exec of anything; it sends
back its result or its exception, and exits without running any of the parent's clean-up."""

from __future__ import annotations

import os

from pysbx.sandbox import linux
from pysbx.sandbox.idmap import IdMaps, IdRange, write_id_maps

TYPE_CHECKING = False
if TYPE_CHECKING:  # the warm path of `run` imports this module: nothing more at run time
    from collections.abc import Callable
    from typing import TypeVar

    T = TypeVar("T")


def make_user_namespace(ready_w: int) -> None:
    """Unshare the user namespace and tell the parent, which maps it."""
    linux.unshare(linux.CLONE_NEWUSER)
    os.write(ready_w, b"u")


def become_namespace_root(maps_r: int) -> None:
    """Wait for the parent's answer; once mapped, become the namespace's root."""
    answer = os.read(maps_r, 4096)
    os.close(maps_r)
    if answer != b"m":
        raise OSError(f"mapping the user namespace failed: {answer[1:].decode(errors='replace')}")
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def map_child(
    child: int, ready_r: int, maps_w: int, maps: IdMaps, write: Callable[[int, IdMaps], None] = write_id_maps
) -> bool:
    """The parent's half: once `child` has its namespace, write the maps (`write`: from the
    host's user namespace, or sandbox.netkeeper's from inside the keeper's) and tell it how
    that went (an error travels to the child, which reports it). False when the child
    failed before it unshared (its own report says why)."""
    if os.read(ready_r, 1) != b"u":
        return False
    try:
        write(child, maps)
        os.write(maps_w, b"m")
    except OSError as error:
        os.write(maps_w, b"x" + str(error).encode())
    return True


def subordinate_maps() -> IdMaps | None:
    """The maps an ordinary user's containers get when they have subordinate ids (through
    newuidmap and newgidmap), else None: then the user's own id is all there is."""
    if os.geteuid() == 0:
        return None
    from pysbx.policies.model import IdMapping
    from pysbx.sandbox.idmap import plan_id_maps

    maps = plan_id_maps(IdMapping())
    return maps if maps.via_helpers else None


def mapped_size(maps: IdMaps) -> int:
    """How many container ids, from 0 up, have a host id for both uid and gid."""
    return min(_contiguous(maps.uids), _contiguous(maps.gids))


def _contiguous(ranges: tuple[IdRange, ...]) -> int:
    end = 0
    for mapped in sorted(ranges, key=lambda item: item.container):
        if mapped.container != end:
            break
        end += mapped.size
    return end


class NamespaceWorkFailed(OSError):
    """The child died without a word (killed, or its report could not be sent)."""


def as_container_root(maps: IdMaps, work: Callable[[], T]) -> T:
    """Run `work` in a forked child that is root of a user namespace mapped by `maps`;
    return what it returned or raise what it raised (the same exception type and message).
    The parent only maps the namespace and waits: nothing of the child's runs here."""
    import pickle

    ready_r, ready_w = os.pipe()
    maps_r, maps_w = os.pipe()
    result_r, result_w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child, which _exits
        _child(work, (ready_r, maps_w, result_r), ready_w, maps_r, result_w)
    for fd in (ready_w, maps_r, result_w):
        os.close(fd)
    try:
        map_child(child, ready_r, maps_w, maps)
        os.close(maps_w)
        maps_w = -1
        with os.fdopen(result_r, "rb") as results:
            result_r = -1
            report = results.read()
    finally:
        for fd in (ready_r, maps_w, result_r):
            if fd >= 0:
                os.close(fd)
        _, status = os.waitpid(child, 0)
    if not report:
        raise NamespaceWorkFailed(f"the child working as container root ended ({_describe_status(status)})")
    failed, value = pickle.loads(report)
    if failed:
        raise value
    return value  # type: ignore[no-any-return]


def _child(work: Callable[[], object], parents: tuple[int, ...], ready_w: int, maps_r: int, result_w: int) -> None:
    code = 1
    try:
        for fd in parents:
            os.close(fd)
        try:
            make_user_namespace(ready_w)
            become_namespace_root(maps_r)
            linux.prctl(linux.PR_SET_DUMPABLE, 0)  # setresuid re-armed it: no one ptraces a root
            outcome: tuple[bool, object] = (False, work())
        except BaseException as error:  # every failure goes to the parent
            outcome = (True, error)
        data = _portable(outcome)
        with os.fdopen(result_w, "wb") as results:
            results.write(data)
        code = 0
    finally:
        os._exit(code)


def _portable(outcome: tuple[bool, object]) -> bytes:
    """`outcome` pickled, if it also unpickles (an exception whose __init__ takes other
    arguments does not); else the message as an error of the nearest class that does."""
    import pickle

    failed, value = outcome
    plainer = [kind for kind in type(value).__mro__ if issubclass(kind, Exception)] if failed else []
    for kind in [None, *plainer]:
        try:
            data = pickle.dumps(outcome if kind is None else (True, kind(str(value))))
            pickle.loads(data)
            return data
        except Exception:  # try the next, plainer form
            continue
    return pickle.dumps((True, OSError(f"{type(value).__name__}: {value}")))


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def run_as_container_root(maps: IdMaps, argv: list[str]) -> int:
    """`pysandbox unshare`: run `argv` as root of a user namespace mapped as the containers'
    are (to look at, change or remove what belongs to their ids); its exit status, 128+N when
    killed by signal N, 127/126 when it cannot be found or run. Ctrl-C is the command's."""
    import signal

    ignored = [signal.signal(signum, signal.SIG_IGN) for signum in (signal.SIGINT, signal.SIGQUIT)]
    try:
        return as_container_root(maps, lambda: _run_command(argv))
    finally:
        for signum, previous in zip((signal.SIGINT, signal.SIGQUIT), ignored, strict=True):
            signal.signal(signum, previous)


def _run_command(argv: list[str]) -> int:
    import errno
    import sys

    from pysbx.sandbox.runner import reset_signals

    command = os.fork()
    if command == 0:  # pragma: no cover - execs or _exits
        code = 127
        try:
            reset_signals()
            os.execvp(argv[0], argv)
        except OSError as error:
            code = 127 if error.errno == errno.ENOENT else 126
            print(f"pysandbox: {argv[0]}: {error.strerror}", file=sys.stderr)
        finally:
            os._exit(code)
    from pysbx.sandbox.errors import exit_status

    return exit_status(os.waitpid(command, 0)[1])
