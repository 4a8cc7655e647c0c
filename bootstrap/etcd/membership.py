"""etcd membership, the pure part: how each master's etcd was rendered, quorum arithmetic,
and the decisions of a join, a removal and a reset.

A master's etcd manifest must stay byte-stable across re-runs: a changed
``--initial-cluster`` restarts the member for nothing. The first init renders every
master with state ``new`` and the whole member list; a master that joined later has state
``existing`` and the member list of its join. We persist that per master in the state
directory (``etcd-members.json``, 0600, written atomically) and render from it.

Everything here is a function of values; ``bootstrap.workflow.join`` and
``bootstrap.day2.reset`` do the talking to hosts and etcd.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from bootstrap.errors import StateError, plural
from bootstrap.etcd.client import Member
from bootstrap.inventory.model import MANIFESTS_DIR, Inventory, Master
from bootstrap.local import atomic
from bootstrap.manifests.components import EtcdCluster

RECORD_FILE = "etcd-members.json"
RECORD_VERSION = 1

# The etcdctl line an operator can paste on a master (kubeadm paths, healthcheck cert).
ETCDCTL = (
    "etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt "
    "--cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt "
    "--key=/etc/kubernetes/pki/etcd/healthcheck-client.key"
)

ETCD_MANIFEST = f"{MANIFESTS_DIR}/etcd.yaml"  # a member's own manifest, read back


# --- the record: how each master's etcd was rendered ------------------------------------


def record_path(state_dir: Path) -> Path:
    return Path(state_dir) / RECORD_FILE


def load_record(state_dir: Path) -> dict[str, EtcdCluster]:
    """name -> EtcdCluster; {} when there is no record yet."""
    path = record_path(state_dir)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc.strerror}") from None
    try:
        doc = json.loads(text)
        masters = doc["masters"]
        out: dict[str, EtcdCluster] = {}
        for name, entry in masters.items():
            state = entry["state"]
            if state not in ("new", "existing"):
                raise ValueError(f"state {state!r}")
            pairs = _parse_initial_cluster(str(entry["initialCluster"]))
            if pairs is None:
                raise ValueError(f"initialCluster of {name}")
            out[str(name)] = EtcdCluster(initial_cluster=pairs, state=state)
        return out
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StateError(
            f"{path} is not a valid etcd membership record: {exc}",
            hint="it records how each master's etcd manifest was rendered; remove it and "
            "re-run `bootstrap init` (the rendering is then read back from the hosts)",
        ) from None


def save_record(state_dir: Path, record: Mapping[str, EtcdCluster]) -> None:
    """Atomic, 0600 (it is small, but the state dir holds keys: same rules)."""
    path = record_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    doc = {
        "version": RECORD_VERSION,
        "masters": {
            name: {
                "state": c.state,
                # The flag's own text: what `grep initial-cluster etcd.yaml` shows.
                "initialCluster": format_initial_cluster(c.initial_cluster),
            }
            for name, c in sorted(record.items())
        },
    }
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    atomic.write_atomic(path, text.encode(), 0o600)


def new_cluster(masters: Sequence[Master]) -> EtcdCluster:
    return EtcdCluster(initial_cluster=tuple((m.name, m.peer_url) for m in masters), state="new")


def join_cluster(joiner: Master, members: Sequence[Member], inventory: Inventory) -> EtcdCluster:
    """The joiner's rendering: every member (name + peer URL) including itself, existing.

    Members that never started have no name; the only one allowed at a join is the joiner
    itself (one learner at a time), which gets its inventory name. Order: the inventory's,
    then members the inventory does not know (by name), so the file is deterministic.
    """
    pairs: dict[str, str] = {}
    for m in members:
        if joiner.peer_url in m.peer_urls:
            continue
        if not m.peer_urls:
            continue
        pairs[m.name or m.hex_id] = m.peer_urls[0]
    pairs[joiner.name] = joiner.peer_url
    order = {m.name: i for i, m in enumerate(inventory.masters)}
    ordered = sorted(pairs.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))
    return EtcdCluster(initial_cluster=tuple(ordered), state="existing")


def cluster_from_manifest(text: bytes) -> EtcdCluster | None:
    """Read --initial-cluster / --initial-cluster-state back from an etcd.yaml on a host.

    Used for a member the record does not know (state dir from before the record existed,
    or lost): re-rendering exactly what runs avoids a restart. None when unreadable.
    """
    try:
        doc = yaml.safe_load(text)
        container = doc["spec"]["containers"][0]
        args = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
    except (yaml.YAMLError, KeyError, IndexError, TypeError, AttributeError):
        return None
    flags: dict[str, str] = {}
    for arg in args:
        if arg.startswith("--") and "=" in arg:
            key, _, value = arg[2:].partition("=")
            flags[key] = value
    pairs = _parse_initial_cluster(flags.get("initial-cluster", ""))
    if pairs is None:
        return None
    state = flags.get("initial-cluster-state", "new")
    if state not in ("new", "existing"):
        return None
    return EtcdCluster(initial_cluster=pairs, state="new" if state == "new" else "existing")


def format_initial_cluster(pairs: Sequence[tuple[str, str]]) -> str:
    return ",".join(f"{name}={url}" for name, url in pairs)


def _parse_initial_cluster(raw: str) -> tuple[tuple[str, str], ...] | None:
    pairs: list[tuple[str, str]] = []
    for item in raw.split(","):
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            return None
        pairs.append((name, url))
    return tuple(pairs) or None


# --- membership facts ----------------------------------------------------------------------


def member_of(master: Master, members: Iterable[Member]) -> Member | None:
    """The member with this master's peer URL (the identity etcd checks on add)."""
    for m in members:
        if master.peer_url in m.peer_urls:
            return m
    return None


def voters(members: Iterable[Member]) -> list[Member]:
    return [m for m in members if not m.is_learner]


def quorum(voter_count: int) -> int:
    """Raft majority of this many voters (0 voters: 0)."""
    return voter_count // 2 + 1 if voter_count > 0 else 0


def fault_tolerance(voter_count: int) -> int:
    """How many voters may fail before writes stop."""
    return max(0, voter_count - quorum(voter_count))


def stale_members(inventory: Inventory, members: Iterable[Member]) -> list[Member]:
    """Members whose peer URL belongs to no inventory master (a lost or removed host)."""
    urls = {m.peer_url for m in inventory.masters}
    return [m for m in members if not set(m.peer_urls) & urls]


def remove_command(member: Member) -> str:
    return f"{ETCDCTL} member remove {member.hex_id}"


def stale_member_lines(inventory: Inventory, members: Iterable[Member]) -> list[str]:
    """One line per stale member with the exact command that removes it."""
    lines = []
    for m in stale_members(inventory, members):
        label = m.name or "(never started)"
        role = "learner" if m.is_learner else "voter"
        how = f"`bootstrap remove-master {m.name}` or " if m.name else ""
        lines.append(
            f"stale etcd member {label} {m.hex_id} ({', '.join(m.peer_urls)}, {role}) is not "
            f"in the inventory: remove it with {how}on a master `{remove_command(m)}`"
        )
    return lines


# --- join decisions -------------------------------------------------------------------------

JoinAction = Literal["add", "start", "promote", "done"]


@dataclass(frozen=True)
class JoinDecision:
    action: JoinAction  # what the next step is; every later step follows
    member: Member | None  # the joiner's member when it is already in the cluster
    reason: str


def join_decision(joiner: Master, members: Sequence[Member]) -> JoinDecision:
    """Where a (possibly interrupted) join of ``joiner`` stands, from the member list alone.

    - no member with its peer URL: add it as a learner;
    - a learner that never started (no name yet): push its manifest, wait, promote;
    - a started learner: promote (the push is a no-op when the manifest is in place);
    - a voter: its etcd joined; only the control plane may be missing.
    """
    m = member_of(joiner, members)
    if m is None:
        return JoinDecision("add", None, f"{joiner.name} is not a member yet: add it as a learner")
    if m.is_learner and not m.started:
        return JoinDecision(
            "start", m, f"{joiner.name} was added as learner {m.hex_id} but never started"
        )
    if m.is_learner:
        return JoinDecision(
            "promote", m, f"{joiner.name} runs as learner {m.hex_id}: promote when caught up"
        )
    if not m.started:
        return JoinDecision(
            "start", m, f"{joiner.name} is voter {m.hex_id} but its etcd never started"
        )
    return JoinDecision("done", m, f"{joiner.name} is already voter {m.hex_id}")


def join_blockers(
    joiner: Master, inventory: Inventory, members: Sequence[Member], down: Mapping[str, str]
) -> list[str]:
    """Reasons not to touch membership now (empty: go). ``down``: inventory master -> why
    its member does not answer. Each reason says what to do."""
    reasons: list[str] = []
    ours = member_of(joiner, members)
    for name, why in sorted(down.items()):
        if name == joiner.name:
            continue
        reasons.append(f"member {name} does not answer ({why}): fix it, or remove it first")
    for m in stale_members(inventory, members):
        reasons.append(
            f"stale member {m.name or '(never started)'} {m.hex_id} ({', '.join(m.peer_urls)}) "
            f"is not in the inventory; its health cannot be checked: remove it first "
            f"(`{remove_command(m)}`)"
        )
    for m in members:
        if m is ours or not set(m.peer_urls).isdisjoint({joiner.peer_url}):
            continue
        if m in stale_members(inventory, members):
            continue
        if m.is_learner:
            reasons.append(
                f"another learner is in the cluster ({m.name or '(never started)'} {m.hex_id}); "
                "etcd allows one learner at a time: finish that join first "
                f"(`bootstrap add-master {m.name or 'NAME'}`) or remove it "
                f"(`{remove_command(m)}`)"
            )
        elif not m.started:
            reasons.append(
                f"member {m.hex_id} ({', '.join(m.peer_urls)}) was added but never started; "
                "start that master's etcd (`bootstrap add-master NAME`) or remove it"
            )
    return reasons


# --- removal decisions --------------------------------------------------------------------


@dataclass(frozen=True)
class RemovalVerdict:
    allowed: bool  # without --force
    summary: str  # what the cluster looks like afterwards
    risk: str  # why it is refused (empty when allowed)


def removal_verdict(target: Member, members: Sequence[Member], healthy: set[int]) -> RemovalVerdict:
    """May ``target`` be removed? ``healthy``: ids of members that answered just now.

    A learner never counts for quorum: always allowed. A voter: refused when it is the
    last member, or when the voters left that answer are fewer than the quorum of the
    voters left (the cluster would stop accepting writes, or it already has and the
    removal itself could not be committed).
    """
    all_voters = voters(members)
    if target.is_learner:
        return RemovalVerdict(
            True,
            f"{plural(len(all_voters), 'voter')} {'stays' if len(all_voters) == 1 else 'stay'} "
            "(removing a learner does not change quorum)",
            "",
        )
    remaining = [m for m in all_voters if m.id != target.id]
    if not remaining:
        return RemovalVerdict(
            False,
            "no member would remain",
            f"{target.name or target.hex_id} is the last member: removing it destroys the "
            "cluster's data for good (use `bootstrap reset` to tear a cluster down)",
        )
    need = quorum(len(remaining))
    up = [m for m in remaining if m.id in healthy]
    summary = (
        f"{plural(len(remaining), 'voter')} {'remains' if len(remaining) == 1 else 'remain'} "
        f"({len(up)} answering), quorum {need}, "
        f"fault tolerance {fault_tolerance(len(remaining))}"
    )
    if len(up) < need:
        down = [m.name or m.hex_id for m in remaining if m.id not in healthy]
        return RemovalVerdict(
            False,
            summary,
            f"after removing {target.name or target.hex_id} only {len(up)} of {len(remaining)} "
            f"voters answer but quorum needs {need} (down: {', '.join(down)}): the cluster "
            "would stop accepting writes (etcd itself may refuse the change); bring the "
            "down members back first",
        )
    return RemovalVerdict(True, summary, "")


def reset_order(masters: Sequence[Master]) -> list[Master]:
    """Last inventory master first: the first master (super-admin.conf) goes last."""
    return list(reversed(masters))
