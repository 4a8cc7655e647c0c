"""The host-wide kernel settings the real kubelet insists on, owned by the lab.

The kubelet's container manager wants these values (pkg/kubelet/cm, setupKernelTunables).
With ``protectKernelDefaults: false`` it silently rewrites them for the whole machine
(sysctls are not per network namespace); with ``true`` (the lab's kubelet config) it
refuses to start unless they already match. So a kubelet-mode lab sets them itself, on
purpose, and puts the machine's own values back at ``lab down``.

Several lab instances may run the real kubelet at once and share the one machine: a
small ledger in the root namespace's /run (``bslab-kubelet-sysctls.json``, under a lock)
keeps the machine's original values and which instances hold them; the last instance to
go down restores them. A ledger whose holders are all gone (crashed labs) is restored by
the next ``up`` or ``down`` that looks.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from lab.config import LabError

KUBELET_VALUES = {
    "vm.overcommit_memory": "1",
    "vm.panic_on_oom": "0",
    "kernel.panic": "10",
    "kernel.panic_on_oops": "1",
    "kernel.keys.root_maxkeys": "1000000",
    "kernel.keys.root_maxbytes": "25000000",
}
LEDGER = Path("/run/bslab-kubelet-sysctls.json")
LEDGER_LOCK = Path("/run/lock/bslab-kubelet-sysctls.lock")  # a lock file, as in /run/lock


def _proc_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read(name: str) -> str:
    return _proc_path(name).read_text().strip()


def _write(name: str, value: str) -> None:
    try:
        _proc_path(name).write_text(value + "\n")
    except OSError as exc:
        raise LabError(f"cannot set {name}={value}: {exc.strerror}") from exc


@contextlib.contextmanager
def _locked() -> Iterator[dict[str, object]]:
    with open(LEDGER_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            ledger = json.loads(LEDGER.read_text()) if LEDGER.exists() else {}
        except (OSError, ValueError):
            ledger = {}
        yield ledger
        if ledger.get("holders"):
            tmp = LEDGER.with_name(LEDGER.name + ".tmp")
            tmp.write_text(json.dumps(ledger, indent=1, sort_keys=True))
            os.replace(tmp, LEDGER)
        else:
            LEDGER.unlink(missing_ok=True)


def _alive_holders(ledger: dict[str, object], alive: Callable[[str], bool]) -> list[str]:
    holders = ledger.get("holders")
    if not isinstance(holders, list):
        return []
    return [h for h in holders if isinstance(h, str) and alive(h)]


def acquire(instance: str, alive: Callable[[str], bool], log: Callable[[str], None]) -> None:
    """Set the kubelet's values for ``instance``; the first holder records the originals."""
    with _locked() as ledger:
        holders = _alive_holders(ledger, alive)
        if not holders:
            original = ledger.get("original") if ledger.get("holders") else None
            if isinstance(original, dict):  # crashed holders: their originals still count
                ledger["original"] = original
            else:
                ledger["original"] = {name: read(name) for name in KUBELET_VALUES}
        ledger["holders"] = sorted({*holders, instance})
        changes = [
            f"{name} {read(name)} -> {value}"
            for name, value in KUBELET_VALUES.items()
            if read(name) != value
        ]
        for name, value in KUBELET_VALUES.items():
            if read(name) != value:
                _write(name, value)
        if changes:
            log("host-wide sysctls for the kubelet (restored at lab down): " + ", ".join(changes))


def release(instance: str, alive: Callable[[str], bool]) -> dict[str, str]:
    """Drop ``instance``; the last holder restores the originals. Returns what was restored."""
    with _locked() as ledger:
        if not ledger:
            return {}
        holders = [h for h in _alive_holders(ledger, alive) if h != instance]
        ledger["holders"] = holders
        original = ledger.get("original")
        if holders or not isinstance(original, dict):
            return {}
        for name, value in original.items():
            if read(name) != value:
                _write(name, value)
        return dict(original)


def leftovers(instance: str) -> list[str]:
    """After release: this instance no longer holds the settings, and if nobody does,
    the machine has its own values back."""
    if not LEDGER.exists():
        return []
    try:
        ledger = json.loads(LEDGER.read_text())
    except (OSError, ValueError):
        return [f"unreadable {LEDGER}"]
    if instance in (ledger.get("holders") or []):
        return [f"sysctl ledger {LEDGER} still lists this lab"]
    return []
