"""The namespace lab (lab/): real namespaces, real sshd, real paramiko. Root only.

One lab per module (up ~1 s); the last test tears it down and proves nothing is left;
the fixture's finalizer tears down anyway when a test fails on the way.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paramiko
import pytest
import yaml

# The lab is a plain package at the repo top (`python -m lab`), not installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab import api, netsetup, procs
from lab.api import LabInfo
from lab.config import (
    BRIDGE,
    CLIENT_KEY,
    LAB_BOOTSTRAP_STATE,
    REPO,
    STATE,
    SUDOERS_FILE,
    LabError,
)
from tests.lab_support import lab, ssh_client, ssh_run

__all__ = ["lab"]  # the fixture, imported for pytest

pytestmark = pytest.mark.lab  # skipped without root (conftest)

HOSTS = ("m1", "m2", "m3")


def _sh(info: LabInfo, host: str, script: str) -> subprocess.CompletedProcess[bytes]:
    del info  # the lab must be up; api finds the host through lab.json
    return api.exec_in(host, ["sh", "-c", script])


def _tcp_probe(address: str, port: int = 22) -> str:
    """Python code that prints the first bytes from address:port (an SSH banner)."""
    return (
        "import socket;"
        f"s=socket.create_connection(({address!r},{port}),timeout=2);"
        "print(s.recv(64).decode().strip())"
    )


def test_ssh_with_strict_known_hosts_and_hostnames(lab: LabInfo) -> None:
    for name in HOSTS:
        client = ssh_client(lab, name)
        try:
            code, out, err = ssh_run(client, "hostname; cat /etc/hostname; id -u")
        finally:
            client.close()
        assert code == 0, err
        assert out.split() == [name, name, "0"]


def test_unknown_host_key_is_rejected(lab: LabInfo, tmp_path: Path) -> None:
    """Strictness is real: the same connection with another host's key on file fails."""
    lines = lab.known_hosts.read_text().splitlines()
    m1_key = next(line for line in lines if line.startswith("m1,")).split()[1:]
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"m2,{lab.host('m2').address} {' '.join(m1_key)}\n")
    client = paramiko.SSHClient()
    client.load_host_keys(str(wrong))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    with pytest.raises(paramiko.BadHostKeyException):
        client.connect(
            lab.host("m2").address, username="root", key_filename=str(lab.ssh_key),
            look_for_keys=False, allow_agent=False, timeout=10,
        )
    client.close()


def test_sudo_user_over_ssh(lab: LabInfo) -> None:
    client = ssh_client(lab, "m2", user="labadmin")
    try:
        code, out, err = ssh_run(client, "id -un; sudo -n id -u")
    finally:
        client.close()
    assert code == 0, err
    assert out.split() == ["labadmin", "0"]


def test_hosts_reach_each_other_not_outside(lab: LabInfo) -> None:
    proc = api.exec_in("m1", [sys.executable, "-c", _tcp_probe(lab.host("m2").address)])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().startswith("SSH-2.0-OpenSSH")
    routes = api.exec_in("m1", ["ip", "-j", "route", "show"])
    assert routes.returncode == 0
    assert all(r.get("dst") != "default" for r in json.loads(routes.stdout))


def test_link_down_cuts_a_host_off(lab: LabInfo) -> None:
    probe = [sys.executable, "-c", _tcp_probe(lab.host("m3").address)]
    api.link_down("m3")
    try:
        assert api.exec_in("m1", probe).returncode != 0
    finally:
        api.link_up("m3")
    # Back up: reachable again once the neighbour entry that failed while the link was
    # down is retried (bounded; usually at once).
    deadline = time.monotonic() + 30
    while api.exec_in("m1", probe).returncode != 0:
        assert time.monotonic() < deadline, "m3 not reachable again 30 s after link_up"
        time.sleep(0.5)


def test_lab_secrets_and_bootstrap_state_are_hidden(lab: LabInfo) -> None:
    assert CLIENT_KEY.is_file()  # visible from the root namespace ...
    for name in HOSTS:  # ... and from no host
        proc = api.exec_in(name, ["cat", str(CLIENT_KEY)])
        assert proc.returncode != 0
        assert b"PRIVATE KEY" not in proc.stdout
        listing = _sh(lab, name, f"ls -A {STATE} {REPO / '.bootstrap'} | grep -v ':$' || true")
        assert listing.stdout.strip() == b"", listing.stdout
    client = ssh_client(lab, "m1")  # same over SSH, where bootstrap comes from
    try:
        code, out, _err = ssh_run(client, f"cat {CLIENT_KEY} {STATE}/hosts/m2/etc-ssh/*key")
    finally:
        client.close()
    assert code != 0
    assert "PRIVATE KEY" not in out


def test_each_host_has_its_own_etc_kubernetes_and_etcd_dir(lab: LabInfo) -> None:
    token = uuid.uuid4().hex
    for path in ("/etc/kubernetes/probe", "/var/lib/etcd/probe"):
        wrote = _sh(lab, "m1", f"echo {token} > {path}")
        assert wrote.returncode == 0, wrote.stderr
        assert api.read_host_file("m1", path).strip() == token.encode()
        for other in ("m2", "m3"):
            assert api.exec_in(other, ["cat", path]).returncode != 0
    assert not Path("/etc/kubernetes/probe").exists()  # nor in the root namespace
    ids = {api.read_host_file(h, "/etc/machine-id") for h in HOSTS}
    assert len(ids) == len(HOSTS)
    hosts_file = api.read_host_file("m2", "/etc/hosts").decode()
    for h in lab.hosts:
        assert re.search(rf"^{re.escape(h.address)}\s+{h.name}$", hosts_file, re.M)


def test_pid_isolation(lab: LabInfo) -> None:
    st = {h["name"]: h for h in api.status()["hosts"]}
    assert all(st[h]["sshd_pid"] and st[h]["init_pid"] for h in HOSTS), st
    ps = api.exec_in("m1", ["ps", "-eo", "pid=,args="])
    assert ps.returncode == 0
    lines = ps.stdout.decode().splitlines()
    listeners = [line for line in lines if "/usr/sbin/sshd -D" in line]
    assert len(listeners) == 1, lines  # m1's own; m2's and m3's are invisible
    first = lines[0].split(None, 1)
    assert first[0] == "1" and "lab.hostinit" in first[1]
    # m2's sshd, seen from the root namespace, is not a process m1 knows about.
    assert f" {st['m2']['sshd_pid']} " not in " ".join(f" {ln.split()[0]} " for ln in lines)


def test_masters_yaml(lab: LabInfo) -> None:
    doc = yaml.safe_load(lab.inventory.read_text())
    assert doc["clusterName"] == LAB_BOOTSTRAP_STATE.name  # "lab", or "lab-<LAB_INSTANCE>"
    assert doc["etcdVersion"] == lab.etcd_version
    assert doc["kubernetesVersion"] == lab.kubernetes_version
    subnet = ".".join(lab.host("m1").address.split(".")[:3])  # 10.213.<LAB_INSTANCE>
    assert doc["controlPlaneEndpoint"] == f"{subnet}.11:6443"
    assert [(m["name"], m["address"]) for m in doc["masters"]] == [
        ("m1", f"{subnet}.11"), ("m2", f"{subnet}.12"), ("m3", f"{subnet}.13"),
    ]
    ssh = doc["ssh"]
    assert ssh["user"] == "root" and ssh["hostKeyPolicy"] == "strict"
    assert Path(ssh["identityFile"]) == lab.ssh_key.resolve()
    assert stat.S_IMODE(os.stat(ssh["identityFile"]).st_mode) == 0o600
    known = Path(ssh["knownHosts"]).read_text().splitlines()
    assert [line.split()[0] for line in known] == [
        f"m1,{subnet}.11", f"m2,{subnet}.12", f"m3,{subnet}.13",
    ]
    # The line on file is the key the host serves.
    for name in HOSTS:
        served = api.read_host_file(name, "/etc/ssh/ssh_host_ed25519_key.pub").split()[1]
        assert any(line.split()[2].encode() == served for line in known)


def test_masters_yaml_loads_with_bootstrap_inventory(lab: LabInfo) -> None:
    loader = pytest.importorskip("bootstrap.inventory.loader")
    inv = loader.load(lab.inventory)
    assert [(m.name, str(m.address)) for m in inv.masters] == [
        (h.name, h.address) for h in lab.hosts
    ]
    assert inv.etcd_version == lab.etcd_version


def test_status_and_exec_cli(lab: LabInfo) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO)}
    if os.environ.get("LAB_INSTANCE"):
        env["LAB_INSTANCE"] = os.environ["LAB_INSTANCE"]
    out = subprocess.run(
        [sys.executable, "-m", "lab", "status", "--json"], capture_output=True, env=env,
        cwd=REPO, check=False,
    )
    assert out.returncode == 0, out.stderr
    hosts = json.loads(out.stdout)["hosts"]
    assert [h["name"] for h in hosts] == list(HOSTS)
    assert all(h["netns"] and h["sshd_pid"] for h in hosts)
    if lab.runner:
        assert all(h["runner_pid"] for h in hosts), hosts
    ex = subprocess.run(
        [sys.executable, "-m", "lab", "exec", "m3", "--", "sh", "-c", "hostname; exit 7"],
        capture_output=True, env=env, cwd=REPO, check=False,
    )
    assert ex.returncode == 7
    assert ex.stdout.decode().strip() == "m3"

ETCD_POD = """\
apiVersion: v1
kind: Pod
metadata: {name: etcd-probe, namespace: kube-system}
spec:
  hostNetwork: true
  containers:
  - name: etcd
    image: registry.k8s.io/etcd:{etcd_version}-0
    command: [etcd, --name=solo, --data-dir=/var/lib/etcd/solo,
              --listen-client-urls=http://127.0.0.1:2379,
              --advertise-client-urls=http://127.0.0.1:2379,
              --listen-peer-urls=http://127.0.0.1:2380,
              --listen-metrics-urls=http://127.0.0.1:2381,
              --initial-advertise-peer-urls=http://127.0.0.1:2380,
              --initial-cluster=solo=http://127.0.0.1:2380]
    volumeMounts: [{name: etcd-data, mountPath: /var/lib/etcd}]
  volumes: [{name: etcd-data, hostPath: {path: /var/lib/etcd, type: DirectoryOrCreate}}]
"""


def _wait_pod(host: str, pod: str, ok: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    entry: dict[str, Any] = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(LabError, ValueError):
            entry = api.runner_status(host).get("pods", {}).get(pod) or {}
            if ok(entry):
                return entry
        time.sleep(0.2)
    raise AssertionError(f"{host} {pod}: condition not reached; last status {entry}")


def test_runner_in_a_host_runs_real_etcd_from_the_bin_dir(lab: LabInfo) -> None:
    if not lab.runner:
        pytest.skip("lab/runner is missing: hosts run without the lab kubelet")
    wrote = api.exec_in("m3", ["sh", "-c", "cat > /etc/kubernetes/manifests/etcd-probe.yaml"],
                        input=ETCD_POD.replace("{etcd_version}", lab.etcd_version).encode())
    assert wrote.returncode == 0, wrote.stderr
    running = _wait_pod("m3", "kube-system/etcd-probe",
                        lambda p: p.get("phase") == "Running" and bool(p.get("pid")))
    # A fresh member answers 503 until it has elected itself: poll, do not sleep-and-hope.
    health_probe = [sys.executable, "-c", (
        "import urllib.request,time\n"
        "for _ in range(150):\n"
        "    try:\n"
        "        print(urllib.request.urlopen('http://127.0.0.1:2381/health',timeout=5)"
        ".read().decode()); break\n"
        "    except OSError: time.sleep(0.2)\n"
    )]
    health = api.exec_in("m3", health_probe)
    assert health.returncode == 0, health.stderr
    assert json.loads(health.stdout)["health"] == "true"
    # Its data lands in m3's own /var/lib/etcd (disk under lab/.state), nowhere else.
    assert api.exec_in("m3", ["test", "-d", "/var/lib/etcd/solo/member"]).returncode == 0
    assert api.exec_in("m1", ["test", "-e", "/var/lib/etcd/solo"]).returncode != 0
    log = api.read_host_file("m3", api.pod_log_path("m3", "etcd-probe"))
    assert b"etcdmain" in log  # etcd's own JSON log lines, via `lab logs`
    killed = api.kill_pod_process("m3", "etcd-probe")
    assert killed == running["pid"]
    _wait_pod("m3", "kube-system/etcd-probe",
              lambda p: p.get("pid") != killed or p.get("lastExitCode") == 137
              or p.get("restartCount", 0) > 0)


def test_down_leaves_nothing(lab: LabInfo) -> None:
    """Last on purpose: tears the module's lab down and proves it (the finalizer then
    finds nothing to do)."""
    st = api.status()["hosts"]
    lab_pids = [h["init_pid"] for h in st] + [h["sshd_pid"] for h in st]
    # A stray started over SSH, which no PID file knows about (pitfall 11).
    client = ssh_client(lab, "m2")
    try:
        ssh_run(client, "setsid sleep 987654 >/dev/null 2>&1 < /dev/null &")
    finally:
        client.close()
    assert api.down() is True
    assert not [n for n in netsetup.lab_netns()]
    assert BRIDGE not in netsetup.lab_links() and not netsetup.lab_links()
    ip_netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    assert "bslab-" not in ip_netns.stdout
    routes = subprocess.run(["ip", "route", "show"], capture_output=True, text=True).stdout
    assert f"{'.'.join(lab.host('m1').address.split('.')[:3])}." not in routes
    # Mount points of this instance only (another LAB_INSTANCE may be up beside it).
    mountinfo = Path("/proc/self/mountinfo").read_text().splitlines()
    mount_points = [line.split()[4] for line in mountinfo]
    assert not [m for m in mount_points if m == str(STATE) or m.startswith(f"{STATE}/")]
    assert not [p for p in lab_pids if p and procs.alive(p)]
    assert not any(
        cmd[:2] == ["sleep", "987654"]
        for cmd in (procs.cmdline(int(p)) for p in os.listdir("/proc") if p.isdigit())
    )
    assert not SUDOERS_FILE.exists()
    assert api.down() is False  # nothing to tear down


def _nobody(*argv: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *argv],
        capture_output=True, text=True, check=False, timeout=60, **kwargs,
    )


def _interpreter_for_nobody() -> str:
    """A Python `nobody` may run: the venv's may lie inside a checkout only root can read,
    so its real file or the system's is tried next (the lab CLI needs only the stdlib)."""
    candidates = [sys.executable, os.path.realpath(sys.executable),
                  getattr(sys, "_base_executable", ""), "/usr/bin/python3"]
    for candidate in dict.fromkeys(c for c in candidates if c):
        if _nobody(candidate, "-c", "import sys; assert sys.version_info >= (3, 11)",
                   cwd="/").returncode == 0:
            return candidate
    pytest.fail(f"no Python 3.11+ that nobody may run among {candidates}")


def test_cli_refuses_without_root() -> None:
    """Runs as `nobody` through setpriv. Independent of where the checkout lives (issue
    16.14): a clone under a 0700 `mktemp -d` is unreadable for nobody, so the lab package
    is copied to a world-readable directory and run from there."""
    import shutil
    import tempfile

    copy_root = Path(tempfile.mkdtemp(prefix="bootstrap-lab-as-nobody-"))
    try:
        shutil.copytree(
            REPO / "lab", copy_root / "lab",
            ignore=shutil.ignore_patterns(".state*", "kubebin", "__pycache__", "*.pyc"),
            copy_function=shutil.copyfile,  # modes: set below, whatever the clone's were
        )
        for path in [copy_root, *copy_root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(copy_root),
               "PYTHONDONTWRITEBYTECODE": "1"}
        proc = _nobody(_interpreter_for_nobody(), "-m", "lab", "status", env=env, cwd="/")
    finally:
        shutil.rmtree(copy_root, ignore_errors=True)
    assert proc.returncode == 2, proc.stderr
    assert "needs root" in proc.stderr
    assert "Traceback" not in proc.stderr
