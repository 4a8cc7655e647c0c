"""Kubeconfig documents with embedded client certificates (kubeadm.md §3, §11.12).

Pure: the table of kubeconfig files and a builder/parser for the documents. The client
certificates themselves are issued by ``bootstrap.pki`` from ``KUBECONFIGS``.

Shape (kubeadm's): one cluster named after the inventory's cluster name with
``certificate-authority-data`` (ca.crt) and ``server``; one user named after the client
certificate's CN with ``client-certificate-data``/``client-key-data``; one context
``<CN>@<cluster>``, the current one.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from bootstrap.errors import StateError
from bootstrap.local import yamltext

ADMIN_CONF = "admin.conf"
SUPER_ADMIN_CONF = "super-admin.conf"
CONTROLLER_MANAGER_CONF = "controller-manager.conf"
SCHEDULER_CONF = "scheduler.conf"
KUBELET_CONF = "kubelet.conf"

Endpoint = Literal["cluster", "local"]  # control-plane endpoint, or the master's own ADV:6443
Scope = Literal["cluster", "master"]  # one client cert for the cluster, or one per master


@dataclass(frozen=True)
class KubeconfigSpec:
    file_name: str  # under /etc/kubernetes
    common_name: str
    organizations: tuple[str, ...]
    endpoint: Endpoint
    scope: Scope
    first_master_only: bool = False

    @property
    def cert_name(self) -> str:
        """Name of the client certificate in the state dir, e.g. "admin"."""
        return self.file_name.removesuffix(".conf")


def kubeconfig_specs(node_name: str) -> tuple[KubeconfigSpec, ...]:
    """The five kubeconfigs of a master (super-admin.conf only lands on the first one)."""
    return (
        # Since 1.29 admin.conf is RBAC-bound (Group kubeadm:cluster-admins -> cluster-admin).
        KubeconfigSpec(
            ADMIN_CONF, "kubernetes-admin", ("kubeadm:cluster-admins",), "cluster", "cluster"
        ),
        # Break-glass, RBAC-bypassing; kubeadm creates it on the init node only.
        KubeconfigSpec(
            SUPER_ADMIN_CONF,
            "kubernetes-super-admin",
            ("system:masters",),
            "cluster",
            "cluster",
            first_master_only=True,
        ),
        KubeconfigSpec(
            CONTROLLER_MANAGER_CONF, "system:kube-controller-manager", (), "local", "master"
        ),
        KubeconfigSpec(SCHEDULER_CONF, "system:kube-scheduler", (), "local", "master"),
        # Local endpoint: kubeadm 1.33+ (ControlPlaneKubeletLocalMode, unconditional in 1.36).
        # Cert and key stay embedded: kubeadm's later switch to the kubelet's rotated
        # /var/lib/kubelet/pki/kubelet-client-current.pem needs a TLS bootstrap we skip.
        KubeconfigSpec(
            KUBELET_CONF, f"system:node:{node_name}", ("system:nodes",), "local", "master"
        ),
    )


def context_name(user: str, cluster_name: str) -> str:
    return f"{user}@{cluster_name}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def build_kubeconfig(
    *,
    cluster_name: str,
    server: str,
    ca_pem: bytes,
    user: str,
    client_cert_pem: bytes,
    client_key_pem: bytes,
) -> bytes:
    """The document as kubeadm writes it (keys in clientcmd's order). Deterministic."""
    context = context_name(user, cluster_name)
    document: dict[str, Any] = {
        "apiVersion": "v1",
        "clusters": [
            {
                "cluster": {"certificate-authority-data": _b64(ca_pem), "server": server},
                "name": cluster_name,
            }
        ],
        "contexts": [{"context": {"cluster": cluster_name, "user": user}, "name": context}],
        "current-context": context,
        "kind": "Config",
        "preferences": {},
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(client_cert_pem),
                    "client-key-data": _b64(client_key_pem),
                },
            }
        ],
    }
    # A huge width keeps each base64 blob on one line, as kubectl writes it.
    text = yamltext.dump(document, sort_keys=False, default_flow_style=False, width=1 << 30)
    return text.encode("utf-8")


@dataclass(frozen=True)
class Kubeconfig:
    """The parts of a single-cluster kubeconfig the tool uses (its current context)."""

    cluster_name: str
    server: str
    user: str
    ca_pem: bytes = field(repr=False)
    client_cert_pem: bytes = field(repr=False)
    client_key_pem: bytes = field(repr=False)


def parse_kubeconfig(data: bytes, source: str) -> Kubeconfig:
    """Read the current context of a kubeconfig with embedded data. Raises StateError."""
    hint = f"delete {source}: the next `bootstrap init` writes it again from the state directory"
    try:
        document = yamltext.load(data)
        current = document["current-context"]
        context = _named(document["contexts"], current)["context"]
        cluster = _named(document["clusters"], context["cluster"])["cluster"]
        user = _named(document["users"], context["user"])["user"]
        return Kubeconfig(
            cluster_name=str(context["cluster"]),
            server=str(cluster["server"]),
            user=str(context["user"]),
            ca_pem=base64.b64decode(cluster["certificate-authority-data"], validate=True),
            client_cert_pem=base64.b64decode(user["client-certificate-data"], validate=True),
            client_key_pem=base64.b64decode(user["client-key-data"], validate=True),
        )
    except (yaml.YAMLError, KeyError, TypeError, binascii.Error, ValueError) as exc:
        raise StateError(
            f"{source} is not a usable kubeconfig ({type(exc).__name__}: {exc})", hint=hint
        ) from exc


def _named(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
    for item in items:
        if item.get("name") == name:
            return item
    raise KeyError(name)
