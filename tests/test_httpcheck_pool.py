"""Kept-alive connections in bootstrap.transport.httpcheck, against a real local server.

The server counts the TCP connections it accepts; a test that saw the same count with and
without reuse would fail.
"""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator

import pytest

from bootstrap.transport import httpcheck


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless a response says otherwise

    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        if self.path == "/close":
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.server.posts.append(self.rfile.read(length))  # type: ignore[attr-defined]
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


class _CountingServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.accepted = 0
        self.posts: list[bytes] = []
        self.open_sockets: list[object] = []

    def get_request(self):  # type: ignore[no-untyped-def]
        sock, addr = super().get_request()
        self.accepted += 1
        self.open_sockets.append(sock)
        return sock, addr


@pytest.fixture()
def server() -> Iterator[_CountingServer]:
    httpcheck.close_idle_connections()
    srv = _CountingServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    httpcheck.close_idle_connections()
    srv.shutdown()
    srv.server_close()


def _get(srv: _CountingServer, path: str = "/") -> int:
    port = srv.server_address[1]
    return httpcheck.get("127.0.0.1", port, path, tls=None, timeout=5).status


def test_repeated_gets_share_one_connection(server: _CountingServer) -> None:
    assert [_get(server) for _ in range(5)] == [200] * 5
    assert server.accepted == 1


def test_a_connection_the_server_closed_while_idle_is_replaced(server: _CountingServer) -> None:
    assert _get(server) == 200
    for sock in server.open_sockets:  # the server side drops the idle connection
        sock.shutdown(socket.SHUT_RDWR)  # type: ignore[attr-defined]
    assert _get(server) == 200
    assert server.accepted == 2


def test_connection_close_answers_are_not_reused(server: _CountingServer) -> None:
    assert _get(server, "/close") == 200
    assert _get(server, "/close") == 200
    assert server.accepted == 2


def test_a_post_is_sent_once_on_a_new_connection(server: _CountingServer) -> None:
    assert _get(server) == 200
    port = server.server_address[1]
    result = httpcheck.request(
        "127.0.0.1", port, "/x", method="POST", body=b"{}", tls=None, timeout=5
    )
    assert result.status == 201
    assert server.posts == [b"{}"]
    assert server.accepted == 2


def test_close_idle_connections_closes_them(server: _CountingServer) -> None:
    assert _get(server) == 200
    httpcheck.close_idle_connections()
    assert _get(server) == 200
    assert server.accepted == 2
