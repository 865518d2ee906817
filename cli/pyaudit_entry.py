"""The `pyaudit` console script. The common invocation is read here and audited without a
CLI framework (cli.audit_run): `pyaudit [--format F] [--fail-on S] [--policy P] [--only R]
[--skip R] [--output PATH] [--baseline FILE] [--write-baseline FILE] [--skip-non-inputs]
[-v] TARGET...`, each option also as --name=value. A pre-commit hook or an editor's check on
save starts a process per file: typer and what it imports (pydantic, click) cost one about
90 ms before it reads a byte. Anything else (--help, --version, `rules`, a value outside its
choices, an option it does not know, `--`, shell completion) goes to the typer app
(cli.pyaudit_app), so help and usage errors are as they always were."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pysbx.cli.audit_run import AuditRequest

VALUED = {
    "--format": "output_format",
    "--fail-on": "fail_on",
    "--policy": "policy",
    "--output": "output",
    "--baseline": "baseline",
    "--write-baseline": "write_baseline",
}
LISTED = {"--only": "only", "--skip": "skip"}
FLAGS = {"--skip-non-inputs": "skip_non_inputs", "--verbose": "verbose", "-v": "verbose"}


def main() -> None:
    try:
        request = lean_request(sys.argv[1:]) if not _completing() else None
        if request is None:
            from pysbx.cli.pyaudit_app import main as app_main

            app_main()
            return
        from pysbx.cli.audit_run import run_audit

        code = run_audit(request)
    except BrokenPipeError:  # `pyaudit . | head -1`: the reader left; no traceback, SIGPIPE's status
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        os._exit(141)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # the interpreter's teardown is milliseconds nobody waits for


def lean_request(argv: list[str]) -> AuditRequest | None:
    """The request when `argv` is the common invocation, read as the typer app reads it;
    None for anything else."""
    from pysbx.cli.audit_run import AuditRequest

    request, targets, index = AuditRequest([]), [], 0
    while index < len(argv):
        word = argv[index]
        name, equals, attached = word.partition("=")
        if name in VALUED or name in LISTED:
            if not equals and index + 1 == len(argv):
                return None  # typer says what is missing
            value = attached if equals else argv[index + 1]
            index += 1 if equals else 2
            if name in LISTED:
                getattr(request, LISTED[name]).append(value)
            else:
                setattr(request, VALUED[name], value)
        elif word in FLAGS:
            setattr(request, FLAGS[word], True)
            index += 1
        elif word == "-" or not word.startswith("-"):
            targets.append(word)
            index += 1
        else:
            return None
    if not targets or argv[:1] == ["rules"] or not _valid_choices(request):  # `rules`: the catalogue
        return None
    request.targets = targets
    return request


def _valid_choices(request: AuditRequest) -> bool:
    """--format and --fail-on as the typer app takes them (--fail-on in any case)."""
    from pysbx.audit.findings import NEVER
    from pysbx.audit.formats import FORMATS
    from pysbx.policies.severity import SEVERITIES

    if request.fail_on is not None:
        request.fail_on = request.fail_on.lower()
        if request.fail_on not in (*SEVERITIES, NEVER):
            return False
    return request.output_format in FORMATS


def _completing() -> bool:
    """typer's shell completion asks through these variables."""
    return any(key.startswith("_PYAUDIT_COMPLETE") or key == "_TYPER_COMPLETE_ARGS" for key in os.environ)
