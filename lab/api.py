"""The lab as a library: up, down, status, exec_in, read_host_file, link_down/link_up.

`python -m lab` (lab.cli) is a thin layer over these; tests and the smoke test call
them directly. Everything here needs root.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import (
    cgroups,
    cri,
    hostfiles,
    inventory,
    kubebin,
    netsetup,
    ociimage,
    procs,
    record,
    sysctls,
)
from lab.config import (
    BOOTSTRAP_STATE,
    BRIDGE,
    CLEAN_PATH,
    CLIENT_KEY,
    DEFAULT_SUBNET,
    HOST_BIN_DIR,
    HOST_DIR_BINDS,
    HOST_FILE_BINDS,
    HOST_MANIFESTS,
    HOST_NODE_LOG,
    HOST_POD_LOGS,
    HOST_RUNNER_LOG,
    HOST_RUNNER_STATUS,
    HOST_SSHD_LOG,
    HOSTS_DIR,
    INVENTORY,
    KNOWN_HOSTS,
    LAB_CMD,
    NODE_DIR_BINDS,
    NODE_MODES,
    NS_DIR,
    PAUSE_IMAGE,
    PREFIX,
    RECORD,
    REPO,
    STATE,
    SUDOERS_FILE,
    HostSpec,
    LabError,
    LabPlan,
    plan,
)

Log = Callable[[str], None]
READY_TIMEOUT = 30.0
# Kubelet mode: containerd imports the control-plane images (~300 MB) on every host at
# once before the kubelet starts.
NODE_READY_TIMEOUT = 240.0


def _quiet(_msg: str) -> None:
    pass


@dataclass(frozen=True)
class HostInfo:
    name: str
    address: str


@dataclass(frozen=True)
class LabInfo:
    inventory: Path
    hosts: tuple[HostInfo, ...]
    ssh_key: Path
    known_hosts: Path
    bin_dir: Path
    etcd_version: str
    kubernetes_version: str
    kube_binaries: tuple[str, ...]  # which of apiserver/cm/scheduler the bin dir has
    runner: bool  # False: lab/runner missing, hosts run without a kubelet
    seconds: float = 0.0
    node: str = "runner"  # what runs the static pods: "runner" or "kubelet" (NODE_MODES)
    notes: tuple[str, ...] = field(default_factory=tuple)

    def host(self, name: str) -> HostInfo:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError(
            "the lab needs root (network/mount/PID namespaces, bridge, routes, sshd)",
            hint=f"run as root: sudo {LAB_CMD.replace('python', '.venv/bin/python')} ...",
            exit_code=2,
        )


def runner_available() -> bool:
    return (REPO / "lab" / "runner" / "__main__.py").is_file()


# ---------------------------------------------------------------------------- up


def lab_exists(rec: dict[str, Any] | None) -> list[str]:
    """What of a lab (ours or a crashed one) is present right now."""
    found = []
    if rec is not None:
        found.append(f"record {RECORD}")
    found += [f"netns {n}" for n in netsetup.lab_netns()]
    found += [f"link {n}" for n in netsetup.lab_links()]
    found += [f"mount {m}" for m in _mounts_under(STATE)]
    return found


def up(
    masters: int = 3,
    bin_dir: Path | str | None = None,
    subnet: str = DEFAULT_SUBNET,
    log: Log = _quiet,
    kubernetes: str = kubebin.DEFAULT_KUBERNETES,
    etcd: str = kubebin.DEFAULT_ETCD,
    extra_kubernetes: tuple[str, ...] = (),
    extra_etcd: tuple[str, ...] = (),
    node: str = "runner",
) -> LabInfo:
    """``kubernetes``/``etcd``: the versions the lab's inventory names (built if missing);
    ``extra_*``: further versions whose images the nodes also get (an upgrade's target);
    ``node``: "runner" (the lab's process-mode kubelet) or "kubelet" (the real one)."""
    require_root()
    lab = plan(masters, subnet)
    if node not in NODE_MODES:
        raise LabError(f"--node {node!r}: expected one of {', '.join(NODE_MODES)}", exit_code=2)
    if node == "kubelet":
        if bin_dir:
            raise LabError(
                "--node kubelet runs images the lab builds from its own Go-module builds; "
                "--bin-dir is for the runner mode", exit_code=2,
            )
        cgroups.check_machine()
    # Before any namespace exists: a cold build takes minutes and may fail on its own.
    bins = inventory.prepare_bin_dir(
        Path(bin_dir) if bin_dir else None, kubernetes, etcd, log, extra_kubernetes, extra_etcd,
        node=node == "kubelet",
    )
    if node == "kubelet":
        ociimage.ensure_archives(bins, log)
    started = time.monotonic()
    with record.locked():
        present = lab_exists(record.load())
        if present:
            raise LabError(
                "a lab is already up (or left over): " + ", ".join(present),
                hint=f"use it, or run `{LAB_CMD} down` first",
            )
        netsetup.preflight(lab)
        rec: dict[str, Any] = {
            "version": 1,
            "created": time.time(),
            "subnet": str(lab.subnet),
            "hosts": {},
            "created_paths": [],
            "complete": False,
            "node": node,
        }
        record.save(rec)
        try:
            info = _build(lab, rec, bins, log)
        except BaseException:
            log("up failed: tearing down what was made")
            with contextlib.suppress(Exception), _pinned(rec) as (inodes, wrappers):
                _teardown(rec, _quiet, inodes, wrappers)
                _clean_data(rec)
                record.remove()
            raise
    return LabInfo(**{**info.__dict__, "seconds": time.monotonic() - started})


def _build(lab: LabPlan, rec: dict[str, Any], bins: Path, log: Log) -> LabInfo:
    notes: list[str] = []
    etcd_version = inventory.etcd_version(bins)
    kube_version = inventory.kubernetes_version(bins)
    kube_bins = inventory.kube_binaries(bins)
    rec["bin_dir"] = str(bins)
    if not kube_bins:
        notes.append(
            f"no kube-apiserver/controller-manager/scheduler in {bins}: the runner reports "
            "those pods ImageUnavailable (without --bin-dir the lab builds them itself)"
        )
    kubelet = rec.get("node") == "kubelet"
    runner = runner_available() and not kubelet
    if not runner and not kubelet:
        notes.append("lab/runner is missing: hosts are up WITHOUT the lab kubelet")

    client_pub = hostfiles.ensure_client_key()
    created: list[str] = rec["created_paths"]
    rec["sudoers"] = str(SUDOERS_FILE)
    record.save(rec)
    hostfiles.ensure_sudo_user(created)
    known = [hostfiles.prepare_host(lab, h, client_pub) for h in lab.hosts]
    for _src, target in HOST_DIR_BINDS + (NODE_DIR_BINDS if kubelet else ()):
        _ensure_dir(Path(target), created)
    _ensure_dir(BOOTSTRAP_STATE, created, mode=0o700)
    record.save(rec)
    if kubelet:
        rec["sysctls"] = True
        rec["cgroup_roots"] = [cgroups.host_root(h.name) for h in lab.hosts]
        record.save(rec)
        sysctls.acquire(PREFIX, _instance_alive, log)

    log(f"network: bridge {BRIDGE} {lab.bridge_address}/{lab.subnet.prefixlen}")
    rec["safety_route"] = True
    record.save(rec)
    netsetup.add_safety_route(lab)
    rec["bridge"] = BRIDGE
    record.save(rec)
    netsetup.add_bridge(lab)
    rule = netsetup.forward_rule_needed()
    if rule:
        rec["forward_rule"] = rule
        record.save(rec)
        netsetup.add_forward_rule(rule)
    for host in lab.hosts:
        rec["hosts"][host.name] = {"address": host.address, "netns": host.netns, "veth": host.veth}
        record.save(rec)
        netsetup.add_host_network(lab, host)
    netsetup.check_routes_via_bridge(lab)

    _make_handle_dir(rec)
    starts = [_start_host(lab, h, bins, runner, rec, kubelet) for h in lab.hosts]
    record.save(rec)
    what = ", runner started" if runner else (", containerd + kubelet up" if kubelet else "")
    for host, (wrapper, ready_fd) in zip(lab.hosts, starts, strict=True):
        _await_ready(host, wrapper, ready_fd, NODE_READY_TIMEOUT if kubelet else READY_TIMEOUT)
        _record_host(rec, host, wrapper.pid)
        log(f"host {host.name} {host.address}: sshd up{what}")
    hostfiles.write_known_hosts(known)
    kube = kube_version or inventory.DEFAULT_KUBERNETES_VERSION
    inv = inventory.write_inventory(lab, etcd_version, kube_version)
    rec["complete"] = True
    record.save(rec)
    return LabInfo(
        inventory=inv,
        hosts=tuple(HostInfo(h.name, h.address) for h in lab.hosts),
        ssh_key=CLIENT_KEY,
        known_hosts=KNOWN_HOSTS,
        bin_dir=bins,
        etcd_version=etcd_version,
        kubernetes_version=kube,
        kube_binaries=tuple(kube_bins),
        runner=runner,
        notes=tuple(notes),
        node="kubelet" if kubelet else "runner",
    )


def _ensure_dir(path: Path, created: list[str], mode: int = 0o755) -> None:
    if not path.exists():
        path.mkdir(parents=True, mode=mode)
        created.append(str(path))


def _make_handle_dir(rec: dict[str, Any]) -> None:
    """Pitfall 2: `unshare --mount=FILE` needs FILE's parent mount to be private."""
    NS_DIR.mkdir(parents=True, exist_ok=True)
    rec["ns_dir_bind"] = str(NS_DIR)
    record.save(rec)
    netsetup.run(["mount", "--bind", str(NS_DIR), str(NS_DIR)])
    netsetup.run(["mount", "--make-private", str(NS_DIR)])


def _instance_alive(prefix: str) -> bool:
    """Does the lab instance with this name prefix have hosts right now?"""
    try:
        return any(p.name.startswith(f"{prefix}-") for p in Path("/run/netns").iterdir())
    except FileNotFoundError:
        return False


def _node_config(host: HostSpec) -> dict[str, Any]:
    """Kubelet mode: what lab.node (containerd + kubelet, in the host) is started with."""
    return {
        "argv": [sys.executable, "-m", "lab.node"],
        "env": {"PATH": CLEAN_PATH, "PYTHONPATH": str(REPO)},
        "log": HOST_NODE_LOG,
        "timeout": NODE_READY_TIMEOUT - 10,
        "bin_dir": f"{HOST_BIN_DIR}/node",
        "config": {
            "name": host.name,
            "address": host.address,
            "cgroup_root": cgroups.host_root(host.name),
            "cgroup_v1": cgroups.machine_is_v1(),
            "pause_image": PAUSE_IMAGE,
            "snapshotter": "overlayfs",
            "archive_dir": f"{HOST_BIN_DIR}/oci",
        },
    }


def _hostinit_config(
    host: HostSpec, bins: Path, runner: bool, ready_fd: int, kubelet: bool = False
) -> dict[str, Any]:
    data = host.data_dir
    dir_binds = HOST_DIR_BINDS + (NODE_DIR_BINDS if kubelet else ())
    cfg: dict[str, Any] = {
        "name": host.name,
        "address": host.address,
        "ready_fd": ready_fd,
        "ns_dir": str(NS_DIR),
        "bin_dir": str(bins),
        "host_bin_dir": HOST_BIN_DIR,
        "dir_binds": [[str(data / src), target] for src, target in dir_binds],
        "file_binds": [
            [str(data / src), target] for src, target in HOST_FILE_BINDS if Path(target).exists()
        ],
        "hidden": [str(BOOTSTRAP_STATE), str(STATE)],
        # A checkout (and its venv) under /tmp must stay visible to the host's runner
        # although the host gets a private /tmp (CI clones into /tmp).
        "keep_visible": sorted({str(REPO), sys.prefix}),
        "sshd_log": HOST_SSHD_LOG,
        "runner": None,
        "node": _node_config(host) if kubelet else None,
    }
    if runner:
        cfg["runner"] = {
            "argv": [
                sys.executable, "-m", "lab.runner",
                "--manifests", HOST_MANIFESTS,
                "--status", HOST_RUNNER_STATUS,
                "--logs", HOST_POD_LOGS,
                "--bin-dir", HOST_BIN_DIR,
                # Changes are read at once through inotify, as the kubelet does; this
                # re-list is the fallback where inotify is unavailable.
                "--file-check-frequency", "0.2",
            ],
            "env": {"PATH": CLEAN_PATH, "PYTHONPATH": str(REPO)},
            "log": HOST_RUNNER_LOG,
        }
    return cfg


# The hosts' wrapper processes outlive up(); `down` ends them by their recorded PIDs. Their
# Popen objects stay here until then: a dropped Popen of a running process is a
# ResourceWarning, and _teardown reaps them (no zombie) once they are ended.
_WRAPPERS: list[subprocess.Popen[bytes]] = []


def _start_host(
    lab: LabPlan, host: HostSpec, bins: Path, runner: bool, rec: dict[str, Any],
    kubelet: bool = False,
) -> tuple[subprocess.Popen[bytes], int]:
    for handle in (host.mnt_handle, host.uts_handle):
        handle.touch()
    if kubelet:
        (host.data_dir / "var-lib-containerd").mkdir(mode=0o711, exist_ok=True)
    read_fd, write_fd = os.pipe()
    cfg = _hostinit_config(host, bins, runner, write_fd, kubelet)
    argv = [
        "nsenter", f"--net=/run/netns/{host.netns}", "--",
        # Pitfall 3: nsenter, not `ip netns exec` (that leaves a dead mount handle).
        "unshare", f"--mount={host.mnt_handle}", f"--uts={host.uts_handle}",
        "--pid", "--fork", "--kill-child", "--mount-proc", "--propagation", "private",
        "--", sys.executable, "-m", "lab.hostinit", json.dumps(cfg),
    ]
    wrapper_log = open(host.data_dir / "wrapper.log", "ab")  # noqa: SIM115 - child keeps it
    try:
        wrapper = subprocess.Popen(
            argv, env={"PATH": CLEAN_PATH, "PYTHONPATH": str(REPO)}, cwd="/",
            stdin=subprocess.DEVNULL, stdout=wrapper_log, stderr=subprocess.STDOUT,
            pass_fds=(write_fd,), start_new_session=True,
        )
    finally:
        os.close(write_fd)
        wrapper_log.close()
    _WRAPPERS.append(wrapper)
    rec["hosts"][host.name]["wrapper_pid"] = wrapper.pid
    return wrapper, read_fd


def _await_ready(
    host: HostSpec, wrapper: subprocess.Popen[bytes], ready_fd: int, timeout: float = READY_TIMEOUT
) -> None:
    deadline = time.monotonic() + timeout
    buf = b""
    try:
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LabError(f"host {host.name} not ready after {timeout:.0f} s")
            readable, _, _ = select.select([ready_fd], [], [], min(left, 0.5))
            if readable:
                chunk = os.read(ready_fd, 4096)
                if not chunk:
                    break
                buf += chunk
    finally:
        os.close(ready_fd)
    answer = buf.decode(errors="replace").strip()
    if answer != "ok":
        log_path = host.data_dir / "wrapper.log"
        tail = log_path.read_text(errors="replace")[-1500:] if log_path.exists() else ""
        raise LabError(
            f"host {host.name} failed to start: {answer or 'no answer'}"
            + (f"\n{tail.strip()}" if tail.strip() else ""),
            hint=(
                f"reported by the host's PID 1 (lab.hostinit; wrapper status {wrapper.poll()}); "
                "the lab was torn down"
            ),
        )


def _record_host(rec: dict[str, Any], host: HostSpec, wrapper_pid: int) -> None:
    children = Path(f"/proc/{wrapper_pid}/task/{wrapper_pid}/children").read_text().split()
    if len(children) != 1:
        raise LabError(f"host {host.name}: expected one init under unshare, got {children}")
    init_pid = int(children[0])
    entry = rec["hosts"][host.name]
    entry.update(
        init_pid=init_pid,
        mnt_handle=str(host.mnt_handle),
        uts_handle=str(host.uts_handle),
        inodes={
            kind: procs.ns_inode(f"/proc/{init_pid}/ns/{kind}") for kind in ("net", "mnt", "pid")
        },
    )
    record.save(rec)


# -------------------------------------------------------------------------- down


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as fh:
        points = [line.split()[4] for line in fh]
    return [p for p in points if p == str(root) or p.startswith(prefix)]


@contextlib.contextmanager
def _pinned(rec: dict[str, Any]) -> Iterator[tuple[dict[str, set[int]], set[int]]]:
    """The lab's namespaces, held open for the whole teardown and its check.

    Yields (inodes by kind, wrapper/init PIDs). Only namespaces this instance names are
    taken: its netns handles (``<prefix>-*`` and the record's), its mount handles (in its
    own state dir) and the PID namespaces of inits found live in those. Held open, none
    of them can be freed and its inode number handed to another lab's new container
    while we match processes against it (lab-notes pitfall 11).
    """
    pins = procs.Pins()
    try:
        names = set(netsetup.lab_netns()) | {h["netns"] for h in rec.get("hosts", {}).values()}
        for name in sorted(names):
            pins.add("net", f"/run/netns/{name}")
        if NS_DIR.is_dir():
            for handle in sorted(NS_DIR.glob("*.mnt")):
                pins.add("mnt", handle)
        wrappers: set[int] = set()
        inits: set[int] = set()
        for host in rec.get("hosts", {}).values():
            for key in ("wrapper_pid", "init_pid"):
                if host.get(key) and pins.holds(int(host[key])):
                    wrappers.add(int(host[key]))
            if host.get("init_pid"):
                inits.add(int(host["init_pid"]))
        # Wrappers/inits of a lab whose record was lost: lab.hostinit processes in its
        # namespaces (never a command line alone).
        for pid in procs.in_namespaces(pins.inodes):
            if "lab.hostinit" in procs.cmdline(pid):
                wrappers.add(pid)
                if procs.cmdline(pid)[:1] != ["unshare"]:
                    inits.add(pid)
        for pid in sorted(inits):
            # Opened first, checked after: a PID reused in between fails the check.
            pins.add("pid", f"/proc/{pid}/ns/pid", still=functools.partial(pins.holds, pid))
        yield pins.inodes, wrappers
    finally:
        pins.close()


def _umount(path: str) -> None:
    if netsetup.run(["umount", path], check=False).returncode != 0:
        netsetup.run(["umount", "-l", path], check=False)


def _teardown(
    rec: dict[str, Any], log: Log, inodes: dict[str, set[int]], wrappers: set[int]
) -> None:
    """Undo the lab. ``inodes``: its namespaces, held open by the caller (`_pinned`)."""
    stubborn = procs.end_all(inodes, wrappers)
    if stubborn:
        log(f"processes that would not die: {stubborn}")
    while _WRAPPERS:  # the ones this process started: reap them
        with contextlib.suppress(subprocess.TimeoutExpired):
            _WRAPPERS.pop().wait(timeout=5)
    # Kubelet mode: the hosts' cgroup roots (containers of pods the namespaces missed are
    # killed there), then the machine's own kernel settings back if no other lab holds them.
    roots = sorted({*rec.get("cgroup_roots", []), *cgroups.lab_roots()})
    if roots:
        cgroups.remove(roots)
    if rec.get("sysctls"):
        restored = sysctls.release(PREFIX, _instance_alive)
        if restored:
            log("host-wide sysctls restored: "
                + ", ".join(f"{k}={v}" for k, v in sorted(restored.items())))
    # Mounts under lab/.state in this namespace: handles, then the handle dir itself.
    for _round in range(4):
        mounts = sorted(set(_mounts_under(STATE)), key=len, reverse=True)
        if not mounts:
            break
        for point in mounts:
            _umount(point)
    names = set(netsetup.lab_netns()) | {h["netns"] for h in rec.get("hosts", {}).values()}
    for name in sorted(names):
        netsetup.del_netns(name)
    for link in netsetup.lab_links():
        if link != BRIDGE:
            netsetup.del_link(link)
    if BRIDGE in netsetup.lab_links():
        netsetup.del_link(BRIDGE)
    if rec.get("forward_rule"):
        netsetup.del_forward_rule(rec["forward_rule"])
    # The safety route goes last: without the bridge the subnet must stay unreachable.
    for subnet in {rec.get("subnet") or DEFAULT_SUBNET, DEFAULT_SUBNET}:
        if netsetup.safety_route_present(ipaddress.IPv4Network(subnet)):
            netsetup.del_safety_route(subnet)
    SUDOERS_FILE.unlink(missing_ok=True)


def _clean_data(rec: dict[str, Any]) -> None:
    """Per-host data goes, so the next `up` is fresh; the client key stays."""
    if _mounts_under(STATE):
        return  # never rm -rf through a mount
    for path in (HOSTS_DIR, NS_DIR):
        shutil.rmtree(path, ignore_errors=True)
    for path in (INVENTORY, KNOWN_HOSTS):
        path.unlink(missing_ok=True)
    # The root-fs mount points (/etc/kubernetes, /var/lib/etcd, ...) are shared by every
    # lab instance: removing one while another lab is up would silently detach that lab's
    # bind mounts (rmdir of a mount point in other namespaces, Linux >= 3.18).
    shared = {target for _src, target in HOST_DIR_BINDS}
    others_up = bool(netsetup.other_labs_netns())
    for created in reversed(rec.get("created_paths", [])):
        if created.startswith("/") and not (others_up and created in shared):
            with contextlib.suppress(OSError):
                Path(created).rmdir()  # only if still empty


def leftovers(rec: dict[str, Any], inodes: dict[str, set[int]]) -> list[str]:
    """Everything of the lab still present (empty list: nothing is left). ``inodes``:
    the lab's namespaces, still held open by the caller (`_pinned`)."""
    left = [f"netns {n}" for n in netsetup.lab_netns()]
    left += [f"link {n}" for n in netsetup.lab_links()]
    for subnet in {rec.get("subnet") or DEFAULT_SUBNET, DEFAULT_SUBNET}:
        left += [
            f"route {json.dumps(r)}"
            for r in netsetup.subnet_routes(ipaddress.IPv4Network(subnet))
        ]
    left += [f"mount {m}" for m in _mounts_under(STATE)]
    left += [
        f"process {pid} {' '.join(procs.cmdline(pid))[:120]}"
        for pid in procs.in_namespaces(inodes)
    ]
    if rec.get("forward_rule") and netsetup.forward_rule_present(rec["forward_rule"]):
        left.append(f"iptables rule {' '.join(rec['forward_rule'])}")
    if SUDOERS_FILE.exists():
        left.append(f"file {SUDOERS_FILE}")
    left += cgroups.leftovers(sorted({*rec.get("cgroup_roots", []), *cgroups.lab_roots()}))
    left += sysctls.leftovers(PREFIX)
    # Container mounts (overlay rootfs, shm, the kubelet's rshared /var/lib/kubelet) live
    # in the hosts' mount namespaces; none may have leaked into the machine's.
    targets = [t for _s, t in HOST_DIR_BINDS + NODE_DIR_BINDS] + ["/run/containerd"]
    left += [f"mount {m}" for t in targets for m in _mounts_under(Path(t))]
    return left


def down(log: Log = _quiet) -> bool:
    """Tear the lab down; False if there was nothing to tear down. Raises on leftovers."""
    require_root()
    with record.locked():
        rec = record.load() or {}
        if not lab_exists(rec or None) and not SUDOERS_FILE.exists() and not any(
            netsetup.safety_route_present(ipaddress.IPv4Network(s))
            for s in {rec.get("subnet") or DEFAULT_SUBNET, DEFAULT_SUBNET}
        ):
            return False
        # The namespaces stay held until the check is done: a freed one's inode number
        # may go to a container another lab instance starts meanwhile, which must not
        # be killed or reported as ours.
        with _pinned(rec) as (inodes, wrappers):
            _teardown(rec, log, inodes, wrappers)
            left = leftovers(rec, inodes)
        if left:
            raise LabError(
                "lab down left things behind:\n  " + "\n  ".join(left),
                hint=f"run `{LAB_CMD} down` again; the record is kept",
            )
        _clean_data(rec)
        record.remove()
    return True


# ------------------------------------------------------------ using a lab that is up


def _host_entry(name: str) -> dict[str, Any]:
    rec = record.load()
    if rec is None or name not in rec.get("hosts", {}):
        known = ", ".join(sorted((rec or {}).get("hosts", {}))) or "none: no lab is up"
        raise LabError(f"no lab host {name!r} (hosts: {known})", exit_code=2)
    entry: dict[str, Any] = rec["hosts"][name]
    return entry


def _live_init(name: str, entry: dict[str, Any]) -> int | None:
    pid = entry.get("init_pid")
    net = procs.ns_inode(f"/run/netns/{entry['netns']}")
    if not pid or net is None or not procs.alive(int(pid)):
        return None
    if procs.ns_inode(f"/proc/{pid}/ns/net") != net:
        return None  # a reused PID, not our host's init
    return int(pid)


def enter_argv(name: str) -> list[str]:
    """The nsenter prefix that puts a command inside host `name` (all its namespaces)."""
    entry = _host_entry(name)
    init = _live_init(name, entry)
    if init is None:
        raise LabError(f"lab host {name} is not running", hint=f"{LAB_CMD} status")
    return ["nsenter", f"--target={init}", "--net", "--mount", "--uts", "--pid",
            "--root", "--wd", "--"]


def host_env() -> dict[str, str]:
    # Clean: etcd/etcdctl read every ETCD_* variable as a flag (pitfall 5).
    return {"PATH": CLEAN_PATH, "HOME": "/root", "LANG": "C.UTF-8"}


def exec_in(
    host: str, argv: list[str], input: bytes | None = None, timeout: float | None = 60
) -> subprocess.CompletedProcess[bytes]:
    require_root()
    return subprocess.run(
        [*enter_argv(host), *argv], input=input, capture_output=True, timeout=timeout,
        env=host_env(), check=False,
    )


def read_host_file(host: str, path: str) -> bytes:
    proc = exec_in(host, ["cat", "--", path])
    if proc.returncode != 0:
        raise LabError(f"{host}:{path}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def link_down(host: str) -> None:
    """Pull host's cable (its veth in the root namespace goes down)."""
    require_root()
    netsetup.set_link(_host_entry(host)["veth"], up=False)


def link_up(host: str) -> None:
    require_root()
    netsetup.set_link(_host_entry(host)["veth"], up=True)


def _host_processes(init: int) -> list[int]:
    pid_ns = procs.ns_inode(f"/proc/{init}/ns/pid")
    return procs.in_namespaces({"pid": {pid_ns}} if pid_ns else {})


def node_mode() -> str:
    """What runs the static pods in the lab that is up: "runner" or "kubelet"."""
    rec = record.load() or {}
    return str(rec.get("node") or "runner")


def status() -> dict[str, Any]:
    """Per host: namespace, init, sshd, and what runs the pods: the runner and its
    status.json, or (kubelet mode) containerd, the kubelet and crictl's pods."""
    require_root()
    rec = record.load()
    if rec is None:
        return {"up": False, "hosts": []}
    kubelet_mode = rec.get("node") == "kubelet"
    hosts = []
    for name, entry in sorted(rec.get("hosts", {}).items()):
        init = _live_init(name, entry)
        sshd = runner = kubelet = containerd = None
        if init is not None:
            for pid in _host_processes(init):
                cmd = procs.cmdline(pid)
                if "/usr/sbin/sshd -D" in " ".join(cmd):  # listener retitles itself
                    sshd = pid
                if "lab.runner" in cmd and "-m" in cmd:
                    runner = pid
                if cmd[:1] == ["kubelet"]:
                    kubelet = pid
                if cmd[:1] == ["containerd"]:
                    containerd = pid
        runner_status: Any = None
        runner_error = None
        if kubelet_mode and init is None:
            runner_error = "host is not running"
        elif kubelet_mode:
            try:
                runner_status = {"pods": cri.pods(lambda h, a: exec_in(h, a, timeout=20), name)}
            except (LabError, ValueError, subprocess.TimeoutExpired) as exc:
                runner_error = f"crictl: {exc}"
        else:
            status_file = HOSTS_DIR / name / "var-lib-kubelet" / Path(
                HOST_RUNNER_STATUS
            ).relative_to("/var/lib/kubelet")
            try:
                runner_status = json.loads(status_file.read_text())
            except FileNotFoundError:
                runner_error = "no status.json yet"
            except (OSError, ValueError) as exc:
                runner_error = f"unreadable status.json: {exc}"
        host = {
            "name": name,
            "address": entry.get("address"),
            "netns": os.path.exists(f"/run/netns/{entry['netns']}"),
            "init_pid": init,
            "sshd_pid": sshd,
            "runner_pid": runner,
            "runner_status": runner_status,
            "runner_status_error": runner_error,
        }
        if kubelet_mode:
            host.update(kubelet_pid=kubelet, containerd_pid=containerd)
        hosts.append(host)
    return {
        "up": bool(rec.get("complete")), "subnet": rec.get("subnet"),
        "node": "kubelet" if kubelet_mode else "runner", "hosts": hosts,
    }


def pod_log(host: str, pod: str) -> bytes:
    """A pod's output: the runner's log file, or (kubelet mode) `crictl logs`."""
    path = pod_log_path(host, pod)
    if node_mode() == "kubelet":
        return cri.logs(lambda h, a: exec_in(h, a), host, pod)
    return read_host_file(host, path)


def pod_log_path(host: str, pod: str) -> str:
    if "/" in pod or pod.startswith("."):
        raise LabError(f"bad pod name {pod!r}", exit_code=2)
    return f"{HOST_POD_LOGS}/{pod}.log"


def runner_status(host: str) -> dict[str, Any]:
    """The host's runner status.json (format: lab/runner/status.py)."""
    data = json.loads(read_host_file(host, HOST_RUNNER_STATUS))
    if not isinstance(data, dict):
        raise LabError(f"{host}: {HOST_RUNNER_STATUS} is not a JSON object")
    return data


def kill_pod_process(host: str, pod: str, signal_name: str = "KILL") -> int:
    """Signal a pod's (first) container process inside `host`; returns its in-host PID.

    `pod` is "namespace/name" or a bare name. The PID in status.json (kubelet mode:
    crictl inspect) is the host's own (its PID namespace), so the kill runs inside the host.
    """
    if node_mode() == "kubelet":
        pid = cri.container_pid(lambda h, a: exec_in(h, a), host, pod)
        proc = exec_in(host, ["kill", f"-{signal_name}", str(pid)])
        if proc.returncode != 0:
            raise LabError(f"{host}: kill {pid}: {proc.stderr.decode(errors='replace').strip()}")
        return pid
    pods = runner_status(host).get("pods", {})
    entry = pods.get(pod) or next(
        (p for key, p in pods.items() if key.split("/", 1)[-1] == pod), None
    )
    if not entry or not entry.get("pid"):
        raise LabError(f"{host}: pod {pod!r} has no running process", exit_code=1)
    pid = int(entry["pid"])
    proc = exec_in(host, ["kill", f"-{signal_name}", str(pid)])
    if proc.returncode != 0:
        raise LabError(f"{host}: kill {pid}: {proc.stderr.decode(errors='replace').strip()}")
    return pid
