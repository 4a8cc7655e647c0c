"""The operator's own file system: checks before any work, and errors in words.

Everything bootstrap writes locally (the state dir, `render --out`, `etcd snapshot
--out`) is checked here before a host is contacted or a key generated, so a read-only
mount, a file where a directory belongs or an existing output file is a clear refusal
(exit 2) instead of a traceback half way through. ``describe`` turns any OSError that
still escapes into a message naming the path and the cause; the CLI uses it for every
OSError, so none is ever shown as a traceback.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bootstrap.errors import BootstrapError, InputError, OperationError, shorten

PATH_LIMIT = 300  # characters of a path repeated in a message

# The environment failed rather than the input: exit 1.
_OPERATION_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EPIPE, errno.ENOMEM}

_HINTS = {
    errno.EROFS: "that file system is mounted read-only: use a path on a writable one",
    errno.EACCES: "no permission: check the owner and mode of the path and its directories",
    errno.EPERM: "not permitted (an immutable file or directory? see lsattr)",
    errno.ENOSPC: "the file system is full: free space and re-run (nothing was left "
    "half-written: files are replaced atomically)",
    errno.EDQUOT: "the disk quota is exhausted: free space and re-run",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.EISDIR: "it is a directory, a file was expected",
    errno.EEXIST: "it already exists",
    errno.ENOENT: "a directory on the path does not exist",
    errno.ENAMETOOLONG: "the path is too long",
    errno.ELOOP: "too many symbolic links on the path",
}


def show(path: Path | str) -> str:
    return shorten(str(path), PATH_LIMIT)


def describe(exc: OSError, doing: str | None = None) -> BootstrapError:
    """An OSError as the tool's error: path, cause, a hint; exit 1 for a full disk or a
    broken pipe, 2 for what the user must fix (permissions, read-only, wrong type)."""
    cause = exc.strerror or str(exc) or exc.__class__.__name__
    if exc.filename is None:  # not a path: a socket, a pipe; the operation failed
        return OperationError(f"{doing or 'system error'}: {cause}")
    where = show(os.fsdecode(exc.filename))
    if exc.filename2 is not None:
        where += " -> " + show(os.fsdecode(exc.filename2))
    message = f"{doing}: {where}: {cause}" if doing else f"{where}: {cause}"
    cls: type[BootstrapError] = (
        OperationError if exc.errno in _OPERATION_ERRNOS else InputError
    )
    return cls(message, hint=_HINTS.get(exc.errno or 0))


@contextmanager
def naming(path: Path | str) -> Iterator[None]:
    """Attach ``path`` to an OSError that has none: a write through a file object (a
    full disk at flush or fsync) says only "No space left on device", not where."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None or exc.errno is None:
            raise
        raise type(exc)(exc.errno, exc.strerror, str(path)) from exc


def _first_existing(path: Path) -> Path:
    probe = path
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    return probe


def _not_writable_reason(directory: Path) -> str | None:
    if os.access(directory, os.W_OK | os.X_OK):
        return None
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return "it is on a read-only file system"
    except OSError:
        pass
    return "it is not writable (permission denied)"


def check_writable_dir(path: Path, what: str) -> None:
    """``path`` is a directory we may create and write in. Raises InputError naming the
    offending path: a file where a directory belongs (on the path or at it), a read-only
    mount, no permission."""
    if path.exists() and not path.is_dir():
        raise InputError(
            f"{what} {show(path)} is not a directory",
            hint="give a directory (or a path that does not exist yet)",
        )
    base = _first_existing(path)
    if not base.is_dir():  # a file (or a dangling link) where a directory must be created
        raise InputError(
            f"{what} {show(path)} cannot be created: {show(base)} is not a directory",
            hint=f"move {show(base)} away or choose another path",
        )
    reason = _not_writable_reason(base)
    if reason is not None:
        target = "" if base == path else f" ({show(base)}, where it would be created)"
        raise InputError(
            f"{what} {show(path)}{target}: {reason}", hint="choose a writable location"
        )


def check_output_file(path: Path, what: str, *, force: bool) -> None:
    """``path`` may be written as a new file: its directory exists and is writable, it is
    not a directory, and an existing file is replaced only with ``force``."""
    if path.is_dir():
        raise InputError(f"{what} {show(path)} is a directory", hint="give a file name")
    parent = path.parent
    if not parent.is_dir():
        raise InputError(
            f"{what} {show(path)}: {show(parent)} is not an existing directory",
            hint="create the directory first, or choose another path",
        )
    reason = _not_writable_reason(parent)
    if reason is not None:
        raise InputError(f"{what} {show(path)}: {show(parent)}: {reason}")
    if os.path.lexists(path) and not force:
        raise InputError(
            f"{what} {show(path)} already exists",
            hint="pass --force to replace it, or choose another path",
        )


def is_empty_dir(path: Path) -> bool:
    try:
        with os.scandir(path) as entries:
            return next(entries, None) is None
    except FileNotFoundError:
        return True
