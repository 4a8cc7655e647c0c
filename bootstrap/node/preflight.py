"""Preflight: read-only checks on every host, all before any write anywhere.

One remote command per host gathers every fact (sections separated by markers); the
checks themselves are pure functions over those facts, so they are cheap to test and the
whole preflight costs one round trip per host.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from bootstrap.inventory.model import ETCD_DATA_DIR, KUBERNETES_DIR, MANIFESTS_DIR
from bootstrap.model import RemoteHost
from bootstrap.node.view import KUBELET_EVIDENCE

Severity = Literal["ok", "warning", "error"]

PORTS = {
    2379: "etcd client",
    2380: "etcd peer",
    2381: "etcd metrics",
    6443: "kube-apiserver",
    10257: "kube-controller-manager",
    10259: "kube-scheduler",
}
MAX_CLOCK_SKEW_SECONDS = 5.0
# etcd preallocates 64 MiB WAL segments and a snapshot; below this a member will not start.
MIN_FREE_ETCD_KIB = 256 * 1024
MIN_FREE_KUBERNETES_KIB = 16 * 1024
# kubeadm mounts each of these that exists on the host into kube-apiserver and
# kube-controller-manager (cmd/kubeadm/app/phases/controlplane/volumes.go). We render them
# from the inventory's caCertDirs instead; preflight says when a host has one it lacks.
KUBEADM_CA_CERT_DIRS = (
    "/etc/ssl/certs",
    "/etc/pki/ca-trust",
    "/etc/pki/tls/certs",
    "/etc/ca-certificates",
    "/usr/share/ca-certificates",
    "/usr/local/share/ca-certificates",
)

# Every fact in one remote command, as root (tests/test_preflight.py runs it locally).
FACTS_SCRIPT = f"""
echo @@uid; id -u
echo @@hostname; hostname
echo @@machine-id; cat /etc/machine-id 2>/dev/null
echo @@time; date +%s.%N
echo @@listen; cat /proc/net/tcp /proc/net/tcp6 2>/dev/null
echo @@etcd-data; ls -A {ETCD_DATA_DIR} 2>/dev/null | head -n 5
echo @@ca; sha256sum {KUBERNETES_DIR}/pki/ca.crt 2>/dev/null | cut -d' ' -f1
echo @@manifests-dir; test -d {MANIFESTS_DIR} && echo present
echo @@kubelet
{KUBELET_EVIDENCE}
echo @@trust-store
for d in {" ".join(KUBEADM_CA_CERT_DIRS)}; do test -d "$d" && echo "$d"; done
echo @@df
for p in {KUBERNETES_DIR} {ETCD_DATA_DIR}; do
  d=$p; while [ ! -e "$d" ]; do d=$(dirname "$d"); done
  printf '%s ' "$p"; df -Pk "$d" | tail -n 1
done
echo @@end
"""


@dataclass(frozen=True)
class HostFacts:
    host: str
    uid: int | None
    hostname: str
    machine_id: str
    clock_skew: float  # seconds, remote minus local, corrected for the round trip
    round_trip: float
    listening_ports: frozenset[int]
    etcd_data_entries: tuple[str, ...]
    remote_ca_sha256: str | None
    manifests_dir: bool
    kubelet: tuple[str, ...]
    free_kib: Mapping[str, int] = field(default_factory=dict)
    trust_store_dirs: tuple[str, ...] = ()  # which of KUBEADM_CA_CERT_DIRS exist


@dataclass(frozen=True)
class Finding:
    host: str
    check: str
    severity: Severity
    detail: str
    ignored: bool = False


def gather(host: RemoteHost) -> HostFacts:
    started = time.time()
    result = host.run(FACTS_SCRIPT, sudo=True, check=False, timeout=20)
    finished = time.time()
    return parse_facts(host.name, result.stdout.decode("utf-8", "replace"), started, finished)


def parse_facts(host: str, text: str, started: float, finished: float) -> HostFacts:
    sections: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("@@"):
            current = line[2:].strip()
            sections[current] = []
        elif current:
            sections[current].append(line)

    def first(name: str) -> str:
        lines = [x for x in sections.get(name, []) if x.strip()]
        return lines[0].strip() if lines else ""

    uid_text = first("uid")
    try:
        remote_time = float(first("time"))
        skew = remote_time - (started + finished) / 2
    except ValueError:
        skew = float("nan")
    free: dict[str, int] = {}
    for line in sections.get("df", []):
        parts = line.split()
        if len(parts) >= 5 and parts[4].isdigit():
            free[parts[0]] = int(parts[4])
    return HostFacts(
        host=host,
        uid=int(uid_text) if uid_text.isdigit() else None,
        hostname=first("hostname"),
        machine_id=first("machine-id"),
        clock_skew=skew,
        round_trip=finished - started,
        listening_ports=frozenset(parse_listening_ports(sections.get("listen", []))),
        etcd_data_entries=tuple(x.strip() for x in sections.get("etcd-data", []) if x.strip()),
        remote_ca_sha256=first("ca") or None,
        manifests_dir=first("manifests-dir") == "present",
        kubelet=tuple(x.strip() for x in sections.get("kubelet", []) if x.strip()),
        free_kib=free,
        trust_store_dirs=tuple(x.strip() for x in sections.get("trust-store", []) if x.strip()),
    )


def parse_listening_ports(lines: Sequence[str]) -> set[int]:
    """/proc/net/tcp{,6}: 'sl local_address rem_address st ...'; st 0A is LISTEN."""
    ports: set[int] = set()
    for line in lines:
        parts = line.split()
        if len(parts) < 4 or parts[3] != "0A" or ":" not in parts[1]:
            continue
        try:
            ports.add(int(parts[1].rsplit(":", 1)[1], 16))
        except ValueError:
            continue
    return ports


# --- the checks: each one named, judging one host's facts ---------------------------

Outcome = tuple[Severity, str]


@dataclass(frozen=True)
class Cluster:
    """What a check may compare one host's facts with: the other hosts, this cluster's CA
    and the inventory's trust-store mounts."""

    facts: Sequence[HostFacts]
    ca_sha256: str
    ca_cert_dirs: Collection[str] | None

    def ours(self, f: HostFacts) -> bool:
        """The host already holds this cluster (its CA): its ports and data are ours."""
        return f.remote_ca_sha256 == self.ca_sha256

    def twins(self, f: HostFacts, value: Callable[[HostFacts], str]) -> list[str]:
        """The other hosts that report the same value (hostname, machine-id)."""
        return [g.host for g in self.facts if value(g) == value(f) and g.host != f.host]


@dataclass(frozen=True)
class Check:
    """One named preflight check (kubeadm's Checker): None when it does not apply."""

    name: str
    run: Callable[[HostFacts, Cluster], Outcome | None]


def _ssh_login(f: HostFacts, cluster: Cluster) -> Outcome:
    return "ok", f"logged in, round trip {f.round_trip * 1000:.0f} ms"


def _sudo(f: HostFacts, cluster: Cluster) -> Outcome:
    if f.uid == 0:
        return "ok", "commands run as root"
    return "error", (
        f"remote commands run as uid {f.uid}, need root "
        "(set ssh.sudo: true for a user with passwordless sudo)"
    )


def _hostname_unique(f: HostFacts, cluster: Cluster) -> Outcome:
    twins = cluster.twins(f, lambda g: g.hostname)
    return (
        "error" if twins or not f.hostname else "ok",
        f"hostname {f.hostname!r}" + (f" also on {', '.join(twins)}" if twins else ""),
    )


def _machine_id_unique(f: HostFacts, cluster: Cluster) -> Outcome:
    twins = cluster.twins(f, lambda g: g.machine_id)
    if not f.machine_id:
        return "error", "machine-id missing"
    if twins:
        return "error", f"machine-id also on {', '.join(twins)}"
    return "ok", "machine-id unique"


def _clock_skew(f: HostFacts, cluster: Cluster) -> Outcome:
    skew_ok = abs(f.clock_skew) <= MAX_CLOCK_SKEW_SECONDS + f.round_trip / 2
    return (
        "ok" if skew_ok else "error",
        f"{f.clock_skew:+.2f} s against this machine (limit {MAX_CLOCK_SKEW_SECONDS:.0f} s; "
        "certificates and etcd leases need synchronised clocks)",
    )


def _port_free(port: int, what: str) -> Check:
    def run(f: HostFacts, cluster: Cluster) -> Outcome:
        if port not in f.listening_ports:
            return "ok", f"{port} ({what}) free"
        if cluster.ours(f):
            return "ok", f"{port} held by this cluster's {what}"
        return "error", f"{port} ({what}) is in use by something else"

    return Check(f"Port-{port}", run)


def _etcd_data_dir(f: HostFacts, cluster: Cluster) -> Outcome:
    if not f.etcd_data_entries:
        return "ok", f"{ETCD_DATA_DIR} empty"
    if cluster.ours(f):
        return "ok", f"{ETCD_DATA_DIR} holds this cluster's member"
    return "error", (
        f"{ETCD_DATA_DIR} is not empty ({', '.join(f.etcd_data_entries)}) and the host's "
        "CA is not this cluster's: another cluster's data? (`bootstrap reset` or wipe it)"
    )


def _static_pod_path(f: HostFacts, cluster: Cluster) -> Outcome:
    if f.manifests_dir:
        return "ok", f"{MANIFESTS_DIR} exists"
    return "warning", f"{MANIFESTS_DIR} missing (will be created 0700)"


def _kubelet(f: HostFacts, cluster: Cluster) -> Outcome:
    if f.kubelet:
        return "ok", "found: " + ", ".join(f.kubelet)
    return "warning", "no kubelet found: nothing will run the static pods"


def _disk_space(path: str, minimum_kib: int) -> Check:
    def run(f: HostFacts, cluster: Cluster) -> Outcome:
        free = f.free_kib.get(path)
        if free is None:
            return "warning", f"could not read free space for {path}"
        if free < minimum_kib:
            return "error", f"{path}: {free // 1024} MiB free, need {minimum_kib // 1024} MiB"
        return "ok", f"{path}: {free // 1024} MiB free"

    return Check("DiskSpace", run)


def _ca_cert_dirs(f: HostFacts, cluster: Cluster) -> Outcome | None:
    if cluster.ca_cert_dirs is None:
        return None
    return _trust_store(f, cluster.ca_cert_dirs)


# Run in this order on every host; the table shows them in this order too.
CHECKS: tuple[Check, ...] = (
    Check("SSHLogin", _ssh_login),
    Check("Sudo", _sudo),
    Check("HostnameUnique", _hostname_unique),
    Check("MachineIDUnique", _machine_id_unique),
    Check("ClockSkew", _clock_skew),
    *(_port_free(port, what) for port, what in PORTS.items()),
    Check("DirAvailable--var-lib-etcd", _etcd_data_dir),
    Check("StaticPodPath", _static_pod_path),
    Check("Kubelet", _kubelet),
    _disk_space(KUBERNETES_DIR, MIN_FREE_KUBERNETES_KIB),
    _disk_space(ETCD_DATA_DIR, MIN_FREE_ETCD_KIB),
    Check("CACertDirs", _ca_cert_dirs),
)


def check_names() -> tuple[str, ...]:
    """Every check name ``evaluate`` reports (what --ignore-preflight-errors accepts)."""
    return tuple(dict.fromkeys(c.name for c in CHECKS))


def evaluate(
    facts: Sequence[HostFacts],
    *,
    cluster_ca_sha256: str,
    ignore: Collection[str] = (),
    ca_cert_dirs: Collection[str] | None = None,
) -> list[Finding]:
    """Every check on every host; errors named in ``ignore`` (or "all") are marked ignored."""
    cluster = Cluster(facts, cluster_ca_sha256, ca_cert_dirs)
    ignored = {i.lower() for i in ignore}
    findings: list[Finding] = []
    for f in facts:
        for check in CHECKS:
            outcome = check.run(f, cluster)
            if outcome is None:
                continue
            severity, detail = outcome
            skip = severity == "error" and ("all" in ignored or check.name.lower() in ignored)
            findings.append(Finding(f.host, check.name, severity, detail, ignored=skip))
    return findings


def _trust_store(f: HostFacts, mounted: Collection[str]) -> tuple[Severity, str]:
    """Warn when the host has a trust-store dir kubeadm would mount but the inventory does not.

    A warning, not an error: the cluster trusts only its own CAs and works without them;
    what fails is TLS from the apiserver or controller-manager to outside services.
    """
    unmounted = [d for d in f.trust_store_dirs if d not in mounted]
    if not unmounted:
        return "ok", f"{len(mounted)} trust-store dir(s) mounted"
    return "warning", (
        f"{', '.join(unmounted)} on the host but not in caCertDirs: kube-apiserver and "
        "kube-controller-manager will not see those CA roots (TLS to an OIDC issuer or a "
        "webhook with a public certificate fails); what kubeadm would mount here: "
        f"caCertDirs: [{', '.join(f.trust_store_dirs)}]"
    )


def blocking(findings: Sequence[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error" and not f.ignored]


def table(findings: Sequence[Finding]) -> str:
    hosts = list(dict.fromkeys(f.host for f in findings))
    checks = list(dict.fromkeys(f.check for f in findings))
    rank = {"ok": 0, "warning": 1, "error": 2}
    worst: dict[tuple[str, str], Finding] = {}
    for f in findings:
        seen = worst.get((f.check, f.host))
        if seen is None or rank[seen.severity] < rank[f.severity]:
            worst[(f.check, f.host)] = f
    cell = {
        key: "ignored"
        if f.ignored
        else {"ok": "ok", "warning": "WARN", "error": "ERROR"}[f.severity]
        for key, f in worst.items()
    }
    width = max(len(c) for c in checks) if checks else 5
    lines = ["CHECK".ljust(width) + "  " + "  ".join(h.ljust(8) for h in hosts)]
    for check in checks:
        lines.append(
            check.ljust(width) + "  " + "  ".join(cell.get((check, h), "-").ljust(8) for h in hosts)
        )
    notes = [f for f in findings if f.severity != "ok"]
    for f in notes:
        tag = "ignored" if f.ignored else f.severity
        lines.append(f"  {f.host} {f.check} ({tag}): {f.detail}")
    return "\n".join(lines)
