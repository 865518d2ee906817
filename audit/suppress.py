"""Suppressions teams can live with: inline `# pyaudit: ignore[RULE] reason` comments, the
policy's ignore list (each entry with a reason, some with an expiry date), and baselines."""

from __future__ import annotations

import fnmatch
import json
import re

from pysbx.audit.catalog import find_rule
from pysbx.audit.findings import Finding
from pysbx.audit.inputs import TEXT_LIMIT, AuditInputError, read_regular
from pysbx.audit.rules import finding

TYPE_CHECKING = False  # datetime and typing are not on pyaudit's start for one Dockerfile
if TYPE_CHECKING:
    import datetime

    from pysbx.policies.model import Ignore

_INLINE = re.compile(r"#\s*pyaudit:\s*ignore\[([^\]]*)\]\s*(.*)$")


def matches_rule(key: str, found: Finding) -> bool:
    """A key names a rule by id or name, or a whole category."""
    rule = find_rule(key)
    return (rule is not None and rule.id == found.rule_id) or key == found.category


def inline_suppressions(text: str, target: str) -> tuple[dict[int, tuple[list[str], str]], list[Finding]]:
    """Line -> (rule keys, reason) for every `# pyaudit: ignore[...]` comment; a comment
    covers its own line and the next one. Comments without a reason are reported."""
    covered: dict[int, tuple[list[str], str]] = {}
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        match = _INLINE.search(line)
        if not match:
            continue
        keys = [key.strip() for key in match.group(1).split(",") if key.strip()]
        reason = match.group(2).strip()
        if not reason:
            problems.append(
                finding("suppression-without-reason", target, f"ignore[{match.group(1)}] gives no reason", number)
            )
        covered[number] = covered[number + 1] = (keys, reason or "(no reason given)")
    return covered, problems


def apply_inline(findings: list[Finding], covered: dict[int, tuple[list[str], str]]) -> None:
    for found in findings:
        if found.line is None or found.line not in covered:
            continue
        keys, reason = covered[found.line]
        if any(matches_rule(key, found) for key in keys):
            found.suppressed = f"inline: {reason}"


def apply_policy_ignores(
    findings: list[Finding],
    ignores: tuple[Ignore, ...],
    today: datetime.date | None,
    policy_file: str,
    line: int | None,
) -> list[Finding]:
    """Mark what the policy ignores; return findings about expired entries. `today` None:
    the date now, read only when an entry has an expiry (datetime is not on pyaudit's start)."""
    expired = []
    for entry in ignores:
        if entry.expires is not None and entry.expires < (today or _today()):
            expired.append(
                finding(
                    "expired-ignore",
                    policy_file,
                    f"ignore of {entry.rule!r} expired on {entry.expires.isoformat()} ({entry.reason})",
                    line,
                )
            )
            continue
        for found in findings:
            if found.suppressed or not matches_rule(entry.rule, found):
                continue
            if entry.target is not None and not fnmatch.fnmatch(found.target, entry.target):
                continue
            if entry.path is not None and found.path != entry.path:
                continue
            found.suppressed = f"policy: {entry.reason}"
    return expired


def _today() -> datetime.date:
    import datetime

    return datetime.date.today()


def read_baseline(path: str) -> set[str]:
    try:
        document = json.loads(read_regular(path, TEXT_LIMIT, follow=True))
    except AuditInputError as error:
        raise ValueError(str(error)) from None
    except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError, nesting
        raise ValueError(f"{path}: not a pyaudit baseline ({error})") from None
    fingerprints = document.get("fingerprints") if isinstance(document, dict) else None
    if not isinstance(fingerprints, list):
        raise ValueError(f"{path}: not a pyaudit baseline (no fingerprints list)")
    if document.get("version") != BASELINE_VERSION:
        raise ValueError(
            f"{path}: a baseline of an older pyaudit, whose fingerprints could not tell two services, "
            "containers or stages of one file apart; write it again with --write-baseline"
        )
    return {str(item) for item in fingerprints}


BASELINE_VERSION = 2


def baseline_text(findings: list[Finding]) -> str:
    fingerprints = sorted({found.fingerprint for found in findings})
    document = {"tool": "pyaudit", "version": BASELINE_VERSION, "fingerprints": fingerprints}
    return json.dumps(document, indent=2) + "\n"
