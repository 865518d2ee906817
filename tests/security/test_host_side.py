"""The host side is a trust boundary: what pysandbox keeps and reads on the host, attacked
as a hostile local user, a hostile image author and a hostile container would. Each test is
one attack from the review (issue: "the host side is a trust boundary") and its expected
refusal, run with root and with each of two ordinary users as the owner of the storage."""

from __future__ import annotations

import glob
import json
import marshal
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pysbx.images.writer import NewImage, NewLayer, write_docker_archive
from tests.imagekit import T, make_tar, static_busybox
from tests.sandbox.harness import share, signed_image, strict_variant
from tests.security.conftest import INTERPRETER, PYSANDBOX, SECOND_USER, attacker_of, cache_of, run_as

Pysandbox = Callable[..., subprocess.CompletedProcess[str]]
LEAKED_UID = "4242"


@pytest.fixture(scope="session")
def host_file() -> Iterator[Path]:
    """A host file every user can read, shaped like a passwd file: an image must never see it."""
    folder = Path(tempfile.mkdtemp(prefix="pysandbox-host-"))
    folder.chmod(0o755)
    (folder / "passwd").write_text(f"app:x:{LEAKED_UID}:{LEAKED_UID}::/leaked-home:/bin/sh\n")
    (folder / "passwd").chmod(0o644)
    yield folder / "passwd"
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def hostile(world: Path, host_file: Path) -> Path:
    """Hostile images, one layer each, on a static busybox."""
    busybox = static_busybox()
    assert busybox is not None  # `world` skipped already without it
    program = busybox.read_bytes()
    binaries = [
        T("bin", "dir"),
        T("bin/busybox", data=program, mode=0o755),
        T("bin/sh", "symlink", link="busybox"),
        T("tmp", "dir", mode=0o1777),
    ]
    accounts = [
        T("etc", "dir"),
        T("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"),
        T("etc/group", data=b"root:x:0:\napp:x:1000:\n"),
    ]
    images: dict[str, tuple[list[T], str]] = {
        "setuid.tar": ([*binaries, *accounts, T("bin/suid", data=program, mode=0o4755)], "0"),
        "high-uid.tar": ([*binaries, *accounts, T("etc/owned", data=b"x", uid=400000, gid=400000)], "0"),
        "passwd-link.tar": ([*binaries, T("etc", "dir"), T("etc/passwd", "symlink", link=str(host_file))], "app"),
        "passwd-fifo.tar": ([*binaries, T("etc", "dir"), T("etc/passwd", "fifo")], "app"),
        "etc-link.tar": ([*binaries, T("etc", "symlink", link="/etc")], SECOND_USER),
        "fill-links.tar": (
            [
                *binaries,
                *accounts,
                T("data", "dir"),
                T("data/shadow", "symlink", link="/etc/shadow"),  # the host's, if ever followed before pivot
                T("data/hostroot", "symlink", link="/root"),
                T("data/plain", data=b"image-data"),
            ],
            "0",
        ),
    }
    folder = world / "security"
    folder.mkdir(exist_ok=True)
    for name, (entries, user) in images.items():
        image = NewImage([NewLayer(make_tar(entries), "gzip", "hostile")], {"User": user, "Cmd": ["/bin/sh"]})
        write_docker_archive(folder / name, image, [f"security/{name.removesuffix('.tar')}:1"])
    share(folder)
    return folder


def run(
    pysandbox: Pysandbox,
    world: Path,
    image: Path | str,
    *command: str,
    policy: str = "strict-unsigned.yaml",
    flags: tuple[str, ...] = (),
    **env: str,
) -> subprocess.CompletedProcess[str]:
    return pysandbox("run", "--rm", "--policy", str(world / policy), *flags, str(image), *command, **env)


@pytest.fixture
def shared_tmp(world: Path) -> Iterator[Path]:
    """A fresh folder every test user can read (pytest's tmp_path is root's alone)."""
    folder = Path(tempfile.mkdtemp(dir=world))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def denied(result: subprocess.CompletedProcess[str]) -> bool:
    return result.returncode != 0 and "Permission denied" in result.stderr


# ----- 1. setuid files in storage ----------------------------------------------------------


def test_a_setuid_file_in_the_layer_cache_is_out_of_other_users_reach(
    owner: str, pysandbox: Pysandbox, world: Path, hostile: Path
) -> None:
    assert run(pysandbox, world, hostile / "setuid.tar", "/bin/busybox", "true").returncode == 0
    cache = cache_of(owner)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    planted = glob.glob(f"{cache}/layers/*/root/bin/suid")
    assert planted and os.stat(planted[0]).st_mode & stat.S_ISUID  # it is there, setuid, as unpacked
    attempt = run_as(attacker_of(owner), [planted[0], "id", "-u"])
    assert denied(attempt), attempt


def test_a_setuid_file_a_container_leaves_in_a_volume_is_out_of_other_users_reach(
    owner: str, pysandbox: Pysandbox, world: Path
) -> None:
    volume = f"security-{owner}"
    script = "cp /bin/busybox /data/s && chmod 6755 /data/s && echo planted"
    result = run(
        pysandbox,
        world,
        world / "busybox-root.tar",
        "sh",
        "-c",
        script,
        policy="volumes-allowed.yaml",
        flags=("-v", f"{volume}:/data"),
    )
    try:
        assert "planted" in result.stdout, result.stderr
        planted = cache_of(owner) / "volumes" / volume / "data" / "s"
        assert planted.stat().st_mode & stat.S_ISUID
        assert denied(run_as(attacker_of(owner), [str(planted), "id", "-u"]))
        assert denied(run_as(attacker_of(owner), ["ls", str(planted.parent)]))
    finally:
        pysandbox("volume", "rm", volume)


def has_subordinate_ids(user: str) -> bool:
    from pysbx.sandbox.idmap import _subordinate

    uid = pwd.getpwnam(user).pw_uid
    return shutil.which("newuidmap") is not None and None not in (
        _subordinate("/etc/subuid", user, uid),
        _subordinate("/etc/subgid", user, uid),
    )


def test_a_layer_file_owned_outside_the_containers_map_is_refused(
    owner: str, pysandbox: Pysandbox, world: Path, hostile: Path, shared_tmp: Path
) -> None:
    """For root the reserved range is the map; for a user, the map of their subordinate ids
    (layers are unpacked in a namespace mapped so): an id beyond it is refused, not dropped."""
    if owner != "root" and not has_subordinate_ids(owner):
        pytest.skip("without subordinate ids an ordinary user's unpack keeps every file the user's")
    state = shared_tmp / "state"  # a cache of its own: nothing unpacked before counts
    if owner != "root":
        state.mkdir(mode=0o700)
        shutil.chown(state, owner, owner)
    result = run(pysandbox, world, hostile / "high-uid.tar", "/bin/busybox", "true", PYSANDBOX_STATE=str(state))
    assert result.returncode == 125
    assert "/etc/owned is owned by 400000:400000, outside the 65536 ids" in result.stderr, result.stderr


def test_roots_containers_run_on_ids_no_ordinary_user_can_become(owner: str, pysandbox: Pysandbox, world: Path) -> None:
    if owner != "root":
        pytest.skip("root's id range")
    result = run(pysandbox, world, world / "busybox-app.tar", "cat", "/proc/self/uid_map")
    assert result.returncode == 0, result.stderr
    _, base, size = (int(field) for field in result.stdout.split())
    for table in ("/etc/subuid", "/etc/subgid"):
        for line in Path(table).read_text().splitlines():
            name, start, count = line.split(":")
            if name != "pysandbox":
                assert int(start) + int(count) <= base or base + size <= int(start), line
    for line in Path("/etc/passwd").read_text().splitlines():
        assert not base <= int(line.split(":")[2]) < base + size, line


# ----- 2 and 7. storage and plans another user could write ---------------------------------


def test_a_storage_folder_another_user_can_write_is_refused(owner: str, pysandbox: Pysandbox, world: Path) -> None:
    shared = Path(tempfile.mkdtemp(prefix="pysandbox-shared-"))
    try:
        shared.chmod(0o777)  # not sticky: anyone may replace what is in it
        result = run(pysandbox, world, world / "busybox-app.tar", "true", PYSANDBOX_STATE=str(shared / "state"))
        assert result.returncode == 125 and "writable by other users" in result.stderr, result.stderr
        assert not (shared / "state" / "plans").exists()
        foreign = shared / "foreign"
        foreign.mkdir()
        shutil.chown(foreign, attacker_of(owner), attacker_of(owner))
        foreign.chmod(0o755)
        result = run(pysandbox, world, world / "busybox-app.tar", "true", PYSANDBOX_STATE=str(foreign))
        assert result.returncode == 125 and "refusing storage folder" in result.stderr, result.stderr
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_a_plan_that_is_not_a_private_file_of_ours_is_never_loaded(
    owner: str, pysandbox: Pysandbox, world: Path, shared_tmp: Path
) -> None:
    image = shared_tmp / "image.tar"
    shutil.copy(world / "busybox-app.tar", image)
    image.chmod(0o644)
    assert run(pysandbox, world, image, "true").returncode == 0  # leaves a plan for this image
    plans = cache_of(owner) / "plans"
    newest = max(plans.iterdir(), key=lambda item: item.stat().st_mtime)
    plan = marshal.loads(newest.read_bytes())
    plan["plan"]["confinement"]["capabilities"] = (1 << 41) - 1  # what a forger wants: every capability
    plan["plan"]["bpf"] = None
    newest.write_bytes(marshal.dumps(plan))
    newest.chmod(0o666)
    result = run(pysandbox, world, image, "sh", "-c", "grep CapEff /proc/self/status")
    assert result.returncode == 125 and "not a private regular file" in result.stderr, result.stdout + result.stderr
    newest.unlink()


# ----- 4. names are names --------------------------------------------------------------------


def test_a_volume_name_cannot_climb_out_of_the_volumes(owner: str, pysandbox: Pysandbox, world: Path) -> None:
    target = Path(tempfile.gettempdir()) / f"pysandbox-climbed-{owner}"
    shutil.rmtree(target, ignore_errors=True)
    climb = "x/" + "../" * 12 + str(target).lstrip("/")
    result = run(
        pysandbox,
        world,
        world / "busybox-app.tar",
        "true",
        policy="volumes-allowed.yaml",
        flags=("-v", f"{climb}:/mnt"),
    )
    assert result.returncode == 125 and "volume name" in result.stderr, result.stderr
    assert not target.exists()


def test_a_container_name_cannot_climb_out_of_the_state_folder(owner: str, pysandbox: Pysandbox, world: Path) -> None:
    result = run(pysandbox, world, world / "busybox-app.tar", "true", flags=("--name", "../../../escaped"))
    assert result.returncode == 125 and "container name" in result.stderr, result.stderr
    assert not glob.glob(f"{cache_of(owner)}/../../escaped*") and not glob.glob(f"{cache_of(owner)}/escaped*")


# ----- 5. a warm run rests on its evidence ----------------------------------------------------


def test_a_retargeted_policy_symlink_is_a_cold_run(
    owner: str, pysandbox: Pysandbox, world: Path, shared_tmp: Path
) -> None:
    link = shared_tmp / "policy.yaml"
    link.symlink_to(world / "strict-unsigned.yaml")
    image = world / "busybox-app.tar"
    assert pysandbox("run", "--rm", "--policy", str(link), str(image), "true").returncode == 0
    assert pysandbox("run", "--rm", "--policy", str(link), str(image), "true").returncode == 0  # warm
    link.unlink()
    link.symlink_to(Path(__file__).resolve().parents[2] / "policies" / "strict.yaml")  # signatures required
    result = pysandbox("run", "--rm", "--policy", str(link), str(image), "echo", "RAN")
    assert result.returncode == 125 and "RAN" not in result.stdout, result.stdout + result.stderr


@pytest.fixture
def signed_copy(owner: str, world: Path) -> Path:
    folder = world / f"security-signed-{owner}"
    shutil.rmtree(folder, ignore_errors=True)
    signed_image(folder, world / "busybox-app.tar")
    (folder / "garbage.json").write_text("{}")
    share(folder)
    return folder


def test_a_verdict_does_not_outlive_its_bundle(owner: str, pysandbox: Pysandbox, signed_copy: Path) -> None:
    image, bundle = signed_copy / "image.tar", signed_copy / "image.tar.sigstore.json"
    kept = bundle.read_bytes()

    def start(*flags: str) -> subprocess.CompletedProcess[str]:
        return pysandbox("run", "--rm", "--policy", str(signed_copy / "policy.yaml"), *flags, str(image), "echo", "RAN")

    assert start().returncode == 0 and start().returncode == 0  # cold, then warm
    bundle.unlink()
    assert start().returncode == 125  # gone: verified again, and refused
    bundle.write_bytes(kept)
    bundle.chmod(0o644)
    assert start().returncode == 0
    bundle.write_text("garbage")
    assert start().returncode == 125
    bundle.write_bytes(kept)
    assert start().returncode == 0
    refused = start("--bundle", str(signed_copy / "garbage.json"))
    assert refused.returncode == 125 and "RAN" not in refused.stdout, refused.stdout + refused.stderr


# ----- 6. an image's files are read inside its root -------------------------------------------


@pytest.mark.parametrize("image", ["passwd-link.tar", "etc-link.tar"])
def test_the_images_passwd_never_reaches_a_host_file(
    owner: str, pysandbox: Pysandbox, world: Path, hostile: Path, image: str
) -> None:
    result = run(pysandbox, world, hostile / image, "/bin/busybox", "id", "-u")
    assert result.returncode == 125 and "is not in the image's /etc/passwd" in result.stderr, result.stderr
    assert LEAKED_UID not in result.stdout + result.stderr


def test_a_fifo_as_the_images_passwd_does_not_hang_the_run(
    owner: str, pysandbox: Pysandbox, world: Path, hostile: Path
) -> None:
    result = run(pysandbox, world, hostile / "passwd-fifo.tar", "/bin/busybox", "id", "-u", timeout=30)
    assert result.returncode == 125 and "is not in the image's /etc/passwd" in result.stderr, result.stderr


# ----- 3 (run side). -u cannot override the policy's user -------------------------------------


def test_u_cannot_override_the_policys_user(owner: str, pysandbox: Pysandbox, world: Path) -> None:
    strict_variant(world, "strict-user-1000.yaml", ("  ids:\n", '  ids:\n    user: "1000"\n'))
    result = run(
        pysandbox, world, world / "busybox-root.tar", "id", "-u", policy="strict-user-1000.yaml", flags=("-u", "0")
    )
    assert result.returncode == 125 and "-u 0 is refused" in result.stderr and "strict-user-1000.yaml:" in result.stderr
    same = run(pysandbox, world, world / "busybox-root.tar", "id", "-u", policy="strict-user-1000.yaml")
    assert same.returncode == 0 and same.stdout.strip() == "1000", same.stderr


# ----- 10. PID 1 names no host path, and root's state is not on /run ---------------------------


def test_pid_1_shows_the_container_no_host_path_or_environment(owner: str, pysandbox: Pysandbox, world: Path) -> None:
    result = run(
        pysandbox,
        world,
        world / "busybox-root.tar",
        "sh",
        "-c",
        "tr '\\0' ' ' < /proc/1/cmdline; echo; tr '\\0' ' ' < /proc/1/environ 2>/dev/null; echo",
        HOST_CANARY="canary-in-the-host-environment",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "pysandbox-init"
    assert "/" not in result.stdout and "canary" not in result.stdout, result.stdout


def test_prune_is_not_held_by_a_fifo_planted_as_an_owner_record(owner: str, pysandbox: Pysandbox) -> None:
    base = cache_of(owner) / "containers"
    run_as(owner, ["mkdir", "-p", str(base / "planted-0000abcd")])
    run_as(owner, ["mkfifo", str(base / "planted-0000abcd" / "owner")])
    result = pysandbox("prune", timeout=30)
    assert result.returncode == 0, result.stderr
    assert not (base / "planted-0000abcd").exists()


# ----- 2. a cached layer that changed is found, and repaired ---------------------------------


def test_system_check_finds_a_changed_cached_layer_and_repair_unpacks_it_again(
    owner: str, pysandbox: Pysandbox, world: Path, hostile: Path
) -> None:
    image = hostile / "setuid.tar"
    pysandbox("system", "check", "--repair")  # folders an older pysandbox left have no digest
    assert run(pysandbox, world, image, "/bin/busybox", "true").returncode == 0
    assert pysandbox("system", "check").returncode == 0
    planted = glob.glob(f"{cache_of(owner)}/layers/*/root/bin/suid")[0]
    Path(planted).write_bytes(b"#!/bin/sh\necho poisoned\n")  # what a poisoner would leave
    found = pysandbox("system", "check")
    assert found.returncode == 1 and "changed since it was unpacked" in found.stdout, found.stdout + found.stderr
    assert pysandbox("system", "check", "--repair").returncode == 0
    result = run(
        pysandbox, world, image, "/bin/busybox", "sh", "-c", "/bin/busybox cmp /bin/suid /bin/busybox && echo clean"
    )
    assert result.returncode == 0 and result.stdout.strip() == "clean", result.stdout + result.stderr
    assert pysandbox("system", "check").returncode == 0


# ----- found by the attacker review of this suite's first version ------------------------------


def test_prune_never_follows_another_users_runtime_folder(owner: str, pysandbox: Pysandbox) -> None:
    if owner == "root":
        pytest.skip("root's state is never in a runtime folder")
    data = Path(pwd.getpwnam(owner).pw_dir) / "precious"
    run_as(owner, ["mkdir", "-p", str(data / "project-0000abcd")])
    run_as(owner, ["touch", "-d", "2 days ago", str(data / "project-0000abcd")])
    runtime = Path(tempfile.mkdtemp(prefix="pysandbox-runtime-"))
    try:
        runtime.chmod(0o777)
        run_as(attacker_of(owner), ["ln", "-s", str(data), str(runtime / "pysandbox")])
        result = run_as(owner, [PYSANDBOX, "prune"], XDG_RUNTIME_DIR=str(runtime))
        assert (data / "project-0000abcd").is_dir(), result.stdout
        assert result.returncode == 1 and "symlink of uid" in result.stderr, result.stdout + result.stderr
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
        shutil.rmtree(data, ignore_errors=True)


def test_a_changed_seccomp_profile_file_is_a_cold_run(
    owner: str, pysandbox: Pysandbox, world: Path, shared_tmp: Path
) -> None:
    profile = shared_tmp / "profile.json"
    strict_profile = Path(__file__).resolve().parents[2] / "policies" / "seccomp" / "strict.json"
    profile.write_text(strict_profile.read_text())
    policy = shared_tmp / "policy.yaml"
    policy.write_text((world / "strict-unsigned.yaml").read_text().replace("profile: strict", f"profile: {profile}"))
    assert f"profile: {profile}" in policy.read_text()
    for item in (profile, policy):
        item.chmod(0o644)
    script = ("sh", "-c", "mkdir /tmp/d && echo MADE")
    assert "MADE" in pysandbox("run", "--rm", "--policy", str(policy), str(world / "busybox-app.tar"), *script).stdout
    document = json.loads(profile.read_text())
    document["syscalls"] = [rule for rule in document["syscalls"] if not {"mkdir", "mkdirat"} & set(rule["names"])]
    profile.write_text(json.dumps(document))
    result = pysandbox("run", "--rm", "--policy", str(policy), str(world / "busybox-app.tar"), *script)
    assert "MADE" not in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--cpus", "-1"), ("--cpus", "nan"), ("--cpus", "inf"), ("--pids-limit", "0"), ("--pids-limit", "-1")],
)
def test_limits_flags_outside_dockers_ranges_are_refused(
    owner: str, pysandbox: Pysandbox, world: Path, flag: str, value: str
) -> None:
    result = run(pysandbox, world, world / "busybox-app.tar", "true", flags=(flag, value))
    assert result.returncode == 125 and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_layout_member_that_is_a_symlink_is_refused_without_waiting(
    owner: str, pysandbox: Pysandbox, world: Path, shared_tmp: Path
) -> None:
    layout = shared_tmp / "layout"
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").symlink_to("/proc/kmsg")  # a regular file whose read waits for the kernel
    share(shared_tmp)
    result = run(pysandbox, world, layout, "true", timeout=30)
    assert result.returncode == 125 and "symbolic link" in result.stderr, result.stderr


def test_a_sidecar_bundle_that_is_a_symlink_is_not_followed(
    owner: str, pysandbox: Pysandbox, signed_copy: Path
) -> None:
    bundle = signed_copy / "image.tar.sigstore.json"
    bundle.unlink()
    bundle.symlink_to("/proc/kmsg")
    result = pysandbox(
        "run", "--rm", "--policy", str(signed_copy / "policy.yaml"), str(signed_copy / "image.tar"), "true", timeout=30
    )
    assert result.returncode == 125 and "symbolic link" in result.stderr, result.stderr


@pytest.mark.parametrize("value", ["", "relative/state"])
def test_a_storage_folder_that_is_not_absolute_is_refused(
    owner: str, pysandbox: Pysandbox, world: Path, value: str
) -> None:
    result = run(pysandbox, world, world / "busybox-app.tar", "true", PYSANDBOX_STATE=value)
    assert result.returncode == 125 and "must be an absolute path" in result.stderr, result.stderr


def test_the_containers_mount_table_names_no_host_path(owner: str, pysandbox: Pysandbox, world: Path) -> None:
    result = run(pysandbox, world, world / "busybox-app.tar", "sh", "-c", "cat /proc/self/mountinfo; hostname")
    assert result.returncode == 0, result.stderr
    for leak in ("/var/lib/pysandbox", "/home/", ".cache", "/tmp/", "/run/"):
        assert leak not in result.stdout, result.stdout


def test_a_folder_the_owner_cannot_read_is_not_left_out_of_a_tree_digest(owner: str, shared_tmp: Path) -> None:
    if owner == "root":
        pytest.skip("root reads every folder")
    tree = shared_tmp / "tree"
    (tree / "locked").mkdir(parents=True)
    (tree / "locked" / "payload").write_text("x")
    shutil.chown(tree, owner)
    for item in (tree / "locked", tree / "locked" / "payload"):
        shutil.chown(item, owner)
    (tree / "locked").chmod(0)
    script = f"from pysbx.sandbox.treedigest import tree_digest; print(tree_digest({str(tree)!r}))"
    before = run_as(owner, [INTERPRETER, "-c", script])
    assert before.returncode == 0 and before.stdout.startswith("sha256:"), before.stderr
    assert (tree / "locked").stat().st_mode & 0o777 == 0  # given back its mode
    (tree / "locked" / "payload").write_text("tampered")  # as root: the owner could, too
    after = run_as(owner, [INTERPRETER, "-c", script])
    assert after.returncode == 0 and after.stdout != before.stdout, after.stderr


def test_baselines_writable_layer_is_bounded(owner: str, pysandbox: Pysandbox, world: Path) -> None:
    """Root's (and everyone's) writable layer under baseline is a 1 GiB tmpfs: no container
    fills the host's disk, or /run that the whole system needs."""
    result = run(pysandbox, world, world / "busybox-root.tar", "df", "-k", "/", policy="baseline-unsigned.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].split()[1] == str(1 << 20), result.stdout  # 1 GiB in KiB


@pytest.mark.parametrize(
    "socket", ["/run/containerd/containerd.sock", "/run/podman/podman.sock", "/var/run/docker.sock"]
)
def test_no_container_engines_socket_is_bound(owner: str, pysandbox: Pysandbox, world: Path, socket: str) -> None:
    """The run gate and pyaudit (PA1080) share one list of engine sockets."""
    result = run(pysandbox, world, world / "busybox-app.tar", "true", flags=("-v", f"{socket}:/engine.sock"))
    assert result.returncode == 125 and "hands the host to the container" in result.stderr, result.stderr


# ----- found by the second attacker review ----------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "words"), [("/big", "needs a size"), ("/big:size=100g", "in all is refused"), ("/ok:size=16m", "")]
)
def test_tmpfs_flags_stay_within_what_the_policy_lets_a_container_write(
    owner: str, pysandbox: Pysandbox, world: Path, flag: str, words: str
) -> None:
    """An rlimit (an ordinary user's memory limit) does not count tmpfs pages."""
    result = run(pysandbox, world, world / "busybox-app.tar", "true", flags=("--tmpfs", flag))
    if words:
        assert result.returncode == 125 and words in result.stderr, result.stderr
    else:
        assert result.returncode == 0, result.stderr


def test_a_plan_of_the_wrong_shape_is_a_miss_not_a_traceback(
    owner: str, pysandbox: Pysandbox, world: Path, shared_tmp: Path
) -> None:
    image = shared_tmp / "image.tar"
    shutil.copy(world / "busybox-app.tar", image)
    image.chmod(0o644)
    assert run(pysandbox, world, image, "true").returncode == 0
    plans = cache_of(owner) / "plans"
    newest = max(plans.iterdir(), key=lambda item: item.stat().st_mtime)
    for evidence in ([[1]], []):  # malformed, and none at all
        plan = marshal.loads(newest.read_bytes())
        plan["plan"]["evidence"] = evidence
        newest.write_bytes(marshal.dumps(plan))
        shutil.chown(newest, owner if owner != "root" else "root")
        newest.chmod(0o600)
        result = run(pysandbox, world, image, "echo", "ran")
        assert result.returncode == 0 and result.stdout.strip() == "ran" and "Traceback" not in result.stderr
        newest = max(plans.iterdir(), key=lambda item: item.stat().st_mtime)


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_an_env_file_that_is_no_regular_file_is_one_error(
    owner: str, pysandbox: Pysandbox, world: Path, shared_tmp: Path, kind: str
) -> None:
    path = shared_tmp / "env"
    if kind == "fifo":
        os.mkfifo(path)
        path.chmod(0o666)
    else:
        path.mkdir(mode=0o755)
    result = run(pysandbox, world, world / "busybox-app.tar", "true", flags=("--env-file", str(path)), timeout=30)
    assert result.returncode == 125 and f"--env-file {path}:" in result.stderr, result.stderr


def test_a_profile_that_fakes_success_is_one_refusal_not_a_traceback(
    owner: str, pysandbox: Pysandbox, world: Path, shared_tmp: Path
) -> None:
    profile = shared_tmp / "fake.json"
    profile.write_text(
        '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": '
        '[{"names": ["setresuid", "capset"], "action": "SCMP_ACT_ERRNO", "errnoRet": 0}]}'
    )
    policy = shared_tmp / "policy.yaml"
    policy.write_text((world / "strict-unsigned.yaml").read_text().replace("profile: strict", f"profile: {profile}"))
    share(shared_tmp)
    result = pysandbox("run", "--rm", "--policy", str(policy), str(world / "busybox-root.tar"), "id", "-u")
    assert result.returncode == 125 and "makes a refused call look successful" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_filling_a_new_volume_follows_no_link_of_the_image(
    owner: str, pysandbox: Pysandbox, world: Path, hostile: Path
) -> None:
    """A new volume is filled before pivot_root, where an absolute link of the image would
    reach the host's files if followed: links are copied as links, never read through."""
    volume = f"security-fill-{owner}"
    try:
        result = run(pysandbox, world, hostile / "fill-links.tar", "/bin/busybox", "true",
                     policy="volumes-allowed.yaml", flags=("-v", f"{volume}:/data"))  # fmt: skip
        assert result.returncode == 0, result.stderr
        data = cache_of(owner) / "volumes" / volume / "data"
        assert (data / "plain").read_bytes() == b"image-data"
        assert os.readlink(data / "shadow") == "/etc/shadow" and (data / "shadow").is_symlink()
        assert (data / "hostroot").is_symlink() and os.readlink(data / "hostroot") == "/root"
    finally:
        pysandbox("volume", "rm", volume)
