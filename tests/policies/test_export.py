"""`pysandbox policy export`: the OCI config runs the busybox image under the real runc with
the policy's effect visible inside; the Docker and Kubernetes forms say the same things."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pysbx.images import open_image
from pysbx.images.extract import unpack_image
from pysbx.policies import model
from pysbx.policies.export import docker_flags, export_files, kubernetes_pod, oci_config
from pysbx.policies.loader import load_policy

BIN = Path(sys.executable).parent


def status_fields(text: str) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


@pytest.fixture(scope="module")
def busybox_rootfs(busybox_image: Path) -> Iterator[Path]:
    """A bundle the container's mapped ids can reach: pytest's own temporary folders are
    0700 and owned by root, which an unprivileged host id cannot traverse."""
    bundle = Path(tempfile.mkdtemp(prefix="pysandbox-bundle-"))
    bundle.chmod(0o755)
    unpack_image(open_image(str(busybox_image)), bundle / "rootfs")
    yield bundle
    shutil.rmtree(bundle)


def run_in_runc(bundle: Path, config: dict[str, object], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("runc") is None or os.geteuid() != 0:
        pytest.skip("needs Debian's runc, run as root")
    (bundle / "config.json").write_text(json.dumps(config))
    name = f"pysandbox-test-{uuid.uuid4().hex[:8]}"
    return subprocess.run(
        ["runc", "--root", str(tmp_path / "state"), "run", "--bundle", str(bundle), name],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def reserved_base() -> int:
    from pysbx.sandbox.idmap import PASSWD, SUBUID, reserved_range

    return reserved_range(SUBUID, PASSWD).host  # the root test session reserves it (tests/conftest.py)


def test_the_exported_strict_config_runs_busybox_under_runc_confined(busybox_rootfs: Path, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    config = oci_config(
        load_policy("strict").policy,
        reserved_base=reserved_base(),
        args=(
            "/bin/sh",
            "-c",
            "cat /proc/self/status /proc/self/uid_map; touch /x 2>&1; touch /tmp/ok && echo tmp-writable",
        ),
    )
    result = run_in_runc(busybox_rootfs, config, tmp_path)
    assert result.returncode == 0, result.stderr
    status = status_fields(result.stdout)
    assert status["CapEff"].strip() == "0000000000000000"
    assert status["CapBnd"].strip() == "0000000000000000"
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"
    uid_map = [line.split() for line in result.stdout.splitlines() if len(line.split()) == 3 and line.split()[0] == "0"]
    assert uid_map == [["0", str(reserved_base()), "65536"]]  # container root is pysandbox's range, not host root
    assert "Read-only file system" in result.stdout and "tmp-writable" in result.stdout


def test_the_exported_baseline_config_grants_dockers_default_capabilities(busybox_rootfs: Path, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    config = oci_config(
        load_policy("baseline").policy, args=("/bin/sh", "-c", "cat /proc/self/status"), reserved_base=reserved_base()
    )
    result = run_in_runc(busybox_rootfs, config, tmp_path)
    assert result.returncode == 0, result.stderr
    # CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW
    # SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP: Docker's default set, as a bit mask.
    assert status_fields(result.stdout)["CapEff"].strip() == "00000000a80425fb"
    assert status_fields(result.stdout)["NoNewPrivs"].strip() == "0"


def test_the_exported_strict_seccomp_filter_refuses_what_strict_forbids(busybox_rootfs: Path, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    config = oci_config(
        load_policy("strict").policy,
        args=("/bin/sh", "-c", "mount -t tmpfs none /mnt; echo rc=$?"),
        reserved_base=reserved_base(),
    )
    result = run_in_runc(busybox_rootfs, config, tmp_path)
    assert "rc=" in result.stdout and "rc=0" not in result.stdout


def test_docker_flags_say_what_the_policy_says() -> None:
    strict = docker_flags(load_policy("strict").policy)
    assert strict[:2] == ["--cap-drop ALL", "--security-opt no-new-privileges"]
    assert {"--read-only", "--network none", "--pids-limit 256", "--ulimit nofile=1024:1024"} <= set(strict)
    assert "--tmpfs /tmp:rw,nosuid,nodev,mode=1777,size=64m" in strict
    baseline = docker_flags(load_policy("baseline").policy)
    assert "--cap-add NET_BIND_SERVICE" in baseline and "--read-only" not in baseline
    files = export_files(load_policy("strict").policy, "docker")
    profile = json.loads(files["seccomp.json"])
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO" and "syscalls" in profile


def test_kubernetes_security_context_says_what_the_policy_says() -> None:
    pod = kubernetes_pod(load_policy("strict").policy)
    container = pod["spec"]["containers"][0]["securityContext"]
    assert container == {
        "privileged": False,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"], "add": []},
        "seccompProfile": {"type": "Localhost", "localhostProfile": "pysandbox-strict.json"},
    }
    spec = pod["spec"]
    assert (spec["hostPID"], spec["hostIPC"], spec["hostNetwork"], spec["hostUsers"]) == (False, False, False, False)
    assert pod["metadata"]["labels"] == {"app": "app"}  # what networkpolicy.yaml selects
    assert pod["spec"]["volumes"] == [{"name": "tmpfs-0", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}]


def test_export_command_writes_stdout_or_a_directory(tmp_path: Path) -> None:
    out = subprocess.run(
        [BIN / "pysandbox", "policy", "export", "strict", "--to", "oci"], capture_output=True, text=True
    )
    try:
        base: int | None = reserved_base()
    except OSError:  # no range reserved on this host: a null hostID is never written
        base = None
    if base is None:
        assert out.returncode == 2 and "setup-ids" in out.stderr, out.stderr
    else:
        config = json.loads(out.stdout)
        assert config["process"]["noNewPrivileges"] is True
        assert config["linux"]["uidMappings"] == [{"containerID": 0, "hostID": base, "size": 65536}]
    written = subprocess.run(
        [BIN / "pysandbox", "policy", "export", "strict", "--to", "kubernetes", "--output", str(tmp_path / "k8s")],
        capture_output=True,
        text=True,
    )
    assert written.returncode == 0, written.stderr
    assert sorted(os.listdir(tmp_path / "k8s")) == ["networkpolicy.yaml", "pod.yaml", "pysandbox-strict.json"]
    assert yaml.safe_load((tmp_path / "k8s/pod.yaml").read_text())["kind"] == "Pod"
    denied = yaml.safe_load((tmp_path / "k8s/networkpolicy.yaml").read_text())["spec"]  # strict: network none
    assert (denied["policyTypes"], denied["ingress"], denied["egress"]) == (["Ingress", "Egress"], [], [])


def test_the_lifecycle_section_exports_as_log_options_and_a_restart_policy() -> None:
    strict, baseline = load_policy("strict").policy, load_policy("baseline").policy
    assert {"--log-opt max-size=10m", "--log-opt max-file=2"} <= set(docker_flags(strict))
    assert kubernetes_pod(strict)["spec"]["restartPolicy"] == "OnFailure"  # strict allows no always
    assert kubernetes_pod(baseline)["spec"]["restartPolicy"] == "Always"
    unhealthy = dataclasses.replace(strict.sandbox.lifecycle, health=False)
    without = dataclasses.replace(strict, sandbox=dataclasses.replace(strict.sandbox, lifecycle=unhealthy))
    assert "--no-healthcheck" in docker_flags(without) and "--no-healthcheck" not in docker_flags(strict)


def network_policy(tmp_path: Path, network: str) -> model.Policy:
    """Baseline with another default network (host without a network namespace of its own)."""
    namespaces = "  namespaces: [user, pid, mount, uts, ipc, cgroup]\n" if network == "host" else ""
    path = tmp_path / f"{network}.yaml"
    path.write_text(f"version: 1\nextends: baseline\nsandbox:\n  network: {network}\n{namespaces}")
    return load_policy(str(path)).policy


def test_a_rootless_network_exports_as_podman_spells_it_and_says_what_docker_lacks(tmp_path: Path) -> None:
    pasta = network_policy(tmp_path, "pasta")
    assert "--network pasta" in docker_flags(pasta)
    assert "--network slirp4netns" in docker_flags(network_policy(tmp_path, "slirp4netns"))
    notes = export_files(pasta, "docker")["docker-run.txt"]
    assert "# network pasta: Docker has neither pasta nor slirp4netns (podman run takes --network pasta" in notes
    assert (
        "# network_modes: a run may also choose slirp4netns or bridge; the export gives the default (pasta) alone"
        in notes
    )
    assert "--network none" in docker_flags(load_policy("baseline").policy)  # Docker's none keeps lo up: loopback
    assert "--network host" in docker_flags(network_policy(tmp_path, "host"))


def test_docker_notes_say_where_ports_may_be_published() -> None:
    strict = export_files(load_policy("strict").policy, "docker")["docker-run.txt"]
    assert "# publish: no port may be published: give no -p or -P (docker run refuses neither)" in strict
    assert "network_modes" not in strict  # strict lets a run choose nothing beyond none and loopback
    baseline = export_files(load_policy("baseline").policy, "docker")["docker-run.txt"]
    assert "# publish: only 127.0.0.1, host ports from 1024: write each -p as ADDRESS:HOSTPORT:PORT" in baseline
    assert "# network_modes: a run may also choose pasta or slirp4netns" in baseline
    assert (
        "only 127.0.0.1 or ::1, host ports from 1024"
        in export_files(load_policy("permissive").policy, "docker")["docker-run.txt"]
    )


def test_the_oci_config_has_a_network_namespace_unless_host_and_names_what_it_leaves_out(tmp_path: Path) -> None:
    pasta = oci_config(network_policy(tmp_path, "pasta"), reserved_base=100000)
    assert {"type": "network"} in pasta["linux"]["namespaces"]
    expressible = pasta["annotations"]["pysandbox.dev/not-expressible"]
    assert "network pasta: the config gives a network namespace with loopback alone: start pasta on it" in expressible
    assert "publish: only 127.0.0.1, host ports from 1024: an OCI runtime publishes no ports" in expressible
    host = oci_config(network_policy(tmp_path, "host"), reserved_base=100000)
    assert {"type": "network"} not in host["linux"]["namespaces"]
    strict = oci_config(load_policy("strict").policy, reserved_base=100000)
    assert "pysandbox.dev/not-expressible" not in strict["annotations"]  # no network, nothing published: all said


def test_kubernetes_shares_the_host_network_only_for_host_and_names_the_rest(tmp_path: Path) -> None:
    pasta = kubernetes_pod(network_policy(tmp_path, "pasta"))
    assert pasta["spec"]["hostNetwork"] is False
    expressible = pasta["metadata"]["annotations"]["pysandbox.dev/not-expressible"]
    assert "network pasta: a Pod has the cluster's network: limit its traffic with a NetworkPolicy" in expressible
    assert "publish: only 127.0.0.1, host ports from 1024: nothing in a Pod limits its ports" in expressible
    host = kubernetes_pod(network_policy(tmp_path, "host"))
    assert host["spec"]["hostNetwork"] is True
    strict = kubernetes_pod(load_policy("strict").policy)["metadata"]["annotations"]["pysandbox.dev/not-expressible"]
    assert "publish: no port may be published: give no container a hostPort" in strict


def test_an_egress_allow_list_becomes_a_network_policy_and_a_note_elsewhere(tmp_path: Path) -> None:
    path = tmp_path / "egress.yaml"
    path.write_text(
        "version: 1\nsandbox:\n  network: pasta\n  egress: ['10.0.0.0/8:443', '192.0.2.7', '[fd00::/8]:80-90']\n"
    )
    loaded = load_policy(str(path)).policy
    rules = yaml.safe_load(export_files(loaded, "kubernetes")["networkpolicy.yaml"])["spec"]
    assert rules["policyTypes"] == ["Egress"] and rules["podSelector"] == {"matchLabels": {"app": "app"}}
    dns, https, host, ranged = rules["egress"]
    assert dns == {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
    assert https == {"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"protocol": "TCP", "port": 443},
                                                                          {"protocol": "UDP", "port": 443}]}  # fmt: skip
    assert host == {"to": [{"ipBlock": {"cidr": "192.0.2.7/32"}}]}
    assert ranged["ports"][0] == {"protocol": "TCP", "port": 80, "endPort": 90}
    assert (
        "egress: only 10.0.0.0/8:443, 192.0.2.7/32, [fd00::/8]:80-90: Docker has no egress rules"
        in (export_files(loaded, "docker")["docker-run.txt"])
    )
