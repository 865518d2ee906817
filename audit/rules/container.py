"""Rules over ContainerSpec: one implementation for Compose, Kubernetes, docker inspect and
OCI configs. Severities are lowered where an unset value depends on the engine's default."""

from __future__ import annotations

from collections.abc import Iterator

from pysbx.audit.findings import Finding
from pysbx.audit.rules import finding, is_root_user
from pysbx.audit.rules.references import pinning_finding
from pysbx.audit.spec import ContainerSpec, PublishedPort, capability_name
from pysbx.policies.values import ENGINE_SOCKETS

DANGEROUS_CAPABILITIES = {
    "SYS_ADMIN",
    "NET_ADMIN",
    "SYS_PTRACE",
    "SYS_MODULE",
    "DAC_READ_SEARCH",
    "ALL",
    "SYS_RAWIO",
    "SYS_BOOT",
    "BPF",
    "PERFMON",
    "SYS_TIME",
}
EVERY_INTERFACE = (None, "0.0.0.0", "::")  # no address given, or the wildcard of either family
SENSITIVE_EXACT = {
    "/",
    "/etc",
    "/proc",
    "/sys",
    "/var/run",
    "/run",
    "/boot",
    "/dev",
    "/root",
    "/var/lib/docker",
    "/var/lib/kubelet",
    "/usr",
    "/lib",
    "/bin",
    "/sbin",
}
SENSITIVE_TREES = (
    "/proc/",
    "/sys/",
    "/boot/",
    "/etc/kubernetes",
    "/etc/shadow",
    "/etc/sudoers",
    "/root/.ssh",
    "/var/lib/docker/",
)


def container_findings(spec: ContainerSpec) -> Iterator[Finding]:
    """Every finding about one container, each naming it as its subject (two services of
    one Compose file are two objects to a baseline)."""
    for found in _findings_of(spec):
        found.subject = spec.name
        yield found


def _findings_of(spec: ContainerSpec) -> Iterator[Finding]:
    yield from _privileged_and_namespaces(spec)
    yield from _published_ports(spec)
    yield from _user(spec)
    yield from _image(spec)
    yield from _capabilities(spec)
    yield from _seccomp(spec)
    yield from _mounts(spec)
    yield from _hardening(spec)


def _privileged_and_namespaces(spec: ContainerSpec) -> Iterator[Finding]:
    if spec.privileged.value is True:
        yield finding("privileged", spec.target, f"{spec.name} runs privileged", spec.privileged.line)
    for attribute, rule, what in (
        ("host_pid", "host-pid", "PID"),
        ("host_network", "host-network", "network"),
        ("host_ipc", "host-ipc", "IPC"),
        ("host_uts", "host-uts", "UTS"),
    ):
        setting = getattr(spec, attribute)
        if setting.value is True:
            yield finding(rule, spec.target, f"{spec.name} shares the host's {what} namespace", setting.line)


def _published_ports(spec: ContainerSpec) -> Iterator[Finding]:
    """Ports open on every interface of the host. Under the host network every port is the
    host's anyway (Compose drops `ports:` there): host-network says it, louder."""
    if spec.host_network.value is True:
        return
    for port in spec.published_ports:
        if port.host_ip not in EVERY_INTERFACE:
            continue
        mapping, picked = _mapping(port), "" if port.host_port else " on a host port the engine picks"
        yield finding(
            "published-port",
            spec.target,
            f"{spec.name} publishes {mapping}{picked} on every interface ({port.host_ip or '0.0.0.0'}): "
            f"bind it to 127.0.0.1 ({port.loopback_form}) unless other machines must reach it",
            port.line,
            evidence=f"{port.host_ip}:{mapping}" if port.host_ip else mapping,  # as `docker ps` shows it
        )


def _mapping(port: PublishedPort) -> str:
    """`8080->80/tcp` as `docker ps` shows a port, or `80/tcp` where the engine picks the host's."""
    container = f"{port.container_port}/{port.protocol}"
    return f"{port.host_port}->{container}" if port.host_port else container


def _user(spec: ContainerSpec) -> Iterator[Finding]:
    if spec.user.is_set and is_root_user(spec.user.value):
        yield finding("root-user", spec.target, f"{spec.name} runs as user {spec.user.value!r} (root)", spec.user.line)
        return
    if spec.kind != "kubernetes":
        return
    non_root = spec.run_as_non_root.value is True
    if not non_root and not spec.user.is_set:
        yield finding(
            "root-user",
            spec.target,
            f"{spec.name} sets neither runAsNonRoot: true nor a non-zero runAsUser: "
            "it runs as the image's user, often root",
            spec.line,
            severity="low",
        )


def _image(spec: ContainerSpec) -> Iterator[Finding]:
    if spec.image.is_set and not spec.builds_image:
        found = pinning_finding(str(spec.image.value), spec.target, f"{spec.name} uses", spec.image.line)
        if found is not None:
            yield found


def _capabilities(spec: ContainerSpec) -> Iterator[Finding]:
    for raw, line in spec.capabilities_added:
        name = capability_name(raw)
        if name in DANGEROUS_CAPABILITIES:
            verb = "keeps" if spec.kind == "oci" else "adds"
            yield finding(
                "dangerous-capability",
                spec.target,
                f"{spec.name} {verb} capability {name}",
                line,
                evidence=name,
            )


def _seccomp(spec: ContainerSpec) -> Iterator[Finding]:
    if spec.privileged.value is True:
        return  # privileged already says it, louder
    if spec.seccomp.value == "unconfined":
        yield finding(
            "seccomp-disabled",
            spec.target,
            f"{spec.name} runs without a seccomp profile (unconfined)",
            spec.seccomp.line,
        )
    elif spec.kind == "kubernetes" and not spec.seccomp.is_set:
        yield finding(
            "seccomp-disabled",
            spec.target,
            f"{spec.name} sets no seccompProfile: it runs unconfined unless the kubelet enables SeccompDefault",
            spec.line,
            severity="medium",
        )


def _mounts(spec: ContainerSpec) -> Iterator[Finding]:
    for mount in spec.mounts:
        path = mount.host_path.rstrip("/") or "/"
        if path in ENGINE_SOCKETS:
            yield finding(
                "docker-socket",
                spec.target,
                f"{spec.name} mounts the container engine's socket {path}",
                mount.line,
                evidence=path,
            )
        elif path in SENSITIVE_EXACT or path.startswith(SENSITIVE_TREES):
            severity = "medium" if mount.read_only else None
            yield finding(
                "sensitive-mount",
                spec.target,
                f"{spec.name} mounts host path {path}{' read-only' if mount.read_only else ''}",
                mount.line,
                severity=severity,
                evidence=path,
            )


def _hardening(spec: ContainerSpec) -> Iterator[Finding]:
    """Under privileged mode only what was explicitly set is reported: privileged says the rest."""
    privileged = spec.privileged.value is True
    if spec.no_new_privileges.value is not True and (not privileged or spec.no_new_privileges.is_set):
        explicit = spec.no_new_privileges.is_set
        severity = "high" if explicit else ("medium" if spec.kind in ("kubernetes", "oci") else "low")
        how = (
            "allows privilege escalation" if explicit else "does not prevent privilege escalation (no_new_privs unset)"
        )
        yield finding(
            "no-new-privileges",
            spec.target,
            f"{spec.name} {how}",
            spec.no_new_privileges.line or spec.line,
            severity=severity,
        )
    if spec.read_only_rootfs.value is not True and not privileged:
        yield finding(
            "writable-rootfs",
            spec.target,
            f"{spec.name} has a writable root filesystem",
            spec.read_only_rootfs.line or spec.line,
        )
