"""Compose files (v2 and the Compose Specification) as container specs, one per service."""

from __future__ import annotations

from typing import Any

from pysbx.audit.sources.settings import host_modes, security_options, setting
from pysbx.audit.sources.yamllines import LineDict, LineList
from pysbx.audit.spec import ContainerSpec, Mount


def is_compose(document: object) -> bool:
    return isinstance(document, dict) and isinstance(document.get("services"), dict)


def compose_specs(document: LineDict, target: str) -> list[ContainerSpec]:
    services = document["services"]
    specs = []
    for name, service in services.items():
        if not isinstance(service, LineDict):
            continue
        specs.append(_service_spec(name, service, target, services.line_of(name)))
    return specs


def _service_spec(name: str, service: LineDict, target: str, line: int) -> ContainerSpec:
    spec = ContainerSpec("compose", target, f"service {name}", line)
    spec.image = setting(service, "image")
    spec.builds_image = "build" in service
    spec.privileged = setting(service, "privileged")
    host_modes(spec, service, {"pid": "host_pid", "ipc": "host_ipc", "uts": "host_uts", "network_mode": "host_network"})
    spec.user = setting(service, "user")
    spec.read_only_rootfs = setting(service, "read_only")
    caps = service.get("cap_add")
    if isinstance(caps, LineList):
        spec.capabilities_added = [(str(cap), line) for cap, line in zip(caps, caps.item_lines, strict=True)]
    security_options(spec, service.get("security_opt"))
    spec.mounts = _volumes(service)
    return spec


def _volumes(service: LineDict) -> list[Mount]:
    volumes = service.get("volumes")
    if not isinstance(volumes, LineList):
        return []
    mounts = []
    for volume, line in zip(volumes, volumes.item_lines, strict=True):
        mount = _volume(volume, line)
        if mount is not None:
            mounts.append(mount)
    return mounts


def _volume(volume: Any, line: int) -> Mount | None:
    """Short form `SRC:DST[:ro]` or long form `{type: bind, source, target}`; named
    volumes (no `/` or `.` at the start of SRC) are not host paths."""
    if isinstance(volume, str):
        parts = volume.split(":")
        if len(parts) < 2 or not parts[0].startswith(("/", ".", "~", "$")):
            return None
        return Mount(parts[0], parts[1], line, read_only=len(parts) > 2 and "ro" in parts[2].split(","))
    if isinstance(volume, dict) and volume.get("type") == "bind" and volume.get("source"):
        return Mount(
            str(volume["source"]),
            str(volume.get("target", "")),
            line,
            read_only=volume.get("read_only") is True,
        )
    return None
