"""What `docker image inspect` and `docker history` show, computed from the archive with
every blob verified: references, digests, platform, run configuration, and per layer its
sizes, file count and the history line that made it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from pysbx.images.decompress import DEFAULT_MAX_BYTES, ByteBudget
from pysbx.images.image import Image, Layer
from pysbx.images.layers import LayerStats, layer_stats


@dataclass(frozen=True)
class LayerReport:
    index: int
    digest: str
    diff_id: str
    media_type: str
    compression: str
    size: int
    uncompressed_size: int
    files: int
    entries: int
    created_by: str
    created: str
    comment: str


@dataclass(frozen=True)
class InspectReport:
    source: str
    layout: str
    references: list[str]
    manifest_digest: str
    manifest_media_type: str
    index_digest: str | None
    platform: str
    config_digest: str
    created: str
    author: str
    config: dict[str, Any]
    layers: list[LayerReport]
    history: list[dict[str, Any]]
    size: int
    uncompressed_size: int
    verified: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def inspect_image(
    image: Image,
    max_bytes: int = DEFAULT_MAX_BYTES,
    on_layer: Callable[[Layer], None] | None = None,
) -> InspectReport:
    """Stream every layer once (verifying digest and diff_id) and report. Raises ImageError
    on the first blob that does not verify."""
    budget = ByteBudget(max_bytes)
    layers = []
    for layer in image.layers:
        stats = layer_stats(image, layer, budget)
        layers.append(_layer_report(layer, stats))
        if on_layer is not None:
            on_layer(layer)
    config = image.config
    return InspectReport(
        source=image.shown,
        layout=image.layout,
        references=image.references,
        manifest_digest=str(image.manifest_digest),
        manifest_media_type=image.manifest_media_type,
        index_digest=str(image.index_digest) if image.index_digest else None,
        platform=str(image.platform),
        config_digest=str(image.config_digest),
        created=config.created,
        author=config.author,
        config={
            "user": config.user,
            "entrypoint": config.entrypoint,
            "cmd": config.cmd,
            "env": config.env,
            "working_dir": config.working_dir,
            "exposed_ports": config.exposed_ports,
            "volumes": config.volumes,
            "labels": config.labels,
            "stop_signal": config.stop_signal,
            "healthcheck": config.healthcheck,
        },
        layers=layers,
        history=_history(image),
        size=image.compressed_size,
        uncompressed_size=budget.used,
        verified=True,
    )


def _layer_report(layer: Layer, stats: LayerStats) -> LayerReport:
    history = layer.history
    return LayerReport(
        index=layer.index,
        digest=str(layer.digest),
        diff_id=str(layer.diff_id),
        media_type=layer.media_type,
        compression=layer.compression,
        size=layer.size,
        uncompressed_size=stats.uncompressed_bytes,
        files=stats.files,
        entries=stats.entries,
        created_by=history.created_by if history else "",
        created=history.created if history else "",
        comment=history.comment if history else "",
    )


def _history(image: Image) -> list[dict[str, Any]]:
    """docker history: newest first, each line with the layer it made (or none)."""
    rows = []
    layer_iter = iter(image.layers)
    for entry in image.config.history:
        layer = None if entry.empty_layer else next(layer_iter, None)
        rows.append(
            {
                "created": entry.created,
                "created_by": entry.created_by,
                "comment": entry.comment,
                "empty_layer": entry.empty_layer,
                "layer": str(layer.digest) if layer else None,
                "size": layer.size if layer else 0,
            }
        )
    return rows[::-1]
