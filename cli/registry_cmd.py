"""`pysandbox pull|push|login|logout`: images between the local store and a registry."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from pysbx.cli.imagearg import local_store
from pysbx.cli.kit import fail
from pysbx.images.errors import ImageError
from pysbx.sandbox.errors import EXIT_SETUP_FAILED, SandboxError

TLS_VERIFY = typer.Option(
    "--tls-verify/--no-tls-verify",
    help="Check the registry's certificate (off: also plain http where https cannot be spoken). "
    "A registry on this machine may always be plain http, as Docker allows.",
)
CA_FILE = typer.Option("--ca-file", help="Trust this CA certificate (PEM) for the registry.", metavar="PEM")


@contextmanager
def _registry_errors() -> Iterator[None]:
    try:
        yield
    except (ImageError, SandboxError) as error:
        fail("pysandbox", str(error).replace("\n", "; "), EXIT_SETUP_FAILED)
    except OSError as error:
        fail("pysandbox", f"{error.filename or 'the image store'}: {error.strerror or error}", EXIT_SETUP_FAILED)


def _client(registry: str, tls_verify: bool, ca_file: Path | None) -> Any:
    from pysbx.images.distribution import RegistryClient
    from pysbx.images.registryauth import credentials_for

    return RegistryClient(
        registry,
        tls_verify=tls_verify,
        ca_file=str(ca_file) if ca_file else None,
        credentials=credentials_for(registry),
    )


def pull(
    name: Annotated[str, typer.Argument(help="NAME[:TAG] or NAME@DIGEST, as Docker reads names.", metavar="NAME")],
    policy: Annotated[
        str | None,
        typer.Option(
            help="Store the image only if it verifies as this policy says (strict, a file).", metavar="POLICY"
        ),
    ] = None,
    platform: Annotated[str | None, typer.Option(help="From a multi-platform index (default linux/amd64).")] = None,
    all_platforms: Annotated[bool, typer.Option("--all-platforms", help="Every platform of an index.")] = False,
    tls_verify: Annotated[bool, TLS_VERIFY] = True,
    ca_file: Annotated[Path | None, CA_FILE] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the name pulled.")] = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Also write it, with its signatures, to a new OCI layout folder "
            "(for a machine without the registry: `load -i` it there).",
            metavar="DIR",
        ),
    ] = None,
) -> None:
    """Fetch an image and the signatures attached to it (OCI referrers, cosign's .sig tag)
    into the store, every blob verified against its digest as it streams; an interrupted
    pull resumes where it stopped. With --policy, an image that does not verify as the
    policy requires is not stored. Mirrors in registries.conf are tried first."""
    from pysbx.images.mirrors import sources_for
    from pysbx.images.platform import parse_platform
    from pysbx.images.pull import pull_from_sources
    from pysbx.images.registryname import parse_image_name
    from pysbx.images.summary import human_size

    with _registry_errors():
        wanted = parse_image_name(name)
        verify = _verification(policy) if policy is not None else None
        store = local_store()
        sources = sources_for(wanted)
        if not quiet:
            typer.echo(f"Pulling {wanted.familiar} from {', then '.join(s.label for s in sources)}", err=True)
        pulled, source = pull_from_sources(
            store, wanted, sources, lambda s: _client(s.registry, tls_verify and not s.insecure, ca_file),
            parse_platform(platform) if platform else None, verify, all_platforms,
        )  # fmt: skip
        if output is not None:
            from pysbx.images.saving import SaveFormat, save_images

            save_images(store, [wanted.full if wanted.tag else str(pulled.digest)], output, SaveFormat.oci_dir)
    if not quiet and source.mirror:
        typer.echo(f"Pulled from {source.label}", err=True)
    if not quiet:
        typer.echo(f"Digest: {pulled.digest}", err=True)
        if pulled.attached:
            typer.echo(f"Attached: {pulled.attached} signature(s) or attestation(s)", err=True)
        status = f"Downloaded {pulled.blobs_fetched} blob(s), {human_size(pulled.bytes_fetched)}"
        typer.echo(f"Status: {status if pulled.blobs_fetched else 'Image is up to date'}", err=True)
    typer.echo(wanted.full)


def _verification(policy: str) -> Any:
    """What pull asks of an image before it names it: the policy's signature, when the
    policy requires one (podman's policy.json `sigstoreSigned`)."""
    from pysbx.policies.errors import PolicyError
    from pysbx.policies.loader import load_policy
    from pysbx.signing.errors import VerificationError
    from pysbx.signing.verify import verify_image

    try:
        signing = load_policy(policy).policy.signing
    except PolicyError as error:
        raise ImageError(str(error)) from None
    if not signing.required:
        return None

    def verify(image: Any) -> str | None:
        try:
            verdict = verify_image(image, signing)
        except VerificationError as error:
            return error.message
        return None if verdict.verified else verdict.reason

    return verify


def push(
    image: Annotated[str, typer.Argument(help="A stored image.", metavar="IMAGE")],
    destination: Annotated[
        str | None, typer.Argument(help="Where to push it (default: IMAGE's own name).", metavar="[DESTINATION]")
    ] = None,
    tls_verify: Annotated[bool, TLS_VERIFY] = True,
    ca_file: Annotated[Path | None, CA_FILE] = None,
) -> None:
    """Push a stored image and the signatures attached to it; every manifest goes byte for
    byte, so the digest (what signatures sign) is the same in the registry."""
    from pysbx.cli.store_cmd import existing_store
    from pysbx.images.push import push_image
    from pysbx.images.registryname import parse_image_name

    with _registry_errors():
        store = existing_store()
        stored = store.find(image)
        if stored is None:
            raise ImageError(f"{image}: no such image in the store")
        target = parse_image_name(destination or stored.name or image)
        with _client(target.registry, tls_verify, ca_file) as client:
            pushed = push_image(store, stored, target, client)
    typer.echo(f"{target.full}: digest: {pushed.digest} ({pushed.attached} attached)")


def login(
    registry: Annotated[str, typer.Argument(help="host[:port]", metavar="REGISTRY")],
    username: Annotated[str, typer.Option("--username", "-u", help="The user name.")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin.")] = False,
    tls_verify: Annotated[bool, TLS_VERIFY] = True,
    ca_file: Annotated[Path | None, CA_FILE] = None,
) -> None:
    """Check the credentials with the registry, then keep them in Docker's config file
    (~/.docker/config.json, mode 0600), where docker, podman and skopeo find them too."""
    from pysbx.images.registryauth import Credentials
    from pysbx.images.registryauth import login as save_login

    password = sys.stdin.readline().rstrip("\n") if password_stdin else typer.prompt("Password", hide_input=True)
    with _registry_errors():
        from pysbx.images.distribution import RegistryClient

        with RegistryClient(
            registry, tls_verify=tls_verify, ca_file=str(ca_file) if ca_file else None,
            credentials=Credentials(username, password),
        ) as client:  # fmt: skip
            client.ping()
        path = save_login(registry, username, password)
    typer.echo(f"Login Succeeded (saved in {path})")


def logout(registry: Annotated[str, typer.Argument(help="host[:port]", metavar="REGISTRY")]) -> None:
    """Forget the credentials saved for REGISTRY."""
    from pysbx.images.registryauth import logout as forget

    with _registry_errors():
        removed = forget(registry)
    typer.echo(f"Removing login credentials for {registry}" if removed else f"Not logged in to {registry}")
