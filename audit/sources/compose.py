"""Compose files (v2 and the Compose Specification) as container specs, one per service,
with values read as Compose reads them: `${VAR:-default}` interpolated to its default (what
runs where VAR is unset; a variable without a default stays unjudged), string booleans
(`privileged: "true"`) as booleans, merge keys (`<<: *base`) merged by the YAML loader."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pysbx.audit.inputs import AuditInputError, read_regular
from pysbx.audit.sources.lines import LineDict, LineList
from pysbx.audit.sources.ports import compose_port
from pysbx.audit.sources.settings import host_modes, security_options, setting
from pysbx.audit.sources.shape import LIST, MAPPING, ShapeError, described, field_of
from pysbx.audit.spec import ContainerSpec, Mount, PublishedPort, Setting

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME:+alt} whose argument holds
# no further variable (inner ones are replaced first), and $NAME; `$$` is a literal dollar.
_VARIABLE = re.compile(r"\$\$|\$\{([_A-Za-z][_A-Za-z0-9]*)(?:(:?[-?+])([^}$]*))?\}|\$([_A-Za-z][_A-Za-z0-9]*)")
_DOTENV_LIMIT = 1 << 20
_NESTING = 8
# compose-go's boolean reading of strings (YAML 1.1's yes/on with a warning).
_BOOLEANS = {"true": True, "yes": True, "y": True, "on": True, "false": False, "no": False, "n": False, "off": False}


def is_compose(document: object) -> bool:
    return isinstance(document, dict) and isinstance(document.get("services"), dict)


def compose_specs(document: LineDict, target: str) -> list[ContainerSpec]:
    services = document["services"]
    values = dotenv(Path(target).parent / ".env")
    specs = []
    for name in services:
        service = field_of(services, name, MAPPING, target, "services.")
        if service is None:
            continue  # `web:` with nothing under it
        interpolate(service, values)
        specs.append(_service_spec(name, service, target, services.line_of(name)))
    return specs


def dotenv(path: Path) -> dict[str, str]:
    """The `.env` beside a Compose file, which Compose reads for interpolation on its own:
    NAME=value lines (quotes around a value removed), comments and blank lines left out. A
    link is not followed: a pull request's `.env -> /proc/self/environ` would otherwise pour
    the CI job's environment (its tokens) into values that findings quote in the report."""
    try:
        text = read_regular(str(path), _DOTENV_LIMIT, follow=False).decode("utf-8", "replace")
    except (AuditInputError, OSError):
        return {}
    values = {}
    for line in text.splitlines():
        name, equals, value = line.strip().removeprefix("export ").partition("=")
        if equals and name.strip() and not name.startswith("#"):
            value = value.strip()
            quoted = len(value) > 1 and value[0] == value[-1] and value[0] in "\"'"
            values[name.strip()] = value[1:-1] if quoted else value
    return values


def interpolate(node: LineDict | LineList, values: dict[str, str]) -> None:
    """Replace, in place and all the way down, each variable as Compose would with `values`
    (the project's .env): a value that is set, else its default; a variable with neither stays,
    unknown until deployed (and unjudged)."""
    keys = node.keys() if isinstance(node, LineDict) else range(len(node))
    for key in keys:
        value = node[key]  # type: ignore[index]
        if isinstance(value, LineDict | LineList):
            interpolate(value, values)
        elif isinstance(value, str) and "$" in value:
            for _ in range(_NESTING):  # inner variables first; a value naming itself stops here
                replaced = _VARIABLE.sub(lambda match: _value_of(match, values), value)
                if replaced == value or len(replaced) > _DOTENV_LIMIT:
                    break
                value = replaced
            node[key] = value  # type: ignore[index]


def _value_of(match: re.Match[str], values: dict[str, str]) -> str:
    whole, name, operator, argument = match.group(0), match.group(1) or match.group(4), match.group(2), match.group(3)
    if whole == "$$":
        return whole  # kept: a literal dollar, and unjudged as a variable would be
    known = values.get(name)
    if operator in (None, "?", ":?"):
        return whole if known is None or (operator == ":?" and not known) else known
    if operator in ("-", ":-"):
        return known if known is not None and (operator == "-" or known) else argument
    return argument if known is not None and (operator == "+" or known) else ""


def _service_spec(name: str, service: LineDict, target: str, line: int) -> ContainerSpec:
    where = f"services.{name}."
    spec = ContainerSpec("compose", target, f"service {name}", line)
    spec.image = setting(service, "image")
    spec.builds_image = "build" in service
    spec.privileged = _boolean(service, "privileged", target, where)
    host_modes(spec, service, {"pid": "host_pid", "ipc": "host_ipc", "uts": "host_uts", "network_mode": "host_network"})
    spec.user = setting(service, "user")
    spec.read_only_rootfs = _boolean(service, "read_only", target, where)
    caps = field_of(service, "cap_add", LIST, target, where)
    if caps is not None:
        spec.capabilities_added = [(str(cap), line) for cap, line in zip(caps, caps.item_lines, strict=True)]
    security_options(spec, field_of(service, "security_opt", LIST, target, where))
    spec.mounts = _volumes(service, target, where)
    spec.published_ports = _ports(service, target, where)
    return spec


def _boolean(service: LineDict, key: str, target: str, where: str) -> Setting:
    """A boolean field as Compose reads it: true/false, or a string it accepts as one."""
    found = setting(service, key)
    value = found.value
    if value is None or isinstance(value, bool):
        return found
    if isinstance(value, str) and value.lower() in _BOOLEANS:
        return Setting(_BOOLEANS[value.lower()], found.line)
    if isinstance(value, str) and "$" in value:
        return Setting()  # a variable without a default: unknown until deployed
    raise ShapeError(f"{target}:{found.line}: {where}{key}: expected a boolean, found {described(value)} {value!r}")


def _volumes(service: LineDict, target: str, where: str) -> list[Mount]:
    volumes = field_of(service, "volumes", LIST, target, where)
    if volumes is None:
        return []
    mounts = []
    for volume, line in zip(volumes, volumes.item_lines, strict=True):
        mount = _volume(volume, line)
        if mount is not None:
            mounts.append(mount)
    return mounts


def _ports(service: LineDict, target: str, where: str) -> list[PublishedPort]:
    """The service's `ports:`; a null item is passed over, as Compose does."""
    ports = field_of(service, "ports", LIST, target, where)
    if ports is None:
        return []
    found = [
        compose_port(entry, line, target, where)
        for entry, line in zip(ports, ports.item_lines, strict=True)
        if entry is not None
    ]
    return [port for port in found if port is not None]


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
