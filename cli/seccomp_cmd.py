"""`pysandbox seccomp compile`: a seccomp profile to BPF or to readable pseudo code."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from pysbx.cli.kit import fail, write_atomically
from pysbx.policies.seccomp import (
    BUILTIN_PROFILES,
    Compiled,
    SeccompProfileError,
    compile_bpf,
    compile_pfc,
    libseccomp_version,
    load_profile,
    resolve_architectures,
)
from pysbx.policies.values import normalize_capability
from pysbx.sandbox.errors import EXIT_SETUP_FAILED

app = typer.Typer(
    help="Compile seccomp profiles (Docker/OCI JSON) with libseccomp.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.command("compile")
def compile_cli(
    profile: Annotated[
        str,
        typer.Argument(help=f"{' or '.join(BUILTIN_PROFILES)}, or a Docker/OCI seccomp JSON file.", metavar="PROFILE"),
    ],
    bpf: Annotated[
        Path | None,
        typer.Option(
            "--bpf",
            help="Write the BPF program here (what prctl(PR_SET_SECCOMP) and bwrap --seccomp take).",
            metavar="FILE",
        ),
    ] = None,
    pfc: Annotated[bool, typer.Option("--pfc", help="Print libseccomp's readable pseudo filter code.")] = False,
    cap: Annotated[
        list[str] | None,
        typer.Option("--cap", help="A capability the process will hold, such as SYS_ADMIN; repeatable."),
    ] = None,
    deny: Annotated[
        list[str] | None,
        typer.Option("--deny", help="A system call to refuse with EPERM; repeatable.", metavar="SYSCALL"),
    ] = None,
    allow: Annotated[
        list[str] | None, typer.Option("--allow", help="A system call to allow; repeatable.", metavar="SYSCALL")
    ] = None,
) -> None:
    """Resolve PROFILE for the given capabilities on this machine's architecture and kernel,
    as `pysandbox run` does, and compile it with libseccomp."""
    compile_command(profile, bpf, pfc, cap or [], deny or [], allow or [])


def compile_command(
    profile: str,
    bpf: Path | None,
    pfc: bool,
    capabilities: list[str],
    deny: list[str] | None = None,
    allow: list[str] | None = None,
) -> None:
    """What `pysandbox seccomp compile` does: the summary line goes to stdout, or to stderr
    when stdout carries the pseudo code; notes go to stderr."""
    caps = frozenset(_capability(name) for name in capabilities)
    try:
        loaded = load_profile(profile)
        started = time.perf_counter()
        compiled = compile_bpf(loaded, caps, deny or (), allow or ())
        elapsed = time.perf_counter() - started
        if bpf is not None:
            try:
                write_atomically(bpf, compiled.bpf)
            except OSError as error:
                raise OSError(error.errno, f"cannot write the BPF program: {error.strerror}", str(bpf)) from None
        code = compile_pfc(loaded, caps, deny or (), allow or ()) if pfc else ""
    except SeccompProfileError as error:
        fail("pysandbox", str(error), EXIT_SETUP_FAILED)
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        fail("pysandbox", f"{where}{error.strerror or error}", EXIT_SETUP_FAILED)
    for note in compiled.notes:
        typer.echo(f"note: {note}", err=True)
    if pfc:
        typer.echo(code, nl=False)
    typer.echo(_summary(profile, loaded.source, compiled, elapsed, bpf, resolve_architectures(loaded)), err=pfc)


def _capability(name: str) -> str:
    normalized = normalize_capability(name)
    if normalized is None or normalized == "ALL":
        fail("pysandbox", f"--cap {name!r}: not a Linux capability such as SYS_ADMIN", EXIT_SETUP_FAILED)
    return normalized


def _summary(
    profile: str, source: str, compiled: Compiled, elapsed: float, bpf: Path | None, architectures: tuple[str, ...]
) -> str:
    arches = "+".join(name.removeprefix("SCMP_ARCH_").lower() for name in architectures) or "native"
    where = f", wrote {bpf}" if bpf is not None else ""
    name = profile if profile in BUILTIN_PROFILES else source
    return (
        f"compiled {name} for {arches} with libseccomp {libseccomp_version()}: {compiled.instructions} "
        f"instructions ({len(compiled.bpf)} bytes) in {elapsed * 1000:.0f} ms{where}"
    )
