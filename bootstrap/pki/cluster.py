"""Load-or-create the whole cluster PKI in the state directory.

State directory layout (every dir 0700, keys 0600, certs 0644; all writes atomic)::

    <state_dir>/
      .lock                            flock held while ensure_pki runs
      admin.conf                       operator's admin kubeconfig (same bytes as on masters)
      super-admin.conf                 break-glass kubeconfig (the first master's copy)
      pki/                             shared by every master
        ca.{crt,key}  front-proxy-ca.{crt,key}  etcd/ca.{crt,key}
        sa.key  sa.pub
        encryption-at-rest.key         base64 of 32 random bytes (when encryption at rest is on)
        kubeconfig/admin.{crt,key}     one admin client cert for the cluster
        kubeconfig/super-admin.{crt,key}
      masters/<name>/
        pki/                           that master's leaves, same names as in /etc/kubernetes/pki
          apiserver.{crt,key} apiserver-kubelet-client.* apiserver-etcd-client.*
          front-proxy-client.* etcd/server.* etcd/peer.* etcd/healthcheck-client.*
        kubeconfig/                    client certs of controller-manager, scheduler, kubelet

Rules: valid material is reused byte for byte; inconsistent material is refused with a
StateError before anything is written; a CA is never regenerated; a leaf or client cert
is re-issued (with a new key) only when its desired subject/usages/SANs or key algorithm
changed, or it expires within the renewal window.
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from bootstrap.errors import StateError
from bootstrap.inventory.model import API_PORT, KUBERNETES_DIR, PKI_DIR, Inventory, url_host
from bootstrap.kubeconfig import KubeconfigSpec, build_kubeconfig, kubeconfig_specs
from bootstrap.model import FileSpec
from bootstrap.pki import encryption
from bootstrap.pki.issue import issue_ca, issue_leaf, shape_differences
from bootstrap.pki.keys import (
    KeyFactory,
    PrivateKey,
    algorithm_of,
    generate_key,
    load_public_key,
    private_key_pem,
    public_key_pem,
    same_public_key,
)
from bootstrap.pki.store import (
    CERT_MODE,
    DIR_MODE,
    KEY_MODE,
    CertKey,
    check_ca,
    check_signed_by,
    ensure_dir,
    load_pair,
    parse_key,
    read_optional,
    write_atomic,
)
from bootstrap.pki.table import CA, CA_SPECS, CertSpec, client_spec, leaf_specs

BACKDATE = timedelta(minutes=5)  # kubeadm's CertificateBackdate (clock skew between hosts)
RENEWAL_WINDOW = timedelta(days=30)  # re-issue leaves that expire sooner than this
SA_KEY = "sa.key"
SA_PUB = "sa.pub"
ENCRYPTION_KEY_FILE = "encryption-at-rest.key"
LOCK_FILE = ".lock"


def admin_kubeconfig_path(state_dir: Path) -> Path:
    """The operator's copy of admin.conf."""
    return state_dir / "admin.conf"


def super_admin_kubeconfig_path(state_dir: Path) -> Path:
    """The operator's copy of super-admin.conf (system:masters; e.g. to create the
    kubeadm:cluster-admins ClusterRoleBinding admin.conf needs)."""
    return state_dir / "super-admin.conf"


def shared_pki_dir(state_dir: Path) -> Path:
    return state_dir / "pki"


def master_dir(state_dir: Path, master_name: str) -> Path:
    return state_dir / "masters" / master_name


@dataclass(frozen=True)
class ClusterPKI:
    """Everything for all masters, loaded or created by ``ensure_pki``."""

    cluster_name: str
    first_master: str
    cas: Mapping[str, CertKey]  # "ca", "front-proxy-ca", "etcd/ca"
    leaves: Mapping[str, Mapping[str, CertKey]]  # master -> "apiserver", "etcd/server", ...
    clients: Mapping[str, Mapping[str, CertKey]] = field(
        repr=False
    )  # master -> "admin.conf" -> cert
    kubeconfigs: Mapping[str, Mapping[str, bytes]] = field(
        repr=False
    )  # master -> "admin.conf" -> doc
    sa_key_pem: bytes = field(repr=False)
    sa_pub_pem: bytes = field(repr=False)
    # EncryptionConfiguration YAML; b"" when encryption at rest is off.
    encryption_config: bytes = field(repr=False)
    # What this call created or re-issued, for progress output ("issued cp1/apiserver", ...).
    events: tuple[str, ...] = ()

    def ca(self, name: str = CA) -> CertKey:
        return self.cas[name]

    def leaf(self, master_name: str, name: str) -> CertKey:
        return self.leaves[master_name][name]

    def client(self, master_name: str, kubeconfig_file: str) -> CertKey:
        return self.clients[master_name][kubeconfig_file]

    def host_files(self, master_name: str) -> dict[str, FileSpec]:
        """/etc/kubernetes/pki of one master: shared CAs + sa pair + that master's leaves.
        Modes as kubeadm 1.36 writes them (§11.8): *.crt 0644, *.key and sa.pub 0600."""
        files: dict[str, FileSpec] = {}
        for material in [*self.cas.values(), *self.leaves[master_name].values()]:
            crt = f"{PKI_DIR}/{material.name}.crt"
            files[crt] = FileSpec(crt, material.cert_pem, CERT_MODE)
            if material.key_pem:
                key = f"{PKI_DIR}/{material.name}.key"
                files[key] = FileSpec(key, material.key_pem, KEY_MODE, secret=True)
        files[f"{PKI_DIR}/{SA_KEY}"] = FileSpec(
            f"{PKI_DIR}/{SA_KEY}", self.sa_key_pem, KEY_MODE, secret=True
        )
        files[f"{PKI_DIR}/{SA_PUB}"] = FileSpec(f"{PKI_DIR}/{SA_PUB}", self.sa_pub_pem, KEY_MODE)
        return files

    def kubeconfig_files(self, master_name: str) -> dict[str, FileSpec]:
        """/etc/kubernetes/*.conf of one master, 0600 (they embed private keys)."""
        files: dict[str, FileSpec] = {}
        for file_name, document in self.kubeconfigs[master_name].items():
            path = f"{KUBERNETES_DIR}/{file_name}"
            files[path] = FileSpec(path, document, KEY_MODE, secret=True)
        return files


def ensure_pki(
    inventory: Inventory,
    state_dir: Path,
    *,
    now: datetime | None = None,
    key_factory: KeyFactory = generate_key,
    renew: Collection[str] = (),
) -> ClusterPKI:
    """Load the cluster PKI from state_dir, creating what is missing. Raises StateError
    (before writing anything) when existing material is inconsistent.

    ``renew`` names leaf/client certificates to re-issue (new key, same shape, validity
    from ``now``) even when they are still good: labels as in ``events``, e.g.
    "cp1/apiserver", "cp1/kubeconfig/scheduler", "kubeconfig/admin". CAs and sa.* are
    never renewed (``certs renew``, kubeadm.md §2.3)."""
    moment = now or datetime.now(UTC)
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    ensure_dir(state_dir)
    with _locked(state_dir):
        return _ensure(_Run(inventory, state_dir, moment, key_factory, frozenset(renew)))


@contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """One ensure_pki per state dir at a time: two concurrent runs could otherwise each
    create a CA and interleave their writes."""
    fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, KEY_MODE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise StateError(
                f"{state_dir} is in use by another bootstrap run",
                hint="wait for the other run to finish, then retry",
            ) from exc
        yield
    finally:
        os.close(fd)  # releases the lock


def _ensure(run: _Run) -> ClusterPKI:
    inventory, state_dir = run.inventory, run.state_dir
    cas = {spec.name: run.ca(spec) for spec in CA_SPECS}
    sa_key_pem, sa_pub_pem = run.service_account()
    config = b""
    if inventory.encryption_at_rest:
        config = encryption.encryption_config(run.encryption_key())

    first = inventory.masters[0].name
    shared_clients: dict[str, CertKey] = {}
    leaves: dict[str, dict[str, CertKey]] = {}
    clients: dict[str, dict[str, CertKey]] = {}
    kubeconfigs: dict[str, dict[str, bytes]] = {}
    for master in inventory.masters:
        mdir = master_dir(state_dir, master.name)
        leaves[master.name] = {
            spec.name: run.leaf(
                spec, mdir / "pki", cas[spec.issuer or CA], f"{master.name}/{spec.name}"
            )
            for spec in leaf_specs(inventory, master)
        }
        clients[master.name] = {}
        kubeconfigs[master.name] = {}
        local = f"https://{url_host(master.address)}:{API_PORT}"
        for kspec in kubeconfig_specs(master.name):
            if kspec.first_master_only and master.name != first:
                continue
            material = _client(run, kspec, cas[CA], shared_clients, mdir)
            server = (
                f"https://{inventory.control_plane_endpoint}"
                if kspec.endpoint == "cluster"
                else local
            )
            clients[master.name][kspec.file_name] = material
            kubeconfigs[master.name][kspec.file_name] = build_kubeconfig(
                cluster_name=inventory.cluster_name,
                server=server,
                ca_pem=cas[CA].cert_pem,
                user=kspec.common_name,
                client_cert_pem=material.cert_pem,
                client_key_pem=material.key_pem,
            )

    run.pending[admin_kubeconfig_path(state_dir)] = (kubeconfigs[first]["admin.conf"], KEY_MODE)
    run.pending[super_admin_kubeconfig_path(state_dir)] = (
        kubeconfigs[first]["super-admin.conf"],
        KEY_MODE,
    )
    run.commit()
    return ClusterPKI(
        cluster_name=inventory.cluster_name,
        first_master=first,
        cas=cas,
        leaves=leaves,
        clients=clients,
        kubeconfigs=kubeconfigs,
        sa_key_pem=sa_key_pem,
        sa_pub_pem=sa_pub_pem,
        encryption_config=config,
        events=tuple(run.events),
    )


def _client(
    run: _Run, kspec: KubeconfigSpec, ca: CertKey, shared: dict[str, CertKey], mdir: Path
) -> CertKey:
    spec = client_spec(f"kubeconfig/{kspec.cert_name}", kspec.common_name, kspec.organizations)
    if kspec.scope == "cluster":
        if kspec.file_name not in shared:
            shared[kspec.file_name] = run.leaf(
                spec, shared_pki_dir(run.state_dir), ca, spec.name, client=True
            )
        return shared[kspec.file_name]
    return run.leaf(spec, mdir, ca, f"{mdir.name}/{spec.name}", client=True)


class _Run:
    """One ensure_pki call: validates and creates in memory, writes only in commit()."""

    def __init__(
        self,
        inventory: Inventory,
        state_dir: Path,
        now: datetime,
        key_factory: KeyFactory,
        renew: frozenset[str] = frozenset(),
    ) -> None:
        self.inventory = inventory
        self.renew = renew
        self.state_dir = state_dir
        self.shared = shared_pki_dir(state_dir)
        self.now = now
        self.key_factory = key_factory
        self.pending: dict[Path, tuple[bytes, int]] = {}
        self.events: list[str] = []
        validity = timedelta(seconds=inventory.cert_validity_seconds)
        # Short configured validities get a proportional window, so a re-run right after
        # issuing never re-issues again (determinism).
        self.renew_before = min(RENEWAL_WINDOW, validity / 3)

    def _new_key(self) -> tuple[PrivateKey, bytes]:
        key = self.key_factory(self.inventory.key_algorithm)
        return key, private_key_pem(key)

    def _stage(self, directory: Path, material: CertKey) -> None:
        self.pending[directory / f"{material.name}.crt"] = (material.cert_pem, CERT_MODE)
        self.pending[directory / f"{material.name}.key"] = (material.key_pem, KEY_MODE)

    def ca(self, spec: CertSpec) -> CertKey:
        crt, key = self.shared / f"{spec.name}.crt", self.shared / f"{spec.name}.key"
        existing = load_pair(spec.name, crt, key, ca=True)
        if existing is not None:
            check_ca(existing, crt, key, self.now)
            return existing
        private, key_pem = self._new_key()
        not_after = self.now + timedelta(seconds=self.inventory.ca_validity_seconds)
        cert = issue_ca(spec, private, self.now - BACKDATE, not_after)
        material = CertKey(spec.name, cert, private, _pem(cert), key_pem)
        self._stage(self.shared, material)
        self.events.append(f"created CA {spec.name}")
        return material

    def leaf(
        self, spec: CertSpec, directory: Path, ca: CertKey, label: str, *, client: bool = False
    ) -> CertKey:
        assert ca.key is not None  # every CA here was loaded with its key
        crt, key = directory / f"{spec.name}.crt", directory / f"{spec.name}.key"
        existing = load_pair(spec.name, crt, key, ca=False)
        if existing is not None:
            check_signed_by(existing, ca, crt, key, ca.name)
            reasons = self._reissue_reasons(existing, spec, ca)
            if label in self.renew:
                reasons.append("renewal requested")
            if not reasons:
                return existing
            self.events.append(f"re-issued {label}: " + "; ".join(reasons))
        else:
            self.events.append(f"issued {label}")
        private, key_pem = self._new_key()
        ca_not_after = ca.cert.not_valid_after_utc
        # kubeadm 1.36 (§11.10): kubeconfig client certs take NotBefore from the CA,
        # the other leaves are backdated from now. Never outlive the CA.
        not_before = ca.cert.not_valid_before_utc if client else self.now - BACKDATE
        not_after = min(
            self.now + timedelta(seconds=self.inventory.cert_validity_seconds), ca_not_after
        )
        cert = issue_leaf(spec, private, ca.cert, ca.key, not_before, not_after)
        material = CertKey(spec.name, cert, private, _pem(cert), key_pem)
        self._stage(directory, material)
        return material

    def _reissue_reasons(self, existing: CertKey, spec: CertSpec, ca: CertKey) -> list[str]:
        reasons = shape_differences(existing.cert, spec)
        assert existing.key is not None
        have = algorithm_of(existing.key)
        if have != self.inventory.key_algorithm:
            reasons.append(f"key algorithm {have or 'unknown'} -> {self.inventory.key_algorithm}")
        expires = existing.cert.not_valid_after_utc
        # A leaf already ending with its CA cannot get any better: re-issuing it on every
        # run would only break determinism.
        capped = expires >= ca.cert.not_valid_after_utc
        if expires - self.now < self.renew_before and not capped:
            reasons.append(f"expires {expires:%Y-%m-%d %H:%M} UTC")
        return reasons

    def service_account(self) -> tuple[bytes, bytes]:
        """sa.key/sa.pub: a bare key pair shared by every apiserver (token signing)."""
        key_path, pub_path = self.shared / SA_KEY, self.shared / SA_PUB
        hint = (
            f"restore {key_path} and {pub_path} from a backup. Deleting both generates a new "
            "pair, which invalidates every service-account token of the cluster"
        )
        key_pem, pub_pem = read_optional(key_path), read_optional(pub_path)
        if key_pem is None:
            if pub_pem is not None:
                raise StateError(
                    f"{pub_path} exists but the signing key {key_path} is missing", hint=hint
                )
            private, key_pem = self._new_key()
            pub_pem = public_key_pem(private)
            self.pending[key_path] = (key_pem, KEY_MODE)
            self.pending[pub_path] = (pub_pem, KEY_MODE)
            self.events.append("created service-account key pair sa.key/sa.pub")
            return key_pem, pub_pem
        private = parse_key(key_pem, key_path, hint)
        if pub_pem is None:  # derivable: kubeadm does the same
            pub_pem = public_key_pem(private)
            self.pending[pub_path] = (pub_pem, KEY_MODE)
            self.events.append("re-derived sa.pub from sa.key")
            return key_pem, pub_pem
        try:
            public = load_public_key(pub_pem)
        except ValueError as exc:
            raise StateError(
                f"{pub_path} is not a readable PEM public key ({exc})", hint=hint
            ) from exc
        if not same_public_key(public, private):
            raise StateError(f"{pub_path} is not the public half of {key_path}", hint=hint)
        return key_pem, pub_pem

    def encryption_key(self) -> str:
        path = self.shared / ENCRYPTION_KEY_FILE
        data = read_optional(path)
        if data is not None:
            return encryption.parse_key_file(data, path)
        key = encryption.new_key()
        self.pending[path] = (encryption.encode_key_file(key), KEY_MODE)
        self.events.append("created encryption-at-rest key")
        return key

    def commit(self) -> None:
        # Keys before certificates: an interruption leaves at worst a key without its
        # certificate, which the next run handles (see store.load_pair).
        for path in sorted(self.pending, key=lambda p: (p.suffix != ".key", p)):
            data, mode = self.pending[path]
            write_atomic(path, data, mode)
        _tighten_modes(self.state_dir)


def _tighten_modes(state_dir: Path) -> None:
    """Reused material keeps its bytes, but never a mode looser than ours (a user may have
    copied files in with 0644/0755)."""
    for path in [state_dir, *state_dir.rglob("*")]:
        if path.is_symlink():
            continue
        if path.is_dir():
            wanted = DIR_MODE
        elif path.suffix in (".key", ".conf", ".pub"):
            wanted = KEY_MODE
        elif path.suffix == ".crt":
            wanted = CERT_MODE
        else:
            continue
        if stat.S_IMODE(path.stat().st_mode) & ~wanted:
            path.chmod(wanted)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.PEM)
