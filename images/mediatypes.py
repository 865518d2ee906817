"""Media types of OCI and Docker schema 2, and what each layer type means for reading."""

from __future__ import annotations

from pysbx.images.errors import ImageError

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})

DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

# Layer media type -> compression. Foreign and non-distributable layers live on another
# server by definition; we never fetch, so they are refused with a clear message.
LAYER_COMPRESSION = {
    "application/vnd.oci.image.layer.v1.tar": "none",
    "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd": "zstd",
    "application/vnd.docker.image.rootfs.diff.tar": "none",
    DOCKER_LAYER_GZIP: "gzip",
    "application/vnd.docker.image.rootfs.diff.tar.zstd": "zstd",
}
NON_DISTRIBUTABLE = frozenset(
    {
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    }
)


def layer_compression(media_type: str, where: str) -> str:
    compression = LAYER_COMPRESSION.get(media_type)
    if compression is not None:
        return compression
    if media_type in NON_DISTRIBUTABLE:
        raise ImageError(
            f"{where}: non-distributable (foreign) layer {media_type} is not in the archive; "
            "pull the image with its foreign layers included"
        )
    raise ImageError(f"{where}: unsupported layer media type {media_type!r}")
