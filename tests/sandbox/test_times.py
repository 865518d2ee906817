"""sandbox.times and the readers built on it: logs --since/--until take what Docker's take
(an RFC 3339 time or date, a Unix time, a Go duration such as 1h30m: found by review, only
90s/10m/2h were read), and the --health-* flags the same durations."""

from __future__ import annotations

import datetime

import pytest

from pysbx.sandbox import times
from pysbx.sandbox.errors import SandboxError
from pysbx.sandbox.health import parse_duration
from pysbx.sandbox.logs import log_time

NOW = datetime.datetime(2026, 12, 5, 10, 0, 0, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", "2026-12-05T09:58:30.000000Z"),
        ("1h30m", "2026-12-05T08:30:00.000000Z"),
        ("500ms", "2026-12-05T09:59:59.500000Z"),
        ("2026-12-05T09:00:00Z", "2026-12-05T09:00:00.000000Z"),
        ("2026-12-05T10:00:00+01:00", "2026-12-05T09:00:00.000000Z"),
        ("2026-12-04", "2026-12-04T00:00:00.000000Z"),
        ("1796464800", "2026-12-05T10:00:00.000000Z"),
        ("1796464800.25", "2026-12-05T10:00:00.250000Z"),
    ],
)
def test_logs_since_reads_what_dockers_reads(text: str, expected: str) -> None:
    assert log_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "10x", "1h30", "-5m", ""])
def test_anything_else_is_one_clear_error(text: str) -> None:
    with pytest.raises(SandboxError, match="expected a time"):
        log_time(text, NOW)


def test_durations_and_stamps_read_back_what_they_write() -> None:
    assert times.parse_duration("1m30s") == 90.0 and times.parse_duration("0") == 0.0
    assert times.parse_duration("1.5h") == 5400.0 and times.parse_duration("30") is None
    assert times.parse_stamp(times.stamp(NOW)) == NOW and times.parse_stamp("not a time") is None
    assert parse_duration("250ms", "--health-timeout") == 0.25
    with pytest.raises(SandboxError, match="--health-interval 5: expected a duration"):
        parse_duration("5", "--health-interval")
