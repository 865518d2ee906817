"""Image names as Docker reads them for pull and push: which registry, which repository,
which tag or digest. `busybox` is `docker.io/library/busybox:latest`; a first component
with a dot or a colon, `localhost`, or an upper-case letter is a registry host.

The grammar is the distribution reference grammar: lower-case path components joined by
`.`, `_`, `__` or dashes, a tag of at most 128 word characters, dots and dashes, a digest
that names a blob safely. A name with both a tag and a digest keeps both, and the digest is
what is fetched (as Docker does); the tag is then only a label."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from pysbx.images.digest import Digest, parse_digest
from pysbx.images.errors import ImageError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_LEGACY_HUB = "index.docker.io"
_OFFICIAL_NAMESPACE = "library"
_MAX_REPOSITORY = 255

_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN_COMPONENT = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?")
_PORT = re.compile(r"[0-9]{1,5}")
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_HEX_ID = re.compile(r"[a-f0-9]{64}")
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


class ImageNameError(ImageError):
    """An image name that is not one: the message quotes it and says which part is wrong."""


@dataclass(frozen=True, slots=True)
class ImageName:
    registry: str
    repository: str
    tag: str | None
    digest: Digest | None

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest when there is one, else the tag."""
        if self.digest is not None:
            return str(self.digest)
        return self.tag or "latest"

    @property
    def endpoint(self) -> str:
        """The host that serves the registry API (Docker Hub's is not `docker.io`)."""
        return api_host(self.registry)

    @property
    def full(self) -> str:
        return self.registry + "/" + self.repository + self._suffix()

    @property
    def familiar(self) -> str:
        """The short form Docker prints: no `docker.io/`, no `library/`."""
        if self.registry != DOCKER_HUB:
            return self.full
        repository = self.repository.removeprefix(_OFFICIAL_NAMESPACE + "/")
        if "/" in repository:
            repository = self.repository
        return repository + self._suffix()

    def _suffix(self) -> str:
        tag = f":{self.tag}" if self.tag is not None else ""
        digest = f"@{self.digest}" if self.digest is not None else ""
        return tag + digest

    def __str__(self) -> str:
        return self.full


def parse_image_name(text: str) -> ImageName:
    """Parse and normalise `text` as `docker pull` would; ImageNameError names what is wrong."""
    if not text:
        raise ImageNameError("image name is empty")
    if _HEX_ID.fullmatch(text):
        raise ImageNameError(f"image name {text!r}: a 64-character hex string is an image id, not a repository")
    name, digest = _split_digest(text)
    name, tag = _split_tag(text, name)
    registry, repository = _split_registry(name)
    check_registry(registry, text)
    check_repository(repository, text)
    if digest is None and tag is None:
        tag = "latest"
    return ImageName(registry, repository, tag, digest)


def api_host(registry: str) -> str:
    return DOCKER_HUB_API if registry == DOCKER_HUB else registry


def is_loopback(registry: str) -> bool:
    """Whether `registry` (host or host:port) is this machine, which Docker lets speak plain http."""
    return host_of(registry) in LOOPBACK_HOSTS


def host_of(registry: str) -> str:
    """The host part of `host[:port]`, IPv6 brackets removed."""
    if registry.startswith("["):
        return registry[1:].partition("]")[0]
    return registry.rpartition(":")[0] if ":" in registry else registry


def check_repository(repository: str, where: str) -> None:
    if len(repository) > _MAX_REPOSITORY:
        raise ImageNameError(f"image name {where!r}: repository is longer than {_MAX_REPOSITORY} characters")
    if repository != repository.lower():
        raise ImageNameError(f"image name {where!r}: repository {repository!r} must be lower case")
    for component in repository.split("/"):
        if not _PATH_COMPONENT.fullmatch(component):
            raise ImageNameError(
                f"image name {where!r}: {component!r} is not a repository path component "
                "(lower-case letters and digits, separated by '.', '_', '__' or '-')"
            )


def check_tag(tag: str, where: str) -> None:
    if not _TAG.fullmatch(tag):
        raise ImageNameError(
            f"image name {where!r}: tag {tag!r} is not a tag (at most 128 letters, digits, '_', '.' "
            "and '-', not starting with '.' or '-')"
        )


def check_registry(registry: str, where: str) -> None:
    host, port = _split_port(registry, where)
    if port is not None and not _PORT.fullmatch(port):
        raise ImageNameError(f"image name {where!r}: registry port {port!r} is not a number")
    if host.startswith("["):
        _check_ipv6(host, where)
        return
    if not host or not all(_DOMAIN_COMPONENT.fullmatch(part) for part in host.split(".")):
        raise ImageNameError(f"image name {where!r}: {registry!r} is not a registry host name")


def _split_digest(text: str) -> tuple[str, Digest | None]:
    name, at, digest_text = text.partition("@")
    if not at:
        return name, None
    try:
        return name, parse_digest(digest_text, f"image name {text!r}")
    except ImageError as error:
        raise ImageNameError(str(error)) from None


def _split_tag(text: str, name: str) -> tuple[str, str | None]:
    """A colon after the last slash starts the tag (one before it is a registry port)."""
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon <= slash:
        return name, None
    tag = name[colon + 1 :]
    check_tag(tag, text)
    return name[:colon], tag


def _split_registry(name: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    if slash and (any(mark in first for mark in ".:[") or first == "localhost" or first != first.lower()):
        registry, repository = first, rest
    else:
        registry, repository = DOCKER_HUB, name
    if registry == _LEGACY_HUB:
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in repository:
        repository = f"{_OFFICIAL_NAMESPACE}/{repository}"
    return registry, repository


def _split_port(registry: str, where: str) -> tuple[str, str | None]:
    if registry.startswith("["):
        host, bracket, after = registry.partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise ImageNameError(f"image name {where!r}: {registry!r} is not a registry host name")
        return host + bracket, after[1:] if after else None
    host, colon, port = registry.partition(":")
    return host, port if colon else None


def _check_ipv6(host: str, where: str) -> None:
    try:
        ipaddress.IPv6Address(host[1:-1])
    except ValueError:
        raise ImageNameError(f"image name {where!r}: {host!r} is not an IPv6 address") from None
