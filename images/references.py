"""Image names as Docker normalises them, so that `busybox`, `busybox:latest` and
`docker.io/library/busybox:latest` all pick the same image out of an archive."""

from __future__ import annotations


def normalize_name(name: str) -> str:
    """Docker's familiar-name expansion: add `docker.io/`, `library/` and `:latest` where
    they are implied (images.registryname, as `docker pull` reads names); a name that
    grammar refuses (a layout's odd ref.name) is expanded as written, never refused here."""
    from pysbx.images.registryname import ImageNameError, parse_image_name

    try:
        parsed = parse_image_name(name)
    except ImageNameError:
        return _expanded_as_written(name)
    return parsed.full


def _expanded_as_written(name: str) -> str:
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
