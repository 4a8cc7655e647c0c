"""Helpers for the fault-injection and security suites on the namespace lab.

Everything here acts on the lab of this process's LAB_INSTANCE only (lab.config reads it):
host file trees read through ``lab.api.exec_in``, the runner's status.json, the host's
sshd session processes, its root-namespace veth (rate limiting with ``tc tbf``), and the
bootstrap CLI run as a real subprocess (``python -m bootstrap``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab import api
from lab.api import LabInfo
from lab.config import PREFIX, LabError

REPO = Path(__file__).resolve().parent.parent
WATCHED = ("/etc/kubernetes", "/var/lib/etcd")  # what "nothing written" compares
TEMP_MARK = ".bootstrap-tmp-"  # the transport's staging dot-files beside their target
STAGING_GLOB = "/tmp/bootstrap-stage-*"  # the sudo path's private staging dirs
BOOTSTRAP_TIMEOUT = 600.0


# --- the CLI as a subprocess ---------------------------------------------------------------


def bootstrap(*args: str, timeout: float = BOOTSTRAP_TIMEOUT) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "bootstrap", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    print(f"$ bootstrap {' '.join(args)}  -> {proc.returncode}\n{proc.stdout}{proc.stderr}")
    return proc


def assert_no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text, text[-3000:]


@dataclass
class Running:
    """`bootstrap ...` in the background; stdout+stderr merged and read line by line, so a
    test can act when the run reaches a given point (a fault injected mid-run)."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    _queue: queue.Queue[str | None] = field(default_factory=queue.Queue)

    @classmethod
    def start(cls, *args: str) -> Running:
        proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "bootstrap", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
        )
        running = cls(proc)
        threading.Thread(target=running._pump, daemon=True).start()
        return running

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:  # closed at the end (an open pipe is a ResourceWarning)
            for line in self.proc.stdout:
                self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 120.0) -> str:
        """Block until a line matches ``pattern`` (regex); fail if the run ends first."""
        regex = re.compile(pattern)
        for line in self.lines:
            if regex.search(line):
                return line
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                self._queue.put(None)
                raise AssertionError(
                    f"bootstrap ended before printing /{pattern}/:\n{self.output()}"
                )
            self.lines.append(line)
            if regex.search(line):
                return line
        raise AssertionError(f"no line matched /{pattern}/ within {timeout:g} s:\n{self.output()}")

    def finish(self, timeout: float = BOOTSTRAP_TIMEOUT) -> int:
        code = self.proc.wait(timeout=timeout)
        while True:
            try:
                line = self._queue.get(timeout=5)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
        print(self.output())
        return code

    def output(self) -> str:
        return "".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


# --- host state ------------------------------------------------------------------------------


def host_sh(host: str, script: str, timeout: float = 60) -> str:
    proc = api.exec_in(host, ["sh", "-c", script], timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{host}: {script!r} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode(errors="replace")


Tree = dict[str, tuple[str, str]]  # path -> (kind + mode + owner, sha256 or "")
# etcd's own files (db, WAL segments and their preallocated .tmp files, snapshots): a
# running member rewrites them all the time once an apiserver uses it (leases, events), so
# "nothing written" covers the data dir and member/ themselves, not what etcd keeps inside.
ETCD_OWN = "/var/lib/etcd/member/"


def host_tree(host: str, roots: Sequence[str] = WATCHED) -> Tree:
    """Every entry under ``roots``: type, mode, owner, and sha256 for regular files."""
    listed = " ".join(roots)
    meta = host_sh(
        host, f"for d in {listed}; do [ -e $d ] && find $d -printf '%y %m %U:%G %p\\n'; done; true"
    )
    sums = host_sh(
        host,
        f"for d in {listed}; do [ -e $d ] && find $d -type f -exec sha256sum {{}} +; done; true",
    )
    digest = {}
    for line in sums.splitlines():
        value, _, path = line.partition("  ")
        digest[path] = value
    tree: Tree = {}
    for line in meta.splitlines():
        kind, mode, owner, path = line.split(" ", 3)
        if path.startswith(ETCD_OWN):
            continue
        tree[path] = (f"{kind} {mode} {owner}", digest.get(path, ""))
    return tree


def trees(info: LabInfo) -> dict[str, Tree]:
    return {h.name: host_tree(h.name) for h in info.hosts}


def tree_changes(before: dict[str, Tree], after: dict[str, Tree]) -> list[str]:
    changes = []
    for host in sorted(set(before) | set(after)):
        b, a = before.get(host, {}), after.get(host, {})
        for path in sorted(set(b) | set(a)):
            if b.get(path) != a.get(path):
                changes.append(f"{host}:{path}: {b.get(path)} -> {a.get(path)}")
    return changes


def temp_leftovers(host: str) -> list[str]:
    """The transport's staging files left on a host (dot-temps and sudo staging dirs)."""
    out = host_sh(
        host,
        f"find /etc/kubernetes -name '*{TEMP_MARK}*' 2>/dev/null; "
        f"ls -d {STAGING_GLOB} 2>/dev/null; true",
    )
    return [line for line in out.splitlines() if line.strip()]


def runner_status(host: str, timeout: float = 30.0) -> dict[str, Any]:
    """The runner's status.json, waiting for its first write on a host just started."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return api.runner_status(host)
        except LabError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def parse_failure_count(host: str) -> int:
    return int(runner_status(host).get("parseFailureCount", 0))


def parse_failures(info: LabInfo) -> dict[str, int]:
    return {h.name: parse_failure_count(h.name) for h in info.hosts}


def pods(host: str) -> dict[str, dict[str, Any]]:
    status = runner_status(host)
    return {key.split("/", 1)[-1]: pod for key, pod in status.get("pods", {}).items()}


def wait_until(what: str, check: Any, timeout: float = 60.0, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")


def wipe_hosts(info: LabInfo) -> None:
    """Back to a never-bootstrapped host: manifests removed (the runner stops the pods),
    then /etc/kubernetes and /var/lib/etcd emptied. The manifests dir stays as the lab
    made it (the kubelet package's dir)."""
    for h in info.hosts:
        host_sh(h.name, "rm -f /etc/kubernetes/manifests/* /etc/kubernetes/manifests/.[!.]*")
    for h in info.hosts:
        wait_until(f"{h.name}: runner stopped every pod", lambda n=h.name: not pods(n), 60)
    for h in info.hosts:
        host_sh(
            h.name,
            "find /etc/kubernetes -mindepth 1 -maxdepth 1 ! -name manifests -exec rm -rf {} +; "
            "find /var/lib/etcd -mindepth 1 -maxdepth 1 -exec rm -rf {} +; "
            f"rm -rf {STAGING_GLOB}",
        )


def desired_trees(inventory: Path, state_dir: Path) -> dict[str, dict[str, Any]]:
    """host -> path -> FileSpec, from the same state dir the CLI uses."""
    from bootstrap.inventory import load
    from bootstrap.manifests.plan import build_plans
    from bootstrap.pki import ensure_pki

    inv = load(inventory)
    plans = build_plans(inv, ensure_pki(inv, state_dir))
    return {name: dict(plan.tree) for name, plan in plans.items()}


def partial_files(info: LabInfo, desired: dict[str, dict[str, Any]]) -> list[str]:
    """Files of ours on the hosts whose content is neither absent nor exactly the desired
    one: what an interrupted, non-atomic write would leave."""
    bad = []
    for h in info.hosts:
        tree = host_tree(h.name, ("/etc/kubernetes",))
        for path, spec in desired[h.name].items():
            entry = tree.get(path)
            if entry is not None and entry[1] != spec.sha256:
                bad.append(f"{h.name}:{path} ({entry})")
    return bad


# --- faults ----------------------------------------------------------------------------------


def sshd_session_pids(host: str) -> list[int]:
    """Per-connection sshd processes ('sshd: root [priv]', 'sshd: root@notty'), never the
    listener ('sshd: /usr/sbin/sshd -D ...')."""
    out = api.exec_in(host, ["pgrep", "-f", r"^sshd: [a-z]"]).stdout.decode()
    return [int(p) for p in out.split()]


def kill_sshd_sessions(host: str) -> list[int]:
    pids = sshd_session_pids(host)
    if pids:
        api.exec_in(host, ["kill", "-KILL", *map(str, pids)])
    return pids


def sshd_listener_pid(host: str) -> int:
    out = api.exec_in(host, ["pgrep", "-f", r"^sshd: /usr/sbin/sshd -D"]).stdout.decode().split()
    if len(out) != 1:
        out = api.exec_in(host, ["pgrep", "-f", r"^/usr/sbin/sshd -D"]).stdout.decode().split()
    assert len(out) == 1, f"{host}: expected one sshd listener, got {out}"
    return int(out[0])


def veth(host: str) -> str:
    return f"{PREFIX}-{host}"


@contextlib.contextmanager
def slow_link(host: str, rate: str = "160kbit") -> Iterator[None]:
    """Rate-limit traffic towards ``host`` (tbf on its root-namespace veth), so a push to
    it takes seconds and a fault lands in the middle of it. Always removed."""
    dev = veth(host)
    subprocess.run(
        [
            "tc",
            "qdisc",
            "add",
            "dev",
            dev,
            "root",
            "tbf",
            "rate",
            rate,
            "burst",
            "4kb",
            "latency",
            "2s",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield
    finally:
        subprocess.run(["tc", "qdisc", "del", "dev", dev, "root"], check=False, capture_output=True)


@contextlib.contextmanager
def link_down(host: str) -> Iterator[None]:
    api.link_down(host)
    try:
        yield
    finally:
        api.link_up(host)


@contextlib.contextmanager
def tmpfs_over(host: str, path: str, size: str) -> Iterator[None]:
    """A tiny filesystem over ``path`` inside the host's mount namespace (what sshd sees)."""
    host_sh(host, f"mount -t tmpfs -o size={size},mode=0755 bootstrap-fault-tmpfs {path}")
    try:
        yield
    finally:
        api.exec_in(host, ["umount", path])


def interrupt(running: Running) -> None:
    running.proc.send_signal(signal.SIGINT)


# --- inventories and state --------------------------------------------------------------------


def inventory_copy(info: LabInfo, target: Path, **ssh: Any) -> Path:
    """The lab inventory with ssh settings overridden (e.g. user/sudo/connectTimeout)."""
    doc = yaml.safe_load(info.inventory.read_text())
    doc.setdefault("ssh", {}).update(ssh)
    target.write_text(yaml.safe_dump(doc, sort_keys=False))
    return target


def copy_state(state: Path, target: Path) -> Path:
    shutil.copytree(state, target, symlinks=True)
    return target


def converge(inventory: Path, state: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """init until converged: the run succeeds, and a second run changes nothing."""
    first = bootstrap(
        "init", "-i", str(inventory), "--state-dir", str(state), *extra
    )
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert_no_traceback(first)
    second = bootstrap(
        "init", "-i", str(inventory), "--state-dir", str(state), *extra
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert "init: 0 changed" in second.stdout, second.stdout[-3000:]
    return first


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def env_without(name: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != name}
