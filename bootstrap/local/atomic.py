"""Replacing one local file atomically, with its mode: how bootstrap writes its own files
(the state dir's keys and certificates, the etcd member record, `render --out`).

A reader sees the old file or the new one, never half of one, and a crash leaves one of
the two: the content goes to a temp file beside the target (same directory, so same file
system, where rename(2) is atomic), is fsynced, renamed over the target, and the directory
is fsynced so that the rename itself survives a power cut.

The temp file is created with O_EXCL under a random name: never an existing file, never a
planted symlink (O_EXCL refuses a link instead of following it), never shared by two
writers. It gets its final mode before the first byte, so a key is not readable by others
even for a moment (the umask can only have narrowed it; fchmod sets it exactly). A symlink
at the target is replaced, not followed: rename(2) acts on the name. On any failure the
temp file is removed and the target is left as it was.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

_ATTEMPTS = 16  # random names tried before giving up (a clash is already unlikely)
_NAME_KEEP = 200  # characters of the target's name kept in the temp name (NAME_MAX 255)


def write_atomic(path: Path | str, data: bytes | Iterable[bytes], mode: int) -> None:
    """Replace ``path`` with ``data`` (bytes, or chunks written as they come), mode exactly
    ``mode``. Every OSError names ``path``, not the temp file the user never asked for."""
    path = Path(path)
    try:
        fd, tmp = _create_temp(path, mode)
        try:
            try:
                os.fchmod(fd, mode)
                for chunk in (data,) if isinstance(data, bytes) else data:
                    _write_all(fd, chunk)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:  # a full disk, a failing generator, Ctrl-C: no temp stays
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(path.parent)
    except OSError as exc:
        if exc.errno is None:
            raise
        raise type(exc)(exc.errno, exc.strerror, str(path)) from exc


def _suffix() -> str:
    return secrets.token_hex(6)


def _create_temp(path: Path, mode: int) -> tuple[int, Path]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(_ATTEMPTS):
        tmp = path.parent / f".{path.name[:_NAME_KEEP]}.{_suffix()}.tmp"
        try:
            return os.open(tmp, flags, mode), tmp
        except FileExistsError:  # someone's file or link under that name: not ours, next
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name beside it", str(path))


def _write_all(fd: int, chunk: bytes) -> None:
    view = memoryview(chunk)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # a file system without directory fsync: nothing to do
            raise
    finally:
        os.close(fd)
