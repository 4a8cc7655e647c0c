"""One writer at a time (issue 16 item 4), without a lab: the state dir lock between real
processes, and the hosts' lock script run by a real /bin/sh with util-linux flock on a
local file (the script the SSH channel runs on a master). The lab test with two real
operators (two state dirs, two processes) is tests/test_hardening_lab.py.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bootstrap.inventory.model import Master, SSHSettings
from bootstrap.transport import connect
from bootstrap.workflow.locks import LOCAL_LOCK, Holder, LockHeld, StateDirLock, remote_script
from tests.sshd_support import Sshd

pytestmark = pytest.mark.skipif(shutil.which("flock") is None, reason="needs util-linux flock")

HOLD = """
import sys, time
from pathlib import Path
from bootstrap.workflow.locks import Holder, StateDirLock
lock = StateDirLock(Path(sys.argv[1]), Holder.me("init"))
lock.acquire()
print("held", flush=True)
sys.stdin.read()  # until the test closes our stdin (or kills us)
lock.release()
"""


Spawn = Callable[..., "subprocess.Popen[str]"]


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """subprocess.Popen (text mode) whose process is reaped and pipes closed after the
    test, passed or failed: a pipe left open is a ResourceWarning, an error here."""
    started: list[subprocess.Popen[str]] = []

    def start(args: list[str], **kwargs: Any) -> subprocess.Popen[str]:
        proc = subprocess.Popen(args, text=True, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):  # a write end whose reader is gone
                    stream.close()


def holder_process(spawn: Spawn, state: Path) -> subprocess.Popen[str]:
    proc = spawn(
        [sys.executable, "-c", HOLD, str(state)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_writer_is_refused_with_the_holder(tmp_path: Path, spawn: Spawn) -> None:
    state = tmp_path / "state"
    (state / "pki").mkdir(parents=True)
    first = holder_process(spawn, state)
    try:
        with pytest.raises(LockHeld) as refused:
            StateDirLock(state, Holder.me("certs renew")).acquire()
        assert refused.value.exit_code == 2
        text = refused.value.message
        assert f"PID {first.pid}" in text and "`bootstrap init`" in text and "since" in text
    finally:
        assert first.stdin is not None
        first.stdin.close()
        assert first.wait(30) == 0
    # released cleanly: the next one gets it, and finds no stale holder
    lock = StateDirLock(state, Holder.me("init"))
    lock.acquire()
    assert lock.stale is None
    lock.release()
    assert (state / LOCAL_LOCK).read_text() == ""


def test_killed_holder_is_detected_and_taken_over(tmp_path: Path, spawn: Spawn) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "pki").mkdir()
    first = holder_process(spawn, state)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    lock = StateDirLock(state, Holder.me("init"))
    lock.acquire()
    try:
        assert isinstance(lock.stale, Holder) and lock.stale.pid == first.pid
    finally:
        lock.release()


def test_a_refused_first_run_leaves_no_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "a" / "b" / "state"
    lock = StateDirLock(state, Holder.me("init"))
    lock.acquire()
    assert (state / LOCAL_LOCK).exists()
    lock.release()
    assert not (tmp_path / "a").exists()
    # a state dir that got content stays
    lock = StateDirLock(state, Holder.me("init"))
    lock.acquire()
    (state / "pki").mkdir()
    lock.release()
    assert (state / "pki").is_dir()


# --- the hosts' script ----------------------------------------------------------------------


def start_script(spawn: Spawn, lock_file: Path, command: str) -> subprocess.Popen[str]:
    holder = Holder("opbox", 4242, "alice", "2026-01-01T00:00:00Z", command)
    return spawn(
        ["sh", "-c", remote_script(holder, str(lock_file))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def answer(proc: subprocess.Popen[str]) -> list[str]:
    """Lines up to END (a holder) or to the end of output (a refusal)."""
    assert proc.stdout is not None
    lines = []
    while (line := proc.stdout.readline()) != "":
        lines.append(line.rstrip("\n"))
        if lines[-1] == "END":
            break
    return lines


def test_host_script_excludes_reports_and_cleans_up(tmp_path: Path, spawn: Spawn) -> None:
    lock_file = tmp_path / "etc-kubernetes" / ".bootstrap.lock"
    first = start_script(spawn, lock_file, "init")
    assert answer(first) == ["LOCKED", "END"]
    assert lock_file.parent.is_dir()  # created for the lock
    held = json.loads(lock_file.read_text())
    assert held["pid"] == 4242 and held["command"] == "init"
    second = start_script(spawn, lock_file, "reset")
    lines = answer(second)
    assert lines[0] == "BUSY" and json.loads(lines[1])["command"] == "init"
    assert second.wait(30) == 0
    # release: stdin closed -> file removed, directory it created removed, exit 0
    assert first.stdin is not None
    first.stdin.close()
    assert first.wait(30) == 0
    assert not lock_file.exists() and not lock_file.parent.exists()


def test_host_script_takes_over_a_stale_lock(tmp_path: Path, spawn: Spawn) -> None:
    lock_file = tmp_path / ".bootstrap.lock"
    stale = Holder("laptop", 77, "bob", "2026-01-01T00:00:00Z", "upgrade --to v1.36.1")
    lock_file.write_text(stale.line() + "\n")  # a holder that is gone: nobody holds flock
    proc = start_script(spawn, lock_file, "init")
    lines = answer(proc)
    assert lines[0] == "LOCKED" and lines[-1] == "END"
    assert Holder.parse(lines[1].removeprefix("STALE ")) == stale
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(30) == 0
    assert not lock_file.exists()
    assert tmp_path.is_dir()  # an existing directory stays


def test_host_script_released_when_its_connection_dies(tmp_path: Path, spawn: Spawn) -> None:
    """The holder's stdin ends when the SSH session goes away (our process killed): the
    script removes the lock by itself, so a killed run leaves no lock behind."""
    lock_file = tmp_path / ".bootstrap.lock"
    proc = start_script(spawn, lock_file, "init")
    assert answer(proc)[0] == "LOCKED"
    assert proc.stdin is not None
    proc.stdin.close()  # what sshd does when the channel closes: the script reads EOF
    deadline = time.monotonic() + 30
    while lock_file.exists():
        assert time.monotonic() < deadline, "lock file still there"
        time.sleep(0.05)
    proc.wait(30)


def test_holder_line_round_trip_and_unknown_content() -> None:
    me = Holder.me("remove-master m2")
    assert Holder.parse(me.line()) == me
    assert me.pid == os.getpid()
    assert Holder.parse("garbage") is None
    assert "remove-master m2" in me.describe() and str(os.getpid()) in me.describe()


# --- the hosts' lock over a real SSH session ----------------------------------------------------


@pytest.fixture(scope="module")
def loopback_master(sshd: Sshd, tmp_path_factory: pytest.TempPathFactory) -> Master:
    key = sshd.new_client_key("root")
    sshd.authorize("root", key.with_suffix(".pub"))
    known = tmp_path_factory.mktemp("ssh") / "known_hosts"
    known.write_text(sshd.known_hosts_line())
    return Master(
        name="m1",
        address=ipaddress.ip_address("127.0.0.1"),
        ssh=SSHSettings(user="root", port=sshd.port, identity_file=key,
                        known_hosts=known, connect_timeout=5.0),
        ssh_host="127.0.0.1",
    )


@pytest.mark.sshd
def test_held_over_ssh_and_released_when_the_connection_dies(
    loopback_master: Master, tmp_path: Path
) -> None:
    """What a killed run does to its lock: its connection drops, sshd closes the channel,
    the holder script sees the end of its stdin and removes the lock."""
    lock_file = str(tmp_path / ".bootstrap.lock")
    first = connect(loopback_master)
    held = first.hold(remote_script(Holder.me("init"), lock_file))
    assert held.readline(30) == "LOCKED" and held.readline(30) == "END"
    with connect(loopback_master) as second:
        busy = second.hold(remote_script(Holder.me("reset"), lock_file))
        assert busy.readline(30) == "BUSY"
        holder = Holder.parse(busy.readline(30) or "")
        assert holder is not None and holder.pid == os.getpid() and holder.command == "init"
        busy.release()
        first.close()  # no release: the connection just goes away
        deadline = time.monotonic() + 30
        while Path(lock_file).exists():
            assert time.monotonic() < deadline, "the lock outlived its connection"
            time.sleep(0.05)
        again = second.hold(remote_script(Holder.me("reset"), lock_file))
        assert again.readline(30) == "LOCKED" and again.readline(30) == "END"  # not stale
        again.release()
    assert not Path(lock_file).exists()
