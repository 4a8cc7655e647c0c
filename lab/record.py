"""lab/.state/lab.json: everything `up` made, written as it goes.

`down` undoes the lab from this record (plus discovery by name), so a crash halfway
through `up` still leaves enough behind to clean up.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from typing import Any

from lab.config import LOCK, RECORD, STATE, LabError


def load() -> dict[str, Any] | None:
    try:
        data = json.loads(RECORD.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LabError(
            f"cannot read {RECORD}: {exc}", hint="python -m lab down still works"
        ) from exc
    return data if isinstance(data, dict) else None


def save(data: dict[str, Any]) -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    tmp = RECORD.with_name(".lab.json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, RECORD)


def remove() -> None:
    with contextlib.suppress(FileNotFoundError):
        RECORD.unlink()


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """One `up`/`down` at a time (flock on lab/.state/lock)."""
    STATE.mkdir(parents=True, exist_ok=True)
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise LabError(
                "another `python -m lab up/down` is running", hint=f"lock: {LOCK}"
            ) from exc
        yield
    finally:
        os.close(fd)
