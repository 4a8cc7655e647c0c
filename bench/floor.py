"""The floor: the same twelve command lines `init` rendered, started directly in the hosts.

What `bootstrap init` is divided by (floor.md): no SSH, no kubelet, no Python orchestration
in the way; each host's etcd, kube-apiserver, kube-controller-manager and kube-scheduler
command lines are read back from its rendered manifests (same certs, same flags), the
manifests are parked so the lab kubelet stops the pods, /var/lib/etcd is wiped, and then:

- **phased**: etcd (first member 50 ms ahead) → every member healthy → the apiservers →
  every apiserver live with its etcd check → controller-manager + scheduler → both
  leader-election Leases held;
- **together**: all twelve processes at once (first etcd 50 ms ahead), until the same end.

Time runs from the first process start to the end condition. Each process is started by a
launcher already waiting inside its host (nsenter + python started beforehand), so the
floor pays no process-start latency that a kubelet would not pay either.
"""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
MANIFESTS = "/etc/kubernetes/manifests"
PARKED = "/etc/kubernetes/bench-parked"
STAGGER = 0.05
LIMIT = 120.0  # a floor run that takes longer has failed

# Inside a lab host (system python3, stdlib only): wait for "go", start the command, report
# the start; for etcd also poll its metrics port until it is ready; keep the process until
# stdin closes, then stop it.
LAUNCHER = r"""
import json, subprocess, sys, time, urllib.request
argv, name, health = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
log = open("/var/log/bench-" + name + ".log", "ab")
sys.stdin.readline()
t0 = time.time()
p = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                     env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
print(json.dumps({"start": t0}), flush=True)
if health:
    healthy = None
    while time.time() < t0 + 60 and p.poll() is None:
        try:
            with urllib.request.urlopen(health, timeout=1) as r:
                if r.status == 200:
                    healthy = time.time()
                    break
        except Exception:
            pass
        time.sleep(0.01)
    print(json.dumps({"healthy": healthy, "exit": p.poll()}), flush=True)
sys.stdin.read()
p.terminate()
try:
    p.wait(20)
except subprocess.TimeoutExpired:
    p.kill()
    p.wait()
"""


@dataclass
class Launcher:
    host: str
    component: str
    proc: subprocess.Popen[str]
    start: float | None = None

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def report(self) -> dict[str, object]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.host}/{self.component}: floor launcher died")
        data: dict[str, object] = json.loads(line)
        return data

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.close()

    def wait(self) -> None:
        try:
            self.proc.wait(40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def command_lines(host: str) -> dict[str, list[str]]:
    """Each component's command line from the host's rendered manifest; the binary is the
    one the lab kubelet would run for that image."""
    from lab import api
    from lab.config import HOST_BIN_DIR

    out = {}
    for component in COMPONENTS:
        doc = yaml.safe_load(api.read_host_file(host, f"{MANIFESTS}/{component}.yaml"))
        container = doc["spec"]["containers"][0]
        argv = [str(c) for c in container["command"]] + [str(a) for a in container.get("args", [])]
        out[component] = [f"{HOST_BIN_DIR}/{Path(argv[0]).name}", *argv[1:]]
    return out


def park_manifests(hosts: list[str], timeout: float = 60.0) -> None:
    """Move every manifest out of the watched dir; wait until the lab kubelet ran none."""
    from lab import api

    for host in hosts:
        script = f"mkdir -p {PARKED} && mv {MANIFESTS}/*.yaml {PARKED}/"
        proc = api.exec_in(host, ["sh", "-c", script])
        if proc.returncode != 0:
            raise RuntimeError(f"{host}: cannot park the manifests: {proc.stderr!r}")
    deadline = time.monotonic() + timeout
    for host in hosts:
        while api.runner_status(host).get("pods"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{host}: the lab kubelet did not stop its pods in {timeout}s")
            time.sleep(0.2)


def wipe_etcd(hosts: list[str]) -> None:
    from lab import api

    for host in hosts:
        proc = api.exec_in(host, ["sh", "-c", "rm -rf /var/lib/etcd/member /var/lib/etcd/*"])
        if proc.returncode != 0:
            raise RuntimeError(f"{host}: cannot wipe /var/lib/etcd: {proc.stderr!r}")


@contextlib.contextmanager
def _client_tls(kubeconfig: Path) -> Iterator[ssl.SSLContext]:
    """A verifying TLS context with the kubeconfig's client certificate."""
    doc = yaml.safe_load(kubeconfig.read_text())
    user = doc["users"][0]["user"]
    cluster = doc["clusters"][0]["cluster"]
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        cert, key = Path(tmp) / "c.crt", Path(tmp) / "c.key"
        cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
        key.write_bytes(base64.b64decode(user["client-key-data"]))
        key.chmod(0o600)
        ctx = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
        )
        ctx.load_cert_chain(str(cert), str(key))
        yield ctx


def _get(url: str, ctx: ssl.SSLContext) -> tuple[int, bytes]:
    # No proxy from the environment: the lab's hosts are reached directly, never via one.
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx)
    )
    try:
        with opener.open(url, timeout=2) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def _apiservers_live(addresses: list[str], ctx: ssl.SSLContext) -> bool:
    for address in addresses:
        status, body = _get(f"https://{address}:6443/livez?verbose", ctx)
        if status != 200 or b"[+]etcd ok" not in body:
            return False
    return True


def _leases_held(address: str, ctx: ssl.SSLContext) -> bool:
    for lease in ("kube-controller-manager", "kube-scheduler"):
        url = (f"https://{address}:6443/apis/coordination.k8s.io/v1/namespaces/kube-system/"
               f"leases/{lease}")
        status, body = _get(url, ctx)
        if status != 200 or not json.loads(body).get("spec", {}).get("holderIdentity"):
            return False
    return True


def _poll(what: str, check: object, started: float) -> float:
    while time.time() < started + LIMIT:
        if check():  # type: ignore[operator]
            return time.time()
        time.sleep(0.02)
    raise RuntimeError(f"floor: {what} not reached within {LIMIT:.0f} s")


def floor_run(
    commands: dict[str, dict[str, list[str]]],
    addresses: dict[str, str],
    super_admin: Path,
    phased: bool,
) -> float:
    """One floor run; seconds from the first process start until every apiserver is live
    with its etcd check and both Leases have holders."""
    from lab import api

    hosts = sorted(commands)
    launchers: dict[tuple[str, str], Launcher] = {}
    try:
        for host in hosts:
            for component in COMPONENTS:
                health = "http://127.0.0.1:2381/readyz" if component == "etcd" else ""
                proc = subprocess.Popen(
                    [*api.enter_argv(host), "python3", "-c", LAUNCHER,
                     json.dumps(commands[host][component]), component, health],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=api.host_env(), text=True,
                )
                launchers[(host, component)] = Launcher(host, component, proc)
        time.sleep(0.5)  # every launcher is up and waiting for "go"
        etcds = [launchers[(h, "etcd")] for h in hosts]
        rest = [launchers[(h, c)] for h in hosts for c in COMPONENTS if c != "etcd"]

        etcds[0].go()
        time.sleep(STAGGER)
        for launcher in etcds[1:]:
            launcher.go()
        if not phased:
            for launcher in rest:
                launcher.go()
        starts = [float(launcher.report()["start"]) for launcher in etcds]  # type: ignore[arg-type]
        if not phased:
            starts += [float(lr.report()["start"]) for lr in rest]  # type: ignore[arg-type]
        begin = min(starts)
        health = [launcher.report() for launcher in etcds]
        if any(h.get("healthy") is None for h in health):
            raise RuntimeError(f"floor: an etcd member never became ready: {health}")
        with _client_tls(super_admin) as ctx:
            live_addresses = [addresses[h] for h in hosts]
            if phased:
                for host in hosts:
                    launchers[(host, "kube-apiserver")].go()
                for host in hosts:
                    launchers[(host, "kube-apiserver")].report()
                _poll("apiservers live", lambda: _apiservers_live(live_addresses, ctx), begin)
                for host in hosts:
                    for component in ("kube-controller-manager", "kube-scheduler"):
                        launchers[(host, component)].go()
                for host in hosts:
                    for component in ("kube-controller-manager", "kube-scheduler"):
                        launchers[(host, component)].report()
            end = _poll(
                "apiservers live and Leases held",
                lambda: _apiservers_live(live_addresses, ctx)
                and _leases_held(live_addresses[0], ctx),
                begin,
            )
        return end - begin
    finally:
        # The apiservers hold watches on etcd (floor.md §8: etcd then takes ~8 s to stop):
        # end them first.
        for key, launcher in launchers.items():
            if key[1] != "etcd":
                launcher.stop()
        for key, launcher in launchers.items():
            if key[1] != "etcd":
                launcher.wait()
        for key, launcher in launchers.items():
            if key[1] == "etcd":
                launcher.stop()
        for key, launcher in launchers.items():
            if key[1] == "etcd":
                launcher.wait()
