"""The installed console scripts, run as a user runs them: exit codes, one-line errors,
and what `pysandbox image inspect|unpack|build` print."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.imagekit import T, image_of, write_image

BIN = Path(sys.executable).parent


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    tool, *rest = args
    return subprocess.run([str(BIN / tool), *rest], capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.fixture
def image(tmp_path: Path) -> str:
    layers = [
        [T("etc", "dir"), T("etc/hostname", data=b"box\n"), T("dev", "dir"), T("dev/null", "char")],
        [T("etc/.wh.hostname"), T("app", data=b"#!/bin/sh\n", mode=0o755)],
    ]
    config = {
        "User": "1000:1000",
        "Entrypoint": ["/app"],
        "Cmd": ["--serve"],
        "Env": ["PATH=/bin", "MODE=prod"],
        "WorkingDir": "/srv",
        "ExposedPorts": {"8080/tcp": {}},
        "Volumes": {"/data": {}},
        "Labels": {"org.opencontainers.image.title": "app"},
        "StopSignal": "SIGQUIT",
    }
    return write_image(image_of(*layers, config=config), tmp_path, "docker-25", "example/app:1")


@pytest.mark.parametrize("tool", ["pysandbox", "pyaudit"])
def test_both_tools_print_their_version(tool: str) -> None:
    result = run(tool, "--version")
    assert result.returncode == 0 and result.stdout.startswith(f"{tool} 0.")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("pysandbox", "--help"), ["image", "--version"]),
        (("pysandbox", "image", "--help"), ["inspect", "unpack", "build"]),
        (("pysandbox", "image", "unpack", "--help"), ["whiteouts", "TARGET", "--platform", "--max-bytes"]),
        (("pyaudit", "--help"), ["TARGETS", "--version"]),
    ],
)
def test_help_explains_every_command(args: tuple[str, ...], words: list[str]) -> None:
    result = run(*args)
    assert result.returncode == 0
    for word in words:
        assert word in result.stdout


def test_inspect_json_reports_config_layers_and_history(image: str) -> None:
    result = run("pysandbox", "image", "inspect", image, "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["verified"] is True and report["platform"] == "linux/amd64"
    assert report["manifest_digest"].startswith("sha256:") and "example/app:1" in report["references"]
    assert report["config"] | {"healthcheck": None} == {
        "user": "1000:1000",
        "entrypoint": ["/app"],
        "cmd": ["--serve"],
        "env": ["PATH=/bin", "MODE=prod"],
        "working_dir": "/srv",
        "exposed_ports": ["8080/tcp"],
        "volumes": ["/data"],
        "labels": {"org.opencontainers.image.title": "app"},
        "stop_signal": "SIGQUIT",
        "healthcheck": None,
    }
    first, second = report["layers"]
    assert (first["files"], first["entries"], second["files"]) == (1, 4, 1)
    assert first["created_by"] == "layer 0" and first["compression"] == "gzip"
    assert first["uncompressed_size"] > first["size"] > 0
    assert [row["created_by"] for row in report["history"]] == ["layer 1", "layer 0"]


def test_inspect_text_is_for_people(image: str) -> None:
    result = run("pysandbox", "image", "inspect", image)
    assert result.returncode == 0
    for expected in (
        "User          1000:1000",
        'Entrypoint    ["/app"]',
        "StopSignal    SIGQUIT",
        "every digest verified",
    ):
        assert expected in result.stdout
    assert "\x1b[" not in result.stdout + result.stderr  # no colour or progress bar in a pipe


def test_unpack_applies_whiteouts_and_notes_skipped_devices(image: str, tmp_path: Path) -> None:
    result = run("pysandbox", "image", "unpack", image, str(tmp_path / "root"))
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(tmp_path / "root")) == ["app", "dev", "etc"]
    assert os.listdir(tmp_path / "root/etc") == []
    assert "skipped 1 device nodes (/dev/null)" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["image", "inspect", "/nonexistent.tar"], "/nonexistent.tar: no such file or directory"),
        (["image", "inspect", "{image}:other:tag"], "no image named 'other:tag'"),
        (["image", "inspect", "{image}", "--platform", "linux"], "expected OS/ARCH"),
        (["image", "unpack", "{image}", "{image}"], "the target exists and is not a folder"),
    ],
)
def test_bad_input_is_one_line_and_exit_125(image: str, args: list[str], message: str) -> None:
    result = run("pysandbox", *[a.replace("{image}", image) for a in args])
    assert result.returncode == 125
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_usage_errors_exit_125_for_pysandbox_and_2_for_pyaudit() -> None:
    assert run("pysandbox", "image", "inspect").returncode == 125
    assert run("pysandbox", "image", "unpack", "--bogus").returncode == 125
    assert run("pyaudit").returncode == 2


def test_a_tampered_image_unpacks_nothing(tmp_path: Path, image: str) -> None:
    import tarfile

    from pysbx.images import open_image

    opened = open_image(image)
    members = {}
    with tarfile.open(image) as archive:
        for info in archive:
            if info.isfile():
                members[info.name] = archive.extractfile(info).read()  # type: ignore[union-attr]
    blob = opened.layers[1].location
    data = bytearray(members[blob])
    data[len(data) // 2] ^= 0xFF
    members[blob] = bytes(data)
    from pysbx.images.writer import write_tar

    tampered = tmp_path / "tampered.tar"
    write_tar(tampered, members.items())
    result = run("pysandbox", "image", "unpack", str(tampered), str(tmp_path / "out"))
    assert result.returncode == 125
    assert "layer 2" in result.stderr and (
        "does not match its digest" in result.stderr or "corrupt gzip" in result.stderr
    )
    assert not (tmp_path / "out").exists()


def test_build_is_deterministic_and_readable_back(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "bin/hello").write_text("#!/bin/sh\necho hello\n")
    digests = []
    for name, fmt in (
        ("a.tar", "oci-archive"),
        ("b.tar", "oci-archive"),
        ("c.tar", "docker-archive"),
        ("lay", "oci"),
    ):
        result = run(
            "pysandbox", "image", "build", str(rootfs), "-o", str(tmp_path / name),
            "--format", fmt, "--tag", "example/hello:1", "--user", "1000", "--cmd", "/bin/hello --loud",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        digests.append(result.stdout.split()[-1])
    assert digests[0] == digests[1] == digests[3]
    report = json.loads(run("pysandbox", "image", "inspect", str(tmp_path / "c.tar"), "--format", "json").stdout)
    assert report["config"]["cmd"] == ["/bin/hello", "--loud"] and report["references"] == ["example/hello:1"]
    again = run("pysandbox", "image", "build", str(rootfs), "-o", str(tmp_path / "a.tar"))
    assert again.returncode == 125 and "already exists" in again.stderr


@pytest.mark.parametrize("fmt", ["oci", "oci-archive"])
def test_a_built_image_is_found_and_judged_by_its_full_reference(tmp_path: Path, fmt: str) -> None:
    """ref.name holds `team/app:1.0` (as skopeo writes it): IMAGE:team/app:1.0 finds it,
    and pyaudit sees a version tag, not an image without one."""
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "rootfs" / "hello").write_text("hi\n")
    out = tmp_path / "out"
    built = run("pysandbox", "image", "build", str(tmp_path / "rootfs"), "-o", str(out), "--format", fmt,
                "--tag", "team/app:1.0", "--user", "1000")  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert run("pysandbox", "image", "inspect", f"{out}:team/app:1.0").returncode == 0
    audited = run("pyaudit", f"{out}:team/app:1.0", "--format", "json")
    rules = [f["rule_id"] for f in json.loads(audited.stdout)["findings"]]
    assert "PA1020" not in rules, audited.stdout
    if fmt == "oci":
        index = json.loads((out / "index.json").read_text())
        assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "team/app:1.0"


def test_a_layout_whose_ref_name_is_a_tag_alone_is_read_as_a_tag(tmp_path: Path) -> None:
    """umoci and older builds write ref.name `1.0`: IMAGE:team/app:1.0 and IMAGE:1.0 both find
    it, and `1.0` is a version tag, not an image named 1.0 without one."""
    from pysbx.images.writer import write_oci_layout

    write_oci_layout(tmp_path / "lay", [("1.0", [image_of([T("a")], config={"User": "1000"})])])
    for reference in ("team/app:1.0", "1.0"):
        assert run("pysandbox", "image", "inspect", f"{tmp_path}/lay:{reference}").returncode == 0, reference
    audited = json.loads(run("pyaudit", f"{tmp_path}/lay", "--format", "json").stdout)
    assert "PA1020" not in [f["rule_id"] for f in audited["findings"]]
    assert run("pysandbox", "image", "inspect", f"{tmp_path}/lay:team/app:2.0").returncode == 125


def test_source_date_epoch_makes_checkouts_of_different_times_build_one_image(tmp_path: Path) -> None:
    digests = {}
    for checkout, mtime in (("first", 1_700_000_000), ("second", 1_750_000_000)):
        rootfs = tmp_path / checkout / "rootfs"  # one name: it is in the layer's history
        (rootfs / "bin").mkdir(parents=True)
        (rootfs / "bin" / "hello").write_text("#!/bin/sh\necho hello\n")
        for path in (rootfs / "bin" / "hello", rootfs / "bin", rootfs):
            os.utime(path, (mtime, mtime))
        for epoch in ("", "1600000000"):
            out = tmp_path / f"{checkout}-{epoch or 'none'}.tar"
            result = subprocess.run(
                [str(BIN / "pysandbox"), "image", "build", str(rootfs), "-o", str(out)],
                capture_output=True, text=True, env={**os.environ, "SOURCE_DATE_EPOCH": epoch}, timeout=120,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            digests[(checkout, epoch)] = result.stdout.split()[-1]
    assert digests[("first", "1600000000")] == digests[("second", "1600000000")]
    assert digests[("first", "")] != digests[("second", "")]  # without it, the times are kept
    report = json.loads(
        run("pysandbox", "image", "inspect", str(tmp_path / "first-1600000000.tar"), "--format", "json").stdout
    )
    assert report["created"] == "2020-09-13T12:26:40Z", report.get("created")
    bad = subprocess.run(
        [str(BIN / "pysandbox"), "image", "build", str(tmp_path / "first" / "rootfs"), "-o", str(tmp_path / "x.tar")],
        capture_output=True, text=True, env={**os.environ, "SOURCE_DATE_EPOCH": "yesterday"}, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 125 and "SOURCE_DATE_EPOCH='yesterday': expected whole seconds" in bad.stderr
    assert not (tmp_path / "x.tar").exists()


def test_busybox_example_image_unpacks_to_a_runnable_root(busybox_image: Path, tmp_path: Path) -> None:
    result = run("pysandbox", "image", "unpack", str(busybox_image), str(tmp_path / "root"))
    assert result.returncode == 0, result.stderr
    echo = subprocess.run([str(tmp_path / "root/bin/busybox"), "echo", "hi"], capture_output=True, text=True)
    assert echo.stdout == "hi\n"
    assert os.readlink(tmp_path / "root/bin/sh") == "busybox"


def test_the_version_is_the_installed_distributions() -> None:
    """The distribution is `pysandbox-pyaudit` (the index's "pysandbox" is another project):
    the version the code states is pyproject's and the installed one, --version prints it,
    and the CI examples install it by that name."""
    import tomllib

    from pysbx.cli.kit import DISTRIBUTION

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == DISTRIBUTION and project["license"] == "Apache-2.0"
    from importlib.metadata import version

    from pysbx.cli.version import VERSION

    assert VERSION == project["version"] == version(DISTRIBUTION)  # the code's own, the file's, the installed
    for tool in ("pysandbox", "pyaudit"):
        shown = subprocess.run([BIN / tool, "--version"], capture_output=True, text=True).stdout
        assert shown == f"{tool} {project['version']}\n", shown
    for example in (ROOT / "examples" / "ci").glob("*.yml"):
        assert f"install {DISTRIBUTION}" in example.read_text(), example


def test_a_reference_two_entries_answer_to_is_refused_not_guessed(tmp_path: Path) -> None:
    """A lone tag `1.0` and `team/app:1.0` for two different images: IMAGE:team/app:1.0 could
    be either, so it is neither (the first in index.json would be the author's choice)."""
    from pysbx.images.writer import write_oci_layout

    one, two = image_of([T("one")]), image_of([T("two")])
    write_oci_layout(tmp_path / "lay", [("1.0", [one]), ("team/app:1.0", [two])])
    result = run("pysandbox", "image", "inspect", f"{tmp_path}/lay:team/app:1.0")
    assert result.returncode == 125 and "'team/app:1.0' names 2 different images" in result.stderr


def test_a_built_docker_archive_stores_layers_as_docker_save_does(tmp_path: Path) -> None:
    """Legacy layout: `<id>/layer.tar` holds a plain tar (dive reads nothing else), and its
    name is the digest of those bytes, the config's diff_id."""
    import hashlib
    import io
    import tarfile

    (tmp_path / "rootfs").mkdir()
    (tmp_path / "rootfs" / "hello").write_text("hi\n")
    out = tmp_path / "image.tar"
    assert (
        run(
            "pysandbox", "image", "build", str(tmp_path / "rootfs"), "-o", str(out), "--format", "docker-archive"
        ).returncode
        == 0
    )
    with tarfile.open(out) as archive:
        layers = [member for member in archive.getmembers() if member.name.endswith("/layer.tar")]
        assert len(layers) == 1
        data = archive.extractfile(layers[0]).read()  # type: ignore[union-attr]
    assert data[257:262] == b"ustar"  # a plain tar, not gzip data under a .tar name
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as layer:
        assert layer.getnames() == ["hello"]
    assert layers[0].name.split("/")[0] == hashlib.sha256(data).hexdigest()
