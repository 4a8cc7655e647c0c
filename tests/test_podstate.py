"""bootstrap.node.cri: the real answer of `CriNode.read_script` on a kubelet-mode lab
host (tests/data/crictl/, captured from m3: containerd 2.3.7, crictl 1.37.0, kubelet
v1.37.2), and the states a rollout or a failed pull passes through, derived from it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from bootstrap.inventory.model import COMPONENTS
from bootstrap.node.cri import parse_crictl

CAPTURED = Path(__file__).parent / "data" / "crictl" / "m3-read-pod-states.txt"


def sections() -> tuple[dict[str, Any], str]:
    ps_text, mark, rest = CAPTURED.read_text().partition("\n@@images\n")
    assert mark, "the capture has the images section"
    return json.loads(ps_text), mark + rest


def body(ps: dict[str, Any], rest: str) -> str:
    return json.dumps(ps) + "\n" + rest


def test_the_captured_node_runs_all_four() -> None:
    states = parse_crictl(CAPTURED.read_text())
    for component in COMPONENTS:
        s = states[component]
        assert (s.phase, s.source, s.restarts, s.running) == ("Running", "cri", 0, True)
        assert s.instance and len(s.instance) == 64  # the container id: a new one per start


def test_created_not_started_is_waiting_and_newest_attempt_wins() -> None:
    ps, rest = sections()
    sched = next(c for c in ps["containers"] if c["metadata"]["name"] == "kube-scheduler")
    old = copy.deepcopy(sched)
    old.update(id="0" * 64, state="CONTAINER_EXITED", createdAt=str(int(sched["createdAt"]) - 9))
    sched["state"] = "CONTAINER_CREATED"
    sched["annotations"]["io.kubernetes.container.restartCount"] = "3"
    ps["containers"].append(old)
    s = parse_crictl(body(ps, rest))["kube-scheduler"]
    assert (s.phase, s.reason, s.restarts, s.running) == ("Waiting", "ContainerCreating", 3, False)
    assert s.instance == sched["id"]
    sched["state"] = "CONTAINER_EXITED"
    assert parse_crictl(body(ps, rest))["kube-scheduler"].phase == "Exited"


def test_no_container_says_whether_the_image_is_on_the_node() -> None:
    ps, rest = sections()
    ps["containers"] = [c for c in ps["containers"]
                        if c["metadata"]["name"] != "kube-scheduler"]
    absent = parse_crictl(body(ps, rest))["kube-scheduler"]
    assert (absent.phase, absent.reason) == ("Absent", "no container")  # image is there
    images, mark, manifests = rest.partition("\n@@wanted\n")
    wanted = images + mark + manifests.replace("kube-scheduler:v1.37.2", "kube-scheduler:v1.99.0")
    assert wanted != rest
    missing = parse_crictl(body(ps, wanted))["kube-scheduler"]
    assert missing.phase == "Waiting" and not missing.running
    assert "registry.k8s.io/kube-scheduler:v1.99.0 is not on the node" in str(missing.reason)


def test_a_users_container_of_the_same_name_is_not_the_static_pod() -> None:
    ps, rest = sections()
    etcd = next(c for c in ps["containers"] if c["metadata"]["name"] == "etcd")
    impostor = copy.deepcopy(etcd)
    newer = str(int(etcd["createdAt"]) + 1)
    impostor.update(id="f" * 64, state="CONTAINER_EXITED", createdAt=newer)
    impostor["labels"]["io.kubernetes.pod.namespace"] = "default"
    ps["containers"].append(impostor)
    s = parse_crictl(body(ps, rest))["etcd"]
    assert s.running and s.instance == etcd["id"]


def test_an_old_crictl_answer_without_the_extra_sections_still_parses() -> None:
    ps, _rest = sections()
    states = parse_crictl(json.dumps(ps))
    assert all(states[c].running for c in COMPONENTS)
    assert parse_crictl("")["etcd"].phase == "Absent"
