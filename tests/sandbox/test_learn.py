"""`pysandbox learn`, for real, as root and as an ordinary user: a busybox workload observed
under baseline becomes a policy that lints, replays green and is narrower than baseline by
hundreds of calls; a call baseline refuses is added with its reason and marked by
`policy diff`; a workload that does not replay the same is not offered; nothing existing is
overwritten."""

from __future__ import annotations

import os
import pwd
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pysbx.policies.seccomp import syscall_number
from tests.sandbox.harness import Sandbox, tool_argv


@pytest.fixture
def folder(sandbox: Sandbox) -> Iterator[Path]:
    """Where the learned files go: the sandbox's user's own."""
    path = Path(tempfile.mkdtemp(prefix="pysandbox-learn-"))
    if sandbox.user is not None:
        entry = pwd.getpwnam(sandbox.user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def learn(
    sandbox: Sandbox, world: Path, folder: Path, *args: str, image: str, base: str = "baseline-unsigned.yaml"
) -> subprocess.CompletedProcess[str]:
    """`pysandbox learn --base BASE -o FOLDER/learned.yaml ARGS... IMAGE sh -c SCRIPT`."""
    *flags, script = args
    argv = [*tool_argv(sandbox), "learn", "--base", str(world / base)]
    argv += ["-o", str(folder / "learned.yaml"), *flags, str(world / image), "sh", "-c", script]
    return subprocess.run(argv, capture_output=True, text=True, cwd="/", timeout=180)


def tool(sandbox: Sandbox, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*tool_argv(sandbox), *args], capture_output=True, text=True, cwd="/", timeout=60)


def test_a_busy_box_workload_becomes_a_narrower_policy_that_lints_and_replays(
    sandbox: Sandbox, world: Path, folder: Path, denials_image: str
) -> None:
    done = learn(sandbox, world, folder, "--compare-output", "ls / | head -3; echo learned", image=denials_image)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["bin", "denials", "dev", "learned"] * 2  # observed, then replayed
    narrower = re.search(
        r"baseline-unsigned allows (\d+) system calls here, this policy (\d+) \(narrower by (\d+)\)", done.stderr
    )
    assert narrower is not None, done.stderr
    base, learned, by = map(int, narrower.groups())
    assert base - learned == by and by > 250 and learned < 80
    assert "replayed under" in done.stderr and "exit 0 as observed, same output" in done.stderr
    policy = folder / "learned.yaml"
    assert tool(sandbox, "policy", "lint", str(policy)).returncode == 0
    diff = tool(sandbox, "policy", "diff", str(world / "baseline-unsigned.yaml"), str(policy))
    assert diff.returncode == 0, diff.stdout  # nothing loosens
    assert (
        re.search(r"profile: default -> learned\.seccomp\.json: mount: allow -> errno +tightens", diff.stdout) is None
    )
    assert "execve" in (folder / "learned.seccomp.json").read_text()
    assert '"mount"' not in (folder / "learned.seccomp.json").read_text()


def test_a_call_the_base_refuses_is_added_with_why_and_marked_by_policy_diff(
    sandbox: Sandbox, world: Path, folder: Path, denials_image: str
) -> None:
    """Under (a copy of) strict: process_vm_readv, which strict refuses and Docker's default
    profile allows, is added by name; personality(8), refused by strict for that value only,
    is allowed for it only; both say why. mount and io_uring_setup, which the default
    profile refuses without CAP_SYS_ADMIN (or at all), are refused while learning too, and
    said, not added. The workload sees the same in the observed run and the replay."""
    readv, personality = syscall_number("process_vm_readv"), syscall_number("personality")
    mount, uring = syscall_number("mount"), syscall_number("io_uring_setup")
    script = (
        f"/denials {readv} $$ 0 0 0 0 0; /denials {personality} 8; "
        f"/denials {mount} s:none s:/mnt s:tmpfs; /denials {uring} 1 0"
    )
    done = learn(sandbox, world, folder, "--compare-output", script, image=denials_image, base="strict-unsigned.yaml")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [f"{readv}=ok", f"{personality}=ok", f"{mount}=-1/1", f"{uring}=-1/1"] * 2
    text = (folder / "learned.yaml").read_text()
    assert re.search(
        r"^      - process_vm_readv  # refused by strict-unsigned; 1x, first process_vm_readv\(\)$", text, re.M
    )
    assert "#   refused by strict-unsigned for these arguments; 1x, first personality(persona=8)" in text
    for name in ("mount", "io_uring_setup"):
        assert f"not added: {name}: refused while learning too: the default profile refuses it" in done.stderr
        assert name not in text
    diff = tool(sandbox, "policy", "diff", str(world / "strict-unsigned.yaml"), str(folder / "learned.yaml"))
    assert diff.returncode == 1 and re.search(r"sandbox\.seccomp\.allow: \+process_vm_readv +loosens", diff.stdout)
    assert re.search(r"personality\(arg0 & 0xffffffff == 0x8\): errno -> allow +loosens", diff.stdout), diff.stdout


def test_capabilities_no_call_needed_are_dropped_and_those_needed_kept(
    sandbox: Sandbox, world: Path, folder: Path, denials_image: str
) -> None:
    """As the container's root under baseline (Docker's fourteen): reading another user's
    0600 file needs CAP_DAC_OVERRIDE, giving a file away CAP_CHOWN, ping's raw socket
    CAP_NET_RAW: kept. CAP_SETUID, CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT..., whose use a call
    would show and none did, are dropped; those no call shows (CAP_KILL...) are kept. The
    replay under the narrower set prints the same."""
    script = "cat /home/owned; touch /tmp/made; chown 1000 /tmp/made; ping -c 1 127.0.0.1 >/dev/null && echo pinged"
    done = learn(sandbox, world, folder, "--compare-output", "-u", "0", script, image=denials_image)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "another user's\npinged\n" * 2
    text = (folder / "learned.yaml").read_text()
    added = re.search(r"^    add: \[(.*)\]$", text, re.M)
    assert "    drop: [ALL]" in text and added is not None, text
    kept = set(added.group(1).split(", "))
    assert {"CAP_DAC_OVERRIDE", "CAP_CHOWN", "CAP_NET_RAW", "CAP_KILL", "CAP_FSETID"} <= kept
    assert not kept & {"CAP_SETUID", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_AUDIT_WRITE", "CAP_SETFCAP"}
    assert re.search(
        r"capabilities: baseline-unsigned grants 14, this policy \d+ \(no call needed .*CAP_SETUID", (done.stderr)
    )
    diff = tool(sandbox, "policy", "diff", str(world / "baseline-unsigned.yaml"), str(folder / "learned.yaml"))
    assert diff.returncode == 0 and re.search(r"sandbox\.capabilities: -CAP_SETUID +tightens", diff.stdout), diff.stdout


def test_a_root_written_only_below_tmp_becomes_read_only_and_sends_the_egress_list(
    sandbox: Sandbox, world: Path, folder: Path, denials_image: str
) -> None:
    """Under baseline (a writable root): writes only below /tmp (one relative to the working
    folder) make the root read-only with a tmpfs at /tmp, sized so that no more may be
    written than before; the one destination sent to becomes the egress list (loopback is
    no destination). policy diff marks all three tightens, and the replay runs the same."""
    script = "echo x > /tmp/a; mkdir /tmp/b; cd /tmp && echo y > c; nc -w 1 192.0.2.7 8081 </dev/null; echo done"
    done = learn(sandbox, world, folder, "--compare-output", script, image=denials_image)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "done\n" * 2
    text = (folder / "learned.yaml").read_text()
    assert "# the workload wrote on the root only below /tmp (3x): a tmpfs there takes it" in text
    assert '    read_only_rootfs: true\n    tmpfs:\n      - {path: "/tmp", size: 1Gi, mode: "1777"}' in text
    assert '  egress:\n    - "192.0.2.7/32:8081"  # 1x' in text
    diff = tool(sandbox, "policy", "diff", str(world / "baseline-unsigned.yaml"), str(folder / "learned.yaml"))
    assert diff.returncode == 0, diff.stdout
    for field in ("egress: null -> [192.0.2.7/32:8081]", "read_only_rootfs: false -> true", "tmpfs: +{path: /tmp"):
        assert re.search(rf"sandbox\.(mounts\.)?{re.escape(field)}.* tightens", diff.stdout), (field, diff.stdout)


def test_a_root_written_elsewhere_stays_writable_and_says_where(
    sandbox: Sandbox, world: Path, folder: Path, denials_image: str
) -> None:
    done = learn(
        sandbox, world, folder, "echo x > /tmp/a; echo y > /home/made; echo z > /dev/null", image=denials_image
    )
    assert done.returncode == 0, done.stderr
    text = (folder / "learned.yaml").read_text()
    assert "  # writes landed on the root below /home (1x), /tmp (1x): it stays writable, as in the base" in text
    assert "read_only_rootfs" not in text and "  egress: []" in text


def test_a_write_whose_place_cannot_be_told_keeps_the_root_writable(
    sandbox: Sandbox, world: Path, folder: Path, denials_image: str
) -> None:
    """`mkdir ../home/new` from /etc climbs out of its folder, which the monitor does not
    follow: the write is counted as unknown ("?"), and the root stays writable (a learned
    read-only root would make the replay fail where the workload wrote)."""
    done = learn(sandbox, world, folder, "-u", "0", "cd /etc && mkdir ../home/new; echo made=$?", image=denials_image)
    assert done.returncode == 0 and done.stdout == "made=0\n" * 2, done.stderr
    text = (folder / "learned.yaml").read_text()
    assert "  # writes landed on the root below ? (1x): it stays writable, as in the base" in text
    assert "read_only_rootfs" not in text


def test_a_workload_that_does_not_replay_the_same_is_not_offered(
    sandbox: Sandbox, world: Path, folder: Path, denials_image: str
) -> None:
    done = learn(sandbox, world, folder, "--compare-output", "cat /proc/sys/kernel/random/uuid", image=denials_image)
    assert done.returncode == 1
    assert "other output than observed: this policy does not run the workload as observed" in done.stderr


def test_existing_files_are_not_overwritten(sandbox: Sandbox, world: Path, folder: Path, denials_image: str) -> None:
    policy = folder / "learned.yaml"
    policy.write_text("# mine\n")
    policy.chmod(0o666)
    done = learn(sandbox, world, folder, "true", image=denials_image)
    assert done.returncode == 2 and "exists: --force replaces it" in done.stderr
    assert policy.read_text() == "# mine\n"


def test_learn_refuses_what_would_make_it_lie(sandbox: Sandbox, world: Path, folder: Path, denials_image: str) -> None:
    for flags, said in ((("-d",), "-d: learn watches"), (("--explain",), "--explain: learn hears")):
        done = learn(sandbox, world, folder, *flags, "true", image=denials_image)
        assert done.returncode == 2 and said in done.stderr


def test_a_limit_reached_while_learning_is_said(
    sandbox: Sandbox, world: Path, folder: Path, denials_image: str
) -> None:
    if sandbox.mode != "root":
        pytest.skip("an ordinary user's pids limit is an rlimit here, whose refusals no counter records")
    script = "for i in 1 2 3 4 5 6 7 8; do (sleep 1 &) 2>/dev/null; done; echo done"
    done = learn(sandbox, world, folder, "--pids-limit", "4", script, image=denials_image)
    if "RLIMIT_NPROC" in done.stderr:
        pytest.skip("no cgroup for the pids limit on this host")
    assert done.returncode == 0, done.stderr
    assert re.search(
        r"note: limits\.pids was reached \d+ time\(s\) while learning: the policy keeps the base's", done.stderr
    )


def test_a_link_planted_at_the_output_is_replaced_never_followed(
    sandbox: Sandbox, world: Path, folder: Path, denials_image: str
) -> None:
    """Someone who can write the output's folder (a shared /tmp) puts a link there to a file
    of the user's: learn --force replaces the link with its own file, and the file the link
    pointed at is left as it was (a write through the link would have replaced it)."""
    victim = folder / "victim"
    victim.write_text("precious\n")
    (folder / "learned.yaml").symlink_to(victim)
    (folder / "learned.seccomp.json").symlink_to(victim)
    done = learn(sandbox, world, folder, "--force", "true", image=denials_image)
    assert done.returncode == 0, done.stderr
    assert victim.read_text() == "precious\n"
    for name in ("learned.yaml", "learned.seccomp.json"):
        assert not (folder / name).is_symlink() and (folder / name).is_file()
