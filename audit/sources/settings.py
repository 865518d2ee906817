"""Reading container settings out of located YAML/JSON, shared by the Compose and
docker-inspect sources (both spell security options and host modes the Docker way)."""

from __future__ import annotations

from typing import Any

from pysbx.audit.sources.lines import LineDict, LineList
from pysbx.audit.spec import ContainerSpec, Setting


def setting(mapping: Any, key: str) -> Setting:
    """The value at `key` with the line that set it, or an unset Setting."""
    if isinstance(mapping, LineDict) and key in mapping:
        return Setting(mapping[key], mapping.line_of(key))
    return Setting()


def host_modes(spec: ContainerSpec, mapping: Any, keys: dict[str, str]) -> None:
    """`pid: host` and friends: each key whose value is `host` sets the spec's attribute."""
    for key, attribute in keys.items():
        if isinstance(mapping, LineDict) and mapping.get(key) == "host":
            setattr(spec, attribute, Setting(True, mapping.line_of(key)))


def security_options(spec: ContainerSpec, options: Any) -> None:
    """Docker's `seccomp=...`/`seccomp:...` and `no-new-privileges[:true]`."""
    if not isinstance(options, LineList):
        return
    for option, line in zip(options, options.item_lines, strict=True):
        key, _, value = str(option).replace("=", ":", 1).partition(":")
        if key == "seccomp":
            spec.seccomp = Setting("unconfined" if value == "unconfined" else value, line)
        elif key == "no-new-privileges" and value in ("", "true"):
            spec.no_new_privileges = Setting(True, line)
