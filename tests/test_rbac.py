"""The ClusterRoleBindings bootstrap creates, per Kubernetes minor (bootstrap/rbac.py)."""

from __future__ import annotations

import json

from bootstrap.manifests.rbac import bootstrap_bindings
from bootstrap.pki.table import leaf_specs
from tests.render_support import example_inventory, example_inventory_137


def test_kubelet_client_binding_comes_with_the_certificate_without_o() -> None:
    for inventory, with_binding in (
        (example_inventory(), False),  # v1.34: O=kubeadm:cluster-admins
        (example_inventory(kubernetes_version="v1.35.4", etcd_version="3.6.6"), False),
        (example_inventory(kubernetes_version="v1.36.3", etcd_version="3.6.8"), True),
        (example_inventory_137(), True),
    ):
        names = [b.name for b in bootstrap_bindings(inventory)]
        spec = next(
            s for s in leaf_specs(inventory, inventory.masters[0])
            if s.name == "apiserver-kubelet-client"
        )
        # Without the O the apiserver is no one to the kubelets unless the binding exists.
        assert (spec.organizations == ()) == with_binding, inventory.kubernetes_version
        assert ("kubeadm:apiserver-kubelet-client" in names) == with_binding
        assert names[0] == "kubeadm:cluster-admins"


def test_binding_bodies_are_kubeadms() -> None:
    admins, kubelet = bootstrap_bindings(example_inventory_137())
    assert json.loads(kubelet.body()) == {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "kubeadm:apiserver-kubelet-client"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "system:kubelet-api-admin",
        },
        "subjects": [{
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "User",
            "name": "kube-apiserver-kubelet-client",
        }],
    }
    assert json.loads(admins.body())["subjects"] == [{
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "kubeadm:cluster-admins",
    }]
    assert json.loads(admins.body())["roleRef"]["name"] == "cluster-admin"
