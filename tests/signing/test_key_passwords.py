"""Private keys are encrypted unless asked otherwise, as cosign does: $COSIGN_PASSWORD, else a
password typed twice on a terminal; an unencrypted key only with --no-password (or an empty
COSIGN_PASSWORD); without any of them and no terminal, an error and no file."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import termios
import time
from pathlib import Path

from tests.imagekit import T, image_of, write_image

PYSANDBOX = str(Path(sys.executable).parent / "pysandbox")


def keygen(prefix: Path, *flags: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "COSIGN_PASSWORD"}
    if password is not None:
        env["COSIGN_PASSWORD"] = password
    return subprocess.run(
        [PYSANDBOX, "keygen", "--output-key-prefix", str(prefix), *flags],
        capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=60,
    )  # fmt: skip


def on_terminal(argv: list[str], typed: list[bytes], env: dict[str, str]) -> tuple[int, str]:
    """Run with a pty as controlling terminal and stdin, answering each prompt in turn."""
    master, slave = os.openpty()

    def controlling_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
                               preexec_fn=controlling_terminal)  # fmt: skip
    os.close(slave)
    output = b""
    for answer in typed:
        deadline = time.monotonic() + 20
        while b"password" not in output.lower().rsplit(b"\n", 1)[-1] and time.monotonic() < deadline:
            output += os.read(master, 4096)
        os.write(master, answer)
        output += b"\n"  # the next prompt is on a line of its own
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    return process.wait(timeout=30), output.decode(errors="replace")


def test_no_password_and_no_terminal_is_an_error_that_writes_nothing(tmp_path: Path) -> None:
    result = keygen(tmp_path / "k")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "--no-password" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_environment_password_encrypts_and_an_explicit_choice_does_not(tmp_path: Path) -> None:
    assert keygen(tmp_path / "enc", password="s3cret").returncode == 0
    assert b"ENCRYPTED" in (tmp_path / "enc.key").read_bytes()
    assert keygen(tmp_path / "plain", "--no-password").returncode == 0
    assert keygen(tmp_path / "empty", password="").returncode == 0
    for name in ("plain", "empty"):
        assert b"ENCRYPTED" not in (tmp_path / f"{name}.key").read_bytes()
    assert (tmp_path / "enc.key").stat().st_mode & 0o777 == 0o600


def test_a_password_typed_twice_on_a_terminal_encrypts_the_key_and_signs(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "COSIGN_PASSWORD"}
    code, out = on_terminal(
        [PYSANDBOX, "keygen", "--output-key-prefix", str(tmp_path / "t")], [b"pw-1\n", b"pw-1\n"], env
    )
    assert code == 0, out
    assert "s3cret" not in out and "pw-1" not in out  # not echoed
    assert b"ENCRYPTED" in (tmp_path / "t.key").read_bytes()
    image = write_image(image_of([T("a")]), tmp_path, "oci-layout")
    code, out = on_terminal([PYSANDBOX, "sign", image, "--key", str(tmp_path / "t.key")], [b"pw-1\n"], env)
    assert code == 0, out
    unattended = subprocess.run([PYSANDBOX, "sign", image, "--key", str(tmp_path / "t.key")], capture_output=True,
                                text=True, env=env, stdin=subprocess.DEVNULL, timeout=60)  # fmt: skip
    assert unattended.returncode == 2 and "the key is encrypted; give its password" in unattended.stderr


def test_passwords_that_differ_write_no_key(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "COSIGN_PASSWORD"}
    code, out = on_terminal(
        [PYSANDBOX, "keygen", "--output-key-prefix", str(tmp_path / "t")], [b"one\n", b"two\n"], env
    )
    assert code == 2 and "do not match" in out
    assert list(tmp_path.iterdir()) == []
