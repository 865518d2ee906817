"""The sigstore-conformance bundle-verify cases (../shared/testdata, see its SOURCE.md), run
offline through signing/: every `*_fail` case refused, every other accepted, except the two
that upstream itself expects current clients to fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from pysbx.policies.model import Identity
from pysbx.signing.bundle import parse_bundle
from pysbx.signing.conformance import verify_bundle_for_artifact
from pysbx.signing.errors import VerificationError
from pysbx.signing.verify import Trust, verify_bundle
from tests.conftest import SHARED
from tests.signing.conformance_defaults import DEFAULT_IDENTITY, DEFAULT_ISSUER

CASES = SHARED / "testdata" / "sigstore-conformance" / "bundle-verify"
# Upstream expects these to fail with current clients (SOURCE.md): sigstore-python 4.5.1
# cannot use integrated time of a rekor v2 entry, nor a TSA validity end that is inclusive.
KNOWN_EXCEPTIONS = {"intoto-with-custom-trust-root", "trust-root-tsa-validity-end-inclusive"}


pytestmark = pytest.mark.usefixtures("offline")


def _cases() -> list[str]:
    return sorted(p.name for p in CASES.iterdir() if p.is_dir()) if CASES.is_dir() else []


def _text(case: Path, name: str) -> str | None:
    return (case / name).read_text().strip() if (case / name).exists() else None


@pytest.mark.skipif(not CASES.is_dir(), reason="sigstore-conformance test data absent")
@pytest.mark.parametrize("name", _cases())
def test_conformance_case(name: str) -> None:
    case = CASES / name
    artifact = case / "artifact" if (case / "artifact").exists() else CASES / "a.txt"
    try:
        verify_bundle_for_artifact(
            case / "bundle.sigstore.json",
            artifact.read_bytes(),
            identity=_text(case, "identity") or DEFAULT_IDENTITY,
            issuer=_text(case, "issuer") or DEFAULT_ISSUER,
            key=case / "key.pub" if (case / "key.pub").exists() else None,
            trusted_root=case / "trusted_root.json" if (case / "trusted_root.json").exists() else None,
        )
        accepted = True
    except VerificationError:
        accepted = False
    expected = not name.endswith("_fail")
    if name in KNOWN_EXCEPTIONS:
        assert accepted is not expected, f"{name} now passes: remove it from KNOWN_EXCEPTIONS"
    else:
        assert accepted is expected


@pytest.mark.skipif(not CASES.is_dir(), reason="sigstore-conformance test data absent")
@pytest.mark.parametrize(
    ("identity", "accepted"),
    [
        (Identity(issuer=DEFAULT_ISSUER, subject=DEFAULT_IDENTITY), True),
        (Identity(issuer=DEFAULT_ISSUER, subject_regex=r"https://github\.com/sigstore-conformance/.*"), True),
        (Identity(issuer=DEFAULT_ISSUER, subject_regex=r"github\.com/sigstore-conformance"), False),  # must match whole
        (Identity(issuer="https://accounts.google.com", subject=DEFAULT_IDENTITY), False),
        (Identity(issuer=DEFAULT_ISSUER, subject="someone@example.com"), False),
        (
            Identity(
                issuer=DEFAULT_ISSUER,
                subject=DEFAULT_IDENTITY,
                repository="sigstore-conformance/extremely-dangerous-public-oidc-beacon",
            ),
            True,
        ),
        (Identity(issuer=DEFAULT_ISSUER, subject=DEFAULT_IDENTITY, repository="evil/fork"), False),
    ],
)
def test_keyless_identity_policy(identity: Identity, accepted: bool) -> None:
    parsed = parse_bundle((CASES / "happy-path-v0.3" / "bundle.sigstore.json").read_bytes())
    trust = Trust(identities=(identity,))
    if accepted:
        result = verify_bundle(parsed, (CASES / "a.txt").read_bytes(), trust)
        assert "issuer https://token.actions.githubusercontent.com" in result.signer
    else:
        with pytest.raises(VerificationError) as refused:
            verify_bundle(parsed, (CASES / "a.txt").read_bytes(), trust)
        assert refused.value.kind == "identity"
