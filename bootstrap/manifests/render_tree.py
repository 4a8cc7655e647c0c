"""`bootstrap render`: write each master's desired tree under a local directory.

DIR/<master>/etc/kubernetes/... with the modes the files will have on the host, written
atomically (``bootstrap.local.atomic``) so a reader never sees half a file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from bootstrap.local import atomic
from bootstrap.manifests.plan import MasterPlan


def write_trees(plans: Mapping[str, MasterPlan], out: Path) -> int:
    count = 0
    for name, plan in sorted(plans.items()):
        root = out / name
        for spec in sorted(plan.tree.values(), key=lambda s: s.path):
            target = root / spec.path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_atomic(target, spec.content, spec.mode)
            count += 1
        manifests = root / "etc/kubernetes/manifests"
        if manifests.is_dir():
            os.chmod(manifests, 0o700)
    return count
