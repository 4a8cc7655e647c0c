"""Everything that can be checked on this machine is checked before any host is
contacted (issue 16.9), and nothing local is overwritten without --force.

"Not contacted" is measured: the inventory's masters point at a TCP listener on
loopback that counts connections. A positive control (`plan`, which must connect)
proves the listener sees a contact when there is one.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.cli import main
from tests.sshd_support import keygen

REPO = Path(__file__).resolve().parent.parent


class Listener:
    """Accepts and closes TCP connections on 127.0.0.1, counting them."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(timeout=5)


@pytest.fixture
def listener() -> Iterator[Listener]:
    found = Listener()
    yield found
    found.close()


def inventory(tmp_path: Path, port: int, extra: str = "") -> Path:
    key = keygen(tmp_path / "id_test")
    path = tmp_path / "masters.yaml"
    path.write_text(
        "kubernetesVersion: v1.34.1\n"
        f"ssh: {{port: {port}, identityFile: {key}, knownHosts: {tmp_path / 'kh'},"
        " connectTimeout: 2}\n"
        + extra
        + "masters:\n"
        + "".join(
            f"  - {{name: m{i}, address: 10.9.0.{i}, sshHost: 127.0.0.1}}\n" for i in (1, 2, 3)
        )
    )
    return path


def cli(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    text = out.getvalue() + err.getvalue()
    assert "Traceback" not in text, text
    return code, text


CASES = {
    "init-http-without-serve-url": (["init", "--delivery", "http"], "needs --serve-url"),
    "init-http-bad-serve-url": (
        ["init", "--delivery", "http", "--serve-url", "http://10.0.0.1"],
        "is not https://HOST:PORT",
    ),
    "plan-serve-url-without-http": (
        ["plan", "--serve-url", "https://10.0.0.1:8443"],
        "only used with --delivery http",
    ),
    "init-unknown-preflight-check": (
        ["init", "--ignore-preflight-errors", "ClockSkew,bogus"],
        "unknown check 'bogus'",
    ),
    "init-missing-templates": (["init", "--templates", "/nonexistent/t"], "not a directory"),
    "snapshot-out-in-missing-dir": (
        ["etcd", "snapshot", "--out", "/nonexistent/dir/x.db"],
        "/nonexistent/dir is not an existing directory",
    ),
    "snapshot-out-is-a-dir": (["etcd", "snapshot", "--out", "{tmp}"], "is a directory"),
    "snapshot-out-exists": (["etcd", "snapshot", "--out", "{tmp}/existing.db"], "--force"),
    "upgrade-build-metadata": (["upgrade", "--to", "v1.35.0+k3s1"], "build metadata"),
    "upgrade-unsupported-minor": (["upgrade", "--to", "v1.99.0"], "is not supported"),
    "upgrade-bad-etcd": (
        ["upgrade", "--to", "v1.35.0", "--etcd-version", "3.x"],
        "not an etcd version",
    ),
    "add-master-unknown": (["add-master", "m9"], "'m9' is not a master of the inventory"),
    "reset-unknown-master": (["reset", "--master", "m9", "--yes"], "not a master"),
    "reset-unconfirmed-without-a-terminal": (["reset"], "stdin is not a terminal"),
    "renew-a-ca": (["certs", "renew", "ca"], "never renewed"),
    "renew-unknown-name": (["certs", "renew", "apiserverr"], "cannot renew apiserverr"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_before_any_host_is_contacted(
    case: str, tmp_path: Path, listener: Listener
) -> None:
    argv, needle = CASES[case]
    existing = tmp_path / "existing.db"
    existing.write_bytes(b"an older snapshot\n")
    state = tmp_path / "state"
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, text = cli(
        [*args, "--inventory", str(inventory(tmp_path, listener.port)), "--state-dir", str(state)]
    )
    assert code == 2, text
    assert needle in text, text
    assert listener.accepted == 0, "a host was contacted before the refusal"
    assert not state.exists(), "a PKI was generated before the refusal"
    assert existing.read_bytes() == b"an older snapshot\n"


def test_positive_control_the_listener_sees_a_contact(tmp_path: Path, listener: Listener) -> None:
    code, text = cli(
        ["plan", "--inventory", str(inventory(tmp_path, listener.port)), "--state-dir",
         str(tmp_path / "state")]
    )
    assert code == 1, text
    assert listener.accepted >= 1


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["certs", "check", "--warn-days", "abc"], "'abc' is not a number of days"),
        (["certs", "check", "--warn-days", "nan"], "not between 0 and"),
        (["certs", "renew", "--keep", "x"], "'x' is not a whole number"),
        (["etcd", "snapshot", "--keep", "0"], "0 is below 1"),
    ],
)
def test_number_flags_say_what_is_wrong(
    argv: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--inventory", str(tmp_path / "x.yaml")]) == 2
    err = capsys.readouterr().err
    assert needle in err and "invalid _" not in err, err


def test_ignore_preflight_errors_knows_every_check_name() -> None:
    """The names --ignore-preflight-errors accepts are exactly those preflight reports."""
    from bootstrap.node.preflight import HostFacts, check_names, evaluate

    facts = HostFacts(
        host="m1", uid=1000, hostname="", machine_id="", clock_skew=99.0, round_trip=0.0,
        listening_ports=frozenset({2379, 6443}), etcd_data_entries=("member",),
        remote_ca_sha256=None, manifests_dir=False, kubelet=(), free_kib={},
        trust_store_dirs=("/etc/pki/ca-trust",),
    )
    reported = {f.check for f in evaluate([facts], cluster_ca_sha256="x", ca_cert_dirs=())}
    assert reported == set(check_names())


# --- identity files: checked like OpenSSH does, before any connection (exit 2) ----------


@pytest.mark.parametrize(
    ("setup", "needle"),
    [
        ("missing", "does not exist"),
        ("group-readable", "accessible by others (mode 0640)"),
        ("world-readable", "accessible by others (mode 0644)"),
        ("directory", "not a regular file"),
        ("not-a-key", "cannot load identity file"),
        ("huge", "too large to be a private key"),
    ],
)
def test_identity_file_problems_are_bad_input(
    setup: str, needle: str, tmp_path: Path, listener: Listener
) -> None:
    path = inventory(tmp_path, listener.port)
    key = tmp_path / "id_test"
    if setup == "missing":
        key.unlink()
    elif setup == "group-readable":
        key.chmod(0o640)
    elif setup == "world-readable":
        key.chmod(0o644)
    elif setup == "huge":
        key.write_bytes(b"x" * (1 << 20))
    elif setup == "directory":
        key.unlink()
        key.mkdir()
    else:
        key.write_text("not a key\n")
    code, text = cli(["plan", "--inventory", str(path), "--state-dir", str(tmp_path / "s")])
    assert code == 2, text
    assert needle in text and str(key) in text, text
    assert "(used by m1, m2, m3)" in text, "one error naming the masters, not one per master"
    assert text.count(str(key)) <= 3, text
    if setup.endswith("readable"):
        assert f"hint: chmod 600 {key}" in text
    else:
        assert "ssh.identityFile" in text
    assert listener.accepted == 0


def test_a_key_of_another_owner_is_not_judged_by_its_mode(tmp_path: Path) -> None:
    """OpenSSH checks the mode only of keys the user owns; so do we."""
    from bootstrap.transport.connection import check_identity_file

    if os.geteuid() != 0:
        pytest.skip("needs root to give the file another owner")
    key = tmp_path / "k"
    key.write_text("x")
    key.chmod(0o644)
    os.chown(key, 65534, 65534)
    assert check_identity_file(key) == key


def test_several_hosts_failing_are_named_once_each_with_one_hint_per_line() -> None:
    from bootstrap.errors import HostKeyUnknown
    from bootstrap.local.stdio import report_lines
    from bootstrap.transport import combined_error

    failures: list[tuple[str, BaseException]] = [
        (f"m{i}", HostKeyUnknown(f"host key for 10.0.0.{i} is unknown", host=f"m{i}",
                                 hint=f"ssh-keyscan -p 22 10.0.0.{i} >> kh"))
        for i in (1, 2, 3)
    ]
    error = combined_error(failures)
    assert isinstance(error, HostKeyUnknown)
    text = report_lines(f"bootstrap: failed: {error}", error.hint)
    assert "m1: m1:" not in text and text.count("m1: host key") == 1, text
    hint_lines = [line for line in text.splitlines() if "ssh-keyscan" in line]
    assert len(hint_lines) == 3 and all(line.count("ssh-keyscan") == 1 for line in hint_lines)


def test_plan_may_show_http_delivery_without_a_server() -> None:
    """plan prints what would be published (a placeholder URL); init needs the server."""
    from bootstrap.cli import build_parser
    from bootstrap.cli.argcheck import check_local_args
    from bootstrap.errors import UsageError

    parser = build_parser()
    check_local_args(parser.parse_args(["plan", "-i", "x.yaml", "--delivery", "http"]))
    with pytest.raises(UsageError, match="needs --serve-url"):
        check_local_args(parser.parse_args(["init", "-i", "x.yaml", "--delivery", "http"]))


def test_all_and_any_case_stay_valid_preflight_names() -> None:
    from bootstrap.cli.argcheck import check_preflight_names
    from bootstrap.errors import UsageError

    check_preflight_names(["all"])
    check_preflight_names(["ALL", "clockskew", "Port-6443", "dirAvailable--var-lib-etcd"])
    with pytest.raises(UsageError) as info:
        check_preflight_names(["Port-6444"])
    assert "Port-6443" in (info.value.hint or "") and "or all" in (info.value.hint or "")
