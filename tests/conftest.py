"""Fixtures shared by test modules (instead of importing them from each other), and the
one place that skips tests the machine cannot run.

Without root, tests marked ``lab`` (network namespaces) and ``sshd`` (a real OpenSSH sshd
on loopback) are skipped with the reason, never failed; a test that uses the ``sshd``
fixture is marked ``sshd`` here, so ``-m "not sshd"`` deselects it too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab_support import NOT_ROOT
from tests.sshd_support import SSHD, Sshd, start_sshd

NO_SSHD = f"a real sshd on loopback needs root and {SSHD} (openssh-server)"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    root = os.geteuid() == 0
    sshd_missing = not root or not Path(SSHD).exists()
    for item in items:
        if "sshd" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.sshd)
        if item.get_closest_marker("sshd") and sshd_missing:
            item.add_marker(pytest.mark.skip(reason=NO_SSHD))
        if item.get_closest_marker("lab") and not root:
            item.add_marker(pytest.mark.skip(reason=NOT_ROOT))


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    server = start_sshd()
    try:
        yield server
    finally:
        server.cleanup()
