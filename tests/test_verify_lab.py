"""verify and init's waits on the lab: member down → that master fails, quorum held;
two down → quorum lost; a foreign client cert → a TLS failure naming the cert; an
unreachable host → a clear error; a crash-looping etcd → init times out with its log tail.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bootstrap.errors import EtcdError
from bootstrap.etcd.client import EtcdClient, TLSFiles
from bootstrap.inventory import load
from bootstrap.transport import connect
from lab import api
from lab.api import LabInfo
from tests.lab_support import lab  # noqa: F401  (fixture)

pytestmark = pytest.mark.lab
ETCD_MANIFEST = "/etc/kubernetes/manifests/etcd.yaml"
PARKED = "/etc/kubernetes/etcd.yaml.parked"


def bootstrap(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bootstrap", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def state(lab: LabInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    state = tmp_path_factory.mktemp("state")
    result = bootstrap(
        "init", "--inventory", str(lab.inventory), "--state-dir", str(state), "--components", "etcd"
    )
    assert result.returncode == 0, result.stderr
    return state


def verify(lab: LabInfo, state: Path) -> subprocess.CompletedProcess[str]:  # noqa: F811
    return bootstrap(
        "verify",
        "--inventory",
        str(lab.inventory),
        "--state-dir",
        str(state),
        "--components",
        "etcd",
        timeout=120,
    )


def wait_verified(lab: LabInfo, state: Path, timeout: float = 90) -> None:  # noqa: F811
    """etcd heals on its own after members come back (raft streams reconnect, leader
    leases expire); wait for that before the next fault instead of stacking faults."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        result = verify(lab, state)
        if result.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError("cluster did not heal:\n" + result.stdout)
        time.sleep(2)


def park(host: str) -> None:
    """Stop a static pod the way an operator does: move its manifest out of the dir."""
    api.exec_in(host, ["mv", ETCD_MANIFEST, PARKED]).check_returncode()


def unpark(host: str) -> None:
    api.exec_in(host, ["mv", PARKED, ETCD_MANIFEST]).check_returncode()


def wait_pod_gone(host: str) -> None:
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if "kube-system/etcd" not in api.runner_status(host).get("pods", {}):
            return
        time.sleep(0.2)
    raise AssertionError(f"etcd pod on {host} did not stop")


def test_healthy_cluster_verifies(lab: LabInfo, state: Path) -> None:  # noqa: F811
    result = verify(lab, state)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3/3 voting members reachable: quorum held" in result.stdout
    assert "limited: kube-apiserver" in result.stdout
    as_json = bootstrap(
        "verify",
        "--inventory",
        str(lab.inventory),
        "--state-dir",
        str(state),
        "--components",
        "etcd",
        "-o",
        "json",
    )
    assert as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)
    assert doc["ok"] is True
    statuses = {(r["master"], r["check"]): r["status"] for r in doc["results"]}
    assert statuses[("m2", "etcd-members")] == "ok"
    assert statuses[("m2", "apiserver-readyz")] == "skipped"


def test_one_then_two_members_down(lab: LabInfo, state: Path) -> None:  # noqa: F811
    park("m3")
    try:
        wait_pod_gone("m3")
        one = verify(lab, state)
        assert one.returncode == 1
        assert "2/3 voting members reachable: quorum held" in one.stdout
        health = next(line for line in one.stdout.splitlines() if line.startswith("etcd-health"))
        assert health.split()[1:3] == ["ok", "ok"], one.stdout
        assert "m3 etcd-health: not running" in one.stdout

        park("m2")
        try:
            wait_pod_gone("m2")
            two = verify(lab, state)
            assert two.returncode == 1
            assert "QUORUM LOST" in two.stdout
        finally:
            unpark("m2")
    finally:
        unpark("m3")
    again = bootstrap(
        "init", "--inventory", str(lab.inventory), "--state-dir", str(state), "--components", "etcd"
    )
    assert again.returncode == 0, again.stderr
    assert "init: 0 changed" in again.stdout


def _foreign_client_cert(directory: Path) -> TLSFiles:
    """A client cert from a CA etcd does not trust (plus the real etcd CA to trust the server)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stranger-ca")])
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver-etcd-client")])
        )
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "stranger.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "stranger.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    (directory / "stranger.key").chmod(0o600)
    return TLSFiles(
        ca=state_ca(directory), cert=directory / "stranger.crt", key=directory / "stranger.key"
    )


def state_ca(directory: Path) -> Path:
    return directory / "etcd-ca.crt"


def test_foreign_client_cert_is_a_tls_failure_naming_the_cert(
    lab: LabInfo,  # noqa: F811
    state: Path,
    tmp_path: Path,
) -> None:
    inventory = load(lab.inventory)
    state_ca(tmp_path).write_bytes((state / "pki/etcd/ca.crt").read_bytes())
    tls = _foreign_client_cert(tmp_path)
    host = connect(inventory.masters[0])
    try:
        with (
            host.forward(2379) as port,
            pytest.raises(EtcdError) as caught,
            EtcdClient("127.0.0.1", port, tls, timeout=5) as client,
        ):
            client.members()
    finally:
        host.close()
    assert "TLS" in str(caught.value)
    assert "stranger.crt" in str(caught.value) + str(caught.value.hint)


def test_unreachable_host_fails_clearly(lab: LabInfo, state: Path) -> None:  # noqa: F811
    wait_verified(lab, state)
    api.link_down("m2")
    try:
        result = verify(lab, state)
    finally:
        api.link_up("m2")
    assert result.returncode == 1
    assert "m2" in result.stderr and "Traceback" not in result.stderr


def test_crash_looping_etcd_times_out_with_its_log_tail(
    lab: LabInfo,  # noqa: F811
    state: Path,
    tmp_path: Path,
) -> None:
    wait_verified(lab, state)
    doc = yaml.safe_load(lab.inventory.read_text())
    doc["timeouts"] = {"etcdQuorum": 8}
    doc.setdefault("extraArgs", {})["etcd"] = {"no-such-flag": "1"}
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(doc))
    result = bootstrap(
        "init", "--inventory", str(broken), "--state-dir", str(state), "--components", "etcd"
    )
    assert result.returncode == 1
    assert "timed out" in result.stderr
    assert "etcd log on m1" in result.stderr
    assert "no-such-flag" in result.stderr, (
        result.stderr
    )  # etcd's own complaint, from the pod log tail
    # Put the good manifests back (the rollout stopped at m1: quorum of m2+m3 held).
    fixed = bootstrap(
        "init", "--inventory", str(lab.inventory), "--state-dir", str(state), "--components", "etcd"
    )
    assert fixed.returncode == 0, fixed.stderr
