"""http delivery on the namespace lab: `bootstrap serve` on the bridge address, the lab
kubelet polling its URL, a file-delivered cluster switched to `init --delivery http`
master by master (file removed, pod stopped, then served; a master whose switch fails
gets its file back; etcd keeps quorum throughout), then the kubelet URL-source behaviours
the product relies on:

- an inventory edit (an etcd extra arg) re-published by init restarts etcd master by
  master with the new flag;
- a wrong token gets 401 and the node keeps its last good pods;
- the server down for a while: the pods keep running, and it picks up again;
- a pod removed from the served list stops;
- each node can read only its own document, and nothing served holds key material.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bootstrap.inventory import load
from bootstrap.node import labrunner
from bootstrap.pki import ensure_pki
from bootstrap.workflow import delivery
from lab import api, config
from lab.api import LabInfo
from tests.lab_support import lab  # noqa: F401  (fixture)

pytestmark = pytest.mark.lab
REPO = Path(__file__).resolve().parent.parent
BRIDGE = str(config.plan(1).bridge_address)  # 10.213.<instance>.1: the operator side


def bootstrap(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "bootstrap", *args],
        capture_output=True, text=True, timeout=timeout, cwd=REPO,
    )
    print(f"$ bootstrap {' '.join(args)}\n{proc.stdout}{proc.stderr}")
    return proc


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


class Server:
    """`bootstrap serve` as a subprocess on a fixed port (so it can come back)."""

    def __init__(self, inventory: Path, state: Path, port: int, log: Path) -> None:
        self.argv = [sys.executable, "-m", "bootstrap", "serve", "--inventory", str(inventory),
                     "--state-dir", str(state), "--listen", f"{BRIDGE}:{port}"]
        self.url = f"https://{BRIDGE}:{port}"
        self.log = log
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        with open(self.log, "a") as err:
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=err,
                                         text=True, cwd=REPO)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith(f"serving {self.url}"), line

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None


@pytest.fixture
def server(lab: LabInfo, tmp_path: Path) -> Iterator[Server]:  # noqa: F811
    inventory = tmp_path / "masters.yaml"
    inventory.write_text(lab.inventory.read_text())
    state = tmp_path / "state"
    srv = Server(inventory, state, free_port(BRIDGE), tmp_path / "serve.log")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def until(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


def more_refusals(host: str, since: dict[str, Any], what: str, count: int = 2) -> None:
    """Until the runner's URL source failed ``count`` more polls than in ``since`` (a
    status it reported): the pods must outlive those, not just a fixed sleep."""
    until(lambda: url_status(host)["errors"] >= since["errors"] + count, what)


def pod(host: str, name: str = "etcd") -> dict[str, Any] | None:
    entry: dict[str, Any] | None = api.runner_status(host)["pods"].get(f"kube-system/{name}")
    return entry


def url_status(host: str) -> dict[str, Any]:
    status: dict[str, Any] = api.runner_status(host)["urlSource"] or {}
    return status


def cmdline(host: str, pid: int) -> list[str]:
    raw = api.read_host_file(host, f"/proc/{pid}/cmdline")
    return raw.decode().rstrip("\0").split("\0")


def manifests_on_host(host: str) -> list[str]:
    out = api.exec_in(host, ["ls", "-A", "/etc/kubernetes/manifests"]).stdout.decode()
    return out.split()


def get_as(host: str, url: str, token: str) -> int:
    """GET from inside a lab host (the node's own network view), verifying with the CA."""
    script = (
        "import ssl,sys,urllib.request,urllib.error\n"
        "ctx=ssl.create_default_context(cafile='/etc/kubernetes/pki/ca.crt')\n"
        "req=urllib.request.Request(sys.argv[1],headers={'Authorization':'Bearer '+sys.argv[2]})\n"
        "try:\n print(urllib.request.urlopen(req,timeout=10,context=ctx).status)\n"
        "except urllib.error.HTTPError as e:\n print(e.code)\n"
    )
    proc = api.exec_in(host, [sys.executable, "-c", script, url, token])
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.decode().strip())


def test_http_delivery_end_to_end(lab: LabInfo, server: Server, tmp_path: Path) -> None:  # noqa: F811
    inventory = Path(server.argv[server.argv.index("--inventory") + 1])
    state = Path(server.argv[server.argv.index("--state-dir") + 1])
    common = ("--inventory", str(inventory), "--state-dir", str(state))
    http = ("--delivery", "http", "--serve-url", server.url)
    hosts = [h.name for h in lab.hosts]

    # --- file delivery first, then the switch: the same pods move to the URL -----------
    filed = bootstrap("init", *common)
    assert filed.returncode == 0, filed.stderr
    on_files = {h: pod(h) for h in hosts}
    assert all("etcd.yaml" in manifests_on_host(h) for h in hosts)

    # --- a switch that fails on one master is undone there: its file comes back ---------
    # The last master has fetched its (empty) document once, as a node pointed at the
    # URL earlier has, and then loses the server (its fetches are refused): its etcd file
    # goes, but the pod never arrives from the URL. init gives up after componentReady
    # and writes the file back. The masters switched before it stay switched; quorum
    # holds throughout.
    last, port = hosts[-1], server.url.rsplit(":", 1)[1]
    token = delivery.load_tokens(state)[last]
    config = labrunner.url_config(delivery.node_url(server.url, last), token)
    api.exec_in(last, ["sh", "-c", f"umask 077; cat > {labrunner.CONFIG_FILE}"],
                input=config)
    empty = delivery.publish(state, last, {})
    until(lambda: delivery.read_fetched(state, last) == empty, f"{last} to fetch once")
    block = ["OUTPUT", "-p", "tcp", "-d", BRIDGE, "--dport", port, "-j", "REJECT"]
    blocked = api.exec_in(last, ["iptables", "-I", *block])
    assert blocked.returncode == 0, blocked.stderr
    short = tmp_path / "short-timeouts.yaml"
    short.write_text(inventory.read_text() + "\ntimeouts:\n  componentReady: 15\n")
    failed = bootstrap("init", "--inventory", str(short), "--state-dir", str(state), *http)
    assert failed.returncode == 1, failed.stderr
    assert "did not fetch its manifest document" in failed.stderr, failed.stderr
    assert "switch failed: /etc/kubernetes/manifests/etcd.yaml written back" in failed.stderr
    assert "etcd.yaml" in manifests_on_host(last)
    until(lambda: (pod(last) or {}).get("phase") == "Running", f"etcd on {last} from its file")
    assert pod(last)["source"] == "/etc/kubernetes/manifests/etcd.yaml"  # type: ignore[index]
    assert "etcd" not in delivery.load_published(state, last), "taken out of its document"
    for host in hosts[:-1]:
        assert pod(host)["source"] == delivery.node_url(server.url, host)  # type: ignore[index]
        assert "etcd.yaml" not in manifests_on_host(host)
    unblocked = api.exec_in(last, ["iptables", "-D", *block])
    assert unblocked.returncode == 0, unblocked.stderr
    until(lambda: bootstrap("verify", *common, "--components", "etcd").returncode == 0,
          "etcd healthy on every master again", timeout=90)

    # --- pods now come from the URL: etcd keeps quorum on served manifests --------------
    first = bootstrap("init", *common, *http)
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("switching to the served manifest") >= len(hosts)
    for host in hosts:
        # Each pod left its file before the URL defined it (a real kubelet refuses the
        # URL's pod while the file's holds the host ports): one restart, from the URL.
        assert pod(host)["pid"] != on_files[host]["pid"]  # type: ignore[index]
        etcd = pod(host)
        assert etcd is not None and etcd["phase"] == "Running", (host, etcd)
        assert etcd["source"] == delivery.node_url(server.url, host), etcd["source"]
        for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
            served = pod(host, name)  # the real control plane, from the URL source too
            assert served is not None and served["phase"] == "Running", (host, name, served)
            assert served["source"] == delivery.node_url(server.url, host), (host, name)
        assert manifests_on_host(host) == [], "manifests are served, not written"
        assert url_status(host)["lastStatusCode"] == 200
    verify = bootstrap("verify", "--inventory", str(inventory), "--state-dir", str(state))
    assert verify.returncode == 0, verify.stdout

    again = bootstrap("init", *common, *http)
    assert again.returncode == 0 and "init: 0 changed" in again.stdout
    plan = bootstrap("plan", "--inventory", str(inventory), "--state-dir", str(state), *http)
    assert plan.returncode == 0 and "plan: 0 changed" in plan.stdout, plan.stdout

    # --- a published document cut short (an operator's edit): named, never a traceback ---
    document = delivery.published_path(state, hosts[0])
    good = document.read_bytes()
    document.write_bytes(good[: len(good) // 2])
    try:
        broken = bootstrap("plan", "--inventory", str(inventory), "--state-dir", str(state),
                           *http)
        assert broken.returncode == 2, broken.stderr
        assert "Traceback" not in broken.stderr, broken.stderr
        assert f"{document}: the document published for {hosts[0]} is unreadable" in (
            broken.stderr)
        debug = bootstrap("--debug", "plan", "--inventory", str(inventory), "--state-dir",
                          str(state), *http)
        report = broken.stderr[broken.stderr.index("bootstrap: error:"):]
        assert debug.returncode == 2 and debug.stderr.endswith(report)
        assert "Traceback (most recent call last)" in debug.stderr
        assert "json.decoder.JSONDecodeError" in debug.stderr
        assert not [t for t in delivery.load_tokens(state).values() if t in debug.stderr]
    finally:
        document.write_bytes(good)

    # --- each node reads only its own document; no key material served ------------------
    tokens = delivery.load_tokens(state)
    for reader in hosts:
        for owner in hosts:
            code = get_as(reader, delivery.node_url(server.url, owner), tokens[reader])
            assert code == (200 if reader == owner else 403), (reader, owner, code)
        assert get_as(reader, delivery.node_url(server.url, reader), "nope") == 401
    ca_pem = ensure_pki(load(inventory), state).ca().cert_pem
    for host in hosts:
        status, body = delivery.fetch_document(server.url, host, tokens[host], ca_pem)
        assert status == 200
        assert b"PRIVATE KEY" not in body and b"BEGIN CERTIFICATE" not in body
        for token in tokens.values():
            assert token.encode() not in body
    assert all(t not in server.log.read_text() for t in tokens.values()), "token in access log"

    # --- an inventory edit, re-published: etcd restarts master by master, new flag -------
    before = {h: pod(h) for h in hosts}
    text = inventory.read_text() + '\nextraArgs:\n  etcd:\n    snapshot-count: "5000"\n'
    inventory.write_text(text)
    plan = bootstrap("plan", "--inventory", str(inventory), "--state-dir", str(state), *http)
    assert "publish etcd" in plan.stdout and "--snapshot-count=5000" in plan.stdout
    assert "static pods that would (re)start: etcd" in plan.stdout
    rolled = bootstrap("init", *common, *http)
    assert rolled.returncode == 0, rolled.stderr
    assert rolled.stderr.count("rolling etcd: replacing the running pod") == len(hosts)
    for host in hosts:
        now = pod(host)
        assert now is not None and now["phase"] == "Running"
        assert now["configHash"] != before[host]["configHash"]  # type: ignore[index]
        assert "--snapshot-count=5000" in cmdline(host, now["pid"]), host

    # --- a wrong token: 401, the node keeps its last good pods -----------------------------
    m1 = hosts[0]
    good_config = api.read_host_file(m1, labrunner.CONFIG_FILE)
    kept = pod(m1)
    bad = json.loads(good_config)
    bad["headers"]["Authorization"] = "Bearer wrong"
    api.exec_in(m1, ["sh", "-c", f"umask 077; cat > {labrunner.CONFIG_FILE}"],
                input=json.dumps(bad).encode())
    until(lambda: url_status(m1).get("lastStatusCode") == 401, "the runner to see 401")
    refused = url_status(m1)
    more_refusals(m1, refused, "two more polls, refused")
    assert url_status(m1)["lastStatusCode"] == 401
    assert url_status(m1)["lastSuccess"] == refused["lastSuccess"]  # none got through
    still = pod(m1)
    assert still is not None and kept is not None
    assert (still["phase"], still["configHash"], still["startedAt"], still["pid"]) == (
        "Running", kept["configHash"], kept["startedAt"], kept["pid"])
    fixed = bootstrap("init", *common, *http)  # init puts the right token back
    assert fixed.returncode == 0
    until(lambda: url_status(m1).get("lastStatusCode") == 200, "the runner to fetch again")
    assert pod(m1)["pid"] == kept["pid"]  # type: ignore[index]

    # --- the server down for a while: pods keep running; back up, it fetches again -------
    running = {h: pod(h) for h in hosts}
    server.stop()
    for host in hosts:
        until(lambda h=host: "transport error" in str(url_status(h).get("lastError")),
              f"{host} to notice the server is gone")
    for host in hosts:
        more_refusals(host, url_status(host), f"{host}: two more polls, failing")
    for host in hosts:
        now = pod(host)
        assert now is not None and now["phase"] == "Running"
        assert now["pid"] == running[host]["pid"]  # type: ignore[index]
    server.start()
    for host in hosts:
        until(lambda h=host: url_status(h).get("lastError") is None, f"{host} to fetch again")
        assert pod(host)["pid"] == running[host]["pid"]  # type: ignore[index]

    # --- a pod removed from the served list stops (here: etcd on the last master) --------
    last = hosts[-1]
    pid = pod(last)["pid"]  # type: ignore[index]
    pods = delivery.load_published(state, last)
    del pods["etcd"]
    delivery.publish(state, last, pods)
    until(lambda: pod(last) is None, f"etcd on {last} to stop")
    gone = api.exec_in(last, ["test", "-e", f"/proc/{pid}"])
    assert gone.returncode != 0, "the etcd process must be gone"
    back = bootstrap("init", *common, *http)  # re-published: the member comes back
    assert back.returncode == 0, back.stderr
    assert pod(last)["phase"] == "Running"  # type: ignore[index]
