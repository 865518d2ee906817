"""The local image store (images.localstore, loading, saving, resolve): every archive format
loads by name with its manifest intact, names move as Docker's do, signatures travel with
their images, nothing a doctored archive lies about is stored, and prune frees what it says."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from pysbx.images.digest import Digest, digest_bytes
from pysbx.images.errors import ImageError
from pysbx.images.image import open_image, open_stored_image
from pysbx.images.loading import load_archive
from pysbx.images.localstore import LocalStore
from pysbx.images.resolve import resolve
from pysbx.images.saving import SaveFormat, save_images
from pysbx.images.writer import NewImage, write_oci_archive
from pysbx.policies.model import SigningPolicy
from pysbx.signing.keys import load_private_key
from pysbx.signing.sign import attach_referrer, sign_image
from pysbx.signing.verify import verify_image
from tests.imagekit import LAYOUTS, T, image_of, write_image
from tests.signing.conftest import write_key_pairs


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore.create(tmp_path / "store" / "images")


def app_image(content: bytes = b"hello\n") -> NewImage:
    return image_of([T("etc", "dir"), T("etc/app", data=content)], [T("bin", "dir"), T("bin/tool", data=b"x")])


def written(tmp_path: Path, image: NewImage, layout: str, tag: str = "example/app:1") -> str:
    folder = tmp_path / f"src-{layout}-{len(os.listdir(tmp_path))}"
    folder.mkdir()
    return write_image(image, folder, layout, tag)


def archive_path(argument: str) -> Path:
    return Path(argument.split(":", 1)[0])


def blob_names(store: LocalStore) -> set[str]:
    return {blob.name for blob in (store.folder / "blobs" / "sha256").iterdir()}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_archive_format_loads_with_its_layers_and_its_manifest(
    tmp_path: Path, store: LocalStore, layout: str
) -> None:
    source = written(tmp_path, app_image(), layout, "example/app:1")
    loaded = load_archive(store, archive_path(source))
    original = open_image(source)
    opened = open_stored_image(store.folder, loaded[0].digest, "example/app:1")
    assert [layer.diff_id for layer in opened.layers] == [layer.diff_id for layer in original.layers]
    assert opened.config_digest == original.config_digest
    if layout != "docker-legacy":  # a legacy archive has no manifest to keep; the others keep theirs byte for byte
        assert opened.manifest_bytes == original.manifest_bytes
    # docker save names the image in full; umoci's layouts name a lone tag, which names no repository.
    named = layout.startswith("docker")
    assert loaded[0].names == (["docker.io/example/app:1"] if named else [])


def test_a_full_name_in_an_oci_archive_is_kept(tmp_path: Path, store: LocalStore) -> None:
    write_oci_archive(tmp_path / "skopeo-style.tar", [("localhost:5000/team/app:2", [app_image()])])
    loaded = load_archive(store, tmp_path / "skopeo-style.tar")
    assert loaded[0].names == ["localhost:5000/team/app:2"]
    assert store.find("localhost:5000/team/app:2") is not None
    assert store.find("team/app:2") is None  # docker.io/team/app is another repository


def test_a_lone_tag_names_nothing_and_the_image_is_kept_without_a_name(tmp_path: Path, store: LocalStore) -> None:
    source = written(tmp_path, app_image(), "oci-archive", "example/app:1")
    loaded = load_archive(store, archive_path(source))
    assert loaded[0].names == []
    assert store.find("1") is None and store.find("example/app:1") is None
    assert [image.name for image in store.images()] == [None]
    assert store.find(loaded[0].digest.hex[:12]) is not None  # by id, as Docker finds <none> images


def test_the_store_is_an_oci_layout_that_skopeo_reads(tmp_path: Path, store: LocalStore) -> None:
    if shutil.which("skopeo") is None:
        pytest.skip("needs skopeo")
    load_archive(store, archive_path(written(tmp_path, app_image(), "docker-25")))
    stored = store.find("example/app:1")
    assert stored is not None
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci:{store.folder}:docker.io/example/app:1"],
        capture_output=True,
        check=True,
    ).stdout
    assert Digest("sha256", __import__("hashlib").sha256(raw).hexdigest()) == stored.digest


def test_a_name_moves_to_the_newer_image_and_the_older_is_left_nameless(tmp_path: Path, store: LocalStore) -> None:
    first = load_archive(store, archive_path(written(tmp_path, app_image(b"one"), "docker-25")))[0]
    second = load_archive(store, archive_path(written(tmp_path, app_image(b"two"), "docker-25")))[0]
    assert second.moved == ["docker.io/example/app:1"]
    found = store.find("example/app:1")
    assert found is not None and found.digest == second.digest
    assert {(image.name, image.digest) for image in store.images()} == {
        ("docker.io/example/app:1", second.digest),
        (None, first.digest),
    }


def test_prune_removes_nameless_images_and_only_the_blobs_no_image_shares(tmp_path: Path, store: LocalStore) -> None:
    first = load_archive(store, archive_path(written(tmp_path, app_image(b"one"), "docker-25")))[0]
    before = blob_names(store)
    second = load_archive(store, archive_path(written(tmp_path, app_image(b"two"), "docker-25")))[0]
    added = blob_names(store) - before
    store.remove({str(image.digest) for image in store.images() if image.name is None})
    removed, freed = store.collect_garbage()
    left = blob_names(store)
    assert first.digest.hex not in left and second.digest.hex in left
    assert added <= left  # the newer image is whole
    assert removed == 3 and freed > 0  # the older manifest, config and its own first layer; the shared layer stays
    opened = open_stored_image(store.folder, second.digest, "example/app:1")
    assert all((store.folder / layer.location).is_file() for layer in opened.layers)


def test_a_doctored_layer_stores_nothing_and_names_nothing(tmp_path: Path, store: LocalStore) -> None:
    source = archive_path(written(tmp_path, app_image(), "oci-layout"))
    manifest = json.loads((source / "blobs/sha256" / open_image(str(source)).manifest_digest.hex).read_bytes())
    layer = source / "blobs/sha256" / manifest["layers"][1]["digest"].split(":")[1]
    data = bytearray(layer.read_bytes())
    data[-1] ^= 1
    layer.chmod(0o644)
    layer.write_bytes(bytes(data))
    index_before = (store.folder / "index.json").read_bytes()
    with pytest.raises(ImageError, match="does not match its digest"):
        load_archive(store, source)
    assert (store.folder / "index.json").read_bytes() == index_before
    assert manifest["layers"][1]["digest"].split(":")[1] not in blob_names(store)
    assert not list((store.folder.parent / "images.staging").iterdir())


def test_a_name_that_docker_would_refuse_refuses_the_archive(tmp_path: Path, store: LocalStore) -> None:
    for bad in ("../../etc/passwd:1", "example/App:1", "app:bad tag"):
        source = archive_path(written(tmp_path, app_image(), "docker-25", bad))
        with pytest.raises(ImageError, match="image name"):
            load_archive(store, source)
    assert store.images() == []


def test_naming_a_blob_the_store_lacks_is_refused(store: LocalStore) -> None:
    missing = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "a" * 64, "size": 2}
    with pytest.raises(ImageError, match="not in the store"):
        store.add(missing, ["docker.io/library/ghost:1"])


@pytest.mark.parametrize("save_format", list(SaveFormat))
def test_save_writes_manifests_byte_for_byte_and_the_result_loads_the_same(
    tmp_path: Path, store: LocalStore, save_format: SaveFormat
) -> None:
    load_archive(store, archive_path(written(tmp_path, app_image(), "docker-25")))
    stored = store.find("example/app:1")
    assert stored is not None
    target = tmp_path / f"saved-{save_format.value}"
    save_images(store, ["example/app:1"], target, save_format)
    reopened = open_image(
        f"{target}:docker.io/example/app:1" if save_format is not SaveFormat.docker_archive else str(target)
    )
    assert reopened.manifest_digest == stored.digest
    elsewhere = LocalStore.create(tmp_path / "elsewhere" / "images")
    again = load_archive(elsewhere, target)
    assert [(item.names, item.digest) for item in again] == [(["docker.io/example/app:1"], stored.digest)]
    if save_format is SaveFormat.docker_archive:
        with tarfile.open(target) as archive:
            legacy = json.loads(archive.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert legacy[0]["RepoTags"] == ["example/app:1"]


def test_a_failed_save_leaves_no_half_archive(tmp_path: Path, store: LocalStore) -> None:
    load_archive(store, archive_path(written(tmp_path, app_image(), "docker-25")))
    with pytest.raises(ImageError, match="no such image"):
        save_images(store, ["example/app:1", "example/ghost:1"], tmp_path / "out.tar", SaveFormat.oci_archive)
    assert not list(tmp_path.glob("*out.tar*"))


def test_signatures_travel_through_load_and_save_and_go_with_their_image(tmp_path: Path, store: LocalStore) -> None:
    keys = write_key_pairs(tmp_path, "alice")
    source = archive_path(written(tmp_path, app_image(), "oci-layout"))
    image = open_image(str(source))
    attach_referrer(image, sign_image(image, load_private_key(keys["alice"].with_suffix(".key")), "dsse"))
    loaded = load_archive(store, source)[0]
    store.add(
        {"mediaType": image.manifest_media_type, "digest": str(loaded.digest), "size": len(image.manifest_bytes)},
        ["docker.io/acme/app:1"],
    )
    policy = SigningPolicy(required=True, keys=(str(keys["alice"].with_suffix(".pub")),))
    stored = open_stored_image(store.folder, loaded.digest, "acme/app:1")
    verdict = verify_image(stored, policy)
    assert verdict.verified, verdict.reason
    assert verdict.bundle_origin is not None and verdict.bundle_origin.startswith("OCI referrer")
    saved = tmp_path / "signed.tar"
    save_images(store, ["acme/app:1"], saved, SaveFormat.oci_archive)
    elsewhere = LocalStore.create(tmp_path / "elsewhere" / "images")
    load_archive(elsewhere, saved)
    found = elsewhere.find("acme/app:1")
    assert found is not None
    assert verify_image(open_stored_image(elsewhere.folder, found.digest, "acme/app:1"), policy).verified
    store.remove({str(loaded.digest)})
    store.collect_garbage()
    assert store.entries() == [] and blob_names(store) == set()  # the referrer and its bundle went with it


def test_a_stored_name_wins_over_a_file_of_that_name(
    tmp_path: Path, store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_archive(store, archive_path(written(tmp_path, app_image(), "docker-25", "app:1")))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "app").write_text("not an image")
    resolved = resolve("app:1", store.folder)
    assert resolved.stored is not None and resolved.reference.startswith(str(store.folder))
    assert resolve("./app", store.folder).stored is None  # written as a path, it is the path


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_file_found_by_name_that_another_user_owns_is_refused(
    tmp_path: Path, store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = written(tmp_path, app_image(), "docker-25", "alpine:1")
    shared = tmp_path / "shared"
    shared.mkdir()
    shutil.copy(archive_path(source), shared / "alpine")
    monkeypatch.chdir(shared)
    assert resolve("alpine", store.folder).reference == "alpine"  # the user's own file
    os.chown(shared / "alpine", 1001, 1001)
    with pytest.raises(ImageError, match="belongs to uid 1001"):
        resolve("alpine", store.folder)
    os.chown(shared / "alpine", 0, 0)
    os.chown(shared, 1001, 1001)  # a folder of theirs holding a file of ours (a hard link, say)
    (shared / "ghcr.io").mkdir()
    os.chown(shared / "ghcr.io", 1001, 1001)
    shutil.copy(shared / "alpine", shared / "ghcr.io" / "app")
    with pytest.raises(ImageError, match=r"\./ghcr.io belongs to uid 1001"):
        resolve("ghcr.io/app", store.folder)
    assert resolve(f"./{'ghcr.io/app'}", store.folder).stored is None  # written as a path: the user's choice


def test_nothing_of_that_name_anywhere_is_one_clear_error(store: LocalStore) -> None:
    with pytest.raises(ImageError, match=r"no such image in the store .* and no such file"):
        resolve("nothing-here:1", store.folder)


# -- found by review (an attacker's reading of the store) ------------------------------------------


def test_save_never_writes_into_a_folder_that_exists(tmp_path: Path, store: LocalStore) -> None:
    """A folder made beforehand (by another user, in a shared parent) could hold links that a
    write would follow: the layout goes to a folder save makes itself."""
    load_archive(store, archive_path(written(tmp_path, app_image(), "docker-25")))
    planted = tmp_path / "planted"
    planted.mkdir()
    (planted / "index.json").symlink_to(tmp_path / "victim")
    with pytest.raises(ImageError, match="exists; an OCI layout is written to a new folder"):
        save_images(store, ["example/app:1"], planted, SaveFormat.oci_dir)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImageError, match="exists"):
        save_images(store, ["example/app:1"], empty, SaveFormat.oci_dir)
    assert not (tmp_path / "victim").exists()


def test_a_referrer_for_another_image_does_not_ride_in_with_a_load(tmp_path: Path, store: LocalStore) -> None:
    keys = write_key_pairs(tmp_path, "alice")
    policy = SigningPolicy(required=True, keys=(str(keys["alice"].with_suffix(".pub")),))
    victim_source = archive_path(written(tmp_path, app_image(b"victim"), "oci-layout"))
    victim = open_image(str(victim_source))
    attach_referrer(victim, sign_image(victim, load_private_key(keys["alice"].with_suffix(".key")), "dsse"))
    victim_digest = load_archive(store, victim_source)[0].digest
    store.add(
        {"mediaType": victim.manifest_media_type, "digest": str(victim_digest), "size": len(victim.manifest_bytes)},
        ["docker.io/victim/app:1"],
    )
    # The attacker's archive: its own image, and a damaged "signature" whose subject is the victim's.
    attacker_source = archive_path(written(tmp_path, app_image(b"attacker"), "oci-layout"))
    bogus = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": str(digest_bytes(b"{}")), "size": 2},
        "layers": [],
        "subject": {"mediaType": victim.manifest_media_type, "digest": str(victim_digest), "size": len(victim.manifest_bytes)},
    }).encode()  # fmt: skip
    for blob in (bogus, b"{}"):
        (attacker_source / "blobs/sha256" / digest_bytes(blob).hex).write_bytes(blob)
    index = json.loads((attacker_source / "index.json").read_text())
    index["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": str(digest_bytes(bogus)),
                               "size": len(bogus), "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json"})  # fmt: skip
    (attacker_source / "index.json").write_text(json.dumps(index))
    load_archive(store, attacker_source)
    assert str(digest_bytes(bogus)) not in {entry.get("digest") for entry in store.entries()}
    verdict = verify_image(open_stored_image(store.folder, victim_digest, "victim/app:1"), policy)
    assert verdict.verified, verdict.reason


def test_a_damaged_referrer_blocks_no_good_signature(tmp_path: Path) -> None:
    keys = write_key_pairs(tmp_path, "alice")
    source = archive_path(written(tmp_path, app_image(), "oci-layout"))
    image = open_image(str(source))
    attach_referrer(image, sign_image(image, load_private_key(keys["alice"].with_suffix(".key")), "dsse"))
    damaged = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "layers": [],
                          "subject": {"digest": str(image.manifest_digest)}}).encode()  # fmt: skip
    (source / "blobs/sha256" / digest_bytes(damaged).hex).write_bytes(damaged)
    index = json.loads((source / "index.json").read_text())
    index["manifests"].insert(0, {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": len(damaged),
                                  "digest": str(digest_bytes(damaged)),
                                  "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json"})  # fmt: skip
    (source / "index.json").write_text(json.dumps(index))
    policy = SigningPolicy(required=True, keys=(str(keys["alice"].with_suffix(".pub")),))
    verdict = verify_image(open_image(f"{source}:1"), policy)
    assert verdict.verified, verdict.reason


def test_prune_keeps_what_a_named_image_reaches_through_deeply_nested_indexes(
    tmp_path: Path, store: LocalStore
) -> None:
    source = archive_path(written(tmp_path, app_image(b"nested"), "oci-layout"))
    inner = open_image(str(source))
    loaded = load_archive(store, source)[0]
    store.add(
        {"mediaType": inner.manifest_media_type, "digest": str(loaded.digest), "size": len(inner.manifest_bytes)},
        ["docker.io/victim/y:1"],
    )
    entry = {"mediaType": inner.manifest_media_type, "digest": str(loaded.digest), "size": len(inner.manifest_bytes),
             "platform": {"os": "linux", "architecture": "amd64"}}  # fmt: skip
    nest = tmp_path / "nest"
    (nest / "blobs/sha256").mkdir(parents=True)
    for blob in (source / "blobs/sha256").iterdir():
        (nest / "blobs/sha256" / blob.name).write_bytes(blob.read_bytes())
    for _ in range(4):  # four indexes above the manifest: the same manifest, reached deep first
        body = json.dumps(
            {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [entry]}
        ).encode()
        (nest / "blobs/sha256" / digest_bytes(body).hex).write_bytes(body)
        entry = {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": str(digest_bytes(body)), "size": len(body),
                 "platform": {"os": "linux", "architecture": "amd64"}}  # fmt: skip
    (nest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (nest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    load_archive(store, nest)
    store.remove({str(image.digest) for image in store.images() if image.name is None})
    store.collect_garbage()
    opened = open_stored_image(store.folder, loaded.digest, "victim/y:1")
    assert all(store.has_blob(layer.digest) for layer in opened.layers)


def test_a_layer_that_calls_itself_an_artifact_does_not_stop_a_prune(tmp_path: Path, store: LocalStore) -> None:
    source = archive_path(written(tmp_path, app_image(b"odd"), "oci-layout"))
    manifest_digest = open_image(str(source)).manifest_digest
    manifest = json.loads((source / "blobs/sha256" / manifest_digest.hex).read_bytes())
    manifest["layers"][0]["artifactType"] = "application/x-not-a-document"
    body = json.dumps(manifest).encode()
    (source / "blobs/sha256" / digest_bytes(body).hex).write_bytes(body)
    (source / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": str(digest_bytes(body)), "size": len(body),
         "annotations": {"org.opencontainers.image.ref.name": "docker.io/odd/app:1"}}]}))  # fmt: skip
    load_archive(store, source)
    removed, _ = store.collect_garbage()
    assert removed == 0 and store.find("odd/app:1") is not None


def test_a_digest_with_a_trailing_newline_is_not_a_digest() -> None:
    from pysbx.images.digest import parse_digest

    with pytest.raises(ImageError, match="is not a sha256 or sha512 digest"):
        parse_digest("sha256:" + "a" * 64 + "\n", "test")


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_a_link_of_the_users_into_another_users_folder_is_not_followed_by_name(
    tmp_path: Path, store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    shutil.copy(archive_path(written(tmp_path, app_image(), "docker-25", "bb:1")), theirs / "bb")
    os.chown(theirs, 1001, 1001)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "link").symlink_to(theirs)
    monkeypatch.chdir(mine)
    with pytest.raises(ImageError, match=f"{theirs} belongs to uid 1001"):
        resolve("link/bb", store.folder)
