"""bootstrap.etcd.client against real etcd 3.5.1 members on loopback (no fake etcd)."""

from __future__ import annotations

import json
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.errors import EtcdError
from bootstrap.etcd.client import (
    EtcdClient,
    LearnerNotReady,
    MemberNotFound,
    TLSFiles,
    bolt_max_revision,
    health_path,
    probe_health,
)
from tests.etcd_support import (
    CLEAN_ENV,
    ETCDCTL,
    ETCDUTL,
    EtcdCluster,
    EtcdPKI,
    MemberProcess,
    closed_port,
    cluster_context,
    make_pki,
)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> EtcdPKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory, pki: EtcdPKI) -> Iterator[EtcdCluster]:
    yield from cluster_context(tmp_path_factory.mktemp("single"), pki, ["m1"])


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory, pki: EtcdPKI) -> Iterator[EtcdCluster]:
    yield from cluster_context(tmp_path_factory.mktemp("trio"), pki, ["m1", "m2", "m3"])


def client_tls(pki: EtcdPKI) -> TLSFiles:
    return TLSFiles(pki.ca, pki.apiserver_etcd_client.cert, pki.apiserver_etcd_client.key)


def connect(member: MemberProcess, tls: TLSFiles, timeout: float = 5.0) -> EtcdClient:
    return EtcdClient("127.0.0.1", member.client_port, tls, timeout=timeout)


def etcdctl(member: MemberProcess, pki: EtcdPKI, *args: str) -> str:
    tls = client_tls(pki)
    out = subprocess.run(
        [
            str(ETCDCTL),
            f"--endpoints={member.client_url}",
            f"--cacert={tls.ca}",
            f"--cert={tls.cert}",
            f"--key={tls.key}",
            *args,
        ],
        env=CLEAN_ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


# --- reads ----------------------------------------------------------------------------


def test_single_member_list_status_alarms(single: EtcdCluster, pki: EtcdPKI) -> None:
    m1 = single.member("m1")
    with connect(m1, client_tls(pki)) as c:
        members = c.members()
        status = c.status()
        alarms = c.alarms()
    assert [(m.name, m.peer_urls, m.client_urls, m.is_learner) for m in members] == [
        ("m1", (m1.peer_url,), (m1.client_url,), False)
    ]
    assert status.member_id == members[0].id
    assert status.leader_id == status.member_id
    assert status.version == "3.5.1"
    assert status.raft_index > 0 and status.raft_term > 0
    # Read from the protobuf unknown fields (pyetcd's protos predate them).
    assert status.raft_applied_index is not None and status.raft_applied_index > 0
    assert status.is_learner is False
    assert status.errors == ()
    assert alarms == []


def test_three_members_agree_on_one_leader(trio: EtcdCluster, pki: EtcdPKI) -> None:
    statuses = []
    for member in trio.members:
        with connect(member, client_tls(pki)) as c:
            listed = c.members()
            statuses.append(c.status())
        assert sorted((m.name, m.peer_urls) for m in listed) == sorted(
            (m.name, (m.peer_url,)) for m in trio.members
        )
        assert not any(m.is_learner for m in listed)
    leaders = {s.leader_id for s in statuses}
    assert len(leaders) == 1 and 0 not in leaders
    assert leaders <= {s.member_id for s in statuses}


# --- learner lifecycle ----------------------------------------------------------------


def test_add_learner_is_idempotent_promote_not_ready_then_remove(
    single: EtcdCluster, pki: EtcdPKI
) -> None:
    peer_url = "https://127.0.0.1:1"  # a learner that never starts
    with connect(single.member("m1"), client_tls(pki)) as c:
        before = c.members()
        learner, after_add = c.add_learner(peer_url)
        assert learner.is_learner and learner.peer_urls == (peer_url,)
        assert learner.name == "" and not learner.started
        assert len(after_add) == len(before) + 1

        again, after_again = c.add_learner(peer_url)
        assert again.id == learner.id
        listed = c.members()
        assert [m.id for m in listed if peer_url in m.peer_urls] == [learner.id]  # no duplicate
        assert len(listed) == len(before) + 1
        assert {m.id for m in after_again} == {m.id for m in listed}
        # members() (gRPC) sees the learner flag too.
        assert [m.is_learner for m in listed if m.id == learner.id] == [True]

        with pytest.raises(LearnerNotReady) as not_ready:
            c.promote(learner.id)
        assert not_ready.value.hint

        c.remove(learner.id)
        assert [m.id for m in c.members()] == [m.id for m in before]
        with pytest.raises(MemberNotFound):
            c.remove(learner.id)
        with pytest.raises(MemberNotFound):
            c.promote(learner.id)


def test_promote_of_a_voter_is_a_no_op(single: EtcdCluster, pki: EtcdPKI) -> None:
    with connect(single.member("m1"), client_tls(pki)) as c:
        voter = c.members()[0]
        c.promote(voter.id)
        assert [m.is_learner for m in c.members()] == [False]


# --- snapshot -------------------------------------------------------------------------


def test_snapshot_is_accepted_by_etcdutl_with_the_same_revision(
    single: EtcdCluster, pki: EtcdPKI, tmp_path: Path
) -> None:
    m1 = single.member("m1")
    for i in range(5):
        etcdctl(m1, pki, "put", f"/registry/test/{i}", f"value-{i}")
    out = tmp_path / "snap.db"
    with connect(m1, client_tls(pki)) as c:
        info = c.snapshot(out)
        revision_now = c.status().revision
    assert info.path == out and out.is_file()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert info.size == out.stat().st_size
    assert info.hash_verified
    assert [p.name for p in tmp_path.iterdir()] == ["snap.db"]  # no partial file left
    status = subprocess.run(
        [str(ETCDUTL), "snapshot", "status", "-w", "json", str(out)],
        env=CLEAN_ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    oracle = json.loads(status.stdout)
    assert oracle["revision"] == info.revision
    assert info.revision == revision_now  # nothing was written in between
    assert oracle["totalSize"] + 32 == info.size  # the db plus etcd's sha256 trailer
    # And it restores.
    restore_dir = tmp_path / "restored"
    subprocess.run(
        [str(ETCDUTL), "snapshot", "restore", str(out), f"--data-dir={restore_dir}"],
        env=CLEAN_ENV,
        capture_output=True,
        check=True,
    )
    out.unlink()


def test_bolt_reader_refuses_garbage(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"\0" * 8192)
    with pytest.raises(ValueError):
        bolt_max_revision(junk)


# --- failures -------------------------------------------------------------------------


def test_client_cert_from_another_ca_is_a_tls_error_naming_the_cert(
    single: EtcdCluster, pki: EtcdPKI
) -> None:
    wrong = TLSFiles(pki.ca, pki.foreign_client.cert, pki.foreign_client.key)
    with connect(single.member("m1"), wrong) as c:
        with pytest.raises(EtcdError) as grpc_err:
            c.members()
        with pytest.raises(EtcdError) as gateway_err:
            c.add_learner("https://127.0.0.1:2")
    for err in (grpc_err.value, gateway_err.value):
        assert "TLS" in str(err)
        assert str(pki.foreign_client.cert) in str(err)
        assert err.hint


def test_server_not_trusted_by_our_ca_is_a_tls_error_naming_the_ca(
    single: EtcdCluster, pki: EtcdPKI
) -> None:
    wrong = TLSFiles(pki.other_ca, pki.apiserver_etcd_client.cert, pki.apiserver_etcd_client.key)
    with connect(single.member("m1"), wrong) as c, pytest.raises(EtcdError) as err:
        c.status()
    assert "TLS" in str(err.value)
    assert str(pki.other_ca) in str(err.value)


def test_missing_cert_file_is_named(pki: EtcdPKI, tmp_path: Path) -> None:
    missing = tmp_path / "nope.crt"
    with pytest.raises(EtcdError) as err:
        EtcdClient("127.0.0.1", 2379, TLSFiles(pki.ca, missing, pki.apiserver_etcd_client.key))
    assert str(missing) in str(err.value)


def test_closed_port_is_refused_not_a_timeout(pki: EtcdPKI) -> None:
    with EtcdClient("127.0.0.1", closed_port(), client_tls(pki), timeout=30) as c:
        with pytest.raises(EtcdError) as err:
            c.members()
        # Refused is reported as such: the call did not sit out the 30 s deadline.
        assert "refused" in str(err.value)
        with pytest.raises(EtcdError) as gw:
            c.add_learner("https://127.0.0.1:3")
        assert "refused" in str(gw.value)


def test_silent_endpoint_fails_at_the_timeout(pki: EtcdPKI) -> None:
    # A listener that completes TCP but never speaks TLS: the call must end at its deadline.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        with EtcdClient("127.0.0.1", port, client_tls(pki), timeout=1.0) as c:
            with pytest.raises(EtcdError) as err:
                c.status()
            assert "within 1s" in str(err.value)
            with pytest.raises(EtcdError) as gw:
                c.promote(1)
            assert "within 1s" in str(gw.value)


# --- metrics-port probe ---------------------------------------------------------------


def test_probe_health_on_the_metrics_port(single: EtcdCluster) -> None:
    m1 = single.member("m1")
    ok, detail = probe_health("127.0.0.1", m1.metrics_port, "/health", 2.0)
    assert ok, detail
    # 3.5.1 has no /readyz (3.5.11+): reported, never mistaken for healthy.
    ok, detail = probe_health("127.0.0.1", m1.metrics_port, "/readyz", 2.0)
    assert not ok and "404" in detail
    ok, detail = probe_health("127.0.0.1", closed_port(), "/health", 2.0)
    assert not ok and "refused" in detail


def test_health_path_by_version() -> None:
    assert health_path((3, 5, 1)) == "/health"
    assert health_path((3, 5, 10)) == "/health"
    assert health_path((3, 5, 11)) == "/readyz"
    assert health_path((3, 6, 0)) == "/readyz"
