"""The kubelet-mode lab next to the runner-mode lab: `lab up`, `init`, the re-run, and what
each node costs (memory and CPU per host), interleaved run by run.

One run = a fresh lab of each mode (`lab up --node runner|kubelet`, torn down after):
timed `lab up`, timed `bootstrap init` (whole process), the zero-change re-run; in
kubelet mode also the time from init's exit until the 12 mirror pods are Running in the
API; then, with the control plane converged and idle, each host's resident memory and
CPU over a 10 s window, split into "node" (kubelet mode: kubelet, containerd, shims,
pause, lab.node; runner mode: the lab runner) and "pods" (etcd, kube-*), from /proc.
RSS counts shared pages once per process (an upper bound).

    python -m bench.kubelet [--runs N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from bench import labctl
from bench.stats import Report, markdown

WINDOW = 10.0  # seconds of idle CPU sampled per run
NODE = {"kubelet", "containerd", "containerd-shim-runc-v2", "pause", "lab.node", "lab.runner"}
PODS = {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}


if TYPE_CHECKING:
    from lab.api import LabInfo


@contextlib.contextmanager
def lab(node: str) -> Iterator[tuple[LabInfo, float]]:
    from lab import api

    try:
        started = time.monotonic()
        info = api.up(masters=3, node=node)
        yield info, time.monotonic() - started
    finally:
        api.down()


def _name(pid: int) -> str:
    from lab import procs

    cmd = procs.cmdline(pid)
    if not cmd:
        return "?"
    if "-m" in cmd:  # python -m lab.node / lab.runner / lab.hostinit
        return cmd[cmd.index("-m") + 1]
    try:  # the runner execs images/<repository>/<tag>: the link's target names the program
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return os.path.basename(cmd[0])


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def host_costs(window: float = WINDOW) -> dict[str, dict[str, float]]:
    """host -> {node_mib, pods_mib, node_cpu, pods_cpu} (CPU in % of one core)."""
    from lab import procs, record

    rec = record.load() or {}
    groups: dict[str, dict[str, list[int]]] = {}
    for name, entry in rec.get("hosts", {}).items():
        net = procs.ns_inode(f"/proc/{entry['init_pid']}/ns/net")
        pids = procs.in_namespaces({"net": {net}} if net else {})
        groups[name] = {
            "node": [p for p in pids if _name(p) in NODE],
            "pods": [p for p in pids if _name(p) in PODS],
        }
    before = {p: _cpu_ticks(p) for g in groups.values() for ps in g.values() for p in ps}
    time.sleep(window)
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, dict[str, float]] = {}
    for host, g in groups.items():
        costs: dict[str, float] = {}
        for kind, pids in g.items():
            costs[f"{kind}_mib"] = sum(_rss_kib(p) for p in pids) / 1024
            used = sum(_cpu_ticks(p) - before.get(p, 0) for p in pids) / tick
            costs[f"{kind}_cpu"] = 100 * used / window
        out[host] = costs
    return out


def _kubectl(info: LabInfo, admin: Path, *args: str) -> str:
    kubectl = info.bin_dir / "kubectl"
    proc = subprocess.run([str(kubectl), "--kubeconfig", str(admin), *args],
                          capture_output=True, text=True, timeout=30, check=False)
    return proc.stdout


def mirror_pods_running(info: LabInfo, admin: Path, limit: float = 180) -> float:
    started = time.monotonic()
    while time.monotonic() - started < limit:
        out = _kubectl(info, admin, "get", "pods", "-n", "kube-system", "-o", "json")
        try:
            items = json.loads(out or "{}").get("items") or []
        except ValueError:
            items = []
        if sum(p["status"].get("phase") == "Running" for p in items) >= 12:
            return time.monotonic() - started
        time.sleep(0.5)
    raise RuntimeError(f"12 mirror pods not Running within {limit:.0f} s")


def bench_modes(report: Report, runs: int = 3) -> None:
    series = {
        node: {
            "up": report.new(f"node.{node}.up", f"`lab up --node {node}`, 3 hosts"),
            "init": report.new(f"node.{node}.init", f"`bootstrap init`, 3 masters, {node} mode"),
            "rerun": report.new(f"node.{node}.rerun", f"zero-change re-run, {node} mode"),
            "node_mib": report.new(f"node.{node}.node_mib",
                                   f"{node} mode: node processes' RSS per host", unit="MiB"),
            "pods_mib": report.new(f"node.{node}.pods_mib",
                                   f"{node} mode: control-plane pods' RSS per host", unit="MiB"),
            "node_cpu": report.new(f"node.{node}.node_cpu",
                                   f"{node} mode: node processes' idle CPU per host",
                                   unit="% core"),
            "pods_cpu": report.new(f"node.{node}.pods_cpu",
                                   f"{node} mode: control-plane pods' idle CPU per host",
                                   unit="% core"),
        }
        for node in ("runner", "kubelet")
    }
    mirror = report.new("node.kubelet.mirror", "kubelet mode: init exit → 12 mirror pods Running")
    for i in range(runs):
        order = ("runner", "kubelet") if i % 2 == 0 else ("kubelet", "runner")
        for node in order:
            s = series[node]
            with tempfile.TemporaryDirectory(prefix="bench-node-") as tmp, lab(node) as (info, up):
                s["up"].add(up)
                state = Path(tmp) / "state"
                first = labctl.run_init(info.inventory, state)
                s["init"].add(first.seconds)
                if node == "kubelet":
                    mirror.add(mirror_pods_running(info, state / "admin.conf"))
                again = labctl.run_init(info.inventory, state)
                if "0 changed" not in again.output:
                    raise RuntimeError(f"the re-run changed something:\n{again.output[-3000:]}")
                s["rerun"].add(again.seconds)
                for costs in host_costs().values():
                    for key in ("node_mib", "pods_mib", "node_cpu", "pods_cpu"):
                        s[key].add(costs[key])
            print(f"  {node} run {i + 1}/{runs}: up {up:.2f}s, init {first.seconds:.2f}s, "
                  f"re-run {again.seconds:.2f}s, node {s['node_mib'].samples[-1]:.0f} MiB/host",
                  flush=True)
    k, r = series["kubelet"]["init"], series["runner"]["init"]
    if k.samples and r.samples:  # no target: what the real kubelet costs, measured
        print(f"  init kubelet/runner: {k.median / r.median:.2f}×", flush=True)


def main() -> int:
    labctl.require_root()
    parser = argparse.ArgumentParser(prog="python -m bench.kubelet")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    report = Report()
    bench_modes(report, args.runs)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
