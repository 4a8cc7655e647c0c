"""`bootstrap status`: one table, masters × components, as the nodes report them.

Pod state comes from the node (lab runner status or crictl), the etcd role from the
member's own Status through the tunnel, and the soonest certificate expiry from the
certificates actually on the host (not the local copies).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bootstrap.inventory.model import KUBERNETES_DIR, PKI_DIR
from bootstrap.model import RemoteHost
from bootstrap.podstate import COMPONENTS, PodState, read_pod_states
from bootstrap.session import Session

_CERTS_SCRIPT = f"""
for f in {PKI_DIR}/*.crt {PKI_DIR}/etcd/*.crt; do
  [ -f "$f" ] || continue; echo "@@$f"; cat "$f"
done
for f in {KUBERNETES_DIR}/*.conf; do
  [ -f "$f" ] || continue; echo "@@$f"
  sed -n 's/^ *client-certificate-data: *//p' "$f" | base64 -d 2>/dev/null
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


def _role(status: object) -> str:
    if isinstance(status, str):
        return f"down ({status[:40]})"
    member_id = getattr(status, "member_id", 0)
    if getattr(status, "is_learner", False):
        return "learner"
    return "leader" if getattr(status, "leader_id", -1) == member_id else "follower"


def show_status(session: Session, *, output: str = "table") -> int:
    from bootstrap.checks import etcd_statuses

    states: dict[str, dict[str, PodState]] = session.each_host(lambda _m, h: read_pod_states(h))
    expiries = session.each_host(lambda _m, h: remote_cert_expiries(h))
    statuses = etcd_statuses(session)
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for m in session.masters:
        soonest = min(expiries[m.name], key=lambda c: c.not_after, default=None)
        rows.append(
            {
                "master": m.name,
                "address": str(m.address),
                "etcdRole": _role(statuses[m.name]),
                "pods": {
                    c: {
                        "phase": s.phase,
                        "ready": s.ready,
                        "restarts": s.restarts,
                        "reason": s.reason,
                    }
                    for c, s in states[m.name].items()
                },
                "soonestExpiry": soonest.not_after.isoformat() if soonest else None,
                "soonestExpiryPath": soonest.path if soonest else None,
                "daysLeft": round((soonest.not_after - now).total_seconds() / 86400, 1)
                if soonest
                else None,
            }
        )
    from bootstrap.etcdview import membership_notes

    membership = membership_notes(session)  # stale members, with the command to remove them
    if output == "json":
        doc = {"masters": rows, "membership": membership}
        session.console.out(json.dumps(doc, indent=2, sort_keys=True))
        return 0
    header = ["MASTER", "ETCD ROLE", *COMPONENTS, "SOONEST CERT EXPIRY"]
    table = [header]
    for row in rows:
        cells = [row["master"], row["etcdRole"]]
        for c in COMPONENTS:
            pod = row["pods"][c]
            ready = "" if pod["ready"] is None else (" ready" if pod["ready"] else " not-ready")
            cells.append(f"{pod['phase']}{ready} r={pod['restarts']}")
        cells.append(
            f"{row['soonestExpiry'][:10]} ({row['daysLeft']}d, {row['soonestExpiryPath']})"
            if row["soonestExpiry"]
            else "no certs"
        )
        table.append(cells)
    widths = [max(len(str(r[i])) for r in table) for i in range(len(header))]
    for r in table:
        session.console.out(
            "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        )
    reasons = [
        f"  {row['master']} {c}: {p['reason']}"
        for row in rows
        for c, p in row["pods"].items()
        if p["reason"] and p["phase"] != "Running"
    ]
    if reasons:
        session.console.out("\n".join(reasons))
    if membership:
        session.console.out("\n".join(f"  etcd: {line}" for line in membership))
    return 0
