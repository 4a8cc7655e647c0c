"""PKI: kubeadm's table (reference/kubeadm.md §2.2, §9.4, §11), checked with the real
parsers (cryptography) and openssl as an independent oracle; the state dir's reuse,
re-issue and refusal rules."""

from __future__ import annotations

import fcntl
import ipaddress
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bootstrap.errors import StateError
from bootstrap.inventory.model import Inventory
from bootstrap.pki import ClusterPKI, ensure_pki, expiry_report, generate_key
from bootstrap.pki.keys import PrivateKey
from tests.pki_support import (
    HOUR,
    NOW,
    make_inventory,
    make_master,
    openssl,
    openssl_ext,
    openssl_subject,
    openssl_verify,
    snapshot,
    with_changes,
)

SERVER = ExtendedKeyUsageOID.SERVER_AUTH
CLIENT = ExtendedKeyUsageOID.CLIENT_AUTH
BACKDATE = timedelta(minutes=5)
LEAF_VALIDITY = timedelta(hours=8760)
CA_VALIDITY = timedelta(hours=87600)


# --- the expected table, written out independently of bootstrap.pki.table ---------------


@dataclass(frozen=True)
class Expected:
    issuer: str
    cn: str
    orgs: tuple[str, ...]
    eku: frozenset[x509.ObjectIdentifier]
    dns: frozenset[str] = frozenset()
    ips: frozenset[str] = frozenset()


CA_CN = {"ca": "kubernetes", "front-proxy-ca": "front-proxy-ca", "etcd/ca": "etcd-ca"}


def expected_leaves(inventory: Inventory, node: str) -> dict[str, Expected]:
    adv = str(inventory.master(node).address)
    domain = inventory.dns_domain
    kubelet_client_orgs = (
        () if inventory.kubernetes_minor >= (1, 36) else ("kubeadm:cluster-admins",)
    )
    api_dns = {
        node,
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        f"kubernetes.default.svc.{domain}",
        "localhost",  # our deliberate addition
    }
    api_ips = {str(next(inventory.service_subnet.hosts())), adv, "127.0.0.1"}
    etcd_dns, etcd_ips = {node, "localhost"}, {adv, "127.0.0.1", "::1"}
    for extra, dns, ips in (
        ((inventory.control_plane_host, *inventory.apiserver_extra_sans), api_dns, api_ips),
        (inventory.etcd_extra_sans, etcd_dns, etcd_ips),
    ):
        for value in extra:
            try:
                ips.add(str(ipaddress.ip_address(value)))
            except ValueError:
                dns.add(value)
    etcd = {"dns": frozenset(etcd_dns), "ips": frozenset(etcd_ips)}
    return {
        "apiserver": Expected(
            "ca", "kube-apiserver", (), frozenset({SERVER}), frozenset(api_dns), frozenset(api_ips)
        ),
        "apiserver-kubelet-client": Expected(
            "ca", "kube-apiserver-kubelet-client", kubelet_client_orgs, frozenset({CLIENT})
        ),
        "apiserver-etcd-client": Expected(
            "etcd/ca", "kube-apiserver-etcd-client", (), frozenset({CLIENT})
        ),
        "front-proxy-client": Expected(
            "front-proxy-ca", "front-proxy-client", (), frozenset({CLIENT})
        ),
        "etcd/server": Expected("etcd/ca", node, (), frozenset({SERVER, CLIENT}), **etcd),
        "etcd/peer": Expected("etcd/ca", node, (), frozenset({SERVER, CLIENT}), **etcd),
        "etcd/healthcheck-client": Expected(
            "etcd/ca", "kube-etcd-healthcheck-client", (), frozenset({CLIENT})
        ),
    }


def cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def orgs(cert: x509.Certificate) -> tuple[str, ...]:
    return tuple(
        str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    )


def ext(
    cert: x509.Certificate, kind: type[x509.ExtensionType]
) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(kind)


def has_ext(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> bool:
    try:
        cert.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return False
    return True


def san_sets(cert: x509.Certificate) -> tuple[frozenset[str], frozenset[str]]:
    if not has_ext(cert, x509.SubjectAlternativeName):
        return frozenset(), frozenset()
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (
        frozenset(san.get_values_for_type(x509.DNSName)),
        frozenset(str(i) for i in san.get_values_for_type(x509.IPAddress)),
    )


def key_algorithm(key: object) -> str:
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    assert isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey)
    return {"secp256r1": "ECDSA-P256", "secp384r1": "ECDSA-P384"}[key.curve.name]


def assert_key_pem(pem: bytes, algorithm: str) -> None:
    header = "RSA PRIVATE KEY" if algorithm.startswith("RSA") else "EC PRIVATE KEY"
    assert pem.startswith(f"-----BEGIN {header}-----\n".encode()), pem[:40]
    assert pem.rstrip().endswith(f"-----END {header}-----".encode())


# --- a built PKI per algorithm (module scope: key generation is the slow part) -----------

ALGORITHMS = [("ECDSA-P256", 3), ("ECDSA-P384", 1), ("RSA-2048", 1), ("RSA-3072", 1)]


@dataclass
class Built:
    inventory: Inventory
    state: Path
    pki: ClusterPKI


@pytest.fixture(scope="module", params=ALGORITHMS, ids=[a for a, _ in ALGORITHMS])
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Built:
    algorithm, masters = request.param
    inventory = make_inventory(
        masters=masters, key_algorithm=algorithm, apiserver_extra_sans=("10.0.0.10",)
    )
    state = tmp_path_factory.mktemp(algorithm) / "state"
    return Built(inventory, state, ensure_pki(inventory, state, now=NOW))


def test_cas_match_kubeadm(built: Built) -> None:
    for name, expected_cn in CA_CN.items():
        ca = built.pki.ca(name)
        cert = ca.cert
        assert cn(cert) == expected_cn and orgs(cert) == ()
        assert cert.issuer == cert.subject
        cert.verify_directly_issued_by(cert)
        basic = ext(cert, x509.BasicConstraints)
        assert basic.critical and basic.value.ca  # type: ignore[attr-defined]
        usage = ext(cert, x509.KeyUsage)
        assert usage.critical
        assert (
            usage.value.digital_signature,
            usage.value.key_encipherment,
            usage.value.key_cert_sign,
        ) == (  # type: ignore[attr-defined]
            True,
            True,
            True,
        )
        assert not usage.value.crl_sign  # type: ignore[attr-defined]
        assert san_sets(cert) == (frozenset({expected_cn}), frozenset())
        assert has_ext(cert, x509.SubjectKeyIdentifier)
        assert not has_ext(cert, x509.ExtendedKeyUsage)
        assert cert.not_valid_before_utc == NOW - BACKDATE
        assert cert.not_valid_after_utc == NOW + CA_VALIDITY
        assert 1 <= cert.serial_number < 2**63 - 1
        assert key_algorithm(cert.public_key()) == built.inventory.key_algorithm
        assert_key_pem(ca.key_pem, built.inventory.key_algorithm)


def test_leaves_match_kubeadm_table(built: Built) -> None:
    for master in built.inventory.masters:
        for name, want in expected_leaves(built.inventory, master.name).items():
            leaf = built.pki.leaf(master.name, name)
            cert = leaf.cert
            ca = built.pki.ca(want.issuer).cert
            assert cert.issuer == ca.subject, name
            cert.verify_directly_issued_by(ca)
            assert (cn(cert), orgs(cert)) == (want.cn, want.orgs), name
            assert frozenset(ext(cert, x509.ExtendedKeyUsage).value) == want.eku, name  # type: ignore[arg-type]
            assert san_sets(cert) == (want.dns, want.ips), name
            basic = ext(cert, x509.BasicConstraints)
            assert basic.critical and not basic.value.ca  # type: ignore[attr-defined]
            usage = ext(cert, x509.KeyUsage)
            assert usage.critical
            assert usage.value.digital_signature and usage.value.key_encipherment  # type: ignore[attr-defined]
            assert not usage.value.key_cert_sign  # type: ignore[attr-defined]
            aki = ext(cert, x509.AuthorityKeyIdentifier).value
            ski = ext(ca, x509.SubjectKeyIdentifier).value
            assert aki.key_identifier == ski.digest  # type: ignore[attr-defined]
            assert not has_ext(cert, x509.SubjectKeyIdentifier)
            assert cert.not_valid_before_utc == NOW - BACKDATE
            assert cert.not_valid_after_utc == NOW + LEAF_VALIDITY
            assert 1 <= cert.serial_number < 2**63 - 1
            assert key_algorithm(cert.public_key()) == built.inventory.key_algorithm
            assert_key_pem(leaf.key_pem, built.inventory.key_algorithm)


def test_signature_hash_follows_the_signing_key(built: Built) -> None:
    want = "sha384" if built.inventory.key_algorithm == "ECDSA-P384" else "sha256"
    for master in built.inventory.masters:
        for leaf in built.pki.leaves[master.name].values():
            assert leaf.cert.signature_hash_algorithm is not None
            assert leaf.cert.signature_hash_algorithm.name == want


def test_service_account_pair(built: Built) -> None:
    files = built.pki.host_files(built.inventory.masters[0].name)
    sa_key = files["/etc/kubernetes/pki/sa.key"].content
    sa_pub = files["/etc/kubernetes/pki/sa.pub"].content
    assert_key_pem(sa_key, built.inventory.key_algorithm)
    assert sa_pub.startswith(b"-----BEGIN PUBLIC KEY-----\n")
    # openssl derives the public half from the private key: it must equal sa.pub.
    derived = openssl("pkey", "-pubout", stdin=sa_key)
    assert derived.returncode == 0, derived.stderr
    assert derived.stdout.encode() == sa_pub


def test_openssl_verifies_every_leaf_against_its_ca(built: Built, tmp_path: Path) -> None:
    for master in built.inventory.masters:
        for name, want in expected_leaves(built.inventory, master.name).items():
            leaf = built.pki.leaf(master.name, name)
            purpose = "sslserver" if SERVER in want.eku else "sslclient"
            out = openssl_verify(
                built.pki.ca(want.issuer).cert_pem,
                leaf.cert_pem,
                tmp_path,
                "-x509_strict",
                "-purpose",
                purpose,
            )
            assert out.strip().endswith(": OK")


def test_openssl_rejects_a_leaf_against_the_wrong_ca(built: Built, tmp_path: Path) -> None:
    # The oracle can fail: the etcd leaves do not chain to the cluster CA.
    leaf = built.pki.leaf(built.inventory.masters[0].name, "etcd/server")
    with pytest.raises(AssertionError, match="openssl verify failed"):
        openssl_verify(built.pki.ca("ca").cert_pem, leaf.cert_pem, tmp_path)


def test_openssl_subjects_as_in_kubeadm(built: Built) -> None:
    node = built.inventory.masters[0].name
    pki = built.pki
    assert openssl_subject(pki.leaf(node, "apiserver-kubelet-client").cert_pem) == (
        "O = kubeadm:cluster-admins, CN = kube-apiserver-kubelet-client"
    )
    assert openssl_subject(pki.leaf(node, "etcd/server").cert_pem) == f"CN = {node}"
    assert openssl_subject(pki.leaf(node, "apiserver").cert_pem) == "CN = kube-apiserver"
    assert openssl_subject(pki.ca("etcd/ca").cert_pem) == "CN = etcd-ca"
    sans = openssl_ext(pki.leaf(node, "etcd/peer").cert_pem, "subjectAltName")
    assert f"DNS:{node}" in sans and "DNS:localhost" in sans
    assert "IP Address:127.0.0.1" in sans and "IP Address:0:0:0:0:0:0:0:1" in sans
    text = openssl("x509", "-noout", "-text", stdin=pki.ca("ca").cert_pem).stdout
    assert "CA:TRUE" in text
    assert "Digital Signature, Key Encipherment, Certificate Sign" in text


def test_files_on_disk_have_our_modes(built: Built) -> None:
    state = built.state
    assert state.stat().st_mode & 0o777 == 0o700
    for path in [state, *state.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        if path.is_dir():
            assert mode == 0o700, path
        elif path.suffix in (".key", ".conf", ".pub") or path.name == ".lock":
            assert mode == 0o600, path
        else:
            assert path.suffix == ".crt" and mode == 0o644, path
        assert not path.name.endswith(".tmp"), f"temp file left behind: {path}"


def test_host_files_paths_modes_and_secrets(built: Built) -> None:
    node = built.inventory.masters[0].name
    files = built.pki.host_files(node)
    bases = ["ca", "front-proxy-ca", "etcd/ca", *expected_leaves(built.inventory, node)]
    want = {f"/etc/kubernetes/pki/{b}.{s}" for b in bases for s in ("crt", "key")}
    want |= {"/etc/kubernetes/pki/sa.key", "/etc/kubernetes/pki/sa.pub"}
    assert set(files) == want
    for path, spec in files.items():
        assert spec.path == path
        if path.endswith(".crt"):
            assert (spec.mode, spec.secret) == (0o644, False), path
            x509.load_pem_x509_certificate(spec.content)
        elif path.endswith(".key"):
            assert (spec.mode, spec.secret) == (0o600, True), path
        else:
            assert spec.mode == 0o600, path  # sa.pub: 0600 like kubeadm
    # The shared material is identical on every master; leaves are not.
    for other in built.inventory.masters[1:]:
        other_files = built.pki.host_files(other.name)
        for shared in ("ca.key", "etcd/ca.crt", "front-proxy-ca.key", "sa.key", "sa.pub"):
            path = f"/etc/kubernetes/pki/{shared}"
            assert other_files[path].content == files[path].content
        path = "/etc/kubernetes/pki/apiserver.key"
        assert other_files[path].content != files[path].content


def test_secrets_stay_out_of_repr(built: Built) -> None:
    text = repr(built.pki)
    assert "PRIVATE KEY" not in text and "aescbc" not in text


# --- a few variants -------------------------------------------------------------------


def test_rsa_4096_everywhere(tmp_path: Path) -> None:
    inventory = make_inventory(masters=1, key_algorithm="RSA-4096", encryption_at_rest=False)
    pki = ensure_pki(inventory, tmp_path / "state", now=NOW)
    materials = [*pki.cas.values(), *pki.leaves["cp1"].values(), *pki.clients["cp1"].values()]
    assert len(materials) == 3 + 7 + 5
    for material in materials:
        assert key_algorithm(material.cert.public_key()) == "RSA-4096"
        assert_key_pem(material.key_pem, "RSA-4096")
    sa_key = pki.host_files("cp1")["/etc/kubernetes/pki/sa.key"].content
    assert_key_pem(sa_key, "RSA-4096")
    out = openssl("rsa", "-noout", "-text", stdin=sa_key).stdout
    assert "4096 bit" in out
    openssl_verify(
        pki.ca("ca").cert_pem, pki.leaf("cp1", "apiserver").cert_pem, tmp_path, "-x509_strict"
    )
    assert pki.encryption_config == b""
    assert not (tmp_path / "state/pki/encryption-at-rest.key").exists()


def test_kubelet_client_loses_its_o_from_kubernetes_1_36(tmp_path: Path) -> None:
    inventory = make_inventory(masters=1, kubernetes_version="v1.35.2")
    state = tmp_path / "state"
    old = ensure_pki(inventory, state, now=NOW).leaf("cp1", "apiserver-kubelet-client")
    assert orgs(old.cert) == ("kubeadm:cluster-admins",)
    upgraded = ensure_pki(with_changes(inventory, kubernetes_version="v1.36.2"), state, now=NOW)
    new = upgraded.leaf("cp1", "apiserver-kubelet-client")
    assert openssl_subject(new.cert_pem) == "CN = kube-apiserver-kubelet-client"
    assert upgraded.events == (
        "re-issued cp1/apiserver-kubelet-client: O ['kubeadm:cluster-admins'] -> []",
    )


def test_ipv6_cluster(tmp_path: Path) -> None:
    inventory = make_inventory(
        addresses=["fd00::11", "fd00::12", "fd00::13"],
        control_plane_host="fd00::10",
        service_subnet=ipaddress.ip_network("fd00:96::/108"),
        pod_subnet=None,
        etcd_extra_sans=("etcd.example.internal", "fd00::99"),
    )
    pki = ensure_pki(inventory, tmp_path / "state", now=NOW)
    dns, ips = san_sets(pki.leaf("cp2", "apiserver").cert)
    assert ips == {"fd00:96::1", "fd00::12", "fd00::10", "127.0.0.1", "::1"}
    assert "localhost" in dns and "cp2" in dns
    dns, ips = san_sets(pki.leaf("cp2", "etcd/server").cert)
    assert dns == {"cp2", "localhost", "etcd.example.internal"}
    assert ips == {"fd00::12", "127.0.0.1", "::1", "fd00::99"}
    assert san_sets(pki.leaf("cp2", "etcd/peer").cert) == (dns, ips)


def test_apiserver_takes_a_control_plane_ip_as_ip_san(tmp_path: Path) -> None:
    inventory = make_inventory(
        control_plane_host="10.0.0.10", apiserver_extra_sans=("api.example.org",)
    )
    pki = ensure_pki(inventory, tmp_path / "state", now=NOW)
    dns, ips = san_sets(pki.leaf("cp1", "apiserver").cert)
    assert "10.0.0.10" in ips and "api.example.org" in dns and "10.0.0.10" not in dns


def test_key_factory_is_the_only_source_of_keys(tmp_path: Path) -> None:
    asked: list[str] = []

    def factory(algorithm: str) -> PrivateKey:
        asked.append(algorithm)
        return generate_key(algorithm)

    ensure_pki(make_inventory(), tmp_path / "state", now=NOW, key_factory=factory)
    # 3 CAs + sa + admin + super-admin + 3 x (7 leaves + cm, scheduler, kubelet)
    assert asked == ["ECDSA-P256"] * (3 + 1 + 2 + 3 * 10)


def test_generate_key_rejects_unknown_algorithms() -> None:
    with pytest.raises(ValueError, match="unsupported key algorithm"):
        generate_key("ED25519")


def test_leaves_never_outlive_their_ca(tmp_path: Path) -> None:
    inventory = make_inventory(
        masters=1, ca_validity_seconds=100 * HOUR, cert_validity_seconds=8760 * HOUR
    )
    pki = ensure_pki(inventory, tmp_path / "state", now=NOW)
    ca_end = pki.ca("ca").cert.not_valid_after_utc
    assert pki.leaf("cp1", "apiserver").cert.not_valid_after_utc == ca_end


def test_expiry_report(tmp_path: Path) -> None:
    pki = ensure_pki(make_inventory(masters=1), tmp_path / "state", now=NOW)
    rows = {row.name: row for row in expiry_report(pki, NOW)}
    assert rows["ca"].residual == CA_VALIDITY and rows["ca"].authority == ""
    assert (
        rows["cp1/apiserver"].residual == LEAF_VALIDITY and rows["cp1/apiserver"].authority == "ca"
    )
    assert rows["cp1/etcd/server"].authority == "etcd/ca"
    assert rows["cp1/admin.conf"].authority == "ca"
    assert not any(row.expired for row in rows.values())


# --- re-runs: reuse, re-issue ----------------------------------------------------------


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    ensure_pki(make_inventory(), path, now=NOW)
    return path


def all_host_files(pki: ClusterPKI, inventory: Inventory) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for master in inventory.masters:
        for path, spec in {
            **pki.host_files(master.name),
            **pki.kubeconfig_files(master.name),
        }.items():
            out[f"{master.name}:{path}"] = spec.content
    return out


def test_rerun_reuses_everything_byte_for_byte(tmp_path: Path) -> None:
    inventory = make_inventory()
    path = tmp_path / "state"
    first = ensure_pki(inventory, path, now=NOW)
    before = snapshot(path)
    mtimes = {p: p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file()}
    second = ensure_pki(inventory, path, now=NOW + timedelta(days=100))
    assert second.events == ()
    assert all_host_files(second, inventory) == all_host_files(first, inventory)
    assert second.encryption_config == first.encryption_config
    assert snapshot(path) == before
    assert {p: p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file()} == mtimes


def test_rerun_is_deterministic_under_other_hash_seeds(state: Path) -> None:
    script = (
        "import hashlib, sys; from pathlib import Path; from bootstrap.pki import ensure_pki;"
        "from tests.pki_support import make_inventory, NOW;"
        "inv = make_inventory(); pki = ensure_pki(inv, Path(sys.argv[1]), now=NOW);"
        "h = hashlib.sha256();"
        "[h.update(p.encode() + s.content) for m in inv.masters"
        " for p, s in sorted({**pki.host_files(m.name), **pki.kubeconfig_files(m.name)}.items())];"
        "h.update(pki.encryption_config); print(h.hexdigest(), len(pki.events))"
    )
    root = Path(__file__).resolve().parents[1]
    outputs = set()
    for seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(root)}
        result = subprocess.run(
            [sys.executable, "-c", script, str(state)],
            capture_output=True,
            text=True,
            env=env,
            cwd=root,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        outputs.add(result.stdout)
    assert len(outputs) == 1 and outputs.pop().split()[1] == "0"


def leaf_bytes(state: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(state)): p.read_bytes()
        for p in sorted((state / "masters").rglob("*.crt"))
    }


def changed(before: dict[str, bytes], after: dict[str, bytes]) -> set[str]:
    return {k for k in after if before.get(k) != after[k]}


def test_new_master_address_reissues_only_its_address_bound_leaves(state: Path) -> None:
    inventory = make_inventory()
    before, shared = leaf_bytes(state), snapshot(state / "pki")
    old_key = (state / "masters/cp2/pki/apiserver.key").read_bytes()
    moved = make_master("cp2", "10.0.0.22")
    pki = ensure_pki(
        with_changes(inventory, masters=(inventory.masters[0], moved, inventory.masters[2])),
        state,
        now=NOW,
    )
    assert changed(before, leaf_bytes(state)) == {
        "masters/cp2/pki/apiserver.crt",
        "masters/cp2/pki/etcd/server.crt",
        "masters/cp2/pki/etcd/peer.crt",
    }
    assert snapshot(state / "pki") == shared
    assert "10.0.0.22" in san_sets(pki.leaf("cp2", "apiserver").cert)[1]
    assert any(e.startswith("re-issued cp2/apiserver: SANs added IP:10.0.0.22") for e in pki.events)
    # A re-issued leaf gets a new key, too.
    assert pki.leaf("cp2", "apiserver").key_pem != old_key
    assert (state / "masters/cp2/pki/apiserver.key").read_bytes() == pki.leaf(
        "cp2", "apiserver"
    ).key_pem
    # cp2's local kubeconfigs now point at the new address (same client certs).
    assert b"https://10.0.0.22:6443" in pki.kubeconfigs["cp2"]["scheduler.conf"]


def test_added_apiserver_san_reissues_only_the_apiservers(state: Path) -> None:
    before = leaf_bytes(state)
    old_keys = {
        m: (state / f"masters/{m}/pki/apiserver.key").read_bytes() for m in ("cp1", "cp2", "cp3")
    }
    pki = ensure_pki(make_inventory(apiserver_extra_sans=("api.example.org",)), state, now=NOW)
    assert changed(before, leaf_bytes(state)) == {
        f"masters/{m}/pki/apiserver.crt" for m in ("cp1", "cp2", "cp3")
    }
    for m in ("cp1", "cp2", "cp3"):
        assert "api.example.org" in san_sets(pki.leaf(m, "apiserver").cert)[0]
        assert (state / f"masters/{m}/pki/apiserver.key").read_bytes() != old_keys[m]


def test_added_etcd_san_reissues_etcd_server_and_peer(state: Path) -> None:
    before = leaf_bytes(state)
    ensure_pki(make_inventory(etcd_extra_sans=("10.1.1.1",)), state, now=NOW)
    assert changed(before, leaf_bytes(state)) == {
        f"masters/{m}/pki/etcd/{n}.crt" for m in ("cp1", "cp2", "cp3") for n in ("server", "peer")
    }


def test_new_key_algorithm_reissues_leaves_but_keeps_cas(state: Path) -> None:
    shared_before = {
        p: (state / "pki" / p).read_bytes() for p in ("ca.crt", "etcd/ca.key", "sa.key")
    }
    pki = ensure_pki(make_inventory(key_algorithm="ECDSA-P384"), state, now=NOW)
    assert {p: (state / "pki" / p).read_bytes() for p in shared_before} == shared_before
    assert key_algorithm(pki.leaf("cp1", "apiserver").cert.public_key()) == "ECDSA-P384"


def test_leaves_due_for_renewal_are_reissued_cas_are_not(state: Path) -> None:
    later = NOW + LEAF_VALIDITY - timedelta(days=10)
    ca_before = (state / "pki/ca.crt").read_bytes()
    pki = ensure_pki(make_inventory(), state, now=later)
    assert (state / "pki/ca.crt").read_bytes() == ca_before
    assert pki.leaf("cp1", "apiserver").cert.not_valid_after_utc == later + LEAF_VALIDITY
    assert pki.client("cp1", "admin.conf").cert.not_valid_after_utc == later + LEAF_VALIDITY
    assert len(pki.events) == 3 * 10 + 2


def test_new_master_gets_its_own_leaves(state: Path) -> None:
    inventory = make_inventory()
    grown = with_changes(inventory, masters=(*inventory.masters, make_master("cp4", "10.0.0.14")))
    before = leaf_bytes(state)
    pki = ensure_pki(grown, state, now=NOW)
    assert all(k.startswith("masters/cp4/") for k in changed(before, leaf_bytes(state)))
    assert san_sets(pki.leaf("cp4", "etcd/peer").cert)[1] == {"10.0.0.14", "127.0.0.1", "::1"}


def test_loosened_modes_are_tightened(state: Path) -> None:
    (state / "pki/ca.key").chmod(0o644)
    (state / "masters/cp1/pki").chmod(0o755)
    ensure_pki(make_inventory(), state, now=NOW)
    assert (state / "pki/ca.key").stat().st_mode & 0o777 == 0o600
    assert (state / "masters/cp1/pki").stat().st_mode & 0o777 == 0o700


def test_state_dir_is_created_0700_under_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0o002)
    try:
        ensure_pki(make_inventory(masters=1), tmp_path / "deep/state", now=NOW)
    finally:
        os.umask(old)
    assert (tmp_path / "deep/state").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "deep/state/pki/etcd").stat().st_mode & 0o777 == 0o700


# --- refusals --------------------------------------------------------------------------


def _other_pki(tmp: Path) -> Path:
    other = tmp / "other"
    ensure_pki(make_inventory(), other, now=NOW)
    return other


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


Breaker = Callable[[Path, Path], None]


def _swap_in_foreign_leaf(state: Path, tmp: Path) -> None:
    other = _other_pki(tmp)
    for suffix in ("crt", "key"):
        shutil.copy(
            other / f"masters/cp1/pki/apiserver.{suffix}",
            state / f"masters/cp1/pki/apiserver.{suffix}",
        )


def _leaf_as_ca(state: Path, tmp: Path) -> None:
    for suffix in ("crt", "key"):
        shutil.copy(
            state / f"masters/cp1/pki/front-proxy-client.{suffix}",
            state / f"pki/front-proxy-ca.{suffix}",
        )


def _expired_ca(state: Path, tmp: Path) -> None:
    shutil.rmtree(state)
    short = make_inventory(ca_validity_seconds=48 * HOUR, cert_validity_seconds=24 * HOUR)
    ensure_pki(short, state, now=NOW - timedelta(days=10))


REFUSALS: dict[str, tuple[Breaker, str]] = {
    "truncated ca.key": (
        lambda s, t: truncate(s / "pki/ca.key"),
        r"ca\.key is not a readable PEM private key",
    ),
    "truncated leaf cert": (
        lambda s, t: truncate(s / "masters/cp2/pki/etcd/peer.crt"),
        r"peer\.crt is not a readable PEM certificate",
    ),
    "garbage CA cert": (
        lambda s, t: (s / "pki/etcd/ca.crt").write_bytes(b"hello\n"),
        r"etcd/ca\.crt is not a readable PEM certificate",
    ),
    "ca.key missing": (
        lambda s, t: (s / "pki/ca.key").unlink(),
        r"ca\.crt exists but its private key .* is missing",
    ),
    "ca.crt missing": (
        lambda s, t: (s / "pki/ca.crt").unlink(),
        r"ca\.key exists but its certificate .* is missing",
    ),
    "leaf cert without key": (
        lambda s, t: (s / "masters/cp1/pki/apiserver.key").unlink(),
        r"apiserver\.crt exists but its private key",
    ),
    "leaf key/cert mismatch": (
        lambda s, t: shutil.copy(
            s / "masters/cp1/pki/etcd/peer.key", s / "masters/cp1/pki/etcd/server.key"
        ),
        r"server\.key does not belong to the certificate .*server\.crt",
    ),
    "CA key/cert mismatch": (
        lambda s, t: shutil.copy(s / "pki/etcd/ca.key", s / "pki/ca.key"),
        r"ca\.key does not belong to the certificate",
    ),
    "leaf signed by another CA": (
        _swap_in_foreign_leaf,
        r"apiserver\.crt is not signed by the ca CA",
    ),
    "whole CA set deleted, leaves kept": (
        lambda s, t: shutil.rmtree(s / "pki"),
        r"is not signed by the ca CA",
    ),
    "CA not a CA": (_leaf_as_ca, r"front-proxy-ca\.crt is not a CA certificate"),
    "CA expired": (_expired_ca, r"CA .*ca\.crt expired on"),
    "client cert without key": (
        lambda s, t: (s / "pki/kubeconfig/admin.key").unlink(),
        r"admin\.crt exists but its private key",
    ),
    "sa.pub does not match sa.key": (
        lambda s, t: shutil.copy(s / "masters/cp1/pki/apiserver.key", s / "pki/sa.key"),
        r"sa\.pub is not the public half of .*sa\.key",
    ),
    "sa.key missing": (
        lambda s, t: (s / "pki/sa.key").unlink(),
        r"sa\.pub exists but the signing key",
    ),
    "truncated sa.key": (
        lambda s, t: truncate(s / "pki/sa.key"),
        r"sa\.key is not a readable PEM private key",
    ),
    "bad encryption key": (
        lambda s, t: (s / "pki/encryption-at-rest.key").write_bytes(b"c2hvcnQ=\n"),
        r"encryption-at-rest\.key holds 5 bytes, expected 32",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_inconsistent_state_is_refused_and_left_untouched(
    state: Path, tmp_path: Path, case: str
) -> None:
    breaker, message = REFUSALS[case]
    breaker(state, tmp_path)
    before = snapshot(state)
    with pytest.raises(StateError, match=message) as caught:
        ensure_pki(make_inventory(), state, now=NOW)
    assert caught.value.exit_code == 2
    assert caught.value.hint, "every refusal carries a hint"
    assert snapshot(state) == before, "a refused run writes nothing"


def test_ca_hint_says_it_is_never_regenerated(state: Path) -> None:
    (state / "pki/ca.key").unlink()
    with pytest.raises(StateError) as caught:
        ensure_pki(make_inventory(), state, now=NOW)
    assert caught.value.hint is not None and "never regenerated" in caught.value.hint


def test_leaf_hint_names_the_files_to_delete(state: Path) -> None:
    truncate(state / "masters/cp3/pki/front-proxy-client.key")
    with pytest.raises(StateError) as caught:
        ensure_pki(make_inventory(), state, now=NOW)
    hint = caught.value.hint or ""
    assert (
        "front-proxy-client.crt" in hint and "front-proxy-client.key" in hint and "delete" in hint
    )


def test_deleting_a_leaf_pair_reissues_just_that_leaf(state: Path) -> None:
    before = leaf_bytes(state)
    for suffix in ("crt", "key"):
        (state / f"masters/cp3/pki/front-proxy-client.{suffix}").unlink()
    pki = ensure_pki(make_inventory(), state, now=NOW)
    assert pki.events == ("issued cp3/front-proxy-client",)
    assert changed(before, leaf_bytes(state)) == {"masters/cp3/pki/front-proxy-client.crt"}


def test_missing_sa_pub_is_rederived(state: Path) -> None:
    pub = (state / "pki/sa.pub").read_bytes()
    (state / "pki/sa.pub").unlink()
    ensure_pki(make_inventory(), state, now=NOW)
    assert (state / "pki/sa.pub").read_bytes() == pub


def test_leaf_key_left_by_an_interrupted_run_is_replaced(state: Path) -> None:
    # Keys are written before certificates; a crash in between leaves an orphan key.
    (state / "masters/cp2/pki/etcd/server.crt").unlink()
    orphan = (state / "masters/cp2/pki/etcd/server.key").read_bytes()
    pki = ensure_pki(make_inventory(), state, now=NOW)
    assert pki.events == ("issued cp2/etcd/server",)
    assert (state / "masters/cp2/pki/etcd/server.key").read_bytes() != orphan
    assert (
        pki.leaf("cp2", "etcd/server").key_pem
        == (state / "masters/cp2/pki/etcd/server.key").read_bytes()
    )


def test_ca_key_without_cert_hint_covers_an_interrupted_first_run(state: Path) -> None:
    (state / "pki/front-proxy-ca.crt").unlink()
    with pytest.raises(
        StateError, match=r"front-proxy-ca\.key exists but its certificate"
    ) as caught:
        ensure_pki(make_inventory(), state, now=NOW)
    assert "interrupted" in (caught.value.hint or "")


def test_a_second_concurrent_run_is_refused(state: Path) -> None:
    fd = os.open(state / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(StateError, match="in use by another bootstrap run"):
            ensure_pki(make_inventory(), state, now=NOW)
    finally:
        os.close(fd)
    assert ensure_pki(make_inventory(), state, now=NOW).events == ()


@pytest.fixture(scope="module")
def rsa_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = tmp_path_factory.mktemp("rsa") / "state"
    ensure_pki(make_inventory(masters=1, key_algorithm="RSA-2048"), state, now=NOW)
    return state


@pytest.mark.parametrize("component", ["d", "dmp1", "iqmp"])
def test_damaged_rsa_key_is_refused(rsa_state: Path, tmp_path: Path, component: str) -> None:
    inventory = make_inventory(masters=1, key_algorithm="RSA-2048")
    state = tmp_path / "state"
    shutil.copytree(rsa_state, state)
    path = state / "masters/cp1/pki/apiserver.key"
    key = load_pem_private_key(path.read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    numbers = key.private_numbers()
    parts = {
        "p": numbers.p,
        "q": numbers.q,
        "d": numbers.d,
        "dmp1": numbers.dmp1,
        "dmq1": numbers.dmq1,
        "iqmp": numbers.iqmp,
    }
    parts[component] ^= 1 << 40  # one flipped bit; modulus and exponent intact
    damaged = rsa.RSAPrivateNumbers(**parts, public_numbers=numbers.public_numbers)
    path.write_bytes(
        damaged.private_key(unsafe_skip_rsa_key_validation=True).private_bytes(
            Encoding.PEM, PrivateFormat.TraditionalOpenSSL, NoEncryption()
        )
    )
    # openssl agrees the key is broken.
    # (openssl 3.0 exits 0 either way; "RSA key ok" is only printed for a sound key.)
    checked = openssl("rsa", "-check", "-noout", "-in", str(path))
    assert "RSA key ok" not in checked.stdout and "rsa_validate_keypair" in checked.stderr
    with pytest.raises(
        StateError, match=r"apiserver\.key is not a readable PEM private key .*inconsistent"
    ):
        ensure_pki(inventory, state, now=NOW)


def test_leaves_capped_by_an_ageing_ca_are_not_reissued_every_run(tmp_path: Path) -> None:
    inventory = make_inventory(masters=1, ca_validity_seconds=400 * 24 * HOUR)
    state = tmp_path / "state"
    ensure_pki(inventory, state, now=NOW)
    late = NOW + timedelta(days=390)  # CA ends in ~10 days: inside the renewal window
    first = ensure_pki(inventory, state, now=late)
    assert first.events  # the 1-year leaves were due; re-issued up to the CA's end
    assert (
        first.leaf("cp1", "apiserver").cert.not_valid_after_utc
        == first.ca().cert.not_valid_after_utc
    )
    second = ensure_pki(inventory, state, now=late + timedelta(hours=1))
    assert second.events == ()
