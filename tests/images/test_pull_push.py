"""pull and push between the local store and a real registry (Debian's docker-registry on
loopback): images come back byte for byte, signatures travel both ways (the referrers tag
and cosign's .sig tag, as registry 2.8 has no referrers API), a policy that requires a
signature keeps an unsigned image out of the store, an interrupted pull resumes, a doctored
blob is refused, and token authentication and TLS work as the test sets them up."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pysbx.images.digest import digest_bytes
from pysbx.images.distribution import RegistryClient, RegistryError
from pysbx.images.errors import ImageError
from pysbx.images.image import Image, open_image, open_stored_image
from pysbx.images.loading import load_archive
from pysbx.images.localstore import LocalStore
from pysbx.images.platform import Platform
from pysbx.images.pull import PullRefused, pull_image
from pysbx.images.push import push_image
from pysbx.images.registryauth import Credentials
from pysbx.images.registryname import parse_image_name
from pysbx.images.writer import write_oci_layout
from pysbx.policies.model import SigningPolicy
from pysbx.signing.keys import load_private_key
from pysbx.signing.sign import attach_referrer, attach_signature_tag, sign_image
from pysbx.signing.verify import verify_image
from tests.imagekit import T, image_of
from tests.images.registry_server import (
    Registry,
    TokenServer,
    make_pki,
    serve_in_thread,
    skopeo_environment,
    start_registry,
)
from tests.signing.conftest import write_key_pairs


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    started = start_registry(tmp_path_factory.mktemp("registry"))
    yield started
    started.stop()


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore.create(tmp_path / "state" / "store")


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    return write_key_pairs(tmp_path, "alice", "mallory")


def policy_of(key: Path) -> SigningPolicy:
    return SigningPolicy(required=True, keys=(str(key.with_suffix(".pub")),))


def verification(policy: SigningPolicy):  # type: ignore[no-untyped-def]
    def verify(image: Image) -> str | None:
        verdict = verify_image(image, policy)
        return None if verdict.verified else verdict.reason

    return verify


def stored(store: LocalStore, tmp_path: Path, name: str, content: bytes = b"hello\n") -> Image:
    """A two-layer image loaded into `store` under `name`; its layer is big and incompressible
    enough (300 KB) to be cut halfway."""
    folder = tmp_path / f"src-{digest_bytes(content).hex[:8]}"
    noise = digest_bytes(content).hex.encode() * 4700
    write_oci_layout(folder, [(name, [image_of([T("noise", data=noise)], [T("app", data=content)])])])
    loaded = load_archive(store, folder)[0]
    return open_stored_image(store.folder, loaded.digest, name)


def published(
    store: LocalStore, registry: Registry, tmp_path: Path, repository: str, content: bytes
) -> tuple[str, Image]:
    """An image stored as REGISTRY/REPOSITORY:1 and pushed there."""
    name = f"{registry.host}/{repository}:1"
    image = stored(store, tmp_path, name, content)
    push(store, registry, name, name)
    return name, image


def pull(store: LocalStore, registry: Registry, name: str, verify=None, platform=None):  # type: ignore[no-untyped-def]
    with RegistryClient(registry.host) as client:
        return pull_image(store, parse_image_name(name), client, platform, verify)


def push(store: LocalStore, registry: Registry, name: str, destination: str):  # type: ignore[no-untyped-def]
    found = store.find(name)
    assert found is not None
    with RegistryClient(registry.host) as client:
        return push_image(store, found, parse_image_name(destination), client)


def test_push_then_pull_elsewhere_gives_the_same_manifest_and_names_it(
    registry: Registry, store: LocalStore, tmp_path: Path
) -> None:
    image = stored(store, tmp_path, f"{registry.host}/team/app:1")
    pushed = push(store, registry, f"{registry.host}/team/app:1", f"{registry.host}/team/app:1")
    assert pushed.digest == image.manifest_digest and pushed.blobs == 3
    elsewhere = LocalStore.create(tmp_path / "elsewhere" / "store")
    pulled = pull(elsewhere, registry, f"{registry.host}/team/app:1")
    assert pulled.digest == image.manifest_digest and pulled.blobs_fetched == 3
    found = elsewhere.find(f"{registry.host}/team/app:1")
    assert found is not None and found.name == f"{registry.host}/team/app:1"
    again = open_stored_image(elsewhere.folder, found.digest, "again")
    assert again.manifest_bytes == image.manifest_bytes
    assert pull(elsewhere, registry, f"{registry.host}/team/app:1").blobs_fetched == 0  # up to date


def test_a_name_without_a_tag_pulls_latest_and_a_digest_pulls_without_naming(
    registry: Registry, store: LocalStore, tmp_path: Path
) -> None:
    image = stored(store, tmp_path, f"{registry.host}/plain:latest", b"latest\n")
    push(store, registry, f"{registry.host}/plain:latest", f"{registry.host}/plain")
    elsewhere = LocalStore.create(tmp_path / "elsewhere" / "store")
    pull(elsewhere, registry, f"{registry.host}/plain")
    assert elsewhere.find(f"{registry.host}/plain:latest") is not None
    third = LocalStore.create(tmp_path / "third" / "store")
    pull(third, registry, f"{registry.host}/plain@{image.manifest_digest}")
    assert [entry.name for entry in third.images()] == [None]
    assert third.find(f"{registry.host}/plain@{image.manifest_digest}") is not None


def test_a_multi_platform_index_pulls_the_index_and_one_platform(
    registry: Registry, store: LocalStore, tmp_path: Path
) -> None:
    amd, arm = image_of([T("amd", data=b"x86\n")]), image_of([T("arm", data=b"arm\n")])
    arm.platform = Platform("linux", "arm64", "")
    write_oci_layout(tmp_path / "multi", [(f"{registry.host}/multi:1", [amd, arm])])
    loaded = load_archive(store, tmp_path / "multi")[0]
    push(store, registry, f"{registry.host}/multi:1", f"{registry.host}/multi:1")
    elsewhere = LocalStore.create(tmp_path / "elsewhere" / "store")
    pulled = pull(elsewhere, registry, f"{registry.host}/multi:1", platform=Platform("linux", "arm64", ""))
    assert pulled.digest == loaded.digest  # the name points at the index
    image = open_stored_image(elsewhere.folder, pulled.digest, "multi", Platform("linux", "arm64", ""))
    assert image.platform.architecture == "arm64" and image.index_digest == loaded.digest
    with pytest.raises(ImageError, match="only some platforms"):  # a sparse index cannot be pushed whole
        push(elsewhere, registry, f"{registry.host}/multi:1", f"{registry.host}/multi:2")


@pytest.mark.parametrize("how", ["referrer", "cosign-tag"])
def test_a_signature_travels_through_the_registry_and_verifies_on_pull(
    registry: Registry, store: LocalStore, tmp_path: Path, keys: dict[str, Path], how: str
) -> None:
    name = f"{registry.host}/signed-{how}:1"
    image = stored(store, tmp_path, name, how.encode())
    with store.editing():
        kind = "dsse" if how == "referrer" else "message"
        signed = sign_image(image, load_private_key(keys["alice"].with_suffix(".key")), kind)  # type: ignore[arg-type]
        (attach_referrer if how == "referrer" else attach_signature_tag)(image, signed)
    assert push(store, registry, name, name).attached == 1
    elsewhere = LocalStore.create(tmp_path / "elsewhere" / "store")
    pulled = pull(elsewhere, registry, name, verification(policy_of(keys["alice"])))
    assert pulled.attached == 1 and elsewhere.find(name) is not None
    third = LocalStore.create(tmp_path / "third" / "store")
    with pytest.raises(PullRefused, match="refused"):
        pull(third, registry, name, verification(policy_of(keys["mallory"])))  # signed, but by another key
    assert third.images() == [] and third.entries() == []
    assert list((third.folder / "blobs" / "sha256").iterdir()) == []  # nothing of it stays


def test_an_unsigned_image_is_not_stored_under_a_policy_that_requires_a_signature(
    registry: Registry, store: LocalStore, tmp_path: Path, keys: dict[str, Path]
) -> None:
    name, _ = published(store, registry, tmp_path, "unsigned", b"unsigned\n")
    elsewhere = LocalStore.create(tmp_path / "elsewhere" / "store")
    with pytest.raises(PullRefused, match="is not signed"):
        pull(elsewhere, registry, name, verification(policy_of(keys["alice"])))
    assert elsewhere.find(name) is None and elsewhere.entries() == []


def test_an_interrupted_pull_resumes_with_range(registry: Registry, store: LocalStore, tmp_path: Path) -> None:
    name, image = published(store, registry, tmp_path, "resume", b"resume\n")
    layer = image.layers[0]
    elsewhere = LocalStore.create(tmp_path / "elsewhere" / "store")
    partial = Path(elsewhere.staging_file(f"pull-sha256-{layer.digest.hex}"))
    whole = store.blob_file(layer.digest).read_bytes()
    partial.write_bytes(whole[: len(whole) // 2])  # what a pull cut short left
    pull(elsewhere, registry, name)
    assert elsewhere.blob_file(layer.digest).read_bytes() == whole
    pattern = rf'"GET /v2/resume/blobs/{layer.digest}[^"]*" 206 {len(whole) - len(whole) // 2}'
    assert wait_for(lambda: [line for line in registry.access_log() if re.search(pattern, line)])


def test_a_blob_doctored_in_the_registry_is_refused_and_nothing_is_named(
    registry: Registry, store: LocalStore, tmp_path: Path
) -> None:
    name, image = published(store, registry, tmp_path, "doctored", b"doctored\n")
    blob = registry.blob_file(str(image.layers[1].digest))
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    blob.write_bytes(bytes(data))
    elsewhere = LocalStore.create(tmp_path / "elsewhere" / "store")
    with pytest.raises(RegistryError, match="does not match its digest"):
        pull(elsewhere, registry, name)
    assert elsewhere.find(name) is None and not elsewhere.has_blob(image.layers[1].digest)


def test_token_auth_pull_and_push(store: LocalStore, tmp_path: Path) -> None:
    tokens = TokenServer(tmp_path / "tokens")
    server = serve_in_thread(tokens.handle)
    tokens.port = server.port
    secured = start_registry(tmp_path / "registry", tokens=tokens)
    try:
        name = f"{secured.host}/private/app:1"
        image = stored(store, tmp_path, name, b"private\n")
        found = store.find(name)
        assert found is not None
        with RegistryClient(secured.host) as anonymous, pytest.raises(RegistryError, match="authentication required"):
            push_image(store, found, parse_image_name(name), anonymous)
        alice = Credentials("alice", "s3cret")
        with RegistryClient(secured.host, credentials=alice) as client:
            push_image(store, found, parse_image_name(name), client)
        elsewhere = LocalStore.create(tmp_path / "elsewhere" / "store")
        with RegistryClient(secured.host, credentials=alice) as client:
            assert pull_image(elsewhere, parse_image_name(name), client).digest == image.manifest_digest
        with RegistryClient(secured.host) as anonymous, pytest.raises(RegistryError, match="authentication required"):
            pull_image(LocalStore.create(tmp_path / "third" / "store"), parse_image_name(name), anonymous)
    finally:
        secured.stop()
        server.stop()


def test_tls_pull_and_push_against_the_test_ca(store: LocalStore, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    secured = start_registry(tmp_path / "registry", tls=pki)
    try:
        name = f"{secured.host}/tls/app:1"
        image = stored(store, tmp_path, name, b"tls\n")
        found = store.find(name)
        assert found is not None
        with RegistryClient(secured.host, ca_file=str(pki.ca_file)) as client:
            push_image(store, found, parse_image_name(name), client)
        elsewhere = LocalStore.create(tmp_path / "elsewhere" / "store")
        with RegistryClient(secured.host, ca_file=str(pki.ca_file)) as client:
            assert pull_image(elsewhere, parse_image_name(name), client).digest == image.manifest_digest
        with RegistryClient(secured.host) as unknown_ca, pytest.raises(RegistryError, match="certificate"):
            pull_image(LocalStore.create(tmp_path / "third" / "store"), parse_image_name(name), unknown_ca)
    finally:
        secured.stop()


def test_skopeo_reads_what_we_pushed(registry: Registry, store: LocalStore, tmp_path: Path) -> None:
    import shutil
    import subprocess

    if shutil.which("skopeo") is None:
        pytest.skip("needs skopeo")
    name = f"{registry.host}/for-skopeo:1"
    image = stored(store, tmp_path, name, b"skopeo\n")
    push(store, registry, name, name)
    env = skopeo_environment(tmp_path)
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{name}"],
        capture_output=True,
        check=True,
        env=env,
    ).stdout
    assert raw == image.manifest_bytes
    copied = tmp_path / "copied"
    subprocess.run(
        ["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{name}", f"oci:{copied}:x"], check=True, env=env
    )
    assert open_image(f"{copied}:x").manifest_digest == image.manifest_digest


def wait_for(found):  # type: ignore[no-untyped-def]
    for _ in range(40):
        if found():
            return True
        time.sleep(0.05)
    return False


def test_the_referrers_tag_keeps_what_other_signers_listed(
    registry: Registry, store: LocalStore, tmp_path: Path, keys: dict[str, Path]
) -> None:
    name = f"{registry.host}/shared-tag:1"
    image = stored(store, tmp_path, name, b"shared\n")
    for key in ("alice", "mallory"):  # two signers push in turn: the second keeps the first's entry
        with store.editing():
            attach_referrer(image, sign_image(image, load_private_key(keys[key].with_suffix(".key")), "dsse"))
        push(store, registry, name, name)
    with RegistryClient(registry.host) as client:
        listed = client.referrers_tag_index("shared-tag", image.manifest_digest)
    assert len(listed) == 2 and len({item["digest"] for item in listed}) == 2
    assert all(json.loads(json.dumps(item)).get("artifactType") for item in listed)


def test_an_attached_artifact_too_big_to_be_a_signature_is_left_in_the_registry(
    registry: Registry, store: LocalStore, tmp_path: Path
) -> None:
    from pysbx.images.pull import MAX_ATTACHED_BYTES

    name, image = published(store, registry, tmp_path, "bloated", b"bloated\n")
    big = tmp_path / "big"
    with big.open("wb") as sink:
        sink.truncate(MAX_ATTACHED_BYTES + 1)
    big_digest = digest_bytes(big.read_bytes())
    empty = b"{}"
    referrer = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": str(digest_bytes(empty)), "size": 2},
        "layers": [{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "digest": str(big_digest),
                    "size": MAX_ATTACHED_BYTES + 1}],
        "subject": {"mediaType": image.manifest_media_type, "digest": str(image.manifest_digest),
                    "size": len(image.manifest_bytes)},
    }  # fmt: skip
    body = json.dumps(referrer).encode()
    (tmp_path / "empty").write_bytes(empty)
    with RegistryClient(registry.host) as client:
        client.push_blob("bloated", big_digest, MAX_ATTACHED_BYTES + 1, str(big))
        client.push_blob("bloated", digest_bytes(empty), 2, str(tmp_path / "empty"))
        client.put_manifest("bloated", str(digest_bytes(body)), referrer["mediaType"], body)
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
            {"mediaType": referrer["mediaType"], "digest": str(digest_bytes(body)), "size": len(body),
             "artifactType": referrer["artifactType"]}]}  # fmt: skip
        client.put_manifest(
            "bloated", f"sha256-{image.manifest_digest.hex}", index["mediaType"], json.dumps(index).encode()
        )
    elsewhere = LocalStore.create(tmp_path / "elsewhere" / "store")
    pulled = pull(elsewhere, registry, name)
    assert pulled.attached == 0 and not elsewhere.has_blob(big_digest)


def test_a_referrer_listed_for_one_image_but_naming_another_is_not_pulled(
    registry: Registry, store: LocalStore, tmp_path: Path, keys: dict[str, Path]
) -> None:
    """A referrers tag lists whatever anyone pushed under it: a signature whose subject is
    another image (the victim's, already in the store) does not come with this one."""
    victim = stored(store, tmp_path, f"{registry.host}/victim:1", b"victim\n")
    with store.editing():
        attach_referrer(victim, sign_image(victim, load_private_key(keys["alice"].with_suffix(".key")), "dsse"))
    push(store, registry, f"{registry.host}/victim:1", f"{registry.host}/attacker:1")  # its referrer, under attacker/
    attacker = stored(store, tmp_path, f"{registry.host}/attacker:2", b"attacker\n")
    push(store, registry, f"{registry.host}/attacker:2", f"{registry.host}/attacker:2")
    with RegistryClient(registry.host) as client:  # list the victim's referrer under the attacker's digest
        listed = client.referrers_tag_index("attacker", victim.manifest_digest)
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": listed}
        client.put_manifest(
            "attacker", f"sha256-{attacker.manifest_digest.hex}", index["mediaType"], json.dumps(index).encode()
        )
    elsewhere = LocalStore.create(tmp_path / "elsewhere" / "store")
    pulled = pull(elsewhere, registry, f"{registry.host}/attacker:2")
    assert pulled.attached == 0 and [entry for entry in elsewhere.entries() if entry.get("artifactType")] == []


def test_all_platforms_pulls_every_manifest_so_the_index_pushes_whole(
    registry: Registry, store: LocalStore, tmp_path: Path
) -> None:
    amd, arm = image_of([T("amd", data=b"x86 all\n")]), image_of([T("arm", data=b"arm all\n")])
    arm.platform = Platform("linux", "arm64", "")
    write_oci_layout(tmp_path / "multi", [(f"{registry.host}/all:1", [amd, arm])])
    loaded = load_archive(store, tmp_path / "multi")[0]
    push(store, registry, f"{registry.host}/all:1", f"{registry.host}/all:1")
    elsewhere = LocalStore.create(tmp_path / "elsewhere" / "store")
    with RegistryClient(registry.host) as client:
        pull_image(elsewhere, parse_image_name(f"{registry.host}/all:1"), client, all_platforms=True)
    for wanted in (Platform("linux", "amd64", ""), Platform("linux", "arm64", "")):
        assert open_stored_image(elsewhere.folder, loaded.digest, "all", wanted).platform == wanted
    assert push(elsewhere, registry, f"{registry.host}/all:1", f"{registry.host}/all:2").digest == loaded.digest


def test_a_signature_for_another_name_is_refused_when_the_policy_matches_references(
    registry: Registry, store: LocalStore, tmp_path: Path, keys: dict[str, Path]
) -> None:
    """podman's signedIdentity: the signed docker-reference must name what was pulled, so a
    signature carried over to another repository (a debug build's, promoted) is a replay."""
    name, other = f"{registry.host}/release/app:1", f"{registry.host}/debug/app:1"
    image = stored(store, tmp_path, name, b"promoted\n")
    with store.editing():
        signed = sign_image(image, load_private_key(keys["alice"].with_suffix(".key")), "message", reference=name)
        attach_referrer(image, signed)
    push(store, registry, name, name)
    push(store, registry, name, other)
    matching = SigningPolicy(required=True, keys=(str(keys["alice"].with_suffix(".pub")),), match_reference=True)
    pulled = pull(LocalStore.create(tmp_path / "a" / "store"), registry, name, verification(matching))
    assert pulled.attached == 1
    with pytest.raises(PullRefused, match="signature is for reference"):
        pull(LocalStore.create(tmp_path / "b" / "store"), registry, other, verification(matching))
