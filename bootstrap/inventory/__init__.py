"""The inventory: YAML file -> validated, frozen ``Inventory``.

The loader (and PyYAML) are imported on first use, so importing this package stays
cheap for ``bootstrap --help``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .model import Inventory, JumpHost, Master, SSHSettings, Timeouts
from .versions import DEFAULT_ETCD_FOR_MINOR

__all__ = [
    "DEFAULT_ETCD_FOR_MINOR",
    "Inventory",
    "JumpHost",
    "Master",
    "SSHSettings",
    "Timeouts",
    "json_schema",
    "load",
    "load_text",
]


def load(path: Path) -> Inventory:
    """Read and validate an inventory file; raises InventoryError listing every problem."""
    from .loader import load as _load

    return _load(path)


def load_text(text: str, source: Path | None = None) -> Inventory:
    """Validate inventory YAML text; relative paths resolve against ``source``'s directory."""
    from .loader import load_text as _load_text

    return _load_text(text, source)


def json_schema() -> dict[str, Any]:
    """The inventory format as a JSON Schema (draft 2020-12), for editors."""
    from .schema import json_schema as _json_schema

    return _json_schema()
