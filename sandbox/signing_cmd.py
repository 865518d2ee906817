"""`pysandbox keygen|sign|verify`: cosign-style keys, offline signing, and the verification gate.

verify exits 0 verified, 1 refused, 2 bad input (an unreadable image, policy, key or bundle)."""

from __future__ import annotations

import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from sandbox.clikit import OutputFormat, fail

EXIT_REFUSED = 1
EXIT_BAD_INPUT = 2

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
    value = os.environ.get("COSIGN_PASSWORD")
    return value.encode() if value else None


@app.command()
def keygen(
    output_key_prefix: Annotated[
        Path, typer.Option("--output-key-prefix", help="Writes PREFIX.key (private) and PREFIX.pub.")
    ] = Path("cosign"),
) -> None:
    """Generate an ECDSA P-256 key pair: PREFIX.key (PKCS#8 PEM, encrypted with $COSIGN_PASSWORD
    when it is set, mode 0600) and PREFIX.pub (the public key, for policies and cosign verify --key)."""
    from signing.keys import generate_key_pair

    private_path = output_key_prefix.with_name(output_key_prefix.name + ".key")
    public_path = output_key_prefix.with_name(output_key_prefix.name + ".pub")
    for path in (private_path, public_path):
        if path.exists():
            fail("pysandbox", f"{path} exists; not overwriting a key", EXIT_BAD_INPUT)
    pair = generate_key_pair(_password())
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
    image: Annotated[str, typer.Argument(help=IMAGE_HELP)],
    key: Annotated[Path, typer.Option("--key", help="The private key (PEM); its password from $COSIGN_PASSWORD.")],
    bundle_out: Annotated[
        Path | None,
        typer.Option(
            "--bundle-out",
            help="Write the bundle here; default: a referrer in an OCI layout folder, "
            "else the sidecar IMAGE.sigstore.json.",
        ),
    ] = None,
    signature_format: Annotated[
        SignatureFormat,
        typer.Option(
            "--signature-format", help="dsse (an in-toto Statement, as cosign v3) or message (simple signing)."
        ),
    ] = SignatureFormat.dsse,
) -> None:
    """Sign IMAGE's manifest digest offline with KEY. The signature is written as a sigstore
    bundle (v0.3, public-key material, no transparency-log entry)."""
    from images import ImageError, open_image
    from images.image import split_reference
    from signing.errors import VerificationError
    from signing.keys import load_private_key
    from signing.locate import sidecar_path
    from signing.sign import SignatureKind, attach_referrer, sign_image, write_bundle_file

    try:
        opened = open_image(image)
        kind: SignatureKind = "message" if signature_format is SignatureFormat.message else "dsse"
        signed = sign_image(opened, load_private_key(key, _password()), kind)
        layout, _ = split_reference(image)
        if bundle_out is None and layout.is_dir():
            where = f"referrer {attach_referrer(opened, signed)} in {layout}"
        else:
            written = write_bundle_file(signed, bundle_out or sidecar_path(opened))
            where = ", ".join(str(p) for p in written)
    except (ImageError, VerificationError) as error:
        fail("pysandbox", str(error), EXIT_BAD_INPUT)
    except OSError as error:
        fail("pysandbox", f"cannot write the signature: {error.strerror} ({error.filename})", EXIT_BAD_INPUT)
    typer.echo(f"signed {opened.manifest_digest}: {where}")


@app.command()
def verify(
    image: Annotated[str, typer.Argument(help=IMAGE_HELP)],
    policy: Annotated[
        str | None, typer.Option("--policy", help="A built-in policy name or a policy file; default: no policy keys.")
    ] = None,
    bundle: Annotated[
        Path | None, typer.Option("--bundle", help="The bundle file (else sidecar, then referrers).")
    ] = None,
    key: Annotated[list[Path] | None, typer.Option("--key", help="Also trust this public key (PEM).")] = None,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="text for people, json for scripts.")
    ] = OutputFormat.text,
) -> None:
    """Verify IMAGE's signature against the policy's keys, identities and trust root, offline.
    Exit 0 verified, 1 refused, 2 bad input."""
    from images import ImageError, open_image
    from policies.errors import PolicyError
    from policies.loader import load_policy
    from policies.model import SigningPolicy
    from signing.errors import VerificationError
    from signing.verify import verify_image

    try:
        signing_policy = load_policy(policy).policy.signing if policy else SigningPolicy()
        opened = open_image(image)
        verdict = verify_image(opened, signing_policy, bundle, extra_keys=key or ())
    except (ImageError, PolicyError, VerificationError) as error:
        fail("pysandbox", " ".join(str(error).split()), EXIT_BAD_INPUT)
    if output_format is OutputFormat.json:
        typer.echo(json.dumps(verdict.to_json(), indent=2))
    elif verdict.verified:
        typer.echo(f"verified {verdict.manifest_digest}")
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
