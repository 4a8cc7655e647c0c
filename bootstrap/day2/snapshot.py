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
from bootstrap.inventory.model import ETCD_CLIENT_PORT, ETCD_DATA_DIR
from bootstrap.local.files import naming
from bootstrap.pki.store import ensure_dir
from bootstrap.run.session import Session

if TYPE_CHECKING:
    from bootstrap.etcd.client import SnapshotInfo

DEFAULT_KEEP = 5
_NAME = re.compile(r"^etcd-.+-\d{8}T\d{6}Z[-a-z0-9]*\.db$")
DB_COPY_SUFFIX = "-db-copy"  # a raw copy of a member's bbolt file, not a snapshot


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
    from bootstrap.health.waits import etcd_statuses

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
    from bootstrap.etcd.client import EtcdClient
    from bootstrap.health.waits import etcd_tls
    from bootstrap.run.etcdview import member_label

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
            with EtcdClient(
                "127.0.0.1", port, etcd_tls(session, name), timeout=10,
                label=member_label(session, name),
            ) as client, naming(target):  # a full disk names the file, not only ENOSPC
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


def copy_member_db(session: Session, *, keep: int = DEFAULT_KEEP, phase: str = "snapshot") -> Path:
    """The fallback when no member can serve a snapshot (e.g. every etcd certificate has
    expired, so there is no quorum and nothing is being written): copy the first readable
    member's ``member/snap/db`` to the state dir, checked as a bbolt database with an etcd
    "key" bucket. It has no embedded hash: restore with ``etcdutl snapshot restore
    --skip-hash-check``. Raises OperationError when no master has a readable db."""
    from bootstrap.errors import BootstrapError
    from bootstrap.etcd.client import bolt_max_revision

    directory = snapshot_dir(session.state_dir)
    ensure_dir(directory)
    name = snapshot_name(session.inventory.cluster_name).replace(".db", DB_COPY_SUFFIX + ".db")
    target = _free_path(directory, name)
    errors: list[str] = []
    for master in session.masters:
        remote = f"{ETCD_DATA_DIR}/member/snap/db"
        try:
            data = session.host(master.name).read_file(remote)
        except BootstrapError as exc:
            errors.append(f"{master.name}: {exc.message.splitlines()[0]}")
            continue
        tmp = directory / f".{target.name}.partial.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with naming(target), os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:  # a full disk: no partial copy of the database stays
            tmp.unlink(missing_ok=True)
            raise
        try:
            revision = bolt_max_revision(tmp)
        except ValueError as exc:
            tmp.unlink(missing_ok=True)
            errors.append(f"{master.name}: {remote} is not a readable etcd database ({exc})")
            continue
        os.replace(tmp, target)
        session.console.event(
            phase,
            f"copied {remote} to {target}: {len(data)} bytes, revision {revision} "
            "(a raw copy: restore with `etcdutl snapshot restore --skip-hash-check`)",
            master.name,
        )
        for old in prune(directory, keep):
            session.console.event(phase, f"pruned {old.name} (keeping the newest {keep})")
        return target
    raise OperationError(
        "no master has a readable etcd database to copy: " + "; ".join(errors),
        hint="check /var/lib/etcd on the masters",
    )
