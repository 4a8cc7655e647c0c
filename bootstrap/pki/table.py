"""The certificate table: kubeadm's names, subjects, usages and SANs (kubeadm.md §2.2, §11).

Pure data built from the inventory; no cryptography here. A ``CertSpec`` is the desired
shape of one certificate; ``issue`` turns it into a certificate and ``store`` compares
what is on disk against it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from bootstrap.inventory.model import Inventory, IPAddress, Master

SERVER_AUTH = "serverAuth"
CLIENT_AUTH = "clientAuth"

# The three trust roots, in the order they are created.
CA = "ca"
FRONT_PROXY_CA = "front-proxy-ca"
ETCD_CA = "etcd/ca"
CA_NAMES = (CA, FRONT_PROXY_CA, ETCD_CA)

KUBEADM_CLUSTER_ADMINS = "kubeadm:cluster-admins"
SYSTEM_MASTERS = "system:masters"
SYSTEM_NODES = "system:nodes"
# From this Kubernetes minor apiserver-kubelet-client has no O (bootstrap/rbac.py binds it).
KUBELET_CLIENT_UNBOUND_SINCE = (1, 36)


@dataclass(frozen=True)
class CertSpec:
    """Desired shape of one certificate. ``name`` is its path under the pki dir, no suffix."""

    name: str
    issuer: str | None  # CA name; None: a self-signed CA
    common_name: str
    organizations: tuple[str, ...] = ()
    usages: tuple[str, ...] = ()  # ExtKeyUsage names (SERVER_AUTH, CLIENT_AUTH)
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[IPAddress, ...] = ()

    @property
    def is_ca(self) -> bool:
        return self.issuer is None


CA_SPECS: tuple[CertSpec, ...] = (
    # kubeadm puts a CA's CN into its DNS SANs.
    CertSpec(CA, None, "kubernetes", dns_names=("kubernetes",)),
    CertSpec(FRONT_PROXY_CA, None, "front-proxy-ca", dns_names=("front-proxy-ca",)),
    CertSpec(ETCD_CA, None, "etcd-ca", dns_names=("etcd-ca",)),
)

LEAF_NAMES = (
    "apiserver",
    "apiserver-kubelet-client",
    "apiserver-etcd-client",
    "front-proxy-client",
    "etcd/server",
    "etcd/peer",
    "etcd/healthcheck-client",
)

LOOPBACK_V4 = ipaddress.IPv4Address("127.0.0.1")
LOOPBACK_V6 = ipaddress.IPv6Address("::1")


def split_sans(values: tuple[str, ...] | list[str]) -> tuple[list[str], list[IPAddress]]:
    """Extra SANs from the inventory: IP literals become IP SANs, the rest DNS names."""
    dns: list[str] = []
    ips: list[IPAddress] = []
    for value in values:
        try:
            ips.append(ipaddress.ip_address(value.strip("[]")))
        except ValueError:
            dns.append(value.lower())
    return dns, ips


def is_ipv6_cluster(inventory: Inventory) -> bool:
    return inventory.service_subnet.version == 6 or any(
        m.address.version == 6 for m in inventory.masters
    )


def _dns(names: list[str]) -> tuple[str, ...]:
    # kubeadm keeps DNS SANs in a set: unique and sorted.
    return tuple(sorted(set(names)))


def _ips(addresses: list[IPAddress]) -> tuple[IPAddress, ...]:
    # kubeadm keeps IP SANs in insertion order, duplicates removed.
    return tuple(dict.fromkeys(addresses))


def apiserver_spec(inventory: Inventory, master: Master) -> CertSpec:
    domain = inventory.dns_domain
    dns = [
        master.name,
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        f"kubernetes.default.svc.{domain}",
    ]
    # The `kubernetes` Service's ClusterIP: the first address of the service subnet.
    service_ip = ipaddress.ip_address(int(inventory.service_subnet.network_address) + 1)
    ips: list[IPAddress] = [service_ip, master.address]
    endpoint_dns, endpoint_ips = split_sans([inventory.control_plane_host])
    extra_dns, extra_ips = split_sans(inventory.apiserver_extra_sans)
    dns += endpoint_dns + extra_dns
    ips += endpoint_ips + extra_ips
    # Deliberate addition to kubeadm's table: loopback names, so `verify` can reach each
    # apiserver through an SSH tunnel to 127.0.0.1:6443 with full TLS verification
    # (hostname included) instead of skipping it.
    dns.append("localhost")
    ips.append(LOOPBACK_V4)
    if is_ipv6_cluster(inventory):
        ips.append(LOOPBACK_V6)
    return CertSpec("apiserver", CA, "kube-apiserver", (), (SERVER_AUTH,), _dns(dns), _ips(ips))


def _kubelet_client_orgs(inventory: Inventory) -> tuple[str, ...]:
    # kubeadm 1.29-1.35 put the client in kubeadm:cluster-admins (§2.2). kubeadm 1.36
    # (backported into its patch releases; v1.36.3 and v1.37.2 read) dropped the O and
    # binds the user to system:kubelet-api-admin with a ClusterRoleBinding instead (§11.2,
    # k/k #138957; bootstrap/rbac.py creates it), so we follow the target minor.
    if inventory.kubernetes_minor >= KUBELET_CLIENT_UNBOUND_SINCE:
        return ()
    return (KUBEADM_CLUSTER_ADMINS,)


def _etcd_member_spec(name: str, inventory: Inventory, master: Master) -> CertSpec:
    extra_dns, extra_ips = split_sans(inventory.etcd_extra_sans)
    dns = [master.name, "localhost", *extra_dns]
    ips: list[IPAddress] = [master.address, LOOPBACK_V4, LOOPBACK_V6, *extra_ips]
    return CertSpec(
        name, ETCD_CA, master.name, (), (SERVER_AUTH, CLIENT_AUTH), _dns(dns), _ips(ips)
    )


def leaf_specs(inventory: Inventory, master: Master) -> tuple[CertSpec, ...]:
    """The seven per-master leaves, in LEAF_NAMES order."""
    return (
        apiserver_spec(inventory, master),
        CertSpec(
            "apiserver-kubelet-client",
            CA,
            "kube-apiserver-kubelet-client",
            _kubelet_client_orgs(inventory),
            (CLIENT_AUTH,),
        ),
        CertSpec(
            "apiserver-etcd-client", ETCD_CA, "kube-apiserver-etcd-client", (), (CLIENT_AUTH,)
        ),
        CertSpec("front-proxy-client", FRONT_PROXY_CA, "front-proxy-client", (), (CLIENT_AUTH,)),
        # etcd needs clientAuth on its server cert too (it dials its own peers/clients).
        _etcd_member_spec("etcd/server", inventory, master),
        _etcd_member_spec("etcd/peer", inventory, master),
        CertSpec(
            "etcd/healthcheck-client", ETCD_CA, "kube-etcd-healthcheck-client", (), (CLIENT_AUTH,)
        ),
    )


def client_spec(name: str, common_name: str, organizations: tuple[str, ...]) -> CertSpec:
    """A kubeconfig client certificate (signed by ca, clientAuth only)."""
    return CertSpec(name, CA, common_name, organizations, (CLIENT_AUTH,))
