"""Credentials are found where docker and podman keep them, refused from a file that another
user could write, saved by login without disturbing the rest of the file, and challenges are
answered without sending a password where it must not go. (The token dance against a real
registry and token server is in test_distribution.py.)"""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from pysbx.images.registryauth import (
    Authenticator,
    Credentials,
    RegistryError,
    TokenRequest,
    credentials_for,
    login,
    logout,
    parse_challenges,
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of the test's own, with no auth file variables set."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("DOCKER_CONFIG", "REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def write_private(path: Path, document: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    path.chmod(0o600)
    return path


def auth(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


# -- reading -------------------------------------------------------------------------------------


def test_docker_config_auths_by_host_with_or_without_scheme(home: Path) -> None:
    write_private(
        home / ".docker/config.json",
        {
            "auths": {
                "ghcr.io": auth("a", "pa:ss"),
                "https://127.0.0.1:5000": auth("b", "x"),
                "https://index.docker.io/v1/": auth("hub", "h"),
            }
        },
    )
    found = credentials_for("ghcr.io")
    assert found is not None and (found.username, found.password) == ("a", "pa:ss")
    found = credentials_for("127.0.0.1:5000")
    assert found is not None and found.username == "b"
    found = credentials_for("docker.io")
    assert found is not None and found.username == "hub"
    assert credentials_for("quay.io") is None


def test_password_is_not_in_the_repr(home: Path) -> None:
    assert "pa:ss" not in repr(Credentials("a", "pa:ss"))


def test_identity_token_entry(home: Path) -> None:
    write_private(
        home / ".docker/config.json",
        {"auths": {"r.io": {"auth": base64.b64encode(b"u:").decode(), "identitytoken": "tok"}}},
    )
    found = credentials_for("r.io")
    assert found is not None and (found.username, found.identity_token) == ("u", "tok")


def test_podman_files_come_first(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_private(home / ".docker/config.json", {"auths": {"r.io": auth("docker", "d"), "s.io": auth("docker", "d")}})
    write_private(home / "run/containers/auth.json", {"auths": {"r.io": auth("xdg", "x")}})
    write_private(home / "custom.json", {"auths": {"t.io": auth("custom", "c")}})
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(home / "run"))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(home / "custom.json"))
    assert [credentials_for(host).username for host in ("r.io", "s.io", "t.io")] == ["xdg", "docker", "custom"]  # type: ignore[union-attr]


def test_docker_config_variable(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_private(home / "elsewhere/config.json", {"auths": {"r.io": auth("moved", "m")}})
    monkeypatch.setenv("DOCKER_CONFIG", str(home / "elsewhere"))
    found = credentials_for("r.io")
    assert found is not None and found.username == "moved"


def test_namespaced_keys_are_not_taken_for_the_whole_host(home: Path) -> None:
    write_private(home / ".docker/config.json", {"auths": {"r.io/team/app": auth("team", "t")}})
    assert credentials_for("r.io") is None


def test_file_others_can_write_is_refused(home: Path) -> None:
    path = write_private(home / ".docker/config.json", {"auths": {"r.io": auth("u", "p")}})
    path.chmod(0o620)
    with pytest.raises(RegistryError) as refused:
        credentials_for("r.io")
    assert str(refused.value) == (
        f"{path}: refusing credentials from a file that other users can write (mode 0620; chmod 600 it)"
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the file away")
def test_file_of_another_user_is_refused(home: Path) -> None:
    path = write_private(home / ".docker/config.json", {"auths": {"r.io": auth("u", "p")}})
    os.chown(path, 65534, 65534)
    with pytest.raises(RegistryError, match=r"owned by uid 65534, not by you \(uid 0\)"):
        credentials_for("r.io")


def test_broken_file_is_one_line(home: Path) -> None:
    (home / ".docker").mkdir()
    (home / ".docker/config.json").write_text("{not json")
    (home / ".docker/config.json").chmod(0o600)
    with pytest.raises(RegistryError, match=r"config.json: credentials file is not valid JSON$"):
        credentials_for("r.io")


# -- credential helpers ---------------------------------------------------------------------------


@pytest.fixture
def helper(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`docker-credential-fake` on PATH: knows r.io, records what it was asked."""
    bin_dir = home / "bin"
    bin_dir.mkdir()
    script = bin_dir / "docker-credential-fake"
    script.write_text(
        "#!/bin/sh\n"
        f'read server; echo "$1 $server" >> {home}/asked\n'
        'case "$server" in\n'
        '  r.io) echo \'{"ServerURL":"r.io","Username":"helped","Secret":"pw"}\' ;;\n'
        '  t.io) echo \'{"ServerURL":"t.io","Username":"<token>","Secret":"refresh"}\' ;;\n'
        "  *) echo 'credentials not found in native keychain'; exit 1 ;;\n"
        "esac\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return home / "asked"


def test_cred_helper_for_a_host(home: Path, helper: Path) -> None:
    write_private(home / ".docker/config.json", {"credHelpers": {"r.io": "fake"}, "auths": {"r.io": auth("file", "f")}})
    found = credentials_for("r.io")
    assert found is not None and (found.username, found.password, found.source) == (
        "helped",
        "pw",
        "docker-credential-fake",
    )
    assert helper.read_text() == "get r.io\n"


def test_creds_store_answers_for_hosts_without_a_file_entry(home: Path, helper: Path) -> None:
    write_private(home / ".docker/config.json", {"credsStore": "fake", "auths": {"f.io": auth("file", "f")}})
    assert credentials_for("f.io").username == "file"  # type: ignore[union-attr]
    token = credentials_for("t.io")
    assert token is not None and token.identity_token == "refresh"
    assert credentials_for("unknown.io") is None
    assert helper.read_text() == "get t.io\nget unknown.io\n"


def test_missing_helper_is_a_clear_error(home: Path) -> None:
    path = write_private(home / ".docker/config.json", {"credsStore": "no-such-helper"})
    with pytest.raises(RegistryError) as refused:
        credentials_for("r.io")
    assert (
        str(refused.value)
        == f"{path}: credential helper docker-credential-no-such-helper (named for r.io) is not on PATH"
    )


def test_helper_name_must_be_a_program_name(home: Path) -> None:
    write_private(home / ".docker/config.json", {"credHelpers": {"r.io": "../../tmp/evil"}})
    with pytest.raises(RegistryError, match=r"credential helper name '\.\./\.\./tmp/evil' is not a program name"):
        credentials_for("r.io")


# -- login and logout -----------------------------------------------------------------------------


def test_login_keeps_every_other_key_and_writes_0600(home: Path) -> None:
    original = {
        "auths": {"other.io": auth("o", "o"), "https://r.io": auth("old", "old")},
        "credHelpers": {"gcr.io": "gcloud"},
        "psFormat": "table {{.ID}}",
        "proxies": {"default": {"httpProxy": "http://proxy:3128"}},
    }
    path = write_private(home / ".docker/config.json", original)
    path.chmod(0o600)
    assert login("r.io", "alice", "s3cret") == path
    saved = json.loads(path.read_text())
    assert saved["auths"] == {"other.io": auth("o", "o"), "r.io": auth("alice", "s3cret")}
    assert {key: saved[key] for key in ("credHelpers", "psFormat", "proxies")} == {
        key: original[key] for key in ("credHelpers", "psFormat", "proxies")
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.json"]
    assert logout("r.io") is True
    assert json.loads(path.read_text())["auths"] == {"other.io": auth("o", "o")}
    assert logout("r.io") is False


def test_login_makes_a_private_folder_and_file(home: Path) -> None:
    path = login("docker.io", "hub", "pw")
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"auths": {"https://index.docker.io/v1/": auth("hub", "pw")}}
    assert credentials_for("docker.io") == Credentials(
        "hub", "pw", source=f"{path}: auths['https://index.docker.io/v1/']"
    )


def test_login_refuses_to_rewrite_a_file_others_can_write(home: Path) -> None:
    path = write_private(home / ".docker/config.json", {})
    path.chmod(0o666)
    with pytest.raises(RegistryError, match="other users can write"):
        login("r.io", "alice", "pw")


# -- challenges -----------------------------------------------------------------------------------


def test_challenges_are_parsed() -> None:
    header = 'Bearer realm="https://auth.io/token",service="registry.io",scope="repository:a:pull repository:b:pull", Basic realm="x\\"y"'
    bearer, basic = parse_challenges(header)
    assert (bearer.scheme, bearer.params) == (
        "bearer",
        {"realm": "https://auth.io/token", "service": "registry.io", "scope": "repository:a:pull repository:b:pull"},
    )
    assert (basic.scheme, basic.params) == ("basic", {"realm": 'x"y'})
    assert parse_challenges("") == []
    assert parse_challenges("Bearer realm=https://unquoted/token")[0].params == {"realm": "https://unquoted/token"}


class FakeTokenServer:
    def __init__(self, status: int = 200, body: bytes = b'{"token":"T1"}') -> None:
        self.status, self.body = status, body
        self.asked: list[TokenRequest] = []

    def __call__(self, request: TokenRequest) -> tuple[int, bytes]:
        self.asked.append(request)
        return self.status, self.body


BEARER = 'Bearer realm="https://auth.io/token",service="reg",scope="repository:app:pull repository:lib:pull"'


def test_bearer_asks_the_realm_with_service_each_scope_and_basic_credentials() -> None:
    server = FakeTokenServer()
    authenticator = Authenticator("r.io", Credentials("alice", "pw"), server)
    header = authenticator.answer(BEARER, "repository:app:pull", "r.io/app", base_url="https://r.io")
    assert header == "Bearer T1"
    (request,) = server.asked
    assert request.url == "https://auth.io/token"
    assert request.params == [("service", "reg"), ("scope", "repository:app:pull"), ("scope", "repository:lib:pull")]
    assert request.headers == {"Authorization": "Basic " + base64.b64encode(b"alice:pw").decode()}
    assert authenticator.cached("repository:app:pull") == "Bearer T1"
    assert authenticator.cached("repository:app:pull,push") is None


def test_anonymous_bearer_sends_no_authorization() -> None:
    server = FakeTokenServer(body=b'{"access_token":"A"}')
    authenticator = Authenticator("r.io", None, server)
    assert authenticator.answer(BEARER, "s", "r.io/app", base_url="https://r.io") == "Bearer A"
    assert server.asked[0].headers == {}


def test_identity_token_is_posted_as_a_refresh_token() -> None:
    server = FakeTokenServer()
    authenticator = Authenticator("r.io", Credentials("", "", identity_token="refresh"), server)
    authenticator.answer(BEARER, "s", "r.io/app", base_url="https://r.io")
    assert server.asked[0].form == {
        "grant_type": "refresh_token",
        "refresh_token": "refresh",
        "client_id": "pysandbox",
        "service": "reg",
        "scope": "repository:app:pull repository:lib:pull",
    }


@pytest.mark.parametrize(
    ("base_url", "realm", "allowed"),
    [
        ("https://r.io", "http://auth.io/token", False),
        ("http://r.io", "http://auth.io/token", False),
        ("http://127.0.0.1:5000", "http://auth.io/token", False),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5001/token", True),
        ("https://127.0.0.1:5000", "http://127.0.0.1:5001/token", False),
        ("http://r.io", "https://auth.io/token", True),
    ],
)
def test_credentials_go_to_a_plain_http_realm_only_from_a_plain_loopback_registry(
    base_url: str, realm: str, allowed: bool
) -> None:
    server = FakeTokenServer()
    authenticator = Authenticator("r.io", Credentials("alice", "pw"), server)
    challenge = f'Bearer realm="{realm}",service="reg"'
    if allowed:
        authenticator.answer(challenge, "s", "r.io/app", base_url=base_url)
        assert server.asked
    else:
        with pytest.raises(RegistryError, match=r"refusing to send the credentials for r\.io to .* over plain http"):
            authenticator.answer(challenge, "s", "r.io/app", base_url=base_url)
        assert not server.asked


def test_basic_challenge_is_answered_with_the_credentials_for_every_scope() -> None:
    authenticator = Authenticator("r.io", Credentials("alice", "pw"), FakeTokenServer())
    header = authenticator.answer('Basic realm="r"', "a", "r.io/app", base_url="https://r.io")
    assert header == "Basic " + base64.b64encode(b"alice:pw").decode()
    assert authenticator.cached("any other scope") == header


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "r.io/app: the registry asks for authentication (401) but does not say how"),
        (
            'Negotiate abc, Digest realm="x"',
            "r.io/app: the registry asks for digest, negotiate authentication; only Basic and Bearer are supported",
        ),
        (
            'Bearer realm="file:///etc/passwd"',
            "r.io/app: the registry's token realm 'file:///etc/passwd' is not an http(s) URL",
        ),
        ('Basic realm="r"', "r.io/app: authentication required: no credentials for r.io"),
    ],
)
def test_unanswerable_challenges_are_one_line(header: str | None, message: str) -> None:
    authenticator = Authenticator("r.io", None, FakeTokenServer())
    with pytest.raises(RegistryError) as refused:
        authenticator.answer(header, "s", "r.io/app", base_url="https://r.io")
    assert str(refused.value).startswith(message)


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"token":""}', b'{"token":"a\\r\\nX-Evil: 1"}'])
def test_token_answers_without_a_usable_token_are_refused(body: bytes) -> None:
    authenticator = Authenticator("r.io", None, FakeTokenServer(body=body))
    with pytest.raises(
        RegistryError, match=r"^r.io/app: the token server https://auth.io/token (did not answer JSON|gave no token)$"
    ):
        authenticator.answer(BEARER, "s", "r.io/app", base_url="https://r.io")
