"""Finding and ending the processes that live in the lab's namespaces.

By namespace inode (pitfall 11), not by PID file: that also catches strays started over
SSH. The kernel hands a freed namespace's inode number to the next namespace made
anywhere on the machine (lowest free number first), e.g. to a container that another lab
instance's runc is starting at that moment. So inodes are matched only while the caller
holds the namespaces open (`Pins`): a held namespace is never freed, its number never
reused, and "a process in namespace N" then means ours. Zombies count as dead (pitfall 10).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path

NS_KINDS = ("net", "mnt", "pid")


def ns_inode(path: str | Path) -> int | None:
    """Inode of a namespace given a handle or /proc/PID/ns/KIND path (None if gone)."""
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


class Pins:
    """Open file descriptors on namespaces, by kind: while they are held, none of these
    namespaces can be freed, so their inode numbers stay theirs (see the module doc)."""

    def __init__(self) -> None:
        self.inodes: dict[str, set[int]] = {kind: set() for kind in NS_KINDS}
        self._fds: list[int] = []

    def add(
        self, kind: str, path: str | Path, still: Callable[[], bool] = lambda: True
    ) -> int | None:
        """Hold the namespace at ``path`` (a handle or /proc/PID/ns/KIND); its inode, or
        None if it is gone (or not a namespace). ``still`` is asked after opening: for a
        /proc path, whether the PID is still the process meant (not a reused one)."""
        if not is_nsfs(path):
            return None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        if not still():
            os.close(fd)
            return None
        ino = os.fstat(fd).st_ino
        self._fds.append(fd)
        self.inodes[kind].add(ino)
        return ino

    def holds(self, pid: int) -> bool:
        """Is ``pid`` (alive) in one of the held net or mnt namespaces?"""
        return any(_proc_ns(pid, kind) in self.inodes[kind] for kind in ("net", "mnt"))

    def close(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()


def is_nsfs(path: str | Path) -> bool:
    """True if path is a live namespace handle (an nsfs bind mount), not a plain file."""
    try:
        return os.stat(path).st_dev == os.stat("/proc/self/ns/net").st_dev
    except OSError:
        return False


def _proc_ns(pid: int, kind: str) -> int | None:
    try:
        link = os.readlink(f"/proc/{pid}/ns/{kind}")  # "net:[4026532001]"
    except OSError:
        return None
    return int(link[link.index("[") + 1 : -1])


def _state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2]


def alive(pid: int) -> bool:
    state = _state(pid)
    return state is not None and state not in ("Z", "X")


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _protected() -> set[int]:
    """This process and its ancestors (`lab down` run from inside a host must survive)."""
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat[stat.rindex(")") + 2 :].split()[1])
    return pids


def in_namespaces(inodes: dict[str, set[int]]) -> list[int]:
    """Live PIDs whose net, mnt or pid namespace is one of `inodes[kind]`."""
    found = []
    skip = _protected()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid in skip or not alive(pid):
            continue
        for kind in NS_KINDS:
            ino = _proc_ns(pid, kind)
            if ino is not None and ino in inodes.get(kind, set()):
                found.append(pid)
                break
    return sorted(found)


def _still_ours(pid: int, inodes: dict[str, set[int]]) -> bool:
    """Alive and still in one of our namespaces (a reused PID is not ours)."""
    if not alive(pid):
        return False
    return any(_proc_ns(pid, k) in inodes.get(k, set()) for k in NS_KINDS)


def _signal(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _wait(pids: list[int], inodes: dict[str, set[int]], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    left = pids
    while True:
        left = [p for p in left if _still_ours(p, inodes)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.02)


def end_all(inodes: dict[str, set[int]], wrappers: set[int], grace: float = 1.0) -> list[int]:
    """SIGTERM, a short grace (pitfall 8), SIGKILL; returns PIDs that would not die.

    `wrappers` (the unshare processes and host inits) ignore SIGTERM (pitfall 9); they
    get SIGKILL after the others had their grace, which ends each PID namespace whole.
    """
    pids = in_namespaces(inodes)
    workers = [p for p in pids if p not in wrappers]
    _signal(workers, signal.SIGTERM)
    _wait(workers, inodes, grace)
    for _round in range(3):
        pids = in_namespaces(inodes)
        if not pids:
            return []
        _signal(pids, signal.SIGKILL)
        left = _wait(pids, inodes, 3.0)
        if not left and not in_namespaces(inodes):
            return []
    return in_namespaces(inodes)
