"""Supported versions and kubeadm's etcd-for-Kubernetes mapping.

Public because upgrades reuse it: an upgrade to a new minor moves etcd to the version
kubeadm would deploy for that minor.
"""

from __future__ import annotations

# kubeadm's SupportedEtcdVersion for the first patch release of each minor
# (reference/kubeadm.md, "Default images / versions"). Image tags carry a "-0" suffix.
DEFAULT_ETCD_FOR_MINOR: dict[tuple[int, int], str] = {
    (1, 30): "3.5.12",
    (1, 31): "3.5.15",
    (1, 32): "3.5.16",
    (1, 33): "3.5.21",
    (1, 34): "3.6.4",
    (1, 35): "3.6.6",
    (1, 36): "3.6.8",
}

SUPPORTED_KUBERNETES_MINORS: tuple[tuple[int, int], ...] = tuple(sorted(DEFAULT_ETCD_FOR_MINOR))
SUPPORTED_ETCD_MINORS: tuple[tuple[int, int], ...] = ((3, 4), (3, 5), (3, 6))


def minor_text(minor: tuple[int, int]) -> str:
    return f"{minor[0]}.{minor[1]}"
