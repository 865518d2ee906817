"""What a signature is over, and the check that it names THIS image.

- Message signatures sign a cosign "simple signing" payload whose
  `critical.image.docker-manifest-digest` is the manifest digest.
- DSSE envelopes carry an in-toto Statement whose subject digest is the manifest digest
  (cosign v3 signs predicate type `https://sigstore.dev/cosign/sign/v1`).

When the policy asks (`signing.match_reference`), what was signed must also name the image's
reference: the simple-signing `critical.identity.docker-reference`, or a Statement subject's
name. A signed repository (`ghcr.io/acme/app`) vouches for every tag of it; a signed tag or
digest only for itself. Names are compared as Docker normalises them (`busybox` is
`docker.io/library/busybox`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pysbx.images.references import normalize_name
from pysbx.signing.errors import VerificationError

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
    names: list[str] = []
    for subject in subjects:
        if not isinstance(subject, dict) or not isinstance(subject.get("digest"), dict):
            raise VerificationError("malformed", "an in-toto Statement subject has no digest")
        digests.extend(f"{alg}:{value}" for alg, value in subject["digest"].items() if isinstance(value, str))
        if isinstance(subject.get("name"), str) and subject["name"]:
            names.append(subject["name"])
    predicate_type = document.get("predicateType")
    return SignedClaim(
        manifest_digests=tuple(digests),
        docker_reference=names[0] if names else None,
        predicate_type=predicate_type if isinstance(predicate_type, str) else None,
    )


def _repository(name: str) -> str:
    """A normalised name without its tag or digest."""
    without_digest = normalize_name(name).partition("@")[0]
    head, _, last = without_digest.rpartition("/")
    return f"{head}/{last.partition(':')[0]}"


def reference_is_signed(signed: str, reference: str) -> bool:
    """Whether a signature naming `signed` vouches for the image called `reference`: the same
    repository, and the same tag or digest when the signed name carries one."""
    if _repository(signed) != _repository(reference):
        return False
    last = signed.rpartition("/")[2]
    if "@" not in signed and ":" not in last:
        return True
    return normalize_name(signed) == normalize_name(reference)


def require_reference(claim: SignedClaim, references: tuple[str, ...], source: str) -> str:
    """Step (4) of the trust decision, when the policy asks: the signed reference must name one
    of the image's `references`; return the one it names.

    Refused as a replay, like a signature for another digest: the signature is genuine and by
    a trusted signer (so not a wrong identity), but its signer vouched for another name, and it
    was carried over to this one (a debug build's signature on the release name, say)."""
    if not references:
        raise VerificationError(
            "replay", f"the policy requires the signed reference to match, and {source} carries no name to match"
        )
    if claim.docker_reference is None:
        raise VerificationError("replay", "the policy requires a signed reference, and the signed payload names none")
    for reference in references:
        if reference_is_signed(claim.docker_reference, reference):
            return reference
    raise VerificationError(
        "replay",
        f"the signature is for reference {claim.docker_reference!r}, not {', '.join(map(repr, references))}",
    )
