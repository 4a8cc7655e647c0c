"""The local state directory: 0700 directories, writes of changed content only, and
loading material with its refusals.

Everything that reads existing material raises ``StateError`` (exit 2, with a hint)
when the material is inconsistent; nothing here regenerates anything.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from bootstrap.errors import StateError
from bootstrap.local import atomic
from bootstrap.pki.keys import PrivateKey, load_private_key, same_public_key

DIR_MODE = 0o700
KEY_MODE = 0o600
CERT_MODE = 0o644


@dataclass(frozen=True)
class CertKey:
    """A certificate and its private key, with the exact bytes kept on disk."""

    name: str  # e.g. "apiserver", "etcd/server", "kubeconfig/admin"
    cert: x509.Certificate
    key: PrivateKey | None = field(repr=False)
    cert_pem: bytes = field(repr=False)
    key_pem: bytes = field(repr=False)  # b"" when there is no key


# --- files --------------------------------------------------------------------------------


def ensure_dir(path: Path) -> None:
    """Create path and missing parents 0700 (umask-proof); tighten an existing looser one."""
    missing: list[Path] = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        directory.mkdir(mode=DIR_MODE, exist_ok=True)
        os.chmod(directory, DIR_MODE)
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        os.chmod(path, DIR_MODE)


def read_optional(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def write_atomic(path: Path, data: bytes, mode: int) -> bool:
    """Write ``path`` atomically (``bootstrap.local.atomic``) in a 0700 directory.
    Unchanged content is left alone (only a wrong mode is corrected). Returns True when
    the content was written."""
    ensure_dir(path.parent)
    current = read_optional(path)
    if current == data:
        if stat.S_IMODE(path.stat().st_mode) != mode:
            os.chmod(path, mode)
        return False
    atomic.write_atomic(path, data, mode)
    return True


# --- loading with refusals ----------------------------------------------------------------


def _leaf_hint(crt: Path, key: Path) -> str:
    return f"delete {crt} and {key}; the next run issues a new pair signed by the existing CA"


def _ca_hint(crt: Path, key: Path) -> str:
    return (
        f"restore the original {crt.name} and {key.name} in {crt.parent} from a backup. "
        "A CA is never regenerated automatically: a new CA invalidates every certificate "
        "and kubeconfig of the cluster"
    )


def hint_for(crt: Path, key: Path, *, ca: bool) -> str:
    return _ca_hint(crt, key) if ca else _leaf_hint(crt, key)


def parse_cert(data: bytes, path: Path, hint: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise StateError(f"{path} is not a readable PEM certificate ({exc})", hint=hint) from exc


def parse_key(data: bytes, path: Path, hint: str) -> PrivateKey:
    try:
        return load_private_key(data)
    except (ValueError, TypeError) as exc:
        raise StateError(f"{path} is not a readable PEM private key ({exc})", hint=hint) from exc


def load_pair(name: str, crt: Path, key: Path, *, ca: bool) -> CertKey | None:
    """Load cert + key; None when there is nothing to reuse. Refuses a certificate without
    its key, unparseable files and a key that does not belong to the certificate.

    Keys are written before certificates, so an interrupted run can leave a key without
    its certificate: for a leaf that key never signed or authenticated anything, and the
    pair is simply issued again (None). For a CA it is refused (we cannot tell an
    interrupted first run from a lost ca.crt)."""
    hint = hint_for(crt, key, ca=ca)
    cert_pem, key_pem = read_optional(crt), read_optional(key)
    if cert_pem is None and (key_pem is None or not ca):
        return None
    if key_pem is None:
        raise StateError(f"{crt} exists but its private key {key} is missing", hint=hint)
    if cert_pem is None:
        raise StateError(
            f"{key} exists but its certificate {crt} is missing",
            hint=f"{hint}. If the very first run was interrupted, delete {key} instead",
        )
    cert = parse_cert(cert_pem, crt, hint)
    private = parse_key(key_pem, key, hint)
    if not same_public_key(cert.public_key(), private):  # type: ignore[arg-type]
        raise StateError(f"{key} does not belong to the certificate {crt}", hint=hint)
    return CertKey(name, cert, private, cert_pem, key_pem)


def check_ca(material: CertKey, crt: Path, key: Path, now: datetime) -> None:
    hint = _ca_hint(crt, key)
    basic = _basic_constraints(material.cert)
    if basic is None or not basic.ca:
        raise StateError(
            f"{crt} is not a CA certificate (BasicConstraints CA:TRUE missing)", hint=hint
        )
    if material.cert.issuer == material.cert.subject and not signed_by(
        material.cert, material.cert
    ):
        raise StateError(f"{crt} is self-issued but its signature does not verify", hint=hint)
    if material.cert.not_valid_after_utc <= now:
        raise StateError(
            f"CA {crt} expired on {material.cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC",
            hint="an expired CA cannot be renewed in place: rotate the cluster CA deliberately "
            f"(move {crt.parent} away and re-provision every master)",
        )


def signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def check_signed_by(material: CertKey, ca: CertKey, crt: Path, key: Path, ca_label: str) -> None:
    if not signed_by(material.cert, ca.cert):
        raise StateError(
            f"{crt} is not signed by the {ca_label} CA in the state directory",
            hint=_leaf_hint(crt, key),
        )


def _basic_constraints(cert: x509.Certificate) -> x509.BasicConstraints | None:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None
