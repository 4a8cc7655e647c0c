"""Kubeconfigs (reference/kubeadm.md §3, §9.4, §11.12): parsed with yaml, embedded
client certs checked with cryptography and openssl against ca.crt."""

from __future__ import annotations

import base64
import ipaddress
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from bootstrap.errors import StateError
from bootstrap.kubeconfig import build_kubeconfig, parse_kubeconfig
from bootstrap.pki import ClusterPKI, admin_kubeconfig_path, ensure_pki, super_admin_kubeconfig_path
from tests.pki_support import NOW, make_inventory, openssl_subject, openssl_verify

# file -> (subject as openssl prints it, endpoint kind)
EXPECTED = {
    "admin.conf": ("O = kubeadm:cluster-admins, CN = kubernetes-admin", "cluster"),
    "super-admin.conf": ("O = system:masters, CN = kubernetes-super-admin", "cluster"),
    "controller-manager.conf": ("CN = system:kube-controller-manager", "local"),
    "scheduler.conf": ("CN = system:kube-scheduler", "local"),
    "kubelet.conf": ("O = system:nodes, CN = system:node:{node}", "local"),
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> tuple[ClusterPKI, Path]:
    state = tmp_path_factory.mktemp("kubeconfig") / "state"
    return ensure_pki(make_inventory(cluster_name="lab"), state, now=NOW), state


def load(document: bytes) -> dict[str, Any]:
    parsed = yaml.safe_load(document)
    assert isinstance(parsed, dict)
    return parsed


def test_every_kubeconfig_has_kubeadms_shape(
    cluster: tuple[ClusterPKI, Path], tmp_path: Path
) -> None:
    pki, _ = cluster
    ca_pem = pki.ca("ca").cert_pem
    for index, master in enumerate(make_inventory().masters):
        files = pki.kubeconfig_files(master.name)
        names = {path.removeprefix("/etc/kubernetes/") for path in files}
        want_names = set(EXPECTED) if index == 0 else set(EXPECTED) - {"super-admin.conf"}
        assert names == want_names, master.name
        for file_name in names:
            spec = files[f"/etc/kubernetes/{file_name}"]
            assert (spec.mode, spec.secret) == (0o600, True)
            doc = load(spec.content)
            subject, endpoint = EXPECTED[file_name]
            subject = subject.format(node=master.name)
            user = subject.rsplit("CN = ", 1)[1]
            server = (
                "https://k8s-api.example.internal:6443"
                if endpoint == "cluster"
                else f"https://{master.address}:6443"
            )
            assert doc["apiVersion"] == "v1" and doc["kind"] == "Config"
            assert doc["clusters"] == [
                {
                    "name": "lab",
                    "cluster": {
                        "server": server,
                        "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                    },
                }
            ]
            assert doc["contexts"] == [
                {"name": f"{user}@lab", "context": {"cluster": "lab", "user": user}}
            ]
            assert doc["current-context"] == f"{user}@lab"
            [entry] = doc["users"]
            assert entry["name"] == user
            cert_pem = base64.b64decode(entry["user"]["client-certificate-data"])
            key_pem = base64.b64decode(entry["user"]["client-key-data"])
            assert openssl_subject(cert_pem) == subject
            openssl_verify(ca_pem, cert_pem, tmp_path, "-x509_strict", "-purpose", "sslclient")
            cert = x509.load_pem_x509_certificate(cert_pem)
            key = serialization.load_pem_private_key(key_pem, None)
            assert key_pem.startswith(b"-----BEGIN EC PRIVATE KEY-----")
            spki = serialization.PublicFormat.SubjectPublicKeyInfo
            pem = serialization.Encoding.PEM
            assert key.public_key().public_bytes(pem, spki) == cert.public_key().public_bytes(
                pem, spki
            )
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
            # kubeadm 1.36 (§11.10): client certs take NotBefore from the CA.
            assert cert.not_valid_before_utc == pki.ca("ca").cert.not_valid_before_utc


def test_admin_conf_is_one_document_for_the_cluster_and_the_operator(
    cluster: tuple[ClusterPKI, Path],
) -> None:
    pki, state = cluster
    copies = {
        pki.kubeconfig_files(m)["/etc/kubernetes/admin.conf"].content for m in ("cp1", "cp2", "cp3")
    }
    assert len(copies) == 1
    assert admin_kubeconfig_path(state).read_bytes() == copies.pop()
    assert admin_kubeconfig_path(state).stat().st_mode & 0o777 == 0o600
    super_admin = pki.kubeconfig_files("cp1")["/etc/kubernetes/super-admin.conf"].content
    assert super_admin_kubeconfig_path(state).read_bytes() == super_admin


def test_local_client_certs_are_per_master(cluster: tuple[ClusterPKI, Path]) -> None:
    pki, _ = cluster
    for file_name in ("controller-manager.conf", "scheduler.conf", "kubelet.conf"):
        serials = {pki.client(m, file_name).cert.serial_number for m in ("cp1", "cp2", "cp3")}
        assert len(serials) == 3, file_name


def test_ipv6_endpoints_are_bracketed(tmp_path: Path) -> None:
    inventory = make_inventory(
        masters=1,
        addresses=["fd00::11"],
        control_plane_host="fd00::10",
        service_subnet=ipaddress.ip_network("fd00:96::/108"),
        pod_subnet=None,
    )
    pki = ensure_pki(inventory, tmp_path / "state", now=NOW)
    files = pki.kubeconfig_files("cp1")
    assert load(files["/etc/kubernetes/admin.conf"].content)["clusters"][0]["cluster"][
        "server"
    ] == ("https://[fd00::10]:6443")
    assert load(files["/etc/kubernetes/kubelet.conf"].content)["clusters"][0]["cluster"][
        "server"
    ] == ("https://[fd00::11]:6443")


def test_build_and_parse_round_trip() -> None:
    document = build_kubeconfig(
        cluster_name="c",
        server="https://10.0.0.1:6443",
        ca_pem=b"CA",
        user="system:node:cp1",
        client_cert_pem=b"CERT",
        client_key_pem=b"KEY",
    )
    parsed = parse_kubeconfig(document, "kubelet.conf")
    assert (parsed.cluster_name, parsed.server, parsed.user) == (
        "c",
        "https://10.0.0.1:6443",
        "system:node:cp1",
    )
    assert (parsed.ca_pem, parsed.client_cert_pem, parsed.client_key_pem) == (
        b"CA",
        b"CERT",
        b"KEY",
    )
    assert b"KEY" not in repr(parsed).encode()
    # One line per blob, keys in kubeadm's order.
    lines = document.decode().splitlines()
    assert lines[0] == "apiVersion: v1" and "current-context: system:node:cp1@c" in lines
    assert lines.index("kind: Config") < lines.index("preferences: {}") < lines.index("users:")


@pytest.mark.parametrize(
    "document",
    [b"", b"{not yaml", b"apiVersion: v1\n", b"current-context: x\ncontexts: []\n"],
    ids=["empty", "bad-yaml", "no-context", "dangling-context"],
)
def test_parse_refuses_broken_documents(document: bytes) -> None:
    with pytest.raises(StateError, match=r"admin\.conf is not a usable kubeconfig") as caught:
        parse_kubeconfig(document, "admin.conf")
    assert caught.value.hint


def test_kubeconfig_module_does_not_import_cryptography() -> None:
    code = "import sys, bootstrap.kubeconfig; sys.exit('cryptography' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], cwd=root, check=False).returncode == 0
