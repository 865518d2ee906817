"""Image names as Docker normalises them, so that `busybox`, `busybox:latest` and
`docker.io/library/busybox:latest` all pick the same image out of an archive."""

from __future__ import annotations

import re

# The distribution project's reference grammar: a registry host (with a port), path
# components of lowercase letters and digits joined by `.`, `_`, `__` or dashes, a tag, a digest.
_HOST = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::[0-9]+)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REFERENCE = re.compile(
    rf"(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?(?:@[a-z0-9]+:[0-9a-f]{{32,}})?"
)
_MAX_NAME = 255


def is_reference(text: str) -> bool:
    """Whether `text` is an image reference Docker would accept (NAME[:TAG][@DIGEST])."""
    return len(text) <= _MAX_NAME + 200 and bool(_REFERENCE.fullmatch(text))


def normalize_name(name: str) -> str:
    """Docker's familiar-name expansion: add `docker.io/`, `library/` and `:latest`
    where they are implied."""
    name_part, _, digest = name.partition("@")
    first, _, rest = name_part.partition("/")
    if not rest:
        name_part = f"docker.io/library/{name_part}"
    elif "." not in first and ":" not in first and first != "localhost":
        name_part = f"docker.io/{name_part}"
    if digest:
        return f"{name_part}@{digest}"
    last = name_part.rsplit("/", 1)[-1]
    if ":" not in last:
        name_part += ":latest"
    return name_part


def is_tag_alone(name: str) -> bool:
    """An OCI layout's ref.name that is a tag without a repository (`1.0`, `latest`)."""
    return bool(name) and not any(mark in name for mark in "/:@")


def reference_matches(wanted: str, candidate: str) -> bool:
    """Whether `wanted` (IMAGE:REF) names `candidate`; a candidate `:TAG` (a layout's lone
    tag) is matched by its tag, whatever repository `wanted` gives."""
    if candidate.startswith(":"):
        return wanted in (candidate, candidate[1:]) or normalize_name(wanted).rsplit(":", 1)[-1] == candidate[1:]
    return wanted == candidate or normalize_name(wanted) == normalize_name(candidate)
