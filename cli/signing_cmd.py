"""`pysandbox keygen|sign|verify`: cosign-style keys, signing (offline with a key, or keyless
through sigstore-python), and the verification gate.

sign exits 0 signed, 2 when it cannot sign (bad arguments, no token, no network); verify exits
0 verified, 1 refused (a signature that does not verify, or content that does not match it),
2 bad input (an unreadable image, policy, key or bundle)."""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pysbx.cli.exits import EXIT_BAD_INPUT
from pysbx.cli.kit import OutputFormat, fail

if TYPE_CHECKING:
    from pysbx.images.image import Image
    from pysbx.signing.keyless_sign import Instance
    from pysbx.signing.sign import SignatureKind, SignedBundle

EXIT_REFUSED = 1

app = typer.Typer(
    help="Generate keys, sign images offline, and verify image signatures.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

IMAGE_HELP = "A docker save archive, an OCI archive or an OCI layout folder, optionally followed by :REF."


class SignatureFormat(StrEnum):
    dsse = "dsse"
    message = "message"


def _password() -> bytes | None:
    """$COSIGN_PASSWORD as cosign reads it: set (even empty) it is the password; unset, None."""
    value = os.environ.get("COSIGN_PASSWORD")
    return None if value is None else value.encode()


def _new_key_password(no_password: bool) -> bytes | None:
    """The password a new private key is encrypted with, as cosign asks for it: $COSIGN_PASSWORD,
    else typed twice on a terminal. None (an unencrypted key) only when asked for explicitly:
    --no-password, or COSIGN_PASSWORD set to the empty string."""
    if no_password:
        return None
    given = _password()
    if given is not None:
        return given or None
    if not sys.stdin.isatty():
        fail(
            "pysandbox",
            "no password for the private key: set COSIGN_PASSWORD, run on a terminal to type one, "
            "or pass --no-password for an unencrypted key",
            EXIT_BAD_INPUT,
        )
    import getpass

    first = getpass.getpass("Enter password for private key: ")
    if first != getpass.getpass("Enter password for private key again: "):
        fail("pysandbox", "the passwords do not match; no key written", EXIT_BAD_INPUT)
    if not first:
        fail("pysandbox", "an empty password: pass --no-password for an unencrypted key", EXIT_BAD_INPUT)
    return first.encode()


def _key_password(path: Path) -> bytes | None:
    """The password of the private key at `path`: $COSIGN_PASSWORD, else typed on a terminal
    when the key is encrypted, else None (loading an encrypted key then says what is missing)."""
    given = _password()
    if given is not None or not sys.stdin.isatty():
        return given or None  # an empty COSIGN_PASSWORD: the key is not encrypted
    try:
        encrypted = b"ENCRYPTED" in path.read_bytes()[:4096]
    except OSError:
        return None  # load_private_key says what is wrong with the file
    if not encrypted:
        return None
    import getpass

    return getpass.getpass(f"Enter password for private key {path}: ").encode()


@app.command()
def keygen(
    output_key_prefix: Annotated[
        Path, typer.Option("--output-key-prefix", help="Writes PREFIX.key (private) and PREFIX.pub.", metavar="PREFIX")
    ] = Path("cosign"),
    no_password: Annotated[
        bool, typer.Option("--no-password", help="Write the private key unencrypted (asked for explicitly).")
    ] = False,
) -> None:
    """Generate an ECDSA P-256 key pair: PREFIX.key (PKCS#8 PEM, mode 0600, encrypted with
    $COSIGN_PASSWORD, or a password typed twice on a terminal, as cosign does) and PREFIX.pub
    (the public key, for policies and cosign verify --key)."""
    from pysbx.signing.keys import generate_key_pair

    private_path = output_key_prefix.with_name(output_key_prefix.name + ".key")
    public_path = output_key_prefix.with_name(output_key_prefix.name + ".pub")
    for path in (private_path, public_path):
        if path.exists():
            fail("pysandbox", f"{path} exists; not overwriting a key", EXIT_BAD_INPUT)
    pair = generate_key_pair(_new_key_password(no_password))
    try:
        descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(pair.private_pem)
        public_path.write_bytes(pair.public_pem)
    except OSError as error:
        fail("pysandbox", f"cannot write the key pair: {error.strerror} ({error.filename})", EXIT_BAD_INPUT)
    typer.echo(f"private key written to {private_path}\npublic key written to {public_path}")


@app.command()
def sign(
    image: Annotated[str, typer.Argument(help=IMAGE_HELP, metavar="IMAGE")],
    key: Annotated[
        Path | None,
        typer.Option("--key", help="The private key (PEM); its password from $COSIGN_PASSWORD.", metavar="FILE"),
    ] = None,
    keyless: Annotated[
        bool,
        typer.Option(
            "--keyless",
            help="Sign with a short-lived Fulcio certificate for your OIDC identity, logged in Rekor "
            "(sigstore-python; needs a network and an identity token).",
        ),
    ] = False,
    identity_token: Annotated[
        str | None,
        typer.Option(
            "--identity-token", help="With --keyless: the OIDC token; default: $SIGSTORE_ID_TOKEN.", metavar="TOKEN"
        ),
    ] = None,
    staging: Annotated[
        bool, typer.Option("--staging", help="With --keyless: use the Sigstore staging instance.")
    ] = False,
    trusted_root: Annotated[
        Path | None,
        typer.Option("--trusted-root", help="With --keyless: a private instance's trusted_root.json.", metavar="FILE"),
    ] = None,
    signing_config: Annotated[
        Path | None,
        typer.Option(
            "--signing-config",
            help="With --keyless: a private instance's signing config (service URLs).",
            metavar="FILE",
        ),
    ] = None,
    bundle_out: Annotated[
        Path | None,
        typer.Option(
            "--bundle-out",
            help="Write the bundle here; default: a referrer in an OCI layout folder, "
            "else the sidecar IMAGE.sigstore.json.",
            metavar="FILE",
        ),
    ] = None,
    signature_format: Annotated[
        SignatureFormat,
        typer.Option(
            "--signature-format", help="dsse (an in-toto Statement, as cosign v3) or message (simple signing)."
        ),
    ] = SignatureFormat.dsse,
    cosign_tag: Annotated[
        bool,
        typer.Option(
            "--cosign-tag",
            help="With --key, in an OCI layout folder: store the signature under cosign's legacy "
            "sha256-<hex>.sig tag (simple signing, as cosign did before referrers) instead of a referrer.",
        ),
    ] = False,
) -> None:
    """Sign IMAGE's manifest digest, as a sigstore bundle: offline with --key KEY (public-key
    material, no transparency-log entry), or --keyless through sigstore-python (a Fulcio
    certificate for the identity in --identity-token or $SIGSTORE_ID_TOKEN, a Rekor entry; needs
    a network, fails within two minutes without one). Exit 0 signed, 2 when it cannot sign."""
    from pysbx.cli.imagearg import open_image_argument
    from pysbx.images import ImageError
    from pysbx.signing.errors import SigningError, VerificationError
    from pysbx.signing.keyless_sign import Instance

    if (key is None) == (not keyless):
        fail("pysandbox", "name either --key KEY or --keyless", EXIT_BAD_INPUT)
    if keyless and cosign_tag:
        fail("pysandbox", "--cosign-tag stores key signatures; a keyless signature is a bundle", EXIT_BAD_INPUT)
    kind: SignatureKind = "message" if signature_format is SignatureFormat.message or cosign_tag else "dsse"
    try:
        opened = open_image_argument(image)
        if key is not None:
            signed = _sign_with_key(opened, key, kind)
        else:
            signed = _sign_keyless(opened, identity_token, Instance(staging, trusted_root, signing_config), kind)
        where = _store_signature(opened, signed, bundle_out, cosign_tag)
    except (ImageError, VerificationError, SigningError) as error:
        fail("pysandbox", str(error), EXIT_BAD_INPUT)
    except OSError as error:
        fail("pysandbox", f"cannot write the signature: {error.strerror} ({error.filename})", EXIT_BAD_INPUT)
    typer.echo(f"signed {opened.manifest_digest}: {where}")


def _sign_with_key(image: Image, key: Path, kind: SignatureKind) -> SignedBundle:
    from pysbx.signing.keys import load_private_key
    from pysbx.signing.sign import sign_image

    return sign_image(image, load_private_key(key, _key_password(key)), kind)


def _sign_keyless(image: Image, token: str | None, instance: Instance, kind: SignatureKind) -> SignedBundle:
    """The token is looked up before the image is hashed into a payload, so a missing one
    fails at once and names where it is looked for."""
    from pysbx.signing.keyless_sign import identity_token, sign_image_keyless

    return sign_image_keyless(image, identity_token(token), instance, kind)


def _store_signature(image: Image, signed: SignedBundle, bundle_out: Path | None, cosign_tag: bool) -> str:
    """Where the signature goes: the cosign tag, a referrer in an OCI layout folder, or a file."""
    from pysbx.images.image import STORED_LAYOUT, split_reference
    from pysbx.images.localstore import LocalStore
    from pysbx.signing.locate import sidecar_path
    from pysbx.signing.sign import attach_referrer, attach_signature_tag, write_bundle_file

    layout, _ = split_reference(image.source)
    if image.layout == STORED_LAYOUT and bundle_out is None:
        with LocalStore(layout).editing():
            if cosign_tag:
                return f"manifest {attach_signature_tag(image, signed)} under cosign's signature tag in the store"
            return f"referrer {attach_referrer(image, signed)} in the store"
    if cosign_tag:
        return f"manifest {attach_signature_tag(image, signed)} under cosign's signature tag in {layout}"
    if bundle_out is None and layout.is_dir():
        return f"referrer {attach_referrer(image, signed)} in {layout}"
    return ", ".join(str(p) for p in write_bundle_file(signed, bundle_out or sidecar_path(image)))


@app.command()
def verify(
    image: Annotated[str, typer.Argument(help=IMAGE_HELP, metavar="IMAGE")],
    policy: Annotated[
        str | None,
        typer.Option(
            "--policy", help="A built-in policy name or a policy file; default: no policy keys.", metavar="POLICY"
        ),
    ] = None,
    bundle: Annotated[
        Path | None, typer.Option("--bundle", help="The bundle file (else sidecar, then referrers).", metavar="FILE")
    ] = None,
    key: Annotated[
        list[Path] | None, typer.Option("--key", help="Also trust this public key (PEM).", metavar="FILE")
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(
            "--reference",
            help="The name IMAGE goes by (ghcr.io/acme/app:1): what was signed must name it. Without it, "
            "the policy's match_reference holds the signature to the image's own names.",
            metavar="NAME",
        ),
    ] = None,
    signature_only: Annotated[
        bool,
        typer.Option(
            "--signature-only",
            help="Verify the signature over the manifest digest and stop: do not read the config and "
            "layer blobs to check them against it (the verdict says content was not checked).",
        ),
    ] = False,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="text for people, json for scripts.")
    ] = OutputFormat.text,
) -> None:
    """Verify IMAGE's signature against the policy's keys, identities and trust root, offline,
    then its content: every blob under the signed manifest is read and must match its digest
    and size, and each layer its diff_id (skipped with --signature-only).
    Exit 0 verified, 1 refused, 2 bad input."""
    from pysbx.cli.imagearg import open_image_argument
    from pysbx.images import ImageError
    from pysbx.policies.errors import PolicyError
    from pysbx.policies.loader import load_policy
    from pysbx.policies.model import SigningPolicy
    from pysbx.signing.errors import VerificationError
    from pysbx.signing.verify import content_not_checked, verify_image

    try:
        signing_policy = load_policy(policy).policy.signing if policy else SigningPolicy()
        opened = open_image_argument(image)
        verdict = verify_image(
            opened,
            signing_policy,
            bundle,
            extra_keys=key or (),
            reference=reference,
            check_content=not signature_only,
        )
        if signature_only:
            verdict = content_not_checked(verdict, "--signature-only")
    except (ImageError, PolicyError, VerificationError) as error:
        fail("pysandbox", " ".join(str(error).split()), EXIT_BAD_INPUT)
    if output_format is OutputFormat.json:
        typer.echo(json.dumps(verdict.to_json(), indent=2))
    elif verdict.verified:
        if verdict.content_checked:
            what = f"signature and content ({verdict.content_blobs} blobs, {verdict.content_bytes} bytes)"
        else:
            what = "signature only (content not checked: --signature-only)"
        typer.echo(f"verified {what}: {verdict.manifest_digest}")
        typer.echo(f"  signer: {verdict.signer}")
        typer.echo(f"  time source: {verdict.time_source}")
        typer.echo(f"  bundle: {verdict.bundle_origin}")
        for item in verdict.checked:
            typer.echo(f"  checked: {item}")
        for item in verdict.not_checked:
            typer.echo(f"  not checked: {item}")
    else:
        typer.echo(f"refused {verdict.manifest_digest}: {verdict.reason}", err=True)
    if not verdict.verified:
        raise typer.Exit(EXIT_REFUSED)
