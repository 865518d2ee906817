"""Fuzz the seccomp profile loader (Docker/OCI JSON): any bytes parse into a Profile or
raise SeccompProfileError. A profile that parses must survive a round trip through its own
JSON unchanged, resolve, and compile with libseccomp or be refused with
SeccompProfileError: the cold path of `pysandbox run` does exactly that with a user's file.

    nice -n 10 .venv/bin/python tests/fuzz/fuzz_seccomp.py CORPUS SEEDS -max_total_time=600
"""

from __future__ import annotations

import contextlib
import json

import atheris
import fuzzlib

with atheris.instrument_imports():
    from pysbx.policies.seccomp import SeccompProfileError, compile_bpf, parse_profile, resolve


def test_one(data: bytes) -> None:
    try:
        profile = parse_profile(data, "profile.json")
    except SeccompProfileError:
        return
    again = parse_profile(json.dumps(profile.to_json()), "profile.json")
    assert again == profile, "the profile changed in a round trip through its own JSON"
    resolve(profile, frozenset({"CAP_SYS_ADMIN"}), "amd64", "5.10")
    with contextlib.suppress(SeccompProfileError):
        compile_bpf(profile, frozenset({"CAP_SYS_ADMIN"}), kernel_version="6.1")


if __name__ == "__main__":
    fuzzlib.run(test_one)
