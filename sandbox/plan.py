"""From `pysandbox run`'s flags, an image and a policy to a plan (sandbox/warm.py turns a
plan and the per-run flags into a RunSpec, on both paths). Every flag that would loosen the
policy is refused here, before anything starts, naming the policy file and line that
forbids it."""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from pysbx.images import Image
from pysbx.policies.loader import LoadedPolicy
from pysbx.policies.model import Limits, Size, granted_capabilities
from pysbx.policies.values import ENGINE_SOCKETS, format_size, normalize_capability
from pysbx.sandbox import capabilities, mounts, netrules
from pysbx.sandbox.errors import Refused
from pysbx.sandbox.idmap import IdMaps, plan_id_maps
from pysbx.sandbox.limits import plan_limits
from pysbx.sandbox.names import InvalidName, check_name
from pysbx.sandbox.plan_light import parse_docker_size
from pysbx.sandbox.planrecord import Confinement, ImageRun, Plan
from pysbx.sandbox.rootfs import etc_text, image_lowers, owners_for
from pysbx.sandbox.state import private_folder, private_root
from pysbx.sandbox.volumes import data_folder, is_bind_source
from pysbx.sandbox.warm import make_plan

if TYPE_CHECKING:  # the run request is read, never made, here: no CLI code is imported
    from pysbx.cli.runargs import RunArgs
    from pysbx.sandbox.process import User


def _where(loaded: LoadedPolicy, *path: str) -> str:
    for length in range(len(path), 0, -1):
        location = loaded.locations.get(path[:length])
        if location:
            return f"{location[0]}:{location[1]}"
    return f"{loaded.chain[0]} (by default)"


def network_rules(loaded: LoadedPolicy) -> dict[str, Any]:
    """sandbox.network, network_modes and publish as a plan carries them (sandbox.netrules)."""
    sandbox = loaded.policy.sandbox
    where = {name: _where(loaded, "sandbox", field)
             for name, field in (("modes", "network_modes"), ("publish", "publish"), ("egress", "egress"),
                                 ("networks", "networks"))}  # fmt: skip
    egress = None if sandbox.egress is None else [str(rule) for rule in sandbox.egress]
    net_admin = "CAP_NET_ADMIN" in granted_capabilities(sandbox.capabilities, sandbox.privileged)
    return netrules.rules(sandbox.network, list(sandbox.network_modes), list(sandbox.publish.addresses),
                          sandbox.publish.lowest_port, where, egress, net_admin, list(sandbox.networks))  # fmt: skip


def check_flags(flags: RunArgs, loaded: LoadedPolicy) -> None:
    sandbox = loaded.policy.sandbox

    def refuse(flag: str, *path: str, why: str) -> NoReturn:
        raise Refused(f"{flag} is refused: {why} ({_where(loaded, *path)})")

    if flags.privileged and not sandbox.privileged:
        refuse("--privileged", "sandbox", "privileged", why="the policy forbids privileged mode")
    if flags.pid == "host" and not sandbox.host_pid:
        refuse("--pid host", "sandbox", "host_pid", why="the policy forbids the host's pid namespace")
    netrules.check(flags, network_rules(loaded))
    granted = granted_capabilities(sandbox.capabilities, sandbox.privileged)
    for raw in flags.cap_add:
        name = normalize_capability(raw)
        if name is None:
            raise Refused(f"--cap-add {raw}: not a Linux capability")
        if name == "ALL" or name not in granted:
            refuse(f"--cap-add {raw}", "sandbox", "capabilities", why="the policy does not grant it")
    for option in flags.security_opt:
        key, _, value = option.replace(":", "=", 1).partition("=")
        if key == "seccomp" and value != sandbox.seccomp.profile:
            refuse(
                f"--security-opt {option}",
                "sandbox",
                "seccomp",
                "profile",
                why=f"the policy's seccomp profile is {sandbox.seccomp.profile}",
            )
        elif key not in ("seccomp", "no-new-privileges"):
            raise Refused(f"--security-opt {option}: unsupported option (seccomp=PROFILE, no-new-privileges)")
    for volume in flags.volume:
        _check_volume(volume, loaded, refuse)
    _check_numbers(flags)
    _check_tmpfs(flags, loaded)
    memory, allowed = _memory_flag(flags.memory), sandbox.limits.memory
    _check_limit(memory, allowed, "--memory", loaded, flags.memory, None if allowed is None else format_size(allowed))
    _check_limit(flags.pids_limit, sandbox.limits.pids, "--pids-limit", loaded)
    _check_limit(flags.cpus, sandbox.limits.cpus, "--cpus", loaded)


def _check_numbers(flags: RunArgs) -> None:
    """Docker's ranges: a negative or NaN --cpus would be written to the cgroup as "no
    limit", and --pids-limit 0 or -1 means unlimited to Docker: neither may pass as lowering
    the policy's limit."""
    cpus = os.cpu_count() or 1
    if flags.cpus is not None and not (math.isfinite(flags.cpus) and 0.01 <= flags.cpus <= cpus):
        raise Refused(f"--cpus {flags.cpus}: the range of CPUs is from 0.01 to {cpus:.2f}")
    if flags.pids_limit is not None and flags.pids_limit < 1:
        raise Refused(f"--pids-limit {flags.pids_limit}: expected at least 1")


def _check_tmpfs(flags: RunArgs, loaded: LoadedPolicy) -> None:
    """--tmpfs mounts hold memory that an rlimit (an ordinary user's memory limit) does not
    count: where the policy bounds what a container may write or use, each needs a size and
    together they stay within that bound."""
    from pysbx.sandbox.plan_light import tmpfs_flag

    limits = loaded.policy.sandbox.limits
    bounds = [size for size in (limits.writable_size, limits.memory) if size is not None]
    if not flags.tmpfs or not bounds:
        return
    sizes = [tmpfs_flag(text).size for text in flags.tmpfs]
    where = _where(loaded, "sandbox", "limits")
    if None in sizes:
        raise Refused(f"--tmpfs needs a size (PATH:size=64m): the policy bounds what a container may write ({where})")
    total = sum(size for size in sizes if size is not None)
    if total > min(bounds):
        asked, allowed = format_size(total), format_size(min(bounds))
        raise Refused(f"--tmpfs of {asked} in all is refused: the policy allows at most {allowed} ({where})")


def _memory_flag(text: str | None) -> int | None:
    """--memory as Docker reads it: 512m, 1g, 1073741824 (binary units)."""
    if not text:
        return None
    size = parse_docker_size(text)
    if size is None or size <= 0:
        raise Refused(f"--memory {text}: expected a size such as 512m or 1g")
    return size


def _volume_parts(volume: str) -> tuple[str, str, list[str]]:
    """`-v SRC:DST[:OPT,...]` as (SRC, DST, options): one reading for the check, the mount
    and the trees `:U` gives."""
    source, _, rest = volume.partition(":")
    destination, _, options = rest.partition(":")
    return source, destination, [flag for flag in options.split(",") if flag]


def _check_volume(volume: str, loaded: LoadedPolicy, refuse: Callable[..., NoReturn]) -> None:
    mounts_policy = loaded.policy.sandbox.mounts
    source, destination, flags = _volume_parts(volume)
    if not destination.startswith("/"):
        raise Refused(f"-v {volume}: expected SRC:DST[:ro] with an absolute DST")
    unknown = [flag for flag in flags if flag not in VOLUME_OPTIONS]
    if unknown:
        raise Refused(f"-v {volume}: unknown option {unknown[0]!r} (expected ro, rw, U, nocopy; z and Z do nothing)")
    if not is_bind_source(source):
        if not mounts_policy.volumes:
            refuse(f"-v {volume}", "sandbox", "mounts", "volumes", why="the policy forbids named volumes")
        try:
            check_name("volume", source)
        except InvalidName as error:
            raise Refused(f"-v {volume}: {error}") from None
        return
    real = os.path.realpath(source)
    if real == "/" or real in ENGINE_SOCKETS or real.endswith("/docker.sock"):
        refuse(f"-v {volume}", "sandbox", "mounts", "binds", why=f"binding {real} hands the host to the container")
    read_only, give = "ro" in flags, "U" in flags
    if give:
        _check_link_free(volume, source, [rule.source for rule in mounts_policy.binds if rule.chown])
    under = [rule for rule in mounts_policy.binds if _under(real, os.path.realpath(rule.source))]
    if any((read_only or not rule.read_only) and (rule.chown or not give) for rule in under):
        return
    if give and any(read_only or not rule.read_only for rule in under):
        why = f"the policy does not let -v :U change the owners of {real} (binds[].chown)"
        refuse(f"-v {volume}", "sandbox", "mounts", "binds", why=why)
    refuse(f"-v {volume}", "sandbox", "mounts", "binds", why=f"{real} is not under a bind source the policy allows")


VOLUME_OPTIONS = ("ro", "rw", "U", "nocopy", "z", "Z")  # z/Z: SELinux labels, which this host has none of


def _under(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip("/") + "/")


def _check_link_free(volume: str, source: str, rule_sources: list[str]) -> None:
    """:U makes root change owners: the tree must be named by a path without symbolic links,
    and so must the policy's bind source, both as written. A link anywhere on either (a user
    owning a folder on the way swaps one in) would send the walk elsewhere: /etc. The walk
    itself opens each component without following links (chowntree.open_folder), so a link
    put in later is refused then too."""
    given = os.path.abspath(source)
    if os.path.realpath(given) != given:
        raise Refused(
            f"-v {volume}: U needs a source path without symbolic links (it leads to {os.path.realpath(given)})"
        )
    for rule_source in rule_sources:
        base = os.path.abspath(rule_source)
        if _under(given, base) and os.path.realpath(base) != base:
            raise Refused(f"-v {volume}: U under the policy's bind source {rule_source}, which holds a symbolic link")


def _check_limit(
    asked: float | int | None,
    allowed: float | int | None,
    flag: str,
    loaded: LoadedPolicy,
    asked_as: str | None = None,
    allowed_as: str | None = None,
) -> None:
    """Refuse a flag above the policy's bound, each said as written (`--memory 1g`, `512Mi`)."""
    if asked is not None and allowed is not None and asked > allowed:
        raise Refused(
            f"{flag} {asked_as or asked} is refused: the policy allows at most {allowed_as or allowed} "
            f"({_where(loaded, 'sandbox', 'limits')})"
        )


# Bumped when the reader or compiler changes what a profile may say or compiles to, so that
# no filter compiled by an older pysandbox (which a newer one would refuse) is reused.
FILTER_FORMAT = 2


def seccomp_file(loaded: LoadedPolicy, granted: frozenset[str]) -> Path | None:
    """The policy's filter for these capabilities, compiled once and cached by content."""
    seccomp = loaded.policy.sandbox.seccomp
    if seccomp.profile == "unconfined" or loaded.policy.sandbox.privileged:
        return None
    key_source = json.dumps(
        [FILTER_FORMAT, seccomp.profile, _profile_stamp(seccomp.profile), sorted(granted), seccomp.deny, seccomp.allow]
    )
    key = hashlib.sha256(key_source.encode()).hexdigest()
    cached = Path(private_folder(os.path.join(private_root(), "bpf"))) / f"{key}.bpf"
    if cached.is_file():
        return cached
    from pysbx.policies.seccomp import compile_bpf, load_profile

    compiled = compile_bpf(load_profile(seccomp.profile), granted, deny=seccomp.deny, allow=seccomp.allow)
    temporary = cached.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_bytes(compiled.bpf)
    os.replace(temporary, cached)
    return cached


def _profile_path(profile: str) -> Path:
    """A profile's file: a path as the policy gave it, or a built-in profile's JSON."""
    if "/" in profile:
        return Path(profile)
    from pysbx.policies.seccomp.profile import PROFILE_DIR

    return PROFILE_DIR / f"{profile}.json"


def _profile_stamp(profile: str) -> str:
    try:
        return hashlib.sha256(_profile_path(profile).read_bytes()).hexdigest()
    except OSError:
        return ""


def _profile_files(profile: str) -> list[str]:
    """The seccomp profile a plan's filter was compiled from: a changed one is a cold run."""
    path = _profile_path(profile)
    return [str(path)] if profile != "unconfined" and path.is_file() else []


def build_plan(
    flags: RunArgs, image: Image, loaded: LoadedPolicy, bundle: str | None = None, verdict: str = ""
) -> Plan:
    """The plan for `image` under the policy, with the flags that change what the policy
    gives (sandbox.warm.POLICY_SENSITIVE: --privileged, --pid host, --network host,
    --security-opt, limits) checked and applied. Without any of them it is the policy's own
    plan, which a warm run may reuse; the per-run flags are sandbox.warm.spec_from_plan's.
    `bundle` is the file the signature verification used, if it was one: evidence the plan
    rests on, with the policy chain, keys, trusted root and the id files (root's reservation,
    or a user's subordinate ranges); `verdict` what the verification concluded, in words."""
    check_flags(flags, loaded)
    sandbox = loaded.policy.sandbox
    id_maps = plan_id_maps(sandbox.ids)
    owners = owners_for(id_maps)
    lowers = tuple(str(folder) for folder in image_lowers(image, owners))
    granted = frozenset(granted_capabilities(sandbox.capabilities, sandbox.privileged or flags.privileged))
    shared = {"network": flags.network == "host", "pid": flags.pid == "host"}  # the host's: not made
    namespaces = [name for name in sandbox.namespaces if not shared.get(name)]
    limits = plan_limits(_with_flag_limits(sandbox.limits, flags))
    missing = [item.name for item in limits if not item.enforced and item.name in sandbox.limits.required]
    if missing:
        raise Refused(f"limits {', '.join(missing)} are required by the policy but cannot be enforced here")
    bpf = seccomp_file(loaded, granted)
    config = image.config
    return make_plan(
        lowers=lowers,
        etc_texts=(etc_text(lowers, "passwd", owners.userns), etc_text(lowers, "group", owners.userns)),
        image=ImageRun(
            config.entrypoint,
            config.cmd,
            config.env,
            config.working_dir,
            config.user,
            stop_signal=config.stop_signal,
            healthcheck=config.healthcheck,
            digest=str(image.manifest_digest),
            verdict=verdict,
            exposed_ports=config.exposed_ports,
        ),
        confinement=Confinement(
            namespaces=list(map(str, namespaces)),
            network=sandbox.network,
            capabilities=capabilities.mask(granted),
            no_new_privileges=sandbox.no_new_privileges or "no-new-privileges" in flags.security_opt,
            read_only_rootfs=sandbox.mounts.read_only_rootfs,
            masked_paths=[] if flags.privileged else list(sandbox.mounts.masked_paths),
            readonly_paths=[] if flags.privileged else list(sandbox.mounts.readonly_paths),
            wall_time=sandbox.limits.wall_time,
            user=sandbox.ids.user,
            user_where=_where(loaded, "sandbox", "ids", "user"),
            signing_required=loaded.policy.signing.required,
            lifecycle=_lifecycle(loaded),
            network_rules=network_rules(loaded),
        ),
        id_maps=id_maps,
        limits=limits,
        tmpfs=[mounts.TmpfsMount(t.path, t.size, t.mode) for t in sandbox.mounts.tmpfs],
        bpf_file=None if bpf is None else str(bpf),
        evidence_files=[
            *loaded.chain,
            *loaded.policy.signing.keys,
            *filter(None, [loaded.policy.signing.trusted_root]),
            *_profile_files(sandbox.seccomp.profile),
            *(_id_files() if os.geteuid() == 0 or id_maps.via_helpers else []),
        ],
        bundle=bundle,
    )


def _lifecycle(loaded: LoadedPolicy) -> dict[str, object]:
    """The policy's lifecycle section as plain values a plan can keep, with each field's line."""
    lifecycle = loaded.policy.sandbox.lifecycle
    names = ("detach", "restart", "exec", "exec_user", "health", "log_max_size", "log_max_file")
    return {
        **{name: list(value) if isinstance(value := getattr(lifecycle, name), tuple) else value for name in names},
        "where": {name: _where(loaded, "sandbox", "lifecycle", name) for name in names},
    }


def _id_files() -> list[str]:
    """What the id maps were read from (root's range was also checked against the accounts):
    a changed entry is a cold run, whose layers are unpacked for the new map."""
    from pysbx.sandbox.idmap import GROUP, PASSWD, SUBGID, SUBUID

    return [path for path in (SUBUID, SUBGID, PASSWD, GROUP) if os.path.exists(path)]


def bundle_evidence(origin: str | None, image_path: str) -> str | None:
    """The file a verified bundle came from, for the plan to rest on: a sidecar or --bundle
    file, or a referrer's blob in an OCI layout (one inside an archive goes with the
    archive's own identity)."""
    if origin is None:
        return None
    if origin.startswith("OCI referrer sha256:") and os.path.isdir(image_path):
        return os.path.join(image_path, "blobs", "sha256", origin.rpartition(":")[2])
    return origin if os.path.isfile(origin) else None


def trees_to_give(volumes: list[str]) -> list[str]:
    """The host folders of `-v SRC:DST:U` binds (check_flags allowed them), as written and
    made absolute, never resolved: give_tree opens them without following links."""
    parts = [_volume_parts(volume) for volume in volumes]
    return [os.path.abspath(source) for source, _, flags in parts if is_bind_source(source) and "U" in flags]


def give_trees(folders: list[str], user: User, id_maps: IdMaps) -> list[str]:
    """Give each folder to the container's user: one line per folder saying so. Root gives
    them the user's host ids; an ordinary user gives them from inside a user namespace
    mapped as the container's (podman's `:U`, `podman unshare chown`), so only what the
    user owns can change hands, and only to ids of their own subordinate range."""
    from pysbx.sandbox.chowntree import ChownError, give_tree

    owner = id_maps.host_ids(user.uid, user.gid)
    if owner is None:
        raise ChownError(f"the container's user {user.uid}:{user.gid} has no host id to give a tree to")
    if os.geteuid() == 0:
        return [f"gave {folder} to {owner[0]}:{owner[1]} ({give_tree(folder, *owner)} changed)" for folder in folders]
    if not id_maps.via_helpers:
        raise ChownError("-v :U needs subordinate ids (/etc/subuid and /etc/subgid entries, newuidmap) to give to")
    from pysbx.sandbox.userns import as_container_root

    changed = as_container_root(id_maps, lambda: [give_tree(folder, user.uid, user.gid) for folder in folders])
    return [
        f"gave {folder} to {user.uid}:{user.gid} in the container, {owner[0]}:{owner[1]} here ({count} changed)"
        for folder, count in zip(folders, changed, strict=True)
    ]


def bind_mounts(volumes: list[str], id_maps: IdMaps) -> list[mounts.BindMount]:
    """-v flags (check_flags allowed them) as bind mounts; named volumes made as needed."""
    return [_bind_flag(volume, id_maps.root_host_uid if os.geteuid() == 0 else None) for volume in volumes]


def _with_flag_limits(limits: Limits, flags: RunArgs) -> Limits:
    """The policy's limits, lowered by --memory, --pids-limit and --cpus (check_flags has
    already refused any that would raise them)."""
    from dataclasses import replace

    memory = Size(_memory_flag(flags.memory) or 0) if flags.memory else limits.memory
    pids = flags.pids_limit if flags.pids_limit is not None else limits.pids
    cpus = flags.cpus if flags.cpus is not None else limits.cpus
    return replace(limits, memory=memory, pids=pids, cpus=cpus)


def _bind_flag(volume: str, owner: int | None) -> mounts.BindMount:
    source, destination, flags = _volume_parts(volume)
    fill = False
    if not is_bind_source(source):  # a named volume: a new, empty one takes the image's content
        folder = data_folder(source, owner)
        fill, source = "nocopy" not in flags and not any(folder.iterdir()), str(folder)
    return mounts.BindMount(os.path.realpath(source), destination, "ro" in flags, fill)
