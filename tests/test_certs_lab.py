"""certs check / renew, etcd snapshot and a failing upgrade against the namespace lab
(real sshd; etcd, kube-apiserver, kube-controller-manager and kube-scheduler built from
their Go modules; the lab kubelet), driving the real CLI in a subprocess.

One cluster for the module, in file order: short-lived certs -> check (exit 1) -> rolling
renew (every pod of all four components restarted once, master by master, each master
healthy before the next) -> snapshots (etcdutl as the oracle) -> certs that have ALREADY
expired on every host (issued in the past through ensure_pki's ``now``) -> renew recovers
-> an upgrade to a version this lab's nodes have no images for fails on the first master
and rolls it back. The successful upgrade on real binaries of two versions is
tests/test_upgrade_lab.py.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from bootstrap.day2.certs import renew_labels
from bootstrap.inventory import load
from bootstrap.pki import ensure_pki
from bootstrap.run.session import Session
from bootstrap.transport import connect_all
from bootstrap.transport.push import backup_dir_name
from bootstrap.workflow import masterroll
from lab import api
from lab.api import LabInfo
from tests.lab_support import lab  # noqa: F401  (fixture)

pytestmark = pytest.mark.lab
VALIDITY = timedelta(hours=2)  # certificates.certValidity below (inside the 30-day window)
PODS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


def bootstrap(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "bootstrap", *args], capture_output=True, text=True, timeout=600
    )
    print(f"$ bootstrap {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@dataclass
class Cluster:
    lab: LabInfo
    inventory: Path
    state: Path
    root: Path

    def args(self, *extra: str) -> list[str]:
        return ["--inventory", str(self.inventory), "--state-dir", str(self.state), *extra]


@pytest.fixture(scope="module")
def cluster(lab: LabInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:  # noqa: F811
    root = tmp_path_factory.mktemp("certs-lab")
    doc = yaml.safe_load(lab.inventory.read_text())
    doc["certificates"] = {"certValidity": "2h"}
    # The rollback test waits for a pod that cannot start: keep that wait short.
    doc["timeouts"] = {"componentReady": 30, "etcdQuorum": 60}
    inventory = root / "masters.yaml"
    inventory.write_text(yaml.safe_dump(doc))
    found = Cluster(lab, inventory, root / "state", root)
    init = bootstrap("init", *found.args("--components", "etcd"))
    assert init.returncode == 0, init.stderr
    yield found


def pods(info: LabInfo) -> dict[str, dict[str, Any]]:
    """host -> pod -> runner status entry."""
    out: dict[str, dict[str, Any]] = {}
    for host in info.hosts:
        status = api.runner_status(host.name)
        out[host.name] = {key.split("/", 1)[1]: pod for key, pod in status["pods"].items()}
    return out


def etcdctl(cluster: Cluster, *args: str, master: str = "m1") -> str:
    """etcdctl through an SSH tunnel with the master's apiserver-etcd-client (state copy)."""
    inventory = load(cluster.inventory)
    pki = cluster.state / "masters" / master / "pki"
    hosts = connect_all([inventory.master(master)])
    try:
        with hosts[master].forward(2379) as port:
            proc = subprocess.run(
                [
                    str(cluster.lab.bin_dir / "etcdctl"),
                    f"--endpoints=https://127.0.0.1:{port}",
                    f"--cacert={cluster.state / 'pki/etcd/ca.crt'}",
                    f"--cert={pki / 'apiserver-etcd-client.crt'}",
                    f"--key={pki / 'apiserver-etcd-client.key'}",
                    *args,
                ],
                capture_output=True,
                text=True,
                timeout=60,
                env={"PATH": "/usr/bin:/bin"},
            )
    finally:
        hosts[master].close()
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def etcdutl(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(cluster.lab.bin_dir / "etcdutl"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )


def renewed_lines(stderr: str) -> list[str]:
    return re.findall(r"\[renew\] (m\d): renewed and healthy", stderr)


def restarted_once(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> None:
    """Every pod runs a new config (one manifest change), etcd came back and has not
    restarted since (restartCount counts restarts of the current config)."""
    for host, by_pod in before.items():
        for name in PODS:
            assert after[host][name]["configHash"] != by_pod[name]["configHash"], (host, name)
        etcd = after[host]["etcd"]
        # (readiness comes later: the probes start after initialDelaySeconds)
        assert etcd["phase"] == "Running", (host, etcd)
        assert etcd["restartCount"] == 0, (host, etcd)


def wait_verified(cluster: Cluster, attempts: int = 30) -> None:
    for _ in range(attempts):
        if bootstrap("verify", *cluster.args()).returncode == 0:
            return
        time.sleep(2)
    pytest.fail("verify did not pass")


# --- tests, in order --------------------------------------------------------------------


def test_check_reports_short_validity_and_renew_rolls_once(cluster: Cluster) -> None:
    etcdctl(cluster, "put", "/issue9/data", "survives")
    checked = bootstrap("certs", "check", *cluster.args())
    assert checked.returncode == 1
    assert "RESIDUAL TIME   CERTIFICATE AUTHORITY   EXTERNALLY MANAGED" in checked.stdout
    assert "m1: etcd-peer warning (" in checked.stdout
    doc = json.loads(bootstrap("certs", "check", *cluster.args("-o", "json")).stdout)
    leaves = [c for m in doc["masters"].values() for c in m["certificates"]]
    assert len(leaves) == 12 + 11 + 11
    assert {c["status"] for c in leaves} == {"warning"}
    assert {c["localState"] for c in leaves} == {"same"}
    cas_before = doc["masters"]["m1"]["certificateAuthorities"]

    before = pods(cluster.lab)
    started = datetime.now(UTC)
    renew = bootstrap("certs", "renew", *cluster.args())
    assert renew.returncode == 0, renew.stderr
    assert "master by master" in renew.stdout
    # One master at a time, each once, in inventory order.
    assert renewed_lines(renew.stderr) == ["m1", "m2", "m3"]
    assert (
        renew.stderr.count(
            "restarting etcd, kube-apiserver, kube-controller-manager, kube-scheduler"
        )
        == 3
    )
    restarted_once(before, pods(cluster.lab))
    assert bootstrap("verify", *cluster.args()).returncode == 0

    after = bootstrap("certs", "check", *cluster.args("--warn-days", "0", "-o", "json"))
    assert after.returncode == 0, after.stdout
    doc = json.loads(after.stdout)
    for m in doc["masters"].values():
        for c in m["certificates"]:
            expires = datetime.fromisoformat(c["expirationDate"])
            assert expires >= (started + VALIDITY).replace(microsecond=0), c
            assert c["localState"] == "same"
    cas_after = doc["masters"]["m1"]["certificateAuthorities"]
    assert [(c["name"], c["expirationDate"]) for c in cas_after] == [
        (c["name"], c["expirationDate"]) for c in cas_before
    ], "CAs are never renewed"
    assert etcdctl(cluster, "get", "/issue9/data", "--print-value-only").strip() == "survives"

    # The snapshot taken before the first master was touched, checked by etcdutl.
    snaps = sorted((cluster.state / "snapshots").iterdir())
    assert len(snaps) == 1
    assert (cluster.state / "snapshots").stat().st_mode & 0o777 == 0o700
    assert snaps[0].stat().st_mode & 0o777 == 0o600
    logged = re.search(r"(\d+) bytes, sha256 ([0-9a-f]{64}), revision (\d+)", renew.stderr)
    assert logged is not None
    assert int(logged.group(1)) == snaps[0].stat().st_size
    assert logged.group(2) == hashlib.sha256(snaps[0].read_bytes()).hexdigest()
    status = etcdutl(cluster, "snapshot", "status", str(snaps[0]), "--write-out", "json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["revision"] == int(logged.group(3)) > 0
    restored = cluster.root / "restored"
    restore = etcdutl(cluster, "snapshot", "restore", str(snaps[0]), "--data-dir", str(restored))
    assert restore.returncode == 0, restore.stderr
    assert (restored / "member" / "snap" / "db").is_file()


def test_etcd_snapshot_out_and_keep(cluster: Cluster) -> None:
    out = cluster.root / "manual.db"
    taken = bootstrap("etcd", "snapshot", *cluster.args("--out", str(out)))
    assert taken.returncode == 0, taken.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    status = etcdutl(cluster, "snapshot", "status", str(out), "--write-out", "json")
    assert status.returncode == 0 and json.loads(status.stdout)["revision"] > 0
    for _ in range(3):
        assert bootstrap("etcd", "snapshot", *cluster.args("--keep", "2")).returncode == 0
    kept = list((cluster.state / "snapshots").iterdir())
    assert len(kept) == 2, kept
    for path in kept:
        assert etcdutl(cluster, "snapshot", "status", str(path)).returncode == 0


def _push_expired_certs(cluster: Cluster) -> None:
    """Re-issue every leaf and client cert with a validity that ended minutes ago
    (ensure_pki's ``now`` in the past) and push them to all masters at once, as a
    cluster that was down while its certificates expired comes back with them."""
    inventory = load(cluster.inventory)
    ca_start = ensure_pki(inventory, cluster.state).ca().cert.not_valid_before_utc
    # Client certs start with the CA, so end a minute after that: long expired.
    past = ca_start - VALIDITY + timedelta(minutes=1)
    expired = ensure_pki(
        inventory, cluster.state, now=past, renew=renew_labels(inventory, cluster.state, ["all"])
    )
    assert expired.leaf("m1", "etcd/peer").cert.not_valid_after_utc < datetime.now(UTC)
    session = Session(inventory=inventory, state_dir=cluster.state)
    try:
        session.pki = expired
        masterroll.push_masters(session, "test", list(session.masters), backup_dir_name())
    finally:
        session.close()


def test_renew_when_certs_have_already_expired(cluster: Cluster) -> None:
    before = pods(cluster.lab)
    _push_expired_certs(cluster)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # every etcd restarted with the expired certs
        now = pods(cluster.lab)
        if all(
            now[h]["etcd"]["configHash"] != before[h]["etcd"]["configHash"]
            and now[h]["etcd"]["phase"] == "Running"
            for h in before
        ):
            break
        time.sleep(1)
    checked = bootstrap("certs", "check", *cluster.args())
    assert checked.returncode == 1
    assert "<invalid>" in checked.stdout and "m3: etcd-server expired" in checked.stdout
    # etcd with expired peer certs: members reject each other (no quorum).
    def rejected() -> bool:
        log = api.read_host_file("m1", "/var/log/pods/etcd.log").decode(errors="replace")
        return "bad certificate" in log or "certificate has expired" in log

    deadline = time.monotonic() + 30
    while not rejected() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert rejected(), "etcd never logged the expired peer certificates"

    expired_pods = pods(cluster.lab)
    renew = bootstrap("certs", "renew", *cluster.args())
    assert renew.returncode == 0, renew.stderr
    assert "ALL masters at once" in renew.stderr
    # Instead of a snapshot (nothing passes TLS): a checked copy of a member's db file.
    copies = list((cluster.state / "snapshots").glob("*-db-copy.db"))
    assert len(copies) == 1 and copies[0].stat().st_mode & 0o777 == 0o600
    restored = cluster.root / "restored-copy"
    restore = etcdutl(
        cluster, "snapshot", "restore", str(copies[0]), "--skip-hash-check", "--data-dir",
        str(restored),
    )
    assert restore.returncode == 0, restore.stderr
    assert "all masters at once" in renew.stdout
    restarted_once(expired_pods, pods(cluster.lab))
    wait_verified(cluster)
    assert bootstrap("certs", "check", *cluster.args("--warn-days", "0")).returncode == 0
    assert etcdctl(cluster, "get", "/issue9/data", "--print-value-only").strip() == "survives"


def test_failed_upgrade_rolls_the_master_back(cluster: Cluster) -> None:
    # This lab's nodes have images of one Kubernetes and one etcd version only: an upgrade
    # to the next patch cannot start on the first master (ImageUnavailable, as an image
    # pull failure on a real node), so the upgrade must stop there and roll it back.
    major, minor, patch = cluster.lab.kubernetes_version.split(".")
    target_version = f"{major}.{minor}.{int(patch) + 1}"
    before = pods(cluster.lab)
    manifests = {
        name: api.read_host_file("m1", f"/etc/kubernetes/manifests/{name}.yaml") for name in PODS
    }
    failed = bootstrap("upgrade", *cluster.args("--to", target_version))
    assert failed.returncode == 1, failed.stderr
    assert "stopped at m1" in failed.stderr
    assert "manifests rolled back from /etc/kubernetes/tmp/bootstrap-backup-" in failed.stderr
    assert "upgraded: none" in failed.stderr
    assert "not upgraded (untouched): m2, m3" in failed.stderr
    for name, content in manifests.items():
        assert api.read_host_file("m1", f"/etc/kubernetes/manifests/{name}.yaml") == content
    after = pods(cluster.lab)
    for host in ("m2", "m3"):
        for name in PODS:
            assert after[host][name]["configHash"] == before[host][name]["configHash"]
    wait_verified(cluster)
