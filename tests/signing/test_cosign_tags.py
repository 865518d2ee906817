"""cosign's tag fallbacks in an OCI layout: the legacy `sha256-<hex>.sig` manifest (simple
signing, signature in layer annotations) and the `sha256-<hex>` referrers tag index. Real
layouts (images/writer), real keys, every blob read through the digest check."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from pysbx.cli.signing_cmd import app
from pysbx.images.digest import parse_digest
from pysbx.images.image import Image, blob_path, open_image
from pysbx.policies.model import Identity, SigningPolicy
from pysbx.signing.bundle import BUNDLE_V01, parse_bundle
from pysbx.signing.cosign_tag import (
    CERTIFICATE_ANNOTATION,
    CHAIN_ANNOTATION,
    REF_NAME_ANNOTATION,
    REKOR_BUNDLE_ANNOTATION,
    SIGNATURE_ANNOTATION,
    bundle_from_signature_layer,
    referrers_tag,
    signature_tag,
)
from pysbx.signing.errors import VerificationError
from pysbx.signing.keys import load_private_key, sign_bytes
from pysbx.signing.locate import find_bundles
from pysbx.signing.payload import SIMPLE_SIGNING_MEDIA_TYPE, simple_signing_payload
from pysbx.signing.sign import attach_referrer, attach_signature_tag, put_blob, sign_image
from pysbx.signing.verify import verify_image
from tests.imagekit import T, image_of, write_image
from tests.signing.conftest import write_key_pairs


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    return write_key_pairs(tmp_path, "alice", "bob")


def layout_image(tmp_path: Path, content: bytes = b"hi\n") -> Image:
    folder = tmp_path / f"image-{len(content)}"
    folder.mkdir()
    return open_image(write_image(image_of([T("app", data=content)]), folder, "oci-layout") + ":1")


def trusting(*keys: Path) -> SigningPolicy:
    return SigningPolicy(required=True, keys=tuple(str(k.with_suffix(".pub")) for k in keys))


def tag_with_key(image: Image, key: Path) -> Image:
    attach_signature_tag(image, sign_image(image, load_private_key(key.with_suffix(".key")), "message"))
    return open_image(image.source)  # reopened: the store sees the new index.json


def signature_layers(image: Image) -> list[dict[str, object]]:
    index = json.loads((Path(image.store.label) / "index.json").read_text())
    entry = next(
        e for e in index["manifests"] if e.get("annotations", {}).get(REF_NAME_ANNOTATION, "").endswith(".sig")
    )
    manifest = json.loads((Path(image.store.label) / blob_path_of(entry["digest"])).read_text())
    layers: list[dict[str, object]] = manifest["layers"]
    return layers


def blob_path_of(digest: str) -> str:
    return blob_path(parse_digest(digest, "test"))


def add_signature_layer(image: Image, payload: bytes, annotations: dict[str, str]) -> Image:
    """A `.sig` manifest with one hand-made layer, listed under the image's signature tag."""
    layout = Path(image.store.label)
    layer = put_blob(layout, payload, SIMPLE_SIGNING_MEDIA_TYPE) | {"annotations": annotations}
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": put_blob(layout, b"{}", "application/vnd.oci.image.config.v1+json"),
        "layers": [layer],
    }
    descriptor = put_blob(layout, json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json")
    descriptor["annotations"] = {REF_NAME_ANNOTATION: signature_tag(str(image.manifest_digest))}
    index = json.loads((layout / "index.json").read_text())
    index["manifests"].append(descriptor)
    (layout / "index.json").write_text(json.dumps(index))
    return open_image(image.source)


def test_the_tag_names_follow_cosign() -> None:
    assert signature_tag("sha256:" + "ab" * 32) == "sha256-" + "ab" * 32 + ".sig"
    assert referrers_tag("sha256:" + "ab" * 32) == "sha256-" + "ab" * 32


def test_a_key_signature_under_the_sig_tag_verifies(tmp_path: Path, keys: dict[str, Path]) -> None:
    image = tag_with_key(layout_image(tmp_path), keys["alice"])
    verdict = verify_image(image, trusting(keys["alice"]))
    assert verdict.verified, verdict.reason
    assert (verdict.bundle_origin or "").startswith("cosign signature tag sha256-")
    assert verdict.signer and verdict.signer.startswith("key sha256:")


def test_signatures_accumulate_under_the_tag_and_any_trusted_one_verifies(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    image = tag_with_key(tag_with_key(layout_image(tmp_path), keys["alice"]), keys["bob"])
    assert len(signature_layers(image)) == 2
    assert verify_image(image, trusting(keys["bob"])).verified
    assert verify_image(image, trusting(keys["alice"])).verified


def test_a_sig_layer_by_an_untrusted_key_is_refused(tmp_path: Path, keys: dict[str, Path]) -> None:
    image = tag_with_key(layout_image(tmp_path), keys["alice"])
    verdict = verify_image(image, trusting(keys["bob"]))
    assert not verdict.verified and verdict.refusal == "untrusted-key"


def test_a_wrong_signature_in_the_annotation_is_refused(tmp_path: Path, keys: dict[str, Path]) -> None:
    image = layout_image(tmp_path)
    payload = simple_signing_payload(str(image.manifest_digest), "example/app:1")
    signature = sign_bytes(load_private_key(keys["alice"].with_suffix(".key")), payload + b" ")  # not this payload
    image = add_signature_layer(image, payload, {SIGNATURE_ANNOTATION: base64.b64encode(signature).decode()})
    verdict = verify_image(image, trusting(keys["alice"]))
    assert not verdict.verified and verdict.refusal in ("signature", "untrusted-key")


def test_a_payload_naming_another_digest_is_refused_as_a_replay(tmp_path: Path, keys: dict[str, Path]) -> None:
    image = layout_image(tmp_path)
    other = layout_image(tmp_path, b"another image\n")
    payload = simple_signing_payload(str(other.manifest_digest), "example/app:1")
    signature = sign_bytes(load_private_key(keys["alice"].with_suffix(".key")), payload)
    image = add_signature_layer(image, payload, {SIGNATURE_ANNOTATION: base64.b64encode(signature).decode()})
    verdict = verify_image(image, trusting(keys["alice"]))
    assert not verdict.verified and verdict.refusal == "replay"
    assert str(other.manifest_digest) in (verdict.reason or "")


def test_a_payload_blob_that_does_not_match_its_digest_is_refused(tmp_path: Path, keys: dict[str, Path]) -> None:
    image = tag_with_key(layout_image(tmp_path), keys["alice"])
    digest = str(signature_layers(image)[0]["digest"])
    blob = Path(image.store.label) / blob_path_of(digest)
    tampered = blob.read_bytes().replace(b"docker-reference", b"docker-referencf")
    assert tampered != blob.read_bytes()
    blob.write_bytes(tampered)
    verdict = verify_image(image, trusting(keys["alice"]))
    assert not verdict.verified and verdict.refusal == "malformed"
    assert "does not match its digest" in (verdict.reason or "")


def test_a_layer_without_a_signature_annotation_is_malformed(tmp_path: Path, keys: dict[str, Path]) -> None:
    image = layout_image(tmp_path)
    image = add_signature_layer(image, simple_signing_payload(str(image.manifest_digest), "example/app:1"), {})
    verdict = verify_image(image, trusting(keys["alice"]))
    assert verdict.refusal == "malformed" and SIGNATURE_ANNOTATION in (verdict.reason or "")


def test_a_referrer_under_the_referrers_tag_index_verifies(tmp_path: Path, keys: dict[str, Path]) -> None:
    image = layout_image(tmp_path)
    attach_referrer(image, sign_image(image, load_private_key(keys["alice"].with_suffix(".key")), "dsse"))
    # Move the referrer out of index.json into an index under the `sha256-<hex>` tag.
    layout = Path(image.store.label)
    index = json.loads((layout / "index.json").read_text())
    referrer = next(e for e in index["manifests"] if e.get("artifactType"))
    index["manifests"].remove(referrer)
    tag_index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [referrer]}
    descriptor = put_blob(layout, json.dumps(tag_index).encode(), "application/vnd.oci.image.index.v1+json")
    descriptor["annotations"] = {REF_NAME_ANNOTATION: referrers_tag(str(image.manifest_digest))}
    index["manifests"].append(descriptor)
    (layout / "index.json").write_text(json.dumps(index))
    image = open_image(image.source)
    verdict = verify_image(image, trusting(keys["alice"]))
    assert verdict.verified, verdict.reason
    assert verdict.bundle_origin == f"OCI referrer {referrer['digest']}"


def rekor_annotation() -> str:
    body = {"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {}}
    payload = {
        "body": base64.b64encode(json.dumps(body).encode()).decode(),
        "integratedTime": 1_700_000_000,
        "logIndex": 42,
        "logID": "c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d",
    }
    return json.dumps({"SignedEntryTimestamp": base64.b64encode(b"set").decode(), "Payload": payload})


def test_a_rekor_bundle_annotation_becomes_a_v01_log_entry_with_its_promise() -> None:
    bundle = bundle_from_signature_layer(
        b"payload",
        {SIGNATURE_ANNOTATION: base64.b64encode(b"sig").decode(), REKOR_BUNDLE_ANNOTATION: rekor_annotation()},
        "t",
    )
    parsed = parse_bundle(bundle)
    assert parsed.media_type == BUNDLE_V01 and parsed.material == "public-key" and parsed.key_hint is None
    (entry,) = parsed.tlog_entries
    assert entry["logIndex"] == "42" and entry["integratedTime"] == "1700000000"
    assert entry["kindVersion"] == {"kind": "hashedrekord", "version": "0.0.1"}
    assert base64.b64decode(entry["logId"]["keyId"]).hex().startswith("c0d23d6a")
    assert entry["inclusionPromise"]["signedEntryTimestamp"] == base64.b64encode(b"set").decode()
    with pytest.raises(VerificationError) as broken:
        bundle_from_signature_layer(b"p", {SIGNATURE_ANNOTATION: "c2ln", REKOR_BUNDLE_ANNOTATION: "{}"}, "t")
    assert broken.value.kind == "malformed"


def certificate_pair() -> tuple[str, str]:
    """A self-signed root and a leaf it issued, as PEM: the shape of cosign's annotations."""
    root_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)

    def issue(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(minutes=10))
            .sign(root_key, hashes.SHA256())
        )

    pem = serialization.Encoding.PEM
    root, leaf = issue("root", root_key, "root"), issue("leaf", leaf_key, "root")
    return leaf.public_bytes(pem).decode(), root.public_bytes(pem).decode()


def test_a_keyless_sig_layer_is_refused_and_says_what_cannot_be_checked(tmp_path: Path) -> None:
    image = layout_image(tmp_path)
    leaf, chain = certificate_pair()
    annotations = {
        SIGNATURE_ANNOTATION: base64.b64encode(b"signature").decode(),
        CERTIFICATE_ANNOTATION: leaf,
        CHAIN_ANNOTATION: chain,
        REKOR_BUNDLE_ANNOTATION: rekor_annotation(),
    }
    image = add_signature_layer(image, simple_signing_payload(str(image.manifest_digest), "example/app:1"), annotations)
    (found,) = find_bundles(image)
    parsed = parse_bundle(found.bundle)
    assert parsed.material == "x509-chain"
    assert len(json.loads(found.bundle)["verificationMaterial"]["x509CertificateChain"]["certificates"]) == 1  # no root
    policy = SigningPolicy(required=True, identities=(Identity(issuer="https://issuer.example", subject="a@b.c"),))
    verdict = verify_image(image, policy)
    assert not verdict.verified and "no inclusion proof" in (verdict.reason or "")


def test_sign_cli_writes_the_cosign_tag_and_verify_finds_it(tmp_path: Path, keys: dict[str, Path]) -> None:
    image = layout_image(tmp_path)
    runner = CliRunner()
    signed = runner.invoke(app, ["sign", image.source, "--key", str(keys["alice"].with_suffix(".key")), "--cosign-tag"])
    assert signed.exit_code == 0, signed.output
    assert "cosign's signature tag" in signed.stdout
    verified = runner.invoke(app, ["verify", image.source, "--key", str(keys["alice"].with_suffix(".pub"))])
    assert verified.exit_code == 0, verified.output
    assert "bundle: cosign signature tag sha256-" in verified.stdout
    folder = image.source.rpartition(":")[0] if ":" in Path(image.source).name else image.source
    assert open_image(folder).manifest_digest == image.manifest_digest  # the .sig tag is no second image


def test_the_cosign_tag_needs_a_layout_folder(tmp_path: Path, keys: dict[str, Path]) -> None:
    archive = write_image(image_of([T("app", data=b"hi\n")]), tmp_path, "oci-archive")
    result = CliRunner().invoke(app, ["sign", archive, "--key", str(keys["alice"].with_suffix(".key")), "--cosign-tag"])
    assert result.exit_code == 2 and "only an OCI layout folder" in result.stderr
