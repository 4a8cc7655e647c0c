"""A lab host's PID 1: builds the host's mount view, starts sshd and the runner, reaps.

Started by `lab up` as
    nsenter --net=/run/netns/bslab-mN -- unshare --mount=H.mnt --uts=H.uts --pid --fork
        --kill-child --mount-proc --propagation private -- python -m lab.hostinit CONFIG
so it runs in the host's fresh mount/UTS/PID namespaces (lab-notes pitfalls 2-4, 9).
It reports "ok" or "error: ..." on the inherited ready pipe, then stays alive as the
namespace's init: when it dies the kernel kills every process of the host.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)


class SetupError(Exception):
    pass


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    rc = _libc.mount(
        source.encode(), target.encode(), fstype.encode() if fstype else None,
        ctypes.c_ulong(flags), data.encode() if data else None,
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise SetupError(f"mount {source} on {target} ({fstype or 'bind'}): {os.strerror(err)}")


def _umount_lazy(target: str) -> None:
    if _libc.umount2(target.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (22, 2):  # EINVAL: not a mount point; ENOENT: gone
            raise SetupError(f"umount {target}: {os.strerror(err)}")


def _mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as fh:
        return [line.split()[4] for line in fh]


def bind(source: str, target: str, readonly: bool = False) -> None:
    _mount(source, target, None, MS_BIND | MS_REC, None)
    if readonly:
        _mount("none", target, None, MS_REMOUNT | MS_BIND | MS_RDONLY, None)


def tmpfs(target: str, mode: str, extra: int = 0) -> None:
    _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | extra, f"mode={mode},size=64m")


def private_tmp(keep_visible: list[str]) -> None:
    """A private /tmp for the host, with any kept path under /tmp bound back in place.

    The kept paths (the repo and its venv, whose python runs the lab kubelet) are parked
    under /run first, because the new tmpfs hides everything below /tmp.
    """
    under_tmp = [p for p in keep_visible if p == "/tmp" or p.startswith("/tmp/")]
    parked = []
    for i, path in enumerate(under_tmp):
        holder = f"/run/bslab-keep/{i}"
        os.makedirs(holder, mode=0o700, exist_ok=True)
        bind(path, holder)
        parked.append((holder, path))
    tmpfs("/tmp", "1777")
    for holder, path in parked:
        os.makedirs(path, mode=0o755, exist_ok=True)
        bind(holder, path)


def build_mounts(cfg: dict[str, Any]) -> None:
    # Pitfall 4: this namespace copied every mount, including other hosts' namespace
    # handles and /run/netns, which would pin their namespaces. Drop them.
    for path in (cfg["ns_dir"], "/run/netns"):
        for _ in range(8):  # stacked mounts (ip netns binds /run/netns onto itself)
            if path not in _mount_points():
                break
            _umount_lazy(path)
    # sysfs shows the mounting netns' devices: remount it for this host.
    cgroups = cgroup_mounts() if cfg.get("node") else []
    _umount_lazy("/sys")
    _mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV, None)
    if cfg.get("node"):
        # The real kubelet and runc need the cgroup hierarchies the new sysfs hides. The
        # same options mount the same (machine-wide) hierarchy again: each host keeps
        # its pods under its own cgroupRoot in it.
        tmpfs("/sys/fs/cgroup", "0755")
        for target, fstype, options in cgroups:
            os.makedirs(target, mode=0o755, exist_ok=True)
            _mount("cgroup", target, fstype, MS_NOSUID | MS_NODEV, options or None)

    tmpfs("/run", "0755")
    for d in ("/run/sshd", cfg["host_bin_dir"]):
        os.makedirs(d, mode=0o755, exist_ok=True)
    # Every bind source is resolved before the lab state is hidden below.
    bind(cfg["bin_dir"], cfg["host_bin_dir"], readonly=True)
    for source, target in cfg["dir_binds"] + cfg["file_binds"]:
        bind(source, target)
    if cfg.get("node"):
        # The node's programs (kubelet, containerd, ctr, crictl, runc) on every PATH,
        # sshd's and sudo's included, as a package would put them; the machine's
        # /usr/local/sbin is hidden inside the host.
        bind(cfg["node"]["bin_dir"], "/usr/local/sbin", readonly=True)
    private_tmp(cfg.get("keep_visible", []))
    # The lab's state (client key, other hosts' dirs) and the tool's PKI: not for hosts.
    for hidden in cfg["hidden"]:
        tmpfs(hidden, "0700", MS_RDONLY)


def cgroup_mounts() -> list[tuple[str, str, str]]:
    """(mount point, fstype, options) of every cgroup hierarchy under /sys/fs/cgroup."""
    found = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            fields = line.split()
            sep = fields.index("-")
            point, fstype, super_opts = fields[4], fields[sep + 1], fields[sep + 3]
            if fstype in ("cgroup", "cgroup2") and point.startswith("/sys/fs/cgroup"):
                options = ",".join(o for o in super_opts.split(",") if o not in ("rw", "ro"))
                found.append((point, fstype, options))
    return found


def wait_listening(address: str, port: int, proc: subprocess.Popen[bytes], log: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = Path(log).read_text(errors="replace")[-2000:] if Path(log).exists() else ""
            raise SetupError(f"sshd exited with {proc.returncode}: {tail.strip()}")
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise SetupError(f"sshd not listening on {address}:{port} after 10 s")


def start_sshd(cfg: dict[str, Any]) -> None:
    log = cfg["sshd_log"]
    proc = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-E", log], env={}, cwd="/",
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_listening(cfg["address"], 22, proc, log)


def start_runner(cfg: dict[str, Any]) -> None:
    runner = cfg.get("runner")
    if not runner:
        return
    with open(runner["log"], "ab") as log:
        subprocess.Popen(
            runner["argv"], env=runner["env"], cwd="/",
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def start_node(cfg: dict[str, Any]) -> None:
    """Kubelet mode: lab.node starts containerd and the kubelet; wait for its "ok"."""
    node = cfg.get("node")
    if not node:
        return
    read_fd, write_fd = os.pipe()
    with open(node["log"], "ab") as log:
        proc = subprocess.Popen(
            [*node["argv"], json.dumps({**node["config"], "ready_fd": write_fd})],
            env=node["env"], cwd="/", stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True, pass_fds=(write_fd,),
        )
    os.close(write_fd)
    answer = b""
    deadline = time.monotonic() + node["timeout"]
    with os.fdopen(read_fd, "rb") as pipe:
        while b"\n" not in answer and time.monotonic() < deadline:
            ready, _, _ = select.select([pipe], [], [], 0.5)
            if ready:
                chunk = os.read(pipe.fileno(), 4096)
                if not chunk:
                    break
                answer += chunk
            elif proc.poll() is not None:
                break
    text = answer.decode(errors="replace").strip()
    if text != "ok":
        raise SetupError(
            f"node (containerd + kubelet) not ready: {text or 'no answer'}; see "
            f"{node['log']}, /var/log/containerd.log, /var/log/kubelet.log in the host"
        )


def reap_forever() -> None:
    # As the namespace's init every orphan of the host lands here (pitfall 10).
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            time.sleep(1)
        except InterruptedError:
            continue


def main() -> int:
    cfg = json.loads(sys.argv[1])
    ready = os.fdopen(cfg["ready_fd"], "w")
    try:
        if os.getpid() != 1:
            raise SetupError(f"hostinit must be PID 1 of the host, is {os.getpid()}")
        socket.sethostname(cfg["name"])
        build_mounts(cfg)
        start_sshd(cfg)
        start_runner(cfg)
        start_node(cfg)
    except Exception as exc:  # report any failure to `lab up`, which tears down
        ready.write(f"error: {type(exc).__name__}: {exc}\n")
        ready.close()
        return 1
    ready.write("ok\n")
    ready.close()
    # Keep default dispositions out of the way: init ignores signals it has no handler
    # for anyway; `lab down` ends a host with SIGKILL to the unshare wrapper.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.close(0)
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (1, 2):
        os.dup2(devnull, fd)
    reap_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
