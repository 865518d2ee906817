"""Times as a container's files hold them (RFC 3339 in UTC, to the microsecond, with Z) and
durations as Docker's flags take them (Go's: 1m30s, 500ms): one reading of each, for ps's
"2 minutes ago", logs --since/--until, the health checker's start period and --health-*."""

from __future__ import annotations

import datetime
import re

UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")


def now() -> str:
    return stamp(datetime.datetime.now(datetime.UTC))


def stamp(moment: datetime.datetime) -> str:
    """`moment` as the files write it: 2026-12-05T10:00:00.000000Z."""
    return moment.astimezone(datetime.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_stamp(text: object) -> datetime.datetime | None:
    """A time as written (a naive one read as UTC), or None when it is not one."""
    try:
        moment = datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


def seconds_since(text: object) -> float | None:
    moment = parse_stamp(text)
    return None if moment is None else (datetime.datetime.now(datetime.UTC) - moment).total_seconds()


def parse_duration(text: str) -> float | None:
    """A Go duration in seconds ("0" too), or None when `text` is not one."""
    if text == "0":
        return 0.0
    parts = _DURATION.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        return None
    return sum(float(number) * UNITS[unit] for number, unit in parts)
