"""The init workflow: preflight → certs → kubeconfig → etcd → control-plane → verify.

Rollout order is the speed trick (DESIGN.md): etcd manifests land everywhere first (the
first master's a moment ahead, which avoids etcd's 2 s peer-probe stall, floor.md §1),
then we wait for quorum; then the apiservers, waited on through ``/livez`` and
``/livez/etcd``; then controller-manager and scheduler. No component ever crash-loops
waiting for another, so the kubelet's restart back-off never delays the cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bootstrap.errors import OperationError, PreflightFailed, plural
from bootstrap.health import waits
from bootstrap.inventory.model import KUBERNETES_DIR, MANIFESTS_DIR, PKI_DIR, Master
from bootstrap.model import RemoteHost
from bootstrap.run.session import Session
from bootstrap.transport.push import FileChange, apply_changes, backup_dir_name, summarize
from bootstrap.workflow.phases import Phase


def _is_pki(change: FileChange) -> bool:
    return change.spec.path.startswith(PKI_DIR + "/")


def _is_kubeconfig(change: FileChange) -> bool:
    path = change.spec.path
    return path.startswith(KUBERNETES_DIR + "/") and path.count("/") == 3 and path.endswith(".conf")


def _manifest_of(component: str) -> Callable[[FileChange], bool]:
    path = f"{MANIFESTS_DIR}/{component}.yaml"
    return lambda change: change.spec.path == path


def _is_apiserver_config(change: FileChange) -> bool:
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


# --- phases ---------------------------------------------------------------------------


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


Wait = Callable[[Session, Sequence[str]], None]


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
    """Start new pods everywhere at once, but replace running ones master by master.

    Masters without a running pod of ``component`` get their files together (the first
    master a moment ahead when ``first_ahead``) and must then all come up. Masters whose
    pod would restart go one at a time: push, wait until the node runs the new spec, then
    wait until it (and everything rolled before it) is healthy. The wait before a
    replacement does not require the member being replaced, so a broken member can be
    fixed by a re-run with a good manifest.
    """
    restarting = _restarting(session, wanted)
    fresh = [m for m in session.masters if m not in restarting]
    if fresh:
        if first_ahead and len(fresh) > 1:
            push_subset(session, phase, wanted, fresh[:1])
            waits.wait_briefly_until_started(session, fresh[0].name, component)
            push_subset(session, phase, wanted, fresh[1:])
        else:
            push_subset(session, phase, wanted, fresh)
    if before_wait is not None:
        before_wait()
    healthy = [m.name for m in fresh]
    wait(session, healthy)
    for master in restarting:
        session.console.event(phase, f"rolling {component}: replacing the running pod", master.name)
        before = waits.pod_instance(session, master.name, component)
        push_subset(session, phase, wanted, [master])
        if component in session.options.components:
            waits.wait_for_new_instance(session, master.name, component, before)
        healthy.append(master.name)
        wait(session, healthy)


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
        session, "control-plane", lambda c: _is_apiserver_config(c) or any(w(c) for w in wanted)
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


def _wait_apiservers(session: Session, required: Sequence[str]) -> None:
    if "kube-apiserver" in session.options.components:
        waits.wait_for_apiservers(session, required)
    else:
        session.console.event("control-plane", "not waiting for kube-apiserver (--components)")


def _wait_component(component: str) -> Wait:
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
    _wait_apiservers(session, [m.name for m in session.masters])


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
        lambda c: _is_apiserver_config(c) or apiserver(c),
        _wait_apiservers,
    )
    waits.ensure_cluster_admins_binding(session)
    for component in ("kube-controller-manager", "kube-scheduler"):
        roll(
            session, "control-plane", component, _manifest_of(component), _wait_component(component)
        )
    wait_for_leases(session)


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
