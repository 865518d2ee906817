"""`signing.match_reference`: what was signed must also name the image's reference (a
simple-signing docker-reference or an in-toto subject name), refused as a replay otherwise."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pysbx.images.image import Image, open_image
from pysbx.policies.diff import diff_policies
from pysbx.policies.loader import load_policy
from pysbx.policies.model import SigningPolicy
from pysbx.signing.keys import generate_key_pair, load_private_key
from pysbx.signing.payload import reference_is_signed
from pysbx.signing.sign import SignatureKind, sign_image, write_bundle_file
from pysbx.signing.verify import verify_image
from tests.imagekit import T, image_of, write_image


@pytest.mark.parametrize(
    ("signed", "reference", "vouches"),
    [
        ("example/app:1", "example/app:1", True),
        ("docker.io/example/app:1", "example/app:1", True),  # Docker's normalisation
        ("busybox", "docker.io/library/busybox:1.36", True),  # a repository vouches for its tags
        ("ghcr.io/acme/app", "ghcr.io/acme/app:2", True),
        ("example/app:1", "example/app:2", False),  # a tag only for itself
        ("example/app:1", "example/app", False),  # app is app:latest
        ("ghcr.io/acme/app", "ghcr.io/acme/app-debug:1", False),
        ("ghcr.io/acme/app", "docker.io/acme/app:1", False),  # another registry
        ("localhost:5000/app", "localhost:5000/app:1", True),  # a port is not a tag
        ("example/app@sha256:" + "a" * 64, "example/app@sha256:" + "a" * 64, True),
        ("example/app@sha256:" + "a" * 64, "example/app:1", False),
    ],
)
def test_which_signed_names_vouch_for_which_references(signed: str, reference: str, vouches: bool) -> None:
    assert reference_is_signed(signed, reference) is vouches


@pytest.fixture
def key(tmp_path: Path) -> Path:
    pair = generate_key_pair()
    (tmp_path / "k.key").write_bytes(pair.private_pem)
    (tmp_path / "k.pub").write_bytes(pair.public_pem)
    return tmp_path / "k"


def signed_archive(tmp_path: Path, key: Path, signed_reference: str, kind: SignatureKind = "message") -> Image:
    """A docker archive tagged example/app:1, signed (sidecar) as `signed_reference`."""
    image = open_image(write_image(image_of([T("app", data=b"hi\n")]), tmp_path, "docker-legacy"))
    signed = sign_image(image, load_private_key(key.with_suffix(".key")), kind, reference=signed_reference)
    write_bundle_file(signed, Path(image.source + ".sigstore.json"))
    return image


def policy(key: Path, match_reference: bool) -> SigningPolicy:
    return SigningPolicy(required=True, keys=(str(key.with_suffix(".pub")),), match_reference=match_reference)


@pytest.mark.parametrize("kind", ["message", "dsse"])
def test_a_signature_naming_the_image_is_accepted_when_the_policy_asks(
    tmp_path: Path, key: Path, kind: SignatureKind
) -> None:
    verdict = verify_image(signed_archive(tmp_path, key, "docker.io/example/app", kind), policy(key, True))
    assert verdict.verified, verdict.reason
    assert "the signed payload names reference example/app:1" in verdict.checked


@pytest.mark.parametrize("kind", ["message", "dsse"])
def test_a_signature_naming_another_reference_is_refused_as_a_replay(
    tmp_path: Path, key: Path, kind: SignatureKind
) -> None:
    verdict = verify_image(signed_archive(tmp_path, key, "example/app-debug:1", kind), policy(key, True))
    assert not verdict.verified and verdict.refusal == "replay"
    assert "'example/app-debug:1'" in (verdict.reason or "")


def test_without_the_policy_field_the_reference_is_not_checked(tmp_path: Path, key: Path) -> None:
    verdict = verify_image(signed_archive(tmp_path, key, "example/app-debug:1"), policy(key, False))
    assert verdict.verified, verdict.reason
    assert not any("reference" in item for item in verdict.checked)


def test_an_image_without_a_usable_name_is_refused_unless_the_caller_names_it(tmp_path: Path, key: Path) -> None:
    # An OCI layout's ref.name is a bare tag here ("1"): it names no repository to compare.
    image = open_image(write_image(image_of([T("app", data=b"hi\n")]), tmp_path, "oci-layout"))
    signed = sign_image(image, load_private_key(key.with_suffix(".key")), "message", reference="example/app:1")
    write_bundle_file(signed, tmp_path / "b.sigstore.json")
    refused = verify_image(image, policy(key, True), tmp_path / "b.sigstore.json")
    assert refused.refusal == "replay"
    accepted = verify_image(image, policy(key, True), tmp_path / "b.sigstore.json", reference="example/app:1")
    assert accepted.verified, accepted.reason


def test_the_policy_file_field_loads_and_turning_it_off_loosens(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("version: 1\nsigning:\n  required: true\n  match_reference: true\n")
    loaded = load_policy(tmp_path / "p.yaml").policy
    assert loaded.signing.match_reference is True
    looser = dataclasses.replace(loaded, signing=dataclasses.replace(loaded.signing, match_reference=False))
    changes = diff_policies(loaded, looser)
    assert [(c.path[-1], c.effect) for c in changes] == [("match_reference", "loosens")]
    assert SigningPolicy().match_reference is False


def test_verify_reference_option_refuses_another_name_with_exit_1(tmp_path: Path, key: Path) -> None:
    from typer.testing import CliRunner

    from pysbx.cli.signing_cmd import app

    image = signed_archive(tmp_path, key, "example/app:1")
    arguments = ["verify", image.source, "--key", str(key.with_suffix(".pub"))]
    assert CliRunner().invoke(app, [*arguments, "--reference", "docker.io/example/app:1"]).exit_code == 0
    refused = CliRunner().invoke(app, [*arguments, "--reference", "example/app:2"])
    assert refused.exit_code == 1 and "not 'example/app:2'" in refused.stderr
