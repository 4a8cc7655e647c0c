"""Waits and verification over SSH tunnels to each master's loopback.

Everything here talks to a master through ``Session.tunnel`` (a local port forwarded to
the master's 127.0.0.1) with the credentials that master's own components use: the
apiserver-etcd-client cert for etcd, the cluster CA plus the admin client cert for the
apiserver. Pod states from the node (bootstrap.node.view) turn "not running" into a fast,
honest failure instead of a four-minute wait.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bootstrap.errors import APIRequestFailed, BootstrapError, PodCannotStart, WaitTimeout
from bootstrap.health.poll import every, poll
from bootstrap.inventory.model import (
    API_PORT,
    CONTROLLER_MANAGER_PORT,
    ETCD_CLIENT_PORT,
    ETCD_METRICS_PORT,
    SCHEDULER_PORT,
    Master,
    url_host,
)
from bootstrap.local import yamltext
from bootstrap.manifests.components import scheduler_health_path
from bootstrap.run.session import Session
from bootstrap.transport.httpcheck import (
    APISERVER_LIVEZ_VERBOSE,
    ClientTLS,
    HTTPCheckError,
    get,
    request,
    verbose_check,
)

if TYPE_CHECKING:
    from bootstrap.etcd.client import Status, TLSFiles
    from bootstrap.health.verify import VerifyReport
    from bootstrap.node.podstate import PodState

PROBE_TIMEOUT = 2.0  # one health request; the poll interval paces the retries
POD_STATE_EVERY = 2.0  # seconds between reads of the node's pod states while waiting
FAST_POLL_WINDOW = 2.0  # seconds at the start of a wait polled at FAST_POLL_INTERVAL
FAST_POLL_INTERVAL = 0.1
FATAL_PHASES = ("ImageUnavailable", "Failed")  # a pod in these will not come up by waiting
STOPPED_PHASES = ("Absent", "Exited", "Failed")  # the node runs no process of the pod


def etcd_tls(session: Session, name: str) -> TLSFiles:
    from bootstrap.etcd.client import TLSFiles

    pki = "/etc/kubernetes/pki"
    return TLSFiles(
        ca=session.credential(name, f"{pki}/etcd/ca.crt"),
        cert=session.credential(name, f"{pki}/apiserver-etcd-client.crt"),
        key=session.credential(name, f"{pki}/apiserver-etcd-client.key"),
    )


def kubeconfig_tls(session: Session, name: str, kubeconfig: str = "admin.conf") -> ClientTLS:
    """Client cert/key embedded in one of the master's kubeconfigs, as (in-memory) files."""
    path = f"/etc/kubernetes/{kubeconfig}"
    doc = yamltext.load(session.pki.kubeconfig_files(name)[path].content)
    user = doc["users"][0]["user"]
    cert, key = (
        session.memory_file(f"{name}:{path}:{field}", base64.b64decode(user[field]))
        for field in ("client-certificate-data", "client-key-data")
    )
    return ClientTLS(ca=session.credential(name, "/etc/kubernetes/pki/ca.crt"), cert=cert, key=key)


def pod_states(session: Session) -> dict[str, dict[str, PodState]]:
    """What each master's node runs now (one remote command per master, in parallel)."""
    from bootstrap.node.view import read_pod_states

    return session.each_host(lambda _m, host: read_pod_states(host))


def _log_tails(session: Session, component: str, names: list[str]) -> str:
    from bootstrap.node.view import pod_log_tail

    parts = []
    for name in names:
        tail = pod_log_tail(session.host(name), component)
        parts.append(f"--- {component} log on {name} (last lines) ---\n{tail or '(empty)'}")
    return "\n".join(parts)


def wait_for(
    session: Session,
    phase: str,
    what: str,
    component: str,
    probe: Callable[[], tuple[bool, str, list[str]]],
    timeout: float,
    required: Sequence[str] | None = None,
    *,
    require_running: bool = True,
    fast: Callable[[], bool] | None = None,
) -> None:
    """Poll probe() until it says ok; show progress; fail fast on a pod that cannot start.

    probe returns (ok, progress text, names of masters still failing). ``fast``: when it
    says so, poll at the fast pace whatever the time (the end is near). ``required``: the
    masters whose pods must come up (None: all); only their pods can fail the wait early.
    With ``require_running``, an ok probe is confirmed against the node's own view: every
    required master's pod must be reported running, as verify demands. Without it, an
    endpoint that still answers from an instance the node is stopping (a manifest removed
    and re-written within one kubelet scan) would end the wait and then fail verify.
    """
    pace = session.inventory.timeouts.poll_interval
    read_pods_now = every(POD_STATE_EVERY)
    said = ""  # the last progress text shown
    first = True

    def attempt() -> tuple[bool, tuple[str, tuple[str, ...]]]:
        ok, text, failing = probe()
        # Confirming against the node only matters when this run wrote something a pod
        # restarts for: with nothing written, no instance can be stopping under the probe.
        if ok and require_running and session.wrote_anything():
            ok, text, failing = _confirm_running(session, component, required, text)
        return ok, (text, tuple(failing))

    def progress(state: tuple[str, tuple[str, ...]]) -> None:
        nonlocal said, first
        text = state[0]
        if first:  # said only when there is something to wait for
            session.console.event(phase, f"waiting for {what} (timeout {timeout:.0f}s)")
            first = False
        if text != said:
            session.console.event(phase, f"waiting for {what}: {text}")
            said = text
        if read_pods_now():
            _fail_if_cannot_start(session, component, required)

    def timed_out(state: tuple[str, tuple[str, ...]]) -> WaitTimeout:
        text, failing = state
        tails = _log_tails(session, component, list(failing) or [m.name for m in session.masters])
        return WaitTimeout(
            f"timed out after {timeout:.0f}s waiting for {what}; last state: {text}\n{tails}",
            hint="raise the timeout in the inventory (timeouts:) if the hosts are slow",
        )

    def interval(waited: float) -> float:
        # Most answers arrive within the first two seconds: poll faster there, then at the
        # configured interval.
        near_end = waited < FAST_POLL_WINDOW or (fast is not None and fast())
        return min(pace, FAST_POLL_INTERVAL) if near_end else pace

    text, _ = poll(what, attempt, timeout, interval, progress=progress, timeout_error=timed_out)
    session.console.event(phase, f"{what}: {text}")


def _fail_if_cannot_start(session: Session, component: str, required: Sequence[str] | None) -> None:
    """PodCannotStart when the node reports a required master's pod in a phase that
    waiting does not leave (its image is missing, the node gave up on it)."""
    dead = {
        name: state
        for name, states in pod_states(session).items()
        if (required is None or name in required)
        and (state := states[component]).phase in FATAL_PHASES
    }
    if not dead:
        return
    detail = "; ".join(f"{n}: {s.describe()}" for n, s in sorted(dead.items()))
    raise PodCannotStart(
        f"{component} cannot start: {detail}",
        hint="the node reports the pod will not run; fix the cause, then re-run init"
        + (
            " (or limit checks with --components etcd on a lab without kube binaries)"
            if any(s.phase == "ImageUnavailable" for s in dead.values())
            else ""
        ),
    )


def _confirm_running(
    session: Session, component: str, required: Sequence[str] | None, text: str
) -> tuple[bool, str, list[str]]:
    """(ok, text, failing) once the node reports the required masters' pods running."""
    idle = [
        (name, states[component])
        for name, states in sorted(pod_states(session).items())
        if (required is None or name in required) and not states[component].running
    ]
    if not idle:
        return True, text, []
    detail = "; ".join(f"{name}: pod {state.describe()}" for name, state in idle)
    return False, f"{text}, but the node does not run the pod yet ({detail})", [n for n, _ in idle]


def pod_instance(session: Session, name: str, component: str) -> str | None:
    from bootstrap.node.view import read_pod_states

    return read_pod_states(session.host(name))[component].instance


AHEAD_WAIT_SECONDS = 2.0  # bounded: a slow image pull must not hold the rollout


def wait_briefly_until_started(session: Session, name: str, component: str) -> None:
    """Give the first member a head start: until the node runs its pod, at most 2 s.

    etcd members started within a few ms of each other probe their not-yet-serving peers
    with a 1 s timeout each and reach quorum ~2 s late; one member ~50 ms ahead avoids it
    (floor.md, finding 1). Writing its manifest first is not enough when the kubelet
    notices files on a poll, so wait until the pod runs (or give up quietly).
    """
    from bootstrap.node.view import read_pod_states

    def started() -> tuple[bool, str]:
        state = read_pod_states(session.host(name))[component]
        return state.running, state.describe()

    # Not having seen it start is no error: the rollout goes on without the head start.
    with contextlib.suppress(WaitTimeout):
        poll(f"{component} on {name} to start", started, AHEAD_WAIT_SECONDS, 0.02)


def component_timeout(session: Session, component: str) -> float:
    timeouts = session.inventory.timeouts
    if component == "etcd":
        return timeouts.etcd_quorum
    if component == "kube-apiserver":
        return timeouts.apiserver_ready
    return timeouts.component_ready


def wait_for_new_instance(session: Session, name: str, component: str, before: str | None) -> None:
    """Until the node has adopted the new manifest (the pod's instance id changed).

    Whether the new pod is healthy is the next wait's question (quorum, /livez): that one
    reports a crash loop with the pod's log.
    """
    from bootstrap.node.view import read_pod_states

    def probe() -> tuple[bool, str, list[str]]:
        state = read_pod_states(session.host(name))[component]
        adopted = state.instance is not None and state.instance != before
        text = f"{name}: {state.describe()}" + ("" if adopted else ", old spec still running")
        return adopted, text, [] if adopted else [name]

    wait_for(
        session,
        "rollout",
        f"{component} on {name} to pick up the new manifest",
        component,
        probe,
        component_timeout(session, component),
        require_running=False,
    )


def wait_until_stopped(session: Session, name: str, component: str) -> None:
    """Until the node no longer runs the pod (its manifest was taken away): no container,
    or only exited ones. A real kubelet admits a pod of the same name from another source
    only once this one is gone (its host ports are free again)."""
    from bootstrap.node.view import read_pod_states

    def probe() -> tuple[bool, str, list[str]]:
        state = read_pod_states(session.host(name))[component]
        stopped = state.phase in STOPPED_PHASES
        return stopped, f"{name}: {state.describe()}", [] if stopped else [name]

    wait_for(session, "rollout", f"{component} on {name} to stop", component, probe,
             component_timeout(session, component), required=[], require_running=False)


GONE_WAIT_SECONDS = 30.0  # bounded: a node that keeps exited containers must not hold a switch


def wait_briefly_until_gone(session: Session, name: str, component: str) -> bool:
    """Until the node has no container of the pod left, at most 30 s; whether it got there.

    A real kubelet removes a deleted static pod's exited container once it has finished
    terminating the pod. Until then the pod still counts at admission (its host ports), and
    a pod of the same name arriving from another source is refused, for good while its
    document stays the same (seen in the lab: a switched etcd never started on one master
    in two of the last runs of tests/test_kubelet_http_lab.py)."""
    from bootstrap.node.view import read_pod_states

    def gone() -> tuple[bool, str]:
        state = read_pod_states(session.host(name))[component]
        return state.phase == "Absent", state.describe()

    try:
        poll(f"{component} on {name} to be gone", gone, GONE_WAIT_SECONDS,
             session.inventory.timeouts.poll_interval)
    except WaitTimeout:
        return False
    return True


def wait_until_running(
    session: Session, name: str, component: str, timeout: float | None = None
) -> None:
    """Until the node runs the pod (a pod the node reports cannot start fails at once)."""
    from bootstrap.node.view import read_pod_states

    def probe() -> tuple[bool, str, list[str]]:
        state = read_pod_states(session.host(name))[component]
        return state.running, f"{name}: {state.describe()}", [] if state.running else [name]

    wait_for(session, "rollout", f"{component} on {name} to run", component, probe,
             timeout if timeout is not None else component_timeout(session, component),
             required=[name], require_running=False)


# --- etcd -----------------------------------------------------------------------------


def etcd_statuses(session: Session) -> dict[str, Status | str]:
    """Status of every master's local member through its tunnel, or the error text."""
    from bootstrap.etcd.client import EtcdClient
    from bootstrap.run.etcdview import member_label

    def one(master: Master, _host: object) -> Status | str:
        try:
            port = session.tunnel(master.name, ETCD_CLIENT_PORT)
            with EtcdClient(
                "127.0.0.1",
                port,
                etcd_tls(session, master.name),
                timeout=PROBE_TIMEOUT,
                label=member_label(session, master.name),
            ) as client:
                return client.status()
        except BootstrapError as exc:
            return exc.message.splitlines()[0]

    return session.each_host(one)


def _required(session: Session, required: Sequence[str] | None) -> list[Master]:
    if required is None:
        return list(session.masters)
    return [m for m in session.masters if m.name in required]


def wait_for_etcd_quorum(session: Session, required: Sequence[str] | None = None) -> None:
    """Until a leader is elected and every required member (None: all) answers.

    A rollout that replaces a member passes only the members that must be up, so a
    member that is already broken can still be replaced by a fixed manifest.
    """
    must = {m.name for m in _required(session, required)}
    total = len(session.masters)

    def probe() -> tuple[bool, str, list[str]]:
        statuses = etcd_statuses(session)
        answering = {n: s for n, s in statuses.items() if not isinstance(s, str)}
        leaders = {s.leader_id for s in answering.values()}
        failing = [n for n, s in statuses.items() if isinstance(s, str)]
        has_leader = len(leaders) == 1 and 0 not in leaders
        text = f"{len(answering)}/{total} members answering"
        text += ", leader elected" if has_leader else ", no leader yet"
        if failing:
            text += " (" + "; ".join(f"{n}: {statuses[n]}" for n in failing) + ")"
        ok = has_leader and must <= set(answering)
        return ok, text, [n for n in failing if n in must] or failing

    wait_for(
        session,
        "etcd",
        "etcd quorum",
        "etcd",
        probe,
        session.inventory.timeouts.etcd_quorum,
        sorted(must),
    )


# --- apiserver, controller-manager, scheduler ------------------------------------------


def _tally(results: dict[str, tuple[bool, str]], what: str) -> tuple[bool, str, list[str]]:
    """(all ok, "2/3 <what> (m3: why)", failing masters) for a wait's progress line."""
    failing = [n for n, (ok, _) in results.items() if not ok]
    text = f"{len(results) - len(failing)}/{len(results)} {what}"
    if failing:
        text += " (" + "; ".join(f"{n}: {results[n][1]}" for n in failing) + ")"
    return not failing, text, failing


# What a component that is still starting looks like through an SSH tunnel: nothing
# listens yet (the tunnel then resets the connection) or it does not answer yet. Progress
# lines say so in those words; the local tunnel port and the TLS details of such a
# connection mean nothing to the operator. Any other failure is shown as it is.
_STARTING = {"refused": "not answering yet", "connection": "not answering yet",
             "timeout": "no answer yet"}


def _waiting_reason(exc: HTTPCheckError) -> str:
    return _STARTING.get(exc.kind, exc.message)


def _https_status(
    session: Session, name: str, port: int, path: str, tls: ClientTLS
) -> tuple[bool, str]:
    try:
        local = session.tunnel(name, port)
        result = get(
            "127.0.0.1", local, path, tls=tls, timeout=PROBE_TIMEOUT, server_name="127.0.0.1"
        )
    except HTTPCheckError as exc:
        return False, _waiting_reason(exc)
    except BootstrapError as exc:
        return False, exc.message.splitlines()[0]
    return result.status == 200, result.summary(80)


def _apiserver_live(session: Session, name: str, tls: ClientTLS) -> tuple[bool, str]:
    """/livez with every check passing, its etcd check among them (``?verbose``: readable
    before RBAC is bootstrapped, see httpcheck.APISERVER_LIVEZ_VERBOSE)."""
    try:
        local = session.tunnel(name, API_PORT)
        result = get(
            "127.0.0.1", local, APISERVER_LIVEZ_VERBOSE, tls=tls, timeout=PROBE_TIMEOUT,
            server_name="127.0.0.1",
        )
    except HTTPCheckError as exc:
        return False, _waiting_reason(exc)
    except BootstrapError as exc:
        return False, exc.message.splitlines()[0]
    if result.status in (401, 403):
        # Before its RBAC bootstrap roles exist a new apiserver authorizes nobody for /livez.
        return False, "starting (authorization not set up yet)"
    etcd_ok, said = verbose_check(result, "etcd")
    if not etcd_ok:
        return False, said
    if result.status != 200:
        failed = [ln.strip()[3:] for ln in result.text.splitlines() if ln.startswith("[-]")]
        hooks = [f.split(" ", 1)[0].removeprefix("poststarthook/") for f in failed]
        if failed and all(f.startswith("poststarthook/") for f in failed):
            return False, "starting (" + ", ".join(hooks) + ")"
        return False, f"/livez HTTP {result.status}: " + (", ".join(failed) or "not live")
    # Ready too, as verify demands: after its etcd member restarted, an apiserver is live
    # again before /readyz's etcd-readiness check passes (seen on the real apiserver).
    try:
        ready = get(
            "127.0.0.1", local, "/readyz?verbose", tls=tls, timeout=PROBE_TIMEOUT,
            server_name="127.0.0.1",
        )
    except HTTPCheckError as exc:
        return False, _waiting_reason(exc)
    if ready.status != 200:
        failed = [ln.strip()[3:].split(" ", 1)[0] for ln in ready.text.splitlines()
                  if ln.startswith("[-]")]
        return False, "live, not ready yet (" + (", ".join(failed) or f"HTTP {ready.status}") + ")"
    return True, "live and ready"


def wait_for_apiservers(
    session: Session,
    required: Sequence[str] | None = None,
    *,
    when_answering: Callable[[], None] | None = None,
) -> None:
    """Until every required apiserver is live (its etcd check ok) and ready.

    ``when_answering`` is called once, as soon as every one of them answers HTTPS at all
    (from then on the wait also polls at the fast pace: the rest of an apiserver's start,
    its post-start hooks, takes a second or two, and an answering server is cheap to ask
    over a kept-alive connection).
    """
    masters = _required(session, required)
    if not masters:
        return
    all_answering = False
    silent = set(_STARTING.values())

    def probe() -> tuple[bool, str, list[str]]:
        nonlocal all_answering

        def one(master: Master, _host: object) -> tuple[bool, str]:
            return _apiserver_live(session, master.name, kubeconfig_tls(session, master.name))

        results = session.each_host(one, masters)
        if not all_answering and all(text not in silent for _, text in results.values()):
            all_answering = True
            if when_answering is not None:
                when_answering()
        return _tally(results, "apiservers live and ready")

    wait_for(
        session,
        "control-plane",
        "kube-apiserver /livez (etcd check included) and /readyz",
        "kube-apiserver",
        probe,
        session.inventory.timeouts.apiserver_ready,
        [m.name for m in masters],
        fast=lambda: all_answering,
    )


CLUSTER_ROLE_BINDINGS = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"


def ensure_cluster_admins_binding(session: Session) -> None:
    """kubeadm's ClusterRoleBindings our certificates need (bootstrap/rbac.py): admin.conf
    (O=kubeadm:cluster-admins) can do nothing until kubeadm:cluster-admins exists
    (floor.md §5), and from v1.36 the apiserver reaches the kubelets only through
    kubeadm:apiserver-kubelet-client. Created with the first master's super-admin.conf.
    Every init asks (one POST each; 409 when present), so a run cut off right after the
    apiservers came up still ends with a usable admin.conf."""
    from bootstrap.manifests.rbac import bootstrap_bindings

    if "kube-apiserver" not in session.options.components:
        return
    first = session.masters[0].name
    tls = kubeconfig_tls(session, first, "super-admin.conf")
    port = session.tunnel(first, API_PORT)
    for binding in bootstrap_bindings(session.inventory):
        # A GET on a kept-alive connection first: on every run after the first the
        # bindings exist, and a POST always opens a new connection.
        present = get(
            "127.0.0.1", port, f"{CLUSTER_ROLE_BINDINGS}/{binding.name}", tls=tls,
            timeout=PROBE_TIMEOUT, server_name="127.0.0.1",
        )
        if present.status == 200:
            session.console.event("control-plane", f"ClusterRoleBinding {binding.name} present")
            continue
        result = request(
            "127.0.0.1",
            port,
            CLUSTER_ROLE_BINDINGS,
            method="POST",
            body=binding.body(),
            headers={"Content-Type": "application/json"},
            tls=tls,
            timeout=10,
            server_name="127.0.0.1",
        )
        if result.status not in (200, 201, 409):  # 409: it already exists
            raise APIRequestFailed(
                f"creating ClusterRoleBinding {binding.name}: {result.summary()}",
                hint="check the apiserver log on " + first,
            )
        session.console.event("control-plane", f"ClusterRoleBinding {binding.name} present")


def component_probe_path(session: Session, component: str) -> tuple[int, str]:
    if component == "kube-controller-manager":
        return CONTROLLER_MANAGER_PORT, "/healthz"
    return SCHEDULER_PORT, scheduler_health_path(session.inventory.kubernetes_minor)


def wait_for_component(
    session: Session, component: str, required: Sequence[str] | None = None
) -> None:
    masters = _required(session, required)
    if not masters:
        return
    port, path = component_probe_path(session, component)
    # Their serving certs are self-signed (no cluster CA to check against); kubeadm and the
    # kubelet skip verification for these probes too. Only liveness is read here.
    tls = ClientTLS(ca=None, verify=False)

    def probe() -> tuple[bool, str, list[str]]:
        results = session.each_host(
            lambda m, _h: _https_status(session, m.name, port, path, tls), masters
        )
        return _tally(results, f"{component} {path} ok")

    wait_for(
        session,
        "control-plane",
        f"{component} {path}",
        component,
        probe,
        session.inventory.timeouts.component_ready,
        [m.name for m in masters],
    )


def lease_holder(session: Session, component: str) -> tuple[bool, str]:
    """(held by a master, what was seen) for the component's leader-election Lease, read
    through the first master's apiserver with admin.conf. /healthz answers ok before the
    component has reached any apiserver (floor.md §4); a held Lease shows it works."""
    first = session.masters[0].name
    path = f"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{component}"
    try:
        local = session.tunnel(first, API_PORT)
        result = get(
            "127.0.0.1", local, path, tls=kubeconfig_tls(session, first),
            timeout=PROBE_TIMEOUT, server_name="127.0.0.1",
        )
    except HTTPCheckError as exc:
        return False, _waiting_reason(exc)
    except BootstrapError as exc:
        return False, exc.message.splitlines()[0]
    if result.status == 404:
        return False, "no Lease yet"
    if result.status != 200:
        return False, result.summary(80)
    try:
        holder = str(json.loads(result.body)["spec"].get("holderIdentity") or "")
    except (ValueError, KeyError, TypeError):
        return False, "unreadable Lease: " + result.summary(80)
    node = holder.split("_", 1)[0]
    if node not in {m.name for m in session.masters}:
        return False, f"held by {holder or 'nobody'}"
    return True, f"held by {node}"


def wait_for_lease(session: Session, component: str) -> None:
    """The component's Lease has a holder among the masters (skipped when leader election
    was turned off through extraArgs: then there is no Lease to hold)."""
    extra = session.inventory.extra_args.get(component, {})
    if str(extra.get("leader-elect", "true")).lower() == "false":
        session.console.event("control-plane", f"{component}: leader election off, no Lease")
        return

    def probe() -> tuple[bool, str, list[str]]:
        ok, text = lease_holder(session, component)
        return ok, f"Lease kube-system/{component}: {text}", [] if ok else [
            m.name for m in session.masters
        ]

    wait_for(
        session,
        "control-plane",
        f"{component} leader election",
        component,
        probe,
        session.inventory.timeouts.component_ready,
    )


# --- verify --------------------------------------------------------------------------


def verify(
    session: Session, states: Mapping[str, Mapping[str, PodState]] | None = None
) -> VerifyReport:
    """Every check on every master; ``states`` are the nodes' pod states when the caller
    has just read them (``pod_states``), else they are read here."""
    from bootstrap.health.verify import (
        Expected,
        MasterEndpoints,
        VerifyCredentials,
        verify_masters,
    )

    components = session.options.components
    if states is None:
        states = pod_states(session)

    def endpoint(name: str, port: int, component: str) -> tuple[str, int] | None:
        if component not in components:
            return None
        return ("127.0.0.1", session.tunnel(name, port))

    endpoints = []
    for m in session.masters:
        endpoints.append(
            MasterEndpoints(
                name=m.name,
                etcd_client=("127.0.0.1", session.tunnel(m.name, ETCD_CLIENT_PORT)),
                etcd_metrics=("127.0.0.1", session.tunnel(m.name, ETCD_METRICS_PORT)),
                apiserver=endpoint(m.name, API_PORT, "kube-apiserver"),
                controller_manager=endpoint(
                    m.name, CONTROLLER_MANAGER_PORT, "kube-controller-manager"
                ),
                scheduler=endpoint(m.name, SCHEDULER_PORT, "kube-scheduler"),
                address=url_host(m.address),
            )
        )
    first = session.masters[0].name
    admin = kubeconfig_tls(session, first)
    etcd = etcd_tls(session, first)
    creds = VerifyCredentials(
        etcd=etcd,
        ca=Path(str(admin.ca)),
        admin_cert=Path(str(admin.cert)),
        admin_key=Path(str(admin.key)),
    )
    expected = Expected(
        members={m.name: m.peer_url for m in session.masters},
        etcd_version=session.inventory.etcd_semver,
        kubernetes_minor=session.inventory.kubernetes_minor,
    )
    return verify_masters(endpoints, expected, creds, components=components, pod_states=states)
