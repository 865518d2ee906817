"""Property: any text given to the Dockerfile parser gives a Dockerfile or a
DockerfileError naming a line, never another exception; the rules run over whatever it
parsed; and every instruction keeps real line numbers of the text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pysbx.audit.rules.dockerfile import dockerfile_findings
from pysbx.audit.sources.dockerfile import INSTRUCTIONS, DockerfileError, parse_dockerfile
from tests.properties.strategies import examples

# Pieces that steer the parser into its branches: directives, continuations (both escape
# characters), heredocs, flags, variables, exec form, stage references.
PIECES = (
    *sorted(INSTRUCTIONS), "from", "# escape=`", "# escape=\\", "# escape=x", "# syntax=a", "#", "\\", "`", "\n",
    " ", "\t", "<<EOF", "<<-EOF", "<<'A'", "EOF", "A", "--from=0", "--from=²", "--platform=$P", "--chown=0:0",
    " AS ", "${A}", "${A:-b}", "${A:+c}", "$A", "ARG A=1", "[\"sh\", \"-c\"]", "[1]", "[", "=", "\"", "'", "0", "1",
    "root", "scratch", "user", "alpine:3", "x@sha256:" + "0" * 64, "²", "ß", "\r\n", "\u2028", "[" * 1100,
    "1" * 4400,
)  # fmt: skip
pieces = st.lists(st.sampled_from(PIECES), max_size=40).map("".join)
# Arguments in exec form (JSON), including JSON that Python's parser cannot take.
EXEC_FORMS = ('["sh", "-c", "x"]', '["a", 1]', "[", "[" * 1100, "[" * 1100 + "]" * 1100, "[" + "1" * 4400 + "]")
arguments = st.one_of(st.lists(st.sampled_from(PIECES), max_size=6).map("".join), st.sampled_from(EXEC_FORMS))
# Instructions line by line after a FROM, so that the rules see every kind of argument.
instructions = st.lists(st.tuples(st.sampled_from(sorted(INSTRUCTIONS)), arguments), max_size=8).map(
    lambda lines: "FROM a AS b\n" + "".join(f"{keyword} {text}\n" for keyword, text in lines)
)
dockerfile_texts = st.one_of(pieces, instructions, st.text(max_size=200))


@settings(max_examples=examples(400), deadline=None)
@given(dockerfile_texts)
def test_any_text_parses_or_raises_dockerfile_error(text: str) -> None:
    try:
        dockerfile = parse_dockerfile(text, "Dockerfile")
    except DockerfileError as error:
        assert str(error).startswith("Dockerfile:"), error
        return
    lines = len(text.splitlines())
    for stage in dockerfile.stages:
        dockerfile.stage_named(stage.base_resolved)
        for instruction in stage.instructions:
            assert 1 <= instruction.line <= instruction.end_line <= lines, instruction
            assert instruction.exec_form is None or isinstance(instruction.exec_form, list)
    list(dockerfile_findings(dockerfile))


def test_a_stage_named_by_a_non_ascii_digit_is_no_stage() -> None:
    """Regression (found while writing the fuzz target, by reading the code it covers): a
    stage named `²` was looked up as a stage number with int('²'), because '²'.isdigit()
    is true, and raised ValueError."""
    dockerfile = parse_dockerfile("FROM a\nFROM ²\nCOPY --from=² / /\n", "Dockerfile")
    assert dockerfile.stage_named("²") is None
    list(dockerfile_findings(dockerfile))


@pytest.mark.parametrize(
    "arguments", ["[" * 5000, "[" * 3000 + "]" * 3000, "[" + "1" * 5000 + "]"], ids=["open", "deep", "long-number"]
)
def test_an_exec_form_json_cannot_hold_is_shell_form(arguments: str) -> None:
    """Regression (found by reading the code the fuzz target covers; ten minutes of
    fuzz_dockerfile.py did not reach it): json.loads raised RecursionError on brackets
    nested past the recursion limit, and ValueError on a number of more than 4300 digits."""
    dockerfile = parse_dockerfile(f"FROM a\nCMD {arguments}\nENTRYPOINT {arguments}\n", "Dockerfile")
    assert dockerfile.stages[0].instructions[1].exec_form is None
    list(dockerfile_findings(dockerfile))
