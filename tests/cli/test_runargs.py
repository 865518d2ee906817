"""runargs.parse: `pysandbox run`'s usage errors, one line each."""

from __future__ import annotations

import pytest

from pysbx.cli.runargs import parse


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["-d", "--publish", "80", "img"], "publishing ports (-p) is not supported yet"),
        (["--network", "bridge", "img"], "a network other than none, loopback or host is not supported yet"),
        (["-P", "img"], "publishing ports (-P) is not supported yet"),
        (["--bogus", "img"], "pysandbox run --help lists the flags"),
    ],
)
def test_a_usage_error_is_one_line_and_names_a_coming_feature(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        parse(argv)
    error = capsys.readouterr().err
    assert done.value.code == 2 and error.count("\n") == 1 and words in error, error
