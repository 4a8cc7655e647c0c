"""Push against a real sshd on loopback: write only what differs, keep mtimes of
unchanged files, fix modes, back up replaced manifests outside the manifests dir, and
write support files before manifests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.model import FileSpec, RemoteFile
from bootstrap.transport import SSHHost, connect
from bootstrap.transport.push import apply_changes, classify, diff_host, summarize
from tests.sshd_support import Sshd, make_master

pytestmark = pytest.mark.sshd


@pytest.fixture(scope="module")
def push_key(sshd: Sshd) -> Path:
    key = sshd.new_client_key("push")
    sshd.authorize("root", key.with_suffix(".pub"))
    return key


@pytest.fixture
def host(
    sshd: Sshd,
    push_key: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SSHHost]:
    key = push_key
    known = tmp_path_factory.mktemp("ssh") / "known_hosts"
    known.write_text(sshd.known_hosts_line())
    h = connect(make_master(sshd, known, key))
    try:
        yield h
    finally:
        h.close()


def tree(root: Path, manifest: bytes = b"kind: Pod\n") -> dict[str, FileSpec]:
    specs = [
        FileSpec(str(root / "pki/ca.crt"), b"cert\n", 0o644),
        FileSpec(str(root / "pki/ca.key"), b"key\n", 0o600, secret=True),
        FileSpec(str(root / "manifests/etcd.yaml"), manifest, 0o600),
    ]
    return {s.path: s for s in specs}


def test_classify() -> None:
    spec = FileSpec("/x", b"a", 0o600)
    assert classify(spec, None).action == "create"
    assert classify(spec, RemoteFile(spec.sha256, 0o600)).action == "unchanged"
    assert classify(spec, RemoteFile(spec.sha256, 0o644)).action == "mode"
    assert classify(spec, RemoteFile("0" * 64, 0o600)).action == "change"


def test_second_push_writes_nothing_and_keeps_mtimes(host: SSHHost, tmp_path: Path) -> None:
    desired = tree(tmp_path)
    first = diff_host(host, desired)
    assert [c.action for c in first] == ["create"] * 3
    written = apply_changes(host, first, manifests_dir=str(tmp_path / "manifests"))
    # Support files before manifests: the pod must never start against missing certs.
    assert [c.spec.path for c in written][-1].endswith("manifests/etcd.yaml")
    for spec in desired.values():
        assert Path(spec.path).read_bytes() == spec.content
        assert Path(spec.path).stat().st_mode & 0o777 == spec.mode
    mtimes = {p: os.stat(p).st_mtime_ns for p in desired}

    second = diff_host(host, desired)
    assert all(c.action == "unchanged" for c in second)
    assert summarize(second) == "0 changed, 3 unchanged"
    assert apply_changes(host, second) == []
    assert {p: os.stat(p).st_mtime_ns for p in desired} == mtimes


def test_only_the_changed_file_is_written_and_modes_are_fixed(
    host: SSHHost, tmp_path: Path
) -> None:
    desired = tree(tmp_path)
    apply_changes(host, diff_host(host, desired), manifests_dir=str(tmp_path / "manifests"))
    ca = tmp_path / "pki/ca.crt"
    key = tmp_path / "pki/ca.key"
    key.chmod(0o644)  # someone loosened it
    ca_mtime = ca.stat().st_mtime_ns

    changed = tree(tmp_path, manifest=b"kind: Pod\nmetadata: {name: etcd}\n")
    changes = {c.spec.path: c.action for c in diff_host(host, changed)}
    assert changes == {
        str(ca): "unchanged",
        str(key): "mode",
        str(tmp_path / "manifests/etcd.yaml"): "change",
    }
    backup = tmp_path / "backup"
    apply_changes(
        host,
        diff_host(host, changed),
        backup_dir=str(backup),
        manifests_dir=str(tmp_path / "manifests"),
    )
    assert key.stat().st_mode & 0o777 == 0o600
    assert ca.stat().st_mtime_ns == ca_mtime
    # The replaced manifest was backed up, outside the manifests dir, with its old content.
    assert (backup / "etcd.yaml").read_bytes() == b"kind: Pod\n"
    assert backup.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in (tmp_path / "manifests").iterdir()) == ["etcd.yaml"]


def test_created_manifest_needs_no_backup(host: SSHHost, tmp_path: Path) -> None:
    backup = tmp_path / "backup"
    apply_changes(
        host,
        diff_host(host, tree(tmp_path)),
        backup_dir=str(backup),
        manifests_dir=str(tmp_path / "manifests"),
    )
    assert not backup.exists()
