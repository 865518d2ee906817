"""The rule catalogue: stable IDs, categories, default severities, help, and the peers'
IDs (CIS Docker Benchmark, hadolint, checkov, trivy, dockle) so teams can map their gates."""

from __future__ import annotations

from pysbx.policies.record import Record


class Rule(Record):
    """One rule of the catalogue (a Record, not a dataclass: see policies/record.py)."""

    __slots__ = ("category", "help", "id", "name", "references", "severity", "title")

    def __init__(
        self, id: str, name: str, category: str, severity: str, title: str, help: str, references: tuple[str, ...] = ()
    ) -> None:
        self.id = id
        self.name = name
        self.category = category
        self.severity = severity
        self.title = title
        self.help = help
        self.references = references


_RULES = [
    Rule("PA1001", "privileged", "privileged", "critical", "Container runs privileged",
         "Privileged mode gives the container every capability, every device and no seccomp or AppArmor: a root process inside owns the host. Remove privileged: true / --privileged; add only the capabilities the workload needs.",
         ("CIS-Docker-5.4", "CKV_K8S_16", "trivy:KSV017")),
    Rule("PA1002", "host-pid", "host-pid", "high", "Container shares the host's PID namespace",
         "With the host's PID namespace the container sees and may signal or ptrace every host process. Remove hostPID / pid: host / --pid=host.",
         ("CIS-Docker-5.15", "CKV_K8S_17", "trivy:KSV010")),
    Rule("PA1003", "host-network", "host-network", "high", "Container shares the host's network namespace",
         "With the host network the container can bind host ports, reach services on localhost and sniff traffic. Remove hostNetwork / network_mode: host / --network=host.",
         ("CIS-Docker-5.9", "CKV_K8S_19", "trivy:KSV009")),
    Rule("PA1004", "host-ipc", "host-ipc", "high", "Container shares the host's IPC namespace",
         "The host's IPC namespace exposes shared memory and semaphores of host processes. Remove hostIPC / ipc: host / --ipc=host.",
         ("CIS-Docker-5.16", "CKV_K8S_18", "trivy:KSV008")),
    Rule("PA1005", "host-uts", "host-uts", "medium", "Container shares the host's UTS namespace",
         "With the host's UTS namespace the container can change the host's hostname. Remove uts: host / --uts=host.",
         ("CIS-Docker-5.20",)),
    Rule("PA1006", "published-port", "published-port", "medium", "Port published on every host interface",
         "A port published without a host address (Compose \"8080:80\" or \"80\", docker run -p 8080:80, a Kubernetes hostPort without hostIP) or on 0.0.0.0 or :: listens on every interface of the host, and Docker's own iptables rules let it past host firewalls such as ufw: a database or admin port meant for this machine is open to its whole network. Medium, as DISA's Docker STIG rates it, and below host-network (high: the whole of the host's network stack): one port is open and the service behind it may still ask for credentials, but nothing else stands in the way. Bind it to 127.0.0.1 (\"127.0.0.1:8080:80\", host_ip: 127.0.0.1, hostIP: 127.0.0.1) or to the one interface meant to serve, unless other machines must reach it. Not reported: ports bound to a specific address, a containerPort without hostPort, ports under the host network (host-network says it), and Kubernetes Services of type NodePort or LoadBalancer, which are exposure on purpose, reviewed as such.",
         ("CIS-Docker-5.13", "CKV_K8S_26", "trivy:KSV024")),
    Rule("PA1010", "root-user", "root-user", "medium", "Container runs as root",
         "A process running as root in the container is one kernel bug or misconfiguration away from root on the host. Add a non-root USER to the image, or set runAsNonRoot: true and a non-zero runAsUser.",
         ("CIS-Docker-4.1", "DL3002", "CKV_K8S_23", "CKV_DOCKER_3", "dockle:CIS-DI-0001")),
    Rule("PA1020", "unpinned-image", "unpinned-image", "high", "Image reference has no tag or uses latest",
         "latest (or no tag) changes under you: builds and deployments stop being reproducible and a compromised push reaches you silently. Pin a version tag and a digest (name:tag@sha256:...).",
         ("DL3006", "DL3007", "CKV_K8S_14", "CKV_DOCKER_7")),
    Rule("PA1021", "unpinned-digest", "unpinned-image", "medium", "Image reference has a tag but no digest",
         "A tag can be moved to other content at any time; only a digest names exactly what you tested. Add @sha256:... to the reference.",
         ("CKV_K8S_43",)),
    Rule("PA1030", "bloated-layer", "bloated-layer", "medium", "Image stores bytes that are not in its final filesystem",
         "Files overwritten or deleted in a later layer still ship in the earlier one. Combine the steps in one RUN, use multi-stage builds, or delete in the same layer that creates.",
         ("dive:lowestEfficiency", "dive:highestWastedBytes")),
    Rule("PA1031", "package-cache", "bloated-layer", "low", "Package-manager cache left in the image",
         "Package indexes and download caches add size and stale metadata. Clean them in the same RUN (apt-get clean && rm -rf /var/lib/apt/lists/*, apk --no-cache, pip --no-cache-dir, npm cache clean).",
         ("DL3009", "DL3019", "DL3042", "dockle:DKL-DI-0005")),
    Rule("PA1032", "oversized-layer", "bloated-layer", "low", "Layer larger than the policy allows",
         "A very large layer slows every pull. Split it, or remove what the runtime does not need.",
         ()),
    Rule("PA1040", "secret", "secret", "critical", "Secret baked into the image or file",
         "Private keys, cloud credentials, tokens and .env files in an image are readable by anyone who can pull it, in every layer, forever. Remove them, rotate them, and pass secrets at run time (build secrets, mounted files).",
         ("CIS-Docker-4.10", "dockle:CIS-DI-0010")),
    Rule("PA1050", "setuid", "setuid", "low", "setuid or setgid file in the image",
         "setuid and setgid binaries are the classic way from a compromised process to root. Remove the bit (chmod u-s,g-s) unless the image needs it, and run with no-new-privileges.",
         ("CIS-Docker-4.8", "dockle:CIS-DI-0008")),
    Rule("PA1060", "dangerous-capability", "dangerous-capability", "high", "Dangerous capability added",
         "SYS_ADMIN, NET_ADMIN, SYS_PTRACE, SYS_MODULE, DAC_READ_SEARCH and ALL each open a way out of the container. Drop ALL and add only what the workload needs.",
         ("CIS-Docker-5.3", "CKV_K8S_39", "CKV_K8S_25", "trivy:KSV005")),
    Rule("PA1070", "seccomp-disabled", "seccomp-disabled", "high", "Seccomp is disabled",
         "Without a seccomp filter every system call reaches the kernel, including the rarely used ones most kernel exploits need. Keep the runtime's default profile (RuntimeDefault) or a stricter one.",
         ("CIS-Docker-5.21", "CKV_K8S_31", "trivy:KSV030")),
    Rule("PA1080", "docker-socket", "docker-socket", "critical", "Docker socket mounted into the container",
         "Whoever reaches /var/run/docker.sock can start a privileged container: it is root on the host. Do not mount it; use a rootless builder or a narrowly scoped API proxy.",
         ("CIS-Docker-5.31", "CKV_K8S_27")),
    Rule("PA1081", "sensitive-mount", "sensitive-mount", "high", "Sensitive host path mounted",
         "Mounting /, /etc, /proc, /sys, /var/run or /boot from the host lets the container read or change the host. Mount only the directories the workload needs, read-only where possible.",
         ("CIS-Docker-5.5", "trivy:KSV023")),
    Rule("PA1090", "no-new-privileges", "no-new-privileges", "medium", "Privilege escalation is not prevented",
         "Without no_new_privs a setuid binary can raise a process's privileges. Set allowPrivilegeEscalation: false / security_opt: [no-new-privileges:true].",
         ("CIS-Docker-5.25", "CKV_K8S_20", "trivy:KSV001")),
    Rule("PA1091", "writable-rootfs", "writable-rootfs", "low", "Root filesystem is writable",
         "A writable root lets an intruder change binaries and hide tools. Set readOnlyRootFilesystem: true / read_only: true and mount tmpfs where writes are needed.",
         ("CIS-Docker-5.12", "CKV_K8S_22", "trivy:KSV014")),
    Rule("PA1100", "unsigned-image", "unsigned-image", "high", "Image has no verifying signature",
         "The policy requires signed images and no signature bundle was found for this image. Sign it (pysandbox sign, cosign) and ship the bundle beside it.",
         ()),
    Rule("PA1200", "add-url", "supply-chain", "medium", "ADD fetches a URL or unpacks an archive",
         "ADD with a URL downloads without checksum verification; ADD of a local archive unpacks it implicitly. Use curl with a checksum check in RUN, or COPY.",
         ("DL3020", "CKV_DOCKER_4")),
    Rule("PA1201", "curl-pipe-shell", "supply-chain", "high", "Script piped from the network into a shell",
         "curl ... | sh runs whatever the server (or anyone in between) sends today. Download, verify a checksum or signature, then run.",
         ("DL4006", "trivy:DS-0029")),
    Rule("PA1202", "sudo", "root-user", "medium", "sudo used in a Dockerfile",
         "sudo in a build step hides which steps need root and leaves sudo in the image. Use USER root for those steps, then switch back.",
         ("DL3004",)),
    Rule("PA1203", "apt-upgrade", "reproducibility", "low", "Package upgrade in a Dockerfile",
         "apt-get upgrade / dist-upgrade makes builds unreproducible and bloats layers. Pin the base image and rebuild it instead.",
         ("DL3005",)),
    Rule("PA1900", "suppression-without-reason", "suppression", "low", "Inline suppression without a reason",
         "Every ignored finding needs a reason a reviewer can judge: write # pyaudit: ignore[RULE] why.",
         ()),
    Rule("PA1901", "expired-ignore", "suppression", "medium", "Policy ignore entry has expired",
         "The ignore entry's expiry date has passed, so it no longer applies. Fix the finding or renew the entry with a new date and reason.",
         ()),
    Rule("PA1990", "input-error", "input-error", "high", "Input could not be read",
         "pyaudit could not read this file as the input it is (a Dockerfile without an image after FROM, broken YAML in a Compose file, a damaged image): nothing in it was checked. The run exits 2 whatever else it found; no suppression, --skip or baseline covers it, since a file made unreadable would otherwise hide its findings.",
         ()),
]  # fmt: skip

RULES: dict[str, Rule] = {rule.id: rule for rule in _RULES}
BY_NAME: dict[str, Rule] = {rule.name: rule for rule in _RULES}
CATEGORIES = sorted({rule.category for rule in _RULES})


def find_rule(key: str) -> Rule | None:
    """A rule by id (PA1010) or name (root-user)."""
    return RULES.get(key.upper()) or BY_NAME.get(key)
