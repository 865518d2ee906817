"""Checking that an image's bytes are the ones its manifest names, without unpacking it.

The manifest names the config and each layer blob by digest and size; the config names each
layer's uncompressed tar by diff_id. So once the manifest digest is trusted (a verified
signature), a clean pass here means every byte under it is what was signed.

Each layer blob is read twice, in this order: first hashed as stored, against the manifest's
digest and size, then decompressed and hashed against the config's diff_id. Hashing before
decompressing means a damaged blob is reported as what it is (its digest, expected and got),
not as whatever the decompressor trips over first, and only signed bytes are decompressed.
(`images.layers.walk_layer` checks the same digests in one pass, at the end of its walk.)"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, cast

from pysbx.images.decompress import ByteBudget, decompressing_reader
from pysbx.images.digest import VerifyingReader
from pysbx.images.image import Image, Layer
from pysbx.images.jsonfields import as_object, load_json_object, req_int


@dataclass(frozen=True, slots=True)
class ContentReport:
    blobs: int  # the config and every layer blob
    bytes: int  # their sizes as stored (for a legacy docker archive, the layer files' sizes)
    uncompressed_bytes: int  # the layers' tar streams


def verify_content(
    image: Image, budget: ByteBudget | None = None, on_layer: Callable[[Layer], None] | None = None
) -> ContentReport:
    """Read every layer blob once more and check it against the manifest and the config.
    Raises ImageError naming the first layer whose digest, size or diff_id does not match
    (expected and got). The config is counted as checked: `open_image` already read it and
    held it to the manifest's descriptor (for a legacy docker archive, the manifest is made
    from the config's digest), and the Image carries what was read then."""
    budget = budget or ByteBudget()
    stored = _config_size(image)
    for layer in image.layers:
        stored += _check_layer(image, layer, budget)
        if on_layer is not None:
            on_layer(layer)
    return ContentReport(1 + len(image.layers), stored, budget.used)


def _config_size(image: Image) -> int:
    where = f"{image.store.label}: manifest {image.manifest_digest.short()}"
    manifest = load_json_object(image.manifest_bytes, where)
    return req_int(as_object(manifest.get("config"), f"{where} config"), "size", f"{where} config")


def _check_layer(image: Image, layer: Layer, budget: ByteBudget) -> int:
    """Returns the bytes the layer blob holds as stored."""
    label = f"{image.store.label}: {layer.label}"
    # A compressed layer of a legacy docker archive has no digest of its compressed bytes:
    # the synthesised manifest describes it by diff_id and uncompressed size.
    described_by_diff_id = layer.compression != "none" and layer.digest == layer.diff_id
    stored = None
    if not described_by_diff_id:
        with image.store.open(layer.location) as raw:
            blob = VerifyingReader(raw, layer.digest, layer.size, label)
            blob.drain()
            stored = blob.count
        if layer.compression == "none" and layer.digest == layer.diff_id:
            budget.spend(stored, label)  # the blob is the tar: its digest is its diff_id
            return stored
    with image.store.open(layer.location) as raw:
        counted = VerifyingReader(raw, None, None, label)
        plain = decompressing_reader(counted, layer.compression, budget, label)
        expected_size = layer.size if described_by_diff_id else None
        VerifyingReader(cast(BinaryIO, plain), layer.diff_id, expected_size, f"{label} (diff_id)").drain()
        counted.drain()
    return counted.count if stored is None else stored
