"""Expiry report for ``certs check`` (kubeadm's check-expiration, §2.3)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509

from bootstrap.pki.cluster import ClusterPKI


@dataclass(frozen=True)
class Expiry:
    name: str  # "ca", "cp1/apiserver", "cp1/admin.conf"
    not_after: datetime
    residual: timedelta  # negative once expired
    authority: str  # issuing CA name; "" for a CA

    @property
    def expired(self) -> bool:
        return self.residual <= timedelta(0)


def check_expiry(cert: x509.Certificate, now: datetime | None = None) -> timedelta:
    """Time left until cert expires (negative when it already has)."""
    return cert.not_valid_after_utc - (now or datetime.now(UTC))


def expiry_report(pki: ClusterPKI, now: datetime | None = None) -> list[Expiry]:
    """CAs first, then per master its leaves and kubeconfig client certs."""
    moment = now or datetime.now(UTC)
    subjects = {ca.cert.subject: name for name, ca in pki.cas.items()}
    rows = [
        Expiry(name, ca.cert.not_valid_after_utc, check_expiry(ca.cert, moment), "")
        for name, ca in pki.cas.items()
    ]
    for master, leaves in pki.leaves.items():
        items = [*leaves.items(), *pki.clients[master].items()]
        for name, material in items:
            rows.append(
                Expiry(
                    f"{master}/{name}",
                    material.cert.not_valid_after_utc,
                    check_expiry(material.cert, moment),
                    subjects.get(material.cert.issuer, material.cert.issuer.rfc4514_string()),
                )
            )
    return rows
