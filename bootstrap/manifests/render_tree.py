"""`bootstrap render`: write each master's desired tree under a local directory.

DIR/<master>/etc/kubernetes/... with the modes the files will have on the host, written
atomically (temp file + rename) so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

from bootstrap.local.files import naming
from bootstrap.manifests.plan import MasterPlan


def write_trees(plans: Mapping[str, MasterPlan], out: Path) -> int:
    count = 0
    for name, plan in sorted(plans.items()):
        root = out / name
        for spec in sorted(plan.tree.values(), key=lambda s: s.path):
            target = root / spec.path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, spec.mode)
                with naming(target), os.fdopen(fd, "wb") as fh:
                    fh.write(spec.content)
                os.chmod(tmp, spec.mode)  # the umask must not weaken or widen the mode
                os.replace(tmp, target)
            except BaseException:  # a full disk: no half-written temp file stays behind
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
            count += 1
        manifests = root / "etc/kubernetes/manifests"
        if manifests.is_dir():
            os.chmod(manifests, 0o700)
    return count
