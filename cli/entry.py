"""The `pysandbox` console script. `run` goes straight to its argparse front end, so that
starting a container imports no CLI framework, and so do `conformance` (a process per
verification) and the plain forms of `ps`, `stop` and `exec` (cli.lifecycle_cmd);
everything else goes to the typer app."""

from __future__ import annotations

import os
import sys


def main() -> None:
    try:
        _main()
    except BrokenPipeError:  # `pysandbox ps | head -1`: the reader left; no traceback, SIGPIPE's status
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        os._exit(141)


def _main() -> None:
    if sys.argv[1:2] == ["run"]:
        from pysbx.cli.run_cmd import main as run_main

        _exit_now(run_main(sys.argv[2:]))
    if sys.argv[1:2] in (["ps"], ["stop"], ["exec"]):  # frequent and scripted: no framework when the form is plain
        from pysbx.cli.lifecycle_cmd import fast

        code = fast(sys.argv[1], sys.argv[2:])
        if code is not None:
            _exit_now(code)
    if sys.argv[1:2] == ["conformance"]:  # the conformance harness starts a process per case
        from pysbx.cli.conformance_cmd import main as conformance_main

        sys.exit(conformance_main(sys.argv[2:]))
    from pysbx.cli.pysandbox_app import main as cli_main

    cli_main()


def _exit_now(code: int) -> None:
    """Leave as soon as the container's status is known: flush what we printed, then skip
    the interpreter's teardown (module and object cleanup: milliseconds nobody waits for)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
