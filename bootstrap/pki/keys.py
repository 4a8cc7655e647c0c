"""Private keys: generation per inventory algorithm, PEM encodings, comparison.

Encodings are kubeadm's (reference/kubeadm.md §2.1): RSA keys as PKCS#1
``RSA PRIVATE KEY``, EC keys as SEC1 ``EC PRIVATE KEY``, public keys (sa.pub) as PKIX
``PUBLIC KEY``.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
# algorithm name ("ECDSA-P256", "RSA-2048", ...) -> a new private key. The one seam
# through which every key is created (tests may pass their own).
KeyFactory = Callable[[str], PrivateKey]

_RSA_BITS = {"RSA-2048": 2048, "RSA-3072": 3072, "RSA-4096": 4096}
_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "ECDSA-P256": ec.SECP256R1,
    "ECDSA-P384": ec.SECP384R1,
}


def generate_key(algorithm: str) -> PrivateKey:
    """A fresh private key of the named algorithm (the inventory's keyAlgorithm)."""
    if algorithm in _RSA_BITS:
        return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS[algorithm])
    if algorithm in _CURVES:
        return ec.generate_private_key(_CURVES[algorithm]())
    raise ValueError(f"unsupported key algorithm {algorithm!r}")


def algorithm_of(key: PrivateKey | PublicKey) -> str:
    """The inventory name of a key's algorithm, e.g. "ECDSA-P256"; "" when not one of ours."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    for name, curve in _CURVES.items():
        if isinstance(key.curve, curve):
            return name
    return ""


def signature_hash(signer: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512:
    """Go's default signature hash for the signing key (what kubeadm produces)."""
    if isinstance(signer, ec.EllipticCurvePrivateKey):
        if isinstance(signer.curve, ec.SECP384R1):
            return hashes.SHA384()
        if isinstance(signer.curve, ec.SECP521R1):
            return hashes.SHA512()
    return hashes.SHA256()


def private_key_pem(key: PrivateKey) -> bytes:
    # TraditionalOpenSSL is PKCS#1 for RSA and SEC1 for EC.
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def public_key_pem(key: PrivateKey | PublicKey) -> bytes:
    private_types = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    public = key.public_key() if isinstance(key, private_types) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private_key(data: bytes) -> PrivateKey:
    """Parse a PEM private key. Raises ValueError for anything that is not an RSA/EC key."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:  # encrypted key
        raise ValueError(str(exc)) from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError(f"unsupported key type {type(key).__name__}")
    return key


def load_public_key(data: bytes) -> PublicKey:
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise ValueError(f"unsupported public key type {type(key).__name__}")
    return key


def same_public_key(a: PrivateKey | PublicKey, b: PrivateKey | PublicKey) -> bool:
    return public_key_pem(a) == public_key_pem(b)
