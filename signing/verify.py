"""The trust decision: does a signature the policy trusts say that THIS image (its manifest
digest) is signed?

The steps, each a short block raising one `VerificationError` kind (as sigstore-python numbers
its own):

1. Find the bundles (`signing.locate`); none at all: refused as unsigned.
2. Parse each bundle; one that cannot be parsed: malformed.
3. Verify its signature:
   a. public key material (checked here, as sigstore-python 4.5.1 cannot): the signature over
      the DSSE pre-authentication encoding, or over the simple-signing payload whose SHA-256
      must equal the bundle's message digest, by one of the policy's keys; by no trusted key:
      key not trusted. Its transparency-log entries are checked by `signing.tlog` against the
      logs of the policy's trusted root (inclusion proof, checkpoint, signed entry timestamp,
      the entry records this signature), whose integrated time is then the signing time;
      without a trusted root, or for RFC 3161 timestamps, the verdict says what was not checked.
   b. certificate material (keyless): sigstore-python's Verifier, offline, against the policy's
      trusted root or the public-good root it carries: chain to the root at a verified time,
      SCT, identity policy (issuer + subject or regex + GitHub claims), log inclusion proof,
      checkpoint and entry consistency. Failing before the identity check: untrusted root;
      the identity check: wrong identity or issuer; after it: untrusted root when the trusted
      log does not vouch for the entry, else the signature does not verify.
4. Check what was signed names this image's manifest digest; another digest: replay. When
   the policy asks (`match_reference`), it must also name one of the image's names; another: replay.
5. When the caller asks (`check_content`, as `pysandbox verify` does unless --signature-only),
   read every blob under the manifest: each layer's digest and size, and its diff_id
   (`images.content`); a mismatch: content.

A verified signature alone covers the manifest, not the bytes on disk: without step 5 a layer
altered after signing still verifies here. Nothing unverified reaches a container either way,
because `images/` checks every blob against its digest as it reads it (unpack, audit), but
only step 5 lets a verdict say that the content is what was signed."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pysbx.images.errors import ImageError
from pysbx.images.image import Image
from pysbx.policies.model import Identity, SigningPolicy
from pysbx.signing.bundle import BundleResult, DsseEnvelope, MessageSignature, ParsedBundle, parse_bundle
from pysbx.signing.errors import VerificationError
from pysbx.signing.keys import TrustedKey, load_public_key, signature_is_valid
from pysbx.signing.locate import FoundBundle, find_bundles
from pysbx.signing.payload import (
    COSIGN_SIGN_PREDICATE,
    INTOTO_PAYLOAD_TYPE,
    SignedClaim,
    parse_simple_signing,
    parse_statement,
    pre_authentication_encoding,
    require_reference,
)
from pysbx.signing.tlog import LogReport, SignedContent, check_log_entries

NO_TRUSTED_TIME = "none: a public-key signature carries no verified signing time"
CONTENT_NOT_CHECKED = "content digests: the config and layer blobs were not read"

if TYPE_CHECKING:
    from pysbx.signing.errors import RefusalKind


@dataclass(frozen=True)
class Verdict:
    verified: bool
    manifest_digest: str
    signer: str | None = None  # "key sha256:..." or "SUBJECT (issuer ISSUER)"
    time_source: str | None = None
    checked: tuple[str, ...] = ()
    not_checked: tuple[str, ...] = ()
    refusal: RefusalKind | None = None
    reason: str | None = None  # one sentence when refused
    bundle_origin: str | None = None
    content_checked: bool = False  # step (5) ran: every blob was read and held to the manifest
    content_blobs: int | None = None  # when the content verified: the config and the layer blobs
    content_bytes: int | None = None  # ... and their bytes as stored

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["checked"] = list(self.checked)
        document["not_checked"] = list(self.not_checked)
        return document


@dataclass(frozen=True)
class Trust:
    """Whom the policy trusts, loaded: keys, keyless identities and the trust root."""

    keys: tuple[TrustedKey, ...] = ()
    identities: tuple[Identity, ...] = ()
    trusted_root: Path | None = None

    @classmethod
    def from_policy(cls, policy: SigningPolicy, extra_keys: Sequence[Path] = ()) -> Trust:
        paths = [Path(p) for p in policy.keys] + list(extra_keys)
        root = Path(policy.trusted_root) if policy.trusted_root else None
        return cls(tuple(load_public_key(p) for p in paths), policy.identities, root)


def verify_image(
    image: Image,
    policy: SigningPolicy,
    bundle: Path | None = None,
    extra_keys: Sequence[Path] = (),
    reference: str | None = None,
    check_content: bool = False,
) -> Verdict:
    """Verify `image` against `policy`; a refusal is a Verdict with `verified` False.

    Raises VerificationError (kind "bad-input") only for what the policy or caller named and
    cannot be used: an unreadable key, an unreadable bundle file. `reference`, when given,
    must be named by what was signed; else, when the policy's `match_reference` is on, one
    of the image's own names must be. `check_content` adds step (5), which reads the whole
    image; without it the verdict is about the signature alone (right for callers that check
    each blob as they read it, such as run and audit; others say so: `content_not_checked`)."""
    trust = Trust.from_policy(policy, extra_keys)
    digest = str(image.manifest_digest)
    # (1): find the bundles.
    try:
        found = find_bundles(image, bundle)
    except ImageError as error:
        return Verdict(False, digest, refusal="malformed", reason=f"a signature in the image cannot be read: {error}")
    except VerificationError as error:
        if error.kind == "bad-input":
            raise
        return Verdict(False, digest, refusal=error.kind, reason=error.message)
    if not found:
        return Verdict(
            False,
            digest,
            refusal="unsigned",
            reason=f"{image.shown} is not signed: no --bundle, no sidecar and no sigstore referrer was found",
        )
    failures: list[tuple[FoundBundle, VerificationError]] = []
    for candidate in found:
        try:
            verdict = _verify_candidate(image, candidate, trust, _references_to_match(image, policy, reference))
        except VerificationError as error:
            if error.kind == "bad-input":
                raise
            failures.append((candidate, error))
        else:
            return _verify_content(image, verdict) if check_content else verdict
    candidate, refused = _most_telling(failures)
    others = f" ({len(failures) - 1} other bundles also refused)" if len(failures) > 1 else ""
    return Verdict(
        False,
        digest,
        refusal=refused.kind,
        reason=f"{candidate.origin}: {refused.message}{others}",
        bundle_origin=candidate.origin,
    )


_TELLING = ("replay", "identity", "untrusted-key", "untrusted-root", "signature", "malformed", "unsigned")


def _most_telling(failures: list[tuple[FoundBundle, VerificationError]]) -> tuple[FoundBundle, VerificationError]:
    """Of several refused bundles, the one whose refusal says most (a valid signature for
    another digest says more than a bundle that does not parse)."""
    return min(failures, key=lambda item: _TELLING.index(item[1].kind) if item[1].kind in _TELLING else 99)


def _references_to_match(image: Image, policy: SigningPolicy, reference: str | None) -> tuple[str, ...] | None:
    """The names step (4) holds the signed reference to: the caller's, else the image's own
    (its RepoTags or ref.name annotations) when the policy asks; None: no reference check."""
    if reference is not None:
        return (reference,)
    return tuple(image.references) if policy.match_reference else None


def _verify_candidate(image: Image, found: FoundBundle, trust: Trust, references: tuple[str, ...] | None) -> Verdict:
    # (2): parse.
    parsed = parse_bundle(found.bundle)
    # (3): verify the signature; a message signature signs the payload found beside the bundle.
    if isinstance(parsed.content, MessageSignature) and found.payload is None:
        raise VerificationError(
            "malformed",
            "a message-signature bundle needs its simple-signing payload beside it (NAME.payload.json), none was found",
        )
    result = verify_bundle(parsed, found.payload, trust)
    # (4): what was signed must name this image's manifest digest.
    claim = _claim(result)
    digest = str(image.manifest_digest)
    if digest not in claim.manifest_digests:
        signed_for = ", ".join(claim.manifest_digests)
        raise VerificationError(
            "replay",
            f"the signature is for {signed_for}, not this image's manifest {digest} (replayed from another image?)",
        )
    checked = [*result.checked, f"the signed payload names manifest digest {digest}"]
    if references is not None:
        checked.append(f"the signed payload names reference {require_reference(claim, references, image.source)}")
    return Verdict(
        True,
        digest,
        signer=result.signer,
        time_source=result.time_source,
        checked=tuple(checked),
        not_checked=tuple(result.not_checked),
        bundle_origin=found.origin,
    )


def _verify_content(image: Image, verdict: Verdict) -> Verdict:
    # (5): every blob under the signed manifest, against its digest, size and diff_id.
    from pysbx.images.content import verify_content

    try:
        report = verify_content(image)
    except ImageError as error:
        return replace(
            verdict,
            verified=False,
            refusal="content",
            reason="the signature verifies, but the content does not match it: " + " ".join(str(error).split()),
            content_checked=True,
        )
    layers = len(image.layers)
    checked = (
        f"content digests: the config and {layers} layer blob{'s' if layers != 1 else ''} match the signed "
        f"manifest (digest and size), each layer its diff_id ({report.blobs} blobs, {report.bytes} bytes)"
    )
    return replace(
        verdict,
        checked=(*verdict.checked, checked),
        content_checked=True,
        content_blobs=report.blobs,
        content_bytes=report.bytes,
    )


def content_not_checked(verdict: Verdict, why: str) -> Verdict:
    """A verified verdict whose content was deliberately left unread says so among what was
    not checked, with `why` (such as the option that asked for it)."""
    if not verdict.verified:
        return verdict
    return replace(verdict, not_checked=(*verdict.not_checked, f"{CONTENT_NOT_CHECKED} ({why})"))


def _claim(result: BundleResult) -> SignedClaim:
    if result.payload_type is None:
        return parse_simple_signing(result.payload)
    if result.payload_type != INTOTO_PAYLOAD_TYPE:
        raise VerificationError("malformed", f"the DSSE payload type is {result.payload_type!r}, not in-toto")
    claim = parse_statement(result.payload)
    if claim.predicate_type != COSIGN_SIGN_PREDICATE:
        raise VerificationError(
            "malformed",
            f"the Statement's predicate type is {claim.predicate_type!r}: an attestation, not an image signature "
            f"({COSIGN_SIGN_PREDICATE})",
        )
    return claim


def verify_bundle(parsed: ParsedBundle, artifact: bytes | None, trust: Trust) -> BundleResult:
    """Step (3) alone: verify a parsed bundle's signature (over `artifact` for a message
    signature, over its own envelope for DSSE) against `trust`."""
    if parsed.material == "public-key":
        return _verify_with_key(parsed, artifact, trust.keys, trust.trusted_root)
    from pysbx.signing.keyless import verify_keyless

    return verify_keyless(parsed, artifact, trust.identities, trust.trusted_root)


def _verify_with_key(
    parsed: ParsedBundle, artifact: bytes | None, keys: tuple[TrustedKey, ...], trusted_root: Path | None
) -> BundleResult:
    if not keys:
        raise VerificationError(
            "untrusted-key", "the bundle is signed with a public key, and the policy trusts no keys"
        )
    hinted = [key for key in keys if parsed.key_hint is not None and key.hint == parsed.key_hint]
    checked = ["bundle structure"]
    content = parsed.content
    if isinstance(content, DsseEnvelope):
        signed = pre_authentication_encoding(content.payload_type, content.payload)
        signatures = [sig for _, sig in content.signatures]
        payload_type: str | None = content.payload_type
        payload = content.payload
        what = "DSSE envelope (PAE of payload type and payload)"
    else:
        assert artifact is not None, "callers supply the artifact of a message signature"
        if content.digest is not None:
            if hashlib.sha256(artifact).digest() != content.digest:
                raise VerificationError(
                    "signature", "the signed payload's SHA-256 differs from the bundle's message digest"
                )
            checked.append("payload SHA-256 equals the bundle's message digest")
        signed, signatures, payload_type, payload = artifact, [content.signature], None, artifact
        what = "message signature over the payload"
    for key in hinted + [key for key in keys if key not in hinted]:
        if any(signature_is_valid(key.key, signature, signed) for signature in signatures):
            checked.append(f"{what} by trusted key {key.fingerprint} ({key.source})")
            what_was_signed = SignedContent(key.key, payload, tuple(signatures), isinstance(content, DsseEnvelope))
            log = check_log_entries(parsed.tlog_entries, what_was_signed, trusted_root)
            return BundleResult(
                payload_type,
                payload,
                signer=f"key {key.fingerprint}",
                time_source=_key_time_source(log),
                checked=checked + log.checked,
                not_checked=_unchecked_key_material(parsed, log),
            )
    if hinted:
        raise VerificationError(
            "signature", f"the signature does not verify with the key its hint names ({hinted[0].source}): tampered"
        )
    raise VerificationError(
        "untrusted-key", f"the signature verifies with none of the {len(keys)} keys the policy trusts"
    )


def _key_time_source(log: LogReport) -> str:
    """A key signature has a verified time only when a trusted log's signed entry timestamp
    says when it was logged."""
    if log.integrated_time is None:
        return NO_TRUSTED_TIME
    return f"transparency-log integrated time {log.integrated_time:%Y-%m-%dT%H:%M:%SZ} (signed entry timestamp)"


def _unchecked_key_material(parsed: ParsedBundle, log: LogReport) -> list[str]:
    if log.integrated_time is None:
        unchecked = ["signing time (a key signature is not bound to a time; key expiry and revocation are not known)"]
    else:
        unchecked = ["key expiry and revocation (a key has no validity window)"]
    unchecked.extend(log.not_checked)
    if parsed.has_timestamps:
        unchecked.append("RFC 3161 timestamps carried by the bundle")
    return unchecked
