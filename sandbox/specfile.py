"""A detached container's RunSpec on disk (`spec.json` in its state folder, written by the
monitor when it first starts it): what `start` runs again (the same writable layer, the
same verdict: nothing is verified again) and what `exec` confines a new process by. Plain
JSON of plain values; read back only from the invoker's private storage
(sandbox.containers.read_json)."""

from __future__ import annotations

import os

from pysbx.sandbox.containers import read_json, read_private, write_json, write_private
from pysbx.sandbox.errors import SandboxError
from pysbx.sandbox.idmap import IdMaps, IdRange
from pysbx.sandbox.limits import Enforcement
from pysbx.sandbox.mounts import BindMount, TmpfsMount
from pysbx.sandbox.network import Published
from pysbx.sandbox.process import User
from pysbx.sandbox.runner import RunSpec

TYPE_CHECKING = False
if TYPE_CHECKING:  # exec reads the spec: typing would cost it 2 ms at run time
    from typing import Any

    from pysbx.sandbox.containers import Folder

SPEC_FILE = "spec.json"
SPEC_LIMIT = 16 << 20  # the image's environment and the seccomp filter are its large parts
ETC_FILES = ("image-passwd", "image-group")
_PLAIN = (
    "argv", "env", "workdir", "hostname", "namespaces", "network", "capabilities", "no_new_privileges",
    "read_only_rootfs", "masked_paths", "readonly_paths", "lowers", "wall_time", "remove_state", "tty", "interactive",
    "egress",
)  # fmt: skip
_TUPLES = ("namespaces", "masked_paths", "readonly_paths", "lowers")  # JSON gives lists


def save_spec(folder: Folder, spec: RunSpec, extra: dict[str, Any]) -> None:
    """`spec` (as the monitor starts it, before the runner points it at descriptors) and
    `extra` (what the policy said of exec) into the container's folder; the image's passwd
    and group (extra's "etc", for exec -u) go to files of their own, as they are (up to
    4 MiB each: in JSON, escaped, they made spec.json too large to read back; found by
    review)."""
    extra = dict(extra)
    etc = extra.pop("etc", None)  # absent at `start`: the files of the first start stay (found by review)
    for name, text in zip(ETC_FILES, etc or ("", ""), strict=True) if etc is not None else ():
        write_private(folder, name, str(text).encode())
    document = {name: getattr(spec, name) for name in _PLAIN}
    document |= {
        "user": spec.user.as_dict(),
        "id_maps": {"uids": [r.as_dict() for r in spec.id_maps.uids], "gids": [r.as_dict() for r in spec.id_maps.gids],
                    "via_helpers": spec.id_maps.via_helpers},
        "seccomp_bpf": None if spec.seccomp_bpf is None else spec.seccomp_bpf.hex(),
        "limits": [item.as_dict() for item in spec.limits],
        "tmpfs": [item.as_dict() for item in spec.tmpfs],
        "binds": [item.as_dict() for item in spec.binds],
        "ports": [item.as_dict() for item in spec.ports],
        "explain": spec.explain,
        "extra": extra,
    }  # fmt: skip
    write_json(folder, SPEC_FILE, document)


def load_etc(folder: Folder) -> tuple[str, str]:
    """The image's passwd and group as the container started with them ("" when missing)."""
    from pysbx.sandbox.rootfs import ETC_FILE_LIMIT

    texts = []
    for name in ETC_FILES:
        try:
            texts.append(read_private(os.path.join(folder, name), ETC_FILE_LIMIT).decode(errors="replace"))
        except (OSError, SandboxError):
            texts.append("")
    return texts[0], texts[1]


def load_spec(folder: Folder) -> tuple[RunSpec, dict[str, Any]]:
    """The saved RunSpec (its state folder this one) and the extra facts saved with it."""
    data: dict[str, Any] = read_json(folder, SPEC_FILE, SPEC_LIMIT)
    maps = data["id_maps"]
    plain: dict[str, Any] = {name: tuple(data[name]) if name in _TUPLES else data.get(name) for name in _PLAIN}
    spec = RunSpec(
        **plain,
        state=os.fspath(folder),
        user=User(**{**data["user"], "groups": tuple(data["user"]["groups"])}),
        id_maps=IdMaps(tuple(IdRange(**r) for r in maps["uids"]), tuple(IdRange(**r) for r in maps["gids"]),
                       bool(maps["via_helpers"])),
        seccomp_bpf=None if data["seccomp_bpf"] is None else bytes.fromhex(str(data["seccomp_bpf"])),
        limits=[Enforcement(**item) for item in data["limits"]],
        tmpfs=[TmpfsMount(**item) for item in data["tmpfs"]],
        binds=[BindMount(**item) for item in data["binds"]],
        ports=[Published(**item) for item in data.get("ports", [])],  # the same host ports at every start
    )  # fmt: skip
    spec.explain = "explain" if data.get("explain") == "explain" else ""  # run -d --explain: every start
    extra = data.get("extra")
    return spec, extra if isinstance(extra, dict) else {}
