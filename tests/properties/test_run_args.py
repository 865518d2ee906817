"""Property: `pysandbox run`'s fast command-line reader never disagrees with argparse.
Whenever `parse_fast` answers, argparse (built from the same table) reads the same values;
where argparse refuses (exit 2), `parse_fast` must have declined. It may decline freely."""

from __future__ import annotations

import contextlib
import io
import math

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from pysbx.cli.runargs import OPTIONS, RunArgs, parse, parse_fast, parser
from tests.properties.strategies import examples

NAMES = sorted(name for option in OPTIONS for name in option.names)
# Tokens that steer both readers into their corners: each option in every form, values
# that are or look like options, numbers argparse converts, abbreviations, clusters, "--".
TOKENS = (
    *NAMES, *(f"{name}=x" for name in NAMES), *(f"{name}=" for name in NAMES), "--pids-limit=5", "--cpus=0.5",
    "--network=none", "--network=host", "--network=bogus", "--pid=host", "--pid=x", "5", "-5", "1_000", " 7 ", "0.5",
    "nan", "inf", "x", "K=V", "", "-", "--", "-it", "-ti", "-ie", "-iv", "-eK=V", "-e=K", "-x", "--pol", "--rm=1",
    "--help", "-h", "image.tar", "/bin/sh", "-c", "none", "host", "loopback", "a b", "-a b", "--name=-x",
)  # fmt: skip
VALUES = ("5", "0.5", "none", "host", "x", "K=V", "", "a:/b", "-x", " 7 ")


def _written(option_and_value: tuple[str, str, bool]) -> list[str]:
    name, value, attached = option_and_value
    return [f"{name}={value}"] if attached else [name, value]


# Command lines shaped like real ones (options with values, an image, a command), and
# token soup; both end up in both readers.
options = st.tuples(st.sampled_from(NAMES), st.sampled_from(VALUES), st.booleans()).map(_written)
shaped = st.tuples(
    st.lists(st.one_of(options, st.sampled_from(["-i", "-t", "-it", "--rm"]).map(lambda flag: [flag])), max_size=6),
    st.sampled_from(["img", "image.tar", "-", ""]),
    st.lists(st.sampled_from(TOKENS), max_size=4),
).map(lambda parts: [word for option in parts[0] for word in option] + [parts[1], *parts[2]])
argvs = st.one_of(shaped, st.lists(st.sampled_from(TOKENS), max_size=8))


def argparse_reading(argv: list[str]) -> RunArgs | None:
    """argparse's answer, or None where it exits (an error, or --help)."""
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            return RunArgs(vars(parser().parse_args(argv)))
        except SystemExit:
            return None


def comparable(args: RunArgs | None) -> tuple[object, ...] | None:
    """The values, with NaN (`--cpus nan`, which never equals itself) as one marker: two
    readings of "nan" are the same reading."""
    if args is None:
        return None
    return tuple("NaN" if isinstance(value, float) and math.isnan(value) else value for value in args.values())


@settings(max_examples=examples(3000), deadline=None)
@given(argvs)
def test_the_fast_reader_agrees_with_argparse_or_declines(argv: list[str]) -> None:
    fast = parse_fast(argv)
    event("fast reader answered" if fast is not None else "fast reader declined")
    if fast is not None:
        assert comparable(fast) == comparable(argparse_reading(argv))


@pytest.mark.parametrize(
    "argv",
    [
        ["--rm", "--policy", "strict", "img", "/bin/true"],
        ["-it", "--rm", "-e", "A=1", "--env=B=2", "-v", "a:/b", "img", "sh", "-c", "echo --rm -t"],
        ["--pids-limit", "5", "--cpus=0.5", "--network", "none", "-u", "1000:1000", "-w", "/tmp", "img"],
        ["--name", "x", "img", "-x", "--name"],
    ],
)
def test_the_common_forms_are_read_without_argparse(argv: list[str]) -> None:
    fast = parse_fast(argv)
    assert fast is not None
    assert fast == argparse_reading(argv)


def test_what_the_fast_reader_declines_argparse_still_reads() -> None:
    args = parse(["--pol", "baseline", "-eK=V", "--cpus", "-1", "--", "img", "true"])
    assert (args.policy, args.env, args.cpus, args.image, args.command) == ("baseline", ["K=V"], -1.0, "img", ["true"])
