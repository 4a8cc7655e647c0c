"""`bootstrap etcd snapshot`: a checked etcd snapshot on the operator's machine.

The snapshot streams from a healthy member through its SSH tunnel (EtcdClient.snapshot
checks etcd's embedded sha256 and reads the revision from the file itself). Snapshots
kept in ``<state>/snapshots/`` (dir 0700, files 0600: they hold every Secret) are pruned
to the newest ``keep``. ``certs renew`` and ``upgrade`` take one before touching a host.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bootstrap.errors import EtcdError, OperationError
from bootstrap.inventory.model import ETCD_CLIENT_PORT
from bootstrap.pki.store import ensure_dir
from bootstrap.session import Session

if TYPE_CHECKING:
    from bootstrap.etcd import SnapshotInfo

DEFAULT_KEEP = 5
_NAME = re.compile(r"^etcd-.+-\d{8}T\d{6}Z(-\d+)?\.db$")


def snapshot_dir(state_dir: Path) -> Path:
    return state_dir / "snapshots"


def snapshot_name(cluster: str, now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now if now is not None else time.time()))
    return f"etcd-{cluster}-{stamp}.db"


def kept_snapshots(directory: Path) -> list[Path]:
    """Our snapshots in the directory, oldest first (by mtime, then name: two taken in
    the same second get a "-N" suffix, which sorts before the plain name)."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if _NAME.match(p.name) and p.is_file()]
    return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name))


def prune(directory: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` snapshots; returns what was deleted."""
    existing = kept_snapshots(directory)
    doomed = existing[: max(0, len(existing) - keep)]
    for path in doomed:
        path.unlink()
    return doomed


def _free_path(directory: Path, name: str) -> Path:
    path = directory / name
    n = 1
    while path.exists():
        path = directory / name.replace(".db", f"-{n}.db")
        n += 1
    return path


def healthy_members(session: Session) -> list[str]:
    """Masters whose member answers and knows a leader, first master first."""
    from bootstrap.checks import etcd_statuses

    statuses = etcd_statuses(session)
    return [
        m.name
        for m in session.masters
        if not isinstance(s := statuses[m.name], str) and s.leader_id != 0 and not s.is_learner
    ]


def take_snapshot(
    session: Session, *, out: Path | None = None, keep: int = DEFAULT_KEEP, phase: str = "snapshot"
) -> SnapshotInfo:
    """Stream a snapshot from the first healthy member to ``out`` (default: the state
    dir's snapshots/, pruned to ``keep``). Raises OperationError when no member can serve."""
    from bootstrap.checks import etcd_tls
    from bootstrap.etcd import EtcdClient

    members = healthy_members(session)
    if not members:
        raise OperationError(
            "etcd snapshot: no member answers with a leader",
            hint="run `bootstrap verify`/`bootstrap status` to see why etcd is down",
        )
    if out is None:
        directory = snapshot_dir(session.state_dir)
        ensure_dir(directory)
        target = _free_path(directory, snapshot_name(session.inventory.cluster_name))
    else:
        target = out
    errors: list[str] = []
    for name in members:
        port = session.tunnel(name, ETCD_CLIENT_PORT)
        session.console.event(phase, f"streaming an etcd snapshot to {target}", name)
        try:
            with EtcdClient("127.0.0.1", port, etcd_tls(session, name), timeout=10) as client:
                info = client.snapshot(target)
        except EtcdError as exc:
            errors.append(f"{name}: {exc.message.splitlines()[0]}")
            continue
        os.chmod(target, 0o600)
        checked = "etcd's embedded sha256 verified" if info.hash_verified else "no embedded hash"
        session.console.event(
            phase,
            f"{target}: {info.size} bytes, sha256 {info.sha256}, revision {info.revision} "
            f"({checked})",
            name,
        )
        if out is None:
            for old in prune(target.parent, keep):
                session.console.event(phase, f"pruned {old.name} (keeping the newest {keep})")
        return info
    raise OperationError(
        "etcd snapshot failed on every healthy member: " + "; ".join(errors),
        hint="check the members' logs; nothing was changed on the hosts",
    )
