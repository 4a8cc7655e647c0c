"""Turn a CertSpec into an X.509 certificate as kubeadm's pkiutil does (kubeadm.md §2.1, §11.9).

CA: self-signed, BasicConstraints CA:TRUE (critical), KeyUsage digitalSignature +
keyEncipherment + keyCertSign (critical), SAN DNS:<CN>, SKI, no EKU, no AKI.
Leaf: BasicConstraints CA:FALSE (critical), KeyUsage digitalSignature + keyEncipherment
(critical), EKU per table, SANs per table, AKI = the issuer's SKI, no SKI.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bootstrap.pki.keys import PrivateKey, signature_hash
from bootstrap.pki.table import CLIENT_AUTH, SERVER_AUTH, CertSpec

EKU_OIDS = {
    SERVER_AUTH: ExtendedKeyUsageOID.SERVER_AUTH,
    CLIENT_AUTH: ExtendedKeyUsageOID.CLIENT_AUTH,
}


def subject_name(spec: CertSpec) -> x509.Name:
    # Go marshals O before CN, so openssl prints "O = ..., CN = ..." like kubeadm's certs.
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in spec.organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, spec.common_name))
    return x509.Name(attributes)


def random_serial() -> int:
    """Uniform in [1, 2^63 - 1), like kubeadm."""
    return secrets.randbelow(2**63 - 2) + 1


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=True,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _san(spec: CertSpec) -> x509.SubjectAlternativeName | None:
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in spec.dns_names]
    names += [x509.IPAddress(ip) for ip in spec.ip_addresses]
    return x509.SubjectAlternativeName(names) if names else None


def issue_ca(
    spec: CertSpec, key: PrivateKey, not_before: datetime, not_after: datetime
) -> x509.Certificate:
    name = subject_name(spec)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(random_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    san = _san(spec)
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(key, signature_hash(key))


def issue_leaf(
    spec: CertSpec,
    key: PrivateKey,
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject_name(spec))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(random_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([EKU_OIDS[u] for u in spec.usages]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_authority_key_id(ca_cert, ca_key), critical=False)
    )
    san = _san(spec)
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(ca_key, signature_hash(ca_key))


def _authority_key_id(ca_cert: x509.Certificate, ca_key: PrivateKey) -> x509.AuthorityKeyIdentifier:
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:  # a pre-seeded CA without SKI
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


# --- reading a certificate back into the terms of the table -------------------------------


def common_name(cert: x509.Certificate) -> str:
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


def organizations(cert: x509.Certificate) -> tuple[str, ...]:
    return tuple(
        str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    )


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def usages(cert: x509.Certificate) -> frozenset[str]:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return frozenset()
    by_oid = {oid: name for name, oid in EKU_OIDS.items()}
    return frozenset(by_oid.get(oid, oid.dotted_string) for oid in eku)


def sans(cert: x509.Certificate) -> tuple[frozenset[str], frozenset[str]]:
    """(DNS names, IP addresses as text)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return frozenset(), frozenset()
    dns = frozenset(san.get_values_for_type(x509.DNSName))
    ips = frozenset(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    return dns, ips


def shape_differences(cert: x509.Certificate, spec: CertSpec) -> list[str]:
    """How a certificate on disk differs from its desired shape ([] when it matches)."""
    diffs: list[str] = []
    if common_name(cert) != spec.common_name:
        diffs.append(f"CN {common_name(cert)!r} -> {spec.common_name!r}")
    if sorted(organizations(cert)) != sorted(spec.organizations):
        diffs.append(f"O {list(organizations(cert))} -> {list(spec.organizations)}")
    if usages(cert) != frozenset(spec.usages):
        diffs.append(f"ExtKeyUsage {sorted(usages(cert))} -> {sorted(spec.usages)}")
    if is_ca(cert):
        diffs.append("is a CA certificate")
    have_dns, have_ips = sans(cert)
    want_dns = frozenset(spec.dns_names)
    want_ips = frozenset(str(ip) for ip in spec.ip_addresses)
    added = sorted(f"DNS:{d}" for d in want_dns - have_dns) + sorted(
        f"IP:{i}" for i in want_ips - have_ips
    )
    removed = sorted(f"DNS:{d}" for d in have_dns - want_dns) + sorted(
        f"IP:{i}" for i in have_ips - want_ips
    )
    if added:
        diffs.append("SANs added " + ", ".join(added))
    if removed:
        diffs.append("SANs removed " + ", ".join(removed))
    return diffs
