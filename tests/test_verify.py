"""bootstrap.health.verify against a real 3-member etcd cluster on loopback (no fake etcd).

The endpoints are the members' own loopback ports; in production they are the local ends
of SSH tunnels to each master's 127.0.0.1. Member names and peer URLs play the inventory.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.etcd.client import TLSFiles
from bootstrap.health.poll import poll
from bootstrap.health.verify import (
    CHECKS,
    Expected,
    MasterEndpoints,
    VerifyCredentials,
    VerifyReport,
    verify_masters,
)
from bootstrap.node.podstate import PodState
from tests.etcd_support import EtcdCluster, EtcdPKI, closed_port, cluster_context, make_pki

ETCD_CHECKS = CHECKS["etcd"]
OTHER_CHECKS = tuple(c for comp, checks in CHECKS.items() if comp != "etcd" for c in checks)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> EtcdPKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def cluster(tmp_path: Path, pki: EtcdPKI) -> Iterator[EtcdCluster]:
    """A fresh 3-member cluster per test: the tests kill members."""
    yield from cluster_context(tmp_path / "etcd", pki, ["m1", "m2", "m3"])


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory, pki: EtcdPKI) -> Iterator[EtcdCluster]:
    """A 3-member cluster for tests that do not disturb it."""
    yield from cluster_context(tmp_path_factory.mktemp("shared"), pki, ["m1", "m2", "m3"])


def endpoints_of(cluster: EtcdCluster) -> list[MasterEndpoints]:
    # No kube components run here: their endpoints are closed loopback ports.
    return [
        MasterEndpoints(
            name=m.name,
            etcd_client=("127.0.0.1", m.client_port),
            etcd_metrics=("127.0.0.1", m.metrics_port),
            apiserver=("127.0.0.1", closed_port()),
            controller_manager=("127.0.0.1", closed_port()),
            scheduler=("127.0.0.1", closed_port()),
        )
        for m in cluster.members
    ]


def expected_of(cluster: EtcdCluster) -> Expected:
    return Expected(
        members={m.name: m.peer_url for m in cluster.members},
        etcd_version=(3, 5, 1),
        kubernetes_minor=(1, 34),
    )


def creds_of(pki: EtcdPKI) -> VerifyCredentials:
    return VerifyCredentials(
        etcd=TLSFiles(pki.ca, pki.apiserver_etcd_client.cert, pki.apiserver_etcd_client.key),
        ca=pki.ca,  # stands in for the cluster CA: no apiserver answers in these tests
        admin_cert=pki.apiserver_etcd_client.cert,
        admin_key=pki.apiserver_etcd_client.key,
    )


def run(
    cluster: EtcdCluster, pki: EtcdPKI, components: tuple[str, ...] = ("etcd",), **kw: object
) -> VerifyReport:
    return verify_masters(
        endpoints_of(cluster),
        expected_of(cluster),
        creds_of(pki),
        components=components,
        timeout=2.0,
        **kw,  # type: ignore[arg-type]
    )


def result(report: VerifyReport, master: str, check: str) -> tuple[str, str]:
    for r in report.results:
        if r.master == master and r.check == check:
            return r.status, r.detail
    raise KeyError((master, check))


def statuses(report: VerifyReport, master: str, checks: tuple[str, ...]) -> set[str]:
    return {result(report, master, c)[0] for c in checks}


def settle(description: str, make: object, accept: object, timeout: float = 20.0) -> VerifyReport:
    """Re-run verify until `accept(report)` (etcd needs an election timeout to notice)."""
    holder: dict[str, VerifyReport] = {}

    def probe() -> tuple[bool, str]:
        holder["r"] = make()  # type: ignore[operator]
        return bool(accept(holder["r"])), holder["r"].summary[0] if holder["r"].summary else ""  # type: ignore[operator]

    poll(description, probe, timeout, 0.3)
    return holder["r"]


# --- healthy --------------------------------------------------------------------------


def test_healthy_cluster_passes_all_etcd_checks(shared_cluster: EtcdCluster, pki: EtcdPKI) -> None:
    report = run(shared_cluster, pki)
    for m in ("m1", "m2", "m3"):
        for check in ETCD_CHECKS:
            status, detail = result(report, m, check)
            assert status == "ok", (m, check, detail)
    assert report.ok() and report.exit_code() == 0
    assert "3/3 voting members reachable: quorum held" in report.summary[0]
    table = report.table()
    assert "all checks passed" in table
    # components limited to etcd: the other checks are skipped and the limit is shown.
    for m in ("m1", "m2", "m3"):
        assert statuses(report, m, OTHER_CHECKS) == {"skipped"}
    assert "limited: kube-apiserver, kube-controller-manager, kube-scheduler not checked" in table
    doc = report.to_json()
    assert doc["ok"] is True and doc["limited"] == [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ]
    json.dumps(doc)  # serialisable


def test_stale_and_missing_members_are_named_with_the_command(
    shared_cluster: EtcdCluster, pki: EtcdPKI
) -> None:
    expected = expected_of(shared_cluster)
    # The inventory lost m3 and gained m4: m3 is stale, m4 missing.
    members = dict(expected.members)
    stale_url = members.pop("m3")
    members["m4"] = "https://127.0.0.1:9"
    report = verify_masters(
        endpoints_of(shared_cluster)[:2],
        Expected(members, expected.etcd_version, expected.kubernetes_minor),
        creds_of(pki),
        components=("etcd",),
        timeout=2.0,
    )
    status, detail = result(report, "m1", "etcd-members")
    assert status == "fail"
    assert "stale member m3" in detail and stale_url in detail
    assert "missing m4" in detail
    hint = next(r.hint for r in report.results if r.master == "m1" and r.check == "etcd-members")
    assert hint is not None
    assert "bootstrap remove-master m3" in hint and "member remove" in hint
    assert report.exit_code() == 1


# --- members down ---------------------------------------------------------------------


def test_one_member_down_fails_that_master_and_reports_quorum_held(
    cluster: EtcdCluster, pki: EtcdPKI
) -> None:
    cluster.member("m2").kill()

    def accept(r: VerifyReport) -> bool:
        return (
            all(statuses(r, m, ETCD_CHECKS) == {"ok"} for m in ("m1", "m3"))
            and "quorum held" in r.summary[0]
        )

    report = settle("two members to agree on a leader", lambda: run(cluster, pki), accept)
    assert statuses(report, "m2", ETCD_CHECKS) == {"fail"}
    assert "2/3 voting members reachable: quorum held" in report.summary[0]
    status, detail = result(report, "m2", "etcd-leader")
    assert status == "fail" and "quorum held" in detail
    assert "refused" in result(report, "m2", "etcd-members")[1]
    assert not report.ok() and report.exit_code() == 1
    table = report.table()
    assert "m2 etcd-health" in table and "hint:" in table
    print(table)
    # Each distinct hint once, however many checks share it.
    hint_lines = [line for line in table.splitlines() if "hint:" in line]
    assert len(hint_lines) == len(set(hint_lines)) == len({r.hint for r in report.failures})


def test_two_members_down_reports_quorum_lost(cluster: EtcdCluster, pki: EtcdPKI) -> None:
    cluster.member("m1").kill()
    cluster.member("m2").kill()

    def accept(r: VerifyReport) -> bool:
        return "QUORUM LOST" in r.summary[0] and result(r, "m3", "etcd-leader")[0] == "fail"

    report = settle("the survivor to lose its leader", lambda: run(cluster, pki), accept)
    assert "1/3 voting members reachable: QUORUM LOST" in report.summary[0]
    for m in ("m1", "m2"):
        assert statuses(report, m, ETCD_CHECKS) == {"fail"}
    assert "QUORUM LOST" in result(report, "m3", "etcd-leader")[1]
    # Alarms go through raft: without quorum they cannot be listed, and that is a failure.
    assert result(report, "m3", "etcd-alarms")[0] == "fail"
    assert report.exit_code() == 1


# --- kube components ------------------------------------------------------------------


def test_components_reported_not_running_are_never_ok(
    shared_cluster: EtcdCluster, pki: EtcdPKI
) -> None:
    def unavailable(component: str) -> PodState:
        return PodState(component, "ImageUnavailable", False, 0, None, "cri")

    pods = {
        m.name: {
            "kube-apiserver": unavailable("kube-apiserver"),
            "kube-controller-manager": unavailable("kube-controller-manager"),
            "kube-scheduler": unavailable("kube-scheduler"),
            "etcd": PodState("etcd", "Running", None, 0, None, "cri", "c0ffee"),
        }
        for m in shared_cluster.members
    }
    report = run(
        shared_cluster,
        pki,
        components=("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"),
        pod_states=pods,
    )
    for m in ("m1", "m2", "m3"):
        assert statuses(report, m, ETCD_CHECKS) == {"ok"}
        for check in OTHER_CHECKS:
            status, detail = result(report, m, check)
            assert status == "not running" and detail == "not running (ImageUnavailable)"
    assert not any(r.ok for r in report.results if r.status == "not running")
    assert not report.ok() and report.exit_code() == 1
    assert "not running" in report.table()
    assert "limited" not in report.table()


def test_unreachable_components_fail_with_a_hint(shared_cluster: EtcdCluster, pki: EtcdPKI) -> None:
    report = run(
        shared_cluster,
        pki,
        components=("kube-apiserver", "kube-controller-manager", "kube-scheduler"),
    )
    for m in ("m1", "m2", "m3"):
        assert statuses(report, m, ETCD_CHECKS) == {"skipped"}
        for check in OTHER_CHECKS:
            r = next(x for x in report.results if x.master == m and x.check == check)
            assert r.status == "fail" and "refused" in r.detail and r.hint
    assert "limited: etcd not checked" in report.table()
    assert result(report, "m1", "scheduler-livez")[1].startswith("GET /livez")


def test_scheduler_path_follows_the_kubernetes_version(
    shared_cluster: EtcdCluster, pki: EtcdPKI
) -> None:
    expected = expected_of(shared_cluster)
    report = verify_masters(
        endpoints_of(shared_cluster),
        Expected(expected.members, expected.etcd_version, (1, 31)),
        creds_of(pki),
        components=("kube-scheduler",),
        timeout=2.0,
    )
    assert result(report, "m1", "scheduler-livez")[1].startswith("GET /healthz")


def test_silent_endpoint_fails_within_the_timeout(pki: EtcdPKI) -> None:
    # TCP connects but nothing ever answers (a tunnel to a hung host): each check ends at
    # its timeout and says so instead of hanging.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        ep = MasterEndpoints(
            name="m1",
            etcd_client=("127.0.0.1", port),
            etcd_metrics=("127.0.0.1", port),
            apiserver=("127.0.0.1", port),
            controller_manager=None,
            scheduler=None,
        )
        report = verify_masters(
            [ep],
            Expected({"m1": "https://127.0.0.1:1"}, (3, 5, 1), (1, 34)),
            creds_of(pki),
            components=("etcd", "kube-apiserver"),
            timeout=1.0,
        )
    assert statuses(report, "m1", ETCD_CHECKS) == {"fail"}
    assert "within 1s" in result(report, "m1", "etcd-members")[1]
    assert "within 1s" in result(report, "m1", "apiserver-livez-etcd")[1]
    assert "0/1 voting members reachable: QUORUM LOST" in report.summary[0]


def test_unknown_component_is_a_usage_error(shared_cluster: EtcdCluster, pki: EtcdPKI) -> None:
    from bootstrap.errors import UsageError

    with pytest.raises(UsageError):
        run(shared_cluster, pki, components=("etcd", "kubelet"))


# --- the HTTPS helper, against etcd's real TLS listener -------------------------------
# etcd's client port also answers plain HTTPS GETs (/health, /version) and demands a
# client cert: a real server to prove verification is done, and done right.


def test_https_get_verifies_the_server_against_the_named_ca(
    shared_cluster: EtcdCluster, pki: EtcdPKI
) -> None:
    from bootstrap.transport import httpcheck

    port = shared_cluster.member("m1").client_port
    good = httpcheck.ClientTLS(
        pki.ca, pki.apiserver_etcd_client.cert, pki.apiserver_etcd_client.key
    )
    res = httpcheck.get("127.0.0.1", port, "/health", tls=good, timeout=2.0)
    assert res.status == 200 and '"health":"true"' in res.text
    # The cert's SAN "localhost" verifies when named explicitly (the tunnel case).
    res = httpcheck.get(
        "127.0.0.1", port, "/health", tls=good, timeout=2.0, server_name="localhost"
    )
    assert res.status == 200

    with pytest.raises(httpcheck.HTTPCheckError) as wrong_name:
        httpcheck.get("127.0.0.1", port, "/health", tls=good, timeout=2.0, server_name="wrong.test")
    assert wrong_name.value.kind == "tls-server" and "TLS" in str(wrong_name.value)

    other_ca = httpcheck.ClientTLS(
        pki.other_ca, pki.apiserver_etcd_client.cert, pki.apiserver_etcd_client.key
    )
    with pytest.raises(httpcheck.HTTPCheckError) as untrusted:
        httpcheck.get("127.0.0.1", port, "/health", tls=other_ca, timeout=2.0)
    assert untrusted.value.kind == "tls-server" and str(pki.other_ca) in str(untrusted.value)

    foreign = httpcheck.ClientTLS(pki.ca, pki.foreign_client.cert, pki.foreign_client.key)
    with pytest.raises(httpcheck.HTTPCheckError) as refused:
        httpcheck.get("127.0.0.1", port, "/health", tls=foreign, timeout=2.0)
    assert refused.value.kind == "tls-client" and str(pki.foreign_client.cert) in str(refused.value)


def test_https_get_unverified_mode_skips_only_server_verification(
    shared_cluster: EtcdCluster, pki: EtcdPKI
) -> None:
    from bootstrap.transport import httpcheck

    port = shared_cluster.member("m1").client_port
    # Trusting nothing, yet the handshake completes: this is the self-signed-component mode.
    unverified = httpcheck.ClientTLS(
        None, pki.apiserver_etcd_client.cert, pki.apiserver_etcd_client.key, verify=False
    )
    assert httpcheck.get("127.0.0.1", port, "/health", tls=unverified, timeout=2.0).status == 200
    with pytest.raises(httpcheck.HTTPCheckError) as no_ca:
        httpcheck.make_context(httpcheck.ClientTLS(None))
    assert no_ca.value.kind == "tls-config"


def test_https_get_ignores_the_environment_trust_store(
    shared_cluster: EtcdCluster, pki: EtcdPKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bootstrap.transport import httpcheck

    # Pointing the usual variables at our CA must not make an unrelated CA trusted, and
    # pointing them elsewhere must not break the named CA.
    for var in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.setenv(var, str(pki.ca))
    port = shared_cluster.member("m1").client_port
    other_ca = httpcheck.ClientTLS(
        pki.other_ca, pki.apiserver_etcd_client.cert, pki.apiserver_etcd_client.key
    )
    with pytest.raises(httpcheck.HTTPCheckError):
        httpcheck.get("127.0.0.1", port, "/health", tls=other_ca, timeout=2.0)
