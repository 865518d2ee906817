"""Image facts for the auditor, gathered in one streamed pass over each layer (never
extracted): every entry, for every regular file up to a size bound (deleted ones included)
whether its content holds a secret, and the final filesystem, built as the entries arrive
(while the layer's next bytes are read and hashed in the other thread)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from pysbx.audit.efficiency import FinalTree
from pysbx.audit.secrets import BINARY_PROBE, is_binary, secret_content
from pysbx.images.image import Image, Layer
from pysbx.images.layers import Entry, LayerMember, walk_layer

CONTENT_LIMIT = 1024 * 1024  # files above it are binaries, archives, data: not read for secrets


@dataclass
class ImageFacts:
    image: Image
    layers: list[list[Entry]]
    secrets: dict[tuple[int, str], str] = field(default_factory=dict)  # (layer, path) -> what it holds
    final: FinalTree = field(default_factory=FinalTree)


def gather_facts(image: Image) -> ImageFacts:
    facts = ImageFacts(image, [])
    for layer in image.layers:
        entries: list[Entry] = []
        facts.final.apply_layer(layer.index, _walked(image, layer, facts, entries))
        facts.layers.append(entries)
    return facts


def _walked(image: Image, layer: Layer, facts: ImageFacts, entries: list[Entry]) -> Iterator[Entry]:
    """The layer's entries as the walk reaches them, each kept in `entries` and its content
    looked at for secrets first."""
    for member in walk_layer(image, layer, light_reader=True):
        entry = member.entry
        entries.append(entry)
        if _worth_reading(entry, member):
            found = secret_content(member.read_data(CONTENT_LIMIT), entry.path)
            if found:
                facts.secrets[(layer.index, entry.path)] = found
        yield entry


def _worth_reading(entry: Entry, member: LayerMember) -> bool:
    """A regular file small enough, and not binary by a look at its start (most of an
    image's bytes are binaries: they are never copied out of the stream)."""
    if entry.kind != "file" or entry.whiteout is not None or not 0 < entry.size <= CONTENT_LIMIT:
        return False
    return not is_binary(member.peek_data(BINARY_PROBE))
