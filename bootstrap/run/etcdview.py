"""What the live etcd cluster looks like, asked through each master's SSH tunnel.

The client cert is ``etcd/healthcheck-client`` (kubeadm's choice for membership calls);
every master is asked for its own Status, the first one that answers also for the
member list. Failures become text (which member is down and why), never exceptions:
the callers decide whether that blocks them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from bootstrap.errors import BootstrapError, OperationError
from bootstrap.etcd.client import EtcdClient, Member, Status, TLSFiles
from bootstrap.inventory.model import ETCD_CLIENT_PORT, Master, url_host
from bootstrap.run.session import Session

PROBE_TIMEOUT = 3.0


def healthcheck_tls(session: Session, name: str) -> TLSFiles:
    etcd = "/etc/kubernetes/pki/etcd"
    return TLSFiles(
        ca=session.credential(name, f"{etcd}/ca.crt"),
        cert=session.credential(name, f"{etcd}/healthcheck-client.crt"),
        key=session.credential(name, f"{etcd}/healthcheck-client.key"),
    )


def member_label(session: Session, name: str) -> str:
    """How messages name a master's etcd: its name and real address, not the tunnel's."""
    try:
        address = url_host(session.inventory.master(name).address)
    except KeyError:
        return name
    return f"{name} ({address}:{ETCD_CLIENT_PORT})"


@contextlib.contextmanager
def etcd_client(
    session: Session, name: str, timeout: float = PROBE_TIMEOUT
) -> Iterator[EtcdClient]:
    """A client for ``name``'s local member through its tunnel."""
    port = session.tunnel(name, ETCD_CLIENT_PORT)
    tls = healthcheck_tls(session, name)
    label = member_label(session, name)
    with EtcdClient("127.0.0.1", port, tls, timeout=timeout, label=label) as client:
        yield client


@dataclass
class ClusterView:
    members: list[Member] | None  # None: no master answered a member list
    source: str | None  # the master that answered it
    statuses: dict[str, Status | str] = field(default_factory=dict)  # master -> Status or why not
    pods: dict[str, str] = field(default_factory=dict)  # master -> its etcd pod, as the node says
    errors: dict[str, BootstrapError] = field(default_factory=dict)  # why not, as raised

    @property
    def exists(self) -> bool:
        return self.members is not None

    def healthy(self) -> set[int]:
        """Member ids whose own etcd answered Status."""
        return {s.member_id for s in self.statuses.values() if isinstance(s, Status)}

    def why_down(self, name: str) -> str:
        status = self.statuses.get(name, "not asked")
        text = status if isinstance(status, str) else "answers"
        pod = self.pods.get(name)
        return f"{text}; etcd pod: {pod}" if pod else text

    def leader(self) -> int:
        """The leader id the answering members agree on, 0 when none or disagreement."""
        leaders = {s.leader_id for s in self.statuses.values() if isinstance(s, Status)}
        return next(iter(leaders)) if len(leaders) == 1 else 0

    def name_of(self, member_id: int) -> str:
        for m in self.members or []:
            if m.id == member_id:
                return m.name or m.hex_id
        return f"{member_id:x}"


def probe_cluster(session: Session, masters: Sequence[Master] | None = None) -> ClusterView:
    """Ask every connected master's etcd (in parallel). Hosts not connected are skipped."""
    from bootstrap.node.podstate import read_pod_states

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


def require_members(view: ClusterView, what: str) -> list[Member]:
    if view.members is None:
        down = "; ".join(f"{n}: {view.why_down(n)}" for n in sorted(view.statuses))
        raise OperationError(
            f"{what}: no etcd member answers ({down or 'no master reachable'})",
            hint="the cluster must be up; `bootstrap status` shows each master's etcd pod",
        )
    return view.members


def membership_notes(session: Session) -> list[str]:
    """For `status`: stale members (with the command that removes them) and inventory
    masters that are not members yet. Empty when no member answers."""
    for master in session.inventory.masters:
        try:
            with etcd_client(session, master.name) as client:
                members = client.members()
        except BootstrapError:
            continue
        return membership_lines(session, members)
    return []


def membership_lines(session: Session, members: Sequence[Member]) -> list[str]:
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
