"""`pysandbox keygen|sign|verify` through the typer sub-app: exit 0 verified, 1 refused, 2 bad input."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from pysbx.cli.signing_cmd import app
from tests.imagekit import T, image_of, write_image

runner = CliRunner()


def test_keygen_sign_and_verify_an_oci_layout_end_to_end(tmp_path: Path) -> None:
    image = write_image(image_of([T("app", data=b"hi\n")]), tmp_path, "oci-layout")
    made = runner.invoke(app, ["keygen", "--no-password", "--output-key-prefix", str(tmp_path / "cosign")])
    assert made.exit_code == 0, made.output
    assert (tmp_path / "cosign.key").stat().st_mode & 0o777 == 0o600
    signed = runner.invoke(app, ["sign", image, "--key", str(tmp_path / "cosign.key")])
    assert signed.exit_code == 0, signed.output
    assert "referrer sha256:" in signed.output
    verified = runner.invoke(app, ["verify", image + ":1", "--key", str(tmp_path / "cosign.pub"), "--format", "json"])
    assert verified.exit_code == 0, verified.output
    verdict = json.loads(verified.stdout)
    assert verdict["verified"] and verdict["signer"].startswith("key sha256:")
    assert verdict["content_checked"] is True and verdict["content_blobs"] == 2


def test_verify_refuses_with_exit_1_and_one_line(tmp_path: Path) -> None:
    image = write_image(image_of([T("app", data=b"hi\n")]), tmp_path, "docker-legacy")
    runner.invoke(app, ["keygen", "--no-password", "--output-key-prefix", str(tmp_path / "k")])
    result = runner.invoke(app, ["verify", image, "--key", str(tmp_path / "k.pub")])
    assert result.exit_code == 1
    assert result.stderr.startswith("refused sha256:") and result.stderr.count("\n") == 1


def test_sign_writes_a_sidecar_beside_an_archive_and_text_verify_names_the_signer(tmp_path: Path) -> None:
    image = write_image(image_of([T("app", data=b"hi\n")]), tmp_path, "docker-25")
    runner.invoke(app, ["keygen", "--no-password", "--output-key-prefix", str(tmp_path / "k")])
    assert runner.invoke(app, ["sign", image, "--key", str(tmp_path / "k.key")]).exit_code == 0
    assert Path(image + ".sigstore.json").is_file()
    result = runner.invoke(app, ["verify", image, "--key", str(tmp_path / "k.pub")])
    assert result.exit_code == 0
    assert "signer: key sha256:" in result.stdout and "time source:" in result.stdout
    assert result.stdout.startswith("verified signature and content (2 blobs, ")


def test_signature_only_says_in_its_first_line_that_content_was_not_checked(tmp_path: Path) -> None:
    image = write_image(image_of([T("app", data=b"hi\n")]), tmp_path, "oci-archive")
    runner.invoke(app, ["keygen", "--no-password", "--output-key-prefix", str(tmp_path / "k")])
    assert runner.invoke(app, ["sign", image, "--key", str(tmp_path / "k.key")]).exit_code == 0
    result = runner.invoke(app, ["verify", image, "--key", str(tmp_path / "k.pub"), "--signature-only"])
    assert result.exit_code == 0
    assert result.stdout.startswith("verified signature only (content not checked: --signature-only): sha256:")


def test_bad_input_exits_2(tmp_path: Path) -> None:
    image = write_image(image_of([T("app", data=b"hi\n")]), tmp_path, "oci-archive")
    (tmp_path / "junk.pub").write_text("junk")
    assert runner.invoke(app, ["verify", str(tmp_path / "missing.tar")]).exit_code == 2
    assert runner.invoke(app, ["verify", image, "--key", str(tmp_path / "junk.pub")]).exit_code == 2
    assert runner.invoke(app, ["verify", image, "--policy", str(tmp_path / "nope.yaml")]).exit_code == 2
    assert runner.invoke(app, ["verify", image, "--bundle", str(tmp_path / "nope.json")]).exit_code == 2


def test_keygen_does_not_overwrite_a_key(tmp_path: Path) -> None:
    assert runner.invoke(app, ["keygen", "--no-password", "--output-key-prefix", str(tmp_path / "k")]).exit_code == 0
    assert runner.invoke(app, ["keygen", "--no-password", "--output-key-prefix", str(tmp_path / "k")]).exit_code == 2
