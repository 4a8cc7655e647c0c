"""The refusals before a write (issue 16 items 2, 3) and status' causes (item 11), on
values: the checks are pure functions of what the hosts said and of real state dirs
(ensure_pki), so every branch is exercised here; the lab runs them end to end in
tests/test_hardening_lab.py.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

from bootstrap.errors import BootstrapError
from bootstrap.etcd.client import EtcdUnreachable, Status
from bootstrap.health.status import EtcdProcess, etcd_state, quorum_line
from bootstrap.node.podstate import PodState
from bootstrap.pki import ensure_pki
from bootstrap.run.session import Session
from bootstrap.workflow.guard import (
    ClusterMismatch,
    HostView,
    VersionChange,
    check_ca,
    check_versions,
    desired_tags,
    fingerprint,
    image_tag,
    manifest_image,
)
from tests.pki_support import make_inventory

INVENTORY = make_inventory(kubernetes_version="v1.34.1", etcd_version="3.6.4")


def session(state: Path) -> Session:
    return Session(inventory=INVENTORY, state_dir=state)


def running(
    names: tuple[str, ...] = ("cp1", "cp2", "cp3"),
    ca: bytes | None = None,
    kube: str = "v1.34.1",
    etcd: str = "3.6.4-0",
) -> dict[str, HostView]:
    images = {
        "etcd": f"registry.k8s.io/etcd:{etcd}",
        **{
            c: f"registry.k8s.io/{c}:{kube}"
            for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
        },
    }
    return {n: HostView(n, ca, dict(images)) for n in names}


# --- the CA --------------------------------------------------------------------------------


def test_fingerprint_is_openssls(tmp_path: Path) -> None:
    pem = ensure_pki(INVENTORY, tmp_path / "s").ca().cert_pem
    (tmp_path / "ca.crt").write_bytes(pem)
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(tmp_path / "ca.crt")],
        capture_output=True, text=True, check=True,
    ).stdout
    assert out.strip().split("=", 1)[1] == fingerprint(pem)
    assert fingerprint(b"garbage").startswith("unreadable certificate")


def test_same_ca_and_fresh_hosts_pass(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ca = ensure_pki(INVENTORY, state).ca().cert_pem
    check_ca(session(state), running(ca=ca))
    check_ca(session(state), running(ca=None))  # nothing on the hosts yet
    check_ca(session(tmp_path / "empty"), running(ca=None))  # first init ever
    views = running(ca=ca)
    views["cp3"] = HostView("cp3", None, {})  # a new master joining
    check_ca(session(state), views)


def test_empty_state_dir_against_a_running_cluster(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ca = ensure_pki(INVENTORY, state).ca().cert_pem
    empty = tmp_path / "fresh"
    with pytest.raises(ClusterMismatch) as refused:
        check_ca(session(empty), running(ca=ca))
    err = refused.value
    assert err.exit_code == 2
    assert "holds no cluster CA" in err.message and fingerprint(ca) in err.message
    assert "no PKI was generated" in err.message
    assert err.hint is not None and f"--state-dir {state}" in err.hint  # found next to it
    assert not empty.exists()


def test_another_clusters_state_dir_shows_both_fingerprints(tmp_path: Path) -> None:
    ours = ensure_pki(INVENTORY, tmp_path / "ours").ca().cert_pem
    theirs_dir = tmp_path / "theirs"
    theirs = ensure_pki(INVENTORY, theirs_dir).ca().cert_pem
    with pytest.raises(ClusterMismatch) as refused:
        check_ca(session(theirs_dir), running(ca=ours))
    text = refused.value.message
    assert fingerprint(ours) in text and fingerprint(theirs) in text
    assert "never replaced by a routine run" in text
    assert refused.value.hint is not None and str(tmp_path / "ours") in refused.value.hint
    # one foreign host among ours is refused too, and named
    views = running(ca=theirs)
    views["cp2"] = HostView("cp2", ours, {})
    with pytest.raises(ClusterMismatch) as one:
        check_ca(session(theirs_dir), views)
    assert "cp2: CA SHA256" in one.value.message


# --- versions -------------------------------------------------------------------------------


def test_matching_versions_pass() -> None:
    check_versions(session(Path("unused")), running(), "init")
    # a master without manifests (fresh, or a joiner) has nothing to compare
    views = running()
    views["cp3"] = HostView("cp3", None, {})
    check_versions(session(Path("unused")), views, "init")


@pytest.mark.parametrize(
    ("running_kube", "running_etcd", "words"),
    [
        ("v1.33.4", "3.6.4-0", ["Kubernetes v1.33.4 on cp1, cp2, cp3", "upgrade --to v1.34.1"]),
        ("v1.39.0", "3.6.4-0", ["downgrades are not supported", "kubernetesVersion: v1.39.0"]),
        ("v1.34.1", "3.6.2-0", ["etcd 3.6.2-0", "--etcd-version 3.6.4"]),
        ("v1.34.1", "3.6.9-0", ["downgrades are not supported", "etcdVersion: 3.6.9"]),
    ],
)
def test_version_changes_are_refused(
    running_kube: str, running_etcd: str, words: list[str]
) -> None:
    with pytest.raises(VersionChange) as refused:
        check_versions(
            session(Path("unused")), running(kube=running_kube, etcd=running_etcd), "init"
        )
    text = f"{refused.value.message} {refused.value.hint}"
    assert refused.value.exit_code == 2
    assert "only through `bootstrap upgrade`" in text
    for word in words:
        assert word in text, (word, text)


def test_half_finished_upgrade_points_to_resuming_it() -> None:
    views = running()
    views["cp1"] = dataclasses.replace(
        views["cp1"],
        images={**views["cp1"].images, "kube-apiserver": "registry.k8s.io/kube-apiserver:v1.35.0"},
    )
    with pytest.raises(VersionChange) as refused:
        check_versions(session(Path("unused")), views, "certs renew")
    assert "certs renew would change" in refused.value.message
    assert refused.value.hint is not None and "upgrade --to v1.35.0" in refused.value.hint


def test_image_parsing() -> None:
    manifest = b"spec:\n  containers:\n  - name: etcd\n    image: reg.example:5000/etcd:3.6.4-0\n"
    assert manifest_image(manifest) == "reg.example:5000/etcd:3.6.4-0"
    assert image_tag("reg.example:5000/etcd:3.6.4-0") == "3.6.4-0"
    assert image_tag("reg.example:5000/etcd") == ""  # a port is not a tag
    assert manifest_image(b"not: [yaml") is None
    assert desired_tags(INVENTORY) == {
        "kube-apiserver": "v1.34.1",
        "kube-controller-manager": "v1.34.1",
        "kube-scheduler": "v1.34.1",
        "etcd": "3.6.4-0",
    }


# --- status: the cause as observed --------------------------------------------------------------

LABEL = "m2 (10.0.0.12:2379)"
RUNNING = PodState("etcd", "Running", True, 0, None, "lab-runner", "x")


def status(member: int = 1, leader: int = 1, learner: bool = False) -> Status:
    return Status(member, leader, 10, 2, 10, "3.6.4", 1, (), learner, 5)


def down(kind: str) -> EtcdUnreachable:
    return EtcdUnreachable(f"etcd on {LABEL}: something ({kind})", kind=kind)


def test_status_cells_and_causes() -> None:
    assert etcd_state(LABEL, status(), None, RUNNING, None).cell == "leader"
    assert etcd_state(LABEL, status(2, 1), None, RUNNING, None).cell == "follower"
    assert etcd_state(LABEL, status(learner=True), None, RUNNING, None).cell == "learner"

    crashed = PodState("etcd", "Waiting", False, 3, "CrashLoopBackOff", "lab-runner")
    s = etcd_state(LABEL, None, down("closed"), crashed, EtcdProcess(False, ()))
    assert s.cell == "down: not running" and s.problem is not None
    assert "CrashLoopBackOff" in s.problem and LABEL in s.problem and "TLS" not in s.problem

    s = etcd_state(LABEL, None, down("closed"), RUNNING, EtcdProcess(False, ()))
    assert s.cell == "down: refused" and "nothing listens on port 2379" in str(s.problem)

    frozen = EtcdProcess(True, ("T (stopped)",))
    s = etcd_state(LABEL, None, down("timeout"), RUNNING, frozen)
    assert s.cell == "down: no answer" and "stopped (T (stopped)" in str(s.problem)

    s = etcd_state(LABEL, None, down("tls"), RUNNING, EtcdProcess(True, ("S (sleeping)",)))
    assert s.cell == "down: TLS failure"

    s = etcd_state(LABEL, None, BootstrapError("odd"), None, None)
    assert s.cell == "down" and LABEL in str(s.problem)


def test_quorum_line() -> None:
    names = {1: "m1", 2: "m2", 3: "m3"}
    assert quorum_line({"m1": status(1, 1), "m2": status(2, 1)}, 3, names).endswith(
        "quorum held, leader m1"
    )
    assert "QUORUM LOST (needs 2)" in quorum_line({"m1": status(1, 1)}, 3, names)
    assert "QUORUM LOST" in quorum_line({}, 3, names)
    assert "no common leader" in quorum_line({"m1": status(1, 0), "m2": status(2, 0)}, 3, names)


def test_every_nearby_copy_of_the_right_state_dir_is_named(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ca = ensure_pki(INVENTORY, state).ca().cert_pem
    shutil.copytree(state, tmp_path / "backup")
    with pytest.raises(ClusterMismatch) as refused:
        check_ca(session(tmp_path / "fresh"), running(ca=ca))
    hint = refused.value.hint or ""
    assert str(state) in hint and str(tmp_path / "backup") in hint and "current" in hint
