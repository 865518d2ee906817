"""The local image store's commands, as Docker names them: `load`, `save`, `images`, `tag`,
`rmi`, `history`, and `image ls|load|save|tag|rm|history|prune`."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from pysbx.cli.imagearg import local_store, open_image_argument, store_folder
from pysbx.cli.kit import fail
from pysbx.images.errors import ImageError
from pysbx.images.localstore import LocalStore, StoredImage
from pysbx.images.saving import SaveFormat
from pysbx.sandbox.errors import EXIT_SETUP_FAILED, SandboxError
from pysbx.sandbox.listing import Field, TemplateError, columns, fill_template

IMAGE_ARGUMENT = typer.Argument(help="An image of the store: NAME[:TAG], NAME@DIGEST or an id.", metavar="IMAGE")


@contextmanager
def _store_errors() -> Iterator[None]:
    try:
        yield
    except (ImageError, SandboxError, TemplateError) as error:
        fail("pysandbox", str(error).replace("\n", "; "), EXIT_SETUP_FAILED)
    except OSError as error:
        fail("pysandbox", f"{error.filename or 'the image store'}: {error.strerror or error}", EXIT_SETUP_FAILED)


def load(
    archive: Annotated[
        Path,
        typer.Option("--input", "-i", help="A docker save archive, an OCI archive or an OCI layout folder."),
    ],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
) -> None:
    """Copy every image in ARCHIVE into the store, with the signatures attached to them,
    verifying each blob against its digest on the way; a name already in use moves to the
    loaded image."""
    from pysbx.images.loading import load_archive

    with _store_errors():
        loaded = load_archive(local_store(), archive)
    for image in [] if quiet else loaded:
        lines = [f"Loaded image: {name}" for name in image.names] or [f"Loaded image ID: {image.digest}"]
        typer.echo("\n".join(lines))


def save(
    images: Annotated[list[str], IMAGE_ARGUMENT],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write (a new file, or a new folder).")],
    save_format: Annotated[
        SaveFormat,
        typer.Option("--format", help="docker-archive (Docker 25+, read by OCI tools too), oci-archive or oci-dir."),
    ] = SaveFormat.docker_archive,
) -> None:
    """Write images, and the signatures attached to them, to an archive or a layout folder;
    every manifest is written byte for byte as stored, so signatures still verify."""
    from pysbx.images.saving import save_images

    with _store_errors():
        save_images(existing_store(), images, output, save_format)


_IMAGE_FIELDS: dict[str, Field] = {
    "Repository": ("REPOSITORY", lambda row: row["Repository"]),
    "Tag": ("TAG", lambda row: row["Tag"]),
    "Digest": ("DIGEST", lambda row: row["Digest"]),
    "ID": ("IMAGE ID", lambda row: row["ID"]),
    "CreatedAt": ("CREATED AT", lambda row: row["CreatedAt"]),
    "CreatedSince": ("CREATED", lambda row: _since(row["CreatedAt"])),
    "Size": ("SIZE", lambda row: row["Size"]),
}


def images(
    reference: Annotated[
        str | None, typer.Argument(help="Only this repository (and tag).", metavar="[NAME[:TAG]]")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", "-a", help="Also the signatures attached to images.")] = False,
    digests: Annotated[bool, typer.Option("--digests", help="Show each image's manifest digest.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only image ids.")] = False,
    output: Annotated[
        str,
        typer.Option("--format", help="table, json, or a Go template ({{.Repository}}:{{.Tag}}).", metavar="FORMAT"),
    ] = "table",
) -> None:
    """List the images of the store, newest first; an image that lost its last name to
    another shows as <none> until `image prune` removes it."""
    from pysbx.images.summary import summarize

    with _store_errors():
        store = existing_store_or_none()
        stored = [] if store is None else store.images()
        rows = [summarize(store, image).as_row() for image in stored] if store is not None else []
        rows = [row for row in rows if _wanted(row, reference)]
        rows.sort(key=lambda row: row["CreatedAt"], reverse=True)
        if all_ and store is not None:
            rows += _attached_rows(store)
        if quiet:
            shown = "".join(sorted({f"{row['ID']}\n" for row in rows}, key=[f"{r['ID']}\n" for r in rows].index))
        elif output == "json":
            shown = json.dumps(rows, indent=2) + "\n"
        elif output == "table":
            shown = _table(rows, digests) + "\n"
        else:
            shown = fill_template(rows, output, _IMAGE_FIELDS) + ("\n" if rows or output.startswith("table ") else "")
    sys.stdout.write(shown)


def _wanted(row: dict[str, str], reference: str | None) -> bool:
    if reference is None:
        return True
    from pysbx.images.references import normalize_name
    from pysbx.images.summary import familiar

    repository, _, tag = normalize_name(reference).rpartition(":")
    explicit_tag = ":" in reference.rsplit("/", 1)[-1]
    return row["Repository"] == familiar(repository) and (not explicit_tag or row["Tag"] == tag)


def _attached_rows(store: LocalStore) -> list[dict[str, str]]:
    """Signatures and attestations in the store, each shown under the image it is for."""
    from pysbx.images.image import is_attached_artifact
    from pysbx.images.localstore import subject_of

    rows = []
    for entry in store.entries():
        if is_attached_artifact(entry):
            kind = str(
                entry.get("artifactType") or (entry.get("annotations") or {}).get("org.opencontainers.image.ref.name")
            )
            subject = subject_of(store, entry) or "?"
            rows.append({"Repository": f"<attached to {subject[:19]}>", "Tag": kind, "Digest": str(entry.get("digest")),
                         "ID": str(entry.get("digest", ""))[7:19], "CreatedAt": "", "Size": ""})  # fmt: skip
    return rows


def _table(rows: list[dict[str, str]], digests: bool) -> str:
    headers = ["REPOSITORY", "TAG", *(["DIGEST"] if digests else []), "IMAGE ID", "CREATED", "SIZE"]
    cells = [
        [
            row["Repository"],
            row["Tag"],
            *([row["Digest"]] if digests else []),
            row["ID"],
            _since(row["CreatedAt"]),
            row["Size"],
        ]
        for row in rows
    ]
    return columns(headers, cells)


def _since(stamp: str) -> str:
    from pysbx.sandbox.lifecycle import ago

    return "N/A" if not stamp else f"{ago(stamp)} ago"


def tag(
    source: Annotated[str, typer.Argument(help="The image to name.", metavar="SOURCE")],
    target: Annotated[str, typer.Argument(help="Its new name, NAME[:TAG].", metavar="TARGET")],
) -> None:
    """Give a stored image another name; a name in use moves to this image."""
    from pysbx.images.loading import checked_name

    with _store_errors():
        store = existing_store()
        found = _find(store, source)
        with store.locked(exclusive=False):
            store.add(found.descriptor, [checked_name(target)])


def rmi(
    images: Annotated[list[str], IMAGE_ARGUMENT],
    force: Annotated[bool, typer.Option("--force", "-f", help="Remove every name of an image given by id.")] = False,
) -> None:
    """Remove names from the store: an image goes, with the signatures attached to it and
    the blobs no other image shares, when its last name goes. Containers made from it keep
    running and start again: each has its own copy of the unpacked layers."""
    with _store_errors():
        store = existing_store()
        for text in images:
            typer.echo(_remove_one(store, text, force))
        store.collect_garbage()


def _remove_one(store: LocalStore, text: str, force: bool) -> str:
    found = _find(store, text)
    names = [image.name for image in store.images() if image.digest == found.digest and image.name]
    if found.name is not None and _names_it(text, found.name) and len(names) > 1:
        store.untag(found.name)
        return f"Untagged: {found.name}"
    if len(names) > 1 and not force:
        raise ImageError(
            f"{text}: the image has {len(names)} names ({', '.join(names)}); remove them by name, or use -f"
        )
    store.remove({str(found.digest)})
    return "".join(f"Untagged: {name}\n" for name in names) + f"Deleted: {found.digest}"


def _names_it(text: str, name: str) -> bool:
    from pysbx.images.references import normalize_name

    try:
        return normalize_name(text) == name
    except ValueError:
        return False


def history(
    image: Annotated[str, typer.Argument(help="An image of the store, or an archive or layout.", metavar="IMAGE")],
    no_trunc: Annotated[bool, typer.Option("--no-trunc", help="Do not shorten the commands.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only layer digests.")] = False,
) -> None:
    """How the image was built: one line per history step, newest first, with the layer
    each step made and its size."""
    from pysbx.images.summary import human_size

    with _store_errors():
        opened = open_image_argument(image)
    layers = iter(opened.layers)
    rows = []
    for step in opened.config.history:
        layer = None if step.empty_layer else next(layers, None)
        rows.append(
            [
                layer.digest.hex[:12] if layer else "<missing>",
                _since(step.created),
                step.created_by if no_trunc or len(step.created_by) <= 45 else step.created_by[:44] + "…",
                human_size(layer.size) if layer else "0B",
                step.comment,
            ]
        )
    rows.reverse()
    if quiet:
        typer.echo("\n".join(row[0] for row in rows))
        return
    typer.echo(columns(["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], rows))


def prune(
    all_: Annotated[bool, typer.Option("--all", "-a", help="Every image, not only those without a name.")] = False,
    force: Annotated[bool, typer.Option("--force", "-f", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove images without a name (with -a, every image), then every blob no image left
    reaches; say how much was freed."""
    from pysbx.cli.system_cmd import confirmed

    question = "This removes all images." if all_ else "This removes all images without a name (<none>)."
    if not force and not confirmed(question + " Continue?"):
        raise typer.Exit(0)
    with _store_errors():
        store = existing_store_or_none()
        if store is None:
            typer.echo("Total reclaimed space: 0B")
            return
        typer.echo(prune_store(store, all_))


def prune_store(store: LocalStore, all_: bool) -> str:
    """Remove the images prune removes and collect the garbage; a report of it."""
    from pathlib import Path

    from pysbx.images.summary import human_size
    from pysbx.sandbox.containers import all_containers
    from pysbx.sandbox.housekeeping import prune_images
    from pysbx.sandbox.state import cache_root

    going, freed = prune_images(Path(cache_root()), store, list(all_containers()), all_)
    lines = [f"Deleted: {image.digest}" for image in going]
    return "\n".join([*lines, f"Total reclaimed space: {human_size(freed)}"])


def existing_store() -> LocalStore:
    store = existing_store_or_none()
    if store is None:
        raise ImageError("the image store is empty: `pysandbox load -i ARCHIVE` or `pysandbox pull NAME` adds images")
    return store


def existing_store_or_none() -> LocalStore | None:
    """The user's store when there is one (a listing or a prune makes no storage)."""
    folder = store_folder()
    return LocalStore(folder) if folder is not None and (folder / "index.json").exists() else None


def _find(store: LocalStore, text: str) -> StoredImage:
    found = store.find(text)
    if found is None:
        raise ImageError(f"{text}: no such image in the store")
    return found
