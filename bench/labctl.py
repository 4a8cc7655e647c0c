"""Driving the namespace lab for the benchmarks: lab up/down, a timed `bootstrap init`,
the floor (the same etcd members started directly), bare SSH sessions.

Honours LAB_INSTANCE like every lab command (lab.config reads it at import). Root only.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.render import bootstrap_argv, child_env

MANIFEST = "/etc/kubernetes/manifests/etcd.yaml"
PARKED = "/etc/kubernetes/etcd.yaml.bench-parked"
TIME_BIN = Path("/usr/bin/time")
SUMMARY = re.compile(r"\[summary\] time per phase: (.*)$")
PHASE = re.compile(r"^(\S+) ([0-9.]+)s")


@contextlib.contextmanager
def lab(masters: int) -> Iterator[object]:
    """A fresh lab for one run; always torn down, also when the run fails."""
    from lab import api

    try:
        yield api.up(masters=masters)
    finally:
        api.down()


def parse_phases(text: str) -> dict[str, float]:
    """`[summary] time per phase: preflight 0.88s, certs 1.14s, ...` -> {name: seconds}."""
    for line in text.splitlines():
        m = SUMMARY.search(line)
        if m:
            out = {}
            for part in m.group(1).split(", "):
                pm = PHASE.match(part.strip())
                if pm:
                    out[pm.group(1)] = float(pm.group(2))
            return out
    return {}


@dataclass
class InitRun:
    seconds: float
    rss_mib: float | None
    phases: dict[str, float]
    push_to_quorum: float | None  # first "[etcd] <host>: ... changed" line -> quorum line
    output: str = field(repr=False, default="")


def run_init(inventory: Path, state_dir: Path, *, components: str = "etcd") -> InitRun:
    """`bootstrap init` as the user runs it (a subprocess), output lines timestamped."""
    argv = [
        *bootstrap_argv(),
        "init",
        "--inventory",
        str(inventory),
        "--state-dir",
        str(state_dir),
        "--components",
        components,
    ]
    with tempfile.NamedTemporaryFile(prefix="bench-rss-", delete=False) as fh:
        rss_file = Path(fh.name)
    if TIME_BIN.exists():
        argv = [str(TIME_BIN), "-f", "%M", "-o", str(rss_file), *argv]
    env = child_env(PYTHONUNBUFFERED="1")
    lines: list[tuple[float, str]] = []
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append((time.perf_counter(), line.rstrip("\n")))
    rc = proc.wait()
    elapsed = time.perf_counter() - started
    output = "\n".join(text for _t, text in lines)
    if rc != 0:
        raise RuntimeError(f"bootstrap init exited {rc}:\n{output[-4000:]}")
    rss = None
    with contextlib.suppress(OSError, ValueError):
        rss = int(rss_file.read_text().split()[-1]) / 1024  # KiB -> MiB
    rss_file.unlink(missing_ok=True)
    push = next(
        (t for t, text in lines if text.startswith("[etcd] ") and " changed (" in text), None
    )
    quorum = next((t for t, text in lines if text.startswith("[etcd] etcd quorum:")), None)
    return InitRun(
        seconds=elapsed,
        rss_mib=rss,
        phases=parse_phases(output),
        push_to_quorum=(quorum - push) if push is not None and quorum is not None else None,
        output=output,
    )


# --- the floor: etcd started directly inside the hosts ------------------------------------

# Runs inside a lab host (system python3, stdlib only): wait for the agreed wall-clock
# start, start etcd, poll /health on the metrics port until it says true, report both
# times, keep etcd running until the parent closes stdin (so no member leaves the cluster
# while the others still wait), then stop it.
LAUNCHER = r"""
import json, subprocess, sys, time, urllib.request
argv, start_at = json.loads(sys.argv[1]), float(sys.argv[2])
time.sleep(max(0.0, start_at - time.time()))
log = open("/var/log/bench-etcd.log", "ab")
t0 = time.time()
p = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
healthy = None
deadline = t0 + 60
while time.time() < deadline and p.poll() is None:
    try:
        with urllib.request.urlopen("http://127.0.0.1:2381/health", timeout=1) as r:
            if r.status == 200 and json.loads(r.read()).get("health") == "true":
                healthy = time.time()
                break
    except Exception:
        pass
    time.sleep(0.01)
print(json.dumps({"start": t0, "healthy": healthy, "exit": p.poll()}), flush=True)
sys.stdin.read()
p.terminate()
try:
    p.wait(20)
except subprocess.TimeoutExpired:
    p.kill()
    p.wait()
"""


def etcd_command(host: str) -> list[str]:
    """The etcd command line from the host's rendered manifest, binary from the lab's bin."""
    import yaml

    from lab import api
    from lab.config import HOST_BIN_DIR

    doc = yaml.safe_load(api.read_host_file(host, MANIFEST))
    container = doc["spec"]["containers"][0]
    command = [str(c) for c in container["command"]] + [str(a) for a in container.get("args", [])]
    return [f"{HOST_BIN_DIR}/{Path(command[0]).name}", *command[1:]]


def stop_pods(hosts: list[str], timeout: float = 30.0) -> None:
    """Park the etcd manifest outside the watched dir; wait until the runner stopped etcd."""
    from lab import api

    for host in hosts:
        proc = api.exec_in(host, ["mv", MANIFEST, PARKED])
        if proc.returncode != 0:
            raise RuntimeError(f"{host}: cannot park {MANIFEST}: {proc.stderr!r}")
    deadline = time.monotonic() + timeout
    for host in hosts:
        while "kube-system/etcd" in api.runner_status(host).get("pods", {}):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{host}: the runner did not stop etcd in {timeout}s")
            time.sleep(0.2)


def wipe_data(hosts: list[str]) -> None:
    from lab import api

    for host in hosts:
        proc = api.exec_in(host, ["sh", "-c", "rm -rf /var/lib/etcd/member /var/lib/etcd/*"])
        if proc.returncode != 0:
            raise RuntimeError(f"{host}: cannot wipe /var/lib/etcd: {proc.stderr!r}")


def floor_run(commands: dict[str, list[str]], first_ahead: float) -> float:
    """Start the members directly (the first ``first_ahead`` s early); seconds to quorum:
    first process start -> every member's /health true."""
    from lab import api

    hosts = sorted(commands)
    start_at = time.time() + 0.4  # time for nsenter + python to start in every host
    procs = []
    try:
        for i, host in enumerate(hosts):
            at = start_at + (0.0 if i == 0 else first_ahead)
            procs.append(
                subprocess.Popen(
                    [
                        *api.enter_argv(host),
                        "python3",
                        "-c",
                        LAUNCHER,
                        json.dumps(commands[host]),
                        repr(at),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    env=api.host_env(),
                    text=True,
                )
            )
        reports = []
        for host, proc in zip(hosts, procs, strict=True):
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{host}: floor launcher died without a report")
            reports.append(json.loads(line))
    finally:
        for proc in procs:
            with contextlib.suppress(Exception):
                assert proc.stdin is not None
                proc.stdin.close()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if any(r["healthy"] is None for r in reports):
        raise RuntimeError(f"floor: a member never became healthy: {reports}")
    return max(r["healthy"] for r in reports) - min(r["start"] for r in reports)


# --- baseline: bare SSH sessions ----------------------------------------------------------


def ssh_true_parallel(info: object) -> float:
    """Wall time of one parallel `ssh HOST true` per master (the ssh binary, lab key)."""
    hosts = info.hosts  # type: ignore[attr-defined]
    argv = [
        "ssh",
        "-i",
        str(info.ssh_key),  # type: ignore[attr-defined]
        "-o",
        f"UserKnownHostsFile={info.known_hosts}",  # type: ignore[attr-defined]
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-F",
        "/dev/null",
    ]
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [*argv, f"root@{h.address}", "true"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        for h in hosts
    ]
    errors = [p.communicate()[1] for p in procs]
    elapsed = time.perf_counter() - started
    bad = [(h.name, e) for h, p, e in zip(hosts, procs, errors, strict=True) if p.returncode]
    if bad:
        raise RuntimeError(f"ssh true failed: {bad}")
    return elapsed


def paramiko_true_parallel(info: object) -> float:
    """The same with paramiko (what the tool uses), threads, in this process."""
    import paramiko

    def one(address: str) -> None:
        client = paramiko.SSHClient()
        client.load_host_keys(str(info.known_hosts))  # type: ignore[attr-defined]
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(
            address,
            username="root",
            key_filename=str(info.ssh_key),  # type: ignore[attr-defined]
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
        )
        try:
            _i, out, _e = client.exec_command("true")
            out.channel.recv_exit_status()
        finally:
            client.close()

    from concurrent.futures import ThreadPoolExecutor

    addresses = [h.address for h in info.hosts]  # type: ignore[attr-defined]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(addresses)) as pool:
        list(pool.map(one, addresses))  # re-raises the first error
    return time.perf_counter() - started


def require_root() -> None:
    import os

    if os.geteuid() != 0:
        sys.exit("bench: the lab benchmarks need root (namespace lab); run as root")
