"""Inventory bytes/text -> a YAML node tree (with line marks), or InventoryError.

We compose instead of load: nodes keep the line of every key and value, aliases stay
shared nodes (no expansion, so "billion laughs" costs nothing) and no tag ever
constructs an object.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from yaml.nodes import Node

from ..errors import InventoryError

# libyaml's parser when PyYAML has it: it composes the same nodes with the same marks,
# about ten times faster (a 1 MiB inventory: 0.6 s instead of 6 s). Its error messages
# say less (no alias name, no character code), so text it refuses is parsed again by the
# pure-Python parser for the message, up to this size; above it libyaml's message stands.
_FAST_LOADER: type[yaml.SafeLoader] | None = getattr(yaml, "CSafeLoader", None)
_REPARSE_LIMIT = 256 * 1024

HINT = "compare with inventory.example.yaml; `bootstrap inventory schema` prints the format"


def decode(data: bytes, source: Path | None) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InventoryError(
            f"{_name(source)} is not a valid inventory",
            [f"line {line}: not UTF-8 text (byte {exc.start})"],
            hint="save the inventory as UTF-8",
        ) from None


def compose(text: str, source: Path | None) -> Node | None:
    loader = yaml.SafeLoader
    if _FAST_LOADER is not None:
        try:
            return yaml.compose(text, Loader=_FAST_LOADER)
        except (yaml.YAMLError, UnicodeError, RecursionError):
            if len(text) > _REPARSE_LIMIT:
                loader = _FAST_LOADER
    try:
        return yaml.compose(text, Loader=loader)
    except UnicodeError:  # libyaml meets a lone surrogate (text not read from a file)
        problem = "not UTF-8 text (a lone surrogate character)"
    except yaml.MarkedYAMLError as exc:
        problem = _syntax_problem(exc)
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        code = (
            exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "?")
        )
        problem = f"line {line}: character U+{code:04X} is not allowed in YAML"
    except yaml.YAMLError as exc:
        problem = f"YAML error: {exc}"
    except RecursionError:
        problem = "nested too deeply to be an inventory"
    raise InventoryError(f"{_name(source)} is not valid YAML", [problem], hint=HINT)


def _syntax_problem(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
    parts = [p for p in (exc.context, exc.problem) if p]
    return f"{where}: {', '.join(parts) or 'syntax error'}"


def _name(source: Path | None) -> str:
    return str(source) if source is not None else "inventory"
