"""The image configuration (OCI image-spec `config.json`, Docker's image JSON): what a
container runs as, and the history lines that made each layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pysbx.images.digest import Digest, parse_digest
from pysbx.images.jsonfields import (
    as_list,
    as_object,
    load_json_object,
    opt_object,
    opt_str,
    opt_str_list,
    opt_str_map,
)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    created: str
    created_by: str
    comment: str
    author: str
    empty_layer: bool


@dataclass(frozen=True, slots=True)
class ImageConfig:
    os: str
    architecture: str
    variant: str
    created: str
    author: str
    user: str
    # None and [] differ: Docker's override rules treat an absent entrypoint unlike an empty one.
    entrypoint: list[str] | None
    cmd: list[str] | None
    env: list[str]
    working_dir: str
    exposed_ports: list[str]
    volumes: list[str]
    labels: dict[str, str]
    stop_signal: str
    healthcheck: dict[str, Any] | None
    diff_ids: list[Digest]
    history: list[HistoryEntry]
    raw: dict[str, Any]


def parse_config(data: bytes, where: str) -> ImageConfig:
    doc = load_json_object(data, where)
    run = opt_object(doc, "config", where)
    run_where = f"{where}.config"
    rootfs = opt_object(doc, "rootfs", where)
    diff_ids = [
        parse_digest(item, f"{where}.rootfs.diff_ids[{i}]")
        for i, item in enumerate(as_list(rootfs.get("diff_ids", []), f"{where}.rootfs.diff_ids"))
    ]
    healthcheck = run.get("Healthcheck")
    return ImageConfig(
        os=opt_str(doc, "os", where),
        architecture=opt_str(doc, "architecture", where),
        variant=opt_str(doc, "variant", where),
        created=opt_str(doc, "created", where),
        author=opt_str(doc, "author", where),
        user=opt_str(run, "User", run_where),
        entrypoint=_opt_command(run, "Entrypoint", run_where),
        cmd=_opt_command(run, "Cmd", run_where),
        env=opt_str_list(run, "Env", run_where),
        working_dir=opt_str(run, "WorkingDir", run_where),
        exposed_ports=sorted(opt_object(run, "ExposedPorts", run_where)),
        volumes=sorted(opt_object(run, "Volumes", run_where)),
        labels=opt_str_map(run, "Labels", run_where),
        stop_signal=opt_str(run, "StopSignal", run_where),
        healthcheck=None if healthcheck is None else as_object(healthcheck, f"{run_where}.Healthcheck"),
        diff_ids=diff_ids,
        history=_parse_history(doc, where),
        raw=doc,
    )


def _opt_command(run: dict[str, Any], key: str, where: str) -> list[str] | None:
    if run.get(key) is None:
        return None
    return opt_str_list(run, key, where)


def _parse_history(doc: dict[str, Any], where: str) -> list[HistoryEntry]:
    entries = []
    for i, item in enumerate(as_list(doc.get("history", []), f"{where}.history")):
        item_where = f"{where}.history[{i}]"
        entry = as_object(item, item_where)
        entries.append(
            HistoryEntry(
                created=opt_str(entry, "created", item_where),
                created_by=opt_str(entry, "created_by", item_where),
                comment=opt_str(entry, "comment", item_where),
                author=opt_str(entry, "author", item_where),
                empty_layer=entry.get("empty_layer") is True,
            )
        )
    return entries


def history_per_layer(config: ImageConfig, layer_count: int) -> list[HistoryEntry | None]:
    """Pair each layer with the history line that made it: entries marked `empty_layer`
    made no layer (ENV, CMD...), the others map to layers in order."""
    made_layers = [entry for entry in config.history if not entry.empty_layer]
    return [made_layers[i] if i < len(made_layers) else None for i in range(layer_count)]
