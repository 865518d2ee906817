"""Detached containers under crashes and load (the issue's Reliability items), as root and as
an ordinary user:

- `pysandbox run -d` killed with SIGKILL at random moments of its start: `ps` tells the truth
  afterwards, `rm -f`, `container prune` and `pysandbox prune` leave nothing behind, and the
  names are free again;
- the container's PID 1 killed with SIGKILL: exited with 137, the logs written before kept;
- a command killed under `--restart on-failure:3`: restarted, and counted;
- fifty containers started at once by two users: names, logs and states never mix, and `ps`
  over them is fast;
- a gigabyte of output: the log stays within its bounds, and `ps` and `exec` answer meanwhile.

Each test runs in a cache of its own (PYSANDBOX_STATE): `ps`, `container prune` and
`pysandbox prune` then see what the test made, and nothing of other runs of the same user.
Timings are printed (run with -s to see them)."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import itertools
import json
import os
import pwd
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pysbx.sandbox import procfs
from pysbx.sandbox.prune import EMPTY_GRACE_SECONDS
from tests.sandbox.conftest import as_user, command
from tests.sandbox.harness import Sandbox, cmdline, processes_with, pysandbox_below, tool, wait_until

POLICY = "strict-unsigned.yaml"
IMAGE = "busybox-app.tar"
SECOND_USER = "sbxtest2"


# ----- a cache of the test's own ---------------------------------------------------------------


def new_storage(user: str | None) -> Path:
    """An empty folder for PYSANDBOX_STATE, private to `user` (the sandbox's; None is root)."""
    folder = Path(tempfile.mkdtemp(prefix="pysandbox-stress-"))
    if user is not None and os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    return folder


def remove_storage(argv: list[str], folder: Path) -> None:
    """rm -f whatever a failed test left in `folder`, `pysandbox prune` (cgroups), then the folder."""
    env = {**os.environ, "PYSANDBOX_STATE": str(folder)}
    listed = subprocess.run([*argv, "ps", "-a", "-q"], capture_output=True, text=True, cwd="/", env=env, timeout=60)
    ids = listed.stdout.split()
    if ids:
        subprocess.run([*argv, "rm", "-f", *ids], capture_output=True, cwd="/", env=env, timeout=120)
    subprocess.run([*argv, "prune"], capture_output=True, cwd="/", env=env, timeout=60)
    shutil.rmtree(folder, ignore_errors=True)


def pysandbox_argv(mode: str, user: str | None) -> list[str]:
    """`pysandbox` (without a command) as root or as `user`."""
    return command(mode, [], user)[:-1]


@pytest.fixture
def storage(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = new_storage(sandbox.user)
    monkeypatch.setenv("PYSANDBOX_STATE", str(folder))  # runuser passes it on
    yield folder
    remove_storage(pysandbox_argv(sandbox.mode, sandbox.user), folder)


# ----- helpers -----------------------------------------------------------------------------------


def detach(sandbox: Sandbox, world: Path, name: str, script: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return tool(sandbox, "run", "-d", "--name", name, *flags, "--policy", str(world / POLICY),
                str(world / IMAGE), "sh", "-c", script)  # fmt: skip


def run_d_argv(sandbox: Sandbox, world: Path, name: str, script: str) -> list[str]:
    args = ["-d", "--name", name, "--policy", str(world / POLICY), str(world / IMAGE), "sh", "-c", script]
    return command(sandbox.mode, args, sandbox.user)


def rows(sandbox: Sandbox) -> dict[str, dict[str, str]]:
    listed = tool(sandbox, "ps", "-a", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    return {row["name"]: row for row in json.loads(listed.stdout)}


def inspect(sandbox: Sandbox, name: str) -> dict[str, object]:
    found = tool(sandbox, "inspect", name)
    assert found.returncode == 0, found.stderr
    (document,) = json.loads(found.stdout)
    return document  # type: ignore[no-any-return]


def recorded(document: dict[str, object], key: str) -> tuple[int, str] | None:
    """The (pid, start time) the status records for the monitor or init."""
    status = document.get("status")
    value = status.get(key) if isinstance(status, dict) else None
    return (int(value[0]), str(value[1])) if isinstance(value, list) and len(value) == 2 else None


def process_state(pid: int) -> str | None:
    """R, S, Z... of /proc/PID/stat; None when there is no such process (reaped)."""
    fields = procfs.stat_fields(pid)
    return fields[0] if fields else None


def really_alive(pid_and_start: tuple[int, str] | None) -> bool:
    """Whether [pid, start time] is a process that runs: the same start time, not a zombie."""
    return pid_and_start is not None and procfs.start_time(pid_and_start[0]) == pid_and_start[1]


def logged(sandbox: Sandbox, name: str, text: str) -> bool:
    return text in tool(sandbox, "logs", name).stdout


def marked(name: str) -> list[str]:
    """Live host processes of container `name` (the monitor and log writer carry --name in
    their command line, the command's sh its script, which ends with the name): zombies are
    dead already and do not count."""
    return [pid for pid in processes_with(name) if process_state(int(pid)) not in (None, "Z", "X")]


def pysandbox_pid(sandbox: Sandbox, started: int) -> int:
    """The pid of pysandbox itself for a command line started as the sandbox's user: below
    runuser when there is one (env execs pysandbox), polled every millisecond."""
    if not (sandbox.mode == "user" and as_user(str(sandbox.user))):
        return started
    return pysandbox_below(started, poll=0.001, seconds=10)


def state_folders(storage: Path, name: str) -> list[Path]:
    """State folders of container `name` (NAME-XXXXXXXX, sandbox.state.container_dir)."""
    return sorted(storage.glob(f"containers/{name}-" + "[0-9a-f]" * 8))


def cgroups_of(name: str) -> list[str]:
    """cgroup folders of container `name` (pysandbox-NAME-XXXXXXXX) in any hierarchy."""
    found = []
    for top, folders, _ in os.walk("/sys/fs/cgroup"):
        for folder in list(folders):
            if folder.startswith("pysandbox-"):
                folders.remove(folder)
                if folder.startswith(f"pysandbox-{name}-") and len(folder) == len(f"pysandbox-{name}-") + 8:
                    found.append(os.path.join(top, folder))
    return found


def leftovers_of(storage: Path, name: str, tolerated: list[Path] | None = None) -> dict[str, list[str]]:
    """What of container `name` is still on the host, but for the `tolerated` state folders."""
    found = {
        "processes": marked(name),
        "state folders": [str(path) for path in state_folders(storage, name) if path not in (tolerated or [])],
        "name claims": [str(path) for path in [storage / "names" / name] if path.exists()],
        "cgroups": cgroups_of(name),
    }
    return {kind: items for kind, items in found.items() if items}


def set_child_subreaper(on: bool) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, int(on), 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def report(text: str) -> None:
    print(f"\n[stress] {text}", file=sys.stderr)


# ----- SIGKILL of `run -d` at random moments of its start ----------------------------------------


def phases_of_a_start(sandbox: Sandbox, world: Path, storage: Path, name: str) -> dict[str, float]:
    """When (seconds after pysandbox started) a `run -d` made its state folder, wrote its
    record, had its monitor write status.json, and exited: the kills are spread over these
    phases, so that each is hit whatever this machine's speed."""
    started = subprocess.Popen(run_d_argv(sandbox, world, name, "true"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd="/")  # fmt: skip
    pysandbox_pid(sandbox, started.pid)
    began = time.monotonic()
    seen: dict[str, float] = {}
    while started.poll() is None:
        folders = state_folders(storage, name)
        for phase, exists in (("folder", bool(folders)), ("record", folders and (folders[0] / "container.json").exists()),
                              ("monitor", folders and (folders[0] / "status.json").exists())):  # fmt: skip
            if exists and phase not in seen:
                seen[phase] = time.monotonic() - began
        time.sleep(0.0005)
    exited = time.monotonic() - began
    _, err = started.communicate()
    assert started.returncode == 0, err
    assert tool(sandbox, "rm", "-f", name).returncode == 0
    phases, last = {}, 0.0
    for phase in ("folder", "record", "monitor"):
        last = phases[phase] = seen.get(phase, last)  # a phase too short to see ends where the last one did
    return {**phases, "exit": exited}


KILLS = 10
SETTLE_SECONDS = 4.0  # a monitor that failed takes up to 2 s to give up its cgroup (cgroups.Cgroup.remove)


def test_run_d_killed_at_random_moments_of_its_start_leaves_the_truth_and_nothing_behind(
    sandbox: Sandbox, world: Path, storage: Path
) -> None:
    """`pysandbox run -d` killed with SIGKILL at ten moments spread over its start (a seed in
    PYSANDBOX_STRESS_SEED replays a run). Whatever the moment: once the dust settles, a
    container `ps -a` calls running runs (its PID 1 and monitor live, `exec` works, its
    first line is in its log) and one it calls exited (or does not list) has no process
    left; `rm -f`, `container prune` and `pysandbox prune` then leave no process, state
    folder, name claim or cgroup, and each name can be used again.

    Guards: the status reconciled with the monitor's pid and start time
    (containers.Container.state: without it, a record whose monitor died stays "running" or
    "created"); names claimed atomically and released by rm (containers.claim_name,
    lifecycle.remove_container); `pysandbox prune` removing the state
    folder of a run killed before its record (prune.stale_containers) and the cgroups of a
    container whose monitor died (prune.stale_cgroups)."""
    mode = sandbox.mode
    seed = int(os.environ.get("PYSANDBOX_STRESS_SEED", random.SystemRandom().randrange(1 << 32)))
    rng = random.Random(seed)
    probe = f"stress-probe-{mode}"
    phases_of_a_start(sandbox, world, storage, probe)  # the image is unpacked: the starts below are warm
    phases = phases_of_a_start(sandbox, world, storage, probe)
    bounds = [0.0, *phases.values(), 1.2 * phases["exit"]]
    delays = [
        rng.uniform(low, high) for low, high in itertools.pairwise(bounds) for _ in range(KILLS // (len(bounds) - 1))
    ]
    names = [f"stress-kill-{mode}-{index:02d}" for index in range(KILLS)]
    outcomes = {}
    for name, delay in zip(names, delays, strict=True):
        started = subprocess.Popen(run_d_argv(sandbox, world, name, f"echo before-{name}; sleep 600; : {name}"),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")  # fmt: skip
        target = pysandbox_pid(sandbox, started.pid)
        time.sleep(delay)
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signal.SIGKILL)
        out, err = started.communicate(timeout=60)
        outcomes[name] = f"delay {delay * 1000:.0f} ms: exit {started.returncode} {(out + err).strip()[-80:]!r}"
    shown = ", ".join(f"{phase} {seconds * 1000:.0f}" for phase, seconds in phases.items())
    report(f"{mode}: seed {seed}, a start (ms after pysandbox started): {shown}; " + "; ".join(
        f"{name}: {outcome}" for name, outcome in outcomes.items()))  # fmt: skip

    def truthful(name: str) -> str:
        """Why what ps says of `name` is not (yet) so, or ""."""
        row = rows(sandbox).get(name)
        if row is None or row["state"] == "exited":
            left = marked(name)
            if row is not None:
                document = inspect(sandbox, name)
                left += [f"init {document['status']}"] if really_alive(recorded(document, "init")) else []
            return f"ps says {row and row['state']}, yet {left} run" if left else ""
        if row["state"] != "running":
            return f"ps says {row['state']}"
        document = inspect(sandbox, name)
        dead = [key for key in ("monitor", "init") if not really_alive(recorded(document, key))]
        return f"ps says running, but its {dead} are dead" if dead else ""

    def settled(name: str) -> bool:
        return not truthful(name)

    time.sleep(SETTLE_SECONDS)
    for name in names:
        assert wait_until(functools.partial(settled, name), 15), f"{name} ({outcomes[name]}): {truthful(name)}"
    final = rows(sandbox)
    report(f"{mode}: after the kills: " + ", ".join(f"{name}: {final[name]['status'] if name in final else 'not listed'}"
                                                   for name in names))  # fmt: skip
    for name in names:
        if name in final and final[name]["state"] == "running":
            entered = tool(sandbox, "exec", name, "true")
            assert entered.returncode == 0, f"{name}: ps says running, exec fails: {entered.stderr}"
            assert wait_until(functools.partial(logged, sandbox, name, f"before-{name}\n"))

    for name in names:
        removed = tool(sandbox, "rm", "-f", name)
        assert removed.returncode == 0 or "no such container" in removed.stderr, removed.stderr
    pruned = tool(sandbox, "container", "prune", "-f")
    assert pruned.returncode == 0, pruned.stderr
    left = {name: leftovers_of(storage, name) for name in names if leftovers_of(storage, name)}
    if left:  # what only `pysandbox prune` removes: folders of runs killed before their record, cgroups
        report(f"{mode}: left after rm -f and container prune (for pysandbox prune): {left}")
        cleaned = tool(sandbox, "prune")
        assert cleaned.returncode == 0, cleaned.stderr
    # A run killed between os.mkdir and the owner file of its state folder (sandbox.state.
    # container_dir, microseconds) leaves an empty folder: prune removes it once it is
    # EMPTY_GRACE_SECONDS old (it kept it 600 s, as it keeps a folder with content but no owner).
    unowned = [path for name in names for path in state_folders(storage, name) if not any(path.iterdir())]
    if unowned:
        report(f"{mode}: empty state folders without an owner, for prune in {EMPTY_GRACE_SECONDS} s: {unowned}")
        time.sleep(EMPTY_GRACE_SECONDS + 1)
        assert tool(sandbox, "prune").returncode == 0
    left = {name: leftovers_of(storage, name) for name in names if leftovers_of(storage, name)}
    assert left == {}
    assert [name for name in rows(sandbox) if name.startswith("stress-")] == []
    for name in names:
        again = detach(sandbox, world, name, "true")
        assert again.returncode == 0, f"{name} is not free again: {again.stderr}"
        assert tool(sandbox, "rm", "-f", name).returncode == 0


def test_a_container_keeps_running_when_its_run_d_is_killed_after_the_monitor_started(
    sandbox: Sandbox, world: Path, storage: Path
) -> None:
    """Docker's client may die once the daemon has the container; here the monitor has it
    once it wrote status.json: `run -d` killed then must not take the container down.
    (The kill lands while the monitor sets the container up: it waits for status.json to
    say "created", polled every half millisecond.)"""
    for attempt in range(5):
        name = f"stress-orphaned-{sandbox.mode}-{attempt}"
        started = subprocess.Popen(run_d_argv(sandbox, world, name, f"sleep 600; : {name}"),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")  # fmt: skip
        target = pysandbox_pid(sandbox, started.pid)
        said = ""
        deadline = time.monotonic() + 20
        while not said and time.monotonic() < deadline and started.poll() is None:
            for status in storage.glob(f"containers/{name}-*/status.json"):
                with contextlib.suppress(OSError, ValueError):
                    said = json.loads(status.read_text())["status"]
            time.sleep(0.0005)
        os.kill(target, signal.SIGKILL)
        started.communicate(timeout=60)
        if said == "created":
            break
        tool(sandbox, "rm", "-f", name)  # too late (or too early): again
    else:
        pytest.fail("never caught the monitor between its first status and the container's start")
    time.sleep(SETTLE_SECONDS)
    row = rows(sandbox)[name]
    assert row["state"] == "running", row
    assert tool(sandbox, "exec", name, "true").returncode == 0


def test_a_dead_monitor_not_reaped_yet_is_not_running(sandbox: Sandbox, world: Path, storage: Path) -> None:
    """A monitor killed with SIGKILL is dead once it is a zombie, reaped or not. This test
    is the subreaper that does not reap it yet (prctl PR_SET_CHILD_SUBREAPER while run -d
    starts, so the monitor is reparented here), as a slow init would."""
    name = f"stress-zombie-{sandbox.mode}"
    set_child_subreaper(True)
    try:
        started = detach(sandbox, world, name, f"while :; do sleep 0.1; done; : {name}")
    finally:
        set_child_subreaper(False)
    assert started.returncode == 0, started.stderr
    document = inspect(sandbox, name)
    monitor, init = recorded(document, "monitor"), recorded(document, "init")
    assert monitor is not None and init is not None
    assert procfs.parent(monitor[0]) == os.getpid()
    try:
        os.kill(monitor[0], signal.SIGKILL)
        assert wait_until(lambda: process_state(monitor[0]) == "Z" and not really_alive(init), 10)
        assert marked(name) == []
        row = rows(sandbox)[name]
        assert row["state"] == "exited" and row["status"] == "Exited (monitor gone)", row
        started_at = time.monotonic()
        assert tool(sandbox, "rm", "-f", name).returncode == 0
        assert time.monotonic() - started_at < 5
    finally:
        os.waitpid(monitor[0], 0)


# ----- SIGKILL of PID 1, and of a command that restarts ------------------------------------------


def test_sigkill_of_pid_1_leaves_an_exited_container_with_137_and_its_logs(
    sandbox: Sandbox, world: Path, storage: Path
) -> None:
    """Guards: the monitor reaping the container whatever killed it and recording 128+9
    (monitor.Monitor.run, runner._wait), the log writer draining its pipes before the exit is
    recorded, and rm of an exited container removing its folder (lifecycle.remove_container)."""
    name = f"stress-init-{sandbox.mode}"
    script = f"echo before-kill; echo err-before >&2; while :; do sleep 0.1; done; : {name}"
    assert detach(sandbox, world, name, script).returncode == 0
    assert wait_until(lambda: "before-kill" in tool(sandbox, "logs", name).stdout)
    document = inspect(sandbox, name)
    init = recorded(document, "init")
    assert really_alive(init)
    assert init is not None
    os.kill(init[0], signal.SIGKILL)
    waited = tool(sandbox, "wait", name)
    assert waited.stdout == "137\n", waited.stderr
    row = rows(sandbox)[name]
    assert row["state"] == "exited" and row["status"].startswith("Exited (137)"), row
    logs = tool(sandbox, "logs", name)
    assert (logs.stdout, logs.stderr) == ("before-kill\n", "err-before\n")
    assert marked(name) == []
    folder = Path(str(document["folder"]))
    assert tool(sandbox, "rm", name).returncode == 0
    assert not folder.exists() and name not in rows(sandbox)


def test_a_killed_command_under_on_failure_is_restarted_and_counted(
    sandbox: Sandbox, world: Path, storage: Path
) -> None:
    """The command (not PID 1, not the monitor) killed with SIGKILL, as an OOM kill would:
    on-failure:3 starts it again; inspect counts the restart, ps says running, exec works.

    Guards: Monitor.run_until_done's restart loop and RestartPolicy.wants (137 is a
    failure, and no stop was asked for)."""
    name = f"stress-restart-{sandbox.mode}"
    script = f"echo run; while :; do sleep 0.1; done; : {name}"
    assert detach(sandbox, world, name, script, "--restart", "on-failure:3").returncode == 0
    assert wait_until(lambda: tool(sandbox, "logs", name).stdout == "run\n")
    (command_pid,) = [pid for pid in marked(name) if cmdline(pid).startswith("sh\0")]
    try:
        os.kill(int(command_pid), signal.SIGKILL)
    except PermissionError:  # an ordinary user's container user is a subordinate id: from inside
        assert tool(sandbox, "exec", name, "kill", "-KILL", "-1").returncode in (0, 137)

    def restarted() -> bool:
        document = inspect(sandbox, name)
        status = document["status"]
        return isinstance(status, dict) and status.get("restarts") == 1 and document["state"] == "running"

    assert wait_until(restarted, 10), inspect(sandbox, name)["status"]
    assert wait_until(lambda: tool(sandbox, "logs", name).stdout == "run\nrun\n")
    assert rows(sandbox)[name]["state"] == "running"
    assert tool(sandbox, "exec", name, "true").returncode == 0
    assert tool(sandbox, "rm", "-f", name).returncode == 0


# ----- fifty containers at once ------------------------------------------------------------------

FIFTY = 50
PS_SECONDS = 2.0  # generous: ps reads one record and one status per container


def can_run_pysandbox(user: str) -> str:
    """Why `user` cannot run containers here ("" when it can)."""
    try:
        pwd.getpwnam(user)
    except KeyError:
        return f"there is no user {user}"
    probe = subprocess.run([*as_user(user), sys.executable, "-c", "import pysbx.sandbox"], capture_output=True,
                           text=True, cwd="/")  # fmt: skip
    if probe.returncode != 0:
        return f"{user} cannot run {sys.executable}: {probe.stderr.strip()[-200:]}"
    for path in ("/etc/subuid", "/etc/subgid"):
        if not any(line.split(":")[0] == user for line in Path(path).read_text().splitlines()):
            return f"{user} has no subordinate ids in {path}"
    return ""


def fifty_at_once(world: Path, users: list[str]) -> None:
    """FIFTY containers, an equal share per user, all started at once (each in a cache of its
    user's own), each echoing its name and sleeping; then each user's ps (timed), logs and
    inspect must show exactly that user's containers, each with its own line and running as
    that user; rm -f removes them all."""
    share = FIFTY // len(users)
    stores = {user: new_storage(user) for user in users}
    envs = {user: {**os.environ, "PYSANDBOX_STATE": str(stores[user])} for user in users}

    def tool_as(user: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*pysandbox_argv("user", user), *args], capture_output=True, text=True, cwd="/",
                              env=envs[user], timeout=timeout)  # fmt: skip

    names = {user: [f"stress-{user}-{index:02d}" for index in range(share)] for user in users}
    try:
        began = time.monotonic()
        starts = {}
        for index in range(share):
            for user in users:
                name = names[user][index]
                script = f"echo {user}-{index}; exec sleep 600"
                argv = command("user", ["-d", "--name", name, "--policy", str(world / POLICY), str(world / IMAGE),
                                        "sh", "-c", script], user)  # fmt: skip
                starts[name] = (user, subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                       text=True, cwd="/", env=envs[user]))  # fmt: skip
        ids, failed = {}, {}
        for name, (_user, process) in starts.items():
            out, err = process.communicate(timeout=300)
            if process.returncode == 0:
                ids[name] = out.strip()
            else:
                failed[name] = f"exit {process.returncode}: {err.strip()[-300:]}"
        start_seconds = time.monotonic() - began
        report(f"{len(starts)} containers of {users} started at once in {start_seconds:.1f} s")
        assert failed == {}, failed

        for user in users:
            owner = pwd.getpwnam(user).pw_uid
            timings = []
            for _ in range(3):
                began = time.monotonic()
                listed = tool_as(user, "ps", "--format", "json")
                timings.append(time.monotonic() - began)
                assert listed.returncode == 0, listed.stderr
            began = time.monotonic()
            table = tool_as(user, "ps", "-a")
            table_seconds = time.monotonic() - began
            report(f"ps --format json of {user}'s {share} containers: "
                   f"{', '.join(f'{seconds * 1000:.0f}' for seconds in timings)} ms; ps -a (table): "
                   f"{table_seconds * 1000:.0f} ms")  # fmt: skip
            listed_rows = json.loads(listed.stdout)
            assert sorted(row["name"] for row in listed_rows) == names[user]
            assert all(row["state"] == "running" and row["id"] == ids[row["name"]] for row in listed_rows)
            assert (
                table.returncode == 0
                and sorted(line.split()[-1] for line in table.stdout.splitlines()[1:]) == names[user]
            )
            assert min(timings) < PS_SECONDS, timings
            for index, name in enumerate(names[user]):
                logs = tool_as(user, "logs", name)
                assert (logs.stdout, logs.stderr) == (f"{user}-{index}\n", ""), name
            documents = json.loads(tool_as(user, "inspect", *names[user]).stdout)
            assert [document["name"] for document in documents] == names[user]
            for document in documents:
                assert Path(document["folder"]).parent == stores[user] / "containers"
                init = recorded(document, "init")
                assert init is not None and really_alive(init), document["status"]
                uids = next(line for line in Path(f"/proc/{init[0]}/status").read_text().splitlines()
                            if line.startswith("Uid:"))  # fmt: skip
                assert uids.split()[1] == str(owner), (document["name"], uids)  # container root is its user
            for other in users:
                if other != user:
                    crossed = tool_as(user, "logs", names[other][0])
                    assert crossed.returncode == 1 and "no such container" in crossed.stderr
        for user in users:
            began = time.monotonic()
            removed = tool_as(user, "rm", "-f", *names[user], timeout=300)
            report(f"rm -f of {user}'s {share} containers: {time.monotonic() - began:.1f} s")
            assert removed.returncode == 0, removed.stderr
            assert tool_as(user, "ps", "-a", "-q").stdout == ""
        assert [pid for user in users for name in names[user] for pid in marked(name)] == []
    finally:
        for user in users:
            remove_storage(pysandbox_argv("user", user), stores[user])


def test_fifty_containers_of_two_users_started_at_once_never_mix(world: Path, test_user: str) -> None:
    """As root: 25 containers of sbxtest and 25 of sbxtest2, all started at once.

    Guards: per-user private storage (state.private_root, containers.all_containers), names
    claimed atomically per user (containers.claim_name), one log per container
    (monitor.write_log), each user's containers mapped to that user (idmap)."""
    if os.geteuid() != 0:
        pytest.skip("two users need root (runuser); test_fifty_containers_of_one_user_started_at_once runs instead")
    why = can_run_pysandbox(SECOND_USER)
    if why:
        pytest.skip(f"the second user cannot run containers: {why}")
    fifty_at_once(world, [test_user, SECOND_USER])


def test_fifty_containers_of_one_user_started_at_once(world: Path, test_user: str) -> None:
    """Without root, the fifty containers are the one user's (what the two users' test
    checks, but for the mixing of users)."""
    if os.geteuid() == 0:
        pytest.skip("as root, test_fifty_containers_of_two_users_started_at_once_never_mix starts them")
    fifty_at_once(world, [test_user])


# ----- a gigabyte of logs ------------------------------------------------------------------------

GIGABYTE = 1 << 30
LINE = 99  # bytes before the newline: 100-byte lines, ten million log entries


def log_bytes(folder: Path) -> int:
    """What ctr.log and its rotated files hold now (a file may be renamed meanwhile)."""
    total = 0
    for path in folder.glob("ctr.log*"):
        with contextlib.suppress(FileNotFoundError):
            total += path.stat().st_size
    return total


def test_a_gigabyte_of_logs_stays_within_its_bounds_and_blocks_nothing(
    sandbox: Sandbox, world: Path, storage: Path
) -> None:
    """1 GiB of output as fast as the container can write it, under max-size=1m max-file=2:
    it ends in time, ctr.log and ctr.log.1 never hold more than 1 MiB each (2 MiB in all),
    and ps, logs --tail and exec answer while it writes.

    Guards: the log writer's rotation (monitor._append, _rotate) and its process of its own
    (a monitor that wrote the log itself would answer nothing meanwhile)."""
    name = f"stress-gigabyte-{sandbox.mode}"
    script = (
        f"yes {'x' * LINE} | head -n {GIGABYTE // (LINE + 1)}; echo end; : {name}"  # whole lines: 1 GiB less 24 bytes
    )
    began = time.monotonic()
    assert detach(sandbox, world, name, script, "--log-opt", "max-size=1m", "--log-opt", "max-file=2").returncode == 0
    folder = Path(str(inspect(sandbox, name)["folder"]))
    answers: dict[str, list[float]] = {"ps": [], "exec": [], "logs": []}
    largest = 0
    while rows(sandbox)[name]["state"] == "running":
        largest = max(largest, log_bytes(folder))
        for what, args in (("ps", ("ps", "--format", "json")), ("exec", ("exec", name, "true")),
                           ("logs", ("logs", "--tail", "1", name))):  # fmt: skip
            asked = time.monotonic()
            answer = tool(sandbox, *args)
            answers[what].append(time.monotonic() - asked)
            if rows(sandbox)[name]["state"] != "running":
                break  # exec and logs may miss a container that has just ended
            assert answer.returncode == 0, (what, answer.stderr)
        assert time.monotonic() - began < 600, "a gigabyte of logs took more than ten minutes"
        time.sleep(0.5)
    seconds = time.monotonic() - began
    assert tool(sandbox, "wait", name).stdout == "0\n"
    sizes = {path.name: path.stat().st_size for path in folder.glob("ctr.log*")}
    report(f"{sandbox.mode}: 1 GiB of {LINE + 1}-byte lines logged in {seconds:.1f} s "
           f"({GIGABYTE / seconds / (1 << 20):.0f} MiB/s); log files {sizes}; largest total seen while writing "
           f"{largest}; slowest answers while writing: " + ", ".join(
               f"{what} {max(times, default=0) * 1000:.0f} ms ({len(times)})" for what, times in answers.items()))  # fmt: skip
    assert sorted(sizes) == ["ctr.log", "ctr.log.1"], sizes
    assert all(size <= 1 << 20 for size in sizes.values()) and largest <= 2 << 20, (sizes, largest)
    assert answers["exec"] and max(answers["ps"] + answers["exec"] + answers["logs"]) < 10
    assert tool(sandbox, "logs", "--tail", "1", name).stdout == "end\n"
    assert tool(sandbox, "rm", name).returncode == 0
