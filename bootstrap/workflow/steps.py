"""The steps every workflow shares (init, join, the http delivery, add-master).

Pushing the changed files of a subset, the preflight and verify phases, and the waits
that gate a rollout on a component being up. Nothing here knows which workflow calls it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bootstrap.errors import OperationError, PreflightFailed, plural
from bootstrap.health import waits
from bootstrap.inventory.model import KUBERNETES_DIR, Master
from bootstrap.model import RemoteHost
from bootstrap.run.session import Session
from bootstrap.transport.push import FileChange, apply_changes, backup_dir_name, summarize

# How a rollout waits for the component it just pushed, on the masters that must run it.
Wait = Callable[[Session, Sequence[str]], None]


def is_apiserver_config(change: FileChange) -> bool:
    return change.spec.path.startswith(KUBERNETES_DIR + "/encryption/")


def push_subset(
    session: Session,
    phase: str,
    wanted: Callable[[FileChange], bool],
    masters: Sequence[Master] | None = None,
) -> dict[str, list[FileChange]]:
    """Write the changed files matching ``wanted`` on every (given) master, in parallel."""
    backup_dir = backup_dir_name()

    def push_one(master: Master, host: RemoteHost) -> list[FileChange]:
        # The diff is computed once per run: a file this run already wrote with these very
        # bytes (a fresh start pushes the control plane early) is not written again.
        done = {(c.spec.path, c.spec.content) for c in session.written().get(master.name, [])}
        matching = [c for c in session.diff(master.name) if wanted(c)]
        subset = [c for c in matching if (c.spec.path, c.spec.content) not in done]
        if matching and not subset:
            return []  # all of it written earlier in this run, and said so then
        written = apply_changes(host, subset, backup_dir=backup_dir)
        session.record_written(master.name, written)
        session.console.event(phase, summarize(subset), master.name)
        for change in written:
            session.console.detail(phase, f"{change.action} {change.spec.path}", master.name)
        return written

    return session.each_host(push_one, masters)


def run_preflight(session: Session) -> None:
    from bootstrap.node import preflight

    # Every inventory master, new ones (pending joins) included.
    everyone = session.inventory.masters
    session.console.event("preflight", f"connecting to {plural(len(everyone), 'master')}")
    facts = session.each_host(lambda _m, host: preflight.gather(host), everyone)
    findings = preflight.evaluate(
        list(facts.values()),
        cluster_ca_sha256=session.cluster_ca_sha256(),
        ignore=session.options.ignore_preflight_errors,
        ca_cert_dirs=session.inventory.ca_cert_dirs,
    )
    session.console.out(preflight.table(findings))
    blocking = preflight.blocking(findings)
    if blocking:
        raise PreflightFailed(
            f"{len(blocking)} preflight error(s); nothing was written on any host:\n"
            + "\n".join(f"  {f.host} {f.check}: {f.detail}" for f in blocking),
            hint="fix them, or skip named checks with --ignore-preflight-errors "
            + ",".join(sorted({f.check for f in blocking})),
        )


def wait_apiservers(session: Session, required: Sequence[str]) -> None:
    if "kube-apiserver" in session.options.components:
        waits.wait_for_apiservers(session, required)
    else:
        session.console.event("control-plane", "not waiting for kube-apiserver (--components)")


def wait_component(component: str) -> Wait:
    def wait(session: Session, required: Sequence[str]) -> None:
        if component in session.options.components:
            waits.wait_for_component(session, component, required)
        else:
            session.console.event("control-plane", f"not waiting for {component} (--components)")

    return wait


def settle_apiservers(session: Session) -> None:
    """Every apiserver live with its etcd check before the next step, also those whose
    manifest did not change: an apiserver whose local etcd member was (re)started in this
    run reconnects with gRPC back-off (up to ~15 s, floor.md §3), and verify would catch it
    mid-way (seen with the real kube-apiserver). A healthy cluster answers at once. (The
    file rollout's ``roll`` already ends waiting for every master; the http one waits only
    for the masters it delivered to.)"""
    wait_apiservers(session, [m.name for m in session.masters])


def wait_for_leases(session: Session) -> None:
    """Controller-manager and scheduler are working once their Leases are held (their
    /healthz says ok before they have reached any apiserver)."""
    if "kube-apiserver" not in session.options.components:
        return
    for component in ("kube-controller-manager", "kube-scheduler"):
        if component in session.options.components:
            waits.wait_for_lease(session, component)


def run_verify(session: Session) -> None:
    report = waits.verify(session)
    session.console.out(report.table())
    if not report.ok():
        raise OperationError("verify: the control plane is not healthy (see the table above)")
