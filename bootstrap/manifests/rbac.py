"""The ClusterRoleBindings kubeadm creates that our certificates depend on.

- ``kubeadm:cluster-admins``: Group kubeadm:cluster-admins -> cluster-admin. admin.conf's
  client certificate carries only that group (since 1.29), so it can do nothing before
  the binding exists (kubeadm.md §3, floor.md §5).
- ``kubeadm:apiserver-kubelet-client``: User kube-apiserver-kubelet-client ->
  system:kubelet-api-admin. From v1.36 the apiserver's kubelet client certificate has no
  O (bootstrap/pki/table.py follows kubeadm there); without this binding the kubelets
  refuse the apiserver and ``kubectl logs/exec/port-forward`` break (kubeadm.md §11.2;
  k/k #138957; kubeadm v1.36.3 and v1.37.2 AllowAPIServerToAccessKubeletAPI).

Pure data; bootstrap/checks.py posts them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from bootstrap.inventory.model import Inventory
from bootstrap.pki.table import KUBEADM_CLUSTER_ADMINS, KUBELET_CLIENT_UNBOUND_SINCE

RBAC_GROUP = "rbac.authorization.k8s.io"


@dataclass(frozen=True)
class Binding:
    name: str
    role: str  # a ClusterRole
    subject_kind: str  # "Group" | "User"
    subject: str

    def body(self) -> bytes:
        """The ClusterRoleBinding as the JSON the API takes."""
        doc = {
            "apiVersion": f"{RBAC_GROUP}/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": self.name},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": self.role},
            "subjects": [{"apiGroup": RBAC_GROUP, "kind": self.subject_kind, "name": self.subject}],
        }
        return json.dumps(doc, separators=(",", ":")).encode()


CLUSTER_ADMINS = Binding(KUBEADM_CLUSTER_ADMINS, "cluster-admin", "Group", KUBEADM_CLUSTER_ADMINS)
KUBELET_API_ADMIN = Binding(
    "kubeadm:apiserver-kubelet-client",
    "system:kubelet-api-admin",
    "User",
    "kube-apiserver-kubelet-client",
)


def bootstrap_bindings(inventory: Inventory) -> tuple[Binding, ...]:
    """The bindings a cluster of this inventory's version needs, in creation order."""
    if inventory.kubernetes_minor >= KUBELET_CLIENT_UNBOUND_SINCE:
        return (CLUSTER_ADMINS, KUBELET_API_ADMIN)
    return (CLUSTER_ADMINS,)
