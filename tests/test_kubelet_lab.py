"""The real kubelet in the lab: `lab up --node kubelet` → `bootstrap init` → the mirror pods.

Each lab host runs its own containerd (v2, built from its Go module, runc built with
libseccomp) and the real kubelet of the control plane's version, standalone until
bootstrap writes kubelet.conf, then registered (lab/node.py). The static pods are real
containers of images the lab built from its binaries (lab/ociimage.py). What the seed
article shows about static pods is checked here against that kubelet, through kubectl
with the operator's admin.conf and crictl on the nodes:

- the 12 mirror pods (``<component>-<node>``) Running on the registered nodes m1-m3;
- a second init says ``0 changed`` and restarts no container (crictl's ids and counts);
- deleting a mirror pod does not stop its container, and the mirror pod comes back;
- killing a container's process makes the kubelet restart it (its restart count grows);
- removing a manifest stops the pod and its mirror pod disappears; putting it back
  starts it again;
- a changed flag rolls one master at a time, and the kubelet restarts only that pod;
- `lab status`, `lab logs`, `lab exec` in this mode; `lab down` leaves no process,
  cgroup, mount or changed sysctl behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bootstrap.inventory import load
from bootstrap.node.view import read_pod_states
from bootstrap.transport import connect_all
from lab import api, cgroups, record, sysctls
from lab.config import LAB_BOOTSTRAP_STATE, PREFIX
from tests.lab_support import COMPONENTS, REPO, Cluster, bootstrap, bring_up, poll

pytestmark = pytest.mark.lab
def lab_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab", *args], capture_output=True, text=True, timeout=120,
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def restarts(c: dict[str, Any]) -> int:
    return int(c["annotations"]["io.kubernetes.container.restartCount"])


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    info = bring_up(request, node="kubelet")
    assert info.node == "kubelet"
    state = LAB_BOOTSTRAP_STATE
    if state.exists():  # a previous lab's CA: this lab's hosts are new
        subprocess.run(["rm", "-rf", "--", str(state)], check=True)
    c = Cluster(info, state)
    first = c.init()
    print(first.stdout, first.stderr)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr
    yield c


def test_mirror_pods_of_every_master_run_on_registered_nodes(cluster: Cluster) -> None:
    hosts = [h.name for h in cluster.info.hosts]
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json"))["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == hosts
    for node in nodes:  # what the kubelet reports about itself: the lab's builds
        assert node["status"]["nodeInfo"]["kubeletVersion"] == cluster.info.kubernetes_version
        assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://2.")
    expected = {f"{c}-{h}" for c in COMPONENTS for h in hosts}
    pods = poll(
        "12 mirror pods, all Running",
        cluster.mirror_pods,
        lambda p: set(p) == expected and all(x["status"].get("phase") == "Running"
                                            for x in p.values()),
        120,
    )
    print(cluster.kubectl("get", "pods", "-n", "kube-system", "-o", "wide"))
    for name, pod in pods.items():
        component, node = name.rsplit("-", 1)
        assert pod["spec"]["nodeName"] == node, name
        # A mirror pod: created by the node's kubelet from its static pod, not by a client.
        assert "kubernetes.io/config.mirror" in pod["metadata"]["annotations"], name
        assert pod["metadata"]["annotations"]["kubernetes.io/config.source"] == "file", name
        assert pod["spec"]["containers"][0]["name"] == component
    # bootstrap's own reading of the nodes (podstate: crictl over SSH) agrees.
    inventory = load(cluster.info.inventory)
    connected = connect_all(list(inventory.masters))
    try:
        for name, host in connected.items():
            states = read_pod_states(host)
            for component in COMPONENTS:
                assert states[component].source == "cri", (name, states[component])
                assert states[component].running, (name, states[component])
    finally:
        for host in connected.values():
            host.close()


def test_second_init_changes_nothing_and_restarts_no_container(cluster: Cluster) -> None:
    before = {h.name: {c["id"]: restarts(c) for c in cluster.containers(h.name)}
              for h in cluster.info.hosts}
    second = cluster.init()
    print(second.stdout, second.stderr)
    assert second.returncode == 0, second.stderr
    assert "init: 0 changed" in second.stdout
    after = {h.name: {c["id"]: restarts(c) for c in cluster.containers(h.name)}
             for h in cluster.info.hosts}
    assert after == before


def test_deleting_a_mirror_pod_keeps_its_container_and_the_pod_comes_back(
    cluster: Cluster,
) -> None:
    container = cluster.running("m2", "kube-scheduler")
    assert container is not None
    old_uid = cluster.mirror_pods()["kube-scheduler-m2"]["metadata"]["uid"]
    cluster.kubectl("delete", "pod", "-n", "kube-system", "kube-scheduler-m2", "--wait=false")
    # The kubelet puts the mirror pod back on its next sync of the static pod: at once
    # after a status change, at the latest at the periodic resync (syncFrequency, 1 min
    # plus jitter); 5-56 s measured here.
    back = poll(
        "kube-scheduler-m2 recreated by m2's kubelet",
        lambda: cluster.mirror_pods().get("kube-scheduler-m2"),
        lambda p: p is not None and p["metadata"]["uid"] != old_uid
        and p["metadata"].get("deletionTimestamp") is None
        and p["status"].get("phase") == "Running",  # Pending until the kubelet's status
        150,
    )
    assert back["metadata"]["annotations"]["kubernetes.io/config.mirror"]
    still = cluster.running("m2", "kube-scheduler")
    assert still is not None and still["id"] == container["id"], "the container was replaced"
    assert restarts(still) == restarts(container)


def test_killing_a_container_process_makes_the_kubelet_restart_it(cluster: Cluster) -> None:
    before = cluster.running("m3", "kube-controller-manager")
    assert before is not None
    pid = api.kill_pod_process("m3", "kube-system/kube-controller-manager")
    assert pid > 1

    def replaced() -> dict[str, Any] | None:
        c = cluster.running("m3", "kube-controller-manager")
        return c if c is not None and c["id"] != before["id"] else None

    try:
        deadline = time.monotonic() + 45
        after = replaced()
        while after is None and time.monotonic() < deadline:
            time.sleep(1)
            after = replaced()
        if after is None:
            # Seen once in ~7 runs: the same container still Running 90 s after the kill.
            # Say so, kill the container that runs now once more, and require the restart.
            again = api.kill_pod_process("m3", "kube-system/kube-controller-manager")
            print(f"no new container 45 s after killing pid {pid}; killed pid {again} again")
        after = poll(
            "a new kube-controller-manager container on m3",
            lambda: cluster.running("m3", "kube-controller-manager"),
            lambda c: c is not None and c["id"] != before["id"],
            120,
        )
    except BaseException:  # what the node saw, for the report
        ps = api.exec_in("m3", ["ps", "-eo", "pid,ppid,stat,args"]).stdout.decode()
        log = api.exec_in("m3", ["tail", "-n", "60", "/var/log/kubelet.log"]).stdout.decode()
        print(f"killed pid {pid}\n{ps}\n{log}")
        raise
    assert restarts(after) > restarts(before)
    # The API shows it too: the mirror pod's status comes from the kubelet.
    status = poll(
        "kube-controller-manager-m3's restartCount in the API",
        lambda: cluster.mirror_pods()["kube-controller-manager-m3"]["status"],
        lambda s: (s.get("containerStatuses") or [{}])[0].get("restartCount", 0) >= 1,
        60,
    )
    assert status["phase"] == "Running"


def test_removing_a_manifest_stops_the_pod_and_its_mirror_pod_goes(cluster: Cluster) -> None:
    manifest = "/etc/kubernetes/manifests/kube-scheduler.yaml"
    parked = "/etc/kubernetes/kube-scheduler.yaml.parked"
    assert api.exec_in("m1", ["mv", manifest, parked]).returncode == 0
    try:
        poll("m1's kube-scheduler container stopped",
             lambda: cluster.running("m1", "kube-scheduler"), lambda c: c is None, 60)
        poll("kube-scheduler-m1 gone from the API",
             cluster.mirror_pods, lambda p: "kube-scheduler-m1" not in p, 60)
        assert {f"kube-scheduler-{h}" for h in ("m2", "m3")} <= set(cluster.mirror_pods())
    finally:
        assert api.exec_in("m1", ["mv", parked, manifest]).returncode == 0
    poll("m1's kube-scheduler running again",
         lambda: cluster.running("m1", "kube-scheduler"), lambda c: c is not None, 90)
    poll("kube-scheduler-m1 back in the API",
         cluster.mirror_pods, lambda p: "kube-scheduler-m1" in p, 60)


def test_lab_status_logs_and_exec_in_kubelet_mode(cluster: Cluster) -> None:
    st = lab_cli("status", "--json")
    assert st.returncode == 0, st.stderr
    doc = json.loads(st.stdout)
    assert doc["node"] == "kubelet"
    for host in doc["hosts"]:
        assert host["kubelet_pid"] and host["containerd_pid"], host
        names = {p["name"]: p for p in host["runner_status"]["pods"]}
        for component in COMPONENTS:
            assert names[f"kube-system/{component}"]["phase"] == "Running", (host["name"], names)
    table = lab_cli("status")
    assert table.returncode == 0 and "kubelet " in table.stdout, table.stdout
    logs = lab_cli("logs", "m2", "etcd")
    assert logs.returncode == 0, logs.stderr
    assert "serving client traffic" in logs.stdout, logs.stdout[-2000:]  # etcd's own log
    ex = lab_cli("exec", "m3", "--", "crictl", "pods", "--name", "etcd-m3", "-q")
    assert ex.returncode == 0 and ex.stdout.strip(), ex.stderr


def test_a_changed_flag_rolls_one_master_at_a_time_restarting_only_that_pod(
    cluster: Cluster, tmp_path: Path
) -> None:
    hosts = [h.name for h in cluster.info.hosts]
    before = {h: {c: cluster.running(h, c) for c in COMPONENTS} for h in hosts}
    assert all(c is not None for by in before.values() for c in by.values()), before
    edited = tmp_path / "masters.yaml"
    edited.write_text(cluster.info.inventory.read_text()
                      + '\nextraArgs:\n  kube-scheduler:\n    kube-api-qps: "60"\n')
    rolled = bootstrap("init", "--inventory", str(edited), "--state-dir", str(cluster.state))
    print(rolled.stdout, rolled.stderr)
    assert rolled.returncode == 0, rolled.stderr
    lines = rolled.stderr.splitlines()
    starts = [i for i, line in enumerate(lines)
              if "rolling kube-scheduler: replacing the running pod" in line]
    assert len(starts) == len(hosts), starts
    order = [next(h for h in hosts if f"] {h}: rolling" in lines[i]) for i in starts]
    assert sorted(order) == hosts
    # One at a time: each master's new pod runs and answers /livez before the next one's
    # manifest is written.
    for k, (i, host) in enumerate(zip(starts, order, strict=True)):
        end = starts[k + 1] if k + 1 < len(starts) else len(lines)
        window = lines[i:end]
        assert any(f"kube-scheduler on {host} to pick up the new manifest:" in x
                   and "waiting" not in x for x in window), window
        assert any("kube-scheduler /livez:" in x and "waiting" not in x for x in window), window
    after = {h: {c: cluster.running(h, c) for c in COMPONENTS} for h in hosts}
    for h in hosts:
        for c in ("etcd", "kube-apiserver", "kube-controller-manager"):
            assert after[h][c]["id"] == before[h][c]["id"], (h, c)  # type: ignore[index]
        assert after[h]["kube-scheduler"]["id"] != before[h]["kube-scheduler"]["id"], h  # type: ignore[index]
    created = [int(after[h]["kube-scheduler"]["createdAt"]) for h in order]  # type: ignore[index]
    assert created == sorted(created), "the new pods started in the rollout's order"
    def flagged(pods: dict[str, dict[str, Any]]) -> list[str]:
        return [h for h in hosts if f"kube-scheduler-{h}" in pods and "--kube-api-qps=60"
                in pods[f"kube-scheduler-{h}"]["spec"]["containers"][0]["command"]]

    poll("every kube-scheduler mirror pod showing the new flag",
         cluster.mirror_pods, lambda p: flagged(p) == hosts, 90)
    again = bootstrap("init", "--inventory", str(edited), "--state-dir", str(cluster.state))
    assert again.returncode == 0 and "init: 0 changed" in again.stdout, again.stderr


def test_lab_down_leaves_no_container_cgroup_mount_or_sysctl(cluster: Cluster) -> None:
    roots = record.load()["cgroup_roots"]  # type: ignore[index]
    assert roots == [cgroups.host_root(h.name) for h in cluster.info.hosts]
    assert cgroups.processes(roots), "the pods' processes must be in the hosts' cgroup roots"
    assert all(sysctls.read(k) == v for k, v in sysctls.KUBELET_VALUES.items())
    others = [h for h in json.loads(sysctls.LEDGER.read_text())["holders"] if h != PREFIX]
    assert api.down() is True  # raises if anything of the lab is left
    assert not cgroups.lab_roots() and not cgroups.processes(roots)
    assert sysctls.leftovers(PREFIX) == []
    if not others:  # no other kubelet-mode lab holds them: the machine's values are back
        assert not sysctls.LEDGER.exists()
