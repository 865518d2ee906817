"""What an IMAGE argument names: an image of the local store, or a file or folder.

A stored name wins: `busybox` is the stored busybox even when the current folder holds
something called `busybox`. A path is a path when it is written as one (`/`, `./`, `../`),
or when the store holds no such name and the path exists. In that last case the file must
belong to the invoking user or root: another user's `/tmp/alpine`, found because a user
typed `alpine` in /tmp, is not the image they meant, and under a policy that does not
require signatures it would run as theirs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pysbx.images.errors import ImageError
from pysbx.images.image import Image, open_image, open_stored_image, split_reference
from pysbx.images.localstore import LocalStore, StoredImage
from pysbx.images.platform import Platform

_PATH_PREFIXES = ("/", "./", "../", "~")


@dataclass(frozen=True)
class Resolved:
    """`stored` is set for an image of the store; `reference` is what open_image reads
    (`FOLDER:sha256:<hex>` for a stored image, the argument itself for a path)."""

    argument: str
    reference: str
    stored: StoredImage | None = None


def written_as_path(text: str) -> bool:
    return text.startswith(_PATH_PREFIXES) or text in (".", "..")


def resolve(text: str, store_folder: Path | None) -> Resolved:
    """Decide what `text` names (see the module's docstring); ImageError when nothing."""
    if not text:
        raise ImageError("an image name or path is needed, not an empty string")
    if written_as_path(text):
        return Resolved(text, text)
    if store_folder is not None and (store_folder / "index.json").exists():
        stored = LocalStore(store_folder).find(text)
        if stored is not None:
            return Resolved(text, f"{store_folder}:{stored.digest}", stored)
    try:
        path, _ = split_reference(text)
    except ImageError:
        raise ImageError(
            f"{text}: no such image in the store (`pysandbox images` lists them, `pysandbox load` or "
            "`pysandbox pull` adds one), and no such file"
        ) from None
    _check_found_path_is_trusted(text, path)
    return Resolved(text, text)


def _check_found_path_is_trusted(text: str, path: Path) -> None:
    """Each component of the relative path found (`ghcr.io`, then `ghcr.io/app`) must be
    the user's or root's: a folder of another user could hold anything under any name."""
    real = Path(os.path.realpath(path))  # a link of the user's may lead into another user's folder
    written = [Path(*path.parts[:depth]) for depth in range(1, len(path.parts) + 1)]
    for part in [*written, *(Path(*real.parts[:depth]) for depth in range(2, len(real.parts) + 1))]:
        owner = os.lstat(part).st_uid
        if owner not in (os.geteuid(), 0):
            shown = part if part.is_absolute() else f"./{part}"
            raise ImageError(
                f"{text}: not an image of the store, and {shown} belongs to uid {owner}, not to you: "
                f"write ./{text} to use it as a file"
            )


def open_resolved(resolved: Resolved, store_folder: Path | None, platform: str | Platform | None = None) -> Image:
    if resolved.stored is not None and store_folder is not None:
        return open_stored_image(store_folder, resolved.stored.digest, resolved.argument, platform)
    return open_image(resolved.reference, platform)
