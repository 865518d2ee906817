"""The store's commands as a user types them (load, images, tag, rmi, history, save, image
prune), and the other commands taking a stored name: pyaudit, sign, verify, image inspect.
Each test has its own storage (PYSANDBOX_STATE)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.imagekit import T, image_of, write_image

BIN = Path(sys.executable).parent


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def tool(state: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    name, *rest = args
    env = {**os.environ, "PYSANDBOX_STATE": str(state)}
    return subprocess.run([str(BIN / name), *rest], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def ok(state: Path, *args: str) -> str:
    result = tool(state, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def archive(tmp_path: Path, tag: str, content: bytes = b"hello\n", layout: str = "docker-25") -> str:
    folder = tmp_path / f"src-{len(os.listdir(tmp_path))}"
    folder.mkdir()
    config = {"User": "1000", "Cmd": ["/app"]}
    image = image_of([T("app", data=content, mode=0o755)], [T("etc", "dir"), T("etc/x", data=b"x")], config=config)
    return write_image(image, folder, layout, tag)


def test_load_then_images_lists_names_as_docker_shows_them(tmp_path: Path, state: Path) -> None:
    assert ok(state, "pysandbox", "load", "-i", archive(tmp_path, "busybox:1.36")) == (
        "Loaded image: docker.io/library/busybox:1.36\n"
    )
    ok(state, "pysandbox", "load", "-i", archive(tmp_path, "ghcr.io/acme/app:2", b"two"))
    lines = ok(state, "pysandbox", "images").splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert {tuple(line.split()[:2]) for line in lines[1:]} == {("busybox", "1.36"), ("ghcr.io/acme/app", "2")}
    rows = json.loads(ok(state, "pysandbox", "images", "--format", "json"))
    assert {row["Repository"] for row in rows} == {"busybox", "ghcr.io/acme/app"}
    assert all(row["Digest"].startswith("sha256:") and row["ID"] == row["Digest"][7:19] for row in rows)
    assert ok(state, "pysandbox", "images", "--format", "{{.Repository}}:{{.Tag}}", "busybox").splitlines() == [
        "busybox:1.36"
    ]
    assert (
        ok(state, "pysandbox", "images", "-q", "ghcr.io/acme/app")
        == rows[[r["Repository"] for r in rows].index("ghcr.io/acme/app")]["ID"] + "\n"
    )


def test_tag_and_rmi_move_and_remove_names_then_prune_frees_the_rest(tmp_path: Path, state: Path) -> None:
    ok(state, "pysandbox", "load", "-i", archive(tmp_path, "example/app:1"))
    ok(state, "pysandbox", "tag", "example/app:1", "localhost:5000/app:latest")
    ids = ok(state, "pysandbox", "images", "--format", "{{.ID}}").split()
    assert len(ids) == 2 and len(set(ids)) == 1
    assert ok(state, "pysandbox", "rmi", "localhost:5000/app") == "Untagged: localhost:5000/app:latest\n"
    ok(state, "pysandbox", "load", "-i", archive(tmp_path, "example/app:1", b"newer"))
    listed = ok(state, "pysandbox", "images", "--format", "{{.Repository}} {{.Tag}}").splitlines()
    assert sorted(listed) == ["<none> <none>", "example/app 1"]
    blobs = state / "store" / "blobs" / "sha256"
    before = len(list(blobs.iterdir()))
    report = ok(state, "pysandbox", "image", "prune", "-f")
    assert report.startswith("Deleted: sha256:") and "Total reclaimed space:" in report
    assert len(list(blobs.iterdir())) == before - 3  # the old image's manifest, config and unshared layer
    assert ok(state, "pysandbox", "images", "--format", "{{.Repository}}") == "example/app\n"
    removed = ok(state, "pysandbox", "rmi", "example/app:1")
    assert removed.startswith("Untagged: docker.io/example/app:1\nDeleted: sha256:")
    assert list(blobs.iterdir()) == []


def test_an_image_with_several_names_is_removed_by_id_only_with_force(tmp_path: Path, state: Path) -> None:
    ok(state, "pysandbox", "load", "-i", archive(tmp_path, "example/app:1"))
    ok(state, "pysandbox", "tag", "example/app:1", "example/app:2")
    image_id = ok(state, "pysandbox", "images", "-q").strip()
    refused = tool(state, "pysandbox", "rmi", image_id)
    assert refused.returncode == 125 and "has 2 names" in refused.stderr and "Traceback" not in refused.stderr
    assert ok(state, "pysandbox", "rmi", "-f", image_id).count("Untagged:") == 2
    assert ok(state, "pysandbox", "images", "-q") == ""


def test_history_shows_each_step_newest_first(tmp_path: Path, state: Path) -> None:
    ok(state, "pysandbox", "load", "-i", archive(tmp_path, "example/app:1"))
    lines = ok(state, "pysandbox", "history", "example/app:1").splitlines()
    assert lines[0].split()[:2] == ["IMAGE", "CREATED"]
    assert "layer 1" in lines[1] and "layer 0" in lines[2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("load", "-i", "/nonexistent.tar"), "/nonexistent.tar: no such file or directory"),
        (("rmi", "example/ghost:1"), "example/ghost:1: no such image in the store"),
        (("tag", "example/app:1", "bad name"), "image name 'bad name'"),
        (("history", "example/ghost:1"), "no such image in the store"),
        (("save", "-o", "/tmp/never-written.tar", "example/ghost:1"), "example/ghost:1: no such image"),
        (("images", "--format", "{{.Nope}}"), "--format {{.Nope}}: expected table, json or a template"),
    ],
)
def test_bad_input_is_one_line_and_exit_125(tmp_path: Path, state: Path, args: tuple[str, ...], message: str) -> None:
    ok(state, "pysandbox", "load", "-i", archive(tmp_path, "example/app:1"))
    result = tool(state, "pysandbox", *args)
    assert result.returncode == 125, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1
    assert not Path("/tmp/never-written.tar").exists()


def test_pyaudit_reads_a_stored_image_and_files_come_first(tmp_path: Path, state: Path) -> None:
    ok(state, "pysandbox", "load", "-i", archive(tmp_path, "example/app:1"))
    result = tool(state, "pyaudit", "--format", "json", "example/app:1")
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    assert report["images"][0]["target"] == "example/app:1"
    missing = tool(state, "pyaudit", "example/ghost:1")
    assert missing.returncode == 2 and "nor an image of pysandbox's store" in missing.stderr


def test_sign_and_verify_a_stored_image_by_name(tmp_path: Path, state: Path) -> None:
    ok(state, "pysandbox", "load", "-i", archive(tmp_path, "example/app:1"))
    ok(state, "pysandbox", "keygen", "--no-password", "--output-key-prefix", str(tmp_path / "team"))
    signed = ok(state, "pysandbox", "sign", "example/app:1", "--key", str(tmp_path / "team.key"))
    assert "referrer sha256:" in signed and "in the store" in signed
    verified = tool(state, "pysandbox", "verify", "example/app:1", "--key", str(tmp_path / "team.pub"))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    attached = ok(state, "pysandbox", "images", "-a", "--format", "{{.Repository}} {{.Tag}}")
    assert "<attached to sha256:" in attached
    ok(state, "pysandbox", "rmi", "example/app:1")
    assert json.loads((state / "store" / "index.json").read_text())["manifests"] == []  # the signature went too


def test_inspect_names_a_stored_image_by_its_name(tmp_path: Path, state: Path) -> None:
    ok(state, "pysandbox", "load", "-i", archive(tmp_path, "example/app:1"))
    shown = ok(state, "pysandbox", "image", "inspect", "example/app:1")
    assert shown.splitlines()[0].split()[1:] == ["example/app:1", "(local", "store)"]


def test_the_store_is_private(tmp_path: Path, state: Path) -> None:
    ok(state, "pysandbox", "load", "-i", archive(tmp_path, "example/app:1"))
    assert (state / "store").stat().st_mode & 0o777 == 0o700
    (state / "store").chmod(0o777)  # someone made it writable to others: nothing in it is trusted
    result = tool(state, "pysandbox", "images")
    assert result.returncode == 125 and "writable by other users" in result.stderr


def test_pull_to_a_folder_then_load_elsewhere_verifies_the_same(tmp_path: Path, state: Path) -> None:
    """Air-gapped: pull -o DIR writes the image with its signature to a layout folder; a
    machine without the registry loads it and verifies the same signature."""
    from tests.images.registry_server import start_registry

    registry = start_registry(tmp_path / "registry")
    try:
        name = f"{registry.host}/team/app:1"
        publisher = tmp_path / "publisher"
        ok(publisher, "pysandbox", "load", "-i", archive(tmp_path, name))
        ok(publisher, "pysandbox", "keygen", "--no-password", "--output-key-prefix", str(tmp_path / "team"))
        ok(publisher, "pysandbox", "sign", name, "--key", str(tmp_path / "team.key"))
        ok(publisher, "pysandbox", "push", name)
        assert ok(state, "pysandbox", "pull", "-q", "-o", str(tmp_path / "carried"), name) == f"{name}\n"
    finally:
        registry.stop()
    offline = tmp_path / "offline"
    assert ok(offline, "pysandbox", "load", "-i", str(tmp_path / "carried")) == f"Loaded image: {name}\n"
    verified = tool(offline, "pysandbox", "verify", name, "--key", str(tmp_path / "team.pub"))
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_login_checks_with_the_registry_saves_0600_and_pull_uses_it(tmp_path: Path, state: Path) -> None:
    from tests.images.registry_server import TokenServer, serve_in_thread, start_registry

    tokens = TokenServer(tmp_path / "tokens")
    server = serve_in_thread(tokens.handle)
    tokens.port = server.port
    registry = start_registry(tmp_path / "registry", tokens=tokens)
    config = tmp_path / "docker"
    env = {**os.environ, "PYSANDBOX_STATE": str(state), "DOCKER_CONFIG": str(config), "REGISTRY_AUTH_FILE": ""}
    env.pop("XDG_RUNTIME_DIR", None)

    def as_ci(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "pysandbox"), *args], input=stdin, capture_output=True, text=True, env=env, timeout=60
        )

    try:
        name = f"{registry.host}/private/app:1"
        wrong = as_ci("login", registry.host, "-u", "alice", "--password-stdin", stdin="nope\n")
        assert wrong.returncode == 125 and "refused the credentials of alice" in wrong.stderr
        assert not (config / "config.json").exists()
        denied = as_ci("push", name)  # nothing stored yet: the store says so before the registry is asked
        assert denied.returncode == 125
        assert as_ci("load", "-i", archive(tmp_path, name)).returncode == 0
        anonymous = as_ci("push", name)
        assert anonymous.returncode == 125 and "authentication required" in anonymous.stderr
        logged = as_ci("login", registry.host, "-u", "alice", "--password-stdin", stdin="s3cret\n")
        assert logged.returncode == 0, logged.stderr
        assert (config / "config.json").stat().st_mode & 0o777 == 0o600
        assert as_ci("push", name).returncode == 0
        assert as_ci("rmi", name).returncode == 0
        pulled = as_ci("pull", "-q", name)
        assert (pulled.returncode, pulled.stdout) == (0, f"{name}\n"), pulled.stderr
        assert as_ci("logout", registry.host).stdout == f"Removing login credentials for {registry.host}\n"
        assert registry.host not in (config / "config.json").read_text()
    finally:
        registry.stop()
        server.stop()
