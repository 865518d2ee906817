"""What a signature is over, and the check that it names THIS image.

- Message signatures sign a cosign "simple signing" payload whose
  `critical.image.docker-manifest-digest` is the manifest digest.
- DSSE envelopes carry an in-toto Statement whose subject digest is the manifest digest
  (cosign v3 signs predicate type `https://sigstore.dev/cosign/sign/v1`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from signing.errors import VerificationError

SIMPLE_SIGNING_TYPE = "cosign container image signature"
SIMPLE_SIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
INTOTO_STATEMENT_V1 = "https://in-toto.io/Statement/v1"
INTOTO_STATEMENT_V01 = "https://in-toto.io/Statement/v0.1"
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"


@dataclass(frozen=True)
class SignedClaim:
    """What a payload says was signed: the manifest digests, the reference when it names one,
    and the predicate type for a Statement."""

    manifest_digests: tuple[str, ...]
    docker_reference: str | None = None
    predicate_type: str | None = None
    optional: dict[str, Any] = field(default_factory=dict)


def simple_signing_payload(manifest_digest: str, reference: str, optional: Mapping[str, Any] | None = None) -> bytes:
    document: dict[str, Any] = {
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": manifest_digest},
            "type": SIMPLE_SIGNING_TYPE,
        },
        "optional": dict(optional) if optional else None,
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def intoto_statement(manifest_digest: str, reference: str, predicate: Mapping[str, Any] | None = None) -> bytes:
    algorithm, _, hex_digest = manifest_digest.partition(":")
    document = {
        "_type": INTOTO_STATEMENT_V1,
        "subject": [{"name": reference, "digest": {algorithm: hex_digest}}],
        "predicateType": COSIGN_SIGN_PREDICATE,
        "predicate": dict(predicate or {}),
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def pre_authentication_encoding(payload_type: str, payload: bytes) -> bytes:
    """DSSE's PAE: what a DSSE signature is computed over."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _load(data: bytes, what: str) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise VerificationError("malformed", f"the signed {what} is not valid JSON ({error})") from None
    if not isinstance(document, dict):
        raise VerificationError("malformed", f"the signed {what} is not a JSON object")
    return document


def parse_simple_signing(data: bytes) -> SignedClaim:
    document = _load(data, "simple-signing payload")
    critical = document.get("critical")
    if not isinstance(critical, dict):
        raise VerificationError("malformed", "the simple-signing payload has no `critical` object")
    if critical.get("type") != SIMPLE_SIGNING_TYPE:
        raise VerificationError(
            "malformed", f"the simple-signing payload's type is {critical.get('type')!r}, not {SIMPLE_SIGNING_TYPE!r}"
        )
    image = critical.get("image")
    digest = image.get("docker-manifest-digest") if isinstance(image, dict) else None
    if not isinstance(digest, str):
        raise VerificationError(
            "malformed", "the simple-signing payload names no critical.image.docker-manifest-digest"
        )
    identity = critical.get("identity")
    reference = identity.get("docker-reference") if isinstance(identity, dict) else None
    optional = document.get("optional")
    return SignedClaim(
        manifest_digests=(digest,),
        docker_reference=reference if isinstance(reference, str) else None,
        optional=optional if isinstance(optional, dict) else {},
    )


def parse_statement(data: bytes) -> SignedClaim:
    document = _load(data, "in-toto Statement")
    if document.get("_type") not in (INTOTO_STATEMENT_V1, INTOTO_STATEMENT_V01):
        raise VerificationError(
            "malformed", f"the DSSE payload is not an in-toto Statement ({document.get('_type')!r})"
        )
    subjects = document.get("subject")
    if not isinstance(subjects, list) or not subjects:
        raise VerificationError("malformed", "the in-toto Statement has no subject")
    digests: list[str] = []
    for subject in subjects:
        if not isinstance(subject, dict) or not isinstance(subject.get("digest"), dict):
            raise VerificationError("malformed", "an in-toto Statement subject has no digest")
        digests.extend(f"{alg}:{value}" for alg, value in subject["digest"].items() if isinstance(value, str))
    predicate_type = document.get("predicateType")
    return SignedClaim(
        manifest_digests=tuple(digests),
        predicate_type=predicate_type if isinstance(predicate_type, str) else None,
    )
