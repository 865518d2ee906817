"""`--format text`: a table per target for people, colour on a terminal, and for images a
small bar chart of layer sizes and wasted bytes, as dive users expect."""

from __future__ import annotations

from pysbx.audit.engine import AuditResult
from pysbx.audit.findings import severity_rank
from pysbx.policies.model import SEVERITIES
from pysbx.policies.values import format_size

_COLOURS = {
    "critical": "\x1b[1;31m",
    "high": "\x1b[31m",
    "medium": "\x1b[33m",
    "low": "\x1b[36m",
    "info": "\x1b[2m",
}
_RESET = "\x1b[0m"


def render(result: AuditResult, colour: bool = False) -> str:
    lines: list[str] = []
    by_target: dict[str, list] = {target: [] for target in result.targets}  # type: ignore[type-arg]
    for found in result.findings:
        by_target.setdefault(found.target, []).append(found)
    for target, findings in by_target.items():
        if not findings:
            continue
        lines.append(f"{target} ({result.kinds.get(target, 'policy')})")
        for found in sorted(findings, key=lambda f: (f.line or 0, severity_rank(f.severity))):
            severity = found.severity.upper().ljust(8)
            if colour:
                severity = f"{_COLOURS[found.severity]}{severity}{_RESET}"
            where = f"{found.line:>5}" if found.line else "    -"
            lines.append(f"  {where}  {severity} {found.rule_id} {found.message}")
        lines.append("")
    for summary in result.images:
        lines += _image_chart(summary)
    counts = ", ".join(f"{sum(f.severity == s for f in result.findings)} {s}" for s in SEVERITIES)
    verdict = "FAIL" if result.failed else "pass"
    suppressed = f", {len(result.suppressed)} suppressed" if result.suppressed else ""
    lines.append(
        f"{len(result.targets)} targets, {len(result.findings)} findings ({counts}){suppressed}; "
        f"fail on {result.fail_on}: {verdict}"
    )
    return "\n".join(lines) + "\n"


def _image_chart(summary: object) -> list[str]:
    layers = getattr(summary, "layers", [])
    biggest = max((int(layer["files_bytes"]) for layer in layers), default=0) or 1
    lines = [f"{getattr(summary, 'target', '')}: layers (bar: bytes, x: wasted)"]
    for index, layer in enumerate(layers, start=1):
        size, wasted = int(layer["files_bytes"]), int(layer["wasted_bytes"])
        width = round(30 * size / biggest)
        waste = round(30 * wasted / biggest)
        bar = ("#" * max(0, width - waste) + "x" * waste).ljust(30)
        lines.append(f"  {index:>3} {bar} {format_size(size):>8}  {str(layer['created_by'])[:60]}")
    efficiency = getattr(summary, "dive_efficiency", 1.0)
    lines.append(f"  wasted {format_size(getattr(summary, 'wasted_bytes', 0))}; dive efficiency {efficiency:.4f}")
    lines.append("")
    return lines
