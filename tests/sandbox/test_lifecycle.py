"""Detached containers, as root and as an ordinary user: `run -d` returns once the command
runs and the container outlives it; `ps`, `logs [-f] [--tail] [-t]`, `wait`, `stop`, `kill`,
`rm`, `inspect` behave as Docker's; names stay taken until `rm`; setup errors reach `run -d`
with Docker's exit codes; a monitor killed with SIGKILL leaves a container `ps` reports as
exited; logs stay within their bounds."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from pysbx.sandbox import procfs
from tests.sandbox.harness import Sandbox, processes_with, strict_variant, tool, tool_argv, wait_until

POLICY = "strict-unsigned.yaml"


def detach(
    sandbox: Sandbox, world: Path, name: str, script: str, *flags: str, **kw: object
) -> subprocess.CompletedProcess[str]:
    return tool(sandbox, "run", "-d", "--name", name, *flags, "--policy", str(world / POLICY),
                str(world / "busybox-app.tar"), "sh", "-c", script, **kw)  # fmt: skip


def test_a_detached_container_outlives_run_and_its_output_is_kept(
    sandbox: Sandbox, world: Path, named: list[str]
) -> None:
    named.append(name := f"life-{sandbox.mode}")
    started = time.monotonic()
    ran = detach(sandbox, world, name, "echo one; echo two >&2; sleep 1; echo three; exit 3")
    assert ran.returncode == 0 and re.fullmatch(r"[0-9a-f]{64}\n", ran.stdout), ran.stderr
    assert time.monotonic() - started < 5
    listed = tool(sandbox, "ps")
    assert name in listed.stdout and "Up " in listed.stdout, listed.stdout
    followed = tool(sandbox, "logs", "-f", name)  # returns once the container has exited
    assert followed.stdout == "one\nthree\n" and followed.stderr == "two\n"
    assert tool(sandbox, "wait", name).stdout == "3\n"
    assert tool(sandbox, "logs", "--tail", "1", name).stdout == "three\n"
    stamped = tool(sandbox, "logs", "-t", name).stdout.splitlines()[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z one", stamped), stamped
    assert name not in tool(sandbox, "ps").stdout
    everything = json.loads(tool(sandbox, "ps", "-a", "--format", "json").stdout)
    (row,) = [row for row in everything if row["name"] == name]
    assert row["state"] == "exited" and row["status"].startswith("Exited (3)") and row["id"] == ran.stdout.strip()
    (inspected,) = json.loads(tool(sandbox, "inspect", ran.stdout.strip()[:12]).stdout)
    assert inspected["name"] == name and inspected["status"]["exit_code"] == 3
    folder = Path(inspected["folder"])
    assert tool(sandbox, "rm", name).returncode == 0
    assert name not in tool(sandbox, "ps", "-a").stdout and not folder.exists()


def test_stop_asks_with_sigterm_then_kills_after_the_timeout(sandbox: Sandbox, world: Path, named: list[str]) -> None:
    named += [polite := f"polite-{sandbox.mode}", stubborn := f"stubborn-{sandbox.mode}"]
    assert detach(sandbox, world, polite, "trap 'exit 0' TERM; while :; do sleep 0.1; done").returncode == 0
    assert detach(sandbox, world, stubborn, "trap '' TERM; while :; do sleep 0.1; done").returncode == 0
    started = time.monotonic()
    assert tool(sandbox, "stop", "-t", "5", polite).returncode == 0
    assert time.monotonic() - started < 4 and tool(sandbox, "wait", polite).stdout == "0\n"
    started = time.monotonic()
    assert tool(sandbox, "stop", "-t", "1", stubborn).returncode == 0
    assert 1 <= time.monotonic() - started < 6 and tool(sandbox, "wait", stubborn).stdout == "137\n"


def test_a_name_stays_taken_until_rm(sandbox: Sandbox, world: Path, named: list[str]) -> None:
    named.append(name := f"taken-{sandbox.mode}")
    assert detach(sandbox, world, name, "exit 0").returncode == 0
    assert tool(sandbox, "wait", name).stdout == "0\n"
    again = detach(sandbox, world, name, "exit 0")
    assert again.returncode == 125 and f"the container name {name!r} is in use" in again.stderr
    foreground = sandbox("--name", name, "true")
    assert foreground.returncode == 125 and "is in use" in foreground.stderr
    assert tool(sandbox, "rm", name).returncode == 0
    assert detach(sandbox, world, name, "exit 0").returncode == 0


def test_setup_errors_reach_run_d_with_dockers_codes(sandbox: Sandbox, world: Path, named: list[str]) -> None:
    named.append(name := f"broken-{sandbox.mode}")
    missing = tool(sandbox, "run", "-d", "--name", name, "--policy", str(world / POLICY),
                   str(world / "busybox-app.tar"), "/no/such/command")  # fmt: skip
    assert missing.returncode == 127 and "/no/such/command" in missing.stderr and missing.stdout == ""


def test_a_monitor_killed_with_sigkill_leaves_a_container_ps_calls_exited(
    sandbox: Sandbox, world: Path, named: list[str]
) -> None:
    named.append(name := f"orphan-{sandbox.mode}")
    assert detach(sandbox, world, name, "while :; do sleep 0.1; done").returncode == 0
    (inspected,) = json.loads(tool(sandbox, "inspect", name).stdout)
    monitor, init = inspected["status"]["monitor"][0], inspected["status"]["init"][0]
    os.kill(monitor, signal.SIGKILL)
    for _ in range(50):  # PID 1 had the monitor as its parent's parent: the death signal takes it
        if not Path(f"/proc/{init}").exists():
            break
        time.sleep(0.1)
    assert not Path(f"/proc/{init}").exists()
    (row,) = [row for row in json.loads(tool(sandbox, "ps", "-a", "--format", "json").stdout) if row["name"] == name]
    assert row["state"] == "exited" and row["status"] == "Exited (monitor gone)"
    assert tool(sandbox, "rm", name).returncode == 0 and not Path(inspected["folder"]).exists()


def test_logs_stay_within_their_bounds(sandbox: Sandbox, world: Path, named: list[str]) -> None:
    named.append(name := f"chatty-{sandbox.mode}")
    script = "i=0; while [ $i -lt 3000 ]; do echo line $i; i=$((i+1)); done"
    assert detach(sandbox, world, name, script, "--log-opt", "max-size=8k", "--log-opt", "max-file=2").returncode == 0
    assert tool(sandbox, "wait", name).stdout == "0\n"
    (inspected,) = json.loads(tool(sandbox, "inspect", name).stdout)
    files = [Path(path) for path in inspected["log_files"] if Path(path).exists()]
    assert len(files) == 2 and all(path.stat().st_size <= 8192 for path in files)
    assert tool(sandbox, "logs", "--tail", "1", name).stdout == "line 2999\n"


def test_on_failure_restarts_up_to_its_count_and_keeps_the_writable_layer(
    sandbox: Sandbox, world: Path, named: list[str]
) -> None:
    """Each run appends to a file in the root filesystem: a restart sees what the run before
    it wrote (permissive: its writable layer is on disk; under a policy with writable_size
    it is a tmpfs, which does not outlive a run)."""
    named.append(name := f"flaky-{sandbox.mode}")
    ran = tool(sandbox, "run", "-d", "--name", name, "--restart", "on-failure:2", "--policy",
               str(world / "permissive-unsigned.yaml"), str(world / "busybox-root.tar"), "sh", "-c",
               "echo x >> /runs; wc -l < /runs; exit 2")  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert tool(sandbox, "wait", name).stdout == "2\n"
    assert tool(sandbox, "logs", name).stdout.split() == ["1", "2", "3"]
    (inspected,) = json.loads(tool(sandbox, "inspect", name).stdout)
    assert inspected["status"]["restarts"] == 2 and inspected["restart"] == "on-failure:2"


def test_a_stopped_container_is_not_restarted_even_with_always(sandbox: Sandbox, world: Path, named: list[str]) -> None:
    named.append(name := f"always-{sandbox.mode}")
    started = tool(sandbox, "run", "-d", "--name", name, "--restart", "always", "--policy",
                   str(world / "baseline-unsigned.yaml"), str(world / "busybox-app.tar"), "sh", "-c", "echo run; sleep 0.3")  # fmt: skip
    assert started.returncode == 0, started.stderr
    for _ in range(40):  # a few restarts
        if tool(sandbox, "logs", name).stdout.count("run") >= 3:
            break
        time.sleep(0.1)
    assert tool(sandbox, "stop", "-t", "2", name).returncode == 0
    runs = tool(sandbox, "logs", name).stdout.count("run")
    assert runs >= 3
    time.sleep(1)
    assert tool(sandbox, "logs", name).stdout.count("run") == runs
    (row,) = [row for row in json.loads(tool(sandbox, "ps", "-a", "--format", "json").stdout) if row["name"] == name]
    assert row["state"] == "exited"


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--restart", "always"], "--restart always needs -d"),
        (["-d", "--rm", "--restart", "on-failure"], "--restart on-failure and --rm conflict"),
        (["-d", "--restart", "sometimes"], "expected no, on-failure[:N], always or unless-stopped"),
        (["-d", "--log-opt", "max-size=1"], "expected max-size of at least 4k"),
    ],
)
def test_lifecycle_flags_are_checked_before_anything_starts(
    sandbox: Sandbox, world: Path, flags: list[str], words: str
) -> None:
    result = tool(sandbox, "run", *flags, "--policy", str(world / POLICY), str(world / "busybox-app.tar"), "true")
    assert result.returncode == 125 and words in result.stderr and result.stdout == "", result.stderr


def test_the_policy_governs_detach_restarts_logs_and_exec(sandbox: Sandbox, world: Path, named: list[str]) -> None:
    """Each refusal names the policy line; exec follows the policy the container started under."""
    strict = world / POLICY
    lines = strict.read_text().splitlines()
    restart_line = next(number for number, line in enumerate(lines, 1) if line.strip().startswith("restart:"))
    always = tool(sandbox, "run", "-d", "--restart", "always", "--policy", str(strict),
                  str(world / "busybox-app.tar"), "true")  # fmt: skip
    assert always.returncode == 125 and f"allows no, on-failure ({strict}:{restart_line})" in always.stderr
    big = tool(sandbox, "run", "-d", "--log-opt", "max-size=1g", "--policy", str(strict),
               str(world / "busybox-app.tar"), "true")  # fmt: skip
    assert big.returncode == 125 and "max-size=1g is refused: the policy allows 10Mi" in big.stderr, big.stderr
    closed = strict_variant(world, "no-detach.yaml", ("    detach: true", "    detach: false"),
                            ("    exec: true", "    exec: false"))  # fmt: skip
    refused = tool(sandbox, "run", "-d", "--policy", str(closed), str(world / "busybox-app.tar"), "true")
    assert refused.returncode == 125 and "-d is refused: the policy does not allow detached" in refused.stderr
    no_exec = strict_variant(world, "no-exec.yaml", ("    exec: true", "    exec: false"))
    named.append(name := f"sealed-{sandbox.mode}")
    started = tool(sandbox, "run", "-d", "--name", name, "--policy", str(no_exec), str(world / "busybox-app.tar"),
                   "sleep", "60")  # fmt: skip
    assert started.returncode == 0, started.stderr
    entered = tool(sandbox, "exec", name, "true")
    assert entered.returncode == 125 and "exec is refused" in entered.stderr and str(no_exec) in entered.stderr


def test_start_and_restart_run_the_same_container_again_and_prune_removes_only_exited_ones(
    sandbox: Sandbox, world: Path, named: list[str]
) -> None:
    named += [again := f"again-{sandbox.mode}", alive := f"alive-{sandbox.mode}"]
    ran = tool(sandbox, "run", "-d", "--name", again, "--policy", str(world / "permissive-unsigned.yaml"),
               str(world / "busybox-root.tar"), "sh", "-c", "echo x >> /runs; wc -l < /runs")  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert tool(sandbox, "wait", again).stdout == "0\n"
    assert tool(sandbox, "start", again).returncode == 0 and tool(sandbox, "wait", again).stdout == "0\n"
    assert tool(sandbox, "restart", "-t", "1", again).returncode == 0 and tool(sandbox, "wait", again).stdout == "0\n"
    assert tool(sandbox, "logs", again).stdout.split() == ["1", "2", "3"]  # one writable layer throughout
    assert detach(sandbox, world, alive, "sleep 60").returncode == 0
    refused = tool(sandbox, "start", alive)
    assert refused.returncode == 125 and "only an exited one starts again" in refused.stderr
    pruned = tool(sandbox, "container", "prune", "-f")
    assert pruned.returncode == 0 and ran.stdout.strip() in pruned.stdout.split()
    left = [row["name"] for row in json.loads(tool(sandbox, "ps", "-a", "--format", "json").stdout)]
    assert alive in left and again not in left


def test_kill_delivers_forwarded_signals_to_the_command_and_refuses_others(
    sandbox: Sandbox, world: Path, named: list[str]
) -> None:
    """Found by review: a signal the monitor does not forward (ALRM) killed the monitor."""
    named.append(name := f"signalled-{sandbox.mode}")
    script = "trap 'echo got-usr1' USR1; echo ready; while :; do sleep 0.1; done"
    assert detach(sandbox, world, name, script).returncode == 0
    refused = tool(sandbox, "kill", "-s", "ALRM", name)
    assert refused.returncode == 1 and "pysandbox delivers KILL, TERM" in refused.stderr
    assert tool(sandbox, "kill", "-s", "USR1", name).returncode == 0
    for _ in range(50):
        if "got-usr1" in tool(sandbox, "logs", name).stdout:
            break
        time.sleep(0.1)
    assert "got-usr1" in tool(sandbox, "logs", name).stdout
    (row,) = [row for row in json.loads(tool(sandbox, "ps", "--format", "json").stdout) if row["name"] == name]
    assert row["state"] == "running"
    assert tool(sandbox, "kill", name).returncode == 0 and tool(sandbox, "wait", name).stdout == "137\n"


def test_one_endless_line_of_nul_bytes_stays_within_the_log_bounds(
    sandbox: Sandbox, world: Path, named: list[str]
) -> None:
    """Found by review: a line without a newline was kept in memory whole and written as one
    entry (30 MB into a 1 MiB log), and NUL bytes grow sixfold in JSON."""
    named.append(name := f"endless-{sandbox.mode}")
    script = "head -c 3000000 /dev/zero; echo; echo end"
    flags = ("--log-opt", "max-size=64k", "--log-opt", "max-file=2")
    assert detach(sandbox, world, name, script, *flags).returncode == 0
    assert tool(sandbox, "wait", name).stdout == "0\n"
    (inspected,) = json.loads(tool(sandbox, "inspect", name).stdout)
    files = [Path(path) for path in inspected["log_files"] if Path(path).exists()]
    assert len(files) == 2 and all(path.stat().st_size <= 64 << 10 for path in files)
    assert tool(sandbox, "logs", "--tail", "1", name).stdout == "end\n"


def test_logs_since_and_until_pick_entries_by_their_time(sandbox: Sandbox, world: Path, named: list[str]) -> None:
    named.append(name := f"timed-{sandbox.mode}")
    assert detach(sandbox, world, name, "echo early; sleep 2; echo late").returncode == 0
    assert tool(sandbox, "wait", name).stdout == "0\n"
    stamped = dict(reversed(line.split(" ", 1)) for line in tool(sandbox, "logs", "-t", name).stdout.splitlines())
    assert tool(sandbox, "logs", "--since", stamped["late"], name).stdout == "late\n"
    assert tool(sandbox, "logs", "--until", stamped["late"], name).stdout == "early\n"
    assert tool(sandbox, "logs", "--since", "1h", name).stdout == "early\nlate\n"
    assert tool(sandbox, "logs", "--until", "1h", name).stdout == ""
    bad = tool(sandbox, "logs", "--since", "yesterday", name)
    assert bad.returncode == 125 and "expected a time" in bad.stderr


def ticks(sandbox: Sandbox, name: str) -> int:
    return tool(sandbox, "logs", name).stdout.count("tick")


def test_pause_freezes_the_container_and_unpause_lets_it_go_on(sandbox: Sandbox, world: Path, named: list[str]) -> None:
    """Through the cgroup freezer where the host gives one (root here); where it does not
    (an ordinary user on cgroup v1), pause says so in one line and changes nothing."""
    named.append(name := f"paused-{sandbox.mode}")
    assert detach(sandbox, world, name, "while :; do echo tick; sleep 0.05; done").returncode == 0
    paused = tool(sandbox, "pause", name)
    if paused.returncode != 0:
        assert sandbox.mode == "user" and paused.stderr.count("\n") == 1 and "freezer" in paused.stderr, paused.stderr
        before = ticks(sandbox, name)
        time.sleep(0.5)
        assert ticks(sandbox, name) > before and "Up " in tool(sandbox, "ps").stdout
        return
    before = ticks(sandbox, name)
    time.sleep(0.6)
    assert ticks(sandbox, name) == before  # nothing of it ran
    assert "(Paused)" in tool(sandbox, "ps").stdout
    refused = tool(sandbox, "exec", name, "true")
    assert refused.returncode == 125 and "is paused" in refused.stderr
    assert tool(sandbox, "pause", name).returncode == 1  # already paused
    assert tool(sandbox, "unpause", name).returncode == 0
    time.sleep(0.5)
    assert ticks(sandbox, name) > before and "(Paused)" not in tool(sandbox, "ps").stdout
    assert tool(sandbox, "pause", name).returncode == 0
    frozen = ticks(sandbox, name)
    assert tool(sandbox, "kill", "-s", "WINCH", name).returncode == 0  # pending until unpause (found by review)
    time.sleep(0.4)
    assert "(Paused)" in tool(sandbox, "ps").stdout and ticks(sandbox, name) == frozen
    started = time.monotonic()
    assert tool(sandbox, "stop", "-t", "5", name).returncode == 0  # a paused container stops: thawed after its signal
    assert time.monotonic() - started < 4 and tool(sandbox, "wait", name).stdout == "143\n"


def volume_names(sandbox: Sandbox) -> set[str]:
    return {line.split("\t")[0] for line in tool(sandbox, "volume", "ls").stdout.splitlines()}


def test_anonymous_volumes_belong_to_their_container(sandbox: Sandbox, world: Path, named: list[str]) -> None:
    """-v /path is a volume of the container's own: volume rm refuses it while the container
    exists, rm -v and --rm remove it with the container, a plain rm leaves it."""
    named += [kept := f"anon-{sandbox.mode}", removed := f"anon-rm-{sandbox.mode}"]
    before = volume_names(sandbox)
    flags = ("-v", "/data", "--policy", str(world / "volumes-allowed.yaml"), str(world / "busybox-root.tar"))
    started = tool(sandbox, "run", "-d", "--name", kept, *flags, "sh", "-c", "echo hi > /data/f; exec sleep 600")
    assert started.returncode == 0, started.stderr
    (inspected,) = json.loads(tool(sandbox, "inspect", kept).stdout)
    (volume,) = inspected["anonymous_volumes"]
    assert volume_names(sandbox) - before == {volume} and re.fullmatch(r"[0-9a-f]{64}", volume)
    in_use = tool(sandbox, "volume", "rm", volume)
    assert in_use.returncode == 125 and f"in use by container {kept}" in in_use.stderr
    assert tool(sandbox, "rm", "-f", "-v", kept).returncode == 0
    assert volume_names(sandbox) == before
    assert tool(sandbox, "run", "-d", "--rm", "--name", removed, *flags, "true").returncode == 0
    assert wait_until(lambda: volume_names(sandbox) == before, seconds=10)  # --rm took it with the container
    assert tool(sandbox, "run", "--rm", *flags, "true").returncode == 0  # in the foreground too
    assert volume_names(sandbox) == before
    assert tool(sandbox, "run", "-d", "--name", kept, *flags, "true").returncode == 0
    assert tool(sandbox, "wait", kept).stdout == "0\n" and tool(sandbox, "rm", kept).returncode == 0
    (left,) = volume_names(sandbox) - before  # Docker's rm without -v keeps it
    assert tool(sandbox, "volume", "rm", left).returncode == 0


def test_logs_f_loses_no_line_across_rotations(sandbox: Sandbox, world: Path, named: list[str]) -> None:
    """The follower keeps the file it reads open: a rotation between two reads (several, at
    this rate) costs it nothing, neither the old file's last lines nor a whole rotated file."""
    named.append(name := f"rotating-{sandbox.mode}")
    count = 10000  # in batches of 100 every 10 ms: about a rotation per read, far below five
    script = (f"read go; i=0; while [ $i -lt {count} ]; do echo line-$i; i=$((i+1)); "
              "[ $((i % 100)) = 0 ] && sleep 0.01; done")  # fmt: skip
    policy = strict_variant(world, "five-logs.yaml", ("    log_max_file: 2", "    log_max_file: 5"))
    started = tool(sandbox, "run", "-d", "-i", "--name", name, "--log-opt", "max-size=64k", "--log-opt", "max-file=5",
                   "--policy", str(policy), str(world / "busybox-app.tar"), "sh", "-c", script)  # fmt: skip
    assert started.returncode == 0, started.stderr
    follower = subprocess.Popen([*tool_argv(sandbox), "logs", "-f", name], stdout=subprocess.PIPE, text=True, cwd="/")
    time.sleep(0.5)  # following before the first line
    subprocess.run([*tool_argv(sandbox), "attach", "--detach-keys", "ctrl-x", name], input=b"go\n\x18", timeout=30)
    out, _ = follower.communicate(timeout=120)
    assert out.splitlines() == [f"line-{index}" for index in range(count)]
    assert len(list(Path(json.loads(tool(sandbox, "inspect", name).stdout)[0]["folder"]).glob("ctr.log*"))) == 5


def test_ps_format_takes_dockers_templates(sandbox: Sandbox, world: Path, named: list[str]) -> None:
    named.append(name := f"templated-{sandbox.mode}")
    assert detach(sandbox, world, name, "exec sleep 600").returncode == 0
    (row,) = [r for r in json.loads(tool(sandbox, "ps", "--format", "json").stdout) if r["name"] == name]
    lines = tool(sandbox, "ps", "--format", "{{.Names}}\\t{{.State}} {{ .ID }}").stdout.splitlines()
    assert f"{name}\trunning {row['id'][:12]}" in lines
    table = tool(sandbox, "ps", "--format", "table {{.Names}}\\t{{.Status}}").stdout.splitlines()
    assert table[0] == "NAMES\tSTATUS" and any(line.startswith(f"{name}\tUp ") for line in table[1:])
    wrong = tool(sandbox, "ps", "--format", "{{.Labels}}")
    assert wrong.returncode == 125 and "{{.Field}}" in wrong.stderr


def paused_then_orphaned(sandbox: Sandbox, world: Path, name: str, script: str) -> str:
    """A detached container, paused, whose monitor is then killed; its folder. Skips where
    this user gets no freezer (test_pause_freezes... checks the one-line refusal)."""
    assert detach(sandbox, world, name, script).returncode == 0
    if tool(sandbox, "pause", name).returncode != 0:
        pytest.skip("no freezer for this user here")
    (inspected,) = json.loads(tool(sandbox, "inspect", name).stdout)
    os.kill(inspected["status"]["monitor"][0], signal.SIGKILL)
    time.sleep(0.5)
    return str(inspected["folder"])


def test_a_container_paused_when_its_monitor_died_is_thawed_and_removed_by_rm(
    sandbox: Sandbox, world: Path, named: list[str]
) -> None:
    """Found by review: with the monitor gone, rm -f neither thawed nor killed, and the
    container's processes stayed frozen for good."""
    named.append(name := f"frozen-orphan-{sandbox.mode}")
    marker = f"{7_000_000 + os.getpid() * 2 + (sandbox.mode == 'user')}"  # in the command's own argv
    paused_then_orphaned(sandbox, world, name, f"sleep {marker} & exec sleep {marker}")
    assert len(processes_with(marker)) == 2
    assert tool(sandbox, "rm", "-f", name).returncode == 0
    assert wait_until(lambda: not processes_with(marker), seconds=10), processes_with(marker)


def test_a_signal_that_meets_a_restart_back_off_does_not_end_the_monitor(
    sandbox: Sandbox, world: Path, named: list[str]
) -> None:
    """Found by review: between two runs the monitor took QUIT, HUP, USR1... as their default
    action, and died unrecorded."""
    named.append(name := f"backing-off-{sandbox.mode}")
    assert detach(sandbox, world, name, "sleep 0.2; exit 1", "--restart", "on-failure").returncode == 0
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # the signals must land in a back-off (after the 4th run: 800 ms)
        (inspected,) = json.loads(tool(sandbox, "inspect", name).stdout)
        if inspected["status"]["status"] == "restarting" and inspected["status"]["restarts"] >= 4:
            break
        time.sleep(0.02)
    monitor = inspected["status"]["monitor"][0]
    for signum in (signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1, signal.SIGINT):
        os.kill(monitor, signum)
    restarts = inspected["status"]["restarts"]
    assert wait_until(lambda: json.loads(tool(sandbox, "inspect", name).stdout)[0]["status"]["restarts"] > restarts)
    assert Path(f"/proc/{monitor}").exists()  # the same monitor goes on restarting it
    assert tool(sandbox, "stop", "-t", "2", name).returncode == 0
    assert tool(sandbox, "wait", name).stdout.strip() in ("1", "143")


def test_prune_thaws_a_frozen_cgroup_whose_container_is_gone(sandbox: Sandbox, world: Path, named: list[str]) -> None:
    """A paused container whose monitor died and whose folder went by other means than rm:
    pysandbox prune thaws its cgroup, so its processes take the SIGKILL they wait for."""
    named.append(name := f"frozen-gone-{sandbox.mode}")
    marker = f"{8_000_000 + os.getpid() * 2 + (sandbox.mode == 'user')}"  # in the command's own argv
    shutil.rmtree(paused_then_orphaned(sandbox, world, name, f"exec sleep {marker}"))
    assert processes_with(marker)  # frozen, with nothing left that knows of them
    pruned = tool(sandbox, "prune")
    assert pruned.returncode == 0 and "frozen" in pruned.stdout + pruned.stderr, pruned
    assert wait_until(lambda: not processes_with(marker), seconds=10), processes_with(marker)


def test_start_of_a_container_without_a_saved_spec_is_one_error(
    sandbox: Sandbox, world: Path, named: list[str]
) -> None:
    """Found by review: a monitor that failed before saving the spec (--monitor-pidfile) left
    a container whose `start` ended in a traceback."""
    named.append(name := f"specless-{sandbox.mode}")
    assert detach(sandbox, world, name, "true").returncode == 0
    assert tool(sandbox, "wait", name).stdout == "0\n"
    (inspected,) = json.loads(tool(sandbox, "inspect", name).stdout)
    (Path(inspected["folder"]) / "spec.json").unlink()
    for command in (["start"], ["restart", "-t", "1"]):
        again = tool(sandbox, *command, name)
        assert again.returncode == 125 and again.stderr.count("\n") == 1, again.stderr
        assert "cannot start again: its saved spec is unreadable" in again.stderr and "Traceback" not in again.stderr


def test_a_log_pipe_held_outside_the_container_does_not_hold_up_stop(
    sandbox: Sandbox, world: Path, named: list[str]
) -> None:
    """Found by review: a container that handed its stdout to a process outside it (another
    container, through a shared volume) kept its log writer, and so its monitor, waiting for
    the pipe's end: `stop` hung and ps said Up. Here the holder is the test, through
    /proc/PID/fd. What the pipe held at the end is still logged."""
    if os.geteuid() != 0:
        pytest.skip("opens the container's stdout through /proc/PID/fd: root's reach")
    named.append(name := f"handed-{sandbox.mode}")
    assert detach(sandbox, world, name, "echo before; exec sleep 600").returncode == 0
    assert wait_until(lambda: tool(sandbox, "logs", name).stdout == "before\n")
    (inspected,) = json.loads(tool(sandbox, "inspect", name).stdout)
    init = inspected["status"]["init"][0]
    (command,) = procfs.children(init)
    held = os.open(f"/proc/{command}/fd/1", os.O_WRONLY)
    try:
        os.write(held, b"from outside\n")
        started = time.monotonic()
        assert tool(sandbox, "stop", "-t", "1", name).returncode == 0
        assert time.monotonic() - started < 4  # the writer ends at once, not at the monitor's grace (5 s) kill
        assert "Exited" in tool(sandbox, "ps", "-a", "--filter", f"name={name}").stdout
    finally:
        os.close(held)
    assert tool(sandbox, "logs", name).stdout == "before\nfrom outside\n"


def test_no_process_of_a_detached_container_shows_its_run_command_line(
    sandbox: Sandbox, world: Path, named: list[str]
) -> None:
    """Found by review: the monitor, its log writer and the setup process kept `run`'s argv,
    -e values included, in /proc/PID/cmdline, which every user of the host can read."""
    named.append(name := f"secretive-{sandbox.mode}")
    assert detach(sandbox, world, name, "exec sleep 600", "-e", "DB_PASSWORD=hunter2").returncode == 0
    (inspected,) = json.loads(tool(sandbox, "inspect", name).stdout)
    monitor = inspected["status"]["monitor"][0]
    shown = {pid: Path(f"/proc/{pid}/cmdline").read_bytes() for pid in [monitor, *procfs.descendants(monitor)]}
    assert shown[monitor].rstrip(b"\0") == f"pysandbox-monitor {name}".encode(), shown[monitor]
    assert not any(b"hunter2" in line for line in shown.values()), shown
    assert tool(sandbox, "exec", name, "sh", "-c", "echo $DB_PASSWORD").stdout == "hunter2\n"  # still the container's


def test_prune_leaves_alone_a_container_paused_from_another_storage(
    sandbox: Sandbox, world: Path, tmp_path: Path
) -> None:
    """Found by review: prune took any frozen cgroup without a state folder in its own
    storage for an orphan, and thawed a container paused under another PYSANDBOX_STATE."""
    if sandbox.mode != "root" or os.geteuid() != 0:
        pytest.skip("another storage of root's: PYSANDBOX_STATE passes to root's own runs")
    other = tmp_path / "other-storage"
    other.mkdir(mode=0o700)
    env = {**os.environ, "PYSANDBOX_STATE": str(other)}
    name = f"elsewhere-{os.getpid()}"
    try:
        assert detach(sandbox, world, name, "while :; do echo tick; sleep 0.05; done", env=env).returncode == 0
        if tool(sandbox, "pause", name, env=env).returncode != 0:
            pytest.skip("no freezer here")
        frozen = tool(sandbox, "logs", name, env=env).stdout.count("tick")
        pruned = tool(sandbox, "prune")
        assert pruned.returncode == 0 and name not in pruned.stdout + pruned.stderr, pruned.stdout
        time.sleep(0.4)
        assert tool(sandbox, "logs", name, env=env).stdout.count("tick") == frozen
    finally:
        tool(sandbox, "rm", "-f", name, env=env)


def test_an_empty_name_claim_holds_no_name(sandbox: Sandbox, world: Path, named: list[str]) -> None:
    """Found by the stress test: a run -d killed between creating its name's claim and
    writing it left an empty claim, which held the name for good and which prune kept.
    Claims are now linked in whole; an empty one (from before) is taken over and pruned."""
    named += [first := f"claims-{sandbox.mode}", second := f"claimed-{sandbox.mode}"]
    assert detach(sandbox, world, first, "true").returncode == 0
    (inspected,) = json.loads(tool(sandbox, "inspect", first).stdout)
    names = Path(inspected["folder"]).parent.parent / "names"
    assert sorted(path.name for path in names.iterdir() if path.name.startswith("claim")) == [first]  # no draft left
    for name in (second, f"pruned-{sandbox.mode}"):
        (names / name).touch()
        shutil.chown(names / name, *(2 * [sandbox.user] if sandbox.user else ["root", "root"]))
    assert detach(sandbox, world, second, "true").returncode == 0  # taken over
    assert tool(sandbox, "prune").returncode == 0
    assert not (names / f"pruned-{sandbox.mode}").exists()
    assert Path((names / second).read_text()).name.startswith(f"{second}-")  # the new container's claim


def test_a_name_claim_pointing_outside_the_storage_finds_nothing(
    sandbox: Sandbox, world: Path, named: list[str], tmp_path: Path
) -> None:
    """find() reads a name's claim to reach its container at once: a claim naming a folder
    outside the user's container storage (a record planted there, owned by the user) is not
    taken for the container; the lookup falls back to the storage itself."""
    named.append(name := f"planted-{sandbox.mode}")
    assert detach(sandbox, world, name, "true").returncode == 0
    (inspected,) = json.loads(tool(sandbox, "inspect", name).stdout)
    folder = Path(inspected["folder"])
    planted = tmp_path / folder.name
    shutil.copytree(folder, planted, ignore=shutil.ignore_patterns("writable", "*.sock"))
    record = json.loads((planted / "container.json").read_text())
    (planted / "container.json").write_text(json.dumps({**record, "image": "planted"}))
    owner = sandbox.user or "root"
    for path in [tmp_path, planted, *planted.iterdir()]:
        shutil.chown(path, owner, owner)
    claim = folder.parent.parent / "names" / name
    claim.write_text(str(planted))
    try:
        (again,) = json.loads(tool(sandbox, "inspect", name).stdout)
        assert again["folder"] == str(folder) and again["image"] != "planted"
    finally:
        claim.write_text(str(folder))  # the real claim back, so rm -f at the end finds it


def test_prune_survives_a_name_claim_it_cannot_follow(
    sandbox: Sandbox, world: Path, named: list[str], tmp_path: Path
) -> None:
    """A claim naming a folder the user may not even look at (under another user's private
    folder) made every prune of that user fail with a traceback (found by CI: stat raised
    PermissionError). Such a folder is no container of the user's: the claim is stale."""
    named.append(name := f"unreachable-{sandbox.mode}")
    assert detach(sandbox, world, name, "true").returncode == 0
    (inspected,) = json.loads(tool(sandbox, "inspect", name).stdout)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)  # root's: an ordinary user cannot look inside
    claim = Path(inspected["folder"]).parent.parent / "names" / f"locked-{sandbox.mode}"
    claim.write_text(str(locked / "container"))
    shutil.chown(claim, *(2 * [sandbox.user] if sandbox.user else ["root", "root"]))
    pruned = tool(sandbox, "prune")
    assert pruned.returncode == 0, pruned.stderr
    assert "Traceback" not in pruned.stderr and not claim.exists()
    assert (claim.parent / name).exists()  # the live container keeps its name
    claim.write_text(str(locked / "container"))  # and a run -d taking that name over
    shutil.chown(claim, *(2 * [sandbox.user] if sandbox.user else ["root", "root"]))
    named.append(claim.name)
    assert detach(sandbox, world, claim.name, "true").returncode == 0


def test_wait_reads_the_exit_code_a_monitor_wrote_after_its_status_was_read(tmp_path: Path) -> None:
    """Regression (a -1 seen once in the suite): `wait` read status.json while the monitor
    still ran, the monitor wrote the exit code and died, and `wait` took the dead monitor's
    stale "running" for "exited" without the code it had just written."""
    from pysbx.sandbox.containers import STATUS, Container, write_json
    from pysbx.sandbox.lifecycle import wait_for_exit

    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = [gone.pid, "a start time no process has"]
    folder = tmp_path / "c"
    folder.mkdir(mode=0o700)
    write_json(folder, STATUS, {"status": "exited", "exit_code": 3, "monitor": dead, "init": dead})
    stale = Container(folder, {"id": "c" * 64, "name": "c"}, {"status": "running", "monitor": dead, "init": dead})
    assert stale.state() == "exited" and stale.exit_code() is None
    assert wait_for_exit(stale, timeout=5) == 3


def test_wait_reads_the_status_as_it_is_not_as_the_caller_last_read_it(tmp_path: Path) -> None:
    """`start -a` holds the container as it was before the start: exited, with the last
    run's code. The code returned is the run's that ended since, not that one."""
    from pysbx.sandbox.containers import STATUS, Container, write_json
    from pysbx.sandbox.lifecycle import wait_for_exit
    from pysbx.sandbox.procfs import start_time

    folder = tmp_path / "c"
    folder.mkdir(mode=0o700)
    me = [os.getpid(), start_time(os.getpid())]  # a live monitor and PID 1 of the new run
    write_json(folder, STATUS, {"status": "running", "monitor": me, "init": me})
    before_the_start = Container(folder, {"id": "c" * 64, "name": "c"}, {"status": "exited", "exit_code": 4})
    threading.Timer(0.3, lambda: write_json(folder, STATUS, {"status": "exited", "exit_code": 7})).start()
    assert wait_for_exit(before_the_start, timeout=5) == 7
