"""A kubelet-mode lab host's service manager: containerd and the real kubelet (systemd's job).

Started by the host's PID 1 (lab.hostinit) inside the host's namespaces, so containerd
and the kubelet see the host's private ``/run`` (containerd's socket, shim sockets and
fifos under ``/run/containerd``), its ``/var/log`` and ``/var/lib/{kubelet,containerd}``.
What it does, in the order a node's systemd would:

1. writes containerd's config and starts ``containerd`` (restarted if it exits, like
   ``Restart=always``), then imports the lab's images (OCI archives, lab/ociimage.py)
   into its ``k8s.io`` namespace;
2. writes the two kubelet configs and starts the kubelet as the Vagrant lab's
   ``kubelet-start`` does: standalone (static pods only, no API server) until
   ``/etc/kubernetes/kubelet.conf`` and ``/etc/kubernetes/pki/ca.crt`` exist, then with
   ``--kubeconfig`` (it registers the Node and creates the mirror pods);
3. restarts the kubelet whenever either file appears or changes (the Vagrant lab's
   ``kubelet-kubeconfig.path`` unit), or a drop-in in ``/var/lib/kubelet/config.d/``
   (``--config-dir``; where an operator adds ``staticPodURL`` for the HTTP source, then
   runs ``systemctl restart kubelet``); static pods keep running across the restart.
   The kubelet trusts the cluster CA like a node where ``update-ca-certificates`` ran
   (the URL source has no CA option): ``SSL_CERT_FILE`` names the machine's bundle plus
   ``/etc/kubernetes/pki/ca.crt`` (the hosts share the machine's /etc/ssl);
4. reports "ok" on the ready pipe once the kubelet's healthz answers, or "error: ...".

Logs: /var/log/containerd.log, /var/log/kubelet.log, /var/log/lab-node.log.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

KUBECONFIG = "/etc/kubernetes/kubelet.conf"
CLIENT_CA = "/etc/kubernetes/pki/ca.crt"
KUBELET_DIR = "/var/lib/kubelet"
DROPIN_DIR = "/var/lib/kubelet/config.d"
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
SOCKET = "/run/containerd/containerd.sock"
HEALTHZ = "http://127.0.0.1:10248/healthz"
NODE_RUN = "/run/bslab/node"
RESTART_DELAY = 1.0  # systemd's RestartSec, shortened: the lab is waited on

CONTAINERD_CONFIG = """\
# containerd of lab host {name} (written by lab/node.py)
version = 3
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = [
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.snapshotter.v1.erofs", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing", "io.containerd.nri.v1.nri",
]

[grpc]
  address = "{socket}"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "{snapshotter}"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{pause_image}"

[plugins.'io.containerd.cri.v1.runtime']
  # The lab's processes lack CAP_SYS_RESOURCE: without this every sandbox fails
  # ("can't get final child's PID from pipe: EOF"; runc --debug: "failed to update
  # /proc/self/oom_score_adj: Permission denied", the kubelet asks -998 for sandboxes).
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    # Host-network pods only: an empty CNI dir (the node stays NotReady for pod networks).
    bin_dirs = ["{run}/cni/bin"]
    conf_dir = "{run}/cni/net.d"
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
    # The kubelet's cgroupDriver is cgroupfs: there is no systemd in the lab hosts.
    SystemdCgroup = false
"""

# Shared by both kubelet configs; the standalone one differs in authn/authz only, as in
# vagrant/files/kubelet-config{,-standalone}.yaml.
KUBELET_COMMON = """\
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
staticPodPath: /etc/kubernetes/manifests
containerRuntimeEndpoint: unix://{socket}
# No systemd in the hosts; each host's pods live under its own cgroup root, so several
# kubelets share the machine's cgroup hierarchies (lab down removes them).
cgroupDriver: cgroupfs
cgroupRoot: {cgroup_root}
failSwapOn: false
{fail_cgroup_v1}
# The lab host sets the kernel settings the kubelet wants (and restores them at lab
# down): with true the kubelet checks them and never writes host-wide sysctls itself.
protectKernelDefaults: true
clusterDNS:
  - 10.96.0.10
clusterDomain: cluster.local
address: {address}
healthzBindAddress: 127.0.0.1
healthzPort: 10248
readOnlyPort: 0
rotateCertificates: false
serverTLSBootstrap: false
# One machine, several kubelets and other labs: never evict or garbage-collect the
# lab's imported images because the shared disk or memory looks full.
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%"
  imagefs.available: "1%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
"""

KUBELET_STANDALONE = """\
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509: {}
authorization:
  mode: AlwaysAllow
"""

KUBELET_REGISTERED = f"""\
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
    cacheTTL: 2m0s
  x509:
    clientCAFile: {CLIENT_CA}
authorization:
  mode: Webhook
"""


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} lab-node: {msg}", flush=True)


class NodeError(Exception):
    pass


def write_configs(cfg: dict[str, Any]) -> None:
    run = Path(NODE_RUN)
    for d in (run, run / "cni" / "bin", run / "cni" / "net.d", Path("/run/containerd")):
        d.mkdir(parents=True, exist_ok=True)
    (run / "containerd.toml").write_text(CONTAINERD_CONFIG.format(
        name=cfg["name"], socket=SOCKET, snapshotter=cfg["snapshotter"],
        pause_image=cfg["pause_image"], run=NODE_RUN,
    ))
    common = KUBELET_COMMON.format(
        socket=SOCKET, cgroup_root=cfg["cgroup_root"], address=cfg["address"],
        fail_cgroup_v1=(
            "# This machine mounts cgroup v1, which the kubelet refuses since 1.35 unless:\n"
            "failCgroupV1: false" if cfg["cgroup_v1"] else "failCgroupV1: true"
        ),
    )
    header = f"# kubelet of lab host {cfg['name']} (written by lab/node.py)\n"
    Path(KUBELET_DIR, "config-standalone.yaml").write_text(header + common + KUBELET_STANDALONE)
    Path(KUBELET_DIR, "config.yaml").write_text(header + common + KUBELET_REGISTERED)


def make_cgroup_root(root: str) -> None:
    """The kubelet wants its cgroupRoot to exist in every v1 hierarchy (a node's init
    system would have made it). cpuset needs cpus and mems before any task may join."""
    for hierarchy in sorted(Path("/sys/fs/cgroup").iterdir()):
        if not (hierarchy / "cgroup.procs").exists() or (hierarchy / "cgroup.controllers").exists():
            continue  # not a mounted v1 hierarchy (the cgroup2 "unified" mount is left alone)
        path = hierarchy / root.lstrip("/")
        path.mkdir(exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):
            if (path / name).exists() and not (path / name).read_text().strip():
                (path / name).write_text((hierarchy / name).read_text())


class Service:
    """One supervised daemon: started, restarted after it exits, stopped on request."""

    def __init__(self, name: str, logfile: str) -> None:
        self.name = name
        self.logfile = logfile
        self.proc: subprocess.Popen[bytes] | None = None
        self.argv: list[str] = []
        self.env: dict[str, str] = {}
        self.exited_at = 0.0

    def start(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.env = env or _env()
        with open(self.logfile, "ab") as out:
            self.proc = subprocess.Popen(
                argv, env=self.env, cwd="/", stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        log(f"{self.name} started (pid {self.proc.pid}): {' '.join(argv)}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tend(self) -> None:
        """Restart after an exit (systemd's Restart=always, RestartSec)."""
        if self.proc is None or self.proc.poll() is None:
            return
        if not self.exited_at:
            self.exited_at = time.monotonic()
            log(f"{self.name} exited with {self.proc.returncode}; restarting")
        if time.monotonic() - self.exited_at >= RESTART_DELAY:
            self.exited_at = 0.0
            self.start(self.argv, self.env)

    def stop(self, timeout: float = 10.0) -> None:
        if not self.running():
            return
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        log(f"{self.name} stopped")


def _env() -> dict[str, str]:
    # Clean: no ETCD_* or proxy variables reach the node's daemons.
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root", "LANG": "C.UTF-8"}


def ctr(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ctr", "--address", SOCKET, *args], env=_env(), capture_output=True, text=True,
        timeout=timeout, check=False,
    )


def wait_containerd(svc: Service, deadline: float) -> None:
    while time.monotonic() < deadline:
        if not svc.running():
            raise NodeError(f"containerd exited ({_tail(svc.logfile)})")
        if os.path.exists(SOCKET) and ctr("version", timeout=10).returncode == 0:
            return
        time.sleep(0.1)
    raise NodeError(f"containerd did not answer on {SOCKET} ({_tail(svc.logfile)})")


def import_images(archive_dir: str, snapshotter: str) -> None:
    present = set(ctr("-n", "k8s.io", "images", "ls", "-q").stdout.split())
    for archive in sorted(Path(archive_dir).glob("*.tar")):
        started = time.monotonic()
        # Unpacked for the CRI's snapshotter; the layer blob is dropped once unpacked
        # (half the disk per host).
        proc = ctr("-n", "k8s.io", "images", "import", "--snapshotter", snapshotter,
                   "--local", "--discard-unpacked-layers", str(archive), timeout=600)
        if proc.returncode != 0:
            raise NodeError(f"ctr images import {archive.name}: {proc.stderr.strip()[-500:]}")
        log(f"imported {archive.name} in {time.monotonic() - started:.1f} s")
    after = set(ctr("-n", "k8s.io", "images", "ls", "-q").stdout.split())
    log(f"images: {len(after)} ({len(after - present)} new)")


def _tail(path: str, chars: int = 800) -> str:
    try:
        return Path(path).read_text(errors="replace")[-chars:].strip()
    except OSError:
        return "no log"


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _watched() -> dict[str, tuple[int, int, int] | None]:
    """What restarts the kubelet when it changes: kubeconfig, client CA, drop-ins."""
    paths = [KUBECONFIG, CLIENT_CA]
    with contextlib.suppress(OSError):
        paths += sorted(str(p) for p in Path(DROPIN_DIR).rglob("*.conf"))
    return {p: _stamp(p) for p in paths}


def kubelet_env() -> dict[str, str]:
    """The machine's trust store plus the cluster CA (the stand-in for a node's
    update-ca-certificates), rebuilt at every kubelet start."""
    bundle = Path(NODE_RUN) / "ca-bundle.crt"
    parts = []
    for path in (SYSTEM_CA_BUNDLE, CLIENT_CA):
        with contextlib.suppress(OSError):
            parts.append(Path(path).read_bytes().rstrip(b"\n") + b"\n")
    bundle.write_bytes(b"".join(parts))
    return {**_env(), "SSL_CERT_FILE": str(bundle)}


def kubelet_argv(cfg: dict[str, Any]) -> list[str]:
    """kubelet-start's choice: registered once kubelet.conf and the client CA exist."""
    base = ["kubelet", f"--node-ip={cfg['address']}", f"--config-dir={DROPIN_DIR}", "--v=1"]
    if _nonempty(KUBECONFIG) and _nonempty(CLIENT_CA):
        return [*base, f"--config={KUBELET_DIR}/config.yaml", f"--kubeconfig={KUBECONFIG}"]
    return [*base, f"--config={KUBELET_DIR}/config-standalone.yaml"]


def _nonempty(path: str) -> bool:
    try:
        return os.path.getsize(path) > 0
    except OSError:
        return False


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def healthy() -> bool:
    try:
        with _DIRECT.open(HEALTHZ, timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def main() -> int:
    cfg = json.loads(sys.argv[1])
    ready = os.fdopen(cfg["ready_fd"], "w") if cfg.get("ready_fd") is not None else None
    containerd = Service("containerd", "/var/log/containerd.log")
    kubelet = Service("kubelet", "/var/log/kubelet.log")
    stopping = False

    def on_term(_sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        write_configs(cfg)
        containerd.start(["containerd", "--config", f"{NODE_RUN}/containerd.toml"])
        wait_containerd(containerd, time.monotonic() + 30)
        import_images(cfg["archive_dir"], cfg["snapshotter"])
        if cfg["cgroup_v1"]:
            make_cgroup_root(cfg["cgroup_root"])
        Path(DROPIN_DIR).mkdir(mode=0o755, exist_ok=True)
        watched = _watched()
        kubelet.start(kubelet_argv(cfg), kubelet_env())
        deadline = time.monotonic() + 60
        while not healthy():
            if not kubelet.running():
                raise NodeError(f"the kubelet exited: {_tail(kubelet.logfile, 1500)}")
            if time.monotonic() > deadline:
                raise NodeError(f"the kubelet's healthz never answered: {_tail(kubelet.logfile)}")
            time.sleep(0.2)
    except Exception as exc:
        log(f"start failed: {exc}")
        if ready:
            ready.write(f"error: {exc}\n".replace("\n", " ").strip() + "\n")
            ready.close()
        kubelet.stop()
        containerd.stop()
        return 1
    if ready:
        ready.write("ok\n")
        ready.close()
    log("node ready: containerd and the kubelet are up")
    while not stopping:
        time.sleep(0.5)
        containerd.tend()
        now = _watched()
        if now != watched:
            changed = ", ".join(p for p in {*now, *watched} if now.get(p) != watched.get(p))
            watched = now
            log(f"{changed} changed: restarting the kubelet")
            kubelet.stop()
            kubelet.start(kubelet_argv(cfg), kubelet_env())
        kubelet.tend()
    # systemd's KillMode=process for containerd: the shims and containers stay (the host's
    # end kills them anyway).
    kubelet.stop()
    containerd.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
