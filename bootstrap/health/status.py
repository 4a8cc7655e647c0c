"""`bootstrap status`: one table, masters × components, as the nodes report them, and an
exit code that tells the truth (issue 16 item 11).

Pod state comes from the node (bootstrap.node.view), the etcd role from the
member's own Status through the tunnel, and the soonest certificate expiry from the
certificates actually on the host (not the local copies).

A member that does not answer is described by what was observed, naming the master and
its real address (never the local end of the SSH tunnel): the node says the pod is not
running; nothing listens on its client port (refused); it accepts connections but does
not answer (a stopped/frozen process: the node's process state says so); the TLS
handshake failed. Table cells hold short fixed words; the full causes are listed below the
table, never cut. Exit 1 when anything is wrong: a master unreachable, a member down,
no quorum or no leader, a pod of the checked components not running, a membership
problem, an expired certificate. A pod that runs but has not passed its probes yet is a
note (it is starting), not a failure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bootstrap.errors import BootstrapError
from bootstrap.etcd.client import EtcdUnreachable, Status
from bootstrap.etcd.view import ClusterView
from bootstrap.inventory.model import COMPONENTS, ETCD_CLIENT_PORT, KUBERNETES_DIR, PKI_DIR, Master
from bootstrap.model import RemoteHost
from bootstrap.node.podstate import PodState
from bootstrap.node.view import read_pod_states
from bootstrap.run.etcdview import member_label
from bootstrap.run.session import Session

_CERTS_SCRIPT = f"""
for f in {PKI_DIR}/*.crt {PKI_DIR}/etcd/*.crt; do
  [ -f "$f" ] || continue; echo "@@$f"; cat "$f"
done
for f in {KUBERNETES_DIR}/*.conf; do
  [ -f "$f" ] || continue; echo "@@$f"
  sed -n 's/^ *client-certificate-data: *//p' "$f" | base64 -d 2>/dev/null
done
"""

# What the host itself says about its etcd: is the client port listening, and in which
# state is the process (T: stopped, e.g. SIGSTOP; D: stuck in the kernel)? The process is
# the one that holds the listening socket (a container's process name is not always
# "etcd"), or any process named etcd.
_ETCD_SCRIPT = f"""
echo @@listen; cat /proc/net/tcp /proc/net/tcp6 2>/dev/null
echo @@etcd
port=$(printf ':%04X' {ETCD_CLIENT_PORT})
inodes=$(awk -v p="$port" '$4 == "0A" && substr($2, length($2) - 4) == p {{print $10}}' \
  /proc/net/tcp /proc/net/tcp6 2>/dev/null | sort -u)
pids=$(pgrep -x etcd 2>/dev/null)
for i in $inodes; do
  found=$(find /proc/[0-9]*/fd -maxdepth 1 -lname "socket:\\[$i\\]" 2>/dev/null | cut -d/ -f3)
  pids="$pids $found"
done
for p in $(printf '%s\\n' $pids | sort -u); do
  printf '%s ' "$p"; sed -n 's/^State:[[:space:]]*//p' /proc/$p/status 2>/dev/null
done
"""


@dataclass(frozen=True)
class CertExpiry:
    path: str
    not_after: datetime


def remote_cert_expiries(host: RemoteHost) -> list[CertExpiry]:
    from cryptography import x509

    text = host.run(_CERTS_SCRIPT, sudo=True, check=False, timeout=20).stdout.decode(
        "utf-8", "replace"
    )
    found: list[CertExpiry] = []
    for chunk in text.split("@@")[1:]:
        path, _, pem = chunk.partition("\n")
        try:
            cert = x509.load_pem_x509_certificate(pem.encode())
        except ValueError:
            continue
        found.append(CertExpiry(path.strip(), cert.not_valid_after_utc))
    return found


@dataclass(frozen=True)
class EtcdProcess:
    listening: bool  # something listens on the client port
    states: tuple[str, ...]  # "R (running)", "T (stopped)", ... one per etcd process


def etcd_process(host: RemoteHost) -> EtcdProcess:
    from bootstrap.node.preflight import parse_listening_ports

    text = host.run(_ETCD_SCRIPT, sudo=True, check=False, timeout=20).stdout.decode(
        "utf-8", "replace"
    )
    listen, _, procs = text.partition("@@etcd")
    ports = parse_listening_ports(listen.splitlines())
    states = tuple(
        line.split(" ", 1)[1].strip() for line in procs.splitlines() if " " in line.strip()
    )
    return EtcdProcess(ETCD_CLIENT_PORT in ports, states)


@dataclass
class HostReport:
    pods: dict[str, PodState] = field(default_factory=dict)
    certs: list[CertExpiry] = field(default_factory=list)
    process: EtcdProcess | None = None


def _gather(host: RemoteHost) -> HostReport:
    return HostReport(read_pod_states(host), remote_cert_expiries(host), etcd_process(host))


# --- the etcd cell and its cause ----------------------------------------------------------


@dataclass(frozen=True)
class EtcdState:
    cell: str  # short, fixed words: leader, follower, learner, down: refused, ...
    problem: str | None  # the whole cause, for the list below the table


def etcd_state(
    label: str,
    status: Status | None,
    error: BootstrapError | None,
    pod: PodState | None,
    process: EtcdProcess | None,
) -> EtcdState:
    """What to say about one master's etcd, from everything observed (pure)."""
    if status is not None:
        if status.is_learner:
            return EtcdState("learner", f"{label}: etcd is a learner (not a voter yet)")
        return EtcdState("leader" if status.leader_id == status.member_id else "follower", None)
    if pod is not None and not pod.running and pod.source != "none":
        return EtcdState(
            "down: not running", f"{label}: etcd is not running (the node reports the pod "
            f"{pod.describe()})"
        )
    kind = error.kind if isinstance(error, EtcdUnreachable) else "unavailable"
    detail = error.message if error is not None else "no answer"
    stopped = [s for s in (process.states if process else ()) if s.startswith(("T", "t"))]
    if kind in ("refused", "closed") and process is not None and not process.listening:
        return EtcdState(
            "down: refused",
            f"{label}: connection refused: nothing listens on port {ETCD_CLIENT_PORT} "
            "(etcd is not serving; restarting?)",
        )
    if kind == "timeout":
        if stopped:
            return EtcdState(
                "down: no answer",
                f"{label}: no answer: the etcd process is stopped ({stopped[0]}; SIGSTOP?), "
                "it accepts connections but never replies",
            )
        return EtcdState("down: no answer", f"{label}: no answer ({detail})")
    if kind == "tls":
        return EtcdState("down: TLS failure", f"{label}: {detail}")
    if kind in ("refused", "closed"):
        return EtcdState("down: refused", f"{label}: {detail}")
    return EtcdState("down", f"{label}: {detail}")


def quorum_line(statuses: Mapping[str, Status], voters: int, names: Mapping[int, str]) -> str:
    """etcd's verdict in one line, as verify prints it."""
    answering = [s for s in statuses.values() if not s.is_learner]
    need = voters // 2 + 1
    head = f"etcd: {len(answering)}/{voters} voting members answering"
    if len(answering) < need:
        return f"{head}: QUORUM LOST (needs {need})"
    leaders = {s.leader_id for s in answering} - {0}
    if len(leaders) != 1:
        return f"{head}: no common leader"
    leader = next(iter(leaders))
    return f"{head}: quorum held, leader {names.get(leader, f'{leader:x}')}"


# --- the command ---------------------------------------------------------------------------


def show_status(
    session: Session, *, output: str = "table", components: Sequence[str] = COMPONENTS
) -> int:
    from bootstrap.run.etcdview import membership_lines, probe_cluster

    unreachable = session.connect_reachable()
    masters = list(session.masters)
    reachable = [m for m in masters if m.name in session.hosts]
    reports: dict[str, HostReport] = session.each_host(lambda _m, h: _gather(h), reachable)
    view: ClusterView = probe_cluster(session, reachable)
    now = datetime.now(UTC)
    problems: list[str] = []
    notes: list[str] = []  # shown, but not failures (a pod still starting)
    rows: list[dict[str, Any]] = []
    answering: dict[str, Status] = {}
    for m in masters:
        label = member_label(session, m.name)
        report = reports.get(m.name)
        if report is None:
            why = unreachable.get(m.name, "not connected")
            problems.append(f"{m.name} ({m.address}): host unreachable: {why}")
            rows.append(_row(m, "host unreachable", None, None, now))
            continue
        raw = view.statuses.get(m.name)
        status = raw if isinstance(raw, Status) else None
        if status is not None:
            answering[m.name] = status
        state = etcd_state(
            label, status, view.errors.get(m.name), report.pods.get("etcd"), report.process
        )
        if state.problem:
            problems.append(state.problem)
        for c in components:
            pod = report.pods.get(c)
            if c == "etcd" and state.cell == "down: not running":
                continue  # said above
            if pod is not None and not pod.running:
                problems.append(f"{m.name} ({m.address}): {c} pod {pod.describe()}")
            elif pod is not None and pod.ready is False:
                # Running, its probes not passed yet: a pod that is starting, said as such.
                notes.append(f"{m.name} ({m.address}): {c} pod running, not ready yet")
        soonest = min(report.certs, key=lambda c: c.not_after, default=None)
        if soonest is not None and soonest.not_after <= now:
            problems.append(
                f"{m.name} ({m.address}): {soonest.path} expired on "
                f"{soonest.not_after:%Y-%m-%d %H:%M} UTC (`bootstrap certs renew`)"
            )
        rows.append(_row(m, state.cell, report, soonest, now))
    members = view.members or []
    names = {mem.id: mem.name or mem.hex_id for mem in members}
    voters = len([mem for mem in members if not mem.is_learner]) or len(masters)
    quorum = quorum_line(answering, voters, names)
    if "QUORUM LOST" in quorum or "no common leader" in quorum:
        problems.insert(0, quorum)
    membership = membership_lines(session, members) if members else []
    problems.extend(f"etcd: {line}" for line in membership)
    ok = not problems
    if output == "json":
        doc = {
            "ok": ok,
            "etcd": quorum,
            "masters": rows,
            "membership": membership,
            "problems": problems,
            "notes": notes,
            "components": list(components),
        }
        session.console.out(json.dumps(doc, indent=2, sort_keys=True))
        return 0 if ok else 1
    session.console.out(quorum)
    session.console.out(_table(rows))
    if problems:
        session.console.out(f"{len(problems)} problem(s):")
        session.console.out("\n".join(f"  {p}" for p in problems))
    else:
        session.console.out("no problems")
    if notes:
        session.console.out("\n".join(f"  note: {n}" for n in notes))
    return 0 if ok else 1


def _row(
    m: Master, role: str, report: HostReport | None, soonest: CertExpiry | None, now: datetime
) -> dict[str, Any]:
    pods = report.pods if report else {}
    return {
        "master": m.name,
        "address": str(m.address),
        "etcdRole": role,
        "pods": {
            c: {"phase": s.phase, "ready": s.ready, "restarts": s.restarts, "reason": s.reason}
            for c, s in pods.items()
        },
        "soonestExpiry": soonest.not_after.isoformat() if soonest else None,
        "soonestExpiryPath": soonest.path if soonest else None,
        "daysLeft": round((soonest.not_after - now).total_seconds() / 86400, 1)
        if soonest
        else None,
    }


def _table(rows: Sequence[Mapping[str, Any]]) -> str:
    header = ["MASTER", "ETCD ROLE", *COMPONENTS, "SOONEST CERT EXPIRY"]
    table = [header]
    for row in rows:
        cells = [row["master"], row["etcdRole"]]
        for c in COMPONENTS:
            pod = row["pods"].get(c)
            if pod is None:
                cells.append("-")
                continue
            ready = "" if pod["ready"] is None else (" ready" if pod["ready"] else " not-ready")
            cells.append(f"{pod['phase']}{ready} r={pod['restarts']}")
        cells.append(
            f"{row['soonestExpiry'][:10]} ({row['daysLeft']}d, {row['soonestExpiryPath']})"
            if row["soonestExpiry"]
            else "no certs"
        )
        table.append(cells)
    widths = [max(len(str(r[i])) for r in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table
    )
