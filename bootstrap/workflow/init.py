"""The init workflow: preflight → certs → kubeconfig → etcd → control-plane → verify.

Rollout order is the speed trick (DESIGN.md): etcd manifests land everywhere first (the
first master's a moment ahead, which avoids etcd's 2 s peer-probe stall, floor.md §1),
then we wait for quorum; then the apiservers, waited on through ``/livez`` and
``/livez/etcd``; then controller-manager and scheduler. No component ever crash-loops
waiting for another, so the kubelet's restart back-off never delays the cluster.
"""

from __future__ import annotations

from collections.abc import Callable
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


def _start_control_plane_early(session: Session) -> None:
    """A fresh cluster's apiservers, controller-managers and schedulers start while etcd
    forms quorum: an apiserver waits up to ~20 s for etcd before it gives up, and the other
    two retry until an apiserver answers (floor.md §2, §4), so nothing crash-loops when
    quorum comes within seconds, and the phases overlap as the all-at-once floor does. A
    running cluster is never changed this way: its pods are replaced one master at a time."""
    wanted = [_manifest_of(c) for c in CONTROL_PLANE_PODS]
    session.console.event(
        "etcd", "fresh cluster: control-plane manifests pushed now, started while etcd forms quorum"
    )
    push_subset(
        session, "control-plane", lambda c: is_apiserver_config(c) or any(w(c) for w in wanted)
    )


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
                (lambda: _start_control_plane_early(session))
                if session.options.overlap_fresh_start and fresh_start(session)
                else None
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
        wait_apiservers,
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
