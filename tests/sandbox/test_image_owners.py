"""The image's file owners are what the container sees, as root and as an ordinary user: a
user's layers are unpacked as root of a user namespace mapped as the container's (rootless
podman's way), so /var/lib/postgresql stays 100:102 and mode 0700, `-u postgres` can use its
home, and on the host those files belong to the user's subordinate ids. Before, a user's
layers were unpacked with every owner lost (all files were container root's)."""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

import pytest

from tests.imagekit import T
from tests.sandbox.conftest import as_user
from tests.sandbox.harness import (
    OWNERS,
    Sandbox,
    owned_image,
    postgres_like,  # noqa: F401 - fixture
    subordinate_starts,
    tool,
)

pytestmark = pytest.mark.usefixtures("postgres_like")


def test_the_container_sees_the_images_owners_and_its_users_can_use_their_files(sandbox: Sandbox) -> None:
    shown = sandbox("stat -c '%u:%g %a %n' /var/lib/postgresql /var/lib/postgresql/secret /nobodys /etc/passwd",
                    image=OWNERS, policy="baseline-unsigned.yaml")  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == [
        "100:102 700 /var/lib/postgresql",
        "100:102 600 /var/lib/postgresql/secret",
        "65534:65534 644 /nobodys",
        "0:0 644 /etc/passwd",
    ]
    as_postgres = sandbox("-u", "postgres", "cat ~/secret && echo new > ~/new && stat -c %u:%g ~/new",
                          image=OWNERS, policy="baseline-unsigned.yaml")  # fmt: skip
    assert as_postgres.returncode == 0 and as_postgres.stdout.split() == ["pg", "100:102"], as_postgres.stderr


def user_cache(user: str) -> Path:
    return Path(pwd.getpwnam(user).pw_dir) / ".cache" / "pysandbox"


def test_a_users_layers_belong_to_the_subordinate_ids_and_check_as_unpacked(sandbox: Sandbox) -> None:
    """On the host, the image's uid 100 is the user's subordinate id 99 up from the first
    (container id 1 is the first); `system check` reads the layers as they were written,
    from a namespace made alike, and finds them intact."""
    if sandbox.mode != "user":
        pytest.skip("root's layers are offset into the reserved range (test_storage)")
    assert sandbox("true", image=OWNERS, policy="baseline-unsigned.yaml").returncode == 0
    uid_start, gid_start = subordinate_starts(str(sandbox.user))
    homes = list(user_cache(str(sandbox.user)).glob("layers/*-ns-*/root/var/lib/postgresql"))
    assert homes, "no layer unpacked in a user namespace"
    owners = {(os.lstat(home).st_uid, os.lstat(home).st_gid) for home in homes}
    assert owners == {(uid_start + 99, gid_start + 101)}
    checked = tool(sandbox, "system", "check")
    assert checked.returncode == 0 and ", 0 not" in checked.stdout + checked.stderr, checked.stdout + checked.stderr


def test_an_owner_outside_the_map_is_refused_by_name(sandbox: Sandbox, world: Path) -> None:
    """podman's "insufficient UIDs or GIDs": an id the container's namespace cannot map is
    refused before anything runs, for users too (before, their owners were all dropped)."""
    image = owned_image(world, "owner-70000.tar", [T("far", data=b"x\n", uid=70000, gid=0)])
    result = sandbox("true", image=image, policy="baseline-unsigned.yaml")
    assert result.returncode == 125 and "/far is owned by 70000:0, outside the" in result.stderr, result.stderr


def test_a_users_prune_and_volume_removal_reach_files_of_the_containers_other_users(sandbox: Sandbox) -> None:
    """What `-u postgres` writes into a named volume belongs to a subordinate id on the host;
    `volume rm` removes it from a namespace like the container's."""
    if sandbox.mode != "user":
        pytest.skip("root removes anything")
    name = "owners-test-volume"
    tool(sandbox, "volume", "rm", name)
    wrote = sandbox("-v", f"{name}:/var/lib/postgresql", "-u", "postgres",
                    "mkdir -p ~/d && echo x > ~/d/f && chmod 500 ~/d && echo ok",
                    image=OWNERS, policy="volumes-allowed.yaml")  # fmt: skip
    assert wrote.returncode == 0 and "ok" in wrote.stdout, wrote.stderr
    removed = tool(sandbox, "volume", "rm", name)
    assert removed.returncode == 0, removed.stderr
    listing = subprocess.run([*as_user(str(sandbox.user)), "ls", str(user_cache(str(sandbox.user)) / "volumes")],
                             capture_output=True, text=True)  # fmt: skip
    assert name not in listing.stdout
