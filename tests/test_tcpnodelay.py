"""The SSH connection's socket: no Nagle, and an immediate ACK for everything it reads.

The stall these options remove (a random 40 ms per tunnelled request, see
bootstrap/transport/tcpnodelay.py) is a timing effect and is measured in bench/, not
asserted here; these tests check that the options are really set on the real socket the
connector hands to paramiko, and that data still flows both ways unchanged.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.transport.connection import Endpoint, tcp_connector
from bootstrap.transport.tcpnodelay import QuickAckSocket, low_latency, no_delay


@pytest.fixture
def echo_server() -> Iterator[int]:
    """A loopback server that echoes each chunk back until the client closes."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    listener.close()
    thread.join(5)


def _nodelay(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_the_connector_hands_paramiko_a_no_delay_quick_ack_socket(echo_server: int) -> None:
    ep = Endpoint("m1", "127.0.0.1", echo_server, "root", Path("/nonexistent"), 7.0)
    sock = tcp_connector(ep)()
    with sock:
        assert isinstance(sock, QuickAckSocket)
        assert _nodelay(sock) == 1
        assert sock.gettimeout() == 7.0  # the connect timeout is kept
        sock.sendall(b"ping")
        assert sock.recv(16) == b"ping"
        buf = bytearray(16)
        sock.sendall(b"pong")
        assert sock.recv_into(buf) == 4 and bytes(buf[:4]) == b"pong"


def test_every_read_asks_for_an_immediate_ack(echo_server: int) -> None:
    """TCP_QUICKACK is not sticky, so it is renewed before each read, recv and recv_into."""
    asked: list[tuple[int, int, int]] = []

    class Recording(QuickAckSocket):
        def setsockopt(self, level: int, option: int, value: object, *rest: object) -> None:  # type: ignore[override]
            asked.append((level, option, value))  # type: ignore[arg-type]
            super().setsockopt(level, option, value)  # type: ignore[arg-type]

    plain = socket.create_connection(("127.0.0.1", echo_server), timeout=5)
    sock = Recording(plain.family, plain.type, plain.proto, fileno=plain.detach())
    sock.settimeout(5)
    with sock:
        for _ in range(3):
            sock.sendall(b"x")
            assert sock.recv(1) == b"x"
        sock.sendall(b"y")
        assert sock.recv_into(bytearray(1)) == 1
    quickack = [a for a in asked if a == (socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)]
    assert len(quickack) == 4


def test_low_latency_keeps_the_connection_and_its_timeout(echo_server: int) -> None:
    plain = socket.create_connection(("127.0.0.1", echo_server), timeout=3)
    assert _nodelay(plain) == 0  # the kernel default this module changes
    fast = low_latency(plain)
    with fast:
        assert plain.fileno() == -1  # given up, not duplicated
        assert _nodelay(fast) == 1 and fast.gettimeout() == 3
        fast.sendall(b"abc")
        assert fast.recv(3) == b"abc"


def test_no_delay_ignores_sockets_that_are_not_tcp() -> None:
    a, b = socket.socketpair()
    with a, b:
        no_delay(a)  # a Unix socket has no TCP options: nothing to do, no error
        a.sendall(b"z")
        assert b.recv(1) == b"z"
