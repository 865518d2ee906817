"""The policy model: what pysandbox and pyaudit enforce, as typed frozen dataclasses.

This module is the single source of truth for policy files: the loader validates YAML
against these classes, `extends` merges along them, the JSON Schema is generated from
them, and `policy diff` reads each field's kind (its `loosens` metadata) to judge whether a
change loosens or tightens. Field docs become schema descriptions, so editors show them."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass, field
from typing import Any, Literal, NewType

from pysbx.policies.capnames import DOCKER_DEFAULT_CAPABILITIES as DOCKER_DEFAULT_CAPABILITIES
from pysbx.policies.capnames import LINUX_CAPABILITIES as LINUX_CAPABILITIES
from pysbx.policies.severity import DEFAULT_FAIL_ON
from pysbx.policies.severity import SEVERITIES as SEVERITIES  # also here, for those that read the model
from pysbx.policies.severity import Severity as Severity

Size = NewType("Size", int)  # bytes; written as 512Mi, 1G, 4096
Duration = NewType("Duration", float)  # seconds; written as 30s, 5m, 1h, 500ms
Capability = NewType("Capability", str)  # normalised as CAP_SYS_ADMIN; ALL allowed
Syscall = NewType("Syscall", str)  # a name libseccomp knows
IPAddress = NewType("IPAddress", str)  # an IPv4 or IPv6 literal, as ipaddress writes it: ::1, not 0::1
Port = NewType("Port", int)  # a TCP or UDP port, 1 to 65535
Egress = NewType("Egress", str)  # CIDR[:PORT[-PORT]], [IPV6-CIDR]:PORT: a destination allowed out
Order = tuple[str | tuple[str, ...], ...]  # least loose first; a tuple in it is a group of equals

Namespace = Literal["user", "pid", "mount", "uts", "ipc", "network", "cgroup"]
Network = Literal["none", "loopback", "pasta", "slirp4netns", "bridge", "host"]
# pasta and slirp4netns both give rootless outbound access, yet each engine exposes things the
# other does not: one level of the order, a group of equals between which any change loosens.
ROOTLESS_NETWORKS: tuple[Network, ...] = ("pasta", "slirp4netns")
# bridge: the default bridge and the user's networks (netavark in the user's keeper namespace),
# outbound access like the engines' plus the other containers of the network
OUTBOUND_NETWORKS: tuple[Network, ...] = (*ROOTLESS_NETWORKS, "bridge")
NETWORK_ORDER: Order = ("none", "loopback", OUTBOUND_NETWORKS, "host")

# How a change to a field moves the policy: `policy diff` and `extends: strict` judge every
# change by its effect, never by how it is spelled; a change they cannot judge loosens.
#   true: turning it on loosens          false: turning it off loosens
#   more: a higher number (or no limit, null) loosens
#   less: a lower number (or no minimum, null) loosens
#   order: later in `order` loosens; a null outside the order loosens unless it cannot. An
#     entry of the order may be a tuple of equals (a group): a change within a group loosens
#   add: an added item loosens, unless an old item covers it (none of its fields loosens; an
#     address: 0.0.0.0 covers every IPv4 address, :: every IPv6 one)
#   remove: a removed item loosens
#   allowlist: like add, and emptying the list (which allows everything) loosens
#   writable: places to write (tmpfs): like add, but a root that was writable without a size
#     cap (read_only_rootfs false, no writable_size) covered them all
#   any: any change loosens
#   constraint: null means unconstrained: setting it tightens, changing or removing it loosens
#   regex: a constraint, which may also give way to an exact `subject` it fully matches
#   override: null takes the safe default: setting or changing it loosens, unsetting tightens
#   granted: capabilities, compared by the set Docker's rule grants, not by add and drop
#   profile: a seccomp profile, compared by what it lets each system call do
#   fields: a section; each of its fields is judged by its own kind
#   inert: enforces nothing (the version, a reason for people), so a change never loosens
# `compare` says how file values are identified: "public_key" (the key's SPKI fingerprint)
# or "file_content" (the bytes' digest), so the same file at another path is no change.
LOOSENS = "loosens"
KINDS = frozenset(
    {
        "true", "false", "more", "less", "order", "add", "remove", "allowlist", "writable", "any",
        "constraint", "regex", "override", "granted", "profile", "fields", "inert",
    }
)  # fmt: skip
COMPARE = frozenset({"public_key", "file_content"})


def _metadata(doc: str, loosens: str, order: Order, compare: str | None) -> dict[str, Any]:
    """The field's doc and kind; an unknown kind fails at import, so no field goes unjudged."""
    if loosens not in KINDS:
        raise ValueError(f"{loosens!r} is not a kind of policy change (model.KINDS)")
    if compare is not None and compare not in COMPARE:
        raise ValueError(f"{compare!r} is not a way to compare policy files (model.COMPARE)")
    return {"doc": doc, LOOSENS: loosens, "order": order, "compare": compare}


def spec(
    doc: str,
    loosens: str,
    default: Any = None,
    order: Order = (),
    compare: str | None = None,
    **kw: Any,
) -> Any:
    metadata = _metadata(doc, loosens, order, compare)
    if "default_factory" in kw:
        return field(default_factory=kw["default_factory"], metadata=metadata)
    return field(default=default, metadata=metadata)


def required(doc: str, loosens: str) -> Any:
    return field(metadata=_metadata(doc, loosens, (), None))


# ----- signing -------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """A signer allowed to sign images: an OIDC issuer plus an exact subject or a regex."""

    issuer: str = required("The OIDC issuer, e.g. https://token.actions.githubusercontent.com.", "any")
    subject: str | None = spec("The exact certificate subject (an email or a workflow URI).", "constraint")
    subject_regex: str | None = spec("A regular expression the whole subject must match.", "regex")
    repository: str | None = spec("GitHub Actions: the repository claim (owner/name), when present.", "constraint")
    workflow_ref: str | None = spec("GitHub Actions: the workflow ref claim, when present.", "constraint")


@dataclass(frozen=True)
class SigningPolicy:
    """Which signatures an image needs before it runs."""

    required: bool = spec("Refuse images without a verifying signature.", "false", False)
    # Each signer trusted admits more images. Strict trusts no one: whom to trust is for the
    # policy that extends it to say (the loader's strict check lets it), and for `diff` to show.
    identities: tuple[Identity, ...] = spec("Keyless signers that are trusted.", "add", default_factory=tuple)
    keys: tuple[str, ...] = spec(
        "Public key files (PEM), relative to the policy file.", "add", compare="public_key", default_factory=tuple
    )
    trusted_root: str | None = spec(
        "A Sigstore trusted_root.json, relative to the policy file.", "any", compare="file_content"
    )
    match_reference: bool = spec(
        "Also require what was signed to name the image's reference (a simple-signing payload's "
        "critical.identity.docker-reference, or the in-toto subject's name): a signed repository "
        "matches any of its tags, a signed tag or digest only itself.",
        "false",
        False,
    )


# ----- sandbox -------------------------------------------------------------------------


@dataclass(frozen=True)
class IdMapping:
    """How container ids map to host ids. An ordinary user maps container root to their
    own uid (plus their /etc/subuid and /etc/subgid ranges); root maps it to the range
    reserved for pysandbox in /etc/subuid and /etc/subgid, or to `host_base`."""

    # Who USER names depends on the image's /etc/passwd and /etc/group: any change may be root.
    user: str | None = spec("Run as this user[:group] instead of the image's USER.", "any")
    # Off, the container holds the invoker's uid alone (a process cannot become an unmapped
    # id); on, it also holds the invoker's whole subordinate range: turning it on loosens.
    subordinate_ids: bool = spec("Use /etc/subuid and /etc/subgid ranges via newuidmap.", "true", True)
    # The reserved range overlaps no user's range; a number chosen by hand may (0 is host root).
    host_base: int | None = spec(
        "When run by root: the first host id of the container's range; null (the default) takes the range "
        "reserved for pysandbox in /etc/subuid and /etc/subgid.",
        "override",
    )
    size: int = spec("When run by root: how many ids the container's range has.", "more", 65536)
    map_root_to_host_root: bool = spec("Let container root be host root (never in strict).", "true", False)


@dataclass(frozen=True)
class Capabilities:
    """Capabilities granted: Docker's default set, minus `drop`, plus `add`."""

    drop: tuple[Capability, ...] = spec(
        "Dropped from Docker's default set; ALL drops every one.", "remove", default_factory=tuple
    )
    add: tuple[Capability, ...] = spec("Added after dropping.", "add", default_factory=tuple)


@dataclass(frozen=True)
class Tmpfs:
    path: str = required("Where the tmpfs is mounted inside the container.", "any")
    size: Size | None = spec("Its size limit.", "more")
    mode: str = spec("Its permissions, octal.", "any", "1777")


@dataclass(frozen=True)
class BindRule:
    """A host path users may bind-mount (`-v SRC:DST`), itself or anything below it."""

    source: str = required("The host path.", "any")
    read_only: bool = spec("Binds of it must be read-only.", "false", True)
    chown: bool = spec(
        "`-v SRC:DST:U` may give the bound tree to the container's user (runs as root): its owners "
        "on the host change for good, to the user's id in the range reserved for pysandbox. Every "
        "folder below this source may be given, other users' included: name the narrowest source.",
        "true",
        False,
    )


@dataclass(frozen=True)
class Mounts:
    read_only_rootfs: bool = spec("Mount the container's root read-only.", "false", False)
    tmpfs: tuple[Tmpfs, ...] = spec("Writable tmpfs mounts.", "writable", default_factory=tuple)
    binds: tuple[BindRule, ...] = spec("Host paths users may bind-mount.", "add", default_factory=tuple)
    volumes: bool = spec("Allow named volumes.", "true", True)
    masked_paths: tuple[str, ...] = spec("Paths hidden inside the container.", "remove", default_factory=tuple)
    readonly_paths: tuple[str, ...] = spec(
        "Paths made read-only inside the container.", "remove", default_factory=tuple
    )


@dataclass(frozen=True)
class Seccomp:
    profile: str = spec(
        "default, strict, unconfined, or a Docker/OCI seccomp JSON file relative to the policy.",
        "profile",
        "default",
    )
    deny: tuple[Syscall, ...] = spec(
        "Syscalls refused with EPERM whatever the profile allows.", "remove", default_factory=tuple
    )
    allow: tuple[Syscall, ...] = spec("Syscalls allowed on top of the profile.", "add", default_factory=tuple)


@dataclass(frozen=True)
class Limits:
    """Resource limits; null means no limit. cgroups enforce them where available,
    rlimits otherwise; a limit named in `required` must be enforceable or the run is refused."""

    memory: Size | None = spec("Memory, e.g. 512Mi.", "more")
    pids: int | None = spec("Processes and threads.", "more")
    open_files: int | None = spec("Open file descriptors (RLIMIT_NOFILE).", "more")
    cpu_time: Duration | None = spec("CPU time (RLIMIT_CPU), e.g. 10m.", "more")
    wall_time: Duration | None = spec("Wall-clock time before the container is killed.", "more")
    cpus: float | None = spec("CPU share, e.g. 1.5 (cgroups only).", "more")
    writable_size: Size | None = spec(
        "Size cap of the container's writable layer, e.g. 256Mi: its upper directory lives on a tmpfs of this "
        "size (the writes count as the container's memory and are gone when it exits).",
        "more",
    )
    required: tuple[Literal["memory", "pids", "open_files", "cpu_time", "wall_time", "cpus", "writable_size"], ...] = (
        spec("Limits that must be enforced, or the run is refused.", "remove", default_factory=tuple)
    )


@dataclass(frozen=True)
class Publish:
    """Container ports published on the host (`-p/--publish`, `-P`): where they may listen."""

    addresses: tuple[IPAddress, ...] = spec(
        "Host addresses a published port may be bound to (IPv4 or IPv6 literals; 0.0.0.0 and :: mean every "
        "address of their family). Empty: nothing may be published.",
        "add",
        default_factory=lambda: (IPAddress("127.0.0.1"),),
    )
    lowest_port: Port = spec("The lowest host port that may be published (1 to 65535).", "less", Port(1024))


RestartName = Literal["no", "on-failure", "always", "unless-stopped"]


@dataclass(frozen=True)
class Lifecycle:
    """Containers that outlive `pysandbox run`: run -d, their restarts, exec and logs."""

    detach: bool = spec("Allow run -d: a container that outlives the command that started it.", "true", True)
    restart: tuple[RestartName, ...] = spec(
        "Restart policies run -d may ask for (--restart); no is always allowed.",
        "add",
        default_factory=lambda: ("no", "on-failure", "always", "unless-stopped"),
    )
    exec: bool = spec(
        "Allow pysandbox exec into a running container (always as the container's own user, under its own "
        "confinement).",
        "true",
        True,
    )
    exec_user: bool = spec(
        "Allow exec -u: exec as another user of the image's (root among them), still under the container's "
        "confinement otherwise.",
        "true",
        True,
    )
    health: bool = spec(
        "Run health checks (the image's HEALTHCHECK, --health-cmd): the monitor runs each through exec's path; "
        "without it the image's HEALTHCHECK is not run and --health-cmd is refused.",
        "true",
        True,
    )
    log_max_size: Size = spec("The largest --log-opt max-size allowed, and the default.", "more", Size(10 << 20))
    log_max_file: int = spec("The most --log-opt max-file allowed (the default is 1).", "more", 5)


@dataclass(frozen=True)
class SandboxPolicy:
    """How `pysandbox run` confines a container."""

    ids: IdMapping = spec("Container user and id mapping.", "fields", default_factory=IdMapping)
    namespaces: tuple[Namespace, ...] = spec(
        "Namespaces the container gets of its own.",
        "remove",
        default_factory=lambda: ("user", "pid", "mount", "uts", "ipc", "network", "cgroup"),
    )
    network: Network = spec(
        "The mode a container gets when --network is not given. none: no network; loopback: only lo; pasta, "
        "slirp4netns: rootless outbound access through that engine; bridge: the default bridge network (outbound "
        "access, the other containers on it by address); host: the host's network.",
        "order",
        "loopback",
        order=NETWORK_ORDER,
    )
    network_modes: tuple[Network, ...] = spec(
        "The modes --network may choose besides the default (network): a run may use network, any mode listed "
        "here, and always none or loopback.",
        "add",
        default_factory=lambda: ("none", "loopback"),
    )
    networks: tuple[str, ...] = spec(
        "The user-defined bridge networks (pysandbox network create) a container may join by name, where the "
        "bridge mode is allowed; * for any. Containers on one network reach each other by name.",
        "add",
        default_factory=tuple,
    )
    publish: Publish = spec("Ports published on the host (-p/--publish, -P).", "fields", default_factory=Publish)
    # null lets a container reach anything its network reaches; a list, only that. Judged as a
    # constraint: setting one tightens, and any change to it loosens (when in doubt, loosens).
    egress: tuple[Egress, ...] | None = spec(
        "Destinations a container with an outbound network (pasta, slirp4netns, bridge) may reach, as "
        "CIDR[:PORT[-PORT]] (TCP and UDP; an IPv6 network in brackets), enforced by an nftables table in the "
        "container's own network namespace; its engine's resolver stays reachable for DNS. null: anything. "
        "Refused with a capability that could undo it (NET_ADMIN).",
        "constraint",
    )
    privileged: bool = spec("Every capability, no seccomp, no masked paths: never outside development.", "true", False)
    host_pid: bool = spec("Share the host's pid namespace.", "true", False)
    host_ipc: bool = spec("Share the host's ipc namespace.", "true", False)
    host_uts: bool = spec("Share the host's hostname.", "true", False)
    capabilities: Capabilities = spec("Capabilities granted.", "granted", default_factory=Capabilities)
    no_new_privileges: bool = spec("Set no_new_privs: setuid binaries gain nothing.", "false", True)
    mounts: Mounts = spec("Root filesystem, tmpfs, binds, volumes, masked paths.", "fields", default_factory=Mounts)
    seccomp: Seccomp = spec("The seccomp filter.", "fields", default_factory=Seccomp)
    limits: Limits = spec("Resource limits.", "fields", default_factory=Limits)
    lifecycle: Lifecycle = spec("Detached containers, restarts, exec, logs.", "fields", default_factory=Lifecycle)


# ----- audit ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleSettings:
    enabled: bool = spec("Run this rule.", "false", True)
    # A lower severity may fall below fail_on; null is the rule's own, which only the rule knows.
    severity: Severity | None = spec("Override the rule's default severity.", "order", order=SEVERITIES)


@dataclass(frozen=True)
class Thresholds:
    max_wasted_bytes: Size | None = spec("bloated-layer: wasted bytes allowed in an image.", "more")
    max_wasted_ratio: float | None = spec(
        "bloated-layer: wasted bytes (stored file versions not in the final filesystem) / all file bytes stored, "
        "allowed (0 to 1). Not dive's measure: that is max_user_wasted_ratio.",
        "more",
    )
    max_user_wasted_ratio: float | None = spec(
        "bloated-layer: dive's highestUserWastedPercent: dive's wasted bytes / the bytes of every layer above "
        "the first (0 to 1; dive --ci's default is 0.1).",
        "more",
    )
    max_layer_size: Size | None = spec("bloated-layer: the largest layer allowed.", "more")
    min_efficiency: float | None = spec("bloated-layer: dive's efficiency score required (0 to 1).", "less")


@dataclass(frozen=True)
class Ignore:
    """A finding to ignore: every entry says why, and may expire."""

    rule: str = required("The rule id or category to ignore.", "any")
    reason: str = required("Why: reviewers read this.", "inert")
    target: str | None = spec("Only for targets matching this glob.", "constraint")
    path: str | None = spec("Only for this path inside an image.", "constraint")
    expires: datetime.date | None = spec("After this date the entry stops applying and is itself reported.", "more")


@dataclass(frozen=True)
class AuditPolicy:
    fail_on: Severity = spec(
        "Exit 1 on findings of this severity or above.", "order", DEFAULT_FAIL_ON, order=SEVERITIES[::-1]
    )
    rules: dict[str, RuleSettings] = spec("Per-rule settings, by rule id or name.", "fields", default_factory=dict)
    thresholds: Thresholds = spec("Thresholds of the bloated-layer rule.", "fields", default_factory=Thresholds)
    allowed_registries: tuple[str, ...] = spec(
        "Registries images may come from (empty: any).", "allowlist", default_factory=tuple
    )
    ignore: tuple[Ignore, ...] = spec("Findings to ignore, each with a reason.", "add", default_factory=tuple)


@dataclass(frozen=True)
class Policy:
    version: Literal[1] = required("The policy format version: 1.", "inert")
    # Policies are compared as merged, so what they extend is judged through what it sets.
    extends: str | None = spec("A built-in policy name (strict, baseline, permissive) or a relative path.", "inert")
    signing: SigningPolicy = spec("What signatures images need.", "fields", default_factory=SigningPolicy)
    sandbox: SandboxPolicy = spec("How pysandbox run confines containers.", "fields", default_factory=SandboxPolicy)
    audit: AuditPolicy = spec("What pyaudit reports and when it fails.", "fields", default_factory=AuditPolicy)


def address_covers(entry: str, address: str) -> bool:
    """Whether a publish address entry lets a port be bound to `address`: the address itself,
    or any of its family when the entry is 0.0.0.0 or ::."""
    held, asked = ipaddress.ip_address(entry), ipaddress.ip_address(address)
    return held == asked or (held.is_unspecified and held.version == asked.version)


def granted_capabilities(capabilities: Capabilities, privileged: bool = False) -> frozenset[str]:
    """Docker's rule: start from the default set, drop (ALL empties it), then add (ALL adds every one)."""
    if privileged:
        return LINUX_CAPABILITIES
    granted = set() if "ALL" in capabilities.drop else set(DOCKER_DEFAULT_CAPABILITIES) - set(capabilities.drop)
    if "ALL" in capabilities.add:
        return LINUX_CAPABILITIES
    return frozenset(granted | set(capabilities.add))
