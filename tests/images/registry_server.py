"""Real registries for the distribution tests: Debian's `docker-registry` (the distribution
registry 2.8) on 127.0.0.1 with a free port and its storage in a test folder, plain http,
TLS with a CA the test makes, or token authentication against a small token server that
the test runs in a thread. A hostile server for what a well-behaved registry never does
(ignore Range, lie about a manifest's digest, redirect elsewhere) is here too."""

from __future__ import annotations

import base64
import datetime
import http.server
import ipaddress
import json
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

REGISTRY = Path("/usr/bin/docker-registry")
SKOPEO = Path("/usr/bin/skopeo")


def needs_registry() -> None:
    if not REGISTRY.exists():
        pytest.skip("needs Debian's docker-registry (/usr/bin/docker-registry)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# -- certificates ---------------------------------------------------------------------------------


@dataclass
class Pki:
    """A CA, and a server certificate for 127.0.0.1 and localhost signed by it (PEM files)."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _certificate(
    subject: str, key: Any, issuer: str, issuer_key: Any, *, ca: bool, sans: list[x509.GeneralName]
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem_key(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("pysbx test CA", ca_key, "pysbx test CA", ca_key, ca=True, sans=[])
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = _certificate("127.0.0.1", key, "pysbx test CA", ca_key, ca=False, sans=sans)
    pki = Pki(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    pki.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key_file.write_bytes(_pem_key(key))
    return pki


# -- the token server -----------------------------------------------------------------------------


@dataclass
class TokenServer:
    """Issues RS256 JWTs for the registry's `auth: token:` scheme to one user, whose
    password it checks; anonymous and wrong-password requests get 401. The signing key's
    self-signed certificate is the registry's rootcertbundle and rides in the x5c header."""

    folder: Path
    username: str = "alice"
    password: str = "s3cret"
    service: str = "pysbx-test-registry"
    issuer: str = "pysbx-test-issuer"
    requests: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cert = _certificate("pysbx token signer", self._key, "pysbx token signer", self._key, ca=True, sans=[])
        self._cert_der = cert.public_bytes(serialization.Encoding.DER)
        self.bundle = self.folder / "token-bundle.pem"
        self.bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def issue(self, scopes: list[str], subject: str) -> str:
        now = int(time.time())
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self._cert_der).decode()]}
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64url(signature)

    def handle(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        from urllib.parse import parse_qs, urlsplit

        query = parse_qs(urlsplit(handler.path).query)
        given = handler.headers.get("Authorization", "")
        self.requests.append({"path": handler.path, "authorization": given, "query": query})
        expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        if given != f"Basic {expected}":
            _answer(handler, 401, b'{"details":"wrong or missing credentials"}')
            return
        token = self.issue(query.get("scope", []), self.username)
        _answer(handler, 200, json.dumps({"token": token, "expires_in": 300}).encode())


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _answer(handler: http.server.BaseHTTPRequestHandler, status: int, body: bytes, **headers: str) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


class _QuietHandler(http.server.BaseHTTPRequestHandler):
    route: Callable[[http.server.BaseHTTPRequestHandler], None]

    def do_GET(self) -> None:
        type(self).route(self)

    do_HEAD = do_GET
    do_POST = do_GET
    do_PUT = do_GET
    do_PATCH = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class LoopbackServer:
    port: int
    server: http.server.ThreadingHTTPServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def serve_in_thread(
    route: Callable[[http.server.BaseHTTPRequestHandler], None], host: str = "127.0.0.1"
) -> LoopbackServer:
    """An http.server on a loopback address (a free port) whose every request goes to `route`."""
    handler = type("Handler", (_QuietHandler,), {"route": staticmethod(route)})
    server = http.server.ThreadingHTTPServer((host, 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return LoopbackServer(server.server_address[1], server, thread)


# -- the registry ---------------------------------------------------------------------------------


@dataclass
class Registry:
    """A running docker-registry: its address, storage folder and log."""

    host: str
    storage: Path
    log: Path
    process: subprocess.Popen[bytes]
    tls: Pki | None = None
    tokens: TokenServer | None = None

    def access_log(self) -> list[str]:
        """The combined-format lines of the registry's log (`"GET /v2/... HTTP/1.1" 206 11`)."""
        return [
            line
            for line in self.log.read_text(errors="replace").splitlines()
            if '" ' in line and "HTTP/1.1" in line and "time=" not in line
        ]

    def blob_file(self, digest: str) -> Path:
        algorithm, hex_ = digest.split(":")
        return self.storage / "docker/registry/v2/blobs" / algorithm / hex_[:2] / hex_ / "data"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_registry(folder: Path, *, tls: Pki | None = None, tokens: TokenServer | None = None) -> Registry:
    needs_registry()
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": False}},
        "storage": {"filesystem": {"rootdirectory": str(folder / "storage")}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
    }
    if tls is not None:
        config["http"]["tls"] = {"certificate": str(tls.cert_file), "key": str(tls.key_file)}
    if tokens is not None:
        config["auth"] = {
            "token": {
                "realm": tokens.realm,
                "service": tokens.service,
                "issuer": tokens.issuer,
                "rootcertbundle": str(tokens.bundle),
            }
        }
    config_file = folder / "config.yml"
    config_file.write_text(json.dumps(config))  # YAML is a superset of JSON
    log = folder / "registry.log"
    with log.open("wb") as sink:
        process = subprocess.Popen([str(REGISTRY), "serve", str(config_file)], stdout=sink, stderr=subprocess.STDOUT)
    registry = Registry(f"127.0.0.1:{port}", folder / "storage", log, process, tls, tokens)
    _wait_until_up(registry, port)
    return registry


def _wait_until_up(registry: Registry, port: int) -> None:
    import ssl

    scheme = "https" if registry.tls else "http"
    context = ssl.create_default_context(cafile=str(registry.tls.ca_file)) if registry.tls else None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if registry.process.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {registry.log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/v2/", timeout=2, context=context):
                return
        except urllib.error.HTTPError:
            return  # 401: up, and asking for a token
        except OSError:
            time.sleep(0.05)
    registry.stop()
    raise RuntimeError(f"docker-registry did not answer on port {port}: {registry.log.read_text()[-2000:]}")


@pytest.fixture
def running() -> Iterator[list[Registry]]:
    """Registries started by a test, stopped at its end."""
    started: list[Registry] = []
    yield started
    for registry in started:
        registry.stop()


def push_with_skopeo(layout: Path, tag: str, destination: str, *, tls_verify: bool = False) -> None:
    """`skopeo copy oci:LAYOUT:TAG docker://DESTINATION` (the reference client puts images in)."""
    if not SKOPEO.exists() or shutil.which("skopeo") is None:
        pytest.skip("needs skopeo")
    subprocess.run(
        [
            str(SKOPEO),
            "copy",
            "--quiet",
            f"--dest-tls-verify={str(tls_verify).lower()}",
            f"oci:{layout}:{tag}",
            f"docker://{destination}",
        ],
        check=True,
        capture_output=True,
        env=skopeo_environment(layout.parent),
    )


def skopeo_environment(folder: Path) -> dict[str, str]:
    """skopeo as any user: without XDG_RUNTIME_DIR it reads /run/containers/UID/auth.json,
    which an ordinary user may not open (found by the user-mode suite)."""
    return {**os.environ, "HOME": str(folder), "REGISTRY_AUTH_FILE": str(folder / "skopeo-auth.json")}
