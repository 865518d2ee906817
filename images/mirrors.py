"""Where to pull a repository from: the mirrors configured for it, in order, then its own
registry, as containers-registries.conf(5) says (the file podman, skopeo and buildah read):

    [[registry]]
    prefix = "docker.io"                 # what names it matches (default: location)
    location = "registry-1.docker.io"    # where it really is; `blocked = true` refuses it
    [[registry.mirror]]
    location = "mirror.example:5000/hub" # tried first; `insecure = true` allows plain http
    pull-from-mirror = "digest-only"     # all (default), digest-only, tag-only

Files, as podman reads them: $CONTAINERS_REGISTRIES_CONF alone when set; else
~/.config/containers/registries.conf (for a user) or /etc/containers/registries.conf, each
followed by the `.conf` files of its `registries.conf.d` folder. A mirror serves what the
registry would: nothing it sends is trusted more, every blob is checked against its digest
and a policy that requires a signature verifies it as from the registry. Mirrors are for
pulls only; push goes to the name's own registry. A file that does not parse is an error
naming it, never a silent fall back to the registry."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pysbx.images.errors import ImageError
from pysbx.images.registryname import ImageName

_PULL_FROM_MIRROR = ("all", "digest-only", "tag-only")


@dataclass(frozen=True)
class Source:
    """One place to ask for a repository: `registry` (host[:port]) and the repository there."""

    registry: str
    repository: str
    insecure: bool = False
    mirror: bool = False

    @property
    def label(self) -> str:
        return f"{self.registry}/{self.repository}" + (" (mirror)" if self.mirror else "")


def config_files() -> list[Path]:
    """registries.conf and its drop-ins, in the order they apply (later ones win)."""
    chosen = os.environ.get("CONTAINERS_REGISTRIES_CONF")
    if chosen:
        return [Path(chosen)]
    user = Path(os.path.expanduser("~/.config/containers/registries.conf"))
    main = user if os.geteuid() != 0 and user.exists() else Path("/etc/containers/registries.conf")
    drop_ins = main.with_suffix(".conf.d")
    extra = sorted(drop_ins.glob("*.conf")) if drop_ins.is_dir() else []
    return [path for path in [main, *extra] if path.exists()]


def sources_for(name: ImageName, files: list[Path] | None = None) -> list[Source]:
    """The mirrors configured for `name` that may serve it (by digest or by tag, as each
    says), then the registry itself; ImageError when the registry is blocked."""
    entry = _matching_entry(name, _registry_entries(config_files() if files is None else files))
    if entry is None:
        return [Source(name.registry, name.repository)]
    prefix, table = entry
    if table.get("blocked") is True:
        raise ImageError(f"{name.familiar}: the registry {prefix} is blocked in registries.conf")
    location = str(table.get("location") or prefix)
    by_digest = name.digest is not None
    mirrors = [
        _rewritten(str(mirror["location"]), prefix, name, insecure=mirror.get("insecure") is True, mirror=True)
        for mirror in table.get("mirror", [])
        if _serves(mirror, table, by_digest)
    ]
    own = _rewritten(location, prefix, name, insecure=table.get("insecure") is True, mirror=False)
    return [*mirrors, own]


def _registry_entries(files: list[Path]) -> dict[str, dict[str, Any]]:
    """prefix -> its [[registry]] table; a later file's table replaces an earlier one's."""
    found: dict[str, dict[str, Any]] = {}
    for path in files:
        try:
            document = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError) as error:
            raise ImageError(f"{path}: cannot read: {getattr(error, 'strerror', None) or error}") from None
        except tomllib.TOMLDecodeError as error:
            raise ImageError(f"{path}: not valid TOML: {error}") from None
        tables = document.get("registry", [])
        if not isinstance(tables, list) or not all(isinstance(table, dict) for table in tables):
            raise ImageError(f"{path}: [[registry]] must be a list of tables")
        for number, table in enumerate(tables, start=1):
            _check_table(path, number, table)
            found[str(table.get("prefix") or table["location"])] = table
    return found


def _check_table(path: Path, number: int, table: dict[str, Any]) -> None:
    where = f"{path}: [[registry]] {number}"
    if not isinstance(table.get("prefix") or table.get("location"), str):
        raise ImageError(f"{where}: needs a prefix or a location (a string)")
    mirrors = table.get("mirror", [])
    if not isinstance(mirrors, list) or not all(
        isinstance(m, dict) and isinstance(m.get("location"), str) for m in mirrors
    ):
        raise ImageError(f"{where}: each [[registry.mirror]] needs a location (a string)")
    for mirror in mirrors:
        if mirror.get("pull-from-mirror", "all") not in _PULL_FROM_MIRROR:
            raise ImageError(f"{where}: pull-from-mirror must be one of {', '.join(_PULL_FROM_MIRROR)}")


def _matching_entry(name: ImageName, entries: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]] | None:
    """The entry with the longest prefix that names `name`'s repository, whole path
    components only (`docker.io/library` matches `docker.io/library/busybox`, not
    `docker.io/libraryx`)."""
    full = f"{name.registry}/{name.repository}"
    matching = [prefix for prefix in entries if full == prefix or full.startswith(prefix.rstrip("/") + "/")]
    if not matching:
        return None
    prefix = max(matching, key=len)
    return prefix, entries[prefix]


def _serves(mirror: dict[str, Any], table: dict[str, Any], by_digest: bool) -> bool:
    rule = str(mirror.get("pull-from-mirror", "all"))
    if table.get("mirror-by-digest-only") is True:
        rule = "digest-only"
    return rule == "all" or (rule == "digest-only") == by_digest


def _rewritten(location: str, prefix: str, name: ImageName, *, insecure: bool, mirror: bool) -> Source:
    """`name` with `prefix` replaced by `location`, split into registry and repository."""
    rest = f"{name.registry}/{name.repository}"[len(prefix.rstrip("/")) :].lstrip("/")
    target = "/".join(part for part in (location.rstrip("/"), rest) if part)
    registry, _, repository = target.partition("/")
    if not repository:
        raise ImageError(f"registries.conf: {location} leaves no repository for {name.familiar}")
    return Source(registry, repository, insecure, mirror)
