"""`pysandbox conformance verify-bundle|sign-bundle`: the command line sigstore-conformance's
harness drives (its docs/cli_protocol.md), so the upstream suite can test our verifier.

The harness runs `ENTRYPOINT SUBCOMMAND ...` once per case; examples/conformance/pysandbox-conformance
is that entrypoint. Like `run`, this front end is plain argparse, reached before typer is imported
(sandbox/entry.py): a per-case process pays for verification, not for the CLI framework, which
is what lets a cold verification keep up with `sigstore verify`.

verify-bundle exits 0 verified, 1 refused, 2 bad input; sign-bundle 0 signed, 2 when it cannot
sign (it needs a network and an identity token). A usage error exits 2 (argparse's own)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pysbx.cli.exits import EXIT_BAD_INPUT

EXIT_REFUSED = 1

STAGING_HELP = "use the Sigstore staging instance instead of public-good production"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="pysandbox conformance",
        description="The sigstore-conformance client protocol, for the upstream test harness.",
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="{verify-bundle,sign-bundle}")
    verify = commands.add_parser("verify-bundle", help="verify a bundle for an artifact, offline")
    verify.add_argument("--staging", action="store_true", help=STAGING_HELP)
    verify.add_argument("--bundle", type=Path, required=True, help="the sigstore bundle to verify")
    verify.add_argument("--certificate-identity", help="the expected identity in the certificate's SAN")
    verify.add_argument("--certificate-oidc-issuer", help="the expected OIDC issuer of the certificate")
    verify.add_argument("--key", type=Path, help="a PEM public key, instead of an identity")
    verify.add_argument("--trusted-root", type=Path, help="a trusted_root.json; default: the public-good root")
    verify.add_argument("file_or_digest", metavar="FILE_OR_DIGEST", help="the artifact, or sha256:<hex> of it")
    sign = commands.add_parser("sign-bundle", help="sign an artifact keyless (needs a network)")
    sign.add_argument("--staging", action="store_true", help=STAGING_HELP)
    sign.add_argument("--in-toto", action="store_true", help="FILE is an in-toto Statement: sign it as DSSE")
    sign.add_argument("--identity-token", required=True, help="the OIDC identity token")
    sign.add_argument("--bundle", type=Path, required=True, help="where to write the bundle")
    sign.add_argument("--trusted-root", type=Path, help="the instance's trusted_root.json (with --signing-config)")
    sign.add_argument("--signing-config", type=Path, help="the instance's signing config (service URLs)")
    sign.add_argument("file", metavar="FILE", type=Path, help="the artifact to sign")
    return top


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.command == "verify-bundle":
        return verify_bundle(args)
    return sign_bundle(args)


def _fail(message: str, code: int) -> int:
    """One line on stderr, as every pysandbox command reports an error."""
    print(f"pysandbox: error: {' '.join(message.split())}", file=sys.stderr)
    return code


def verify_bundle(args: argparse.Namespace) -> int:
    """Verify the bundle for FILE_OR_DIGEST offline: 0 verified, 1 refused, 2 bad input."""
    from pysbx.signing.conformance import read_artifact, verify_bundle_for_artifact
    from pysbx.signing.errors import VerificationError

    try:
        result = verify_bundle_for_artifact(
            args.bundle,
            read_artifact(args.file_or_digest),
            identity=args.certificate_identity,
            issuer=args.certificate_oidc_issuer,
            key=args.key,
            trusted_root=args.trusted_root or (_staging_root() if args.staging else None),
        )
    except VerificationError as error:
        return _fail(f"{error.kind}: {error.message}", EXIT_BAD_INPUT if error.kind == "bad-input" else EXIT_REFUSED)
    print(f"verified: signed by {result.signer}")
    return 0


def _staging_root() -> Path:
    """The staging trusted root sigstore-python carries, for `--staging` without a network."""
    import sigstore

    return Path(sigstore.__file__).parent / "_store" / "https%3A%2F%2Ftuf-repo-cdn.sigstage.dev" / "trusted_root.json"


def sign_bundle(args: argparse.Namespace) -> int:
    """Sign FILE keyless with sigstore-python and write the bundle: 0 signed, 2 when the token,
    the trust material or the network is missing (one line, never a hang: see keyless_sign)."""
    from pysbx.signing.errors import SigningError
    from pysbx.signing.keyless_sign import Instance, sign_keyless
    from pysbx.signing.sign import write_atomically

    instance = Instance(args.staging, args.trusted_root, args.signing_config)
    try:
        content = args.file.read_bytes()
        write_atomically(args.bundle, sign_keyless(content, args.identity_token, instance, in_toto=args.in_toto))
    except SigningError as error:
        return _fail(str(error), EXIT_BAD_INPUT)
    except OSError as error:
        return _fail(f"{error.filename}: {error.strerror}", EXIT_BAD_INPUT)
    print(f"signed {args.file}: {args.bundle}")
    return 0
