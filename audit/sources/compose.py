"""Compose files (v2 and the Compose Specification) as container specs, one per service."""

from __future__ import annotations

from typing import Any

from audit.sources.yamllines import LineDict, LineList
from audit.spec import ContainerSpec, Mount, Setting


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


def _setting(service: LineDict, key: str) -> Setting:
    return Setting(service[key], service.line_of(key)) if key in service else Setting()


def _service_spec(name: str, service: LineDict, target: str, line: int) -> ContainerSpec:
    spec = ContainerSpec("compose", target, f"service {name}", line)
    spec.image = _setting(service, "image")
    spec.builds_image = "build" in service
    spec.privileged = _setting(service, "privileged")
    for key, attribute in (
        ("pid", "host_pid"),
        ("ipc", "host_ipc"),
        ("uts", "host_uts"),
        ("network_mode", "host_network"),
    ):
        if service.get(key) == "host":
            setattr(spec, attribute, Setting(True, service.line_of(key)))
    spec.user = _setting(service, "user")
    spec.read_only_rootfs = _setting(service, "read_only")
    caps = service.get("cap_add")
    if isinstance(caps, LineList):
        spec.capabilities_added = [(str(cap), line) for cap, line in zip(caps, caps.item_lines, strict=True)]
    _security_options(spec, service)
    spec.mounts = _volumes(service)
    return spec


def _security_options(spec: ContainerSpec, service: LineDict) -> None:
    options = service.get("security_opt")
    if not isinstance(options, LineList):
        return
    for option, line in zip(options, options.item_lines, strict=True):
        key, _, value = str(option).replace("=", ":", 1).partition(":")
        if key == "seccomp":
            spec.seccomp = Setting("unconfined" if value == "unconfined" else value, line)
        elif key == "no-new-privileges" and value in ("", "true"):
            spec.no_new_privileges = Setting(True, line)


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
