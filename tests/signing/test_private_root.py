"""Keyless signatures from a private Sigstore deployment (tests/signing/privateroot.py: a CA
with Fulcio's extensions, a CT log, a Rekor-style log), verified offline by the real
sigstore-python through `signing.verify.verify_image` and `pysandbox verify`: accepted when
right, refused with its own kind for each tampering. Then public-key bundles that carry a log
entry from the same log, checked by `signing.tlog`."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pysbx.images.errors import ImageError
from pysbx.images.extract import unpack_image
from pysbx.images.image import Image, open_image
from pysbx.policies.loader import load_policy
from pysbx.policies.model import SigningPolicy
from pysbx.signing.errors import VerificationError
from pysbx.signing.keys import generate_key_pair, load_private_key
from pysbx.signing.sign import SignatureKind, SignedBundle, image_reference, sign_image, write_bundle_file
from pysbx.signing.tlog import root_from_inclusion_proof
from pysbx.signing.verify import Verdict, verify_image
from tests.imagekit import T, image_of, write_image
from tests.signing.privateroot import (
    EMAIL_SIGNER,
    GITHUB_WORKFLOW,
    PrivateRoot,
    SignerIdentity,
    TransparencyLog,
    inclusion_path,
    merkle_tree_hash,
)

runner = CliRunner()
PYSANDBOX = str(Path(sys.executable).parent / "pysandbox")

POLICY = """\
version: 1
extends: strict
signing:
  trusted_root: trusted_root.json
  identities:
    - issuer: https://token.actions.githubusercontent.com
      subject: https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.0.0
      repository: acme/app
      workflow_ref: refs/tags/v1.0.0
    - issuer: https://accounts.acme.test
      subject_regex: release@acme\\.test
  keys: [team.pub]
"""


pytestmark = pytest.mark.usefixtures("offline")


@pytest.fixture(scope="module")
def root() -> PrivateRoot:
    return PrivateRoot()


@pytest.fixture
def site(tmp_path: Path, root: PrivateRoot) -> Path:
    """A folder with the trusted root, a team key pair and the policy that names them."""
    root.write_trusted_root(tmp_path / "trusted_root.json")
    pair = generate_key_pair()
    (tmp_path / "team.key").write_bytes(pair.private_pem)
    (tmp_path / "team.pub").write_bytes(pair.public_pem)
    (tmp_path / "policy.yaml").write_text(POLICY)
    return tmp_path


def build(site: Path, content: bytes = b"hello\n", layout: str = "docker-legacy") -> Image:
    folder = site / f"{layout}-{content.hex()[:16]}"
    folder.mkdir()
    return open_image(write_image(image_of([T("app", data=content)]), folder, layout))


def sidecar(image: Image) -> Path:
    return Path(image.source + ".sigstore.json")


def keyless(root: PrivateRoot, image: Image, kind: SignatureKind = "dsse", **options: Any) -> SignedBundle:
    return root.sign_keyless(str(image.manifest_digest), image_reference(image), kind, **options)


def attach(image: Image, signed: SignedBundle) -> Path:
    """Write the bundle as the image's sidecar (with its payload beside it for a message)."""
    write_bundle_file(signed, sidecar(image))
    return sidecar(image)


def policy_of(site: Path) -> SigningPolicy:
    return load_policy(site / "policy.yaml").policy.signing


def cli_verdict(site: Path, image: Image) -> tuple[int, dict[str, Any]]:
    """`pysandbox verify IMAGE --policy P --format json`, in process."""
    from pysbx.cli.signing_cmd import app

    result = runner.invoke(app, ["verify", image.source, "--policy", str(site / "policy.yaml"), "--format", "json"])
    return result.exit_code, json.loads(result.stdout) if result.stdout.strip() else {}


def assert_refused(site: Path, image: Image, kind: str, words: str = "") -> Verdict:
    """Refused with `kind` by the library and by the CLI (exit 1), in one sentence."""
    verdict = verify_image(image, policy_of(site))
    assert not verdict.verified and verdict.refusal == kind, verdict.reason
    assert verdict.reason and "\n" not in verdict.reason and words in verdict.reason, verdict.reason
    code, document = cli_verdict(site, image)
    assert code == 1 and document["refusal"] == kind and document["verified"] is False
    return verdict


# ----- accepted ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dsse", "message"])
def test_a_keyless_signature_from_the_private_root_verifies(site: Path, root: PrivateRoot, kind: SignatureKind) -> None:
    image = build(site)
    attach(image, keyless(root, image, kind))
    verdict = verify_image(image, policy_of(site))
    assert verdict.verified, verdict.reason
    assert verdict.manifest_digest == str(image.manifest_digest)
    assert verdict.signer == f"{GITHUB_WORKFLOW.subject} (issuer {GITHUB_WORKFLOW.issuer})"
    assert verdict.time_source == "transparency-log integrated time"
    assert any("SCT" in item for item in verdict.checked) and not verdict.not_checked
    code, document = cli_verdict(site, image)
    assert code == 0 and document["verified"] and document["signer"] == verdict.signer


def test_an_email_signer_matched_by_a_subject_regex_verifies(site: Path, root: PrivateRoot) -> None:
    image = build(site)
    attach(image, keyless(root, image, signer=EMAIL_SIGNER))
    verdict = verify_image(image, policy_of(site))
    assert verdict.verified, verdict.reason
    assert verdict.signer == "release@acme.test (issuer https://accounts.acme.test)"


def test_the_installed_pysandbox_verifies_and_refuses_with_its_exit_codes(site: Path, root: PrivateRoot) -> None:
    image = build(site)
    other = build(site, b"other\n")
    attach(image, keyless(root, image))
    attach(other, SignedBundle(sidecar(image).read_bytes(), b"", "dsse"))

    def run(target: Image, policy: Path) -> subprocess.CompletedProcess[str]:
        arguments = [PYSANDBOX, "verify", target.source, "--policy", str(policy), "--format", "json"]
        return subprocess.run(arguments, capture_output=True, text=True, timeout=60)

    verified = run(image, site / "policy.yaml")
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["signer"].startswith(GITHUB_WORKFLOW.subject)
    replayed = run(other, site / "policy.yaml")
    assert replayed.returncode == 1 and json.loads(replayed.stdout)["refusal"] == "replay"
    (site / "trusted_root.json").write_text("{}")
    broken_root = run(image, site / "policy.yaml")
    assert broken_root.returncode == 2 and "Traceback" not in broken_root.stderr
    assert broken_root.stderr.count("\n") == 1 and "trusted_root.json" in broken_root.stderr


# ----- refused: who signed, and what -----------------------------------------------------------


def test_an_unsigned_image_is_refused(site: Path) -> None:
    assert_refused(site, build(site), "unsigned", "not signed")


@pytest.mark.parametrize("kind", ["dsse", "message"])
def test_a_signature_for_another_image_is_refused_as_a_replay(
    site: Path, root: PrivateRoot, kind: SignatureKind
) -> None:
    signed_image, other = build(site, b"good\n"), build(site, b"evil!\n")
    signed = keyless(root, signed_image, kind)
    attach(other, signed)
    verdict = assert_refused(site, other, "replay", str(signed_image.manifest_digest))
    assert str(other.manifest_digest) in (verdict.reason or "")


WRONG_SIGNERS = {
    "subject": replace(GITHUB_WORKFLOW, subject="https://github.com/acme/app/.github/workflows/evil.yml@refs/heads/x"),
    "issuer": replace(GITHUB_WORKFLOW, issuer="https://token.evil.test"),
    "repository claim": replace(GITHUB_WORKFLOW, repository="evil/app"),
    "workflow ref claim": replace(GITHUB_WORKFLOW, workflow_ref="refs/heads/unreviewed"),
    "email outside the regex": SignerIdentity("release@acme.test.evil.test", EMAIL_SIGNER.issuer),
}


@pytest.mark.parametrize("what", WRONG_SIGNERS)
def test_a_signer_the_policy_does_not_name_is_refused(site: Path, root: PrivateRoot, what: str) -> None:
    image = build(site)
    signer = WRONG_SIGNERS[what]
    attach(image, keyless(root, image, signer=signer))
    reason = assert_refused(site, image, "identity", "not one the policy trusts").reason or ""
    assert f"the certificate names {signer.subject} (issuer {signer.issuer})" in reason
    assert signer.repository is None or f"repository {signer.repository}" in reason


def test_a_certificate_from_another_ca_is_refused_as_an_untrusted_root(site: Path, root: PrivateRoot) -> None:
    """Same logs, same identity: only the CA differs, so only the chain can refuse it."""
    image = build(site)
    attach(image, keyless(PrivateRoot.sharing_logs_of(root, "rogue-fulcio"), image))
    assert_refused(site, image, "untrusted-root", "trusted root")


@pytest.mark.parametrize(
    ("when", "offset"),
    [("after the certificate expired", timedelta(minutes=11)), ("before it was valid", timedelta(minutes=-2))],
)
def test_a_certificate_not_valid_at_the_logs_integrated_time_is_refused(
    site: Path, root: PrivateRoot, when: str, offset: timedelta
) -> None:
    """The log honestly records a signature made outside the leaf's 10 minutes."""
    image = build(site)
    attach(image, keyless(root, image, integrated_time=root.signing_time + offset))
    assert_refused(site, image, "untrusted-root", "not valid at the log's integrated time")


@pytest.mark.parametrize(("sct", "words"), [("missing", "signed certificate timestamp"), ("rogue", "SCT")])
def test_a_certificate_without_a_trusted_sct_is_refused(site: Path, root: PrivateRoot, sct: str, words: str) -> None:
    image = build(site)
    attach(image, keyless(root, image, sct=sct))
    assert_refused(site, image, "untrusted-root", words)


# ----- refused: the log entry ----------------------------------------------------------------


def _flip_last_byte(encoded: str) -> str:
    raw = bytearray(base64.b64decode(encoded))
    raw[-1] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def _entry(document: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = document["verificationMaterial"]["tlogEntries"][0]
    return entry


def flip_proof_hash(document: dict[str, Any]) -> None:
    hashes = _entry(document)["inclusionProof"]["hashes"]
    hashes[1] = _flip_last_byte(hashes[1])


def drop_proof_hash(document: dict[str, Any]) -> None:
    _entry(document)["inclusionProof"]["hashes"].pop()


def flip_checkpoint_signature(document: dict[str, Any]) -> None:
    checkpoint = _entry(document)["inclusionProof"]["checkpoint"]
    note, signature_line = checkpoint["envelope"].split("\n\n")
    dash, name, encoded = signature_line.split()
    checkpoint["envelope"] = f"{note}\n\n{dash} {name} {_flip_last_byte(encoded)}\n"


def checkpoint_by_another_log(document: dict[str, Any]) -> None:
    proof = _entry(document)["inclusionProof"]
    rogue = TransparencyLog()
    proof["checkpoint"]["envelope"] = rogue.checkpoint(int(proof["treeSize"]), base64.b64decode(proof["rootHash"]))


def flip_signed_entry_timestamp(document: dict[str, Any]) -> None:
    promise = _entry(document)["inclusionPromise"]
    promise["signedEntryTimestamp"] = _flip_last_byte(promise["signedEntryTimestamp"])


def move_integrated_time(document: dict[str, Any]) -> None:
    """A second later: still inside the certificate's validity, no longer what the log signed."""
    entry = _entry(document)
    entry["integratedTime"] = str(int(entry["integratedTime"]) + 1)


LOG_TAMPERINGS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "inclusion proof hash flipped": (flip_proof_hash, "inclusion proof"),
    "inclusion proof hash missing": (drop_proof_hash, "inclusion proof"),
    "checkpoint signature flipped": (flip_checkpoint_signature, "checkpoint"),
    "checkpoint signed by another log": (checkpoint_by_another_log, "checkpoint"),
    "signed entry timestamp flipped": (flip_signed_entry_timestamp, "SET"),
    "integrated time moved": (move_integrated_time, "SET"),
}


def tamper(bundle: Path, change: Callable[[dict[str, Any]], None]) -> None:
    document = json.loads(bundle.read_text())
    change(document)
    bundle.write_text(json.dumps(document))


@pytest.mark.parametrize("what", LOG_TAMPERINGS)
@pytest.mark.parametrize("kind", ["dsse", "message"])
def test_a_tampered_log_entry_is_refused(site: Path, root: PrivateRoot, kind: SignatureKind, what: str) -> None:
    image = build(site)
    change, words = LOG_TAMPERINGS[what]
    tamper(attach(image, keyless(root, image, kind)), change)
    assert_refused(site, image, "untrusted-root", words)


@pytest.mark.parametrize("kind", ["dsse", "message"])
def test_a_log_entry_of_another_signature_is_refused(site: Path, root: PrivateRoot, kind: SignatureKind) -> None:
    """A genuine entry from the trusted log, but for another signing of the same image."""
    image = build(site)
    bundle = attach(image, keyless(root, image, kind))
    other_entry = _entry(json.loads(keyless(root, image, kind).bundle))
    tamper(bundle, lambda document: document["verificationMaterial"].update(tlogEntries=[other_entry]))
    assert_refused(site, image, "signature", "log entry")


# ----- refused: the content ------------------------------------------------------------------


def test_a_changed_statement_is_refused(site: Path, root: PrivateRoot) -> None:
    image = build(site)

    def add_a_subject(document: dict[str, Any]) -> None:
        envelope = document["dsseEnvelope"]
        statement = json.loads(base64.b64decode(envelope["payload"]))
        statement["subject"].append({"name": "evil", "digest": {"sha256": "0" * 64}})
        envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()

    tamper(attach(image, keyless(root, image)), add_a_subject)
    assert_refused(site, image, "signature", "DSSE")


def test_a_changed_simple_signing_payload_is_refused(site: Path, root: PrivateRoot) -> None:
    image = build(site)
    attach(image, keyless(root, image, "message"))
    payload = Path(image.source + ".payload.json")
    payload.write_bytes(payload.read_bytes().replace(b"example/app", b"example/evil"))
    assert_refused(site, image, "signature", "digest mismatch")


def test_a_flipped_layer_byte_verifies_the_manifest_but_nothing_is_unpacked(site: Path, root: PrivateRoot) -> None:
    """The signature covers the manifest, which pins each layer's digest: the flipped byte is
    caught when the layer streams, before anything is left on disk."""
    image = build(site, layout="oci-layout")
    attach(image, keyless(root, image))
    layer = Path(image.source) / image.layers[0].location
    data = bytearray(layer.read_bytes())
    data[len(data) // 2] ^= 0xFF
    layer.write_bytes(bytes(data))
    tampered = open_image(image.source)
    assert verify_image(tampered, policy_of(site)).verified
    with pytest.raises(ImageError):
        unpack_image(tampered, site / "rootfs")
    assert not (site / "rootfs").exists() or not any((site / "rootfs").iterdir())


def test_a_changed_layer_under_a_rewritten_manifest_is_refused_as_a_replay(site: Path, root: PrivateRoot) -> None:
    """Rewriting the manifest to match a changed layer makes another image: the signature is
    for the original digest."""
    image = build(site, b"good layer\n")
    signed = keyless(root, image)
    rebuilt = build(site, b"evil layer\n")
    attach(rebuilt, signed)
    assert_refused(site, rebuilt, "replay", str(image.manifest_digest))


# ----- refused: malformed bundles ------------------------------------------------------------

MALFORMED: dict[str, Callable[[dict[str, Any]], None]] = {
    "no log entry": lambda d: d["verificationMaterial"].update(tlogEntries=[]),
    "no checkpoint": lambda d: _entry(d)["inclusionProof"].pop("checkpoint"),
    "no inclusion proof": lambda d: _entry(d).pop("inclusionProof"),
    "certificate not DER": lambda d: d["verificationMaterial"].update(certificate={"rawBytes": "AAAA"}),
    "negative log index": lambda d: _entry(d).update(logIndex="-1"),
}


@pytest.mark.parametrize("what", MALFORMED)
def test_a_malformed_keyless_bundle_is_refused(site: Path, root: PrivateRoot, what: str) -> None:
    image = build(site)
    tamper(attach(image, keyless(root, image)), MALFORMED[what])
    assert_refused(site, image, "malformed")


def test_a_truncated_bundle_is_refused_as_malformed(site: Path, root: PrivateRoot) -> None:
    image = build(site)
    bundle = attach(image, keyless(root, image))
    bundle.write_bytes(bundle.read_bytes()[:-40])
    assert_refused(site, image, "malformed", "not valid JSON")


def test_an_unusable_trusted_root_is_bad_input_not_a_refusal(site: Path, root: PrivateRoot) -> None:
    image = build(site)
    attach(image, keyless(root, image))
    (site / "trusted_root.json").write_text(
        '{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"}'
    )
    with pytest.raises(VerificationError) as raised:
        verify_image(image, policy_of(site))
    assert raised.value.kind == "bad-input"
    code, _ = cli_verdict(site, image)
    assert code == 2


# ----- public-key bundles that carry a log entry ---------------------------------------------


def key_signed(site: Path, root: PrivateRoot, image: Image, kind: SignatureKind = "dsse", log: bool = True) -> Path:
    key = load_private_key(site / "team.key")
    signed = sign_image(image, key, kind)
    return attach(image, root.log_key_bundle(signed, key.public_key()) if log else signed)


@pytest.mark.parametrize("kind", ["dsse", "message"])
def test_a_logged_key_signature_has_its_entry_checked_and_a_verified_time(
    site: Path, root: PrivateRoot, kind: SignatureKind
) -> None:
    image = build(site)
    key_signed(site, root, image, kind)
    verdict = verify_image(image, policy_of(site))
    assert verdict.verified, verdict.reason
    assert verdict.signer is not None and verdict.signer.startswith("key sha256:")
    assert verdict.time_source is not None and verdict.time_source.startswith("transparency-log integrated time")
    checked = " | ".join(verdict.checked)
    for words in ("records this signature", "inclusion proof", "signed checkpoint", "signed entry timestamp"):
        assert words in checked
    assert not any("transparency" in item for item in verdict.not_checked)


def test_without_a_trusted_root_the_log_entry_is_reported_not_checked(site: Path, root: PrivateRoot) -> None:
    image = build(site)
    key_signed(site, root, image)
    verdict = verify_image(image, replace(policy_of(site), trusted_root=None))
    assert verdict.verified and verdict.time_source is not None and verdict.time_source.startswith("none")
    assert any("names no trusted_root" in item for item in verdict.not_checked)


def test_an_unlogged_key_signature_still_verifies_and_says_so(site: Path, root: PrivateRoot) -> None:
    image = build(site)
    key_signed(site, root, image, log=False)
    verdict = verify_image(image, policy_of(site))
    assert verdict.verified and any("no log entry" in item for item in verdict.not_checked)


@pytest.mark.parametrize("what", LOG_TAMPERINGS)
@pytest.mark.parametrize("kind", ["dsse", "message"])
def test_a_tampered_log_entry_of_a_key_signature_is_refused(
    site: Path, root: PrivateRoot, kind: SignatureKind, what: str
) -> None:
    image = build(site)
    change, words = LOG_TAMPERINGS[what]
    tamper(key_signed(site, root, image, kind), change)
    assert_refused(site, image, "untrusted-root", words)


@pytest.mark.parametrize("kind", ["dsse", "message"])
def test_a_key_signature_logged_for_another_payload_is_refused(
    site: Path, root: PrivateRoot, kind: SignatureKind
) -> None:
    image, other = build(site, b"one\n"), build(site, b"two\n")
    bundle = key_signed(site, root, image, kind)
    other_entry = _entry(json.loads(key_signed(site, root, other, kind).read_text()))
    tamper(bundle, lambda document: document["verificationMaterial"].update(tlogEntries=[other_entry]))
    assert_refused(site, image, "signature", "another")


def test_a_key_signature_logged_in_an_unknown_log_is_refused(site: Path, root: PrivateRoot) -> None:
    image = build(site)
    key = load_private_key(site / "team.key")
    elsewhere = PrivateRoot(now=root.now)
    attach(image, elsewhere.log_key_bundle(sign_image(image, key), key.public_key()))
    assert_refused(site, image, "untrusted-root", "does not name")


def test_a_key_signature_logged_outside_the_log_keys_validity_is_refused(site: Path, root: PrivateRoot) -> None:
    image = build(site)
    key = load_private_key(site / "team.key")
    signed = root.log_key_bundle(sign_image(image, key), key.public_key(), root.now - timedelta(days=90))
    attach(image, signed)
    assert_refused(site, image, "untrusted-root", "outside the log key's validity")


# ----- the Merkle proofs themselves ------------------------------------------------------------


def test_inclusion_proofs_recompute_the_root_for_every_leaf_of_every_small_tree() -> None:
    """signing.tlog's iterative check (RFC 9162) against the fixture's recursive PATH and MTH
    (RFC 6962): two implementations from the two texts must agree everywhere."""
    leaves = [bytes([n]) * 3 for n in range(33)]
    for size in range(1, len(leaves) + 1):
        root = merkle_tree_hash(leaves[:size])
        for index in range(size):
            path = inclusion_path(index, leaves[:size])
            assert root_from_inclusion_proof(leaves[index], index, size, path) == root
            if path:
                with pytest.raises(VerificationError):
                    root_from_inclusion_proof(leaves[index], index, size, path[:-1])
                if size > 1:
                    wrong = (index + 1) % size
                    assert root_from_inclusion_proof(leaves[wrong], index, size, path) != root
