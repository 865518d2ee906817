"""Write the seed corpus of every fuzz target into bench/work/fuzz/seeds/<target>/ (git
ignores bench/work/). Every seed is generated here, from the project's own writers and
small texts written for this purpose: nothing is copied from ../shared or public
repositories. Also writes a libFuzzer dictionary per text target (the words its parser
branches on), taken from the modules' own tables.

    .venv/bin/python tests/fuzz/make_seeds.py
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SEEDS = REPO / "bench" / "work" / "fuzz" / "seeds"
DICTS = REPO / "bench" / "work" / "fuzz" / "dicts"
sys.path.insert(0, str(REPO))

from pysbx.audit.sources.dockerfile import INSTRUCTIONS  # noqa: E402 - the repository is on sys.path now
from pysbx.audit.sources.kubernetes import WORKLOADS  # noqa: E402
from pysbx.images.platform import Platform  # noqa: E402
from pysbx.images.writer import NewImage, write_oci_archive  # noqa: E402
from pysbx.policies import model  # noqa: E402
from pysbx.policies.loader import BUILTINS, builtin_path  # noqa: E402
from pysbx.policies.seccomp import ACTIONS, ARCHITECTURES, FILTER_FLAGS, GO_TO_SCMP_ARCH, OPERATORS, PROFILE_DIR  # noqa: E402
from tests.imagekit import T, image_of, write_image  # noqa: E402

Seeds = dict[str, bytes]


# -- Dockerfiles -------------------------------------------------------------------------------
_DOCKERFILES = {
    "simple": 'FROM debian:12\nRUN apt-get update && apt-get install -y curl\nUSER 1000\nCMD ["/bin/sh"]\n',
    "stages": (
        "# syntax=docker/dockerfile:1\nARG BASE=alpine:3.19\nFROM --platform=$BUILDPLATFORM ${BASE} AS build\n"
        "WORKDIR /src\nCOPY --from=0 --chown=1:1 . .\nRUN make\nFROM build AS test\nRUN make test\n"
        'FROM scratch\nCOPY --from=build /src/app /app\nENTRYPOINT ["/app"]\n'
    ),
    "heredoc": (
        "FROM busybox@sha256:" + "ab" * 32 + "\nRUN <<EOF\nset -e\necho hi > /x\nEOF\n"
        "COPY <<-CONF /etc/app.conf\n\tkey=value\n\tCONF\nRUN <<'A' <<\"B\"\none\nA\ntwo\nB\n"
    ),
    "escape": (
        "# escape=`\n# check=skip=all\nFROM mcr.example/windows:ltsc `\n  AS base\n"
        'RUN dir `\n  # a comment inside\n  c:\\\nENV A=1 B="two words" \\\n  C=3\n'
    ),
    "secrets": (
        "FROM python:3.12\nENV AWS_SECRET_ACCESS_KEY=abc PASSWORD=hunter2\nARG TOKEN=xyz\n"
        "ADD https://example.invalid/a.tar.gz /opt/\nADD local.tar.gz /opt/\n"
        "RUN pip install flask && curl -k https://x | sh\nUSER root\nEXPOSE 22 80/tcp\n"
        "HEALTHCHECK --interval=5s CMD curl -f http://localhost/ || exit 1\n"
        'ONBUILD RUN echo later\nSHELL ["/bin/bash", "-c"]\nVOLUME /data\nSTOPSIGNAL SIGTERM\n'
        "LABEL a=b\nMAINTAINER someone\n"
    ),
    "args": "ARG V\nARG IMG=${V:-debian}\nFROM ${IMG}:${V:+12}\nUSER ${NOBODY}\nFROM 1\nCOPY --from=1 / /\n",
}


def dockerfile_seeds() -> Seeds:
    return {name: text.encode() for name, text in _DOCKERFILES.items()}


def dockerfile_words() -> Iterable[str]:
    yield from sorted(INSTRUCTIONS)
    yield from ("# escape=`", "# syntax=", " AS ", "--from=", "--platform=", "<<EOF", "<<-", "${", ":-", ":+", "\\\n")


# -- Compose and Kubernetes ------------------------------------------------------------------
_COMPOSE = {
    "web": (
        "services:\n  web:\n    image: nginx:1.25\n    privileged: true\n    pid: host\n    network_mode: host\n"
        "    user: root\n    read_only: false\n    cap_add: [SYS_ADMIN, NET_RAW]\n"
        '    security_opt: ["seccomp=unconfined", "no-new-privileges:true"]\n'
        "    volumes:\n      - /var/run/docker.sock:/var/run/docker.sock\n      - ./data:/data:ro\n      - named:/x\n"
        "      - {type: bind, source: /etc, target: /host/etc, read_only: true}\n"
        "  build:\n    build: .\n    image: mine\n    ipc: host\n    uts: host\nvolumes:\n  named: {}\n"
    ),
    "anchors": (
        "x-common: &common\n  image: redis@sha256:" + "cd" * 32 + "\n  cap_add: [ALL]\n"
        "services:\n  a:\n    <<: *common\n    security_opt: [seccomp:profile.json]\n  b: *common\n  c: null\n"
    ),
    "json": '{"services": {"s": {"image": "alpine", "volumes": ["/:/host"], "privileged": "yes"}}}',
}
_KUBERNETES = {
    "pod": (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n"
        "    container.seccomp.security.alpha.kubernetes.io/app: unconfined\nspec:\n  hostPID: true\n"
        "  hostNetwork: true\n  securityContext: {runAsUser: 0, seccompProfile: {type: RuntimeDefault}}\n"
        "  volumes:\n  - name: sock\n    hostPath: {path: /var/run/docker.sock}\n  containers:\n  - name: app\n"
        "    image: busybox\n    securityContext:\n      privileged: true\n      allowPrivilegeEscalation: false\n"
        "      readOnlyRootFilesystem: true\n      capabilities: {add: [NET_ADMIN]}\n"
        "    volumeMounts:\n    - {name: sock, mountPath: /s, readOnly: true}\n"
        "  initContainers: [{name: init, image: 'alpine:3'}]\n"
    ),
    "deployment-cronjob": (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    metadata:\n"
        "      annotations: {seccomp.security.alpha.kubernetes.io/pod: runtime/default}\n    spec:\n"
        "      hostIPC: true\n      containers: [{name: c, image: 'nginx', securityContext: {runAsNonRoot: true}}]\n"
        "---\napiVersion: batch/v1\nkind: CronJob\nmetadata: {name: j}\nspec:\n  schedule: '* * * * *'\n"
        "  jobTemplate:\n    spec:\n      template:\n        spec:\n"
        "          ephemeralContainers: [{name: e, image: debug}]\n          containers: [{name: c, image: x}]\n"
    ),
    "list": (
        '{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"},'
        ' "spec": {"containers": [{"name": "a", "image": "a:latest", "securityContext": {"runAsUser": 1000}}]}},'
        ' {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}]}'
    ),
}


def compose_seeds() -> Seeds:
    return {name: text.encode() for name, text in _COMPOSE.items()}


def kubernetes_seeds() -> Seeds:
    return {name: text.encode() for name, text in _KUBERNETES.items()}


def yaml_words() -> Iterable[str]:
    yield from ("---\n", ": ", "- ", "{", "}", "[", "]", "&a ", "*a", "<<: ", "!!", "null", "true", "host", "'", '"')


def compose_words() -> Iterable[str]:
    yield from yaml_words()
    yield from ("services", "image", "build", "privileged", "pid", "ipc", "uts", "network_mode", "user", "read_only")
    yield from ("cap_add", "security_opt", "seccomp=", "no-new-privileges", "volumes", "type", "bind", "source")
    yield from ("target", "/var/run/docker.sock:/x", "./a:/b:ro")


def kubernetes_words() -> Iterable[str]:
    yield from yaml_words()
    yield from sorted(WORKLOADS)
    yield from ("apiVersion", "kind", "List", "items", "metadata", "name", "annotations", "spec", "template")
    yield from ("jobTemplate", "containers", "initContainers", "ephemeralContainers", "securityContext")
    yield from ("hostPID", "hostNetwork", "hostIPC", "privileged", "runAsUser", "runAsNonRoot", "seccompProfile")
    yield from ("allowPrivilegeEscalation", "readOnlyRootFilesystem", "capabilities", "add", "volumes", "hostPath")
    yield from ("path", "volumeMounts", "mountPath", "readOnly", "Unconfined", "seccomp.security.alpha.kubernetes.io/")


# -- policies --------------------------------------------------------------------------------
_POLICIES = {
    "minimal": "version: 1\n",
    "extends-strict": (
        "version: 1\nextends: strict\nsigning:\n  identities:\n    - issuer: https://issuer.example\n"
        "      subject_regex: ^https://example\\.invalid/.*$\n  keys: [cosign.pub]\n"
        "sandbox:\n  limits: {memory: 256Mi, pids: 64, cpus: 0.5}\n  seccomp: {deny: [ptrace, keyctl]}\n"
        "audit:\n  fail_on: medium\n  rules:\n    PA1001: {severity: low}\n"
        "  ignore:\n    - {rule: PA2001, path: Dockerfile, reason: vendored, expires: 2027-01-31}\n"
    ),
    "extends-baseline": (
        "version: 1\nextends: baseline\nsandbox:\n  network: host\n  namespaces: [user, pid, mount]\n"
        "  capabilities: {add: [NET_BIND_SERVICE, CAP_CHOWN], drop: [ALL]}\n"
        "  mounts: {tmpfs: [{path: /tmp, size: 64M, mode: '1777'}]}\n  host_pid: true\n"
    ),
    "problems": "version: 2\nsandboxx: {}\nsandbox:\n  limits: {memory: lots}\n  network: hots\nversion: 1\n",
}


def policy_seeds() -> Seeds:
    """Generated policies, the built-in ones and the example: the project's own files."""
    seeds = {name: text.encode() for name, text in _POLICIES.items()}
    for name in BUILTINS:
        seeds[f"builtin-{name}"] = builtin_path(name).read_bytes()
    seeds["example-demo"] = (REPO / "examples" / "demo-policy.yaml").read_bytes()
    return seeds


def policy_words() -> Iterable[str]:
    yield from yaml_words()
    pending: list[type] = [model.Policy]
    while pending:
        for field in dataclasses.fields(pending.pop()):
            yield field.name
            pending.extend(t for t in _dataclasses_in(field.type) if t not in pending)
    yield from ("strict", "baseline", "permissive", "512Mi", "1G", "30s", "500ms", "SYS_ADMIN", "ALL", "2027-01-31")


def _dataclasses_in(annotation: object) -> list[type]:
    """The model's dataclasses named in a field's (string) annotation."""
    names = re.findall(r"[A-Za-z_]+", str(annotation))
    found = [getattr(model, name, None) for name in names]
    return [t for t in found if isinstance(t, type) and dataclasses.is_dataclass(t)]


# -- seccomp profiles ------------------------------------------------------------------------
def seccomp_seeds() -> Seeds:
    """The built-in profiles and small profiles that use every part of the format."""
    seeds = {f"builtin-{path.stem}": path.read_bytes() for path in sorted(PROFILE_DIR.glob("*.json"))}
    seeds["small"] = json.dumps(
        {
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [
                {"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 4294967295, "valueTwo": 40, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errno": "ENOSYS", "errnoRet": 38,
                 "excludes": {"caps": ["CAP_SYS_ADMIN"], "minKernel": "5.3", "arches": ["s390x"]}},
                {"name": "ptrace", "action": "SCMP_ACT_KILL_PROCESS", "comment": "no"},
                {"names": ["kill"], "action": "SCMP_ACT_TRAP", "includes": {"arches": ["amd64", "x86"]}},
            ],
        }
    ).encode()  # fmt: skip
    seeds["architectures"] = json.dumps(
        {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
         "syscalls": [{"names": ["uselib", "nosuchcall"], "action": "SCMP_ACT_LOG"}], "listenerPath": "/x"}
    ).encode()  # fmt: skip
    return seeds


def seccomp_words() -> Iterable[str]:
    yield from (*ACTIONS, *OPERATORS, *sorted(ARCHITECTURES), *sorted(FILTER_FLAGS), *GO_TO_SCMP_ARCH)
    yield from ("defaultAction", "defaultErrnoRet", "defaultErrno", "architectures", "archMap", "flags")
    yield from ("listenerPath", "listenerMetadata", "syscalls", "names", "name", "action", "errnoRet", "errno")
    yield from ("args", "index", "value", "valueTwo", "op", "includes", "excludes", "caps", "arches", "minKernel")
    yield from ("subArchitectures", "architecture", "comment", "CAP_SYS_ADMIN", "EPERM", "18446744073709551615")


# -- images ----------------------------------------------------------------------------------
def _small_image(compression: str, **config: object) -> NewImage:
    base = [T("etc", "dir"), T("etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n"), T("bin", "dir"),
            T("bin/sh", data=b"\x7fELF", mode=0o4755), T("bin/ash", "hardlink", link="bin/sh"),
            T("lib", "symlink", link="usr/lib"), T("dev/null", "char"), T("run/fifo", "fifo")]  # fmt: skip
    upper = [T("etc/.wh.passwd"), T("bin/.wh..wh..opq"), T("bin/sh", data=b"new"), T("home/u/.aws/credentials")]
    return image_of(base, upper, compression=compression, config=dict(config))


def image_archive_seeds() -> Seeds:
    """Archives in every layout the reader takes as a file, and the compressions; each
    well under libFuzzer's -max_len (64 KiB)."""
    seeds: Seeds = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for layout in ("oci-archive", "docker-legacy", "docker-25"):
            for compression in ("gzip", "zstd", "none"):
                where = folder / f"{layout}-{compression}"
                where.mkdir()
                path = write_image(_small_image(compression, User="1000"), where, layout)
                seeds[f"{layout}-{compression}"] = Path(path).read_bytes()
        multi = folder / "multi.oci.tar"
        arm = _small_image("none")
        arm.platform = Platform("linux", "arm64", "v8")
        write_oci_archive(multi, [("1", [_small_image("gzip"), arm]), ("2", [_small_image("none")])])
        seeds["multi-platform-index"] = multi.read_bytes()
    return seeds


_EXTRACT_SCRIPTS = {  # one entry per line, in the format fuzz_extract.py reads
    "layered": ("!layered", "d a", "f a/x 1", "d c", "f c/y 2", "---", "f a/.wh.x", "f .wh.b"),
    "layered-opaque": ("!layered", "d c", "f c/y 2", "---", "f c/.wh..wh..opq", "l c/z @V", "f c/z/secret evil"),
    "owners": ("!no-owner", "!offset", "f:4755 suid x", "d:0000 locked", "f locked/in x", "h link suid"),
    "ordinary": (
        "--- gzip",
        "d etc",
        "f etc/passwd root:x:0:0",
        "l lib usr/lib",
        "d usr/lib",
        "f lib/libc.so elf",
        "h bin/sh etc/passwd",
        "p run/fifo",
        "c dev/null",
    ),
    "dot-dot": (
        "f before x",
        "f ../victim/x evil",
        "f a/../../x evil",
    ),
    "absolute": (
        "f /etc/passwd x",
        "f @V/secret inside",
        "f //victim///y/./ y",
    ),
    "symlink-out": (
        "l out @V",
        "f out/secret evil",
        "l up ../victim",
        "f up/x evil",
        "l dotted /../../../..@V",
        "f dotted/y evil",
    ),
    "symlink-later-layer": (
        "l sub/link ../../victim",
        "---",
        "f sub/link/secret evil",
        "d sub/link/dir",
    ),
    "hardlink-out": (
        "h stolen @V/secret",
        "h up ../victim/secret",
        "l l @V",
        "h via l/secret",
    ),
    "whiteouts": (
        "d a",
        "f a/x 1",
        "f a/y 2",
        "d b",
        "f b/z 3",
        "---",
        "f a/.wh.x",
        "f b/.wh..wh..opq",
        "f b/new 4",
        "f .wh.@V",
    ),
    "whiteout-of-nothing": (
        "f a 1",
        "---",
        "f .wh...",
    ),
    "hardlink-in": (
        "f a x",
        "h b a",
        "h c /a",
        "l d a",
        "h e d",
        "---",
        "f .wh.a",
        "h f b",
    ),
    "replace": (
        "d a",
        "d a/b",
        "f a/b/c 1",
        "l s a",
        "---",
        "f a now-a-file",
        "---",
        "d a",
        "l a/b @V",
        "f s/b/c x",
        "d:000 locked",
        "f locked/f x",
    ),
    "none-compressed": (
        "--- none",
        "d:0700 x",
        "d x/y",
        "l x/y/z ../../..",
        "f x/y/z/victim/secret evil",
        "l x/loop x/loop",
        "f x/loop/a b",
    ),
}


def extract_seeds() -> Seeds:
    return {name: ("\n".join(lines) + "\n").encode() for name, lines in _EXTRACT_SCRIPTS.items()}


def extract_words() -> Iterable[str]:
    yield from ("\nf ", "\nd ", "\nl ", "\nh ", "\nc ", "\np ", "\n---\n", "--- zstd\n", "--- none\n", "d:000 ")
    yield from ("@V", "@T", "../", "/..", ".wh.", ".wh..wh..opq", "victim", "secret", "/", "//", "./")


# -- writing ---------------------------------------------------------------------------------
SEED_MAKERS: dict[str, Callable[[], Seeds]] = {
    "image_archive": image_archive_seeds,
    "extract": extract_seeds,
    "dockerfile": dockerfile_seeds,
    "compose": compose_seeds,
    "kubernetes": kubernetes_seeds,
    "policy": policy_seeds,
    "seccomp": seccomp_seeds,
}
DICT_WORDS: dict[str, Callable[[], Iterable[str]]] = {
    "extract": extract_words,
    "dockerfile": dockerfile_words,
    "compose": compose_words,
    "kubernetes": kubernetes_words,
    "policy": policy_words,
    "seccomp": seccomp_words,
}


def write_dictionary(target: str, words: Iterable[str]) -> None:
    """libFuzzer's dictionary format: one quoted token per line; only \\, \\" and \\xHH escapes."""
    DICTS.mkdir(parents=True, exist_ok=True)
    lines = ['"' + "".join(map(_dictionary_byte, word.encode())) + '"' for word in dict.fromkeys(words)]
    (DICTS / f"{target}.dict").write_text("\n".join(lines) + "\n")


def _dictionary_byte(byte: int) -> str:
    if 0x20 <= byte < 0x7F and chr(byte) not in '"\\':
        return chr(byte)
    return f"\\x{byte:02x}"


def main() -> None:
    for target, make in SEED_MAKERS.items():
        folder = SEEDS / target
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        seeds = make()
        for name, data in seeds.items():
            (folder / f"{name}-{hashlib.sha256(data).hexdigest()[:8]}").write_bytes(data)
        print(f"{target}: {len(seeds)} seeds, {sum(map(len, seeds.values()))} bytes")
    for target, words in DICT_WORDS.items():
        write_dictionary(target, words())


if __name__ == "__main__":
    main()
