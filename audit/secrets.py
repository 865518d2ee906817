"""Recognising secrets: token formats, private keys, credential files, and values given
to variables whose names say they are secret."""

from __future__ import annotations

import functools
import re

# The detectors' sources. They are compiled at their first use (Detectors): a value or a line
# without a marker (below) cannot match, so most Dockerfiles compile none of them, and compiling
# them all was 1.4 ms of every `pyaudit FILE` start.
TOKEN_PATTERNS = {
    "an AWS access key id": r"\b(AKIA|ASIA)[0-9A-Z]{16}\b",
    "a GitHub token": r"\bgh[pousr]_[A-Za-z0-9]{36,}\b",
    "a GitLab token": r"\bglpat-[A-Za-z0-9_-]{20,}\b",
    "a Slack token": r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b",
    "a Google API key": r"\bAIza[0-9A-Za-z_-]{35}\b",
    "a Stripe secret key": r"\bsk_live_[0-9A-Za-z]{24,}\b",
    "a private key": r"-----BEGIN ([A-Z]+ )?PRIVATE KEY-----",
    "an npm token": r"\bnpm_[A-Za-z0-9]{36}\b",
}
_SECRET_NAME = r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|CREDENTIALS?)$"
_PLACEHOLDER = r"^(\$.*|<.*>|changeme|example|placeholder|xxx+|\*+|none|null|false|true|)$"

# File names that hold credentials by convention: a match is reported whatever the content.
SECRET_FILES = {
    "id_rsa": "an SSH private key", "id_dsa": "an SSH private key", "id_ecdsa": "an SSH private key",
    "id_ed25519": "an SSH private key", ".env": "a .env file", ".git-credentials": "git credentials",
    ".netrc": "netrc credentials", ".pgpass": "PostgreSQL passwords",
}  # fmt: skip
SECRET_SUFFIXES = {
    ".aws/credentials": "AWS credentials", ".docker/config.json": "registry credentials",
    ".kube/config": "a kubeconfig", ".npmrc": "an npm config",
}  # fmt: skip
_SUFFIXES = tuple(SECRET_SUFFIXES)


# scheme://user:password@host: the password group is judged (a variable or a placeholder is none).
_URL_PASSWORD = r"\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]+:([^@\s/]+)@"
# Beyond _PLACEHOLDER: format slots ({pw}, %s) and the words samples use for a password.
_URL_PLACEHOLDER = r"^(\{.*\}|%.*|\.\.\.|pass(word)?|secret|pwd)$"
# NAME = "value" where the name says secret (gitleaks' generic rule): quoted, long, varied.
_ASSIGNMENT = (
    r"""(?im)^[ \t]*(?:export[ \t]+)?["']?([A-Za-z_][\w.-]{0,60})["']?"""
    r"""[ \t]*[:=][ \t]*["']([^"'\s]{16,200})["']"""
)


class Detectors:
    """The detectors, compiled: made once, by detectors(), the first time a marker is seen."""

    def __init__(self) -> None:
        self.tokens = {what: re.compile(source) for what, source in TOKEN_PATTERNS.items()}
        self.secret_name = re.compile(_SECRET_NAME, re.IGNORECASE)
        self.placeholder = re.compile(_PLACEHOLDER, re.IGNORECASE)
        self.url_password = re.compile(_URL_PASSWORD)
        self.url_placeholder = re.compile(_URL_PLACEHOLDER, re.IGNORECASE)
        self.assignment = re.compile(_ASSIGNMENT)


@functools.cache
def detectors() -> Detectors:
    return Detectors()


def token_in(text: str) -> str | None:
    """Which known token format, or a password in a connection string, the text holds."""
    if not any(marker in text for marker in _TEXT_MARKERS):
        return None  # every token and URL holds its marker, as written (they match case and all)
    found = detectors()
    for what, pattern in found.tokens.items():
        if pattern.search(text):
            return what
    passwords = (match.group(1) for match in found.url_password.finditer(text))
    if any(not found.placeholder.match(word) and not found.url_placeholder.match(word) for word in passwords):
        return "a password in a connection string"
    return None


def is_secret_name(name: str) -> bool:
    """A name that says its value is secret (PASSWORD, API_KEY, ...: its ending, any case)."""
    if name.isascii() and not any(marker in name.lower() for marker in _TEXT_NAME_MARKERS):
        return False  # every ending holds a name marker; outside ASCII, case folding goes further
    return detectors().secret_name.search(name) is not None


def is_placeholder(value: str) -> bool:
    """A value samples and templates use in place of a secret: $VAR, <...>, changeme, ..."""
    return detectors().placeholder.match(value) is not None


# Every detector below matches within one line, and needs one of these fixed strings on it: the
# lines holding one (found with `in`, at memory speed) are all it reads. One regular expression
# over a whole file ran at about 20 MB/s, most of an image audit's time.
_MARKERS = (
    b"AKIA", b"ASIA", b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_", b"glpat-", b"xox", b"AIza", b"sk_live_",
    b"-----BEGIN", b"npm_", b"://",
)  # fmt: skip
# In lower case, looked for in the lowered bytes: the endings SECRET_NAME accepts.
# With them, the four characters outside ASCII that case folding takes to a letter of those
# endings (U+0130 and U+0131 to i, U+017F to s, the Kelvin sign to k): a line holding one is
# read too (a name spelled with one is secret to the detector's IGNORECASE).
_FOLDED = tuple(char.encode() for char in "\u0130\u0131\u017f\u212a")
_NAME_MARKERS = (b"passw", b"secret", b"token", b"key", b"credential", *_FOLDED)
_TEXT_MARKERS = tuple(marker.decode() for marker in _MARKERS)
_TEXT_NAME_MARKERS = tuple(marker.decode() for marker in _NAME_MARKERS)
BINARY_PROBE = 8192  # a NUL in the first bytes makes a file binary (git's and trivy's rule): not read


def secret_in_text(data: bytes) -> str | None:
    """Why the bytes of a text file look like they hold a secret: a private key, a token of a
    known format, a password in a connection string, or a long, varied quoted value given to a
    name that says secret. Only the lines holding a marker are read."""
    lines = marked_lines(data)
    return secret_in_lines(b"\n".join(lines).decode("utf-8", "replace")) if lines else None


def secret_in_lines(text: str) -> str | None:
    """secret_in_text's detectors, over whole lines of text."""
    found = token_in(text)
    if found:
        return found
    for match in detectors().assignment.finditer(text):
        name, value = match.group(1), match.group(2)
        if is_secret_name(name) and not is_placeholder(value) and _varied(value):
            return f"a secret-looking value for {name}"
    return None


def marked_lines(data: bytes) -> list[bytes]:
    """The lines of `data` holding a marker, in file order, each once."""
    lowered = data.lower()
    starts: dict[int, int] = {}
    for haystack, markers in ((data, _MARKERS), (lowered, _NAME_MARKERS)):
        for marker in markers:
            at = haystack.find(marker)
            while at != -1:
                start = data.rfind(b"\n", 0, at) + 1
                end = data.find(b"\n", at)
                end = len(data) if end == -1 else end
                starts[start] = end
                at = haystack.find(marker, end)
    return [data[start : starts[start]] for start in sorted(starts)]


def _varied(value: str) -> bool:
    """Entropy enough for a key (3.5 bits a character), not a word, a path or a repeated run."""
    import math

    if value.startswith(("/", "./", "http://", "https://", "{{", "<")) or "${" in value:
        return False
    counts = {char: value.count(char) for char in set(value)}
    entropy = -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())
    return entropy >= 3.5


def secret_in_assignment(name: str, value: str) -> str | None:
    """Why `name=value` looks like a secret, or None."""
    found = token_in(value)
    if found:
        return f"holds {found}"
    if is_secret_name(name) and not is_placeholder(value.strip()):
        return "a secret-looking name with a literal value"
    return None


def secret_file(path: str) -> str | None:
    """Why a file in an image is a credential by its name alone, or None."""
    base = path.rsplit("/", 1)[-1]
    if base in SECRET_FILES:
        return SECRET_FILES[base]
    if base.startswith(".env.") and not base.endswith((".example", ".sample", ".template")):
        return "a .env file"
    if not path.endswith(_SUFFIXES):
        return None  # one test in C for nearly every file
    return next(what for suffix, what in SECRET_SUFFIXES.items() if path.endswith(suffix))


def is_binary(head: bytes) -> bool:
    """A NUL in the first bytes (git's and trivy's rule): a binary, not read for secrets."""
    return b"\0" in head[:BINARY_PROBE]


def secret_content(data: bytes, path: str) -> str | None:
    """Why a file's content holds a secret, or None; binary files are not read."""
    if is_binary(data):
        return None
    found = secret_in_text(data)
    if found:
        return found
    text = data.decode("utf-8", "replace") if path.endswith((".npmrc", "config.json")) else ""
    if path.endswith(".npmrc") and "_authToken" in text:
        return "an npm auth token"
    if path.endswith("config.json") and '"auths"' in text and '"auth"' in text:
        return "registry credentials"
    return None
