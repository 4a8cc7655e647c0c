"""Shrinking and tearing down: `remove-master NAME` and `reset [--master NAME]`.

Order (reference/kubeadm.md §4.5, §10 item 8): the etcd member is removed first, by peer
URL, through a tunnel to ANOTHER healthy master (never while that would lose quorum, never
the last member); then the four manifests are deleted (deleting a static pod = deleting its
file), we wait until the node reports the pods gone, and only then PKI, kubeconfigs and the
etcd data go. A dead host does not stop the member removal: its cleanup is skipped with a
note saying what is left on it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from bootstrap.errors import (
    BootstrapError,
    EtcdError,
    InputError,
    OperationError,
    UsageError,
    WaitTimeout,
)
from bootstrap.etcd.client import Member, MemberNotFound, Status
from bootstrap.etcd.membership import (
    load_record,
    member_of,
    removal_verdict,
    remove_command,
    reset_order,
    save_record,
)
from bootstrap.etcd.view import ClusterView
from bootstrap.health.poll import poll, retry
from bootstrap.inventory.model import (
    COMPONENTS,
    ETCD_DATA_DIR,
    KUBERNETES_DIR,
    MANIFESTS_DIR,
    PKI_DIR,
    Master,
)
from bootstrap.manifests.components import ENCRYPTION_CONFIG_DIR
from bootstrap.node.podstate import PodState
from bootstrap.node.view import read_pod_states
from bootstrap.run.etcdview import etcd_client, probe_cluster
from bootstrap.run.session import Session

MANIFESTS = tuple(f"{MANIFESTS_DIR}/{c}.yaml" for c in COMPONENTS)
KUBECONFIGS = tuple(
    f"{KUBERNETES_DIR}/{n}.conf"
    for n in (
        "admin",
        "super-admin",
        "kubelet",
        "bootstrap-kubelet",
        "controller-manager",
        "scheduler",
    )
)
WIPED_DIRS = (PKI_DIR, ENCRYPTION_CONFIG_DIR)
_WIPE_SCRIPT = (
    f"rm -rf -- {' '.join(WIPED_DIRS)}\n"
    f"rm -f -- {' '.join(KUBECONFIGS)}\n"
    # The data dir itself stays (it may be a mount point); its contents go.
    f"if [ -d {ETCD_DATA_DIR} ]; then find {ETCD_DATA_DIR} -mindepth 1 -maxdepth 1 "
    "-exec rm -rf -- {} +; fi\n"
)


@dataclass(frozen=True)
class Target:
    name: str
    master: Master | None  # None: an etcd member the inventory does not know


RemovalStatus = Literal["removed", "absent", "last", "no-cluster", "not-removed", "would-remove"]


@dataclass(frozen=True)
class Removal:
    """What happened to a member: ``removed`` (or ``would-remove`` in a dry run); ``absent``
    (it is not a member: removed before, e.g. by an interrupted run); ``last`` (the last
    member, never removed); ``no-cluster`` (no member answers, so it could not be);
    ``not-removed`` (unsafe, and the caller asked us not to raise)."""

    status: RemovalStatus
    text: str

    @property
    def done(self) -> bool:
        """The member is gone (or never was): the host's cleanup may follow."""
        return self.status in ("removed", "absent")


class RemovalRefused(InputError):
    """A destructive step was refused, so none of the later ones ran (exit 2)."""


def _label(member: Member) -> str:
    return f"{member.name or '(never started)'} {member.hex_id}"


def _source(session: Session, view: ClusterView, exclude: str) -> str | None:
    """A master (not ``exclude``) whose voting member answers: we remove through it."""
    for master in session.inventory.masters:
        if master.name == exclude or not isinstance(view.statuses.get(master.name), Status):
            continue
        member = member_of(master, view.members or [])
        if member is not None and not member.is_learner:
            return master.name
    return None


def _find_member(target: Target, members: Sequence[Member]) -> Member | None:
    if target.master is not None:
        return member_of(target.master, members)
    return next((m for m in members if m.name == target.name or m.hex_id == target.name), None)


def remove_member(
    session: Session,
    target: Target,
    *,
    force: bool,
    strict: bool = True,
    dry_run: bool = False,
    assume_removed: set[int] | None = None,
) -> Removal:
    """Remove ``target``'s etcd member (skipped when it is the last). Returns what happened.

    ``strict``: refuse (OperationError) when removal is unsafe; otherwise say so and skip.
    ``dry_run``: decide and say, change nothing; ``assume_removed`` collects the ids a dry
    run "removed", so a later step sees the cluster as it would be.
    """
    others = [m for m in session.inventory.masters if m.name != target.name]
    view = probe_cluster(session, others)
    if view.members is None and target.master is not None and target.name in session.hosts:
        alone = probe_cluster(session, [target.master])  # maybe it is the only one left
        if alone.members is not None:
            view = alone
        else:  # keep every master's answer for the message
            view.statuses.update(alone.statuses)
            view.pods.update(alone.pods)
    if view.members is None:
        down = "; ".join(f"{n}: {view.why_down(n)}" for n in sorted(view.statuses))
        return Removal("no-cluster", f"no etcd member answers ({down or 'no master reachable'})")
    if assume_removed:
        view.members = [m for m in view.members if m.id not in assume_removed]
    member = _find_member(target, view.members)
    if member is None:
        return Removal("absent", "not an etcd member (already removed)")
    if len(view.members) == 1:
        return Removal(
            "last",
            f"last etcd member {_label(member)}: not removed (there is no cluster without it)",
        )
    verdict = removal_verdict(member, view.members, view.healthy())
    if not verdict.allowed:
        if not force:
            if not strict:
                return Removal(
                    "not-removed", f"member {_label(member)} NOT removed: {verdict.risk}"
                )
            raise OperationError(
                f"refusing to remove {target.name}: {verdict.risk}",
                hint=f"--force removes it anyway; RISK: {verdict.risk}",
            )
        session.console.event("etcd", f"--force: removing anyway. RISK: {verdict.risk}")
    source = _source(session, view, target.name)
    if source is None:
        raise OperationError(
            f"no other healthy voting member to remove {target.name} through",
            hint=f"on a master that still runs etcd: `{remove_command(member)}`",
        )
    if dry_run:
        if assume_removed is not None:
            assume_removed.add(member.id)
        return Removal(
            "would-remove",
            f"would remove etcd member {_label(member)} through {source}; {verdict.summary}",
        )
    # Like kubeadm's etcd calls (timeouts.etcdAPICall), retry for a while: right after a
    # partition heals, raft can need seconds before it commits a membership change. A
    # retry that finds the member gone means the previous attempt did commit.
    def remove() -> None:
        with etcd_client(session, source, timeout=10.0) as client:
            client.remove(member.id)

    def refused(exc: EtcdError) -> None:
        session.console.event(
            "etcd", f"member remove not committed yet, retrying: {exc.message.splitlines()[0]}"
        )

    try:
        retry(
            f"removing member {_label(member)}",
            remove,
            lambda exc: not isinstance(exc, MemberNotFound),
            EtcdError,
            session.inventory.timeouts.etcd_quorum,
            1.0,
            progress=refused,
        )
    except MemberNotFound:
        return Removal("absent", "not an etcd member (removed meanwhile)")
    return Removal(
        "removed", f"removed etcd member {_label(member)} through {source}; {verdict.summary}"
    )


def stop_pods(session: Session, name: str) -> None:
    """Delete the four manifests and wait until the node reports the pods gone."""
    host = session.host(name)
    host.remove_files(list(MANIFESTS))
    session.console.event(
        "reset", "deleted the static pod manifests; waiting for the pods to stop", name
    )
    timeout = session.inventory.timeouts.component_ready

    def gone() -> tuple[bool, dict[str, PodState] | None]:
        """(done, the pods still present; None: the node cannot say)"""
        states = read_pod_states(host)
        if any(s.source == "none" for s in states.values()):
            return True, None
        left = {c: s for c, s in states.items() if s.phase not in ("Absent", "Exited")}
        return not left, left

    def timed_out(left: dict[str, PodState] | None) -> WaitTimeout:
        shown = ", ".join(f"{c} {s.describe()}" for c, s in sorted((left or {}).items()))
        return WaitTimeout(
            f"{name}: pods still present {timeout:.0f}s after their manifests were "
            f"deleted: {shown}",
            hint="is the kubelet running on that host? Re-run once it has stopped them",
        )

    left = poll(
        f"the pods on {name} to stop",
        gone,
        timeout,
        session.inventory.timeouts.poll_interval,
        timeout_error=timed_out,
    )
    if left is None:
        session.console.event("reset", "no kubelet status source: cannot watch the pods stop", name)
    else:
        session.console.event("reset", "pods gone", name)


def wipe(session: Session, name: str) -> None:
    session.host(name).run(_WIPE_SCRIPT, sudo=True, timeout=60)
    session.console.event(
        "reset", f"removed {', '.join(WIPED_DIRS)}, the kubeconfigs and {ETCD_DATA_DIR}/*", name
    )


def _forget(session: Session, name: str) -> None:
    record = load_record(session.state_dir)
    if record.pop(name, None) is not None:
        save_record(session.state_dir, record)


def kubeconfigs_text(session: Session, master: Master) -> str:
    """The kubeconfigs bootstrap put on this master, by name (the wipe also removes
    kubeadm's others where present): a count of all six misled on a master with four."""
    from bootstrap.kubeconfig import kubeconfig_specs

    first = session.inventory.masters[0].name
    ours = [
        spec.file_name
        for spec in kubeconfig_specs(master.name)
        if not (spec.first_master_only and master.name != first)
    ]
    others = [p.rsplit("/", 1)[1] for p in KUBECONFIGS if p.rsplit("/", 1)[1] not in ours]
    return (
        f"the kubeconfigs {', '.join(ours)} (and {', '.join(others)} where present)"
        if others
        else f"the kubeconfigs {', '.join(ours)}"
    )


def _target(session: Session, name: str) -> Target:
    try:
        return Target(name, session.inventory.master(name))
    except KeyError:
        return Target(name, None)


# --- remove-master ---------------------------------------------------------------------------


def remove_master(session: Session, name: str, *, force: bool, wipe_host: bool) -> int:
    target = _target(session, name)
    unreachable = session.connect_reachable()
    for other, why in sorted(unreachable.items()):
        if other != name:
            session.console.event("remove", f"unreachable, skipped: {why}", other)
    if target.master is None:
        view = probe_cluster(session)
        if view.members is not None and _find_member(target, view.members) is None:
            raise UsageError(
                f"{name} is neither an inventory master nor an etcd member",
                hint="`bootstrap status` lists the masters and any stale members",
            )
    removal = remove_member(session, target, force=force)
    session.console.event("remove", removal.text, name)
    if not removal.done:
        _not_removed(session, target, removal, force=force)
    notes: list[str] = []
    if target.master is None:
        notes.append(f"{name} is not in the inventory: no host to clean")
    elif name in unreachable:
        notes.append(
            f"{name} is unreachable ({unreachable[name]}): only its etcd member was removed; "
            "its manifests, PKI and etcd data are still on it. If it comes back, its etcd "
            f"exits (removed member): run `bootstrap reset --master {name}` on it before any "
            "re-join"
        )
    else:
        stop_pods(session, name)
        if wipe_host:
            wipe(session, name)
        else:
            notes.append(
                f"{name} keeps its PKI, kubeconfigs and {ETCD_DATA_DIR} (--wipe removes them; "
                "a re-join needs an empty data dir)"
            )
    _forget(session, name)
    for note in notes:
        session.console.event("remove", note, name)
    if target.master is not None:
        session.console.out(
            f"remove-master: {name} removed. Now drop it from the inventory (masters:), or the "
            "next `bootstrap init` adds it back"
        )
    else:
        session.console.out(f"remove-master: stale member {name} removed")
    return 0


def _not_removed(session: Session, target: Target, removal: Removal, *, force: bool) -> None:
    """The member was not removed: refuse every later step (the pods, the wipe) unless
    --force says to go on. Raises, or returns to go on."""
    name = target.name
    nothing = "refused: nothing was changed on any host"
    if target.master is None:
        raise OperationError(
            f"stale member {name} was not removed: {removal.text}",
            hint="`bootstrap status` shows each master's etcd; retry once a member answers",
        )
    if removal.status == "last":
        if not force:
            raise RemovalRefused(
                f"{name} is the last etcd member: removing it, or stopping its pods, takes the "
                f"cluster down for good; {nothing}",
                hint="to tear a cluster down use `bootstrap reset`; `bootstrap remove-master "
                f"{name} --force` stops its pods anyway (RISK: the cluster is gone; its data "
                f"stays in {ETCD_DATA_DIR} unless --wipe)",
            )
        session.console.event(
            "remove", "--force: the last member: stopping its pods takes the cluster down", name
        )
        return
    if not force:
        raise OperationError(
            f"{name}'s etcd member could not be removed: {removal.text}; stopping its pods "
            f"now would leave a member that never answers again in the cluster; {nothing}",
            hint="bring the cluster's etcd back (`bootstrap status`), then retry; --force "
            "stops its pods anyway (RISK: a dead voter stays in etcd and lowers its fault "
            "tolerance until removed)",
        )
    session.console.event(
        "remove", f"--force: going on although its member was not removed ({removal.status})", name
    )


# --- reset -----------------------------------------------------------------------------------


def _confirm(names: Sequence[str]) -> None:
    if not sys.stdin.isatty():
        raise UsageError(
            "reset deletes the control plane's files and etcd data and needs confirmation, "
            "but stdin is not a terminal",
            hint="pass --yes (or --dry-run to see what it would do)",
        )
    print(
        f"reset {', '.join(names)}: removes their etcd members, static pods, PKI, "
        f"kubeconfigs and {ETCD_DATA_DIR} contents. Type 'yes' to go on: ",
        end="",
        file=sys.stderr,
        flush=True,
    )
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise UsageError("reset: not confirmed; nothing was done")


def _state_dir_matches(session: Session, *, single: bool) -> bool:
    """A state dir that is not the cluster's cannot remove members (its certs are not
    trusted): refuse a one-master reset; a whole-cluster reset goes on, saying so, and
    asks no member (which would also generate a PKI into an empty state dir)."""
    from bootstrap.workflow import guard

    try:
        guard.check(session, "reset", versions=False)
    except guard.ClusterMismatch as exc:
        if single:
            raise
        session.console.event(
            "reset",
            f"warning: {exc.detail}: no etcd member can be removed through it; every master "
            "is torn down anyway",
        )
        return False
    return True


def reset(session: Session, name: str | None, *, yes: bool, dry_run: bool) -> int:
    if name is not None:
        try:
            targets = [session.inventory.master(name)]
        except KeyError:
            raise UsageError(
                f"{name} is not in the inventory",
                hint="for an etcd member without a host use `bootstrap remove-master NAME`",
            ) from None
    else:
        targets = reset_order(session.inventory.masters)
    if not dry_run and not yes:
        _confirm([m.name for m in targets])
    unreachable = session.connect_reachable()
    single = name is not None
    simulated: set[int] = set()
    ours = _state_dir_matches(session, single=single)
    for master in targets:
        target = Target(master.name, master)
        try:
            if not ours:
                raise OperationError("the state dir is not this cluster's")
            removal = remove_member(
                session,
                target,
                force=False,
                strict=single,
                dry_run=dry_run,
                assume_removed=simulated,
            )
        except BootstrapError as exc:
            if single:
                raise
            removal = Removal("not-removed", f"member NOT removed: {exc.message}")
        session.console.event("reset", removal.text, master.name)
        if single and removal.status == "no-cluster" and not dry_run:
            # The rest of the cluster keeps a member for this master that would never answer
            # again: refuse before touching the host (a whole-cluster reset may go on).
            raise OperationError(
                f"{master.name}'s etcd member could not be removed: {removal.text}; resetting "
                "it now would leave a dead voter in the cluster; refused: nothing was changed "
                "on any host",
                hint="bring the cluster's etcd back (`bootstrap status`), then retry; to tear "
                "the whole cluster down: `bootstrap reset` without --master",
            )
        if master.name in unreachable:
            session.console.event(
                "reset",
                f"unreachable ({unreachable[master.name]}): its files and etcd data stay; "
                "re-run reset once it is back",
                master.name,
            )
            continue
        if dry_run:
            session.console.event(
                "reset",
                f"would delete {len(MANIFESTS)} manifests, wait for the pods to stop, then "
                f"delete {', '.join(WIPED_DIRS)}, {kubeconfigs_text(session, master)} and "
                f"{ETCD_DATA_DIR}/*",
                master.name,
            )
            continue
        stop_pods(session, master.name)
        wipe(session, master.name)
        _forget(session, master.name)
    verb = "would reset" if dry_run else "reset"
    session.console.out(
        f"reset: {verb} {', '.join(m.name for m in targets)}"
        + (" (dry run: nothing was changed)" if dry_run else "")
    )
    return 0
