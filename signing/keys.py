"""Key pairs for cosign-style signatures: ECDSA P-256 with SHA-256 (what `cosign generate-key-pair`
makes), and, for verification only, Ed25519 and RSA (PKCS#1 v1.5 or PSS, SHA-256).

Keys are PEM: the public key as SubjectPublicKeyInfo (`cosign verify --key` reads it as is), the
private key as PKCS#8, encrypted when a password is given."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from pysbx.signing.errors import VerificationError

PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
_MAX_KEY_FILE = 64 * 1024


@dataclass(frozen=True)
class KeyPair:
    private_pem: bytes
    public_pem: bytes


@dataclass(frozen=True)
class TrustedKey:
    """A public key the policy trusts, with where it came from (for messages)."""

    key: PublicKey
    source: str

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.key)

    @property
    def hint(self) -> str:
        return key_hint(self.key)


def generate_key_pair(password: bytes | None = None) -> KeyPair:
    """A new ECDSA P-256 key pair as PEM."""
    private = ec.generate_private_key(ec.SECP256R1())
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    return KeyPair(
        private_pem=private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption),
        public_pem=public_pem(private.public_key()),
    )


def public_pem(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _public_der(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_fingerprint(key: PublicKey) -> str:
    """`sha256:<hex>` of the DER public key: how a key is named in verdicts and messages."""
    return "sha256:" + hashlib.sha256(_public_der(key)).hexdigest()


def key_hint(key: PublicKey) -> str:
    """The bundle's `publicKey.hint`: base64 of the SHA-256 of the DER public key, as cosign writes it."""
    return base64.b64encode(hashlib.sha256(_public_der(key)).digest()).decode()


def _read_key_file(path: Path) -> bytes:
    try:
        if path.stat().st_size > _MAX_KEY_FILE:
            raise VerificationError("bad-input", f"{path}: {path.stat().st_size} bytes is too large for a key file")
        return path.read_bytes()
    except OSError as error:
        raise VerificationError("bad-input", f"{path}: cannot read the key: {error.strerror}") from None


def load_public_key(path: Path) -> TrustedKey:
    """A PEM public key (SubjectPublicKeyInfo), as `cosign generate-key-pair` writes `cosign.pub`."""
    data = _read_key_file(path)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as error:
        raise VerificationError("bad-input", f"{path}: not a PEM public key ({error})") from None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1 | ec.SECP384R1 | ec.SECP521R1):
            raise VerificationError("bad-input", f"{path}: ECDSA curve {key.curve.name} is not supported")
        return TrustedKey(key, str(path))
    if isinstance(key, ed25519.Ed25519PublicKey | rsa.RSAPublicKey):
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
            raise VerificationError("bad-input", f"{path}: a {key.key_size}-bit RSA key is too weak")
        return TrustedKey(key, str(path))
    raise VerificationError("bad-input", f"{path}: {type(key).__name__} keys are not supported")


def load_private_key(path: Path, password: bytes | None = None) -> PrivateKey:
    data = _read_key_file(path)
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except TypeError:
        raise VerificationError(
            "bad-input", f"{path}: the key is encrypted; give its password (COSIGN_PASSWORD)"
        ) from None
    except (ValueError, UnsupportedAlgorithm) as error:
        raise VerificationError("bad-input", f"{path}: not a usable PEM private key ({error})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey):
        raise VerificationError("bad-input", f"{path}: {type(key).__name__} keys are not supported")
    return key


def sign_bytes(key: PrivateKey, data: bytes) -> bytes:
    """Sign `data` as cosign does: ECDSA with SHA-256 (DER signature), Ed25519, or RSA PKCS#1 v1.5."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def signature_is_valid(key: PublicKey, signature: bytes, data: bytes) -> bool:
    """Whether `signature` is `key`'s signature over `data` (SHA-256 for ECDSA and RSA;
    RSA is accepted as PKCS#1 v1.5 or PSS)."""
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(_hash_for_curve(key.curve)))
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            try:
                key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
            except InvalidSignature:
                pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
                key.verify(signature, data, pss, hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def _hash_for_curve(curve: ec.EllipticCurve) -> hashes.HashAlgorithm:
    if isinstance(curve, ec.SECP384R1):
        return hashes.SHA384()
    if isinstance(curve, ec.SECP521R1):
        return hashes.SHA512()
    return hashes.SHA256()
