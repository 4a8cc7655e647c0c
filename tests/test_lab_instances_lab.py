"""Two lab instances side by side: `lab down` of one touches and reports nothing of the other.

Found on the machine: with a kubelet-mode lab up, the teardown of another instance
reported "process 6171 runc init" (a container the kubelet-mode lab was starting) as
left behind, kept its record, and every later lab test failed "a lab is already up".
The teardown matched processes by namespace inode after it had freed its own
namespaces; the kernel hands a freed inode number to the next namespace made anywhere.

Here the surviving lab (kubelet mode, one host) makes namespaces all the time, as runc
does, while the other (runner mode) goes down. Both labs through the real CLI, one
`LAB_INSTANCE` each (this process's, and ``LAB_OTHER_INSTANCE`` or the next digit).

Run: flock /tmp/lab.lock env LAB_INSTANCE=<d> .venv/bin/pytest -q tests/test_lab_instances_lab.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.lab  # skipped without root (tests/conftest.py)

REPO = Path(__file__).resolve().parent.parent
PRIMARY = os.environ.get("LAB_INSTANCE", "").strip()
OTHER = os.environ.get("LAB_OTHER_INSTANCE", "").strip() or str(int(PRIMARY or 0) % 9 + 1)

# Inside the surviving lab's host: new mount + PID namespaces, ~50 a second, each alive
# for a second and a half (runc init makes such namespaces for every container it starts).
# Each one that ends normally says so: one that a teardown killed never does.
CHURN = """
rm -f /tmp/churn.*
while [ ! -e /tmp/churn.stop ]; do
  echo . >> /tmp/churn.started
  unshare --mount --pid --fork sh -c 'sleep 1.5; echo . >> /tmp/churn.done' &
  sleep 0.02
done
wait
"""


def _prefix(instance: str) -> str:
    return f"bslab{instance}-"


def lab_cli(instance: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO)}
    if instance:
        env["LAB_INSTANCE"] = instance
    return subprocess.run(
        [sys.executable, "-m", "lab", *args], capture_output=True, text=True, env=env,
        cwd=REPO, timeout=timeout, check=False,
    )


def _netns(instance: str) -> list[str]:
    try:
        return sorted(p.name for p in Path("/run/netns").iterdir()
                      if p.name.startswith(_prefix(instance)))
    except FileNotFoundError:
        return []


def _status(instance: str) -> dict[str, Any]:
    proc = lab_cli(instance, "status", "--json")
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def _processes(st: dict[str, Any]) -> dict[str, dict[str, Any]]:
    keys = ("init_pid", "sshd_pid", "runner_pid", "kubelet_pid", "containerd_pid")
    return {h["name"]: {k: h.get(k) for k in keys} for h in st["hosts"]}


def _count(instance: str, path: str) -> int:
    proc = lab_cli(instance, "exec", "m1", "--", "sh", "-c", f"cat {path} 2>/dev/null || true")
    return proc.stdout.count(".")


@pytest.fixture
def two_labs(request: pytest.FixtureRequest) -> None:
    for instance in (PRIMARY, OTHER):
        if _netns(instance) or (REPO / "lab" / f".state{'-' if instance else ''}{instance}"
                                / "lab.json").exists():
            pytest.fail(f"a lab of LAB_INSTANCE={instance or '(default)'} is already up: "
                        "not reusing or destroying somebody else's lab")

    def down_both() -> None:
        for instance in (PRIMARY, OTHER):
            lab_cli(instance, "down", timeout=300)

    request.addfinalizer(down_both)


def test_down_of_one_instance_leaves_the_other_running(two_labs: None) -> None:
    up = lab_cli(OTHER, "up", "--node", "kubelet", "--masters", "1", timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr
    up = lab_cli(PRIMARY, "up", "--masters", "2", timeout=120)
    assert up.returncode == 0, up.stdout + up.stderr
    other_before = _processes(_status(OTHER))
    assert all(p["kubelet_pid"] and p["containerd_pid"] and p["sshd_pid"]
               for p in other_before.values()), other_before
    assert len(_netns(PRIMARY)) == 2 and len(_netns(OTHER)) == 1

    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO),
           "LAB_INSTANCE": OTHER}
    churn = subprocess.Popen(
        [sys.executable, "-m", "lab", "exec", "m1", "--", "sh", "-c", CHURN], env=env,
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while _count(OTHER, "/tmp/churn.done") < 10:  # namespaces come and go by now
            assert churn.poll() is None and time.monotonic() < deadline, churn.stderr
            time.sleep(0.2)
        down = lab_cli(PRIMARY, "down", timeout=300)
    finally:
        lab_cli(OTHER, "exec", "m1", "--", "touch", "/tmp/churn.stop")
        _out, churn_err = churn.communicate(timeout=60)

    assert down.returncode == 0, down.stdout + down.stderr
    assert "nothing left" in down.stdout, down.stdout
    assert _netns(PRIMARY) == []
    assert lab_cli(PRIMARY, "down").stdout.strip() == "nothing to tear down"
    # The other lab: every namespace made during the teardown lived its life out, and
    # its hosts run the same processes as before.
    assert churn.returncode == 0, churn_err
    started, done = _count(OTHER, "/tmp/churn.started"), _count(OTHER, "/tmp/churn.done")
    assert started >= 10 and done == started, (started, done)
    other_after = _status(OTHER)
    assert other_after["up"] and _processes(other_after) == other_before
    assert _netns(OTHER) == ["bslab" + OTHER + "-m1"]

    down = lab_cli(OTHER, "down", timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "nothing left" in down.stdout, down.stdout
    assert _netns(OTHER) == []
    assert lab_cli(OTHER, "down").stdout.strip() == "nothing to tear down"
