"""Test helpers for the PKI and kubeconfig tests: an Inventory factory, openssl as an
independent oracle, and state-dir snapshots."""

from __future__ import annotations

import dataclasses
import ipaddress
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bootstrap.inventory.model import Inventory, Master, SSHSettings

# A fixed moment so validity assertions are exact.
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
HOUR = 3600


def make_master(name: str, address: str) -> Master:
    return Master(
        name=name, address=ipaddress.ip_address(address), ssh=SSHSettings(), ssh_host=address
    )


def make_inventory(
    *,
    masters: int = 3,
    addresses: list[str] | None = None,
    key_algorithm: str = "ECDSA-P256",
    control_plane_host: str = "k8s-api.example.internal",
    **overrides: Any,
) -> Inventory:
    """The example inventory's shape (cp1..cpN at 10.0.0.11..), any field overridable."""
    addresses = addresses or [f"10.0.0.{11 + i}" for i in range(masters)]
    fields: dict[str, Any] = {
        "cluster_name": "kubernetes",
        "kubernetes_version": "v1.34.1",
        "etcd_version": "3.6.4",
        "control_plane_host": control_plane_host,
        "control_plane_port": 6443,
        "service_subnet": ipaddress.ip_network("10.96.0.0/12"),
        "pod_subnet": ipaddress.ip_network("10.244.0.0/16"),
        "dns_domain": "cluster.local",
        "image_repository": "registry.k8s.io",
        "key_algorithm": key_algorithm,
        "ca_validity_seconds": 87600 * HOUR,
        "cert_validity_seconds": 8760 * HOUR,
        "apiserver_extra_sans": (),
        "etcd_extra_sans": (),
        "encryption_at_rest": True,
        "masters": tuple(make_master(f"cp{i + 1}", a) for i, a in enumerate(addresses)),
    }
    fields.update(overrides)
    return Inventory(**fields)


def with_changes(inventory: Inventory, **changes: Any) -> Inventory:
    return dataclasses.replace(inventory, **changes)


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under root: relative path -> (content, mode)."""
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mode & 0o777)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def openssl(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        check=False,
    )


def openssl_verify(ca_pem: bytes, cert_pem: bytes, workdir: Path, *purpose: str) -> str:
    """`openssl verify -CAfile` (optionally with -purpose); returns stdout, raises on failure."""
    ca_file = workdir / "verify-ca.pem"
    cert_file = workdir / "verify-cert.pem"
    ca_file.write_bytes(ca_pem)
    cert_file.write_bytes(cert_pem)
    result = openssl("verify", *purpose, "-CAfile", str(ca_file), str(cert_file))
    if result.returncode != 0:
        raise AssertionError(f"openssl verify failed: {result.stdout}{result.stderr}")
    return result.stdout


def openssl_subject(cert_pem: bytes) -> str:
    result = openssl("x509", "-noout", "-subject", stdin=cert_pem)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().removeprefix("subject=").strip()


def openssl_ext(cert_pem: bytes, ext: str) -> str:
    """`openssl x509 -noout -ext NAME` text, e.g. for subjectAltName."""
    result = openssl("x509", "-noout", "-ext", ext, stdin=cert_pem)
    assert result.returncode == 0, result.stderr
    return result.stdout
