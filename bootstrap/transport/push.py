"""Compare a host's files with the desired ones and write only what differs.

Writes are atomic (the transport stages and renames), manifests are backed up before
they are replaced (under /etc/kubernetes/tmp, never inside manifests/), and support files
(certs, kubeconfigs) are written before the manifests that mount them so a pod never
starts against a half-updated PKI.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from bootstrap.inventory.model import KUBERNETES_DIR, MANIFESTS_DIR
from bootstrap.model import FileSpec, RemoteFile, RemoteHost

Action = Literal["create", "change", "mode", "unchanged"]
BACKUP_ROOT = f"{KUBERNETES_DIR}/tmp"


@dataclass(frozen=True)
class FileChange:
    spec: FileSpec
    action: Action
    remote: RemoteFile | None

    @property
    def is_manifest(self) -> bool:
        return self.spec.path.startswith(MANIFESTS_DIR + "/")

    @property
    def writes(self) -> bool:
        return self.action != "unchanged"


def diff_host(host: RemoteHost, tree: Mapping[str, FileSpec]) -> list[FileChange]:
    """One round trip: the host's sha256 and mode for every desired path."""
    remote = host.stat_files(sorted(tree))
    return [classify(tree[path], remote.get(path)) for path in sorted(tree)]


def classify(spec: FileSpec, remote: RemoteFile | None) -> FileChange:
    if remote is None:
        return FileChange(spec, "create", None)
    if remote.sha256 != spec.sha256:
        return FileChange(spec, "change", remote)
    if remote.mode != spec.mode:
        return FileChange(spec, "mode", remote)
    return FileChange(spec, "unchanged", remote)


def backup_dir_name(now: float | None = None) -> str:
    stamp = time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime(now if now is not None else time.time()))
    return f"{BACKUP_ROOT}/bootstrap-backup-{stamp}"


def apply_changes(
    host: RemoteHost,
    changes: Iterable[FileChange],
    *,
    backup_dir: str | None = None,
    manifests_dir: str = MANIFESTS_DIR,
) -> list[FileChange]:
    """Write every change; support files first, then manifests. Returns what was written.

    A manifest that is replaced is first copied to ``backup_dir`` (never inside the
    manifests dir: the kubelet would run the copy as a second pod).
    """
    pending = [c for c in changes if c.writes]

    def is_manifest(change: FileChange) -> bool:
        return change.spec.path.startswith(manifests_dir.rstrip("/") + "/")

    ordered = sorted(pending, key=lambda c: (is_manifest(c), c.spec.path))
    replaced_manifests = [c.spec.path for c in ordered if is_manifest(c) and c.remote is not None]
    if replaced_manifests:
        host.backup_files(replaced_manifests, backup_dir or backup_dir_name())
    for change in ordered:
        host.write_file_atomic(change.spec)
    return ordered


def summarize(changes: Sequence[FileChange]) -> str:
    counts = {a: 0 for a in ("create", "change", "mode", "unchanged")}
    for c in changes:
        counts[c.action] += 1
    changed = counts["create"] + counts["change"] + counts["mode"]
    words = {"create": "created", "change": "modified", "mode": "mode fixed"}
    parts = [f"{counts[a]} {w}" for a, w in words.items() if counts[a]]
    detail = f" ({', '.join(parts)})" if parts else ""
    return f"{changed} changed{detail}, {counts['unchanged']} unchanged"


def manifest_diff(old: bytes | None, new: FileSpec) -> str:
    """Unified diff of a manifest; never called for secret files."""
    if new.secret:
        return f"  {new.path}: (secret, content not shown)"
    old_lines = old.decode("utf-8", "replace").splitlines(keepends=True) if old else []
    new_lines = new.content.decode("utf-8", "replace").splitlines(keepends=True)
    return "".join(
        difflib.unified_diff(
            old_lines, new_lines, fromfile=f"{new.path} (host)", tofile=f"{new.path} (new)"
        )
    )
