"""One `pyaudit TARGET...` run, typer-free: the typer command (cli.pyaudit_app) and the lean
front end for the common invocation (cli.pyaudit_entry) both end here, so that a pre-commit
hook or an editor's on-save check, a process per file, does not import a CLI framework."""

from __future__ import annotations

import sys

from pysbx.cli.exits import EXIT_BAD_INPUT
from pysbx.policies.record import Record

EXIT_FINDINGS = 1
VERSIONED = ("json", "sarif")  # the formats that print the tool's version


class AuditRequest(Record):
    """The command line, read: every option of `pyaudit TARGET...` but --version."""

    __slots__ = (
        "baseline",
        "fail_on",
        "only",
        "output",
        "output_format",
        "policy",
        "skip",
        "skip_non_inputs",
        "targets",
        "verbose",
        "write_baseline",
    )

    def __init__(self, targets: list[str]) -> None:
        self.targets = targets
        self.output_format = "text"
        self.output: str | None = None
        self.fail_on: str | None = None
        self.policy: str | None = None
        self.only: list[str] = []
        self.skip: list[str] = []
        self.baseline: str | None = None
        self.write_baseline: str | None = None
        self.skip_non_inputs = False
        self.verbose = False


def split_list(values: list[str] | None) -> list[str]:
    """Repeated and comma-separated --only/--skip values as one list."""
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


def run_audit(request: AuditRequest) -> int:
    """Audit, report, and the exit status: 0, 1 for findings at or above the gate, 2 for a
    usage or input error (said on stderr in one line)."""
    from pysbx.audit.catalog import CATEGORIES, find_rule
    from pysbx.audit.detect import AuditInputError
    from pysbx.audit.engine import AuditOptions, audit
    from pysbx.audit.suppress import read_baseline
    from pysbx.cli.imagearg import StoredImages
    from pysbx.policies.errors import PolicyError
    from pysbx.signing.errors import VerificationError

    options = AuditOptions(
        fail_on=request.fail_on,
        only=split_list(request.only),
        skip=split_list(request.skip),
        skip_non_inputs=request.skip_non_inputs,
        stored=StoredImages(),
    )
    for key in options.only + options.skip:
        if find_rule(key) is None and key not in CATEGORIES:
            return _error(f"--only/--skip {key!r}: no such rule or category (see pyaudit rules)")
    try:
        if request.policy is not None:
            from pysbx.policies.loader import load_policy

            loaded = load_policy(request.policy)
            options.policy, options.policy_file = loaded.policy, loaded.chain[0]
            location = loaded.locations.get(("audit", "ignore"))
            options.policy_ignore_line = location[1] if location else None
        if request.baseline is not None:
            options.baseline = read_baseline(request.baseline)
        result = audit(request.targets, options)
    except (AuditInputError, ValueError, VerificationError) as error:
        return _error(str(error))
    except PolicyError as error:
        return _error(str(error).replace("\n", "; "))
    if request.output_format in VERSIONED or request.write_baseline is not None:
        from pysbx.cli.version import package_version

        result.tool_version = package_version()
    return _report(request, result)


def _report(request: AuditRequest, result: object) -> int:
    from pysbx.audit.engine import AuditResult
    from pysbx.audit.formats import renderer
    from pysbx.audit.suppress import baseline_text

    assert isinstance(result, AuditResult)
    if request.verbose:
        for path, reason in result.skipped:
            _say(f"pyaudit: skipped {path}: {reason}")
    for problem in result.input_errors:
        _say(f"pyaudit: error: {problem.message}")
    if request.write_baseline is not None:
        recorded = [found for found in result.findings if found not in result.input_errors]
        if not _written(request.write_baseline, baseline_text(recorded)):
            return EXIT_BAD_INPUT
        _say(f"wrote {len(recorded)} findings to {request.write_baseline}")
        return EXIT_BAD_INPUT if result.input_errors else 0
    colour = request.output is None and request.output_format == "text" and sys.stdout.isatty()
    report = renderer(request.output_format)(result, colour)
    if request.output is None:
        sys.stdout.write(report)
        sys.stdout.flush()
    elif not _written(request.output, report):
        return EXIT_BAD_INPUT
    if result.input_errors:
        return EXIT_BAD_INPUT  # what was read is reported; what was not fails the run
    return EXIT_FINDINGS if result.failed else 0


def _written(path: str, text: str) -> bool:
    from pathlib import Path

    from pysbx.images.outfile import write_atomically

    try:
        write_atomically(Path(path), text.encode())
    except OSError as error:
        _error(f"{path}: cannot write ({error.strerror or error})")
        return False
    return True


def _error(message: str) -> int:
    _say(f"pyaudit: error: {message}")
    return EXIT_BAD_INPUT


def _say(message: str) -> None:
    sys.stdout.flush()
    print(message, file=sys.stderr, flush=True)
