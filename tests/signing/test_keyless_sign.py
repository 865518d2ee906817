"""`pysandbox sign IMAGE --keyless`: everything short of a real Sigstore instance. The machine
has no network, so the tests check the argument rules, the token lookup, and that a missing
or silent instance ends in one line and exit 2 within a bounded time, having written nothing."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pysbx.cli.signing_cmd import app
from pysbx.signing.errors import SigningError
from pysbx.signing.keyless_sign import TOKEN_ENVIRONMENT, Instance, identity_token, sign_keyless
from tests.imagekit import T, image_of, write_image
from tests.signing.test_conformance_cli import fake_identity_token, unreachable_signing_config

runner = CliRunner()


@pytest.fixture
def layout(tmp_path: Path) -> str:
    return write_image(image_of([T("app", data=b"hi\n")]), tmp_path, "oci-layout") + ":1"


@pytest.fixture(autouse=True)
def no_ambient_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENVIRONMENT, raising=False)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ([], "name either --key KEY or --keyless"),
        (["--keyless", "--key", "k.key"], "name either --key KEY or --keyless"),
        (["--keyless", "--cosign-tag"], "--cosign-tag stores key signatures"),
        (["--keyless"], f"pass --identity-token or set {TOKEN_ENVIRONMENT}"),
        (["--keyless", "--identity-token", "not-a-jwt"], "Identity token is malformed"),
    ],
)
def test_keyless_arguments_are_checked_before_any_network(layout: str, arguments: list[str], message: str) -> None:
    result = runner.invoke(app, ["sign", layout, *arguments])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("pysandbox: error: ") and message in result.stderr


def test_the_token_comes_from_the_environment_when_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENVIRONMENT, " from-env \n")
    assert identity_token(None) == "from-env"
    assert identity_token("explicit") == "explicit"
    monkeypatch.setenv(TOKEN_ENVIRONMENT, "  ")
    with pytest.raises(SigningError):
        identity_token(None)


def test_an_unreachable_instance_fails_in_one_line_and_leaves_the_layout_unchanged(layout: str, tmp_path: Path) -> None:
    index = Path(layout.rsplit(":", 1)[0]) / "index.json"
    before = index.read_bytes()
    started = time.monotonic()
    result = runner.invoke(
        app,
        [
            "sign",
            layout,
            "--keyless",
            "--identity-token",
            fake_identity_token(),
            "--signing-config",
            str(unreachable_signing_config(tmp_path)),
        ],
    )
    assert time.monotonic() - started < 30
    assert result.exit_code == 2 and "Connection refused" in result.stderr, result.output
    assert result.stderr.count("\n") == 1
    assert index.read_bytes() == before


@pytest.fixture
def silent_service() -> Iterator[int]:
    """A TCP port that accepts connections and never answers: a network black hole."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


def test_a_silent_instance_is_given_up_at_the_deadline_not_waited_for(tmp_path: Path, silent_service: int) -> None:
    config = json.loads(unreachable_signing_config(tmp_path).read_text())
    for service in config["caUrls"] + config["rekorTlogUrls"]:
        service["url"] = f"http://127.0.0.1:{silent_service}"
    (tmp_path / "silent.json").write_text(json.dumps(config))
    started = time.monotonic()
    with pytest.raises(SigningError) as gave_up:
        sign_keyless(b"payload", fake_identity_token(), Instance(signing_config=tmp_path / "silent.json"), deadline=1.5)
    assert "did not finish within 1.5 s" in str(gave_up.value)
    assert time.monotonic() - started < 10


def test_a_trusted_root_without_a_signing_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SigningError) as refused:
        sign_keyless(b"x", fake_identity_token(), Instance(trusted_root=tmp_path / "root.json"))
    assert "--signing-config" in str(refused.value)


def test_an_unreadable_signing_config_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(SigningError) as refused:
        sign_keyless(b"x", fake_identity_token(), Instance(signing_config=tmp_path / "missing.json"))
    assert "missing.json: cannot read the signing config" in str(refused.value)
