"""Signing an image offline with a private key, in formats cosign's verify accepts:

- a DSSE envelope over an in-toto Statement (predicate type `https://sigstore.dev/cosign/sign/v1`,
  subject = the manifest digest): what cosign v3 writes, self-contained, the default;
- a message signature over a simple-signing payload (the payload travels beside the bundle).

The bundle is written to a file, or attached to an OCI layout folder as an OCI 1.1 referrer.
Keyless signing (`--keyless`) needs sigstore-python's signer, a network and an identity token;
it is not part of this module."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pysbx.images import mediatypes
from pysbx.images.digest import digest_bytes
from pysbx.images.errors import ImageError
from pysbx.images.image import Image, blob_path, split_reference
from pysbx.images.jsonfields import canonical_json
from pysbx.images.outfile import write_atomically as write_file_whole
from pysbx.images.store import read_document
from pysbx.signing.bundle import BUNDLE_V03_NEW, DsseEnvelope, MessageSignature, public_key_bundle
from pysbx.signing.keys import PrivateKey, key_hint, sign_bytes
from pysbx.signing.payload import (
    COSIGN_SIGN_PREDICATE,
    INTOTO_PAYLOAD_TYPE,
    SIMPLE_SIGNING_MEDIA_TYPE,
    intoto_statement,
    pre_authentication_encoding,
    simple_signing_payload,
)

SignatureKind = Literal["dsse", "message"]
EMPTY_CONFIG_TYPE = "application/vnd.oci.empty.v1+json"


@dataclass(frozen=True)
class SignedBundle:
    bundle: bytes
    payload: bytes  # the in-toto Statement (inside the bundle) or the simple-signing payload (beside it)
    kind: SignatureKind


def image_reference(image: Image) -> str:
    """The reference recorded in what is signed: the image's first name, else its digest."""
    return image.references[0] if image.references else str(image.manifest_digest)


def sign_image(
    image: Image, key: PrivateKey, kind: SignatureKind = "dsse", reference: str | None = None
) -> SignedBundle:
    reference = reference or image_reference(image)
    digest = str(image.manifest_digest)
    hint = key_hint(key.public_key())
    if kind == "dsse":
        statement = intoto_statement(digest, reference)
        signature = sign_bytes(key, pre_authentication_encoding(INTOTO_PAYLOAD_TYPE, statement))
        envelope = DsseEnvelope(INTOTO_PAYLOAD_TYPE, statement, (("", signature),))
        return SignedBundle(public_key_bundle(hint, envelope), statement, kind)
    payload = simple_signing_payload(digest, reference)
    message = MessageSignature("SHA2_256", hashlib.sha256(payload).digest(), sign_bytes(key, payload))
    return SignedBundle(public_key_bundle(hint, message), payload, kind)


def write_atomically(path: Path, data: bytes) -> None:
    """Write a bundle or an index whole (images.outfile), its folder made when missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file_whole(path, data)


def write_bundle_file(signed: SignedBundle, path: Path) -> list[Path]:
    """Write the bundle (and, for a message signature, its payload beside it); return the files."""
    from pysbx.signing.locate import payload_path_for

    write_atomically(path, signed.bundle)
    if signed.kind == "dsse":
        return [path]
    payload_path = payload_path_for(path)
    write_atomically(payload_path, signed.payload)
    return [path, payload_path]


def attach_referrer(image: Image, signed: SignedBundle, created: datetime | None = None) -> str:
    """Add the bundle to the image's OCI layout folder as an OCI 1.1 referrer and list it in
    index.json; return the referrer manifest's digest."""
    layout = _layout_folder(image)
    descriptors = [put_blob(layout, signed.bundle, BUNDLE_V03_NEW)]
    if signed.kind == "message":
        descriptors.append(put_blob(layout, signed.payload, SIMPLE_SIGNING_MEDIA_TYPE))
    stamp = (created or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    annotations = {"dev.sigstore.bundle.content": "dsse-envelope" if signed.kind == "dsse" else "message-signature"}
    if signed.kind == "dsse":
        annotations["dev.sigstore.bundle.predicateType"] = COSIGN_SIGN_PREDICATE
    annotations["org.opencontainers.image.created"] = stamp
    manifest = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "artifactType": BUNDLE_V03_NEW,
        "config": put_blob(layout, b"{}", EMPTY_CONFIG_TYPE),
        "layers": descriptors,
        "subject": {
            "mediaType": image.manifest_media_type,
            "digest": str(image.manifest_digest),
            "size": len(image.manifest_bytes),
        },
        "annotations": annotations,
    }
    manifest_bytes = canonical_json(manifest)
    descriptor = put_blob(layout, manifest_bytes, mediatypes.OCI_MANIFEST)
    descriptor["artifactType"] = BUNDLE_V03_NEW
    index = json.loads(read_document(image.store, "index.json"))
    index.setdefault("manifests", []).append(descriptor)
    write_atomically(layout / "index.json", canonical_json(index))
    return str(descriptor["digest"])


def attach_signature_tag(image: Image, signed: SignedBundle) -> str:
    """Add a message signature to the image's cosign `sha256-<hex>.sig` tag in its OCI layout
    folder, as cosign did before referrers: a simple-signing layer carrying the signature in an
    annotation, beside the layers already under the tag. Return the tag's new manifest digest."""
    from pysbx.signing.bundle import parse_bundle
    from pysbx.signing.cosign_tag import REF_NAME_ANNOTATION, SIGNATURE_ANNOTATION, names_tag, signature_tag
    from pysbx.signing.locate import signature_tag_layers

    content = parse_bundle(signed.bundle).content
    if signed.kind != "message" or not isinstance(content, MessageSignature):
        raise ImageError(
            "a cosign signature tag holds simple-signing message signatures: sign with --signature-format message"
        )
    layout = _layout_folder(image)
    tag = signature_tag(str(image.manifest_digest))
    layer = put_blob(layout, signed.payload, SIMPLE_SIGNING_MEDIA_TYPE)
    layer["annotations"] = {SIGNATURE_ANNOTATION: base64.b64encode(content.signature).decode()}
    layers = [*signature_tag_layers(image), layer]
    config = {
        "architecture": "",
        "os": "",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [item["digest"] for item in layers]},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "config": put_blob(layout, canonical_json(config), mediatypes.OCI_CONFIG),
        "layers": layers,
    }
    descriptor = put_blob(layout, canonical_json(manifest), mediatypes.OCI_MANIFEST)
    descriptor["annotations"] = {REF_NAME_ANNOTATION: tag}
    index = json.loads(read_document(image.store, "index.json"))
    kept = [
        e
        for e in index.get("manifests", [])
        if not names_tag((e.get("annotations") or {}).get(REF_NAME_ANNOTATION), tag)
    ]
    index["manifests"] = [*kept, descriptor]
    write_atomically(layout / "index.json", canonical_json(index))
    return str(descriptor["digest"])


def _layout_folder(image: Image) -> Path:
    layout, _ = split_reference(image.source)
    if not layout.is_dir() or not (layout / "index.json").is_file():
        raise ImageError(f"{layout}: only an OCI layout folder can hold a signature; write a bundle file instead")
    return layout


def put_blob(layout: Path, data: bytes, media_type: str) -> dict[str, Any]:
    """Store `data` under its digest in an OCI layout folder (once) and return its descriptor."""
    digest = digest_bytes(data)
    path = layout / blob_path(digest)
    if not path.is_file():
        write_atomically(path, data)
    return {"mediaType": media_type, "digest": str(digest), "size": len(data)}
