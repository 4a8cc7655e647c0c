"""Import what a command will need later in a background thread, while it waits on hosts.

The etcd client (grpc, its C core, pyetcd and protobuf) is the largest import of a
command that talks to hosts, and nothing needs it until the SSH connections are up: the
main thread spends that time waiting on sockets. Importing it meanwhile takes it off the
critical path. Python's per-module import locks make this safe: a thread that needs a
module while it is being imported waits for it to finish. The import graph of bootstrap
has no cycles (tests/test_architecture.py), so there is no partial module to see.
"""

from __future__ import annotations

import contextlib
import importlib
import threading

HOST_COMMAND_MODULES = ("bootstrap.etcd.client",)


def start(modules: tuple[str, ...] = HOST_COMMAND_MODULES) -> None:
    def run() -> None:
        for name in modules:
            # An import error here is raised again, with its context, where it is needed.
            with contextlib.suppress(Exception):
                importlib.import_module(name)

    threading.Thread(target=run, name="warm-imports", daemon=True).start()
