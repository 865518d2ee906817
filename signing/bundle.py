"""Sigstore bundles as typed data: parsing the wire format (media types v0.1 to v0.3) far enough
to decide how to verify it, and writing the public-key bundles `pysandbox sign` makes.

Keyless bundles are handed whole to sigstore-python; this model is what lets the verifier
route them, and is the whole story for public-key bundles (which sigstore-python 4.5.1 refuses)."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from pysbx.signing.errors import VerificationError

BUNDLE_V01 = "application/vnd.dev.sigstore.bundle+json;version=0.1"
BUNDLE_V02 = "application/vnd.dev.sigstore.bundle+json;version=0.2"
BUNDLE_V03 = "application/vnd.dev.sigstore.bundle+json;version=0.3"
BUNDLE_V03_NEW = "application/vnd.dev.sigstore.bundle.v0.3+json"
BUNDLE_MEDIA_TYPES = frozenset({BUNDLE_V01, BUNDLE_V02, BUNDLE_V03, BUNDLE_V03_NEW})
MAX_BUNDLE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class MessageSignature:
    digest_algorithm: str | None  # SHA2_256 ...; None when the bundle does not say
    digest: bytes | None
    signature: bytes


@dataclass(frozen=True)
class DsseEnvelope:
    payload_type: str
    payload: bytes
    signatures: tuple[tuple[str, bytes], ...]  # (keyid, sig)


@dataclass(frozen=True)
class ParsedBundle:
    media_type: str
    material: str  # "public-key", "certificate" (v0.3 leaf) or "x509-chain"
    key_hint: str | None
    content: MessageSignature | DsseEnvelope
    tlog_entries: tuple[dict[str, Any], ...]
    has_timestamps: bool
    raw: bytes


def decode_base64(value: object, where: str, owner: str = "the bundle's") -> bytes:
    """A base64 field of a bundle (or of a log entry inside one: `owner`), or malformed."""
    if not isinstance(value, str):
        raise VerificationError("malformed", f"{owner} {where} is missing or not a string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise VerificationError("malformed", f"{owner} {where} is not valid base64") from None


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise VerificationError("malformed", f"the bundle's {where} is missing or not an object")
    return value


def parse_bundle(data: bytes) -> ParsedBundle:
    """Parse a bundle, refusing with kind "malformed" whatever its verification would trip on."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise VerificationError("malformed", f"the bundle is {len(data)} bytes, more than {MAX_BUNDLE_BYTES} allowed")
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise VerificationError("malformed", f"the bundle is not valid JSON ({error})") from None
    document = _object(document, "top level")
    media_type = document.get("mediaType")
    if media_type not in BUNDLE_MEDIA_TYPES:
        raise VerificationError("malformed", f"unknown bundle media type {media_type!r}")
    material = _object(document.get("verificationMaterial"), "verificationMaterial")
    key_hint: str | None = None
    if "publicKey" in material:
        kind = "public-key"
        hint = _object(material["publicKey"], "verificationMaterial.publicKey").get("hint")
        key_hint = hint if isinstance(hint, str) and hint else None
    elif "certificate" in material:
        kind = "certificate"
        decode_base64(_object(material["certificate"], "certificate").get("rawBytes"), "certificate.rawBytes")
    elif "x509CertificateChain" in material:
        kind = "x509-chain"
        chain = _object(material["x509CertificateChain"], "x509CertificateChain").get("certificates")
        if not isinstance(chain, list) or not chain:
            raise VerificationError("malformed", "the bundle's certificate chain is empty")
    else:
        raise VerificationError("malformed", "the bundle has no public key, certificate or certificate chain")
    entries = material.get("tlogEntries", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise VerificationError("malformed", "the bundle's tlogEntries is not a list of objects")
    timestamps = _object(material.get("timestampVerificationData") or {}, "timestampVerificationData")
    content: MessageSignature | DsseEnvelope
    if "messageSignature" in document and "dsseEnvelope" not in document:
        content = _message_signature(_object(document["messageSignature"], "messageSignature"))
    elif "dsseEnvelope" in document and "messageSignature" not in document:
        content = _dsse(_object(document["dsseEnvelope"], "dsseEnvelope"))
    else:
        raise VerificationError("malformed", "the bundle must hold exactly one of messageSignature and dsseEnvelope")
    return ParsedBundle(
        media_type=media_type,
        material=kind,
        key_hint=key_hint,
        content=content,
        tlog_entries=tuple(entries),
        has_timestamps=bool(timestamps.get("rfc3161Timestamps")),
        raw=data,
    )


def _message_signature(doc: dict[str, Any]) -> MessageSignature:
    signature = decode_base64(doc.get("signature"), "messageSignature.signature")
    if not signature:
        raise VerificationError("malformed", "the bundle's messageSignature.signature is empty")
    digest_doc = doc.get("messageDigest")
    if digest_doc is None:
        return MessageSignature(None, None, signature)
    digest_doc = _object(digest_doc, "messageSignature.messageDigest")
    algorithm = digest_doc.get("algorithm")
    if algorithm != "SHA2_256":
        raise VerificationError("malformed", f"message digest algorithm {algorithm!r} is not supported (SHA2_256)")
    return MessageSignature(
        algorithm, decode_base64(digest_doc.get("digest"), "messageSignature.messageDigest.digest"), signature
    )


def _dsse(doc: dict[str, Any]) -> DsseEnvelope:
    payload_type = doc.get("payloadType")
    if not isinstance(payload_type, str) or not payload_type:
        raise VerificationError("malformed", "the bundle's DSSE envelope has no payloadType")
    payload = decode_base64(doc.get("payload"), "dsseEnvelope.payload")
    raw_signatures = doc.get("signatures")
    if not isinstance(raw_signatures, list) or not raw_signatures:
        raise VerificationError("malformed", "the bundle's DSSE envelope has no signatures")
    signatures = []
    for item in raw_signatures:
        entry = _object(item, "dsseEnvelope.signatures[]")
        keyid = entry.get("keyid", "")
        signatures.append(
            (keyid if isinstance(keyid, str) else "", decode_base64(entry.get("sig"), "dsseEnvelope sig"))
        )
    return DsseEnvelope(payload_type, payload, tuple(signatures))


def _encode(data: bytes) -> str:
    return base64.b64encode(data).decode()


def public_key_bundle(key_hint: str, content: MessageSignature | DsseEnvelope) -> bytes:
    """A v0.3 bundle whose verification material is a public-key hint; no log entry (the
    signature was made offline), which cosign accepts with `--insecure-ignore-tlog`."""
    document: dict[str, Any] = {
        "mediaType": BUNDLE_V03_NEW,
        "verificationMaterial": {"publicKey": {"hint": key_hint}, "tlogEntries": []},
    }
    if isinstance(content, MessageSignature):
        signature: dict[str, Any] = {"signature": _encode(content.signature)}
        if content.digest is not None:
            signature["messageDigest"] = {"algorithm": "SHA2_256", "digest": _encode(content.digest)}
        document["messageSignature"] = signature
    else:
        document["dsseEnvelope"] = {
            "payload": _encode(content.payload),
            "payloadType": content.payload_type,
            "signatures": [{"sig": _encode(sig), "keyid": keyid} for keyid, sig in content.signatures],
        }
    return (json.dumps(document, indent=2) + "\n").encode()


@dataclass(frozen=True)
class BundleResult:
    """A bundle whose signature verified: what was signed, by whom, and what was checked."""

    payload_type: str | None  # the DSSE payload type; None for a message signature
    payload: bytes
    signer: str
    time_source: str
    checked: list[str] = field(default_factory=list)
    not_checked: list[str] = field(default_factory=list)
