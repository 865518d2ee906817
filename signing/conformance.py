"""sigstore-conformance's `verify-bundle` contract, over `signing/`: verify a bundle for an
artifact (its bytes, or `sha256:<hex>` of them) with either an expected identity and issuer
(keyless) or a public key, against a trusted root or the public-good root, offline.

The command line the upstream harness drives is `pysandbox conformance` (sandbox/conformance_cmd.py);
this module is the work, so a library user gets the same answer."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from pysbx.policies.model import Identity
from pysbx.signing.bundle import BundleResult, MessageSignature, ParsedBundle, parse_bundle
from pysbx.signing.errors import VerificationError
from pysbx.signing.keys import load_public_key
from pysbx.signing.payload import INTOTO_PAYLOAD_TYPE, parse_statement
from pysbx.signing.verify import Trust, verify_bundle

_DIGEST_INPUT = re.compile(r"sha256:([0-9a-fA-F]{64})")


@dataclass(frozen=True)
class Artifact:
    """What was signed, as the harness names it: the file's bytes, or only their SHA-256
    (`data` is then None, and only checks that need no more than the digest can run)."""

    sha256: bytes
    data: bytes | None = None

    @classmethod
    def of_bytes(cls, data: bytes) -> Artifact:
        return cls(hashlib.sha256(data).digest(), data)

    @property
    def digest_text(self) -> str:
        return "sha256:" + self.sha256.hex()


def read_artifact(file_or_digest: str) -> Artifact:
    """FILE_OR_DIGEST as the protocol defines it: `sha256:` and 64 hex digits naming no file
    on disk is a digest; anything else is a path, read whole (artifacts are small)."""
    match = _DIGEST_INPUT.fullmatch(file_or_digest)
    if match is not None and not Path(file_or_digest).exists():
        return Artifact(bytes.fromhex(match.group(1)))
    try:
        return Artifact.of_bytes(Path(file_or_digest).read_bytes())
    except OSError as error:
        raise VerificationError("bad-input", f"{file_or_digest}: cannot read the artifact: {error.strerror}") from None


def verify_bundle_for_artifact(
    bundle: Path,
    artifact: bytes | Artifact,
    *,
    identity: str | None = None,
    issuer: str | None = None,
    key: Path | None = None,
    trusted_root: Path | None = None,
) -> BundleResult:
    """Raise VerificationError unless the bundle verifies for `artifact`."""
    subject = artifact if isinstance(artifact, Artifact) else Artifact.of_bytes(artifact)
    try:
        data = bundle.read_bytes()
    except OSError as error:
        raise VerificationError("bad-input", f"{bundle}: cannot read: {error.strerror}") from None
    parsed = parse_bundle(data)
    trust = _trust(parsed, identity, issuer, key, trusted_root)
    if isinstance(parsed.content, MessageSignature):
        return _verify_message_signature(parsed, subject, trust)
    result = verify_bundle(parsed, None, trust)
    if result.payload_type != INTOTO_PAYLOAD_TYPE:
        raise VerificationError("malformed", f"the DSSE payload type is {result.payload_type!r}, not in-toto")
    if subject.digest_text not in parse_statement(result.payload).manifest_digests:
        raise VerificationError("replay", f"the in-toto Statement does not name the artifact ({subject.digest_text})")
    return result


def _trust(
    parsed: ParsedBundle, identity: str | None, issuer: str | None, key: Path | None, trusted_root: Path | None
) -> Trust:
    """Whom to trust: the named key alone, or the one expected identity (never both, as the
    protocol's two forms of `verify-bundle` say)."""
    if key is not None:
        if parsed.material != "public-key":
            raise VerificationError("untrusted-key", "a key was named, but the bundle is signed keyless")
        return Trust(keys=(load_public_key(key),), trusted_root=trusted_root)
    if identity is None or issuer is None:
        raise VerificationError(
            "bad-input", "name either --key, or --certificate-identity and --certificate-oidc-issuer"
        )
    return Trust(identities=(Identity(issuer=issuer, subject=identity),), trusted_root=trusted_root)


def _verify_message_signature(parsed: ParsedBundle, subject: Artifact, trust: Trust) -> BundleResult:
    """A message signature is over the artifact itself. Given only its digest, a keyless
    bundle is still fully checkable (sigstore-python verifies a prehashed input); a
    public-key one is not (an Ed25519 signature needs the bytes), so that is refused."""
    if subject.data is not None:
        return verify_bundle(parsed, subject.data, trust)
    if parsed.material == "public-key":
        raise VerificationError(
            "bad-input", "a public-key message signature is verified over the artifact file, not only its digest"
        )
    from pysbx.signing.keyless import verify_keyless_digest

    return verify_keyless_digest(parsed, subject.sha256, trust.identities, trust.trusted_root)
