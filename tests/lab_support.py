"""The namespace lab for tests: a fixture that brings a lab up and ALWAYS tears it down.

Usage in a test module::

    from tests.lab_support import lab, ssh_client  # noqa: F401  (fixture)

    @pytest.mark.lab
    def test_x(lab: LabInfo) -> None: ...

The finalizer is registered *before* `up` runs, so a failing `up`, a failing test or an
interrupted session all end in `lab.api.down()`, which raises (failing the teardown)
if anything of the lab is left. Root only: without root the tests are skipped with the
reason; a lab somebody else left up is a failure, never silently reused or destroyed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest

from bootstrap.inventory.model import COMPONENTS as COMPONENTS  # re-exported for the lab tests
from lab import api, cri, kubebin, record
from lab.api import LabInfo

# Tests marked `lab` are skipped with this reason without root (tests/conftest.py).
NOT_ROOT = "the namespace lab needs root (netns, mounts, bridge, sshd)"


def bin_dir_from_env() -> Path | None:
    """LAB_BIN_DIR: a directory of etcd and kube-* binaries to use instead of the lab's own
    builds from Go modules (lab/kubebin.py)."""
    value = os.environ.get("LAB_BIN_DIR")
    return Path(value) if value else None


def bring_up(
    request: pytest.FixtureRequest,
    masters: int = 3,
    extra_kubernetes: tuple[str, ...] = (),
    extra_etcd: tuple[str, ...] = (),
    kubernetes: str = kubebin.DEFAULT_KUBERNETES,
    etcd: str = kubebin.DEFAULT_ETCD,
    node: str = "runner",
) -> LabInfo:
    """A lab of ``masters`` hosts, ALWAYS torn down: the finalizer is registered before
    `up`, and a lab somebody else left up is a failure, never reused or destroyed."""
    if os.geteuid() != 0:
        pytest.skip(NOT_ROOT)
    present = api.lab_exists(record.load())
    if present:
        pytest.fail(
            "a lab is already up (" + ", ".join(present[:4]) + "): not reusing or destroying"
            " somebody else's lab; run `python -m lab down` (with your LAB_INSTANCE) first"
        )
    request.addfinalizer(api.down)
    return api.up(
        masters=masters, bin_dir=bin_dir_from_env(), extra_kubernetes=extra_kubernetes,
        extra_etcd=extra_etcd, kubernetes=kubernetes, etcd=etcd, node=node,
    )


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest) -> Iterator[LabInfo]:
    yield bring_up(request)


def ssh_client(info: LabInfo, host: str, user: str = "root") -> paramiko.SSHClient:
    """paramiko with the lab key and strict known_hosts (RejectPolicy: no TOFU)."""
    client = paramiko.SSHClient()
    client.load_host_keys(str(info.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        info.host(host).address,
        username=user,
        key_filename=str(info.ssh_key),
        look_for_keys=False,
        allow_agent=False,
        timeout=10,
        banner_timeout=10,
        auth_timeout=10,
    )
    return client


def ssh_run(client: paramiko.SSHClient, command: str) -> tuple[int, str, str]:
    _stdin, stdout, stderr = client.exec_command(command, timeout=30)
    out = stdout.read().decode()
    err = stderr.read().decode()
    return stdout.channel.recv_exit_status(), out, err


def poll(what: str, attempt: Callable[[], Any], accept: Callable[[Any], bool],
         limit: float) -> Any:
    """Repeat ``attempt`` until ``accept``; a bounded wait (count and time), never a sleep
    followed by an assertion. Returns the accepted value."""
    deadline = time.monotonic() + limit
    last = None
    while time.monotonic() < deadline:
        last = attempt()
        if accept(last):
            return last
        time.sleep(1.0)
    pytest.fail(f"{what}: not seen within {limit:.0f} s; last: {last!r}")


def kubectl(info: LabInfo, state: Path, *args: str) -> str:
    """The lab's kubectl with the state dir's admin.conf; it must succeed. Raw stdout."""
    proc = subprocess.run(
        [str(info.bin_dir / "kubectl"), "--kubeconfig", str(state / "admin.conf"), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, (args, proc.stderr)
    return proc.stdout


# --- the kubelet lab: test_kubelet_lab.py and test_kubelet_http_lab.py ----------------------

REPO = Path(__file__).resolve().parent.parent


def bootstrap(*args: str) -> subprocess.CompletedProcess[str]:
    """This checkout's `bootstrap` CLI in a subprocess (output captured, never checked)."""
    return subprocess.run(
        [sys.executable, "-m", "bootstrap", *args], capture_output=True, text=True, timeout=600
    )


class Cluster:
    """A kubelet-mode lab with its state dir: init, kubectl, the nodes' containers."""

    def __init__(self, info: LabInfo, state: Path) -> None:
        self.info = info
        self.state = state

    def init(self) -> subprocess.CompletedProcess[str]:
        return bootstrap("init", "--inventory", str(self.info.inventory),
                         "--state-dir", str(self.state))

    def kubectl(self, *args: str) -> str:
        return kubectl(self.info, self.state, *args)

    def mirror_pods(self) -> dict[str, dict[str, Any]]:
        doc = json.loads(self.kubectl("get", "pods", "-n", "kube-system", "-o", "json"))
        return {p["metadata"]["name"]: p for p in doc["items"]}

    def containers(self, host: str) -> list[dict[str, Any]]:
        return cri.containers(lambda h, a: api.exec_in(h, a), host)

    def running(self, host: str, component: str) -> dict[str, Any] | None:
        for c in self.containers(host):
            if c["metadata"]["name"] == component and c["state"] == "CONTAINER_RUNNING":
                return c
        return None
