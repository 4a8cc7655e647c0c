"""Private keys: generation per inventory algorithm, PEM encodings, comparison.

Encodings are kubeadm's (reference/kubeadm.md §2.1): RSA keys as PKCS#1
``RSA PRIVATE KEY``, EC keys as SEC1 ``EC PRIVATE KEY``, public keys (sa.pub) as PKIX
``PUBLIC KEY``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from cryptography.exceptions import InvalidSignature
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
    # OpenSSL's full RSA key check (primality tests) costs ~45 ms per 2048-bit key, 2 s
    # for a 3-master re-run. The arithmetic relations checked below catch a damaged key
    # just as well (Go's key.Validate(), which the apiserver runs, checks the same).
    try:
        key = serialization.load_pem_private_key(
            data, password=None, unsafe_skip_rsa_key_validation=True
        )
    except TypeError as exc:  # encrypted key
        raise ValueError(str(exc)) from exc
    if isinstance(key, rsa.RSAPrivateKey):
        if not _rsa_consistent(key):
            raise ValueError("the RSA private key is inconsistent (damaged)")
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not _ec_consistent(key):
            raise ValueError("the EC private key does not match its public point (damaged)")
        return key
    raise ValueError(f"unsupported key type {type(key).__name__}")


def _rsa_consistent(key: rsa.RSAPrivateKey) -> bool:
    numbers = key.private_numbers()
    p, q, d = numbers.p, numbers.q, numbers.d
    n, e = numbers.public_numbers.n, numbers.public_numbers.e
    if p <= 1 or q <= 1 or p * q != n:
        return False
    lcm = (p - 1) * (q - 1) // math.gcd(p - 1, q - 1)
    return (
        (d * e) % lcm == 1
        and numbers.dmp1 == d % (p - 1)
        and numbers.dmq1 == d % (q - 1)
        and (numbers.iqmp * q) % p == 1
    )


def _ec_consistent(key: ec.EllipticCurvePrivateKey) -> bool:
    # Signing uses the private scalar, verifying the stored public point.
    message = b"bootstrap key self-check"
    algorithm = ec.ECDSA(hashes.SHA256())
    try:
        key.public_key().verify(key.sign(message, algorithm), message, algorithm)
    except InvalidSignature:
        return False
    return True


def load_public_key(data: bytes) -> PublicKey:
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise ValueError(f"unsupported public key type {type(key).__name__}")
    return key


def same_public_key(a: PrivateKey | PublicKey, b: PrivateKey | PublicKey) -> bool:
    return public_key_pem(a) == public_key_pem(b)
