"""The cluster PKI: kubeadm's certificate table, load-or-create in the state dir, expiry.

Importing this package imports ``cryptography``; the CLI imports it lazily (``--help``
stays fast). See ``bootstrap.pki.cluster`` for the state directory layout and the
reuse/refuse/re-issue rules.
"""

from __future__ import annotations

from bootstrap.pki.cluster import (
    ClusterPKI,
    admin_kubeconfig_path,
    ensure_pki,
    master_dir,
    shared_pki_dir,
    super_admin_kubeconfig_path,
)
from bootstrap.pki.expiry import Expiry, check_expiry, expiry_report
from bootstrap.pki.keys import KeyFactory, PrivateKey, generate_key
from bootstrap.pki.store import CertKey
from bootstrap.pki.table import CA_NAMES, LEAF_NAMES, CertSpec, leaf_specs

__all__ = [
    "CA_NAMES",
    "LEAF_NAMES",
    "CertKey",
    "CertSpec",
    "ClusterPKI",
    "Expiry",
    "KeyFactory",
    "PrivateKey",
    "admin_kubeconfig_path",
    "check_expiry",
    "ensure_pki",
    "expiry_report",
    "generate_key",
    "leaf_specs",
    "master_dir",
    "shared_pki_dir",
    "super_admin_kubeconfig_path",
]
