"""Placeholder: subcommands are registered here by their issue's work."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this module's subcommands to the main parser."""
