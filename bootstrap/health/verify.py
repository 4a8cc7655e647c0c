"""`bootstrap verify`: named checks per master, one table, an honest exit code.

The checks take endpoints (local host:port pairs), not SSH objects: in production the
orchestrator opens an SSH tunnel to each master's loopback and passes the local ends;
tests pass real etcd members' loopback ports directly.

Per master:
- etcd through that master's 127.0.0.1:2379 with the apiserver-etcd-client cert (the
  apiserver's exact credentials and path): etcd-members, etcd-voters, etcd-leader,
  etcd-alarms, etcd-raft; plus etcd-health, the member's plain-HTTP probe endpoint on
  2381 (/readyz from etcd 3.5.11, /health before), as the kubelet probes it.
- kube-apiserver, full TLS verification against the cluster CA with the admin client
  cert: apiserver-livez-etcd (the apiserver's own view of its loopback etcd; floor.md:
  /readyz may lack the etcd check) and apiserver-readyz.
- controller-manager /healthz (10257) and scheduler /livez (10259; /healthz before 1.32).

Network I/O happens first (one thread per master); evaluation is pure and builds the
CheckResults. A component the node reports as not running is "not running (reason)",
never "ok"; components left out with `--components` are "skipped" and the report says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from bootstrap.errors import BootstrapError, UsageError, plural
from bootstrap.etcd.client import (
    Alarm,
    EtcdClient,
    Member,
    Status,
    TLSFiles,
    health_path,
    probe_health,
)
from bootstrap.inventory.model import (
    API_PORT,
    COMPONENTS,
    CONTROLLER_MANAGER_PORT,
    ETCD_CLIENT_PORT,
    ETCD_METRICS_PORT,
    SCHEDULER_PORT,
)
from bootstrap.transport import httpcheck

CheckStatus = Literal["ok", "fail", "not running", "skipped"]

CHECKS: dict[str, tuple[str, ...]] = {
    "etcd": (
        "etcd-members",
        "etcd-voters",
        "etcd-leader",
        "etcd-alarms",
        "etcd-raft",
        "etcd-health",
    ),
    "kube-apiserver": ("apiserver-livez-etcd", "apiserver-readyz"),
    "kube-controller-manager": ("controller-manager-healthz",),
    "kube-scheduler": ("scheduler-livez",),
}

# etcd-raft thresholds.
# Commit-index lag between this member and the most advanced reachable one. The
# statuses are read within a second of each other; a busy control plane commits a few
# hundred entries per second, so a healthy follower stays well under 1000. A member
# restarting or catching up from a snapshot is thousands behind: that is what we flag.
RAFT_INDEX_LAG_MAX = 1000
# Commit-vs-applied gap on one member: etcd itself refuses requests ("too many
# requests") above 5000 (maxGapBetweenApplyAndCommitIndex), so we fail at the same gap.
RAFT_APPLY_LAG_MAX = 5000

# The exact command an operator can run on a master to drop a stale member (kubeadm paths).
_ETCDCTL = (
    "etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt "
    "--cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt "
    "--key=/etc/kubernetes/pki/etcd/healthcheck-client.key"
)


# --- inputs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MasterEndpoints:
    """Local (tunnelled) host:port per component of one master. None: not provided."""

    name: str
    etcd_client: tuple[str, int]
    etcd_metrics: tuple[str, int]
    apiserver: tuple[str, int] | None
    controller_manager: tuple[str, int] | None
    scheduler: tuple[str, int] | None
    # Name the apiserver cert must carry when it lacks the tunnel's 127.0.0.1 SAN
    # (kubeadm's does not include it; e.g. the master's name or "kubernetes").
    apiserver_server_name: str | None = None
    etcd_server_name: str | None = None  # etcd server certs carry 127.0.0.1: rarely needed
    # The master's real address: messages say "m2 (10.0.0.12:2379)", not the tunnel's end.
    address: str | None = None

    def label(self, port: int) -> str | None:
        return f"{self.name} ({self.address}:{port})" if self.address else None


@dataclass(frozen=True)
class Expected:
    members: dict[str, str]  # member name -> peer URL, from the inventory
    etcd_version: tuple[int, int, int]
    kubernetes_minor: tuple[int, int]


@dataclass(frozen=True)
class VerifyCredentials:
    etcd: TLSFiles  # etcd CA + apiserver-etcd-client cert/key
    ca: Path  # the cluster CA (apiserver serving cert)
    admin_cert: Path
    admin_key: Path


@dataclass(frozen=True)
class PodState:
    """What the node (lab runner or CRI) reports for a component's static pod."""

    running: bool
    reason: str = ""  # e.g. "ImageUnavailable", "CrashLoopBackOff"
    restarts: int = 0


# --- outputs --------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    master: str
    check: str
    ok: bool
    status: CheckStatus
    detail: str
    hint: str | None = None


@dataclass(frozen=True)
class VerifyReport:
    results: tuple[CheckResult, ...]
    components: tuple[str, ...]  # the components that were checked
    summary: tuple[str, ...] = ()  # cluster-wide lines (etcd quorum)

    @property
    def limited(self) -> tuple[str, ...]:
        """Components that were NOT checked (left out with --components)."""
        return tuple(c for c in COMPONENTS if c not in self.components)

    @property
    def masters(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.master for r in self.results))

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if r.status in ("fail", "not running"))

    def ok(self) -> bool:
        """True when every check that ran passed (skipped checks do not count either way)."""
        return not self.failures and any(r.status == "ok" for r in self.results)

    def exit_code(self) -> int:
        return 0 if self.ok() else 1

    def table(self) -> str:
        """Checks down, masters across (a 3-7 master table stays narrow), then failures."""
        lines = [self._components_line(), *self.summary, ""]
        masters = self.masters
        checks = tuple(dict.fromkeys(r.check for r in self.results))
        cell = {(r.master, r.check): _cell(r.status) for r in self.results}
        header = ("check", *masters)
        rows = [(c, *(cell.get((m, c), "-") for m in masters)) for c in checks]
        widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
        for row in (header, *rows):
            lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        failures = self.failures
        lines.append("")
        if failures:
            # Each distinct hint once, below the failures that share it: one stopped
            # member fails six checks, all with the same advice.
            hints = list(dict.fromkeys(r.hint for r in failures if r.hint))
            lines.append(f"{plural(len(failures), 'check')} failed:")
            for r in failures:
                ref = f" [{hints.index(r.hint) + 1}]" if r.hint and len(hints) > 1 else ""
                lines.append(f"  {r.master} {r.check}: {r.detail}{ref}")
            if len(hints) == 1:
                lines.append(f"  hint: {hints[0]}")
            lines += [f"  hint: [{n}] {hint}" for n, hint in enumerate(hints, 1) if len(hints) > 1]
        elif self.ok():
            lines.append("all checks passed")
        else:
            lines.append("no check ran")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok(),
            "components": list(self.components),
            "limited": list(self.limited),
            "summary": list(self.summary),
            "results": [asdict(r) for r in self.results],
        }

    def _components_line(self) -> str:
        line = "components checked: " + (", ".join(self.components) or "none")
        if self.limited:
            line += f" (limited: {', '.join(self.limited)} not checked)"
        return line


def exit_code(report: VerifyReport) -> int:
    return report.exit_code()


def _cell(status: CheckStatus) -> str:
    return "FAIL" if status == "fail" else status


# --- gathering (network) --------------------------------------------------------------


@dataclass(frozen=True)
class _Failure:
    detail: str
    hint: str | None


@dataclass(frozen=True)
class _EtcdView:
    status: Status | _Failure
    members: list[Member] | _Failure
    alarms: list[Alarm] | _Failure
    health: tuple[bool, str]


@dataclass(frozen=True)
class _HTTPOutcome:
    path: str
    result: httpcheck.HTTPResult | _Failure


def _failure(exc: BootstrapError) -> _Failure:
    return _Failure(detail=str(exc), hint=exc.hint)


def _gather_etcd(
    ep: MasterEndpoints, creds: VerifyCredentials, expected: Expected, timeout: float
) -> _EtcdView:
    path = health_path(expected.etcd_version)
    health = probe_health(
        ep.etcd_metrics[0], ep.etcd_metrics[1], path, timeout, ep.label(ETCD_METRICS_PORT)
    )
    try:
        client = EtcdClient(
            ep.etcd_client[0],
            ep.etcd_client[1],
            creds.etcd,
            timeout=timeout,
            server_name=ep.etcd_server_name,
            label=ep.label(ETCD_CLIENT_PORT),
        )
    except BootstrapError as exc:
        f = _failure(exc)
        return _EtcdView(f, f, f, health)
    with client:
        try:
            status: Status | _Failure = client.status()
        except BootstrapError as exc:
            # Status is answered locally; when it fails the member is unreachable, so the
            # other calls would only wait out the same timeout again.
            f = _failure(exc)
            return _EtcdView(f, f, f, health)
        members: list[Member] | _Failure
        alarms: list[Alarm] | _Failure
        try:
            members = client.members()
        except BootstrapError as exc:
            members = _failure(exc)
        try:
            alarms = client.alarms()  # goes through raft: fails without quorum
        except BootstrapError as exc:
            alarms = _failure(exc)
    return _EtcdView(status, members, alarms, health)


def _http(
    endpoint: tuple[str, int],
    path: str,
    tls: httpcheck.ClientTLS,
    timeout: float,
    server_name: str | None = None,
    label: str | None = None,
) -> _HTTPOutcome:
    try:
        result = httpcheck.get(
            endpoint[0],
            endpoint[1],
            path,
            tls=tls,
            timeout=timeout,
            server_name=server_name,
            label=label,
        )
    except httpcheck.HTTPCheckError as exc:
        return _HTTPOutcome(path, _failure(exc))
    return _HTTPOutcome(path, result)


# --- evaluation (pure) ----------------------------------------------------------------


def _result(master: str, check: str, ok: bool, detail: str, hint: str | None = None) -> CheckResult:
    return CheckResult(master, check, ok, "ok" if ok else "fail", detail, None if ok else hint)


@dataclass(frozen=True)
class _Quorum:
    text: str
    leader_id: int | None  # the one leader all reachable members agree on, if any
    names: dict[int, str]


def _quorum(views: Mapping[str, _EtcdView], expected: Expected) -> _Quorum:
    names: dict[int, str] = {}
    voters: set[int] = set()
    learners: set[int] = set()
    for view in views.values():
        if isinstance(view.members, list):
            for m in view.members:
                names.setdefault(m.id, m.name or f"(unstarted {m.hex_id})")
                (learners if m.is_learner else voters).add(m.id)
    statuses = [v.status for v in views.values() if isinstance(v.status, Status)]
    for s in statuses:
        names.setdefault(s.member_id, f"{s.member_id:x}")
    voters -= learners
    total = len(voters) or len(expected.members)
    reachable = len({s.member_id for s in statuses if not s.is_learner})
    need = total // 2 + 1
    leaders = {s.leader_id for s in statuses if s.leader_id}
    head = f"etcd: {reachable}/{total} voting members reachable"
    if reachable < need:
        return _Quorum(f"{head}: QUORUM LOST (needs {need})", None, names)
    if len(leaders) == 1:
        leader = next(iter(leaders))
        reachable_ids = {s.member_id for s in statuses}
        if leader in reachable_ids:
            return _Quorum(
                f"{head}: quorum held, leader {names.get(leader, hex(leader))}", leader, names
            )
        return _Quorum(
            f"{head}: leader {names.get(leader, hex(leader))} is not reachable (election pending?)",
            None,
            names,
        )
    if not leaders:
        return _Quorum(f"{head}: quorum reachable but no leader elected yet", None, names)
    shown = ", ".join(sorted(names.get(x, hex(x)) for x in leaders))
    return _Quorum(f"{head}: members disagree on the leader ({shown})", None, names)


def _members_check(master: str, members: list[Member], expected: Expected) -> CheckResult:
    problems: list[str] = []
    hints: list[str] = []
    by_name = {m.name: m for m in members if m.name}
    expected_urls = set(expected.members.values())
    for name, url in sorted(expected.members.items()):
        m = by_name.get(name)
        if m is None:
            unstarted = [x for x in members if not x.name and url in x.peer_urls]
            if unstarted:
                problems.append(f"{name} added ({unstarted[0].hex_id}) but never started")
                hints.append(f"resume the join: `bootstrap add-master {name}`")
            else:
                problems.append(f"missing {name} ({url})")
                hints.append(f"add it: `bootstrap add-master {name}` (or re-run `bootstrap init`)")
        elif url not in m.peer_urls:
            problems.append(f"{name} has peer URL {', '.join(m.peer_urls)}, inventory says {url}")
            hints.append(
                f"the member was created with another address: remove it "
                f"(`bootstrap remove-master {name}`) and add it again"
            )
    for m in members:
        if m.name in expected.members or (not m.name and set(m.peer_urls) & expected_urls):
            continue
        label = m.name or "(unstarted)"
        problems.append(
            f"stale member {label} {m.hex_id} ({', '.join(m.peer_urls)}) not in inventory"
        )
        if m.name:
            hints.append(
                f"remove it: `bootstrap remove-master {m.name}` or on a master: "
                f"`{_ETCDCTL} member remove {m.hex_id}`"
            )
        else:
            hints.append(f"remove it on a master: `{_ETCDCTL} member remove {m.hex_id}`")
    if problems:
        return _result(master, "etcd-members", False, "; ".join(problems), "; ".join(hints))
    verb = "matches" if len(members) == 1 else "match"
    matching = f"{plural(len(members), 'member')} {verb} the inventory"
    return _result(master, "etcd-members", True, matching)


def _etcd_results(
    master: str,
    view: _EtcdView,
    quorum: _Quorum,
    all_views: Mapping[str, _EtcdView],
    expected: Expected,
) -> list[CheckResult]:
    out: list[CheckResult] = []
    status = view.status
    if isinstance(status, _Failure):
        detail = f"member unreachable: {status.detail}; {quorum.text}"
        for check in CHECKS["etcd"][:-1]:
            out.append(_result(master, check, False, detail, status.hint))
    else:
        # members / voters
        if isinstance(view.members, _Failure):
            out.append(
                _result(master, "etcd-members", False, view.members.detail, view.members.hint)
            )
            out.append(
                _result(master, "etcd-voters", False, view.members.detail, view.members.hint)
            )
        else:
            out.append(_members_check(master, view.members, expected))
            learners = [m for m in view.members if m.is_learner]
            if learners:
                shown = ", ".join(f"{m.name or '(unstarted)'} {m.hex_id}" for m in learners)
                out.append(
                    _result(
                        master,
                        "etcd-voters",
                        False,
                        f"learner(s) not promoted: {shown}",
                        "a learner is promoted once it caught up: resume the join with "
                        "`bootstrap add-master NAME`, or remove it if the join was abandoned",
                    )
                )
            else:
                out.append(
                    _result(
                        master,
                        "etcd-voters",
                        True,
                        f"every member is a voter ({plural(len(view.members), 'member')})",
                    )
                )
        # leader
        if quorum.leader_id is not None and status.leader_id == quorum.leader_id:
            out.append(_result(master, "etcd-leader", True, quorum.text))
        else:
            seen = (
                quorum.names.get(status.leader_id, f"{status.leader_id:x}")
                if status.leader_id
                else "none"
            )
            out.append(
                _result(
                    master,
                    "etcd-leader",
                    False,
                    f"this member's leader: {seen}; {quorum.text}",
                    "without exactly one leader the cluster cannot write: start the stopped "
                    "members (see the etcd-health rows) until a majority runs",
                )
            )
        # alarms
        if isinstance(view.alarms, _Failure):
            out.append(
                _result(
                    master,
                    "etcd-alarms",
                    False,
                    f"cannot list alarms: {view.alarms.detail}",
                    view.alarms.hint,
                )
            )
        elif view.alarms:
            shown = ", ".join(
                f"{a.kind} on {quorum.names.get(a.member_id, hex(a.member_id))}"
                for a in view.alarms
            )
            hint = (
                "NOSPACE: compact and defragment, then `etcdctl alarm disarm`; "
                "CORRUPT: restore the member from a snapshot"
            )
            out.append(_result(master, "etcd-alarms", False, f"active alarms: {shown}", hint))
        else:
            out.append(_result(master, "etcd-alarms", True, "no alarms"))
        # raft
        out.append(_raft_check(master, status, all_views))
    ok, detail = view.health
    out.append(
        _result(
            master,
            "etcd-health",
            ok,
            detail,
            "the member's probe endpoint on the metrics port (2381) is not healthy: "
            "see the etcd log on this master (lab: runner log; node: crictl logs)",
        )
    )
    return out


def _raft_check(master: str, status: Status, views: Mapping[str, _EtcdView]) -> CheckResult:
    highest = max(v.status.raft_index for v in views.values() if isinstance(v.status, Status))
    lag = highest - status.raft_index
    problems = []
    if lag > RAFT_INDEX_LAG_MAX:
        problems.append(
            f"raft index {status.raft_index} is {lag} behind the most advanced member "
            f"({highest}; limit {RAFT_INDEX_LAG_MAX})"
        )
    applied = status.raft_applied_index
    if applied is not None and status.raft_index - applied > RAFT_APPLY_LAG_MAX:
        problems.append(
            f"applied index {applied} is {status.raft_index - applied} behind its "
            f"commit index (limit {RAFT_APPLY_LAG_MAX})"
        )
    if status.errors:
        problems.append("member reports errors: " + "; ".join(status.errors))
    if problems:
        return _result(
            master,
            "etcd-raft",
            False,
            "; ".join(problems),
            "the member is catching up or overloaded: wait and re-run verify; if it "
            "stays behind, check its disk latency and log",
        )
    return _result(master, "etcd-raft", True, f"raft index {status.raft_index} (lag {lag})")


def _http_result(
    master: str, check: str, outcome: _HTTPOutcome, hint: str, note: str = ""
) -> CheckResult:
    suffix = f" ({note})" if note else ""
    if isinstance(outcome.result, _Failure):
        return _result(
            master,
            check,
            False,
            f"GET {outcome.path}: {outcome.result.detail}{suffix}",
            outcome.result.hint or hint,
        )
    result = outcome.result
    ok = result.status == 200 and result.text.strip() == "ok"
    return _result(master, check, ok, f"GET {outcome.path}: {result.summary()}{suffix}", hint)


# --- the entry point ------------------------------------------------------------------


def verify_masters(
    endpoints: Sequence[MasterEndpoints],
    expected: Expected,
    creds: VerifyCredentials,
    components: Sequence[str] = COMPONENTS,
    pod_states: Mapping[str, Mapping[str, PodState]] | None = None,
    *,
    timeout: float = 5.0,
) -> VerifyReport:
    unknown = [c for c in components if c not in COMPONENTS]
    if unknown:
        raise UsageError(
            f"unknown component(s): {', '.join(unknown)}",
            hint=f"choose from {', '.join(COMPONENTS)}",
        )
    checked = tuple(c for c in COMPONENTS if c in components)
    pods = pod_states or {}

    def not_running(master: str, component: str) -> PodState | None:
        state = pods.get(master, {}).get(component)
        return state if state is not None and not state.running else None

    etcd_targets = [
        ep for ep in endpoints if "etcd" in checked and not_running(ep.name, "etcd") is None
    ]
    api_tls = httpcheck.ClientTLS(ca=creds.ca, cert=creds.admin_cert, key=creds.admin_key)
    # controller-manager and scheduler serve self-signed certs generated at startup (no
    # --tls-cert-file in kubeadm's manifests): they cannot be verified against the
    # cluster CA. Like the kubelet's HTTPS probes and kubeadm's control-plane checks we
    # skip verification for these two health endpoints only; nothing secret is sent.
    unverified = httpcheck.ClientTLS(ca=None, verify=False)
    scheduler_path = "/livez" if expected.kubernetes_minor >= (1, 32) else "/healthz"

    http_jobs: dict[
        tuple[str, str], tuple[tuple[str, int], str, httpcheck.ClientTLS, str | None]
    ] = {}
    for ep in endpoints:
        if (
            "kube-apiserver" in checked
            and ep.apiserver
            and not not_running(ep.name, "kube-apiserver")
        ):
            http_jobs[(ep.name, "apiserver-livez-etcd")] = (
                ep.apiserver,
                httpcheck.APISERVER_LIVEZ_VERBOSE,
                api_tls,
                ep.apiserver_server_name,
            )
            http_jobs[(ep.name, "apiserver-readyz")] = (
                ep.apiserver,
                "/readyz",
                api_tls,
                ep.apiserver_server_name,
            )
        if (
            "kube-controller-manager" in checked
            and ep.controller_manager
            and not not_running(ep.name, "kube-controller-manager")
        ):
            http_jobs[(ep.name, "controller-manager-healthz")] = (
                ep.controller_manager,
                "/healthz",
                unverified,
                None,
            )
        if (
            "kube-scheduler" in checked
            and ep.scheduler
            and not not_running(ep.name, "kube-scheduler")
        ):
            http_jobs[(ep.name, "scheduler-livez")] = (
                ep.scheduler,
                scheduler_path,
                unverified,
                None,
            )

    workers = max(1, min(16, len(etcd_targets) + len(http_jobs)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verify") as pool:
        etcd_futures = {
            ep.name: pool.submit(_gather_etcd, ep, creds, expected, timeout) for ep in etcd_targets
        }
        http_futures = {
            key: pool.submit(
                _http, job[0], job[1], job[2], timeout, job[3], _label(endpoints, key)
            )
            for key, job in http_jobs.items()
        }
        views = {name: f.result() for name, f in etcd_futures.items()}
        outcomes = {key: f.result() for key, f in http_futures.items()}

    summary: tuple[str, ...] = ()
    quorum = None
    if views:
        quorum = _quorum(views, expected)
        summary = (quorum.text,)

    results: list[CheckResult] = []
    for ep in endpoints:
        for component in COMPONENTS:
            names = CHECKS[component]
            if component not in checked:
                results.extend(
                    CheckResult(
                        ep.name, c, False, "skipped", f"{component} not checked (--components)"
                    )
                    for c in names
                )
                continue
            state = not_running(ep.name, component)
            if state is not None:
                reason = state.reason or "unknown reason"
                results.extend(
                    CheckResult(
                        ep.name,
                        c,
                        False,
                        "not running",
                        f"not running ({reason})",
                        f"the {component} pod is not running on {ep.name}: see its log "
                        "(lab: runner log; node: `crictl logs`)",
                    )
                    for c in names
                )
                continue
            if component == "etcd":
                assert quorum is not None  # etcd views exist whenever etcd is checked here
                results.extend(_etcd_results(ep.name, views[ep.name], quorum, views, expected))
                continue
            for check in names:
                outcome = outcomes.get((ep.name, check))
                if outcome is None:
                    results.append(
                        CheckResult(
                            ep.name,
                            check,
                            False,
                            "fail",
                            f"no endpoint given for {component}",
                            "the orchestrator did not open a tunnel for this component",
                        )
                    )
                    continue
                results.append(_component_result(ep.name, check, outcome))
    return VerifyReport(results=tuple(results), components=checked, summary=summary)


_CHECK_PORTS = {
    "apiserver-livez-etcd": API_PORT,
    "apiserver-readyz": API_PORT,
    "controller-manager-healthz": CONTROLLER_MANAGER_PORT,
    "scheduler-livez": SCHEDULER_PORT,
}


def _label(endpoints: Sequence[MasterEndpoints], key: tuple[str, str]) -> str | None:
    """How an HTTP check names its server: the master and its real address and port."""
    master, check = key
    for ep in endpoints:
        if ep.name == master:
            return ep.label(_CHECK_PORTS[check])
    return None


def _component_result(master: str, check: str, outcome: _HTTPOutcome) -> CheckResult:
    if check == "apiserver-livez-etcd":
        hint = (
            "the apiserver cannot reach its local etcd member (127.0.0.1:2379): "
            "check the etcd rows for this master and the apiserver's --etcd-* flags and certs"
        )
        if isinstance(outcome.result, _Failure):
            return _http_result(master, check, outcome, hint)
        ok, said = httpcheck.verbose_check(outcome.result, "etcd")
        return _result(master, check, ok, f"GET {outcome.path}: {said}", hint)
    if check == "apiserver-readyz":
        return _http_result(
            master,
            check,
            outcome,
            "the apiserver is not ready: see its log; `GET /readyz?verbose` "
            "lists the failing checks",
        )
    if check == "controller-manager-healthz":
        return _http_result(
            master,
            check,
            outcome,
            "see the controller-manager log on this master",
            note="self-signed serving cert: not verified",
        )
    return _http_result(
        master,
        check,
        outcome,
        "see the scheduler log on this master",
        note="self-signed serving cert: not verified",
    )
