"""`pysandbox image inspect|unpack|build` (the store's own commands: cli.store_cmd)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from pysbx.cli.imagearg import open_image_argument
from pysbx.cli.kit import OutputFormat, fail
from pysbx.images import ImageError, open_image
from pysbx.images.decompress import DEFAULT_MAX_BYTES
from pysbx.images.extract import UnpackOptions, unpack_image
from pysbx.images.image import Layer
from pysbx.images.inspect import InspectReport, inspect_image
from pysbx.images.platform import parse_platform
from pysbx.images.writer import (
    NewImage,
    NewLayer,
    spool_layer_tar,
    write_docker_archive,
    write_oci_archive,
    write_oci_layout,
)
from pysbx.policies.values import counted, format_size
from pysbx.sandbox.errors import EXIT_SETUP_FAILED, SandboxError

app = typer.Typer(
    help="Images of the store (ls, load, save, tag, rm, history, prune, pull, push) and image files "
    "(inspect, unpack, build).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

IMAGE_HELP = (
    "An image of the store (NAME[:TAG], NAME@DIGEST, an id), or a docker save archive, an OCI archive "
    "or an OCI layout folder, optionally followed by :REF to choose one image (a tag, or a name:tag)."
)
PLATFORM_HELP = "The platform to choose from a multi-platform index (default linux/amd64)."
MAX_BYTES_HELP = "Ceiling on uncompressed bytes, against decompression bombs (64Gi, 512Mi, 4096)."


def _size_option(text: str) -> int:
    """--max-bytes as policies write sizes: 64Gi, 512Mi, 1G, or bytes."""
    from pysbx.policies.values import parse_size

    size = parse_size(text)
    if size is None or size <= 0:
        raise typer.BadParameter(f"{text!r}: expected a size such as 64Gi, 512Mi or 4096")
    return size


MaxBytes = Annotated[int, typer.Option(help=MAX_BYTES_HELP, parser=_size_option, metavar="SIZE")]
# The default as people write it (64Gi); the option's parser turns it into bytes like any value.
DEFAULT_MAX_SIZE: int = format_size(DEFAULT_MAX_BYTES)  # type: ignore[assignment]


class ArchiveFormat(StrEnum):
    oci_archive = "oci-archive"
    docker_archive = "docker-archive"
    oci = "oci"


class Compression(StrEnum):
    gzip = "gzip"
    zstd = "zstd"
    none = "none"


@app.command()
def inspect(
    image: Annotated[str, typer.Argument(help=IMAGE_HELP, metavar="IMAGE")],
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="text for people, json for scripts.")
    ] = OutputFormat.text,
    platform: Annotated[str | None, typer.Option(help=PLATFORM_HELP, metavar="OS/ARCH")] = None,
    max_bytes: MaxBytes = DEFAULT_MAX_SIZE,
) -> None:
    """Show what `docker image inspect` and `docker history` show, after verifying every
    blob against its digest: references, digests, platform, run configuration, and each
    layer with its sizes, file count and the history line that made it."""
    with _image_errors():
        opened = open_image_argument(image, platform)
        with _layer_progress(opened.layers, "verifying") as advance:
            report = inspect_image(opened, max_bytes, advance)
    if output_format is OutputFormat.json:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        typer.echo(render_inspect(report))


@app.command()
def unpack(
    image: Annotated[str, typer.Argument(help=IMAGE_HELP, metavar="IMAGE")],
    target: Annotated[Path, typer.Argument(help="The folder to create (or an empty one).", metavar="DIR")],
    platform: Annotated[str | None, typer.Option(help=PLATFORM_HELP, metavar="OS/ARCH")] = None,
    max_bytes: MaxBytes = DEFAULT_MAX_SIZE,
) -> None:
    """Flatten the image's layers into TARGET, applying whiteouts and opaque directories.

    Works as an ordinary user: ownership is kept where permitted and otherwise recorded in
    the user.containers.override_stat xattr; device nodes are skipped with a note. Nothing
    is ever written outside TARGET, and TARGET is emptied again if a layer fails to verify."""
    with _image_errors():
        opened = open_image_argument(image, platform)
        with _layer_progress(opened.layers, "unpacking") as advance:
            report = unpack_image(opened, target, UnpackOptions(max_bytes=max_bytes), advance)
    typer.echo(
        f"unpacked {counted(report.layers, 'layer')} of {opened.manifest_digest} into {target}: "
        f"{counted(report.files, 'file')} ({_size(report.bytes_written)}), "
        f"{counted(report.directories, 'directory', 'directories')}, {counted(report.symlinks, 'symlink')}, "
        f"{counted(report.hardlinks, 'hard link')}, {counted(report.whiteouts, 'whiteout')} applied"
    )
    for note in report.notes():
        typer.echo(f"note: {note}", err=True)


@app.command()
def build(
    rootfs: Annotated[list[Path], typer.Argument(help="Folders, one layer each, lowest first.", metavar="FOLDER")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the image.", metavar="PATH")],
    archive_format: Annotated[
        ArchiveFormat, typer.Option("--format", help="oci-archive, docker-archive or oci (a layout folder).")
    ] = ArchiveFormat.oci_archive,
    tag: Annotated[str, typer.Option(help="The image's name:tag.", metavar="NAME:TAG")] = "localhost/image:latest",
    user: Annotated[str, typer.Option(help="The user the image runs as (USER).", metavar="USER")] = "",
    entrypoint: Annotated[str, typer.Option(help="ENTRYPOINT, split like a shell would.", metavar="CMD")] = "",
    cmd: Annotated[str, typer.Option(help="CMD, split like a shell would.", metavar="CMD")] = "",
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE, repeatable.", metavar="KEY=VALUE")
    ] = None,
    workdir: Annotated[str, typer.Option(help="WORKDIR.", metavar="DIR")] = "",
    label: Annotated[list[str] | None, typer.Option(help="KEY=VALUE, repeatable.", metavar="KEY=VALUE")] = None,
    compression: Annotated[Compression, typer.Option(help="Layer compression.")] = Compression.gzip,
    platform: Annotated[str, typer.Option(help="The image's platform.", metavar="OS/ARCH")] = "linux/amd64",
    keep_owner: Annotated[bool, typer.Option(help="Keep file owners instead of making root own everything.")] = False,
) -> None:
    """Build an image from folders: each becomes one layer, files owned by root unless
    --keep-owner (the owners on disk, which differ between users and machines). Output is
    deterministic: the same folders give the same digests. With SOURCE_DATE_EPOCH set (for
    example to `git log -1 --format=%ct`), file times are clamped to it and it is the image's
    creation time, so checkouts made at different times build the same image."""
    with _image_errors():
        epoch = source_date_epoch()
        config = _run_config(user, entrypoint, cmd, env or [], workdir, label or [])
        for folder in rootfs:
            if not folder.is_dir():
                raise ImageError(f"{folder}: not a folder")
        if output.exists():
            raise ImageError(f"{output}: already exists; remove it or choose another --output")
        # Layers are spooled to files beside the output as they are made, never held whole.
        spool = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
        try:
            layers = []
            for index, folder in enumerate(rootfs):
                tar = spool_layer_tar(folder, spool / f"{index}.tar", None if keep_owner else (0, 0), epoch)
                layers.append(NewLayer(tar, compression.value, f"pysandbox image build {folder.name}"))
            new = NewImage(layers, config, parse_platform(platform))
            if epoch is not None:
                new.created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
            _write(new, output, archive_format, tag)
        finally:
            shutil.rmtree(spool, ignore_errors=True)
        built = open_image(str(output))
    typer.echo(f"wrote {output} ({archive_format.value}) {tag} {built.manifest_digest}")


def source_date_epoch() -> int | None:
    """SOURCE_DATE_EPOCH (reproducible-builds.org): whole seconds since 1970, or unset."""
    raw = os.environ.get("SOURCE_DATE_EPOCH")
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        raise ImageError(f"SOURCE_DATE_EPOCH={raw[:40]!r}: expected whole seconds since 1970")
    return int(raw)


def _run_config(
    user: str, entrypoint: str, cmd: str, env: list[str], workdir: str, labels: list[str]
) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if user:
        config["User"] = user
    if entrypoint:
        config["Entrypoint"] = shlex.split(entrypoint)
    if cmd:
        config["Cmd"] = shlex.split(cmd)
    config["Env"] = [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        *_pairs(env, "--env"),
    ]
    if workdir:
        config["WorkingDir"] = workdir
    if labels:
        config["Labels"] = dict(pair.split("=", 1) for pair in _pairs(labels, "--label"))
    return config


def _pairs(values: list[str], option: str) -> list[str]:
    for value in values:
        if "=" not in value:
            raise ImageError(f"{option} {value!r}: expected KEY=VALUE")
    return values


def _write(new: NewImage, output: Path, archive_format: ArchiveFormat, tag: str) -> None:
    """The image under its full reference: ref.name `team/app:1.0` as skopeo writes it, so
    that IMAGE:team/app:1.0 finds it and pyaudit sees the version tag."""
    reference = tag if ":" in tag.rsplit("/", 1)[-1] or "@" in tag else f"{tag}:latest"
    if output.exists():
        raise ImageError(f"{output}: already exists; remove it or choose another --output")
    if archive_format is ArchiveFormat.oci:
        write_oci_layout(output, [(reference, [new])])
    elif archive_format is ArchiveFormat.oci_archive:
        write_oci_archive(output, [(reference, [new])])
    else:
        write_docker_archive(output, new, [tag])


@contextmanager
def _image_errors() -> Iterator[None]:
    try:
        yield
    except (ImageError, SandboxError) as error:
        fail("pysandbox", str(error), EXIT_SETUP_FAILED)
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        fail("pysandbox", f"{where}{error.strerror or error}", EXIT_SETUP_FAILED)


@contextmanager
def _layer_progress(layers: list[Layer], verb: str) -> Iterator[Callable[[Layer], None]]:
    """A progress bar on a terminal; nothing at all in a pipe or a CI log."""
    if not sys.stderr.isatty():
        yield lambda layer: None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    with Progress(TextColumn(f"{verb} layers"), BarColumn(), DownloadColumn(), transient=True) as progress:
        task = progress.add_task(verb, total=sum(layer.size for layer in layers))
        yield lambda layer: progress.advance(task, layer.size)


def _size(n: int) -> str:
    """Decimal units, as docker prints them."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


def render_inspect(report: InspectReport) -> str:
    config = report.config
    rows = [
        ("Image", f"{report.source} ({report.layout})"),
        ("References", ", ".join(report.references) or "(none)"),
        ("Manifest", f"{report.manifest_digest} ({report.manifest_media_type})"),
    ]
    if report.index_digest:
        rows.append(("Index", report.index_digest))
    rows += [
        ("Platform", report.platform),
        ("Config", report.config_digest),
        ("Created", report.created or "(unknown)"),
        ("User", config["user"] or "(none: runs as root)"),
        ("Entrypoint", _command(config["entrypoint"])),
        ("Cmd", _command(config["cmd"])),
        ("WorkingDir", config["working_dir"] or "/"),
        ("Env", "\n".join(config["env"]) or "(none)"),
        ("ExposedPorts", " ".join(config["exposed_ports"]) or "(none)"),
        ("Volumes", " ".join(config["volumes"]) or "(none)"),
        ("Labels", "\n".join(f"{k}={v}" for k, v in sorted(config["labels"].items())) or "(none)"),
        ("StopSignal", config["stop_signal"] or "(default SIGTERM)"),
    ]
    if config["healthcheck"]:
        rows.append(("Healthcheck", json.dumps(config["healthcheck"])))
    lines = []
    for key, value in rows:
        first, *rest = value.split("\n")
        lines.append(f"{key:<13} {first}")
        lines.extend(f"{'':<13} {more}" for more in rest)
    lines.append("")
    lines.append(
        f"Layers: {len(report.layers)}, {_size(report.size)} compressed, "
        f"{_size(report.uncompressed_size)} uncompressed, every digest verified"
    )
    biggest = max((layer.uncompressed_size for layer in report.layers), default=1) or 1
    lines.append(_layer_row("#", "DIGEST", "TYPE", "SIZE", "UNPACKED", "FILES", "", "CREATED BY"))
    for layer in report.layers:
        bar = "#" * max(1, round(10 * layer.uncompressed_size / biggest))
        lines.append(
            _layer_row(
                str(layer.index + 1),
                layer.digest[:19],
                layer.compression,
                _size(layer.size),
                _size(layer.uncompressed_size),
                str(layer.files),
                bar,
                _one_line(layer.created_by),
            )
        )
    if report.history:
        lines.append("")
        lines.append("History (newest first):")
        for row in report.history:
            made = row["layer"][:19] if row["layer"] else "<empty layer>"
            lines.append(f"  {row['created'][:20]:<20}  {made:<19}  {_one_line(row['created_by'])}")
    return "\n".join(lines)


def _layer_row(*cells: str) -> str:
    widths = (2, -19, -5, 9, 9, 6, -10, 0)  # negative: left-aligned
    return "  " + "  ".join(cell.ljust(-w) if w < 0 else cell.rjust(w) for cell, w in zip(cells, widths, strict=True))


def _command(value: list[str] | None) -> str:
    return "(none)" if value is None else json.dumps(value)


def _one_line(text: str, width: int = 70) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."
