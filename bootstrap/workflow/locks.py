"""One writer at a time: a lock on the local state dir AND on every master, for a whole run.

Two runs that write (init, certs renew, upgrade, add/remove-master, reset) must not
interleave: both would push the same changed manifest and wait for each other's restarts,
or one would remove the member the other just added. The state dir lock stops two runs
from one copy of the state; the host locks stop two operators with two copies.

- Local: ``flock`` on ``<state dir>/.run.lock``, which holds the holder's line (host, PID,
  user, since, command). flock ends with its process however it ends, so a lock file
  that still names a holder when we get the lock was left by a killed run: we say so
  and take over.
- Hosts: ``/etc/kubernetes/.bootstrap.lock`` is held with ``flock(1)`` by a small script
  that runs for the whole run on an SSH channel whose stdin we keep open (``hold``). It
  writes the holder's line into the file, and when its stdin closes (we release, or our
  process or connection died) it removes the file and exits, releasing the lock. A file
  that names a holder while nobody holds the flock is a stale lock (the host rebooted,
  or its sshd was killed mid-run): taken over with a message.

The first reachable master (inventory order) is locked before the others, so of two runs
started together one gets it and the other stops there, having locked nothing else.
A refusal is exit 2 and names the holder: who, where, which PID, since when.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import shlex
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bootstrap.errors import InputError, OperationError
from bootstrap.inventory.model import KUBERNETES_DIR, Master
from bootstrap.model import HeldCommand, RemoteHost
from bootstrap.run.session import Session

LOCAL_LOCK = ".run.lock"
REMOTE_LOCK = f"{KUBERNETES_DIR}/.bootstrap.lock"
ANSWER_TIMEOUT = 30.0  # seconds for a host to say LOCKED or BUSY


class LockHeld(InputError):
    """Another run holds the lock (exit 2: nothing was done; retry when it has finished)."""


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    user: str
    since: str  # ISO 8601, UTC
    command: str

    @classmethod
    def me(cls, command: str) -> Holder:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = str(os.getuid())
        since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return cls(socket.gethostname(), os.getpid(), user, since, command)

    def line(self) -> str:
        return json.dumps(
            {
                "host": self.host,
                "pid": self.pid,
                "user": self.user,
                "since": self.since,
                "command": self.command,
            },
            sort_keys=True,
        )

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        try:
            doc = json.loads(text.strip().splitlines()[0])
            return cls(
                str(doc["host"]),
                int(doc["pid"]),
                str(doc["user"]),
                str(doc["since"]),
                str(doc["command"]),
            )
        except (ValueError, KeyError, TypeError, IndexError):
            return None

    def describe(self) -> str:
        return (
            f"`bootstrap {self.command}` of {self.user} on {self.host} (PID {self.pid}) "
            f"since {self.since}{_ago(self.since)}"
        )


def _ago(since: str) -> str:
    try:
        then = datetime.strptime(since, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return ""
    seconds = int((datetime.now(UTC) - then).total_seconds())
    return f" ({seconds} s ago)" if seconds >= 0 else ""


def _describe(text: str) -> str:
    holder = Holder.parse(text)
    if holder is not None:
        return holder.describe()
    shown = text.strip()[:200]
    return f"an unknown holder ({shown!r})" if shown else "a run that has not written its name yet"


# --- local ----------------------------------------------------------------------------------


class StateDirLock:
    """flock on <state dir>/.run.lock for as long as the object lives (see module doc)."""

    def __init__(self, state_dir: Path, holder: Holder) -> None:
        self.state_dir = state_dir
        self.holder = holder
        self.stale: Holder | str | None = None  # what a killed run left in the file
        self._created: list[Path] = []
        self._fd: int | None = None

    def acquire(self) -> None:
        self._created = _make_dirs(self.state_dir)
        path = self.state_dir / LOCAL_LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LockHeld(
                    f"the state dir {self.state_dir} is in use by "
                    f"{_describe(_read_fd(fd))}",
                    hint="wait for that run to finish (one writing run at a time per cluster), "
                    "then retry; nothing was done",
                ) from None
            previous = _read_fd(fd)
            if previous.strip():
                self.stale = Holder.parse(previous) or previous.strip()
            os.ftruncate(fd, 0)
            os.pwrite(fd, (self.holder.line() + "\n").encode(), 0)
        except BaseException:
            os.close(fd)
            self._remove_created()
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)  # an empty file: released cleanly
        os.close(self._fd)
        self._fd = None
        self._remove_created()

    def _remove_created(self) -> None:
        """A state dir this lock created and nothing else used goes again: a refused
        first run leaves nothing behind locally."""
        if not self._created:
            return
        with contextlib.suppress(OSError):
            if [p.name for p in self.state_dir.iterdir()] in ([], [LOCAL_LOCK]):
                (self.state_dir / LOCAL_LOCK).unlink(missing_ok=True)
        for directory in reversed(self._created):
            with contextlib.suppress(OSError):
                directory.rmdir()  # only when empty
        self._created = []


def _make_dirs(path: Path) -> list[Path]:
    missing: list[Path] = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
    return list(reversed(missing))


def _read_fd(fd: int) -> str:
    with contextlib.suppress(OSError):
        return os.pread(fd, 4096, 0).decode("utf-8", errors="replace")
    return ""


# --- hosts ----------------------------------------------------------------------------------


def remote_script(holder: Holder, lock_file: str = REMOTE_LOCK) -> str:
    """The holder script (POSIX sh + util-linux flock). Answers, one per line:
    LOCKED [STALE <previous holder line>] END | BUSY <holder line...> | NOFLOCK | ERROR <why>.
    After LOCKED it waits for stdin to close, then removes the file (still holding the
    flock, so a waiting opener sees a removed file and retries) and exits. The directory
    is created when missing and removed again if it is still empty then."""
    f = shlex.quote(lock_file)
    d = shlex.quote(lock_file.rsplit("/", 1)[0] or "/")
    info = shlex.quote(holder.line())
    return f"""
f={f}; made=
command -v flock >/dev/null 2>&1 || {{ echo NOFLOCK; exit 0; }}
if [ ! -d {d} ]; then
  (umask 022 && mkdir -p {d}) && made=1 || {{ echo "ERROR cannot create {d}"; exit 0; }}
fi
n=0
while :; do
  exec 9>>"$f" || {{ echo "ERROR cannot open $f"; exit 0; }}
  if ! flock -n 9; then echo BUSY; cat "$f" 2>/dev/null; exit 0; fi
  # The file we locked must still be the one at the path: a releasing holder removes it.
  [ "$(stat -c %d:%i "$f" 2>/dev/null)" = "$(stat -L -c %d:%i /proc/$$/fd/9)" ] && break
  exec 9>&-
  n=$((n + 1)); [ $n -lt 50 ] || {{ echo "ERROR $f keeps changing"; exit 0; }}
done
prev=$(cat "$f" 2>/dev/null)
chmod 0644 "$f"
printf '%s\\n' {info} >"$f"
echo LOCKED
[ -n "$prev" ] && printf 'STALE %s\\n' "$prev"
echo END
cat >/dev/null
rm -f "$f"
[ -n "$made" ] && rmdir {d} 2>/dev/null
exit 0
"""


@dataclass
class _HostLock:
    name: str
    held: HeldCommand | None = None
    stale: str = ""


def _lock_host(name: str, host: RemoteHost, holder: Holder) -> _HostLock:
    held = host.hold(remote_script(holder))
    ok = False
    try:
        first = held.readline(ANSWER_TIMEOUT)
        if first == "LOCKED":
            stale = ""
            while (line := held.readline(ANSWER_TIMEOUT)) not in (None, "END"):
                if line is not None and line.startswith("STALE "):
                    stale = line[len("STALE ") :]
            ok = True
            return _HostLock(name, held, stale)
        if first == "BUSY":
            rest: list[str] = []
            while (line := held.readline(ANSWER_TIMEOUT)) is not None:
                rest.append(line)
            raise LockHeld(
                f"the cluster is locked by {_describe(chr(10).join(rest))} "
                f"(lock file {REMOTE_LOCK} on {name})",
                hint="wait for that run to finish (one writing run at a time per cluster, "
                "from any machine), then retry; nothing was done",
            )
        if first == "NOFLOCK":
            raise OperationError(
                f"{name}: cannot lock the cluster: flock(1) is missing on the host",
                hint="install util-linux (it provides flock) on the master",
            )
        raise OperationError(
            f"{name}: cannot lock the cluster ({REMOTE_LOCK}): "
            + (first[len("ERROR ") :] if first and first.startswith("ERROR ") else repr(first)),
            hint=f"check that root can write {KUBERNETES_DIR} on the master",
        )
    finally:
        if not ok:
            held.release()


class HostLocks:
    """The lock on every connected master, for as long as the object lives."""

    def __init__(self, session: Session, holder: Holder) -> None:
        self.session = session
        self.holder = holder
        self._held: list[_HostLock] = []

    def acquire(self, names: Sequence[str]) -> None:
        hosts = self.session.hosts
        order = [m for m in self.session.inventory.masters if m.name in names and m.name in hosts]
        if not order:
            return
        try:
            first = order[0]
            self._held.append(_lock_host(first.name, hosts[first.name], self.holder))
            rest = order[1:]
            if rest:
                got: dict[str, _HostLock] = {}
                errors: list[BaseException] = []

                def one(master: Master, host: RemoteHost) -> None:
                    name = master.name
                    try:
                        got[name] = _lock_host(name, host, self.holder)
                    except BaseException as exc:  # collected; raised after all finished
                        errors.append(exc)

                self.session.each_host(one, rest)
                self._held.extend(got[m.name] for m in rest if m.name in got)
                if errors:
                    raise _first_refusal(errors)
        except BaseException:
            self.release()
            raise
        for lock in self._held:
            if lock.stale:
                self.session.console.event(
                    "lock",
                    f"took over a stale lock of {_describe(lock.stale)}: its holder is gone "
                    "(host rebooted, or the session was cut)",
                    lock.name,
                )

    def release(self) -> None:
        held, self._held = self._held, []
        for lock in held:
            if lock.held is not None:
                lock.held.release()


def _first_refusal(errors: Sequence[BaseException]) -> BaseException:
    """A LockHeld (the answer the user needs) before any other failure."""
    for exc in errors:
        if isinstance(exc, LockHeld):
            return exc
    return errors[0]


@contextlib.contextmanager
def exclusive(
    session: Session, command: str, *, reachable_only: bool = False, hosts: bool = True
) -> Iterator[dict[str, str]]:
    """Hold the state dir lock and (``hosts``) every master's lock for the block.

    Connects the masters (all of them; with ``reachable_only`` the reachable ones, as
    removal and reset do) and yields the unreachable ones (name -> why)."""
    holder = Holder.me(command)
    local = StateDirLock(session.state_dir, holder)
    local.acquire()
    try:
        if local.stale is not None:
            who = local.stale.describe() if isinstance(local.stale, Holder) else local.stale
            session.console.event(
                "lock",
                f"took over the state dir lock left by {who}: that process is gone (killed?)",
            )
        unreachable: dict[str, str] = {}
        remote = HostLocks(session, holder)
        if hosts:
            if reachable_only:
                unreachable = session.connect_reachable()
            connected = list(session.hosts)
            remote.acquire(connected)
        try:
            yield unreachable
        finally:
            remote.release()
    finally:
        local.release()
