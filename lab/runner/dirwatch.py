"""React to changes in the manifest directory at once, as the kubelet does (inotify).

The kubelet's file source watches its static pod path with inotify and reads a file as
soon as it is created, written, renamed or removed, plus a periodic full re-list. The
lab runner used to poll only; a poll interval delays every manifest by up to one tick,
which no real node does. This is the inotify half; the runner keeps its periodic scan as
the re-list (and as the fallback when inotify is unavailable or the directory is
missing).

Linux only, through libc (no dependency): inotify_init1 + inotify_add_watch, and select()
on the descriptor to wait for events with a timeout.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select

_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
# The kubelet's fsnotify watch covers create, write, remove, rename and chmod.
_IN_MODIFY = 0x002
_IN_ATTRIB = 0x004
_IN_CLOSE_WRITE = 0x008
_IN_MOVED_FROM = 0x040
_IN_MOVED_TO = 0x080
_IN_CREATE = 0x100
_IN_DELETE = 0x200
_IN_DELETE_SELF = 0x400
_IN_MOVE_SELF = 0x800
_IN_IGNORED = 0x8000
_MASK = (
    _IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE | _IN_MOVED_FROM | _IN_MOVED_TO | _IN_CREATE
    | _IN_DELETE | _IN_DELETE_SELF | _IN_MOVE_SELF
)
_EVENT_HEADER = 16  # struct inotify_event: int wd; uint32 mask, cookie, len; name follows


def drain(fd: int) -> None:
    """Read a non-blocking pipe empty (its bytes only say "wake up")."""
    while True:
        try:
            if not os.read(fd, 4096):
                return
        except (BlockingIOError, InterruptedError):
            return


class DirWatch:
    """An inotify watch on one directory; ``wait()`` says whether anything changed."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._libc: ctypes.CDLL | None = None
        self._fd = -1
        self._wd = -1
        name = ctypes.util.find_library("c")
        if name is None:
            return
        libc = ctypes.CDLL(name, use_errno=True)
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            return
        self._libc, self._fd = libc, fd
        self.ensure()

    @property
    def active(self) -> bool:
        return self._wd >= 0

    def ensure(self) -> None:
        """(Re)add the watch: the directory may appear later or be replaced."""
        if self._libc is None or self._wd >= 0:
            return
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(self.directory), _MASK)
        if wd >= 0:
            self._wd = wd

    def wait(self, timeout: float, wake_fd: int | None = None) -> bool:
        """Block up to ``timeout`` seconds, or until ``wake_fd`` is readable (drained
        here); True when the directory changed."""
        if self._fd < 0 or self._wd < 0:
            return False
        fds = [self._fd] if wake_fd is None else [self._fd, wake_fd]
        ready, _, _ = select.select(fds, [], [], timeout)
        if wake_fd is not None and wake_fd in ready:
            drain(wake_fd)
        if self._fd not in ready:
            return False
        changed = False
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                break
            if not data:
                break
            offset = 0
            while offset + _EVENT_HEADER <= len(data):
                mask = int.from_bytes(data[offset + 4 : offset + 8], "little")
                length = int.from_bytes(data[offset + 12 : offset + 16], "little")
                offset += _EVENT_HEADER + length
                if mask & (_IN_IGNORED | _IN_DELETE_SELF | _IN_MOVE_SELF):
                    self._wd = -1  # the directory went away: ensure() re-adds it
                changed = True
        return changed

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = self._wd = -1
