"""Master-by-master rollout of day-2 changes (`certs renew`, `upgrade`).

``rollout.roll()`` replaces one component at a time across the masters. A renewal or an
upgrade changes several pods of a master at once, so here a master gets ALL its changed
files in one push (certs and kubeconfigs before manifests, push.apply_changes' order),
then we wait until the node runs every changed pod from its new manifest and the cluster
is healthy again (etcd quorum; the apiservers, controller-managers and schedulers when
in ``--components``), and only then touch the next master (kubespray#12836: restart one
node at a time and check health in between).

A master that does not come back stops the rollout; the error spells out which masters
are done and which were not touched. With ``rollback`` (upgrade) the failed master's
manifests are first restored from the backup push made before replacing them.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field

from bootstrap.errors import BootstrapError, OperationError
from bootstrap.health import waits
from bootstrap.inventory.model import MANIFESTS_DIR, Master
from bootstrap.model import FileSpec
from bootstrap.run.session import Session
from bootstrap.transport.push import FileChange, apply_changes, backup_dir_name, summarize

KUBE_COMPONENTS = ("kube-controller-manager", "kube-scheduler")


def restarting_components(changes: Sequence[FileChange]) -> list[str]:
    """Static pods whose manifest this change set writes (each restarts once)."""
    prefix = MANIFESTS_DIR + "/"
    return sorted(
        c.spec.path[len(prefix) :].removesuffix(".yaml")
        for c in changes
        if c.writes and c.spec.path.startswith(prefix)
    )


@dataclass
class RollState:
    """Where a rollout stands, for progress and for the error that stops it."""

    verb: str  # "renewed", "upgraded"
    done: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)

    def describe(self) -> str:
        lines = [
            f"  {self.verb}: {', '.join(self.done) or 'none'}",
            f"  not {self.verb} (untouched): {', '.join(self.pending) or 'none'}",
        ]
        if self.unchanged:
            lines.append(f"  nothing to change: {', '.join(self.unchanged)}")
        return "\n".join(lines)


def pending_changes(session: Session, name: str) -> list[FileChange]:
    return [c for c in session.diff(name) if c.writes]


def push_masters(
    session: Session, phase: str, masters: Sequence[Master], backup_dir: str
) -> dict[str, tuple[list[FileChange], dict[str, str | None]]]:
    """Push every pending change to the given masters (in parallel). Returns per master
    the written changes and the pre-push pod instance of each pod that will restart."""
    from bootstrap.node.view import read_pod_states

    def one(master: Master, host: object) -> tuple[list[FileChange], dict[str, str | None]]:
        changes = pending_changes(session, master.name)
        restarting = restarting_components(changes)
        states = read_pod_states(session.host(master.name)) if restarting else {}
        before = {c: states[c].instance for c in restarting}
        written = apply_changes(session.host(master.name), changes, backup_dir=backup_dir)
        session.record_written(master.name, written)
        session.console.event(phase, summarize(session.diff(master.name)), master.name)
        for change in written:
            session.console.detail(phase, f"{change.action} {change.spec.path}", master.name)
        if restarting:
            session.console.event(phase, "restarting " + ", ".join(restarting), master.name)
        return written, before

    return session.each_host(one, masters)


def wait_healthy(session: Session, restarted: dict[str, dict[str, str | None]]) -> None:
    """Every restarted pod runs its new manifest, then the cluster-wide health gates."""
    components = session.options.components
    for name, before in restarted.items():
        for component, instance in before.items():
            if component in components:
                waits.wait_for_new_instance(session, name, component, instance)
    waits.wait_for_etcd_quorum(session)
    if "kube-apiserver" in components:
        waits.wait_for_apiservers(session)
    for component in KUBE_COMPONENTS:
        if component in components:
            waits.wait_for_component(session, component)


def rollback_manifests(
    session: Session, phase: str, name: str, written: Sequence[FileChange], backup_dir: str
) -> list[str]:
    """Put back the manifests this push replaced, from the host's backup copy."""
    host = session.host(name)
    restored: list[str] = []
    for change in written:
        if not (change.is_manifest and change.remote is not None):
            continue
        path = change.spec.path
        old = host.read_file(f"{backup_dir}/{posixpath.basename(path)}")
        host.write_file_atomic(FileSpec(path, old, change.spec.mode, secret=change.spec.secret))
        restored.append(path)
    session.console.event(phase, f"rolled back {len(restored)} manifest(s) from {backup_dir}", name)
    return restored


def roll_masters(
    session: Session,
    phase: str,
    verb: str,
    *,
    rollback: bool = False,
    all_at_once: bool = False,
) -> RollState:
    """Push each master's pending changes and wait for health, one master at a time
    (or every master together with ``all_at_once``: the recovery path when the cluster
    cannot be healthy until every member has its new files)."""
    state = RollState(verb)
    todo = []
    for m in session.masters:
        if pending_changes(session, m.name):
            todo.append(m)
        else:
            state.unchanged.append(m.name)
    state.pending = [m.name for m in todo]
    backup_dir = backup_dir_name()
    groups = [todo] if all_at_once else [[m] for m in todo]
    for group in groups:
        if not group:
            continue
        names = [m.name for m in group]
        written: dict[str, list[FileChange]] = {}
        try:
            pushed = push_masters(session, phase, group, backup_dir)
            written = {n: w for n, (w, _b) in pushed.items()}
            wait_healthy(session, {n: b for n, (_w, b) in pushed.items()})
        except BootstrapError as exc:
            failed = ", ".join(names)
            if rollback:
                for name in names:
                    if written.get(name):
                        try:
                            rollback_manifests(session, phase, name, written[name], backup_dir)
                        except BootstrapError as rb:
                            session.console.event(phase, f"rollback failed: {rb.message}", name)
            state.pending = [n for n in state.pending if n not in names]
            raise OperationError(
                f"{phase}: stopped at {failed}: {exc.message}\n"
                + f"  failed: {failed}"
                + (" (manifests rolled back from " + backup_dir + ")" if rollback else "")
                + "\n"
                + state.describe(),
                hint=exc.hint or "fix the failing master, then run the command again",
            ) from exc
        state.done += names
        state.pending = [n for n in state.pending if n not in names]
        for name in names:
            session.console.event(phase, f"{verb} and healthy", name)
    return state
