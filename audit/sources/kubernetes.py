"""Kubernetes manifests as container specs, with securityContext inheritance (a container's
own setting wins over the pod's), initContainers and ephemeralContainers."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from pysbx.audit.sources.lines import LineDict, LineList
from pysbx.audit.sources.ports import host_address
from pysbx.audit.sources.shape import LIST, MAPPING, ShapeError, described, field_of, items_of
from pysbx.audit.spec import ContainerSpec, Mount, PublishedPort, Setting

WORKLOADS = {
    "Pod",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
    "CronJob",
    "ReplicationController",
    "DeploymentConfig",
}
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


def is_kubernetes(document: object) -> bool:
    return isinstance(document, dict) and "apiVersion" in document and "kind" in document


def kubernetes_specs(document: LineDict, target: str) -> list[ContainerSpec]:
    kind = document.get("kind")
    if kind == "List" or str(kind).endswith("List"):
        items = field_of(document, "items", LIST, target, "")
        return [
            spec
            for item in items_of(items, MAPPING, target, "items")
            if is_kubernetes(item)
            for spec in kubernetes_specs(item, target)
        ]
    if not isinstance(kind, str) or kind not in WORKLOADS:
        return []
    pod, where = _pod_spec(document, target)
    if pod is None:
        return []  # a patch (Kustomize) or a template without a pod: nothing to check here
    name = _get(document.get("metadata"), "name", "?")
    specs = []
    for list_key in _CONTAINER_LISTS:
        containers = field_of(pod, list_key, LIST, target, where)
        for container in items_of(containers, MAPPING, target, f"{where}{list_key}"):
            label = f"{kind}/{name} {list_key[:-1]} {container.get('name', '?')}"
            specs.append(_container_spec(document, pod, container, target, label))
    return specs


def _get(mapping: Any, key: str, default: Any = None) -> Any:
    """mapping[key] where the document has a mapping; a hand-written manifest may hold a
    string or a list anywhere."""
    return mapping.get(key, default) if isinstance(mapping, dict) else default


def _pod_spec(document: LineDict, target: str) -> tuple[LineDict | None, str]:
    """The pod spec and where it is: Pod: .spec; workloads: .spec.template.spec; CronJob:
    .spec.jobTemplate.spec.template.spec. None where a level is absent."""
    path = {"Pod": ("spec",), "CronJob": ("spec", "jobTemplate", "spec", "template", "spec")}
    mapping: LineDict | None = document
    where = ""
    for key in path.get(str(document.get("kind")), ("spec", "template", "spec")):
        if mapping is None:
            return None, where
        mapping = field_of(mapping, key, MAPPING, target, where)
        where += f"{key}."
    return mapping, where


def _context_value(container_ctx: Any, pod_ctx: Any, key: str) -> Setting:
    for context in (container_ctx, pod_ctx):
        if isinstance(context, LineDict) and key in context:
            return Setting(context[key], context.line_of(key))
    return Setting()


def _container_spec(document: LineDict, pod: LineDict, container: LineDict, target: str, label: str) -> ContainerSpec:
    spec = ContainerSpec("kubernetes", target, label, container.line)
    if "image" in container:
        spec.image = Setting(container["image"], container.line_of("image"))
    for key, attribute in (("hostPID", "host_pid"), ("hostNetwork", "host_network"), ("hostIPC", "host_ipc")):
        if key in pod:
            setattr(spec, attribute, Setting(pod[key] is True, pod.line_of(key)))
    ctx = field_of(container, "securityContext", MAPPING, target, f"{label}: ")
    pod_ctx = field_of(pod, "securityContext", MAPPING, target, "pod ")
    spec.privileged = _context_value(ctx, None, "privileged")
    spec.user = _context_value(ctx, pod_ctx, "runAsUser")
    spec.run_as_non_root = _context_value(ctx, pod_ctx, "runAsNonRoot")
    escalation = _context_value(ctx, None, "allowPrivilegeEscalation")
    if escalation.is_set:
        spec.no_new_privileges = Setting(escalation.value is False, escalation.line)
    spec.read_only_rootfs = _context_value(ctx, None, "readOnlyRootFilesystem")
    spec.seccomp = _seccomp(ctx, pod_ctx, document)
    caps = field_of(ctx, "capabilities", MAPPING, target, f"{label}: securityContext.") if ctx else None
    added = field_of(caps, "add", LIST, target, f"{label}: securityContext.capabilities.") if caps else None
    if added is not None:
        spec.capabilities_added = [(str(c), line) for c, line in zip(added, added.item_lines, strict=True)]
    spec.mounts = _host_paths(pod, container)
    spec.published_ports = _host_ports(container, target, label)
    return spec


def _seccomp(ctx: Any, pod_ctx: Any, document: LineDict) -> Setting:
    profile = _context_value(ctx, pod_ctx, "seccompProfile")
    if isinstance(profile.value, dict):
        kind = str(profile.value.get("type", ""))
        return Setting("unconfined" if kind == "Unconfined" else kind or "set", profile.line)
    annotations = _template_annotations(document)
    for key, value in annotations.items():
        if key.startswith(("seccomp.security.alpha.kubernetes.io/", "container.seccomp.security.alpha.kubernetes.io/")):
            return Setting("unconfined" if value == "unconfined" else str(value), annotations.line_of(key))
    return Setting()


def _template_annotations(document: LineDict) -> LineDict:
    candidates = [document.get("metadata")]
    spec = document.get("spec")
    if document.get("kind") == "CronJob":
        spec = _get(_get(spec, "jobTemplate"), "spec")
    template = _get(spec, "template")
    if isinstance(template, dict):
        candidates.insert(0, template.get("metadata"))
    for metadata in candidates:
        if isinstance(metadata, LineDict) and isinstance(metadata.get("annotations"), LineDict):
            found: LineDict = metadata["annotations"]
            return found
    empty = LineDict()
    empty.key_lines = {}
    return empty


def _host_paths(pod: LineDict, container: LineDict) -> list[Mount]:
    """The container's mounts of the pod's hostPath volumes, matched by name. Names are
    compared only when they can be (a name written as a list or mapping matches nothing)."""
    volumes = pod.get("volumes")
    if not isinstance(volumes, LineList):
        return []
    host_paths = {}
    for volume in volumes:
        if isinstance(volume, LineDict) and isinstance(volume.get("hostPath"), dict):
            path, name = volume["hostPath"].get("path"), volume.get("name")
            if path and isinstance(name, Hashable):
                host_paths[name] = (str(path), volume.line)
    mounts = []
    mounted = container.get("volumeMounts")
    for mount in mounted if isinstance(mounted, LineList) else []:
        name = mount.get("name") if isinstance(mount, LineDict) else None
        if isinstance(name, Hashable) and name in host_paths:
            path, line = host_paths.pop(name)
            mounts.append(Mount(path, str(mount.get("mountPath", "")), line, read_only=mount.get("readOnly") is True))
    return mounts


def _host_ports(container: LineDict, target: str, label: str) -> list[PublishedPort]:
    """The container's ports with a hostPort, which the kubelet binds on the node: on hostIP,
    every interface where none is given. A containerPort alone stays in the pod network, and a
    Service (NodePort, LoadBalancer) is exposure on purpose, not a workload's setting."""
    ports = field_of(container, "ports", LIST, target, f"{label}: ")
    return [
        _host_port(port, target, f"{label}: ports.")
        for port in items_of(ports, MAPPING, target, f"{label}: ports")
        if port.get("hostPort") not in (None, 0)
    ]


def _host_port(port: LineDict, target: str, where: str) -> PublishedPort:
    host_port = _port_number(port, "hostPort", target, where)
    container_port = _port_number(port, "containerPort", target, where)
    try:
        address = host_address(str(port.get("hostIP") or ""))
    except ValueError as error:
        raise ShapeError(f"{target}:{port.line_of('hostIP')}: {where}hostIP: {error}") from None
    return PublishedPort(
        container_port=str(container_port),
        protocol=str(port.get("protocol") or "TCP").lower(),
        line=port.line_of("hostPort"),
        host_port=str(host_port),
        host_ip=address,
        loopback_form="hostIP: 127.0.0.1",
    )


def _port_number(port: LineDict, key: str, target: str, where: str) -> int:
    """A port number as the API server accepts it: an integer from 1 to 65535."""
    number = port.get(key)
    if type(number) is int and 0 < number <= 65535:  # not a bool, which Python counts as an int
        return number
    found = str(number) if type(number) is int else "nothing" if number is None else described(number)
    raise ShapeError(f"{target}:{port.line_of(key)}: {where}{key}: expected a port number (1-65535), found {found}")
