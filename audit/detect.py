"""What an input is, by content (names only narrow a directory walk): an image archive or
layout, a Dockerfile, or YAML/JSON holding Compose, Kubernetes, docker inspect or an OCI
runtime config.

A directory walk stays inside the tree it was given: it follows no symbolic link (to a file
or to a folder) and passes over FIFOs, sockets and devices, saying so in `skipped`. What the
user names on the command line is theirs to name, so a named link is followed; whether it
ends at a regular file is checked where it is read (audit.inputs.read_regular)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from pysbx.audit.inputs import AuditInputError, file_kind

TYPE_CHECKING = False
if TYPE_CHECKING:  # pathlib is imported only for a folder's walk: not on the start for one file
    from pathlib import Path

__all__ = ["AuditInputError", "expand_targets", "is_dockerfile_name", "is_image_archive", "is_image_layout"]

TAR_HEADER_SIZE = 512
STDIN = "-"  # the target that names standard input, as hadolint and most tools spell it
_SKIP_DIRS = {".git", "node_modules", ".venv", "__pycache__", ".tox", "vendor"}
_YAML_SUFFIXES = (".yaml", ".yml", ".json")
_ARCHIVE_SUFFIXES = (".tar", ".oci")
_NOT_FOLLOWED = "a symbolic link: a directory walk does not follow links (name the target to audit it)"


def is_image_layout(path: str | os.PathLike[str]) -> bool:
    """An OCI layout folder: index.json or oci-layout in it."""
    return os.path.isfile(os.path.join(path, "index.json")) or os.path.isfile(os.path.join(path, "oci-layout"))


def is_image_archive(head: bytes) -> bool:
    """The first TAR_HEADER_SIZE bytes of a file are a POSIX tar header (docker save, OCI archive)."""
    return len(head) == TAR_HEADER_SIZE and head[257:262] == b"ustar"


def is_dockerfile_name(name: str) -> bool:
    lower = name.lower()
    return (
        lower in ("dockerfile", "containerfile")
        or lower.startswith(("dockerfile.", "containerfile."))
        or lower.endswith(".dockerfile")
    )


def _is_candidate_name(name: str) -> bool:
    return is_dockerfile_name(name) or name.endswith(_YAML_SUFFIXES) or name.endswith(_ARCHIVE_SUFFIXES)


def expand_targets(
    targets: list[str],
    skipped: list[tuple[str, str]] | None = None,
    stored: Callable[[str], bool] | None = None,
) -> Iterator[tuple[str, bool]]:
    """(path, explicit) for each input; a directory yields the files in it that pyaudit
    may read (Dockerfiles, YAML and JSON, image archives and layouts). What a walk passes
    over that pyaudit would otherwise have read is appended to `skipped` as (path, why).
    A target that names no file may name an image of pysandbox's store (`stored`): files first."""
    notes = skipped if skipped is not None else []
    for target in targets:
        if target == STDIN:
            yield target, True
            continue
        exists = os.path.exists(target)
        if not exists and (names_an_image(target) or (stored is not None and stored(target))):
            yield target, True  # IMAGE:REF, one image of a layout or archive, or a stored name
            continue
        if not exists:
            nor = ", nor an image of pysandbox's store" if stored is not None else ""
            raise AuditInputError(f"{target}: no such file or directory{nor}")
        if os.path.isdir(target) and not is_image_layout(target):
            from pathlib import Path  # its spelling of the walk's paths: `pyaudit .` reports `Dockerfile`

            yield from _walk(Path(target), notes)
        else:
            yield target, True


def names_an_image(target: str) -> bool:
    """`layout:team/app:1.0` or `image.tar:name:tag`: an existing image before a colon."""
    if ":" not in target:
        return False
    from pysbx.images import ImageError
    from pysbx.images.image import split_reference

    try:
        path, ref = split_reference(target)
    except ImageError:
        return False
    return ref is not None and (is_image_layout(path) or path.is_file())


def _walk(directory: Path, skipped: list[tuple[str, str]]) -> Iterator[tuple[str, bool]]:
    """Files first, then each sub-folder in turn, all in name order; the decision on each
    entry is taken on lstat (DirEntry without following), never on what a link points at."""
    try:
        with os.scandir(directory) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
    except OSError as error:
        skipped.append((str(directory), f"cannot list: {error.strerror}"))
        return
    folders = []
    for entry in entries:
        full = directory / entry.name
        try:
            if entry.is_symlink():
                if _is_candidate_name(entry.name) or entry.is_dir():
                    skipped.append((str(full), _NOT_FOLLOWED))
            elif entry.is_dir(follow_symlinks=False):
                if entry.name in _SKIP_DIRS:
                    continue
                if is_image_layout(full):
                    yield str(full), False
                else:
                    folders.append(full)
            elif not _is_candidate_name(entry.name):
                continue
            elif entry.is_file(follow_symlinks=False):
                yield str(full), False
            else:
                kind = file_kind(entry.stat(follow_symlinks=False).st_mode)
                skipped.append((str(full), f"not a regular file (it is {kind})"))
        except OSError as error:  # gone or unreadable between the listing and the look
            skipped.append((str(full), f"cannot read: {error.strerror}"))
    for folder in folders:
        yield from _walk(folder, skipped)
