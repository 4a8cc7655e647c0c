"""The local file system and the standard streams, as they really fail (issue 16.7).

Read-only mounts and full disks are real: a tmpfs mounted read-only (or 16 KiB small)
inside a private mount namespace (`unshare --mount`), since these tests run as root and
root ignores mode bits. Closed and broken streams are real descriptors handed to a real
`python -m bootstrap` process. Every case ends with exit 2 (the user must fix a path) or
1 (the disk or the reader failed), a message naming the path and the cause, and never a
traceback; a refusal leaves nothing behind.

The fuzz test at the end draws layouts for `--out` and `--state-dir` (absent, empty,
non-empty, a file, a file as parent, a dangling link, read-only, full) and runs `render`
in-process through `bootstrap.cli.main` inside such a namespace.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "inventory.example.yaml"
ROOT_ONLY = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare(1) for private mounts",
)


def bootstrap_cmd(*args: str) -> str:
    """A shell command line running this checkout's bootstrap."""
    quoted = " ".join(_q(a) for a in args)
    return f"PYTHONPATH={_q(str(REPO))} {_q(sys.executable)} -m bootstrap {quoted}"


def _q(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def in_private_mounts(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a bash script in its own mount namespace: its mounts vanish with it."""
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "bash", "-euc", script],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        check=False,
    )


def run(*args: str, cwd: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "bootstrap", *args],
        text=True,
        timeout=300,
        cwd=cwd,
        env=env,
        check=False,
        **kwargs,
    )


def assert_clean_failure(text: str, code: int, expected_code: int, *needles: str) -> None:
    assert code == expected_code, text
    assert "Traceback" not in text and "Exception ignored" not in text, text
    kind = "error" if expected_code == 2 else "failed"
    assert f"bootstrap: {kind}: " in text, text
    for needle in needles:
        assert needle in text, f"{needle!r} not in:\n{text}"


# --- read-only --------------------------------------------------------------------------


@ROOT_ONLY
def test_read_only_state_dir_is_refused_naming_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = run("render", "-i", str(EXAMPLE), "--state-dir", str(state), "--out",
                str(tmp_path / "o1"), cwd=tmp_path, capture_output=True)
    assert first.returncode == 0, first.stderr
    before = sorted(p.relative_to(state) for p in state.rglob("*"))
    # The state dir exists and holds the PKI, but is now on a read-only mount.
    proc = in_private_mounts(
        f"mount --bind {_q(str(state))} {_q(str(state))}\n"
        f"mount -o remount,bind,ro {_q(str(state))}\n"
        + bootstrap_cmd("render", "-i", str(EXAMPLE), "--state-dir", str(state), "--out",
                        str(tmp_path / "o2")),
        tmp_path,
    )
    assert_clean_failure(proc.stderr, proc.returncode, 2, f"state directory {state}",
                         "read-only file system")
    assert not (tmp_path / "o2").exists()
    assert sorted(p.relative_to(state) for p in state.rglob("*")) == before


@ROOT_ONLY
def test_state_dir_to_be_created_on_a_read_only_mount(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    proc = in_private_mounts(
        f"mount -t tmpfs -o ro tmpfs {_q(str(ro))}\n"
        + bootstrap_cmd("render", "-i", str(EXAMPLE), "--state-dir", str(ro / "a" / "state"),
                        "--out", str(tmp_path / "out")),
        tmp_path,
    )
    assert_clean_failure(proc.stderr, proc.returncode, 2, f"{ro}, where it would be created",
                         "read-only file system")
    assert not (tmp_path / "out").exists()


@ROOT_ONLY
def test_render_out_on_a_read_only_mount(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    proc = in_private_mounts(
        f"mount -t tmpfs -o ro tmpfs {_q(str(ro))}\n"
        + bootstrap_cmd("render", "-i", str(EXAMPLE), "--state-dir", str(tmp_path / "state"),
                        "--out", str(ro / "out")),
        tmp_path,
    )
    assert_clean_failure(proc.stderr, proc.returncode, 2, f"--out {ro / 'out'}",
                         "read-only file system")
    assert not (tmp_path / "state").exists(), "refused before any key was generated"


# --- wrong types ------------------------------------------------------------------------


def test_dot_bootstrap_being_a_file(tmp_path: Path) -> None:
    (tmp_path / ".bootstrap").write_text("not a directory\n")
    proc = run("render", "-i", str(EXAMPLE), "--out", str(tmp_path / "out"), cwd=tmp_path,
               capture_output=True)
    assert_clean_failure(proc.stderr, proc.returncode, 2, ".bootstrap is not a directory")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["out-is-file", "out-parent-is-file", "out-not-empty"])
def test_render_out_of_the_wrong_type(tmp_path: Path, where: str) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    if where == "out-is-file":
        out, needle = blocker, "is not a directory"
    elif where == "out-parent-is-file":
        out, needle = blocker / "out", f"{blocker} is not a directory"
    else:
        out, needle = tmp_path, "is not empty"
    proc = run("render", "-i", str(EXAMPLE), "--state-dir", str(tmp_path / "state"), "--out",
               str(out), cwd=tmp_path, capture_output=True)
    assert_clean_failure(proc.stderr, proc.returncode, 2, needle, str(out))
    assert blocker.read_text() == "x"
    assert not (tmp_path / "state").exists()


def test_render_force_writes_into_a_non_empty_out(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine\n")
    args = ["render", "-i", str(EXAMPLE), "--state-dir", str(tmp_path / "s"), "--out", str(out)]
    assert run(*args, cwd=tmp_path, capture_output=True).returncode == 2
    forced = run(*args, "--force", cwd=tmp_path, capture_output=True)
    assert forced.returncode == 0, forced.stderr
    assert (out / "keep.txt").read_text() == "mine\n"
    assert (out / "cp1" / "etc/kubernetes/manifests/etcd.yaml").is_file()


def test_inventory_of_the_wrong_type(tmp_path: Path) -> None:
    for source, needle in ((tmp_path, "it is a directory"), (Path("/dev/zero"), "larger than")):
        proc = run("inventory", "check", str(source), cwd=tmp_path, capture_output=True)
        assert_clean_failure(proc.stderr, proc.returncode, 2, str(source), needle)


# --- full -------------------------------------------------------------------------------


@ROOT_ONLY
def test_full_disk_under_render_out(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    proc = in_private_mounts(
        f"mount -t tmpfs -o size=16k tmpfs {_q(str(small))}\n"
        + bootstrap_cmd("render", "-i", str(EXAMPLE), "--state-dir", str(tmp_path / "state"),
                        "--out", str(small / "out"))
        + " || echo rc=$?\n"
        f"find {_q(str(small))} -name '.*.tmp' | sed 's/^/TEMP /'\n",
        tmp_path,
    )
    assert "rc=1" in proc.stdout, proc.stdout + proc.stderr
    assert_clean_failure(proc.stderr, 1, 1, str(small / "out"), "No space left on device")
    assert "TEMP " not in proc.stdout, "a half-written temp file was left behind"


@ROOT_ONLY
def test_full_disk_under_the_state_dir_then_recovery(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    render = bootstrap_cmd("render", "-i", str(EXAMPLE), "--state-dir", str(disk / "state"),
                           "--out", str(tmp_path / "out"), "--force")
    proc = in_private_mounts(
        f"mount -t tmpfs -o size=24k tmpfs {_q(str(disk))}\n"
        f"{render} || echo first=$?\n"
        f"mount -o remount,size=4m {_q(str(disk))}\n"
        f"{render} && echo second=0\n",
        tmp_path,
    )
    assert "first=1" in proc.stdout and "second=0" in proc.stdout, proc.stdout + proc.stderr
    first_error = proc.stderr.split("[render]")[0]
    assert_clean_failure(first_error, 1, 1, str(disk / "state"), "No space left on device")


# --- standard streams --------------------------------------------------------------------


def test_closed_stdout_is_refused_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "out"
    render = bootstrap_cmd("render", "-i", str(EXAMPLE), "--out", str(out))
    proc = subprocess.run(  # stdout closed (>&-), not captured
        ["bash", "-c", f"{render} >&-"],
        stderr=subprocess.PIPE, text=True, cwd=tmp_path, check=False, timeout=120,
    )
    assert_clean_failure(proc.stderr, proc.returncode, 2, "standard output is closed")
    assert not out.exists() and not (tmp_path / ".bootstrap").exists()


def test_broken_pipe_on_stdout(tmp_path: Path) -> None:
    """`bootstrap inventory schema | head -c1`, made deterministic: the reader is gone
    before the first write."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = run("inventory", "schema", cwd=tmp_path, stdout=write_end,
                   stderr=subprocess.PIPE)
    finally:
        os.close(write_end)
    assert_clean_failure(proc.stderr, proc.returncode, 1,
                         "cannot write to standard output: Broken pipe")


def test_stdout_on_a_full_device(tmp_path: Path) -> None:
    with open("/dev/full", "w") as full:
        proc = run("inventory", "schema", cwd=tmp_path, stdout=full, stderr=subprocess.PIPE)
    assert_clean_failure(proc.stderr, proc.returncode, 1, "No space left on device")


def test_closed_stderr_and_stdin_do_not_stop_a_command(tmp_path: Path) -> None:
    out = tmp_path / "out"
    script = (
        f"{bootstrap_cmd('inventory', 'schema')} 2>&- <&- > {_q(str(tmp_path / 'schema.json'))}"
        f" && {bootstrap_cmd('render', '-i', str(EXAMPLE), '--out', str(out))} 2>&- <&-"
        " && echo both-ok"
    )
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=tmp_path,
                          check=False, timeout=120)
    assert "both-ok" in proc.stdout, proc.stdout + proc.stderr
    assert json.loads((tmp_path / "schema.json").read_text())["title"]
    assert (out / "cp1" / "etc/kubernetes/manifests/etcd.yaml").is_file()
    # stderr closed: the progress lines went nowhere, certainly not into a state file.
    for path in (tmp_path / ".bootstrap").rglob("*"):
        if path.is_file():
            assert b"[render]" not in path.read_bytes() and b"[inventory]" not in path.read_bytes()


# --- fuzzing the file system --------------------------------------------------------------

KINDS = ("absent", "empty", "non-empty", "file", "file-parent", "dangling-link", "read-only",
         "full")
FS_FUZZ_ENV = "BOOTSTRAP_FS_FUZZ_ROOT"  # set by the outer test inside the namespace


def _make(kind: str, base: Path, name: str) -> Path:
    """A path of the given kind under ``base`` (read-only/full: prepared mounts)."""
    if kind == "read-only":
        return base / "ro" / name
    if kind == "full":
        return base / "full" / name
    scratch = base / "scratch"
    path = scratch / name
    if kind == "empty":
        path.mkdir()
    elif kind == "non-empty":
        path.mkdir()
        (path / "someone-elses.txt").write_text("keep me\n")
    elif kind == "file":
        path.write_text("a file\n")
    elif kind == "file-parent":
        path.write_text("a file\n")
        path = path / "below"
    elif kind == "dangling-link":
        path.symlink_to(scratch / "nowhere" / name)
    return path


@pytest.mark.skipif(FS_FUZZ_ENV not in os.environ, reason="runs inside the namespace only")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(out_kind=st.sampled_from(KINDS), state_kind=st.sampled_from(KINDS))
def test_render_against_file_system_layouts(out_kind: str, state_kind: str) -> None:
    from bootstrap.cli import main

    base = Path(os.environ[FS_FUZZ_ENV])
    scratch = base / "scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    for mount in ("full",):  # the full disk starts empty each time
        for child in (base / mount).iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    out = _make(out_kind, base, "out")
    state = _make(state_kind, base, "state")
    out_before = out.exists() or out.is_symlink()
    state_before = state.exists() or state.is_symlink()
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["render", "-i", str(EXAMPLE), "--state-dir", str(state), "--out", str(out)])
    text = stdout.getvalue() + stderr.getvalue()
    assert code in (0, 1, 2), text
    assert "Traceback" not in text
    if code == 0:
        assert (out / "cp1" / "etc/kubernetes/manifests/etcd.yaml").is_file()
        return
    # Named: the message repeats the path it is about (or the part of it that is wrong).
    assert str(out) in text or str(state) in text or str(base) in text, text
    if code == 1:
        assert "full" in (out_kind, state_kind), text
        assert "No space left on device" in text
        assert not list(base.rglob(".*.tmp")), "a half-written temp file was left"
    else:
        assert "bootstrap: error: " in text
        if not out_before and out_kind != "full":
            assert not out.exists(), "refused, yet --out was created"
        if not state_before and state_kind != "full" and out_kind not in ("full",):
            assert not state.exists(), "refused, yet the state dir was created"
    if out_kind == "non-empty":
        assert (out / "someone-elses.txt").read_text() == "keep me\n"


@ROOT_ONLY
def test_fuzz_file_system_layouts_in_a_private_namespace(tmp_path: Path) -> None:
    """Runs the test above in its own mount namespace with a read-only and a full tmpfs."""
    (tmp_path / "ro").mkdir()
    (tmp_path / "full").mkdir()
    proc = in_private_mounts(
        f"mount -t tmpfs -o ro tmpfs {_q(str(tmp_path / 'ro'))}\n"
        f"mount -t tmpfs -o size=16k tmpfs {_q(str(tmp_path / 'full'))}\n"
        f"{FS_FUZZ_ENV}={_q(str(tmp_path))} PYTHONPATH={_q(str(REPO))} {_q(sys.executable)} "
        f"-m pytest -q -p no:cacheprovider {_q(str(Path(__file__)))} "
        "-k test_render_against_file_system_layouts",
        REPO,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "1 passed" in proc.stdout, proc.stdout[-2000:]
