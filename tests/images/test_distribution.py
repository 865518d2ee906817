"""The registry client against a real registry (Debian's docker-registry, the distribution
registry 2.8) on loopback: plain http, TLS with a CA made here, and token authentication
with a token server run here. skopeo puts reference images in; a small hostile server plays
what a well-behaved registry never does. Each test skips when docker-registry is absent."""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pysbx.images import mediatypes
from pysbx.images.digest import Digest, digest_bytes, parse_digest
from pysbx.images.distribution import RegistryClient, RegistryError, referrers_tag
from pysbx.images.registryauth import Credentials, credentials_for
from tests.imagekit import T, image_of, write_image
from tests.images.registry_server import (
    SKOPEO,
    Registry,
    TokenServer,
    make_pki,
    push_with_skopeo,
    serve_in_thread,
    skopeo_environment,
    start_registry,
)


@dataclass
class LocalImage:
    """An image in an OCI layout folder: its manifest and every blob, by digest."""

    layout: Path
    manifest: bytes
    digest: Digest

    @property
    def document(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.manifest)
        return loaded

    def blob_path(self, digest: str) -> Path:
        return self.layout / "blobs" / digest.replace(":", "/")

    def descriptors(self) -> list[dict[str, Any]]:
        return [self.document["config"], *self.document["layers"]]


def local_image(folder: Path, *files: tuple[str, bytes]) -> LocalImage:
    image = image_of([T(name, data=data) for name, data in files])
    layout = Path(write_image(image, folder, "oci-layout", tag="example/app:1"))
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"]
    manifest = (layout / "blobs" / digest.replace(":", "/")).read_bytes()
    return LocalImage(layout, manifest, parse_digest(digest, "test"))


def wait_for_log(registry: Registry, pattern: str) -> list[str]:
    """Access-log lines matching `pattern` (the registry writes them just after answering)."""
    for _ in range(40):
        lines = [line for line in registry.access_log() if re.search(pattern, line)]
        if lines:
            return lines
        time.sleep(0.05)
    return []


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    registry = start_registry(tmp_path_factory.mktemp("plain"))
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def reference(plain: Registry, tmp_path_factory: pytest.TempPathFactory) -> LocalImage:
    """A two-file image that skopeo pushed as `app:1`; its layer is incompressible and big
    enough (300 KB) to be interrupted halfway."""
    image = local_image(tmp_path_factory.mktemp("ref"), ("noise", os.urandom(300_000)), ("hello", b"hi\n"))
    push_with_skopeo(image.layout, "1", f"{plain.host}/app:1")
    return image


@pytest.fixture
def client(plain: Registry) -> Iterator[RegistryClient]:
    with RegistryClient(plain.host) as made:
        yield made


# -- manifests ------------------------------------------------------------------------------------


def test_manifest_by_tag_is_the_pushed_manifest_and_its_digest(client: RegistryClient, reference: LocalImage) -> None:
    fetched = client.get_manifest("app", "1")
    assert fetched.body == reference.manifest
    assert fetched.digest == reference.digest
    assert fetched.media_type == mediatypes.OCI_MANIFEST


def test_manifest_by_digest_and_head_agree(client: RegistryClient, reference: LocalImage) -> None:
    assert client.get_manifest("app", str(reference.digest)).body == reference.manifest
    assert client.manifest_digest("app", "1") == reference.digest
    assert client.manifest_digest("app", "no-such-tag") is None


def test_skopeo_reads_the_same_manifest(plain: Registry, reference: LocalImage, tmp_path: Path) -> None:
    raw = subprocess.run(
        [str(SKOPEO), "inspect", "--raw", "--tls-verify=false", f"docker://{plain.host}/app:1"],
        check=True, capture_output=True, env=skopeo_environment(tmp_path),
    ).stdout  # fmt: skip
    assert digest_bytes(raw) == reference.digest


def test_missing_manifest_is_one_line_naming_registry_repository_and_tag(
    client: RegistryClient, plain: Registry
) -> None:
    with pytest.raises(RegistryError, match=rf"^{re.escape(plain.host)}/app: manifest nope not found$"):
        client.get_manifest("app", "nope")


def test_bad_repository_and_tag_are_refused_before_any_request(client: RegistryClient) -> None:
    with pytest.raises(RegistryError, match="must be lower case"):
        client.get_manifest("App", "1")
    with pytest.raises(RegistryError, match="is not a tag"):
        client.get_manifest("app", "../../v2/_catalog")


# -- blobs ----------------------------------------------------------------------------------------


def test_fetch_blob_writes_the_blob(client: RegistryClient, reference: LocalImage, tmp_path: Path) -> None:
    for descriptor in reference.descriptors():
        into = tmp_path / descriptor["digest"].replace(":", "-")
        client.fetch_blob("app", parse_digest(descriptor["digest"], "t"), descriptor["size"], str(into))
        assert into.read_bytes() == reference.blob_path(descriptor["digest"]).read_bytes()


def test_interrupted_download_resumes_with_range(
    client: RegistryClient, plain: Registry, reference: LocalImage, tmp_path: Path
) -> None:
    layer = reference.document["layers"][0]
    whole = reference.blob_path(layer["digest"]).read_bytes()
    into = tmp_path / "partial"
    into.write_bytes(whole[:100_000])
    client.fetch_blob("app", parse_digest(layer["digest"], "t"), layer["size"], str(into))
    assert into.read_bytes() == whole
    # The registry sent only the rest: a 206 of size - 100000 bytes.
    sent = wait_for_log(plain, rf'"GET /v2/app/blobs/{layer["digest"]} HTTP/1.1" 206 {len(whole) - 100_000} ')
    assert sent, plain.access_log()[-5:]


def test_complete_file_is_checked_and_not_downloaded_again(
    client: RegistryClient, plain: Registry, reference: LocalImage, tmp_path: Path
) -> None:
    config = reference.document["config"]
    into = tmp_path / "config"
    into.write_bytes(reference.blob_path(config["digest"]).read_bytes())
    before = len(plain.access_log())
    client.fetch_blob("app", parse_digest(config["digest"], "t"), config["size"], str(into))
    assert not [line for line in plain.access_log()[before:] if config["digest"] in line]


def test_partial_file_with_wrong_bytes_fails_the_digest_and_is_deleted(
    client: RegistryClient, reference: LocalImage, tmp_path: Path
) -> None:
    layer = reference.document["layers"][0]
    into = tmp_path / "partial"
    into.write_bytes(b"\0" * 1000)
    with pytest.raises(RegistryError, match=r"/app: blob sha256:\w{12} does not match its digest"):
        client.fetch_blob("app", parse_digest(layer["digest"], "t"), layer["size"], str(into))
    assert not into.exists()
    client.fetch_blob("app", parse_digest(layer["digest"], "t"), layer["size"], str(into))
    assert into.read_bytes() == reference.blob_path(layer["digest"]).read_bytes()


def test_blob_tampered_in_the_registry_storage_is_refused(
    client: RegistryClient, plain: Registry, tmp_path: Path
) -> None:
    image = local_image(tmp_path / "img", ("tampered", os.urandom(5000)))
    push_with_skopeo(image.layout, "1", f"{plain.host}/tampered:1")
    layer = image.document["layers"][0]
    stored = plain.blob_file(layer["digest"])
    damaged = bytearray(stored.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    stored.write_bytes(bytes(damaged))
    into = tmp_path / "layer"
    with pytest.raises(
        RegistryError, match=rf"^{re.escape(plain.host)}/tampered: blob sha256:\w+ does not match its digest"
    ):
        client.fetch_blob("tampered", parse_digest(layer["digest"], "t"), layer["size"], str(into))
    assert not into.exists()


def test_blob_exists(client: RegistryClient, reference: LocalImage) -> None:
    assert client.blob_exists("app", parse_digest(reference.document["config"]["digest"], "t"))
    assert not client.blob_exists("app", digest_bytes(b"never pushed"))


# -- pushing --------------------------------------------------------------------------------------


def push_image(client: RegistryClient, repository: str, image: LocalImage, tag: str, **options: Any) -> Digest:
    for descriptor in image.descriptors():
        path = image.blob_path(descriptor["digest"])
        client.push_blob(repository, parse_digest(descriptor["digest"], "t"), descriptor["size"], str(path), **options)
    return client.put_manifest(repository, tag, mediatypes.OCI_MANIFEST, image.manifest)


def test_pushed_image_pulls_back_byte_identical(client: RegistryClient, plain: Registry, tmp_path: Path) -> None:
    image = local_image(tmp_path / "img", ("pushed", os.urandom(20_000)), ("note", b"pushed by pysandbox\n"))
    assert push_image(client, "pushed/app", image, "v1") == image.digest
    with RegistryClient(plain.host) as fresh:
        fetched = fresh.get_manifest("pushed/app", "v1")
        assert (fetched.body, fetched.digest) == (image.manifest, image.digest)
        for descriptor in image.descriptors():
            into = tmp_path / descriptor["digest"]
            fresh.fetch_blob("pushed/app", parse_digest(descriptor["digest"], "t"), descriptor["size"], str(into))
            assert into.read_bytes() == image.blob_path(descriptor["digest"]).read_bytes()
    copied = tmp_path / "copied"
    subprocess.run(
        [str(SKOPEO), "copy", "--quiet", "--src-tls-verify=false", f"docker://{plain.host}/pushed/app:v1", f"oci:{copied}:v1"],
        check=True, capture_output=True, env=skopeo_environment(tmp_path),
    )  # fmt: skip
    assert json.loads((copied / "index.json").read_text())["manifests"][0]["digest"] == str(image.digest)


def test_big_blob_goes_up_in_patch_chunks(client: RegistryClient, plain: Registry, tmp_path: Path) -> None:
    data = os.urandom(200_000)
    path = tmp_path / "blob"
    path.write_bytes(data)
    digest = digest_bytes(data)
    client.push_blob("chunked", digest, len(data), str(path), chunk_size=64 * 1024)
    assert len(wait_for_log(plain, r'"PATCH /v2/chunked/blobs/uploads/\S+ HTTP/1.1" 202')) == 4
    into = tmp_path / "back"
    client.fetch_blob("chunked", digest, len(data), str(into))
    assert into.read_bytes() == data


def test_push_skips_a_blob_the_registry_has_and_mounts_across_repositories(
    client: RegistryClient, plain: Registry, tmp_path: Path
) -> None:
    data = os.urandom(1000)
    path = tmp_path / "blob"
    path.write_bytes(data)
    digest = digest_bytes(data)
    client.push_blob("mount/src", digest, len(data), str(path))
    client.push_blob("mount/src", digest, len(data), str(path))
    assert len(wait_for_log(plain, r'"PUT /v2/mount/src/blobs/uploads/')) == 1
    client.push_blob("mount/dst", digest, len(data), str(path), from_repository="mount/src")
    assert wait_for_log(plain, r'"POST /v2/mount/dst/blobs/uploads/\?mount=sha256%3A\w+&from=mount%2Fsrc HTTP/1.1" 201')
    assert not wait_for_log(plain, r'"PUT /v2/mount/dst/')
    assert client.blob_exists("mount/dst", digest)


@pytest.mark.parametrize("chunk_size", [64 * 1024 * 1024, 8 * 1024 * 1024])
def test_upload_is_never_held_in_memory(client: RegistryClient, tmp_path: Path, chunk_size: int) -> None:
    import tracemalloc

    data = os.urandom(24 * 1024 * 1024)
    path = tmp_path / "blob"
    path.write_bytes(data)
    digest = digest_bytes(data)
    del data
    client.blob_exists("big", digest_bytes(b"warm up: scheme and connection"))
    tracemalloc.start()
    try:
        client.push_blob(f"big{chunk_size}", digest, path.stat().st_size, str(path), chunk_size=chunk_size)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert client.blob_exists(f"big{chunk_size}", digest)
    assert peak < 2 * 1024 * 1024, peak


def test_push_refuses_a_file_of_the_wrong_size(client: RegistryClient, tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"0123456789")
    with pytest.raises(RegistryError, match=r"blob is 10 bytes, the descriptor says 12$"):
        client.push_blob("app", digest_bytes(b"0123456789"), 12, str(path))


def test_registry_refuses_a_blob_whose_digest_is_wrong(client: RegistryClient, tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"0123456789")
    with pytest.raises(RegistryError, match=r"upload of blob sha256:\w+ failed: 400 .*DIGEST_INVALID"):
        client.push_blob("app", digest_bytes(b"something else"), 10, str(path))


# -- listings -------------------------------------------------------------------------------------


def test_tags_of_a_repository(client: RegistryClient, reference: LocalImage) -> None:
    """Registry 2.8 lists a repository's tags in one page, in no order, whatever `n` asks."""
    names = [f"t{i}" for i in range(7)]
    for name in names:
        assert client.put_manifest("app", name, mediatypes.OCI_MANIFEST, reference.manifest) == reference.digest
    assert sorted(client.tags("app", page_size=2)) == sorted(["1", *names])
    with pytest.raises(RegistryError, match=r"/nothing: tag list not found$"):
        client.tags("nothing")


def test_referrers_from_the_fallback_tag(
    client: RegistryClient, plain: Registry, reference: LocalImage, tmp_path: Path
) -> None:
    """Registry 2.8 has no referrers API (404): the client reads the `sha256-<hex>` index."""
    subject = {"mediaType": mediatypes.OCI_MANIFEST, "digest": str(reference.digest), "size": len(reference.manifest)}
    empty = b"{}"
    empty_path = tmp_path / "empty"
    empty_path.write_bytes(empty)
    client.push_blob("app", digest_bytes(empty), 2, str(empty_path))
    referrers = []
    for kind in ("application/vnd.example.signature", "application/vnd.example.sbom"):
        artifact = json.dumps({
            "schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST, "artifactType": kind,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": str(digest_bytes(empty)), "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": str(digest_bytes(empty)), "size": 2}],
            "subject": subject,
        }).encode()  # fmt: skip
        digest = client.put_manifest("app", str(digest_bytes(artifact)), mediatypes.OCI_MANIFEST, artifact)
        referrers.append(
            {"mediaType": mediatypes.OCI_MANIFEST, "digest": str(digest), "size": len(artifact), "artifactType": kind}
        )
    index = json.dumps({"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": referrers}).encode()
    client.put_manifest("app", referrers_tag(reference.digest), mediatypes.OCI_INDEX, index)

    assert client.referrers("app", reference.digest) == referrers
    assert client.referrers("app", reference.digest, "application/vnd.example.sbom") == referrers[1:]
    assert client.referrers("app", digest_bytes(b"no referrers")) == []
    assert wait_for_log(plain, rf'"GET /v2/app/referrers/{reference.digest} HTTP/1.1" 404')


# -- token authentication -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    folder = tmp_path_factory.mktemp("token")
    tokens = TokenServer(folder / "tokens")
    server = serve_in_thread(tokens.handle)
    tokens.port = server.port
    registry = start_registry(folder / "registry", tokens=tokens)
    yield registry
    registry.stop()
    server.stop()


@pytest.fixture(scope="module")
def token_image(token_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> LocalImage:
    image = local_image(tmp_path_factory.mktemp("token-image"), ("secret", b"for alice only\n"))
    with RegistryClient(token_registry.host, credentials=Credentials("alice", "s3cret")) as alice:
        push_image(alice, "private/app", image, "1")
    return image


def test_token_auth_anonymous_is_refused_clearly(token_registry: Registry, token_image: LocalImage) -> None:
    with RegistryClient(token_registry.host) as anonymous, pytest.raises(RegistryError) as refused:
        anonymous.get_manifest("private/app", "1")
    assert str(refused.value) == (
        f"{token_registry.host}/private/app: authentication required: no credentials for {token_registry.host}"
    )


def test_token_auth_right_credentials_pull_with_one_token_per_scope(
    token_registry: Registry, token_image: LocalImage, tmp_path: Path
) -> None:
    tokens = token_registry.tokens
    assert tokens is not None
    before = len(tokens.requests)
    with RegistryClient(token_registry.host, credentials=Credentials("alice", "s3cret")) as alice:
        assert alice.get_manifest("private/app", "1").digest == token_image.digest
        for descriptor in token_image.descriptors():
            into = tmp_path / descriptor["digest"]
            alice.fetch_blob("private/app", parse_digest(descriptor["digest"], "t"), descriptor["size"], str(into))
        assert alice.manifest_digest("private/app", "1") == token_image.digest
    asked = tokens.requests[before:]
    assert [request["query"]["scope"] for request in asked] == [["repository:private/app:pull"]]


def test_token_auth_wrong_password_is_refused_clearly(token_registry: Registry, token_image: LocalImage) -> None:
    tokens = token_registry.tokens
    assert tokens is not None
    mallory = RegistryClient(token_registry.host, credentials=Credentials("alice", "wrong"))
    with mallory, pytest.raises(RegistryError) as refused:
        mallory.get_manifest("private/app", "1")
    assert str(refused.value) == (
        f"{token_registry.host}/private/app: the token server {tokens.realm} refused the credentials of alice (401)"
    )


def test_credentials_from_docker_config(
    token_registry: Registry, token_image: LocalImage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import base64

    config = tmp_path / "docker" / "config.json"
    config.parent.mkdir()
    auth = base64.b64encode(b"alice:s3cret").decode()
    config.write_text(json.dumps({"auths": {token_registry.host: {"auth": auth}}}))
    config.chmod(0o600)
    monkeypatch.setenv("DOCKER_CONFIG", str(config.parent))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    credentials = credentials_for(token_registry.host)
    with RegistryClient(token_registry.host, credentials=credentials) as client:
        assert client.get_manifest("private/app", "1").digest == token_image.digest
        client.ping()
    config.chmod(0o666)
    with pytest.raises(RegistryError, match="other users can write"):
        credentials_for(token_registry.host)


def test_login_check_with_ping(token_registry: Registry) -> None:
    with RegistryClient(token_registry.host, credentials=Credentials("alice", "s3cret")) as alice:
        alice.ping()
    mallory = RegistryClient(token_registry.host, credentials=Credentials("alice", "nope"))
    with mallory, pytest.raises(RegistryError, match="refused the credentials of alice"):
        mallory.ping()


# -- TLS ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    folder = tmp_path_factory.mktemp("tls")
    registry = start_registry(folder / "registry", tls=make_pki(folder / "pki"))
    yield registry
    registry.stop()


def test_tls_verified_against_the_test_ca(tls_registry: Registry, tmp_path: Path) -> None:
    assert tls_registry.tls is not None
    image = local_image(tmp_path, ("tls", b"over TLS\n"))
    with RegistryClient(tls_registry.host, ca_file=str(tls_registry.tls.ca_file)) as client:
        assert push_image(client, "app", image, "1") == image.digest
        assert client.get_manifest("app", "1").body == image.manifest


def test_tls_unknown_ca_is_refused_and_not_retried_over_http(tls_registry: Registry) -> None:
    with RegistryClient(tls_registry.host) as client, pytest.raises(RegistryError) as refused:
        client.tags("app")
    assert str(refused.value).startswith(
        f"{tls_registry.host}: the TLS certificate of {tls_registry.host} is not trusted ("
    )
    # Refused as a certificate problem, not retried over plain http (that error would name both).
    assert str(refused.value).endswith("); give the registry's CA certificate, or turn TLS verification off")


def test_tls_verify_off_still_speaks_tls(tls_registry: Registry, tmp_path: Path) -> None:
    image = local_image(tmp_path, ("insecure", b"unverified\n"))
    with RegistryClient(tls_registry.host, tls_verify=False) as client:
        push_image(client, "unverified", image, "1")
        assert client.get_manifest("unverified", "1").digest == image.digest


# -- a hostile server -----------------------------------------------------------------------------


class Hostile:
    """Serves fixed answers by path, ignores Range, and records the requests it saw."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.seen: list[tuple[str, str, dict[str, str]]] = []

    def handle(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        """Routes by whole path (with its query) first, then by path alone."""
        self.seen.append((handler.command, handler.path, dict(handler.headers)))
        missing = (404, {}, b'{"errors":[]}')
        status, headers, body = self.routes.get(handler.path) or self.routes.get(handler.path.split("?")[0], missing)
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        if "Content-Length" not in headers:
            handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)


@pytest.fixture
def hostile() -> Iterator[tuple[Hostile, str]]:
    server = Hostile()
    running = serve_in_thread(server.handle)
    server.routes["/v2/"] = (200, {}, b"{}")
    yield server, f"127.0.0.1:{running.port}"
    running.stop()


def test_server_that_ignores_range_is_read_from_the_start(hostile: tuple[Hostile, str], tmp_path: Path) -> None:
    server, host = hostile
    blob = os.urandom(5000)
    digest = digest_bytes(blob)
    server.routes[f"/v2/app/blobs/{digest}"] = (200, {}, blob)
    into = tmp_path / "blob"
    into.write_bytes(blob[:2000])
    with RegistryClient(host) as client:
        client.fetch_blob("app", digest, len(blob), str(into))
    assert into.read_bytes() == blob
    assert server.seen[-1][2].get("Range") == "bytes=2000-"


def test_transfer_cut_short_keeps_the_part_for_the_next_try(hostile: tuple[Hostile, str], tmp_path: Path) -> None:
    server, host = hostile
    blob = os.urandom(300_000)
    digest = digest_bytes(blob)
    server.routes[f"/v2/app/blobs/{digest}"] = (200, {"Content-Length": "300000"}, blob[:200_000])
    into = tmp_path / "blob"
    with RegistryClient(host) as client, pytest.raises(RegistryError) as refused:
        client.fetch_blob("app", digest, len(blob), str(into))
    assert str(refused.value).startswith(f"{host}/app: download of blob {digest.short()} interrupted (")
    assert str(refused.value).endswith("); the part is kept and the next try resumes it")
    kept = into.read_bytes()
    assert 100_000 < len(kept) <= 200_000 and blob.startswith(kept)  # whole 64 KiB pieces
    server.routes[f"/v2/app/blobs/{digest}"] = (
        206,
        {"Content-Range": f"bytes {len(kept)}-299999/300000"},
        blob[len(kept) :],
    )
    with RegistryClient(host) as client:
        client.fetch_blob("app", digest, len(blob), str(into))
    assert into.read_bytes() == blob
    assert server.seen[-1][2].get("Range") == f"bytes={len(kept)}-"


def test_range_answer_from_elsewhere_in_the_blob_is_refused(hostile: tuple[Hostile, str], tmp_path: Path) -> None:
    server, host = hostile
    blob = os.urandom(5000)
    digest = digest_bytes(blob)
    server.routes[f"/v2/app/blobs/{digest}"] = (206, {"Content-Range": "bytes 0-4999/5000"}, blob)
    into = tmp_path / "blob"
    into.write_bytes(blob[:1000])
    with RegistryClient(host) as client, pytest.raises(RegistryError) as refused:
        client.fetch_blob("app", digest, len(blob), str(into))
    assert str(refused.value) == (
        f"{host}/app: blob {digest.short()}: asked for bytes from 1000, the registry sent range 'bytes 0-4999/5000'"
    )


def test_blob_is_never_held_in_memory(hostile: tuple[Hostile, str], tmp_path: Path) -> None:
    import tracemalloc

    server, host = hostile
    blob = bytes(32 * 1024 * 1024)
    digest = digest_bytes(blob)
    server.routes[f"/v2/app/blobs/{digest}"] = (200, {}, blob)
    into = tmp_path / "blob"
    with RegistryClient(host) as client:
        client.blob_exists("app", digest_bytes(b"warm up: scheme and connection"))
        tracemalloc.start()
        try:
            client.fetch_blob("app", digest, len(blob), str(into))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert into.stat().st_size == len(blob)
    assert peak < 2 * 1024 * 1024, peak


def test_blob_of_the_wrong_size_is_refused_and_deleted(hostile: tuple[Hostile, str], tmp_path: Path) -> None:
    server, host = hostile
    blob = b"0123456789"
    server.routes[f"/v2/app/blobs/{digest_bytes(blob + b'ab')}"] = (200, {}, blob)
    into = tmp_path / "blob"
    with RegistryClient(host) as client, pytest.raises(RegistryError) as refused:
        client.fetch_blob("app", digest_bytes(blob + b"ab"), 12, str(into))
    assert (
        str(refused.value) == f"{host}/app: blob {digest_bytes(blob + b'ab').short()} is 10 bytes, the manifest says 12"
    )
    assert not into.exists()


def test_blob_longer_than_declared_is_cut_off(hostile: tuple[Hostile, str], tmp_path: Path) -> None:
    server, host = hostile
    digest = digest_bytes(b"short")
    server.routes[f"/v2/app/blobs/{digest}"] = (200, {}, b"x" * 100_000)
    into = tmp_path / "blob"
    with (
        RegistryClient(host) as client,
        pytest.raises(RegistryError, match="is more than the 5 bytes the manifest says"),
    ):
        client.fetch_blob("app", digest, 5, str(into))
    assert not into.exists()


def test_manifest_whose_stated_digest_is_a_lie_is_refused(hostile: tuple[Hostile, str]) -> None:
    server, host = hostile
    body = b'{"schemaVersion":2}'
    lie = digest_bytes(b"another manifest")
    server.routes["/v2/app/manifests/1"] = (
        200,
        {"Content-Type": mediatypes.OCI_MANIFEST, "Docker-Content-Digest": str(lie)},
        body,
    )
    server.routes[f"/v2/app/manifests/{lie}"] = (200, {"Content-Type": mediatypes.OCI_MANIFEST}, body)
    with RegistryClient(host) as client:
        with pytest.raises(
            RegistryError, match=rf"^{host}/app: manifest 1: the registry says {lie}, the bytes hash to sha256:"
        ):
            client.get_manifest("app", "1")
        with pytest.raises(RegistryError, match=rf"^{host}/app: manifest {lie} does not match its digest"):
            client.get_manifest("app", str(lie))


def test_huge_manifest_is_refused(hostile: tuple[Hostile, str]) -> None:
    server, host = hostile
    server.routes["/v2/app/manifests/1"] = (
        200,
        {"Content-Type": mediatypes.OCI_MANIFEST},
        b" " * (4 * 1024 * 1024 + 1),
    )
    with RegistryClient(host) as client, pytest.raises(RegistryError, match="more than the 4194304 allowed"):
        client.get_manifest("app", "1")


def test_redirect_to_another_host_does_not_carry_the_credentials(hostile: tuple[Hostile, str], tmp_path: Path) -> None:
    """A Basic-auth registry on loopback http redirects a blob to another server: the blob
    comes from there, and the password does not go with it."""
    server, _ = hostile
    storage = Hostile()
    elsewhere = serve_in_thread(storage.handle)
    try:
        blob = b"redirected blob"
        digest = digest_bytes(blob)
        storage.routes["/storage/blob"] = (200, {}, blob)
        server.routes[f"/v2/app/blobs/{digest}"] = (307, {"Location": f"{elsewhere.url}/storage/blob"}, b"")
        asked: list[str] = []

        def basic_only(handler: http.server.BaseHTTPRequestHandler) -> None:
            asked.append(handler.headers.get("Authorization", ""))
            if not handler.headers.get("Authorization"):
                handler.send_response(401)
                handler.send_header("WWW-Authenticate", 'Basic realm="test"')
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
            server.handle(handler)

        registry = serve_in_thread(basic_only)
        try:
            into = tmp_path / "blob"
            with RegistryClient(f"127.0.0.1:{registry.port}", credentials=Credentials("alice", "s3cret")) as client:
                client.fetch_blob("app", digest, len(blob), str(into))
            assert into.read_bytes() == blob
            assert any(value.startswith("Basic ") for value in asked)
            assert [headers.get("Authorization") for _, _, headers in storage.seen] == [None]
        finally:
            registry.stop()
    finally:
        elsewhere.stop()


def test_a_redirect_target_that_asks_for_credentials_gets_none(hostile: tuple[Hostile, str], tmp_path: Path) -> None:
    """The registry redirects a blob to a server that answers 401 with a Basic challenge:
    the registry's credentials are not sent there (found by review)."""
    server, host = hostile
    seen: list[str] = []
    realm: list[str] = []

    def asks(handler: http.server.BaseHTTPRequestHandler) -> None:  # a token realm of its own choosing
        seen.append(handler.headers.get("Authorization", ""))
        handler.send_response(401)
        handler.send_header("WWW-Authenticate", f'Bearer realm="{realm[0]}",service="s"')
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    elsewhere = serve_in_thread(asks)
    realm.append(f"{elsewhere.url}/token")
    try:
        digest = digest_bytes(b"never")
        server.routes[f"/v2/app/blobs/{digest}"] = (307, {"Location": f"{elsewhere.url}/blob"}, b"")
        with (
            RegistryClient(host, credentials=Credentials("alice", "s3cret")) as client,
            pytest.raises(RegistryError, match="asks for credentials; they go to the registry only"),
        ):
            client.fetch_blob("app", digest, 5, str(tmp_path / "blob"))
        assert seen and all(value == "" for value in seen)
    finally:
        elsewhere.stop()


def test_tags_follow_the_link_pages(hostile: tuple[Hostile, str]) -> None:
    server, host = hostile
    pages = {
        "/v2/app/tags/list?n=2": ["a", "b"],
        "/v2/app/tags/list?n=2&last=b": ["c", "d"],
        "/v2/app/tags/list?n=2&last=d": ["e"],
    }
    paths = list(pages)
    for i, (path, tags) in enumerate(pages.items()):
        headers = {"Link": f'<{paths[i + 1]}>; rel="next"'} if i + 1 < len(paths) else {}
        server.routes[path] = (200, headers, json.dumps({"name": "app", "tags": tags}).encode())
    with RegistryClient(host) as client:
        assert client.tags("app", page_size=2) == ["a", "b", "c", "d", "e"]


def test_tag_pages_may_not_lead_to_another_server(hostile: tuple[Hostile, str]) -> None:
    server, host = hostile
    elsewhere = "http://127.0.0.2:1/v2/app/tags/list?last=a"
    server.routes["/v2/app/tags/list"] = (200, {"Link": f'<{elsewhere}>; rel="next"'}, b'{"tags":["a"]}')
    with RegistryClient(host) as client, pytest.raises(RegistryError) as refused:
        client.tags("app")
    assert str(refused.value) == f"{host}/app: tag list continues at {elsewhere}, another server"


@pytest.fixture
def not_loopback() -> Iterator[tuple[Hostile, str]]:
    """A plain-http server at 127.0.0.2, which the client treats as another machine (only
    localhost, 127.0.0.1 and ::1 count as this one)."""
    server = Hostile()
    server.routes["/v2/"] = (200, {}, b"{}")
    running = serve_in_thread(server.handle, host="127.0.0.2")
    yield server, f"127.0.0.2:{running.port}"
    running.stop()


def test_plain_http_elsewhere_only_when_tls_verification_is_off(not_loopback: tuple[Hostile, str]) -> None:
    server, host = not_loopback
    server.routes["/v2/app/tags/list"] = (200, {}, b'{"tags":["1"]}')
    with RegistryClient(host) as client, pytest.raises(RegistryError) as refused:
        client.tags("app")
    assert str(refused.value).startswith(f"{host}: TLS with {host} failed (")
    with RegistryClient(host, tls_verify=False) as client:
        assert client.tags("app") == ["1"]


def test_password_is_not_sent_over_plain_http_elsewhere(not_loopback: tuple[Hostile, str]) -> None:
    server, host = not_loopback
    server.routes["/v2/app/tags/list"] = (401, {"WWW-Authenticate": 'Basic realm="x"'}, b"")
    client = RegistryClient(host, tls_verify=False, credentials=Credentials("alice", "s3cret"))
    with client, pytest.raises(RegistryError) as refused:
        client.tags("app")
    assert str(refused.value) == f"{host}/app: refusing to send the password for {host} over plain http"
    assert not [headers for _, _, headers in server.seen if "Authorization" in headers]


def test_token_realm_over_plain_http_elsewhere_gets_no_credentials(hostile: tuple[Hostile, str]) -> None:
    server, host = hostile
    challenge = 'Bearer realm="http://127.0.0.2:9/token",service="s",scope="repository:app:pull"'
    server.routes["/v2/app/tags/list"] = (401, {"WWW-Authenticate": challenge}, b"")
    with (
        RegistryClient(host, credentials=Credentials("alice", "s3cret")) as client,
        pytest.raises(RegistryError) as refused,
    ):
        client.tags("app")
    assert str(refused.value) == (
        f"{host}/app: refusing to send the credentials for {host} to http://127.0.0.2:9/token over plain http"
    )


def test_proxy_from_the_environment_and_no_proxy(hostile: tuple[Hostile, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP(S)_PROXY carry the requests to a registry elsewhere; NO_PROXY exempts a host."""
    proxy, proxy_host = hostile
    proxy.routes["http://127.0.0.2:9/v2/"] = (200, {}, b"{}")
    proxy.routes["http://127.0.0.2:9/v2/app/tags/list"] = (200, {}, b'{"tags":["via-proxy"]}')
    monkeypatch.setenv("HTTP_PROXY", f"http://{proxy_host}")
    monkeypatch.setenv("HTTPS_PROXY", f"http://{proxy_host}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with RegistryClient("127.0.0.2:9", tls_verify=False) as client:
        assert client.tags("app") == ["via-proxy"]
    assert proxy.seen[-1][:2] == ("GET", "http://127.0.0.2:9/v2/app/tags/list")
    monkeypatch.setenv("NO_PROXY", "127.0.0.2")
    with (
        RegistryClient("127.0.0.2:9", tls_verify=False) as client,
        pytest.raises(RegistryError, match="cannot reach the registry"),
    ):
        client.tags("app")
