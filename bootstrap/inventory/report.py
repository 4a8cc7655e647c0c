"""The validator context: collects every problem with its field path and YAML line.

``Section`` wraps one YAML mapping node at a field path. Its getters check the type,
report a problem (never raise) and return ``None`` for a missing or bad value, so the
loader keeps going and the user sees every error at once.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..errors import echo, shorten
from .fields import KEY_HOMES

T = TypeVar("T")

TAG_STR = "tag:yaml.org,2002:str"
TAG_INT = "tag:yaml.org,2002:int"
TAG_FLOAT = "tag:yaml.org,2002:float"
TAG_BOOL = "tag:yaml.org,2002:bool"
TAG_NULL = "tag:yaml.org,2002:null"
TAG_MERGE = "tag:yaml.org,2002:merge"
# Plain scalars YAML reads as numbers or dates keep their text when a string is wanted:
# an IPv6 literal like 1:2:3:4:5:6:7:8 is a YAML 1.1 sexagesimal integer.
_TEXT_TAGS = {TAG_STR, TAG_INT, TAG_FLOAT, "tag:yaml.org,2002:timestamp"}

_CONSTRUCTOR = SafeConstructor()
PATH_LIMIT = 200  # characters of a field path shown in a problem


def line_of(node: Node) -> int:
    return int(node.start_mark.line) + 1


def child_path(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


def describe(node: Node) -> str:
    """What the user wrote, in words, for "expected X, got Y"."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    assert isinstance(node, ScalarNode)
    kinds = {
        TAG_NULL: "nothing (null)",
        TAG_BOOL: "a boolean",
        TAG_INT: "an integer",
        TAG_FLOAT: "a number",
        TAG_STR: "a string",
    }
    kind = kinds.get(node.tag, f"a {node.tag} value")
    text = str(node.value)
    return kind if node.tag == TAG_NULL else f"{kind} {echo(text)}" if text else kind


def is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == TAG_NULL


def suggest(word: str, choices: Sequence[str]) -> str | None:
    """The closest choice, if any is close: same letters ignoring case/-/_, else difflib."""

    def squash(text: str) -> str:
        return text.lower().replace("-", "").replace("_", "")

    for choice in choices:
        if squash(choice) == squash(word):
            return choice
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


@dataclass
class Report:
    """Every problem found so far; errors stop the load, warnings travel with the result.

    Problems are listed in file order (by line), whatever order the checks ran in.
    """

    _errors: list[tuple[int, str]] = field(default_factory=list)
    _warnings: list[tuple[int, str]] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return [text for _, text in sorted(self._errors, key=lambda entry: entry[0])]

    @property
    def warnings(self) -> list[str]:
        return [text for _, text in sorted(self._warnings, key=lambda entry: entry[0])]

    @staticmethod
    def at(path: str, node: Node | None) -> str:
        # A field path holds the user's key names, which may be megabytes long.
        name = shorten(path, PATH_LIMIT) if path else "(top level)"
        return f"{name} (line {line_of(node)})" if node is not None else name

    def error(self, path: str, node: Node | None, message: str) -> None:
        line = line_of(node) if node is not None else 0
        self._errors.append((line, f"{self.at(path, node)}: {message}"))

    def warn(self, path: str, node: Node | None, message: str) -> None:
        line = line_of(node) if node is not None else 0
        self._warnings.append((line, f"{self.at(path, node)}: {message}"))

    def check(self, path: str, node: Node, parse: Callable[[str], T], text: str) -> T | None:
        """Run a formats.* parser; a ValueError becomes a problem at this path."""
        try:
            return parse(text)
        except ValueError as exc:
            self.error(path, node, str(exc))
            return None


class Section:
    """One YAML mapping at a field path (an absent or null mapping reads as empty)."""

    def __init__(
        self,
        report: Report,
        path: str,
        node: Node | None,
        keys: Sequence[str] | None,
        *,
        what: str = "key",
    ) -> None:
        self.report = report
        self.path = path
        self.node = node  # for the line of "missing key" problems
        self.keys = keys
        self.pairs: dict[str, tuple[Node, Node]] = {}
        if node is None or is_null(node):
            return
        if not isinstance(node, MappingNode):
            report.error(path, node, f"expected a mapping, got {describe(node)}")
            return
        self._read_pairs(node, what)

    def _read_pairs(self, node: MappingNode, what: str) -> None:
        explicit: list[tuple[Node, Node]] = []
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag == TAG_MERGE:
                continue  # merged pairs come first, explicit ones override them
            explicit.append((key_node, value_node))
        pairs = _merged_pairs(self.report, self.path, node, set()) + explicit
        seen_lines: dict[str, int] = {}
        merged_count = len(pairs) - len(explicit)
        for index, (key_node, value_node) in enumerate(pairs):
            if not isinstance(key_node, ScalarNode) or key_node.tag in (TAG_NULL, TAG_BOOL):
                self.report.error(
                    self.path, key_node, f"a key must be a name, got {describe(key_node)}"
                )
                continue
            key = str(key_node.value)
            from_merge = index < merged_count
            if not from_merge and key in seen_lines:
                self.report.error(
                    child_path(self.path, key),
                    key_node,
                    f"duplicate key (first on line {seen_lines[key]})",
                )
                continue
            if self.keys is not None and key not in self.keys:
                self._unknown(key, key_node, what)
                continue
            if not from_merge:
                seen_lines[key] = line_of(key_node)
            self.pairs[key] = (key_node, value_node)

    def _unknown(self, key: str, key_node: Node, what: str) -> None:
        assert self.keys is not None
        message = f"unknown {what}"
        close = suggest(key, self.keys)
        home = KEY_HOMES.get(key)
        if close is not None:
            message += f"; did you mean {close!r}?"
        elif home is not None:
            message += f"; {echo(key)} belongs under {home!r}"
        else:
            message += f" (known: {', '.join(self.keys)})"
        self.report.error(child_path(self.path, key), key_node, message)

    # --- access ----------------------------------------------------------------------

    def has(self, key: str) -> bool:
        return key in self.pairs

    def value_node(self, key: str) -> Node | None:
        pair = self.pairs.get(key)
        return pair[1] if pair else None

    def key_node(self, key: str) -> Node | None:
        pair = self.pairs.get(key)
        return pair[0] if pair else None

    def child(self, key: str) -> str:
        return child_path(self.path, key)

    def given(self, key: str, *, required: bool = False) -> Node | None:
        """The value node if present and not null; reports a missing required key."""
        node = self.value_node(key)
        if node is not None and not is_null(node):
            return node
        if required:
            where = self.key_node(key) or self.node
            self.report.error(self.child(key), where, "required")
        return None

    def section(self, key: str, keys: Sequence[str] | None, *, what: str = "key") -> Section:
        return Section(self.report, self.child(key), self.value_node(key), keys, what=what)

    def items(self, key: str) -> list[Node]:
        node = self.given(key)
        if node is None:
            return []
        if not isinstance(node, SequenceNode):
            self.report.error(self.child(key), node, f"expected a list, got {describe(node)}")
            return []
        return list(node.value)

    def string(self, key: str, *, required: bool = False) -> str | None:
        node = self.given(key, required=required)
        if node is None:
            return None
        text = scalar_text(self.report, self.child(key), node)
        if text == "" and required:
            self.report.error(self.child(key), node, "must not be empty")
            return None
        return text

    def parsed(self, key: str, parse: Callable[[str], T], *, required: bool = False) -> T | None:
        text = self.string(key, required=required)
        node = self.value_node(key)
        if text is None or node is None:
            return None
        return self.report.check(self.child(key), node, parse, text)

    def choice(self, key: str, choices: Sequence[str]) -> str | None:
        text = self.string(key)
        node = self.value_node(key)
        if text is None or node is None or text in choices:
            return text
        close = suggest(text, choices)
        hint = f"; did you mean {close!r}?" if close else ""
        self.report.error(
            self.child(key), node, f"{echo(text)} is not one of {', '.join(choices)}{hint}"
        )
        return None

    def integer(self, key: str) -> int | None:
        node = self.given(key)
        if node is None:
            return None
        if not (isinstance(node, ScalarNode) and node.tag == TAG_INT):
            self.report.error(self.child(key), node, f"expected an integer, got {describe(node)}")
            return None
        try:
            return int(_CONSTRUCTOR.construct_yaml_int(node))
        except (ValueError, yaml.YAMLError):  # e.g. more digits than int() accepts
            self.report.error(self.child(key), node, "not a usable integer")
            return None

    def number(self, key: str) -> float | None:
        node = self.given(key)
        if node is None:
            return None
        if not (isinstance(node, ScalarNode) and node.tag in (TAG_INT, TAG_FLOAT)):
            self.report.error(self.child(key), node, f"expected a number, got {describe(node)}")
            return None
        try:
            if node.tag == TAG_INT:
                value = float(_CONSTRUCTOR.construct_yaml_int(node))
            else:
                value = float(_CONSTRUCTOR.construct_yaml_float(node))
        except (ValueError, OverflowError, yaml.YAMLError):
            value = math.inf
        if not math.isfinite(value):
            self.report.error(self.child(key), node, f"{echo(str(node.value))} is too large")
            return None
        return value

    def boolean(self, key: str) -> bool | None:
        node = self.given(key)
        if node is None:
            return None
        if not (isinstance(node, ScalarNode) and node.tag == TAG_BOOL):
            self.report.error(
                self.child(key), node, f"expected true or false, got {describe(node)}"
            )
            return None
        return bool(_CONSTRUCTOR.construct_yaml_bool(node))


def scalar_text(report: Report, path: str, node: Node) -> str | None:
    """The text of a scalar meant as a string (numbers keep their written form)."""
    if isinstance(node, ScalarNode) and node.tag in _TEXT_TAGS:
        return str(node.value)
    hint = " (quote it to make it a string)" if isinstance(node, ScalarNode) else ""
    report.error(path, node, f"expected a string, got {describe(node)}{hint}")
    return None


def _merged_pairs(
    report: Report,
    path: str,
    node: MappingNode,
    active: set[int],
    cache: dict[int, dict[str, tuple[Node, Node]]] | None = None,
) -> list[tuple[Node, Node]]:
    """Pairs brought in by YAML merge keys (``<<: *defaults``), lowest priority first.

    Results are keyed by name and cached per node, so chains of aliases that merge the
    same mapping many times stay linear instead of exponential.
    """
    return list(_merged(report, path, node, active, {} if cache is None else cache).values())


def _merged(
    report: Report,
    path: str,
    node: MappingNode,
    active: set[int],
    cache: dict[int, dict[str, tuple[Node, Node]]],
) -> dict[str, tuple[Node, Node]]:
    if id(node) in cache:
        return cache[id(node)]
    if id(node) in active:  # a mapping that merges itself through an alias
        report.error(path, node, "recursive merge (<<) of a mapping into itself")
        return {}
    active = active | {id(node)}
    merged: dict[str, tuple[Node, Node]] = {}
    for key_node, value_node in node.value:
        if not (isinstance(key_node, ScalarNode) and key_node.tag == TAG_MERGE):
            continue
        sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
        # In a list of merges the first one wins, so apply them last to first.
        for source in reversed(sources):
            if not isinstance(source, MappingNode):
                report.error(path, source, f"<< merges a mapping, got {describe(source)}")
                continue
            merged.update(_merged(report, path, source, active, cache))
            for k, v in source.value:
                if isinstance(k, ScalarNode) and k.tag != TAG_MERGE:
                    merged[str(k.value)] = (k, v)
    cache[id(node)] = merged
    return merged
