"""`pysandbox learn [--base POLICY] [-o FILE] [--compare-output] [--force] [RUN FLAGS] IMAGE
[CMD...]`: run a workload once under observation, write the policy it needs (policies.learn),
lint it, and run it again under that policy: a policy whose replay differs is not offered as
working (exit 1)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from pysbx.cli.runargs import RunArgs, parse

EXIT_USAGE = 2
EXIT_SETUP_FAILED = 125
PREFIX = "pysandbox learn:"
USAGE = """Usage: pysandbox learn [OPTIONS] [RUN FLAGS] IMAGE [CMD...]

Run IMAGE's command once with every system call observed (each goes on, within the default
profile under the base's capabilities and the base's other confinement: learn only images you
trust), then
write FILE: a policy extending the base whose seccomp profile is the base's cut to the calls
made, plus the calls the base refuses, each commented; the base's capabilities that no call
needed dropped; a root no write landed on (or only below /tmp, /run) read-only; the
destinations sent to as its egress list; and its profile beside it. The policy is
linted and the workload run again under it: exit 0 when it ends as observed, 1 when not, 2 for
bad input, 125 when the workload cannot be run. RUN FLAGS are `pysandbox run`'s (-e, -v, -u...).

Options:
  --base POLICY      the policy to learn from: built-in or a file (default: baseline)
  -o, --output FILE  the policy to write (default: learned.yaml; its profile: learned.seccomp.json)
  --compare-output   the replay must also print what the observed run printed
  --force            replace FILE and its profile when they exist
  -h, --help         this help"""


class _Options:
    def __init__(self) -> None:
        self.base = "baseline"
        self.output = "learned.yaml"
        self.compare_output = False
        self.force = False


def main(argv: list[str]) -> int:
    options, run_argv = split_arguments(argv)
    if options is None:
        print(USAGE, file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if argv[:1] in (["-h"], ["--help"]) else EXIT_USAGE
    output = Path(options.output).absolute()
    profile = output.with_suffix(".seccomp.json")
    if output.suffix not in (".yaml", ".yml"):
        return _fail(f"--output {options.output}: a policy file ends in .yaml", EXIT_USAGE)
    for path in (output, profile):
        if path.exists() and not options.force:
            return _fail(f"{path} exists: --force replaces it", EXIT_USAGE)
    try:
        observed = parse(["--rm", "--policy", options.base, *run_argv])
    except SystemExit as done:
        return EXIT_SETUP_FAILED if done.code else 0
    refusal = _refused_flags(observed, run_argv)
    if refusal:
        return _fail(refusal, EXIT_USAGE)
    return _learn(options, observed, run_argv, output, profile)


def _learn(options: _Options, observed: RunArgs, run_argv: list[str], output: Path, profile: Path) -> int:
    from pysbx.policies.errors import PolicyError
    from pysbx.policies.learn import LearnError, learn
    from pysbx.policies.loader import load_policy
    from pysbx.policies.seccomp import SeccompProfileError
    from pysbx.sandbox import capabilities
    from pysbx.sandbox.notify import Heard

    workload = shlex.join([observed.image, *observed.command])
    observed.observe = True
    status, seen = _captured(lambda: _run(observed), options.compare_output)
    heard = observed.heard
    if not isinstance(heard, Heard):
        return _fail(f"the workload did not run (exit {status}): nothing was observed", EXIT_SETUP_FAILED)
    _say(f"observed {len(heard.denials)} kinds of system call ({heard.total} calls) of {workload}: exit {status}")
    for limit, count in sorted(heard.limits.items()):  # the learned policy keeps the base's limits
        _say(f"note: limits.{limit} was reached {count} time(s) while learning: the policy keeps the base's")
    try:
        base = load_policy(options.base)
        learned = learn(options.base, base, capabilities.names(observed.capabilities_held), heard, output, workload)
    except (LearnError, PolicyError, SeccompProfileError, OSError) as error:
        return _fail(str(error).replace("\n", "; "), EXIT_USAGE)
    _write(profile, learned.profile_text)
    _write(output, learned.policy_text)
    _say(
        f"wrote {_shown(output)} and {_shown(profile)}: {Path(options.base).stem} allows {learned.base_allows} "
        f"system calls here, this policy {learned.learned_allows} (narrower by {learned.narrower_by})"
        + (f"; it adds {', '.join(learned.added)}, which {Path(options.base).stem} refuses" if learned.added else "")
    )
    granted = capabilities.names(observed.capabilities_held)
    if learned.capabilities_kept != granted:
        dropped = ", ".join(sorted(granted - learned.capabilities_kept))
        _say(
            f"capabilities: {Path(options.base).stem} grants {len(granted)}, this policy "
            f"{len(learned.capabilities_kept)} (no call needed {dropped})"
        )
    for name, why in learned.failed.items():
        _say(f"not added: {name}: {why}")
    problems = _lint(output)
    if problems:
        for problem in problems:
            print(f"{PREFIX} {problem}", file=sys.stderr)
        return _fail("the learned policy does not lint: it is not offered", EXIT_USAGE)
    _say(f"policy lint {_shown(output)}: clean")
    replayed = parse(["--rm", "--policy", str(output), *run_argv])
    again, shown = _captured(lambda: _run(replayed), options.compare_output)
    if again != status or (options.compare_output and shown != seen):
        what = f"exit {again} instead of {status}" if again != status else "other output than observed"
        return _fail(f"replayed under {_shown(output)}: {what}: this policy does not run the workload as observed", 1)
    _say(
        f"replayed under {_shown(output)}: exit {again} as observed"
        + (", same output" if options.compare_output else "")
    )
    return 0


def split_arguments(argv: list[str]) -> tuple[_Options | None, list[str]]:
    """learn's own flags (first), and the rest for `run`."""
    options, index = _Options(), 0
    valued = {"--base": "base", "-o": "output", "--output": "output"}
    while index < len(argv):
        word = argv[index]
        name, equals, attached = word.partition("=")
        if word in ("-h", "--help"):
            return None, []
        if name in valued:
            if equals:
                setattr(options, valued[name], attached)
                index += 1
                continue
            if index + 1 == len(argv):
                return None, []
            setattr(options, valued[name], argv[index + 1])
            index += 2
        elif word in ("--compare-output", "--force"):
            setattr(options, word[2:].replace("-", "_"), True)
            index += 1
        else:
            break
    if index == len(argv):
        return None, []
    return options, argv[index:]


def _refused_flags(args: RunArgs, run_argv: list[str]) -> str:
    if args.detach:
        return "-d: learn watches the workload to its end, in the foreground"
    if args.explain or args.explain_json:
        return "--explain: learn hears every call already"
    if any(word == "--policy" or word.startswith("--policy=") for word in run_argv[: run_argv.index(args.image)]):
        return "--policy: learn's base policy is --base, given before the run flags"
    return ""


def _run(args: RunArgs) -> int:
    from pysbx.cli.run_cmd import run_args

    return run_args(args)


def _captured(run: Callable[[], int], capture: bool) -> tuple[int, bytes]:
    """Run; with `capture`, what the container printed on stdout is printed after it, and
    its SHA-256 returned (not the output itself: a workload may print without end)."""
    if not capture:
        return run(), b""
    sys.stdout.flush()
    saved = os.dup(1)
    digest = hashlib.sha256()
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        try:
            status = run()
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        sink.seek(0)
        while chunk := sink.read(1 << 20):
            digest.update(chunk)
            os.write(1, chunk)
    return status, digest.digest()


def _lint(path: Path) -> list[str]:
    from pysbx.policies.errors import PolicyError
    from pysbx.policies.loader import load_policy
    from pysbx.policies.references import referenced_file_problems

    try:
        problems = referenced_file_problems(load_policy(path))
    except PolicyError as error:
        problems = error.problems
    return [str(problem) for problem in problems]


def _write(path: Path, text: str) -> None:
    """Whole or not at all: a new file of a random name beside it (O_EXCL: never a file or
    link someone else put there, as in /tmp), then renamed over it."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        umask = os.umask(0o022)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _shown(path: Path) -> str:
    from pysbx.cli.explain_cmd import shown_path

    return shown_path(str(path))


def _say(message: str) -> None:
    print(f"{PREFIX} {message}", file=sys.stderr, flush=True)


def _fail(message: str, code: int) -> int:
    print(f"{PREFIX} error: {message}", file=sys.stderr, flush=True)
    return code
