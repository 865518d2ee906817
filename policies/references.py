"""The files a policy names (public keys, a Sigstore trusted root, a seccomp profile file):
read as regular files with a bound, and checked by `policy lint`, so that `keys: [nope.pub]`
is an error at its line in review, not at `verify` with no line."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

from pysbx.images.regular import read_regular_file
from pysbx.policies.errors import Problem
from pysbx.policies.loader import LoadedPolicy

MAX_REFERENCED_FILE = 16 * 2**20  # far beyond any public key, trusted_root.json or profile


def read_referenced(path: str) -> bytes:
    """A file a policy names: a regular file (a FIFO or a device behind a link would hang or
    never end), at most MAX_REFERENCED_FILE bytes. Raises OSError, or ValueError when larger."""
    return read_regular_file(path, MAX_REFERENCED_FILE, follow=True)


def referenced_file_problems(loaded: LoadedPolicy) -> list[Problem]:
    """A problem for each named file that is missing, unreadable, or not what its field holds."""
    signing, seccomp = loaded.policy.signing, loaded.policy.sandbox.seccomp
    named: list[tuple[tuple[str, ...], str, Callable[[bytes, str], str | None]]] = [
        (("signing", f"keys[{i}]"), key, _public_key_problem) for i, key in enumerate(signing.keys)
    ]
    if signing.trusted_root is not None:
        named.append((("signing", "trusted_root"), signing.trusted_root, _trusted_root_problem))
    if os.path.isabs(seccomp.profile):  # a file; the built-in names are not
        named.append((("sandbox", "seccomp", "profile"), seccomp.profile, _profile_problem))
    problems = []
    for where, path, check in named:
        file, line, column = loaded.locations.get(where, (loaded.chain[0], 1, 1))
        try:
            data = read_referenced(path)
        except OSError as error:
            problems.append(Problem(file, line, column, f"{'.'.join(where)}: {path}: {error.strerror or error}"))
            continue
        except ValueError:
            problems.append(Problem(file, line, column, f"{'.'.join(where)}: {path}: larger than 16 MiB"))
            continue
        wrong = check(data, path)
        if wrong:
            problems.append(Problem(file, line, column, f"{'.'.join(where)}: {path}: {wrong}"))
    return problems


def _public_key_problem(data: bytes, path: str) -> str | None:
    from pysbx.policies.diff import public_key_fingerprint

    return None if public_key_fingerprint(data) else "not a PEM public key (pysandbox keygen writes one: NAME.pub)"


def _trusted_root_problem(data: bytes, path: str) -> str | None:
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        return "not JSON, so not a Sigstore trusted_root.json"
    media_type = document.get("mediaType") if isinstance(document, dict) else None
    if not (isinstance(media_type, str) and "trustedroot" in media_type.lower()):
        return "not a Sigstore trusted root (its mediaType names no trustedroot)"
    return None


def _profile_problem(data: bytes, path: str) -> str | None:
    from pysbx.policies.seccomp import SeccompProfileError
    from pysbx.policies.seccomp.reader import parse_profile

    try:
        parse_profile(data, path)
    except SeccompProfileError as error:
        return f"not a seccomp profile pysandbox can apply ({error})"
    return None
