"""Image facts for the auditor, gathered in one streamed pass over each layer (never
extracted): every entry, and the first bytes of files that may hold credentials."""

from __future__ import annotations

from dataclasses import dataclass, field

from pysbx.audit.secrets import secret_file, wants_content_check
from pysbx.images.image import Image
from pysbx.images.layers import Entry, walk_layer

CONTENT_LIMIT = 64 * 1024
_MAX_CANDIDATE_SIZE = 1024 * 1024


@dataclass
class ImageFacts:
    image: Image
    layers: list[list[Entry]]
    contents: dict[tuple[int, str], bytes] = field(default_factory=dict)  # (layer, path) -> head


def gather_facts(image: Image) -> ImageFacts:
    facts = ImageFacts(image, [])
    for layer in image.layers:
        entries = []
        for member in walk_layer(image, layer):
            entry = member.entry
            entries.append(entry)
            small_file = entry.kind == "file" and entry.whiteout is None and entry.size <= _MAX_CANDIDATE_SIZE
            if small_file and (secret_file(entry.path) or wants_content_check(entry.path)):
                facts.contents[(layer.index, entry.path)] = member.read_data(CONTENT_LIMIT)
        facts.layers.append(entries)
    return facts
