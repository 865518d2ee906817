"""What `pysandbox images` and `system df` say of each stored image: its name split as
Docker shows it, ids, when it was built and what it takes on disk."""

from __future__ import annotations

from dataclasses import dataclass

from pysbx.images.errors import ImageError
from pysbx.images.image import open_stored_image
from pysbx.images.localstore import LocalStore, StoredImage


@dataclass(frozen=True)
class ImageSummary:
    repository: str  # the familiar name, as `docker images` shows it (`busybox`, `ghcr.io/acme/app`)
    tag: str
    digest: str  # the manifest's (or multi-platform index's) digest
    created: str  # the config's `created`, RFC 3339, or "" when it says nothing
    size: int  # bytes on disk: every blob the image reaches, shared ones included
    problem: str = ""  # why the image could not be read (a damaged store), else ""

    @property
    def image_id(self) -> str:
        return self.digest.split(":", 1)[-1][:12]

    def as_row(self) -> dict[str, str]:
        return {
            "Repository": self.repository,
            "Tag": self.tag,
            "Digest": self.digest,
            "ID": self.image_id,
            "CreatedAt": self.created,
            "Size": human_size(self.size),
        }


def summarize(store: LocalStore, image: StoredImage) -> ImageSummary:
    repository, tag = split_name(image.name)
    size = store.reachable_size([image])
    try:
        created = open_stored_image(store.folder, image.digest, image.label).config.created or ""
    except ImageError as error:
        return ImageSummary(repository, tag, str(image.digest), "", size, str(error))
    return ImageSummary(repository, tag, str(image.digest), created, size)


def split_name(name: str | None) -> tuple[str, str]:
    """`docker.io/library/busybox:1` -> (`busybox`, `1`); no name -> (`<none>`, `<none>`)."""
    if name is None:
        return "<none>", "<none>"
    repository, _, tag = name.rpartition(":")
    return familiar(repository), tag


def familiar(repository: str) -> str:
    """Docker's short form: `docker.io/library/busybox` -> `busybox`, `docker.io/a/b` -> `a/b`."""
    if not repository.startswith("docker.io/"):
        return repository
    short = repository.removeprefix("docker.io/")
    rest = short.removeprefix("library/")
    return rest if "/" not in rest else short


def human_size(size: int) -> str:
    """Docker's sizes: decimal units, three significant digits (`4.26MB`, `745kB`)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.3g}{unit}"
        value /= 1000
    return f"{size}B"
