"""Runtime configurations as container specs: `docker inspect` output and OCI runtime
`config.json` (what runc and crun run)."""

from __future__ import annotations

from typing import Any

from pysbx.audit.sources.lines import LineDict, LineList
from pysbx.audit.sources.ports import inspect_ports
from pysbx.audit.sources.settings import host_modes, security_options, setting
from pysbx.audit.spec import ContainerSpec, Mount, Setting

_HOST_NAMESPACES = {"pid": "host_pid", "network": "host_network", "ipc": "host_ipc", "uts": "host_uts"}


def is_docker_inspect(document: object) -> bool:
    return (
        isinstance(document, list)
        and bool(document)
        and all(isinstance(d, dict) and "HostConfig" in d for d in document)
    )


def is_oci_config(document: object) -> bool:
    return isinstance(document, dict) and "ociVersion" in document and "process" in document


def docker_inspect_specs(documents: list[Any], target: str) -> list[ContainerSpec]:
    return [_inspect_spec(item, target) for item in documents if isinstance(item, LineDict)]


def _inspect_spec(item: LineDict, target: str) -> ContainerSpec:
    host, config = item.get("HostConfig") or LineDict(), item.get("Config") or LineDict()
    spec = ContainerSpec("docker-inspect", target, f"container {str(item.get('Name', '?')).lstrip('/')}", item.line)
    spec.image = setting(config, "Image")
    spec.user = setting(config, "User")
    spec.privileged = setting(host, "Privileged")
    host_modes(
        spec, host, {"PidMode": "host_pid", "NetworkMode": "host_network", "IpcMode": "host_ipc", "UTSMode": "host_uts"}
    )
    spec.read_only_rootfs = setting(host, "ReadonlyRootfs")
    caps = host.get("CapAdd") if isinstance(host, dict) else None
    if isinstance(caps, LineList):
        spec.capabilities_added = [(str(c), line) for c, line in zip(caps, caps.item_lines, strict=True)]
    security_options(spec, host.get("SecurityOpt") if isinstance(host, dict) else None)
    spec.mounts = _inspect_mounts(host, item)
    spec.published_ports = inspect_ports(host.get("PortBindings") if isinstance(host, dict) else None)
    return spec


def _inspect_mounts(host: Any, item: LineDict) -> list[Mount]:
    mounts = []
    binds = host.get("Binds") if isinstance(host, dict) else None
    if isinstance(binds, LineList):
        for bind, line in zip(binds, binds.item_lines, strict=True):
            parts = str(bind).split(":")
            if len(parts) >= 2 and parts[0].startswith("/"):
                mounts.append(Mount(parts[0], parts[1], line, read_only=len(parts) > 2 and "ro" in parts[2]))
    listed = item.get("Mounts")
    if isinstance(listed, LineList):
        seen = {m.host_path for m in mounts}
        for mount in listed:
            if isinstance(mount, LineDict) and mount.get("Type") == "bind" and mount.get("Source") not in seen:
                mounts.append(
                    Mount(
                        str(mount.get("Source")),
                        str(mount.get("Destination", "")),
                        mount.line,
                        read_only=mount.get("RW") is False,
                    )
                )
    return mounts


def oci_config_specs(document: LineDict, target: str) -> list[ContainerSpec]:
    process = document.get("process") or LineDict()
    linux = document.get("linux") or LineDict()
    spec = ContainerSpec("oci", target, "process", document.line)
    user = process.get("user") if isinstance(process, dict) else None
    if isinstance(user, LineDict) and "uid" in user:
        spec.user = Setting(user["uid"], user.line_of("uid"))
    spec.no_new_privileges = Setting(
        process.get("noNewPrivileges") is True,
        process.line_of("noNewPrivileges") if isinstance(process, LineDict) else None,
    )
    root = document.get("root")
    if isinstance(root, LineDict):
        spec.read_only_rootfs = Setting(root.get("readonly") is True, root.line_of("readonly"))
    namespaces = linux.get("namespaces") if isinstance(linux, dict) else None
    own = {ns.get("type") for ns in namespaces or [] if isinstance(ns, dict) and not ns.get("path")}
    line = linux.line_of("namespaces") if isinstance(linux, LineDict) else None
    for namespace, attribute in _HOST_NAMESPACES.items():
        if namespace not in own:
            setattr(spec, attribute, Setting(True, line))
    caps = process.get("capabilities") if isinstance(process, dict) else None
    bounding = caps.get("bounding") if isinstance(caps, dict) else None
    if isinstance(bounding, LineList):
        spec.capabilities_added = [(str(c), ln) for c, ln in zip(bounding, bounding.item_lines, strict=True)]
    if isinstance(linux, LineDict):
        spec.seccomp = (
            Setting("set", linux.line_of("seccomp")) if "seccomp" in linux else Setting("unconfined", linux.line)
        )
    mounts = document.get("mounts")
    for mount in mounts if isinstance(mounts, LineList) else []:
        if (
            isinstance(mount, LineDict)
            and str(mount.get("source", "")).startswith("/")
            and "bind" in " ".join(map(str, mount.get("options") or [])) + str(mount.get("type"))
        ):
            options = [str(o) for o in mount.get("options") or []]
            spec.mounts.append(
                Mount(
                    str(mount["source"]),
                    str(mount.get("destination", "")),
                    mount.line,
                    read_only="ro" in options,
                )
            )
    return [spec]
