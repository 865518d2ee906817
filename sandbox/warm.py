"""The warm path of `pysandbox run`: the first run of an image under a policy writes a
*plan* (the cached rootfs, the image's run configuration, the resolved policy and the
compiled seccomp filter); later runs with the same image file and policy files read it and
start without importing the image reader, YAML, the policy loader or libseccomp.

A plan is keyed on its evidence: the image file, every file of the resolved policy chain,
the keys and trusted root it trusted, the bundle the verification used (sidecar, --bundle,
or a referrer blob of a layout), and for root the id reservation; each by its resolved
path and identity (inode, size, mtime and ctime, which no one can set back). A retargeted
symlink, a changed or vanished file, or another --bundle is a miss, and the cold path checks
and verifies everything again. Plans live in the user's private storage (sandbox.state),
written atomically, in `marshal` format: built in, so a warm start reads its plan without
importing json (and, through it, re). marshal is code-like data, safe only for what we
wrote ourselves: a plan is read only from a checked private folder, and only if it is a
private regular file of ours; a damaged one is a miss."""

from __future__ import annotations

import marshal
import os
import zlib

from pysbx.sandbox.idmap import IdMaps
from pysbx.sandbox.limits import Enforcement

__all__ = ["Enforcement"]
from pysbx.sandbox.mounts import TmpfsMount
from pysbx.sandbox.names import check_name
from pysbx.sandbox.planrecord import Confinement, ImageRun, Plan
from pysbx.sandbox.process import User, command_line, environment, resolve_user
from pysbx.sandbox.state import (
    IMAGE_STORE,
    cache_root,
    container_dir,
    private_folder,
    private_root,
    read_private_file,
    remove_state,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pysbx.cli.runargs import RunArgs
    from pysbx.sandbox.network import Published
    from pysbx.sandbox.runner import RunSpec

# Bumped with sandbox.plan.FILTER_FORMAT (no plan rests on a filter an older pysandbox
# compiled) and with the plan's records (8: the image's EXPOSE, for -P; 9: the network rules; 10:
# the bridge networks a run may join).
FORMAT = 10
# Flags that the cold path must check against the policy; with any of them, no warm start.
POLICY_SENSITIVE = (
    "volume",
    "privileged",
    "pid",
    "cap_add",
    "security_opt",
    "memory",
    "pids_limit",
    "cpus",
    "platform",
    "tmpfs",
)


def _identity(path: str) -> list[int]:
    info = os.stat(path)
    return [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]


def evidence(path: str) -> list[object]:
    """A file a plan rests on: where it resolves now, and that file's identity."""
    return [path, os.path.realpath(path), _identity(path)]


def _evidence_holds(item: list[Any]) -> bool:
    path, real, identity = item
    try:
        return bool(os.path.realpath(path) == real and _identity(real) == identity)
    except OSError:
        return False


BUILTIN_POLICIES = ("strict", "baseline", "permissive")  # policies.loader.BUILTINS, warm-safe (a test ties them)


def _policy_path(reference: str) -> str:
    if reference in BUILTIN_POLICIES:
        project = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
        return os.path.join(project, "policies", f"{reference}.yaml")
    return os.path.realpath(reference)


def _image_file(image: str) -> str:
    """The file whose identity stands for an image given as a path: an archive itself, or a
    layout's index.json (rewritten whenever a tag or referrer is added or removed)."""
    path = image.split(":", 1)[0] if not os.path.exists(image) else image
    index = os.path.join(path, "index.json")
    return index if os.path.isdir(path) else path


def _image_identities(image: str) -> list[object]:
    """What decides which image IMAGE names (images.resolve): for an argument not written as
    a path, the store's index.json (any load, tag or removal rewrites it) and the path of
    that name if one exists; for a path, the path. A file missing counts as None."""
    files = [_image_file(image)]
    if not image.startswith(("/", "./", "../", "~")):
        files.append(os.path.join(cache_root(), IMAGE_STORE, "index.json"))
    identities: list[object] = []
    for path in files:
        try:
            identities += [os.path.realpath(path), *_identity(path)]
        except OSError:
            identities.append(None)
    return identities


def plan_key(image: str, policy: str) -> tuple[object, ...] | None:
    """What a plan is valid for: this format, this user, this image, this policy (both by
    resolved path and identity)."""
    identities = _image_identities(image)
    if all(item is None for item in identities):
        return None
    return (FORMAT, os.geteuid(), image, *identities, _policy_path(policy))


def _plan_file(key: tuple[object, ...]) -> str:
    digest = zlib.crc32(repr(key).encode())
    return os.path.join(private_folder(os.path.join(private_root(), "plans")), f"{digest:08x}.plan")


def eligible(args: RunArgs) -> bool:
    """No policy-sensitive flag given (a given 0, as in --pids-limit 0, counts as given).
    --network (but host, which changes the plan's namespaces), -p and -P are checked against
    the rules the plan carries (sandbox.netrules), so they keep a warm start."""
    return not any(_given(getattr(args, name)) for name in POLICY_SENSITIVE) and args.network != "host"


def _given(value: object) -> bool:
    return value is not None and value is not False and value != [] and value != ""


def load_plan(image: str, policy: str, bundle: str | None = None) -> Plan | None:
    """The plan for this image and policy, if one is stored and all its evidence holds, and
    `bundle` (--bundle) is the one it verified. Raises StorageError when the storage folder is
    not private: a plan from a folder someone else can write is never read."""
    key = plan_key(image, policy)
    if key is None:
        return None
    try:
        data = read_private_file(_plan_file(key))
    except OSError:  # none stored (a StorageError, a plan someone else could write, is raised)
        return None
    try:
        stored_plan = marshal.loads(data)
        if not isinstance(stored_plan, dict) or stored_plan.get("key") != key:  # another under the same short name
            return None
        plan = Plan.from_marshal(stored_plan["plan"])
        return plan if _still_valid(plan, bundle) else None
    except (ValueError, EOFError, TypeError, KeyError):  # damaged, or of another shape: a miss
        return None


def _still_valid(plan: Plan, bundle: str | None) -> bool:
    """Every file the plan rests on is still the one it was (there is at least the policy),
    `bundle` (--bundle) is the one it verified, and its layers and filter are still there."""
    if not plan.evidence or not all(_evidence_holds(item) for item in plan.evidence):
        return False
    recorded = plan.bundle
    if recorded is not None and not _evidence_holds(recorded):
        return False
    if bundle is not None and (recorded is None or os.path.realpath(bundle) != recorded[1]):
        return False
    return all(os.path.isdir(folder) for folder in plan.lowers) and os.path.exists(plan.bpf or "/")


def save_plan(image: str, policy: str, plan: Plan) -> None:
    key = plan_key(image, policy)
    if key is None:
        return
    target = _plan_file(key)
    temporary = f"{target}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with open(fd, "wb") as stored:
        marshal.dump({"key": key, "plan": plan.to_marshal()}, stored)
    os.replace(temporary, target)


def make_plan(
    *,
    lowers: tuple[str, ...],
    etc_texts: tuple[str, str],
    image: ImageRun,
    confinement: Confinement,
    id_maps: IdMaps,
    limits: list[Enforcement],
    tmpfs: list[TmpfsMount],
    bpf_file: str | None,
    evidence_files: list[str],
    bundle: str | None,
) -> Plan:
    """A plan, with the identity of each file it rests on taken now."""
    return Plan(
        lowers=list(lowers),
        etc_texts=list(etc_texts),
        image=image,
        confinement=confinement,
        id_maps=id_maps,
        limits=limits,
        tmpfs=tmpfs,
        bpf=bpf_file,
        evidence=[evidence(path) for path in evidence_files],
        bundle=None if bundle is None else evidence(bundle),
    )


def spec_from_plan(plan: Plan, args: RunArgs) -> RunSpec:
    """The RunSpec for a plan (cached, or just made by sandbox.plan) plus this run's own
    flags, none of which can loosen the policy; the one place either path builds one.
    Raises SandboxError (an unknown user, a bad --tmpfs or --name, storage that is not
    private) or OSError (an unreadable --env-file), leaving no state folder behind."""
    from pysbx.sandbox import capabilities
    from pysbx.sandbox.runner import RunSpec, hostname_for

    confinement = plan.confinement
    if confinement.user and args.user and args.user != confinement.user:
        from pysbx.sandbox.process import ProcessError

        raise ProcessError(
            f"-u {args.user} is refused: the policy runs containers as {confinement.user} ({confinement.user_where})"
        )
    name = check_name("container", args.name) if args.name else f"pysandbox-{os.urandom(6).hex()}"
    hostname = args.hostname or hostname_for(name)
    state = container_dir(name)
    id_maps = plan.id_maps
    try:
        if os.geteuid() == 0:
            os.chown(state, id_maps.root_host_uid, id_maps.gids[0].host)
        run = _resolve_run(plan, args, hostname)
        seccomp_bpf = None if plan.bpf is None else read_private_file(plan.bpf)
        tmpfs = plan.tmpfs + _tmpfs_flags(args.tmpfs)
        published = _published(args, plan.image.exposed_ports)
    except BaseException:
        remove_state(state)
        raise
    network = args.network or confinement.network
    granted = confinement.capabilities
    for raw in args.cap_drop:  # Docker's spellings: ALL, chown, CAP_CHOWN
        upper = raw.strip().upper()
        dropped = capabilities.mask({upper if upper.startswith("CAP_") else f"CAP_{upper}"})
        granted = 0 if upper == "ALL" else granted & ~dropped
    return RunSpec(
        lowers=tuple(plan.lowers),
        state=state,
        argv=run["argv"],
        env=run["env"],
        workdir=run["workdir"],
        user=run["user"],
        hostname=hostname,
        namespaces=_namespaces(confinement.namespaces, network),
        network=network,
        id_maps=id_maps,
        capabilities=granted,
        no_new_privileges=confinement.no_new_privileges,
        seccomp_bpf=seccomp_bpf,
        read_only_rootfs=confinement.read_only_rootfs or args.read_only,
        masked_paths=tuple(confinement.masked_paths),
        readonly_paths=tuple(confinement.readonly_paths),
        tmpfs=tmpfs,
        binds=[],
        limits=list(plan.limits),
        wall_time=confinement.wall_time,
        ports=published,
        egress=confinement.network_rules.get("egress"),
    )


def _namespaces(planned: list[str], network: str) -> tuple[str, ...]:
    """The plan's namespaces with a network namespace of the container's own unless this run's
    network is the host's: --network none under a policy whose default is host gets one
    (found by review: it got the host's network)."""
    return (*(name for name in planned if name != "network"), *(() if network == "host" else ("network",)))


def _published(args: RunArgs, exposed: list[str]) -> list[Published]:
    """-p and -P (sandbox.plan checked them against the policy): each host port chosen and
    found free now."""
    if not args.publish and not args.publish_all:
        return []
    from pysbx.sandbox import ports

    wanted = [port for spec in args.publish for port in ports.parse(spec)]
    return ports.bind_free(wanted + (ports.exposed(exposed) if args.publish_all else []))


def _resolve_run(plan: Plan, args: RunArgs, hostname: str) -> dict[str, Any]:
    """The per-run part: command, environment, user, working directory."""
    config = plan.image
    passwd, group = plan.etc_texts
    user: User = resolve_user(args.user or plan.confinement.user or config.user, passwd, group)
    env_extra = list(args.env)
    for path in args.env_file:
        env_extra += _env_file_lines(path)
    return {
        "argv": command_line(config.entrypoint, config.cmd, args.entrypoint, args.command),
        "env": environment(config.env, env_extra, user, dict(os.environ), args.tty) | {"HOSTNAME": hostname},
        "user": user,
        "workdir": _absolute_workdir(args.workdir or config.working_dir or "/"),
    }


def _absolute_workdir(path: str) -> str:
    if not path.startswith("/"):
        from pysbx.sandbox.process import ProcessError

        raise ProcessError(f"the working directory {path!r} is invalid: it needs to be an absolute path")
    return path


ENV_FILE_LIMIT = 1 << 20


def _env_file_lines(path: str) -> list[str]:
    """--env-file's settings, read as Docker reads them: a regular file (a FIFO or /proc/kmsg
    would hang the start), bounded, UTF-8; each line NAME=value (the value verbatim, quotes
    included) or NAME (the host's value), leading whitespace, blank lines and # comments
    left out; a name holding whitespace (`export NAME=...`, a shell habit) is an error."""
    from pysbx.images.regular import read_regular_file  # only with --env-file
    from pysbx.sandbox.process import ProcessError

    try:
        text = read_regular_file(path, ENV_FILE_LIMIT, follow=True).decode()
    except OSError as error:
        raise ProcessError(f"--env-file {path}: {error.strerror}") from None
    except ValueError:  # too large, or not UTF-8
        raise ProcessError(f"--env-file {path}: not a text file of at most {ENV_FILE_LIMIT} bytes") from None
    settings = []
    for number, raw in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        name = line.partition("=")[0]
        if not name or any(char.isspace() for char in name):
            raise ProcessError(f"--env-file {path}:{number}: {name[:40]!r} is no variable name (expected NAME=value)")
        settings.append(line)
    return settings


def _tmpfs_flags(flags: list[str]) -> list[TmpfsMount]:
    if not flags:  # most runs: no import
        return []
    from pysbx.sandbox.plan_light import tmpfs_flag

    return [tmpfs_flag(text) for text in flags]
