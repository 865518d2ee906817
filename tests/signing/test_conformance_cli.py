"""`pysandbox conformance verify-bundle|sign-bundle`: the sigstore-conformance client protocol,
driven as the upstream harness drives it (the entrypoint script, arguments in protocol order)
on the shared conformance cases: exit 0 accepted, non-zero refused."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from pysbx.cli.conformance_cmd import main
from pysbx.signing.conformance import read_artifact
from pysbx.signing.errors import VerificationError
from tests.conftest import ROOT
from tests.signing.conformance_defaults import DEFAULT_IDENTITY, DEFAULT_ISSUER
from tests.signing.test_conformance import CASES, KNOWN_EXCEPTIONS, _cases, _text

ENTRYPOINT = ROOT / "examples" / "conformance" / "pysandbox-conformance"
needs_cases = pytest.mark.skipif(not CASES.is_dir(), reason="sigstore-conformance test data absent")


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    stdout: str
    stderr: str


def invoke(arguments: list[str]) -> Outcome:
    """Run the subcommand in this process (what `pysandbox conformance ARGS` runs); any
    exception other than an exit is a crash and fails the test."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(arguments)
        except SystemExit as done:  # argparse's usage errors
            code = int(done.code or 0)
    return Outcome(code, out.getvalue(), err.getvalue())


def protocol_arguments(name: str, artifact: str | None = None) -> list[str]:
    """`verify-bundle` arguments for a case, in the order the protocol fixes."""
    case = CASES / name
    arguments = ["verify-bundle", "--bundle", str(case / "bundle.sigstore.json")]
    if (case / "key.pub").exists():
        arguments += ["--key", str(case / "key.pub")]
    else:
        arguments += ["--certificate-identity", _text(case, "identity") or DEFAULT_IDENTITY]
        arguments += ["--certificate-oidc-issuer", _text(case, "issuer") or DEFAULT_ISSUER]
    if (case / "trusted_root.json").exists():
        arguments += ["--trusted-root", str(case / "trusted_root.json")]
    default = case / "artifact" if (case / "artifact").exists() else CASES / "a.txt"
    return [*arguments, artifact or str(default)]


def run_entrypoint(arguments: list[str]) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYSANDBOX": str(Path(sys.executable).parent / "pysandbox")}
    return subprocess.run(
        [str(ENTRYPOINT), *arguments], capture_output=True, text=True, env=environment, timeout=120, check=False
    )


def sha256_of(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


@needs_cases
@pytest.mark.parametrize(
    ("name", "accepted"),
    [
        ("happy-path-v0.3", True),
        ("happy-path-intoto-in-dsse-v3", True),
        ("managed-key-happy-path", True),
        ("signature-mismatch_fail", False),
        ("managed-key-wrong-key_fail", False),
    ],
)
def test_the_entrypoint_script_exits_0_when_accepted_and_non_zero_when_refused(name: str, accepted: bool) -> None:
    result = run_entrypoint(protocol_arguments(name))
    assert (result.returncode == 0) is accepted, result.stderr
    if not accepted:
        assert result.returncode in (1, 2) and result.stderr.strip().splitlines()[-1].startswith("pysandbox: error: ")
        assert "Traceback" not in result.stderr


@needs_cases
@pytest.mark.parametrize("name", _cases())
def test_every_case_through_the_subcommand(name: str) -> None:
    result = invoke(protocol_arguments(name))
    expected = not name.endswith("_fail")
    if name in KNOWN_EXCEPTIONS:
        expected = not expected
    assert (result.exit_code == 0) is expected, result.stderr


@needs_cases
@pytest.mark.parametrize(("name", "accepted"), [("happy-path-v0.3", True), ("happy-path-intoto-in-dsse-v3", True)])
def test_a_digest_stands_for_the_artifact(name: str, accepted: bool) -> None:
    case = CASES / name
    artifact = case / "artifact" if (case / "artifact").exists() else CASES / "a.txt"
    assert invoke(protocol_arguments(name, sha256_of(artifact))).exit_code == 0
    wrong = "sha256:" + hashlib.sha256(b"another artifact").hexdigest()
    assert invoke(protocol_arguments(name, wrong)).exit_code == 1


@needs_cases
def test_a_public_key_message_signature_needs_the_file_not_a_digest() -> None:
    result = invoke(protocol_arguments("managed-key-happy-path", sha256_of(CASES / "a.txt")))
    assert result.exit_code == 2 and "not only its digest" in result.stderr


def test_a_digest_naming_a_file_on_disk_is_that_file_and_a_short_one_is_a_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "sha256:" + "ab" * 32
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_bytes(b"contents")
    assert read_artifact(name).data == b"contents"
    assert read_artifact("sha256:" + "cd" * 32).data is None
    with pytest.raises(VerificationError) as missing:
        read_artifact("sha256:" + "cd" * 31)
    assert missing.value.kind == "bad-input"


@needs_cases
def test_identity_and_key_missing_is_bad_input_exit_2() -> None:
    bundle = CASES / "happy-path-v0.3" / "bundle.sigstore.json"
    result = invoke(["verify-bundle", "--bundle", str(bundle), str(CASES / "a.txt")])
    assert result.exit_code == 2 and "--certificate-identity" in result.stderr


def fake_identity_token() -> str:
    """An unsigned JWT with the claims sigstore-python checks before it talks to Fulcio
    (it never checks the token's signature itself: Fulcio does)."""
    now = int(time.time())
    claims = {
        "iss": "https://oauth2.sigstore.dev/auth",
        "sub": "tester",
        "aud": "sigstore",
        "iat": now,
        "exp": now + 600,
        "email": "tester@example.com",  # what this issuer's tokens must carry
        "email_verified": True,
    }

    def part(document: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.c2ln"


def unreachable_signing_config(tmp_path: Path) -> Path:
    """A signing config whose services are a closed port on this machine: a refused connection."""
    service = {
        "url": "http://127.0.0.1:9",
        "majorApiVersion": 1,
        "validFor": {"start": "2020-01-01T00:00:00Z"},
        "operator": "test",
    }
    document = {
        "mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json",
        "caUrls": [service],
        "oidcUrls": [service],
        "rekorTlogUrls": [service],
        "tsaUrls": [],
        "rekorTlogConfig": {"selector": "ANY"},
        "tsaConfig": {"selector": "ANY"},
    }
    path = tmp_path / "signing_config.json"
    path.write_text(json.dumps(document))
    return path


@needs_cases
def test_sign_bundle_without_a_reachable_instance_fails_in_one_line_and_quickly(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello\n")
    started = time.monotonic()
    result = run_entrypoint(
        [
            "sign-bundle",
            "--identity-token",
            fake_identity_token(),
            "--bundle",
            str(tmp_path / "a.txt.sigstore.json"),
            "--trusted-root",
            str(CASES / "happy-path-v0.3" / "trusted_root.json")
            if (CASES / "happy-path-v0.3" / "trusted_root.json").exists()
            else str(CASES / "intoto-with-custom-trust-root" / "trusted_root.json"),
            "--signing-config",
            str(unreachable_signing_config(tmp_path)),
            str(tmp_path / "a.txt"),
        ]
    )
    assert time.monotonic() - started < 60
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("pysandbox: error: keyless signing failed")
    assert "Connection refused" in result.stderr  # it got as far as asking the CA for a certificate
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "a.txt.sigstore.json").exists()


def test_sign_bundle_refuses_a_malformed_token_before_any_network(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello\n")
    result = invoke(
        ["sign-bundle", "--identity-token", "not-a-jwt", "--bundle", str(tmp_path / "b.json"), str(tmp_path / "a.txt")]
    )
    assert result.exit_code == 2 and "Identity token is malformed" in result.stderr


def test_a_usage_error_exits_2_and_the_typer_app_hands_over_too(tmp_path: Path) -> None:
    assert invoke(["verify-bundle", str(tmp_path / "a.txt")]).exit_code == 2  # no --bundle
    assert invoke(["unknown-subcommand"]).exit_code == 2
    from typer.testing import CliRunner

    from pysbx.cli.pysandbox_app import app

    handed = CliRunner().invoke(app, ["conformance", "verify-bundle", "--bundle", str(tmp_path / "none.json"), "x"])
    assert handed.exit_code == 2 and "cannot read" in handed.stderr
