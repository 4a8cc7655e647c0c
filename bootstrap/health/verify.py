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

The checks are one table (_TABLE: name, component, how the check runs, how it is
judged). Network I/O happens first (_gather: one thread per probe; every connection to a
master is opened by its _MasterClient); judging is pure and builds the CheckResults. A
component the node reports as not running is "not running (reason)", never "ok";
components left out with `--components` are "skipped" and the report says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar

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
from bootstrap.manifests.components import scheduler_health_path
from bootstrap.node.podstate import PodState
from bootstrap.node.view import logs_hint
from bootstrap.transport import httpcheck

CheckStatus = Literal["ok", "fail", "not running", "skipped"]

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
        """What `bootstrap verify` exits with (the CLI returns exactly this)."""
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


def _cell(status: CheckStatus) -> str:
    return "FAIL" if status == "fail" else status


# --- what the probes bring back -------------------------------------------------------


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


# --- connections (network) ------------------------------------------------------------

# controller-manager and scheduler serve self-signed certs generated at startup (no
# --tls-cert-file in kubeadm's manifests): they cannot be verified against the cluster
# CA. Like the kubelet's HTTPS probes and kubeadm's control-plane checks we skip
# verification for these two health endpoints only; nothing secret is sent.
_UNVERIFIED = httpcheck.ClientTLS(ca=None, verify=False)


class _MasterClient:
    """Every connection verify makes to one master is opened here and nowhere else: the
    etcd client, the plain-HTTP probe of etcd's metrics port, the HTTPS GETs. One object
    per master (see _gather), so keeping connections open across a master's checks is a
    change to this class alone."""

    def __init__(self, ep: MasterEndpoints, creds: VerifyCredentials, timeout: float) -> None:
        self.ep = ep
        self._etcd_tls = creds.etcd
        self._admin_tls = httpcheck.ClientTLS(
            ca=creds.ca, cert=creds.admin_cert, key=creds.admin_key
        )
        self._timeout = timeout

    def etcd(self) -> EtcdClient:
        host, port = self.ep.etcd_client
        return EtcdClient(
            host,
            port,
            self._etcd_tls,
            timeout=self._timeout,
            server_name=self.ep.etcd_server_name,
            label=self.ep.label(ETCD_CLIENT_PORT),
        )

    def etcd_health(self, path: str) -> tuple[bool, str]:
        host, port = self.ep.etcd_metrics
        return probe_health(host, port, path, self._timeout, self.ep.label(ETCD_METRICS_PORT))

    def get(
        self,
        endpoint: tuple[str, int],
        port: int,
        path: str,
        *,
        verified: bool,
        server_name: str | None,
    ) -> httpcheck.HTTPResult:
        """GET over TLS: verified against the cluster CA with the admin client cert, or
        (self-signed components) not verified and without a client cert."""
        return httpcheck.get(
            endpoint[0],
            endpoint[1],
            path,
            tls=self._admin_tls if verified else _UNVERIFIED,
            timeout=self._timeout,
            server_name=server_name,
            label=self.ep.label(port),
        )


# --- probes: how a check runs ---------------------------------------------------------

_T_co = TypeVar("_T_co", covariant=True)


class _Probe(Protocol[_T_co]):
    """One network call per master; checks naming the same probe share its outcome."""

    def target(self, ep: MasterEndpoints) -> tuple[str, int] | None:
        """Where the probe goes; None: the orchestrator gave no endpoint."""
        ...

    def run(self, client: _MasterClient, expected: Expected) -> _T_co: ...


@dataclass(frozen=True)
class _EtcdProbe:
    """etcd's checks share one gathering per master: status, members and alarms through
    the client port (the apiserver's exact credentials and path), plus the member's
    health endpoint on the metrics port."""

    def target(self, ep: MasterEndpoints) -> tuple[str, int] | None:
        return ep.etcd_client

    def run(self, client: _MasterClient, expected: Expected) -> _EtcdView:
        health = client.etcd_health(health_path(expected.etcd_version))
        try:
            etcd = client.etcd()
        except BootstrapError as exc:
            f = _failure(exc)
            return _EtcdView(f, f, f, health)
        with etcd:
            try:
                status: Status | _Failure = etcd.status()
            except BootstrapError as exc:
                # Status is answered locally; when it fails the member is unreachable, so
                # the other calls would only wait out the same timeout again.
                f = _failure(exc)
                return _EtcdView(f, f, f, health)
            members: list[Member] | _Failure
            alarms: list[Alarm] | _Failure
            try:
                members = etcd.members()
            except BootstrapError as exc:
                members = _failure(exc)
            try:
                alarms = etcd.alarms()  # goes through raft: fails without quorum
            except BootstrapError as exc:
                alarms = _failure(exc)
        return _EtcdView(status, members, alarms, health)


def _no_server_name(ep: MasterEndpoints) -> str | None:
    return None


@dataclass(frozen=True)
class _HTTPProbe:
    """One HTTPS GET of a component's health path."""

    port: int  # the component's port on the master (messages name it, not the tunnel's)
    endpoint: Callable[[MasterEndpoints], tuple[str, int] | None]
    path: Callable[[Expected], str]
    verified: bool  # the serving cert chains to the cluster CA (see _UNVERIFIED)
    server_name: Callable[[MasterEndpoints], str | None] = _no_server_name

    def target(self, ep: MasterEndpoints) -> tuple[str, int] | None:
        return self.endpoint(ep)

    def run(self, client: _MasterClient, expected: Expected) -> _HTTPOutcome:
        endpoint = self.endpoint(client.ep)
        assert endpoint is not None  # only probes with a target run
        path = self.path(expected)
        try:
            result = client.get(
                endpoint,
                self.port,
                path,
                verified=self.verified,
                server_name=self.server_name(client.ep),
            )
        except httpcheck.HTTPCheckError as exc:
            return _HTTPOutcome(path, _failure(exc))
        return _HTTPOutcome(path, result)


# --- judging (pure) -------------------------------------------------------------------


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


@dataclass(frozen=True)
class _Context:
    """What a judge sees besides its own probe's outcome."""

    master: str
    check: str
    expected: Expected
    views: Mapping[str, _EtcdView]  # every master's etcd view (raft lag compares them)
    quorum_or_none: _Quorum | None

    @property
    def quorum(self) -> _Quorum:
        assert self.quorum_or_none is not None  # etcd views exist whenever etcd is judged
        return self.quorum_or_none

    def result(self, ok: bool, detail: str, hint: str | None = None) -> CheckResult:
        return _result(self.master, self.check, ok, detail, hint)


_EtcdJudge = Callable[[_EtcdView, _Context], CheckResult]


def _needs_status(judge: Callable[[_EtcdView, Status, _Context], CheckResult]) -> _EtcdJudge:
    """Every etcd check but etcd-health reads the member: unreachable, they all say so."""

    def judged(view: _EtcdView, ctx: _Context) -> CheckResult:
        if isinstance(view.status, _Failure):
            detail = f"member unreachable: {view.status.detail}; {ctx.quorum.text}"
            return ctx.result(False, detail, view.status.hint)
        return judge(view, view.status, ctx)

    return judged


def _needs_members(judge: Callable[[list[Member], _Context], CheckResult]) -> _EtcdJudge:
    def judged(view: _EtcdView, status: Status, ctx: _Context) -> CheckResult:
        if isinstance(view.members, _Failure):
            return ctx.result(False, view.members.detail, view.members.hint)
        return judge(view.members, ctx)

    return _needs_status(judged)


def _judge_members(members: list[Member], ctx: _Context) -> CheckResult:
    expected = ctx.expected
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
        return ctx.result(False, "; ".join(problems), "; ".join(hints))
    verb = "matches" if len(members) == 1 else "match"
    return ctx.result(True, f"{plural(len(members), 'member')} {verb} the inventory")


def _judge_voters(members: list[Member], ctx: _Context) -> CheckResult:
    learners = [m for m in members if m.is_learner]
    if not learners:
        return ctx.result(True, f"every member is a voter ({plural(len(members), 'member')})")
    shown = ", ".join(f"{m.name or '(unstarted)'} {m.hex_id}" for m in learners)
    return ctx.result(
        False,
        f"learner(s) not promoted: {shown}",
        "a learner is promoted once it caught up: resume the join with "
        "`bootstrap add-master NAME`, or remove it if the join was abandoned",
    )


def _judge_leader(view: _EtcdView, status: Status, ctx: _Context) -> CheckResult:
    quorum = ctx.quorum
    if quorum.leader_id is not None and status.leader_id == quorum.leader_id:
        return ctx.result(True, quorum.text)
    seen = (
        quorum.names.get(status.leader_id, f"{status.leader_id:x}") if status.leader_id else "none"
    )
    return ctx.result(
        False,
        f"this member's leader: {seen}; {quorum.text}",
        "without exactly one leader the cluster cannot write: start the stopped "
        "members (see the etcd-health rows) until a majority runs",
    )


def _judge_alarms(view: _EtcdView, status: Status, ctx: _Context) -> CheckResult:
    if isinstance(view.alarms, _Failure):
        return ctx.result(False, f"cannot list alarms: {view.alarms.detail}", view.alarms.hint)
    if not view.alarms:
        return ctx.result(True, "no alarms")
    names = ctx.quorum.names
    shown = ", ".join(
        f"{a.kind} on {names.get(a.member_id, hex(a.member_id))}" for a in view.alarms
    )
    return ctx.result(
        False,
        f"active alarms: {shown}",
        "NOSPACE: compact and defragment, then `etcdctl alarm disarm`; "
        "CORRUPT: restore the member from a snapshot",
    )


def _judge_raft(view: _EtcdView, status: Status, ctx: _Context) -> CheckResult:
    highest = max(v.status.raft_index for v in ctx.views.values() if isinstance(v.status, Status))
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
        return ctx.result(
            False,
            "; ".join(problems),
            "the member is catching up or overloaded: wait and re-run verify; if it "
            "stays behind, check its disk latency and log",
        )
    return ctx.result(True, f"raft index {status.raft_index} (lag {lag})")


def _judge_health(view: _EtcdView, ctx: _Context) -> CheckResult:
    ok, detail = view.health
    return ctx.result(
        ok,
        detail,
        "the member's probe endpoint on the metrics port (2381) is not healthy: "
        "see the etcd log on this master",
    )


def _says_ok(result: httpcheck.HTTPResult) -> tuple[bool, str]:
    return result.status == 200 and result.text.strip() == "ok", result.summary()


def _http_judge(
    hint: str,
    *,
    read: Callable[[httpcheck.HTTPResult], tuple[bool, str]] = _says_ok,
    note: str = "",
) -> Callable[[_HTTPOutcome, _Context], CheckResult]:
    """Judge a GET: ``read`` says whether the answer is healthy and what it said."""
    suffix = f" ({note})" if note else ""

    def judge(outcome: _HTTPOutcome, ctx: _Context) -> CheckResult:
        if isinstance(outcome.result, _Failure):
            detail = f"GET {outcome.path}: {outcome.result.detail}{suffix}"
            return ctx.result(False, detail, outcome.result.hint or hint)
        ok, said = read(outcome.result)
        return ctx.result(ok, f"GET {outcome.path}: {said}{suffix}", hint)

    return judge


def _etcd_in_livez(result: httpcheck.HTTPResult) -> tuple[bool, str]:
    return httpcheck.verbose_check(result, "etcd")


def _scheduler_path(expected: Expected) -> str:
    return scheduler_health_path(expected.kubernetes_minor)


# --- the table of checks --------------------------------------------------------------

_T = TypeVar("_T")


@dataclass(frozen=True)
class _Check(Generic[_T]):
    name: str
    component: str
    probe: _Probe[_T]  # how it runs (shared by checks that name the same probe)
    judge: Callable[[_T, _Context], CheckResult]  # how its outcome is judged


_ETCD = _EtcdProbe()
_SELF_SIGNED = "self-signed serving cert: not verified"

# In COMPONENTS order: rows of the table and results come out in this order.
_TABLE: tuple[_Check[Any], ...] = (
    _Check("etcd-members", "etcd", _ETCD, _needs_members(_judge_members)),
    _Check("etcd-voters", "etcd", _ETCD, _needs_members(_judge_voters)),
    _Check("etcd-leader", "etcd", _ETCD, _needs_status(_judge_leader)),
    _Check("etcd-alarms", "etcd", _ETCD, _needs_status(_judge_alarms)),
    _Check("etcd-raft", "etcd", _ETCD, _needs_status(_judge_raft)),
    _Check("etcd-health", "etcd", _ETCD, _judge_health),
    _Check(
        "apiserver-livez-etcd",
        "kube-apiserver",
        _HTTPProbe(
            API_PORT,
            lambda ep: ep.apiserver,
            lambda _: httpcheck.APISERVER_LIVEZ_VERBOSE,
            verified=True,
            server_name=lambda ep: ep.apiserver_server_name,
        ),
        _http_judge(
            "the apiserver cannot reach its local etcd member (127.0.0.1:2379): "
            "check the etcd rows for this master and the apiserver's --etcd-* flags and certs",
            read=_etcd_in_livez,
        ),
    ),
    _Check(
        "apiserver-readyz",
        "kube-apiserver",
        _HTTPProbe(
            API_PORT,
            lambda ep: ep.apiserver,
            lambda _: "/readyz",
            verified=True,
            server_name=lambda ep: ep.apiserver_server_name,
        ),
        _http_judge(
            "the apiserver is not ready: see its log; `GET /readyz?verbose` "
            "lists the failing checks"
        ),
    ),
    _Check(
        "controller-manager-healthz",
        "kube-controller-manager",
        _HTTPProbe(
            CONTROLLER_MANAGER_PORT,
            lambda ep: ep.controller_manager,
            lambda _: "/healthz",
            verified=False,
        ),
        _http_judge("see the controller-manager log on this master", note=_SELF_SIGNED),
    ),
    _Check(
        "scheduler-livez",
        "kube-scheduler",
        _HTTPProbe(SCHEDULER_PORT, lambda ep: ep.scheduler, _scheduler_path, verified=False),
        _http_judge("see the scheduler log on this master", note=_SELF_SIGNED),
    ),
)
assert tuple(dict.fromkeys(c.component for c in _TABLE)) == COMPONENTS

# Check names per component, in table order.
CHECKS: dict[str, tuple[str, ...]] = {
    component: tuple(c.name for c in _TABLE if c.component == component)
    for component in COMPONENTS
}


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

    def stopped(master: str, component: str) -> PodState | None:
        state = pods.get(master, {}).get(component)
        return state if state is not None and not state.running else None

    def gathered(ep: MasterEndpoints, check: _Check[Any]) -> bool:
        return (
            check.component in checked
            and stopped(ep.name, check.component) is None
            and check.probe.target(ep) is not None
        )

    jobs = [(ep, check.probe) for ep in endpoints for check in _TABLE if gathered(ep, check)]
    outcomes = _gather(jobs, expected, creds, timeout)
    views = {name: o for (name, probe), o in outcomes.items() if probe is _ETCD}
    quorum = _quorum(views, expected) if views else None

    results: list[CheckResult] = []
    for ep in endpoints:
        for check in _TABLE:
            component = check.component
            if component not in checked:
                detail = f"{component} not checked (--components)"
                results.append(CheckResult(ep.name, check.name, False, "skipped", detail))
            elif (state := stopped(ep.name, component)) is not None:
                results.append(_not_running(ep.name, check.name, component, state))
            elif (ep.name, check.probe) not in outcomes:
                results.append(_no_endpoint(ep.name, check.name, component))
            else:
                ctx = _Context(ep.name, check.name, expected, views, quorum)
                results.append(check.judge(outcomes[(ep.name, check.probe)], ctx))
    summary = (quorum.text,) if quorum is not None else ()
    return VerifyReport(results=tuple(results), components=checked, summary=summary)


def _gather(
    jobs: Sequence[tuple[MasterEndpoints, _Probe[Any]]],
    expected: Expected,
    creds: VerifyCredentials,
    timeout: float,
) -> dict[tuple[str, _Probe[Any]], Any]:
    """Run each distinct (master, probe) once, one thread each; all network I/O is here."""
    distinct = {(ep.name, probe): ep for ep, probe in jobs}
    clients = {ep.name: _MasterClient(ep, creds, timeout) for ep in distinct.values()}
    workers = max(1, min(16, len(distinct)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verify") as pool:
        futures = {
            (name, probe): pool.submit(probe.run, clients[name], expected)
            for name, probe in distinct
        }
        return {key: f.result() for key, f in futures.items()}


def _not_running(master: str, check: str, component: str, state: PodState) -> CheckResult:
    return CheckResult(
        master,
        check,
        False,
        "not running",
        f"not running ({state.describe()})",
        f"the {component} pod is not running on {master}: see its log "
        f"({logs_hint(state.source)})",
    )


def _no_endpoint(master: str, check: str, component: str) -> CheckResult:
    return CheckResult(
        master,
        check,
        False,
        "fail",
        f"no endpoint given for {component}",
        "the orchestrator did not open a tunnel for this component",
    )
