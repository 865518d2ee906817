"""Health checks of detached containers, Docker's HEALTHCHECK: a process the monitor forks
runs the check every `interval` through exec's own path (sandbox.enter: the container's
namespaces, cgroups, user, capabilities, seccomp filter), so a check can do nothing the
container's command could not. Its result goes to health.json in the container's folder
(written whole): `starting` until the first success (failures in the start period do not
count), `healthy`, or `unhealthy` after `retries` failures in a row; the last five results
with the first 4 KiB of their output, as `docker inspect` keeps them. A check that outlives
its timeout is killed with everything it started, and counts as a failure (exit code -1)."""

from __future__ import annotations

import os
import select
import signal
import time
from pathlib import Path
from typing import Any

from pysbx.policies.record import Record
from pysbx.sandbox import procfs, times
from pysbx.sandbox.errors import SandboxError

HEALTH = "health.json"
OUTPUT_LIMIT = 4096
KEPT_RESULTS = 5
NANOSECONDS = 1_000_000_000
MAX_SECONDS = 24 * 3600  # for interval, timeout and start period
MAX_RETRIES = 1000
IMAGE_FLOOR = 1.0  # seconds between two checks an image may ask for (flags follow Docker: 1 ms)


class HealthCheck(Record):
    """What to run (an argv, `sh -c CMD` for CMD-SHELL) and when, in seconds."""

    __slots__ = ("interval", "retries", "start_period", "test", "timeout")

    def __init__(self, test: list[str], interval: float, timeout: float, start_period: float, retries: int) -> None:
        self.test, self.interval, self.timeout = test, interval, timeout
        self.start_period, self.retries = start_period, retries


def parse_duration(text: str, flag: str) -> float:
    """A Go duration as Docker's --health-* flags take it (1m30s, 500ms, 10s), in seconds."""
    seconds = times.parse_duration(text)
    if seconds is None:
        raise SandboxError(f"{flag} {text}: expected a duration such as 30s, 1m30s or 500ms")
    return seconds


def _test_argv(test: list[str], where: str) -> list[str] | None:
    """Docker's Test: ["NONE"] turns checks off, ["CMD", ...] is an argv, ["CMD-SHELL", C]
    runs C with /bin/sh -c; an empty one inherits (here: nothing to inherit)."""
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD" and len(test) > 1:
        return [str(item) for item in test[1:]]
    if test[0] == "CMD-SHELL" and len(test) == 2:
        return ["/bin/sh", "-c", str(test[1])]
    raise SandboxError(f"{where}: expected a Test of NONE, CMD ARG..., or CMD-SHELL COMMAND, got {test[:3]!r}")


def health_check(image: dict[str, Any] | None, flags: Any) -> HealthCheck | None:
    """The image's HEALTHCHECK with the run's --health-* flags over it (Docker's rules: a
    zero or absent time means the default; --no-healthcheck turns the image's off and
    conflicts with every --health-* flag)."""
    given = [flags.health_cmd, flags.health_interval, flags.health_timeout, flags.health_start_period,
             flags.health_retries]  # fmt: skip
    if flags.no_healthcheck:
        if any(value is not None for value in given):
            raise SandboxError("--no-healthcheck conflicts with the --health-* flags")
        return None
    config = image or {}
    test = ["CMD-SHELL", flags.health_cmd] if flags.health_cmd is not None else list(config.get("Test") or [])
    argv = _test_argv(test, "the image's HEALTHCHECK" if flags.health_cmd is None else "--health-cmd")
    if argv is None:
        return None
    times = {}
    for key, flag, image_key, default in (
        ("interval", "--health-interval", "Interval", 30.0),
        ("timeout", "--health-timeout", "Timeout", 30.0),
        ("start_period", "--health-start-period", "StartPeriod", 0.0),
    ):
        value = getattr(flags, f"health_{key}")
        seconds = parse_duration(value, flag) if value is not None else _image_seconds(config, image_key)
        if key != "start_period" and 0 < seconds < 0.001:
            raise SandboxError(f"{flag} {value}: expected at least 1ms (Docker's floor)")
        if seconds > MAX_SECONDS:
            raise SandboxError(f"{flag if value is not None else image_key} {value or seconds}: expected at most 24h")
        times[key] = seconds or default
    if flags.health_interval is None:  # the image's own: at most one check a second (an image
        times["interval"] = max(times["interval"], IMAGE_FLOOR)  # author must not keep the host forking)
    retries = flags.health_retries if flags.health_retries is not None else _image_count(config, "Retries")
    if not 0 <= retries <= MAX_RETRIES:
        raise SandboxError(f"--health-retries {retries}: expected 0 to {MAX_RETRIES}")
    return HealthCheck(argv, times["interval"], times["timeout"], times["start_period"], retries or 3)


def _image_seconds(config: dict[str, Any], key: str) -> float:
    """A time of the image's HEALTHCHECK (nanoseconds), checked: JSON may hold anything."""
    return _image_count(config, key, MAX_SECONDS * NANOSECONDS) / NANOSECONDS


def _image_count(config: dict[str, Any], key: str, limit: int = MAX_RETRIES) -> int:
    value = config.get(key) or 0
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
        raise SandboxError(
            f"the image's HEALTHCHECK: {key} {str(value)[:40]!r}: expected a whole number from 0 to {limit}"
        )
    return value


# ----- the checker, a process of the monitor's ---------------------------------------------------


def start_checker(folder: Path, check: HealthCheck) -> int:
    """Fork the checker; it ends when the monitor does."""
    monitor = os.getpid()
    child = os.fork()
    if child == 0:  # pragma: no cover - the checker's side, which _exits
        code = 1
        try:
            from pysbx.sandbox import linux

            linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
            _quiet_stdio()
            if os.getppid() == monitor:
                Checker(folder, check).run(monitor)
            code = 0
        finally:
            os._exit(code)
    return child


def _quiet_stdio() -> None:
    """No descriptor of the monitor's: its log pipes must close when the container's do."""
    from pysbx.sandbox.stdio import detach_stdio

    detach_stdio()
    os.closerange(3, 65536)


class Checker:
    """The checker's state: the health it last wrote, the failures in a row, the results."""

    def __init__(self, folder: Path, check: HealthCheck) -> None:
        self.folder, self.check = folder, check
        self.status, self.streak = "starting", 0
        self.results: list[dict[str, object]] = []
        self.started: object = None

    def run(self, monitor: int) -> None:
        self.write()
        while os.getppid() == monitor:
            time.sleep(self.check.interval)
            container = _running(self.folder)
            if container is None:
                continue
            if container.status.get("started") != self.started:  # a (re)start: health begins again
                self.started, self.status, self.streak = container.status.get("started"), "starting", 0
                self.write()  # ps tells the last run's health no more
            self.record(container, *probe(container, self.check))

    def record(self, container: Any, began: str, code: int, output: str) -> None:
        self.results = [*self.results, {"start": began, "end": times.now(), "exit_code": code, "output": output}]
        self.results = self.results[-KEPT_RESULTS:]
        if code == 0:
            self.status, self.streak = "healthy", 0
        elif not _in_start_period(container, self.check.start_period):
            self.streak += 1
            if self.streak >= self.check.retries:
                self.status = "unhealthy"
        self.write()

    def write(self) -> None:
        from pysbx.sandbox.containers import write_json

        write_json(self.folder, HEALTH, {"status": self.status, "failing_streak": self.streak, "log": self.results})


def _running(folder: Path) -> Any:
    from pysbx.sandbox.containers import load

    container = load(folder)
    return container if container is not None and container.state() == "running" else None


def _in_start_period(container: Any, seconds: float) -> bool:
    since = times.seconds_since(container.status.get("started"))
    return since is not None and since < seconds


def probe(container: Any, check: HealthCheck) -> tuple[str, int, str]:
    """Run the check once: when it began, its exit code (-1 when it timed out or could not
    be run), and the start of its output (its output comes through a pipe read here: the
    first OUTPUT_LIMIT bytes are kept, the rest read and dropped, so a check that writes
    without end fills nothing; found by review: a file took 4.7 GB in 20 s)."""
    began = times.now()
    output_r, output_w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs the check through exec's path, then _exits
        os.close(output_r)
        _exec_check(container, check, output_w)
    os.close(output_w)
    try:
        code, text = _collect(child, output_r, check.timeout)
    finally:
        os.close(output_r)
    if code is None:
        return began, -1, f"Health check exceeded timeout ({check.timeout:g}s)"
    return began, code, text.decode(errors="replace")


def _exec_check(container: Any, check: HealthCheck, output: int) -> None:
    code = 1
    try:
        from pysbx.sandbox.enter import exec_in, exec_spec

        os.dup2(output, 1)
        os.dup2(output, 2)
        os.close(output)
        code = exec_in(container, exec_spec(container, check.test, [], None, health_check=True), hear=False)
    except BaseException as error:
        os.write(2, f"{error}\n".encode(errors="replace"))
    finally:
        os._exit(code & 0xFF)


def _collect(child: int, output: int, timeout: float) -> tuple[int | None, bytes]:
    """The child's exit status (None after killing what it started, at `timeout`) and the
    first OUTPUT_LIMIT bytes it wrote."""
    from pysbx.sandbox.errors import exit_status

    kept = bytearray()
    deadline = time.monotonic() + timeout
    reading, status = True, None
    while True:
        if status is None:
            done, waited = os.waitpid(child, os.WNOHANG)
            status = waited if done else None
        # Once it has exited, what it wrote is in the pipe already: read that, and do not
        # wait for the end of a pipe that something it left running holds open (Docker's
        # result is the check's exit code; found by review: it was scored a timeout).
        if reading and select.select([output], [], [], 0 if status is not None else 0.01)[0]:
            data = os.read(output, 65536)
            reading = bool(data)
            kept += data[: max(0, OUTPUT_LIMIT - len(kept))]
        elif status is not None:
            return exit_status(status), bytes(kept)
        elif not reading:
            time.sleep(0.01)
        if time.monotonic() > deadline:
            if status is not None:
                return exit_status(status), bytes(kept)
            kill_check(child)
            os.waitpid(child, 0)
            return None, bytes(kept)


def kill_check(child: int) -> None:
    """SIGKILL to everything the check started: the processes below `child`, and every
    process of the sessions they lead (exec makes the command a session leader, so what it
    left in the background is found even once its parent is gone). Each goes through a
    pidfd opened before it is checked to still be below the check or in one of its
    sessions, so a pid reused meanwhile is never signalled (found by review)."""
    below = procfs.descendants(child)
    leaders = {pid for pid in below if procfs.session(pid) == pid}
    members = (
        [pid for pid in procfs.all_pids() if pid not in below and procfs.session(pid) in leaders] if leaders else []
    )
    chain = {child, *below}
    for pid in [*below, *members]:
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            continue
        try:
            if procfs.parent(pid) in chain or procfs.session(pid) in leaders:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except OSError:
            pass
        finally:
            os.close(pidfd)
    os.kill(child, signal.SIGKILL)  # ours, not yet reaped: its pid cannot have been reused


def read_health(folder: Path) -> dict[str, Any] | None:
    """health.json as the checker last wrote it, or None."""
    from pysbx.sandbox.containers import read_json

    try:
        return read_json(folder, HEALTH)
    except (OSError, ValueError, SandboxError):
        return None
