"""`bootstrap upgrade` from one minor to the next on real binaries of both versions.

The lab's nodes get images of two Kubernetes and two etcd versions (lab/kubebin.py's image
store): the previous minor (Kubernetes v1.36.3, etcd 3.6.16) and the lab's default, the
current one (v1.37.2 with etcd 3.7.0, as kubeadm pairs them), all built from their Go
modules. `init` at the first, a Secret written through the API,
`upgrade --dry-run` (nothing changes), then `upgrade --to` the next: master by master, each
healthy before the next, then verify, the Secret read back, and every apiserver answering
with the new version.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import api, kubebin
from lab.api import LabInfo
from tests.lab_support import bring_up, kubectl

pytestmark = pytest.mark.lab
TARGET_KUBERNETES = kubebin.DEFAULT_KUBERNETES
TARGET_ETCD = kubebin.DEFAULT_ETCD
PODS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest) -> Iterator[LabInfo]:
    yield bring_up(
        request,
        kubernetes=kubebin.PREVIOUS_KUBERNETES,
        etcd=kubebin.PREVIOUS_ETCD,
        extra_kubernetes=(TARGET_KUBERNETES,),
        extra_etcd=(TARGET_ETCD,),
    )


def bootstrap(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "bootstrap", *args], capture_output=True, text=True, timeout=900
    )
    print(f"$ bootstrap {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def pods(info: LabInfo) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for host in info.hosts:
        status = api.runner_status(host.name)
        out[host.name] = {key.split("/", 1)[1]: pod for key, pod in status["pods"].items()}
    return out


def test_upgrade_to_the_next_minor_on_real_binaries(lab: LabInfo, tmp_path: Path) -> None:
    assert lab.kubernetes_version == kubebin.PREVIOUS_KUBERNETES
    state = tmp_path / "state"
    common = ("--inventory", str(lab.inventory), "--state-dir", str(state))
    assert bootstrap("init", *common).returncode == 0

    def kube(*args: str) -> str:
        return kubectl(lab, state, *args).strip()

    kube("create", "secret", "generic", "before-upgrade", "--from-literal=k=written-at-1.36")
    target_etcd = TARGET_ETCD.lstrip("v")
    flags = ("--to", TARGET_KUBERNETES)  # etcd follows kubeadm's pairing for the target

    before = pods(lab)
    dry = bootstrap("upgrade", *common, *flags, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"+    image: registry.k8s.io/kube-apiserver:{TARGET_KUBERNETES}" in dry.stdout
    assert f"+    image: registry.k8s.io/etcd:{target_etcd}-0" in dry.stdout
    assert not re.search(r"^\+.*--experimental-", dry.stdout, re.M), "etcd 3.7 has none"
    unchanged = pods(lab)
    assert all(unchanged[h][n]["configHash"] == before[h][n]["configHash"]
               for h in before for n in PODS)

    upgraded = bootstrap("upgrade", *common, *flags)
    assert upgraded.returncode == 0, upgraded.stderr
    # One master at a time, in inventory order, each healthy before the next one starts.
    order = re.findall(r"\[upgrade\] (m\d): upgraded and healthy", upgraded.stderr)
    assert order == ["m1", "m2", "m3"], upgraded.stderr
    after = pods(lab)
    for host in before:
        for name in PODS:
            assert after[host][name]["configHash"] != before[host][name]["configHash"], (
                host, name)
            assert after[host][name]["phase"] == "Running", (host, name, after[host][name])

    verify = bootstrap("verify", *common, "-o", "json")
    assert verify.returncode == 0, verify.stdout
    assert {r["status"] for r in json.loads(verify.stdout)["results"]} == {"ok"}
    assert kube("get", "secret", "before-upgrade", "-o", "jsonpath={.data.k}") == (
        "d3JpdHRlbi1hdC0xLjM2"  # base64 of "written-at-1.36"
    )
    server = json.loads(kube("version", "-o", "json"))["serverVersion"]["gitVersion"]
    assert server == TARGET_KUBERNETES
    for host in before:
        etcd = api.read_host_file(host, "/etc/kubernetes/manifests/etcd.yaml").decode()
        assert f"registry.k8s.io/etcd:{target_etcd}-0" in etcd
        assert "--experimental-" not in etcd
