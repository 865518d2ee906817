"""Registry credentials and the token dance, as docker and podman do them.

Credentials are read from the files those tools write, first file with an entry for the
host wins: `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`, then
`$DOCKER_CONFIG/config.json` (or `~/.docker/config.json`). An entry is `auths[host].auth`
(base64 of `user:password`) or `identitytoken`; `credHelpers[host]` or `credsStore` name a
`docker-credential-NAME` program that is asked instead. A file that another user could
write is refused: it says where our passwords go and which program to run.

A registry that wants authentication answers 401 with a challenge. `Basic` is answered with
the credentials; `Bearer` sends us to a token server (the realm) with a service and a scope,
and the token it gives is sent to the registry. Credentials never travel over plain http,
except to a plain-http registry on this machine and a realm on this machine too."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pysbx.images.errors import ImageError
from pysbx.images.registryname import DOCKER_HUB, DOCKER_HUB_API, is_loopback
from pysbx.images.regular import open_regular, read_bounded

_HUB_KEY = "https://index.docker.io/v1/"
_HUB_ALIASES = frozenset({DOCKER_HUB, DOCKER_HUB_API, "index.docker.io"})
_MAX_CONFIG_BYTES = 1 << 20
_HELPER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_HELPER_TIMEOUT = 30
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM = re.compile(rf"\s*({_TOKEN})\s*=\s*([^\s,\"]+|\"(?:[^\"\\]|\\.)*\")\s*")
_TOKEN68 = re.compile(r"\s+[A-Za-z0-9._~+/-]+=*\s*(?=,|$)")
_SCHEME = re.compile(rf"[\s,]*({_TOKEN})")


class RegistryError(ImageError):
    """A registry, its credentials or its answer that cannot be used; one line that names
    the registry and repository and says what failed."""


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)
    identity_token: str | None = field(default=None, repr=False)
    source: str = ""


# -- reading credentials ---------------------------------------------------------------------


def auth_files() -> list[Path]:
    """The files docker and podman read credentials from, in the order they are consulted."""
    files = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    if os.environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    files.append(docker_config_path())
    return files


def docker_config_path() -> Path:
    folder = os.environ.get("DOCKER_CONFIG")
    return Path(folder) / "config.json" if folder else Path.home() / ".docker" / "config.json"


def credentials_for(registry: str) -> Credentials | None:
    """The credentials the user saved for `registry` (host[:port]), or None for anonymous."""
    for path in auth_files():
        document = read_auth_file(path)
        if document is None:
            continue
        found = _credentials_in(document, registry, path)
        if found is not None:
            return found
    return None


def read_auth_file(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, None when there is no such file. Refused when another
    user owns it or could write it."""
    try:
        fd = open_regular(str(path), follow=True)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise RegistryError(f"{path}: cannot read the credentials file: {error.strerror}") from None
    try:
        _check_private(fd, path)
        data = read_bounded(fd, _MAX_CONFIG_BYTES)
    except ValueError:
        raise RegistryError(f"{path}: credentials file larger than {_MAX_CONFIG_BYTES} bytes") from None
    finally:
        os.close(fd)
    return json_object(data, str(path), "credentials file")


def json_object(data: bytes, where: str, what: str) -> dict[str, Any]:
    """A JSON object a registry, a token server or a credentials file gave; RegistryError
    naming `where` and `what` for anything else."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        raise RegistryError(f"{where}: {what} is not valid JSON") from None
    if not isinstance(document, dict):
        raise RegistryError(f"{where}: {what} is not a JSON object")
    return document


def _check_private(fd: int, path: Path) -> None:
    info = os.fstat(fd)
    if info.st_uid != os.geteuid():
        raise RegistryError(
            f"{path}: refusing credentials from a file owned by uid {info.st_uid}, not by you (uid {os.geteuid()})"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise RegistryError(
            f"{path}: refusing credentials from a file that other users can write "
            f"(mode {stat.S_IMODE(info.st_mode):04o}; chmod 600 it)"
        )


def _credentials_in(document: dict[str, Any], registry: str, path: Path) -> Credentials | None:
    """credHelpers[host] first, then auths[host], then credsStore (as docker does, but a
    file entry is used before the default store, so no program runs when none is needed)."""
    helpers = document.get("credHelpers")
    if isinstance(helpers, dict):
        for key, name in helpers.items():
            if _registry_of_key(key) == _canonical(registry) and isinstance(name, str):
                return _ask_helper(name, registry, path)
    auths = document.get("auths")
    if isinstance(auths, dict):
        for key, entry in auths.items():
            if _registry_of_key(key) == _canonical(registry) and isinstance(entry, dict):
                found = _decode_entry(entry, f"{path}: auths[{key!r}]")
                if found is not None:
                    return found
    store = document.get("credsStore")
    if isinstance(store, str) and store:
        return _ask_helper(store, registry, path)
    return None


def _decode_entry(entry: dict[str, Any], where: str) -> Credentials | None:
    username = password = ""
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            username, colon, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise RegistryError(f"{where}.auth: not base64 of user:password") from None
        if not colon:
            raise RegistryError(f"{where}.auth: not base64 of user:password (no colon)")
    token = entry.get("identitytoken")
    if isinstance(token, str) and token:
        return Credentials(username, "", identity_token=token, source=where)
    if username or password:
        return Credentials(username, password, source=where)
    return None


def _ask_helper(name: str, registry: str, path: Path) -> Credentials | None:
    """Run `docker-credential-NAME get` with the server on stdin; None when it has nothing."""
    program = f"docker-credential-{name}"
    if not _HELPER_NAME.fullmatch(name):
        raise RegistryError(f"{path}: credential helper name {name!r} is not a program name")
    found = shutil.which(program)
    if found is None:
        raise RegistryError(f"{path}: credential helper {program} (named for {registry}) is not on PATH")
    try:
        done = subprocess.run(
            [found, "get"], input=_helper_server(registry), capture_output=True, text=True, timeout=_HELPER_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        raise RegistryError(f"{program} get: no answer for {registry} in {_HELPER_TIMEOUT} s") from None
    except OSError as error:
        raise RegistryError(f"{program}: cannot run: {error.strerror}") from None
    if done.returncode != 0:
        said = (done.stdout + done.stderr).strip()
        if "credentials not found" in said.lower():
            return None
        raise RegistryError(f"{program} get failed for {registry}: {said.splitlines()[0] if said else done.returncode}")
    try:
        answer = json.loads(done.stdout)
        username, secret = answer["Username"], answer["Secret"]
    except (ValueError, KeyError, TypeError):
        raise RegistryError(f"{program} get: answer for {registry} is not JSON with Username and Secret") from None
    if not isinstance(username, str) or not isinstance(secret, str):
        raise RegistryError(f"{program} get: answer for {registry} is not JSON with Username and Secret")
    if username == "<token>":
        return Credentials("", "", identity_token=secret, source=program)
    return Credentials(username, secret, source=program)


def _helper_server(registry: str) -> str:
    return _HUB_KEY if _canonical(registry) == DOCKER_HUB else registry


def _canonical(registry: str) -> str:
    return DOCKER_HUB if registry in _HUB_ALIASES else registry


def _registry_of_key(key: str) -> str | None:
    """`host`, `https://host`, `https://host/v1/` name a registry; `host/namespace` keys
    (podman's per-repository entries) are not read."""
    rest = key.split("://", 1)[1] if "://" in key else key
    host, _, path = rest.partition("/")
    if path.strip("/") not in ("", "v1", "v2"):
        return None
    return _canonical(host)


# -- login and logout ------------------------------------------------------------------------


def login(registry: str, username: str, password: str) -> Path:
    """Save credentials for `registry` in docker's config file (mode 0600), keeping every
    other key; return the file written."""
    if ":" in username:
        raise RegistryError(f"login to {registry}: a user name cannot contain ':'")
    path = docker_config_path()
    document = read_auth_file(path) or {}
    auths = document.setdefault("auths", {})
    if not isinstance(auths, dict):
        raise RegistryError(f"{path}: auths is not a JSON object")
    for key in [key for key in auths if _registry_of_key(key) == _canonical(registry)]:
        del auths[key]
    key = _helper_server(registry)
    auths[key] = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
    write_auth_file(path, document)
    return path


def logout(registry: str) -> bool:
    """Forget the saved credentials of `registry`; False when there were none in the file."""
    path = docker_config_path()
    document = read_auth_file(path)
    auths = document.get("auths") if document is not None else None
    if document is None or not isinstance(auths, dict):
        return False
    keys = [key for key in auths if _registry_of_key(key) == _canonical(registry)]
    for key in keys:
        del auths[key]
    if keys:
        write_auth_file(path, document)
    return bool(keys)


def write_auth_file(path: Path, document: dict[str, Any]) -> None:
    """Replace `path` in one rename with a 0600 file, so a reader never sees half of it and
    no other user ever can read it."""
    target = path.resolve() if path.is_symlink() else path
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w") as stream:
            os.fchmod(stream.fileno(), 0o600)
            json.dump(document, stream, indent="\t")
            stream.write("\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise RegistryError(f"{target}: cannot write the credentials file: {error.strerror}") from None


# -- challenges and tokens -------------------------------------------------------------------


@dataclass(frozen=True)
class Challenge:
    scheme: str
    params: dict[str, str]


def parse_challenges(header: str) -> list[Challenge]:
    """The challenges of a WWW-Authenticate header (RFC 7235: `scheme k=v, k="v", scheme2 ...`,
    or `scheme token68`, whose token is skipped); scheme names are lower-cased. An unquoted
    value may hold what a token may not (`realm=https://...`), as some servers send it."""
    challenges: list[Challenge] = []
    position = 0
    while (scheme := _SCHEME.match(header, position)) is not None:
        params: dict[str, str] = {}
        position = scheme.end()
        if (token68 := _TOKEN68.match(header, position)) is not None:
            position = token68.end()
        while (param := _PARAM.match(header, position)) is not None:
            value = param.group(2)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            params[param.group(1).lower()] = value
            position = param.end()
            if not header.startswith(",", position):
                break
            position += 1
        challenges.append(Challenge(scheme.group(1).lower(), params))
    return challenges


@dataclass(frozen=True)
class TokenRequest:
    """What to ask a token server: GET url?params with headers, or POST form when set."""

    url: str
    params: list[tuple[str, str]]
    headers: dict[str, str]
    form: dict[str, str] | None = None


# Sends a token request through the client's transport (its TLS, proxy, timeout and redirect
# rules) and returns the status and the body (bounded).
SendTokenRequest = Callable[[TokenRequest], tuple[int, bytes]]


class Authenticator:
    """Answers one registry's challenges and keeps the answers for the client's life: a
    token per scope (`repository:app:pull`), or the Basic header for every scope."""

    def __init__(self, registry: str, credentials: Credentials | None, send: SendTokenRequest) -> None:
        self.registry = registry
        self.credentials = credentials
        self._send = send
        self._tokens: dict[str, str] = {}
        self._basic: str | None = None

    def cached(self, scope: str) -> str | None:
        """The Authorization header already earned for `scope`, if any."""
        return self._basic or self._tokens.get(scope)

    def forget(self, scope: str) -> None:
        self._tokens.pop(scope, None)
        self._basic = None

    def answer(self, header: str | None, scope: str, where: str, *, base_url: str) -> str:
        """The Authorization header that answers the 401's WWW-Authenticate `header`, for a
        registry reached at `base_url` (credentials go over http only when that is plain
        http on this machine)."""
        parts = urlsplit(base_url)
        plain_loopback = parts.scheme == "http" and is_loopback(parts.netloc)
        challenges = parse_challenges(header or "")
        by_scheme = {challenge.scheme: challenge for challenge in challenges}
        if "bearer" in by_scheme:
            token = self._bearer_token(by_scheme["bearer"], where, plain_loopback)
            self._tokens[scope] = f"Bearer {token}"
            return self._tokens[scope]
        if "basic" in by_scheme:
            if parts.scheme != "https" and not plain_loopback and self.credentials is not None:
                raise RegistryError(f"{where}: refusing to send the password for {self.registry} over plain http")
            self._basic = self._basic_header(where)
            return self._basic
        if not challenges:
            raise RegistryError(f"{where}: the registry asks for authentication (401) but does not say how")
        schemes = ", ".join(sorted(by_scheme))
        raise RegistryError(
            f"{where}: the registry asks for {schemes} authentication; only Basic and Bearer are supported"
        )

    def no_credentials_error(self, where: str) -> RegistryError:
        return RegistryError(f"{where}: authentication required: no credentials for {self.registry}")

    def _basic_header(self, where: str) -> str:
        if self.credentials is None or self.credentials.identity_token:
            raise self.no_credentials_error(where)
        pair = f"{self.credentials.username}:{self.credentials.password}".encode()
        return "Basic " + base64.b64encode(pair).decode()

    def _bearer_token(self, challenge: Challenge, where: str, plain_loopback: bool) -> str:
        realm = challenge.params.get("realm", "")
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise RegistryError(f"{where}: the registry's token realm {realm!r} is not an http(s) URL")
        credentials = self.credentials
        if credentials is not None and parts.scheme == "http" and not (plain_loopback and is_loopback(parts.netloc)):
            raise RegistryError(
                f"{where}: refusing to send the credentials for {self.registry} to {realm} over plain http"
            )
        status, body = self._send(self._token_request(challenge, realm))
        if status in (401, 403):
            if credentials is None:
                raise self.no_credentials_error(where)
            who = credentials.username or "the identity token"
            raise RegistryError(f"{where}: the token server {realm} refused the credentials of {who} ({status})")
        if status != 200:
            raise RegistryError(f"{where}: the token server {realm} answered {status}")
        return _token_in(body, f"{where}: the token server {realm}")

    def _token_request(self, challenge: Challenge, realm: str) -> TokenRequest:
        service = challenge.params.get("service")
        scopes = challenge.params.get("scope", "").split()
        params = [("service", service)] if service else []
        params += [("scope", scope) for scope in scopes]
        credentials = self.credentials
        if credentials is not None and credentials.identity_token:
            form = {
                "grant_type": "refresh_token",
                "refresh_token": credentials.identity_token,
                "client_id": "pysandbox",
            }
            if service:
                form["service"] = service
            if scopes:
                form["scope"] = " ".join(scopes)
            return TokenRequest(realm, [], {}, form)
        headers = {}
        if credentials is not None:
            pair = f"{credentials.username}:{credentials.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        return TokenRequest(realm, params, headers)


def _token_in(body: bytes, where: str) -> str:
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):
        raise RegistryError(f"{where} did not answer JSON") from None
    token = (answer.get("token") or answer.get("access_token")) if isinstance(answer, dict) else None
    if not isinstance(token, str) or not token or any(c in token for c in "\r\n"):
        raise RegistryError(f"{where} gave no token")
    return token
