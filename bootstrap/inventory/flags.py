"""Which static-pod flags ``extraArgs`` may set: refused, warned about, or free.

bootstrap computes most flags of the four static pods (bootstrap/components.py) and
relies on their values elsewhere: the PKI it issues and renews, the membership it
manages, the ports and loopback addresses its checks and tunnels use. An extra arg with
the same name would silently replace them (kubeadm's merge: same name wins), so the
loader refuses those (MANAGED, each with where to change it instead) and warns about
the ones a user may legitimately change but should know the cost of (WARNED). Every flag
components.py renders is in one of MANAGED, WARNED or TUNABLE (a test holds that), so a
new computed flag cannot slip through unclassified.

Kubernetes components accept ``_`` for ``-`` in flag names (pflag's word-separator
normalisation), so names are compared after that normalisation.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from ..errors import echo
from .model import ETCD_METRICS_PORT

_PKI = "the PKI bootstrap issues and renews (certs renew); paths are kubeadm's"
_MEMBERSHIP = "computed from masters[] and the cluster's membership (joins, removals)"
_ADDRESSES = "from masters[].address; the apiserver and bootstrap's checks connect there"
_KUBECONFIG = "the kubeconfig bootstrap writes and renews is the only one mounted in the pod"
_PORT = "bootstrap's health checks, tunnels and preflight use the standard port"

MANAGED: dict[str, dict[str, str]] = {
    "etcd": {
        "name": "the member name is masters[].name",
        "data-dir": "/var/lib/etcd: preflight, reset and the snapshot fallback work there",
        "initial-cluster": _MEMBERSHIP,
        "initial-cluster-state": _MEMBERSHIP,
        "initial-advertise-peer-urls": _ADDRESSES,
        "advertise-client-urls": _ADDRESSES,
        "listen-client-urls": _ADDRESSES,
        "listen-peer-urls": _ADDRESSES,
        "cert-file": _PKI,
        "key-file": _PKI,
        "peer-cert-file": _PKI,
        "peer-key-file": _PKI,
        "trusted-ca-file": _PKI,
        "peer-trusted-ca-file": _PKI,
        # Off, anyone who reaches 2379/2380 reads and writes every Secret.
        "client-cert-auth": "mutual TLS is required: without it etcd trusts any client",
        "peer-client-cert-auth": "mutual TLS is required: without it etcd trusts any peer",
    },
    "kube-apiserver": {
        "advertise-address": "masters[].address",
        "etcd-servers": "each apiserver talks to its own etcd member over loopback",
        "etcd-cafile": _PKI,
        "etcd-certfile": _PKI,
        "etcd-keyfile": _PKI,
        "client-ca-file": _PKI,
        "tls-cert-file": _PKI,
        "tls-private-key-file": _PKI,
        "kubelet-client-certificate": _PKI,
        "kubelet-client-key": _PKI,
        "proxy-client-cert-file": _PKI,
        "proxy-client-key-file": _PKI,
        "requestheader-client-ca-file": _PKI,
        "service-account-key-file": _PKI,
        "service-account-signing-key-file": _PKI,
        "secure-port": _PORT + " (6443)",
        "service-cluster-ip-range": "set networking.serviceSubnet (the apiserver "
        "certificate carries its first address)",
        # Its file must be mounted into the pod; a path of the user's own is not.
        "encryption-provider-config": "set by encryptionAtRest (bootstrap writes and "
        "mounts /etc/kubernetes/encryption/config.yaml)",
    },
    "kube-controller-manager": {
        "kubeconfig": _KUBECONFIG,
        "authentication-kubeconfig": _KUBECONFIG,
        "authorization-kubeconfig": _KUBECONFIG,
        "client-ca-file": _PKI,
        "cluster-signing-cert-file": _PKI,
        "cluster-signing-key-file": _PKI,
        "requestheader-client-ca-file": _PKI,
        "root-ca-file": _PKI,
        "service-account-private-key-file": _PKI,
        "cluster-name": "set clusterName",
        "cluster-cidr": "set networking.podSubnet",
        "allocate-node-cidrs": "set networking.podSubnet (it turns this on)",
        "service-cluster-ip-range": "set networking.serviceSubnet",
        "secure-port": _PORT + " (10257)",
    },
    "kube-scheduler": {
        "kubeconfig": _KUBECONFIG,
        "authentication-kubeconfig": _KUBECONFIG,
        "authorization-kubeconfig": _KUBECONFIG,
        "secure-port": _PORT + " (10259)",
    },
}

# Legitimate to change, with a cost the user should see on every run (inventory warning).
WARNED: dict[str, dict[str, str]] = {
    "etcd": {
        "feature-gates": "replaces bootstrap's InitialCorruptCheck=true (etcd 3.6+): "
        "include it in your value",
        # Checked further by check_value: the checks read metrics on loopback:2381.
        "listen-metrics-urls": "bootstrap's checks read http://127.0.0.1:2381 through the "
        "SSH tunnel and the kubelet probes the first URL",
    },
    "kube-apiserver": {
        # Not rendered (the default listens everywhere), but a single address breaks
        # either the clients (loopback only) or bootstrap's checks (the master's address).
        "bind-address": "clients reach the apiserver at masters[].address and bootstrap's "
        "checks on the master's loopback",
        "service-account-issuer": "changing it invalidates every service account token "
        "already issued",
        "authorization-mode": "admin.conf is bound through RBAC and nodes through Node: "
        "keep both",
        "requestheader-allowed-names": "must keep front-proxy-client, the client "
        "certificate bootstrap issues for the aggregation layer",
    },
    "kube-controller-manager": {
        "bind-address": "bootstrap's health checks reach it on the master's loopback",
        "leader-elect": "false makes every master's controller-manager act at once",
    },
    "kube-scheduler": {
        "bind-address": "bootstrap's health checks reach it on the master's loopback",
        "leader-elect": "false makes every master's scheduler act at once",
    },
}

# kubeadm's defaults that carry no state bootstrap relies on: replaced silently.
TUNABLE: dict[str, frozenset[str]] = {
    "etcd": frozenset({
        "snapshot-count",
        "watch-progress-notify-interval",
        "experimental-initial-corrupt-check",
        "experimental-watch-progress-notify-interval",
    }),
    "kube-apiserver": frozenset({
        "allow-privileged",
        "enable-admission-plugins",
        "enable-bootstrap-token-auth",
        "kubelet-preferred-address-types",
        "requestheader-extra-headers-prefix",
        "requestheader-group-headers",
        "requestheader-username-headers",
    }),
    "kube-controller-manager": frozenset({"controllers", "use-service-account-credentials"}),
    "kube-scheduler": frozenset(),
}

_LOOPBACK_OR_ANY = ("127.0.0.1", "::1", "localhost", "0.0.0.0", "::")


def normalize(flag: str) -> str:
    """The name a Kubernetes component sees (pflag maps '_' to '-')."""
    return flag.replace("_", "-")


def refusal(component: str, flag: str) -> str | None:
    """Why ``flag`` may not be set in extraArgs for ``component``; None when it may."""
    return MANAGED.get(component, {}).get(normalize(flag))


def managed_list(component: str) -> str:
    return ", ".join(sorted(MANAGED.get(component, {})))


def check_value(component: str, flag: str, value: str) -> tuple[str | None, str | None]:
    """(error, warning) for an extra arg the loader lets through: an error where the
    value would break what bootstrap relies on, a warning where it is legitimate but has
    a cost; (None, None) for a tunable or unrelated flag, or a harmless value."""
    name = normalize(flag)
    why = WARNED.get(component, {}).get(name)
    if why is None:
        return None, None
    items = [v.strip() for v in value.split(",")]
    if name == "bind-address" and component == "kube-apiserver":
        if value not in ("0.0.0.0", "::"):
            return f"{echo(value)}: {why}; leave it unset (every address) or use 0.0.0.0 / ::", None
        return None, None
    if name == "bind-address":
        if value not in _LOOPBACK_OR_ANY:
            return f"{echo(value)}: {why}; use 127.0.0.1 (the default) or 0.0.0.0 / ::", None
        if value in ("0.0.0.0", "::"):
            return None, f"serves health and /metrics on every interface ({why})"
        return None, None
    if name == "listen-metrics-urls":
        if not any(_metrics_reachable(url) for url in items):
            return (
                f"no http URL on a loopback or wildcard address at port {ETCD_METRICS_PORT}: "
                f"{why}; keep http://127.0.0.1:{ETCD_METRICS_PORT} in the list",
                None,
            )
        return None, None
    if name == "leader-elect":
        return (None, why) if value.lower() == "false" else (None, None)
    if name == "authorization-mode":
        return (None, None) if {"Node", "RBAC"} <= set(items) else (None, why)
    if name == "requestheader-allowed-names":
        return (None, None) if "front-proxy-client" in items or not value else (None, why)
    if name == "feature-gates":
        return (None, None) if "InitialCorruptCheck=true" in items else (None, why)
    return None, f"overrides bootstrap's value: {why}"


def _metrics_reachable(url: str) -> bool:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return False
    host = parts.hostname or ""
    if parts.scheme != "http" or port != ETCD_METRICS_PORT:
        return False
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified
