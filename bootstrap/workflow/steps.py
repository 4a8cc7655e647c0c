"""The steps every workflow shares (init, join, the http delivery, add-master).

Pushing the changed files of a subset, the preflight and verify phases, and the waits
that gate a rollout on a component being up. Nothing here knows which workflow calls it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from bootstrap.errors import OperationError, PreflightFailed, plural
from bootstrap.health import waits
from bootstrap.inventory.model import KUBERNETES_DIR, Master
from bootstrap.model import RemoteHost
from bootstrap.run.session import Session
from bootstrap.transport.push import FileChange, apply_changes, backup_dir_name, summarize

if TYPE_CHECKING:
    from bootstrap.node.preflight import HostFacts

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


def _gather_preflight(session: Session) -> dict[str, HostFacts]:
    from bootstrap.node import preflight

    # Every inventory master, new ones (pending joins) included.
    return session.each_host(lambda _m, host: preflight.gather(host), session.inventory.masters)


def ask_preflight_early(session: Session) -> None:
    """Preflight's questions are read-only and need nothing but the connections: asked
    while the guard and the etcd probe run, judged in the preflight phase as before."""
    session.read_ahead("preflight", lambda: _gather_preflight(session))


def run_preflight(session: Session) -> None:
    from bootstrap.node import preflight

    everyone = session.inventory.masters
    session.console.event("preflight", f"connecting to {plural(len(everyone), 'master')}")
    facts = session.answer("preflight", lambda: _gather_preflight(session))
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


# --- the rollout loop, one for both deliveries ---------------------------------------------


class Delivery(Protocol):
    """How a component's pod spec reaches the nodes: files in the manifests dir over SSH
    (bootstrap.workflow.init.FileDelivery) or a published document the kubelet fetches
    (bootstrap.workflow.delivery.HttpDelivery). The loop in ``roll_out`` is shared."""

    @property
    def first_settles(self) -> bool:
        """Wait (briefly) for the first master's pod before the others get theirs."""
        ...

    def classify(
        self, session: Session, component: str
    ) -> tuple[list[Master], list[tuple[Master, bool]]]:
        """(masters whose pod starts new, [(master, its running pod restarts)] to roll)."""
        ...

    def deliver(self, session: Session, phase: str, component: str, masters: list[Master]) -> None:
        """Hand ``component``'s desired spec (and its support files) to ``masters``."""
        ...

    def replace(
        self, session: Session, phase: str, component: str, master: Master,
        settle: Callable[[], None],
    ) -> None:
        """Replace ``master``'s running pod: deliver, then ``settle`` (the new instance
        and the health gate). A delivery that must undo a failed step waits inside."""
        ...


def roll_out(
    session: Session,
    phase: str,
    component: str,
    delivery: Delivery,
    wait: Wait,
    *,
    first_ahead: bool = False,
    before_wait: Callable[[], None] | None = None,
) -> None:
    """Start new pods everywhere at once, but replace running ones master by master.

    Masters without a running pod of ``component`` get it together (the first master a
    moment ahead when ``first_ahead``) and must then all come up. Masters whose pod would
    restart go one at a time: deliver, wait until the node runs the new spec, then wait
    until it (and everything rolled before it) is healthy. The wait before a replacement
    does not require the member being replaced, so a broken member can be fixed by a
    re-run with a good manifest.
    """
    fresh, rolling = delivery.classify(session, component)
    if fresh:
        if first_ahead and len(fresh) > 1:
            first = fresh[0].name
            writes_before = len(session.written().get(first, []))
            delivery.deliver(session, phase, component, fresh[:1])
            # Only a pod that starts now needs the head start (nothing written: nothing starts).
            if delivery.first_settles and len(session.written().get(first, [])) > writes_before:
                waits.wait_briefly_until_started(session, first, component)
            delivery.deliver(session, phase, component, fresh[1:])
        else:
            delivery.deliver(session, phase, component, fresh)
    if before_wait is not None:
        before_wait()
    healthy = [m.name for m in fresh]
    wait(session, healthy)
    for master, restarts in rolling:
        verb = "replacing the running pod" if restarts else "switching to the served manifest"
        session.console.event(phase, f"rolling {component}: {verb}", master.name)
        before = waits.pod_instance(session, master.name, component)
        gate = [*healthy, master.name]

        def settle(name: str = master.name, restarts: bool = restarts,
                   before: str | None = before, gate: list[str] = gate) -> None:
            if restarts and component in session.options.components:
                waits.wait_for_new_instance(session, name, component, before)
            wait(session, gate)

        delivery.replace(session, phase, component, master, settle)
        healthy.append(master.name)
    # The loop ends with every master healthy, also those whose pod was left alone (the
    # http delivery does not deliver to them): an apiserver whose etcd member restarted in
    # this run reconnects with back-off (floor.md §3) and verify would catch it mid-way.
    # A healthy master answers at once.
    left_alone = [m.name for m in session.masters if m.name not in healthy]
    if left_alone:
        wait(session, healthy + left_alone)
