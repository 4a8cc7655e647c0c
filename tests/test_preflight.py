"""Preflight checks are pure functions over facts; the facts parser reads the real output
of the remote script (run here locally with sh, the same script the hosts run)."""

from __future__ import annotations

import subprocess
import time

from bootstrap.node.preflight import (
    FACTS_SCRIPT,
    HostFacts,
    blocking,
    evaluate,
    parse_facts,
    parse_listening_ports,
    table,
)

CA = "a" * 64


def facts(host: str, **over: object) -> HostFacts:
    base: dict[str, object] = {
        "host": host,
        "uid": 0,
        "hostname": host,
        "machine_id": f"id-{host}",
        "clock_skew": 0.1,
        "round_trip": 0.01,
        "listening_ports": frozenset({22}),
        "etcd_data_entries": (),
        "remote_ca_sha256": None,
        "manifests_dir": True,
        "kubelet": ("lab-runner",),
        "free_kib": {"/etc/kubernetes": 10**7, "/var/lib/etcd": 10**7},
    }
    base.update(over)
    return HostFacts(**base)  # type: ignore[arg-type]


def errors(findings: list) -> set[tuple[str, str]]:  # type: ignore[type-arg]
    return {(f.host, f.check) for f in blocking(findings)}


def test_clean_hosts_pass() -> None:
    findings = evaluate([facts("m1"), facts("m2"), facts("m3")], cluster_ca_sha256=CA)
    assert errors(findings) == set()
    assert "ERROR" not in table(findings)


def test_each_problem_is_named() -> None:
    bad = [
        facts("m1", uid=1000),
        facts("m2", hostname="m1", machine_id="id-m1"),
        facts(
            "m3",
            clock_skew=42.0,
            listening_ports=frozenset({2379, 6443}),
            etcd_data_entries=("member",),
            free_kib={"/etc/kubernetes": 10, "/var/lib/etcd": 10},
        ),
    ]
    found = errors(evaluate(bad, cluster_ca_sha256=CA))
    assert found == {
        ("m1", "Sudo"),
        ("m1", "HostnameUnique"),
        ("m2", "HostnameUnique"),
        ("m1", "MachineIDUnique"),
        ("m2", "MachineIDUnique"),
        ("m3", "ClockSkew"),
        ("m3", "Port-2379"),
        ("m3", "Port-6443"),
        ("m3", "DirAvailable--var-lib-etcd"),
        ("m3", "DiskSpace"),
    }


def test_ports_and_data_of_this_cluster_are_fine() -> None:
    ours = facts(
        "m1",
        remote_ca_sha256=CA,
        listening_ports=frozenset({2379, 2380, 6443}),
        etcd_data_entries=("member",),
    )
    assert errors(evaluate([ours], cluster_ca_sha256=CA)) == set()
    other = facts("m1", remote_ca_sha256="b" * 64, listening_ports=frozenset({2379}))
    assert ("m1", "Port-2379") in errors(evaluate([other], cluster_ca_sha256=CA))


def test_ignore_named_and_all() -> None:
    bad = [facts("m1", clock_skew=30.0, uid=5)]
    left = errors(evaluate(bad, cluster_ca_sha256=CA, ignore=["ClockSkew"]))
    assert left == {("m1", "Sudo")}
    assert errors(evaluate(bad, cluster_ca_sha256=CA, ignore=["all"])) == set()


def test_missing_kubelet_and_manifests_dir_are_warnings() -> None:
    findings = evaluate([facts("m1", kubelet=(), manifests_dir=False)], cluster_ca_sha256=CA)
    assert errors(findings) == set()
    assert {(f.check, f.severity) for f in findings if f.severity == "warning"} == {
        ("Kubelet", "warning"),
        ("StaticPodPath", "warning"),
    }


DEBIAN_DIRS = (
    "/etc/ssl/certs",
    "/etc/ca-certificates",
    "/usr/local/share/ca-certificates",
    "/usr/share/ca-certificates",
)
RHEL_HOST = ("/etc/ssl/certs", "/etc/pki/ca-trust", "/etc/pki/tls/certs")


def test_trust_store_dirs_the_inventory_does_not_mount_are_a_warning() -> None:
    findings = evaluate(
        [facts("m1", trust_store_dirs=RHEL_HOST), facts("m2", trust_store_dirs=DEBIAN_DIRS)],
        cluster_ca_sha256=CA,
        ca_cert_dirs=DEBIAN_DIRS,
    )
    assert errors(findings) == set()  # the cluster works; outside TLS would not
    (warning,) = [f for f in findings if f.check == "CACertDirs" and f.severity == "warning"]
    assert warning.host == "m1"
    assert warning.detail.startswith("/etc/pki/ca-trust, /etc/pki/tls/certs on the host")
    assert "caCertDirs: [/etc/ssl/certs, /etc/pki/ca-trust, /etc/pki/tls/certs]" in warning.detail
    ok = [f for f in findings if f.check == "CACertDirs" and f.host == "m2"]
    assert [f.severity for f in ok] == ["ok"]
    rhel = evaluate([facts("m1", trust_store_dirs=RHEL_HOST)], cluster_ca_sha256=CA,
                    ca_cert_dirs=RHEL_HOST)
    assert [f.severity for f in rhel if f.check == "CACertDirs"] == ["ok"]


def test_listening_ports_parser() -> None:
    lines = [
        "  sl  local_address rem_address   st",
        "   0: 0100007F:0953 00000000:0000 0A 00000000:00000000",  # 2387 listen
        "   1: 0100007F:1A0B 0100007F:9C40 01 00000000:00000000",  # established, ignored
        "   2: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A",
    ]
    assert parse_listening_ports(lines) == {0x0953, 0x1F90}


def test_facts_script_output_parses_on_this_machine() -> None:
    started = time.time()
    out = subprocess.run(["sh", "-c", FACTS_SCRIPT], capture_output=True, text=True, check=False)
    f = parse_facts("local", out.stdout, started, time.time())
    assert f.uid == 0
    assert f.hostname
    assert abs(f.clock_skew) < 5
    assert set(f.free_kib) == {"/etc/kubernetes", "/var/lib/etcd"}
    assert "/etc/ssl/certs" in f.trust_store_dirs  # every distribution has it
