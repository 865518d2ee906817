"""`pysandbox run`: its command line (sandbox.runargs) goes to the warm path when a plan
is cached, else to the cold path that loads, verifies and leaves one. Starting a container
imports no CLI framework (typer serves every other command)."""

from __future__ import annotations

import os
import sys

from sandbox.runargs import RunArgs, parse
from sandbox.state import remove_state

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from sandbox.mounts import TmpfsMount

EXIT_SETUP_FAILED = 125


def main(argv: list[str]) -> int:
    try:
        args = parse(argv)
    except SystemExit as done:
        return EXIT_SETUP_FAILED if done.code else 0
    try:
        return _run(args)
    except KeyboardInterrupt:
        return 130


def _run(args: RunArgs) -> int:
    from sandbox import warm

    if warm.eligible(args) and not args.dry_run:
        plan = warm.load_plan(args.image, args.policy)
        if plan is not None:
            return _execute(_spec_from_plan(plan, args), args, plan["base"]["signing_required"])
    return _cold_run(args)


def _cold_run(args: RunArgs) -> int:
    """First run of an image under a policy, or a run with flags to check: load and verify
    everything, then (when the flags allow) leave a plan for the warm path."""
    from images import ImageError, open_image
    from policies.errors import PolicyError
    from policies.loader import load_policy
    from sandbox import warm
    from sandbox.plan import Refused, RunFlags, build_spec, plan_for_cache
    from sandbox.process import ProcessError
    from signing.errors import VerificationError

    try:
        loaded = load_policy(args.policy)
        flags = RunFlags(
            image=args.image,
            command=args.command,
            env=args.env + _env_files(args.env_file),
            workdir=args.workdir,
            user=args.user,
            volumes=args.volume,
            tmpfs=args.tmpfs,
            network=args.network,
            hostname=args.hostname,
            memory=args.memory,
            pids_limit=args.pids_limit,
            cpus=args.cpus,
            read_only=args.read_only,
            cap_add=args.cap_add,
            cap_drop=args.cap_drop,
            security_opt=args.security_opt,
            privileged=args.privileged,
            pid=args.pid,
            entrypoint=args.entrypoint,
            name=args.name,
            rm=args.rm,
        )
        image = open_image(args.image, args.platform)
        refusal = _verify(image, loaded, args.bundle)
        if refusal is not None:
            return _fail(refusal)
        spec = build_spec(flags, image, loaded)
        if warm.eligible(args):
            warm.save_plan(args.image, args.policy, plan_for_cache(image, loaded, spec))
    except (ImageError, PolicyError, Refused, ProcessError, VerificationError, OSError) as error:
        return _fail(str(error).replace("\n", "; "))
    if args.dry_run:
        print(_describe(spec))
        remove_state(spec.state)
        return 0
    return _execute(spec, args, loaded.policy.signing.required)


def _verify(image: Any, loaded: Any, bundle: str | None) -> str | None:
    """Step 1 of the init sequence: when the policy requires it, the image's signature must
    verify before anything is unpacked. Returns why it is refused, or None."""
    if not loaded.policy.signing.required:
        return None
    from pathlib import Path

    from signing.verify import verify_image

    verdict = verify_image(image, loaded.policy.signing, Path(bundle) if bundle else None)
    if not verdict.verified:
        return f"{image.source}: refused: {verdict.reason}"
    print(f"pysandbox: verified {verdict.manifest_digest} (signed by {verdict.signer})", file=sys.stderr)
    return None


def _spec_from_plan(plan: dict[str, Any], args: RunArgs) -> object:
    """A RunSpec from a cached plan plus this run's own flags (none of which can loosen)."""
    from sandbox import capabilities, warm
    from sandbox.mounts import TmpfsMount
    from sandbox.process import ProcessError
    from sandbox.runner import RunSpec, hostname_for
    from sandbox.state import container_dir

    base: dict[str, Any] = plan["base"]
    name = args.name or f"pysandbox-{os.getpid()}"
    hostname = args.hostname or hostname_for(name)
    state = container_dir(name)
    id_maps = warm.id_maps_from(plan["id_maps"])
    if os.geteuid() == 0:
        os.chown(state, id_maps.root_host_uid, id_maps.gids[0].host)
    try:
        run = warm.resolve_run(plan, args, hostname)
    except (ProcessError, OSError) as error:
        remove_state(state)
        raise SystemExit(_fail(str(error))) from None
    granted = int(base["capabilities"])
    for raw in args.cap_drop:
        upper = raw.upper()
        granted = (
            0
            if upper == "ALL"
            else granted & ~capabilities.mask({upper if upper.startswith("CAP_") else f"CAP_{upper}"})
        )
    bpf_file = plan["bpf"]
    return RunSpec(
        lowers=tuple(plan["lowers"]),
        state=state,
        argv=run["argv"],
        env=run["env"],
        workdir=run["workdir"],
        user=run["user"],
        hostname=hostname,
        namespaces=tuple(base["namespaces"]),
        network="none" if args.network == "none" else base["network"],
        id_maps=id_maps,
        capabilities=granted,
        no_new_privileges=bool(base["no_new_privileges"]),
        seccomp_bpf=None if bpf_file is None else _read_bytes(bpf_file),
        read_only_rootfs=bool(base["read_only_rootfs"]) or args.read_only,
        masked_paths=tuple(base["masked_paths"]),
        readonly_paths=tuple(base["readonly_paths"]),
        tmpfs=[TmpfsMount(**t) for t in plan["tmpfs"]] + _tmpfs_flags(args.tmpfs),
        binds=[],
        limits=[warm.Enforcement(**item) for item in plan["limits"]],
        wall_time=base["wall_time"],
    )


def _tmpfs_flags(flags: list[str]) -> list[TmpfsMount]:
    if not flags:  # most runs: no import
        return []
    from sandbox.plan_light import tmpfs_flag

    return [tmpfs_flag(text) for text in flags]


def _execute(spec: object, args: RunArgs, signing_required: bool) -> int:
    from sandbox.runner import RunSpec, run_container

    assert isinstance(spec, RunSpec)
    spec.tty = args.tty
    spec.remove_state = args.rm
    if not signing_required:
        print(f"pysandbox: warning: running {args.image} unsigned (policy {args.policy})", file=sys.stderr)
    try:
        return run_container(spec)
    finally:
        if args.rm:
            remove_state(spec.state)


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as stored:
        return stored.read()


def _env_files(paths: list[str]) -> list[str]:
    entries = []
    for path in paths:
        with open(path) as stream:
            entries += [line.strip() for line in stream if line.strip() and not line.startswith("#")]
    return entries


def _fail(message: str) -> int:
    print(f"pysandbox: error: {message}", file=sys.stderr)
    return EXIT_SETUP_FAILED


def _layers(lowers: tuple[object, ...]) -> str:
    return f"{lowers[0]}" if len(lowers) == 1 else f"{len(lowers)} cached layers (top: {lowers[0]})"


def _describe(spec: object) -> str:
    from sandbox.runner import RunSpec

    assert isinstance(spec, RunSpec)
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
