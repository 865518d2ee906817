"""Keyless bundles (a Fulcio-style certificate in the bundle) verified by sigstore-python,
offline: against the policy's trusted root (a `trusted_root.json`, or a client trust config
holding one) or the public-good root sigstore-python carries. Never a network call.

sigstore-python is imported here only, so that `pysandbox run`'s warm path never pays for it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from pysbx.policies.model import Identity
from pysbx.signing.bundle import BundleResult, DsseEnvelope, ParsedBundle
from pysbx.signing.errors import VerificationError

if TYPE_CHECKING:
    from cryptography.x509 import Certificate
    from sigstore.hashes import Hashed
    from sigstore.verify import Verifier
    from sigstore.verify.policy import VerificationPolicy


OIDC_ISSUER_V1 = "1.3.6.1.4.1.57264.1.1"
OIDC_ISSUER_V2 = "1.3.6.1.4.1.57264.1.8"


class SubjectRegex:
    """A certificate whose SAN (email, URI or Sigstore other-name) fully matches a regex."""

    def __init__(self, pattern: str) -> None:
        self._pattern = re.compile(pattern)

    def verify(self, cert: Certificate) -> None:
        from sigstore.errors import VerificationError as SigstoreError

        sans = certificate_identities(cert)
        if not any(self._pattern.fullmatch(san) for san in sans):
            raise SigstoreError(f"no certificate identity {sorted(sans)} matches {self._pattern.pattern!r}")


class _Recording:
    """Wraps the identity policy to tell a refused identity from a failure before or after it."""

    def __init__(self, inner: VerificationPolicy) -> None:
        self.inner = inner
        self.reached = False
        self.passed = False

    def verify(self, cert: Certificate) -> None:
        self.reached = True
        self.inner.verify(cert)
        self.passed = True


def certificate_identities(cert: Certificate) -> set[str]:
    from cryptography.x509 import OtherName, RFC822Name, SubjectAlternativeName, UniformResourceIdentifier

    try:
        san = cert.extensions.get_extension_for_class(SubjectAlternativeName).value
    except Exception:
        return set()
    found = set(san.get_values_for_type(RFC822Name)) | set(san.get_values_for_type(UniformResourceIdentifier))
    for other in san.get_values_for_type(OtherName):
        if other.type_id.dotted_string == "1.3.6.1.4.1.57264.1.7":
            found.add(other.value.decode(errors="replace").lstrip("\x0c\x13\x16").strip())
    return found


def certificate_issuer(cert: Certificate) -> str | None:
    from cryptography.x509 import ObjectIdentifier

    for oid in (OIDC_ISSUER_V1, OIDC_ISSUER_V2):
        try:
            value = cert.extensions.get_extension_for_oid(ObjectIdentifier(oid)).value
        except Exception:
            continue
        raw: bytes = getattr(value, "value", b"")
        # V1 is the raw string; V2 is a DER UTF8String (tag 0x0c, one length byte when short).
        text = raw[2:] if oid == OIDC_ISSUER_V2 and len(raw) > 2 and raw[0] == 0x0C else raw
        return text.decode(errors="replace")
    return None


def describe_signer(cert: Certificate) -> str:
    """The signer as verdicts name it: SUBJECT (issuer ISSUER)."""
    return f"{', '.join(sorted(certificate_identities(cert))) or 'unknown subject'} (issuer {certificate_issuer(cert)})"


def _claims(cert: Certificate) -> str:
    """The signer and its GitHub claims, for a refusal (sigstore's AnyOf does not say why)."""
    from cryptography.x509 import ObjectIdentifier

    claims = [describe_signer(cert)]
    for name, oid in (("repository", "1.3.6.1.4.1.57264.1.5"), ("workflow ref", "1.3.6.1.4.1.57264.1.6")):
        try:
            value = cert.extensions.get_extension_for_oid(ObjectIdentifier(oid)).value
        except Exception:
            continue
        claims.append(f"{name} {getattr(value, 'value', b'').decode(errors='replace')}")
    return ", ".join(claims)


def identity_policy(identities: tuple[Identity, ...]) -> VerificationPolicy:
    from sigstore.verify import policy

    alternatives: list[VerificationPolicy] = []
    for identity in identities:
        parts: list[VerificationPolicy] = [policy.OIDCIssuer(identity.issuer)]
        if identity.subject is not None:
            parts.append(policy.Identity(identity=identity.subject))
        if identity.subject_regex is not None:
            parts.append(SubjectRegex(identity.subject_regex))
        if identity.repository is not None:
            parts.append(policy.GitHubWorkflowRepository(identity.repository))
        if identity.workflow_ref is not None:
            parts.append(policy.GitHubWorkflowRef(identity.workflow_ref))
        alternatives.append(policy.AllOf(parts))
    return policy.AnyOf(alternatives)


def load_verifier(trusted_root: Path | None) -> Verifier:
    """The offline verifier: from the named trusted root, else the public-good root bundled
    with (or cached by) sigstore-python."""
    from sigstore.models import ClientTrustConfig, TrustedRoot
    from sigstore.verify import Verifier

    if trusted_root is None:
        try:
            return Verifier.production(offline=True)
        except Exception as error:
            raise VerificationError(
                "bad-input", f"the public-good trusted root is not available offline: {error}"
            ) from None
    try:
        text = trusted_root.read_text()
        media_type = str(json.loads(text).get("mediaType", ""))
        if "ClientTrustConfig" in media_type:
            return Verifier(trusted_root=ClientTrustConfig.from_json(text).trusted_root)
        return Verifier(trusted_root=TrustedRoot.from_file(str(trusted_root)))
    except (OSError, ValueError, AttributeError) as error:
        raise VerificationError("bad-input", f"{trusted_root}: not a usable trusted root ({error})") from None
    except Exception as error:  # sigstore raises its own types for a root it cannot use
        raise VerificationError("bad-input", f"{trusted_root}: not a usable trusted root ({error})") from None


def verify_keyless(
    parsed: ParsedBundle, artifact: bytes | Hashed | None, identities: tuple[Identity, ...], trusted_root: Path | None
) -> BundleResult:
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import Bundle

    if not identities:
        raise VerificationError("identity", "the bundle is signed keyless, and the policy trusts no identities")
    try:
        bundle = Bundle.from_json(parsed.raw)
    except Exception as error:
        detail = _one_line(error).split(" [type=")[0]  # pydantic goes on with the input and a help URL
        raise VerificationError("malformed", f"sigstore-python cannot read the bundle: {detail}") from None
    verifier = load_verifier(trusted_root)
    recording = _Recording(identity_policy(identities))
    try:
        if isinstance(parsed.content, DsseEnvelope):
            payload_type, payload = verifier.verify_dsse(bundle, recording)
            kind: str | None = payload_type
        else:
            if artifact is None:
                raise VerificationError("malformed", "a message-signature bundle needs the artifact it signs")
            verifier.verify_artifact(artifact, bundle, recording)
            kind, payload = None, artifact if isinstance(artifact, bytes) else b""
    except (SigstoreError, ValueError) as error:
        raise _refusal(_one_line(error), recording, parsed, bundle.signing_certificate) from None
    cert = bundle.signing_certificate
    signer = describe_signer(cert)
    time_source = "RFC 3161 timestamp" if parsed.has_timestamps else "transparency-log integrated time"
    checked = [
        "certificate chain to the trusted root at the verified time",
        "embedded SCT from a trusted CT log",
        "identity policy (issuer, subject, GitHub claims)",
        "transparency-log inclusion proof and signed checkpoint",
        "signature over the content, and its log entry's consistency with the bundle",
    ]

    return BundleResult(kind, payload, signer=signer, time_source=time_source, checked=checked, not_checked=[])


def verify_keyless_digest(
    parsed: ParsedBundle, sha256: bytes, identities: tuple[Identity, ...], trusted_root: Path | None
) -> BundleResult:
    """A keyless message signature checked against only the SHA-256 of what was signed (the
    conformance protocol's `sha256:<hex>` input): sigstore-python checks a prehashed input
    exactly as it checks the bytes. The result's payload is empty, only the digest is known."""
    from sigstore.hashes import Hashed
    from sigstore_models.common.v1 import HashAlgorithm

    return verify_keyless(parsed, Hashed(algorithm=HashAlgorithm.SHA2_256, digest=sha256), identities, trusted_root)


# sigstore-python 4.5.1 raises one error type for every step; these prefixes are its steps (4)
# and (5) (inclusion proof, checkpoint, SET) and (6) (certificate validity at the verified time).
_TRUSTED_LOG_STEPS = ("invalid log entry", "invalid signing cert: expired at time of signing")


def _refusal(message: str, recording: _Recording, parsed: ParsedBundle, cert: Certificate) -> VerificationError:
    """Which refusal a sigstore-python failure is. Before the identity check: the certificate
    does not lead to the trusted root (saying so plainly when it was not valid at the log's
    time); at it: the signer is not trusted; after it: a log entry the trusted log does not
    vouch for is the trust root's failure too, anything else the signature's."""
    if not recording.reached:
        return VerificationError(
            "untrusted-root",
            _not_valid_at_log_time(parsed, cert) or f"the certificate does not lead to the trusted root: {message}",
        )
    if not recording.passed:
        return VerificationError(
            "identity", f"the signer is not one the policy trusts: the certificate names {_claims(cert)} ({message})"
        )
    if message.startswith(_TRUSTED_LOG_STEPS):
        detail = message.split(": expected")[0]  # the Merkle error goes on to print the whole proof
        return VerificationError("untrusted-root", f"the trusted log does not vouch for the bundle's entry: {detail}")
    return VerificationError("signature", f"the signature or its log entry does not verify: {message}")


def _not_valid_at_log_time(parsed: ParsedBundle, cert: Certificate) -> str | None:
    """A sentence when the log's integrated time falls outside the leaf's validity (the chain
    is built at that time, and cryptography only says "not valid at validation time")."""
    from datetime import UTC, datetime

    integrated = str(parsed.tlog_entries[0].get("integratedTime", "")) if parsed.tlog_entries else ""
    if not integrated.isdigit() or int(integrated) == 0:
        return None
    when = datetime.fromtimestamp(int(integrated), UTC)
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if start <= when <= end:
        return None
    return (
        f"the signing certificate (valid {start:%Y-%m-%dT%H:%M:%SZ} to {end:%Y-%m-%dT%H:%M:%SZ}) was not valid "
        f"at the log's integrated time {when:%Y-%m-%dT%H:%M:%SZ}"
    )


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
