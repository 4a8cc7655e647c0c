"""Pure parts of membership (issue 8): quorum arithmetic, removal verdicts, where an
interrupted join stands, what blocks a join, the joiner's rendering, the record, and
reading a rendered etcd manifest back. No hosts, no etcd: values in, values out."""

from __future__ import annotations

import ipaddress
import json
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bootstrap.errors import StateError
from bootstrap.etcd.client import Member
from bootstrap.etcd.layout import layout_without_cluster as _layout_without_cluster
from bootstrap.etcd.membership import (
    cluster_from_manifest,
    fault_tolerance,
    format_initial_cluster,
    join_blockers,
    join_cluster,
    join_decision,
    load_record,
    new_cluster,
    quorum,
    record_path,
    removal_verdict,
    save_record,
    stale_member_lines,
    stale_members,
)
from bootstrap.etcd.view import ClusterView
from bootstrap.inventory.model import Master, SSHSettings
from bootstrap.manifests.components import EtcdCluster
from bootstrap.manifests.render import render_manifests
from tests.render_support import example_inventory, fake_mounted_files

SSH = SSHSettings()


def master(name: str, last_octet: int) -> Master:
    address = f"10.0.0.{last_octet}"
    return Master(name=name, address=ipaddress.ip_address(address), ssh=SSH, ssh_host=address)


CP = [master(f"cp{i}", 10 + i) for i in range(1, 6)]


def inventory(count: int = 3):  # type: ignore[no-untyped-def]
    return example_inventory(masters=tuple(CP[:count]))


def member(
    m: Master, member_id: int, *, learner: bool = False, started: bool = True
) -> Member:
    return Member(
        id=member_id,
        name=m.name if started else "",
        peer_urls=(m.peer_url,),
        client_urls=(m.client_url,) if started else (),
        is_learner=learner,
    )


def voters_of(count: int) -> list[Member]:
    return [member(CP[i], 100 + i) for i in range(count)]


# --- quorum arithmetic -------------------------------------------------------------------


def test_quorum_and_fault_tolerance() -> None:
    assert [quorum(n) for n in range(8)] == [0, 1, 2, 2, 3, 3, 4, 4]
    assert [fault_tolerance(n) for n in range(8)] == [0, 0, 0, 1, 1, 2, 2, 3]


@given(st.integers(min_value=1, max_value=99))
def test_quorum_is_a_strict_majority(n: int) -> None:
    q = quorum(n)
    assert 2 * q > n and 2 * (q - 1) <= n
    assert fault_tolerance(n) == n - q


# --- removal verdicts ----------------------------------------------------------------------


def test_removing_a_healthy_voter_of_three_is_allowed() -> None:
    members = voters_of(3)
    verdict = removal_verdict(members[2], members, {m.id for m in members})
    assert verdict.allowed, verdict
    assert "2 voters remain (2 answering), quorum 2" in verdict.summary


def test_removing_a_healthy_voter_when_another_is_down_is_refused() -> None:
    members = voters_of(3)
    healthy = {members[0].id, members[2].id}  # cp2 down
    verdict = removal_verdict(members[2], members, healthy)
    assert not verdict.allowed
    assert "only 1 of 2" in verdict.risk and "quorum needs 2" in verdict.risk
    assert "cp2" in verdict.risk


def test_removing_the_down_voter_is_allowed() -> None:
    members = voters_of(3)
    healthy = {members[0].id, members[2].id}
    assert removal_verdict(members[1], members, healthy).allowed


def test_five_voters_two_down_refuses_removing_a_healthy_one() -> None:
    members = voters_of(5)
    healthy = {m.id for m in members[:3]}
    assert not removal_verdict(members[0], members, healthy).allowed
    assert removal_verdict(members[4], members, healthy).allowed  # 4 left, 3 up, quorum 3


def test_last_member_is_refused_and_a_learner_always_allowed() -> None:
    only = voters_of(1)
    verdict = removal_verdict(only[0], only, {only[0].id})
    assert not verdict.allowed and "last member" in verdict.risk
    learner = member(CP[3], 999, learner=True, started=False)
    members = [*voters_of(3), learner]
    assert removal_verdict(learner, members, set()).allowed  # even with every voter "down"


@given(
    st.integers(min_value=1, max_value=7),
    st.data(),
)
def test_verdict_matches_majority_of_answering_remaining(n: int, data: st.DataObject) -> None:
    members = voters_of(min(n, 5)) + [
        Member(200 + i, f"x{i}", (f"https://10.9.0.{i}:2380",), (), False) for i in range(n - 5)
    ]
    healthy = set(data.draw(st.sets(st.sampled_from([m.id for m in members]))))
    target = data.draw(st.sampled_from(members))
    verdict = removal_verdict(target, members, healthy)
    remaining = [m for m in members if m.id != target.id]
    up = [m for m in remaining if m.id in healthy]
    assert verdict.allowed == (bool(remaining) and len(up) >= len(remaining) // 2 + 1)


# --- join decisions ---------------------------------------------------------------------------


def test_join_decision_follows_the_member_list() -> None:
    joiner = CP[3]
    base = voters_of(3)
    assert join_decision(joiner, base).action == "add"
    unstarted = member(joiner, 7, learner=True, started=False)
    assert join_decision(joiner, [*base, unstarted]).action == "start"
    running = member(joiner, 7, learner=True)
    assert join_decision(joiner, [*base, running]).action == "promote"
    voter = member(joiner, 7)
    decision = join_decision(joiner, [*base, voter])
    assert decision.action == "done" and decision.member == voter


def test_join_blockers_none_for_a_healthy_cluster() -> None:
    assert join_blockers(CP[3], inventory(5), voters_of(3), {}) == []


def test_join_blockers_down_member_other_learner_and_stale_member() -> None:
    inv = inventory(5)
    members = voters_of(3)
    reasons = join_blockers(CP[3], inv, members, {"cp2": "connection refused"})
    assert len(reasons) == 1 and "cp2" in reasons[0] and "connection refused" in reasons[0]

    other_learner = member(CP[4], 55, learner=True)
    reasons = join_blockers(CP[3], inv, [*members, other_learner], {})
    assert len(reasons) == 1 and "one learner at a time" in reasons[0]
    assert "add-master cp5" in reasons[0]
    # ... but the joiner's own learner (a resumed join) is no blocker
    own = member(CP[3], 44, learner=True, started=False)
    assert join_blockers(CP[3], inv, [*members, own], {}) == []

    stale = Member(0xABC, "old", ("https://10.0.0.99:2380",), (), False)
    reasons = join_blockers(CP[3], inv, [*members, stale], {})
    assert len(reasons) == 1 and "member remove abc" in reasons[0]


def test_stale_members_and_their_remove_command() -> None:
    inv = inventory(3)
    stale = Member(0xBEEF, "gone", ("https://10.0.0.99:2380",), (), False)
    members = [*voters_of(3), stale]
    assert stale_members(inv, members) == [stale]
    (line,) = stale_member_lines(inv, members)
    assert "bootstrap remove-master gone" in line
    assert line.endswith("member remove beef`")
    assert "--cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt" in line


# --- the joiner's rendering ---------------------------------------------------------------


def test_join_cluster_lists_every_member_and_itself_in_inventory_order() -> None:
    inv = inventory(5)
    members = [voters_of(3)[2], voters_of(3)[0], voters_of(3)[1]]  # etcd's order is arbitrary
    joiner = CP[3]
    added = member(joiner, 9, learner=True, started=False)  # no name yet
    cluster = join_cluster(joiner, [*members, added], inv)
    assert cluster.state == "existing"
    assert cluster.initial_cluster == tuple((m.name, m.peer_url) for m in CP[:4])
    # idempotent: with or without its own member in the list
    assert join_cluster(joiner, members, inv) == cluster


def test_new_cluster_is_every_master() -> None:
    c = new_cluster(CP[:3])
    assert c.state == "new" and [n for n, _ in c.initial_cluster] == ["cp1", "cp2", "cp3"]


# --- the record ----------------------------------------------------------------------------


def test_record_round_trip_is_0600_and_atomic(tmp_path: Path) -> None:
    assert load_record(tmp_path) == {}
    record = {
        "cp1": new_cluster(CP[:3]),
        "cp4": join_cluster(CP[3], voters_of(3), inventory(4)),
    }
    save_record(tmp_path, record)
    assert load_record(tmp_path) == record
    path = record_path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left
    doc = json.loads(path.read_text())
    assert doc["masters"]["cp4"]["initialCluster"] == format_initial_cluster(
        record["cp4"].initial_cluster
    )


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        '{"masters": {"cp1": {"state": "weird", "initialCluster": "cp1=https://x:2380"}}}',
        '{"masters": {"cp1": {"state": "new", "initialCluster": "cp1"}}}',
        '{"nothing": 1}',
    ],
)
def test_a_damaged_record_is_a_state_error(tmp_path: Path, text: str) -> None:
    record_path(tmp_path).write_text(text)
    with pytest.raises(StateError) as info:
        load_record(tmp_path)
    assert info.value.hint and "remove it" in info.value.hint


def test_layout_without_a_live_cluster() -> None:
    inv = inventory(5)
    # never initialised: everybody new, with every master
    layout = _layout_without_cluster(inv, {}, None)
    assert layout.joiners == []
    assert all(c == new_cluster(CP[:5]) for c in layout.clusters.values())
    # initialised with three (record), cluster not answering: the two others must join
    record = {m.name: new_cluster(CP[:3]) for m in CP[:3]}
    layout = _layout_without_cluster(inv, record, None)
    assert layout.joiners == ["cp4", "cp5"]
    assert layout.clusters["cp1"] == new_cluster(CP[:3])
    assert layout.clusters["cp4"].state == "existing"


def test_a_record_naming_other_peer_urls_is_dropped_when_no_member_answers() -> None:
    # The state dir of a cluster whose hosts were re-created with other addresses (seen:
    # two lab instances sharing a state dir): its --initial-cluster names peer URLs these
    # masters do not have, so etcd would refuse to start. With no member answering, the
    # masters start as a new cluster from the inventory, and the run says why.
    inv = inventory(3)
    moved = [master(m.name, 100 + i) for i, m in enumerate(CP[:3])]
    record = {m.name: new_cluster(moved) for m in moved}
    layout = _layout_without_cluster(inv, record, ClusterView(members=None, source=None))
    assert layout.joiners == []
    assert all(c == new_cluster(CP[:3]) for c in layout.clusters.values())
    assert any("other peer URLs for cp1, cp2, cp3" in note for note in layout.notes)
    # Offline (plan, render: no probe made) the record is shown as it is.
    kept = _layout_without_cluster(inv, record, None)
    assert kept.clusters["cp1"] == new_cluster(moved) and not kept.notes
    # A record that matches the inventory is kept when the cluster is merely down.
    same = {m.name: new_cluster(CP[:3]) for m in CP[:3]}
    down = _layout_without_cluster(inv, same, ClusterView(members=None, source=None))
    assert down.clusters == same and not down.notes


# --- reading a rendered manifest back --------------------------------------------------------


@pytest.mark.parametrize("state", ["new", "existing"])
def test_cluster_read_back_from_a_real_rendered_manifest(state: str) -> None:
    inv = inventory(4)
    wanted = EtcdCluster(
        initial_cluster=tuple((m.name, m.peer_url) for m in CP[:4]),
        state=state,  # type: ignore[arg-type]
    )
    target = CP[3]
    files = fake_mounted_files(inv, target)
    rendered = render_manifests(inv, target, files, wanted)
    text = rendered["/etc/kubernetes/manifests/etcd.yaml"].content
    assert cluster_from_manifest(text) == wanted


def test_cluster_from_an_unreadable_manifest_is_none() -> None:
    assert cluster_from_manifest(b"{{{") is None
    assert cluster_from_manifest(b"spec: {containers: [{command: [etcd]}]}") is None
