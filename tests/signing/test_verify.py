"""Signing and verifying images with public keys, offline: each layout signs and verifies,
and each tampering is refused with its own reason."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from pysbx.images.errors import ImageError
from pysbx.images.extract import unpack_image
from pysbx.images.image import Image, blob_path, open_image
from pysbx.policies.model import SigningPolicy
from pysbx.signing.bundle import DsseEnvelope, public_key_bundle
from pysbx.signing.errors import VerificationError
from pysbx.signing.keys import load_private_key
from pysbx.signing.sign import attach_referrer, sign_image, write_bundle_file
from pysbx.signing.verify import verify_image
from tests.imagekit import T, image_of, write_image
from tests.signing.conftest import write_key_pairs


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    return write_key_pairs(tmp_path, "alice", "mallory")


def policy_for(*keys: Path) -> SigningPolicy:
    return SigningPolicy(required=True, keys=tuple(str(k.with_suffix(".pub")) for k in keys))


def build(tmp_path: Path, layout: str, content: bytes = b"hello\n") -> Image:
    folder = tmp_path / f"{layout}-{len(content)}"
    folder.mkdir()
    return open_image(write_image(image_of([T("app", data=content)]), folder, layout))


def sign_to_file(image: Image, key: Path, out: Path, kind: str = "dsse") -> Path:
    signed = sign_image(image, load_private_key(key.with_suffix(".key")), kind)  # type: ignore[arg-type]
    write_bundle_file(signed, out)
    return out


@pytest.mark.parametrize("layout", ["oci-layout", "oci-archive", "docker-legacy", "docker-25"])
@pytest.mark.parametrize("kind", ["dsse", "message"])
def test_a_sidecar_bundle_verifies_in_every_layout(
    tmp_path: Path, keys: dict[str, Path], layout: str, kind: str
) -> None:
    image = build(tmp_path, layout)
    source = Path(image.source)
    sign_to_file(image, keys["alice"], source.with_name(source.name + ".sigstore.json"), kind)
    verdict = verify_image(image, policy_for(keys["alice"]))
    assert verdict.verified, verdict.reason
    assert verdict.manifest_digest == str(image.manifest_digest)
    assert verdict.signer is not None and verdict.signer.startswith("key sha256:")
    assert verdict.time_source is not None and verdict.time_source.startswith("none")
    assert any("transparency log" in item for item in verdict.not_checked)


@pytest.mark.parametrize("kind", ["dsse", "message"])
def test_an_oci_referrer_bundle_verifies(tmp_path: Path, keys: dict[str, Path], kind: str) -> None:
    image = build(tmp_path, "oci-layout")
    signed = sign_image(image, load_private_key(keys["alice"].with_suffix(".key")), kind)  # type: ignore[arg-type]
    referrer = attach_referrer(image, signed)
    reopened = open_image(image.source + ":1")  # the layout now lists the image and its referrer
    index = json.loads((Path(image.source) / "index.json").read_text())
    listed = [m for m in index["manifests"] if m.get("artifactType")]
    assert listed[0]["digest"] == referrer
    manifest = json.loads(
        (
            Path(image.source)
            / blob_path(image.manifest_digest).replace(image.manifest_digest.hex, referrer.split(":")[1])
        ).read_text()
    )
    assert manifest["subject"]["digest"] == str(image.manifest_digest)
    verdict = verify_image(reopened, policy_for(keys["alice"]))
    assert verdict.verified, verdict.reason
    assert verdict.bundle_origin == f"OCI referrer {referrer}"


def test_an_explicit_bundle_file_verifies(tmp_path: Path, keys: dict[str, Path]) -> None:
    image = build(tmp_path, "docker-legacy")
    bundle = sign_to_file(image, keys["alice"], tmp_path / "elsewhere" / "sig.json")
    assert verify_image(image, policy_for(keys["alice"]), bundle).verified


def test_an_extra_key_from_the_caller_is_trusted(tmp_path: Path, keys: dict[str, Path]) -> None:
    image = build(tmp_path, "oci-archive")
    bundle = sign_to_file(image, keys["alice"], tmp_path / "sig.json")
    assert verify_image(image, SigningPolicy(), bundle, extra_keys=[keys["alice"].with_suffix(".pub")]).verified


def test_an_unsigned_image_is_refused(tmp_path: Path, keys: dict[str, Path]) -> None:
    verdict = verify_image(build(tmp_path, "oci-layout"), policy_for(keys["alice"]))
    assert not verdict.verified and verdict.refusal == "unsigned"
    assert "not signed" in (verdict.reason or "")


def test_a_bundle_for_another_image_is_refused_as_a_replay(tmp_path: Path, keys: dict[str, Path]) -> None:
    signed_image = build(tmp_path, "oci-archive", b"good\n")
    other = build(tmp_path, "oci-archive", b"evil!!\n")
    bundle = sign_to_file(signed_image, keys["alice"], tmp_path / "sig.json")
    verdict = verify_image(other, policy_for(keys["alice"]), bundle)
    assert verdict.refusal == "replay"
    assert str(signed_image.manifest_digest) in (verdict.reason or "")


def test_a_signature_by_an_untrusted_key_is_refused(tmp_path: Path, keys: dict[str, Path]) -> None:
    image = build(tmp_path, "oci-layout")
    bundle = sign_to_file(image, keys["mallory"], tmp_path / "sig.json")
    assert verify_image(image, policy_for(keys["alice"]), bundle).refusal == "untrusted-key"
    assert verify_image(image, SigningPolicy(required=True), bundle).refusal == "untrusted-key"


def test_a_flipped_payload_byte_is_refused(tmp_path: Path, keys: dict[str, Path]) -> None:
    image = build(tmp_path, "oci-layout")
    bundle = sign_to_file(image, keys["alice"], tmp_path / "sig.json")
    document = json.loads(bundle.read_text())
    payload = bytearray(base64.b64decode(document["dsseEnvelope"]["payload"]))
    payload[payload.index(b"sha256")] ^= 0x01  # "rha256": same length, different bytes
    document["dsseEnvelope"]["payload"] = base64.b64encode(bytes(payload)).decode()
    bundle.write_text(json.dumps(document))
    verdict = verify_image(image, policy_for(keys["alice"]), bundle)
    assert verdict.refusal == "signature", verdict.reason


def test_a_flipped_message_payload_byte_is_refused(tmp_path: Path, keys: dict[str, Path]) -> None:
    image = build(tmp_path, "oci-layout")
    bundle = sign_to_file(image, keys["alice"], tmp_path / "sig.sigstore.json", "message")
    payload_path = tmp_path / "sig.payload.json"
    payload_path.write_bytes(payload_path.read_bytes().replace(b"cosign container", b"cosign containeR"))
    assert verify_image(image, policy_for(keys["alice"]), bundle).refusal == "signature"


def _valid_dsse_bundle() -> dict[str, object]:
    envelope = DsseEnvelope("application/vnd.in-toto+json", b"{}", (("", b"sig"),))
    return json.loads(public_key_bundle("hint", envelope))  # type: ignore[no-any-return]


def _mutate(path: str, value: object) -> bytes:
    document = _valid_dsse_bundle()
    *parents, last = path.split(".")
    node: dict[str, object] = document
    for part in parents:
        child = node[part]
        assert isinstance(child, dict)
        node = child
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return json.dumps(document).encode()


_DELETE = object()

MALFORMED = [
    ("not json", b"{not json"),
    ("a list", b"[]"),
    ("unknown media type", _mutate("mediaType", "application/vnd.dev.sigstore.bundle.v9+json")),
    ("no verification material", _mutate("verificationMaterial", _DELETE)),
    ("no key or certificate", _mutate("verificationMaterial.publicKey", _DELETE)),
    ("no content", _mutate("dsseEnvelope", _DELETE)),
    ("both contents", _mutate("messageSignature", {"signature": "AAAA"})),
    ("payload not base64", _mutate("dsseEnvelope.payload", "!!!")),
    ("no signatures", _mutate("dsseEnvelope.signatures", [])),
    ("no payload type", _mutate("dsseEnvelope.payloadType", "")),
    ("tlog entries not a list", _mutate("verificationMaterial.tlogEntries", "x")),
]


@pytest.mark.parametrize(("case", "data"), MALFORMED, ids=[case for case, _ in MALFORMED])
def test_a_malformed_bundle_is_refused(tmp_path: Path, keys: dict[str, Path], case: str, data: bytes) -> None:
    image = build(tmp_path, "oci-layout")
    (tmp_path / "bad.json").write_bytes(data)
    verdict = verify_image(image, policy_for(keys["alice"]), tmp_path / "bad.json")
    assert verdict.refusal == "malformed", (case, verdict.reason)
    assert verdict.reason and "\n" not in verdict.reason


def test_a_message_signature_without_its_payload_is_refused_as_malformed(tmp_path: Path, keys: dict[str, Path]) -> None:
    image = build(tmp_path, "oci-layout")
    bundle = sign_to_file(image, keys["alice"], tmp_path / "sig.sigstore.json", "message")
    (tmp_path / "sig.payload.json").unlink()
    assert verify_image(image, policy_for(keys["alice"]), bundle).refusal == "malformed"


def test_a_statement_with_another_predicate_is_not_a_signature(tmp_path: Path, keys: dict[str, Path]) -> None:
    image = build(tmp_path, "oci-layout")
    bundle = sign_to_file(image, keys["alice"], tmp_path / "sig.json")
    document = json.loads(bundle.read_text())
    statement = json.loads(base64.b64decode(document["dsseEnvelope"]["payload"]))
    statement["predicateType"] = "https://slsa.dev/provenance/v1"
    from pysbx.signing.keys import key_hint, sign_bytes
    from pysbx.signing.payload import pre_authentication_encoding

    key = load_private_key(keys["alice"].with_suffix(".key"))
    payload = json.dumps(statement).encode()
    signature = sign_bytes(key, pre_authentication_encoding("application/vnd.in-toto+json", payload))
    bundle.write_bytes(
        public_key_bundle(
            key_hint(key.public_key()), DsseEnvelope("application/vnd.in-toto+json", payload, (("", signature),))
        )
    )
    verdict = verify_image(image, policy_for(keys["alice"]), bundle)
    assert verdict.refusal == "malformed" and "attestation" in (verdict.reason or "")


def test_an_unreadable_key_is_bad_input_not_a_refusal(tmp_path: Path) -> None:
    image = build(tmp_path, "oci-layout")
    (tmp_path / "junk.pub").write_text("not a key")
    with pytest.raises(VerificationError) as raised:
        verify_image(image, SigningPolicy(keys=(str(tmp_path / "junk.pub"),)))
    assert raised.value.kind == "bad-input"


def test_a_flipped_layer_byte_passes_signature_but_fails_when_the_layer_is_read(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    """The signature covers the manifest; the manifest pins each layer's digest, and images/
    checks it while the layer streams: so the tampered layer is caught at unpack time, and
    the unpack leaves nothing behind."""
    image = build(tmp_path, "oci-layout")
    sign_to_file(image, keys["alice"], Path(image.source + ".sigstore.json"))
    layer_file = Path(image.source) / image.layers[0].location
    data = bytearray(layer_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    layer_file.write_bytes(bytes(data))
    tampered = open_image(image.source)
    verdict = verify_image(tampered, policy_for(keys["alice"]))
    assert verdict.verified and verdict.manifest_digest == str(image.manifest_digest)
    target = tmp_path / "rootfs"
    with pytest.raises(ImageError):
        unpack_image(tampered, target)
    assert not target.exists() or not any(target.iterdir())
