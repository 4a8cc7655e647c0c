"""What the live etcd cluster looks like, asked through each master's SSH tunnel.

The client cert is ``etcd/healthcheck-client`` (kubeadm's choice for membership calls);
every master is asked for its own Status, the first one that answers also for the
member list. Failures become text (which member is down and why), never exceptions:
the callers decide whether that blocks them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from bootstrap.errors import BootstrapError
from bootstrap.etcd.client import EtcdClient, Member, Status, TLSFiles
from bootstrap.etcd.membership import ETCD_MANIFEST, cluster_from_manifest, join_cluster
from bootstrap.etcd.view import ClusterView
from bootstrap.inventory.model import ETCD_CLIENT_PORT, Inventory, Master, url_host
from bootstrap.manifests.components import EtcdCluster
from bootstrap.model import RemoteHost

if TYPE_CHECKING:
    from bootstrap.etcd.layout import EtcdLayout

PROBE_TIMEOUT = 3.0
T = TypeVar("T")


class ClusterAccess(Protocol):
    """What the etcd view needs from a run: the narrow contract bootstrap.run.session's
    Session fulfils (the view never imports the session)."""

    inventory: Inventory

    @property
    def hosts(self) -> dict[str, RemoteHost]: ...

    def host(self, name: str) -> RemoteHost: ...

    def each_host(
        self, fn: Callable[[Master, RemoteHost], T], masters: Sequence[Master] | None = None
    ) -> dict[str, T]: ...

    def tunnel(self, name: str, remote_port: int) -> int: ...

    def credential(self, name: str, path: str) -> Path: ...


def healthcheck_tls(session: ClusterAccess, name: str) -> TLSFiles:
    etcd = "/etc/kubernetes/pki/etcd"
    return TLSFiles(
        ca=session.credential(name, f"{etcd}/ca.crt"),
        cert=session.credential(name, f"{etcd}/healthcheck-client.crt"),
        key=session.credential(name, f"{etcd}/healthcheck-client.key"),
    )


def member_label(session: ClusterAccess, name: str) -> str:
    """How messages name a master's etcd: its name and real address, not the tunnel's."""
    try:
        address = url_host(session.inventory.master(name).address)
    except KeyError:
        return name
    return f"{name} ({address}:{ETCD_CLIENT_PORT})"


@contextlib.contextmanager
def etcd_client(
    session: ClusterAccess, name: str, timeout: float = PROBE_TIMEOUT
) -> Iterator[EtcdClient]:
    """A client for ``name``'s local member through its tunnel."""
    port = session.tunnel(name, ETCD_CLIENT_PORT)
    tls = healthcheck_tls(session, name)
    label = member_label(session, name)
    with EtcdClient("127.0.0.1", port, tls, timeout=timeout, label=label) as client:
        yield client


def probe_cluster(session: ClusterAccess, masters: Sequence[Master] | None = None) -> ClusterView:
    """Ask every connected master's etcd (in parallel). Hosts not connected are skipped."""
    from bootstrap.node.view import read_pod_states

    hosts = session.hosts
    chosen = [m for m in (masters or session.inventory.masters) if m.name in hosts]

    Result = tuple[Status | BootstrapError, list[Member] | None, str]

    def one(master: Master, _host: object) -> Result:
        members: list[Member] | None = None
        status: Status | BootstrapError
        try:
            with etcd_client(session, master.name) as client:
                status = client.status()
                with contextlib.suppress(BootstrapError):
                    members = client.members()
        except BootstrapError as exc:
            status = exc
        pod = ""
        if not isinstance(status, Status):
            with contextlib.suppress(BootstrapError):
                pod = read_pod_states(session.host(master.name))["etcd"].describe()
        return status, members, pod

    results = session.each_host(one, chosen) if chosen else {}
    view = ClusterView(members=None, source=None)
    for master in chosen:
        status, members, pod = results[master.name]
        if isinstance(status, BootstrapError):
            view.errors[master.name] = status
            view.statuses[master.name] = status.message.splitlines()[0]
        else:
            view.statuses[master.name] = status
        if pod:
            view.pods[master.name] = pod
        if view.members is None and members is not None:
            view.members, view.source = members, master.name
    return view


def membership_lines(session: ClusterAccess, members: Sequence[Member]) -> list[str]:
    """Stale members and inventory masters that are not (voting) members, each with the
    command that fixes it."""
    from bootstrap.etcd.membership import member_of, stale_member_lines

    lines = stale_member_lines(session.inventory, members)
    for m in session.inventory.masters:
        member = member_of(m, members)
        if member is None:
            lines.append(
                f"{m.name} is in the inventory but not an etcd member: "
                f"`bootstrap add-master {m.name}` (or `bootstrap init`)"
            )
        elif member.is_learner:
            lines.append(
                f"{m.name} is an etcd learner ({member.hex_id}), not promoted: resume with "
                f"`bootstrap add-master {m.name}`"
            )
    return lines


def _adopt(session: ClusterAccess, master: Master, members: Sequence[Member]) -> EtcdCluster:
    """A member the record does not know: read what its host runs, so nothing restarts."""
    try:
        found = cluster_from_manifest(session.host(master.name).read_file(ETCD_MANIFEST))
    except BootstrapError:
        found = None
    if found is not None:
        return found
    return join_cluster(master, [m for m in members if m.started], session.inventory)


def resolve_layout(session: ClusterAccess, state_dir: Path, *, offline: bool) -> EtcdLayout:
    """Ask the cluster (unless offline) and decide how every master's etcd is rendered."""
    from bootstrap.etcd.layout import decide_layout, layout_without_cluster
    from bootstrap.etcd.membership import load_record, save_record

    record = load_record(state_dir)
    if offline:
        return layout_without_cluster(session.inventory, record, None)
    view = probe_cluster(session)
    return decide_layout(
        session.inventory,
        record,
        view,
        lambda master, members: _adopt(session, master, members),
        lambda changed: save_record(state_dir, changed),
    )
