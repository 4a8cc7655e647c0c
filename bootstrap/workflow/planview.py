"""`bootstrap plan`: per host, the files init would create or change, manifest diffs and
which static pods would restart. Read-only: it connects and reads, never writes."""

from __future__ import annotations

from bootstrap.inventory.model import MANIFESTS_DIR
from bootstrap.run.session import Session
from bootstrap.transport.push import FileChange, manifest_diff, summarize


def show_plan(session: Session) -> int:
    changed_hosts = 0
    for master in session.masters:
        changes = session.diff(master.name)
        pending = [c for c in changes if c.writes]
        session.console.out(f"== {master.name} ({master.address}): {summarize(changes)}")
        if pending:
            changed_hosts += 1
        for change in pending:
            note = ""
            if change.action == "mode" and change.remote is not None:
                note = f" (mode {oct(change.remote.mode)} -> {oct(change.spec.mode)})"
            secret = " [secret]" if change.spec.secret else ""
            session.console.out(f"  {change.action:<7} {change.spec.path}{secret}{note}")
        for change in pending:
            if change.is_manifest and change.action == "change":
                old = session.host(master.name).read_file(change.spec.path)
                session.console.out(manifest_diff(old, change.spec))
        restarts = _restarts(pending)
        if restarts:
            session.console.out("  static pods that would (re)start: " + ", ".join(restarts))
    if changed_hosts == 0:
        session.console.out("plan: 0 changed: every host matches the desired state")
    return 0


def _restarts(pending: list[FileChange]) -> list[str]:
    prefix = MANIFESTS_DIR + "/"
    return sorted(
        c.spec.path[len(prefix) :].removesuffix(".yaml")
        for c in pending
        if c.spec.path.startswith(prefix) and c.action in ("create", "change")
    )
