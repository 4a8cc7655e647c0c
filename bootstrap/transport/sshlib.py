"""paramiko, imported without ``invoke``: every transport module imports paramiko from here.

paramiko.config imports invoke at module load, only to run ``Match exec`` lines of an
OpenSSH client config; bootstrap never reads one (hosts, ports, keys and jump hosts come
from the inventory). invoke pulls in unittest.mock, asyncio and importlib.metadata, about
half of paramiko's import time, paid by every command that reaches a host. While paramiko
is imported, invoke is hidden; paramiko then keeps its ImportError for the one feature
that needs it, and a later ``import invoke`` by anyone else still works.
"""

from __future__ import annotations

import sys

_HIDE_INVOKE = "invoke" not in sys.modules
if _HIDE_INVOKE:
    sys.modules["invoke"] = None  # type: ignore[assignment]  # makes `import invoke` fail
try:
    import paramiko
finally:
    if _HIDE_INVOKE:
        del sys.modules["invoke"]

__all__ = ["paramiko"]
