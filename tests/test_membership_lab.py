"""Membership on the namespace lab with five hosts (issue 8): grow 3 → 5 through `init`,
a join killed right after its member add resumes without a second member, removal keeps
quorum and refuses when it would not, reset cleans a host, and a member whose host was
wiped by hand is reported stale with the command that removes it.

The tests run in file order on one cluster (module-scoped lab and state dir); each one
states the cluster it expects. Real sshd, real etcd 3.5.1, the lab's process kubelet; the
CLI runs in subprocesses like a user would run it. Join times are printed (never asserted).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from bootstrap.etcd.client import EtcdClient, Member, TLSFiles
from bootstrap.inventory import load
from bootstrap.pki import ensure_pki
from bootstrap.transport import connect
from lab import api
from lab.api import LabInfo
from tests.lab_support import bring_up, poll

pytestmark = pytest.mark.lab
T = TypeVar("T")
JOIN_TIME = re.compile(r"\[join\] (\S+): joined in ([0-9.]+)s")


@pytest.fixture(scope="module")
def lab5(request: pytest.FixtureRequest) -> Iterator[LabInfo]:
    """A five-host lab, ALWAYS torn down."""
    yield bring_up(request, masters=5)


@pytest.fixture(scope="module")
def work(lab5: LabInfo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The state dir and inventories of 5, 4 (m5 dropped), 3 and 2 masters."""
    root = tmp_path_factory.mktemp("membership")
    doc = yaml.safe_load(lab5.inventory.read_text())
    paths: dict[str, Path] = {"state": root / "state"}
    for count in (5, 4, 3, 2):
        smaller = dict(doc, masters=doc["masters"][:count])
        path = root / f"masters-{count}.yaml"
        path.write_text(yaml.safe_dump(smaller, sort_keys=False))
        paths[str(count)] = path
    return paths


def bootstrap(
    *args: str, stdin: int | None = subprocess.DEVNULL
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "bootstrap", *args],
        capture_output=True,
        text=True,
        timeout=600,
        stdin=stdin,
    )
    print(f"$ bootstrap {' '.join(args)}  -> {proc.returncode}\n{proc.stdout}{proc.stderr}")
    return proc


def run(work: dict[str, Path], command: str, inventory: str, *extra: str) -> Any:
    return bootstrap(
        command, "--inventory", str(work[inventory]), "--state-dir", str(work["state"]), *extra
    )


def members(work: dict[str, Path], via: str = "m1") -> list[Member]:
    """The member list, asked directly (not through the tool) with m1's etcd client cert."""
    return ask(work, via, lambda client: client.members())


def leader(work: dict[str, Path], via: str) -> int:
    """The leader ``via``'s member knows (0: none)."""
    return ask(work, via, lambda client: client.status().leader_id)


def ask(work: dict[str, Path], via: str, question: Callable[[EtcdClient], T]) -> T:
    inventory = load(work["5"])
    files = ensure_pki(inventory, work["state"]).host_files(via)
    creds = work["state"].parent / f"creds-{via}"
    creds.mkdir(mode=0o700, exist_ok=True)
    tls: dict[str, Path] = {}
    for field, remote in (
        ("ca", "/etc/kubernetes/pki/etcd/ca.crt"),
        ("cert", "/etc/kubernetes/pki/apiserver-etcd-client.crt"),
        ("key", "/etc/kubernetes/pki/apiserver-etcd-client.key"),
    ):
        local = creds / Path(remote).name
        local.write_bytes(files[remote].content)
        local.chmod(0o600)
        tls[field] = local
    with (
        connect(inventory.master(via)) as host,
        host.forward(2379) as port,
        EtcdClient("127.0.0.1", port, TLSFiles(**tls)) as client,
    ):
        return question(client)


def voter_names(found: list[Member]) -> list[str]:
    assert not [m for m in found if m.is_learner], f"learners left: {found}"
    return sorted(m.name for m in found)


def assert_no_duplicate_peer_urls(found: list[Member]) -> None:
    urls = [u for m in found for u in m.peer_urls]
    assert len(urls) == len(set(urls)), f"a peer URL twice: {found}"


def pods(host: str) -> dict[str, Any]:
    return {k.split("/", 1)[1]: v for k, v in api.runner_status(host).get("pods", {}).items()}


def host_listing(host: str) -> str:
    proc = api.exec_in(host, ["sh", "-c", "find /etc/kubernetes /var/lib/etcd -mindepth 1 | sort"])
    return proc.stdout.decode()


def join_times(output: str) -> dict[str, float]:
    return {name: float(sec) for name, sec in JOIN_TIME.findall(output)}


# --- the tests, in order -------------------------------------------------------------------


def test_grow_from_three_to_five_through_init(work: dict[str, Path]) -> None:
    first = run(work, "init", "3")
    assert first.returncode == 0, first.stderr
    assert voter_names(members(work)) == ["m1", "m2", "m3"]
    before = {h: pods(h)["etcd"] for h in ("m1", "m2", "m3")}

    grown = run(work, "init", "5")
    assert grown.returncode == 0, grown.stderr
    times = join_times(grown.stderr)
    print(f"MEASURED join times (init, 3 -> 5): {times}")
    assert list(times) == ["m4", "m5"], "one at a time, in inventory order"
    assert "added as etcd learner" in grown.stderr
    found = members(work)
    assert voter_names(found) == ["m1", "m2", "m3", "m4", "m5"]
    assert_no_duplicate_peer_urls(found)
    # the existing members were not restarted: their manifests did not change
    for host, pod in before.items():
        after = pods(host)["etcd"]
        assert (after["configHash"], after["restartCount"], after.get("startedAt")) == (
            pod["configHash"],
            pod["restartCount"],
            pod.get("startedAt"),
        ), host
    # the joiners run --initial-cluster-state=existing with the members of their join
    m5 = api.read_host_file("m5", "/etc/kubernetes/manifests/etcd.yaml").decode()
    assert "--initial-cluster-state=existing" in m5
    assert "m5=https://" in m5 and "m4=https://" in m5
    m1 = api.read_host_file("m1", "/etc/kubernetes/manifests/etcd.yaml").decode()
    assert "--initial-cluster-state" not in m1  # a new cluster's member (etcd's default)

    check = run(work, "verify", "5")
    assert check.returncode == 0, check.stdout
    again = run(work, "init", "5")
    assert again.returncode == 0 and "init: 0 changed" in again.stdout


def test_join_killed_after_member_add_resumes_without_duplicate(work: dict[str, Path]) -> None:
    assert voter_names(members(work)) == ["m1", "m2", "m3", "m4", "m5"]
    removed = run(work, "remove-master", "5", "m5", "--wipe")
    assert removed.returncode == 0, removed.stderr
    assert voter_names(members(work)) == ["m1", "m2", "m3", "m4"]

    argv = [
        sys.executable,
        "-m",
        "bootstrap",
        "add-master",
        "m5",
        "--inventory",
        str(work["5"]),
        "--state-dir",
        str(work["state"]),
    ]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    seen = []
    killed = False
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            if "added as etcd learner" in line:
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
    finally:
        if proc.poll() is None and not killed:
            proc.kill()
        proc.wait(timeout=60)
        assert proc.stderr is not None
        proc.stderr.close()
    print("".join(seen))
    assert killed, "the join never reached the member add"
    assert proc.returncode == -signal.SIGKILL

    found = members(work)
    m5 = [m for m in found if m.peer_urls[0].endswith(".15:2380")]
    assert len(m5) == 1 and m5[0].is_learner, found  # added once, as a learner
    status = run(work, "status", "5")
    assert "m5 is an etcd learner" in status.stdout

    resumed = run(work, "add-master", "5", "m5")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    print(f"MEASURED join time (add-master, resumed): {join_times(resumed.stderr)}")
    found = members(work)
    assert voter_names(found) == ["m1", "m2", "m3", "m4", "m5"]
    assert_no_duplicate_peer_urls(found)
    assert [m.id for m in found if m.name == "m5"] == [m5[0].id], "the same member, promoted"


def test_remove_master_keeps_quorum_and_its_pods_go(work: dict[str, Path]) -> None:
    assert voter_names(members(work)) == ["m1", "m2", "m3", "m4", "m5"]
    removed = run(work, "remove-master", "5", "m4", "--wipe")
    assert removed.returncode == 0, removed.stderr
    assert "drop it from the inventory" in removed.stdout
    assert voter_names(members(work)) == ["m1", "m2", "m3", "m5"]
    assert pods("m4") == {}, "its static pods are gone"
    assert host_listing("m4").split() == ["/etc/kubernetes/manifests"], host_listing("m4")


def test_remove_refuses_when_quorum_would_be_lost(work: dict[str, Path]) -> None:
    """m2 and m3 cut off: removing m5 would leave m1, m2, m3 with only m1 answering."""
    assert voter_names(members(work)) == ["m1", "m2", "m3", "m5"]
    api.link_down("m2")
    api.link_down("m3")
    try:
        refused = run(work, "remove-master", "4", "m5")
    finally:
        api.link_up("m2")
        api.link_up("m3")
    assert refused.returncode == 1, refused.stderr
    assert "refusing to remove m5" in refused.stderr and "--force" in refused.stderr
    assert "quorum needs 2" in refused.stderr
    # nothing happened: m5 still a member, its pods still there
    assert pods("m5")["etcd"]["phase"] == "Running"
    assert "m5" in voter_names(members(work))
    # the cables are back: wait until every member knows the same leader again
    def leaders() -> set[int]:
        try:
            known = {leader(work, h) for h in ("m1", "m2", "m3", "m5")}
            # ...and raft commits again through every member (alarm list goes through raft)
            for h in ("m1", "m2", "m3", "m5"):
                ask(work, h, lambda c: c.alarms())
        except Exception:  # a member still reconnecting (its tunnel or etcd not back yet)
            return {-1}
        return known

    poll("a common leader after the partition", leaders,
         lambda known: len(known) == 1 and 0 not in known, 120)


def test_reset_one_master_cleans_the_host(work: dict[str, Path]) -> None:
    assert voter_names(members(work)) == ["m1", "m2", "m3", "m5"]
    no_tty = run(work, "reset", "5", "--master", "m5")
    assert no_tty.returncode == 2 and "--yes" in no_tty.stderr
    listing = host_listing("m5")
    dry = run(work, "reset", "5", "--master", "m5", "--dry-run")
    assert dry.returncode == 0 and "would remove etcd member m5" in dry.stderr
    assert host_listing("m5") == listing, "--dry-run touched nothing"
    assert "m5" in voter_names(members(work))

    done = run(work, "reset", "5", "--master", "m5", "--yes")
    assert done.returncode == 0, done.stderr
    assert voter_names(members(work)) == ["m1", "m2", "m3"]
    assert pods("m5") == {}
    assert host_listing("m5").split() == ["/etc/kubernetes/manifests"], host_listing("m5")


def test_stale_member_after_wiping_a_host_by_hand(work: dict[str, Path]) -> None:
    assert voter_names(members(work)) == ["m1", "m2", "m3"]
    wiped = api.exec_in(
        "m3",
        ["sh", "-c", "rm -f /etc/kubernetes/manifests/*.yaml; sleep 3; rm -rf /var/lib/etcd/*"],
    )
    assert wiped.returncode == 0, wiped.stderr
    # the operator drops m3 from the inventory; etcd still has it
    check = run(work, "verify", "2")
    assert check.returncode == 1
    stale = [m for m in members(work) if m.name == "m3"]
    assert len(stale) == 1
    assert f"member remove {stale[0].hex_id}" in check.stdout
    assert "stale member m3" in check.stdout
    status = run(work, "status", "2")
    assert f"member remove {stale[0].hex_id}" in status.stdout
    assert "bootstrap remove-master m3" in status.stdout
    # and init refuses to add anything while it is there (m3 back in the inventory: down)
    refused = run(work, "init", "3")
    assert refused.returncode == 1
    assert "m3 is etcd member" in refused.stderr and "is empty" in refused.stderr

    removed = run(work, "remove-master", "2", "m3")
    assert removed.returncode == 0, removed.stderr
    assert voter_names(members(work)) == ["m1", "m2"]
    assert run(work, "verify", "2").returncode == 0


def test_full_reset_cleans_every_host(work: dict[str, Path]) -> None:
    assert voter_names(members(work)) == ["m1", "m2"]
    done = run(work, "reset", "5", "--yes")
    assert done.returncode == 0, done.stderr
    assert "m2: removed etcd member m2" in done.stderr
    assert "m1: last etcd member m1" in done.stderr  # kubeadm's rule: the last is not removed
    for host in ("m1", "m2", "m3", "m4", "m5"):
        assert pods(host) == {}, host
        assert host_listing(host).split() == ["/etc/kubernetes/manifests"], host_listing(host)
    record = yaml.safe_load((work["state"] / "etcd-members.json").read_text())
    assert record["masters"] == {}
