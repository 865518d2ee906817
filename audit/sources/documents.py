"""The document sources (YAML or JSON that describes containers), a registry: each names
its kind, how it recognises a document, and how it turns one into container specs; the
engine loops over DOCUMENT_SOURCES, so a new input format is one new module and one line
here. Imported only where a document is read: a Dockerfile's audit needs none of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pysbx.audit.sources.compose import compose_specs, is_compose
from pysbx.audit.sources.kubernetes import is_kubernetes, kubernetes_specs
from pysbx.audit.sources.runtime import docker_inspect_specs, is_docker_inspect, is_oci_config, oci_config_specs
from pysbx.audit.spec import ContainerSpec


@dataclass(frozen=True)
class DocumentSource:
    kind: str  # what `pyaudit --format json` reports under targets[].kind
    detect: Callable[[object], bool]
    to_specs: Callable[[Any, str], list[ContainerSpec]]


DOCUMENT_SOURCES = (
    DocumentSource("compose", is_compose, compose_specs),
    DocumentSource("kubernetes", is_kubernetes, kubernetes_specs),
    DocumentSource("docker-inspect", is_docker_inspect, docker_inspect_specs),
    DocumentSource("oci-config", is_oci_config, oci_config_specs),
)
