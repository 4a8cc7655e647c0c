"""Client credentials are handed to ssl/grpc from memory: no key copy on disk (issue 16.6).

Real parts: the session's own PKI (ensure_pki in a temp state dir), the stdlib ssl module
loading the in-memory files, and the etcd client's TLS setup. The lab test that counts key
copies after a series of real commands (SIGINT and a concurrent pair included) is
tests/test_hardening_lab.py::test_no_key_copies_after_commands.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from bootstrap.health.waits import etcd_tls, kubeconfig_tls
from bootstrap.local import memfile
from bootstrap.local.memfile import MemoryFiles, describe, sweep_stale
from bootstrap.run.etcdview import healthcheck_tls
from bootstrap.run.session import Session
from tests.pki_support import make_inventory

KEY_MARKER = b"PRIVATE KEY"


def files_with_keys(root: Path) -> set[str]:
    """Every file under root (dot-files included) holding PEM private key material."""
    found = set()
    for path in root.rglob("*"):
        if path.is_file() and KEY_MARKER in path.read_bytes():
            found.add(str(path.relative_to(root)))
    return found


@pytest.fixture()
def session(tmp_path: Path) -> Session:
    s = Session(inventory=make_inventory(), state_dir=tmp_path / "state")
    s.pki  # noqa: B018  (the state dir's PKI, as a command loads it)
    return s


def test_credentials_come_from_memory_and_leave_nothing(session: Session) -> None:
    state = session.state_dir
    before = files_with_keys(state)
    tls = etcd_tls(session, "cp2")
    health = healthcheck_tls(session, "cp1")
    admin = kubeconfig_tls(session, "cp1")
    super_admin = kubeconfig_tls(session, "cp1", "super-admin.conf")
    paths = [tls.ca, tls.cert, tls.key, health.cert, health.key, admin.cert, admin.key]
    assert all(str(p).startswith("/proc/self/fd/") for p in paths), paths
    # The content is the master's own file, byte for byte.
    pki = session.pki
    assert Path(tls.key).read_bytes() == pki.leaf("cp2", "apiserver-etcd-client").key_pem
    assert Path(admin.key).read_bytes() == pki.client("cp1", "admin.conf").key_pem
    assert Path(super_admin.cert).read_bytes() == pki.client("cp1", "super-admin.conf").cert_pem
    # ssl opens them like files (what httpcheck and the gateway do).
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(admin.ca))
    ctx.load_cert_chain(str(admin.cert), str(admin.key))
    # Messages name the file, not a descriptor.
    assert describe(tls.key) == "cp2:/etc/kubernetes/pki/apiserver-etcd-client.key (in memory)"
    # Nothing was written: no new file holds a key, no private directory exists.
    assert files_with_keys(state) == before
    assert not [p for p in state.iterdir() if p.name.startswith(".creds")]
    # Same file asked twice: one memory file.
    assert etcd_tls(session, "cp2").key == tls.key
    session.close()
    with pytest.raises(OSError):
        Path(tls.key).read_bytes()  # closed with the session


def test_only_the_asked_files_exist(session: Session) -> None:
    before = set(os.listdir("/proc/self/fd"))
    etcd_tls(session, "cp1")
    opened = set(os.listdir("/proc/self/fd")) - before
    assert len(opened) == 3  # CA, cert, key of apiserver-etcd-client; not the whole PKI
    session.close()


def test_memory_files_vanish_with_a_killed_process(tmp_path: Path) -> None:
    """SIGKILL leaves nothing: the files never were on disk."""
    code = (
        "import os, sys; from pathlib import Path; from bootstrap.local.memfile import MemoryFiles;"
        f"m = MemoryFiles(Path({str(tmp_path / 'state')!r}));"
        "p = m.path('cp1:/etc/kubernetes/pki/ca.key', b'-----BEGIN PRIVATE KEY-----x');"
        "print(p, flush=True); os.kill(os.getpid(), 9)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -9, proc.stderr
    assert proc.stdout.startswith("/proc/self/fd/")
    assert not (tmp_path / "state").exists()
    assert files_with_keys(tmp_path) == set()


def test_fallback_directory_is_private_and_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memfile, "_memfd_available", lambda: False)
    files = MemoryFiles(tmp_path)
    path = files.path("cp1:/etc/kubernetes/pki/ca.key", b"-----BEGIN PRIVATE KEY-----x")
    assert path.parent.name.startswith(f".creds-{os.getpid()}-")
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert sweep_stale(tmp_path) == []  # ours: alive
    files.close()
    assert list(tmp_path.iterdir()) == []


def test_sweep_removes_dead_and_old_key_copies(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    old = tmp_path / ".creds-k2x9_abq"  # the layout of the versions before PIDs in names
    (old / "cp1/etc/kubernetes/pki").mkdir(parents=True)
    (old / "cp1/etc/kubernetes/pki/ca.key").write_bytes(b"-----BEGIN PRIVATE KEY-----")
    gone = tmp_path / f".creds-{dead_pid}-abc"
    gone.mkdir()
    (gone / "admin.conf.key").write_bytes(b"-----BEGIN PRIVATE KEY-----")
    live = tmp_path / f".creds-{os.getppid()}-abc"
    live.mkdir()
    keep = tmp_path / "pki"
    keep.mkdir()
    removed = sweep_stale(tmp_path)
    assert sorted(p.name for p in removed) == sorted([old.name, gone.name])
    assert live.exists() and keep.exists()
    assert not old.exists() and not gone.exists()
    assert sweep_stale(tmp_path / "missing") == []
