"""TCP sockets for request/response traffic that must not stall on Nagle or delayed ACKs.

Everything the tool asks a master (a command, an SFTP write, an etcd or apiserver request
through a tunnel) is a small request and a small answer multiplexed over one SSH
connection. Two kernel defaults turn that into 40 ms stalls:

- Nagle's algorithm holds back a small segment while an earlier one is unacknowledged;
  sshd sends an answer that arrived in two pieces as two SSH packets, so its second packet
  waits for our ACK of the first.
- Our kernel delays that ACK (up to 40 ms on Linux) hoping to piggyback it on data we send,
  and we send nothing until the answer is complete.

Measured on the lab before this module: an etcd Status or MemberList through a tunnel took
1-2 ms or ~42 ms, at random; every few calls paid the 40 ms. With ``TCP_NODELAY`` on our
side and ``TCP_QUICKACK`` renewed before every read (the kernel clears it again after
some ACKs; it is not a sticky option), those calls take 1-3 ms every time. OpenSSH's
client sets ``TCP_NODELAY`` for the same reason.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

# TCP_QUICKACK is Linux-only; elsewhere a read simply does not ask for it.
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


class QuickAckSocket(socket.socket):
    """A TCP socket that acknowledges at once what it reads (see the module docstring)."""

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        _ask_quick_ack(self)
        return super().recv(bufsize, flags)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        _ask_quick_ack(self)
        return super().recv_into(buffer, nbytes, flags)


def _ask_quick_ack(sock: socket.socket) -> None:
    if _QUICKACK is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)


def no_delay(sock: socket.socket) -> None:
    """Send small segments at once (best effort: not every socket is TCP)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def low_latency(sock: socket.socket) -> QuickAckSocket:
    """The same connection as ``sock`` (which is given up), as a no-delay, quick-ACK socket."""
    timeout = sock.gettimeout()
    fast = QuickAckSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())
    fast.settimeout(timeout)
    no_delay(fast)
    return fast
