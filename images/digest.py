"""Content digests (`sha256:<hex>`) and a reader that verifies one while a blob streams."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from pysbx.images.errors import ImageError

_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"^(sha256|sha512):([a-f0-9]+)$")


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    def short(self) -> str:
        return f"{self.algorithm}:{self.hex[:12]}"

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)


class Hasher(Protocol):
    """What VerifyingReader asks of a hash: hashlib's, or one computed in another thread."""

    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


def parse_digest(text: object, where: str) -> Digest:
    """Parse `algorithm:hex`, refusing anything that could not name a blob safely
    (the hex part becomes a file name, so it must be exactly hex of the right length)."""
    if not isinstance(text, str):
        raise ImageError(f"{where}: expected a digest string, got {type(text).__name__}")
    match = _DIGEST_RE.fullmatch(text)  # `$` would let a trailing newline through
    if not match or len(match.group(2)) != _HEX_LENGTH[match.group(1)]:
        raise ImageError(f"{where}: {text!r} is not a sha256 or sha512 digest")
    return Digest(match.group(1), match.group(2))


def digest_bytes(data: bytes, algorithm: str = "sha256") -> Digest:
    return Digest(algorithm, hashlib.new(algorithm, data).hexdigest())


class VerifyingReader:
    """Reads a blob, hashing and counting as it goes; at end of stream the size and
    digest must match, and reading past the expected size fails at once (so a blob
    that lies about its size cannot make us read without bound)."""

    def __init__(
        self, raw: BinaryIO, digest: Digest | None, size: int | None, label: str, hasher: Hasher | None = None
    ) -> None:
        """digest None: only count (and bound by `size`); the content is verified elsewhere.
        `hasher`: the digest's hash to update (by default a new one, updated in this thread)."""
        self._raw = raw
        self._digest = digest
        self._size = size
        self._label = label
        self._hash: Hasher | None = hasher or (digest.hasher() if digest is not None else None)
        self.count = 0
        self.verified = False

    def read(self, n: int = -1) -> bytes:
        chunk = self._raw.read(n)
        if chunk:
            self.count += len(chunk)
            if self._size is not None and self.count > self._size:
                raise ImageError(
                    f"{self._label}: blob {self._digest} is larger than the {self._size} bytes its descriptor declares"
                )
            if self._hash is not None:
                self._hash.update(chunk)
        elif not self.verified and (n is None or n != 0):
            self._check()
        return chunk

    def drain(self) -> None:
        """Read whatever is left, so that the check runs even when the consumer stopped
        early (a tar reader stops at the end-of-archive marker, before any padding)."""
        while self.read(1 << 20):
            pass

    def _check(self) -> None:
        if self._size is not None and self.count != self._size:
            raise ImageError(
                f"{self._label}: blob {self._digest} has {self.count} bytes, its descriptor declares {self._size}"
            )
        if self._hash is None or self._digest is None:
            self.verified = True
            return
        actual = self._hash.hexdigest()
        if actual != self._digest.hex:
            raise ImageError(
                f"{self._label}: blob content does not match its digest: expected {self._digest}, "
                f"got {self._digest.algorithm}:{actual}"
            )
        self.verified = True

    def close(self) -> None:
        self._raw.close()
