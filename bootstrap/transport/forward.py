"""Local port forwarding over one paramiko transport (``ssh -L 127.0.0.1:0:host:port``).

Two BLOCKING threads per forwarded connection, never select() on channels: the usual
select()-based forwarder races inside paramiko (paramiko #2271, #1700) and in the lab
prototype killed whole transports ("Bad file descriptor (9)") in 1 run of 4; two blocking
pumps with half-closes had 0 failures in 12 (lab-notes.md pitfall 6).

Half-closes keep request/response protocols working: local EOF -> ``shutdown_write()`` on
the channel; channel EOF -> ``shutdown(SHUT_WR)`` on the local socket. A connection is torn
down once both directions are done or either side errors.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
from typing import Any

from bootstrap.transport.sshlib import paramiko
from bootstrap.transport.tcpnodelay import no_delay

log = logging.getLogger("bootstrap.transport")

CHUNK = 64 * 1024
ACCEPT_BACKLOG = 128
JOIN_TIMEOUT = 5.0  # seconds to wait for pump threads when the forward is closed


class _Connection:
    def __init__(self, sock: socket.socket, channel: paramiko.Channel) -> None:
        self.sock = sock
        self.channel = channel
        self._lock = threading.Lock()
        self._done = 0
        self._closed = False

    def half_done(self) -> None:
        with self._lock:
            self._done += 1
            both = self._done == 2
        if both:
            self.close()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with contextlib.suppress(Exception):
            self.channel.close()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes a pump blocked in recv()
        with contextlib.suppress(OSError):
            self.sock.close()


def _reset(sock: socket.socket) -> None:
    """Close with RST so the local client fails at once instead of waiting for data."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class Forwarder:
    """Listens on 127.0.0.1:<free port>; each accepted connection gets a direct-tcpip channel."""

    def __init__(
        self,
        transport: paramiko.Transport,
        remote_host: str,
        remote_port: int,
        *,
        label: str,
        channel_open_timeout: float,
    ) -> None:
        self._transport = transport
        self._dest = (remote_host, remote_port)
        self._label = label
        self._open_timeout = channel_open_timeout
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(ACCEPT_BACKLOG)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._connections: set[_Connection] = set()
        self._threads: list[threading.Thread] = []
        self._accepter = self._spawn(self._accept_loop, "accept")

    def _spawn(self, target: Any, what: str, *args: Any) -> threading.Thread:
        t = threading.Thread(
            target=target,
            args=args,
            daemon=True,
            name=f"fwd-{self._label}-{self._dest[1]}-{what}",
        )
        with self._lock:
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
        t.start()
        return t

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, peer = self._listener.accept()
            except OSError:
                break  # listener shut down by close()
            if self._stop.is_set():
                _reset(sock)
                break
            no_delay(sock)  # what arrives through the channel goes on at once
            self._spawn(self._open, "open", sock, peer)

    def _open(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        try:
            channel = self._transport.open_channel(
                "direct-tcpip", self._dest, peer, timeout=self._open_timeout
            )
        except (paramiko.SSHException, EOFError, OSError) as e:
            # Remote port closed (or transport gone): the local client sees a reset now.
            log.info("%s: forward to %s:%d refused: %s", self._label, *self._dest, e)
            _reset(sock)
            return
        conn = _Connection(sock, channel)
        with self._lock:
            if self._stop.is_set():
                conn.close()
                return
            self._connections.add(conn)
        self._spawn(self._local_to_remote, "up", conn)
        self._spawn(self._remote_to_local, "down", conn)

    def _local_to_remote(self, conn: _Connection) -> None:
        try:
            while True:
                data = conn.sock.recv(CHUNK)
                if not data:
                    conn.channel.shutdown_write()
                    break
                conn.channel.sendall(data)
        except Exception:  # any failure ends this one connection only
            conn.close()
        finally:
            self._finish(conn)

    def _remote_to_local(self, conn: _Connection) -> None:
        try:
            while True:
                data = conn.channel.recv(CHUNK)
                if not data:
                    conn.sock.shutdown(socket.SHUT_WR)
                    break
                conn.sock.sendall(data)
        except Exception:
            conn.close()
        finally:
            self._finish(conn)

    def _finish(self, conn: _Connection) -> None:
        conn.half_done()
        if conn._closed:
            with self._lock:
                self._connections.discard(conn)

    def close(self) -> None:
        """Stop accepting, end every forwarded connection, wait briefly for the threads."""
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            connections = list(self._connections)
            self._connections.clear()
            threads = list(self._threads)
        for conn in connections:
            conn.close()
        for t in threads:
            if t is not threading.current_thread():
                t.join(JOIN_TIMEOUT)
