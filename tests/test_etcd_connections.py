"""Connections of bootstrap.etcd.client, against a real etcd.

Reads (status, member list, alarms) go through etcd's JSON gateway on kept-alive HTTPS
connections; changes (member add, promote, remove) always on a new one; gRPC is loaded
for snapshots only. A counting TCP relay sits between the client and the member (as the
SSH tunnel does in a run), so the tests see how many connections the clients really open.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.etcd.client import EtcdClient, TLSFiles, close_shared_channels
from bootstrap.transport.httpcheck import close_idle_connections
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
    close_idle_connections()
    close_shared_channels()
    relay = CountingRelay(single.member("m1").client_port)
    yield relay
    close_idle_connections()
    close_shared_channels()
    relay.close()


def _tls(pki: EtcdPKI) -> TLSFiles:
    return TLSFiles(pki.ca, pki.apiserver_etcd_client.cert, pki.apiserver_etcd_client.key)


def _paths(pki: EtcdPKI) -> tuple[Path, Path]:
    return pki.apiserver_etcd_client.cert, pki.apiserver_etcd_client.key


def _status(relay: CountingRelay, pki: EtcdPKI) -> int:
    with EtcdClient("127.0.0.1", relay.port, _tls(pki), timeout=5) as client:
        return client.status().member_id


def test_clients_of_one_member_share_one_connection(relay: CountingRelay, pki: EtcdPKI) -> None:
    ids = {_status(relay, pki) for _ in range(4)}
    assert len(ids) == 1 and 0 not in ids
    with EtcdClient("127.0.0.1", relay.port, _tls(pki), timeout=5) as client:
        assert [m.id for m in client.members()] == list(ids)
        assert client.alarms() == []
    assert relay.accepted == 1


def test_a_change_is_never_sent_on_a_kept_connection(relay: CountingRelay, pki: EtcdPKI) -> None:
    """A POST that changes the cluster is never sent twice, so never on a connection that
    may have closed while idle: each gets its own."""
    _status(relay, pki)
    with EtcdClient("127.0.0.1", relay.port, _tls(pki), timeout=5) as client:
        learner, _ = client.add_learner("https://127.0.0.1:2")
        assert learner.is_learner
        client.remove(learner.id)
        assert all(m.id != learner.id for m in client.members())
    assert relay.accepted == 1 + 2  # the reads share one; add and remove got one each


def test_a_channel_cut_while_idle_is_replaced_for_reads(
    relay: CountingRelay, pki: EtcdPKI
) -> None:
    first = _status(relay, pki)
    relay.cut_all()
    assert _status(relay, pki) == first  # asked again on a new connection
    assert relay.accepted == 2


def test_closing_the_shared_channels_opens_new_ones(relay: CountingRelay, pki: EtcdPKI) -> None:
    _status(relay, pki)
    close_idle_connections()
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


def test_reads_do_not_load_grpc(single: EtcdCluster, pki: EtcdPKI) -> None:
    """grpc and pyetcd (~0.15 s of import CPU) are for snapshots only: a command that only
    reads (verify, status, the waits of init) never imports them."""
    script = f"""
import json, sys
from pathlib import Path
from bootstrap.etcd.client import EtcdClient, TLSFiles
tls = TLSFiles(*(Path(p) for p in {[str(p) for p in (pki.ca, *_paths(pki))]!r}))
with EtcdClient("127.0.0.1", {single.member("m1").client_port}, tls, timeout=5) as c:
    status, members, alarms = c.status(), c.members(), c.alarms()
print(json.dumps({{"member": status.member_id, "members": len(members),
                  "loaded": sorted(m for m in ("grpc", "pyetcd", "google.protobuf")
                                   if m in sys.modules)}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    result = json.loads(out.stdout)
    assert result["member"] != 0 and result["members"] == 1
    assert result["loaded"] == []
