"""Inventory loading and validation: the example, every invalid case, warnings, paths,
SSH merging, the JSON Schema, and fuzzing (any input gives an Inventory or an
InventoryError, never anything else)."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootstrap.errors import InputError, InventoryError
from bootstrap.inventory import (
    DEFAULT_ETCD_FOR_MINOR,
    Inventory,
    JumpHost,
    json_schema,
    load,
    load_text,
)
from bootstrap.inventory.fields import (
    CERTIFICATES_KEYS,
    COMPONENTS,
    JUMP_HOST_KEYS,
    MASTER_KEYS,
    NETWORKING_KEYS,
    SSH_KEYS,
    TIMEOUTS_KEYS,
    TOP_KEYS,
)
from bootstrap.inventory.flags import MANAGED

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "inventory.example.yaml"
CASES = Path(__file__).resolve().parent / "data" / "inventories"
INVALID_FILES = sorted(CASES.glob("*.yaml"))

MINIMAL = """\
kubernetesVersion: v1.34.1
masters:
  - {name: cp1, address: 10.0.0.11}
  - {name: cp2, address: 10.0.0.12}
  - {name: cp3, address: 10.0.0.13}
"""


def problems_of(text: str, source: Path | None = None) -> list[str]:
    with pytest.raises(InventoryError) as info:
        load_text(text, source)
    return info.value.problems


# --- the example ------------------------------------------------------------------------


def test_example_loads_with_expected_values() -> None:
    inv = load(EXAMPLE)
    assert inv.cluster_name == "kubernetes"
    assert inv.kubernetes_version == "v1.37.2"
    assert inv.kubernetes_minor == (1, 37)
    assert inv.etcd_version == "3.7.0"
    assert inv.control_plane_host == "k8s-api.example.internal"
    assert inv.control_plane_port == 6443
    assert inv.control_plane_endpoint == "k8s-api.example.internal:6443"
    assert inv.service_subnet == ipaddress.ip_network("10.96.0.0/12")
    assert inv.pod_subnet == ipaddress.ip_network("10.244.0.0/16")
    assert inv.dns_domain == "cluster.local"
    assert inv.image_repository == "registry.k8s.io"
    assert inv.key_algorithm == "ECDSA-P256"
    assert inv.ca_validity_seconds == 87600 * 3600
    assert inv.cert_validity_seconds == 8760 * 3600
    assert inv.apiserver_extra_sans == ("k8s-api.example.internal", "10.0.0.10")
    assert inv.etcd_extra_sans == ()
    assert inv.encryption_at_rest is True
    assert inv.extra_args == {"kube-apiserver": {"audit-log-maxage": "30"}}
    assert inv.timeouts.etcd_quorum == 120 and inv.timeouts.apiserver_ready == 240
    assert inv.timeouts.poll_interval == 0.5  # model default, not in the file
    assert [m.name for m in inv.masters] == ["cp1", "cp2", "cp3"]
    assert [str(m.address) for m in inv.masters] == ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
    assert [m.ssh_host for m in inv.masters] == ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
    assert [m.ssh.port for m in inv.masters] == [22, 22, 2222]
    home = Path("~").expanduser()
    for master in inv.masters:
        assert master.ssh.user == "root" and master.ssh.sudo is False
        assert master.ssh.identity_file == home / ".ssh" / "id_ed25519"
        assert master.ssh.known_hosts == home / ".ssh" / "known_hosts"
        assert master.ssh.host_key_policy == "strict"
        assert master.ssh.jump_host is None
    assert inv.masters[0].peer_url == "https://10.0.0.11:2380"
    assert inv.source == EXAMPLE
    assert inv.warnings == ()


def test_minimal_inventory_gets_the_documented_defaults() -> None:
    inv = load_text(MINIMAL)
    assert inv.cluster_name == "kubernetes"
    assert inv.etcd_version == DEFAULT_ETCD_FOR_MINOR[(1, 34)]
    assert (inv.control_plane_host, inv.control_plane_port) == ("10.0.0.11", 6443)
    assert inv.service_subnet == ipaddress.ip_network("10.96.0.0/12")
    assert inv.pod_subnet is None
    assert inv.dns_domain == "cluster.local"
    assert inv.image_repository == "registry.k8s.io"
    assert inv.key_algorithm == "ECDSA-P256"
    assert inv.ca_validity_seconds == 10 * 365 * 86400
    assert inv.cert_validity_seconds == 365 * 86400
    assert inv.encryption_at_rest is True
    assert inv.extra_args == {}
    assert inv.masters[0].ssh.user == "root" and inv.masters[0].ssh.sudo is False
    assert inv.masters[0].ssh.known_hosts == Path("~/.ssh/known_hosts").expanduser()
    assert inv.source is None


@pytest.mark.parametrize(("minor", "etcd"), sorted(DEFAULT_ETCD_FOR_MINOR.items()))
def test_etcd_version_defaults_to_kubeadms_choice(minor: tuple[int, int], etcd: str) -> None:
    text = MINIMAL.replace("v1.34.1", f"v{minor[0]}.{minor[1]}.2")
    inv = load_text(text)
    assert inv.etcd_version == etcd
    assert inv.warnings == ()


def test_etcd_mapping_is_kubeadms() -> None:
    # What the newest patch release of each kubeadm minor deploys for its own minor
    # (constants.go of kubeadm v1.34.4, v1.35.4, v1.36.3, v1.37.2; docs/v1.37.md).
    assert DEFAULT_ETCD_FOR_MINOR == {
        (1, 30): "3.5.12",
        (1, 31): "3.5.24",
        (1, 32): "3.5.24",
        (1, 33): "3.5.24",
        (1, 34): "3.6.5",
        (1, 35): "3.6.6",
        (1, 36): "3.6.8",
        (1, 37): "3.7.0",
    }


# --- every invalid case: field path AND line ----------------------------------------


def _expectations(path: Path) -> list[tuple[str, str]]:
    found = []
    for line in path.read_text().splitlines():
        if line.startswith("# expect:"):
            prefix, _, needle = line.removeprefix("# expect:").partition("|")
            found.append((prefix.strip(), needle.strip()))
    return found


def test_there_are_enough_distinct_invalid_cases() -> None:
    assert len(INVALID_FILES) >= 15
    assert all(_expectations(p) for p in INVALID_FILES)


@pytest.mark.parametrize("path", INVALID_FILES, ids=lambda p: p.stem)
def test_invalid_inventory_names_field_and_line(path: Path) -> None:
    with pytest.raises(InventoryError) as info:
        load(path)
    err = info.value
    assert err.exit_code == 2 and isinstance(err, InputError)
    assert err.hint
    expected = _expectations(path)
    for prefix, needle in expected:
        hits = [p for p in err.problems if p.startswith(prefix + ":") and needle in p]
        assert hits, f"no problem {prefix}: ...{needle}... in:\n{err}"
    # Exactly the expected problems, no follow-on noise.
    assert len(err.problems) == len(expected), str(err)
    assert str(path) in err.message
    for problem in err.problems:  # str() lists each one
        assert problem in str(err)


def test_three_different_errors_are_reported_together() -> None:
    with pytest.raises(InventoryError) as info:
        load(CASES / "three-errors.yaml")
    problems = info.value.problems
    assert len(problems) == 3
    assert [p.split(" ", 1)[0] for p in problems] == [
        "etcdVersion",
        "networking.serviceSubnet",
        "masters[2].address",
    ]
    assert "(3 problems)" in info.value.message


def test_problems_are_listed_in_file_order() -> None:
    problems = problems_of(
        "masters:\n"
        "  - {name: cp1, address: 10.0.0.11}\n"
        "  - {name: cp1, address: 10.0.0.12}\n"
        "  - {name: cp3, address: nope}\n"
        "kubernetesVersion: v2.0.0\n"
    )
    lines = [int(m[1]) for m in (re.search(r"\(line (\d+)\)", p) for p in problems) if m]
    assert lines == sorted(lines) and len(lines) == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "(top level): the inventory is empty"),
        ("# only a comment\n", "(top level): the inventory is empty"),
        ("just text\n", "(top level) (line 1): expected a mapping of settings, got a string"),
        ("a: 1\n---\nb: 2\n", "line 2, column 1: expected a single document"),
        ("a: [1, 2\n", "line 2, column 1: "),
        ("a:\n\tb: 1\n", "line 2, column 1: "),
        ("a: \x00\n", "line 1: character U+0000 is not allowed in YAML"),
        ("a: b\nc: \ud800\n", "line 2: character U+D800 is not allowed in YAML"),
        ("x: *nowhere\n", "found undefined alias 'nowhere'"),
    ],
)
def test_unparseable_text_is_an_inventory_error(text: str, expected: str) -> None:
    problems = problems_of(text)
    assert len(problems) == 1 and expected in problems[0], problems


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_bytes(b"kubernetesVersion: v1.34.1\nclusterName: caf\xe9\n")
    with pytest.raises(InventoryError) as info:
        load(path)
    assert info.value.problems == ["line 2: not UTF-8 text (byte 43)"]


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    assert load(path).kubernetes_version == "v1.34.1"


def test_missing_file_is_an_inventory_error(tmp_path: Path) -> None:
    with pytest.raises(InventoryError) as info:
        load(tmp_path / "nope.yaml")
    assert "cannot read inventory" in info.value.message and info.value.exit_code == 2
    with pytest.raises(InventoryError):
        load(tmp_path)  # a directory


# --- specific checks ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "host", "port"),
    [
        ("k8s.example.internal", "k8s.example.internal", 6443),
        ("k8s.example.internal:443", "k8s.example.internal", 443),
        ("10.0.0.10", "10.0.0.10", 6443),
        ("10.0.0.10:8443", "10.0.0.10", 8443),
        ("[fd00::10]:8443", "fd00::10", 8443),
        ("[fd00:0::10]", "fd00::10", 6443),
        ("fd00::10", "fd00::10", 6443),
    ],
)
def test_control_plane_endpoint_forms(endpoint: str, host: str, port: int) -> None:
    inv = load_text(f'controlPlaneEndpoint: "{endpoint}"\n' + MINIMAL)
    assert (inv.control_plane_host, inv.control_plane_port) == (host, port)


@pytest.mark.parametrize(
    "endpoint", ["K8S.example", "host:", "[10.0.0.1]:443", "a b", "[fd00::1]:0", "x:y:z"]
)
def test_bad_control_plane_endpoints(endpoint: str) -> None:
    problems = problems_of(f'controlPlaneEndpoint: "{endpoint}"\n' + MINIMAL)
    assert len(problems) == 1 and problems[0].startswith("controlPlaneEndpoint (line 1): ")


def test_ipv6_masters_and_subnets() -> None:
    inv = load_text(
        "kubernetesVersion: v1.33.0\n"
        "networking: {serviceSubnet: 'fd00:10:96::/112', podSubnet: 'fd00:10:244::/56'}\n"
        "masters:\n"
        "  - {name: cp1, address: 'fd00::11'}\n"
        "  - {name: cp2, address: 'fd00::12'}\n"
        "  - {name: cp3, address: 1:2:3:4:5:6:7:8}\n"  # a YAML 1.1 integer, read as text
    )
    assert inv.control_plane_endpoint == "[fd00::11]:6443"
    assert inv.masters[0].client_url == "https://[fd00::11]:2379"
    assert str(inv.masters[2].address) == "1:2:3:4:5:6:7:8"


def test_service_subnet_size_limits() -> None:
    too_large = problems_of("networking: {serviceSubnet: 172.0.0.0/8}\n" + MINIMAL)
    assert too_large == [
        "networking.serviceSubnet (line 1): 172.0.0.0/8 is too large for kube-apiserver: "
        "the prefix must be at least /12"
    ]
    too_small = problems_of("networking: {serviceSubnet: 10.96.0.0/29}\n" + MINIMAL)
    assert "too small" in too_small[0]


def test_address_that_cannot_be_advertised() -> None:
    problems = problems_of(MINIMAL.replace("10.0.0.13", "0.0.0.0"))
    assert problems == [
        "masters[2].address (line 5): 0.0.0.0 cannot be a master's address "
        "(unspecified or multicast)"
    ]


def test_huge_and_odd_numbers_are_reported_not_raised() -> None:
    text = (
        f"ssh: {{port: {'9' * 5000}, connectTimeout: 1e999}}\n"
        "timeouts: {etcdQuorum: .inf, pollInterval: -1, apiserverReady: 0x10}\n" + MINIMAL
    )
    problems = problems_of(text)
    assert [p.split(":", 1)[0] for p in problems] == [
        "ssh.port (line 1)",
        "ssh.connectTimeout (line 1)",
        "timeouts.etcdQuorum (line 2)",
        "timeouts.pollInterval (line 2)",
    ]


def test_ca_cert_dirs_default_and_override() -> None:
    assert load_text(MINIMAL).ca_cert_dirs == (
        "/etc/ssl/certs",
        "/etc/ca-certificates",
        "/usr/local/share/ca-certificates",
        "/usr/share/ca-certificates",
    )
    rhel = load_text(
        MINIMAL + "caCertDirs: [/etc/ssl/certs, /etc/pki/ca-trust, /etc/pki/tls/certs]\n"
    )
    assert rhel.ca_cert_dirs == ("/etc/ssl/certs", "/etc/pki/ca-trust", "/etc/pki/tls/certs")
    assert rhel.warnings == ()


def test_empty_ca_cert_dirs_warns_about_missing_roots() -> None:
    inventory = load_text(MINIMAL + "caCertDirs: []\n")
    assert inventory.ca_cert_dirs == ()
    assert any(w.startswith("caCertDirs (line 6): empty") for w in inventory.warnings), (
        inventory.warnings
    )


def test_extra_args_values_become_strings() -> None:
    inv = load_text(
        "extraArgs:\n"
        "  etcd: {snapshot-count: 10000, quota-backend-bytes: '8589934592'}\n"
        "  kube-apiserver: {profiling: false, v: 2, audit-policy-file: ''}\n"
        "  kube-scheduler:\n" + MINIMAL
    )
    assert inv.extra_args == {
        "etcd": {"snapshot-count": "10000", "quota-backend-bytes": "8589934592"},
        "kube-apiserver": {"profiling": "false", "v": "2", "audit-policy-file": ""},
        "kube-scheduler": {},
    }


def test_null_sections_read_as_absent() -> None:
    inv = load_text("networking:\nssh:\ncertificates:\nextraArgs:\ntimeouts:\n" + MINIMAL)
    assert inv == load_text(MINIMAL)


# --- warnings ---------------------------------------------------------------------------


def _masters(count: int) -> str:
    lines = [f"  - {{name: cp{i}, address: 10.0.0.{10 + i}}}" for i in range(count)]
    return "kubernetesVersion: v1.34.1\nmasters:\n" + "\n".join(lines) + "\n"


@pytest.mark.parametrize("count", [2, 4, 6])
def test_even_master_count_warns(count: int) -> None:
    inv = load_text(_masters(count))
    assert len(inv.warnings) == 1
    assert inv.warnings[0].startswith("masters (line 3): ")
    assert f"{count} masters tolerate no more failures than {count - 1}" in inv.warnings[0]


def test_single_master_is_allowed_with_a_dev_only_warning() -> None:
    inv = load_text(_masters(1))
    assert len(inv.masters) == 1
    assert inv.warnings == (
        "masters (line 3): a single master is for development only: etcd has no fault tolerance",
    )


@pytest.mark.parametrize("count", [3, 5, 7])
def test_odd_master_count_does_not_warn(count: int) -> None:
    assert load_text(_masters(count)).warnings == ()


def test_more_than_seven_masters_warns() -> None:
    assert any("more than 7" in w for w in load_text(_masters(9)).warnings)


def test_version_pair_differing_from_kubeadm_warns() -> None:
    inv = load_text("etcdVersion: 3.5.21-0\n" + MINIMAL)
    assert inv.etcd_version == "3.5.21-0"
    assert inv.warnings == (
        "etcdVersion (line 1): etcd 3.5.21-0 differs from 3.6.5, the version kubeadm "
        "deploys with Kubernetes v1.34",
    )
    assert load_text("etcdVersion: 3.6.5-0\n" + MINIMAL).warnings == ()


def test_cert_outliving_ca_warns() -> None:
    inv = load_text("certificates: {caValidity: 365d, certValidity: 400d}\n" + MINIMAL)
    assert inv.cert_validity_seconds == 400 * 86400
    assert len(inv.warnings) == 1 and "outlive" in inv.warnings[0]


# --- paths and SSH merging --------------------------------------------------------------


def test_relative_paths_resolve_against_the_inventory_directory(tmp_path: Path) -> None:
    conf = tmp_path / "site" / "inventory.yaml"
    conf.parent.mkdir()
    conf.write_text(
        "ssh:\n"
        "  identityFile: keys/id_ed25519\n"
        "  knownHosts: ../known_hosts\n"
        "  jumpHost: {address: bastion.example, identityFile: keys/bastion}\n"
        "masters:\n"
        "  - name: cp1\n"
        "    address: 10.0.0.11\n"
        "    ssh: {identityFile: /abs/key}\n"
        "kubernetesVersion: v1.34.1\n"
    )
    ssh = load(conf).masters[0].ssh
    assert ssh.identity_file == Path("/abs/key")
    assert ssh.known_hosts == tmp_path / "site" / ".." / "known_hosts"
    assert ssh.jump_host == JumpHost(
        address="bastion.example", identity_file=tmp_path / "site" / "keys" / "bastion"
    )
    other = load(conf).masters  # the same file twice gives equal values
    assert other == load(conf).masters


def test_relative_source_path_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    inv = load_text("ssh: {identityFile: id}\n" + MINIMAL, source=Path("inv.yaml"))
    assert inv.masters[0].ssh.identity_file == tmp_path / "id"


def test_tilde_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    inv = load_text("ssh: {identityFile: ~/.ssh/k, knownHosts: ~/kh}\n" + MINIMAL)
    ssh = inv.masters[0].ssh
    assert ssh.identity_file == tmp_path / ".ssh" / "k"
    assert ssh.known_hosts == tmp_path / "kh"


def test_per_master_ssh_override_is_merged_over_the_defaults() -> None:
    inv = load_text(
        "kubernetesVersion: v1.34.1\n"
        "ssh:\n"
        "  user: ops\n"
        "  port: 2200\n"
        "  identityFile: /keys/ops\n"
        "  hostKeyPolicy: accept-new\n"
        "  connectTimeout: 5\n"
        "  jumpHost: {address: 192.0.2.1, user: jump, port: 2022}\n"
        "masters:\n"
        "  - {name: cp1, address: 10.0.0.11}\n"
        "  - name: cp2\n"
        "    address: 10.0.0.12\n"
        "    sshHost: cp2.mgmt.example\n"
        "    ssh: {port: 22, user: root, jumpHost: null, identityFile: null}\n"
        "  - name: cp3\n"
        "    address: 10.0.0.13\n"
        "    ssh: {user: admin, sudo: false, hostKeyPolicy: strict}\n"
    )
    cp1, cp2, cp3 = inv.masters
    jump = JumpHost(address="192.0.2.1", port=2022, user="jump")
    # cp1: only the defaults; a non-root user gets sudo.
    assert (cp1.ssh.user, cp1.ssh.port, cp1.ssh.sudo) == ("ops", 2200, True)
    assert cp1.ssh.identity_file == Path("/keys/ops")
    assert (cp1.ssh.host_key_policy, cp1.ssh.connect_timeout) == ("accept-new", 5.0)
    assert cp1.ssh.jump_host == jump and cp1.ssh_host == "10.0.0.11"
    # cp2: overrides win key by key; null removes the jump host and the key file.
    assert (cp2.ssh.user, cp2.ssh.port, cp2.ssh.sudo) == ("root", 22, False)
    assert cp2.ssh.jump_host is None and cp2.ssh.identity_file is None
    assert cp2.ssh.host_key_policy == "accept-new" and cp2.ssh.connect_timeout == 5.0
    assert cp2.ssh_host == "cp2.mgmt.example"
    # cp3: explicit sudo wins over the user-based default.
    assert (cp3.ssh.user, cp3.ssh.port, cp3.ssh.sudo) == ("admin", 2200, False)
    assert cp3.ssh.host_key_policy == "strict" and cp3.ssh.jump_host == jump


def test_yaml_anchors_and_merge_keys_work() -> None:
    inv = load_text(
        "kubernetesVersion: v1.34.1\n"
        "ssh: &ssh {user: ops, port: 2200}\n"
        "masters:\n"
        "  - {name: cp1, address: 10.0.0.11, ssh: *ssh}\n"
        "  - name: cp2\n"
        "    address: 10.0.0.12\n"
        "    ssh: {<<: *ssh, port: 22}\n"
        "  - {name: cp3, address: 10.0.0.13, ssh: {<<: [{port: 1}, *ssh]}}\n"
    )
    assert [m.ssh.port for m in inv.masters] == [2200, 22, 1]
    assert {m.ssh.user for m in inv.masters} == {"ops"}


def test_unknown_key_inside_a_merged_anchor_is_reported_at_the_anchor() -> None:
    problems = problems_of(
        "x-defaults: &d {usr: ops}\n"
        "kubernetesVersion: v1.34.1\n"
        "ssh: {<<: *d}\n"
        "masters: [{name: cp1, address: 10.0.0.11}]\n"
    )
    assert problems == [
        "x-defaults (line 1): unknown key (known: " + ", ".join(TOP_KEYS) + ")",
        "ssh.usr (line 1): unknown key; did you mean 'user'?",
    ]


# --- adversarial input ----------------------------------------------------------------


def test_billion_laughs_is_cheap() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 30):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    lines.append("masters: *a29")
    lines.append("certificates: {apiServerExtraSANs: *a29}")
    problems = problems_of("\n".join(lines) + "\n")
    # Each item is reported once, at the line of the anchor it aliases; nothing expands.
    masters = [p for p in problems if p.startswith("masters[")]
    assert masters == [f"masters[{i}] (line 29): expected a mapping, got a list" for i in range(10)]
    sans = [p for p in problems if p.startswith("certificates.apiServerExtraSANs[")]
    assert len(sans) == 10
    assert len(problems) == 30 + 10 + 10 + 1  # a0..a29 unknown, masters, SANs, version


@pytest.mark.parametrize("opener", ["[", "{a: ", "- "])
def test_deeply_nested_input(opener: str) -> None:
    with pytest.raises(InventoryError):
        load_text(opener * 20000)


def test_empty_jump_host_needs_an_address() -> None:
    problems = problems_of("ssh: {jumpHost: {}}\n" + MINIMAL)
    assert problems == ["ssh.jumpHost.address (line 1): required"]


def test_recursive_aliases_and_merges() -> None:
    with pytest.raises(InventoryError):
        load_text("masters: &m [*m]\nkubernetesVersion: v1.34.1\n")
    problems = problems_of("ssh: &s {<<: *s}\n" + MINIMAL)
    assert problems  # an alias to an anchor still being defined is an undefined alias
    chain = ["m0: &m0 {user: ops}"]
    for i in range(1, 40):
        chain.append(f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}]}}")
    with pytest.raises(InventoryError) as info:
        load_text("\n".join(chain) + "\nssh: {<<: *m39}\n" + MINIMAL)
    assert all("unknown key" in p for p in info.value.problems)  # only the m* keys


def test_tags_never_construct_objects() -> None:
    problems = problems_of(
        "clusterName: !!python/object/apply:os.system ['true']\n"
        "encryptionAtRest: !!binary aGVsbG8=\n" + MINIMAL
    )
    assert len(problems) == 2


# --- fuzzing ------------------------------------------------------------------------------


def _assert_inventory_or_error(text: str) -> None:
    try:
        result = load_text(text)
    except InventoryError as exc:
        assert exc.exit_code == 2
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        str(exc)
    else:
        assert isinstance(result, Inventory)


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.text())
def test_fuzz_random_text(text: str) -> None:
    _assert_inventory_or_error(text)


@FUZZ
@given(st.binary())
def test_fuzz_random_bytes(data: bytes) -> None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return  # covered by test_fuzz_random_bytes_from_a_file
    _assert_inventory_or_error(text)


@settings(max_examples=100, deadline=None)
@given(data=st.binary())
def test_fuzz_random_bytes_from_a_file(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "inventory.yaml"
    path.write_bytes(data)
    try:
        load(path)
    except InventoryError as exc:
        assert exc.exit_code == 2


_YAML_TOKENS = [
    "\n", "  ", "- ", ": ", "&a ", "*a", "&b ", "*b", "<<: ", "[", "]", "{", "}", ", ", "? ",
    "!!str ", "!!int ", "!!binary ", "!x ", "|\n", ">\n", "'", '"', "#", "~", "null", "1e999",
    "0x1F", "masters", "ssh", "port", "kubernetesVersion", "v1.34.1", "name", "address",
    "10.0.0.1", "cp1", "jumpHost", "networking", "serviceSubnet", "extraArgs", "etcd",
    "identityFile", "---\n", "...\n", "%YAML 1.1\n",
]  # fmt: skip


@FUZZ
@given(st.lists(st.sampled_from(_YAML_TOKENS), max_size=60))
def test_fuzz_yaml_token_soup(parts: list[str]) -> None:
    """Anchors, aliases, merges, tags and flow syntax in random combinations."""
    _assert_inventory_or_error("".join(parts))


_EXAMPLE_TEXT = EXAMPLE.read_text()
_EXAMPLE_DATA: Any = yaml.safe_load(_EXAMPLE_TEXT)

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(
        [
            "10.0.0.300",
            "fd00::1",
            "10.96.0.0/12",
            "10.0.0.0/8",
            "v1.30.0",
            "v1.37.0",
            "3.4.1",
            "365d",
            "0h",
            "*.example.com",
            "ECDSA-P384",
            "accept-new",
            "--flag",
            "kube-apiserver",
            "cp1",
            "10.0.0.11",
            "[::1]:6443",
        ]
    ),
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


_EXAMPLE_PATHS = _paths(_EXAMPLE_DATA)[1:]
_KNOWN_KEYS = sorted(
    set(TOP_KEYS + NETWORKING_KEYS + CERTIFICATES_KEYS + TIMEOUTS_KEYS + SSH_KEYS + MASTER_KEYS)
)


@st.composite
def _mutated_example(draw: st.DrawFn) -> Any:
    data = yaml.safe_load(_EXAMPLE_TEXT)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        path = draw(st.sampled_from(_EXAMPLE_PATHS))
        parent = data
        try:
            for step in path[:-1]:
                parent = parent[step]
            action = draw(st.sampled_from(["replace", "delete", "add"]))
            if action == "replace":
                parent[path[-1]] = draw(_values)
            elif action == "delete":
                del parent[path[-1]]
            elif isinstance(parent, dict):
                key = draw(st.sampled_from(_KNOWN_KEYS) | st.text(max_size=10))
                parent[key] = draw(_values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or retyped this path
    return data


@FUZZ
@given(_mutated_example())
def test_fuzz_mutations_of_the_example(data: Any) -> None:
    _assert_inventory_or_error(yaml.safe_dump(data))


@FUZZ
@given(
    st.integers(min_value=0, max_value=len(_EXAMPLE_TEXT)),
    st.integers(min_value=0, max_value=40),
    st.text(max_size=20),
)
def test_fuzz_text_edits_of_the_example(start: int, length: int, insert: str) -> None:
    _assert_inventory_or_error(_EXAMPLE_TEXT[:start] + insert + _EXAMPLE_TEXT[start + length :])


# --- the JSON Schema --------------------------------------------------------------------
#
# A small validator for the subset of draft 2020-12 the schema uses. It refuses any
# keyword it does not implement, so the schema cannot grow a rule these tests ignore.

_ANNOTATIONS = {"$schema", "$defs", "title", "description", "default"}


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    raise AssertionError(f"unknown type {kind}")


def _format_ok(value: str, fmt: str) -> bool:
    wanted = {"ipv4": ipaddress.IPv4Address, "ipv6": ipaddress.IPv6Address}[fmt]
    try:
        return isinstance(ipaddress.ip_address(value), wanted)
    except ValueError:
        return False


def schema_errors(
    value: Any, schema: dict[str, Any], root: dict[str, Any], at: str = "$"
) -> list[str]:
    errors: list[str] = []
    unknown = set(schema) - _ANNOTATIONS - {
        "$ref", "type", "enum", "pattern", "maxLength", "minimum", "maximum",
        "exclusiveMinimum", "minItems", "items", "properties", "required",
        "additionalProperties", "propertyNames", "anyOf", "format",
    }  # fmt: skip
    assert not unknown, f"validator does not implement {unknown}"
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        errors += schema_errors(value, root["$defs"][name], root, at)
    if "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_type_ok(value, k) for k in kinds):
            return [f"{at}: {value!r} is not {kinds}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{at}: {value!r} not in enum")
    if "anyOf" in schema and not any(
        not schema_errors(value, s, root, at) for s in schema["anyOf"]
    ):
        errors.append(f"{at}: matches no anyOf branch")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{at}: {value!r} does not match {schema['pattern']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{at}: too long")
        if "format" in schema and not _format_ok(value, schema["format"]):
            errors.append(f"{at}: not {schema['format']}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{at}: below minimum")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{at}: above maximum")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            errors.append(f"{at}: not above exclusiveMinimum")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{at}: too few items")
        for index, item in enumerate(value):
            if "items" in schema:
                errors += schema_errors(item, schema["items"], root, f"{at}[{index}]")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{at}.{key}: required")
        for key, item in value.items():
            if "propertyNames" in schema:
                errors += schema_errors(key, schema["propertyNames"], root, f"{at}.{key}")
            if key in properties:
                errors += schema_errors(item, properties[key], root, f"{at}.{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{at}.{key}: additional property")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += schema_errors(item, schema["additionalProperties"], root, f"{at}.{key}")
    return errors


def test_schema_is_json_and_draft_2020_12() -> None:
    schema = json_schema()
    assert json.loads(json.dumps(schema)) == schema
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["kubernetesVersion", "masters"]
    assert schema["description"] and schema["title"]


def test_schema_validator_is_not_vacuous() -> None:
    schema = json_schema()
    assert schema_errors({"kubernetesVersion": "v1.34.1", "masters": []}, schema, schema)
    assert schema_errors({"masters": [{"name": "cp1", "address": "10.0.0.1"}]}, schema, schema)
    good = {"kubernetesVersion": "v1.34.1", "masters": [{"name": "cp1", "address": "10.0.0.1"}]}
    assert schema_errors(good, schema, schema) == []


def test_example_validates_against_the_schema() -> None:
    schema = json_schema()
    assert schema_errors(_EXAMPLE_DATA, schema, schema) == []


def test_a_full_inventory_validates_against_the_schema_and_loads() -> None:
    text = (
        "clusterName: prod\n"
        "kubernetesVersion: v1.36.0\n"
        "etcdVersion: 3.6.8-0\n"
        "controlPlaneEndpoint: '[fd00::10]:443'\n"
        "networking: {serviceSubnet: 'fd00:96::/112', podSubnet: null, dnsDomain: c.local}\n"
        "imageRepository: my.registry:5000/k8s\n"
        "certificates:\n"
        "  keyAlgorithm: RSA-3072\n"
        "  caValidity: 3650d\n"
        "  certValidity: 31d1h30m\n"
        "  apiServerExtraSANs: ['*.api.example', 'fd00::10']\n"
        "  etcdExtraSANs: [etcd.example]\n"
        "encryptionAtRest: false\n"
        "extraArgs: {etcd: {snapshot-count: 5000}, kube-controller-manager: {v: '2'}}\n"
        "timeouts: {etcdQuorum: 1, apiserverReady: 2, componentReady: 3, etcdPromote: 4,"
        " pollInterval: 0.1}\n"
        "ssh:\n"
        "  {user: ops, port: 2222, identityFile: /k, knownHosts: /kh, hostKeyPolicy: strict,"
        " sudo: true, connectTimeout: 3, jumpHost: {address: b.example, port: 22, user: j,"
        " identityFile: /j}}\n"
        "masters:\n"
        "  - {name: a, address: 'fd00::1', sshHost: A.example, ssh: {port: 22, jumpHost: null}}\n"
        "  - {name: b, address: 'fd00::2'}\n"
        "  - {name: c, address: 'fd00::3', ssh: null}\n"
    )
    schema = json_schema()
    assert schema_errors(yaml.safe_load(text), schema, schema) == []
    inv = load_text(text)
    assert inv.warnings == ()
    assert inv.cert_validity_seconds == 31 * 86400 + 5400 and inv.key_algorithm == "RSA-3072"
    assert inv.image_repository == "my.registry:5000/k8s"
    assert inv.timeouts.etcd_promote == 4 and inv.timeouts.poll_interval == 0.1
    assert inv.masters[0].ssh.jump_host is None and inv.masters[1].ssh.jump_host is not None


def _schema_mark(path: Path) -> str | None:
    for line in path.read_text().splitlines():
        if line.startswith("# schema:"):
            return line.removeprefix("# schema:").strip()
    return None


@pytest.mark.parametrize(
    "path", [p for p in INVALID_FILES if _schema_mark(p) == "invalid"], ids=lambda p: p.stem
)
def test_schema_rejects_shape_errors_too(path: Path) -> None:
    schema = json_schema()
    assert schema_errors(yaml.safe_load(path.read_text()), schema, schema)


def test_schema_describes_exactly_the_loaders_keys() -> None:
    schema = json_schema()
    defs = schema["$defs"]
    props = schema["properties"]
    assert list(props) == list(TOP_KEYS)
    assert list(props["networking"]["properties"]) == list(NETWORKING_KEYS)
    assert list(props["certificates"]["properties"]) == list(CERTIFICATES_KEYS)
    assert list(props["timeouts"]["properties"]) == list(TIMEOUTS_KEYS)
    assert list(props["extraArgs"]["properties"]) == list(COMPONENTS)
    assert list(props["ssh"]["properties"]) == list(SSH_KEYS)
    assert list(defs["ssh"]["properties"]) == list(SSH_KEYS)
    assert list(defs["jumpHost"]["properties"]) == list(JUMP_HOST_KEYS)
    assert list(defs["master"]["properties"]) == list(MASTER_KEYS)


def test_schema_defaults_match_the_loaders_defaults() -> None:
    schema = json_schema()
    props = schema["properties"]
    filled = load_text(
        "clusterName: {}\nimageRepository: {}\nencryptionAtRest: {}\n"
        "networking: {{serviceSubnet: {}, dnsDomain: {}}}\n"
        "certificates: {{keyAlgorithm: {}, caValidity: {}, certValidity: {}}}\n".format(
            props["clusterName"]["default"],
            props["imageRepository"]["default"],
            json.dumps(props["encryptionAtRest"]["default"]),
            props["networking"]["properties"]["serviceSubnet"]["default"],
            props["networking"]["properties"]["dnsDomain"]["default"],
            props["certificates"]["properties"]["keyAlgorithm"]["default"],
            props["certificates"]["properties"]["caValidity"]["default"],
            props["certificates"]["properties"]["certValidity"]["default"],
        )
        + "timeouts: "
        + json.dumps({k: v["default"] for k, v in props["timeouts"]["properties"].items()})
        + "\n"
        + MINIMAL
    )
    assert filled == load_text(MINIMAL)


# --- hostile input (issue 16): managed flags, image-tag versions, validity, sizes ----------


def _pod_default_flags() -> dict[str, set[str]]:
    """Every flag components.py computes, over the inventory shapes that change the set
    (podSubnet, encryption, etcd 3.5 vs 3.6, a joining member, each supported minor)."""
    from bootstrap.inventory.versions import SUPPORTED_KUBERNETES_MINORS, etcd_too_new_for
    from bootstrap.manifests.components import EtcdCluster, pod_facts

    found: dict[str, set[str]] = {c: set() for c in COMPONENTS}
    for minor in SUPPORTED_KUBERNETES_MINORS:
        for etcd in ("3.5.21", "3.6.4", "3.7.0"):
            if etcd_too_new_for(tuple(map(int, etcd.split("."))), minor):
                continue  # a pair the loader refuses (kubeadm never deploys it)
            for extra in ("networking: {podSubnet: 10.244.0.0/16}\n", "encryptionAtRest: false\n"):
                inv = load_text(
                    f"kubernetesVersion: v{minor[0]}.{minor[1]}.0\netcdVersion: {etcd}\n"
                    + extra
                    + "masters: [{name: a, address: 10.0.0.1}, {name: b, address: 10.0.0.2},"
                    " {name: c, address: 10.0.0.3}]\n"
                )
                peers = (("a", "https://10.0.0.1:2380"),)
                for cluster in (EtcdCluster(peers, "new"), EtcdCluster(peers, "existing")):
                    for pod in pod_facts(inv, inv.masters[0], cluster):
                        found[pod.component] |= {name for name, _ in pod.flags}
    return found


def test_every_computed_flag_is_classified_for_extra_args() -> None:
    """A flag components.py starts to compute must be decided on: refused, warned or free."""
    from bootstrap.inventory.flags import TUNABLE, WARNED

    for component, names in _pod_default_flags().items():
        known = set(MANAGED[component]) | set(WARNED[component]) | TUNABLE[component]
        assert names - known == set(), f"{component}: unclassified {sorted(names - known)}"
        # ...and the tables name no flag that is not rendered (a stale entry hides nothing).
        # secure-port of the two controllers is not rendered: their built-in default is
        # the port bootstrap relies on, so setting it is refused all the same.
        stale = set(MANAGED[component]) - names - {"secure-port"}
        assert stale == set(), f"{component}: managed but never rendered {sorted(stale)}"
        # Warned-about flags that are not rendered: the component's default is relied on.
        stale = set(WARNED[component]) - names - {"bind-address", "leader-elect"}
        assert stale == set(), f"{component}: warned about but never rendered {sorted(stale)}"


@pytest.mark.parametrize(
    ("component", "flag"),
    [(c, f) for c, flags in MANAGED.items() for f in flags],
)
def test_every_managed_flag_is_refused_with_line_and_list(component: str, flag: str) -> None:
    from bootstrap.inventory.flags import managed_list

    for spelled in (flag, flag.replace("-", "_")):
        with pytest.raises(InventoryError) as info:
            load_text(f"extraArgs:\n  {component}:\n    {spelled}: x\n" + MINIMAL)
        (problem,) = info.value.problems
        assert problem.startswith(f"extraArgs.{component}.{spelled} (line 3): ")
        assert f"--{flag}" in problem and "managed by bootstrap" in problem
        assert managed_list(component) in problem


def test_legitimate_overrides_warn_loudly_and_harmless_ones_do_not() -> None:
    inv = load_text(
        "extraArgs:\n"
        "  etcd: {feature-gates: 'StopGRPCServiceOnDefrag=true', snapshot-count: 5000,"
        " listen-metrics-urls: 'http://0.0.0.0:2381'}\n"
        "  kube-apiserver: {service-account-issuer: 'https://issuer.example',"
        " authorization-mode: 'Node,RBAC,Webhook', audit-log-maxage: 30}\n"
        "  kube-controller-manager: {leader-elect: false}\n"
        "  kube-scheduler: {bind-address: 0.0.0.0, leader-elect: true}\n" + MINIMAL
    )
    warned = sorted(w.split(" (line")[0] for w in inv.warnings)
    assert warned == [
        "extraArgs.etcd.feature-gates",
        "extraArgs.kube-apiserver.service-account-issuer",
        "extraArgs.kube-controller-manager.leader-elect",
        "extraArgs.kube-scheduler.bind-address",
    ], inv.warnings
    assert inv.extra_args["kube-apiserver"]["service-account-issuer"] == "https://issuer.example"
    refused = "extraArgs:\n  kube-apiserver: {authorization-mode: AlwaysAllow}\n" + MINIMAL
    assert "admin.conf is bound through RBAC" in load_text(refused).warnings[0]
    # A single listen address breaks the clients or the checks; every address is fine.
    assert load_text("extraArgs: {kube-apiserver: {bind-address: '::'}}\n" + MINIMAL)
    with pytest.raises(InventoryError, match="leave it unset"):
        load_text("extraArgs: {kube-apiserver: {bind-address: 10.0.0.11}}\n" + MINIMAL)


@pytest.mark.parametrize(
    ("version", "ok"),
    [
        ("v1.34.1", True),
        ("1.34.1", True),
        ("v1.35.0-rc.1", True),
        ("v1.35.0-alpha.0", True),
        ("v1.35.0-beta.2", True),
        ("v1.34.1+k3s1", False),
        ("v1.34.1-eks-1", False),
        ("v1.34.01", False),
        ("v1.34.1-rc1", False),
        ("v1.34.1-", False),
    ],
)
def test_kubernetes_version_is_a_usable_image_tag(version: str, ok: bool) -> None:
    text = MINIMAL.replace("v1.34.1", version)
    if ok:
        inv = load_text(text)
        assert re.fullmatch(r"[\w][\w.-]{0,127}", inv.kubernetes_version)  # the tag grammar
        return
    with pytest.raises(InventoryError) as info:
        load_text(text)
    assert info.value.problems[0].startswith("kubernetesVersion (line 1): ")


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("certValidity", "1s", "shorter than 1h"),
        ("certValidity", "59m59s", "shorter than 1h"),
        ("caValidity", "30m", "shorter than 1h"),
        ("certValidity", "3651d", "longer than 10 years"),
        ("certValidity", "1h", None),
        ("certValidity", "3650d", None),
    ],
)
def test_validity_bounds(key: str, value: str, problem: str | None) -> None:
    text = f"certificates: {{{key}: {value}}}\n" + MINIMAL
    if problem is None:
        load_text(text)
        return
    with pytest.raises(InventoryError) as info:
        load_text(text)
    (found,) = info.value.problems
    assert found.startswith(f"certificates.{key} (line 1): ") and problem in found


def test_short_cert_validity_warns_about_the_certs_check_window() -> None:
    inv = load_text("certificates: {certValidity: 1h}\n" + MINIMAL)
    assert any("--warn-days" in w for w in inv.warnings)


def test_more_masters_than_supported_are_refused() -> None:
    with pytest.raises(InventoryError) as info:
        load_text(_masters(16))
    assert any("at most 15 are supported" in p for p in info.value.problems)


def test_oversized_inventory_is_refused_before_parsing(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(MINIMAL + "#" * (1 << 20) + "\n")
    with pytest.raises(InventoryError) as info:
        load(big)
    assert "larger than 1024 KiB" in str(info.value) and info.value.exit_code == 2
    # An endless source is read only up to the bound, not to the end.
    with pytest.raises(InventoryError) as info:
        load(Path("/dev/zero"))
    assert "larger than 1024 KiB" in str(info.value)
    with pytest.raises(InventoryError) as info:
        load(tmp_path)
    assert "it is a directory" in str(info.value)


def test_echoed_values_are_truncated() -> None:
    huge = "A" * (1 << 20)
    with pytest.raises(InventoryError) as info:
        load_text(f"clusterName: {huge}\n? {huge}\n: 1\n" + MINIMAL)
    text = str(info.value)
    assert len(text) < 2000, len(text)
    assert f"({len(huge)} characters)" in text


def test_a_thousand_problems_list_the_first_fifty() -> None:
    text = "kubernetesVersion: v1.34.1\nmasters:\n" + "".join(
        f"  - {{name: BAD{i}, address: 10.0.{i // 250}.{i % 250 + 1}}}\n" for i in range(1000)
    )
    with pytest.raises(InventoryError) as info:
        load_text(text)
    assert len(info.value.problems) > 1000
    shown = str(info.value)
    assert shown.count("\n  - ") == 50 and "more" in shown.splitlines()[-1]


@pytest.mark.parametrize(
    ("section", "needle"),
    [
        ("extraArgs:\n  etcd:\n" + "".join(f"    f{i}: x\n" for i in range(201)),
         "201 flags: at most 200 per component"),
        ("extraArgs:\n  etcd:\n    snapshot-count: " + "9" * 8193 + "\n",
         "8193 characters: at most 8192"),
        ("certificates:\n  apiServerExtraSANs: ["
         + ", ".join(f"n{i}.example" for i in range(101)) + "]\n",
         "101 names: at most 100"),
    ],
)
def test_what_an_inventory_may_ask_to_render_is_bounded(section: str, needle: str) -> None:
    with pytest.raises(InventoryError) as info:
        load_text(section + MINIMAL)
    (problem,) = info.value.problems
    assert needle in problem and len(problem) < 300
