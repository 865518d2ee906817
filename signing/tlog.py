"""Transparency-log entries carried by a public-key bundle, checked against the transparency
logs of the policy's trusted root. sigstore-python 4.5.1 checks log entries only inside keyless
bundles, so for `cosign sign --key` bundles that were logged this module does it, with the
standard library and `cryptography` only (the warm path of `pysandbox run` may import it).

For each entry of a kind this module understands (hashedrekord v0.0.1 for a message signature,
dsse v0.0.1 for a DSSE envelope), the steps, each raising one `VerificationError`:

1. The log is one the trusted root names (by log ID); else untrusted-root.
2. The entry's body records THIS bundle's signature, by the key that verified it, over this
   payload (as sigstore-python does for keyless bundles, against CVE-2022-36056-style swaps);
   else signature.
3. Inclusion proof: the root recomputed from the body's leaf hash and the audit path
   (RFC 9162 2.1.3.2) equals the proof's root hash; else untrusted-root.
4. Checkpoint: a signed note whose signature by the log's key verifies and whose tree size and
   root hash are the proof's; else untrusted-root.
5. Signed entry timestamp: the log's signature over the canonical JSON of body, integrated
   time, log ID and index verifies, and the integrated time is inside the log key's validity
   window and not in the future; else untrusted-root. The integrated time is then a verified
   signing time.

Entries of other kinds (rekor v2, intoto) are reported as not checked, never as checked."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from pysbx.signing.bundle import decode_base64
from pysbx.signing.errors import VerificationError
from pysbx.signing.keys import PublicKey, signature_is_valid

_CLOCK_SKEW = timedelta(minutes=5)
_MAX_PROOF_HASHES = 64
_SIGNATURE_LINE = re.compile("\u2014 (\\S+) (\\S+)\n")


@dataclass(frozen=True)
class LogKey:
    """A transparency log the trusted root names: its key and when that key was in use."""

    key: PublicKey
    valid_from: datetime | None
    valid_until: datetime | None


@dataclass(frozen=True)
class SignedContent:
    """What the bundle's verified signature covers, to compare with what the log recorded."""

    key: PublicKey
    payload: bytes  # the simple-signing payload, or the DSSE payload
    signatures: tuple[bytes, ...]
    dsse: bool


@dataclass
class LogReport:
    checked: list[str] = field(default_factory=list)
    not_checked: list[str] = field(default_factory=list)
    integrated_time: datetime | None = None  # verified by a signed entry timestamp


@dataclass(frozen=True)
class _Entry:
    index: int
    log_id: bytes
    integrated_time: int | None
    set_signature: bytes | None
    body: bytes
    proof: dict[str, Any] | None


def check_log_entries(
    entries: Sequence[dict[str, Any]], content: SignedContent, trusted_root: Path | None
) -> LogReport:
    """Check every log entry a public-key bundle carries; return what was and was not checked."""
    report = LogReport()
    if not entries:
        report.not_checked.append("transparency log: the bundle has no log entry (signed offline)")
        return report
    if trusted_root is None:
        report.not_checked.append(
            f"{len(entries)} transparency-log entries (inclusion proof, checkpoint, signed entry timestamp) "
            "carried by the bundle: the policy names no trusted_root with the log's keys"
        )
        return report
    keys = load_log_keys(trusted_root)
    for number, raw in enumerate(entries):
        entry = _parse_entry(raw, number)
        kind = _body_kind(entry.body)
        if kind not in (("dsse", "0.0.1"), ("hashedrekord", "0.0.1")):
            report.not_checked.append(f"log entry {entry.index}: kind {'/'.join(kind)} is not checked here")
            continue
        _check_entry(entry, content, keys, report)
    return report


def _check_entry(entry: _Entry, content: SignedContent, keys: dict[bytes, LogKey], report: LogReport) -> None:
    # (1): a log the trusted root names.
    log = keys.get(entry.log_id)
    if log is None:
        raise VerificationError(
            "untrusted-root",
            f"log entry {entry.index} is from log {entry.log_id.hex()}, which the trusted root does not name",
        )
    # (2): the body records this signature.
    check_body_matches(entry.body, content)
    report.checked.append(f"log entry {entry.index} records this signature, key and payload")
    # (3) and (4): inclusion proof and checkpoint.
    if entry.proof is None:
        report.not_checked.append(f"log entry {entry.index}: inclusion proof (the entry carries none)")
    else:
        size, root = verify_inclusion(entry, entry.proof)
        verify_checkpoint(entry.proof.get("checkpoint"), log.key, entry.log_id, size, root)
        report.checked.append(f"log entry {entry.index}: inclusion proof in a tree of {size} and its signed checkpoint")
    # (5): the signed entry timestamp.
    if entry.set_signature is None or entry.integrated_time is None:
        report.not_checked.append(f"log entry {entry.index}: signed entry timestamp (the entry carries none)")
        return
    verify_signed_entry_timestamp(entry, log)
    report.integrated_time = datetime.fromtimestamp(entry.integrated_time, UTC)
    report.checked.append(
        f"log entry {entry.index}: signed entry timestamp (integrated {_when(report.integrated_time)})"
    )


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# ----- the trusted root's logs -----------------------------------------------------------


def _time(value: object, where: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise VerificationError("bad-input", f"{where}: {value!r} is not an RFC 3339 time") from None


def load_log_keys(trusted_root: Path) -> dict[bytes, LogKey]:
    """The `tlogs` of a trusted_root.json (or of a client trust config holding one), by log ID."""
    try:
        document = json.loads(trusted_root.read_text())
        if isinstance(document, dict) and isinstance(document.get("trustedRoot"), dict):
            document = document["trustedRoot"]
        logs = document["tlogs"] if isinstance(document, dict) else None
        if not isinstance(logs, list):
            raise ValueError("it has no tlogs list")
        keys: dict[bytes, LogKey] = {}
        for log in logs:
            public = log["publicKey"]
            key = serialization.load_der_public_key(base64.b64decode(public["rawBytes"], validate=True))
            if not isinstance(key, PublicKey):
                raise ValueError(f"a {type(key).__name__} log key is not supported")
            der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            log_id = base64.b64decode(log.get("logId", {}).get("keyId", "")) or hashlib.sha256(der).digest()
            valid = public.get("validFor") or {}
            keys[log_id] = LogKey(
                key, _time(valid.get("start"), str(trusted_root)), _time(valid.get("end"), str(trusted_root))
            )
    except (OSError, ValueError, KeyError, TypeError, AttributeError, UnsupportedAlgorithm) as error:
        raise VerificationError(
            "bad-input", f"{trusted_root}: the transparency logs cannot be read ({error})"
        ) from None
    return keys


# ----- an entry, as a bundle carries it ---------------------------------------------------


def _b64(value: object, where: str) -> bytes:
    return decode_base64(value, where, "the log entry's")


def _number(value: object, where: str) -> int:
    """Protobuf JSON writes 64-bit integers as strings; either form, never negative."""
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise VerificationError("malformed", f"the log entry's {where} is not a non-negative integer")
    return int(value)


def _parse_entry(raw: dict[str, Any], number: int) -> _Entry:
    log_id = raw.get("logId")
    promise = raw.get("inclusionPromise")
    proof = raw.get("inclusionProof")
    if not isinstance(log_id, dict) or (promise is not None and not isinstance(promise, dict)):
        raise VerificationError("malformed", f"tlog entry {number} has no logId, or a malformed inclusionPromise")
    if proof is not None and not isinstance(proof, dict):
        raise VerificationError("malformed", f"tlog entry {number}'s inclusionProof is not an object")
    has_time = raw.get("integratedTime") not in (None, "0", 0)
    return _Entry(
        index=_number(raw.get("logIndex"), "logIndex"),
        log_id=_b64(log_id.get("keyId"), "logId.keyId"),
        integrated_time=_number(raw.get("integratedTime"), "integratedTime") if has_time else None,
        set_signature=_b64(promise.get("signedEntryTimestamp"), "signedEntryTimestamp") if promise else None,
        body=_b64(raw.get("canonicalizedBody"), "canonicalizedBody"),
        proof=proof,
    )


def _body(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise VerificationError("malformed", "a log entry's body is not JSON") from None
    if not isinstance(document, dict):
        raise VerificationError("malformed", "a log entry's body is not a JSON object")
    return document


def _body_kind(body: bytes) -> tuple[str, str]:
    document = _body(body)
    return str(document.get("kind")), str(document.get("apiVersion"))


# ----- (2) the body records this signature --------------------------------------------------


def _same_key(pem_b64: object, key: PublicKey) -> bool:
    try:
        pem = base64.b64decode(str(pem_b64), validate=True)
        recorded = serialization.load_pem_public_key(pem)
    except (binascii.Error, ValueError, UnsupportedAlgorithm):
        return False
    form = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return recorded.public_bytes(*form) == key.public_bytes(*form)


def _field(document: Any, *path: str) -> Any:
    for name in path:
        document = document.get(name) if isinstance(document, dict) else None
    return document


def check_body_matches(body: bytes, content: SignedContent) -> None:
    """The log recorded this bundle's signature by this key over this payload, in the kind
    that fits the content: hashedrekord for a message signature, dsse for an envelope."""
    document = _body(body)
    kind = document.get("kind")
    spec = document.get("spec")
    digest = hashlib.sha256(content.payload).hexdigest()
    if content.dsse and kind == "dsse":
        recorded = _field(spec, "payloadHash")
        signatures = _field(spec, "signatures") or []
        signed = any(
            isinstance(item, dict)
            and item.get("signature") in [base64.b64encode(sig).decode() for sig in content.signatures]
            and _same_key(item.get("verifier"), content.key)
            for item in signatures
        )
    elif not content.dsse and kind == "hashedrekord":
        recorded = _field(spec, "data", "hash")
        signed = _field(spec, "signature", "content") == base64.b64encode(content.signatures[0]).decode() and _same_key(
            _field(spec, "signature", "publicKey", "content"), content.key
        )
    else:
        raise VerificationError(
            "signature", f"the log entry is a {kind} entry, which cannot record this bundle's content"
        )
    if recorded != {"algorithm": "sha256", "value": digest}:
        raise VerificationError("signature", "the log entry records another payload than the one this bundle signs")
    if not signed:
        raise VerificationError("signature", "the log entry records another signature or key than this bundle's")


# ----- (3) inclusion proof ----------------------------------------------------------------------


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion_proof(leaf: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes:
    """The tree root implied by a leaf at `index` of a tree of `size` and its audit path,
    following RFC 9162 2.1.3.2; a path too short or too long for the position is refused."""
    if not 0 <= index < size:
        raise VerificationError("untrusted-root", f"the inclusion proof puts leaf {index} in a tree of {size}")
    position, last = index, size - 1
    result = hashlib.sha256(b"\x00" + leaf).digest()
    for sibling in path:
        if last == 0:
            raise VerificationError("untrusted-root", "the inclusion proof has more hashes than the tree is deep")
        if position & 1 or position == last:
            result = _node(sibling, result)
            while not position & 1 and position != 0:  # climb the right border
                position, last = position >> 1, last >> 1
        else:
            result = _node(result, sibling)
        position, last = position >> 1, last >> 1
    if last != 0:
        raise VerificationError("untrusted-root", "the inclusion proof has fewer hashes than the tree is deep")
    return result


def verify_inclusion(entry: _Entry, proof: dict[str, Any]) -> tuple[int, bytes]:
    """Check the proof against the entry's own body; return the tree size and root it proves."""
    hashes = proof.get("hashes", [])
    if not isinstance(hashes, list) or len(hashes) > _MAX_PROOF_HASHES:
        raise VerificationError("malformed", "the inclusion proof's hashes are not a short list")
    size = _number(proof.get("treeSize"), "inclusionProof.treeSize")
    root = _b64(proof.get("rootHash"), "inclusionProof.rootHash")
    path = [_b64(item, "inclusionProof.hashes[]") for item in hashes]
    computed = root_from_inclusion_proof(
        entry.body, _number(proof.get("logIndex"), "inclusionProof.logIndex"), size, path
    )
    if computed != root:
        raise VerificationError(
            "untrusted-root", f"the inclusion proof of log entry {entry.index} does not lead to its root hash: tampered"
        )
    return size, root


# ----- (4) checkpoint -------------------------------------------------------------------------


def verify_checkpoint(checkpoint: object, key: PublicKey, log_id: bytes, size: int, root: bytes) -> None:
    """A signed note (origin, size, base64 root; a blank line; em-dash signature lines) signed by
    the log's key, naming the same tree as the inclusion proof."""
    envelope = _field(checkpoint, "envelope")
    if not isinstance(envelope, str) or envelope.count("\n\n") != 1:
        raise VerificationError("malformed", "the inclusion proof has no checkpoint note")
    note, signatures = envelope.split("\n\n")
    note += "\n"
    lines = note.split("\n")
    if len(lines) < 4 or lines[1] != str(size) or lines[2] != base64.b64encode(root).decode():
        raise VerificationError(
            "untrusted-root", "the checkpoint names another tree (size or root hash) than the inclusion proof"
        )
    for _name, encoded in _SIGNATURE_LINE.findall(signatures):
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if raw[:4] == log_id[:4] and signature_is_valid(key, raw[4:], note.encode()):
            return
    raise VerificationError("untrusted-root", "the checkpoint is not signed by the trusted log's key")


# ----- (5) signed entry timestamp -----------------------------------------------------------


def verify_signed_entry_timestamp(entry: _Entry, log: LogKey) -> None:
    """The SET signs Rekor's canonical JSON (RFC 8785: sorted keys, no spaces; every value
    here is ASCII or an integer, so the standard library's output is canonical)."""
    assert entry.set_signature is not None and entry.integrated_time is not None
    promise = {
        "body": base64.b64encode(entry.body).decode(),
        "integratedTime": entry.integrated_time,
        "logID": entry.log_id.hex(),
        "logIndex": entry.index,
    }
    signed = json.dumps(promise, sort_keys=True, separators=(",", ":")).encode()
    if not signature_is_valid(log.key, entry.set_signature, signed):
        raise VerificationError(
            "untrusted-root",
            f"the signed entry timestamp (SET) of log entry {entry.index} does not verify with the log's key",
        )
    integrated = datetime.fromtimestamp(entry.integrated_time, UTC)
    if integrated > datetime.now(UTC) + _CLOCK_SKEW:
        raise VerificationError(
            "untrusted-root", f"log entry {entry.index} was integrated in the future ({_when(integrated)})"
        )
    if (log.valid_from and integrated < log.valid_from) or (log.valid_until and integrated > log.valid_until):
        raise VerificationError(
            "untrusted-root",
            f"log entry {entry.index} was integrated at {_when(integrated)}, outside the log key's validity",
        )
