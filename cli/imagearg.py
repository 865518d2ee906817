"""IMAGE arguments of every command: a name of the local store or a path (images.resolve),
and the store itself, in the invoking user's private storage. Imports are made where they
are used: pyaudit holds a StoredImages for every run and must not pay for the image reader
when it audits a Dockerfile."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

    from pysbx.images.image import Image
    from pysbx.images.localstore import LocalStore


def store_folder(create: bool = False) -> Path | None:
    """The store's folder, checked private; ImageError when it is not (someone else could
    have put any image under any name there)."""
    from pathlib import Path

    from pysbx.images.errors import ImageError
    from pysbx.sandbox.state import StorageError, image_store_folder

    try:
        folder = image_store_folder(create)
    except StorageError as error:
        raise ImageError(str(error)) from None
    return Path(folder) if folder is not None else None


def local_store() -> LocalStore:
    """The user's store, made on first use. Raises ImageError when it is not private."""
    from pysbx.images.localstore import LocalStore

    folder = store_folder(create=True)
    assert folder is not None
    return LocalStore.create(folder)


def open_image_argument(text: str, platform: str | None = None) -> Image:
    """Open IMAGE as the user meant it: a stored name first, else a path (images.resolve)."""
    from pysbx.images.resolve import open_resolved, resolve

    folder = store_folder()
    return open_resolved(resolve(text, folder), folder, platform)


class StoredImages:
    """The store as pyaudit reads it (audit.engine.StoredImages): a TARGET that names no file
    may name a stored image."""

    def holds(self, name: str) -> bool:
        from pysbx.audit.detect import AuditInputError
        from pysbx.images.errors import ImageError
        from pysbx.images.localstore import LocalStore

        try:
            folder = store_folder()
            return folder is not None and (folder / "index.json").exists() and LocalStore(folder).find(name) is not None
        except ImageError as error:  # a store that is not private, an ambiguous id: pyaudit's exit 2
            raise AuditInputError(f"{name}: {error}") from None

    def open(self, name: str) -> Image:
        return open_image_argument(name)
