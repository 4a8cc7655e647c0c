"""Key material handed to ssl/grpc as a path, without a copy of it on disk.

The TLS libraries we use (``ssl.SSLContext.load_cert_chain``, pyetcd's grpc credentials)
take file paths. Writing the master's client keys into a directory left copies behind
whenever a run was killed, interrupted or raced another run (issue 16 item 6). On Linux an
anonymous memory file (``memfd_create``) has a path, ``/proc/self/fd/N``, that those
libraries can open like any file, and it disappears with the process, however the process
ends. The name given to the memory file is what error messages show for the path
(``describe``), so "client cert m2:/etc/kubernetes/pki/..." still says which file it is.

Without ``memfd_create`` (not Linux, or forbidden by a sandbox) the files go into a private
directory in the state dir (0700, named with our PID) that ``close()`` removes, and that
the next run removes if this process died first (``sweep_stale``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

_PROC_FD = re.compile(r"^/proc/(?:self|\d+)/fd/(\d+)$")
FALLBACK_PREFIX = ".creds-"  # also the name of the key-copy dirs older versions left behind
_FALLBACK_NAME = re.compile(r"^\.creds-(\d+)-")


def describe(path: object) -> str:
    """How to show a credential path in a message: a memory file by its name."""
    text = str(path)
    match = _PROC_FD.match(text)
    if match is None:
        return text
    with contextlib.suppress(OSError):
        target = os.readlink(text)  # "/memfd:<name> (deleted)"
        if target.startswith("/memfd:"):
            return target[len("/memfd:") :].removesuffix(" (deleted)") + " (in memory)"
    return text


def _memfd_available() -> bool:
    return hasattr(os, "memfd_create")


class MemoryFiles:
    """Files that exist only in this process: one per key, created on first use."""

    def __init__(self, fallback_dir: Path) -> None:
        self._fallback_dir = fallback_dir
        self._lock = threading.Lock()
        self._paths: dict[str, Path] = {}
        self._fds: list[int] = []
        self._dir: Path | None = None  # fallback only
        self._closed = False

    def path(self, name: str, content: bytes) -> Path:
        """A path whose content is ``content``; the same path for the same ``name``."""
        with self._lock:
            if self._closed:
                raise RuntimeError("MemoryFiles used after close()")
            found = self._paths.get(name)
            if found is None:
                found = self._create(name, content)
                self._paths[name] = found
            return found

    def _create(self, name: str, content: bytes) -> Path:
        if _memfd_available():
            try:
                return self._memfd(name, content)
            except OSError:
                pass  # ENOSYS/EPERM (seccomp): fall back to the private directory
        return self._on_disk(name, content)

    def _memfd(self, name: str, content: bytes) -> Path:
        fd = os.memfd_create(name[-200:], os.MFD_CLOEXEC)  # never inherited by children
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
        except BaseException:
            os.close(fd)
            raise
        self._fds.append(fd)
        return Path(f"/proc/self/fd/{fd}")

    def _on_disk(self, name: str, content: bytes) -> Path:
        if self._dir is None:
            self._fallback_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._dir = Path(
                tempfile.mkdtemp(prefix=f"{FALLBACK_PREFIX}{os.getpid()}-", dir=self._fallback_dir)
            )
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        target = self._dir / safe
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        return target

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for fd in self._fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._fds.clear()
            self._paths.clear()
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None


def sweep_stale(state_dir: Path) -> list[Path]:
    """Remove key-copy directories of processes that are gone: ``.creds-<pid>-*`` of a
    dead PID, and every ``.creds-*`` of the versions that did not put their PID in the
    name (they copied every key of a master there and often left it). Returns them."""
    removed: list[Path] = []
    try:
        entries = list(state_dir.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(FALLBACK_PREFIX):
            continue
        match = _FALLBACK_NAME.match(entry.name)
        if match is not None and _alive(int(match.group(1))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
        removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # somebody else's process: alive
    return True
