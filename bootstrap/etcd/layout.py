"""How each master's etcd is rendered: a pure decision (issue 15).

From the state dir's record, the live cluster's member list (when one answers) and the
inventory: recorded, read back from a member's own manifest, a new cluster, or a join.
bootstrap.run.etcdview asks the cluster and calls ``decide_layout``; bootstrap.workflow.join
changes a layout only through ``EtcdLayout``'s methods.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bootstrap.etcd.client import Member
from bootstrap.etcd.membership import join_cluster, member_of, new_cluster
from bootstrap.etcd.view import ClusterView
from bootstrap.inventory.model import Inventory, Master
from bootstrap.manifests.components import EtcdCluster


@dataclass
class EtcdLayout:
    """How each inventory master's etcd is rendered, and who still has to join."""

    clusters: dict[str, EtcdCluster]
    joiners: list[str]  # join order: a join in progress first, then inventory order
    view: ClusterView | None  # None: offline (render), nothing was asked
    notes: list[str] = field(default_factory=list)

    def cluster_for(self, master: Master) -> EtcdCluster:
        return self.clusters[master.name]

    def set_cluster(self, name: str, cluster: EtcdCluster) -> None:
        """A joiner's rendering once its member is added (join)."""
        self.clusters[name] = cluster


def provisional(master: Master, inventory: Inventory, known: Sequence[str]) -> EtcdCluster:
    """A joiner's rendering before its member is added (shown by `plan`, never pushed)."""
    pairs = [(m.name, m.peer_url) for m in inventory.masters if m.name in known]
    pairs.append((master.name, master.peer_url))
    return EtcdCluster(initial_cluster=tuple(pairs), state="existing")


def decide_layout(
    inventory: Inventory,
    record: dict[str, EtcdCluster],
    view: ClusterView,
    adopt: Callable[[Master, Sequence[Member]], EtcdCluster],
    save: Callable[[dict[str, EtcdCluster]], None],
) -> EtcdLayout:
    """The decision, given what was asked: the record, the cluster's answer, and how to
    adopt a member the record does not know (read back from its host). ``save`` gets the
    record when the decision changed it."""
    if view.members is None:
        return layout_without_cluster(inventory, record, view)
    members = view.members
    clusters: dict[str, EtcdCluster] = {}
    joiners: list[str] = []
    notes: list[str] = []
    changed = False
    for master in inventory.masters:
        member = member_of(master, members)
        recorded = record.get(master.name)
        if member is not None and member.started and not member.is_learner:
            if recorded is None:
                recorded = adopt(master, members)
                record[master.name] = recorded
                changed = True
            clusters[master.name] = recorded
            continue
        joiners.append(master.name)
        if member is None and recorded is not None:
            # Recorded, but no longer a member: removed (or wiped and removed) by hand.
            notes.append(f"{master.name} was a member once but is not now: it joins again")
            del record[master.name]
            changed = True
            recorded = None
        clusters[master.name] = recorded or join_cluster(master, members, inventory)
    if changed:
        save(record)
    # A join in progress (its member exists) goes first: etcd allows one learner.
    joiners.sort(key=lambda n: member_of(inventory.master(n), members) is None)
    return EtcdLayout(clusters, joiners, view, notes)




def stale_record(inventory: Inventory, record: dict[str, EtcdCluster]) -> list[str]:
    """Recorded masters whose rendering does not name their current peer URL: the record
    describes another cluster (hosts re-created with other addresses, a state dir reused)."""
    return [
        name
        for name, cluster in sorted(record.items())
        if any(m.name == name for m in inventory.masters)
        and (name, inventory.master(name).peer_url) not in cluster.initial_cluster
    ]


def layout_without_cluster(
    inventory: Inventory, record: dict[str, EtcdCluster], view: ClusterView | None
) -> EtcdLayout:
    notes: list[str] = []
    stale = stale_record(inventory, record)
    if stale and view is not None:
        # No member answers and the record names other peer URLs for these masters: its
        # --initial-cluster would make etcd refuse to start ("missing from
        # --initial-advertise-peer-urls"). A cluster that is merely down keeps its URLs.
        notes.append(
            f"the state dir's etcd record names other peer URLs for {', '.join(stale)} and no "
            "member answers: rendering a new cluster from the inventory"
        )
        record = {}
    if not record:  # never initialised from this state dir: everybody starts together
        every = new_cluster(inventory.masters)
        return EtcdLayout({m.name: every for m in inventory.masters}, [], view, notes)
    clusters: dict[str, EtcdCluster] = {}
    joiners: list[str] = []
    for master in inventory.masters:
        recorded = record.get(master.name)
        if recorded is None:
            joiners.append(master.name)
            recorded = provisional(master, inventory, list(record))
        clusters[master.name] = recorded
    return EtcdLayout(clusters, joiners, view)
