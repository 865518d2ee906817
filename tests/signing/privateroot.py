"""A private Sigstore deployment for tests, made of real keys and nothing mocked:

- a certificate authority (root + intermediate) that issues Fulcio-style short-lived leaf
  certificates: code-signing EKU, the identity as a critical SAN (email or URI) under an empty
  subject, the OIDC issuer (1.3.6.1.4.1.57264.1.1 raw and .1.8 as a DER UTF8String) and the
  GitHub Actions claims (.1.5 repository and .1.6 ref raw, .1.12 source repository URI DER);
- a CT log that signs each precertificate (RFC 6962: the TBS without its poison extension,
  bound to the issuer's key hash) and whose SCT is embedded in the final certificate;
- a Rekor-style transparency log: canonicalized hashedrekord / dsse v0.0.1 bodies as leaves of
  an RFC 6962 Merkle tree, inclusion proofs, checkpoints as signed notes in Rekor's format, and
  a signed entry timestamp over the canonical {body, integratedTime, logID, logIndex};
- the `trusted_root.json` that names the three, with their validity windows.

`PrivateRoot.sign_keyless` makes a v0.3 bundle for an image's manifest digest (a DSSE in-toto
Statement, or a message signature over a simple-signing payload) the way Fulcio, the CT log and
Rekor together would; `PrivateRoot.log_key_bundle` enters a public-key bundle in the log.
Every knob a tampering test needs (identity, validity, integrated time, which CT log signs the
SCT, or none) is a parameter, so each test changes one thing and keeps the rest honest."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pysbx.signing.bundle import BUNDLE_V03_NEW, DsseEnvelope, MessageSignature, public_key_bundle
from pysbx.signing.keys import PublicKey, key_hint, sign_bytes
from pysbx.signing.payload import (
    INTOTO_PAYLOAD_TYPE,
    intoto_statement,
    pre_authentication_encoding,
    simple_signing_payload,
)
from pysbx.signing.sign import SignatureKind, SignedBundle

TRUSTED_ROOT_MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
SCT_LIST_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
POISON_OID_DER = bytes.fromhex("060a2b06010401d679020403")  # OBJECT IDENTIFIER 1.3.6.1.4.1.11129.2.4.3
FULCIO_OID = "1.3.6.1.4.1.57264.1."


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _spki(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def log_id(key: PublicKey) -> bytes:
    """RFC 6962 log ID: the SHA-256 of the log's DER public key (also Rekor's)."""
    return hashlib.sha256(_spki(key)).digest()


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def canonical_json(document: dict[str, Any]) -> bytes:
    """RFC 8785 canonical JSON for the documents used here (ASCII strings and integers):
    sorted keys, no whitespace."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


# ----- DER, just enough to take the poison extension out of a precertificate ------------


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(encoded)]) + encoded


def _der(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(content)) + content


def _der_items(data: bytes) -> list[bytes]:
    """Split concatenated DER TLVs (single-byte tags, as in certificates) into whole items."""
    items, offset = [], 0
    while offset < len(data):
        length, header = data[offset + 1], 2
        if length & 0x80:
            size = length & 0x7F
            length, header = int.from_bytes(data[offset + 2 : offset + 2 + size], "big"), 2 + size
        items.append(data[offset : offset + header + length])
        offset += header + length
    return items


def _der_content(item: bytes) -> bytes:
    length = item[1]
    return item[2 + (length & 0x7F if length & 0x80 else 0) :]


def tbs_without_poison(precertificate: x509.Certificate) -> bytes:
    """What a CT log signs for a precertificate (RFC 6962 3.2): its TBSCertificate with the
    poison extension removed, everything else byte for byte."""
    fields = _der_items(_der_content(precertificate.tbs_certificate_bytes))
    rebuilt = []
    for item in fields:
        if item[0] == 0xA3:  # [3] EXPLICIT Extensions
            extensions = _der_items(_der_content(_der_content(item)))
            kept = [ext for ext in extensions if not _der_content(ext).startswith(POISON_OID_DER)]
            item = _der(0xA3, _der(0x30, b"".join(kept)))
        rebuilt.append(item)
    return _der(0x30, b"".join(rebuilt))


# ----- the certificate authority --------------------------------------------------------


@dataclass(frozen=True)
class SignerIdentity:
    """Who Fulcio saw in the OIDC token: the SAN (an email, or a URI for workloads) and the
    issuer, plus GitHub Actions claims when the token came from a workflow."""

    subject: str
    issuer: str
    repository: str | None = None
    workflow_ref: str | None = None


GITHUB_WORKFLOW = SignerIdentity(
    subject="https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.0.0",
    issuer=GITHUB_ISSUER,
    repository="acme/app",
    workflow_ref="refs/tags/v1.0.0",
)
EMAIL_SIGNER = SignerIdentity(subject="release@acme.test", issuer="https://accounts.acme.test")


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pysandbox.test"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _utf8(text: str) -> bytes:
    return _der(0x0C, text.encode())


def fulcio_extensions(identity: SignerIdentity) -> list[x509.UnrecognizedExtension]:
    """Fulcio's OID extensions: v1 values are the raw string, v2 ones a DER UTF8String."""
    values: list[tuple[str, bytes]] = [("1", identity.issuer.encode()), ("8", _utf8(identity.issuer))]
    if identity.repository is not None:
        values += [("5", identity.repository.encode()), ("12", _utf8(f"https://github.com/{identity.repository}"))]
    if identity.workflow_ref is not None:
        values += [("6", identity.workflow_ref.encode()), ("14", _utf8(identity.workflow_ref))]
    return [x509.UnrecognizedExtension(x509.ObjectIdentifier(FULCIO_OID + arc), value) for arc, value in values]


def _san(subject: str) -> x509.SubjectAlternativeName:
    name: x509.GeneralName = x509.UniformResourceIdentifier(subject) if "://" in subject else x509.RFC822Name(subject)
    return x509.SubjectAlternativeName([name])


class CertificateAuthority:
    """A root and an intermediate, as Fulcio's; the intermediate issues the leaves."""

    def __init__(self, name: str, not_before: datetime, not_after: datetime) -> None:
        self.not_before, self.not_after = not_before, not_after
        self.root_key = ec.generate_private_key(ec.SECP384R1())
        self.root = self._ca_certificate(_name(f"{name}-root"), self.root_key, self.root_key, _name(f"{name}-root"), 1)
        self.intermediate_key = ec.generate_private_key(ec.SECP384R1())
        self.intermediate = self._ca_certificate(
            _name(f"{name}-intermediate"), self.intermediate_key, self.root_key, self.root.subject, 0
        )

    def _ca_certificate(
        self,
        subject: x509.Name,
        key: ec.EllipticCurvePrivateKey,
        signer: ec.EllipticCurvePrivateKey,
        issuer: x509.Name,
        path_length: int,
    ) -> x509.Certificate:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)  # certSign, cRLSign
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.not_before)
            .not_valid_after(self.not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
        )
        return builder.sign(signer, hashes.SHA384())

    @property
    def chain(self) -> list[x509.Certificate]:
        """Leaf-side first, as a trusted root lists a CA's chain."""
        return [self.intermediate, self.root]

    def _leaf_builder(
        self, public_key: ec.EllipticCurvePublicKey, identity: SignerIdentity, not_before: datetime, serial: int
    ) -> x509.CertificateBuilder:
        usage = x509.KeyUsage(True, False, False, False, False, False, False, False, False)  # digitalSignature
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.intermediate.subject)
            .public_key(public_key)
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(not_before + timedelta(minutes=10))
            .add_extension(usage, critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.intermediate_key.public_key()), critical=False
            )
            .add_extension(_san(identity.subject), critical=True)  # critical: the subject is empty
        )
        for extension in fulcio_extensions(identity):
            builder = builder.add_extension(extension, critical=False)
        return builder

    def issue_leaf(
        self,
        public_key: ec.EllipticCurvePublicKey,
        identity: SignerIdentity,
        not_before: datetime,
        ct_log: CtLog | None,
    ) -> x509.Certificate:
        """Fulcio's flow: issue a precertificate (poisoned), have the CT log sign it, then issue
        the final certificate with the same TBS plus the SCT list in place of the poison.
        Without a CT log the leaf carries no SCT."""
        serial = x509.random_serial_number()
        builder = self._leaf_builder(public_key, identity, not_before, serial)
        if ct_log is None:
            return builder.sign(self.intermediate_key, hashes.SHA256())
        precertificate = builder.add_extension(x509.PrecertPoison(), critical=True).sign(
            self.intermediate_key, hashes.SHA256()
        )
        sct = ct_log.sign_precertificate(precertificate, self.intermediate, not_before + timedelta(seconds=1))
        sct_list = struct.pack("!H", len(sct)) + sct
        extension_value = _der(0x04, struct.pack("!H", len(sct_list)) + sct_list)
        final = self._leaf_builder(public_key, identity, not_before, serial).add_extension(
            x509.UnrecognizedExtension(SCT_LIST_OID, extension_value), critical=False
        )
        return final.sign(self.intermediate_key, hashes.SHA256())


# ----- the CT log -----------------------------------------------------------------------


class CtLog:
    """A certificate transparency log that only signs SCTs (RFC 6962 3.2)."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.log_id = log_id(self.key.public_key())

    def sign_precertificate(self, precertificate: x509.Certificate, issuer: x509.Certificate, when: datetime) -> bytes:
        """A serialized v1 SCT for `precertificate`: the signature covers the timestamp, the
        issuer's key hash and the precertificate's TBS without its poison."""
        milliseconds = int(when.timestamp()) * 1000
        tbs = tbs_without_poison(precertificate)
        issuer_key_hash = hashlib.sha256(_spki(issuer.public_key())).digest()  # type: ignore[arg-type]
        signed = (
            struct.pack("!BBQH", 0, 0, milliseconds, 1)  # v1, certificate_timestamp, time, precert_entry
            + issuer_key_hash
            + len(tbs).to_bytes(3, "big")
            + tbs
            + struct.pack("!H", 0)  # no CT extensions
        )
        signature = self.key.sign(signed, ec.ECDSA(hashes.SHA256()))
        return (
            struct.pack("!B32sQH", 0, self.log_id, milliseconds, 0)
            + struct.pack("!BBH", 4, 3, len(signature))  # sha256, ecdsa
            + signature
        )


# ----- the transparency log -------------------------------------------------------------


def _leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def _node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(size: int) -> int:
    """The largest power of two smaller than `size` (RFC 6962 2.1)."""
    return 1 << ((size - 1).bit_length() - 1)


def merkle_tree_hash(leaves: list[bytes]) -> bytes:
    """RFC 6962 MTH, computed recursively from its definition."""
    if len(leaves) == 1:
        return _leaf_hash(leaves[0])
    k = _split(len(leaves))
    return _node_hash(merkle_tree_hash(leaves[:k]), merkle_tree_hash(leaves[k:]))


def inclusion_path(index: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 PATH(m, D[n]): the audit path, from the leaf's sibling upwards."""
    if len(leaves) <= 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*inclusion_path(index, leaves[:k]), merkle_tree_hash(leaves[k:])]
    return [*inclusion_path(index - k, leaves[k:]), merkle_tree_hash(leaves[:k])]


@dataclass
class TransparencyLog:
    """A Rekor v1 instance: entries are canonicalized bodies, the tree is RFC 6962's, and what
    it hands back is the bundle's `tlogEntries[]` item."""

    origin: str = "rekor.pysandbox.test - 4242"
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    leaves: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        for number in range(5):  # other people's entries, so proofs have some depth
            self.leaves.append(canonical_json({"filler": number}))

    @property
    def log_id(self) -> bytes:
        return log_id(self.key.public_key())

    def checkpoint(self, size: int, root: bytes) -> str:
        """A signed note as Rekor writes it: origin, size, base64 root hash; then, after a blank
        line, an em-dash line with the signer's name and base64(4-byte key hint + signature)."""
        note = f"{self.origin}\n{size}\n{_b64(root)}\n"
        signature = self.key.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        return f"{note}\n\u2014 {self.origin.split(' ')[0]} {_b64(self.log_id[:4] + signature)}\n"

    def signed_entry_timestamp(self, body: bytes, integrated_time: int, index: int) -> bytes:
        promise = {"body": _b64(body), "integratedTime": integrated_time, "logID": self.log_id.hex(), "logIndex": index}
        return self.key.sign(canonical_json(promise), ec.ECDSA(hashes.SHA256()))

    def add(self, body: dict[str, Any], integrated_time: int) -> dict[str, Any]:
        """Enter `body`, let three more entries arrive, and return the entry with its SET and
        its inclusion proof against the tree as it is then."""
        canonical = canonical_json(body)
        index = len(self.leaves)
        self.leaves.append(canonical)
        self.leaves.extend(canonical_json({"filler": len(self.leaves) + n}) for n in range(3))
        size, root = len(self.leaves), merkle_tree_hash(self.leaves)
        return {
            "logIndex": str(index),
            "logId": {"keyId": _b64(self.log_id)},
            "kindVersion": {"kind": body["kind"], "version": body["apiVersion"]},
            "integratedTime": str(integrated_time),
            "inclusionPromise": {
                "signedEntryTimestamp": _b64(self.signed_entry_timestamp(canonical, integrated_time, index))
            },
            "inclusionProof": {
                "logIndex": str(index),
                "rootHash": _b64(root),
                "treeSize": str(size),
                "hashes": [_b64(h) for h in inclusion_path(index, self.leaves)],
                "checkpoint": {"envelope": self.checkpoint(size, root)},
            },
            "canonicalizedBody": _b64(canonical),
        }


def _pem(value: x509.Certificate | PublicKey) -> bytes:
    if isinstance(value, x509.Certificate):
        return value.public_bytes(serialization.Encoding.PEM)
    return value.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def hashedrekord_body(payload: bytes, signature: bytes, verifier: x509.Certificate | PublicKey) -> dict[str, Any]:
    """Rekor's hashedrekord v0.0.1 entry for a message signature over `payload`."""
    return {
        "apiVersion": "0.0.1",
        "kind": "hashedrekord",
        "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()}},
            "signature": {"content": _b64(signature), "publicKey": {"content": _b64(_pem(verifier))}},
        },
    }


def dsse_body(envelope: dict[str, Any], verifier: x509.Certificate | PublicKey) -> dict[str, Any]:
    """Rekor's dsse v0.0.1 entry: hashes of the envelope and payload, and each signature with
    the PEM that verifies it."""
    payload = base64.b64decode(envelope["payload"])
    return {
        "apiVersion": "0.0.1",
        "kind": "dsse",
        "spec": {
            "envelopeHash": {"algorithm": "sha256", "value": hashlib.sha256(canonical_json(envelope)).hexdigest()},
            "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
            "signatures": [
                {"signature": item["sig"], "verifier": _b64(_pem(verifier))} for item in envelope["signatures"]
            ],
        },
    }


def entry_body(document: dict[str, Any], payload: bytes, verifier: x509.Certificate | PublicKey) -> dict[str, Any]:
    """The log entry Rekor would make for a bundle's content, signed by `verifier`."""
    if "dsseEnvelope" in document:
        return dsse_body(document["dsseEnvelope"], verifier)
    signature = base64.b64decode(document["messageSignature"]["signature"])
    return hashedrekord_body(payload, signature, verifier)


# ----- the deployment -------------------------------------------------------------------

SctMode = Literal["valid", "missing", "rogue"]


@dataclass
class PrivateRoot:
    """A CA, a CT log and a transparency log, and the trusted root that names them. A second
    PrivateRoot built with `sharing_logs_of` differs only in its CA."""

    now: datetime = field(default_factory=_now)
    name: str = "private-fulcio"
    ca: CertificateAuthority = field(init=False)
    ct_log: CtLog = field(default_factory=CtLog)
    tlog: TransparencyLog = field(default_factory=TransparencyLog)

    def __post_init__(self) -> None:
        self.ca = CertificateAuthority(self.name, self.now - timedelta(days=30), self.now + timedelta(days=365))

    @classmethod
    def sharing_logs_of(cls, other: PrivateRoot, name: str) -> PrivateRoot:
        return cls(now=other.now, name=name, ct_log=other.ct_log, tlog=other.tlog)

    # -- trusted_root.json

    def _log_instance(self, key: PublicKey, url: str) -> dict[str, Any]:
        return {
            "baseUrl": url,
            "hashAlgorithm": "SHA2_256",
            "publicKey": {
                "rawBytes": _b64(_spki(key)),
                "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                "validFor": {"start": _rfc3339(self.ca.not_before)},
            },
            "logId": {"keyId": _b64(log_id(key))},
        }

    def trusted_root(self) -> dict[str, Any]:
        return {
            "mediaType": TRUSTED_ROOT_MEDIA_TYPE,
            "tlogs": [self._log_instance(self.tlog.key.public_key(), "https://rekor.pysandbox.test")],
            "certificateAuthorities": [
                {
                    "subject": {"organization": "pysandbox.test", "commonName": self.name},
                    "uri": "https://fulcio.pysandbox.test",
                    "certChain": {
                        "certificates": [
                            {"rawBytes": _b64(cert.public_bytes(serialization.Encoding.DER))} for cert in self.ca.chain
                        ]
                    },
                    "validFor": {"start": _rfc3339(self.ca.not_before), "end": _rfc3339(self.ca.not_after)},
                }
            ],
            "ctlogs": [self._log_instance(self.ct_log.key.public_key(), "https://ctfe.pysandbox.test")],
            "timestampAuthorities": [],
        }

    def write_trusted_root(self, path: Path) -> Path:
        path.write_text(json.dumps(self.trusted_root(), indent=2) + "\n")
        return path

    # -- signing

    @property
    def signing_time(self) -> datetime:
        """When the default leaf starts: an hour ago, so a 10-minute certificate has expired,
        as a Fulcio certificate has when its signature is verified later."""
        return self.now - timedelta(hours=1)

    def sign_keyless(
        self,
        manifest_digest: str,
        reference: str,
        kind: SignatureKind = "dsse",
        signer: SignerIdentity = GITHUB_WORKFLOW,
        *,
        integrated_time: datetime | None = None,
        sct: SctMode = "valid",
    ) -> SignedBundle:
        """Sign as a workflow would with an ephemeral key and a Fulcio certificate, entered
        in the log at `integrated_time` (default: a minute into the certificate's 10)."""
        key = ec.generate_private_key(ec.SECP256R1())
        ct_log = {"valid": self.ct_log, "missing": None, "rogue": CtLog()}[sct]
        leaf = self.ca.issue_leaf(key.public_key(), signer, self.signing_time, ct_log)
        if kind == "dsse":
            payload = intoto_statement(manifest_digest, reference)
            signature = sign_bytes(key, pre_authentication_encoding(INTOTO_PAYLOAD_TYPE, payload))
            content: DsseEnvelope | MessageSignature = DsseEnvelope(INTOTO_PAYLOAD_TYPE, payload, (("", signature),))
        else:
            payload = simple_signing_payload(manifest_digest, reference)
            signature = sign_bytes(key, payload)
            content = MessageSignature("SHA2_256", hashlib.sha256(payload).digest(), signature)
        document = json.loads(public_key_bundle("", content))
        document["mediaType"] = BUNDLE_V03_NEW
        moment = integrated_time or self.signing_time + timedelta(minutes=1)
        entry = self.tlog.add(entry_body(document, payload, leaf), int(moment.timestamp()))
        document["verificationMaterial"] = {
            "certificate": {"rawBytes": _b64(leaf.public_bytes(serialization.Encoding.DER))},
            "tlogEntries": [entry],
        }
        return SignedBundle(json.dumps(document, indent=2).encode(), payload, kind)

    def log_key_bundle(
        self, signed: SignedBundle, public_key: PublicKey, integrated_time: datetime | None = None
    ) -> SignedBundle:
        """Enter a public-key bundle (as `signing.sign.sign_image` makes it) in the log, as
        `cosign sign --key` does when it is online; the bundle then carries the entry."""
        document = json.loads(signed.bundle)
        assert document["verificationMaterial"]["publicKey"]["hint"] == key_hint(public_key)
        moment = integrated_time or self.now - timedelta(minutes=5)
        entry = self.tlog.add(entry_body(document, signed.payload, public_key), int(moment.timestamp()))
        document["verificationMaterial"]["tlogEntries"] = [entry]
        return SignedBundle(json.dumps(document, indent=2).encode(), signed.payload, signed.kind)
