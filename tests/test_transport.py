"""SSH transport against a real OpenSSH sshd on 127.0.0.1 (tests/sshd_support.py).

No paramiko mocks. The sshd runs on this machine, so the "remote" filesystem is the
local one: files the transport writes are checked with os.stat / open directly, and
OpenSSH's own ssh-keygen is the oracle for known_hosts lines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import pwd
import shutil
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.errors import (
    AuthenticationFailed,
    HostKeyMismatch,
    HostKeyUnknown,
    HostUnreachable,
    OperationTimeout,
    RemoteCommandFailed,
    TransportError,
)
from bootstrap.inventory.model import JumpHost, Master
from bootstrap.model import FileSpec, RemoteFile
from bootstrap.run.session import Session
from bootstrap.transport import CONNECT_ATTEMPTS, SSHHost, connect, connect_all
from tests.pki_support import make_inventory
from tests.sshd_support import Sshd, free_port, keygen, make_master

pytestmark = pytest.mark.sshd

TEST_USER = "bootstrap-test"
SUDOERS_FILE = Path("/etc/sudoers.d/bootstrap-test")
HANG_GUARD = 30.0  # seconds; only catches hangs, never asserts speed


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def root_key(sshd: Sshd) -> Path:
    key = sshd.new_client_key("root")
    sshd.authorize("root", key.with_suffix(".pub"))
    return key


@pytest.fixture
def known_hosts(tmp_path_factory: pytest.TempPathFactory, sshd: Sshd) -> Path:
    # Outside tmp_path: tests list tmp_path to prove no temp files are left behind.
    path = tmp_path_factory.mktemp("ssh") / "known_hosts"
    path.write_text(sshd.known_hosts_line())
    return path


@pytest.fixture
def host(sshd: Sshd, known_hosts: Path, root_key: Path) -> Iterator[SSHHost]:
    h = connect(make_master(sshd, known_hosts, root_key))
    try:
        yield h
    finally:
        h.close()


def _accepted_logins(sshd: Sshd) -> int:
    return sshd.log_text().count("Accepted publickey for ")


def _connections(sshd: Sshd) -> int:
    return sshd.log_text().count("Connection from 127.0.0.1")


def _established_to(sshd: Sshd) -> int:
    """Established client connections to the sshd (ss from iproute2 as the oracle)."""
    out = subprocess.run(
        ["ss", "-tnH", "state", "established", f"( dport = :{sshd.port} )"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return len([line for line in out.splitlines() if line.strip()])


def _no_established_to(sshd: Sshd) -> bool:
    """Wait (bounded) until no client connection to the sshd is established: paramiko
    closes sockets from its transport thread, and earlier tests' closes may still land."""
    deadline = time.monotonic() + HANG_GUARD
    while _established_to(sshd):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _other_key_line(tmp_path: Path, name: str, key_type: str = "ed25519") -> str:
    other = keygen(tmp_path / f"other-{key_type}", key_type)
    fields = other.with_suffix(".pub").read_text().split()
    return f"{name} {fields[0]} {fields[1]}\n"


def _fingerprint_of(pub: Path) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(pub)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.split()[1]


# --- host keys ------------------------------------------------------------------------


def test_unknown_host_is_refused(sshd: Sshd, root_key: Path, tmp_path: Path) -> None:
    known = tmp_path / "missing-dir" / "known_hosts"
    with pytest.raises(HostKeyUnknown) as info:
        connect(make_master(sshd, known, root_key))
    err = info.value
    assert err.host == "m1"
    assert sshd.fingerprint() in err.message
    assert err.hint is not None and "--accept-new-host-keys" in err.hint
    assert "ssh-keyscan" in err.hint
    assert not known.exists()


def test_plain_host_entry_does_not_match_a_non_22_port(
    sshd: Sshd, root_key: Path, tmp_path: Path
) -> None:
    # OpenSSH files non-22 ports only under "[host]:port"; "127.0.0.1" alone is another key.
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line("127.0.0.1"))
    with pytest.raises(HostKeyUnknown):
        connect(make_master(sshd, known, root_key))


@pytest.mark.parametrize("accept_new", [False, True])
def test_changed_host_key_is_refused_and_known_hosts_untouched(
    sshd: Sshd, root_key: Path, tmp_path: Path, accept_new: bool
) -> None:
    name = f"[127.0.0.1]:{sshd.port}"
    known = tmp_path / "known_hosts"
    known.write_text("# comment line\n" + _other_key_line(tmp_path, name))
    expected_fp = _fingerprint_of(tmp_path / "other-ed25519.pub")
    before = known.read_bytes()
    with pytest.raises(HostKeyMismatch) as info:
        connect(make_master(sshd, known, root_key), accept_new_host_keys=accept_new)
    err = info.value
    assert err.host == "m1"
    assert expected_fp in err.message
    assert sshd.fingerprint() in err.message
    assert err.hint is not None and f"ssh-keygen -f {known} -R '{name}'" in err.hint
    assert known.read_bytes() == before


def test_host_known_only_with_another_key_type_is_a_mismatch(
    sshd: Sshd, root_key: Path, tmp_path: Path
) -> None:
    name = f"[127.0.0.1]:{sshd.port}"
    known = tmp_path / "known_hosts"
    known.write_text(_other_key_line(tmp_path, name, "ecdsa"))
    before = known.read_bytes()
    with pytest.raises(HostKeyMismatch):
        connect(make_master(sshd, known, root_key), accept_new_host_keys=True)
    assert known.read_bytes() == before


@pytest.mark.parametrize("via", ["flag", "policy"])
def test_accept_new_records_the_key(sshd: Sshd, root_key: Path, tmp_path: Path, via: str) -> None:
    known = tmp_path / "fresh" / "known_hosts"
    master = make_master(
        sshd, known, root_key, policy="accept-new" if via == "policy" else "strict"
    )
    with connect(master, accept_new_host_keys=via == "flag") as h:
        assert h.run("echo ok").stdout == b"ok\n"
        assert any(sshd.fingerprint() in n for n in h.notices)
    assert known.read_text() == sshd.known_hosts_line()
    assert stat.S_IMODE(known.stat().st_mode) == 0o600
    assert stat.S_IMODE(known.parent.stat().st_mode) == 0o700
    # OpenSSH itself finds the recorded line.
    found = subprocess.run(
        ["ssh-keygen", "-F", f"[127.0.0.1]:{sshd.port}", "-f", str(known)],
        capture_output=True,
        text=True,
    )
    assert found.returncode == 0, found.stderr
    # Now strict works and records nothing more.
    with connect(make_master(sshd, known, root_key)) as h:
        assert h.notices == []
    assert known.read_text() == sshd.known_hosts_line()


def test_accept_new_appends_after_a_last_line_without_newline(
    sshd: Sshd, root_key: Path, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    other = _other_key_line(tmp_path, "otherhost").rstrip("\n")
    known.write_text(other)
    with connect(make_master(sshd, known, root_key), accept_new_host_keys=True):
        pass
    assert known.read_text() == other + "\n" + sshd.known_hosts_line()


def test_hashed_known_hosts_entry(sshd: Sshd, root_key: Path, known_hosts: Path) -> None:
    subprocess.run(["ssh-keygen", "-H", "-f", str(known_hosts)], check=True, capture_output=True)
    text = known_hosts.read_text()
    assert text.startswith("|1|") and "127.0.0.1" not in text
    with connect(make_master(sshd, known_hosts, root_key)) as h:
        assert h.run("true").exit_status == 0


def test_bracket_port_form_among_other_lines(sshd: Sshd, root_key: Path, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(
        "@cert-authority *.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE\n"
        "garbage line\n"
        + _other_key_line(tmp_path, "otherhost")
        + f"somehost,[127.0.0.1]:{sshd.port} {sshd.host_pub_line}\n"
    )
    with connect(make_master(sshd, known, root_key)) as h:
        assert h.run("true").exit_status == 0


def test_revoked_key_is_refused(sshd: Sshd, root_key: Path, known_hosts: Path) -> None:
    with known_hosts.open("a") as f:
        f.write(f"@revoked * {sshd.host_pub_line}\n")
    with pytest.raises(HostKeyMismatch, match="revoked"):
        connect(make_master(sshd, known_hosts, root_key))


# --- authentication and reachability ---------------------------------------------------


def test_auth_failure_names_user_and_key_and_is_not_retried(sshd: Sshd, known_hosts: Path) -> None:
    stranger = sshd.new_client_key("stranger")
    before = _connections(sshd)
    with pytest.raises(AuthenticationFailed) as info:
        connect(make_master(sshd, known_hosts, stranger))
    err = info.value
    assert err.host == "m1"
    assert "root@127.0.0.1" in err.message
    assert str(stranger) in err.message
    assert err.hint
    assert _connections(sshd) - before == 1  # auth failures are never retried


def test_missing_identity_file(sshd: Sshd, known_hosts: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-key"
    with pytest.raises(AuthenticationFailed, match="does not exist") as info:
        connect(make_master(sshd, known_hosts, missing))
    assert str(missing) in info.value.message


def test_encrypted_identity_file_without_agent(
    sshd: Sshd, known_hosts: Path, tmp_path: Path
) -> None:
    key = tmp_path / "enc"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret-pass", "-f", str(key)],
        check=True,
    )
    with pytest.raises(AuthenticationFailed, match="encrypted") as info:
        connect(make_master(sshd, known_hosts, key))
    assert "secret-pass" not in str(info.value) + (info.value.hint or "")


def test_connection_refused_is_unreachable(sshd: Sshd, known_hosts: Path, root_key: Path) -> None:
    port = free_port()
    with pytest.raises(HostUnreachable, match="refused") as info:
        connect(make_master(sshd, known_hosts, root_key, port=port))
    assert info.value.host == "m1"


def test_unresolvable_name_is_unreachable(sshd: Sshd, known_hosts: Path, root_key: Path) -> None:
    master = make_master(sshd, known_hosts, root_key)
    bad = Master(
        name=master.name, address=master.address, ssh=master.ssh, ssh_host="no-such-host.invalid"
    )
    with pytest.raises(HostUnreachable, match="resolve"):
        connect(bad)


def test_port_that_is_not_sshd(sshd: Sshd, known_hosts: Path, root_key: Path) -> None:
    # A listener that accepts and closes at once: EOF during the banner, retried, then ours.
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        port = srv.getsockname()[1]
        stop = threading.Event()
        accepted = [0]

        def serve() -> None:
            srv.settimeout(0.2)
            while not stop.is_set():
                with contextlib.suppress(OSError):
                    conn, _ = srv.accept()
                    accepted[0] += 1
                    conn.close()

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        try:
            with pytest.raises(TransportError) as info:
                connect(make_master(sshd, known_hosts, root_key, port=port))
            assert info.value.host == "m1"
            assert accepted[0] == CONNECT_ATTEMPTS  # transient: retried, then given up
        finally:
            stop.set()
            t.join(HANG_GUARD)


# --- commands ---------------------------------------------------------------------------


def test_run_exit_codes_and_streams(host: SSHHost) -> None:
    r = host.run("echo out; echo err >&2; exit 3", check=False)
    assert (r.exit_status, r.stdout, r.stderr) == (3, b"out\n", b"err\n")
    with pytest.raises(RemoteCommandFailed) as info:
        host.run("echo boom-detail >&2; exit 7")
    err = info.value
    assert err.exit_status == 7
    assert "boom-detail" in err.stderr and "boom-detail" in err.message
    assert err.host == "m1"
    assert host.run("printf '%s' \"$0\"").stdout == b"sh"  # always POSIX sh


def test_run_stdin_and_big_streams_do_not_deadlock(host: SSHHost) -> None:
    payload = os.urandom(3 * 1024 * 1024)
    assert host.run("cat", stdin=payload).stdout == payload
    # 3 MB on stderr *before* 3 MB on stdout: more than paramiko's 2 MB window.
    r = host.run("head -c 3000000 /dev/zero >&2; head -c 3000000 /dev/zero")
    assert len(r.stderr) == 3000000 and len(r.stdout) == 3000000


def test_run_timeout(host: SSHHost) -> None:
    with pytest.raises(OperationTimeout):
        host.run("sleep 5", timeout=0.3)
    assert host.run("echo still-usable").stdout == b"still-usable\n"


# --- files ------------------------------------------------------------------------------


def test_stat_files(host: SSHHost, tmp_path: Path) -> None:
    a = tmp_path / "a.conf"
    a.write_bytes(b"alpha\n")
    a.chmod(0o640)
    odd = tmp_path / "it's a\tfile $(x)"
    odd.write_bytes(b"")
    odd.chmod(0o600)
    absent = tmp_path / "absent"
    # sha256sum and stat escape these names: looked at one by one, same answer
    escaped = tmp_path / "new\nline \\ back"
    escaped.write_bytes(b"beta")
    escaped.chmod(0o644)
    many = [tmp_path / f"f{i}" for i in range(40)]
    for i, path in enumerate(many):
        path.write_bytes(str(i).encode())
    result = host.stat_files([str(a), str(absent), str(odd), str(escaped), *map(str, many)])
    assert result == {
        str(a): RemoteFile(hashlib.sha256(b"alpha\n").hexdigest(), 0o640),
        str(absent): None,
        str(odd): RemoteFile(hashlib.sha256(b"").hexdigest(), 0o600),
        str(escaped): RemoteFile(hashlib.sha256(b"beta").hexdigest(), 0o644),
        **{
            str(p): RemoteFile(hashlib.sha256(b"%d" % i).hexdigest(), p.stat().st_mode & 0o777)
            for i, p in enumerate(many)
        },
    }
    assert host.stat_files([]) == {}
    with pytest.raises(RemoteCommandFailed, match="not a regular file"):
        host.stat_files([str(tmp_path)])


def test_write_creates_parents_sets_mode_and_leaves_no_temp(host: SSHHost, tmp_path: Path) -> None:
    root = tmp_path / "etc-kubernetes"
    target = root / "manifests" / "etcd.yaml"
    host.write_file_atomic(FileSpec(str(target), b"v1\n", 0o600))
    assert target.read_bytes() == b"v1\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700  # manifests, as kubeadm
    assert stat.S_IMODE(root.stat().st_mode) == 0o755
    host.write_file_atomic(FileSpec(str(target), b"v2 longer\n", 0o644))
    assert target.read_bytes() == b"v2 longer\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(os.listdir(target.parent)) == ["etcd.yaml"]
    assert host.read_file(str(target)) == b"v2 longer\n"
    assert host.stat_files([str(target)])[str(target)] == RemoteFile(
        hashlib.sha256(b"v2 longer\n").hexdigest(), 0o644
    )


def test_failed_write_removes_temp_file(host: SSHHost, tmp_path: Path) -> None:
    target = tmp_path / "is-a-dir"
    (target / "inside").mkdir(parents=True)
    with pytest.raises(RemoteCommandFailed) as info:
        host.write_file_atomic(FileSpec(str(target), b"secret-content-xyz", 0o600, secret=True))
    assert "secret-content-xyz" not in str(info.value)
    assert sorted(os.listdir(tmp_path)) == ["is-a-dir"]


def test_read_file_missing(host: SSHHost, tmp_path: Path) -> None:
    with pytest.raises(RemoteCommandFailed, match="cannot read"):
        host.read_file(str(tmp_path / "nope"))


def test_remove_and_backup(host: SSHHost, tmp_path: Path) -> None:
    a, b = tmp_path / "kube-apiserver.yaml", tmp_path / "etcd.yaml"
    a.write_text("A")
    a.chmod(0o600)
    backup = tmp_path / "tmp" / "bootstrap-backup-1"
    host.backup_files([str(a), str(b)], str(backup))  # b is absent: skipped
    assert os.listdir(backup) == ["kube-apiserver.yaml"]
    assert (backup / "kube-apiserver.yaml").read_text() == "A"
    assert stat.S_IMODE((backup / "kube-apiserver.yaml").stat().st_mode) == 0o600
    assert stat.S_IMODE(backup.stat().st_mode) == 0o700
    with pytest.raises(ValueError):
        host.backup_files([str(a), str(tmp_path / "x" / a.name)], str(backup))
    host.remove_files([str(a), str(b)])
    assert not a.exists()


def _reader_sees_only_whole_files(host: SSHHost, target: Path, rewrites: int) -> None:
    size = 4 * 1024 * 1024
    contents = (b"A" * (size - 1) + b"\n", b"B" * (size - 1) + b"\n")
    host.write_file_atomic(FileSpec(str(target), contents[0], 0o644))
    stop = threading.Event()
    bad: list[str] = []
    reads = [0]

    def reader() -> None:
        while not stop.is_set():
            data = target.read_bytes()
            reads[0] += 1
            if data not in contents:
                bad.append(f"partial read: {len(data)} bytes, starts {data[:1]!r}")
                return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        for i in range(rewrites):
            host.write_file_atomic(FileSpec(str(target), contents[(i + 1) % 2], 0o644))
    finally:
        stop.set()
        t.join(HANG_GUARD)
    assert bad == []
    assert reads[0] > 0
    assert target.read_bytes() == contents[rewrites % 2]
    assert sorted(os.listdir(target.parent)) == [target.name]


def test_atomic_replace_never_shows_partial_content(host: SSHHost, tmp_path: Path) -> None:
    _reader_sees_only_whole_files(host, tmp_path / "big.yaml", rewrites=8)


# --- non-root user with sudo -----------------------------------------------------------


@pytest.fixture(scope="module")
def sudo_user(sshd: Sshd) -> Iterator[Path]:
    """A local user with NOPASSWD sudo whose key the sshd accepts; removed afterwards
    (the user only if this fixture created it)."""
    created = False
    try:
        pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", TEST_USER], check=True)
        created = True
    try:
        # "*": no password, but not locked ("!"), which sshd refuses without PAM.
        subprocess.run(["usermod", "-p", "*", TEST_USER], check=True)
        SUDOERS_FILE.write_text(f"{TEST_USER} ALL=(ALL) NOPASSWD: ALL\n")
        SUDOERS_FILE.chmod(0o440)
        key = sshd.new_client_key(TEST_USER)
        sshd.authorize(TEST_USER, key.with_suffix(".pub"))
        yield key
    finally:
        SUDOERS_FILE.unlink(missing_ok=True)
        if created:
            _userdel(TEST_USER)


def _userdel(user: str) -> None:
    """userdel refuses while the user's last SSH session is still winding down: retry."""
    deadline = time.monotonic() + HANG_GUARD
    while True:
        done = subprocess.run(["userdel", "-r", user], capture_output=True, text=True)
        if done.returncode in (0, 6) or time.monotonic() > deadline:  # 6: no such user
            if done.returncode not in (0, 6):
                print(f"warning: could not remove test user {user}: {done.stderr}")
            return
        time.sleep(0.2)


@pytest.fixture
def sudo_host(sshd: Sshd, known_hosts: Path, sudo_user: Path) -> Iterator[SSHHost]:
    h = connect(make_master(sshd, known_hosts, sudo_user, user=TEST_USER, sudo=True))
    try:
        yield h
    finally:
        h.close()


def _staging_dirs() -> set[str]:
    return {n for n in os.listdir("/tmp") if n.startswith("bootstrap-stage-")}


def test_sudo_runs_as_root(sudo_host: SSHHost) -> None:
    uid = pwd.getpwnam(TEST_USER).pw_uid
    assert sudo_host.run("id -u").stdout == b"0\n"
    assert sudo_host.run("id -u", sudo=False).stdout == f"{uid}\n".encode()
    assert sudo_host.run("cat", stdin=b"through sudo").stdout == b"through sudo"
    with pytest.raises(RemoteCommandFailed) as info:
        sudo_host.run("exit 4")
    assert info.value.exit_status == 4


def test_sudo_write_is_root_owned_with_mode(sudo_host: SSHHost, tmp_path: Path) -> None:
    tmp_path.chmod(0o755)  # root-owned dir the user cannot write: only sudo can
    staging_before = _staging_dirs()
    target = tmp_path / "pki" / "etcd" / "server.key"
    sudo_host.write_file_atomic(FileSpec(str(target), b"KEY", 0o600, secret=True))
    st = target.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o600)
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o755
    # Readable only by root: stat and read go through sudo.
    assert sudo_host.stat_files([str(target)]) == {
        str(target): RemoteFile(hashlib.sha256(b"KEY").hexdigest(), 0o600)
    }
    assert sudo_host.read_file(str(target)) == b"KEY"
    sudo_host.write_file_atomic(FileSpec(str(target), b"KEY2", 0o640))
    assert target.read_bytes() == b"KEY2" and stat.S_IMODE(target.stat().st_mode) == 0o640
    assert os.listdir(target.parent) == ["server.key"]
    assert _staging_dirs() == staging_before
    sudo_host.backup_files([str(target)], str(tmp_path / "backup"))
    assert (tmp_path / "backup" / "server.key").read_bytes() == b"KEY2"
    sudo_host.remove_files([str(target)])
    assert not target.exists()


def test_sudo_failed_write_cleans_up(sudo_host: SSHHost, tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    target = tmp_path / "dir-in-the-way"
    (target / "x").mkdir(parents=True)
    staging_before = _staging_dirs()
    with pytest.raises(RemoteCommandFailed):
        sudo_host.write_file_atomic(FileSpec(str(target), b"data", 0o600))
    assert sorted(os.listdir(tmp_path)) == ["dir-in-the-way"]
    assert _staging_dirs() == staging_before


def test_sudo_atomic_replace(sudo_host: SSHHost, tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    _reader_sees_only_whole_files(sudo_host, tmp_path / "big.yaml", rewrites=4)


def test_sudo_without_rights_is_reported(sshd: Sshd, known_hosts: Path, sudo_user: Path) -> None:
    SUDOERS_FILE.unlink()
    try:
        with connect(make_master(sshd, known_hosts, sudo_user, user=TEST_USER, sudo=True)) as h:
            with pytest.raises(AuthenticationFailed, match="sudo") as info:
                h.run("id -u")
            assert info.value.host == "m1" and info.value.hint
    finally:
        SUDOERS_FILE.write_text(f"{TEST_USER} ALL=(ALL) NOPASSWD: ALL\n")
        SUDOERS_FILE.chmod(0o440)


def test_sudo_with_password(sshd: Sshd, known_hosts: Path, sudo_user: Path) -> None:
    password = "Pw-for-sudo-test-1"
    subprocess.run(["chpasswd"], input=f"{TEST_USER}:{password}\n", text=True, check=True)
    SUDOERS_FILE.write_text(f"{TEST_USER} ALL=(ALL) ALL\n")
    try:
        master = make_master(sshd, known_hosts, sudo_user, user=TEST_USER, sudo=True)
        with connect(master, sudo_password="wrong-password") as h:
            with pytest.raises(AuthenticationFailed) as info:
                h.check_sudo()
            assert "wrong-password" not in str(info.value)
        with connect(master, sudo_password=password) as h:
            assert h.run("id -u").stdout == b"0\n"
            # The password goes to sudo only, never into the command's stdin.
            assert h.run("cat", stdin=b"payload").stdout == b"payload"
            assert h.run("cat").stdout == b""
    finally:
        SUDOERS_FILE.write_text(f"{TEST_USER} ALL=(ALL) NOPASSWD: ALL\n")
        SUDOERS_FILE.chmod(0o440)
        subprocess.run(["usermod", "-p", "*", TEST_USER], check=True)


# --- port forwarding ------------------------------------------------------------------


@pytest.fixture
def echo_server() -> Iterator[int]:
    """A TCP echo server on loopback: echoes until EOF, then half-closes back."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            srv.shutdown(socket.SHUT_RDWR)
        srv.close()
        t.join(HANG_GUARD)


def _echo_roundtrip(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD) as s:

        def send() -> None:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        chunks = []
        while data := s.recv(65536):
            chunks.append(data)
        sender.join(HANG_GUARD)
        return b"".join(chunks)


def test_forward_many_parallel_connections_and_big_payloads(
    host: SSHHost, echo_server: int
) -> None:
    payloads = [os.urandom(n) for n in [0, 1, 1000, 70_000] + [1_500_000] * 12]
    results: dict[int, bytes] = {}
    with host.forward(echo_server) as local_port:

        def go(i: int) -> None:
            results[i] = _echo_roundtrip(local_port, payloads[i])

        threads = [threading.Thread(target=go, args=(i,)) for i in range(len(payloads))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(HANG_GUARD * 4)
        assert all(results.get(i) == p for i, p in enumerate(payloads))
        # The connection is still healthy for commands after heavy forwarding.
        assert host.run("echo alive").stdout == b"alive\n"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", local_port), timeout=HANG_GUARD).close()


def test_forward_to_closed_port_fails_promptly(host: SSHHost) -> None:
    closed = free_port()
    with host.forward(closed) as local_port:
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", local_port), timeout=HANG_GUARD) as s:
                try:
                    data = s.recv(1)  # socket.timeout (a hang) would fail the test
                except ConnectionResetError:
                    data = b""
                assert data == b""
    assert host.run("echo alive").stdout == b"alive\n"


def test_closing_forward_ends_open_connections(host: SSHHost, echo_server: int) -> None:
    with host.forward(echo_server) as local_port:
        s = socket.create_connection(("127.0.0.1", local_port), timeout=HANG_GUARD)
        s.sendall(b"ping")
        assert s.recv(4) == b"ping"
    try:
        data = s.recv(1)
    except ConnectionResetError:
        data = b""
    assert data == b""
    s.close()


# --- connect_all and jump host ---------------------------------------------------------


def test_connect_all_parallel(sshd: Sshd, known_hosts: Path, root_key: Path) -> None:
    masters = [make_master(sshd, known_hosts, root_key, name=f"m{i}") for i in range(5)]
    hosts = connect_all(masters, max_workers=3)
    try:
        assert sorted(hosts) == [f"m{i}" for i in range(5)]
        assert len({id(h) for h in hosts.values()}) == 5
        for name, h in hosts.items():
            assert h.name == name
            assert h.run(f"echo {name}").stdout == f"{name}\n".encode()
    finally:
        for h in hosts.values():
            h.close()


def test_connect_all_reports_every_failure(
    sshd: Sshd, known_hosts: Path, root_key: Path, tmp_path: Path
) -> None:
    stranger = sshd.new_client_key("stranger2")
    masters = [
        make_master(sshd, known_hosts, root_key, name="good"),
        make_master(sshd, known_hosts, stranger, name="badkey"),
        make_master(sshd, tmp_path / "empty_known_hosts", root_key, name="unknown"),
    ]
    with pytest.raises(TransportError) as info:
        connect_all(masters)
    text = str(info.value)
    assert "badkey" in text and "unknown" in text and "good:" not in text
    assert _no_established_to(sshd)  # the "good" connection was closed again
    # Only one failure: its own type comes through.
    with pytest.raises(AuthenticationFailed):
        connect_all(masters[:2])


def test_jump_host_through_itself(sshd: Sshd, known_hosts: Path, root_key: Path) -> None:
    jump = JumpHost(address="127.0.0.1", port=sshd.port, user="root", identity_file=root_key)
    before = _accepted_logins(sshd)
    with connect(make_master(sshd, known_hosts, root_key, jump=jump)) as h:
        assert h.run("echo via-jump").stdout == b"via-jump\n"
        assert _accepted_logins(sshd) - before == 2  # the jump login and the target login


def test_jump_host_key_is_verified_too(sshd: Sshd, root_key: Path, tmp_path: Path) -> None:
    jump = JumpHost(address="127.0.0.1", port=sshd.port, user="root", identity_file=root_key)
    with pytest.raises(HostKeyUnknown) as info:
        connect(make_master(sshd, tmp_path / "none", root_key, jump=jump))
    assert "jump host" in str(info.value)


def test_jump_host_cannot_reach_target(sshd: Sshd, known_hosts: Path, root_key: Path) -> None:
    jump = JumpHost(address="127.0.0.1", port=sshd.port, user="root", identity_file=root_key)
    port = free_port()
    with known_hosts.open("a") as f:
        f.write(sshd.known_hosts_line(f"[127.0.0.1]:{port}"))
    with pytest.raises(HostUnreachable, match="jump host") as info:
        connect(make_master(sshd, known_hosts, root_key, jump=jump, port=port))
    assert info.value.host == "m1"


def test_close_is_idempotent_and_later_use_fails_cleanly(host: SSHHost) -> None:
    host.close()
    host.close()
    with pytest.raises(TransportError, match="closed"):
        host.run("true")


@pytest.fixture(autouse=True, scope="module")
def _no_stray_staging() -> Iterator[None]:
    before = {n for n in os.listdir("/tmp") if n.startswith("bootstrap-stage-")}
    yield
    for name in {n for n in os.listdir("/tmp") if n.startswith("bootstrap-stage-")} - before:
        shutil.rmtree(Path("/tmp") / name, ignore_errors=True)


def test_agent_auth_when_no_identity_file(
    sshd: Sshd, known_hosts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = sshd.new_client_key("agent-only")
    sshd.authorize("root", key.with_suffix(".pub"))
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(sock)],
        stdout=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin"},
    )
    try:
        deadline = time.monotonic() + HANG_GUARD
        while not sock.exists():
            assert agent.poll() is None and time.monotonic() < deadline, "ssh-agent did not start"
            time.sleep(0.05)
        env = {"PATH": "/usr/bin:/bin", "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", str(key)], check=True, env=env, capture_output=True)
        key.unlink()  # now only the agent holds it
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/id_* to fall back on
        with connect(make_master(sshd, known_hosts, None)) as h:
            assert h.run("echo agent").stdout == b"agent\n"
    finally:
        agent.terminate()
        agent.wait(HANG_GUARD)



# --- connecting ahead (Session.connect_ahead) ------------------------------------------------


def _session_for(master: Master, tmp_path: Path) -> Session:
    inventory = dataclasses.replace(make_inventory(masters=1), masters=(master,))
    return Session(inventory=inventory, state_dir=tmp_path / "state")


def test_connect_ahead_hands_over_its_one_connection(
    sshd: Sshd, known_hosts: Path, root_key: Path, tmp_path: Path
) -> None:
    logins = _accepted_logins(sshd)
    with _session_for(make_master(sshd, known_hosts, root_key), tmp_path) as session:
        session.connect_ahead()
        assert session.hosts["m1"].run("echo ahead").stdout == b"ahead\n"
        assert session.hosts["m1"] is session.host("m1")
    assert _accepted_logins(sshd) == logins + 1  # connected once, not again by hosts
    assert _no_established_to(sshd)


def test_connect_ahead_never_used_is_closed_with_the_session(
    sshd: Sshd, known_hosts: Path, root_key: Path, tmp_path: Path
) -> None:
    logins = _accepted_logins(sshd)
    with _session_for(make_master(sshd, known_hosts, root_key), tmp_path) as session:
        session.connect_ahead()  # the command fails before it uses the hosts
    assert _accepted_logins(sshd) == logins + 1
    assert _no_established_to(sshd)


def test_connect_ahead_error_is_raised_where_the_hosts_are_used(
    sshd: Sshd, root_key: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with _session_for(make_master(sshd, empty, root_key), tmp_path) as session:
        session.connect_ahead()  # no error here: it is in the background
        with pytest.raises(HostKeyUnknown):
            session.hosts  # noqa: B018
    assert empty.read_text() == ""  # strict: nothing recorded
