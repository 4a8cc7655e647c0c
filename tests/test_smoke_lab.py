"""The CI smoke test: lab up → bootstrap init with all four components real → the cluster
answers through kubectl → a second init changes nothing → one etcd stopped is named by
verify and its return heals it → lab down.

Runs the real CLI in a subprocess against the namespace lab: real sshd, and etcd,
kube-apiserver, kube-controller-manager and kube-scheduler built from their Go modules
(lab/kubebin.py), run by the lab's process-mode kubelet. Nothing here is faked: a
component whose binary is missing would fail the test, never be reported healthy.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bootstrap.etcd.client import EtcdClient, TLSFiles
from bootstrap.inventory import load
from bootstrap.pki import ensure_pki
from bootstrap.transport import connect_all
from lab import api
from lab.api import LabInfo
from tests.lab_support import (
    kubectl,
    lab,  # noqa: F401  (fixture)
    poll,
)

pytestmark = pytest.mark.lab
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
ETCD_CLIENT_CERTS = (
    "--cacert=/etc/kubernetes/pki/etcd/ca.crt",
    "--cert=/etc/kubernetes/pki/apiserver-etcd-client.crt",
    "--key=/etc/kubernetes/pki/apiserver-etcd-client.key",
    "--endpoints=https://127.0.0.1:2379",
)


def bootstrap(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bootstrap", *args], capture_output=True, text=True, timeout=600
    )


def pods(info: LabInfo) -> dict[str, dict[str, Any]]:
    """host -> pod name -> runner status entry."""
    out: dict[str, dict[str, Any]] = {}
    for host in info.hosts:
        status = api.runner_status(host.name)
        out[host.name] = {key.split("/", 1)[1]: pod for key, pod in status["pods"].items()}
        assert status.get("parseFailureCount", 0) == 0, status.get("parseFailures")
    return out


def write_creds(files: dict[str, Any], directory: Path) -> TLSFiles:
    directory.mkdir(mode=0o700, parents=True)
    names = {
        "ca": "/etc/kubernetes/pki/etcd/ca.crt",
        "cert": "/etc/kubernetes/pki/apiserver-etcd-client.crt",
        "key": "/etc/kubernetes/pki/apiserver-etcd-client.key",
    }
    paths = {}
    for field, remote in names.items():
        local = directory / Path(remote).name
        local.write_bytes(files[remote].content)
        local.chmod(0o600)
        paths[field] = local
    return TLSFiles(**paths)


def verify_json(inventory: Path, state: Path) -> tuple[int, dict[tuple[str, str], str]]:
    proc = bootstrap("verify", "--inventory", str(inventory), "--state-dir", str(state),
                     "-o", "json")
    report = json.loads(proc.stdout)
    return proc.returncode, {(r["master"], r["check"]): r["status"] for r in report["results"]}


def test_full_control_plane_init_verify_kubectl_rerun_and_fault(
    lab: LabInfo, tmp_path: Path  # noqa: F811
) -> None:
    assert set(lab.kube_binaries) == {
        "kube-apiserver", "kube-controller-manager", "kube-scheduler"
    }, f"the lab must run the real control plane; bin dir {lab.bin_dir} has {lab.kube_binaries}"
    state = tmp_path / "state"
    first = bootstrap("init", "--inventory", str(lab.inventory), "--state-dir", str(state))
    print(first.stdout, first.stderr)
    assert first.returncode == 0, first.stderr
    assert "components checked: " + ", ".join(COMPONENTS) in first.stdout
    # A fresh cluster starts in overlapping steps (workflow/init.py): apiservers while etcd
    # forms quorum, controller-manager and scheduler once every apiserver answers.
    events = first.stderr.splitlines()

    def at(text: str) -> int:
        found = [i for i, line in enumerate(events) if text in line]
        assert found, f"no progress line with {text!r}"
        return found[0]

    assert at("apiserver manifests pushed now") < at("etcd quorum:")
    assert at("etcd quorum:") < at("controller-manager and scheduler pushed")
    assert at("controller-manager and scheduler pushed") < at("3/3 apiservers live and ready")

    # etcd: three voters with the inventory's names and peer URLs, through SSH tunnels with
    # the apiserver's own client certificate.
    inventory = load(lab.inventory)
    pki = ensure_pki(inventory, state)
    expected = {(m.name, m.peer_url) for m in inventory.masters}
    hosts = connect_all(list(inventory.masters))
    try:
        for master in inventory.masters:
            tls = write_creds(dict(pki.host_files(master.name)), tmp_path / f"creds-{master.name}")
            with (
                hosts[master.name].forward(2379) as port,
                EtcdClient("127.0.0.1", port, tls) as etcd,
            ):
                members = etcd.members()
                status = etcd.status()
            assert {(m.name, m.peer_urls[0]) for m in members} == expected
            assert not any(m.is_learner for m in members), "every member must be a voter"
            assert status.leader_id != 0
    finally:
        for host in hosts.values():
            host.close()

    # The node's view: all four pods Running on every master.
    before = pods(lab)
    for host, by_name in before.items():
        for component in COMPONENTS:
            assert by_name[component]["phase"] == "Running", (host, component, by_name[component])

    # verify: every row ok, the apiserver's own loopback etcd path among them.
    code, rows = verify_json(lab.inventory, state)
    assert code == 0, rows
    assert {h.name for h in lab.hosts} == {m for m, _ in rows}
    assert set(rows.values()) == {"ok"}, rows
    assert all(rows[(h.name, "apiserver-livez-etcd")] == "ok" for h in lab.hosts)

    # The cluster through kubectl with the operator's admin.conf.
    def kube(*args: str) -> str:
        return kubectl(lab, state, *args).strip()

    assert kube("get", "--raw", "/readyz") == "ok"
    assert kube("auth", "can-i", "*", "*") == "yes"  # the kubeadm:cluster-admins binding
    for lease in ("kube-controller-manager", "kube-scheduler"):
        holder = poll(
            f"a holder of the {lease} Lease",
            lambda lease=lease: kube("get", "lease", "-n", "kube-system", lease,
                                     "-o", "jsonpath={.spec.holderIdentity}"),
            lambda h: bool(h),
            60,
        )
        assert holder.split("_", 1)[0] in {h.name for h in lab.hosts}, holder

    # Secrets are encrypted at rest: the raw etcd value carries the aescbc envelope.
    kube("create", "secret", "generic", "smoke", "--from-literal=password=s3cr3t-value")
    raw = api.exec_in("m1", ["/run/bslab/bin/etcdctl", *ETCD_CLIENT_CERTS, "get",
                             "/registry/secrets/default/smoke", "--print-value-only"])
    assert raw.returncode == 0, raw.stderr
    assert raw.stdout.startswith(b"k8s:enc:aescbc:v1:"), raw.stdout[:40]
    assert b"s3cr3t-value" not in raw.stdout

    # A second init changes nothing and restarts nothing.
    second = bootstrap("init", "--inventory", str(lab.inventory), "--state-dir", str(state))
    print(second.stdout, second.stderr)
    assert second.returncode == 0, second.stderr
    assert "init: 0 changed" in second.stdout
    after = pods(lab)
    for host, by_name in before.items():
        for name, pod in by_name.items():
            assert after[host][name]["restartCount"] == pod["restartCount"], (host, name)
            assert after[host][name]["configHash"] == pod["configHash"], (host, name)
            assert after[host][name].get("startedAt") == pod.get("startedAt"), (host, name)
    plan = bootstrap("plan", "--inventory", str(lab.inventory), "--state-dir", str(state))
    assert plan.returncode == 0, plan.stderr
    assert "plan: 0 changed" in plan.stdout

    # One master's etcd stopped (its manifest parked, so the kubelet stops the pod): verify
    # fails and names that master's apiserver-livez-etcd; the other two stay ok.
    manifest, parked = "/etc/kubernetes/manifests/etcd.yaml", "/etc/kubernetes/etcd.yaml.parked"
    assert api.exec_in("m3", ["mv", manifest, parked]).returncode == 0
    code, rows = poll(
        "verify naming m3's apiserver-livez-etcd",
        lambda: verify_json(lab.inventory, state),
        lambda r: r[0] == 1 and r[1][("m3", "apiserver-livez-etcd")] == "fail",
        120,
    )
    assert rows[("m1", "apiserver-livez-etcd")] == "ok", rows
    assert rows[("m2", "apiserver-livez-etcd")] == "ok", rows
    assert rows[("m3", "etcd-health")] != "ok", rows
    # Back in place: verify passes again (the apiserver's gRPC reconnect back-off can take
    # ~15 s, floor.md §3).
    assert api.exec_in("m3", ["mv", parked, manifest]).returncode == 0
    poll("verify passing after m3's etcd returned", lambda: verify_json(lab.inventory, state),
         lambda r: r[0] == 0, 180)
