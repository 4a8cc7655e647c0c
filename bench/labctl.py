"""Driving the namespace lab for the benchmarks: lab up/down, a timed `bootstrap init` and
`verify`, bare SSH sessions (the floor is bench/floor.py).

Honours LAB_INSTANCE like every lab command (lab.config reads it at import). Root only.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.render import bootstrap_argv, child_env

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


def run_verify(inventory: Path, state_dir: Path) -> float:
    """Wall time of `bootstrap verify` (a subprocess, as the user runs it); it must pass."""
    argv = [*bootstrap_argv(), "verify", "--inventory", str(inventory), "--state-dir",
            str(state_dir)]
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=child_env(), check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"bootstrap verify exited {proc.returncode}:\n{proc.stdout[-3000:]}")
    return elapsed


def run_init(inventory: Path, state_dir: Path, *, components: str = "") -> InitRun:
    """`bootstrap init` as the user runs it (a subprocess), output lines timestamped."""
    argv = [
        *bootstrap_argv(),
        "init",
        "--inventory",
        str(inventory),
        "--state-dir",
        str(state_dir),
    ]
    if components:  # default: all four
        argv += ["--components", components]
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
