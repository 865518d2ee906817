"""Image names are read as `docker pull` reads them: the normalisation table, the parts, and
the names Docker refuses, each refused in one line that quotes the name."""

from __future__ import annotations

import pytest

from pysbx.images.references import normalize_name
from pysbx.images.registryname import ImageNameError, is_loopback, parse_image_name

SHA = "sha256:" + "ab" * 32

# name -> (registry, repository, tag, digest, familiar)
NORMALISED = {
    "busybox": ("docker.io", "library/busybox", "latest", None, "busybox:latest"),
    "busybox:1.36": ("docker.io", "library/busybox", "1.36", None, "busybox:1.36"),
    "library/busybox": ("docker.io", "library/busybox", "latest", None, "busybox:latest"),
    "docker.io/busybox": ("docker.io", "library/busybox", "latest", None, "busybox:latest"),
    "index.docker.io/library/busybox": ("docker.io", "library/busybox", "latest", None, "busybox:latest"),
    "docker.io/library/a/b": ("docker.io", "library/a/b", "latest", None, "library/a/b:latest"),
    "acme/app:1.4": ("docker.io", "acme/app", "1.4", None, "acme/app:1.4"),
    "localhost/app": ("localhost", "app", "latest", None, "localhost/app:latest"),
    "localhost:5000/app:1": ("localhost:5000", "app", "1", None, "localhost:5000/app:1"),
    f"127.0.0.1:5000/a/b@{SHA}": ("127.0.0.1:5000", "a/b", None, SHA, f"127.0.0.1:5000/a/b@{SHA}"),
    "ghcr.io/acme/app:1.4": ("ghcr.io", "acme/app", "1.4", None, "ghcr.io/acme/app:1.4"),
    f"busybox:1@{SHA}": ("docker.io", "library/busybox", "1", SHA, f"busybox:1@{SHA}"),
    "[::1]:5000/app": ("[::1]:5000", "app", "latest", None, "[::1]:5000/app:latest"),
    "Registry/app": ("Registry", "app", "latest", None, "Registry/app:latest"),
    "a.b-c.io/d_e__f---g.h:T_1.x-y": ("a.b-c.io", "d_e__f---g.h", "T_1.x-y", None, "a.b-c.io/d_e__f---g.h:T_1.x-y"),
    "localhost:5000": ("docker.io", "library/localhost", "5000", None, "localhost:5000"),
}


@pytest.mark.parametrize("text", NORMALISED)
def test_names_normalise_as_docker(text: str) -> None:
    registry, repository, tag, digest, familiar = NORMALISED[text]
    name = parse_image_name(text)
    assert (name.registry, name.repository, name.tag) == (registry, repository, tag)
    assert (str(name.digest) if name.digest else None) == digest
    assert name.familiar == familiar
    assert (
        str(name)
        == name.full
        == f"{registry}/{repository}" + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    )


# references.normalize_name (archive ref names, stored names) reads names as pull does.
SAME_IN_ARCHIVES = [n for n in NORMALISED if "@" not in n]


@pytest.mark.parametrize("text", SAME_IN_ARCHIVES)
def test_agrees_with_the_archive_name_normalisation(text: str) -> None:
    assert parse_image_name(text).full == normalize_name(text)


def test_digest_wins_over_tag() -> None:
    assert parse_image_name(f"busybox:1@{SHA}").reference == SHA
    assert parse_image_name("busybox:1").reference == "1"


def test_docker_hub_is_served_by_registry_1() -> None:
    assert parse_image_name("busybox").endpoint == "registry-1.docker.io"
    assert parse_image_name("ghcr.io/a/b").endpoint == "ghcr.io"


BAD = {
    "": "image name is empty",
    "Busybox": "image name 'Busybox': repository 'library/Busybox' must be lower case",
    "a//b": "image name 'a//b': '' is not a repository path component",
    "a/": "image name 'a/': '' is not a repository path component",
    "-a": "image name '-a': '-a' is not a repository path component",
    "a_": "image name 'a_': 'a_' is not a repository path component",
    "a___b": "image name 'a___b': 'a___b' is not a repository path component",
    "a b": "image name 'a b': 'a b' is not a repository path component",
    "a:": "image name 'a:': tag '' is not a tag",
    "a:.x": "image name 'a:.x': tag '.x' is not a tag",
    "a:" + "x" * 129: "is not a tag (at most 128",
    "a@sha256:abc": "image name 'a@sha256:abc': 'sha256:abc' is not a sha256 or sha512 digest",
    "a@md5:" + "0" * 32: "is not a sha256 or sha512 digest",
    "ab" * 32: "a 64-character hex string is an image id, not a repository",
    "ex ample.com/a": "image name 'ex ample.com/a': 'ex ample.com' is not a registry host name",
    "-x.io/a": "'-x.io' is not a registry host name",
    "x_y.io/a": "'x_y.io' is not a registry host name",
    "x.io:port/a": "image name 'x.io:port/a': registry port 'port' is not a number",
    "[zz]:1/a": "image name '[zz]:1/a': '[zz]' is not an IPv6 address",
    "x.io/" + "a" * 256: "repository is longer than 255 characters",
}


@pytest.mark.parametrize("text", BAD)
def test_bad_names_are_refused_in_one_line(text: str) -> None:
    with pytest.raises(ImageNameError) as refused:
        parse_image_name(text)
    assert BAD[text] in str(refused.value)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("registry", "loopback"),
    [
        ("localhost:5000", True),
        ("127.0.0.1", True),
        ("[::1]:5000", True),
        ("127.0.0.2:5000", False),
        ("ghcr.io", False),
    ],
)
def test_loopback_registries(registry: str, loopback: bool) -> None:
    assert is_loopback(registry) is loopback
