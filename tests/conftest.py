"""Fixtures shared by test modules (instead of importing them from each other)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sshd_support import Sshd, start_sshd


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    if os.geteuid() != 0 or not Path("/usr/sbin/sshd").exists():
        pytest.fail("transport tests need root and /usr/sbin/sshd (openssh-server)")
    server = start_sshd()
    try:
        yield server
    finally:
        server.cleanup()
