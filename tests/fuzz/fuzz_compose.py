"""Fuzz the Compose loader as `pyaudit compose.yaml` runs it: YAML read with its lines,
each service turned into a container spec, the container rules over the specs. Only the
YAML loader may refuse (yaml.YAMLError); after it, nothing may raise.

    nice -n 10 .venv/bin/python tests/fuzz/fuzz_compose.py CORPUS SEEDS -max_total_time=600
"""

from __future__ import annotations

import atheris
import fuzzlib

with atheris.instrument_imports():
    import pysbx.audit.rules.container  # noqa: F401 - instrumented for fuzzlib.audit_yaml
    from pysbx.audit.sources.compose import compose_specs, is_compose


def test_one(data: bytes) -> None:
    fuzzlib.audit_yaml(data, is_compose, compose_specs)


if __name__ == "__main__":
    fuzzlib.run(test_one)
