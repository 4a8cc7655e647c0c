"""The init workflow: preflight → certs → kubeconfig → etcd → control-plane → verify.

Rollout order is the speed trick (DESIGN.md): etcd manifests land everywhere first (the
first master's a moment ahead, which avoids etcd's 2 s peer-probe stall, floor.md §1),
then we wait for quorum; then the apiservers, waited on through ``/livez`` and
``/livez/etcd``; then controller-manager and scheduler. No component ever crash-loops
waiting for another, so the kubelet's restart back-off never delays the cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bootstrap.health import waits
from bootstrap.inventory.model import KUBERNETES_DIR, MANIFESTS_DIR, PKI_DIR, Master
from bootstrap.run.session import Session
from bootstrap.transport.push import FileChange
from bootstrap.workflow.phases import Phase
from bootstrap.workflow.steps import (
    Wait,
    is_apiserver_config,
    push_subset,
    roll_out,
    run_preflight,
    run_verify,
    wait_apiservers,
    wait_component,
    wait_for_leases,
)


def _is_pki(change: FileChange) -> bool:
    return change.spec.path.startswith(PKI_DIR + "/")


def _is_kubeconfig(change: FileChange) -> bool:
    path = change.spec.path
    return path.startswith(KUBERNETES_DIR + "/") and path.count("/") == 3 and path.endswith(".conf")


def _manifest_of(component: str) -> Callable[[FileChange], bool]:
    path = f"{MANIFESTS_DIR}/{component}.yaml"
    return lambda change: change.spec.path == path


# --- phases ---------------------------------------------------------------------------


def run_certs(session: Session) -> None:
    session.console.event(
        "certs", f"PKI in {session.state_dir} ({session.inventory.key_algorithm})"
    )
    push_subset(session, "certs", _is_pki)


def run_kubeconfig(session: Session) -> None:
    push_subset(session, "kubeconfig", _is_kubeconfig)


def _restarting(session: Session, wanted: Callable[[FileChange], bool]) -> list[Master]:
    """Masters where a running pod's manifest would be replaced (a restart, not a start)."""
    return [
        m
        for m in session.masters
        if any(c.is_manifest and c.action == "change" for c in session.diff(m.name) if wanted(c))
    ]


@dataclass(frozen=True)
class FileDelivery:
    """Manifests (and the files matching ``wanted``) written into the manifests dir."""

    wanted: Callable[[FileChange], bool]
    first_settles: bool = True

    def classify(
        self, session: Session, component: str
    ) -> tuple[list[Master], list[tuple[Master, bool]]]:
        restarting = _restarting(session, self.wanted)
        fresh = [m for m in session.masters if m not in restarting]
        return fresh, [(m, True) for m in restarting]

    def deliver(self, session: Session, phase: str, component: str, masters: list[Master]) -> None:
        push_subset(session, phase, self.wanted, masters)

    def replace(
        self, session: Session, phase: str, component: str, master: Master,
        settle: Callable[[], None],
    ) -> None:
        self.deliver(session, phase, component, [master])
        settle()


def roll(
    session: Session,
    phase: str,
    component: str,
    wanted: Callable[[FileChange], bool],
    wait: Wait,
    *,
    first_ahead: bool = False,
    before_wait: Callable[[], None] | None = None,
) -> None:
    """``steps.roll_out`` with the files matching ``wanted`` pushed over SSH."""
    roll_out(
        session,
        phase,
        component,
        FileDelivery(wanted),
        wait,
        first_ahead=first_ahead,
        before_wait=before_wait,
    )


CONTROL_PLANE_PODS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
STATIC_PODS = ("etcd", *CONTROL_PLANE_PODS)


def fresh_start(session: Session) -> bool:
    """No master has any of the four static pod manifests yet: the cluster's first start."""
    every = {f"{MANIFESTS_DIR}/{c}.yaml" for c in STATIC_PODS}
    return all(
        {c.spec.path for c in session.diff(m.name) if c.is_manifest and c.action == "create"}
        >= every
        for m in session.masters
    )


# Measured on the 3-master lab (2 cores, real v1.37 binaries, 3 fresh inits per schedule,
# alternated in one run): controller-manager and scheduler started with the apiservers
# slowed the apiservers' CPU-bound start and held their Leases ~1 s later (a leader-election
# retry): 9.6-10.9 s to a verified control plane; started once every apiserver answers
# HTTPS: 7.8-8.8 s; started when the apiservers are ready: 8.8-9.6 s; apiservers started
# only after quorum: 9.1-12.0 s.
LATE_PODS = ("kube-controller-manager", "kube-scheduler")


def _start_apiservers_early(session: Session) -> None:
    """A fresh cluster's apiservers start while etcd forms quorum: an apiserver waits up to
    ~20 s for etcd before it gives up (floor.md §2), so nothing crash-loops when quorum
    comes within a second or two. Controller-managers and schedulers follow once every
    apiserver answers (``_start_the_rest_when_answering``). A running cluster is never
    changed this way: its pods are replaced one master at a time."""
    apiserver = _manifest_of("kube-apiserver")
    session.console.event(
        "etcd", "fresh cluster: apiserver manifests pushed now, started while etcd forms quorum"
    )
    push_subset(session, "control-plane", lambda c: is_apiserver_config(c) or apiserver(c))


def _start_the_rest_when_answering(session: Session) -> Wait:
    """The apiserver wait of a fresh start: controller-manager and scheduler manifests are
    pushed the moment every apiserver answers HTTPS (the last second or two of its start,
    its post-start hooks), so their own start overlaps that instead of the apiservers'
    CPU-heavy beginning, and their Leases are held right after the apiservers are ready."""
    wanted = [_manifest_of(c) for c in LATE_PODS]

    def push_the_rest() -> None:
        session.console.event(
            "control-plane", "every apiserver answers: controller-manager and scheduler pushed"
        )
        push_subset(session, "control-plane", lambda c: any(w(c) for w in wanted))

    def wait(session: Session, required: Sequence[str]) -> None:
        if "kube-apiserver" in session.options.components:
            waits.wait_for_apiservers(session, required, when_answering=push_the_rest)
        else:
            wait_apiservers(session, required)

    return wait


def _overlapping(session: Session) -> bool:
    return session.options.overlap_fresh_start and fresh_start(session)


def run_etcd(session: Session) -> None:
    if session.options.delivery == "http":  # manifests published, not written (delivery.py)
        from bootstrap.workflow.delivery import run_etcd_http

        run_etcd_http(session)
    else:
        roll(
            session,
            "etcd",
            "etcd",
            _manifest_of("etcd"),
            waits.wait_for_etcd_quorum,
            first_ahead=True,
            before_wait=(
                (lambda: _start_apiservers_early(session)) if _overlapping(session) else None
            ),
        )
    from bootstrap.workflow.join import record_rendered

    record_rendered(session)  # how each member was rendered: stable manifests on re-runs


def run_control_plane(session: Session) -> None:
    if session.options.delivery == "http":
        from bootstrap.workflow.delivery import run_control_plane_http

        run_control_plane_http(session)
        return
    apiserver = _manifest_of("kube-apiserver")
    roll(
        session,
        "control-plane",
        "kube-apiserver",
        lambda c: is_apiserver_config(c) or apiserver(c),
        _start_the_rest_when_answering(session) if _overlapping(session) else wait_apiservers,
    )
    waits.ensure_cluster_admins_binding(session)
    for component in ("kube-controller-manager", "kube-scheduler"):
        roll(
            session, "control-plane", component, _manifest_of(component), wait_component(component)
        )
    wait_for_leases(session)


def _run_join(session: Session) -> None:
    from bootstrap.workflow.join import run_join

    run_join(session)


INIT_PHASES: tuple[Phase, ...] = (
    Phase("preflight", "read-only checks on every host before any write", run_preflight),
    Phase("certs", "generate or reuse the PKI and push it", run_certs),
    Phase(
        "kubeconfig",
        "push admin, super-admin, controller-manager, scheduler, kubelet kubeconfigs",
        run_kubeconfig,
    ),
    Phase("etcd", "push etcd manifests (first master first) and wait for quorum", run_etcd),
    Phase(
        "control-plane",
        "push apiserver, then controller-manager and scheduler, waiting for each",
        run_control_plane,
    ),
    Phase(
        "join",
        "new masters join one at a time: etcd learner, promote, control plane",
        _run_join,
    ),
    Phase("verify", "check etcd and apiserver health from every master's loopback", run_verify),
)
