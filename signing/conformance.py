"""sigstore-conformance's `verify-bundle` contract, over `signing/`: verify a bundle for an
artifact (its bytes, or `sha256:<hex>` of them) with either an expected identity and issuer
(keyless) or a public key, against a trusted root or the public-good root, offline."""

from __future__ import annotations

import hashlib
from pathlib import Path

from policies.model import Identity
from signing.bundle import MessageSignature, parse_bundle
from signing.errors import VerificationError
from signing.keys import load_public_key
from signing.payload import INTOTO_PAYLOAD_TYPE, parse_statement
from signing.verify import BundleResult, Trust, verify_bundle

DEFAULT_IDENTITY = (
    "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
    ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
)
DEFAULT_ISSUER = "https://token.actions.githubusercontent.com"


def verify_bundle_for_artifact(
    bundle: Path,
    artifact: bytes,
    *,
    identity: str | None = None,
    issuer: str | None = None,
    key: Path | None = None,
    trusted_root: Path | None = None,
) -> BundleResult:
    """Raise VerificationError unless the bundle verifies for `artifact`."""
    try:
        data = bundle.read_bytes()
    except OSError as error:
        raise VerificationError("bad-input", f"{bundle}: cannot read: {error.strerror}") from None
    parsed = parse_bundle(data)
    if key is not None:
        trust = Trust(keys=(load_public_key(key),), trusted_root=trusted_root)
        if parsed.material != "public-key":
            raise VerificationError("untrusted-key", "a key was named, but the bundle is signed keyless")
    else:
        if identity is None or issuer is None:
            raise VerificationError(
                "bad-input", "name either --key, or --certificate-identity and --certificate-oidc-issuer"
            )
        trust = Trust(identities=(Identity(issuer=issuer, subject=identity),), trusted_root=trusted_root)
    if isinstance(parsed.content, MessageSignature):
        return verify_bundle(parsed, artifact, trust)
    result = verify_bundle(parsed, None, trust)
    if result.payload_type != INTOTO_PAYLOAD_TYPE:
        raise VerificationError("malformed", f"the DSSE payload type is {result.payload_type!r}, not in-toto")
    expected = "sha256:" + hashlib.sha256(artifact).hexdigest()
    if expected not in parse_statement(result.payload).manifest_digests:
        raise VerificationError("replay", f"the in-toto Statement does not name the artifact ({expected})")
    return result
