"""Issue 16 on the namespace lab: safety refusals, locks, key copies, an honest `status`.

Real sshd, real etcd and (when the lab has them) the real kube-apiserver, controller-
manager and scheduler; the CLI runs as subprocesses like a user runs it. One lab for the
module, in file order; each test says which cluster it expects and leaves it converged,
except the last, which shrinks the cluster to one member.

- status tells the truth: a frozen member, a killed one, all frozen -> exit 1, the master
  named with its real address and the cause as observed (item 11);
- two writers exclude each other, from one state dir and from two copies of it, and stale
  locks (a killed run, a host whose holder vanished) are taken over (item 4);
- init refuses to change a running cluster's versions (item 2) and a state dir that is not
  the cluster's (item 3), every refusal leaving every host byte-identical;
- no copy of a private key is left after a series of commands, an interrupted one and a
  concurrent pair included (item 6);
- a refused member removal stops every later step: no cluster answering, and the last
  member without --force (item 1).

"Byte-identical" is fault_support's measure: sha256, type, mode and owner of every entry
under /etc/kubernetes and /var/lib/etcd on every host, with a pending change made first
(a file any successful run would write back), so an unchanged tree means nothing ran.

Run: LAB_INSTANCE=<d> .venv/bin/python -m pytest -m lab tests/test_hardening_lab.py
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bootstrap.inventory.versions import DEFAULT_ETCD_FOR_MINOR
from bootstrap.workflow.guard import fingerprint
from bootstrap.workflow.locks import LOCAL_LOCK, REMOTE_LOCK, Holder
from lab import api
from lab.api import LabInfo
from tests.fault_support import (
    REPO,
    Running,
    assert_no_traceback,
    converge,
    host_sh,
    pods,
    tree_changes,
    trees,
    wait_until,
)
from tests.lab_support import lab  # noqa: F401  (fixture)

pytestmark = pytest.mark.lab
KEY_MARKERS = (b"PRIVATE KEY", b"client-key-data")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hardening")


@pytest.fixture(scope="module")
def state(root: Path) -> Path:
    return root / "state"


@pytest.fixture(scope="module")
def tmpdir_env(root: Path) -> dict[str, str]:
    """The CLI's environment, with a private TMPDIR: anything it leaves there is ours."""
    private = root / "tmp"
    private.mkdir()
    return {**os.environ, "TMPDIR": str(private)}


def components(info: LabInfo) -> list[str]:
    """All four on a lab with the kube binaries (the default), etcd alone without them."""
    kube = {"kube-apiserver", "kube-controller-manager", "kube-scheduler"}
    return [] if kube <= set(info.kube_binaries) else ["--components", "etcd"]


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "bootstrap", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    print(f"$ bootstrap {' '.join(args)}  -> {proc.returncode}\n{proc.stdout}{proc.stderr}")
    assert_no_traceback(proc)
    return proc


def common(info: LabInfo, state: Path, inventory: Path | None = None) -> list[str]:
    return ["-i", str(inventory or info.inventory), "--state-dir", str(state)]


def pending_change(info: LabInfo) -> None:
    """A file any successful init writes back: an unchanged tree then means nothing ran."""
    for h in info.hosts[:2]:
        host_sh(h.name, "rm -f /etc/kubernetes/kubelet.conf")


def lock_files(info: LabInfo) -> dict[str, str]:
    found = {}
    for h in info.hosts:
        out = host_sh(h.name, f"cat {REMOTE_LOCK} 2>/dev/null; true")
        if out.strip():
            found[h.name] = out
    return found


def status(info: LabInfo, state: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return cli("status", *common(info, state), *components(info), *extra)


def wait_status_ok(info: LabInfo, state: Path, timeout: float = 240) -> None:
    wait_until(
        "status exit 0", lambda: status(info, state).returncode == 0, timeout, every=3.0
    )


@pytest.fixture(scope="module")
def converged(lab: LabInfo, state: Path) -> Iterator[None]:  # noqa: F811
    converge(lab.inventory, state, *components(lab))
    yield


def versions(info: LabInfo) -> tuple[str, str]:
    doc = yaml.safe_load(info.inventory.read_text())
    return str(doc["kubernetesVersion"]), str(doc["etcdVersion"])


def inventory_with(info: LabInfo, target: Path, **changes: Any) -> Path:
    doc = yaml.safe_load(info.inventory.read_text())
    doc.update(changes)
    target.write_text(yaml.safe_dump(doc, sort_keys=False))
    return target


# --- item 11: status ---------------------------------------------------------------------------


def test_status_exit_code_and_causes(lab: LabInfo, state: Path, converged: None) -> None:  # noqa: F811
    wait_status_ok(lab, state)
    m2 = lab.host("m2").address
    api.kill_pod_process("m2", "etcd", "STOP")
    try:
        frozen = status(lab, state)
        as_json = status(lab, state, "-o", "json")
    finally:
        api.kill_pod_process("m2", "etcd", "CONT")
    assert frozen.returncode == 1, frozen.stdout
    assert f"m2 ({m2}:2379)" in frozen.stdout and "stopped" in frozen.stdout
    assert "down: no answer" in frozen.stdout  # the cell: whole words, never cut
    assert "127.0.0.1" not in frozen.stdout  # never the tunnel's local end
    doc = json.loads(as_json.stdout)
    assert as_json.returncode == 1 and doc["ok"] is False
    assert any(f"m2 ({m2}:2379)" in p for p in doc["problems"])
    wait_status_ok(lab, state)

    # killed until the node backs off restarting it: "not running" (or, in the moment
    # between the kill and the node noticing, refused)
    def crash_looping() -> bool:
        with_pid = pods("m2").get("etcd", {})
        if with_pid.get("phase") == "Running" and with_pid.get("pid"):
            api.kill_pod_process("m2", "etcd", "KILL")
        return pods("m2").get("etcd", {}).get("phase") != "Running"

    wait_until("m2's etcd not running", crash_looping, 60, every=0.3)
    killed = status(lab, state)
    assert killed.returncode == 1, killed.stdout
    assert f"m2 ({m2}:2379)" in killed.stdout
    assert any(w in killed.stdout for w in ("not running", "refused")), killed.stdout
    assert "TLS" not in killed.stdout  # a process that is not running is not a TLS failure
    wait_status_ok(lab, state)

    for h in lab.hosts:
        api.kill_pod_process(h.name, "etcd", "STOP")
    try:
        lost = status(lab, state)
    finally:
        for h in lab.hosts:
            api.kill_pod_process(h.name, "etcd", "CONT")
    assert lost.returncode == 1 and "QUORUM LOST" in lost.stdout, lost.stdout
    for h in lab.hosts:
        assert f"{h.name} ({h.address}:2379)" in lost.stdout
    wait_status_ok(lab, state)


# --- item 4: locks -----------------------------------------------------------------------------


def test_two_writers_exclude_each_other(
    lab: LabInfo,  # noqa: F811
    state: Path,
    root: Path,
    converged: None,
) -> None:
    other = root / "operator-2"  # a second operator's copy of the state
    shutil.copytree(state, other)
    first = Running.start("init", *common(lab, state), *components(lab))
    try:
        first.wait_for(r"\[preflight\] connecting")  # printed once both locks are held
        first.proc.send_signal(signal.SIGSTOP)
        pid = first.proc.pid
        held = lock_files(lab)
        assert set(held) == {h.name for h in lab.hosts}, held
        holder = Holder.parse(held["m1"])
        assert holder is not None and holder.pid == pid and holder.command == "init"
        before = trees(lab)
        same = cli("init", *common(lab, state), *components(lab))
        assert same.returncode == 2, same.stderr
        assert "is in use by `bootstrap init`" in same.stderr and f"PID {pid}" in same.stderr
        for args in (
            ["init", *common(lab, other), *components(lab)],
            ["certs", "renew", *common(lab, other)],
            ["remove-master", *common(lab, other), "m3"],
            ["reset", *common(lab, other), "--master", "m3", "--yes"],
        ):
            refused = cli(*args)
            assert refused.returncode == 2, refused.stderr
            assert "the cluster is locked by `bootstrap init`" in refused.stderr
            assert f"PID {pid}" in refused.stderr and "on m1" in refused.stderr
            assert "since" in refused.stderr
        assert tree_changes(before, trees(lab)) == []
        first.proc.send_signal(signal.SIGCONT)
        assert first.finish() == 0
    finally:
        if first.proc.poll() is None:
            first.proc.send_signal(signal.SIGCONT)
            first.kill()
    assert lock_files(lab) == {}, "released locks leave no file on the hosts"
    assert (state / LOCAL_LOCK).read_text() == ""
    # the other operator can go once the first is done
    again = cli("init", *common(lab, other), *components(lab))
    assert again.returncode == 0 and "init: 0 changed" in again.stdout, again.stderr


def test_stale_locks_are_taken_over(lab: LabInfo, state: Path, converged: None) -> None:  # noqa: F811
    gone = Holder("vm-7", 999_999, "bob", "2026-01-01T00:00:00Z", "certs renew")
    (state / LOCAL_LOCK).write_text(gone.line() + "\n")  # a run killed with SIGKILL
    vanished = Holder("laptop", 4242, "alice", "2026-01-01T00:00:00Z", "upgrade --to v1.36.9")
    host_sh("m2", f"echo '{vanished.line()}' > {REMOTE_LOCK}")  # a host rebooted mid-run
    run = cli("init", *common(lab, state), *components(lab))
    assert run.returncode == 0, run.stderr
    assert "took over the state dir lock left by `bootstrap certs renew` of bob" in run.stderr
    assert "m2: took over a stale lock of `bootstrap upgrade --to v1.36.9` of alice" in run.stderr
    assert lock_files(lab) == {}


# --- item 2: versions --------------------------------------------------------------------------


def test_init_refuses_to_change_versions(
    lab: LabInfo,  # noqa: F811
    state: Path,
    root: Path,
    converged: None,
) -> None:
    kube, etcd = versions(lab)
    major, minor, patch = (int(x) for x in kube.lstrip("v").split("."))
    e_major, e_minor, e_patch = (int(x) for x in etcd.split(".")[:3])
    down = max(30, minor - 5)
    assert down < minor, "the lab's Kubernetes must allow a downgrade within the supported range"
    cases = {
        "patch-up": (
            {"kubernetesVersion": f"v{major}.{minor}.{patch + 1}"},
            f"bootstrap upgrade --to v{major}.{minor}.{patch + 1}",
        ),
        "downgrade": (  # with the etcd kubeadm pairs with it, as a user would edit both
            {
                "kubernetesVersion": f"v{major}.{down}.0",
                "etcdVersion": DEFAULT_ETCD_FOR_MINOR.get((major, down), etcd),
            },
            "downgrades are not supported",
        ),
        "etcd": (
            {"etcdVersion": f"{e_major}.{e_minor}.{e_patch + 1}"},
            f"--etcd-version {e_major}.{e_minor}.{e_patch + 1}",
        ),
    }
    pending_change(lab)
    before = trees(lab)
    for name, (changes, hint) in cases.items():
        inventory = inventory_with(lab, root / f"{name}.yaml", **changes)
        for args in (
            ["init", *common(lab, state, inventory), *components(lab)],
            ["plan", *common(lab, state, inventory)],
            ["certs", "renew", *common(lab, state, inventory)],
        ):
            refused = cli(*args)
            assert refused.returncode == 2, (name, args[0], refused.stderr)
            assert "would change the versions the cluster runs" in refused.stderr, name
            assert hint in refused.stderr, (name, refused.stderr)
            assert f"kubernetesVersion: {kube}" in refused.stderr  # how to leave it as it is
    assert tree_changes(before, trees(lab)) == []
    converge(lab.inventory, state, *components(lab))  # puts kubelet.conf back


# --- item 3: a state dir that is not the cluster's ------------------------------------------------


def test_wrong_state_dir_refused_before_anything(
    lab: LabInfo,  # noqa: F811
    state: Path,
    root: Path,
    converged: None,
) -> None:
    hosts_ca = fingerprint((state / "pki" / "ca.crt").read_bytes())
    empty = root / "fresh-state"
    pending_change(lab)
    before = trees(lab)
    for command in (["plan"], ["init", *components(lab)]):
        refused = cli(command[0], *common(lab, empty), *command[1:])
        assert refused.returncode == 2, refused.stderr
        assert "holds no cluster CA" in refused.stderr and hosts_ca in refused.stderr
        assert str(state) in refused.stderr and "--state-dir" in refused.stderr  # found nearby
        assert "32 changed" not in refused.stdout and "ca.key" not in refused.stdout
        assert not empty.exists(), "no PKI generated, no state dir created"

    other = root / "other-cluster"  # a state dir with another CA (render makes a PKI)
    made = cli("render", *common(lab, other), "--out", str(root / "other-render"))
    assert made.returncode == 0, made.stderr
    other_ca = fingerprint((other / "pki" / "ca.crt").read_bytes())
    assert other_ca != hosts_ca
    listing = state_listing(other)
    wrong = common(lab, other)
    for args in (
        ["init", *wrong, *components(lab)],
        ["plan", *wrong],
        ["status", *wrong],
        ["verify", *wrong],
        ["certs", "check", *wrong],
        ["certs", "renew", *wrong],
        ["add-master", *wrong, "m3"],
        ["remove-master", *wrong, "m3"],
        ["reset", *wrong, "--master", "m3", "--yes"],
        ["upgrade", *wrong, "--to", versions(lab)[0]],
        ["etcd", "snapshot", *wrong],
    ):
        refused = cli(*args)
        assert refused.returncode == 2, (args, refused.stderr)
        assert other_ca in refused.stderr and hosts_ca in refused.stderr, args
    assert tree_changes(before, trees(lab)) == []
    assert state_listing(other) == listing, "the wrong state dir was changed"
    converge(lab.inventory, state, *components(lab))


def state_listing(state: Path) -> dict[str, str]:
    """Every file of a state dir with its sha256 (the run lock's own file aside)."""
    import hashlib

    return {
        str(p.relative_to(state)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(state.rglob("*"))
        if p.is_file() and p.name != LOCAL_LOCK
    }


# --- item 6: key copies ---------------------------------------------------------------------------


def key_files(state: Path) -> set[str]:
    """Files under the state dir holding private key material (snapshots aside)."""
    found = set()
    for path in state.rglob("*"):
        rel = path.relative_to(state)
        if rel.parts[0] == "snapshots" or not path.is_file():
            continue
        data = path.read_bytes()
        if any(marker in data for marker in KEY_MARKERS):
            found.add(str(rel))
    return found


def test_no_key_copies_after_commands(
    lab: LabInfo,  # noqa: F811
    state: Path,
    root: Path,
    tmpdir_env: dict[str, str],
    converged: None,
) -> None:
    baseline = key_files(state)
    assert "pki/ca.key" in baseline and "admin.conf" in baseline
    base = common(lab, state)
    env = tmpdir_env
    kube = versions(lab)[0]
    bumped = kube.rsplit(".", 1)[0] + "." + str(int(kube.rsplit(".", 1)[1]) + 1)
    series = [
        ["plan", *base],
        ["status", *base, *components(lab)],
        ["verify", *base, *components(lab)],
        ["certs", "check", *base],
        ["etcd", "snapshot", *base],
        ["init", *base, *components(lab)],
        ["init", *common(lab, state, inventory_with(lab, root / "v.yaml",
                                                     kubernetesVersion=bumped)),
         *components(lab)],  # refused: a version change
    ]
    for args in series:
        cli(*args, env=env)
    # interrupted mid-run
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "bootstrap", "init", *base, *components(lab)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=env,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "[preflight]" in line:
            proc.send_signal(signal.SIGINT)
            break
    proc.communicate(timeout=600)
    assert proc.returncode in (130, 0), proc.returncode
    # a concurrent pair (a writer and a reader), and two writers at once
    for pair in (
        (["init", *base, *components(lab)], ["status", *base, *components(lab)]),
        (["init", *base, *components(lab)], ["init", *base, *components(lab)]),
    ):
        procs = [
            subprocess.Popen([sys.executable, "-m", "bootstrap", *args], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for args in pair
        ]
        for p in procs:
            out, err = p.communicate(timeout=600)
            assert "Traceback" not in out + err, err
            assert p.returncode in (0, 1, 2), (p.returncode, err)
    assert key_files(state) == baseline, "a new file holds key material"
    assert not [p for p in state.rglob(".creds*")], "a credentials copy dir was left"
    assert list(Path(env["TMPDIR"]).iterdir()) == [], "something was left in TMPDIR"
    assert lock_files(lab) == {}
    converge(lab.inventory, state, *components(lab))


# --- item 1: refused removals stop every later step ---------------------------------------------


def test_refused_removal_changes_nothing(lab: LabInfo, state: Path, converged: None) -> None:  # noqa: F811
    wait_status_ok(lab, state)
    pending_change(lab)
    before = trees(lab)
    for h in lab.hosts:  # no member can answer: a removal cannot be committed
        api.kill_pod_process(h.name, "etcd", "STOP")
    try:
        removed = cli("remove-master", *common(lab, state), "m3", "--wipe")
        reset = cli("reset", *common(lab, state), "--master", "m3", "--yes")
    finally:
        for h in lab.hosts:
            api.kill_pod_process(h.name, "etcd", "CONT")
    for refused in (removed, reset):
        assert refused.returncode == 1, refused.stderr
        assert "nothing was changed on any host" in refused.stderr
        assert "pods gone" not in refused.stderr and "deleted the static pod" not in refused.stderr
    assert tree_changes(before, trees(lab)) == []
    assert pods("m3")["etcd"]["phase"] == "Running"
    converge(lab.inventory, state, *components(lab))
    wait_status_ok(lab, state)

    # down to one member, then the last one: refused without --force
    for name in ("m3", "m2"):
        gone = cli("remove-master", *common(lab, state), name, "--wipe")
        assert gone.returncode == 0, gone.stderr
    before = trees(lab)
    last = cli("remove-master", *common(lab, state), "m1")
    assert last.returncode == 2, last.stderr
    assert "m1 is the last etcd member" in last.stderr and "--force" in last.stderr
    assert "nothing was changed on any host" in last.stderr
    assert "removed" not in last.stdout
    assert tree_changes(before, trees(lab)) == []
    assert pods("m1")["etcd"]["phase"] == "Running"
    assert lock_files(lab) == {}
