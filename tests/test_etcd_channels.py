"""Kept-open gRPC channels in bootstrap.etcd.client, against a real etcd.

A counting TCP relay sits between the client and the member (as the SSH tunnel does in a
run), so the tests see how many connections the clients really open.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.etcd.client import EtcdClient, TLSFiles, close_shared_channels
from tests.etcd_support import EtcdCluster, EtcdPKI, cluster_context, make_pki


class CountingRelay:
    """127.0.0.1:<port> -> 127.0.0.1:<target>; counts accepted connections."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.accepted = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self._lock:
                self.accepted += 1
                self._pairs.append((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut_all(self) -> None:
        """Drop every relayed connection, as a closed tunnel or restarted member does."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self) -> None:
        self._listener.close()
        self.cut_all()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> EtcdPKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory, pki: EtcdPKI) -> Iterator[EtcdCluster]:
    yield from cluster_context(tmp_path_factory.mktemp("single"), pki, ["m1"])


@pytest.fixture()
def relay(single: EtcdCluster) -> Iterator[CountingRelay]:
    close_shared_channels()
    relay = CountingRelay(single.member("m1").client_port)
    yield relay
    close_shared_channels()
    relay.close()


def _status(relay: CountingRelay, pki: EtcdPKI) -> int:
    tls = TLSFiles(pki.ca, pki.apiserver_etcd_client.cert, pki.apiserver_etcd_client.key)
    with EtcdClient("127.0.0.1", relay.port, tls, timeout=5) as client:
        return client.status().member_id


def test_clients_of_one_member_share_one_connection(relay: CountingRelay, pki: EtcdPKI) -> None:
    ids = {_status(relay, pki) for _ in range(4)}
    assert len(ids) == 1 and 0 not in ids
    assert relay.accepted == 1


def test_a_channel_cut_while_idle_is_replaced_for_reads(
    relay: CountingRelay, pki: EtcdPKI
) -> None:
    first = _status(relay, pki)
    relay.cut_all()
    assert _status(relay, pki) == first  # asked again on a new connection
    assert relay.accepted == 2


def test_closing_the_shared_channels_opens_new_ones(relay: CountingRelay, pki: EtcdPKI) -> None:
    _status(relay, pki)
    close_shared_channels()
    _status(relay, pki)
    assert relay.accepted == 2


def test_other_client_files_get_their_own_channel(
    relay: CountingRelay, pki: EtcdPKI, tmp_path: Path
) -> None:
    _status(relay, pki)
    copy = tmp_path / "client.crt"
    copy.write_bytes(pki.apiserver_etcd_client.cert.read_bytes())
    tls = TLSFiles(pki.ca, copy, pki.apiserver_etcd_client.key)
    with EtcdClient("127.0.0.1", relay.port, tls, timeout=5) as client:
        client.status()
    assert relay.accepted == 2
