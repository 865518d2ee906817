"""`run --explain`'s report: each denied call, the line that denied it, and the policy diff
that would allow it (policies.explain), on stderr once the container is gone; and `pysandbox
explain CONTAINER`, the same for a detached container (run -d --explain), while it runs or
after."""

from __future__ import annotations

import json
import os
import sys

from pysbx.policies.explain import Explanation, errno_name, explain
from pysbx.sandbox import capabilities as capability_sets
from pysbx.sandbox.notify import Heard

PREFIX = "pysandbox: explain:"


def report_run(policy: str, capabilities: int, plain: bytes | None, heard: Heard, as_json: bool, uid: int = 0) -> None:
    """Explain what a run heard under `policy` (as --policy named it), whose root held the
    capabilities of the mask `capabilities` and whose command ran as `uid`; one line of
    JSON instead with `as_json`."""
    from pysbx.policies.errors import PolicyError
    from pysbx.policies.loader import load_policy
    from pysbx.policies.seccomp import SeccompProfileError

    try:
        explanation = explain(load_policy(policy), capability_sets.names(capabilities), plain, heard, uid)
    except (PolicyError, SeccompProfileError, ValueError, KeyError, OSError) as error:  # the run is over: one line
        _write(f"{PREFIX} cannot explain: {str(error).replace(os.linesep, '; ')}\n")
        return
    _write(json.dumps(explanation.as_json()) + "\n" if as_json else text(explanation))


def explain_container(reference: str, as_json: bool) -> int:
    """The report of a detached container started with --explain, on stdout; 1 when there
    is none (no such container, not started with --explain), 2 when it cannot be read."""
    from pysbx.policies.errors import PolicyError
    from pysbx.policies.loader import load_policy
    from pysbx.policies.seccomp import SeccompProfileError
    from pysbx.sandbox.containers import EXPLAIN, EXPLAIN_EXEC, EXPLAIN_LIMIT, find, read_json
    from pysbx.sandbox.errors import SandboxError
    from pysbx.sandbox.notify import heard_from_json, merged
    from pysbx.sandbox.specfile import load_spec

    try:
        container = find(reference)
        spec, _ = load_spec(container.path)
    except (SandboxError, OSError, ValueError, KeyError) as error:
        return _said(f"pysandbox: error: {error}", 1)
    if spec.explain != "explain":
        return _said(
            f"pysandbox: error: {container.name} was not run with --explain (run -d --explain --name NAME ...)", 1
        )
    heard = Heard()
    try:
        for name in (EXPLAIN, EXPLAIN_EXEC):  # the command's, then exec'd processes'
            if os.path.exists(os.path.join(container.path, name)):
                heard = merged(heard, heard_from_json(read_json(container.path, name, EXPLAIN_LIMIT)))
        explanation = explain(
            load_policy(_policy_of(container.record)),
            capability_sets.names(spec.capabilities),
            spec.seccomp_bpf,
            heard,
            spec.user.uid,
        )
    except (PolicyError, SeccompProfileError, SandboxError, OSError, ValueError, KeyError, TypeError) as error:
        return _said(f"pysandbox: error: cannot explain {container.name}: {str(error).replace(os.linesep, '; ')}", 2)
    sys.stdout.write(json.dumps(explanation.as_json()) + "\n" if as_json else text(explanation))
    return 0


def _policy_of(record: dict[str, object]) -> str:
    """The policy `run -d` was given, found from the folder it was given in."""
    from pysbx.policies.loader import BUILTINS

    policy = str(record.get("policy") or "strict")
    run = record.get("run")
    cwd = run.get("cwd") if isinstance(run, dict) else None
    if policy in BUILTINS or os.path.isabs(policy) or not isinstance(cwd, str):
        return policy
    return os.path.join(cwd, policy)


def _said(message: str, code: int) -> int:
    print(message, file=sys.stderr)
    return code


def text(explanation: Explanation) -> str:
    """The report for a person: what was denied and why, then the change."""
    lines = []
    kinds, calls = len(explanation.denials), explanation.total
    if not kinds and not explanation.dropped:
        lines.append(f"{PREFIX} the policy denied no system call")
    else:
        lines.append(f"{PREFIX} the policy denied {_count(kinds, 'kind')} of system call ({_count(calls, 'call')})")
    for item in explanation.denials:
        times = f"  ({_count(item.count, 'time')})" if item.count > 1 else ""
        lines.append(f"  {item.call} -> {errno_name(item.errno)}{times}")
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


def _write(text: str) -> None:
    sys.stderr.flush()
    os.write(2, text.encode(errors="backslashreplace"))
