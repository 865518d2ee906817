"""`logs [-f] [--since] [--until] [--tail] [-t]`: the json-file lines the monitor writes
(sandbox.monitor), across its rotated files, followed across rotations."""

from __future__ import annotations

import datetime
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pysbx.sandbox import times
from pysbx.sandbox.containers import LIVE, LOG, Container, reloaded
from pysbx.sandbox.errors import SandboxError

POLL_SECONDS = 0.1  # logs -f


def log_files(container: Container) -> list[Path]:
    """ctr.log and its rotated predecessors, oldest first."""
    rotated = [path for path in container.folder.glob(f"{LOG}.*") if path.suffix[1:].isdigit()]
    return [*sorted(rotated, key=lambda path: int(path.suffix[1:]), reverse=True), container.folder / LOG]


def print_logs(
    container: Container, tail: int | None, timestamps: bool, follow: bool, window: tuple[str, str] = ("", "~")
) -> None:
    """The log, or its last `tail` entries, written between `window` (times as the log
    writes them, log_time makes them); with `follow`, then what comes until the container
    exits (or passes the window's end)."""
    since, until = window
    entries = [e for path in log_files(container) for e in _entries(path) if since <= e.get("time", "") < until]
    for entry in entries[len(entries) - tail :] if tail is not None else entries:
        _show(entry, timestamps)
    if follow:
        _follow(container, timestamps, window)


def log_time(text: str, now: datetime.datetime | None = None) -> str:
    """--since/--until as Docker reads them: an RFC 3339 time (2026-12-05T10:00:00Z, or a
    date), a Unix time (1796464800, 1796464800.5), or a Go duration back from now (90s, 1h30m),
    as the log writes its times."""
    seconds = times.parse_duration(text)
    if seconds is not None:
        return times.stamp((now or datetime.datetime.now(datetime.UTC)) - datetime.timedelta(seconds=seconds))
    if text.replace(".", "", 1).isdigit():
        return times.stamp(datetime.datetime.fromtimestamp(float(text), datetime.UTC))
    moment = times.parse_stamp(text)
    if moment is None:
        raise SandboxError(f"{text}: expected a time (2026-12-05T10:00:00Z), a Unix time or a duration (10m, 1h30m)")
    return times.stamp(moment)


def _entries(path: Path, offset: int = 0) -> Iterator[dict[str, str]]:
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            for line in log:
                if line.endswith(b"\n"):
                    yield json.loads(line)
    except (OSError, ValueError):
        return


def _show(entry: dict[str, str], timestamps: bool) -> None:
    out = sys.stderr if entry.get("stream") == "stderr" else sys.stdout
    out.write((f"{entry.get('time', '')} " if timestamps else "") + str(entry.get("log", "")))
    out.flush()


def _follow(container: Container, timestamps: bool, window: tuple[str, str]) -> None:
    """Print what is appended until the container has exited and its log is complete (the
    monitor records the exit after the log writer has finished), or an entry passes the
    window's end. The file stays open between reads: when the writer rotates it (ctr.log
    becomes ctr.log.1), what was added to it before the rotation is read to its end first,
    then the new ctr.log from its start, so no line is lost between two reads."""
    path = container.folder / LOG
    log = _open_at_end(path)
    try:
        while True:
            done = reloaded(container).state() not in LIVE
            if not _print_new(log, timestamps, window):
                return
            current = _identity(path)
            if log is None or (current is not None and current != os.fstat(log.fileno()).st_ino):
                log = _next_file(container, log, timestamps, window)
                if log is not None:
                    continue  # read the new file at once
            if log is not None and log.tell() > os.fstat(log.fileno()).st_size:  # truncated (max-file=1)
                log.seek(0)
            if done:
                return
            time.sleep(POLL_SECONDS)
    finally:
        if log is not None:
            log.close()


def _next_file(container: Container, log: Any, timestamps: bool, window: tuple[str, str]) -> Any:
    """After a rotation: the rest of the file we had (the writer closed it before renaming
    it), every file rotated after it (several rotations may come between two reads), and the
    new ctr.log, open at its start."""
    files = log_files(container)
    if log is not None:
        _print_new(log, timestamps, window)
        ours = os.fstat(log.fileno()).st_ino
        log.close()
        inodes = [_identity(path) for path in files]
        files = files[inodes.index(ours) + 1 :] if ours in inodes else files[-1:]
    for path in files[:-1]:
        with open(path, "rb") as rotated:
            _print_new(rotated, timestamps, window)
    try:
        return open(files[-1], "rb")
    except OSError:
        return None


def _open_at_end(path: Path) -> Any:
    try:
        log = open(path, "rb")  # noqa: SIM115 - kept open across reads
    except OSError:
        return None
    log.seek(0, os.SEEK_END)
    return log


def _identity(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


def _print_new(log: Any, timestamps: bool, window: tuple[str, str]) -> bool:
    """Print the whole lines added since the last read; False once one passes the window."""
    if log is None:
        return True
    while True:
        start = log.tell()
        line = log.readline()
        if not line.endswith(b"\n"):
            log.seek(start)  # half written: read again next time
            return True
        entry = json.loads(line)
        if entry.get("time", "") >= window[1]:
            return False
        if entry.get("time", "") >= window[0]:
            _show(entry, timestamps)
