"""Exporting a policy to the engines users move to: an OCI runtime `config.json` (runc,
crun), `docker run` flags with a seccomp profile, and Kubernetes securityContext with a
Localhost seccomp profile. Each maps the same settings; what an engine cannot express is
said in the output rather than silently dropped."""

from __future__ import annotations

import json
import platform as host_platform
from typing import Any

import yaml

from pysbx.policies import model
from pysbx.policies.errors import PolicyError, Problem
from pysbx.policies.values import format_size, parse_egress

_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def export_files(policy: model.Policy, target: str, reserved_base: int | None = None) -> dict[str, str]:
    """File name -> content for `target` (oci, docker or kubernetes). `reserved_base`: the
    first id of the range this host reserves for pysandbox, for a policy whose ids.host_base
    is null (the OCI config needs a number)."""
    if target == "oci":
        return {"config.json": json.dumps(oci_config(policy, reserved_base=reserved_base), indent=2) + "\n"}
    if target == "docker":
        notes = [
            "Docker applies its own masked and read-only paths; user namespaces need the daemon's userns-remap.",
            *unexpressed_network(policy, "docker"),
            *unenforced(policy, "docker"),
        ]
        note = "".join(f"# {line}\n" for line in notes)
        files = {"docker-run.txt": note + " \\\n  ".join(["docker run", *docker_flags(policy), "IMAGE"]) + "\n"}
        if policy.sandbox.seccomp.profile != "unconfined" and not policy.sandbox.privileged:
            files["seccomp.json"] = json.dumps(docker_seccomp(policy), indent=2) + "\n"
        return files
    if target == "kubernetes":
        files = {"pod.yaml": yaml.dump(kubernetes_pod(policy), Dumper=_PlainDumper, sort_keys=False)}
        network_policy = kubernetes_network_policy(policy)
        if network_policy is not None:
            files["networkpolicy.yaml"] = yaml.dump(network_policy, Dumper=_PlainDumper, sort_keys=False)
        if _seccomp_on(policy):
            files[_profile_file(policy)] = json.dumps(docker_seccomp(policy), indent=2) + "\n"
        return files
    raise PolicyError([Problem("export", 1, 1, f"unknown export target {target!r}")])


class _PlainDumper(yaml.SafeDumper):
    """YAML without anchors and aliases (`&id001`): a manifest a reviewer reads top to bottom."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _seccomp_on(policy: model.Policy) -> bool:
    return policy.sandbox.seccomp.profile != "unconfined" and not policy.sandbox.privileged


def _granted(policy: model.Policy) -> list[str]:
    return sorted(model.granted_capabilities(policy.sandbox.capabilities, policy.sandbox.privileged))


def _numeric_user(policy: model.Policy) -> tuple[int, int] | None:
    """ids.user as the numbers OCI and Kubernetes take (UID[:GID]); None when it is unset or a
    name, which only the image's /etc/passwd resolves (never 0 in its place: that is root)."""
    user = policy.sandbox.ids.user
    uid, _, gid = (user or "").partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        return None
    return int(uid), int(gid or uid)


def _oci_user(policy: model.Policy) -> tuple[int, int]:
    user = policy.sandbox.ids.user
    numbers = _numeric_user(policy)
    if user and numbers is None:
        raise PolicyError(
            [Problem("export", 1, 1, f"ids.user {user!r} is a name; an OCI config takes numbers: set UID[:GID]")]
        )
    return numbers or (0, 0)


def unenforced(policy: model.Policy, engine: str) -> list[str]:
    """What `engine` (oci, docker, kubernetes) does not enforce of the policy, and what would."""
    notes = []
    if policy.signing.required:
        controller = {
            "kubernetes": "an admission controller (Sigstore policy-controller, or Kyverno verifyImages)",
            "docker": "a verifying step before docker run (cosign verify, or pysandbox verify)",
            "oci": "a verifying step before the runtime starts it (pysandbox verify, cosign verify)",
        }[engine]
        notes.append(f"signing.required: {engine} runs unsigned images; enforce signatures with {controller}")
    return notes


# How each engine comes nearest to a rootless network mode, which none of them starts itself.
_ROOTLESS_NEAREST = {
    "docker": "Docker has neither pasta nor slirp4netns (podman run takes --network {mode} as written); its "
    "nearest is the default bridge, which also reaches the other containers on it",
    "oci": "the config gives a network namespace with loopback alone: start {mode} on it for outbound access, "
    "as podman does",
    "kubernetes": "a Pod has the cluster's network: limit its traffic with a NetworkPolicy",
}
# How each engine keeps to the ports a policy lets a run publish, which none of them limits.
# An OCI runtime publishes no port itself: a policy that allows none needs no note for it.
_NO_PUBLISHING = {
    "docker": "give no -p or -P (docker run refuses neither)",
    "kubernetes": "give no container a hostPort",
}
_PUBLISHING = {
    "docker": "write each -p as ADDRESS:HOSTPORT:PORT with one of them, and no -P (it binds every address)",
    "oci": "an OCI runtime publishes no ports; whatever forwards them (pasta, slirp4netns) must keep to these",
    "kubernetes": "nothing in a Pod limits its ports (a container port's hostIP and hostPort would publish one "
    "anywhere): expose it through a Service and limit who reaches it with a NetworkPolicy",
}


_EGRESS = {
    "oci": "a runtime config has no egress rules; load an nftables table into the container's network namespace",
    "docker": "Docker has no egress rules; add them to the DOCKER-USER chain or the container's network",
}


def unexpressed_network(policy: model.Policy, engine: str) -> list[str]:
    """What `engine` (oci, docker, kubernetes) cannot say of the network settings: a rootless
    default mode, the modes a run may choose, and the addresses and ports it may publish."""
    sandbox, notes = policy.sandbox, []
    if sandbox.network in model.ROOTLESS_NETWORKS:
        notes.append(f"network {sandbox.network}: " + _ROOTLESS_NEAREST[engine].format(mode=sandbox.network))
    chosen = [mode for mode in sandbox.network_modes if mode not in ("none", "loopback", sandbox.network)]
    if chosen:
        notes.append(
            f"network_modes: a run may also choose {' or '.join(chosen)}; the export gives the default "
            f"({sandbox.network}) alone"
        )
    if sandbox.networks:
        notes.append(
            f"networks: a run may join the bridge networks {', '.join(sandbox.networks)} (by name, with DNS); the "
            "export gives the default network alone"
        )
    if sandbox.egress is not None and engine != "kubernetes":  # kubernetes: networkpolicy.yaml
        notes.append(f"egress: only {', '.join(sandbox.egress) or 'nothing'}: {_EGRESS[engine]}")
    publish = sandbox.publish
    if publish.addresses:
        allowed = f"only {' or '.join(publish.addresses)}, host ports from {publish.lowest_port}"
        notes.append(f"publish: {allowed}: {_PUBLISHING[engine]}")
    elif engine in _NO_PUBLISHING:
        notes.append(f"publish: no port may be published: {_NO_PUBLISHING[engine]}")
    return notes


# ----- OCI runtime config ------------------------------------------------------------------


def oci_config(
    policy: model.Policy, args: tuple[str, ...] = ("/bin/sh",), reserved_base: int | None = None
) -> dict[str, Any]:
    sandbox = policy.sandbox
    uid, gid = _oci_user(policy)
    caps = _granted(policy)
    namespaces = [{"type": name} for name in sandbox.namespaces]
    config: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": uid, "gid": gid},
            "args": list(args),
            "env": [_PATH],
            "cwd": "/",
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
                "inheritable": [],
                "ambient": [],
            },
            "rlimits": _oci_rlimits(sandbox.limits),
            "noNewPrivileges": sandbox.no_new_privileges,
        },
        "root": {"path": "rootfs", "readonly": sandbox.mounts.read_only_rootfs},
        "hostname": "pysandbox",
        "mounts": _oci_mounts(policy),
        "linux": {
            "namespaces": namespaces,
            "maskedPaths": [] if sandbox.privileged else list(sandbox.mounts.masked_paths),
            "readonlyPaths": [] if sandbox.privileged else list(sandbox.mounts.readonly_paths),
            "resources": _oci_resources(sandbox.limits),
        },
    }
    if "uts" not in sandbox.namespaces:
        del config["hostname"]
    if "user" in sandbox.namespaces:
        if sandbox.ids.map_root_to_host_root:
            mapping = [{"containerID": 0, "hostID": 0, "size": sandbox.ids.size}]
        else:
            mapping = [{"containerID": 0, "hostID": _host_base(sandbox.ids, reserved_base), "size": sandbox.ids.size}]
        config["linux"]["uidMappings"] = mapping
        config["linux"]["gidMappings"] = mapping
    if _seccomp_on(policy):
        config["linux"]["seccomp"] = oci_seccomp(policy)
    annotations = {
        "pysandbox.dev/not-expressible": "; ".join(unexpressed_network(policy, "oci")),
        "pysandbox.dev/not-enforced": "; ".join(unenforced(policy, "oci")),
    }
    if any(annotations.values()):
        config["annotations"] = {key: value for key, value in annotations.items() if value}
    return config


def _host_base(ids: model.IdMapping, reserved_base: int | None) -> int:
    """Never a null hostID: runc would read it as 0, host root."""
    base = ids.host_base if ids.host_base is not None else reserved_base
    if base is None:
        raise PolicyError(
            [
                Problem(
                    "export",
                    1,
                    1,
                    "sandbox.ids.host_base is null (the range reserved for pysandbox in /etc/subuid) and this "
                    "host reserves none: run `pysandbox system setup-ids`, or set ids.host_base for the target host",
                )
            ]
        )
    return base


def _oci_rlimits(limits: model.Limits) -> list[dict[str, Any]]:
    rlimits = []
    if limits.open_files is not None:
        rlimits.append({"type": "RLIMIT_NOFILE", "hard": limits.open_files, "soft": limits.open_files})
    if limits.cpu_time is not None:
        seconds = int(limits.cpu_time)
        rlimits.append({"type": "RLIMIT_CPU", "hard": seconds, "soft": seconds})
    return rlimits


def _oci_resources(limits: model.Limits) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if limits.memory is not None:
        resources["memory"] = {"limit": limits.memory}
    if limits.pids is not None:
        resources["pids"] = {"limit": limits.pids}
    if limits.cpus is not None:
        resources["cpu"] = {"quota": int(limits.cpus * 100000), "period": 100000}
    return resources


def _oci_mounts(policy: model.Policy) -> list[dict[str, Any]]:
    sandbox = policy.sandbox
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
    ]
    if "network" in sandbox.namespaces:
        mounts.append(
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            }
        )
    else:  # sysfs belongs to the network namespace's owner: bind the host's, read-only
        mounts.append(
            {
                "destination": "/sys",
                "type": "none",
                "source": "/sys",
                "options": ["rbind", "nosuid", "noexec", "nodev", "ro"],
            }
        )
    for tmpfs in sandbox.mounts.tmpfs:
        options = ["nosuid", "nodev", f"mode={tmpfs.mode}"]
        if tmpfs.size is not None:
            options.append(f"size={tmpfs.size}")
        mounts.append({"destination": tmpfs.path, "type": "tmpfs", "source": "tmpfs", "options": options})
    return mounts


# ----- seccomp in both formats --------------------------------------------------------------


def docker_seccomp(policy: model.Policy) -> dict[str, Any]:
    """The profile in Docker's format (includes/excludes kept: Docker resolves them)."""
    from pysbx.policies.seccomp import load_profile, with_overrides

    seccomp = policy.sandbox.seccomp
    profile = with_overrides(load_profile(seccomp.profile), deny=seccomp.deny, allow=seccomp.allow)
    document: dict[str, Any] = profile.to_json()
    return document


def oci_seccomp(policy: model.Policy) -> dict[str, Any]:
    """The OCI runtime-spec form: no includes/excludes, so the rules are resolved here for
    the capabilities the policy grants and this machine's architecture."""
    from pysbx.policies.seccomp import load_profile, oci_document, with_overrides

    seccomp = policy.sandbox.seccomp
    profile = with_overrides(load_profile(seccomp.profile), deny=seccomp.deny, allow=seccomp.allow)
    arch = _ARCH.get(host_platform.machine(), host_platform.machine())
    document: dict[str, Any] = oci_document(profile, frozenset(_granted(policy)), arch)
    return document


# ----- Docker ------------------------------------------------------------------------------


def docker_flags(policy: model.Policy) -> list[str]:
    sandbox = policy.sandbox
    if sandbox.privileged:
        return ["--privileged"]
    flags = ["--cap-drop ALL", *(f"--cap-add {name.removeprefix('CAP_')}" for name in _granted(policy))]
    if sandbox.no_new_privileges:
        flags.append("--security-opt no-new-privileges")
    flags.append(
        "--security-opt seccomp=unconfined" if not _seccomp_on(policy) else "--security-opt seccomp=seccomp.json"
    )
    if sandbox.mounts.read_only_rootfs:
        flags.append("--read-only")
    for tmpfs in sandbox.mounts.tmpfs:
        size = f",size={format_size(tmpfs.size).lower().replace('i', '')}" if tmpfs.size is not None else ""
        flags.append(f"--tmpfs {tmpfs.path}:rw,nosuid,nodev,mode={tmpfs.mode}{size}")
    flags.append(f"--network {_docker_network(sandbox.network)}")
    for flag, name in (("host_pid", "pid"), ("host_ipc", "ipc"), ("host_uts", "uts")):
        if getattr(sandbox, flag):
            flags.append(f"--{name} host")
    if sandbox.ids.user:
        flags.append(f"--user {sandbox.ids.user}")
    limits = sandbox.limits
    if limits.memory is not None:
        flags.append(f"--memory {limits.memory}b")
    if limits.pids is not None:
        flags.append(f"--pids-limit {limits.pids}")
    if limits.open_files is not None:
        flags.append(f"--ulimit nofile={limits.open_files}:{limits.open_files}")
    if limits.cpu_time is not None:
        flags.append(f"--ulimit cpu={int(limits.cpu_time)}:{int(limits.cpu_time)}")
    if limits.cpus is not None:
        flags.append(f"--cpus {limits.cpus}")
    lifecycle = sandbox.lifecycle
    size = format_size(lifecycle.log_max_size).lower().replace("i", "")
    flags += [f"--log-opt max-size={size}", f"--log-opt max-file={lifecycle.log_max_file}"]
    if not lifecycle.health:
        flags.append("--no-healthcheck")
    return flags


def _docker_network(network: str) -> str:
    """--network as docker and podman spell it: their none keeps lo up, which is our loopback;
    pasta and slirp4netns are podman's (Docker has neither: the notes say so)."""
    return "none" if network == "loopback" else network


# ----- Kubernetes ---------------------------------------------------------------------------


def _restart_policy(lifecycle: model.Lifecycle) -> str:
    """The pod's restartPolicy: the most a policy's allowed restart policies permit."""
    if {"always", "unless-stopped"} & set(lifecycle.restart):
        return "Always"
    return "OnFailure" if "on-failure" in lifecycle.restart else "Never"


def _profile_file(policy: model.Policy) -> str:
    profile = policy.sandbox.seccomp.profile
    name = profile if "/" not in profile else profile.rsplit("/", 1)[-1].removesuffix(".json")
    return f"pysandbox-{name}.json"


PLACEHOLDER_IMAGE = "registry.example.com/app@sha256:" + "0" * 64


def kubernetes_pod(policy: model.Policy) -> dict[str, Any]:
    """A Pod whose pod- and container-level securityContext say what the policy says.
    The seccomp profile must be copied to each node's kubelet seccomp directory."""
    sandbox = policy.sandbox
    numbers = _numeric_user(policy)
    seccomp = (
        {"type": "Localhost", "localhostProfile": _profile_file(policy)}
        if _seccomp_on(policy)
        else {"type": "Unconfined"}
    )
    container_context: dict[str, Any] = {
        "privileged": sandbox.privileged,
        "capabilities": {"drop": ["ALL"], "add": [name.removeprefix("CAP_") for name in _granted(policy)]},
        "seccompProfile": seccomp,
    }
    # What the policy requires is said; what it only permits is left to the default (which
    # permits it too), rather than asked for explicitly.
    if sandbox.no_new_privileges:
        container_context["allowPrivilegeEscalation"] = False
    if sandbox.mounts.read_only_rootfs:
        container_context["readOnlyRootFilesystem"] = True
    if numbers is not None:
        container_context["runAsUser"], container_context["runAsGroup"] = numbers
    if sandbox.ids.user and (numbers is None or numbers[0] != 0) and sandbox.ids.user.split(":")[0] != "root":
        container_context["runAsNonRoot"] = True  # a name: the kubelet refuses a root image user
    resources: dict[str, Any] = {}
    if sandbox.limits.memory is not None:
        resources["memory"] = format_size(sandbox.limits.memory)
    if sandbox.limits.cpus is not None:
        resources["cpu"] = str(sandbox.limits.cpus)
    volumes = [
        {
            "name": f"tmpfs-{i}",
            "emptyDir": {"medium": "Memory", **({"sizeLimit": format_size(t.size)} if t.size else {})},
        }
        for i, t in enumerate(sandbox.mounts.tmpfs)
    ]
    container: dict[str, Any] = {
        "name": "app",
        "image": PLACEHOLDER_IMAGE,
        "securityContext": container_context,
        "volumeMounts": [{"name": f"tmpfs-{i}", "mountPath": t.path} for i, t in enumerate(sandbox.mounts.tmpfs)],
    }
    if resources:
        container["resources"] = {"limits": resources}
    spec: dict[str, Any] = {
        "hostPID": sandbox.host_pid,
        "hostIPC": sandbox.host_ipc,
        "hostNetwork": sandbox.network == "host",
        # User namespaces (Kubernetes 1.30+): container root is not host root.
        "hostUsers": "user" not in sandbox.namespaces or sandbox.ids.map_root_to_host_root,
        "automountServiceAccountToken": False,
        "securityContext": {"seccompProfile": seccomp},
        "containers": [container],
        "volumes": volumes,
        "restartPolicy": _restart_policy(sandbox.lifecycle),
    }
    unexpressed = []
    if not sandbox.lifecycle.exec:
        unexpressed.append("exec forbidden: deny pods/exec in RBAC")
    if sandbox.limits.pids is not None:
        unexpressed.append(f"pids {sandbox.limits.pids}: set the kubelet's podPidsLimit")
    if sandbox.limits.open_files is not None:
        unexpressed.append(f"open files {sandbox.limits.open_files}: set the container runtime's default ulimits")
    unexpressed.append("masked and read-only paths: procMount Default keeps the runtime's own")
    unexpressed += unexpressed_network(policy, "kubernetes")
    annotations = {
        "pysandbox.dev/image": f"replace {PLACEHOLDER_IMAGE} with the image, pinned by its digest",
        "pysandbox.dev/not-expressible": "; ".join(unexpressed),
    }
    notes = unenforced(policy, "kubernetes")
    if notes:
        annotations["pysandbox.dev/not-enforced"] = "; ".join(notes)
    metadata = {"name": "app", "labels": {"app": "app"}, "annotations": annotations}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def kubernetes_network_policy(policy: model.Policy) -> dict[str, Any] | None:
    """The NetworkPolicy for pod.yaml's pod: no traffic at all for none and loopback; the
    egress allow-list as ipBlock rules (with DNS to anywhere on port 53: the cluster's
    resolver has no fixed address); None where the policy restricts nothing a NetworkPolicy
    says (host's network, an outbound mode without a list)."""
    sandbox = policy.sandbox
    if sandbox.network == "host" or (sandbox.network in model.OUTBOUND_NETWORKS and sandbox.egress is None):
        return None
    spec: dict[str, Any] = {"podSelector": {"matchLabels": {"app": "app"}}}
    if sandbox.network in ("none", "loopback"):
        spec |= {"policyTypes": ["Ingress", "Egress"], "ingress": [], "egress": []}
    else:
        dns = {"ports": [{"protocol": protocol, "port": 53} for protocol in ("UDP", "TCP")]}
        spec |= {"policyTypes": ["Egress"], "egress": [dns, *map(_egress_rule, sandbox.egress or ())]}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "app"}, "spec": spec}


def _egress_rule(text: str) -> dict[str, Any]:
    rule = parse_egress(text)
    assert rule is not None  # the loader admitted it
    network, low, high = rule
    block: dict[str, Any] = {"to": [{"ipBlock": {"cidr": str(network)}}]}
    if (low, high) != (1, 65535):
        port: dict[str, Any] = {"port": low} if low == high else {"port": low, "endPort": high}
        block["ports"] = [{"protocol": protocol, **port} for protocol in ("TCP", "UDP")]
    return block
