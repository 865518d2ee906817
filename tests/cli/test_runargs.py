"""runargs.parse: `pysandbox run`'s usage errors, one line each."""

from __future__ import annotations

import pytest

from pysbx.cli.runargs import parse


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (
            ["--network", "container:web", "img"],
            "--network container:NAME (sharing another container's network) is not supported yet",
        ),
        (["--network=container:web", "img"], "(sharing another container's network) is not supported yet"),
        (["--network", "a/b", "img"], "argument --network: invalid network_name value: 'a/b'"),
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


def test_a_network_is_a_mode_or_a_bridge_networks_name() -> None:
    assert parse(["--network", "app-net", "img"]).network == "app-net"
    assert parse(["--network=bridge", "img"]).network == "bridge"


def test_publish_flags_are_read_as_docker_reads_them() -> None:
    args = parse(["-d", "-p", "8080:80", "--publish", "127.0.0.1::53/udp", "-P", "--network", "pasta", "img"])
    assert (args.publish, args.publish_all, args.network) == (["8080:80", "127.0.0.1::53/udp"], True, "pasta")
