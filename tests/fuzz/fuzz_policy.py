"""Fuzz the policy loader: any bytes in a policy file load (with whatever they `extends`,
built-ins included) or raise PolicyError with located problems; nothing else may escape.

    nice -n 10 .venv/bin/python tests/fuzz/fuzz_policy.py CORPUS SEEDS -max_total_time=600
"""

from __future__ import annotations

import atheris
import fuzzlib

with atheris.instrument_imports():
    # The loader imports these lazily (extends: strict; system call names): import them here,
    # inside the block, so that they are instrumented too.
    from pysbx.policies import diff, seccomp  # noqa: F401
    from pysbx.policies.errors import PolicyError
    from pysbx.policies.loader import load_policy

POLICY = fuzzlib.scratch("policy") / "policy.yaml"


def test_one(data: bytes) -> None:
    POLICY.write_bytes(data)
    try:
        loaded = load_policy(POLICY)
    except PolicyError as error:
        assert error.problems, "a PolicyError must carry at least one located problem"
        return
    assert loaded.chain[0] == str(POLICY)


if __name__ == "__main__":
    fuzzlib.run(test_one)
