"""Fuzz the Dockerfile parser and the rules that read what it parsed (what `pyaudit
Dockerfile` runs): any text parses, or raises DockerfileError; nothing else may escape.

    nice -n 10 .venv/bin/python tests/fuzz/fuzz_dockerfile.py CORPUS SEEDS -max_total_time=600
"""

from __future__ import annotations

import atheris
import fuzzlib

with atheris.instrument_imports():
    from pysbx.audit.rules.dockerfile import dockerfile_findings
    from pysbx.audit.sources.dockerfile import DockerfileError, parse_dockerfile


def test_one(data: bytes) -> None:
    try:
        dockerfile = parse_dockerfile(fuzzlib.text_of(data), "Dockerfile")
    except DockerfileError:
        return
    list(dockerfile_findings(dockerfile))


if __name__ == "__main__":
    fuzzlib.run(test_one)
