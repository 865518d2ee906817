"""`run --explain`'s report: each denied call, the line that denied it, and the policy diff
that would allow it (policies.explain), on stderr once the container is gone."""

from __future__ import annotations

import json
import os
import sys

from pysbx.policies.explain import Explanation, explain
from pysbx.sandbox.capabilities import CAPABILITY_NUMBERS
from pysbx.sandbox.notify import Heard

PREFIX = "pysandbox: explain:"


def report_run(policy: str, capabilities: int, plain: bytes | None, heard: Heard, as_json: bool) -> None:
    """Explain what a run heard under `policy` (as --policy named it), whose command held the
    capabilities of the mask `capabilities`; one line of JSON instead with `as_json`."""
    from pysbx.policies.errors import PolicyError
    from pysbx.policies.loader import load_policy
    from pysbx.policies.seccomp import SeccompProfileError

    try:
        explanation = explain(load_policy(policy), granted_by(capabilities), plain, heard)
    except (PolicyError, SeccompProfileError, OSError) as error:
        _write(f"{PREFIX} cannot explain: {str(error).replace(os.linesep, '; ')}\n")
        return
    _write(json.dumps(explanation.as_json()) + "\n" if as_json else text(explanation))


def granted_by(capabilities: int) -> frozenset[str]:
    """The names of the capabilities in a mask."""
    return frozenset(name for name, number in CAPABILITY_NUMBERS.items() if capabilities >> number & 1)


def text(explanation: Explanation) -> str:
    """The report for a person: what was denied and why, then the change."""
    lines = []
    kinds, calls = len(explanation.denials), explanation.total
    if not kinds and not explanation.dropped:
        lines.append(f"{PREFIX} the policy denied no system call")
    else:
        lines.append(f"{PREFIX} the policy denied {_count(kinds, 'kind')} of system call ({_count(calls, 'call')})")
    for item in explanation.denials:
        errno_name = _errno(item.errno)
        lines.append(f"  {item.call} -> {errno_name}" + (f"  ({_count(item.count, 'time')})" if item.count > 1 else ""))
        lines.append(f"      {item.reason}")
        lines += [f"      at {shown_path(place.file)}:{place.line} ({place.what})" for place in item.places]
    if explanation.changes:
        target = shown_path(explanation.target)
        lines.append(f"{PREFIX} the change to {target} that would allow it (as `policy diff` shows it):")
        width = max(len(change.describe()) for change in explanation.changes)
        lines += [f"  {change.describe():<{width}}  {change.effect}" for change in explanation.changes]
    lines += [f"{PREFIX} note: {note}" for note in explanation.notes]
    return "".join(f"{line}\n" for line in lines)


def shown_path(path: str) -> str:
    """A file under the current folder as a path from it (what an editor opens), any other
    as it is."""
    if not os.path.isabs(path) or os.getcwd() == "/":
        return path
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _errno(number: int) -> str:
    import errno

    return errno.errorcode.get(number, str(number)) if number else "0 (faked success)"


def _write(text: str) -> None:
    sys.stderr.flush()
    os.write(2, text.encode(errors="backslashreplace"))
