"""Signing and verifying images: sigstore bundles (keyless, through sigstore-python, offline)
and cosign-style public-key signatures (checked here with `cryptography`), where bundles are
found, and the verdict `pysandbox run` and `pyaudit` act on.

What is verified is always the image's manifest digest. Every blob under a manifest is checked
against its digest when `images/` reads it, so a verified manifest means verified content."""
