"""Help as a user of either tool expects it: one style (typer's) for every command, `run`
included; -h and -V everywhere; readable metavars and sizes; the harness-only command hidden;
shell completion that completes; man pages generated from the same tree, rendering cleanly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pysbx.cli.manpage import render
from pysbx.cli.runargs import OPTIONS

BIN = Path(sys.executable).parent


def tool(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    name, *rest = args
    return subprocess.run([str(BIN / name), *rest], capture_output=True, text=True, env=env, timeout=60, cwd="/")


@pytest.mark.parametrize("command", [["pysandbox"], ["pysandbox", "policy", "diff"], ["pysandbox", "run"], ["pyaudit"],
                                     ["pyaudit", "rules"]])  # fmt: skip
def test_every_command_takes_h_and_speaks_one_style(command: list[str]) -> None:
    result = tool(*command, "-h")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: {' '.join(command)} ") and "\nOptions:\n" in result.stdout
    assert "-h, --help" in result.stdout


@pytest.mark.parametrize("name", ["pysandbox", "pyaudit"])
def test_both_tools_take_capital_v(name: str) -> None:
    result = tool(name, "-V")
    assert result.returncode == 0 and result.stdout.startswith(f"{name} ")


def test_run_help_says_the_default_policy_and_names_its_values() -> None:
    text = tool("pysandbox", "run", "--help").stdout
    assert "[default: strict]" in text and "--memory SIZE" in text and "--network NETWORK" in text
    assert "Usage: pysandbox run [OPTIONS] IMAGE [COMMAND]..." in text


def test_sizes_and_values_read_as_people_write_them() -> None:
    text = tool("pysandbox", "image", "unpack", "--help").stdout
    assert "--max-bytes SIZE" in text and "[default: 64Gi]" in text and "68719476736" not in text
    audit = tool("pyaudit", "--help").stdout
    assert "--policy POLICY" in audit and "<str>" not in audit.split("Options:")[1]


def test_the_conformance_command_is_hidden_but_works() -> None:
    assert "conformance" not in tool("pysandbox", "--help").stdout
    assert tool("pysandbox", "conformance", "--help").returncode in (0, 2)


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_completes_commands_for_each_shell(shell: str) -> None:
    env = {**os.environ, "_PYSANDBOX_COMPLETE": f"complete_{shell}", "COMP_WORDS": "pysandbox pol", "COMP_CWORD": "1",
           "_TYPER_COMPLETE_ARGS": "pysandbox pol", "_TYPER_COMPLETE_FISH_ACTION": "get-args"}  # fmt: skip
    result = tool("pysandbox", env=env)
    assert result.returncode == 0 and "policy" in result.stdout, (result.stdout, result.stderr)
    # The shell named, not detected: detection walks the process tree, which a detached run
    # (no shell above pytest) does not have.
    script = tool("pysandbox", "--show-completion", shell,
                  env={**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})  # fmt: skip
    assert script.returncode == 0 and "_PYSANDBOX_COMPLETE" in script.stdout


@pytest.mark.parametrize("name", ["pysandbox", "pyaudit"])
def test_the_man_pages_render_cleanly_and_cover_the_commands(name: str, tmp_path: Path) -> None:
    page = render(name)
    (tmp_path / f"{name}.1").write_text(page)
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed")
    warnings = subprocess.run(
        ["groff", "-man", "-ww", "-z", str(tmp_path / f"{name}.1")], capture_output=True, text=True
    )
    assert warnings.stderr == ""
    shown = subprocess.run(
        ["groff", "-man", "-Tutf8", str(tmp_path / f"{name}.1")], capture_output=True, text=True
    ).stdout
    plain = shown.replace("\u2010", "-").replace("\u2212", "-")
    import re

    plain = re.sub(r".\x08", "", plain)
    if name == "pysandbox":
        for words in ("pysandbox policy diff", "pysandbox image build", "pysandbox run", "--max-bytes", "EXIT STATUS"):
            assert words in plain, words
        assert all(option.names[-1] in plain for option in OPTIONS)
        assert "conformance" not in plain
    else:
        assert "pyaudit rules" in plain and "--fail-on" in plain and "NO_COLOR" in plain
