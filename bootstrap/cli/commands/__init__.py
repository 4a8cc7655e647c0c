"""Day-2 subcommands, one module each, registered into the main parser.

Each module exposes ``register(sub)`` taking the top-level subparsers object and uses
``bootstrap.cli``'s ``add_inventory_args`` / ``add_ssh_args`` / ``make_session``. At
registration time a module may import only argparse-level things; heavy work is imported
inside its command functions.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

MODULES = (
    "bootstrap.cli.commands.membership",  # add-master, remove-master, reset
    "bootstrap.cli.commands.certs",  # certs check/renew, etcd snapshot, upgrade
    "bootstrap.cli.commands.serve",  # serve (HTTP manifest source)
)


def register_all(sub: argparse._SubParsersAction[Any]) -> None:
    for name in MODULES:
        module = importlib.import_module(name)
        module.register(sub)
