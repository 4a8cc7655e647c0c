"""The cgroups of a kubelet-mode lab: one cgroupRoot per host in the machine's hierarchies.

The lab hosts have no cgroup namespace: each host's kubelet (cgroupDriver cgroupfs) puts
its pods under ``/<prefix>-<host>`` (``cgroupRoot``) in every hierarchy of the machine.
``lab down`` kills what is left in them and removes them, deepest first, and proves
none is left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from lab.config import PREFIX, LabError

CGROUP_FS = Path("/sys/fs/cgroup")


def host_root(host: str) -> str:
    return f"/{PREFIX}-{host}"


def machine_is_v1() -> bool:
    """cgroup v1 hierarchies (possibly beside an empty cgroup2 "unified" mount)."""
    return not (CGROUP_FS / "cgroup.controllers").is_file()


def hierarchies() -> list[Path]:
    """Mount points of the machine's cgroup hierarchies (v1 and v2)."""
    found = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            if fstype in ("cgroup", "cgroup2") and fields[4].startswith(str(CGROUP_FS)):
                found.append(Path(fields[4]))
    return found


def check_machine() -> None:
    """The kubelet needs these v1 controllers (or cgroup v2 with controllers)."""
    if not machine_is_v1():
        return
    mounted = {p.name for p in hierarchies()}
    missing = [c for c in ("cpu", "cpuacct", "cpuset", "memory", "pids") if c not in mounted
               and not any(c in name.split(",") for name in mounted)]
    if missing:
        raise LabError(
            f"--node kubelet: the machine's cgroup v1 controllers {', '.join(missing)} are "
            f"not mounted under {CGROUP_FS}; the kubelet needs them", exit_code=1,
        )


def lab_roots() -> list[str]:
    """This instance's host roots present in any hierarchy (also a crashed lab's)."""
    names: set[str] = set()
    for hierarchy in hierarchies():
        with contextlib.suppress(OSError):
            names |= {d.name for d in hierarchy.iterdir()
                      if d.is_dir() and d.name.startswith(f"{PREFIX}-")}
    return sorted(f"/{n}" for n in names)


def _dirs(roots: list[str]) -> list[Path]:
    """Every cgroup dir under the roots in every hierarchy, deepest first."""
    found: list[Path] = []
    for hierarchy in hierarchies():
        for root in roots:
            top = hierarchy / root.lstrip("/")
            if top.is_dir():
                found += [Path(d) for d, _subdirs, _files in os.walk(top)]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def processes(roots: list[str]) -> list[int]:
    pids: set[int] = set()
    for d in _dirs(roots):
        with contextlib.suppress(OSError):
            pids |= {int(x) for x in (d / "cgroup.procs").read_text().split()}
    return sorted(pids)


def remove(roots: list[str]) -> None:
    """Kill whatever is still in the roots (a process of a pod the namespaces missed),
    then remove the cgroup dirs, deepest first."""
    for _round in range(3):
        pids = processes(roots)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    for _round in range(5):
        left = _dirs(roots)
        if not left:
            return
        for d in left:
            with contextlib.suppress(OSError):
                d.rmdir()
        if _dirs(roots):
            time.sleep(0.2)


def leftovers(roots: list[str]) -> list[str]:
    return [f"cgroup {d}" for d in _dirs(roots)] + [
        f"process {pid} in the lab's cgroups" for pid in processes(roots)
    ]
