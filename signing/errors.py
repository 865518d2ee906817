"""The error type of the signing package, with a stable kind for each refusal."""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without typing's import: pyaudit's start names this module
if TYPE_CHECKING:
    from typing import Literal

    RefusalKind = Literal[
        "unsigned",  # no bundle was found
        "replay",  # a valid signature, but for another image's manifest digest
        "identity",  # a keyless signature by a signer (issuer, subject, claims) the policy does not allow
        "untrusted-key",  # a public-key signature by a key the policy does not name
        "malformed",  # the bundle cannot be parsed or lacks what its kind needs
        "signature",  # the signature does not verify over what the bundle says was signed
        "content",  # the signature verifies, but a blob under the signed manifest does not match it
        "untrusted-root",  # the certificate chain, log or timestamps do not lead to the trusted root
        "bad-input",  # a key, trust root or policy file that cannot be used at all
    ]


class VerificationError(Exception):
    """A signature that does not verify, as one sentence a person can act on; `kind` says
    which refusal it is, for scripts and for the exit code."""

    def __init__(self, kind: RefusalKind, message: str) -> None:
        super().__init__(message)
        self.kind: RefusalKind = kind
        self.message = message


class SigningError(Exception):
    """Keyless signing could not be done: no usable token, trust material or network; the
    message is one sentence a person can act on."""
