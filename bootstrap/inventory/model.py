"""The typed, frozen inventory model. Built only by ``inventory.loader``."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
HostKeyPolicy = Literal["strict", "accept-new"]
KeyAlgorithm = Literal["RSA-2048", "RSA-3072", "RSA-4096", "ECDSA-P256", "ECDSA-P384"]
KEY_ALGORITHMS: tuple[str, ...] = ("RSA-2048", "RSA-3072", "RSA-4096", "ECDSA-P256", "ECDSA-P384")

# The host's system trust store, mounted read-only into kube-apiserver and
# kube-controller-manager. kubeadm mounts those of its list that exist on the host it runs
# on; we render on the operator's machine, so the default is the Debian/Ubuntu layout and
# other layouts are named in the inventory (caCertDirs).
DEFAULT_CA_CERT_DIRS: tuple[str, ...] = (
    "/etc/ssl/certs",
    "/etc/ca-certificates",
    "/usr/local/share/ca-certificates",
    "/usr/share/ca-certificates",
)

# Remote layout, kubeadm's (reference/kubeadm.md §1-§3).
KUBERNETES_DIR = "/etc/kubernetes"
PKI_DIR = "/etc/kubernetes/pki"
MANIFESTS_DIR = "/etc/kubernetes/manifests"
# A master's four static pods, in rollout order: their one definition (issue 15).
COMPONENTS: tuple[str, ...] = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
)
ETCD_DATA_DIR = "/var/lib/etcd"
API_PORT = 6443
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
ETCD_METRICS_PORT = 2381
CONTROLLER_MANAGER_PORT = 10257
SCHEDULER_PORT = 10259


def parse_version(text: str) -> tuple[int, int, int]:
    """'v1.34.1' / '1.34.1' / '3.5.12-0' -> (1, 34, 1). Raises ValueError."""
    core = text.strip().lstrip("v").split("-", 1)[0].split("+", 1)[0]
    parts = core.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"not a version: {text!r}")
    return int(parts[0]), int(parts[1]), int(parts[2])


@dataclass(frozen=True)
class JumpHost:
    address: str  # IP or DNS name
    port: int = 22
    user: str = "root"
    identity_file: Path | None = None


@dataclass(frozen=True)
class SSHSettings:
    user: str = "root"
    port: int = 22
    identity_file: Path | None = None  # None: ssh-agent / default keys
    known_hosts: Path = Path("~/.ssh/known_hosts")
    host_key_policy: HostKeyPolicy = "strict"
    sudo: bool = False  # run remote commands through `sudo -n` (non-root users)
    jump_host: JumpHost | None = None
    connect_timeout: float = 10.0


@dataclass(frozen=True)
class Master:
    name: str  # DNS-1123 label; etcd member name and node name
    address: IPAddress  # advertise address (etcd peer/client, apiserver)
    ssh: SSHSettings  # defaults merged with per-master overrides
    ssh_host: str  # what to connect to (defaults to the address)

    @property
    def peer_url(self) -> str:
        return f"https://{url_host(self.address)}:{ETCD_PEER_PORT}"

    @property
    def client_url(self) -> str:
        return f"https://{url_host(self.address)}:{ETCD_CLIENT_PORT}"


@dataclass(frozen=True)
class Timeouts:
    """Named waits, seconds (kubeadm's defaults where it has one)."""

    etcd_quorum: float = 120.0
    apiserver_ready: float = 240.0
    component_ready: float = 240.0
    etcd_promote: float = 180.0
    poll_interval: float = 0.5


@dataclass(frozen=True)
class Inventory:
    cluster_name: str
    kubernetes_version: str  # "v1.34.1"
    etcd_version: str  # "3.5.1" (image tag without the "-0" suffix is fine)
    control_plane_host: str  # IP or DNS name of the VIP/LB (default: first master)
    control_plane_port: int
    service_subnet: ipaddress.IPv4Network | ipaddress.IPv6Network
    pod_subnet: ipaddress.IPv4Network | ipaddress.IPv6Network | None
    dns_domain: str
    image_repository: str
    key_algorithm: KeyAlgorithm
    ca_validity_seconds: int  # default 10 y (87600 h)
    cert_validity_seconds: int  # default 1 y (8760 h)
    apiserver_extra_sans: tuple[str, ...]
    etcd_extra_sans: tuple[str, ...]
    encryption_at_rest: bool
    masters: tuple[Master, ...]
    # Host trust-store directories mounted into kube-apiserver and kube-controller-manager.
    ca_cert_dirs: tuple[str, ...] = DEFAULT_CA_CERT_DIRS
    extra_args: dict[str, dict[str, str]] = field(
        default_factory=dict
    )  # component -> flag -> value
    timeouts: Timeouts = field(default_factory=Timeouts)
    source: Path | None = None  # the file it was read from
    warnings: tuple[str, ...] = ()

    @property
    def control_plane_endpoint(self) -> str:
        host = self.control_plane_host
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        return f"{host}:{self.control_plane_port}"

    @property
    def kubernetes_minor(self) -> tuple[int, int]:
        major, minor, _ = parse_version(self.kubernetes_version)
        return major, minor

    @property
    def etcd_semver(self) -> tuple[int, int, int]:
        return parse_version(self.etcd_version)

    def master(self, name: str) -> Master:
        for m in self.masters:
            if m.name == name:
                return m
        raise KeyError(name)


def url_host(address: IPAddress | str) -> str:
    """Host part for a URL: IPv6 literals get brackets."""
    text = str(address)
    return f"[{text}]" if ":" in text else text
