"""`pysandbox run`: its command line (cli.runargs) goes to the warm path when a plan
is cached, else to the cold path that loads, verifies and leaves one. Starting a container
imports no CLI framework (typer serves every other command)."""

from __future__ import annotations

import os
import sys

from pysbx.cli.runargs import RunArgs, parse
from pysbx.sandbox.errors import EXIT_SETUP_FAILED, SandboxError
from pysbx.sandbox.state import remove_state

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pysbx.sandbox.planrecord import Plan
    from pysbx.sandbox.runner import RunSpec


def main(argv: list[str]) -> int:
    try:
        args = parse(argv)
    except SystemExit as done:
        return EXIT_SETUP_FAILED if done.code else 0
    args.given = argv
    return run_args(args)


def run_args(args: RunArgs) -> int:
    """Run what a parsed command line says (pysandbox learn runs twice this way)."""
    try:
        return _run(args)
    except KeyboardInterrupt:
        return 130


def _run(args: RunArgs) -> int:
    from pysbx.sandbox import warm

    if args.tty and args.interactive and not args.detach and not os.isatty(0):
        return _fail("the input device is not a TTY: -it needs a terminal on stdin (drop -t to pipe input)")
    if args.restart not in (None, "no") and not args.detach:
        return _fail(f"--restart {args.restart} needs -d: the monitor of a detached container restarts it")
    if args.explain_json and args.detach:  # a detached container's report: `pysandbox explain NAME --format json`
        return _fail(
            "--explain=json is for a run in the foreground: with -d, --explain, then explain NAME --format json"
        )
    detached_only = _detached_only_flags(args)
    if detached_only and not args.detach:
        return _fail(f"{detached_only} needs -d: the monitor of a detached container does what it asks")
    if any(volume.startswith("/") and ":" not in volume for volume in args.volume):
        from pysbx.sandbox.volumes import with_anonymous_volumes

        args.volume, args.anonymous_volumes = with_anonymous_volumes(args.volume)
    if warm.eligible(args) and not args.dry_run:
        try:
            plan = warm.load_plan(args.image, args.policy, args.bundle)
            if plan is not None:
                check_lifecycle(args, plan.confinement.lifecycle)
                if args.network or args.publish or args.publish_all:  # a plain run imports nothing for it
                    from pysbx.sandbox.netrules import check

                    check(args, plan.confinement.network_rules)
            spec = None if plan is None else warm.spec_from_plan(plan, args)
        except (SandboxError, OSError) as error:
            return _fail(str(error))
        if plan is not None and spec is not None:
            return _execute(spec, args, plan)
    return _cold_run(args)


def _cold_run(args: RunArgs) -> int:
    """First run of an image under a policy, or a run with flags to check: load and verify
    everything, then (when the flags allow) leave a plan for the warm path."""
    from pysbx.cli.imagearg import open_image_argument
    from pysbx.images import ImageError
    from pysbx.policies.errors import PolicyError
    from pysbx.policies.loader import load_policy
    from pysbx.policies.seccomp import SeccompProfileError
    from pysbx.sandbox import warm
    from pysbx.sandbox.plan import bind_mounts, build_plan, bundle_evidence, give_trees, trees_to_give
    from pysbx.signing.errors import VerificationError

    try:
        loaded = load_policy(args.policy)
        image = open_image_argument(args.image, args.platform)
        refusal, origin, verdict = _verify(image, loaded, args.bundle)
        if refusal is not None:
            return _fail(refusal)
        plan = build_plan(args, image, loaded, bundle_evidence(origin, image.source.split(":", 1)[0]), verdict)
        check_lifecycle(args, plan.confinement.lifecycle)
        if warm.eligible(args):  # with no policy-sensitive flag, the plan is the policy's own
            warm.save_plan(args.image, args.policy, plan)
        binds = bind_mounts(args.volume, plan.id_maps)
        spec = warm.spec_from_plan(plan, args)
        spec.binds = binds
        given = trees_to_give(args.volume)
        if args.dry_run:
            print(_describe(spec) + "".join(f"\nwould give {folder} to the container's user" for folder in given))
            remove_state(spec.state)
            return 0
    except (ImageError, PolicyError, SeccompProfileError, SandboxError, VerificationError, OSError) as error:
        return _fail(str(error).replace("\n", "; "))
    try:
        for line in give_trees(given, spec.user, spec.id_maps) if given else ():
            print(f"pysandbox: {line}", file=sys.stderr)
    except SandboxError as error:
        remove_state(spec.state)
        return _fail(str(error))
    return _execute(spec, args, plan)


def _verify(image: Any, loaded: Any, bundle: str | None) -> tuple[str | None, str | None, str]:
    """Step 1 of the init sequence: when the policy requires it, the image's signature must
    verify before anything is unpacked. Returns why it is refused (or None), where the
    bundle that verified came from, and the verdict in words (for `inspect`)."""
    if not loaded.policy.signing.required:
        return None, None, "unsigned: the policy does not require a signature"
    from pathlib import Path

    from pysbx.signing.verify import verify_image

    verdict = verify_image(image, loaded.policy.signing, Path(bundle) if bundle else None)
    if not verdict.verified:
        return f"{image.shown}: refused: {verdict.reason}", None, ""
    said = f"verified {verdict.manifest_digest} (signed by {verdict.signer})"
    print(f"pysandbox: {said}", file=sys.stderr)
    return None, verdict.bundle_origin, said


def _execute(spec: RunSpec, args: RunArgs, plan: Plan) -> int:
    from pysbx.sandbox.runner import run_container

    confinement = plan.confinement
    spec.tty, spec.interactive = args.tty, args.interactive
    spec.remove_state = args.rm
    if not confinement.signing_required:
        print(f"pysandbox: warning: running {args.image} unsigned (policy {args.policy})", file=sys.stderr)
    for item in spec.limits:
        if item.name in ("memory", "pids") and item.mechanism.startswith("RLIMIT"):  # said, not only in --dry-run
            print(f"pysandbox: note: {item.name} limit {item.value} enforced by {item.mechanism}", file=sys.stderr)
    spec.explain = "observe" if args.observe else "explain" if args.explain or args.explain_json else ""
    if args.detach:
        return _detach(spec, args, plan)
    try:
        return run_container(spec)
    finally:
        args.heard, args.capabilities_held = spec.heard, spec.capabilities
        if spec.heard is not None and spec.explain == "explain":
            from pysbx.cli.explain_cmd import report_run

            report_run(args.policy, spec.capabilities, spec.seccomp_bpf, spec.heard, args.explain_json, spec.user.uid)
        if args.rm:
            remove_state(spec.state)
            _remove_anonymous_volumes(args.anonymous_volumes)


def _remove_anonymous_volumes(names: list[str]) -> None:
    if names:
        from pysbx.sandbox.volumes import remove_anonymous

        remove_anonymous(names)


def _detach(spec: RunSpec, args: RunArgs, plan: Plan) -> int:
    """run -d: record the container, start its monitor, print its id once it runs."""
    from pathlib import Path

    from pysbx.sandbox.containers import RECORD, claim_name, new_id, release_name, write_json
    from pysbx.sandbox.detach import container_record, detach_rules, log_bounds
    from pysbx.sandbox.monitor import DetachOptions, start_detached
    from pysbx.sandbox.restart import parse_restart
    from pysbx.sandbox.state import container_name_of

    folder = Path(spec.state)
    name = container_name_of(folder.name) or folder.name
    lifecycle = plan.confinement.lifecycle
    try:
        bounds, restart = log_bounds(args.log_opt, lifecycle), parse_restart(args.restart or "no")
        if args.rm and restart.name != "no":
            raise SandboxError(f"--restart {args.restart} and --rm conflict: a container is restarted or removed")
        rules = detach_rules(args, plan)
        record = container_record(new_id(), name, spec, args, plan, bounds)
        record["healthcheck"] = rules["health"] is not None
        claim_name(name, folder)
    except SandboxError as error:
        remove_state(spec.state)
        return _fail(str(error))
    try:
        write_json(folder, RECORD, record)
    except OSError as error:  # a full disk: nothing of it stays, the name is free again
        release_name(name, folder)
        remove_state(spec.state)
        return _fail(f"cannot record the container in {folder}: {error.strerror or error}")
    try:
        options = DetachOptions(bounds, restart, args.rm, name, rules)
        options.pidfile = os.path.abspath(args.monitor_pidfile) if args.monitor_pidfile else None
        start_detached(spec, folder, options)
    except SandboxError as error:
        print(f"pysandbox: error: {error}", file=sys.stderr)
        return int(getattr(error, "exit_code", EXIT_SETUP_FAILED))
    print(record["id"])
    return 0


def check_lifecycle(args: RunArgs, lifecycle: dict[str, Any]) -> None:
    """-d, --restart and --log-opt as the policy's lifecycle section allows them, before
    anything is made: a refusal names the policy line, as every flag's does."""
    if not (args.detach or args.restart or args.log_opt or args.health_cmd):
        return  # a plain run: nothing to import or check (the warm start stays lean)
    from pysbx.sandbox.errors import Refused
    from pysbx.sandbox.restart import parse_restart

    where = lifecycle["where"]
    if args.detach and not lifecycle["detach"]:
        raise Refused(f"-d is refused: the policy does not allow detached containers ({where['detach']})")
    if args.health_cmd is not None and not lifecycle["health"]:
        raise Refused(f"--health-cmd is refused: the policy does not allow health checks ({where['health']})")
    restart = parse_restart(args.restart or "no")
    if restart.name != "no" and restart.name not in lifecycle["restart"]:
        allowed = ", ".join(lifecycle["restart"])
        raise Refused(f"--restart {args.restart} is refused: the policy allows {allowed} ({where['restart']})")
    if args.detach:
        from pysbx.sandbox.detach import log_bounds

        log_bounds(args.log_opt, lifecycle)


def _detached_only_flags(args: RunArgs) -> str:
    """The first flag given that only a detached container's monitor acts on, or ""."""
    names = ("stop_signal", "stop_timeout", "health_cmd", "health_interval", "health_timeout",
             "health_start_period", "health_retries", "detach_keys", "monitor_pidfile")  # fmt: skip
    given = [name for name in names if getattr(args, name) is not None]
    return f"--{given[0].replace('_', '-')}" if given else ""


def _fail(message: str) -> int:
    print(f"pysandbox: error: {message}", file=sys.stderr)
    return EXIT_SETUP_FAILED


def _layers(lowers: tuple[object, ...]) -> str:
    return f"{lowers[0]}" if len(lowers) == 1 else f"{len(lowers)} cached layers (top: {lowers[0]})"


def _describe(spec: RunSpec) -> str:
    lines = [
        f"command:      {spec.argv} as uid {spec.user.uid} gid {spec.user.gid} in {spec.workdir}",
        f"namespaces:   {', '.join(spec.namespaces)}",
        f"id mapping:   {spec.id_maps.describe()} ({'newuidmap' if spec.id_maps.via_helpers else 'written directly'})",
        f"root:         overlay over {_layers(spec.lowers)}{' (read-only)' if spec.read_only_rootfs else ''}",
        f"network:      {spec.network}",
        f"capabilities: {spec.capabilities:#018x}",
        f"no_new_privs: {spec.no_new_privileges}",
        f"seccomp:      {'none' if spec.seccomp_bpf is None else f'{len(spec.seccomp_bpf) // 8} BPF instructions'}",
        f"masked:       {', '.join(spec.masked_paths) or '-'}",
        f"read-only:    {', '.join(spec.readonly_paths) or '-'}",
        f"tmpfs:        {', '.join(t.destination for t in spec.tmpfs) or '-'}",
        f"binds:        {', '.join(f'{b.source}:{b.destination}' for b in spec.binds) or '-'}",
    ]
    lines += [f"limit:        {item.name}={item.value} via {item.mechanism}" for item in spec.limits]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
