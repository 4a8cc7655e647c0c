"""bootstrap.local.atomic: the one local writer of the state dir, the etcd member record and
`render --out`. Real files in a temp dir; the failures are real ones (a generator that
raises, a rename onto a directory, a file size limit hit half way, a read-only mount);
the attacks are real symlinks planted where the writer looks.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.local.atomic import write_atomic
from bootstrap.local.files import describe

REPO = Path(__file__).resolve().parent.parent
ROOT_ONLY = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare(1) for a private read-only mount",
)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def temps(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture()
def restore_umask() -> Iterator[None]:
    """The test sets the process umask; the old one is restored afterwards."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


# --- modes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mask", "mode"),
    [(0o000, 0o600), (0o077, 0o644), (0o022, 0o600)],
    ids=["open-umask-key", "narrow-umask-cert", "usual-umask-key"],
)
def test_the_temp_file_has_the_final_mode_before_the_first_byte(
    tmp_path: Path, restore_umask: None, mask: int, mode: int
) -> None:
    """A wide-open umask does not make a key readable by others while it is written, and
    a narrow one does not leave a certificate unreadable: the mode is exact from byte 0."""
    os.umask(mask)
    target = tmp_path / "ca.key"
    seen: list[tuple[str, int, int]] = []

    def content() -> Iterator[bytes]:
        for part in (b"-----BEGIN ", b"PRIVATE KEY-----\n"):
            (temp,) = temps(tmp_path)  # exactly one, beside the target
            seen.append((temp.name, mode_of(temp), temp.lstat().st_size))
            yield part

    write_atomic(target, content(), mode)
    assert seen[0][0].startswith(".ca.key.") and seen[0][1:] == (mode, 0)
    assert seen[1][1:] == (mode, len(b"-----BEGIN "))
    assert target.read_bytes() == b"-----BEGIN PRIVATE KEY-----\n"
    assert mode_of(target) == mode and temps(tmp_path) == []


def test_replacing_a_file_gives_it_the_new_mode(tmp_path: Path) -> None:
    target = tmp_path / "admin.conf"
    target.write_bytes(b"old\n")
    target.chmod(0o666)
    write_atomic(target, b"new\n", 0o600)
    assert target.read_bytes() == b"new\n" and mode_of(target) == 0o600
    write_atomic(str(target), b"newer\n", 0o644)  # a str path works the same
    assert target.read_bytes() == b"newer\n" and mode_of(target) == 0o644


def test_a_target_name_of_the_longest_length_still_gets_a_temp(tmp_path: Path) -> None:
    """NAME_MAX is 255: the temp name keeps only the start of the target's name."""
    target = tmp_path / ("k" * 255)
    write_atomic(target, b"x", 0o600)
    assert target.read_bytes() == b"x" and temps(tmp_path) == []


# --- failures leave the old file and no temp ----------------------------------------------


def test_a_failing_content_generator_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "etcd-members.json"
    target.write_bytes(b"old\n")

    def content() -> Iterator[bytes]:
        yield b"half of a new "
        raise RuntimeError("the source broke")

    with pytest.raises(RuntimeError, match="the source broke"):
        write_atomic(target, content(), 0o600)
    assert target.read_bytes() == b"old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["etcd-members.json"]


def test_a_failing_rename_leaves_no_temp_and_names_the_target(tmp_path: Path) -> None:
    target = tmp_path / "etcd.yaml"
    target.mkdir()
    (target / "inside").write_text("kept\n")
    with pytest.raises(IsADirectoryError) as caught:
        write_atomic(target, b"x" * 10_000, 0o600)
    assert caught.value.filename == str(target) and caught.value.filename2 is None
    assert (target / "inside").read_text() == "kept\n"
    assert temps(tmp_path) == []


def test_a_missing_directory_is_named_by_the_target(tmp_path: Path) -> None:
    target = tmp_path / "absent" / "ca.crt"
    with pytest.raises(FileNotFoundError) as caught:
        write_atomic(target, b"x", 0o644)
    error = describe(caught.value)
    assert str(target) in error.message and error.exit_code == 2


# argv: target, file size limit (0: none). Prints errno, the error's file name, exit code.
WRITE_SCRIPT = """
import resource, signal, sys
from pathlib import Path
from bootstrap.local.atomic import write_atomic
from bootstrap.local.files import describe
if int(sys.argv[2]):
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]),) * 2)
try:
    write_atomic(Path(sys.argv[1]), b"n" * 65536, 0o600)
except OSError as exc:
    print(exc.errno, exc.filename, describe(exc).exit_code)
    sys.exit(3)
"""


def test_a_write_failing_half_way_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    """RLIMIT_FSIZE: the first 4 KiB are written, the next write fails with EFBIG (a real
    partial write, as on a disk that fills up)."""
    target = tmp_path / "ca.key"
    target.write_bytes(b"old key\n")
    proc = subprocess.run(
        [sys.executable, "-c", WRITE_SCRIPT, str(target), "4096"],
        capture_output=True, text=True, check=False, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stdout.split() == [str(errno.EFBIG), str(target), "2"]
    assert target.read_bytes() == b"old key\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.key"]


@ROOT_ONLY
def test_a_read_only_directory_is_refused_naming_the_target(tmp_path: Path) -> None:
    """Root ignores mode bits: a real read-only bind mount in a private mount namespace."""
    state = tmp_path / "state"
    state.mkdir()
    target = state / "sa.key"
    target.write_bytes(b"old\n")
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "bash", "-euc",
         'mount --bind "$1" "$1"; mount -o remount,bind,ro "$1"; "$2" -c "$3" "$4" 0',
         "-", str(state), sys.executable, WRITE_SCRIPT, str(target)],
        capture_output=True, text=True, check=False, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stdout.split() == [str(errno.EROFS), str(target), "2"]
    assert target.read_bytes() == b"old\n"
    assert sorted(p.name for p in state.iterdir()) == ["sa.key"]


# --- planted symlinks ---------------------------------------------------------------------


def test_a_symlink_at_the_target_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"not yours\n")
    victim.chmod(0o644)
    state = tmp_path / "state"
    state.mkdir()
    target = state / "ca.key"
    target.symlink_to(victim)
    write_atomic(target, b"key\n", 0o600)
    assert not target.is_symlink() and target.read_bytes() == b"key\n"
    assert mode_of(target) == 0o600
    assert victim.read_bytes() == b"not yours\n" and mode_of(victim) == 0o644


def test_a_symlink_planted_at_the_temp_name_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The temp names are random; the test makes the first ones predictable and plants a
    link to a victim, a dangling link (O_CREAT alone would create its destination) and a
    regular file there. Each is skipped and left alone; the fourth name is used."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"not yours\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    state = tmp_path / "state"
    state.mkdir()
    target = state / "ca.key"
    (state / ".ca.key.link.tmp").symlink_to(victim)
    (state / ".ca.key.dangling.tmp").symlink_to(elsewhere / "created")
    (state / ".ca.key.file.tmp").write_bytes(b"someone's\n")
    names = iter(["link", "dangling", "file", "free"])
    tried: list[str] = []

    def token_hex(nbytes: int | None = None) -> str:
        tried.append(next(names))
        return tried[-1]

    monkeypatch.setattr(secrets, "token_hex", token_hex)
    write_atomic(target, b"key\n", 0o600)
    assert tried == ["link", "dangling", "file", "free"]  # the plants were really tried
    assert target.read_bytes() == b"key\n" and not target.is_symlink()
    assert victim.read_bytes() == b"not yours\n"
    assert list(elsewhere.iterdir()) == []
    assert (state / ".ca.key.file.tmp").read_bytes() == b"someone's\n"
    assert (state / ".ca.key.link.tmp").is_symlink()


def test_when_every_temp_name_is_taken_the_target_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "ca.key"
    target.write_bytes(b"old\n")
    (tmp_path / ".ca.key.same.tmp").symlink_to(tmp_path / "nowhere")
    monkeypatch.setattr(secrets, "token_hex", lambda nbytes=None: "same")
    with pytest.raises(FileExistsError) as caught:
        write_atomic(target, b"new\n", 0o600)
    assert caught.value.filename == str(target)
    assert target.read_bytes() == b"old\n" and not (tmp_path / "nowhere").exists()


# --- concurrent writers -------------------------------------------------------------------

SIZE = 256 * 1024


def test_interleaved_writers_do_not_mix(tmp_path: Path) -> None:
    """A writes half, B writes all and renames, then A writes its second half and renames.
    A shared temp name (a fixed `.name.tmp`, or one per PID in one process) would turn
    this into B's half followed by A's half; each writer's own temp file cannot."""
    target = tmp_path / "etcd.yaml"
    a_half, b_done = threading.Event(), threading.Event()
    after_b: list[bytes] = []
    errors: list[BaseException] = []

    def content_a() -> Iterator[bytes]:
        yield b"a" * SIZE
        a_half.set()
        assert b_done.wait(timeout=30)
        yield b"a" * SIZE

    def writer_a() -> None:
        try:
            write_atomic(target, content_a(), 0o600)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            a_half.set()

    def writer_b() -> None:
        try:
            assert a_half.wait(timeout=30)
            write_atomic(target, [b"b" * SIZE, b"b" * SIZE], 0o600)
            after_b.append(target.read_bytes())
        except BaseException as exc:
            errors.append(exc)
        finally:
            b_done.set()

    threads = [threading.Thread(target=writer_a), threading.Thread(target=writer_b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert after_b == [b"b" * 2 * SIZE]
    assert target.read_bytes() == b"a" * 2 * SIZE
    assert temps(tmp_path) == []


def test_readers_see_one_whole_version_while_writers_race(tmp_path: Path) -> None:
    target = tmp_path / "record.json"
    write_atomic(target, b"0" * SIZE, 0o600)
    done = threading.Event()
    reads: list[bytes] = []
    bad: list[str] = []

    def reader() -> None:
        while not done.is_set():
            data = target.read_bytes()
            if len(data) != SIZE or len(set(data)) != 1:
                bad.append(f"{len(data)} bytes of {sorted(set(data))}")
            reads.append(data[:1])

    def writer(letter: bytes) -> None:
        for _ in range(15):
            write_atomic(target, [letter * (SIZE // 4)] * 4, 0o600)

    watcher = threading.Thread(target=reader)
    watcher.start()
    writers = [threading.Thread(target=writer, args=(c,)) for c in (b"1", b"2", b"3")]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(timeout=120)
    done.set()
    watcher.join(timeout=30)
    assert bad == [] and reads  # the reader read while the writers replaced the file
    assert len(set(target.read_bytes())) == 1 and temps(tmp_path) == []
