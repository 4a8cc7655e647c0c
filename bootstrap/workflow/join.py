"""Growing the cluster: new masters join etcd as learners, one at a time.

bootstrap.etcd.layout decides how every master's etcd is rendered (the record, a member's own
manifest read back, a new cluster, or a join). ``begin_init`` runs before any init phase:
with new masters in the inventory it checks the cluster is healthy (refusing before any
write) and keeps the joiners out of the usual phases; the ``join`` phase then adds them one
by one (reference/kubeadm.md §4.3, §10 item 5):

  list members (peer URL present: already added) → add as learner → push PKI, kubeconfigs
  and an etcd manifest with the full --initial-cluster and state "existing" → wait until
  the learner runs → promote (retried while etcd says it has not caught up, bounded by
  timeouts.etcdPromote) → push its control-plane manifests → wait for quorum.

Every step reads the cluster first, so a run interrupted anywhere resumes from where the
cluster is: never a second member for the same peer URL, never two learners.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from bootstrap.errors import (
    BootstrapError,
    EtcdError,
    OperationError,
    PodCannotStart,
    UsageError,
    WaitTimeout,
    plural,
)
from bootstrap.etcd.client import LearnerNotReady, Member, MemberNotFound, Status
from bootstrap.etcd.layout import EtcdLayout
from bootstrap.etcd.membership import (
    ETCD_MANIFEST,
    join_blockers,
    join_cluster,
    join_decision,
    load_record,
    member_of,
    save_record,
    voters,
)
from bootstrap.etcd.view import ClusterView, require_members
from bootstrap.health import waits
from bootstrap.health.poll import on_change, poll, retry
from bootstrap.inventory.model import ETCD_DATA_DIR, Inventory, Master
from bootstrap.manifests.components import EtcdCluster
from bootstrap.run.etcdview import etcd_client, probe_cluster
from bootstrap.run.session import Session

PROMOTE_EVERY = 0.75  # seconds between promote attempts (kubeadm: 0.5)
PHASE = "join"
UNHEALTHY = "unhealthy cluster"  # etcd's ErrUnhealthy text


def record_rendered(session: Session) -> None:
    """After the etcd phase pushed them: remember how the cluster's masters are rendered."""
    record = load_record(session.state_dir)
    layout = session.etcd_layout
    wanted = {m.name: layout.clusters[m.name] for m in session.masters}
    if any(record.get(n) != c for n, c in wanted.items()):
        record.update(wanted)
        save_record(session.state_dir, record)


# --- before init ---------------------------------------------------------------------------


def _down_members(
    view: ClusterView, inventory: Inventory, members: Sequence[Member]
) -> dict[str, str]:
    """Inventory masters that are voters (or started) but whose etcd does not answer."""
    down: dict[str, str] = {}
    for master in inventory.masters:
        member = member_of(master, members)
        if member is None or (member.is_learner and not member.started):
            continue
        if not isinstance(view.statuses.get(master.name), Status):
            down[master.name] = view.why_down(master.name)
    return down


def _check_ready(session: Session, joiner: Master, view: ClusterView) -> list[Member]:
    members = require_members(view, f"cannot add {joiner.name}")
    down = _down_members(view, session.inventory, members)
    reasons = join_blockers(joiner, session.inventory, members, down)
    if view.leader() == 0 and not reasons:
        reasons.append("the answering members know no common leader (quorum lost?)")
    if reasons:
        raise OperationError(
            f"the cluster is not ready for {joiner.name} to join: " + "; ".join(reasons),
            hint="nothing was added; fix the above and re-run (`bootstrap status` shows "
            "each master's etcd)",
        )
    return members


def _refuse_wiped_members(session: Session, layout: EtcdLayout) -> None:
    """A member whose etcd is down and whose data dir is empty must not be restarted: it
    would come back under its old member id having forgotten what it acknowledged (raft
    assumes members never lose their log). It has to be removed and joined again."""
    from bootstrap.node.preflight import gather

    view = layout.view
    if view is None or view.members is None:
        return
    for master in session.inventory.masters:
        member = member_of(master, view.members)
        if (
            member is None
            or not member.started
            or isinstance(view.statuses.get(master.name), Status)
        ):
            continue
        if gather(session.host(master.name)).etcd_data_entries:
            continue
        raise OperationError(
            f"{master.name} is etcd member {member.hex_id} but its etcd does not answer and its "
            f"{ETCD_DATA_DIR} is empty (host wiped or replaced?): starting it again would bring "
            "back a member that forgot its log",
            hint=f"remove the member first (`bootstrap remove-master {master.name}`), then "
            "`bootstrap init` adds it back as a new member; nothing was written",
        )


def begin_init(session: Session) -> None:
    """Find new masters and refuse to go on with an unhealthy cluster (nothing written yet)."""
    layout = session.etcd_layout
    for note in layout.notes:
        session.console.event("etcd", note)
    _refuse_wiped_members(session, layout)
    if not layout.joiners:
        return
    view = layout.view
    names = ", ".join(layout.joiners)
    if view is None or view.members is None:
        detail = (
            "; ".join(f"{n}: {view.why_down(n)}" for n in sorted(view.statuses)) if view else ""
        )
        raise OperationError(
            f"new masters {names} cannot join: the cluster was initialised from this state dir "
            f"but no etcd member answers ({detail or 'no master reachable'})",
            hint="bring the existing masters back first (`bootstrap init` with the old "
            "inventory, `bootstrap status`)",
        )
    first = session.inventory.master(layout.joiners[0])
    members = _check_ready(session, first, view)
    order = {m.name: i for i, m in enumerate(session.inventory.masters)}
    voting = sorted((m.name or m.hex_id for m in voters(members)), key=lambda n: order.get(n, 99))
    session.console.event(
        "etcd",
        f"cluster exists: {plural(len(voting), 'voter')} ({', '.join(voting)}), leader "
        f"{view.name_of(view.leader())}; joining {names} one at a time after the existing "
        "masters converge",
    )
    session.defer_joins(layout.joiners)


# --- the join ------------------------------------------------------------------------------


def _healthy_source(session: Session, view: ClusterView, joiner: Master) -> str:
    for master in session.inventory.masters:
        if master.name != joiner.name and isinstance(view.statuses.get(master.name), Status):
            member = member_of(master, view.members or [])
            if member is not None and not member.is_learner:
                return master.name
    raise OperationError(
        f"no healthy voting member to add {joiner.name} through",
        hint="`bootstrap status` shows each master's etcd",
    )


def _require_empty_data_dir(session: Session, joiner: Master) -> None:
    from bootstrap.node.preflight import gather

    entries = gather(session.host(joiner.name)).etcd_data_entries
    if entries:
        raise OperationError(
            f"{joiner.name}: {ETCD_DATA_DIR} is not empty ({', '.join(entries)}) but it is not "
            "an etcd member: old data would make its etcd refuse to join (or start a second "
            "cluster)",
            hint=f"wipe it first: `bootstrap reset --master {joiner.name}`; nothing was added",
        )


def _add_learner(session: Session, joiner: Master, source: str) -> tuple[Member, list[Member]]:
    """Member add as learner; retried while etcd calls the cluster unhealthy.

    With --strict-reconfig-check (etcd's default) a member add is refused until every
    member has been connected for 5 s, so right after the previous join it says
    "unhealthy cluster" for a few seconds.
    """
    timeout = session.inventory.timeouts.etcd_quorum
    said = False

    def add() -> tuple[Member, list[Member]]:
        with etcd_client(session, source, timeout=5.0) as client:
            return client.add_learner(joiner.peer_url)

    def refused(_exc: EtcdError) -> None:
        nonlocal said
        if not said:
            session.console.event(
                PHASE,
                "etcd refuses new members until every member has been connected for 5 s "
                f"(strict reconfig check): retrying for up to {timeout:.0f}s",
                joiner.name,
            )
            said = True

    return retry(
        f"adding {joiner.name} as a learner",
        add,
        lambda exc: UNHEALTHY in exc.message.lower(),
        EtcdError,
        timeout,
        PROMOTE_EVERY,
        progress=refused,
    )


def _set_rendering(session: Session, joiner: Master, members: Sequence[Member]) -> EtcdCluster:
    """The joiner's etcd rendering, recorded BEFORE its manifest is pushed (stable on re-runs)."""
    record = load_record(session.state_dir)
    cluster = record.get(joiner.name)
    names = {n for n, _ in cluster.initial_cluster} if cluster else set()
    urls = {m.peer_urls[0] for m in members if m.peer_urls}
    stale = (
        cluster is None
        or cluster.state != "existing"
        or joiner.name not in names
        or any(u not in urls for _, u in cluster.initial_cluster)
    )
    if cluster is None or stale:
        cluster = join_cluster(joiner, members, session.inventory)
        record[joiner.name] = cluster
        save_record(session.state_dir, record)
    session.set_etcd_cluster(joiner.name, cluster)
    return cluster


def _wait_started(session: Session, joiner: Master, source: str, member_id: int) -> None:
    """Until the member has a name (it started and talked to the cluster) and answers."""
    from bootstrap.node.view import read_pod_states

    timeout = session.inventory.timeouts.etcd_quorum
    session.console.event(
        PHASE,
        f"waiting for its etcd (learner {member_id:x}) to start (timeout {timeout:.0f}s)",
        joiner.name,
    )

    def started() -> tuple[bool, tuple[str, str]]:
        """(started and answering, (progress text, the local etcd's error))"""
        with etcd_client(session, source) as client:
            member = next((m for m in client.members() if m.id == member_id), None)
        if member is None:
            raise MemberNotFound(
                f"member {member_id:x} ({joiner.name}) left the cluster while joining",
                hint="someone removed it; re-run to add it again",
            )
        error = ""
        try:
            with etcd_client(session, joiner.name, timeout=2.0) as client:
                client.status()
        except BootstrapError as exc:
            error = exc.message.splitlines()[0]
        if member.started and not error:
            return True, ("", "")
        detail = "not answering yet" if error else "answers"
        pod = read_pod_states(session.host(joiner.name))["etcd"]
        if pod.phase in waits.FATAL_PHASES:
            raise PodCannotStart(
                f"{joiner.name}: etcd cannot start: {pod.describe()}",
                hint="fix the cause and re-run: the join resumes (the learner stays added)",
            )
        text = f"etcd pod {pod.describe()}, member {'started' if member.started else 'not started'}"
        return False, (f"{text}, local etcd: {detail}", error)

    say = on_change(lambda text: session.console.event(PHASE, f"waiting: {text}", joiner.name))

    def timed_out(state: tuple[str, str]) -> WaitTimeout:
        from bootstrap.node.view import pod_log_tail

        text, error = state
        return WaitTimeout(
            f"{joiner.name}: its etcd did not start within {timeout:.0f}s ({text}; {error})\n"
            + pod_log_tail(session.host(joiner.name), "etcd"),
            hint="check peer connectivity on port 2380 between the masters; re-running "
            "resumes the join (raise timeouts.etcdQuorum if the hosts are slow)",
        )

    poll(
        f"{joiner.name}'s etcd to start",
        started,
        timeout,
        session.inventory.timeouts.poll_interval,
        progress=lambda state: say(state[0]),
        timeout_error=timed_out,
    )


def _learner_progress(session: Session, joiner: Master, source: str) -> str:
    try:
        with etcd_client(session, joiner.name, timeout=2.0) as client:
            mine = client.status()
        with etcd_client(session, source, timeout=2.0) as client:
            theirs = client.status()
    except BootstrapError as exc:
        return exc.message.splitlines()[0]
    return f"learner raft index {mine.raft_index}, {source}'s {theirs.raft_index}"


def _promote(session: Session, joiner: Master, source: str, member_id: int) -> float:
    timeout = session.inventory.timeouts.etcd_promote
    began = time.monotonic()  # how long the promote took, for the summary line
    session.console.event(
        PHASE,
        f"promoting learner {member_id:x} once it has caught up (timeout {timeout:.0f}s, "
        "timeouts.etcdPromote)",
        joiner.name,
    )

    def promoted() -> tuple[bool, str]:
        try:
            with etcd_client(session, source, timeout=5.0) as client:
                client.promote(member_id)
        except LearnerNotReady:
            return False, _learner_progress(session, joiner, source)
        return True, ""

    def timed_out(text: str) -> WaitTimeout:
        return WaitTimeout(
            f"{joiner.name}: learner {member_id:x} not in sync after {timeout:.0f}s ({text})",
            hint="it stays a learner (no quorum change); re-run to resume, raise "
            "timeouts.etcdPromote for a large database, or remove it with "
            f"`bootstrap remove-master {joiner.name}`",
        )

    poll(
        f"learner {member_id:x} to catch up",
        promoted,
        timeout,
        PROMOTE_EVERY,
        progress=on_change(
            lambda text: session.console.event(
                PHASE, f"waiting for the learner to catch up: {text}", joiner.name
            )
        ),
        timeout_error=timed_out,
    )
    return time.monotonic() - began


def _control_plane(session: Session, joiner: Master) -> None:
    from bootstrap.workflow.steps import push_subset

    push_subset(session, PHASE, lambda c: c.is_manifest and c.spec.path != ETCD_MANIFEST, [joiner])
    components = session.options.components
    if "kube-apiserver" in components:
        waits.wait_for_apiservers(session)
    for component in ("kube-controller-manager", "kube-scheduler"):
        if component in components:
            waits.wait_for_component(session, component)


def join_one(session: Session, joiner: Master) -> float:
    """Join one master, resuming wherever a previous run stopped. Returns the seconds taken."""
    from bootstrap.workflow.steps import push_subset

    began = time.monotonic()
    session.console.event(PHASE, "reading the cluster's members", joiner.name)
    view = probe_cluster(session)
    members = _check_ready(session, joiner, view)
    source = _healthy_source(session, view, joiner)
    decision = join_decision(joiner, members)
    if decision.action == "add":
        _require_empty_data_dir(session, joiner)
        member, members = _add_learner(session, joiner, source)
        session.console.event(
            PHASE, f"added as etcd learner {member.hex_id} (through {source})", joiner.name
        )
    else:
        assert decision.member is not None
        member = decision.member
        session.console.event(PHASE, f"resuming: {decision.reason}", joiner.name)
    cluster = _set_rendering(session, joiner, members)
    session.console.event(
        PHASE,
        f"etcd manifest: --initial-cluster-state={cluster.state}, --initial-cluster of "
        f"{plural(len(cluster.initial_cluster), 'member')}",
        joiner.name,
    )
    push_subset(
        session, PHASE, lambda c: not c.is_manifest or c.spec.path == ETCD_MANIFEST, [joiner]
    )
    pushed = time.monotonic()
    started = promoted = pushed
    if decision.action != "done":
        _wait_started(session, joiner, source, member.id)
        started = time.monotonic()
        promote_seconds = _promote(session, joiner, source, member.id)
        promoted = time.monotonic()
        session.console.event(
            PHASE,
            f"promoted to voter {member.hex_id} (promote took {promote_seconds:.1f}s)",
            joiner.name,
        )
    session.mark_joined(joiner.name)
    _control_plane(session, joiner)
    waits.wait_for_etcd_quorum(session)
    done = time.monotonic()
    took = done - began
    session.console.event(
        PHASE,
        f"joined in {took:.1f}s (member add + files {pushed - began:.1f}s, etcd start "
        f"{started - pushed:.1f}s, promote {promoted - started:.1f}s, control plane + quorum "
        f"{done - promoted:.1f}s)",
        joiner.name,
    )
    return took


def run_join(session: Session) -> None:
    """The init phase: every pending master, one at a time."""
    pending = [n for n in session.etcd_layout.joiners if n in session.pending_joins]
    if not pending:
        session.console.event(PHASE, "no new masters to join")
        return
    for name in pending:
        join_one(session, session.inventory.master(name))


def add_master(session: Session, name: str) -> int:
    """`bootstrap add-master NAME`: join one inventory master that is not in the cluster."""
    from bootstrap.workflow.steps import run_preflight, run_verify

    try:
        joiner = session.inventory.master(name)
    except KeyError:
        raise UsageError(
            f"{name} is not in the inventory",
            hint="add it under masters: first (name and address), then run add-master",
        ) from None
    layout = session.etcd_layout
    if name not in layout.joiners:
        if layout.view is None or layout.view.members is None:
            raise OperationError(
                "no etcd member answers: there is no cluster to add to",
                hint="create the cluster with `bootstrap init` first",
            )
        session.console.out(f"add-master: {name} is already a voting etcd member; nothing to do")
        return 0
    session.defer_joins(layout.joiners)
    run_preflight(session)
    join_one(session, joiner)
    run_verify(session)
    return 0
