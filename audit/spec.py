"""ContainerSpec: the runtime settings of one container, whatever file said them
(Compose service, Kubernetes container, `docker inspect`, OCI config.json). The rules in
audit/rules/container.py read only this, so each check is written once."""

from __future__ import annotations

from dataclasses import dataclass, field

Line = int | None


@dataclass
class Setting:
    """A value and the line that set it (None when unset: defaults differ per engine)."""

    value: object = None
    line: Line = None

    @property
    def is_set(self) -> bool:
        return self.value is not None


@dataclass
class Mount:
    host_path: str
    container_path: str
    line: Line
    read_only: bool = False


@dataclass
class PublishedPort:
    """A container port the engine opens on the host, as the source read it: numbers and
    ranges as written ("8080", "8000-8010"), the address normalised ("::" for "[::]")."""

    container_port: str
    protocol: str  # tcp, udp, sctp
    line: Line
    host_port: str = ""  # "" where the engine picks one
    host_ip: str | None = None  # None where none is given: Docker and the kubelet then bind every interface
    loopback_form: str = ""  # the entry bound to 127.0.0.1, spelled as its file spells it


@dataclass
class ContainerSpec:
    kind: str  # compose, kubernetes, docker-inspect, oci
    target: str
    name: str
    line: Line
    image: Setting = field(default_factory=Setting)
    privileged: Setting = field(default_factory=Setting)
    host_pid: Setting = field(default_factory=Setting)
    host_network: Setting = field(default_factory=Setting)
    host_ipc: Setting = field(default_factory=Setting)
    host_uts: Setting = field(default_factory=Setting)
    user: Setting = field(default_factory=Setting)  # a name or uid as written
    run_as_non_root: Setting = field(default_factory=Setting)
    capabilities_added: list[tuple[str, Line]] = field(default_factory=list)
    seccomp: Setting = field(default_factory=Setting)  # "unconfined", "default", a profile name
    no_new_privileges: Setting = field(default_factory=Setting)  # True when escalation is prevented
    read_only_rootfs: Setting = field(default_factory=Setting)
    mounts: list[Mount] = field(default_factory=list)
    published_ports: list[PublishedPort] = field(default_factory=list)
    builds_image: bool = False  # Compose `build:`: `image:` names the result, it is not pulled


def capability_name(raw: object) -> str:
    text = str(raw).strip().upper()
    return text.removeprefix("CAP_")
