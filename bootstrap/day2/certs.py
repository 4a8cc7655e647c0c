"""`certs check` and the naming behind `certs renew` (kubeadm.md §2.3).

check reads the certificates actually on each master (pki/*.crt, pki/etcd/*.crt and the
client certs embedded in /etc/kubernetes/*.conf), compares each with the local state
(drift: the host runs something the state dir does not hold) and prints kubeadm's two
tables per master. The local state is read read-only here: ``Session.pki`` would
re-issue expiring certs as a side effect, which a check must never do.

Names are kubeadm's (``etcd-server``, ``admin.conf``, ...). ``kubelet.conf`` is listed
too: kubeadm hands it to the kubelet's own rotation, but our kubelet.conf embeds its
client cert (kubeconfig.py), so we check and renew it like the others.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from bootstrap.errors import UsageError
from bootstrap.inventory.model import KUBERNETES_DIR, PKI_DIR, Inventory
from bootstrap.kubeconfig import kubeconfig_specs
from bootstrap.model import RemoteHost
from bootstrap.pki.table import LEAF_NAMES
from bootstrap.run.session import Session

Kind = Literal["certificate", "ca"]
Local = Literal["same", "differs", "absent"]

# kubeadm's CA names -> our pki names (the file under /etc/kubernetes/pki, no suffix)
CA_FILES: dict[str, str] = {"ca": "ca", "etcd-ca": "etcd/ca", "front-proxy-ca": "front-proxy-ca"}


def kubeadm_leaf_name(pki_name: str) -> str:
    """ "etcd/server" -> "etcd-server" (kubeadm's check-expiration / renew names)."""
    return pki_name.replace("/", "-")


LEAF_FILES: dict[str, str] = {kubeadm_leaf_name(n): n for n in LEAF_NAMES}


@dataclass(frozen=True)
class CertName:
    """One renewable certificate of one master, in every naming we need."""

    name: str  # kubeadm's: "apiserver", "etcd-peer", "admin.conf"
    host_path: str  # where the master holds it (a .crt, or the .conf embedding it)
    state_path: Path  # the local state's copy of the certificate
    label: str  # ensure_pki's renew label: "cp1/etcd/peer", "kubeconfig/admin"


def cert_names(inventory: Inventory, state_dir: Path, master: str) -> list[CertName]:
    """Leaves and kubeconfig client certs of one master, sorted like kubeadm's table."""
    mdir = state_dir / "masters" / master
    names = [
        CertName(name, f"{PKI_DIR}/{pki}.crt", mdir / "pki" / f"{pki}.crt", f"{master}/{pki}")
        for name, pki in LEAF_FILES.items()
    ]
    first = inventory.masters[0].name
    for spec in kubeconfig_specs(master):
        if spec.first_master_only and master != first:
            continue
        cert = f"kubeconfig/{spec.cert_name}"
        if spec.scope == "cluster":
            path, label = state_dir / "pki" / f"{cert}.crt", cert
        else:
            path, label = mdir / f"{cert}.crt", f"{master}/{cert}"
        names.append(CertName(spec.file_name, f"{KUBERNETES_DIR}/{spec.file_name}", path, label))
    return sorted(names, key=lambda n: n.name)


def ca_state_path(state_dir: Path, ca: str) -> Path:
    return state_dir / "pki" / f"{CA_FILES[ca]}.crt"


def renew_labels(inventory: Inventory, state_dir: Path, wanted: Sequence[str]) -> list[str]:
    """ensure_pki labels for `certs renew all|NAME...` on every master. Refuses CAs,
    sa.* and unknown names with the list of valid ones (exit 2)."""
    valid = sorted(
        {n.name for m in inventory.masters for n in cert_names(inventory, state_dir, m.name)}
    )
    chosen = list(wanted) or ["all"]
    if "all" in chosen:
        chosen = valid
    refused = [w for w in chosen if w not in valid]
    if refused:
        never = [w for w in refused if w in CA_FILES or w.startswith("sa")]
        hint = "renewable: all, " + ", ".join(valid)
        if never:
            hint = "CAs and the service-account key pair are never renewed; " + hint
        raise UsageError(f"cannot renew {', '.join(refused)}", hint=hint)
    labels: list[str] = []
    for m in inventory.masters:
        for n in cert_names(inventory, state_dir, m.name):
            if n.name in chosen and n.label not in labels:
                labels.append(n.label)
    return labels


# --- reading a master's certificates ---------------------------------------------------

_READ_SCRIPT = f"""
for f in {PKI_DIR}/*.crt {PKI_DIR}/etcd/*.crt; do
  [ -f "$f" ] || continue; echo "@@CERT $f"; cat "$f"
done
for f in {PKI_DIR}/*.key {PKI_DIR}/etcd/*.key; do [ -f "$f" ] && echo "@@KEY $f"; done
for f in {KUBERNETES_DIR}/*.conf; do
  [ -f "$f" ] || continue; echo "@@CERT $f"
  sed -n 's/^ *client-certificate-data: *//p' "$f" | head -n 1 | base64 -d 2>/dev/null
done
echo "@@END"
"""


@dataclass(frozen=True)
class HostCerts:
    certs: Mapping[str, x509.Certificate]  # remote path -> certificate
    keys: frozenset[str]  # remote paths of the private keys present


def parse_host_certs(text: str) -> HostCerts:
    certs: dict[str, x509.Certificate] = {}
    keys: set[str] = set()
    for chunk in text.split("@@")[1:]:
        header, _, body = chunk.partition("\n")
        kind, _, path = header.strip().partition(" ")
        if kind == "KEY":
            keys.add(path)
        elif kind == "CERT":
            try:
                certs[path] = x509.load_pem_x509_certificate(body.encode())
            except ValueError:
                continue  # unreadable: reported as missing
    return HostCerts(certs, frozenset(keys))


def read_host_certs(host: RemoteHost) -> HostCerts:
    result = host.run(_READ_SCRIPT, sudo=True, check=True, timeout=30)
    return parse_host_certs(result.stdout.decode("utf-8", "replace"))


# --- rows and tables -------------------------------------------------------------------


@dataclass(frozen=True)
class CertRow:
    master: str
    name: str
    kind: Kind
    not_after: datetime | None  # None: missing or unreadable on the host
    authority: str  # issuing CA's kubeadm name; "" for a CA
    externally_managed: bool  # the issuing CA's key is not on the host (kubeadm's rule)
    local: Local  # the host's certificate vs the local state's copy

    def residual(self, now: datetime) -> timedelta | None:
        return None if self.not_after is None else self.not_after - now

    def status(self, now: datetime, warn: timedelta) -> str:
        left = self.residual(now)
        if left is None:
            return "missing"
        if left <= timedelta(0):
            return "expired"
        return "warning" if left < warn else "ok"


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def _local_state(host_cert: x509.Certificate | None, path: Path) -> Local:
    try:
        local = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return "absent"
    if host_cert is None:
        return "differs"
    return "same" if _der(local) == _der(host_cert) else "differs"


def master_rows(
    inventory: Inventory, state_dir: Path, master: str, found: HostCerts
) -> list[CertRow]:
    """kubeadm's certificate rows then its CA rows for one master."""
    cas = {name: found.certs.get(f"{PKI_DIR}/{pki}.crt") for name, pki in CA_FILES.items()}
    ca_key = {name: f"{PKI_DIR}/{pki}.key" in found.keys for name, pki in CA_FILES.items()}
    by_subject = {c.subject: name for name, c in cas.items() if c is not None}
    rows: list[CertRow] = []
    for n in cert_names(inventory, state_dir, master):
        cert = found.certs.get(n.host_path)
        authority = by_subject.get(cert.issuer, cert.issuer.rfc4514_string()) if cert else ""
        rows.append(
            CertRow(
                master,
                n.name,
                "certificate",
                cert.not_valid_after_utc if cert else None,
                authority,
                bool(authority) and not ca_key.get(authority, False),
                _local_state(cert, n.state_path),
            )
        )
    for name, cert in cas.items():
        rows.append(
            CertRow(
                master,
                name,
                "ca",
                cert.not_valid_after_utc if cert else None,
                "",
                not ca_key[name],
                _local_state(cert, ca_state_path(state_dir, name)),
            )
        )
    return rows


def short_duration(left: timedelta) -> str:
    """kubeadm's RESIDUAL TIME (k8s duration.ShortHumanDuration)."""
    seconds = int(left.total_seconds())
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    hours = seconds // 3600
    if hours < 24:
        return f"{hours}h"
    if hours < 24 * 365:
        return f"{hours // 24}d"
    return f"{hours // (24 * 365)}y"


def expires_text(when: datetime | None) -> str:
    """kubeadm's EXPIRES: Go layout "Jan 02, 2006 15:04 MST"."""
    if when is None:
        return "MISSING"
    return when.astimezone(UTC).strftime("%b %d, %Y %H:%M UTC")


def layout(rows: Iterable[Sequence[str]]) -> str:
    """kubeadm's tabwriter (minwidth 10, padding 3), last column unpadded."""
    table = [list(r) for r in rows]
    widths = [max(10, max(len(r[i]) for r in table) + 3) for i in range(len(table[0]))]
    return "\n".join(
        "".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=False)) + r[-1] for r in table
    )


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def _local_text(row: CertRow) -> str:
    return {"same": "same", "differs": "DRIFT", "absent": "not in state"}[row.local]


def tables(rows: Sequence[CertRow], now: datetime) -> str:
    """kubeadm's two tables, plus a LOCAL STATE column (drift) at the end of each."""
    certs = [r for r in rows if r.kind == "certificate"]
    cas = [r for r in rows if r.kind == "ca"]

    def residual(r: CertRow) -> str:
        left = r.residual(now)
        return "" if left is None else short_duration(left)

    first = [
        [
            "CERTIFICATE",
            "EXPIRES",
            "RESIDUAL TIME",
            "CERTIFICATE AUTHORITY",
            "EXTERNALLY MANAGED",
            "LOCAL STATE",
        ]
    ]
    first += [
        [
            r.name,
            expires_text(r.not_after),
            residual(r),
            r.authority,
            _yes_no(r.externally_managed),
            _local_text(r),
        ]
        for r in certs
    ]
    second = [
        ["CERTIFICATE AUTHORITY", "EXPIRES", "RESIDUAL TIME", "EXTERNALLY MANAGED", "LOCAL STATE"]
    ]
    second += [
        [
            r.name,
            expires_text(r.not_after),
            residual(r),
            _yes_no(r.externally_managed),
            _local_text(r),
        ]
        for r in cas
    ]
    return layout(first) + "\n\n" + layout(second)


@dataclass(frozen=True)
class CheckResult:
    rows: tuple[CertRow, ...]
    now: datetime
    warn: timedelta

    def problems(self) -> list[str]:
        found = []
        for r in self.rows:
            status = r.status(self.now, self.warn)
            if status != "ok":
                left = r.residual(self.now)
                when = "" if left is None else f" ({short_duration(left)} left)"
                found.append(f"{r.master}: {r.name} {status}{when}")
            if r.local == "differs":
                found.append(f"{r.master}: {r.name} differs from the local state (drift)")
        return found

    def ok(self) -> bool:
        return not self.problems()

    def to_json(self) -> dict[str, Any]:
        masters: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for r in self.rows:
            entry = masters.setdefault(r.master, {"certificates": [], "certificateAuthorities": []})
            left = r.residual(self.now)
            item: dict[str, Any] = {
                "name": r.name,
                "expirationDate": r.not_after.isoformat() if r.not_after else None,
                "residualTimeSeconds": int(left.total_seconds()) if left is not None else None,
                "externallyManaged": r.externally_managed,
                "localState": r.local,
                "status": r.status(self.now, self.warn),
            }
            if r.kind == "certificate":
                item["caName"] = r.authority
                entry["certificates"].append(item)
            else:
                entry["certificateAuthorities"].append(item)
        return {
            "checkedAt": self.now.isoformat(),
            "warnDays": self.warn.total_seconds() / 86400,
            "ok": self.ok(),
            "problems": self.problems(),
            "masters": masters,
        }

    def text(self) -> str:
        parts = []
        for master in dict.fromkeys(r.master for r in self.rows):
            mine = [r for r in self.rows if r.master == master]
            parts.append(f"== {master}\n" + tables(mine, self.now))
        problems = self.problems()
        if problems:
            parts.append(
                f"{len(problems)} problem(s) (expired, inside the {self.warn.days}-day window, "
                "missing, or drift):\n" + "\n".join(f"  {p}" for p in problems)
            )
        else:
            parts.append(f"all certificates valid for more than {self.warn.days} days")
        return "\n\n".join(parts)


def check(
    inventory: Inventory,
    state_dir: Path,
    found: Mapping[str, HostCerts],
    *,
    warn: timedelta = timedelta(days=30),
    now: datetime | None = None,
) -> CheckResult:
    moment = now or datetime.now(UTC)
    rows: list[CertRow] = []
    for m in inventory.masters:
        rows += master_rows(inventory, state_dir, m.name, found[m.name])
    return CheckResult(tuple(rows), moment, warn)


def check_cluster(session: Session, *, warn_days: float, output: str) -> int:
    """The `certs check` command: 0 all good, 1 expired/warning/missing/drift."""
    found = session.each_host(lambda _m, host: read_host_certs(host))
    result = check(session.inventory, session.state_dir, found, warn=timedelta(days=warn_days))
    if output == "json":
        session.console.out(json.dumps(result.to_json(), indent=2, sort_keys=True))
    else:
        session.console.out(result.text())
    return 0 if result.ok() else 1
