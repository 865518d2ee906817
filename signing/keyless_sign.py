"""Keyless signing through sigstore-python's Signer: an OIDC identity token is exchanged with
Fulcio for a short-lived certificate, the signature is logged in Rekor (and timestamped where
the instance has a TSA), and the result is a sigstore bundle any sigstore verifier accepts.

Unlike everything else in `signing/`, this needs a network: Fulcio, Rekor and (without
`--trusted-root` and `--signing-config`) the instance's TUF repository. sigstore-python sets no
timeout on its Fulcio and Rekor requests, so the whole exchange runs under a deadline: a
machine without a route fails in seconds, one behind a black hole fails at the deadline,
never hangs. sigstore-python is imported here only."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from pysbx.signing.errors import SigningError

if TYPE_CHECKING:
    from sigstore.models import ClientTrustConfig

    from pysbx.images.image import Image
    from pysbx.signing.sign import SignatureKind, SignedBundle

TOKEN_ENVIRONMENT = "SIGSTORE_ID_TOKEN"
NETWORK_DEADLINE_SECONDS = 120


@dataclass(frozen=True)
class Instance:
    """Which Sigstore instance signs: public-good production (default) or staging, or a
    private one described by a trusted root and a signing config (both files)."""

    staging: bool = False
    trusted_root: Path | None = None
    signing_config: Path | None = None


def identity_token(explicit: str | None) -> str:
    """The OIDC token from `--identity-token`, else $SIGSTORE_ID_TOKEN; there is no
    interactive browser flow (a sandbox gate runs in CI, where the CI provider issues one)."""
    token = explicit or os.environ.get(TOKEN_ENVIRONMENT, "")
    if not token.strip():
        raise SigningError(
            f"keyless signing needs an OIDC identity token: pass --identity-token or set {TOKEN_ENVIRONMENT}"
        )
    return token.strip()


@contextmanager
def network_deadline(seconds: float) -> Iterator[None]:
    """Raise SigningError in the main thread when the network exchange outlasts `seconds`
    (SIGALRM: the requests sigstore-python makes have no timeout of their own). Main thread
    only, as signal handlers are; elsewhere the call fails at once rather than risk a hang."""

    def expired(signum: int, frame: FrameType | None) -> None:
        raise SigningError(f"keyless signing did not finish within {seconds:g} s (is the Sigstore instance reachable?)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _trust_config(instance: Instance) -> ClientTrustConfig:
    """The instance's trust root and signing config: from the two files when given (no TUF,
    so a private instance works without the public repositories), else from TUF."""
    from sigstore.models import ClientTrustConfig
    from sigstore_models.trustroot import v1 as trustroot_v1

    if instance.signing_config is None:
        if instance.trusted_root is not None:
            raise SigningError("--trusted-root for signing also needs --signing-config (the instance's service URLs)")
        return ClientTrustConfig.staging() if instance.staging else ClientTrustConfig.production()
    root = instance.trusted_root
    if root is None:
        base = (
            ClientTrustConfig.staging(offline=True) if instance.staging else ClientTrustConfig.production(offline=True)
        )
        root_json = base.trusted_root._inner.to_json()
    else:
        root_json = _read(root, "trusted root")
    inner = trustroot_v1.ClientTrustConfig(
        media_type=ClientTrustConfig.ClientTrustConfigType.CONFIG_0_1.value,
        trusted_root=trustroot_v1.TrustedRoot.from_json(root_json),
        signing_config=trustroot_v1.SigningConfig.from_json(_read(instance.signing_config, "signing config")),
    )
    return ClientTrustConfig(inner)


def _read(path: Path, what: str) -> str:
    """A trust file's text; network errors are OSErrors too (requests), so files are read apart."""
    try:
        return path.read_text()
    except OSError as error:
        raise SigningError(f"{path}: cannot read the {what}: {error.strerror}") from None


def sign_keyless(
    content: bytes,
    token: str,
    instance: Instance,
    *,
    in_toto: bool = False,
    deadline: float = NETWORK_DEADLINE_SECONDS,
) -> bytes:
    """Sign `content` keyless and return the bundle (JSON bytes): a DSSE envelope when
    `content` is an in-toto Statement (`in_toto`), else a message signature over it."""
    from sigstore.dsse import Statement
    from sigstore.oidc import IdentityToken
    from sigstore.sign import SigningContext

    try:
        identity = IdentityToken(token)
        statement = Statement(content) if in_toto else None
        with network_deadline(deadline):
            context = SigningContext.from_trust_config(_trust_config(instance))
            with context.signer(identity, cache=False) as signer:
                bundle = signer.sign_dsse(statement) if statement is not None else signer.sign_artifact(content)
    except SigningError:
        raise
    except Exception as error:  # sigstore, requests and pydantic each raise their own types
        raise SigningError(f"keyless signing failed: {_one_line(error)}") from None
    return bundle.to_json().encode()


def sign_image_keyless(
    image: Image, token: str, instance: Instance, kind: SignatureKind = "dsse", reference: str | None = None
) -> SignedBundle:
    """Sign `image`'s manifest digest keyless, in the same two shapes as a key signature (a
    DSSE in-toto Statement, or a message signature over a simple-signing payload), so it is
    stored and found the same way."""
    from pysbx.signing.payload import intoto_statement, simple_signing_payload
    from pysbx.signing.sign import SignedBundle, image_reference

    reference = reference or image_reference(image)
    digest = str(image.manifest_digest)
    if kind == "dsse":
        statement = intoto_statement(digest, reference)
        return SignedBundle(sign_keyless(statement, token, instance, in_toto=True), statement, kind)
    payload = simple_signing_payload(digest, reference)
    return SignedBundle(sign_keyless(payload, token, instance), payload, kind)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:400] or type(error).__name__
