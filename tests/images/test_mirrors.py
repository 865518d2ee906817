"""Mirrors from registries.conf (images.mirrors): which sources a name is pulled from, in
which order, and a pull that goes to a mirror first and to the registry when the mirror
lacks the image or serves it doctored, stored under the name asked for."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pysbx.images.distribution import RegistryClient
from pysbx.images.errors import ImageError
from pysbx.images.image import open_stored_image
from pysbx.images.loading import load_archive
from pysbx.images.localstore import LocalStore
from pysbx.images.mirrors import Source, config_files, sources_for
from pysbx.images.pull import pull_from_sources
from pysbx.images.push import push_image
from pysbx.images.registryname import parse_image_name
from pysbx.images.writer import write_oci_layout
from tests.imagekit import T, image_of
from tests.images.registry_server import Registry, start_registry

SHA = "sha256:" + "ab" * 32


def conf(tmp_path: Path, text: str) -> list[Path]:
    path = tmp_path / "registries.conf"
    path.write_text(text)
    return [path]


def test_a_name_no_entry_names_comes_from_its_registry(tmp_path: Path) -> None:
    assert sources_for(parse_image_name("busybox"), []) == [Source("docker.io", "library/busybox")]


def test_mirrors_come_first_in_order_then_the_location(tmp_path: Path) -> None:
    files = conf(
        tmp_path,
        """
[[registry]]
prefix = "docker.io"
location = "registry-1.docker.io"
[[registry.mirror]]
location = "mirror-a.example:5000"
[[registry.mirror]]
location = "mirror-b.example/hub"
insecure = true
""",
    )
    assert sources_for(parse_image_name("busybox:1"), files) == [
        Source("mirror-a.example:5000", "library/busybox", False, True),
        Source("mirror-b.example", "hub/library/busybox", True, True),
        Source("registry-1.docker.io", "library/busybox", False, False),
    ]


def test_the_longest_prefix_wins_on_whole_path_components(tmp_path: Path) -> None:
    files = conf(
        tmp_path,
        """
[[registry]]
prefix = "quay.io"
location = "quay.example"
[[registry]]
prefix = "quay.io/team"
location = "team-cache.example/quay"
""",
    )
    assert sources_for(parse_image_name("quay.io/team/app:1"), files)[-1] == Source("team-cache.example", "quay/app")
    assert sources_for(parse_image_name("quay.io/teamx/app:1"), files)[-1] == Source("quay.example", "teamx/app")


def test_pull_from_mirror_decides_tags_and_digests(tmp_path: Path) -> None:
    files = conf(
        tmp_path,
        """
[[registry]]
location = "ghcr.io"
[[registry.mirror]]
location = "by-digest.example"
pull-from-mirror = "digest-only"
[[registry.mirror]]
location = "by-tag.example"
pull-from-mirror = "tag-only"
""",
    )
    by_tag = [source.registry for source in sources_for(parse_image_name("ghcr.io/a/b:1"), files)]
    by_digest = [source.registry for source in sources_for(parse_image_name(f"ghcr.io/a/b@{SHA}"), files)]
    assert by_tag == ["by-tag.example", "ghcr.io"] and by_digest == ["by-digest.example", "ghcr.io"]


def test_a_blocked_registry_is_refused(tmp_path: Path) -> None:
    files = conf(tmp_path, '[[registry]]\nlocation = "evil.example"\nblocked = true\n')
    with pytest.raises(ImageError, match=r"evil\.example is blocked"):
        sources_for(parse_image_name("evil.example/x:1"), files)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[registry]\n", "not valid TOML"),
        ("registry = 1\n", "must be a list of tables"),
        ("[[registry]]\ninsecure = true\n", "needs a prefix or a location"),
        ('[[registry]]\nlocation = "a.example"\n[[registry.mirror]]\ninsecure = true\n', "needs a location"),
        (
            '[[registry]]\nlocation = "a"\n[[registry.mirror]]\nlocation = "m"\npull-from-mirror = "x"\n',
            "pull-from-mirror",
        ),
    ],
)
def test_a_file_that_does_not_parse_is_an_error_naming_it(tmp_path: Path, text: str, message: str) -> None:
    files = conf(tmp_path, text)
    with pytest.raises(ImageError, match=message) as raised:
        sources_for(parse_image_name("a.example/x:1"), files)
    assert str(files[0]) in str(raised.value)


def test_the_environment_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = conf(tmp_path, "")
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(files[0]))
    assert config_files() == files


# -- against two real registries -------------------------------------------------------------------


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Registry]]:
    primary = start_registry(tmp_path_factory.mktemp("primary"))
    mirror = start_registry(tmp_path_factory.mktemp("mirror"))
    yield primary, mirror
    primary.stop()
    mirror.stop()


def publish(store: LocalStore, tmp_path: Path, registry: Registry, repository: str, content: bytes) -> str:
    """An image loaded into `store` and pushed to REGISTRY/REPOSITORY:1; its digest."""
    write_oci_layout(tmp_path / repository, [(f"{registry.host}/{repository}:1", [image_of([T("f", data=content)])])])
    loaded = load_archive(store, tmp_path / repository)[0]
    found = store.find(str(loaded.digest))
    assert found is not None
    with RegistryClient(registry.host) as client:
        push_image(store, found, parse_image_name(f"{registry.host}/{repository}:1"), client)
    return str(loaded.digest)


def pull_via(store: LocalStore, name: str, files: list[Path]) -> tuple[str, Source]:
    def open_client(source: Source) -> RegistryClient:
        return RegistryClient(source.registry)

    pulled, source = pull_from_sources(
        store, parse_image_name(name), sources_for(parse_image_name(name), files), open_client
    )
    return str(pulled.digest), source


def test_a_pull_goes_to_the_mirror_first_and_keeps_the_name_asked_for(
    registries: tuple[Registry, Registry], tmp_path: Path
) -> None:
    primary, mirror = registries
    publisher = LocalStore.create(tmp_path / "publisher" / "store")
    digest = publish(publisher, tmp_path, mirror, "cache/team/app", b"from the mirror\n")
    files = conf(
        tmp_path, f'[[registry]]\nlocation = "{primary.host}"\n[[registry.mirror]]\nlocation = "{mirror.host}/cache"\n'
    )
    store = LocalStore.create(tmp_path / "state" / "store")
    pulled, source = pull_via(store, f"{primary.host}/team/app:1", files)  # the primary does not have it at all
    assert (pulled, source.mirror) == (digest, True)
    found = store.find(f"{primary.host}/team/app:1")
    assert found is not None and found.name == f"{primary.host}/team/app:1"


def test_the_registry_serves_what_the_mirror_lacks_or_doctored(
    registries: tuple[Registry, Registry], tmp_path: Path
) -> None:
    primary, mirror = registries
    publisher = LocalStore.create(tmp_path / "publisher" / "store")
    digest = publish(publisher, tmp_path, primary, "fallback", b"from the registry\n")
    files = conf(
        tmp_path, f'[[registry]]\nlocation = "{primary.host}"\n[[registry.mirror]]\nlocation = "{mirror.host}"\n'
    )
    store = LocalStore.create(tmp_path / "state" / "store")
    pulled, source = pull_via(store, f"{primary.host}/fallback:1", files)  # the mirror has no such repository
    assert (pulled, source.mirror) == (digest, False)
    # Now the mirror has it too, with one layer byte flipped in its storage.
    publish(publisher, tmp_path / "again", mirror, "fallback", b"from the registry\n")
    opened = next(image for image in publisher.images() if str(image.digest) == digest)
    layer = open_stored_image(publisher.folder, opened.digest, "x").layers[0]
    blob = mirror.blob_file(str(layer.digest))
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    blob.write_bytes(bytes(data))
    elsewhere = LocalStore.create(tmp_path / "elsewhere" / "store")
    pulled, source = pull_via(elsewhere, f"{primary.host}/fallback:1", files)
    assert (pulled, source.mirror) == (digest, False)
    assert elsewhere.has_blob(layer.digest)
