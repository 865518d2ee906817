"""pyaudit over folders an attacker filled: it reads regular files only, follows no link out
of a walked tree, never blocks on a FIFO, never reads unbounded, and never echoes what it read
into an error message. Each test builds the hostile object in tmp_path and runs the real CLI."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pysbx.audit.detect import AuditInputError
from pysbx.audit.engine import audit
from pysbx.audit.inputs import TEXT_LIMIT, NotRegularFileError, read_regular
from tests.audit.test_rules import only_input_error

BIN = Path(sys.executable).parent
CANARY = "secret123canary"
DOCKERFILE = "FROM alpine:3.20\nUSER 1000\n"
PRIVILEGED_COMPOSE = "services:\n  web:\n    image: nginx:1.27\n    privileged: true\n"
TIMEOUT = 20  # a FIFO opened without O_NONBLOCK waits forever for a writer


def pyaudit(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PYAUDIT_CANARY": CANARY, **os.environ}  # first in /proc/self/environ, where a leak starts
    return subprocess.run(
        [str(BIN / "pyaudit"), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=TIMEOUT
    )


def assert_one_line_input_error(result: subprocess.CompletedProcess[str], *wanted: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    for text in wanted:
        assert text in result.stderr, result.stderr


def assert_no_canary(result: subprocess.CompletedProcess[str]) -> None:
    assert CANARY not in result.stdout.lower() and CANARY not in result.stderr.lower()  # nor upper-cased
    assert "Traceback" not in result.stderr


def tree(tmp_path: Path) -> Path:
    """A walked folder with one ordinary, clean Dockerfile in it."""
    root = tmp_path / "repo"
    (root / "app").mkdir(parents=True)
    (root / "app" / "Dockerfile").write_text(DOCKERFILE)
    return root


def test_a_walked_dockerfile_linked_to_proc_environ_is_skipped_and_leaks_nothing(tmp_path: Path) -> None:
    root = tree(tmp_path)
    (root / "Dockerfile").symlink_to("/proc/self/environ")
    (root / "compose.yaml").symlink_to("/proc/self/environ")
    for fmt in ("text", "json", "sarif"):
        result = pyaudit(str(root), "--format", fmt, "--verbose", "--fail-on", "critical")
        assert_no_canary(result)
        assert result.returncode == 0, result.stderr
    assert f"skipped {root / 'Dockerfile'}: a symbolic link" in result.stderr
    assert str(root / "app" / "Dockerfile") in result.stdout  # the rest of the tree is still audited


def test_a_named_link_to_proc_environ_is_refused_without_echoing_it(tmp_path: Path) -> None:
    for name in ("Dockerfile", "compose.yaml", "config.json"):
        link = tmp_path / name
        link.symlink_to("/proc/self/environ")
        result = pyaudit(str(link))
        assert_no_canary(result)
        assert_one_line_input_error(result, str(link))


def test_a_fifo_in_a_walked_folder_is_skipped_without_blocking(tmp_path: Path) -> None:
    root = tree(tmp_path)
    os.mkfifo(root / "Dockerfile")
    os.mkfifo(root / "app" / "compose.yaml")
    result = pyaudit(str(root), "--verbose", "--fail-on", "critical")
    assert result.returncode == 0, result.stderr
    assert f"skipped {root / 'Dockerfile'}: not a regular file (it is a FIFO)" in result.stderr


def test_a_named_fifo_is_an_input_error(tmp_path: Path) -> None:
    fifo = tmp_path / "Dockerfile"
    os.mkfifo(fifo)
    assert_one_line_input_error(pyaudit(str(fifo)), f"{fifo}: not a regular file (it is a FIFO)")


def test_a_link_to_dev_zero_is_skipped_when_walked_and_refused_when_named(tmp_path: Path) -> None:
    root = tree(tmp_path)
    for name in ("Dockerfile", "data.json", "image.tar"):
        (root / name).symlink_to("/dev/zero")
    walked = pyaudit(str(root), "--verbose", "--fail-on", "critical")
    assert walked.returncode == 0, walked.stderr
    assert f"skipped {root / 'data.json'}: a symbolic link" in walked.stderr
    for name in ("Dockerfile", "data.json", "image.tar"):
        named = pyaudit(str(root / name))
        assert_one_line_input_error(named, str(root / name), "not a regular file (it is a character device)")


def test_a_named_socket_is_an_input_error_and_a_walked_one_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tree(tmp_path)
    monkeypatch.chdir(root)  # AF_UNIX paths are short: bind by a relative name
    with socket.socket(socket.AF_UNIX) as server:
        server.bind("compose.yaml")
        assert_one_line_input_error(pyaudit("compose.yaml", cwd=root), "compose.yaml: not a regular file")
        walked = pyaudit(".", "--verbose", "--fail-on", "critical", cwd=root)
        assert walked.returncode == 0 and "compose.yaml: not a regular file (it is a socket)" in walked.stderr


def test_a_linked_folder_pointing_out_of_the_tree_is_not_followed(tmp_path: Path) -> None:
    root = tree(tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "compose.yaml").write_text(PRIVILEGED_COMPOSE)
    (root / "linked").symlink_to(outside, target_is_directory=True)
    (root / "compose.yaml").symlink_to(outside / "compose.yaml")
    result = pyaudit(str(root), "--verbose", "--format", "json", "--fail-on", "high")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "privileged" not in result.stdout
    assert f"skipped {root / 'linked'}: a symbolic link" in result.stderr
    named = pyaudit(str(root / "linked"))  # what the user names is followed
    assert named.returncode == 1 and "privileged" in named.stdout


def test_a_named_link_to_a_regular_file_is_followed(tmp_path: Path) -> None:
    (tmp_path / "real.yaml").write_text(PRIVILEGED_COMPOSE)
    (tmp_path / "compose.yaml").symlink_to(tmp_path / "real.yaml")
    result = pyaudit(str(tmp_path / "compose.yaml"))
    assert result.returncode == 1 and "privileged" in result.stdout


def test_an_oversized_text_input_is_an_error_when_named_or_claimed(tmp_path: Path) -> None:
    root = tree(tmp_path)
    for name in ("Dockerfile", "data.json"):
        with open(root / name, "wb") as stream:  # sparse: the bytes are read, not written
            stream.write(b"FROM alpine\n")
            stream.truncate(TEXT_LIMIT + 1)
    named = pyaudit(str(root / "Dockerfile"))
    assert_one_line_input_error(named, f"{root / 'Dockerfile'}: larger than the 16 MiB allowed")
    walked = pyaudit(str(root))  # a Dockerfile the gate cannot read must not pass
    assert_one_line_input_error(walked, "Dockerfile: larger than")
    (root / "Dockerfile").unlink()
    walked = pyaudit(str(root), "--verbose", "--fail-on", "critical")  # a big data JSON is not ours
    assert walked.returncode == 0 and "data.json: larger than the 16 MiB" in walked.stderr


def test_a_file_just_under_the_bound_is_read(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    text = DOCKERFILE + "# padding\n" * ((TEXT_LIMIT - len(DOCKERFILE)) // 10)
    path.write_text(text)
    assert len(text) <= TEXT_LIMIT
    assert audit([str(path)]).kinds == {str(path): "dockerfile"}


def test_read_regular_decides_on_the_descriptor_and_bounds_the_read(tmp_path: Path) -> None:
    (tmp_path / "real").write_bytes(b"x" * 100)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert read_regular(str(tmp_path / "link"), 100, follow=True) == b"x" * 100
    with pytest.raises(NotRegularFileError, match="a symbolic link"):
        read_regular(str(tmp_path / "link"), 100, follow=False)
    with pytest.raises(AuditInputError, match="larger than the 99 bytes"):
        read_regular(str(tmp_path / "real"), 99, follow=True)
    assert read_regular(str(tmp_path / "real"), 10, follow=True, truncate=True) == b"x" * 10
    assert read_regular("/proc/self/cmdline", 1 << 20, follow=True)  # procfs: st_size 0, bytes there


def test_parse_errors_name_file_and_line_but_not_content(tmp_path: Path) -> None:
    cases = {
        "Dockerfile": f"FROM alpine\nTOKEN={CANARY} rest\n",
        "Dockerfile.escape": f"# escape={CANARY}\nFROM alpine\n",
        "compose.yaml": f"services:\n  web: !{CANARY} x\n",
        "k8s.yaml": f"apiVersion: v1\nkind: Pod\nspec: *{CANARY}\n",
        "inspect.json": f'[{{"HostConfig": {{"Privileged": !!int {CANARY}}}}}]\n',
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        message = only_input_error(tmp_path / name)
        assert message.startswith(str(tmp_path / name)) and CANARY not in message.lower(), message
    assert re.search(r"Dockerfile:2: not an instruction \(expected FROM", only_input_error(tmp_path / "Dockerfile"))
    message = only_input_error(tmp_path / "compose.yaml")
    assert re.search(r"compose.yaml:2:8: not valid YAML or JSON \(.*text not shown", message)


def test_a_named_baseline_that_is_a_fifo_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    os.mkfifo(tmp_path / "baseline.json")
    result = pyaudit(str(tmp_path / "Dockerfile"), "--baseline", str(tmp_path / "baseline.json"))
    assert_one_line_input_error(result, "baseline.json: not a regular file (it is a FIFO)")


def test_a_file_swapped_for_a_fifo_after_the_check_is_refused_on_its_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race a stat-then-open check loses: the stat saw a regular file, the open finds a FIFO."""
    from pysbx.audit import inputs

    (tmp_path / "regular").write_text(DOCKERFILE)
    os.mkfifo(tmp_path / "Dockerfile")
    regular = os.stat(tmp_path / "regular")

    class OsWhoseStatSaysRegular:  # os for audit.inputs alone, not for the rest of the process
        def __getattr__(self, name: str) -> object:
            return getattr(os, name)

        def stat(self, path: str) -> os.stat_result:
            return regular

        lstat = stat

    def blocked(signum: int, frame: object) -> None:
        raise AssertionError("read_regular waited on a FIFO")

    monkeypatch.setattr(inputs, "os", OsWhoseStatSaysRegular())
    previous = signal.signal(signal.SIGALRM, blocked)
    signal.alarm(TIMEOUT)
    try:
        for follow in (True, False):
            with pytest.raises(NotRegularFileError, match="it is a FIFO"):
                read_regular(str(tmp_path / "Dockerfile"), TEXT_LIMIT, follow=follow)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_a_stage_number_too_long_for_int_is_no_stage() -> None:
    """Found by the property test: `FROM <4,400 digits>` after a stage made int() raise."""
    from pysbx.audit.sources.dockerfile import parse_dockerfile

    parsed = parse_dockerfile("FROM a AS b\nFROM " + "1" * 4400 + "\n", "Dockerfile")
    assert len(parsed.stages) == 2
