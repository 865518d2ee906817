"""`generate systemd`, as root and as an ordinary user: the unit passes `systemd-analyze
verify`, and its ExecStart, read back as systemd reads it (quotes, %% and $$), makes the
same container again (the same environment and command, byte for byte), with the monitor's
pid in the PIDFile; ExecStop and ExecStopPost stop and remove it. Nothing of systemd itself
runs here (no systemd is PID 1 on this machine)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from pysbx.cli.runargs import takes_value
from pysbx.sandbox import systemd
from pysbx.sandbox.containers import Container
from pysbx.sandbox.errors import SandboxError
from pysbx.sandbox.systemd import quote, run_arguments
from tests.sandbox.harness import Sandbox, tool, tool_argv, wait_until

POLICY = "strict-unsigned.yaml"
AWKWARD = '100% of $HOME; "quoted" \\ back'


def systemd_words(line: str, runtime: Path) -> list[str]:
    """A command line of the unit as systemd runs it: %t is the runtime folder; words apart
    at spaces, double-quoted ones with C escapes (backslash, quote, xNN) read in one pass."""
    words = re.findall(r'"((?:[^"\\]|\\.)*)"|(\S+)', line.replace("%t", str(runtime)))
    read = [re.sub(r"\\x([0-9a-f]{2})|\\(.)", _unescape, quoted) if quoted else bare for quoted, bare in words]
    for word in read:  # systemd would expand a lone % (a specifier) or $ (a variable)
        assert "%" not in word.replace("%%", "") and "$" not in word.replace("$$", ""), word
    return [word.replace("%%", "%").replace("$$", "$") for word in read]


def _unescape(match: re.Match[str]) -> str:
    return chr(int(match.group(1), 16)) if match.group(1) else match.group(2)


def entries(text: str) -> dict[str, str]:
    return {key: value for key, _, value in (line.partition("=") for line in text.splitlines() if "=" in line)}


def test_the_unit_makes_the_same_container_again_and_stops_it(sandbox: Sandbox, world: Path, tmp_path: Path) -> None:
    name = f"unit-{sandbox.mode}"
    tool(sandbox, "rm", "-f", name)
    started = tool(sandbox, "run", "-d", "--rm", "--name", name, "-e", f"GREETING={AWKWARD}", "--stop-timeout", "3",
                   "--policy", str(world / POLICY), str(world / "busybox-app.tar"),
                   "sh", "-c", 'echo "$GREETING"; echo "$1"; exec sleep 600', "sh", AWKWARD)  # fmt: skip
    assert started.returncode == 0, started.stderr
    assert wait_until(lambda: tool(sandbox, "logs", name).stdout.count("\n") == 2)
    first = tool(sandbox, "logs", name).stdout
    assert first == f"{AWKWARD}\n{AWKWARD}\n"
    made = tool(sandbox, "generate", "systemd", name)
    assert made.returncode == 0, made.stderr
    text = made.stdout
    unit = entries(text)
    assert unit["Type"] == "forking" and unit["TimeoutStopSec"] == "63" and unit["Restart"] == "on-failure"
    assert "--rm" not in unit["ExecStart"] and unit["PIDFile"] == f"%t/pysandbox-{name}.pid"
    assert " rm -f -v " in unit["ExecStartPre"] and " rm -f -v " in unit["ExecStopPost"]  # no volume left per start
    if shutil.which("systemd-analyze"):
        (tmp_path / f"container-{name}.service").write_text(text)
        verified = subprocess.run(["systemd-analyze", "verify", str(tmp_path / f"container-{name}.service")],
                                  capture_output=True, text=True, timeout=60)  # fmt: skip
        assert verified.returncode == 0, verified.stderr
    runtime = Path(tempfile.mkdtemp(prefix="unit-runtime-"))  # XDG_RUNTIME_DIR's stand-in, the user's own
    if sandbox.user:
        shutil.chown(runtime, sandbox.user)
    try:
        run_the_unit(sandbox, name, unit, runtime, first)
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


def run_the_unit(sandbox: Sandbox, name: str, unit: dict[str, str], runtime: Path, first: str) -> None:
    assert tool(sandbox, "rm", "-f", name).returncode == 0
    prefix = tool_argv(sandbox)[:-1]  # as the sandbox's user: what runs pysandbox, without it
    for step in ("ExecStartPre", "ExecStart"):
        ran = subprocess.run([*prefix, *systemd_words(unit[step].lstrip("-"), runtime)], capture_output=True,
                             text=True, cwd=unit["WorkingDirectory"], timeout=60)  # fmt: skip
        assert step == "ExecStartPre" or ran.returncode == 0, ran.stderr
    assert wait_until(lambda: tool(sandbox, "logs", name).stdout.count("\n") == 2)
    assert tool(sandbox, "logs", name).stdout == first  # the same environment and arguments, byte for byte
    pid = int((runtime / f"pysandbox-{name}.pid").read_text())
    (inspected,) = json.loads(tool(sandbox, "inspect", name).stdout)
    assert inspected["status"]["monitor"][0] == pid  # systemd's main process is the monitor
    for step in ("ExecStop", "ExecStopPost"):
        ran = subprocess.run([*prefix, *systemd_words(unit[step].lstrip("-"), runtime)], capture_output=True,
                             text=True, cwd="/", timeout=60)  # fmt: skip
        assert ran.returncode == 0, ran.stderr
    assert name not in tool(sandbox, "ps", "-a").stdout
    assert not (runtime / f"pysandbox-{name}.pid").exists()  # the monitor took its pidfile with it


def test_the_flags_the_unit_sets_itself_are_dropped_and_the_rest_kept() -> None:
    recorded = ["-d", "--rm", "--name=web", "--restart", "always", "--monitor-pidfile", "/x", "-e", "A=1",
                "--policy", "strict", "IMAGE", "sh", "-c", "--rm --name"]  # fmt: skip
    assert run_arguments(recorded, takes_value) == [
        "-e",
        "A=1",
        "--policy",
        "strict",
        "IMAGE",
        "sh",
        "-c",
        "--rm --name",
    ]
    # found by review: the value of -e was taken for the image, and every flag after it kept
    after_value = ["-d", "--name", "web", "-e", "FOO=1", "--rm", "--restart", "always", "--name", "other", "img", "sh"]
    assert run_arguments(after_value, takes_value) == ["-e", "FOO=1", "img", "sh"]
    assert run_arguments(["-dit", "-eA=1", "-de", "B=2", "--name", "x", "img"], takes_value) == [
        "-it",
        "-eA=1",
        "-e",
        "B=2",
        "img",
    ]
    for word in ("plain", "100%", "$HOME", 'say "hi"', "a\\b", "", "two words", ";", "one\ntwo\r", "tab\there\x7f"):
        (back,) = systemd_words(quote(word), Path("/run"))
        assert back == word, (word, quote(word))
    assert re.fullmatch(r'"100%%"', quote("100%"))


def test_a_pidfile_is_never_written_through_a_link(
    sandbox: Sandbox, world: Path, tmp_path: Path, named: list[str]
) -> None:
    if sandbox.mode != "root":
        pytest.skip("the link's target must be a file the sandbox user could not write otherwise")
    target = tmp_path / "precious"
    target.write_text("keep\n")
    link = tmp_path / "pidfile"
    os.symlink(target, link)
    named += ["pidfile-symlink", "pidfile-hardlink"]  # a failed start is kept, as Docker keeps it: removed after
    refused = tool(sandbox, "run", "-d", "--name", named[0], "--monitor-pidfile", str(link), "--policy",
                   str(world / POLICY), str(world / "busybox-app.tar"), "true")  # fmt: skip
    assert refused.returncode == 125 and "--monitor-pidfile" in refused.stderr, refused.stderr
    assert target.read_text() == "keep\n"
    link.unlink()
    os.link(target, link)  # a hard link: O_TRUNC through it would empty the target
    again = tool(sandbox, "run", "-d", "--name", named[1], "--monitor-pidfile", str(link), "--policy",
                 str(world / POLICY), str(world / "busybox-app.tar"), "true")  # fmt: skip
    assert again.returncode == 125 and target.read_text() == "keep\n", again.stderr


def test_a_stop_timeout_of_zero_stays_zero_in_the_unit(tmp_path: Path) -> None:
    """Found by review: `or 10` turned --stop-timeout 0 into 10."""
    record: dict[str, object] = {"id": "0" * 64, "name": "quick", "image": "busybox", "stop_timeout": 0,
                                 "run": {"argv": ["-d", "busybox", "true"], "cwd": "/"}}  # fmt: skip
    text = systemd.unit(Container(tmp_path, record, {}), "on-failure", None, takes_value, "/usr/bin/pysandbox")
    assert "ExecStop=/usr/bin/pysandbox stop -t 0 quick" in text and "TimeoutStopSec=60" in text, text


def test_what_would_end_a_line_of_the_unit_never_reaches_it(tmp_path: Path) -> None:
    """Found by review: a carriage return in the folder `run` was started from (or in the
    image's path) added a directive; a multi-line script broke the unit."""
    record: dict[str, object] = {"id": "0" * 64, "name": "lines", "image": "evil\r[Service]\rExecStartPre=/x\\",
                                 "run": {"argv": ["img", "sh", "-c", "echo one\necho two\r"], "cwd": "/"}}  # fmt: skip
    text = systemd.unit(Container(tmp_path, record, {}), "on-failure", None, takes_value, "/usr/bin/pysandbox")
    keys = [line.partition("=")[0] for line in text.split("\n") if line and not line.startswith(("#", "["))]
    assert all(key.isalpha() for key in keys) and "\r" not in text, text
    assert systemd_words(entries(text)["ExecStart"], tmp_path)[-1] == "echo one\necho two\r"
    record["run"] = {"argv": ["img"], "cwd": "/tmp\rExecStartPre=INJECTED"}
    with pytest.raises(SandboxError, match="cannot be written into a unit"):
        systemd.unit(Container(tmp_path, record, {}), "on-failure", None, takes_value, "/usr/bin/pysandbox")


def test_a_unit_file_is_private_and_never_written_into_another_users_file(tmp_path: Path) -> None:
    """Found by review: --files opened an existing file with O_TRUNC, another user's too."""
    mine = tmp_path / "container-web.service"
    systemd.write_unit(str(mine), "[Unit]\n")
    assert mine.read_text() == "[Unit]\n" and mine.stat().st_mode & 0o777 == 0o600
    systemd.write_unit(str(mine), "[Service]\n")  # ours: replaced
    assert mine.read_text() == "[Service]\n" and sorted(os.listdir(tmp_path)) == [mine.name]
    if os.geteuid() != 0:
        return
    theirs = tmp_path / "container-other.service"
    theirs.write_text("theirs")
    os.chown(theirs, 65534, 65534)
    with pytest.raises(OSError, match="not a file of ours"):
        systemd.write_unit(str(theirs), "[Unit]\n")
    assert theirs.read_text() == "theirs" and sorted(os.listdir(tmp_path)) == sorted([mine.name, theirs.name])


def test_a_pidfile_is_never_written_through_another_users_symlink(tmp_path: Path) -> None:
    """Found by review: root's --monitor-pidfile followed a folder symlink an ordinary user
    owned, and made a file wherever it pointed (/etc/nologin stops every login)."""
    from pysbx.sandbox.monitor import _write_pidfile

    if os.geteuid() != 0:
        pytest.skip("the link must belong to another user than the one writing")
    target = tmp_path / "target"
    target.mkdir()
    (tmp_path / "run").symlink_to(target)
    os.lchown(tmp_path / "run", 65534, 65534)
    with pytest.raises(OSError, match="is a symlink of uid 65534"):
        _write_pidfile(str(tmp_path / "run" / "nologin"))
    assert list(target.iterdir()) == []
    _write_pidfile(str(target / "monitor.pid"))
    assert (target / "monitor.pid").read_text() == f"{os.getpid()}\n" and len(list(target.iterdir())) == 1
