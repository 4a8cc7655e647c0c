"""Per-master desired state: PKI + kubeconfigs + encryption config + four manifests.

Pure: given the inventory, the loaded PKI and the templates, returns values. The only
input that depends on the live cluster is how each master's etcd joins (``EtcdCluster``),
which the caller decides (all-new for a first init, ``existing`` for a join).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bootstrap.inventory.model import COMPONENTS, MANIFESTS_DIR, Inventory, Master
from bootstrap.manifests.render import ENCRYPTION_CONFIG_PATH, EtcdCluster, render_manifests
from bootstrap.model import FileSpec
from bootstrap.pki import ClusterPKI


def manifest_path(component: str) -> str:
    return f"{MANIFESTS_DIR}/{component}.yaml"


@dataclass(frozen=True)
class MasterPlan:
    master: Master
    support_files: dict[str, FileSpec]  # PKI, kubeconfigs, encryption config
    manifests: dict[str, FileSpec]  # component -> manifest FileSpec

    @property
    def tree(self) -> dict[str, FileSpec]:
        tree = dict(self.support_files)
        tree.update({spec.path: spec for spec in self.manifests.values()})
        return tree


def new_cluster(inventory: Inventory) -> EtcdCluster:
    """Every master starts at once with the full member list (the fast path)."""
    return EtcdCluster(
        initial_cluster=tuple((m.name, m.peer_url) for m in inventory.masters),
        state="new",
    )


def support_files(inventory: Inventory, pki: ClusterPKI, master: Master) -> dict[str, FileSpec]:
    files: dict[str, FileSpec] = {}
    files.update(pki.host_files(master.name))
    files.update(pki.kubeconfig_files(master.name))
    if inventory.encryption_at_rest:
        files[ENCRYPTION_CONFIG_PATH] = FileSpec(
            ENCRYPTION_CONFIG_PATH, pki.encryption_config, 0o600, secret=True
        )
    return files


def build_plans(
    inventory: Inventory,
    pki: ClusterPKI,
    *,
    templates_dir: Path | None = None,
    etcd_cluster_for: Callable[[Master], EtcdCluster] | None = None,
) -> dict[str, MasterPlan]:
    default = new_cluster(inventory)
    plans: dict[str, MasterPlan] = {}
    for master in inventory.masters:
        files = support_files(inventory, pki, master)
        etcd = etcd_cluster_for(master) if etcd_cluster_for else default
        rendered = render_manifests(inventory, master, files, etcd, templates_dir=templates_dir)
        plans[master.name] = MasterPlan(master, files, _by_component(rendered))
    return plans


def _by_component(rendered: Mapping[str, FileSpec]) -> dict[str, FileSpec]:
    by_component: dict[str, FileSpec] = {}
    for component in COMPONENTS:
        path = manifest_path(component)
        if path not in rendered:
            raise KeyError(f"render produced no {path}")
        by_component[component] = rendered[path]
    return by_component
