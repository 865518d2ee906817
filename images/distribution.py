"""An OCI Distribution API client for `pysandbox pull` and `push`: manifests, blobs, tags
and referrers of one registry. Every byte that comes back is checked against the digest
that named it while it streams; a blob goes from the socket to a file and is never held.

Written on `requests` rather than a registry library. Judged for this module (2026-12):
- oras 0.2.43 (ORAS Python SDK): `download_blob` writes whatever the server sends without
  checking its digest (a tampered blob was saved without complaint); no Range resume;
  `put_upload` reads the whole blob into memory; no timeouts; a retry decorator sleeps
  2 + 3^n s on any error (131 s before reporting a refused connection); one token for all
  scopes; no referrers API; imports jsonschema (125 ms against 80 ms for requests).
- python-dxf 12.1.1: verifies sha256 as it streams and streams monolithic uploads, but has
  no Range resume, no chunked upload, no referrers, no manifest size bound, forces the
  token realm to https and refuses any token auth over http (so no loopback test registry
  with tokens), keeps one token at a time, and depends on www-authenticate (0.9.2, a 2013
  parser) and tqdm.
- Both stand on requests and add little above it that fits: the digest, resume, memory,
  downgrade and credential rules here would be written around either of them anyway.
requests (already installed for sigstore) rather than bare urllib3 for proxies from the
environment with NO_PROXY, Link header parsing and streamed uploads of a file window.
Its `trust_env` is off (no ~/.netrc credentials, no REQUESTS_CA_BUNDLE) and proxies are
taken from the environment per request; redirects are followed here, not by requests, so
the Authorization header never leaves the registry's origin and https never drops to http.

http is used only when HTTPS cannot be spoken (not when a certificate is refused) and the
caller turned TLS verification off, or the registry is this machine (as Docker does)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import ssl
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import urlencode, urljoin, urlsplit

import requests
import requests.utils
from urllib3.exceptions import InsecureRequestWarning

from pysbx.images import mediatypes
from pysbx.images.digest import Digest, parse_digest
from pysbx.images.errors import ImageError
from pysbx.images.registryauth import Authenticator, Credentials, RegistryError, TokenRequest, json_object
from pysbx.images.registryname import ImageNameError, api_host, check_repository, check_tag, is_loopback
from pysbx.images.regular import NotRegularFile, open_regular

__all__ = ["ALL_MANIFEST_TYPES", "Fetched", "RegistryClient", "RegistryError"]

ALL_MANIFEST_TYPES: tuple[str, ...] = (
    mediatypes.OCI_MANIFEST,
    mediatypes.OCI_INDEX,
    mediatypes.DOCKER_MANIFEST,
    mediatypes.DOCKER_LIST,
)
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
# Blobs up to this size go in one PUT; bigger ones in PATCH chunks of this size.
UPLOAD_CHUNK_BYTES = 64 * 1024 * 1024
_READ_BYTES = 1 << 20
# A blob is read in pieces this big: a transfer cut short loses the piece it was in (urllib3
# drops a short read's bytes when it raises), and the part before it is kept for resuming.
_BLOB_PIECE = 64 * 1024
_MAX_SMALL_BODY = 64 * 1024
_TIMEOUT = (10.0, 60.0)
_MAX_REDIRECTS = 5
_MAX_TAG_PAGES = 10_000
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_GENERIC_TYPES = frozenset({"", "application/json", "text/plain", "application/octet-stream"})

# A request body, made anew for each try (a file must be re-read after a 401).
Body = Callable[[], Any]


@dataclass(frozen=True)
class Fetched:
    media_type: str
    digest: Digest
    body: bytes


class RegistryClient:
    """One registry's API: holds the connection pool, the scheme found to work and the
    tokens earned, for as long as the client lives."""

    def __init__(
        self,
        registry: str,
        *,
        tls_verify: bool = True,
        ca_file: str | None = None,
        credentials: Credentials | None = None,
        user_agent: str = "pysandbox/0.1",
    ) -> None:
        """`registry` as in an image name (`docker.io`, `127.0.0.1:5000`); credentials None
        is anonymous (registryauth.credentials_for finds the saved ones)."""
        self.registry = registry
        self._host = api_host(registry)
        self._tls_verify = tls_verify
        self._verify: bool | str = (ca_file or True) if tls_verify else False
        self._session = requests.Session()
        self._session.trust_env = False
        self._session.headers["User-Agent"] = user_agent
        self._auth = Authenticator(registry, credentials, self._send_token_request)
        self._base: str | None = None

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- manifests -------------------------------------------------------------------------

    def get_manifest(self, repository: str, reference: str, accept: Sequence[str] = ALL_MANIFEST_TYPES) -> Fetched:
        """The manifest or index named by a tag or digest. By digest its bytes must hash to
        it; by tag they must hash to the Docker-Content-Digest the registry states, if any."""
        where = self._where(repository)
        wanted = _check_reference(reference, where)
        response = self._call(
            "GET", f"/v2/{repository}/manifests/{reference}", where, scope=_pull(repository),
            headers={"Accept": ", ".join(accept)},
        )  # fmt: skip
        with response:
            if response.status_code != 200:
                raise _failure(response, where, f"manifest {reference}")
            body = _read_small(response, MAX_MANIFEST_BYTES, where, f"manifest {reference}")
            stated = response.headers.get("Docker-Content-Digest")
            content_type = response.headers.get("Content-Type", "")
        digest = _manifest_digest(body, wanted, stated, where, reference)
        return Fetched(_media_type(content_type, body), digest, body)

    def manifest_digest(self, repository: str, reference: str) -> Digest | None:
        """The digest a tag or digest names now (HEAD), None when the registry has no such
        manifest. A registry that does not say is asked for the manifest itself."""
        where = self._where(repository)
        _check_reference(reference, where)
        response = self._call(
            "HEAD", f"/v2/{repository}/manifests/{reference}", where, scope=_pull(repository),
            headers={"Accept": ", ".join(ALL_MANIFEST_TYPES)},
        )  # fmt: skip
        with response:
            if response.status_code == 404:
                return None
            if response.status_code != 200:
                raise _failure(response, where, f"manifest {reference}")
            stated = response.headers.get("Docker-Content-Digest")
        if stated is None:
            return self.get_manifest(repository, reference).digest
        return _parse_stated(stated, where, f"manifest {reference}")

    def put_manifest(self, repository: str, reference: str, media_type: str, body: bytes) -> Digest:
        """Store a manifest under a tag or its digest; return its digest."""
        where = self._where(repository)
        wanted = _check_reference(reference, where)
        if len(body) > MAX_MANIFEST_BYTES:
            raise RegistryError(f"{where}: manifest is {len(body)} bytes, more than the {MAX_MANIFEST_BYTES} allowed")
        digest = _hash(body, wanted.algorithm if wanted else "sha256")
        if wanted is not None and digest != wanted:
            raise RegistryError(f"{where}: manifest body hashes to {digest}, not to the reference {wanted}")
        response = self._call(
            "PUT", f"/v2/{repository}/manifests/{reference}", where, scope=_push(repository),
            headers={"Content-Type": media_type}, body=lambda: body,
        )  # fmt: skip
        with response:
            if response.status_code not in (200, 201):
                raise _failure(response, where, f"push of manifest {reference}")
            stated = response.headers.get("Docker-Content-Digest")
        if stated is not None and _parse_stated(stated, where, "pushed manifest") != digest:
            raise RegistryError(f"{where}: the registry stored manifest {reference} as {stated}, not as {digest}")
        return digest

    # -- blobs -----------------------------------------------------------------------------

    def blob_exists(self, repository: str, digest: Digest) -> bool:
        where = self._where(repository)
        response = self._call("HEAD", f"/v2/{repository}/blobs/{digest}", where, scope=_pull(repository))
        with response:
            if response.status_code == 404:
                return False
            if response.status_code != 200:
                raise _failure(response, where, f"blob {digest.short()}")
        return True

    def fetch_blob(self, repository: str, digest: Digest, size: int, into: str) -> None:
        """Download a blob into the file `into`, hashing and counting as it streams. A part
        already in `into` is hashed and the rest asked for with Range; a server that sends
        the whole blob anyway is read from the start. A wrong size or digest deletes the
        file; an interrupted transfer keeps it for the next try to resume."""
        where = self._where(repository)
        label = f"blob {digest.short()}"
        hasher, have = _resume_point(into, digest, size, where)
        if have == size and hasher.hexdigest() == digest.hex:
            return
        headers = {"Accept-Encoding": "identity"}
        if have:
            headers["Range"] = f"bytes={have}-"
        response = self._call(
            "GET", f"/v2/{repository}/blobs/{digest}", where, scope=_pull(repository), headers=headers
        )
        if response.status_code == 416 and have:
            response.close()
            _remove(into)
            return self.fetch_blob(repository, digest, size, into)
        with response:
            if response.status_code == 200 and have:
                hasher, have = digest.hasher(), 0
            elif response.status_code == 206 and have:
                _check_content_range(response.headers.get("Content-Range", ""), have, size, into, where, label)
            elif response.status_code != 200:
                raise _failure(response, where, label)
            have = _stream_to_file(response, into, hasher, have, size, where, label)
        if have != size:
            _remove(into)
            raise RegistryError(f"{where}: {label} is {have} bytes, the manifest says {size}")
        if hasher.hexdigest() != digest.hex:
            _remove(into)
            actual = f"{digest.algorithm}:{hasher.hexdigest()}"
            raise RegistryError(f"{where}: {label} does not match its digest (the bytes hash to {actual})")
        return None

    def push_blob(
        self,
        repository: str,
        digest: Digest,
        size: int,
        path: str,
        *,
        from_repository: str | None = None,
        chunk_size: int = UPLOAD_CHUNK_BYTES,
    ) -> None:
        """Upload the blob in file `path` unless the registry has it: mounted from
        `from_repository` when the registry agrees, else one PUT, or PATCH chunks of
        `chunk_size` for a bigger blob. The registry checks the digest."""
        where = self._where(repository)
        _check_local_size(path, size, where)
        if self.blob_exists(repository, digest):
            return
        scope = _push(repository)
        if from_repository is not None:
            _checked_name(check_repository, from_repository, f"{self.registry}/{from_repository}")
            scope = f"{scope} {_pull(from_repository)}"
        location = self._start_upload(repository, digest, from_repository, scope, where)
        if location is None:
            return
        label = f"blob {digest.short()}"
        if size > chunk_size:
            location = self._upload_chunks(location, path, size, chunk_size, scope, where, label)
            final = lambda: b""  # noqa: E731
        else:
            final = _file_body(path, 0, size)
        response = self._call(
            "PUT", _with_query(location, {"digest": str(digest)}), where, scope=scope,
            headers={"Content-Type": "application/octet-stream"}, body=final,
        )  # fmt: skip
        with response:
            if response.status_code not in (201, 204):
                raise _failure(response, where, f"upload of {label}")
            stated = response.headers.get("Docker-Content-Digest")
        if stated is not None and _parse_stated(stated, where, label) != digest:
            raise RegistryError(f"{where}: the registry stored {label} as {stated}")

    # -- listings --------------------------------------------------------------------------

    def tags(self, repository: str, *, page_size: int | None = None) -> list[str]:
        """Every tag of the repository, following the registry's Link pages."""
        where = self._where(repository)
        url = f"/v2/{repository}/tags/list" + (f"?{urlencode({'n': page_size})}" if page_size else "")
        found: list[str] = []
        for _ in range(_MAX_TAG_PAGES):
            document, next_url = self._json_page(url, where, "tag list", _pull(repository))
            tags = document.get("tags")
            if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)):
                raise RegistryError(f"{where}: tag list is not a list of strings")
            found.extend(tags or [])
            if next_url is None:
                return found
            url = next_url
        raise RegistryError(f"{where}: tag list has more than {_MAX_TAG_PAGES} pages")

    def referrers(self, repository: str, digest: Digest, artifact_type: str | None = None) -> list[dict[str, Any]]:
        """Descriptors of the manifests whose subject is `digest` (signatures, SBOMs): from
        the OCI 1.1 referrers API, or, where a registry lacks it (404), from the index the
        referrers tag schema keeps under the tag `<alg>-<hex>`."""
        where = self._where(repository)
        query = f"?{urlencode({'artifactType': artifact_type})}" if artifact_type else ""
        response = self._call(
            "GET", f"/v2/{repository}/referrers/{digest}{query}", where, scope=_pull(repository),
            headers={"Accept": mediatypes.OCI_INDEX},
        )  # fmt: skip
        with response:
            if response.status_code == 404:
                response.close()
                return self._referrers_from_tag(repository, digest, artifact_type, where)
            if response.status_code != 200:
                raise _failure(response, where, f"referrers of {digest.short()}")
            filtered = "artifactType" in response.headers.get("OCI-Filters-Applied", "")
            body = _read_small(response, MAX_MANIFEST_BYTES, where, f"referrers of {digest.short()}")
        descriptors = _index_descriptors(body, where, f"referrers of {digest.short()}")
        return descriptors if filtered else _of_type(descriptors, artifact_type)

    def referrers_tag_index(self, repository: str, digest: Digest) -> list[dict[str, Any]]:
        """Every descriptor listed under `digest`'s referrers tag (none when there is no such
        tag): what a client that adds a referrer there must keep."""
        return self._referrers_from_tag(repository, digest, None, self._where(repository))

    def ping(self) -> None:
        """Ask `/v2/` with the credentials, to tell a login that works from one that does not."""
        response = self._call("GET", "/v2/", self.registry, scope="")
        with response:
            if response.status_code != 200:
                raise _failure(response, self.registry, "API version check")

    # -- the steps behind the API ----------------------------------------------------------

    def _referrers_from_tag(
        self, repository: str, digest: Digest, artifact_type: str | None, where: str
    ) -> list[dict[str, Any]]:
        tag = referrers_tag(digest)
        response = self._call(
            "GET", f"/v2/{repository}/manifests/{tag}", where, scope=_pull(repository),
            headers={"Accept": mediatypes.OCI_INDEX},
        )  # fmt: skip
        with response:
            if response.status_code == 404:
                return []
            if response.status_code != 200:
                raise _failure(response, where, f"referrers tag {tag}")
            body = _read_small(response, MAX_MANIFEST_BYTES, where, f"referrers tag {tag}")
        return _of_type(_index_descriptors(body, where, f"referrers tag {tag}"), artifact_type)

    def _start_upload(
        self, repository: str, digest: Digest, from_repository: str | None, scope: str, where: str
    ) -> str | None:
        """POST an upload session; its URL, or None when the registry mounted the blob."""
        query = f"?{urlencode({'mount': str(digest), 'from': from_repository})}" if from_repository else ""
        response = self._call("POST", f"/v2/{repository}/blobs/uploads/{query}", where, scope=scope, body=lambda: b"")
        with response:
            if response.status_code == 201 and from_repository:
                return None
            if response.status_code != 202:
                raise _failure(response, where, f"upload of blob {digest.short()}")
            return _location(response, where)

    def _upload_chunks(
        self, location: str, path: str, size: int, chunk_size: int, scope: str, where: str, label: str
    ) -> str:
        for start in range(0, size, chunk_size):
            end = min(start + chunk_size, size)
            response = self._call(
                "PATCH", location, where, scope=scope, body=_file_body(path, start, end - start),
                headers={"Content-Type": "application/octet-stream", "Content-Range": f"{start}-{end - 1}"},
            )  # fmt: skip
            with response:
                if response.status_code != 202:
                    raise _failure(response, where, f"upload of {label} (bytes {start}-{end - 1})")
                location = _location(response, where)
        return location

    def _json_page(self, url: str, where: str, what: str, scope: str) -> tuple[dict[str, Any], str | None]:
        response = self._call("GET", url, where, scope=scope)
        with response:
            if response.status_code != 200:
                raise _failure(response, where, what)
            body = _read_small(response, MAX_MANIFEST_BYTES, where, what)
            link = response.links.get("next", {}).get("url")
            here = response.url
        document = json_object(body, where, what)
        if link is None:
            return document, None
        next_url = urljoin(here, link)
        if _origin(next_url) != _origin(self._base_url()):
            raise RegistryError(f"{where}: {what} continues at {next_url}, another server")
        return document, next_url

    # -- transport -------------------------------------------------------------------------

    def _where(self, repository: str) -> str:
        where = f"{self.registry}/{repository}"
        _checked_name(check_repository, repository, where)
        return where

    def _call(
        self,
        method: str,
        path: str,
        where: str,
        *,
        scope: str,
        headers: dict[str, str] | None = None,
        body: Body | None = None,
    ) -> requests.Response:
        """Send a request to the registry (a path, or an absolute URL it gave), answering one
        authentication challenge; the response is streamed, and the caller closes it."""
        url = path if "://" in path else self._base_url() + path
        earned = self._auth.cached(scope)
        response = self._send(method, url, where, headers or {}, earned, body)
        if response.status_code == 401 and _origin(response.url) != _origin(self._base_url()):
            response.close()  # a redirect's target asks: the registry's credentials are not for it
            raise RegistryError(f"{where}: {urlsplit(response.url).netloc}, where the registry redirected, "
                                "asks for credentials; they go to the registry only")  # fmt: skip
        if response.status_code == 401:
            challenge = response.headers.get("WWW-Authenticate")
            response.close()
            if earned is not None:
                self._auth.forget(scope)
            authorization = self._auth.answer(challenge, scope, where, base_url=self._base_url())
            response = self._send(method, url, where, headers or {}, authorization, body)
            if response.status_code == 401:
                response.close()
                raise self._refused(where)
        if response.status_code == 403:
            response.close()
            who = self._auth.credentials.username if self._auth.credentials else "anonymous"
            raise RegistryError(f"{where}: access denied ({who}, {method} {urlsplit(url).path})")
        return response

    def _refused(self, where: str) -> RegistryError:
        credentials = self._auth.credentials
        if credentials is None:
            return self._auth.no_credentials_error(where)
        return RegistryError(
            f"{where}: authentication failed: {self.registry} refused the credentials of {credentials.username}"
        )

    def _send(
        self,
        method: str,
        url: str,
        where: str,
        headers: dict[str, str],
        authorization: str | None,
        body: Body | None,
        *,
        auth_origin: str | None = None,
        form: dict[str, str] | None = None,
    ) -> requests.Response:
        """One request, following redirects of GET and HEAD ourselves: the Authorization
        header goes only to `auth_origin` (the registry's by default), never down to http."""
        auth_origin = auth_origin or _origin(self._base_url())
        for _ in range(_MAX_REDIRECTS + 1):
            sent = dict(headers)
            if authorization is not None and _origin(url) == auth_origin:
                sent["Authorization"] = authorization
            response = self._request(method, url, where, sent, body() if body else form)
            if response.status_code not in _REDIRECTS or method not in ("GET", "HEAD"):
                return response
            target = urljoin(url, response.headers.get("Location", ""))
            response.close()
            if urlsplit(url).scheme == "https" and urlsplit(target).scheme != "https":
                raise RegistryError(f"{where}: refusing a redirect from https to {target}")
            url = target
        raise RegistryError(f"{where}: more than {_MAX_REDIRECTS} redirects")

    def _request(self, method: str, url: str, where: str, headers: dict[str, str], data: Any) -> requests.Response:
        try:
            with warnings.catch_warnings():
                if self._verify is False:
                    warnings.simplefilter("ignore", InsecureRequestWarning)
                return self._session.request(
                    method, url, headers=headers, data=data, stream=True, timeout=_TIMEOUT, verify=self._verify,
                    proxies=requests.utils.get_environ_proxies(url), allow_redirects=False,
                )  # fmt: skip
        except requests.exceptions.SSLError as error:
            raise RegistryError(f"{where}: {_tls_failure(error, urlsplit(url).netloc)}") from None
        except requests.RequestException as error:
            raise RegistryError(f"{where}: cannot reach {url}: {_reason(error)}") from None

    def _base_url(self) -> str:
        """`https://host`, or `http://host` when HTTPS is not spoken there and plain http is
        allowed (TLS verification off, or this machine). Found once per client."""
        if self._base is not None:
            return self._base
        secure = f"https://{self._host}"
        try:
            self._probe(secure)
        except requests.RequestException as error:
            may_fall_back = not self._tls_verify or is_loopback(self._host)
            if not may_fall_back or _certificate_refused(error):
                raise RegistryError(f"{self.registry}: {_tls_failure(error, self._host)}") from None
            plain = f"http://{self._host}"
            try:
                self._probe(plain)
            except requests.RequestException as second:
                reasons = f"https: {_reason(error)}; http: {_reason(second)}"
                raise RegistryError(f"{self.registry}: cannot reach the registry ({reasons})") from None
            self._base = plain
            return plain
        self._base = secure
        return secure

    def _probe(self, base: str) -> None:
        with warnings.catch_warnings():
            if self._verify is False:
                warnings.simplefilter("ignore", InsecureRequestWarning)
            self._session.get(
                base + "/v2/", timeout=_TIMEOUT, verify=self._verify, allow_redirects=False,
                proxies=requests.utils.get_environ_proxies(base), stream=True,
            ).close()  # fmt: skip

    def _send_token_request(self, request: TokenRequest) -> tuple[int, bytes]:
        where = f"{self.registry}: token server {request.url}"
        method = "POST" if request.form is not None else "GET"
        url = request.url + (("&" if "?" in request.url else "?") + urlencode(request.params) if request.params else "")
        authorization = request.headers.get("Authorization")
        headers = {key: value for key, value in request.headers.items() if key != "Authorization"}
        response = self._send(
            method, url, where, headers, authorization, None, auth_origin=_origin(request.url), form=request.form
        )
        with response:
            if response.status_code != 200:
                return response.status_code, b""
            return 200, _read_small(response, _MAX_SMALL_BODY, where, "token")


# -- pieces that need no client ------------------------------------------------------------------


def referrers_tag(digest: Digest) -> str:
    """The referrers tag schema's tag for a subject: `<alg>-<hex>`, cut to fit a tag."""
    return f"{digest.algorithm[:32]}-{digest.hex[:64]}"


def _pull(repository: str) -> str:
    return f"repository:{repository}:pull"


def _push(repository: str) -> str:
    return f"repository:{repository}:pull,push"


def _check_reference(reference: str, where: str) -> Digest | None:
    """The digest when `reference` is one; else it must be a tag."""
    if ":" in reference:
        try:
            return parse_digest(reference, f"{where}: reference")
        except ImageError as error:
            raise RegistryError(str(error)) from None
    _checked_name(check_tag, reference, f"{where}:{reference}")
    return None


def _checked_name(check: Callable[[str, str], None], text: str, where: str) -> None:
    """A repository or tag checked by registryname, whose error becomes the client's."""
    try:
        check(text, where)
    except ImageNameError as error:
        raise RegistryError(str(error)) from None


def _hash(body: bytes, algorithm: str) -> Digest:
    return Digest(algorithm, hashlib.new(algorithm, body).hexdigest())


def _parse_stated(stated: str, where: str, what: str) -> Digest:
    try:
        return parse_digest(stated.strip(), f"{where}: {what}: Docker-Content-Digest")
    except ImageError as error:
        raise RegistryError(str(error)) from None


def _manifest_digest(body: bytes, wanted: Digest | None, stated: str | None, where: str, reference: str) -> Digest:
    if wanted is not None:
        actual = _hash(body, wanted.algorithm)
        if actual != wanted:
            raise RegistryError(f"{where}: manifest {reference} does not match its digest (the bytes hash to {actual})")
        return wanted
    if stated is None:
        return _hash(body, "sha256")
    claimed = _parse_stated(stated, where, f"manifest {reference}")
    actual = _hash(body, claimed.algorithm)
    if actual != claimed:
        raise RegistryError(f"{where}: manifest {reference}: the registry says {claimed}, the bytes hash to {actual}")
    return claimed


def _media_type(content_type: str, body: bytes) -> str:
    """The Content-Type, or the document's own mediaType where the server sent a generic one."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in _GENERIC_TYPES:
        return media_type
    try:
        declared = json.loads(body).get("mediaType")
    except (ValueError, RecursionError, AttributeError):
        return media_type
    return declared if isinstance(declared, str) else media_type


def _index_descriptors(body: bytes, where: str, what: str) -> list[dict[str, Any]]:
    """The `manifests` of an image index, each checked to be a descriptor."""
    manifests = json_object(body, where, what).get("manifests") or []
    if not isinstance(manifests, list):
        raise RegistryError(f"{where}: {what}: manifests is not a list")
    for i, descriptor in enumerate(manifests):
        label = f"{where}: {what}: manifests[{i}]"
        if not isinstance(descriptor, dict) or not isinstance(descriptor.get("mediaType"), str):
            raise RegistryError(f"{label} is not a descriptor with a mediaType")
        size = descriptor.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise RegistryError(f"{label}.size is not a non-negative integer")
        _parse_stated(str(descriptor.get("digest")), label, "digest")
    return manifests


def _of_type(descriptors: list[dict[str, Any]], artifact_type: str | None) -> list[dict[str, Any]]:
    if artifact_type is None:
        return descriptors
    return [descriptor for descriptor in descriptors if descriptor.get("artifactType") == artifact_type]


def _read_small(response: requests.Response, limit: int, where: str, what: str) -> bytes:
    """A response body of at most `limit` bytes (a registry that sends more is refused)."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RegistryError(f"{where}: {what} is {declared} bytes, more than the {limit} allowed")
    chunks, size = [], 0
    try:
        for chunk in response.iter_content(_READ_BYTES):
            size += len(chunk)
            if size > limit:
                raise RegistryError(f"{where}: {what} is more than the {limit} bytes allowed")
            chunks.append(chunk)
    except requests.RequestException as error:
        raise RegistryError(f"{where}: {what}: transfer interrupted ({_reason(error)})") from None
    return b"".join(chunks)


def _failure(response: requests.Response, where: str, what: str) -> RegistryError:
    """One line for an unexpected status, with the registry's own error code and message."""
    if response.status_code == 404:
        return RegistryError(f"{where}: {what} not found")
    detail = ""
    try:
        document = json_object(_read_small(response, _MAX_SMALL_BODY, where, what), where, what)
        first = (document.get("errors") or [{}])[0]
        if isinstance(first, dict) and first.get("code"):
            detail = f" ({_printable(str(first.get('code')))}: {_printable(str(first.get('message', '')))})"
    except (RegistryError, IndexError, TypeError):
        pass
    return RegistryError(f"{where}: {what} failed: {response.status_code} {_printable(response.reason or '')}{detail}")


def _printable(text: str) -> str:
    """Server-given text made safe for one terminal line."""
    return "".join(c if c.isprintable() else "?" for c in text)[:200]


def _location(response: requests.Response, where: str) -> str:
    location = response.headers.get("Location")
    if not location:
        raise RegistryError(f"{where}: the registry gave no upload location")
    return urljoin(response.url, location)


def _with_query(url: str, params: dict[str, str]) -> str:
    return url + ("&" if urlsplit(url).query else "?") + urlencode(params)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def _resume_point(into: str, digest: Digest, size: int, where: str) -> tuple[Any, int]:
    """The hash of the part of the blob already in `into`, and its length (0 for none; a
    file longer than the blob is started over)."""
    hasher = digest.hasher()
    try:
        fd = open_regular(into)
    except FileNotFoundError:
        return hasher, 0
    except OSError as error:
        raise RegistryError(f"{where}: cannot resume into {into}: {error.strerror}") from None
    with os.fdopen(fd, "rb") as existing:
        if os.fstat(fd).st_size > size:
            _remove(into)
            return hasher, 0
        have = 0
        while chunk := existing.read(_READ_BYTES):
            hasher.update(chunk)
            have += len(chunk)
    return hasher, have


def _check_content_range(value: str, have: int, size: int, into: str, where: str, label: str) -> None:
    match = _CONTENT_RANGE.fullmatch(value.strip())
    if match is None or int(match.group(1)) != have:
        raise RegistryError(f"{where}: {label}: asked for bytes from {have}, the registry sent range {value!r}")
    if match.group(3) != "*" and int(match.group(3)) != size:
        _remove(into)
        raise RegistryError(f"{where}: {label} is {match.group(3)} bytes, the manifest says {size}")


def _stream_to_file(
    response: requests.Response, into: str, hasher: Any, have: int, size: int, where: str, label: str
) -> int:
    """Append the response body to `into` from offset `have` (the file is cut there),
    hashing as it goes; the count of bytes in the file at the end."""
    fd = os.open(into, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        os.ftruncate(fd, have)
        os.lseek(fd, have, os.SEEK_SET)
        for chunk in _chunks(response, where, label, have, size):
            have += len(chunk)
            if have > size:
                os.close(fd)
                fd = -1
                _remove(into)
                raise RegistryError(f"{where}: {label} is more than the {size} bytes the manifest says")
            hasher.update(chunk)
            _write_all(fd, chunk)
    finally:
        if fd >= 0:
            os.close(fd)
    return have


def _chunks(response: requests.Response, where: str, label: str, have: int, size: int) -> Iterator[bytes]:
    try:
        yield from response.iter_content(_BLOB_PIECE)
    except requests.RequestException as error:
        raise RegistryError(
            f"{where}: download of {label} interrupted ({_reason(error)}); the part is kept and the next try resumes it"
        ) from None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _check_local_size(path: str, size: int, where: str) -> None:
    try:
        fd = open_regular(path, follow=True)
    except (NotRegularFile, OSError) as error:
        raise RegistryError(f"{where}: cannot upload {path}: {error.strerror}") from None
    actual = os.fstat(fd).st_size
    os.close(fd)
    if actual != size:
        raise RegistryError(f"{where}: {path} is {actual} bytes, the descriptor says {size}")


class _FileWindow:
    """`length` bytes of a file from `start`, read in blocks as requests sends them: a
    chunk of an upload is never held whole. (Iterable, so that requests streams it; a
    length, so that it is sent with Content-Length.)"""

    def __init__(self, path: str, start: int, length: int) -> None:
        self._file: BinaryIO = os.fdopen(open_regular(path, follow=True), "rb")
        self._file.seek(start)
        self._left = length

    def __len__(self) -> int:
        return self._left

    def read(self, n: int = -1) -> bytes:
        if not self._left:
            self._file.close()
            return b""
        chunk = self._file.read(self._left if n < 0 else min(n, self._left))
        if not chunk:
            raise RegistryError(f"{self._file.name}: the file got shorter while it was uploaded")
        self._left -= len(chunk)
        return chunk

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(_READ_BYTES):
            yield chunk


def _file_body(path: str, start: int, length: int) -> Body:
    """A body made anew for each try; an empty one is bytes (requests would send an empty
    stream chunked)."""
    if length == 0:
        return lambda: b""
    return lambda: _FileWindow(path, start, length)


def _certificate_refused(error: BaseException) -> bool:
    """A certificate that does not verify (as against a server that speaks no TLS at all)."""
    return isinstance(_ssl_cause(error), ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(error)


def _ssl_cause(error: BaseException) -> ssl.SSLError | None:
    """The ssl error inside requests' and urllib3's wrappers, if there is one."""
    seen: set[int] = set()
    pending: list[object] = [error]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLError):
            return current
        pending.extend([*current.args, getattr(current, "reason", None), current.__cause__, current.__context__])
    return None


def _tls_failure(error: BaseException, host: str) -> str:
    cause = _ssl_cause(error)
    if _certificate_refused(error):
        detail = getattr(cause, "verify_message", None) or "certificate verify failed"
        return (
            f"the TLS certificate of {host} is not trusted ({detail}); "
            "give the registry's CA certificate, or turn TLS verification off"
        )
    if cause is not None:
        return f"TLS with {host} failed ({cause.reason or cause})"
    return f"cannot reach {host}: {_reason(error)}"


def _reason(error: BaseException) -> str:
    """The innermost useful words of a requests/urllib3 error, without the Python repr noise."""
    text = str(error)
    for marker in ("] ", "Caused by "):
        if marker in text:
            text = text.rsplit(marker, 1)[-1]
    text = re.sub(r"<urllib3\.[^>]*>:?\s*", "", text).strip("()'\" ")
    return _printable(text) or type(error).__name__
