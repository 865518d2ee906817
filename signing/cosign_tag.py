"""cosign's tag-based signature storage, from before OCI 1.1 referrers, read (and, for key
signatures, written) in an OCI layout.

- `sha256-<hex>.sig`: a manifest whose layers are simple-signing payloads (media type
  `application/vnd.dev.cosign.simplesigning.v1+json`), one per signature, each annotated with
  `dev.cosignproject.cosign/signature` (base64 of the signature over the payload) and, when
  signed keyless, `dev.sigstore.cosign/certificate` and `dev.sigstore.cosign/chain` (PEM); when
  logged, `dev.sigstore.cosign/bundle` (Rekor's signed entry timestamp, "SET", and the entry).
- `sha256-<hex>`: the referrers tag schema (the OCI 1.1 fallback for registries without the
  referrers API): an index whose entries are referrer manifests, read as referrers are.

Each `.sig` layer becomes a sigstore bundle with a message signature over its payload, so the
verifier treats it like any other bundle: a public-key one is checked here, a keyless one by
sigstore-python. A legacy log entry has a SET but no inclusion proof; it becomes a v0.1 bundle
(where an inclusion promise is what the format requires). sigstore-python 4.5.1 demands an
inclusion proof all the same, so a keyless `.sig` signature is refused with that reason; its
key-signed sibling verifies, and the log entry is reported as not checked."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from pysbx.signing.bundle import BUNDLE_V01, BUNDLE_V03_NEW
from pysbx.signing.errors import VerificationError

SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"
REKOR_BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"


def signature_tag(manifest_digest: str) -> str:
    """`sha256:<hex>` -> `sha256-<hex>.sig`, the tag cosign stores signatures under."""
    return referrers_tag(manifest_digest) + ".sig"


def referrers_tag(manifest_digest: str) -> str:
    """`sha256:<hex>` -> `sha256-<hex>`, the referrers tag schema's tag."""
    return manifest_digest.replace(":", "-", 1)


def names_tag(ref_name: object, tag: str) -> bool:
    """Whether an index entry's ref.name is `tag`, alone or after a repository (`repo:tag`)."""
    return isinstance(ref_name, str) and (ref_name == tag or ref_name.endswith(":" + tag))


def bundle_from_signature_layer(payload: bytes, annotations: Mapping[str, Any], where: str) -> bytes:
    """The sigstore bundle (JSON) equivalent to one `.sig` layer: its payload is what the
    message signature signs; its certificate (if any) and its log entry (if any) are kept."""
    signature = _base64_annotation(annotations, SIGNATURE_ANNOTATION, where)
    message = {
        "messageDigest": {"algorithm": "SHA2_256", "digest": _encode(hashlib.sha256(payload).digest())},
        "signature": _encode(signature),
    }
    entries = (
        [_tlog_entry(annotations[REKOR_BUNDLE_ANNOTATION], where)] if REKOR_BUNDLE_ANNOTATION in annotations else []
    )
    material: dict[str, Any] = {"tlogEntries": entries}
    if CERTIFICATE_ANNOTATION in annotations:
        chain = _certificates(annotations[CERTIFICATE_ANNOTATION], annotations.get(CHAIN_ANNOTATION), where)
        material["x509CertificateChain"] = {"certificates": [{"rawBytes": _encode(der)} for der in chain]}
    else:
        material["publicKey"] = {"hint": ""}  # the layer does not say which key: try every trusted one
    document = {
        "mediaType": BUNDLE_V01 if entries else BUNDLE_V03_NEW,
        "verificationMaterial": material,
        "messageSignature": message,
    }
    return json.dumps(document, indent=2).encode()


def unverifiable_note(annotations: Mapping[str, Any]) -> str | None:
    """Why a `.sig` layer cannot verify here, to name in its refusal: a keyless signature whose
    log entry is a SET without inclusion proof, which sigstore-python 4.5.1 always requires."""
    if CERTIFICATE_ANNOTATION not in annotations:
        return None
    if REKOR_BUNDLE_ANNOTATION not in annotations:
        return "keyless and never logged: nothing proves the short-lived certificate was valid when it signed"
    return "keyless; its log entry has a signed entry timestamp and no inclusion proof, which sigstore-python needs"


def _encode(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _base64_annotation(annotations: Mapping[str, Any], name: str, where: str) -> bytes:
    value = annotations.get(name)
    if not isinstance(value, str) or not value:
        raise VerificationError("malformed", f"{where}: the cosign signature layer has no {name} annotation")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise VerificationError("malformed", f"{where}: the {name} annotation is not valid base64") from None


def _certificates(leaf_pem: object, chain_pem: object, where: str) -> list[bytes]:
    """The leaf and its intermediates as DER, without a self-signed root: a bundle must not
    carry the root (the trusted root supplies it, and sigstore-python refuses one inside)."""
    texts = [text for text in (leaf_pem, chain_pem) if isinstance(text, str) and text]
    try:
        certificates = [cert for text in texts for cert in x509.load_pem_x509_certificates(text.encode())]
    except ValueError as error:
        raise VerificationError(
            "malformed", f"{where}: the cosign certificate annotation is not PEM ({error})"
        ) from None
    if not certificates:
        raise VerificationError("malformed", f"{where}: the cosign certificate annotation holds no certificate")
    return [certificates[0].public_bytes(Encoding.DER)] + [
        cert.public_bytes(Encoding.DER) for cert in certificates[1:] if cert.issuer != cert.subject
    ]


def _tlog_entry(annotation: object, where: str) -> dict[str, Any]:
    """A bundle log entry from cosign's `{"SignedEntryTimestamp", "Payload": {body,
    integratedTime, logIndex, logID}}`: the SET becomes the inclusion promise."""
    try:
        document: Any = json.loads(annotation) if isinstance(annotation, str) else None
        payload = document["Payload"]
        body = json.loads(base64.b64decode(payload["body"], validate=True))
        entry = {
            "logIndex": str(int(payload["logIndex"])),
            "logId": {"keyId": _encode(bytes.fromhex(payload["logID"]))},
            "kindVersion": {"kind": str(body["kind"]), "version": str(body["apiVersion"])},
            "integratedTime": str(int(payload["integratedTime"])),
            "inclusionPromise": {"signedEntryTimestamp": str(document["SignedEntryTimestamp"])},
            "canonicalizedBody": str(payload["body"]),
        }
    except (TypeError, KeyError, ValueError, binascii.Error):
        raise VerificationError(
            "malformed", f"{where}: the {REKOR_BUNDLE_ANNOTATION} annotation is not a Rekor bundle"
        ) from None
    return entry
