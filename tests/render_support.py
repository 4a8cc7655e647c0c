"""Inventories and mounted files for the render tests, built directly from the model.

`example_inventory()` is inventory.example.yaml as it was at v1.34.1 / etcd 3.6.4 (the
goldens of that version stay as they are); `example_inventory_137()` mirrors today's
inventory.example.yaml (v1.37.2 / etcd 3.7.0) value for value, which test_render checks by
rendering both.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from bootstrap.inventory.model import Inventory, Master, SSHSettings
from bootstrap.manifests.render import ENCRYPTION_CONFIG_PATH, EtcdCluster
from bootstrap.model import FileSpec

REPO_ROOT = Path(__file__).resolve().parent.parent
GOLDEN_DIR = Path(__file__).resolve().parent / "golden"

PKI_SHARED = (  # the same bytes on every master
    "ca.crt", "ca.key", "front-proxy-ca.crt", "front-proxy-ca.key", "sa.key", "sa.pub",
    "etcd/ca.crt", "etcd/ca.key",
)
PKI_PER_MASTER = (
    "apiserver.crt", "apiserver.key",
    "apiserver-kubelet-client.crt", "apiserver-kubelet-client.key",
    "apiserver-etcd-client.crt", "apiserver-etcd-client.key",
    "front-proxy-client.crt", "front-proxy-client.key",
    "etcd/server.crt", "etcd/server.key", "etcd/peer.crt", "etcd/peer.key",
    "etcd/healthcheck-client.crt", "etcd/healthcheck-client.key",
)
KUBECONFIGS = ("admin.conf", "controller-manager.conf", "scheduler.conf", "kubelet.conf")


def _masters(addresses: dict[str, str], ssh: SSHSettings) -> tuple[Master, ...]:
    return tuple(
        Master(name=name, address=ipaddress.ip_address(addr), ssh=ssh, ssh_host=addr)
        for name, addr in addresses.items()
    )


def example_inventory(**overrides: object) -> Inventory:
    """inventory.example.yaml's values at v1.34.1 / etcd 3.6.4 (IPv4, one extra arg)."""
    ssh = SSHSettings(identity_file=Path("~/.ssh/id_ed25519"))
    values: dict[str, object] = dict(
        cluster_name="kubernetes",
        kubernetes_version="v1.34.1",
        etcd_version="3.6.4",
        control_plane_host="k8s-api.example.internal",
        control_plane_port=6443,
        service_subnet=ipaddress.ip_network("10.96.0.0/12"),
        pod_subnet=ipaddress.ip_network("10.244.0.0/16"),
        dns_domain="cluster.local",
        image_repository="registry.k8s.io",
        key_algorithm="ECDSA-P256",
        ca_validity_seconds=87600 * 3600,
        cert_validity_seconds=8760 * 3600,
        apiserver_extra_sans=("k8s-api.example.internal", "10.0.0.10"),
        etcd_extra_sans=(),
        encryption_at_rest=True,
        masters=_masters({"cp1": "10.0.0.11", "cp2": "10.0.0.12", "cp3": "10.0.0.13"}, ssh),
        extra_args={"kube-apiserver": {"audit-log-maxage": "30"}},
    )
    values.update(overrides)
    return Inventory(**values)  # type: ignore[arg-type]


def example_inventory_137(**overrides: object) -> Inventory:
    """inventory.example.yaml today: Kubernetes v1.37.2 with kubeadm's etcd 3.7.0."""
    values: dict[str, object] = dict(kubernetes_version="v1.37.2", etcd_version="3.7.0")
    values.update(overrides)
    return example_inventory(**values)


def ipv6_inventory(**overrides: object) -> Inventory:
    """Three IPv6 masters on the lab's etcd (3.5.1) and Kubernetes v1.31: the old probes
    (/health, scheduler /healthz), numeric probe ports, the --experimental-* etcd flags."""
    values: dict[str, object] = dict(
        cluster_name="lab6",
        kubernetes_version="v1.31.4",
        etcd_version="3.5.1",
        control_plane_host="fd00:10::10",
        control_plane_port=6443,
        service_subnet=ipaddress.ip_network("fd00:96::/112"),
        pod_subnet=ipaddress.ip_network("fd00:244::/56"),
        dns_domain="lab.example",
        image_repository="registry.example.internal:5000/k8s",
        key_algorithm="ECDSA-P256",
        ca_validity_seconds=87600 * 3600,
        cert_validity_seconds=8760 * 3600,
        apiserver_extra_sans=(),
        etcd_extra_sans=(),
        encryption_at_rest=True,
        masters=_masters(
            {"m1": "fd00:10::11", "m2": "fd00:10::12", "m3": "fd00:10::13"}, SSHSettings()
        ),
        extra_args={
            "etcd": {"snapshot-count": "5000", "quota-backend-bytes": "4294967296"},
            "kube-controller-manager": {"node-cidr-mask-size-ipv6": "64"},
            "kube-scheduler": {"v": "2"},
        },
    )
    values.update(overrides)
    return Inventory(**values)  # type: ignore[arg-type]


def full_cluster(inventory: Inventory, state: str = "new") -> EtcdCluster:
    """All masters in inventory order: what a bootstrap of the whole cluster at once uses."""
    return EtcdCluster(
        initial_cluster=tuple((m.name, m.peer_url) for m in inventory.masters),
        state=state,  # type: ignore[arg-type]
    )


def fake_mounted_files(inventory: Inventory, master: Master) -> dict[str, FileSpec]:
    """The master's PKI, kubeconfigs and encryption config with fixed fake bytes (only
    their hashes matter to the renderer)."""
    files: list[FileSpec] = []
    for name in PKI_SHARED:
        path = f"/etc/kubernetes/pki/{name}"
        files.append(FileSpec(path, f"fake {name} of {inventory.cluster_name}\n".encode(), 0o600))
    for name in PKI_PER_MASTER:
        path = f"/etc/kubernetes/pki/{name}"
        files.append(FileSpec(path, f"fake {name} of {master.name}\n".encode(), 0o600))
    for name in KUBECONFIGS:
        path = f"/etc/kubernetes/{name}"
        files.append(FileSpec(path, f"fake {name} of {master.name}\n".encode(), 0o600))
    files.append(FileSpec(ENCRYPTION_CONFIG_PATH, b"fake EncryptionConfiguration\n", 0o600))
    return {f.path: f for f in files}
