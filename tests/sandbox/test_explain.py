"""`run --explain`, for real, as root and as an ordinary user: a static program
(tests/sandbox/denials.c) makes chosen calls under strict, and the report must name each
denied call, the line that denied it and the change that would allow it, while the program
sees exactly the errno it sees without --explain, never holds the listener, and is not
stalled by a storm of its own denials."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from pysbx.policies.seccomp import syscall_number
from tests.sandbox.harness import Sandbox, share, strict_variant, tool, wait_until

STRICT_PROFILE = Path(__file__).parents[2] / "policies/seccomp/strict.json"


def nr(name: str) -> str:
    number = syscall_number(name)
    assert number is not None, name
    return str(number)


def line_of(path: Path, text: str) -> int:
    return next(number for number, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_each_denial_is_named_with_the_line_that_denied_it_and_the_change(
    sandbox: Sandbox, world: Path, denials_image: str
) -> None:
    mount, unshare = nr("mount"), nr("unshare")
    script = f"/denials {mount} s:none s:/mnt s:tmpfs 0 0; /denials {unshare} 0x10000000"
    done = sandbox("--explain", script, image=denials_image)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [f"{mount}=-1/1", f"{unshare}=-1/1"]
    report = done.stderr
    assert "the policy denied 2 kinds of system call (2 calls)" in report
    policy = world / "strict-unsigned.yaml"
    # the profile's default action, at its line, and the policy line that chose the profile
    assert f"{STRICT_PROFILE}:{line_of(STRICT_PROFILE, 'defaultAction')} (SCMP_ACT_ERRNO)" in report
    assert f"{policy}:{line_of(policy, 'profile: strict')} (seccomp.profile: strict)" in report
    assert "unshare(flags=CLONE_NEWUSER) -> EPERM" in report  # the argument the filter read, decoded
    assert "the kernel checks CAP_SYS_ADMIN for it" in report
    diff = report.split("that would allow it", 1)[1]
    assert re.search(r"sandbox\.seccomp\.allow: \+mount +loosens", diff)
    assert re.search(r"sandbox\.seccomp\.allow: \+unshare +loosens", diff)
    assert re.search(r"sandbox\.capabilities: \+CAP_SYS_ADMIN +loosens", diff)
    # the path arguments, read from the caller's memory (as an ordinary user too: process_vm_readv)
    assert 'mount(source="none", target="/mnt", fstype="tmpfs", flags=0) -> EPERM' in report


def test_a_call_the_filter_allows_is_not_reported(sandbox: Sandbox, denials_image: str) -> None:
    done = sandbox("--explain", f"/denials {nr('getpid')}", image=denials_image)
    assert done.stdout.strip() == f"{nr('getpid')}=ok"
    assert "the policy denied no system call" in done.stderr


def test_pipes_reads_and_writes_that_succeed_are_not_reported(sandbox: Sandbox, denials_image: str) -> None:
    """Calls notified for a look (descriptors, writes) that go through are no denial."""
    done = sandbox(
        "--explain", "cat /etc/passwd | wc -l >/tmp/count; mkdir /tmp/d; echo x > /tmp/d/f", image=denials_image
    )
    assert done.returncode == 0 and "the policy denied no system call" in done.stderr, done.stderr


def test_the_errno_is_the_plain_filters_for_every_kind_of_denial(
    sandbox: Sandbox, world: Path, denials_image: str
) -> None:
    """The default action (EPERM), a rule's ENOSYS (clone3), an argument condition
    (personality, socket's family), a custom profile's EACCES and EINVAL, and the policy's
    own deny list: the same output with and without --explain."""
    profile = json.loads(STRICT_PROFILE.read_text())
    profile["syscalls"] += [
        {"names": ["acct"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
        {"names": ["syslog"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22},
    ]
    (world / "explain-profile.json").write_text(json.dumps(profile))
    policy = strict_variant(
        world,
        "explain-errnos.yaml",
        ("profile: strict", "profile: explain-profile.json\n    deny: [getppid]"),
    )
    share(world)
    calls = [
        f"{nr('mount')} s:none s:/mnt s:tmpfs",
        f"{nr('clone3')} 0 0",
        f"{nr('personality')} 0x1234",
        f"{nr('personality')} 0",
        f"{nr('socket')} 38 5 0",
        f"{nr('acct')} s:/x",
        f"{nr('syslog')} 3 0 0",
        f"{nr('getppid')}",
    ]
    script = "; ".join(f"/denials {call}" for call in calls)
    plain = sandbox(script, image=denials_image, policy=policy.name)
    heard = sandbox("--explain", script, image=denials_image, policy=policy.name)
    assert plain.returncode == heard.returncode == 0, heard.stderr
    assert plain.stdout == heard.stdout
    got = dict(line.split("=", 1) for line in heard.stdout.split())
    assert got[nr("clone3")] == "-1/38" and got[nr("acct")] == "-1/13" and got[nr("syslog")] == "-1/22"
    assert got[nr("getppid")] == "-1/1"
    report = heard.stderr
    assert re.search(r"^  acct\(.*\) -> EACCES$", report, re.M) and re.search(r"^  syslog\(\) -> EINVAL$", report, re.M)
    assert f"{policy}:{line_of(policy, 'deny: [getppid]')} (seccomp.deny)" in report
    assert "the profile allows personality only when arg0 == 0x0" in report
    assert "on purpose" in report  # clone3's ENOSYS: listed, left out of the change
    diff = report.split("that would allow it", 1)[1]
    assert "clone3" not in diff
    assert re.search(r"sandbox\.seccomp\.deny: -getppid +loosens", diff)


def test_a_call_the_filter_allows_but_the_kernel_refuses_for_a_capability_is_heard(
    sandbox: Sandbox, world: Path, denials_image: str
) -> None:
    """ping's raw socket: strict's filter allows socket, the kernel refuses a raw one
    without CAP_NET_RAW. Heard (the monitor lets it go on, as the filter says), named with
    the capability, and the change adds it; the program sees the same EPERM either way. A
    policy that grants CAP_NET_RAW has nothing to hear."""
    socket_nr = nr("socket")
    script = f"/denials {socket_nr} 2 3 1; ping -c 1 -W 1 127.0.0.1 >/dev/null 2>&1; echo ping=$?"
    plain = sandbox(script, image=denials_image)
    heard = sandbox("--explain", script, image=denials_image)
    assert plain.stdout == heard.stdout == f"{socket_nr}=-1/1\nping=1\n", heard.stderr
    assert "socket(family=AF_INET, type=SOCK_RAW, protocol=1) -> EPERM" in heard.stderr
    assert "the kernel refuses a raw or packet socket without CAP_NET_RAW" in heard.stderr
    assert re.search(r"sandbox\.capabilities: \+CAP_NET_RAW +loosens", heard.stderr)
    assert (
        "the command ran as uid 1000, and a capability the policy grants reaches the container's root" in heard.stderr
    )
    granted = strict_variant(world, "explain-net-raw.yaml", ("    add: []", "    add: [NET_RAW]"))
    share(world)
    allowed = sandbox("--explain", "-u", "0", f"/denials {socket_nr} 2 3 1", image=denials_image, policy=granted.name)
    assert allowed.stdout.strip() == f"{socket_nr}=ok" and "the policy denied no system call" in allowed.stderr


def test_a_limit_reached_is_said_with_the_line_that_sets_it(sandbox: Sandbox, denials_image: str) -> None:
    if sandbox.mode != "root":
        pytest.skip("an ordinary user's pids limit is an rlimit here, whose refusals no counter records")
    script = "for i in 1 2 3 4 5 6 7 8; do (sleep 1 &) 2>/dev/null; done; echo done"
    done = sandbox("--explain", "--pids-limit", "4", script, image=denials_image)
    if "RLIMIT_NPROC" in done.stderr:
        pytest.skip("no cgroup for the pids limit on this host")
    assert done.stdout.strip() == "done"
    assert re.search(r"note: limits\.pids refused \d+ fork\(s\) or thread\(s\) \(EAGAIN\): set at ", done.stderr), (
        done.stderr
    )


def test_a_full_writable_layer_is_said_with_the_line_that_sizes_it(
    sandbox: Sandbox, world: Path, denials_image: str
) -> None:
    policy = strict_variant(
        world,
        "explain-small-layer.yaml",
        ("read_only_rootfs: true", "read_only_rootfs: false"),
        ("writable_size: 256Mi", "writable_size: 1Mi"),
    )
    share(world)
    script = "dd if=/dev/zero of=/big bs=1k count=3000 2>/dev/null; echo end"
    full = sandbox("--explain", "-u", "0", script, image=denials_image, policy=policy.name)
    assert full.stdout == "end\n", full.stderr
    note = f"the writable layer was left full: writes beyond limits.writable_size got ENOSPC: set at {policy}:"
    assert f"{note}{line_of(policy, 'writable_size: 1Mi')}" in full.stderr
    roomy = sandbox("--explain", "-u", "0", "echo x > /small", image=denials_image, policy=policy.name)
    assert roomy.returncode == 0 and "writable layer" not in roomy.stderr


def test_descriptors_refused_by_the_open_files_limit_are_said_with_its_line(
    sandbox: Sandbox, world: Path, denials_image: str
) -> None:
    """An rlimit counts none of its refusals: the monitor tells, at each call that makes a
    descriptor, whether the caller has one free below its limit (the same limit with and
    without --explain: strict's open_files, 1024). As the container's root: an ordinary
    user's monitor may list /proc/PID/fd of its own id only, not of a subordinate one."""
    plain = sandbox("-u", "0", "/denials fds", image=denials_image)
    heard = sandbox("--explain", "-u", "0", "/denials fds", image=denials_image)
    assert plain.stdout == heard.stdout == f"fds=1021/{errno.EMFILE}\n", heard.stderr
    policy = world / "strict-unsigned.yaml"
    note = f"limits.open_files refused 1 descriptor(s) (EMFILE): set at {policy}:{line_of(policy, 'open_files: 1024')}"
    assert f"{note} (or by ulimit -n)" in heard.stderr
    assert "open_files" not in sandbox("--explain", "/denials 39", image=denials_image).stderr


def test_the_container_never_holds_the_listener(sandbox: Sandbox, denials_image: str) -> None:
    """A process holding the listener could answer its own denials: every descriptor of
    every process in the container is looked at, while a denial is being made."""
    script = (
        f"/denials {nr('mount')} s:a s:/mnt; "
        "for fd in /proc/[0-9]*/fd/*; do readlink $fd; done | grep -c seccomp || true"
    )
    done = sandbox("--explain", script, image=denials_image)
    assert done.stdout.split()[-1] == "0", done.stdout
    assert "mount(" in done.stderr


def test_a_storm_of_denials_does_not_stall_the_container(sandbox: Sandbox, denials_image: str) -> None:
    """4 threads x 5,000 denied calls: each waits for the monitor's answer, which takes tens
    of microseconds; all are answered (EPERM), counted as one kind, in bounded time."""
    started = time.monotonic()
    done = sandbox("--explain", f"/denials storm {nr('mount')} 5000 4", image=denials_image, timeout=120)
    elapsed = time.monotonic() - started
    assert done.stdout.strip() == "storm=20000/20000/1", done.stderr
    assert re.search(r"mount\(.*\) -> EPERM +\(20000 times\)", done.stderr)
    assert elapsed < 30


def test_a_hostile_path_cannot_write_to_the_terminal(sandbox: Sandbox, denials_image: str) -> None:
    script = f"/denials {nr('mount')} s:x \"s:$(printf '\\033[2J\\033]0;owned\\007\\nforged line')\""
    done = sandbox("--explain", script, image=denials_image)
    assert "\x1b" not in done.stderr and "\x07" not in done.stderr
    assert 'target="\\x1b[2J\\x1b]0;owned\\x07\\x0aforged line"' in done.stderr


WRITES = (
    "echo a > /etc/new; rm /bin/ls; cd /bin && mkdir made; cd /; echo 1 > /proc/sys/kernel/hostname; "
    "touch /proc/acpi/x; ln -s /etc/passwd /tmp/link; echo b > /tmp/link; "
    "echo c > /tmp/fine && echo > /dev/null && mkdir /no/such 2>/dev/null; echo d >> /etc/passwd; echo end"
)


def test_a_write_a_read_only_mount_refuses_is_named_with_the_key_that_made_the_mount(
    sandbox: Sandbox, world: Path, denials_image: str
) -> None:
    """The root made read-only, a masked path, a read-only path: each refused write is named
    with its path and the policy line, the program sees EROFS as it does without --explain,
    and writes that succeed (a tmpfs, /dev/null) or fail for another reason are not heard."""
    plain = sandbox(WRITES, image=denials_image)
    heard = sandbox("--explain", WRITES, image=denials_image)
    assert heard.stdout == plain.stdout and heard.stdout.strip() == "end"
    refusals = [line for line in plain.stderr.splitlines() if "Read-only file system" in line]
    assert len(refusals) == 6, plain.stderr
    assert refusals == [line for line in heard.stderr.splitlines() if "Read-only" in line]
    report, policy = heard.stderr[heard.stderr.index("pysandbox: explain:") :], world / "strict-unsigned.yaml"
    root = f"at {policy}:{line_of(policy, 'read_only_rootfs: true')} (mounts.read_only_rootfs: true)"
    assert 'openat(dirfd=AT_FDCWD, path="/etc/new", flags=O_WRONLY|O_CREAT|O_TRUNC) -> EROFS  (2 times)' in report
    assert 'a tmpfs at "/etc" (sandbox.mounts.tmpfs) would take the write instead' in report
    assert 'unlink(path="/bin/ls") -> EROFS' in report and 'mkdir(path="made") -> EROFS' in report
    assert report.count(root) == 3  # /etc/new and the link to /etc/passwd (one kind), /bin/ls, made
    assert f"at {policy}:{line_of(policy, '/proc/acpi')} (mounts.masked_paths)" in report
    assert f"at {policy}:{line_of(policy, '- /proc/sys')} (mounts.readonly_paths)" in report
    assert "the policy denied 5 kinds of system call (6 calls)" in report
    assert "can't create /etc/passwd: Permission denied" in heard.stderr  # EACCES comes first: not heard
    for path in ("/tmp/fine", "/dev/null", "/no/such", "/etc/passwd"):
        assert path not in report
    diff = report.split("that would allow it", 1)[1]
    assert re.search(r"sandbox\.mounts\.read_only_rootfs: true -> false +loosens", diff)
    assert re.search(r"sandbox\.mounts\.masked_paths: -/proc/acpi +loosens", diff)
    assert re.search(r"sandbox\.mounts\.readonly_paths: -/proc/sys +loosens", diff)


def test_writes_are_answered_as_without_explain_and_counted(sandbox: Sandbox, denials_image: str) -> None:
    """Every open for writing waits for the monitor's look at its mount: on a tmpfs it goes
    on (none heard), on the read-only root each gets EROFS and is counted."""
    script = "/denials writes /tmp/written 2000; /denials writes /etc/refused 300"
    plain = sandbox(script, image=denials_image)
    heard = sandbox("--explain", script, image=denials_image, timeout=60)
    assert plain.stdout == heard.stdout == f"writes=2000/0/0\nwrites=300/300/{errno.EROFS}\n", heard.stderr
    assert 'openat(dirfd=AT_FDCWD, path="/etc/refused", flags=O_WRONLY|O_CREAT|O_TRUNC) -> EROFS  (300 times)' in (
        heard.stderr
    )
    assert "the policy denied 1 kind of system call (300 calls)" in heard.stderr


def test_a_call_the_kernel_refuses_for_a_capability_the_policy_drops_is_named_with_it(
    sandbox: Sandbox, world: Path, denials_image: str
) -> None:
    """chown, chmod and writing another user's file as root, binding port 80: the filter
    allows each, the kernel refuses it without the capability strict drops. Each is heard
    with that capability (the same output as without --explain); what succeeds is not, nor
    what no capability would help (/dev/null's owner is not the container's)."""
    policy = strict_variant(world, "explain-writable-root.yaml", ("read_only_rootfs: true", "read_only_rootfs: false"))
    share(world)
    script = (
        "chown 0 /home/owned; chmod 644 /home/owned; echo x >> /home/owned; touch /tmp/made; chown 1000 /tmp/made; "
        "chmod 600 /tmp/made && chown 0:0 /tmp/made && echo own-files-ok; chmod 600 /dev/null; "
        "nc -l -p 80 & sleep 0.5; kill $! 2>/dev/null; nc -l -p 8080 & sleep 0.5; kill $!; echo end"
    )
    plain = sandbox("-u", "0", script, image=denials_image, policy=policy.name)
    heard = sandbox("--explain", "-u", "0", script, image=denials_image, policy=policy.name)
    assert heard.stdout == plain.stdout == "own-files-ok\nend\n", heard.stderr
    refusals = [line for line in plain.stderr.splitlines() if "permitted" in line or "denied" in line]
    assert len(refusals) == 6 and refusals == [
        line
        for line in heard.stderr.splitlines()
        if ("permitted" in line or "denied" in line) and "explain" not in line
    ]
    report = heard.stderr[heard.stderr.index("pysandbox: explain:") :]
    capabilities = f"at {policy}:{line_of(policy, 'capabilities:')} (sandbox.capabilities)"
    for call, capability in (
        ('chown(path="/home/owned", owner=0, group=1000) -> EPERM  (2 times)', "CAP_CHOWN"),
        ('chmod(path="/home/owned", mode=0o644) -> EPERM', "CAP_FOWNER"),
        ('openat(dirfd=AT_FDCWD, path="/home/owned", flags=O_WRONLY|O_CREAT|O_APPEND) -> EACCES', "CAP_DAC_OVERRIDE"),
        ("addr={AF_INET6, port 80}, addrlen=0x1c) -> EACCES", "CAP_NET_BIND_SERVICE"),
    ):
        assert call in report, call
        below = report.split(call, 1)[1]
        assert f"without {capability}, which the policy drops" in below.splitlines()[1], below
        assert re.search(rf"sandbox\.capabilities: \+{capability} +loosens", report)
    assert report.count(capabilities) == 4  # both chowns (busybox keeps the group) are one kind
    assert "/dev/null" not in report and "8080" not in report
    assert "the policy denied 4 kinds of system call (5 calls)" in report


def test_taking_an_id_not_held_is_heard_with_cap_setuid(sandbox: Sandbox, denials_image: str) -> None:
    script = f"/denials {nr('setuid')} 0; /denials {nr('setuid')} 1000; /denials {nr('setgroups')} 0 0"
    plain = sandbox(script, image=denials_image)
    heard = sandbox("--explain", script, image=denials_image)
    assert heard.stdout == plain.stdout == f"{nr('setuid')}=-1/1\n{nr('setuid')}=ok\n{nr('setgroups')}=-1/1\n"
    assert "setuid(uid=0) -> EPERM" in heard.stderr and "without CAP_SETUID" in heard.stderr
    assert "setgroups(size=0) -> EPERM" in heard.stderr and "without CAP_SETGID" in heard.stderr
    assert "setuid(uid=1000)" not in heard.stderr
    assert "the command ran as uid 1000" in heard.stderr


def test_a_link_in_the_container_is_resolved_in_its_root_not_the_hosts(
    sandbox: Sandbox, world: Path, denials_image: str
) -> None:
    """The monitor resolves the caller's path from the caller's root (openat2
    RESOLVE_IN_ROOT): a link to an absolute path names the container's file, whose mount is
    the read-only root. Followed from the monitor's own root, the link would reach the
    host's writable /var/tmp and nothing would be heard."""
    script = "ln -s /etc/passwd /tmp/link; echo x >> /tmp/link; ln -s /etc/made /tmp/dangling; echo y > /tmp/dangling"
    done = sandbox("--explain", "-u", "0", script + "; echo end", image=denials_image)
    assert done.stderr.count("Read-only file system") == 2 and done.stdout.strip() == "end"
    assert 'openat(dirfd=AT_FDCWD, path="/tmp/link", flags=O_WRONLY|O_CREAT|O_APPEND) -> EROFS  (2 times)' in (
        done.stderr
    )
    assert "mounts.read_only_rootfs: true" in done.stderr


def test_explain_json_is_the_last_line(sandbox: Sandbox, denials_image: str) -> None:
    done = sandbox("--explain=json", f"/denials {nr('mount')} s:a s:/b", image=denials_image)
    report = json.loads(done.stderr.splitlines()[-1])
    assert [item["syscall"] for item in report["denials"]] == ["mount"]
    assert report["denials"][0]["errno"] == "EPERM"
    assert {"field": "sandbox.seccomp.allow", "change": "sandbox.seccomp.allow: +mount", "effect": "loosens"} in (
        report["policy_diff"]["changes"]
    )


def test_a_profile_that_would_deadlock_the_handover_runs_as_without_explain(
    sandbox: Sandbox, world: Path, denials_image: str
) -> None:
    """Denying sendmsg would make the command wait on its own listener: it runs with the
    plain filter instead, and the report says why nothing was heard."""
    policy = strict_variant(
        world, "explain-no-sendmsg.yaml", ("profile: strict", "profile: strict\n    deny: [sendmsg]")
    )
    share(world)
    script = f"/denials {nr('mount')} s:a s:/b; /denials {nr('unshare')} 0x10000000; /denials {nr('unshare')} 0"
    done = sandbox("--explain", script, image=denials_image, policy=policy.name, timeout=30)
    assert done.returncode == 0 and done.stdout.split() == [f"{nr('mount')}=-1/1", *[f"{nr('unshare')}=-1/1"] * 2]
    if sandbox.mode != "root":  # the kernel's log is root's to read
        assert "nothing was heard: the seccomp profile does not allow sendmsg" in done.stderr
        return
    # root: the plain filter logged its denials (SECCOMP_FILTER_FLAG_LOG), each process gone
    # at once, and the container's own audit session told them apart from the host's
    assert "the policy denied 2 kinds of system call (3 calls)" in done.stderr, done.stderr
    assert "  mount(...) -> EPERM\n" in done.stderr and "  unshare(...) -> EPERM  (2 times)\n" in done.stderr
    assert "no listener (the seccomp profile does not allow sendmsg" in done.stderr
    assert "the denials were read from the kernel's audit log instead" in done.stderr
    assert re.search(r"sandbox\.seccomp\.allow: \+unshare +loosens", done.stderr)


def test_explain_costs_nothing_when_off(sandbox: Sandbox, denials_image: str) -> None:
    done = sandbox(f"/denials {nr('mount')} s:a s:/b", image=denials_image)
    assert "explain" not in done.stderr


def test_a_detached_container_is_explained_while_it_runs_and_after_restarts(
    sandbox: Sandbox, world: Path, denials_image: str, named: list[str]
) -> None:
    """run -d --explain: the monitor keeps the record in the container's folder as each new
    kind of denial comes; `explain NAME` reads it while the container runs, and after it
    ended and was started again (counts of both runs added)."""
    name = f"explained-{sandbox.mode}"
    named.append(name)
    mount = nr("mount")
    script = f"/denials {mount} s:none s:/mnt; sleep 0.5"
    flags = ["run", "-d", "--name", name, "--policy", str(world / "strict-unsigned.yaml"), "--explain"]
    started = tool(sandbox, *flags, str(world / denials_image), "sh", "-c", script)
    assert started.returncode == 0, started.stderr
    assert wait_until(lambda: "mount(" in tool(sandbox, "explain", name).stdout, seconds=10)
    assert tool(sandbox, "wait", name).stdout.strip() == "0"
    assert tool(sandbox, "start", name).returncode == 0
    assert tool(sandbox, "wait", name).stdout.strip() == "0"
    report = tool(sandbox, "explain", name)
    assert report.returncode == 0, report.stderr
    assert re.search(r"^  mount\(.*\) -> EPERM  \(2 times\)$", report.stdout, re.M), report.stdout
    assert re.search(r"sandbox\.seccomp\.allow: \+mount +loosens", report.stdout)
    as_json = json.loads(tool(sandbox, "explain", name, "--format", "json").stdout)
    assert [(item["syscall"], item["count"]) for item in as_json["denials"]] == [("mount", 2)]


def test_the_calls_of_an_execd_process_are_heard_and_kept_with_the_containers(
    sandbox: Sandbox, world: Path, denials_image: str, named: list[str]
) -> None:
    """exec into a container run with -d --explain: the exec'd process's denials get the
    plain filter's errno and join the container's record, which `explain NAME` shows."""
    name = f"explained-exec-{sandbox.mode}"
    named.append(name)
    flags = ["run", "-d", "--name", name, "--policy", str(world / "strict-unsigned.yaml"), "--explain"]
    started = tool(sandbox, *flags, str(world / denials_image), "sleep", "30")
    assert started.returncode == 0, started.stderr
    for _ in range(2):
        done = tool(sandbox, "exec", name, "/denials", nr("unshare"), "0x10000000")
        assert done.stdout.strip() == f"{nr('unshare')}=-1/1", done.stderr
    report = tool(sandbox, "explain", name)
    assert re.search(r"^  unshare\(flags=CLONE_NEWUSER\) -> EPERM  \(2 times\)$", report.stdout, re.M), report.stdout
    assert re.search(r"sandbox\.seccomp\.allow: \+unshare +loosens", report.stdout)
    assert tool(sandbox, "rm", "-f", name).returncode == 0


def test_a_process_an_exec_leaves_running_keeps_its_answers(
    sandbox: Sandbox, world: Path, denials_image: str, named: list[str]
) -> None:
    """exec returns while a process it started runs on: that process's denied calls still
    get the plain filter's errno and its writes still work (the exec's listener is served
    until every process under its filter is gone), and exec does not wait for it."""
    name = f"explained-late-{sandbox.mode}"
    named.append(name)
    flags = ["run", "-d", "--name", name, "--policy", str(world / "strict-unsigned.yaml"), "--explain"]
    assert tool(sandbox, *flags, str(world / denials_image), "sleep", "30").returncode == 0
    late = f"(sleep 3; /denials {nr('unshare')} 0x10000000 > /tmp/late; touch /tmp/made && echo wrote >> /tmp/late) &"
    started = time.monotonic()
    done = tool(sandbox, "exec", name, "sh", "-c", late)
    assert done.returncode == 0 and time.monotonic() - started < 2.9, done.stderr
    assert wait_until(lambda: "wrote" in tool(sandbox, "exec", name, "cat", "/tmp/late").stdout, seconds=10)
    assert tool(sandbox, "exec", name, "cat", "/tmp/late").stdout == f"{nr('unshare')}=-1/1\nwrote\n"
    assert tool(sandbox, "rm", "-f", name).returncode == 0


def test_a_process_left_without_its_listener_cannot_bring_its_own(
    sandbox: Sandbox, world: Path, denials_image: str, named: list[str]
) -> None:
    """Should the server of an exec's listener die while a process under that filter lives,
    the kernel would let that process load a filter with a listener of its own, which would
    hear (and could let through) the calls the policy denies. The prologue refuses such a
    filter (EBUSY), and the orphaned filter fails what it would have asked (ENOSYS): never
    allowed."""
    name = f"explained-orphan-{sandbox.mode}"
    named.append(name)
    flags = ["run", "-d", "--name", name, "--policy", str(world / "strict-unsigned.yaml"), "--explain"]
    assert tool(sandbox, *flags, str(world / denials_image), "sleep", "30").returncode == 0
    unshare = nr("unshare")
    # its output file opened first: once the listener is gone, opening one would fail too
    late = f"(exec 3>/tmp/late; sleep 4; /denials listen {unshare} >&3; /denials {unshare} 0x10000000 >&3) &"
    assert tool(sandbox, "exec", name, "sh", "-c", late).returncode == 0
    servers = [
        pid
        for pid in os.listdir("/proc")
        if pid.isdigit() and _is_exec_server(int(pid), name) and int(pid) != os.getpid()
    ]
    assert servers, "no listener server found"
    for pid in servers:
        os.kill(int(pid), signal.SIGKILL)
    assert wait_until(lambda: tool(sandbox, "exec", name, "cat", "/tmp/late").stdout.count("\n") == 2, seconds=15)
    assert (
        tool(sandbox, "exec", name, "cat", "/tmp/late").stdout
        == f"listen=-1/{errno.EBUSY}\n{unshare}=-1/{errno.ENOSYS}\n"
    )
    assert tool(sandbox, "rm", "-f", name).returncode == 0


def _is_exec_server(pid: int, name: str) -> bool:
    """A `pysandbox exec NAME` process in a session of its own: the listener's server."""
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        return b"exec" in words and name.encode() in words and os.getsid(pid) == pid
    except OSError:
        return False


def test_explain_names_a_container_that_was_not_run_with_it(
    sandbox: Sandbox, world: Path, denials_image: str, named: list[str]
) -> None:
    name = f"unexplained-{sandbox.mode}"
    named.append(name)
    flags = ["run", "-d", "--name", name, "--policy", str(world / "strict-unsigned.yaml")]
    assert tool(sandbox, *flags, str(world / denials_image), "true").returncode == 0
    report = tool(sandbox, "explain", name)
    assert report.returncode == 1 and f"{name} was not run with --explain" in report.stderr
    assert tool(sandbox, "explain", "no-such-container").returncode == 1


def test_explain_json_with_detach_is_refused(sandbox: Sandbox, denials_image: str) -> None:
    done = sandbox("-d", "--explain=json", "true", image=denials_image)
    assert done.returncode == 125
    assert "explain NAME --format json" in done.stderr
