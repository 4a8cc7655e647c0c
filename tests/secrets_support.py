"""The secret scanner the security tests share: key material that must never be printed."""

from __future__ import annotations

import base64
import re
from pathlib import Path

PEM_MARKERS = ("PRIVATE KEY", "BEGIN EC", "BEGIN RSA", "BEGIN OPENSSH")


def secrets_of(state: Path) -> list[str]:
    """Strings that must never appear in output: every 64-char base64 line of every PEM
    private key in the state dir, the same keys base64-encoded whole (how kubeconfigs embed
    them), and the encryption-at-rest key."""
    needles: list[str] = []
    for path in state.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"PRIVATE KEY" in data:
            body = [ln for ln in data.decode().splitlines() if ln and not ln.startswith("-----")]
            needles += [ln for ln in body if len(ln) >= 40]
            needles.append(base64.b64encode(data).decode()[:60])
        elif path.name.endswith(".conf") and b"client-key-data" in data:
            found = re.search(rb"client-key-data: (\S+)", data)
            assert found is not None
            needles.append(found.group(1).decode()[:60])
        elif "encryption" in path.name:
            needles += [w for w in data.decode().split() if len(w) >= 40]
    assert len(needles) > 20, "found too few keys in the state dir to make this scan mean much"
    return needles


def leaked(text: str, needles: list[str]) -> list[str]:
    found = [m for m in PEM_MARKERS if m in text]
    found += [n[:16] + "..." for n in needles if n in text]
    return found
